//! Durable Object hibernation, emulated (`--hibernate-after-secs`).
//!
//! Cloudflare evicts an idle Durable Object while its sockets stay open, so the Worker
//! keeps nothing only in memory: each socket's session is its attachment (JSON), history
//! is in SQLite, and the room is rebuilt with `Room::restore` the first time an event
//! needs it (`ChatRoom::live` in `worker/src/room_object.rs`). A room actor never has to
//! do that, but when asked to it does the same to a quiet room, so the rebuild path (and
//! every session's trip through JSON) runs here too, where it is easy to test and debug.
//!
//! [`HibernatingRoom`] owns the room in one of two states: live, or dropped with its
//! sessions serialized. The actor asks it for the room on every event ([`room`]), which
//! rebuilds it if needed, and drops it when quiet ([`hibernate`]). The sockets are not
//! part of it: the actor keeps its links open across hibernation, as the runtime keeps
//! a Durable Object's sockets.
//!
//! [`room`]: HibernatingRoom::room
//! [`hibernate`]: HibernatingRoom::hibernate

use crate::link::ConnLink;
use crate::metrics::Metrics;
pub(crate) use crate::storage_thread::RoomStorage;
use crate::storage_thread::StorageThread;
use chat_handler::edge;
use chat_handler::{Auth, AuthSecret, Close, Config, ConnId, Room, Session};
use std::collections::HashMap;
use std::sync::Arc;
use tracing::{info, warn};

/// The room: live, or dropped with its sessions serialized (hibernated, or not opened
/// yet when there are none).
enum State {
    Live(Box<Room<RoomStorage>>),
    /// Each session as JSON, as a Durable Object keeps it in its socket's attachment.
    Dropped {
        sessions: Vec<String>,
    },
}

/// One room's handler state, dropped while quiet and rebuilt on demand.
pub(crate) struct HibernatingRoom {
    /// For opening the room's storage.
    name: String,
    /// For logs: a private room's id never appears (`edge::log_tag`).
    tag: String,
    config: Config,
    /// The room's storage (a handle on the storage thread); each rebuilt room gets a
    /// clone of it.
    storage: RoomStorage,
    /// Verifies join tokens when set; the room's id for the `room` claim is its name
    /// (private ids are names here too).
    auth: Option<Auth>,
    /// Every rebuilt room reports to it.
    metrics: Arc<Metrics>,
    state: State,
}

impl HibernatingRoom {
    /// A room not opened yet: the first event that needs it reads it from `storage`.
    pub(crate) fn new(
        name: String,
        config: Config,
        storage: Arc<StorageThread>,
        metrics: Arc<Metrics>,
    ) -> Self {
        HibernatingRoom {
            tag: log_tag(&name),
            storage: storage.room(&name),
            name,
            config,
            auth: None,
            metrics,
            state: State::Dropped {
                sessions: Vec::new(),
            },
        }
    }

    /// Turns signed identity on with `secret` (`None` leaves it off).
    pub(crate) fn with_auth_secret(mut self, secret: Option<AuthSecret>) -> Self {
        self.auth = secret.map(|secret| Auth {
            secret,
            room: self.name.clone(),
        });
        self
    }

    /// The room if it is live, without rebuilding it.
    pub(crate) fn live(&self) -> Option<&Room<RoomStorage>> {
        match &self.state {
            State::Live(room) => Some(room),
            State::Dropped { .. } => None,
        }
    }

    /// The room if it is live, without rebuilding it.
    pub(crate) fn live_mut(&mut self) -> Option<&mut Room<RoomStorage>> {
        match &mut self.state {
            State::Live(room) => Some(room),
            State::Dropped { .. } => None,
        }
    }

    /// Whether the room has sessions, live or kept.
    pub(crate) fn has_sessions(&self) -> bool {
        match &self.state {
            State::Live(room) => !room.is_empty(),
            State::Dropped { sessions } => !sessions.is_empty(),
        }
    }

    /// The live room, rebuilding it from storage and the kept sessions if needed.
    /// `None` if storage cannot be opened; then every link is closed with
    /// [`Close::Internal`] (a room that cannot read its history cannot serve anyone),
    /// as the Worker closes every socket of its object.
    pub(crate) fn room(
        &mut self,
        links: &mut HashMap<ConnId, ConnLink>,
    ) -> Option<&mut Room<RoomStorage>> {
        if let State::Dropped { sessions } = &mut self.state {
            let kept = std::mem::take(sessions);
            let count = kept.len();
            let restored: Vec<Session> = kept
                .iter()
                .filter_map(|s| match serde_json::from_str(s) {
                    Ok(session) => Some(session),
                    Err(e) => {
                        warn!(room = %self.tag, error = %e, "dropping unreadable session");
                        None
                    }
                })
                .collect();
            let storage = self.storage.clone();
            let opened = Room::restore(self.config.clone(), storage, &random_epoch(), restored)
                .map(|room| room.with_auth(self.auth.clone()));
            match opened {
                Ok(mut room) => {
                    room.set_observer(self.metrics.observer());
                    if count > 0 {
                        self.metrics.room_restored();
                        info!(room = %self.tag, sessions = count, "room restored");
                    }
                    self.state = State::Live(Box::new(room));
                }
                Err(e) => {
                    warn!(room = %self.tag, error = %e, "cannot open room storage");
                    for (_, link) in links.drain() {
                        link.close(Close::Internal);
                    }
                    return None;
                }
            }
        }
        self.live_mut()
    }

    /// Forgets the room and its sessions, after storage failed under it: the actor
    /// has closed every connection, and the next event opens the room afresh from what
    /// storage holds.
    pub(crate) fn discard(&mut self) {
        self.state = State::Dropped {
            sessions: Vec::new(),
        };
    }

    /// Emulates a Durable Object being evicted while its sockets stay open: keep the
    /// sessions exactly as a DO keeps socket attachments (JSON), drop the room. Its storage
    /// was never more than a handle on the storage thread, kept for the next rebuild.
    pub(crate) fn hibernate(&mut self) {
        let State::Live(room) = &self.state else {
            return;
        };
        let sessions: Vec<String> = room
            .sessions()
            .filter_map(|s| serde_json::to_string(s).ok())
            .collect();
        let count = sessions.len();
        self.state = State::Dropped { sessions };
        self.metrics.room_hibernated();
        info!(room = %self.tag, sessions = count, "room hibernated");
    }
}

/// A fresh random epoch candidate (see `edge::epoch_candidate`).
fn random_epoch() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness is close to impossible; a clock-based id still differs
        // from every earlier epoch, which is all an epoch must do.
        bytes = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default())
        .to_be_bytes();
    }
    edge::epoch_candidate(bytes)
}

/// A room as logs show it: never a private room's id (see `edge::log_tag`). Room names
/// reach the runner validated; anything else is tagged as if private, to be safe.
pub(crate) fn log_tag(room: &str) -> String {
    edge::log_tag_of(room)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::{self, Out, Pop, WriterEnd};
    use chat_handler::Peer;

    fn link() -> (ConnLink, WriterEnd) {
        link::queue(8, Arc::default())
    }

    #[tokio::test]
    async fn a_hibernated_room_comes_back_with_its_sessions_and_history() {
        let storage = StorageThread::in_memory();
        let mut room = HibernatingRoom::new("r".into(), Config::default(), storage, Arc::default());
        let mut links = HashMap::new();
        assert!(room.live().is_none(), "opened before it was needed");
        let live = room.room(&mut links).unwrap();
        let peer = Peer { addr: "a".into() };
        live.try_connect(1, peer, 1).unwrap();
        live.on_text(1, r#"{"name":"alice"}"#, 2);
        live.on_text(1, r#"{"message":"hi"}"#, 3);
        let epoch = live.epoch().to_owned();

        room.hibernate();
        assert!(room.live().is_none());
        assert!(room.has_sessions());

        let back = room.room(&mut links).unwrap();
        assert_eq!(back.epoch(), epoch);
        assert_eq!(back.last_seq(), 1);
        let session = back.session(1).expect("session restored");
        assert_eq!(session.name(), Some("alice"));
    }

    #[tokio::test]
    async fn unreadable_storage_closes_every_link_as_internal() {
        let dir = tempfile::tempdir().unwrap();
        // A database without the schema: every read fails.
        let thread = StorageThread::start(
            crate::storage_thread::Database::File(&dir.path().join("db")),
            crate::stored_rooms::StoredRooms::unbounded(),
            prometheus_client::metrics::histogram::Histogram::new(std::iter::empty()),
        );
        let thread = Arc::new(thread.unwrap());
        let mut room = HibernatingRoom::new(
            "r".into(),
            Config::default(),
            thread.clone(),
            Arc::default(),
        );
        let (a, a_rx) = link();
        let (b, b_rx) = link();
        let mut links = HashMap::from([(1, a), (2, b)]);
        assert!(room.room(&mut links).is_none());
        assert!(links.is_empty());
        for rx in [&a_rx, &b_rx] {
            assert!(matches!(rx.pop(), Pop::Item(Out::Close(Close::Internal))));
        }
        thread.stop(std::time::Duration::from_secs(5)).await;
    }
}
