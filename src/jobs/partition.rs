//! One answer → one partition: normalize it (the room CSV on blocking
//! threads, the app's buckets inline), encode Parquet, commit the file and
//! its manifest (derived partitions are committed through [`commit`] too).
//! `export` feeds it fresh answers, `rebuild` answers read back from the raw
//! zone; both take this one path, which is why a rebuilt file is the
//! exported file to the byte.

use chrono::FixedOffset;
use tracing::{info, warn};

use crate::lake::manifest::Manifest;
use crate::lake::store::Destination;
use crate::lake::upload::Output;
use crate::lake::write::{self, CallInfo, Encoded, Encoding};
use crate::tables::normalize::{HeaderInfo, SchemaContract};
use crate::tables::{Table, app_usage};
use crate::tencent::api::RoomUsage;
use crate::tencent::app_usage::AppUsage;
use crate::tencent::pacing::Answer;

/// What a written partition holds.
#[derive(Debug, Clone)]
pub struct Written {
    pub table: Table,
    pub rows: u64,
    pub bytes: u64,
    /// The manifest written last.
    pub manifest: Manifest,
}

fn warn_header(call: &CallInfo, header: &HeaderInfo) {
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

/// What the manifest of `table`'s partition `p` records of `answer`, a
/// response to a request for the window `(start_time, end_time)` whose
/// body's SHA-256 is `sha256` (hex).
pub fn call_info(
    table: Table,
    p: crate::jobs::summary::Partition,
    answer: &impl Answer,
    (start_time, end_time): (&str, &str),
    utc_offset: String,
    raw_object: Option<String>,
    sha256: String,
) -> CallInfo {
    CallInfo {
        table,
        app_id: p.app_id,
        day: p.usage_date,
        request_id: answer.request_id().to_owned(),
        fetched_at: answer.fetched_at(),
        start_time: start_time.to_owned(),
        end_time: end_time.to_owned(),
        utc_offset,
        body: Some(crate::lake::manifest::BodyInfo {
            bytes: answer.body_bytes() as u64,
            sha256,
        }),
        raw_object,
        check: None,
        derived: None,
    }
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

/// Encodes `usage` as the `app_usage` partition `call` describes, `offset`
/// being the API's clock. The error is one line naming the RequestId and,
/// for bad data, the bucket.
pub fn encode_app_usage(
    contract: SchemaContract,
    offset: FixedOffset,
    usage: &AppUsage,
    call: &CallInfo,
) -> Result<Encoded, Problem> {
    let n = app_usage::normalize(usage, call.day, offset, contract)
        .map_err(|e| Problem::Partition(format!("RequestId {}: {e}", call.request_id)))?;
    warn_header(call, &n.header);
    write::encode_batch(&n.batch, n.header, n.totals)
        .map_err(|e| Problem::of(&e, format!("RequestId {}: {e}", call.request_id)))
}

/// Writes `usage` as the `app_usage` partition `call` describes.
pub async fn write_app_usage(
    dest: &Destination,
    contract: SchemaContract,
    offset: FixedOffset,
    usage: AppUsage,
    call: &CallInfo,
) -> Result<Written, String> {
    let encoded = encode_app_usage(contract, offset, &usage, call).map_err(Problem::message)?;
    commit(dest, call, encoded, usage.response_at, usage.body_bytes).await
}

/// Encodes `usage` as the `room_usage` partition `call` describes, on
/// blocking threads (the CSV is read from the spooled body), for `dest`
/// (on S3 the file goes up in parts while it is encoded). The error is
/// one line naming the RequestId and, for bad data, the line and column.
pub async fn encode_room_usage(
    dest: &Destination,
    contract: SchemaContract,
    encoding: &Encoding,
    usage: &RoomUsage,
    call: &CallInfo,
) -> Result<Encoded, Problem> {
    let csv = usage.csv();
    let request_id = usage.request_id.clone();
    let fetched_at = usage.fetched_at;
    let encoding = encoding.clone();
    let out = Output::for_path(
        dest,
        &dest.part_path(call.table, call.app_id, call.day),
        &encoding.outputs,
    );
    let encoded = tokio::task::spawn_blocking(move || {
        write::encode(csv, contract, &request_id, fetched_at, &encoding, out)
    })
    .await
    .expect("the encoder does not panic")
    .map_err(|e| Problem::of(&e, format!("RequestId {}: {e}", call.request_id)))?;
    // The CSV reader names the line and column of a problem in `Data`'s
    // text when it meets it; should it not, the scan's verdict still holds.
    if let Some(problem) = &usage.data_problem {
        return Err(Problem::Partition(format!(
            "RequestId {}: Response.Data is not valid JSON text: {problem}",
            call.request_id
        )));
    }
    warn_header(call, &encoded.header);
    Ok(encoded)
}

/// Writes `usage` as the partition `call` describes. The error is one line
/// naming the RequestId (bad data) or the destination (a failed write).
pub async fn write_room_usage(
    dest: &Destination,
    contract: SchemaContract,
    encoding: &Encoding,
    usage: RoomUsage,
    call: &CallInfo,
) -> Result<Written, String> {
    let encoded = encode_room_usage(dest, contract, encoding, &usage, call)
        .await
        .map_err(Problem::message)?;
    commit(dest, call, encoded, usage.response_at, usage.body_bytes).await
}
