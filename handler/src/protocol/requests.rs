//! The v2 requests inside a client frame, decoded and checked against the limits:
//! moderator frames, history pages, member pages and a chat frame's `cid`.

use crate::protocol::config::Config;
use crate::protocol::error_kind::ErrorKind;
use crate::protocol::user::is_user_id;
use serde_json::{Map, Value};

/// A moderator's request, decoded and checked against the limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Moderation {
    /// Tombstone message `seq`.
    Delete { seq: u64 },
    /// Close every session of `user` (4001), and refuse its hellos for `secs`.
    Kick { user: String, secs: u64 },
    /// Refuse the messages of `user` for `secs`; 0 unmutes.
    Mute { user: String, secs: u64 },
}

impl Moderation {
    pub(crate) fn action(&self) -> &'static str {
        match self {
            Moderation::Delete { .. } => "delete",
            Moderation::Kick { .. } => "kick",
            Moderation::Mute { .. } => "mute",
        }
    }
}

/// Recognises a moderator frame among the fields of a frame without a `message`:
/// `None` when it has none of `delete`, `kick`, `mute` (then it is simply a frame of the
/// wrong shape). More than one of them is refused rather than guessed at.
pub(crate) fn decode_moderation(
    map: &Map<String, Value>,
    config: &Config,
) -> Option<Result<Moderation, ErrorKind>> {
    let given: Vec<(&str, &Value)> = ["delete", "kick", "mute"]
        .into_iter()
        .filter_map(|k| map.get(k).filter(|v| !v.is_null()).map(|v| (k, v)))
        .collect();
    Some(match given.as_slice() {
        [] => return None,
        [("delete", v)] => v
            .as_u64()
            .map(|seq| Moderation::Delete { seq })
            .ok_or(ErrorKind::DeleteShape),
        [(kind, v)] => decode_target(kind, v, config),
        _ => Err(ErrorKind::ModerationShape),
    })
}

/// `{"user": <user id>, "secs": <whole seconds>}`; a kick's `secs` defaults to 0, a
/// mute's is required (a mute that forgot it must not silently unmute).
fn decode_target(kind: &str, v: &Value, config: &Config) -> Result<Moderation, ErrorKind> {
    let target = v.as_object().ok_or(ErrorKind::ModerationShape)?;
    let user = match target.get("user") {
        Some(Value::String(u)) if is_user_id(u) => u.clone(),
        _ => return Err(ErrorKind::ModerationShape),
    };
    let secs = match target.get("secs") {
        None | Some(Value::Null) if kind == "kick" => 0,
        // For a mute, no `secs` (or `null`) is no number either.
        None => return Err(ErrorKind::ModerationShape),
        Some(s) => s.as_u64().ok_or(ErrorKind::ModerationShape)?,
    };
    if secs > config.max_moderation_secs {
        return Err(ErrorKind::SecsTooLarge);
    }
    Ok(match kind {
        "kick" => Moderation::Kick { user, secs },
        _ => Moderation::Mute { user, secs },
    })
}

/// Checks an edit request's payload: `{"seq": <seq>, "message": <string>}`. The text
/// is returned as given; the room trims and checks it like a chat message.
pub(crate) fn parse_edit(request: Option<Value>) -> Result<(u64, String), ErrorKind> {
    let Some(Value::Object(mut edit)) = request else {
        return Err(ErrorKind::EditShape);
    };
    let seq = edit.get("seq").and_then(Value::as_u64);
    match (seq, edit.remove("message")) {
        (Some(seq), Some(Value::String(message))) => Ok((seq, message)),
        _ => Err(ErrorKind::EditShape),
    }
}

/// Checks a reaction request's payload: `{"seq": <seq>, "emoji": <string>}`.
pub(crate) fn parse_react(request: Option<Value>) -> Result<(u64, String), ErrorKind> {
    let Some(Value::Object(mut react)) = request else {
        return Err(ErrorKind::ReactShape);
    };
    let seq = react.get("seq").and_then(Value::as_u64);
    match (seq, react.remove("emoji")) {
        (Some(seq), Some(Value::String(emoji))) => Ok((seq, emoji)),
        _ => Err(ErrorKind::ReactShape),
    }
}

/// The longest `cid` a client may give.
pub const MAX_CID_LEN: usize = 64;

/// Checks a chat frame's `cid`: absent or `null` is none; otherwise 1 to
/// [`MAX_CID_LEN`] characters of `[A-Za-z0-9_-]`, which need no escaping anywhere
/// (JSON, SQL parameters, logs).
pub(crate) fn parse_cid(value: Option<&Value>) -> Result<Option<String>, ErrorKind> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(cid)) => check_cid(cid).map(Some),
        Some(_) => Err(ErrorKind::CidInvalid),
    }
}

/// [`parse_cid`] of a cid given as a string.
pub(crate) fn check_cid(cid: &str) -> Result<String, ErrorKind> {
    let valid = (1..=MAX_CID_LEN).contains(&cid.len())
        && cid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(cid.to_owned())
    } else {
        Err(ErrorKind::CidInvalid)
    }
}

/// Checks the request object: `before` a seq (a whole number ≥ 0) or absent/`null`;
/// `limit` a whole number from 1 to `history_page_max`, or absent/`null` for that
/// maximum. Other fields are ignored.
pub(crate) fn parse_history(
    request: &Value,
    config: &Config,
) -> Result<(Option<u64>, usize), ErrorKind> {
    let Value::Object(map) = request else {
        return Err(ErrorKind::HistoryShape);
    };
    let before = match map.get("before") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or(ErrorKind::HistoryBefore)?),
    };
    let limit = page_limit(map, config.history_page_max, ErrorKind::HistoryLimit)?;
    Ok((before, limit))
}

/// A page request's `limit`: a whole number from 1 to `max`, or absent/`null` for `max`;
/// `error` for anything else. Shared by history and member pages.
fn page_limit(
    map: &serde_json::Map<String, Value>,
    max: usize,
    error: ErrorKind,
) -> Result<usize, ErrorKind> {
    match map.get("limit") {
        None | Some(Value::Null) => Ok(max),
        Some(v) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| (1..=max).contains(n))
            .ok_or(error),
    }
}

/// The longest cursor text: the decimal digits of a `u64`.
const MAX_CURSOR_LEN: usize = 20;

/// Reads a member cursor (`next` of a roster frame or member page): the decimal digits
/// of a position in the room's join order, without sign, spaces or leading `+`.
/// `None` for anything else.
pub(crate) fn parse_cursor(text: &str) -> Option<u64> {
    let digits = !text.is_empty()
        && text.len() <= MAX_CURSOR_LEN
        && text.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| text.parse().ok())?
}

/// Checks a member page request: `after` a cursor string the server gave (`next`) or
/// absent/`null` for the first page; `limit` a whole number from 1 to
/// `roster_inline_max`, or absent/`null` for that maximum. Other fields are ignored.
pub(crate) fn parse_members(
    request: &Value,
    config: &Config,
) -> Result<(Option<u64>, usize), ErrorKind> {
    let Value::Object(map) = request else {
        return Err(ErrorKind::MembersShape);
    };
    let after = match map.get("after") {
        None | Some(Value::Null) => None,
        Some(Value::String(c)) => Some(parse_cursor(c).ok_or(ErrorKind::MembersCursor)?),
        Some(_) => return Err(ErrorKind::MembersCursor),
    };
    let limit = page_limit(map, config.roster_inline_max, ErrorKind::MembersLimit)?;
    Ok((after, limit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dec(v: Value) -> Option<Result<Moderation, ErrorKind>> {
        decode_moderation(v.as_object().unwrap(), &Config::default())
    }

    #[test]
    fn moderator_frames_decode() {
        assert_eq!(
            dec(json!({"delete": 17})),
            Some(Ok(Moderation::Delete { seq: 17 }))
        );
        assert_eq!(
            dec(json!({"kick": {"user": "u9", "secs": 300}})),
            Some(Ok(Moderation::Kick {
                user: "u9".into(),
                secs: 300
            }))
        );
        assert_eq!(
            dec(json!({"kick": {"user": "u9"}})),
            Some(Ok(Moderation::Kick {
                user: "u9".into(),
                secs: 0
            }))
        );
        assert_eq!(
            dec(json!({"mute": {"user": "u9", "secs": 0, "why": "x"}})),
            Some(Ok(Moderation::Mute {
                user: "u9".into(),
                secs: 0
            }))
        );
        assert_eq!(dec(json!({"other": 1})), None);
        assert_eq!(dec(json!({"delete": null})), None);
    }

    #[test]
    fn member_requests_decode_and_bad_ones_say_why() {
        let c = Config {
            roster_inline_max: 10,
            ..Config::default()
        };
        let p = |v: Value| parse_members(&v, &c);
        assert_eq!(p(json!({})), Ok((None, 10)));
        assert_eq!(p(json!({"after": null, "limit": null})), Ok((None, 10)));
        assert_eq!(p(json!({"after": "0", "limit": 1})), Ok((Some(0), 1)));
        assert_eq!(
            p(json!({"after": "18446744073709551615", "limit": 10, "x": 1})),
            Ok((Some(u64::MAX), 10))
        );
        for bad in [json!(null), json!([]), json!("7"), json!(7)] {
            assert_eq!(p(bad.clone()), Err(ErrorKind::MembersShape), "{bad}");
        }
        for after in [
            json!(7),
            json!(""),
            json!("-1"),
            json!("+1"),
            json!(" 1"),
            json!("1.0"),
            json!("18446744073709551616"),
            json!("9".repeat(1000)),
            json!({"n": 1}),
        ] {
            assert_eq!(
                p(json!({ "after": after })),
                Err(ErrorKind::MembersCursor),
                "{after}"
            );
        }
        for limit in [
            json!(0),
            json!(11),
            json!(-1),
            json!(1.5),
            json!("5"),
            json!(u64::MAX),
        ] {
            assert_eq!(
                p(json!({ "limit": limit })),
                Err(ErrorKind::MembersLimit),
                "{limit}"
            );
        }
    }

    #[test]
    fn bad_moderator_frames_say_why() {
        let max = Config::default().max_moderation_secs;
        for (v, want) in [
            (json!({"delete": -1}), ErrorKind::DeleteShape),
            (json!({"delete": 1.5}), ErrorKind::DeleteShape),
            (json!({"delete": "3"}), ErrorKind::DeleteShape),
            (json!({"mute": {"user": "u9"}}), ErrorKind::ModerationShape),
            (json!({"mute": "u9"}), ErrorKind::ModerationShape),
            (json!({"kick": {"user": 9}}), ErrorKind::ModerationShape),
            (json!({"kick": {"user": ""}}), ErrorKind::ModerationShape),
            (
                json!({"kick": {"user": "x".repeat(65)}}),
                ErrorKind::ModerationShape,
            ),
            (
                json!({"kick": {"user": "u", "secs": -5}}),
                ErrorKind::ModerationShape,
            ),
            (
                json!({"kick": {"user": "u", "secs": max + 1}}),
                ErrorKind::SecsTooLarge,
            ),
            (
                json!({"mute": {"user": "u", "secs": max + 1}}),
                ErrorKind::SecsTooLarge,
            ),
            (
                json!({"kick": {"user": "u"}, "mute": {"user": "u", "secs": 1}}),
                ErrorKind::ModerationShape,
            ),
            (
                json!({"delete": 1, "kick": {"user": "u"}}),
                ErrorKind::ModerationShape,
            ),
        ] {
            assert_eq!(dec(v.clone()), Some(Err(want)), "{v}");
        }
        assert!(dec(json!({"mute": {"user": "u", "secs": max}}))
            .unwrap()
            .is_ok());
    }
}
