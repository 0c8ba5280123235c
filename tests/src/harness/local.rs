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

/// What the runner logs once it listens, right before its port (it binds port 0).
pub const LISTENING_LINE: &str = "edge-chat listening on http://127.0.0.1:";
/// What it logs for a `--metrics-bind` listener of its own, right before its port.
pub const METRICS_LINE: &str = "metrics at http://127.0.0.1:";

/// The runner's command line. It listens on a port of its own choosing (port 0), and so
/// does its `/metrics` listener when the spec asks for one: see [`LISTENING_LINE`].
pub fn command(bin: &Path, data_dir: &Path, spec: &InstanceSpec) -> Command {
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
        .arg("0")
        .arg("--data-dir")
        .arg(data_dir)
        // The suite connects from 127.0.0.1 alone (the storm holds 1,010 connections),
        // so the runner's per-address connection cap is lifted, as SUITE_SETTINGS lifts
        // the room-open limit; local-runner/tests/abuse.rs tests the cap.
        .arg("--max-connections-per-address")
        .arg("10000000");
    for (key, value) in &spec.settings() {
        if key == "allow_origins" {
            // The runner takes one origin per flag.
            for origin in value.split(',').map(str::trim).filter(|o| !o.is_empty()) {
                cmd.arg("--allow-origin").arg(origin);
            }
        } else {
            // Attached, as a switch (`--auth-required=true`) requires.
            cmd.arg(format!("--{}={value}", key.replace('_', "-")));
        }
    }
    if spec.auth_secret.is_some() {
        cmd.arg("--auth-secret-file")
            .arg(data_dir.join(super::backend::SECRET_FILE));
    }
    if spec.hibernate {
        cmd.arg("--hibernate-after-secs")
            .arg(HIBERNATE_AFTER_SECS.to_string());
    }
    if let Some(secs) = spec.ping_interval_secs {
        cmd.arg("--ping-interval-secs").arg(secs.to_string());
    }
    if let Some(marker) = &spec.storage_fault_marker {
        cmd.arg("--test-storage-faults").arg(marker);
    }
    if spec.metrics_bind {
        cmd.arg("--metrics-bind").arg("127.0.0.1:0");
    }
    if let Some(soft) = spec.open_files_soft {
        start_with_open_files(&mut cmd, soft);
    }
    cmd
}

/// Makes the child start with a soft `RLIMIT_NOFILE` of `soft` (at most the hard one).
fn start_with_open_files(cmd: &mut Command, soft: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: runs in the child between fork and exec, and only calls getrlimit and
    // setrlimit, which are async-signal-safe and touch no memory shared with the parent.
    unsafe {
        cmd.pre_exec(move || {
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            limit.rlim_cur = (soft as libc::rlim_t).min(limit.rlim_max);
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit (a test that opens a
/// thousand sockets needs more than the common default of 1024). Returns the soft limit
/// now in force, and the hard one.
pub fn raise_open_files_limit() -> std::io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    // `rlim_t` is not u64 on every platform.
    #[allow(clippy::unnecessary_cast)]
    Ok((limit.rlim_cur as u64, limit.rlim_max as u64))
}
