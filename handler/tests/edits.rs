//! v2 edits: who may edit, within which window, what members, joiners, history and
//! resumes see afterwards, and what a refused edit leaves behind (nothing).

mod common;

use chat_handler::identity::{mint, Claims};
use chat_handler::{Action, Auth, AuthSecret, Config, ConnId, MemoryStorage, Room, Storage};
use common::*;
use serde_json::{json, Value};

const SECRET: &str = "test-secret-0123456789abcdef-0123456789";
const T0: u64 = 1_764_000_000_000;
const NOT_YOURS: &str = "Only its author may edit a message: the same user, or for an anonymous message the connection that sent it.";
const TOO_LATE: &str =
    "This message can no longer be edited (edit_window_secs, see GET /api/limits).";
const NO_SUCH: &str = "There is no message with that seq to edit.";

fn v2(name: &str) -> String {
    json!({"name": name, "v": 2}).to_string()
}

fn edit(r: &mut Room<MemoryStorage>, conn: ConnId, seq: u64, text: &str, now: u64) -> Vec<Action> {
    r.on_text(
        conn,
        &json!({"edit": {"seq": seq, "message": text}}).to_string(),
        now,
    )
}

fn errors_for(actions: &[Action], conn: ConnId) -> Vec<String> {
    frames_for(actions, conn)
        .iter()
        .filter_map(|f| error_text(f).map(str::to_owned))
        .collect()
}

/// A room with ana (conn 1, v2) and bo (conn 2, v2) and cy (conn 3, v1), all anonymous,
/// and ana's message 1 stored at T0.
fn room_with_one_message(config: Config) -> Room<MemoryStorage> {
    let mut r = room(config);
    join(&mut r, 1, "10.0.0.1", &v2("ana"), T0);
    join(&mut r, 2, "10.0.0.2", &v2("bo"), T0);
    join(&mut r, 3, "10.0.0.3", r#"{"name":"cy"}"#, T0);
    say(&mut r, 1, "helo", T0);
    r
}

#[test]
fn the_author_edits_and_v2_members_see_it_v1_members_do_not() {
    let mut r = room_with_one_message(unlimited());
    let actions = edit(&mut r, 1, 1, "  hello  ", T0 + 5_000);
    let expected = json!({"edited": {"seq": 1, "message": "hello", "edited_at": T0 + 5_000}});
    for member in [1, 2] {
        assert_eq!(
            frames_for(&actions, member),
            std::slice::from_ref(&expected)
        );
    }
    assert!(frames_for(&actions, 3).is_empty(), "v1 never sees `edited`");
    assert!(
        actions.iter().any(|a| matches!(a, Action::Commit)),
        "durable before it is sent"
    );

    // History and a joiner's backlog carry the latest text and edited_at.
    let page = frames_for(&r.on_text(2, r#"{"history":{"limit":10}}"#, T0 + 6_000), 2);
    assert_eq!(page[0]["history"][0]["message"], "hello");
    assert_eq!(page[0]["history"][0]["edited_at"], T0 + 5_000);
    let joined = frames_for(&join(&mut r, 4, "10.0.0.4", &v2("di"), T0 + 7_000), 4);
    let backlog: Vec<&Value> = joined
        .iter()
        .filter(|f| f.get("seq").is_some() && f.get("message").is_some())
        .collect();
    assert_eq!(backlog.len(), 1);
    assert_eq!(backlog[0]["message"], "hello");
    assert_eq!(backlog[0]["edited_at"], T0 + 5_000);

    // Edited twice: the latest wins everywhere.
    edit(&mut r, 1, 1, "hello!", T0 + 8_000);
    let page = frames_for(&r.on_text(2, r#"{"history":{}}"#, T0 + 9_000), 2);
    assert_eq!(page[0]["history"][0]["message"], "hello!");
    assert_eq!(page[0]["history"][0]["edited_at"], T0 + 8_000);
}

#[test]
fn only_the_sending_connection_edits_an_anonymous_message() {
    let mut r = room_with_one_message(unlimited());
    // Same name, same address, another connection: not the author.
    join(&mut r, 5, "10.0.0.1", &v2("ana"), T0);
    for conn in [2, 5] {
        let actions = edit(&mut r, conn, 1, "mine now", T0 + 1_000);
        assert_eq!(errors_for(&actions, conn), [NOT_YOURS]);
        assert!(broadcasts(&actions).is_empty());
    }
    // After a rebuild (hibernation) the same connection still is the author.
    let mut r = rebuilt(&r);
    let actions = edit(&mut r, 1, 1, "still mine", T0 + 2_000);
    assert_eq!(broadcasts(&actions)[0]["edited"]["message"], "still mine");
}

#[test]
fn a_verified_users_message_is_edited_by_any_session_of_that_user_only() {
    let secret = AuthSecret::new(SECRET).unwrap();
    let mut r = room(unlimited()).with_auth(Some(Auth {
        secret: secret.clone(),
        room: "lobby".to_owned(),
    }));
    let token = |sub: &str| {
        mint(
            &secret,
            &Claims {
                sub: sub.to_owned(),
                exp: T0 / 1000 + 3600,
                ..Claims::default()
            },
        )
    };
    let hello = |sub: &str| json!({"v": 2, "token": token(sub)}).to_string();
    join(&mut r, 1, "10.0.0.1", &hello("u-ana"), T0);
    join(&mut r, 2, "10.0.0.2", &hello("u-ana"), T0);
    join(&mut r, 3, "10.0.0.3", &hello("u-bo"), T0);
    join(&mut r, 4, "10.0.0.4", &v2("u-ana-lookalike"), T0);
    say(&mut r, 1, "from ana", T0);
    for conn in [3, 4] {
        assert_eq!(
            errors_for(&edit(&mut r, conn, 1, "x", T0 + 1), conn),
            [NOT_YOURS]
        );
    }
    let actions = edit(&mut r, 2, 1, "ana's other tab", T0 + 2);
    assert_eq!(
        broadcasts(&actions)[0]["edited"]["message"],
        "ana's other tab"
    );
    // And a verified user cannot edit an anonymous message.
    say(&mut r, 4, "anonymous", T0 + 3);
    assert_eq!(errors_for(&edit(&mut r, 1, 2, "x", T0 + 4), 1), [NOT_YOURS]);
}

#[test]
fn the_window_closes_edits_and_zero_turns_them_off() {
    let mut r = room_with_one_message(unlimited());
    let window = Config::default().edit_window_secs * 1000;
    let actions = edit(&mut r, 1, 1, "in time", T0 + window);
    assert!(
        errors_for(&actions, 1).is_empty(),
        "at the window's end: taken"
    );
    let actions = edit(&mut r, 1, 1, "too late", T0 + window + 1);
    assert_eq!(errors_for(&actions, 1), [TOO_LATE]);
    assert!(broadcasts(&actions).is_empty());

    let mut r = room_with_one_message(Config {
        edit_window_secs: 0,
        ..unlimited()
    });
    assert_eq!(errors_for(&edit(&mut r, 1, 1, "x", T0), 1), [TOO_LATE]);
}

#[test]
fn bad_edits_are_refused_and_change_nothing() {
    let mut r = room_with_one_message(unlimited());
    let shape = r#"Expected an edit like {"edit": {"seq": 17, "message": "new text"}}."#;
    let cases: &[(&str, &str)] = &[
        (r#"{"edit": 1}"#, shape),
        (r#"{"edit": {"seq": 1}}"#, shape),
        (r#"{"edit": {"message": "x"}}"#, shape),
        (r#"{"edit": {"seq": -1, "message": "x"}}"#, shape),
        (r#"{"edit": {"seq": 1.5, "message": "x"}}"#, shape),
        (r#"{"edit": {"seq": 1, "message": 7}}"#, shape),
        (
            r#"{"edit": {"seq": 1, "message": "   "}}"#,
            "Message is empty.",
        ),
        (r#"{"edit": {"seq": 99, "message": "x"}}"#, NO_SUCH),
        (r#"{"edit": {"seq": 0, "message": "x"}}"#, NO_SUCH),
    ];
    for (frame, error) in cases {
        let actions = r.on_text(1, frame, T0 + 1);
        assert_eq!(errors_for(&actions, 1), [*error], "{frame}");
        assert!(broadcasts(&actions).is_empty(), "{frame}");
    }
    let long = "x".repeat(Config::default().max_message_chars + 1);
    assert_eq!(
        errors_for(&edit(&mut r, 1, 1, &long, T0 + 1), 1),
        ["Message is too long."]
    );
    // A v1 session is told it needs v2.
    say(&mut r, 3, "v1 says", T0 + 2);
    assert_eq!(
        errors_for(&edit(&mut r, 3, 2, "x", T0 + 3), 3),
        [r#"Editing needs protocol v2: send "v": 2 in the hello."#]
    );
    let page = frames_for(&r.on_text(2, r#"{"history":{}}"#, T0 + 4), 2);
    assert_eq!(page[0]["history"][0]["message"], "helo", "unchanged");
    assert!(page[0]["history"][0].get("edited_at").is_none());
}

#[test]
fn an_edit_costs_a_message_token() {
    let mut r = room_with_one_message(Config {
        rate_burst: 2,
        rate_per_sec: 0.001,
        ..Config::default()
    });
    // The message took one of two tokens; the edit takes the other; the next is refused.
    assert!(errors_for(&edit(&mut r, 1, 1, "a", T0 + 1), 1).is_empty());
    let actions = edit(&mut r, 1, 1, "b", T0 + 2);
    assert_eq!(errors_for(&actions, 1), ["Rate limited; slow down."]);
    assert!(broadcasts(&actions).is_empty());
}

#[test]
fn a_resume_replays_the_edits_it_missed_within_resume_max() {
    let config = Config {
        resume_max: 3,
        ..unlimited()
    };
    let mut r = room_with_one_message(config);
    say(&mut r, 1, "two", T0 + 1);
    // bo leaves having seen seq 2; then message 1 is edited and message 3 is sent.
    r.disconnect(2, T0 + 2);
    edit(&mut r, 1, 1, "one, edited", T0 + 3);
    say(&mut r, 1, "three", T0 + 4);
    edit(&mut r, 1, 3, "three, edited", T0 + 5);
    let epoch = r.epoch().to_owned();
    let hello = json!({"name": "bo", "v": 2, "resume": {"epoch": epoch, "seq": 2}}).to_string();
    let frames = frames_for(&join(&mut r, 6, "10.0.0.2", &hello, T0 + 6), 6);
    let replay: Vec<&Value> = frames
        .iter()
        .filter(|f| {
            f.get("edited").is_some() || f.get("seq").is_some() && f.get("message").is_some()
        })
        .collect();
    assert_eq!(
        replay,
        [
            &json!({"edited": {"seq": 1, "message": "one, edited", "edited_at": T0 + 3}}),
            &json!({"name": "ana", "message": "three, edited", "timestamp": frames_ts(&frames, 3), "seq": 3, "edited_at": T0 + 5}),
        ]
    );
    assert_eq!(frames.last().unwrap()["recovered"], true);

    // Too much to tell (an edit + a gap of 3 > resume_max 3): the backlog instead.
    say(&mut r, 1, "four", T0 + 7);
    say(&mut r, 1, "five", T0 + 8);
    let hello = json!({"name": "bo", "v": 2, "resume": {"epoch": r.epoch(), "seq": 2}}).to_string();
    let frames = frames_for(&join(&mut r, 7, "10.0.0.2", &hello, T0 + 9), 7);
    assert_eq!(frames.last().unwrap()["recovered"], false);
}

/// The timestamp of message `seq` among `frames`.
fn frames_ts(frames: &[Value], seq: u64) -> u64 {
    frames
        .iter()
        .find(|f| f["seq"] == seq && f.get("message").is_some())
        .and_then(|f| f["timestamp"].as_u64())
        .expect("the message is in the frames")
}

#[test]
fn a_deleted_message_cannot_be_edited_and_its_edit_is_not_replayed() {
    let mut r = room_with_one_message(unlimited());
    edit(&mut r, 1, 1, "edited", T0 + 1);
    r.storage_mut().delete_message(1, 1).unwrap();
    assert_eq!(
        errors_for(&edit(&mut r, 1, 1, "again", T0 + 2), 1),
        [NO_SUCH]
    );
    assert!(r.storage_mut().edited_since(1, 10).unwrap().is_empty());
}

#[test]
fn only_a_v2_anonymous_message_keeps_its_connections_key() {
    let secret = AuthSecret::new(SECRET).unwrap();
    let mut r = room(unlimited()).with_auth(Some(Auth {
        secret: secret.clone(),
        room: "lobby".to_owned(),
    }));
    let token = mint(
        &secret,
        &Claims {
            sub: "u-ana".to_owned(),
            exp: T0 / 1000 + 3600,
            ..Claims::default()
        },
    );
    join(&mut r, 1, "10.0.0.1", &v2("ana"), T0);
    join(&mut r, 2, "10.0.0.2", r#"{"name":"bo"}"#, T0);
    join(
        &mut r,
        3,
        "10.0.0.3",
        &json!({"v": 2, "token": token}).to_string(),
        T0,
    );
    for conn in [1, 2, 3] {
        say(&mut r, conn, "hi", T0);
    }
    let authors: Vec<Option<String>> = r
        .storage_mut()
        .last_n(3)
        .unwrap()
        .into_iter()
        .map(|m| m.author)
        .collect();
    // v2 anonymous: its connection (id 1, opened at T0); v1 (which can never edit) and
    // verified (the user decides): none, so their messages cost nothing for edits.
    assert_eq!(authors, [Some(format!("c1.{T0}")), None, None]);
}

#[test]
fn a_missing_or_deleted_seq_is_no_such_message_whoever_edits_it() {
    let mut r = room_with_one_message(unlimited());
    // bo wrote nothing: the answer is about the seq asked for, never about the stored
    // message that follows it (ana's message 1 follows seq 0; a deleted message is
    // still stored, as a tombstone).
    let no_such = |r: &mut Room<MemoryStorage>, seq: u64| {
        let actions = edit(r, 2, seq, "x", T0 + 1);
        assert_eq!(errors_for(&actions, 2), [NO_SUCH], "seq {seq}");
        assert!(broadcasts(&actions).is_empty());
    };
    no_such(&mut r, 0);
    assert_eq!(errors_for(&edit(&mut r, 2, 1, "x", T0 + 1), 2), [NOT_YOURS]);
    r.storage_mut().delete_message(1, 1).unwrap();
    no_such(&mut r, 1);
}
