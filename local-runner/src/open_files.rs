//! The open-file limit. Every WebSocket holds a file descriptor, so the soft
//! `RLIMIT_NOFILE` caps how many connections the runner can take: past it, `accept`
//! fails and new clients wait. Many systems start processes with a soft limit of 1024
//! under a much higher hard one, so the runner raises its soft limit to the hard limit
//! at start, as a server should, and logs what that allows. Run as root (a container,
//! a benchmark), it first raises the hard limit itself, up to the kernel's ceiling
//! (`fs.nr_open`): 100,000 connections need more than a typical hard limit of 20,000
//! or 65,536.

use tracing::{info, warn};

/// Descriptors kept for everything but client sockets: stdio, the listeners, the
/// runtime's own, the SQLite files of the first rooms.
const RESERVED: u64 = 64;

/// Raises the soft open-file limit to the hard limit and logs the connection capacity
/// that leaves. Returns the limit now in force (`None` if it cannot be read).
pub(crate) fn raise_limit() -> Option<u64> {
    raise_hard_limit();
    // `increase_nofile_limit` raises the soft limit to at most the hard limit (and to
    // macOS's per-process maximum), and returns the soft limit in force.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            info!(
                open_files_limit = limit,
                connections = limit.saturating_sub(RESERVED),
                "open-file limit at its hard maximum; each connection takes one \
                 descriptor, each room with SQLite history up to three"
            );
            Some(limit)
        }
        Err(e) => {
            warn!(error = %e, "cannot raise the open-file limit");
            None
        }
    }
}

/// Raises the hard open-file limit to `fs.nr_open` where the process may (root, or
/// `CAP_SYS_RESOURCE`); elsewhere the attempt is refused and the hard limit stays.
fn raise_hard_limit() {
    let Some(ceiling) = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
    else {
        return;
    };
    let Ok((soft, hard)) = rlimit::getrlimit(rlimit::Resource::NOFILE) else {
        return;
    };
    if hard >= ceiling {
        return;
    }
    match rlimit::setrlimit(rlimit::Resource::NOFILE, soft, ceiling) {
        Ok(()) => info!(
            from = hard,
            to = ceiling,
            "hard open-file limit raised to fs.nr_open"
        ),
        // Unprivileged: the usual case, and not a problem.
        // (Without CAP_SYS_RESOURCE, as in most containers.)
        Err(e) => info!(
            error = %e,
            hard,
            "hard open-file limit left as it is (raising it needs CAP_SYS_RESOURCE)"
        ),
    }
}
