//! Property tests (retry-safe sends and history paging) over random sequences of opens, frames, closes and clock steps.
//! Each step is also applied to a room rebuilt from serialized sessions plus a copy of
//! storage (what a Durable Object does after hibernation), and the two must agree.
//! Frames include retry-safe sends (`cid`) and v2 history requests.

mod common;

use common::model::{self, advance, apply, Op, EPOCH};
use common::{ops, parse, rebuilt};

use chat_handler::{Action, Config, ConnId, MemoryStorage, Room, Version};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Traffic with retry-safe sends and history requests, from v1 and v2 sessions (no
/// batching: this suite reads what members get from `Send` and `Broadcast` alone).
fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        ops::connect(),
        ops::hello(ops::V1_OR_V2),
        ops::chat(true),
        ops::history(),
        ops::text(),
        ops::binary(),
        ops::close(),
        ops::advance(),
        ops::tick(),
    ]
}

/// Applies a `joined`/`quit` frame, or a v2 `roster` frame (the others, at join), to a
/// roster view (a multiset of names).
fn apply_roster_frame(view: &mut Vec<String>, v: &Value) {
    if let Some(roster) = v.get("roster").and_then(Value::as_array) {
        *view = roster
            .iter()
            .filter_map(|e| e["name"].as_str().map(str::to_owned))
            .collect();
    } else if let Some(name) = v.get("joined").and_then(Value::as_str) {
        view.push(name.to_owned());
    } else if let Some(name) = v.get("quit").and_then(Value::as_str) {
        if let Some(i) = view.iter().position(|n| n == name) {
            view.remove(i);
        }
    }
}

/// The shared model's config with frame buckets written through: this test rebuilds
/// the room from storage before every step, which only a written-through bucket
/// survives exactly (a backend rebuilds a room only once it is flushed or quiet, which
/// properties_batching.rs and the fuzz target check with the delayed writes).
fn config() -> Config {
    Config {
        rate_persist_ms: 0,
        ..model::config()
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
        // The seq each (address, name, cid) was last stored under: a repeat within
        // retention (every run stays inside the time window) must not be stored again.
        let mut stored_cids: BTreeMap<(String, String, String), u64> = BTreeMap::new();

        for op in &ops {
            // The clock may also step backwards a little.
            now = advance(now, op);
            let was_member = |room: &Room<MemoryStorage>, c: ConnId| room.members().any(|m| m == c);
            let joining = match (op, op.conn()) {
                (Op::Hello { .. }, Some(conn)) if room.session(conn).is_some() && !was_member(&room, conn) => Some(conn),
                _ => None,
            };

            // The sender of a chat op, as the dedupe keys it (before the op changes it).
            let sender = match (op.conn(), op.cid()) {
                (Some(conn), Some(cid)) => room
                    .session(conn)
                    .and_then(|s| Some((s.addr().to_owned(), s.name().map(str::to_owned)?, cid.to_owned()))),
                _ => None,
            };
            let seq_before = last_seq;
            let members_before: Vec<ConnId> = room.members().collect();

            let mut shadow = rebuilt(&room);
            let actions = apply(&mut room, op, now);
            let shadow_actions = apply(&mut shadow, op, now);
            prop_assert_eq!(&actions, &shadow_actions, "a rebuilt room must behave the same");

            let members: Vec<ConnId> = room.members().collect();
            views.retain(|c, _| room.session(*c).is_some());
            for a in &actions {
                match a {
                    Action::Send { to, frame } => {
                        let v = parse(frame);
                        if !members.contains(to) {
                            prop_assert!(v.get("error").is_some(), "non-member got {}", frame);
                        }
                        if members.contains(to) {
                            apply_roster_frame(views.entry(*to).or_default(), &v);
                        }
                        let v1 = room.session(*to).is_some_and(|s| s.version() == Version::V1);
                        if v1 {
                            prop_assert!(v.get("roster").is_none() && v.get("history").is_none(), "v1 got {}", frame);
                        }
                        // A chat frame to one member outside its join is the answer to a
                        // repeated cid: the original, byte for byte.
                        let chat_seq = v.get("message").and(v.get("seq")).and_then(Value::as_u64);
                        if let (Some(seq), true) = (chat_seq, members_before.contains(to)) {
                            prop_assert!(op.cid().is_some(), "{}", frame);
                            prop_assert_eq!(history.get(&seq), Some(&v), "a repeat gets the original");
                        }
                        if let (Some(page), Op::History { before, limit, .. }) = (v.get("history"), op) {
                            let (before, limit) = (before.map(u64::from), usize::from(*limit));
                            let newest = last_seq + 1;
                            let bound = before.unwrap_or(newest).min(newest);
                            let retained_from = last_seq.saturating_sub(cfg.retention as u64) + 1;
                            // A `before` at or below the retained edge leaves nothing older to page.
                            let older: Vec<&Value> = history.range(retained_from..bound.max(retained_from)).map(|(_, m)| m).collect();
                            let expected: Vec<Value> = older[older.len().saturating_sub(limit)..].iter().map(|m| (*m).clone()).collect();
                            prop_assert_eq!(page, &Value::Array(expected), "the page");
                            prop_assert_eq!(&v["before"], &json!(before.unwrap_or(newest)));
                            prop_assert_eq!(&v["more"], &json!(older.len() > limit));
                        }
                    }
                    Action::Broadcast { frame, .. } => {
                        let v = parse(frame);
                        for m in &members {
                            apply_roster_frame(views.entry(*m).or_default(), &v);
                        }
                        if let Some(seq) = v.get("seq").and_then(Value::as_u64) {
                            if let Some(key) = &sender {
                                if let Some(prev) = stored_cids.get(key) {
                                    let retained_from = seq_before.saturating_sub(cfg.retention as u64);
                                    prop_assert!(*prev <= retained_from, "cid {:?} stored again at {} (first at {})", key, seq, prev);
                                }
                                stored_cids.insert(key.clone(), seq);
                            }
                            let ts = v["timestamp"].as_u64().unwrap();
                            prop_assert_eq!(seq, last_seq + 1, "seq has no gaps");
                            prop_assert!(ts > last_ts, "timestamp strictly increases");
                            last_seq = seq;
                            last_ts = ts;
                            history.insert(seq, v);
                        }
                    }
                    _ => {}
                }
            }

            // Every member's roster, as told by the frames it got, equals the named open
            // sessions, itself included.
            let mut roster: Vec<String> = room.sessions().filter_map(|s| s.name().map(str::to_owned)).collect();
            roster.sort();
            for m in &members {
                let mut view = views.get(m).cloned().unwrap_or_default();
                view.sort();
                prop_assert_eq!(&view, &roster, "roster seen by {}", m);
            }

            // Resume delivers exactly the missing messages, or recovered: false.
            if let (Some(conn), resume) = (joining, op.resume()) {
                if !members.contains(&conn) {
                    continue; // refused hello
                }
                let mine: Vec<Value> = actions
                    .iter()
                    .filter_map(|a| match a { Action::Send { to, frame } if *to == conn => Some(parse(frame)), _ => None })
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
}
