//! The export run: plan → skip final partitions → for each remaining
//! (app, day), the calls of every fetched table it needs, each API paced
//! on its own and all made side by side → raw zone → normalize → write →
//! manifest → what is derived from them; then a summary.
//!
//! A partition's failure does not stop the run (exit 1); a fatal API error
//! (credentials, permissions the run needs) does (exit 2); an unknown app
//! fails that app's partitions without further calls, and a key that may
//! not call an opt-in meter's API fails that table's. A stop request
//! (SIGTERM/SIGINT) ends the run at the next safe point: never between a
//! file and its manifest.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::jobs::config::{AccountRun, ChecksMode, JobConfig};
use crate::jobs::derive::{self, Derived};
use crate::jobs::fetch::{Fetched, Outcome};
use crate::jobs::plan;
use crate::jobs::planner::{self, Plan, Todo};
use crate::jobs::progress::Progress;
pub use crate::jobs::summary::{Failure, Partition, PlanReport, Status, Summary};
use crate::jobs::summary::{end_lease, end_status};
use crate::lake::inflight;
use crate::lake::lease::Lease;
use crate::lake::manifest::Manifest;
use crate::lake::marker;
use crate::tables::Table;
use crate::tencent::api::Client;
use crate::tencent::credentials::Provider;
use crate::tencent::pacing::{Backoff, CallStats, PacedClient, Pacer};

/// How long a stop request waits for the partition being written: long
/// enough for any healthy write, short enough for Kubernetes' grace
/// (the CronJob gives 60 s).
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Runs the export: every account of `cfg` side by side, `providers[i]`
/// the credentials of `cfg.accounts[i]` (`None` only for a dry run).
///
/// Before anything else, and before any API call: the destination's
/// preflight (can we write there?), the lake's clock and source; then each
/// account takes the leases of its own apps (is anyone else writing
/// them?), so an app held by another run stops its account only. A dry run
/// writes nothing, so it does none of this.
pub async fn run(
    cfg: &JobConfig,
    providers: Vec<Option<Provider>>,
    cancel: CancellationToken,
    progress: &mut dyn Progress,
) -> Summary {
    let started = Instant::now();
    for w in &cfg.warnings {
        warn!("{w}.");
    }
    let refuse = |msg: String| refused(cfg, msg, started);
    if cfg.dry_run {
        // What the real run would refuse (another source, another clock),
        // the dry run refuses too; on a local lake, where reading costs no
        // request.
        if cfg.dest.is_local()
            && let Err(e) = marker::check(&cfg.dest, cfg.source, cfg.offset).await
        {
            error!("{e}");
            return refuse(e.to_string());
        }
        return accounts(cfg, providers, cancel, progress, started).await;
    }
    let preflight = tokio::select! {
        r = cfg.dest.preflight() => r,
        _ = cancel.cancelled() => {
            let mut s = refuse("stopped before the first write".into());
            s.status = Status::Interrupted;
            s.fatal_error = None;
            return s;
        }
    };
    if let Err(e) = preflight {
        error!(error = %e, "The destination is not usable; no API call was made.");
        return refuse(e.to_string());
    }
    // One source and one clock per lake: another is refused before any
    // lease or write (the preflight's probe is gone again).
    if let Err(e) = marker::claim(&cfg.dest, cfg.source, cfg.offset, &cfg.tables).await {
        error!(error = %e, "The lake refuses this run; no API call was made.");
        return refuse(e.to_string());
    }
    accounts(cfg, providers, cancel, progress, started).await
}

/// The summary of a run (or an account's part of it) refused before its
/// first call: fatal, `msg`, every planned partition not attempted.
fn refused(cfg: &JobConfig, msg: String, started: Instant) -> Summary {
    let mut summary = Summary::new(cfg.app_ids.len() * cfg.days.len() * cfg.tables.len());
    summary.stop(Status::Fatal, Some(msg), planner::all_partitions(cfg));
    summary.elapsed_secs = started.elapsed().as_secs_f64();
    summary
}

/// One account's export under the leases of its apps: a held app stops
/// this account only (the others of the run go on).
async fn leased(
    cfg: &JobConfig,
    provider: Option<Provider>,
    cancel: CancellationToken,
    progress: &mut dyn Progress,
    started: Instant,
) -> Summary {
    if cfg.dry_run {
        return planned(cfg, provider, cancel, progress, started).await;
    }
    let lease = match cfg.lease_ttl {
        None => None,
        Some(ttl) => {
            match Lease::acquire(&cfg.dest, "export", &cfg.app_ids, ttl, cancel.clone()).await {
                Ok(lease) => Some(lease),
                Err(e) => {
                    error!(error = %e, "Cannot take the apps' leases; no API call was made.");
                    return refused(cfg, e.to_string(), started);
                }
            }
        }
    };
    // What an earlier crash left in flight of these apps is cleaned before
    // anything is written (under their leases, so no other run is writing
    // them; other apps' may be another run's, in flight now).
    if let Err(e) = inflight::sweep(&cfg.dest, &cfg.app_ids).await {
        warn!(error = %e, "Cannot clean what an earlier run left in flight; the next run tries again.");
    }
    let mut summary = planned(cfg, provider, cancel, progress, started).await;
    summary.oldest_not_final = oldest_not_final(cfg, &summary, chrono::Utc::now());
    match lease {
        Some(lease) => end_lease(lease, summary).await,
        None => summary,
    }
}

/// The oldest day of the run's range that is not final after it: one with
/// a partition failed or not attempted, or one still settling (its data
/// may still change, so a later run fetches it again).
fn oldest_not_final(
    cfg: &JobConfig,
    summary: &Summary,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<chrono::NaiveDate> {
    cfg.days
        .iter()
        .copied()
        .filter(|&d| {
            !plan::is_final(d, cfg.offset, cfg.settle, now)
                || summary.failed.iter().any(|f| f.usage_date == d)
                || summary.not_attempted.iter().any(|p| p.usage_date == d)
        })
        .min()
}

/// Whether `account`'s part of the run must call the API: a partition of
/// a fetched table that is not final. Recomputing derived partitions, or
/// repairing files from the raw zone, needs no Tencent credentials. Reads
/// manifests only.
pub async fn needs_calls(cfg: &JobConfig, account: &AccountRun) -> bool {
    !planner::make_plan(&cfg.for_account(account))
        .await
        .todo
        .is_empty()
}

/// Every account of the run at once, each with its own pacers (TRTC's
/// limits are per account) and its log lines, progress and summary under
/// its name. Without `--accounts`, the one account as it always ran.
async fn accounts(
    cfg: &JobConfig,
    providers: Vec<Option<Provider>>,
    cancel: CancellationToken,
    progress: &mut dyn Progress,
    started: Instant,
) -> Summary {
    if let [one] = cfg.accounts.as_slice()
        && one.name.is_none()
    {
        let provider = providers.into_iter().next().flatten();
        return leased(cfg, provider, cancel, progress, started).await;
    }
    use tracing::Instrument;
    let configs: Vec<JobConfig> = cfg.accounts.iter().map(|a| cfg.for_account(a)).collect();
    let mut displays: Vec<Box<dyn Progress>> = configs
        .iter()
        .map(|_| crate::jobs::progress::for_account(cfg.progress))
        .collect();
    let runs =
        configs
            .iter()
            .zip(providers)
            .zip(displays.iter_mut())
            .map(|((c, provider), display)| {
                let name = c.accounts[0].name.clone().unwrap_or_default();
                let span = tracing::info_span!("account", account = %name);
                let cancel = cancel.clone();
                async move {
                    let summary = leased(c, provider, cancel, display.as_mut(), started).await;
                    (name, summary)
                }
                .instrument(span)
            });
    let summaries = futures::future::join_all(runs).await;
    let mut all = Summary::of_accounts(summaries);
    all.elapsed_secs = started.elapsed().as_secs_f64();
    all
}

/// The export after its preflight and lease: plan, repair, recompute,
/// fetch.
async fn planned(
    cfg: &JobConfig,
    provider: Option<Provider>,
    cancel: CancellationToken,
    progress: &mut dyn Progress,
    started: Instant,
) -> Summary {
    let mut summary = Summary::new(cfg.app_ids.len() * cfg.days.len() * cfg.tables.len());
    let finish = |mut s: Summary| {
        s.elapsed_secs = started.elapsed().as_secs_f64();
        s
    };
    let mut plan = planner::make_plan(cfg).await;
    for (table, _) in &plan.final_ {
        summary.skipped(*table, 1);
    }
    if cfg.dry_run {
        summary.plan = Some(planner::report(cfg, &plan, cfg.dest.is_local()));
        summary.status = Status::DryRun;
        return finish(summary);
    }
    let calls: Vec<String> = plan
        .calls(cfg)
        .iter()
        .map(|(f, n)| format!("{}={n}", f.action()))
        .collect();
    info!(
        apps = cfg.app_ids.len(),
        days = cfg.days.len(),
        tables = %cfg.tables.iter().map(|t| t.name()).collect::<Vec<_>>().join(","),
        calls = %calls.join(","),
        already_final = plan.final_.len(),
        dest = %cfg.dest.display(),
        interval_ms = cfg.min_interval.as_millis() as u64,
        "Starting export."
    );
    repair(cfg, &mut plan, &mut summary).await;
    let derived = cfg.derived();
    if !recompute(cfg, &derived, &mut plan, &cancel, progress, &mut summary).await {
        return finish(summary);
    }
    summary.steps_done = 0;
    if plan.todo.is_empty() {
        info!("Every planned partition is already final; nothing to fetch.");
        return finish(end_status(cfg.checks == ChecksMode::Fail, summary));
    }
    let summary = fetch_all(cfg, provider, plan, &derived, cancel, progress, summary).await;
    finish(summary)
}

/// Rebuilds the plan's damaged final partitions from the raw zone; those
/// that cannot be are fetched. What is derived from a repaired partition
/// is current, or computed again (never left out of the run's count).
async fn repair(cfg: &JobConfig, plan: &mut Plan, summary: &mut Summary) {
    if plan.damaged.is_empty() {
        return;
    }
    let damaged = std::mem::take(&mut plan.damaged);
    let fetch = planner::repair_from_raw(cfg, damaged.clone(), summary, &mut plan.manifests).await;
    let counted = plan.final_.len();
    for (table, p) in damaged.iter().filter(|d| !fetch.contains(d)) {
        planner::classify_derived(cfg, plan, &[*p], Some(*table)).await;
    }
    for (table, _) in &plan.final_[counted..] {
        summary.skipped(*table, 1);
    }
    for (table, p) in fetch {
        plan.fetch(cfg, table, p);
    }
    // A repaired input has a new manifest: what is derived from it is
    // computed again with the fetched ones, or from the lake below.
    let todo = &plan.todo;
    plan.recheck
        .retain(|(_, p)| !todo.iter().any(|t| t.p == *p));
}

/// Computes the derived partitions whose inputs are all final, with no
/// call (nor a second read of their manifests: the plan has them). A new
/// price list over a long range is long work: it shows progress and stops
/// at a stop request, between partitions. `false` when it stopped (the
/// summary says so).
async fn recompute(
    cfg: &JobConfig,
    derived: &[Box<dyn Derived>],
    plan: &mut Plan,
    cancel: &CancellationToken,
    progress: &mut dyn Progress,
    summary: &mut Summary,
) -> bool {
    let cx = cfg.derive_context();
    let recheck = std::mem::take(&mut plan.recheck);
    if !recheck.is_empty() {
        progress.start(recheck.len(), "derived partitions", Duration::ZERO);
    }
    let mut left = recheck.into_iter();
    while let Some((table, p)) = left.next() {
        if cancel.is_cancelled() {
            let rest = std::iter::once(p).chain(left.map(|(_, p)| p));
            summary.stop(
                Status::Interrupted,
                None,
                rest.chain(plan.todo.iter().map(|t| t.p)),
            );
            progress.finish();
            let stopped = std::mem::replace(summary, Summary::new(0));
            *summary = end_status(cfg.checks == ChecksMode::Fail, stopped);
            warn_left(summary);
            return false;
        }
        let Some(d) = derived.iter().find(|d| d.table() == table) else {
            continue;
        };
        let awaited = |t| plan.awaits(cfg, t, p);
        if let Some(inputs) = derive::inputs_of(table, p, awaited, |t| plan.manifests.get(&(t, p)))
        {
            derive::derive(d.as_ref(), &cx, p, &inputs, summary).await;
        }
        summary.steps_done += 1;
        progress.advance(summary);
    }
    true
}

/// One paced client per fetched table the run fills (each its API's
/// limit), sharing one signed client: TRTC's limits are per account and
/// API, and never one API slows another.
fn paced_clients(cfg: &JobConfig, client: Arc<Client>) -> Vec<(&'static dyn Fetched, PacedClient)> {
    planner::fetched_tables(cfg)
        .map(|f| {
            let interval = f.limit().interval(cfg.min_interval, cfg.app_min_interval);
            let api = PacedClient::new(
                client.clone(),
                Pacer::new(interval),
                cfg.retry.clone(),
                Backoff::new(),
            );
            (f, api)
        })
        .collect()
}

/// What the steps so far have ruled out for this account: apps unknown
/// to the API, tables its key may not fetch.
#[derive(Default)]
struct Ruled {
    apps: Vec<(u64, String)>,
    tables: Vec<(Table, String)>,
}

/// The fetch steps, (app, day) by (app, day), under the account's keys.
async fn fetch_all(
    cfg: &JobConfig,
    provider: Option<Provider>,
    mut plan: Plan,
    derived: &[Box<dyn Derived>],
    cancel: CancellationToken,
    progress: &mut dyn Progress,
    mut summary: Summary,
) -> Summary {
    // Keys are found before the run; a run that had none is let through
    // only when it had nothing to fetch (see [`needs_calls`]): a repair
    // that could not use the raw zone still needs the API.
    let Some(provider) = provider else {
        summary.stop(
            Status::Fatal,
            Some(
                "no Tencent credentials, and this run must call the API (a damaged partition \
                 has no raw answer to rebuild it from): set TENCENTCLOUD_SECRET_ID and \
                 TENCENTCLOUD_SECRET_KEY"
                    .into(),
            ),
            plan.todo.iter().map(|t| t.p),
        );
        return summary;
    };
    info!(credentials = %provider.describe(), endpoint = %cfg.api.endpoint, "Using credentials.");
    let client = match Client::new(cfg.api.clone(), provider) {
        Ok(client) => Arc::new(client),
        Err(e) => {
            summary.stop(
                Status::Fatal,
                Some(e.to_string()),
                plan.todo.iter().map(|t| t.p),
            );
            return summary;
        }
    };
    let mut apis = paced_clients(cfg, client);
    let mut ruled = Ruled::default();
    progress.start(plan.todo.len(), "app-days", cfg.min_interval);
    let mut todo = std::mem::take(&mut plan.todo).into_iter();
    while let Some(t) = todo.next() {
        let p = t.p;
        let step = step(
            cfg,
            &plan,
            &t,
            &mut apis,
            derived,
            &cancel,
            &mut ruled,
            &mut summary,
        )
        .await;
        let stop = match step {
            Step::Go => None,
            Step::Fatal(msg) => Some((Status::Fatal, Some(msg), None)),
            Step::Cancelled => Some((Status::Interrupted, None, Some(p))),
        };
        if let Some((status, msg, this)) = stop {
            summary.stop(status, msg, this.into_iter().chain(todo.map(|t| t.p)));
            break;
        }
        progress.advance(&summary);
        if cancel.is_cancelled() {
            summary.stop(Status::Interrupted, None, todo.map(|t| t.p));
            break;
        }
    }
    progress.finish();
    let summary = end_status(cfg.checks == ChecksMode::Fail, summary);
    warn_left(&summary);
    summary
}

/// What one (app, day) step ended in, for the run.
enum Step {
    Go,
    Fatal(String),
    Cancelled,
}

/// One (app, day): every table it fetches, each through its API's pacer,
/// side by side (the usage APIs' calls are made while the room call waits
/// for its slot, costing no wall time); then what is derived from what it
/// wrote.
#[allow(clippy::too_many_arguments)]
async fn step(
    cfg: &JobConfig,
    plan: &Plan,
    t: &Todo,
    apis: &mut [(&'static dyn Fetched, PacedClient)],
    derived: &[Box<dyn Derived>],
    cancel: &CancellationToken,
    ruled: &mut Ruled,
    summary: &mut Summary,
) -> Step {
    let p = t.p;
    // An unknown app fails its partitions, a key that may not call an
    // API its table's, with no further call.
    let refused = |table: Table| {
        let app = ruled.apps.iter().find(|(a, _)| *a == p.app_id);
        let table = ruled.tables.iter().find(|(t, _)| *t == table);
        app.map(|(_, why)| why.clone())
            .or_else(|| table.map(|(_, why)| why.clone()))
    };
    let mut fetching = Vec::new();
    for table in &t.tables {
        match refused(*table) {
            Some(why) => summary.fail(*table, p, why),
            None => fetching.push(*table),
        }
    }
    let cx = cfg.fetch_context();
    let mut stats: Vec<CallStats> = vec![CallStats::default(); apis.len()];
    let calls = apis
        .iter_mut()
        .zip(stats.iter_mut())
        .filter(|((f, _), _)| fetching.contains(&f.table()))
        .map(|((f, api), stats)| {
            let cx = &cx;
            async move { (f.table(), f.export(cx, api, cancel, stats, p).await) }
        });
    // A stop request lets the step finish (never a file without its
    // manifest), but only for STOP_GRACE: a store or an API that stalls
    // must not hold the stop for minutes. An abandoned write is left
    // under its in-flight name and its intent, for the next run.
    let results = tokio::select! {
        r = futures::future::join_all(calls) => r,
        _ = async {
            cancel.cancelled().await;
            tokio::time::sleep(STOP_GRACE).await;
        } => {
            warn!(app_id = p.app_id, usage_date = %p.usage_date, grace_secs = STOP_GRACE.as_secs(), "The store or the API did not finish within the stop's grace; abandoning the partition (the next run completes it).");
            return Step::Cancelled;
        }
    };
    for ((f, _), stats) in apis.iter().zip(&stats) {
        if cfg.tables.contains(&f.table()) {
            summary.action_calls(f.action(), stats);
        }
    }
    let mut step = Step::Go;
    let mut written: Vec<(Table, Manifest)> = Vec::new();
    for (table, outcome) in results {
        if let Some(m) = record(table, p, outcome, summary, ruled, &mut step) {
            written.push((table, m));
        }
    }
    derive_step(cfg, plan, t, derived, &written, summary).await;
    summary.steps_done += 1;
    step
}

/// Computes again what is derived from a partition the step wrote, from
/// it and the final inputs the plan holds.
async fn derive_step(
    cfg: &JobConfig,
    plan: &Plan,
    t: &Todo,
    derived: &[Box<dyn Derived>],
    written: &[(Table, Manifest)],
    summary: &mut Summary,
) {
    let p = t.p;
    let cx = cfg.derive_context();
    let written = |table: Table| written.iter().find(|(t, _)| *t == table).map(|(_, m)| m);
    for d in derived {
        let table = d.table();
        if !table.all_inputs().any(|i| written(i).is_some()) {
            continue;
        }
        // An input this step fetched and failed is missing, not final.
        let awaited = |t| plan.awaits(cfg, t, p);
        let inputs = derive::inputs_of(table, p, awaited, |i| {
            written(i).or_else(|| {
                (!t.fetches(i))
                    .then(|| plan.manifests.get(&(i, p)))
                    .flatten()
            })
        });
        if let Some(inputs) = inputs {
            derive::derive(d.as_ref(), &cx, p, &inputs, summary).await;
        }
    }
}

/// Records one table's outcome of a step; returns the manifest written.
fn record(
    table: Table,
    p: Partition,
    outcome: Outcome,
    summary: &mut Summary,
    ruled: &mut Ruled,
    step: &mut Step,
) -> Option<Manifest> {
    match outcome {
        Outcome::Written(w) => {
            summary.wrote(&w);
            return Some(w.manifest.clone());
        }
        Outcome::Failed(msg) => {
            error!(%table, app_id = p.app_id, usage_date = %p.usage_date, error = %msg, "Partition failed.");
            summary.fail(table, p, msg);
        }
        Outcome::AppFailed(msg) => {
            error!(%table, app_id = p.app_id, usage_date = %p.usage_date, error = %msg, "Unknown app; skipping all of its partitions.");
            if !ruled.apps.iter().any(|(a, _)| *a == p.app_id) {
                ruled.apps.push((p.app_id, msg.clone()));
            }
            summary.fail(table, p, msg);
        }
        Outcome::TableFailed(msg) => {
            error!(%table, app_id = p.app_id, usage_date = %p.usage_date, error = %msg, "Permission missing; skipping the table's other partitions for this account.");
            if !ruled.tables.iter().any(|(t, _)| *t == table) {
                ruled.tables.push((table, msg.clone()));
            }
            summary.fail(table, p, msg);
        }
        Outcome::Fatal(msg) => {
            // Another call of the step met it too (its keys refused, as
            // every call is signed alike): one line says it.
            if matches!(step, Step::Fatal(_)) {
                debug!(%table, app_id = p.app_id, usage_date = %p.usage_date, error = %msg, "The step's other call failed fatally too.");
                summary.fail(table, p, msg);
            } else {
                error!(%table, app_id = p.app_id, usage_date = %p.usage_date, error = %msg, "Fatal API error; stopping the run.");
                summary.fail(table, p, msg.clone());
                *step = Step::Fatal(msg);
            }
        }
        Outcome::Cancelled => {
            if !matches!(step, Step::Fatal(_)) {
                *step = Step::Cancelled;
            }
        }
    }
    None
}

/// After a stop: one line naming what is left to do.
fn warn_left(summary: &Summary) {
    if summary.status == Status::Interrupted {
        let left: Vec<String> = summary
            .not_attempted
            .iter()
            .map(|p| p.to_string())
            .collect();
        warn!(
            left = summary.not_attempted.len(),
            partitions = %left.join(" "),
            "Stopped at a safe point (a stop request, or a lease this run could not keep); rerun the same command to do what is left."
        );
    }
}
