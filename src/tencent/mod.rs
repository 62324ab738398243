//! The Tencent side: everything that talks to Tencent Cloud API 3.0.
//!
//! - [`signer`]: TC3-HMAC-SHA256, pure functions of (request, key, time);
//! - [`credentials`]: the SDKs' credential chain (env, profile, TKE OIDC,
//!   CVM role), with secrets that redact themselves;
//! - [`error`]: the API's error envelope and what each code means for a run;
//! - [`api`]: one signed HTTP attempt, and the room answer located in its
//!   body;
//! - [`scan`]: the streaming scan that finds `Data` and `RequestId` in a
//!   body as it arrives;
//! - [`usage`]: the answer every usage API but the room one gives
//!   (`UsageKey`, `UsageList`), parsed by key;
//! - [`app_usage`]: the `DescribeTrtcUsage` request;
//! - [`pacing`]: the rate limit and bounded, classified retries around every
//!   attempt.
//!
//! Nothing here knows about Parquet, the lake or the run's plan. The facts
//! this part relies on are in `docs/tencent-api.md`.

pub mod api;
pub mod app_usage;
pub mod credentials;
pub mod error;
pub mod mix_transcoding_usage;
pub mod pacing;
pub mod recording_usage;
pub mod relay_usage;
pub mod room_usage;
pub mod scan;
pub mod signer;
pub mod usage;
