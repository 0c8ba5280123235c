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
    /// The name is empty once invisible characters are removed.
    NameInvisible,
    /// Sent before close 1013 "Room is full".
    RoomFull,
    /// Sent before close 1013 "Too many connections from your address".
    TooManySeats,
    /// Sent before close 1013 "Joining too fast": the address's join bucket is empty.
    JoiningTooFast,
}

impl ErrorKind {
    /// Every kind, for tables and exhaustive tests.
    pub const ALL: [ErrorKind; 20] = [
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
        ErrorKind::NameInvisible,
        ErrorKind::RoomFull,
        ErrorKind::TooManySeats,
        ErrorKind::JoiningTooFast,
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
            ErrorKind::NameInvisible => "Name must contain a visible character.",
            ErrorKind::RoomFull => "Room is full; try again later.",
            ErrorKind::TooManySeats => {
                "Too many connections from your address in this room; close one and try again."
            }
            ErrorKind::JoiningTooFast => {
                "Too many joins from your address; wait a little before reconnecting."
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
}
