//! Every limit and default of the chat, in one place. Both backends read overrides
//! from their own configuration (CLI flags, wrangler `[vars]`) into this struct and
//! never restate a number or a key name.
//!
//! Each setting is declared once, in the `config_keys!` list below: its doc, name,
//! type, default and bounds. The struct, its `Default`, [`Config::KEYS`],
//! [`Config::DESCRIPTORS`], [`Config::set`], [`Config::get`] and the range checks of
//! [`Config::validate`] are generated from that list. Adapters iterate
//! [`Config::DESCRIPTORS`] and spell each key their own way with
//! [`ConfigKey::env_var`] (`EDGE_CHAT_ROOM_CAPACITY`) or [`ConfigKey::worker_var`]
//! (`ROOM_CAPACITY`).

use serde::{Deserialize, Serialize};
use std::fmt;

/// Declares the settings. One entry per key:
///
/// ```text
/// /// What it means (becomes the field's doc, the CLI help and the descriptor's doc).
/// key_name: Type = default, least 1, most 256;
/// ```
///
/// `least` and `most` are inclusive bounds checked by [`Config::validate`]; either may
/// be left out where a key has no such bound (a rule that is not a plain range, such as
/// "positive", is then written by hand in `validate`). The type must implement the
/// private `Value` trait (text form and parsing).
macro_rules! config_keys {
    ($(
        $(#[doc = $doc:literal])+
        $key:ident: $ty:ty = $default:expr $(, least $least:expr)? $(, most $most:expr)?;
    )+) => {
        /// Limits and defaults. Deserializing fills missing fields from
        /// [`Config::default`] and refuses unknown ones.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct Config {
            $(
                $(#[doc = $doc])+
                pub $key: $ty,
            )+
        }

        impl Default for Config {
            fn default() -> Self {
                Config {
                    $($key: $default,)+
                }
            }
        }

        impl Config {
            /// The names of the overridable settings, as used by [`Config::set`], in
            /// declaration order.
            pub const KEYS: &'static [&'static str] = &[$(stringify!($key)),+];

            /// One descriptor per key, in the order of [`Config::KEYS`]: what adapters
            /// iterate to offer every setting under their own spelling.
            pub const DESCRIPTORS: &'static [ConfigKey] = &[$(
                ConfigKey {
                    name: stringify!($key),
                    doc: concat!($($doc, "\n"),+),
                    list: <$ty as Value>::LIST,
                    switch: <$ty as Value>::SWITCH,
                    text: <$ty as Value>::TEXT,
                }
            ),+];

            /// Sets one setting from its text form (surrounding white space ignored).
            /// Numbers are parsed, not range-checked: [`Config::validate`] does that.
            /// `allow_origins` takes a comma-separated list.
            pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
                let value = value.trim();
                match key {
                    $(stringify!($key) => self.$key = <$ty as Value>::parse(key, value)?,)+
                    _ => return Err(ConfigError(format!("unknown setting {key:?}"))),
                }
                Ok(())
            }

            /// One setting in the text form [`Config::set`] parses back to the same
            /// value (a list is comma-separated), or `None` for an unknown key.
            pub fn get(&self, key: &str) -> Option<String> {
                match key {
                    $(stringify!($key) => Some(Value::text(&self.$key)),)+
                    _ => None,
                }
            }

            /// The declared bounds of every key.
            fn check_bounds(&self) -> Result<(), ConfigError> {
                $(
                    check_bounds(
                        stringify!($key),
                        &self.$key,
                        opt!($($least)?),
                        opt!($($most)?),
                    )?;
                )+
                Ok(())
            }

            /// The declared (least, most) of a key, as text.
            fn bounds_text(key: &str) -> (Option<String>, Option<String>) {
                match key {
                    $(stringify!($key) => {
                        let least: Option<$ty> = opt!($($least)?);
                        let most: Option<$ty> = opt!($($most)?);
                        (least.as_ref().map(Value::text), most.as_ref().map(Value::text))
                    })+
                    _ => (None, None),
                }
            }
        }
    };
}

/// `Some(e)` for a given bound, `None` for a missing one.
macro_rules! opt {
    () => {
        None
    };
    ($e:expr) => {
        Some($e)
    };
}

// The upper bounds keep derived sizes (queue bounds, buffer sizes, deadlines) far from
// overflow and reject typos such as an extra zero digit that would let one client
// exhaust memory. `hello_timeout_ms` stops at 10 minutes so that a deadline added to a
// clock (`Instant` in the local runner) cannot overflow; `rate_per_sec` at a million
// tokens per second, beyond which the limit means nothing.
config_keys! {
    /// Longest display name, in Unicode scalar values, after trimming.
    max_name_chars: usize = 32, least 1, most 256;
    /// Longest chat message, in Unicode scalar values, after trimming.
    max_message_chars: usize = 1000, least 1, most 100_000;
    /// Largest incoming message in bytes (after reassembly/decompression). Over it:
    /// close 1009.
    max_frame_bytes: usize = 64 * 1024, least 1, most 16 << 20;
    /// Messages replayed to a joiner that does not (or cannot) resume. At most
    /// `retention`.
    backlog: usize = 100, least 0, most 100_000;
    /// Most messages a resume may replay; a larger gap gives `recovered: false`. At most
    /// `retention`.
    resume_max: usize = 1000, least 0, most 100_000;
    /// Most messages in one page of history (`{"history": {"limit": …}}` from a v2
    /// session); a larger limit is refused. Also the page size when a request gives none.
    history_page_max: usize = 100, least 1, most 1000;
    /// Most members a v2 joiner's `roster` frame lists. A room with more other members
    /// sends the first this many, the member count and a cursor; the client asks for
    /// the rest in pages (`{"members": {"after": …, "limit": …}}`) of at most this many.
    /// Keeps a big room's join from costing every joiner the whole member list.
    roster_inline_max: usize = 100, least 1, most 1000;
    /// v2 edits: seconds after a message was stored during which its author may edit it
    /// (`{"edit": {"seq": …, "message": …}}`); 0 turns edits off.
    edit_window_secs: u64 = 900, least 0, most 604_800;
    /// v2 reactions: most different emoji on one message.
    max_reactions_per_message: usize = 20, least 1, most 100;
    /// v2 reactions: most reactions on one message, all emoji and users together (each
    /// user's each emoji counts one): bounds the rows a message's reactions take.
    max_reaction_count_per_message: usize = 1000, least 1, most 100_000;
    /// Messages kept per room; older ones are pruned.
    retention: usize = 10_000, least 1, most 100_000_000;
    /// Retry-safe sends: a `cid` its sender already used is answered with the stored
    /// original (not stored again) while that original is among the room's last this
    /// many messages, or within `cid_window_ms`, whichever reaches further back.
    cid_window_messages: u64 = 1000, least 1, most 100_000_000;
    /// Retry-safe sends: milliseconds since the original was stored during which a
    /// repeated `cid` is still recognised (see `cid_window_messages`).
    cid_window_ms: u64 = 600_000, least 0, most 86_400_000;
    /// Token-bucket size per client address within a room.
    rate_burst: u32 = 10, least 1, most u32::MAX;
    /// Tokens refilled per second; must be positive (fractions allowed).
    rate_per_sec: f64 = 1.0, most 1_000_000.0;
    /// Frames rejected in a row by the rate limit before the socket is closed with 1008.
    rate_strikes: u32 = 30, least 1, most u32::MAX;
    /// Milliseconds a changed frame bucket may wait in memory before it is written to
    /// storage (0: written on every frame). Batches a busy address's bucket writes into
    /// one per this interval; a room about to be dropped (hibernation, shutdown) writes
    /// them first, so only a crash can lose this much of an address's spending.
    rate_persist_ms: u64 = 1000, least 0, most 60_000;
    /// Most connections (named or not) per room; the next gets 1013 "Room is full".
    room_capacity: usize = 1000, least 1, most 100_000;
    /// Most connections (named or not) from one client address in one room; the next
    /// gets an error and 1013 "Too many connections from your address". Keeps one
    /// address from holding every seat of a room.
    seats_per_address: usize = 20, least 1, most 100_000;
    /// The per-address limits count per IPv6 /64 and also per /48 (65,536 /64s, what
    /// a site is commonly given), with caps this many times the /64's: seats
    /// (`seats_per_address`), the join bucket (`join_burst`, `join_per_sec`) and room
    /// opens (`room_open_burst`, `room_open_per_sec`). An IPv4 address has no /48.
    address_48_factor: u32 = 4, least 1, most 1_000;
    /// Join-bucket size per client address within a room: hellos accepted back to back
    /// before `join_per_sec` applies. Bounds the `joined`/`quit` frames that join/quit
    /// churn puts on every member.
    join_burst: u32 = 20, least 1, most 1_000_000;
    /// Join tokens refilled per second; must be positive (fractions allowed). A hello
    /// with no token left gets an error and 1013 "Joining too fast".
    join_per_sec: f64 = 0.5, most 1_000_000.0;
    /// Frames a connection may have queued beyond its join burst before it is closed
    /// with 1013 as a slow consumer (backends with a send queue). A batch counts as one.
    send_queue_frames: usize = 1024, least 1, most 1_000_000;
    /// Milliseconds a connection may stay without sending its hello; past it:
    /// `{"error"}` and close 1008. Unnamed sockets count toward `room_capacity`, so
    /// without a deadline silent sockets could fill a room.
    hello_timeout_ms: u64 = 10_000, least 1, most 600_000;
    /// Rooms not open yet (no connection in them) that one client address may open in
    /// a burst, across the whole server; past it the upgrade is refused with 429 and
    /// `Retry-After`. Opening a room costs memory, so without a limit one client could
    /// open rooms faster than anything else could free them.
    room_open_burst: u32 = 20, least 1, most u32::MAX;
    /// Room opens refilled per second per address; must be positive (fractions allowed).
    room_open_per_sec: f64 = 1.0, most 1_000_000.0;
    /// Milliseconds the frames sent to a connection may stay unread (a ping sent after
    /// them not answered) before it is closed with 1013 as a slow consumer, even in a
    /// quiet room and whatever pongs it sends unasked (backends that see their sockets'
    /// pongs).
    drain_timeout_ms: u64 = 30_000, least 100, most 600_000;
    /// Longest wait, in milliseconds, of a frame held for a batch session (a v2 hello
    /// with `"batch": true`) before its batch is flushed. The room's actual window is
    /// `batch members × 1000 / batch_send_budget`, capped by this; 0 turns batching
    /// across events off.
    batch_window_ms: u64 = 200, least 0, most 10_000;
    /// Most frames in one `{"batch": […]}` message: a batch that reaches it is flushed
    /// at once, and longer runs (a large join burst) go as several batches.
    batch_max: usize = 1000, least 1, most 10_000;
    /// Largest `{"batch": […]}` message, in bytes: a batch session's frames are packed
    /// into messages of at most this size (and at most `batch_max` frames), and pending
    /// frames that reach it are flushed at once. A frame too big to share a message
    /// with another goes alone, as itself. At most 1 MiB, Cloudflare's limit on one
    /// WebSocket message; the default stays well under it and under the local runner's
    /// write buffer.
    batch_max_bytes: usize = 256 * 1024, least 1024, most 1 << 20;
    /// Batch flushes, in `send` calls per second per room, that the adaptive window
    /// aims to stay within: big rooms wait longer between flushes, small ones less.
    /// With the defaults, a room of up to 1000 batch sessions stays within it.
    batch_send_budget: u64 = 5_000, least 1, most 10_000_000;
    /// Typing indicators (v2): milliseconds a `{"typing": true}` holds without a
    /// refresh; past it the room announces `typing_stopped`. Also sent to clients in each
    /// `typing` frame (`ttl_ms`), so they expire a typer themselves should the server's
    /// word never come (typing state lives only in memory).
    typing_ttl_ms: u64 = 5_000, least 100, most 60_000;
    /// Typing indicators: most members announced as typing at once per room. A member
    /// who starts typing while this many are is not announced (its later refreshes are,
    /// once there is room). Bounds what a big room's typing costs every member.
    typing_max: usize = 10, least 1, most 1_000;
    /// Typing indicators: token-bucket size per connection for `{"typing": …}` frames,
    /// which do not spend the frame bucket (`rate_burst`). Past it a typing frame gets
    /// the error `typing_rate_limited` and costs a frame token like any other frame.
    typing_burst: u32 = 5, least 1, most 1_000;
    /// Typing tokens refilled per second per connection; must be positive (fractions
    /// allowed).
    typing_per_sec: f64 = 1.0, most 1_000.0;
    /// Origins (e.g. `https://chat.example.com`) allowed besides same-origin and
    /// no-Origin. In text form, a comma-separated list.
    allow_origins: Vec<String> = Vec::new();
    /// Refuse a hello without a valid join token (needs the auth secret, which is not
    /// a setting here: see `identity::AuthSecret`).
    auth_required: bool = false;
    /// Longest join token accepted, in bytes, checked before it is decoded.
    max_token_bytes: usize = 4096, least 64, most 65_536;
    /// The audience a join token must name in its `aud` claim (a string equal to it, or
    /// an array holding it), e.g. `chat.example.com`. Empty: `aud` is not checked. Set it
    /// when the app's secret also signs tokens for other services.
    auth_audience: String = String::new();
    /// The issuer a join token's `iss` claim must equal, e.g. `https://app.example.com`.
    /// Empty: `iss` is not checked.
    auth_issuer: String = String::new();
    /// Server-side publish (`POST /api/room/{room}/messages`): token-bucket size per
    /// service token `sub` within a room, messages accepted back to back before
    /// `publish_per_sec` applies. Past it: 429 with `Retry-After`.
    publish_burst: u32 = 20, least 1, most 1_000_000;
    /// Publish tokens refilled per second per service `sub`; must be positive
    /// (fractions allowed).
    publish_per_sec: f64 = 1.0, most 1_000_000.0;
    /// Longest kick or mute a moderator may give, in seconds.
    max_moderation_secs: u64 = 604_800, least 1, most 31_536_000;
    /// Most users a room keeps kicked or muted at once; expired ones do not count. With
    /// `moderation_binds_address`, each client address a kick or mute is bound to holds
    /// a place too.
    max_restricted_users: usize = 1000, least 1, most 100_000;
    /// A kick or mute also holds for the client addresses (IPv4 /32, IPv6 /64) of the
    /// user's sessions in the room: a kick refuses every hello from them (4001), a mute
    /// mutes every session from them, with or without a token, for the same time
    /// (moderators excepted). Without it, a kicked or muted user could come back
    /// anonymous. The cost: everyone behind one NAT address shares the kick or mute.
    moderation_binds_address: bool = true;
    /// Moderator actions kept in a room's audit table; older ones are pruned.
    audit_retention: usize = 1000, least 1, most 1_000_000;
    /// Reverse proxies (IP addresses or CIDR prefixes such as `10.0.0.0/8`) whose
    /// `X-Forwarded-For` / `Forwarded` headers name the client address. None by default:
    /// headers are never trusted unless the TCP peer is listed. In text form, a
    /// comma-separated list. Local runner only (on Cloudflare the platform sets
    /// `CF-Connecting-IP`).
    trusted_proxies: Vec<String> = Vec::new();
}

/// The text form of a setting's type: how [`Config::set`] parses it and how
/// [`Config::get`] writes it.
trait Value: Sized {
    /// A comma-separated list rather than one value.
    const LIST: bool = false;
    /// An on/off switch (`true` or `false`) rather than a number.
    const SWITCH: bool = false;
    /// Free text (one string) rather than a number.
    const TEXT: bool = false;
    fn parse(key: &str, text: &str) -> Result<Self, ConfigError>;
    fn text(&self) -> String;
}

macro_rules! number_value {
    ($($t:ty),+) => {$(
        impl Value for $t {
            fn parse(key: &str, text: &str) -> Result<Self, ConfigError> {
                text.parse()
                    .map_err(|_| ConfigError(format!("{key}: expected a number, got {text:?}")))
            }
            fn text(&self) -> String {
                self.to_string()
            }
        }
    )+};
}

number_value!(u32, u64, usize);

impl Value for f64 {
    fn parse(key: &str, text: &str) -> Result<Self, ConfigError> {
        // Not `text.parse()`: the same result without core's float parser, which
        // would be about 14 KiB of the Worker's gzipped bundle (see float_parse).
        super::float_parse::parse_f64(text)
            .ok_or_else(|| ConfigError(format!("{key}: expected a number, got {text:?}")))
    }
    fn text(&self) -> String {
        self.to_string()
    }
}

impl Value for bool {
    const SWITCH: bool = true;
    fn parse(key: &str, text: &str) -> Result<Self, ConfigError> {
        match text.to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(ConfigError(format!(
                "{key}: expected true or false, got {text:?}"
            ))),
        }
    }
    fn text(&self) -> String {
        self.to_string()
    }
}

/// One string, taken as given (white space around it trimmed, like every value).
impl Value for String {
    const TEXT: bool = true;
    fn parse(_key: &str, text: &str) -> Result<Self, ConfigError> {
        Ok(text.to_owned())
    }
    fn text(&self) -> String {
        self.clone()
    }
}

impl Value for Vec<String> {
    const LIST: bool = true;
    fn parse(_key: &str, text: &str) -> Result<Self, ConfigError> {
        Ok(text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect())
    }
    fn text(&self) -> String {
        self.join(",")
    }
}

/// Refuses `v` outside the inclusive bounds that are given. NaN passes (it compares
/// false); `validate` refuses it by hand where it matters.
fn check_bounds<T: Value + PartialOrd>(
    key: &str,
    v: &T,
    least: Option<T>,
    most: Option<T>,
) -> Result<(), ConfigError> {
    let low = least.as_ref().is_some_and(|l| v < l);
    let high = most.as_ref().is_some_and(|m| v > m);
    if !(low || high) {
        return Ok(());
    }
    let v = v.text();
    Err(ConfigError(match (least, most) {
        (Some(l), Some(m)) => format!("{key} must be from {} to {}, got {v}", l.text(), m.text()),
        (Some(l), None) => format!("{key} must be at least {}, got {v}", l.text()),
        (None, Some(m)) => format!("{key} must be at most {}, got {v}", m.text()),
        (None, None) => unreachable!("no bound, nothing refused"),
    }))
}

/// One setting of [`Config`], as listed in [`Config::DESCRIPTORS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigKey {
    name: &'static str,
    doc: &'static str,
    list: bool,
    switch: bool,
    text: bool,
}

impl ConfigKey {
    /// The key, as [`Config::set`] takes it (`room_capacity`).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// What the setting means: its documentation as one line of text.
    pub fn doc(&self) -> String {
        self.doc
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The default, in the text form [`Config::set`] parses (empty for an empty list).
    pub fn default_text(&self) -> String {
        Config::default().get(self.name).unwrap_or_default()
    }

    /// The least value [`Config::validate`] accepts, if the key has a plain lower bound.
    pub fn least(&self) -> Option<String> {
        Config::bounds_text(self.name).0
    }

    /// The greatest value [`Config::validate`] accepts (every number has one).
    pub fn most(&self) -> Option<String> {
        Config::bounds_text(self.name).1
    }

    /// True for a list, written comma-separated (`allow_origins`).
    pub fn is_list(&self) -> bool {
        self.list
    }

    /// True for an on/off switch, written `true` or `false` (`auth_required`).
    pub fn is_switch(&self) -> bool {
        self.switch
    }

    /// True for free text, one string (`auth_issuer`); empty by default.
    pub fn is_text(&self) -> bool {
        self.text
    }

    /// The environment variable of a native backend: `EDGE_CHAT_` and the key in upper
    /// case (`EDGE_CHAT_ROOM_CAPACITY`).
    pub fn env_var(&self) -> String {
        format!("EDGE_CHAT_{}", self.worker_var())
    }

    /// The wrangler var of the Worker: the key in upper case (`ROOM_CAPACITY`).
    pub fn worker_var(&self) -> String {
        Config::worker_var(self.name)
    }
}

impl Config {
    /// The wrangler var of a key of [`Config::KEYS`]: the key in upper case
    /// (`ROOM_CAPACITY`), as [`ConfigKey::worker_var`] spells it. For the Worker, which
    /// iterates [`Config::KEYS`] rather than [`Config::DESCRIPTORS`]: the descriptors
    /// hold every key's documentation, about 6 KB of text that would otherwise be
    /// linked into its wasm for nothing.
    pub fn worker_var(key: &str) -> String {
        key.to_ascii_uppercase()
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
    /// Checks that the limits make sense together: each key within its declared bounds,
    /// then the rules that are not plain ranges. Backends call this at start-up and
    /// refuse to run with a bad configuration.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_bounds()?;
        for (key, rate) in [
            ("rate_per_sec", self.rate_per_sec),
            ("room_open_per_sec", self.room_open_per_sec),
            ("publish_per_sec", self.publish_per_sec),
        ] {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(ConfigError(format!("{key} must be a positive number")));
            }
        }
        if !(self.typing_per_sec.is_finite() && self.typing_per_sec > 0.0) {
            return Err(ConfigError(
                "typing_per_sec must be a positive number".to_owned(),
            ));
        }
        if !(self.join_per_sec.is_finite() && self.join_per_sec > 0.0) {
            return Err(ConfigError(
                "join_per_sec must be a positive number".to_owned(),
            ));
        }
        if let Some(bad) = self.trusted_proxies.iter().find(|e| proxy_net(e).is_none()) {
            return Err(ConfigError(format!(
                "trusted_proxies: {:?} is not an IP address or a CIDR prefix like 10.0.0.0/8",
                bad.trim()
            )));
        }
        if self.backlog > self.retention || self.resume_max > self.retention {
            return Err(ConfigError(
                "backlog and resume_max may not exceed retention".to_owned(),
            ));
        }
        for origin in &self.allow_origins {
            if crate::protocol::origin::normalize_origin(origin).is_none() {
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

    /// An upper bound on one chat frame in bytes: the message and the name, every
    /// character escaped as `\uXXXX` at worst (6 bytes), plus the JSON around them
    /// (keys, numbers and a `cid`, which needs no escaping).
    pub fn max_chat_frame_bytes(&self) -> usize {
        // The sender's verified user id rides along on chat frames.
        let chars =
            self.max_message_chars + self.max_name_chars + crate::protocol::user::MAX_USER_CHARS;
        6 * chars + 384
    }

    /// An upper bound on one `roster` entry in bytes, its comma included: the name and
    /// the user id, every character escaped as `\uXXXX` at worst, plus the keys and the
    /// longest role.
    fn max_roster_entry_bytes(&self) -> usize {
        6 * (self.max_name_chars + crate::protocol::user::MAX_USER_CHARS) + 64
    }

    /// An upper bound on one server frame in bytes: the largest of a chat frame, a full
    /// history page (`history_page_max` chat frames, their commas and the envelope) and
    /// a v2 roster frame or member page (at most `roster_inline_max` entries, and never
    /// more than a full room's, plus the envelope with its count and cursor). A frame
    /// this large is never split: it goes out as one WebSocket message, so a backend's
    /// write buffer must take it.
    pub fn max_server_frame_bytes(&self) -> usize {
        let chat = self.max_chat_frame_bytes();
        let page = self.history_page_max * (chat + 1) + 64;
        let roster = self.roster_page_entries() * self.max_roster_entry_bytes() + 96;
        chat.max(page).max(roster)
    }

    /// The most entries one v2 `roster` frame or member page holds.
    pub fn roster_page_entries(&self) -> usize {
        self.roster_inline_max.min(self.room_capacity)
    }

    /// An upper bound on one WebSocket message the server sends: a frame alone
    /// ([`Config::max_server_frame_bytes`]) or a batch (`batch_max_bytes`).
    pub fn max_server_message_bytes(&self) -> usize {
        self.max_server_frame_bytes().max(self.batch_max_bytes)
    }

    /// The limits a client checks before sending, as the JSON body of
    /// `/api/limits`: `{"max_name_chars", "max_message_chars",
    /// "max_frame_bytes", "max_moderation_secs", "history_page_max",
    /// "roster_inline_max", "edit_window_secs"}` (the moderation bound for a
    /// moderator's kick and mute controls, the page sizes for history and for the v2
    /// member list, and how long a message stays editable).
    pub fn client_limits_json(&self) -> String {
        serde_json::json!({
            "max_name_chars": self.max_name_chars,
            "max_message_chars": self.max_message_chars,
            "max_frame_bytes": self.max_frame_bytes,
            "max_moderation_secs": self.max_moderation_secs,
            "history_page_max": self.history_page_max,
            "roster_inline_max": self.roster_inline_max,
            "edit_window_secs": self.edit_window_secs,
        })
        .to_string()
    }
}

/// One `trusted_proxies` entry as a network: a CIDR prefix, or a single address (a
/// network of one). `None` if it is neither.
pub(crate) fn proxy_net(entry: &str) -> Option<ipnet::IpNet> {
    let e = entry.trim();
    e.parse::<ipnet::IpNet>()
        .or_else(|_| e.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .ok()
        .map(|net| net.trunc())
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
        assert_eq!(c.room_open_burst, 20);
        assert_eq!(c.room_open_per_sec, 1.0);
        assert_eq!(c.drain_timeout_ms, 30_000);
        assert!(!c.auth_required);
        assert_eq!(c.max_token_bytes, 4096);
        assert_eq!(c.max_moderation_secs, 604_800);
        assert_eq!(c.max_restricted_users, 1000);
        assert_eq!(c.audit_retention, 1000);
        assert_eq!(c.history_page_max, 100);
        assert_eq!(c.roster_inline_max, 100);
        assert_eq!(c.cid_window_messages, 1000);
        assert_eq!(c.cid_window_ms, 600_000);
        assert_eq!(c.batch_window_ms, 200);
        assert_eq!(c.batch_max, 1000);
        assert_eq!(c.batch_max_bytes, 262_144);
        assert_eq!(c.batch_send_budget, 5_000);
        assert_eq!(c.publish_burst, 20);
        assert_eq!(c.publish_per_sec, 1.0);
        assert_eq!(c.typing_ttl_ms, 5_000);
        assert_eq!(c.typing_max, 10);
        assert_eq!(c.typing_burst, 5);
        assert_eq!(c.typing_per_sec, 1.0);
        c.validate().unwrap();
    }

    #[test]
    fn client_limits_are_json() {
        let v: serde_json::Value =
            serde_json::from_str(&Config::default().client_limits_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "max_name_chars": 32,
                "max_message_chars": 1000,
                "max_frame_bytes": 65536,
                "max_moderation_secs": 604800,
                "history_page_max": 100,
                "roster_inline_max": 100,
                "edit_window_secs": 900,
            })
        );
    }

    #[test]
    fn set_parses_every_key() {
        let mut c = Config::default();
        for key in Config::KEYS {
            let v = match *key {
                "rate_per_sec" => "2.5",
                "allow_origins" => "https://a.example, http://b.example:8080",
                "auth_required" => "TRUE",
                "auth_issuer" => " https://app.example ",
                "moderation_binds_address" => "false",
                _ => "7",
            };
            c.set(key, v).unwrap();
        }
        assert_eq!(c.auth_issuer, "https://app.example");
        assert_eq!(c.auth_audience, "7");
        assert_eq!(c.rate_per_sec, 2.5);
        assert_eq!(c.room_capacity, 7);
        assert_eq!(c.allow_origins.len(), 2);
        assert!(c.auth_required);
        assert!(!c.moderation_binds_address);
        assert!(c
            .set("auth_required", "yes")
            .unwrap_err()
            .0
            .contains("true or false"));
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
        assert!(c.validate().unwrap_err().0.contains("hello_timeout_ms"));
        let mut c = Config::default();
        c.set("allow_origins", "not a url").unwrap();
        assert!(c.validate().is_err());
        let c = Config {
            rate_per_sec: f64::NAN,
            ..Config::default()
        };
        assert!(c.validate().is_err());
        let c = Config {
            room_open_per_sec: 0.0,
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().0.contains("room_open_per_sec"));
    }

    #[test]
    fn descriptors_follow_the_keys() {
        let names: Vec<&str> = Config::DESCRIPTORS.iter().map(ConfigKey::name).collect();
        assert_eq!(names, Config::KEYS);
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "duplicate key");
        // The serde names are the keys, so JSON config and `set` agree.
        let json = serde_json::to_value(Config::default()).unwrap();
        let fields: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        let mut fields_sorted = fields.clone();
        fields_sorted.sort_unstable();
        assert_eq!(fields_sorted, sorted);
        for key in Config::DESCRIPTORS {
            assert!(!key.doc().is_empty(), "{} has no doc", key.name());
            assert!(!key.doc().contains('\n'));
        }
        let capacity = Config::DESCRIPTORS
            .iter()
            .find(|k| k.name() == "room_capacity")
            .unwrap();
        assert_eq!(capacity.env_var(), "EDGE_CHAT_ROOM_CAPACITY");
        assert_eq!(capacity.worker_var(), "ROOM_CAPACITY");
        assert_eq!(capacity.default_text(), "1000");
        assert_eq!(capacity.least().as_deref(), Some("1"));
        assert_eq!(capacity.most().as_deref(), Some("100000"));
    }

    /// Every key round-trips through `set`/`get`, has a default that parses back to
    /// itself, and, if it is a number, bounds that `validate` enforces.
    #[test]
    fn every_key_round_trips_and_has_a_default_and_bounds() {
        for key in Config::DESCRIPTORS {
            let name = key.name();
            let default = Config::default();
            let text = key.default_text();
            assert_eq!(default.get(name), Some(text.clone()));
            let mut c = Config::default();
            c.set(name, &text).unwrap();
            assert_eq!(
                c, default,
                "{name}: default text {text:?} does not round-trip"
            );

            if key.is_switch() {
                assert_eq!((key.least(), key.most()), (None, None));
                for v in ["true", "false"] {
                    c.set(name, v).unwrap();
                    assert_eq!(c.get(name).unwrap(), v);
                }
                continue;
            }
            if key.is_list() {
                assert_eq!((key.least(), key.most()), (None, None));
                c.set(name, " https://a.example , http://b.example:8080,")
                    .unwrap();
                assert_eq!(
                    c.get(name).unwrap(),
                    "https://a.example,http://b.example:8080"
                );
                continue;
            }
            if key.is_text() {
                assert_eq!((key.least(), key.most()), (None, None));
                c.set(name, "  https://app.example  ").unwrap();
                assert_eq!(c.get(name).unwrap(), "https://app.example");
                c.validate().unwrap();
                continue;
            }
            let most = key
                .most()
                .unwrap_or_else(|| panic!("{name}: a number needs an upper bound"));
            c.set(name, &most).unwrap();
            assert_eq!(c.get(name).unwrap(), most, "{name}");
            c.check_bounds().unwrap();
            let over = match most.parse::<u128>() {
                Ok(n) => (n + 1).to_string(),
                Err(_) => format!("{most}.5"),
            };
            // Over the bound: refused when parsed (past the type) or by validate.
            if c.set(name, &over).is_ok() {
                let e = c.validate().unwrap_err();
                assert!(e.0.starts_with(name), "{name}: {e}");
            }
            let mut c = Config::default();
            if let Some(least) = key.least() {
                c.set(name, &least).unwrap();
                assert_eq!(c.get(name).unwrap(), least, "{name}");
                c.check_bounds().unwrap();
                let n: u128 = least.parse().unwrap();
                if n > 0 {
                    c.set(name, &(n - 1).to_string()).unwrap();
                    let e = c.validate().unwrap_err();
                    assert!(e.0.starts_with(name), "{name}: {e}");
                }
            }
        }
    }

    #[test]
    fn deadline_and_refill_rate_have_upper_bounds() {
        let mut c = Config::default();
        c.set("hello_timeout_ms", "600000").unwrap();
        c.validate().unwrap();
        c.set("hello_timeout_ms", "18446744073709551615").unwrap();
        assert_eq!(
            c.validate().unwrap_err().0,
            "hello_timeout_ms must be from 1 to 600000, got 18446744073709551615"
        );
        let mut c = Config::default();
        c.set("rate_per_sec", "1000000").unwrap();
        c.validate().unwrap();
        c.set("rate_per_sec", "0.001").unwrap();
        c.validate().unwrap();
        c.set("rate_per_sec", "2000000").unwrap();
        assert_eq!(
            c.validate().unwrap_err().0,
            "rate_per_sec must be at most 1000000, got 2000000"
        );
        for bad in ["0", "-1", "inf", "NaN"] {
            c.set("rate_per_sec", bad).unwrap();
            assert!(
                c.validate().unwrap_err().0.contains("rate_per_sec"),
                "{bad}"
            );
        }
    }

    #[test]
    fn docs_are_one_line_of_the_declared_text() {
        let capacity = Config::DESCRIPTORS
            .iter()
            .find(|k| k.name() == "room_capacity")
            .unwrap();
        assert_eq!(
            capacity.doc(),
            "Most connections (named or not) per room; the next gets 1013 \"Room is full\"."
        );
        let frame = Config::DESCRIPTORS
            .iter()
            .find(|k| k.name() == "max_frame_bytes")
            .unwrap();
        assert_eq!(
            frame.doc(),
            "Largest incoming message in bytes (after reassembly/decompression). Over it: \
             close 1009."
        );
    }

    #[test]
    fn errors_display_their_message() {
        let e = ConfigError("room_capacity must be from 1 to 100000, got 0".to_owned());
        assert_eq!(e.to_string(), e.0);
    }

    #[test]
    fn backlog_and_resume_max_may_equal_retention_but_not_exceed_it() {
        let at = Config {
            retention: 50,
            backlog: 50,
            resume_max: 50,
            ..Config::default()
        };
        at.validate().unwrap();
        for over in [
            Config {
                backlog: 51,
                ..at.clone()
            },
            Config {
                resume_max: 51,
                ..at.clone()
            },
        ] {
            assert_eq!(
                over.validate().unwrap_err().0,
                "backlog and resume_max may not exceed retention"
            );
        }
    }

    #[test]
    fn derived_sizes() {
        let c = Config {
            room_capacity: 10,
            backlog: 7,
            resume_max: 20,
            send_queue_frames: 100,
            max_message_chars: 40,
            max_name_chars: 8,
            ..Config::default()
        };
        // The roster, the larger of backlog and resume, joined and ready.
        assert_eq!(c.join_burst_frames(), 10 + 20 + 2);
        let c = Config { backlog: 30, ..c };
        assert_eq!(c.join_burst_frames(), 10 + 30 + 2);
        assert_eq!(c.send_queue_bound(), 42 + 100);
        let user = crate::protocol::user::MAX_USER_CHARS;
        let chat = 6 * (40 + 8 + user) + 384;
        assert_eq!(c.max_chat_frame_bytes(), chat);
        // A full history page is the largest frame.
        assert_eq!(
            c.max_server_frame_bytes(),
            c.history_page_max * (chat + 1) + 64
        );
        // The bound holds for a message, a name and a user id made only of escaped
        // characters, with the longest cid.
        let worst = serde_json::json!({
            "name": "\u{1}".repeat(8),
            "message": "\u{1}".repeat(40),
            "timestamp": u64::MAX,
            "seq": u64::MAX,
            "user": "\u{1}".repeat(user),
            "cid": "c".repeat(64),
        })
        .to_string();
        assert!(worst.len() <= c.max_chat_frame_bytes(), "{}", worst.len());
        // The roster of a full room, every entry as long as it can be.
        let name = "\u{1}".repeat(8);
        let user = "\"".repeat(user);
        let entry = crate::protocol::server_frame::RosterEntry {
            name: &name,
            user: Some(&user),
            role: Some(crate::protocol::user::Role::Moderator),
        };
        let roster = crate::protocol::server_frame::ServerFrame::Roster {
            roster: vec![entry.clone(); c.room_capacity],
        }
        .encode();
        assert!(
            roster.len() <= c.max_server_frame_bytes(),
            "{}",
            roster.len()
        );
        // A full paged roster frame and a full member page, with the largest count and
        // cursor, fit the bound when roster entries are the largest frame.
        let paged = Config {
            roster_inline_max: 1000,
            room_capacity: 5000,
            history_page_max: 1,
            ..c.clone()
        };
        let entries = vec![entry; paged.roster_inline_max];
        for frame in [
            crate::protocol::server_frame::ServerFrame::RosterPage {
                roster: entries.clone(),
                count: u64::MAX,
                next: u64::MAX.to_string(),
            },
            crate::protocol::server_frame::ServerFrame::Members {
                members: crate::protocol::server_frame::MemberPage {
                    page: entries,
                    count: u64::MAX,
                    next: Some(u64::MAX.to_string()),
                },
            },
        ] {
            let len = frame.encode().len();
            assert!(len <= paged.max_server_frame_bytes(), "{len}");
        }
        // However big the room, the roster term is `roster_inline_max` entries: the
        // room size no longer counts.
        let big = Config {
            room_capacity: 100_000,
            ..paged.clone()
        };
        let entry_bytes = 6 * (8 + crate::protocol::user::MAX_USER_CHARS) + 64;
        assert_eq!(big.max_server_frame_bytes(), 1000 * entry_bytes + 96);
        assert_eq!(big.max_server_frame_bytes(), paged.max_server_frame_bytes());
        // A message is a frame alone or a batch.
        assert_eq!(c.max_server_message_bytes(), c.batch_max_bytes);
    }

    /// Cloudflare refuses WebSocket messages over 1 MiB: with the defaults, no frame
    /// and no batch comes near it (the largest frame is a history page of the longest
    /// messages, about 680 KiB), and `batch_max_bytes` cannot be set past it.
    #[test]
    fn default_messages_fit_in_one_mebibyte() {
        let c = Config::default();
        assert!(c.max_server_message_bytes() <= 1 << 20);
        assert_eq!(c.max_server_frame_bytes(), 100 * (6960 + 1) + 64);
        let over = Config {
            batch_max_bytes: (1 << 20) + 1,
            ..Config::default()
        };
        assert!(over
            .validate()
            .unwrap_err()
            .0
            .starts_with("batch_max_bytes"));
    }

    #[test]
    fn join_refill_must_be_positive_and_proxies_must_be_addresses() {
        let mut c = Config::default();
        for bad in ["0", "-1", "inf", "NaN"] {
            c.set("join_per_sec", bad).unwrap();
            assert!(
                c.validate().unwrap_err().0.contains("join_per_sec"),
                "{bad}"
            );
        }
        let mut c = Config::default();
        c.set("trusted_proxies", "127.0.0.1, 10.0.0.0/8,::1")
            .unwrap();
        c.validate().unwrap();
        c.set("trusted_proxies", "127.0.0.1,proxy.local").unwrap();
        assert_eq!(
            c.validate().unwrap_err().0,
            "trusted_proxies: \"proxy.local\" is not an IP address or a CIDR prefix like 10.0.0.0/8"
        );
    }

    #[test]
    fn deserializes_partial_json_with_defaults() {
        let c: Config = serde_json::from_str(r#"{"room_capacity": 3}"#).unwrap();
        assert_eq!(c.room_capacity, 3);
        assert_eq!(c.backlog, 100);
        assert!(serde_json::from_str::<Config>(r#"{"room_capcity": 3}"#).is_err());
    }
}
