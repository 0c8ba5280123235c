//! One WebSocket: a reader (this task) that forwards frames to the room actor and
//! checks that the client reads (`liveness`), and a writer task that drains the
//! connection's bounded queue (`link`) into the socket in batches.

use crate::clock::next_conn_id;
use crate::link::{self, Out, Pinger, Pop, Queued, WriterEnd};
use crate::liveness::{random_payload, Liveness, Verdict};
use crate::metrics::Metrics;
use crate::registry::Rooms;
use crate::room_inbox::{Event, Join};
use crate::upgrade::Socket;
use axum::body::Bytes;
use chat_handler::{Close, ConnId, Peer};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{Sink, StreamExt};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{interval_at, sleep, sleep_until, timeout, Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data as OpData, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame as WireFrame;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use tracing::debug;

/// Most frames written between two flushes.
const BATCH: usize = 64;
/// Longest piece of a message written as one WebSocket frame; a longer message (a big
/// room's roster, a history page, a large batch) goes out in fragments of this size.
/// tungstenite copies each frame whole into the connection's write buffer, which never
/// gives its capacity back: sent whole, a 170 KiB roster left every joiner of a room of
/// 10,000 holding 170 KiB for good. Each fragment is flushed as soon as it is handed
/// over, so the buffer holds at most one fragment beyond the small frames queued
/// before it (which the library writes out past `http::WRITE_BUFFER`). Every WebSocket client reassembles
/// fragmented messages (RFC 6455, section 5.4), and a close may come between two
/// fragments (control frames may be interleaved).
pub(crate) const FRAGMENT: usize = 4 * 1024;
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

/// Serves one upgraded socket until it closes. `alive` is held for the life of the
/// connection so shutdown can wait for every socket to finish; the connection counts in
/// `metrics` for as long.
///
/// Not an `async fn`: an async fn's future keeps room for its arguments for its whole
/// life, and the `WebSocket` is 0.4 KiB. Split (into two handles on one shared state)
/// and joined before the future is built, it does not sit in every connection's task;
/// nor do `rooms` and `room`, needed only to join.
pub(crate) fn serve(
    socket: Socket,
    rooms: Arc<Rooms>,
    room: String,
    peer: Peer,
    settings: ConnSettings,
    metrics: Arc<Metrics>,
    alive: mpsc::Sender<()>,
) -> impl Future<Output = ()> {
    let open = metrics.connection();
    let conn = next_conn_id();
    let (sink, stream) = socket.split();
    let (link, writer_end) = link::queue(settings.queue_bound, metrics);
    let pinger = writer_end.pinger();
    let liveness = Arc::new(Liveness::new(
        settings.drain_timeout,
        settings.ping_interval,
        Instant::now(),
    ));
    let writer = tokio::spawn(write_loop(sink, writer_end, liveness.clone()));
    let joined = rooms.join(&room, Join { conn, peer, link });
    async move {
        let _alive = alive;
        let _open = open;
        let events = match joined {
            Ok(events) => events,
            Err(join) => {
                // Shutting down: this socket slipped in as the server stopped.
                join.link.close(Close::GoingAway);
                drop(pinger);
                finish_writer(writer).await;
                return;
            }
        };
        let reader = Reader {
            conn,
            events,
            pinger,
            liveness,
        };
        reader.run(stream, writer).await;
    }
}

struct Reader {
    conn: ConnId,
    events: mpsc::Sender<Event>,
    /// For probes only; frames come from the room actor.
    pinger: Pinger,
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
    async fn run(self, mut stream: SplitStream<Socket>, mut writer: JoinHandle<()>) {
        let conn = self.conn;
        let period = self.liveness.period();
        let mut check = interval_at(Instant::now() + period, period);
        check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut writer_done = false;
        // The room has let the connection go ([`Reader::leave`]).
        let mut left = false;
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
                    // The library answers pings.
                    Some(Ok(Message::Ping(_))) => {}
                    // The client closes (not a reply to our close). The library answers
                    // it on our next read; first the room lets the member go, so that
                    // whoever reconnects once the close is answered finds the quit
                    // processed (docs/protocol.md, "Closing"). From now on the writer
                    // could only fail (nothing may follow a close) or flush that answer
                    // early, so it stops here; frames it already wrote go out with the
                    // answer.
                    Some(Ok(Message::Close(_))) if deadline.is_none() && !left => {
                        if !writer_done {
                            writer.abort();
                            writer_done = true;
                        }
                        self.leave().await;
                        left = true;
                    }
                    Some(Ok(Message::Close(_))) => {}
                    // Reading yields whole messages, never raw frames.
                    Some(Ok(Message::Frame(_))) => {}
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
                        Verdict::Probe(payload) => match self.pinger.ping(payload) {
                            Queued::Full => Some(Close::SlowConsumer),
                            Queued::Ok | Queued::Gone => None,
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
        // with our pinger gone too, the writer drains what is queued and stops.
        if !left {
            let _ = self.events.send(Event::Disconnect { conn }).await;
        }
        drop(self.pinger);
        if !writer_done {
            finish_writer(writer).await;
        }
        if end == End::TooBig {
            sleep(TOO_BIG_LINGER).await;
        }
        debug!(conn, "socket closed");
    }
}

impl Reader {
    /// Has the room let the connection go, and waits (bounded) until it has: its quit
    /// is then queued for every member.
    async fn leave(&self) {
        let (done, processed) = oneshot::channel();
        let event = Event::Leave {
            conn: self.conn,
            done,
        };
        if self.events.send(event).await.is_ok() {
            // A room that is gone drops `done`; one that is stuck past the grace does
            // not keep the socket either.
            let _ = timeout(CLOSE_GRACE, processed).await;
        }
    }
}

/// Waits for the writer to get out what it has, within the grace period.
async fn finish_writer(mut writer: JoinHandle<()>) {
    if timeout(CLOSE_GRACE, &mut writer).await.is_err() {
        writer.abort();
    }
}

/// True if the WebSocket library refused a message for its size.
fn is_too_big(e: tungstenite::Error) -> bool {
    use tungstenite::error::{CapacityError, Error};
    match e {
        Error::Capacity(CapacityError::MessageTooLong { .. }) => true,
        other => {
            debug!(error = %other, "websocket read failed");
            false
        }
    }
}

fn close_message(close: Close) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(close.code()),
        reason: Utf8Bytes::from_static(close.reason()),
    }))
}

/// The writer task: writes queued frames until a close is out, the queue ended, or the
/// socket failed. A close that jumped the queue (the client is not reading) gets the
/// grace period to go out, and no more.
async fn write_loop(
    mut sink: SplitSink<Socket, Message>,
    writer_end: WriterEnd,
    liveness: Arc<Liveness>,
) {
    let mut writer = Writer::new(liveness);
    poll_fn(|cx| match writer.poll_write(cx, &mut sink, &writer_end) {
        Poll::Pending if !writer.urgent => Poll::Pending,
        _ => Poll::Ready(()),
    })
    .await;
    if !writer.done {
        let close = poll_fn(|cx| writer.poll_write(cx, &mut sink, &writer_end));
        if timeout(CLOSE_GRACE, close).await.is_err() {
            debug!("close frame not sent in time");
        }
    }
}

/// Writes queued frames in batches: take what is queued (up to [`BATCH`]), then flush
/// once. A close ends the writing, whether it came through the queue (after the frames
/// before it) or the urgent line (the queue is stuck, so no more frames are taken, and
/// a frame the socket would not take is abandoned).
///
/// A poll function over state kept here rather than a future holding a channel: the
/// urgent line is looked at before every step, with no oneshot or select! per
/// connection, and the writer task can tell when an urgent close is on its way (and
/// give it the grace period).
struct Writer {
    /// A message taken from the queue that the sink could not take yet.
    pending: Option<Message>,
    /// What is left of a message going out in fragments ([`FRAGMENT`]).
    rest: Option<Bytes>,
    /// A fragment was handed to the sink: flush before taking anything more.
    flush_now: bool,
    /// Messages handed to the sink since the last flush.
    unflushed: usize,
    /// Our close frame is on its way: take no more frames.
    closing: bool,
    /// That close jumped the queue.
    urgent: bool,
    /// Nothing more to write: the close is out, the queue ended, or the socket failed.
    done: bool,
    written: Written,
}

impl Writer {
    fn new(liveness: Arc<Liveness>) -> Self {
        Writer {
            pending: None,
            rest: None,
            flush_now: false,
            unflushed: 0,
            closing: false,
            urgent: false,
            done: false,
            written: Written {
                liveness,
                unprobed: false,
            },
        }
    }

    /// Writes until there is nothing to write, or the sink cannot take more; ready once
    /// the writing is over ([`Writer::done`]).
    fn poll_write<S: Sink<Message, Error = tungstenite::Error> + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        sink: &mut S,
        writer_end: &WriterEnd,
    ) -> Poll<()> {
        match self.write(cx, sink, writer_end) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => debug!(error = %e, "websocket write failed"),
            Poll::Pending => return Poll::Pending,
        }
        self.done = true;
        Poll::Ready(())
    }

    fn write<S: Sink<Message, Error = tungstenite::Error> + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        sink: &mut S,
        writer_end: &WriterEnd,
    ) -> Poll<Result<(), tungstenite::Error>> {
        let mut sink = Pin::new(sink);
        loop {
            if let Some(close) = writer_end.poll_urgent(cx) {
                if !self.closing {
                    debug!(?close, "close frame sent past the queue");
                    // Abandon the batch: frames already handed to the sink stay ahead of
                    // the close (the library writes in order); no more are taken.
                    self.pending = Some(close_message(close));
                    self.rest = None;
                    self.closing = true;
                    self.urgent = true;
                }
            }
            if let Some(msg) = self.pending.take() {
                if sink.as_mut().poll_ready(cx)?.is_pending() {
                    self.pending = Some(msg);
                    return Poll::Pending;
                }
                // A fragment is flushed at once, so the library's buffer holds one
                // fragment beyond what was queued before it (see [`FRAGMENT`]).
                self.flush_now |= matches!(msg, Message::Frame(_));
                sink.as_mut().start_send(msg)?;
                self.unflushed += 1;
                continue;
            }
            let ended = if self.closing || self.unflushed >= BATCH || self.flush_now {
                false
            } else if let Some(fragment) = self.next_fragment() {
                self.pending = Some(fragment);
                continue;
            } else {
                match writer_end.pop() {
                    Pop::Item(out) => {
                        self.pending = Some(self.message(out));
                        continue;
                    }
                    Pop::Empty => false,
                    Pop::Ended => true,
                }
            };
            if self.unflushed > 0 {
                let full = self.unflushed >= BATCH;
                ready!(sink.as_mut().poll_flush(cx))?;
                self.unflushed = 0;
                self.flush_now = false;
                if !self.closing {
                    if full {
                        // One batch per turn: let the other connections write too.
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    continue;
                }
            }
            if self.closing || ended {
                return Poll::Ready(Ok(()));
            }
            return Poll::Pending;
        }
    }

    /// The next fragment of a message going out in fragments, if one is.
    fn next_fragment(&mut self) -> Option<Message> {
        let rest = self.rest.as_mut()?;
        let piece = rest.split_to(rest.len().min(FRAGMENT));
        let last = rest.is_empty();
        if last {
            self.rest = None;
        }
        Some(Message::Frame(WireFrame::message(
            piece,
            OpCode::Data(OpData::Continue),
            last,
        )))
    }

    /// The message for a queued item, telling `liveness` what goes out in what order.
    fn message(&mut self, out: Out) -> Message {
        match out {
            Out::Text(text) => {
                self.written.frame();
                if text.len() <= FRAGMENT {
                    return Message::Text(text);
                }
                let mut rest = Bytes::from(text);
                let first = rest.split_to(FRAGMENT);
                self.rest = Some(rest);
                Message::Frame(WireFrame::message(first, OpCode::Data(OpData::Text), false))
            }
            Out::Ping(payload) => {
                self.written.probe(&payload);
                Message::Ping(payload)
            }
            Out::Close(close) => {
                self.closing = true;
                close_message(close)
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{duplex, AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

    /// The server's end of a pipe, noting the longest single write: tungstenite writes
    /// its whole write buffer at once, so that is the most the buffer held.
    struct Recording {
        io: DuplexStream,
        longest: Arc<AtomicUsize>,
    }

    impl AsyncRead for Recording {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Recording {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.longest.fetch_max(buf.len(), Ordering::Relaxed);
            Pin::new(&mut self.io).poll_write(cx, buf)
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_flush(cx)
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_shutdown(cx)
        }
    }

    /// A message far over [`FRAGMENT`] reaches the client whole and in order, while the
    /// library never buffers more than one fragment of it: the write buffer a
    /// connection keeps after a big roster stays that small. (Sent whole, the longest
    /// write was the message itself.)
    #[tokio::test]
    async fn a_big_message_goes_out_in_fragments_and_arrives_whole() {
        use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
        let write_target = crate::http::WRITE_BUFFER;
        let (server_io, client_io) = duplex(1 << 20);
        let longest = Arc::new(AtomicUsize::new(0));
        let config = WebSocketConfig::default().write_buffer_size(write_target);
        let server = tokio_tungstenite::WebSocketStream::from_raw_socket(
            Recording {
                io: server_io,
                longest: longest.clone(),
            },
            tungstenite::protocol::Role::Server,
            Some(config),
        )
        .await;
        let mut client = tokio_tungstenite::WebSocketStream::from_raw_socket(
            client_io,
            tungstenite::protocol::Role::Client,
            None,
        )
        .await;
        let (mut sink, _stream) = server.split();
        let (link, writer_end) = link::queue(16, Arc::default());
        let liveness = Arc::new(Liveness::new(
            Duration::from_secs(10),
            Duration::from_secs(10),
            Instant::now(),
        ));
        // A 100 KiB message with multi-byte characters (fragments split them: the
        // client checks UTF-8 over the whole message), then a small one.
        let big: String = "é-roster,".repeat(10 * 1024);
        assert!(big.len() >= 25 * FRAGMENT);
        assert_eq!(link.send(Utf8Bytes::from(big.as_str())), Queued::Ok);
        assert_eq!(link.send(Utf8Bytes::from_static("small")), Queued::Ok);
        drop(link);
        let mut writer = Writer::new(liveness);
        poll_fn(|cx| writer.poll_write(cx, &mut sink, &writer_end)).await;
        let got = |m: Option<Result<Message, tungstenite::Error>>| match m {
            Some(Ok(Message::Text(t))) => t.to_string(),
            other => panic!("expected a text message, got {other:?}"),
        };
        assert_eq!(got(client.next().await), big);
        assert_eq!(got(client.next().await), "small");
        let longest = longest.load(Ordering::Relaxed);
        // A fragment's header is at most 14 bytes; each was written on its own.
        assert!(
            longest <= FRAGMENT + 14,
            "the library buffered {longest} bytes at once"
        );
    }
}
