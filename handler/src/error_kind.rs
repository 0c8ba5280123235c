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
    /// A v2 hello's `batch` is neither a boolean nor null.
    BatchNotBoolean,
}

impl ErrorKind {
    /// Every kind, for tables and exhaustive tests.
    pub const ALL: [ErrorKind; 17] = [
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
        ErrorKind::BatchNotBoolean,
    ];

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
            ErrorKind::BatchNotBoolean => "\"batch\" must be true or false.",
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
}
