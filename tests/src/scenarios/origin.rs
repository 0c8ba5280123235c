//! The Origin policy: refusals are HTTP 403 answers to the handshake, never a 101.

use crate::client::{Client, Options};
use crate::harness::{fast, Ctx};
use crate::{bail, ensure_eq, Result};

async fn accepted(base: &str, room: &str, origin: Option<&str>) -> Result<()> {
    let options = Options {
        origin: origin.map(str::to_owned),
        ..Options::default()
    };
    let label = format!("origin {origin:?}");
    let mut c = Client::connect_with(base, room, &label, &options).await?;
    c.hello("visitor").await?;
    c.close().await
}

async fn refused(base: &str, room: &str, origin: &str) -> Result<()> {
    let options = Options {
        origin: Some(origin.to_owned()),
        ..Options::default()
    };
    match Client::try_connect(base, room, origin, &options).await? {
        Ok(_) => bail!("Origin {origin:?} was accepted; expected HTTP 403"),
        Err(r) => ensure_eq!(
            r.status,
            403,
            "status for Origin {origin:?} (body {:?})",
            r.body
        ),
    }
    Ok(())
}

/// Default group: no Origin and the same origin (compared case-insensitively) are
/// accepted; any other Origin, `null` included, is refused with HTTP 403.
pub async fn foreign_origin_is_refused_403(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("origin");
    let port = base.rsplit(':').next().unwrap_or_default().to_owned();
    accepted(&base, &room, None).await?;
    accepted(&base, &room, Some(&base)).await?;
    // Compared case-insensitively.
    accepted(&base, &room, Some(&format!("HTTP://127.0.0.1:{port}"))).await?;
    for origin in [
        "http://evil.example".to_string(),
        "null".to_string(),
        format!("http://127.0.0.1:{}", port.parse::<u32>().unwrap_or(0) + 1),
        // Host header is 127.0.0.1:PORT; the default port 80 is not PORT.
        "http://127.0.0.1".to_string(),
        format!("http://127.0.0.2:{port}"),
        // Not an allowlisted origin on the default configuration.
        fast::ALLOWED_ORIGIN.to_string(),
    ] {
        refused(&base, &room, &origin).await?;
    }
    Ok(())
}

/// Fast group: an allowlisted Origin (`fast::ALLOWED_ORIGIN`, any case) is accepted on
/// top of same-origin and no Origin; the same host with another port or scheme is not.
pub async fn allowlisted_origin_is_accepted(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("allowlist");
    accepted(&base, &room, Some(fast::ALLOWED_ORIGIN)).await?;
    accepted(
        &base,
        &room,
        Some(&fast::ALLOWED_ORIGIN.to_ascii_uppercase()),
    )
    .await?;
    accepted(&base, &room, None).await?;
    accepted(&base, &room, Some(&base)).await?;
    let without_port = fast::ALLOWED_ORIGIN
        .rsplit_once(':')
        .map(|(o, _)| o)
        .unwrap_or("");
    refused(&base, &room, without_port).await?;
    refused(
        &base,
        &room,
        &fast::ALLOWED_ORIGIN.replacen("http://", "https://", 1),
    )
    .await?;
    refused(&base, &room, "http://evil.example").await
}
