//! The protocol version a client speaks, chosen in its hello.

use serde::{Deserialize, Serialize};

/// A session's protocol version, chosen in its hello (`"v": 2`). A v1 session never
/// receives a frame kind that v1 does not have.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Version {
    #[default]
    V1,
    V2,
}

impl Version {
    pub fn is_v1(&self) -> bool {
        *self == Version::V1
    }

    /// The number clients send and `ready` echoes.
    pub const fn number(self) -> u8 {
        match self {
            Version::V1 => 1,
            Version::V2 => 2,
        }
    }
}
