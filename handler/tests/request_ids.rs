//! Typed v2 errors (`code`) and request ids (`id` → `re`): every valid id answered
//! exactly once, to its sender only, by its result, its error or `{"ok": true}`; a
//! malformed id refused with `id_invalid` and the request not carried out; v1 sessions
//! unchanged, byte for byte.

mod common;

use chat_handler::identity::{mint, Claims};
use chat_handler::{
    Action, Auth, AuthSecret, Config, ConnId, ErrorKind, MemoryStorage, Role, Room,
};
use common::*;
use serde_json::{json, Value};

const V2: &str = r#"{"name":"NAME","v":2}"#;

fn v2(name: &str) -> String {
    V2.replace("NAME", name)
}

/// The frames of `conn` that answer id `id`.
fn answers<'a>(frames: &'a [Value], id: &str) -> Vec<&'a Value> {
    frames.iter().filter(|f| f["re"] == id).collect()
}

/// No frame anywhere in `acts` carries `re` or `ok`, except those to `conn`.
fn only_to(acts: &[Action], conn: ConnId) {
    for a in acts {
        let (frame, to_other) = match a {
            Action::Send { to, frame } => (frame, *to != conn),
            Action::Broadcast { frame, .. } => (frame, true),
            _ => continue,
        };
        if to_other {
            assert!(
                !frame.contains(r#""re":"#) && !frame.contains(r#""ok":"#),
                "{frame}"
            );
        }
    }
}

#[test]
fn v2_errors_carry_their_code_and_v1_errors_stay_as_they_were() {
    let mut r = room(unlimited());
    join(&mut r, 1, "a", r#"{"name":"old"}"#, 1);
    join(&mut r, 2, "b", &v2("new"), 1);
    let v1 = r.on_text(1, r#"{"message":"  "}"#, 2);
    assert_eq!(
        messages_for(&v1, 1),
        vec![r#"{"error":"Message is empty."}"#.into()]
    );
    let acts = r.on_text(2, r#"{"message":"  "}"#, 2);
    assert_eq!(
        messages_for(&acts, 2),
        vec![r#"{"error":"Message is empty.","code":"message_empty"}"#.into()]
    );
    // Every kind's code is its label.
    let acts = r.on_text(2, "nope", 3);
    assert_eq!(frames_for(&acts, 2)[0]["code"], ErrorKind::NotJson.label());
}

#[test]
fn a_refused_hello_has_the_code_when_it_asked_for_v2() {
    for (hello, code) in [
        (r#"{"v":2,"name":7}"#, Some("name_not_string")),
        (r#"{"v":2,"batch":"yes"}"#, Some("batch_not_boolean")),
        (r#"{"name":7}"#, None),
        (r#"{"v":1,"name":7}"#, None),
        // A version this server does not speak is not v2.
        (r#"{"v":3}"#, None),
        (r#"{"v":"2","name":7}"#, None),
        ("[2]", None),
    ] {
        let mut r = room(unlimited());
        r.try_connect(1, peer("a"), 1).unwrap();
        let acts = r.on_text(1, hello, 1);
        let got = frames_for(&acts, 1);
        assert_eq!(got.len(), 1, "{hello}");
        assert!(got[0]["error"].is_string(), "{hello}");
        assert_eq!(got[0].get("code").and_then(Value::as_str), code, "{hello}");
    }
}

#[test]
fn history_and_member_pages_echo_the_id_to_the_requester_only() {
    let mut r = room(unlimited());
    join(&mut r, 1, "a", &v2("ana"), 1);
    join(&mut r, 2, "b", &v2("bo"), 1);
    say(&mut r, 1, "one", 2);
    let acts = r.on_text(1, r#"{"history":{"limit":5},"id":"h1"}"#, 3);
    let got = frames_for(&acts, 1);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["re"], "h1");
    assert_eq!(got[0]["history"][0]["message"], "one");
    assert!(frames_for(&acts, 2).is_empty());
    let acts = r.on_text(1, r#"{"members":{},"id":"m-1"}"#, 3);
    let got = frames_for(&acts, 1);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["re"], "m-1");
    assert_eq!(got[0]["members"]["count"], 1);
    // Without an id, the same page without `re`.
    let acts = r.on_text(1, r#"{"history":{"limit":5}}"#, 3);
    assert!(frames_for(&acts, 1)[0].get("re").is_none());
}

#[test]
fn a_message_with_an_id_is_broadcast_as_ever_then_answered_with_its_seq() {
    let mut r = room(unlimited());
    join(&mut r, 1, "a", &v2("ana"), 1);
    join(&mut r, 2, "b", &v2("bo"), 1);
    join(&mut r, 3, "c", r#"{"name":"cy"}"#, 1);
    let acts = r.on_text(1, r#"{"message":"hi","cid":"c1","id":"r1"}"#, 5);
    let want_chat = json!({"name": "ana", "message": "hi", "timestamp": 5, "seq": 1, "cid": "c1"});
    assert_eq!(
        frames_for(&acts, 1),
        vec![want_chat.clone(), json!({"ok": true, "seq": 1, "re": "r1"})]
    );
    assert_eq!(frames_for(&acts, 2), vec![want_chat.clone()]);
    assert_eq!(frames_for(&acts, 3), vec![want_chat.clone()]);
    only_to(&acts, 1);
    // The retry (a new id) is answered from storage: the original again, the same seq.
    let acts = r.on_text(1, r#"{"message":"hi","cid":"c1","id":"r2"}"#, 6);
    assert_eq!(
        frames_for(&acts, 1),
        vec![want_chat, json!({"ok": true, "seq": 1, "re": "r2"})]
    );
    assert!(frames_for(&acts, 2).is_empty());
    assert_eq!(r.last_seq(), 1);
}

#[test]
fn a_refused_request_gets_its_error_with_re_and_nothing_else() {
    let mut r = room(unlimited());
    join(&mut r, 1, "a", &v2("ana"), 1);
    for (frame, code) in [
        (r#"{"message":"  ","id":"e1"}"#, "message_empty"),
        (r#"{"history":{"limit":0},"id":"e1"}"#, "history_limit"),
        (r#"{"members":{"after":5},"id":"e1"}"#, "members_cursor"),
        (r#"{"delete":3,"id":"e1"}"#, "not_moderator"),
        (r#"{"what":1,"id":"e1"}"#, "wrong_shape"),
        (r#"{"message":"x","cid":"a b","id":"e1"}"#, "cid_invalid"),
    ] {
        let acts = r.on_text(1, frame, 2);
        let got = frames_for(&acts, 1);
        assert_eq!(got.len(), 1, "{frame}: {got:?}");
        assert_eq!(got[0]["code"], code, "{frame}");
        assert_eq!(got[0]["re"], "e1", "{frame}");
        assert!(got[0]["error"].is_string());
    }
    assert_eq!(r.last_seq(), 0);
}

#[test]
fn a_malformed_id_is_refused_and_its_request_not_carried_out() {
    let mut r = room(unlimited());
    join(&mut r, 1, "a", &v2("ana"), 1);
    join(&mut r, 2, "b", &v2("bo"), 1);
    let long = format!(r#"{{"message":"hi","id":"{}"}}"#, "x".repeat(65));
    for frame in [
        r#"{"message":"hi","id":""}"#,
        r#"{"message":"hi","id":"a b"}"#,
        r#"{"message":"hi","id":7}"#,
        r#"{"message":"hi","id":["a"]}"#,
        r#"{"message":"hi","id":"\u0041."}"#,
        long.as_str(),
        r#"{"history":{},"id":"é"}"#,
        r#"{"history":{"limit":0},"id":false}"#,
    ] {
        let acts = r.on_text(1, frame, 2);
        let got = frames_for(&acts, 1);
        assert_eq!(
            got,
            vec![json!({"error": ErrorKind::IdInvalid.sentence(), "code": "id_invalid"})],
            "{frame}"
        );
        assert!(frames_for(&acts, 2).is_empty(), "{frame}");
    }
    assert_eq!(r.last_seq(), 0, "nothing stored");
    assert!(r.storage().is_empty());
    // `null` is no id.
    let acts = r.on_text(1, r#"{"message":"hi","id":null}"#, 3);
    assert_eq!(r.last_seq(), 1);
    assert!(frames_for(&acts, 1).iter().all(|f| f.get("ok").is_none()));
}

#[test]
fn a_v1_session_ignores_ids_entirely() {
    let mut r = room(unlimited());
    join(&mut r, 1, "a", r#"{"name":"old"}"#, 1);
    let acts = r.on_text(1, r#"{"message":"hi","id":"bad id"}"#, 2);
    assert_eq!(r.last_seq(), 1, "stored: v1 knows no id");
    assert_eq!(
        messages_for(&acts, 1),
        vec![r#"{"name":"old","message":"hi","timestamp":2,"seq":1}"#.into()]
    );
    let acts = r.on_text(1, r#"{"message":"hi","id":"r1"}"#, 3);
    assert_eq!(messages_for(&acts, 1).len(), 1);
    let acts = r.on_text(1, r#"{"message":"","id":"r1"}"#, 4);
    assert_eq!(
        messages_for(&acts, 1),
        vec![r#"{"error":"Message is empty."}"#.into()]
    );
    let acts = r.on_text(1, r#"{"history":{},"id":"r1"}"#, 4);
    assert_eq!(
        messages_for(&acts, 1),
        vec![format!(
            r#"{{"error":"{}"}}"#,
            ErrorKind::HistoryNeedsV2.sentence().replace('"', "\\\"")
        )
        .into()]
    );
}

#[test]
fn a_rate_limited_request_is_answered_by_its_refusal() {
    let mut r = room(Config {
        rate_burst: 1,
        rate_per_sec: 0.001,
        rate_strikes: 10,
        ..Config::default()
    });
    join(&mut r, 1, "a", &v2("ana"), 1);
    say(&mut r, 1, "first", 2);
    let acts = r.on_text(1, r#"{"message":"x","id":"late"}"#, 3);
    assert_eq!(
        frames_for(&acts, 1),
        vec![
            json!({"error": ErrorKind::RateLimited.sentence(), "code": "rate_limited", "re": "late"})
        ]
    );
    // A refused frame with a bad id or none: the refusal alone.
    let acts = r.on_text(1, r#"{"message":"x","id":"a b"}"#, 4);
    assert_eq!(frames_for(&acts, 1)[0].get("re"), None);
}

#[test]
fn every_id_is_answered_exactly_once_whatever_the_request() {
    let mut r = room(unlimited());
    join(&mut r, 1, "a", &v2("ana"), 1);
    join(&mut r, 2, "b", &v2("bo"), 1);
    let requests = [
        r#"{"message":"one","id":"q0"}"#,
        r#"{"message":"","id":"q1"}"#,
        r#"{"history":{},"id":"q2"}"#,
        r#"{"members":{},"id":"q3"}"#,
        r#"{"delete":1,"id":"q4"}"#,
        r#"{"message":"two","cid":"k","id":"q5"}"#,
        r#"{"message":"two","cid":"k","id":"q6"}"#,
        r#"{"message":5,"id":"q7"}"#,
        r#"{"nothing":1,"id":"q8"}"#,
    ];
    let mut frames = Vec::new();
    for (i, req) in requests.iter().enumerate() {
        let acts = r.on_text(1, req, 10 + i as u64);
        only_to(&acts, 1);
        frames.extend(frames_for(&acts, 1));
    }
    for i in 0..requests.len() {
        let id = format!("q{i}");
        assert_eq!(answers(&frames, &id).len(), 1, "{id}: {frames:?}");
    }
}

#[test]
fn a_batch_sessions_answer_keeps_its_place_behind_pending_broadcasts() {
    let mut r = room(Config {
        batch_window_ms: 1000,
        batch_send_budget: 1,
        ..unlimited()
    });
    join(&mut r, 1, "a", r#"{"name":"ana","v":2,"batch":true}"#, 1000);
    join(&mut r, 2, "b", &v2("bo"), 1000);
    // Held for the window.
    let acts = say(&mut r, 2, "pending", 1002);
    assert!(messages_for(&acts, 1).is_empty(), "held for the window");
    let acts = r.on_text(1, r#"{"history":{"limit":1},"id":"h"}"#, 1003);
    let got = frames_for(&acts, 1);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["message"], "pending");
    assert_eq!(got[1]["re"], "h");
    assert_eq!(got[1]["history"][0]["message"], "pending");
    // Its own message: the chat frame, then the answer, in one batch.
    let acts = r.on_text(1, r#"{"message":"mine","id":"m"}"#, 1004);
    let got = frames_for(&acts, 1);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["message"], "mine");
    assert_eq!(got[1], json!({"ok": true, "seq": 2, "re": "m"}));
}

const SECRET: &str = "test-secret-0123456789abcdef-0123456789";
const ROOM: &str = "lobby";
const T0: u64 = 1_764_000_000_000;

fn moderator_hello(sub: &str) -> String {
    let secret = AuthSecret::new(SECRET).unwrap();
    let token = mint(
        &secret,
        &Claims {
            sub: sub.to_owned(),
            exp: T0 / 1000 + 3600,
            role: Some(Role::Moderator),
            room: Some(ROOM.to_owned()),
            ..Claims::default()
        },
    );
    json!({"name": sub, "token": token, "v": 2}).to_string()
}

fn auth_room() -> Room<MemoryStorage> {
    room(unlimited()).with_auth(Some(Auth {
        secret: AuthSecret::new(SECRET).unwrap(),
        room: ROOM.to_owned(),
    }))
}

#[test]
fn moderator_requests_with_ids_get_ok_or_their_error() {
    let mut r = auth_room();
    join(&mut r, 1, "a", &moderator_hello("mod"), T0);
    join(&mut r, 2, "b", &v2("bo"), T0);
    say(&mut r, 2, "spam", T0 + 1);
    let acts = r.on_text(1, r#"{"delete":1,"id":"d1"}"#, T0 + 2);
    assert_eq!(
        frames_for(&acts, 1),
        vec![json!({"deleted": 1}), json!({"ok": true, "re": "d1"})]
    );
    assert_eq!(frames_for(&acts, 2), vec![json!({"deleted": 1})]);
    let acts = r.on_text(1, r#"{"delete":1,"id":"d2"}"#, T0 + 3);
    let got = frames_for(&acts, 1);
    assert_eq!(got.len(), 1);
    assert_eq!(
        (&got[0]["code"], &got[0]["re"]),
        (&json!("no_such_message"), &json!("d2"))
    );
    let acts = r.on_text(1, r#"{"mute":{"user":"u9","secs":60},"id":"m1"}"#, T0 + 4);
    assert_eq!(frames_for(&acts, 1), vec![json!({"ok": true, "re": "m1"})]);
    let acts = r.on_text(1, r#"{"kick":{"user":"u9","secs":60},"id":"k1"}"#, T0 + 5);
    assert_eq!(frames_for(&acts, 1), vec![json!({"ok": true, "re": "k1"})]);
    // Kicking its own user id: the kick is no answer; the session is gone, so nothing is.
    let acts = r.on_text(1, r#"{"kick":{"user":"mod","secs":1},"id":"k2"}"#, T0 + 6);
    let got = frames_for(&acts, 1);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["code"], "kicked");
    assert!(got[0].get("re").is_none());
}

/// The frames a random request can be: every kind, valid or not, with `ID` where its id
/// goes (left out of some).
const REQUESTS: &[&str] = &[
    r#"{"message":"hi","id":ID}"#,
    r#"{"message":"hi","cid":"k","id":ID}"#,
    r#"{"message":" ","id":ID}"#,
    r#"{"message":7,"id":ID}"#,
    r#"{"history":{"limit":2},"id":ID}"#,
    r#"{"history":{"limit":0},"id":ID}"#,
    r#"{"members":{},"id":ID}"#,
    r#"{"members":{"after":1},"id":ID}"#,
    r#"{"delete":1,"id":ID}"#,
    r#"{"kick":{"user":"u9","secs":1},"id":ID}"#,
    r#"{"mute":{"user":"u9","secs":1},"id":ID}"#,
    r#"{"nothing":true,"id":ID}"#,
    r#"{"id":ID}"#,
    r#"{"message":"no id"}"#,
    r#"[1,"id"]"#,
];

/// A random session of a room (1: v2, 2: v2 batched, 3: v1, 4: a moderator, v2) sends a
/// random request.
fn request() -> impl proptest::strategy::Strategy<Value = (ConnId, usize, bool)> {
    (1u64..=4, 0..REQUESTS.len(), proptest::bool::weighted(0.1))
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Whatever v2 sessions send, batched or not, moderator or not, under a tight rate
    /// limit: each valid id is answered exactly once, to its sender only, and a malformed
    /// one never; a v1 session never gets `re`, `code` or `ok`.
    #[test]
    fn each_valid_id_is_answered_exactly_once_to_its_sender(
        requests in proptest::collection::vec(request(), 1..60),
    ) {
        let mut r = room(Config {
            rate_burst: 6,
            rate_per_sec: 2.0,
            rate_strikes: 1_000,
            batch_window_ms: 50,
            ..Config::default()
        })
        .with_auth(Some(Auth {
            secret: AuthSecret::new(SECRET).unwrap(),
            room: ROOM.to_owned(),
        }));
        join(&mut r, 1, "a", &v2("ana"), T0);
        join(&mut r, 2, "b", r#"{"name":"bo","v":2,"batch":true}"#, T0);
        join(&mut r, 3, "c", r#"{"name":"cy"}"#, T0);
        join(&mut r, 4, "d", &moderator_hello("mod"), T0);
        let mut now = T0;
        for (i, (conn, kind, bad_id)) in requests.into_iter().enumerate() {
            now += 37;
            let id = format!("r{i}");
            let quoted = if bad_id { "\"a b\"".to_owned() } else { format!("\"{id}\"") };
            let text = REQUESTS[kind].replace("ID", &quoted);
            let acts = r.on_text(conn, &text, now);
            let with_id = REQUESTS[kind].contains("ID") && !bad_id && conn != 3;
            let mut answers = 0;
            for to in 1..=4u64 {
                let frames = frames_for(&acts, to);
                let mine = frames.iter().filter(|f| f["re"] == id.as_str()).count();
                if to == conn {
                    answers += mine;
                } else {
                    proptest::prop_assert_eq!(mine, 0, "{} answered to {}", text, to);
                }
                if to == 3 {
                    for f in &frames {
                        proptest::prop_assert!(
                            f.get("re").is_none() && f.get("code").is_none() && f.get("ok").is_none(),
                            "v1 got {}", f
                        );
                    }
                }
            }
            proptest::prop_assert_eq!(answers, usize::from(with_id), "{}", text);
            // Pending batches go out; none of them answers anything.
            let re = format!("\"re\":\"{id}\"");
            for a in r.on_tick(now + 60) {
                if let Action::Broadcast { frame, .. } | Action::Send { frame, .. } = a {
                    proptest::prop_assert!(!frame.contains(&re), "late answer {}", frame);
                }
            }
        }
    }
}
