//! One line of results per rate.

use crate::client::Stats;

/// One rate's results as numbers.
pub struct Figures {
    pub rate: u32,
    pub sessions: usize,
    pub target_per_sec: u64,
    pub per_sec: f64,
    pub loss_pct: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub dropped: usize,
    pub cpu_us: Option<f64>,
    /// WebSocket messages received per second, scaled like deliveries to every session
    /// (a batch is one message).
    pub ws_msgs_per_sec: f64,
}

pub struct Report {
    rate: u32,
    sessions: usize,
    seconds: u64,
    sent: u64,
    stats: Stats,
    /// Server CPU over the whole sending phase (warm-up included).
    cpu: Option<std::time::Duration>,
    warmup: u64,
}

impl Report {
    pub fn new(
        rate: u32,
        sessions: usize,
        seconds: u64,
        sent: u64,
        mut stats: Stats,
        cpu: Option<std::time::Duration>,
        warmup: u64,
    ) -> Self {
        stats.latencies_us.sort_unstable();
        Report {
            rate,
            sessions,
            seconds,
            sent,
            stats,
            cpu,
            warmup,
        }
    }

    pub fn header() -> &'static str {
        "msgs/s  target_deliv/s  deliveries/s  loss%    p50_ms   p99_ms   max_ms  dropped  cpu_us/deliv  ws_msgs/s"
    }

    fn percentile(&self, p: f64) -> f64 {
        let l = &self.stats.latencies_us;
        if l.is_empty() {
            return f64::NAN;
        }
        let i = ((l.len() - 1) as f64 * p).round() as usize;
        f64::from(l[i]) / 1000.0
    }

    /// The row's figures as numbers (for `--csv`).
    pub fn figures(&self) -> Figures {
        // The sender receives its own messages too, so every session counts; the
        // sender's copies are drained, not counted, so expected uses receivers only.
        let receivers = self.sessions as u64 - 1;
        let expected = self.sent * receivers;
        let per_sec = self.stats.delivered as f64 / self.seconds as f64 * self.sessions as f64
            / receivers.max(1) as f64;
        let loss = if expected == 0 {
            0.0
        } else {
            100.0 * (1.0 - self.stats.delivered as f64 / expected as f64)
        };
        Figures {
            rate: self.rate,
            sessions: self.sessions,
            target_per_sec: u64::from(self.rate) * self.sessions as u64,
            per_sec,
            loss_pct: loss.max(0.0),
            p50_ms: self.percentile(0.5),
            p99_ms: self.percentile(0.99),
            max_ms: self.percentile(1.0),
            dropped: self.stats.dropped_receivers,
            cpu_us: self.cpu_per_delivery_us(),
            ws_msgs_per_sec: self.stats.messages as f64 / self.seconds as f64
                * self.sessions as f64
                / receivers.max(1) as f64,
        }
    }

    pub fn row(&self) -> String {
        let f = self.figures();
        format!(
            "{:>6}  {:>14}  {:>12.0}  {:>5.2}  {:>8.2} {:>8.2} {:>8.2}  {:>7}  {:>12}  {:>9.0}",
            f.rate,
            f.target_per_sec,
            f.per_sec,
            f.loss_pct,
            f.p50_ms,
            f.p99_ms,
            f.max_ms,
            f.dropped,
            f.cpu_us
                .map_or_else(|| "-".to_owned(), |us| format!("{us:.2}")),
            f.ws_msgs_per_sec,
        )
    }

    /// Server CPU per delivery over the whole sending phase: the sender keeps an exact
    /// schedule, so the phase carries rate x (warm-up + measured seconds) messages, each
    /// delivered to every session.
    fn cpu_per_delivery_us(&self) -> Option<f64> {
        let cpu = self.cpu?;
        let deliveries = u64::from(self.rate) * (self.warmup + self.seconds) * self.sessions as u64;
        (deliveries > 0).then(|| cpu.as_secs_f64() * 1e6 / deliveries as f64)
    }
}
