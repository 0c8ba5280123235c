//! How `wrangler dev` is started for the Worker + Durable Object backend. Everything
//! specific to it lives here, so the details (build skipping, the log line of the
//! Durable Object) are easy to adjust as the worker evolves.

use super::backend::InstanceSpec;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Start of the JSON line the Durable Object logs when the first event after a
/// construction rebuilds the room with open sockets, i.e. after an eviction:
/// `{"event":"restore","sessions":N,"seq":M}` (docs/operating.md, "Observability").
pub const RESTORED_LOG: &str = r#"{"event":"restore""#;

/// Whether `line` is the Durable Object's restore line with exactly `sessions` sessions.
pub fn restored_with(line: &str, sessions: usize) -> bool {
    let Some(at) = line.find(RESTORED_LOG) else {
        return false;
    };
    serde_json::from_str::<serde_json::Value>(&line[at..])
        .is_ok_and(|v| v["sessions"].as_u64() == Some(sessions as u64))
}
/// wrangler needs a few seconds, more on a busy machine.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// workerd evicts a Durable Object after 10 s without events (measured here: 9.8 s idle
/// never evicted, 10.0 s always did) and logs nothing when it does. The object's alarm
/// is an event too, and it is left pending after the hellos it was set for (never
/// deleted, docs/operating.md): it fires once at most `hello_timeout_ms` (10 s) after the
/// room's last connect, so a room is evicted at most 20 s after its last connect. The
/// suite idles a margin past that, then requires the restore log line, which only an
/// evicted and rebuilt room prints. EDGE_CHAT_WRANGLER_IDLE_SECS overrides it.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(25);

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

pub fn wrangler_bin() -> PathBuf {
    repo_root().join("node_modules/.bin/wrangler")
}

/// True when the worker can be served: wrangler installed and the worker built.
pub fn available() -> Result<(), String> {
    let root = repo_root();
    if !wrangler_bin().exists() {
        return Err(format!("{} is missing", wrangler_bin().display()));
    }
    if !root.join("build/index.js").exists() {
        return Err(format!(
            "{} is missing (build the worker first)",
            root.join("build/index.js").display()
        ));
    }
    Ok(())
}

/// Checks that wrangler.toml turns WebSocket compression off for the Worker
/// (`compatibility_flags` with `no_web_socket_compression`): under `wrangler dev` the
/// proxies in front negotiate permessage-deflate anyway, so this flag, which decides
/// what a deployed Worker answers, is not visible on the wire of the suite.
pub fn declines_deflate() -> Result<(), String> {
    let path = repo_root().join("wrangler.toml");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let declared = text.lines().any(|line| {
        let line = line.split('#').next().unwrap_or_default().trim();
        line.starts_with("compatibility_flags") && line.contains("\"no_web_socket_compression\"")
    });
    if declared {
        Ok(())
    } else {
        Err(format!(
            "{} has no compatibility_flags = [\"no_web_socket_compression\"]: a deployed \
             Worker would negotiate permessage-deflate",
            path.display()
        ))
    }
}

pub fn idle_for_eviction() -> Duration {
    std::env::var("EDGE_CHAT_WRANGLER_IDLE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_IDLE)
}

/// What `wrangler dev` logs once it serves, right before its port (it binds port 0).
pub const LISTENING_LINE: &str = "Ready on http://127.0.0.1:";

/// Writes the instance's config into `dir` (`scripts/wrangler-dev-config`: wrangler.toml
/// without its build step, which would run again once wrangler is up and reload the
/// Worker under the scenarios' sockets) and returns its path.
pub fn write_config(dir: &Path) -> crate::Result<PathBuf> {
    let config = dir.join("wrangler.toml");
    let status = Command::new(repo_root().join("scripts/wrangler-dev-config"))
        .arg(&config)
        .status()?;
    if !status.success() {
        crate::bail!("scripts/wrangler-dev-config failed ({status})");
    }
    Ok(config)
}

/// `wrangler dev` with the instance's `config` ([`write_config`]), on ports of its own
/// choosing: port 0 for the server (see [`LISTENING_LINE`]) and for the inspector.
pub fn command(config: &Path, data_dir: &Path, spec: &InstanceSpec) -> crate::Result<Command> {
    let root = repo_root();
    let mut cmd = Command::new(wrangler_bin());
    cmd.current_dir(&root)
        .arg("dev")
        .arg("--config")
        .arg(config)
        .arg("--ip")
        .arg("127.0.0.1")
        .arg("--port")
        .arg("0")
        .arg("--inspector-port")
        .arg("0")
        .arg("--persist-to")
        .arg(data_dir)
        // Secrets as `.dev.vars` gives them (the secret `AUTH_SECRET`, never a var),
        // from a file of this instance's own: with `--env-file`, wrangler reads no
        // `.dev.vars` of the repository, which would change what is under test.
        .arg("--env-file")
        .arg(data_dir.join(super::backend::DEV_VARS_FILE));
    for (key, value) in &spec.settings() {
        cmd.arg("--var")
            .arg(format!("{}:{}", key.to_ascii_uppercase(), value));
    }
    cmd.env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
        .env("WRANGLER_SEND_METRICS", "false")
        .env("CI", "true");
    Ok(cmd)
}
