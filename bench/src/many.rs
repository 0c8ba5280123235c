//! Many connections: ROOMS x MEMBERS joined WebSockets on one server (100,000 in 1,000
//! rooms of 100 is the goal), opened from many loopback source addresses (127.0.x.y,
//! a few hundred connections each) so that neither the server's per-address limits nor
//! one address's ephemeral ports bound the run. Reports the time to connect and join
//! them all, the server's RSS per connection once the rooms have settled, then one
//! message per second in every room for a bounded time: delivery latency (p50, p99),
//! deliveries per second and loss.

use crate::{client, procfs};
use futures_util::{SinkExt, StreamExt};
use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Socket = WebSocketStream<TcpStream>;

/// How long one connection may take to open and get its `ready`.
const JOIN_TIMEOUT: Duration = Duration::from_secs(120);
/// The rooms count as settled after this long without a frame to any client...
const SETTLE_QUIET: Duration = Duration::from_secs(1);
/// ... and the bench waits at most this long for that.
const SETTLE_MAX: Duration = Duration::from_secs(300);
/// How long receivers keep listening after the last message is sent.
const GRACE: Duration = Duration::from_secs(5);
/// Latency histogram: buckets of 100 µs up to 60 s; later ones count in the last.
const BUCKET_US: u64 = 100;
const BUCKETS: usize = 600_000;
/// Connection errors quoted in the report.
const ERRORS_SHOWN: usize = 5;

pub struct Plan {
    pub rooms: usize,
    pub members: usize,
    /// Seconds of traffic (one message per second per room).
    pub secs: u64,
    /// Connections per source address.
    pub per_address: usize,
    /// Joins in flight at once.
    pub concurrency: usize,
    pub protocol: client::Protocol,
}

/// What every receiver adds to.
struct Tally {
    start: Instant,
    /// Frames of any kind (for settling).
    frames: AtomicU64,
    /// Chat messages of the traffic phase received.
    delivered: AtomicU64,
    latency: Vec<AtomicU64>,
}

impl Tally {
    fn new() -> Self {
        Tally {
            start: Instant::now(),
            frames: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            latency: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn micros(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// Counts the chat messages in one WebSocket message (a batch may hold several),
    /// each carrying its send time in µs as its text.
    fn received(&self, text: &str) {
        self.frames.fetch_add(1, Ordering::Relaxed);
        let now = self.micros();
        const KEY: &str = "\"message\":\"";
        let mut rest = text;
        while let Some(at) = rest.find(KEY) {
            rest = &rest[at + KEY.len()..];
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if let Ok(sent) = rest[..digits].parse::<u64>() {
                let bucket = (now.saturating_sub(sent) / BUCKET_US) as usize;
                self.latency[bucket.min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The latency under which `q` of the deliveries fell, in ms.
    fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total: u64 = self.latency.iter().map(|c| c.load(Ordering::Relaxed)).sum();
        if total == 0 {
            return None;
        }
        let want = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.latency.iter().enumerate() {
            seen += c.load(Ordering::Relaxed);
            if seen >= want {
                return Some(((i as u64 + 1) * BUCKET_US) as f64 / 1000.0);
            }
        }
        None
    }
}

/// The source address of connection `i`: 127.0.x.y from 127.0.0.2 on, `per_address`
/// connections each (127.0.0.1 is left to the server's other clients).
fn source(i: usize, per_address: usize) -> Ipv4Addr {
    let k = i / per_address.max(1) + 2;
    Ipv4Addr::new(
        127,
        (k / 65_536 % 256) as u8,
        (k / 256 % 256) as u8,
        (k % 256) as u8,
    )
}

/// `http://host:port` -> the server's socket address.
fn server_addr(base: &str) -> Result<SocketAddr, String> {
    let hostport = base
        .strip_prefix("http://")
        .ok_or_else(|| format!("--many needs an http:// --url, got {base:?}"))?
        .trim_end_matches('/');
    hostport
        .to_socket_addrs()
        .map_err(|e| format!("{hostport}: {e}"))?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| format!("{hostport}: no IPv4 address"))
}

async fn join(
    url: &str,
    server: SocketAddr,
    from: Ipv4Addr,
    name: &str,
    protocol: client::Protocol,
) -> Result<Socket, String> {
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    socket
        .bind(SocketAddr::new(from.into(), 0))
        .map_err(|e| format!("bind {from}: {e}"))?;
    let tcp = socket
        .connect(server)
        .await
        .map_err(|e| format!("connect from {from}: {e}"))?;
    // TCP_NODELAY on, as in the other runs.
    tcp.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
    let config = WebSocketConfig::default().read_buffer_size(4096);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, tcp, Some(config))
        .await
        .map_err(|e| format!("upgrade from {from}: {e}"))?;
    ws.send(Message::text(protocol.hello(name)))
        .await
        .map_err(|e| format!("hello: {e}"))?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                if t.contains("\"ready\"") {
                    return Ok(ws);
                }
                if t.contains("\"error\"") {
                    return Err(format!("{name} refused: {t}"));
                }
            }
            Some(Ok(Message::Close(c))) => return Err(format!("{name} closed: {c:?}")),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("{name} while joining: {e}")),
            None => return Err(format!("{name} closed while joining")),
        }
    }
}

/// Reads until told to stop (or the socket ends), counting what arrives.
async fn receive(
    mut ws: futures_util::stream::SplitStream<Socket>,
    tally: Arc<Tally>,
    mut stopped: watch::Receiver<bool>,
    closed: Arc<AtomicU64>,
) {
    loop {
        let msg = tokio::select! {
            _ = stopped.wait_for(|s| *s) => return,
            msg = ws.next() => msg,
        };
        match msg {
            Some(Ok(Message::Text(t))) => tally.received(&t),
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                closed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Some(Ok(_)) => {}
        }
    }
}

/// One message per second for `secs` seconds, the first after `phase`; each text is its
/// send time. Returns how many went out.
async fn send(
    mut sink: futures_util::stream::SplitSink<Socket, Message>,
    tally: Arc<Tally>,
    secs: u64,
    phase: Duration,
    sending: Arc<AtomicBool>,
) -> u64 {
    let start = tokio::time::Instant::now() + phase;
    let mut sent = 0;
    for i in 0..secs {
        tokio::time::sleep_until(start + Duration::from_secs(i)).await;
        if !sending.load(Ordering::Relaxed) {
            break;
        }
        let frame = serde_json::json!({ "message": tally.micros().to_string() }).to_string();
        if sink.send(Message::text(frame)).await.is_err() {
            break;
        }
        sent += 1;
    }
    // Dropping the sending half leaves the socket open (its reader holds the rest).
    sent
}

fn cpu(pids: &[u32]) -> Result<Option<Duration>, String> {
    if pids.is_empty() {
        return Ok(None);
    }
    procfs::total_cpu(pids).map(Some)
}

/// Raises the bench's own open-file limit (each connection is one descriptor): as root,
/// the hard limit up to the kernel's `fs.nr_open`, then the soft limit to the hard.
fn raise_open_files() -> Result<u64, String> {
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    if let (Some(max), Ok((_, hard))) = (nr_open, rlimit::getrlimit(rlimit::Resource::NOFILE)) {
        if hard < max {
            // Refused unless privileged; the soft limit is raised to the hard one anyway.
            let _ = rlimit::setrlimit(rlimit::Resource::NOFILE, max, max);
        }
    }
    rlimit::increase_nofile_limit(u64::MAX).map_err(|e| format!("open-file limit: {e}"))
}

pub async fn run(base: &str, prefix: &str, plan: &Plan, pids: &[u32]) -> Result<(), String> {
    let n = plan.rooms * plan.members;
    let files = raise_open_files()?;
    let server = server_addr(base)?;
    let addresses = n.div_ceil(plan.per_address.max(1));
    println!(
        "many: {n} connections ({} rooms x {}, protocol {}) from {addresses} source \
         addresses ({} each, 127.0.0.2 on); bench open-file limit {files}",
        plan.rooms,
        plan.members,
        plan.protocol.describe(),
        plan.per_address
    );
    if files < n as u64 + 64 {
        println!("# warning: the bench's open-file limit is below the connections wanted");
    }
    let rss = |pids: &[u32]| {
        if pids.is_empty() {
            Ok(None)
        } else {
            procfs::total_rss_kib(pids).map(Some)
        }
    };
    let rss_before = rss(pids)?;
    let tally = Arc::new(Tally::new());
    let (stop, stopped) = watch::channel(false);
    let closed = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(Semaphore::new(plan.concurrency.max(1)));
    let began = Instant::now();
    let mut joins: Vec<JoinHandle<Result<Socket, String>>> = Vec::with_capacity(n);
    for i in 0..n {
        let (r, m) = (i / plan.members, i % plan.members);
        let url = client::websocket_url(base, &format!("{prefix}-{r}"))?;
        let from = source(i, plan.per_address);
        let gate = gate.clone();
        let protocol = plan.protocol;
        joins.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.map_err(|e| e.to_string())?;
            tokio::time::timeout(
                JOIN_TIMEOUT,
                join(&url, server, from, &format!("m{r}-{m}"), protocol),
            )
            .await
            .map_err(|_| format!("m{r}-{m}: not joined within {JOIN_TIMEOUT:?}"))?
        }));
    }
    let mut senders = Vec::with_capacity(plan.rooms);
    let mut receivers = Vec::with_capacity(n);
    let mut failed = 0usize;
    let mut errors = Vec::new();
    for (i, j) in joins.into_iter().enumerate() {
        match j.await.map_err(|e| e.to_string()).and_then(|r| r) {
            Ok(ws) => {
                let (sink, stream) = ws.split();
                receivers.push(tokio::spawn(receive(
                    stream,
                    tally.clone(),
                    stopped.clone(),
                    closed.clone(),
                )));
                if i % plan.members == 0 {
                    senders.push((i / plan.members, sink));
                }
            }
            Err(e) => {
                failed += 1;
                if errors.len() < ERRORS_SHOWN {
                    errors.push(e);
                }
            }
        }
    }
    let joined_in = began.elapsed();
    let joined = n - failed;
    println!(
        "joined {joined} of {n} in {:.1} s ({:.0} joins/s)",
        joined_in.as_secs_f64(),
        joined as f64 / joined_in.as_secs_f64()
    );
    for e in &errors {
        println!("# join failed: {e}");
    }
    // Settled: no frame to anyone for SETTLE_QUIET (the joins' presence frames done).
    let settle_from = Instant::now();
    let mut last = tally.frames.load(Ordering::Relaxed);
    let mut quiet_since = Instant::now();
    while settle_from.elapsed() < SETTLE_MAX {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = tally.frames.load(Ordering::Relaxed);
        if now != last {
            last = now;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= SETTLE_QUIET {
            break;
        }
    }
    let rss_settled = rss(pids)?;
    println!(
        "settled {:.1} s after the last join",
        settle_from.elapsed().as_secs_f64()
    );
    if let (Some(before), Some(after)) = (rss_before, rss_settled) {
        println!(
            "server RSS {before} KiB -> {after} KiB with {joined} joined: {:.2} KiB per connection",
            after.saturating_sub(before) as f64 / joined.max(1) as f64
        );
    }

    // Traffic: one message per second in every room, phases spread over the second.
    let base_delivered = tally.delivered.load(Ordering::Relaxed);
    let sending = Arc::new(AtomicBool::new(true));
    let rooms_sending = senders.len();
    let cpu_before = cpu(pids)?;
    let traffic = Instant::now();
    let mut sends = Vec::with_capacity(rooms_sending);
    for (r, sink) in senders {
        let phase = Duration::from_secs_f64(r as f64 / plan.rooms as f64);
        sends.push(tokio::spawn(send(
            sink,
            tally.clone(),
            plan.secs,
            phase,
            sending.clone(),
        )));
    }
    let mut sent = 0u64;
    for s in sends {
        sent += s.await.unwrap_or(0);
    }
    let sending_secs = traffic.elapsed().as_secs_f64();
    let cpu_used = cpu(pids)?.zip(cpu_before).map(|(a, b)| a.saturating_sub(b));
    tokio::time::sleep(GRACE).await;
    stop.send_replace(true);
    let rss_end = rss(pids)?;
    let delivered = tally.delivered.load(Ordering::Relaxed) - base_delivered;
    let expected = sent * plan.members as u64;
    let lost = expected.saturating_sub(delivered);
    println!(
        "traffic: {rooms_sending} rooms x 1 msg/s for {} s: {sent} messages sent, \
         {delivered} of {expected} deliveries ({:.0}/s over {sending_secs:.1} s), \
         loss {:.3} %, connections closed {}",
        plan.secs,
        delivered as f64 / sending_secs,
        100.0 * lost as f64 / expected.max(1) as f64,
        closed.load(Ordering::Relaxed)
    );
    if let Some(used) = cpu_used {
        println!(
            "server CPU while sending: {:.1} s of {sending_secs:.1} s ({:.2} µs per delivery)",
            used.as_secs_f64(),
            used.as_secs_f64() * 1e6 / delivered.max(1) as f64
        );
    }
    let ms = |q| {
        tally
            .quantile_ms(q)
            .map_or("-".into(), |v| format!("{v:.1} ms"))
    };
    println!(
        "latency send -> receive: p50 {}, p99 {}, p99.9 {}",
        ms(0.5),
        ms(0.99),
        ms(0.999)
    );
    if let (Some(before), Some(end)) = (rss_before, rss_end) {
        println!(
            "server RSS after the traffic {end} KiB: {:.2} KiB per connection",
            end.saturating_sub(before) as f64 / joined.max(1) as f64
        );
    }
    for r in receivers {
        let _ = r.await;
    }
    if failed > 0 {
        return Err(format!("{failed} of {n} connections did not join"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_skip_the_servers_address_and_spread() {
        assert_eq!(source(0, 500), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(source(499, 500), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(source(500, 500), Ipv4Addr::new(127, 0, 0, 3));
        assert_eq!(source(254 * 500, 500), Ipv4Addr::new(127, 0, 1, 0));
    }

    #[test]
    fn latencies_come_from_the_texts() {
        let t = Tally::new();
        t.received(r#"{"name":"a","message":"0","seq":1}"#);
        t.received(r#"{"batch":[{"message":"0"},{"message":"x"}]}"#);
        assert_eq!(t.delivered.load(Ordering::Relaxed), 2);
        assert_eq!(t.frames.load(Ordering::Relaxed), 2);
        assert!(t.quantile_ms(0.5).is_some());
    }
}
