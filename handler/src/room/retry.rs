//! Retry-safe sends. A client that is not sure whether its message was stored (the
//! connection dropped before the echo came back) sends it again with the same `cid`;
//! the room then answers with the stored original instead of storing it twice.
//!
//! The dedupe key is (sender, cid): the `sender` and `cid` columns of the message, and
//! their index (migration 1). Keeping it with the message means it survives reconnects,
//! restarts and hibernation with nothing held in memory or in a session.

use crate::protocol::config::Config;
use crate::protocol::error_kind::ErrorKind;
use crate::room::session::Session;
use crate::room::storage::{Storage, StoredMessage};

/// Who sent a message, as far as retries are concerned: two sends are the same send
/// when this key and the `cid` match. It is stored in the message's `sender` column and
/// never sent to clients.
///
/// Today it is the client address plus the display name: a page that reconnects from
/// the same address under the same name is the same sender. Once sessions carry a
/// verified user id (identity), that id alone must be the key, so the same user is
/// recognised from any address: this is the one place to change. The prefixes keep the
/// two kinds of key from ever colliding, and a name has no control characters, so the
/// newline cannot be forged into the address part.
pub fn sender_key(session: &Session) -> Option<String> {
    let name = session.name.as_deref()?;
    Some(match &session.verified {
        Some(v) => format!("user:{}", v.user),
        None => format!("addr:{}\nname:{name}", session.addr),
    })
}

/// The retry window as the two bounds [`crate::Storage::find_cid`] takes: an original
/// counts if its seq is above the first, or its timestamp at or after the second.
pub(crate) fn window(config: &Config, last_seq: u64, now_ms: u64) -> (u64, u64) {
    (
        last_seq.saturating_sub(config.cid_window_messages),
        now_ms.saturating_sub(config.cid_window_ms),
    )
}

/// What a chat frame with (or without) a `cid` is, as far as retries go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Retry {
    /// A message to store, with its `sender` key (kept only when it has a cid).
    New { sender: Option<String> },
    /// A repeat: this is the message already stored.
    Stored(StoredMessage),
}

/// Looks for the message `session`'s sender already stored with `cid` within the window
/// of a room at `(last_seq, now_ms)`. A storage failure refuses the send
/// ([`ErrorKind::NotStored`]): whether the original exists is unknown, and storing a
/// possible duplicate would break the promise, while the client simply retries.
pub(crate) fn check<S: Storage>(
    storage: &mut S,
    config: &Config,
    session: &Session,
    cid: Option<&str>,
    (last_seq, now_ms): (u64, u64),
) -> Result<Retry, ErrorKind> {
    // The key is built only for a frame with a cid: without one there is nothing to
    // look up or keep, and most frames have none.
    let Some((cid, sender)) = cid.and_then(|cid| Some((cid, sender_key(session)?))) else {
        return Ok(Retry::New { sender: None });
    };
    let (after_seq, since_ms) = window(config, last_seq, now_ms);
    match storage.find_cid(&sender, cid, after_seq, since_ms) {
        Ok(Some(original)) => Ok(Retry::Stored(original)),
        Ok(None) => Ok(Retry::New {
            sender: Some(sender),
        }),
        Err(_) => Err(ErrorKind::NotStored),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::session::Peer;

    #[test]
    fn the_sender_key_needs_a_name_and_keeps_address_and_name_apart() {
        let mut s = Session::new(
            1,
            Peer {
                addr: "10.0.0.1".into(),
            },
            0,
        );
        assert_eq!(sender_key(&s), None);
        s.name = Some("ana".into());
        assert_eq!(sender_key(&s).as_deref(), Some("addr:10.0.0.1\nname:ana"));
        let mut other = s.clone();
        other.addr = "10.0.0.2".into();
        assert_ne!(sender_key(&s), sender_key(&other));
    }

    #[test]
    fn the_window_saturates_at_the_start_of_time() {
        let config = Config::default();
        assert_eq!(window(&config, 5, 1_000), (0, 0));
        assert_eq!(
            window(&config, 5_000, 1_000_000),
            (4_000, 1_000_000 - 600_000)
        );
    }
}
