//! Request ids (v2): a client frame after the hello may carry `"id"`, and the one frame
//! that answers it echoes it as `"re"`. Everything about ids on the wire is here: the
//! id rule ([`parse`]), the `re` field every answer ends with ([`with_re`]) and the
//! `{"ok": true, …, "re"}` frame of a request that succeeds without a result frame of
//! its own ([`ok_frame`]). Which frame answers which request is the room's business
//! (`Room::text`, `Room::reply`).
//!
//! A new kind of request needs nothing for ids: the id of any object frame is read in
//! `client_frame::decode_any`, its errors go through `Room::send_error` (which answers),
//! and a request that sent nothing to its sender gets `{"ok": true}` when it is done. A
//! request with a result frame of its own sends it with `Room::reply` (instead of an
//! `Effect::Send`), which gives it the `re`; one whose `ok` says more (a chat message's
//! `seq`) calls `Room::answer_ok` itself.

use crate::protocol::error_kind::ErrorKind;
use crate::protocol::requests::MAX_CID_LEN;
use crate::protocol::server_frame::Frame;
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;

/// A checked request id: 1 to [`MAX_ID_LEN`] characters of `[A-Za-z0-9_-]`, the cid
/// rule. It needs no escaping in JSON, which [`with_re`] relies on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestId(Box<str>);

/// The longest id a client may give: the same as a cid.
pub(crate) const MAX_ID_LEN: usize = MAX_CID_LEN;

/// The `id` of a decoded frame: `None` when absent or `null`, else the checked id or
/// [`ErrorKind::IdInvalid`]. A frame's other errors do not hide a valid id, so that
/// the error answering it can echo it.
pub(crate) type IdField = Option<Result<RequestId, ErrorKind>>;

/// Checks an id given as a string.
pub(crate) fn check(id: &str) -> Result<RequestId, ErrorKind> {
    let valid = (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(RequestId(id.into()))
    } else {
        Err(ErrorKind::IdInvalid)
    }
}

/// The `id` field of a frame's JSON object, checked.
pub(crate) fn parse(value: Option<&Value>) -> IdField {
    match value {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(check(id)),
        Some(_) => Some(Err(ErrorKind::IdInvalid)),
    }
}

/// Only the `id` of a frame, other fields skipped: for a frame refused before it is
/// decoded (the rate limit), whose refusal still answers its id. `None` for a frame
/// that is not a JSON object or has no usable id.
pub(crate) fn peek(text: &str) -> Option<RequestId> {
    #[derive(Deserialize)]
    struct OnlyId<'a> {
        #[serde(borrow, default)]
        id: Option<Cow<'a, str>>,
    }
    let is_object = text
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('{');
    if !is_object {
        return None;
    }
    let only: OnlyId = serde_json::from_str(text).ok()?;
    check(&only.id?).ok()
}

/// `frame` (an encoded JSON object) with `"re": id` as its last key: the answer to one
/// requester, encoded for it alone (a broadcast frame is never given a `re`).
pub(crate) fn with_re(frame: &str, id: &RequestId) -> Frame {
    let body = frame.strip_suffix('}').unwrap_or(frame);
    // `{}` has no key to follow with a comma.
    let comma = if body.ends_with('{') { "" } else { "," };
    let mut out = String::with_capacity(body.len() + id.0.len() + 10);
    out.push_str(body);
    out.push_str(comma);
    out.push_str("\"re\":\"");
    // Checked to need no escaping (see [`check`]).
    out.push_str(&id.0);
    out.push_str("\"}");
    out.into()
}

/// `{"ok": true, "seq": seq, "re": id}`: a request done, whose effect is a broadcast or
/// nothing; `seq` for a chat message (the seq it was stored as).
pub(crate) fn ok_frame(id: &RequestId, seq: Option<u64>) -> Frame {
    let ok = match seq {
        Some(seq) => format!("{{\"ok\":true,\"seq\":{seq}}}"),
        None => "{\"ok\":true}".to_owned(),
    };
    with_re(&ok, id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id(s: &str) -> RequestId {
        check(s).unwrap()
    }

    #[test]
    fn ids_follow_the_cid_rule() {
        assert_eq!(parse(None), None);
        assert_eq!(parse(Some(&json!(null))), None);
        assert_eq!(parse(Some(&json!("a-Z_9"))), Some(Ok(id("a-Z_9"))));
        assert_eq!(
            parse(Some(&json!("a".repeat(64)))),
            Some(Ok(id(&"a".repeat(64))))
        );
        for bad in [
            json!(""),
            json!("a".repeat(65)),
            json!("a b"),
            json!("a\"b"),
            json!("é"),
            json!(7),
            json!(true),
            json!(["a"]),
            json!({"id": "a"}),
        ] {
            assert_eq!(parse(Some(&bad)), Some(Err(ErrorKind::IdInvalid)), "{bad}");
        }
    }

    #[test]
    fn re_is_the_last_key() {
        let r = id("r1");
        assert_eq!(
            &*with_re(r#"{"error":"x","code":"y"}"#, &r),
            r#"{"error":"x","code":"y","re":"r1"}"#
        );
        assert_eq!(&*with_re("{}", &r), r#"{"re":"r1"}"#);
        assert_eq!(&*ok_frame(&r, None), r#"{"ok":true,"re":"r1"}"#);
        assert_eq!(
            &*ok_frame(&r, Some(42)),
            r#"{"ok":true,"seq":42,"re":"r1"}"#
        );
        let page = with_re(r#"{"history":[],"before":1,"more":false}"#, &r);
        let v: Value = serde_json::from_str(&page).unwrap();
        assert_eq!(v["re"], "r1");
        assert_eq!(v["more"], false);
    }

    #[test]
    fn peek_finds_only_a_valid_id() {
        assert_eq!(peek(r#"{"message":"hi","id":"k1"}"#), Some(id("k1")));
        assert_eq!(peek(r#" {"id":"k\u0031"}"#), Some(id("k1")));
        assert_eq!(peek(r#"{"message":"hi"}"#), None);
        assert_eq!(peek(r#"{"id":"a b"}"#), None);
        assert_eq!(peek(r#"{"id":5}"#), None);
        assert_eq!(peek(r#"["id"]"#), None);
        assert_eq!(peek("nope"), None);
    }
}
