//! What a run did and how it ended: the partition it worked on, the
//! failures, the counters; printed at the end and written to
//! `--summary-file`. Shared by the jobs and the progress display, below both.

use std::collections::BTreeMap;

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
    pub plan: Option<crate::jobs::export::PlanReport>,
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
