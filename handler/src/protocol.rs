//! The v1 wire protocol: decoding client frames and encoding server frames. Decoding
//! never panics and never echoes parser internals; every failure is a short sentence
//! meant for the person using the client.

use crate::config::Config;
use serde::Serialize;
use serde_json::{Map, Value};
use std::sync::Arc;

/// An encoded server frame (JSON text), shared by every recipient of a broadcast.
pub type Frame = Arc<str>;

/// The name given to a session whose hello carries no name, or an empty one.
pub const ANONYMOUS: &str = "anonymous";

/// A client-facing error text.
pub type ErrorText = &'static str;

pub mod errors {
    use super::ErrorText;
    pub const HELLO_NOT_OBJECT: ErrorText =
        "The first frame must be a JSON object like {\"name\": \"alice\"}.";
    pub const NAME_NOT_STRING: ErrorText = "Name must be a string.";
    pub const NAME_TOO_LONG: ErrorText = "Name is too long.";
    pub const NAME_CONTROL: ErrorText = "Name may not contain control characters.";
    pub const NAME_BIDI: ErrorText = "Name may not contain text-direction override characters.";
    pub const NOT_JSON: ErrorText =
        "Invalid JSON: send a text frame like {\"message\": \"hello\"}.";
    pub const WRONG_SHAPE: ErrorText = "Expected a JSON object like {\"message\": \"hello\"}.";
    pub const MESSAGE_NOT_STRING: ErrorText = "\"message\" must be a string.";
    pub const MESSAGE_EMPTY: ErrorText = "Message is empty.";
    pub const MESSAGE_TOO_LONG: ErrorText = "Message is too long.";
    pub const BINARY: ErrorText = "Binary frames are not supported: send JSON text frames.";
    pub const RATE_LIMITED: ErrorText = "Rate limited; slow down.";
    pub const NOT_STORED: ErrorText = "Message could not be stored; it was not sent. Try again.";
    pub const INTERNAL: ErrorText = "Internal error; please reconnect later.";
    pub const HELLO_TIMEOUT: ErrorText =
        "No hello received in time: send {\"name\": \"alice\"} first.";
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
}

/// Direction overrides and isolates, refused in names where they can spoof another user.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Validates and trims a display name.
pub fn validate_name(raw: &str, config: &Config) -> Result<String, ErrorText> {
    let name = raw.trim();
    if name.is_empty() {
        return Ok(ANONYMOUS.to_owned());
    }
    if name.chars().count() > config.max_name_chars {
        return Err(errors::NAME_TOO_LONG);
    }
    if name.chars().any(char::is_control) {
        return Err(errors::NAME_CONTROL);
    }
    if name.chars().any(is_bidi_control) {
        return Err(errors::NAME_BIDI);
    }
    Ok(name.to_owned())
}

/// Validates and trims a chat message. Control characters (newlines, tabs) and
/// direction controls are allowed in messages.
pub fn validate_message<'a>(raw: &'a str, config: &Config) -> Result<&'a str, ErrorText> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(errors::MESSAGE_EMPTY);
    }
    // Count at most one past the limit, so a huge message costs no more than a long one.
    if text.chars().take(config.max_message_chars + 1).count() > config.max_message_chars {
        return Err(errors::MESSAGE_TOO_LONG);
    }
    Ok(text)
}

fn parse_object(text: &str) -> Option<Map<String, Value>> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// Decodes the first frame. Any JSON object is a hello; `name` missing, `null` or empty
/// joins as [`ANONYMOUS`]. Fields other than `name` and `resume` are ignored.
pub fn parse_hello(text: &str, config: &Config) -> Result<Hello, ErrorText> {
    let map = parse_object(text).ok_or(errors::HELLO_NOT_OBJECT)?;
    let name = match map.get("name") {
        None | Some(Value::Null) => ANONYMOUS.to_owned(),
        Some(Value::String(s)) => validate_name(s, config)?,
        Some(_) => return Err(errors::NAME_NOT_STRING),
    };
    let resume = map.get("resume").and_then(|r| {
        let epoch = r.get("epoch")?.as_str()?.to_owned();
        let seq = r.get("seq")?.as_u64()?;
        Some(Resume { epoch, seq })
    });
    Ok(Hello { name, resume })
}

/// Decodes a frame after the hello into the message text it carries (untrimmed).
pub fn parse_chat(text: &str) -> Result<String, ErrorText> {
    let value: Value = serde_json::from_str(text).map_err(|_| errors::NOT_JSON)?;
    let Value::Object(mut map) = value else {
        return Err(errors::WRONG_SHAPE);
    };
    match map.remove("message") {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(errors::WRONG_SHAPE),
        Some(_) => Err(errors::MESSAGE_NOT_STRING),
    }
}

fn encode<T: Serialize>(value: &T) -> Frame {
    // Serializing these plain structs of strings and integers cannot fail; fall back
    // to a fixed frame rather than panic if it somehow did.
    match serde_json::to_string(value) {
        Ok(s) => s.into(),
        Err(_) => Arc::from(r#"{"error":"Internal error; please reconnect later."}"#),
    }
}

/// `{"error": text}`
pub fn error_frame(text: &str) -> Frame {
    #[derive(Serialize)]
    struct E<'a> {
        error: &'a str,
    }
    encode(&E { error: text })
}

/// `{"joined": name}`
pub fn joined_frame(name: &str) -> Frame {
    #[derive(Serialize)]
    struct J<'a> {
        joined: &'a str,
    }
    encode(&J { joined: name })
}

/// `{"quit": name}`
pub fn quit_frame(name: &str) -> Frame {
    #[derive(Serialize)]
    struct Q<'a> {
        quit: &'a str,
    }
    encode(&Q { quit: name })
}

/// `{"name", "message", "timestamp", "seq"}`
pub fn message_frame(name: &str, message: &str, timestamp: u64, seq: u64) -> Frame {
    #[derive(Serialize)]
    struct M<'a> {
        name: &'a str,
        message: &'a str,
        timestamp: u64,
        seq: u64,
    }
    encode(&M {
        name,
        message,
        timestamp,
        seq,
    })
}

/// `{"ready": true, "epoch", "seq", "recovered"}`
pub fn ready_frame(epoch: &str, seq: u64, recovered: bool) -> Frame {
    #[derive(Serialize)]
    struct R<'a> {
        ready: bool,
        epoch: &'a str,
        seq: u64,
        recovered: bool,
    }
    encode(&R {
        ready: true,
        epoch,
        seq,
        recovered,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config::default()
    }

    #[test]
    fn names_at_their_edges() {
        let c = cfg();
        assert_eq!(validate_name("  bob  ", &c).unwrap(), "bob");
        assert_eq!(validate_name("   ", &c).unwrap(), ANONYMOUS);
        assert_eq!(validate_name(&"é".repeat(32), &c).unwrap(), "é".repeat(32));
        assert_eq!(
            validate_name(&"é".repeat(33), &c),
            Err(errors::NAME_TOO_LONG)
        );
        assert_eq!(validate_name("a\u{7}b", &c), Err(errors::NAME_CONTROL));
        assert_eq!(validate_name("a\nb", &c), Err(errors::NAME_CONTROL));
        assert_eq!(validate_name("adm\u{202E}nim", &c), Err(errors::NAME_BIDI));
        assert_eq!(validate_name("x\u{2066}", &c), Err(errors::NAME_BIDI));
    }

    #[test]
    fn messages_at_their_edges() {
        let c = cfg();
        assert_eq!(validate_message(" hi\n", &c).unwrap(), "hi");
        assert_eq!(validate_message(" \t ", &c), Err(errors::MESSAGE_EMPTY));
        let max = "😀".repeat(1000);
        assert_eq!(validate_message(&max, &c).unwrap(), max);
        assert_eq!(
            validate_message(&format!("{max}x"), &c),
            Err(errors::MESSAGE_TOO_LONG)
        );
        assert!(validate_message("line1\nline2 \u{202E}", &c).is_ok());
    }

    #[test]
    fn hello_shapes() {
        let c = cfg();
        let h = parse_hello(r#"{"name":"alice","extra":1}"#, &c).unwrap();
        assert_eq!(
            h,
            Hello {
                name: "alice".into(),
                resume: None
            }
        );
        assert_eq!(parse_hello("{}", &c).unwrap().name, ANONYMOUS);
        assert_eq!(
            parse_hello(r#"{"message":"hi"}"#, &c).unwrap().name,
            ANONYMOUS
        );
        assert_eq!(parse_hello(r#"{"name":null}"#, &c).unwrap().name, ANONYMOUS);
        assert_eq!(
            parse_hello(r#"{"name":5}"#, &c),
            Err(errors::NAME_NOT_STRING)
        );
        for bad in ["", "nope", "[]", "\"alice\"", "null", "1"] {
            assert_eq!(
                parse_hello(bad, &c),
                Err(errors::HELLO_NOT_OBJECT),
                "{bad:?}"
            );
        }
        let h = parse_hello(r#"{"name":"a","resume":{"epoch":"e","seq":3}}"#, &c).unwrap();
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
            let h = parse_hello(&format!(r#"{{"name":"a","resume":{bad}}}"#), &c).unwrap();
            assert_eq!(h.resume, None, "{bad}");
        }
    }

    #[test]
    fn chat_shapes() {
        assert_eq!(parse_chat(r#"{"message":" hi ","x":[1]}"#).unwrap(), " hi ");
        assert_eq!(parse_chat("{not json"), Err(errors::NOT_JSON));
        assert_eq!(parse_chat("[1]"), Err(errors::WRONG_SHAPE));
        assert_eq!(parse_chat(r#"{"name":"x"}"#), Err(errors::WRONG_SHAPE));
        assert_eq!(
            parse_chat(r#"{"message":1}"#),
            Err(errors::MESSAGE_NOT_STRING)
        );
    }

    #[test]
    fn frames_are_exact_json() {
        assert_eq!(&*error_frame("a\"b"), r#"{"error":"a\"b"}"#);
        assert_eq!(&*joined_frame("al"), r#"{"joined":"al"}"#);
        assert_eq!(&*quit_frame("al"), r#"{"quit":"al"}"#);
        assert_eq!(
            &*message_frame("a", "<b>", 5, 1),
            r#"{"name":"a","message":"<b>","timestamp":5,"seq":1}"#
        );
        assert_eq!(
            &*ready_frame("ep", 0, false),
            r#"{"ready":true,"epoch":"ep","seq":0,"recovered":false}"#
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(100_000);
        assert_eq!(parse_chat(&deep), Err(errors::NOT_JSON));
        let deep_obj = format!("{{\"message\":{}}}", "[".repeat(100_000));
        assert_eq!(parse_chat(&deep_obj), Err(errors::NOT_JSON));
    }
}
