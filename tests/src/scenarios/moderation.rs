//! Moderation by sessions whose token has `role: moderator`: delete (tombstones, live
//! `{"deleted"}` to v2, gone from backlogs, exact v2 resumes), kick (4001 "Kicked",
//! rejoins refused for `secs`), mute; refusals for everyone else; the bounds; and
//! durability across a restart.

use super::identity::{enter, refused};
use super::SILENCE;
use crate::client::{Client, Frame, Join, Msg, Options};
use crate::harness::identity::{
    MAX_MODERATION_SECS, MAX_RESTRICTED_USERS, SECRET, SIGNED_RATE_BURST,
};
use crate::harness::{Ctx, InstanceSpec};
use crate::{ensure, ensure_eq, token, Result};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::net::Ipv4Addr;
use std::time::Duration;

const NOT_MODERATOR: &str = "Only moderators may delete, kick or mute.";
const NO_SUCH_MESSAGE: &str = "There is no message with that seq to delete.";
const KICKED: &str = "A moderator removed you from this room.";
const STILL_KICKED: &str = "A moderator removed you from this room; try again later.";
const MUTED: &str = "You are muted in this room.";
const NAME_OF_VERIFIED: &str = "That name belongs to a verified member.";

/// A moderator of `room` (its token names the room, as a moderator's must).
pub(crate) fn moderator_hello(room: &str, v2: bool) -> Value {
    let t = token::token(
        SECRET,
        "u-mod",
        json!({"name": "Mod", "role": "moderator", "room": room}),
    );
    if v2 {
        json!({"v": 2, "token": t})
    } else {
        json!({"token": t})
    }
}

fn user_hello(sub: &str, v2: bool) -> Value {
    let t = token::token(SECRET, sub, json!({}));
    if v2 {
        json!({"v": 2, "token": t})
    } else {
        json!({"token": t})
    }
}

/// Each of `watchers` sees `name` join and quit (a session that came and went).
async fn came_and_went(watchers: &mut [&mut Client], name: &str) -> Result<()> {
    for c in watchers.iter_mut() {
        c.expect_frame(Frame::Joined(name.into())).await?;
        c.expect_frame(Frame::Quit(name.into())).await?;
    }
    Ok(())
}

/// Reads `n` chat messages.
async fn messages(c: &mut Client, n: usize) -> Result<Vec<Msg>> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(c.recv_message().await?);
    }
    Ok(out)
}

/// Delete tombstones a message: v2 sessions get `{"deleted": seq}` (a v1 session
/// nothing), later backlogs leave it out for v1 and v2, a v2 client resuming across
/// the deletion learns of it (so its resume stays exact), and a second delete of it is
/// an error. A v1 client in the room keeps working throughout.
pub async fn a_moderator_deletes_a_message_for_everyone(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("delete");
    let (mut m, _) = enter(&base, &room, "Mod", moderator_hello(&room, true)).await?;
    let (mut ana, _) = enter(&base, &room, "ana", json!({"name": "ana", "v": 2})).await?;
    let (mut carl, _) = enter(&base, &room, "carl", json!({"name": "carl"})).await?;
    m.expect_frame(Frame::Joined("ana".into())).await?;
    m.expect_frame(Frame::Joined("carl".into())).await?;
    ana.expect_frame(Frame::Joined("carl".into())).await?;
    for text in ["keep", "abuse", "keep too"] {
        carl.say(text).await?;
    }
    let sent = messages(&mut carl, 3).await?;
    ensure_eq!(messages(&mut ana, 3).await?, sent, "ana's copy");
    ensure_eq!(messages(&mut m, 3).await?, sent, "the moderator's copy");
    let epoch = {
        // A v2 client that held everything up to seq 3, then left.
        let (c, j) = enter(&base, &room, "eve", json!({"name": "eve", "v": 2})).await?;
        c.close().await?;
        j.ready.epoch
    };
    for c in [&mut m, &mut ana, &mut carl] {
        c.expect_frame(Frame::Joined("eve".into())).await?;
        c.expect_frame(Frame::Quit("eve".into())).await?;
    }

    m.send_json(&json!({"delete": sent[1].seq})).await?;
    m.expect_frame(Frame::Deleted(sent[1].seq)).await?;
    ana.expect_frame(Frame::Deleted(sent[1].seq)).await?;
    carl.expect_silence(SILENCE).await?;

    let kept = vec![sent[0].clone(), sent[2].clone()];
    let (c, j) = enter(&base, &room, "late-v1", json!({"name": "late-v1"})).await?;
    ensure_eq!(j.backlog, kept, "a v1 backlog without the deleted message");
    c.close().await?;
    came_and_went(&mut [&mut m, &mut ana, &mut carl], "late-v1").await?;
    let (c, j) = enter(&base, &room, "late-v2", json!({"name": "late-v2", "v": 2})).await?;
    ensure_eq!(j.backlog, kept, "a v2 backlog without the deleted message");
    ensure_eq!(
        j.deleted,
        Vec::<u64>::new(),
        "a fresh backlog has no deleted frames"
    );
    c.close().await?;
    came_and_went(&mut [&mut m, &mut ana, &mut carl], "late-v2").await?;

    // Resumes: from 3 (held the message) and from 1 (it was in the gap).
    let resume = |seq: u64, v2: bool| {
        let mut h = json!({"name": "back", "resume": {"epoch": epoch, "seq": seq}});
        if v2 {
            h["v"] = json!(2);
        }
        h
    };
    let (c, j) = enter(&base, &room, "back", resume(3, true)).await?;
    ensure!(j.ready.recovered, "the v2 resume from 3 recovers");
    ensure_eq!(
        j.history,
        vec![Err(sent[1].seq)],
        "what the v2 resume from 3 gets"
    );
    c.close().await?;
    let (c, j) = enter(&base, &room, "back", resume(1, true)).await?;
    ensure!(j.ready.recovered, "the v2 resume from 1 recovers");
    ensure_eq!(
        j.history,
        vec![Err(sent[1].seq), Ok(sent[2].clone())],
        "what the v2 resume from 1 gets"
    );
    c.close().await?;
    let (c, j) = enter(&base, &room, "back", resume(1, false)).await?;
    ensure!(j.ready.recovered, "the v1 resume from 1 recovers");
    ensure_eq!(
        j.backlog,
        vec![sent[2].clone()],
        "the v1 resume skips the tombstone"
    );
    c.close().await?;
    for _ in 0..3 {
        came_and_went(&mut [&mut m, &mut ana, &mut carl], "back").await?;
    }

    m.send_json(&json!({"delete": sent[1].seq})).await?;
    m.expect_error(NO_SUCH_MESSAGE).await?;
    m.send_json(&json!({"delete": 999})).await?;
    m.expect_error(NO_SUCH_MESSAGE).await?;
    carl.say("v1 still chats").await?;
    let last = carl.recv_message().await?;
    ensure_eq!(last.seq, 4, "the next seq after a deletion");
    for c in [m, ana, carl] {
        c.close().await?;
    }
    Ok(())
}

/// A kick closes every session of the user with an error and 4001 "Kicked" (the others
/// see them quit), and refuses the user's hellos the same way until its `secs` are
/// over; a kick without `secs` lifts that.
pub async fn a_moderator_kicks_a_user(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("kick");
    let (mut m, _) = enter(&base, &room, "Mod", moderator_hello(&room, false)).await?;
    let (mut by, _) = enter(&base, &room, "bystander", json!({"name": "bystander"})).await?;
    m.expect_frame(Frame::Joined("bystander".into())).await?;
    let (mut v1, _) = enter(&base, &room, "u-vic", user_hello("u-vic", false)).await?;
    let (mut v2, _) = enter(&base, &room, "u-vic", user_hello("u-vic", true)).await?;
    for c in [&mut m, &mut by] {
        c.expect_frame(Frame::Joined("u-vic".into())).await?;
        c.expect_frame(Frame::Joined("u-vic".into())).await?;
    }
    v1.expect_frame(Frame::Joined("u-vic".into())).await?;
    m.send_json(&json!({"kick": {"user": "u-vic", "secs": 300}}))
        .await?;
    for c in [&mut v1, &mut v2] {
        c.expect_error(KICKED).await?;
        c.expect_close(4001, Some("Kicked")).await?;
    }
    for c in [&mut m, &mut by] {
        c.expect_frame(Frame::Quit("u-vic".into())).await?;
        c.expect_frame(Frame::Quit("u-vic".into())).await?;
    }
    let mut again = Client::connect(&base, &room, "rejoin").await?;
    again.send_hello(&user_hello("u-vic", true)).await?;
    again.expect_error(STILL_KICKED).await?;
    again.expect_close(4001, Some("Kicked")).await?;
    by.expect_silence(SILENCE).await?;

    m.send_json(&json!({"kick": {"user": "u-vic"}})).await?;
    let (back, _) = enter(&base, &room, "u-vic", user_hello("u-vic", false)).await?;
    m.expect_frame(Frame::Joined("u-vic".into())).await?;
    back.close().await?;
    m.expect_frame(Frame::Quit("u-vic".into())).await?;
    for c in [m, by] {
        c.close().await?;
    }
    Ok(())
}

/// A mute refuses the user's messages with an error (nothing is broadcast), holds
/// across the user's reconnects, and `secs: 0` lifts it.
pub async fn a_moderator_mutes_a_user(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("mute");
    let (mut m, _) = enter(&base, &room, "Mod", moderator_hello(&room, true)).await?;
    let (mut loud, _) = enter(&base, &room, "u-loud", user_hello("u-loud", false)).await?;
    let (mut listener, _) = enter(&base, &room, "listener", json!({"name": "listener"})).await?;
    m.expect_frame(Frame::Joined("u-loud".into())).await?;
    m.expect_frame(Frame::Joined("listener".into())).await?;
    loud.expect_frame(Frame::Joined("listener".into())).await?;
    m.send_json(&json!({"mute": {"user": "u-loud", "secs": 600}}))
        .await?;
    // The mute is in place once the moderator's next frame is answered (in order).
    m.say("muted them").await?;
    let said = m.recv_message().await?;
    ensure_eq!(loud.recv_message().await?, said, "loud hears the moderator");
    ensure_eq!(listener.recv_message().await?, said, "listener too");

    loud.say("SHOUT").await?;
    loud.expect_error(MUTED).await?;
    listener.expect_silence(SILENCE).await?;
    loud.close().await?;
    let (mut loud, _) = enter(&base, &room, "u-loud", user_hello("u-loud", true)).await?;
    for c in [&mut m, &mut listener] {
        c.expect_frame(Frame::Quit("u-loud".into())).await?;
        c.expect_frame(Frame::Joined("u-loud".into())).await?;
    }
    loud.say("SHOUT again").await?;
    loud.expect_error(MUTED).await?;

    m.send_json(&json!({"mute": {"user": "u-loud", "secs": 0}}))
        .await?;
    m.say("unmuted").await?;
    let said = m.recv_message().await?;
    loud.say("thanks").await?;
    let mut got = messages(&mut loud, 2).await?;
    ensure_eq!(got.remove(0), said, "the moderator's message first");
    ensure_eq!(got[0].message, "thanks", "loud speaks again");
    ensure_eq!(got[0].user.as_deref(), Some("u-loud"), "as its user");
    for c in [loud, m, listener] {
        c.close().await?;
    }
    Ok(())
}

/// Anonymous and verified non-moderators sending moderator frames get an error, the
/// socket stays open, and nothing happens.
pub async fn non_moderators_are_refused_and_stay_open(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("not-mod");
    let (mut anon, _) = enter(&base, &room, "anon", json!({"name": "anon"})).await?;
    let (mut user, _) = enter(&base, &room, "u-plain", user_hello("u-plain", true)).await?;
    anon.expect_frame(Frame::Joined("u-plain".into())).await?;
    anon.say("hello").await?;
    let hello = anon.recv_message().await?;
    ensure_eq!(
        user.recv_message().await?,
        hello,
        "user gets anon's message"
    );
    for c in [&mut anon, &mut user] {
        for frame in [
            json!({"delete": hello.seq}),
            json!({"kick": {"user": "u-plain", "secs": 60}}),
            json!({"mute": {"user": "u-plain", "secs": 60}}),
            json!({"mute": "not even the right shape"}),
        ] {
            c.send_json(&frame).await?;
            c.expect_error(NOT_MODERATOR).await?;
        }
    }
    user.say("still here").await?;
    let m = user.recv_message().await?;
    ensure_eq!(anon.recv_message().await?, m, "nothing was kicked or muted");
    let (late, j) = enter(&base, &room, "late", json!({"name": "late"})).await?;
    ensure_eq!(j.backlog.len(), 2, "nothing was deleted");
    for c in [late, user, anon] {
        c.close().await?;
    }
    Ok(())
}

/// The bounds of moderation answer with errors and keep the socket open: `secs` over
/// `max_moderation_secs`, more users kicked or muted at once than
/// `max_restricted_users` (lifting one makes room), and malformed frames.
pub async fn moderation_bounds_answer_with_errors(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("mod-bounds");
    let (mut m, _) = enter(&base, &room, "Mod", moderator_hello(&room, false)).await?;
    let over = MAX_MODERATION_SECS + 1;
    m.send_json(&json!({"mute": {"user": "u1", "secs": over}}))
        .await?;
    m.expect_error("\"secs\" is longer than this server allows.")
        .await?;
    for i in 1..=MAX_RESTRICTED_USERS {
        m.send_json(&json!({"mute": {"user": format!("u{i}"), "secs": MAX_MODERATION_SECS}}))
            .await?;
    }
    let one_more = json!({"kick": {"user": "u-extra", "secs": 60}});
    m.send_json(&one_more).await?;
    m.expect_error("Too many users are kicked or muted in this room already.")
        .await?;
    m.send_json(&json!({"mute": {"user": "u1", "secs": 0}}))
        .await?;
    m.send_json(&one_more).await?;
    let shape = "Expected {\"kick\": {\"user\": \"<user id>\", \"secs\": 300}} or {\"mute\": {\"user\": \"<user id>\", \"secs\": 600}}.";
    for bad in [
        json!({"mute": {"user": "u1"}}),
        json!({"kick": {"user": 7}}),
        json!({"kick": {"user": "x".repeat(65)}}),
        json!({"kick": {"user": "u1", "secs": -1}}),
    ] {
        m.send_json(&bad).await?;
        m.expect_error(shape).await?;
    }
    m.send_json(&json!({"delete": "1"})).await?;
    m.expect_error("\"delete\" must be the seq of a message, like {\"delete\": 17}.")
        .await?;
    // Every refusal above was answered; the one allowed kick was not.
    m.say("still open").await?;
    ensure_eq!(
        m.recv_message().await?.message,
        "still open",
        "the socket stays open"
    );
    m.close().await
}

/// Signed group (burst 3, no refill): a refused moderator frame costs a rate-limit
/// token like any frame, so a non-moderator cannot probe for free.
pub async fn a_refused_moderator_frame_costs_a_rate_limit_token(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("mod-token");
    let (mut c, _) = enter(&base, &room, "u-probe", user_hello("u-probe", true)).await?;
    for _ in 0..SIGNED_RATE_BURST {
        c.send_json(&json!({"delete": 1})).await?;
        c.expect_error(NOT_MODERATOR).await?;
    }
    c.say("now?").await?;
    c.expect_error("Rate limited; slow down.").await?;
    c.expect_silence(SILENCE).await?;
    c.close().await
}

/// Kicks, mutes and tombstones are stored with the room: after a restart of the
/// backend on the same data, the kicked user is still refused, the muted one still
/// muted, and the deleted message still gone.
pub async fn kicks_mutes_and_deletions_survive_a_restart(ctx: Ctx) -> Result<()> {
    let spec = InstanceSpec::with(&[("rate_burst", "1000000"), ("rate_per_sec", "1000000")])
        .with_secret(SECRET);
    let instance = ctx.start_own("moderation-restart", spec).await?;
    let base = instance.base_url();
    let room = ctx.room("mod-restart");
    let (mut m, _) = enter(&base, &room, "Mod", moderator_hello(&room, true)).await?;
    m.say("gone soon").await?;
    let doomed = m.recv_message().await?;
    m.say("stays").await?;
    let kept = m.recv_message().await?;
    m.send_json(&json!({"delete": doomed.seq})).await?;
    m.expect_frame(Frame::Deleted(doomed.seq)).await?;
    m.send_json(&json!({"kick": {"user": "u-vic", "secs": 3600}}))
        .await?;
    m.send_json(&json!({"mute": {"user": "u-loud", "secs": 3600}}))
        .await?;
    m.say("done").await?;
    let done = m.recv_message().await?;

    instance.restart().await?;
    let base = instance.base_url();
    let mut vic = Client::connect(&base, &room, "u-vic").await?;
    vic.send_json(&user_hello("u-vic", false)).await?;
    vic.expect_error(STILL_KICKED).await?;
    vic.expect_close(4001, Some("Kicked")).await?;
    let (mut loud, j) = enter(&base, &room, "u-loud", user_hello("u-loud", false)).await?;
    ensure_eq!(
        j.backlog,
        vec![kept, done],
        "the deleted message stays gone"
    );
    loud.say("after the restart").await?;
    loud.expect_error(MUTED).await?;
    loud.close().await
}

/// Verification and mutes hold when the room is evicted from memory with its sockets
/// open (hibernation): a hello sent on a socket opened before the eviction wakes the
/// room, and its token, bound to the room by name, still verifies (the Durable Object
/// knows its room id when a socket wakes it); a mute given before the eviction still
/// holds for the session that was there.
pub async fn identity_and_mutes_survive_hibernation(ctx: Ctx) -> Result<()> {
    let backend = ctx.backend();
    let spec = InstanceSpec {
        hibernate: true,
        ..InstanceSpec::with(&[
            ("rate_burst", "1000000"),
            ("rate_per_sec", "1000000"),
            // The socket that waits for the eviction without a hello must outlive it.
            ("hello_timeout_ms", "120000"),
        ])
        .with_secret(SECRET)
    };
    let instance = ctx.start_own("moderation-hibernation", spec).await?;
    let base = instance.base_url();
    let room = ctx.room("mod-hibernate");
    let (mut m, _) = enter(&base, &room, "Mod", moderator_hello(&room, true)).await?;
    let (mut loud, _) = enter(&base, &room, "u-loud", user_hello("u-loud", false)).await?;
    m.expect_frame(Frame::Joined("u-loud".into())).await?;
    m.send_json(&json!({"mute": {"user": "u-loud", "secs": 600}}))
        .await?;
    m.say("before").await?;
    let before = m.recv_message().await?;
    ensure_eq!(
        loud.recv_message().await?,
        before,
        "loud hears the moderator"
    );
    let mut late = Client::connect(&base, &room, "late").await?;

    let mark = instance.logs().mark();
    backend.await_eviction(&instance, mark).await?;
    let mark = instance.logs().mark();

    let bound = token::token(SECRET, "u-late", json!({"room": room}));
    let j = late
        .hello_with(&json!({"v": 2, "token": bound}), "u-late")
        .await?;
    ensure_eq!(
        j.ready.user.as_deref(),
        Some("u-late"),
        "verified after the eviction"
    );
    backend.confirm_restored(&instance, mark, 3).await?;
    for c in [&mut m, &mut loud] {
        c.expect_frame(Frame::Joined("u-late".into())).await?;
    }
    loud.say("still muted?").await?;
    loud.expect_error(MUTED).await?;
    late.expect_silence(SILENCE).await?;
    for c in [late, loud, m] {
        c.close().await?;
    }
    Ok(())
}

/// Identity group, both backends: a moderator acting in a private room is audited under
/// the room's tag (`private:` and the first 8 hex digits of the SHA-256 of its id),
/// and no log line of the backend holds the id itself, the room's only secret.
pub async fn a_moderator_in_a_private_room_is_audited_under_its_tag(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let logs = ctx.instance().logs().clone();
    let mark = logs.mark();
    let id = super::create_private_room(&base).await?;
    let digest = Sha256::digest(id.as_bytes());
    let tag: String = std::iter::once("private:".to_owned())
        .chain(digest.iter().take(4).map(|b| format!("{b:02x}")))
        .collect();
    let t = token::token(
        SECRET,
        "u-mod",
        json!({"name": "Mod", "role": "moderator", "room": id}),
    );
    let (mut m, _) = enter(&base, &id, "Mod", json!({"v": 2, "token": t})).await?;
    let (mut carl, _) = enter(&base, &id, "carl", json!({"name": "carl"})).await?;
    m.expect_frame(Frame::Joined("carl".into())).await?;
    carl.say("to be deleted").await?;
    let said = carl.recv_message().await?;
    ensure_eq!(m.recv_message().await?, said, "the moderator's copy");
    m.send_json(&json!({"delete": said.seq})).await?;
    m.expect_frame(Frame::Deleted(said.seq)).await?;
    m.send_json(&json!({"mute": {"user": "u-someone", "secs": 60}}))
        .await?;
    // The audit lines name the room by its tag (log lines come through a pipe: a
    // bounded wait).
    let room_field = format!(r#""room":"{tag}""#);
    for action in ["delete", "mute"] {
        let audit = format!(r#""audit":"{action}""#);
        let mut tries = 0;
        while logs.count_since_matching(mark, |l| l.contains(&audit) && l.contains(&room_field))
            == 0
        {
            tries += 1;
            ensure!(
                tries < 100,
                "no audit line {audit} with {room_field}; the last lines:\n{}",
                logs.tail(20).join("\n")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    carl.close().await?;
    m.close().await?;
    // Lines that arrive a little late are still checked. wrangler's own request lines
    // (`[wrangler:info] GET /api/room/<id>/websocket`) are the platform's, not ours.
    tokio::time::sleep(SILENCE).await;
    let leaks = logs.count_since_matching(0, |l| l.contains(&id) && !l.contains("[wrangler:"));
    ensure_eq!(leaks, 0, "log lines holding the private room id {id}");
    Ok(())
}

/// Identity group, both backends: a retried `cid` whose message a moderator deleted is
/// answered to its sender alone, never with a chat frame: a v2 session gets the
/// tombstone with the cid, `{"deleted": seq, "cid"}`, a v1 session the error
/// `That message was deleted by a moderator.`; nothing is stored, nobody else hears of
/// it, and both sockets stay open.
pub async fn a_retried_cid_of_a_deleted_message_gets_no_chat_frame(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("deleted-cid");
    let t = token::token(
        SECRET,
        "u-mod",
        json!({"name": "Mod", "role": "moderator", "room": room}),
    );
    let (mut m, _) = enter(&base, &room, "Mod", json!({"v": 2, "token": t})).await?;
    let (mut ana, _) = enter(&base, &room, "ana", json!({"name": "ana", "v": 2})).await?;
    let (mut bob, _) = enter(&base, &room, "bob", json!({"name": "bob"})).await?;
    m.expect_frame(Frame::Joined("ana".into())).await?;
    m.expect_frame(Frame::Joined("bob".into())).await?;
    ana.expect_frame(Frame::Joined("bob".into())).await?;
    ana.say_with_cid("from ana", "cid-ana").await?;
    let a = ana.recv_message().await?;
    ensure_eq!(bob.recv_message().await?, a, "bob gets ana's");
    bob.say_with_cid("from bob", "cid-bob").await?;
    let b = bob.recv_message().await?;
    ensure_eq!(ana.recv_message().await?, b, "ana gets bob's");
    ensure_eq!(
        messages(&mut m, 2).await?,
        vec![a.clone(), b.clone()],
        "the moderator's copies"
    );
    for seq in [a.seq, b.seq] {
        m.send_json(&json!({"delete": seq})).await?;
        m.expect_frame(Frame::Deleted(seq)).await?;
        ana.expect_frame(Frame::Deleted(seq)).await?;
    }

    ana.say_with_cid("from ana", "cid-ana").await?;
    ana.expect_frame(Frame::DeletedCid(a.seq, "cid-ana".into()))
        .await?;
    bob.say_with_cid("from bob", "cid-bob").await?;
    bob.expect_error("That message was deleted by a moderator.")
        .await?;
    m.expect_silence(SILENCE).await?;
    // Both still chat, and nothing was stored by the repeats: the next seq follows.
    ana.say("still here").await?;
    let next = ana.recv_message().await?;
    ensure_eq!(next.seq, b.seq + 1, "the repeats stored nothing");
    ensure_eq!(bob.recv_message().await?, next, "bob's socket is open");
    for c in [m, ana, bob] {
        c.close().await?;
    }
    Ok(())
}

/// Identity group, both backends: `role: moderator` is honoured only where the token
/// says. Without a `room` claim the token is refused (its own error, close 1008); with
/// `"room": "*"` it moderates every room; with a room, that room only (elsewhere it is
/// a token for another room).
pub async fn a_moderator_token_moderates_the_rooms_it_names(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let (one, two) = (ctx.room("mod-one"), ctx.room("mod-two"));
    let roomless = token::token(SECRET, "u-mod", json!({"role": "moderator"}));
    refused(
        &base,
        &one,
        json!({"v": 2, "token": roomless}),
        r#"A moderator token must name its room: "room": "<room>", or "*" for every room."#,
        "a room-less moderator",
    )
    .await?;
    let everywhere = token::token(SECRET, "u-all", json!({"role": "moderator", "room": "*"}));
    for room in [&one, &two] {
        let (mut m, j) = enter(&base, room, "u-all", json!({"v": 2, "token": everywhere})).await?;
        ensure_eq!(
            j.ready.role.as_deref(),
            Some("moderator"),
            "a `*` moderator in {room}"
        );
        let (mut ana, _) = enter(&base, room, "ana", json!({"name": "ana"})).await?;
        m.expect_frame(Frame::Joined("ana".into())).await?;
        ana.say("delete me").await?;
        let said = ana.recv_message().await?;
        ensure_eq!(m.recv_message().await?, said, "the moderator's copy");
        m.send_json(&json!({"delete": said.seq})).await?;
        m.expect_frame(Frame::Deleted(said.seq)).await?;
        ana.close().await?;
        m.close().await?;
    }
    let only_one = token::token(SECRET, "u-one", json!({"role": "moderator", "room": one}));
    let (m, j) = enter(&base, &one, "u-one", json!({"token": only_one})).await?;
    ensure_eq!(j.ready.role.as_deref(), Some("moderator"), "in its room");
    m.close().await?;
    refused(
        &base,
        &two,
        json!({"token": only_one}),
        "Token is for another room.",
        "a moderator of another room",
    )
    .await
}

/// Connects from source address `ip` (one of 127.0.0.0/8) and sends `hello`, reading
/// the join sequence.
async fn enter_from(
    base: &str,
    room: &str,
    own: &str,
    hello: Value,
    ip: Ipv4Addr,
) -> Result<(Client, Join)> {
    let mut c = Client::connect_with(base, room, own, &from(ip)).await?;
    let j = c.hello_with(&hello, own).await?;
    Ok((c, j))
}

fn from(ip: Ipv4Addr) -> Options {
    Options {
        local_ip: Some(ip),
        ..Options::default()
    }
}

/// The moderator's next frame is answered in order, so once its own message comes back
/// every moderator frame before it has been taken.
async fn fence(m: &mut Client, text: &str) -> Result<()> {
    m.say(text).await?;
    let got = m.recv_message_past_presence().await?;
    ensure_eq!(got.message, text, "the moderator's fence");
    Ok(())
}

/// With `moderation_binds_address` (the default), a kick or a mute holds for the user's
/// client address too: the kicked user coming back from its address without a token,
/// under another name, is refused with 4001 "Kicked" until the kick is over; the muted
/// user coming back anonymous is muted. From another address the same hellos are let
/// in and may talk. And an anonymous hello may not take the name or the user id of a
/// verified member in the room (1008).
pub async fn a_kick_or_mute_holds_for_the_users_address(ctx: Ctx) -> Result<()> {
    const KICK_SECS: u64 = 5;
    let base = ctx.base();
    let (vic_ip, loud_ip, elsewhere) = (
        Ipv4Addr::new(127, 0, 0, 3),
        Ipv4Addr::new(127, 0, 0, 4),
        Ipv4Addr::new(127, 0, 0, 5),
    );
    // Two rooms: the group keeps `MAX_RESTRICTED_USERS` rows per room, and a kick or a
    // mute bound to one address holds two (the user's and the address's).
    let kick_room = ctx.room("bound-kick");
    let room = kick_room.clone();
    let (mut m, _) = enter(&base, &room, "Mod", moderator_hello(&room, true)).await?;
    let (mut vic, _) =
        enter_from(&base, &room, "u-vic", user_hello("u-vic", false), vic_ip).await?;

    // The kick: the user's session goes; back anonymous from its address, refused.
    m.send_json(&json!({"kick": {"user": "u-vic", "secs": KICK_SECS}}))
        .await?;
    vic.expect_error(KICKED).await?;
    vic.expect_close(4001, Some("Kicked")).await?;
    let kicked_at = std::time::Instant::now();
    let mut back = Client::connect_with(&base, &room, "owner", &from(vic_ip)).await?;
    back.send_json(&json!({"name": "owner"})).await?;
    back.expect_error(STILL_KICKED).await?;
    back.expect_close(4001, Some("Kicked")).await?;
    // From another address, the same hello is let in.
    let (other, _) = enter_from(&base, &room, "owner", json!({"name": "owner"}), elsewhere).await?;

    // The mute: back anonymous from the user's address, muted; another address talks.
    let room = ctx.room("bound-mute");
    let (mut m2, _) = enter(&base, &room, "Mod", moderator_hello(&room, true)).await?;
    let (loud, _) =
        enter_from(&base, &room, "u-loud", user_hello("u-loud", false), loud_ip).await?;
    m2.send_json(&json!({"mute": {"user": "u-loud", "secs": 600}}))
        .await?;
    fence(&mut m2, "muted them").await?;
    loud.close().await?;
    let (mut talker, _) =
        enter_from(&base, &room, "talker", json!({"name": "talker"}), elsewhere).await?;
    let (mut quiet, _) =
        enter_from(&base, &room, "quiet", json!({"name": "quiet"}), loud_ip).await?;
    quiet.say("SHOUT").await?;
    quiet.expect_error(MUTED).await?;
    talker.say("from elsewhere").await?;
    let said = talker.recv_message_past_presence().await?;
    ensure_eq!(said.message, "from elsewhere", "another address talks");
    ensure_eq!(
        quiet.recv_message_past_presence().await?,
        said,
        "nothing of the shout came before it"
    );

    // Impersonation: the name (any case) and the user id of a verified member present.
    let ana = token::token(SECRET, "u-ana", json!({"name": "Ana"}));
    let (ana_c, _) = enter_from(&base, &room, "Ana", json!({"token": ana}), elsewhere).await?;
    for name in ["Ana", "ana", "u-ana"] {
        let mut fake = Client::connect_with(&base, &room, name, &from(elsewhere)).await?;
        fake.send_json(&json!({"name": name})).await?;
        fake.expect_error(NAME_OF_VERIFIED).await?;
        fake.expect_close(1008, Some("Invalid hello")).await?;
    }

    // Once the kick is over, its address is let in again.
    let over = Duration::from_millis(KICK_SECS * 1000 + 500);
    tokio::time::sleep(over.saturating_sub(kicked_at.elapsed())).await;
    let (again, _) = enter_from(
        &base,
        &kick_room,
        "owner2",
        json!({"name": "owner2"}),
        vic_ip,
    )
    .await?;
    for c in [again, other, m, talker, quiet, ana_c, m2] {
        c.close().await?;
    }
    Ok(())
}
