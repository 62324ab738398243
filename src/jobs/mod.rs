//! The jobs: what a command does, from validated flags to a summary.
//!
//! - [`config`]: flags in, a checked job configuration out;
//! - [`plan`]: days, the API's clock, which partitions are final;
//! - [`export`]: fetch → normalize → write, partition by partition;
//! - [`summary`]: what a run did, and how it ended;
//! - [`progress`]: the bar on a terminal, periodic log lines otherwise.

pub mod config;
pub mod export;
pub mod plan;
pub mod progress;
pub mod summary;
