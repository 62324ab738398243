//! What a run did and how it ended: the partition it worked on, the
//! failures, the counters; printed at the end and written to
//! `--summary-file`. Shared by the jobs and the progress display, below both.

use chrono::NaiveDate;
use serde::Serialize;

use crate::jobs::partition::Written;
use crate::tencent::pacing::CallStats;

/// One (app, day) partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
    /// A fatal error stopped the run.
    Fatal,
    /// A stop was requested.
    Interrupted,
    /// `--dry-run`: nothing was called or written.
    DryRun,
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
    #[serde(flatten)]
    pub calls: CallStats,
    pub elapsed_secs: f64,
    pub fatal_error: Option<String>,
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
            calls: CallStats::default(),
            elapsed_secs: 0.0,
            fatal_error: None,
        }
    }

    /// Counts a partition written.
    pub(crate) fn wrote(&mut self, w: Written) {
        self.written += 1;
        self.rows += w.rows;
        self.bytes += w.bytes;
    }

    pub(crate) fn fail(&mut self, p: Partition, error: String) {
        self.failed.push(Failure {
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

    /// The one-line human form.
    pub fn line(&self) -> String {
        let mut s = format!(
            "trtc-usage: {status}: {w} written, {s} skipped (final), {f} failed",
            status = match self.status {
                Status::Ok => "ok",
                Status::PartitionsFailed => "partitions failed",
                Status::Fatal => "fatal error",
                Status::Interrupted => "interrupted",
                Status::DryRun => "dry run",
            },
            w = self.written,
            s = self.skipped_final,
            f = self.failed.len(),
        );
        if !self.not_attempted.is_empty() {
            s.push_str(&format!(", {} not attempted", self.not_attempted.len()));
        }
        s.push_str(&format!(
            " of {planned}; {rows} rows, {bytes} bytes; {calls} calls ({retries} retries, {throttles} throttled); {elapsed:.1}s",
            planned = self.planned,
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
