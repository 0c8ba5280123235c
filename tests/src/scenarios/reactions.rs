//! v2 reactions (docs/protocol.md, "Reactions"): a toggle reaches every v2 member as
//! the message's new counts and never a v1 one; backlogs, history and resumes carry the
//! counts; bad emoji and the per-message bounds are refused; a delete removes them.

use super::identity::enter;
use super::moderation::moderator_hello;
use crate::client::{Client, Frame, Msg};
use crate::harness::identity::MAX_REACTIONS_PER_MESSAGE;
use crate::harness::Ctx;
use crate::{bail, ensure, ensure_eq, Result};
use serde_json::{json, Value};

const EMOJI: &str =
    "A reaction must be one emoji: a single character (grapheme) of at most 16 bytes.";
const FULL: &str =
    "This message has as many different reactions as it may have (max_reactions_per_message).";

fn v2(name: &str) -> Value {
    json!({"name": name, "v": 2})
}

async fn react(c: &mut Client, seq: u64, emoji: &str) -> Result<()> {
    c.send_json(&json!({"react": {"seq": seq, "emoji": emoji}}))
        .await
}

/// The next frame, which must be a `reactions` one.
async fn recv_counts(c: &mut Client) -> Result<(u64, Value)> {
    match c.recv().await? {
        Frame::Reactions(seq, counts) => Ok((seq, counts)),
        other => bail!("expected a reactions frame, got {other:?}"),
    }
}

/// Default group: ana and bo (v2) react to ana's message; both hear every change,
/// carl (v1) none; the same reaction again takes it back; a joiner's backlog, a history
/// page and a resume carry the counts.
pub async fn reactions_toggle_and_every_v2_member_gets_the_counts(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("react");
    let (mut ana, _) = enter(&base, &room, "ana", v2("ana")).await?;
    let (mut bo, _) = enter(&base, &room, "bo", v2("bo")).await?;
    let (mut carl, _) = enter(&base, &room, "carl", json!({"name": "carl"})).await?;
    ana.say("react to me").await?;
    let sent = ana.recv_message_past_presence().await?;
    bo.recv_message_past_presence().await?;
    carl.recv_message().await?;
    // bo leaves holding everything; the counts change while he is away.
    let (gone, j) = enter(&base, &room, "eve", v2("eve")).await?;
    let epoch = j.ready.epoch;
    gone.close().await?;
    for c in [&mut ana, &mut bo, &mut carl] {
        c.expect_frame(Frame::Joined("eve".into())).await?;
        c.expect_frame(Frame::Quit("eve".into())).await?;
    }

    // Who reacts (false: bo, true: ana), with what, and the counts everyone then gets.
    let steps = [
        (false, "👍", json!({"👍": 1})),
        (true, "👍", json!({"👍": 2})),
        (true, "🎉", json!({"👍": 2, "🎉": 1})),
        (false, "👍", json!({"👍": 1, "🎉": 1})),
    ];
    for (by_ana, emoji, expected) in steps {
        let who = if by_ana { &mut ana } else { &mut bo };
        react(who, sent.seq, emoji).await?;
        for c in [&mut ana, &mut bo] {
            ensure_eq!(
                recv_counts(c).await?,
                (sent.seq, expected.clone()),
                "counts"
            );
        }
    }
    // carl (v1) heard none of it: his next frame is the next message.
    ana.say("next").await?;
    let next = carl.recv_message().await?;
    ensure_eq!(next.message.as_str(), "next", "carl's next frame");
    ana.recv_message().await?;
    bo.recv_message().await?;

    let counts = json!({"👍": 1, "🎉": 1});
    let (late, j) = enter(&base, &room, "late", v2("late")).await?;
    ensure_eq!(
        j.backlog.first().and_then(|m| m.reactions.clone()),
        Some(counts.clone()),
        "a joiner's backlog"
    );
    ensure_eq!(
        j.backlog.get(1).map(|m| m.reactions.is_none()),
        Some(true),
        "none"
    );
    late.close().await?;
    let hello = json!({"name": "eve", "v": 2, "resume": {"epoch": epoch, "seq": sent.seq}});
    let (back, j) = enter(&base, &room, "eve", hello).await?;
    ensure!(j.ready.recovered, "the resume recovers");
    ensure_eq!(
        j.reacted,
        vec![(sent.seq, counts.clone())],
        "the resume's counts"
    );
    back.close().await?;
    for name in ["late", "eve"] {
        bo.expect_frame(Frame::Joined(name.into())).await?;
        bo.expect_frame(Frame::Quit(name.into())).await?;
    }
    bo.ask_history(json!({"limit": 5})).await?;
    let page: Vec<Msg> = bo.recv_page().await?.history;
    ensure_eq!(page[0].reactions.clone(), Some(counts), "a history page");
    Ok(())
}

/// Identity group (max_reactions_per_message small): a bad emoji, a missing message
/// and one emoji too many are refused; a moderator's delete takes the counts away.
pub async fn bad_reactions_are_refused_and_a_delete_removes_them(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("react-bounds");
    let (mut m, _) = enter(&base, &room, "Mod", moderator_hello(&room, true)).await?;
    let (mut ana, _) = enter(&base, &room, "ana", v2("ana")).await?;
    m.expect_frame(Frame::Joined("ana".into())).await?;
    ana.say("bounded").await?;
    let sent = ana.recv_message().await?;
    m.recv_message().await?;
    for bad in ["", " ", "👍👍", "ab", "👨‍👩‍👧‍👦"] {
        react(&mut ana, sent.seq, bad).await?;
        ana.expect_error(EMOJI).await?;
    }
    react(&mut ana, sent.seq + 5, "👍").await?;
    ana.expect_error("There is no message with that seq to react to.")
        .await?;
    let emoji = ["😀", "😁", "😂", "🤣", "😃", "😄", "😅", "😆"];
    ensure!(
        MAX_REACTIONS_PER_MESSAGE < emoji.len(),
        "enough emoji for the test"
    );
    for e in &emoji[..MAX_REACTIONS_PER_MESSAGE] {
        react(&mut ana, sent.seq, e).await?;
        recv_counts(&mut ana).await?;
        recv_counts(&mut m).await?;
    }
    react(&mut ana, sent.seq, emoji[MAX_REACTIONS_PER_MESSAGE]).await?;
    ana.expect_error(FULL).await?;

    m.send_json(&json!({"delete": sent.seq})).await?;
    m.expect_frame(Frame::Deleted(sent.seq)).await?;
    ana.expect_frame(Frame::Deleted(sent.seq)).await?;
    react(&mut ana, sent.seq, "👍").await?;
    ana.expect_error("There is no message with that seq to react to.")
        .await?;
    let (late, j) = enter(&base, &room, "late", v2("late")).await?;
    ensure!(j.backlog.is_empty(), "nothing left: {:?}", j.backlog);
    late.close().await
}
