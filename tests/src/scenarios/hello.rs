//! The first frame is the hello, whatever it contains.

use super::{join, SILENCE};
use crate::client::{Client, Event, Frame};
use crate::harness::{tight, Ctx};
use crate::{bail, ensure, ensure_eq, Result};
use chat_handler::protocol::errors;
use chat_handler::room::{reasons, CloseCode};
use serde_json::json;
use std::time::{Duration, Instant};

enum First {
    Text(String),
    Binary(Vec<u8>),
}

/// Every refused hello gets its error, then close 1008, and the room hears nothing.
pub async fn refusals(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("hello-bad");
    let (mut observer, _) = join(&base, &room, "observer").await?;
    let name = |n: serde_json::Value| First::Text(json!({ "name": n }).to_string());
    let cases = [
        (
            "33-char name",
            name(json!("a".repeat(33))),
            errors::NAME_TOO_LONG,
        ),
        (
            "33 two-byte chars",
            name(json!("é".repeat(33))),
            errors::NAME_TOO_LONG,
        ),
        (
            "33 chars after trimming",
            name(json!(format!(" {} ", "b".repeat(33)))),
            errors::NAME_TOO_LONG,
        ),
        (
            "newline in name",
            name(json!("bad\nname")),
            errors::NAME_CONTROL,
        ),
        (
            "tab in name",
            name(json!("bad\tname")),
            errors::NAME_CONTROL,
        ),
        ("NUL in name", name(json!("nul\u{0}")), errors::NAME_CONTROL),
        (
            "DEL in name",
            name(json!("del\u{7f}")),
            errors::NAME_CONTROL,
        ),
        (
            "right-to-left override",
            name(json!("\u{202E}evil")),
            errors::NAME_BIDI,
        ),
        (
            "left-to-right embedding",
            name(json!("a\u{202A}b")),
            errors::NAME_BIDI,
        ),
        (
            "first strong isolate",
            name(json!("x\u{2068}y")),
            errors::NAME_BIDI,
        ),
        (
            "pop directional isolate",
            name(json!("x\u{2069}")),
            errors::NAME_BIDI,
        ),
        ("numeric name", name(json!(5)), errors::NAME_NOT_STRING),
        (
            "array name",
            name(json!(["alice"])),
            errors::NAME_NOT_STRING,
        ),
        (
            "object name",
            name(json!({"first": "a"})),
            errors::NAME_NOT_STRING,
        ),
        (
            "not JSON",
            First::Text("hello".into()),
            errors::HELLO_NOT_OBJECT,
        ),
        (
            "JSON array",
            First::Text(r#"[{"name":"alice"}]"#.into()),
            errors::HELLO_NOT_OBJECT,
        ),
        (
            "JSON string",
            First::Text(r#""alice""#.into()),
            errors::HELLO_NOT_OBJECT,
        ),
        (
            "JSON null",
            First::Text("null".into()),
            errors::HELLO_NOT_OBJECT,
        ),
        (
            "empty text",
            First::Text(String::new()),
            errors::HELLO_NOT_OBJECT,
        ),
        (
            "binary frame",
            First::Binary(br#"{"name":"alice"}"#.to_vec()),
            errors::BINARY,
        ),
    ];
    for (what, first, error) in cases {
        let mut c = Client::connect(&base, &room, what).await?;
        match first {
            First::Text(t) => c.send_text(t).await?,
            First::Binary(b) => c.send_binary(b).await?,
        }
        c.expect_error(error).await?;
        c.expect_close(CloseCode::POLICY, Some(reasons::BAD_HELLO))
            .await?;
    }
    // A refused hello never joined, so there is no joined and no quit to announce.
    observer.expect_silence(SILENCE).await?;
    let (late, jl) = join(&base, &room, "late").await?;
    ensure_eq!(
        jl.roster,
        vec!["observer".to_string()],
        "nobody refused stayed in the room"
    );
    observer.expect_frame(Frame::Joined("late".into())).await?;
    late.close().await?;
    observer.close().await
}

/// Hellos that join: edge lengths, trimming, anonymous, extra fields.
pub async fn accepts(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("hello-ok");
    let (mut observer, _) = join(&base, &room, "observer").await?;
    let cases = [
        (json!({ "name": "a".repeat(32) }), "a".repeat(32)),
        (json!({ "name": "é".repeat(32) }), "é".repeat(32)),
        (
            json!({ "name": format!("  {}\n", "z".repeat(32)) }),
            "z".repeat(32),
        ),
        (json!({ "name": "  bob  " }), "bob".to_string()),
        (json!({ "name": "🦀 ferris" }), "🦀 ferris".to_string()),
        (json!({ "name": "   " }), "anonymous".to_string()),
        (json!({ "name": "" }), "anonymous".to_string()),
        (json!({ "name": null }), "anonymous".to_string()),
        (json!({}), "anonymous".to_string()),
        (json!({ "message": "ignored" }), "anonymous".to_string()),
        (
            json!({ "name": "carol", "colour": "blue" }),
            "carol".to_string(),
        ),
    ];
    for (hello, expected) in cases {
        let mut c = Client::connect(&base, &room, &expected).await?;
        let j = c.hello_with(&hello, &expected).await?;
        ensure_eq!(
            j.roster,
            vec!["observer".to_string()],
            "roster for hello {hello}"
        );
        // The message inside a hello is not a chat message.
        ensure_eq!(j.ready.seq, 0, "ready.seq after hello {hello}");
        observer
            .expect_frame(Frame::Joined(expected.clone()))
            .await?;
        c.close().await?;
        observer.expect_frame(Frame::Quit(expected)).await?;
    }
    observer.expect_silence(SILENCE).await?;
    observer.close().await
}

/// Tight group (hello_timeout_ms 1000): a socket that sends no hello within the deadline
/// gets `{"error"}` and close 1008 "Hello timeout", whether it is alone in its room or
/// next to others, and each by its own deadline (the second silent socket opens half a
/// deadline after the first, so one timer or alarm for both is not enough). A session
/// that sent its hello at once stays, well past its own deadline, and hears nothing of
/// the sockets that never joined.
pub async fn timeout(ctx: Ctx) -> Result<()> {
    let deadline = Duration::from_millis(tight::HELLO_TIMEOUT_MS);
    let base = ctx.base();
    let room = ctx.room("hello-late");
    let (mut prompt, _) = join(&base, &room, "prompt").await?;

    let mut silent = Vec::new();
    let opened = Instant::now();
    silent.push((opened, Client::connect(&base, &room, "silent 1").await?));
    let alone = ctx.room("hello-alone");
    silent.push((
        opened,
        Client::connect(&base, &alone, "silent alone").await?,
    ));
    tokio::time::sleep(deadline / 2).await;
    let opened = Instant::now();
    silent.push((opened, Client::connect(&base, &room, "silent 2").await?));

    for (opened, c) in &mut silent {
        // Bounded by the client's 10 s receive timeout, ten deadlines.
        match c.next_event().await? {
            Event::Frame(Frame::Error(e)) => ensure_eq!(
                e.as_str(),
                errors::HELLO_TIMEOUT,
                "{}: error text before the hello-timeout close",
                c.label
            ),
            other => bail!(
                "{}: expected {{\"error\": {:?}}} after the hello deadline, got {other:?}",
                c.label,
                errors::HELLO_TIMEOUT
            ),
        }
        // Only a generous lower bound: not at once, i.e. the deadline is counted in ms.
        let waited = opened.elapsed();
        ensure!(
            waited >= deadline / 2,
            "{}: closed for a late hello after only {waited:?} (hello_timeout_ms {})",
            c.label,
            tight::HELLO_TIMEOUT_MS
        );
        c.expect_close(CloseCode::POLICY, Some(reasons::HELLO_TIMEOUT))
            .await?;
    }

    // The prompt session is now 1.5 deadlines old and still in the room. The closed
    // sockets never joined, so there is no quit to announce.
    prompt.expect_silence(SILENCE).await?;
    prompt.say("still here").await?;
    let m = prompt.recv_message().await?;
    ensure_eq!(m.message, "still here", "the prompt session can still talk");
    let (late, jl) = join(&base, &room, "late").await?;
    ensure_eq!(
        jl.roster,
        vec!["prompt".to_string()],
        "roster after the silent sockets were closed"
    );
    ensure_eq!(jl.backlog, vec![m], "backlog of the room");
    prompt.expect_frame(Frame::Joined("late".into())).await?;
    late.close().await?;
    prompt.expect_frame(Frame::Quit("late".into())).await?;
    prompt.close().await
}
