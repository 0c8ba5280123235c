//! Liveness means reading.
//!
//! A connection is alive if it reads what it is sent. TCP alone cannot tell: the
//! client's kernel accepts (and acknowledges) a few hundred kilobytes for it whether
//! or not it reads, and a client may send pongs nobody asked for. So the server asks:
//! it sends a ping with an unpredictable payload (a *probe*) behind the frames it has
//! queued, and only a pong that echoes that payload counts. A client answers it only
//! after reading everything queued before it.
//!
//! - After frames were written, a probe follows at the next check; if it is not
//!   answered within `drain_timeout_ms`, the frames have not drained and the
//!   connection is closed as a slow consumer (`Close::SlowConsumer`), in a quiet room
//!   too.
//! - With nothing written, a probe goes out every `--ping-interval-secs`; one left
//!   unanswered for two intervals closes the connection (`Close::PingTimeout`: the
//!   client is most likely gone).
//!
//! One probe is outstanding at a time. The reader checks every [`Liveness::period`]
//! (a quarter of the shorter of the two times), so a connection whose frames stay
//! unread is closed at most 1.5 × `drain_timeout_ms` after the first of them was
//! written.

use axum::body::Bytes;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// The shortest check period, however small the timeouts.
const MIN_PERIOD: Duration = Duration::from_millis(25);

/// What the connection should do after a check.
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict {
    Fine,
    /// Queue this probe (a ping with this payload) behind the frames already queued.
    Probe(Bytes),
    /// Frames stayed unread for `drain_timeout_ms`.
    SlowConsumer,
    /// Nothing to read, and no answer for two ping intervals.
    PingTimeout,
}

/// What a probe covers, as the writer found when it wrote it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Covers {
    /// Not written yet: the writer is still on the frames queued before it.
    NotWritten,
    Frames,
    Nothing,
}

struct Probe {
    payload: [u8; 8],
    queued: Instant,
    covers: Covers,
}

struct State {
    probe: Option<Probe>,
    /// Frames were written after the last probe.
    unprobed: bool,
    last_probe: Instant,
}

/// Shared by a connection's reader (pongs, checks) and writer (what it wrote).
pub(crate) struct Liveness {
    state: Mutex<State>,
    drain_timeout: Duration,
    ping_interval: Duration,
}

impl Liveness {
    pub(crate) fn new(drain_timeout: Duration, ping_interval: Duration, now: Instant) -> Self {
        Liveness {
            state: Mutex::new(State {
                probe: None,
                unprobed: false,
                last_probe: now,
            }),
            drain_timeout,
            ping_interval,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How often the reader should call [`Liveness::check`].
    pub(crate) fn period(&self) -> Duration {
        (self.drain_timeout.min(self.ping_interval) / 4).max(MIN_PERIOD)
    }

    /// The writer wrote chat frames (called once per batch that had any).
    pub(crate) fn wrote_frames(&self) {
        self.state().unprobed = true;
    }

    /// The writer wrote a ping with `payload`, after the frames it wrote before:
    /// `frames_before` says whether there were any since the previous probe.
    pub(crate) fn wrote_ping(&self, payload: &[u8], frames_before: bool) {
        let mut state = self.state();
        if let Some(probe) = state.probe.as_mut() {
            if probe.payload == payload {
                // A probe sent again still covers the frames its first sending did.
                probe.covers = if frames_before || probe.covers == Covers::Frames {
                    Covers::Frames
                } else {
                    Covers::Nothing
                };
                // Whatever was written before is covered; later frames set it again.
                state.unprobed = false;
            }
        }
    }

    /// A pong arrived. Only one that echoes the outstanding probe counts.
    pub(crate) fn pong(&self, payload: &[u8]) {
        let mut state = self.state();
        if state.probe.as_ref().is_some_and(|p| p.payload == payload) {
            state.probe = None;
        }
    }

    /// Decides what to do at `now`. `random` supplies a new probe's payload.
    pub(crate) fn check(&self, now: Instant, random: impl FnOnce() -> [u8; 8]) -> Verdict {
        let mut state = self.state();
        if let Some(probe) = &state.probe {
            let waited = now.saturating_duration_since(probe.queued);
            let frames = probe.covers != Covers::Nothing;
            if frames && waited >= self.drain_timeout {
                return Verdict::SlowConsumer;
            }
            if waited >= self.ping_interval * 2 {
                return Verdict::PingTimeout;
            }
            // A written probe is sent again, same payload, every interval it stays
            // unanswered: a client is closed for missing two pings, not one (a pong to
            // either counts). Not while the writer has not got to it, nor while frames
            // wait unprobed.
            let again = probe.covers != Covers::NotWritten
                && !state.unprobed
                && now.saturating_duration_since(state.last_probe) >= self.ping_interval;
            if !again {
                return Verdict::Fine;
            }
            let payload = probe.payload;
            state.last_probe = now;
            return Verdict::Probe(Bytes::copy_from_slice(&payload));
        }
        let due = now.saturating_duration_since(state.last_probe) >= self.ping_interval;
        if !(state.unprobed || due) {
            return Verdict::Fine;
        }
        let payload = random();
        state.probe = Some(Probe {
            payload,
            queued: now,
            covers: Covers::NotWritten,
        });
        state.unprobed = false;
        state.last_probe = now;
        Verdict::Probe(Bytes::copy_from_slice(&payload))
    }
}

/// A probe payload nobody can guess without reading the ping.
pub(crate) fn random_payload() -> [u8; 8] {
    getrandom::u64()
        .unwrap_or_else(|_| {
            // No OS randomness is close to impossible; the clock still varies.
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        })
        .to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DRAIN: Duration = Duration::from_secs(4);
    const PING: Duration = Duration::from_secs(30);

    fn probe(v: &Verdict) -> Bytes {
        match v {
            Verdict::Probe(p) => p.clone(),
            other => panic!("no probe: {other:?}"),
        }
    }

    #[test]
    fn unread_frames_make_a_slow_consumer_whatever_pongs_arrive() {
        let t0 = Instant::now();
        let l = Liveness::new(DRAIN, PING, t0);
        assert_eq!(l.period(), Duration::from_secs(1));
        assert_eq!(l.check(t0, || [1; 8]), Verdict::Fine, "nothing written yet");
        l.wrote_frames();
        let p = probe(&l.check(t0, || [7; 8]));
        l.wrote_ping(&p, true);
        // Pongs nobody asked for, or with another payload, do not count.
        l.pong(b"");
        l.pong(&[8; 8]);
        assert_eq!(l.check(t0 + DRAIN / 2, || [0; 8]), Verdict::Fine);
        assert_eq!(l.check(t0 + DRAIN, || [0; 8]), Verdict::SlowConsumer);
    }

    #[test]
    fn a_probe_stuck_behind_frames_counts_as_unread_frames() {
        let t0 = Instant::now();
        let l = Liveness::new(DRAIN, PING, t0);
        l.wrote_frames();
        probe(&l.check(t0, || [7; 8]));
        // The writer never got to the ping.
        assert_eq!(l.check(t0 + DRAIN, || [0; 8]), Verdict::SlowConsumer);
    }

    #[test]
    fn a_reader_answers_and_the_next_frames_get_a_new_probe() {
        let t0 = Instant::now();
        let l = Liveness::new(DRAIN, PING, t0);
        l.wrote_frames();
        let p = probe(&l.check(t0, || [7; 8]));
        l.wrote_ping(&p, true);
        l.pong(&p);
        assert_eq!(l.check(t0 + DRAIN * 2, || [0; 8]), Verdict::Fine);
        l.wrote_frames();
        let q = probe(&l.check(t0 + DRAIN * 2, || [9; 8]));
        assert_eq!(&q[..], &[9; 8]);
    }

    #[test]
    fn an_idle_connection_is_pinged_and_times_out_after_two_intervals() {
        let t0 = Instant::now();
        let l = Liveness::new(DRAIN, PING, t0);
        assert_eq!(l.check(t0 + PING / 2, || [0; 8]), Verdict::Fine);
        let p = probe(&l.check(t0 + PING, || [3; 8]));
        l.wrote_ping(&p, false);
        // Nothing to read, so the drain timeout does not apply.
        assert_eq!(l.check(t0 + PING + DRAIN, || [0; 8]), Verdict::Fine);
        // Unanswered for an interval: the same probe again.
        assert_eq!(probe(&l.check(t0 + PING * 2, || [0; 8])), p);
        l.wrote_ping(&p, false);
        assert_eq!(l.check(t0 + PING * 2, || [0; 8]), Verdict::Fine);
        assert_eq!(l.check(t0 + PING * 3, || [0; 8]), Verdict::PingTimeout);
    }

    #[test]
    fn payloads_differ() {
        assert_ne!(random_payload(), random_payload());
    }
}
