//! The v2 roster of a big room, in pages (docs/protocol.md, "Member pages"): with more
//! than `roster_inline_max` other members a v2 joiner gets the first page, the count
//! and a cursor, pages through the rest with `{"members": …}`, and a member that quits
//! before it was listed is followed by `{"members": {"unlisted": …}}`. A v1 joiner
//! still gets one `joined` per member. Bad requests get their errors.

use super::join;
use crate::client::{Client, Event, Frame, MemberPage};
use crate::harness::{Ctx, InstanceSpec};
use crate::{bail, ensure, ensure_eq, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// `roster_inline_max` of these scenarios: small, so a room of a few is "big".
const INLINE_MAX: usize = 3;

const LIMIT_ERROR: &str =
    r#"Members "limit" must be a whole number from 1 to roster_inline_max (see GET /api/limits)."#;
const CURSOR_ERROR: &str =
    r#"Members "after" must be a "next" cursor the server sent, or null for the first page."#;
const SHAPE_ERROR: &str =
    r#"Expected a member page request like {"members": {"after": "<next>", "limit": 100}}."#;
const NEEDS_V2_ERROR: &str = r#"Member pages need protocol v2: send "v": 2 in the hello."#;

/// Everything else out of the way: one client address holds every seat and join.
fn spec(extra: &[(&str, &str)]) -> InstanceSpec {
    let inline = INLINE_MAX.to_string();
    let mut overrides = vec![
        ("roster_inline_max", inline.as_str()),
        ("join_burst", "1000"),
        ("join_per_sec", "1000"),
        ("seats_per_address", "100"),
        // Bystanders leave frames unread while the room hibernates.
        ("drain_timeout_ms", "600000"),
    ];
    overrides.extend_from_slice(extra);
    InstanceSpec::with(&overrides)
}

/// Reads whatever `c` was sent until it has been quiet for a moment.
async fn drain(c: &mut Client) -> Result<()> {
    for _ in 0..1000 {
        match c.next_event_within(Duration::from_millis(200)).await? {
            None => return Ok(()),
            Some(Event::Frame(_)) => {}
            Some(other) => bail!("unexpected {other:?} while draining"),
        }
    }
    bail!("a client kept receiving frames")
}

/// Expects a member page.
async fn recv_members(c: &mut Client) -> Result<MemberPage> {
    match c.recv().await? {
        Frame::Members(p) => Ok(p),
        other => bail!("expected a member page, got {other:?}"),
    }
}

fn names(p: &MemberPage) -> Vec<String> {
    p.members.iter().map(|m| m.name.clone()).collect()
}

/// A client's roster as docs/protocol.md tells it to keep one: a count per name.
#[derive(Default)]
struct Counts(BTreeMap<String, i64>);

impl Counts {
    fn add(&mut self, names: &[String], n: i64) {
        for name in names {
            *self.0.entry(name.clone()).or_default() += n;
        }
    }

    /// The names with a positive count, each that many times, sorted.
    fn roster(&self) -> Vec<String> {
        let mut r = Vec::new();
        for (name, n) in &self.0 {
            for _ in 0..*n {
                r.push(name.clone());
            }
        }
        r
    }
}

/// Eight members (duplicate names, v1 and v2 mixed) and a v2 joiner: its roster frame
/// is the first page; it pages through (across a hibernation of the room), a member
/// not listed yet quits and is followed by `unlisted`, and counting names gives exactly
/// the room. A v1 joiner then gets one `joined` per member.
pub async fn big_roster_pages_list_every_member_once(ctx: Ctx) -> Result<()> {
    let backend = ctx.backend();
    let spec = InstanceSpec {
        hibernate: true,
        ..spec(&[("rate_burst", "1000000"), ("rate_per_sec", "1000000")])
    };
    let instance = ctx.start_own("roster", spec).await?;
    let base = instance.base_url();
    let room = ctx.room("roster");
    let all = ["dup", "ann", "dup", "bob", "dup", "cat", "dan", "eve"];
    let mut members = Vec::new();
    for (i, name) in all.iter().enumerate() {
        // One after the other, so the join order is this order.
        let mut c = Client::connect(&base, &room, name).await?;
        if i % 2 == 0 {
            c.hello(name).await?;
        } else {
            c.hello_v2(name).await?;
        }
        members.push(c);
    }

    let mut me = Client::connect(&base, &room, "me").await?;
    let joined = me.hello_v2("me").await?;
    let Some((count, next)) = joined.roster_paged.clone() else {
        bail!("a joiner of a room of 8 with roster_inline_max 3 got no cursor: {joined:?}");
    };
    ensure_eq!(count, 8, "count in the paged roster frame");
    ensure_eq!(
        joined.roster,
        vec!["dup", "ann", "dup"],
        "the first page: the first 3 members, in join order"
    );
    let mut counts = Counts::default();
    counts.add(&joined.roster, 1);

    me.ask_members(json!({"after": next, "limit": 2})).await?;
    let page = recv_members(&mut me).await?;
    ensure_eq!(names(&page), vec!["bob", "dup"], "the second page");
    ensure_eq!(page.count, 8, "count in the second page");
    counts.add(&names(&page), 1);
    let Some(next) = page.next else {
        bail!("the second page says it is the last");
    };

    // The room hibernates mid-paging: the cursor and the paging state must survive.
    // (The mark comes first: the room is idle from the last page on, and may hibernate
    // while the bystanders' frames are read.)
    let mark = instance.logs().mark();
    for c in &mut members {
        drain(c).await?;
    }
    backend.await_eviction(&instance, mark).await?;
    let mark = instance.logs().mark();
    me.ask_members(json!({"after": next, "limit": 2})).await?;
    let page = recv_members(&mut me).await?;
    backend.confirm_restored(&instance, mark, 9).await?;
    ensure_eq!(
        names(&page),
        vec!["cat", "dan"],
        "the page after the eviction"
    );
    counts.add(&names(&page), 1);
    let Some(next) = page.next else {
        bail!("the third page says it is the last, with eve not listed yet");
    };

    // eve, not listed yet, quits: quit, then unlisted, nothing between.
    let eve = members.pop().expect("eight members");
    eve.close().await?;
    me.expect_frame(Frame::Quit("eve".into())).await?;
    me.expect_frame(Frame::Unlisted("eve".into())).await?;
    counts.add(&["eve".to_owned()], -1);
    counts.add(&["eve".to_owned()], 1);

    me.ask_members(json!({ "after": next })).await?;
    let page = recv_members(&mut me).await?;
    ensure_eq!(
        (names(&page), page.count, page.next),
        (Vec::<String>::new(), 7, None),
        "the last page: nobody left to list, 7 others"
    );
    let mut expected: Vec<String> = all[..7].iter().map(|s| s.to_string()).collect();
    expected.sort();
    ensure_eq!(
        counts.roster(),
        expected,
        "the roster counted from the pages"
    );

    // Listing from the start again lists the same 7, each once.
    let mut again = Vec::new();
    let mut after = Value::Null;
    for _ in 0..10 {
        me.ask_members(json!({"after": after, "limit": INLINE_MAX}))
            .await?;
        let page = recv_members(&mut me).await?;
        again.extend(names(&page));
        match page.next {
            Some(n) => after = json!(n),
            None => break,
        }
    }
    again.sort();
    ensure_eq!(again, expected, "a second listing from the start");

    // A v1 joiner still gets the whole room as `joined` frames, and no v2 frame.
    let (mut old, j) = join(&base, &room, "old").await?;
    ensure!(!j.roster_frame, "a v1 joiner got a roster frame");
    let mut with_me = expected.clone();
    with_me.push("me".into());
    with_me.sort();
    ensure_eq!(j.roster_sorted(), with_me, "the v1 joiner's roster");
    me.expect_frame(Frame::Joined("old".into())).await?;
    old.ask_members(json!({})).await?;
    old.expect_error(NEEDS_V2_ERROR).await?;
    Ok(())
}

/// Requests the server must refuse, each with its sentence, and the rate limit: a
/// member request costs a token like any frame.
pub async fn bad_member_requests_get_errors(ctx: Ctx) -> Result<()> {
    let instance = ctx
        .start_own("roster-errors", spec(&[("rate_per_sec", "0.001")]))
        .await?;
    let base = instance.base_url();
    let room = ctx.room("roster-errors");
    let mut me = Client::connect(&base, &room, "me").await?;
    let j = me.hello_v2("me").await?;
    ensure!(
        j.roster_paged.is_none() && j.roster.is_empty(),
        "an empty room's roster: {j:?}"
    );
    // The default rate_burst is 10 tokens, none refilled during the test.
    let mut tokens = 10;
    for (request, error) in [
        (json!({"limit": INLINE_MAX + 1}), LIMIT_ERROR),
        (json!({"limit": 0}), LIMIT_ERROR),
        (json!({"limit": "2"}), LIMIT_ERROR),
        (json!({"after": 5}), CURSOR_ERROR),
        (json!({"after": "five"}), CURSOR_ERROR),
        (json!("x"), SHAPE_ERROR),
    ] {
        me.ask_members(request).await?;
        me.expect_error(error).await?;
        tokens -= 1;
    }
    let (mut old, _) = join(&base, &room, "old").await?;
    me.expect_frame(Frame::Joined("old".into())).await?;
    old.ask_members(json!({"limit": 1})).await?;
    old.expect_error(NEEDS_V2_ERROR).await?;
    tokens -= 1;
    // The rest of the bucket: pages (old, who joined later, is never listed to me).
    for _ in 0..tokens {
        me.ask_members(json!({})).await?;
        let page = recv_members(&mut me).await?;
        ensure_eq!(
            (names(&page), page.count, page.next),
            (Vec::<String>::new(), 1, None),
            "a page listing nobody who joined before me"
        );
    }
    me.ask_members(json!({})).await?;
    me.expect_error("Rate limited; slow down.").await?;
    Ok(())
}
