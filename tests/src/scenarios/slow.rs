//! The bounded send queue: a client that stops reading is closed with 1013 while the
//! others keep receiving everything; a joiner's own burst never counts against it.

use super::{ensure_next, join, send_many};
use crate::client::{Client, Event, Frame, Msg, Options};
use crate::harness::{fast, Ctx};
use crate::{bail, ensure, ensure_eq, Result};
use chat_handler::room::{reasons, CloseCode};
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

/// Fast group (send_queue_frames 16). A sender and a reader keep up; a third client
/// joins and then never reads. Messages of ~900 chars go out until the room announces
/// the slow client's quit; the reader must have every message in order, and the slow
/// client, read afterwards, must end with close 1013 "Slow consumer".
///
/// On a backend that cannot observe a client's queue (a Durable Object), the same run
/// sends [`BUFFERED_MESSAGES`] past the stalled client instead, and requires what that
/// platform guarantees: the others still get every message in order, and the slow
/// client, read afterwards, gets every one of them too, with nothing lost.
pub async fn slow_consumer(ctx: Ctx) -> Result<()> {
    let closes = ctx.backend().closes_slow_consumers();
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

    let filler = "x".repeat(880);
    let text = |i: usize| format!("{i:08} {filler}");
    let mut sent = 0usize;
    // Per fast client: messages received, and whether it has seen the slow quit.
    let mut fast_clients = [
        (sender, Vec::<Msg>::new(), false),
        (reader, Vec::new(), false),
    ];
    loop {
        let (lagging, _) = fast_clients
            .iter()
            .map(|(_, got, _)| got.len())
            .enumerate()
            .min_by_key(|&(_, n)| n)
            .unwrap_or((0, 0));
        let slow_quit = fast_clients.iter().any(|(_, _, quit)| *quit);
        if slow_quit || (!closes && sent >= BUFFERED_MESSAGES) {
            ensure!(closes || !slow_quit, "the slow client left unexpectedly");
            break;
        }
        ensure!(
            sent < MAX_MESSAGES,
            "slow client not closed after {MAX_MESSAGES} messages of ~900 chars \
             (send_queue_frames {})",
            fast::SEND_QUEUE_FRAMES
        );
        if sent < fast_clients[lagging].1.len() + WINDOW {
            fast_clients[0].0.say(&text(sent)).await?;
            sent += 1;
            continue;
        }
        // The window is full: the lagging client has a message due (or the quit).
        let (c, got, quit) = &mut fast_clients[lagging];
        read_fast(c, got, quit, &text).await?;
    }
    println!(
        "{}: slow consumer {} after {sent} messages (~{} KiB)",
        ctx.backend().name(),
        if closes { "closed" } else { "still buffered" },
        sent * 900 / 1024
    );
    // The fast clients get every message that was sent, in order, and the quit.
    for (c, got, quit) in &mut fast_clients {
        for _ in 0..=MAX_MESSAGES {
            if got.len() == sent && (*quit || !closes) {
                break;
            }
            read_fast(c, got, quit, &text).await?;
        }
    }
    let [(_, got_sender, _), (_, got_reader, _)] = &fast_clients;
    ensure_eq!(got_sender.len(), sent, "messages the sender got back");
    ensure_eq!(
        got_reader,
        got_sender,
        "both fast clients got the same messages"
    );

    // The slow client: a gap-free prefix of the messages, then close 1013 (or, where
    // the platform buffers, every message).
    let mut prefix: Vec<Msg> = Vec::new();
    for _ in 0..=MAX_MESSAGES {
        if !closes && prefix.len() == sent {
            ensure_eq!(prefix, got_sender.clone(), "the slow client's messages");
            return slow.close().await;
        }
        match slow.next_event_within(Duration::from_secs(10)).await? {
            Some(Event::Frame(Frame::Message(m))) => {
                check_in_order(&prefix, &m, &text)?;
                prefix.push(m);
            }
            Some(Event::Close(Some((code, reason)))) => {
                ensure_eq!(code, CloseCode::TRY_AGAIN_LATER, "slow consumer close code");
                ensure_eq!(reason, reasons::SLOW_CONSUMER, "slow consumer close reason");
                ensure!(
                    prefix.len() < sent,
                    "the slow client got all {sent} messages, yet was closed"
                );
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

/// Reads one frame of a fast client: the next message in order, or the slow quit.
async fn read_fast(
    c: &mut Client,
    got: &mut Vec<Msg>,
    quit: &mut bool,
    text: &impl Fn(usize) -> String,
) -> Result<()> {
    match c.recv().await? {
        Frame::Message(m) => {
            check_in_order(got, &m, text)?;
            got.push(m);
        }
        Frame::Quit(n) if n == "slow" && !*quit => *quit = true,
        other => bail!("{}: unexpected {other:?}", c.label),
    }
    Ok(())
}

fn check_in_order(got: &[Msg], m: &Msg, text: &impl Fn(usize) -> String) -> Result<()> {
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
pub async fn join_burst(ctx: Ctx) -> Result<()> {
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
