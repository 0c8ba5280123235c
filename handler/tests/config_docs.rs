//! The limits tables follow the bounds declared in `chat_handler::Config`: in
//! docs/operating.md ("Limits") every key is documented and each number's row states its
//! allowed range; docs/protocol.md ("Limits and close codes") has a row for each number
//! with the same default, so the two documents cannot drift apart.

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

/// The text of `doc` from the heading line `heading` to the next heading of its level.
fn section(doc: &str, heading: &str) -> String {
    let path = format!("{}/../docs/{doc}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("no {heading:?} in {path}"));
    let rest = &text[start + 1 + heading.len()..];
    match rest.find("\n## ") {
        Some(end) => rest[..end].to_owned(),
        None => rest.to_owned(),
    }
}

/// The cells of the table row whose cell `column` is `cell`.
fn row_with(section: &str, column: usize, cell: &str) -> Option<Vec<String>> {
    section
        .lines()
        .filter(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .find(|cells| cells.get(column).map(String::as_str) == Some(cell))
}

#[test]
fn operating_limits_table_states_every_bound() {
    let section = section("operating.md", "## Limits");
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
            .find(|l| l.starts_with(&format!("| {quoted} |")))
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

/// protocol.md's table (limit | default | config key | over the limit) states the same
/// default as operating.md's (config key | default | allowed values | …) for every
/// number, so a client author reads the figure an operator reads.
#[test]
fn protocol_limits_table_has_every_number_with_the_same_default() {
    let protocol = section("protocol.md", "## Limits and close codes");
    let operating = section("operating.md", "## Limits");
    for key in Config::DESCRIPTORS {
        if key.is_list() || key.is_switch() || key.is_text() {
            continue;
        }
        let quoted = format!("`{}`", key.name());
        let theirs = row_with(&protocol, 2, &quoted)
            .unwrap_or_else(|| panic!("no row for {quoted} in protocol.md"));
        let ours = row_with(&operating, 0, &quoted)
            .unwrap_or_else(|| panic!("no row for {quoted} in operating.md"));
        assert_eq!(theirs[1], ours[1], "the default of {quoted}");
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
