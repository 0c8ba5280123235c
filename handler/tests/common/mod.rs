//! Helpers shared by the handler's integration tests: a room over memory storage and
//! readable views of the actions it returns.

#![allow(dead_code)]

use chat_handler::{Action, Close, Config, ConnId, Frame, MemoryStorage, Peer, Room, Session};
use serde_json::value::RawValue;
use serde_json::Value;

pub const EPOCH: &str = "epoch-1";

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
pub fn messages_for(_room: &Room<MemoryStorage>, actions: &[Action], conn: ConnId) -> Vec<Frame> {
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
pub fn frames_for(room: &Room<MemoryStorage>, actions: &[Action], conn: ConnId) -> Vec<Value> {
    messages_for(room, actions, conn)
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
        ..Config::default()
    }
}

/// `room` rebuilt the way a Durable Object rebuilds one after hibernation: its sessions
/// through their serialized form, plus a copy of its storage.
pub fn rebuilt(room: &Room<MemoryStorage>) -> Room<MemoryStorage> {
    let sessions: Vec<Session> = room
        .sessions()
        .map(|s| serde_json::from_str(&serde_json::to_string(s).unwrap()).unwrap())
        .collect();
    // A room with sessions or history keeps its epoch, so the candidate must go
    // unused; an empty room without history may take any (the backend's choice), and
    // its new sessions carry it in their saved state, so it takes the same one here.
    let candidate = if room.is_empty() && room.last_seq() == 0 {
        room.epoch().to_owned()
    } else {
        "never-used".to_owned()
    };
    Room::restore(
        room.config().clone(),
        room.storage().clone(),
        &candidate,
        sessions,
    )
    .unwrap()
}

/// A server frame as JSON; every frame the room sends must be.
pub fn parse(frame: &str) -> Value {
    serde_json::from_str(frame).expect("every server frame is JSON")
}
