//! The chat's limits from wrangler vars.
//!
//! Every setting of [`chat_handler::Config`] can be overridden by the var its descriptor
//! names ([`chat_handler::Config::worker_var`]: the key in upper case,
//! `room_capacity` → `ROOM_CAPACITY`), set in `[vars]` or with
//! `wrangler dev --var ROOM_CAPACITY:4`. Unset vars keep the handler's defaults, so no
//! key name or number is restated here.

use chat_handler::identity::{self, AuthSecret};
use chat_handler::Config;
use wasm_bindgen::{JsCast, JsValue};
use worker::Env;

/// The wrangler secret that signs join tokens (`npx wrangler secret put AUTH_SECRET`,
/// or `.dev.vars` for `wrangler dev`). Deliberately not a `Config` key: it is never a
/// `[vars]` entry, and never listed with the settings.
pub const AUTH_SECRET: &str = "AUTH_SECRET";

/// The join-token secret, if one is set. Invalid (too short) is an error, like any bad
/// setting; the message never contains the secret.
pub fn auth_secret(env: &Env) -> Result<Option<AuthSecret>, String> {
    let Some(text) = var_text(env, AUTH_SECRET)? else {
        return Ok(None);
    };
    AuthSecret::new(&text)
        .map(Some)
        .map_err(|e| format!("Invalid configuration: {AUTH_SECRET}: {e}"))
}

/// The configuration and the secret, checked together (`AUTH_REQUIRED` needs the
/// secret).
pub fn load_with_secret(env: &Env) -> Result<(Config, Option<AuthSecret>), String> {
    let config = load(env)?;
    let secret = auth_secret(env)?;
    identity::check_setup(&config, secret.as_ref())
        .map_err(|e| format!("Invalid configuration: {e}"))?;
    Ok((config, secret))
}

/// Reads the configuration from the environment and validates it. The error is a
/// sentence naming the offending var, meant for the operator (served as a 500).
pub fn load(env: &Env) -> Result<Config, String> {
    let mut config = Config::default();
    // `KEYS`, not `DESCRIPTORS`: the descriptors carry every key's documentation,
    // which the Worker never shows (about 6 KB of the wasm).
    for &key in Config::KEYS {
        let var = Config::worker_var(key);
        let Some(value) = var_text(env, &var)? else {
            continue;
        };
        config
            .set(key, &value)
            .map_err(|e| format!("Invalid configuration: {var}: {e}"))?;
    }
    config
        .validate()
        .map_err(|e| format!("Invalid configuration: {e}"))?;
    Ok(config)
}

/// A var as text. `--var` and `wrangler secret` give strings; `[vars]` in wrangler.toml
/// may also give TOML numbers or an array of strings (handy for `ALLOW_ORIGINS`), which
/// are turned into the text form [`Config::set`] parses.
fn var_text(env: &Env, name: &str) -> Result<Option<String>, String> {
    let value = js_sys::Reflect::get(env.as_ref(), &JsValue::from_str(name))
        .map_err(|_| format!("Invalid configuration: could not read {name}"))?;
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    if let Some(s) = value.as_string() {
        return Ok(Some(s));
    }
    if let Some(n) = value.as_f64() {
        // f64's Display prints integral values without a fraction ("4", not "4.0").
        return Ok(Some(n.to_string()));
    }
    if let Some(items) = value.dyn_ref::<js_sys::Array>() {
        let mut parts = Vec::new();
        for item in items.iter() {
            match item.as_string() {
                Some(s) => parts.push(s),
                None => {
                    return Err(format!(
                        "Invalid configuration: {name}: expected a list of strings"
                    ))
                }
            }
        }
        return Ok(Some(parts.join(",")));
    }
    Err(format!(
        "Invalid configuration: {name}: expected a string or a number"
    ))
}
