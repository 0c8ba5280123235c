//! The scenarios. Each runs on every selected backend it applies to (its `backends`);
//! each uses rooms of its own. A scenario's name is its function's name.

mod abuse;
mod api_limits;
mod chat;
mod churn_cost;
mod edits;
mod errors;
mod faults;
mod hello;
mod history;
mod identity;
mod lifecycle;
mod limits;
mod liveness;
mod moderation;
mod observability;
mod origin;
mod paging;
mod publish;
mod reactions;
mod request_ids;
mod retry;
mod roster;
mod routes;
mod sizes;
mod slow;
mod storage;
mod typing;
mod v2;

use crate::client::{Client, Join, Msg, Options};
use crate::harness::{BackendKind, Ctx, Group};
use crate::{bail, ensure, Result};
use std::future::Future;
use std::net::Ipv4Addr;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub type ScenarioFuture = Pin<Box<dyn Future<Output = Result<()>> + Send>>;
pub type ScenarioFn = fn(Ctx) -> ScenarioFuture;

#[derive(Clone, Copy)]
pub struct Scenario {
    /// The scenario function's name, which says what it checks.
    pub name: &'static str,
    pub group: Group,
    /// The backends it runs on. A scenario asserts the same thing on each of them; a
    /// behaviour that differs by platform is a scenario per behaviour, each listed only
    /// for the backends that have it (docs/protocol.md, "Where the backends differ").
    pub backends: &'static [BackendKind],
    pub run: ScenarioFn,
}

impl Scenario {
    pub fn runs_on(&self, kind: BackendKind) -> bool {
        self.backends.contains(&kind)
    }
}

/// `scenario!(Group, module::function)` registers `module::function` under the name
/// `function`, on every backend; `scenario!(Group, module::function, only = &[...])`
/// on the listed backends only.
macro_rules! scenario {
    ($group:ident, $module:ident :: $function:ident) => {
        scenario!($group, $module::$function, only = &BackendKind::ALL)
    };
    ($group:ident, $module:ident :: $function:ident, only = $backends:expr) => {
        Scenario {
            name: stringify!($function),
            group: Group::$group,
            backends: $backends,
            run: |c| Box::pin($module::$function(c)),
        }
    };
}

/// Every scenario, the long ones with instances of their own first so they overlap
/// with the rest.
pub fn all() -> Vec<Scenario> {
    use BackendKind::{Local, Wrangler};
    vec![
        scenario!(Own, faults::seq_continues_across_evictions_under_traffic),
        scenario!(Own, lifecycle::hibernation_keeps_the_room),
        scenario!(Own, lifecycle::rate_limit_bucket_survives_hibernation),
        scenario!(Own, lifecycle::restart_keeps_history),
        scenario!(Own, lifecycle::lost_storage_starts_a_new_epoch),
        scenario!(
            Own,
            history::resume_is_refused_when_missed_messages_were_pruned
        ),
        // The Durable Object sends no pings: the runtime keeps its sockets alive.
        scenario!(
            Own,
            liveness::unanswered_pings_close_1001_ping_timeout,
            only = &[Local]
        ),
        // Storage fails on purpose only through the local runner's test-only hook; the
        // Worker has none.
        scenario!(
            Own,
            storage::unstored_message_gets_error_and_is_not_sent,
            only = &[Local]
        ),
        scenario!(
            Own,
            storage::unreadable_history_at_join_closes_1011,
            only = &[Local]
        ),
        scenario!(Own, moderation::kicks_mutes_and_deletions_survive_a_restart),
        scenario!(Own, moderation::identity_and_mutes_survive_hibernation),
        scenario!(
            Own,
            observability::closes_rejections_and_resumes_are_counted
        ),
        scenario!(Own, observability::refusals_at_connect_are_counted),
        scenario!(Own, identity::issuer_and_audience_are_checked_when_set),
        scenario!(Own, roster::big_roster_pages_list_every_member_once),
        scenario!(Own, roster::bad_member_requests_get_errors),
        // The fault tests below stop, kill and flood the runner's own process, and read
        // its /metrics; a Durable Object's process is workerd's.
        scenario!(
            Own,
            faults::disconnect_storm_leaves_nothing_behind,
            only = &[Local]
        ),
        scenario!(
            Own,
            faults::kill_9_loses_no_message_a_client_saw,
            only = &[Local]
        ),
        scenario!(
            Own,
            faults::sigterm_closes_every_socket_1001_and_exits_0,
            only = &[Local]
        ),
        // /metrics is the runner's; the Worker reports through log lines.
        scenario!(
            Own,
            observability::metrics_follow_connections_rooms_and_messages,
            only = &[Local]
        ),
        scenario!(Own, retry::a_cid_survives_an_eviction_and_a_restart),
        // Only the local runner sees a client's send queue; workerd buffers without
        // bound and tells a Durable Object nothing.
        scenario!(Fast, slow::slow_consumer_is_closed_1013, only = &[Local]),
        scenario!(
            Fast,
            slow::slow_consumer_is_buffered_not_closed,
            only = &[Wrangler]
        ),
        scenario!(
            Default,
            observability::metrics_are_served_on_the_public_listener,
            only = &[Local]
        ),
        scenario!(Default, chat::chat_reaches_everyone),
        scenario!(Default, chat::rooms_are_isolated),
        scenario!(Default, chat::joins_and_quits_are_announced),
        scenario!(
            Default,
            chat::a_quit_comes_before_the_same_clients_next_join
        ),
        scenario!(Default, chat::nothing_reaches_a_socket_before_its_hello),
        scenario!(Default, hello::bad_hello_gets_error_and_close_1008),
        scenario!(Default, hello::valid_hellos_join_trimmed_or_anonymous),
        scenario!(Default, errors::oversized_message_closes_1009),
        scenario!(Default, limits::eleventh_message_in_a_burst_is_rate_limited),
        scenario!(Default, origin::foreign_origin_is_refused_403),
        scenario!(
            Default,
            routes::upgrade_refusals_come_in_the_documented_order
        ),
        // workerd drops a Worker's `Upgrade` header on anything but a 101.
        scenario!(
            Default,
            routes::upgrade_required_426_says_upgrade_websocket,
            only = &[Local]
        ),
        scenario!(Default, routes::health_and_page_answer_200),
        scenario!(Default, routes::wrong_method_is_405_with_allow),
        scenario!(Default, routes::private_room_ids_are_minted_and_joinable),
        scenario!(Default, routes::unknown_path_is_404_not_found),
        scenario!(
            Default,
            routes::valid_room_names_at_the_limits_join_and_chat
        ),
        // Under `wrangler dev` the proxies in front of the Worker negotiate
        // permessage-deflate themselves; the local runner never does.
        scenario!(
            Default,
            routes::deflate_offer_gets_no_extension,
            only = &[Local]
        ),
        scenario!(
            Default,
            routes::inflated_message_over_the_cap_closes_1009,
            only = &[Wrangler]
        ),
        scenario!(
            Default,
            api_limits::advertised_limits_are_the_defaults_and_enforced
        ),
        scenario!(Fast, errors::bad_message_gets_error_and_socket_stays_open),
        scenario!(Fast, errors::messages_at_the_limits_are_broadcast),
        scenario!(Fast, history::joiner_gets_the_last_100_messages),
        scenario!(Fast, history::resume_replays_the_exact_gap_or_the_last_100),
        scenario!(
            Fast,
            history::resume_recovers_up_to_resume_max_and_no_further
        ),
        scenario!(Fast, slow::join_burst_does_not_count_as_slow_consumer),
        scenario!(
            Fast,
            retry::a_repeated_cid_is_stored_once_and_only_its_sender_hears_it_again
        ),
        scenario!(Default, retry::a_cid_of_the_wrong_shape_is_refused),
        scenario!(Fast, retry::a_cid_is_forgotten_beyond_the_window),
        scenario!(
            Fast,
            paging::history_pages_walk_back_to_the_oldest_retained_message
        ),
        scenario!(Fast, paging::history_limit_bounds_are_enforced),
        scenario!(
            Default,
            paging::a_v1_session_asking_for_history_gets_an_error
        ),
        scenario!(Strict, paging::a_history_request_costs_one_token),
        scenario!(Default, edits::the_author_edits_and_every_v2_member_sees_it),
        scenario!(
            Fast,
            edits::edits_by_anyone_else_or_of_the_wrong_shape_are_refused
        ),
        scenario!(Default, edits::a_resume_replays_the_edits_it_missed),
        scenario!(
            Identity,
            edits::a_verified_users_message_is_edited_from_any_of_its_sessions
        ),
        scenario!(Tight, edits::an_edit_after_the_window_is_refused),
        scenario!(
            Default,
            reactions::reactions_toggle_and_every_v2_member_gets_the_counts
        ),
        scenario!(
            Identity,
            reactions::bad_reactions_are_refused_and_a_delete_removes_them
        ),
        scenario!(Fast, origin::allowlisted_origin_is_accepted),
        scenario!(Tight, hello::hello_timeout_closes_1008),
        scenario!(
            Tight,
            churn_cost::a_silent_socket_after_churn_is_closed_by_its_own_deadline
        ),
        scenario!(Tight, errors::fragmented_message_over_the_cap_closes_1009),
        scenario!(
            Tight,
            limits::drained_bucket_refills_one_message_per_interval
        ),
        scenario!(
            Tight,
            api_limits::advertised_limits_follow_overrides_and_are_enforced
        ),
        scenario!(Strict, limits::flooding_closes_1008),
        scenario!(Strict, limits::rate_limit_is_shared_per_address_and_kept),
        scenario!(Strict, limits::rate_limit_buckets_are_separate_per_address),
        scenario!(Strict, limits::room_full_closes_1013),
        scenario!(
            Identity,
            publish::a_published_message_reaches_members_and_history
        ),
        scenario!(Identity, publish::publish_refusals_say_why),
        scenario!(Identity, publish::a_service_token_cannot_join),
        scenario!(
            Identity,
            publish::a_publish_retried_with_its_cid_is_stored_once
        ),
        scenario!(Identity, publish::publishing_too_fast_is_refused_429),
        scenario!(Default, publish::publishing_without_a_secret_is_not_found),
        scenario!(Identity, identity::a_valid_token_makes_a_verified_session),
        scenario!(Identity, identity::bad_tokens_are_refused_with_1008),
        scenario!(Identity, identity::a_token_for_a_room_is_valid_there_only),
        scenario!(
            Identity,
            moderation::a_moderator_deletes_a_message_for_everyone
        ),
        scenario!(Identity, moderation::a_moderator_kicks_a_user),
        scenario!(Identity, moderation::a_moderator_mutes_a_user),
        scenario!(
            Identity,
            moderation::a_kick_or_mute_holds_for_the_users_address
        ),
        scenario!(
            Identity,
            moderation::non_moderators_are_refused_and_stay_open
        ),
        scenario!(Identity, moderation::moderation_bounds_answer_with_errors),
        scenario!(
            Identity,
            moderation::a_moderator_in_a_private_room_is_audited_under_its_tag
        ),
        scenario!(
            Identity,
            moderation::a_retried_cid_of_a_deleted_message_gets_no_chat_frame
        ),
        scenario!(
            Identity,
            moderation::a_moderator_token_moderates_the_rooms_it_names
        ),
        scenario!(
            Signed,
            identity::a_room_requiring_tokens_refuses_a_hello_without_one
        ),
        scenario!(
            Signed,
            moderation::a_refused_moderator_frame_costs_a_rate_limit_token
        ),
        scenario!(
            Default,
            abuse::twenty_first_socket_from_one_address_is_refused_1013
        ),
        scenario!(
            Churn,
            abuse::join_quit_churn_costs_members_at_most_the_join_burst
        ),
        scenario!(Default, abuse::invisible_names_are_refused_1008),
        scenario!(Default, abuse::check_marks_in_names_are_refused_1008),
        // The storage line is the Durable Object's: the runner times hello deadlines
        // in memory and reports no storage counts (docs/operating.md).
        scenario!(
            Default,
            churn_cost::connect_close_churn_costs_the_object_o1_storage,
            only = &[Wrangler]
        ),
        scenario!(Default, abuse::private_room_ids_stay_out_of_the_logs),
        // Room opens on the local runner are limited by the runner itself (its own
        // scenario); on Cloudflare by the Workers rate-limiting binding.
        scenario!(
            Default,
            abuse::opening_rooms_too_fast_is_refused_429,
            only = &[Wrangler]
        ),
        scenario!(
            Default,
            request_ids::request_ids_and_codes_are_v2_only_and_v1_errors_unchanged
        ),
        scenario!(
            Fast,
            request_ids::request_ids_are_each_answered_exactly_once
        ),
        scenario!(
            Batch,
            request_ids::request_ids_of_a_batch_session_are_answered_in_order
        ),
        scenario!(
            Identity,
            request_ids::request_ids_of_a_moderator_get_ok_or_their_error
        ),
        scenario!(Default, v2::v2_joiner_gets_the_roster_as_one_frame),
        scenario!(
            Default,
            v2::v1_and_v2_clients_in_one_room_each_see_their_own_protocol
        ),
        scenario!(Default, v2::batch_needs_v2_and_a_boolean),
        scenario!(
            Batch,
            v2::batching_packs_the_same_frames_into_fewer_messages
        ),
        scenario!(
            Batch,
            v2::a_batch_joiners_burst_comes_in_batches_of_batch_max
        ),
        scenario!(Batch, typing::typing_reaches_the_other_v2_members_only),
        scenario!(Batch, typing::typing_expires_without_a_refresh),
        scenario!(Batch, typing::typing_bounds_answer_as_documented),
        scenario!(
            Fast,
            sizes::a_resume_of_resume_max_longest_messages_stays_within_the_bound
        ),
        scenario!(
            Default,
            sizes::a_resume_of_260_escaped_messages_from_26_addresses_gets_ready
        ),
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
/// Creates a private room (`POST /api/room`) and returns its id.
pub async fn create_private_room(base: &str) -> Result<String> {
    let created = crate::http::request(base, "POST", "/api/room", &[]).await?;
    crate::ensure_eq!(created.status, 200, "POST /api/room status");
    Ok(created.body)
}

pub async fn join(base: &str, room: &str, name: &str) -> Result<(Client, Join)> {
    let mut c = Client::connect(base, room, name).await?;
    let j = c.hello(name).await?;
    Ok((c, j))
}

/// The second client address of this machine: the suite's sockets come from 127.0.0.1
/// unless they bind to this one (on Linux the loopback net is all of 127.0.0.0/8).
pub const OTHER_ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// Connects from source address `ip` and joins as `name`.
pub async fn join_from(base: &str, room: &str, name: &str, ip: Ipv4Addr) -> Result<(Client, Join)> {
    let options = Options {
        local_ip: Some(ip),
        ..Options::default()
    };
    let mut c = Client::connect_with(base, room, name, &options).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_and_every_scenario_runs_somewhere() {
        let mut names = HashSet::new();
        for s in all() {
            assert!(names.insert(s.name), "two scenarios are named {}", s.name);
            assert!(!s.backends.is_empty(), "{} runs on no backend", s.name);
        }
    }
}
