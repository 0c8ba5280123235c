//! HTTP routes and status codes, including the order of the upgrade checks and the
//! headers that go with a refusal.

use super::join;
use crate::client::{Client, Frame};
use crate::harness::{wrangler, Ctx};
use crate::http::{self, Response, UPGRADE_HEADERS};
use crate::wire;
use crate::{bail, ensure, ensure_eq, Result};

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

/// An HTTP refusal as docs/protocol.md ("HTTP endpoints") states it: the status, the
/// plain-text body, and the header HTTP requires with the status (`Allow` with 405,
/// `Upgrade` with 426).
#[derive(Clone, Copy)]
struct Refusal {
    status: u16,
    body: &'static str,
    header: Option<(&'static str, &'static str)>,
}

/// Any method but GET on the WebSocket path.
const WEBSOCKET_METHOD: Refusal = Refusal {
    status: 405,
    body: "Method not allowed: use GET with Upgrade: websocket.",
    header: Some(("Allow", "GET")),
};

/// A request to the WebSocket path without `Upgrade: websocket`.
const UPGRADE_REQUIRED: Refusal = Refusal {
    status: 426,
    body: "Expected Upgrade: websocket.",
    header: Some(("Upgrade", "websocket")),
};

/// Any method but POST on /api/room.
const CREATE_ROOM_METHOD: Refusal = Refusal {
    status: 405,
    body: "Method not allowed: use POST to create a private room.",
    header: Some(("Allow", "POST")),
};

/// Any method but GET or HEAD on /healthz and /api/limits.
const GET_ONLY: Refusal = Refusal {
    status: 405,
    body: "Method not allowed: use GET.",
    header: Some(("Allow", "GET, HEAD")),
};

/// A path that is neither a route nor a static file.
const NOT_FOUND: Refusal = Refusal {
    status: 404,
    body: "Not found.",
    header: None,
};

/// Expects the refusal `r` exactly: its status, its body as plain text, and its header
/// (name, comma-separated value) if it has one.
async fn expect_refusal(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    r: &Refusal,
) -> Result<Response> {
    let what = format!("{method} {path}");
    let resp = http::request(base, method, path, headers).await?;
    ensure_eq!(resp.status, r.status, "{what}: status");
    ensure_eq!(resp.body.as_str(), r.body, "{what}: body");
    let ct = content_type(&resp);
    ensure!(
        ct.starts_with("text/plain"),
        "{what}: content-type {ct:?}, expected text/plain"
    );
    if let Some((name, value)) = r.header {
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

/// The requests of the 426 checks: no `Upgrade` at all, and an upgrade to another
/// protocol.
const NOT_WEBSOCKET: [&[(&str, &str)]; 2] = [&[], &[("upgrade", "h2c"), ("connection", "Upgrade")]];

/// A request to the WebSocket path is checked in the documented order (the method
/// first, see `wrong_method_is_405_with_allow`): an invalid room is 404 even with a
/// foreign Origin, a foreign Origin is 403 even without `Upgrade`, and a request without
/// `Upgrade: websocket` is 426 with its plain-text reason (and an `Upgrade` header, if
/// one arrives, says websocket).
pub async fn upgrade_refusals_come_in_the_documented_order(ctx: Ctx) -> Result<()> {
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
    // The `Upgrade` header of the 426 is checked where the platform can send it
    // (`upgrade_required_426_says_upgrade_websocket`).
    let without_header = Refusal {
        header: None,
        ..UPGRADE_REQUIRED
    };
    for headers in NOT_WEBSOCKET {
        let resp = expect_refusal(&base, "GET", &path, headers, &without_header).await?;
        let sent = header_tokens(&resp, "upgrade");
        ensure!(
            sent.iter().all(|t| t.eq_ignore_ascii_case("websocket")),
            "GET {path} with {headers:?}: the 426 says Upgrade {sent:?}"
        );
    }
    // The Origin is checked before the Upgrade header.
    ensure_eq!(
        status(&base, "GET", &path, &[("origin", "http://evil.example")]).await?,
        403,
        "foreign Origin without Upgrade"
    );
    Ok(())
}

/// A 426 carries `Upgrade: websocket`, saying what to upgrade to, as HTTP requires.
/// Local runner only: workerd drops a Worker's `Upgrade` header on anything but a 101
/// (docs/protocol.md, "Where the backends differ").
pub async fn upgrade_required_426_says_upgrade_websocket(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let path = ws_path(&ctx.room("426"));
    for headers in NOT_WEBSOCKET {
        expect_refusal(&base, "GET", &path, headers, &UPGRADE_REQUIRED).await?;
    }
    Ok(())
}

/// `/healthz` answers 200 `ok`, and `/` the HTML page.
pub async fn health_and_page_answer_200(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
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
pub async fn unknown_path_is_404_not_found(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("unknown");
    for path in [
        "/no-such-file-here.txt".to_string(),
        "/nested/dir/missing.js".to_string(),
        "/api".to_string(),
        "/api/nope".to_string(),
        "/api/rooms".to_string(),
        format!("/api/room/{room}"),
        // Not the publish path (`/messages`, see publish.rs).
        format!("/api/room/{room}/message"),
        format!("/api/room/{room}/messages/extra"),
        format!("{}/extra", ws_path(&room)),
        "/healthz/extra".to_string(),
        "/api/limits/extra".to_string(),
    ] {
        for method in ["GET", "POST"] {
            expect_refusal(&base, method, &path, &[], &NOT_FOUND).await?;
        }
    }
    Ok(())
}

/// The permessage-deflate offers the deflate scenarios make.
const DEFLATE_OFFERS: [&str; 4] = [
    "permessage-deflate",
    "permessage-deflate; client_max_window_bits",
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
    "x-webkit-deflate-frame",
];

/// `max_frame_bytes` of the Default group: the default, 64 KiB (docs/protocol.md).
const DEFAULT_MAX_FRAME_BYTES: usize = 65536;

/// An upgrade that offers permessage-deflate gets a 101 without any
/// `Sec-WebSocket-Extensions`: the backend does not compress, so the cap on incoming
/// messages (`max_frame_bytes`) holds on the wire, not only after inflating; and a
/// socket from such an upgrade chats like any other.
///
/// Local runner only: under `wrangler dev` the proxies in front of the Worker negotiate
/// deflate themselves (see `inflated_message_over_the_cap_closes_1009`).
pub async fn deflate_offer_gets_no_extension(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("deflate");
    for offer in DEFLATE_OFFERS {
        let headers = [UPGRADE_HEADERS, &[("sec-websocket-extensions", offer)]].concat();
        let resp = http::request(&base, "GET", &ws_path(&room), &headers).await?;
        ensure_eq!(resp.status, 101, "upgrade offering {offer:?}: status");
        let negotiated = header_tokens(&resp, "sec-websocket-extensions");
        ensure!(
            negotiated.is_empty(),
            "upgrade offering {offer:?}: the 101 negotiated Sec-WebSocket-Extensions {negotiated:?}"
        );
    }
    chats_uncompressed(&base, &room).await
}

/// Under `wrangler dev`, where the proxies in front of the Worker (Miniflare's entry
/// worker, wrangler's proxy worker) negotiate permessage-deflate with the client before
/// the Worker sees the request, what still matters: every offer gets a 101, a message a
/// few hundred bytes long on the wire that inflates past `max_frame_bytes` closes with
/// 1009 "Message too big", wrangler.toml declines compression for the deployed Worker
/// (its `no_web_socket_compression` flag cannot show on this wire), and a socket of an
/// uncompressed upgrade chats.
///
/// wrangler only: the local runner negotiates no deflate (`deflate_offer_gets_no_extension`).
pub async fn inflated_message_over_the_cap_closes_1009(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("deflate");
    for offer in DEFLATE_OFFERS {
        let headers = [UPGRADE_HEADERS, &[("sec-websocket-extensions", offer)]].concat();
        let resp = http::request(&base, "GET", &ws_path(&room), &headers).await?;
        ensure_eq!(resp.status, 101, "upgrade offering {offer:?}: status");
    }
    if let Err(e) = wrangler::declines_deflate() {
        bail!("{e}");
    }
    inflated_past_the_cap(&base, &room).await?;
    chats_uncompressed(&base, &room).await
}

/// A socket from an upgrade that offered no extension (the client library rejects a
/// 101 with extensions it did not offer, and it offers none) sends and gets a message.
async fn chats_uncompressed(base: &str, room: &str) -> Result<()> {
    let (mut a, _) = join(base, room, "alice").await?;
    a.say("uncompressed").await?;
    ensure_eq!(a.recv_message().await?.message, "uncompressed", "a message");
    a.close().await
}

/// Over a socket with permessage-deflate negotiated, a message that inflates to more
/// than `max_frame_bytes` (while far smaller on the wire) closes with 1009.
async fn inflated_past_the_cap(base: &str, room: &str) -> Result<()> {
    let offer = [("Sec-WebSocket-Extensions", "permessage-deflate")];
    let (handshake, socket) = wire::upgrade(base, &ws_path(room), &offer).await?;
    ensure_eq!(handshake.status, 101, "upgrade offering permessage-deflate");
    let extensions = handshake.header("sec-websocket-extensions").join(", ");
    ensure!(
        extensions.trim_start().starts_with("permessage-deflate"),
        "a raw upgrade offering permessage-deflate got extensions {extensions:?}: nothing \
         in front of the Worker negotiated deflate, so this scenario cannot send a \
         compressed message; if that is now how `wrangler dev` behaves, update \
         docs/protocol.md and run `deflate_offer_gets_no_extension` on wrangler instead"
    );
    let Some(mut socket) = socket else {
        bail!("no socket after a 101");
    };
    let text = format!(
        r#"{{"message":"{}"}}"#,
        "z".repeat(DEFAULT_MAX_FRAME_BYTES + 1024)
    );
    let compressed = wire::deflate_message(&text)?;
    ensure!(
        compressed.len() < DEFAULT_MAX_FRAME_BYTES / 16,
        "the compressed message is {} bytes on the wire",
        compressed.len()
    );
    socket.send_frame(0x1, true, &compressed).await?;
    let close = socket.read_close().await?;
    ensure_eq!(
        close,
        Some((1009, "Message too big".to_owned())),
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
pub async fn wrong_method_is_405_with_allow(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let path = ws_path(&ctx.room("methods"));
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        expect_refusal(&base, method, &path, &[], &WEBSOCKET_METHOD).await?;
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
        expect_refusal(&base, method, "/api/room", &[], &CREATE_ROOM_METHOD).await?;
    }
    // Health and limits are read-only.
    for path in ["/healthz", "/api/limits"] {
        for method in ["POST", "PUT", "DELETE"] {
            expect_refusal(&base, method, path, &[], &GET_ONLY).await?;
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

/// `POST /api/room` mints a fresh 64-hex id each time, whatever the Origin, and the
/// room of such an id is joinable and chats like any other.
pub async fn private_room_ids_are_minted_and_joinable(ctx: Ctx) -> Result<()> {
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

/// Room names at the edges of the rule, each its own room where chat works: `.` and `_`
/// (alone, leading, in a run of three dots, which is no dot-segment), exactly 32
/// characters, and a 64-hex private id that the server never minted.
pub async fn valid_room_names_at_the_limits_join_and_chat(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    // Unique in this run; the fixed names are used by no other scenario.
    let unique = ctx.room("names");
    let thirty_two = format!("{unique}_.{}", "z".repeat(32 - unique.len() - 2));
    ensure_eq!(thirty_two.chars().count(), 32, "test name length");
    let n = unique.rsplit('-').next().unwrap_or_default();
    let unminted = format!("{:0>64}", format!("e5c0{n}"));
    ensure!(is_private_id(&unminted), "test id {unminted:?}");
    let names = [
        "_".to_string(),
        "...".to_string(),
        ".hidden".to_string(),
        "a.b_c-D9".to_string(),
        thirty_two,
        unminted,
    ];
    for room in &names {
        let (mut a, ja) = join(&base, room, "alice").await?;
        ensure_eq!(ja.ready.seq, 0, "room {room:?} is new and its own");
        let (mut b, jb) = join(&base, room, "bob").await?;
        ensure_eq!(jb.roster, vec!["alice".to_string()], "roster of {room:?}");
        a.expect_frame(Frame::Joined("bob".into())).await?;
        a.say(&format!("hello in {room}")).await?;
        let m = a.recv_message().await?;
        ensure_eq!(m.seq, 1, "first seq in {room:?}");
        ensure_eq!(
            b.recv_message().await?,
            m,
            "bob gets the message in {room:?}"
        );
        b.close().await?;
        a.expect_frame(Frame::Quit("bob".into())).await?;
        a.close().await?;
    }
    Ok(())
}
