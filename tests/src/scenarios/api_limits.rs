//! `GET /api/limits` advertises the limits a client should check before sending, from
//! the instance's own configuration, and they are exactly the limits enforced.

use super::join;
use super::routes::content_type;
use crate::client::Client;
use crate::error::Context;
use crate::harness::{tight, Ctx};
use crate::http;
use crate::{ensure, ensure_eq, Result};
use serde_json::{json, Value};

/// The limits `/api/limits` advertises that a chat client checks (the fourth,
/// `max_moderation_secs`, is checked as a literal).
struct Limits {
    max_name_chars: usize,
    max_message_chars: usize,
    max_frame_bytes: usize,
    history_page_max: usize,
    edit_window_secs: u64,
}

/// Default group: the defaults docs/protocol.md states (32 chars, 1000 chars, 64 KiB).
pub async fn advertised_limits_are_the_defaults_and_enforced(ctx: Ctx) -> Result<()> {
    let defaults = Limits {
        max_name_chars: 32,
        max_message_chars: 1000,
        max_frame_bytes: 65536,
        history_page_max: 100,
        edit_window_secs: 900,
    };
    advertised_and_enforced(ctx, defaults).await
}

/// Tight group: every advertised limit overridden, to the group's values.
pub async fn advertised_limits_follow_overrides_and_are_enforced(ctx: Ctx) -> Result<()> {
    let overridden = Limits {
        max_name_chars: tight::MAX_NAME_CHARS,
        max_message_chars: tight::MAX_MESSAGE_CHARS,
        max_frame_bytes: tight::MAX_FRAME_BYTES,
        history_page_max: tight::HISTORY_PAGE_MAX,
        edit_window_secs: tight::EDIT_WINDOW_SECS,
    };
    advertised_and_enforced(ctx, overridden).await
}

async fn advertised_and_enforced(ctx: Ctx, limits: Limits) -> Result<()> {
    let base = ctx.base();
    let path = "/api/limits";

    let resp = http::request(&base, "GET", path, &[]).await?;
    ensure_eq!(resp.status, 200, "GET {path} status");
    let ct = content_type(&resp);
    ensure!(
        ct.starts_with("application/json"),
        "GET {path}: content-type {ct:?}, expected application/json"
    );
    let got: Value = serde_json::from_str(&resp.body)
        .context(format!("GET {path}: body {:?} is not JSON", resp.body))?;
    let expected = json!({
        "max_name_chars": limits.max_name_chars,
        "max_message_chars": limits.max_message_chars,
        "max_frame_bytes": limits.max_frame_bytes,
        // Neither group overrides it; the Identity group's moderation scenarios check
        // that it is enforced.
        "max_moderation_secs": 604800,
        "history_page_max": limits.history_page_max,
        // Neither group overrides it; the roster scenarios check that it is enforced.
        "roster_inline_max": 100,
        // The edit scenarios check that it is enforced.
        "edit_window_secs": limits.edit_window_secs,
    });
    ensure_eq!(got, expected, "GET {path} body");

    // What is advertised is what is enforced, on both sides of each limit.
    let room = ctx.room("limits");
    let longest_name = "n".repeat(limits.max_name_chars);
    let (mut a, _) = join(&base, &room, &longest_name).await?;
    let mut long = Client::connect(&base, &room, "name one too long").await?;
    long.send_json(&json!({ "name": "n".repeat(limits.max_name_chars + 1) }))
        .await?;
    long.expect_error("Name is too long.").await?;
    long.expect_close(1008, Some("Invalid hello")).await?;

    let longest = "m".repeat(limits.max_message_chars);
    a.say(&longest).await?;
    let m = a.recv_message().await?;
    ensure!(
        m.message == longest,
        "a message of max_message_chars ({}) comes back unchanged",
        limits.max_message_chars
    );
    a.say(&"m".repeat(limits.max_message_chars + 1)).await?;
    a.expect_error("Message is too long.").await?;

    // A history page of history_page_max is served, one more is refused (v2 only).
    let mut v2 = Client::connect(&base, &room, "v2 pager").await?;
    v2.hello_v2("pager").await?;
    a.recv().await?; // the pager's joined
    v2.ask_history(json!({ "limit": limits.history_page_max }))
        .await?;
    let page = v2.recv_page().await?;
    ensure_eq!(page.history, vec![m], "a page of history_page_max");
    v2.ask_history(json!({ "limit": limits.history_page_max + 1 }))
        .await?;
    v2.expect_error(
        r#"History "limit" must be a whole number from 1 to history_page_max (see GET /api/limits)."#,
    )
    .await?;
    v2.close().await?;
    a.recv().await?; // the pager's quit

    // A frame of exactly max_frame_bytes is read (its message may be too long); one
    // byte more closes the socket with 1009.
    let frame = |bytes: usize| {
        let envelope = r#"{"message":""}"#.len();
        format!(
            r#"{{"message":"{}"}}"#,
            "f".repeat(bytes.saturating_sub(envelope))
        )
    };
    let fits = frame(limits.max_frame_bytes);
    ensure_eq!(fits.len(), limits.max_frame_bytes, "test frame size");
    let chars = limits
        .max_frame_bytes
        .saturating_sub(r#"{"message":""}"#.len());
    a.send_text(fits).await?;
    if chars > limits.max_message_chars {
        a.expect_error("Message is too long.").await?;
    } else {
        ensure_eq!(
            a.recv_message().await?.message.len(),
            chars,
            "message of a full frame"
        );
    }
    a.send_text(frame(limits.max_frame_bytes + 1)).await?;
    a.expect_close(1009, Some("Message too big")).await
}
