//! How a room appears in logs. A private room's id is its only secret: whoever reads it
//! can join. Logs are read by more people and systems than the chat's users, so a
//! private id never appears in them, only a tag that tells rooms apart and gives
//! nothing back.

use crate::edge::{validate_room, RoomId};
use sha2::{Digest, Sha256};

/// The room as logs show it: a named room by its name (public by definition), a
/// private room as `private:` and the first 8 hex digits of the SHA-256 of its id
/// (`private:1a2b3c4d`). 32 bits of a hash cannot give back the 256 random bits of the
/// id, and the colon keeps a tag apart from every valid room name.
pub fn log_tag(room: &RoomId) -> String {
    match room {
        RoomId::Named(name) => name.clone(),
        RoomId::Private(id) => private_tag(id),
    }
}

/// The tag of a room known by its text (a token's room, a name not validated here): a
/// valid room name as [`log_tag`] shows it, anything else tagged as if it were private,
/// to be safe. Every log line that names a room goes through this or [`log_tag`].
pub fn log_tag_of(room: &str) -> String {
    validate_room(room).map_or_else(|_| private_tag(room), |r| log_tag(&r))
}

/// The tag of a private id, whatever its text (also for a Durable Object id that the
/// Worker holds but has not validated as a room name).
pub fn private_tag(id: &str) -> String {
    let digest = Sha256::digest(id.as_bytes());
    let mut tag = String::from("private:");
    for b in digest.iter().take(4) {
        tag.push_str(&format!("{b:02x}"));
    }
    tag
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_rooms_show_their_name_and_private_ones_a_tag() {
        assert_eq!(log_tag(&RoomId::Named("lobby".into())), "lobby");
        let id = "0123456789abcdef".repeat(4);
        let tag = log_tag(&validate_room(&id).unwrap());
        // SHA-256("0123…ef" x4) starts with these bytes (checked with sha256sum).
        assert_eq!(tag, "private:a8ae6e6e");
        assert!(!tag.contains(&id[..8]));
        assert!(validate_room(&tag).is_err(), "a tag is never a room name");
        let other = log_tag(&validate_room(&"f".repeat(64)).unwrap());
        assert_ne!(other, tag);
        assert_eq!(other.len(), "private:".len() + 8);
        // From text: the same tags, and text that is no room name is never shown.
        assert_eq!(log_tag_of("lobby"), "lobby");
        assert_eq!(log_tag_of(&id), tag);
        assert_eq!(log_tag_of("not a room"), private_tag("not a room"));
    }
}
