//! The lake: where tables live and how they are written.
//!
//! - [`store`]: a local directory or an S3-compatible bucket behind one
//!   object_store interface, the layout of paths inside it, the preflight;
//! - [`manifest`]: `_manifest.json`, the record that a partition is done;
//! - [`inflight`]: intents, so the next run cleans what a crash left;
//! - [`fence`]: a run writes only while its lease is surely its own;
//! - [`lease`]: one writer per lake, a lease taken with a create-only write;
//! - [`marker`]: `lake.json`: whether a lake holds Tencent Cloud or
//!   simulated data, its one clock, the tables runs fill;
//! - [`raw`]: the raw zone, every API answer kept compressed, for `rebuild`;
//! - [`upload`]: a built file into the store, in parts while it is built
//!   on S3, visible only once whole;
//! - [`mod@write`]: record batches → one zstd Parquet file → the store, then the
//!   manifest, in an order that never shows a reader a partial file.
//!
//! The layout and its guarantees are described in `docs/lake.md`.

pub mod fence;
pub mod inflight;
pub mod lease;
pub mod manifest;
pub mod marker;
pub mod raw;
pub mod store;
pub mod upload;
pub mod write;
