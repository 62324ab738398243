//! The export run: plan → skip final partitions → for each remaining
//! partition, one paced call → normalize → write → manifest; then a summary.
//!
//! A partition's failure does not stop the run (exit 1); a fatal API error
//! (credentials, permissions) does (exit 2); an unknown app fails that app's
//! partitions without further calls. A stop request (SIGTERM/SIGINT) ends
//! the run at the next safe point: never between a file and its manifest.

use std::time::{Duration, Instant};

use futures::StreamExt;
use object_store::ObjectStoreExt;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::jobs::config::JobConfig;
use crate::jobs::partition;
use crate::jobs::plan;
use crate::jobs::progress::Progress;
use crate::jobs::rebuild;
pub use crate::jobs::summary::{Failure, Partition, Status, Summary};
use crate::lake::manifest;
use crate::lake::manifest::BodyInfo;
use crate::lake::raw;
use crate::lake::write::CallInfo;
use crate::tables::Table;
use crate::tencent::api::{ApiError, Client, ErrorClass};
use crate::tencent::credentials::Provider;
use crate::tencent::pacing::{Backoff, CallError, CallStats, PacedClient, Pacer};

/// The plan of a run: what to fetch and what is already final.
#[derive(Debug, Clone)]
pub struct Plan {
    pub todo: Vec<Partition>,
    pub final_: Vec<Partition>,
    /// Final by their manifests, but the file is missing or not the size
    /// its manifest says: rebuilt from the raw zone, else fetched again.
    pub damaged: Vec<Partition>,
}

/// Whether a final partition's file is there with its manifest's size
/// (one metadata request; the content is checked by `status --verify`).
async fn file_matches(cfg: &JobConfig, p: Partition, m: &manifest::Manifest) -> bool {
    let path = cfg.dest.part_path(Table::RoomUsage, p.app_id, p.usage_date);
    match cfg.dest.store().head(&path).await {
        Ok(meta) if meta.size == m.file.size => true,
        Ok(meta) => {
            warn!(app_id = p.app_id, usage_date = %p.usage_date, size = meta.size, manifest_size = m.file.size, "A final partition's file is not the size its manifest says; repairing it.");
            false
        }
        Err(e) => {
            warn!(app_id = p.app_id, usage_date = %p.usage_date, error = %e, "A final partition's file is missing or unreadable; repairing it.");
            false
        }
    }
}

enum Finality {
    Final,
    NotFinal,
    Damaged,
}

/// Rebuilds each damaged final partition from its newest raw answer, with
/// no API call; returns those that could not be (to fetch again).
async fn repair_from_raw(
    cfg: &JobConfig,
    damaged: Vec<Partition>,
    summary: &mut Summary,
) -> Vec<Partition> {
    let mut fetch = Vec::new();
    for p in damaged {
        let object = match raw::newest(&cfg.dest, Table::RoomUsage, p.app_id, p.usage_date).await {
            Ok(Some(object)) => object,
            Ok(None) => {
                warn!(app_id = p.app_id, usage_date = %p.usage_date, "No raw answer to rebuild the damaged partition from; fetching it again.");
                fetch.push(p);
                continue;
            }
            Err(e) => {
                warn!(app_id = p.app_id, usage_date = %p.usage_date, error = %e, "Cannot list the raw answers of the damaged partition; fetching it again.");
                fetch.push(p);
                continue;
            }
        };
        match rebuild::from_raw(
            &cfg.dest,
            cfg.contract,
            cfg.batch_rows,
            cfg.offset_label(),
            Table::RoomUsage,
            p,
            &object,
        )
        .await
        {
            Ok(w) => {
                info!(app_id = p.app_id, usage_date = %p.usage_date, raw_object = %cfg.dest.relative(&object.path), "Rebuilt a damaged partition from the raw zone.");
                summary.wrote(w);
            }
            Err(e) => {
                warn!(app_id = p.app_id, usage_date = %p.usage_date, error = %e, "Cannot rebuild the damaged partition from the raw zone; fetching it again.");
                fetch.push(p);
            }
        }
    }
    fetch
}

/// Every partition of the plan, day by day, every app within a day.
fn all_partitions(cfg: &JobConfig) -> Vec<Partition> {
    cfg.days
        .iter()
        .flat_map(|&usage_date| {
            cfg.app_ids
                .iter()
                .map(move |&app_id| Partition { app_id, usage_date })
        })
        .collect()
}

/// Reads the manifests of every planned partition (16 at a time) and
/// splits the plan into partitions to fetch and partitions already final.
pub async fn make_plan(cfg: &JobConfig) -> Plan {
    let all = all_partitions(cfg);
    if cfg.force {
        return Plan {
            todo: all,
            final_: Vec::new(),
            damaged: Vec::new(),
        };
    }
    let finals: Vec<Finality> = futures::stream::iter(all.iter().copied())
        .map(|p| async move {
            match manifest::read(&cfg.dest, Table::RoomUsage, p.app_id, p.usage_date).await {
                Ok(Some(m)) if plan::is_final(p.usage_date, cfg.offset, cfg.settle, m.fetched_at) => {
                    if file_matches(cfg, p, &m).await {
                        Finality::Final
                    } else {
                        Finality::Damaged
                    }
                }
                Ok(_) => Finality::NotFinal,
                Err(e) => {
                    warn!(app_id = p.app_id, usage_date = %p.usage_date, error = %e, "Cannot read the manifest; the partition will be fetched again.");
                    Finality::NotFinal
                }
            }
        })
        .buffered(16)
        .collect()
        .await;
    let mut plan = Plan {
        todo: Vec::new(),
        final_: Vec::new(),
        damaged: Vec::new(),
    };
    for (p, finality) in all.into_iter().zip(finals) {
        match finality {
            Finality::Final => plan.final_.push(p),
            Finality::Damaged => plan.damaged.push(p),
            Finality::NotFinal => plan.todo.push(p),
        }
    }
    plan
}

/// Prints what a run would do (`--dry-run`), on stdout.
pub fn print_plan(cfg: &JobConfig, plan: &Plan) {
    let calls = plan.todo.len();
    let estimate = cfg.min_interval * calls.saturating_sub(1) as u32;
    println!(
        "Plan: {} app(s) × {} day(s) = {} partition(s) into {}",
        cfg.app_ids.len(),
        cfg.days.len(),
        plan.todo.len() + plan.final_.len() + plan.damaged.len(),
        cfg.dest.display()
    );
    for p in &plan.final_ {
        println!("  skip   {p}  (final)");
    }
    for p in &plan.damaged {
        println!(
            "  repair {p}  (final, but its file does not match its manifest: from the raw zone, else fetched)"
        );
    }
    for p in &plan.todo {
        println!("  fetch  {p}");
    }
    println!(
        "{calls} API call(s) at one per {}: about {} (plus retries).",
        humantime::format_duration(cfg.min_interval),
        humantime::format_duration(Duration::from_secs(estimate.as_secs()))
    );
}

enum PartitionResult {
    Written(partition::Written),
    Failed(String),
    /// The app is unknown: fail this and every later partition of it.
    AppFailed(String),
    /// Stop everything.
    Fatal(String),
    Cancelled,
}

fn describe_api_error(e: &ApiError, attempts: u32) -> String {
    let tries = if attempts > 1 {
        format!(" after {attempts} attempts")
    } else {
        String::new()
    };
    match e.class() {
        ErrorClass::ClockSkew => format!(
            "{e}{tries}: the machine's clock is more than 5 minutes off the API's; check the clock (NTP)"
        ),
        _ => format!("{e}{tries}"),
    }
}

async fn export_partition(
    cfg: &JobConfig,
    api: &mut PacedClient,
    cancel: &CancellationToken,
    stats: &mut CallStats,
    p: Partition,
) -> PartitionResult {
    let request = plan::request_for(p.app_id, p.usage_date);
    let usage = match api.call(&request, cancel, stats).await {
        Ok(u) => u,
        Err(CallError::Cancelled) => return PartitionResult::Cancelled,
        Err(CallError::Failed { error, attempts }) => {
            let msg = describe_api_error(&error, attempts);
            return match error.class() {
                ErrorClass::FatalRun | ErrorClass::ClockSkew => PartitionResult::Fatal(msg),
                ErrorClass::FatalApp => PartitionResult::AppFailed(msg),
                _ => PartitionResult::Failed(msg),
            };
        }
    };
    let (app_id, day) = (p.app_id, p.usage_date);
    let mut usage = usage;
    // The answer is kept before anything is built from it: if it cannot be
    // kept, the partition fails rather than exist without its source.
    let raw_object = match usage.compressed_body.take() {
        Some(compressed) => {
            match raw::put(
                &cfg.dest,
                Table::RoomUsage,
                app_id,
                day,
                usage.fetched_at,
                &usage.request_id,
                compressed,
            )
            .await
            {
                Ok(path) => Some(cfg.dest.relative(&path).to_owned()),
                Err(e) => {
                    return PartitionResult::Failed(format!(
                        "RequestId {}: storing the raw response in {}: {e}",
                        usage.request_id,
                        cfg.dest.display()
                    ));
                }
            }
        }
        None => None,
    };
    let call = CallInfo {
        table: Table::RoomUsage,
        app_id,
        day,
        request_id: usage.request_id.clone(),
        fetched_at: usage.fetched_at,
        start_time: request.start_time.clone(),
        end_time: request.end_time.clone(),
        utc_offset: cfg.offset_label(),
        body: BodyInfo {
            bytes: usage.body_bytes as u64,
            sha256: usage.body_sha256.clone(),
        },
        raw_object,
    };
    match partition::write_room_usage(&cfg.dest, cfg.contract, cfg.batch_rows, usage, &call).await {
        Ok(w) => PartitionResult::Written(w),
        Err(msg) => PartitionResult::Failed(msg),
    }
}

/// Runs the export. `provider` is `None` only for a dry run.
pub async fn run(
    cfg: &JobConfig,
    provider: Option<Provider>,
    cancel: CancellationToken,
    progress: &mut dyn Progress,
) -> Summary {
    let started = Instant::now();
    for w in &cfg.warnings {
        warn!("{w}.");
    }
    let mut summary = Summary::new(cfg.app_ids.len() * cfg.days.len());
    let finish = |mut s: Summary| {
        s.elapsed_secs = started.elapsed().as_secs_f64();
        s
    };
    // Before anything else, and before any API call: can we write there?
    // (A dry run writes nothing, so it only reads the manifests.)
    if !cfg.dry_run
        && let Err(e) = cfg.dest.preflight().await
    {
        error!(error = %e, "The destination is not usable; no API call was made.");
        summary.stop(Status::Fatal, Some(e.to_string()), all_partitions(cfg));
        return finish(summary);
    }
    let mut plan = make_plan(cfg).await;
    summary.skipped_final = plan.final_.len();
    if cfg.dry_run {
        print_plan(cfg, &plan);
        summary.status = Status::DryRun;
        return finish(summary);
    }
    info!(
        apps = cfg.app_ids.len(),
        days = cfg.days.len(),
        to_fetch = plan.todo.len(),
        final_ = plan.final_.len(),
        dest = %cfg.dest.display(),
        interval_ms = cfg.min_interval.as_millis() as u64,
        "Starting export."
    );
    if !plan.damaged.is_empty() {
        let damaged = std::mem::take(&mut plan.damaged);
        let mut again = repair_from_raw(cfg, damaged, &mut summary).await;
        again.append(&mut plan.todo);
        again.sort_by_key(|p| {
            (
                p.usage_date,
                cfg.app_ids.iter().position(|a| *a == p.app_id),
            )
        });
        plan.todo = again;
    }
    if plan.todo.is_empty() {
        info!("Every planned partition is already final; nothing to fetch.");
        return finish(summary);
    }
    let provider = provider.expect("credentials are resolved for a real run");
    info!(credentials = %provider.describe(), endpoint = %cfg.api.endpoint, "Using credentials.");
    let mut api = match Client::new(cfg.api.clone(), provider) {
        Ok(client) => PacedClient::new(
            client,
            Pacer::new(cfg.min_interval),
            cfg.retry.clone(),
            Backoff::new(),
        ),
        Err(e) => {
            summary.stop(Status::Fatal, Some(e.to_string()), plan.todo);
            return finish(summary);
        }
    };
    let mut failed_apps: Vec<(u64, String)> = Vec::new();
    let total = plan.todo.len();
    progress.start(total, cfg.min_interval);
    let mut todo = plan.todo.into_iter();
    while let Some(p) = todo.next() {
        if let Some((_, why)) = failed_apps.iter().find(|(a, _)| *a == p.app_id) {
            summary.fail(p, why.clone());
            progress.advance(&summary);
            continue;
        }
        let result = export_partition(cfg, &mut api, &cancel, &mut summary.calls, p).await;
        match result {
            PartitionResult::Written(w) => summary.wrote(w),
            PartitionResult::Failed(msg) => {
                error!(app_id = p.app_id, usage_date = %p.usage_date, error = %msg, "Partition failed.");
                summary.fail(p, msg);
            }
            PartitionResult::AppFailed(msg) => {
                error!(app_id = p.app_id, usage_date = %p.usage_date, error = %msg, "Unknown app; skipping all of its partitions.");
                failed_apps.push((p.app_id, msg.clone()));
                summary.fail(p, msg);
            }
            PartitionResult::Fatal(msg) => {
                error!(app_id = p.app_id, usage_date = %p.usage_date, error = %msg, "Fatal API error; stopping the run.");
                summary.stop(Status::Fatal, Some(msg), std::iter::once(p).chain(todo));
                break;
            }
            PartitionResult::Cancelled => {
                summary.stop(Status::Interrupted, None, std::iter::once(p).chain(todo));
                break;
            }
        }
        progress.advance(&summary);
        if cancel.is_cancelled() {
            summary.stop(Status::Interrupted, None, todo);
            break;
        }
    }
    progress.finish();
    if summary.status == Status::Ok && !summary.failed.is_empty() {
        summary.status = Status::PartitionsFailed;
    }
    if summary.status == Status::Interrupted {
        let left: Vec<String> = summary
            .not_attempted
            .iter()
            .map(|p| p.to_string())
            .collect();
        warn!(
            left = summary.not_attempted.len(),
            partitions = %left.join(" "),
            "Stopped on request at a safe point; rerun the same command to do what is left."
        );
    }
    finish(summary)
}
