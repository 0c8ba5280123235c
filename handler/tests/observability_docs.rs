//! The labels the backends report (`/metrics` and the Worker's log lines) are all
//! documented, so a new `ErrorKind`, `Close` or `JoinOutcome` cannot go undocumented:
//! docs/protocol.md's "Error kinds and close reasons" lists every close reason and
//! rejection reason with what it stands for, and docs/operating.md's "Observability"
//! names every join outcome.

use chat_handler::{Close, ErrorKind, JoinOutcome};

/// The text of `doc` under the heading `heading`, to the next `## ` heading.
fn section(doc: &str, heading: &str) -> String {
    let path = format!("{}/../docs/{doc}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let after = text
        .split(&format!("\n{heading}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("no {heading:?} in {path}"));
    after.split("\n## ").next().unwrap_or(after).to_owned()
}

fn labels() -> String {
    section("protocol.md", "## Error kinds and close reasons")
}

fn row<'a>(section: &'a str, label: &str) -> &'a str {
    let cell = format!("| `{label}` |");
    section
        .lines()
        .find(|l| l.starts_with(&cell))
        .unwrap_or_else(|| panic!("no row for {label}"))
}

/// The part of the section from the line starting with `from` to the one starting
/// with `to` (or its end).
fn part(section: &str, from: &str, to: Option<&str>) -> String {
    let start = section.find(from).unwrap_or_else(|| panic!("no {from:?}"));
    let rest = &section[start..];
    match to.and_then(|t| rest.find(t)) {
        Some(end) => rest[..end].to_owned(),
        None => rest.to_owned(),
    }
}

#[test]
fn every_close_reason_has_its_row() {
    let section = part(&labels(), "Close reasons", Some("Rejection reasons"));
    for close in Close::ALL {
        let row = row(&section, close.label());
        assert!(
            row.contains(&format!("| {} |", close.code())) && row.contains(close.reason()),
            "{close:?}: {row}"
        );
    }
}

#[test]
fn every_rejection_reason_has_its_row() {
    let section = part(&labels(), "Rejection reasons", None);
    for kind in ErrorKind::ALL {
        let row = row(&section, kind.label());
        assert!(row.contains(kind.sentence()), "{kind:?}: {row}");
    }
}

#[test]
fn join_outcomes_are_named() {
    let section = section("operating.md", "## Observability");
    for outcome in JoinOutcome::ALL {
        assert!(
            section.contains(&format!("`{}`", outcome.label())),
            "{outcome:?}"
        );
    }
}
