//! A client that stops reading. Where the backend sees its send queue (the local
//! runner), it is closed with 1013 while the others keep receiving everything; where it
//! cannot (a Durable Object: workerd buffers without telling it), the stalled client is
//! buffered and loses nothing. Either way a joiner's own burst never counts against it.

use super::{ensure_next, join, send_many};
use crate::client::{Client, Event, Frame, Msg, Options};
use crate::harness::{fast, Ctx};
use crate::observed::MetricsPage;
use crate::{bail, ensure, ensure_eq, Result};
use serde_json::json;
use std::time::Duration;

/// Most messages the slow-consumer scenario sends before giving up (~18 MB of text).
const MAX_MESSAGES: usize = 20_000;
/// Messages sent but not yet seen by both fast clients. Small, so the fast clients'
/// queues stay far below any bound while the slow client's queue grows.
const WINDOW: usize = 4;
/// A tiny receive buffer makes the slow client's TCP window, and so the server's
/// socket buffer for it, fill quickly.
const SLOW_RCVBUF: u32 = 4096;

/// Messages sent past a slow client on a backend that buffers for it instead of closing
/// it (~2.6 MB, far beyond any kernel socket buffer of the slow client).
const BUFFERED_MESSAGES: usize = 3_000;

/// Fast group (send_queue_frames 16); local runner only. A sender and a reader keep up;
/// a third client joins and then never reads. Messages of ~900 chars go out until the
/// room announces the slow client's quit; the sender and the reader must have every
/// message in order, and the slow client, read afterwards, a gap-free prefix of them
/// ending with close 1013 "Slow consumer". The runner's `/metrics` counts the close.
pub async fn slow_consumer_is_closed_1013(ctx: Ctx) -> Result<()> {
    const SLOW_CLOSES: &str = r#"edge_chat_closes_total{code="1013",reason="slow_consumer"}"#;
    // The instance is shared, so other scenarios' closes may add to the count too, but
    // never take from it.
    let closes_before = MetricsPage::scrape(&ctx.base()).await?.value(SLOW_CLOSES)?;
    let mut room = StalledRoom::open(&ctx).await?;
    room.send_until(|_, slow_quit| slow_quit).await?;
    println!(
        "{}: slow consumer closed after {} messages (~{} KiB)",
        ctx.backend().name(),
        room.sent,
        room.sent * 900 / 1024
    );
    let sent = room.sent;
    room.drain_fast(true).await?;
    let slow = &mut room.slow;
    let mut prefix: Vec<Msg> = Vec::new();
    for _ in 0..=MAX_MESSAGES {
        match slow.next_event_within(Duration::from_secs(10)).await? {
            Some(Event::Frame(Frame::Message(m))) => {
                check_in_order(&prefix, &m)?;
                prefix.push(m);
            }
            Some(Event::Close(Some((code, reason)))) => {
                ensure_eq!(code, 1013, "slow consumer close code");
                ensure_eq!(reason, "Slow consumer", "slow consumer close reason");
                ensure!(
                    prefix.len() < sent,
                    "the slow client got all {sent} messages, yet was closed"
                );
                let closes = MetricsPage::scrape(&ctx.base()).await?.value(SLOW_CLOSES)?;
                if closes < closes_before + 1.0 {
                    bail!("{SLOW_CLOSES} went from {closes_before} to {closes}");
                }
                return Ok(());
            }
            other => bail!(
                "slow client: expected messages then close 1013, got {other:?} after {} messages",
                prefix.len()
            ),
        }
    }
    bail!("slow client: no close after {} frames", prefix.len())
}

/// Fast group; Durable Object only, which cannot observe a client's queue (workerd gives
/// it no buffered amount and no backpressure). The same room as
/// [`slow_consumer_is_closed_1013`], but [`BUFFERED_MESSAGES`] go past the stalled
/// client, and what the platform guarantees is required: the slow client is not closed
/// (the room announces no quit), the others get every message in order, and the slow
/// client, read afterwards, gets every one of them too, with nothing lost.
pub async fn slow_consumer_is_buffered_not_closed(ctx: Ctx) -> Result<()> {
    let mut room = StalledRoom::open(&ctx).await?;
    room.send_until(|sent, slow_quit| slow_quit || sent >= BUFFERED_MESSAGES)
        .await?;
    let sent = room.sent;
    ensure!(
        !room.slow_quit(),
        "the slow client was closed (its quit announced) after {sent} messages"
    );
    println!(
        "{}: slow consumer still buffered after {sent} messages (~{} KiB)",
        ctx.backend().name(),
        sent * 900 / 1024
    );
    let all = room.drain_fast(false).await?;
    ensure!(
        !room.slow_quit(),
        "the slow client was closed (its quit announced) after {sent} messages"
    );
    let mut slow = room.slow;
    let mut got: Vec<Msg> = Vec::new();
    while got.len() < sent {
        match slow.next_event_within(Duration::from_secs(10)).await? {
            Some(Event::Frame(Frame::Message(m))) => {
                check_in_order(&got, &m)?;
                got.push(m);
            }
            other => bail!(
                "slow client: expected all {sent} messages, got {other:?} after {}",
                got.len()
            ),
        }
    }
    ensure_eq!(got, all, "the slow client's messages");
    slow.close().await
}

/// The text of message `i`: its number first, so order is visible, then ~900 chars.
fn text(i: usize) -> String {
    format!("{i:08} {}", "x".repeat(880))
}

/// A client that keeps up with the room: the messages it got, in order, and whether it
/// has seen the slow client's quit.
struct FastClient {
    client: Client,
    got: Vec<Msg>,
    saw_quit: bool,
}

impl FastClient {
    /// Reads one frame: the next message in order, or the slow client's quit (once).
    async fn read(&mut self) -> Result<()> {
        match self.client.recv().await? {
            Frame::Message(m) => {
                check_in_order(&self.got, &m)?;
                self.got.push(m);
            }
            Frame::Quit(n) if n == "slow" && !self.saw_quit => self.saw_quit = true,
            other => bail!("{}: unexpected {other:?}", self.client.label),
        }
        Ok(())
    }
}

/// A room with a sender and a reader that keep up, and a third client, "slow", that
/// joined with a tiny receive buffer and then stopped reading.
struct StalledRoom {
    /// The sender, then the reader.
    fast: [FastClient; 2],
    slow: Client,
    /// Messages sent so far.
    sent: usize,
}

impl StalledRoom {
    async fn open(ctx: &Ctx) -> Result<StalledRoom> {
        let base = ctx.base();
        let room = ctx.room("slow");
        let (mut sender, _) = join(&base, &room, "sender").await?;
        let (mut reader, _) = join(&base, &room, "reader").await?;
        sender.expect_frame(Frame::Joined("reader".into())).await?;
        let options = Options {
            recv_buffer: Some(SLOW_RCVBUF),
            ..Options::default()
        };
        let mut slow = Client::connect_with(&base, &room, "slow", &options).await?;
        slow.hello("slow").await?;
        for c in [&mut sender, &mut reader] {
            c.expect_frame(Frame::Joined("slow".into())).await?;
        }
        let fast = [sender, reader].map(|client| FastClient {
            client,
            got: Vec::new(),
            saw_quit: false,
        });
        Ok(StalledRoom {
            fast,
            slow,
            sent: 0,
        })
    }

    fn slow_quit(&self) -> bool {
        self.fast.iter().any(|f| f.saw_quit)
    }

    /// Sends messages from the sender, never more than [`WINDOW`] ahead of the fast
    /// client that lags most, until `done(sent, slow_quit)`.
    async fn send_until(&mut self, done: impl Fn(usize, bool) -> bool) -> Result<()> {
        while !done(self.sent, self.slow_quit()) {
            ensure!(
                self.sent < MAX_MESSAGES,
                "slow client not closed after {MAX_MESSAGES} messages of ~900 chars \
                 (send_queue_frames {})",
                fast::SEND_QUEUE_FRAMES
            );
            let lagging = if self.fast[0].got.len() <= self.fast[1].got.len() {
                0
            } else {
                1
            };
            if self.sent < self.fast[lagging].got.len() + WINDOW {
                self.fast[0].client.say(&text(self.sent)).await?;
                self.sent += 1;
            } else {
                // The window is full: the lagging client has a message due (or the quit).
                self.fast[lagging].read().await?;
            }
        }
        Ok(())
    }

    /// Reads the fast clients up to every message sent (and the slow client's quit if
    /// `quit`), checks that both got the same messages, and returns them.
    async fn drain_fast(&mut self, quit: bool) -> Result<Vec<Msg>> {
        let sent = self.sent;
        for f in &mut self.fast {
            for _ in 0..=MAX_MESSAGES {
                if f.got.len() == sent && (f.saw_quit || !quit) {
                    break;
                }
                f.read().await?;
            }
        }
        let [sender, reader] = &self.fast;
        ensure_eq!(sender.got.len(), sent, "messages the sender got back");
        ensure_eq!(
            reader.got,
            sender.got,
            "both fast clients got the same messages"
        );
        Ok(sender.got.clone())
    }
}

fn check_in_order(got: &[Msg], m: &Msg) -> Result<()> {
    let i = got.len();
    if let Some(prev) = got.last() {
        ensure_next(prev, m)?;
    }
    ensure_eq!(m.message, text(i), "message {i} (seq {})", m.seq);
    Ok(())
}

/// Fast group (capacity 8, send_queue_frames 16, resume_max 150). A joiner into a room
/// one short of full, resuming 150 messages, gets a burst of ~160 frames, ten times
/// the queue bound, while it is not reading yet: it must not be closed for it.
pub async fn join_burst_does_not_count_as_slow_consumer(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("burst");
    let (mut talker, jt) = join(&base, &room, "talker").await?;
    let epoch = jt.ready.epoch.clone();
    let mut members = Vec::new();
    for i in 1..fast::ROOM_CAPACITY - 1 {
        let name = format!("member{i}");
        let (m, _) = join(&base, &room, &name).await?;
        talker.expect_frame(Frame::Joined(name)).await?;
        members.push(m);
    }
    let backlog = fast::RESUME_MAX as usize;
    // ~900 chars each: the ~135 KB burst cannot all sit in the kernel's buffers of a
    // socket with a 4 KiB receive buffer, so most of it waits in the backend's queue.
    let prefix = format!("burst {}", "x".repeat(880));
    let sent = send_many(&mut talker, backlog, &prefix).await?;

    let options = Options {
        recv_buffer: Some(SLOW_RCVBUF),
        ..Options::default()
    };
    let mut joiner = Client::connect_with(&base, &room, "joiner", &options).await?;
    joiner
        .send_json(&json!({"name": "joiner", "resume": {"epoch": epoch, "seq": 0}}))
        .await?;
    // Let the whole burst, and a little live traffic after it, queue up unread.
    tokio::time::sleep(Duration::from_millis(300)).await;
    talker.say("live 1").await?;
    talker.say("live 2").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let j = joiner.read_join("joiner").await?;
    ensure_eq!(j.roster.len(), fast::ROOM_CAPACITY - 1, "roster size");
    ensure!(
        j.ready.recovered,
        "resume from seq 0 of {backlog} messages must recover"
    );
    ensure_eq!(j.backlog, sent, "the resumed backlog");
    for expected in ["live 1", "live 2"] {
        let m = joiner.recv_message().await?;
        ensure_eq!(m.message, expected, "live message after the join burst");
    }
    // Still open and in the room: it can talk.
    joiner.say("made it").await?;
    let m = joiner.recv_message().await?;
    ensure_eq!(m.message, "made it", "joiner's own message");
    joiner.close().await?;
    for m in members {
        m.close().await?;
    }
    talker.close().await
}
