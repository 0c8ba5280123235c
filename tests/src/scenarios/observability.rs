//! What the backends report about themselves: the same events on both (closes,
//! rejections, resume outcomes, restores), through the local runner's `GET /metrics`
//! and the Durable Object's JSON log lines; and the runner's gauges and figures.

use super::{join, join_from, OTHER_ADDRESS};
use crate::client::{Client, Options};
use crate::harness::{Ctx, InstanceSpec};
use crate::http;
use crate::observed::{EventCounts, MetricsPage};
use crate::{bail, ensure, ensure_eq, Result};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

/// Own instance (so every count is this scenario's), both backends: each rejection, each
/// close the server orders and each resume outcome is counted once, under the same
/// labels on both (on the runner in `/metrics`, on the Worker in log lines).
pub async fn closes_rejections_and_resumes_are_counted(ctx: Ctx) -> Result<()> {
    let instance = ctx.start_own("counted", InstanceSpec::default()).await?;
    let base = instance.base_url();
    let room = ctx.room("counted");
    let before = EventCounts::of(&instance).await?;

    let (mut alice, ja) = join(&base, &room, "alice").await?;
    alice.say("   ").await?;
    alice.expect_error("Message is empty.").await?;
    alice.send_text("not json").await?;
    alice.recv_error().await?;
    alice.send_binary(vec![1, 2, 3]).await?;
    alice.recv_error().await?;
    alice.say("one").await?;
    alice.recv_message().await?;
    alice.say("two").await?;
    alice.recv_message().await?;

    let mut bad = Client::connect(&base, &room, "bad hello").await?;
    bad.send_text("[]").await?;
    bad.recv_error().await?;
    bad.expect_close(1008, Some("Invalid hello")).await?;

    let mut bob = Client::connect(&base, &room, "bob").await?;
    let resume = json!({"name": "bob", "resume": {"epoch": ja.ready.epoch, "seq": 1}});
    let jb = bob.hello_with(&resume, "bob").await?;
    ensure!(jb.ready.recovered, "bob's resume must recover");
    let mut carol = Client::connect(&base, &room, "carol").await?;
    let stale = json!({"name": "carol", "resume": {"epoch": "another-epoch", "seq": 1}});
    let jc = carol.hello_with(&stale, "carol").await?;
    ensure!(
        !jc.ready.recovered,
        "a resume from another epoch cannot recover"
    );

    let expected: BTreeMap<String, u64> = [
        ("rejection message_empty", 1),
        ("rejection not_json", 1),
        ("rejection binary", 1),
        ("rejection hello_not_object", 1),
        ("close 1008 bad_hello", 1),
        ("resume true", 1),
        ("resume false", 1),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_owned(), n))
    .collect();
    // A restore would only mean the platform evicted the room meanwhile.
    EventCounts::wait_for(&instance, &before, &expected, |k| k == "restore").await?;
    for c in [alice, bob, carol] {
        c.close().await?;
    }
    Ok(())
}

/// Own instance (capacity 3, 2 seats per address), both backends: a connection refused
/// at connect, before any hello, is a rejection like any other error frame: counted
/// under `room_full` and `too_many_seats` (on the runner in
/// `edge_chat_rejections_total`, on the Worker in `rejection` log lines), next to its
/// close.
pub async fn refusals_at_connect_are_counted(ctx: Ctx) -> Result<()> {
    let spec = InstanceSpec::with(&[("room_capacity", "3"), ("seats_per_address", "2")]);
    let instance = ctx.start_own("refused", spec).await?;
    let base = instance.base_url();
    let room = ctx.room("refused");
    let before = EventCounts::of(&instance).await?;

    let (a, _) = join(&base, &room, "alice").await?;
    let (b, _) = join(&base, &room, "bob").await?;
    // A third seat from 127.0.0.1: refused at connect.
    let mut seat = Client::connect(&base, &room, "third seat").await?;
    seat.expect_error(
        "Too many connections from your address in this room; close one and try again.",
    )
    .await?;
    seat.expect_close(1013, Some("Too many connections from your address"))
        .await?;
    // The last place, from the other address; then the room is full for anyone.
    let (c, _) = join_from(&base, &room, "carol", OTHER_ADDRESS).await?;
    let options = Options {
        local_ip: Some(OTHER_ADDRESS),
        ..Options::default()
    };
    let mut over = Client::connect_with(&base, &room, "one too many", &options).await?;
    over.expect_error("Room is full; try again later.").await?;
    over.expect_close(1013, Some("Room is full")).await?;

    let expected: BTreeMap<String, u64> = [
        ("rejection too_many_seats", 1),
        ("close 1013 too_many_seats", 1),
        ("rejection room_full", 1),
        ("close 1013 room_full", 1),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_owned(), n))
    .collect();
    EventCounts::wait_for(&instance, &before, &expected, |k| k == "restore").await?;
    for c in [a, b, c] {
        c.close().await?;
    }
    Ok(())
}

/// Default group, local runner: without `--metrics-bind`, `GET /metrics` is on the
/// public listener in the Prometheus text format; it is read-only.
pub async fn metrics_are_served_on_the_public_listener(ctx: Ctx) -> Result<()> {
    let page = MetricsPage::scrape(&ctx.base()).await?;
    page.value("edge_chat_connections")?;
    page.value(r#"edge_chat_closes_total{code="1013",reason="slow_consumer"}"#)?;
    let resp = http::request(&ctx.base(), "POST", "/metrics", &[]).await?;
    ensure_eq!(resp.status, 405, "POST /metrics");
    let allow = resp.headers.get("allow").and_then(|v| v.to_str().ok());
    ensure_eq!(allow, Some("GET, HEAD"), "Allow of POST /metrics");
    Ok(())
}

/// Own instance with `--metrics-bind`, local runner: `/metrics` is served there only;
/// the gauges follow connections and rooms, messages in and delivered follow the chat
/// (unnamed sockets receive nothing and count for nothing), every stored message is
/// timed, and when everyone has gone the connections and tasks are back where they were.
pub async fn metrics_follow_connections_rooms_and_messages(ctx: Ctx) -> Result<()> {
    let spec = InstanceSpec {
        metrics_bind: true,
        ..InstanceSpec::default()
    };
    let instance = ctx.start_own("metrics", spec).await?;
    let base = instance.base_url();
    let metrics = instance.metrics_base();
    ensure!(metrics != base, "--metrics-bind must get its own port");
    let public = http::request(&base, "GET", "/metrics", &[]).await?;
    ensure_eq!(
        (public.status, public.body.as_str()),
        (404, "Not found."),
        "GET /metrics on the public listener with --metrics-bind"
    );
    let other = http::request(&metrics, "GET", "/healthz", &[]).await?;
    ensure_eq!(
        other.status,
        404,
        "the metrics listener serves /metrics only"
    );

    let start = steady(&metrics).await?;
    ensure_eq!(
        start.value("edge_chat_connections")?,
        0.0,
        "connections at start"
    );
    ensure_eq!(start.value("edge_chat_rooms")?, 0.0, "rooms at start");
    let tasks = start.value("edge_chat_runtime_alive_tasks")?;

    let (room_a, room_b) = (ctx.room("metrics-a"), ctx.room("metrics-b"));
    let (mut a, _) = join(&base, &room_a, "alice").await?;
    let (b, _) = join(&base, &room_a, "bob").await?;
    let (c, _) = join(&base, &room_a, "carol").await?;
    let unnamed_a = Client::connect(&base, &room_a, "unnamed a").await?;
    let unnamed_b = Client::connect(&base, &room_b, "unnamed b").await?;
    for text in ["one", "two"] {
        a.say(text).await?;
        a.recv_message_past_presence().await?;
    }
    let during = MetricsPage::scrape(&metrics).await?;
    ensure_eq!(during.value("edge_chat_connections")?, 5.0, "connections");
    ensure_eq!(during.value("edge_chat_rooms")?, 2.0, "rooms");
    ensure_eq!(during.value("edge_chat_messages_in_total")?, 2.0, "in");
    ensure_eq!(
        during.value("edge_chat_messages_delivered_total")?,
        6.0,
        "delivered: 2 messages to 3 members"
    );
    ensure_eq!(
        during.value(r#"edge_chat_joins_total{outcome="fresh"}"#)?,
        3.0,
        "fresh joins"
    );
    ensure_eq!(
        during.value("edge_chat_storage_append_seconds_count")?,
        2.0,
        "timed appends"
    );
    ensure_eq!(
        during.value(r#"edge_chat_storage_append_seconds_bucket{le="+Inf"}"#)?,
        2.0,
        "appends in the histogram"
    );
    let appending = during.value("edge_chat_storage_append_seconds_sum")?;
    if appending <= 0.0 {
        bail!("appends took {appending} s in all");
    }
    let busy = during.value("edge_chat_runtime_alive_tasks")?;
    if busy < tasks + 10.0 {
        bail!("{busy} tasks with 5 connections, {tasks} with none: not two per connection");
    }

    for c in [a, b, c, unnamed_a, unnamed_b] {
        c.close().await?;
    }
    // An empty room's actor retires at once (an empty room costs nothing once its last
    // socket is gone), so the rooms and their tasks go too.
    let end = back_to(&metrics, 0.0, 0.0, tasks, Duration::from_secs(5)).await?;
    ensure_eq!(
        end.value(r#"edge_chat_closes_total{code="1001",reason="going_away"}"#)?,
        0.0,
        "clients that close are not closes by the server"
    );
    Ok(())
}

/// A scrape once the task count has settled (an HTTP connection of an earlier request
/// may still be ending): two scrapes in a row agree, within a bounded number of tries.
pub async fn steady(metrics_base: &str) -> Result<MetricsPage> {
    let mut last = MetricsPage::scrape(metrics_base).await?;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let page = MetricsPage::scrape(metrics_base).await?;
        let tasks = "edge_chat_runtime_alive_tasks";
        if page.value(tasks)? == last.value(tasks)? {
            return Ok(page);
        }
        last = page;
    }
    Ok(last)
}

/// Waits (at most `within`) until the gauges read `connections` and `rooms` and the
/// task count is at most `tasks`; returns that scrape.
pub async fn back_to(
    metrics_base: &str,
    connections: f64,
    rooms: f64,
    tasks: f64,
    within: Duration,
) -> Result<MetricsPage> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let page = MetricsPage::scrape(metrics_base).await?;
        let now = (
            page.value("edge_chat_connections")?,
            page.value("edge_chat_rooms")?,
            page.value("edge_chat_runtime_alive_tasks")?,
        );
        if now.0 == connections && now.1 == rooms && now.2 <= tasks {
            return Ok(page);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "not back within {within:?}: connections {} (want {connections}), rooms {} \
                 (want {rooms}), tasks {} (want at most {tasks})",
                now.0,
                now.1,
                now.2
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
