//! Helpers shared by the handler's integration tests: a room over memory storage and
//! readable views of the actions it returns; the traffic model of the property suites
//! (`model`, shared with the fuzz target) and its proptest strategies (`ops`).

#![allow(dead_code)]

pub mod model;
pub mod ops;

// Not every test file uses both.
#[allow(unused_imports)]
pub use model::{rebuilt, EPOCH};

use chat_handler::{Action, Close, Config, ConnId, Frame, MemoryStorage, Peer, Room};
use serde_json::value::RawValue;
use serde_json::Value;

pub fn room(config: Config) -> Room<MemoryStorage> {
    Room::open(config, MemoryStorage::new(), EPOCH).expect("memory storage cannot fail")
}

pub fn peer(addr: &str) -> Peer {
    Peer {
        addr: addr.to_owned(),
    }
}

/// The WebSocket messages one connection would receive from `actions`, given the
/// room's members now, as sent (a batch is one message).
pub fn messages_for(actions: &[Action], conn: ConnId) -> Vec<Frame> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { to, frame } if *to == conn => Some(frame.clone()),
            Action::Broadcast { to, frame } if to.contains(&conn) => Some(frame.clone()),
            _ => None,
        })
        .collect()
}

/// The frames of one message: a batch's frames as their raw text, or the message.
/// Checks what a batch must be: two frames at least, none itself a batch.
pub fn unbatch(message: &str) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Batch<'a> {
        #[serde(borrow)]
        batch: Vec<&'a RawValue>,
    }
    if !message.starts_with(r#"{"batch":"#) {
        return vec![message.to_owned()];
    }
    let b: Batch = serde_json::from_str(message).expect("a batch is {\"batch\": [frames]}");
    assert!(
        b.batch.len() >= 2,
        "a batch of fewer than 2 frames: {message}"
    );
    b.batch
        .iter()
        .map(|f| {
            assert!(
                !f.get().starts_with(r#"{"batch""#),
                "nested batch: {message}"
            );
            f.get().to_owned()
        })
        .collect()
}

/// What one connection would receive from `actions`, given the room's members now:
/// every frame, batches unwrapped.
pub fn frames_for(actions: &[Action], conn: ConnId) -> Vec<Value> {
    messages_for(actions, conn)
        .iter()
        .flat_map(|m| unbatch(m))
        .map(|f| serde_json::from_str(&f).expect("server frames are JSON"))
        .collect()
}

pub fn close_of(actions: &[Action], conn: ConnId) -> Option<Close> {
    actions.iter().find_map(|a| match a {
        Action::Close { conn: c, close } if *c == conn => Some(*close),
        _ => None,
    })
}

pub fn broadcasts(actions: &[Action]) -> Vec<Value> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Broadcast { frame, .. } => Some(serde_json::from_str(frame).expect("JSON")),
            _ => None,
        })
        .collect()
}

/// Connects `conn` from `addr` and sends `hello`; returns the actions of the hello.
pub fn join(
    room: &mut Room<MemoryStorage>,
    conn: ConnId,
    addr: &str,
    hello: &str,
    now: u64,
) -> Vec<Action> {
    if let Err(close) = room.try_connect(conn, peer(addr), now) {
        panic!("connect refused: {close:?}");
    }
    room.on_text(conn, hello, now)
}

pub fn say(room: &mut Room<MemoryStorage>, conn: ConnId, text: &str, now: u64) -> Vec<Action> {
    room.on_text(
        conn,
        &serde_json::json!({ "message": text }).to_string(),
        now,
    )
}

pub fn error_text(v: &Value) -> Option<&str> {
    v.get("error").and_then(Value::as_str)
}

/// A config with no practical rate limit, for tests about other rules.
pub fn unlimited() -> Config {
    Config {
        rate_burst: 1_000_000,
        rate_per_sec: 1_000_000.0,
        // Buckets written through, so `next_flush` and `is_quiet` speak of batches only
        // in the tests built on this (abuse.rs tests the delayed bucket writes).
        rate_persist_ms: 0,
        ..Config::default()
    }
}

/// A server frame as JSON; every frame the room sends must be.
pub fn parse(frame: &str) -> Value {
    serde_json::from_str(frame).expect("every server frame is JSON")
}
