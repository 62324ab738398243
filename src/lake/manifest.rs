//! `_manifest.json`: the record that a partition is done, written last.
//!
//! Its presence is what "exported" means; its `fetched_at` is what decides
//! whether the partition is final (`docs/lake.md`, "Which days are final").

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};

use crate::lake::store::{Destination, MANIFEST_FILE, partition_of};
use crate::tables::Table;

/// Bumped when the manifest's meaning changes.
/// 2: tables under the lake's root, the body's hash and the raw object.
/// 3: per-series totals, and `checks` manifests (no call of their own:
///    `check` names the two partitions compared).
/// 4: derived partitions (`checks`, `cost`) record what they were computed
///    from and with (`derived`).
pub const FORMAT_VERSION: u32 = 4;

/// What a derived partition (`checks`, `cost`) was computed from: the
/// partitions it read and the settings it used, and their fingerprint. The
/// next run computes it again when the fingerprint it would have differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DerivedInfo {
    /// Input table → the RequestId of the answer its partition holds.
    pub inputs: BTreeMap<String, String>,
    /// The settings that shape the rows (the check's tolerance, the price
    /// list's SHA-256…), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, String>,
    /// SHA-256 (hex) of the inputs (table, RequestId, file SHA-256) and the
    /// settings.
    pub fingerprint: String,
}

/// What a `checks` partition compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckInfo {
    pub room_request_id: String,
    pub app_request_id: String,
    /// The allowed relative difference used (0.01 is 1%).
    pub tolerance: f64,
    /// The series that failed, empty when all passed.
    pub failed_series: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// The API answer a partition was built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BodyInfo {
    /// Size of the HTTP body.
    pub bytes: u64,
    /// SHA-256 of the HTTP body, hex.
    pub sha256: String,
}

/// One of the calls a partition of several was built from
/// (`recording_usage`: one per `MixType`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecord {
    /// Which call: its raw object's name carries it too (`single`).
    pub label: String,
    pub request_id: String,
    pub fetched_at: DateTime<Utc>,
    pub body: BodyInfo,
    /// Relative to the lake's root; `None` under `--raw off`.
    pub raw_object: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    /// The table, e.g. `room_usage`.
    pub table: String,
    pub app_id: u64,
    pub usage_date: NaiveDate,
    pub rows: u64,
    /// The answer the partition was built from (none for `checks`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub request_id: String,
    /// When the answer arrived; for `checks`, when the check ran.
    pub fetched_at: DateTime<Utc>,
    /// The window sent to the API (none for `checks`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub start_time: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub end_time: String,
    /// The API's clock, e.g. `+08:00`.
    pub utc_offset: String,
    pub file: FileInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<BodyInfo>,
    /// The raw object the partition was built from, relative to the lake's
    /// root; `None` under `--raw off`.
    pub raw_object: Option<String>,
    /// Every call of a partition built from several (the first is also
    /// `request_id`, `body` and `raw_object` above); empty for one call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<CallRecord>,
    /// The answer's column names (the CSV header, `UsageKey`), as they came.
    pub columns_found: Vec<String>,
    /// Known columns the CSV lacked (written as nulls).
    pub missing_columns: Vec<String>,
    /// Unknown columns carried as `extra_…_seconds` (`_minutes`).
    pub extra_columns: Vec<String>,
    /// Series → the day's total: seconds in `room_usage`, minutes in
    /// `app_usage`; what `checks` compares. Absent in `checks` and in
    /// manifests of version 2.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub totals: BTreeMap<String, f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckInfo>,
    /// What a derived partition was computed from (format 4 on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derived: Option<DerivedInfo>,
    pub tool_version: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{path} is not a manifest this tool wrote: {source}")]
    Parse {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The manifest of a partition, `None` when it has none (not exported).
pub async fn read(
    dest: &Destination,
    table: Table,
    app_id: u64,
    day: NaiveDate,
) -> Result<Option<Manifest>, ManifestError> {
    let path = dest.manifest_path(table, app_id, day);
    let bytes = match dest.store().get(&path).await {
        Ok(r) => r.bytes().await,
        Err(e) => Err(e),
    };
    match bytes {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|source| ManifestError::Parse {
                path: path.to_string(),
                source,
            }),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(source) => Err(ManifestError::Read {
            path: path.to_string(),
            source,
        }),
    }
}

/// The partitions of `table` that have a manifest, as (app, day).
pub async fn list(
    dest: &Destination,
    table: Table,
) -> Result<BTreeSet<(u64, NaiveDate)>, ManifestError> {
    let dir = dest.table_dir(table);
    let metas: Vec<_> = dest
        .store()
        .list(Some(&dir))
        .try_collect()
        .await
        .map_err(|source| ManifestError::Read {
            path: dir.to_string(),
            source,
        })?;
    Ok(metas
        .iter()
        .filter_map(|m| partition_of(&m.location))
        .filter(|(_, _, name)| *name == MANIFEST_FILE)
        .map(|(app, day, _)| (app, day))
        .collect())
}

/// What is wrong with a partition's file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileProblem {
    Missing,
    Unreadable(String),
    /// Not the size its manifest says.
    Size {
        size: u64,
        manifest: u64,
    },
    /// The size, but not the SHA-256 its manifest says.
    Sha256 {
        sha256: String,
        manifest: String,
    },
}

impl std::fmt::Display for FileProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileProblem::Missing => write!(f, "the file is missing"),
            FileProblem::Unreadable(e) => write!(f, "the file cannot be read: {e}"),
            FileProblem::Size { size, manifest } => {
                write!(f, "the file has {size} bytes, its manifest says {manifest}")
            }
            FileProblem::Sha256 { sha256, manifest } => {
                write!(
                    f,
                    "the file's SHA-256 {sha256} is not the manifest's {manifest}"
                )
            }
        }
    }
}

/// What is wrong with a partition's file, if anything: missing,
/// unreadable, or not the size its manifest records (one metadata
/// request); under `verify`, not its SHA-256 either (reads the whole file).
pub async fn file_problem(
    dest: &Destination,
    table: Table,
    m: &Manifest,
    verify: bool,
) -> Option<FileProblem> {
    use sha2::Digest;
    let path = dest.part_path(table, m.app_id, m.usage_date);
    let unreadable = |e: object_store::Error| match e {
        object_store::Error::NotFound { .. } => FileProblem::Missing,
        e => FileProblem::Unreadable(e.to_string()),
    };
    let wrong_size = |size: u64| {
        (size != m.file.size).then_some(FileProblem::Size {
            size,
            manifest: m.file.size,
        })
    };
    if !verify {
        return match dest.store().head(&path).await {
            Ok(meta) => wrong_size(meta.size),
            Err(e) => Some(unreadable(e)),
        };
    }
    let bytes = match dest.store().get(&path).await {
        Ok(r) => r.bytes().await,
        Err(e) => Err(e),
    };
    let bytes = match bytes {
        Ok(b) => b,
        Err(e) => return Some(unreadable(e)),
    };
    if let Some(problem) = wrong_size(bytes.len() as u64) {
        return Some(problem);
    }
    let sha256 = hex::encode(sha2::Sha256::digest(&bytes));
    (sha256 != m.file.sha256).then(|| FileProblem::Sha256 {
        sha256,
        manifest: m.file.sha256.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn finite() -> impl Strategy<Value = f64> {
        prop_oneof![
            prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO,
            Just(f64::MAX),
            Just(f64::MIN_POSITIVE),
            Just(0.1 + 0.2),
            (0u64..1 << 53).prop_map(|n| n as f64),
        ]
    }

    fn manifest(totals: BTreeMap<String, f64>, tolerance: f64) -> Manifest {
        Manifest {
            format_version: FORMAT_VERSION,
            table: "checks".into(),
            app_id: 1400000001,
            usage_date: "2026-11-20".parse().unwrap(),
            rows: 7,
            request_id: "r".into(),
            fetched_at: DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap(),
            start_time: String::new(),
            end_time: String::new(),
            utc_offset: "+08:00".into(),
            file: FileInfo {
                name: "part-00000.parquet".into(),
                size: 1,
                sha256: "00".into(),
            },
            body: None,
            raw_object: None,
            calls: Vec::new(),
            columns_found: vec![],
            missing_columns: vec![],
            extra_columns: vec![],
            totals,
            check: Some(CheckInfo {
                room_request_id: "r".into(),
                app_request_id: "a".into(),
                tolerance,
                failed_series: vec![],
            }),
            derived: None,
            tool_version: "x".into(),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]
        /// Every finite figure a manifest holds reads back bit for bit, as
        /// the manifests are written (pretty JSON).
        #[test]
        fn finite_figures_read_back_exactly(
            totals in prop::collection::btree_map("[a-z_0-9]{1,12}", finite(), 0..8),
            tolerance in finite(),
        ) {
            let m = manifest(totals, tolerance);
            let json = serde_json::to_vec_pretty(&m).unwrap();
            let back: Manifest = serde_json::from_slice(&json).unwrap();
            for (series, v) in &m.totals {
                prop_assert_eq!(back.totals[series].to_bits(), v.to_bits(), "{}", series);
            }
            prop_assert_eq!(back.check.unwrap().tolerance.to_bits(), tolerance.to_bits());
        }
    }
}
