//! The rate limit and the room capacity.

use super::{join, SILENCE};
use crate::client::{Client, Frame};
use crate::harness::{strict, Ctx};
use crate::{ensure_eq, Result};
use serde_json::json;

/// Default limits (burst 10): the 11th message sent back to back is refused.
pub async fn eleventh_message_in_a_burst_is_rate_limited(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("rate-11");
    let (mut a, _) = join(&base, &room, "alice").await?;
    for i in 1..=11 {
        a.feed_text(json!({ "message": format!("burst {i}") }).to_string())
            .await?;
    }
    a.flush().await?;
    for i in 1..=10u64 {
        let m = a.recv_message().await?;
        ensure_eq!(m.seq, i, "seq of burst message {i}");
        ensure_eq!(m.message, format!("burst {i}"), "text of burst message {i}");
    }
    a.expect_frame(Frame::Error("Rate limited; slow down.".into()))
        .await?;
    // Refused, not closed: one strike is far from the default 30.
    a.expect_silence(SILENCE).await?;
    a.close().await
}

/// Strict group (burst 2, no refill, 3 strikes): sustained flooding closes with 1008.
pub async fn flooding_closes_1008(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("flood");
    let (mut observer, _) = join(&base, &room, "observer").await?;
    let (mut a, _) = join(&base, &room, "flooder").await?;
    observer
        .expect_frame(Frame::Joined("flooder".into()))
        .await?;
    let frames = strict::RATE_BURST + strict::RATE_STRIKES;
    for i in 0..frames {
        a.feed_text(json!({ "message": format!("flood {i}") }).to_string())
            .await?;
    }
    a.flush().await?;
    for i in 0..strict::RATE_BURST {
        let m = a.recv_message().await?;
        ensure_eq!(m.message, format!("flood {i}"), "allowed message {i}");
        ensure_eq!(
            observer.recv_message().await?,
            m,
            "observer gets message {i}"
        );
    }
    for _ in 0..strict::RATE_STRIKES {
        a.expect_error("Rate limited; slow down.").await?;
    }
    a.expect_close(1008, Some("Rate limit exceeded repeatedly"))
        .await?;
    observer.expect_frame(Frame::Quit("flooder".into())).await?;
    observer.expect_silence(SILENCE).await?;
    observer.close().await
}

/// Strict group: one bucket per address and room, shared by its sockets, charged for
/// garbage too, and kept when the address reconnects to a room with history.
pub async fn rate_limit_is_shared_per_address_and_kept(ctx: Ctx) -> Result<()> {
    let base = ctx.base();

    // Two sockets from one address share the bucket.
    let room = ctx.room("rate-shared");
    let (mut a, _) = join(&base, &room, "alice").await?;
    let (mut b, _) = join(&base, &room, "bob").await?;
    a.expect_frame(Frame::Joined("bob".into())).await?;
    for i in 0..strict::RATE_BURST {
        a.say(&format!("a{i}")).await?;
        let m = a.recv_message().await?;
        ensure_eq!(b.recv_message().await?, m, "bob gets alice's message {i}");
    }
    b.say("my turn?").await?;
    b.expect_error("Rate limited; slow down.").await?;
    a.expect_silence(SILENCE).await?;
    a.close().await?;
    b.close().await?;

    // Garbage costs a token like a message, and the drained bucket survives a
    // reconnect of the address to a room with history (a room without any keeps
    // nothing, not even a bucket).
    let room = ctx.room("rate-kept");
    let (mut c, _) = join(&base, &room, "carol").await?;
    c.say("a real message").await?;
    c.recv_message().await?;
    for _ in 1..strict::RATE_BURST {
        c.send_text("garbage").await?;
        c.expect_error(r#"Invalid JSON: send a text frame like {"message": "hello"}."#)
            .await?;
    }
    c.say("one too many").await?;
    c.expect_error("Rate limited; slow down.").await?;
    c.close().await?;
    let mut c2 = Client::connect(&base, &room, "carol again").await?;
    let j = c2.hello("carol").await?;
    ensure_eq!(j.ready.seq, 1, "one message was stored");
    c2.say("after reconnecting").await?;
    c2.expect_error("Rate limited; slow down.").await?;
    c2.close().await
}

/// Strict group (capacity 3): connections, named or not, count; the next one is
/// closed with 1013 "Room is full"; a freed place can be taken again.
pub async fn room_full_closes_1013(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("full");
    let (mut a, _) = join(&base, &room, "alice").await?;
    let (b, _) = join(&base, &room, "bob").await?;
    a.expect_frame(Frame::Joined("bob".into())).await?;
    let unnamed = Client::connect(&base, &room, "unnamed").await?;
    ensure_eq!(strict::ROOM_CAPACITY, 3, "this scenario fills a room of 3");

    let mut over = Client::connect(&base, &room, "one too many").await?;
    over.expect_close(1013, Some("Room is full")).await?;
    // The refused connection never joined: nobody hears of it.
    a.expect_silence(SILENCE).await?;

    b.close().await?;
    a.expect_frame(Frame::Quit("bob".into())).await?;
    let (c, jc) = join(&base, &room, "carol").await?;
    ensure_eq!(jc.roster, vec!["alice".to_string()], "carol's roster");
    a.expect_frame(Frame::Joined("carol".into())).await?;

    // Full again: the unnamed socket still holds a place.
    let mut over = Client::connect(&base, &room, "one too many again").await?;
    over.expect_close(1013, Some("Room is full")).await?;
    unnamed.close().await?;
    c.close().await?;
    a.close().await
}
