//! A partition's commit: the file and its manifest, and the log line that
//! says so, for fetched tables (`jobs::fetch`) and derived ones
//! alike; what a written partition holds; why one could not be made.

use tracing::{info, warn};

use crate::lake::manifest::Manifest;
use crate::lake::store::Destination;
use crate::lake::write::{self, CallInfo, Encoded};
use crate::tables::Table;
use crate::tables::normalize::HeaderInfo;

/// What a written partition holds.
#[derive(Debug, Clone)]
pub struct Written {
    pub table: Table,
    pub rows: u64,
    pub bytes: u64,
    /// The manifest written last.
    pub manifest: Manifest,
}

pub(crate) fn warn_header(call: &CallInfo, header: &HeaderInfo) {
    let (table, app_id, day) = (call.table, call.app_id, call.day);
    for missing in &header.missing {
        warn!(%table, app_id, usage_date = %day, column = %missing, request_id = %call.request_id, "The answer lacks a known column; writing nulls.");
    }
    for (name, column) in &header.extras {
        warn!(%table, app_id, usage_date = %day, csv_column = %name, column = %column, request_id = %call.request_id, "The answer has an unknown column; keeping it as an extra column.");
    }
}

/// Commits `encoded` as the partition `call` describes, and logs it;
/// `started` is when the answer's response began (for `process_ms`).
pub async fn commit(
    dest: &Destination,
    call: &CallInfo,
    encoded: Encoded,
    started: std::time::Instant,
    body_bytes: usize,
) -> Result<Written, String> {
    let rows = encoded.rows;
    let m = write::commit(dest, call, encoded)
        .await
        .map_err(|e| format!("writing to {}: {e}", dest.display()))?;
    let process_ms = started.elapsed().as_millis() as u64;
    match &call.check {
        // A check has no call: it names the two it compared.
        Some(c) => info!(
            table = %call.table,
            app_id = call.app_id,
            usage_date = %call.day,
            room_request_id = %c.room_request_id,
            app_request_id = %c.app_request_id,
            rows,
            bytes = m.file.size,
            failed = c.failed_series.len(),
            process_ms,
            "Wrote partition."
        ),
        None => info!(
            table = %call.table,
            app_id = call.app_id,
            usage_date = %call.day,
            request_id = %call.request_id,
            rows,
            bytes = m.file.size,
            body_bytes,
            process_ms,
            "Wrote partition."
        ),
    }
    Ok(Written {
        table: call.table,
        rows,
        bytes: m.file.size,
        manifest: m,
    })
}

/// Why a partition could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The partition's own (bad data, a failed write): the run goes on.
    Partition(String),
    /// The machine's: a spool that cannot be written (`--spool-dir` full or
    /// gone), which every later partition would meet too: the run stops.
    Run(String),
}

impl Problem {
    /// `message` about `e`, a problem of the run when `e` is a spool
    /// failure.
    pub fn of(e: &(dyn std::error::Error + 'static), message: String) -> Self {
        if crate::spool::is_spool_failure(e) {
            Problem::Run(message)
        } else {
            Problem::Partition(message)
        }
    }

    pub fn message(self) -> String {
        match self {
            Problem::Partition(m) | Problem::Run(m) => m,
        }
    }
}
