//! The wire protocol, declared once: what clients send ([`ClientFrame`] and its
//! requests), what the server sends ([`ServerFrame`]), every close code ([`Close`]),
//! every error ([`ErrorKind`]), request ids, the protocol versions, and every limit ([`Config`]).
//! It depends on no other part of the handler; the edge and the room build on it.

pub(crate) mod client_frame;
pub(crate) mod close;
pub(crate) mod config;
pub(crate) mod error_kind;
pub(crate) mod float_parse;
pub(crate) mod json_text;
pub(crate) mod names;
pub(crate) mod origin;
pub(crate) mod request_id;
pub(crate) mod requests;
pub(crate) mod server_frame;
pub(crate) mod user;
pub(crate) mod version;
