//! Every limit and default of the chat, in one place. Both backends read overrides
//! from their own configuration (CLI flags, wrangler `[vars]`) into this struct and
//! never restate a number.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Limits and defaults. Deserializing fills missing fields from [`Config::default`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Longest display name, in Unicode scalar values, after trimming.
    pub max_name_chars: usize,
    /// Longest chat message, in Unicode scalar values, after trimming.
    pub max_message_chars: usize,
    /// Largest incoming message in bytes (after reassembly/decompression). Over it: close 1009.
    pub max_frame_bytes: usize,
    /// Messages replayed to a joiner that does not (or cannot) resume.
    pub backlog: usize,
    /// Most messages a resume may replay; a larger gap gives `recovered: false`.
    pub resume_max: usize,
    /// Messages kept per room; older ones are pruned.
    pub retention: usize,
    /// Token-bucket size per client address within a room.
    pub rate_burst: u32,
    /// Tokens refilled per second.
    pub rate_per_sec: f64,
    /// Frames rejected in a row by the rate limit before the socket is closed with 1008.
    pub rate_strikes: u32,
    /// Most connections (named or not) per room; the next gets 1013 "Room is full".
    pub room_capacity: usize,
    /// Frames a connection may have queued beyond its join burst before it is closed
    /// with 1013 as a slow consumer (backends with a send queue).
    pub send_queue_frames: usize,
    /// Milliseconds a connection may stay without sending its hello. Unnamed sockets
    /// count toward `room_capacity`, so without a deadline silent sockets could fill a
    /// room. Past it: `{"error"}` and close 1008.
    pub hello_timeout_ms: u64,
    /// Origins (e.g. `https://chat.example.com`) allowed besides same-origin and no-Origin.
    pub allow_origins: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_name_chars: 32,
            max_message_chars: 1000,
            max_frame_bytes: 64 * 1024,
            backlog: 100,
            resume_max: 1000,
            retention: 10_000,
            rate_burst: 10,
            rate_per_sec: 1.0,
            rate_strikes: 30,
            room_capacity: 1000,
            send_queue_frames: 1024,
            hello_timeout_ms: 10_000,
            allow_origins: Vec::new(),
        }
    }
}

/// A configuration value that was refused, with a message fit for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// The names of the overridable settings, as used by [`Config::set`]. Backends map
    /// them to their own spelling (e.g. `RATE_BURST` in wrangler vars, `--rate-burst`).
    pub const KEYS: &'static [&'static str] = &[
        "max_name_chars",
        "max_message_chars",
        "max_frame_bytes",
        "backlog",
        "resume_max",
        "retention",
        "rate_burst",
        "rate_per_sec",
        "rate_strikes",
        "room_capacity",
        "send_queue_frames",
        "hello_timeout_ms",
        "allow_origins",
    ];

    /// Sets one setting from its text form. `allow_origins` takes a comma-separated list.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let value = value.trim();
        fn num<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, ConfigError> {
            v.parse()
                .map_err(|_| ConfigError(format!("{key}: expected a number, got {v:?}")))
        }
        match key {
            "max_name_chars" => self.max_name_chars = num(key, value)?,
            "max_message_chars" => self.max_message_chars = num(key, value)?,
            "max_frame_bytes" => self.max_frame_bytes = num(key, value)?,
            "backlog" => self.backlog = num(key, value)?,
            "resume_max" => self.resume_max = num(key, value)?,
            "retention" => self.retention = num(key, value)?,
            "rate_burst" => self.rate_burst = num(key, value)?,
            "rate_per_sec" => self.rate_per_sec = num(key, value)?,
            "rate_strikes" => self.rate_strikes = num(key, value)?,
            "room_capacity" => self.room_capacity = num(key, value)?,
            "send_queue_frames" => self.send_queue_frames = num(key, value)?,
            "hello_timeout_ms" => self.hello_timeout_ms = num(key, value)?,
            "allow_origins" => {
                self.allow_origins = value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            }
            _ => return Err(ConfigError(format!("unknown setting {key:?}"))),
        }
        Ok(())
    }

    /// Checks that the limits make sense together. Backends call this at start-up and
    /// refuse to run with a bad configuration.
    pub fn validate(&self) -> Result<(), ConfigError> {
        // (key, value, least, most). The upper bounds keep derived sizes (queue bounds,
        // buffer sizes) far from overflow and reject typos such as an extra zero digit
        // that would let one client exhaust memory.
        let ranges: [(&str, u64, u64, u64); 10] = [
            ("max_name_chars", self.max_name_chars as u64, 1, 256),
            (
                "max_message_chars",
                self.max_message_chars as u64,
                1,
                100_000,
            ),
            ("max_frame_bytes", self.max_frame_bytes as u64, 1, 16 << 20),
            ("backlog", self.backlog as u64, 0, 100_000),
            ("resume_max", self.resume_max as u64, 0, 100_000),
            ("retention", self.retention as u64, 1, 100_000_000),
            (
                "rate_burst",
                u64::from(self.rate_burst),
                1,
                u64::from(u32::MAX),
            ),
            (
                "rate_strikes",
                u64::from(self.rate_strikes),
                1,
                u64::from(u32::MAX),
            ),
            ("room_capacity", self.room_capacity as u64, 1, 100_000),
            (
                "send_queue_frames",
                self.send_queue_frames as u64,
                1,
                1_000_000,
            ),
        ];
        for (key, v, least, most) in ranges {
            if v < least || v > most {
                return Err(ConfigError(format!(
                    "{key} must be from {least} to {most}, got {v}"
                )));
            }
        }
        if self.hello_timeout_ms == 0 {
            return Err(ConfigError(
                "hello_timeout_ms must be at least 1".to_owned(),
            ));
        }
        if !(self.rate_per_sec.is_finite() && self.rate_per_sec > 0.0) {
            return Err(ConfigError(
                "rate_per_sec must be a positive number".to_owned(),
            ));
        }
        if self.backlog > self.retention || self.resume_max > self.retention {
            return Err(ConfigError(
                "backlog and resume_max may not exceed retention".to_owned(),
            ));
        }
        for origin in &self.allow_origins {
            if crate::edge::normalize_origin(origin).is_none() {
                return Err(ConfigError(format!(
                    "allow_origins: {origin:?} is not an origin like https://host[:port]"
                )));
            }
        }
        Ok(())
    }

    /// Frames a joiner can receive at once before any live traffic: the roster, the
    /// largest backlog, its own `joined` and `ready`. A send-queue bound must sit above
    /// this, or a joiner into a busy room would be closed for its own join burst.
    pub fn join_burst_frames(&self) -> usize {
        self.room_capacity + self.backlog.max(self.resume_max) + 2
    }

    /// The send-queue bound, in frames, that a backend with a queue should use.
    pub fn send_queue_bound(&self) -> usize {
        self.join_burst_frames() + self.send_queue_frames
    }

    /// An upper bound on one server frame in bytes: a chat message with its name, every
    /// character escaped as `\uXXXX` at worst (6 bytes), plus the JSON around it. A
    /// backend's write buffer must take a frame this large.
    pub fn max_server_frame_bytes(&self) -> usize {
        6 * (self.max_message_chars + self.max_name_chars) + 256
    }

    /// The limits a client checks before sending, as the JSON body of
    /// [`crate::edge::LIMITS_PATH`]: `{"max_name_chars", "max_message_chars",
    /// "max_frame_bytes"}`.
    pub fn client_limits_json(&self) -> String {
        serde_json::json!({
            "max_name_chars": self.max_name_chars,
            "max_message_chars": self.max_message_chars,
            "max_frame_bytes": self.max_frame_bytes,
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_protocol() {
        let c = Config::default();
        assert_eq!(c.max_name_chars, 32);
        assert_eq!(c.max_message_chars, 1000);
        assert_eq!(c.max_frame_bytes, 65536);
        assert_eq!(c.backlog, 100);
        assert_eq!(c.resume_max, 1000);
        assert_eq!(c.retention, 10_000);
        assert_eq!(c.rate_burst, 10);
        assert_eq!(c.rate_per_sec, 1.0);
        assert_eq!(c.rate_strikes, 30);
        assert_eq!(c.room_capacity, 1000);
        assert_eq!(c.hello_timeout_ms, 10_000);
        c.validate().unwrap();
    }

    #[test]
    fn client_limits_are_json() {
        let v: serde_json::Value =
            serde_json::from_str(&Config::default().client_limits_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"max_name_chars": 32, "max_message_chars": 1000, "max_frame_bytes": 65536})
        );
    }

    #[test]
    fn set_parses_every_key() {
        let mut c = Config::default();
        for key in Config::KEYS {
            let v = match *key {
                "rate_per_sec" => "2.5",
                "allow_origins" => "https://a.example, http://b.example:8080",
                _ => "7",
            };
            c.set(key, v).unwrap();
        }
        assert_eq!(c.rate_per_sec, 2.5);
        assert_eq!(c.room_capacity, 7);
        assert_eq!(c.allow_origins.len(), 2);
    }

    #[test]
    fn bad_values_are_refused_clearly() {
        let mut c = Config::default();
        let e = c.set("rate_burst", "ten").unwrap_err();
        assert!(e.0.contains("rate_burst"), "{e}");
        assert!(c.set("nope", "1").is_err());
        c.set("room_capacity", "0").unwrap();
        assert!(c.validate().unwrap_err().0.contains("room_capacity"));
        c.set("room_capacity", "100001").unwrap();
        assert!(c.validate().unwrap_err().0.contains("room_capacity"));
        c.set("room_capacity", "100000").unwrap();
        c.validate().unwrap();
        c.set("hello_timeout_ms", "0").unwrap();
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.set("allow_origins", "not a url").unwrap();
        assert!(c.validate().is_err());
        let c = Config {
            rate_per_sec: f64::NAN,
            ..Config::default()
        };
        assert!(c.validate().is_err());
    }

    #[test]
    fn deserializes_partial_json_with_defaults() {
        let c: Config = serde_json::from_str(r#"{"room_capacity": 3}"#).unwrap();
        assert_eq!(c.room_capacity, 3);
        assert_eq!(c.backlog, 100);
        assert!(serde_json::from_str::<Config>(r#"{"room_capcity": 3}"#).is_err());
    }
}
