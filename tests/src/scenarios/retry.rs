//! Retry-safe sends: a chat frame's `cid` makes a repeat of the same send harmless. The
//! sender is the client address plus the name (every client of the suite has the same
//! address).

use super::{ensure_next, join, now_ms, send_many, SILENCE};
use crate::client::{Client, Frame, Msg};
use crate::harness::{fast, Ctx, InstanceSpec};
use crate::{ensure, ensure_eq, Result};
use serde_json::json;
use std::time::Duration;

const BAD_CID: &str = r#""cid" must be 1 to 64 letters, digits, "_" or "-"."#;

/// A v2 session joined as `name`.
async fn join_v2(base: &str, room: &str, name: &str) -> Result<Client> {
    let mut c = Client::connect(base, room, name).await?;
    c.hello_v2(name).await?;
    Ok(c)
}

/// The first send of a cid is stored and broadcast with its cid; a repeat by the same
/// sender (same or new socket, any text) is answered with the original to that socket
/// alone and stored nowhere; another sender's same cid is its own message.
pub async fn a_repeated_cid_is_stored_once_and_only_its_sender_hears_it_again(
    ctx: Ctx,
) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("cid-once");
    let mut ana = join_v2(&base, &room, "ana").await?;
    let (mut bob, _) = join(&base, &room, "bob").await?;
    ana.expect_frame(Frame::Joined("bob".into())).await?;

    ana.say_with_cid("hello", "k-1").await?;
    let original = ana.recv_message().await?;
    ensure_eq!(original.cid.as_deref(), Some("k-1"), "the cid comes back");
    ensure_eq!(original.message, "hello", "text");
    ensure_eq!(
        bob.recv_message().await?,
        original,
        "a v1 member gets the same frame"
    );

    ana.say_with_cid("hello, edited", "k-1").await?;
    ensure_eq!(
        ana.recv_message().await?,
        original,
        "the repeat is answered with the original: seq, timestamp, text and cid"
    );
    bob.expect_silence(SILENCE).await?;

    // A reconnect: a new socket, same address and name, is the same sender.
    let mut ana2 = join_v2(&base, &room, "ana").await?;
    for c in [&mut ana, &mut bob] {
        c.expect_frame(Frame::Joined("ana".into())).await?;
    }
    ana2.say_with_cid("hello", "k-1").await?;
    ensure_eq!(
        ana2.recv_message().await?,
        original,
        "the repeat from a new socket"
    );
    tokio::try_join!(ana.expect_silence(SILENCE), bob.expect_silence(SILENCE))?;

    // Another name is another sender: its "k-1" is a message of its own.
    bob.say_with_cid("bob's own", "k-1").await?;
    let second = bob.recv_message().await?;
    ensure_next(&original, &second)?;
    ensure_eq!(second.cid.as_deref(), Some("k-1"), "bob's cid");
    for c in [&mut ana, &mut ana2] {
        ensure_eq!(c.recv_message().await?, second, "bob's message to everyone");
    }

    // History holds each once.
    let (carol, jc) = join(&base, &room, "carol").await?;
    ensure_eq!(jc.backlog, vec![original, second], "stored once each");
    carol.close().await?;
    for c in [ana, ana2, bob] {
        c.close().await?;
    }
    Ok(())
}

/// A `cid` of the wrong shape is refused with an error, nothing is stored and the socket
/// stays open; `null` is no cid, and the longest one is accepted.
pub async fn a_cid_of_the_wrong_shape_is_refused(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("cid-shape");
    let mut ana = join_v2(&base, &room, "ana").await?;
    let bad = [
        json!(""),
        json!("x".repeat(65)),
        json!("has space"),
        json!("dot.ted"),
        json!("é"),
        json!(42),
        json!(true),
        json!(["k"]),
    ];
    for cid in bad {
        ana.send_json(&json!({"message": "refused", "cid": cid}))
            .await?;
        ana.expect_error(BAD_CID).await?;
    }
    ana.send_json(&json!({"message": "no cid", "cid": null}))
        .await?;
    let plain = ana.recv_message().await?;
    ensure_eq!(plain.seq, 1, "nothing was stored before it");
    ensure_eq!(plain.cid, None, "a null cid is no cid");
    let longest = format!("{}_-Z9", "a".repeat(60));
    ana.say_with_cid("longest", &longest).await?;
    let m = ana.recv_message().await?;
    ensure_next(&plain, &m)?;
    ensure_eq!(m.cid, Some(longest), "a 64-character cid");
    ana.close().await
}

/// Waits (bounded) until this machine's clock, which the backends share, is past `ms`.
async fn clock_past(ms: u64) -> Result<()> {
    for _ in 0..200 {
        if now_ms() > ms {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    crate::bail!("the clock did not pass {ms}")
}

/// Fast group: a window of `fast::CID_WINDOW_MESSAGES` messages and no time window. A
/// repeat within the window is the original; once the original is older, the same cid
/// is a new message.
pub async fn a_cid_is_forgotten_beyond_the_window(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("cid-window");
    let mut ana = join_v2(&base, &room, "ana").await?;
    let window = fast::CID_WINDOW_MESSAGES as usize;
    ana.say_with_cid("first", "w").await?;
    let original = ana.recv_message().await?;
    // The original is now the oldest of the last `window` messages: still recognised.
    let filler = send_many(&mut ana, window - 1, "filler").await?;
    ana.say_with_cid("first", "w").await?;
    ensure_eq!(
        ana.recv_message().await?,
        original,
        "a repeat within the window"
    );
    // One more and it is outside: the same cid is a new message.
    let more = send_many(&mut ana, 1, "one more").await?;
    clock_past(original.timestamp).await?;
    ana.say_with_cid("first again", "w").await?;
    let again = ana.recv_message().await?;
    ensure_next(&more[0], &again)?;
    ensure_eq!(
        (again.message.as_str(), again.cid.as_deref()),
        ("first again", Some("w")),
        "the new message"
    );
    ensure_eq!(filler.len(), window - 1, "fillers sent");
    ana.close().await
}

/// The dedupe lives with the message in storage: a repeat is recognised after the room
/// was evicted from memory (its socket still open) and after the backend restarted.
pub async fn a_cid_survives_an_eviction_and_a_restart(ctx: Ctx) -> Result<()> {
    let backend = ctx.backend();
    let spec = InstanceSpec {
        hibernate: true,
        ..InstanceSpec::with(&[("rate_burst", "1000000"), ("rate_per_sec", "1000000")])
    };
    let instance = ctx.start_own("cid-durable", spec).await?;
    let base = instance.base_url();
    let room = ctx.room("cid-durable");
    let mut ana = join_v2(&base, &room, "ana").await?;
    ana.say_with_cid("kept", "durable-1").await?;
    let original = ana.recv_message().await?;

    let mark = instance.logs().mark();
    backend.await_eviction(&instance, mark).await?;
    let mark = instance.logs().mark();
    ana.say_with_cid("kept", "durable-1").await?;
    ensure_eq!(
        ana.recv_message().await?,
        original,
        "the repeat after the eviction"
    );
    backend.confirm_restored(&instance, mark, 1).await?;

    instance.restart().await?;
    drop(ana);
    let base = instance.base_url();
    let mut ana = Client::connect(&base, &room, "ana after the restart").await?;
    let join = ana.hello_v2("ana").await?;
    ensure_eq!(
        join.backlog,
        vec![original.clone()],
        "history after the restart"
    );
    ana.say_with_cid("kept", "durable-1").await?;
    ensure_eq!(
        ana.recv_message().await?,
        original,
        "the repeat after the restart"
    );
    ana.say("after").await?;
    let next: Msg = ana.recv_message().await?;
    ensure_next(&original, &next)?;
    ensure!(next.cid.is_none(), "no cid given, none sent back");
    ana.close().await
}
