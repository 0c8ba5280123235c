//! Faults. The local runner killed with SIGKILL while messages flow, stopped with
//! SIGTERM, and a thousand clients vanishing at once; on both backends, a room evicted
//! between messages while a sender goes on. No message a client saw may be lost, none
//! repeated, and nothing may be left behind.

use super::observability::{back_to, steady};
use super::{ensure_next, join, send_many};
use crate::client::{Client, Event, Frame, Msg};
use crate::harness::process::has_count;
use crate::harness::{local, Ctx, InstanceSpec};
use crate::observed::{EventCounts, MetricsPage};
use crate::{bail, ensure, ensure_eq, Result};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The rate limit is not under test here.
fn no_rate_limit() -> InstanceSpec {
    InstanceSpec::with(&[("rate_burst", "1000000"), ("rate_per_sec", "1000000")])
}

/// Rooms with traffic when the runner is killed.
const KILL_ROOMS: usize = 3;
/// Senders per room; each room also has one client that only listens.
const SENDERS: usize = 2;
/// Messages each room must have had before the kill.
const BEFORE_KILL: u64 = 40;
/// Most messages one sender sends, so that a room's whole history fits in one resume
/// (`resume_max` 1000) and in the join sequence the suite's client accepts.
const MAX_PER_SENDER: usize = 200;
/// A sender's pause between getting its message back and sending the next.
const PACE: Duration = Duration::from_millis(5);
/// Longest wait for the rooms to reach [`BEFORE_KILL`].
const TRAFFIC_TIMEOUT: Duration = Duration::from_secs(30);

/// What one client received before the runner died.
struct Seen {
    label: String,
    room: usize,
    msgs: Vec<Msg>,
}

/// Sends `"{label} {i}"`, waits for it to come back (recording everything that
/// arrives), pauses, and again, until the connection ends; past [`MAX_PER_SENDER`] it
/// only reads.
async fn send_until_gone(mut c: Client, room: usize, progress: Arc<AtomicU64>) -> Result<Seen> {
    let mut msgs = Vec::new();
    let mut sent = 0;
    'life: loop {
        let mine = if sent < MAX_PER_SENDER {
            let text = format!("{} {sent}", c.label);
            if c.say(&text).await.is_err() {
                break;
            }
            sent += 1;
            Some(text)
        } else {
            None
        };
        loop {
            match c.next_event().await? {
                Event::Frame(Frame::Message(m)) => {
                    progress.fetch_max(m.seq, Ordering::Relaxed);
                    let back = mine.as_deref() == Some(m.message.as_str());
                    msgs.push(m);
                    if back {
                        break;
                    }
                }
                Event::Frame(Frame::Joined(_) | Frame::Quit(_)) => {}
                Event::Close(_) | Event::Ended(_) => break 'life,
                other => bail!("{}: unexpected {other:?}", c.label),
            }
        }
        tokio::time::sleep(PACE).await;
    }
    Ok(Seen {
        label: c.label,
        room,
        msgs,
    })
}

/// Own instance, local runner with SQLite: several senders in several rooms, then
/// `kill -9` while they send, then a start on the same data dir. Every message any
/// client received is in the history with the same seq, text and timestamp; each client
/// resuming from the last message it had gets exactly what it missed; seqs go on
/// without reuse.
pub async fn kill_9_loses_no_message_a_client_saw(ctx: Ctx) -> Result<()> {
    let instance = ctx.start_own("kill-9", no_rate_limit()).await?;
    let base = instance.base_url();
    let rooms: Vec<String> = (0..KILL_ROOMS).map(|_| ctx.room("kill9")).collect();
    let mut epochs = Vec::new();
    let mut clients = Vec::new();
    for (r, room) in rooms.iter().enumerate() {
        let (listener, j) = join(&base, room, &format!("listener{r}")).await?;
        epochs.push(j.ready.epoch);
        clients.push((r, listener, false));
        for s in 0..SENDERS {
            let (sender, _) = join(&base, room, &format!("sender{r}-{s}")).await?;
            clients.push((r, sender, true));
        }
    }
    let progress: Vec<Arc<AtomicU64>> = (0..KILL_ROOMS).map(|_| Arc::default()).collect();
    let mut tasks = Vec::new();
    for (r, client, sends) in clients {
        let progress = progress[r].clone();
        tasks.push(tokio::spawn(async move {
            if sends {
                send_until_gone(client, r, progress).await
            } else {
                listen_until_gone(client, r, progress).await
            }
        }));
    }
    let started = Instant::now();
    while progress
        .iter()
        .any(|p| p.load(Ordering::Relaxed) < BEFORE_KILL)
    {
        ensure!(
            started.elapsed() < TRAFFIC_TIMEOUT,
            "the rooms did not reach {BEFORE_KILL} messages within {TRAFFIC_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    instance.kill().await;

    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.map_err(|e| crate::Error(e.to_string()))??);
    }
    for s in &seen {
        for pair in s.msgs.windows(2) {
            ensure_next(&pair[0], &pair[1]).map_err(|e| e.context(&s.label))?;
        }
    }
    let saw: usize = seen.iter().map(|s| s.msgs.len()).sum();

    instance.start_again().await?;
    let base = instance.base_url();
    let mut stored = 0;
    let mut resumed = 0;
    for (r, room) in rooms.iter().enumerate() {
        let epoch = &epochs[r];
        // The whole history: a resume from seq 0 replays every message.
        let mut checker = Client::connect(&base, room, "checker").await?;
        let hello = json!({"name": "checker", "resume": {"epoch": epoch, "seq": 0}});
        let history = checker.hello_with(&hello, "checker").await?;
        ensure_eq!(
            &history.ready.epoch,
            epoch,
            "room {r}: epoch after the kill"
        );
        ensure!(
            history.ready.recovered,
            "room {r}: a resume from 0 must recover"
        );
        let seqs: Vec<u64> = history.backlog_seqs();
        let want: Vec<u64> = (1..=history.ready.seq).collect();
        ensure_eq!(seqs, want, "room {r}: seqs of the history after the kill");
        stored += history.backlog.len();
        for s in seen.iter().filter(|s| s.room == r) {
            for m in &s.msgs {
                let kept = history.backlog.get((m.seq - 1) as usize);
                ensure!(
                    kept == Some(m),
                    "{}: received {m:?} before the kill, the history has {kept:?}",
                    s.label
                );
            }
        }
        // Each client comes back with the last message it had.
        for s in seen.iter().filter(|s| s.room == r) {
            let last = s.msgs.last().map_or(0, |m| m.seq);
            let mut back = Client::connect(&base, room, &s.label).await?;
            let hello = json!({"name": s.label, "resume": {"epoch": epoch, "seq": last}});
            let j = back.hello_with(&hello, &s.label).await?;
            ensure!(j.ready.recovered, "{}: the resume must recover", s.label);
            ensure_eq!(
                j.backlog,
                history.backlog[last as usize..].to_vec(),
                "{}: what it missed after seq {last}",
                s.label
            );
            back.close().await?;
            resumed += 1;
        }
        // Seqs go on from the stored history, never reusing one a client saw.
        checker.say("after the kill").await?;
        let next = checker.recv_message_past_presence().await?;
        ensure_eq!(next.seq, history.ready.seq + 1, "room {r}: next seq");
        if let Some(prev) = history.backlog.last() {
            ensure_next(prev, &next)?;
        }
        checker.close().await?;
    }
    println!(
        "local: kill -9 with {} senders in {KILL_ROOMS} rooms; {saw} deliveries seen, \
         {stored} messages stored, 0 lost, 0 repeated, {resumed} of {resumed} resumes \
         exact after the restart",
        KILL_ROOMS * SENDERS
    );
    Ok(())
}

/// Reads until the connection ends, recording every message.
async fn listen_until_gone(mut c: Client, room: usize, progress: Arc<AtomicU64>) -> Result<Seen> {
    let mut msgs = Vec::new();
    loop {
        match c.next_event().await? {
            Event::Frame(Frame::Message(m)) => {
                progress.fetch_max(m.seq, Ordering::Relaxed);
                msgs.push(m);
            }
            Event::Frame(Frame::Joined(_) | Frame::Quit(_)) => {}
            Event::Close(_) | Event::Ended(_) => break,
            other => bail!("{}: unexpected {other:?}", c.label),
        }
    }
    Ok(Seen {
        label: c.label,
        room,
        msgs,
    })
}

/// Own instance, local runner: on SIGTERM every socket, joined or not, gets close 1001
/// "Server going away", the process exits with status 0, and a start on the same data
/// dir has every message, the same epoch, and the next seq.
pub async fn sigterm_closes_every_socket_1001_and_exits_0(ctx: Ctx) -> Result<()> {
    let instance = ctx.start_own("sigterm", no_rate_limit()).await?;
    let base = instance.base_url();
    let rooms = [ctx.room("sigterm"), ctx.room("sigterm")];
    let mut histories = Vec::new();
    let mut clients = Vec::new();
    for room in &rooms {
        let (mut a, j) = join(&base, room, "alice").await?;
        let (mut b, _) = join(&base, room, "bob").await?;
        a.expect_frame(Frame::Joined("bob".into())).await?;
        let sent = send_many(&mut a, 5, "before sigterm").await?;
        for m in &sent {
            ensure_eq!(&b.recv_message().await?, m, "bob's copy");
        }
        histories.push((j.ready.epoch, sent));
        clients.extend([a, b]);
    }
    clients.push(Client::connect(&base, &rooms[0], "no hello yet").await?);
    let sockets = clients.len();
    let closes: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                c.expect_close(1001, Some("Server going away"))
                    .await
                    .map_err(|e| e.context("on SIGTERM"))
            })
        })
        .collect();

    let signalled = Instant::now();
    let status = instance.terminate(Duration::from_secs(15)).await?;
    let exited = signalled.elapsed();
    ensure_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM ({status})"
    );
    for close in closes {
        close.await.map_err(|e| crate::Error(e.to_string()))??;
    }

    instance.start_again().await?;
    let base = instance.base_url();
    for (room, (epoch, sent)) in rooms.iter().zip(&histories) {
        let mut c = Client::connect(&base, room, "carol").await?;
        let hello = json!({"name": "carol", "resume": {"epoch": epoch, "seq": 0}});
        let j = c.hello_with(&hello, "carol").await?;
        ensure_eq!(&j.ready.epoch, epoch, "epoch after SIGTERM");
        ensure!(j.ready.recovered, "a resume across SIGTERM must recover");
        ensure_eq!(&j.backlog, sent, "history after SIGTERM");
        c.say("after").await?;
        let next = c.recv_message().await?;
        if let Some(last) = sent.last() {
            ensure_next(last, &next)?;
        }
        c.close().await?;
    }
    let kept: usize = histories.iter().map(|(_, sent)| sent.len()).sum();
    println!(
        "local: SIGTERM: {sockets} of {sockets} sockets closed 1001, exit status 0 after \
         {:.2} s, {kept} of {kept} messages back after the restart",
        exited.as_secs_f64()
    );
    Ok(())
}

/// Rooms in the storm.
const STORM_ROOMS: usize = 10;
/// Clients per room that vanish.
const STORM_PER_ROOM: usize = 100;
/// Joins in flight at once while the storm's clients arrive.
const STORM_CONNECTING: usize = 64;
/// The runner starts with this soft open-file limit, far below what the storm needs,
/// so the storm only works if the runner raised it.
const STORM_START_NOFILE: u64 = 256;
/// How soon after the storm the runner's figures must be back where they were.
const STORM_SETTLE: Duration = Duration::from_secs(5);

/// Own instance, local runner, started with a soft open-file limit of 256 (it raises
/// it to the hard limit, and logs so). 1,000 clients in 10 rooms, each room also with
/// one client that stays, drop their TCP connections at once without a close frame:
/// each remaining member sees a quit for every one of them, and within 5 s the
/// runner's connection and room gauges and its task count are back to what they were.
pub async fn disconnect_storm_leaves_nothing_behind(ctx: Ctx) -> Result<()> {
    let storm = STORM_ROOMS * STORM_PER_ROOM;
    let (soft, hard) = local::raise_open_files_limit()?;
    let need = (storm + STORM_ROOMS) as u64 + 500;
    ensure!(
        soft >= need,
        "this test opens {storm} sockets: its open-file limit is {soft} (hard {hard}), \
         it needs about {need}"
    );
    // Every client of the storm comes from 127.0.0.1: the per-address seat cap and join
    // bucket (abuse limits, checked by their own scenarios) are lifted here.
    let spec = InstanceSpec {
        open_files_soft: Some(STORM_START_NOFILE),
        ..InstanceSpec::with(&[
            ("seats_per_address", "1000"),
            ("join_burst", "1000000"),
            ("join_per_sec", "1000000"),
        ])
    };
    let instance = ctx.start_own("storm", spec).await?;
    let logs = instance.logs();
    logs.wait_for(0, "open-file limit", Duration::from_secs(5))
        .await?;
    let raised =
        |l: &str| l.contains("open-file limit") && has_count(l, "open_files_limit", hard as usize);
    ensure!(
        logs.count_since_matching(0, raised) == 1,
        "the runner must log its open-file limit raised to the hard limit {hard}:\n{}",
        logs.tail(10).join("\n")
    );
    let base = instance.base_url();
    let rooms: Vec<String> = (0..STORM_ROOMS).map(|_| ctx.room("storm")).collect();
    let mut watchers = Vec::new();
    for room in &rooms {
        watchers.push(join(&base, room, "watcher").await?.0);
    }
    let before = steady(&base).await?;
    let connections = before.value("edge_chat_connections")?;
    let room_count = before.value("edge_chat_rooms")?;
    let tasks = before.value("edge_chat_runtime_alive_tasks")?;
    ensure_eq!(
        connections,
        STORM_ROOMS as f64,
        "connections before the storm"
    );
    ensure_eq!(room_count, STORM_ROOMS as f64, "rooms before the storm");

    let name = |i: usize| format!("s{}-{}", i % STORM_ROOMS, i / STORM_ROOMS);
    let stormers: Vec<Client> = stream::iter(0..storm)
        .map(|i| {
            let (base, room, name) = (&base, &rooms[i % STORM_ROOMS], name(i));
            async move { join(base, room, &name).await.map(|(c, _)| c) }
        })
        .buffer_unordered(STORM_CONNECTING)
        .try_collect()
        .await?;
    let during = MetricsPage::scrape(&base).await?;
    ensure_eq!(
        during.value("edge_chat_connections")?,
        (storm + STORM_ROOMS) as f64,
        "connections with the storm's clients in"
    );
    let expected: Vec<BTreeSet<String>> = (0..STORM_ROOMS)
        .map(|r| {
            (0..STORM_PER_ROOM)
                .map(|i| name(i * STORM_ROOMS + r))
                .collect()
        })
        .collect();
    for (w, want) in watchers.iter_mut().zip(&expected) {
        let joined = names_announced(w, STORM_PER_ROOM, |f| match f {
            Frame::Joined(n) => Some(n),
            _ => None,
        })
        .await?;
        ensure_eq!(&joined, want, "joined frames");
    }

    // The storm: every socket closed at once, no close frame.
    drop(stormers);
    let dropped = Instant::now();
    let quits = futures_util::future::try_join_all(watchers.iter_mut().zip(&expected).map(
        |(w, want)| async move {
            let quit = names_announced(w, STORM_PER_ROOM, |f| match f {
                Frame::Quit(n) => Some(n),
                _ => None,
            })
            .await?;
            ensure_eq!(&quit, want, "quit frames");
            Ok(())
        },
    ));
    let settled = back_to(&base, connections, room_count, tasks, STORM_SETTLE);
    let (_, page) = tokio::try_join!(quits, settled)?;
    let settle = dropped.elapsed();
    ensure_eq!(
        page.value(r#"edge_chat_closes_total{code="1013",reason="slow_consumer"}"#)?,
        0.0,
        "slow-consumer closes in the storm"
    );
    println!(
        "local: {storm} clients dropped without a close frame; every quit announced, \
         connections/rooms/tasks back to {connections}/{room_count}/{} within {:.2} s",
        page.value("edge_chat_runtime_alive_tasks")?,
        settle.as_secs_f64()
    );
    // The rooms still work.
    for w in &mut watchers {
        w.say("still here").await?;
        w.recv_message().await?;
    }
    for w in watchers {
        w.close().await?;
    }
    Ok(())
}

/// Reads frames until `n` names were announced by frames `pick` accepts (others are
/// skipped); fails on a repeated name or a close.
async fn names_announced(
    c: &mut Client,
    n: usize,
    pick: impl Fn(Frame) -> Option<String>,
) -> Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    for _ in 0..n * 4 {
        if names.len() == n {
            return Ok(names);
        }
        if let Some(name) = pick(c.recv().await?) {
            ensure!(names.insert(name.clone()), "{}: {name} twice", c.label);
        }
    }
    bail!("{}: {} of {n} names announced", c.label, names.len())
}

/// Evictions in the eviction scenario.
const EVICTIONS: usize = 2;
/// Messages sent right after each eviction, the first of which wakes the room.
const BURST: usize = 5;

/// Own instance with hibernation, both backends: the room is evicted between messages
/// while a sender goes on sending (on the Worker by workerd, on the runner by
/// `--hibernate-after-secs`). Seqs continue with nothing lost or repeated, for the
/// sender and for a member connected all along; a client that left before the
/// evictions resumes across them with exactly the messages it missed; each eviction is
/// reported as a restore.
pub async fn seq_continues_across_evictions_under_traffic(ctx: Ctx) -> Result<()> {
    let backend = ctx.backend();
    let spec = InstanceSpec {
        hibernate: true,
        ..no_rate_limit()
    };
    let instance = ctx.start_own("evictions", spec).await?;
    let base = instance.base_url();
    let room = ctx.room("evictions");
    let (mut sender, j) = join(&base, &room, "sender").await?;
    let epoch = j.ready.epoch;
    let (mut member, _) = join(&base, &room, "member").await?;
    let (mut leaver, _) = join(&base, &room, "leaver").await?;
    for name in ["member", "leaver"] {
        sender.expect_frame(Frame::Joined(name.into())).await?;
    }
    member.expect_frame(Frame::Joined("leaver".into())).await?;
    let before = EventCounts::of(&instance).await?;

    let mut all = send_many(&mut sender, BURST, "before").await?;
    for m in &all {
        ensure_eq!(&member.recv_message().await?, m, "member, before");
        ensure_eq!(&leaver.recv_message().await?, m, "leaver, before");
    }
    let left_at = all.last().map_or(0, |m| m.seq);
    leaver.close().await?;
    sender.expect_frame(Frame::Quit("leaver".into())).await?;
    member.expect_frame(Frame::Quit("leaver".into())).await?;

    for eviction in 1..=EVICTIONS {
        let mark = instance.logs().mark();
        backend.await_eviction(&instance, mark).await?;
        let mark = instance.logs().mark();
        let burst = send_many(&mut sender, BURST, &format!("after eviction {eviction}")).await?;
        for m in &burst {
            ensure_eq!(
                &member.recv_message().await?,
                m,
                "member, after eviction {eviction}"
            );
        }
        if let (Some(prev), Some(first)) = (all.last(), burst.first()) {
            ensure_next(prev, first)?;
        }
        all.extend(burst);
        backend.confirm_restored(&instance, mark, 2).await?;
    }
    let restores = EventCounts::of(&instance)
        .await?
        .since(&before)
        .get("restore")
        .copied()
        .unwrap_or(0);
    ensure!(
        restores >= EVICTIONS as u64,
        "{EVICTIONS} evictions, {restores} restores reported"
    );
    let seqs: Vec<u64> = all.iter().map(|m| m.seq).collect();
    let want: Vec<u64> = (1..=((EVICTIONS + 1) * BURST) as u64).collect();
    ensure_eq!(seqs, want, "seqs across the evictions");

    let mut back = Client::connect(&base, &room, "leaver").await?;
    let hello = json!({"name": "leaver", "resume": {"epoch": epoch, "seq": left_at}});
    let jb = back.hello_with(&hello, "leaver").await?;
    ensure!(jb.ready.recovered, "a resume across evictions must recover");
    ensure_eq!(
        jb.backlog,
        all[left_at as usize..].to_vec(),
        "what the leaver missed"
    );
    println!(
        "{}: {EVICTIONS} evictions between messages, {} messages, seqs 1..={} with none \
         lost or repeated",
        backend.name(),
        all.len(),
        all.len()
    );
    for c in [back, member, sender] {
        c.close().await?;
    }
    Ok(())
}
