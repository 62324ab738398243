//! `room_usage`: seconds per room and day, from `DescribeTrtcRoomUsage`'s
//! CSV, read from the spooled body and encoded on blocking threads (on S3
//! the file goes up in parts while it is encoded).

use chrono::{DateTime, Utc};

use crate::jobs::fetch::{Context, FetchedTable, Labelled, Limit};
use crate::jobs::partition::{Problem, warn_header};
use crate::jobs::summary::Partition;
use crate::lake::upload::Output;
use crate::lake::write::{self, CallInfo, Encoded};
use crate::spool::Spooled;
use crate::tables::Table;
use crate::tencent::api::ApiError;
use crate::tencent::room_usage::{self as api, RoomUsageRequest};

/// The `room_usage` table.
pub struct RoomUsage;

impl FetchedTable for RoomUsage {
    type Request = RoomUsageRequest;

    fn table(&self) -> Table {
        Table::ROOM_USAGE
    }

    fn action(&self) -> &'static str {
        api::ACTION
    }

    fn limit(&self) -> Limit {
        Limit::MinInterval
    }

    fn denial_stops_run(&self) -> bool {
        true
    }

    /// One whole day: `D 00:00` to `D 23:59`.
    fn requests(&self, p: Partition) -> Vec<RoomUsageRequest> {
        vec![RoomUsageRequest {
            sdk_app_id: p.app_id,
            start_time: format!("{} 00:00", p.usage_date),
            end_time: format!("{} 23:59", p.usage_date),
        }]
    }

    async fn read_raw(
        &self,
        body: Spooled,
        fetched_at: DateTime<Utc>,
        origin: String,
    ) -> Result<api::RoomUsage, ApiError> {
        tokio::task::spawn_blocking(move || api::RoomUsage::from_spooled(body, fetched_at, &origin))
            .await
            .expect("the scan does not panic")
    }

    /// The CSV normalized and encoded on blocking threads. The error is
    /// one line naming the RequestId and, for bad data, the line and
    /// column.
    async fn encode<'a>(
        &'a self,
        cx: &'a Context<'a>,
        answers: &'a [Labelled<api::RoomUsage>],
        call: &'a CallInfo,
    ) -> Result<Encoded, Problem> {
        let usage = &answers[0].1;
        let csv = usage.csv();
        let request_id = usage.request_id.clone();
        let fetched_at = usage.fetched_at;
        let encoding = cx.encoding.clone();
        let contract = cx.contract;
        let dest = cx.dest;
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
        // text when it meets it; should it not, the scan's verdict still
        // holds.
        if let Some(problem) = &usage.data_problem {
            return Err(Problem::Partition(format!(
                "RequestId {}: Response.Data is not valid JSON text: {problem}",
                call.request_id
            )));
        }
        warn_header(call, &encoded.header);
        Ok(encoded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_asks_for_its_whole_day() {
        let day = "2026-11-20".parse().unwrap();
        let r = &RoomUsage.requests(Partition {
            app_id: 1400000001,
            usage_date: day,
        })[0];
        assert_eq!(r.start_time, "2026-11-20 00:00");
        assert_eq!(r.end_time, "2026-11-20 23:59");
        assert_eq!(r.sdk_app_id, 1400000001);
    }
}
