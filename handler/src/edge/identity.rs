//! Signed identity: join tokens (JWTs signed with HS256) and the verified user a valid
//! token makes of a session.
//!
//! An app's backend mints a token for its signed-in user with any stock JWT library and
//! the room server's secret; the client puts it in its hello (`{"token": "<jwt>"}`).
//! Only HS256 is accepted: the algorithm is fixed here, never taken from the token, so a
//! token cannot choose `none` or a public-key algorithm. The signature is checked in
//! constant time (`Mac::verify_slice`). Time is passed in, like everywhere in the handler.

use crate::protocol::client_frame::validate_name;
use crate::protocol::config::{Config, ConfigError};
use crate::protocol::error_kind::ErrorKind;
pub use crate::protocol::user::{is_user_id, Role, MAX_USER_CHARS};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::Sha256;
use std::fmt;

/// Shortest secret accepted: HS256 keys should carry at least the hash's 256 bits.
pub const MIN_SECRET_BYTES: usize = 32;
/// The `room` claim of a token valid in every room. It is never a room name.
pub const ALL_ROOMS: &str = "*";
/// Clock skew forgiven on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 60;

type HmacSha256 = Hmac<Sha256>;

/// The shared secret that signs join tokens. Not a [`Config`] key: it is read from a
/// file or an environment variable on the local runner and from a wrangler secret on
/// the Worker, never from plain settings that end up in `wrangler.toml` or `--help`.
#[derive(Clone)]
pub struct AuthSecret(Vec<u8>);

impl AuthSecret {
    /// The secret's text, surrounding white space (a file's final newline) removed.
    /// Refused when shorter than [`MIN_SECRET_BYTES`].
    pub fn new(text: &str) -> Result<Self, ConfigError> {
        let bytes = text.trim().as_bytes();
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(ConfigError(format!(
                "the auth secret must be at least {MIN_SECRET_BYTES} bytes, got {}",
                bytes.len()
            )));
        }
        Ok(AuthSecret(bytes.to_vec()))
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes a key of any length, so this cannot fail.
        HmacSha256::new_from_slice(&self.0).expect("HMAC accepts any key length")
    }
}

impl fmt::Debug for AuthSecret {
    /// Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthSecret(..)")
    }
}

/// What a room needs to verify tokens: the secret, and its own id (the room name, or
/// the private room id), which a token's `room` claim must equal when present.
#[derive(Debug, Clone)]
pub struct Auth {
    pub secret: AuthSecret,
    pub room: String,
}

/// Refuses a configuration that requires tokens but has no secret to check them with.
pub fn check_setup(config: &Config, secret: Option<&AuthSecret>) -> Result<(), ConfigError> {
    if config.auth_required && secret.is_none() {
        return Err(ConfigError(
            "auth_required needs the auth secret (no token could be checked without it)".to_owned(),
        ));
    }
    Ok(())
}

/// The identity a valid token gives a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token's `sub`.
    pub user: String,
    /// The token's `name` (checked like a hello name), or `user` when absent.
    pub name: String,
    pub role: Option<Role>,
}

/// Verifies a join token for room `room` at `now_ms`. Every refusal is a sentence for
/// the person (or the app developer) behind the client.
pub fn verify(
    token: &str,
    secret: &AuthSecret,
    room: &str,
    now_ms: u64,
    config: &Config,
) -> Result<Identity, ErrorKind> {
    if token.len() > config.max_token_bytes {
        return Err(ErrorKind::TokenTooLong);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ErrorKind::TokenMalformed);
    };
    let header = decode_json(header)?;
    if header.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err(ErrorKind::TokenAlgorithm);
    }
    // A critical extension this verifier does not know must not be ignored (RFC 7515).
    if header.contains_key("crit") {
        return Err(ErrorKind::TokenMalformed);
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| ErrorKind::TokenMalformed)?;
    let mut mac = secret.mac();
    mac.update(&token.as_bytes()[..header_and_payload_len(token)]);
    mac.verify_slice(&signature)
        .map_err(|_| ErrorKind::TokenSignature)?;

    // Signed by the app: now the claims can be trusted to mean what they say.
    let claims = decode_json(payload)?;
    let now_secs = now_ms / 1000;
    let exp = numeric_date(claims.get("exp"))?.ok_or(ErrorKind::TokenClaims)?;
    if now_secs > exp.saturating_add(LEEWAY_SECS) {
        return Err(ErrorKind::TokenExpired);
    }
    if let Some(nbf) = numeric_date(claims.get("nbf"))? {
        if now_secs.saturating_add(LEEWAY_SECS) < nbf {
            return Err(ErrorKind::TokenNotYetValid);
        }
    }
    // The issuer and audience, when the server names them (RFC 7519 4.1.1, 4.1.3).
    if !config.auth_issuer.is_empty()
        && claims.get("iss") != Some(&config.auth_issuer.as_str().into())
    {
        return Err(ErrorKind::TokenIssuer);
    }
    if !config.auth_audience.is_empty() && !names_audience(claims.get("aud"), &config.auth_audience)
    {
        return Err(ErrorKind::TokenAudience);
    }
    // Whether the token names its room: this one, or every room with `*` (never a room
    // name, so never ambiguous).
    let names_its_room = match claims.get("room") {
        None | Some(Value::Null) => false,
        Some(Value::String(r)) if r == room || r == ALL_ROOMS => true,
        Some(Value::String(_)) => return Err(ErrorKind::TokenWrongRoom),
        Some(_) => return Err(ErrorKind::TokenClaims),
    };
    let user = match claims.get("sub") {
        Some(Value::String(s)) if is_user_id(s) => s.clone(),
        _ => return Err(ErrorKind::TokenClaims),
    };
    let role = match claims.get("role") {
        None | Some(Value::Null) => None,
        Some(Value::String(r)) if r == Role::Moderator.as_str() => Some(Role::Moderator),
        Some(Value::String(r)) if r == Role::Service.as_str() => Some(Role::Service),
        Some(_) => return Err(ErrorKind::TokenClaims),
    };
    // A moderator token moderates where it says: a token minted without a room (for
    // a user's identity everywhere) must not silently moderate every room. Refused
    // rather than taken as a plain user's, so the app's mistake shows at once. A
    // service token publishes where it says, for the same reason.
    match role {
        Some(Role::Moderator) if !names_its_room => return Err(ErrorKind::ModeratorTokenNeedsRoom),
        Some(Role::Service) if !names_its_room => return Err(ErrorKind::ServiceTokenNeedsRoom),
        _ => {}
    }
    let name = match claims.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(n)) if !n.trim().is_empty() => Some(n.as_str()),
        Some(Value::String(_)) => None,
        Some(_) => return Err(ErrorKind::NameNotString),
    };
    // The display name obeys the hello's rules, whichever claim it comes from.
    let name = validate_name(name.unwrap_or(&user), config)?;
    Ok(Identity { user, name, role })
}

/// True when an `aud` claim names `audience`: the string itself, or an array of strings
/// holding it (RFC 7519 4.1.3).
fn names_audience(aud: Option<&Value>, audience: &str) -> bool {
    match aud {
        Some(Value::String(a)) => a == audience,
        Some(Value::Array(items)) => items.iter().any(|a| a.as_str() == Some(audience)),
        _ => false,
    }
}

/// The length of `header.payload`, the signed part (the text before the last dot).
fn header_and_payload_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(0)
}

/// A base64url (unpadded) JSON object.
fn decode_json(part: &str) -> Result<Map<String, Value>, ErrorKind> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| ErrorKind::TokenMalformed)?;
    // Through `&str` rather than `from_slice`: the same JSON is accepted (what
    // `from_slice` accepts is UTF-8 throughout), and the rest of the crate reads
    // `&str` only, so the Worker's wasm keeps one copy of serde_json's parser.
    let text = std::str::from_utf8(&bytes).map_err(|_| ErrorKind::TokenMalformed)?;
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(ErrorKind::TokenMalformed),
    }
}

/// A JWT NumericDate (seconds since the epoch, possibly fractional), truncated to whole
/// seconds. `None` when absent; a claim that is there but no such number is an error.
fn numeric_date(v: Option<&Value>) -> Result<Option<u64>, ErrorKind> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(secs), _) => Ok(Some(secs)),
            (None, Some(f)) if f.is_finite() && f >= 0.0 => Ok(Some(f as u64)),
            _ => Err(ErrorKind::TokenClaims),
        },
        Some(_) => Err(ErrorKind::TokenClaims),
    }
}

/// The claims of a token to mint (see [`mint`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Claims {
    pub sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// Seconds since the Unix epoch.
    pub exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
}

/// Signs `claims` as an HS256 JWT, as an app's backend would (the local runner's
/// `token` subcommand uses it for development).
pub fn mint(secret: &AuthSecret, claims: &Claims) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    // Strings, integers and an enum of one string: serializing cannot fail.
    let payload = serde_json::to_vec(claims).unwrap_or_default();
    let signed = format!("{header}.{}", URL_SAFE_NO_PAD.encode(payload));
    let mut mac = secret.mac();
    mac.update(signed.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signed}.{signature}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    const NOW_MS: u64 = 1_764_000_000_000;
    const NOW: u64 = NOW_MS / 1000;

    fn secret() -> AuthSecret {
        AuthSecret::new(SECRET).unwrap()
    }

    fn claims() -> Claims {
        Claims {
            sub: "u42".into(),
            exp: NOW + 3600,
            ..Claims::default()
        }
    }

    fn check(token: &str) -> Result<Identity, ErrorKind> {
        verify(token, &secret(), "lobby", NOW_MS, &Config::default())
    }

    /// A token with any header and payload, signed with the test secret.
    fn signed(header: &str, payload: &str) -> String {
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let mut mac = secret().mac();
        mac.update(signed.as_bytes());
        format!(
            "{signed}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    #[test]
    fn a_minted_token_verifies() {
        let id = check(&mint(&secret(), &claims())).unwrap();
        assert_eq!(
            id,
            Identity {
                user: "u42".into(),
                name: "u42".into(),
                role: None
            }
        );
        let c = Claims {
            name: Some("  Ana  ".into()),
            role: Some(Role::Moderator),
            room: Some("lobby".into()),
            nbf: Some(NOW),
            ..claims()
        };
        let id = check(&mint(&secret(), &c)).unwrap();
        assert_eq!((id.name.as_str(), id.role), ("Ana", Some(Role::Moderator)));
    }

    #[test]
    fn secrets_are_long_enough_and_never_printed() {
        assert!(AuthSecret::new(&"x".repeat(31)).is_err());
        assert!(AuthSecret::new(&format!("  {}\n", "x".repeat(31))).is_err());
        let s = AuthSecret::new(&format!("{SECRET}\n")).unwrap();
        assert_eq!(format!("{s:?}"), "AuthSecret(..)");
        // The trimmed text is the key: a file's newline does not change signatures.
        assert!(verify(
            &mint(&s, &claims()),
            &secret(),
            "lobby",
            NOW_MS,
            &Config::default()
        )
        .is_ok());
    }

    #[test]
    fn signatures_must_match() {
        let token = mint(&secret(), &claims());
        let other = AuthSecret::new(&"z".repeat(32)).unwrap();
        assert_eq!(
            verify(&token, &other, "lobby", NOW_MS, &Config::default()),
            Err(ErrorKind::TokenSignature)
        );
        // Any change to the signed part, or to the signature, is caught.
        let (signed, sig) = token.rsplit_once('.').unwrap();
        let forged = mint(
            &secret(),
            &Claims {
                role: Some(Role::Moderator),
                ..claims()
            },
        );
        let forged_payload = forged.split('.').nth(1).unwrap();
        let header = signed.split('.').next().unwrap();
        assert_eq!(
            check(&format!("{header}.{forged_payload}.{sig}")),
            Err(ErrorKind::TokenSignature)
        );
        let mut bad_sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        bad_sig[0] ^= 1;
        assert_eq!(
            check(&format!("{signed}.{}", URL_SAFE_NO_PAD.encode(&bad_sig))),
            Err(ErrorKind::TokenSignature)
        );
        assert_eq!(check(&format!("{signed}.")), Err(ErrorKind::TokenSignature));
        assert_eq!(
            check(&format!("{signed}.{}", &sig[..40])),
            Err(ErrorKind::TokenSignature)
        );
    }

    #[test]
    fn only_hs256_is_accepted() {
        let payload = serde_json::to_string(&claims()).unwrap();
        for alg in [
            r#"{"alg":"none"}"#,
            r#"{"alg":"None","typ":"JWT"}"#,
            r#"{"alg":"HS512"}"#,
            r#"{"alg":"RS256"}"#,
            r#"{"alg":"hs256"}"#,
            r#"{"typ":"JWT"}"#,
        ] {
            assert_eq!(
                check(&signed(alg, &payload)),
                Err(ErrorKind::TokenAlgorithm),
                "{alg}"
            );
        }
        // `alg: none` with an empty signature, the classic forgery.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(&payload)
        );
        assert_eq!(check(&none), Err(ErrorKind::TokenAlgorithm));
        assert_eq!(
            check(&signed(r#"{"alg":"HS256","crit":["x"]}"#, &payload)),
            Err(ErrorKind::TokenMalformed)
        );
    }

    #[test]
    fn malformed_tokens_are_refused_not_crashed_on() {
        let good = mint(&secret(), &claims());
        for bad in [
            "",
            ".",
            "..",
            "a.b",
            "a.b.c.d",
            "not a token",
            "!!!.!!!.!!!",
            &format!("{good}.x"),
            &format!("{}.e30.", URL_SAFE_NO_PAD.encode("[1]")),
            &format!("{}.e30.", URL_SAFE_NO_PAD.encode("{")),
            // Padded base64 is not base64url as JWTs write it.
            &format!("{}=.e30.", URL_SAFE_NO_PAD.encode("{\"alg\":\"HS256\"}")),
        ] {
            assert_eq!(check(bad), Err(ErrorKind::TokenMalformed), "{bad:?}");
        }
        // A validly signed payload that is not a JSON object.
        assert_eq!(
            check(&signed(r#"{"alg":"HS256"}"#, "[1]")),
            Err(ErrorKind::TokenMalformed)
        );
        assert_eq!(
            check(&signed(r#"{"alg":"HS256"}"#, "{\"sub\"")),
            Err(ErrorKind::TokenMalformed)
        );
    }

    #[test]
    fn length_is_checked_before_anything_else() {
        let c = Config::default();
        let long = "a".repeat(c.max_token_bytes + 1);
        assert_eq!(
            verify(&long, &secret(), "lobby", NOW_MS, &c),
            Err(ErrorKind::TokenTooLong)
        );
        // At the limit it is decoded (and here refused for its shape).
        let at = "a".repeat(c.max_token_bytes);
        assert_eq!(
            verify(&at, &secret(), "lobby", NOW_MS, &c),
            Err(ErrorKind::TokenMalformed)
        );
    }

    #[test]
    fn exp_is_required_with_a_minute_of_leeway() {
        let at = |exp: u64| check(&mint(&secret(), &Claims { exp, ..claims() }));
        assert!(at(NOW).is_ok());
        assert!(at(NOW - 60).is_ok());
        assert_eq!(at(NOW - 61), Err(ErrorKind::TokenExpired));
        assert_eq!(at(0), Err(ErrorKind::TokenExpired));
        let head = r#"{"alg":"HS256"}"#;
        assert_eq!(
            check(&signed(head, r#"{"sub":"u"}"#)),
            Err(ErrorKind::TokenClaims)
        );
        for exp in ["\"soon\"", "-1", "true", "[1]"] {
            assert_eq!(
                check(&signed(head, &format!(r#"{{"sub":"u","exp":{exp}}}"#))),
                Err(ErrorKind::TokenClaims),
                "{exp}"
            );
        }
        // Fractional seconds are allowed by the JWT spec.
        let frac = format!(r#"{{"sub":"u","exp":{}.5}}"#, NOW + 10);
        assert!(check(&signed(head, &frac)).is_ok());
    }

    #[test]
    fn nbf_is_honoured_with_a_minute_of_leeway() {
        let at = |nbf: u64| {
            check(&mint(
                &secret(),
                &Claims {
                    nbf: Some(nbf),
                    ..claims()
                },
            ))
        };
        assert!(at(NOW + 60).is_ok());
        assert_eq!(at(NOW + 61), Err(ErrorKind::TokenNotYetValid));
    }

    #[test]
    fn the_room_claim_names_this_room() {
        let with_room = |room: &str| {
            mint(
                &secret(),
                &Claims {
                    room: Some(room.into()),
                    ..claims()
                },
            )
        };
        assert!(check(&with_room("lobby")).is_ok());
        assert_eq!(check(&with_room("Lobby")), Err(ErrorKind::TokenWrongRoom));
        assert_eq!(check(&with_room("other")), Err(ErrorKind::TokenWrongRoom));
        let private = "ab".repeat(32);
        let c = Config::default();
        assert!(verify(&with_room(&private), &secret(), &private, NOW_MS, &c).is_ok());
        let head = r#"{"alg":"HS256"}"#;
        let numeric = format!(r#"{{"sub":"u","exp":{},"room":7}}"#, NOW + 10);
        assert_eq!(check(&signed(head, &numeric)), Err(ErrorKind::TokenClaims));
    }

    #[test]
    fn iss_and_aud_are_checked_only_when_the_server_names_them() {
        let head = r#"{"alg":"HS256"}"#;
        let exp = NOW + 10;
        let with = |extra: &str| signed(head, &format!(r#"{{"sub":"u","exp":{exp}{extra}}}"#));
        let at = |config: &Config, token: &str| verify(token, &secret(), "lobby", NOW_MS, config);
        // Not set: any iss and aud, or none, are ignored.
        let open = Config::default();
        for extra in ["", r#","iss":"x","aud":"y""#, r#","iss":7,"aud":[1]"#] {
            assert!(at(&open, &with(extra)).is_ok(), "{extra}");
        }
        let strict = Config {
            auth_issuer: "https://app.example".into(),
            auth_audience: "chat".into(),
            ..Config::default()
        };
        let good = r#","iss":"https://app.example","aud":"chat""#;
        assert!(at(&strict, &with(good)).is_ok());
        // `aud` may be an array naming the audience among others.
        let listed = r#","iss":"https://app.example","aud":["other","chat"]"#;
        assert!(at(&strict, &with(listed)).is_ok());
        for (extra, want) in [
            (r#","aud":"chat""#, ErrorKind::TokenIssuer),
            (
                r#","iss":"https://evil.example","aud":"chat""#,
                ErrorKind::TokenIssuer,
            ),
            (
                r#","iss":["https://app.example"],"aud":"chat""#,
                ErrorKind::TokenIssuer,
            ),
            (r#","iss":"https://app.example""#, ErrorKind::TokenAudience),
            (
                r#","iss":"https://app.example","aud":"Chat""#,
                ErrorKind::TokenAudience,
            ),
            (
                r#","iss":"https://app.example","aud":["other"]"#,
                ErrorKind::TokenAudience,
            ),
            (
                r#","iss":"https://app.example","aud":null"#,
                ErrorKind::TokenAudience,
            ),
        ] {
            assert_eq!(at(&strict, &with(extra)), Err(want), "{extra}");
        }
        // Checked after expiry, before the room.
        let expired = signed(head, r#"{"sub":"u","exp":1,"iss":"nope"}"#);
        assert_eq!(at(&strict, &expired), Err(ErrorKind::TokenExpired));
        let elsewhere = with(r#","iss":"nope","room":"other""#);
        assert_eq!(at(&strict, &elsewhere), Err(ErrorKind::TokenIssuer));
    }

    #[test]
    fn a_moderator_token_names_its_room_or_every_room() {
        let moderator = |room: Option<&str>| {
            mint(
                &secret(),
                &Claims {
                    role: Some(Role::Moderator),
                    room: room.map(str::to_owned),
                    ..claims()
                },
            )
        };
        assert_eq!(
            check(&moderator(None)),
            Err(ErrorKind::ModeratorTokenNeedsRoom)
        );
        assert_eq!(
            check(&moderator(Some("lobby"))).unwrap().role,
            Some(Role::Moderator)
        );
        assert_eq!(
            check(&moderator(Some(ALL_ROOMS))).unwrap().role,
            Some(Role::Moderator)
        );
        assert_eq!(
            check(&moderator(Some("other"))),
            Err(ErrorKind::TokenWrongRoom)
        );
        // `"room": null` is no room.
        let head = r#"{"alg":"HS256"}"#;
        let null_room = format!(
            r#"{{"sub":"u","exp":{},"role":"moderator","room":null}}"#,
            NOW + 10
        );
        assert_eq!(
            check(&signed(head, &null_room)),
            Err(ErrorKind::ModeratorTokenNeedsRoom)
        );
        // `*` is valid in every room for a plain user's token too, and is no room name.
        let everywhere = Claims {
            room: Some(ALL_ROOMS.into()),
            ..claims()
        };
        assert!(check(&mint(&secret(), &everywhere)).is_ok());
        assert!(crate::edge::validate_room(ALL_ROOMS).is_err());
    }

    #[test]
    fn sub_role_and_name_are_checked() {
        let with = |f: &dyn Fn(&mut Claims)| {
            let mut c = claims();
            f(&mut c);
            check(&mint(&secret(), &c))
        };
        assert!(with(&|c| {
            c.sub = "x".repeat(64);
            c.name = Some("Ana".into());
        })
        .is_ok());
        for sub in ["", "a\nb", "a\u{202E}b"] {
            assert_eq!(
                with(&|c| c.sub = sub.into()),
                Err(ErrorKind::TokenClaims),
                "{sub:?}"
            );
        }
        assert_eq!(
            with(&|c| c.sub = "x".repeat(65)),
            Err(ErrorKind::TokenClaims)
        );
        // A 64-character sub cannot be the display name under the default 32: a token
        // for such a user needs a `name`.
        assert_eq!(
            with(&|c| c.sub = "x".repeat(40)),
            Err(ErrorKind::NameTooLong)
        );
        assert!(with(&|c| {
            c.sub = "x".repeat(40);
            c.name = Some("Ana".into());
        })
        .is_ok());
        assert_eq!(
            with(&|c| c.name = Some("n".repeat(33))),
            Err(ErrorKind::NameTooLong)
        );
        assert_eq!(
            with(&|c| c.name = Some("a\u{7}".into())),
            Err(ErrorKind::NameControl)
        );
        // A blank name falls back to the user id.
        assert_eq!(with(&|c| c.name = Some("  ".into())).unwrap().name, "u42");
        let head = r#"{"alg":"HS256"}"#;
        let exp = NOW + 10;
        for (claims, want) in [
            (
                format!(r#"{{"sub":7,"exp":{exp}}}"#),
                ErrorKind::TokenClaims,
            ),
            (
                format!(r#"{{"sub":"u","exp":{exp},"role":"admin"}}"#),
                ErrorKind::TokenClaims,
            ),
            (
                format!(r#"{{"sub":"u","exp":{exp},"role":"Moderator"}}"#),
                ErrorKind::TokenClaims,
            ),
            (
                format!(r#"{{"sub":"u","exp":{exp},"name":5}}"#),
                ErrorKind::NameNotString,
            ),
        ] {
            assert_eq!(check(&signed(head, &claims)), Err(want), "{claims}");
        }
        let plain = format!(r#"{{"sub":"u","exp":{exp},"role":null,"name":null,"x":[1]}}"#);
        assert_eq!(check(&signed(head, &plain)).unwrap().role, None);
    }

    #[test]
    fn setup_needs_a_secret_when_tokens_are_required() {
        let mut c = Config::default();
        assert!(check_setup(&c, None).is_ok());
        c.auth_required = true;
        assert!(check_setup(&c, None).is_err());
        assert!(check_setup(&c, Some(&secret())).is_ok());
    }

    #[test]
    fn user_ids() {
        assert!(is_user_id("u"));
        assert!(is_user_id(&"é".repeat(64)));
        assert!(!is_user_id(&"é".repeat(65)));
        assert!(!is_user_id(""));
        assert!(!is_user_id("a\u{0}"));
    }
}
