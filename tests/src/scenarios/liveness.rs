//! Liveness pings (local runner only: on Cloudflare the runtime keeps hibernated
//! sockets alive, and the Durable Object sends no pings of its own).

use super::join;
use super::routes::ws_path;
use crate::client::Frame;
use crate::harness::{Ctx, InstanceSpec};
use crate::wire::{self, RawFrame};
use crate::{bail, ensure, ensure_eq, Result};
use std::time::{Duration, Instant};

/// The ping interval of this scenario's instance.
const PING_INTERVAL: Duration = Duration::from_secs(1);
/// How much later than its third interval (two pings missed, then the check) a silent
/// client may be closed: generous, since it only tells "closed for the missed pongs"
/// from "never closed".
const CLOSE_MARGIN: Duration = Duration::from_secs(4);

/// The local runner pings every connection; one that misses two pongs in a row is
/// closed with 1001 "Ping timeout" (and its quit announced), while a client that
/// answers pings stays.
pub async fn unanswered_pings_close_1001_ping_timeout(ctx: Ctx) -> Result<()> {
    let spec = InstanceSpec {
        ping_interval_secs: Some(PING_INTERVAL.as_secs()),
        ..InstanceSpec::default()
    };
    let instance = ctx.start_own("pings", spec).await?;
    let base = instance.base_url();
    let room = ctx.room("pings");
    // Answers pings (the client library does, while it reads).
    let (mut good, _) = join(&base, &room, "answers").await?;

    // A raw socket returns pings to us and never answers them.
    let (handshake, raw) = wire::upgrade(&base, &ws_path(&room), &[]).await?;
    let Some(mut raw) = raw else {
        bail!("the upgrade was answered {}", handshake.status);
    };
    let opened = Instant::now();
    raw.send_frame(0x1, false, br#"{"name":"silent"}"#).await?;
    let silent = async {
        let mut pings = 0;
        let mut ready = false;
        let close = loop {
            match raw.read_frame().await? {
                Some(RawFrame::Ping) => pings += 1,
                Some(RawFrame::Text(t)) => {
                    if let Frame::Ready(_) = Frame::parse(&t)? {
                        ready = true;
                    }
                }
                Some(RawFrame::Close(close)) => break close,
                Some(other) => bail!("unexpected frame on the silent socket: {other:?}"),
                None => bail!("the silent socket ended without a close frame"),
            }
        };
        Ok((close, pings, ready, opened.elapsed()))
    };
    // Meanwhile the answering client reads (and so answers its pings): it sees the
    // silent one join and, once closed, quit.
    let answering = async {
        good.expect_frame(Frame::Joined("silent".into())).await?;
        good.expect_frame(Frame::Quit("silent".into())).await
    };
    let ((close, pings, ready, waited), ()) = tokio::try_join!(silent, answering)?;
    ensure!(ready, "the silent socket never got its ready frame");
    ensure_eq!(
        close,
        Some((1001, "Ping timeout".to_string())),
        "close of the socket that answered no ping"
    );
    ensure!(
        pings >= 2,
        "closed after {pings} ping(s): a client is closed after missing two pongs"
    );
    ensure!(
        waited >= 2 * PING_INTERVAL,
        "closed after {waited:?}, before two ping intervals ({PING_INTERVAL:?} each)"
    );
    ensure!(
        waited <= 3 * PING_INTERVAL + CLOSE_MARGIN,
        "closed only after {waited:?} (ping interval {PING_INTERVAL:?})"
    );

    // The client that answers, connected for longer, is still there.
    good.say("still here").await?;
    let m = good.recv_message().await?;
    ensure_eq!(
        m.message,
        "still here",
        "the answering client can still talk"
    );
    good.close().await
}
