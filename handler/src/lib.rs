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
//! limit a [`Config`] key. See `docs/PROTOCOL.md` for the wire protocol.
//!
//! What a backend may want to count (rejections, join outcomes, stored messages) the
//! room reports as typed [`Event`]s to the backend's [`Observer`].

mod action;
mod address;
mod address_limits;
mod batch;
mod client_frame;
mod close;
mod config;
pub mod edge;
mod error_kind;
mod history;
pub mod identity;
mod log_tag;
pub mod moderation;
mod names;
mod observe;
mod ratelimit;
mod retry;
mod room;
mod server_frame;
mod session;
mod storage;

pub use action::Action;
pub use client_frame::{ClientFrame, Hello, Resume, ANONYMOUS};
pub use close::Close;
pub use config::{Config, ConfigError, ConfigKey};
pub use error_kind::ErrorKind;
pub use identity::{Auth, AuthSecret, Role};
pub use observe::{Event, JoinOutcome, Observer, Unobserved};
pub use ratelimit::Bucket;
pub use retry::{sender_key, MAX_CID_LEN};
pub use room::Room;
pub use server_frame::{Frame, RosterEntry, ServerFrame, True};
pub use session::{ConnId, Peer, Session, Verified, Version};
pub use storage::{
    sql, AuditEntry, MemoryStorage, Restriction, Storage, StorageError, StorageResult,
    StoredMessage, MIGRATIONS, SCHEMA,
};
