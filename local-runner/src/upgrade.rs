//! The WebSocket upgrade (HTTP/1.1 only, as the server speaks no other): the 101 answer,
//! then tokio-tungstenite's stream over the upgraded connection. axum's `WebSocket`
//! wrapper is not used because it cannot send a message in fragments (its `Message` has
//! no `Frame`), and fragments are what keep each connection's write buffer small: the
//! library copies every frame into a buffer that never gives its capacity back (see
//! `connection::FRAGMENT`). axum's extractor still checks the request first (`http`).

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use std::future::Future;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use tracing::debug;

/// One upgraded WebSocket, server side.
pub(crate) type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// Answers 101 to a checked upgrade request whose `Sec-WebSocket-Key` is `key`, and
/// once the connection is handed over, runs `serve` on its socket in a task of its own.
pub(crate) fn accept<C, Fut>(
    on_upgrade: OnUpgrade,
    key: &HeaderValue,
    config: WebSocketConfig,
    serve: C,
) -> Response
where
    C: FnOnce(Socket) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                debug!(error = %e, "the upgrade did not complete");
                return;
            }
        };
        let socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        // The connection gets a task of its own: this one's state (the upgrade future,
        // the closure) would otherwise stay allocated for the socket's whole life.
        tokio::spawn(serve(socket));
    });
    let accept = derive_accept_key(key.as_bytes());
    match HeaderValue::try_from(accept) {
        Ok(accept) => (
            StatusCode::SWITCHING_PROTOCOLS,
            [
                (header::CONNECTION, HeaderValue::from_static("upgrade")),
                (header::UPGRADE, HeaderValue::from_static("websocket")),
                (header::SEC_WEBSOCKET_ACCEPT, accept),
            ],
            Body::empty(),
        )
            .into_response(),
        // Base64 is always a valid header value.
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
