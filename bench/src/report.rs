//! One line of results per rate.

use crate::client::Stats;

pub struct Report {
    rate: u32,
    sessions: usize,
    seconds: u64,
    sent: u64,
    stats: Stats,
}

impl Report {
    pub fn new(rate: u32, sessions: usize, seconds: u64, sent: u64, mut stats: Stats) -> Self {
        stats.latencies_us.sort_unstable();
        Report {
            rate,
            sessions,
            seconds,
            sent,
            stats,
        }
    }

    pub fn header() -> &'static str {
        "msgs/s  target_deliv/s  deliveries/s  loss%    p50_ms   p99_ms   max_ms  dropped_clients"
    }

    fn percentile(&self, p: f64) -> f64 {
        let l = &self.stats.latencies_us;
        if l.is_empty() {
            return f64::NAN;
        }
        let i = ((l.len() - 1) as f64 * p).round() as usize;
        f64::from(l[i]) / 1000.0
    }

    pub fn row(&self) -> String {
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
        format!(
            "{:>6}  {:>14}  {:>12.0}  {:>5.2}  {:>8.2} {:>8.2} {:>8.2}  {}",
            self.rate,
            u64::from(self.rate) * self.sessions as u64,
            per_sec,
            loss.max(0.0),
            self.percentile(0.5),
            self.percentile(0.99),
            self.percentile(1.0),
            self.stats.dropped_receivers,
        )
    }
}
