//! The other TRTC meters (`recording_usage`, `transcoding_usage`,
//! `relay_usage`): one row per 5-minute bucket and `UsageKey`, long,
//! because Tencent does not document these APIs' keys (`docs/lake.md`,
//! "The other meters").
//!
//! A bucket outside the day, a `UsageValue` list whose length differs from
//! `UsageKey`'s, a key given twice, a bucket given twice, or a negative or
//! non-finite value fails the partition naming the bucket and key; a day
//! with no usage is a partition with no rows.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use chrono::{DateTime, FixedOffset, NaiveDate, Utc};

use crate::tables::Table;
use crate::tables::buckets::{self, UsageList};
use crate::tables::normalize::HeaderInfo;
use crate::tables::schema::{self, FETCHED_AT, REQUEST_ID};

/// A meter table, as the tables and the price list know it.
#[derive(Debug, Clone, Copy)]
pub struct MeterTable {
    pub table: Table,
    /// The call labels its rows carry as `mix_type` (none: no column).
    pub mix_types: &'static [&'static str],
    /// What it meters, in words (`ChargeDescription`).
    pub what: &'static str,
}

/// `recording_usage`: cloud recording, asked once per `MixType`.
pub const RECORDING_USAGE: MeterTable = MeterTable {
    table: Table::fetched("recording_usage", || file_schema(true)),
    mix_types: &["single", "multi"],
    what: "cloud recording",
};
/// `transcoding_usage`: On-Cloud MixTranscoding.
pub const TRANSCODING_USAGE: MeterTable = MeterTable {
    table: Table::fetched("transcoding_usage", || file_schema(false)),
    mix_types: &[],
    what: "On-Cloud MixTranscoding",
};
/// `relay_usage`: relay to CDN.
pub const RELAY_USAGE: MeterTable = MeterTable {
    table: Table::fetched("relay_usage", || file_schema(false)),
    mix_types: &[],
    what: "relay to CDN",
};

/// Every meter table: a new meter is one line here (and its module in
/// `jobs::fetch`); `cost` prices whichever of them a day has.
pub const METERS: [MeterTable; 3] = [RECORDING_USAGE, TRANSCODING_USAGE, RELAY_USAGE];

/// The meter tables, as tables.
pub const TABLES: [Table; 3] = [METERS[0].table, METERS[1].table, METERS[2].table];

/// The meter named `name`, if any.
pub fn named(name: &str) -> Option<MeterTable> {
    METERS.iter().copied().find(|m| m.table.name() == name)
}

pub const MIX_TYPE: &str = "mix_type";
pub const INTERVAL_START: &str = "interval_start";
pub const USAGE_KEY: &str = "usage_key";
pub const VALUE: &str = "value";

/// The schema stored in each Parquet file (no partition columns); with
/// `mix_type` first for a meter whose partition takes one call per
/// `MixType` (`recording_usage`).
pub fn file_schema(mix_type: bool) -> SchemaRef {
    let mut fields = Vec::new();
    if mix_type {
        fields.push(Field::new(MIX_TYPE, DataType::Utf8, false));
    }
    fields.extend([
        Field::new(INTERVAL_START, schema::fetched_at_type(), false),
        Field::new(USAGE_KEY, DataType::Utf8, false),
        Field::new(VALUE, DataType::Float64, false),
        Field::new(REQUEST_ID, DataType::Utf8, false),
        Field::new(FETCHED_AT, schema::fetched_at_type(), false),
    ]);
    Arc::new(Schema::new(fields))
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MeterError {
    #[error("{call}UsageKey '{key}' appears twice")]
    DuplicateKey { call: String, key: String },
    #[error("{call}bucket {bucket}: {found} values for {expected} UsageKey entries")]
    Length {
        call: String,
        bucket: String,
        expected: usize,
        found: usize,
    },
    #[error("{call}bucket {bucket}: {reason}")]
    BadTime {
        call: String,
        bucket: String,
        reason: String,
    },
    #[error("{call}bucket {bucket} ({start}) is outside {day} in the API's clock (UTC{offset})")]
    OutsideDay {
        call: String,
        bucket: String,
        start: DateTime<Utc>,
        day: NaiveDate,
        offset: FixedOffset,
    },
    #[error("{call}bucket {bucket} appears twice")]
    DuplicateBucket { call: String, bucket: String },
    #[error("{call}bucket {bucket}, UsageKey '{key}': {value} is not a non-negative finite number")]
    BadValue {
        call: String,
        bucket: String,
        key: String,
        value: f64,
    },
    #[error("{call}bucket {bucket}, UsageKey '{key}': the day's total is no longer finite")]
    TotalOverflow {
        call: String,
        bucket: String,
        key: String,
    },
}

/// One day's rows as a record batch of [`file_schema`], what the answers'
/// keys were, and each key's total for the day (`<mix_type>/<key>` when
/// the rows carry a mix type).
#[derive(Debug)]
pub struct Normalized {
    pub batch: RecordBatch,
    pub header: HeaderInfo,
    pub totals: BTreeMap<String, f64>,
}

/// Builds day `day`'s rows (in the API's clock `offset`) from `answers`,
/// one per call: `(mix_type, answer)`, the mix type empty for a meter of
/// one call (its rows have no `mix_type` column).
pub fn normalize(
    answers: &[(&str, &UsageList)],
    day: NaiveDate,
    offset: FixedOffset,
) -> Result<Normalized, MeterError> {
    let mix = answers.iter().any(|(m, _)| !m.is_empty());
    let (day_start, day_end) = buckets::day_bounds(day, offset);
    let mut header = HeaderInfo::default();
    let (mut mixes, mut starts, mut keys, mut values) = (vec![], vec![], vec![], vec![]);
    let (mut ids, mut fetched) = (vec![], vec![]);
    let mut totals: BTreeMap<String, f64> = BTreeMap::new();
    for &(mix_type, list) in answers {
        let call = if mix {
            format!("MixType {mix_type}: ")
        } else {
            String::new()
        };
        let mut seen = HashSet::new();
        for key in &list.usage_key {
            if !seen.insert(key.as_str()) {
                let key = key.clone();
                return Err(MeterError::DuplicateKey { call, key });
            }
            if !header.columns_found.contains(key) {
                header.columns_found.push(key.clone());
            }
        }
        let mut seen_buckets = HashSet::new();
        for b in &list.buckets {
            let bucket = b.time_key.clone();
            if b.values.len() != list.usage_key.len() {
                let (expected, found) = (list.usage_key.len(), b.values.len());
                return Err(MeterError::Length {
                    call,
                    bucket,
                    expected,
                    found,
                });
            }
            let start =
                buckets::bucket_start(&b.time_key, b.time_stamp_key, offset).map_err(|reason| {
                    MeterError::BadTime {
                        call: call.clone(),
                        bucket: bucket.clone(),
                        reason,
                    }
                })?;
            if start < day_start || start >= day_end {
                return Err(MeterError::OutsideDay {
                    call,
                    bucket,
                    start,
                    day,
                    offset,
                });
            }
            if !seen_buckets.insert(start) {
                return Err(MeterError::DuplicateBucket { call, bucket });
            }
            for (key, &value) in list.usage_key.iter().zip(&b.values) {
                if !value.is_finite() || value < 0.0 {
                    let key = key.clone();
                    return Err(MeterError::BadValue {
                        call,
                        bucket,
                        key,
                        value,
                    });
                }
                let total_key = if mix {
                    format!("{mix_type}/{key}")
                } else {
                    key.clone()
                };
                let total = totals.entry(total_key).or_default();
                *total += value;
                if !total.is_finite() {
                    let key = key.clone();
                    return Err(MeterError::TotalOverflow { call, bucket, key });
                }
                mixes.push(mix_type);
                starts.push(start.timestamp_micros());
                keys.push(key.as_str());
                values.push(value);
                ids.push(list.request_id.as_str());
                fetched.push(list.fetched_at.timestamp_micros());
            }
        }
    }
    let mut columns: Vec<ArrayRef> = Vec::new();
    if mix {
        columns.push(Arc::new(StringArray::from(mixes)));
    }
    columns.extend([
        Arc::new(TimestampMicrosecondArray::from(starts).with_timezone("UTC")) as ArrayRef,
        Arc::new(StringArray::from(keys)),
        Arc::new(Float64Array::from(values)),
        Arc::new(StringArray::from(ids)),
        Arc::new(TimestampMicrosecondArray::from(fetched).with_timezone("UTC")),
    ]);
    let batch = RecordBatch::try_new(file_schema(mix), columns).expect("arrays match the schema");
    Ok(Normalized {
        batch,
        header,
        totals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::buckets::Bucket;
    use arrow_array::Array;

    fn bj() -> FixedOffset {
        FixedOffset::east_opt(8 * 3600).unwrap()
    }

    fn day() -> NaiveDate {
        "2026-11-20".parse().unwrap()
    }

    fn list(id: &str, keys: &[&str], buckets: Vec<Bucket>) -> UsageList {
        UsageList {
            request_id: id.into(),
            fetched_at: DateTime::from_timestamp(1_764_000_000, 0).unwrap(),
            usage_key: keys.iter().map(|k| (*k).to_owned()).collect(),
            buckets,
        }
    }

    fn bucket(time_key: &str, values: &[f64]) -> Bucket {
        Bucket {
            time_key: time_key.into(),
            time_stamp_key: None,
            values: values.to_vec(),
        }
    }

    #[test]
    fn one_row_per_bucket_and_key_whatever_the_keys() {
        let a = list(
            "r-single",
            &["AudioMinutes", "Some New Key"],
            vec![
                bucket("2026-11-20 00:00:00", &[1.0, 2.0]),
                bucket("2026-11-20 23:55:00", &[0.0, 0.5]),
            ],
        );
        let b = list(
            "r-multi",
            &["AudioMinutes"],
            vec![bucket("2026-11-20 12:00:00", &[3.0])],
        );
        let n = normalize(&[("single", &a), ("multi", &b)], day(), bj()).unwrap();
        assert_eq!(n.batch.num_rows(), 5);
        assert_eq!(n.batch.schema(), file_schema(true));
        let keys = n
            .batch
            .column(2)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(keys.value(1), "Some New Key", "byte for byte");
        let ids = n
            .batch
            .column(4)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!((ids.value(0), ids.value(4)), ("r-single", "r-multi"));
        assert_eq!(n.totals["single/Some New Key"], 2.5);
        assert_eq!(n.totals["multi/AudioMinutes"], 3.0);
        // One call: no mix_type column.
        let one = normalize(&[("", &b)], day(), bj()).unwrap();
        assert_eq!(one.batch.schema(), file_schema(false));
        assert_eq!(one.totals["AudioMinutes"], 3.0);
        // No usage: no rows, the full schema.
        let none = normalize(&[("", &list("r", &["A"], vec![]))], day(), bj()).unwrap();
        assert_eq!(none.batch.num_rows(), 0);
        assert!(none.batch.column(0).is_empty());
    }

    #[test]
    fn bad_buckets_fail_naming_the_bucket_and_key() {
        let cases: Vec<(Vec<Bucket>, &[&str], &str)> = vec![
            (
                vec![bucket("2026-11-21 00:00:00", &[1.0])],
                &["K"],
                "bucket 2026-11-21 00:00:00 (2026-11-20 16:00:00 UTC) is outside 2026-11-20",
            ),
            (
                vec![bucket("2026-11-20 01:00:00", &[1.0, 2.0])],
                &["K"],
                "bucket 2026-11-20 01:00:00: 2 values for 1 UsageKey entries",
            ),
            (vec![], &["K", "K"], "UsageKey 'K' appears twice"),
            (
                vec![bucket("2026-11-20 01:00:00", &[-1.0])],
                &["K"],
                "bucket 2026-11-20 01:00:00, UsageKey 'K': -1 is not",
            ),
            (
                vec![bucket("2026-11-20 01:00:00", &[f64::NAN])],
                &["K"],
                "UsageKey 'K': NaN is not",
            ),
            (
                vec![
                    bucket("2026-11-20 01:00:00", &[1.0]),
                    bucket("2026-11-20 01:00:00", &[1.0]),
                ],
                &["K"],
                "bucket 2026-11-20 01:00:00 appears twice",
            ),
        ];
        for (buckets, keys, expected) in cases {
            let l = list("r", keys, buckets);
            let e = normalize(&[("single", &l)], day(), bj())
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("MixType single: "), "{e}");
            assert!(e.contains(expected), "{e} lacks {expected}");
        }
    }
}
