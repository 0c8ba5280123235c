//! Names that would show as nothing. A name made only of characters that render
//! invisibly (U+200B ZERO WIDTH SPACE, U+3164 HANGUL FILLER, …) appears blank in every
//! roster and chat line, so nobody can tell who is speaking.
//!
//! The list is Unicode's `Default_Ignorable_Code_Point` property (DerivedCoreProperties.txt,
//! Unicode 16.0): the code points a renderer shows as nothing when it has no glyph for
//! them. It is a finite table, stable across Unicode versions (new entries are rare and
//! go to reserved ranges that are already listed), so it is written out here rather
//! than pulled in as a dependency. Added to it: U+2800 BRAILLE PATTERN BLANK, which is
//! not default-ignorable but is drawn as an empty cell and is the usual way around
//! filters of the list above. White space (Unicode `White_Space`) counts as invisible
//! too, since it is only visible between other characters.

/// `Default_Ignorable_Code_Point`, as inclusive ranges in code point order.
const DEFAULT_IGNORABLE: &[(char, char)] = &[
    ('\u{00AD}', '\u{00AD}'),   // SOFT HYPHEN
    ('\u{034F}', '\u{034F}'),   // COMBINING GRAPHEME JOINER
    ('\u{061C}', '\u{061C}'),   // ARABIC LETTER MARK
    ('\u{115F}', '\u{1160}'),   // HANGUL CHOSEONG/JUNGSEONG FILLER
    ('\u{17B4}', '\u{17B5}'),   // KHMER VOWEL INHERENT AQ, AA
    ('\u{180B}', '\u{180F}'),   // MONGOLIAN FREE VARIATION SELECTORS, VOWEL SEPARATOR
    ('\u{200B}', '\u{200F}'),   // ZERO WIDTH SPACE .. RIGHT-TO-LEFT MARK
    ('\u{202A}', '\u{202E}'),   // LEFT-TO-RIGHT EMBEDDING .. RIGHT-TO-LEFT OVERRIDE
    ('\u{2060}', '\u{206F}'),   // WORD JOINER .. NOMINAL DIGIT SHAPES
    ('\u{3164}', '\u{3164}'),   // HANGUL FILLER
    ('\u{FE00}', '\u{FE0F}'),   // VARIATION SELECTOR-1..16
    ('\u{FEFF}', '\u{FEFF}'),   // ZERO WIDTH NO-BREAK SPACE (BOM)
    ('\u{FFA0}', '\u{FFA0}'),   // HALFWIDTH HANGUL FILLER
    ('\u{FFF0}', '\u{FFF8}'),   // reserved
    ('\u{1BCA0}', '\u{1BCA3}'), // SHORTHAND FORMAT CONTROLS
    ('\u{1D173}', '\u{1D17A}'), // MUSICAL SYMBOL BEGIN BEAM .. END PHRASE
    ('\u{E0000}', '\u{E0FFF}'), // TAGS, VARIATION SELECTOR-17..256, reserved
];

/// True if `c` is default-ignorable (see the module comment).
pub(crate) fn is_default_ignorable(c: char) -> bool {
    DEFAULT_IGNORABLE
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// True if `c` draws nothing on its own: default-ignorable, white space, or U+2800.
pub(crate) fn is_invisible(c: char) -> bool {
    c.is_whitespace() || c == '\u{2800}' || is_default_ignorable(c)
}

/// True if nothing of `name` would show: empty once the invisible characters go.
pub(crate) fn is_blank(name: &str) -> bool {
    name.chars().all(is_invisible)
}

/// Characters drawn as a check mark, which a name could use to pass itself off as a
/// verified user's (clients show verification as a mark next to the name). Refused in
/// names; the server alone says who is verified (`"user"` on frames).
const CHECK_MARKS: &[char] = &[
    '\u{221A}',  // SQUARE ROOT, drawn like a check mark
    '\u{2611}',  // BALLOT BOX WITH CHECK
    '\u{2705}',  // WHITE HEAVY CHECK MARK (emoji)
    '\u{2713}',  // CHECK MARK
    '\u{2714}',  // HEAVY CHECK MARK
    '\u{10102}', // AEGEAN CHECK MARK
    '\u{1F5F8}', // LIGHT CHECK MARK
    '\u{1F5F9}', // BALLOT BOX WITH BOLD CHECK
];

/// True if `name` holds a character drawn as a check mark (see [`CHECK_MARKS`]).
pub(crate) fn has_check_mark(name: &str) -> bool {
    name.chars().any(|c| CHECK_MARKS.contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_marks_are_found_anywhere_in_a_name() {
        for name in [
            "Alice ✓",
            "✔Bob",
            "a☑b",
            "ok ✅",
            "√",
            "x\u{1F5F8}",
            "\u{10102}",
        ] {
            assert!(has_check_mark(name), "{name}");
        }
        // Near misses stay allowed: letters, ticks that are not marks, other symbols.
        for name in ["Alice", "V", "v/", "✗ no", "×", "★ star"] {
            assert!(!has_check_mark(name), "{name}");
        }
    }

    #[test]
    fn the_table_is_sorted_and_disjoint() {
        for w in DEFAULT_IGNORABLE.windows(2) {
            assert!(w[0].0 <= w[0].1 && w[0].1 < w[1].0, "{w:?}");
        }
    }

    #[test]
    fn invisible_characters_are_known() {
        for c in [
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{200E}',
            '\u{200F}',
            '\u{3164}',
            '\u{FEFF}',
            '\u{2060}',
            '\u{2064}',
            '\u{115F}',
            '\u{1160}',
            '\u{FFA0}',
            '\u{FE0F}',
            '\u{00AD}',
            '\u{E0001}',
            '\u{E007F}',
            '\u{E0100}',
            '\u{E01EF}',
            '\u{180E}',
            '\u{2800}',
            '\u{3000}',
            ' ',
        ] {
            assert!(is_invisible(c), "U+{:04X}", c as u32);
        }
        for c in ['a', 'é', '😀', '\u{1F600}', '\u{E1000}', '\u{2070}'] {
            assert!(!is_invisible(c), "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn blank_names() {
        assert!(is_blank("\u{200B}"));
        assert!(is_blank("\u{3164}\u{3164}"));
        assert!(is_blank("\u{200E}\u{FEFF} \u{200F}"));
        assert!(is_blank("\u{E0041}\u{E0042}"), "tag characters");
        assert!(!is_blank("a\u{200B}"));
        assert!(!is_blank("\u{200D}😀"));
    }
}
