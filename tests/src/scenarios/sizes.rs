//! Every WebSocket message the server sends has a byte bound (issue 18): a resume of
//! the longest messages, made of characters that JSON escapes as `\u00XX` (6 bytes
//! each), reaches a batch session in batches of at most `batch_max_bytes`, and reaches
//! v1 and unbatched v2 sessions frame by frame, within the join burst's allowance.

use super::join;
use crate::client::{Client, Msg, Options};
use crate::harness::{fast, Ctx};
use crate::{bail, ensure, ensure_eq, Result};
use serde_json::{json, Value};
use std::net::Ipv4Addr;

/// `batch_max_bytes` by default (docs/protocol.md, "Limits and close codes").
const BATCH_MAX_BYTES: usize = 262_144;
/// Cloudflare's limit on one WebSocket message.
const CLOUDFLARE_MAX: usize = 1 << 20;
/// `max_message_chars` by default.
const MAX_MESSAGE_CHARS: usize = 1000;
/// The bound on one chat frame with the default limits (docs/protocol.md, "Message
/// size"): what a session that takes frames one by one may get at most.
const MAX_CHAT_FRAME_BYTES: usize = 6960;

/// `n` characters from U+000E to U+001B, starting at the `shift`th: each is escaped
/// as `\u00XX` on the wire (no short escape like `\b`, and none is white space that
/// trimming would take).
fn controls(n: usize, shift: usize) -> String {
    (0..n)
        .map(|i| char::from(0x0E + ((i + shift) % 14) as u8))
        .collect()
}

/// Sends `texts` in groups of 25 and reads each back from the sender's own socket
/// (past others' presence), checking the text and the order.
async fn store(c: &mut Client, texts: Vec<String>) -> Result<Vec<Msg>> {
    let mut out: Vec<Msg> = Vec::with_capacity(texts.len());
    for group in texts.chunks(25) {
        for text in group {
            c.feed_text(json!({ "message": text }).to_string()).await?;
        }
        c.flush().await?;
        for text in group {
            let m = c.recv_message_past_presence().await?;
            ensure!(
                &m.message == text,
                "{}: message {} came back changed",
                c.label,
                m.seq
            );
            if let Some(prev) = out.last() {
                super::ensure_next(prev, &m)?;
            }
            out.push(m);
        }
    }
    Ok(out)
}

/// A v2 batch session, a v2 session and a v1 session each resume from seq 0 of `epoch`:
/// each gets `ready` (`recovered: true`), every message of `sent` once and in order;
/// no message is over its bound: `batch_max_bytes` for the batch session (which gets
/// several batches), one chat frame for the others. Prints the figures.
async fn resume_from_zero(base: &str, room: &str, epoch: &str, sent: &[Msg]) -> Result<()> {
    let kinds: [(&str, Value, usize); 3] = [
        ("batched", json!({"v": 2, "batch": true}), BATCH_MAX_BYTES),
        ("v2", json!({"v": 2}), MAX_CHAT_FRAME_BYTES),
        ("v1", json!({}), MAX_CHAT_FRAME_BYTES),
    ];
    let last = sent.last().map_or(0, |m| m.seq);
    for (name, opt_in, bound) in kinds {
        let mut hello = json!({"name": name, "resume": {"epoch": epoch, "seq": 0}});
        if let (Some(h), Some(o)) = (hello.as_object_mut(), opt_in.as_object()) {
            h.extend(o.clone());
        }
        let mut c = Client::connect(base, room, name).await?;
        let j = match c.hello_with(&hello, name).await {
            Ok(j) => j,
            Err(e) => bail!(
                "{name}: the join of a resume of {} messages failed (largest message so far {} bytes): {e}",
                sent.len(),
                c.received().largest
            ),
        };
        ensure!(j.ready.recovered, "{name}: expected recovered: true");
        ensure_eq!(j.ready.seq, last, "{name}: ready.seq");
        ensure_eq!(j.ready.epoch.as_str(), epoch, "{name}: epoch");
        ensure_eq!(j.backlog.len(), sent.len(), "{name}: messages resumed");
        ensure!(
            j.backlog == sent,
            "{name}: the resumed messages differ from those stored"
        );
        let got = c.received().clone();
        println!(
            "{name}: {} messages resumed in {} WebSocket messages ({} batches), {} bytes, largest {} bytes (bound {bound})",
            sent.len(),
            got.messages,
            got.batches.len(),
            got.bytes,
            got.largest
        );
        ensure!(
            got.largest <= bound && got.largest <= CLOUDFLARE_MAX,
            "{name}: a message of {} bytes, over the bound of {bound}",
            got.largest
        );
        if name == "batched" {
            ensure!(
                got.bytes > BATCH_MAX_BYTES && got.batches.len() >= 2,
                "batched: {} bytes in {} batches: the case must need several",
                got.bytes,
                got.batches.len()
            );
        } else {
            ensure!(got.batches.is_empty(), "{name}: got a batch");
        }
        c.close().await?;
    }
    Ok(())
}

/// `resume_max` (150 in the Fast group) messages of `max_message_chars` characters
/// that JSON escapes, about 6 KB a frame: a batch session resuming them all from seq 0
/// gets them in batches within `batch_max_bytes`, and v1 and v2 sessions frame by
/// frame, all within the join burst's allowance of the send queue.
pub async fn a_resume_of_resume_max_longest_messages_stays_within_the_bound(
    ctx: Ctx,
) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("big-resume");
    let (mut sender, j) = join(&base, &room, "sender").await?;
    let texts = (0..fast::RESUME_MAX as usize)
        .map(|i| controls(MAX_MESSAGE_CHARS, i))
        .collect();
    let sent = store(&mut sender, texts).await?;
    resume_from_zero(&base, &room, &j.ready.epoch, &sent).await?;
    sender.close().await
}

/// The case of the security review, at the default limits: 26 addresses send 10
/// messages each of 1,000 escaped characters (about 1.6 MB of frames), then a batch
/// session resumes from seq 0. Before `batch_max_bytes` its join burst was one message
/// over the local runner's write buffer, and the socket dropped (1006) before `ready`.
pub async fn a_resume_of_260_escaped_messages_from_26_addresses_gets_ready(ctx: Ctx) -> Result<()> {
    const ADDRESSES: u8 = 26;
    /// The default `rate_burst`: what one address may send at once.
    const PER_ADDRESS: usize = 10;
    let base = ctx.base();
    let room = ctx.room("review-260");
    let mut sent: Vec<Msg> = Vec::new();
    let mut epoch = String::new();
    // One sender at a time, each from its own address, so that each gets only its own
    // messages back (and the backlog of the others at its join).
    for k in 0..ADDRESSES {
        let ip = Ipv4Addr::new(127, 0, 0, 10 + k);
        let name = format!("s{k}");
        let options = Options {
            local_ip: Some(ip),
            ..Options::default()
        };
        let mut c = Client::connect_with(&base, &room, &name, &options).await?;
        let j = c.hello(&name).await?;
        epoch = j.ready.epoch.clone();
        let texts = (0..PER_ADDRESS)
            .map(|i| controls(MAX_MESSAGE_CHARS, usize::from(k) + i))
            .collect();
        let mine = store(&mut c, texts).await?;
        if let (Some(prev), Some(first)) = (sent.last(), mine.first()) {
            super::ensure_next(prev, first)?;
        }
        sent.extend(mine);
        c.close().await?;
    }
    resume_from_zero(&base, &room, &epoch, &sent).await
}
