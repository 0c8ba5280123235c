//! Running scenarios against backends: shared instances per configuration group,
//! started lazily and stopped as soon as their last trial has run.

pub mod backend;
pub mod local;
pub mod process;
pub mod wrangler;

pub use backend::{BackendKind, Instance, InstanceSpec};

use crate::scenarios::Scenario;
use crate::{Error, Result};
use chat_handler::Config;
use process::Logs;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OnceCell;

/// The most time one scenario may take, waits included.
pub const SCENARIO_TIMEOUT: Duration = Duration::from_secs(300);

/// Which instance a scenario runs on. Scenarios of a group share one instance per
/// backend (they use their own rooms, so they can run at the same time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Group {
    /// The scenario starts (and stops) its own instances: restarts, hibernation.
    Own,
    /// Default configuration.
    Default,
    /// Rate limit out of the way, small send queue and capacity, retention equal to
    /// resume_max so the boundary of a resume is also the boundary of pruning, and a
    /// retry window of a few messages.
    Fast,
    /// A tiny rate limit (no refill to speak of) and a small room.
    Strict,
    /// A short hello deadline and lowered client limits (name, message, frame size,
    /// history page),
    /// which `/api/limits` must advertise, and a slow rate-limit refill that a test can
    /// time. Its own group because the deadline would close the unnamed sockets that
    /// other groups' scenarios keep open on purpose.
    Tight,
    /// Signed identity on (the test secret), tokens optional; rate limit out of the way,
    /// low moderation bounds.
    Identity,
    /// Signed identity on and required, with a tiny rate limit (no refill to speak of).
    Signed,
    /// A tiny join bucket (no refill to speak of), for join/quit churn.
    Churn,
    /// Batching made visible in small rooms: a budget of 1 send per second, so the
    /// window is always its cap, and small batches. Rate limit out of the way. Typing
    /// indicators made visible too: a short expiry, few typers, a small typing bucket.
    Batch,
}

/// Limits of the `Fast` group, used by its scenarios to compute expectations.
pub mod fast {
    pub const ROOM_CAPACITY: usize = 8;
    pub const SEND_QUEUE_FRAMES: usize = 16;
    pub const RETENTION: u64 = 150;
    pub const RESUME_MAX: u64 = 150;
    pub const ALLOWED_ORIGIN: &str = "http://allowed.example:8080";
    /// A repeated `cid` is recognised among the last 5 messages only: no time window.
    pub const CID_WINDOW_MESSAGES: u64 = 5;
    pub const CID_WINDOW_MS: u64 = 0;
}

/// Limits of the `Strict` group.
pub mod strict {
    pub const RATE_BURST: usize = 2;
    pub const RATE_STRIKES: usize = 3;
    pub const ROOM_CAPACITY: usize = 3;
}

/// Settings of the `Identity` and `Signed` groups.
pub mod identity {
    /// The secret both backends verify join tokens with (the suite signs its own).
    pub const SECRET: &str = "conformance-secret-0123456789abcdefghijklmnop";
    /// `max_moderation_secs` of the `Identity` group.
    pub const MAX_MODERATION_SECS: u64 = 3600;
    /// `max_restricted_users` of the `Identity` group.
    pub const MAX_RESTRICTED_USERS: usize = 2;
    /// `max_reactions_per_message` of the `Identity` group.
    pub const MAX_REACTIONS_PER_MESSAGE: usize = 3;
    /// `rate_burst` of the `Signed` group.
    pub const SIGNED_RATE_BURST: usize = 3;
}

/// Limits of the `Churn` group.
pub mod churn {
    pub const JOIN_BURST: usize = 3;
}

/// Settings of the `Batch` group.
pub mod batch {
    /// Long enough that frames sent back to back are always held together, short
    /// enough to wait for.
    pub const WINDOW_MS: u64 = 1000;
    /// One send per second per room: any room's window is [`WINDOW_MS`].
    pub const SEND_BUDGET: u64 = 1;
    pub const MAX: usize = 5;
    /// Typing indicators, whose frames ride batches too: an expiry short enough to
    /// wait for, long enough that two frames sent back to back are never apart by it.
    pub const TYPING_TTL_MS: u64 = 3000;
    pub const TYPING_MAX: usize = 2;
    pub const TYPING_BURST: usize = 3;
}

/// Limits of the `Tight` group.
pub mod tight {
    /// Short enough to wait for, long enough that a client sending its hello right
    /// after the handshake is never late, even on a busy machine.
    pub const HELLO_TIMEOUT_MS: u64 = 1000;
    pub const MAX_NAME_CHARS: usize = 12;
    pub const MAX_MESSAGE_CHARS: usize = 200;
    pub const MAX_FRAME_BYTES: usize = 4096;
    /// The latest a silent socket may be closed after its hello deadline. Generous: it
    /// tells "closed by its deadline" from "never closed" or "closed by something much
    /// later", not how punctual timers are on a loaded machine.
    pub const HELLO_CLOSE_MARGIN_MS: u64 = 4000;
    pub const RATE_BURST: usize = 10;
    /// One token per 2 s: long against the delays of a loaded machine, short to wait.
    pub const RATE_PER_SEC: f64 = 0.5;
    pub const HISTORY_PAGE_MAX: usize = 20;
    /// Short to wait out (a test edits after it), never too short: waiting longer
    /// only makes an edit later.
    pub const EDIT_WINDOW_SECS: u64 = 1;
}

impl Group {
    pub fn spec(self) -> InstanceSpec {
        match self {
            Group::Own | Group::Default => InstanceSpec::default(),
            Group::Fast => InstanceSpec::with(&[
                ("rate_burst", "1000000"),
                ("rate_per_sec", "1000000"),
                ("room_capacity", &fast::ROOM_CAPACITY.to_string()),
                ("send_queue_frames", &fast::SEND_QUEUE_FRAMES.to_string()),
                ("retention", &fast::RETENTION.to_string()),
                ("resume_max", &fast::RESUME_MAX.to_string()),
                ("allow_origins", fast::ALLOWED_ORIGIN),
                (
                    "cid_window_messages",
                    &fast::CID_WINDOW_MESSAGES.to_string(),
                ),
                ("cid_window_ms", &fast::CID_WINDOW_MS.to_string()),
            ]),
            Group::Strict => InstanceSpec::with(&[
                ("rate_burst", &strict::RATE_BURST.to_string()),
                // One token per 1000 s: nothing refills during a test.
                ("rate_per_sec", "0.001"),
                ("rate_strikes", &strict::RATE_STRIKES.to_string()),
                ("room_capacity", &strict::ROOM_CAPACITY.to_string()),
            ]),
            Group::Batch => InstanceSpec::with(&[
                ("rate_burst", "1000000"),
                ("rate_per_sec", "1000000"),
                ("batch_window_ms", &batch::WINDOW_MS.to_string()),
                ("batch_send_budget", &batch::SEND_BUDGET.to_string()),
                ("batch_max", &batch::MAX.to_string()),
                ("typing_ttl_ms", &batch::TYPING_TTL_MS.to_string()),
                ("typing_max", &batch::TYPING_MAX.to_string()),
                ("typing_burst", &batch::TYPING_BURST.to_string()),
                // One token per 100 s: nothing refills during a test.
                ("typing_per_sec", "0.01"),
            ]),
            Group::Tight => InstanceSpec::with(&[
                ("hello_timeout_ms", &tight::HELLO_TIMEOUT_MS.to_string()),
                ("max_name_chars", &tight::MAX_NAME_CHARS.to_string()),
                ("max_message_chars", &tight::MAX_MESSAGE_CHARS.to_string()),
                ("max_frame_bytes", &tight::MAX_FRAME_BYTES.to_string()),
                ("rate_burst", &tight::RATE_BURST.to_string()),
                ("rate_per_sec", &tight::RATE_PER_SEC.to_string()),
                ("history_page_max", &tight::HISTORY_PAGE_MAX.to_string()),
                ("edit_window_secs", &tight::EDIT_WINDOW_SECS.to_string()),
            ]),
            Group::Identity => InstanceSpec::with(&[
                ("rate_burst", "1000000"),
                ("rate_per_sec", "1000000"),
                (
                    "max_moderation_secs",
                    &identity::MAX_MODERATION_SECS.to_string(),
                ),
                (
                    "max_restricted_users",
                    &identity::MAX_RESTRICTED_USERS.to_string(),
                ),
                (
                    "max_reactions_per_message",
                    &identity::MAX_REACTIONS_PER_MESSAGE.to_string(),
                ),
            ])
            .with_secret(identity::SECRET),
            Group::Signed => InstanceSpec::with(&[
                ("auth_required", "true"),
                ("rate_burst", &identity::SIGNED_RATE_BURST.to_string()),
                ("rate_per_sec", "0.001"),
            ])
            .with_secret(identity::SECRET),
            Group::Churn => InstanceSpec::with(&[
                ("join_burst", &churn::JOIN_BURST.to_string()),
                // One token per 1000 s: nothing refills during a test.
                ("join_per_sec", "0.001"),
            ]),
        }
    }

    /// The handler configuration the group's instances run with: the defaults with
    /// the group's overrides applied, exactly as a backend applies them. (Only to check
    /// the overrides; scenarios take their expectations from docs/protocol.md and the
    /// group's constants, never from the handler.)
    pub fn config(self) -> Result<Config> {
        let mut config = Config::default();
        for (key, value) in &self.spec().settings() {
            config
                .set(key, value)
                .map_err(|e| Error(format!("group {}: {key}={value}: {}", self.name(), e.0)))?;
        }
        config
            .validate()
            .map_err(|e| Error(format!("group {}: {}", self.name(), e.0)))?;
        Ok(config)
    }

    fn name(self) -> &'static str {
        match self {
            Group::Own => "own",
            Group::Default => "default",
            Group::Fast => "fast",
            Group::Strict => "strict",
            Group::Tight => "tight",
            Group::Identity => "identity",
            Group::Signed => "signed",
            Group::Churn => "churn",
            Group::Batch => "batch",
        }
    }
}

type Key = (BackendKind, Group);

/// Labelled logs of the instances a scenario used, shown when it fails.
type UsedLogs = Arc<Mutex<Vec<(String, Arc<Logs>)>>>;

struct Slot {
    instance: Arc<OnceCell<Result<Arc<Instance>, String>>>,
    /// Trials of this key that have not finished yet.
    remaining: usize,
}

/// Everything the trials share.
pub struct Suite {
    rt: tokio::runtime::Runtime,
    local_bin: PathBuf,
    slots: Mutex<HashMap<Key, Slot>>,
    rooms: AtomicU64,
}

impl Suite {
    /// `local_bin` is the local runner binary (CARGO_BIN_EXE_edge-chat-local-runner).
    pub fn new(local_bin: PathBuf) -> Result<Arc<Suite>> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        rt.spawn(kill_backends_on_signal());
        Ok(Arc::new(Suite {
            rt,
            local_bin,
            slots: Mutex::new(HashMap::new()),
            rooms: AtomicU64::new(0),
        }))
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Announces that one more trial will use the shared instance of `key`.
    pub fn expect_trial(&self, kind: BackendKind, group: Group) {
        self.slots()
            .entry((kind, group))
            .or_insert_with(|| Slot {
                instance: Arc::new(OnceCell::new()),
                remaining: 0,
            })
            .remaining += 1;
    }

    /// Runs one scenario on one backend (called on a libtest-mimic worker thread).
    pub fn run_trial(self: &Arc<Self>, kind: BackendKind, scenario: &Scenario) -> Result<()> {
        let _done = TrialDone {
            suite: self.clone(),
            key: (kind, scenario.group),
        };
        let ctx = Ctx {
            suite: self.clone(),
            kind,
            group: scenario.group,
            instance: None,
            logs: Arc::new(Mutex::new(Vec::new())),
        };
        let logs = ctx.logs.clone();
        let run = scenario.run;
        let outcome = self.rt.block_on(async move {
            let ctx = ctx.with_shared_instance().await?;
            match tokio::time::timeout(SCENARIO_TIMEOUT, run(ctx)).await {
                Ok(r) => r,
                Err(_) => Err(Error(format!("scenario took over {SCENARIO_TIMEOUT:?}"))),
            }
        });
        outcome.map_err(|e| {
            // The backend's last lines usually say why.
            let mut msg = e.0;
            for (label, logs) in logs.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                msg.push_str(&format!(
                    "\n--- last lines of {label} ---\n{}",
                    logs.tail(20).join("\n")
                ));
            }
            Error(msg)
        })
    }

    /// Stops every instance still running (end of the run).
    pub fn shutdown(&self) {
        let slots: Vec<Slot> = self.slots().drain().map(|(_, s)| s).collect();
        for slot in slots {
            if let Some(Ok(instance)) = slot.instance.get() {
                instance.shutdown();
            }
        }
    }

    async fn shared_instance(&self, key: Key) -> Result<Arc<Instance>> {
        let cell = match self.slots().get(&key) {
            Some(slot) => slot.instance.clone(),
            None => return Err(Error(format!("no slot for {key:?}"))),
        };
        let (kind, group) = key;
        let started = cell
            .get_or_init(|| async {
                Instance::start(kind, group.name(), group.spec(), self.local_bin.clone())
                    .await
                    .map(Arc::new)
                    .map_err(|e| e.0)
            })
            .await;
        // A start-up failure is remembered, so the group's other trials fail fast.
        started.clone().map_err(Error)
    }

    fn trial_done(&self, key: Key) {
        let finished = {
            let mut slots = self.slots();
            match slots.get_mut(&key) {
                Some(slot) => {
                    slot.remaining = slot.remaining.saturating_sub(1);
                    if slot.remaining == 0 {
                        slots.remove(&key)
                    } else {
                        None
                    }
                }
                None => None,
            }
        };
        if let Some(slot) = finished {
            if let Some(Ok(instance)) = slot.instance.get() {
                instance.shutdown();
            }
        }
    }
}

/// On SIGINT, SIGTERM or SIGHUP the suite exits without running any Drop, so the
/// backend process groups (not in our group, so not signalled with us) are killed here.
async fn kill_backends_on_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let kinds = [
        SignalKind::interrupt(),
        SignalKind::terminate(),
        SignalKind::hangup(),
    ];
    let mut streams = Vec::new();
    for kind in kinds {
        if let Ok(s) = signal(kind) {
            streams.push(s);
        }
    }
    if streams.is_empty() {
        return;
    }
    let waits = streams.iter_mut().map(|s| Box::pin(s.recv()));
    futures_util::future::select_all(waits).await;
    process::kill_all_groups();
    eprintln!("conformance: interrupted; backend processes stopped");
    std::process::exit(130);
}

/// Marks a trial finished even if it panicked, so its instance is still stopped.
struct TrialDone {
    suite: Arc<Suite>,
    key: Key,
}

impl Drop for TrialDone {
    fn drop(&mut self) {
        self.suite.trial_done(self.key);
    }
}

/// What a scenario gets: its backend, the shared instance of its group (if any),
/// unique room names, and a way to start instances of its own.
#[derive(Clone)]
pub struct Ctx {
    suite: Arc<Suite>,
    kind: BackendKind,
    group: Group,
    instance: Option<Arc<Instance>>,
    /// Logs of every instance this scenario used, shown when it fails.
    logs: UsedLogs,
}

impl Ctx {
    async fn with_shared_instance(mut self) -> Result<Ctx> {
        if self.group != Group::Own {
            let instance = self.suite.shared_instance((self.kind, self.group)).await?;
            self.track(
                &format!("{} {}", self.kind.name(), self.group.name()),
                &instance,
            );
            self.instance = Some(instance);
        }
        Ok(self)
    }

    fn track(&self, label: &str, instance: &Instance) {
        self.logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((label.to_owned(), instance.logs().clone()));
    }

    pub fn backend(&self) -> BackendKind {
        self.kind
    }

    /// The shared instance of the scenario's group.
    pub fn instance(&self) -> &Arc<Instance> {
        self.instance
            .as_ref()
            .expect("scenarios of Group::Own start their own instances")
    }

    /// Base URL of the shared instance.
    pub fn base(&self) -> String {
        self.instance().base_url()
    }

    /// A room name no other scenario uses in this run (at most 32 characters).
    pub fn room(&self, tag: &str) -> String {
        let n = self.suite.rooms.fetch_add(1, Ordering::Relaxed);
        let tag: String = tag.chars().take(24).collect();
        format!("{tag}-{n}")
    }

    /// Starts an instance just for this scenario; it stops when dropped.
    pub async fn start_own(&self, label: &str, spec: InstanceSpec) -> Result<Instance> {
        let instance =
            Instance::start(self.kind, label, spec, self.suite.local_bin.clone()).await?;
        self.track(&format!("{} {label}", self.kind.name()), &instance);
        Ok(instance)
    }
}

#[cfg(test)]
mod tests {
    use super::Group;

    /// A misspelt or invalid override would only show as a backend failing to start.
    #[test]
    fn every_group_configures_a_valid_config() {
        for group in [
            Group::Own,
            Group::Default,
            Group::Fast,
            Group::Strict,
            Group::Tight,
            Group::Identity,
            Group::Signed,
            Group::Churn,
            Group::Batch,
        ] {
            if let Err(e) = group.config() {
                panic!("{e}");
            }
        }
    }
}
