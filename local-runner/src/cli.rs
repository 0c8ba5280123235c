//! Command-line flags (each with an `EDGE_CHAT_*` environment twin) and the handler
//! `Config` built from them. Limits are `Option`s applied over `Config::default()`, so
//! no default number is restated here; `--help` shows the handler's defaults.

use chat_handler::{Config, ConfigError};
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use std::ffi::OsString;
use std::net::IpAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "local-runner",
    version,
    about = "edge-chat on one machine: HTTP, static files, WebSockets and SQLite"
)]
pub struct Cli {
    /// Address to listen on.
    #[arg(long, env = "EDGE_CHAT_BIND", default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Port to listen on; 0 picks a free one (the printed URL shows it).
    #[arg(long, env = "EDGE_CHAT_PORT", default_value_t = 8787)]
    pub port: u16,
    /// Directory for the SQLite database (created if missing).
    #[arg(long, env = "EDGE_CHAT_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Keep history in memory only; it is lost when the process exits.
    #[arg(long, env = "EDGE_CHAT_IN_MEMORY")]
    pub in_memory: bool,
    /// Directory of the browser client, served at `/`.
    #[arg(long, env = "EDGE_CHAT_STATIC_DIR", default_value = "static/")]
    pub static_dir: PathBuf,
    /// An Origin allowed besides same-origin and no Origin (repeatable; the environment
    /// variable takes a comma-separated list).
    #[arg(
        long = "allow-origin",
        env = "EDGE_CHAT_ALLOW_ORIGIN",
        value_delimiter = ','
    )]
    pub allow_origin: Vec<String>,
    /// Seconds between server pings; a connection missing two pongs in a row is closed.
    #[arg(long, env = "EDGE_CHAT_PING_INTERVAL_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub ping_interval_secs: u64,
    /// Emulate Durable Object hibernation: a room with connections but no events for
    /// this many seconds drops its state and rebuilds it on the next event. 0 = never.
    #[arg(long, env = "EDGE_CHAT_HIBERNATE_AFTER_SECS", default_value_t = 0)]
    pub hibernate_after_secs: u64,

    /// Longest display name, in characters.
    #[arg(long, env = "EDGE_CHAT_MAX_NAME_CHARS")]
    pub max_name_chars: Option<usize>,
    /// Longest chat message, in characters.
    #[arg(long, env = "EDGE_CHAT_MAX_MESSAGE_CHARS")]
    pub max_message_chars: Option<usize>,
    /// Largest incoming WebSocket message in bytes; larger closes with 1009.
    #[arg(long, env = "EDGE_CHAT_MAX_FRAME_BYTES")]
    pub max_frame_bytes: Option<usize>,
    /// Messages replayed to a joiner that does not resume.
    #[arg(long, env = "EDGE_CHAT_BACKLOG")]
    pub backlog: Option<usize>,
    /// Most messages a resume may replay.
    #[arg(long, env = "EDGE_CHAT_RESUME_MAX")]
    pub resume_max: Option<usize>,
    /// Messages kept per room.
    #[arg(long, env = "EDGE_CHAT_RETENTION")]
    pub retention: Option<usize>,
    /// Rate-limit burst per client address within a room.
    #[arg(long, env = "EDGE_CHAT_RATE_BURST")]
    pub rate_burst: Option<u32>,
    /// Rate-limit refill, tokens per second.
    #[arg(long, env = "EDGE_CHAT_RATE_PER_SEC")]
    pub rate_per_sec: Option<f64>,
    /// Rate-limited frames in a row before the socket is closed with 1008.
    #[arg(long, env = "EDGE_CHAT_RATE_STRIKES")]
    pub rate_strikes: Option<u32>,
    /// Most connections per room.
    #[arg(long, env = "EDGE_CHAT_ROOM_CAPACITY")]
    pub room_capacity: Option<usize>,
    /// Frames queued per connection beyond its join burst before it is closed with 1013.
    #[arg(long, env = "EDGE_CHAT_SEND_QUEUE_FRAMES")]
    pub send_queue_frames: Option<usize>,
    /// Milliseconds a connection may stay without sending its hello; then it gets an
    /// error and close 1008.
    #[arg(long, env = "EDGE_CHAT_HELLO_TIMEOUT_MS")]
    pub hello_timeout_ms: Option<u64>,
}

impl Cli {
    /// Parses flags and environment; on error or `--help` clap prints and exits
    /// (status 2 for usage errors).
    pub fn parse_from_env() -> Self {
        Self::parse_args(std::env::args_os())
    }

    pub fn parse_args<I, T>(args: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let matches: ArgMatches = command_with_defaults().get_matches_from(args);
        Self::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }

    /// The handler configuration: defaults, overridden by the given flags, validated.
    pub fn config(&self) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        macro_rules! apply {
            ($($field:ident),*) => {
                $(if let Some(v) = self.$field { c.$field = v; })*
            };
        }
        apply!(
            max_name_chars,
            max_message_chars,
            max_frame_bytes,
            backlog,
            resume_max,
            retention,
            rate_burst,
            rate_per_sec,
            rate_strikes,
            room_capacity,
            send_queue_frames,
            hello_timeout_ms
        );
        c.allow_origins = self.allow_origin.clone();
        c.validate()?;
        Ok(c)
    }
}

/// The clap command with each limit's help ending in the handler's default, read from
/// `Config::default()` so the text cannot drift from the code.
fn command_with_defaults() -> clap::Command {
    let mut cmd = Cli::command();
    let defaults = serde_json::to_value(Config::default()).unwrap_or_default();
    for key in Config::KEYS {
        let Some(value) = defaults.get(key) else {
            continue;
        };
        if cmd.get_arguments().any(|a| a.get_id() == *key) {
            let shown = value.to_string();
            cmd = cmd.mut_arg(*key, |a| {
                let help = a.get_help().map(ToString::to_string).unwrap_or_default();
                a.help(format!("{help} [default: {shown}]"))
            });
        }
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_is_well_formed() {
        command_with_defaults().debug_assert();
    }

    #[test]
    fn flags_override_only_what_they_name() {
        let cli = Cli::parse_args([
            "local-runner",
            "--rate-burst",
            "3",
            "--rate-per-sec",
            "0.5",
            "--allow-origin",
            "https://a.example",
            "--allow-origin",
            "http://b.example:8080",
            "--hello-timeout-ms",
            "2500",
        ]);
        let c = cli.config().unwrap();
        assert_eq!(c.rate_burst, 3);
        assert_eq!(c.rate_per_sec, 0.5);
        assert_eq!(c.allow_origins.len(), 2);
        assert_eq!(c.hello_timeout_ms, 2500);
        let d = Config::default();
        assert_eq!(c.backlog, d.backlog);
        assert_eq!(c.room_capacity, d.room_capacity);
        assert_eq!(cli.port, 8787);
    }

    #[test]
    fn invalid_values_are_refused_by_validate() {
        let cli = Cli::parse_args(["local-runner", "--room-capacity", "0"]);
        assert!(cli.config().unwrap_err().0.contains("room_capacity"));
        let cli = Cli::parse_args(["local-runner", "--allow-origin", "nope"]);
        assert!(cli.config().is_err());
        let cli = Cli::parse_args(["local-runner", "--hello-timeout-ms", "0"]);
        assert!(cli.config().unwrap_err().0.contains("hello_timeout_ms"));
    }

    #[test]
    fn help_shows_handler_defaults() {
        let help = command_with_defaults().render_help().to_string();
        let d = Config::default();
        for shown in [d.send_queue_frames as u64, d.hello_timeout_ms] {
            let want = format!("[default: {shown}]");
            assert!(help.contains(&want), "{want} missing from {help}");
        }
    }
}
