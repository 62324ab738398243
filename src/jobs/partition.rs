//! One answer → one partition: normalize the room CSV, encode Parquet on
//! blocking threads, commit the file and its manifest. `export` feeds it
//! fresh answers, `rebuild` answers read back from the raw zone; both take
//! this one path, which is why a rebuilt file is the exported file to the
//! byte.

use tracing::{info, warn};

use crate::lake::store::Destination;
use crate::lake::write::{self, CallInfo};
use crate::tables::normalize::SchemaContract;
use crate::tencent::api::RoomUsage;

/// What a written partition holds.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    pub rows: u64,
    pub bytes: u64,
}

/// Writes `usage` as the partition `call` describes. The error is one line
/// naming the RequestId (bad data) or the destination (a failed write).
pub async fn write_room_usage(
    dest: &Destination,
    contract: SchemaContract,
    batch_rows: usize,
    usage: RoomUsage,
    call: &CallInfo,
) -> Result<Written, String> {
    let response_at = usage.response_at;
    let body_bytes = usage.body_bytes;
    let encoded = tokio::task::spawn_blocking(move || {
        write::encode(
            usage.csv(),
            contract,
            &usage.request_id,
            usage.fetched_at,
            batch_rows,
        )
    })
    .await
    .expect("the encoder does not panic")
    .map_err(|e| format!("RequestId {}: {e}", call.request_id))?;
    let (app_id, day) = (call.app_id, call.day);
    for missing in &encoded.header.missing {
        warn!(app_id, usage_date = %day, column = %missing, request_id = %call.request_id, "The CSV lacks a known column; writing nulls.");
    }
    for (csv_name, column) in &encoded.header.extras {
        warn!(app_id, usage_date = %day, csv_column = %csv_name, column = %column, request_id = %call.request_id, "The CSV has an unknown column; keeping it as an extra column.");
    }
    let rows = encoded.rows;
    let m = write::commit(dest, call, encoded)
        .await
        .map_err(|e| format!("writing to {}: {e}", dest.display()))?;
    info!(
        table = %call.table,
        app_id,
        usage_date = %day,
        request_id = %call.request_id,
        rows,
        bytes = m.file.size,
        body_bytes,
        process_ms = response_at.elapsed().as_millis() as u64,
        "Wrote partition."
    );
    Ok(Written {
        rows,
        bytes: m.file.size,
    })
}
