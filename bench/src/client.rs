//! The sockets of a benchmark run: receivers that timestamp what they get, and a sender
//! that paces messages. Latency is measured on one machine, against one clock.

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Semaphore};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async_with_config, MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// What the clients say in their hello besides the name.
#[derive(Debug, Clone, Copy, Default)]
pub struct Protocol {
    pub v2: bool,
    pub batch: bool,
}

impl Protocol {
    pub fn describe(&self) -> &'static str {
        match (self.v2, self.batch) {
            (_, true) => "v2 + batch",
            (true, false) => "v2",
            (false, false) => "v1",
        }
    }

    pub(crate) fn hello(&self, name: &str) -> String {
        let mut hello = serde_json::json!({ "name": name });
        if self.v2 {
            hello["v"] = 2.into();
        }
        if self.batch {
            hello["batch"] = true.into();
        }
        hello.to_string()
    }
}

/// The frames of one WebSocket message: a batch's frames, or the message itself.
fn frames(text: &str) -> Vec<Value> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(mut map)) => match map.remove("batch") {
            Some(Value::Array(frames)) => frames,
            Some(other) => vec![other],
            None => vec![Value::Object(map)],
        },
        _ => Vec::new(),
    }
}

/// What the receivers saw inside the measured window.
#[derive(Default)]
pub struct Stats {
    /// Chat frames (logical deliveries), a batch counting each frame it holds.
    pub delivered: u64,
    /// WebSocket messages that carried measured chat frames (a batch is one): what the
    /// server paid `send` calls for.
    pub messages: u64,
    /// Delivery latency of each measured message, in microseconds.
    pub latencies_us: Vec<u32>,
    /// Receivers that were closed or failed during the run.
    pub dropped_receivers: usize,
}

pub fn websocket_url(base: &str, room: &str) -> Result<String, String> {
    let rest = base
        .strip_prefix("http://")
        .map(|r| ("ws", r))
        .or_else(|| base.strip_prefix("https://").map(|r| ("wss", r)))
        .ok_or_else(|| format!("--url must start with http:// or https://, got {base:?}"))?;
    Ok(format!(
        "{}://{}/api/room/{room}/websocket",
        rest.0,
        rest.1.trim_end_matches('/')
    ))
}

async fn join(url: &str, name: &str, protocol: Protocol) -> Result<Socket, String> {
    // TCP_NODELAY on: a load generator with Nagle on measures Nagle's delays.
    let (mut ws, _) = connect_async_with_config(url, None, true)
        .await
        .map_err(|e| format!("connect {url}: {e}"))?;
    ws.send(Message::text(protocol.hello(name)))
        .await
        .map_err(|e| format!("hello: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, ws.next())
            .await
            .map_err(|_| "no ready frame within 30 s".to_owned())?;
        match msg {
            Some(Ok(Message::Text(t))) => {
                // The roster of a big room is a large frame: parse only what may hold
                // the ready frame or an error (the bench's names never contain either).
                if !t.contains("\"ready\"") && !t.contains("\"error\"") {
                    continue;
                }
                for v in frames(&t) {
                    if v.get("ready").is_some() {
                        return Ok(ws);
                    }
                    if let Some(e) = v.get("error") {
                        return Err(format!("server refused {name}: {e}"));
                    }
                }
            }
            Some(Ok(Message::Close(c))) => return Err(format!("closed while joining: {c:?}")),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("while joining: {e}")),
            None => return Err("closed while joining".into()),
        }
    }
}

pub struct Receiver {
    task: JoinHandle<Stats>,
    stop: oneshot::Sender<()>,
}

/// When any receiver last got a message, in µs since the run's start: how the bench
/// sees that a room has settled after its joins (see [`settle`]).
#[derive(Clone, Default)]
pub struct Activity(Arc<AtomicU64>);

impl Activity {
    /// A receiver got a message now.
    pub fn touch(&self, start: Instant) {
        let now = start.elapsed().as_micros() as u64;
        self.0.fetch_max(now, Ordering::Relaxed);
    }

    fn last(&self) -> Duration {
        Duration::from_micros(self.0.load(Ordering::Relaxed))
    }
}

/// Waits until no receiver has got anything for `quiet`, at most `max`: the frames of
/// the joins (each member's `joined`, quadratic in a v1 room) have drained, so the
/// measured window sees chat traffic only. Returns how long it waited, or an error if
/// the room never went quiet.
pub async fn settle(
    activity: &Activity,
    start: Instant,
    quiet: Duration,
    max: Duration,
) -> Result<Duration, String> {
    let began = Instant::now();
    loop {
        let since = start.elapsed().saturating_sub(activity.last());
        if since >= quiet {
            return Ok(began.elapsed());
        }
        if began.elapsed() > max {
            return Err(format!(
                "the room did not settle: frames kept arriving for {} s after the joins",
                max.as_secs()
            ));
        }
        tokio::time::sleep(quiet - since).await;
    }
}

impl Receiver {
    /// A receiver whose `task` counts until `stop` fires (raw mode builds its own).
    pub fn new(task: JoinHandle<Stats>, stop: oneshot::Sender<()>) -> Self {
        Receiver { task, stop }
    }
}

/// Connects and joins `n` receivers; each counts and timestamps chat frames until
/// stopped. The message text starts with the send time in µs since `start`.
/// Joins in progress at once while connecting receivers. A room fills the way a
/// reconnect storm would (many clients joining together), and one slow handshake does
/// not hold up the rest; the bench's own core, busy reading for the receivers already
/// in, no longer paces the server's joins one round trip at a time.
pub const JOINS_IN_FLIGHT: usize = 64;

pub async fn connect_receivers(
    url: &str,
    n: usize,
    start: Instant,
    protocol: Protocol,
    activity: &Activity,
) -> Result<Vec<Receiver>, String> {
    let gate = Arc::new(Semaphore::new(JOINS_IN_FLIGHT));
    let mut out = Vec::with_capacity(n);
    let mut joined = Vec::with_capacity(n);
    for i in 0..n {
        let permit = Arc::clone(&gate)
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let url = url.to_owned();
        let (ready, is_ready) = oneshot::channel::<Result<(), String>>();
        let (stop, mut stopped) = oneshot::channel();
        let activity = activity.clone();
        // Each receiver reads from the moment it has joined, so that what the room
        // sends it while the others join never piles up in its queue.
        let task = tokio::spawn(async move {
            let mut stats = Stats::default();
            let mut ws = match join(&url, &format!("r{i}"), protocol).await {
                Ok(ws) => ws,
                Err(e) => {
                    let _ = ready.send(Err(e));
                    stats.dropped_receivers = 1;
                    return stats;
                }
            };
            drop(permit);
            let _ = ready.send(Ok(()));
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
        joined.push(is_ready);
        out.push(Receiver { task, stop });
    }
    for is_ready in joined {
        is_ready
            .await
            .map_err(|_| "a receiver ended before joining".to_owned())??;
    }
    Ok(out)
}

/// Counts and timestamps the measured chat frames of one message.
fn record(text: &str, start: Instant, stats: &mut Stats) {
    let now_us = start.elapsed().as_micros() as u64;
    // Presence frames (most of what arrives while a big room fills) carry no chat
    // message: skip parsing them, so the bench's one core keeps up with the server.
    if !text.contains("\"message\"") {
        return;
    }
    let before = stats.delivered;
    for v in frames(text) {
        record_frame(&v, now_us, stats);
    }
    if stats.delivered > before {
        stats.messages += 1;
    }
}

fn record_frame(v: &Value, now_us: u64, stats: &mut Stats) {
    let Some(sent_us) = v
        .get("message")
        .and_then(Value::as_str)
        .and_then(|m| m.split('|').next())
        .and_then(|t| t.parse::<u64>().ok())
    else {
        return;
    };
    // Only messages sent inside the measured window carry a window mark ("m").
    if v["message"].as_str().is_some_and(|m| m.contains("|m")) {
        stats.delivered += 1;
        stats
            .latencies_us
            .push(now_us.saturating_sub(sent_us).min(u32::MAX as u64) as u32);
    }
}

/// A message text of `size` bytes that starts with its send time in µs on `clock` and
/// whether it falls in the measured window (`m`) or the warm-up (`w`): what receivers
/// time and count.
pub fn stamped(clock: Instant, marked: bool, size: usize) -> String {
    let head = format!(
        "{}|{}",
        clock.elapsed().as_micros(),
        if marked { "m" } else { "w" }
    );
    let pad = size.saturating_sub(head.len());
    format!("{head}{}", "x".repeat(pad))
}

/// Sends `rate` messages per second for `to` after the sender has joined, marking those
/// sent inside `[from, to)` of that schedule. Each text starts with the send time in µs
/// since `clock`, the receivers' clock. Returns how many marked messages were sent.
pub async fn send_at_rate(
    url: &str,
    protocol: Protocol,
    rate: u32,
    size: usize,
    clock: Instant,
    from: Duration,
    to: Duration,
) -> Result<u64, String> {
    let ws = join(url, "sender", protocol).await?;
    // The schedule starts now, not when the receivers began connecting; otherwise the
    // first tick would send a burst to catch up, and measure its queueing.
    let start = Instant::now();
    // Drain the sender's own copies alongside, so its socket never backs up.
    let (mut sink, mut stream) = ws.split();
    let drain = async { while let Some(Ok(_)) = stream.next().await {} };
    let send = async {
        let mut sent_marked = 0u64;
        let mut sent_total = 0u64;
        let tick = Duration::from_millis(1);
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        loop {
            interval.tick().await;
            let elapsed = start.elapsed();
            if elapsed >= to {
                break;
            }
            // Catch up to where the schedule says we should be.
            let due = (elapsed.as_secs_f64() * f64::from(rate)) as u64;
            while sent_total < due {
                let now = start.elapsed();
                let marked = now >= from && now < to;
                let frame = serde_json::json!({ "message": stamped(clock, marked, size) });
                let frame = frame.to_string();
                sink.feed(Message::text(frame))
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

/// Waits `grace` for late frames, stops every receiver and sums what they saw.
pub async fn collect(receivers: Vec<Receiver>, grace: Duration) -> Stats {
    tokio::time::sleep(grace).await;
    let mut total = Stats::default();
    for r in receivers {
        let _ = r.stop.send(());
        if let Ok(s) = r.task.await {
            total.delivered += s.delivered;
            total.messages += s.messages;
            total.latencies_us.extend(s.latencies_us);
            total.dropped_receivers += s.dropped_receivers;
        }
    }
    total
}
