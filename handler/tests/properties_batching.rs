//! Property tests of batching and the v2 opt-ins over random sequences of opens, frames,
//! Each step is also applied to a room rebuilt from serialized sessions plus a copy of
//! storage (what a Durable Object does after hibernation), and the two must agree.

mod common;

use common::model::{self, advance, apply, Op, EPOCH, OPT_INS};
use common::{ops, parse, peer, rebuilt};

use chat_handler::{Action, Config, ConnId, Frame, MemoryStorage, Room, Session, Version};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Traffic from v1, v2 and batch sessions (every opt-in of `model::OPT_INS`).
fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        ops::connect(),
        ops::hello(0..OPT_INS.len() as u8),
        ops::chat(false),
        ops::typing(),
        ops::text(),
        ops::binary(),
        ops::close(),
        ops::advance(),
        ops::tick(),
    ]
}

/// [`op`], plus messages long on the wire: frames of up to about 6 KB.
fn op_with_spam() -> impl Strategy<Value = Op> {
    prop_oneof![3 => op(), 1 => ops::spam()]
}

/// [`config`] with room for long messages, batches long in frames and short in
/// bytes: `batch_max_bytes` rather than `batch_max` cuts them.
fn bytes_config(batch_max_bytes: usize) -> Config {
    Config {
        max_frame_bytes: 8192,
        batch_max: 1000,
        batch_max_bytes,
        ..config()
    }
}

/// The shared small config, with windows that the clock steps of the ops cross often,
/// and small batches.
fn config() -> Config {
    Config {
        batch_window_ms: 1500,
        batch_send_budget: 2,
        batch_max: 3,
        ..model::config()
    }
}

/// Every message each connection is sent by `actions`, in order, as sent.
fn messages(actions: &[Action]) -> Vec<(ConnId, Frame)> {
    let mut out = Vec::new();
    for a in actions {
        match a {
            Action::Send { to, frame } => out.push((*to, frame.clone())),
            Action::Broadcast { to, frame } => {
                out.extend(to.iter().map(|c| (*c, frame.clone())));
            }
            _ => {}
        }
    }
    out
}

/// Every frame each connection is sent by `actions`, in order, batches unwrapped.
fn frames(actions: &[Action]) -> Vec<(ConnId, String)> {
    messages(actions)
        .into_iter()
        .flat_map(|(c, m)| common::unbatch(&m).into_iter().map(move |f| (c, f)))
        .collect()
}

/// Applies a `roster`/`joined`/`quit` frame to a roster view (a multiset of names).
fn apply_roster_frame(view: &mut Vec<String>, v: &Value) {
    if let Some(roster) = v.get("roster").and_then(Value::as_array) {
        view.extend(
            roster
                .iter()
                .filter_map(|e| e["name"].as_str())
                .map(str::to_owned),
        );
    } else if let Some(name) = v.get("joined").and_then(Value::as_str) {
        view.push(name.to_owned());
    } else if let Some(name) = v.get("quit").and_then(Value::as_str) {
        if let Some(i) = view.iter().position(|n| n == name) {
            view.remove(i);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn room_invariants_hold(ops in proptest::collection::vec(op(), 1..120)) {
        let cfg = config();
        let mut room = Room::open(cfg.clone(), MemoryStorage::new(), EPOCH).unwrap();
        let mut now = 1_000u64;
        let (mut last_seq, mut last_ts) = (0u64, 0u64);
        // Every message ever broadcast, by seq: the model of history.
        let mut history: BTreeMap<u64, Value> = BTreeMap::new();
        // What each connection believes the roster is, from the joined/quit frames it
        // was sent: the model the roster invariant is checked against.
        let mut views: BTreeMap<ConnId, Vec<String>> = BTreeMap::new();

        // Each joined connection's protocol, as of its join: (version, batched).
        let mut kinds: BTreeMap<ConnId, (Version, bool)> = BTreeMap::new();

        for (i, op) in ops.iter().enumerate() {
            // The clock may also step backwards a little.
            now = advance(now, op);
            // After the last op, everything pending is flushed, as a backend does before
            // it drops a room.
            let last = i + 1 == ops.len();
            let before: Vec<ConnId> = room.members().collect();
            let joining = match (op, op.conn()) {
                (Op::Hello { .. }, Some(conn)) if room.session(conn).is_some() && !before.contains(&conn) => Some(conn),
                _ => None,
            };

            // A backend drops a room (hibernation) only once nothing is pending for batch
            // sessions; a room rebuilt then must behave exactly the same.
            let mut shadow = room.is_quiet(now).then(|| rebuilt(&room));
            let mut actions = apply(&mut room, op, now);
            if let Some(shadow) = shadow.as_mut() {
                let shadow_actions = apply(shadow, op, now);
                prop_assert_eq!(&actions, &shadow_actions, "a rebuilt room must behave the same");
            }
            if last {
                actions.extend(room.flush(now));
            }

            let members: Vec<ConnId> = room.members().collect();
            for s in room.sessions().filter(|s| s.is_joined()) {
                kinds.insert(s.id(), (s.version(), s.is_batched()));
            }
            views.retain(|c, _| room.session(*c).is_some());
            for (to, message) in messages(&actions) {
                let kind = kinds.get(&to).copied();
                if message.starts_with(r#"{"batch""#) {
                    prop_assert_eq!(kind.map(|k| k.1), Some(true), "a batch to {} ({:?}): {}", to, kind, message);
                }
                for frame in common::unbatch(&message) {
                    let v = parse(&frame);
                    if !members.contains(&to) {
                        // Only errors, except what was pending for a batch session that
                        // the room closed in this op.
                        let closed_batch = before.contains(&to) && kind.is_some_and(|k| k.1);
                        prop_assert!(v.get("error").is_some() || closed_batch, "non-member got {}", frame);
                        continue;
                    }
                    if kind.is_some_and(|k| k.0 == Version::V1) {
                        prop_assert!(
                            v.get("roster").is_none()
                                && v.get("v").is_none()
                                && v.get("typing").is_none()
                                && v.get("typing_stopped").is_none(),
                            "v1 session got {}",
                            frame
                        );
                    }
                    apply_roster_frame(views.entry(to).or_default(), &v);
                }
            }
            for a in &actions {
                if let Action::Broadcast { frame, .. } = a {
                    let v = parse(frame);
                    if let Some(seq) = v.get("seq").and_then(Value::as_u64) {
                        // In a room whose members are all batched, a message's own
                        // broadcast reaches nobody, and a batch of one frame goes out as
                        // that frame: the same message then shows up again here, to its
                        // recipients. It must be the same frame.
                        if let Some(sent) = history.get(&seq) {
                            prop_assert_eq!(sent, &v, "a message sent again is the same frame");
                            continue;
                        }
                        let ts = v["timestamp"].as_u64().unwrap();
                        prop_assert_eq!(seq, last_seq + 1, "seq has no gaps");
                        prop_assert!(ts > last_ts, "timestamp strictly increases");
                        last_seq = seq;
                        last_ts = ts;
                        history.insert(seq, v);
                    }
                }
            }

            // Every member's roster, as told by the frames it got, equals the named open
            // sessions, itself included; for a batch session, once nothing is pending.
            let mut roster: Vec<String> = room.sessions().filter_map(|s| s.name().map(str::to_owned)).collect();
            roster.sort();
            let settled = room.next_flush().is_none();
            for m in &members {
                if !settled && room.session(*m).is_some_and(Session::is_batched) {
                    continue;
                }
                let mut view = views.get(m).cloned().unwrap_or_default();
                view.sort();
                prop_assert_eq!(&view, &roster, "roster seen by {}", m);
            }

            // Resume delivers exactly the missing messages, or recovered: false.
            if let (Some(conn), resume) = (joining, op.resume()) {
                if !members.contains(&conn) {
                    continue; // refused hello
                }
                let mine: Vec<Value> = frames(&actions)
                    .into_iter()
                    .filter(|(c, _)| *c == conn)
                    .map(|(_, f)| parse(&f))
                    .collect();
                let ready = mine.iter().find(|v| v.get("ready").is_some()).expect("ready");
                let backlog: Vec<&Value> = mine.iter().filter(|v| v.get("message").is_some()).collect();
                let recovered = ready["recovered"].as_bool().unwrap();
                prop_assert_eq!(ready["seq"].as_u64().unwrap(), last_seq);
                let retained_from = last_seq.saturating_sub(cfg.retention as u64) + 1;
                let expect_recovered = match resume {
                    Some((true, seq)) => seq <= last_seq
                        && last_seq - seq <= cfg.resume_max as u64
                        && (seq + 1 >= retained_from || seq == last_seq),
                    _ => false,
                };
                prop_assert_eq!(recovered, expect_recovered);
                let expected: Vec<&Value> = match (recovered, resume) {
                    (true, Some((_, seq))) => history.range(seq + 1..).map(|(_, v)| v).collect(),
                    _ => {
                        let from = last_seq.saturating_sub(cfg.backlog as u64) + 1;
                        history.range(from..).map(|(_, v)| v).collect()
                    }
                };
                prop_assert_eq!(backlog, expected);
            }
        }
    }

    /// The same ops with and without `"batch": true`: see [`packaging`].
    #[test]
    fn batching_changes_only_the_packaging(ops in proptest::collection::vec(op(), 1..150)) {
        packaging(config(), &ops)?;
    }

    /// The same with long frames and a small `batch_max_bytes`: batches are cut by
    /// bytes, and still carry every frame once, in order.
    #[test]
    fn batches_keep_to_batch_max_bytes(
        ops in proptest::collection::vec(op_with_spam(), 1..150),
        batch_max_bytes in 1024usize..16_384,
    ) {
        packaging(bytes_config(batch_max_bytes), &ops)?;
    }

    /// A stream of messages into a room of batch sessions, with the backend ticking at
    /// each deadline: flushes are at least the window apart (so batched sends stay
    /// within the budget), and no frame waits longer than `batch_window_ms`.
    #[test]
    fn flushes_keep_to_the_window_and_the_budget(
        members in 1u64..40,
        budget in 1u64..3000,
        window_max in 0u64..400,
        gaps in proptest::collection::vec(0u64..60, 1..150),
    ) {
        let cfg = Config {
            rate_burst: u32::MAX,
            rate_per_sec: 1_000_000.0,
            batch_window_ms: window_max,
            batch_send_budget: budget,
            batch_max: 10_000,
            ..Config::default()
        };
        let mut room = Room::open(cfg, MemoryStorage::new(), EPOCH).unwrap();
        let join = |room: &mut Room<MemoryStorage>, c: ConnId, hello: &str| {
            room.try_connect(c, peer(&format!("10.0.0.{c}")), 0).unwrap();
            room.on_text(c, hello, 0)
        };
        join(&mut room, 0, r#"{"name":"sender"}"#);
        for c in 1..=members {
            join(&mut room, c, r#"{"name":"m","v":2,"batch":true}"#);
        }
        let mut now = 100_000u64;
        room.on_tick(now);
        let (_, window) = room.batch_window();
        prop_assert_eq!(window, (members * 1000).div_ceil(budget).min(window_max));
        // Per message, when it was sent and when member 1 got it.
        let mut queued: Vec<u64> = Vec::new();
        let mut delivered: Vec<(u64, u64)> = Vec::new(); // (seq, at)
        let mut flushes: Vec<u64> = Vec::new();
        let record = |actions: &[Action], at: u64, delivered: &mut Vec<(u64, u64)>, flushes: &mut Vec<u64>| {
            let mine: Vec<u64> = frames(actions)
                .into_iter()
                .filter(|(c, _)| *c == 1)
                .map(|(_, f)| parse(&f)["seq"].as_u64().unwrap())
                .collect();
            if !mine.is_empty() {
                flushes.push(at);
            }
            delivered.extend(mine.into_iter().map(|seq| (seq, at)));
        };
        for (i, gap) in gaps.iter().enumerate() {
            let at = now + gap;
            while let Some(due) = room.next_flush().filter(|d| *d <= at) {
                let actions = room.on_tick(due);
                record(&actions, due, &mut delivered, &mut flushes);
            }
            now = at;
            let actions = room.on_text(0, &json!({"message": format!("m{i}")}).to_string(), now);
            queued.push(now);
            record(&actions, now, &mut delivered, &mut flushes);
        }
        while let Some(due) = room.next_flush() {
            let at = due.max(now);
            let actions = room.on_tick(at);
            record(&actions, at, &mut delivered, &mut flushes);
        }
        let seqs: Vec<u64> = delivered.iter().map(|(seq, _)| *seq).collect();
        let all: Vec<u64> = (1..=gaps.len() as u64).collect();
        prop_assert_eq!(&seqs, &all, "every frame once, in order");
        for (seq, at) in &delivered {
            let sent = queued[*seq as usize - 1];
            prop_assert!(at - sent <= window_max, "seq {} waited {} ms", seq, at - sent);
        }
        for pair in flushes.windows(2) {
            prop_assert!(pair[1] - pair[0] >= window, "flushes {:?} closer than {} ms", pair, window);
        }
        // One send per member per flush, flushes at least the window apart: over the
        // run, batched sends per second stay within the budget (plus the flush that
        // opens the run), unless the window is at its cap, where latency wins.
        let uncapped = (members * 1000).div_ceil(budget) < window_max;
        if let (true, Some(first), Some(last)) = (uncapped, flushes.first(), flushes.last()) {
            let sends = members * flushes.len() as u64;
            prop_assert!(
                sends * 1000 <= budget * (last - first) + members * 1000,
                "{} sends over {} ms", sends, last - first
            );
        }
    }
}

/// The same ops with and without `"batch": true`: every connection gets the same
/// frames in the same order, byte for byte; batching changes only how they are packed
/// into messages (and when), and every batch keeps to `batch_max` frames and
/// `batch_max_bytes` bytes. A connection that goes away on its own loses what was
/// still pending for it, so it got a prefix.
fn packaging(cfg: Config, ops: &[Op]) -> Result<(), TestCaseError> {
    let (max, max_bytes) = (cfg.batch_max, cfg.batch_max_bytes);
    let mut batched = Room::open(cfg.clone(), MemoryStorage::new(), EPOCH).unwrap();
    let mut plain = Room::open(cfg, MemoryStorage::new(), EPOCH).unwrap();
    let mut now = 1_000u64;
    // Frames per connection, per life of the connection id: (conn, nth connect).
    type Key = (ConnId, usize);
    let mut got: BTreeMap<Key, (Vec<String>, Vec<String>)> = BTreeMap::new();
    let mut lives: BTreeMap<ConnId, usize> = BTreeMap::new();
    let mut left_early: Vec<Key> = Vec::new();
    let unbatched = |op: &Op| match op {
        // "batch": true becomes plain v2.
        Op::Hello {
            conn,
            name,
            resume,
            opt_in,
        } if OPT_INS[usize::from(*opt_in) % OPT_INS.len()] == r#""v":2,"batch":true"# => {
            Op::Hello {
                conn: *conn,
                name: *name,
                resume: *resume,
                opt_in: 1,
            }
        }
        other => other.clone(),
    };
    for (i, op) in ops.iter().enumerate() {
        now = advance(now, op);
        if let (Op::Connect { .. }, Some(conn)) = (op, op.conn()) {
            if batched.session(conn).is_none() {
                *lives.entry(conn).or_default() += 1;
            }
        }
        if let (Op::Close { .. }, Some(conn)) = (op, op.conn()) {
            if batched.session(conn).is_some() {
                left_early.push((conn, lives[&conn]));
            }
        }
        let mut a = apply(&mut batched, op, now);
        let mut b = apply(&mut plain, &unbatched(op), now);
        if i + 1 == ops.len() {
            // Both rooms are dropped: what was pending goes out, and typers are stopped.
            a.extend(batched.flush(now));
            b.extend(plain.flush(now));
        }
        for (_, message) in messages(&a) {
            if message.starts_with(r#"{"batch""#) {
                let n = common::unbatch(&message).len();
                prop_assert!(n <= max, "a batch of {} frames", n);
                prop_assert!(
                    message.len() <= max_bytes,
                    "a batch of {} bytes",
                    message.len()
                );
            }
        }
        for (conn, f) in frames(&a) {
            got.entry((conn, lives[&conn])).or_default().0.push(f);
        }
        for (conn, f) in frames(&b) {
            got.entry((conn, lives[&conn])).or_default().1.push(f);
        }
    }
    for (key, (with, without)) in &got {
        if left_early.contains(key) {
            prop_assert!(
                without.starts_with(with),
                "{:?}: {:?} is not a prefix of {:?}",
                key,
                with,
                without
            );
        } else {
            prop_assert_eq!(with, without, "{:?}", key);
        }
    }
    Ok(())
}
