//! `rebuild`: rewrite partitions from the raw zone, with no API call and no
//! Tencent credentials.
//!
//! Each partition is rebuilt from its newest raw answer through the same
//! path as `export` ([`crate::jobs::partition`]), with the answer's own
//! RequestId and `fetched_at`, so with the same version and settings the
//! Parquet file is the same to the byte. A raw object that cannot be read
//! fails its partition, naming the object; a partition in the range with no
//! raw answer is reported and left as it is (exit 1).

use std::time::{Duration, Instant};

use chrono::NaiveDate;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::cli::Progress as ProgressMode;
use crate::jobs::config::LakeScope;
use crate::jobs::partition;
use crate::jobs::plan;
use crate::jobs::progress::Progress;
use crate::jobs::summary::{Partition, Status, Summary};
use crate::lake::manifest::BodyInfo;
use crate::lake::raw::{self, RawObject};
use crate::lake::store::Destination;
use crate::lake::write::CallInfo;
use crate::tables::Table;
use crate::tables::normalize::SchemaContract;
use crate::tencent::api::RoomUsage;

/// Everything a rebuild needs, checked.
#[derive(Debug, Clone)]
pub struct RebuildConfig {
    pub scope: LakeScope,
    pub contract: SchemaContract,
    pub batch_rows: usize,
    pub summary_file: Option<std::path::PathBuf>,
    pub progress: ProgressMode,
}

/// One partition to rebuild, or one that cannot be.
enum Work {
    From(Partition, RawObject),
    NoRaw(Partition),
}

/// The partitions of `table` in scope: those with raw answers, each from
/// its newest, and, where the scope names apps and days, those without.
async fn work_for(cfg: &RebuildConfig, table: Table) -> Result<Vec<Work>, raw::RawError> {
    let scope = &cfg.scope;
    let listing = raw::list(&scope.dest, table, scope.app_ids.as_deref()).await?;
    let mut work = Vec::new();
    let apps: Vec<u64> = match &scope.app_ids {
        Some(apps) => apps.clone(),
        None => {
            let mut found: Vec<u64> = listing.keys().map(|(a, _)| *a).collect();
            found.dedup();
            found
        }
    };
    let days: Vec<NaiveDate> = match scope.days {
        Some((start, end)) => start.iter_days().take_while(|d| *d <= end).collect(),
        None => {
            let mut found: Vec<NaiveDate> = listing.keys().map(|(_, d)| *d).collect();
            found.sort();
            found.dedup();
            found
        }
    };
    // Day by day, every app within a day, as export goes.
    for &usage_date in &days {
        for &app_id in &apps {
            let p = Partition { app_id, usage_date };
            match listing.get(&(app_id, usage_date)).and_then(|o| o.last()) {
                Some(newest) => work.push(Work::From(p, newest.clone())),
                // With no range, only partitions that have answers are in it.
                None if scope.days.is_some() => work.push(Work::NoRaw(p)),
                None => {}
            }
        }
    }
    Ok(work)
}

/// Rebuilds one partition of `table` from `object`, a raw answer; the
/// manifest records `utc_offset` as the API's clock. Shared with `export`,
/// which repairs a damaged final partition this way.
pub async fn from_raw(
    dest: &Destination,
    contract: SchemaContract,
    batch_rows: usize,
    utc_offset: String,
    table: Table,
    p: Partition,
    object: &RawObject,
) -> Result<partition::Written, String> {
    let key = dest.relative(&object.path).to_owned();
    let body = raw::read(dest, object).await.map_err(|e| e.to_string())?;
    let usage = RoomUsage::from_body(body, object.fetched_at, &key)
        .map_err(|e| format!("raw object {key}: {e}"))?;
    let request = plan::request_for(p.app_id, p.usage_date);
    let call = CallInfo {
        table,
        app_id: p.app_id,
        day: p.usage_date,
        request_id: usage.request_id.clone(),
        fetched_at: usage.fetched_at,
        start_time: request.start_time,
        end_time: request.end_time,
        utc_offset,
        body: BodyInfo {
            bytes: usage.body_bytes as u64,
            sha256: usage.body_sha256.clone(),
        },
        raw_object: Some(key.clone()),
    };
    partition::write_room_usage(dest, contract, batch_rows, usage, &call)
        .await
        .map_err(|e| format!("rebuilding from {key}: {e}"))
}

async fn rebuild_one(
    cfg: &RebuildConfig,
    table: Table,
    p: Partition,
    object: &RawObject,
) -> Result<partition::Written, String> {
    let offset = cfg.scope.offset.to_string();
    from_raw(
        &cfg.scope.dest,
        cfg.contract,
        cfg.batch_rows,
        offset,
        table,
        p,
        object,
    )
    .await
}

/// Runs the rebuild.
pub async fn run(
    cfg: &RebuildConfig,
    cancel: CancellationToken,
    progress: &mut dyn Progress,
) -> Summary {
    let started = Instant::now();
    let dest = &cfg.scope.dest;
    let mut summary = Summary::new(0);
    let finish = |mut s: Summary| {
        s.elapsed_secs = started.elapsed().as_secs_f64();
        s
    };
    if let Err(e) = dest.preflight().await {
        error!(error = %e, "The destination is not usable; nothing was rebuilt.");
        summary.stop(Status::Fatal, Some(e.to_string()), []);
        return finish(summary);
    }
    let mut plan = Vec::new();
    for &table in &cfg.scope.tables {
        match work_for(cfg, table).await {
            Ok(work) => plan.extend(work.into_iter().map(|w| (table, w))),
            Err(e) => {
                error!(table = %table, error = %e, "Cannot list the raw zone; nothing was rebuilt.");
                summary.stop(Status::Fatal, Some(e.to_string()), []);
                return finish(summary);
            }
        }
    }
    summary.planned = plan.len();
    info!(
        partitions = plan.len(),
        dest = %dest.display(),
        "Starting rebuild from the raw zone (no API call)."
    );
    progress.start(plan.len(), Duration::ZERO);
    let mut work = plan.into_iter();
    while let Some((table, w)) = work.next() {
        if cancel.is_cancelled() {
            let left = std::iter::once(&w).chain(work.as_slice().iter().map(|(_, w)| w));
            let left: Vec<Partition> = left
                .map(|w| match w {
                    Work::From(p, _) | Work::NoRaw(p) => *p,
                })
                .collect();
            summary.stop(Status::Interrupted, None, left);
            break;
        }
        match w {
            Work::NoRaw(p) => {
                let dir = dest.raw_dir(table, p.app_id, p.usage_date);
                let msg = format!(
                    "no raw response under {}/; the partition is left as it is",
                    dest.relative(&dir)
                );
                error!(table = %table, app_id = p.app_id, usage_date = %p.usage_date, error = %msg, "Partition has no raw response; left as it is.");
                summary.fail(p, msg);
            }
            Work::From(p, object) => match rebuild_one(cfg, table, p, &object).await {
                Ok(w) => summary.wrote(w),
                Err(msg) => {
                    error!(table = %table, app_id = p.app_id, usage_date = %p.usage_date, error = %msg, "Partition failed.");
                    summary.fail(p, msg);
                }
            },
        }
        progress.advance(&summary);
    }
    progress.finish();
    if summary.status == Status::Ok && !summary.failed.is_empty() {
        summary.status = Status::PartitionsFailed;
    }
    finish(summary)
}
