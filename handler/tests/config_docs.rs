//! docs/PROTOCOL.md's limits table follows the bounds declared in `chat_handler::Config`:
//! every key is documented, and each number's row states its allowed range.

use chat_handler::Config;

/// "100000" → "100,000", as the table writes numbers.
fn thousands(n: &str) -> String {
    let (int, frac) = n.split_once('.').unwrap_or((n, ""));
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    out
}

#[test]
fn protocol_limits_table_states_every_bound() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let section = doc
        .split("## Limits and close codes")
        .nth(1)
        .expect("a Limits and close codes section");
    for key in Config::DESCRIPTORS {
        let quoted = format!("`{}`", key.name());
        assert!(
            section.contains(&quoted),
            "{quoted} missing from the limits"
        );
        if key.is_list() || key.is_switch() || key.is_text() {
            continue;
        }
        let row = section
            .lines()
            .find(|l| l.starts_with('|') && l.contains(&format!("| {quoted} |")))
            .unwrap_or_else(|| panic!("no table row for {quoted}"));
        let most = thousands(&key.most().expect("a number has an upper bound"));
        let range = match key.least() {
            Some(least) => format!("{} to {most}", thousands(&least)),
            None => format!("up to {most}"),
        };
        assert!(
            row.contains(&range),
            "{quoted}: {range:?} missing from {row}"
        );
    }
}

#[test]
fn thousands_separators() {
    assert_eq!(thousands("0"), "0");
    assert_eq!(thousands("256"), "256");
    assert_eq!(thousands("1000"), "1,000");
    assert_eq!(thousands("4294967295"), "4,294,967,295");
    assert_eq!(thousands("16777216"), "16,777,216");
}
