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
    /// A hello whose join token has `role: service`: service tokens publish over HTTP
    /// and never join.
    ServiceTokenInHello,
    /// A service token with no `room` claim.
    ServiceTokenNeedsRoom,
    /// Publish: the server has no auth secret, so no service token can be checked.
    PublishDisabled,
    /// Publish: no `Authorization: Bearer <token>` header.
    PublishTokenMissing,
    /// Publish: a valid token whose role is not `service`.
    PublishNotService,
    /// Publish: the body is over the server's cap (`max_frame_bytes`).
    PublishBodyTooLarge,
    /// Publish: the body is not a JSON object with `name` and `message`.
    PublishShape,
    /// Publish: no `Content-Length` (a chunked body): its size must be known first.
    PublishLengthRequired,
    /// An edit from a v1 session.
    EditNeedsV2,
    /// `edit` is not `{"seq": <seq>, "message": <string>}`.
    EditShape,
    /// An edit of another sender's message (another user, or another connection for an anonymous message).
    EditNotYours,
    /// An edit after `edit_window_secs` (or with edits turned off, 0).
    EditTooLate,
    /// An edit of a seq that is not stored (never sent, pruned or deleted).
    EditNoSuchMessage,
    /// Storage failed during an edit: nothing was changed.
    EditNotStored,
    /// A reaction from a v1 session.
    ReactNeedsV2,
    /// `react` is not `{"seq": <seq>, "emoji": <string>}`.
    ReactShape,
    /// The emoji is not one grapheme cluster of at most 16 bytes, or is white space or a control.
    ReactEmoji,
    /// A reaction to a seq that is not stored (never sent, pruned or deleted).
    ReactNoSuchMessage,
    /// A new emoji on a message with `max_reactions_per_message` different ones.
    ReactionsFull,
    /// A reaction on a message whose counts add up to `max_reaction_count_per_message`.
    ReactionCountFull,
    /// Storage failed during a reaction: nothing was changed.
    ReactNotStored,
    /// A v2 typing frame whose `typing` is not a boolean.
    TypingInvalid,
    /// A v2 typing frame past the connection's typing bucket (`typing_burst`).
    TypingRateLimited,
    /// A v2 frame's `id` is not 1–64 characters of `[A-Za-z0-9_-]`: the request is not
    /// carried out.
    IdInvalid,
}

impl ErrorKind {
    /// Every kind, for tables and exhaustive tests.
    pub const ALL: [ErrorKind; 80] = [
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
        ErrorKind::ServiceTokenInHello,
        ErrorKind::ServiceTokenNeedsRoom,
        ErrorKind::PublishDisabled,
        ErrorKind::PublishTokenMissing,
        ErrorKind::PublishNotService,
        ErrorKind::PublishBodyTooLarge,
        ErrorKind::PublishShape,
        ErrorKind::PublishLengthRequired,
        ErrorKind::EditNeedsV2,
        ErrorKind::EditShape,
        ErrorKind::EditNotYours,
        ErrorKind::EditTooLate,
        ErrorKind::EditNoSuchMessage,
        ErrorKind::EditNotStored,
        ErrorKind::ReactNeedsV2,
        ErrorKind::ReactShape,
        ErrorKind::ReactEmoji,
        ErrorKind::ReactNoSuchMessage,
        ErrorKind::ReactionsFull,
        ErrorKind::ReactionCountFull,
        ErrorKind::ReactNotStored,
        ErrorKind::TypingInvalid,
        ErrorKind::TypingRateLimited,
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
            ErrorKind::ServiceTokenInHello => "service_token_in_hello",
            ErrorKind::ServiceTokenNeedsRoom => "service_token_needs_room",
            ErrorKind::PublishDisabled => "publish_disabled",
            ErrorKind::PublishTokenMissing => "token_missing",
            ErrorKind::PublishNotService => "not_service",
            ErrorKind::PublishBodyTooLarge => "body_too_large",
            ErrorKind::PublishShape => "publish_shape",
            ErrorKind::PublishLengthRequired => "length_required",
            ErrorKind::TypingInvalid => "typing_invalid",
            ErrorKind::TypingRateLimited => "typing_rate_limited",
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
            ErrorKind::EditNeedsV2 => "edit_needs_v2",
            ErrorKind::EditShape => "edit_shape",
            ErrorKind::EditNotYours => "edit_not_yours",
            ErrorKind::EditTooLate => "edit_too_late",
            ErrorKind::EditNoSuchMessage => "edit_no_such_message",
            ErrorKind::EditNotStored => "edit_not_stored",
            ErrorKind::ReactNeedsV2 => "react_needs_v2",
            ErrorKind::ReactShape => "react_shape",
            ErrorKind::ReactEmoji => "react_emoji",
            ErrorKind::ReactNoSuchMessage => "react_no_such_message",
            ErrorKind::ReactionsFull => "reactions_full",
            ErrorKind::ReactionCountFull => "reaction_count_full",
            ErrorKind::ReactNotStored => "react_not_stored",
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
                "Token claims are invalid: sub (1 to 64 characters) and exp are required, and role may only be \"moderator\" or \"service\"."
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
            ErrorKind::ServiceTokenInHello => {
                "A service token publishes over HTTP and cannot join a room: use a user's token."
            }
            ErrorKind::ServiceTokenNeedsRoom => {
                "A service token must name its room: \"room\": \"<room>\", or \"*\" for every room."
            }
            ErrorKind::PublishDisabled => {
                "Publishing is not enabled on this server (it has no auth secret)."
            }
            ErrorKind::PublishTokenMissing => {
                "Publishing needs a service token: send Authorization: Bearer <jwt>."
            }
            ErrorKind::PublishNotService => "Only a token with role \"service\" may publish.",
            ErrorKind::PublishBodyTooLarge => {
                "Request body is too large: at most max_frame_bytes (see GET /api/limits)."
            }
            ErrorKind::PublishLengthRequired => {
                "A publish must declare its body's Content-Length."
            }
            ErrorKind::PublishShape => {
                "Expected a JSON object like {\"name\": \"Build bot\", \"message\": \"hello\"}."
            }
            ErrorKind::EditNeedsV2 => "Editing needs protocol v2: send \"v\": 2 in the hello.",
            ErrorKind::EditShape => "Expected an edit like {\"edit\": {\"seq\": 17, \"message\": \"new text\"}}.",
            ErrorKind::EditNotYours => "Only its author may edit a message: the same user, or for an anonymous message the connection that sent it.",
            ErrorKind::EditTooLate => "This message can no longer be edited (edit_window_secs, see GET /api/limits).",
            ErrorKind::EditNoSuchMessage => "There is no message with that seq to edit.",
            ErrorKind::EditNotStored => "The edit could not be stored; nothing changed. Try again.",
            ErrorKind::ReactNeedsV2 => "Reactions need protocol v2: send \"v\": 2 in the hello.",
            ErrorKind::ReactShape => "Expected a reaction like {\"react\": {\"seq\": 17, \"emoji\": \"👍\"}}.",
            ErrorKind::ReactEmoji => "A reaction must be one emoji: a single character (grapheme) of at most 16 bytes.",
            ErrorKind::ReactNoSuchMessage => "There is no message with that seq to react to.",
            ErrorKind::ReactionsFull => "This message has as many different reactions as it may have (max_reactions_per_message).",
            ErrorKind::ReactionCountFull => "This message has as many reactions as it may have (max_reaction_count_per_message).",
            ErrorKind::ReactNotStored => "The reaction could not be stored; nothing changed. Try again.",
            ErrorKind::TypingInvalid => "\"typing\" must be true or false.",
            ErrorKind::TypingRateLimited => "Typing updates too fast; slow down.",
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
