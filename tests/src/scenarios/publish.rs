//! Server-side publish: `POST /api/room/{room}/messages` with a service token (a JWT
//! with `"role": "service"` naming the room) posts a chat message as an app's backend
//! would, and members over WebSocket get it like any other, with `user` and `role`.
//! Identity group (the test secret) unless said otherwise.

use crate::client::{Client, Frame, Msg};
use crate::harness::{identity::SECRET, Ctx};
use crate::http::{self, Response};
use crate::token::{self, now_secs, sign, HS256};
use crate::{bail, ensure, ensure_eq, Result};
use serde_json::{json, Value};

/// `max_frame_bytes` by default: the largest publish body (docs/protocol.md).
const BODY_LIMIT: usize = 65_536;
/// `publish_burst` by default.
const PUBLISH_BURST: usize = 20;

fn path(room: &str) -> String {
    format!("/api/room/{room}/messages")
}

/// A service token for `room` (or `*`).
fn service(sub: &str, room: &str) -> String {
    token::token(SECRET, sub, json!({"role": "service", "room": room}))
}

async fn publish(base: &str, room: &str, token: Option<&str>, body: &str) -> Result<Response> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    http::post(base, &path(room), &headers, body).await
}

/// The JSON of an answer, checking it says so.
fn json_of(r: &Response, what: &str) -> Result<Value> {
    let kind = r
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    ensure!(
        kind.starts_with("application/json"),
        "{what}: content-type {kind:?}, body {:?}",
        r.body
    );
    serde_json::from_str(&r.body).map_err(|e| crate::Error(format!("{what}: {e}: {}", r.body)))
}

/// Expects a refusal with `status` and `code`, and an error sentence.
fn refused(r: &Response, status: u16, code: &str, what: &str) -> Result<()> {
    let v = json_of(r, what)?;
    ensure_eq!(
        (r.status, v["code"].as_str()),
        (status, Some(code)),
        "{what}: {v}"
    );
    ensure!(
        v["error"].as_str().is_some_and(|e| e.ends_with('.')),
        "{what}: no error sentence in {v}"
    );
    Ok(())
}

/// A publish with a good token answers 201 with its seq and timestamp; members over
/// WebSocket (v1 and v2) get it as a chat frame with `user` and `role: "service"`; a
/// joiner's backlog and a history page show it too, and the room's seqs go on from it.
pub async fn a_published_message_reaches_members_and_history(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("publish");
    let mut ana = Client::connect(&base, &room, "ana").await?;
    ana.hello("ana").await?;
    let mut bob = Client::connect(&base, &room, "bob").await?;
    bob.hello_v2("bob").await?;
    ana.expect_frame(Frame::Joined("bob".into())).await?;
    let body = json!({"name": "Build bot", "message": "deployed 7"}).to_string();
    let r = publish(&base, &room, Some(&service("bot-1", &room)), &body).await?;
    let v = json_of(&r, "publish")?;
    ensure_eq!(r.status, 201, "status of a publish: {v}");
    let (Some(seq), Some(timestamp)) = (v["seq"].as_u64(), v["timestamp"].as_u64()) else {
        bail!("a publish answer without seq and timestamp: {v}");
    };
    let want = Msg {
        name: "Build bot".into(),
        message: "deployed 7".into(),
        timestamp,
        seq,
        user: Some("bot-1".into()),
        cid: None,
        role: Some("service".into()),
        edited_at: None,
        reactions: None,
    };
    ensure_eq!(
        ana.recv_message().await?,
        want.clone(),
        "the v1 member's frame"
    );
    ensure_eq!(
        bob.recv_message().await?,
        want.clone(),
        "the v2 member's frame"
    );
    let mut cy = Client::connect(&base, &room, "cy").await?;
    let j = cy.hello_v2("cy").await?;
    ensure_eq!(j.backlog, vec![want.clone()], "a joiner's backlog");
    cy.ask_history(json!({"history": {}})).await?;
    let page = cy.recv_page().await?;
    ensure_eq!(page.history, vec![want], "a history page");
    ana.say("after it").await?;
    let next = ana.recv_message_past_presence().await?;
    ensure_eq!(next.seq, seq + 1, "the next message's seq");
    Ok(())
}

/// Every refusal is JSON `{"error", "code"}` with its status: no token or a bad one
/// 401, another room's token or a token that is not a service's 403, a body that is
/// not a message 400, a body over `max_frame_bytes` 413. Nothing refused is sent.
pub async fn publish_refusals_say_why(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("publish-refused");
    let mut ana = Client::connect(&base, &room, "ana").await?;
    ana.hello("ana").await?;
    let good = service("bot-1", &room);
    let body = r#"{"message": "x"}"#;
    let exp = now_secs() + 3600;
    let expired = sign(
        SECRET,
        HS256,
        &json!({"sub": "bot-1", "role": "service", "room": room, "exp": now_secs() - 3600}),
    );
    let user = token::token(SECRET, "u1", json!({"room": room}));
    let moderator = token::token(SECRET, "m1", json!({"role": "moderator", "room": room}));
    let elsewhere = service("bot-1", "another-room");
    let unscoped = sign(
        SECRET,
        HS256,
        &json!({"sub": "bot-1", "role": "service", "exp": exp}),
    );
    let forged = token::token(
        "another-secret-0123456789abcdefghijkl",
        "bot-1",
        json!({"role": "service", "room": room}),
    );
    for (t, status, code) in [
        (None, 401, "token_missing"),
        (Some(expired.as_str()), 401, "token_expired"),
        (Some(forged.as_str()), 401, "token_signature"),
        (Some(elsewhere.as_str()), 403, "token_wrong_room"),
        (Some(unscoped.as_str()), 403, "service_token_needs_room"),
        (Some(user.as_str()), 403, "not_service"),
        (Some(moderator.as_str()), 403, "not_service"),
    ] {
        let r = publish(&base, &room, t, body).await?;
        refused(&r, status, code, code)?;
    }
    for (body, code) in [
        ("not json", "publish_shape"),
        (r#"{"name": "bot"}"#, "publish_shape"),
        (r#"{"message": "   "}"#, "message_empty"),
        (r#"{"message": "x", "name": 7}"#, "name_not_string"),
        (r#"{"message": "x", "cid": "a b"}"#, "cid_invalid"),
    ] {
        let r = publish(&base, &room, Some(&good), body).await?;
        refused(&r, 400, code, body)?;
    }
    let huge = format!(r#"{{"message": "{}"}}"#, "m".repeat(BODY_LIMIT));
    let r = publish(&base, &room, Some(&good), &huge).await?;
    refused(&r, 413, "body_too_large", "a body over max_frame_bytes")?;
    // A room name is checked as on the WebSocket path; GET is not a publish.
    let r = http::post(&base, &path("a%20b"), &[], body).await?;
    ensure_eq!(r.status, 404, "a bad room name: {}", r.body);
    let r = http::request(&base, "GET", &path(&room), &[]).await?;
    ensure_eq!(r.status, 405, "GET on the publish path: {}", r.body);
    // Nothing of the above reached the room; a good one does.
    let r = publish(&base, &room, Some(&good), r#"{"message": "ok"}"#).await?;
    ensure_eq!(r.status, 201, "the good publish: {}", r.body);
    let m = ana.recv_message().await?;
    ensure_eq!((m.message.as_str(), m.seq), ("ok", 1), "the only message");
    Ok(())
}

/// A service token is no join token: a hello with one is refused like a bad token,
/// so no session ever takes the service role.
pub async fn a_service_token_cannot_join(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("publish-join");
    let hello = json!({"name": "bot", "token": service("bot-1", &room)});
    super::identity::refused(
        &base,
        &room,
        hello,
        "A service token publishes over HTTP and cannot join a room: use a user's token.",
        "a service token's hello",
    )
    .await
}

/// A publish retried with the same `cid` (same token `sub`) is stored once: the retry
/// answers 200 with the first seq and timestamp, and members get one message.
pub async fn a_publish_retried_with_its_cid_is_stored_once(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("publish-cid");
    let mut ana = Client::connect(&base, &room, "ana").await?;
    ana.hello("ana").await?;
    let t = service("bot-1", &room);
    let body = r#"{"message": "deploy 8", "cid": "deploy-8"}"#;
    let first = publish(&base, &room, Some(&t), body).await?;
    ensure_eq!(first.status, 201, "the first publish: {}", first.body);
    let again = publish(&base, &room, Some(&t), body).await?;
    ensure_eq!(again.status, 200, "the retry: {}", again.body);
    ensure_eq!(
        json_of(&again, "retry")?,
        json_of(&first, "first")?,
        "the retry's answer is the first's"
    );
    let m = ana.recv_message().await?;
    ensure_eq!(m.cid.as_deref(), Some("deploy-8"), "the frame's cid");
    // The next message is the next seq: the retry stored nothing.
    let r = publish(&base, &room, Some(&t), r#"{"message": "next"}"#).await?;
    ensure_eq!(r.status, 201, "the next publish: {}", r.body);
    let next = ana.recv_message().await?;
    ensure_eq!(
        (next.message.as_str(), next.seq),
        ("next", m.seq + 1),
        "no duplicate"
    );
    Ok(())
}

/// Each token `sub` has its bucket (`publish_burst` 20, `publish_per_sec` 1): a service
/// publishing back to back is refused 429 `rate_limited` with `Retry-After` once it is
/// drained, while another `sub` still publishes.
pub async fn publishing_too_fast_is_refused_429(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("publish-rate");
    let t = service("bot-fast", &room);
    let mut accepted = 0;
    let mut refusal = None;
    // The bucket refills while the requests go out, so more than the burst may pass;
    // at most one token a second comes back, so a refusal comes well within this.
    for _ in 0..PUBLISH_BURST * 5 {
        let r = publish(&base, &room, Some(&t), r#"{"message": "tick"}"#).await?;
        match r.status {
            201 => accepted += 1,
            _ => {
                refusal = Some(r);
                break;
            }
        }
    }
    let Some(r) = refusal else {
        bail!("{accepted} publishes in a row, none refused");
    };
    ensure!(
        accepted >= PUBLISH_BURST,
        "refused after {accepted}, before the burst of {PUBLISH_BURST}: {}",
        r.body
    );
    refused(&r, 429, "rate_limited", "a drained sub")?;
    let retry = r
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    ensure!(
        retry.is_some_and(|s| s >= 1),
        "Retry-After of a refused publish: {:?}",
        r.headers.get("retry-after")
    );
    let other = publish(
        &base,
        &room,
        Some(&service("bot-other", &room)),
        r#"{"message": "x"}"#,
    )
    .await?;
    ensure_eq!(other.status, 201, "another sub: {}", other.body);
    Ok(())
}

/// Default group (no auth secret): publishing is not enabled, 404 `publish_disabled`.
pub async fn publishing_without_a_secret_is_not_found(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("publish-off");
    let t = service("bot-1", &room);
    let r = publish(&base, &room, Some(&t), r#"{"message": "x"}"#).await?;
    refused(&r, 404, "publish_disabled", "a publish without a secret")
}
