//! Intents: a record, written before a partition (or its raw answer) is
//! written and removed after, of work in flight. A crash leaves it behind,
//! and the next run that writes the lake cleans exactly those partitions,
//! without listing the whole lake (`docs/lake.md`, "Crashes").
//!
//! Cleaning a partition removes every object but `part-00000.parquet` and
//! `_manifest.json` from its directory, on local disk also the files
//! object_store's listing hides (`<name>#<n>`, its own staging names), and
//! the staging files of its raw directory (never a raw answer itself).

use chrono::NaiveDate;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use tracing::{info, warn};

use crate::lake::lease::STATE_DIR;
use crate::lake::store::{
    CREATE_PROBE, Destination, MANIFEST_FILE, PART_FILE, PREFLIGHT_PROBE, partition_of,
};
use crate::lake::upload::INFLIGHT_SUFFIX;
use crate::tables::Table;

const INFLIGHT_DIR: &str = "inflight";

/// `_trtc_usage/inflight/<table>/app_id=…/usage_date=…/intent.json`.
fn intent_path(dest: &Destination, table: Table, app_id: u64, day: NaiveDate) -> Path {
    dest.root()
        .clone()
        .join(STATE_DIR)
        .join(INFLIGHT_DIR)
        .join(table.name())
        .join(format!("app_id={app_id}"))
        .join(format!("usage_date={day}"))
        .join("intent.json")
}

/// Records that `table`'s partition of (app, day) is about to be written.
pub async fn begin(
    dest: &Destination,
    table: Table,
    app_id: u64,
    day: NaiveDate,
) -> Result<(), String> {
    dest.fences().check(app_id).map_err(|e| e.to_string())?;
    let path = intent_path(dest, table, app_id, day);
    let body = serde_json::json!({
        "pid": std::process::id(),
        "started_at": crate::clock::now_micros(),
    });
    dest.store()
        .put(&path, PutPayload::from(body.to_string()))
        .await
        .map(|_| ())
        .map_err(|e| format!("writing the intent {}: {e}", dest.relative(&path)))
}

/// Removes the record: the write committed, or failed cleanly.
pub async fn end(dest: &Destination, table: Table, app_id: u64, day: NaiveDate) {
    let path = intent_path(dest, table, app_id, day);
    match dest.store().delete(&path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => {
            warn!(intent = %dest.relative(&path), error = %e, "Cannot remove an intent; the next run cleans its partition again.")
        }
    }
}

/// Whether a file name is a staging name (object_store's `x#3`, ours
/// `_x.inflight`).
fn is_staging(name: &str) -> bool {
    name.ends_with(INFLIGHT_SUFFIX)
        || name
            .rsplit_once('#')
            .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Deletes what does not belong in `dir`: everything but the part file and
/// the manifest (`only_staging`: only staging names). Returns how many.
async fn clean_dir(dest: &Destination, dir: &Path, only_staging: bool) -> Result<usize, String> {
    let keep = |name: &str| {
        if only_staging {
            !is_staging(name)
        } else {
            name == PART_FILE || name == MANIFEST_FILE
        }
    };
    let mut removed = 0;
    if let Some(local) = dest.local_path(dir) {
        // object_store's listing hides `#<n>` names: read the directory.
        let entries = match std::fs::read_dir(&local) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(format!("reading {}: {e}", local.display())),
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_file() && !keep(&name) {
                std::fs::remove_file(entry.path())
                    .map_err(|e| format!("removing {}: {e}", entry.path().display()))?;
                removed += 1;
            }
        }
        return Ok(removed);
    }
    let metas: Vec<_> = dest
        .store()
        .list(Some(dir))
        .try_collect()
        .await
        .map_err(|e| format!("listing {dir}: {e}"))?;
    for m in metas {
        let name = m.location.filename().unwrap_or_default().to_owned();
        if !keep(&name) {
            dest.store()
                .delete(&m.location)
                .await
                .map_err(|e| format!("deleting {}: {e}", m.location))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// A probe's name: the destination's preflight, or the lease's create-only
/// probe.
fn is_probe(name: &str) -> bool {
    name.starts_with(PREFLIGHT_PROBE) || name.starts_with(CREATE_PROBE)
}

/// How old a staging file or probe in the job's own directory must be to
/// be a crash's leftover: a live one exists for the milliseconds of one
/// small write (at worst, on a stalled disk, another run's preflight fails
/// and says so; it does not pass).
const DEBRIS_AGE: std::time::Duration = std::time::Duration::from_secs(1);

/// Removes what a crash left in the job's own directory on local disk:
/// object_store's staging files (`app_id=1.json#3`) and preflight probes.
/// Those of `apps` (their leases, their intents) are this run's to clean;
/// any other only once it is [`DEBRIS_AGE`] old, for a younger one may be
/// another run's, in flight on another app (pods of one Indexed Job start
/// together). On S3 nothing is staged; a probe a killed run left is one
/// small object, removed once its store time is a second old.
async fn sweep_state_dir(dest: &Destination, apps: &[u64]) -> Result<(), String> {
    let dir = dest.root().clone().join(STATE_DIR);
    let Some(local) = dest.local_path(&dir) else {
        let listing = dest
            .store()
            .list_with_delimiter(Some(&dir))
            .await
            .map_err(|e| format!("listing {}: {e}", dest.relative(&dir)))?;
        let now = chrono::Utc::now();
        for m in listing.objects {
            let old = (now - m.last_modified)
                .to_std()
                .is_ok_and(|age| age >= DEBRIS_AGE);
            if m.location.filename().is_some_and(is_probe) && old {
                let _ = dest.store().delete(&m.location).await;
            }
        }
        return Ok(());
    };
    let ours: Vec<String> = apps.iter().map(|a| format!("app_id={a}")).collect();
    let is_ours = |path: &std::path::Path| {
        path.iter().any(|part| {
            let part = part.to_string_lossy();
            ours.iter().any(|o| {
                part == o.as_str()
                    || part
                        .strip_prefix(o.as_str())
                        .is_some_and(|rest| rest.starts_with(".json"))
            })
        })
    };
    fn walk(
        dir: &std::path::Path,
        is_ours: &dyn Fn(&std::path::Path) -> bool,
    ) -> Result<(), String> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(format!("reading {}: {e}", dir.display())),
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                walk(&path, is_ours)?;
            } else if (is_staging(&name) || is_probe(&name))
                && (is_ours(&path)
                    || entry
                        .metadata()
                        .and_then(|m| m.modified())
                        .is_ok_and(|t| t.elapsed().is_ok_and(|age| age >= DEBRIS_AGE)))
            {
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(())
    }
    walk(&local, &is_ours)
}

/// Cleans every partition of `apps` an earlier run left in flight, then
/// forgets its intent. Run under those apps' leases, before anything is
/// written; other apps' intents may be another run's, live.
pub async fn sweep(dest: &Destination, apps: &[u64]) -> Result<usize, String> {
    sweep_state_dir(dest, apps).await?;
    let dir = dest.root().clone().join(STATE_DIR).join(INFLIGHT_DIR);
    let intents: Vec<_> = dest
        .store()
        .list(Some(&dir))
        .try_collect()
        .await
        .map_err(|e| format!("listing {}: {e}", dest.relative(&dir)))?;
    let mut cleaned = 0;
    for intent in intents {
        let Some((app_id, day, _)) = partition_of(&intent.location) else {
            continue;
        };
        if !apps.contains(&app_id) {
            continue;
        }
        let table_name = intent
            .location
            .parts()
            .nth_back(3)
            .map(|p| p.as_ref().to_owned())
            .unwrap_or_default();
        let Some(table) = dest.table_named(&table_name) else {
            continue;
        };
        let removed = clean_dir(dest, &dest.partition_dir(table, app_id, day), false).await?
            + clean_dir(dest, &dest.raw_dir(table, app_id, day), true).await?;
        info!(%table, app_id, usage_date = %day, removed, "Cleaned a partition an earlier run left in flight.");
        dest.store()
            .delete(&intent.location)
            .await
            .map_err(|e| format!("deleting {}: {e}", intent.location))?;
        cleaned += 1;
    }
    Ok(cleaned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_names() {
        for (name, staging) in [
            ("part-00000.parquet#1", true),
            ("_part-00000.parquet.inflight", true),
            ("_part-00000.parquet.inflight#12", true),
            ("x.json.zst#3", true),
            ("part-00000.parquet", false),
            ("20261120T000000.000000Z_req#a.json.zst", false),
            ("_manifest.json", false),
        ] {
            assert_eq!(is_staging(name), staging, "{name}");
        }
    }
}
