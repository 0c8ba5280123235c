//! The scenarios. Each runs on every selected backend; each uses rooms of its own.

mod api_limits;
mod chat;
mod errors;
mod hello;
mod history;
mod lifecycle;
mod limits;
mod origin;
mod routes;
mod slow;

use crate::client::{Client, Join, Msg};
use crate::harness::{Ctx, Group};
use crate::{bail, ensure, Result};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub type ScenarioFuture = Pin<Box<dyn Future<Output = Result<()>> + Send>>;
pub type ScenarioFn = fn(Ctx) -> ScenarioFuture;

#[derive(Clone, Copy)]
pub struct Scenario {
    pub name: &'static str,
    pub group: Group,
    pub run: ScenarioFn,
}

const fn s(name: &'static str, group: Group, run: ScenarioFn) -> Scenario {
    Scenario { name, group, run }
}

/// Every scenario, the long ones with instances of their own first so they overlap
/// with the rest.
pub fn all() -> Vec<Scenario> {
    use Group::*;
    vec![
        s("hibernation_keeps_the_room", Own, |c| {
            Box::pin(lifecycle::hibernation(c))
        }),
        s("restart_keeps_history", Own, |c| {
            Box::pin(lifecycle::restart(c))
        }),
        s("slow_consumer_closed_1013", Fast, |c| {
            Box::pin(slow::slow_consumer(c))
        }),
        s("chat_reaches_everyone", Default, |c| {
            Box::pin(chat::reaches_everyone(c))
        }),
        s("rooms_are_isolated", Default, |c| {
            Box::pin(chat::rooms_isolated(c))
        }),
        s("roster_join_and_quit", Default, |c| {
            Box::pin(chat::roster_join_quit(c))
        }),
        s("no_lurking_before_hello", Default, |c| {
            Box::pin(chat::no_lurking(c))
        }),
        s("hello_refusals_close_1008", Default, |c| {
            Box::pin(hello::refusals(c))
        }),
        s("hello_accepts_and_trims", Default, |c| {
            Box::pin(hello::accepts(c))
        }),
        s("oversized_frame_closes_1009", Default, |c| {
            Box::pin(errors::oversized(c))
        }),
        s("rate_limit_11th_message", Default, |c| {
            Box::pin(limits::eleventh_message(c))
        }),
        s("origin_policy", Default, |c| Box::pin(origin::policy(c))),
        s("http_routes_and_status_codes", Default, |c| {
            Box::pin(routes::status_codes(c))
        }),
        s("http_methods_405", Default, |c| {
            Box::pin(routes::methods(c))
        }),
        s("private_rooms", Default, |c| {
            Box::pin(routes::private_rooms(c))
        }),
        s("unknown_path_404", Default, |c| {
            Box::pin(routes::unknown_paths(c))
        }),
        s("no_deflate_negotiated", Default, |c| {
            Box::pin(routes::no_deflate(c))
        }),
        s("api_limits_default", Default, |c| {
            Box::pin(api_limits::reflects_config(c))
        }),
        s("message_errors_keep_socket_open", Fast, |c| {
            Box::pin(errors::message_errors(c))
        }),
        s("message_limits_and_content", Fast, |c| {
            Box::pin(errors::message_content(c))
        }),
        s("history_last_100", Fast, |c| Box::pin(history::last_100(c))),
        s("resume_exact_and_refused", Fast, |c| {
            Box::pin(history::resume(c))
        }),
        s("resume_boundary_resume_max_and_retention", Fast, |c| {
            Box::pin(history::resume_boundary(c))
        }),
        s("join_burst_is_not_slow_consumer", Fast, |c| {
            Box::pin(slow::join_burst(c))
        }),
        s("allowlisted_origin", Fast, |c| {
            Box::pin(origin::allowlist(c))
        }),
        s("hello_timeout_closes_1008", Tight, |c| {
            Box::pin(hello::timeout(c))
        }),
        s("api_limits_overridden", Tight, |c| {
            Box::pin(api_limits::reflects_config(c))
        }),
        s("flooding_closes_1008", Strict, |c| {
            Box::pin(limits::flooding(c))
        }),
        s("rate_limit_shared_and_kept", Strict, |c| {
            Box::pin(limits::shared_and_kept(c))
        }),
        s("room_full_closes_1013", Strict, |c| {
            Box::pin(limits::room_full(c))
        }),
    ]
}

/// Milliseconds since the Unix epoch, by this machine's clock (the backends run here).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A message timestamp must be milliseconds since the epoch, close to now. The bound
/// is generous: it tells seconds or microseconds apart from milliseconds, not speed.
pub fn ensure_plausible_timestamp(ts: u64) -> Result<()> {
    let now = now_ms();
    let slack = 5 * 60 * 1000;
    ensure!(
        ts + slack >= now && ts <= now + slack,
        "timestamp {ts} is not milliseconds near now ({now})"
    );
    Ok(())
}

/// Connects and joins as `name`.
pub async fn join(base: &str, room: &str, name: &str) -> Result<(Client, Join)> {
    let mut c = Client::connect(base, room, name).await?;
    let j = c.hello(name).await?;
    Ok((c, j))
}

/// Sends `n` messages (`{prefix} {i}`) in batches and reads them back from the
/// sender's own socket, checking order and content. Needs a rate limit out of the way.
pub async fn send_many(c: &mut Client, n: usize, prefix: &str) -> Result<Vec<Msg>> {
    const BATCH: usize = 25;
    let mut out: Vec<Msg> = Vec::with_capacity(n);
    while out.len() < n {
        let start = out.len();
        let end = (start + BATCH).min(n);
        for i in start..end {
            c.feed_text(serde_json::json!({ "message": format!("{prefix} {i}") }).to_string())
                .await?;
        }
        c.flush().await?;
        for i in start..end {
            let m = c.recv_message().await?;
            let expected = format!("{prefix} {i}");
            if m.message != expected {
                bail!(
                    "{}: message {i}: got {:?}, expected {expected:?}",
                    c.label,
                    m.message
                );
            }
            if let Some(prev) = out.last() {
                ensure_next(prev, &m)?;
            }
            out.push(m);
        }
    }
    Ok(out)
}

/// `next` follows `prev`: seq + 1 and a strictly larger timestamp.
pub fn ensure_next(prev: &Msg, next: &Msg) -> Result<()> {
    ensure!(
        next.seq == prev.seq + 1,
        "seq {} follows {}: expected {}",
        next.seq,
        prev.seq,
        prev.seq + 1
    );
    ensure!(
        next.timestamp > prev.timestamp,
        "timestamps must increase strictly: {} then {}",
        prev.timestamp,
        next.timestamp
    );
    Ok(())
}

/// The bounded wait used for "nothing arrives" checks.
pub const SILENCE: Duration = Duration::from_millis(500);
