//! The first frame is the hello, whatever it contains.

use super::{join, SILENCE};
use crate::client::{Client, Event, Frame};
use crate::harness::{tight, Ctx};
use crate::{bail, ensure, ensure_eq, Result};
use serde_json::json;
use std::time::{Duration, Instant};

enum First {
    Text(String),
    Binary(Vec<u8>),
}

/// Every refused hello gets its error, then close 1008, and the room hears nothing.
pub async fn bad_hello_gets_error_and_close_1008(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("hello-bad");
    let (mut observer, _) = join(&base, &room, "observer").await?;
    let name = |n: serde_json::Value| First::Text(json!({ "name": n }).to_string());
    // The error sentences of docs/protocol.md ("Client → server").
    let too_long = "Name is too long.";
    let control = "Name may not contain control characters.";
    let bidi = "Name may not contain text-direction override characters.";
    let not_string = "Name must be a string.";
    let not_object = r#"The first frame must be a JSON object like {"name": "alice"}."#;
    let binary = "Binary frames are not supported: send JSON text frames.";
    let cases = [
        ("33-char name", name(json!("a".repeat(33))), too_long),
        ("33 two-byte chars", name(json!("é".repeat(33))), too_long),
        (
            "33 chars after trimming",
            name(json!(format!(" {} ", "b".repeat(33)))),
            too_long,
        ),
        ("newline in name", name(json!("bad\nname")), control),
        ("tab in name", name(json!("bad\tname")), control),
        ("NUL in name", name(json!("nul\u{0}")), control),
        ("DEL in name", name(json!("del\u{7f}")), control),
        ("right-to-left override", name(json!("\u{202E}evil")), bidi),
        ("left-to-right embedding", name(json!("a\u{202A}b")), bidi),
        ("first strong isolate", name(json!("x\u{2068}y")), bidi),
        ("pop directional isolate", name(json!("x\u{2069}")), bidi),
        ("numeric name", name(json!(5)), not_string),
        ("array name", name(json!(["alice"])), not_string),
        ("object name", name(json!({"first": "a"})), not_string),
        ("not JSON", First::Text("hello".into()), not_object),
        (
            "JSON array",
            First::Text(r#"[{"name":"alice"}]"#.into()),
            not_object,
        ),
        ("JSON string", First::Text(r#""alice""#.into()), not_object),
        ("JSON null", First::Text("null".into()), not_object),
        ("empty text", First::Text(String::new()), not_object),
        (
            "binary frame",
            First::Binary(br#"{"name":"alice"}"#.to_vec()),
            binary,
        ),
    ];
    for (what, first, error) in cases {
        let mut c = Client::connect(&base, &room, what).await?;
        match first {
            First::Text(t) => c.send_text(t).await?,
            First::Binary(b) => c.send_binary(b).await?,
        }
        c.expect_error(error).await?;
        c.expect_close(1008, Some("Invalid hello")).await?;
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
pub async fn valid_hellos_join_trimmed_or_anonymous(ctx: Ctx) -> Result<()> {
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
/// deadline after the first, so one timer or alarm for both is not enough): not before
/// half of it, and no later than the deadline plus a generous margin
/// (`tight::HELLO_CLOSE_MARGIN_MS`). A session that sent its hello at once stays, well
/// past its own deadline, and hears nothing of the sockets that never joined.
pub async fn hello_timeout_closes_1008(ctx: Ctx) -> Result<()> {
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

    let no_hello = r#"No hello received in time: send {"name": "alice"} first."#;
    for (opened, c) in &mut silent {
        // Bounded by the client's 10 s receive timeout, ten deadlines.
        match c.next_event().await? {
            Event::Frame(Frame::Error(e)) => ensure_eq!(
                e.as_str(),
                no_hello,
                "{}: error text before the hello-timeout close",
                c.label
            ),
            other => bail!(
                "{}: expected {{\"error\": {:?}}} after the hello deadline, got {other:?}",
                c.label,
                no_hello
            ),
        }
        // Generous bounds: not at once (the deadline is counted in ms), and not long
        // after the deadline. The sockets are read one after the other, so `waited` is
        // when the error was read, at or after its arrival.
        let waited = opened.elapsed();
        ensure!(
            waited >= deadline / 2,
            "{}: closed for a late hello after only {waited:?} (hello_timeout_ms {})",
            c.label,
            tight::HELLO_TIMEOUT_MS
        );
        let latest = deadline + Duration::from_millis(tight::HELLO_CLOSE_MARGIN_MS);
        ensure!(
            waited <= latest,
            "{}: closed for a late hello only after {waited:?} (hello_timeout_ms {}, \
             allowed up to {latest:?})",
            c.label,
            tight::HELLO_TIMEOUT_MS
        );
        c.expect_close(1008, Some("Hello timeout")).await?;
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
