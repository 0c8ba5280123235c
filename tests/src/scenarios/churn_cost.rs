//! What connect-then-close churn costs a room's storage on Cloudflare: the Durable
//! Object counts its SQL statements and alarm sets and reports them every 100 connect
//! attempts as `{"event":"storage",…}` (docs/operating.md, "Observability"); and that
//! hello deadlines hold after such churn, which leaves the object's alarm pending.

use super::{join, SILENCE};
use crate::client::{Client, Options};
use crate::harness::{tight, Ctx};
use crate::{bail, ensure, Result};
use serde_json::Value;
use std::time::{Duration, Instant};

/// Connect attempts between two of the object's storage lines.
const REPORT_EVERY: u64 = 100;
/// Connect-then-close cycles: with the member's connect, 401 attempts, so lines at
/// 100, 200, 300 and 400, and three windows of 100 cycles each between them.
const CYCLES: u64 = 400;
/// The most storage operations (SQL statements plus alarm sets) 100 cycles may cost,
/// whichever 100: an alarm fired meanwhile re-armed (one set per 10 s hello timeout)
/// and a bucket prune (at most one per 40 s) fit several times over. Before the
/// object set its alarm lazily and pruned buckets lazily, 100 cycles cost 275
/// (measured): an alarm set and delete per socket, and a prune per close of an
/// address's last connection.
const MAX_OPS_PER_WINDOW: u64 = 10;

/// One `{"event":"storage",…}` line of a room.
#[derive(Debug, Clone, Copy)]
struct Report {
    connects: u64,
    alarms: u64,
    sql: u64,
    alarm_sets: u64,
}

impl Report {
    fn ops(&self) -> u64 {
        self.sql + self.alarm_sets
    }
}

/// The storage lines of `room` among `lines`, in order.
fn reports(lines: &[String], room: &str) -> Vec<Report> {
    lines
        .iter()
        .filter_map(|line| {
            let at = line.find(r#"{"event":"storage""#)?;
            let v: Value = serde_json::from_str(&line[at..]).ok()?;
            (v["room"].as_str() == Some(room)).then_some(())?;
            let n = |k: &str| v[k].as_u64();
            Some(Report {
                connects: n("connects")?,
                alarms: n("alarms")?,
                sql: n("sql")?,
                alarm_sets: n("alarm_sets")?,
            })
        })
        .collect()
}

/// Default group, `wrangler dev`: 400 connect-then-close cycles (no hello; from four
/// loopback addresses in turn, so that three closes in four are their address's last
/// connection, the member being on 127.0.0.1) into a room a member keeps open cost the room's Durable Object at most
/// [`MAX_OPS_PER_WINDOW`] storage operations per 100 cycles, in every window of 100:
/// O(1) per cycle, not growing with the cycles before.
pub async fn connect_close_churn_costs_the_object_o1_storage(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("churn-cost");
    let logs = ctx.instance().logs().clone();
    let from = logs.mark();
    let (mut member, _) = join(&base, &room, "member").await?;
    let started = Instant::now();
    for i in 0..CYCLES {
        let ip = format!("127.0.0.{}", 1 + i % 4);
        let c = Client::connect_with(&base, &room, "cycle", &Options::from_address(&ip)?).await?;
        c.close().await?;
    }
    let took = started.elapsed();
    // The line of the 400th attempt, through the log pipe.
    let last = CYCLES / REPORT_EVERY * REPORT_EVERY;
    let deadline = Instant::now() + Duration::from_secs(10);
    let seen = loop {
        let seen = reports(&logs.since(from), &room);
        if seen.iter().any(|r| r.connects >= last) {
            break seen;
        }
        if Instant::now() >= deadline {
            bail!("no storage line of {room} for {last} connects: got {seen:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let counts: Vec<u64> = seen.iter().map(|r| r.connects).collect();
    let expected: Vec<u64> = (1..=last / REPORT_EVERY)
        .map(|k| k * REPORT_EVERY)
        .collect();
    ensure!(
        counts == expected,
        "one object instance reports every {REPORT_EVERY} connects: got {counts:?} \
         (a count starting over means the object was evicted meanwhile)"
    );
    let windows: Vec<u64> = seen.windows(2).map(|w| w[1].ops() - w[0].ops()).collect();
    println!(
        "{CYCLES} connect-close cycles in {took:.1?}: storage ops (sql + alarm sets) \
         by 100 connects: first (with the room's open and the member's join) {}, then \
         {windows:?}; in all {:?}",
        seen[0].ops(),
        seen.last().map(|r| (r.sql, r.alarm_sets, r.alarms)),
    );
    for (i, ops) in windows.iter().enumerate() {
        ensure!(
            *ops <= MAX_OPS_PER_WINDOW,
            "connects {}..{}: {ops} storage operations for {REPORT_EVERY} cycles, expected \
             at most {MAX_OPS_PER_WINDOW} (reports: {seen:?})",
            (i as u64 + 1) * REPORT_EVERY,
            (i as u64 + 2) * REPORT_EVERY,
        );
    }
    member.say("still here").await?;
    member.recv_message().await?;
    member.close().await?;
    Ok(())
}

/// Tight group (hello_timeout_ms 1000), both backends: sockets that connect and leave
/// without a hello leave the Durable Object's alarm pending for their deadline (it is
/// never deleted); a silent socket opened three quarters of a deadline later is still
/// closed by its own deadline, once that alarm has fired for nothing and been set
/// again: not at the stale alarm, and not never. The member hears nothing of it.
pub async fn a_silent_socket_after_churn_is_closed_by_its_own_deadline(ctx: Ctx) -> Result<()> {
    let deadline = Duration::from_millis(tight::HELLO_TIMEOUT_MS);
    let base = ctx.base();
    let room = ctx.room("churn-deadline");
    let (mut member, _) = join(&base, &room, "member").await?;
    for _ in 0..20 {
        Client::connect(&base, &room, "cycle")
            .await?
            .close()
            .await?;
    }
    tokio::time::sleep(deadline * 3 / 4).await;
    let opened = Instant::now();
    let mut silent = Client::connect(&base, &room, "silent").await?;
    silent
        .expect_error(r#"No hello received in time: send {"name": "alice"} first."#)
        .await?;
    let waited = opened.elapsed();
    ensure!(
        waited >= deadline / 2,
        "closed for a late hello after only {waited:?}: by the churn's stale alarm?"
    );
    let latest = deadline + Duration::from_millis(tight::HELLO_CLOSE_MARGIN_MS);
    ensure!(
        waited <= latest,
        "closed for a late hello only after {waited:?} (allowed up to {latest:?})"
    );
    silent.expect_close(1008, Some("Hello timeout")).await?;
    member.expect_silence(SILENCE).await?;
    member.say("still here").await?;
    member.recv_message().await?;
    member.close().await
}
