//! Raw mode, for the peers in bench/peers/ that broadcast any text unchanged: no hello,
//! no JSON, no seq. The text itself starts with its send time in µs on the receivers'
//! clock, then `|m` (sent inside the measured window) or `|w` (warm-up), then padding,
//! so latency and counts are measured exactly as for our protocol.

use crate::client::{Activity, Receiver, Stats};
use crate::sockets;
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

/// Connects `n` receivers; each counts and timestamps texts until stopped.
pub async fn connect_receivers(
    url: &str,
    n: usize,
    start: Instant,
    activity: &Activity,
) -> Result<Vec<Receiver>, String> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let mut ws = sockets::connect(url).await?;
        let (stop, mut stopped) = oneshot::channel();
        let activity = activity.clone();
        let task = tokio::spawn(async move {
            let mut stats = Stats::default();
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    msg = ws.next() => match msg {
                        Some(Ok(Message::Text(t))) => {
                            activity.touch(start);
                            record(&t, start, &mut stats)
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => { stats.dropped_receivers = 1; break }
                    }
                }
            }
            stats
        });
        out.push(Receiver::new(task, stop));
    }
    Ok(out)
}

fn record(text: &str, start: Instant, stats: &mut Stats) {
    let Some((stamp, rest)) = text.split_once('|') else {
        return;
    };
    let Ok(sent_us) = stamp.parse::<u64>() else {
        return;
    };
    if rest.starts_with('m') {
        let now_us = start.elapsed().as_micros() as u64;
        stats.delivered += 1;
        stats
            .latencies_us
            .push(now_us.saturating_sub(sent_us).min(u64::from(u32::MAX)) as u32);
    }
}

/// The raw counterpart of `client::send_at_rate`: the same schedule (catch up every
/// millisecond, flush once per tick), with the timestamped text sent as it is.
pub async fn send_at_rate(
    url: &str,
    rate: u32,
    size: usize,
    clock: Instant,
    from: Duration,
    to: Duration,
) -> Result<u64, String> {
    let ws = sockets::connect(url).await?;
    let start = Instant::now();
    let (mut sink, mut stream) = ws.split();
    // The peers echo to the sender too; drain its copies so its socket never backs up.
    let drain = async { while let Some(Ok(_)) = stream.next().await {} };
    let send = async {
        let mut sent_marked = 0u64;
        let mut sent_total = 0u64;
        let mut interval = tokio::time::interval(Duration::from_millis(1));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        loop {
            interval.tick().await;
            let elapsed = start.elapsed();
            if elapsed >= to {
                break;
            }
            let due = (elapsed.as_secs_f64() * f64::from(rate)) as u64;
            while sent_total < due {
                let now = start.elapsed();
                let marked = now >= from && now < to;
                let text = crate::client::stamped(clock, marked, size);
                sink.feed(Message::text(text))
                    .await
                    .map_err(|e| format!("send: {e}"))?;
                sent_total += 1;
                sent_marked += u64::from(marked);
            }
            sink.flush().await.map_err(|e| format!("send: {e}"))?;
        }
        Ok::<u64, String>(sent_marked)
    };
    tokio::select! {
        r = send => r,
        _ = drain => Err("the sender was disconnected".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_marked_texts_count() {
        let start = Instant::now();
        let mut stats = Stats::default();
        record("0|wxxxx", start, &mut stats);
        record("not a stamp", start, &mut stats);
        record("0|mxxxx", start, &mut stats);
        assert_eq!(stats.delivered, 1);
        assert_eq!(stats.latencies_us.len(), 1);
    }
}
