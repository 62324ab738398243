//! Where a lake's data comes from: `_trtc_usage/lake.json` says whether it
//! was written from Tencent Cloud or from the bundled simulator (`demo`),
//! so simulated rows can never land in a real lake, nor real ones in a
//! demo's, by a stray `--dest` or `TRTC_DEST`.

use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::lake::lease::STATE_DIR;
use crate::lake::store::Destination;

pub const MARKER_FILE: &str = "lake.json";

/// Where a lake's data comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The Tencent Cloud API (`export`).
    TencentCloud,
    /// The bundled simulator (`demo`).
    Simulator,
}

impl Source {
    fn describe(self) -> &'static str {
        match self {
            Source::TencentCloud => "Tencent Cloud data (written by export)",
            Source::Simulator => "simulated data (written by trtc-usage demo)",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    source: Source,
    created_at: chrono::DateTime<chrono::Utc>,
    tool_version: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MarkerError {
    #[error(
        "{dest} holds {found}; refusing to add {writing} to it: use another --dest for this run"
    )]
    Mixed {
        dest: String,
        found: &'static str,
        writing: &'static str,
    },
    #[error("{path}: {reason}")]
    Store { path: String, reason: String },
}

/// Checks that the lake holds data of `source` (or none yet); then, if it
/// has no marker, writes one. Call under the lease, before the first write.
pub async fn claim(dest: &Destination, source: Source) -> Result<(), MarkerError> {
    let path = dest.root().clone().join(STATE_DIR).join(MARKER_FILE);
    let store_err = |reason: String| MarkerError::Store {
        path: dest.relative(&path).to_owned(),
        reason,
    };
    match dest.store().get(&path).await {
        Ok(got) => {
            let bytes = got.bytes().await.map_err(|e| store_err(e.to_string()))?;
            let marker: Marker = serde_json::from_slice(&bytes)
                .map_err(|e| store_err(format!("not a marker this tool wrote: {e}")))?;
            if marker.source == source {
                return Ok(());
            }
            Err(MarkerError::Mixed {
                dest: dest.display().to_owned(),
                found: marker.source.describe(),
                writing: source.describe(),
            })
        }
        Err(object_store::Error::NotFound { .. }) => {
            let marker = Marker {
                source,
                created_at: chrono::Utc::now(),
                tool_version: env!("CARGO_PKG_VERSION").to_owned(),
            };
            let body = PutPayload::from(serde_json::to_vec_pretty(&marker).expect("serializes"));
            let opts = PutOptions {
                mode: PutMode::Create,
                ..PutOptions::default()
            };
            match dest.store().put_opts(&path, body.clone(), opts).await {
                Ok(_) => Ok(()),
                // Another run wrote one first: check it.
                Err(object_store::Error::AlreadyExists { .. }) => {
                    Box::pin(claim(dest, source)).await
                }
                // A store with no create-only write (under --lease off).
                Err(object_store::Error::NotImplemented { .. }) => dest
                    .store()
                    .put(&path, body)
                    .await
                    .map(|_| ())
                    .map_err(|e| store_err(e.to_string())),
                Err(e) => Err(store_err(e.to_string())),
            }
        }
        Err(e) => Err(store_err(e.to_string())),
    }
}
