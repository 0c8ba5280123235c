//! The v2 roster in pages (`roster_inline_max`, `{"members": …}`): what a joiner of a
//! big room gets, paging to the end, duplicate names and quits while paging, a room
//! rebuilt mid-paging, and the errors. The property test at the end checks the promise
//! of docs/protocol.md: a client counting names (+1 per page entry, `joined` and
//! `unlisted`, -1 per `quit`) holds the room's exact roster once its pages are done.

mod common;

use chat_handler::{Action, Config, ConnId, ErrorKind, MemoryStorage, Room};
use common::{frames_for, join, rebuilt, room, unlimited};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;

fn config(inline_max: usize) -> Config {
    Config {
        roster_inline_max: inline_max,
        join_burst: 1_000_000,
        join_per_sec: 1_000_000.0,
        ..unlimited()
    }
}

/// Each connection from its own address, so no per-address limit is reached.
fn addr(conn: ConnId) -> String {
    format!("10.{}.{}.{}", conn >> 16 & 255, conn >> 8 & 255, conn & 255)
}

fn hello(room: &mut Room<MemoryStorage>, conn: ConnId, name: &str, v2: bool) -> Vec<Value> {
    let hello = if v2 {
        json!({"name": name, "v": 2})
    } else {
        json!({ "name": name })
    };
    let actions = join(room, conn, &addr(conn), &hello.to_string(), 1_000);
    frames_for(&actions, conn)
}

fn ask(room: &mut Room<MemoryStorage>, conn: ConnId, request: Value) -> Vec<Action> {
    room.on_text(conn, &json!({ "members": request }).to_string(), 2_000)
}

fn names(entries: &Value) -> Vec<String> {
    entries
        .as_array()
        .expect("entries are an array")
        .iter()
        .map(|e| e["name"].as_str().expect("a name").to_owned())
        .collect()
}

/// Pages `conn` to the end from `next`; the names listed and the last page's count.
fn page_through(
    room: &mut Room<MemoryStorage>,
    conn: ConnId,
    mut next: Value,
    limit: usize,
) -> (Vec<String>, u64) {
    let mut listed = Vec::new();
    for _ in 0..1000 {
        let frames = frames_for(
            &ask(room, conn, json!({"after": next, "limit": limit})),
            conn,
        );
        assert_eq!(frames.len(), 1, "{frames:?}");
        let page = &frames[0]["members"];
        let entries = names(&page["page"]);
        assert!(entries.len() <= limit);
        listed.extend(entries);
        next = page["next"].clone();
        if next.is_null() {
            return (listed, page["count"].as_u64().unwrap());
        }
    }
    panic!("paging did not end");
}

#[test]
fn a_small_room_sends_the_roster_as_before() {
    let mut r = room(config(3));
    for (conn, name) in [(1, "a"), (2, "b"), (3, "c")] {
        hello(&mut r, conn, name, true);
    }
    let frames = hello(&mut r, 4, "d", true);
    assert_eq!(
        frames[0],
        json!({"roster": [{"name": "a"}, {"name": "b"}, {"name": "c"}]})
    );
}

#[test]
fn a_big_room_sends_the_first_page_and_pages_list_everyone_once() {
    let mut r = room(config(3));
    let members = ["a", "b", "a", "c", "a", "d", "e"];
    for (i, name) in members.iter().enumerate() {
        // Mixed versions: pages list v1 members too.
        hello(&mut r, i as u64 + 1, name, i % 2 == 0);
    }
    let frames = hello(&mut r, 100, "me", true);
    assert_eq!(
        frames[0],
        json!({"roster": [{"name": "a"}, {"name": "b"}, {"name": "a"}], "count": 7, "next": "3"})
    );
    let (rest, count) = page_through(&mut r, 100, frames[0]["next"].clone(), 2);
    assert_eq!(rest, ["c", "a", "d", "e"]);
    assert_eq!(count, 7);
    // Done: no more `unlisted` for this session, whoever quits.
    let quit = r.disconnect(5, 3_000);
    assert_eq!(frames_for(&quit, 100), vec![json!({"quit": "a"})]);
    // A v1 joiner still gets one `joined` per member, the whole room.
    let v1 = hello(&mut r, 200, "old", false);
    let joined: Vec<&str> = v1.iter().filter_map(|f| f["joined"].as_str()).collect();
    assert_eq!(joined, ["a", "b", "a", "c", "d", "e", "me", "old"]);
    assert!(v1.iter().all(|f| f.get("roster").is_none()));
}

#[test]
fn a_member_page_never_lists_later_joiners_or_the_requester() {
    let mut r = room(config(2));
    for conn in 1..=3 {
        hello(&mut r, conn, &format!("m{conn}"), true);
    }
    let first = hello(&mut r, 10, "me", true);
    assert_eq!(first[0]["count"], 3);
    hello(&mut r, 11, "late", true);
    let (rest, count) = page_through(&mut r, 10, first[0]["next"].clone(), 2);
    assert_eq!(rest, ["m3"]);
    // The count is every other member, later joiners included.
    assert_eq!(count, 4);
    // Asking from the start again lists the same members, still not "late".
    let (all, _) = page_through(&mut r, 10, Value::Null, 2);
    assert_eq!(all, ["m1", "m2", "m3"]);
    // A session that got its roster whole may page too (its own earlier members).
    let (early, count) = page_through(&mut r, 2, Value::Null, 2);
    assert_eq!((early, count), (vec!["m1".to_owned()], 4));
}

#[test]
fn a_quit_not_yet_listed_is_followed_by_unlisted() {
    let mut r = room(config(2));
    for (conn, name) in [(1, "al"), (2, "bo"), (3, "al"), (4, "cy")] {
        hello(&mut r, conn, name, true);
    }
    let first = hello(&mut r, 10, "me", true);
    assert_eq!(names(&first[0]["roster"]), ["al", "bo"]);
    // The second "al", not listed yet, quits: its quit, then the correction.
    let quit = r.disconnect(3, 3_000);
    assert_eq!(
        frames_for(&quit, 10),
        vec![
            json!({"quit": "al"}),
            json!({"members": {"unlisted": "al"}})
        ]
    );
    // So does "cy", which joined a room of 3 and is paging too; a member that got its
    // roster whole gets the quit alone.
    assert_eq!(frames_for(&quit, 4), frames_for(&quit, 10));
    assert_eq!(frames_for(&quit, 1), vec![json!({"quit": "al"})]);
    // A listed member's quit needs no correction.
    let quit = r.disconnect(2, 3_000);
    assert_eq!(frames_for(&quit, 10), vec![json!({"quit": "bo"})]);
    let (rest, count) = page_through(&mut r, 10, first[0]["next"].clone(), 2);
    assert_eq!((rest, count), (vec!["cy".to_owned()], 2));
    // Done paging: quits of earlier members come alone.
    let quit = r.disconnect(4, 3_000);
    assert_eq!(frames_for(&quit, 10), vec![json!({"quit": "cy"})]);
}

#[test]
fn a_batch_session_gets_unlisted_right_after_the_quit() {
    let mut r = room(Config {
        batch_window_ms: 0,
        ..config(1)
    });
    for (conn, name) in [(1, "al"), (2, "al"), (3, "bo")] {
        hello(&mut r, conn, name, true);
    }
    let hello = json!({"name": "me", "v": 2, "batch": true}).to_string();
    let first = frames_for(&join(&mut r, 10, &addr(10), &hello, 1_000), 10);
    assert_eq!(
        first[0],
        json!({"roster": [{"name": "al"}], "count": 3, "next": "1"})
    );
    let quit = r.disconnect(2, 3_000);
    assert_eq!(
        frames_for(&quit, 10),
        vec![
            json!({"quit": "al"}),
            json!({"members": {"unlisted": "al"}})
        ]
    );
}

#[test]
fn paging_goes_on_in_a_rebuilt_room() {
    let mut r = room(config(2));
    for conn in 1..=6 {
        hello(&mut r, conn, &format!("m{conn}"), true);
    }
    let first = hello(&mut r, 10, "me", true);
    assert_eq!(names(&first[0]["roster"]), ["m1", "m2"]);
    let frames = frames_for(&ask(&mut r, 10, json!({"after": first[0]["next"]})), 10);
    assert_eq!(names(&frames[0]["members"]["page"]), ["m3", "m4"]);
    let next = frames[0]["members"]["next"].clone();
    // Hibernation: the room is rebuilt from the sessions' saved state.
    let mut r = rebuilt(&r);
    // Its unfinished paging survived: m6's quit is corrected, m2's is not.
    let quit = r.disconnect(6, 3_000);
    assert_eq!(
        frames_for(&quit, 10)[1],
        json!({"members": {"unlisted": "m6"}})
    );
    let quit = r.disconnect(2, 3_000);
    assert_eq!(frames_for(&quit, 10).len(), 1);
    // A new joiner ranks after every member present, so never inside a page range.
    hello(&mut r, 20, "new", true);
    let (rest, count) = page_through(&mut r, 10, next, 2);
    assert_eq!((rest, count), (vec!["m5".to_owned()], 5));
}

#[test]
fn saved_sessions_without_a_rank_or_with_a_taken_one_are_still_listed() {
    let mut r = room(config(1));
    for conn in 1..=4 {
        hello(&mut r, conn, &format!("m{conn}"), true);
    }
    // As saved before ranks existed (no rank), or tampered with (a rank taken twice).
    let sessions: Vec<chat_handler::Session> = r
        .sessions()
        .map(|s| {
            let mut v = serde_json::to_value(s).unwrap();
            match s.id() {
                2 => drop(v.as_object_mut().unwrap().remove("rank")),
                3 => v["rank"] = json!(1),
                _ => {}
            }
            serde_json::from_value(v).unwrap()
        })
        .collect();
    let mut r = Room::restore(r.config().clone(), r.storage().clone(), "e", sessions).unwrap();
    let first = hello(&mut r, 10, "me", true);
    let (rest, count) = page_through(&mut r, 10, first[0]["next"].clone(), 1);
    let mut all = names(&first[0]["roster"]);
    all.extend(rest);
    all.sort();
    assert_eq!(
        (all, count),
        (
            vec!["m1", "m2", "m3", "m4"]
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>(),
            4
        )
    );
}

#[test]
fn bad_member_requests_get_errors() {
    let mut r = room(config(2));
    hello(&mut r, 1, "v1", false);
    hello(&mut r, 2, "v2", true);
    let error = |k: ErrorKind| vec![json!({ "error": k.sentence(), "code": k.label() })];
    // The v1 session's: no code.
    assert_eq!(
        frames_for(&ask(&mut r, 1, json!({})), 1),
        vec![json!({ "error": ErrorKind::MembersNeedsV2.sentence() })]
    );
    for (request, kind) in [
        (json!("x"), ErrorKind::MembersShape),
        (json!([1]), ErrorKind::MembersShape),
        (json!({"after": 3}), ErrorKind::MembersCursor),
        (json!({"after": "abc"}), ErrorKind::MembersCursor),
        (json!({"after": "-1"}), ErrorKind::MembersCursor),
        (json!({"limit": 0}), ErrorKind::MembersLimit),
        (json!({"limit": 3}), ErrorKind::MembersLimit),
        (json!({"limit": "2"}), ErrorKind::MembersLimit),
    ] {
        assert_eq!(
            frames_for(&ask(&mut r, 2, request.clone()), 2),
            error(kind),
            "{request}"
        );
    }
    // A cursor past everyone (or from another room) is an empty last page.
    assert_eq!(
        frames_for(&ask(&mut r, 2, json!({"after": "18446744073709551615"})), 2),
        vec![json!({"members": {"page": [], "count": 1, "next": null}})]
    );
}

#[test]
fn a_member_request_costs_a_rate_token() {
    let mut r = room(Config {
        roster_inline_max: 2,
        rate_burst: 2,
        rate_per_sec: 0.001,
        ..Config::default()
    });
    hello(&mut r, 1, "a", true);
    for _ in 0..2 {
        let frames = frames_for(&ask(&mut r, 1, json!({})), 1);
        assert!(frames[0].get("members").is_some(), "{frames:?}");
    }
    assert_eq!(
        frames_for(&ask(&mut r, 1, json!({})), 1),
        vec![json!({"error": ErrorKind::RateLimited.sentence(), "code": "rate_limited"})]
    );
}

/// The point of paging: a fill of `n` v2 joiners costs roster bytes linear in `n`
/// (each joiner at most `roster_inline_max` entries), where one whole roster per joiner
/// cost n²/2 entries. (With 10,000 joiners: 21,270,426 bytes, where whole rosters of
/// these names would be about 1 GB.)
#[test]
fn a_fill_costs_roster_bytes_linear_in_the_joiners() {
    const N: u64 = 1_500;
    let mut r = room(Config {
        room_capacity: N as usize,
        ..config(100)
    });
    let mut roster_bytes = 0;
    for conn in 1..=N {
        let hello = json!({"name": format!("user{conn:05}"), "v": 2}).to_string();
        let actions = join(&mut r, conn, &addr(conn), &hello, 1_000);
        let roster = actions.iter().find_map(|a| match a {
            Action::Send { to, frame } if *to == conn && frame.starts_with(r#"{"roster""#) => {
                Some(frame.len())
            }
            _ => None,
        });
        roster_bytes += roster.expect("every v2 joiner gets a roster frame");
    }
    // `{"name":"user00001"},` is 21 bytes; the envelope with count and cursor < 48.
    let per_joiner = 100 * 21 + 48;
    assert!(roster_bytes <= N as usize * per_joiner, "{roster_bytes}");
    // Whole rosters would have cost about N²/2 entries.
    assert!(
        roster_bytes * 7 < (N * N / 2) as usize * 21,
        "{roster_bytes}"
    );
}

/// One step of the property test.
#[derive(Debug, Clone)]
enum Op {
    /// A new connection joins with one of a few names (duplicates on purpose).
    Join { name: u8, v2: bool },
    /// The `n`th open connection (modulo) leaves.
    Quit(usize),
    /// The `n`th open connection asks for its next page, if it has one to ask.
    Page(usize, usize),
    /// The room is rebuilt from its sessions (a Durable Object's hibernation).
    Rebuild,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..3, any::<bool>()).prop_map(|(name, v2)| Op::Join { name, v2 }),
        2 => any::<usize>().prop_map(Op::Quit),
        3 => (any::<usize>(), 1usize..3).prop_map(|(n, l)| Op::Page(n, l)),
        1 => Just(Op::Rebuild),
    ]
}

/// What a v2 client holds: a count per name, and its next cursor while paging.
#[derive(Debug, Default)]
struct View {
    counts: BTreeMap<String, i64>,
    next: Option<Value>,
}

impl View {
    fn add(&mut self, name: &str, n: i64) {
        *self.counts.entry(name.to_owned()).or_default() += n;
    }

    fn apply(&mut self, f: &Value) {
        if let Some(roster) = f.get("roster") {
            for name in names(roster) {
                self.add(&name, 1);
            }
            self.next = f.get("next").cloned();
        } else if let Some(m) = f.get("members") {
            if let Some(name) = m.get("unlisted").and_then(Value::as_str) {
                self.add(name, 1);
            } else {
                for name in names(&m["page"]) {
                    self.add(&name, 1);
                }
                self.next = Some(m["next"].clone()).filter(|n| !n.is_null());
            }
        } else if let Some(name) = f.get("joined").and_then(Value::as_str) {
            self.add(name, 1);
        } else if let Some(name) = f.get("quit").and_then(Value::as_str) {
            self.add(name, -1);
        }
    }

    fn roster(&self) -> BTreeMap<String, i64> {
        self.counts
            .iter()
            .filter(|(_, n)| **n != 0)
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn counting_names_gives_the_exact_roster(ops in proptest::collection::vec(op(), 1..80)) {
        let mut r = room(config(2));
        let mut views: BTreeMap<ConnId, View> = BTreeMap::new();
        let mut open: Vec<ConnId> = Vec::new();
        let mut next_conn = 1;
        for op in ops {
            let actions = match op {
                Op::Join { name, v2 } => {
                    let conn = next_conn;
                    next_conn += 1;
                    let hello = if v2 {
                        json!({"name": format!("n{name}"), "v": 2})
                    } else {
                        json!({"name": format!("n{name}")})
                    };
                    open.push(conn);
                    if v2 {
                        views.insert(conn, View::default());
                    }
                    join(&mut r, conn, &addr(conn), &hello.to_string(), 1_000)
                }
                Op::Quit(n) if !open.is_empty() => {
                    let conn = open.remove(n % open.len());
                    views.remove(&conn);
                    r.disconnect(conn, 1_000)
                }
                Op::Page(n, limit) if !open.is_empty() => {
                    let conn = open[n % open.len()];
                    match views.get(&conn).and_then(|v| v.next.clone()) {
                        Some(next) => ask(&mut r, conn, json!({"after": next, "limit": limit})),
                        None => continue,
                    }
                }
                Op::Rebuild => {
                    r = rebuilt(&r);
                    continue;
                }
                _ => continue,
            };
            for (conn, view) in views.iter_mut() {
                for f in frames_for(&actions, *conn) {
                    prop_assert!(f.get("error").is_none(), "{} got {}", conn, f);
                    view.apply(&f);
                }
            }
            // Every v2 session done paging holds exactly the room's members (its own
            // `joined` included).
            for (conn, view) in &views {
                if view.next.is_some() {
                    continue;
                }
                let mut truth: BTreeMap<String, i64> = BTreeMap::new();
                for s in r.sessions() {
                    if let Some(name) = s.name() {
                        *truth.entry(name.to_owned()).or_default() += 1;
                    }
                }
                prop_assert_eq!(&view.roster(), &truth, "roster of {}", conn);
            }
        }
    }
}
