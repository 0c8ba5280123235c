//! A backend process in its own process group, with its output captured line by line.
//!
//! `wrangler dev` starts `workerd` as a child of its own, so stopping only the direct
//! child would leak the runtime. Every process therefore gets its own group and the
//! whole group is signalled, both on an orderly stop and, as a last resort, on drop
//! (which also runs when a scenario panics and unwinds).

use crate::{bail, Result};
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Captured output lines of one instance (stdout and stderr interleaved), kept across
/// restarts so log-based waits can refer to positions with [`Logs::mark`].
#[derive(Default)]
pub struct Logs {
    lines: Mutex<Vec<String>>,
    changed: Notify,
    /// Echo lines to our stderr as they arrive (EDGE_CHAT_CONFORMANCE_LOG=1).
    echo: Option<String>,
}

impl Logs {
    pub fn new(echo_label: Option<String>) -> Arc<Self> {
        Arc::new(Logs {
            echo: echo_label,
            ..Logs::default()
        })
    }

    pub fn push(&self, line: String) {
        if let Some(label) = &self.echo {
            eprintln!("[{label}] {line}");
        }
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line);
        self.changed.notify_waiters();
    }

    /// The number of lines so far: a position to search from later.
    pub fn mark(&self) -> usize {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The last `n` lines, for failure messages.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines[lines.len().saturating_sub(n)..].to_vec()
    }

    /// The lines from position `from` on.
    pub fn since(&self, from: usize) -> Vec<String> {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.iter().skip(from).cloned().collect()
    }

    /// Lines from position `from` on that contain `needle`.
    pub fn count_since(&self, from: usize, needle: &str) -> usize {
        self.count_since_matching(from, |l| l.contains(needle))
    }

    /// Lines from position `from` on for which `matches` holds.
    pub fn count_since_matching(&self, from: usize, matches: impl Fn(&str) -> bool) -> usize {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.iter().skip(from).filter(|l| matches(l)).count()
    }

    /// Waits (bounded) until a line at position `from` or later contains `needle`;
    /// returns the position just after that line.
    pub async fn wait_for(&self, from: usize, needle: &str, timeout: Duration) -> Result<usize> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Register interest before looking, so a line pushed in between wakes us.
            let notified = self.changed.notified();
            {
                let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(i) = lines.iter().skip(from).position(|l| l.contains(needle)) {
                    return Ok(from + i + 1);
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                bail!(
                    "no log line containing {needle:?} within {timeout:?}; last lines:\n{}",
                    self.tail(15).join("\n")
                );
            }
        }
    }
}

/// The port in the first line at position `from` or later that contains `needle`
/// followed by the port's digits (`…listening on http://127.0.0.1:` then `41234`).
pub fn port_after(logs: &Logs, from: usize, needle: &str) -> Option<u16> {
    let lines = logs.lines.lock().unwrap_or_else(|e| e.into_inner());
    lines.iter().skip(from).find_map(|line| {
        let rest = &line[line.find(needle)? + needle.len()..];
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        rest[..digits].parse().ok()
    })
}

/// Whether `line` has the field `key=n` with exactly this number: `sessions=2`
/// matches `… sessions=2 seq=5` and `… sessions=2`, but not `sessions=20` or
/// `old_sessions=2`.
pub fn has_count(line: &str, key: &str, n: usize) -> bool {
    let needle = format!("{key}=");
    let expected = n.to_string();
    line.match_indices(&needle).any(|(at, _)| {
        let starts_field = line[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        let rest = &line[at + needle.len()..];
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        starts_field && rest[..digits] == expected
    })
}

/// Process groups still running, so a signal to the suite (Ctrl-C, a timeout's SIGTERM),
/// which skips every Drop, can still kill them: see [`kill_all_groups`].
static LIVE_GROUPS: Mutex<Option<HashSet<i32>>> = Mutex::new(None);

fn live_groups() -> std::sync::MutexGuard<'static, Option<HashSet<i32>>> {
    LIVE_GROUPS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Kills every process group this suite started and has not stopped yet.
pub fn kill_all_groups() {
    let groups: Vec<i32> = live_groups()
        .as_mut()
        .map(|g| g.drain().collect())
        .unwrap_or_default();
    for pgid in groups {
        signal_group(pgid, libc::SIGKILL);
    }
}

/// A running process group. Dropping it kills the group.
pub struct Proc {
    child: Child,
    pgid: i32,
    label: String,
}

impl Proc {
    /// Spawns `cmd` as the leader of a new process group, capturing its output in `logs`.
    pub fn spawn(mut cmd: Command, label: &str, logs: &Arc<Logs>) -> Result<Proc> {
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => bail!("could not start {label} ({cmd:?}): {e}"),
        };
        let pgid = child.id() as i32;
        live_groups().get_or_insert_with(HashSet::new).insert(pgid);
        if let Some(out) = child.stdout.take() {
            pump(out, logs.clone());
        }
        if let Some(err) = child.stderr.take() {
            pump(err, logs.clone());
        }
        Ok(Proc {
            child,
            pgid,
            label: label.to_owned(),
        })
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("unknown ({e})")),
        }
    }

    /// The exit status, once the process has exited.
    pub fn status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends SIGTERM to the whole group (an orderly stop).
    pub fn terminate(&self) {
        signal_group(self.pgid, libc::SIGTERM);
    }

    /// Asks the group to stop (SIGTERM, so the backend can close sockets and flush its
    /// storage), waits up to `grace`, then kills whatever is left of the group.
    pub fn stop(&mut self, grace: Duration) {
        signal_group(self.pgid, libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Also reaches grandchildren (workerd) that outlived their parent.
        signal_group(self.pgid, libc::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn label(&self) -> &str {
        &self.label
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        signal_group(self.pgid, libc::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(groups) = live_groups().as_mut() {
            groups.remove(&self.pgid);
        }
    }
}

fn signal_group(pgid: i32, signal: i32) {
    if pgid > 0 {
        // SAFETY: kill(2) with a negative pid signals the process group we created; it
        // touches no memory of ours. An error (group already gone) is fine to ignore.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

/// Copies lines from a pipe into `logs` on a plain thread (it ends when the pipe closes).
fn pump(pipe: impl Read + Send + 'static, logs: Arc<Logs>) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    logs.push(line.trim_end().to_owned());
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::has_count;

    #[test]
    fn counts_match_exactly() {
        let line = "edge-chat: room restored sessions=2 seq=7";
        assert!(has_count(line, "sessions", 2));
        assert!(has_count(
            "INFO room restored room=\"a\" sessions=2",
            "sessions",
            2
        ));
        assert!(has_count("sessions=2", "sessions", 2));
        assert!(!has_count("room restored sessions=20 seq=1", "sessions", 2));
        assert!(!has_count("room restored sessions=12", "sessions", 2));
        assert!(!has_count("room restored old_sessions=2", "sessions", 2));
        assert!(!has_count("room restored sessions=", "sessions", 2));
        assert!(has_count("sessions=20 sessions=2", "sessions", 2));
        assert!(!has_count(line, "seq", 70));
    }
}
