//! Server-side publish (`Room::publish`): who may publish, what a body must be, the
//! answers, the broadcast and history of a published message, retries by cid, and the
//! per-`sub` rate limit, durable across a rebuild.

mod common;

use chat_handler::identity::{mint, Claims, ALL_ROOMS};
use chat_handler::publish::check_request;
use chat_handler::{Action, Auth, AuthSecret, Config, MemoryStorage, Role, Room, Storage};
use common::*;
use serde_json::{json, Value};

const SECRET: &str = "test-secret-0123456789abcdef-0123456789";
const ROOM: &str = "lobby";
const T0: u64 = 1_764_000_000_000;

fn secret() -> AuthSecret {
    AuthSecret::new(SECRET).unwrap()
}

fn auth() -> Option<Auth> {
    Some(Auth {
        secret: secret(),
        room: ROOM.to_owned(),
    })
}

fn auth_room(config: Config) -> Room<MemoryStorage> {
    room(config).with_auth(auth())
}

fn token(sub: &str, role: Option<Role>, room: Option<&str>, exp: u64) -> String {
    mint(
        &secret(),
        &Claims {
            sub: sub.to_owned(),
            role,
            room: room.map(str::to_owned),
            exp,
            ..Claims::default()
        },
    )
}

fn service(sub: &str) -> String {
    token(sub, Some(Role::Service), Some(ROOM), T0 / 1000 + 3600)
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

/// Publishes `body` with `token`; returns status, JSON answer, Retry-After, actions.
fn publish(
    r: &mut Room<MemoryStorage>,
    token: Option<&str>,
    body: &str,
    now: u64,
) -> (u16, Value, Option<u64>, Vec<Action>) {
    let header = token.map(bearer);
    let (answer, actions) = r.publish(header.as_deref(), body, now);
    let v = serde_json::from_str(&answer.body).expect("answers are JSON");
    (answer.status, v, answer.retry_after_secs, actions)
}

fn code(v: &Value) -> &str {
    v["code"].as_str().unwrap_or("")
}

#[test]
fn a_service_publishes_to_the_members_and_into_history() {
    let mut r = auth_room(unlimited());
    join(&mut r, 1, "10.0.0.1", r#"{"name": "ana"}"#, T0);
    join(&mut r, 2, "10.0.0.2", r#"{"name": "bob", "v": 2}"#, T0);
    let t = service("bot-1");
    let body = json!({"name": " Build bot ", "message": " deployed "}).to_string();
    let (status, v, retry, actions) = publish(&mut r, Some(&t), &body, T0 + 5);
    assert_eq!((status, retry), (201, None));
    assert_eq!(v, json!({"seq": 1, "timestamp": T0 + 5}));
    // Durable first, then the same frame to every member, v1 and v2 alike.
    let commit = actions.iter().position(|a| *a == Action::Commit).unwrap();
    let broadcast = actions
        .iter()
        .position(|a| matches!(a, Action::Broadcast { .. }))
        .unwrap();
    assert!(commit < broadcast);
    let want = json!({"name": "Build bot", "message": "deployed", "timestamp": T0 + 5,
                      "seq": 1, "user": "bot-1", "role": "service"});
    assert_eq!(frames_for(&actions, 1), vec![want.clone()]);
    assert_eq!(frames_for(&actions, 2), vec![want.clone()]);
    // Stored with its role: the backlog and history show it.
    let stored = r.storage().clone().last_n(1).unwrap();
    assert_eq!(stored[0].role, Some(Role::Service));
    let acts = join(&mut r, 3, "10.0.0.3", r#"{"name": "cy", "v": 2}"#, T0 + 6);
    assert!(frames_for(&acts, 3).contains(&want));
    let page = r.on_text(3, r#"{"history": {}}"#, T0 + 7);
    assert_eq!(frames_for(&page, 3)[0]["history"][0], want);
    // A chat message after it takes the next seq.
    let acts = say(&mut r, 1, "hi", T0 + 8);
    assert_eq!(broadcasts(&acts)[0]["seq"], 2);
}

#[test]
fn the_name_defaults_to_the_tokens_and_is_checked_like_a_hello_name() {
    let mut r = auth_room(unlimited());
    let t = service("bot-1");
    let (status, _, _, actions) = publish(&mut r, Some(&t), r#"{"message": "x"}"#, T0);
    assert_eq!(status, 201);
    assert_eq!(r.storage().clone().last_n(1).unwrap()[0].name, "bot-1");
    assert!(actions.contains(&Action::Commit));
    for (body, want) in [
        (
            json!({"name": "n".repeat(33), "message": "x"}),
            "name_too_long",
        ),
        (json!({"name": "a\u{7}", "message": "x"}), "name_control"),
        (json!({"name": "ok ✓", "message": "x"}), "name_check_mark"),
        (json!({"name": 5, "message": "x"}), "name_not_string"),
        (json!({"name": "a", "message": "  "}), "message_empty"),
        (
            json!({"name": "a", "message": "m".repeat(1001)}),
            "message_too_long",
        ),
        (json!({"name": "a", "message": 5}), "message_not_string"),
        (json!({"name": "a"}), "publish_shape"),
        (
            json!({"name": "a", "message": "x", "cid": "no spaces"}),
            "cid_invalid",
        ),
        (json!(["a"]), "publish_shape"),
    ] {
        let (status, v, _, actions) = publish(&mut r, Some(&t), &body.to_string(), T0);
        assert_eq!((status, code(&v)), (400, want), "{body}");
        assert!(actions.is_empty(), "{body}: nothing stored or sent");
    }
    let (status, v, _, _) = publish(&mut r, Some(&t), "not json", T0);
    assert_eq!((status, code(&v)), (400, "publish_shape"));
    assert_eq!(r.last_seq(), 1);
}

#[test]
fn only_a_valid_service_token_for_this_room_publishes() {
    let mut r = auth_room(unlimited());
    let body = r#"{"message": "x"}"#;
    let exp = T0 / 1000 + 3600;
    let cases = [
        (None, 401, "token_missing"),
        (Some("garbage".to_owned()), 401, "token_malformed"),
        (
            Some(token(
                "b",
                Some(Role::Service),
                Some(ROOM),
                T0 / 1000 - 3600,
            )),
            401,
            "token_expired",
        ),
        (
            Some(token("b", Some(Role::Service), Some("other"), exp)),
            403,
            "token_wrong_room",
        ),
        (
            Some(token("b", Some(Role::Service), None, exp)),
            403,
            "service_token_needs_room",
        ),
        (Some(token("b", None, Some(ROOM), exp)), 403, "not_service"),
        (
            Some(token("b", Some(Role::Moderator), Some(ROOM), exp)),
            403,
            "not_service",
        ),
    ];
    for (t, status, want) in cases {
        let (got, v, _, actions) = publish(&mut r, t.as_deref(), body, T0);
        assert_eq!((got, code(&v)), (status, want), "{t:?}");
        assert!(v["error"].as_str().is_some_and(|e| e.ends_with('.')));
        assert!(actions.is_empty());
    }
    // `*` is every room; a header that is not a bearer is no token.
    let everywhere = token("b", Some(Role::Service), Some(ALL_ROOMS), exp);
    assert_eq!(publish(&mut r, Some(&everywhere), body, T0).0, 201);
    let (answer, _) = r.publish(Some(&format!("Basic {everywhere}")), body, T0);
    assert_eq!(answer.status, 401);
    assert_eq!(r.last_seq(), 1);
}

#[test]
fn without_a_secret_publishing_is_not_found() {
    let mut r = room(unlimited());
    let (status, v, _, actions) = publish(&mut r, Some(&service("b")), r#"{"message": "x"}"#, T0);
    assert_eq!((status, code(&v)), (404, "publish_disabled"));
    assert!(actions.is_empty());
}

#[test]
fn the_edge_checks_come_in_order() {
    let c = Config::default();
    let s = secret();
    let t = bearer(&service("b"));
    let check =
        |h: Option<&str>, len, secret| check_request(h, len, secret, ROOM, T0, &c).map(drop);
    let status = |r: Result<(), chat_handler::PublishAnswer>| r.map_err(|a| a.status);
    assert_eq!(status(check(Some(&t), Some(10), Some(&s))), Ok(()));
    // No secret first, then the length (declared, and at most max_frame_bytes), then
    // the token.
    assert_eq!(status(check(None, None, None)), Err(404));
    assert_eq!(status(check(None, None, Some(&s))), Err(411));
    let over = c.max_frame_bytes as u64 + 1;
    assert_eq!(status(check(None, Some(over), Some(&s))), Err(413));
    assert_eq!(status(check(Some(&t), Some(over - 1), Some(&s))), Ok(()));
    assert_eq!(status(check(None, Some(1), Some(&s))), Err(401));
    // The room refuses a body over the limit too, whatever was declared.
    let mut r = auth_room(Config {
        max_frame_bytes: 64,
        ..unlimited()
    });
    let body = json!({"message": "m".repeat(60)}).to_string();
    let (status, v, _, _) = publish(&mut r, Some(&service("b")), &body, T0);
    assert_eq!((status, code(&v)), (413, "body_too_large"));
}

#[test]
fn a_cid_retry_is_stored_once_and_answered_with_the_original() {
    let mut r = auth_room(unlimited());
    join(&mut r, 1, "10.0.0.1", r#"{"name": "ana"}"#, T0);
    let t = service("bot-1");
    let body = r#"{"message": "deploy 7", "cid": "deploy-7"}"#;
    let (status, first, _, _) = publish(&mut r, Some(&t), body, T0);
    assert_eq!(status, 201);
    say(&mut r, 1, "in between", T0 + 1);
    let (status, again, _, actions) = publish(&mut r, Some(&t), body, T0 + 2);
    assert_eq!((status, &again), (200, &first));
    assert!(actions.is_empty(), "a retry is not broadcast again");
    assert_eq!(r.last_seq(), 2);
    // The frame carries the cid; another sub's same cid is its own message.
    let (status, other, _, _) = publish(&mut r, Some(&service("bot-2")), body, T0 + 3);
    assert_eq!((status, other["seq"].as_u64()), (201, Some(3)));
}

#[test]
fn a_service_token_never_joins() {
    let mut r = auth_room(unlimited());
    let hello = json!({"name": "x", "token": service("bot")}).to_string();
    let acts = join(&mut r, 1, "10.0.0.1", &hello, T0);
    let frames = frames_for(&acts, 1);
    assert_eq!(
        error_text(&frames[0]),
        Some(chat_handler::ErrorKind::ServiceTokenInHello.sentence())
    );
    assert_eq!(close_of(&acts, 1), Some(chat_handler::Close::BadToken));
    assert_eq!(r.members().count(), 0);
}

#[test]
fn each_sub_is_rate_limited_and_its_bucket_survives_a_rebuild() {
    let config = Config {
        publish_burst: 2,
        publish_per_sec: 0.5,
        ..unlimited()
    };
    let mut r = auth_room(config.clone());
    let t = service("bot-1");
    let body = r#"{"message": "x"}"#;
    assert_eq!(publish(&mut r, Some(&t), body, T0).0, 201);
    assert_eq!(publish(&mut r, Some(&t), body, T0).0, 201);
    let (status, v, retry, actions) = publish(&mut r, Some(&t), body, T0);
    assert_eq!((status, code(&v), retry), (429, "rate_limited", Some(2)));
    assert!(actions.is_empty());
    // Another sub has its own bucket.
    assert_eq!(publish(&mut r, Some(&service("bot-2")), body, T0).0, 201);
    // A rebuilt room (a Durable Object after eviction) reads the bucket back.
    let mut back = Room::open(config, r.storage().clone(), "x")
        .unwrap()
        .with_auth(auth());
    assert_eq!(publish(&mut back, Some(&t), body, T0 + 1000).0, 429);
    assert_eq!(publish(&mut back, Some(&t), body, T0 + 2000).0, 201);
}

#[test]
fn a_muted_sub_may_not_publish_and_storage_failures_are_503() {
    let mut r = auth_room(unlimited());
    let mut storage = r.storage().clone();
    storage
        .set_restriction(
            "bot-1",
            &chat_handler::Restriction {
                muted_until: T0 + 1000,
                ..Default::default()
            },
        )
        .unwrap();
    let mut r2 = Room::open(unlimited(), storage, "x")
        .unwrap()
        .with_auth(auth());
    let (status, v, _, _) = publish(&mut r2, Some(&service("bot-1")), r#"{"message": "x"}"#, T0);
    assert_eq!((status, code(&v)), (403, "muted"));
    assert_eq!(
        publish(
            &mut r2,
            Some(&service("bot-1")),
            r#"{"message": "x"}"#,
            T0 + 1000
        )
        .0,
        201
    );
    r.storage_mut().fail_appends = true;
    let (status, v, _, actions) = publish(&mut r, Some(&service("b")), r#"{"message": "x"}"#, T0);
    assert_eq!((status, code(&v)), (503, "not_stored"));
    assert!(!actions
        .iter()
        .any(|a| matches!(a, Action::Broadcast { .. })));
}
