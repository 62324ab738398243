//! `app_usage`: one row per 5-minute bucket of `DescribeTrtcUsage`, in
//! minutes (`docs/lake.md`, "app_usage").
//!
//! `UsageKey` names match the known series case-insensitively (the API
//! says `HD` where the room CSV says `hd`); an unknown key follows
//! `--schema-contract` as `extra_<lower_snake_case>_minutes`. A bucket
//! outside the day, a `UsageValue` list whose length differs from
//! `UsageKey`'s, a bucket given twice, or a negative or non-finite value
//! fails the partition naming the bucket.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow_array::builder::Float64Builder;
use arrow_array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use chrono::{DateTime, FixedOffset, NaiveDate, Utc};

use crate::tables::buckets::{self, UsageList};
use crate::tables::normalize::{HeaderInfo, SchemaContract};
use crate::tables::schema::{self, FETCHED_AT, REQUEST_ID};

pub const INTERVAL_START: &str = "interval_start";
pub const MINUTES: &str = "_minutes";

/// The known series: lower-cased `UsageKey`, column name.
pub const MINUTE_COLUMNS: [(&str, &str); 6] = [
    ("audio", "audio_minutes"),
    ("sd", "video_sd_minutes"),
    ("hd", "video_hd_minutes"),
    ("fullhd", "video_full_hd_minutes"),
    ("2k", "video_2k_minutes"),
    ("4k", "video_4k_minutes"),
];

/// The schema stored in each Parquet file (no partition columns).
pub fn file_schema(extras: &[String]) -> SchemaRef {
    let mut fields = vec![Field::new(INTERVAL_START, schema::fetched_at_type(), false)];
    fields.extend(
        MINUTE_COLUMNS
            .iter()
            .map(|(_, c)| Field::new(*c, DataType::Float64, true)),
    );
    fields.push(Field::new(REQUEST_ID, DataType::Utf8, false));
    fields.push(Field::new(FETCHED_AT, schema::fetched_at_type(), false));
    fields.extend(
        extras
            .iter()
            .map(|c| Field::new(c, DataType::Float64, true)),
    );
    Arc::new(Schema::new(fields))
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AppUsageError {
    #[error("UsageKey '{key}' appears twice")]
    DuplicateKey { key: String },
    #[error(
        "unknown UsageKey '{key}' (--schema-contract freeze; use evolve to keep it as {column})"
    )]
    UnknownKey { key: String, column: String },
    #[error("bucket {bucket}: {found} values for {expected} UsageKey entries")]
    Length {
        bucket: String,
        expected: usize,
        found: usize,
    },
    #[error("bucket {bucket}: {reason}")]
    BadTime { bucket: String, reason: String },
    #[error("bucket {bucket} ({start}) is outside {day} in the API's clock (UTC{offset})")]
    OutsideDay {
        bucket: String,
        start: DateTime<Utc>,
        day: NaiveDate,
        offset: FixedOffset,
    },
    #[error("bucket {bucket} appears twice")]
    DuplicateBucket { bucket: String },
    #[error("bucket {bucket}, series '{key}': {value} is not a non-negative number of minutes")]
    BadValue {
        bucket: String,
        key: String,
        value: f64,
    },
    #[error(
        "bucket {bucket}, series '{key}': the day's total is no longer a finite number of minutes"
    )]
    TotalOverflow { bucket: String, key: String },
}

/// One day's buckets as a record batch of [`file_schema`], with what the
/// answer's keys were and each series' total minutes.
#[derive(Debug)]
pub struct Normalized {
    pub batch: RecordBatch,
    pub header: HeaderInfo,
    /// Series (`audio`, `video_sd`, …, extras) → minutes in the day.
    pub totals: BTreeMap<String, f64>,
}

/// Where each `UsageKey` goes: an index into the value columns (the six
/// known, then extras).
fn map_keys(
    keys: &[String],
    contract: SchemaContract,
) -> Result<(Vec<usize>, HeaderInfo), AppUsageError> {
    let mut header = HeaderInfo {
        columns_found: keys.to_vec(),
        ..HeaderInfo::default()
    };
    let mut targets = Vec::with_capacity(keys.len());
    let mut seen = HashSet::new();
    for key in keys {
        let lower = schema::header_key(key);
        if !seen.insert(lower.clone()) {
            return Err(AppUsageError::DuplicateKey { key: key.clone() });
        }
        if let Some(i) = MINUTE_COLUMNS.iter().position(|(k, _)| *k == lower) {
            targets.push(i);
            continue;
        }
        let column = format!("{}{MINUTES}", schema::extra_series(key));
        if contract == SchemaContract::Freeze {
            return Err(AppUsageError::UnknownKey {
                key: key.clone(),
                column,
            });
        }
        if header.extras.iter().any(|(_, c)| *c == column) {
            return Err(AppUsageError::DuplicateKey { key: key.clone() });
        }
        targets.push(MINUTE_COLUMNS.len() + header.extras.len());
        header.extras.push((key.clone(), column));
    }
    header.missing = MINUTE_COLUMNS
        .iter()
        .enumerate()
        .filter(|(i, _)| !targets.contains(i))
        .map(|(_, (_, c))| (*c).to_owned())
        .collect();
    Ok((targets, header))
}

fn bucket_start(
    time_key: &str,
    time_stamp_key: Option<i64>,
    offset: FixedOffset,
) -> Result<DateTime<Utc>, AppUsageError> {
    buckets::bucket_start(time_key, time_stamp_key, offset).map_err(|reason| {
        AppUsageError::BadTime {
            bucket: time_key.to_owned(),
            reason,
        }
    })
}

/// Builds the day's rows from `usage`, an answer for `day` in the API's
/// clock `offset`.
pub fn normalize(
    usage: &UsageList,
    day: NaiveDate,
    offset: FixedOffset,
    contract: SchemaContract,
) -> Result<Normalized, AppUsageError> {
    let (targets, header) = map_keys(&usage.usage_key, contract)?;
    let columns = MINUTE_COLUMNS.len() + header.extras.len();
    let (day_start, day_end) = buckets::day_bounds(day, offset);
    let n = usage.buckets.len();
    let mut starts = Vec::with_capacity(n);
    let mut values: Vec<Float64Builder> = (0..columns)
        .map(|_| Float64Builder::with_capacity(n))
        .collect();
    let mut sums = vec![0.0f64; columns];
    let mut seen = HashSet::with_capacity(n);
    for b in &usage.buckets {
        if b.values.len() != targets.len() {
            return Err(AppUsageError::Length {
                bucket: b.time_key.clone(),
                expected: targets.len(),
                found: b.values.len(),
            });
        }
        let start = bucket_start(&b.time_key, b.time_stamp_key, offset)?;
        if start < day_start || start >= day_end {
            return Err(AppUsageError::OutsideDay {
                bucket: b.time_key.clone(),
                start,
                day,
                offset,
            });
        }
        if !seen.insert(start) {
            return Err(AppUsageError::DuplicateBucket {
                bucket: b.time_key.clone(),
            });
        }
        starts.push(start.timestamp_micros());
        let mut row: Vec<Option<f64>> = vec![None; columns];
        for (i, (&v, &t)) in b.values.iter().zip(&targets).enumerate() {
            if !v.is_finite() || v < 0.0 {
                return Err(AppUsageError::BadValue {
                    bucket: b.time_key.clone(),
                    key: usage.usage_key[i].clone(),
                    value: v,
                });
            }
            row[t] = Some(v);
            sums[t] += v;
            // Each bucket finite, the day's sum not (three of 1e308): no
            // check may compare, nor any manifest hold, an infinity.
            if !sums[t].is_finite() {
                return Err(AppUsageError::TotalOverflow {
                    bucket: b.time_key.clone(),
                    key: usage.usage_key[i].clone(),
                });
            }
        }
        for (builder, v) in values.iter_mut().zip(row) {
            builder.append_option(v);
        }
    }
    let extras = header.extra_columns();
    let schema = file_schema(&extras);
    let mut arrays: Vec<ArrayRef> = vec![Arc::new(
        TimestampMicrosecondArray::from(starts).with_timezone("UTC"),
    )];
    let mut built: Vec<ArrayRef> = values
        .iter_mut()
        .map(|b| Arc::new(b.finish()) as ArrayRef)
        .collect();
    let extra_arrays = built.split_off(MINUTE_COLUMNS.len());
    arrays.extend(built);
    arrays.push(Arc::new(StringArray::from(vec![
        usage.request_id.as_str();
        n
    ])));
    arrays.push(Arc::new(
        TimestampMicrosecondArray::from(vec![usage.fetched_at.timestamp_micros(); n])
            .with_timezone("UTC"),
    ));
    arrays.extend(extra_arrays);
    let batch = RecordBatch::try_new(schema, arrays).expect("arrays match the schema");
    let names = MINUTE_COLUMNS
        .iter()
        .map(|(_, c)| (*c).to_owned())
        .chain(extras);
    let totals = names
        .zip(sums)
        .map(|(c, sum)| {
            (
                schema::series_of(&c).expect("a minutes column").to_owned(),
                sum,
            )
        })
        .collect();
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

    fn usage(keys: &[&str], buckets: Vec<Bucket>) -> UsageList {
        UsageList {
            request_id: "req-a".into(),
            fetched_at: DateTime::from_timestamp(1_764_000_000, 0).unwrap(),
            usage_key: keys.iter().map(|k| (*k).to_owned()).collect(),
            buckets,
        }
    }

    fn bucket(time_key: &str, ts: Option<i64>, values: &[f64]) -> Bucket {
        Bucket {
            time_key: time_key.into(),
            time_stamp_key: ts,
            values: values.to_vec(),
        }
    }

    /// 2026-11-20 00:00 in UTC+8.
    const MIDNIGHT: i64 = 1_795_104_000;

    #[test]
    fn keys_match_any_case_and_extras_evolve() {
        let u = usage(
            &["audio", "Sd", "HD", "FULLHD", "2K", "4k", "8K"],
            vec![
                bucket(
                    "2026-11-20 00:00:00",
                    Some(MIDNIGHT),
                    &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
                ),
                bucket(
                    "2026-11-20 00:05:00",
                    None,
                    &[0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
                ),
            ],
        );
        let n = normalize(&u, day(), bj(), SchemaContract::Evolve).unwrap();
        assert_eq!(n.batch.num_rows(), 2);
        assert_eq!(n.header.extra_columns(), ["extra_8k_minutes"]);
        assert!(n.header.missing.is_empty());
        assert_eq!(n.totals["audio"], 1.5);
        assert_eq!(n.totals["video_hd"], 3.0);
        assert_eq!(n.totals["extra_8k"], 8.0);
        let starts = n
            .batch
            .column(0)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        // TimeKey without TimeStampKey is read in the API's clock.
        assert_eq!(starts.value(1), (MIDNIGHT + 300) * 1_000_000);
        assert_eq!(n.batch.schema(), file_schema(&["extra_8k_minutes".into()]));
        let err = normalize(&u, day(), bj(), SchemaContract::Freeze).unwrap_err();
        assert!(err.to_string().contains("unknown UsageKey '8K'"), "{err}");
    }

    #[test]
    fn missing_keys_are_null_columns() {
        let u = usage(
            &["Audio"],
            vec![bucket("2026-11-20 23:55:00", None, &[2.0])],
        );
        let n = normalize(&u, day(), bj(), SchemaContract::Evolve).unwrap();
        assert_eq!(n.header.missing.len(), 5);
        assert_eq!(n.batch.column(2).null_count(), 1);
        assert_eq!(n.totals["video_sd"], 0.0);
    }

    #[test]
    fn bad_answers_name_the_bucket() {
        let keys = ["Audio", "SD"];
        for (b, want) in [
            (
                bucket("2026-11-20 00:00:00", None, &[1.0]),
                "bucket 2026-11-20 00:00:00: 1 values for 2 UsageKey entries",
            ),
            (
                bucket("2026-11-21 00:00:00", None, &[1.0, 1.0]),
                "bucket 2026-11-21 00:00:00 (2026-11-20 16:00:00 UTC) is outside 2026-11-20",
            ),
            (
                bucket("2026-11-19 23:55:00", Some(MIDNIGHT - 300), &[1.0, 1.0]),
                "is outside 2026-11-20",
            ),
            (
                bucket("2026-11-20 00:10:00", None, &[-1.0, 1.0]),
                "bucket 2026-11-20 00:10:00, series 'Audio': -1 is not",
            ),
            (
                bucket("2026-11-20 00:10:00", None, &[1.0, f64::NAN]),
                "series 'SD': NaN is not",
            ),
            (
                bucket("yesterday", None, &[1.0, 1.0]),
                "bucket yesterday: TimeKey is not",
            ),
        ] {
            let err = normalize(&usage(&keys, vec![b]), day(), bj(), SchemaContract::Evolve)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{err}");
        }
        let twice = usage(
            &keys,
            vec![
                bucket("2026-11-20 00:00:00", None, &[1.0, 1.0]),
                bucket("2026-11-20 00:00:00", Some(MIDNIGHT), &[1.0, 1.0]),
            ],
        );
        let err = normalize(&twice, day(), bj(), SchemaContract::Evolve).unwrap_err();
        assert_eq!(err.to_string(), "bucket 2026-11-20 00:00:00 appears twice");
        // Each bucket finite, their sum not.
        let huge = usage(
            &keys,
            ["00:00", "00:05", "00:10"]
                .iter()
                .map(|t| bucket(&format!("2026-11-20 {t}:00"), None, &[1.0, 1e308]))
                .collect(),
        );
        let err = normalize(&huge, day(), bj(), SchemaContract::Evolve).unwrap_err();
        assert_eq!(
            err.to_string(),
            "bucket 2026-11-20 00:05:00, series 'SD': the day's total is no longer a finite number of minutes"
        );
        let dup = usage(&["HD", "hd"], vec![]);
        let err = normalize(&dup, day(), bj(), SchemaContract::Evolve).unwrap_err();
        assert_eq!(err.to_string(), "UsageKey 'hd' appears twice");
    }

    #[test]
    fn no_buckets_is_a_day_with_no_usage() {
        let n = normalize(
            &usage(&["Audio"], vec![]),
            day(),
            bj(),
            SchemaContract::Evolve,
        )
        .unwrap();
        assert_eq!(n.batch.num_rows(), 0);
        assert_eq!(n.totals.len(), 6);
    }
}
