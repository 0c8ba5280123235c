//! Signed identity and moderation: join tokens, verified frames, delete, kick, mute,
//! their durability across a rebuild, the audit table, and (as a property) that no path
//! ever sends a deleted message's text again.

mod common;

use chat_handler::identity::{mint, Claims};
use chat_handler::{
    Action, AuditEntry, Auth, AuthSecret, Close, Config, ConnId, ErrorKind, MemoryStorage, Role,
    Room, Session, Storage,
};
use common::*;
use proptest::prelude::*;
use serde_json::{json, Value};

const SECRET: &str = "test-secret-0123456789abcdef-0123456789";
const ROOM: &str = "lobby";
/// The rooms' clock: tokens are minted against it.
const T0: u64 = 1_764_000_000_000;

fn secret() -> AuthSecret {
    AuthSecret::new(SECRET).unwrap()
}

fn auth_room(config: Config) -> Room<MemoryStorage> {
    room(config).with_auth(Some(Auth {
        secret: secret(),
        room: ROOM.to_owned(),
    }))
}

fn token(sub: &str, f: impl FnOnce(&mut Claims)) -> String {
    let mut c = Claims {
        sub: sub.to_owned(),
        exp: T0 / 1000 + 3600,
        ..Claims::default()
    };
    f(&mut c);
    mint(&secret(), &c)
}

fn moderator(sub: &str) -> String {
    token(sub, |c| {
        c.role = Some(Role::Moderator);
        c.room = Some(ROOM.to_owned());
    })
}

/// A hello with a token (v2 when `v2`).
fn hello(name: &str, token: Option<&str>, v2: bool) -> String {
    let mut h = json!({ "name": name });
    if let Some(t) = token {
        h["token"] = json!(t);
    }
    if v2 {
        h["v"] = json!(2);
    }
    h.to_string()
}

fn send(r: &mut Room<MemoryStorage>, conn: ConnId, v: Value, now: u64) -> Vec<Action> {
    r.on_text(conn, &v.to_string(), now)
}

fn last(frames: &[Value]) -> &Value {
    frames.last().expect("a frame")
}

fn errors(frames: &[Value]) -> Vec<&str> {
    frames.iter().filter_map(error_text).collect()
}

fn audit_lines(actions: &[Action]) -> Vec<Value> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Audit { line } => Some(serde_json::from_str(line).expect("JSON line")),
            _ => None,
        })
        .collect()
}

fn rebuilt(r: &Room<MemoryStorage>) -> Room<MemoryStorage> {
    let sessions: Vec<Session> = r
        .sessions()
        .map(|s| serde_json::from_str(&serde_json::to_string(s).unwrap()).unwrap())
        .collect();
    Room::restore(r.config().clone(), r.storage().clone(), "x", sessions)
        .unwrap()
        .with_auth(Some(Auth {
            secret: secret(),
            room: ROOM.to_owned(),
        }))
}

#[test]
fn a_verified_session_carries_its_user_and_role_everywhere() {
    let mut r = auth_room(unlimited());
    let t = token("u42", |c| {
        c.name = Some("Ana".into());
        c.role = Some(Role::Moderator);
        c.room = Some(ROOM.to_owned());
    });
    // The token's name wins over the hello's.
    let acts = join(&mut r, 1, "a", &hello("mallory", Some(&t), false), T0);
    let own = frames_for(&acts, 1);
    assert_eq!(own[0], json!({"joined": "Ana"}));
    assert_eq!(
        own[1],
        json!({"ready": true, "epoch": EPOCH, "seq": 0, "recovered": false, "user": "u42", "role": "moderator"})
    );
    let acts = join(&mut r, 2, "b", &hello("bob", None, true), T0);
    let bob = frames_for(&acts, 2);
    assert_eq!(
        bob[0],
        json!({"roster": [{"name": "Ana", "user": "u42", "role": "moderator"}]})
    );
    // An anonymous session has no user in its ready, and cannot claim one.
    assert_eq!(
        *last(&bob),
        json!({"ready": true, "epoch": EPOCH, "seq": 0, "recovered": false, "v": 2})
    );
    let acts = say(&mut r, 1, "signed", T0 + 1);
    assert_eq!(
        broadcasts(&acts),
        vec![
            json!({"name": "Ana", "message": "signed", "timestamp": T0 + 1, "seq": 1, "user": "u42"})
        ]
    );
    let acts = send(&mut r, 2, json!({"message": "anon", "user": "u42"}), T0 + 2);
    assert_eq!(
        broadcasts(&acts),
        vec![json!({"name": "bob", "message": "anon", "timestamp": T0 + 2, "seq": 2})]
    );
    // Backlogs keep the user of each message; a plain member's roster entry has none.
    let plain = token("u7", |_| {});
    let acts = join(&mut r, 3, "c", &hello("x", Some(&plain), true), T0 + 3);
    let c = frames_for(&acts, 3);
    let roster = c[0]["roster"].as_array().unwrap();
    assert!(roster.contains(&json!({"name": "bob"})));
    assert!(roster.contains(&json!({"name": "Ana", "user": "u42", "role": "moderator"})));
    assert_eq!(c[1]["user"], "u42");
    assert!(c[2].get("user").is_none());
    assert_eq!(c[3], json!({"joined": "u7"}));
    assert_eq!(c[4]["user"], "u7");
    assert!(c[4].get("role").is_none());
}

#[test]
fn without_a_secret_identity_is_off_and_tokens_are_ignored() {
    let mut r = room(unlimited());
    let t = moderator("u1");
    let acts = join(&mut r, 1, "a", &hello("ana", Some(&t), false), T0);
    assert_eq!(
        *last(&frames_for(&acts, 1)),
        json!({"ready": true, "epoch": EPOCH, "seq": 0, "recovered": false})
    );
    let acts = send(&mut r, 1, json!({"delete": 1}), T0);
    assert_eq!(
        errors(&frames_for(&acts, 1)),
        [ErrorKind::NotModerator.sentence()]
    );
    // Even garbage in `token` joins, as before identity existed.
    let acts = join(&mut r, 2, "b", r#"{"name":"bob","token":5}"#, T0);
    assert!(last(&frames_for(&acts, 2)).get("ready").is_some());
}

#[test]
fn bad_tokens_are_refused_with_an_error_and_1008_never_joined_anonymously() {
    let expired = token("u1", |c| c.exp = T0 / 1000 - 61);
    let early = token("u1", |c| c.nbf = Some(T0 / 1000 + 61));
    let elsewhere = token("u1", |c| c.room = Some("other".into()));
    let other_secret = mint(
        &AuthSecret::new(&"z".repeat(40)).unwrap(),
        &Claims {
            sub: "u1".into(),
            exp: T0 / 1000 + 60,
            ..Claims::default()
        },
    );
    let cases: Vec<(String, ErrorKind)> = vec![
        (expired, ErrorKind::TokenExpired),
        (early, ErrorKind::TokenNotYetValid),
        (elsewhere, ErrorKind::TokenWrongRoom),
        (other_secret, ErrorKind::TokenSignature),
        ("x.y.z".into(), ErrorKind::TokenMalformed),
        ("a".repeat(4097), ErrorKind::TokenTooLong),
    ];
    for (t, want) in cases {
        let mut r = auth_room(Config::default());
        join(&mut r, 9, "w", "{}", T0);
        let acts = join(&mut r, 1, "a", &hello("ana", Some(&t), true), T0);
        let got = frames_for(&acts, 1);
        // The hello asked for v2: its refusal has the code.
        assert_eq!(
            got,
            vec![json!({"error": want.sentence(), "code": want.label()})],
            "{want:?}"
        );
        assert_eq!(close_of(&acts, 1), Some(Close::BadToken));
        assert!(frames_for(&acts, 9).is_empty(), "no joined, no quit");
        assert_eq!(r.members().count(), 1);
    }
    // Not a string at all.
    let mut r = auth_room(Config::default());
    let acts = join(&mut r, 1, "a", r#"{"token":{"sub":"u1"}}"#, T0);
    assert_eq!(
        frames_for(&acts, 1),
        vec![json!({"error": ErrorKind::TokenMalformed.sentence()})]
    );
    // A token for this room, by its id, is fine.
    let mut r = auth_room(Config::default());
    let here = token("u1", |c| c.room = Some(ROOM.into()));
    let acts = join(&mut r, 1, "a", &hello("", Some(&here), false), T0);
    assert_eq!(close_of(&acts, 1), None);
}

#[test]
fn a_room_that_requires_tokens_refuses_a_hello_without_one() {
    let mut r = auth_room(Config {
        auth_required: true,
        ..Config::default()
    });
    let acts = join(&mut r, 1, "a", r#"{"name":"ana"}"#, T0);
    assert_eq!(
        frames_for(&acts, 1),
        vec![json!({"error": ErrorKind::TokenRequired.sentence()})]
    );
    assert_eq!(close_of(&acts, 1), Some(Close::BadToken));
    let acts = join(&mut r, 2, "a", r#"{"name":"ana","token":null}"#, T0);
    assert_eq!(close_of(&acts, 2), Some(Close::BadToken));
    let acts = join(
        &mut r,
        3,
        "a",
        &hello("ana", Some(&token("u1", |_| {})), false),
        T0,
    );
    assert_eq!(close_of(&acts, 3), None);
    // With no secret at all, nobody could ever join: refused the same way.
    let mut r = room(Config {
        auth_required: true,
        ..Config::default()
    });
    let acts = join(
        &mut r,
        1,
        "a",
        &hello("ana", Some(&token("u1", |_| {})), false),
        T0,
    );
    assert_eq!(close_of(&acts, 1), Some(Close::BadToken));
}

#[test]
fn non_moderators_are_refused_stay_open_and_pay_a_token() {
    let mut r = auth_room(Config {
        rate_burst: 2,
        rate_per_sec: 0.001,
        ..Config::default()
    });
    join(
        &mut r,
        1,
        "a",
        &hello("", Some(&token("u1", |_| {})), false),
        T0,
    );
    join(&mut r, 2, "b", "{}", T0);
    say(&mut r, 2, "spam", T0);
    for conn in [1, 2] {
        for frame in [
            json!({"delete": 1}),
            json!({"kick": {"user": "u1", "secs": 5}}),
            json!({"mute": "garbage"}),
        ] {
            let acts = send(&mut r, conn, frame.clone(), T0);
            let got = frames_for(&acts, conn);
            let want = if acts.iter().any(|a| matches!(a, Action::Close { .. })) {
                panic!("closed: {acts:?}")
            } else {
                got.last().and_then(error_text).unwrap()
            };
            assert!(
                want == ErrorKind::NotModerator.sentence()
                    || want == ErrorKind::RateLimited.sentence(),
                "{frame}: {want}"
            );
        }
    }
    // Each of them used a token: with a burst of 2, the second address's chat and
    // first refusal took both, so its later frames were rate limited.
    let acts = say(&mut r, 2, "more", T0);
    assert_eq!(
        errors(&frames_for(&acts, 2)),
        [ErrorKind::RateLimited.sentence()]
    );
    assert_eq!(r.last_seq(), 1, "nothing deleted, nothing said");
    assert_eq!(r.members().count(), 2);
}

#[test]
fn delete_tombstones_the_message_for_everyone() {
    let mut r = auth_room(unlimited());
    join(
        &mut r,
        1,
        "m",
        &hello("", Some(&moderator("mod")), false),
        T0,
    );
    join(&mut r, 2, "a", &hello("v2", None, true), T0);
    join(&mut r, 3, "b", &hello("v1", None, false), T0);
    say(&mut r, 2, "keep", T0 + 1);
    say(&mut r, 3, "abuse", T0 + 2);
    say(&mut r, 2, "keep too", T0 + 3);
    let acts = send(&mut r, 1, json!({"delete": 2}), T0 + 4);
    assert_eq!(frames_for(&acts, 2), vec![json!({"deleted": 2})]);
    assert!(frames_for(&acts, 3).is_empty(), "v1 gets no v2 frame");
    assert!(frames_for(&acts, 1).is_empty(), "the v1 moderator neither");
    assert_eq!(
        audit_lines(&acts),
        vec![
            json!({"audit": "delete", "room": ROOM, "moderator": "mod", "seq": 2, "at_ms": T0 + 4})
        ]
    );
    // Gone from storage, not hidden.
    let stored = r.storage_mut().after(1, 1).unwrap().remove(0);
    assert_eq!((stored.message.as_str(), stored.deleted), ("", true));
    // Later backlogs skip it, for v1 and v2 alike.
    for (conn, h) in [
        (4, hello("late", None, false)),
        (5, hello("late2", None, true)),
    ] {
        let acts = join(&mut r, conn, "c", &h, T0 + 5);
        let frames = frames_for(&acts, conn);
        let texts: Vec<&str> = frames
            .iter()
            .filter_map(|f| f.get("message").and_then(Value::as_str))
            .collect();
        assert_eq!(texts, ["keep", "keep too"]);
    }
    // Gone is gone: once more, or a seq never stored, is an error, and the socket stays.
    for seq in [2, 0, 99] {
        let acts = send(&mut r, 1, json!({"delete": seq}), T0 + 6);
        assert_eq!(
            errors(&frames_for(&acts, 1)),
            [ErrorKind::NoSuchMessage.sentence()]
        );
        assert!(audit_lines(&acts).is_empty());
    }
    // A message stays deletable by seq after a rebuild; the tombstone survives it.
    let mut back = rebuilt(&r);
    let acts = send(&mut back, 1, json!({"delete": 3}), T0 + 7);
    assert_eq!(broadcasts(&acts), vec![json!({"deleted": 3})]);
    assert_eq!(back.storage_mut().last_n(10).unwrap().len(), 1);
}

#[test]
fn a_moderator_token_must_name_its_room_or_every_room() {
    let mut r = auth_room(unlimited());
    join(&mut r, 1, "a", &hello("ana", None, true), T0);
    say(&mut r, 1, "hi", T0 + 1);
    // Room-less: refused at the hello with its own sentence and 1008, never joined.
    let roomless = token("u-mod", |c| c.role = Some(Role::Moderator));
    r.try_connect(2, peer("m"), T0).unwrap();
    let acts = r.on_text(2, &hello("", Some(&roomless), false), T0 + 2);
    assert_eq!(
        errors(&frames_for(&acts, 2)),
        [ErrorKind::ModeratorTokenNeedsRoom.sentence()]
    );
    assert_eq!(close_of(&acts, 2), Some(Close::BadToken));
    // `*`: a moderator here (and anywhere).
    let everywhere = token("u-mod", |c| {
        c.role = Some(Role::Moderator);
        c.room = Some("*".into());
    });
    join(&mut r, 3, "m", &hello("", Some(&everywhere), false), T0 + 3);
    let acts = send(&mut r, 3, json!({"delete": 1}), T0 + 4);
    assert_eq!(broadcasts(&acts), vec![json!({"deleted": 1})]);
    // The named room: a moderator here; another room's token is refused as ever.
    join(
        &mut r,
        4,
        "m",
        &hello("", Some(&moderator("u-mod2")), false),
        T0 + 5,
    );
    say(&mut r, 1, "again", T0 + 6);
    let acts = send(&mut r, 4, json!({"delete": 2}), T0 + 7);
    assert_eq!(broadcasts(&acts), vec![json!({"deleted": 2})]);
    // A plain user's token may name no room, this one or every room.
    for room in [None, Some(ROOM), Some("*")] {
        let t = token("u-plain", |c| c.room = room.map(str::to_owned));
        let conn = 10 + u64::from(room.map_or(0, |r| r.len() as u8));
        let acts = join(&mut r, conn, "p", &hello("", Some(&t), false), T0 + 8);
        assert!(close_of(&acts, conn).is_none(), "{room:?}");
    }
}

#[test]
fn a_retried_cid_of_a_deleted_message_gets_its_tombstone_never_a_chat_frame() {
    let mut r = auth_room(unlimited());
    join(
        &mut r,
        1,
        "m",
        &hello("", Some(&moderator("mod")), true),
        T0,
    );
    join(&mut r, 2, "a", &hello("v2", None, true), T0);
    join(&mut r, 3, "b", &hello("v1", None, false), T0);
    send(
        &mut r,
        2,
        json!({"message": "from v2", "cid": "c2"}),
        T0 + 1,
    );
    send(
        &mut r,
        3,
        json!({"message": "from v1", "cid": "c1"}),
        T0 + 2,
    );
    for seq in [1, 2] {
        send(&mut r, 1, json!({"delete": seq}), T0 + 3);
    }
    // The room rebuilt in between changes nothing: the tombstone is in storage.
    let mut r = rebuilt(&r);
    for (conn, text, cid) in [(2, "from v2", "c2"), (3, "from v1", "c1")] {
        let acts = send(&mut r, conn, json!({"message": text, "cid": cid}), T0 + 4);
        let frames = frames_for(&acts, conn);
        let want = if conn == 2 {
            json!({"deleted": 1, "cid": "c2"})
        } else {
            json!({"error": ErrorKind::MessageDeleted.sentence()})
        };
        assert_eq!(frames, vec![want], "the sender alone gets one answer");
        assert!(broadcasts(&acts).is_empty(), "nothing for anyone else");
        assert_eq!(r.last_seq(), 2, "not stored again");
    }
    // A retry of a message still there is its chat frame, as ever.
    say(&mut r, 2, "kept", T0 + 5);
    send(
        &mut r,
        2,
        json!({"message": "kept too", "cid": "c3"}),
        T0 + 6,
    );
    let acts = send(
        &mut r,
        2,
        json!({"message": "kept too", "cid": "c3"}),
        T0 + 7,
    );
    let frames = frames_for(&acts, 2);
    assert_eq!(frames.len(), 1);
    assert_eq!(
        (frames[0]["message"].as_str(), frames[0]["seq"].as_u64()),
        (Some("kept too"), Some(4))
    );
}

/// What a v2 client resuming from `seq` receives before its own `joined`.
fn resumed(
    r: &mut Room<MemoryStorage>,
    conn: ConnId,
    seq: u64,
    v2: bool,
    now: u64,
) -> (Vec<Value>, bool) {
    let mut h = json!({"name": "back", "resume": {"epoch": EPOCH, "seq": seq}});
    if v2 {
        h["v"] = json!(2);
    }
    let acts = join(r, conn, "z", &h.to_string(), now);
    let frames = frames_for(&acts, conn);
    let recovered = last(&frames)["recovered"].as_bool().unwrap();
    // Leave out the roster (a `roster` frame, or v1's `joined`s), `joined` and `ready`.
    let body = frames
        .into_iter()
        .filter(|f| f.get("message").is_some() || f.get("deleted").is_some())
        .collect();
    (body, recovered)
}

#[test]
fn a_v2_resume_is_exact_across_deletions_and_v1_just_skips_them() {
    let mut r = auth_room(Config {
        resume_max: 6,
        ..unlimited()
    });
    join(
        &mut r,
        1,
        "m",
        &hello("", Some(&moderator("mod")), true),
        T0,
    );
    for i in 1..=5 {
        say(&mut r, 1, &format!("m{i}"), T0 + i);
    }
    // A client held 1..=3 and left. Then 2 (which it holds) and 4 (in its gap) go.
    send(&mut r, 1, json!({"delete": 2}), T0 + 10);
    send(&mut r, 1, json!({"delete": 4}), T0 + 11);
    let (got, recovered) = resumed(&mut r, 2, 3, true, T0 + 12);
    assert!(recovered);
    assert_eq!(
        got,
        vec![
            json!({"deleted": 2}),
            json!({"deleted": 4}),
            json!({"name": "mod", "message": "m5", "timestamp": T0 + 5, "seq": 5, "user": "mod"}),
        ]
    );
    // A client holding up to 5 may or may not have seen them (they happened while the
    // room stood at 5): it hears of them again, which changes nothing for it.
    let (got, recovered) = resumed(&mut r, 3, 5, true, T0 + 13);
    assert!(recovered);
    assert_eq!(got, vec![json!({"deleted": 2}), json!({"deleted": 4})]);
    // v1: the gap without the tombstone, and nothing about older deletions.
    let (got, recovered) = resumed(&mut r, 4, 3, false, T0 + 14);
    assert!(recovered);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["seq"], 5);
    // Deletions count toward resume_max with the gap: 2 of them + a gap of 5 > 6.
    let (got, recovered) = resumed(&mut r, 5, 0, true, T0 + 15);
    assert!(recovered, "0 holds nothing: only the gap counts");
    assert_eq!(got.len(), 5);
    send(&mut r, 1, json!({"delete": 1}), T0 + 16);
    send(&mut r, 1, json!({"delete": 3}), T0 + 17);
    // From seq 1: deletions of 1 (at or below) + the gap 2..=5 (4 frames) = 5 ≤ 6.
    let (got, recovered) = resumed(&mut r, 6, 1, true, T0 + 18);
    assert!(recovered);
    assert_eq!(
        got,
        vec![
            json!({"deleted": 1}),
            json!({"deleted": 2}),
            json!({"deleted": 3}),
            json!({"deleted": 4}),
            json!({"name": "mod", "message": "m5", "timestamp": T0 + 5, "seq": 5, "user": "mod"}),
        ]
    );
    // From seq 5 after four deletions at seq 5: 4 frames; with resume_max 3 it is too
    // many to be exact, so the client starts afresh.
    let mut small = Room::restore(
        Config {
            resume_max: 3,
            backlog: 3,
            ..unlimited()
        },
        r.storage().clone(),
        "x",
        Vec::<Session>::new(),
    )
    .unwrap();
    let (got, recovered) = resumed(&mut small, 7, 5, true, T0 + 19);
    assert!(!recovered);
    assert_eq!(got.len(), 1, "the one live message of the backlog: {got:?}");
    // Once the room has moved on, a client holding the newer seq hears of none of them.
    say(&mut r, 1, "m6", T0 + 20);
    let (got, recovered) = resumed(&mut r, 8, 6, true, T0 + 21);
    assert!(recovered);
    assert!(got.is_empty(), "{got:?}");
}

#[test]
fn kick_closes_every_session_of_the_user_and_refuses_rejoins_for_its_secs() {
    let mut r = auth_room(unlimited());
    let victim = token("u9", |_| {});
    join(
        &mut r,
        1,
        "m",
        &hello("", Some(&moderator("mod")), false),
        T0,
    );
    join(&mut r, 2, "a", &hello("", Some(&victim), true), T0);
    join(&mut r, 3, "b", &hello("", Some(&victim), false), T0);
    join(&mut r, 4, "c", &hello("bystander", None, false), T0);
    let acts = send(
        &mut r,
        1,
        json!({"kick": {"user": "u9", "secs": 300}}),
        T0 + 1,
    );
    for conn in [2, 3] {
        let mut want = json!({"error": ErrorKind::Kicked.sentence()});
        if conn == 2 {
            want["code"] = json!("kicked"); // the v2 session's
        }
        assert_eq!(frames_for(&acts, conn)[0], want);
        assert_eq!(close_of(&acts, conn), Some(Close::Kicked));
    }
    assert_eq!(Close::Kicked.code(), 4001);
    assert_eq!(
        frames_for(&acts, 4),
        vec![json!({"quit": "u9"}), json!({"quit": "u9"})]
    );
    assert_eq!(r.members().collect::<Vec<_>>(), [1, 4]);
    assert_eq!(
        audit_lines(&acts),
        vec![
            json!({"audit": "kick", "room": ROOM, "moderator": "mod", "user": "u9", "secs": 300, "at_ms": T0 + 1})
        ]
    );
    // Refused until the kick is over, even after a rebuild from storage.
    let mut r = rebuilt(&r);
    let acts = join(
        &mut r,
        5,
        "a",
        &hello("", Some(&victim), false),
        T0 + 299_000,
    );
    assert_eq!(
        frames_for(&acts, 5),
        vec![json!({"error": ErrorKind::StillKicked.sentence()})]
    );
    assert_eq!(close_of(&acts, 5), Some(Close::Kicked));
    let acts = join(
        &mut r,
        6,
        "a",
        &hello("", Some(&victim), false),
        T0 + 301_000,
    );
    assert_eq!(close_of(&acts, 6), None);
    // A kick without secs closes but does not bar: the user may come straight back,
    // and it replaces a longer kick.
    send(
        &mut r,
        1,
        json!({"kick": {"user": "u9", "secs": 600}}),
        T0 + 302_000,
    );
    let acts = send(&mut r, 1, json!({"kick": {"user": "u9"}}), T0 + 303_000);
    assert_eq!(audit_lines(&acts)[0]["secs"], 0);
    let acts = join(
        &mut r,
        7,
        "a",
        &hello("", Some(&victim), false),
        T0 + 303_000,
    );
    assert_eq!(close_of(&acts, 7), None);
    // Anonymous sessions are not users: a kick names a verified user id only.
    let acts = send(
        &mut r,
        1,
        json!({"kick": {"user": "bystander"}}),
        T0 + 304_000,
    );
    assert!(close_of(&acts, 4).is_none());
}

#[test]
fn a_mute_refuses_messages_until_it_ends_across_rebuilds_and_rejoins() {
    let mut r = auth_room(unlimited());
    let loud = token("u9", |c| c.name = Some("loud".into()));
    join(
        &mut r,
        1,
        "m",
        &hello("", Some(&moderator("mod")), false),
        T0,
    );
    join(&mut r, 2, "a", &hello("", Some(&loud), false), T0);
    let acts = send(&mut r, 1, json!({"mute": {"user": "u9", "secs": 60}}), T0);
    assert!(frames_for(&acts, 2).is_empty(), "a mute is silent");
    let acts = say(&mut r, 2, "shout", T0 + 1);
    assert_eq!(errors(&frames_for(&acts, 2)), [ErrorKind::Muted.sentence()]);
    assert!(broadcasts(&acts).is_empty());
    // Rebuilt from sessions and storage: still muted. A new session of the user too.
    let mut r = rebuilt(&r);
    let acts = say(&mut r, 2, "shout", T0 + 2);
    assert_eq!(errors(&frames_for(&acts, 2)), [ErrorKind::Muted.sentence()]);
    join(&mut r, 3, "b", &hello("", Some(&loud), true), T0 + 3);
    let acts = say(&mut r, 3, "shout", T0 + 4);
    assert_eq!(errors(&frames_for(&acts, 3)), [ErrorKind::Muted.sentence()]);
    // Others still talk, the moderator too.
    assert_eq!(broadcasts(&say(&mut r, 1, "ok", T0 + 5)).len(), 1);
    // It ends by itself…
    let acts = say(&mut r, 2, "back", T0 + 60_001);
    assert_eq!(broadcasts(&acts)[0]["message"], "back");
    // …or with secs 0, at once, for every session of the user.
    send(
        &mut r,
        1,
        json!({"mute": {"user": "u9", "secs": 600}}),
        T0 + 61_000,
    );
    assert!(broadcasts(&say(&mut r, 3, "x", T0 + 61_001)).is_empty());
    let acts = send(
        &mut r,
        1,
        json!({"mute": {"user": "u9", "secs": 0}}),
        T0 + 61_002,
    );
    assert_eq!(audit_lines(&acts)[0]["secs"], 0);
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::Save { conn: 3, .. })));
    for conn in [2, 3] {
        assert_eq!(broadcasts(&say(&mut r, conn, "free", T0 + 61_003)).len(), 1);
    }
    assert_eq!(r.storage().restricted_users(), 0, "no row left");
}

#[test]
fn kicks_and_mutes_are_bounded_per_room_and_expired_ones_make_room() {
    let mut r = auth_room(Config {
        max_restricted_users: 2,
        max_moderation_secs: 100,
        ..unlimited()
    });
    join(
        &mut r,
        1,
        "m",
        &hello("", Some(&moderator("mod")), false),
        T0,
    );
    let m = |r: &mut Room<MemoryStorage>, v: Value, now: u64| {
        let acts = send(r, 1, v, now);
        errors(&frames_for(&acts, 1))
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert!(m(&mut r, json!({"mute": {"user": "a", "secs": 10}}), T0).is_empty());
    assert!(m(&mut r, json!({"kick": {"user": "b", "secs": 100}}), T0).is_empty());
    // Changing a user already held needs no new place.
    assert!(m(&mut r, json!({"kick": {"user": "a", "secs": 5}}), T0).is_empty());
    assert_eq!(
        m(&mut r, json!({"mute": {"user": "c", "secs": 10}}), T0),
        [ErrorKind::TooManyRestricted.sentence()]
    );
    assert_eq!(
        m(&mut r, json!({"mute": {"user": "c", "secs": 101}}), T0),
        [ErrorKind::SecsTooLarge.sentence()]
    );
    // Lifting a restriction, or one that ends at once, takes no place either.
    assert!(m(&mut r, json!({"kick": {"user": "c"}}), T0).is_empty());
    // Once "a" is over, its row is pruned and "c" fits.
    assert!(m(
        &mut r,
        json!({"mute": {"user": "c", "secs": 10}}),
        T0 + 10_000
    )
    .is_empty());
    assert_eq!(r.storage().restricted_users(), 2);
}

#[test]
fn every_moderator_action_is_audited_and_the_table_is_bounded() {
    let mut r = auth_room(Config {
        audit_retention: 3,
        ..unlimited()
    });
    join(
        &mut r,
        1,
        "m",
        &hello("", Some(&moderator("mod")), false),
        T0,
    );
    for i in 1..=4 {
        say(&mut r, 1, "x", T0 + i);
    }
    send(&mut r, 1, json!({"delete": 1}), T0 + 10);
    send(
        &mut r,
        1,
        json!({"mute": {"user": "u2", "secs": 5}}),
        T0 + 11,
    );
    send(
        &mut r,
        1,
        json!({"kick": {"user": "u3", "secs": 6}}),
        T0 + 12,
    );
    send(&mut r, 1, json!({"delete": 2}), T0 + 13);
    // A refused action is not an action: no row.
    send(&mut r, 1, json!({"delete": 2}), T0 + 14);
    let kept = r.storage().recent_audit(10);
    let entry = |at_ms, action: &str, user: Option<&str>, seq, secs| AuditEntry {
        at_ms,
        moderator: "mod".into(),
        action: action.into(),
        user: user.map(str::to_owned),
        seq,
        secs,
    };
    assert_eq!(
        kept,
        vec![
            entry(T0 + 13, "delete", None, Some(2), None),
            entry(T0 + 12, "kick", Some("u3"), None, Some(6)),
            entry(T0 + 11, "mute", Some("u2"), None, Some(5)),
        ]
    );
    assert!(kept.iter().all(|e| e.moderator == "mod"));
}

#[test]
fn a_moderator_frame_with_a_message_is_a_chat_message() {
    let mut r = auth_room(unlimited());
    join(
        &mut r,
        1,
        "m",
        &hello("", Some(&moderator("mod")), false),
        T0,
    );
    let acts = send(&mut r, 1, json!({"message": "hi", "delete": 1}), T0);
    assert_eq!(broadcasts(&acts)[0]["message"], "hi");
    let acts = send(&mut r, 1, json!({"delete": "1"}), T0);
    assert_eq!(
        errors(&frames_for(&acts, 1)),
        [ErrorKind::DeleteShape.sentence()]
    );
}

// --- No path re-sends deleted text -------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Say(usize),
    Delete(u64),
    /// Join a new session: v2 or not, resuming from a seq or not.
    Join {
        v2: bool,
        resume: Option<u64>,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..1000).prop_map(Op::Say),
        (0u64..30).prop_map(Op::Delete),
        (any::<bool>(), proptest::option::of(0u64..30))
            .prop_map(|(v2, resume)| Op::Join { v2, resume }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever is said, deleted and replayed (backlogs, resumes, by v1 and v2 sessions,
    /// before and after a rebuild), no frame sent after a deletion carries the deleted
    /// text, and a v2 client that resumes ends up with exactly the live messages.
    #[test]
    fn deleted_text_is_never_sent_again(ops in proptest::collection::vec(op(), 1..40), rebuild_at in 0usize..40) {
        let mut r = auth_room(Config { backlog: 8, resume_max: 12, retention: 20, ..unlimited() });
        join(&mut r, 1, "m", &hello("", Some(&moderator("mod")), true), T0);
        let mut deleted_texts: Vec<String> = Vec::new();
        // What a continuously connected v2 client (the moderator) knows: seq -> text.
        let mut live: std::collections::BTreeMap<u64, String> = Default::default();
        // The moderator's view each time the room stood at a seq (the last such time).
        let mut snapshots: std::collections::BTreeMap<u64, std::collections::BTreeMap<u64, String>> =
            Default::default();
        snapshots.insert(0, Default::default());
        let mut next_conn = 2;
        let mut now = T0;
        for (i, op) in ops.iter().enumerate() {
            now += 1;
            if i == rebuild_at {
                r = rebuilt(&r);
            }
            let acts = match op {
                Op::Say(n) => {
                    // Unique texts, so a deleted one cannot reappear as another message.
                    let text = format!("text-{i}-{n}");
                    let acts = say(&mut r, 1, &text, now);
                    live.insert(r.last_seq(), text);
                    acts
                }
                Op::Delete(seq) => {
                    let acts = send(&mut r, 1, json!({"delete": seq}), now);
                    if !broadcasts(&acts).is_empty() {
                        if let Some(text) = live.remove(seq) {
                            deleted_texts.push(text);
                        }
                    }
                    acts
                }
                Op::Join { v2, resume } => {
                    let conn = next_conn;
                    next_conn += 1;
                    let mut h = json!({"name": "j"});
                    if *v2 { h["v"] = json!(2); }
                    if let Some(seq) = resume {
                        h["resume"] = json!({"epoch": EPOCH, "seq": seq});
                    }
                    let acts = join(&mut r, conn, "j", &h.to_string(), now);
                    let frames = frames_for(&acts, conn);
                    // A v2 client that held the room as it was when the room last
                    // stood at `seq` (snapshot) and resumes: applying what it gets
                    // gives exactly the live messages (within retention).
                    let recovered = last(&frames)["recovered"].as_bool() == Some(true);
                    if let (true, Some(seq), true) = (*v2, resume, recovered) {
                        let mut view = snapshots.get(seq).cloned().unwrap_or_default();
                        for f in &frames {
                            if let Some(d) = f.get("deleted").and_then(Value::as_u64) {
                                view.remove(&d);
                            }
                            let seq = f.get("seq").and_then(Value::as_u64);
                            let text = f.get("message").and_then(Value::as_str);
                            if let (Some(s), Some(t)) = (seq, text) {
                                view.insert(s, t.to_owned());
                            }
                        }
                        let retained = r.last_seq().saturating_sub(20);
                        view.retain(|s, _| *s > retained);
                        let mut want = live.clone();
                        want.retain(|s, _| *s > retained);
                        prop_assert_eq!(view, want);
                    }
                    r.disconnect(conn, now);
                    acts
                }
            };
            snapshots.insert(r.last_seq(), live.clone());
            for a in &acts {
                let text = match a {
                    Action::Send { frame, .. } | Action::Broadcast { frame, .. } => frame.to_string(),
                    _ => continue,
                };
                for gone in &deleted_texts {
                    prop_assert!(!text.contains(gone.as_str()), "{} re-sent in {}", gone, text);
                }
            }
        }
    }
}

/// An anonymous hello as "owner" from `addr`: how a kicked or muted person tries again.
fn owner_joins(r: &mut Room<MemoryStorage>, conn: ConnId, addr: &str, at: u64) -> Vec<Action> {
    join(r, conn, addr, &hello("owner", None, false), at)
}

/// The first error sentence `conn` got, and how it was closed.
fn refusal(acts: &[Action], conn: ConnId) -> (Option<String>, Option<Close>) {
    let frames = frames_for(acts, conn);
    let error = errors(&frames).first().map(|e| e.to_string());
    (error, close_of(acts, conn))
}

#[test]
fn a_kick_refuses_hellos_from_the_users_address_anonymous_or_not_for_its_secs() {
    let mut r = auth_room(unlimited());
    let victim = token("u9", |c| c.name = Some("vic".into()));
    join(
        &mut r,
        1,
        "10.0.0.1",
        &hello("", Some(&moderator("mod")), false),
        T0,
    );
    join(&mut r, 2, "10.0.0.9", &hello("", Some(&victim), true), T0);
    join(
        &mut r,
        3,
        "2001:db8:0:1::5",
        &hello("", Some(&victim), false),
        T0,
    );
    // Already in the room from the victim's address: stays (a kick refuses hellos).
    join(&mut r, 4, "10.0.0.9", &hello("early", None, false), T0);
    send(
        &mut r,
        1,
        json!({"kick": {"user": "u9", "secs": 300}}),
        T0 + 1,
    );
    assert_eq!(r.members().collect::<Vec<_>>(), [1, 4]);
    let still = (
        Some(ErrorKind::StillKicked.sentence().to_owned()),
        Some(Close::Kicked),
    );
    // Anonymous under another name, from either address (an IPv6 one by its /64), and
    // after a rebuild from storage.
    let mut r = rebuilt(&r);
    for (conn, addr) in [
        (5, "10.0.0.9"),
        (6, "2001:db8:0:1:ffff::1"),
        (7, "::ffff:10.0.0.9"),
    ] {
        let acts = owner_joins(&mut r, conn, addr, T0 + 299_000);
        assert_eq!(refusal(&acts, conn), still, "{addr}");
    }
    // Another user's token from there too; the moderator's is let in.
    let other = token("u10", |_| {});
    let acts = join(
        &mut r,
        8,
        "10.0.0.9",
        &hello("", Some(&other), false),
        T0 + 299_000,
    );
    assert_eq!(refusal(&acts, 8), still);
    let acts = join(
        &mut r,
        9,
        "10.0.0.9",
        &hello("", Some(&moderator("mod2")), false),
        T0 + 299_000,
    );
    assert_eq!(close_of(&acts, 9), None);
    // Another address, the neighbouring /64 included, is not kicked.
    for (conn, addr) in [(10, "10.0.0.10"), (11, "2001:db8:0:2::5")] {
        let acts = owner_joins(&mut r, conn, addr, T0 + 299_000);
        assert_eq!(close_of(&acts, conn), None, "{addr}");
        r.disconnect(conn, T0 + 299_000);
    }
    // A kick given while the first is in force binds the stored addresses again, though
    // the user is not here: still refused once the first one would be over.
    send(
        &mut r,
        1,
        json!({"kick": {"user": "u9", "secs": 600}}),
        T0 + 299_500,
    );
    let acts = owner_joins(&mut r, 12, "10.0.0.9", T0 + 301_000);
    assert_eq!(refusal(&acts, 12), still);
    // Lifting the user's kick lifts the address's, though the user is not here.
    send(&mut r, 1, json!({"kick": {"user": "u9"}}), T0 + 303_000);
    let acts = owner_joins(&mut r, 13, "10.0.0.9", T0 + 303_000);
    assert_eq!(close_of(&acts, 13), None);
    assert_eq!(r.storage().restricted_users(), 0, "no row left");
    r.disconnect(13, T0 + 303_000);
    // A kick is over for the address when its secs are.
    join(
        &mut r,
        14,
        "10.0.0.9",
        &hello("", Some(&victim), false),
        T0 + 304_000,
    );
    send(
        &mut r,
        1,
        json!({"kick": {"user": "u9", "secs": 10}}),
        T0 + 304_000,
    );
    let acts = owner_joins(&mut r, 15, "10.0.0.9", T0 + 313_999);
    assert_eq!(refusal(&acts, 15), still);
    let acts = owner_joins(&mut r, 16, "10.0.0.9", T0 + 314_001);
    assert_eq!(close_of(&acts, 16), None);
}

#[test]
fn with_the_binding_off_a_kick_or_mute_holds_for_the_user_only() {
    let mut r = auth_room(Config {
        moderation_binds_address: false,
        ..unlimited()
    });
    let victim = token("u9", |_| {});
    join(
        &mut r,
        1,
        "m",
        &hello("", Some(&moderator("mod")), false),
        T0,
    );
    join(&mut r, 2, "10.0.0.9", &hello("", Some(&victim), false), T0);
    send(
        &mut r,
        1,
        json!({"kick": {"user": "u9", "secs": 300}}),
        T0 + 1,
    );
    let acts = owner_joins(&mut r, 3, "10.0.0.9", T0 + 2);
    assert_eq!(close_of(&acts, 3), None);
    assert_eq!(r.storage().restricted_users(), 1);
}

#[test]
fn a_mute_mutes_every_session_from_the_users_address_with_or_without_a_token() {
    let mut r = auth_room(unlimited());
    let loud = token("u9", |c| c.name = Some("loud".into()));
    let other = token("u10", |_| {});
    join(
        &mut r,
        1,
        "10.0.0.9",
        &hello("", Some(&moderator("mod")), false),
        T0,
    );
    join(&mut r, 2, "10.0.0.9", &hello("", Some(&loud), false), T0);
    join(&mut r, 3, "10.0.0.9", &hello("early", None, false), T0);
    join(&mut r, 4, "10.0.0.7", &hello("elsewhere", None, false), T0);
    let acts = send(&mut r, 1, json!({"mute": {"user": "u9", "secs": 60}}), T0);
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::Save { conn: 3, .. })));
    let muted = [ErrorKind::Muted.sentence()];
    // Present and new sessions from the address, anonymous or with another token, also
    // after a rebuild; the moderator there and the other address talk.
    let mut r = rebuilt(&r);
    join(&mut r, 5, "10.0.0.9", &hello("owner", None, true), T0 + 1);
    join(
        &mut r,
        6,
        "10.0.0.9",
        &hello("", Some(&other), false),
        T0 + 1,
    );
    for conn in [2, 3, 5, 6] {
        let acts = say(&mut r, conn, "shout", T0 + 2);
        assert_eq!(errors(&frames_for(&acts, conn)), muted, "conn {conn}");
        assert!(broadcasts(&acts).is_empty());
    }
    for conn in [1, 4] {
        assert_eq!(broadcasts(&say(&mut r, conn, "ok", T0 + 2)).len(), 1);
    }
    // Lifting the user's mute lifts the address's, for present sessions at once and for
    // new ones, even after the user left.
    r.disconnect(2, T0 + 3);
    send(
        &mut r,
        1,
        json!({"mute": {"user": "u9", "secs": 0}}),
        T0 + 4,
    );
    join(&mut r, 7, "10.0.0.9", &hello("late", None, false), T0 + 5);
    for conn in [3, 5, 6, 7] {
        assert_eq!(
            broadcasts(&say(&mut r, conn, "free", T0 + 5)).len(),
            1,
            "conn {conn}"
        );
    }
    assert_eq!(r.storage().restricted_users(), 0);
    // A mute of an absent user binds the addresses it was last bound to while in force.
    join(
        &mut r,
        8,
        "10.0.0.8",
        &hello("", Some(&loud), false),
        T0 + 6,
    );
    send(
        &mut r,
        1,
        json!({"mute": {"user": "u9", "secs": 60}}),
        T0 + 7,
    );
    r.disconnect(8, T0 + 8);
    send(
        &mut r,
        1,
        json!({"mute": {"user": "u9", "secs": 120}}),
        T0 + 9,
    );
    join(
        &mut r,
        9,
        "10.0.0.8",
        &hello("again", None, false),
        T0 + 70_000,
    );
    let acts = say(&mut r, 9, "shout", T0 + 70_001);
    assert_eq!(errors(&frames_for(&acts, 9)), muted);
}

#[test]
fn each_bound_address_holds_a_place_and_a_moderation_that_does_not_fit_changes_nothing() {
    let mut r = auth_room(Config {
        max_restricted_users: 3,
        ..unlimited()
    });
    join(
        &mut r,
        1,
        "m",
        &hello("", Some(&moderator("mod")), false),
        T0,
    );
    join(
        &mut r,
        2,
        "10.0.0.1",
        &hello("", Some(&token("u1", |_| {})), false),
        T0,
    );
    join(
        &mut r,
        3,
        "10.0.0.2",
        &hello("", Some(&token("u2", |_| {})), false),
        T0,
    );
    let acts = send(&mut r, 1, json!({"mute": {"user": "u1", "secs": 60}}), T0);
    assert!(errors(&frames_for(&acts, 1)).is_empty());
    assert_eq!(r.storage().restricted_users(), 2, "user and address");
    let acts = send(&mut r, 1, json!({"mute": {"user": "u2", "secs": 60}}), T0);
    assert_eq!(
        errors(&frames_for(&acts, 1)),
        [ErrorKind::TooManyRestricted.sentence()]
    );
    assert_eq!(broadcasts(&say(&mut r, 3, "not muted", T0 + 1)).len(), 1);
    assert_eq!(r.storage().restricted_users(), 2);
}

#[test]
fn an_anonymous_hello_may_not_take_the_name_or_user_id_of_a_verified_member() {
    let mut r = auth_room(unlimited());
    let ana = token("u42", |c| c.name = Some("Ana".into()));
    join(&mut r, 1, "10.0.0.1", &hello("", Some(&ana), false), T0);
    let refused = (
        Some(ErrorKind::NameOfVerified.sentence().to_owned()),
        Some(Close::BadHello),
    );
    assert_eq!(Close::BadHello.code(), 1008);
    for (conn, name) in [
        (2, "Ana"),
        (3, " ana "),
        (4, "U42"),
        (5, "u42"),
        (9, "A\u{200B}na\u{FEFF}"),
    ] {
        let acts = join(&mut r, conn, "10.0.0.2", &hello(name, None, true), T0);
        assert_eq!(refusal(&acts, conn), refused, "{name:?}");
        assert!(broadcasts(&acts).is_empty(), "{name:?} never joined");
    }
    let acts = join(&mut r, 6, "10.0.0.2", &hello("Anna", None, false), T0);
    assert_eq!(close_of(&acts, 6), None);
    // A verified user is who its token says, whatever names are in the room.
    let acts = join(
        &mut r,
        7,
        "10.0.0.3",
        &hello("", Some(&token("Anna", |_| {})), false),
        T0,
    );
    assert_eq!(close_of(&acts, 7), None);
    // Once Ana has left, the name is free.
    r.disconnect(1, T0 + 1);
    let acts = join(&mut r, 8, "10.0.0.2", &hello("Ana", None, false), T0 + 1);
    assert_eq!(close_of(&acts, 8), None);
}
