//! The shape every usage API but the room one answers in (`DescribeTrtcUsage`,
//! `DescribeRecordingUsage`, `DescribeMixTranscodingUsage`,
//! `DescribeRelayUsage`): `UsageKey` names the series, and each bucket of
//! `UsageList` has one `UsageValue` per key. Plain data, parsed by
//! `tencent::usage` and turned into rows by the tables that read it.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// One bucket as the API gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    /// `YYYY-MM-DD HH:MM:SS` in the API's clock.
    pub time_key: String,
    /// Unix seconds, when the API gave them.
    pub time_stamp_key: Option<i64>,
    /// One value per `UsageKey`; a value that is not a number is NaN here,
    /// so the table rejects it naming the bucket.
    pub values: Vec<f64>,
}

/// One answer's series and buckets, with the answer's RequestId and when it
/// arrived (what every row records).
#[derive(Debug, Clone, PartialEq)]
pub struct UsageList {
    pub request_id: String,
    pub fetched_at: DateTime<Utc>,
    /// The series, in the API's spelling (`Audio`, `SD`, …), byte for byte.
    pub usage_key: Vec<String>,
    pub buckets: Vec<Bucket>,
}

/// Why a bucket's time cannot be read.
pub type TimeError = String;

/// A bucket's start in UTC: `TimeStampKey`, else `TimeKey` in the API's clock.
pub fn bucket_start(
    time_key: &str,
    time_stamp_key: Option<i64>,
    offset: FixedOffset,
) -> Result<DateTime<Utc>, TimeError> {
    if let Some(ts) = time_stamp_key {
        return DateTime::from_timestamp(ts, 0)
            .ok_or_else(|| format!("TimeStampKey {ts} is not a time"));
    }
    let local = NaiveDateTime::parse_from_str(time_key.trim(), "%Y-%m-%d %H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(time_key.trim(), "%Y-%m-%d %H:%M"))
        .map_err(|_| {
            "TimeKey is not YYYY-MM-DD HH:MM:SS and there is no TimeStampKey".to_owned()
        })?;
    offset
        .from_local_datetime(&local)
        .single()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| "TimeKey is not a time in the API's clock".to_owned())
}

/// Day `day`'s bounds in UTC, the day being in the API's clock `offset`.
pub fn day_bounds(day: NaiveDate, offset: FixedOffset) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = offset
        .from_local_datetime(&day.and_hms_opt(0, 0, 0).expect("midnight"))
        .single()
        .expect("a fixed offset has one midnight")
        .with_timezone(&Utc);
    (start, start + chrono::Duration::days(1))
}
