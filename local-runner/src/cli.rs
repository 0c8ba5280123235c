//! Command-line flags (each with an `EDGE_CHAT_*` environment twin) and the handler
//! `Config` built from them.
//!
//! The runner's own flags (`--port`, `--data-dir`, …) are derived below. The chat
//! settings are not written here at all: [`ConfigOverrides`] makes one flag per entry
//! of `Config::DESCRIPTORS`, so a key added to the handler is a flag at once, and no
//! key name, default or help text is restated. For key `room_capacity`:
//!
//! - flag `--room-capacity`, the key with dashes;
//! - environment twin `EDGE_CHAT_ROOM_CAPACITY` (`ConfigKey::env_var`);
//! - help: the handler's doc of the key, its bounds and its `[default: …]`;
//! - the value is checked with `Config::set` when parsed (so a bad number is a usage
//!   error with the handler's message) and applied with it by [`Cli::config`].
//!
//! A list key (`allow_origins`) is repeatable and its environment twin is
//! comma-separated. It also answers to its singular, the spelling it had before
//! (`--allow-origin`, and `EDGE_CHAT_ALLOW_ORIGIN` when `EDGE_CHAT_ALLOW_ORIGINS` is
//! unset). A switch (`auth_required`) is on when given bare (`--auth-required`), or
//! takes `=true`/`=false`.
//!
//! The join-token secret is not a `Config` key (it must never show in `--help` or a
//! settings list): `--auth-secret-file PATH`, or the secret itself in
//! `EDGE_CHAT_AUTH_SECRET`. The `token` subcommand mints a token with it.

use chat_handler::identity::{self, AuthSecret};
use chat_handler::ConfigKey;
use chat_handler::{Config, ConfigError};
use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches, Parser, Subcommand};
use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "local-runner",
    version,
    about = "edge-chat on one machine: HTTP, static files, WebSockets and SQLite"
)]
pub(crate) struct Cli {
    /// Address to listen on.
    #[arg(long, env = "EDGE_CHAT_BIND", default_value = "127.0.0.1")]
    pub(crate) bind: IpAddr,
    /// Port to listen on; 0 picks a free one (the printed URL shows it).
    #[arg(long, env = "EDGE_CHAT_PORT", default_value_t = 8787)]
    pub(crate) port: u16,
    /// Directory for the SQLite database (created if missing).
    #[arg(long, env = "EDGE_CHAT_DATA_DIR", default_value = "./data")]
    pub(crate) data_dir: PathBuf,
    /// Keep history in memory only; it is lost when the process exits.
    #[arg(long, env = "EDGE_CHAT_IN_MEMORY")]
    pub(crate) in_memory: bool,
    /// Directory of the browser client, served at `/`.
    #[arg(long, env = "EDGE_CHAT_STATIC_DIR", default_value = "static/")]
    pub(crate) static_dir: PathBuf,
    /// Seconds between server pings; a connection missing two pongs in a row is closed.
    #[arg(long, env = "EDGE_CHAT_PING_INTERVAL_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) ping_interval_secs: u64,
    /// Most connections at once, WebSockets included; one more is answered 503. 0: half
    /// the open-file limit (raised to its hard limit at start), less a reserve.
    #[arg(long, env = "EDGE_CHAT_MAX_CONNECTIONS", default_value_t = 0)]
    pub(crate) max_connections: usize,
    /// Most connections at once from one client address (IPv4 address, IPv6 /64),
    /// WebSockets included; one more is answered 429. Counted by the TCP peer, except
    /// for `--trusted-proxies`, whose WebSockets count for the client they forward.
    /// Default: 64, or half of --max-connections if that is less.
    #[arg(long, env = "EDGE_CHAT_MAX_CONNECTIONS_PER_ADDRESS",
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub(crate) max_connections_per_address: Option<u64>,
    /// Seconds a client has to send a request's headers; an idle keep-alive connection
    /// is closed after as long.
    #[arg(long, env = "EDGE_CHAT_HEADER_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub(crate) header_timeout_secs: u64,
    /// Seconds an HTTP answer may wait for the client to read any of it (the socket
    /// taking no byte); then the connection is closed. Not for WebSockets, which have
    /// --drain-timeout-ms.
    #[arg(long, env = "EDGE_CHAT_WRITE_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub(crate) write_timeout_secs: u64,
    /// Seconds an HTTP connection with no answer waiting may go without receiving a
    /// byte (an idle keep-alive connection, or headers that stop coming) before it is
    /// closed. Not for WebSockets, which have pings.
    #[arg(long, env = "EDGE_CHAT_IDLE_TIMEOUT_SECS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) idle_timeout_secs: u64,
    /// Most rooms kept in storage (a room is kept once it has stored a message). Past
    /// it, an upgrade that would open a new room is answered 507; stored rooms keep
    /// working.
    #[arg(long, env = "EDGE_CHAT_MAX_ROOMS_STORED", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub(crate) max_rooms_stored: u64,
    /// Most threads the async runtime may add for waiting work beside its workers: a
    /// room that reads storage waits on one of these while its worker goes on with the
    /// other sockets (reads queue on the one storage thread anyway, so more would only
    /// wait longer); static files are read on them too. Each costs a stack and its
    /// allocator's own free memory for as long as it lives.
    #[arg(long, env = "EDGE_CHAT_MAX_BLOCKING_THREADS", default_value_t = 8,
          value_parser = clap::value_parser!(u16).range(1..=512))]
    pub(crate) max_blocking_threads: u16,
    /// Emulate Durable Object hibernation: a room with connections but no events for
    /// this many seconds drops its state and rebuilds it on the next event. 0 = never.
    #[arg(long, env = "EDGE_CHAT_HIBERNATE_AFTER_SECS", default_value_t = 0)]
    pub(crate) hibernate_after_secs: u64,
    /// Test only, hidden from `--help`, and there only with the cargo feature
    /// `test-faults` (the conformance build's): storage fails on purpose, so the
    /// conformance suite can check what clients get when it does. Storing a message
    /// whose text contains MARKER fails, and so does reading history (backlog or resume
    /// gap) in a room whose name contains MARKER.
    #[cfg(feature = "test-faults")]
    #[arg(long, env = "EDGE_CHAT_TEST_STORAGE_FAULTS", value_name = "MARKER", hide = true,
          value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub(crate) test_storage_faults: Option<String>,
    /// File holding the secret that signs join tokens (HS256, at least 32 bytes;
    /// surrounding white space ignored). Turns signed identity on. Or put the secret
    /// itself in EDGE_CHAT_AUTH_SECRET; this flag wins over it.
    #[arg(long, global = true, value_name = "PATH")]
    pub auth_secret_file: Option<PathBuf>,
    /// Serve `GET /metrics` (Prometheus text format) on this address only, e.g.
    /// 127.0.0.1:9090, and not on the public listener. Without it, /metrics is served on
    /// the public listener.
    #[arg(long, env = "EDGE_CHAT_METRICS_BIND", value_name = "ADDR:PORT")]
    pub(crate) metrics_bind: Option<SocketAddr>,

    // Every setting of the handler's `Config`, one flag each (see [`ConfigOverrides`]).
    #[command(
        flatten,
        next_help_heading = "Chat settings (docs/operating.md, Limits)"
    )]
    pub config: ConfigOverrides,

    /// Without a subcommand, the runner serves the chat.
    #[command(subcommand)]
    pub command: Option<Tool>,
}

/// The environment variable holding the join-token secret itself.
pub const AUTH_SECRET_ENV: &str = "EDGE_CHAT_AUTH_SECRET";

/// What the runner can do besides serving.
#[derive(Debug, Clone, Subcommand)]
pub enum Tool {
    /// Print a join token signed with the auth secret, for development and tests (an
    /// app's backend mints the same with any JWT library: see the README).
    Token(TokenArgs),
}

/// The claims of `local-runner token`. A moderator's or a service's token must say
/// where it acts: `--room NAME` or `--all-rooms` (the server refuses either without a
/// `room`).
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("scope").args(["room", "all_rooms"]).multiple(false)))]
pub struct TokenArgs {
    /// The user id (`sub`): 1 to 64 characters.
    #[arg(long)]
    pub sub: String,
    /// The display name (`name`); the user id when absent.
    #[arg(long)]
    pub name: Option<String>,
    /// The role (`role`): `moderator` (joins and moderates), or `service` (publishes
    /// with `POST /api/room/NAME/messages`, never joins). Needs `--room` or `--all-rooms`.
    #[arg(long, value_parser = ["moderator", "service"], requires = "scope")]
    pub role: Option<String>,
    /// The one room (name or private id) the token is valid for (`room`); any when absent
    /// (a plain user's token only).
    #[arg(long)]
    pub room: Option<String>,
    /// Valid in every room (`"room": "*"`): for a moderator (or a service) of every room.
    #[arg(long)]
    pub all_rooms: bool,
    /// Seconds until the token expires (`exp` = now + ttl).
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    pub ttl: u64,
}

impl Cli {
    /// Parses flags and environment; on error or `--help` clap prints and exits
    /// (status 2 for usage errors).
    pub(crate) fn parse_from_env() -> Self {
        Self::parse_args(std::env::args_os())
    }

    pub(crate) fn parse_args<I, T>(args: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Self::parse_from(args)
    }

    /// Parses like [`Cli::parse_args`] but returns clap's error instead of exiting.
    #[cfg(test)]
    pub(crate) fn try_parse_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Self::try_parse_from(args)
    }

    /// The handler configuration: defaults, overridden through `Config::set` by the
    /// given flags, validated.
    pub(crate) fn config(&self) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        for (key, value) in self.config.overrides() {
            c.set(key, value)?;
        }
        c.validate()?;
        Ok(c)
    }

    /// The join-token secret: from `--auth-secret-file`, else from
    /// `EDGE_CHAT_AUTH_SECRET` (`env` looks a variable up), else none (identity off).
    pub fn auth_secret(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<AuthSecret>, ConfigError> {
        let text = match &self.auth_secret_file {
            Some(path) => std::fs::read_to_string(path).map_err(|e| {
                ConfigError(format!(
                    "cannot read --auth-secret-file {}: {e}",
                    path.display()
                ))
            })?,
            None => match env(AUTH_SECRET_ENV) {
                Some(text) => text,
                None => return Ok(None),
            },
        };
        AuthSecret::new(&text).map(Some)
    }

    /// The configuration and the secret together, checked against each other
    /// (`auth_required` needs a secret).
    pub fn settings(&self) -> Result<(Config, Option<AuthSecret>), ConfigError> {
        let config = self.config()?;
        let secret = self.auth_secret(|var| std::env::var(var).ok())?;
        identity::check_setup(&config, secret.as_ref())?;
        Ok((config, secret))
    }
}

/// The chat settings given on the command line or in the environment, as text for
/// `Config::set`. Its clap arguments are built from `Config::DESCRIPTORS` (see the
/// module docs), so it has no field per key.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ConfigOverrides {
    /// (key, value) for each setting given, in the order of `Config::KEYS`; a list's
    /// items joined with commas.
    overrides: Vec<(&'static str, String)>,
}

impl ConfigOverrides {
    /// The settings given, as (key, text) pairs.
    pub(crate) fn overrides(&self) -> &[(&'static str, String)] {
        &self.overrides
    }

    /// Reads every key from parsed arguments; `env` looks up an environment variable
    /// (only the singular fallback of a list key is read here; clap reads the rest).
    fn read(matches: &ArgMatches, env: impl Fn(&str) -> Option<String>) -> Self {
        let mut overrides = Vec::new();
        for key in Config::DESCRIPTORS {
            let given = matches
                .get_many::<String>(key.name())
                .map(|values| values.map(String::as_str).collect::<Vec<_>>().join(","));
            let given = given.or_else(|| singular_env_var(key).and_then(|var| env(&var)));
            if let Some(value) = given {
                overrides.push((key.name(), value));
            }
        }
        ConfigOverrides { overrides }
    }
}

/// The flag of a key: the key with dashes (`--room-capacity`).
pub(crate) fn flag_name(key: &ConfigKey) -> String {
    key.name().replace('_', "-")
}

/// The singular of a list key (`allow_origin` for `allow_origins`, `trusted_proxy` for
/// `trusted_proxies`): its flag alias, one item per use, as the runner spelled
/// `--allow-origin` before flags were generated.
fn singular(key: &ConfigKey) -> Option<String> {
    let name = key.name();
    key.is_list()
        .then(|| {
            name.strip_suffix("ies")
                .map(|stem| format!("{stem}y"))
                .or_else(|| name.strip_suffix('s').map(str::to_owned))
        })
        .flatten()
}

/// The environment variable read for a list key when its own twin is unset.
pub(crate) fn singular_env_var(key: &ConfigKey) -> Option<String> {
    singular(key).map(|s| format!("EDGE_CHAT_{}", s.to_ascii_uppercase()))
}

/// The clap argument of one key. It has no clap default, so only given keys override
/// the handler's defaults; the help shows the handler's default instead.
fn limit_arg(key: &ConfigKey) -> Arg {
    let name = key.name();
    let mut help = key.doc();
    if key.is_list() {
        help.push_str(" Repeatable.");
    }
    match (key.least(), key.most()) {
        (Some(least), Some(most)) => help.push_str(&format!(" [range: {least} to {most}]")),
        (Some(least), None) => help.push_str(&format!(" [range: at least {least}]")),
        (None, Some(most)) => help.push_str(&format!(" [range: up to {most}]")),
        (None, None) => {}
    }
    match key.default_text() {
        d if d.is_empty() => help.push_str(" [default: none]"),
        d => help.push_str(&format!(" [default: {d}]")),
    }
    let arg = Arg::new(name)
        .long(flag_name(key))
        .env(key.env_var())
        .value_name(
            singular(key)
                .as_deref()
                .unwrap_or(name)
                .to_ascii_uppercase(),
        )
        .value_parser(move |text: &str| -> Result<String, String> {
            Config::default()
                .set(name, text)
                .map(|()| text.to_owned())
                .map_err(|e| e.0)
        })
        .help(help);
    match singular(key) {
        Some(one) => arg
            .action(ArgAction::Append)
            .value_delimiter(',')
            .visible_alias(one.replace('_', "-")),
        // Bare means on; a value must be attached (`=false`) so that a subcommand or
        // the next flag is never taken for it.
        None if key.is_switch() => arg
            .action(ArgAction::Set)
            .num_args(0..=1)
            .require_equals(true)
            .default_missing_value("true"),
        None => arg.action(ArgAction::Set),
    }
}

impl Args for ConfigOverrides {
    fn augment_args(cmd: Command) -> Command {
        cmd.args(Config::DESCRIPTORS.iter().map(limit_arg))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for ConfigOverrides {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(Self::read(matches, |var| std::env::var(var).ok()))
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        for (key, value) in Self::from_arg_matches(matches)?.overrides {
            match self.overrides.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = value,
                None => self.overrides.push((key, value)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::collections::HashSet;
    use std::path::Path;

    fn key(name: &str) -> &'static ConfigKey {
        Config::DESCRIPTORS
            .iter()
            .find(|k| k.name() == name)
            .unwrap()
    }

    #[test]
    fn the_command_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// No key can be left without a flag: each descriptor has its flag, named after
    /// the key, with its `EDGE_CHAT_*` twin, and a value given to it reaches the
    /// handler's `Config` through `Config::set`.
    #[test]
    fn every_key_has_a_flag_with_an_env_twin() {
        let cmd = Cli::command();
        let mut args = vec!["local-runner".to_owned()];
        for key in Config::DESCRIPTORS {
            let arg = cmd
                .get_arguments()
                .find(|a| a.get_id() == key.name())
                .unwrap_or_else(|| panic!("{}: no flag", key.name()));
            assert_eq!(arg.get_long(), Some(flag_name(key).as_str()));
            assert_eq!(
                arg.get_env().and_then(|e| e.to_str()),
                Some(key.env_var().as_str())
            );
            assert!(key.env_var().starts_with("EDGE_CHAT_"));
            let help = arg.get_help().unwrap().to_string();
            let default = match key.default_text() {
                d if d.is_empty() => "none".to_owned(),
                d => d,
            };
            assert!(
                help.ends_with(&format!("[default: {default}]")),
                "{}: {help}",
                key.name()
            );
            assert!(help.starts_with(&key.doc()), "{}: {help}", key.name());
            // A value within the key's bounds (not its default).
            let value = if key.is_list() {
                "https://a.example".to_owned()
            } else if key.is_switch() {
                "true".to_owned()
            } else {
                key.least().unwrap_or_else(|| "0.5".to_owned())
            };
            args.push(format!("--{}={value}", flag_name(key)));
        }
        let cli = Cli::try_parse_args(&args).unwrap();
        let mut want = Config::default();
        for arg in &args[1..] {
            let (flag, value) = arg.split_once('=').unwrap();
            let name = flag.trim_start_matches("--").replace('-', "_");
            want.set(&name, value).unwrap();
        }
        let given: Vec<&str> = cli.config.overrides().iter().map(|(k, _)| *k).collect();
        assert_eq!(given, Config::KEYS);
        let mut got = Config::default();
        for (k, v) in cli.config.overrides() {
            got.set(k, v).unwrap();
        }
        assert_eq!(got, want);
        assert_ne!(got, Config::default());
    }

    /// Flags and environment variables are one per key, and none collides with the
    /// runner's own (`--port`, `EDGE_CHAT_PORT`, …).
    #[test]
    fn flags_and_env_vars_are_distinct() {
        let cmd = Cli::command();
        let mut longs = HashSet::new();
        let mut envs = HashSet::new();
        for arg in cmd.get_arguments() {
            for long in arg.get_long_and_visible_aliases().unwrap_or_default() {
                assert!(longs.insert(long.to_owned()), "--{long} twice");
            }
            if let Some(env) = arg.get_env() {
                assert!(envs.insert(env.to_owned()), "{env:?} twice");
            }
        }
        for key in Config::DESCRIPTORS {
            if let Some(var) = singular_env_var(key) {
                assert!(envs.insert(var.clone().into()), "{var} twice");
            }
        }
    }

    /// The Worker reads each key from the var `ConfigKey::worker_var` names: the
    /// mapping is total, injective and invertible (the key is the var in lower case).
    #[test]
    fn every_key_has_a_worker_var() {
        let mut vars = HashSet::new();
        for key in Config::DESCRIPTORS {
            let var = key.worker_var();
            assert!(
                !var.is_empty()
                    && var
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'),
                "{var}"
            );
            assert_eq!(var.to_ascii_lowercase(), key.name());
            assert_eq!(key.env_var(), format!("EDGE_CHAT_{var}"));
            assert!(vars.insert(var), "{} shares its var", key.name());
        }
        assert_eq!(vars.len(), Config::KEYS.len());
    }

    /// wrangler.toml lists every var above `[vars]`, with the handler's default, and
    /// no other.
    #[test]
    fn wrangler_toml_lists_every_worker_var() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../wrangler.toml");
        let toml = std::fs::read_to_string(path).unwrap();
        let mut listed = Vec::new();
        for line in toml.lines() {
            let Some(comment) = line.strip_prefix('#') else {
                continue;
            };
            let Some((var, rest)) = comment.trim().split_once(" = \"") else {
                continue;
            };
            if !var
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            {
                continue;
            }
            let value = rest.split_once('"').map(|(v, _)| v).unwrap_or(rest);
            listed.push((var.to_owned(), value.to_owned()));
        }
        let want: Vec<(String, String)> = Config::DESCRIPTORS
            .iter()
            .map(|k| (k.worker_var(), k.default_text()))
            .collect();
        assert_eq!(listed, want, "the var list in {path}");
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
        assert_eq!(
            c.allow_origins,
            ["https://a.example", "http://b.example:8080"]
        );
        assert_eq!(c.hello_timeout_ms, 2500);
        let d = Config::default();
        assert_eq!(c.backlog, d.backlog);
        assert_eq!(c.room_capacity, d.room_capacity);
        assert_eq!(cli.port, 8787);
    }

    #[test]
    fn allow_origins_keeps_its_singular_spellings() {
        let cli = Cli::parse_args([
            "local-runner",
            "--allow-origins",
            "https://a.example,https://b.example",
            "--allow-origin",
            "https://c.example",
        ]);
        let c = cli.config().unwrap();
        assert_eq!(
            c.allow_origins,
            [
                "https://a.example",
                "https://b.example",
                "https://c.example"
            ]
        );
        let origins = key("allow_origins");
        assert_eq!(
            singular_env_var(origins).as_deref(),
            Some("EDGE_CHAT_ALLOW_ORIGIN")
        );
        assert_eq!(singular_env_var(key("room_capacity")), None);
        // The singular variable is read when neither the flag nor the plural is given…
        let matches = Cli::command().get_matches_from(["local-runner"]);
        let env = |var: &str| {
            (var == "EDGE_CHAT_ALLOW_ORIGIN")
                .then(|| "https://d.example, https://e.example".to_owned())
        };
        let given = ConfigOverrides::read(&matches, env);
        assert_eq!(
            given.overrides(),
            [(
                "allow_origins",
                "https://d.example, https://e.example".to_owned()
            )]
        );
        // …and not over a flag.
        let matches = Cli::command().get_matches_from([
            "local-runner",
            "--allow-origin",
            "https://c.example",
        ]);
        let given = ConfigOverrides::read(&matches, env);
        assert_eq!(
            given.overrides(),
            [("allow_origins", "https://c.example".to_owned())]
        );
    }

    #[test]
    fn invalid_values_are_refused_by_validate() {
        let cli = Cli::parse_args(["local-runner", "--room-capacity", "0"]);
        assert!(cli.config().unwrap_err().0.contains("room_capacity"));
        let cli = Cli::parse_args(["local-runner", "--allow-origin", "nope"]);
        assert!(cli.config().is_err());
        let cli = Cli::parse_args(["local-runner", "--hello-timeout-ms", "0"]);
        assert!(cli.config().unwrap_err().0.contains("hello_timeout_ms"));
        let cli = Cli::parse_args(["local-runner", "--hello-timeout-ms", "600001"]);
        assert!(cli.config().unwrap_err().0.contains("hello_timeout_ms"));
    }

    #[test]
    fn unparsable_values_are_usage_errors_with_the_handlers_message() {
        let e = Cli::try_parse_args(["local-runner", "--rate-burst", "ten"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
        assert_eq!(e.exit_code(), 2);
        let mut c = Config::default();
        let want = c.set("rate_burst", "ten").unwrap_err().0;
        assert!(e.to_string().contains(&want), "{e}");
    }

    /// The storage-fault hook is for tests: it parses, but `--help` does not show it.
    #[cfg(feature = "test-faults")]
    #[test]
    fn the_test_storage_fault_hook_is_hidden() {
        let cli = Cli::parse_args(["local-runner", "--test-storage-faults", "BOOM"]);
        assert_eq!(cli.test_storage_faults.as_deref(), Some("BOOM"));
        assert_eq!(Cli::parse_args(["local-runner"]).test_storage_faults, None);
        assert!(Cli::try_parse_args(["local-runner", "--test-storage-faults", ""]).is_err());
        let help = Cli::command().render_long_help().to_string();
        assert!(!help.contains("test-storage-faults"), "{help}");
        assert!(!help.contains("EDGE_CHAT_TEST_STORAGE_FAULTS"), "{help}");
    }

    /// Built without the conformance suite's feature, the runner has no such hook.
    #[cfg(not(feature = "test-faults"))]
    #[test]
    fn without_the_test_faults_feature_there_is_no_storage_fault_hook() {
        let e = Cli::try_parse_args(["local-runner", "--test-storage-faults", "BOOM"]);
        assert_eq!(
            e.unwrap_err().kind(),
            clap::error::ErrorKind::UnknownArgument
        );
        let help = Cli::command().render_long_help().to_string();
        assert!(!help.contains("test-storage-faults"), "{help}");
    }

    #[test]
    fn switches_are_bare_or_take_an_attached_value() {
        let on = |args: &[&str]| {
            let mut all = vec!["local-runner"];
            all.extend_from_slice(args);
            Cli::try_parse_args(all).map(|cli| cli.config().unwrap().auth_required)
        };
        assert!(!on(&[]).unwrap());
        assert!(on(&["--auth-required"]).unwrap());
        assert!(on(&["--auth-required=true"]).unwrap());
        assert!(!on(&["--auth-required=false"]).unwrap());
        assert!(on(&["--auth-required=maybe"]).is_err());
        // A bare switch before a subcommand leaves the subcommand alone.
        let cli = Cli::try_parse_args(["local-runner", "--auth-required", "token", "--sub", "u1"])
            .unwrap();
        assert!(matches!(cli.command, Some(Tool::Token(_))));
        assert!(cli.config().unwrap().auth_required);
    }

    #[test]
    fn the_runner_serves_without_a_subcommand_and_mints_with_token() {
        let cli = Cli::parse_args(["local-runner", "--port", "9000"]);
        assert!(cli.command.is_none());
        let cli = Cli::parse_args([
            "local-runner",
            "token",
            "--sub",
            "u42",
            "--name",
            "Ana",
            "--role",
            "moderator",
            "--room",
            "lobby",
            "--ttl",
            "60",
            "--auth-secret-file",
            "/s",
        ]);
        let Some(Tool::Token(t)) = &cli.command else {
            panic!("no token subcommand: {cli:?}");
        };
        assert_eq!(
            (t.sub.as_str(), t.name.as_deref(), t.role.as_deref(), t.ttl),
            ("u42", Some("Ana"), Some("moderator"), 60)
        );
        assert_eq!((t.room.as_deref(), t.all_rooms), (Some("lobby"), false));
        assert_eq!(cli.auth_secret_file.as_deref(), Some(Path::new("/s")));
        assert!(
            Cli::try_parse_args(["local-runner", "token", "--sub", "u", "--role", "admin"])
                .is_err()
        );
        assert!(
            Cli::try_parse_args(["local-runner", "token", "--sub", "u", "--ttl", "0"]).is_err()
        );
        assert!(
            Cli::try_parse_args(["local-runner", "token"]).is_err(),
            "--sub is required"
        );
    }

    #[test]
    fn a_moderator_token_needs_room_or_all_rooms() {
        let token = |extra: &[&str]| {
            let mut args = vec!["local-runner", "token", "--sub", "u"];
            args.extend_from_slice(extra);
            Cli::try_parse_args(args)
        };
        let err = token(&["--role", "moderator"]).unwrap_err();
        assert_eq!(
            err.kind(),
            clap::error::ErrorKind::MissingRequiredArgument,
            "{err}"
        );
        assert!(err.to_string().contains("--room"), "{err}");
        assert!(token(&["--role", "moderator", "--room", "lobby"]).is_ok());
        let Some(Tool::Token(t)) = token(&["--role", "moderator", "--all-rooms"])
            .unwrap()
            .command
        else {
            panic!("no token subcommand");
        };
        assert!(t.all_rooms && t.room.is_none());
        // It mints `"room": "*"`: a moderator in any room.
        let secret = chat_handler::AuthSecret::new(&"k".repeat(32)).unwrap();
        let now_ms = 1_764_000_000_000;
        let minted = crate::token_for(&secret, &t, now_ms).unwrap();
        let c = Config::default();
        for room in ["lobby", "other"] {
            let id = identity::verify(&minted, &secret, room, now_ms, &c).unwrap();
            assert_eq!(id.role, Some(chat_handler::Role::Moderator), "{room}");
        }
        assert!(
            token(&["--room", "a", "--all-rooms"]).is_err(),
            "one room or all, not both"
        );
        // A plain user's token needs neither.
        assert!(token(&[]).is_ok() && token(&["--all-rooms"]).is_ok());
        // A service token needs a scope too, and mints the service role.
        assert!(token(&["--role", "service"]).is_err());
        let Some(Tool::Token(t)) = token(&["--role", "service", "--room", "lobby"])
            .unwrap()
            .command
        else {
            panic!("no token subcommand");
        };
        let minted = crate::token_for(&secret, &t, now_ms).unwrap();
        let id = identity::verify(&minted, &secret, "lobby", now_ms, &c).unwrap();
        assert_eq!(id.role, Some(chat_handler::Role::Service));
    }

    #[test]
    fn the_secret_comes_from_the_file_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, format!("{}\n", "f".repeat(32))).unwrap();
        let env_secret = |var: &str| (var == AUTH_SECRET_ENV).then(|| "e".repeat(32));
        let none = |_: &str| None;
        let cli = Cli::parse_args(["local-runner"]);
        assert!(cli.auth_secret(none).unwrap().is_none());
        assert!(cli.auth_secret(env_secret).unwrap().is_some());
        let short = |var: &str| (var == AUTH_SECRET_ENV).then(|| "short".to_owned());
        assert!(cli
            .auth_secret(short)
            .unwrap_err()
            .0
            .contains("at least 32 bytes"));
        let cli = Cli::parse_args(["local-runner", "--auth-secret-file", file.to_str().unwrap()]);
        assert!(cli.auth_secret(none).unwrap().is_some());
        // The file wins over the environment: a token minted with the file's secret
        // verifies with what was read.
        let secret = cli.auth_secret(env_secret).unwrap().unwrap();
        let with_file = AuthSecret::new(&"f".repeat(32)).unwrap();
        let token = identity::mint(
            &with_file,
            &identity::Claims {
                sub: "u".into(),
                exp: u64::MAX / 2000,
                ..Default::default()
            },
        );
        let c = Config::default();
        assert!(identity::verify(&token, &secret, "r", 0, &c).is_ok());
        let missing = Cli::parse_args(["local-runner", "--auth-secret-file", "/no/such/file"]);
        assert!(missing
            .auth_secret(none)
            .unwrap_err()
            .0
            .contains("/no/such/file"));
        // Tokens required without a secret: refused.
        let cli = Cli::parse_args(["local-runner", "--auth-required"]);
        let config = cli.config().unwrap();
        assert!(identity::check_setup(&config, None).is_err());
    }

    #[test]
    fn help_shows_handler_defaults() {
        let help = Cli::command().render_help().to_string();
        let d = Config::default();
        for shown in [d.send_queue_frames as u64, d.hello_timeout_ms] {
            let want = format!("[default: {shown}]");
            assert!(help.contains(&want), "{want} missing from {help}");
        }
    }
}
