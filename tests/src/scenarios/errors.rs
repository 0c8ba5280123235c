//! Frames after the hello: refused ones get an error and the socket stays open;
//! an oversized one closes it with 1009.

use super::routes::ws_path;
use super::{ensure_next, join, SILENCE};
use crate::client::{Client, Frame, Msg};
use crate::harness::{tight, Ctx};
use crate::wire::{self, RawFrame, RawSocket};
use crate::{bail, ensure, ensure_eq, Result};
use serde_json::json;

/// Every kind of refused chat frame, each answered with its error while nothing is
/// broadcast and no seq is used; the socket keeps working afterwards. (Fast group:
/// each refused frame costs a rate-limit token.)
pub async fn bad_message_gets_error_and_socket_stays_open(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("msg-errors");
    let (mut a, _) = join(&base, &room, "alice").await?;
    let (mut b, _) = join(&base, &room, "bob").await?;
    a.expect_frame(Frame::Joined("bob".into())).await?;
    a.say("before").await?;
    let before = a.recv_message().await?;
    ensure_eq!(
        b.recv_message().await?,
        before,
        "bob gets the first message"
    );

    let text = |v: serde_json::Value| v.to_string();
    // The error sentences of docs/protocol.md ("Client → server").
    let empty = "Message is empty.";
    let too_long = "Message is too long.";
    let not_json = r#"Invalid JSON: send a text frame like {"message": "hello"}."#;
    let wrong_shape = r#"Expected a JSON object like {"message": "hello"}."#;
    let not_string = r#""message" must be a string."#;
    let cases: Vec<(&str, String, &str)> = vec![
        ("empty message", text(json!({"message": ""})), empty),
        (
            "white space only",
            text(json!({"message": " \n\t  "})),
            empty,
        ),
        (
            "1001 chars",
            text(json!({"message": "x".repeat(1001)})),
            too_long,
        ),
        (
            "1001 two-byte chars",
            text(json!({"message": "é".repeat(1001)})),
            too_long,
        ),
        ("not JSON", "hello there".into(), not_json),
        ("truncated JSON", r#"{"message": "hi""#.into(), not_json),
        ("JSON array", r#"["hi"]"#.into(), wrong_shape),
        ("JSON string", r#""hi""#.into(), wrong_shape),
        ("JSON number", "42".into(), wrong_shape),
        ("missing message", text(json!({"text": "hi"})), wrong_shape),
        ("null message", text(json!({"message": null})), wrong_shape),
        ("only a name", text(json!({"name": "mallory"})), wrong_shape),
        ("numeric message", text(json!({"message": 5})), not_string),
        (
            "array message",
            text(json!({"message": ["hi"]})),
            not_string,
        ),
        (
            "object message",
            text(json!({"message": {"text": "hi"}})),
            not_string,
        ),
    ];
    for (what, frame, error) in cases {
        a.send_text(frame).await?;
        let got = a.recv_error().await?;
        ensure_eq!(got, error, "error for {what}");
    }
    a.send_binary(b"{\"message\":\"hi\"}".to_vec()).await?;
    ensure_eq!(
        a.recv_error().await?,
        "Binary frames are not supported: send JSON text frames.",
        "error for a binary frame"
    );
    b.expect_silence(SILENCE).await?;

    // Still open, and the refused frames used up no seq.
    a.say("still here").await?;
    let after = a.recv_message().await?;
    ensure_eq!(after.message, "still here", "message after the errors");
    ensure_next(&before, &after)?;
    ensure_eq!(
        b.recv_message().await?,
        after,
        "bob gets the message after the errors"
    );
    a.close().await?;
    b.close().await
}

/// Accepted messages at the limits, and what is broadcast for them.
pub async fn messages_at_the_limits_are_broadcast(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("msg-content");
    let (mut a, _) = join(&base, &room, "alice").await?;
    let (mut b, _) = join(&base, &room, "bob").await?;
    a.expect_frame(Frame::Joined("bob".into())).await?;
    let cases: Vec<(&str, serde_json::Value, String)> = vec![
        // 1000 characters of two bytes each: the limit counts characters.
        (
            "1000 two-byte chars",
            json!({"message": "é".repeat(1000)}),
            "é".repeat(1000),
        ),
        (
            "1000 chars plus white space",
            json!({"message": format!("\n  {}  \t", "x".repeat(1000))}),
            "x".repeat(1000),
        ),
        (
            "emoji",
            json!({"message": "🦀".repeat(1000)}),
            "🦀".repeat(1000),
        ),
        // Newlines, tabs and direction controls are allowed inside messages.
        (
            "inner controls",
            json!({"message": "line one\nline\ttwo \u{202E}rtl\u{2066}iso"}),
            "line one\nline\ttwo \u{202E}rtl\u{2066}iso".to_string(),
        ),
        // A name or resume after the hello is ignored; unknown fields too.
        (
            "extra fields",
            json!({"message": "hi", "name": "mallory", "resume": {"epoch": "x", "seq": 1}, "x": 1}),
            "hi".to_string(),
        ),
    ];
    let mut prev: Option<Msg> = None;
    for (what, frame, expected) in cases {
        a.send_json(&frame).await?;
        let m = a.recv_message().await?;
        ensure_eq!(m.message, expected, "text broadcast for {what}");
        ensure_eq!(m.name, "alice", "sender of {what}");
        ensure_eq!(b.recv_message().await?, m, "bob gets {what}");
        if let Some(p) = &prev {
            ensure_next(p, &m)?;
        }
        prev = Some(m);
    }
    a.close().await?;
    b.close().await
}

/// A message over max_frame_bytes (64 KiB) closes the socket with 1009, before or
/// after the hello.
pub async fn oversized_message_closes_1009(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("too-big");
    let (mut observer, _) = join(&base, &room, "observer").await?;
    let (mut a, _) = join(&base, &room, "alice").await?;
    observer.expect_frame(Frame::Joined("alice".into())).await?;
    let big = json!({ "message": "x".repeat(70 * 1024) }).to_string();
    a.send_text(big.clone()).await?;
    a.expect_close(1009, Some("Message too big")).await?;
    observer.expect_frame(Frame::Quit("alice".into())).await?;

    let mut early = Client::connect(&base, &room, "oversized hello").await?;
    early
        .send_text(json!({ "name": "x".repeat(70 * 1024) }).to_string())
        .await?;
    early.expect_close(1009, Some("Message too big")).await?;

    let mut bin = Client::connect(&base, &room, "oversized binary").await?;
    bin.hello("bin").await?;
    observer.expect_frame(Frame::Joined("bin".into())).await?;
    bin.send_binary(vec![b'x'; 70 * 1024]).await?;
    bin.expect_close(1009, Some("Message too big")).await?;
    observer.expect_frame(Frame::Quit("bin".into())).await?;

    // The room is fine: a message just under the cap but over 1000 chars is refused
    // with an error and the socket stays open.
    let (mut c, _) = join(&base, &room, "carol").await?;
    observer.expect_frame(Frame::Joined("carol".into())).await?;
    c.send_text(json!({ "message": "y".repeat(60 * 1024) }).to_string())
        .await?;
    ensure_eq!(
        c.recv_error().await?,
        "Message is too long.",
        "60 KiB message"
    );
    c.say("ok").await?;
    let m = c.recv_message().await?;
    ensure_eq!(
        observer.recv_message().await?,
        m,
        "observer gets carol's message"
    );
    ensure_eq!(m.seq, 1, "only carol's message was stored");
    c.close().await?;
    observer.close().await
}

/// Sends `text` as one message in fragments of at most `size` bytes: a text frame,
/// then continuation frames, the last with FIN.
async fn send_fragmented(raw: &mut RawSocket, text: &str, size: usize) -> Result<usize> {
    let chunks: Vec<&[u8]> = text.as_bytes().chunks(size).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let opcode = if i == 0 { 0x1 } else { 0x0 };
        raw.send_fragment(opcode, i + 1 == chunks.len(), chunk)
            .await?;
    }
    Ok(chunks.len())
}

/// The next text frame of a raw socket, decoded (pings are skipped).
async fn raw_frame(raw: &mut RawSocket) -> Result<Frame> {
    loop {
        match raw.read_frame().await? {
            Some(RawFrame::Text(t)) => return Frame::parse(&t),
            Some(RawFrame::Ping | RawFrame::Pong) => continue,
            other => bail!("expected a text frame, got {other:?}"),
        }
    }
}

/// Tight group (max_frame_bytes 4096): the cap applies to a message, not to a frame. A
/// message split into continuation frames, each far under the cap, closes the socket
/// with 1009 once their total exceeds it; one whose fragments add up to less is
/// reassembled and broadcast.
pub async fn fragmented_message_over_the_cap_closes_1009(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("fragments");
    let (mut observer, _) = join(&base, &room, "observer").await?;
    let (handshake, raw) = wire::upgrade(&base, &ws_path(&room), &[]).await?;
    let Some(mut raw) = raw else {
        bail!("the upgrade was answered {}", handshake.status);
    };
    raw.send_frame(0x1, false, br#"{"name":"fragments"}"#)
        .await?;
    loop {
        if let Frame::Ready(_) = raw_frame(&mut raw).await? {
            break;
        }
    }
    observer
        .expect_frame(Frame::Joined("fragments".into()))
        .await?;

    let small = json!({ "message": "s".repeat(150) }).to_string();
    let n = send_fragmented(&mut raw, &small, 64).await?;
    ensure!(n >= 3, "{n} fragments");
    let m = match raw_frame(&mut raw).await? {
        Frame::Message(m) => m,
        other => bail!("a message in {n} fragments: expected it back, got {other:?}"),
    };
    ensure_eq!(m.message, "s".repeat(150), "the reassembled message");
    ensure_eq!(observer.recv_message().await?, m, "the observer gets it");

    // 8 fragments of 600 bytes: each a seventh of the cap, 4800 bytes in all.
    let big = json!({ "message": "b".repeat(4800 - r#"{"message":""}"#.len()) }).to_string();
    ensure!(
        big.len() > tight::MAX_FRAME_BYTES,
        "the test message must exceed the cap"
    );
    send_fragmented(&mut raw, &big, 600).await?;
    ensure_eq!(
        raw.read_close().await?,
        Some((1009, "Message too big".to_string())),
        "close after fragments adding up to more than max_frame_bytes"
    );
    observer
        .expect_frame(Frame::Quit("fragments".into()))
        .await?;
    observer.expect_silence(SILENCE).await?;
    observer.close().await
}
