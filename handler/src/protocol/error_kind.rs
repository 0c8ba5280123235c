//! Every error sentence the chat sends in an `{"error": …}` frame, declared once. The
//! sentences are fixed by `docs/protocol.md`: they are for the person using a client,
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
    /// A join token longer than `max_token_bytes`.
    TokenTooLong,
    /// A join token that is not a JWT (three base64url parts, JSON objects), or not a string.
    TokenMalformed,
    /// A join token signed with anything but HS256 (`none` included).
    TokenAlgorithm,
    TokenSignature,
    TokenExpired,
    /// `nbf` is still in the future.
    TokenNotYetValid,
    /// The `room` claim names another room.
    TokenWrongRoom,
    /// `sub` or `exp` missing or invalid, an unknown `role`, a claim of the wrong type.
    TokenClaims,
    /// `auth_required` and the hello has no token.
    TokenRequired,
    /// Sent before a kicked session's close (4001).
    Kicked,
    /// A kicked user's hello, before the kick's `secs` are over.
    StillKicked,
    /// A muted user's chat message.
    Muted,
    /// A moderation frame from a session whose token does not make it a moderator.
    NotModerator,
    /// `delete` is not a seq.
    DeleteShape,
    /// `kick` or `mute` is not `{"user": <user id>, "secs": <seconds>}`.
    ModerationShape,
    /// `secs` over `max_moderation_secs`.
    SecsTooLarge,
    /// `delete` of a seq that is not stored (never sent, pruned or already deleted).
    NoSuchMessage,
    /// A kick or mute of one more user than `max_restricted_users`.
    TooManyRestricted,
    /// Storage failed during a moderation: nothing was changed.
    ModerationNotStored,
    /// A chat frame's `cid` is not 1–64 characters of `[A-Za-z0-9_-]`.
    CidInvalid,
    /// A history request from a v1 session.
    HistoryNeedsV2,
    /// `history` is not an object.
    HistoryShape,
    /// A history request's `before` is not a seq.
    HistoryBefore,
    /// A history request's `limit` is not from 1 to `history_page_max`.
    HistoryLimit,
    /// Storage failed while reading a history page.
    HistoryUnavailable,
    /// A member page request from a v1 session.
    MembersNeedsV2,
    /// `members` is not an object.
    MembersShape,
    /// A member page request's `after` is not a cursor the server gives out.
    MembersCursor,
    /// A member page request's `limit` is not from 1 to `roster_inline_max`.
    MembersLimit,
    /// The name is empty once invisible characters are removed.
    NameInvisible,
    /// Sent before close 1013 "Room is full".
    RoomFull,
    /// Sent before close 1013 "Too many connections from your address".
    TooManySeats,
    /// Sent before close 1013 "Joining too fast": the address's join bucket is empty.
    JoiningTooFast,
    /// A v2 hello's `batch` is neither a boolean nor null.
    BatchNotBoolean,
    /// A join token with `role: moderator` and no `room` claim (a moderator token must
    /// name its room, or `*` for every room).
    ModeratorTokenNeedsRoom,
    /// `auth_issuer` is set and the token's `iss` is not it.
    TokenIssuer,
    /// `auth_audience` is set and the token's `aud` does not name it.
    TokenAudience,
    /// The name holds a check mark (✓ and its look-alikes), which would imitate the
    /// verified mark.
    NameCheckMark,
    /// A v1 session retried a `cid` whose message a moderator deleted (a v2 session gets
    /// the tombstone instead).
    MessageDeleted,
    /// An anonymous hello whose name is the name or user id of a verified member in the
    /// room.
    NameOfVerified,
    /// A v2 frame's `id` is not 1–64 characters of `[A-Za-z0-9_-]`: the request is not
    /// carried out.
    IdInvalid,
}

impl ErrorKind {
    /// Every kind, for tables and exhaustive tests.
    pub const ALL: [ErrorKind; 57] = [
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
        ErrorKind::TokenTooLong,
        ErrorKind::TokenMalformed,
        ErrorKind::TokenAlgorithm,
        ErrorKind::TokenSignature,
        ErrorKind::TokenExpired,
        ErrorKind::TokenNotYetValid,
        ErrorKind::TokenWrongRoom,
        ErrorKind::TokenClaims,
        ErrorKind::TokenRequired,
        ErrorKind::Kicked,
        ErrorKind::StillKicked,
        ErrorKind::Muted,
        ErrorKind::NotModerator,
        ErrorKind::DeleteShape,
        ErrorKind::ModerationShape,
        ErrorKind::SecsTooLarge,
        ErrorKind::NoSuchMessage,
        ErrorKind::TooManyRestricted,
        ErrorKind::ModerationNotStored,
        ErrorKind::CidInvalid,
        ErrorKind::HistoryNeedsV2,
        ErrorKind::HistoryShape,
        ErrorKind::HistoryBefore,
        ErrorKind::HistoryLimit,
        ErrorKind::HistoryUnavailable,
        ErrorKind::MembersNeedsV2,
        ErrorKind::MembersShape,
        ErrorKind::MembersCursor,
        ErrorKind::MembersLimit,
        ErrorKind::NameInvisible,
        ErrorKind::RoomFull,
        ErrorKind::TooManySeats,
        ErrorKind::JoiningTooFast,
        ErrorKind::BatchNotBoolean,
        ErrorKind::MessageDeleted,
        ErrorKind::ModeratorTokenNeedsRoom,
        ErrorKind::TokenIssuer,
        ErrorKind::TokenAudience,
        ErrorKind::NameCheckMark,
        ErrorKind::NameOfVerified,
        ErrorKind::IdInvalid,
    ];

    /// A stable snake_case name: the metric label, the log field, and the `code` of a
    /// v2 session's error frame. Clients match on it, so it is never renamed.
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
            ErrorKind::BatchNotBoolean => "batch_not_boolean",
            ErrorKind::MessageDeleted => "message_deleted",
            ErrorKind::ModeratorTokenNeedsRoom => "moderator_token_needs_room",
            ErrorKind::TokenIssuer => "token_issuer",
            ErrorKind::TokenAudience => "token_audience",
            ErrorKind::NameCheckMark => "name_check_mark",
            ErrorKind::NameOfVerified => "name_of_verified",
            ErrorKind::TokenTooLong => "token_too_long",
            ErrorKind::TokenMalformed => "token_malformed",
            ErrorKind::TokenAlgorithm => "token_algorithm",
            ErrorKind::TokenSignature => "token_signature",
            ErrorKind::TokenExpired => "token_expired",
            ErrorKind::TokenNotYetValid => "token_not_yet_valid",
            ErrorKind::TokenWrongRoom => "token_wrong_room",
            ErrorKind::TokenClaims => "token_claims",
            ErrorKind::TokenRequired => "token_required",
            ErrorKind::Kicked => "kicked",
            ErrorKind::StillKicked => "still_kicked",
            ErrorKind::Muted => "muted",
            ErrorKind::NotModerator => "not_moderator",
            ErrorKind::DeleteShape => "delete_shape",
            ErrorKind::ModerationShape => "moderation_shape",
            ErrorKind::SecsTooLarge => "secs_too_large",
            ErrorKind::NoSuchMessage => "no_such_message",
            ErrorKind::TooManyRestricted => "too_many_restricted",
            ErrorKind::ModerationNotStored => "moderation_not_stored",
            ErrorKind::CidInvalid => "cid_invalid",
            ErrorKind::HistoryNeedsV2 => "history_needs_v2",
            ErrorKind::HistoryShape => "history_shape",
            ErrorKind::HistoryBefore => "history_before",
            ErrorKind::HistoryLimit => "history_limit",
            ErrorKind::HistoryUnavailable => "history_unavailable",
            ErrorKind::MembersNeedsV2 => "members_needs_v2",
            ErrorKind::MembersShape => "members_shape",
            ErrorKind::MembersCursor => "members_cursor",
            ErrorKind::MembersLimit => "members_limit",
            ErrorKind::NameInvisible => "name_invisible",
            ErrorKind::RoomFull => "room_full",
            ErrorKind::TooManySeats => "too_many_seats",
            ErrorKind::JoiningTooFast => "joining_too_fast",
            ErrorKind::IdInvalid => "id_invalid",
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
            ErrorKind::TokenTooLong => "Token is too long.",
            ErrorKind::TokenMalformed => {
                "Token is malformed: expected a JWT (three base64url parts, header.payload.signature)."
            }
            ErrorKind::TokenAlgorithm => "Token must be signed with HS256.",
            ErrorKind::TokenSignature => "Token signature is invalid.",
            ErrorKind::TokenExpired => "Token has expired.",
            ErrorKind::TokenNotYetValid => "Token is not valid yet.",
            ErrorKind::TokenWrongRoom => "Token is for another room.",
            ErrorKind::TokenClaims => {
                "Token claims are invalid: sub (1 to 64 characters) and exp are required, and role may only be \"moderator\"."
            }
            ErrorKind::TokenRequired => {
                "This room requires a token: send {\"token\": \"<jwt>\"} in the hello."
            }
            ErrorKind::Kicked => "A moderator removed you from this room.",
            ErrorKind::StillKicked => "A moderator removed you from this room; try again later.",
            ErrorKind::Muted => "You are muted in this room.",
            ErrorKind::NotModerator => "Only moderators may delete, kick or mute.",
            ErrorKind::DeleteShape => {
                "\"delete\" must be the seq of a message, like {\"delete\": 17}."
            }
            ErrorKind::ModerationShape => {
                "Expected {\"kick\": {\"user\": \"<user id>\", \"secs\": 300}} or {\"mute\": {\"user\": \"<user id>\", \"secs\": 600}}."
            }
            ErrorKind::SecsTooLarge => "\"secs\" is longer than this server allows.",
            ErrorKind::NoSuchMessage => "There is no message with that seq to delete.",
            ErrorKind::TooManyRestricted => {
                "Too many users are kicked or muted in this room already."
            }
            ErrorKind::ModerationNotStored => {
                "The moderation could not be stored; nothing changed. Try again."
            }
            ErrorKind::CidInvalid => "\"cid\" must be 1 to 64 letters, digits, \"_\" or \"-\".",
            ErrorKind::HistoryNeedsV2 => {
                "History needs protocol v2: send \"v\": 2 in the hello."
            }
            ErrorKind::HistoryShape => {
                "Expected a history request like {\"history\": {\"before\": 120, \"limit\": 50}}."
            }
            ErrorKind::HistoryBefore => {
                "History \"before\" must be a seq: a whole number, 0 or more."
            }
            ErrorKind::HistoryLimit => {
                "History \"limit\" must be a whole number from 1 to history_page_max (see GET /api/limits)."
            }
            ErrorKind::HistoryUnavailable => "History could not be read; try again.",
            ErrorKind::MembersNeedsV2 => {
                "Member pages need protocol v2: send \"v\": 2 in the hello."
            }
            ErrorKind::MembersShape => {
                "Expected a member page request like {\"members\": {\"after\": \"<next>\", \"limit\": 100}}."
            }
            ErrorKind::MembersCursor => {
                "Members \"after\" must be a \"next\" cursor the server sent, or null for the first page."
            }
            ErrorKind::MembersLimit => {
                "Members \"limit\" must be a whole number from 1 to roster_inline_max (see GET /api/limits)."
            }
            ErrorKind::NameInvisible => "Name must contain a visible character.",
            ErrorKind::RoomFull => "Room is full; try again later.",
            ErrorKind::TooManySeats => {
                "Too many connections from your address in this room; close one and try again."
            }
            ErrorKind::JoiningTooFast => {
                "Too many joins from your address; wait a little before reconnecting."
            }
            ErrorKind::BatchNotBoolean => "\"batch\" must be true or false.",
            ErrorKind::MessageDeleted => "That message was deleted by a moderator.",
            ErrorKind::TokenIssuer => "Token issuer is not accepted by this server.",
            ErrorKind::TokenAudience => "Token is not for this server (audience).",
            ErrorKind::NameCheckMark => {
                "Name may not contain check marks: only the server marks verified users."
            }
            ErrorKind::ModeratorTokenNeedsRoom => {
                "A moderator token must name its room: \"room\": \"<room>\", or \"*\" for every room."
            }
            ErrorKind::NameOfVerified => "That name belongs to a verified member.",
            ErrorKind::IdInvalid => "\"id\" must be 1 to 64 letters, digits, \"_\" or \"-\".",
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
                l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{l}"
            );
        }
    }
}
