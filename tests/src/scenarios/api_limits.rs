//! `GET /api/limits` advertises the limits a client should check before sending, from
//! the instance's own configuration, and they are exactly the limits enforced.

use super::join;
use super::routes::content_type;
use crate::client::Client;
use crate::error::Context;
use crate::harness::Ctx;
use crate::http;
use crate::{ensure, ensure_eq, Result};
use chat_handler::edge;
use chat_handler::protocol::errors;
use chat_handler::room::{reasons, CloseCode};
use serde_json::{json, Value};

/// Runs in the Default group (the handler's defaults) and in the Tight group (every
/// advertised limit overridden), against the configuration of the scenario's group.
pub async fn reflects_config(ctx: Ctx) -> Result<()> {
    let config = ctx.config()?;
    let base = ctx.base();
    let path = edge::LIMITS_PATH;

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
        "max_name_chars": config.max_name_chars,
        "max_message_chars": config.max_message_chars,
        "max_frame_bytes": config.max_frame_bytes,
    });
    ensure_eq!(got, expected, "GET {path} body");

    // What is advertised is what is enforced, on both sides of each limit.
    let room = ctx.room("limits");
    let longest_name = "n".repeat(config.max_name_chars);
    let (mut a, _) = join(&base, &room, &longest_name).await?;
    let mut long = Client::connect(&base, &room, "name one too long").await?;
    long.send_json(&json!({ "name": "n".repeat(config.max_name_chars + 1) }))
        .await?;
    long.expect_error(errors::NAME_TOO_LONG).await?;
    long.expect_close(CloseCode::POLICY, Some(reasons::BAD_HELLO))
        .await?;

    let longest = "m".repeat(config.max_message_chars);
    a.say(&longest).await?;
    let m = a.recv_message().await?;
    ensure!(
        m.message == longest,
        "a message of max_message_chars ({}) comes back unchanged",
        config.max_message_chars
    );
    a.say(&"m".repeat(config.max_message_chars + 1)).await?;
    a.expect_error(errors::MESSAGE_TOO_LONG).await?;

    // A frame of exactly max_frame_bytes is read (its message may be too long); one
    // byte more closes the socket with 1009.
    let frame = |bytes: usize| {
        let envelope = r#"{"message":""}"#.len();
        format!(
            r#"{{"message":"{}"}}"#,
            "f".repeat(bytes.saturating_sub(envelope))
        )
    };
    let fits = frame(config.max_frame_bytes);
    ensure_eq!(fits.len(), config.max_frame_bytes, "test frame size");
    let chars = config
        .max_frame_bytes
        .saturating_sub(r#"{"message":""}"#.len());
    a.send_text(fits).await?;
    if chars > config.max_message_chars {
        a.expect_error(errors::MESSAGE_TOO_LONG).await?;
    } else {
        ensure_eq!(
            a.recv_message().await?.message.len(),
            chars,
            "message of a full frame"
        );
    }
    a.send_text(frame(config.max_frame_bytes + 1)).await?;
    a.expect_close(CloseCode::TOO_BIG, Some(reasons::TOO_BIG))
        .await
}
