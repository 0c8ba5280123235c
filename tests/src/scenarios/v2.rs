//! Protocol v2: the roster frame, batching on and off, and v1 and v2 sessions in one
//! room, each seeing its own protocol. The client checks every frame against what its
//! session asked for: a v1 session that got a `roster`, a `ready.v` or a batch, or a
//! session that got a batch it did not opt in to, fails the scenario.

use super::{join, SILENCE};
use crate::client::{Client, Frame, Join, Protocol};
use crate::harness::{batch, Ctx};
use crate::{ensure, ensure_eq, Result};
use serde_json::{json, Value};

/// Connects and joins with `"v": 2`, and `"batch"` if given.
async fn join_v2(
    base: &str,
    room: &str,
    name: &str,
    batch: Option<bool>,
) -> Result<(Client, Join)> {
    let mut c = Client::connect(base, room, name).await?;
    let mut hello = json!({ "name": name, "v": 2 });
    if let Some(b) = batch {
        hello["batch"] = json!(b);
    }
    let j = c.hello_with(&hello, name).await?;
    Ok((c, j))
}

/// The raw text of the next `n` frames.
async fn raw_frames(c: &mut Client, n: usize) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(c.recv_raw().await?.0);
    }
    Ok(out)
}

/// Frames read until `n` chat messages have come, as raw text.
async fn raw_until_messages(c: &mut Client, n: usize) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut messages = 0;
    while messages < n {
        ensure!(out.len() < 10 * n + 100, "{}: too many frames", c.label);
        let (raw, f) = c.recv_raw().await?;
        messages += usize::from(matches!(f, Frame::Message(_)));
        out.push(raw);
    }
    Ok(out)
}

/// A v2 joiner gets the members already there as ONE `roster` frame, and `ready` with
/// `"v": 2`; v1 joiners in the same room keep their `joined` frames. Without `batch`, a
/// v2 session gets one frame per message.
pub async fn v2_joiner_gets_the_roster_as_one_frame(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("v2-roster");
    // Read by hand, to check the wire text itself.
    let mut a = Client::connect(&base, &room, "alice").await?;
    a.set_protocol(Protocol {
        v2: true,
        batch: false,
    });
    a.send_json(&json!({"name": "alice", "v": 2})).await?;
    let burst = raw_frames(&mut a, 3).await?;
    ensure_eq!(burst[0], r#"{"roster":[]}"#, "the roster of an empty room");
    ensure_eq!(burst[1], r#"{"joined":"alice"}"#, "own joined");
    let ready: Value = serde_json::from_str(&burst[2])?;
    let epoch = ready["epoch"].as_str().unwrap_or_default();
    ensure_eq!(
        burst[2],
        format!(r#"{{"ready":true,"epoch":"{epoch}","seq":0,"recovered":false,"v":2}}"#),
        "ready of a v2 session"
    );

    let (mut b, jb) = join(&base, &room, "bob").await?;
    ensure_eq!(jb.roster, vec!["alice".to_string()], "bob's (v1) roster");
    ensure_eq!(jb.ready.v, None, "a v1 ready has no v");
    ensure_eq!(
        a.recv_raw().await?.0,
        r#"{"joined":"bob"}"#,
        "live joins are the same for v2"
    );

    let (mut c, jc) = join_v2(&base, &room, "carol", None).await?;
    ensure_eq!(
        jc.roster_sorted(),
        vec!["alice".to_string(), "bob".to_string()],
        "carol's roster"
    );
    ensure_eq!(jc.ready.v, Some(2), "ready.v");
    ensure_eq!(jc.ready.epoch, epoch, "one room, one epoch");
    for m in [&mut a, &mut b] {
        m.expect_frame(Frame::Joined("carol".into())).await?;
    }

    b.say("from v1").await?;
    let raw = b.recv_raw().await?.0;
    for m in [&mut a, &mut c] {
        ensure_eq!(
            m.recv_raw().await?.0,
            raw,
            "{}: the same chat frame",
            m.label
        );
    }
    c.close().await?;
    for m in [&mut a, &mut b] {
        m.expect_frame(Frame::Quit("carol".into())).await?;
    }
    for m in [&a, &b] {
        ensure!(
            m.received().batches.is_empty(),
            "{}: batches without opting in",
            m.label
        );
    }
    a.close().await?;
    b.close().await
}

/// A v1 client and v2 clients (batched and not) in one room: the v1 one gets exactly
/// v1 frames, the v2 ones their roster and `ready.v`, the batch one its join burst as
/// one batch; every chat frame is the same bytes for all.
pub async fn v1_and_v2_clients_in_one_room_each_see_their_own_protocol(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("v1-v2");
    let (mut vera, jv) = join(&base, &room, "vera").await?;
    ensure_eq!(jv.ready.v, None, "v1 ready");
    let (mut bea, jb) = join_v2(&base, &room, "bea", Some(true)).await?;
    ensure_eq!(jb.roster, vec!["vera".to_string()], "bea's roster");
    ensure_eq!(jb.ready.v, Some(2), "bea's ready.v");
    // roster, own joined, ready: one message.
    ensure_eq!(bea.received().messages, 1, "bea's join burst in messages");
    ensure_eq!(bea.received().batches, vec![3], "bea's join burst");
    ensure_eq!(
        vera.received().messages,
        2,
        "vera's join burst: one frame each"
    );
    vera.expect_frame(Frame::Joined("bea".into())).await?;

    let (mut pia, jp) = join_v2(&base, &room, "pia", Some(false)).await?;
    ensure_eq!(
        jp.roster_sorted(),
        vec!["bea".to_string(), "vera".to_string()],
        "pia's roster"
    );
    for m in [&mut vera, &mut bea] {
        m.expect_frame(Frame::Joined("pia".into())).await?;
    }

    vera.say("hi from v1").await?;
    bea.say("hi from v2").await?;
    let mut seen = Vec::new();
    for m in [&mut vera, &mut bea, &mut pia] {
        let mut texts = raw_frames(m, 2).await?;
        texts.sort();
        seen.push(texts);
    }
    ensure_eq!(seen[1], seen[0], "bea and vera get the same bytes");
    ensure_eq!(seen[2], seen[0], "pia and vera get the same bytes");
    for m in [&vera, &pia] {
        ensure!(m.received().batches.is_empty(), "{}: got a batch", m.label);
    }
    bea.close().await?;
    for m in [&mut vera, &mut pia] {
        m.expect_frame(Frame::Quit("bea".into())).await?;
    }
    vera.close().await?;
    pia.close().await
}

/// `batch` means nothing without `"v": 2`; in a v2 hello it must be a boolean or null.
pub async fn batch_needs_v2_and_a_boolean(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("batch-hello");
    for (i, hello) in [
        json!({"name": "x", "batch": true}),
        json!({"name": "x", "batch": 1}),
        json!({"name": "x", "v": 1, "batch": "yes"}),
    ]
    .iter()
    .enumerate()
    {
        // Joins as v1: no roster frame, no ready.v (the client checks), no batches.
        let mut c = Client::connect(&base, &room, &format!("v1-{i}")).await?;
        let j = c.hello_with(hello, "x").await?;
        ensure_eq!(j.ready.v, None, "{hello}: ready.v");
        ensure!(!c.protocol().v2, "the client sees {hello} as v1");
        c.close().await?;
    }
    let (c, j) = join_v2(&base, &room, "nul", None).await?;
    ensure_eq!(j.ready.v, Some(2), "v2 without batch");
    c.close().await?;
    let mut c = Client::connect(&base, &room, "null-batch").await?;
    c.hello_with(&json!({"name": "n", "v": 2, "batch": null}), "n")
        .await?;
    c.close().await?;

    for bad in [json!("yes"), json!(1), json!([true]), json!({})] {
        let mut c = Client::connect(&base, &room, "bad").await?;
        c.send_hello(&json!({"name": "z", "v": 2, "batch": bad}))
            .await?;
        c.expect_error(r#""batch" must be true or false."#).await?;
        c.expect_close(1008, Some("Invalid hello")).await?;
    }
    Ok(())
}

/// With batching on, a session gets exactly the frames an unbatched v2 session gets,
/// byte for byte and in the same order (chat, joins and quits alike), in fewer
/// messages: batches of 2 to `batch_max` frames. v1 and unbatched sessions in the
/// same room get one frame per message.
pub async fn batching_packs_the_same_frames_into_fewer_messages(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("batching");
    let (mut plain, _) = join_v2(&base, &room, "plain", Some(false)).await?;
    let (mut packed, _) = join_v2(&base, &room, "packed", Some(true)).await?;
    let (mut old, _) = join(&base, &room, "old").await?;
    let (mut talker, _) = join(&base, &room, "talker").await?;
    // Everyone is in: drain the joins each was told of.
    raw_frames(&mut plain, 3).await?;
    raw_frames(&mut packed, 2).await?;
    raw_frames(&mut old, 1).await?;

    let packed_before = packed.received().clone();
    const N: usize = 12;
    for i in 0..N {
        talker
            .feed_text(json!({ "message": format!("burst {i}") }).to_string())
            .await?;
    }
    talker.flush().await?;
    let mut from_plain = raw_until_messages(&mut plain, N).await?;
    let mut from_packed = raw_until_messages(&mut packed, N).await?;
    let from_old = raw_until_messages(&mut old, N).await?;
    raw_until_messages(&mut talker, N).await?;
    ensure_eq!(from_packed, from_plain, "packed and plain, frame by frame");
    ensure_eq!(
        from_old,
        from_plain,
        "v1 and v2 chat frames are the same bytes"
    );

    // A small storm of presence: four join at once, then leave.
    let names: Vec<String> = (0..4).map(|i| format!("p{i}")).collect();
    let mut joiners = Vec::new();
    for name in &names {
        joiners.push(Client::connect(&base, &room, name).await?);
    }
    let hellos = joiners
        .iter_mut()
        .zip(&names)
        .map(|(c, name)| async move { c.hello_with(&json!({ "name": name }), name).await });
    for r in futures_util::future::join_all(hellos).await {
        r?;
    }
    for c in joiners {
        c.close().await?;
    }
    let presence_plain = raw_frames(&mut plain, 8).await?;
    let presence_packed = raw_frames(&mut packed, 8).await?;
    ensure_eq!(presence_packed, presence_plain, "joins and quits, in order");
    from_plain.extend(presence_plain);
    from_packed.extend(presence_packed);

    let got = packed.received();
    let batches = &got.batches[packed_before.batches.len()..];
    let messages = got.messages - packed_before.messages;
    ensure!(
        !batches.is_empty(),
        "no batch for {} frames sent back to back",
        from_packed.len()
    );
    ensure!(
        messages < from_packed.len(),
        "{messages} messages for {} frames",
        from_packed.len()
    );
    ensure!(
        batches.iter().all(|&n| (2..=batch::MAX).contains(&n)),
        "batch sizes {batches:?}: 2 to {}",
        batch::MAX
    );
    for m in [&plain, &old, &talker] {
        ensure!(m.received().batches.is_empty(), "{}: got a batch", m.label);
    }
    plain.expect_silence(SILENCE).await?;
    packed.expect_silence(SILENCE).await?;
    for m in [plain, packed, old, talker] {
        m.close().await?;
    }
    Ok(())
}

/// A batch joiner's join burst (roster, backlog, own joined, ready) comes as batches
/// of at most `batch_max` frames, in order.
pub async fn a_batch_joiners_burst_comes_in_batches_of_batch_max(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("batch-burst");
    let (mut talker, _) = join(&base, &room, "talker").await?;
    let sent = super::send_many(&mut talker, 7, "history").await?;
    let (packed, j) = join_v2(&base, &room, "packed", Some(true)).await?;
    ensure_eq!(j.roster, vec!["talker".to_string()], "roster");
    ensure_eq!(j.backlog, sent, "backlog");
    ensure_eq!(j.ready.seq, 7, "ready.seq");
    // roster + 7 messages + joined + ready = 10 frames: two full batches.
    ensure_eq!(
        packed.received().batches,
        vec![batch::MAX, batch::MAX],
        "batches"
    );
    ensure_eq!(packed.received().messages, 2, "messages");
    talker.expect_frame(Frame::Joined("packed".into())).await?;
    packed.close().await?;
    talker.close().await
}
