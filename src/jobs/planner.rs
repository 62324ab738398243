//! The export's plan: for each (app, day) of the range, which fetched
//! partitions are final (skipped), damaged (repaired from the raw zone) or
//! to fetch, and which derived partitions are current or to compute again;
//! and the repair of a damaged final partition from the raw zone. Reads
//! manifests only; every fetched table through the registry
//! ([`crate::jobs::fetch::registry`]).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use tracing::{info, warn};

use crate::jobs::config::JobConfig;
use crate::jobs::derive;
use crate::jobs::fetch::{self, Fetched};
use crate::jobs::plan;
use crate::jobs::summary::{Partition, PlanReport, PlannedPartition, Summary};
use crate::lake::manifest::{self, Manifest};
use crate::lake::raw;
use crate::tables::Table;

/// What one (app, day) of the plan fetches: the fetched tables whose
/// partition is not final, each with its API's calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Todo {
    pub p: Partition,
    pub tables: Vec<Table>,
}

impl Todo {
    /// Whether this step fetches `table`.
    pub fn fetches(&self, table: Table) -> bool {
        self.tables.contains(&table)
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
    /// The manifests of final partitions of the fetched tables, for checks,
    /// and of the optional inputs the run does not fill, as the lake holds
    /// them.
    pub manifests: HashMap<(Table, Partition), Manifest>,
    /// Optional inputs whose manifest could not be read: what is derived
    /// from them waits for a run that can.
    pub unreadable: HashSet<(Table, Partition)>,
}

impl Plan {
    /// Whether derived partition `p` must wait for `input` when the lake
    /// lacks it: the run fills it, or its manifest could not be read.
    pub fn awaits(&self, cfg: &JobConfig, input: Table, p: Partition) -> bool {
        cfg.tables.contains(&input) || self.unreadable.contains(&(input, p))
    }

    /// The calls of each fetched table the run fills, in the registry's
    /// order (tables with none included).
    pub fn calls(&self, cfg: &JobConfig) -> Vec<(&'static dyn Fetched, usize)> {
        fetched_tables(cfg)
            .map(|f| {
                let steps = self.todo.iter().filter(|t| t.fetches(f.table())).count();
                (f, steps * f.calls())
            })
            .collect()
    }

    /// Adds `table`'s partition `p` to what is fetched, in plan order.
    pub fn fetch(&mut self, cfg: &JobConfig, table: Table, p: Partition) {
        match self.todo.iter_mut().find(|t| t.p == p) {
            Some(t) => t.tables.push(table),
            None => self.todo.push(Todo {
                p,
                tables: vec![table],
            }),
        }
        self.todo.sort_by_key(|t| {
            (
                t.p.usage_date,
                cfg.app_ids.iter().position(|a| *a == t.p.app_id),
            )
        });
    }
}

/// The fetched tables `cfg`'s run fills, in the registry's order.
pub fn fetched_tables(cfg: &JobConfig) -> impl Iterator<Item = &'static dyn Fetched> + '_ {
    fetch::registry()
        .iter()
        .copied()
        .filter(|f| cfg.tables.contains(&f.table()))
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
pub(crate) async fn repair_from_raw(
    cfg: &JobConfig,
    damaged: Vec<(Table, Partition)>,
    summary: &mut Summary,
    manifests: &mut HashMap<(Table, Partition), Manifest>,
) -> Vec<(Table, Partition)> {
    let cx = cfg.fetch_context();
    let mut fetch = Vec::new();
    for (table, p) in damaged {
        let Some(f) = fetch::registry().iter().find(|f| f.table() == table) else {
            fetch.push((table, p));
            continue;
        };
        // The answers the manifest names (checked), else the newest; with
        // no raw answer at all, fetched again.
        let sources = match raw::list_partition(&cfg.dest, table, p.app_id, p.usage_date).await {
            Ok(objects) if objects.is_empty() => Ok(None),
            Ok(objects) => {
                let newest = fetch::newest_of(*f, &objects);
                fetch::sources_of(&cfg.dest, *f, p, newest).await
            }
            Err(e) => Err(e.to_string()),
        };
        let sources = match sources {
            Ok(Some(sources)) => sources,
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
        match f.rebuild(&cx, p, &sources).await {
            Ok(w) => {
                let object = cfg.dest.relative(&sources[0].object.path).to_owned();
                info!(%table, app_id = p.app_id, usage_date = %p.usage_date, raw_object = %object, "Rebuilt a damaged partition from the raw zone.");
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
pub(crate) fn all_partitions(cfg: &JobConfig) -> Vec<Partition> {
    cfg.days
        .iter()
        .flat_map(|&usage_date| {
            cfg.app_ids
                .iter()
                .map(move |&app_id| Partition { app_id, usage_date })
        })
        .collect()
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
    let fetched: Vec<Table> = fetched_tables(cfg).map(|f| f.table()).collect();
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
        let tables: Vec<Table> = fetched
            .iter()
            .copied()
            .filter(|&t| need.get(&(t, p)).copied().unwrap_or(false))
            .collect();
        if !tables.is_empty() {
            plan.todo.push(Todo { p, tables });
        }
    }
    if cfg.dest.is_local() || !cfg.dry_run {
        if !cfg.dest.is_absent() {
            held_optional_inputs(cfg, &fetched, &all, &mut plan).await;
        }
        classify_derived(cfg, &mut plan, &all, None).await;
    }
    plan
}

/// Adds to `plan.manifests` the partitions the lake holds of the optional
/// inputs the run does not fill (`cost` of a run without `--tables
/// relay_usage` still prices the relay minutes an earlier run fetched):
/// final or not, they are what the lake says that day.
async fn held_optional_inputs(
    cfg: &JobConfig,
    fetched: &[Table],
    all: &[Partition],
    plan: &mut Plan,
) {
    let mut held: Vec<Table> = cfg
        .derived()
        .iter()
        .flat_map(|d| d.table().optional_inputs())
        .copied()
        .filter(|t| !fetched.contains(t))
        .collect();
    held.sort();
    held.dedup();
    for table in held {
        let found: Vec<(Partition, Result<Option<Manifest>, ()>)> = futures::stream::iter(all.iter().copied())
            .map(|p| async move {
                match manifest::read(&cfg.dest, table, p.app_id, p.usage_date).await {
                    Ok(m) => (p, Ok(m)),
                    Err(e) => {
                        warn!(%table, app_id = p.app_id, usage_date = %p.usage_date, error = %e, "Cannot read the manifest; what is derived from it is not computed this run.");
                        (p, Err(()))
                    }
                }
            })
            .buffered(16)
            .collect()
            .await;
        for (p, m) in found {
            match m {
                Ok(Some(m)) => {
                    plan.manifests.insert((table, p), m);
                }
                Ok(None) => {}
                Err(()) => {
                    plan.unreadable.insert((table, p));
                }
            }
        }
    }
}

/// For each of `partitions` whose inputs are all final in `plan` (or only
/// those that read `changed`): is each derived partition current (skipped
/// as final) or to be computed again (`recheck`)? 16 manifests read at a
/// time, as for the inputs.
pub(crate) async fn classify_derived(
    cfg: &JobConfig,
    plan: &mut Plan,
    partitions: &[Partition],
    changed: Option<Table>,
) {
    for d in cfg.derived() {
        let table = d.table();
        if changed.is_some_and(|c| !table.all_inputs().any(|i| i == c)) {
            continue;
        }
        let ready: Vec<(Partition, derive::Inputs)> = partitions
            .iter()
            .filter_map(|&p| {
                let awaited = |t| plan.awaits(cfg, t, p);
                derive::inputs_of(table, p, awaited, |t| plan.manifests.get(&(t, p)))
                    .map(|i| (p, i))
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

/// What a dry run shows of `plan`, `cfg`'s.
pub fn report(cfg: &JobConfig, plan: &Plan, finality_checked: bool) -> PlanReport {
    let mut apis = Vec::new();
    let mut estimate = Duration::ZERO;
    for (f, calls) in plan.calls(cfg) {
        let interval = f.limit().interval(cfg.min_interval, cfg.app_min_interval);
        estimate = estimate.max(plan::wall_time(calls, interval));
        let short = f.table().name();
        let short = short.strip_suffix("_usage").unwrap_or(short).to_owned();
        apis.push((f.action(), calls, interval.as_millis() as u64, short));
    }
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
        for table in &t.tables {
            push(*table, &t.p, "fetch");
        }
        // What is derived from a table this step fetches.
        for d in &derived {
            if d.table().all_inputs().any(|i| t.fetches(i)) {
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
        calls: apis
            .iter()
            .map(|(_, n, _, short)| (format!("{short}_calls"), *n))
            .collect(),
        intervals_ms: apis
            .iter()
            .map(|(_, _, ms, short)| (format!("{short}_interval_ms"), *ms))
            .collect(),
        estimated_secs: estimate.as_secs(),
        apis,
        finality_checked,
    }
}
