//! The frames sent per message, written straight into their JSON text.
//!
//! Encoding a chat frame was most of a message's cost in the handler, and most of that
//! was serde_json escaping the name and the text one byte at a time (see "The handler:
//! where a message's time goes" in docs/BENCHMARKS.md). Most names and messages need
//! no escape at all: one pass over the bytes, which the compiler vectorizes, finds
//! out, and such a string is copied as it is. A string that does need escapes is
//! escaped by serde_json itself. So the text is byte for byte what serde_json writes
//! for the same [`ServerFrame`] (keys in the same order, the same escapes), which the
//! tests below hold it to for any input; only the work to get there differs.
//!
//! Chat frames go through here (live, in a join backlog or a resume) and history
//! pages, which are lists of them. Every other frame takes serde's path.

use crate::protocol::server_frame::ServerFrame;

/// The JSON text of a chat frame or a history page; `None` for any other frame (it
/// takes serde's path, and nothing is allocated here for it).
pub(crate) fn write_frame(frame: &ServerFrame<'_>, capacity: usize) -> Option<String> {
    match frame {
        ServerFrame::Chat { .. } => {
            let mut out = String::with_capacity(capacity);
            write_chat(&mut out, frame)?;
            Some(out)
        }
        ServerFrame::History {
            history,
            before,
            more,
        } => write_history(history, *before, *more, capacity),
        _ => None,
    }
}

/// `{"history": [<chat frames>], "before", "more"}`. `None` if a frame in it is not a
/// chat frame.
fn write_history(
    history: &[ServerFrame<'_>],
    before: u64,
    more: bool,
    capacity: usize,
) -> Option<String> {
    let mut out = String::with_capacity(capacity);
    out.push_str(r#"{"history":["#);
    for (i, chat) in history.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_chat(&mut out, chat)?;
    }
    out.push_str(r#"],"before":"#);
    push_u64(&mut out, before);
    out.push_str(if more {
        r#","more":true}"#
    } else {
        r#","more":false}"#
    });
    Some(out)
}

/// `{"name", "message", "timestamp", "seq"}`, then each optional field that is set, in
/// the order of [`ServerFrame::Chat`]'s fields. `None` if `frame` is not a chat frame.
fn write_chat(out: &mut String, frame: &ServerFrame<'_>) -> Option<()> {
    let ServerFrame::Chat {
        name,
        message,
        timestamp,
        seq,
        user,
        cid,
        role,
        edited_at,
        reactions,
    } = frame
    else {
        return None;
    };
    out.push_str(r#"{"name":"#);
    push_str(out, name)?;
    out.push_str(r#","message":"#);
    push_str(out, message)?;
    out.push_str(r#","timestamp":"#);
    push_u64(out, *timestamp);
    out.push_str(r#","seq":"#);
    push_u64(out, *seq);
    if let Some(user) = user {
        out.push_str(r#","user":"#);
        push_str(out, user)?;
    }
    if let Some(cid) = cid {
        out.push_str(r#","cid":"#);
        push_str(out, cid)?;
    }
    if let Some(role) = role {
        out.push_str(r#","role":"#);
        push_str(out, role.as_str())?;
    }
    if let Some(at) = edited_at {
        out.push_str(r#","edited_at":"#);
        push_u64(out, *at);
    }
    if let Some(counts) = reactions {
        // Already JSON (checked when it was read from storage): written as it is, as
        // serde_json writes a raw value.
        out.push_str(r#","reactions":"#);
        out.push_str(counts.0.get());
    }
    out.push('}');
    Some(())
}

/// `s` as a JSON string, quotes included. (`None` only if serde_json failed to
/// write a string, which it does not; the frame then takes serde's path.)
fn push_str(out: &mut String, s: &str) -> Option<()> {
    if needs_escape(s) {
        // Rare (a quote, a backslash or a control character): serde_json's escaping.
        out.push_str(&serde_json::to_string(s).ok()?);
    } else {
        out.push('"');
        out.push_str(s);
        out.push('"');
    }
    Some(())
}

/// Whether JSON needs an escape anywhere in `s`: for a control character, a quote or
/// a backslash, the only bytes serde_json escapes (it writes everything else,
/// non-ASCII included, as it is). No early exit on purpose: a fold with no branch
/// is what the compiler turns into vector compares over many bytes at a time.
fn needs_escape(s: &str) -> bool {
    s.bytes().fold(false, |any, b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    })
}

fn push_u64(out: &mut String, n: u64) {
    out.push_str(itoa::Buffer::new().format(n));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::server_frame::RawJson;
    use crate::protocol::user::Role;
    use proptest::prelude::*;
    use serde_json::value::RawValue;

    /// What serde_json writes for the frame through its derived `Serialize`.
    fn by_serde(frame: &ServerFrame<'_>) -> String {
        serde_json::to_string(frame).expect("serializes")
    }

    fn chat<'a>(
        name: &'a str,
        message: &'a str,
        optional: (Option<&'a str>, Option<&'a str>, Option<Role>, Option<u64>),
        reactions: Option<&'a RawValue>,
    ) -> ServerFrame<'a> {
        let (user, cid, role, edited_at) = optional;
        ServerFrame::Chat {
            name,
            message,
            timestamp: 1_700_000_000_123,
            seq: 42,
            user,
            cid,
            role,
            edited_at,
            reactions: reactions.map(RawJson),
        }
    }

    #[test]
    fn every_byte_that_needs_an_escape_is_escaped_as_serde_json_does() {
        for b in 0u8..=0x7f {
            let s = format!("a{}b", b as char);
            let frame = chat(&s, &s, (Some(&s), Some(&s), None, None), None);
            assert_eq!(write_frame(&frame, 0).as_deref(), Some(&*by_serde(&frame)));
            assert_eq!(
                needs_escape(&s),
                b < 0x20 || b == b'"' || b == b'\\',
                "byte {b:#x}"
            );
        }
    }

    #[test]
    fn every_optional_field_in_serdes_order() {
        let counts = RawValue::from_string(r#"{"👍":2,"🎉":1}"#.to_owned()).expect("json");
        let frame = chat(
            "ana",
            "hi \"there\"\n",
            (Some("u1"), Some("k-1"), Some(Role::Service), Some(7)),
            Some(&counts),
        );
        let text = write_frame(&frame, 0).expect("a chat frame");
        assert_eq!(text, by_serde(&frame));
        assert_eq!(
            text,
            r#"{"name":"ana","message":"hi \"there\"\n","timestamp":1700000000123,"seq":42,"user":"u1","cid":"k-1","role":"service","edited_at":7,"reactions":{"👍":2,"🎉":1}}"#
        );
    }

    #[test]
    fn other_frames_take_serdes_path() {
        assert_eq!(write_frame(&ServerFrame::Joined { joined: "al" }, 0), None);
        let not_chat = ServerFrame::History {
            history: vec![ServerFrame::Quit { quit: "al" }],
            before: 1,
            more: false,
        };
        assert_eq!(write_frame(&not_chat, 0), None);
    }

    /// Any Unicode text, or text dense in what JSON escapes (`any::<String>()` alone
    /// seldom holds a control character, a quote or a backslash).
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![any::<String>(), "[a-z \"\\\\\\x00-\\x1f\\x7fé😀/]{0,24}"]
    }

    fn optional_text() -> impl Strategy<Value = Option<String>> {
        proptest::option::of(text())
    }

    proptest! {
        /// For any strings (controls, quotes, backslashes, any Unicode) and any set of
        /// optional fields, a chat frame and a history page of them are serde_json's
        /// text byte for byte.
        #[test]
        fn chat_frames_and_pages_are_serde_jsons_text(
            name in text(),
            message in text(),
            user in optional_text(),
            cid in optional_text(),
            role in proptest::option::of(prop_oneof![Just(Role::Moderator), Just(Role::Service)]),
            edited_at in proptest::option::of(any::<u64>()),
            timestamp in any::<u64>(),
            seq in any::<u64>(),
            before in any::<u64>(),
            more in any::<bool>(),
            with_reactions in any::<bool>(),
            pages in 0usize..3,
        ) {
            let counts = RawValue::from_string(r#"{"❤️":3}"#.to_owned()).expect("json");
            let mut frame = chat(
                &name,
                &message,
                (user.as_deref(), cid.as_deref(), role, edited_at),
                with_reactions.then_some(&*counts),
            );
            if let ServerFrame::Chat { timestamp: t, seq: s, .. } = &mut frame {
                *t = timestamp;
                *s = seq;
            }
            prop_assert_eq!(write_frame(&frame, 0), Some(by_serde(&frame)));
            prop_assert_eq!(&*frame.encode(), by_serde(&frame));
            let page = ServerFrame::History {
                history: vec![frame; pages],
                before,
                more,
            };
            prop_assert_eq!(write_frame(&page, 0), Some(by_serde(&page)));
            prop_assert_eq!(&*page.encode(), by_serde(&page));
        }
    }
}
