//! trtc-usage: Tencent Cloud TRTC usage → a lake of Hive-partitioned
//! Parquet tables.
//!
//! The crate is grouped by the part of the system each module belongs to;
//! `docs/architecture.md` names every module's job.
//!
//! - [`tencent`]: signing, credentials, the API client, pacing and retry;
//! - [`tables`]: the tables' schemas and the normalizers that fill them;
//! - [`lake`]: the store, its layout, Parquet files and manifests;
//! - [`jobs`]: configuration, plans and the runs of each command;
//! - [`simulator`]: the bundled stand-in for the TRTC API;
//! - [`spool`]: large bytes (an answer, a Parquet file) in memory up to a
//!   limit, in an unnamed temporary file beyond it;
//! - [`cli`], [`logging`] and [`app`]: the command line, logs, and the one
//!   place that turns an outcome into an exit code.
//!
//! Dependencies point one way: `app` → `jobs` → `lake` → `tables`, and
//! `jobs` → `tencent`; `simulator` uses only `tencent` and `tables`.

pub mod app;
pub mod cli;
pub mod clock;
pub mod jobs;
pub mod lake;
pub mod logging;
pub mod simulator;
pub mod spool;
pub mod tables;
pub mod tencent;
