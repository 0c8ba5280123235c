//! Typing indicators (v2): who hears them, coalescing, expiry, the end at a message or
//! a leave, the per-room bound, the per-connection bucket, batches and hibernation.

mod common;

use chat_handler::identity::{mint, Claims};
use chat_handler::{Auth, AuthSecret, Config, MemoryStorage, Role, Room};
use common::*;
use serde_json::{json, Value};

const TTL: u64 = 1000;

fn config() -> Config {
    Config {
        typing_ttl_ms: TTL,
        // The typing bucket out of the way but in its own test.
        typing_burst: 1000,
        typing_per_sec: 1000.0,
        ..unlimited()
    }
}

/// When the identity tests start: the tokens below are valid for an hour from it.
const T0: u64 = 1_764_000_000_000;

fn secret() -> AuthSecret {
    AuthSecret::new("test-secret-0123456789abcdef-0123456789").expect("a long enough secret")
}

/// A join token for room "lobby", for `sub` with `role`.
fn token(sub: &str, role: Option<Role>) -> String {
    mint(
        &secret(),
        &Claims {
            sub: sub.to_owned(),
            exp: T0 / 1000 + 3600,
            role,
            room: Some("lobby".to_owned()),
            ..Claims::default()
        },
    )
}

/// A room "lobby" that verifies join tokens signed with [`secret`].
fn lobby() -> Room<MemoryStorage> {
    room(config()).with_auth(Some(Auth {
        secret: secret(),
        room: "lobby".to_owned(),
    }))
}

fn v2(name: &str) -> String {
    json!({"name": name, "v": 2}).to_string()
}

fn typing(r: &mut Room<MemoryStorage>, conn: u64, on: bool, now: u64) -> Vec<chat_handler::Action> {
    r.on_text(conn, &json!({ "typing": on }).to_string(), now)
}

fn started(name: &str, typer: u64) -> Value {
    json!({"typing": {"name": name, "typer": typer, "ttl_ms": TTL}})
}

fn stopped(name: &str, typer: u64) -> Value {
    json!({"typing_stopped": {"name": name, "typer": typer}})
}

/// ana (1, v2), bo (2, v2), cy (3, v1), all joined at 1000.
fn three() -> Room<MemoryStorage> {
    let mut r = room(config());
    join(&mut r, 1, "10.0.0.1", &v2("ana"), 1000);
    join(&mut r, 2, "10.0.0.2", &v2("bo"), 1000);
    join(&mut r, 3, "10.0.0.3", r#"{"name":"cy"}"#, 1000);
    r
}

#[test]
fn the_other_v2_members_hear_it_once_the_sender_and_v1_never() {
    let mut r = three();
    let acts = typing(&mut r, 1, true, 2000);
    assert_eq!(frames_for(&acts, 2), vec![started("ana", 1)]);
    assert!(frames_for(&acts, 1).is_empty(), "no echo: {acts:?}");
    assert!(frames_for(&acts, 3).is_empty(), "v1 sees nothing: {acts:?}");
    // Refreshes are coalesced: nothing within half the ttl of the last announcement,
    // then the same frame again (so clients can expire typers they stop hearing of).
    for t in [2100, 2300, 2499] {
        assert!(typing(&mut r, 1, true, t).is_empty());
    }
    let acts = typing(&mut r, 1, true, 2500);
    assert_eq!(frames_for(&acts, 2), vec![started("ana", 1)]);
    assert!(frames_for(&acts, 1).is_empty() && frames_for(&acts, 3).is_empty());
    assert!(typing(&mut r, 1, true, 2999).is_empty());
    let acts = typing(&mut r, 1, false, 3000);
    assert_eq!(frames_for(&acts, 2), vec![stopped("ana", 1)]);
    assert!(frames_for(&acts, 1).is_empty() && frames_for(&acts, 3).is_empty());
    // Stopping again says nothing.
    assert!(typing(&mut r, 1, false, 3001).is_empty());
}

#[test]
fn a_typer_expires_without_a_refresh() {
    let mut r = three();
    typing(&mut r, 1, true, 2000);
    // Refreshed at 2500: due at 3500, not 3000.
    typing(&mut r, 1, true, 2500);
    assert_eq!(r.next_flush(), Some(3500));
    assert_eq!(r.next_deadline(), Some(3500));
    assert!(r.on_tick(3499).is_empty());
    assert!(!r.is_quiet(3499));
    let acts = r.on_tick(3500);
    assert_eq!(frames_for(&acts, 2), vec![stopped("ana", 1)]);
    assert!(frames_for(&acts, 1).is_empty());
    assert_eq!(r.next_flush(), None);
    assert!(r.is_quiet(3500));
    // Typing again after the expiry is a new start.
    let acts = typing(&mut r, 1, true, 4000);
    assert_eq!(frames_for(&acts, 2), vec![started("ana", 1)]);
}

#[test]
fn a_message_and_a_leave_end_typing_announced_first_and_nothing_is_stored() {
    let mut r = three();
    typing(&mut r, 1, true, 2000);
    let acts = say(&mut r, 1, "hi", 2100);
    let to_bo = frames_for(&acts, 2);
    assert_eq!(to_bo[0], stopped("ana", 1));
    assert_eq!(to_bo[1]["message"], "hi");
    assert_eq!(to_bo.len(), 2);
    // The v1 member gets the message only.
    assert_eq!(frames_for(&acts, 3).len(), 1);
    assert_eq!(r.next_flush(), None);
    // A message without typing first: no typing_stopped.
    let acts = say(&mut r, 2, "yo", 2200);
    assert_eq!(frames_for(&acts, 1).len(), 1);

    typing(&mut r, 2, true, 2300);
    let acts = r.disconnect(2, 2400);
    assert_eq!(
        frames_for(&acts, 1),
        vec![stopped("bo", 2), json!({"quit": "bo"})]
    );
    assert_eq!(frames_for(&acts, 3), vec![json!({"quit": "bo"})]);
    // History and a new joiner's backlog hold the message, never a typing frame.
    let acts = join(&mut r, 4, "10.0.0.4", &v2("di"), 2500);
    let seen = frames_for(&acts, 4);
    assert!(
        seen.iter()
            .all(|f| f.get("typing").is_none() && f.get("typing_stopped").is_none()),
        "{seen:?}"
    );
    assert_eq!(r.last_seq(), 2);
}

#[test]
fn a_v2_joiner_gets_the_current_typers_after_ready() {
    let mut r = three();
    typing(&mut r, 2, true, 2000);
    let acts = join(&mut r, 4, "10.0.0.4", &v2("di"), 2100);
    let seen = frames_for(&acts, 4);
    assert_eq!(seen.last(), Some(&started("bo", 2)), "{seen:?}");
    assert!(seen[seen.len() - 2].get("ready").is_some());
    // A v1 joiner does not.
    let acts = join(&mut r, 5, "10.0.0.5", r#"{"name":"ed"}"#, 2200);
    assert!(frames_for(&acts, 5)
        .iter()
        .all(|f| f.get("typing").is_none()));
}

#[test]
fn same_names_are_told_apart_by_typer() {
    let mut r = room(config());
    join(&mut r, 1, "10.0.0.1", &v2("ana"), 1000);
    join(&mut r, 2, "10.0.0.2", &v2("ana"), 1000);
    join(&mut r, 3, "10.0.0.3", &v2("bo"), 1000);
    let a = typing(&mut r, 1, true, 2000);
    let b = typing(&mut r, 2, true, 2000);
    assert_eq!(frames_for(&a, 3), vec![started("ana", 1)]);
    assert_eq!(frames_for(&b, 3), vec![started("ana", 2)]);
    let acts = typing(&mut r, 1, false, 2100);
    assert_eq!(frames_for(&acts, 3), vec![stopped("ana", 1)]);
}

#[test]
fn a_verified_typer_carries_its_user_and_a_muted_one_is_not_announced() {
    let t0 = T0;
    let mut r = lobby();
    let hello = |name: &str, t: &str| json!({"name": name, "v": 2, "token": t}).to_string();
    join(
        &mut r,
        1,
        "10.0.0.1",
        &hello("mod", &token("m1", Some(Role::Moderator))),
        t0,
    );
    join(&mut r, 2, "10.0.0.2", &hello("ana", &token("u2", None)), t0);
    let acts = typing(&mut r, 2, true, t0 + 10);
    assert_eq!(
        frames_for(&acts, 1),
        vec![json!({"typing": {"name": "u2", "user": "u2", "typer": 2, "ttl_ms": TTL}})]
    );
    let acts = typing(&mut r, 2, false, t0 + 20);
    assert_eq!(
        frames_for(&acts, 1),
        vec![json!({"typing_stopped": {"name": "u2", "user": "u2", "typer": 2}})]
    );
    // (The name is the token's, its sub here.) Muted: its typing is ignored, without an
    // error.
    r.on_text(
        1,
        &json!({"mute": {"user": "u2", "secs": 60}}).to_string(),
        t0 + 30,
    );
    assert!(typing(&mut r, 2, true, t0 + 40).is_empty());
    assert_eq!(r.next_flush(), None, "nobody types");
}

#[test]
fn a_v1_session_gets_the_error_it_always_got() {
    let mut r = three();
    let wrong = chat_handler::ErrorKind::WrongShape.sentence();
    for frame in [
        r#"{"typing":true}"#,
        r#"{"typing":5}"#,
        r#"{"typing":false,"x":1}"#,
    ] {
        let acts = r.on_text(3, frame, 2000);
        assert_eq!(
            frames_for(&acts, 3),
            vec![json!({ "error": wrong })],
            "{frame}"
        );
        assert!(frames_for(&acts, 1).is_empty() && frames_for(&acts, 2).is_empty());
    }
    // A v2 session's malformed typing frame is told why.
    let acts = r.on_text(1, r#"{"typing":"yes"}"#, 2000);
    assert_eq!(
        frames_for(&acts, 1),
        vec![json!({
            "error": chat_handler::ErrorKind::TypingInvalid.sentence(),
            "code": "typing_invalid"
        })]
    );
}

#[test]
fn at_most_typing_max_typers_are_announced() {
    let mut r = room(Config {
        typing_max: 1,
        ..config()
    });
    join(&mut r, 1, "10.0.0.1", &v2("ana"), 1000);
    join(&mut r, 2, "10.0.0.2", &v2("bo"), 1000);
    join(&mut r, 3, "10.0.0.3", &v2("cy"), 1000);
    assert_eq!(frames_for(&typing(&mut r, 1, true, 2000), 3).len(), 1);
    // bo is over the bound: not announced, not told anything.
    assert!(typing(&mut r, 2, true, 2000).is_empty());
    // Once ana stops, bo's next refresh is announced.
    typing(&mut r, 1, false, 2100);
    let acts = typing(&mut r, 2, true, 2200);
    assert_eq!(frames_for(&acts, 3), vec![started("bo", 2)]);
}

#[test]
fn the_typing_bucket_is_apart_from_the_frame_bucket() {
    let mut r = room(Config {
        typing_burst: 2,
        typing_per_sec: 1.0,
        rate_burst: 2,
        rate_per_sec: 0.001,
        rate_strikes: 2,
        ..config()
    });
    join(&mut r, 1, "10.0.0.1", &v2("ana"), 1000);
    join(&mut r, 2, "10.0.0.2", &v2("bo"), 1000);
    // Two typing frames: the typing bucket only.
    typing(&mut r, 1, true, 2000);
    typing(&mut r, 1, false, 2000);
    // The third is over it: refused, at the cost of a frame token.
    let limited = json!({
        "error": chat_handler::ErrorKind::TypingRateLimited.sentence(),
        "code": "typing_rate_limited"
    });
    let acts = typing(&mut r, 1, true, 2000);
    assert_eq!(frames_for(&acts, 1), vec![limited.clone()]);
    assert!(frames_for(&acts, 2).is_empty());
    // One frame token left: a message goes through.
    let acts = say(&mut r, 1, "hi", 2000);
    assert_eq!(frames_for(&acts, 2)[0]["message"], "hi");
    // A second later the typing bucket has a token again.
    let acts = typing(&mut r, 1, true, 3000);
    assert_eq!(frames_for(&acts, 2), vec![started("ana", 1)]);
    // A flood past both buckets: rate_limited, strikes, closed like any flood.
    let acts = typing(&mut r, 1, true, 3000);
    let rate_limited = json!({
        "error": chat_handler::ErrorKind::RateLimited.sentence(),
        "code": "rate_limited"
    });
    assert_eq!(frames_for(&acts, 1), vec![rate_limited.clone()]);
    let acts = typing(&mut r, 1, true, 3000);
    assert_eq!(frames_for(&acts, 1), vec![rate_limited]);
    assert_eq!(close_of(&acts, 1), Some(chat_handler::Close::Flooding));
    // Its typing ended with it, before the quit.
    assert_eq!(
        frames_for(&acts, 2),
        vec![stopped("ana", 1), json!({"quit": "ana"})]
    );
}

#[test]
fn batch_sessions_get_typing_in_their_batches_never_their_own() {
    let mut r = room(Config {
        batch_window_ms: 100,
        batch_send_budget: 1,
        ..config()
    });
    let batch = |n: &str| json!({"name": n, "v": 2, "batch": true}).to_string();
    join(&mut r, 1, "10.0.0.1", &batch("ana"), 1000);
    join(&mut r, 2, "10.0.0.2", &batch("bo"), 1000);
    join(&mut r, 3, "10.0.0.3", &v2("cy"), 1000);
    r.on_tick(5000);
    // ana types, cy talks: bo's batch holds both, ana's only the message.
    let mut acts = typing(&mut r, 1, true, 6000);
    acts.extend(say(&mut r, 3, "hey", 6001));
    acts.extend(r.on_tick(r.next_flush().unwrap()));
    let to_bo = frames_for(&acts, 2);
    assert_eq!(to_bo[0], started("ana", 1));
    assert_eq!(to_bo[1]["message"], "hey");
    let to_ana = frames_for(&acts, 1);
    assert_eq!(to_ana.len(), 1, "{to_ana:?}");
    assert_eq!(to_ana[0]["message"], "hey");
    // The unbatched v2 member had it at once.
    assert_eq!(frames_for(&acts, 3)[0], started("ana", 1));
}

#[test]
fn a_room_about_to_be_dropped_stops_its_typers() {
    let mut r = three();
    typing(&mut r, 1, true, 2000);
    let acts = r.flush(2100);
    assert_eq!(frames_for(&acts, 2), vec![stopped("ana", 1)]);
    assert!(frames_for(&acts, 1).is_empty() && frames_for(&acts, 3).is_empty());
    assert!(r.is_quiet(2100));
    // The rebuilt room knows no typer: the next `true` is a start again.
    let mut r = rebuilt(&r);
    let acts = typing(&mut r, 1, true, 2300);
    assert_eq!(frames_for(&acts, 2), vec![started("ana", 1)]);
}

#[test]
fn a_mute_silences_the_typing_of_its_users_address_until_the_instant_it_ends() {
    let t0 = T0;
    let mut r = lobby();
    let hello = |t: &str| json!({"v": 2, "token": t}).to_string();
    join(
        &mut r,
        1,
        "10.0.0.1",
        &hello(&token("m1", Some(Role::Moderator))),
        t0,
    );
    join(&mut r, 2, "10.0.0.2", &hello(&token("u2", None)), t0);
    // Anonymous, from u2's address: the mute binds it too (`addr_muted_until`).
    join(&mut r, 3, "10.0.0.2", &v2("cy"), t0);
    r.on_text(
        1,
        &json!({"mute": {"user": "u2", "secs": 60}}).to_string(),
        t0 + 30,
    );
    let until = t0 + 30 + 60_000;
    // The chat rule, which typing follows: muted up to the last millisecond before.
    let muted = chat_handler::ErrorKind::Muted.sentence();
    let refused = say(&mut r, 3, "hi", until - 1);
    assert_eq!(
        frames_for(&refused, 3),
        vec![json!({"error": muted, "code": "muted"})]
    );
    for now in [t0 + 40, until - 1] {
        for conn in [2, 3] {
            assert!(
                typing(&mut r, conn, true, now).is_empty(),
                "{conn} at {now}"
            );
        }
    }
    assert_eq!(r.next_flush(), None, "nobody types");
    // From the mute's end on, both are announced.
    let acts = typing(&mut r, 2, true, until);
    assert_eq!(
        frames_for(&acts, 1),
        vec![json!({"typing": {"name": "u2", "user": "u2", "typer": 2, "ttl_ms": TTL}})]
    );
    let acts = typing(&mut r, 3, true, until);
    assert_eq!(frames_for(&acts, 1), vec![started("cy", 3)]);
}

#[test]
fn a_typing_frame_over_its_bucket_costs_one_frame_token_also_with_an_id() {
    let mut r = room(Config {
        typing_burst: 1,
        typing_per_sec: 0.001,
        rate_burst: 3,
        rate_per_sec: 0.001,
        ..config()
    });
    join(&mut r, 1, "10.0.0.1", &v2("ana"), 1000);
    join(&mut r, 2, "10.0.0.2", &v2("bo"), 1000);
    // With an id a typing frame goes the general way: a frame token, then the typing
    // bucket.
    let acts = r.on_text(1, r#"{"typing":true,"id":"t1"}"#, 2000);
    assert_eq!(frames_for(&acts, 2), vec![started("ana", 1)]);
    let acts = r.on_text(1, r#"{"typing":false,"id":"t2"}"#, 2000);
    let refused = frames_for(&acts, 1);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["code"], "typing_rate_limited");
    assert_eq!(refused[0]["re"], "t2");
    assert!(frames_for(&acts, 2).is_empty(), "still typing: {acts:?}");
    // That refusal cost its one frame token, not a second: the third token is left.
    let acts = say(&mut r, 1, "hi", 2000);
    assert_eq!(frames_for(&acts, 2)[1]["message"], "hi");
    let acts = say(&mut r, 1, "hi again", 2000);
    assert_eq!(frames_for(&acts, 1)[0]["code"], "rate_limited");
}
