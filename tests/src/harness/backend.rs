//! The backends under test and one running instance of a backend.

use super::process::{has_count, Logs, Proc};
use super::{local, wrangler};
use crate::http;
use crate::{bail, Result};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A backend the suite can run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BackendKind {
    Local,
    Wrangler,
}

impl BackendKind {
    /// Every backend the suite knows.
    pub const ALL: [BackendKind; 2] = [BackendKind::Local, BackendKind::Wrangler];

    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Local => "local",
            BackendKind::Wrangler => "wrangler",
        }
    }

    /// Parses `EDGE_CHAT_BACKENDS` (a comma list; default `local`).
    pub fn from_env() -> Result<Vec<BackendKind>> {
        let list = std::env::var("EDGE_CHAT_BACKENDS").unwrap_or_default();
        let list = if list.trim().is_empty() {
            "local"
        } else {
            &list
        };
        let mut out = Vec::new();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let kind = match name {
                "local" => BackendKind::Local,
                "wrangler" => BackendKind::Wrangler,
                other => {
                    bail!("EDGE_CHAT_BACKENDS: unknown backend {other:?} (use local, wrangler)")
                }
            };
            if !out.contains(&kind) {
                out.push(kind);
            }
        }
        Ok(out)
    }

    fn startup_timeout(self) -> Duration {
        match self {
            BackendKind::Local => local::STARTUP_TIMEOUT,
            BackendKind::Wrangler => wrangler::STARTUP_TIMEOUT,
        }
    }

    /// Waits until the backend has evicted the (idle) rooms of `instance` whose clients
    /// are still connected. `mark` is a log position taken after the room was last used.
    pub async fn await_eviction(self, instance: &Instance, mark: usize) -> Result<()> {
        match self {
            BackendKind::Local => {
                instance
                    .logs()
                    .wait_for(mark, local::HIBERNATED_LOG, local::EVICTION_TIMEOUT)
                    .await?;
            }
            BackendKind::Wrangler => {
                // workerd evicts silently; there is nothing to wait on but idle time.
                // `confirm_restored` then proves that the eviction did happen.
                tokio::time::sleep(wrangler::idle_for_eviction()).await;
            }
        }
        Ok(())
    }

    /// After the first event following [`Self::await_eviction`], checks that the room
    /// really was rebuilt from storage plus the `sessions` still-open connections (the
    /// backend's `room restored … sessions=N` log line at or after `mark`).
    pub async fn confirm_restored(
        self,
        instance: &Instance,
        mark: usize,
        sessions: usize,
    ) -> Result<()> {
        let needle = match self {
            BackendKind::Local => local::RESTORED_LOG,
            BackendKind::Wrangler => wrangler::RESTORED_LOG,
        };
        let logs = instance.logs();
        let after = logs.wait_for(mark, needle, Duration::from_secs(10)).await?;
        // Exactly that number: `sessions=20` is not `sessions=2`.
        let restored_with = |l: &str| l.contains(needle) && has_count(l, "sessions", sessions);
        if logs.count_since_matching(after - 1, restored_with) == 0 {
            crate::bail!(
                "the room was restored, but not with sessions={sessions}:\n{}",
                logs.tail(5).join("\n")
            );
        }
        Ok(())
    }
}

/// What to start: Config overrides (handler keys, e.g. `("room_capacity", "4")`) and
/// whether idle rooms should hibernate quickly.
#[derive(Debug, Clone, Default)]
pub struct InstanceSpec {
    pub overrides: Vec<(String, String)>,
    pub hibernate: bool,
}

/// Settings every instance of the suite gets unless its spec says otherwise. The suite
/// connects from one address and every scenario opens rooms of its own, so the limit
/// on opening rooms per address (tested on its own, with its defaults) is lifted.
pub const SUITE_SETTINGS: &[(&str, &str)] = &[("room_open_burst", "1000000")];

impl InstanceSpec {
    /// The settings to start with: [`SUITE_SETTINGS`], then the spec's overrides
    /// (which win).
    pub fn settings(&self) -> Vec<(String, String)> {
        let mut settings: Vec<(String, String)> = SUITE_SETTINGS
            .iter()
            .filter(|(key, _)| !self.overrides.iter().any(|(k, _)| k == key))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        settings.extend(self.overrides.iter().cloned());
        settings
    }

    pub fn with(overrides: &[(&str, &str)]) -> Self {
        InstanceSpec {
            overrides: overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            hibernate: false,
        }
    }
}

struct Running {
    proc: Proc,
    base: String,
}

/// One backend process (restartable on the same data dir) and its captured output.
pub struct Instance {
    kind: BackendKind,
    label: String,
    spec: InstanceSpec,
    local_bin: PathBuf,
    data_dir: tempfile::TempDir,
    logs: Arc<Logs>,
    running: Mutex<Option<Running>>,
}

impl Instance {
    /// Starts an instance on a fresh data dir and waits until `/healthz` answers.
    pub async fn start(
        kind: BackendKind,
        label: &str,
        spec: InstanceSpec,
        local_bin: PathBuf,
    ) -> Result<Instance> {
        if kind == BackendKind::Wrangler {
            if let Err(e) = wrangler::available() {
                bail!("wrangler backend unavailable: {e}");
            }
        }
        let data_dir = tempfile::Builder::new()
            .prefix("edge-chat-conformance-")
            .tempdir()?;
        let echo = std::env::var("EDGE_CHAT_CONFORMANCE_LOG")
            .is_ok_and(|v| !v.is_empty() && v != "0")
            .then(|| format!("{}:{label}", kind.name()));
        let instance = Instance {
            kind,
            label: label.to_owned(),
            spec,
            local_bin,
            data_dir,
            logs: Logs::new(echo),
            running: Mutex::new(None),
        };
        instance.launch().await?;
        Ok(instance)
    }

    pub fn kind(&self) -> BackendKind {
        self.kind
    }

    /// `http://127.0.0.1:PORT` of the running process.
    pub fn base_url(&self) -> String {
        self.lock()
            .as_ref()
            .map(|r| r.base.clone())
            .unwrap_or_default()
    }

    pub fn logs(&self) -> &Arc<Logs> {
        &self.logs
    }

    /// Stops the process (SIGTERM, then SIGKILL after a grace period) and starts it
    /// again on the same data dir, on a new port.
    pub async fn restart(&self) -> Result<()> {
        self.stop().await;
        self.logs
            .push(format!("--- conformance: restarting {} ---", self.label));
        self.launch().await
    }

    /// Stops the process gracefully, waiting (bounded) for it to exit.
    pub async fn stop(&self) {
        let Some(mut running) = self.lock().take() else {
            return;
        };
        running.proc.terminate();
        for _ in 0..250 {
            if running.proc.exited().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Drop kills whatever is left of the process group.
        drop(running);
    }

    /// Stops the process from outside the runtime (end of the run).
    pub fn shutdown(&self) {
        if let Some(mut running) = self.lock().take() {
            running.proc.stop(Duration::from_secs(5));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn launch(&self) -> Result<()> {
        let port = free_port()?;
        let cmd = match self.kind {
            BackendKind::Local => {
                local::command(&self.local_bin, port, self.data_dir.path(), &self.spec)
            }
            BackendKind::Wrangler => {
                wrangler::command(port, free_port()?, self.data_dir.path(), &self.spec)
            }
        };
        let label = format!("{} backend ({})", self.kind.name(), self.label);
        self.logs.push(format!("--- conformance: {cmd:?} ---"));
        let mut proc = Proc::spawn(cmd, &label, &self.logs)?;
        let base = format!("http://127.0.0.1:{port}");
        let timeout = self.kind.startup_timeout();
        let deadline = tokio::time::Instant::now() + timeout;
        // Poll /healthz: bounded by the deadline, and failing at once if the process dies.
        loop {
            if let Some(status) = proc.exited() {
                bail!(
                    "{} exited during start-up ({status}); output:\n{}",
                    proc.label(),
                    self.logs.tail(30).join("\n")
                );
            }
            if let Ok(resp) = http::request(&base, "GET", "/healthz", &[]).await {
                if resp.status == 200 {
                    break;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "{} did not answer GET /healthz within {timeout:?}; output:\n{}",
                    proc.label(),
                    self.logs.tail(30).join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        *self.lock() = Some(Running { proc, base });
        Ok(())
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // Proc's own Drop kills the group; this just makes the order explicit (the
        // process goes before its data dir is deleted).
        self.lock().take();
    }
}

/// A port that was free a moment ago (bind to port 0, read it, release it).
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
