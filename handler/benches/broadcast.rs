//! Cost of handling one chat message in a room of 1000 joined sessions. The handler
//! encodes the frame once and returns one Broadcast action, so this must not grow with
//! the number of recipients; `room_of_10` is the comparison point. `batched_room_of`
//! is the same with every member batched (v2, `"batch": true`): the message is held and
//! each window's flush encodes one batch for all of them, so its cost per message is
//! the flush's (one recipient list per window) shared by the messages of the window.
//! `fill/v1/1000` is a room filling up with 1000 v1 clients, each hello answered with
//! one `joined` per member already there: quadratic in frames, by protocol.

use chat_handler::{Config, MemoryStorage, Peer, Room};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};

fn room_with(members: u64, hello: &str) -> Room<MemoryStorage> {
    let config = Config {
        rate_burst: u32::MAX,
        rate_per_sec: 1e12,
        ..Config::default()
    };
    let mut room = Room::open(config, MemoryStorage::new(), "bench").expect("memory storage");
    for c in 0..members {
        room.try_connect(
            c,
            Peer {
                addr: format!("10.0.{}.{}", c / 256, c % 256),
            },
            0,
        )
        .expect("the room has space");
        room.on_text(c, hello, 0);
    }
    room
}

fn one_message(c: &mut Criterion) {
    let mut group = c.benchmark_group("one_chat_message");
    let frame = format!(r#"{{"message":"{}"}}"#, "x".repeat(128));
    for members in [10u64, 1000] {
        let mut room = room_with(members, r#"{"name":"member"}"#);
        let mut now = 1u64;
        group.bench_with_input(BenchmarkId::new("room_of", members), &members, |b, _| {
            b.iter(|| {
                now += 1;
                black_box(room.on_text(black_box(3), black_box(&frame), now))
            })
        });
    }
    // One message per ms: with 1000 batch members the window is 200 ms (the defaults),
    // so each flush carries 200 messages.
    for members in [10u64, 1000] {
        let mut room = room_with(members, r#"{"name":"member","v":2,"batch":true}"#);
        let mut now = 1u64;
        group.bench_with_input(
            BenchmarkId::new("batched_room_of", members),
            &members,
            |b, _| {
                b.iter(|| {
                    now += 1;
                    black_box(room.on_text(black_box(3), black_box(&frame), now))
                })
            },
        );
    }
    group.finish();
}

fn fill(c: &mut Criterion) {
    let mut group = c.benchmark_group("fill");
    group.sample_size(10);
    group.bench_function("v1/1000", |b| {
        b.iter(|| black_box(room_with(1000, r#"{"name":"member"}"#)))
    });
    group.finish();
}

criterion_group!(benches, one_message, fill);
criterion_main!(benches);
