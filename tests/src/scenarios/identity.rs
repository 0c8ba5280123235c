//! Signed identity: join tokens (HS256 JWTs) in the hello make verified sessions, and
//! bad or missing ones are refused with an error and close 1008 "Invalid token".
//! Identity group: the test secret, tokens optional; Signed group: tokens required.

use super::SILENCE;
use crate::client::{Client, Frame, Join, Member};
use crate::harness::{identity::SECRET, Ctx, InstanceSpec};
use crate::token::{self, now_secs, sign, unsigned, HS256};
use crate::{ensure, ensure_eq, Result};
use serde_json::{json, Value};

/// Connects and sends `hello`, reading the join sequence; `own` is the name the server
/// should announce.
pub async fn enter(base: &str, room: &str, own: &str, hello: Value) -> Result<(Client, Join)> {
    let mut c = Client::connect(base, room, own).await?;
    let j = c.hello_with(&hello, own).await?;
    Ok((c, j))
}

/// Sends `hello` and expects exactly `{"error": error}`, then close 1008 "Invalid token".
pub async fn refused(base: &str, room: &str, hello: Value, error: &str, what: &str) -> Result<()> {
    let mut c = Client::connect(base, room, what).await?;
    c.send_hello(&hello).await?;
    c.expect_error(error).await?;
    // Typed when the hello asked for v2, exactly the v1 error otherwise.
    ensure_eq!(
        c.last_tags().code.is_some(),
        crate::client::asks_v2(&hello),
        "{what}: the error's code"
    );
    c.expect_close(1008, Some("Invalid token")).await
}

fn member(name: &str, user: Option<&str>, role: Option<&str>) -> Member {
    Member {
        name: name.to_owned(),
        user: user.map(str::to_owned),
        role: role.map(str::to_owned),
    }
}

/// A valid token makes a verified session: its name wins over the hello's, its own
/// `ready` carries `user` and `role`, v2 roster entries carry them, and its chat frames
/// carry `user`. Anonymous sessions in the same room carry none, and cannot claim one;
/// a v1 client there keeps working and sees `user` on chat frames.
pub async fn a_valid_token_makes_a_verified_session(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("verified");
    // `iss` and `aud` are not checked where the server names neither (the default).
    let ana_token = token::token(
        SECRET,
        "u-ana",
        json!({"name": "Ana", "iss": "whoever", "aud": ["whatever"]}),
    );
    let (mut ana, ja) = enter(
        &base,
        &room,
        "Ana",
        json!({"name": "mallory", "v": 2, "token": ana_token}),
    )
    .await?;
    ensure_eq!(ja.ready.user.as_deref(), Some("u-ana"), "ana's ready.user");
    ensure_eq!(ja.ready.role, None, "ana has no role");
    ensure_eq!(ja.ready.v, Some(2), "ana's ready.v");
    ensure_eq!(ja.members, vec![], "an empty room's roster");

    // A token with `room` set to this room, and without a name: the user id is the name.
    let mod_token = token::token(SECRET, "u-mod", json!({"role": "moderator", "room": room}));
    let (mut moderator, jm) =
        enter(&base, &room, "u-mod", json!({"v": 2, "token": mod_token})).await?;
    ensure_eq!(
        (jm.ready.user.as_deref(), jm.ready.role.as_deref()),
        (Some("u-mod"), Some("moderator")),
        "the moderator's ready"
    );
    ensure_eq!(
        jm.members,
        vec![member("Ana", Some("u-ana"), None)],
        "roster entries carry user"
    );
    ana.expect_frame(Frame::Joined("u-mod".into())).await?;

    let (mut bob, jb) = enter(&base, &room, "bob", json!({"name": "bob", "v": 2})).await?;
    ensure_eq!(jb.ready.user, None, "an anonymous ready has no user");
    let mut roster = jb.members.clone();
    roster.sort();
    ensure_eq!(
        roster,
        vec![
            member("Ana", Some("u-ana"), None),
            member("u-mod", Some("u-mod"), Some("moderator")),
        ],
        "bob's roster"
    );
    // A v1 client: `joined` frames, no v2 frame kind, but `user` on chat frames.
    let (mut carl, jc) = enter(&base, &room, "carl", json!({"name": "carl"})).await?;
    ensure_eq!(jc.roster.len(), 3, "carl's roster: {:?}", jc.roster);
    ensure_eq!(
        (jc.ready.v, jc.ready.user.clone()),
        (None, None),
        "carl's ready"
    );
    for c in [&mut ana, &mut moderator] {
        c.expect_frame(Frame::Joined("bob".into())).await?;
        c.expect_frame(Frame::Joined("carl".into())).await?;
    }
    bob.expect_frame(Frame::Joined("carl".into())).await?;

    ana.say("signed").await?;
    let m = ana.recv_message().await?;
    ensure_eq!(
        m.user.as_deref(),
        Some("u-ana"),
        "a verified chat frame's user"
    );
    for c in [&mut moderator, &mut bob, &mut carl] {
        ensure_eq!(c.recv_message().await?, m, "{} gets ana's message", c.label);
    }
    // An anonymous sender cannot pass itself off as a user.
    bob.send_json(&json!({"message": "me too", "user": "u-ana"}))
        .await?;
    let m = bob.recv_message().await?;
    ensure_eq!(m.user, None, "an anonymous chat frame has no user");
    ensure_eq!(carl.recv_message().await?, m, "carl gets bob's message");

    // The backlog keeps who said what.
    let (d, jd) = enter(&base, &room, "dora", json!({"name": "dora"})).await?;
    let users: Vec<Option<&str>> = jd.backlog.iter().map(|m| m.user.as_deref()).collect();
    ensure_eq!(users, vec![Some("u-ana"), None], "backlog users");
    for c in [d, carl, bob, moderator, ana] {
        c.close().await?;
    }
    Ok(())
}

/// Present but invalid tokens are refused, each with its own sentence and close 1008
/// "Invalid token", never joined anonymously instead: expired (past the 60 s leeway),
/// signed with another secret, `alg: none`, another algorithm, for another room,
/// malformed, too long.
pub async fn bad_tokens_are_refused_with_1008(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("bad-tokens");
    let (mut observer, _) = enter(
        &base,
        &room,
        "observer",
        json!({"name": "observer", "v": 2}),
    )
    .await?;
    let mut expired = token::claims("u1");
    expired["exp"] = json!(now_secs() - 120);
    let mut early = token::claims("u1");
    early["nbf"] = json!(now_secs() + 600);
    let other_key = "another-secret-0123456789abcdefghijklmnop";
    let cases = [
        ("expired", sign(SECRET, HS256, &expired), "Token has expired."),
        ("not yet valid", sign(SECRET, HS256, &early), "Token is not valid yet."),
        (
            "another secret",
            token::token(other_key, "u1", json!({})),
            "Token signature is invalid.",
        ),
        (
            "alg none",
            unsigned(&token::claims("u1")),
            "Token must be signed with HS256.",
        ),
        (
            "HS512 header",
            sign(SECRET, r#"{"alg":"HS512","typ":"JWT"}"#, &token::claims("u1")),
            "Token must be signed with HS256.",
        ),
        (
            "another room",
            token::token(SECRET, "u1", json!({"room": "elsewhere"})),
            "Token is for another room.",
        ),
        (
            "no exp",
            sign(SECRET, HS256, &json!({"sub": "u1"})),
            "Token claims are invalid: sub (1 to 64 characters) and exp are required, and role may only be \"moderator\" or \"service\".",
        ),
        (
            "malformed",
            "not-a-jwt".to_owned(),
            "Token is malformed: expected a JWT (three base64url parts, header.payload.signature).",
        ),
        ("too long", "a".repeat(4097), "Token is too long."),
    ];
    for (what, t, error) in cases {
        refused(
            &base,
            &room,
            json!({"name": what, "v": 2, "token": t}),
            error,
            what,
        )
        .await?;
    }
    // Not a string: malformed too, not "no token".
    refused(
        &base,
        &room,
        json!({"name": "object", "token": {"sub": "u1"}}),
        "Token is malformed: expected a JWT (three base64url parts, header.payload.signature).",
        "object token",
    )
    .await?;
    // Nobody joined, so the observer heard nothing.
    observer.expect_silence(SILENCE).await?;
    observer.close().await
}

/// A token's `room` claim is the room name, or the private room id: valid there, and
/// refused in any other room.
pub async fn a_token_for_a_room_is_valid_there_only(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("bound");
    let here = token::token(SECRET, "u1", json!({"room": room}));
    let (c, j) = enter(&base, &room, "u1", json!({"token": here})).await?;
    ensure_eq!(j.ready.user.as_deref(), Some("u1"), "joined its room");
    c.close().await?;
    let other = ctx.room("bound-other");
    refused(
        &base,
        &other,
        json!({"token": here}),
        "Token is for another room.",
        "elsewhere",
    )
    .await?;
    let private = super::create_private_room(&base).await?;
    let for_private = token::token(SECRET, "u2", json!({"room": private}));
    let (c, j) = enter(&base, &private, "u2", json!({"token": for_private})).await?;
    ensure_eq!(
        j.ready.user.as_deref(),
        Some("u2"),
        "joined the private room"
    );
    c.close().await?;
    refused(
        &base,
        &room,
        json!({"token": for_private}),
        "Token is for another room.",
        "private token elsewhere",
    )
    .await
}

/// Signed group (tokens required): a hello without a token is refused like a bad
/// token; with one, v1 and v2 clients join and chat.
pub async fn a_room_requiring_tokens_refuses_a_hello_without_one(ctx: Ctx) -> Result<()> {
    let base = ctx.base();
    let room = ctx.room("required");
    let required = "This room requires a token: send {\"token\": \"<jwt>\"} in the hello.";
    refused(&base, &room, json!({"name": "anon"}), required, "no token").await?;
    refused(
        &base,
        &room,
        json!({"name": "anon", "v": 2, "token": null}),
        required,
        "null token",
    )
    .await?;
    let (mut v1, j1) = enter(
        &base,
        &room,
        "u-one",
        json!({"name": "x", "token": token::token(SECRET, "u-one", json!({}))}),
    )
    .await?;
    ensure_eq!(j1.ready.user.as_deref(), Some("u-one"), "v1 with a token");
    let (mut v2, j2) = enter(
        &base,
        &room,
        "Two",
        json!({"v": 2, "token": token::token(SECRET, "u-two", json!({"name": "Two"}))}),
    )
    .await?;
    ensure_eq!(
        j2.members,
        vec![member("u-one", Some("u-one"), None)],
        "v2 roster"
    );
    v1.expect_frame(Frame::Joined("Two".into())).await?;
    v1.say("v1 still works").await?;
    let m = v1.recv_message().await?;
    ensure!(m.user.as_deref() == Some("u-one"), "v1's message: {m:?}");
    ensure_eq!(v2.recv_message().await?, m, "v2 gets v1's message");
    v2.close().await?;
    v1.expect_frame(Frame::Quit("Two".into())).await?;
    v1.close().await
}

/// Own instance with `auth_issuer` and `auth_audience` set, both backends: a token must
/// carry that `iss` and name that `aud` (a string, or an array holding it); without
/// them, or with others, it is refused with its own sentence and close 1008.
pub async fn issuer_and_audience_are_checked_when_set(ctx: Ctx) -> Result<()> {
    const ISSUER: &str = "https://app.example";
    const AUDIENCE: &str = "edge-chat";
    let spec = InstanceSpec::with(&[("auth_issuer", ISSUER), ("auth_audience", AUDIENCE)])
        .with_secret(SECRET);
    let instance = ctx.start_own("iss-aud", spec).await?;
    let base = instance.base_url();
    let room = ctx.room("iss-aud");
    let bad_issuer = "Token issuer is not accepted by this server.";
    let bad_audience = "Token is not for this server (audience).";
    for (claims, error, what) in [
        (json!({}), bad_issuer, "neither"),
        (json!({"aud": AUDIENCE}), bad_issuer, "no iss"),
        (
            json!({"iss": "https://other.example", "aud": AUDIENCE}),
            bad_issuer,
            "another iss",
        ),
        (json!({"iss": ISSUER}), bad_audience, "no aud"),
        (
            json!({"iss": ISSUER, "aud": "other"}),
            bad_audience,
            "another aud",
        ),
        (
            json!({"iss": ISSUER, "aud": ["other"]}),
            bad_audience,
            "aud without it",
        ),
    ] {
        let t = token::token(SECRET, "u1", claims);
        refused(&base, &room, json!({"token": t}), error, what).await?;
    }
    for (i, aud) in [json!(AUDIENCE), json!(["other", AUDIENCE])]
        .into_iter()
        .enumerate()
    {
        let user = format!("u{i}");
        let t = token::token(SECRET, &user, json!({"iss": ISSUER, "aud": aud}));
        let (c, j) = enter(&base, &room, &user, json!({"token": t})).await?;
        ensure_eq!(
            j.ready.user.as_deref(),
            Some(user.as_str()),
            "joined with aud {aud}"
        );
        c.close().await?;
    }
    Ok(())
}
