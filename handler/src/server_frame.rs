//! Encoding what the server sends. Every server frame is one [`ServerFrame`] variant,
//! encoded once into a shared [`Frame`]: a broadcast hands the same bytes to every
//! recipient. The one message that is not a frame of its own, `{"batch": […]}`, wraps
//! frames already encoded here, byte for byte (`batch.rs`).

use crate::error_kind::ErrorKind;
use serde::{Serialize, Serializer};
use std::sync::Arc;

/// An encoded server frame (JSON text), shared by every recipient of a broadcast.
pub type Frame = Arc<str>;

/// A frame the server sends. Each variant serializes to exactly the JSON object
/// `docs/PROTOCOL.md` gives, keys in the documented order (clients may compare bytes).
/// Adding a frame kind means adding a variant; the compiler then points at every
/// `match` that must handle it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ServerFrame<'a> {
    /// `{"error": sentence}`
    Error { error: &'a str },
    /// `{"joined": name}`: a member joined (or, at join, is already there).
    Joined { joined: &'a str },
    /// `{"quit": name}`
    Quit { quit: &'a str },
    /// `{"name", "message", "timestamp", "seq"}`: a stored chat message.
    Chat {
        name: &'a str,
        message: &'a str,
        timestamp: u64,
        seq: u64,
    },
    /// `{"ready": true, "epoch", "seq", "recovered"}`: the join is complete. A v2
    /// session's also carries `"v": 2`.
    Ready {
        ready: True,
        epoch: &'a str,
        seq: u64,
        recovered: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        v: Option<u8>,
    },
    /// v2: `{"roster": [{"name"}, …]}`, the members already in the room, sent once at join
    /// instead of one `joined` each. Entries are objects so that later v2 features can
    /// add fields without breaking clients.
    Roster { roster: Vec<RosterEntry<'a>> },
}

/// One member in a [`ServerFrame::Roster`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RosterEntry<'a> {
    pub name: &'a str,
}

/// Serializes as JSON `true`: the `ready` key of [`ServerFrame::Ready`] has no other value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct True;

impl Serialize for True {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bool(true)
    }
}

impl ServerFrame<'_> {
    /// `{"error": sentence}` for a kind of error.
    pub fn error(kind: ErrorKind) -> ServerFrame<'static> {
        ServerFrame::Error {
            error: kind.sentence(),
        }
    }

    /// Encodes the frame once, for one recipient or many.
    pub fn encode(&self) -> Frame {
        // Serializing strings, integers and booleans cannot fail; fall back to a fixed
        // frame rather than panic if it somehow did.
        match serde_json::to_string(self) {
            Ok(s) => s.into(),
            Err(_) => Arc::from(r#"{"error":"Internal error; please reconnect later."}"#),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_exact_json() {
        let enc = |f: ServerFrame| f.encode().to_string();
        assert_eq!(
            enc(ServerFrame::Error { error: "a\"b" }),
            r#"{"error":"a\"b"}"#
        );
        assert_eq!(
            enc(ServerFrame::error(ErrorKind::RateLimited)),
            r#"{"error":"Rate limited; slow down."}"#
        );
        assert_eq!(
            enc(ServerFrame::Joined { joined: "al" }),
            r#"{"joined":"al"}"#
        );
        assert_eq!(enc(ServerFrame::Quit { quit: "al" }), r#"{"quit":"al"}"#);
        assert_eq!(
            enc(ServerFrame::Chat {
                name: "a",
                message: "<b>",
                timestamp: 5,
                seq: 1
            }),
            r#"{"name":"a","message":"<b>","timestamp":5,"seq":1}"#
        );
        assert_eq!(
            enc(ServerFrame::Ready {
                ready: True,
                epoch: "ep",
                seq: 0,
                recovered: false,
                v: None,
            }),
            r#"{"ready":true,"epoch":"ep","seq":0,"recovered":false}"#
        );
        assert_eq!(
            enc(ServerFrame::Ready {
                ready: True,
                epoch: "ep",
                seq: 3,
                recovered: true,
                v: Some(2),
            }),
            r#"{"ready":true,"epoch":"ep","seq":3,"recovered":true,"v":2}"#
        );
        assert_eq!(
            enc(ServerFrame::Roster {
                roster: vec![RosterEntry { name: "a" }, RosterEntry { name: "b\"" }]
            }),
            r#"{"roster":[{"name":"a"},{"name":"b\""}]}"#
        );
        assert_eq!(
            enc(ServerFrame::Roster { roster: vec![] }),
            r#"{"roster":[]}"#
        );
    }

    #[test]
    fn the_internal_fallback_is_the_internal_error_sentence() {
        let fallback: serde_json::Value =
            serde_json::from_str(r#"{"error":"Internal error; please reconnect later."}"#).unwrap();
        assert_eq!(fallback["error"], ErrorKind::Internal.sentence());
    }
}
