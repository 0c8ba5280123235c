//! What a backend reports about itself, read as an operator reads it: the local
//! runner's `GET /metrics` page (Prometheus text format), and the Durable Object's JSON
//! log lines (docs/operating.md, "Observability"). Series names and label values are
//! written here as literals, as docs/operating.md and docs/protocol.md give them.

use crate::harness::{BackendKind, Instance};
use crate::{bail, ensure, Result};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// One scrape of `/metrics`: each series (name and labels exactly as printed) and its
/// value.
#[derive(Debug, Clone)]
pub struct MetricsPage {
    series: HashMap<String, f64>,
    text: String,
}

impl MetricsPage {
    /// `GET {base}/metrics`, which must be 200 in the Prometheus text format.
    pub async fn scrape(base: &str) -> Result<MetricsPage> {
        let resp = crate::http::request(base, "GET", "/metrics", &[]).await?;
        ensure!(
            resp.status == 200,
            "GET /metrics: {} {:?}",
            resp.status,
            resp.body
        );
        let content_type = resp
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        ensure!(
            content_type == "text/plain; version=0.0.4; charset=utf-8",
            "GET /metrics: content-type {content_type:?}"
        );
        MetricsPage::parse(&resp.body)
    }

    /// Reads `name{labels} value` lines; `#` lines are comments.
    pub fn parse(text: &str) -> Result<MetricsPage> {
        let mut series = HashMap::new();
        for line in text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let Some((name, value)) = line.rsplit_once(' ') else {
                bail!("/metrics: a line without a value: {line:?}");
            };
            let Ok(value) = value.parse::<f64>() else {
                bail!("/metrics: not a number in {line:?}");
            };
            ensure!(
                series.insert(name.to_owned(), value).is_none(),
                "/metrics: {name} twice"
            );
        }
        Ok(MetricsPage {
            series,
            text: text.to_owned(),
        })
    }

    /// The value of `series` (e.g. `edge_chat_closes_total{code="1013",reason="slow_consumer"}`).
    pub fn value(&self, series: &str) -> Result<f64> {
        match self.series.get(series) {
            Some(v) => Ok(*v),
            None => bail!("/metrics has no series {series}; the page:\n{}", self.text),
        }
    }

    /// Every series and its labels (`name`, `[(label, value)]`), for tallies.
    fn labelled(&self) -> impl Iterator<Item = (&str, Vec<(&str, &str)>, f64)> {
        self.series.iter().map(|(s, v)| {
            let (name, labels) = match s.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (s.as_str(), ""),
            };
            // Label values here are plain words and numbers: no quote or comma inside.
            let labels = labels
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k, v.trim_matches('"')))
                .collect();
            (name, labels, *v)
        })
    }
}

/// Counts of what both backends report, keyed alike on both: `close 1008 bad_hello`,
/// `rejection not_json`, `resume true`, `resume false`, `restore`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EventCounts(BTreeMap<String, u64>);

impl EventCounts {
    /// The counts so far: from `/metrics` on the local runner, from the log lines since
    /// start on the Worker.
    pub async fn of(instance: &Instance) -> Result<EventCounts> {
        let mut counts = BTreeMap::new();
        let mut add = |key: String, n: u64| *counts.entry(key).or_insert(0) += n;
        match instance.kind() {
            BackendKind::Local => {
                let page = MetricsPage::scrape(&instance.metrics_base()).await?;
                for (name, labels, value) in page.labelled() {
                    let label = |k: &str| {
                        labels
                            .iter()
                            .find(|(key, _)| *key == k)
                            .map_or("", |(_, v)| *v)
                    };
                    let key = match name {
                        "edge_chat_closes_total" => {
                            format!("close {} {}", label("code"), label("reason"))
                        }
                        "edge_chat_rejections_total" => format!("rejection {}", label("reason")),
                        "edge_chat_joins_total" => match label("outcome") {
                            "recovered" => "resume true".to_owned(),
                            "not_recovered" => "resume false".to_owned(),
                            _ => continue,
                        },
                        "edge_chat_room_restores_total" => "restore".to_owned(),
                        _ => continue,
                    };
                    add(key, value as u64);
                }
            }
            BackendKind::Wrangler => {
                for line in instance.logs().since(0) {
                    let Some(at) = line.find(r#"{"event":"#) else {
                        continue;
                    };
                    let Ok(v) = serde_json::from_str::<Value>(&line[at..]) else {
                        continue;
                    };
                    let text = |k: &str| match &v[k] {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    let key = match v["event"].as_str() {
                        Some("close") => format!("close {} {}", text("code"), text("reason")),
                        Some("rejection") => format!("rejection {}", text("reason")),
                        Some("resume") => format!("resume {}", text("recovered")),
                        Some("restore") => "restore".to_owned(),
                        _ => continue,
                    };
                    add(key, 1);
                }
            }
        }
        Ok(EventCounts(counts))
    }

    /// What grew since `before`, and by how much.
    pub fn since(&self, before: &EventCounts) -> BTreeMap<String, u64> {
        self.0
            .iter()
            .filter_map(|(k, n)| {
                let was = before.0.get(k).copied().unwrap_or(0);
                (*n > was).then(|| (k.clone(), n - was))
            })
            .collect()
    }

    /// Waits (bounded) until the counts that grew since `before`, leaving out the keys
    /// `ignore` matches, are exactly `expected`. Log lines come through a pipe, so the
    /// Worker's may lag a little behind the frames.
    pub async fn wait_for(
        instance: &Instance,
        before: &EventCounts,
        expected: &BTreeMap<String, u64>,
        ignore: impl Fn(&str) -> bool,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mut grew = EventCounts::of(instance).await?.since(before);
            grew.retain(|k, _| !ignore(k));
            if &grew == expected {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "{} reported\n  {grew:?}\nexpected\n  {expected:?}",
                    instance.kind().name()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_parse_into_series() {
        let page = MetricsPage::parse(
            "# HELP x y\n# TYPE x counter\nedge_chat_closes_total{code=\"1013\",reason=\"slow_consumer\"} 2\nedge_chat_rooms 3\n",
        )
        .unwrap();
        assert_eq!(
            page.value(r#"edge_chat_closes_total{code="1013",reason="slow_consumer"}"#)
                .unwrap(),
            2.0
        );
        assert_eq!(page.value("edge_chat_rooms").unwrap(), 3.0);
        assert!(page.value("edge_chat_nope").is_err());
        let labelled: Vec<_> = page
            .labelled()
            .filter(|(n, _, _)| n.contains("closes"))
            .collect();
        assert_eq!(
            labelled,
            [(
                "edge_chat_closes_total",
                vec![("code", "1013"), ("reason", "slow_consumer")],
                2.0
            )]
        );
        assert!(MetricsPage::parse("edge_chat_rooms x\n").is_err());
    }
}
