//! One WebSocket: a reader (this task) that forwards frames to the room actor and
//! checks that the client reads (`liveness`), and a writer task that drains the
//! connection's bounded queue into the socket in batches.

use crate::clock::next_conn_id;
use crate::link::{ConnLink, Out};
use crate::liveness::{random_payload, Liveness, Verdict};
use crate::metrics::Metrics;
use crate::registry::Rooms;
use crate::room_inbox::{Event, Join};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use chat_handler::{Close, ConnId, Peer};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{interval_at, sleep, sleep_until, timeout, Instant, MissedTickBehavior};
use tracing::debug;

/// Most frames written between two flushes.
const BATCH: usize = 64;
/// After our close frame, how long we keep reading for the client's close reply (and
/// how long a writer may take to get its close out) before dropping the socket.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// After refusing an oversized message, how long the socket stays open so the client
/// reads the `Close::TooBig` close frame: closing a socket with unread input (the rest
/// of that message) makes the kernel answer with a reset, which can overtake the close
/// frame.
const TOO_BIG_LINGER: Duration = Duration::from_millis(500);

/// Per-connection settings.
#[derive(Clone)]
pub(crate) struct ConnSettings {
    /// `Config::send_queue_bound()`: the join burst plus `send_queue_frames`.
    pub(crate) queue_bound: usize,
    pub(crate) ping_interval: Duration,
    /// `Config::drain_timeout_ms`: how long sent frames may stay unread.
    pub(crate) drain_timeout: Duration,
}

/// Serves one upgraded socket until it closes. `_alive` is held for the life of the
/// connection so shutdown can wait for every socket to finish; the connection counts in
/// `metrics` for as long.
pub(crate) async fn serve(
    socket: WebSocket,
    rooms: Arc<Rooms>,
    room: String,
    peer: Peer,
    settings: ConnSettings,
    metrics: Arc<Metrics>,
    _alive: mpsc::Sender<()>,
) {
    let _open = metrics.connection();
    let conn = next_conn_id();
    let (sink, stream) = socket.split();
    let (queue_tx, queue_rx) = mpsc::channel(settings.queue_bound.max(1));
    let (urgent_tx, urgent_rx) = oneshot::channel();
    let liveness = Arc::new(Liveness::new(
        settings.drain_timeout,
        settings.ping_interval,
        Instant::now(),
    ));
    let writer = tokio::spawn(write_loop(sink, queue_rx, urgent_rx, liveness.clone()));
    let link = ConnLink::new(queue_tx.clone(), urgent_tx, metrics);
    let events = match rooms.join(&room, Join { conn, peer, link }) {
        Ok(events) => events,
        Err(join) => {
            // Shutting down: this socket slipped in as the server stopped.
            join.link.close(Close::GoingAway);
            drop(queue_tx);
            finish_writer(writer).await;
            return;
        }
    };
    let reader = Reader {
        conn,
        events,
        queue: queue_tx,
        liveness,
    };
    reader.run(stream, writer).await;
}

struct Reader {
    conn: ConnId,
    events: mpsc::Sender<Event>,
    /// For probes only; frames come from the room actor.
    queue: mpsc::Sender<Out>,
    liveness: Arc<Liveness>,
}

/// Why the read loop ended.
#[derive(PartialEq)]
enum End {
    /// The client closed, or the socket failed.
    Closed,
    /// The client sent a message over `max_frame_bytes`.
    TooBig,
    /// We closed it (our close frame is out, or the writer gave up).
    ByUs,
}

impl Reader {
    async fn run(self, mut stream: SplitStream<WebSocket>, mut writer: JoinHandle<()>) {
        let conn = self.conn;
        let period = self.liveness.period();
        let mut check = interval_at(Instant::now() + period, period);
        check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut writer_done = false;
        // Set once we are closing: stop reading then at the latest.
        let mut deadline: Option<Instant> = None;
        let end = loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(Ok(Message::Text(text))) => {
                        if self.events.send(Event::Text { conn, text }).await.is_err() {
                            break End::Closed;
                        }
                    }
                    Some(Ok(Message::Binary(data))) => {
                        let event = Event::Binary { conn, len: data.len() };
                        if self.events.send(event).await.is_err() {
                            break End::Closed;
                        }
                    }
                    Some(Ok(Message::Pong(payload))) => self.liveness.pong(&payload),
                    // The library answers pings and replies to the client's close.
                    Some(Ok(Message::Ping(_) | Message::Close(_))) => {}
                    Some(Err(e)) => {
                        if is_too_big(e) {
                            let _ = self.events.send(Event::TooBig { conn }).await;
                            break End::TooBig;
                        }
                        break End::Closed;
                    }
                    None => break if writer_done { End::ByUs } else { End::Closed },
                },
                _ = &mut writer, if !writer_done => {
                    writer_done = true;
                    deadline.get_or_insert_with(|| Instant::now() + CLOSE_GRACE);
                }
                _ = check.tick(), if deadline.is_none() => {
                    let close = match self.liveness.check(Instant::now(), random_payload) {
                        Verdict::Fine => None,
                        // A full queue is frames the client has not read.
                        Verdict::Probe(payload) => match self.queue.try_send(Out::Ping(payload)) {
                            Err(mpsc::error::TrySendError::Full(_)) => Some(Close::SlowConsumer),
                            _ => None,
                        },
                        Verdict::SlowConsumer => Some(Close::SlowConsumer),
                        // Not a policy close: the client broke no rule (it is most
                        // likely gone, or its network is), so it should reconnect.
                        Verdict::PingTimeout => Some(Close::PingTimeout),
                    };
                    if let Some(close) = close {
                        debug!(conn, ?close, "not reading");
                        let _ = self.events.send(Event::Kick { conn, close }).await;
                        // The room's close goes out (past the queue for a slow
                        // consumer); if even that cannot, give up on the socket
                        // after the grace.
                        deadline = Some(Instant::now() + CLOSE_GRACE);
                    }
                }
                _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    break End::ByUs;
                }
            }
        };
        // The room forgets the connection (if it has not already) and drops its link;
        // with ours gone too, the writer drains what is queued and stops.
        let _ = self.events.send(Event::Disconnect { conn }).await;
        drop(self.queue);
        if !writer_done {
            finish_writer(writer).await;
        }
        if end == End::TooBig {
            sleep(TOO_BIG_LINGER).await;
        }
        debug!(conn, "socket closed");
    }
}

/// Waits for the writer to get out what it has, within the grace period.
async fn finish_writer(mut writer: JoinHandle<()>) {
    if timeout(CLOSE_GRACE, &mut writer).await.is_err() {
        writer.abort();
    }
}

/// True if the WebSocket library refused a message for its size.
fn is_too_big(e: axum::Error) -> bool {
    use tungstenite::error::{CapacityError, Error};
    let inner = e.into_inner();
    match inner.downcast_ref::<Error>() {
        Some(Error::Capacity(CapacityError::MessageTooLong { .. })) => true,
        Some(other) => {
            debug!(error = %other, "websocket read failed");
            false
        }
        None => {
            debug!(error = %inner, "websocket read failed");
            false
        }
    }
}

fn close_message(close: Close) -> Message {
    Message::Close(Some(CloseFrame {
        code: close.code(),
        reason: Utf8Bytes::from_static(close.reason()),
    }))
}

/// Waits for an urgent close. Once the link is gone (the sender dropped) it never
/// resolves, and the queue alone drives the writer.
async fn urgent_close(urgent: &mut Option<oneshot::Receiver<Close>>) -> Close {
    if let Some(rx) = urgent {
        if let Ok(req) = rx.await {
            return req;
        }
        *urgent = None;
    }
    std::future::pending().await
}

/// Writes queued frames in batches: wait for one, take whatever else is queued (up to
/// [`BATCH`]), then flush once. A close ends the writer, whether it came through the
/// queue (after the frames before it) or the urgent line (the queue is stuck).
async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut queue: mpsc::Receiver<Out>,
    urgent: oneshot::Receiver<Close>,
    liveness: Arc<Liveness>,
) {
    let mut urgent = Some(urgent);
    let mut writer = Written {
        liveness,
        unprobed: false,
    };
    loop {
        let first = tokio::select! {
            biased;
            req = urgent_close(&mut urgent) => Err(req),
            out = queue.recv() => Ok(out),
        };
        let first = match first {
            Err(req) => return close_now(&mut sink, req).await,
            Ok(Some(out)) => out,
            Ok(None) => return,
        };
        let step = tokio::select! {
            biased;
            req = urgent_close(&mut urgent) => Err(req),
            wrote = write_batch(&mut sink, &mut queue, first, &mut writer) => Ok(wrote),
        };
        match step {
            // The client stopped reading mid-batch: abandon the batch.
            Err(req) => return close_now(&mut sink, req).await,
            Ok(Ok(Sent::Frames)) => {}
            Ok(Ok(Sent::Close) | Err(_)) => return,
        }
    }
}

/// What a batch ended with.
enum Sent {
    Frames,
    Close,
}

/// What the writer tells `liveness` about the order of frames and probes.
struct Written {
    liveness: Arc<Liveness>,
    /// Chat frames were written since the last probe.
    unprobed: bool,
}

impl Written {
    /// Before a frame goes out: the first since the last probe is reported at once, so
    /// a probe follows it even if the socket blocks on it.
    fn frame(&mut self) {
        if !self.unprobed {
            self.unprobed = true;
            self.liveness.wrote_frames();
        }
    }

    /// Before a probe goes out: it covers the frames written before it.
    fn probe(&mut self, payload: &[u8]) {
        self.liveness.wrote_ping(payload, self.unprobed);
        self.unprobed = false;
    }
}

async fn write_batch(
    sink: &mut SplitSink<WebSocket, Message>,
    queue: &mut mpsc::Receiver<Out>,
    first: Out,
    writer: &mut Written,
) -> Result<Sent, axum::Error> {
    let mut next = Some(first);
    let mut written = 0;
    let mut sent = Sent::Frames;
    while let Some(out) = next.take() {
        let msg = match out {
            Out::Text(text) => {
                writer.frame();
                Message::Text(text)
            }
            Out::Ping(payload) => {
                writer.probe(&payload);
                Message::Ping(payload)
            }
            Out::Close(close) => {
                sent = Sent::Close;
                close_message(close)
            }
        };
        sink.feed(msg).await?;
        written += 1;
        if written < BATCH && matches!(sent, Sent::Frames) {
            next = queue.try_recv().ok();
        }
    }
    sink.flush().await?;
    Ok(sent)
}

/// Best effort: the close frame, within the grace period.
async fn close_now(sink: &mut SplitSink<WebSocket, Message>, close: Close) {
    match timeout(CLOSE_GRACE, sink.send(close_message(close))).await {
        Ok(Ok(())) => debug!(?close, "close frame sent past the queue"),
        Ok(Err(e)) => debug!(error = %e, "close frame not sent"),
        Err(_) => debug!("close frame not sent in time"),
    }
}
