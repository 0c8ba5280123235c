//! Typing indicators (docs/protocol.md, "Typing indicators"), in the `Batch` group:
//! a short `typing_ttl_ms`, `typing_max` 2 and a typing bucket of 3 that does not
//! refill during a test. Every assertion is about frames and their order, never about
//! how long anything took: the expiry is awaited as a frame.

use crate::client::{Client, Frame, Typer};
use crate::harness::{batch, Ctx};
use crate::{bail, ensure, ensure_eq, Result};
use serde_json::json;

const TYPING_RATE_LIMITED: &str = "Typing updates too fast; slow down.";
const TYPING_INVALID: &str = r#""typing" must be true or false."#;
const WRONG_SHAPE: &str = r#"Expected a JSON object like {"message": "hello"}."#;

async fn join_as(base: &str, room: &str, name: &str, v2: bool, batch: bool) -> Result<Client> {
    let mut c = Client::connect(base, room, name).await?;
    let mut hello = json!({ "name": name });
    if v2 {
        hello["v"] = json!(2);
    }
    if batch {
        hello["batch"] = json!(true);
    }
    c.hello_with(&hello, name).await?;
    Ok(c)
}

async fn typing(c: &mut Client, on: bool) -> Result<()> {
    c.send_text(format!(r#"{{"typing":{on}}}"#)).await
}

/// Expects `{"joined": name}` for each of `names`, in order.
async fn joined(c: &mut Client, names: &[&str]) -> Result<()> {
    for n in names {
        c.expect_frame(Frame::Joined((*n).to_owned())).await?;
    }
    Ok(())
}

async fn expect_typing(c: &mut Client, name: &str) -> Result<Typer> {
    match c.recv().await? {
        Frame::Typing(t) if t.name == name => {
            ensure_eq!(t.ttl_ms, Some(batch::TYPING_TTL_MS), "ttl_ms of {t:?}");
            ensure!(t.user.is_none(), "an anonymous typer with a user: {t:?}");
            Ok(t)
        }
        other => bail!("{}: expected {name} typing, got {other:?}", c.label),
    }
}

async fn expect_stopped(c: &mut Client, name: &str, typer: u64) -> Result<()> {
    let want = Typer {
        name: name.to_owned(),
        user: None,
        typer,
        ttl_ms: None,
    };
    c.expect_frame(Frame::TypingStopped(want)).await
}

async fn expect_message(c: &mut Client, text: &str) -> Result<()> {
    let m = c.recv_message().await?;
    ensure_eq!(m.message, text, "{}: message", c.label);
    Ok(())
}

/// ana types (twice: coalesced into one frame); bo (v2) and di (v2, batched) hear it
/// once, cy (v1) and ana herself never. ana's message ends it: `typing_stopped` comes
/// right before the message. A v2 joiner hears who is typing after its `ready`, and a
/// typer that leaves is stopped right before its quit.
pub async fn typing_reaches_the_other_v2_members_only(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("typing-who");
    let mut ana = join_as(&base, &room, "ana", true, false).await?;
    let mut bo = join_as(&base, &room, "bo", true, false).await?;
    let mut cy = join_as(&base, &room, "cy", false, false).await?;
    let mut di = join_as(&base, &room, "di", true, true).await?;
    joined(&mut ana, &["bo", "cy", "di"]).await?;
    joined(&mut bo, &["cy", "di"]).await?;
    joined(&mut cy, &["di"]).await?;

    typing(&mut ana, true).await?;
    typing(&mut ana, true).await?;
    let t_ana = expect_typing(&mut bo, "ana").await?;
    ensure_eq!(
        expect_typing(&mut di, "ana").await?,
        t_ana,
        "di's typing frame"
    );
    ana.say("hi").await?;
    for c in [&mut bo, &mut di] {
        expect_stopped(c, "ana", t_ana.typer).await?;
        expect_message(c, "hi").await?;
    }
    // Nothing before the message: no echo to ana, nothing for the v1 member.
    expect_message(&mut ana, "hi").await?;
    expect_message(&mut cy, "hi").await?;

    typing(&mut bo, true).await?;
    let t_bo = expect_typing(&mut ana, "bo").await?;
    ensure!(
        t_bo.typer != t_ana.typer,
        "two typers, one typer id: {t_bo:?}"
    );
    expect_typing(&mut di, "bo").await?;
    let mut eve = join_as(&base, &room, "eve", true, false).await?;
    ensure_eq!(
        expect_typing(&mut eve, "bo").await?,
        t_bo,
        "the joiner's typing frame"
    );
    for c in [&mut ana, &mut cy, &mut di] {
        joined(c, &["eve"]).await?;
    }
    bo.close().await?;
    for c in [&mut ana, &mut di, &mut eve] {
        expect_stopped(c, "bo", t_bo.typer).await?;
        c.expect_frame(Frame::Quit("bo".into())).await?;
    }
    cy.expect_frame(Frame::Quit("bo".into())).await?;
    Ok(())
}

/// Without a refresh, the server stops a typer by itself after `typing_ttl_ms`; a
/// message after that has no `typing_stopped` before it.
pub async fn typing_expires_without_a_refresh(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("typing-ttl");
    let mut ana = join_as(&base, &room, "ana", true, false).await?;
    let mut bo = join_as(&base, &room, "bo", true, false).await?;
    joined(&mut ana, &["bo"]).await?;
    typing(&mut ana, true).await?;
    let t = expect_typing(&mut bo, "ana").await?;
    // Awaited as a frame: nothing else is sent meanwhile.
    expect_stopped(&mut bo, "ana", t.typer).await?;
    ana.say("after").await?;
    expect_message(&mut bo, "after").await?;
    expect_message(&mut ana, "after").await?;
    Ok(())
}

/// At most `typing_max` typers are announced (one more is silently not); past its
/// typing bucket a connection gets `typing_rate_limited` and can still chat; a
/// malformed typing frame and a v1 session's typing frame get their errors.
pub async fn typing_bounds_answer_as_documented(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("typing-bounds");
    let mut w = join_as(&base, &room, "w", true, false).await?;
    let mut ana = join_as(&base, &room, "ana", true, false).await?;
    let mut bo = join_as(&base, &room, "bo", true, false).await?;
    let mut cy = join_as(&base, &room, "cy", true, false).await?;
    let mut old = join_as(&base, &room, "old", false, false).await?;
    joined(&mut w, &["ana", "bo", "cy", "old"]).await?;
    ensure_eq!(batch::TYPING_MAX, 2, "the scenario's typing_max");

    typing(&mut ana, true).await?;
    let t_ana = expect_typing(&mut w, "ana").await?;
    typing(&mut bo, true).await?;
    let t_bo = expect_typing(&mut w, "bo").await?;
    // A third typer: not announced. Its message shows it was handled.
    typing(&mut cy, true).await?;
    cy.say("x").await?;
    expect_message(&mut w, "x").await?;
    typing(&mut bo, false).await?;
    expect_stopped(&mut w, "bo", t_bo.typer).await?;

    // ana's bucket: 3 typing frames (1 spent), then refused.
    ensure_eq!(batch::TYPING_BURST, 3, "the scenario's typing_burst");
    typing(&mut ana, false).await?;
    expect_stopped(&mut w, "ana", t_ana.typer).await?;
    typing(&mut ana, true).await?;
    expect_typing(&mut w, "ana").await?;
    typing(&mut ana, false).await?;
    expect_error_past_the_rest(&mut ana, TYPING_RATE_LIMITED).await?;
    // The frame bucket is another: ana still chats (and her typing ends with it).
    ana.say("still here").await?;
    expect_stopped(&mut w, "ana", t_ana.typer).await?;
    expect_message(&mut w, "still here").await?;
    bo.send_text(r#"{"typing":"yes"}"#).await?;
    expect_error_past_the_rest(&mut bo, TYPING_INVALID).await?;
    // v1: the error it always got, and nothing for anyone.
    typing(&mut old, true).await?;
    expect_error_past_the_rest(&mut old, WRONG_SHAPE).await?;
    // Nothing else came: not the malformed frame, not the v1 one.
    old.say("v1 done").await?;
    expect_message(&mut w, "v1 done").await?;
    Ok(())
}

/// Reads past the other frames this member gets (presence, typing, messages) to the
/// error that answers its own frame.
async fn expect_error_past_the_rest(c: &mut Client, text: &str) -> Result<()> {
    for _ in 0..50 {
        match c.recv().await? {
            Frame::Error(e) => {
                ensure_eq!(e, text, "{}: error", c.label);
                return Ok(());
            }
            Frame::Joined(_) | Frame::Message(_) | Frame::Typing(_) | Frame::TypingStopped(_) => {}
            other => bail!("{}: expected an error, got {other:?}", c.label),
        }
    }
    bail!("{}: no error among 50 frames", c.label)
}
