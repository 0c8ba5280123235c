//! Arbitrary sequences of the property tests' ops into a `Room`: connects, hellos of
//! every opt-in (batching included), chat with and without cids, long messages,
//! history requests, any text, binary frames, frames over the size cap, kicks, closes,
//! ticks and clock steps (backwards too). Nothing may panic, and the invariants the
//! property tests check must hold on every input: seqs without gaps, strictly
//! increasing timestamps, no lurking, every frame valid JSON, and a room rebuilt from
//! its sessions plus storage (a Durable Object after hibernation) behaving exactly like
//! the original.
#![no_main]

// The traffic model the property tests use (handler/tests/common/model.rs): its `Op`
// derives `Arbitrary` under cargo-fuzz's `cfg(fuzzing)`.
#[path = "../../handler/tests/common/model.rs"]
mod model;

use chat_handler::{Action, ConnId, MemoryStorage, Room};
use libfuzzer_sys::fuzz_target;
use model::{advance, apply, config, rebuilt, Op, EPOCH};
use serde_json::Value;

fuzz_target!(|ops: Vec<Op>| {
    let mut room = Room::open(config(), MemoryStorage::new(), EPOCH).expect("memory storage");
    let (mut now, mut last_seq, mut last_ts) = (1_000_000u64, 0u64, 0u64);
    for op in ops.iter().take(200) {
        now = advance(now, op);
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
