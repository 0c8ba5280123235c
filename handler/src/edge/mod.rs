//! Pure decisions made at the HTTP edge, before a WebSocket exists. Both backends call
//! these, so a request is accepted or refused the same way, with the same status code
//! and the same text, on either of them.

use std::fmt;

pub(crate) mod address;
pub mod identity;
pub(crate) mod log_tag;

pub use crate::protocol::origin::normalize_origin;
use crate::protocol::origin::{default_port, split_host_port};
pub use address::{address_key, wide_key, BadProxy, TrustedProxies};
pub use log_tag::{log_tag, log_tag_of, private_tag};

/// The path prefix of every room endpoint: `/api/room/{room}/websocket`.
pub const ROOM_PATH_PREFIX: &str = "/api/room/";
/// The path suffix of the WebSocket endpoint.
pub const WEBSOCKET_SUFFIX: &str = "/websocket";
/// The path suffix of the server-side publish endpoint: `POST /api/room/{room}/messages`.
pub const PUBLISH_SUFFIX: &str = "/messages";
/// `POST` here creates a private room.
pub const CREATE_ROOM_PATH: &str = "/api/room";
/// Answers 200 when the backend is up.
pub const HEALTH_PATH: &str = "/healthz";

/// Longest public room name.
pub const MAX_ROOM_NAME: usize = 32;
/// Length of a private room id (lower-case hex).
pub const PRIVATE_ID_LEN: usize = 64;

/// A room name that passed validation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RoomId {
    /// A public room, reached by name (1–32 of `[A-Za-z0-9._-]`).
    Named(String),
    /// A private room: exactly 64 lower-case hex digits.
    Private(String),
}

impl RoomId {
    pub fn as_str(&self) -> &str {
        match self {
            RoomId::Named(s) | RoomId::Private(s) => s,
        }
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// True if `s` is a private room id: exactly 64 lower-case hex digits.
pub fn is_private_room_id(s: &str) -> bool {
    s.len() == PRIVATE_ID_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Formats 32 random bytes (supplied by the backend) as a private room id.
pub fn private_room_id(random: [u8; 32]) -> String {
    lower_hex(&random)
}

fn lower_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
    out
}

/// Validates a room name taken from the URL path (already percent-decoded or not: a
/// `%` is never valid, so an encoded name is refused either way).
pub fn validate_room(name: &str) -> Result<RoomId, Rejection> {
    if is_private_room_id(name) {
        return Ok(RoomId::Private(name.to_owned()));
    }
    let chars_ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    // `.` and `..` are refused because clients and proxies rewrite such path segments.
    if name.is_empty() || name.len() > MAX_ROOM_NAME || !chars_ok || name == "." || name == ".." {
        return Err(Rejection::new(
            404,
            "Invalid room name: use 1-32 characters of A-Z a-z 0-9 . _ - or a 64-hex private room id.",
        ));
    }
    Ok(RoomId::Named(name.to_owned()))
}

/// An HTTP refusal: the status, a short plain-text reason for the body, and the header
/// HTTP requires with that status (`Allow` with 405, `Upgrade` with 426).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub reason: &'static str,
    pub header: Option<(&'static str, &'static str)>,
}

impl Rejection {
    const fn new(status: u16, reason: &'static str) -> Self {
        Rejection {
            status,
            reason,
            header: None,
        }
    }

    const fn with_header(
        status: u16,
        reason: &'static str,
        name: &'static str,
        value: &'static str,
    ) -> Self {
        Rejection {
            status,
            reason,
            header: Some((name, value)),
        }
    }
}

/// The Origin policy. Allowed: no `Origin` (non-browser clients); an Origin whose
/// host:port equals the request's `Host` (defaults ports made explicit from
/// `request_scheme`, `http` or `https`); an Origin in `allowlist`. Everything else,
/// including unparseable origins such as `null`, is refused.
pub fn origin_allowed(
    origin: Option<&str>,
    host: Option<&str>,
    request_scheme: &str,
    allowlist: &[String],
) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let Some(origin) = normalize_origin(origin) else {
        return false;
    };
    if allowlist
        .iter()
        .any(|a| normalize_origin(a).as_deref() == Some(origin.as_str()))
    {
        return true;
    }
    let (Some(host), Some(port)) = (host, default_port(&request_scheme.to_ascii_lowercase()))
    else {
        return false;
    };
    let Some((host, port)) = split_host_port(host.trim(), port) else {
        return false;
    };
    // Same origin compares host:port only; the Host header carries no scheme.
    origin
        .split_once("://")
        .is_some_and(|(_, hp)| hp == format!("{host}:{port}"))
}

/// What a request asks for, decided from its method and path alone. Both backends
/// match on this and restate no path or method rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /api/room/{room}/websocket` with a valid room: the WebSocket endpoint. The
    /// request's headers still go through [`check_upgrade`] before upgrading.
    Websocket(RoomId),
    /// `POST /api/room/{room}/messages` with a valid room: a server-side publish, which
    /// the room answers ([`crate::Room::publish`]).
    Publish(RoomId),
    /// `POST /api/room`: a new private room id.
    CreateRoom,
    /// `GET`/`HEAD /healthz`: `ok`.
    Health,
    /// `GET`/`HEAD /api/limits`: [`crate::Config::client_limits_json`].
    Limits,
    /// `GET`/`HEAD` of any other path: a static file, or [`NOT_FOUND`] if there is none.
    File,
    /// Another method on any other path: files are read-only, so [`GET_ONLY`] if a
    /// file exists there, else [`NOT_FOUND`] (as for any missing path).
    FileWrongMethod,
}

/// Routes a request. `path` is the raw (not percent-decoded) path: `%61` is not the room
/// `a`. The refusals come in the documented order: on the WebSocket path the method
/// (405) is checked before the room name (404); [`check_upgrade`] then checks Origin
/// (403) and `Upgrade` (426).
pub fn route(method: &str, path: &str) -> Result<Route, Rejection> {
    let read = method == "GET" || method == "HEAD";
    if let Some(room) = path
        .strip_prefix(ROOM_PATH_PREFIX)
        .and_then(|rest| rest.strip_suffix(WEBSOCKET_SUFFIX))
    {
        if method != "GET" {
            return Err(WEBSOCKET_METHOD);
        }
        return validate_room(room).map(Route::Websocket);
    }
    if let Some(room) = path
        .strip_prefix(ROOM_PATH_PREFIX)
        .and_then(|rest| rest.strip_suffix(PUBLISH_SUFFIX))
    {
        if method != "POST" {
            return Err(PUBLISH_METHOD);
        }
        return validate_room(room).map(Route::Publish);
    }
    match path {
        CREATE_ROOM_PATH if method == "POST" => Ok(Route::CreateRoom),
        CREATE_ROOM_PATH => Err(CREATE_ROOM_METHOD),
        HEALTH_PATH if read => Ok(Route::Health),
        LIMITS_PATH if read => Ok(Route::Limits),
        HEALTH_PATH | LIMITS_PATH => Err(GET_ONLY),
        _ if read => Ok(Route::File),
        _ => Ok(Route::FileWrongMethod),
    }
}

/// What a backend knows about a WebSocket request's headers.
#[derive(Debug, Clone, Copy)]
pub struct UpgradeRequest<'a> {
    pub origin: Option<&'a str>,
    pub host: Option<&'a str>,
    /// `http` or `https`: the scheme the request arrived on.
    pub scheme: &'a str,
    /// The `Upgrade` header, if any.
    pub upgrade: Option<&'a str>,
}

/// Checks the headers of a request routed to [`Route::Websocket`], in the documented
/// order; the first failure answers: Origin (403), `Upgrade: websocket` (426).
pub fn check_upgrade(req: &UpgradeRequest<'_>, allowlist: &[String]) -> Result<(), Rejection> {
    if !origin_allowed(req.origin, req.host, req.scheme, allowlist) {
        return Err(Rejection::new(403, "Origin not allowed."));
    }
    let is_ws = req.upgrade.is_some_and(|u| {
        u.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("websocket"))
    });
    if !is_ws {
        return Err(Rejection::with_header(
            426,
            "Expected Upgrade: websocket.",
            "Upgrade",
            "websocket",
        ));
    }
    Ok(())
}

/// The refusal for a method other than GET on the WebSocket path.
pub const WEBSOCKET_METHOD: Rejection = Rejection::with_header(
    405,
    "Method not allowed: use GET with Upgrade: websocket.",
    "Allow",
    "GET",
);

/// The refusal for a method other than POST on the publish path.
pub const PUBLISH_METHOD: Rejection = Rejection::with_header(
    405,
    "Method not allowed: use POST to publish a message.",
    "Allow",
    "POST",
);

/// The refusal for a method other than POST on [`CREATE_ROOM_PATH`].
pub const CREATE_ROOM_METHOD: Rejection = Rejection::with_header(
    405,
    "Method not allowed: use POST to create a private room.",
    "Allow",
    "POST",
);

/// The refusal for a method other than GET (or HEAD) on [`HEALTH_PATH`] and
/// [`LIMITS_PATH`].
pub const GET_ONLY: Rejection =
    Rejection::with_header(405, "Method not allowed: use GET.", "Allow", "GET, HEAD");

/// Any path that is neither a route nor a static file.
pub const NOT_FOUND: Rejection = Rejection::new(404, "Not found.");

/// An upgrade that would open a room, from an address that has opened too many lately.
/// Backends add `Retry-After` (seconds) themselves: only they know their window.
pub const TOO_MANY_ROOM_OPENS: Rejection = Rejection::new(
    429,
    "Too many new rooms from your address; try again later.",
);

/// The refusal of a connection over a server's connection cap (the local runner's
/// `--max-connections`).
pub const SERVER_BUSY: Rejection = Rejection::new(503, "Server busy; try again later.");

/// The refusal of a connection from an address that already holds a server's
/// per-address share of connections (the local runner's
/// `--max-connections-per-address`). Backends add `Retry-After` themselves.
pub const TOO_MANY_CONNECTIONS: Rejection = Rejection::new(
    429,
    "Too many connections from your address; close one and try again.",
);

/// The refusal of an upgrade that would open a room the server could not keep: it
/// already stores as many rooms as it may (the local runner's `--max-rooms-stored`).
/// Rooms it stores stay open to everyone; only new ones are refused, and waiting does
/// not help, so no `Retry-After`.
pub const STORAGE_FULL: Rejection = Rejection::new(
    507,
    "Storage full: no new room can be opened here; existing rooms still work.",
);

/// The refusal of a request whose body is over the server's cap. No route reads a
/// body, so the cap is small.
pub const BODY_TOO_LARGE: Rejection = Rejection::new(413, "Request body too large.");

/// `Retry-After` (whole seconds, at least 1) for a wait of `ms` milliseconds, rounded
/// up so that a client that waits that long is not refused again for the same reason.
pub fn retry_after_secs(ms: u64) -> u64 {
    ms.div_ceil(1000).max(1)
}

/// `GET` here answers the limits a client should check before sending, as JSON
/// ([`crate::Config::client_limits_json`]), so the page never restates a number.
pub const LIMITS_PATH: &str = "/api/limits";

/// Formats 16 random bytes (supplied by the backend) as a room epoch candidate:
/// 32 lower-case hex digits.
pub fn epoch_candidate(random: [u8; 16]) -> String {
    lower_hex(&random)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(0), 1);
        assert_eq!(retry_after_secs(1), 1);
        assert_eq!(retry_after_secs(1000), 1);
        assert_eq!(retry_after_secs(1001), 2);
        assert_eq!(retry_after_secs(u64::MAX), u64::MAX.div_ceil(1000));
    }

    #[test]
    fn room_names_at_their_edges() {
        assert!(validate_room("a").is_ok());
        assert!(validate_room(&"a".repeat(32)).is_ok());
        assert_eq!(validate_room(&"a".repeat(33)).unwrap_err().status, 404);
        assert!(validate_room("").is_err());
        assert!(validate_room("A.b_c-9").is_ok());
        for bad in [".", "..", "a b", "a/b", "caf\u{e9}", "a%20b", "x?y"] {
            assert!(validate_room(bad).is_err(), "{bad:?}");
        }
        let private = "0123456789abcdef".repeat(4);
        assert_eq!(
            validate_room(&private).unwrap(),
            RoomId::Private(private.clone())
        );
        assert!(validate_room(&private.to_uppercase()).is_err());
        assert!(validate_room(&private[..63]).is_err());
        assert!(validate_room(&format!("{private}0")).is_err());
    }

    #[test]
    fn room_ids_read_as_their_name() {
        let named = validate_room("lobby").unwrap();
        assert_eq!(
            (named.as_str(), named.to_string()),
            ("lobby", "lobby".into())
        );
        let hex = "ab".repeat(32);
        let private = validate_room(&hex).unwrap();
        assert_eq!(private.as_str(), hex);
        assert_eq!(format!("room {private}"), format!("room {hex}"));
    }

    #[test]
    fn epochs_are_32_hex() {
        let e = epoch_candidate([0x0f; 16]);
        assert_eq!(e, "0f".repeat(16));
    }

    #[test]
    fn private_ids_are_64_hex() {
        let id = private_room_id([0xab; 32]);
        assert_eq!(id.len(), 64);
        assert!(is_private_room_id(&id));
        assert!(id.starts_with("abab"));
    }

    #[test]
    fn origin_normalization() {
        assert_eq!(
            normalize_origin("HTTP://Example.COM").as_deref(),
            Some("http://example.com:80")
        );
        assert_eq!(
            normalize_origin("https://a.b:8443").as_deref(),
            Some("https://a.b:8443")
        );
        assert_eq!(
            normalize_origin("http://[::1]:8787").as_deref(),
            Some("http://[::1]:8787")
        );
        for bad in [
            "null",
            "",
            "example.com",
            "ftp://x",
            "http://",
            "http://a/b",
            "http://a:x",
            "http://u@a",
            "http://a:b:80",
            "http://:80",
            "http://a:",
            "http://a:+80",
            "http://a:99999",
            "http://[::1",
            "http://[::1]80",
        ] {
            assert_eq!(normalize_origin(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn origin_policy() {
        let none: &[String] = &[];
        assert!(origin_allowed(None, Some("h:1"), "http", none));
        assert!(origin_allowed(
            Some("http://127.0.0.1:8787"),
            Some("127.0.0.1:8787"),
            "http",
            none
        ));
        assert!(origin_allowed(
            Some("http://EXAMPLE.com"),
            Some("example.com:80"),
            "http",
            none
        ));
        assert!(origin_allowed(
            Some("https://example.com"),
            Some("Example.com"),
            "https",
            none
        ));
        assert!(!origin_allowed(
            Some("http://example.com"),
            Some("example.com"),
            "https",
            none
        ));
        assert!(!origin_allowed(
            Some("http://evil.test"),
            Some("127.0.0.1:8787"),
            "http",
            none
        ));
        assert!(!origin_allowed(
            Some("null"),
            Some("127.0.0.1:8787"),
            "http",
            none
        ));
        assert!(!origin_allowed(Some("http://a"), None, "http", none));
        let allow = vec!["https://app.example".to_owned()];
        assert!(origin_allowed(
            Some("https://app.example:443"),
            Some("x"),
            "http",
            &allow
        ));
        assert!(!origin_allowed(
            Some("http://app.example"),
            Some("x"),
            "http",
            &allow
        ));
    }

    #[test]
    fn routes_by_method_and_path() {
        let lobby = Ok(Route::Websocket(RoomId::Named("lobby".into())));
        assert_eq!(route("GET", "/api/room/lobby/websocket"), lobby);
        for method in ["POST", "HEAD", "PUT", "get"] {
            let e = route(method, "/api/room/lobby/websocket").unwrap_err();
            assert_eq!(
                (e.status, e.header),
                (405, Some(("Allow", "GET"))),
                "{method}"
            );
        }
        // The method is checked before the room name.
        assert_eq!(
            route("POST", "/api/room/../websocket").unwrap_err().status,
            405
        );
        for bad in [
            "/api/room//websocket",
            "/api/room/a/b/websocket",
            "/api/room/%61/websocket",
        ] {
            assert_eq!(route("GET", bad).unwrap_err().status, 404, "{bad}");
        }
        assert_eq!(
            route("POST", "/api/room/lobby/messages"),
            Ok(Route::Publish(RoomId::Named("lobby".into())))
        );
        assert_eq!(
            route("GET", "/api/room/lobby/messages"),
            Err(PUBLISH_METHOD)
        );
        assert_eq!(
            route("POST", "/api/room/a%20b/messages")
                .unwrap_err()
                .status,
            404
        );
        assert_eq!(route("POST", "/api/room"), Ok(Route::CreateRoom));
        assert_eq!(route("GET", "/api/room"), Err(CREATE_ROOM_METHOD));
        for (path, ok) in [("/healthz", Route::Health), ("/api/limits", Route::Limits)] {
            assert_eq!(route("GET", path), Ok(ok.clone()));
            assert_eq!(route("HEAD", path), Ok(ok));
            assert_eq!(route("DELETE", path), Err(GET_ONLY));
        }
        assert_eq!(route("GET", "/"), Ok(Route::File));
        assert_eq!(route("HEAD", "/healthz/extra"), Ok(Route::File));
        assert_eq!(route("POST", "/index.html"), Ok(Route::FileWrongMethod));
    }

    #[test]
    fn upgrade_checks_run_in_order() {
        let ok = UpgradeRequest {
            origin: None,
            host: Some("127.0.0.1:8787"),
            scheme: "http",
            upgrade: Some("websocket"),
        };
        assert_eq!(check_upgrade(&ok, &[]), Ok(()));
        let all_bad = UpgradeRequest {
            origin: Some("http://evil"),
            upgrade: None,
            ..ok
        };
        assert_eq!(check_upgrade(&all_bad, &[]).unwrap_err().status, 403);
        let r = UpgradeRequest {
            origin: Some("http://127.0.0.1:8787"),
            ..all_bad
        };
        let e = check_upgrade(&r, &[]).unwrap_err();
        assert_eq!((e.status, e.header), (426, Some(("Upgrade", "websocket"))));
        let r = UpgradeRequest {
            upgrade: Some("keep-alive, WebSocket"),
            ..r
        };
        assert!(check_upgrade(&r, &[]).is_ok());
    }
}
