//! Results of comparison runs: each run appends CSV lines (`--csv`), and `--summarize`
//! reads them back, takes the median of every figure over the runs, prints the tables
//! for docs/BENCHMARKS.md (every server side by side) and draws the charts.

use crate::charts::{self, Point, Series};
use crate::report::Figures;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

const HEADER: &str = "kind,group,server,run,rate,sessions,target_per_sec,per_sec,loss_pct,\
p50_ms,p99_ms,max_ms,dropped,cpu_us,kib_per_conn,connections";

/// Who produced a line: the comparison group (servers measured under the same load),
/// the server's label, and which run of the series.
pub struct Tag<'a> {
    pub group: &'a str,
    pub server: &'a str,
    pub run: u32,
}

fn append(file: &Path, line: &str) -> Result<(), String> {
    let new = std::fs::metadata(file).map_or(true, |m| m.len() == 0);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let text = if new {
        format!("{HEADER}\n{line}\n")
    } else {
        format!("{line}\n")
    };
    f.write_all(text.as_bytes())
        .map_err(|e| format!("{}: {e}", file.display()))
}

fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        String::new()
    }
}

pub fn append_load(file: &Path, tag: &Tag, f: &Figures) -> Result<(), String> {
    append(
        file,
        &format!(
            "load,{},{},{},{},{},{},{},{},{},{},{},{},{},,",
            tag.group,
            tag.server,
            tag.run,
            f.rate,
            f.sessions,
            f.target_per_sec,
            num(f.per_sec),
            num(f.loss_pct),
            num(f.p50_ms),
            num(f.p99_ms),
            num(f.max_ms),
            f.dropped,
            f.cpu_us.map_or_else(String::new, num),
        ),
    )
}

pub fn append_idle(
    file: &Path,
    tag: &Tag,
    kib_per_conn: f64,
    connections: usize,
) -> Result<(), String> {
    append(
        file,
        &format!(
            "idle,{},{},{},0,0,0,,,,,,0,,{},{connections}",
            tag.group,
            tag.server,
            tag.run,
            num(kib_per_conn)
        ),
    )
}

/// One CSV line, as read back.
struct Row {
    kind: String,
    group: String,
    server: String,
    run: String,
    rate: u32,
    sessions: u64,
    target: u64,
    per_sec: f64,
    loss: f64,
    p50: f64,
    p99: f64,
    cpu: f64,
    kib: f64,
    connections: u64,
}

fn parse(text: &str) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() || line.starts_with("kind,") {
            continue;
        }
        let c: Vec<&str> = line.split(',').collect();
        if c.len() != HEADER.split(',').count() {
            return Err(format!(
                "line {}: {} fields, expected {}",
                i + 1,
                c.len(),
                16
            ));
        }
        let f = |k: usize| c[k].parse::<f64>().unwrap_or(f64::NAN);
        let u = |k: usize| c[k].parse::<u64>().unwrap_or(0);
        rows.push(Row {
            kind: c[0].to_owned(),
            group: c[1].to_owned(),
            server: c[2].to_owned(),
            run: c[3].to_owned(),
            rate: c[4].parse().unwrap_or(0),
            sessions: u(5),
            target: u(6),
            per_sec: f(7),
            loss: f(8),
            p50: f(9),
            p99: f(10),
            cpu: f(13),
            kib: f(14),
            connections: u(15),
        });
    }
    Ok(rows)
}

/// The median of the finite values (NaN if there are none).
fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Names in the order they first appear (the order the script ran them).
fn in_order<'a>(names: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for n in names {
        if !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

fn thousands(x: f64) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    let s = format!("{:.0}", x.round());
    let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    format!("{sign}{out}")
}

fn ms(x: f64) -> String {
    match x {
        x if !x.is_finite() => "–".into(),
        x if x >= 1000.0 => format!("{:.2} s", x / 1000.0),
        x if x >= 100.0 => format!("{x:.0} ms"),
        x => format!("{x:.1} ms"),
    }
}

/// Reads `file`, prints the markdown tables and writes the SVG charts into `charts`.
pub fn summarize(file: &Path, charts: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let rows = parse(&text)?;
    let load: Vec<&Row> = rows.iter().filter(|r| r.kind == "load").collect();
    let idle: Vec<&Row> = rows.iter().filter(|r| r.kind == "idle").collect();
    for group in in_order(load.iter().map(|r| r.group.as_str())) {
        let in_group: Vec<&Row> = load.iter().copied().filter(|r| r.group == group).collect();
        let servers = in_order(in_group.iter().map(|r| r.server.as_str()));
        let runs = in_order(in_group.iter().map(|r| r.run.as_str())).len();
        // rate -> server -> that cell's rows
        let mut cells: BTreeMap<u32, BTreeMap<&str, Vec<&Row>>> = BTreeMap::new();
        for r in &in_group {
            cells
                .entry(r.rate)
                .or_default()
                .entry(r.server.as_str())
                .or_default()
                .push(r);
        }
        let sessions = in_group.first().map_or(0, |r| r.sessions);
        println!("### {group}: {sessions} sessions, medians of {runs} run(s)\n");
        let head = |first: &str| {
            let mut h = format!("| {first} |");
            let mut rule = "|---|".to_owned();
            for s in &servers {
                h.push_str(&format!(" {s} |"));
                rule.push_str("---|");
            }
            println!("{h}\n{rule}");
        };
        let med = |rows: Option<&Vec<&Row>>, pick: fn(&Row) -> f64| {
            rows.map_or(f64::NAN, |rs| median(rs.iter().map(|r| pick(r))))
        };
        println!("Deliveries per second (loss, when not 0, is what was still missing 3 s after the window):\n");
        head("msgs/s → offered/s");
        for (rate, by_server) in &cells {
            let target = by_server
                .values()
                .flatten()
                .map(|r| r.target)
                .max()
                .unwrap_or(0);
            let mut line = format!("| {rate} → {} |", thousands(target as f64));
            for s in &servers {
                let rows = by_server.get(s);
                let loss = med(rows, |r| r.loss);
                let cell = thousands(med(rows, |r| r.per_sec));
                if loss >= 0.01 {
                    line.push_str(&format!(" {cell} ({loss:.1} % loss) |"));
                } else {
                    line.push_str(&format!(" {cell} |"));
                }
            }
            println!("{line}");
        }
        println!("\nLatency, p50 / p99:\n");
        head("msgs/s");
        for (rate, by_server) in &cells {
            let mut line = format!("| {rate} |");
            for s in &servers {
                let rows = by_server.get(s);
                line.push_str(&format!(
                    " {} / {} |",
                    ms(med(rows, |r| r.p50)),
                    ms(med(rows, |r| r.p99))
                ));
            }
            println!("{line}");
        }
        println!("\nServer CPU per delivery (µs):\n");
        head("msgs/s");
        for (rate, by_server) in &cells {
            let mut line = format!("| {rate} |");
            for s in &servers {
                let cpu = med(by_server.get(s), |r| r.cpu);
                if cpu.is_finite() {
                    line.push_str(&format!(" {cpu:.2} |"));
                } else {
                    line.push_str(" – |");
                }
            }
            println!("{line}");
        }
        println!();
        let series: Vec<Series> = servers
            .iter()
            .map(|s| Series {
                name: (*s).to_owned(),
                points: cells
                    .values()
                    .filter_map(|by_server| by_server.get(s))
                    .map(|rows| Point {
                        offered: median(rows.iter().map(|r| r.target as f64)),
                        delivered: median(rows.iter().map(|r| r.per_sec)),
                        p99_ms: median(rows.iter().map(|r| r.p99)),
                    })
                    .collect(),
            })
            .collect();
        let title = format!("{group}: {sessions} sessions");
        for path in charts::draw(charts, group, &title, &series)? {
            println!("Chart: {}", path.display());
        }
        println!();
    }
    if !idle.is_empty() {
        let runs = in_order(idle.iter().map(|r| r.run.as_str())).len();
        println!(
            "### Idle memory: server RSS per joined, silent connection, medians of {runs} run(s)\n"
        );
        println!("| server | connections | KiB per connection | runs |");
        println!("|---|---|---|---|");
        for group in in_order(idle.iter().map(|r| r.group.as_str())) {
            let in_group: Vec<&Row> = idle.iter().copied().filter(|r| r.group == group).collect();
            for s in in_order(in_group.iter().map(|r| r.server.as_str())) {
                let rows: Vec<&Row> = in_group.iter().copied().filter(|r| r.server == s).collect();
                let each: Vec<String> = rows.iter().map(|r| format!("{:.1}", r.kib)).collect();
                println!(
                    "| {s} | {} | {:.1} | {} |",
                    thousands(median(rows.iter().map(|r| r.connections as f64))),
                    median(rows.iter().map(|r| r.kib)),
                    each.join(", ")
                );
            }
        }
        println!();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_skip_missing_figures() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), 2.0);
        assert_eq!(median([4.0, 1.0, f64::NAN, 2.0, 3.0].into_iter()), 2.5);
        assert!(median([f64::NAN].into_iter()).is_nan());
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(804_020.0), "804,020");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1_000.0), "1,000");
    }

    #[test]
    fn lines_round_trip() {
        let dir = std::env::temp_dir().join(format!("bench-csv-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let tag = Tag {
            group: "g",
            server: "s",
            run: 1,
        };
        let f = Figures {
            rate: 10,
            sessions: 3,
            target_per_sec: 30,
            per_sec: 29.5,
            loss_pct: 0.0,
            p50_ms: 1.0,
            p99_ms: 2.0,
            max_ms: 3.0,
            dropped: 0,
            cpu_us: None,
            ws_msgs_per_sec: 29.5,
        };
        append_load(&dir, &tag, &f).unwrap();
        append_idle(&dir, &tag, 7.5, 100).unwrap();
        let rows = parse(&std::fs::read_to_string(&dir).unwrap()).unwrap();
        let _ = std::fs::remove_file(&dir);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].rate, rows[0].target), (10, 30));
        assert_eq!(rows[0].per_sec, 29.5);
        assert!(rows[0].cpu.is_nan());
        assert_eq!((rows[1].kib, rows[1].connections), (7.5, 100));
    }
}
