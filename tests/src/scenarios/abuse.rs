//! Abuse resistance: seats per address, join/quit churn, invisible names, room opens,
//! and private room ids kept out of the logs. Several client addresses come from
//! binding the client to other loopback addresses (127.0.0.2, …), which both backends
//! see as distinct clients (the local runner as the TCP peer, `wrangler dev` as
//! `CF-Connecting-IP`).

use super::{join, SILENCE};
use crate::client::{Client, Frame, Options};
use crate::harness::{churn, BackendKind, Ctx};
use crate::{bail, ensure, ensure_eq, http, Result};
use serde_json::json;
use std::time::Duration;

/// Connects from `ip` and joins as `name`.
async fn join_from(base: &str, room: &str, ip: &str, name: &str) -> Result<Client> {
    let mut c = Client::connect_with(base, room, name, &Options::from_address(ip)?).await?;
    c.hello(name).await?;
    Ok(c)
}

/// Default group (20 seats per address): one address opens 25 sockets into a room;
/// the 21st to 25th get an error and 1013, another address still joins, and a seat
/// freed by the first address can be taken again.
pub async fn twenty_first_socket_from_one_address_is_refused_1013(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("seats");
    let mut seated = Vec::new();
    for i in 0..20 {
        seated.push(join_from(&base, &room, "127.0.0.1", &format!("seat{i}")).await?);
    }
    // Each seat hears of the ones that joined after it.
    for (i, c) in seated.iter_mut().enumerate() {
        for j in i + 1..20 {
            c.expect_frame(Frame::Joined(format!("seat{j}"))).await?;
        }
    }
    for i in 20..25 {
        let options = Options::from_address("127.0.0.1")?;
        let mut over = Client::connect_with(&base, &room, &format!("seat{i}"), &options).await?;
        over.expect_error(
            "Too many connections from your address in this room; close one and try again.",
        )
        .await?;
        over.expect_close(1013, Some("Too many connections from your address"))
            .await?;
    }
    // Nobody heard of the refused ones.
    seated[0].expect_silence(SILENCE).await?;

    let other = join_from(&base, &room, "127.0.0.2", "other").await?;
    for (i, c) in seated.iter_mut().enumerate() {
        c.expect_frame(Frame::Joined("other".into()))
            .await
            .map_err(|e| crate::Error(format!("seat{i}: {}", e.0)))?;
    }

    // One seat freed: the address may connect once more, and only once.
    let gone = seated.remove(0);
    gone.close().await?;
    seated[0].expect_frame(Frame::Quit("seat0".into())).await?;
    let options = Options::from_address("127.0.0.1")?;
    let mut again = Client::connect_with(&base, &room, "seat again", &options).await?;
    again.expect_silence(SILENCE).await?;
    let mut over = Client::connect_with(&base, &room, "seat over", &options).await?;
    over.expect_error(
        "Too many connections from your address in this room; close one and try again.",
    )
    .await?;
    over.expect_close(1013, Some("Too many connections from your address"))
        .await?;

    again.close().await?;
    other.close().await?;
    for c in seated {
        c.close().await?;
    }
    Ok(())
}

/// Churn group (join burst 3, no refill): 500 join/quit cycles from one address put
/// at most the bucket's worth of `joined` and `quit` frames on a member; every other
/// hello gets an error and 1013 "Joining too fast".
pub async fn join_quit_churn_costs_members_at_most_the_join_burst(ctx: Ctx) -> Result<()> {
    const CYCLES: usize = 500;
    let base = ctx.base();
    let room = ctx.room("churn");
    // The member comes from another address, whose bucket the churn does not touch.
    let mut member = join_from(&base, &room, "127.0.0.2", "member").await?;
    let options = Options::from_address("127.0.0.1")?;
    let (mut accepted, mut refused) = (0, 0);
    for i in 0..CYCLES {
        let mut c = Client::connect_with(&base, &room, &format!("churn {i}"), &options).await?;
        c.send_json(&json!({"name": "churner"})).await?;
        match c.recv().await? {
            Frame::Joined(name) if name == "member" => {
                c.read_join("churner").await?;
                accepted += 1;
            }
            Frame::Error(e) => {
                ensure_eq!(
                    e,
                    "Too many joins from your address; wait a little before reconnecting.",
                    "error of refused hello {i}"
                );
                c.expect_close(1013, Some("Joining too fast")).await?;
                refused += 1;
            }
            other => bail!("cycle {i}: unexpected {other:?}"),
        }
        c.close().await?;
    }
    ensure_eq!(accepted, churn::JOIN_BURST, "hellos accepted");
    ensure_eq!(refused, CYCLES - churn::JOIN_BURST, "hellos refused");
    // Exactly the accepted joins and their quits reached the member, then nothing.
    for _ in 0..churn::JOIN_BURST {
        member.expect_frame(Frame::Joined("churner".into())).await?;
        member.expect_frame(Frame::Quit("churner".into())).await?;
    }
    member.expect_silence(SILENCE).await?;

    // Another address joins as usual.
    let third = join_from(&base, &room, "127.0.0.3", "third").await?;
    member.expect_frame(Frame::Joined("third".into())).await?;
    third.close().await?;
    member.close().await
}

/// A name made only of invisible characters is a bad hello: error, then 1008.
pub async fn invisible_names_are_refused_1008(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("invisible");
    let (mut watcher, _) = join(&base, &room, "watcher").await?;
    for name in [
        "\u{200B}",
        "\u{3164}\u{3164}",
        "\u{FEFF}",
        "\u{200E}\u{200F}",
        " \u{2060} \u{2064} ",
        "\u{115F}\u{1160}\u{FFA0}",
        "\u{FE0F}\u{E0041}",
    ] {
        let mut c = Client::connect(&base, &room, &format!("{name:?}")).await?;
        c.send_json(&json!({ "name": name })).await?;
        c.expect_error("Name must contain a visible character.")
            .await?;
        c.expect_close(1008, Some("Invalid hello")).await?;
    }
    watcher.expect_silence(SILENCE).await?;
    // Invisible characters next to visible ones are a name like any other.
    let (c, _) = join(&base, &room, "\u{200B}ana").await?;
    watcher
        .expect_frame(Frame::Joined("\u{200B}ana".into()))
        .await?;
    c.close().await?;
    watcher.close().await
}

/// Default group: a name with a check mark in it (✓ and its look-alikes), which could
/// pass for a verified user's mark, gets an error and close 1008; nobody hears of it.
/// A name with another symbol joins.
pub async fn check_marks_in_names_are_refused_1008(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("check-mark");
    let (mut watcher, _) = join(&base, &room, "watcher").await?;
    for name in [
        "Alice ✓",
        "Alice\u{2714}",
        "☑ Bob",
        "ok \u{2705}",
        "\u{1F5F8}",
        "√",
    ] {
        let mut c = Client::connect(&base, &room, &format!("{name:?}")).await?;
        c.send_json(&json!({ "name": name })).await?;
        c.expect_error("Name may not contain check marks: only the server marks verified users.")
            .await?;
        c.expect_close(1008, Some("Invalid hello")).await?;
    }
    watcher.expect_silence(SILENCE).await?;
    let (c, _) = join(&base, &room, "Alice ★").await?;
    watcher
        .expect_frame(Frame::Joined("Alice ★".into()))
        .await?;
    c.close().await?;
    watcher.close().await
}

/// Cloudflare (room opens limited by the Workers rate-limiting binding, 60 per 60 s
/// per address): an address that opens room after room is refused with 429, the
/// documented body and `Retry-After: 60`, and may still join a room that is open.
pub async fn opening_rooms_too_fast_is_refused_429(ctx: Ctx) -> Result<()> {
    const LIMIT: usize = 60;
    let base = ctx.base();
    // A room that stays open, joined from another address.
    let open_room = ctx.room("opens-open");
    let (keeper, _) = join(&base, &open_room, "keeper").await?;
    let opener = Options::from_address("127.0.0.4")?;
    // The counters are fixed windows: 2 * LIMIT + 1 attempts within a minute span at
    // most two of them, so one attempt must be refused.
    let mut opened = 0;
    let mut refusal = None;
    for i in 0..=2 * LIMIT {
        let room = ctx.room("opens");
        match Client::try_connect(&base, &room, &format!("open {i}"), &opener).await? {
            Ok(c) => {
                opened += 1;
                c.close().await?;
            }
            Err(r) => {
                refusal = Some(r);
                break;
            }
        }
    }
    let Some(refusal) = refusal else {
        bail!("{opened} rooms opened from one address, none refused");
    };
    ensure!(opened >= 1, "the first open was refused");
    ensure_eq!(refusal.status, 429, "status of a refused open");
    ensure_eq!(
        refusal.retry_after.as_deref(),
        Some("60"),
        "Retry-After of a refused open"
    );
    // The whole answer, body included, by a plain HTTP client (the WebSocket client
    // does not wait for the body of a refusal). On Cloudflare the counters are fixed
    // windows, so the refusal above may have been the last of its window, and the next
    // attempts then open rooms again (seen once: 101 here on a slow run): as above,
    // 2 * LIMIT + 1 attempts span at most two windows, so one is refused.
    let mut again = None;
    for _ in 0..=2 * LIMIT {
        let answer = http::request_from(
            opener.bind,
            &base,
            "GET",
            &format!("/api/room/{}/websocket", ctx.room("opens")),
            http::UPGRADE_HEADERS,
        )
        .await?;
        if answer.status != 101 {
            again = Some(answer);
            break;
        }
    }
    let Some(again) = again else {
        bail!(
            "no refusal in {} more opens from one address",
            2 * LIMIT + 1
        );
    };
    ensure_eq!(again.status, 429, "status of another refused open");
    ensure_eq!(
        again.body,
        "Too many new rooms from your address; try again later.",
        "body of a refused open"
    );
    ensure_eq!(
        again
            .headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("60"),
        "Retry-After of another refused open"
    );
    // Joining a room that is open is no open.
    let c = join_from(&base, &open_room, "127.0.0.4", "joiner").await?;
    c.close().await?;
    keeper.close().await
}

/// A private room's id is its secret: after it is created, joined, talked in and
/// left, the backend's own log lines do not contain it. (`wrangler dev` also logs
/// each request with its URL, as an access log would; those lines are the platform's
/// and are left out.) On Cloudflare the room's object logs its tag instead.
pub async fn private_room_ids_stay_out_of_the_logs(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let logs = ctx.instance().logs().clone();
    let mark = logs.mark();
    let id = super::create_private_room(&base).await?;
    let (mut a, _) = join(&base, &id, "alice").await?;
    a.say("a secret room").await?;
    a.recv_message().await?;
    a.close().await?;
    if ctx.backend() == BackendKind::Wrangler {
        logs.wait_for(
            mark,
            "edge-chat: room constructed room=private:",
            Duration::from_secs(10),
        )
        .await?;
    }
    // Lines that arrive a little late are still checked.
    tokio::time::sleep(SILENCE).await;
    let leaks =
        logs.count_since_matching(0, |line| line.contains(&id) && !line.contains("[wrangler:"));
    ensure_eq!(leaks, 0, "log lines holding the private room id {id}");
    Ok(())
}
