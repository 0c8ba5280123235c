//! A connection's outgoing queue. The room actor holds one end (a [`ConnLink`]), the
//! connection's writer task the other (a [`WriterEnd`]), and its reader a [`Pinger`]
//! for liveness probes. Bounded (a full queue marks a slow consumer), with a "close now"
//! line that bypasses the queue when the queue is what is stuck. Every close the server
//! orders goes through [`ConnLink::close`], which is where closes are counted for
//! `/metrics`.
//!
//! A `VecDeque` under a mutex rather than tokio's mpsc plus a oneshot, for memory: an
//! mpsc channel allocates a 32-slot block (1.3 KiB of `Out`) and a cache-padded channel
//! (0.5 KiB) up front, and keeps every block a burst ever needed (a v1 join burst in a
//! room of 100 is 100 frames) for the life of the connection. This queue gives its
//! storage back once drained, so an idle connection keeps a few slots here. The lock is
//! held for a push or a pop only, by the room actor, the reader and the writer.

use crate::metrics::Metrics;
use axum::body::Bytes;
use chat_handler::{Close, Frame};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Waker};
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// Slots a drained queue keeps: enough for a connection that is read as fast as frames
/// come, so a steady flow does not allocate per frame; a burst's storage beyond this is
/// given back once it has been written.
const IDLE_SLOTS: usize = 4;

/// An item for a connection's writer task.
#[derive(Debug)]
pub(crate) enum Out {
    Text(Utf8Bytes),
    /// A liveness probe with its payload (see `liveness`).
    Ping(Bytes),
    Close(Close),
}

#[derive(Debug)]
struct State {
    frames: VecDeque<Out>,
    bound: usize,
    /// A close that jumped the queue (the client is not reading what is queued).
    urgent: Option<Close>,
    /// Ends that may still queue something (the room's link, the reader's pinger):
    /// once none is left and the queue is drained, nothing more will come.
    senders: usize,
    /// The writer is gone: frames have nowhere to go.
    writer_gone: bool,
    /// The writer task, to wake when there is something for it.
    waker: Option<Waker>,
}

impl State {
    /// Queues `out` unless the queue is at its bound or the writer is gone.
    fn push(&mut self, out: Out) -> Queued {
        if self.writer_gone {
            return Queued::Gone;
        }
        if self.frames.len() >= self.bound {
            return Queued::Full;
        }
        self.frames.push_back(out);
        Queued::Ok
    }
}

#[derive(Debug)]
struct Shared(Mutex<State>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing under this lock can leave the state half-updated.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the state, then wakes the writer (outside the lock).
    fn update<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self.lock();
        let out = f(&mut state);
        let waker = state.waker.take();
        drop(state);
        if let Some(w) = waker {
            w.wake();
        }
        out
    }

    /// One sending end let go.
    fn sender_gone(&self) {
        self.update(|state| state.senders = state.senders.saturating_sub(1));
    }
}

/// A new queue of at most `bound` items: the room's end and the writer's end. Closes
/// ordered through the room's end are counted in `metrics`.
pub(crate) fn queue(bound: usize, metrics: Arc<Metrics>) -> (ConnLink, WriterEnd) {
    let shared = Arc::new(Shared(Mutex::new(State {
        frames: VecDeque::new(),
        bound: bound.max(1),
        urgent: None,
        senders: 1,
        writer_gone: false,
        waker: None,
    })));
    let link = ConnLink {
        shared: shared.clone(),
        metrics,
    };
    (link, WriterEnd(shared))
}

/// The room actor's handle on one connection.
#[derive(Debug)]
pub(crate) struct ConnLink {
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
}

/// The outcome of queueing a frame.
#[derive(Debug, PartialEq)]
pub(crate) enum Queued {
    Ok,
    /// The queue is at its bound: the connection is a slow consumer.
    Full,
    /// The writer is gone; the connection is ending and will report its disconnect.
    Gone,
}

impl ConnLink {
    /// Queues a frame without waiting: the room never waits for a connection.
    pub(crate) fn send(&self, frame: Utf8Bytes) -> Queued {
        self.shared.update(|state| state.push(Out::Text(frame)))
    }

    /// Closes the connection after the frames already queued (so an error frame
    /// queued just before still reaches the client). If the queue is full, or the
    /// close is for a slow consumer, the close jumps it: the client is not reading, so
    /// nothing queued would arrive anyway.
    pub(crate) fn close(self, close: Close) {
        self.metrics.closed(close);
        let mut state = self.shared.lock();
        if state.writer_gone {
            return;
        }
        if close == Close::SlowConsumer || state.frames.len() >= state.bound {
            state.urgent = Some(close);
        } else {
            state.frames.push_back(Out::Close(close));
        }
        // Dropping `self` next wakes the writer.
    }
}

impl Drop for ConnLink {
    fn drop(&mut self) {
        self.shared.sender_gone();
    }
}

/// What the writer finds in its queue.
#[derive(Debug)]
pub(crate) enum Pop {
    Item(Out),
    /// Nothing yet; the writer is woken when that changes (see
    /// [`WriterEnd::poll_urgent`]).
    Empty,
    /// Drained, and every sending end let go: nothing more will come.
    Ended,
}

/// The writer task's end of the queue.
#[derive(Debug)]
pub(crate) struct WriterEnd(Arc<Shared>);

impl WriterEnd {
    /// Takes an urgent close, if one came, and has the writer woken by whatever happens
    /// next (an item, a close, an end letting go). Called at the start of every step of
    /// the writer, so no wake-up falls between a check and the next wait.
    pub(crate) fn poll_urgent(&self, cx: &Context<'_>) -> Option<Close> {
        let mut state = self.0.lock();
        match &state.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        state.urgent.take()
    }

    /// The next queued item. A drained queue gives back storage beyond a few slots.
    pub(crate) fn pop(&self) -> Pop {
        let mut state = self.0.lock();
        match state.frames.pop_front() {
            Some(out) => {
                if state.frames.is_empty() && state.frames.capacity() > IDLE_SLOTS {
                    state.frames.shrink_to(IDLE_SLOTS);
                }
                Pop::Item(out)
            }
            None if state.senders == 0 => Pop::Ended,
            None => Pop::Empty,
        }
    }

    /// A handle for the connection's reader to queue probes with. The queue does not
    /// end while it is held.
    pub(crate) fn pinger(&self) -> Pinger {
        self.0.lock().senders += 1;
        Pinger(self.0.clone())
    }

    /// Waits for the next queued item; `None` once the queue has ended.
    #[cfg(test)]
    pub(crate) async fn next(&self) -> Option<Out> {
        std::future::poll_fn(|cx| {
            let _ = self.poll_urgent(cx);
            match self.pop() {
                Pop::Item(out) => std::task::Poll::Ready(Some(out)),
                Pop::Ended => std::task::Poll::Ready(None),
                Pop::Empty => std::task::Poll::Pending,
            }
        })
        .await
    }

    /// The urgent close, if one came (tests look without waiting).
    #[cfg(test)]
    pub(crate) fn urgent(&self) -> Option<Close> {
        self.0.lock().urgent.take()
    }

    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.0.lock().frames.capacity()
    }
}

impl Drop for WriterEnd {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.writer_gone = true;
        // Items nobody will write: free them now rather than with the last end.
        state.frames = VecDeque::new();
        state.waker = None;
    }
}

/// The reader's end: it queues liveness probes, behind the room's frames.
#[derive(Debug)]
pub(crate) struct Pinger(Arc<Shared>);

impl Pinger {
    /// Queues a ping with `payload`. `Full` means frames the client has not read fill
    /// the queue.
    pub(crate) fn ping(&self, payload: Bytes) -> Queued {
        self.0.update(|state| state.push(Out::Ping(payload)))
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        self.0.sender_gone();
    }
}

/// Lets a shared frame back a `Bytes` without copying it.
struct SharedFrame(Frame);

impl AsRef<[u8]> for SharedFrame {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// Wraps an encoded frame for axum without copying it: every recipient of a broadcast
/// gets a clone of the same bytes. (The UTF-8 check runs once per frame, not per
/// recipient; it cannot fail for a `str`, and the fallback copies rather than panics.)
pub(crate) fn frame_bytes(frame: &Frame) -> Utf8Bytes {
    Utf8Bytes::try_from(Bytes::from_owner(SharedFrame(frame.clone())))
        .unwrap_or_else(|_| Utf8Bytes::from(&**frame))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_bytes_share_the_frame() {
        let frame: Frame = Arc::from(r#"{"joined":"alice"}"#);
        let bytes = frame_bytes(&frame);
        assert_eq!(bytes.as_str(), &*frame);
        // The Arc is held by the Bytes, not copied out of.
        assert_eq!(Arc::strong_count(&frame), 2);
        assert_eq!(bytes.as_str().as_ptr(), frame.as_ptr());
    }

    fn queue(bound: usize) -> (ConnLink, WriterEnd) {
        super::queue(bound, Arc::default())
    }

    #[test]
    fn close_jumps_a_full_queue() {
        let (link, writer_end) = queue(1);
        assert_eq!(link.send("a".into()), Queued::Ok);
        assert_eq!(link.send("b".into()), Queued::Full);
        link.close(Close::Flooding);
        assert_eq!(writer_end.urgent(), Some(Close::Flooding));
        assert!(matches!(writer_end.pop(), Pop::Item(Out::Text(_))));
        // The link went with its close: the queue ends once drained.
        assert!(matches!(writer_end.pop(), Pop::Ended));
    }

    #[test]
    fn a_slow_consumers_close_jumps_any_queue() {
        let (link, writer_end) = queue(8);
        assert_eq!(link.send("a".into()), Queued::Ok);
        link.close(Close::SlowConsumer);
        assert_eq!(writer_end.urgent(), Some(Close::SlowConsumer));
        assert!(matches!(writer_end.pop(), Pop::Item(Out::Text(_))));
        assert!(
            matches!(writer_end.pop(), Pop::Ended),
            "nothing queued behind the frame"
        );
    }

    #[test]
    fn a_close_with_room_goes_after_the_frames() {
        let (link, writer_end) = queue(4);
        assert_eq!(link.send("a".into()), Queued::Ok);
        link.close(Close::GoingAway);
        assert!(matches!(writer_end.pop(), Pop::Item(Out::Text(_))));
        assert!(matches!(
            writer_end.pop(),
            Pop::Item(Out::Close(Close::GoingAway))
        ));
        assert!(matches!(writer_end.pop(), Pop::Ended));
        assert_eq!(writer_end.urgent(), None);
    }

    #[test]
    fn closes_are_counted() {
        let metrics = Arc::new(Metrics::new());
        let (link, _writer_end) = super::queue(4, metrics.clone());
        link.close(Close::GoingAway);
        let page = metrics.render();
        let counted: Vec<&str> = page
            .lines()
            .filter(|l| l.starts_with("edge_chat_closes_total{"))
            .filter(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) == Some(1.0))
            .collect();
        assert_eq!(counted.len(), 1, "{page}");
        assert!(counted[0].contains("\"1001\""), "{page}");
    }

    #[test]
    fn probes_share_the_bound_and_report_a_full_queue() {
        let (link, writer_end) = queue(2);
        let pinger = writer_end.pinger();
        assert_eq!(pinger.ping(Bytes::from_static(b"p")), Queued::Ok);
        assert_eq!(link.send("a".into()), Queued::Ok);
        assert_eq!(pinger.ping(Bytes::from_static(b"q")), Queued::Full);
        assert_eq!(link.send("b".into()), Queued::Full);
        assert!(matches!(writer_end.pop(), Pop::Item(Out::Ping(p)) if &p[..] == b"p"));
        assert!(matches!(writer_end.pop(), Pop::Item(Out::Text(_))));
        assert!(matches!(writer_end.pop(), Pop::Empty));
    }

    #[test]
    fn the_queue_ends_only_when_the_room_and_the_reader_let_go() {
        let (link, writer_end) = queue(4);
        let pinger = writer_end.pinger();
        drop(link);
        // The reader may still probe, as with the room's link alive.
        assert!(matches!(writer_end.pop(), Pop::Empty));
        assert_eq!(pinger.ping(Bytes::new()), Queued::Ok);
        drop(pinger);
        assert!(matches!(writer_end.pop(), Pop::Item(Out::Ping(_))));
        assert!(matches!(writer_end.pop(), Pop::Ended));
    }

    #[test]
    fn a_drained_burst_gives_its_storage_back() {
        let (link, writer_end) = queue(1000);
        for _ in 0..100 {
            assert_eq!(link.send("joined".into()), Queued::Ok);
        }
        assert!(writer_end.capacity() >= 100);
        while let Pop::Item(_) = writer_end.pop() {}
        assert!(
            writer_end.capacity() <= IDLE_SLOTS,
            "{}",
            writer_end.capacity()
        );
    }

    #[test]
    fn nothing_is_queued_for_a_gone_writer() {
        let (link, writer_end) = queue(4);
        let pinger = writer_end.pinger();
        drop(writer_end);
        assert_eq!(link.send("a".into()), Queued::Gone);
        assert_eq!(pinger.ping(Bytes::new()), Queued::Gone);
    }

    #[tokio::test]
    async fn a_frame_wakes_the_waiting_writer() {
        let (link, writer_end) = queue(4);
        let waiting = tokio::spawn(async move { writer_end.next().await });
        tokio::task::yield_now().await;
        assert_eq!(link.send("a".into()), Queued::Ok);
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("not woken")
            .expect("task failed");
        assert!(matches!(got, Some(Out::Text(t)) if t.as_str() == "a"));
    }

    #[tokio::test]
    async fn an_urgent_close_wakes_the_waiting_writer() {
        let (link, writer_end) = queue(1);
        assert_eq!(link.send("a".into()), Queued::Ok);
        let writer_end = Arc::new(writer_end);
        let waiter = writer_end.clone();
        // Waits as the writer does when the socket will not take the queued frame.
        let waiting = tokio::spawn(async move {
            std::future::poll_fn(|cx| match waiter.poll_urgent(cx) {
                Some(close) => std::task::Poll::Ready(close),
                None => std::task::Poll::Pending,
            })
            .await
        });
        tokio::task::yield_now().await;
        link.close(Close::SlowConsumer);
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("not woken")
            .expect("task failed");
        assert_eq!(got, Close::SlowConsumer);
    }
}
