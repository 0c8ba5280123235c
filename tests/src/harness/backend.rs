//! The backends under test and one running instance of a backend.

use super::process::{has_count, port_after, Logs, Proc};
use super::{local, wrangler};
use crate::http;
use crate::{bail, Result};
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

    /// The start of the log line that gives the port the backend listens on, right
    /// before its digits.
    fn listening_line(self) -> &'static str {
        match self {
            BackendKind::Local => local::LISTENING_LINE,
            BackendKind::Wrangler => wrangler::LISTENING_LINE,
        }
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
        let restored_with = |l: &str| match self {
            BackendKind::Local => l.contains(needle) && has_count(l, "sessions", sessions),
            BackendKind::Wrangler => wrangler::restored_with(l, sessions),
        };
        if logs.count_since_matching(after - 1, restored_with) == 0 {
            crate::bail!(
                "the room was restored, but not with sessions={sessions}:\n{}",
                logs.tail(5).join("\n")
            );
        }
        Ok(())
    }
}

/// What to start: Config overrides (handler keys, e.g. `("room_capacity", "4")`),
/// whether idle rooms should hibernate quickly, settings of the local runner alone (among
/// them where it serves `/metrics` and the open-file limit it starts with), and the
/// join-token secret (signed
/// identity), which each backend takes its own documented way: the local runner from
/// `--auth-secret-file`, `wrangler dev` as the secret `AUTH_SECRET` from a dev-vars
/// file (`--env-file`, the per-instance stand-in for `.dev.vars`).
#[derive(Debug, Clone, Default)]
pub struct InstanceSpec {
    pub overrides: Vec<(String, String)>,
    pub hibernate: bool,
    /// Local runner only: `--ping-interval-secs` (the Durable Object sends no pings).
    pub ping_interval_secs: Option<u64>,
    /// Local runner only: the test-only `--test-storage-faults MARKER` hook (storing a
    /// message containing MARKER fails; so does reading history in a room whose name
    /// contains it). The Worker has no such hook.
    pub storage_fault_marker: Option<String>,
    pub auth_secret: Option<String>,
    /// Local runner: serve `/metrics` on a port of its own (`--metrics-bind`) rather
    /// than on the public listener.
    pub metrics_bind: bool,
    /// Local runner: start it with this soft `RLIMIT_NOFILE` (it raises its own).
    pub open_files_soft: Option<u64>,
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
            ..InstanceSpec::default()
        }
    }

    /// The same, with signed identity on.
    pub fn with_secret(mut self, secret: &str) -> Self {
        self.auth_secret = Some(secret.to_owned());
        self
    }
}

/// The file in an instance's data dir that holds its secrets, in `.dev.vars` form
/// (`KEY=value` lines; empty without a secret).
pub const DEV_VARS_FILE: &str = "dev.vars";
/// The file in an instance's data dir that holds the local runner's secret.
pub const SECRET_FILE: &str = "auth-secret";

struct Running {
    proc: Proc,
    base: String,
    /// Where `GET /metrics` is served (the local runner's `--metrics-bind`, or `base`).
    metrics_base: String,
}

/// One backend process (restartable on the same data dir) and its captured output.
pub struct Instance {
    kind: BackendKind,
    label: String,
    /// What the next launch runs with (see [`Instance::restart_with`]).
    spec: Mutex<InstanceSpec>,
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
            if spec.ping_interval_secs.is_some() || spec.storage_fault_marker.is_some() {
                bail!("{label}: pings and storage faults are settings of the local runner only");
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
            spec: Mutex::new(spec),
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

    /// Like [`Self::restart`], with another configuration from now on (same data dir).
    pub async fn restart_with(&self, spec: InstanceSpec) -> Result<()> {
        self.stop().await;
        self.logs.push(format!(
            "--- conformance: restarting {} with {spec:?} ---",
            self.label
        ));
        *self.spec.lock().unwrap_or_else(|e| e.into_inner()) = spec;
        self.launch().await
    }

    /// Stops the process, empties its data dir (the local runner's SQLite file, the
    /// Durable Objects' storage under `--persist-to`) and starts it again: the backend
    /// has lost every room's storage.
    pub async fn restart_on_empty_storage(&self) -> Result<()> {
        self.stop().await;
        self.logs.push(format!(
            "--- conformance: restarting {} on an empty data dir ---",
            self.label
        ));
        for entry in std::fs::read_dir(self.data_dir.path())? {
            let path = entry?.path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
        }
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

    /// The base URL that serves `GET /metrics` (local runner).
    pub fn metrics_base(&self) -> String {
        self.lock()
            .as_ref()
            .map(|r| r.metrics_base.clone())
            .unwrap_or_default()
    }

    /// Kills the process group with SIGKILL (`kill -9`): no shutdown code runs.
    pub async fn kill(&self) {
        let running = self.lock().take();
        if let Some(running) = running {
            self.logs
                .push(format!("--- conformance: kill -9 {} ---", self.label));
            // Proc's Drop is SIGKILL to the group, then reaping the child.
            tokio::task::spawn_blocking(move || drop(running))
                .await
                .ok();
        }
    }

    /// Sends SIGTERM and waits (up to `within`) for the process to exit; returns its
    /// exit status. The process is killed if it is still there after `within`.
    pub async fn terminate(&self, within: Duration) -> Result<std::process::ExitStatus> {
        let Some(mut running) = self.lock().take() else {
            bail!("{} is not running", self.label);
        };
        self.logs
            .push(format!("--- conformance: SIGTERM {} ---", self.label));
        running.proc.terminate();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(status) = running.proc.status() {
                return Ok(status);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("{} did not exit within {within:?} of SIGTERM", self.label);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts the process again on the same data dir (after [`Self::kill`] or
    /// [`Self::terminate`]), on a new port.
    pub async fn start_again(&self) -> Result<()> {
        self.logs.push(format!(
            "--- conformance: starting {} again ---",
            self.label
        ));
        self.launch().await
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

    /// Writes the secret where the backend's command line points.
    fn write_secrets(&self) -> Result<()> {
        let dir = self.data_dir.path();
        let spec = self.spec.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let secret = spec.auth_secret.as_deref();
        let dev_vars = secret.map_or(String::new(), |s| format!("AUTH_SECRET={s}\n"));
        std::fs::write(dir.join(DEV_VARS_FILE), dev_vars)?;
        if let Some(secret) = secret {
            std::fs::write(dir.join(SECRET_FILE), format!("{secret}\n"))?;
        }
        Ok(())
    }

    /// Starts the backend and waits until it serves. Each backend binds port 0 itself
    /// and logs the port it got, which is read from that line: a port chosen here and
    /// handed over could be taken in between by any socket of the suite, since
    /// outgoing connections draw their ports from the same ephemeral range.
    async fn launch(&self) -> Result<()> {
        self.write_secrets()?;
        let spec = self.spec.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let data_dir = self.data_dir.path();
        let cmd = match self.kind {
            BackendKind::Local => local::command(&self.local_bin, data_dir, &spec),
            BackendKind::Wrangler => {
                wrangler::command(&wrangler::write_config(data_dir)?, data_dir, &spec)?
            }
        };
        let label = format!("{} backend ({})", self.kind.name(), self.label);
        let mark = self.logs.mark();
        self.logs.push(format!("--- conformance: {cmd:?} ---"));
        let mut proc = Proc::spawn(cmd, &label, &self.logs)?;
        let timeout = self.kind.startup_timeout();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut base = None;
        let mut metrics_base = None;
        // Bounded by the deadline, and failing at once if the process dies: first the
        // ports from the log, then `/healthz` answering 200.
        loop {
            if let Some(status) = proc.exited() {
                bail!(
                    "{} exited during start-up ({status}); output:\n{}",
                    proc.label(),
                    self.logs.tail(30).join("\n")
                );
            }
            if base.is_none() {
                base = port_after(&self.logs, mark, self.kind.listening_line())
                    .map(|port| format!("http://127.0.0.1:{port}"));
            }
            if metrics_base.is_none() {
                metrics_base = if spec.metrics_bind && self.kind == BackendKind::Local {
                    port_after(&self.logs, mark, local::METRICS_LINE)
                        .map(|port| format!("http://127.0.0.1:{port}"))
                } else {
                    base.clone()
                };
            }
            if let (Some(base), Some(metrics_base)) = (&base, &metrics_base) {
                if let Ok(resp) = http::request(base, "GET", "/healthz", &[]).await {
                    if resp.status == 200 {
                        *self.lock() = Some(Running {
                            proc,
                            base: base.clone(),
                            metrics_base: metrics_base.clone(),
                        });
                        return Ok(());
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "{} did not report its port and answer GET /healthz within {timeout:?}; output:\n{}",
                    proc.label(),
                    self.logs.tail(30).join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // Proc's own Drop kills the group; this just makes the order explicit (the
        // process goes before its data dir is deleted).
        self.lock().take();
    }
}
