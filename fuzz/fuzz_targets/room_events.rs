//! Arbitrary sequences of events into a `Room`: connects, text and binary frames, frames
//! over the size cap, closes, ticks and clock steps (backwards too). Nothing may panic,
//! and the invariants the property tests check must hold on every input: seqs without
//! gaps, strictly increasing timestamps, no lurking, every frame valid JSON, and a room
//! rebuilt from its sessions plus storage (a Durable Object after hibernation) behaving
//! exactly like the original.
#![no_main]

use arbitrary::Arbitrary;
use chat_handler::{Action, Config, ConnId, MemoryStorage, Peer, Room, Session};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

#[derive(Debug, Arbitrary)]
enum Op {
    Connect {
        conn: u8,
        addr: u8,
    },
    /// A well-formed hello, so the fuzzer reaches joined states quickly.
    Hello {
        conn: u8,
        name: u8,
        v2: bool,
        resume: Option<(bool, u8)>,
    },
    /// A well-formed chat message.
    Chat {
        conn: u8,
        text: u8,
    },
    /// Anything at all as a text frame.
    Text {
        conn: u8,
        raw: String,
    },
    Binary {
        conn: u8,
        len: u16,
    },
    TooBig {
        conn: u8,
    },
    Close {
        conn: u8,
    },
    Advance {
        ms: u16,
        back: bool,
    },
    Tick,
}

const NAMES: &[&str] = &["alice", "bob", " carol ", "", "x\u{202e}y", "a\tb"];
const TEXTS: &[&str] = &["hi", "  spaced  ", "", "<img src=x>", "ü😀", "\n"];
const EPOCH: &str = "epoch-1";

fn config() -> Config {
    Config {
        room_capacity: 4,
        rate_burst: 3,
        rate_strikes: 4,
        retention: 20,
        backlog: 5,
        resume_max: 10,
        max_frame_bytes: 200,
        hello_timeout_ms: 2000,
        ..Config::default()
    }
}

fn conn_id(c: u8) -> ConnId {
    ConnId::from(c % 6)
}

fn apply(room: &mut Room<MemoryStorage>, op: &Op, now: u64) -> Vec<Action> {
    match op {
        Op::Connect { conn, addr } => {
            let conn = conn_id(*conn);
            if room.session(conn).is_some() {
                return Vec::new(); // a backend never reuses a live id
            }
            let peer = Peer {
                addr: format!("10.0.0.{}", addr % 3),
            };
            room.try_connect(conn, peer, now)
                .unwrap_or_else(|close| vec![Action::Close { conn, close }])
        }
        Op::Hello {
            conn,
            name,
            v2,
            resume,
        } => {
            let mut hello = serde_json::json!({ "name": NAMES[*name as usize % NAMES.len()] });
            if *v2 {
                hello["v"] = 2.into();
            }
            if let Some((good, seq)) = resume {
                let epoch = if *good { EPOCH } else { "stale" };
                hello["resume"] = serde_json::json!({ "epoch": epoch, "seq": seq % 40 });
            }
            room.on_text(conn_id(*conn), &hello.to_string(), now)
        }
        Op::Chat { conn, text } => {
            let msg = serde_json::json!({ "message": TEXTS[*text as usize % TEXTS.len()] });
            room.on_text(conn_id(*conn), &msg.to_string(), now)
        }
        Op::Text { conn, raw } => room.on_text(conn_id(*conn), raw, now),
        Op::Binary { conn, len } => room.on_binary(conn_id(*conn), usize::from(*len), now),
        Op::TooBig { conn } => room.on_too_big(conn_id(*conn), now),
        Op::Close { conn } => room.disconnect(conn_id(*conn), now),
        Op::Advance { .. } => Vec::new(),
        Op::Tick => room.on_tick(now),
    }
}

/// The room as a Durable Object rebuilds it: sessions through JSON, plus storage.
fn rebuilt(room: &Room<MemoryStorage>) -> Room<MemoryStorage> {
    let sessions: Vec<Session> = room
        .sessions()
        .map(|s| serde_json::from_str(&serde_json::to_string(s).expect("encode")).expect("decode"))
        .collect();
    Room::restore(config(), room.storage().clone(), EPOCH, sessions).expect("memory storage")
}

fuzz_target!(|ops: Vec<Op>| {
    let mut room = Room::open(config(), MemoryStorage::new(), EPOCH).expect("memory storage");
    let (mut now, mut last_seq, mut last_ts) = (1_000_000u64, 0u64, 0u64);
    for op in ops.iter().take(200) {
        if let Op::Advance { ms, back } = op {
            now = if *back {
                now.saturating_sub(u64::from(*ms) / 4)
            } else {
                now + u64::from(*ms)
            };
        }
        // Frames held for batch sessions live only in the room, so a room rebuilt while
        // any are pending (or within a window of the last flush) may package the next
        // frames differently; once quiet it must behave the same.
        let quiet = room.is_quiet(now);
        let mut shadow = rebuilt(&room);
        let actions = apply(&mut room, op, now);
        let shadow_actions = apply(&mut shadow, op, now);
        if quiet {
            assert_eq!(
                actions, shadow_actions,
                "a rebuilt room must behave the same"
            );
        }
        let members: Vec<ConnId> = room.members().collect();
        for action in &actions {
            match action {
                Action::Send { to, frame } => {
                    let v: Value = serde_json::from_str(frame).expect("frames are JSON");
                    // No lurking: before its hello a connection hears nothing but errors.
                    if !members.contains(to) && room.session(*to).is_some() {
                        assert!(v.get("error").is_some(), "non-member got {frame}");
                    }
                }
                Action::Broadcast { frame, .. } => {
                    let v: Value = serde_json::from_str(frame).expect("frames are JSON");
                    // A batch session may get a stored message again on its own (one
                    // too big to share a batch): only a new seq is checked.
                    let new_seq = v.get("seq").and_then(Value::as_u64).filter(|s| *s > last_seq);
                    if let Some(seq) = new_seq {
                        let ts = v["timestamp"].as_u64().expect("a timestamp");
                        assert_eq!(seq, last_seq + 1, "seqs have no gaps");
                        assert!(ts > last_ts, "timestamps strictly increase");
                        (last_seq, last_ts) = (seq, ts);
                    }
                }
                Action::Close { conn, .. } => {
                    assert!(
                        room.session(*conn).is_none(),
                        "a closed connection is forgotten"
                    );
                }
                Action::Save { .. } | Action::Audit { .. } | Action::Commit => {}
            }
        }
        assert!(room.connection_count() <= config().room_capacity);
        assert_eq!(
            room.last_seq(),
            last_seq,
            "every stored message was broadcast"
        );
    }
});
