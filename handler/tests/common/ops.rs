//! Proptest strategies for the shared [`Op`], one per kind, each drawing its fields
//! from the ranges that matter (see `model`). A suite picks the kinds it needs, and
//! their weights, with `prop_oneof!`.

use super::model::{Op, ADDRS, CIDS, CONNS, NAMES, RESUME_SEQS, TEXTS};
use proptest::prelude::*;
use std::ops::Range;

/// Hello opt-ins (indices into `model::OPT_INS`): v1 or v2, no batching.
pub const V1_OR_V2: Range<u8> = 0..2;

fn conn() -> Range<u8> {
    0..CONNS
}

fn len(list: &[&str]) -> u8 {
    u8::try_from(list.len()).expect("a short list")
}

pub fn connect() -> impl Strategy<Value = Op> {
    (conn(), 0..ADDRS).prop_map(|(conn, addr)| Op::Connect { conn, addr })
}

/// A hello with one of `opt_ins` (indices into `model::OPT_INS`).
pub fn hello(opt_ins: Range<u8>) -> impl Strategy<Value = Op> {
    (
        conn(),
        0..len(NAMES),
        proptest::option::of((any::<bool>(), 0..RESUME_SEQS)),
        opt_ins,
    )
        .prop_map(|(conn, name, resume, opt_in)| Op::Hello {
            conn,
            name,
            resume,
            opt_in,
        })
}

/// A chat message; with `cids`, maybe a retry-safe one.
pub fn chat(cids: bool) -> impl Strategy<Value = Op> {
    let cid = if cids {
        proptest::option::of(0..len(CIDS)).boxed()
    } else {
        Just(None).boxed()
    };
    (conn(), 0..len(TEXTS), cid).prop_map(|(conn, text, cid)| Op::Chat { conn, text, cid })
}

/// A message long on the wire: up to about 6 KB.
pub fn spam() -> impl Strategy<Value = Op> {
    (conn(), 1u16..1000).prop_map(|(conn, len)| Op::Spam { conn, len })
}

/// A history request: `before` up to a little past what cases store.
pub fn history() -> impl Strategy<Value = Op> {
    (conn(), proptest::option::of(0u8..45), 0u8..8).prop_map(|(conn, before, limit)| Op::History {
        conn,
        before,
        limit,
    })
}

/// A typing frame, on or off.
pub fn typing() -> impl Strategy<Value = Op> {
    (conn(), any::<bool>()).prop_map(|(conn, on)| Op::Typing { conn, on })
}

/// Any short text frame.
pub fn text() -> impl Strategy<Value = Op> {
    (conn(), ".{0,40}").prop_map(|(conn, raw)| Op::Text { conn, raw })
}

/// A binary frame, under and over `model::config`'s 200 bytes.
pub fn binary() -> impl Strategy<Value = Op> {
    (conn(), 0u16..300).prop_map(|(conn, len)| Op::Binary { conn, len })
}

pub fn close() -> impl Strategy<Value = Op> {
    conn().prop_map(|conn| Op::Close { conn })
}

/// Clock steps of -500 to +2500 ms: across the hello deadline and the refill of a
/// token, and at times backwards.
pub fn advance() -> impl Strategy<Value = Op> {
    (0u16..3000).prop_map(|ms| Op::Advance { ms })
}

pub fn tick() -> impl Strategy<Value = Op> {
    Just(Op::Tick)
}
