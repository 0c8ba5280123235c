//! The edge-chat conformance suite: one set of scenarios, run over real WebSockets
//! against every selected backend (the native local runner, `wrangler dev`).
//!
//! `tests/conformance.rs` is the libtest-mimic entry point; this library holds the
//! harness (backend processes), a small client, and the scenarios.

pub mod client;
pub mod error;
pub mod harness;
pub mod http;
pub mod observed;
pub mod scenarios;
pub mod token;
pub mod wire;

pub use error::{Error, Result};
