//! v2 reactions: toggling, counts to v2 members only, the bounds, what backlogs,
//! history and resumes carry, and a moderator's delete taking them away.

mod common;

use chat_handler::{Action, Config, ConnId, MemoryStorage, Room, Storage};
use common::*;
use serde_json::{json, Value};

const T0: u64 = 1_764_000_000_000;
const EMOJI: &str =
    "A reaction must be one emoji: a single character (grapheme) of at most 16 bytes.";

fn v2(name: &str) -> String {
    json!({"name": name, "v": 2}).to_string()
}

fn react(r: &mut Room<MemoryStorage>, conn: ConnId, seq: u64, emoji: &str) -> Vec<Action> {
    r.on_text(
        conn,
        &json!({"react": {"seq": seq, "emoji": emoji}}).to_string(),
        T0 + 1,
    )
}

fn errors_for(actions: &[Action], conn: ConnId) -> Vec<String> {
    frames_for(actions, conn)
        .iter()
        .filter_map(|f| error_text(f).map(str::to_owned))
        .collect()
}

fn counts(seq: u64, c: Value) -> Value {
    json!({"reactions": {"seq": seq, "counts": c}})
}

/// ana (1, v2), bo (2, v2), cy (3, v1); ana's message 1.
fn room_with_one_message(config: Config) -> Room<MemoryStorage> {
    let mut r = room(config);
    join(&mut r, 1, "10.0.0.1", &v2("ana"), T0);
    join(&mut r, 2, "10.0.0.2", &v2("bo"), T0);
    join(&mut r, 3, "10.0.0.3", r#"{"name":"cy"}"#, T0);
    say(&mut r, 1, "hi", T0);
    r
}

#[test]
fn a_reaction_toggles_and_v2_members_get_the_counts() {
    let mut r = room_with_one_message(unlimited());
    let a = react(&mut r, 2, 1, "👍");
    assert_eq!(frames_for(&a, 1), [counts(1, json!({"👍": 1}))]);
    assert_eq!(frames_for(&a, 2), [counts(1, json!({"👍": 1}))]);
    assert!(frames_for(&a, 3).is_empty(), "v1 never sees reactions");
    let a = react(&mut r, 1, 1, "👍");
    assert_eq!(broadcasts(&a), [counts(1, json!({"👍": 2}))]);
    let a = react(&mut r, 1, 1, "🎉");
    assert_eq!(broadcasts(&a), [counts(1, json!({"👍": 2, "🎉": 1}))]);
    // The same reactor and emoji again takes it back.
    let a = react(&mut r, 2, 1, "👍");
    assert_eq!(broadcasts(&a), [counts(1, json!({"👍": 1, "🎉": 1}))]);
    react(&mut r, 1, 1, "👍");
    let a = react(&mut r, 1, 1, "🎉");
    assert_eq!(broadcasts(&a), [counts(1, json!({}))]);
    react(&mut r, 1, 1, "🎉");

    // Backlog and history carry the counts; a message with none has no field.
    let page = frames_for(&r.on_text(2, r#"{"history":{}}"#, T0 + 2), 2);
    assert_eq!(page[0]["history"][0]["reactions"], json!({"🎉": 1}));
    say(&mut r, 1, "plain", T0 + 3);
    let joined = frames_for(&join(&mut r, 4, "10.0.0.4", &v2("di"), T0 + 4), 4);
    let backlog: Vec<&Value> = joined
        .iter()
        .filter(|f| f.get("message").is_some() && f.get("seq").is_some())
        .collect();
    assert_eq!(backlog[0]["reactions"], json!({"🎉": 1}));
    assert!(backlog[1].get("reactions").is_none());
}

#[test]
fn emoji_must_be_one_grapheme_of_at_most_16_bytes() {
    let mut r = room_with_one_message(unlimited());
    // Several scalars, one grapheme each: a skin tone, a flag, a ZWJ sequence, a keycap.
    for ok in ["👍🏽", "🇫🇷", "🧑‍💻", "1️⃣", "❤️", "x"] {
        assert!(
            errors_for(&react(&mut r, 1, 1, ok), 1).is_empty(),
            "{ok:?} is one emoji"
        );
    }
    let family = "👨‍👩‍👧‍👦"; // one grapheme, 25 bytes
    for bad in ["", " ", "👍👍", "ab", "\n", "\u{0}", family] {
        assert_eq!(errors_for(&react(&mut r, 1, 1, bad), 1), [EMOJI], "{bad:?}");
    }
    let shape = r#"Expected a reaction like {"react": {"seq": 17, "emoji": "👍"}}."#;
    for frame in [
        r#"{"react": "👍"}"#,
        r#"{"react": {"seq": 1}}"#,
        r#"{"react": {"emoji": "👍"}}"#,
        r#"{"react": {"seq": "1", "emoji": "👍"}}"#,
        r#"{"react": {"seq": 1, "emoji": 1}}"#,
    ] {
        assert_eq!(
            errors_for(&r.on_text(1, frame, T0 + 1), 1),
            [shape],
            "{frame}"
        );
    }
    assert_eq!(
        errors_for(&react(&mut r, 1, 9, "👍"), 1),
        ["There is no message with that seq to react to."]
    );
    assert_eq!(
        errors_for(&react(&mut r, 3, 1, "👍"), 3),
        [r#"Reactions need protocol v2: send "v": 2 in the hello."#]
    );
}

#[test]
fn the_bounds_on_distinct_emoji_and_on_all_reactions_hold() {
    let mut r = room_with_one_message(Config {
        max_reactions_per_message: 2,
        max_reaction_count_per_message: 3,
        ..unlimited()
    });
    react(&mut r, 1, 1, "a");
    react(&mut r, 1, 1, "b");
    let a = react(&mut r, 1, 1, "c");
    assert_eq!(
        errors_for(&a, 1),
        ["This message has as many different reactions as it may have (max_reactions_per_message)."]
    );
    assert!(broadcasts(&a).is_empty());
    react(&mut r, 2, 1, "a");
    let a = react(&mut r, 3, 1, "a"); // v1: refused for its version, not the bound
    assert_eq!(errors_for(&a, 3).len(), 1);
    join(&mut r, 4, "10.0.0.4", &v2("di"), T0);
    let a = react(&mut r, 4, 1, "b");
    assert_eq!(
        errors_for(&a, 4),
        ["This message has as many reactions as it may have (max_reaction_count_per_message)."]
    );
    // Taking one back is always allowed, and makes room.
    assert!(errors_for(&react(&mut r, 1, 1, "a"), 1).is_empty());
    assert!(errors_for(&react(&mut r, 4, 1, "b"), 4).is_empty());
}

#[test]
fn a_resume_replays_changed_counts_and_a_delete_removes_them() {
    let mut r = room_with_one_message(unlimited());
    say(&mut r, 1, "two", T0);
    r.disconnect(2, T0);
    react(&mut r, 1, 1, "👍");
    let epoch = r.epoch().to_owned();
    let hello = json!({"name": "bo", "v": 2, "resume": {"epoch": epoch, "seq": 2}}).to_string();
    let frames = frames_for(&join(&mut r, 5, "10.0.0.2", &hello, T0 + 2), 5);
    assert!(frames.contains(&counts(1, json!({"👍": 1}))), "{frames:?}");
    assert_eq!(frames.last().unwrap()["recovered"], true);

    r.storage_mut().delete_message(1, 2).unwrap();
    assert!(r.storage_mut().reacted_since(1, 10).unwrap().is_empty());
    assert!(!r
        .storage_mut()
        .has_reaction(1, "👍", "c1.1764000000000")
        .unwrap());
    assert_eq!(
        errors_for(&react(&mut r, 1, 1, "👍"), 1),
        ["There is no message with that seq to react to."]
    );
}

#[test]
fn a_verified_user_reacts_once_per_emoji_across_its_sessions() {
    use chat_handler::identity::{mint, Claims};
    use chat_handler::{Auth, AuthSecret};
    let secret = AuthSecret::new("test-secret-0123456789abcdef-0123456789").unwrap();
    let mut r = room(unlimited()).with_auth(Some(Auth {
        secret: secret.clone(),
        room: "lobby".into(),
    }));
    let t = mint(
        &secret,
        &Claims {
            sub: "u-ana".into(),
            exp: T0 / 1000 + 3600,
            ..Claims::default()
        },
    );
    let hello = json!({"v": 2, "token": t}).to_string();
    join(&mut r, 1, "10.0.0.1", &hello, T0);
    join(&mut r, 2, "10.0.0.2", &hello, T0);
    say(&mut r, 1, "hi", T0);
    assert_eq!(
        broadcasts(&react(&mut r, 1, 1, "👍")),
        [counts(1, json!({"👍": 1}))]
    );
    // The other tab is the same reactor: its toggle takes the reaction back.
    assert_eq!(
        broadcasts(&react(&mut r, 2, 1, "👍")),
        [counts(1, json!({}))]
    );
}
