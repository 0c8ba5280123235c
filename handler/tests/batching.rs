//! One test per batching rule: the opt-in, the join burst, the window and its budget,
//! `batch_max`, per-recipient order, joiners, closes, presence storms, hibernation.

mod common;

use chat_handler::{Action, Close, Config, ConnId, Frame, MemoryStorage, Room, Session};
use common::*;
use serde_json::{json, Value};

const V2_BATCH: &str = r#"{"name":"NAME","v":2,"batch":true}"#;

fn hello_batch(name: &str) -> String {
    V2_BATCH.replace("NAME", name)
}

/// Unlimited rate, and a window of `window` ms for any room of at least one batch
/// session (a budget of 1 send per second makes the window its cap).
fn windowed(window: u64) -> Config {
    Config {
        batch_window_ms: window,
        batch_send_budget: 1,
        ..unlimited()
    }
}

/// Send calls the actions cost: one per message per recipient (broadcasts to the
/// room's one-by-one recipients included).
fn sends(actions: &[Action]) -> usize {
    actions
        .iter()
        .map(|a| match a {
            Action::Send { .. } => 1,
            Action::Broadcast { to, .. } => to.len(),
            _ => 0,
        })
        .sum()
}

fn texts(frames: &[Value]) -> Vec<String> {
    frames.iter().map(Value::to_string).collect()
}

#[test]
fn a_batch_joiner_gets_its_whole_join_burst_in_one_message() {
    let mut r = room(unlimited());
    join(&mut r, 1, "a", r#"{"name":"alice"}"#, 1000);
    say(&mut r, 1, "one", 1001);
    say(&mut r, 1, "two", 1002);
    let acts = join(&mut r, 2, "b", &hello_batch("bob"), 1003);
    let messages = messages_for(&acts, 2);
    assert_eq!(messages.len(), 1, "{messages:?}");
    // Each frame exactly as it would be alone, in the join order.
    let alone = [
        r#"{"roster":[{"name":"alice"}]}"#,
        r#"{"name":"alice","message":"one","timestamp":1001,"seq":1}"#,
        r#"{"name":"alice","message":"two","timestamp":1002,"seq":2}"#,
        r#"{"joined":"bob"}"#,
        r#"{"ready":true,"epoch":"epoch-1","seq":2,"recovered":false,"v":2}"#,
    ];
    assert_eq!(
        &*messages[0],
        format!(r#"{{"batch":[{}]}}"#, alone.join(","))
    );
    // The v1 member is told at once, one frame.
    assert_eq!(messages_for(&acts, 1), vec![r#"{"joined":"bob"}"#.into()]);
}

#[test]
fn a_join_burst_longer_than_batch_max_comes_in_several_batches() {
    let mut r = room(Config {
        batch_max: 3,
        ..unlimited()
    });
    join(&mut r, 1, "a", r#"{"name":"alice"}"#, 1000);
    for i in 0..5 {
        say(&mut r, 1, &format!("m{i}"), 1001 + i);
    }
    let acts = join(&mut r, 2, "b", &hello_batch("bob"), 1010);
    let messages = messages_for(&acts, 2);
    // roster + 5 backlog + joined + ready = 8 frames: 3, 3, 2.
    let sizes: Vec<usize> = messages.iter().map(|m| unbatch(m).len()).collect();
    assert_eq!(sizes, vec![3, 3, 2]);
    let frames = frames_for(&acts, 2);
    assert_eq!(frames[0], json!({"roster": [{"name": "alice"}]}));
    assert_eq!(frames[7]["ready"], json!(true));
}

/// `n` characters that JSON escapes as `\u00XX`: 6 bytes each on the wire (U+000E to
/// U+001B: no short escape such as `\b`, and none is trimmed as white space).
fn controls(n: usize) -> String {
    (0..n).map(|i| char::from(0x0E + (i % 14) as u8)).collect()
}

/// The issue-18 case in small: a resume of large messages. The join burst is split by
/// bytes as well as by count: every batch within `batch_max_bytes`, every frame once
/// and in order.
#[test]
fn a_join_burst_over_batch_max_bytes_comes_in_batches_within_it() {
    let config = Config {
        batch_max_bytes: 4096,
        ..unlimited()
    };
    let mut r = room(config.clone());
    join(&mut r, 1, "a", r#"{"name":"alice"}"#, 1000);
    let mut sent = Vec::new();
    for i in 0..20 {
        let acts = say(&mut r, 1, &controls(200), 1001 + i);
        sent.push(broadcasts(&acts).remove(0));
    }
    let hello = r#"{"name":"bob","v":2,"batch":true,"resume":{"epoch":"epoch-1","seq":0}}"#;
    let acts = join(&mut r, 2, "b", hello, 1100);
    let messages = messages_for(&acts, 2);
    for m in &messages {
        assert!(
            m.len() <= config.batch_max_bytes,
            "a message of {} bytes",
            m.len()
        );
    }
    // Each chat frame is about 1.2 KB: three fit in 4 KiB, so several batches.
    assert!(messages.len() >= 7, "{} messages", messages.len());
    let frames = frames_for(&acts, 2);
    assert_eq!(frames[0], json!({"roster": [{"name": "alice"}]}));
    assert_eq!(&frames[1..21], &sent[..]);
    assert_eq!(frames[21], json!({"joined": "bob"}));
    assert_eq!(frames[22]["ready"], json!(true));
    assert_eq!(frames[22]["recovered"], json!(true));
    assert_eq!(frames.len(), 23);
}

/// Pending frames that fill `batch_max_bytes` are flushed at once, like `batch_max`
/// frames, and a frame too big to share a message goes alone, as itself.
#[test]
fn pending_bytes_over_batch_max_bytes_flush_at_once_and_a_big_frame_goes_alone() {
    let config = Config {
        batch_max_bytes: 4096,
        ..windowed(1000)
    };
    let mut r = room(config);
    join(&mut r, 1, "a", &hello_batch("alice"), 1000);
    join(&mut r, 2, "b", &hello_batch("bob"), 1000);
    r.on_tick(5000);
    let acts = say(&mut r, 1, "lead", 6000);
    assert_eq!(messages_for(&acts, 2).len(), 1);
    // About 1.2 KB each: the third would fill more than 4 KiB of batch.
    for i in 0..2 {
        let acts = say(&mut r, 1, &controls(200), 6001 + i);
        assert!(messages_for(&acts, 2).is_empty(), "held");
    }
    let acts = say(&mut r, 1, &controls(200), 6003);
    assert!(messages_for(&acts, 2).is_empty(), "3 frames still fit");
    let acts = say(&mut r, 1, &controls(200), 6004);
    let messages = messages_for(&acts, 2);
    assert_eq!(
        messages
            .iter()
            .map(|m| unbatch(m).len())
            .collect::<Vec<_>>(),
        vec![3, 1],
        "flushed at once, split at the bound"
    );
    assert!(messages.iter().all(|m| m.len() <= 4096));
    assert_eq!(r.next_flush(), None);

    // A message of 900 escaped characters makes a frame over the bound: it fills the
    // pending bytes (so the batch before it goes at once) and goes alone, unwrapped.
    r.on_tick(9000);
    say(&mut r, 1, "lead", 10_000);
    let mut acts = Vec::new();
    for (i, text) in ["before", "before too", &controls(900), "after", "last"]
        .into_iter()
        .enumerate()
    {
        acts.extend(say(&mut r, 1, text, 10_001 + i as u64));
    }
    acts.extend(r.on_tick(12_000));
    let messages = messages_for(&acts, 2);
    let sizes: Vec<usize> = messages.iter().map(|m| unbatch(m).len()).collect();
    assert_eq!(sizes, vec![2, 1, 2], "{messages:?}");
    assert!(messages[1].starts_with(r#"{"name":"alice","message":""#));
    assert!(messages[1].len() > 4096);
    let all = frames_for(&acts, 2);
    let texts: Vec<&str> = all.iter().map(|f| f["message"].as_str().unwrap()).collect();
    assert_eq!(
        texts,
        ["before", "before too", &controls(900), "after", "last"]
    );
}

#[test]
fn batch_without_v2_is_ignored_and_v2_without_batch_is_unbatched() {
    for hello in [
        r#"{"name":"x","batch":true}"#,
        r#"{"name":"x","v":1,"batch":true}"#,
        r#"{"name":"x","v":2}"#,
        r#"{"name":"x","v":2,"batch":false}"#,
    ] {
        let mut r = room(windowed(100));
        join(&mut r, 1, "a", &hello_batch("alice"), 1000);
        let acts = join(&mut r, 2, "b", hello, 1001);
        // One message per frame: no batch, whatever the room's other sessions do.
        let messages = messages_for(&acts, 2);
        assert!(messages.len() >= 2, "{hello}: {messages:?}");
        assert!(
            messages.iter().all(|m| !m.starts_with(r#"{"batch""#)),
            "{hello}: {messages:?}"
        );
        assert!(!r.session(2).unwrap().is_batched(), "{hello}");
        for i in 0..5 {
            let acts = say(&mut r, 1, &format!("m{i}"), 1002 + i);
            assert_eq!(messages_for(&acts, 2).len(), 1, "{hello}: at once");
        }
    }
}

#[test]
fn a_non_boolean_batch_in_a_v2_hello_is_refused() {
    let mut r = room(Config::default());
    r.try_connect(1, peer("a"), 0).unwrap();
    let acts = r.on_text(1, r#"{"name":"x","v":2,"batch":"yes"}"#, 0);
    assert_eq!(
        frames_for(&acts, 1),
        vec![json!({"error": "\"batch\" must be true or false.", "code": "batch_not_boolean"})]
    );
    assert_eq!(close_of(&acts, 1), Some(Close::BadHello));
}

#[test]
fn a_lone_frame_in_a_quiet_room_goes_out_at_once() {
    let mut r = room(windowed(100));
    join(&mut r, 1, "a", &hello_batch("alice"), 1000);
    let acts = say(&mut r, 1, "hi", 5000);
    assert_eq!(
        messages_for(&acts, 1),
        vec![r#"{"name":"alice","message":"hi","timestamp":5000,"seq":1}"#.into()]
    );
    assert_eq!(r.next_flush(), None);
}

/// Found by the batching property test: with every member batched, a message's own
/// broadcast reaches nobody and each member's batch of one carries it as itself. Each
/// member must get it exactly once.
#[test]
fn in_an_all_batched_room_each_member_gets_a_message_once() {
    let mut r = room(windowed(1500));
    join(&mut r, 5, "a", &hello_batch("alice"), 1000);
    join(&mut r, 2, "b", &hello_batch("alice"), 1001);
    let mut acts = say(&mut r, 2, "hi", 1002);
    acts.extend(r.flush(1002));
    let hi = r#"{"name":"alice","message":"hi","timestamp":1002,"seq":1}"#;
    for conn in [2, 5] {
        let got: Vec<Frame> = messages_for(&acts, conn)
            .into_iter()
            .filter(|m| m.contains("\"seq\":1"))
            .collect();
        assert_eq!(got, vec![Frame::from(hi)], "member {conn}");
    }
}

#[test]
fn frames_within_the_window_wait_for_it_and_share_one_encoding() {
    let mut r = room(windowed(100));
    join(&mut r, 1, "a", &hello_batch("alice"), 1000);
    join(&mut r, 2, "b", &hello_batch("bob"), 1000);
    join(&mut r, 3, "c", r#"{"name":"carol"}"#, 1000);
    r.on_tick(1200);
    // The first frame after a quiet spell goes at once and opens a window.
    let acts = say(&mut r, 3, "first", 2000);
    assert_eq!(messages_for(&acts, 1).len(), 1);
    let held = [
        say(&mut r, 3, "second", 2010),
        say(&mut r, 3, "third", 2020),
    ];
    for acts in &held {
        assert!(messages_for(acts, 1).is_empty(), "held: {acts:?}");
        assert!(messages_for(acts, 2).is_empty(), "held: {acts:?}");
        // The one-by-one member is not held.
        assert_eq!(messages_for(acts, 3).len(), 1);
    }
    assert_eq!(r.next_flush(), Some(2100));
    assert_eq!(r.next_deadline(), Some(2100));
    assert!(r.on_tick(2099).is_empty());
    let acts = r.on_tick(2100);
    // One action, one encoding, for both batch members.
    assert_eq!(acts.len(), 1, "{acts:?}");
    let Action::Broadcast { to, frame } = &acts[0] else {
        panic!("expected one frame to both: {acts:?}");
    };
    assert_eq!(&to[..], [1, 2]);
    assert_eq!(
        unbatch(frame),
        vec![
            r#"{"name":"carol","message":"second","timestamp":2010,"seq":2}"#.to_owned(),
            r#"{"name":"carol","message":"third","timestamp":2020,"seq":3}"#.to_owned(),
        ]
    );
    assert_eq!(r.next_flush(), None);
}

#[test]
fn batch_max_pending_frames_flush_at_once() {
    let mut r = room(Config {
        batch_max: 3,
        ..windowed(1000)
    });
    join(&mut r, 1, "a", &hello_batch("alice"), 1000);
    r.on_tick(5000);
    let acts = say(&mut r, 1, "lead", 6000);
    assert_eq!(messages_for(&acts, 1).len(), 1);
    for (i, text) in ["a", "b"].into_iter().enumerate() {
        let acts = say(&mut r, 1, text, 6001 + i as u64);
        assert!(messages_for(&acts, 1).is_empty());
    }
    let acts = say(&mut r, 1, "c", 6003);
    let messages = messages_for(&acts, 1);
    assert_eq!(messages.len(), 1);
    assert_eq!(unbatch(&messages[0]).len(), 3);
    assert_eq!(r.next_flush(), None);
}

#[test]
fn the_window_follows_the_budget_up_to_its_cap() {
    let config = Config {
        batch_window_ms: 250,
        batch_send_budget: 1000,
        room_capacity: 1000,
        ..unlimited()
    };
    let mut r = room(config);
    assert_eq!(r.batch_window(), (0, 0));
    join(&mut r, 1, "a", &hello_batch("a"), 0);
    // 1 member × 1000 / 1000 sends/s: a 1 ms window.
    assert_eq!(r.batch_window(), (1, 1));
    for c in 2..=100 {
        join(&mut r, c, &format!("a{c}"), &hello_batch("a"), 0);
    }
    // One-by-one sessions do not count: the budget is for batch flushes.
    join(&mut r, 500, "v1", r#"{"name":"v1"}"#, 0);
    assert_eq!(r.batch_window(), (100, 100));
    for c in 101..=400 {
        join(&mut r, c, &format!("a{c}"), &hello_batch("a"), 0);
    }
    assert_eq!(r.batch_window(), (400, 250), "capped by batch_window_ms");
    // Under the default budget a small room waits at most a few ms.
    let mut small = room(unlimited());
    for c in 1..=10 {
        join(&mut small, c, &format!("a{c}"), &hello_batch("a"), 0);
    }
    assert_eq!(small.batch_window(), (10, 2));
    join(&mut small, 11, "a11", &hello_batch("a"), 0);
    assert_eq!(
        small.batch_window(),
        (11, 3),
        "rounded up: within the budget"
    );
}

#[test]
fn a_direct_frame_never_overtakes_a_pending_broadcast() {
    let mut r = room(windowed(100));
    join(&mut r, 1, "a", &hello_batch("alice"), 1000);
    join(&mut r, 2, "b", &hello_batch("bob"), 1000);
    r.on_tick(2000);
    say(&mut r, 1, "lead", 3000);
    say(&mut r, 1, "pending", 3010);
    // Bob's bad frame is answered at once, behind what was pending for him.
    let acts = r.on_text(2, "not json", 3020);
    let messages = messages_for(&acts, 2);
    assert_eq!(messages.len(), 1, "{messages:?}");
    let frames = unbatch(&messages[0]);
    assert_eq!(
        frames,
        vec![
            r#"{"name":"alice","message":"pending","timestamp":3010,"seq":2}"#.to_owned(),
            r#"{"error":"Invalid JSON: send a text frame like {\"message\": \"hello\"}.","code":"not_json"}"#
                .to_owned(),
        ]
    );
    assert!(messages_for(&acts, 1).is_empty(), "alice still waits");
    // At the window, alice gets it; bob does not get it twice.
    let acts = r.on_tick(3100);
    assert_eq!(
        frames_for(&acts, 1),
        vec![json!({"name": "alice", "message": "pending", "timestamp": 3010, "seq": 2})]
    );
    assert!(frames_for(&acts, 2).is_empty(), "{acts:?}");
}

#[test]
fn a_joiner_gets_nothing_queued_before_it_joined() {
    let mut r = room(windowed(100));
    join(&mut r, 1, "a", &hello_batch("alice"), 1000);
    r.on_tick(2000);
    say(&mut r, 1, "lead", 3000);
    say(&mut r, 1, "pending", 3010);
    let acts = join(&mut r, 2, "b", &hello_batch("bob"), 3020);
    let burst = frames_for(&acts, 2);
    // The pending message is in bob's backlog, once.
    assert_eq!(
        texts(&burst),
        vec![
            r#"{"roster":[{"name":"alice"}]}"#,
            r#"{"message":"lead","name":"alice","seq":1,"timestamp":3000}"#,
            r#"{"message":"pending","name":"alice","seq":2,"timestamp":3010}"#,
            r#"{"joined":"bob"}"#,
            r#"{"epoch":"epoch-1","ready":true,"recovered":false,"seq":2,"v":2}"#,
        ]
    );
    say(&mut r, 1, "after", 3030);
    let acts = r.on_tick(3100);
    assert_eq!(
        frames_for(&acts, 1),
        vec![
            json!({"name": "alice", "message": "pending", "timestamp": 3010, "seq": 2}),
            json!({"joined": "bob"}),
            json!({"name": "alice", "message": "after", "timestamp": 3030, "seq": 3}),
        ]
    );
    assert_eq!(
        frames_for(&acts, 2),
        vec![json!({"name": "alice", "message": "after", "timestamp": 3030, "seq": 3})]
    );
}

#[test]
fn a_closed_batch_session_gets_what_was_pending_before_its_close() {
    let mut r = room(windowed(100));
    join(&mut r, 1, "a", &hello_batch("alice"), 1000);
    join(&mut r, 2, "b", &hello_batch("bob"), 1000);
    r.on_tick(2000);
    say(&mut r, 1, "lead", 3000);
    say(&mut r, 1, "pending", 3010);
    let acts = r.kick(2, Close::SlowConsumer, 3020);
    let at = |pred: &dyn Fn(&Action) -> bool| acts.iter().position(pred).unwrap();
    let sent = at(&|a| matches!(a, Action::Send { to: 2, .. }));
    let closed = at(&|a| matches!(a, Action::Close { conn: 2, .. }));
    assert!(sent < closed, "{acts:?}");
    let Action::Send { frame, .. } = &acts[sent] else {
        unreachable!()
    };
    assert_eq!(
        &**frame,
        r#"{"name":"alice","message":"pending","timestamp":3010,"seq":2}"#
    );
    // Its own quit is not for it; alice gets both at the window.
    let acts = r.on_tick(3100);
    assert_eq!(
        frames_for(&acts, 1),
        vec![
            json!({"name": "alice", "message": "pending", "timestamp": 3010, "seq": 2}),
            json!({"quit": "bob"}),
        ]
    );
}

#[test]
fn a_flooder_closed_in_a_batch_gets_its_pending_frames_then_its_error_then_the_close() {
    // Two tokens per address and no second chance: a third message in a row is refused
    // with an error and closes its sender (1008), in the same event.
    let config = Config {
        rate_burst: 2,
        rate_per_sec: 0.001,
        rate_strikes: 1,
        ..windowed(100)
    };
    let mut r = room(config);
    join(&mut r, 1, "a", &hello_batch("alice"), 1000);
    join(&mut r, 2, "b", &hello_batch("bob"), 1000);
    r.on_tick(2000);
    say(&mut r, 1, "lead", 3000);
    say(&mut r, 1, "pending", 3010);
    say(&mut r, 2, "one", 3015);
    say(&mut r, 2, "two", 3016);
    let acts = say(&mut r, 2, "three", 3017);
    // Everything for bob comes before his close, in the unbatched order: what was
    // pending for him, then the error about the frame that closed him.
    let closed = acts
        .iter()
        .position(|a| {
            matches!(
                a,
                Action::Close {
                    conn: 2,
                    close: Close::Flooding
                }
            )
        })
        .unwrap_or_else(|| panic!("bob is not closed: {acts:?}"));
    let before: Vec<Value> = messages_for(&acts[..closed], 2)
        .iter()
        .flat_map(|m| unbatch(m))
        .map(|t| serde_json::from_str(&t).unwrap())
        .collect();
    let texts: Vec<&Value> = before.iter().map(|f| &f["message"]).collect();
    assert_eq!(texts[..3], ["pending", "one", "two"], "{before:?}");
    assert_eq!(before.len(), 4, "{before:?}");
    assert!(before[3]["error"].is_string(), "{before:?}");
    assert!(
        messages_for(&acts[closed..], 2).is_empty(),
        "nothing for bob after his close: {acts:?}"
    );
    // One message: nothing for him as a plain frame ahead of his batch.
    assert_eq!(messages_for(&acts, 2).len(), 1, "{acts:?}");
}

#[test]
fn a_peer_that_disconnects_takes_nothing_with_it() {
    let mut r = room(windowed(100));
    join(&mut r, 1, "a", &hello_batch("alice"), 1000);
    join(&mut r, 2, "b", &hello_batch("bob"), 1000);
    r.on_tick(2000);
    say(&mut r, 1, "lead", 3000);
    say(&mut r, 1, "pending", 3010);
    let acts = r.disconnect(2, 3020);
    assert_eq!(sends(&acts), 0, "{acts:?}");
    // The last batch member gone, nothing is left pending for anyone.
    let acts = r.disconnect(1, 3030);
    assert_eq!(sends(&acts), 0, "{acts:?}");
    assert_eq!(r.next_flush(), None);
}

#[test]
fn v1_and_unbatched_v2_sessions_are_never_held() {
    let mut r = room(windowed(100));
    join(&mut r, 1, "a", &hello_batch("alice"), 1000);
    join(&mut r, 2, "b", r#"{"name":"bob"}"#, 1000);
    join(&mut r, 3, "c", r#"{"name":"carol","v":2}"#, 1000);
    for i in 0..10 {
        let acts = say(&mut r, 2, &format!("m{i}"), 2000 + i);
        for conn in [2, 3] {
            let messages = messages_for(&acts, conn);
            assert_eq!(messages.len(), 1);
            assert!(!messages[0].starts_with(r#"{"batch""#));
        }
    }
}

#[test]
fn a_join_storm_costs_sends_bounded_by_the_window_not_by_members_squared() {
    // 400 batch sessions join one room within 2 s, 5 ms apart.
    let config = Config {
        room_capacity: 1000,
        batch_window_ms: 200,
        batch_send_budget: 10_000,
        ..unlimited()
    };
    let mut r = room(config);
    let (mut total, mut bursts) = (0usize, 0usize);
    for c in 0..400u64 {
        let now = 10_000 + c * 5;
        if let Some(due) = r.next_flush() {
            if due <= now {
                let acts = r.on_tick(due);
                total += sends(&acts);
            }
        }
        let acts = join(
            &mut r,
            c,
            &format!("10.1.{}.{}", c / 256, c % 256),
            &hello_batch("m"),
            now,
        );
        bursts += messages_for(&acts, c).len();
        total += sends(&acts);
    }
    let acts = r.flush(20_000);
    total += sends(&acts);
    // Each joiner's burst is one message; members hear of joins at most once per window
    // (it grows to 40 ms at 400 members), so the flushes cost at most the budget over
    // the 2 s of the storm, plus one flush straddling its end. Unbatched, each join
    // would cost one send per member: 80,200 sends.
    assert_eq!(bursts, 400);
    let budget_bound = 400 + 10_000 * 2 + 400;
    assert!(total <= budget_bound, "{total} sends > {budget_bound}");
}

#[test]
fn batch_sessions_survive_hibernation() {
    let mut r = room(windowed(100));
    join(&mut r, 1, "a", &hello_batch("alice"), 1000);
    join(&mut r, 2, "b", &hello_batch("bob"), 1000);
    join(&mut r, 3, "c", r#"{"name":"carol"}"#, 1000);
    let text = serde_json::to_string(r.session(1).unwrap()).unwrap();
    assert!(text.contains(r#""batch":true"#), "{text}");
    let plain = serde_json::to_string(r.session(3).unwrap()).unwrap();
    assert!(!plain.contains("batch"), "kept small when off: {plain}");
    r.on_tick(2000);
    say(&mut r, 3, "lead", 3000);
    say(&mut r, 3, "pending", 3010);
    assert!(!r.is_quiet(3020));
    // What a backend does before dropping the room: flush.
    let acts = r.flush(3020);
    for conn in [1, 2] {
        assert_eq!(frames_for(&acts, conn).len(), 1, "{acts:?}");
    }
    assert!(r.is_quiet(3120));
    let sessions: Vec<Session> = r
        .sessions()
        .map(|s| serde_json::from_str(&serde_json::to_string(s).unwrap()).unwrap())
        .collect();
    let mut back = Room::restore(windowed(100), r.storage().clone(), "x", sessions).unwrap();
    assert_eq!(back.batch_window(), (2, 100));
    say(&mut back, 3, "after", 4000);
    let acts = say(&mut back, 3, "held", 4010);
    assert!(frames_for(&acts, 1).is_empty(), "still batched");
    let acts = back.on_tick(4100);
    assert_eq!(
        frames_for(&acts, 2),
        vec![json!({"name": "carol", "message": "held", "timestamp": 4010, "seq": 4})]
    );
}

/// The conns that `actions` deliver anything to.
fn recipients_of(room: &Room<MemoryStorage>, actions: &[Action]) -> Vec<ConnId> {
    let mut all: Vec<ConnId> = room.sessions().map(|s| s.id()).collect();
    all.retain(|c| !messages_for(actions, *c).is_empty());
    all
}

#[test]
fn a_one_member_room_adds_no_latency() {
    // Buckets written through: `next_flush` then speaks of batches only.
    let mut r = room(Config {
        rate_persist_ms: 0,
        ..Config::default()
    });
    join(&mut r, 1, "a", &hello_batch("alice"), 1000);
    for i in 0..20 {
        let acts = say(&mut r, 1, &format!("m{i}"), 2000 + i);
        assert_eq!(recipients_of(&r, &acts), vec![1]);
        assert_eq!(r.next_flush(), None);
    }
}
