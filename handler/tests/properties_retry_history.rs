//! Property tests (retry-safe sends and history paging) over random sequences of opens, frames, closes and clock steps.
//! Each step is also applied to a room rebuilt from serialized sessions plus a copy of
//! storage (what a Durable Object does after hibernation), and the two must agree.
//! Frames include retry-safe sends (`cid`) and v2 history requests.

mod common;

use common::{parse, rebuilt, EPOCH};

use chat_handler::{Action, Config, ConnId, MemoryStorage, Peer, Room, Version};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
enum Op {
    Connect {
        conn: ConnId,
        addr: u8,
    },
    Hello {
        conn: ConnId,
        name: usize,
        resume: Option<(bool, u64)>,
        v2: bool,
    },
    Chat {
        conn: ConnId,
        text: usize,
        cid: Option<usize>,
    },
    History {
        conn: ConnId,
        before: Option<u64>,
        limit: usize,
    },
    Text {
        conn: ConnId,
        raw: String,
    },
    Binary {
        conn: ConnId,
        len: usize,
    },
    Close {
        conn: ConnId,
    },
    Advance {
        ms: u64,
    },
    Tick,
}

const NAMES: &[&str] = &[
    "alice",
    "bob",
    "  carol ",
    "",
    "x\u{202e}y",
    "a\tb",
    "ddddddddddddddddddddddddddddddddd",
];
const TEXTS: &[&str] = &["hi", "  spaced  ", "", "   ", "<img src=x>", "ü😀"];
const CIDS: &[&str] = &["k-1", "k-2", "bad cid"];

fn op() -> impl Strategy<Value = Op> {
    let conn = 0u64..6;
    prop_oneof![
        (conn.clone(), 0u8..3).prop_map(|(conn, addr)| Op::Connect { conn, addr }),
        (
            conn.clone(),
            0..NAMES.len(),
            proptest::option::of((any::<bool>(), 0u64..40)),
            any::<bool>()
        )
            .prop_map(|(conn, name, resume, v2)| Op::Hello {
                conn,
                name,
                resume,
                v2
            }),
        (
            conn.clone(),
            0..TEXTS.len(),
            proptest::option::of(0..CIDS.len())
        )
            .prop_map(|(conn, text, cid)| Op::Chat { conn, text, cid }),
        (conn.clone(), proptest::option::of(0u64..45), 0usize..8).prop_map(
            |(conn, before, limit)| Op::History {
                conn,
                before,
                limit
            }
        ),
        (conn.clone(), ".{0,40}").prop_map(|(conn, raw)| Op::Text { conn, raw }),
        (conn.clone(), 0usize..300).prop_map(|(conn, len)| Op::Binary { conn, len }),
        conn.prop_map(|conn| Op::Close { conn }),
        (0u64..3000).prop_map(|ms| Op::Advance { ms }),
        Just(Op::Tick),
    ]
}

fn config() -> Config {
    Config {
        room_capacity: 4,
        rate_burst: 3,
        rate_per_sec: 1.0,
        rate_strikes: 4,
        retention: 20,
        backlog: 5,
        resume_max: 10,
        max_frame_bytes: 200,
        hello_timeout_ms: 2000,
        ..Config::default()
    }
}

fn apply(room: &mut Room<MemoryStorage>, op: &Op, now: u64) -> Vec<Action> {
    match op {
        Op::Connect { conn, addr } => {
            if room.session(*conn).is_some() {
                return Vec::new(); // a backend never reuses a live id
            }
            let peer = Peer {
                addr: format!("10.0.0.{addr}"),
            };
            // A refusal reads like the close the backend then sends.
            room.try_connect(*conn, peer, now)
                .unwrap_or_else(|close| vec![Action::Close { conn: *conn, close }])
        }
        Op::Hello {
            conn,
            name,
            resume,
            v2,
        } => {
            let mut hello = json!({ "name": NAMES[*name] });
            if *v2 {
                hello["v"] = json!(2);
            }
            if let Some((good_epoch, seq)) = resume {
                hello["resume"] =
                    json!({"epoch": if *good_epoch { EPOCH } else { "stale" }, "seq": seq});
            }
            room.on_text(*conn, &hello.to_string(), now)
        }
        Op::Chat { conn, text, cid } => {
            let mut frame = json!({ "message": TEXTS[*text] });
            if let Some(cid) = cid {
                frame["cid"] = json!(CIDS[*cid]);
            }
            room.on_text(*conn, &frame.to_string(), now)
        }
        Op::History {
            conn,
            before,
            limit,
        } => {
            let mut request = json!({ "limit": limit });
            if let Some(before) = before {
                request["before"] = json!(before);
            }
            room.on_text(*conn, &json!({ "history": request }).to_string(), now)
        }
        Op::Text { conn, raw } => room.on_text(*conn, raw, now),
        Op::Binary { conn, len } => room.on_binary(*conn, *len, now),
        Op::Close { conn } => room.disconnect(*conn, now),
        Op::Advance { .. } => Vec::new(),
        Op::Tick => room.on_tick(now),
    }
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
            if let Op::Advance { ms } = op {
                // The clock may also step backwards a little.
                now = (now + ms).saturating_sub(500);
            }
            let was_member = |room: &Room<MemoryStorage>, c: ConnId| room.members().any(|m| m == c);
            let joining = match op {
                Op::Hello { conn, .. } if room.session(*conn).is_some() && !was_member(&room, *conn) => Some(*conn),
                _ => None,
            };

            // The sender of a chat op, as the dedupe keys it (before the op changes it).
            let sender = match op {
                Op::Chat { conn, cid: Some(cid), .. } => room
                    .session(*conn)
                    .and_then(|s| Some((s.addr().to_owned(), s.name().map(str::to_owned)?, CIDS[*cid].to_owned()))),
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
                            prop_assert!(matches!(op, Op::Chat { cid: Some(_), .. }), "{}", frame);
                            prop_assert_eq!(history.get(&seq), Some(&v), "a repeat gets the original");
                        }
                        if let (Some(page), Op::History { before, limit, .. }) = (v.get("history"), op) {
                            let newest = last_seq + 1;
                            let bound = before.unwrap_or(newest).min(newest);
                            let retained_from = last_seq.saturating_sub(cfg.retention as u64) + 1;
                            // A `before` at or below the retained edge leaves nothing older to page.
                            let older: Vec<&Value> = history.range(retained_from..bound.max(retained_from)).map(|(_, m)| m).collect();
                            let expected: Vec<Value> = older[older.len().saturating_sub(*limit)..].iter().map(|m| (*m).clone()).collect();
                            prop_assert_eq!(page, &Value::Array(expected), "the page");
                            prop_assert_eq!(&v["before"], &json!(before.unwrap_or(newest)));
                            prop_assert_eq!(&v["more"], &json!(older.len() > *limit));
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
            if let (Some(conn), Op::Hello { resume, .. }) = (joining, op) {
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
                    Some((true, seq)) => *seq <= last_seq
                        && last_seq - seq <= cfg.resume_max as u64
                        && (*seq + 1 >= retained_from || *seq == last_seq),
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

    #[test]
    fn decoding_arbitrary_text_never_panics(s in ".*") {
        let cfg = Config::default();
        let _ = chat_handler::ClientFrame::decode(&s, false, &cfg);
        let _ = chat_handler::ClientFrame::decode(&s, true, &cfg);
        let _ = chat_handler::edge::validate_room(&s);
        let _ = chat_handler::edge::route("GET", &s);
        let _ = chat_handler::edge::normalize_origin(&s);
        let _ = chat_handler::edge::origin_allowed(Some(&s), Some(&s), "http", &[]);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let text = String::from_utf8_lossy(&bytes);
        let mut room = Room::open(Config::default(), MemoryStorage::new(), EPOCH).unwrap();
        room.try_connect(1, Peer { addr: "a".into() }, 0).unwrap();
        room.on_text(1, r#"{"name":"a"}"#, 0);
        for a in room.on_text(1, &text, 1) {
            if let Action::Send { frame, .. } | Action::Broadcast { frame, .. } = a {
                parse(&frame);
            }
        }
    }
}
