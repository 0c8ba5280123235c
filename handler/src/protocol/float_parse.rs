//! `str::parse::<f64>` again, without the standard library's float parser.
//!
//! Why: `core`'s parser carries a 10 KB table of powers of five (and the code of its
//! fast algorithms), which is about 14 KiB of the Worker's gzipped bundle, to read the
//! three `f64` settings of [`crate::Config`]. This one accepts exactly the same text
//! and gives exactly the same number (the correctly rounded one), with a small
//! big-integer division where the one-rounding fast path does not apply. Config text
//! is read once per request at most, so its speed does not matter. The tests compare
//! it with `str::parse` over many inputs, including halfway cases and malformed text.
//! No crate was found that gives `core`'s grammar and results without such tables.

/// Exactly `text.parse::<f64>().ok()`.
pub(crate) fn parse_f64(text: &str) -> Option<f64> {
    let mut s = text.as_bytes();
    let negative = s.first() == Some(&b'-');
    if matches!(s.first(), Some(b'-' | b'+')) {
        s = &s[1..];
    }
    if s.is_empty() {
        return None;
    }
    let value = match decimal(s) {
        Some((digits, exp10)) => magnitude(digits, exp10),
        None => inf_nan(s)?,
    };
    Some(if negative { -value } else { value })
}

/// `inf`, `infinity` or `nan` in any ASCII case, as `core` reads them.
fn inf_nan(s: &[u8]) -> Option<f64> {
    let lower = s.to_ascii_lowercase();
    match lower.as_slice() {
        b"inf" | b"infinity" => Some(f64::INFINITY),
        b"nan" => Some(f64::NAN),
        _ => None,
    }
}

/// `digits[.digits][(e|E)[+|-]digits]` with at least one mantissa digit, all of `s`:
/// the mantissa's digits (leading zeros dropped) and the power of ten to scale them
/// by. The exponent stops growing once it reaches 0x10000, as `core`'s does.
fn decimal(s: &[u8]) -> Option<(Vec<u8>, i64)> {
    let int_len = s.iter().take_while(|c| c.is_ascii_digit()).count();
    let (int, mut rest) = s.split_at(int_len);
    let mut frac: &[u8] = &[];
    if let Some((b'.', after)) = rest.split_first() {
        let n = after.iter().take_while(|c| c.is_ascii_digit()).count();
        (frac, rest) = after.split_at(n);
    }
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut exp10 = -(frac.len() as i64);
    if let Some((b'e' | b'E', after)) = rest.split_first() {
        let (negative, after) = match after.split_first() {
            Some((b'-', a)) => (true, a),
            Some((b'+', a)) => (false, a),
            _ => (false, after),
        };
        let n = after.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        let mut e: i64 = 0;
        for &c in &after[..n] {
            if e < 0x10000 {
                e = 10 * e + i64::from(c - b'0');
            }
        }
        exp10 += if negative { -e } else { e };
        rest = &after[n..];
    }
    if !rest.is_empty() {
        return None;
    }
    let digits: Vec<u8> = int
        .iter()
        .chain(frac)
        .map(|c| c - b'0')
        .skip_while(|&d| d == 0)
        .collect();
    Some((digits, exp10))
}

/// Most significant digits kept; any further non-zero digit is kept as one more `1`.
/// 800 is more than the 767 digits a halfway case between two doubles can need.
const MAX_DIGITS: usize = 800;

/// 10^0 to 10^22: every one exact as a double (`powi` promises no precision).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The double nearest `digits × 10^exp10` (ties to even), non-negative.
fn magnitude(mut digits: Vec<u8>, mut exp10: i64) -> f64 {
    while digits.last() == Some(&0) {
        digits.pop();
        exp10 += 1;
    }
    if digits.is_empty() {
        return 0.0;
    }
    // The value lies in [10^(top-1), 10^top).
    let top = digits.len() as i64 + exp10;
    if top > 310 {
        return f64::INFINITY;
    }
    if top < -324 {
        // Below 1e-325: under half the least subnormal (about 4.9e-324).
        return 0.0;
    }
    // One rounding: an integer below 2^53 times or over an exact power of ten.
    if digits.len() <= 15 && (-22..=22).contains(&exp10) {
        let m = digits.iter().fold(0u64, |m, &d| m * 10 + u64::from(d)) as f64;
        let p = POW10[exp10.unsigned_abs() as usize];
        return if exp10 < 0 { m / p } else { m * p };
    }
    if digits.len() > MAX_DIGITS {
        let sticky = digits[MAX_DIGITS..].iter().any(|&d| d != 0);
        exp10 += (digits.len() - MAX_DIGITS) as i64;
        digits.truncate(MAX_DIGITS);
        if sticky {
            digits.push(1);
            exp10 -= 1;
        }
    }
    // value = num / den, both integers.
    let mut num = Big::from_digits(&digits);
    let mut den = Big::one();
    if exp10 >= 0 {
        num.mul_pow10(exp10 as u32);
    } else {
        den.mul_pow10(exp10.unsigned_abs() as u32);
    }
    // q = floor(value × 2^shift) with 2^52 <= q < 2^53 (fewer bits for a subnormal,
    // whose unit is 2^-1074), then rounded by the remainder.
    let mut shift = 53 - (num.bits() as i64 - den.bits() as i64);
    let (mut q, mut rem_cmp) = scaled_quotient(&num, &den, shift);
    if q >= 1 << 53 {
        shift -= 1;
        (q, rem_cmp) = scaled_quotient(&num, &den, shift);
    }
    if shift > 1074 {
        shift = 1074;
        (q, rem_cmp) = scaled_quotient(&num, &den, shift);
    }
    let round_up = match rem_cmp {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Equal => q & 1 == 1,
        std::cmp::Ordering::Less => false,
    };
    if round_up {
        q += 1;
    }
    // q <= 2^53 is exact as a double; scaling by a power of two is exact unless it
    // overflows, which is then the right answer (infinity).
    let mut value = q as f64;
    let mut s = shift;
    while s > 0 {
        let step = s.min(1000);
        value *= pow2(-step);
        s -= step;
    }
    while s < 0 {
        let step = (-s).min(1000);
        value *= pow2(step);
        s += step;
    }
    value
}

/// 2^e for -1000 <= e <= 1000 (a normal double).
fn pow2(e: i64) -> f64 {
    f64::from_bits(((1023 + e) as u64) << 52)
}

/// floor(num × 2^shift / den), and how twice the remainder compares with the divisor
/// (greater: above halfway). The quotient is at most 2^54.
fn scaled_quotient(num: &Big, den: &Big, shift: i64) -> (u64, std::cmp::Ordering) {
    let mut a = num.clone();
    let mut b = den.clone();
    if shift >= 0 {
        a.shl(shift as u32);
    } else {
        b.shl((-shift) as u32);
    }
    let mut q = 0u64;
    for bit in (0..=54).rev() {
        let mut t = b.clone();
        t.shl(bit);
        if a.cmp(&t) != std::cmp::Ordering::Less {
            a.sub(&t);
            q |= 1 << bit;
        }
    }
    a.shl(1);
    (q, a.cmp(&b))
}

/// A non-negative integer, little-endian 32-bit limbs, no high zero limbs.
#[derive(Clone)]
struct Big(Vec<u32>);

impl Big {
    fn one() -> Big {
        Big(vec![1])
    }

    fn from_digits(digits: &[u8]) -> Big {
        let mut b = Big(Vec::new());
        for &d in digits {
            b.mul_add(10, u32::from(d));
        }
        b
    }

    fn mul_add(&mut self, m: u32, add: u32) {
        let mut carry = u64::from(add);
        for limb in &mut self.0 {
            let v = u64::from(*limb) * u64::from(m) + carry;
            *limb = v as u32;
            carry = v >> 32;
        }
        if carry > 0 {
            self.0.push(carry as u32);
        }
    }

    fn mul_pow10(&mut self, mut e: u32) {
        while e > 0 {
            let step = e.min(9);
            self.mul_add(10u32.pow(step), 0);
            e -= step;
        }
    }

    fn shl(&mut self, bits: u32) {
        let (limbs, bits) = ((bits / 32) as usize, bits % 32);
        if bits > 0 {
            let mut carry = 0u32;
            for limb in &mut self.0 {
                let v = (*limb << bits) | carry;
                carry = *limb >> (32 - bits);
                *limb = v;
            }
            if carry > 0 {
                self.0.push(carry);
            }
        }
        if limbs > 0 && !self.0.is_empty() {
            self.0.splice(0..0, std::iter::repeat_n(0, limbs));
        }
    }

    fn bits(&self) -> u32 {
        match self.0.last() {
            Some(&top) => 32 * (self.0.len() as u32 - 1) + (32 - top.leading_zeros()),
            None => 0,
        }
    }

    fn cmp(&self, other: &Big) -> std::cmp::Ordering {
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.iter().rev().cmp(other.0.iter().rev()))
    }

    /// self -= other, for other <= self.
    fn sub(&mut self, other: &Big) {
        let mut borrow = 0i64;
        for (i, limb) in self.0.iter_mut().enumerate() {
            let o = i64::from(other.0.get(i).copied().unwrap_or(0));
            let v = i64::from(*limb) - o - borrow;
            borrow = i64::from(v < 0);
            *limb = v.rem_euclid(1 << 32) as u32;
        }
        while self.0.last() == Some(&0) {
            self.0.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_f64;
    use proptest::prelude::*;

    fn same(text: &str) {
        let want = text.parse::<f64>().ok();
        let got = parse_f64(text);
        match (want, got) {
            (Some(w), Some(g)) if w.is_nan() => assert!(g.is_nan(), "{text:?}"),
            (Some(w), Some(g)) => assert_eq!(w.to_bits(), g.to_bits(), "{text:?}"),
            (w, g) => assert_eq!(w.is_some(), g.is_some(), "{text:?}: {w:?} vs {g:?}"),
        }
    }

    #[test]
    fn edges_read_as_core_reads_them() {
        for text in [
            "",
            "+",
            "-",
            ".",
            "e5",
            ".e5",
            "1e",
            "1e+",
            "1e-",
            "1.",
            ".5",
            "+.5",
            "-.5",
            "0",
            "-0",
            "+0",
            "00",
            "0.0",
            "-0.0",
            "1",
            "4",
            "0.5",
            "1e21",
            "1E21",
            "1e+21",
            "1e-7",
            "1_000",
            " 1",
            "1 ",
            "0x10",
            "1e5.5",
            "1..2",
            "1.2.3",
            "--1",
            "+-1",
            "inf",
            "-inf",
            "+inf",
            "INF",
            "Inf",
            "infinity",
            "-Infinity",
            "INFINITY",
            "infin",
            "nan",
            "NaN",
            "-nan",
            "+NAN",
            "nana",
            "in",
            "infinityy",
            "1000000",
            "1000000.0000000001",
            "999999.99999999999999",
            "0.1",
            "0.2",
            "0.3",
            "1.7976931348623157e308",
            "1.7976931348623158e308",
            "1.7976931348623159e308",
            "1.8e308",
            "1e309",
            "1e400",
            "1e-400",
            "4.9406564584124654e-324",
            "2.4703282292062327e-324",
            "2.4703282292062328e-324",
            "2.2250738585072014e-308",
            "2.2250738585072011e-308",
            "9007199254740993",
            "9007199254740992.5",
            "1394865425023536.25",
            "1e65535",
            "1e65536",
            "1e99999999999999999999",
            "0.000000000000000000000000000000000000000001e42",
            "1e-65536",
            "٣",
            "0e999999",
            "0.0e-999999",
            "123456789012345678901234567890e-10",
        ] {
            same(text);
        }
        // Past the exponent clamp: core's answer, whatever it is.
        same(&format!("0.{}1e70000", "0".repeat(69_990)));
        same(&format!("1{}e-1000", "0".repeat(1000)));
        same(&format!("1.{}1", "0".repeat(2000)));
        same(&format!("4.9406564584124654{}e-324", "0".repeat(900)));
    }

    #[test]
    fn every_double_reads_back_from_its_shortest_and_long_forms() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let v = f64::from_bits(x.wrapping_mul(0x2545_F491_4F6C_DD1D));
            same(&v.to_string());
            same(&format!("{v:e}"));
            same(&format!("{v:.25e}"));
            // Halfway to the next double up, written out in full: ties to even.
            if v.is_finite() && v > 0.0 {
                let next = f64::from_bits(v.to_bits() + 1);
                if next.is_finite() {
                    same(&format!("{:.40e}", (v + next) / 2.0));
                }
            }
        }
    }

    /// `a + b` for non-negative decimal texts in fixed notation with the same number
    /// of fraction digits.
    fn add_fixed(a: &str, b: &str) -> String {
        let (ai, af) = a.split_once('.').unwrap();
        let (bi, bf) = b.split_once('.').unwrap();
        let width = ai.len().max(bi.len()) + 1;
        let a: Vec<u8> = format!("{ai:0>width$}{af}").into_bytes();
        let b: Vec<u8> = format!("{bi:0>width$}{bf}").into_bytes();
        let mut out = vec![b'0'; a.len()];
        let mut carry = 0;
        for i in (0..a.len()).rev() {
            let d = (a[i] - b'0') + (b[i] - b'0') + carry;
            out[i] = b'0' + d % 10;
            carry = d / 10;
        }
        let digits = String::from_utf8(out).unwrap();
        let (int, frac) = digits.split_at(width);
        format!("{int}.{frac}")
    }

    /// The exact halfway points between neighbouring doubles, written out in full,
    /// which must round to even; and the doubles themselves written out in full.
    #[test]
    fn exact_halfway_points_round_to_even() {
        let mut x: u64 = 12345;
        for _ in 0..5_000 {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let bits = x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 1;
            let v = f64::from_bits(bits);
            let next = f64::from_bits(bits + 1);
            if !next.is_finite() || bits < 1 << 53 {
                continue;
            }
            // Half the gap to the next double, itself a double for these normal values.
            let half = (next - v) / 2.0;
            let exact = format!("{v:.1100}");
            same(&exact);
            let mid = add_fixed(&exact, &format!("{half:.1100}"));
            same(&mid);
            same(&format!("-{mid}"));
            // Just above and just below halfway.
            same(&format!("{mid}1"));
            let below = mid.trim_end_matches('0');
            same(&format!("{}4999e0", &below[..below.len() - 1]));
        }
        // Subnormal halfway points: k + 1/2 times 2^-1074.
        let unit = f64::from_bits(1);
        for k in [0u64, 1, 2, 3, 1000, (1 << 52) - 1] {
            let a = format!("{:.1100}", f64::from_bits(k));
            let h = format!("{:.1100}", unit);
            // (k + 1/2) × unit = k × unit + unit/2; unit/2 written as unit × 5 / 10.
            let half_unit = {
                let (i, f) = h.split_once('.').unwrap();
                let digits = format!("{i}{f}");
                let mut out = Vec::new();
                let mut carry = 0u32;
                for c in digits.bytes().rev() {
                    let d = u32::from(c - b'0') * 5 + carry;
                    out.push(b'0' + (d % 10) as u8);
                    carry = d / 10;
                }
                out.reverse();
                let s = String::from_utf8(out).unwrap();
                // × 5 then / 10: the same digits with the point one place left.
                let (i2, f2) = s.split_at(s.len() - f.len() - 1);
                let i2 = if i2.is_empty() { "0" } else { i2 };
                format!("{i2}.{f2}")
            };
            let half_unit = {
                let (i, f) = half_unit.split_once('.').unwrap();
                format!("{i}.{}", &f[..1100])
            };
            same(&add_fixed(&a, &half_unit));
        }
    }

    proptest! {
        #[test]
        fn any_text_of_number_characters(text in "[-+]?[0-9]{0,30}(\\.[0-9]{0,30})?([eE][-+]?[0-9]{0,5})?") {
            same(&text);
        }

        #[test]
        fn any_short_text(text in "[-+.eEinfatyINFATY0-9 _x]{0,12}") {
            same(&text);
        }

        #[test]
        fn long_mantissas(int in "[0-9]{1,400}", frac in "[0-9]{0,400}", exp in -400i32..400) {
            same(&format!("{int}.{frac}e{exp}"));
        }
    }
}
