//! Soak: ROOMS x MEMBERS joined connections on one server for a while, with live traffic
//! (one member of each room sends at a fixed rate, phases spread so the rooms do not
//! send in lockstep). Every member checks what it gets as it arrives: each message of
//! its room once, in order, with consecutive seqs. The run reports the server's RSS and
//! open files at the start, middle and end of the traffic, errors and closes, and fails
//! on any lost, repeated or reordered message, on any error or close, or if RSS at the
//! end is more than 10% above the middle.

use crate::{client, procfs, sockets};
use futures_util::stream::SplitStream;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// How long receivers keep listening after the last message is sent.
const GRACE: Duration = Duration::from_secs(5);
/// Most RSS growth allowed from the middle of the traffic to its end.
const RSS_GROWTH_LIMIT: f64 = 0.10;

pub struct Plan {
    pub rooms: usize,
    pub members: usize,
    pub secs: u64,
    /// Messages per second per room.
    pub rate: u32,
}

/// What one member saw.
#[derive(Default, Debug)]
struct Verdict {
    /// Messages of its room received once, in order.
    received: u64,
    /// Messages skipped (a later one arrived first).
    gaps: u64,
    /// Messages received again, or after a later one.
    repeats: u64,
    /// A seq that did not follow the previous one (or the `ready` seq) by exactly 1.
    seq_breaks: u64,
    /// `{"error": …}` frames.
    errors: u64,
    /// Closed by the server or disconnected before the end.
    closed: Option<String>,
}

/// One member's running check of what it receives.
struct Checker {
    room: usize,
    /// The index of the next message of the room this member should get.
    next: u64,
    /// The last seq seen: at first, the room's last seq when it joined (`ready.seq`).
    last_seq: u64,
    verdict: Verdict,
}

/// The text of message `i` of room `r`.
fn text(room: usize, i: u64) -> String {
    format!("soak r{room} m{i}")
}

fn parse_text(t: &str) -> Option<(usize, u64)> {
    let rest = t.strip_prefix("soak r")?;
    let (room, i) = rest.split_once(" m")?;
    Some((room.parse().ok()?, i.parse().ok()?))
}

impl Checker {
    fn new(room: usize, ready_seq: u64) -> Self {
        Checker {
            room,
            next: 0,
            last_seq: ready_seq,
            verdict: Verdict::default(),
        }
    }

    /// Checks one text frame from the server.
    fn frame(&mut self, text: &str) {
        let v = &mut self.verdict;
        let frame: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        if frame.get("error").is_some() {
            v.errors += 1;
            return;
        }
        let (Some(message), Some(seq)) = (
            frame.get("message").and_then(Value::as_str),
            frame.get("seq").and_then(Value::as_u64),
        ) else {
            return; // presence frames
        };
        if seq != self.last_seq + 1 {
            v.seq_breaks += 1;
        }
        self.last_seq = seq;
        match parse_text(message) {
            Some((room, i)) if room == self.room && i == self.next => {
                v.received += 1;
                self.next += 1;
            }
            Some((room, i)) if room == self.room && i > self.next => {
                v.gaps += i - self.next;
                v.received += 1;
                self.next = i + 1;
            }
            _ => v.repeats += 1,
        }
    }
}

async fn verify(
    mut stream: SplitStream<sockets::Socket>,
    mut checker: Checker,
    mut stopped: watch::Receiver<bool>,
) -> Verdict {
    loop {
        let msg = tokio::select! {
            _ = stopped.wait_for(|s| *s) => break,
            msg = stream.next() => msg,
        };
        let closed = match msg {
            Some(Ok(Message::Text(t))) => {
                checker.frame(&t);
                continue;
            }
            Some(Ok(Message::Close(c))) => format!("{c:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => e.to_string(),
            None => "disconnected".into(),
        };
        checker.verdict.closed = Some(closed);
        break;
    }
    checker.verdict
}

/// The sending half of one member per room, and every member's checker.
struct Room {
    sender: futures_util::stream::SplitSink<sockets::Socket, Message>,
    checkers: Vec<JoinHandle<Verdict>>,
}

async fn fill(
    url: String,
    room: usize,
    members: usize,
    stopped: watch::Receiver<bool>,
) -> Result<Room, String> {
    let mut sender = None;
    let mut checkers = Vec::with_capacity(members);
    for m in 0..members {
        let (ws, ready) = sockets::join(&url, &format!("s{room}-{m}")).await?;
        let me = Checker::new(room, ready.get("seq").and_then(Value::as_u64).unwrap_or(0));
        let (sink, stream) = ws.split();
        if m == 0 {
            sender = Some(sink);
        }
        checkers.push(tokio::spawn(verify(stream, me, stopped.clone())));
    }
    let sender = sender.ok_or("a room needs at least one member")?;
    Ok(Room { sender, checkers })
}

/// Sends `count` messages at `rate` per second, the first after `phase`.
async fn send(
    mut sink: futures_util::stream::SplitSink<sockets::Socket, Message>,
    room: usize,
    rate: u32,
    count: u64,
    phase: Duration,
) -> Result<(), String> {
    let period = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let start = tokio::time::Instant::now() + phase;
    for i in 0..count {
        tokio::time::sleep_until(start + period * i as u32).await;
        let frame = serde_json::json!({ "message": text(room, i) }).to_string();
        sink.send(Message::text(frame))
            .await
            .map_err(|e| format!("room {room} sender: {e}"))?;
    }
    Ok(())
}

struct Sample {
    rss_kib: u64,
    open_files: usize,
}

fn sample(pids: &[u32]) -> Result<Sample, String> {
    Ok(Sample {
        rss_kib: procfs::total_rss_kib(pids)?,
        open_files: procfs::total_open_files(pids)?,
    })
}

pub async fn run(base: &str, room: &str, plan: &Plan, pids: &[u32]) -> Result<(), String> {
    if pids.is_empty() {
        return Err("--soak needs --server-pid".into());
    }
    let n = plan.rooms * plan.members;
    println!(
        "soak: {n} connections ({} rooms x {}), {} msgs/s per room for {} s",
        plan.rooms, plan.members, plan.rate, plan.secs
    );
    let idle = sample(pids)?;
    let (stop, stopped) = watch::channel(false);
    let began = Instant::now();
    let mut fills = Vec::with_capacity(plan.rooms);
    for r in 0..plan.rooms {
        let url = client::websocket_url(base, &format!("{room}-{r}"))?;
        fills.push(tokio::spawn(fill(url, r, plan.members, stopped.clone())));
    }
    let mut rooms = Vec::with_capacity(plan.rooms);
    for f in fills {
        rooms.push(
            f.await
                .map_err(|e| format!("a room's fill failed: {e}"))??,
        );
    }
    println!(
        "joined in {:.1} s; server before joins: RSS {} KiB, {} open files",
        began.elapsed().as_secs_f64(),
        idle.rss_kib,
        idle.open_files
    );

    let count = plan.secs * u64::from(plan.rate);
    let period = 1.0 / f64::from(plan.rate.max(1));
    let mut checkers = Vec::with_capacity(n);
    let mut senders = Vec::with_capacity(plan.rooms);
    let traffic = Instant::now();
    let start = sample(pids)?;
    report_sample("start", 0, &start);
    for (r, room) in rooms.into_iter().enumerate() {
        checkers.extend(room.checkers);
        let phase = Duration::from_secs_f64(period * r as f64 / plan.rooms as f64);
        senders.push(tokio::spawn(send(room.sender, r, plan.rate, count, phase)));
    }
    // A sample every 10 s, and the middle one at half time.
    let half = plan.secs / 2;
    let mut times: Vec<u64> = (1..)
        .map(|k| k * 10)
        .take_while(|t| *t < plan.secs)
        .collect();
    times.push(half);
    times.sort_unstable();
    times.dedup();
    let mut middle = None;
    for at in times {
        tokio::time::sleep_until((traffic + Duration::from_secs(at)).into()).await;
        let s = sample(pids)?;
        if at == half {
            report_sample("middle", at, &s);
            middle = Some(s);
        } else {
            report_sample("", at, &s);
        }
    }
    let mut send_errors = Vec::new();
    for s in senders {
        match s.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => send_errors.push(e),
            Err(e) => send_errors.push(e.to_string()),
        }
    }
    let end = sample(pids)?;
    report_sample("end", traffic.elapsed().as_secs(), &end);
    tokio::time::sleep(GRACE).await;
    let _ = stop.send(true);
    let mut total = Verdict::default();
    let mut closes = 0u64;
    let mut lost = 0u64;
    let mut first_close = None;
    for c in checkers {
        let v = c.await.map_err(|e| format!("a checker failed: {e}"))?;
        lost += count.saturating_sub(v.received);
        total.received += v.received;
        total.gaps += v.gaps;
        total.repeats += v.repeats;
        total.seq_breaks += v.seq_breaks;
        total.errors += v.errors;
        if let Some(c) = v.closed {
            closes += 1;
            first_close.get_or_insert(c);
        }
    }
    let middle = middle.unwrap_or(Sample {
        rss_kib: start.rss_kib,
        open_files: start.open_files,
    });
    let growth = end.rss_kib as f64 / middle.rss_kib.max(1) as f64 - 1.0;
    println!(
        "RSS: start {} KiB, middle {} KiB, end {} KiB (end vs middle {:+.1}%)",
        start.rss_kib,
        middle.rss_kib,
        end.rss_kib,
        growth * 100.0
    );
    println!(
        "open files: start {}, middle {}, end {}",
        start.open_files, middle.open_files, end.open_files
    );
    println!(
        "messages: {} sent, {} deliveries expected, {} received in order; lost {lost}, \
         skipped {}, repeated or reordered {}, seq breaks {}",
        count * plan.rooms as u64,
        count * n as u64,
        total.received,
        total.gaps,
        total.repeats,
        total.seq_breaks
    );
    println!(
        "errors: {} error frames, {} sender errors; closes: {closes}{}",
        total.errors,
        send_errors.len(),
        first_close.map_or(String::new(), |c| format!(" (first: {c})"))
    );
    let mut failures = Vec::new();
    if lost > 0 || total.gaps > 0 || total.repeats > 0 || total.seq_breaks > 0 {
        failures.push("messages lost, repeated or out of order".to_owned());
    }
    if total.errors > 0 || closes > 0 || !send_errors.is_empty() {
        failures.push(format!(
            "errors or closes{}",
            send_errors
                .first()
                .map_or(String::new(), |e| format!(": {e}"))
        ));
    }
    if growth > RSS_GROWTH_LIMIT {
        failures.push(format!(
            "RSS grew {:.1}% from the middle to the end (limit {:.0}%)",
            growth * 100.0,
            RSS_GROWTH_LIMIT * 100.0
        ));
    }
    if failures.is_empty() {
        println!("soak passed");
        Ok(())
    } else {
        Err(format!("soak failed: {}", failures.join("; ")))
    }
}

fn report_sample(what: &str, at: u64, s: &Sample) {
    println!(
        "t={at:>3} s  RSS {:>8} KiB  open files {:>6}  {what}",
        s.rss_kib, s.open_files
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(room: usize, i: u64, seq: u64) -> String {
        serde_json::json!({"name": "s", "message": text(room, i), "timestamp": 1, "seq": seq})
            .to_string()
    }

    #[test]
    fn every_message_in_order_passes() {
        let mut c = Checker::new(3, 10);
        c.frame(r#"{"joined":"x"}"#);
        for i in 0..5 {
            c.frame(&chat(3, i, 11 + i));
        }
        let v = c.verdict;
        assert_eq!(
            (v.received, v.gaps, v.repeats, v.seq_breaks, v.errors),
            (5, 0, 0, 0, 0)
        );
    }

    #[test]
    fn losses_repeats_and_seq_breaks_are_caught() {
        let mut c = Checker::new(0, 0);
        c.frame(&chat(0, 0, 1));
        c.frame(&chat(0, 2, 3)); // message 1 lost
        c.frame(&chat(0, 2, 3)); // repeated, and its seq does not follow
        c.frame(&chat(1, 3, 4)); // another room's message
        c.frame(r#"{"error":"Slow down."}"#);
        let v = c.verdict;
        assert_eq!(v.received, 2);
        assert_eq!(v.gaps, 1);
        assert_eq!(v.repeats, 2);
        // Seq 3 after 1 (the loss), and 3 again after 3.
        assert_eq!(v.seq_breaks, 2);
        assert_eq!(v.errors, 1);
    }

    #[test]
    fn texts_round_trip() {
        assert_eq!(parse_text(&text(7, 42)), Some((7, 42)));
        assert_eq!(parse_text("soak r7 mx"), None);
        assert_eq!(parse_text("hello"), None);
    }
}
