//! Decoding what a client sends. Decoding never panics and never echoes parser
//! internals: every failure is an [`ErrorKind`], a short sentence for the person using
//! the client.

use crate::protocol::config::Config;
use crate::protocol::error_kind::ErrorKind;
use crate::protocol::request_id::{self, IdField};
use crate::protocol::requests::{self, Moderation};
use crate::protocol::version::Version;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::borrow::Cow;

/// The name given to a session whose hello carries no name, or an empty one.
pub const ANONYMOUS: &str = "anonymous";

/// A decoded client frame. The first frame of a connection is always a hello; every
/// later one is one of the other variants. Adding a frame kind means adding a variant
/// here and its arm in [`ClientFrame::decode`]; the room's `match` then asks for the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    /// The first frame: `{"name": …, "resume": {"epoch": …, "seq": …}}`, every field optional.
    Hello(Hello),
    /// `{"message": …, "cid": …}`: the message untrimmed and unchecked (the room
    /// validates it); the `cid`, if given, already checked ([`requests::parse_cid`]).
    Chat {
        message: String,
        cid: Option<String>,
    },
    /// v2: `{"history": {"before": …, "limit": …}}`, checked ([`requests::parse_history`]):
    /// `before` is `None` when left out (the newest messages), `limit` within
    /// 1..=`history_page_max` (that maximum when left out).
    History { before: Option<u64>, limit: usize },
    /// v2: `{"members": {"after": …, "limit": …}}`, checked
    /// ([`requests::parse_members`]): `after` is the position the cursor names (`None`
    /// for the first page), `limit` within 1..=`roster_inline_max`.
    Members { after: Option<u64>, limit: usize },
    /// `{"delete": …}`, `{"kick": …}` or `{"mute": …}`, or why its payload is refused.
    /// The room checks that the sender is a moderator before it looks at either, so a
    /// non-moderator is told that whatever it sent.
    Moderate(Result<Moderation, ErrorKind>),
    /// v2: `{"edit": {"seq": …, "message": …}}`, its shape checked
    /// ([`requests::parse_edit`]); the message untrimmed and unchecked, as for `Chat`.
    Edit { seq: u64, message: String },
    /// v2: `{"react": {"seq": …, "emoji": …}}`, its shape checked
    /// ([`requests::parse_react`]); the emoji unchecked (the room checks it).
    React { seq: u64, emoji: String },
    /// v2: `{"typing": true}` or `{"typing": false}` (see `room/typing.rs`). The room
    /// answers a v1 session's with the error it got before typing existed.
    Typing(bool),
}

/// A resume request from the hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    pub epoch: String,
    pub seq: u64,
}

/// A decoded first frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Validated and trimmed; [`ANONYMOUS`] when none was given.
    pub name: String,
    /// `None` when absent or malformed (a malformed resume is ignored, not an error).
    pub resume: Option<Resume>,
    /// `"v": 2` opts in to protocol v2; absent (or 1) is v1.
    pub version: Version,
    /// The join token, unchecked (`None` when absent or `null`). A token that is not a
    /// string is kept as an empty one, which verification refuses as malformed: it
    /// must not pass for no token at all.
    pub token: Option<String>,
    /// `"batch": true` in a v2 hello opts in to batched delivery. Always false for v1:
    /// a v1 hello's `batch` is ignored like any unknown field.
    pub batch: bool,
}

impl ClientFrame {
    /// Decodes a text frame. `joined` says whether the connection has sent its hello:
    /// before it, any JSON object is a hello (Cloudflare's demo sends `{"name"}` first and
    /// nothing else is accepted then); after it, only the later frame kinds are.
    pub fn decode(text: &str, joined: bool, config: &Config) -> Result<ClientFrame, ErrorKind> {
        Self::decode_request(text, joined, config).0
    }

    /// [`ClientFrame::decode`], and the frame's request `id` ([`request_id`]) when it is
    /// a frame after the hello: the id is read whether or not the rest of the frame is
    /// valid, so that its error can answer it. A hello's `id` means nothing.
    pub(crate) fn decode_request(
        text: &str,
        joined: bool,
        config: &Config,
    ) -> (Result<ClientFrame, ErrorKind>, IdField) {
        if joined {
            decode_joined(text, config)
        } else {
            (decode_hello(text, config).map(ClientFrame::Hello), None)
        }
    }
}

/// Whether a hello that was refused asked for protocol v2 (a JSON object with `"v": 2`,
/// whatever else is wrong with it): its error then carries the v2 `code`. Read again
/// from the text only on that rare path, so that decoding a hello stays as it is.
pub(crate) fn hello_asks_v2(text: &str) -> bool {
    parse_object(text).is_some_and(|map| map.get("v").and_then(Value::as_u64) == Some(2))
}

/// Direction overrides and isolates, refused in names where they can spoof another user.
pub(crate) fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Validates and trims a display name.
pub(crate) fn validate_name(raw: &str, config: &Config) -> Result<String, ErrorKind> {
    let name = raw.trim();
    if name.is_empty() {
        return Ok(ANONYMOUS.to_owned());
    }
    if name.chars().count() > config.max_name_chars {
        return Err(ErrorKind::NameTooLong);
    }
    if name.chars().any(char::is_control) {
        return Err(ErrorKind::NameControl);
    }
    if name.chars().any(is_bidi_control) {
        return Err(ErrorKind::NameBidi);
    }
    // Refused rather than renamed `anonymous`: a client that wants no name sends none,
    // so an invisible one is either a mistake the user should see or an attempt to
    // speak unseen.
    if crate::protocol::names::is_blank(name) {
        return Err(ErrorKind::NameInvisible);
    }
    // A check mark would imitate the mark clients give verified users.
    if crate::protocol::names::has_check_mark(name) {
        return Err(ErrorKind::NameCheckMark);
    }
    Ok(name.to_owned())
}

/// Validates and trims a chat message. Control characters (newlines, tabs) and
/// direction controls are allowed in messages.
pub(crate) fn validate_message<'a>(raw: &'a str, config: &Config) -> Result<&'a str, ErrorKind> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(ErrorKind::MessageEmpty);
    }
    // No more bytes than the limit means no more characters either: most messages are
    // not counted at all. Otherwise count at most one past the limit, so a huge message
    // costs no more than a long one.
    if text.len() > config.max_message_chars
        && text.chars().take(config.max_message_chars + 1).count() > config.max_message_chars
    {
        return Err(ErrorKind::MessageTooLong);
    }
    Ok(text)
}

fn parse_object(text: &str) -> Option<Map<String, Value>> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// Any JSON object is a hello; `name` missing, `null` or empty joins as [`ANONYMOUS`].
/// Unknown fields are ignored. `v` must be 1 or 2 when present: a client that asks
/// for a version this server does not speak is told so rather than served another.
fn decode_hello(text: &str, config: &Config) -> Result<Hello, ErrorKind> {
    let map = parse_object(text).ok_or(ErrorKind::HelloNotObject)?;
    let name = match map.get("name") {
        None | Some(Value::Null) => ANONYMOUS.to_owned(),
        Some(Value::String(s)) => validate_name(s, config)?,
        Some(_) => return Err(ErrorKind::NameNotString),
    };
    let resume = map.get("resume").and_then(|r| {
        let epoch = r.get("epoch")?.as_str()?.to_owned();
        let seq = r.get("seq")?.as_u64()?;
        Some(Resume { epoch, seq })
    });
    let version = match map.get("v") {
        None | Some(Value::Null) => Version::V1,
        Some(v) if v.as_u64() == Some(1) => Version::V1,
        Some(v) if v.as_u64() == Some(2) => Version::V2,
        Some(_) => return Err(ErrorKind::UnsupportedVersion),
    };
    let token = match map.get("token") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => Some(t.clone()),
        Some(_) => Some(String::new()),
    };
    // Only v2 knows `batch`. A v2 client that sends something other than a boolean is
    // told so, as for `v`, rather than left to wonder why nothing is batched; a v1
    // hello keeps ignoring it, like every field v1 does not know.
    let batch = match (version, map.get("batch")) {
        (Version::V1, _) | (_, None | Some(Value::Null)) => false,
        (_, Some(Value::Bool(b))) => *b,
        (_, Some(_)) => return Err(ErrorKind::BatchNotBoolean),
    };
    Ok(Hello {
        name,
        resume,
        version,
        token,
        batch,
    })
}

/// The usual frame after the hello, `{"message": "…"}` with at most a `"cid"` (a
/// string or `null`) besides, each key once. Decoded straight into borrowed strings
/// rather than through a JSON tree (a map, its keys and values, all allocated and
/// dropped again): most frames a room handles are this one. Anything else, including
/// every invalid frame, fails here and goes the general way, which decides what it is.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainChat<'a> {
    #[serde(borrow)]
    message: Cow<'a, str>,
    /// A cid never needs an escape; one written with escapes goes the general way.
    #[serde(default)]
    cid: Option<&'a str>,
    /// The request id, the same way.
    #[serde(default)]
    id: Option<&'a str>,
}

impl PlainChat<'_> {
    /// `text` as this frame, if it is one. A derived struct would also take a JSON
    /// array (its fields in order), and a chat frame is an object.
    fn decode(text: &str) -> Option<PlainChat<'_>> {
        let is_object = text
            .trim_start_matches([' ', '\t', '\n', '\r'])
            .starts_with('{');
        is_object.then(|| serde_json::from_str(text).ok())?
    }

    /// The same frame and id as [`decode_joined`] makes of this text by the general way.
    fn frame(self) -> (Result<ClientFrame, ErrorKind>, IdField) {
        let id = self.id.map(request_id::check);
        let frame = self
            .cid
            .map(requests::check_cid)
            .transpose()
            .map(|cid| ClientFrame::Chat {
                message: self.message.into_owned(),
                cid,
            });
        (frame, id)
    }
}

/// Exactly `{"typing": true}` or `{"typing": false}` (white space aside): the typing
/// frame as clients send it, recognised before the frame bucket is charged, since
/// typing frames have a bucket of their own. Anything else goes the general way
/// ([`decode_joined`]), and pays a frame token first like any frame.
pub(crate) fn plain_typing(text: &str) -> Option<bool> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct PlainTyping {
        typing: bool,
    }
    let is_object = text
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('{');
    if !is_object || text.len() > 64 {
        return None;
    }
    serde_json::from_str::<PlainTyping>(text)
        .ok()
        .map(|t| t.typing)
}

/// A frame after the hello: a chat message if it has `message`, else a history request
/// if it has `history`, else a member page request if it has `members`, else a
/// moderator's frame.
fn decode_joined(text: &str, config: &Config) -> (Result<ClientFrame, ErrorKind>, IdField) {
    match PlainChat::decode(text) {
        Some(chat) => chat.frame(),
        None => decode_any(text, config),
    }
}

/// [`decode_joined`] for any frame, through a JSON tree. Any object's `id` is read
/// here, once, for every kind of frame (a new kind needs nothing for ids).
fn decode_any(text: &str, config: &Config) -> (Result<ClientFrame, ErrorKind>, IdField) {
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return (Err(ErrorKind::NotJson), None);
    };
    let Value::Object(map) = value else {
        return (Err(ErrorKind::WrongShape), None);
    };
    let id = request_id::parse(map.get("id"));
    (decode_object(map, config), id)
}

/// A frame after the hello that is a JSON object: which kind it is.
fn decode_object(mut map: Map<String, Value>, config: &Config) -> Result<ClientFrame, ErrorKind> {
    match map.remove("message") {
        Some(Value::String(message)) => {
            let cid = requests::parse_cid(map.get("cid"))?;
            Ok(ClientFrame::Chat { message, cid })
        }
        // Without a message: a history request, or a moderator's frame.
        None | Some(Value::Null) => {
            let given = |key: &str| map.get(key).filter(|v| !v.is_null());
            match (given("history"), given("members")) {
                (Some(request), _) => {
                    let (before, limit) = requests::parse_history(request, config)?;
                    Ok(ClientFrame::History { before, limit })
                }
                (None, Some(request)) => {
                    let (after, limit) = requests::parse_members(request, config)?;
                    Ok(ClientFrame::Members { after, limit })
                }
                (None, None) if given("react").is_some() => {
                    let (seq, emoji) = requests::parse_react(map.remove("react"))?;
                    Ok(ClientFrame::React { seq, emoji })
                }
                (None, None) if given("edit").is_some() => {
                    let (seq, message) = requests::parse_edit(map.remove("edit"))?;
                    Ok(ClientFrame::Edit { seq, message })
                }
                (None, None) => match requests::decode_moderation(&map, config) {
                    Some(request) => Ok(ClientFrame::Moderate(request)),
                    // Last: every frame that was something before typing existed
                    // still is.
                    None => match given("typing") {
                        Some(Value::Bool(on)) => Ok(ClientFrame::Typing(*on)),
                        Some(_) => Err(ErrorKind::TypingInvalid),
                        None => Err(ErrorKind::WrongShape),
                    },
                },
            }
        }
        Some(_) => Err(ErrorKind::MessageNotString),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config::default()
    }

    fn hello(text: &str) -> Result<Hello, ErrorKind> {
        match ClientFrame::decode(text, false, &cfg())? {
            ClientFrame::Hello(h) => Ok(h),
            other => panic!("not a hello: {other:?}"),
        }
    }

    fn chat(text: &str) -> Result<String, ErrorKind> {
        match ClientFrame::decode(text, true, &cfg())? {
            ClientFrame::Chat { message, .. } => Ok(message),
            other => panic!("not a chat: {other:?}"),
        }
    }

    fn chat_cid(text: &str) -> Result<Option<String>, ErrorKind> {
        match ClientFrame::decode(text, true, &cfg())? {
            ClientFrame::Chat { cid, .. } => Ok(cid),
            other => panic!("not a chat: {other:?}"),
        }
    }

    fn history(text: &str) -> Result<(Option<u64>, usize), ErrorKind> {
        match ClientFrame::decode(text, true, &cfg())? {
            ClientFrame::History { before, limit } => Ok((before, limit)),
            other => panic!("not a history request: {other:?}"),
        }
    }

    #[test]
    fn the_plain_chat_path_decodes_exactly_as_the_general_one() {
        let cases = [
            // Taken by the plain path.
            (r#"{"message":"hi"}"#, true),
            (r#" {"message":"a \"q\" \u00e9\n","cid":"k-1_A"}"#, true),
            (r#"{"cid":null,"message":"hi"}"#, true),
            (r#"{"mess\u0061ge":"hi"}"#, true),
            (r#"{"message":"hi","cid":"a b"}"#, true),
            (r#"{"message":"hi","cid":""}"#, true),
            (r#"{"message":"  "}"#, true),
            // Left to the general path, which decides.
            (r#"["hi"]"#, false),
            (r#"["hi","k1"]"#, false),
            (r#"{"message":"a","message":"b"}"#, false),
            (r#"{"message":"hi","cid":"\u0041"}"#, false),
            (r#"{"message":"hi","cid":5}"#, false),
            (r#"{"message":"hi","extra":1}"#, false),
            (r#"{"message":5}"#, false),
            (r#"{"message":null,"history":{}}"#, false),
            (r#"{"message":"hi"} x"#, false),
            (r#"{"message":"hi""#, false),
            ("{}", false),
            ("", false),
        ];
        for (text, plain) in cases {
            assert_eq!(PlainChat::decode(text).is_some(), plain, "{text}");
            assert_eq!(
                decode_joined(text, &cfg()),
                decode_any(text, &cfg()),
                "{text}"
            );
            let with_id = text.replacen(r#""message""#, r#""id":"r-1","message""#, 1);
            assert_eq!(
                decode_joined(&with_id, &cfg()),
                decode_any(&with_id, &cfg()),
                "{with_id}"
            );
        }
    }

    #[test]
    fn cids_at_their_edges() {
        assert_eq!(chat_cid(r#"{"message":"hi"}"#), Ok(None));
        assert_eq!(chat_cid(r#"{"message":"hi","cid":null}"#), Ok(None));
        let longest = format!(r#"{{"message":"hi","cid":"{}"}}"#, "a".repeat(64));
        assert_eq!(chat_cid(&longest), Ok(Some("a".repeat(64))));
        assert_eq!(
            chat_cid(r#"{"message":"hi","cid":"Az09_-"}"#),
            Ok(Some("Az09_-".into()))
        );
        let too_long = format!(r#"{{"message":"hi","cid":"{}"}}"#, "a".repeat(65));
        for bad in [
            too_long.as_str(),
            r#"{"message":"hi","cid":""}"#,
            r#"{"message":"hi","cid":"a b"}"#,
            r#"{"message":"hi","cid":"k.1"}"#,
            r#"{"message":"hi","cid":"é"}"#,
            r#"{"message":"hi","cid":"k\u0000"}"#,
            r#"{"message":"hi","cid":7}"#,
            r#"{"message":"hi","cid":true}"#,
            r#"{"message":"hi","cid":["k"]}"#,
            r#"{"message":"hi","cid":{}}"#,
        ] {
            assert_eq!(chat_cid(bad), Err(ErrorKind::CidInvalid), "{bad}");
        }
        // The message's own errors come first.
        assert_eq!(
            chat_cid(r#"{"message":1,"cid":""}"#),
            Err(ErrorKind::MessageNotString)
        );
    }

    #[test]
    fn typing_frames_are_recognised() {
        let dec = |t: &str| ClientFrame::decode(t, true, &cfg());
        assert_eq!(dec(r#"{"typing":true}"#), Ok(ClientFrame::Typing(true)));
        assert_eq!(
            dec(r#"{"typing": false, "x": 1}"#),
            Ok(ClientFrame::Typing(false))
        );
        for bad in [r#"{"typing":1}"#, r#"{"typing":"yes"}"#, r#"{"typing":{}}"#] {
            assert_eq!(dec(bad), Err(ErrorKind::TypingInvalid), "{bad}");
        }
        // `null` is no typing frame; a message or a history request wins.
        assert_eq!(dec(r#"{"typing":null}"#), Err(ErrorKind::WrongShape));
        assert!(matches!(
            dec(r#"{"typing":true,"message":"hi"}"#),
            Ok(ClientFrame::Chat { .. })
        ));
        // The plain form, as clients send it, and nothing else.
        assert_eq!(plain_typing(r#" {"typing": true}"#), Some(true));
        assert_eq!(plain_typing(r#"{"typing":false}"#), Some(false));
        for other in [
            r#"{"typing":true,"x":1}"#,
            r#"{"typing":1}"#,
            r#"[true]"#,
            r#"{"typing":true,"typing":false}"#,
            r#"{"message":"hi"}"#,
            "",
        ] {
            assert_eq!(plain_typing(other), None, "{other}");
        }
    }

    #[test]
    fn member_requests_are_recognised() {
        let dec = |t: &str| ClientFrame::decode(t, true, &cfg());
        let max = cfg().roster_inline_max;
        assert_eq!(
            dec(r#"{"members":{"after":"12","limit":3}}"#),
            Ok(ClientFrame::Members {
                after: Some(12),
                limit: 3
            })
        );
        assert_eq!(
            dec(r#"{"members":{},"history":null}"#),
            Ok(ClientFrame::Members {
                after: None,
                limit: max
            })
        );
        assert_eq!(dec(r#"{"members":7}"#), Err(ErrorKind::MembersShape));
        assert_eq!(
            dec(r#"{"members":{"after":12}}"#),
            Err(ErrorKind::MembersCursor)
        );
        assert_eq!(dec(r#"{"members":null}"#), Err(ErrorKind::WrongShape));
        // Before the hello, any object is a hello, this one too.
        assert!(matches!(
            ClientFrame::decode(r#"{"members":{}}"#, false, &cfg()),
            Ok(ClientFrame::Hello(_))
        ));
    }

    #[test]
    fn history_requests_at_their_edges() {
        let max = cfg().history_page_max;
        assert_eq!(history(r#"{"history":{}}"#), Ok((None, max)));
        assert_eq!(
            history(r#"{"history":{"before":null,"limit":null}}"#),
            Ok((None, max))
        );
        assert_eq!(
            history(r#"{"history":{"before":0,"limit":1}}"#),
            Ok((Some(0), 1))
        );
        assert_eq!(
            history(&format!(
                r#"{{"history":{{"before":{},"limit":{max}}}}}"#,
                u64::MAX
            )),
            Ok((Some(u64::MAX), max))
        );
        for bad in ["0", "-1", "1.5", "\"5\"", "true", "[5]"] {
            let limit = format!(r#"{{"history":{{"limit":{bad}}}}}"#);
            assert_eq!(history(&limit), Err(ErrorKind::HistoryLimit), "{bad}");
        }
        let over = format!(r#"{{"history":{{"limit":{}}}}}"#, max + 1);
        assert_eq!(history(&over), Err(ErrorKind::HistoryLimit));
        let huge = r#"{"history":{"limit":18446744073709551616}}"#;
        assert_eq!(history(huge), Err(ErrorKind::HistoryLimit));
        for bad in ["-1", "1.5", "\"5\"", "true", "{}", "18446744073709551616"] {
            let before = format!(r#"{{"history":{{"before":{bad}}}}}"#);
            assert_eq!(history(&before), Err(ErrorKind::HistoryBefore), "{bad}");
        }
        for bad in ["5", "\"x\"", "[]", "true"] {
            let shape = format!(r#"{{"history":{bad}}}"#);
            assert_eq!(history(&shape), Err(ErrorKind::HistoryShape), "{bad}");
        }
        // Without `history` (or with it null) it is not a history request.
        assert_eq!(
            ClientFrame::decode(r#"{"history":null}"#, true, &cfg()),
            Err(ErrorKind::WrongShape)
        );
        // A frame with a message is a chat message, whatever else it has.
        assert_eq!(chat(r#"{"message":"hi","history":{}}"#).unwrap(), "hi");
    }

    #[test]
    fn names_at_their_edges() {
        let c = cfg();
        assert_eq!(validate_name("  bob  ", &c).unwrap(), "bob");
        assert_eq!(validate_name("   ", &c).unwrap(), ANONYMOUS);
        assert_eq!(validate_name(&"é".repeat(32), &c).unwrap(), "é".repeat(32));
        assert_eq!(
            validate_name(&"é".repeat(33), &c),
            Err(ErrorKind::NameTooLong)
        );
        assert_eq!(validate_name("a\u{7}b", &c), Err(ErrorKind::NameControl));
        assert_eq!(validate_name("a\nb", &c), Err(ErrorKind::NameControl));
        assert_eq!(
            validate_name("adm\u{202E}nim", &c),
            Err(ErrorKind::NameBidi)
        );
        assert_eq!(validate_name("x\u{2066}", &c), Err(ErrorKind::NameBidi));
        // The verified mark is the server's: no name may carry a check mark.
        for fake in ["Alice ✓", "Alice\u{2714}", "☑ Bob", "\u{2705}"] {
            assert_eq!(
                validate_name(fake, &c),
                Err(ErrorKind::NameCheckMark),
                "{fake:?}"
            );
        }
        for blank in [
            "\u{200B}",
            "\u{3164}",
            "\u{FEFF}",
            "\u{200E}\u{200F}",
            "\u{2800} \u{115F}",
        ] {
            assert_eq!(
                validate_name(blank, &c),
                Err(ErrorKind::NameInvisible),
                "{blank:?}"
            );
        }
        assert_eq!(
            validate_name("\u{200B}bo\u{200D}b", &c).unwrap(),
            "\u{200B}bo\u{200D}b"
        );
    }

    #[test]
    fn messages_at_their_edges() {
        let c = cfg();
        assert_eq!(validate_message(" hi\n", &c).unwrap(), "hi");
        assert_eq!(validate_message(" \t ", &c), Err(ErrorKind::MessageEmpty));
        let max = "😀".repeat(1000);
        assert_eq!(validate_message(&max, &c).unwrap(), max);
        assert_eq!(
            validate_message(&format!("{max}x"), &c),
            Err(ErrorKind::MessageTooLong)
        );
        assert!(validate_message("line1\nline2 \u{202E}", &c).is_ok());
    }

    #[test]
    fn hello_shapes() {
        let h = hello(r#"{"name":"alice","extra":1}"#).unwrap();
        assert_eq!(
            h,
            Hello {
                name: "alice".into(),
                resume: None,
                version: Version::V1,
                token: None,
                batch: false,
            }
        );
        assert_eq!(hello("{}").unwrap().name, ANONYMOUS);
        assert_eq!(hello(r#"{"message":"hi"}"#).unwrap().name, ANONYMOUS);
        assert_eq!(hello(r#"{"name":null}"#).unwrap().name, ANONYMOUS);
        assert_eq!(hello(r#"{"name":5}"#), Err(ErrorKind::NameNotString));
        for bad in ["", "nope", "[]", "\"alice\"", "null", "1"] {
            assert_eq!(hello(bad), Err(ErrorKind::HelloNotObject), "{bad:?}");
        }
        let h = hello(r#"{"name":"a","resume":{"epoch":"e","seq":3}}"#).unwrap();
        assert_eq!(
            h.resume,
            Some(Resume {
                epoch: "e".into(),
                seq: 3
            })
        );
        for bad in [
            r#"{"epoch":"e","seq":-1}"#,
            r#"{"epoch":1,"seq":1}"#,
            r#"{"seq":1}"#,
            r#""x""#,
            r#"{"epoch":"e","seq":1.5}"#,
        ] {
            let h = hello(&format!(r#"{{"name":"a","resume":{bad}}}"#)).unwrap();
            assert_eq!(h.resume, None, "{bad}");
        }
    }

    #[test]
    fn hello_tokens() {
        assert_eq!(
            hello(r#"{"token":"a.b.c"}"#).unwrap().token.as_deref(),
            Some("a.b.c")
        );
        assert_eq!(hello(r#"{"token":null}"#).unwrap().token, None);
        // Not a string: kept as a token that cannot verify, never as no token.
        for bad in ["1", "{}", "[\"a.b.c\"]", "true"] {
            let h = hello(&format!(r#"{{"token":{bad}}}"#)).unwrap();
            assert_eq!(h.token.as_deref(), Some(""), "{bad}");
        }
    }

    #[test]
    fn hello_versions() {
        for (v, want) in [
            ("1", Version::V1),
            ("2", Version::V2),
            ("null", Version::V1),
        ] {
            let h = hello(&format!(r#"{{"name":"a","v":{v}}}"#)).unwrap();
            assert_eq!(h.version, want, "{v}");
        }
        assert_eq!(hello(r#"{"name":"a"}"#).unwrap().version, Version::V1);
        for bad in ["0", "3", "2.5", "\"2\"", "true", "[2]", "-2"] {
            assert_eq!(
                hello(&format!(r#"{{"name":"a","v":{bad}}}"#)),
                Err(ErrorKind::UnsupportedVersion),
                "{bad}"
            );
        }
    }

    #[test]
    fn batch_is_a_v2_opt_in() {
        for (hello_text, want) in [
            (r#"{"v":2,"batch":true}"#, true),
            (r#"{"v":2,"batch":false}"#, false),
            (r#"{"v":2,"batch":null}"#, false),
            (r#"{"v":2}"#, false),
            // v1 ignores it, whatever it is.
            (r#"{"batch":true}"#, false),
            (r#"{"v":1,"batch":true}"#, false),
            (r#"{"batch":"yes"}"#, false),
            (r#"{"v":null,"batch":[1]}"#, false),
        ] {
            let h = hello(hello_text).unwrap();
            assert_eq!(h.batch, want, "{hello_text}");
        }
        for bad in ["1", "0", "\"true\"", "[true]", "{}"] {
            assert_eq!(
                hello(&format!(r#"{{"v":2,"batch":{bad}}}"#)),
                Err(ErrorKind::BatchNotBoolean),
                "{bad}"
            );
        }
    }

    #[test]
    fn chat_shapes() {
        assert_eq!(chat(r#"{"message":" hi ","x":[1]}"#).unwrap(), " hi ");
        assert_eq!(chat("{not json"), Err(ErrorKind::NotJson));
        assert_eq!(chat("[1]"), Err(ErrorKind::WrongShape));
        assert_eq!(chat(r#"{"name":"x"}"#), Err(ErrorKind::WrongShape));
        assert_eq!(chat(r#"{"message":null}"#), Err(ErrorKind::WrongShape));
        assert_eq!(chat(r#"{"message":1}"#), Err(ErrorKind::MessageNotString));
        // After the hello, a hello-looking frame is just a frame without a message.
        assert_eq!(chat(r#"{"name":"alice"}"#), Err(ErrorKind::WrongShape));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(100_000);
        assert_eq!(chat(&deep), Err(ErrorKind::NotJson));
        assert_eq!(hello(&deep), Err(ErrorKind::HelloNotObject));
        let deep_obj = format!("{{\"message\":{}}}", "[".repeat(100_000));
        assert_eq!(chat(&deep_obj), Err(ErrorKind::NotJson));
    }
}
