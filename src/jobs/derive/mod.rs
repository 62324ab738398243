//! Derived tables: partitions computed from other partitions of the lake,
//! with no API call (`checks`, `cost`). One mechanism for all of them:
//!
//! - a derived table is one module here implementing [`Derived`], plus one
//!   line in [`registry`];
//! - its inputs are [`Table::inputs`] (and those of
//!   [`Table::optional_inputs`] there are); it is computed for an (app,
//!   day) when all the required ones are there ([`inputs_of`]);
//! - its manifest records what it was computed from and with
//!   ([`DerivedInfo`]: the inputs' RequestIds, the settings, and a
//!   fingerprint of both), so `export` computes it again, with no call,
//!   exactly when an input partition was rewritten or a setting changed;
//! - `export` (after each step, and for days whose inputs are final) and
//!   `rebuild` (after the inputs it rewrote, or from the lake alone) call
//!   [`is_current`] and [`derive()`], never a table by name.

pub mod checks;
pub mod cost;

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use sha2::{Digest, Sha256};
use tracing::{error, warn};

use crate::jobs::partition::Written;
use crate::jobs::summary::{Partition, Summary};
use crate::lake::inflight;
use crate::lake::manifest::{self, DerivedInfo, Manifest};
use crate::lake::store::Destination;
use crate::lake::write::Encoding;
use crate::tables::Table;

/// The manifests of a derived partition's inputs, by table.
pub type Inputs = BTreeMap<Table, Manifest>;

/// What the derived tables need from a run's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `checks`: the allowed relative difference (0.01 is 1%).
    pub check_tolerance: f64,
    /// `cost`: the price list (`--prices`), and each app's billing account
    /// when its account names its own (else the price list's).
    pub prices: Option<std::sync::Arc<crate::tables::prices::PriceList>>,
    pub billing_accounts: BTreeMap<u64, String>,
    /// `cost`: the billing account each existing partition was computed
    /// for (its manifest's), kept when no account names one: a rebuild
    /// never silently swaps it for the price list's default.
    pub kept_billing: BTreeMap<Partition, String>,
    /// The API's clock: a day's bounds.
    pub offset: chrono::FixedOffset,
}

/// Where and how a derived partition is written.
pub struct Context<'a> {
    pub dest: &'a Destination,
    /// The API's clock as manifests write it, e.g. `+08:00`.
    pub utc_offset: String,
    pub encoding: &'a Encoding,
}

/// A table computed from other partitions of the lake.
pub trait Derived: Send + Sync {
    /// The table it fills; its inputs are [`Table::inputs`].
    fn table(&self) -> Table;

    /// The settings that shape partition `p`'s rows, by name: a change
    /// recomputes it.
    fn settings(&self, p: Partition) -> BTreeMap<String, String>;

    /// What a dry run's plan calls computing it.
    fn plan_action(&self) -> &'static str {
        "compute"
    }

    /// Whether `existing` was computed from `inputs` with today's settings.
    fn is_current(&self, existing: &Manifest, p: Partition, inputs: &Inputs) -> bool {
        existing
            .derived
            .as_ref()
            .is_some_and(|d| *d == info(self, p, inputs))
    }

    /// Computes and commits partition `p` from `inputs`; `info` goes into
    /// its manifest. Returns `None` when there is nothing to write (said in
    /// a log line). May add what it found to `summary` (a failed check);
    /// the partition's own outcome is recorded by [`derive()`].
    fn compute<'a>(
        &'a self,
        cx: &'a Context<'a>,
        p: Partition,
        inputs: &'a Inputs,
        info: DerivedInfo,
        summary: &'a mut Summary,
    ) -> BoxFuture<'a, Result<Option<Written>, String>>;
}

/// How the run's settings make a derived table (`None` when they do not:
/// no `cost` without a price list).
type Register = fn(&Settings) -> Option<Box<dyn Derived>>;

/// Every derived table, in the order a run computes them. Adding a table
/// is one line here.
const REGISTRY: [(Table, Register); 2] = [
    (Table::CHECKS, checks::register),
    (Table::COST, cost::register),
];

/// Every derived table.
pub fn tables() -> impl Iterator<Item = Table> {
    REGISTRY.iter().map(|(t, _)| *t)
}

/// Every derived table the run fills, as its settings make it.
pub fn registry(settings: &Settings, tables: &[Table]) -> Vec<Box<dyn Derived>> {
    REGISTRY
        .iter()
        .filter(|(t, _)| tables.contains(t))
        .filter_map(|(_, register)| register(settings))
        .collect()
}

/// What `d`'s partition computed from `inputs` records, fingerprint
/// included.
pub fn info<D: Derived + ?Sized>(d: &D, p: Partition, inputs: &Inputs) -> DerivedInfo {
    let settings = d.settings(p);
    let mut h = Sha256::new();
    let mut field = |s: &str| {
        h.update((s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    field(d.table().name());
    // In the table's order of its inputs (a fingerprint must not change
    // with how tables sort).
    let ordered = d
        .table()
        .all_inputs()
        .filter_map(|t| inputs.get(&t).map(|m| (t, m)));
    for (table, m) in ordered {
        field(table.name());
        field(&m.request_id);
        field(&m.file.sha256);
    }
    for (k, v) in &settings {
        field(k);
        field(v);
    }
    DerivedInfo {
        inputs: inputs
            .iter()
            .map(|(t, m)| (t.name().to_owned(), m.request_id.clone()))
            .collect(),
        settings,
        fingerprint: hex::encode(h.finalize()),
    }
}

/// The inputs of `table`'s partition `p` among `manifests`, when all its
/// [`Table::inputs`] are there, with those of its
/// [`Table::optional_inputs`] that are; `None` too while an `awaited`
/// optional input is missing (the run fills it and its fetch failed or is
/// to come, or its manifest could not be read), so a day is never costed
/// from part of what it has.
pub fn inputs_of<'m>(
    table: Table,
    p: Partition,
    awaited: impl Fn(Table) -> bool,
    manifest: impl Fn(Table) -> Option<&'m Manifest>,
) -> Option<Inputs> {
    let mut inputs = table
        .inputs()
        .iter()
        .map(|&t| manifest(t).map(|m| (t, m.clone())))
        .collect::<Option<Inputs>>()?;
    for &t in table.optional_inputs() {
        match manifest(t) {
            Some(m) => {
                inputs.insert(t, m.clone());
            }
            None if awaited(t) => return None,
            None => {}
        }
    }
    Some(inputs).filter(|i| i.values().all(|m| m.app_id == p.app_id))
}

/// Whether `d`'s partition `p` in the lake is current for `inputs`: its
/// manifest says it was computed from them with today's settings, and its
/// file matches the manifest (its size; its SHA-256 too under `verify`).
/// A manifest that cannot be read is not current; a damaged file is
/// computed again.
pub async fn is_current(
    d: &dyn Derived,
    dest: &Destination,
    p: Partition,
    inputs: &Inputs,
    verify: bool,
) -> bool {
    let table = d.table();
    match manifest::read(dest, table, p.app_id, p.usage_date).await {
        Ok(Some(m)) if d.is_current(&m, p, inputs) => {
            match manifest::file_problem(dest, table, &m, verify).await {
                None => true,
                Some(problem) => {
                    warn!(%table, app_id = p.app_id, usage_date = %p.usage_date, problem = %problem, "A derived partition's file does not match its manifest; computing it again.");
                    false
                }
            }
        }
        Ok(Some(_)) => false,
        Ok(None) => false,
        Err(e) => {
            warn!(%table, app_id = p.app_id, usage_date = %p.usage_date, error = %e, "Cannot read the manifest; computing the partition again.");
            false
        }
    }
}

/// Computes `d`'s partition `p` from `inputs` and commits it (under its
/// intent, so a crash leaves nothing a reader sees), recording the outcome
/// in `summary`.
pub async fn derive(
    d: &dyn Derived,
    cx: &Context<'_>,
    p: Partition,
    inputs: &Inputs,
    summary: &mut Summary,
) {
    let table = d.table();
    let result = match inflight::begin(cx.dest, table, p.app_id, p.usage_date).await {
        Err(msg) => Err(msg),
        Ok(()) => {
            let r = d.compute(cx, p, inputs, info(d, p, inputs), summary).await;
            inflight::end(cx.dest, table, p.app_id, p.usage_date).await;
            r
        }
    };
    match result {
        Ok(Some(written)) => summary.wrote(&written),
        Ok(None) => {}
        Err(msg) => {
            error!(%table, app_id = p.app_id, usage_date = %p.usage_date, error = %msg, "Partition failed.");
            summary.fail(table, p, msg);
        }
    }
}
