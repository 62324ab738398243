//! The jobs: what a command does, from validated flags to a summary.
//!
//! - [`config`]: flags in, a checked job configuration out;
//! - [`accounts`]: several Tencent Cloud accounts, each its apps and keys;
//! - [`plan`]: days, the API's clock, which partitions are final;
//! - [`export`]: fetch → keep the raw answer → write, partition by partition;
//! - [`partition`]: one answer → one partition (shared by export and rebuild);
//! - [`mod@derive`]: tables computed from other partitions (`checks`, `cost`), one
//!   mechanism for export and rebuild;
//! - [`rebuild`]: partitions remade from the raw zone, no API call;
//! - [`status`]: what the lake holds over a range, from its manifests;
//! - [`summary`]: what a run did, and how it ended;
//! - [`progress`]: the bar on a terminal, periodic log lines otherwise.

pub mod accounts;
pub mod config;
pub mod derive;
pub mod export;
pub mod fetch;
pub mod lineage;
pub mod metrics;
pub mod partition;
pub mod plan;
pub mod planner;
pub mod progress;
pub mod rebuild;
pub mod status;
pub mod summary;

/// Every table of the lake: the fetched ones ([`fetch::registry`]), then
/// the derived ones ([`derive::registry`]), in the order a run fills them.
pub fn all_tables() -> Vec<crate::tables::Table> {
    fetch::registry()
        .iter()
        .map(|f| f.table())
        .chain(derive::tables())
        .collect()
}

/// The table named `name`, if there is one.
pub fn table_named(name: &str) -> Option<crate::tables::Table> {
    all_tables().into_iter().find(|t| t.name() == name)
}
