//! History paging (v2): `{"history": {"before": <seq>, "limit": <n>}}` answers the
//! newest `limit` retained messages with a seq below `before`, oldest first, so that a
//! client walks back page by page with no gap and no overlap: each next request's
//! `before` is the lowest seq of the page it has.

use crate::protocol::error_kind::ErrorKind;
use crate::protocol::server_frame::{Frame, ServerFrame};
use crate::room::storage::{Storage, StoredMessage};

/// The answer to a checked request in a room whose newest seq is `last_seq`:
/// `{"history": [...], "before": <the request's before, or last_seq + 1>, "more": <bool>}`.
pub(crate) fn page<S: Storage>(
    storage: &mut S,
    before: Option<u64>,
    limit: usize,
    last_seq: u64,
) -> Result<Frame, ErrorKind> {
    let newest_bound = last_seq.saturating_add(1);
    let before = before.unwrap_or(newest_bound);
    // A bound past the newest message asks for nothing more than the newest page, and
    // clamping keeps a client's huge number away from SQLite's (and JS's) integers.
    let mut rows = storage
        .before(before.min(newest_bound), limit.saturating_add(1))
        .map_err(|_| ErrorKind::HistoryUnavailable)?;
    // One row beyond the page says whether an older message is retained.
    let more = rows.len() > limit;
    if more {
        rows.remove(0);
    }
    let history = rows
        .iter()
        // Deleted text never goes out in a page. Storage already leaves tombstones out
        // of a page (so pages stay full); this keeps the promise even if it did not.
        .filter(|m| !m.deleted)
        .map(chat)
        .collect();
    Ok(ServerFrame::History {
        history,
        before,
        more,
    }
    .encode())
}

/// A stored message as the chat frame it was broadcast as.
pub(crate) fn chat(m: &StoredMessage) -> ServerFrame<'_> {
    ServerFrame::Chat {
        name: &m.name,
        message: &m.message,
        timestamp: m.timestamp,
        seq: m.seq,
        user: m.user.as_deref(),
        cid: m.cid.as_deref(),
        role: m.role,
        edited_at: m.edited_at,
        reactions: m
            .reactions
            .as_deref()
            .and_then(crate::room::react::counts_json),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::storage::MemoryStorage;
    use serde_json::Value;

    fn storage_with(seqs: std::ops::RangeInclusive<u64>) -> MemoryStorage {
        let mut s = MemoryStorage::new();
        for seq in seqs {
            s.append(&StoredMessage {
                seq,
                timestamp: 1000 + seq,
                name: "a".into(),
                message: format!("m{seq}"),
                ..StoredMessage::default()
            })
            .unwrap();
        }
        s
    }

    fn seqs_of(frame: &Frame) -> (Vec<u64>, u64, bool) {
        let v: Value = serde_json::from_str(frame).unwrap();
        let seqs = v["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect();
        (
            seqs,
            v["before"].as_u64().unwrap(),
            v["more"].as_bool().unwrap(),
        )
    }

    #[test]
    fn pages_walk_back_without_gap_or_overlap() {
        // Retained: 3..=10 (1 and 2 pruned).
        let mut s = storage_with(3..=10);
        let p =
            |s: &mut MemoryStorage, before, limit| seqs_of(&page(s, before, limit, 10).unwrap());
        assert_eq!(p(&mut s, None, 3), (vec![8, 9, 10], 11, true));
        assert_eq!(p(&mut s, Some(8), 3), (vec![5, 6, 7], 8, true));
        assert_eq!(p(&mut s, Some(5), 3), (vec![3, 4], 5, false));
        // Exactly a page's worth left: no more.
        assert_eq!(p(&mut s, Some(6), 3), (vec![3, 4, 5], 6, false));
        assert_eq!(p(&mut s, Some(3), 3), (vec![], 3, false));
        assert_eq!(p(&mut s, Some(0), 3), (vec![], 0, false));
        // A bound past the newest is echoed, and answered with the newest page.
        assert_eq!(p(&mut s, Some(u64::MAX), 2), (vec![9, 10], u64::MAX, true));
    }

    #[test]
    fn an_empty_room_has_an_empty_page() {
        let mut s = MemoryStorage::new();
        assert_eq!(
            seqs_of(&page(&mut s, None, 5, 0).unwrap()),
            (vec![], 1, false)
        );
    }
}
