//! `_manifest.json`: the record that a partition is done, written last.
//!
//! Its presence is what "exported" means; its `fetched_at` is what decides
//! whether the partition is final (`docs/lake.md`, "Which days are final").

use chrono::{DateTime, NaiveDate, Utc};
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};

use crate::lake::store::Destination;
use crate::tables::Table;

/// Bumped when the manifest's meaning changes.
/// 2: tables under the lake's root, the body's hash and the raw object.
pub const FORMAT_VERSION: u32 = 2;

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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    /// The table, e.g. `room_usage`.
    pub table: String,
    pub app_id: u64,
    pub usage_date: NaiveDate,
    pub rows: u64,
    pub request_id: String,
    pub fetched_at: DateTime<Utc>,
    /// The window sent to the API.
    pub start_time: String,
    pub end_time: String,
    /// The API's clock, e.g. `+08:00`.
    pub utc_offset: String,
    pub file: FileInfo,
    pub body: BodyInfo,
    /// The raw object the partition was built from, relative to the lake's
    /// root; `None` under `--raw off`.
    pub raw_object: Option<String>,
    /// The CSV's column names, as they came.
    pub columns_found: Vec<String>,
    /// Known columns the CSV lacked (written as nulls).
    pub missing_columns: Vec<String>,
    /// Unknown CSV columns carried as `extra_…_seconds`.
    pub extra_columns: Vec<String>,
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
