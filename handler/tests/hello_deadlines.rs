//! The room's hello deadlines across connects, hellos, closes and timeouts: the room
//! keeps them in order rather than walking its sessions (see
//! `handler/src/room/hello_deadlines.rs`), and must still give the earliest one that holds.

mod common;

use chat_handler::{Close, Config};
use common::*;

fn timeouts_of_5s() -> Config {
    Config {
        hello_timeout_ms: 5000,
        ..Config::default()
    }
}

#[test]
fn the_next_deadline_follows_connects_hellos_and_closes() {
    let mut r = room(timeouts_of_5s());
    assert_eq!(r.next_deadline(), None);
    r.try_connect(1, peer("a"), 2000).unwrap();
    r.try_connect(2, peer("b"), 1000).unwrap();
    r.try_connect(3, peer("c"), 3000).unwrap();
    // Opened earliest, whatever the connection order.
    assert_eq!(r.next_deadline(), Some(6000));
    // 2 says hello: 1 is next.
    r.on_text(2, r#"{"name":"bob"}"#, 2500);
    assert_eq!(r.next_deadline(), Some(7000));
    // 1 goes away without a hello: 3 is next.
    r.disconnect(1, 2600);
    assert_eq!(r.next_deadline(), Some(8000));
    // A bad hello closes 3: nothing is left to time.
    let acts = r.on_text(3, "not json", 2700);
    assert_eq!(close_of(&acts, 3), Some(Close::BadHello));
    assert_eq!(r.next_deadline(), None);
    assert!(r.on_tick(1_000_000).is_empty());
    assert_eq!(r.members().count(), 1);
}

#[test]
fn a_reused_connection_id_counts_from_its_new_opening() {
    let mut r = room(timeouts_of_5s());
    r.try_connect(7, peer("a"), 1000).unwrap();
    r.disconnect(7, 1500);
    // The backend may give a later connection the same id (unique while open only).
    r.try_connect(7, peer("a"), 4000).unwrap();
    assert_eq!(r.next_deadline(), Some(9000));
    assert!(
        r.on_tick(6000).is_empty(),
        "not at the old connection's deadline"
    );
    assert_eq!(close_of(&r.on_tick(9000), 7), Some(Close::HelloTimeout));
    assert_eq!(r.next_deadline(), None);
}

#[test]
fn every_late_connection_is_closed_in_one_tick_and_the_rest_keep_their_deadline() {
    let mut r = room(timeouts_of_5s());
    for conn in 1..=50u64 {
        r.try_connect(conn, peer(&format!("10.0.0.{conn}")), 1000 + conn * 10)
            .unwrap();
    }
    // Every other one says hello.
    for conn in (2..=50u64).step_by(2) {
        r.on_text(conn, &format!(r#"{{"name":"n{conn}"}}"#), 1600);
    }
    // Deadlines 6010, 6030, … 6490 for the odd ones; by 6250 the first 13 are due.
    let acts = r.on_tick(6250);
    let closed: Vec<u64> = (1..=50u64)
        .filter(|c| close_of(&acts, *c) == Some(Close::HelloTimeout))
        .collect();
    assert_eq!(closed, (1..=25u64).step_by(2).collect::<Vec<_>>());
    assert_eq!(r.next_deadline(), Some(6270));
    assert_eq!(r.members().count(), 25);
}
