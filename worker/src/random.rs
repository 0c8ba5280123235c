//! Randomness from the runtime's CSPRNG (`crypto.getRandomValues`), which Workers provide
//! globally. Conn ids and room epochs only need to be unpredictable and unique; taking
//! them from Web Crypto avoids pulling in a `getrandom` backend (and its cfg flags) for
//! a few bytes.

use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = crypto, js_name = getRandomValues, catch)]
    fn get_random_values(buf: &mut [u8]) -> Result<JsValue, JsValue>;
}

/// Fills `buf` with random bytes. Web Crypto refuses only requests over 64 KiB, which
/// this crate never makes; should it fail anyway, `Math.random` keeps ids distinct
/// (they are also checked against the live sessions) rather than panicking.
pub fn fill(buf: &mut [u8]) {
    if get_random_values(buf).is_err() {
        for b in buf.iter_mut() {
            *b = (js_sys::Math::random() * 256.0) as u8;
        }
    }
}

pub fn bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    fill(&mut buf);
    buf
}

pub fn u64() -> u64 {
    u64::from_le_bytes(bytes::<8>())
}
