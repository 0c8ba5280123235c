//! The HTTP server: accepts connections and serves each with hyper, under three bounds
//! that `axum::serve` does not offer.
//!
//! - **Header-read timeout** (`--header-timeout-secs`): a client must send a request's
//!   headers within it, or the connection is closed. That also closes idle keep-alive
//!   connections, and a slowloris that dribbles its headers a byte at a time.
//! - **Connection cap** (`--max-connections`): at most this many connections at once,
//!   WebSockets included (an upgraded socket keeps its connection's permit, see
//!   [`ConnPermit`]). One more gets `503` with the handler's [`edge::SERVER_BUSY`] text
//!   and is closed; while [`OVER_CAP_ANSWERS`] such answers are already under way,
//!   further ones are closed without an answer. The default comes from the process's
//!   open-file limit, so the cap is reached before the file descriptors run out.
//! - **Connections per address** (`--max-connections-per-address`): at most this many
//!   of those places per client address ([`AddressCap`]), counted at accept time by
//!   the TCP peer's address, so that one address cannot hold every place. One more gets
//!   `429` with the handler's [`edge::TOO_MANY_CONNECTIONS`] text and a `Retry-After`
//!   (sent like the 503s). A trusted proxy (`--trusted-proxies`) is not counted here:
//!   its connections carry many clients, and which client a connection is for is only
//!   known from a request's headers; its WebSockets are counted by the forwarded
//!   client instead, at the upgrade (see `http`).
//! - **Write and idle timeouts** (`--write-timeout-secs`, `--idle-timeout-secs`): a
//!   client that never reads its answers, or moves no byte, is closed (see
//!   [`TimedIo`]).
//! - **Bounded shutdown**: once the shutdown signal fires, no connection is accepted,
//!   each is asked to finish its request and close, and those still open after
//!   [`SHUTDOWN_GRACE`] (a half-sent request, say) are dropped.

use crate::address_cap::AddressCap;
use crate::conn_permit::ConnPermit;
use crate::responses;
use crate::timed_io::{TimedIo, Timeouts};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use chat_handler::edge;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;
use tracing::{debug, warn};

/// How long connections may take to finish after the shutdown signal.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Connections over the cap answered with 503 at once; more are closed unanswered.
pub(crate) const OVER_CAP_ANSWERS: usize = 64;

/// Open files the process keeps for itself, outside the connection cap: the listener,
/// the database and its log, the runtime's own (epoll, signals, stdio), the over-cap
/// answers, and a margin.
const RESERVED_FILES: u64 = 64 + OVER_CAP_ANSWERS as u64;

/// The connection cap when none is given: each connection may hold a second file
/// besides its socket (a static file being sent), so half of the open-file limit left
/// after [`RESERVED_FILES`], and at least 16.
pub(crate) fn default_max_connections(open_file_limit: u64) -> usize {
    let half = open_file_limit.saturating_sub(RESERVED_FILES) / 2;
    usize::try_from(half).unwrap_or(usize::MAX).max(16)
}

/// How long a failed `accept` waits before the next one: a full file table (EMFILE)
/// fails every attempt until something closes, and retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The bounds `serve` keeps at accept time and on every HTTP connection.
pub(crate) struct ConnectionLimits {
    pub(crate) header_timeout: Duration,
    pub(crate) timeouts: Timeouts,
    pub(crate) max_connections: usize,
    /// Shared with the WebSocket endpoint, which counts proxied clients in it.
    pub(crate) per_address: Arc<AddressCap>,
    /// `--trusted-proxies`, whose connections are not counted per address.
    pub(crate) trusted: edge::TrustedProxies,
}

/// Serves `app` on `listener` until `stop` turns true, then for at most
/// [`SHUTDOWN_GRACE`] more.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) {
    let places = Arc::new(Semaphore::new(limits.max_connections));
    let answers = Arc::new(Semaphore::new(OVER_CAP_ANSWERS));
    // Every connection task holds a clone; when all are gone, `recv` returns None.
    let (alive, mut all_gone) = mpsc::channel::<()>(1);
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|down| *down) => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // Chat frames are small and latency-bound, and the connection's writer already
        // coalesces what is queued into one flush: Nagle would only hold the second
        // write of a burst (a join sequence) until the client's delayed ACK, up to 40 ms
        // per join on Linux.
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            stream,
            peer,
            header_timeout: limits.header_timeout,
            stop: stop.clone(),
            _alive: alive.clone(),
        };
        // The TCP peer's share first: an address over it is refused for itself, and
        // takes no place from anyone else.
        let slot = if limits.trusted.contains(peer.ip()) {
            None
        } else {
            match limits
                .per_address
                .try_take(edge::address_key(&peer.ip().to_string()))
            {
                Some(slot) => Some(slot),
                None => {
                    conn.refuse_if_room(&answers, Refusal::PerAddress, limits.timeouts);
                    continue;
                }
            }
        };
        match places.clone().try_acquire_owned() {
            Ok(place) => {
                let permit = ConnPermit::new(place, slot);
                tokio::spawn(conn.serve(app.clone(), permit, limits.timeouts));
            }
            Err(_) => conn.refuse_if_room(&answers, Refusal::Busy, limits.timeouts),
        }
    }
    drop(listener);
    drop(alive);
    if tokio::time::timeout(SHUTDOWN_GRACE, all_gone.recv())
        .await
        .is_err()
    {
        warn!("HTTP connections still open after the shutdown grace; dropped");
    }
}

/// Polls a hyper connection to its end; on the shutdown signal asks it to finish, and
/// gives it [`SHUTDOWN_GRACE`] to do so. (A macro, as hyper's connection types share
/// `graceful_shutdown` by name only.)
macro_rules! drive {
    ($conn:expr, $stop:expr) => {{
        let conn = $conn;
        let mut stop = $stop;
        tokio::pin!(conn);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    debug!(error = %e, "connection ended with an error");
                }
            }
            // The guard `wait_for` returns must not live across the awaits below.
            () = async { let _ = stop.wait_for(|down| *down).await; } => {
                conn.as_mut().graceful_shutdown();
                if tokio::time::timeout(SHUTDOWN_GRACE, conn).await.is_err() {
                    debug!("connection dropped at the end of the shutdown grace");
                }
            }
        }
    }};
}
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    header_timeout: Duration,
    stop: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
}

impl Conn {
    fn builder(&self) -> http1::Builder {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout);
        builder
    }

    /// Serves requests (and an upgrade) with the router.
    async fn serve(self, app: Router, permit: ConnPermit, timeouts: Timeouts) {
        let peer = self.peer;
        let builder = self.builder();
        let io = TimedIo::new(self.stream, Some(permit.clone()), timeouts);
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let mut req = req.map(Body::new);
            req.extensions_mut().insert(ConnectInfo(peer));
            req.extensions_mut().insert(permit.clone());
            app.clone().oneshot(req)
        });
        let conn = builder
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        drive!(conn, self.stop);
    }

    /// Answers with `refusal` if fewer than [`OVER_CAP_ANSWERS`] answers are under way;
    /// otherwise closes at once.
    /// The answer gets the same timeouts as any connection, so a silent client holds
    /// an answer's place for the idle timeout at most.
    fn refuse_if_room(self, answers: &Arc<Semaphore>, refusal: Refusal, timeouts: Timeouts) {
        let peer = self.peer;
        match answers.clone().try_acquire_owned() {
            Ok(answer) => {
                debug!(%peer, ?refusal, "refused");
                tokio::spawn(self.refuse(answer, refusal, timeouts));
            }
            Err(_) => debug!(%peer, ?refusal, "refused; closed unanswered"),
        }
    }

    /// Answers one request with the refusal and closes.
    async fn refuse(self, _answer: OwnedSemaphorePermit, refusal: Refusal, timeouts: Timeouts) {
        let service =
            hyper::service::service_fn(move |_req: hyper::Request<Incoming>| async move {
                Ok::<_, Infallible>(refusal.response())
            });
        let mut builder = self.builder();
        builder.keep_alive(false);
        let io = TimedIo::new(self.stream, None, timeouts);
        let conn = builder.serve_connection(TokioIo::new(io), service);
        drive!(conn, self.stop);
    }
}

/// Why a connection is refused at accept time.
#[derive(Clone, Copy, Debug)]
enum Refusal {
    /// Over `--max-connections`.
    Busy,
    /// Its address holds `--max-connections-per-address`.
    PerAddress,
}

impl Refusal {
    fn response(self) -> axum::response::Response {
        match self {
            Refusal::Busy => responses::rejection(&edge::SERVER_BUSY),
            Refusal::PerAddress => responses::too_many_connections(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_leaves_room_for_files() {
        assert_eq!(default_max_connections(1024), (1024 - 128) / 2);
        assert_eq!(default_max_connections(1_048_576), (1_048_576 - 128) / 2);
        // A tiny limit still serves someone.
        assert_eq!(default_max_connections(20), 16);
    }
}
