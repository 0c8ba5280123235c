//! HTTP routes: the WebSocket endpoint (checked by the handler's edge rules before any
//! upgrade), private-room creation, health, and the static browser client.

use crate::connection::{self, ConnSettings};
use crate::registry::Rooms;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use chat_handler::edge::{self, Rejection, UpgradeRequest};
use chat_handler::{Config, Peer};
use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::mpsc;
use tower::ServiceExt;
use tower_http::services::ServeDir;

/// tungstenite reads in chunks of this size. Its 128 KiB default would cost every idle
/// connection that much; chat frames are small, and a big message still reassembles
/// (up to `max_frame_bytes`) in a buffer that grows on demand.
const READ_BUFFER: usize = 4 * 1024;
/// Bytes buffered before tungstenite writes to the socket (batches flush anyway).
const WRITE_BUFFER: usize = 16 * 1024;

/// Shared by every request.
#[derive(Clone)]
pub struct AppState {
    pub rooms: Arc<Rooms>,
    pub config: Arc<Config>,
    pub settings: ConnSettings,
    pub static_dir: PathBuf,
    /// Cloned into each socket task; shutdown waits until every clone is gone.
    pub alive: mpsc::Sender<()>,
}

pub fn router(state: AppState) -> Router {
    let static_files = ServeDir::new(&state.static_dir);
    Router::new()
        .route("/api/room/{room}/websocket", any(websocket))
        .route(edge::CREATE_ROOM_PATH, any(create_room))
        .route(edge::HEALTH_PATH, get(|| async { "ok" }))
        .fallback(fallback)
        .with_state((state, static_files))
}

type Shared = (AppState, ServeDir);

fn plain(status: u16, body: impl Into<String>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        body.into(),
    )
        .into_response()
}

/// A refusal from the handler's edge rules, with the header HTTP asks for alongside
/// a 405 (`Allow`) or a 426 (`Upgrade`).
fn rejection(r: &Rejection, allow: &'static str) -> Response {
    let mut response = plain(r.status, r.reason);
    let extra = match r.status {
        405 => Some((header::ALLOW, allow)),
        426 => Some((header::UPGRADE, "websocket")),
        _ => None,
    };
    if let Some((name, value)) = extra {
        response
            .headers_mut()
            .insert(name, HeaderValue::from_static(value));
    }
    response
}

/// `POST /api/room`: a fresh private room id.
async fn create_room(method: Method) -> Response {
    if method != Method::POST {
        return rejection(&edge::CREATE_ROOM_METHOD, "POST");
    }
    let mut random = [0u8; 32];
    if let Err(e) = getrandom::fill(&mut random) {
        tracing::error!(error = %e, "no randomness for a private room id");
        return plain(500, "Could not create a room; try again.");
    }
    plain(200, edge::private_room_id(random))
}

/// Paths the router cannot match as `{room}` (an empty or slash-containing room
/// segment) still get the WebSocket endpoint's answer; everything else is a file.
async fn fallback(
    State((state, static_files)): State<Shared>,
    peer: ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let path = req.uri().path();
    if path.starts_with(edge::ROOM_PATH_PREFIX) && path.ends_with(edge::WEBSOCKET_SUFFIX) {
        return websocket(State((state, static_files)), peer, req).await;
    }
    match static_files.oneshot(req).await {
        Ok(response) => response.into_response(),
        Err(never) => match never {},
    }
}

/// Header text for the edge checks. Bytes that are not UTF-8 are replaced rather than
/// dropped, so an unreadable `Origin` is refused instead of counting as absent.
fn header_text<'a>(headers: &'a HeaderMap, name: header::HeaderName) -> Option<Cow<'a, str>> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()))
}

/// `/api/room/{room}/websocket`, any method: the handler's checks run first, in their
/// documented order (405, 404, 403, 426), and only then does axum upgrade.
async fn websocket(
    State((state, _)): State<Shared>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let (mut parts, _body) = req.into_parts();
    // The raw segment, not percent-decoded: `%61` is not the room `a`.
    let room = parts
        .uri
        .path()
        .strip_prefix(edge::ROOM_PATH_PREFIX)
        .and_then(|p| p.strip_suffix(edge::WEBSOCKET_SUFFIX))
        .unwrap_or("")
        .to_owned();
    let origin = header_text(&parts.headers, header::ORIGIN);
    let host = header_text(&parts.headers, header::HOST);
    let upgrade_header = header_text(&parts.headers, header::UPGRADE);
    let request = UpgradeRequest {
        method: parts.method.as_str(),
        room: &room,
        origin: origin.as_deref(),
        host: host.as_deref(),
        scheme: "http",
        upgrade: upgrade_header.as_deref(),
    };
    let room = match edge::check_upgrade(&request, &state.config.allow_origins) {
        Ok(room) => room,
        Err(r) => return rejection(&r, "GET"),
    };
    drop((origin, host, upgrade_header));
    // Anything still wrong (no Sec-WebSocket-Key, `Connection` without `upgrade`...)
    // gets axum's own answer.
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let max = state.config.max_frame_bytes;
    let max_write = WRITE_BUFFER + max_outgoing_frame(&state.config) * 2;
    let peer = Peer {
        // Canonical, so an IPv4 client of a dual-stack listener keys the rate limit
        // the same as on an IPv4 listener.
        addr: addr.ip().to_canonical().to_string(),
    };
    let AppState {
        rooms,
        settings,
        alive,
        ..
    } = state;
    upgrade
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(max_write)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| {
            connection::serve(socket, rooms, room.to_string(), peer, settings, alive)
        })
}

/// An upper bound on one server frame: a chat message with its name, every character
/// escaped as `\uXXXX` at worst, plus the JSON around it. The write buffer may hold
/// this much beyond its target without refusing a frame.
fn max_outgoing_frame(config: &Config) -> usize {
    6 * (config.max_message_chars + config.max_name_chars) + 256
}
