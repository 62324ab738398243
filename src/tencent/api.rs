//! The TRTC API client: one signed attempt at any action, its body spooled
//! (and scanned, for a large answer) as it arrives, and the typed errors it
//! can end in. It names no API: each API's request and answer are in a
//! module of their own (`room_usage`, `usage` and the meters').
//!
//! This module makes exactly one HTTP attempt per call. Pacing and retries
//! live in `tencent::pacing`; what an error *means* for the run (retry, stop
//! the app, stop everything) is [`ApiError::class`], decided here once so no
//! other module matches on error strings.

use std::io::Write;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use url::Url;

use crate::spool::{SpoolConfig, Spooled};
use crate::tencent::credentials::Provider;
use crate::tencent::error::ErrorBody;
pub use crate::tencent::error::{ErrorClass, classify_code};
use crate::tencent::scan::{Found, ScanError, Scanner};
use crate::tencent::signer::{self, SignInput};

/// The version every action uses.
pub const VERSION: &str = "2019-07-22";
pub const SERVICE: &str = "trtc";
/// Sent on the wire and signed: exactly this, no `charset`.
pub const CONTENT_TYPE: &str = "application/json";

/// A body's SHA-256 and compressed copy, computed while it downloads:
/// `None` when that did not happen (a small body), and the caller digests
/// the finished body.
pub type EarlyDigest =
    tokio::sync::oneshot::Receiver<std::io::Result<Option<(String, Option<Spooled>)>>>;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The service answered with `Response.Error`.
    #[error("API error {code} (RequestId {request_id}): {message}")]
    Service {
        code: String,
        message: String,
        request_id: String,
        /// The server's clock from the `Date` header, for skew correction.
        server_time: Option<i64>,
    },
    #[error("HTTP status {status} from {endpoint}{hint}", hint = if (400..500).contains(status) && *status != 429 && *status != 408 { " (not the TRTC API's answer: a proxy, or a wrong --endpoint?)" } else { "" })]
    Http { status: u16, endpoint: String },
    #[error("request to {endpoint} timed out after {after:?}")]
    Timeout { endpoint: String, after: Duration },
    #[error("network error talking to {endpoint}: {message}")]
    Transport { endpoint: String, message: String },
    #[error("unreadable response from {endpoint}{rid}: {reason}", rid = request_id.as_deref().map(|r| format!(" (RequestId {r})")).unwrap_or_default())]
    Body {
        endpoint: String,
        reason: String,
        /// The answer's RequestId, when it could be read.
        request_id: Option<String>,
    },
    /// The body could not be spooled (a full or missing `--spool-dir`):
    /// every later answer would fail the same way, so the run stops.
    #[error("cannot keep the answer: {0}")]
    Spool(std::io::Error),
    /// A well-formed answer whose data cannot be right (bytes that are not
    /// UTF-8 in the CSV): a retry would bring the same, so it is not retried.
    #[error("RequestId {request_id}: {reason}")]
    BadData { request_id: String, reason: String },
    #[error(transparent)]
    Credentials(#[from] crate::tencent::credentials::CredentialsError),
}

impl ApiError {
    /// What failed the attempt, as a metrics label: the API's error code,
    /// or `http_<status>`, `timeout`, `network`, `unreadable`, `spool`,
    /// `bad_data`, `credentials`.
    pub fn outcome(&self) -> String {
        match self {
            ApiError::Service { code, .. } => code.clone(),
            ApiError::Http { status, .. } => format!("http_{status}"),
            ApiError::Timeout { .. } => "timeout".into(),
            ApiError::Transport { .. } => "network".into(),
            ApiError::Body { .. } => "unreadable".into(),
            ApiError::Spool(_) => "spool".into(),
            ApiError::BadData { .. } => "bad_data".into(),
            ApiError::Credentials(_) => "credentials".into(),
        }
    }

    /// Decides retry versus stop, by error code only (Tencent says the
    /// message text changes).
    pub fn class(&self) -> ErrorClass {
        match self {
            ApiError::Service { code, .. } => classify_code(code),
            ApiError::Http { status: 429, .. } => ErrorClass::Throttled,
            // Any other 4xx is not the API speaking (it answers errors with
            // HTTP 200 and an error code): a proxy refusing us or a wrong
            // --endpoint. A retry brings the same, so the run stops.
            ApiError::Http { status, .. } if (400..500).contains(status) && *status != 408 => {
                ErrorClass::FatalRun
            }
            ApiError::Http { .. }
            | ApiError::Timeout { .. }
            | ApiError::Transport { .. }
            | ApiError::Body { .. } => ErrorClass::Transient,
            ApiError::BadData { .. } => ErrorClass::FatalPartition,
            ApiError::Spool(_) => ErrorClass::FatalRun,
            ApiError::Credentials(_) => ErrorClass::FatalRun,
        }
    }
}

/// Connection settings for the API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub endpoint: Url,
    pub region: String,
    pub request_timeout: Duration,
    /// Where large bodies are spooled.
    pub spool: SpoolConfig,
    /// The raw zone's zstd level (`None`: the raw zone is off), for the room
    /// answer's digest begun as it downloads.
    pub raw_level: Option<i32>,
    /// Where that digest's compressed copy is built.
    pub raw_spool: SpoolConfig,
}

pub use crate::clock::now_micros;

/// The bytes of one successful HTTP answer, before any API parses them.
pub struct Posted {
    pub body: Spooled,
    /// The body's digest, begun as it arrived (when scanned).
    pub digest: Option<EarlyDigest>,
    /// The scan of the body, when asked for (a large answer's).
    pub scanned: Option<Result<Found, ScanError>>,
    pub fetched_at: DateTime<Utc>,
    pub response_at: std::time::Instant,
    /// The server's clock from its `Date` header.
    pub server_time: Option<i64>,
}

/// A client for one endpoint and one set of credentials.
pub struct Client {
    http: reqwest::Client,
    config: ApiConfig,
    host: String,
    credentials: Provider,
    /// Seconds to add to the local clock, learnt from a `SignatureExpire`.
    skew_secs: AtomicI64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.config.endpoint.as_str())
            .field("region", &self.config.region)
            .finish_non_exhaustive()
    }
}

/// `host[:port]` as the HTTP client will send it in the `Host` header.
pub fn host_header(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// The part every API 3.0 answer shares: its `Error` (the API's error, with
/// its RequestId and the server's clock) or, on success, its RequestId,
/// which must be there.
pub fn answered(
    request_id: Option<String>,
    error: Option<ErrorBody>,
    origin: &str,
    server_time: Option<i64>,
) -> Result<String, ApiError> {
    let request_id = request_id.unwrap_or_default();
    if let Some(err) = error {
        return Err(ApiError::Service {
            code: err.code,
            message: err.message,
            request_id,
            server_time,
        });
    }
    if request_id.is_empty() {
        return Err(ApiError::Body {
            endpoint: origin.to_owned(),
            reason: "Response.RequestId is missing".into(),
            request_id: None,
        });
    }
    Ok(request_id)
}

impl Client {
    pub fn new(config: ApiConfig, credentials: Provider) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("trtc-usage/", env!("CARGO_PKG_VERSION")))
            .timeout(config.request_timeout)
            .connect_timeout(Duration::from_secs(10).min(config.request_timeout))
            .build()
            .map_err(|e| ApiError::Transport {
                endpoint: config.endpoint.to_string(),
                message: e.to_string(),
            })?;
        Ok(Self {
            http,
            host: host_header(&config.endpoint),
            config,
            credentials,
            skew_secs: AtomicI64::new(0),
        })
    }

    /// The clock correction in use, in seconds.
    pub fn skew_secs(&self) -> i64 {
        self.skew_secs.load(Ordering::Relaxed)
    }

    /// Adopts the server's clock: later calls sign with `server_time`'s
    /// offset from the local clock.
    pub fn correct_skew(&self, server_time: i64) -> i64 {
        let skew = server_time - Utc::now().timestamp();
        self.skew_secs.store(skew, Ordering::Relaxed);
        skew
    }

    /// The endpoint, for errors.
    pub fn endpoint(&self) -> String {
        self.config.endpoint.to_string()
    }

    /// One signed POST of `body` as `action`; the answer's bytes, spooled
    /// (and, with `scan`, scanned for `Data` and `RequestId`) as they
    /// arrive. With `scan` (a large answer's, the room API's), a thread of
    /// its own hashes and compresses the body for the raw zone as it
    /// arrives, following the spool file and never holding the download
    /// up: on a network slower than the machine the work is done by the
    /// time the body is. A non-2xx status is an error; the body's meaning
    /// is the caller's.
    pub async fn post(&self, action: &str, body: Vec<u8>, scan: bool) -> Result<Posted, ApiError> {
        let endpoint = self.config.endpoint.as_str();
        let timestamp = Utc::now().timestamp() + self.skew_secs();
        let creds = self.credentials.credentials().await?;
        let sig = signer::sign(
            &SignInput {
                service: SERVICE,
                host: &self.host,
                content_type: CONTENT_TYPE,
                body: &body,
                timestamp,
            },
            creds.secret_key.expose(),
        );
        let mut req = self
            .http
            .post(self.config.endpoint.clone())
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .header("X-TC-Action", action)
            .header("X-TC-Version", VERSION)
            .header("X-TC-Timestamp", timestamp.to_string())
            .header("X-TC-Region", &self.config.region)
            .header(
                "X-TC-RequestClient",
                concat!("trtc-usage/", env!("CARGO_PKG_VERSION")),
            )
            .header(
                reqwest::header::AUTHORIZATION,
                signer::authorization(&creds.secret_id, &sig),
            )
            .body(body);
        if let Some(token) = &creds.token {
            req = req.header("X-TC-Token", token.expose());
        }
        let map_send = |e: reqwest::Error| self.transport_error(e);
        let mut response = req.send().await.map_err(map_send)?;
        let response_at = std::time::Instant::now();
        let status = response.status();
        let server_time = response
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| DateTime::parse_from_rfc2822(v).ok())
            .map(|t| t.timestamp());
        if !status.is_success() {
            return Err(ApiError::Http {
                status: status.as_u16(),
                endpoint: endpoint.to_owned(),
            });
        }
        // The body goes by once: into the spool (memory, then a temporary
        // file past its limit) and the scan. Nothing holds a large day in
        // memory.
        let spool_error = ApiError::Spool;
        let mut spool = self.config.spool.writer();
        let digest = scan.then(|| {
            let tail = spool.follow();
            let (level, config) = (self.config.raw_level, self.config.raw_spool.clone());
            let size = response.content_length();
            let (tx, rx) = tokio::sync::oneshot::channel();
            // A thread of its own, at a lower priority: once the body is in,
            // the digest is the least urgent of the three threads left
            // (the Parquet encoder is the critical path), and it catches up
            // on any core the other two leave idle.
            std::thread::spawn(move || {
                crate::spool::lower_priority(5);
                let _ = tx.send(tail.digest(level, &config, size));
            });
            rx
        });
        let mut scanner = scan.then(Scanner::new);
        while let Some(chunk) = response.chunk().await.map_err(map_send)? {
            if let Some(s) = scanner.as_mut() {
                s.feed(&chunk);
            }
            spool.write_all(&chunk).map_err(spool_error)?;
        }
        let fetched_at = now_micros();
        let body = spool.finish().map_err(spool_error)?;
        Ok(Posted {
            body,
            digest,
            scanned: scanner.map(Scanner::finish),
            fetched_at,
            response_at,
            server_time,
        })
    }

    fn transport_error(&self, e: reqwest::Error) -> ApiError {
        let endpoint = self.config.endpoint.to_string();
        if e.is_timeout() {
            ApiError::Timeout {
                endpoint,
                after: self.config.request_timeout,
            }
        } else {
            // The error chain names the cause (refused, reset, TLS) without
            // any header, so it carries no secret.
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                message.push_str(": ");
                message.push_str(&s.to_string());
                source = s.source();
            }
            ApiError::Transport { endpoint, message }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_failures_are_transient_and_429_throttles() {
        let e = |status| ApiError::Http {
            status,
            endpoint: "x".into(),
        };
        assert_eq!(e(502).class(), ErrorClass::Transient);
        assert_eq!(e(408).class(), ErrorClass::Transient);
        assert_eq!(e(404).class(), ErrorClass::FatalRun, "a wrong endpoint");
        assert_eq!(e(403).class(), ErrorClass::FatalRun, "a proxy refusing us");
        assert_eq!(e(429).class(), ErrorClass::Throttled);
        let body = ApiError::Body {
            endpoint: "x".into(),
            reason: "html".into(),
            request_id: None,
        };
        assert_eq!(body.class(), ErrorClass::Transient);
    }

    #[test]
    fn host_header_keeps_explicit_ports_only() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            host_header(&u("https://trtc.tencentcloudapi.com")),
            "trtc.tencentcloudapi.com"
        );
        assert_eq!(
            host_header(&u("https://trtc.tencentcloudapi.com:443/")),
            "trtc.tencentcloudapi.com"
        );
        assert_eq!(host_header(&u("http://127.0.0.1:8300/")), "127.0.0.1:8300");
    }
}
