//! Chat basics: delivery, isolation of rooms, the roster, no lurking.
//! These run with the default rate limit (burst 10 per address and room), so each
//! room sees at most 10 messages.

use super::{ensure_next, ensure_plausible_timestamp, join, now_ms, SILENCE};
use crate::client::{Client, Frame};
use crate::harness::Ctx;
use crate::{ensure, ensure_eq, Result};

pub async fn chat_reaches_everyone(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("chat");
    let (mut a, ja) = join(&base, &room, "alice").await?;
    ensure_eq!(ja.roster, Vec::<String>::new(), "roster of an empty room");
    ensure!(ja.backlog.is_empty(), "backlog of an empty room");
    ensure_eq!(ja.ready.seq, 0, "ready.seq of an empty room");
    ensure!(!ja.ready.recovered, "recovered without a resume");
    let (mut b, jb) = join(&base, &room, "bob").await?;
    ensure_eq!(jb.roster, vec!["alice".to_string()], "bob's roster");
    ensure_eq!(jb.ready.epoch, ja.ready.epoch, "one room, one epoch");
    a.expect_frame(Frame::Joined("bob".into())).await?;

    let before = now_ms();
    a.say("  hello bob \n").await?;
    let ma = a.recv_message().await?;
    let mb = b.recv_message().await?;
    ensure_eq!(ma, mb, "sender and other member get the same frame");
    ensure_eq!(ma.name, "alice", "name");
    ensure_eq!(ma.message, "hello bob", "the message is trimmed");
    ensure_eq!(ma.seq, 1, "first seq");
    ensure_plausible_timestamp(ma.timestamp)?;
    ensure!(
        ma.timestamp + 1000 >= before,
        "timestamp {} is before the message was sent ({before})",
        ma.timestamp
    );

    // Alternate senders, sent back to back: seqs are gap-free and timestamps
    // strictly increasing even within one millisecond.
    let mut prev = ma;
    for i in 0..7 {
        let (sender, name) = if i % 2 == 0 {
            (&mut b, "bob")
        } else {
            (&mut a, "alice")
        };
        sender.say(&format!("message {i}")).await?;
        let ma = a.recv_message().await?;
        let mb = b.recv_message().await?;
        ensure_eq!(ma, mb, "both members get message {i}");
        ensure_eq!(ma.name, name, "sender name of message {i}");
        ensure_eq!(ma.message, format!("message {i}"), "text of message {i}");
        ensure_next(&prev, &ma)?;
        prev = ma;
    }
    a.close().await?;
    b.expect_frame(Frame::Quit("alice".into())).await?;
    b.close().await
}

pub async fn rooms_are_isolated(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let (r1, r2) = (ctx.room("iso-a"), ctx.room("iso-b"));
    let (mut a, ja) = join(&base, &r1, "alice").await?;
    let (mut b, jb) = join(&base, &r2, "bob").await?;
    ensure!(
        jb.roster.is_empty(),
        "room 2 has no members yet, got {:?}",
        jb.roster
    );
    ensure!(
        ja.ready.epoch != jb.ready.epoch,
        "two rooms share the epoch {:?}",
        ja.ready.epoch
    );
    a.say("in room one").await?;
    ensure_eq!(a.recv_message().await?.seq, 1, "seq in room 1");
    b.expect_silence(SILENCE).await?;
    b.say("in room two").await?;
    let mb = b.recv_message().await?;
    ensure_eq!(mb.seq, 1, "each room counts its own seqs");
    a.expect_silence(SILENCE).await?;
    let (c, jc) = join(&base, &r2, "carol").await?;
    ensure_eq!(jc.roster, vec!["bob".to_string()], "carol's roster");
    ensure_eq!(jc.backlog, vec![mb], "room 2's backlog only");
    a.expect_silence(SILENCE).await?;
    c.close().await?;
    a.close().await?;
    b.close().await
}

pub async fn joins_and_quits_are_announced(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("roster");
    let (mut a, _) = join(&base, &room, "alice").await?;
    let (mut b, jb) = join(&base, &room, "bob").await?;
    ensure_eq!(jb.roster, vec!["alice".to_string()], "bob's roster");
    a.expect_frame(Frame::Joined("bob".into())).await?;
    a.say("first").await?;
    let m1 = a.recv_message().await?;
    ensure_eq!(b.recv_message().await?, m1, "bob gets the message");

    // The full join sequence: roster, backlog, own joined (also to everyone), ready.
    let (mut c, jc) = join(&base, &room, "carol").await?;
    ensure_eq!(
        jc.roster_sorted(),
        vec!["alice".to_string(), "bob".to_string()],
        "carol's roster"
    );
    ensure_eq!(jc.backlog, vec![m1.clone()], "carol's backlog");
    ensure_eq!(jc.ready.seq, 1, "ready.seq is the latest seq");
    a.expect_frame(Frame::Joined("carol".into())).await?;
    b.expect_frame(Frame::Joined("carol".into())).await?;

    // Names need not be unique: a second "alice" is listed twice in the roster.
    let (mut a2, ja2) = join(&base, &room, "alice").await?;
    ensure_eq!(
        ja2.roster_sorted(),
        vec!["alice".to_string(), "bob".to_string(), "carol".to_string()],
        "roster for a second alice"
    );
    for m in [&mut a, &mut b, &mut c] {
        m.expect_frame(Frame::Joined("alice".into())).await?;
    }

    // Leaving, cleanly or not, is announced to everyone who stays.
    b.close().await?;
    for m in [&mut a, &mut c, &mut a2] {
        m.expect_frame(Frame::Quit("bob".into())).await?;
    }
    drop(c); // no close handshake: the TCP connection just goes away
    for m in [&mut a, &mut a2] {
        m.expect_frame(Frame::Quit("carol".into())).await?;
    }
    let (mut d, jd) = join(&base, &room, "dave").await?;
    ensure_eq!(
        jd.roster,
        vec!["alice".to_string(), "alice".to_string()],
        "roster after bob and carol left"
    );
    a2.close().await?;
    a.expect_frame(Frame::Joined("dave".into())).await?;
    a.expect_frame(Frame::Quit("alice".into())).await?;
    d.expect_frame(Frame::Quit("alice".into())).await?;
    a.close().await?;
    d.close().await
}

pub async fn nothing_reaches_a_socket_before_its_hello(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("lurk");
    let mut lurker = Client::connect(&base, &room, "lurker").await?;
    let (mut a, ja) = join(&base, &room, "alice").await?;
    ensure!(
        ja.roster.is_empty(),
        "a socket without a hello is not in the roster, got {:?}",
        ja.roster
    );
    a.say("secret").await?;
    let m1 = a.recv_message().await?;
    let (b, _) = join(&base, &room, "bob").await?;
    a.expect_frame(Frame::Joined("bob".into())).await?;
    b.close().await?;
    a.expect_frame(Frame::Quit("bob".into())).await?;
    // Messages, joins and quits all happened; the lurker saw none of them.
    lurker.expect_silence(SILENCE).await?;

    let jl = lurker.hello("lurker").await?;
    ensure_eq!(
        jl.roster,
        vec!["alice".to_string()],
        "roster after the hello"
    );
    ensure_eq!(jl.backlog, vec![m1], "backlog after the hello");
    ensure_eq!(jl.ready.seq, 1, "ready.seq");
    a.expect_frame(Frame::Joined("lurker".into())).await?;
    a.say("now you see it").await?;
    let m2 = a.recv_message().await?;
    ensure_eq!(
        lurker.recv_message().await?,
        m2,
        "the joined lurker gets messages"
    );
    lurker.close().await?;
    a.close().await
}

/// How many times [`a_quit_comes_before_the_same_clients_next_join`] closes and rejoins:
/// within the default join burst (20 per address and room), with the watcher's join.
const REJOINS: usize = 15;

/// A client that closes (and waits for the server to answer its close) and at once
/// joins again under the same name is announced as `quit`, then `joined`, never the
/// other way round: when the server completes a client's close handshake, the room has
/// already processed that member's quit (docs/protocol.md, "Closing"). Repeated, since
/// a backend that answers the close before the room lets the member go gets the order
/// wrong only when the new join overtakes the quit.
pub async fn a_quit_comes_before_the_same_clients_next_join(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("rejoin");
    let (mut watcher, _) = join(&base, &room, "watcher").await?;
    let (mut back, _) = join(&base, &room, "back").await?;
    watcher.expect_frame(Frame::Joined("back".into())).await?;
    for round in 0..REJOINS {
        back.close().await?;
        let (again, j) = join(&base, &room, "back").await?;
        ensure_eq!(
            j.roster,
            vec!["watcher".to_string()],
            "the roster of round {round}'s rejoin has no earlier self"
        );
        watcher
            .expect_frame(Frame::Quit("back".into()))
            .await
            .map_err(|e| crate::Error(format!("round {round}: {}", e.0)))?;
        watcher.expect_frame(Frame::Joined("back".into())).await?;
        back = again;
    }
    back.close().await?;
    watcher.expect_frame(Frame::Quit("back".into())).await?;
    watcher.close().await
}
