//! The suite's own join tokens: JWTs built here from their parts (header and claims as
//! JSON text) and signed with HMAC-SHA256, so a scenario can make a valid token as an
//! app's backend would, and every kind of bad one (`alg: none`, a forged signature,
//! expired, for another room). Nothing here comes from the handler: the suite checks
//! the backends against the JWT format itself.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::time::{SystemTime, UNIX_EPOCH};

/// The header every stock library writes for HS256.
pub const HS256: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// Seconds since the Unix epoch, by this machine's clock (the backends run here).
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `base64url(header).base64url(claims).base64url(HMAC-SHA256(secret, the two))`.
pub fn sign(secret: &str, header: &str, claims: &Value) -> String {
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(signed.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signed}.{signature}")
}

/// The same claims with `alg: none` and no signature: the classic forgery.
pub fn unsigned(claims: &Value) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// Claims for user `sub`, valid for an hour.
pub fn claims(sub: &str) -> Value {
    json!({ "sub": sub, "exp": now_secs() + 3600 })
}

/// A valid token for `sub` with `extra` claims merged in (`name`, `role`, `room`, …).
pub fn token(secret: &str, sub: &str, extra: Value) -> String {
    let mut c = claims(sub);
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            c.insert(k.clone(), v.clone());
        }
    }
    sign(secret, HS256, &c)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three base64url parts, the signature an HMAC-SHA256 over the first two: the
    /// layout any JWT library produces.
    #[test]
    fn signatures_are_hmac_sha256_over_the_first_two_parts() {
        let t = sign("k", HS256, &json!({"sub": "u"}));
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[0]).unwrap(), HS256.as_bytes());
        let mut mac = Hmac::<Sha256>::new_from_slice(b"k").unwrap();
        mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        mac.verify_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap())
            .unwrap();
        assert!(unsigned(&json!({})).ends_with('.'));
    }
}
