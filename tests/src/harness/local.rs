//! How the native local runner is started: the `edge-chat-local-runner` binary of this
//! crate, with Config overrides as kebab-case flags.

use super::backend::InstanceSpec;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Log line the runner prints when it evicts an idle room that still has connections.
pub const HIBERNATED_LOG: &str = "room hibernated";
/// Log line the runner prints when it rebuilds such a room on its next event.
pub const RESTORED_LOG: &str = "room restored";
/// Idle time after which the hibernation instance evicts a room.
pub const HIBERNATE_AFTER_SECS: u64 = 1;
/// Bounded wait for the eviction log line.
pub const EVICTION_TIMEOUT: Duration = Duration::from_secs(20);
/// Bounded wait for `/healthz` after start.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

pub fn command(bin: &Path, port: u16, data_dir: &Path, spec: &InstanceSpec) -> Command {
    let mut cmd = Command::new(bin);
    // The runner reads EDGE_CHAT_* variables as flag defaults; the suite's own
    // environment must not change the configuration under test.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("EDGE_CHAT_") {
            cmd.env_remove(&key);
        }
    }
    cmd.arg("--static-dir")
        .arg(super::wrangler::repo_root().join("static"))
        .arg("--port")
        .arg(port.to_string())
        .arg("--data-dir")
        .arg(data_dir);
    for (key, value) in &spec.settings() {
        if key == "allow_origins" {
            // The runner takes one origin per flag.
            for origin in value.split(',').map(str::trim).filter(|o| !o.is_empty()) {
                cmd.arg("--allow-origin").arg(origin);
            }
        } else {
            cmd.arg(format!("--{}", key.replace('_', "-"))).arg(value);
        }
    }
    if spec.hibernate {
        cmd.arg("--hibernate-after-secs")
            .arg(HIBERNATE_AFTER_SECS.to_string());
    }
    cmd
}
