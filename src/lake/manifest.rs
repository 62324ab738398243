//! `_manifest.json`: the record that a partition is done, written last.
//!
//! Its presence is what "exported" means; its `fetched_at` is what decides
//! whether the partition is final (`docs/lake.md`, "Which days are final").

use chrono::{DateTime, NaiveDate, Utc};
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};

use crate::lake::store::Destination;

/// Bumped when the manifest's meaning changes.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
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
    app_id: u64,
    day: NaiveDate,
) -> Result<Option<Manifest>, ManifestError> {
    let path = dest.manifest_path(app_id, day);
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
