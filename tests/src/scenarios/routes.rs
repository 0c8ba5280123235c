//! HTTP routes and status codes, including the order of the upgrade checks.

use super::join;
use crate::client::{Client, Frame};
use crate::harness::Ctx;
use crate::http::{self, UPGRADE_HEADERS};
use crate::{ensure, ensure_eq, Result};

fn ws_path(room: &str) -> String {
    format!("/api/room/{room}/websocket")
}

async fn status(base: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Result<u16> {
    Ok(http::request(base, method, path, headers).await?.status)
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
    ensure_eq!(
        status(&base, "GET", &path, &[]).await?,
        426,
        "GET without Upgrade"
    );
    ensure_eq!(
        status(
            &base,
            "GET",
            &path,
            &[("upgrade", "h2c"), ("connection", "Upgrade")]
        )
        .await?,
        426,
        "GET with another Upgrade"
    );
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
    ensure_eq!(
        status(&base, "GET", "/no-such-file-here.txt", &[]).await?,
        404,
        "a path with no file"
    );
    Ok(())
}

/// Any method but GET on the websocket path is 405, checked before anything else.
/// The requests carry no `Connection: Upgrade`: under `wrangler dev` such a request is
/// handled as a WebSocket handshake before the method can be answered (the dev server
/// answers 500), which would test wrangler rather than the backend.
pub async fn methods(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let path = ws_path(&ctx.room("methods"));
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        ensure_eq!(
            status(&base, method, &path, &[]).await?,
            405,
            "{method} on the websocket path"
        );
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
        ensure_eq!(
            status(&base, method, "/api/room", &[]).await?,
            405,
            "{method} /api/room"
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
    let content_type = first
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
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
