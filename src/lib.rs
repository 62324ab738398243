//! trtc-usage: Tencent Cloud TRTC per-room usage → Hive-partitioned Parquet.
//!
//! The modules follow the data, in order:
//! [`cli`] → [`config`] → [`plan`] → [`credentials`] + [`signer`] → [`api`]
//! (paced by [`pacing`]) → [`normalize`] (to the [`schema`]) → [`mod@write`]
//! (into a [`store`], finished by a [`manifest`]); [`export`] runs them,
//! [`progress`] and [`logging`] report, [`app`] maps the outcome to an exit
//! code. [`simulator`] is the bundled stand-in for the TRTC API.

pub mod api;
pub mod app;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod export;
pub mod logging;
pub mod manifest;
pub mod normalize;
pub mod pacing;
pub mod plan;
pub mod progress;
pub mod schema;
pub mod signer;
pub mod simulator;
pub mod store;
pub mod write;
