//! The events a room reports to its observer match what it tells the clients: one
//! `Rejected` per error frame, one `Joined` per `ready` (with the outcome the frame
//! says), one `Stored` per chat broadcast with the number of members it reaches.

mod common;

use chat_handler::{
    Action, Close, Config, ConnId, ErrorKind, Event, JoinOutcome, MemoryStorage, Peer, Room,
    Session,
};
use common::*;
use proptest::prelude::*;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

/// A room whose events land in the returned list.
fn observed(config: Config) -> (Room<MemoryStorage>, Arc<Mutex<Vec<Event>>>) {
    let mut r = room(config);
    let seen = record(&mut r);
    (r, seen)
}

fn record(r: &mut Room<MemoryStorage>) -> Arc<Mutex<Vec<Event>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    r.set_observer(Box::new(move |e| sink.lock().unwrap().push(e)));
    seen
}

fn take(seen: &Arc<Mutex<Vec<Event>>>) -> Vec<Event> {
    std::mem::take(&mut *seen.lock().unwrap())
}

#[test]
fn each_error_frame_is_reported_with_its_kind() {
    let (mut r, seen) = observed(Config {
        rate_burst: 2,
        rate_per_sec: 0.001,
        ..Config::default()
    });
    join(&mut r, 1, "a", r#"{"name":"alice"}"#, 1);
    take(&seen);
    say(&mut r, 1, "   ", 2);
    r.on_binary(1, 3, 3);
    say(&mut r, 1, "over the burst", 4);
    assert_eq!(
        take(&seen),
        [
            Event::Rejected {
                conn: 1,
                kind: ErrorKind::MessageEmpty
            },
            Event::Rejected {
                conn: 1,
                kind: ErrorKind::Binary
            },
            Event::Rejected {
                conn: 1,
                kind: ErrorKind::RateLimited
            },
        ]
    );
    // A refused hello is reported too; its close is an action, not an event.
    r.try_connect(2, peer("b"), 5).unwrap();
    let acts = r.on_text(2, "[]", 5);
    assert_eq!(close_of(&acts, 2), Some(Close::BadHello));
    assert_eq!(
        take(&seen),
        [Event::Rejected {
            conn: 2,
            kind: ErrorKind::HelloNotObject
        }]
    );
}

#[test]
fn refusals_at_connect_are_reported_like_error_frames() {
    let (mut r, seen) = observed(Config {
        room_capacity: 3,
        seats_per_address: 2,
        ..Config::default()
    });
    r.try_connect(1, peer("a"), 1).unwrap();
    r.try_connect(2, peer("a"), 1).unwrap();
    assert_eq!(r.try_connect(3, peer("a"), 1), Err(Close::TooManySeats));
    r.try_connect(4, peer("b"), 1).unwrap();
    assert_eq!(r.try_connect(5, peer("c"), 1), Err(Close::RoomFull));
    assert_eq!(
        take(&seen),
        [
            Event::Rejected {
                conn: 3,
                kind: ErrorKind::TooManySeats
            },
            Event::Rejected {
                conn: 5,
                kind: ErrorKind::RoomFull
            },
        ]
    );
    // A backend's bug (a conn id in use) is no client's refusal: no error, no event.
    assert_eq!(r.try_connect(1, peer("a"), 1), Err(Close::Internal));
    assert_eq!(take(&seen), []);
}

#[test]
fn joins_report_whether_a_resume_recovered() {
    let (mut r, seen) = observed(unlimited());
    join(&mut r, 1, "a", r#"{"name":"alice"}"#, 1);
    say(&mut r, 1, "one", 2);
    say(&mut r, 1, "two", 3);
    let resume = |epoch: &str| json!({"name": "bob", "resume": {"epoch": epoch, "seq": 1}});
    join(&mut r, 2, "b", &resume(EPOCH).to_string(), 4);
    join(&mut r, 3, "c", &resume("another epoch").to_string(), 5);
    let joins: Vec<Event> = take(&seen)
        .into_iter()
        .filter(|e| matches!(e, Event::Joined { .. }))
        .collect();
    assert_eq!(
        joins,
        [
            Event::Joined {
                conn: 1,
                outcome: JoinOutcome::Fresh
            },
            Event::Joined {
                conn: 2,
                outcome: JoinOutcome::Recovered
            },
            Event::Joined {
                conn: 3,
                outcome: JoinOutcome::NotRecovered
            },
        ]
    );
}

#[test]
fn stored_messages_count_the_members_they_reach() {
    let (mut r, seen) = observed(unlimited());
    join(&mut r, 1, "a", r#"{"name":"alice"}"#, 1);
    join(&mut r, 2, "b", r#"{"name":"bob"}"#, 1);
    // Connected without a hello: not a member, so not a recipient.
    r.try_connect(3, peer("c"), 1).unwrap();
    take(&seen);
    say(&mut r, 1, "hi", 2);
    assert_eq!(
        take(&seen),
        [Event::Stored {
            conn: 1,
            seq: 1,
            recipients: 2
        }]
    );
    r.disconnect(2, 3);
    say(&mut r, 1, "alone", 4);
    assert_eq!(
        take(&seen),
        [Event::Stored {
            conn: 1,
            seq: 2,
            recipients: 1
        }]
    );
    // A storage failure stores nothing: a rejection, not a stored message.
    r.storage_mut().fail_appends = true;
    say(&mut r, 1, "lost", 5);
    assert_eq!(
        take(&seen),
        [Event::Rejected {
            conn: 1,
            kind: ErrorKind::NotStored
        }]
    );
}

#[test]
fn a_restored_room_counts_its_members() {
    let mut r = room(unlimited());
    join(&mut r, 1, "a", r#"{"name":"alice"}"#, 1);
    join(&mut r, 2, "b", r#"{"name":"bob"}"#, 1);
    r.try_connect(3, peer("c"), 1).unwrap();
    let sessions: Vec<Session> = r.sessions().cloned().collect();
    let mut back =
        Room::restore(r.config().clone(), r.storage().clone(), "x", sessions).expect("restore");
    let seen = record(&mut back);
    say(&mut back, 2, "after", 2);
    assert_eq!(
        take(&seen),
        [Event::Stored {
            conn: 2,
            seq: 1,
            recipients: 2
        }]
    );
}

// Over random sequences of events, the reports match the frames.

#[derive(Debug, Clone)]
enum Op {
    Connect(ConnId),
    Hello(ConnId, Option<(bool, u64)>),
    Say(ConnId, usize),
    Raw(ConnId, String),
    Binary(ConnId, usize),
    Close(ConnId),
    Tick(u64),
}

const TEXTS: &[&str] = &["hi", "", "   ", "ü😀"];

fn op() -> impl Strategy<Value = Op> {
    let conn = 0u64..5;
    prop_oneof![
        conn.clone().prop_map(Op::Connect),
        (
            conn.clone(),
            proptest::option::of((any::<bool>(), 0u64..12))
        )
            .prop_map(|(c, r)| Op::Hello(c, r)),
        (conn.clone(), 0..TEXTS.len()).prop_map(|(c, t)| Op::Say(c, t)),
        (conn.clone(), ".{0,20}").prop_map(|(c, s)| Op::Raw(c, s)),
        (conn.clone(), 0usize..300).prop_map(|(c, l)| Op::Binary(c, l)),
        conn.prop_map(Op::Close),
        (0u64..3000).prop_map(Op::Tick),
    ]
}

fn parse(frame: &str) -> Value {
    serde_json::from_str(frame).expect("server frames are JSON")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn reports_match_the_frames(ops in proptest::collection::vec(op(), 1..60)) {
        let (mut r, seen) = observed(Config {
            room_capacity: 3,
            rate_burst: 3,
            rate_per_sec: 1.0,
            rate_strikes: 3,
            resume_max: 5,
            retention: 8,
            backlog: 4,
            max_frame_bytes: 200,
            hello_timeout_ms: 2000,
            ..Config::default()
        });
        let mut now = 1u64;
        for op in &ops {
            // A refused connection gets its error frame from the backend (the frame
            // `Close::refusal_error` names), not as an action.
            let mut refused = None;
            let actions = match op {
                Op::Connect(c) if r.session(*c).is_none() => {
                    let peer = Peer { addr: format!("10.0.0.{c}") };
                    r.try_connect(*c, peer, now).unwrap_or_else(|close| {
                        if close.refusal_error().is_some() {
                            refused = Some(*c);
                        }
                        Vec::new()
                    })
                }
                Op::Connect(_) => Vec::new(),
                Op::Hello(c, resume) => {
                    let mut hello = json!({"name": format!("n{c}")});
                    if let Some((good, seq)) = resume {
                        let epoch = if *good { EPOCH } else { "stale" };
                        hello["resume"] = json!({"epoch": epoch, "seq": seq});
                    }
                    r.on_text(*c, &hello.to_string(), now)
                }
                Op::Say(c, t) => say(&mut r, *c, TEXTS[*t], now),
                Op::Raw(c, s) => r.on_text(*c, s, now),
                Op::Binary(c, l) => r.on_binary(*c, *l, now),
                Op::Close(c) => r.disconnect(*c, now),
                Op::Tick(ms) => {
                    now += ms;
                    r.on_tick(now)
                }
            };
            let events = take(&seen);
            let mut want: Vec<String> =
                refused.iter().map(|c| format!("rejected {c}")).collect();
            for a in &actions {
                match a {
                    Action::Send { to, frame } => {
                        let v = parse(frame);
                        if v.get("error").is_some() {
                            want.push(format!("rejected {to}"));
                        }
                        if v.get("ready").is_some() {
                            let recovered = v["recovered"] == json!(true);
                            want.push(format!("joined {to} {recovered}"));
                        }
                    }
                    Action::Broadcast { to, frame } => {
                        let v = parse(frame);
                        if let Some(seq) = v.get("seq") {
                            let n = to.len();
                            want.push(format!("stored {seq} {n}"));
                        }
                    }
                    _ => {}
                }
            }
            let got: Vec<String> = events
                .iter()
                .map(|e| match e {
                    Event::Rejected { conn, .. } => format!("rejected {conn}"),
                    Event::Joined { conn, outcome } => {
                        format!("joined {conn} {}", *outcome == JoinOutcome::Recovered)
                    }
                    Event::Stored { seq, recipients, .. } => format!("stored {seq} {recipients}"),
                    Event::Published { seq, recipients } => {
                        format!("published {seq} {recipients}")
                    }
                })
                .collect();
            // Events come in the order their frames are queued, except that a join's
            // report follows its whole join sequence: compare as multisets.
            let (mut got, mut want) = (got, want);
            got.sort();
            want.sort();
            prop_assert_eq!(got, want, "after {:?}", op);
        }
    }
}
