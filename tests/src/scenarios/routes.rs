//! HTTP routes and status codes, including the order of the upgrade checks and the
//! headers that go with a refusal.

use super::join;
use crate::client::{Client, Frame};
use crate::harness::{wrangler, Ctx};
use crate::http::{self, Response, UPGRADE_HEADERS};
use crate::wire;
use crate::{bail, ensure, ensure_eq, Result};
use chat_handler::edge::{self, Rejection, UpgradeRequest};
use chat_handler::room::{reasons, CloseCode};

pub(super) fn ws_path(room: &str) -> String {
    format!("/api/room/{room}/websocket")
}

async fn status(base: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Result<u16> {
    Ok(http::request(base, method, path, headers).await?.status)
}

pub(super) fn content_type(resp: &Response) -> String {
    resp.headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The comma-separated tokens of every `name` header, trimmed and sorted, so that
/// `Allow: HEAD, GET` equals `Allow: GET, HEAD`.
fn header_tokens(resp: &Response, name: &str) -> Vec<String> {
    let values: Vec<String> = resp
        .headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    let mut tokens: Vec<String> = values
        .iter()
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect();
    tokens.sort();
    tokens
}

/// The handler's refusal of a request to the WebSocket path (what every backend must
/// answer with), e.g. the 405 of a POST or the 426 of a GET without `Upgrade`.
fn upgrade_refusal(method: &str, upgrade: Option<&str>) -> Result<Rejection> {
    let request = UpgradeRequest {
        method,
        room: "room",
        origin: None,
        host: Some("127.0.0.1:8787"),
        scheme: "http",
        upgrade,
    };
    match edge::check_upgrade(&request, &[]) {
        Ok(_) => bail!("the handler accepts {method} with Upgrade {upgrade:?}"),
        Err(r) => Ok(r),
    }
}

/// Expects the refusal `r` exactly: its status, its reason as a plain-text body, and
/// `header` (name, comma-separated value), the one HTTP requires with the status:
/// `Allow` with 405, `Upgrade` with 426.
async fn expect_refusal(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    r: &Rejection,
    header: Option<(&str, &str)>,
) -> Result<Response> {
    let what = format!("{method} {path}");
    let resp = http::request(base, method, path, headers).await?;
    ensure_eq!(resp.status, r.status, "{what}: status");
    ensure_eq!(resp.body.as_str(), r.reason, "{what}: body");
    let ct = content_type(&resp);
    ensure!(
        ct.starts_with("text/plain"),
        "{what}: content-type {ct:?}, expected text/plain"
    );
    if let Some((name, value)) = header {
        let mut got = header_tokens(&resp, name);
        let mut expected: Vec<String> = value.split(',').map(|t| t.trim().to_owned()).collect();
        expected.sort();
        // Methods are case-sensitive; protocol names are not.
        if name.eq_ignore_ascii_case("upgrade") {
            got.iter_mut().for_each(|t| t.make_ascii_lowercase());
            expected.iter_mut().for_each(|t| t.make_ascii_lowercase());
        }
        ensure_eq!(got, expected, "{what}: {name} header of the {}", r.status);
    }
    Ok(resp)
}

pub async fn status_codes(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("routes");
    let foreign = [UPGRADE_HEADERS, &[("origin", "http://evil.example")]].concat();

    for bad in [
        "..".to_string(),
        ".".to_string(),
        "a".repeat(33),
        "a%20b".to_string(),
        "caf%C3%A9".to_string(),
        "0123456789ABCDEF".repeat(4),
        "0123456789abcdef".repeat(4)[..63].to_string(),
    ] {
        let got = status(&base, "GET", &ws_path(&bad), UPGRADE_HEADERS).await?;
        ensure_eq!(got, 404, "GET (upgrade) for invalid room {bad:?}");
        // The room is checked before the Origin.
        let got = status(&base, "GET", &ws_path(&bad), &foreign).await?;
        ensure_eq!(got, 404, "invalid room {bad:?} with a foreign Origin");
    }
    let path = ws_path(&room);
    // 426 carries `Upgrade: websocket`, saying what to upgrade to, on backends whose
    // platform lets them send it (not workerd, see `sends_upgrade_on_426`); an Upgrade
    // header that does arrive must say websocket either way.
    let upgrade = Some(("Upgrade", "websocket")).filter(|_| ctx.backend().sends_upgrade_on_426());
    let other = [("upgrade", "h2c"), ("connection", "Upgrade")];
    for (headers, offered) in [(&[][..], None), (&other[..], Some("h2c"))] {
        let refusal = upgrade_refusal("GET", offered)?;
        ensure_eq!(
            refusal.status,
            426,
            "the handler's answer to GET with Upgrade {offered:?}"
        );
        let resp = expect_refusal(&base, "GET", &path, headers, &refusal, upgrade).await?;
        let sent = header_tokens(&resp, "upgrade");
        ensure!(
            sent.is_empty() || sent.iter().all(|t| t.eq_ignore_ascii_case("websocket")),
            "GET {path} with Upgrade {offered:?}: the 426 says Upgrade {sent:?}"
        );
    }
    // The Origin is checked before the Upgrade header.
    ensure_eq!(
        status(&base, "GET", &path, &[("origin", "http://evil.example")]).await?,
        403,
        "foreign Origin without Upgrade"
    );

    let health = http::request(&base, "GET", "/healthz", &[]).await?;
    ensure_eq!(health.status, 200, "/healthz status");
    ensure_eq!(health.body.trim(), "ok", "/healthz body");

    let index = http::request(&base, "GET", "/", &[]).await?;
    ensure_eq!(index.status, 200, "GET / status");
    ensure!(
        index.body.to_ascii_lowercase().contains("<html"),
        "GET / is not the HTML page: {:?}",
        index.body.chars().take(200).collect::<String>()
    );
    Ok(())
}

/// A path that is neither a route nor a static file: 404 with the plain-text
/// "Not found.", under /api/ as anywhere else.
pub async fn unknown_paths(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("unknown");
    for path in [
        "/no-such-file-here.txt".to_string(),
        "/nested/dir/missing.js".to_string(),
        "/api".to_string(),
        "/api/nope".to_string(),
        "/api/rooms".to_string(),
        format!("/api/room/{room}"),
        format!("/api/room/{room}/messages"),
        format!("{}/extra", ws_path(&room)),
        format!("{}/extra", edge::HEALTH_PATH),
        format!("{}/extra", edge::LIMITS_PATH),
    ] {
        for method in ["GET", "POST"] {
            expect_refusal(&base, method, &path, &[], &edge::NOT_FOUND, None).await?;
        }
    }
    Ok(())
}

/// An upgrade that offers permessage-deflate gets a 101 without any
/// `Sec-WebSocket-Extensions`: no backend compresses, so the cap on incoming messages
/// (`max_frame_bytes`) holds on the wire, not only after inflating.
///
/// Under `wrangler dev` the proxies in front of the Worker negotiate deflate themselves
/// (`deflate_negotiated_in_front`). There the scenario checks what still matters: a
/// message a few hundred bytes long on the wire that inflates past `max_frame_bytes`
/// closes with 1009, and wrangler.toml declines compression for the deployed Worker.
pub async fn no_deflate(ctx: Ctx) -> Result<()> {
    let backend = ctx.backend();
    let base = ctx.base();
    let room = ctx.room("deflate");
    let mut negotiated_in_front = false;
    for offer in [
        "permessage-deflate",
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        "x-webkit-deflate-frame",
    ] {
        let headers = [UPGRADE_HEADERS, &[("sec-websocket-extensions", offer)]].concat();
        let resp = http::request(&base, "GET", &ws_path(&room), &headers).await?;
        ensure_eq!(resp.status, 101, "upgrade offering {offer:?}: status");
        let negotiated = header_tokens(&resp, "sec-websocket-extensions");
        if negotiated.is_empty() {
            continue;
        }
        ensure!(
            backend.deflate_negotiated_in_front(),
            "upgrade offering {offer:?}: the 101 negotiated Sec-WebSocket-Extensions {negotiated:?}"
        );
        negotiated_in_front = true;
    }
    if negotiated_in_front {
        if let Err(e) = wrangler::declines_deflate() {
            bail!("{e}");
        }
        inflated_past_the_cap(&ctx, &base, &room).await?;
    }
    // And a socket from such an upgrade chats like any other (the client library
    // rejects a 101 with extensions it did not offer, and it offers none).
    let (mut a, _) = join(&base, &room, "alice").await?;
    a.say("uncompressed").await?;
    ensure_eq!(a.recv_message().await?.message, "uncompressed", "a message");
    a.close().await
}

/// Over a socket with permessage-deflate negotiated, a message that inflates to more
/// than `max_frame_bytes` (while far smaller on the wire) closes with 1009.
async fn inflated_past_the_cap(ctx: &Ctx, base: &str, room: &str) -> Result<()> {
    let config = ctx.config()?;
    let offer = [("Sec-WebSocket-Extensions", "permessage-deflate")];
    let (handshake, socket) = wire::upgrade(base, &ws_path(room), &offer).await?;
    ensure_eq!(handshake.status, 101, "upgrade offering permessage-deflate");
    let extensions = handshake.header("sec-websocket-extensions").join(", ");
    ensure!(
        extensions.trim_start().starts_with("permessage-deflate"),
        "a raw upgrade offering permessage-deflate got extensions {extensions:?}"
    );
    let Some(mut socket) = socket else {
        bail!("no socket after a 101");
    };
    let text = format!(
        r#"{{"message":"{}"}}"#,
        "z".repeat(config.max_frame_bytes + 1024)
    );
    let compressed = wire::deflate_message(&text)?;
    ensure!(
        compressed.len() < config.max_frame_bytes / 16,
        "the compressed message is {} bytes on the wire",
        compressed.len()
    );
    socket.send_frame(0x1, true, &compressed).await?;
    let close = socket.read_close().await?;
    ensure_eq!(
        close,
        Some((CloseCode::TOO_BIG, reasons::TOO_BIG.to_owned())),
        "close after a message of {} bytes inflated from {} on the wire",
        text.len(),
        compressed.len()
    );
    Ok(())
}

/// Any method but GET on the websocket path is 405, checked before anything else.
/// The requests carry no `Connection: Upgrade`: under `wrangler dev` such a request is
/// handled as a WebSocket handshake before the method can be answered (the dev server
/// answers 500), which would test wrangler rather than the backend.
///
/// Every 405 carries `Allow`: GET on the websocket path, POST on /api/room, and
/// "GET, HEAD" on /healthz and /api/limits, where HEAD must then work too.
pub async fn methods(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let path = ws_path(&ctx.room("methods"));
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let refusal = upgrade_refusal(method, None)?;
        ensure_eq!(refusal.status, 405, "the handler's answer to {method}");
        expect_refusal(&base, method, &path, &[], &refusal, Some(("Allow", "GET"))).await?;
    }
    // The method is checked before the room name and the Origin. (Not with `..`: URL
    // parsers resolve it away before a backend sees it, which is why it is invalid.)
    for bad in ["a%20b".to_string(), "b".repeat(33)] {
        ensure_eq!(
            status(&base, "POST", &ws_path(&bad), &[]).await?,
            405,
            "POST to invalid room {bad:?}"
        );
    }
    ensure_eq!(
        status(&base, "PUT", &path, &[("origin", "http://evil.example")]).await?,
        405,
        "PUT with a foreign Origin"
    );
    // Creating a room is POST only.
    for method in ["GET", "PUT", "DELETE"] {
        let r = &edge::CREATE_ROOM_METHOD;
        expect_refusal(
            &base,
            method,
            edge::CREATE_ROOM_PATH,
            &[],
            r,
            Some(("Allow", "POST")),
        )
        .await?;
    }
    // Health and limits are read-only.
    for path in [edge::HEALTH_PATH, edge::LIMITS_PATH] {
        for method in ["POST", "PUT", "DELETE"] {
            let allow = Some(("Allow", "GET, HEAD"));
            expect_refusal(&base, method, path, &[], &edge::GET_ONLY, allow).await?;
        }
        let head = http::request(&base, "HEAD", path, &[]).await?;
        ensure_eq!(head.status, 200, "HEAD {path} (its 405s allow HEAD)");
        ensure!(
            head.body.is_empty(),
            "HEAD {path} has a body: {:?}",
            head.body
        );
    }
    Ok(())
}

fn is_private_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

pub async fn private_rooms(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let first = http::request(&base, "POST", "/api/room", &[]).await?;
    ensure_eq!(first.status, 200, "POST /api/room status");
    let content_type = content_type(&first);
    ensure!(
        content_type.starts_with("text/plain"),
        "POST /api/room content-type {content_type:?}, expected text/plain"
    );
    let id = first.body.clone();
    ensure!(
        is_private_id(&id),
        "POST /api/room body {id:?}: expected 64 lower-case hex digits"
    );
    let second = http::request(&base, "POST", "/api/room", &[]).await?;
    ensure_eq!(second.status, 200, "second POST /api/room status");
    ensure!(is_private_id(&second.body), "second id {:?}", second.body);
    ensure!(second.body != id, "two private room ids are equal: {id}");

    // No Origin check on creating a room: an id grants nothing.
    let foreign = http::request(
        &base,
        "POST",
        "/api/room",
        &[("origin", "http://evil.example")],
    )
    .await?;
    ensure_eq!(foreign.status, 200, "POST /api/room with a foreign Origin");

    let (mut a, ja) = join(&base, &id, "alice").await?;
    ensure_eq!(ja.ready.seq, 0, "a new private room is empty");
    let mut b = Client::connect(&base, &id, "bob").await?;
    let jb = b.hello("bob").await?;
    ensure_eq!(
        jb.roster,
        vec!["alice".to_string()],
        "roster of the private room"
    );
    a.expect_frame(Frame::Joined("bob".into())).await?;
    a.say("psst").await?;
    let m = a.recv_message().await?;
    ensure_eq!(b.recv_message().await?, m, "bob gets the private message");
    b.close().await?;
    a.close().await
}
