//! The runner's plain-text HTTP answers, shared by `http` (the routes) and `server`
//! (refusals at accept time): every refusal is one of the handler's `Rejection`s, so no
//! status or wording is restated here.

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chat_handler::edge::{self, Rejection};

/// `Retry-After` of the per-address refusal: places come back as soon as the address
/// closes a connection of its own, so a short wait.
pub(crate) const PER_ADDRESS_RETRY_SECS: u64 = 5;

pub(crate) fn plain(status: u16, body: impl Into<String>) -> Response {
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

/// A refusal from the handler's edge rules, with the header it carries (`Allow` on a
/// 405, `Upgrade` on a 426).
pub(crate) fn rejection(r: &Rejection) -> Response {
    let mut response = plain(r.status, r.reason);
    if let Some((name, value)) = r.header {
        // `from_bytes` lower-cases the handler's spelling ("Allow"); both are constants,
        // so a failure would be a handler bug, and the refusal still goes out without it.
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(value)) => {
                response.headers_mut().insert(name, value);
            }
            _ => tracing::error!(name, value, "invalid header on a rejection"),
        }
    }
    response
}

/// `429` to an address that holds `--max-connections-per-address`, whether counted at
/// accept time (`server`) or at the upgrade of a proxied WebSocket (`http`).
pub(crate) fn too_many_connections() -> Response {
    let mut response = rejection(&edge::TOO_MANY_CONNECTIONS);
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(PER_ADDRESS_RETRY_SECS),
    );
    response
}
