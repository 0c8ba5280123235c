//! Retry-safe sends (`cid`) and history paging (v2), one test per rule.

mod common;

use chat_handler::{
    Action, Config, ErrorKind, MemoryStorage, Room, Storage, StorageError, StorageResult,
    StoredMessage,
};
use common::*;
use serde_json::{json, Value};

const V2: &str = r#"{"name":"ana","v":2}"#;

fn send(room: &mut Room<MemoryStorage>, conn: u64, text: &str, cid: &str, now: u64) -> Vec<Action> {
    room.on_text(
        conn,
        &json!({ "message": text, "cid": cid }).to_string(),
        now,
    )
}

fn ask(room: &mut Room<MemoryStorage>, conn: u64, request: Value, now: u64) -> Vec<Value> {
    let acts = room.on_text(conn, &json!({ "history": request }).to_string(), now);
    frames_for(&acts, conn)
}

fn seqs(page: &Value) -> Vec<u64> {
    page["history"]
        .as_array()
        .expect("a history array")
        .iter()
        .map(|m| m["seq"].as_u64().expect("a seq"))
        .collect()
}

#[test]
fn a_repeated_cid_is_answered_with_the_original_to_its_sender_only() {
    let mut r = room(unlimited());
    join(&mut r, 1, "10.0.0.1", V2, 1000);
    join(&mut r, 2, "10.0.0.2", r#"{"name":"bob"}"#, 1000);
    let first = send(&mut r, 1, "hello", "k-1", 1001);
    let original =
        json!({"name": "ana", "message": "hello", "timestamp": 1001, "seq": 1, "cid": "k-1"});
    assert_eq!(frames_for(&first, 1), vec![original.clone()]);
    assert_eq!(frames_for(&first, 2), vec![original.clone()], "v1 too");

    // The retry, even with other text, is the original again, to the sender alone.
    let again = send(&mut r, 1, "hello (edited)", "k-1", 5000);
    assert_eq!(
        again,
        // (No `Save`: the address's bucket lives in storage, not in the session.)
        vec![Action::Send {
            to: 1,
            // Byte for byte the frame first broadcast, keys in the documented order.
            frame: r#"{"name":"ana","message":"hello","timestamp":1001,"seq":1,"cid":"k-1"}"#
                .into()
        }]
    );
    assert_eq!(r.last_seq(), 1, "not stored again");
    assert_eq!(r.storage().len(), 1);

    // Another cid is another message.
    let next = send(&mut r, 1, "hello", "k-2", 5001);
    assert_eq!(frames_for(&next, 2)[0]["seq"], 2);
}

#[test]
fn the_sender_is_the_address_and_the_name() {
    let mut r = room(unlimited());
    join(&mut r, 1, "10.0.0.1", V2, 1000);
    send(&mut r, 1, "one", "same", 1001);
    // The same address under another name, and the same name from another address,
    // are other senders: their "same" is a new message.
    join(&mut r, 2, "10.0.0.1", r#"{"name":"bob","v":2}"#, 1002);
    send(&mut r, 2, "two", "same", 1003);
    join(&mut r, 3, "10.0.0.9", V2, 1004);
    send(&mut r, 3, "three", "same", 1005);
    assert_eq!(r.last_seq(), 3);
    // A new connection of the first sender (a reconnect) is the same sender.
    join(&mut r, 4, "10.0.0.1", V2, 1006);
    let retry = send(&mut r, 4, "one", "same", 1007);
    assert_eq!(frames_for(&retry, 4)[0]["seq"], 1);
    assert!(frames_for(&retry, 1).is_empty());
    assert_eq!(r.last_seq(), 3);
}

#[test]
fn a_cid_is_recognised_within_either_window_and_not_beyond_both() {
    let cfg = Config {
        cid_window_messages: 3,
        cid_window_ms: 10_000,
        ..unlimited()
    };
    let fill = |r: &mut Room<MemoryStorage>, n: u64, now: u64| {
        for i in 0..n {
            say(r, 1, "filler", now + i);
        }
    };
    // Outside the message window (3 newer messages), inside the time window.
    let mut r = room(cfg.clone());
    join(&mut r, 1, "a", V2, 0);
    send(&mut r, 1, "x", "k", 1_000);
    fill(&mut r, 3, 2_000);
    let acts = send(&mut r, 1, "x", "k", 10_999);
    assert_eq!(frames_for(&acts, 1)[0]["seq"], 1, "within 10 s");
    // Inside the message window, outside the time window.
    let mut r = room(cfg.clone());
    join(&mut r, 1, "a", V2, 0);
    send(&mut r, 1, "x", "k", 1_000);
    fill(&mut r, 2, 2_000);
    let acts = send(&mut r, 1, "x", "k", 60_000);
    assert_eq!(frames_for(&acts, 1)[0]["seq"], 1, "within 3 messages");
    // Outside both: a new message.
    let mut r = room(cfg);
    join(&mut r, 1, "a", V2, 0);
    send(&mut r, 1, "x", "k", 1_000);
    fill(&mut r, 3, 2_000);
    let acts = send(&mut r, 1, "x", "k", 11_001);
    assert_eq!(frames_for(&acts, 1)[0]["seq"], 5);
    assert_eq!(r.last_seq(), 5);
}

#[test]
fn a_pruned_original_is_forgotten() {
    let mut r = room(Config {
        retention: 2,
        backlog: 2,
        resume_max: 2,
        ..unlimited()
    });
    join(&mut r, 1, "a", V2, 0);
    send(&mut r, 1, "x", "k", 1);
    say(&mut r, 1, "y", 2);
    say(&mut r, 1, "z", 3);
    let acts = send(&mut r, 1, "x", "k", 4);
    assert_eq!(frames_for(&acts, 1)[0]["seq"], 4);
}

#[test]
fn the_cid_lives_in_storage_and_survives_a_rebuild() {
    let mut r = room(unlimited());
    join(&mut r, 1, "a", V2, 0);
    send(&mut r, 1, "x", "k", 1);
    let mut rebuilt = Room::open(r.config().clone(), r.storage().clone(), "other").unwrap();
    join(&mut rebuilt, 7, "a", V2, 2);
    let acts = send(&mut rebuilt, 7, "x", "k", 3);
    assert_eq!(frames_for(&acts, 7)[0]["seq"], 1);
    assert_eq!(rebuilt.last_seq(), 1);
    // The backlog carries the cid, so a client that missed the echo finds it there.
    let acts = join(&mut rebuilt, 8, "b", V2, 4);
    assert_eq!(frames_for(&acts, 8)[1]["cid"], "k");
}

#[test]
fn a_bad_cid_is_an_error_and_nothing_is_stored() {
    let mut r = room(unlimited());
    join(&mut r, 1, "a", V2, 0);
    for cid in [json!(""), json!("x".repeat(65)), json!("a b"), json!(7)] {
        let acts = r.on_text(1, &json!({"message": "hi", "cid": cid}).to_string(), 1);
        let got = frames_for(&acts, 1);
        assert_eq!(
            got,
            vec![json!({"error": ErrorKind::CidInvalid.sentence(), "code": "cid_invalid"})],
            "{cid}"
        );
    }
    assert_eq!(r.last_seq(), 0);
    assert!(r.session(1).is_some(), "the socket stays open");
}

/// Storage whose cid lookups and history reads fail.
struct Unreadable(MemoryStorage);

impl Storage for Unreadable {
    fn load_epoch(&mut self) -> StorageResult<Option<String>> {
        self.0.load_epoch()
    }
    fn save_epoch(&mut self, epoch: &str) -> StorageResult<()> {
        self.0.save_epoch(epoch)
    }
    fn latest(&mut self) -> StorageResult<Option<StoredMessage>> {
        self.0.latest()
    }
    fn append(&mut self, m: &StoredMessage) -> StorageResult<()> {
        self.0.append(m)
    }
    fn last_n(&mut self, n: usize) -> StorageResult<Vec<StoredMessage>> {
        self.0.last_n(n)
    }
    fn after(&mut self, s: u64, n: usize) -> StorageResult<Vec<StoredMessage>> {
        self.0.after(s, n)
    }
    fn before(&mut self, _: u64, _: usize) -> StorageResult<Vec<StoredMessage>> {
        Err(StorageError("disk gone".into()))
    }
    fn find_cid(
        &mut self,
        _: &str,
        _: &str,
        _: u64,
        _: u64,
    ) -> StorageResult<Option<StoredMessage>> {
        Err(StorageError("disk gone".into()))
    }
    fn prune_through(&mut self, s: u64) -> StorageResult<()> {
        self.0.prune_through(s)
    }
    fn save_bucket(&mut self, a: &str, b: &chat_handler::Bucket) -> StorageResult<()> {
        self.0.save_bucket(a, b)
    }
    fn load_bucket(&mut self, addr: &str) -> StorageResult<Option<chat_handler::Bucket>> {
        self.0.load_bucket(addr)
    }
    fn prune_buckets(&mut self, b: u64) -> StorageResult<()> {
        self.0.prune_buckets(b)
    }
    fn delete_message(&mut self, seq: u64, at: u64) -> StorageResult<bool> {
        self.0.delete_message(seq, at)
    }
    fn deleted_since(&mut self, seq: u64, n: usize) -> StorageResult<Vec<u64>> {
        self.0.deleted_since(seq, n)
    }
    fn edit_message(&mut self, seq: u64, text: &str, at_ms: u64, at: u64) -> StorageResult<bool> {
        self.0.edit_message(seq, text, at_ms, at)
    }
    fn edited_since(&mut self, seq: u64, n: usize) -> StorageResult<Vec<StoredMessage>> {
        self.0.edited_since(seq, n)
    }
    fn has_reaction(&mut self, seq: u64, emoji: &str, who: &str) -> StorageResult<bool> {
        self.0.has_reaction(seq, emoji, who)
    }
    fn set_reaction(
        &mut self,
        seq: u64,
        emoji: &str,
        who: &str,
        on: bool,
        counts: Option<&str>,
        at: u64,
    ) -> StorageResult<bool> {
        self.0.set_reaction(seq, emoji, who, on, counts, at)
    }
    fn reacted_since(&mut self, seq: u64, n: usize) -> StorageResult<Vec<StoredMessage>> {
        self.0.reacted_since(seq, n)
    }
    fn restriction(&mut self, u: &str) -> StorageResult<chat_handler::Restriction> {
        self.0.restriction(u)
    }
    fn set_restriction(&mut self, u: &str, r: &chat_handler::Restriction) -> StorageResult<()> {
        self.0.set_restriction(u, r)
    }
    fn prune_restrictions(&mut self, now: u64) -> StorageResult<u64> {
        self.0.prune_restrictions(now)
    }
    fn append_audit(&mut self, e: &chat_handler::AuditEntry, keep: usize) -> StorageResult<()> {
        self.0.append_audit(e, keep)
    }
}

#[test]
fn unreadable_storage_refuses_a_cid_send_and_a_page_but_keeps_the_socket() {
    let mut r = Room::open(unlimited(), Unreadable(MemoryStorage::new()), EPOCH).unwrap();
    r.try_connect(1, peer("a"), 0).unwrap();
    r.on_text(1, V2, 0);
    let errors = |acts: &[Action]| -> Vec<String> {
        acts.iter()
            .filter_map(|a| match a {
                Action::Send { frame, .. } => Some(frame.to_string()),
                _ => None,
            })
            .collect()
    };
    let acts = r.on_text(1, r#"{"message":"x","cid":"k"}"#, 1);
    assert_eq!(
        errors(&acts),
        vec![format!(
            r#"{{"error":{},"code":"not_stored"}}"#,
            json!(ErrorKind::NotStored.sentence())
        )]
    );
    assert_eq!(r.last_seq(), 0, "not stored: it might be a duplicate");
    // Without a cid nothing needs looking up.
    r.on_text(1, r#"{"message":"x"}"#, 2);
    assert_eq!(r.last_seq(), 1);
    let acts = r.on_text(1, r#"{"history":{}}"#, 3);
    assert_eq!(
        errors(&acts),
        vec![format!(
            r#"{{"error":{},"code":"history_unavailable"}}"#,
            json!(ErrorKind::HistoryUnavailable.sentence())
        )]
    );
    assert!(r.session(1).is_some());
}

#[test]
fn history_pages_walk_back_to_the_oldest_retained_message() {
    let mut r = room(Config {
        retention: 25,
        backlog: 5,
        ..unlimited()
    });
    join(&mut r, 1, "a", V2, 0);
    for i in 0..40 {
        say(&mut r, 1, &format!("m{i}"), 10 + i);
    }
    // Retained: 16..=40.
    let mut walked: Vec<Value> = Vec::new();
    let mut before: Option<u64> = None;
    for _ in 0..10 {
        let request = match before {
            None => json!({"limit": 10}),
            Some(b) => json!({"before": b, "limit": 10}),
        };
        let got = ask(&mut r, 1, request, 100);
        assert_eq!(got.len(), 1, "one answer: {got:?}");
        let page = &got[0];
        assert_eq!(page["before"], before.map_or(41, |b| b), "the bound used");
        let msgs = page["history"].as_array().unwrap().clone();
        let more = page["more"].as_bool().unwrap();
        before = msgs.first().and_then(|m| m["seq"].as_u64());
        walked.splice(0..0, msgs);
        if !more {
            break;
        }
    }
    let got: Vec<u64> = walked.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(got, (16..=40).collect::<Vec<_>>());
    assert_eq!(
        walked[0],
        json!({"name": "ana", "message": "m15", "timestamp": 25, "seq": 16})
    );
}

#[test]
fn history_edges_before_and_limit() {
    let mut r = room(unlimited());
    join(&mut r, 1, "a", V2, 0);
    let empty = ask(&mut r, 1, json!({}), 1);
    assert_eq!(
        empty,
        vec![json!({"history": [], "before": 1, "more": false})]
    );
    for i in 0..5 {
        say(&mut r, 1, &format!("m{i}"), 10 + i);
    }
    assert_eq!(
        seqs(&ask(&mut r, 1, json!({"before": 0}), 20)[0]),
        Vec::<u64>::new()
    );
    assert_eq!(
        seqs(&ask(&mut r, 1, json!({"before": 1}), 20)[0]),
        Vec::<u64>::new()
    );
    let page = &ask(&mut r, 1, json!({"before": 3}), 20)[0];
    assert_eq!((seqs(page), &page["more"]), (vec![1, 2], &json!(false)));
    let page = &ask(&mut r, 1, json!({"before": 1_000_000, "limit": 2}), 20)[0];
    assert_eq!(seqs(page), vec![4, 5]);
    assert_eq!(page["before"], 1_000_000);
    assert_eq!(page["more"], true);
    let max = r.config().history_page_max;
    let over = ask(&mut r, 1, json!({"limit": max + 1}), 20);
    let limit_error = json!({"error": ErrorKind::HistoryLimit.sentence(), "code": "history_limit"});
    assert_eq!(over, vec![limit_error.clone()]);
    let zero = ask(&mut r, 1, json!({"limit": 0}), 20);
    assert_eq!(zero, vec![limit_error]);
    assert_eq!(seqs(&ask(&mut r, 1, json!({"limit": max}), 20)[0]).len(), 5);
}

#[test]
fn a_v1_session_gets_an_error_instead_of_a_page() {
    let mut r = room(unlimited());
    join(&mut r, 1, "a", r#"{"name":"old"}"#, 0);
    say(&mut r, 1, "m", 1);
    let got = ask(&mut r, 1, json!({"limit": 5}), 2);
    assert_eq!(
        got,
        vec![json!({"error": ErrorKind::HistoryNeedsV2.sentence()})]
    );
}

#[test]
fn a_history_request_costs_one_token() {
    let mut r = room(Config {
        rate_burst: 2,
        rate_per_sec: 0.001,
        ..Config::default()
    });
    join(&mut r, 1, "a", V2, 0);
    assert!(ask(&mut r, 1, json!({}), 1)[0].get("history").is_some());
    assert!(ask(&mut r, 1, json!({}), 1)[0].get("history").is_some());
    assert_eq!(
        ask(&mut r, 1, json!({}), 1),
        vec![json!({"error": ErrorKind::RateLimited.sentence(), "code": "rate_limited"})]
    );
}

#[test]
fn a_history_answer_fits_the_largest_server_frame() {
    let cfg = Config {
        history_page_max: 3,
        max_message_chars: 10,
        max_name_chars: 4,
        ..unlimited()
    };
    let mut r = room(cfg.clone());
    let name = "\"\"\"\"";
    join(
        &mut r,
        1,
        "a",
        &json!({"name": name, "v": 2}).to_string(),
        0,
    );
    for i in 0..3 {
        send(
            &mut r,
            1,
            &"\u{7}".repeat(10),
            &format!("{}{i}", "c".repeat(63)),
            1 + i,
        );
    }
    let acts = r.on_text(1, r#"{"history":{}}"#, 9);
    let Some(Action::Send { frame, .. }) = acts.last() else {
        panic!("{acts:?}");
    };
    assert!(frame.contains("\"more\":false"));
    assert!(
        frame.len() <= cfg.max_server_frame_bytes(),
        "{} > {}",
        frame.len(),
        cfg.max_server_frame_bytes()
    );
}
