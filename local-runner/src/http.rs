//! HTTP: every request goes through the handler's `edge::route` and is answered by the
//! `Route` it gets (the WebSocket endpoint, checked by `edge::check_upgrade` before any
//! upgrade; private-room creation; health; the client limits; the static browser client).
//! Every refusal is one of the handler's `Rejection`s, as on the Worker, so no path or
//! method rule is restated here. The one route of the runner's own is `GET /metrics`
//! (the Worker has none): on the public listener, or alone on `--metrics-bind`.

use crate::address_cap::AddressCap;
use crate::clock::now_ms;
use crate::conn_permit::ConnPermit;
use crate::connection::{self, ConnSettings};
use crate::metrics::{self, Metrics};
use crate::registry::{Refused, Rooms};
use crate::responses::{self, plain, rejection};
use crate::room_inbox::Publish;
use crate::upgrade;
use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use chat_handler::edge::{self, RoomId, Route, UpgradeRequest};
use chat_handler::{publish, Config, ErrorKind, Peer, PublishAnswer};
use hyper::upgrade::OnUpgrade;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tower::ServiceExt;
use tower_http::services::ServeDir;

/// tungstenite reads in chunks of this size, into a buffer allocated (and zero-filled)
/// at the upgrade: every idle connection pays for it. Its 128 KiB default would cost
/// that much per connection; at 4 KiB it was still the largest part of an idle
/// connection. Chat frames are small (a hello, a message of at most
/// `max_message_chars`), so 1 KiB takes a client's usual frame in one read, and a big
/// message still reassembles (up to `max_frame_bytes`) in a buffer that grows to its
/// size.
const READ_BUFFER: usize = 1024;
/// Bytes buffered before tungstenite writes to the socket (batches flush anyway). The
/// buffer never gives back what it grew to; a message over `connection::FRAGMENT` goes
/// out in fragments, each flushed at once, so no roster or big batch grows it past this
/// plus one fragment (a whole 10,000-name roster had each joiner of a big room keep
/// 170 KiB). Smaller (4 KiB was tried) costs more `write` calls for a busy socket's
/// batches of small frames (0.89 µs of CPU per delivery instead of 0.49 at 800,000/s,
/// in one run).
pub(crate) const WRITE_BUFFER: usize = 16 * 1024;
/// Largest request body, but for a publish's (`publish::body_limit`). No other route
/// reads a body (`POST /api/room` ignores it), so a declared length over this is
/// refused before the route runs, and a longer body sent without one is never read.
pub(crate) const MAX_BODY_BYTES: usize = 4 * 1024;

/// Where the runner serves its figures (see `metrics.rs`).
pub(crate) const METRICS_PATH: &str = "/metrics";

/// Shared by every request.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) rooms: Arc<Rooms>,
    pub(crate) config: Arc<Config>,
    pub(crate) settings: ConnSettings,
    pub(crate) static_dir: PathBuf,
    /// Cloned into each socket task; shutdown waits until every clone is gone.
    pub(crate) alive: mpsc::Sender<()>,
    pub(crate) metrics: Arc<Metrics>,
    /// Whether `/metrics` is served here (no `--metrics-bind`).
    pub(crate) public_metrics: bool,
    /// The per-address connection cap, for WebSockets that come through a trusted
    /// proxy (the others were counted at accept time, see `server`).
    pub(crate) per_address: Arc<AddressCap>,
}

pub(crate) fn router(state: AppState) -> Router {
    let static_files = ServeDir::new(&state.static_dir);
    Router::new()
        .fallback(dispatch)
        .with_state((state, static_files))
        .layer(axum::middleware::from_fn(body_cap))
}

/// Refuses a declared body over `MAX_BODY_BYTES` before any route runs, but for a
/// publish, the one route that reads a body, which bounds its own (`publish`).
async fn body_cap(req: Request, next: axum::middleware::Next) -> Response {
    let publishing = matches!(
        edge::route(req.method().as_str(), req.uri().path()),
        Ok(Route::Publish(_))
    );
    if !publishing && declared_length(req.headers()).is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return rejection(&edge::BODY_TOO_LARGE);
    }
    next.run(req).await
}

/// The `Content-Length` a request declares, if any (an unreadable one counts as
/// none: the body is then bounded as it is read).
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

type Shared = (AppState, ServeDir);

/// The router of `--metrics-bind`: `/metrics` and nothing else.
pub(crate) fn metrics_router(metrics: Arc<Metrics>) -> Router {
    Router::new().fallback(move |req: Request| {
        let metrics = metrics.clone();
        async move {
            if req.uri().path() == METRICS_PATH {
                metrics_page(&metrics, req.method())
            } else {
                rejection(&edge::NOT_FOUND)
            }
        }
    })
}

/// The figures, to GET (or HEAD); any other method gets the 405 of `/healthz`.
fn metrics_page(metrics: &Metrics, method: &Method) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return rejection(&edge::GET_ONLY);
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(metrics::CONTENT_TYPE),
        )],
        metrics.render(),
    )
        .into_response()
}

/// Answers a request by its route.
async fn dispatch(
    State((state, static_files)): State<Shared>,
    peer: ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    if state.public_metrics && req.uri().path() == METRICS_PATH {
        return metrics_page(&state.metrics, req.method());
    }
    // The raw path, not percent-decoded: `%61` is not the room `a`.
    match edge::route(req.method().as_str(), req.uri().path()) {
        Err(r) => rejection(&r),
        Ok(Route::Websocket(room)) => websocket(state, peer, room, req).await,
        Ok(Route::Publish(room)) => publish(state, room, req).await,
        Ok(Route::CreateRoom) => create_room(),
        Ok(Route::Health) => plain(200, "ok"),
        Ok(Route::Limits) => limits(&state),
        Ok(Route::File) => static_file(static_files, req).await,
        Ok(Route::FileWrongMethod) => wrong_method_on_file(static_files, req).await,
    }
}

/// The limits a client checks before sending, as JSON (axum drops the body of a HEAD
/// answer).
fn limits(state: &AppState) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        state.config.client_limits_json(),
    )
        .into_response()
}

/// A fresh private room id.
fn create_room() -> Response {
    let mut random = [0u8; 32];
    if let Err(e) = getrandom::fill(&mut random) {
        tracing::error!(error = %e, "no randomness for a private room id");
        return plain(500, "Could not create a room; try again.");
    }
    plain(200, edge::private_room_id(random))
}

/// Files are read-only: another method gets 405 on a file that exists, and the same 404
/// as any other missing path otherwise (ServeDir alone would answer 405 without
/// looking). A HEAD request asks whether the file exists.
async fn wrong_method_on_file(static_files: ServeDir, req: Request) -> Response {
    let mut probe = Request::new(Body::empty());
    *probe.method_mut() = Method::HEAD;
    *probe.uri_mut() = req.uri().clone();
    let found = static_file(static_files, probe).await;
    if found.status() == StatusCode::NOT_FOUND {
        found
    } else {
        rejection(&edge::GET_ONLY)
    }
}

/// A file from the static directory; a missing one gets the Worker's 404 text instead
/// of ServeDir's empty body.
async fn static_file(static_files: ServeDir, req: Request) -> Response {
    let response = match static_files.oneshot(req).await {
        Ok(response) => response.into_response(),
        Err(never) => match never {},
    };
    if response.status() == StatusCode::NOT_FOUND {
        return rejection(&edge::NOT_FOUND);
    }
    response
}

/// Header text for the edge checks. Bytes that are not UTF-8 are replaced rather than
/// dropped, so an unreadable `Origin` is refused instead of counting as absent.
fn header_text<'a>(headers: &'a HeaderMap, name: header::HeaderName) -> Option<Cow<'a, str>> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()))
}

/// The WebSocket endpoint: the handler's header checks run first, in their documented
/// order (403, 426), and only then does axum upgrade.
async fn websocket(
    state: AppState,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    room: RoomId,
    req: Request,
) -> Response {
    let (mut parts, _body) = req.into_parts();
    let origin = header_text(&parts.headers, header::ORIGIN);
    let host = header_text(&parts.headers, header::HOST);
    let upgrade_header = header_text(&parts.headers, header::UPGRADE);
    let request = UpgradeRequest {
        origin: origin.as_deref(),
        host: host.as_deref(),
        scheme: "http",
        upgrade: upgrade_header.as_deref(),
    };
    if let Err(r) = edge::check_upgrade(&request, &state.config.allow_origins) {
        return rejection(&r);
    }
    drop((origin, host, upgrade_header));
    // Anything still wrong (no Sec-WebSocket-Key, `Connection` without `upgrade`...)
    // gets axum's own answer. Its extractor only checks here: the upgrade itself is
    // ours (`upgrade::accept`), so the connection runs tokio-tungstenite's stream.
    let on_upgrade = parts.extensions.get::<OnUpgrade>().cloned();
    match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(checked) => drop(checked),
        Err(rejection) => return rejection.into_response(),
    }
    let (Some(on_upgrade), Some(key)) = (
        on_upgrade,
        parts.headers.get(header::SEC_WEBSOCKET_KEY).cloned(),
    ) else {
        // axum's check found both; should it ever not, refuse as it would.
        return plain(400, "Not a WebSocket upgrade request.");
    };
    // The client address keys the per-address limits.
    let trusted = trusted_proxies(&state.config);
    let through_proxy = trusted.contains(addr.ip());
    let addr = client_key(&trusted, addr, &parts.headers);
    // Through a trusted proxy, the connection was not counted at accept time (it is
    // the proxy's); a WebSocket is one client's for its whole life, so it counts for
    // the client the proxy names, and holds that place until it closes.
    let proxied_slot = if through_proxy {
        match state.per_address.try_take(addr.clone()) {
            Some(slot) => Some(slot),
            None => {
                return responses::too_many_connections();
            }
        }
    } else {
        None
    };
    match state.rooms.admit(room.as_str(), &addr, now_ms()) {
        Ok(()) => {}
        Err(Refused::TooManyOpens(wait_ms)) => {
            let mut refused = rejection(&edge::TOO_MANY_ROOM_OPENS);
            refused.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(edge::retry_after_secs(wait_ms)),
            );
            return refused;
        }
        Err(Refused::StorageFull) => return rejection(&edge::STORAGE_FULL),
        Err(Refused::ShuttingDown) => return rejection(&edge::SERVER_BUSY),
    }
    // The connection's place under the cap goes with the socket (see `server`).
    let permit = parts.extensions.get::<ConnPermit>().cloned();
    let max = state.config.max_frame_bytes;
    let max_write = max_write_buffer(&state.config);
    let peer = Peer { addr };
    let AppState {
        rooms,
        settings,
        alive,
        metrics,
        ..
    } = state;
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(max_write)
        .max_message_size(Some(max))
        .max_frame_size(Some(max));
    upgrade::accept(on_upgrade, &key, config, move |socket| {
        // Served outside the async block: a block keeps room for what it captures
        // for its whole life, and the socket is 0.4 KiB (see `connection::serve`).
        let served = connection::serve(
            socket,
            rooms,
            room.to_string(),
            peer,
            settings,
            metrics,
            alive,
        );
        // The socket's HTTP timeouts stop here; its liveness rules take over.
        if let Some(permit) = &permit {
            permit.upgraded();
        }
        async move {
            let _permit = permit;
            let _proxied_slot = proxied_slot;
            served.await
        }
    })
}

/// `POST /api/room/{room}/messages`: the edge checks (`publish::check_request`: the
/// secret, a declared length, the service token) before the room is entered, so a
/// request without a valid token never opens one; then the room's actor answers, once
/// what it stored is committed.
async fn publish(state: AppState, room: RoomId, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let authorization = parts
        .headers
        .get(header::AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let checked = publish::check_request(
        authorization.as_deref(),
        declared_length(&parts.headers),
        state.rooms.auth_secret(),
        room.as_str(),
        now_ms(),
        &state.config,
    );
    if let Err(answer) = checked {
        return publish_answer(answer);
    }
    let limit = publish::body_limit(&state.config);
    // Bounded as it is read, whatever the request declared.
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        return publish_answer(PublishAnswer::refused(ErrorKind::PublishBodyTooLarge));
    };
    let Ok(body) = String::from_utf8(bytes.to_vec()) else {
        return publish_answer(PublishAnswer::refused(ErrorKind::PublishShape));
    };
    let (reply, answer) = oneshot::channel();
    let request = Publish {
        authorization,
        body,
        reply,
    };
    match state.rooms.publish(room.as_str(), request) {
        Ok(()) => {}
        Err(Refused::StorageFull) => return rejection(&edge::STORAGE_FULL),
        Err(_) => return publish_answer(PublishAnswer::refused(ErrorKind::NotStored)),
    }
    match answer.await {
        Ok(answer) => publish_answer(answer),
        // The actor went away without answering (shutdown): nothing was committed
        // that the publisher was told of; it may retry.
        Err(_) => publish_answer(PublishAnswer::refused(ErrorKind::NotStored)),
    }
}

/// A publish answer as HTTP: its status, its JSON, and `Retry-After` when it has one.
fn publish_answer(answer: PublishAnswer) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        answer.body,
    )
        .into_response();
    if let Some(secs) = answer.retry_after_secs {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// The key of a client's address for the per-address limits (the rate limit, seats,
/// joins, room openings): the TCP peer's IP, canonical (an IPv4 client of a dual-stack
/// listener counts the same as on an IPv4 listener) and keyed by /64 for IPv6; or, when
/// the peer is one of `trusted_proxies`, the client its `X-Forwarded-For` / `Forwarded`
/// headers name (the handler's rule: the right-most hop that is not a trusted proxy).
/// Headers are never read from an untrusted peer.
fn client_key(trusted: &edge::TrustedProxies, peer: SocketAddr, headers: &HeaderMap) -> String {
    let values = |name: &str| -> Vec<&str> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    };
    let client =
        trusted.client_address(peer.ip(), &values("x-forwarded-for"), &values("forwarded"));
    edge::address_key(&client.to_string())
}

/// The most a socket's write buffer may hold: two of the largest server messages (a
/// frame alone, or a batch of at most `batch_max_bytes`) beyond its target. tungstenite
/// refuses a message that would pass it (`Write buffer is full`), and the socket would
/// drop (1006) in the middle of a join burst.
fn max_write_buffer(config: &Config) -> usize {
    WRITE_BUFFER + config.max_server_message_bytes() * 2
}

/// `--trusted-proxies`. The list was validated at start-up; should it not parse, trust
/// no one.
pub(crate) fn trusted_proxies(config: &Config) -> edge::TrustedProxies {
    edge::TrustedProxies::parse(&config.trusted_proxies).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The write buffer takes the largest message on top of a full target, whatever
    /// the settings: a batch at its largest, a history page, the roster of a big room.
    #[test]
    fn the_write_buffer_takes_the_largest_server_message() {
        let defaults = Config::default();
        // With the defaults the largest is a history page of escaped messages (680 KiB).
        assert_eq!(max_write_buffer(&defaults), WRITE_BUFFER + 2 * 696_164);
        for config in [
            defaults.clone(),
            Config {
                batch_max_bytes: 1 << 20,
                history_page_max: 1,
                ..defaults.clone()
            },
            Config {
                room_capacity: 100_000,
                ..defaults.clone()
            },
        ] {
            let largest = config.max_server_frame_bytes().max(config.batch_max_bytes);
            assert!(max_write_buffer(&config) >= WRITE_BUFFER + largest);
        }
    }
    use crate::room_actor::RoomContext;
    use crate::storage_thread::StorageThread;
    use chat_handler::edge::Rejection;
    use std::time::Duration;
    use tokio::sync::watch;

    struct Answer {
        status: u16,
        headers: HeaderMap,
        body: String,
    }

    fn test_app(static_dir: &std::path::Path) -> Router {
        let (_tx, shutdown) = watch::channel(false);
        let config = Config::default();
        let rooms = Rooms::new(RoomContext {
            auth_secret: None,
            config: config.clone(),
            store: StorageThread::in_memory(),
            metrics: Arc::default(),
            hibernate_after: None,
            idle_exit: Duration::ZERO,
            shutdown,
        });
        let (alive, _) = mpsc::channel(1);
        router(AppState {
            rooms,
            settings: ConnSettings {
                queue_bound: config.send_queue_bound(),
                ping_interval: Duration::from_secs(30),
                drain_timeout: Duration::from_millis(config.drain_timeout_ms),
            },
            config: Arc::new(config),
            static_dir: static_dir.to_owned(),
            alive,
            metrics: Arc::default(),
            public_metrics: true,
            per_address: AddressCap::new(64),
        })
    }

    async fn call(app: &Router, method: &str, path: &str) -> Answer {
        let mut req = Request::new(Body::empty());
        *req.method_mut() = Method::from_bytes(method.as_bytes()).unwrap();
        *req.uri_mut() = path.parse().unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 4000))));
        let response = app.clone().oneshot(req).await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        Answer {
            status,
            headers,
            body: String::from_utf8(bytes.to_vec()).unwrap(),
        }
    }

    impl Answer {
        fn header(&self, name: &str) -> &str {
            self.headers
                .get(name)
                .map_or("", |v| v.to_str().unwrap_or(""))
        }

        /// A plain-text refusal exactly as the handler words it.
        fn assert_is(&self, r: &Rejection) {
            assert_eq!((self.status, self.body.as_str()), (r.status, r.reason));
            assert!(self.header("content-type").starts_with("text/plain"));
            if let Some((name, value)) = r.header {
                assert_eq!(self.header(name), value);
            }
        }
    }

    fn static_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "<html></html>").unwrap();
        dir
    }

    #[test]
    fn forwarding_headers_count_only_from_trusted_proxies() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.7, 10.0.0.2"),
        );
        let peer = SocketAddr::from(([10, 0, 0, 1], 4000));
        // Not trusted by default: the TCP peer is the client.
        let config = Config::default();
        assert_eq!(
            client_key(&trusted_proxies(&config), peer, &headers),
            "10.0.0.1"
        );
        // Trusted proxies: the right-most hop that is not one of them.
        let config = Config {
            trusted_proxies: vec!["10.0.0.0/8".to_owned()],
            ..Config::default()
        };
        assert_eq!(
            client_key(&trusted_proxies(&config), peer, &headers),
            "203.0.113.7"
        );
        // An untrusted peer's headers are ignored even with a list.
        let stranger = SocketAddr::from(([198, 51, 100, 9], 4000));
        assert_eq!(
            client_key(&trusted_proxies(&config), stranger, &headers),
            "198.51.100.9"
        );
        // IPv6 clients are keyed by their /64.
        let v6 = SocketAddr::from((
            std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 3, 4, 5, 6),
            4000,
        ));
        assert_eq!(
            client_key(&edge::TrustedProxies::default(), v6, &HeaderMap::new()),
            edge::address_key("2001:db8:1:2::")
        );
    }

    #[tokio::test]
    async fn health_and_limits_are_get_only() {
        let dir = static_dir();
        let app = test_app(dir.path());
        let a = call(&app, "GET", edge::HEALTH_PATH).await;
        assert_eq!((a.status, a.body.as_str()), (200, "ok"));
        let a = call(&app, "HEAD", edge::HEALTH_PATH).await;
        assert_eq!((a.status, a.body.as_str()), (200, ""));
        let a = call(&app, "GET", edge::LIMITS_PATH).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.header("content-type"), "application/json");
        assert_eq!(a.body, Config::default().client_limits_json());
        let a = call(&app, "HEAD", edge::LIMITS_PATH).await;
        assert_eq!((a.status, a.body.as_str()), (200, ""));
        for path in [edge::HEALTH_PATH, edge::LIMITS_PATH] {
            for method in ["POST", "PUT", "DELETE"] {
                call(&app, method, path).await.assert_is(&edge::GET_ONLY);
            }
        }
    }

    #[tokio::test]
    async fn a_declared_body_over_the_cap_is_refused_in_the_handlers_words() {
        let dir = static_dir();
        let app = test_app(dir.path());
        let mut req = Request::new(Body::from(vec![b'x'; MAX_BODY_BYTES + 1]));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = edge::CREATE_ROOM_PATH.parse().unwrap();
        req.headers_mut().insert(
            header::CONTENT_LENGTH,
            HeaderValue::from(MAX_BODY_BYTES + 1),
        );
        let response = app.oneshot(req).await.unwrap();
        assert_eq!(response.status(), 413);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        assert_eq!(&body[..], edge::BODY_TOO_LARGE.reason.as_bytes());
    }

    #[tokio::test]
    async fn refusals_carry_the_handlers_header() {
        let dir = static_dir();
        let app = test_app(dir.path());
        let a = call(&app, "GET", edge::CREATE_ROOM_PATH).await;
        a.assert_is(&edge::CREATE_ROOM_METHOD);
        assert_eq!(a.header("allow"), "POST");
        let ws = "/api/room/lobby/websocket";
        let a = call(&app, "POST", ws).await;
        assert_eq!((a.status, a.header("allow")), (405, "GET"));
        let a = call(&app, "GET", ws).await;
        assert_eq!((a.status, a.header("upgrade")), (426, "websocket"));
        // The fallback's WebSocket answer (an empty room segment) is the same.
        let a = call(&app, "PUT", "/api/room//websocket").await;
        assert_eq!((a.status, a.header("allow")), (405, "GET"));
    }

    #[tokio::test]
    async fn missing_files_are_not_found_whatever_the_method() {
        let dir = static_dir();
        let app = test_app(dir.path());
        let a = call(&app, "GET", "/").await;
        assert_eq!((a.status, a.body.as_str()), (200, "<html></html>"));
        let a = call(&app, "GET", "/index.html").await;
        assert_eq!(a.status, 200);
        for method in ["GET", "HEAD", "POST", "DELETE"] {
            let a = call(&app, method, "/no-such-file.txt").await;
            if method == "HEAD" {
                assert_eq!((a.status, a.body.as_str()), (404, ""));
            } else {
                a.assert_is(&edge::NOT_FOUND);
            }
        }
        call(&app, "GET", "/api/nope")
            .await
            .assert_is(&edge::NOT_FOUND);
        // A file that exists is read-only.
        call(&app, "POST", "/index.html")
            .await
            .assert_is(&edge::GET_ONLY);
        // No static directory at all: everything but the routes is 404.
        let app = test_app(&dir.path().join("missing"));
        call(&app, "GET", "/").await.assert_is(&edge::NOT_FOUND);
    }
}
