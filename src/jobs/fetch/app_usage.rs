//! `app_usage`: the app's minutes per 5-minute bucket, from
//! `DescribeTrtcUsage` (small: normalized and encoded inline).

use chrono::{DateTime, Utc};

use crate::jobs::fetch::{Context, FetchedTable, Labelled};
use crate::jobs::partition::{Problem, warn_header};
use crate::jobs::summary::Partition;
use crate::lake::write::{self, CallInfo, Encoded};
use crate::spool::Spooled;
use crate::tables::{self, Table};
use crate::tencent::api::ApiError;
use crate::tencent::app_usage::{self, ACTION};
use crate::tencent::usage::{DayRequest, Usage};

/// The `app_usage` table.
pub struct AppUsage;

impl FetchedTable for AppUsage {
    type Request = DayRequest;

    fn table(&self) -> Table {
        Table::APP_USAGE
    }

    fn action(&self) -> &'static str {
        ACTION
    }

    fn denial_stops_run(&self) -> bool {
        true
    }

    /// `StartTime = EndTime = D`, which the API answers in 5-minute buckets.
    fn requests(&self, p: Partition) -> Vec<DayRequest> {
        vec![app_usage::request(p.app_id, p.usage_date)]
    }

    async fn read_raw(
        &self,
        body: Spooled,
        fetched_at: DateTime<Utc>,
        origin: String,
    ) -> Result<Usage, ApiError> {
        crate::jobs::fetch::meter::read_raw(body, fetched_at, origin)
    }

    /// The error is one line naming the RequestId and, for bad data, the
    /// bucket.
    async fn encode<'a>(
        &'a self,
        cx: &'a Context<'a>,
        answers: &'a [Labelled<Usage>],
        call: &'a CallInfo,
    ) -> Result<Encoded, Problem> {
        let usage = &answers[0].1.list;
        let n = tables::app_usage::normalize(usage, call.day, cx.offset, cx.contract)
            .map_err(|e| Problem::Partition(format!("RequestId {}: {e}", call.request_id)))?;
        warn_header(call, &n.header);
        write::encode_batch(&n.batch, n.header, n.totals)
            .map_err(|e| Problem::of(&e, format!("RequestId {}: {e}", call.request_id)))
    }
}
