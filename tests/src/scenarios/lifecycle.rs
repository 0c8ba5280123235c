//! Scenarios with instances of their own: a restart on the same data dir or on an
//! empty one, and hibernation (the room evicted from memory while its sockets stay
//! open).

use super::{ensure_next, join, join_from, send_many, OTHER_ADDRESS, SILENCE};
use crate::client::{Client, Event, Frame};
use crate::harness::{Ctx, InstanceSpec};
use crate::{bail, ensure, ensure_eq, Result};
use serde_json::json;

/// The rate limit is not under test here.
fn no_rate_limit() -> InstanceSpec {
    InstanceSpec::with(&[("rate_burst", "1000000"), ("rate_per_sec", "1000000")])
}

/// History, seq and epoch survive a restart of the backend on the same data dir, so a
/// resume across the restart recovers.
pub async fn restart_keeps_history(ctx: Ctx) -> Result<()> {
    let instance = ctx.start_own("restart", no_rate_limit()).await?;
    let base = instance.base_url();
    let room = ctx.room("restart");
    let (mut a, ja) = join(&base, &room, "alice").await?;
    let epoch = ja.ready.epoch.clone();
    let before = send_many(&mut a, 3, "before restart").await?;

    instance.restart().await?;
    // The old connection ends (close frame or not) when its server goes away.
    ended(&mut a).await?;

    let base = instance.base_url();
    let mut b = Client::connect(&base, &room, "bob").await?;
    let jb = b
        .hello_with(
            &json!({"name": "bob", "resume": {"epoch": epoch, "seq": 1}}),
            "bob",
        )
        .await?;
    ensure_eq!(jb.ready.epoch, epoch, "epoch after the restart");
    ensure_eq!(jb.ready.seq, 3, "latest seq after the restart");
    ensure!(
        jb.ready.recovered,
        "a resume across the restart must recover"
    );
    ensure_eq!(jb.backlog, before[1..].to_vec(), "resumed messages");
    ensure!(
        jb.roster.is_empty(),
        "nobody else is in the room: {:?}",
        jb.roster
    );

    b.say("after restart").await?;
    let m4 = b.recv_message().await?;
    ensure_next(&before[2], &m4)?;
    let (c, jc) = join(&base, &room, "carol").await?;
    let mut all = before.clone();
    all.push(m4);
    ensure_eq!(jc.backlog, all, "full history after the restart");
    c.close().await?;
    b.close().await
}

/// Waits (bounded) until a connection whose server went away has ended, whether with a
/// close frame or not.
async fn ended(c: &mut Client) -> Result<()> {
    for _ in 0..100 {
        match c.next_event().await? {
            Event::Close(_) | Event::Ended(_) => return Ok(()),
            Event::Frame(_) | Event::Binary(_) => continue,
        }
    }
    bail!("{}: the connection outlived its server", c.label)
}

/// A backend that lost a room's storage (restarted on an empty data dir) gives the
/// room a new epoch, and seqs start again at 1. A client resuming with the old epoch
/// gets `recovered: false` and the new epoch, which is how it learns that seqs
/// restarted.
pub async fn lost_storage_starts_a_new_epoch(ctx: Ctx) -> Result<()> {
    let instance = ctx.start_own("lost-storage", no_rate_limit()).await?;
    let base = instance.base_url();
    let room = ctx.room("lost");
    let (mut a, ja) = join(&base, &room, "alice").await?;
    let old_epoch = ja.ready.epoch.clone();
    send_many(&mut a, 3, "before the loss").await?;

    instance.restart_on_empty_storage().await?;
    ended(&mut a).await?;

    let base = instance.base_url();
    let mut b = Client::connect(&base, &room, "alice again").await?;
    let jb = b
        .hello_with(
            &json!({"name": "alice", "resume": {"epoch": old_epoch, "seq": 3}}),
            "alice",
        )
        .await?;
    ensure!(
        !jb.ready.recovered,
        "a resume into a room that lost its storage must not recover"
    );
    ensure!(
        jb.ready.epoch != old_epoch,
        "the room kept its epoch {old_epoch} though its storage was lost"
    );
    ensure_eq!(jb.ready.seq, 0, "latest seq of the emptied room");
    ensure!(jb.backlog.is_empty(), "backlog: {:?}", jb.backlog);
    b.say("first again").await?;
    let m = b.recv_message().await?;
    ensure_eq!(m.seq, 1, "seqs start again at 1");

    // The new epoch is the room's from now on: resuming with it recovers.
    let mut c = Client::connect(&base, &room, "carol").await?;
    let jc = c
        .hello_with(
            &json!({"name": "carol", "resume": {"epoch": jb.ready.epoch, "seq": 0}}),
            "carol",
        )
        .await?;
    ensure!(jc.ready.recovered, "a resume with the new epoch recovers");
    ensure_eq!(jc.backlog, vec![m], "resumed messages");
    c.close().await?;
    b.close().await
}

/// A drained rate-limit bucket survives hibernation: once the idle room has been
/// evicted and rebuilt, the client's next message is still refused, while a client
/// from another address is served.
pub async fn rate_limit_bucket_survives_hibernation(ctx: Ctx) -> Result<()> {
    const BURST: usize = 2;
    let backend = ctx.backend();
    let spec = InstanceSpec {
        hibernate: true,
        // One token per 1000 s: nothing refills during the test.
        ..InstanceSpec::with(&[
            ("rate_burst", &BURST.to_string()),
            ("rate_per_sec", "0.001"),
        ])
    };
    let instance = ctx.start_own("hibernation-rate", spec).await?;
    let base = instance.base_url();
    let room = ctx.room("hibernate-rate");
    let (mut a, _) = join(&base, &room, "alice").await?;
    let mut sent = Vec::new();
    for i in 0..BURST {
        a.say(&format!("burst {i}")).await?;
        sent.push(a.recv_message().await?);
    }
    a.say("one too many").await?;
    a.expect_error("Rate limited; slow down.").await?;

    let mark = instance.logs().mark();
    backend.await_eviction(&instance, mark).await?;
    let mark = instance.logs().mark();

    a.say("after the eviction").await?;
    a.expect_error("Rate limited; slow down.").await?;
    backend.confirm_restored(&instance, mark, 1).await?;

    // The room itself serves: another address has its own, full bucket.
    let (mut b, jb) = join_from(&base, &room, "bob", OTHER_ADDRESS).await?;
    ensure_eq!(jb.roster, vec!["alice".to_string()], "bob's roster");
    ensure_eq!(jb.backlog, sent, "history after the eviction");
    a.expect_frame(Frame::Joined("bob".into())).await?;
    b.say("from elsewhere").await?;
    let m = b.recv_message().await?;
    ensure_eq!(m.seq, BURST as u64 + 1, "seq of bob's message");
    ensure_eq!(a.recv_message().await?, m, "alice gets bob's message");
    a.say("still refused").await?;
    a.expect_error("Rate limited; slow down.").await?;
    b.close().await?;
    a.close().await
}

/// An idle room with open sockets is evicted and rebuilt: seqs continue, the roster
/// is intact, and messages still reach the sockets that were there before, a batch
/// session's still batched.
pub async fn hibernation_keeps_the_room(ctx: Ctx) -> Result<()> {
    let backend = ctx.backend();
    let mut spec = InstanceSpec {
        hibernate: true,
        ..no_rate_limit()
    };
    // A budget of one send per second makes the window its cap (1 s) even in a room
    // this small, so a batch session's batches show.
    spec.overrides.extend([
        ("batch_window_ms".to_owned(), "1000".to_owned()),
        ("batch_send_budget".to_owned(), "1".to_owned()),
    ]);
    let instance = ctx.start_own("hibernation", spec).await?;
    let base = instance.base_url();
    let room = ctx.room("hibernate");
    let (mut a, _) = join(&base, &room, "alice").await?;
    let (mut b, _) = join(&base, &room, "bob").await?;
    a.expect_frame(Frame::Joined("bob".into())).await?;
    let mut d = Client::connect(&base, &room, "dave").await?;
    d.hello_with(&json!({"name": "dave", "v": 2, "batch": true}), "dave")
        .await?;
    for m in [&mut a, &mut b] {
        m.expect_frame(Frame::Joined("dave".into())).await?;
    }
    a.say("before").await?;
    let m1 = a.recv_message().await?;
    ensure_eq!(b.recv_message().await?, m1, "bob gets the first message");
    ensure_eq!(d.recv_message().await?, m1, "dave gets the first message");

    let mark = instance.logs().mark();
    backend.await_eviction(&instance, mark).await?;
    let mark = instance.logs().mark();

    a.say("after").await?;
    let m2 = a.recv_message().await?;
    ensure_eq!(m2.message, "after", "first message after the eviction");
    ensure_next(&m1, &m2)?;
    ensure_eq!(
        b.recv_message().await?,
        m2,
        "bob, connected before the eviction, gets it"
    );
    ensure_eq!(d.recv_message().await?, m2, "dave gets it too");
    backend.confirm_restored(&instance, mark, 3).await?;

    let (mut c, jc) = join(&base, &room, "carol").await?;
    ensure_eq!(
        jc.roster_sorted(),
        vec!["alice".to_string(), "bob".to_string(), "dave".to_string()],
        "roster after the eviction"
    );
    ensure_eq!(
        jc.backlog,
        vec![m1, m2.clone()],
        "history after the eviction"
    );
    ensure_eq!(jc.ready.seq, 2, "ready.seq after the eviction");
    for m in [&mut a, &mut b, &mut d] {
        m.expect_frame(Frame::Joined("carol".into())).await?;
    }
    b.say("to everyone").await?;
    let m3 = b.recv_message().await?;
    ensure_next(&m2, &m3)?;
    for m in [&mut a, &mut c, &mut d] {
        let got = m.recv_message().await?;
        if got != m3 {
            bail!("{}: got {got:?}, expected {m3:?}", m.label);
        }
    }
    // Dave's opt-in lived through the eviction: frames sent back to back reach him
    // in batches.
    let batches_before = d.received().batches.len();
    for i in 0..3 {
        b.feed_text(json!({ "message": format!("burst {i}") }).to_string())
            .await?;
    }
    b.flush().await?;
    for m in [&mut a, &mut b, &mut c, &mut d] {
        for i in 0..3 {
            let got = m.recv_message().await?;
            ensure_eq!(got.message, format!("burst {i}"), "{}: burst", m.label);
        }
    }
    ensure!(
        d.received().batches.len() > batches_before,
        "dave got no batch after the eviction: {:?}",
        d.received()
    );
    // Leaving still works for the sockets that lived through the eviction, and is
    // announced once: a restored session must not be closed (and quit) twice.
    a.close().await?;
    for m in [&mut b, &mut c, &mut d] {
        m.expect_frame(Frame::Quit("alice".into())).await?;
    }
    tokio::try_join!(
        b.expect_silence(SILENCE),
        c.expect_silence(SILENCE),
        d.expect_silence(SILENCE)
    )?;
    c.close().await?;
    for m in [&mut b, &mut d] {
        m.expect_frame(Frame::Quit("carol".into())).await?;
    }
    b.expect_silence(SILENCE).await?;
    d.close().await?;
    b.expect_frame(Frame::Quit("dave".into())).await?;
    b.close().await
}
