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

/// When the run started and ended.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub started: DateTime<Utc>,
    pub ended: DateTime<Utc>,
}

/// Whether a run succeeded: every partition exported (exit 0), or
/// exported with rooms that do not add up under `--checks fail` (exit 3;
/// failing checks have an alert of their own).
pub fn is_success(exit_code: u8) -> bool {
    exit_code == 0 || exit_code == 3
}

type Labels = Vec<(String, String)>;
type GaugeF = Gauge<f64, std::sync::atomic::AtomicU64>;

fn seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp_micros() as f64 / 1e6
}

fn day_seconds(d: NaiveDate) -> f64 {
    d.and_hms_opt(0, 0, 0)
        .map_or(0.0, |t| t.and_utc().timestamp() as f64)
}

/// A gauge family registered under `trtc_usage_<name>`.
fn family(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, GaugeF> {
    let f = Family::<Labels, GaugeF>::default();
    registry.register(name, help, f.clone());
    f
}

/// One group of a run: its account label (none in a Pushgateway group,
/// whose path names the account), its summary, its exit status.
pub struct Group<'a> {
    pub account: Option<&'a str>,
    pub summary: &'a Summary,
    pub exit_code: u8,
}

/// Every metric, registered once; each group adds its samples.
struct Families {
    start: Family<Labels, GaugeF>,
    end: Family<Labels, GaugeF>,
    exit_code: Family<Labels, GaugeF>,
    /// Registered only when a group succeeded: a family a push carries
    /// replaces the gateway's, so a failed run must not carry it at all.
    success: Option<Family<Labels, GaugeF>>,
    partitions: Family<Labels, GaugeF>,
    rows: Family<Labels, GaugeF>,
    bytes: Family<Labels, GaugeF>,
    not_attempted: Family<Labels, GaugeF>,
    calls: Family<Labels, GaugeF>,
    throttled: Family<Labels, GaugeF>,
    retries: Family<Labels, GaugeF>,
    checks_failed: Family<Labels, GaugeF>,
    oldest_not_final: Family<Labels, GaugeF>,
}

impl Families {
    fn register(registry: &mut Registry, any_success: bool) -> Self {
        let start = family(
            registry,
            "last_run_start_timestamp_seconds",
            "When the last run started (Unix seconds)",
        );
        let end = family(
            registry,
            "last_run_end_timestamp_seconds",
            "When the last run ended (Unix seconds)",
        );
        let exit_code = family(
            registry,
            "last_run_exit_code",
            "The last run's exit status: 0 ok, 1 partitions failed, 2 fatal, 3 checks failed, 130/143 stopped",
        );
        let success = any_success.then(|| {
            family(
                registry,
                "last_success_timestamp_seconds",
                "When a run last ended with every partition exported (exit 0 or 3), in Unix seconds; a failed run leaves it as it was",
            )
        });
        Families {
            start,
            end,
            exit_code,
            success,
            partitions: family(
                registry,
                "last_run_partitions",
                "Partitions of the last run, by table and outcome (written, skipped: already final, failed)",
            ),
            rows: family(
                registry,
                "last_run_rows",
                "Rows written by the last run, by table",
            ),
            bytes: family(
                registry,
                "last_run_bytes",
                "Bytes written by the last run, by table",
            ),
            not_attempted: family(
                registry,
                "last_run_partitions_not_attempted",
                "Partitions the last run planned but did not attempt (it stopped early)",
            ),
            calls: family(
                registry,
                "last_run_api_calls",
                "API attempts of the last run, by action and outcome: ok, or what failed the attempt (the API's error code, http_<status>, timeout, network, unreadable)",
            ),
            throttled: family(
                registry,
                "last_run_api_throttled",
                "API attempts of the last run answered with a rate-limit error, by action",
            ),
            retries: family(
                registry,
                "last_run_api_retries",
                "API attempts of the last run that were retries, by action",
            ),
            checks_failed: family(
                registry,
                "last_run_checks_failed",
                "(app, day)s whose rooms did not add up to the app's figure in the last run",
            ),
            oldest_not_final: family(
                registry,
                "last_run_oldest_not_final_day_timestamp_seconds",
                "The oldest day of the last run's range that is not final (failed, not attempted or still settling), as its 00:00 UTC in Unix seconds; 0 when every day is final",
            ),
        }
    }

    /// `group`'s samples.
    fn add(&self, group: &Group<'_>, run: &Run) {
        let set = |f: &Family<Labels, GaugeF>, labels: &[(&str, &str)], v: f64| {
            let labels: Labels = group
                .account
                .map(|a| ("account", a))
                .into_iter()
                .chain(labels.iter().copied())
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            f.get_or_create(&labels).set(v);
        };
        let s = group.summary;
        set(&self.start, &[], seconds(run.started));
        set(&self.end, &[], seconds(run.ended));
        set(&self.exit_code, &[], f64::from(group.exit_code));
        if let Some(success) = &self.success
            && is_success(group.exit_code)
        {
            set(success, &[], seconds(run.ended));
        }
        for (table, c) in &s.tables {
            let t = table.name();
            for (outcome, n) in [
                ("written", c.written),
                ("skipped", c.skipped_final),
                ("failed", c.failed),
            ] {
                set(
                    &self.partitions,
                    &[("table", t), ("outcome", outcome)],
                    n as f64,
                );
            }
            set(&self.rows, &[("table", t)], c.rows as f64);
            set(&self.bytes, &[("table", t)], c.bytes as f64);
        }
        set(
            &self.not_attempted,
            &[],
            s.partitions_not_attempted() as f64,
        );
        for (action, c) in &s.calls_by_action {
            let failed: u64 = c.errors.values().sum();
            set(
                &self.calls,
                &[("action", action), ("outcome", "ok")],
                c.calls.saturating_sub(failed) as f64,
            );
            for (code, n) in &c.errors {
                set(
                    &self.calls,
                    &[("action", action), ("outcome", code)],
                    *n as f64,
                );
            }
            set(&self.throttled, &[("action", action)], c.throttles as f64);
            set(&self.retries, &[("action", action)], c.retries as f64);
        }
        set(&self.checks_failed, &[], s.checks.failed as f64);
        set(
            &self.oldest_not_final,
            &[],
            s.oldest_not_final.map_or(0.0, day_seconds),
        );
    }
}

/// The exposition text of `groups` (one for a Pushgateway group; every
/// account, each labelled, for the textfile collector's file).
pub fn render(groups: &[Group<'_>], run: &Run) -> String {
    let mut registry = Registry::with_prefix("trtc_usage");
    let any_success = groups.iter().any(|g| is_success(g.exit_code));
    let families = Families::register(&mut registry, any_success);
    for group in groups {
        families.add(group, run);
    }
    let mut text = String::new();
    encode(&mut text, &registry).expect("writing to a String cannot fail");
    text
}

/// The account groups of a run: one per account with `--accounts`, else
/// `default`; each with its own summary.
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
/// to the Pushgateway, and the file written, each group with the exit
/// status `exit_code` gives its own summary (an account that succeeded
/// beside one that failed records its success). A failure is one warning
/// line each and changes nothing else.
pub async fn report(
    summary: &Summary,
    run: &Run,
    exit_code: impl Fn(&Summary) -> u8,
    pushgateway: Option<&url::Url>,
    metrics_file: Option<&std::path::Path>,
) {
    let groups: Vec<(&str, &Summary, u8)> = groups(summary)
        .into_iter()
        .map(|(account, s)| (account, s, exit_code(s)))
        .collect();
    if let Some(url) = pushgateway {
        match reqwest::Client::builder().timeout(PUSH_TIMEOUT).build() {
            Ok(client) => {
                for &(account, summary, exit_code) in &groups {
                    let group = Group {
                        account: None,
                        summary,
                        exit_code,
                    };
                    if let Err(e) = push(&client, url, account, render(&[group], run)).await {
                        tracing::warn!("{e}");
                    }
                }
            }
            Err(e) => tracing::warn!("--pushgateway {url}: {e}"),
        }
    }
    if let Some(path) = metrics_file {
        // One account: no label, as a run without --accounts has always
        // written; several: each labelled.
        let labelled = !summary.per_account.is_empty();
        let groups: Vec<Group<'_>> = groups
            .iter()
            .map(|&(account, summary, exit_code)| Group {
                account: labelled.then_some(account),
                summary,
                exit_code,
            })
            .collect();
        if let Err(e) = write_file(path, &render(&groups, run)) {
            tracing::warn!("{e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> Run {
        let t = "2026-12-04T01:00:00Z".parse().unwrap();
        Run {
            started: t,
            ended: t + chrono::Duration::seconds(90),
        }
    }

    fn group<'a>(account: Option<&'a str>, summary: &'a Summary, exit_code: u8) -> Group<'a> {
        Group {
            account,
            summary,
            exit_code,
        }
    }

    #[test]
    fn a_failed_run_carries_no_last_success() {
        let s = Summary::new(3);
        let ok = render(&[group(None, &s, 0)], &run());
        assert!(
            ok.contains("trtc_usage_last_success_timestamp_seconds 1796346090"),
            "{ok}"
        );
        assert!(ok.contains("trtc_usage_last_run_exit_code 0"), "{ok}");
        let failed = render(&[group(None, &s, 1)], &run());
        assert!(!failed.contains("last_success"), "{failed}");
        assert!(
            failed.contains("trtc_usage_last_run_partitions_not_attempted 3"),
            "{failed}"
        );
    }

    /// Several accounts in one file: each metric named once, each account
    /// labelled, with its own exit status; the last success only for the
    /// account that succeeded.
    #[test]
    fn several_accounts_in_one_file_name_each_once() {
        let s = Summary::new(1);
        let text = render(&[group(Some("a"), &s, 0), group(Some("b"), &s, 2)], &run());
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
        assert!(
            text.contains("trtc_usage_last_success_timestamp_seconds{account=\"a\"}"),
            "{text}"
        );
        assert!(
            !text.contains("trtc_usage_last_success_timestamp_seconds{account=\"b\"}"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
