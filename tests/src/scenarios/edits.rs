//! v2 edits (docs/protocol.md, "Edits"): the author's `{"edit": {"seq", "message"}}`
//! reaches every v2 member as `{"edited": …}` and never a v1 one; backlogs, history and
//! resumes carry the latest text with `edited_at`; anyone else's edit, a bad one or a
//! late one is refused with its error and changes nothing.

use super::identity::enter;
use super::SILENCE;
use crate::client::{Client, Edited, Frame, Msg};
use crate::harness::identity::SECRET;
use crate::harness::{tight, Ctx};
use crate::{bail, ensure, ensure_eq, token, Result};
use serde_json::{json, Value};
use std::time::Duration;

const NOT_YOURS: &str = "Only its author may edit a message: the same user, or for an anonymous message the connection that sent it.";
const TOO_LATE: &str =
    "This message can no longer be edited (edit_window_secs, see GET /api/limits).";
const NO_SUCH: &str = "There is no message with that seq to edit.";
const SHAPE: &str = r#"Expected an edit like {"edit": {"seq": 17, "message": "new text"}}."#;
const NEEDS_V2: &str = r#"Editing needs protocol v2: send "v": 2 in the hello."#;

fn v2(name: &str) -> Value {
    json!({"name": name, "v": 2})
}

async fn edit(c: &mut Client, seq: u64, text: &str) -> Result<()> {
    c.send_json(&json!({"edit": {"seq": seq, "message": text}}))
        .await
}

/// The next frame, which must be an `edited` one.
async fn recv_edited(c: &mut Client) -> Result<Edited> {
    match c.recv().await? {
        Frame::Edited(e) => Ok(e),
        other => bail!("expected an edited frame, got {other:?}"),
    }
}

/// The newest history page of `c`'s room.
async fn newest_page(c: &mut Client) -> Result<Vec<Msg>> {
    c.ask_history(json!({"limit": 10})).await?;
    Ok(c.recv_page().await?.history)
}

/// Default group: ana edits her message; ana and bo (v2) get `edited`, carl (v1) gets
/// nothing; a later joiner's backlog and a history page hold the latest text with
/// `edited_at`.
pub async fn the_author_edits_and_every_v2_member_sees_it(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("edit");
    let (mut ana, _) = enter(&base, &room, "ana", v2("ana")).await?;
    let (mut bo, _) = enter(&base, &room, "bo", v2("bo")).await?;
    let (mut carl, _) = enter(&base, &room, "carl", json!({"name": "carl"})).await?;
    ana.expect_frame(Frame::Joined("bo".into())).await?;
    ana.expect_frame(Frame::Joined("carl".into())).await?;
    bo.expect_frame(Frame::Joined("carl".into())).await?;
    ana.say("helo wrld").await?;
    let sent = ana.recv_message().await?;
    ensure_eq!(bo.recv_message().await?, sent.clone(), "bo's copy");
    ensure_eq!(carl.recv_message().await?, sent.clone(), "carl's copy");

    edit(&mut ana, sent.seq, "  hello world  ").await?;
    let e = recv_edited(&mut ana).await?;
    ensure_eq!(
        (e.seq, e.message.as_str()),
        (sent.seq, "hello world"),
        "the edit, trimmed"
    );
    ensure!(
        e.edited_at >= sent.timestamp,
        "edited_at {e:?} before the message"
    );
    ensure_eq!(recv_edited(&mut bo).await?, e.clone(), "bo's edited frame");
    // carl (v1) gets nothing: the next frame he sees is ana's next message.
    ana.say("next").await?;
    let next = carl.recv_message().await?;
    ensure_eq!(next.message.as_str(), "next", "carl's next frame");
    ana.recv_message().await?;
    bo.recv_message().await?;

    let edited = Msg {
        message: "hello world".into(),
        edited_at: Some(e.edited_at),
        ..sent.clone()
    };
    let (late, j) = enter(&base, &room, "late", v2("late")).await?;
    ensure_eq!(
        j.backlog,
        vec![edited.clone(), next.clone()],
        "a joiner's backlog"
    );
    late.close().await?;
    let (late, j) = enter(&base, &room, "late-v1", json!({"name": "late-v1"})).await?;
    ensure_eq!(
        j.backlog.first(),
        Some(&edited),
        "a v1 backlog has the latest text too"
    );
    late.close().await?;
    for name in ["late", "late-v1"] {
        bo.expect_frame(Frame::Joined(name.into())).await?;
        bo.expect_frame(Frame::Quit(name.into())).await?;
    }
    ensure_eq!(
        newest_page(&mut bo).await?,
        vec![edited, next],
        "a history page"
    );
    Ok(())
}

/// Fast group (many frames from one address): bo cannot edit ana's message, nor can a second connection of ana's
/// with her name from her address; a v1 session is told edits need v2; bad shapes,
/// unknown seqs and empty text are refused; nothing changes.
pub async fn edits_by_anyone_else_or_of_the_wrong_shape_are_refused(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("edit-refused");
    let (mut ana, _) = enter(&base, &room, "ana", v2("ana")).await?;
    let (mut bo, _) = enter(&base, &room, "bo", v2("bo")).await?;
    let (mut ana2, _) = enter(&base, &room, "ana", v2("ana")).await?;
    let (mut carl, _) = enter(&base, &room, "carl", json!({"name": "carl"})).await?;
    ana.say("original").await?;
    let sent = ana.recv_message_past_presence().await?;
    for c in [&mut bo, &mut ana2, &mut carl] {
        c.recv_message_past_presence().await?;
    }

    edit(&mut bo, sent.seq, "bo was here").await?;
    bo.expect_error(NOT_YOURS).await?;
    edit(&mut ana2, sent.seq, "same name, other tab").await?;
    ana2.expect_error(NOT_YOURS).await?;
    edit(&mut carl, sent.seq, "v1").await?;
    carl.expect_error(NEEDS_V2).await?;
    let cases = [
        (json!({"edit": sent.seq}), SHAPE),
        (json!({"edit": {"seq": sent.seq}}), SHAPE),
        (json!({"edit": {"seq": -1, "message": "x"}}), SHAPE),
        (json!({"edit": {"seq": sent.seq, "message": 5}}), SHAPE),
        (
            json!({"edit": {"seq": sent.seq + 10, "message": "x"}}),
            NO_SUCH,
        ),
        (
            json!({"edit": {"seq": sent.seq, "message": " \n "}}),
            "Message is empty.",
        ),
    ];
    for (frame, error) in cases {
        ana.send_json(&frame).await?;
        ana.expect_error(error).await?;
    }
    ensure_eq!(
        newest_page(&mut bo).await?,
        vec![sent],
        "the message is unchanged"
    );
    // Nobody heard of any of it.
    ana.expect_silence(SILENCE).await?;
    Ok(())
}

/// Default group: a v2 client that left holding seq 2 resumes after message 1 was
/// edited and message 3 sent and edited: it gets `{"edited"}` for 1, then message 3
/// with its latest text, and `recovered: true`.
pub async fn a_resume_replays_the_edits_it_missed(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("edit-resume");
    let (mut ana, _) = enter(&base, &room, "ana", v2("ana")).await?;
    for text in ["one", "two"] {
        ana.say(text).await?;
    }
    let first = ana.recv_message().await?;
    ana.recv_message().await?;
    let (bo, j) = enter(&base, &room, "bo", v2("bo")).await?;
    let epoch = j.ready.epoch.clone();
    bo.close().await?;
    ana.expect_frame(Frame::Joined("bo".into())).await?;
    ana.expect_frame(Frame::Quit("bo".into())).await?;

    edit(&mut ana, first.seq, "one, edited").await?;
    let e1 = recv_edited(&mut ana).await?;
    ana.say("three").await?;
    let third = ana.recv_message().await?;
    edit(&mut ana, third.seq, "three, edited").await?;
    let e3 = recv_edited(&mut ana).await?;

    let hello = json!({"name": "bo", "v": 2, "resume": {"epoch": epoch, "seq": 2}});
    let (bo, j) = enter(&base, &room, "bo", hello).await?;
    ensure!(j.ready.recovered, "the resume recovers");
    ensure_eq!(j.edited, vec![e1], "the missed edit of a message it had");
    ensure_eq!(
        j.backlog,
        vec![Msg {
            message: "three, edited".into(),
            edited_at: Some(e3.edited_at),
            ..third
        }],
        "the gap, with its latest text"
    );
    bo.close().await
}

/// Identity group: a verified user's message is edited from another session of the
/// same user; another user, and an anonymous session named like the user, are refused.
pub async fn a_verified_users_message_is_edited_from_any_of_its_sessions(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("edit-user");
    let hello = |sub: &str| json!({"v": 2, "token": token::token(SECRET, sub, json!({}))});
    let (mut tab1, _) = enter(&base, &room, "u-ana", hello("u-ana")).await?;
    let (mut tab2, _) = enter(&base, &room, "u-ana", hello("u-ana")).await?;
    let (mut bo, _) = enter(&base, &room, "u-bo", hello("u-bo")).await?;
    tab1.say("from tab 1").await?;
    let sent = tab1.recv_message_past_presence().await?;
    tab2.recv_message_past_presence().await?;
    bo.recv_message_past_presence().await?;
    edit(&mut bo, sent.seq, "bo").await?;
    bo.expect_error(NOT_YOURS).await?;
    edit(&mut tab2, sent.seq, "from tab 2").await?;
    let e = recv_edited(&mut tab2).await?;
    ensure_eq!(e.message.as_str(), "from tab 2", "the edit");
    ensure_eq!(recv_edited(&mut tab1).await?, e.clone(), "tab 1 hears it");
    ensure_eq!(recv_edited(&mut bo).await?, e, "bo hears it");
    Ok(())
}

/// Tight group (`edit_window_secs` small): once the window is over, the author's edit
/// is refused and the message keeps its text.
pub async fn an_edit_after_the_window_is_refused(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("edit-late");
    let (mut ana, _) = enter(&base, &room, "ana", v2("ana")).await?;
    ana.say("final").await?;
    let sent = ana.recv_message().await?;
    // Past the window by a margin, whatever the machine's load: waiting longer only
    // makes the edit later.
    tokio::time::sleep(Duration::from_millis(tight::EDIT_WINDOW_SECS * 1000 + 500)).await;
    edit(&mut ana, sent.seq, "too late").await?;
    ana.expect_error(TOO_LATE).await?;
    ensure_eq!(
        newest_page(&mut ana).await?,
        vec![sent],
        "the message is unchanged"
    );
    Ok(())
}
