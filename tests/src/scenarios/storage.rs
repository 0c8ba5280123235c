//! Storage failing in a real backend (local runner only). The runner's test-only hook,
//! `--test-storage-faults MARKER`, makes storing a message whose text contains the
//! marker fail, and reading history in a room whose name contains it. The Worker has no
//! such hook, and the Durable Object's storage cannot be made to fail from outside.

use super::{ensure_next, join, SILENCE};
use crate::client::{Client, Frame};
use crate::harness::{Ctx, InstanceSpec};
use crate::{ensure_eq, Result};

/// The marker: in a message's text its store fails, in a room's name its history
/// cannot be read.
const FAULT: &str = "fail-storage";

fn faulty() -> InstanceSpec {
    InstanceSpec {
        storage_fault_marker: Some(FAULT.to_owned()),
        ..InstanceSpec::default()
    }
}

/// A message whose store fails is not sent: its sender gets the error and keeps its
/// socket, nobody else hears of it, and it uses up no seq.
pub async fn unstored_message_gets_error_and_is_not_sent(ctx: Ctx) -> Result<()> {
    let instance = ctx.start_own("storage-faults", faulty()).await?;
    let base = instance.base_url();
    let room = ctx.room("unstored");
    let (mut a, _) = join(&base, &room, "alice").await?;
    let (mut b, _) = join(&base, &room, "bob").await?;
    a.expect_frame(Frame::Joined("bob".into())).await?;
    a.say("stored").await?;
    let first = a.recv_message().await?;
    ensure_eq!(b.recv_message().await?, first, "bob gets the first message");

    a.say(&format!("this one will {FAULT}")).await?;
    a.expect_error("Message could not be stored; it was not sent. Try again.")
        .await?;
    b.expect_silence(SILENCE).await?;

    // Still open, and the failed message used up no seq.
    a.say("stored too").await?;
    let second = a.recv_message().await?;
    ensure_eq!(
        second.message,
        "stored too",
        "the message after the failure"
    );
    ensure_next(&first, &second)?;
    ensure_eq!(b.recv_message().await?, second, "bob gets it");
    let (c, jc) = join(&base, &room, "carol").await?;
    ensure_eq!(
        jc.backlog,
        vec![first, second],
        "history: only what was stored"
    );
    ensure_eq!(jc.ready.seq, 2, "ready.seq");
    c.close().await?;
    b.close().await?;
    a.close().await
}

/// A room whose history cannot be read refuses a joiner with
/// `{"error": "Internal error; please reconnect later."}` and close 1011, whether or
/// not it resumes; rooms whose storage works are not affected.
pub async fn unreadable_history_at_join_closes_1011(ctx: Ctx) -> Result<()> {
    let instance = ctx.start_own("storage-faults", faulty()).await?;
    let base = instance.base_url();
    let room = ctx.room(FAULT);
    let hellos = [
        serde_json::json!({"name": "alice"}),
        serde_json::json!({"name": "alice", "resume": {"epoch": "an-epoch", "seq": 0}}),
    ];
    for hello in hellos {
        let mut c = Client::connect(&base, &room, "alice").await?;
        c.send_json(&hello).await?;
        c.expect_error("Internal error; please reconnect later.")
            .await?;
        c.expect_close(1011, Some("Internal error")).await?;
    }
    let (fine, j) = join(&base, &ctx.room("readable"), "bob").await?;
    ensure_eq!(j.ready.seq, 0, "another room of the same backend works");
    fine.close().await
}
