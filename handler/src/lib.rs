//! edge-chat's chat logic, sans-IO.
//!
//! A [`Room`] takes events (a connection opened, a frame received, a connection closed,
//! time passed), each with the current time, and returns [`Action`]s for the backend to
//! carry out. It owns a [`Storage`] implementation for history. There is no clock, no
//! randomness and no socket here, so the same rules run in the Cloudflare Durable Object
//! (wasm32) and in the native local runner, and every rule is testable without I/O.
//!
//! The protocol's vocabulary is typed and declared once: what clients send is a
//! [`ClientFrame`], what the server sends a [`ServerFrame`], every close a [`Close`],
//! every error sentence an [`ErrorKind`], every HTTP route an [`edge::Route`] and every
//! limit a [`Config`] key. See `docs/protocol.md` for the wire protocol.
//!
//! What a backend may want to count (rejections, join outcomes, stored messages) the
//! room reports as typed [`Event`]s to the backend's [`Observer`].

// Everything public is reachable from here: a `pub` item inside a private module would
// claim an API it is not part of.
#![warn(unreachable_pub)]

pub mod edge;
mod protocol;
mod room;

pub use edge::identity;
pub use edge::identity::{Auth, AuthSecret};
pub use protocol::client_frame::{ClientFrame, Hello, Resume, ANONYMOUS};
pub use protocol::close::Close;
pub use protocol::config::{Config, ConfigError, ConfigKey};
pub use protocol::error_kind::ErrorKind;
pub use protocol::requests::MAX_CID_LEN;
pub use protocol::server_frame::{Frame, RosterEntry, ServerFrame, True};
pub use protocol::user::Role;
pub use protocol::version::Version;
pub use room::action::Action;
pub use room::moderation;
pub use room::observe::{Event, JoinOutcome, Observer, Unobserved};
pub use room::publish::{self, PublishAnswer};
pub use room::ratelimit::Bucket;
pub use room::retry::sender_key;
pub use room::session::{ConnId, Peer, Session, Verified};
pub use room::storage::{
    sql, AuditEntry, MemoryStorage, Restriction, Storage, StorageError, StorageResult,
    StoredMessage, MIGRATIONS, SCHEMA,
};
pub use room::Room;
