//! Server-side publish: `POST /api/room/{room}/messages` with `Authorization: Bearer
//! <service token>` and a body `{"name": …, "message": …, "cid": …}`. An app's backend
//! (a bot, a notifier) posts into a room without holding a WebSocket.
//!
//! The whole rule is here, sans-IO: a backend reads the header and the body (at most
//! [`body_limit`] bytes) and hands them to [`Room::publish`], which answers with a
//! [`PublishAnswer`] (status, JSON body, `Retry-After`) and the actions of the stored
//! message (its commit barrier, then its broadcast). A backend sends the answer only
//! once the commit is done, like the broadcast: a 201 is never given for a message a
//! crash could still take back.
//!
//! The checks, in order (the first failure answers):
//! 1. the room has an auth secret, else 404 `publish_disabled`;
//! 2. the body declares its `Content-Length` (411 `length_required`: a backend then
//!    knows its size before reading it), at most [`body_limit`] bytes (413
//!    `body_too_large`);
//! 3. a bearer token is there, else 401 `token_missing`; it verifies as a join token
//!    does (401 with its `token_*` code; 403 `token_wrong_room` for another room's);
//!    its role is `service` (403 `not_service`) and it names its room or `*` (403
//!    `service_token_needs_room`);
//! 4. the body is a JSON object with a `message` (400 `publish_shape`), checked like a
//!    chat message, an optional `name` checked like a hello's (the token's name when
//!    absent) and an optional `cid` (the cid rule): 400 with the field's code;
//! 5. the token's `sub` is not muted in the room (403 `muted`);
//! 6. the `sub`'s publish bucket has a token (`publish_burst`, `publish_per_sec`), else
//!    429 `rate_limited` with `Retry-After`;
//! 7. a `cid` the same `sub` already used within the retry window answers 200 with the
//!    original's seq and timestamp (stored once); else the message is stored (503
//!    `not_stored` if storage fails) and answered 201 `{"seq", "timestamp"}`.

use crate::edge::identity::{self, AuthSecret, Identity};
use crate::edge::retry_after_secs;
use crate::protocol::client_frame::{validate_message, validate_name};
use crate::protocol::config::Config;
use crate::protocol::error_kind::ErrorKind;
use crate::protocol::requests::parse_cid;
use crate::protocol::user::Role;
use crate::room::action::{Action, Effect};
use crate::room::observe::Event;
use crate::room::ratelimit::Bucket;
use crate::room::storage::{Storage, StoredMessage};
use crate::room::{retry, Room};
use serde::Serialize;
use serde_json::Value;

/// Largest publish body, in bytes: `max_frame_bytes`, the bound of a WebSocket frame
/// carrying the same message. Backends refuse a declared `Content-Length` over it
/// before reading, and stop reading a body that outgrows it.
pub fn body_limit(config: &Config) -> usize {
    config.max_frame_bytes
}

/// The HTTP status of a publish refused for `kind`.
pub fn status(kind: ErrorKind) -> u16 {
    match kind {
        ErrorKind::PublishDisabled => 404,
        ErrorKind::PublishBodyTooLarge => 413,
        ErrorKind::PublishLengthRequired => 411,
        ErrorKind::RateLimited => 429,
        ErrorKind::NotStored => 503,
        ErrorKind::TokenWrongRoom
        | ErrorKind::PublishNotService
        | ErrorKind::ServiceTokenNeedsRoom
        | ErrorKind::ModeratorTokenNeedsRoom
        | ErrorKind::Muted => 403,
        ErrorKind::PublishTokenMissing
        | ErrorKind::TokenTooLong
        | ErrorKind::TokenMalformed
        | ErrorKind::TokenAlgorithm
        | ErrorKind::TokenSignature
        | ErrorKind::TokenExpired
        | ErrorKind::TokenNotYetValid
        | ErrorKind::TokenClaims
        | ErrorKind::TokenIssuer
        | ErrorKind::TokenAudience => 401,
        _ => 400,
    }
}

/// The answer to a publish: the status, the JSON body, and for a 429 the seconds of
/// `Retry-After`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishAnswer {
    pub status: u16,
    pub body: String,
    pub retry_after_secs: Option<u64>,
}

#[derive(Serialize)]
struct Refusal {
    error: &'static str,
    code: &'static str,
}

#[derive(Serialize)]
struct Stored {
    seq: u64,
    timestamp: u64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    deleted: bool,
}

impl PublishAnswer {
    /// A refusal: `{"error": <sentence>, "code": <label>}` with its [`status`]. Public
    /// so that a backend answers what it refuses before the room (a declared body
    /// over [`body_limit`]) in the same words.
    pub fn refused(kind: ErrorKind) -> Self {
        let body = Refusal {
            error: kind.sentence(),
            code: kind.label(),
        };
        PublishAnswer {
            status: status(kind),
            body: serde_json::to_string(&body).unwrap_or_default(),
            retry_after_secs: None,
        }
    }

    fn stored(status: u16, seq: u64, timestamp: u64, deleted: bool) -> Self {
        let body = Stored {
            seq,
            timestamp,
            deleted,
        };
        PublishAnswer {
            status,
            body: serde_json::to_string(&body).unwrap_or_default(),
            retry_after_secs: None,
        }
    }
}

/// The bucket key of a service `sub`'s publishes. Address keys never hold a space, so
/// this never meets a frame or join bucket.
fn bucket_key(sub: &str) -> String {
    format!("publish {sub}")
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case).
fn bearer(header: Option<&str>) -> Option<&str> {
    let (scheme, token) = header?.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The fields of a checked body.
struct Body {
    name: Option<String>,
    message: String,
    cid: Option<String>,
}

fn parse_body(body: &str, config: &Config) -> Result<Body, ErrorKind> {
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(body) else {
        return Err(ErrorKind::PublishShape);
    };
    let message = match map.get("message") {
        Some(Value::String(m)) => validate_message(m, config)?.to_owned(),
        None | Some(Value::Null) => return Err(ErrorKind::PublishShape),
        Some(_) => return Err(ErrorKind::MessageNotString),
    };
    let name = match map.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(n)) => Some(validate_name(n, config)?),
        Some(_) => return Err(ErrorKind::NameNotString),
    };
    let cid = parse_cid(map.get("cid"))?;
    Ok(Body { name, message, cid })
}

/// Checks 1 to 3 of the module comment: what a backend checks at the edge, before the
/// request reaches its room, so that a request without a valid service token for this
/// room never opens one (nor wakes a Durable Object). `body_len` is the declared
/// `Content-Length` (`None` when there is none), `room` the room's id as join tokens
/// name it. [`Room::publish`] runs the same checks again.
pub fn check_request(
    authorization: Option<&str>,
    body_len: Option<u64>,
    secret: Option<&AuthSecret>,
    room: &str,
    now_ms: u64,
    config: &Config,
) -> Result<Identity, PublishAnswer> {
    let Some(secret) = secret else {
        return Err(PublishAnswer::refused(ErrorKind::PublishDisabled));
    };
    match body_len {
        None => return Err(PublishAnswer::refused(ErrorKind::PublishLengthRequired)),
        Some(n) if n > body_limit(config) as u64 => {
            return Err(PublishAnswer::refused(ErrorKind::PublishBodyTooLarge))
        }
        Some(_) => {}
    }
    let token = bearer(authorization).ok_or(ErrorKind::PublishTokenMissing);
    let id = token
        .and_then(|t| identity::verify(t, secret, room, now_ms, config))
        .map_err(PublishAnswer::refused)?;
    if id.role != Some(Role::Service) {
        return Err(PublishAnswer::refused(ErrorKind::PublishNotService));
    }
    Ok(id)
}

impl<S: Storage> Room<S> {
    /// A server-side publish (see the module comment): `authorization` is the
    /// `Authorization` header, `body` the request body. Returns the answer and the
    /// actions to carry out; the answer goes out once the actions' commit is done.
    pub fn publish(
        &mut self,
        authorization: Option<&str>,
        body: &str,
        now_ms: u64,
    ) -> (PublishAnswer, Vec<Action>) {
        let mut out = Vec::new();
        let answer = match self.publish_checked(authorization, body, now_ms, &mut out) {
            Ok(answer) => answer,
            Err((kind, retry_after)) => PublishAnswer {
                retry_after_secs: retry_after,
                ..PublishAnswer::refused(kind)
            },
        };
        (answer, self.finish(out, now_ms))
    }

    fn publish_checked(
        &mut self,
        authorization: Option<&str>,
        body: &str,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) -> Result<PublishAnswer, (ErrorKind, Option<u64>)> {
        let refuse = |kind| (kind, None);
        let secret = self.auth.as_ref().map(|a| &a.secret);
        let room = self.auth.as_ref().map_or("", |a| a.room.as_str());
        let id = match check_request(
            authorization,
            Some(body.len() as u64),
            secret,
            room,
            now_ms,
            &self.config,
        ) {
            Ok(id) => id,
            Err(answer) => return Ok(answer),
        };
        let body = parse_body(body, &self.config).map_err(refuse)?;
        let restriction = self
            .storage
            .restriction(&id.user)
            .map_err(|_| refuse(ErrorKind::NotStored))?;
        if restriction.muted_until > now_ms {
            return Err(refuse(ErrorKind::Muted));
        }
        self.take_publish_token(&id.user, now_ms)?;
        let sender = format!("user:{}", id.user);
        if let Some(cid) = &body.cid {
            let (after_seq, since_ms) = retry::window(&self.config, self.last_seq, now_ms);
            match self.storage.find_cid(&sender, cid, after_seq, since_ms) {
                Ok(Some(original)) => {
                    return Ok(PublishAnswer::stored(
                        200,
                        original.seq,
                        original.timestamp,
                        original.deleted,
                    ))
                }
                Ok(None) => {}
                Err(_) => return Err(refuse(ErrorKind::NotStored)),
            }
        }
        let (seq, timestamp) = self.next_stamp(now_ms);
        let msg = StoredMessage {
            seq,
            timestamp,
            name: body.name.unwrap_or(id.name),
            message: body.message,
            user: Some(id.user),
            sender: body.cid.is_some().then_some(sender),
            cid: body.cid,
            role: Some(Role::Service),
            // A service's message is edited by nobody: no session is its author.
            ..StoredMessage::default()
        };
        let (seq, timestamp) = self
            .store_and_broadcast(msg, None, out)
            .ok_or(refuse(ErrorKind::NotStored))?;
        self.observer.observe(Event::Published {
            seq,
            recipients: self.members,
        });
        Ok(PublishAnswer::stored(201, seq, timestamp, false))
    }

    /// Takes a token from `sub`'s publish bucket, written through to storage (a
    /// publish writes a message anyway). Refused: `Retry-After` in seconds. An
    /// unreadable bucket counts as full and a failed write is ignored: both only
    /// forgive the publisher.
    fn take_publish_token(
        &mut self,
        sub: &str,
        now_ms: u64,
    ) -> Result<(), (ErrorKind, Option<u64>)> {
        let (burst, rate) = (self.config.publish_burst, self.config.publish_per_sec);
        let key = bucket_key(sub);
        let mut bucket = self
            .storage
            .load_bucket(&key)
            .ok()
            .flatten()
            .unwrap_or_else(|| Bucket::full(burst, now_ms));
        if !bucket.try_take(burst, rate, now_ms) {
            let wait = retry_after_secs(bucket.ms_until_token(rate));
            return Err((ErrorKind::RateLimited, Some(wait)));
        }
        let _ = self.storage.save_bucket(&key, &bucket);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_from_the_header() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(Some("abc")), None);
        assert_eq!(bearer(None), None);
    }

    #[test]
    fn every_refusal_has_its_status() {
        assert_eq!(status(ErrorKind::PublishDisabled), 404);
        assert_eq!(status(ErrorKind::TokenExpired), 401);
        assert_eq!(status(ErrorKind::TokenWrongRoom), 403);
        assert_eq!(status(ErrorKind::PublishShape), 400);
        assert_eq!(status(ErrorKind::CidInvalid), 400);
        let a = PublishAnswer::refused(ErrorKind::PublishNotService);
        let v: Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(a.status, 403);
        assert_eq!(v["code"], "not_service");
        assert_eq!(v["error"], ErrorKind::PublishNotService.sentence());
    }
}
