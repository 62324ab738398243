//! `checks`: does the room detail add up to the app's figure? One row per
//! series per (app, day) (`docs/lake.md`, "checks").
//!
//! A series passes when |room − app| ≤ max(1 minute, tolerance × app
//! minutes). The inputs are each table's per-series totals, which the
//! manifests of `room_usage` (seconds) and `app_usage` (minutes) record, so
//! a check never rereads a Parquet file.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use chrono::{DateTime, Utc};

use crate::tables::schema;

/// The smallest allowed difference, in minutes: the API rounds a day's
/// remainder up to a whole minute.
pub const MIN_TOLERANCE_MINUTES: f64 = 1.0;

/// The known series, in the tables' column order.
pub const KNOWN_SERIES: [&str; 6] = [
    "audio",
    "video_sd",
    "video_hd",
    "video_full_hd",
    "video_2k",
    "video_4k",
];

pub fn file_schema() -> SchemaRef {
    let f = |name: &str, t: DataType| Field::new(name, t, false);
    Arc::new(Schema::new(vec![
        f("series", DataType::Utf8),
        f("room_minutes", DataType::Float64),
        f("app_minutes", DataType::Float64),
        f("difference", DataType::Float64),
        f("tolerance", DataType::Float64),
        f("status", DataType::Utf8),
        f("room_request_id", DataType::Utf8),
        f("app_request_id", DataType::Utf8),
        f("checked_at", schema::fetched_at_type()),
    ]))
}

/// One input of a check: a partition's request and its series totals.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    pub request_id: &'a str,
    pub totals: &'a BTreeMap<String, f64>,
}

/// One series compared.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub series: String,
    pub room_minutes: f64,
    pub app_minutes: f64,
    pub difference: f64,
    pub tolerance: f64,
    pub pass: bool,
}

/// The comparison of one (app, day).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub rows: Vec<Row>,
    pub batch: RecordBatch,
}

impl Outcome {
    pub fn failed(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| !r.pass)
    }
}

/// The series both sides are compared on: the six known ones, then any
/// extra either side has, sorted (a side without it counts 0).
fn series(room: &BTreeMap<String, f64>, app: &BTreeMap<String, f64>) -> Vec<String> {
    let mut out: Vec<String> = KNOWN_SERIES.iter().map(|s| (*s).to_owned()).collect();
    let mut extras: Vec<&String> = room
        .keys()
        .chain(app.keys())
        .filter(|s| !KNOWN_SERIES.contains(&s.as_str()))
        .collect();
    extras.sort();
    extras.dedup();
    out.extend(extras.into_iter().cloned());
    out
}

/// Compares `room` (totals in seconds) with `app` (totals in minutes),
/// allowing `tolerance` (a fraction: 0.01 is 1%) of the app's figure.
pub fn compare(
    room: Input<'_>,
    app: Input<'_>,
    tolerance: f64,
    checked_at: DateTime<Utc>,
) -> Outcome {
    let rows: Vec<Row> = series(room.totals, app.totals)
        .into_iter()
        .map(|series| {
            let room_minutes = room.totals.get(&series).copied().unwrap_or(0.0) / 60.0;
            let app_minutes = app.totals.get(&series).copied().unwrap_or(0.0);
            let difference = room_minutes - app_minutes;
            let allowed = MIN_TOLERANCE_MINUTES.max(tolerance * app_minutes);
            Row {
                series,
                room_minutes,
                app_minutes,
                difference,
                tolerance: allowed,
                // A comparison with a figure that is not finite says
                // nothing: it never passes.
                pass: [room_minutes, app_minutes, difference, allowed]
                    .iter()
                    .all(|v| v.is_finite())
                    && difference.abs() <= allowed,
            }
        })
        .collect();
    let n = rows.len();
    let floats = |f: fn(&Row) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from(rows.iter().map(f).collect::<Vec<_>>()))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.series.as_str()),
        )),
        floats(|r| r.room_minutes),
        floats(|r| r.app_minutes),
        floats(|r| r.difference),
        floats(|r| r.tolerance),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| if r.pass { "pass" } else { "fail" }),
        )),
        Arc::new(StringArray::from(vec![room.request_id; n])),
        Arc::new(StringArray::from(vec![app.request_id; n])),
        Arc::new(
            TimestampMicrosecondArray::from(vec![checked_at.timestamp_micros(); n])
                .with_timezone("UTC"),
        ),
    ];
    let batch = RecordBatch::try_new(file_schema(), columns).expect("arrays match the schema");
    Outcome { rows, batch }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn passes_within_tolerance_and_fails_beyond_it() {
        // 6000 s = 100 min in the rooms.
        let room = totals(&[("audio", 6000.0), ("video_hd", 60.0), ("extra_8k", 120.0)]);
        let app = totals(&[("audio", 100.9), ("video_hd", 3.5)]);
        let o = compare(
            Input {
                request_id: "r",
                totals: &room,
            },
            Input {
                request_id: "a",
                totals: &app,
            },
            0.01,
            Utc::now(),
        );
        let by: BTreeMap<&str, &Row> = o.rows.iter().map(|r| (r.series.as_str(), r)).collect();
        assert_eq!(o.rows.len(), 7, "six known series and the extra");
        assert_eq!(o.rows[6].series, "extra_8k");
        // |100 - 100.9| = 0.9 ≤ max(1, 1.009)
        assert!(by["audio"].pass);
        assert!((by["audio"].tolerance - 1.009).abs() < 1e-9);
        // |1 - 3.5| = 2.5 > max(1, 0.035)
        assert!(!by["video_hd"].pass);
        assert_eq!(by["video_hd"].difference, -2.5);
        // 2 minutes only in the rooms
        assert!(!by["extra_8k"].pass);
        assert!(by["video_4k"].pass);
        assert_eq!(o.failed().count(), 2);
        assert_eq!(o.batch.num_rows(), 7);
        assert_eq!(o.batch.schema(), file_schema());
    }

    #[test]
    fn a_figure_that_is_not_finite_never_passes() {
        let room = totals(&[("audio", 6000.0)]);
        for app_minutes in [f64::INFINITY, f64::NAN, f64::MAX] {
            let app = totals(&[("audio", app_minutes)]);
            let o = compare(
                Input {
                    request_id: "r",
                    totals: &room,
                },
                Input {
                    request_id: "a",
                    totals: &app,
                },
                1.0,
                Utc::now(),
            );
            let audio = o.rows.iter().find(|r| r.series == "audio").unwrap();
            if app_minutes == f64::MAX {
                // Finite, far off, but within 100% of itself.
                assert!(audio.pass);
            } else {
                assert!(!audio.pass, "{app_minutes}: {audio:?}");
            }
        }
    }
}
