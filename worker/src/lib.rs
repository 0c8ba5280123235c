//! edge-chat on Cloudflare: the Worker routes HTTP requests and hands each room's
//! WebSockets to that room's Durable Object ([`room_object::ChatRoom`]). All chat rules
//! live in `chat-handler`; this crate is I/O glue only.
//!
//! Routes (static files from `static/` are served by Workers Assets before the Worker
//! runs, see wrangler.toml):
//! - `GET /api/room/{room}/websocket` → the room's Durable Object
//! - `POST /api/room/{room}/messages` → a server-side publish: the service token is
//!   checked here, then the room's Durable Object stores and answers it
//! - `POST /api/room` → a new private room id
//! - `GET /api/limits` → the limits a client checks before sending (JSON)
//! - `GET /healthz` → `ok`
//! - anything else → 404 `Not found.`

mod config;
mod event_log;
mod random;
mod room_object;
mod sql_storage;
mod storage_ops;

pub use room_object::ChatRoom;

use chat_handler::edge::{self, RoomId, Route, UpgradeRequest};
use chat_handler::{publish, AuthSecret, Config, PublishAnswer};
use worker::{event, Context, Env, ObjectNamespace, Request, Response, Result, Stub};

/// The Durable Object namespace binding (wrangler.toml `[durable_objects]`).
const ROOMS_BINDING: &str = "ROOMS";

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    // The secret is checked here too, so a missing or short one is a 500 with the
    // reason on every request, as any bad setting is.
    let (config, secret) = match config::load_with_secret(&env) {
        Ok(loaded) => loaded,
        Err(e) => {
            worker::console_error!("edge-chat: {e}");
            return text(500, &e);
        }
    };
    let route = edge::route(req.method().as_ref(), &req.path());
    match route {
        Err(rejection) => reject(&rejection),
        Ok(Route::Websocket(room)) => websocket(req, &env, &room, &config).await,
        Ok(Route::Publish(room)) => publish(req, &env, &room, &config, secret.as_ref()).await,
        Ok(Route::CreateRoom) => create_room(&env),
        Ok(Route::Health) => text(200, "ok"),
        Ok(Route::Limits) => json(200, &config.client_limits_json()),
        // Workers Assets answers requests for files before the Worker runs; whatever
        // reaches the Worker is no file.
        Ok(Route::File | Route::FileWrongMethod) => reject(&edge::NOT_FOUND),
    }
}

/// Checks the upgrade's headers exactly as the local runner does (403, 426, in that
/// order, same texts), then forwards the request to the room's object.
async fn websocket(req: Request, env: &Env, room: &RoomId, config: &Config) -> Result<Response> {
    // The runtime hands over an already-normalized WHATWG URL, so splitting its text is
    // exact; not calling `Request::url()` keeps the `url` crate's parser and its IDNA
    // tables out of the wasm (about 150 KB).
    let raw_url = req.inner().url();
    let (scheme, authority) = scheme_and_authority(&raw_url);
    let headers = req.headers();
    let header = |name: &str| headers.get(name).ok().flatten();
    let (origin, host, upgrade) = (header("Origin"), header("Host"), header("Upgrade"));
    let request = UpgradeRequest {
        origin: origin.as_deref(),
        // Workers always see a Host header; the URL's authority is the same value.
        host: host.as_deref().or(authority),
        scheme,
        upgrade: upgrade.as_deref(),
    };
    if let Err(rejection) = edge::check_upgrade(&request, &config.allow_origins) {
        return reject(&rejection);
    }
    room_stub(env, room)?.fetch_with_request(req).await
}

/// A publish: the checks that need no room (`publish::check_request`: the secret, the
/// declared length, the service token) run here, as on the local runner, so a request
/// without a valid token never wakes the room's object; the object answers the rest.
async fn publish(
    req: Request,
    env: &Env,
    room: &RoomId,
    config: &Config,
    secret: Option<&AuthSecret>,
) -> Result<Response> {
    let headers = req.headers();
    let authorization = headers.get("Authorization").ok().flatten();
    let declared = headers
        .get("Content-Length")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse().ok());
    let now = worker::Date::now().as_millis();
    let checked = publish::check_request(
        authorization.as_deref(),
        declared,
        secret,
        room.as_str(),
        now,
        config,
    );
    if let Err(answer) = checked {
        return publish_response(&answer);
    }
    room_stub(env, room)?.fetch_with_request(req).await
}

/// A publish answer as HTTP: its status, its JSON, and `Retry-After` when it has one.
pub(crate) fn publish_response(answer: &PublishAnswer) -> Result<Response> {
    let mut resp = json(answer.status, &answer.body)?;
    if let Some(secs) = answer.retry_after_secs {
        resp.headers_mut().set("Retry-After", &secs.to_string())?;
    }
    Ok(resp)
}

/// The room's Durable Object: by name for public rooms, by id for private ones.
fn room_stub(env: &Env, room: &RoomId) -> Result<Stub> {
    let rooms: ObjectNamespace = env.durable_object(ROOMS_BINDING)?;
    let id = match room {
        RoomId::Named(name) => rooms.id_from_name(name)?,
        // A 64-hex string that this namespace did not mint (the runtime checks ids) is
        // still a valid room name by the protocol, as on the local runner: it names a
        // room like any other name, so it gets one rather than an error.
        RoomId::Private(hex) => match rooms.id_from_string(hex) {
            Ok(id) => id,
            Err(_) => rooms.id_from_name(hex)?,
        },
    };
    id.get_stub()
}

/// A new private room: the id of a fresh unique Durable Object, which is 64 lower-case
/// hex digits. Should the runtime ever format ids differently, 32 random bytes make an
/// equally unguessable id, which `room_stub` then maps by name.
fn create_room(env: &Env) -> Result<Response> {
    let minted = env
        .durable_object(ROOMS_BINDING)
        .and_then(|ns| ns.unique_id().map(|id| id.to_string()));
    let id = match minted {
        Ok(id) if edge::is_private_room_id(&id) => id,
        _ => edge::private_room_id(random::bytes::<32>()),
    };
    text(200, &id)
}

/// `("https", Some("host:port"))` from `https://host:port/path?query`.
fn scheme_and_authority(url: &str) -> (&str, Option<&str>) {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            (scheme, Some(&rest[..end]).filter(|a| !a.is_empty()))
        }
        None => ("http", None),
    }
}

/// A refusal: its status, its reason as the body, and the header HTTP requires with
/// that status (`Allow` with 405, `Upgrade` with 426). workerd writes the connection-level
/// headers (`Upgrade`, `Connection`, ...) of a response itself and drops the Worker's, so
/// a 426 reaches the client without `Upgrade` (seen under `wrangler dev`); it is set
/// anyway, for any runtime that keeps it.
fn reject(rejection: &edge::Rejection) -> Result<Response> {
    let mut resp = text(rejection.status, rejection.reason)?;
    if let Some((name, value)) = rejection.header {
        resp.headers_mut().set(name, value)?;
    }
    Ok(resp)
}

fn text(status: u16, body: &str) -> Result<Response> {
    with_type(status, body, "text/plain; charset=utf-8")
}

fn json(status: u16, body: &str) -> Result<Response> {
    with_type(status, body, "application/json")
}

fn with_type(status: u16, body: &str, content_type: &str) -> Result<Response> {
    let mut resp = Response::ok(body)?.with_status(status);
    resp.headers_mut().set("Content-Type", content_type)?;
    Ok(resp)
}
