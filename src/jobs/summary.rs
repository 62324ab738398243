//! What a run did and how it ended: the partition it worked on, the
//! failures, the counters; printed at the end and written to
//! `--summary-file`. Shared by the jobs and the progress display, below both.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::NaiveDate;
use serde::Serialize;

use crate::jobs::partition::Written;
use crate::tables::Table;
use crate::tables::checks;
use crate::tencent::pacing::CallStats;

/// One (app, day) partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Partition {
    pub app_id: u64,
    pub usage_date: NaiveDate,
}

impl std::fmt::Display for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "app_id={}/usage_date={}", self.app_id, self.usage_date)
    }
}

/// A partition that failed, with why.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub table: Table,
    pub app_id: u64,
    pub usage_date: NaiveDate,
    pub error: String,
}

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every planned partition is written or already final.
    Ok,
    /// Some partitions failed; the others are written.
    PartitionsFailed,
    /// Every partition is written, but a check failed under `--checks fail`.
    ChecksFailed,
    /// A fatal error stopped the run.
    Fatal,
    /// A stop was requested.
    Interrupted,
    /// `--dry-run`: nothing was called or written.
    DryRun,
}

/// What a run did to one table.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct TableCounts {
    pub written: usize,
    pub skipped_final: usize,
    pub failed: usize,
    pub rows: u64,
    pub bytes: u64,
}

/// The checks of a run, counted by (app, day).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CheckCounts {
    pub passed: usize,
    pub failed: usize,
}

/// One series of one (app, day) whose rooms do not add up.
#[derive(Debug, Clone, Serialize)]
pub struct FailedCheck {
    pub app_id: u64,
    pub usage_date: NaiveDate,
    pub series: String,
    pub room_minutes: f64,
    pub app_minutes: f64,
    pub tolerance: f64,
}

/// One account's part of a run of several.
#[derive(Debug, Clone, Serialize)]
pub struct AccountSummary {
    pub account: String,
    pub status: Status,
    pub planned: usize,
    pub written: usize,
    pub skipped_final: usize,
    pub failed: usize,
    pub not_attempted: usize,
    pub rows: u64,
    pub bytes: u64,
    pub checks: CheckCounts,
    pub calls: u64,
    pub retries: u64,
    pub throttles: u64,
    pub elapsed_secs: f64,
    pub fatal_error: Option<String>,
    /// The account's summary line, as the total's (text output only).
    #[serde(skip)]
    pub line: String,
}

/// The worse of two statuses: what the exit code of several accounts is
/// made of (exit 2 over 1 over 3 over 0; a stop over them all).
pub fn worst(a: Status, b: Status) -> Status {
    let rank = |s: Status| match s {
        Status::DryRun => 0,
        Status::Ok => 1,
        Status::ChecksFailed => 2,
        Status::PartitionsFailed => 3,
        Status::Fatal => 4,
        Status::Interrupted => 5,
    };
    if rank(b) > rank(a) { b } else { a }
}

fn status_word(status: Status) -> &'static str {
    match status {
        Status::Ok => "ok",
        Status::PartitionsFailed => "partitions failed",
        Status::ChecksFailed => "checks failed",
        Status::Fatal => "fatal error",
        Status::Interrupted => "interrupted",
        Status::DryRun => "dry run",
    }
}

/// What a run did; printed at the end, and written to `--summary-file`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub status: Status,
    pub planned: usize,
    pub written: usize,
    pub skipped_final: usize,
    pub failed: Vec<Failure>,
    /// Partitions not attempted because the run stopped early.
    pub not_attempted: Vec<Partition>,
    pub rows: u64,
    pub bytes: u64,
    /// The same counts per table.
    pub tables: BTreeMap<Table, TableCounts>,
    /// The (app, day)s whose rooms were checked against the app's figure.
    pub checks: CheckCounts,
    /// Every failing series of those checks.
    pub failed_checks: Vec<FailedCheck>,
    #[serde(flatten)]
    pub calls: CallStats,
    pub elapsed_secs: f64,
    pub fatal_error: Option<String>,
    /// `--dry-run`: what a run would do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanReport>,
    /// With `--accounts`: each account's own counts (the fields above are
    /// their sums, and the worst status).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<AccountSummary>,
    /// Steps of the run done (an (app, day) in export, a partition in
    /// rebuild), for the progress display.
    #[serde(skip)]
    pub steps_done: usize,
    /// The calls by API action (`DescribeTrtcRoomUsage`, …), for metrics.
    #[serde(skip)]
    pub calls_by_action: BTreeMap<String, CallStats>,
    /// The oldest day of the run's range that is not final after it (a
    /// partition failed, not attempted, or still settling), for metrics.
    #[serde(skip)]
    pub oldest_not_final: Option<NaiveDate>,
    /// With several accounts: each one's own summary, for its metrics.
    #[serde(skip)]
    pub per_account: Vec<(String, Summary)>,
}

impl Summary {
    pub(crate) fn new(planned: usize) -> Self {
        Self {
            status: Status::Ok,
            planned,
            written: 0,
            skipped_final: 0,
            failed: Vec::new(),
            not_attempted: Vec::new(),
            rows: 0,
            bytes: 0,
            tables: BTreeMap::new(),
            checks: CheckCounts::default(),
            failed_checks: Vec::new(),
            calls: CallStats::default(),
            elapsed_secs: 0.0,
            fatal_error: None,
            steps_done: 0,
            plan: None,
            accounts: Vec::new(),
            calls_by_action: BTreeMap::new(),
            oldest_not_final: None,
            per_account: Vec::new(),
        }
    }

    /// Planned partitions neither written, skipped nor failed: in
    /// partitions, as "of N partitions" is (`not_attempted` lists (app,
    /// day)s).
    pub fn partitions_not_attempted(&self) -> usize {
        self.planned
            .saturating_sub(self.written + self.skipped_final + self.failed.len())
    }

    /// Counts `stats` as calls of `action` too.
    pub(crate) fn action_calls(&mut self, action: &str, stats: &CallStats) {
        self.calls.add(stats);
        self.calls_by_action
            .entry(action.to_owned())
            .or_default()
            .add(stats);
    }

    /// The summary of a run of several accounts, side by side: each one's
    /// counts, their sums, and the worst status of all (a fatal error or a
    /// stop over failed partitions, those over failed checks).
    pub(crate) fn of_accounts(runs: Vec<(String, Summary)>) -> Summary {
        let mut all = Summary::new(0);
        // The least of statuses: every account's dry run is the run's.
        all.status = Status::DryRun;
        for (name, s) in runs {
            all.status = worst(all.status, s.status);
            all.planned += s.planned;
            all.written += s.written;
            all.skipped_final += s.skipped_final;
            all.failed.extend(s.failed.iter().cloned());
            all.not_attempted.extend(s.not_attempted.iter().copied());
            all.rows += s.rows;
            all.bytes += s.bytes;
            for (table, c) in &s.tables {
                let t = all.tables.entry(*table).or_default();
                t.written += c.written;
                t.skipped_final += c.skipped_final;
                t.failed += c.failed;
                t.rows += c.rows;
                t.bytes += c.bytes;
            }
            all.checks.passed += s.checks.passed;
            all.checks.failed += s.checks.failed;
            all.failed_checks.extend(s.failed_checks.iter().cloned());
            all.calls.add(&s.calls);
            for (action, stats) in &s.calls_by_action {
                all.calls_by_action
                    .entry(action.clone())
                    .or_default()
                    .add(stats);
            }
            all.oldest_not_final = match (all.oldest_not_final, s.oldest_not_final) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            all.elapsed_secs = all.elapsed_secs.max(s.elapsed_secs);
            if all.fatal_error.is_none() {
                all.fatal_error = s
                    .fatal_error
                    .as_ref()
                    .map(|e| format!("account '{name}': {e}"));
            }
            all.steps_done += s.steps_done;
            all.plan = match (all.plan.take(), s.plan.clone()) {
                (Some(a), Some(b)) => Some(a.merge(b)),
                (a, b) => a.or(b),
            };
            all.accounts.push(AccountSummary {
                line: s.line_of(&format!("trtc-usage [account {name}]")),
                account: name.clone(),
                status: s.status,
                planned: s.planned,
                written: s.written,
                skipped_final: s.skipped_final,
                failed: s.failed.len(),
                not_attempted: s.not_attempted.len(),
                rows: s.rows,
                bytes: s.bytes,
                checks: s.checks,
                calls: s.calls.calls,
                retries: s.calls.retries,
                throttles: s.calls.throttles,
                elapsed_secs: s.elapsed_secs,
                fatal_error: s.fatal_error.clone(),
            });
            all.per_account.push((name, s));
        }
        all
    }

    /// Counts a partition written.
    pub(crate) fn wrote(&mut self, w: &Written) {
        self.written += 1;
        self.rows += w.rows;
        self.bytes += w.bytes;
        let t = self.tables.entry(w.table).or_default();
        t.written += 1;
        t.rows += w.rows;
        t.bytes += w.bytes;
    }

    /// Counts partitions of `table` skipped as final.
    pub(crate) fn skipped(&mut self, table: Table, n: usize) {
        self.skipped_final += n;
        self.tables.entry(table).or_default().skipped_final += n;
    }

    /// Counts one (app, day)'s check.
    pub(crate) fn checked(&mut self, p: Partition, outcome: &checks::Outcome) {
        let failed: Vec<FailedCheck> = outcome
            .failed()
            .map(|r| FailedCheck {
                app_id: p.app_id,
                usage_date: p.usage_date,
                series: r.series.clone(),
                room_minutes: r.room_minutes,
                app_minutes: r.app_minutes,
                tolerance: r.tolerance,
            })
            .collect();
        if failed.is_empty() {
            self.checks.passed += 1;
        } else {
            self.checks.failed += 1;
            self.failed_checks.extend(failed);
        }
    }

    pub(crate) fn fail(&mut self, table: Table, p: Partition, error: String) {
        self.tables.entry(table).or_default().failed += 1;
        self.failed.push(Failure {
            table,
            app_id: p.app_id,
            usage_date: p.usage_date,
            error,
        });
    }

    /// Ends the run early: nothing in `left` was attempted.
    pub(crate) fn stop(
        &mut self,
        status: Status,
        error: Option<String>,
        left: impl IntoIterator<Item = Partition>,
    ) {
        self.status = status;
        self.fatal_error = error;
        self.not_attempted.extend(left);
    }

    /// The human form: one line, and with several accounts one more per
    /// account before it.
    pub fn line(&self) -> String {
        let mut out = String::new();
        for a in &self.accounts {
            out.push_str(&a.line);
            out.push('\n');
        }
        out.push_str(&self.line_of("trtc-usage"));
        match self.accounts.len() {
            0 => {}
            1 => out.push_str(" (1 account)"),
            n => out.push_str(&format!(" ({n} accounts)")),
        }
        out
    }

    /// The one line of this summary's counts, after `who`.
    fn line_of(&self, who: &str) -> String {
        let mut s = format!(
            "{who}: {status}: {w} written, {s} skipped (final), {f} failed",
            status = status_word(self.status),
            w = self.written,
            s = self.skipped_final,
            f = self.failed.len(),
        );
        let not_attempted = self.partitions_not_attempted();
        if not_attempted > 0 && self.status != Status::DryRun {
            s.push_str(&format!(", {not_attempted} not attempted"));
        }
        s.push_str(&format!(" of {} partitions", self.planned));
        if self.checks.passed + self.checks.failed > 0 {
            s.push_str(&format!(
                "; checks {} passed, {} failed",
                self.checks.passed, self.checks.failed
            ));
        }
        s.push_str(&format!(
            "; {rows} rows, {bytes} bytes; {calls} calls ({retries} retries, {throttles} throttled); {elapsed:.1}s",
            rows = self.rows,
            bytes = self.bytes,
            calls = self.calls.calls,
            retries = self.calls.retries,
            throttles = self.calls.throttles,
            elapsed = self.elapsed_secs,
        ));
        s
    }
}

/// Releases `lease`; a run that lost it mid-way ends as a fatal error.
pub(crate) async fn end_lease(lease: crate::lake::lease::Lease, mut summary: Summary) -> Summary {
    if let Some(why) = lease.lost() {
        summary.status = Status::Fatal;
        summary.fatal_error = Some(why);
    }
    lease.release().await;
    summary
}

/// The run's final status: failed partitions (exit 1) win over failed
/// checks under `--checks fail` (exit 3).
pub(crate) fn end_status(fail_on_checks: bool, mut summary: Summary) -> Summary {
    if summary.status == Status::Ok && !summary.failed.is_empty() {
        summary.status = Status::PartitionsFailed;
    }
    if summary.status == Status::Ok && fail_on_checks && summary.checks.failed > 0 {
        summary.status = Status::ChecksFailed;
    }
    summary
}

/// What a dry run shows: every partition and what a run would do with it,
/// the calls per API and the wall time they take. On stdout: as text lines
/// before the summary, or inside the one JSON summary under `--log-format
/// json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlanReport {
    pub dest: String,
    pub apps: usize,
    pub days: usize,
    pub tables: Vec<Table>,
    pub partitions: Vec<PlannedPartition>,
    /// Each API's calls, as `<table>_calls` with the table's `_usage` left
    /// out (`room_calls`, `app_calls`, `recording_calls`, …).
    #[serde(flatten)]
    pub calls: BTreeMap<String, usize>,
    /// Each API's interval, as `<table>_interval_ms` likewise.
    #[serde(flatten)]
    pub intervals_ms: BTreeMap<String, u64>,
    /// The slowest API's wall time (`(calls − 1) × interval`): the APIs
    /// are called side by side, the others inside its waits. Retries come
    /// on top.
    pub estimated_secs: u64,
    /// Each API's calls for the text form: the action, its calls, its
    /// interval, the table's short name.
    #[serde(skip)]
    pub apis: Vec<(&'static str, usize, u64, String)>,
    /// Whether the lake's manifests were read to find final partitions
    /// (not on S3: a dry run makes no request).
    pub finality_checked: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PlannedPartition {
    pub table: Table,
    pub app_id: u64,
    pub usage_date: chrono::NaiveDate,
    /// `fetch`, `skip` (final), `repair` (final, but its file does not match
    /// its manifest), `check` (recomputed from final inputs, no call).
    pub action: &'static str,
}

impl PlanReport {
    /// Two accounts' plans as one: their partitions and calls; the time
    /// of the longer, since accounts run side by side.
    pub fn merge(mut self, other: PlanReport) -> PlanReport {
        self.apps += other.apps;
        self.partitions.extend(other.partitions);
        for (k, n) in other.calls {
            *self.calls.entry(k).or_default() += n;
        }
        for (mine, theirs) in self.apis.iter_mut().zip(other.apis) {
            mine.1 += theirs.1;
        }
        self.estimated_secs = self.estimated_secs.max(other.estimated_secs);
        self.finality_checked &= other.finality_checked;
        self
    }

    /// The text form, one line per partition.
    pub fn render(&self) -> String {
        let tables: Vec<&str> = self.tables.iter().map(|t| t.name()).collect();
        let mut out = format!(
            "Plan: {} app(s) × {} day(s) × {} table(s) ({}) into {}\n",
            self.apps,
            self.days,
            self.tables.len(),
            tables.join(", "),
            self.dest
        );
        for p in &self.partitions {
            let why = match p.action {
                "skip" => "  (final)",
                "repair" => {
                    "  (final, but its file does not match its manifest: from the raw zone, else fetched)"
                }
                _ => "",
            };
            out.push_str(&format!(
                "  {:<6} {}/app_id={}/usage_date={}{why}\n",
                p.action, p.table, p.app_id, p.usage_date
            ));
        }
        if !self.finality_checked {
            out.push_str("  (final partitions are not looked up on S3 in a dry run, which makes no request; a real run skips them)\n");
        }
        let fmt = |ms: u64| humantime::format_duration(Duration::from_millis(ms)).to_string();
        let each: Vec<String> = self
            .apis
            .iter()
            .map(|(action, n, ms, _)| format!("{n} {action} call(s) at one per {}", fmt(*ms)))
            .collect();
        // The others are made while the slowest API's calls wait.
        let slowest = self
            .apis
            .iter()
            .max_by_key(|(_, n, ms, _)| (n.saturating_sub(1) as u64).saturating_mul(*ms));
        let inside = match slowest {
            Some((_, _, _, short)) if self.apis.len() > 1 => {
                format!(" (made while the {short} calls wait)")
            }
            _ => String::new(),
        };
        out.push_str(&format!(
            "{}{inside}: about {} (plus retries).\n",
            each.join(" and "),
            humantime::format_duration(Duration::from_secs(self.estimated_secs))
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 35: accounts' dry runs are the run's dry run (the total said
    /// "ok"), and one account is "1 account".
    #[test]
    fn a_dry_run_of_accounts_is_a_dry_run_and_one_account_is_singular() {
        let dry = || {
            let mut s = Summary::new(3);
            s.status = Status::DryRun;
            s
        };
        let all = Summary::of_accounts(vec![("a".into(), dry()), ("b".into(), dry())]);
        assert_eq!(all.status, Status::DryRun);
        let line = all.line();
        assert!(line.lines().all(|l| l.contains(": dry run:")), "{line}");
        assert!(line.ends_with("(2 accounts)"), "{line}");
        let one = Summary::of_accounts(vec![("a".into(), dry())]);
        assert!(one.line().ends_with("(1 account)"), "{}", one.line());
        let mut ok = Summary::new(3);
        ok.status = Status::Ok;
        let mixed = Summary::of_accounts(vec![("a".into(), ok), ("b".into(), dry())]);
        assert_eq!(mixed.status, Status::Ok);
    }
}
