//! The room's output is complete data: a broadcast carries its recipients, a refusal is
//! its error frame and its close, and a commit barrier comes before whatever depends on
//! a durable write. A backend carries the actions out in order and asks the room
//! nothing (see `handler/src/action.rs`).

mod common;

use chat_handler::identity::{mint, Claims};
use chat_handler::{Action, Auth, AuthSecret, Close, Config, MemoryStorage, Role, Room};
use common::*;
use serde_json::json;
use std::sync::Arc;

fn position(actions: &[Action], wanted: impl Fn(&Action) -> bool) -> usize {
    actions
        .iter()
        .position(wanted)
        .unwrap_or_else(|| panic!("not found in {actions:?}"))
}

#[test]
fn a_stored_message_is_a_commit_barrier_then_its_broadcast_to_the_members() {
    let mut r = room(Config::default());
    join(&mut r, 1, "a", r#"{"name":"alice"}"#, 1);
    join(&mut r, 2, "b", r#"{"name":"bob"}"#, 2);
    let acts = say(&mut r, 1, "hi", 3);
    assert_eq!(acts.len(), 2, "{acts:?}");
    assert_eq!(acts[0], Action::Commit);
    let Action::Broadcast { to, frame } = &acts[1] else {
        panic!("expected the broadcast: {acts:?}");
    };
    assert_eq!(&to[..], [1, 2]);
    assert_eq!(parse(frame)["message"], "hi");
    // A frame that stores nothing needs no barrier.
    let acts = r.on_text(1, "not json", 4);
    assert!(!acts.contains(&Action::Commit), "{acts:?}");
}

#[test]
fn broadcasts_share_one_recipient_list_until_someone_joins_or_leaves() {
    let mut r = room(Config::default());
    join(&mut r, 1, "a", r#"{"name":"alice"}"#, 1);
    join(&mut r, 2, "b", r#"{"name":"bob"}"#, 2);
    let list = |acts: &[Action]| {
        acts.iter()
            .find_map(|a| match a {
                Action::Broadcast { to, .. } => Some(to.clone()),
                _ => None,
            })
            .expect("a broadcast")
    };
    let first = list(&say(&mut r, 1, "one", 3));
    let second = list(&say(&mut r, 2, "two", 4));
    assert!(Arc::ptr_eq(&first, &second), "one list, shared");
    // Carol's join is announced to everyone, herself included, and a later message
    // reaches her.
    let joined = list(&join(&mut r, 3, "c", r#"{"name":"carol"}"#, 5));
    assert_eq!(&joined[..], [1, 2, 3]);
    assert_eq!(&list(&say(&mut r, 1, "three", 6))[..], [1, 2, 3]);
    // Bob's quit goes to those still here.
    assert_eq!(&list(&r.disconnect(2, 7))[..], [1, 3]);
    // A v2 joiner's `joined` is a v1 frame kind: every member gets it, v1 or v2.
    let v2 = list(&join(&mut r, 4, "d", r#"{"name":"dave","v":2}"#, 8));
    assert_eq!(&v2[..], [1, 3, 4]);
}

#[test]
fn a_refusal_at_connect_is_its_error_frame_then_its_close() {
    let config = Config {
        room_capacity: 1,
        ..Config::default()
    };
    let mut r = room(config);
    let acts = r.connect(1, peer("a"), 1);
    assert!(!acts.iter().any(|a| a.closes(1)), "admitted: {acts:?}");
    let acts = r.connect(2, peer("b"), 1);
    assert_eq!(acts.len(), 2, "{acts:?}");
    let Action::Send { to: 2, frame } = &acts[0] else {
        panic!("expected the error frame first: {acts:?}");
    };
    assert_eq!(parse(frame)["error"], "Room is full; try again later.");
    assert_eq!(
        acts[1],
        Action::Close {
            conn: 2,
            close: Close::RoomFull
        }
    );
    assert!(acts[1].closes(2));
    assert!(r.session(2).is_none(), "the room does not keep it");
}

#[test]
fn a_kick_is_durable_before_its_close_and_its_audit_line() {
    const SECRET: &str = "test-secret-0123456789abcdef-0123456789";
    let secret = AuthSecret::new(SECRET).unwrap();
    let now = 1_764_000_000_000;
    let token = |sub: &str, role: Option<Role>| {
        let claims = Claims {
            sub: sub.to_owned(),
            exp: now / 1000 + 3600,
            role,
            room: Some("lobby".to_owned()),
            ..Claims::default()
        };
        mint(&secret, &claims)
    };
    let mut r: Room<MemoryStorage> = room(Config::default()).with_auth(Some(Auth {
        secret: secret.clone(),
        room: "lobby".to_owned(),
    }));
    let hello = |name: &str, token: String| json!({"name": name, "token": token, "v": 2});
    let m = hello("mod", token("mod", Some(Role::Moderator)));
    join(&mut r, 1, "a", &m.to_string(), now);
    let b = hello("bob", token("bob", None));
    join(&mut r, 2, "b", &b.to_string(), now);
    let kick = json!({"kick": {"user": "bob", "secs": 60}}).to_string();
    let acts = r.on_text(1, &kick, now + 1);
    let commit = position(&acts, |a| *a == Action::Commit);
    let close = position(&acts, |a| a.closes(2));
    let audit = position(&acts, |a| matches!(a, Action::Audit { .. }));
    assert!(commit < close && close < audit, "{acts:?}");
}
