//! The meters of the `UsageKey`/`UsageList` shape (`recording_usage`,
//! `transcoding_usage`, `relay_usage`): all alike but for their table,
//! their API and their calls, so one [`Meter`] value each, in a module of
//! its own, and the long rows of [`crate::tables::meter`].

use chrono::{DateTime, Utc};

use crate::jobs::fetch::{Context, FetchedTable, Labelled};
use crate::jobs::partition::{Problem, warn_header};
use crate::jobs::summary::Partition;
use crate::lake::write::{self, CallInfo, Encoded};
use crate::spool::Spooled;
use crate::tables::buckets::UsageList;
use crate::tables::{Table, meter};
use crate::tencent::api::ApiError;
use crate::tencent::usage::{DayRequest, Usage};

/// A meter: its table, its API, and the calls of one partition.
pub struct Meter {
    pub table: Table,
    pub action: &'static str,
    /// The labels of a partition's calls, in order: `[""]` for one call,
    /// else the rows' `mix_type` of each.
    pub labels: &'static [&'static str],
    /// The request of call `label` of partition `p`.
    pub request: fn(Partition, &'static str) -> DayRequest,
}

impl FetchedTable for Meter {
    type Request = DayRequest;

    fn table(&self) -> Table {
        self.table
    }

    fn action(&self) -> &'static str {
        self.action
    }

    fn labels(&self) -> &'static [&'static str] {
        self.labels
    }

    fn requests(&self, p: Partition) -> Vec<DayRequest> {
        self.labels.iter().map(|l| (self.request)(p, l)).collect()
    }

    async fn read_raw(
        &self,
        body: Spooled,
        fetched_at: DateTime<Utc>,
        origin: String,
    ) -> Result<Usage, ApiError> {
        read_raw(body, fetched_at, origin)
    }

    /// A bad bucket fails the partition naming the RequestId (of the call
    /// it is in), the bucket and the key.
    async fn encode<'a>(
        &'a self,
        cx: &'a Context<'a>,
        answers: &'a [Labelled<Usage>],
        call: &'a CallInfo,
    ) -> Result<Encoded, Problem> {
        // Each answer alone first, so a problem names the call it is in.
        for (label, a) in answers {
            let one = [(*label, &a.list)];
            meter::normalize(&one, call.day, cx.offset)
                .map_err(|e| Problem::Partition(format!("RequestId {}: {e}", a.list.request_id)))?;
        }
        let lists: Vec<(&str, &UsageList)> =
            answers.iter().map(|(label, a)| (*label, &a.list)).collect();
        let n = meter::normalize(&lists, call.day, cx.offset)
            .map_err(|e| Problem::Partition(format!("RequestId {}: {e}", call.request_id)))?;
        warn_header(call, &n.header);
        write::encode_batch(&n.batch, n.header, n.totals)
            .map_err(|e| Problem::of(&e, format!("RequestId {}: {e}", call.request_id)))
    }
}

/// An answer of the usage shape kept in the raw zone, read back (`origin`
/// names the object). `app_usage`'s too.
pub fn read_raw(
    body: Spooled,
    fetched_at: DateTime<Utc>,
    origin: String,
) -> Result<Usage, ApiError> {
    let body = body.to_vec().map_err(|e| ApiError::Body {
        endpoint: origin.clone(),
        reason: format!("reading it back: {e}"),
        request_id: None,
    })?;
    Usage::from_body(body, fetched_at, &origin)
}
