//! edge-chat's chat logic, sans-IO.
//!
//! A [`Room`] takes events (a connection opened, a frame received, a connection closed),
//! each with the current time, and returns [`Action`]s for the backend to carry out. It
//! owns a [`Storage`] implementation for history. There is no clock, no randomness and
//! no socket here, so the same rules run in the Cloudflare Durable Object (wasm32) and
//! in the native local runner, and every rule is testable without I/O.
//!
//! See `docs/PROTOCOL.md` for the wire protocol this crate implements.

pub mod config;
pub mod edge;
pub mod protocol;
pub mod ratelimit;
pub mod room;
pub mod session;
pub mod storage;

pub use config::{Config, ConfigError};
pub use protocol::Frame;
pub use room::{Action, CloseCode, Room};
pub use session::{ConnId, Peer, Session};
pub use storage::{MemoryStorage, Storage, StorageError, StoredMessage};
