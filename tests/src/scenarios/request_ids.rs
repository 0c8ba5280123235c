//! Typed v2 errors (`"code"`) and request ids (`"id"` → `"re"`), docs/protocol.md
//! "Typed errors and request ids". The client checks every frame against its session's
//! protocol: a v1 session that got a `code`, a `re` or an `ok` frame fails the scenario.

use super::identity::enter;
use crate::client::{Client, Frame, Join, Protocol, Tags};
use crate::harness::identity::SECRET;
use crate::harness::Ctx;
use crate::{bail, ensure, ensure_eq, token, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;

const MESSAGE_EMPTY: &str = "Message is empty.";
const HISTORY_NEEDS_V2: &str = "History needs protocol v2: send \"v\": 2 in the hello.";
const ID_INVALID: &str = "\"id\" must be 1 to 64 letters, digits, \"_\" or \"-\".";
const NAME_NOT_STRING: &str = "Name must be a string.";
const NOT_MODERATOR: &str = "Only moderators may delete, kick or mute.";
const NO_SUCH_MESSAGE: &str = "There is no message with that seq to delete.";

async fn join_v2(base: &str, room: &str, name: &str, batch: bool) -> Result<(Client, Join)> {
    let mut c = Client::connect(base, room, name).await?;
    let j = c
        .hello_with(&json!({"name": name, "v": 2, "batch": batch}), name)
        .await?;
    Ok((c, j))
}

/// The next frame and its tags.
async fn tagged(c: &mut Client) -> Result<(Frame, Tags)> {
    let f = c.recv().await?;
    Ok((f, c.last_tags().clone()))
}

fn tags(code: Option<&str>, re: Option<&str>) -> Tags {
    Tags {
        code: code.map(str::to_owned),
        re: re.map(str::to_owned),
    }
}

/// A v2 session's error frames carry the error's code (a refused v2 hello's too); a v1
/// session's are exactly as before, and its ids are ignored: no `re`, no `ok`.
pub async fn request_ids_and_codes_are_v2_only_and_v1_errors_unchanged(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("typed-errors");
    let (mut old, _) = super::join(&base, &room, "old").await?;
    let (mut new, _) = join_v2(&base, &room, "new", false).await?;
    old.expect_frame(Frame::Joined("new".into())).await?;

    new.send_json(&json!({"message": " "})).await?;
    ensure_eq!(
        tagged(&mut new).await?,
        (
            Frame::Error(MESSAGE_EMPTY.into()),
            tags(Some("message_empty"), None)
        ),
        "a v2 error without an id"
    );
    // v1: the same error, without code or re; an id on a message is ignored.
    old.send_json(&json!({"message": " ", "id": "e1"})).await?;
    ensure_eq!(
        tagged(&mut old).await?,
        (Frame::Error(MESSAGE_EMPTY.into()), Tags::default()),
        "a v1 error"
    );
    ensure_eq!(
        old.last_raw(),
        r#"{"error":"Message is empty."}"#,
        "v1 bytes"
    );
    old.send_json(&json!({"history": {}, "id": "h1"})).await?;
    old.expect_error(HISTORY_NEEDS_V2).await?;
    old.send_json(&json!({"message": "from v1", "id": "not valid"}))
        .await?;
    let m = old.recv_message().await?;
    ensure_eq!(m.message, "from v1", "a v1 message with any id is sent");
    ensure_eq!(old.last_tags(), &Tags::default(), "no re on its chat frame");
    let seen = new.recv_message().await?;
    ensure_eq!(seen.seq, m.seq, "the v2 member sees it");
    ensure_eq!(new.last_tags(), &Tags::default(), "a broadcast has no re");

    // Refused hellos: the code when the hello asked for v2, never otherwise.
    for (hello, v2) in [
        (json!({"v": 2, "name": 7}), true),
        (json!({"name": 7}), false),
    ] {
        let mut c = Client::connect(&base, &room, "refused").await?;
        c.set_protocol(Protocol { v2, batch: false });
        c.send_json(&hello).await?;
        let code = v2.then_some("name_not_string");
        ensure_eq!(
            tagged(&mut c).await?,
            (Frame::Error(NAME_NOT_STRING.into()), tags(code, None)),
            "refused hello {hello}"
        );
        c.expect_close(1008, None).await?;
    }
    new.close().await?;
    old.close().await
}

/// Every request with a valid id gets exactly one answer echoing it, to its sender
/// only: a page, an error, or `{"ok": true}` (with the seq for a message, a retry's
/// too). A malformed id gets `id_invalid` without `re`, and its request is not carried
/// out. A history request with an id is the last one, as a marker: every answer has
/// come before it.
pub async fn request_ids_are_each_answered_exactly_once(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("request-ids");
    let (mut a, _) = join_v2(&base, &room, "ana", false).await?;
    let (mut b, _) = super::join(&base, &room, "bo").await?;
    a.expect_frame(Frame::Joined("bo".into())).await?;

    let requests: [(&str, Value); 8] = [
        ("m1", json!({"message": "one", "cid": "c-1", "id": "m1"})),
        ("h1", json!({"history": {"limit": 10}, "id": "h1"})),
        ("p1", json!({"members": {}, "id": "p1"})),
        ("e1", json!({"history": {"limit": 0}, "id": "e1"})),
        ("e2", json!({"delete": 1, "id": "e2"})),
        // Malformed ids: refused, nothing stored or broadcast.
        ("", json!({"message": "never", "id": "a b"})),
        ("", json!({"message": "never", "id": 7})),
        // A retry of c-1 with a new id: the original, and the same seq.
        ("m2", json!({"message": "one", "cid": "c-1", "id": "m2"})),
    ];
    for (_, r) in &requests {
        a.send_json(r).await?;
    }
    a.send_json(&json!({"history": {"limit": 10}, "id": "end"}))
        .await?;

    let mut answers: BTreeMap<String, Vec<(Frame, Tags)>> = BTreeMap::new();
    let mut unanswered = Vec::new();
    loop {
        let (f, t) = tagged(&mut a).await?;
        ensure!(
            answers.values().map(Vec::len).sum::<usize>() + unanswered.len() < 50,
            "too many frames"
        );
        match &t.re {
            Some(re) => {
                answers
                    .entry(re.clone())
                    .or_default()
                    .push((f.clone(), t.clone()));
                if re == "end" {
                    break;
                }
            }
            None => unanswered.push((f, t)),
        }
    }
    for id in ["m1", "h1", "p1", "e1", "e2", "m2", "end"] {
        let got = answers.get(id).map_or(0, Vec::len);
        ensure_eq!(got, 1, "answers to {id}: {answers:?}");
    }
    ensure_eq!(answers.len(), 7, "no other re: {answers:?}");
    let one = |id: &str| answers[id][0].clone();
    let Frame::Ok(Some(seq)) = one("m1").0 else {
        bail!("m1: expected ok with a seq, got {:?}", one("m1"));
    };
    ensure_eq!(one("m2").0, Frame::Ok(Some(seq)), "the retry's answer");
    match one("h1").0 {
        Frame::History(p) => ensure_eq!(p.seqs(), vec![seq], "h1's page"),
        other => bail!("h1: expected a page, got {other:?}"),
    }
    match one("p1").0 {
        Frame::Members(p) => ensure_eq!(p.count, 1, "p1's count"),
        other => bail!("p1: expected a member page, got {other:?}"),
    }
    ensure_eq!(one("e1").1.code, Some("history_limit".to_owned()), "e1");
    ensure_eq!(one("e2").1.code, Some("not_moderator".to_owned()), "e2");
    ensure_eq!(one("e2").0, Frame::Error(NOT_MODERATOR.into()), "e2");
    match one("end").0 {
        Frame::History(p) => ensure_eq!(p.seqs(), vec![seq], "nothing else was stored"),
        other => bail!("end: expected a page, got {other:?}"),
    }
    // Without re: the chat frame (sent, then resent to the retry) and the two refusals.
    let invalid = (
        Frame::Error(ID_INVALID.into()),
        tags(Some("id_invalid"), None),
    );
    ensure_eq!(unanswered.len(), 4, "frames without re: {unanswered:?}");
    ensure!(
        matches!(&unanswered[0].0, Frame::Message(m) if m.seq == seq),
        "the chat frame first: {unanswered:?}"
    );
    ensure_eq!(unanswered[1], invalid, "a bad id");
    ensure_eq!(unanswered[2], invalid, "a bad id");
    ensure!(
        matches!(&unanswered[3].0, Frame::Message(m) if m.seq == seq),
        "the retry's original: {unanswered:?}"
    );
    // The v1 member got the one message and nothing of the answers.
    let m = b.recv_message().await?;
    ensure_eq!(m.seq, seq, "bo's message");
    b.say("marker").await?;
    ensure_eq!(b.recv_message().await?.message, "marker", "bo's next frame");
    b.close().await?;
    a.close().await
}

/// A batched session's answers keep their place among its frames: its own message's
/// chat frame, then its ok; frames of others that were pending before a request, then
/// the answer.
pub async fn request_ids_of_a_batch_session_are_answered_in_order(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("request-ids-batch");
    let (mut a, _) = join_v2(&base, &room, "ana", true).await?;
    let (mut b, _) = join_v2(&base, &room, "bo", false).await?;
    a.expect_frame(Frame::Joined("bo".into())).await?;
    b.say("from bo").await?;
    b.recv_message().await?;
    a.send_json(&json!({"message": "mine", "id": "m"})).await?;
    a.send_json(&json!({"history": {"limit": 1}, "id": "h"}))
        .await?;
    let m = a.recv_message().await?;
    ensure_eq!(m.message, "from bo", "bo's message first");
    let m = a.recv_message().await?;
    ensure_eq!(m.message, "mine", "then its own");
    ensure_eq!(
        tagged(&mut a).await?,
        (Frame::Ok(Some(m.seq)), tags(None, Some("m"))),
        "then its answer"
    );
    let (page, t) = tagged(&mut a).await?;
    ensure_eq!(t, tags(None, Some("h")), "the page answers h");
    match page {
        Frame::History(p) => ensure_eq!(p.seqs(), vec![m.seq], "the page"),
        other => bail!("expected a page, got {other:?}"),
    }
    b.close().await?;
    a.close().await
}

/// A moderator's delete with an id: the `deleted` broadcast, then `{"ok": true}`; a
/// refused one its error with `re`.
pub async fn request_ids_of_a_moderator_get_ok_or_their_error(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("request-ids-mod");
    let t = token::token(
        SECRET,
        "u-mod",
        json!({"name": "Mod", "role": "moderator", "room": room}),
    );
    let (mut m, _) = enter(&base, &room, "Mod", json!({"v": 2, "token": t})).await?;
    let (mut ana, _) = join_v2(&base, &room, "ana", false).await?;
    m.expect_frame(Frame::Joined("ana".into())).await?;
    ana.say("spam").await?;
    let spam = ana.recv_message().await?;
    m.recv_message().await?;
    m.send_json(&json!({"delete": spam.seq, "id": "d1"}))
        .await?;
    ensure_eq!(
        tagged(&mut m).await?,
        (Frame::Deleted(spam.seq), Tags::default()),
        "the broadcast"
    );
    ensure_eq!(
        tagged(&mut m).await?,
        (Frame::Ok(None), tags(None, Some("d1"))),
        "the answer"
    );
    ensure_eq!(
        tagged(&mut ana).await?,
        (Frame::Deleted(spam.seq), Tags::default()),
        "ana sees the deletion only"
    );
    m.send_json(&json!({"delete": spam.seq, "id": "d2"}))
        .await?;
    ensure_eq!(
        tagged(&mut m).await?,
        (
            Frame::Error(NO_SUCH_MESSAGE.into()),
            tags(Some("no_such_message"), Some("d2"))
        ),
        "a second delete"
    );
    ana.send_json(&json!({"delete": spam.seq, "id": "d3"}))
        .await?;
    ensure_eq!(
        tagged(&mut ana).await?,
        (
            Frame::Error(NOT_MODERATOR.into()),
            tags(Some("not_moderator"), Some("d3"))
        ),
        "a non-moderator's delete"
    );
    ana.close().await?;
    m.close().await
}
