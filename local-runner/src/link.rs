//! What a room actor holds for each connection: the sending end of the connection's
//! bounded writer queue, plus a one-shot "close now" line that bypasses the queue when
//! the queue is what is stuck. Every close the server orders goes through
//! [`ConnLink::close`], which is where closes are counted for `/metrics`.

use crate::metrics::Metrics;
use axum::body::Bytes;
use axum::extract::ws::Utf8Bytes;
use chat_handler::{Close, Frame};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// An item for a connection's writer task.
#[derive(Debug)]
pub(crate) enum Out {
    Text(Utf8Bytes),
    /// A liveness probe with its payload (see `liveness`).
    Ping(Bytes),
    Close(Close),
}

/// The room actor's handle on one connection.
#[derive(Debug)]
pub(crate) struct ConnLink {
    queue: mpsc::Sender<Out>,
    urgent: oneshot::Sender<Close>,
    metrics: Arc<Metrics>,
}

/// The outcome of queueing a frame.
pub(crate) enum Queued {
    Ok,
    /// The queue is at its bound: the connection is a slow consumer.
    Full,
    /// The writer is gone; the connection is ending and will report its disconnect.
    Gone,
}

impl ConnLink {
    pub(crate) fn new(
        queue: mpsc::Sender<Out>,
        urgent: oneshot::Sender<Close>,
        metrics: Arc<Metrics>,
    ) -> Self {
        ConnLink {
            queue,
            urgent,
            metrics,
        }
    }

    /// Queues a frame without waiting: the room never waits for a connection.
    pub(crate) fn send(&self, frame: Utf8Bytes) -> Queued {
        match self.queue.try_send(Out::Text(frame)) {
            Ok(()) => Queued::Ok,
            Err(mpsc::error::TrySendError::Full(_)) => Queued::Full,
            Err(mpsc::error::TrySendError::Closed(_)) => Queued::Gone,
        }
    }

    /// Closes the connection after the frames already queued (so an error frame
    /// queued just before still reaches the client). If the queue is full, or the
    /// close is for a slow consumer, the close jumps it: the client is not reading, so
    /// nothing queued would arrive anyway.
    pub(crate) fn close(self, close: Close) {
        self.metrics.closed(close);
        if close == Close::SlowConsumer {
            let _ = self.urgent.send(close);
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = self.queue.try_send(Out::Close(close)) {
            let _ = self.urgent.send(close);
        }
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

    #[test]
    fn close_jumps_a_full_queue() {
        let (tx, mut rx) = mpsc::channel(1);
        let (utx, mut urx) = oneshot::channel();
        let link = ConnLink::new(tx, utx, Arc::default());
        assert!(matches!(link.send("a".into()), Queued::Ok));
        assert!(matches!(link.send("b".into()), Queued::Full));
        link.close(Close::Flooding);
        assert_eq!(urx.try_recv().unwrap(), Close::Flooding);
        assert!(matches!(rx.try_recv().unwrap(), Out::Text(_)));
    }

    #[test]
    fn a_slow_consumers_close_jumps_any_queue() {
        let (tx, mut rx) = mpsc::channel(8);
        let (utx, mut urx) = oneshot::channel();
        let link = ConnLink::new(tx, utx, Arc::default());
        assert!(matches!(link.send("a".into()), Queued::Ok));
        link.close(Close::SlowConsumer);
        assert_eq!(urx.try_recv().unwrap(), Close::SlowConsumer);
        assert!(matches!(rx.try_recv().unwrap(), Out::Text(_)));
        assert!(rx.try_recv().is_err(), "nothing queued behind the frame");
    }
}
