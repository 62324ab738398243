//! `rebuild`: rewrite partitions from the raw zone, with no API call and no
//! Tencent credentials.
//!
//! Each partition is rebuilt from the raw answer its manifest names (its
//! SHA-256 and RequestId checked), else from its newest, through the same
//! path as `export` ([`crate::jobs::partition`]), with the answer's own
//! RequestId and `fetched_at`, so with the same version and settings the
//! Parquet file is the same to the byte. A raw object that cannot be read
//! fails its partition, naming the object; a partition in the range with no
//! raw answer is reported and left as it is (exit 1).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::jobs::config::{ChecksMode, LakeScope};
use crate::jobs::derive::{self, Derived};
use crate::jobs::fetch::{self, Fetched};
use crate::jobs::partition;
use crate::jobs::progress::Mode as ProgressMode;
use crate::jobs::progress::Progress;
use crate::jobs::summary::{Partition, Status, Summary, end_lease, end_status};
use crate::lake::inflight;
use crate::lake::lease::Lease;
use crate::lake::manifest;
use crate::lake::raw::{self, RawObject};
use crate::tables::Table;
use crate::tables::normalize::SchemaContract;

/// Everything a rebuild needs, checked.
#[derive(Debug, Clone)]
pub struct RebuildConfig {
    pub scope: LakeScope,
    pub contract: SchemaContract,
    /// Rows per batch, and where large answers and files are spooled.
    pub encoding: crate::lake::write::Encoding,
    pub summary_file: Option<std::path::PathBuf>,
    pub progress: ProgressMode,
    pub checks: ChecksMode,
    /// A fraction: 0.01 is 1%.
    pub check_tolerance: f64,
    /// The lease's time to live; `None` under `--lease off`.
    pub lease_ttl: Option<Duration>,
    /// The price list (`--prices`), for `cost`.
    pub prices: Option<std::sync::Arc<crate::tables::prices::PriceList>>,
    /// App → its account's own billing account (`--accounts`).
    pub billing_accounts: std::collections::BTreeMap<u64, String>,
    /// Partition → the billing account its cost manifest records (read
    /// by `keep_billing`).
    pub kept_billing: std::collections::BTreeMap<Partition, String>,
}

impl RebuildConfig {
    /// The derived tables in scope (no `checks` under `--checks off`), as
    /// the settings make them.
    pub fn derived(&self) -> Vec<Box<dyn Derived>> {
        let settings = derive::Settings {
            check_tolerance: self.check_tolerance,
            prices: self.prices.clone(),
            billing_accounts: self.billing_accounts.clone(),
            kept_billing: self.kept_billing.clone(),
            offset: self.scope.offset,
        };
        let tables: Vec<Table> = self
            .scope
            .tables
            .iter()
            .copied()
            .filter(|t| *t != Table::CHECKS || self.checks != ChecksMode::Off)
            .collect();
        derive::registry(&settings, &tables)
    }

    /// Where and how fetched partitions are rewritten (no raw zone is
    /// written: the answers are already there).
    pub fn fetch_context(&self) -> fetch::Context<'_> {
        fetch::Context {
            dest: &self.scope.dest,
            contract: self.contract,
            encoding: &self.encoding,
            offset: self.scope.offset,
            raw_level: None,
        }
    }
}

/// One partition to rebuild (from the newest answer of each of its
/// calls), or one that cannot be.
enum Work {
    From(Partition, Vec<RawObject>),
    NoRaw(Partition),
}

/// The partitions of `table` in scope: those with raw answers, each from
/// its newest, and those without one: where the scope names apps and days,
/// every partition of the range; with no range, every partition the lake
/// holds (a manifest) whose raw answers are gone.
async fn work_for(cfg: &RebuildConfig, f: &dyn Fetched) -> Result<Vec<Work>, String> {
    let (scope, table) = (&cfg.scope, f.table());
    let in_scope = |p: &(u64, NaiveDate)| scope.holds(p);
    let listing = raw::list(&scope.dest, table, scope.app_ids.as_deref())
        .await
        .map_err(|e| e.to_string())?;
    let held: std::collections::BTreeSet<(u64, NaiveDate)> = if scope.days.is_some() {
        Default::default()
    } else {
        manifest::list(&scope.dest, table)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(in_scope)
            .collect()
    };
    let found = listing.keys().copied().chain(held.iter().copied());
    let mut work = Vec::new();
    let apps: Vec<u64> = match &scope.app_ids {
        Some(apps) => apps.clone(),
        None => {
            let mut found: Vec<u64> = found.clone().map(|(a, _)| a).collect();
            found.sort();
            found.dedup();
            found
        }
    };
    let days: Vec<NaiveDate> = match scope.days {
        Some((start, end)) => start.iter_days().take_while(|d| *d <= end).collect(),
        None => {
            let mut found: Vec<NaiveDate> = found.map(|(_, d)| d).collect();
            found.sort();
            found.dedup();
            found
        }
    };
    // Day by day, every app within a day, as export goes.
    for &usage_date in &days {
        for &app_id in &apps {
            let p = Partition { app_id, usage_date };
            let objects = listing.get(&(app_id, usage_date));
            match objects.and_then(|o| fetch::newest_of(f, o)) {
                Some(newest) => work.push(Work::From(p, newest)),
                None if objects.is_some()
                    || scope.days.is_some()
                    || held.contains(&(app_id, usage_date)) =>
                {
                    work.push(Work::NoRaw(p))
                }
                None => {}
            }
        }
    }
    Ok(work)
}

/// Rebuilds partition `p` of `f` from the answers its manifest names,
/// else from `newest`.
async fn rebuild_one(
    cfg: &RebuildConfig,
    f: &dyn Fetched,
    p: Partition,
    newest: &[RawObject],
) -> Result<partition::Written, String> {
    let dest = &cfg.scope.dest;
    let sources = fetch::sources_of(dest, f, p, Some(newest.to_vec()))
        .await?
        .expect("the newest answers are given");
    f.rebuild(&cfg.fetch_context(), p, &sources).await
}

/// What a rebuild will do: partitions of the fetched tables to rewrite
/// from the raw zone and, for a derived table none of whose inputs is
/// rebuilt (`--tables checks`), the (app, day)s to recompute from the lake
/// (every one with an input partition or a partition of its own). Known
/// before any lease is taken: the leases are those of the apps it names.
struct RebuildPlan {
    work: Vec<(&'static dyn Fetched, Work)>,
    derived_candidates: Vec<(Table, Partition)>,
}

impl RebuildPlan {
    /// The apps the rebuild may write.
    fn apps(&self, scope: &LakeScope) -> Vec<u64> {
        if let Some(ids) = &scope.app_ids {
            return ids.clone();
        }
        let mut apps: Vec<u64> = self
            .work
            .iter()
            .map(|(_, w)| match w {
                Work::From(p, _) | Work::NoRaw(p) => p.app_id,
            })
            .chain(self.derived_candidates.iter().map(|(_, p)| p.app_id))
            .collect();
        apps.sort_unstable();
        apps.dedup();
        apps
    }
}

async fn plan_rebuild(cfg: &RebuildConfig) -> Result<RebuildPlan, String> {
    let scope = &cfg.scope;
    let mut work = Vec::new();
    for &f in fetch::registry() {
        if scope.tables.contains(&f.table()) {
            work.extend(work_for(cfg, f).await?.into_iter().map(|w| (f, w)));
        }
    }
    let mut derived_candidates = Vec::new();
    for d in cfg.derived() {
        let table = d.table();
        if inputs_rebuilt(cfg, table) {
            continue;
        }
        let mut days = manifest::list(&scope.dest, table)
            .await
            .map_err(|e| e.to_string())?;
        for &input in table.inputs() {
            days.extend(
                manifest::list(&scope.dest, input)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        derived_candidates.extend(
            days.into_iter()
                .filter(|p| scope.holds(p))
                .map(|(app_id, usage_date)| (table, Partition { app_id, usage_date })),
        );
    }
    Ok(RebuildPlan {
        work,
        derived_candidates,
    })
}

/// Whether the rebuild rewrites an input of `table` (and so recomputes
/// `table` where it did).
fn inputs_rebuilt(cfg: &RebuildConfig, table: Table) -> bool {
    table.all_inputs().any(|i| cfg.scope.tables.contains(&i))
}

/// The (app, day)s of derived `table` to recompute: those whose inputs
/// this run rebuilt, or, when it rebuilt none (`--tables checks`), the
/// plan's candidates.
fn derived_work(
    cfg: &RebuildConfig,
    table: Table,
    candidates: &[(Table, Partition)],
    rebuilt: &[(Table, Partition)],
) -> Vec<Partition> {
    let mut out: Vec<Partition> = if inputs_rebuilt(cfg, table) {
        rebuilt
            .iter()
            .filter(|(t, _)| table.all_inputs().any(|i| i == *t))
            .map(|(_, p)| *p)
            .collect()
    } else {
        candidates
            .iter()
            .filter(|(t, _)| *t == table)
            .map(|(_, p)| *p)
            .collect()
    };
    out.sort_by_key(|p| (p.usage_date, p.app_id));
    out.dedup();
    out
}

/// Recomputes derived partition `p` from the input partitions the lake
/// holds. With an input missing, a partition already there compared
/// answers the lake no longer holds: it is reported stale (a failure);
/// with none there, there is nothing to compute.
async fn recompute(d: &dyn Derived, cx: &derive::Context<'_>, p: Partition, summary: &mut Summary) {
    let table = d.table();
    let mut inputs = derive::Inputs::new();
    let mut missing = Vec::new();
    // The optional inputs too, those the lake holds (`cost`: the meters).
    for input in table.all_inputs() {
        match manifest::read(cx.dest, input, p.app_id, p.usage_date).await {
            Ok(Some(m)) => {
                inputs.insert(input, m);
            }
            Ok(None) if table.inputs().contains(&input) => missing.push(input.name()),
            Ok(None) => {}
            Err(e) => {
                error!(%table, app_id = p.app_id, usage_date = %p.usage_date, error = %e, "Partition failed.");
                summary.fail(table, p, e.to_string());
                return;
            }
        }
    }
    if missing.is_empty() {
        derive::derive(d, cx, p, &inputs, summary).await;
        return;
    }
    match manifest::read(cx.dest, table, p.app_id, p.usage_date).await {
        Ok(Some(_)) => {
            let msg = format!(
                "its {} partition is missing, so the {table} partition cannot be recomputed and the one there is stale; `trtc-usage export` for the day fetches what is missing and computes it again",
                missing.join(" and ")
            );
            error!(%table, app_id = p.app_id, usage_date = %p.usage_date, error = %msg, "Partition failed.");
            summary.fail(table, p, msg);
        }
        Ok(None) => {
            info!(%table, app_id = p.app_id, usage_date = %p.usage_date, missing = %missing.join(","), "Nothing to compute: the day lacks an input partition.");
            summary.planned -= 1;
        }
        Err(e) => {
            error!(%table, app_id = p.app_id, usage_date = %p.usage_date, error = %e, "Partition failed.");
            summary.fail(table, p, e.to_string());
        }
    }
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
    // A mistyped --dest is no lake: say so, rather than rebuild "0 of 0".
    match dest.holds_lake().await {
        Ok(true) => {}
        Ok(false) => {
            let msg = format!(
                "{} holds no lake (no table, no raw zone): nothing to rebuild; is --dest right?",
                dest.display()
            );
            error!("{msg}");
            summary.stop(Status::Fatal, Some(msg), []);
            return finish(summary);
        }
        Err(e) => {
            error!(error = %e, "The destination is not usable; nothing was rebuilt.");
            summary.stop(Status::Fatal, Some(e.to_string()), []);
            return finish(summary);
        }
    }
    if let Err(e) = dest.preflight().await {
        error!(error = %e, "The destination is not usable; nothing was rebuilt.");
        summary.stop(Status::Fatal, Some(e.to_string()), []);
        return finish(summary);
    }
    let plan = match plan_rebuild(cfg).await {
        Ok(plan) => plan,
        Err(e) => {
            error!(error = %e, "Cannot list the lake; nothing was rebuilt.");
            summary.stop(Status::Fatal, Some(e), []);
            return finish(summary);
        }
    };
    let apps = plan.apps(&cfg.scope);
    let lease = match cfg.lease_ttl {
        None => None,
        Some(ttl) => match Lease::acquire(dest, "rebuild", &apps, ttl, cancel.clone()).await {
            Ok(lease) => Some(lease),
            Err(e) => {
                error!(error = %e, "Cannot take the apps' leases; nothing was rebuilt.");
                summary.stop(Status::Fatal, Some(e.to_string()), []);
                return finish(summary);
            }
        },
    };
    if let Err(e) = inflight::sweep(dest, &apps).await {
        warn!(error = %e, "Cannot clean what an earlier run left in flight; the next run tries again.");
    }
    let summary = match keep_billing(cfg).await {
        Ok(kept_billing) => {
            let cfg = RebuildConfig {
                kept_billing,
                ..cfg.clone()
            };
            rebuild_all(&cfg, plan, cancel, progress, summary).await
        }
        Err(e) => {
            error!(error = %e, "Cannot read the cost table's manifests; nothing was rebuilt.");
            let mut summary = summary;
            summary.stop(Status::Fatal, Some(e), []);
            summary
        }
    };
    let summary = match lease {
        Some(lease) => end_lease(lease, summary).await,
        None => summary,
    };
    finish(summary)
}

/// The billing account each cost partition in scope was computed for, as
/// its manifest records it (16 manifests read at a time); nothing when
/// the rebuild fills no `cost`.
async fn keep_billing(cfg: &RebuildConfig) -> Result<BTreeMap<Partition, String>, String> {
    if cfg.prices.is_none() || !cfg.scope.tables.contains(&Table::COST) {
        return Ok(BTreeMap::new());
    }
    let dest = &cfg.scope.dest;
    let listed = manifest::list(dest, Table::COST)
        .await
        .map_err(|e| e.to_string())?;
    let in_scope = listed.into_iter().filter(|p| cfg.scope.holds(p));
    let read: Vec<_> = futures::stream::iter(in_scope)
        .map(|(app_id, usage_date)| async move {
            let m = manifest::read(dest, Table::COST, app_id, usage_date).await;
            (Partition { app_id, usage_date }, m)
        })
        .buffered(16)
        .collect()
        .await;
    let mut kept = BTreeMap::new();
    for (p, m) in read {
        let billing = m
            .map_err(|e| e.to_string())?
            .and_then(|m| m.derived)
            .and_then(|d| d.settings.get("billing_account_id").cloned())
            .filter(|b| !b.is_empty());
        if let Some(b) = billing {
            kept.insert(p, b);
        }
    }
    Ok(kept)
}

/// The rebuild after its preflight and lease.
async fn rebuild_all(
    cfg: &RebuildConfig,
    plan: RebuildPlan,
    cancel: CancellationToken,
    progress: &mut dyn Progress,
    mut summary: Summary,
) -> Summary {
    let dest = &cfg.scope.dest;
    let RebuildPlan {
        work: plan,
        derived_candidates,
    } = plan;
    summary.planned = plan.len();
    info!(
        partitions = plan.len(),
        dest = %dest.display(),
        "Starting rebuild from the raw zone (no API call)."
    );
    progress.start(plan.len(), "partitions", Duration::ZERO);
    let mut rebuilt = Vec::new();
    let mut work = plan.into_iter();
    while let Some((f, w)) = work.next() {
        let table = f.table();
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
                summary.fail(table, p, msg);
            }
            Work::From(p, objects) => match rebuild_one(cfg, f, p, &objects).await {
                Ok(w) => {
                    summary.wrote(&w);
                    rebuilt.push((table, p));
                }
                Err(msg) => {
                    error!(table = %table, app_id = p.app_id, usage_date = %p.usage_date, error = %msg, "Partition failed.");
                    summary.fail(table, p, msg);
                }
            },
        }
        summary.steps_done += 1;
        progress.advance(&summary);
    }
    progress.finish();
    if summary.status == Status::Ok {
        let cx = derive::Context {
            dest,
            utc_offset: cfg.scope.offset.to_string(),
            encoding: &cfg.encoding,
        };
        let derived = cfg.derived();
        let work: Vec<(&dyn Derived, Partition)> = derived
            .iter()
            .flat_map(|d| {
                derived_work(cfg, d.table(), &derived_candidates, &rebuilt)
                    .into_iter()
                    .map(move |p| (d.as_ref(), p))
            })
            .collect();
        summary.planned += work.len();
        // Derived partitions from the lake alone (a new price list over a
        // year, say) are long work too: progress, and a stop between them.
        if !work.is_empty() {
            summary.steps_done = 0;
            progress.start(work.len(), "derived partitions", Duration::ZERO);
        }
        let mut left = work.into_iter();
        while let Some((d, p)) = left.next() {
            if cancel.is_cancelled() {
                let rest = std::iter::once(p).chain(left.map(|(_, p)| p));
                summary.stop(Status::Interrupted, None, rest);
                break;
            }
            recompute(d, &cx, p, &mut summary).await;
            summary.steps_done += 1;
            progress.advance(&summary);
        }
        progress.finish();
    }
    let fail_on_checks = cfg.checks == ChecksMode::Fail;
    end_status(fail_on_checks, summary)
}
