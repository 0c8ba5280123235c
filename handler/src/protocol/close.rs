//! Every way the chat closes a WebSocket, with its code and its reason, declared once.
//! Backends name a [`Close`] and never write a code or a reason themselves, so both send
//! the same bytes, and `docs/protocol.md`'s table of closes has one source.

/// Why a connection is closed. [`Close::code`] and [`Close::reason`] are what goes on the
/// wire in the close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Close {
    /// 1013: the room already holds `room_capacity` connections.
    RoomFull,
    /// 1013: the connection's send queue did not drain (a backend with a queue detects it).
    SlowConsumer,
    /// 1013: the client address already holds `seats_per_address` connections in the
    /// room.
    TooManySeats,
    /// 1013: the hello found the address's join bucket empty (`join_burst`,
    /// `join_per_sec`). Not a policy close: the client may come back later.
    JoiningTooFast,
    /// 1009: an incoming message over `max_frame_bytes`.
    TooBig,
    /// 1008: the first frame was not an acceptable hello (an error frame says why).
    BadHello,
    /// 1008: no hello within `hello_timeout_ms`.
    HelloTimeout,
    /// 1008: `rate_strikes` rate-limited frames in a row.
    Flooding,
    /// 1011: the room's storage failed where the chat cannot go on without it.
    Internal,
    /// 1001: the server is shutting down.
    GoingAway,
    /// 1001: the peer stopped answering pings (a backend that pings detects it). Not a
    /// policy close: the client broke no rule and should reconnect.
    PingTimeout,
    /// 1008: the hello's join token is invalid, or missing where tokens are required
    /// (an error frame says which).
    BadToken,
    /// 4001: a moderator kicked the session's user, or the user is still kicked.
    Kicked,
}

impl Close {
    /// Every close, for tables and exhaustive tests.
    pub const ALL: [Close; 13] = [
        Close::RoomFull,
        Close::SlowConsumer,
        Close::TooManySeats,
        Close::JoiningTooFast,
        Close::TooBig,
        Close::BadHello,
        Close::HelloTimeout,
        Close::Flooding,
        Close::Internal,
        Close::GoingAway,
        Close::PingTimeout,
        Close::BadToken,
        Close::Kicked,
    ];

    /// The WebSocket close code (RFC 6455 section 7.4.1).
    pub const fn code(self) -> u16 {
        match self {
            Close::GoingAway | Close::PingTimeout => 1001,
            Close::BadHello | Close::HelloTimeout | Close::Flooding | Close::BadToken => 1008,
            Close::TooBig => 1009,
            Close::Internal => 1011,
            Close::RoomFull | Close::SlowConsumer | Close::TooManySeats | Close::JoiningTooFast => {
                1013
            }
            Close::Kicked => 4001,
        }
    }

    /// The code to send back when the peer closed first, completing the closing
    /// handshake. A peer's code that may not be sent on the wire (1005 "no code", 1006
    /// "abnormal", other reserved or unknown values) is answered with 1000 (normal).
    pub fn echo_code(peer_code: usize) -> u16 {
        let code = u16::try_from(peer_code).unwrap_or(0);
        if matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
            code
        } else {
            1000
        }
    }

    /// The error a backend sends just before this close when [`crate::Room::connect`]
    /// refuses a connection with it, so that a client that shows `{"error"}` frames
    /// tells its user why (the close reason is short and easy to miss). `None` for
    /// closes that never refuse a connection.
    pub const fn refusal_error(self) -> Option<crate::ErrorKind> {
        match self {
            Close::RoomFull => Some(crate::ErrorKind::RoomFull),
            Close::TooManySeats => Some(crate::ErrorKind::TooManySeats),
            _ => None,
        }
    }

    /// A stable snake_case name, for metric labels and log fields (the wire carries
    /// [`Close::reason`]).
    pub const fn label(self) -> &'static str {
        match self {
            Close::RoomFull => "room_full",
            Close::SlowConsumer => "slow_consumer",
            Close::TooBig => "too_big",
            Close::BadHello => "bad_hello",
            Close::HelloTimeout => "hello_timeout",
            Close::Flooding => "flooding",
            Close::Internal => "internal",
            Close::GoingAway => "going_away",
            Close::PingTimeout => "ping_timeout",
            Close::BadToken => "bad_token",
            Close::Kicked => "kicked",
            Close::TooManySeats => "too_many_seats",
            Close::JoiningTooFast => "joining_too_fast",
        }
    }

    /// The close reason: short, for people, fixed by `docs/protocol.md`.
    pub const fn reason(self) -> &'static str {
        match self {
            Close::RoomFull => "Room is full",
            Close::SlowConsumer => "Slow consumer",
            Close::TooManySeats => "Too many connections from your address",
            Close::JoiningTooFast => "Joining too fast",
            Close::TooBig => "Message too big",
            Close::BadHello => "Invalid hello",
            Close::HelloTimeout => "Hello timeout",
            Close::Flooding => "Rate limit exceeded repeatedly",
            Close::Internal => "Internal error",
            Close::GoingAway => "Server going away",
            Close::PingTimeout => "Ping timeout",
            Close::BadToken => "Invalid token",
            Close::Kicked => "Kicked",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_reasons_are_the_protocols() {
        let table: Vec<(u16, &str)> = Close::ALL.iter().map(|c| (c.code(), c.reason())).collect();
        assert_eq!(
            table,
            [
                (1013, "Room is full"),
                (1013, "Slow consumer"),
                (1013, "Too many connections from your address"),
                (1013, "Joining too fast"),
                (1009, "Message too big"),
                (1008, "Invalid hello"),
                (1008, "Hello timeout"),
                (1008, "Rate limit exceeded repeatedly"),
                (1011, "Internal error"),
                (1001, "Server going away"),
                (1001, "Ping timeout"),
                (1008, "Invalid token"),
                (4001, "Kicked"),
            ]
        );
        // A close reason must fit a control frame: at most 123 bytes.
        assert!(Close::ALL.iter().all(|c| c.reason().len() <= 123));
    }

    #[test]
    fn labels_are_distinct_snake_case() {
        let labels: std::collections::HashSet<&str> =
            Close::ALL.iter().map(|c| c.label()).collect();
        assert_eq!(labels.len(), Close::ALL.len());
        for l in labels {
            assert!(
                l.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{l}"
            );
        }
    }

    #[test]
    fn echoed_codes_are_sendable() {
        assert_eq!(Close::echo_code(1000), 1000);
        assert_eq!(Close::echo_code(1001), 1001);
        assert_eq!(Close::echo_code(1003), 1003);
        assert_eq!(Close::echo_code(1004), 1000);
        assert_eq!(Close::echo_code(1005), 1000);
        assert_eq!(Close::echo_code(1006), 1000);
        assert_eq!(Close::echo_code(1007), 1007);
        assert_eq!(Close::echo_code(1014), 1014);
        assert_eq!(Close::echo_code(1015), 1000);
        assert_eq!(Close::echo_code(2999), 1000);
        assert_eq!(Close::echo_code(3000), 3000);
        assert_eq!(Close::echo_code(4999), 4999);
        assert_eq!(Close::echo_code(5000), 1000);
        assert_eq!(Close::echo_code(usize::MAX), 1000);
    }
}
