//! Every error sentence the chat sends in an `{"error": …}` frame, declared once. The
//! sentences are fixed by `docs/PROTOCOL.md`: they are for the person using a client,
//! never parser internals.

/// What went wrong, as told to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The first frame is not a JSON object.
    HelloNotObject,
    NameNotString,
    NameTooLong,
    NameControl,
    NameBidi,
    /// A frame after the hello is not JSON.
    NotJson,
    /// A frame after the hello is JSON but not `{"message": …}`.
    WrongShape,
    MessageNotString,
    MessageEmpty,
    MessageTooLong,
    /// A binary frame: the protocol is text-only.
    Binary,
    RateLimited,
    /// Storage refused the message: it was not stored, so it was not sent.
    NotStored,
    /// Storage failed at join.
    Internal,
    HelloTimeout,
    /// The hello's `v` is neither 1 nor 2.
    UnsupportedVersion,
}

impl ErrorKind {
    /// Every kind, for tables and exhaustive tests.
    pub const ALL: [ErrorKind; 16] = [
        ErrorKind::HelloNotObject,
        ErrorKind::NameNotString,
        ErrorKind::NameTooLong,
        ErrorKind::NameControl,
        ErrorKind::NameBidi,
        ErrorKind::NotJson,
        ErrorKind::WrongShape,
        ErrorKind::MessageNotString,
        ErrorKind::MessageEmpty,
        ErrorKind::MessageTooLong,
        ErrorKind::Binary,
        ErrorKind::RateLimited,
        ErrorKind::NotStored,
        ErrorKind::Internal,
        ErrorKind::HelloTimeout,
        ErrorKind::UnsupportedVersion,
    ];

    /// A stable snake_case name, for metric labels and log fields (never sent to
    /// clients, so it may be renamed only with the dashboards that count it).
    pub const fn label(self) -> &'static str {
        match self {
            ErrorKind::HelloNotObject => "hello_not_object",
            ErrorKind::NameNotString => "name_not_string",
            ErrorKind::NameTooLong => "name_too_long",
            ErrorKind::NameControl => "name_control",
            ErrorKind::NameBidi => "name_bidi",
            ErrorKind::NotJson => "not_json",
            ErrorKind::WrongShape => "wrong_shape",
            ErrorKind::MessageNotString => "message_not_string",
            ErrorKind::MessageEmpty => "message_empty",
            ErrorKind::MessageTooLong => "message_too_long",
            ErrorKind::Binary => "binary",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::NotStored => "not_stored",
            ErrorKind::Internal => "internal",
            ErrorKind::HelloTimeout => "hello_timeout",
            ErrorKind::UnsupportedVersion => "unsupported_version",
        }
    }

    /// The sentence sent as `{"error": sentence}`.
    pub const fn sentence(self) -> &'static str {
        match self {
            ErrorKind::HelloNotObject => {
                "The first frame must be a JSON object like {\"name\": \"alice\"}."
            }
            ErrorKind::NameNotString => "Name must be a string.",
            ErrorKind::NameTooLong => "Name is too long.",
            ErrorKind::NameControl => "Name may not contain control characters.",
            ErrorKind::NameBidi => "Name may not contain text-direction override characters.",
            ErrorKind::NotJson => "Invalid JSON: send a text frame like {\"message\": \"hello\"}.",
            ErrorKind::WrongShape => "Expected a JSON object like {\"message\": \"hello\"}.",
            ErrorKind::MessageNotString => "\"message\" must be a string.",
            ErrorKind::MessageEmpty => "Message is empty.",
            ErrorKind::MessageTooLong => "Message is too long.",
            ErrorKind::Binary => "Binary frames are not supported: send JSON text frames.",
            ErrorKind::RateLimited => "Rate limited; slow down.",
            ErrorKind::NotStored => "Message could not be stored; it was not sent. Try again.",
            ErrorKind::Internal => "Internal error; please reconnect later.",
            ErrorKind::HelloTimeout => {
                "No hello received in time: send {\"name\": \"alice\"} first."
            }
            ErrorKind::UnsupportedVersion => {
                "Unsupported protocol version: send \"v\": 2, or no \"v\" for version 1."
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn sentences_are_distinct_and_end_in_a_full_stop() {
        let all: HashSet<&str> = ErrorKind::ALL.iter().map(|k| k.sentence()).collect();
        assert_eq!(all.len(), ErrorKind::ALL.len());
        assert!(all.iter().all(|s| s.ends_with('.')));
    }

    #[test]
    fn labels_are_distinct_snake_case() {
        let labels: HashSet<&str> = ErrorKind::ALL.iter().map(|k| k.label()).collect();
        assert_eq!(labels.len(), ErrorKind::ALL.len());
        for l in labels {
            assert!(
                l.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{l}"
            );
        }
    }
}
