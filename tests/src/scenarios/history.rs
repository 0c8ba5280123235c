//! History on join, and resume (Fast group: rate limit out of the way, retention and
//! resume_max both 150; and an instance of its own, restarted with other limits).

use super::{join, send_many};
use crate::client::{Client, Join, Msg};
use crate::harness::{fast, Ctx, InstanceSpec};
use crate::{ensure, ensure_eq, Result};
use serde_json::{json, Value};

/// After more than 100 messages a joiner gets exactly the last 100, in order.
pub async fn joiner_gets_the_last_100_messages(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("history");
    let (mut a, _) = join(&base, &room, "alice").await?;
    let sent = send_many(&mut a, 123, "history").await?;
    let (b, jb) = join(&base, &room, "bob").await?;
    ensure_eq!(jb.backlog.len(), 100, "backlog length");
    ensure_eq!(
        jb.backlog,
        sent[23..].to_vec(),
        "backlog is the last 100, in order"
    );
    ensure_eq!(jb.ready.seq, 123, "ready.seq");
    ensure!(!jb.ready.recovered, "no resume, not recovered");
    b.close().await?;
    a.close().await
}

async fn resume_join(base: &str, room: &str, name: &str, resume: Value) -> Result<Join> {
    let mut c = Client::connect(base, room, name).await?;
    let j = c
        .hello_with(&json!({ "name": name, "resume": resume }), name)
        .await?;
    c.close().await?;
    Ok(j)
}

fn ensure_recovered(j: &Join, expected: &[Msg], epoch: &str, what: &str) -> Result<()> {
    ensure!(j.ready.recovered, "{what}: expected recovered: true");
    ensure_eq!(j.backlog, expected.to_vec(), "{what}: backlog");
    ensure_eq!(j.ready.epoch, epoch, "{what}: epoch");
    Ok(())
}

fn ensure_not_recovered(j: &Join, last: &[Msg], epoch: &str, what: &str) -> Result<()> {
    ensure!(!j.ready.recovered, "{what}: expected recovered: false");
    ensure_eq!(j.backlog, last.to_vec(), "{what}: backlog (the last 100)");
    ensure_eq!(j.ready.epoch, epoch, "{what}: epoch");
    Ok(())
}

/// Exact resume replays exactly the gap; every other resume falls back to the last
/// 100 with recovered: false, and a malformed one is no error.
pub async fn resume_replays_the_exact_gap_or_the_last_100(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("resume");
    let (mut a, ja) = join(&base, &room, "alice").await?;
    let epoch = ja.ready.epoch.clone();
    let sent = send_many(&mut a, 10, "resume").await?;

    let j = resume_join(&base, &room, "gap", json!({"epoch": epoch, "seq": 4})).await?;
    ensure_recovered(&j, &sent[4..], &epoch, "resume from seq 4")?;
    ensure_eq!(j.ready.seq, 10, "ready.seq");
    ensure_eq!(j.roster, vec!["alice".to_string()], "roster on resume");
    let j = resume_join(
        &base,
        &room,
        "up-to-date",
        json!({"epoch": epoch, "seq": 10}),
    )
    .await?;
    ensure_recovered(&j, &[], &epoch, "resume from the latest seq")?;
    let j = resume_join(&base, &room, "from-zero", json!({"epoch": epoch, "seq": 0})).await?;
    ensure_recovered(&j, &sent, &epoch, "resume from seq 0")?;

    let refused = [
        ("stale epoch", json!({"epoch": "an-old-epoch", "seq": 4})),
        ("seq beyond the latest", json!({"epoch": epoch, "seq": 11})),
        (
            "far beyond the latest",
            json!({"epoch": epoch, "seq": u64::MAX}),
        ),
        // Malformed: ignored as if absent.
        ("resume not an object", json!("4")),
        ("resume null", Value::Null),
        ("empty resume", json!({})),
        ("missing seq", json!({"epoch": epoch})),
        ("missing epoch", json!({"seq": 4})),
        ("negative seq", json!({"epoch": epoch, "seq": -1})),
        ("fractional seq", json!({"epoch": epoch, "seq": 4.5})),
        ("seq as text", json!({"epoch": epoch, "seq": "4"})),
        ("numeric epoch", json!({"epoch": 7, "seq": 4})),
    ];
    for (what, resume) in refused {
        let j = resume_join(&base, &room, "resumer", resume).await?;
        ensure_not_recovered(&j, &sent, &epoch, what)?;
        ensure_eq!(j.ready.seq, 10, "{what}: ready.seq");
    }
    a.close().await
}

/// The limit of a resume: exactly resume_max missing messages still recover (which
/// also proves retention pruned nothing it should have kept), one more does not.
pub async fn resume_recovers_up_to_resume_max_and_no_further(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("resume-max");
    let (mut a, ja) = join(&base, &room, "alice").await?;
    let epoch = ja.ready.epoch.clone();
    let total = 200usize;
    let sent = send_many(&mut a, total, "boundary").await?;
    let max = fast::RESUME_MAX as usize;
    ensure_eq!(
        max as u64,
        fast::RETENTION,
        "this scenario needs retention == resume_max"
    );
    let last_100 = &sent[total - 100..];

    let from = (total - max) as u64; // 150 missing: recovered
    let j = resume_join(
        &base,
        &room,
        "at-limit",
        json!({"epoch": epoch, "seq": from}),
    )
    .await?;
    ensure_recovered(
        &j,
        &sent[total - max..],
        &epoch,
        "resume of exactly resume_max",
    )?;
    let j = resume_join(
        &base,
        &room,
        "over-limit",
        json!({"epoch": epoch, "seq": from - 1}),
    )
    .await?;
    ensure_not_recovered(
        &j,
        last_100,
        &epoch,
        "resume of resume_max + 1 (and pruned)",
    )?;
    let j = resume_join(&base, &room, "pruned", json!({"epoch": epoch, "seq": 10})).await?;
    ensure_not_recovered(&j, last_100, &epoch, "resume from a pruned seq")?;
    let j = resume_join(&base, &room, "plain", json!({})).await?;
    ensure_not_recovered(&j, last_100, &epoch, "no resume")?;
    a.close().await
}

/// A resume whose gap is within resume_max is still refused when part of the gap was
/// pruned: the resume is never partial.
///
/// With one configuration this cannot happen: resume_max ≤ retention (the backends
/// refuse anything else), and pruning keeps the last `retention` messages, so a gap of
/// at most resume_max is always retained. It happens when retention was smaller when
/// the messages were stored: here the room is filled under retention 10, then the
/// backend restarts on the same storage with retention and resume_max 100. A gap of 11
/// is then within resume_max, but its first message is gone.
pub async fn resume_is_refused_when_missed_messages_were_pruned(ctx: Ctx) -> Result<()> {
    let spec = |limit: &str| {
        InstanceSpec::with(&[
            ("rate_burst", "1000000"),
            ("rate_per_sec", "1000000"),
            ("retention", limit),
            ("resume_max", limit),
            ("backlog", limit),
        ])
    };
    let instance = ctx.start_own("pruned-resume", spec("10")).await?;
    let base = instance.base_url();
    let room = ctx.room("pruned");
    let (mut a, ja) = join(&base, &room, "alice").await?;
    let epoch = ja.ready.epoch.clone();
    // Seqs 1..=30; retention 10 keeps 21..=30.
    let sent = send_many(&mut a, 30, "pruned").await?;
    a.close().await?;

    instance.restart_with(spec("100")).await?;
    let base = instance.base_url();
    let retained = &sent[20..];
    // The edge of what is retained: all 10 missing messages are there.
    let j = resume_join(&base, &room, "edge", json!({"epoch": epoch, "seq": 20})).await?;
    ensure_recovered(&j, retained, &epoch, "resume of the 10 retained messages")?;
    ensure_eq!(j.ready.seq, 30, "ready.seq after the restart");
    // One more is within resume_max (100) but seq 20 was pruned.
    let j = resume_join(&base, &room, "one more", json!({"epoch": epoch, "seq": 19})).await?;
    ensure_not_recovered(&j, retained, &epoch, "resume of 11, one of them pruned")?;
    ensure_eq!(j.ready.seq, 30, "ready.seq on a refused resume");
    let j = resume_join(&base, &room, "from zero", json!({"epoch": epoch, "seq": 0})).await?;
    ensure_not_recovered(&j, retained, &epoch, "resume of 30, 20 of them pruned")?;
    Ok(())
}
