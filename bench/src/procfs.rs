//! CPU time and resident memory of the server's processes, read from /proc (Linux), so
//! the bench can report CPU per delivery and memory per connection without a profiler.

use std::time::Duration;

/// Clock ticks per second of /proc/PID/stat times (USER_HZ, 100 on Linux).
const TICKS_PER_SEC: u64 = 100;

/// User plus system CPU time of `pid` so far.
pub fn cpu_time(pid: u32) -> Result<Duration, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    // The command name may contain spaces and parentheses; fields resume after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3 of the line, so utime (14) and stime (15) sit at 11, 12.
    let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    match (tick(11), tick(12)) {
        (Some(u), Some(s)) => Ok(Duration::from_millis((u + s) * 1000 / TICKS_PER_SEC)),
        _ => Err(format!("/proc/{pid}/stat: unexpected format")),
    }
}

/// Resident set size of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("/proc/{pid}/status: no VmRSS"))
}

/// Summed over several processes (wrangler dev: its proxy plus workerd).
pub fn total_cpu(pids: &[u32]) -> Result<Duration, String> {
    pids.iter().map(|p| cpu_time(*p)).sum()
}

pub fn total_rss_kib(pids: &[u32]) -> Result<u64, String> {
    pids.iter().map(|p| rss_kib(*p)).sum()
}

/// Open file descriptors of `pid` (its sockets, mostly).
pub fn open_files(pid: u32) -> Result<usize, String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .map_err(|e| format!("/proc/{pid}/fd: {e}"))
}

pub fn total_open_files(pids: &[u32]) -> Result<usize, String> {
    pids.iter().map(|p| open_files(*p)).sum()
}
