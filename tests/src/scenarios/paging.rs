//! History paging (v2): `{"history": {"before", "limit"}}` pages back through what the
//! room retains.

use super::{join, send_many, SILENCE};
use crate::client::{Client, Msg};
use crate::harness::{fast, Ctx};
use crate::{bail, ensure, ensure_eq, Result};
use serde_json::{json, Value};

const LIMIT_ERROR: &str =
    r#"History "limit" must be a whole number from 1 to history_page_max (see GET /api/limits)."#;
const BEFORE_ERROR: &str = r#"History "before" must be a seq: a whole number, 0 or more."#;
const SHAPE_ERROR: &str =
    r#"Expected a history request like {"history": {"before": 120, "limit": 50}}."#;
const NEEDS_V2: &str = r#"History needs protocol v2: send "v": 2 in the hello."#;
/// The protocol's default `history_page_max`.
const DEFAULT_PAGE_MAX: usize = 100;

async fn join_v2(base: &str, room: &str, name: &str) -> Result<Client> {
    let mut c = Client::connect(base, room, name).await?;
    c.hello_v2(name).await?;
    Ok(c)
}

/// Fast group (retention 150): after 200 messages, pages of 40 from the newest walk back
/// to seq 51, the oldest retained, each joining the next with no gap and no overlap,
/// and the last one says there is no more.
pub async fn history_pages_walk_back_to_the_oldest_retained_message(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("paging");
    let mut ana = join_v2(&base, &room, "ana").await?;
    let total = 200usize;
    let sent = send_many(&mut ana, total, "page").await?;
    let oldest = total - fast::RETENTION as usize; // index of seq 51
    let (mut bob, _) = join(&base, &room, "bob").await?;
    ana.recv().await?; // bob's joined

    let mut walked: Vec<Msg> = Vec::new();
    let mut request = json!({"limit": 40});
    let mut expected_before = total as u64 + 1;
    let mut pages = 0;
    loop {
        ensure!(pages < 10, "no end after {pages} pages");
        pages += 1;
        ana.ask_history(request).await?;
        let page = ana.recv_page().await?;
        ensure_eq!(page.before, expected_before, "page {pages}: before");
        ensure!(
            page.history.len() <= 40,
            "page {pages} holds {}",
            page.history.len()
        );
        let mut next = page.history.clone();
        next.extend(walked);
        walked = next;
        if !page.more {
            break;
        }
        let Some(first) = page.history.first() else {
            bail!("page {pages}: more, but empty");
        };
        expected_before = first.seq;
        request = json!({"before": first.seq, "limit": 40});
    }
    ensure_eq!(pages, 4, "pages of 40 down from 200 to 51");
    ensure_eq!(
        walked,
        sent[oldest..].to_vec(),
        "the pages, joined, are exactly the retained messages"
    );

    // At and below the oldest retained message there is nothing more.
    for before in [51u64, 1, 0] {
        ana.ask_history(json!({"before": before, "limit": 10}))
            .await?;
        let page = ana.recv_page().await?;
        ensure!(
            page.history.is_empty() && !page.more && page.before == before,
            "before {before}: {page:?}"
        );
    }
    // A bound past the newest is echoed, with the newest page.
    ana.ask_history(json!({"before": 1_000_000, "limit": 3}))
        .await?;
    let page = ana.recv_page().await?;
    ensure_eq!(page.before, 1_000_000, "the bound is echoed");
    ensure_eq!(page.history, sent[total - 3..].to_vec(), "the newest page");
    ensure!(page.more, "more below the newest page");
    // Pages go to the asker alone.
    bob.expect_silence(SILENCE).await?;
    bob.close().await?;
    ana.close().await
}

/// Fast group (no rate limit, default `history_page_max`): `limit` from 1 to the
/// maximum, `before` a whole number, `history` an object; anything else is refused with
/// an error and the socket stays open.
pub async fn history_limit_bounds_are_enforced(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("paging-bounds");
    let mut ana = join_v2(&base, &room, "ana").await?;
    let sent = send_many(&mut ana, DEFAULT_PAGE_MAX + 5, "bound").await?;

    ana.ask_history(json!({"limit": DEFAULT_PAGE_MAX})).await?;
    let page = ana.recv_page().await?;
    ensure_eq!(
        page.history,
        sent[5..].to_vec(),
        "a page of exactly history_page_max"
    );
    ensure!(page.more, "five more below");
    ana.ask_history(json!({})).await?;
    ensure_eq!(
        ana.recv_page().await?,
        page,
        "no limit means history_page_max"
    );
    ana.ask_history(json!({"limit": 1})).await?;
    ensure_eq!(
        ana.recv_page().await?.history,
        sent[DEFAULT_PAGE_MAX + 4..].to_vec(),
        "limit 1"
    );

    let refused: [(Value, &str); 11] = [
        (json!({"limit": 0}), LIMIT_ERROR),
        (json!({"limit": DEFAULT_PAGE_MAX + 1}), LIMIT_ERROR),
        (json!({"limit": -1}), LIMIT_ERROR),
        (json!({"limit": 2.5}), LIMIT_ERROR),
        (json!({"limit": "10"}), LIMIT_ERROR),
        (json!({"before": -1}), BEFORE_ERROR),
        (json!({"before": 1.5}), BEFORE_ERROR),
        (json!({"before": "5"}), BEFORE_ERROR),
        (json!(5), SHAPE_ERROR),
        (json!([]), SHAPE_ERROR),
        (json!("older"), SHAPE_ERROR),
    ];
    for (request, error) in refused {
        ana.ask_history(request).await?;
        ana.expect_error(error).await?;
    }
    // Still open, and still paging.
    ana.ask_history(json!({"before": 3, "limit": 5})).await?;
    ensure_eq!(
        ana.recv_page().await?.history,
        sent[..2].to_vec(),
        "after the refusals"
    );
    ana.close().await
}

/// A v1 session has no history frame kind: its request gets an error and nothing else,
/// while a v2 session in the same room gets the page.
pub async fn a_v1_session_asking_for_history_gets_an_error(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("paging-v1");
    let (mut old, _) = join(&base, &room, "old").await?;
    old.say("kept").await?;
    let m = old.recv_message().await?;
    old.ask_history(json!({"limit": 5})).await?;
    old.expect_error(NEEDS_V2).await?;
    old.expect_silence(SILENCE).await?;

    let mut new = join_v2(&base, &room, "new").await?;
    old.recv().await?; // new's joined
    new.ask_history(json!({"limit": 5})).await?;
    let page = new.recv_page().await?;
    ensure_eq!(page.history, vec![m], "the v2 session's page");
    old.expect_silence(SILENCE).await?;
    new.close().await?;
    old.recv().await?; // new's quit
    old.close().await
}

/// Strict group (burst 2, no refill to speak of): a history request costs one token.
pub async fn a_history_request_costs_one_token(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("paging-token");
    let mut ana = join_v2(&base, &room, "ana").await?;
    for _ in 0..2 {
        ana.ask_history(json!({})).await?;
        ana.recv_page().await?;
    }
    ana.ask_history(json!({})).await?;
    ana.expect_error("Rate limited; slow down.").await?;
    ana.close().await
}
