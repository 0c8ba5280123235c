//! One test per rule of the room: joins, chat, history, resume, limits, close codes.

mod common;

use chat_handler::{
    Action, AuditEntry, Close, Config, ErrorKind, Frame, MemoryStorage, Restriction, Room,
    ServerFrame, Session,
};
use common::*;
use serde_json::{json, Value};
use std::sync::Arc;

#[test]
fn join_sequence_is_roster_backlog_joined_ready() {
    let mut r = room(unlimited());
    join(&mut r, 1, "a", r#"{"name":"alice"}"#, 1000);
    say(&mut r, 1, "one", 1001);
    join(&mut r, 2, "b", r#"{"name":"bob"}"#, 1002);
    let acts = join(&mut r, 3, "c", r#"{"name":" carol "}"#, 1003);
    let got = frames_for(&acts, 3);
    assert_eq!(got[0], json!({"joined": "alice"}));
    assert_eq!(got[1], json!({"joined": "bob"}));
    assert_eq!(
        got[2],
        json!({"name": "alice", "message": "one", "timestamp": 1001, "seq": 1})
    );
    assert_eq!(got[3], json!({"joined": "carol"}));
    assert_eq!(
        got[4],
        json!({"ready": true, "epoch": EPOCH, "seq": 1, "recovered": false})
    );
    assert_eq!(got.len(), 5);
    // Everyone else sees only the joined broadcast.
    assert_eq!(frames_for(&acts, 1), vec![json!({"joined": "carol"})]);
}

#[test]
fn empty_room_ready_seq_is_zero() {
    let mut r = room(Config::default());
    let acts = join(&mut r, 1, "a", "{}", 5);
    let got = frames_for(&acts, 1);
    assert_eq!(
        got,
        vec![
            json!({"joined": "anonymous"}),
            json!({"ready": true, "epoch": EPOCH, "seq": 0, "recovered": false})
        ]
    );
}

#[test]
fn hello_variants_join_as_anonymous() {
    for hello in [
        "{}",
        r#"{"message":"hi"}"#,
        r#"{"name":""}"#,
        r#"{"name":"   "}"#,
        r#"{"name":null}"#,
    ] {
        let mut r = room(Config::default());
        let acts = join(&mut r, 1, "a", hello, 5);
        assert_eq!(
            frames_for(&acts, 1)[0],
            json!({"joined": "anonymous"}),
            "{hello}"
        );
        assert_eq!(r.last_seq(), 0, "a hello's message is not sent");
    }
}

#[test]
fn bad_hellos_get_an_error_then_1008() {
    let long = format!(r#"{{"name":"{}"}}"#, "x".repeat(33));
    let cases = [
        (long.as_str(), ErrorKind::NameTooLong.sentence()),
        (r#"{"name":"a\u0000b"}"#, ErrorKind::NameControl.sentence()),
        (r#"{"name":"a\u202eb"}"#, ErrorKind::NameBidi.sentence()),
        (r#"{"name":7}"#, ErrorKind::NameNotString.sentence()),
        ("not json", ErrorKind::HelloNotObject.sentence()),
        ("[1,2]", ErrorKind::HelloNotObject.sentence()),
    ];
    for (hello, err) in cases {
        let mut r = room(Config::default());
        join(&mut r, 9, "z", r#"{"name":"watcher"}"#, 1);
        r.try_connect(1, peer("a"), 1).unwrap();
        let acts = r.on_text(1, hello, 2);
        assert_eq!(
            acts[0],
            Action::Send {
                to: 1,
                frame: error_frame(err)
            },
            "{hello}"
        );
        assert_eq!(close_of(&acts, 1), Some(Close::BadHello));
        assert!(
            broadcasts(&acts).is_empty(),
            "no quit for a session that never joined"
        );
        assert!(r.session(1).is_none());
    }
}

#[test]
fn binary_first_frame_is_refused_with_1008() {
    let mut r = room(Config::default());
    r.try_connect(1, peer("a"), 1).unwrap();
    let acts = r.on_binary(1, 10, 1);
    assert_eq!(close_of(&acts, 1), Some(Close::BadHello));
}

#[test]
fn name_of_exactly_32_chars_is_accepted() {
    let mut r = room(Config::default());
    let name = "ü".repeat(32);
    let acts = join(&mut r, 1, "a", &json!({ "name": name }).to_string(), 1);
    assert_eq!(frames_for(&acts, 1)[0], json!({ "joined": name }));
}

#[test]
fn chat_reaches_everyone_with_seq_and_timestamp() {
    let mut r = room(unlimited());
    join(&mut r, 1, "a", r#"{"name":"alice"}"#, 10);
    join(&mut r, 2, "b", r#"{"name":"bob"}"#, 10);
    let acts = say(&mut r, 1, "  hello  ", 500);
    let expected = json!({"name": "alice", "message": "hello", "timestamp": 500, "seq": 1});
    assert_eq!(frames_for(&acts, 1), vec![expected.clone()]);
    assert_eq!(frames_for(&acts, 2), vec![expected]);
    // The clock going backwards or standing still still gives increasing timestamps.
    let acts = say(&mut r, 2, "again", 400);
    assert_eq!(broadcasts(&acts)[0]["timestamp"], 501);
    assert_eq!(broadcasts(&acts)[0]["seq"], 2);
}

#[test]
fn broadcast_is_one_action_with_one_frame() {
    let mut r = room(unlimited());
    for c in 0..50 {
        join(&mut r, c, &format!("10.0.0.{c}"), r#"{"name":"n"}"#, 1);
    }
    let acts = say(&mut r, 3, "x", 2);
    let n = acts
        .iter()
        .filter(|a| matches!(a, Action::Broadcast { .. }))
        .count();
    let sends = acts
        .iter()
        .filter(|a| matches!(a, Action::Send { .. }))
        .count();
    assert_eq!((n, sends), (1, 0), "{acts:?}");
}

#[test]
fn message_errors_keep_the_socket_open() {
    let mut r = room(unlimited());
    join(&mut r, 1, "a", r#"{"name":"alice"}"#, 1);
    let cases: Vec<(String, &str)> = vec![
        ("nope".into(), ErrorKind::NotJson.sentence()),
        ("[1]".into(), ErrorKind::WrongShape.sentence()),
        ("5".into(), ErrorKind::WrongShape.sentence()),
        (r#"{"name":"bob"}"#.into(), ErrorKind::WrongShape.sentence()),
        (
            r#"{"message":null}"#.into(),
            ErrorKind::WrongShape.sentence(),
        ),
        (
            r#"{"message":5}"#.into(),
            ErrorKind::MessageNotString.sentence(),
        ),
        (
            r#"{"message":" \n "}"#.into(),
            ErrorKind::MessageEmpty.sentence(),
        ),
        (
            json!({"message": "x".repeat(1001)}).to_string(),
            ErrorKind::MessageTooLong.sentence(),
        ),
    ];
    for (frame, err) in cases {
        let acts = r.on_text(1, &frame, 2);
        assert_eq!(
            frames_for(&acts, 1),
            vec![json!({ "error": err })],
            "{frame}"
        );
        assert!(close_of(&acts, 1).is_none());
    }
    let acts = r.on_binary(1, 3, 2);
    assert_eq!(
        frames_for(&acts, 1),
        vec![json!({ "error": ErrorKind::Binary.sentence() })]
    );
    assert_eq!(r.last_seq(), 0);
    let max = "😀".repeat(1000);
    let acts = say(&mut r, 1, &max, 3);
    assert_eq!(broadcasts(&acts)[0]["message"], max);
}

#[test]
fn oversized_frames_close_with_1009() {
    let cfg = Config {
        max_frame_bytes: 100,
        ..unlimited()
    };
    let mut r = room(cfg);
    join(&mut r, 1, "a", r#"{"name":"alice"}"#, 1);
    join(&mut r, 2, "b", r#"{"name":"bob"}"#, 1);
    let ok = format!(r#"{{"message":"{}"}}"#, "x".repeat(100 - 14));
    assert_eq!(ok.len(), 100);
    assert!(close_of(&r.on_text(1, &ok, 2), 1).is_none());
    let acts = r.on_text(1, &format!("{ok} "), 2);
    assert_eq!(close_of(&acts, 1), Some(Close::TooBig));
    assert_eq!(frames_for(&acts, 2), vec![json!({"quit": "alice"})]);
    let acts = r.on_binary(2, 101, 2);
    assert_eq!(close_of(&acts, 2), Some(Close::TooBig));
    // Also for a session that has not joined yet, and when the backend detects it.
    r.try_connect(3, peer("c"), 3).unwrap();
    assert_eq!(close_of(&r.on_too_big(3, 3), 3), Some(Close::TooBig));
}

#[test]
fn no_lurking_before_the_hello() {
    let mut r = room(unlimited());
    r.try_connect(1, peer("lurker"), 1).unwrap();
    let mut all = join(&mut r, 2, "a", r#"{"name":"alice"}"#, 1);
    all.extend(say(&mut r, 2, "secret", 2));
    all.extend(r.disconnect(2, 3));
    assert!(frames_for(&all, 1).is_empty());
    assert_eq!(r.members().count(), 0);
    assert_eq!(r.connection_count(), 1);
}

#[test]
fn quit_is_broadcast_once_when_a_member_leaves() {
    let mut r = room(unlimited());
    join(&mut r, 1, "a", r#"{"name":"alice"}"#, 1);
    join(&mut r, 2, "b", r#"{"name":"bob"}"#, 1);
    let acts = r.disconnect(1, 2);
    assert_eq!(frames_for(&acts, 2), vec![json!({"quit": "alice"})]);
    assert!(r.disconnect(1, 3).is_empty(), "a second close is a no-op");
    r.try_connect(3, peer("c"), 4).unwrap();
    assert!(
        broadcasts(&r.disconnect(3, 5)).is_empty(),
        "no quit for an unnamed session"
    );
}

#[test]
fn room_capacity_counts_every_connection() {
    let mut r = room(Config {
        room_capacity: 2,
        ..Config::default()
    });
    assert!(r.try_connect(1, peer("a"), 1).is_ok());
    assert!(r.try_connect(2, peer("b"), 1).is_ok());
    assert_eq!(r.try_connect(3, peer("c"), 1), Err(Close::RoomFull));
    assert!(r.session(3).is_none());
    r.disconnect(1, 2);
    assert!(r.try_connect(3, peer("c"), 2).is_ok());
}

#[test]
fn duplicate_connection_id_is_refused_without_harming_the_room() {
    let mut r = room(Config::default());
    join(&mut r, 1, "a", r#"{"name":"alice"}"#, 1);
    assert_eq!(r.try_connect(1, peer("b"), 2), Err(Close::Internal));
    assert_eq!(r.session(1).and_then(|s| s.name()), Some("alice"));
}

#[test]
fn history_replays_the_last_100() {
    let mut r = room(unlimited());
    join(&mut r, 1, "a", r#"{"name":"alice"}"#, 1);
    for i in 0..150 {
        say(&mut r, 1, &format!("m{i}"), 10 + i);
    }
    let acts = join(&mut r, 2, "b", r#"{"name":"bob"}"#, 1000);
    let got = frames_for(&acts, 2);
    let msgs: Vec<&Value> = got
        .iter()
        .filter(|v| v.get("seq").is_some() && v.get("ready").is_none())
        .collect();
    assert_eq!(msgs.len(), 100);
    assert_eq!(msgs[0]["seq"], 51);
    assert_eq!(msgs[99]["seq"], 150);
    assert_eq!(msgs[99]["message"], "m149");
}

fn ready_of(frames: &[Value]) -> &Value {
    frames
        .iter()
        .find(|v| v.get("ready").is_some())
        .expect("ready frame")
}

fn backlog_seqs(frames: &[Value]) -> Vec<u64> {
    frames
        .iter()
        .filter(|v| v.get("message").is_some())
        .filter_map(|v| v["seq"].as_u64())
        .collect()
}

fn resume_hello(epoch: &str, seq: u64) -> String {
    json!({"name": "bob", "resume": {"epoch": epoch, "seq": seq}}).to_string()
}

#[test]
fn resume_gives_exactly_the_missing_messages() {
    let mut r = room(unlimited());
    join(&mut r, 1, "a", r#"{"name":"alice"}"#, 1);
    for i in 0..300 {
        say(&mut r, 1, &format!("m{i}"), 10 + i);
    }
    let acts = join(&mut r, 2, "b", &resume_hello(EPOCH, 120), 1000);
    let got = frames_for(&acts, 2);
    assert_eq!(backlog_seqs(&got), (121..=300).collect::<Vec<_>>());
    assert_eq!(ready_of(&got)["recovered"], true);
    assert_eq!(ready_of(&got)["seq"], 300);
    // Exactly resume_max (1000) missing is still exact.
    for i in 300..1300 {
        say(&mut r, 1, &format!("m{i}"), 10 + i);
    }
    let acts = join(&mut r, 4, "d", &resume_hello(EPOCH, 300), 2000);
    let got = frames_for(&acts, 4);
    assert_eq!(backlog_seqs(&got).len(), 1000);
    assert_eq!(ready_of(&got)["recovered"], true);
    let acts = join(&mut r, 5, "d", &resume_hello(EPOCH, 299), 2000);
    assert_eq!(ready_of(&frames_for(&acts, 5))["recovered"], false);
    // Nothing missing: an empty backlog, still recovered.
    let acts = join(&mut r, 3, "c", &resume_hello(EPOCH, 1300), 2000);
    let got = frames_for(&acts, 3);
    assert!(backlog_seqs(&got).is_empty());
    assert_eq!(ready_of(&got)["recovered"], true);
}

#[test]
fn resume_that_cannot_be_exact_falls_back_to_the_last_100() {
    let cfg = Config {
        retention: 500,
        resume_max: 200,
        ..unlimited()
    };
    let mut r = room(cfg);
    join(&mut r, 1, "a", r#"{"name":"alice"}"#, 1);
    for i in 0..700 {
        say(&mut r, 1, &format!("m{i}"), 10 + i);
    }
    let cases = [
        resume_hello("other-epoch", 650),
        resume_hello(EPOCH, 701), // ahead of the room
        resume_hello(EPOCH, 499), // 201 missing: over resume_max
        r#"{"name":"bob","resume":{"epoch":"epoch-1","seq":-5}}"#.to_owned(),
        r#"{"name":"bob","resume":{"seq":650}}"#.to_owned(),
        r#"{"name":"bob","resume":"yes"}"#.to_owned(),
    ];
    for (i, hello) in cases.iter().enumerate() {
        let conn = 10 + i as u64;
        let acts = join(&mut r, conn, "b", hello, 1000);
        let got = frames_for(&acts, conn);
        assert_eq!(ready_of(&got)["recovered"], false, "{hello}");
        assert_eq!(
            backlog_seqs(&got),
            (601..=700).collect::<Vec<_>>(),
            "{hello}"
        );
        assert!(got.iter().all(|v| v.get("error").is_none()));
    }
    // Within resume_max but pruned by retention.
    let cfg = Config {
        retention: 150,
        resume_max: 150,
        backlog: 100,
        ..unlimited()
    };
    let mut r = room(cfg);
    join(&mut r, 1, "a", r#"{"name":"alice"}"#, 1);
    for i in 0..300 {
        say(&mut r, 1, &format!("m{i}"), 10 + i);
    }
    assert_eq!(r.storage().len(), 150);
    let acts = join(&mut r, 2, "b", &resume_hello(EPOCH, 149), 1000);
    assert_eq!(ready_of(&frames_for(&acts, 2))["recovered"], false);
    let acts = join(&mut r, 3, "b", &resume_hello(EPOCH, 150), 1000);
    assert_eq!(ready_of(&frames_for(&acts, 3))["recovered"], true);
}

/// Retention raised across a restart: the storage was pruned under a smaller retention,
/// so a resume within the new `resume_max` can ask for messages that are gone. Only the
/// "every missing message is still stored" check stands between it and a silent gap.
#[test]
fn a_resume_over_messages_pruned_before_a_restart_is_not_recovered() {
    let small = Config {
        retention: 10,
        backlog: 5,
        resume_max: 10,
        ..unlimited()
    };
    let mut r = room(small);
    join(&mut r, 1, "a", r#"{"name":"alice"}"#, 1);
    for i in 0..30 {
        say(&mut r, 1, &format!("m{i}"), 10 + i);
    }
    // Seqs 21..=30 are kept, 1..=20 are pruned.
    assert_eq!(r.storage().len(), 10);
    let raised = Config {
        retention: 100,
        backlog: 5,
        resume_max: 50,
        ..unlimited()
    };
    let sessions: Vec<Session> = r.sessions().cloned().collect();
    let mut r = Room::restore(raised, r.storage().clone(), "x", sessions).expect("restore");
    // 25 missing (6..=30): within resume_max 50, but 6..=20 were pruned.
    let acts = join(&mut r, 2, "b", &resume_hello(EPOCH, 5), 1000);
    let got = frames_for(&acts, 2);
    assert_eq!(ready_of(&got)["recovered"], false);
    assert_eq!(backlog_seqs(&got), (26..=30).collect::<Vec<_>>());
    // One message short of the pruned edge is still missing seq 20.
    let acts = join(&mut r, 3, "c", &resume_hello(EPOCH, 19), 1000);
    let got = frames_for(&acts, 3);
    assert_eq!(ready_of(&got)["recovered"], false);
    assert_eq!(backlog_seqs(&got), (26..=30).collect::<Vec<_>>());
    // From the last pruned seq on, every missing message is there: exact.
    let acts = join(&mut r, 4, "d", &resume_hello(EPOCH, 20), 1000);
    let got = frames_for(&acts, 4);
    assert_eq!(ready_of(&got)["recovered"], true);
    assert_eq!(backlog_seqs(&got), (21..=30).collect::<Vec<_>>());
}

#[test]
fn retention_prunes_the_oldest() {
    let mut r = room(Config {
        retention: 10,
        backlog: 5,
        resume_max: 10,
        ..unlimited()
    });
    join(&mut r, 1, "a", r#"{"name":"alice"}"#, 1);
    for i in 0..25 {
        say(&mut r, 1, &format!("m{i}"), 10 + i);
    }
    assert_eq!(r.storage().len(), 10);
    assert_eq!(r.last_seq(), 25);
}

#[test]
fn a_message_that_is_not_stored_is_not_broadcast() {
    let mut r = room(unlimited());
    join(&mut r, 1, "a", r#"{"name":"alice"}"#, 1);
    join(&mut r, 2, "b", r#"{"name":"bob"}"#, 1);
    r.storage_mut().fail_appends = true;
    let acts = say(&mut r, 1, "lost?", 2);
    assert!(broadcasts(&acts).is_empty());
    assert_eq!(
        frames_for(&acts, 1),
        vec![json!({"error": ErrorKind::NotStored.sentence()})]
    );
    r.storage_mut().fail_appends = false;
    let acts = say(&mut r, 1, "stored", 3);
    assert_eq!(
        broadcasts(&acts)[0]["seq"],
        1,
        "the failed message used up no seq"
    );
}

#[test]
fn rate_limit_burst_then_refill() {
    let mut r = room(Config::default());
    join(&mut r, 1, "a", r#"{"name":"alice"}"#, 0);
    for i in 0..10 {
        assert_eq!(broadcasts(&say(&mut r, 1, "x", 0)).len(), 1, "message {i}");
    }
    let acts = say(&mut r, 1, "x", 0);
    assert_eq!(
        frames_for(&acts, 1),
        vec![json!({"error": "Rate limited; slow down."})]
    );
    assert!(close_of(&acts, 1).is_none());
    assert_eq!(
        broadcasts(&say(&mut r, 1, "x", 1000)).len(),
        1,
        "one token per second"
    );
    assert_eq!(broadcasts(&say(&mut r, 1, "x", 1500)).len(), 0);
}

#[test]
fn garbage_costs_tokens_too_but_the_hello_does_not() {
    let mut r = room(Config {
        rate_burst: 3,
        ..Config::default()
    });
    r.try_connect(1, peer("a"), 0).unwrap();
    r.on_text(1, r#"{"name":"alice"}"#, 0);
    r.on_text(1, "garbage", 0);
    r.on_binary(1, 4, 0);
    assert_eq!(broadcasts(&say(&mut r, 1, "ok", 0)).len(), 1);
    let acts = say(&mut r, 1, "over", 0);
    assert_eq!(
        frames_for(&acts, 1),
        vec![json!({"error": ErrorKind::RateLimited.sentence()})]
    );
}

#[test]
fn sockets_from_one_address_share_a_bucket() {
    let mut r = room(Config {
        rate_burst: 4,
        ..Config::default()
    });
    join(&mut r, 1, "1.2.3.4", r#"{"name":"a"}"#, 0);
    join(&mut r, 2, "1.2.3.4", r#"{"name":"b"}"#, 0);
    join(&mut r, 3, "5.6.7.8", r#"{"name":"c"}"#, 0);
    for _ in 0..2 {
        assert_eq!(broadcasts(&say(&mut r, 1, "x", 0)).len(), 1);
        assert_eq!(broadcasts(&say(&mut r, 2, "x", 0)).len(), 1);
    }
    assert!(broadcasts(&say(&mut r, 2, "x", 0)).is_empty());
    assert!(broadcasts(&say(&mut r, 1, "x", 0)).is_empty());
    assert_eq!(
        broadcasts(&say(&mut r, 3, "x", 0)).len(),
        1,
        "another address is not affected"
    );
}

#[test]
fn reconnecting_does_not_refill_the_bucket() {
    let mut r = room(Config {
        rate_burst: 2,
        ..Config::default()
    });
    join(&mut r, 1, "1.2.3.4", r#"{"name":"a"}"#, 0);
    say(&mut r, 1, "x", 0);
    say(&mut r, 1, "x", 0);
    r.disconnect(1, 0);
    join(&mut r, 2, "1.2.3.4", r#"{"name":"a"}"#, 100);
    assert!(broadcasts(&say(&mut r, 2, "x", 100)).is_empty());
    assert_eq!(broadcasts(&say(&mut r, 2, "x", 1100)).len(), 1);
}

#[test]
fn sustained_flooding_closes_with_1008() {
    let mut r = room(Config {
        rate_burst: 1,
        rate_strikes: 5,
        ..Config::default()
    });
    join(&mut r, 1, "a", r#"{"name":"alice"}"#, 0);
    join(&mut r, 2, "b", r#"{"name":"bob"}"#, 0);
    say(&mut r, 1, "x", 0);
    for _ in 0..4 {
        assert!(close_of(&say(&mut r, 1, "x", 0), 1).is_none());
    }
    let acts = say(&mut r, 1, "x", 0);
    assert_eq!(close_of(&acts, 1), Some(Close::Flooding));
    assert_eq!(frames_for(&acts, 2), vec![json!({"quit": "alice"})]);
}

#[test]
fn an_accepted_frame_resets_the_strikes() {
    let mut r = room(Config {
        rate_burst: 1,
        rate_strikes: 3,
        ..Config::default()
    });
    join(&mut r, 1, "a", r#"{"name":"alice"}"#, 0);
    let refused = |acts: &[Action]| {
        acts.contains(&Action::Send {
            to: 1,
            frame: error_frame(ErrorKind::RateLimited.sentence()),
        })
    };
    assert_eq!(broadcasts(&say(&mut r, 1, "x", 0)).len(), 1);
    // Two refusals in a row: one short of the close.
    for _ in 0..2 {
        let acts = say(&mut r, 1, "x", 0);
        assert!(refused(&acts) && close_of(&acts, 1).is_none(), "{acts:?}");
    }
    assert_eq!(r.session(1).map(|s| s.strikes()), Some(2));
    // An accepted frame starts the count again...
    assert_eq!(broadcasts(&say(&mut r, 1, "x", 1000)).len(), 1);
    assert_eq!(r.session(1).map(|s| s.strikes()), Some(0));
    // ...so two more refusals still leave the socket open (without the reset, the
    // first of them would be the third strike)...
    for _ in 0..2 {
        let acts = say(&mut r, 1, "x", 1000);
        assert!(refused(&acts) && close_of(&acts, 1).is_none(), "{acts:?}");
        assert!(r.session(1).is_some());
    }
    // ...and the third closes it.
    let acts = say(&mut r, 1, "x", 1000);
    assert!(refused(&acts));
    assert_eq!(close_of(&acts, 1), Some(Close::Flooding));
    assert!(r.session(1).is_none());
}

#[test]
fn kick_closes_and_announces_the_quit() {
    let mut r = room(Config::default());
    join(&mut r, 1, "a", r#"{"name":"alice"}"#, 0);
    join(&mut r, 2, "b", r#"{"name":"bob"}"#, 0);
    let acts = r.kick(1, Close::SlowConsumer, 1);
    assert_eq!(close_of(&acts, 1), Some(Close::SlowConsumer));
    assert_eq!(frames_for(&acts, 2), vec![json!({"quit": "alice"})]);
}

#[test]
fn sessions_are_small_and_serializable() {
    let mut r = room(Config::default());
    join(
        &mut r,
        1,
        &"f".repeat(200),
        &json!({"name": "😀".repeat(32)}).to_string(),
        0,
    );
    say(&mut r, 1, "x", 0);
    let s = r.session(1).expect("joined");
    let text = serde_json::to_string(s).expect("serializable");
    assert!(text.len() < 1024, "{} bytes", text.len());
    let back: Session = serde_json::from_str(&text).expect("round trip");
    assert_eq!(&back, s);
}

#[test]
fn a_restored_room_continues_where_it_left_off() {
    let mut r = room(unlimited());
    join(&mut r, 1, "a", r#"{"name":"alice"}"#, 0);
    join(&mut r, 2, "b", r#"{"name":"bob"}"#, 0);
    say(&mut r, 1, "before", 50);
    let sessions: Vec<Session> = r.sessions().cloned().collect();
    let mut back = Room::restore(
        unlimited(),
        r.storage().clone(),
        "other-candidate",
        sessions,
    )
    .expect("restore");
    assert_eq!(
        back.epoch(),
        EPOCH,
        "the stored epoch wins over the candidate"
    );
    let acts = say(&mut back, 2, "after", 10);
    assert_eq!(
        broadcasts(&acts)[0],
        json!({"name": "bob", "message": "after", "timestamp": 51, "seq": 2})
    );
    let acts = join(&mut back, 3, "c", r#"{"name":"carol"}"#, 60);
    let got = frames_for(&acts, 3);
    assert_eq!(
        &got[..2],
        &[json!({"joined": "alice"}), json!({"joined": "bob"})]
    );
}

#[test]
fn save_actions_follow_session_changes() {
    let mut r = room(Config::default());
    let acts = r.try_connect(1, peer("a"), 0).unwrap();
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::Save { conn: 1, .. })));
    let acts = r.on_text(1, r#"{"name":"alice"}"#, 0);
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::Save { conn: 1, .. })));
    // The bucket is the address's and lives in storage: an accepted frame changes no
    // session, a refused one the sender's strikes.
    let acts = say(&mut r, 1, "x", 0);
    assert!(!acts.iter().any(|a| matches!(a, Action::Save { .. })));
    for _ in 0..9 {
        say(&mut r, 1, "x", 0);
    }
    let acts = say(&mut r, 1, "x", 0);
    assert_eq!(r.session(1).map(|s| s.strikes()), Some(1));
    assert!(
        acts.iter()
            .any(|a| matches!(a, Action::Save { conn: 1, .. })),
        "strikes changed"
    );
}

#[test]
fn a_charge_saves_no_other_session_of_the_address() {
    // The address's bucket lives in storage, once: a frame rewrites no attachment but,
    // when its strikes change, the sender's own.
    let mut r = room(Config::default());
    join(&mut r, 1, "1.2.3.4", r#"{"name":"a"}"#, 0);
    join(&mut r, 2, "1.2.3.4", r#"{"name":"b"}"#, 0);
    join(&mut r, 3, "5.6.7.8", r#"{"name":"c"}"#, 0);
    let acts = say(&mut r, 1, "x", 0);
    let saved: Vec<u64> = acts
        .iter()
        .filter_map(|a| match a {
            Action::Save { conn, .. } => Some(*conn),
            _ => None,
        })
        .collect();
    assert!(saved.iter().all(|c| *c == 1), "{saved:?}");
}

#[test]
fn connection_counts() {
    let mut r = room(Config::default());
    assert!(r.is_empty());
    assert_eq!(r.connection_count(), 0);
    r.try_connect(1, peer("a"), 0).unwrap();
    join(&mut r, 2, "b", r#"{"name":"bob"}"#, 0);
    assert!(!r.is_empty());
    assert_eq!(r.connection_count(), 2);
    assert_eq!(r.members().collect::<Vec<_>>(), [2]);
    r.disconnect(2, 1);
    r.disconnect(1, 1);
    assert!(r.is_empty());
}

#[test]
fn frames_for_unknown_connections_are_ignored() {
    let mut r: Room<MemoryStorage> = room(Config::default());
    assert!(r.on_text(42, "{}", 0).is_empty());
    assert!(r.on_binary(42, 1, 0).is_empty());
    assert!(r.disconnect(42, 0).is_empty());
}

#[test]
fn silent_connections_are_closed_at_the_hello_deadline() {
    let mut r = room(Config {
        hello_timeout_ms: 5000,
        ..Config::default()
    });
    r.try_connect(1, peer("a"), 1000).unwrap();
    r.try_connect(2, peer("b"), 3000).unwrap();
    join(&mut r, 3, "c", r#"{"name":"carol"}"#, 1000);
    assert_eq!(r.next_deadline(), Some(6000));
    assert!(r.on_tick(5999).is_empty());
    let acts = r.on_tick(6000);
    assert_eq!(
        acts[0],
        Action::Send {
            to: 1,
            frame: error_frame(ErrorKind::HelloTimeout.sentence())
        }
    );
    assert_eq!(close_of(&acts, 1), Some(Close::HelloTimeout));
    assert!(close_of(&acts, 2).is_none());
    assert!(
        broadcasts(&acts).is_empty(),
        "no quit for a session that never joined"
    );
    assert_eq!(r.next_deadline(), Some(8000));
    // A hello in time clears the deadline; a joined session is never timed out.
    r.on_text(2, r#"{"name":"bob"}"#, 7000);
    assert_eq!(r.next_deadline(), None);
    assert!(r.on_tick(1_000_000).is_empty());
    assert_eq!(r.members().count(), 2);
}

#[test]
fn the_hello_deadline_survives_a_rebuild() {
    let mut r = room(Config {
        hello_timeout_ms: 5000,
        ..Config::default()
    });
    r.try_connect(1, peer("a"), 1000).unwrap();
    let sessions: Vec<Session> = r.sessions().cloned().collect();
    let back =
        Room::restore(r.config().clone(), r.storage().clone(), "x", sessions).expect("restore");
    assert_eq!(back.next_deadline(), Some(6000));
}

#[test]
fn a_join_that_cannot_read_history_closes_with_1011_and_forgets_the_address() {
    struct Broken(MemoryStorage);
    impl chat_handler::Storage for Broken {
        fn load_epoch(&mut self) -> chat_handler::StorageResult<Option<String>> {
            self.0.load_epoch()
        }
        fn save_epoch(&mut self, e: &str) -> chat_handler::StorageResult<()> {
            self.0.save_epoch(e)
        }
        fn latest(&mut self) -> chat_handler::StorageResult<Option<chat_handler::StoredMessage>> {
            self.0.latest()
        }
        fn append(&mut self, m: &chat_handler::StoredMessage) -> chat_handler::StorageResult<()> {
            self.0.append(m)
        }
        fn last_n(
            &mut self,
            _: usize,
        ) -> chat_handler::StorageResult<Vec<chat_handler::StoredMessage>> {
            Err(chat_handler::StorageError("disk gone".into()))
        }
        fn after(
            &mut self,
            _: u64,
            _: usize,
        ) -> chat_handler::StorageResult<Vec<chat_handler::StoredMessage>> {
            Err(chat_handler::StorageError("disk gone".into()))
        }
        fn before(
            &mut self,
            _: u64,
            _: usize,
        ) -> chat_handler::StorageResult<Vec<chat_handler::StoredMessage>> {
            Err(chat_handler::StorageError("disk gone".into()))
        }
        fn find_cid(
            &mut self,
            _: &str,
            _: &str,
            _: u64,
            _: u64,
        ) -> chat_handler::StorageResult<Option<chat_handler::StoredMessage>> {
            Err(chat_handler::StorageError("disk gone".into()))
        }
        fn prune_through(&mut self, s: u64) -> chat_handler::StorageResult<()> {
            self.0.prune_through(s)
        }
        fn save_bucket(
            &mut self,
            a: &str,
            b: &chat_handler::Bucket,
        ) -> chat_handler::StorageResult<()> {
            self.0.save_bucket(a, b)
        }
        fn load_bucket(
            &mut self,
            a: &str,
        ) -> chat_handler::StorageResult<Option<chat_handler::Bucket>> {
            self.0.load_bucket(a)
        }
        fn prune_buckets(&mut self, before: u64) -> chat_handler::StorageResult<()> {
            self.0.prune_buckets(before)
        }
        fn delete_message(&mut self, seq: u64, at: u64) -> chat_handler::StorageResult<bool> {
            self.0.delete_message(seq, at)
        }
        fn deleted_since(&mut self, seq: u64, n: usize) -> chat_handler::StorageResult<Vec<u64>> {
            self.0.deleted_since(seq, n)
        }
        fn edit_message(
            &mut self,
            seq: u64,
            text: &str,
            at_ms: u64,
            at: u64,
        ) -> chat_handler::StorageResult<bool> {
            self.0.edit_message(seq, text, at_ms, at)
        }
        fn edited_since(
            &mut self,
            seq: u64,
            n: usize,
        ) -> chat_handler::StorageResult<Vec<chat_handler::StoredMessage>> {
            self.0.edited_since(seq, n)
        }
        fn has_reaction(
            &mut self,
            seq: u64,
            emoji: &str,
            who: &str,
        ) -> chat_handler::StorageResult<bool> {
            self.0.has_reaction(seq, emoji, who)
        }
        fn set_reaction(
            &mut self,
            seq: u64,
            emoji: &str,
            who: &str,
            on: bool,
            counts: Option<&str>,
            at: u64,
        ) -> chat_handler::StorageResult<bool> {
            self.0.set_reaction(seq, emoji, who, on, counts, at)
        }
        fn reacted_since(
            &mut self,
            seq: u64,
            n: usize,
        ) -> chat_handler::StorageResult<Vec<chat_handler::StoredMessage>> {
            self.0.reacted_since(seq, n)
        }
        fn restriction(&mut self, u: &str) -> chat_handler::StorageResult<Restriction> {
            self.0.restriction(u)
        }
        fn set_restriction(&mut self, u: &str, r: &Restriction) -> chat_handler::StorageResult<()> {
            self.0.set_restriction(u, r)
        }
        fn prune_restrictions(&mut self, now: u64) -> chat_handler::StorageResult<u64> {
            self.0.prune_restrictions(now)
        }
        fn append_audit(&mut self, e: &AuditEntry, keep: usize) -> chat_handler::StorageResult<()> {
            self.0.append_audit(e, keep)
        }
    }
    let mut r = Room::open(Config::default(), Broken(MemoryStorage::new()), EPOCH).expect("open");
    r.try_connect(1, peer("a"), 0).unwrap();
    let acts = r.on_text(1, r#"{"name":"alice"}"#, 0);
    assert_eq!(
        acts[0],
        Action::Send {
            to: 1,
            frame: error_frame(ErrorKind::Internal.sentence())
        }
    );
    assert_eq!(close_of(&acts, 1), Some(Close::Internal));
    assert!(r.is_empty());
    // The address is forgotten too: a new connection from it starts clean.
    assert!(r.try_connect(2, peer("a"), 0).is_ok());
    assert_eq!(r.connection_count(), 1);
}

#[test]
fn kept_buckets_are_pruned_once_they_would_have_refilled() {
    let cfg = Config {
        rate_burst: 2,
        rate_per_sec: 1.0,
        join_burst: 1,
        join_per_sec: 1.0,
        publish_burst: 1,
        publish_per_sec: 1.0,
        ..Config::default()
    };
    let mut r = room(cfg);
    for (i, addr) in ["a", "b"].iter().enumerate() {
        let conn = i as u64;
        join(&mut r, conn, addr, r#"{"name":"x"}"#, 0);
        say(&mut r, conn, "x", 0);
        say(&mut r, conn, "x", 0);
        r.disconnect(conn, 0);
    }
    // Each address's message bucket and join bucket.
    assert_eq!(r.storage().kept_buckets(), 4);
    // The slowest bucket (2 tokens at 1/s) refills in two seconds: when "c" leaves at
    // t=2001, the others go.
    join(&mut r, 9, "c", r#"{"name":"x"}"#, 2001);
    say(&mut r, 9, "x", 2001);
    r.disconnect(9, 2001);
    assert_eq!(r.storage().kept_buckets(), 2);
}

#[test]
fn an_empty_room_stores_nothing_and_its_epoch_comes_with_the_first_message() {
    use chat_handler::Storage;
    let mut r = room(Config {
        rate_burst: 1,
        ..Config::default()
    });
    join(&mut r, 1, "a", r#"{"name":"alice"}"#, 0);
    // Frames over the rate limit drain the bucket, yet nothing is stored: no epoch,
    // and no kept bucket when the address leaves a room with no history.
    r.on_text(1, "not json", 0);
    r.on_text(1, "not json", 0);
    r.disconnect(1, 0);
    let mut storage = r.storage().clone();
    assert_eq!(storage.load_epoch().unwrap(), None);
    assert_eq!(r.storage().kept_buckets(), 0);
    // An empty room reopened takes the new candidate: nothing could be resumed anyway.
    let mut r = Room::open(Config::default(), r.storage().clone(), "second").unwrap();
    assert_eq!(r.epoch(), "second");
    join(&mut r, 2, "a", r#"{"name":"alice"}"#, 10);
    say(&mut r, 2, "first", 10);
    let mut storage = r.storage().clone();
    assert_eq!(storage.load_epoch().unwrap().as_deref(), Some("second"));
    // From then on the stored epoch wins.
    let back = Room::open(Config::default(), r.storage().clone(), "third").unwrap();
    assert_eq!((back.epoch(), back.last_seq()), ("second", 1));
}

#[test]
fn an_empty_room_rebuilt_from_its_sessions_keeps_the_epoch_they_were_told() {
    let mut r = room(Config::default());
    join(&mut r, 1, "a", r#"{"name":"alice"}"#, 0);
    let sessions: Vec<Session> = r.sessions().cloned().collect();
    let mut back =
        Room::restore(Config::default(), r.storage().clone(), "other", sessions).expect("restore");
    assert_eq!(back.epoch(), EPOCH);
    // The first message stores it; sessions opened from then on do not carry it.
    say(&mut back, 1, "first", 1);
    back.try_connect(2, peer("b"), 2).unwrap();
    let saved = serde_json::to_value(back.session(2).unwrap()).unwrap();
    assert!(saved.get("room_epoch").is_none(), "{saved}");
    let back =
        Room::restore(Config::default(), back.storage().clone(), "x", Vec::new()).expect("restore");
    assert_eq!(back.epoch(), EPOCH);
}

#[test]
fn a_message_whose_epoch_cannot_be_stored_is_not_sent() {
    struct NoEpoch(MemoryStorage);
    impl chat_handler::Storage for NoEpoch {
        fn load_epoch(&mut self) -> chat_handler::StorageResult<Option<String>> {
            Ok(None)
        }
        fn save_epoch(&mut self, _: &str) -> chat_handler::StorageResult<()> {
            Err(chat_handler::StorageError("disk full".into()))
        }
        fn latest(&mut self) -> chat_handler::StorageResult<Option<chat_handler::StoredMessage>> {
            self.0.latest()
        }
        fn append(&mut self, m: &chat_handler::StoredMessage) -> chat_handler::StorageResult<()> {
            self.0.append(m)
        }
        fn last_n(
            &mut self,
            n: usize,
        ) -> chat_handler::StorageResult<Vec<chat_handler::StoredMessage>> {
            self.0.last_n(n)
        }
        fn after(
            &mut self,
            s: u64,
            n: usize,
        ) -> chat_handler::StorageResult<Vec<chat_handler::StoredMessage>> {
            self.0.after(s, n)
        }
        fn prune_through(&mut self, s: u64) -> chat_handler::StorageResult<()> {
            self.0.prune_through(s)
        }
        fn save_bucket(
            &mut self,
            a: &str,
            b: &chat_handler::Bucket,
        ) -> chat_handler::StorageResult<()> {
            self.0.save_bucket(a, b)
        }
        fn load_bucket(
            &mut self,
            a: &str,
        ) -> chat_handler::StorageResult<Option<chat_handler::Bucket>> {
            self.0.load_bucket(a)
        }
        fn prune_buckets(&mut self, before: u64) -> chat_handler::StorageResult<()> {
            self.0.prune_buckets(before)
        }
        fn before(
            &mut self,
            s: u64,
            n: usize,
        ) -> chat_handler::StorageResult<Vec<chat_handler::StoredMessage>> {
            self.0.before(s, n)
        }
        fn find_cid(
            &mut self,
            sender: &str,
            cid: &str,
            after_seq: u64,
            since_ms: u64,
        ) -> chat_handler::StorageResult<Option<chat_handler::StoredMessage>> {
            self.0.find_cid(sender, cid, after_seq, since_ms)
        }
        fn delete_message(&mut self, s: u64, at: u64) -> chat_handler::StorageResult<bool> {
            self.0.delete_message(s, at)
        }
        fn deleted_since(&mut self, s: u64, n: usize) -> chat_handler::StorageResult<Vec<u64>> {
            self.0.deleted_since(s, n)
        }
        fn edit_message(
            &mut self,
            seq: u64,
            text: &str,
            at_ms: u64,
            at: u64,
        ) -> chat_handler::StorageResult<bool> {
            self.0.edit_message(seq, text, at_ms, at)
        }
        fn edited_since(
            &mut self,
            seq: u64,
            n: usize,
        ) -> chat_handler::StorageResult<Vec<chat_handler::StoredMessage>> {
            self.0.edited_since(seq, n)
        }
        fn has_reaction(
            &mut self,
            seq: u64,
            emoji: &str,
            who: &str,
        ) -> chat_handler::StorageResult<bool> {
            self.0.has_reaction(seq, emoji, who)
        }
        fn set_reaction(
            &mut self,
            seq: u64,
            emoji: &str,
            who: &str,
            on: bool,
            counts: Option<&str>,
            at: u64,
        ) -> chat_handler::StorageResult<bool> {
            self.0.set_reaction(seq, emoji, who, on, counts, at)
        }
        fn reacted_since(
            &mut self,
            seq: u64,
            n: usize,
        ) -> chat_handler::StorageResult<Vec<chat_handler::StoredMessage>> {
            self.0.reacted_since(seq, n)
        }
        fn restriction(
            &mut self,
            u: &str,
        ) -> chat_handler::StorageResult<chat_handler::Restriction> {
            self.0.restriction(u)
        }
        fn set_restriction(
            &mut self,
            u: &str,
            r: &chat_handler::Restriction,
        ) -> chat_handler::StorageResult<()> {
            self.0.set_restriction(u, r)
        }
        fn prune_restrictions(&mut self, now: u64) -> chat_handler::StorageResult<u64> {
            self.0.prune_restrictions(now)
        }
        fn append_audit(
            &mut self,
            e: &chat_handler::AuditEntry,
            keep: usize,
        ) -> chat_handler::StorageResult<()> {
            self.0.append_audit(e, keep)
        }
    }
    let mut r = Room::open(Config::default(), NoEpoch(MemoryStorage::new()), EPOCH).unwrap();
    r.try_connect(1, peer("a"), 0).unwrap();
    r.on_text(1, r#"{"name":"alice"}"#, 0);
    let acts = r.on_text(1, r#"{"message":"lost"}"#, 1);
    assert!(broadcasts(&acts).is_empty());
    assert!(acts.contains(&Action::Send {
        to: 1,
        frame: error_frame(ErrorKind::NotStored.sentence())
    }));
    assert_eq!(r.last_seq(), 0, "no seq used up");
    assert!(r.storage().0.is_empty());
}

fn error_frame(sentence: &str) -> chat_handler::Frame {
    ServerFrame::Error {
        error: sentence,
        code: None,
    }
    .encode()
}

#[test]
fn a_v2_joiner_gets_one_roster_frame_and_ready_says_v2() {
    let mut r = room(Config::default());
    join(&mut r, 1, "a", r#"{"name":"alice"}"#, 1);
    join(&mut r, 2, "b", r#"{"name":"bob","v":2}"#, 2);
    say(&mut r, 1, "hi", 3);
    let acts = join(&mut r, 3, "c", r#"{"name":"carol","v":2}"#, 4);
    let got = frames_for(&acts, 3);
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(
        got[0],
        json!({"roster": [{"name": "alice"}, {"name": "bob"}]})
    );
    assert_eq!(got[1]["message"], "hi");
    assert_eq!(got[2], json!({"joined": "carol"}));
    assert_eq!(got[3]["ready"], true);
    assert_eq!(got[3]["v"], 2);
    // The v1 member sees the same v1 frame kinds as ever.
    assert_eq!(frames_for(&acts, 1), vec![json!({"joined": "carol"})]);
}

#[test]
fn a_v1_session_never_sees_v2_frame_kinds() {
    let mut r = room(Config::default());
    join(&mut r, 1, "a", r#"{"name":"alice","v":2}"#, 1);
    let acts = join(&mut r, 2, "b", r#"{"name":"bob","batch":true}"#, 2);
    let got = frames_for(&acts, 2);
    assert_eq!(got[0], json!({"joined": "alice"}));
    let ready = got.last().expect("ready");
    assert_eq!(ready["ready"], true);
    assert!(ready.get("v").is_none(), "{ready}");
    for f in &got {
        assert!(f.get("roster").is_none() && f.get("batch").is_none(), "{f}");
    }
}

#[test]
fn an_unsupported_version_is_a_bad_hello() {
    let mut r = room(Config::default());
    r.try_connect(1, peer("a"), 1).unwrap();
    let acts = r.on_text(1, r#"{"name":"a","v":3}"#, 1);
    assert_eq!(
        frames_for(&acts, 1),
        vec![json!({"error": ErrorKind::UnsupportedVersion.sentence()})]
    );
    assert_eq!(close_of(&acts, 1), Some(Close::BadHello));
}

#[test]
fn a_v1_joiner_gets_each_member_in_join_order_as_the_frame_broadcast_at_its_join() {
    let mut r = room(unlimited());
    // Connected 1, 2, 3 but joined 3, 1, 2: the roster follows the joins.
    for (conn, addr) in [(1, "a"), (2, "b"), (3, "c")] {
        r.try_connect(conn, peer(addr), 0).expect("connect");
    }
    let mut announced = Vec::new();
    for (conn, hello) in [
        (3, r#"{"name":"carol"}"#),
        (1, r#"{"name":"alice"}"#),
        (2, r#"{"name":"bob"}"#),
    ] {
        let acts = r.on_text(conn, hello, 0);
        let own = acts.iter().find_map(|a| match a {
            Action::Broadcast { frame, .. } => Some(frame.clone()),
            _ => None,
        });
        announced.push(own.expect("a joined broadcast"));
    }
    r.disconnect(1, 0);
    let acts = join(&mut r, 4, "d", r#"{"name":"dave"}"#, 0);
    let roster: Vec<Frame> = acts
        .iter()
        .filter_map(|a| match a {
            Action::Send { to: 4, frame } if frame.contains("joined") => Some(frame.clone()),
            _ => None,
        })
        .collect();
    let names: Vec<Value> = roster.iter().map(|f| parse(f)).collect();
    assert_eq!(
        names,
        [json!({"joined": "carol"}), json!({"joined": "bob"})]
    );
    // The very frames announced at those joins, shared rather than encoded again.
    assert!(Arc::ptr_eq(&roster[0], &announced[0]));
    assert!(Arc::ptr_eq(&roster[1], &announced[2]));
}
