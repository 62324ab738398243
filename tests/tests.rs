//! Integration tests, one binary: the real `trtc-usage` driven against the
//! bundled simulator, as a user would.

#[macro_use]
mod util;

mod accounts;
mod app_usage;
mod cli;
mod cost;
mod credentials;
mod edges;
mod export;
mod faults;
mod first_hour;
mod lake;
mod large_days;
mod lineage;
mod meters;
mod metrics;
mod readers;
mod s3;
mod s3_faults;
mod truth;
