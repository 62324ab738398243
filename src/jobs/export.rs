//! The export run: plan → skip final partitions → for each remaining
//! (app, day), its `DescribeTrtcRoomUsage` and `DescribeTrtcUsage` calls,
//! each paced on its own and made side by side → raw zone → normalize →
//! write → manifest → the day's check; then a summary.
//!
//! A partition's failure does not stop the run (exit 1); a fatal API error
//! (credentials, permissions) does (exit 2); an unknown app fails that app's
//! partitions without further calls. A stop request (SIGTERM/SIGINT) ends
//! the run at the next safe point: never between a file and its manifest.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::jobs::config::{AccountRun, ChecksMode, JobConfig};
use crate::jobs::derive;
use crate::jobs::partition::{self, Problem};
use crate::jobs::plan;
use crate::jobs::progress::Progress;
use crate::jobs::rebuild;
pub use crate::jobs::summary::{Failure, Partition, Status, Summary};
use crate::lake::inflight;
use crate::lake::lease::Lease;
use crate::lake::manifest::{self, Manifest};
use crate::lake::marker;
use crate::lake::raw;
use crate::lake::write::{CallInfo, Encoded};
use crate::tables::Table;
use crate::tencent::api::{ApiError, Client, ErrorClass};
use crate::tencent::credentials::Provider;
use crate::tencent::pacing::{Answer, Backoff, Call, CallError, CallStats, PacedClient, Pacer};

/// How long a stop request waits for the partition being written: long
/// enough for any healthy write, short enough for Kubernetes' grace
/// (the CronJob gives 60 s).
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// What one (app, day) of the plan needs: a call to either API, a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Todo {
    pub p: Partition,
    /// Fetch `room_usage` (one `DescribeTrtcRoomUsage` call).
    pub room: bool,
    /// Fetch `app_usage` (one `DescribeTrtcUsage` call).
    pub app: bool,
}

impl Todo {
    /// Whether this step fetches `table`.
    fn fetches(&self, table: Table) -> bool {
        match table {
            Table::RoomUsage => self.room,
            Table::AppUsage => self.app,
            _ => false,
        }
    }
}

/// The plan of a run: what to fetch, what to check, what is already final.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// (app, day)s with at least one call to make, day by day.
    pub todo: Vec<Todo>,
    /// Derived partitions whose inputs are final but which are missing or
    /// were computed from other inputs or settings: computed again, with no
    /// call.
    pub recheck: Vec<(Table, Partition)>,
    /// Final partitions per table, skipped.
    pub final_: Vec<(Table, Partition)>,
    /// Final by their manifests, but the file is missing or not the size
    /// its manifest says: rebuilt from the raw zone, else fetched again.
    pub damaged: Vec<(Table, Partition)>,
    /// The manifests of final partitions of the fetched tables, for checks.
    pub manifests: HashMap<(Table, Partition), Manifest>,
}

impl Plan {
    fn room_calls(&self) -> usize {
        self.todo.iter().filter(|t| t.room).count()
    }

    fn app_calls(&self) -> usize {
        self.todo.iter().filter(|t| t.app).count()
    }
}

/// Whether a final partition's file is there with its manifest's size
/// (one metadata request), or, under `--verify`, its SHA-256 too (reads
/// the file).
async fn file_matches(cfg: &JobConfig, table: Table, p: Partition, m: &Manifest) -> bool {
    let Some(problem) = manifest::file_problem(&cfg.dest, table, m, cfg.verify).await else {
        return true;
    };
    match (&problem, cfg.verify) {
        (_, true) => {
            warn!(%table, app_id = p.app_id, usage_date = %p.usage_date, problem = %problem, "A final partition's file does not match its manifest; repairing it.");
        }
        (manifest::FileProblem::Size { size, manifest }, false) => {
            warn!(%table, app_id = p.app_id, usage_date = %p.usage_date, size, manifest_size = manifest, "A final partition's file is not the size its manifest says; repairing it.");
        }
        (_, false) => {
            warn!(%table, app_id = p.app_id, usage_date = %p.usage_date, error = %problem, "A final partition's file is missing or unreadable; repairing it.");
        }
    }
    false
}

enum Finality {
    Final(Box<Manifest>),
    NotFinal,
    Damaged,
}

/// Rebuilds each damaged final partition from the raw answer its manifest
/// names (else its newest), with no API call; returns those that could
/// not be (to fetch again). A
/// repaired partition's new manifest joins `manifests`, so what is derived
/// from it is computed again in this run.
async fn repair_from_raw(
    cfg: &JobConfig,
    damaged: Vec<(Table, Partition)>,
    summary: &mut Summary,
    manifests: &mut HashMap<(Table, Partition), Manifest>,
) -> Vec<(Table, Partition)> {
    let mut fetch = Vec::new();
    for (table, p) in damaged {
        // The answer the manifest names (checked), else the newest; with
        // no raw answer at all, fetched again.
        let source = match raw::newest(&cfg.dest, table, p.app_id, p.usage_date).await {
            Ok(None) => Ok(None),
            Ok(newest) => rebuild::source_of(&cfg.dest, table, p, newest).await,
            Err(e) => Err(e.to_string()),
        };
        let source = match source {
            Ok(Some(source)) => source,
            Ok(None) => {
                warn!(%table, app_id = p.app_id, usage_date = %p.usage_date, "No raw answer to rebuild the damaged partition from; fetching it again.");
                fetch.push((table, p));
                continue;
            }
            Err(e) => {
                warn!(%table, app_id = p.app_id, usage_date = %p.usage_date, error = %e, "Cannot read the raw answer of the damaged partition; fetching it again.");
                fetch.push((table, p));
                continue;
            }
        };
        match rebuild::from_raw(
            &cfg.dest,
            cfg.contract,
            &cfg.encoding,
            cfg.offset,
            table,
            p,
            &source,
        )
        .await
        {
            Ok(w) => {
                info!(%table, app_id = p.app_id, usage_date = %p.usage_date, raw_object = %cfg.dest.relative(&source.object.path), "Rebuilt a damaged partition from the raw zone.");
                summary.wrote(&w);
                manifests.insert((table, p), w.manifest);
            }
            Err(e) => {
                warn!(%table, app_id = p.app_id, usage_date = %p.usage_date, error = %e, "Cannot rebuild the damaged partition from the raw zone; fetching it again.");
                fetch.push((table, p));
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

/// Whether this run fills `table`.
fn fills(cfg: &JobConfig, table: Table) -> bool {
    cfg.tables.contains(&table)
}

/// Reads the manifests of `table`'s planned partitions, 16 at a time.
async fn finality(cfg: &JobConfig, table: Table, all: &[Partition]) -> Vec<Finality> {
    futures::stream::iter(all.iter().copied())
        .map(|p| async move {
            match manifest::read(&cfg.dest, table, p.app_id, p.usage_date).await {
                Ok(Some(m)) if plan::is_final(p.usage_date, cfg.offset, cfg.settle, m.fetched_at) => {
                    if file_matches(cfg, table, p, &m).await {
                        Finality::Final(Box::new(m))
                    } else {
                        Finality::Damaged
                    }
                }
                Ok(_) => Finality::NotFinal,
                Err(e) => {
                    warn!(%table, app_id = p.app_id, usage_date = %p.usage_date, error = %e, "Cannot read the manifest; the partition will be fetched again.");
                    Finality::NotFinal
                }
            }
        })
        .buffered(16)
        .collect()
        .await
}

/// Splits the plan into partitions to fetch, to check and already final.
pub async fn make_plan(cfg: &JobConfig) -> Plan {
    let all = all_partitions(cfg);
    let mut plan = Plan::default();
    let fetched: Vec<Table> = [Table::RoomUsage, Table::AppUsage]
        .into_iter()
        .filter(|t| fills(cfg, *t))
        .collect();
    let mut need: HashMap<(Table, Partition), bool> = HashMap::new();
    for &table in &fetched {
        let no_lookup = cfg.dry_run && (!cfg.dest.is_local() || cfg.dest.is_absent());
        let states = if cfg.force || no_lookup {
            all.iter().map(|_| Finality::NotFinal).collect()
        } else {
            finality(cfg, table, &all).await
        };
        for (&p, state) in all.iter().zip(states) {
            let fetch = match state {
                Finality::Final(m) => {
                    plan.final_.push((table, p));
                    plan.manifests.insert((table, p), *m);
                    false
                }
                Finality::Damaged => {
                    plan.damaged.push((table, p));
                    false
                }
                Finality::NotFinal => true,
            };
            need.insert((table, p), fetch);
        }
    }
    for &p in &all {
        let room = need.get(&(Table::RoomUsage, p)).copied().unwrap_or(false);
        let app = need.get(&(Table::AppUsage, p)).copied().unwrap_or(false);
        if room || app {
            plan.todo.push(Todo { p, room, app });
        }
    }
    if cfg.dest.is_local() || !cfg.dry_run {
        classify_derived(cfg, &mut plan, &all, None).await;
    }
    plan
}

/// For each of `partitions` whose inputs are all final in `plan` (or only
/// those that read `changed`): is each derived partition current (skipped
/// as final) or to be computed again (`recheck`)? 16 manifests read at a
/// time, as for the inputs.
async fn classify_derived(
    cfg: &JobConfig,
    plan: &mut Plan,
    partitions: &[Partition],
    changed: Option<Table>,
) {
    for d in cfg.derived() {
        let table = d.table();
        if changed.is_some_and(|c| !table.inputs().contains(&c)) {
            continue;
        }
        let ready: Vec<(Partition, derive::Inputs)> = partitions
            .iter()
            .filter_map(|&p| {
                derive::inputs_of(table, p, |t| plan.manifests.get(&(t, p))).map(|i| (p, i))
            })
            .collect();
        let d = d.as_ref();
        let current: Vec<(Partition, bool)> = futures::stream::iter(ready)
            .map(|(p, inputs)| async move {
                let current =
                    !cfg.force && derive::is_current(d, &cfg.dest, p, &inputs, cfg.verify).await;
                (p, current)
            })
            .buffered(16)
            .collect()
            .await;
        for (p, current) in current {
            if plan.recheck.contains(&(table, p)) || plan.final_.contains(&(table, p)) {
                continue;
            }
            if current {
                plan.final_.push((table, p));
            } else {
                plan.recheck.push((table, p));
            }
        }
    }
}

/// What a dry run shows: every partition and what a run would do with it,
/// the calls per API and the wall time they take. On stdout: as text lines
/// before the summary, or inside the one JSON summary under `--log-format
/// json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlanReport {
    pub dest: String,
    pub apps: usize,
    pub days: usize,
    pub tables: Vec<Table>,
    pub partitions: Vec<PlannedPartition>,
    pub room_calls: usize,
    pub app_calls: usize,
    pub room_interval_ms: u64,
    pub app_interval_ms: u64,
    /// `(room_calls − 1) × --min-interval`: the app calls are made inside
    /// the room calls' waits. Retries come on top.
    pub estimated_secs: u64,
    /// Whether the lake's manifests were read to find final partitions
    /// (not on S3: a dry run makes no request).
    pub finality_checked: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PlannedPartition {
    pub table: Table,
    pub app_id: u64,
    pub usage_date: chrono::NaiveDate,
    /// `fetch`, `skip` (final), `repair` (final, but its file does not match
    /// its manifest), `check` (recomputed from final inputs, no call).
    pub action: &'static str,
}

impl PlanReport {
    /// Two accounts' plans as one: their partitions and calls; the time
    /// of the longer, since accounts run side by side.
    pub fn merge(mut self, other: PlanReport) -> PlanReport {
        self.apps += other.apps;
        self.partitions.extend(other.partitions);
        self.room_calls += other.room_calls;
        self.app_calls += other.app_calls;
        self.estimated_secs = self.estimated_secs.max(other.estimated_secs);
        self.finality_checked &= other.finality_checked;
        self
    }

    fn new(cfg: &JobConfig, plan: &Plan, finality_checked: bool) -> Self {
        let (room_calls, app_calls) = (plan.room_calls(), plan.app_calls());
        let estimate = if room_calls > 0 {
            plan::wall_time(room_calls, cfg.min_interval)
        } else {
            plan::wall_time(app_calls, cfg.app_min_interval)
        };
        let mut partitions = Vec::new();
        let mut push = |table, p: &Partition, action| {
            partitions.push(PlannedPartition {
                table,
                app_id: p.app_id,
                usage_date: p.usage_date,
                action,
            })
        };
        for (table, p) in &plan.final_ {
            push(*table, p, "skip");
        }
        for (table, p) in &plan.damaged {
            push(*table, p, "repair");
        }
        let derived = cfg.derived();
        let action = |table: Table| {
            derived
                .iter()
                .find(|d| d.table() == table)
                .map_or("compute", |d| d.plan_action())
        };
        for t in &plan.todo {
            if t.room {
                push(Table::RoomUsage, &t.p, "fetch");
            }
            if t.app {
                push(Table::AppUsage, &t.p, "fetch");
            }
            // What is derived from a table this step fetches.
            for d in &derived {
                if d.table().inputs().iter().any(|&i| t.fetches(i)) {
                    push(d.table(), &t.p, d.plan_action());
                }
            }
        }
        for (table, p) in &plan.recheck {
            push(*table, p, action(*table));
        }
        PlanReport {
            dest: cfg.dest.display().to_owned(),
            apps: cfg.app_ids.len(),
            days: cfg.days.len(),
            tables: cfg.tables.clone(),
            partitions,
            room_calls,
            app_calls,
            room_interval_ms: cfg.min_interval.as_millis() as u64,
            app_interval_ms: cfg.app_min_interval.as_millis() as u64,
            estimated_secs: estimate.as_secs(),
            finality_checked,
        }
    }

    /// The text form, one line per partition.
    pub fn render(&self) -> String {
        let tables: Vec<&str> = self.tables.iter().map(|t| t.name()).collect();
        let mut out = format!(
            "Plan: {} app(s) × {} day(s) × {} table(s) ({}) into {}\n",
            self.apps,
            self.days,
            self.tables.len(),
            tables.join(", "),
            self.dest
        );
        for p in &self.partitions {
            let why = match p.action {
                "skip" => "  (final)",
                "repair" => {
                    "  (final, but its file does not match its manifest: from the raw zone, else fetched)"
                }
                _ => "",
            };
            out.push_str(&format!(
                "  {:<6} {}/app_id={}/usage_date={}{why}\n",
                p.action, p.table, p.app_id, p.usage_date
            ));
        }
        if !self.finality_checked {
            out.push_str("  (final partitions are not looked up on S3 in a dry run, which makes no request; a real run skips them)\n");
        }
        let fmt = |ms: u64| humantime::format_duration(Duration::from_millis(ms)).to_string();
        out.push_str(&format!(
            "{} DescribeTrtcRoomUsage call(s) at one per {} and {} DescribeTrtcUsage call(s) at one per {} (made while the room calls wait): about {} (plus retries).\n",
            self.room_calls,
            fmt(self.room_interval_ms),
            self.app_calls,
            fmt(self.app_interval_ms),
            humantime::format_duration(Duration::from_secs(self.estimated_secs))
        ));
        out
    }
}

enum PartitionResult {
    Written(Box<partition::Written>),
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

/// What a paced call's failure means for its partition.
fn call_failed(e: CallError) -> PartitionResult {
    match e {
        CallError::Cancelled => PartitionResult::Cancelled,
        CallError::Failed { error, attempts } => {
            let msg = describe_api_error(&error, attempts);
            match error.class() {
                ErrorClass::FatalRun | ErrorClass::ClockSkew => PartitionResult::Fatal(msg),
                ErrorClass::FatalApp => PartitionResult::AppFailed(msg),
                _ => PartitionResult::Failed(msg),
            }
        }
    }
}

/// Bodies up to this size are digested on the async thread; larger ones
/// on a blocking one.
const INLINE_DIGEST_LIMIT: u64 = 64 * 1024;

/// Digests an answer's body — its SHA-256, for the manifest — and keeps it
/// in the raw zone at `path`, compressed (a piece at a time, from the
/// spool). It runs while the partition's file is encoded and must succeed
/// before that file is committed: if the answer cannot be kept, the
/// partition fails rather than exist without its source (and the run
/// stops, if the spool cannot be written).
async fn digest_and_keep(
    cfg: &JobConfig,
    app_id: u64,
    path: Option<&object_store::path::Path>,
    answer: &impl Answer,
) -> Result<String, Problem> {
    let level = path.and(cfg.raw_level);
    let body = answer.spooled_body();
    let spool = cfg.encoding.outputs.clone();
    // Begun while the body downloaded, at the same level (the client's
    // `raw_level` is this run's), when the body was large enough to gain.
    let early = match answer.take_digest() {
        // The thread sends before it ends: a closed channel is a panic.
        Some(handle) => handle.await.expect("hashing and zstd do not panic"),
        None => Ok(None),
    };
    let digested = if let Some(done) = early.transpose() {
        done
    } else if body.len() > INLINE_DIGEST_LIMIT {
        tokio::task::spawn_blocking(move || raw::digest(body, level, &spool))
            .await
            .expect("hashing and zstd do not panic")
    } else {
        raw::digest(body, level, &spool)
    };
    let failed = |e: String| {
        format!(
            "RequestId {}: storing the raw response in {}: {e}",
            answer.request_id(),
            cfg.dest.display()
        )
    };
    let (sha256, compressed) = digested.map_err(|e| {
        let message = match path {
            Some(_) => failed(format!("compressing it: {e}")),
            // Under --raw off only the hash was taken.
            None => format!(
                "RequestId {}: reading the spooled response: {e}",
                answer.request_id()
            ),
        };
        Problem::of(&e, message)
    })?;
    if let (Some(path), Some(compressed)) = (path, compressed) {
        raw::put(&cfg.dest, app_id, path, compressed)
            .await
            .map_err(|e| Problem::of(&e, failed(e.to_string())))?;
    }
    Ok(sha256)
}

/// One partition of a fetched table: its intent, the paced call, then the
/// raw zone and `encode` (the table's normalizer and Parquet file) side by
/// side, then the file and its manifest.
#[allow(clippy::too_many_arguments)]
async fn export_partition<R: Call>(
    cfg: &JobConfig,
    api: &mut PacedClient,
    cancel: &CancellationToken,
    stats: &mut CallStats,
    p: Partition,
    table: Table,
    request: R,
    encode: impl AsyncFnOnce(&R::Answer, &CallInfo) -> Result<Encoded, Problem>,
) -> PartitionResult {
    if let Err(msg) = inflight::begin(&cfg.dest, table, p.app_id, p.usage_date).await {
        return PartitionResult::Failed(msg);
    }
    let result = async {
        let answer = match api.call(&request, cancel, stats).await {
            Ok(a) => a,
            Err(e) => return call_failed(e),
        };
        let raw_path = cfg.raw_level.map(|_| {
            raw::path_for(
                &cfg.dest,
                table,
                p.app_id,
                p.usage_date,
                answer.fetched_at(),
                answer.request_id(),
            )
        });
        // The body's SHA-256 is known once it is digested, next to the
        // encoding; the manifest gets it then.
        let mut call = partition::call_info(
            table,
            p,
            &answer,
            request.window(),
            cfg.offset_label(),
            raw_path.as_ref().map(|r| cfg.dest.relative(r).to_owned()),
            String::new(),
        );
        let received = answer.response_at().elapsed();
        let started = std::time::Instant::now();
        let ((kept, digest_time), (encoded, encode_time)) = tokio::join!(
            async {
                let kept = digest_and_keep(cfg, p.app_id, raw_path.as_ref(), &answer).await;
                (kept, started.elapsed())
            },
            async {
                let encoded = encode(&answer, &call).await;
                (encoded, started.elapsed())
            }
        );
        debug!(
            %table,
            app_id = p.app_id,
            usage_date = %p.usage_date,
            received_ms = received.as_millis() as u64,
            raw_ms = digest_time.as_millis() as u64,
            encode_ms = encode_time.as_millis() as u64,
            "Answer received, digested, kept and encoded."
        );
        // A spool that cannot be written stops the run, whichever side met
        // it; any other problem fails this partition only.
        let (sha256, encoded) = match (kept, encoded) {
            (Ok(sha256), Ok(encoded)) => (sha256, encoded),
            (Err(Problem::Run(msg)), _) | (_, Err(Problem::Run(msg))) => {
                return PartitionResult::Fatal(msg);
            }
            (Err(Problem::Partition(msg)), _) | (_, Err(Problem::Partition(msg))) => {
                return PartitionResult::Failed(msg);
            }
        };
        if let Some(body) = call.body.as_mut() {
            body.sha256 = sha256;
        }
        if let Some(msg) = empty_answer_of_a_forgotten_day(cfg, table, p, &call, &encoded).await {
            return PartitionResult::Failed(msg);
        }
        let body_bytes = answer.body_bytes();
        match partition::commit(&cfg.dest, &call, encoded, answer.response_at(), body_bytes).await {
            Ok(w) => PartitionResult::Written(Box::new(w)),
            Err(msg) => PartitionResult::Failed(msg),
        }
    }
    .await;
    inflight::end(&cfg.dest, table, p.app_id, p.usage_date).await;
    result
}

/// Why an answer with no rows must not replace partition `p`: the day is
/// older than the API keeps and the partition holds rows (the API forgot
/// the day; the lake is its only memory). The answer stays in the raw
/// zone. `None` when the answer may be written.
async fn empty_answer_of_a_forgotten_day(
    cfg: &JobConfig,
    table: Table,
    p: Partition,
    call: &CallInfo,
    encoded: &Encoded,
) -> Option<String> {
    if encoded.rows > 0 || !plan::is_forgotten(p.usage_date, cfg.offset, chrono::Utc::now()) {
        return None;
    }
    let old = manifest::read(&cfg.dest, table, p.app_id, p.usage_date)
        .await
        .ok()
        .flatten()
        .filter(|m| m.rows > 0)?;
    Some(format!(
        "RequestId {} answers {} with no rows, but the partition holds {} rows from RequestId \
         {}, and the API keeps only about 3 months: the partition keeps its rows (the empty \
         answer is kept in the raw zone); delete the partition to accept an empty day",
        call.request_id, p.usage_date, old.rows, old.request_id
    ))
}

/// One `room_usage` partition.
async fn export_room(
    cfg: &JobConfig,
    api: &mut PacedClient,
    cancel: &CancellationToken,
    stats: &mut CallStats,
    p: Partition,
) -> PartitionResult {
    let request = plan::request_for(p.app_id, p.usage_date);
    export_partition(
        cfg,
        api,
        cancel,
        stats,
        p,
        Table::RoomUsage,
        request,
        async |usage, call| {
            partition::encode_room_usage(&cfg.dest, cfg.contract, &cfg.encoding, usage, call).await
        },
    )
    .await
}

/// One `app_usage` partition (its calls have their own pacer).
async fn export_app(
    cfg: &JobConfig,
    api: &mut PacedClient,
    cancel: &CancellationToken,
    stats: &mut CallStats,
    p: Partition,
) -> PartitionResult {
    let request = plan::app_request_for(p.app_id, p.usage_date);
    export_partition(
        cfg,
        api,
        cancel,
        stats,
        p,
        Table::AppUsage,
        request,
        async |usage, call| partition::encode_app_usage(cfg.contract, cfg.offset, usage, call),
    )
    .await
}

/// What one (app, day) step ended in, for the run.
enum Step {
    Go,
    Fatal(String),
    Cancelled,
}

/// Records one table's result of a step; returns the manifest written.
fn record(
    table: Table,
    p: Partition,
    result: PartitionResult,
    summary: &mut Summary,
    failed_apps: &mut Vec<(u64, String)>,
    step: &mut Step,
) -> Option<Manifest> {
    match result {
        PartitionResult::Written(w) => {
            summary.wrote(&w);
            return Some(w.manifest.clone());
        }
        PartitionResult::Failed(msg) => {
            error!(%table, app_id = p.app_id, usage_date = %p.usage_date, error = %msg, "Partition failed.");
            summary.fail(table, p, msg);
        }
        PartitionResult::AppFailed(msg) => {
            error!(%table, app_id = p.app_id, usage_date = %p.usage_date, error = %msg, "Unknown app; skipping all of its partitions.");
            if !failed_apps.iter().any(|(a, _)| *a == p.app_id) {
                failed_apps.push((p.app_id, msg.clone()));
            }
            summary.fail(table, p, msg);
        }
        PartitionResult::Fatal(msg) => {
            // The other call of the step met it too (its keys refused, as
            // both calls are signed alike): one line says it.
            if matches!(step, Step::Fatal(_)) {
                debug!(%table, app_id = p.app_id, usage_date = %p.usage_date, error = %msg, "The step's other call failed fatally too.");
                summary.fail(table, p, msg);
            } else {
                error!(%table, app_id = p.app_id, usage_date = %p.usage_date, error = %msg, "Fatal API error; stopping the run.");
                summary.fail(table, p, msg.clone());
                *step = Step::Fatal(msg);
            }
        }
        PartitionResult::Cancelled => {
            if !matches!(step, Step::Fatal(_)) {
                *step = Step::Cancelled;
            }
        }
    }
    None
}

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
    summary.stop(Status::Fatal, Some(msg), all_partitions(cfg));
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
    !make_plan(&cfg.for_account(account)).await.todo.is_empty()
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

/// Releases `lease`; a run that lost it mid-way ends as a fatal error.
pub(crate) async fn end_lease(lease: Lease, mut summary: Summary) -> Summary {
    if let Some(why) = lease.lost() {
        summary.status = Status::Fatal;
        summary.fatal_error = Some(why);
    }
    lease.release().await;
    summary
}

/// The export after its preflight and lease: plan, fetch, write, check.
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
    let mut plan = make_plan(cfg).await;
    for (table, _) in &plan.final_ {
        summary.skipped(*table, 1);
    }
    if cfg.dry_run {
        summary.plan = Some(PlanReport::new(cfg, &plan, cfg.dest.is_local()));
        summary.status = Status::DryRun;
        return finish(summary);
    }
    info!(
        apps = cfg.app_ids.len(),
        days = cfg.days.len(),
        tables = %cfg.tables.iter().map(|t| t.name()).collect::<Vec<_>>().join(","),
        room_calls = plan.room_calls(),
        app_calls = plan.app_calls(),
        already_final = plan.final_.len(),
        dest = %cfg.dest.display(),
        interval_ms = cfg.min_interval.as_millis() as u64,
        "Starting export."
    );
    if !plan.damaged.is_empty() {
        let damaged = std::mem::take(&mut plan.damaged);
        let fetch = repair_from_raw(cfg, damaged.clone(), &mut summary, &mut plan.manifests).await;
        // What is derived from a repaired partition: current, or computed
        // again below (never left out of the run's count).
        let counted = plan.final_.len();
        for (table, p) in damaged.iter().filter(|d| !fetch.contains(d)) {
            classify_derived(cfg, &mut plan, &[*p], Some(*table)).await;
        }
        for (table, _) in &plan.final_[counted..] {
            summary.skipped(*table, 1);
        }
        for (table, p) in fetch {
            match plan.todo.iter_mut().find(|t| t.p == p) {
                Some(t) if table == Table::RoomUsage => t.room = true,
                Some(t) => t.app = true,
                None => plan.todo.push(Todo {
                    p,
                    room: table == Table::RoomUsage,
                    app: table == Table::AppUsage,
                }),
            }
        }
        plan.todo.sort_by_key(|t| {
            (
                t.p.usage_date,
                cfg.app_ids.iter().position(|a| *a == t.p.app_id),
            )
        });
        // A repaired input has a new manifest: what is derived from it is
        // computed again with the fetched ones, or from the lake below.
        plan.recheck
            .retain(|(_, p)| !plan.todo.iter().any(|t| t.p == *p));
    }
    let derived = cfg.derived();
    let cx = derive::Context {
        dest: &cfg.dest,
        utc_offset: cfg.offset_label(),
        encoding: &cfg.encoding,
    };
    // Derived partitions whose inputs are all final need no call, nor a
    // second read of their manifests: the plan has them. A new price list
    // over a long range is long work: it shows progress and stops at a
    // stop request, between partitions.
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
            let summary = end_status(cfg.checks == ChecksMode::Fail, summary);
            warn_left(&summary);
            return finish(summary);
        }
        let Some(d) = derived.iter().find(|d| d.table() == table) else {
            continue;
        };
        if let Some(inputs) = derive::inputs_of(table, p, |t| plan.manifests.get(&(t, p))) {
            derive::derive(d.as_ref(), &cx, p, &inputs, &mut summary).await;
        }
        summary.steps_done += 1;
        progress.advance(&summary);
    }
    summary.steps_done = 0;
    if plan.todo.is_empty() {
        info!("Every planned partition is already final; nothing to fetch.");
        return finish(end_status(cfg.checks == ChecksMode::Fail, summary));
    }
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
        return finish(summary);
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
            return finish(summary);
        }
    };
    let mut room_api = PacedClient::new(
        client.clone(),
        Pacer::new(cfg.min_interval),
        cfg.retry.clone(),
        Backoff::new(),
    );
    let mut app_api = PacedClient::new(
        client,
        Pacer::new(cfg.app_min_interval),
        cfg.retry.clone(),
        Backoff::new(),
    );
    let mut failed_apps: Vec<(u64, String)> = Vec::new();
    let total = plan.todo.len();
    progress.start(total, "app-days", cfg.min_interval);
    let mut todo = plan.todo.into_iter();
    while let Some(t) = todo.next() {
        let p = t.p;
        if let Some((_, why)) = failed_apps.iter().find(|(a, _)| *a == p.app_id) {
            for (table, wanted) in [(Table::RoomUsage, t.room), (Table::AppUsage, t.app)] {
                if wanted {
                    summary.fail(table, p, why.clone());
                }
            }
            summary.steps_done += 1;
            progress.advance(&summary);
            continue;
        }
        // The app call runs while the room call waits for its slot: it
        // never waits on the room pacer, nor the room call on it.
        let (mut room_stats, mut app_stats) = (CallStats::default(), CallStats::default());
        let room_step = async {
            if t.room {
                Some(export_room(cfg, &mut room_api, &cancel, &mut room_stats, p).await)
            } else {
                None
            }
        };
        let app_step = async {
            if t.app {
                Some(export_app(cfg, &mut app_api, &cancel, &mut app_stats, p).await)
            } else {
                None
            }
        };
        // A stop request lets the step finish (never a file without its
        // manifest), but only for STOP_GRACE: a store or an API that stalls
        // must not hold the stop for minutes. An abandoned write is left
        // under its in-flight name and its intent, for the next run.
        let both = async { tokio::join!(room_step, app_step) };
        let (room_result, app_result) = tokio::select! {
            r = both => r,
            _ = async {
                cancel.cancelled().await;
                tokio::time::sleep(STOP_GRACE).await;
            } => {
                warn!(app_id = p.app_id, usage_date = %p.usage_date, grace_secs = STOP_GRACE.as_secs(), "The store or the API did not finish within the stop's grace; abandoning the partition (the next run completes it).");
                summary.stop(Status::Interrupted, None, std::iter::once(p).chain(todo.map(|t| t.p)));
                break;
            }
        };
        summary.action_calls(crate::tencent::api::ACTION, &room_stats);
        summary.action_calls(crate::tencent::app_usage::ACTION, &app_stats);
        let mut step = Step::Go;
        let room = room_result.and_then(|r| {
            record(
                Table::RoomUsage,
                p,
                r,
                &mut summary,
                &mut failed_apps,
                &mut step,
            )
        });
        let app = app_result.and_then(|r| {
            record(
                Table::AppUsage,
                p,
                r,
                &mut summary,
                &mut failed_apps,
                &mut step,
            )
        });
        // What is derived from a partition this step wrote is computed
        // again, from it and the final inputs the plan holds.
        let written = |table: Table| match table {
            Table::RoomUsage => room.as_ref(),
            Table::AppUsage => app.as_ref(),
            _ => None,
        };
        for d in &derived {
            let table = d.table();
            if !table.inputs().iter().any(|&i| written(i).is_some()) {
                continue;
            }
            // An input this step fetched and failed is missing, not final.
            let inputs = derive::inputs_of(table, p, |i| {
                written(i).or_else(|| {
                    (!t.fetches(i))
                        .then(|| plan.manifests.get(&(i, p)))
                        .flatten()
                })
            });
            if let Some(inputs) = inputs {
                derive::derive(d.as_ref(), &cx, p, &inputs, &mut summary).await;
            }
        }
        summary.steps_done += 1;
        match step {
            Step::Go => {}
            Step::Fatal(msg) => {
                summary.stop(Status::Fatal, Some(msg), todo.map(|t| t.p));
                break;
            }
            Step::Cancelled => {
                summary.stop(
                    Status::Interrupted,
                    None,
                    std::iter::once(p).chain(todo.map(|t| t.p)),
                );
                break;
            }
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
    finish(summary)
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

/// The run's final status: failed partitions (exit 1) win over failed
/// checks under `--checks fail` (exit 3).
pub(crate) fn end_status(fail_on_checks: bool, mut summary: Summary) -> Summary {
    if summary.status == Status::Ok && !summary.failed.is_empty() {
        summary.status = Status::PartitionsFailed;
    }
    if summary.status == Status::Ok && fail_on_checks && summary.checks.failed > 0 {
        summary.status = Status::ChecksFailed;
    }
    summary
}
