//! The socket of an HTTP connection, with the two timeouts hyper does not have:
//!
//! - **write timeout** (`--write-timeout-secs`): a write the socket takes no byte of for
//!   this long fails, and the connection closes. A client that sends requests but never
//!   reads the answers (pipelining `GET`s behind a small receive window) fills the
//!   socket's buffers; hyper would then wait on the write forever, and the header
//!   timeout never runs because the next requests are already buffered.
//! - **idle timeout** (`--idle-timeout-secs`, 5 s by default): a connection with no
//!   write waiting on which no byte moves for this long is closed, whatever hyper is
//!   waiting for: the next request on a keep-alive connection, or the rest of a
//!   request's headers. hyper's header timeout (10 s) bounds the same wait as a whole,
//!   however many bytes come, so a slowloris that sends a byte now and then is closed
//!   by that one, and a silent client by this one, sooner.
//!
//! Both stop at the upgrade to a WebSocket ([`ConnPermit::upgraded`]): from then on the
//! connection's own liveness rules (pings, `drain_timeout_ms`) decide, and the socket
//! carries no timer.

use crate::conn_permit::ConnPermit;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, Instant, Sleep};

/// The two timeouts.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeouts {
    pub(crate) write: Duration,
    pub(crate) idle: Duration,
}

pub(crate) struct TimedIo {
    stream: TcpStream,
    /// Tells when the connection is upgraded; a refused connection (answered 503 or
    /// 429 and closed) has none, and is never upgraded.
    permit: Option<ConnPermit>,
    /// `None` once upgraded: a WebSocket carries no timer (boxed, so that it costs a
    /// pointer then).
    timing: Option<Box<Timing>>,
}

struct Timing {
    timeouts: Timeouts,
    /// When a byte last moved either way.
    last_progress: Instant,
    /// Since when a write has waited for the socket to take a byte.
    write_blocked_since: Option<Instant>,
    sleep: Pin<Box<Sleep>>,
}

impl Timing {
    /// While a write waits, the write timeout alone applies (the client owes a read);
    /// otherwise the idle timeout (the client owes a request, or the rest of one).
    fn deadline(&self) -> Instant {
        match self.write_blocked_since {
            Some(since) => since + self.timeouts.write,
            None => self.last_progress + self.timeouts.idle,
        }
    }

    /// Whether a deadline has passed; otherwise the task is woken when one does.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let deadline = self.deadline();
        if self.sleep.deadline() != deadline {
            self.sleep.as_mut().reset(deadline);
        }
        self.sleep.as_mut().poll(cx).is_ready()
    }

    fn moved(&mut self) {
        self.last_progress = Instant::now();
    }
}

fn timed_out(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what)
}

impl TimedIo {
    pub(crate) fn new(stream: TcpStream, permit: Option<ConnPermit>, timeouts: Timeouts) -> Self {
        let now = Instant::now();
        TimedIo {
            stream,
            permit,
            timing: Some(Box::new(Timing {
                timeouts,
                last_progress: now,
                write_blocked_since: None,
                sleep: Box::pin(sleep_until(now + timeouts.idle)),
            })),
        }
    }

    /// The timers, unless the connection is a WebSocket now (then they are dropped).
    fn timing(&mut self) -> Option<&mut Timing> {
        if self.timing.is_some() && self.permit.as_ref().is_some_and(ConnPermit::is_upgraded) {
            self.timing = None;
        }
        self.timing.as_deref_mut()
    }

    /// What a write returned, through the write timeout.
    fn after_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
        progressed: impl Fn(&T) -> bool,
    ) -> Poll<io::Result<T>> {
        let Some(timing) = self.timing() else {
            return polled;
        };
        match polled {
            Poll::Ready(Ok(v)) => {
                if progressed(&v) {
                    timing.moved();
                    timing.write_blocked_since = None;
                }
                Poll::Ready(Ok(v))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                timing.write_blocked_since.get_or_insert_with(Instant::now);
                if timing.expired(cx) {
                    Poll::Ready(Err(timed_out("the client did not read in time")))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl AsyncRead for TimedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        let Some(timing) = this.timing() else {
            return polled;
        };
        match polled {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    timing.moved();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if timing.expired(cx) {
                    Poll::Ready(Err(timed_out("the connection was idle too long")))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl AsyncWrite for TimedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.after_write(cx, polled, |n| *n > 0)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.after_write(cx, polled, |n| *n > 0)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_flush(cx);
        this.after_write(cx, polled, |_| false)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_shutdown(cx);
        this.after_write(cx, polled, |_| false)
    }
}
