//! Who a verified sender is, as the wire shows it: a user id and a role.

use crate::protocol::client_frame::is_bidi_control;
use serde::{Deserialize, Serialize};

/// Longest user id (`sub`), in Unicode scalar values.
pub const MAX_USER_CHARS: usize = 64;
/// A verified session's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// May delete messages, kick and mute (see `docs/protocol.md`).
    Moderator,
    /// A server-side publisher (`POST /api/room/{room}/messages`). Never a WebSocket
    /// session's: a hello with a service token is refused.
    Service,
}

impl Role {
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Moderator => "moderator",
            Role::Service => "service",
        }
    }

    /// The role of its [`Role::as_str`] text, as storage keeps it.
    pub fn parse(text: &str) -> Option<Role> {
        [Role::Moderator, Role::Service]
            .into_iter()
            .find(|r| r.as_str() == text)
    }
}

/// True for a valid user id: 1–64 characters, none of them a control or a
/// text-direction character (it is shown to others as the sender's id).
pub fn is_user_id(s: &str) -> bool {
    let count = s.chars().take(MAX_USER_CHARS + 1).count();
    (1..=MAX_USER_CHARS).contains(&count)
        && !s.chars().any(|c| c.is_control() || is_bidi_control(c))
}
