//! What a run tells monitoring: Prometheus metrics in the text exposition
//! format, pushed to a Pushgateway (`--pushgateway`, one group per
//! account) or written for node_exporter's textfile collector
//! (`--metrics-file`). The text is built by `prometheus-client`, the
//! Prometheus project's Rust client, so names, help and escaping are the
//! format's own.
//!
//! Every metric describes the last run, except `last_success`, which is
//! pushed only by a run that succeeded: a Pushgateway `POST` replaces only
//! the metric names it carries, so a failed run leaves the time of the
//! last success as it was (docs/operations.md has the table and the
//! alert rules).

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::jobs::summary::Summary;

/// The Pushgateway's job label.
pub const JOB: &str = "trtc_usage";
/// The account group of a run without `--accounts`.
pub const DEFAULT_ACCOUNT: &str = "default";
/// How long a push may take: a Pushgateway that does not answer costs the
/// run no more than this.
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// When the run started and ended, and how.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub started: DateTime<Utc>,
    pub ended: DateTime<Utc>,
    pub exit_code: u8,
}

/// Whether the run succeeded: every partition exported (exit 0), or
/// exported with rooms that do not add up under `--checks fail` (exit 3;
/// failing checks have an alert of their own).
pub fn is_success(exit_code: u8) -> bool {
    exit_code == 0 || exit_code == 3
}

type Labels = Vec<(String, String)>;

fn seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp_micros() as f64 / 1e6
}

fn day_seconds(d: NaiveDate) -> f64 {
    d.and_hms_opt(0, 0, 0)
        .map_or(0.0, |t| t.and_utc().timestamp() as f64)
}

/// A gauge family registered under `trtc_usage_<name>`.
fn family(
    registry: &mut Registry,
    name: &str,
    help: &str,
) -> Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>> {
    let f = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    registry.register(name, help, f.clone());
    f
}

fn set(
    f: &Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    labels: &[(&str, &str)],
    v: f64,
) {
    let labels: Labels = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    f.get_or_create(&labels).set(v);
}

/// The exposition text of one account group's `summary`; `account`, when
/// given, is a label on every metric (the textfile collector's file holds
/// every account, where a Pushgateway has a group each).
pub fn render(summary: &Summary, run: &Run, account: Option<&str>) -> String {
    let mut registry = match account {
        Some(a) => Registry::with_prefix_and_labels(
            "trtc_usage",
            [("account".into(), a.to_owned().into())].into_iter(),
        ),
        None => Registry::with_prefix("trtc_usage"),
    };
    let one = |r: &mut Registry, name: &str, help: &str, v: f64| {
        set(&family(r, name, help), &[], v);
    };
    one(
        &mut registry,
        "last_run_start_timestamp_seconds",
        "When the last run started (Unix seconds)",
        seconds(run.started),
    );
    one(
        &mut registry,
        "last_run_end_timestamp_seconds",
        "When the last run ended (Unix seconds)",
        seconds(run.ended),
    );
    one(
        &mut registry,
        "last_run_exit_code",
        "The last run's exit status: 0 ok, 1 partitions failed, 2 fatal, 3 checks failed, 130/143 stopped",
        f64::from(run.exit_code),
    );
    if is_success(run.exit_code) {
        one(
            &mut registry,
            "last_success_timestamp_seconds",
            "When a run last ended with every partition exported (exit 0 or 3), in Unix seconds; a failed run leaves it as it was",
            seconds(run.ended),
        );
    }
    let partitions = family(
        &mut registry,
        "last_run_partitions",
        "Partitions of the last run, by table and outcome (written, skipped: already final, failed)",
    );
    let rows = family(
        &mut registry,
        "last_run_rows",
        "Rows written by the last run, by table",
    );
    let bytes = family(
        &mut registry,
        "last_run_bytes",
        "Bytes written by the last run, by table",
    );
    for (table, c) in &summary.tables {
        let t = table.name();
        set(
            &partitions,
            &[("table", t), ("outcome", "written")],
            c.written as f64,
        );
        set(
            &partitions,
            &[("table", t), ("outcome", "skipped")],
            c.skipped_final as f64,
        );
        set(
            &partitions,
            &[("table", t), ("outcome", "failed")],
            c.failed as f64,
        );
        set(&rows, &[("table", t)], c.rows as f64);
        set(&bytes, &[("table", t)], c.bytes as f64);
    }
    let counted = summary.written + summary.skipped_final + summary.failed.len();
    one(
        &mut registry,
        "last_run_partitions_not_attempted",
        "Partitions the last run planned but did not attempt (it stopped early)",
        summary.planned.saturating_sub(counted) as f64,
    );
    let calls = family(
        &mut registry,
        "last_run_api_calls",
        "API attempts of the last run, by action and outcome: ok, or what failed the attempt (the API's error code, http_<status>, timeout, network, unreadable)",
    );
    let throttled = family(
        &mut registry,
        "last_run_api_throttled",
        "API attempts of the last run answered with a rate-limit error, by action",
    );
    let retries = family(
        &mut registry,
        "last_run_api_retries",
        "API attempts of the last run that were retries, by action",
    );
    for (action, s) in &summary.calls_by_action {
        let failed: u64 = s.errors.values().sum();
        set(
            &calls,
            &[("action", action), ("outcome", "ok")],
            s.calls.saturating_sub(failed) as f64,
        );
        for (code, n) in &s.errors {
            set(&calls, &[("action", action), ("outcome", code)], *n as f64);
        }
        set(&throttled, &[("action", action)], s.throttles as f64);
        set(&retries, &[("action", action)], s.retries as f64);
    }
    one(
        &mut registry,
        "last_run_checks_failed",
        "(app, day)s whose rooms did not add up to the app's figure in the last run",
        summary.checks.failed as f64,
    );
    one(
        &mut registry,
        "last_run_oldest_not_final_day_timestamp_seconds",
        "The oldest day of the last run's range that is not final (failed, not attempted or still settling), as its 00:00 UTC in Unix seconds; 0 when every day is final",
        summary.oldest_not_final.map_or(0.0, day_seconds),
    );
    let mut text = String::new();
    encode(&mut text, &registry).expect("writing to a String cannot fail");
    text
}

/// The account groups of a run: one per account with `--accounts`, else
/// `default`.
pub fn groups(summary: &Summary) -> Vec<(&str, &Summary)> {
    if summary.per_account.is_empty() {
        vec![(DEFAULT_ACCOUNT, summary)]
    } else {
        summary
            .per_account
            .iter()
            .map(|(name, s)| (name.as_str(), s))
            .collect()
    }
}

/// Pushes `text` to the Pushgateway at `url`, group `account`, with a
/// `POST` (only the metric names pushed are replaced). The error is one
/// line naming the gateway.
pub async fn push(
    client: &reqwest::Client,
    url: &url::Url,
    account: &str,
    text: String,
) -> Result<(), String> {
    let target = format!(
        "{}/metrics/job/{JOB}/account/{account}",
        url.as_str().trim_end_matches('/')
    );
    let fail = |why: String| {
        format!("--pushgateway {url}: pushing the metrics of account {account} failed: {why}")
    };
    let response = client
        .post(&target)
        .header("Content-Type", "text/plain; version=0.0.4")
        .body(text)
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        let body = response.text().await.unwrap_or_default();
        Err(fail(format!("HTTP {status}: {}", body.trim())))
    }
}

/// Writes `text` to `path` atomically (a temporary name beside it, then a
/// rename), as the textfile collector wants: it never reads half a file.
pub fn write_file(path: &std::path::Path, text: &str) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("--metrics-file {}: {e}", path.display());
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
    std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(fail)?;
    tmp.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}

/// Reports `summary` to where the flags say: every account group pushed
/// to the Pushgateway, and the file written. A failure is one warning
/// line each and changes nothing else.
pub async fn report(
    summary: &Summary,
    run: &Run,
    pushgateway: Option<&url::Url>,
    metrics_file: Option<&std::path::Path>,
) {
    if let Some(url) = pushgateway {
        match reqwest::Client::builder().timeout(PUSH_TIMEOUT).build() {
            Ok(client) => {
                for (account, s) in groups(summary) {
                    if let Err(e) = push(&client, url, account, render(s, run, None)).await {
                        tracing::warn!("{e}");
                    }
                }
            }
            Err(e) => tracing::warn!("--pushgateway {url}: {e}"),
        }
    }
    if let Some(path) = metrics_file {
        let text: String = match summary.per_account.is_empty() {
            true => render(summary, run, None),
            false => {
                let parts: Vec<String> = groups(summary)
                    .into_iter()
                    .map(|(a, s)| render(s, run, Some(a)))
                    .collect();
                merge(&parts)
            }
        };
        if let Err(e) = write_file(path, &text) {
            tracing::warn!("{e}");
        }
    }
}

/// Several renders as one exposition: each metric's HELP and TYPE once,
/// its samples from every part, one `# EOF`.
fn merge(parts: &[String]) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut by_metric: std::collections::BTreeMap<String, (Vec<String>, Vec<String>)> =
        Default::default();
    for part in parts {
        let mut current = String::new();
        for line in part.lines() {
            if line == "# EOF" {
                continue;
            }
            if let Some(rest) = line
                .strip_prefix("# HELP ")
                .or_else(|| line.strip_prefix("# TYPE "))
            {
                current = rest.split(' ').next().unwrap_or_default().to_owned();
                let entry = by_metric.entry(current.clone()).or_insert_with(|| {
                    order.push(current.clone());
                    (Vec::new(), Vec::new())
                });
                if !entry.0.iter().any(|l| l == line) {
                    entry.0.push(line.to_owned());
                }
            } else if !line.is_empty() {
                by_metric
                    .entry(current.clone())
                    .or_default()
                    .1
                    .push(line.to_owned());
            }
        }
    }
    let mut out = String::new();
    for name in order {
        let (head, samples) = &by_metric[&name];
        for l in head.iter().chain(samples) {
            out.push_str(l);
            out.push('\n');
        }
    }
    out.push_str("# EOF\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(exit_code: u8) -> Run {
        let t = "2026-12-04T01:00:00Z".parse().unwrap();
        Run {
            started: t,
            ended: t + chrono::Duration::seconds(90),
            exit_code,
        }
    }

    #[test]
    fn a_failed_run_carries_no_last_success() {
        let s = Summary::new(3);
        let ok = render(&s, &run(0), None);
        assert!(
            ok.contains("trtc_usage_last_success_timestamp_seconds 1796346090"),
            "{ok}"
        );
        assert!(ok.contains("trtc_usage_last_run_exit_code 0"), "{ok}");
        let failed = render(&s, &run(1), None);
        assert!(!failed.contains("last_success"), "{failed}");
        assert!(
            failed.contains("trtc_usage_last_run_partitions_not_attempted 3"),
            "{failed}"
        );
    }

    #[test]
    fn several_accounts_in_one_file_name_each_once() {
        let s = Summary::new(1);
        let parts = [
            render(&s, &run(0), Some("a")),
            render(&s, &run(2), Some("b")),
        ];
        let text = merge(&parts);
        assert_eq!(
            text.matches("# TYPE trtc_usage_last_run_exit_code gauge")
                .count(),
            1,
            "{text}"
        );
        assert!(
            text.contains("trtc_usage_last_run_exit_code{account=\"a\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("trtc_usage_last_run_exit_code{account=\"b\"} 2"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
