//! How a room appears in logs. A private room's id is its secret (whoever knows it can
//! join), so logs show only a short tag derived from it, from which the id cannot be
//! recovered; a named room shows its name. Every log line that names a room goes
//! through [`room_tag`], so the rule lives here alone (the handler is to get a shared
//! one for both backends; this is the one place to swap it in).

use chat_handler::edge;
use std::hash::{Hash, Hasher};

/// `private:` and 8 hex digits (32 bits of a hash) for a private room id; the name
/// itself for a named room. 32 bits of a 256-bit id leave it unguessable, yet two
/// rooms' lines rarely share a tag, so logs stay readable.
pub(crate) fn room_tag(room: &str) -> String {
    if !edge::is_private_room_id(room) {
        return room.to_owned();
    }
    // SipHash with fixed keys: stable for the life of the process (all a log needs),
    // and one-way.
    let mut hasher = std::hash::DefaultHasher::new();
    room.hash(&mut hasher);
    format!("private:{:08x}", hasher.finish() >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ids_never_appear_and_names_do() {
        let id = "0123456789abcdef".repeat(4);
        let tag = room_tag(&id);
        assert!(tag.starts_with("private:") && tag.len() == "private:".len() + 8);
        // No run of the id's digits longer than chance would give survives in the tag.
        assert!(!id.contains(&tag["private:".len()..]));
        assert_eq!(room_tag(&id), tag, "stable");
        assert_ne!(room_tag(&"f".repeat(64)), tag);
        assert_eq!(room_tag("lobby"), "lobby");
        // 63 hex digits is a name, not a private id.
        assert_eq!(room_tag(&id[1..]), &id[1..]);
    }
}
