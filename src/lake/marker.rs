//! What a lake is: `_trtc_usage/lake.json` says whether it was written from
//! Tencent Cloud or from the bundled simulator (`demo`), so simulated rows
//! can never land in a real lake, nor real ones in a demo's, by a stray
//! `--dest` or `TRTC_DEST`; and the lake's one clock, the API's UTC offset
//! that defines its days, recorded at the first write (lakes written before
//! 0.8 take it from their manifests), so no run mixes two clocks in it.

use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use chrono::FixedOffset;

use crate::lake::lease::STATE_DIR;
use crate::lake::manifest;
use crate::lake::store::Destination;
use crate::tables::Table;

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
    /// The API's clock (`+08:00`); absent in lakes written before 0.8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    utc_offset: Option<String>,
    /// Every table a run was asked to fill, so `status` shows one even when
    /// all its partitions failed (0.8 on).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tables: Vec<String>,
}

/// A lake's clock and where it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clock {
    pub offset: FixedOffset,
    /// `_trtc_usage/lake.json`, or the manifest it was taken from.
    pub from: String,
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
    #[error(
        "{dest} keeps the API clock {lake} (recorded in {from}); this run's --utc-offset is \
         {given}: one lake holds one clock, so pass --utc-offset {lake} (or unset \
         TRTC_UTC_OFFSET), or give another --dest for days of {given}"
    )]
    Clock {
        dest: String,
        lake: FixedOffset,
        from: String,
        given: FixedOffset,
    },
    #[error(
        "{dest} holds two API clocks, {a} ({a_from}) and {b} ({b_from}); one lake holds one \
         clock: move one of them to another lake"
    )]
    TwoClocks {
        dest: String,
        a: FixedOffset,
        a_from: String,
        b: FixedOffset,
        b_from: String,
    },
    #[error("{path}: {reason}")]
    Store { path: String, reason: String },
}

fn marker_path(dest: &Destination) -> object_store::path::Path {
    dest.root().clone().join(STATE_DIR).join(MARKER_FILE)
}

async fn read_marker(dest: &Destination) -> Result<Option<Marker>, MarkerError> {
    let path = marker_path(dest);
    let store_err = |reason: String| MarkerError::Store {
        path: dest.relative(&path).to_owned(),
        reason,
    };
    match dest.store().get(&path).await {
        Ok(got) => {
            let bytes = got.bytes().await.map_err(|e| store_err(e.to_string()))?;
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| store_err(format!("not a marker this tool wrote: {e}")))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(store_err(e.to_string())),
    }
}

/// The lake's clock: the one `lake.json` records, else (a lake written
/// before 0.8) the one its manifests record; `None` for a lake with
/// neither (nothing written yet). Manifests of two clocks are refused.
pub async fn clock(dest: &Destination) -> Result<Option<Clock>, MarkerError> {
    clock_of(dest, read_marker(dest).await?.as_ref()).await
}

/// The clock of the lake whose `lake.json` reads `marker`.
async fn clock_of(
    dest: &Destination,
    marker: Option<&Marker>,
) -> Result<Option<Clock>, MarkerError> {
    if let Some(Marker {
        utc_offset: Some(o),
        ..
    }) = marker
    {
        let offset = o.parse().map_err(|e| MarkerError::Store {
            path: dest.relative(&marker_path(dest)).to_owned(),
            reason: format!("utc_offset '{o}' is not a UTC offset ({e})"),
        })?;
        return Ok(Some(Clock {
            offset,
            from: format!("{STATE_DIR}/{MARKER_FILE}"),
        }));
    }
    clock_of_manifests(dest).await
}

/// The clock of a lake written before 0.8: the first and the last
/// manifest of every table (an older lake of two clocks is refused).
async fn clock_of_manifests(dest: &Destination) -> Result<Option<Clock>, MarkerError> {
    let mut found: Option<Clock> = None;
    for &table in dest.known_tables() {
        let store_err = |e: manifest::ManifestError| MarkerError::Store {
            path: table.name().to_owned(),
            reason: e.to_string(),
        };
        let listed = manifest::list(dest, table).await.map_err(store_err)?;
        let ends = [listed.first(), listed.last()];
        for &(app, day) in ends.into_iter().flatten() {
            let Some(m) = manifest::read(dest, table, app, day)
                .await
                .map_err(store_err)?
            else {
                continue;
            };
            let Ok(offset) = m.utc_offset.parse::<FixedOffset>() else {
                continue;
            };
            let from = dest
                .relative(&dest.manifest_path(table, app, day))
                .to_owned();
            match &found {
                None => found = Some(Clock { offset, from }),
                Some(c) if c.offset == offset => {}
                Some(c) => {
                    return Err(MarkerError::TwoClocks {
                        dest: dest.display().to_owned(),
                        a: c.offset,
                        a_from: c.from.clone(),
                        b: offset,
                        b_from: from,
                    });
                }
            }
        }
    }
    Ok(found)
}

/// Where the lake's data comes from, as `lake.json` says (none: nothing
/// written yet, or a lake of 0.4 or before).
pub async fn source(dest: &Destination) -> Result<Option<Source>, MarkerError> {
    Ok(read_marker(dest).await?.map(|m| m.source))
}

/// The tables runs were asked to fill in this lake (as `lake.json` records
/// them; none before 0.8).
pub async fn tables(dest: &Destination) -> Result<Vec<Table>, MarkerError> {
    Ok(read_marker(dest)
        .await?
        .map(|m| {
            m.tables
                .iter()
                .filter_map(|t| dest.table_named(t))
                .collect()
        })
        .unwrap_or_default())
}

/// Refuses `offset` when the lake keeps another clock. Reads only.
pub async fn check_clock(dest: &Destination, offset: FixedOffset) -> Result<(), MarkerError> {
    refuse_clock(dest, clock(dest).await?, offset)
}

fn refuse_clock(
    dest: &Destination,
    clock: Option<Clock>,
    offset: FixedOffset,
) -> Result<(), MarkerError> {
    match clock {
        Some(c) if c.offset != offset => Err(MarkerError::Clock {
            dest: dest.display().to_owned(),
            lake: c.offset,
            from: c.from,
            given: offset,
        }),
        _ => Ok(()),
    }
}

/// What the lake whose `lake.json` reads `marker` refuses: data of another
/// source, or another clock.
async fn refusal(
    dest: &Destination,
    marker: Option<&Marker>,
    source: Source,
    offset: FixedOffset,
) -> Result<(), MarkerError> {
    if let Some(marker) = marker
        && marker.source != source
    {
        return Err(MarkerError::Mixed {
            dest: dest.display().to_owned(),
            found: marker.source.describe(),
            writing: source.describe(),
        });
    }
    refuse_clock(dest, clock_of(dest, marker).await?, offset)
}

/// What [`claim`] would refuse, reading only: a lake of another source or
/// another clock. For a dry run, which must say what the real run would do.
pub async fn check(
    dest: &Destination,
    source: Source,
    offset: FixedOffset,
) -> Result<(), MarkerError> {
    refusal(dest, read_marker(dest).await?.as_ref(), source, offset).await
}

/// Checks that the lake holds data of `source` (or none yet) and keeps the
/// clock `offset` (or none yet), from one read of its marker; then, if the
/// marker is missing or does not record the clock or a table of `tables`
/// yet, writes it. Call after the preflight, before any lease or write.
pub async fn claim(
    dest: &Destination,
    source: Source,
    offset: FixedOffset,
    tables: &[Table],
) -> Result<(), MarkerError> {
    let marker = read_marker(dest).await?;
    // Another source or another clock is refused before anything is written.
    refusal(dest, marker.as_ref(), source, offset).await?;
    let path = marker_path(dest);
    let store_err = |reason: String| MarkerError::Store {
        path: dest.relative(&path).to_owned(),
        reason,
    };
    match marker {
        Some(marker) => {
            let mut names = marker.tables.clone();
            for t in tables {
                if !names.iter().any(|n| n == t.name()) {
                    names.push(t.name().to_owned());
                }
            }
            if marker.utc_offset.is_none() || names != marker.tables {
                // A lake of 0.7 or before: its clock is recorded now
                // (checked against its manifests above); and a table this
                // lake never had.
                let marker = Marker {
                    utc_offset: Some(offset.to_string()),
                    tables: names,
                    ..marker
                };
                let body = serde_json::to_vec_pretty(&marker).expect("serializes");
                dest.store()
                    .put(&path, body.into())
                    .await
                    .map_err(|e| store_err(e.to_string()))?;
            }
            Ok(())
        }
        None => {
            let marker = Marker {
                source,
                created_at: chrono::Utc::now(),
                tool_version: env!("CARGO_PKG_VERSION").to_owned(),
                utc_offset: Some(offset.to_string()),
                tables: tables.iter().map(|t| t.name().to_owned()).collect(),
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
                    Box::pin(claim(dest, source, offset, tables)).await
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
    }
}
