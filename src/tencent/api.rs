//! The TRTC API client: one signed attempt at `DescribeTrtcRoomUsage` or
//! `DescribeTrtcUsage` (see [`crate::tencent::app_usage`]), and the typed
//! errors it can end in.
//!
//! This module makes exactly one HTTP attempt per call. Pacing and retries
//! live in [`crate::tencent::pacing`]; what an error *means* for the run (retry, stop
//! the app, stop everything) is [`ApiError::class`], decided here once so no
//! other module matches on error strings.

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::spool::{SpoolConfig, SpoolReader, Spooled};
use crate::tencent::app_usage::{self, AppUsage, AppUsageRequest};
use crate::tencent::credentials::Provider;
use crate::tencent::error::ErrorBody;
pub use crate::tencent::error::{ErrorClass, classify_code};
use crate::tencent::scan::{DataValue, Found, ScanError, Scanner, first_control, simple_escape};
use crate::tencent::signer::{self, SignInput};

/// The room API's action, and the version both actions use.
pub const ACTION: &str = "DescribeTrtcRoomUsage";
pub const VERSION: &str = "2019-07-22";
pub const SERVICE: &str = "trtc";
/// Sent on the wire and signed: exactly this, no `charset`.
pub const CONTENT_TYPE: &str = "application/json";

/// The request body. Field order and spelling (`SdkAppid`) are the API's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomUsageRequest {
    #[serde(rename = "SdkAppid")]
    pub sdk_app_id: u64,
    #[serde(rename = "StartTime")]
    pub start_time: String,
    #[serde(rename = "EndTime")]
    pub end_time: String,
}

/// A successful answer.
#[derive(Debug)]
pub struct RoomUsage {
    /// The HTTP body, spooled (in memory when small, else in a temporary
    /// file); `csv` is where `Response.Data`'s escaped text lies in it (see
    /// [`RoomUsage::csv`]). The raw zone's copy is compressed from it.
    pub body: Arc<Spooled>,
    csv: std::ops::Range<u64>,
    pub request_id: String,
    /// What the scan found wrong inside `Data`'s text (see
    /// [`Found::data_problem`]): the answer is refused, by the CSV reader
    /// naming the line and column when it meets the problem, else with this.
    pub data_problem: Option<String>,
    /// When the response arrived (local clock, UTC).
    pub fetched_at: DateTime<Utc>,
    /// Size of the HTTP body, for logs and benchmarks.
    pub body_bytes: usize,
    /// When the response's headers arrived: the start of the data path
    /// that the benchmark times.
    pub response_at: std::time::Instant,
    /// The body's digest for the raw zone, begun while it downloaded (see
    /// [`crate::spool::Tail`]); taken once.
    digest: std::sync::Mutex<Option<EarlyDigest>>,
}

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

/// Now, to the microsecond: the precision of the `fetched_at` column, of
/// the manifest and of the raw object's name, so all three agree exactly.
pub fn now_micros() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

/// The bytes of one successful HTTP answer, before any API parses them.
struct Answer {
    body: Spooled,
    /// The body's digest, begun as it arrived (the room API's).
    digest: Option<EarlyDigest>,
    /// The scan of the body, when asked for (the room API's).
    scanned: Option<Result<Found, ScanError>>,
    fetched_at: DateTime<Utc>,
    response_at: std::time::Instant,
    /// The server's clock from its `Date` header.
    server_time: Option<i64>,
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

impl RoomUsage {
    /// An answer read back from a kept body (the raw zone), as it was
    /// parsed when it arrived at `fetched_at`. `origin` names where the body
    /// came from, for errors. Reads the body once, in pieces (it may be a
    /// spool file): call it from a blocking thread.
    pub fn from_spooled(
        body: Spooled,
        fetched_at: DateTime<Utc>,
        origin: &str,
    ) -> Result<Self, ApiError> {
        let body = Arc::new(body);
        let mut scanner = Scanner::new();
        let mut reader = SpoolReader::new(body.clone(), 0..body.len());
        loop {
            let chunk = reader.fill_buf().map_err(|e| ApiError::Body {
                endpoint: origin.to_owned(),
                reason: format!("reading it back: {e}"),
                request_id: None,
            })?;
            if chunk.is_empty() {
                break;
            }
            scanner.feed(chunk);
            let n = chunk.len();
            reader.consume(n);
        }
        let (csv, request_id, data_problem) = located(scanner.finish(), origin, None)?;
        Ok(Self {
            body_bytes: body.len() as usize,
            body,
            csv,
            request_id,
            data_problem,
            fetched_at,
            response_at: std::time::Instant::now(),
            digest: std::sync::Mutex::new(None),
        })
    }

    /// The digest begun while the body downloaded, if there is one (once).
    pub fn take_digest(&self) -> Option<EarlyDigest> {
        self.digest.lock().expect("digest lock").take()
    }

    /// The CSV of `Response.Data`, unescaped as it is read. The CSV parser
    /// pulls from this, so unescaping runs on the parser's thread, in step
    /// with Parquet encoding, and the CSV never exists as a copy.
    pub fn csv(&self) -> DataReader<std::io::BufReader<SpoolReader>> {
        DataReader::new(SpoolReader::new(self.body.clone(), self.csv.clone()))
    }
}

/// Reads the text of a JSON string literal's contents (the bytes between
/// the quotes, as they are on the wire), unescaping and checking it as it
/// goes: a bad escape or a raw control character is an error naming
/// `Response.Data`.
#[derive(Debug)]
pub struct DataReader<R: BufRead> {
    inner: R,
    /// A decoded character that did not fit in the caller's buffer.
    pending: [u8; 4],
    pending_at: usize,
    pending_len: usize,
    /// An error found after good text was handed over, for the next read.
    failed: Option<String>,
}

/// The longest escape: a surrogate pair, `\uD83D\uDE00`.
const MAX_ESCAPE: usize = 12;

/// Decodes the escape at the start of `r` (which begins with a backslash):
/// the character and the bytes it took, or `None` when `r` ends before the
/// escape can be told.
fn decode_escape(r: &[u8]) -> Result<Option<(char, usize)>, String> {
    // Exactly four hex digits, as JSON says (`from_str_radix` alone would
    // take a sign: `\u+041`).
    let hex4 = |b: &[u8]| -> Result<u32, String> {
        b.iter()
            .try_fold(0u32, |v, &d| Some(v << 4 | (d as char).to_digit(16)?))
            .ok_or_else(|| format!("bad \\u escape {:?}", String::from_utf8_lossy(b)))
    };
    let Some(&e) = r.get(1) else {
        return Ok(None);
    };
    if let Some(b) = simple_escape(e) {
        return Ok(Some((char::from(b), 2)));
    }
    match e {
        b'u' => {
            let Some(h) = r.get(2..6) else {
                return Ok(None);
            };
            let hi = hex4(h)?;
            if !(0xD800..0xDC00).contains(&hi) {
                return char::from_u32(hi)
                    .map(|c| Some((c, 6)))
                    .ok_or_else(|| "unpaired surrogate in \\u escape".to_owned());
            }
            let Some(next) = r.get(6..8) else {
                return Ok(None);
            };
            if next != b"\\u" {
                return Err("unpaired surrogate in \\u escape".into());
            }
            let Some(l) = r.get(8..12) else {
                return Ok(None);
            };
            let lo = hex4(l)?;
            if !(0xDC00..0xE000).contains(&lo) {
                return Err("unpaired surrogate in \\u escape".into());
            }
            let code = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
            char::from_u32(code)
                .map(|c| Some((c, 12)))
                .ok_or_else(|| "invalid \\u escape".to_owned())
        }
        other => Err(format!("bad escape \\{}", other as char)),
    }
}

fn invalid_data(e: String) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("Response.Data: {e}"),
    )
}

impl<R: BufRead> DataReader<R> {
    /// `escaped` reads the literal's contents without its quotes.
    pub fn new(escaped: R) -> Self {
        Self {
            inner: escaped,
            pending: [0; 4],
            pending_at: 0,
            pending_len: 0,
            failed: None,
        }
    }

    /// Decodes the escape the input is at, consuming it; the escape may
    /// straddle the input's buffers.
    fn escape(&mut self) -> std::io::Result<Result<char, String>> {
        let buf = self.inner.fill_buf()?;
        match decode_escape(buf) {
            Ok(Some((c, used))) => {
                self.inner.consume(used);
                return Ok(Ok(c));
            }
            Ok(None) => {}
            Err(e) => return Ok(Err(e)),
        }
        // The escape runs past this buffer: gather it.
        let mut tmp = [0u8; MAX_ESCAPE];
        let mut have = buf.len();
        tmp[..have].copy_from_slice(buf);
        self.inner.consume(have);
        loop {
            let buf = self.inner.fill_buf()?;
            if buf.is_empty() {
                return Ok(Err("truncated escape".into()));
            }
            let extra = buf.len().min(MAX_ESCAPE - have);
            tmp[have..have + extra].copy_from_slice(&buf[..extra]);
            match decode_escape(&tmp[..have + extra]) {
                Ok(Some((c, used))) => {
                    self.inner.consume(used - have);
                    return Ok(Ok(c));
                }
                Ok(None) => {
                    self.inner.consume(extra);
                    have += extra;
                }
                Err(e) => return Ok(Err(e)),
            }
        }
    }
}

impl<R: BufRead> std::io::Read for DataReader<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if let Some(e) = &self.failed {
            return Err(invalid_data(e.clone()));
        }
        let mut n = 0;
        while n < out.len() && self.pending_at < self.pending_len {
            out[n] = self.pending[self.pending_at];
            self.pending_at += 1;
            n += 1;
        }
        while n < out.len() {
            let buf = self.inner.fill_buf()?;
            if buf.is_empty() {
                break;
            }
            // Copy the run up to the next escape, looking no further than
            // the caller's buffer reaches.
            let window = &buf[..buf.len().min(out.len() - n)];
            let mut run = memchr::memchr(b'\\', window).unwrap_or(window.len());
            let control = first_control(&window[..run]);
            if let Some(at) = control {
                run = at;
            }
            if run > 0 {
                out[n..n + run].copy_from_slice(&window[..run]);
                n += run;
                self.inner.consume(run);
                continue;
            }
            // The escapes of one byte (every CSV line ends in `\n`) are
            // decoded here, without the general path.
            if control.is_none()
                && let Some(&e) = buf.get(1)
                && let Some(b) = simple_escape(e)
            {
                out[n] = b;
                n += 1;
                self.inner.consume(2);
                continue;
            }
            let decoded = if control.is_some() {
                Err("a control character that is not escaped".to_owned())
            } else {
                self.escape()?
            };
            let c = match decoded {
                Ok(c) => c,
                // Hand over the good text first, so the error comes with
                // the parser positioned at the line that holds it.
                Err(e) if n > 0 => {
                    self.failed = Some(e);
                    return Ok(n);
                }
                Err(e) => {
                    self.failed = Some(e.clone());
                    return Err(invalid_data(e));
                }
            };
            let mut bytes = [0u8; 4];
            let len = c.encode_utf8(&mut bytes).len();
            let fit = len.min(out.len() - n);
            out[n..n + fit].copy_from_slice(&bytes[..fit]);
            n += fit;
            if fit < len {
                self.pending = bytes;
                self.pending_at = fit;
                self.pending_len = len;
            }
        }
        Ok(n)
    }
}

/// What a scan of the room answer's body found: the API's error, or where
/// `Response.Data`'s escaped text lies in the body, the RequestId, and what
/// is wrong inside that text, if anything. Every error names the RequestId
/// when the answer had one.
#[allow(clippy::type_complexity)]
fn located(
    scanned: Result<Found, ScanError>,
    origin: &str,
    server_time: Option<i64>,
) -> Result<(std::ops::Range<u64>, String, Option<String>), ApiError> {
    let body_error = |reason: String, request_id: Option<String>| ApiError::Body {
        endpoint: origin.to_owned(),
        reason,
        request_id,
    };
    let found = scanned
        .map_err(|e| body_error(format!("not the API's JSON ({})", e.reason), e.request_id))?;
    let request_id = match &found.request_id {
        None => None,
        Some(text) => Some(serde_json::from_slice::<String>(text).map_err(|e| {
            body_error(
                format!("not the API's JSON (Response.RequestId: {e})"),
                None,
            )
        })?),
    };
    let error = match &found.error {
        None => None,
        Some(text) => Some(serde_json::from_slice::<ErrorBody>(text).map_err(|e| {
            body_error(
                format!("not the API's JSON (Response.Error: {e})"),
                request_id.clone(),
            )
        })?),
    };
    let request_id = answered(request_id, error, origin, server_time)?;
    match found.data {
        // Only an empty string means a day with no rooms; an answer without
        // Data (or with null) is not one, and must not become a final day.
        DataValue::Missing | DataValue::Null => Err(body_error(
            "Response.Data is missing or null".into(),
            Some(request_id),
        )),
        DataValue::NotString => Err(body_error(
            "Response.Data is not a string".into(),
            Some(request_id),
        )),
        DataValue::String(range) => Ok((range, request_id, found.data_problem)),
    }
}

/// The part every API 3.0 answer shares: its `Error` (the API's error, with
/// its RequestId and the server's clock) or, on success, its RequestId,
/// which must be there.
pub(crate) fn answered(
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

    /// One signed attempt at `DescribeTrtcRoomUsage`.
    pub async fn describe_room_usage(
        &self,
        request: &RoomUsageRequest,
    ) -> Result<RoomUsage, ApiError> {
        let body = serde_json::to_vec(request).expect("a plain struct serializes");
        let answer = self.post(ACTION, body, true).await?;
        let endpoint = self.config.endpoint.to_string();
        let scanned = answer.scanned.expect("the room answer is scanned");
        let (csv, request_id, data_problem) = located(scanned, &endpoint, answer.server_time)?;
        Ok(RoomUsage {
            body_bytes: answer.body.len() as usize,
            body: Arc::new(answer.body),
            csv,
            request_id,
            data_problem,
            fetched_at: answer.fetched_at,
            response_at: answer.response_at,
            digest: std::sync::Mutex::new(answer.digest),
        })
    }

    /// One signed attempt at `DescribeTrtcUsage`.
    pub async fn describe_app_usage(
        &self,
        request: &AppUsageRequest,
    ) -> Result<AppUsage, ApiError> {
        let body = serde_json::to_vec(request).expect("a plain struct serializes");
        let answer = self.post(app_usage::ACTION, body, false).await?;
        let endpoint = self.config.endpoint.to_string();
        let mut usage = AppUsage::parse(
            answer.body,
            answer.fetched_at,
            &endpoint,
            answer.server_time,
        )?;
        usage.response_at = answer.response_at;
        Ok(usage)
    }

    /// One signed POST of `body` as `action`; the answer's bytes, spooled
    /// (and, with `scan`, scanned for `Data` and `RequestId`) as they
    /// arrive. With `scan` (the room answer, the large one), a thread of
    /// its own hashes and compresses the body for the raw zone as it
    /// arrives, following the spool file and never holding the download
    /// up: on a network slower than the machine the work is done by the
    /// time the body is. A non-2xx status is an error; the body's meaning
    /// is the caller's.
    async fn post(&self, action: &str, body: Vec<u8>, scan: bool) -> Result<Answer, ApiError> {
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
        Ok(Answer {
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

    fn locate_data(
        body: &[u8],
        origin: &str,
        server_time: Option<i64>,
    ) -> Result<(std::ops::Range<usize>, String), ApiError> {
        let mut scanner = Scanner::new();
        scanner.feed(body);
        located(scanner.finish(), origin, server_time)
            .map(|(r, id, _)| (r.start as usize..r.end as usize, id))
    }

    #[test]
    fn locate_data_finds_the_csv_or_names_what_is_wrong() {
        let body = br#"{"Response": {"Data": "RoomId\nr\"1\n", "RequestId": "req-1"}}"#;
        let (range, request_id) = locate_data(body, "e", None).unwrap();
        assert_eq!(&body[range], br#"RoomId\nr\"1\n"#);
        assert_eq!(request_id, "req-1");

        let error = br#"{"Response": {"Error": {"Code": "InvalidParameter", "Message": "m"}, "RequestId": "req-2"}}"#;
        match locate_data(error, "e", Some(7)).unwrap_err() {
            ApiError::Service {
                code,
                request_id,
                server_time,
                ..
            } => {
                assert_eq!(code, "InvalidParameter");
                assert_eq!(request_id, "req-2");
                assert_eq!(server_time, Some(7));
            }
            other => panic!("{other:?}"),
        }
        for (body, reason) in [
            (&b"<html>"[..], "not the API's JSON"),
            (&b"\xff\xfe<html>"[..], "not the API's JSON"),
            (
                br#"{"Response": {"Data": ""}}"#,
                "Response.RequestId is missing",
            ),
            (
                br#"{"Response": {"Data": 5, "RequestId": "r"}}"#,
                "Response.Data is not a string",
            ),
            (
                br#"{"Response": {"RequestId": "r"}}"#,
                "Response.Data is missing or null",
            ),
            (
                br#"{"Response": {"Data": null, "RequestId": "r"}}"#,
                "Response.Data is missing or null",
            ),
            (
                br#"{"Response": {"Data": "", "RequestId": 5}}"#,
                "Response.RequestId: invalid type",
            ),
            (
                br#"{"Response": {"Error": {"Code": 5}, "RequestId": "r"}}"#,
                "Response.Error: invalid type",
            ),
            (
                br#"{"Response": {"Data": "", "RequestId": "r"}"#,
                "the answer ends early",
            ),
        ] {
            let e = locate_data(body, "e", None).unwrap_err();
            assert!(e.to_string().contains(reason), "{e}");
            assert_eq!(e.class(), ErrorClass::Transient, "{e}");
        }
    }

    /// A spool directory that goes away (or fills up) mid-run stops the
    /// run, naming the flag: every later answer would fail the same way.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_answer_that_cannot_be_spooled_stops_the_run_naming_spool_dir() {
        use crate::simulator::{DEMO_SECRET_ID, DEMO_SECRET_KEY, SimConfig, Simulator};
        let sim = Simulator::start(
            "127.0.0.1:0".parse().unwrap(),
            SimConfig {
                rooms: 5_000,
                exact_rooms: true,
                interval: Duration::ZERO,
                ..SimConfig::default()
            },
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        let client = Client::new(
            ApiConfig {
                endpoint: Url::parse(&sim.endpoint()).unwrap(),
                region: "ap-guangzhou".into(),
                request_timeout: Duration::from_secs(30),
                spool: SpoolConfig {
                    dir: gone.clone(),
                    memory_limit: 1024,
                    in_lake: false,
                },
                raw_level: Some(1),
                raw_spool: SpoolConfig::default(),
            },
            Provider::Static(crate::tencent::credentials::Credentials {
                secret_id: DEMO_SECRET_ID.into(),
                secret_key: crate::tencent::credentials::Secret::new(DEMO_SECRET_KEY),
                token: None,
                source: "test".into(),
            }),
        )
        .unwrap();
        let day = (Utc::now() - chrono::Duration::days(9)).date_naive();
        let request = RoomUsageRequest {
            sdk_app_id: 1400000001,
            start_time: format!("{day} 00:00"),
            end_time: format!("{day} 23:59"),
        };
        let e = client.describe_room_usage(&request).await.unwrap_err();
        assert_eq!(e.class(), ErrorClass::FatalRun);
        let msg = e.to_string();
        assert!(
            msg.starts_with("cannot keep the answer: creating a spool file in ")
                && msg.contains("gone (--spool-dir)"),
            "{msg}"
        );
    }

    #[test]
    fn body_is_the_documented_shape() {
        let req = RoomUsageRequest {
            sdk_app_id: 1400017192,
            start_time: "2023-01-06 00:00".into(),
            end_time: "2023-01-06 10:00".into(),
        };
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"SdkAppid":1400017192,"StartTime":"2023-01-06 00:00","EndTime":"2023-01-06 10:00"}"#
        );
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

#[cfg(test)]
mod data_reader_tests {
    use super::*;
    use std::io::Read;

    /// Reads the literal's text through buffers of `chunk` bytes, so a
    /// decoded character can straddle two reads.
    fn unescape(json_literal: &str, chunk: usize) -> std::io::Result<String> {
        let inner = &json_literal.as_bytes()[1..json_literal.len() - 1];
        let mut reader = DataReader::new(inner);
        let mut out = Vec::new();
        let mut buf = vec![0u8; chunk];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn agrees_with_serde_json_whatever_the_read_size() {
        for s in [
            r#""""#,
            r#""RoomId,Audio\ntest_room,1\n""#,
            r#""a\"b\\c\/d\b\f\r\t""#,
            r#""\u672a\u547d\u540d 房间""#,
            r#""\ud83d\ude00 emoji""#,
            r#""plain""#,
        ] {
            let want: String = serde_json::from_str(s).unwrap();
            for chunk in [1, 2, 3, 5, 64 * 1024] {
                assert_eq!(
                    unescape(s, chunk).unwrap(),
                    want,
                    "{s} in {chunk}-byte reads"
                );
            }
        }
    }

    /// The same, with the input's own buffer `capacity` bytes long, so an
    /// escape can straddle two of the input's buffers.
    fn unescape_buffered(json_literal: &str, capacity: usize) -> std::io::Result<String> {
        let inner = &json_literal.as_bytes()[1..json_literal.len() - 1];
        let mut reader = DataReader::new(std::io::BufReader::with_capacity(capacity, inner));
        let mut out = Vec::new();
        reader.read_to_end(&mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn escapes_straddling_the_inputs_buffers_decode_the_same() {
        for s in [
            r#""ab\ncd\"e\\f""#,
            r#""x\u672a\u547d\u540d""#,
            r#""\ud83d\ude00\ud83d\ude00 emoji""#,
        ] {
            let want: String = serde_json::from_str(s).unwrap();
            for capacity in 1..14 {
                assert_eq!(
                    unescape_buffered(s, capacity).unwrap(),
                    want,
                    "{s} {capacity}"
                );
            }
        }
        for capacity in 1..14 {
            let e = unescape_buffered(r#""ab\ud83dxyzxyzxyz""#, capacity).unwrap_err();
            assert!(e.to_string().contains("unpaired surrogate"), "{e}");
            let e = unescape_buffered(r#""ab\u12""#, capacity).unwrap_err();
            assert!(
                e.to_string().contains("truncated escape"),
                "{capacity}: {e}"
            );
        }
    }

    #[test]
    fn a_raw_control_character_is_refused_after_the_good_text() {
        let inner = b"RoomId\\nr1\n";
        let mut reader = DataReader::new(&inner[..]);
        let mut buf = [0u8; 64];
        let n = reader.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"RoomId\nr1");
        let e = reader.read(&mut buf).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Response.Data: a control character that is not escaped"
        );
    }

    #[test]
    fn rejects_broken_escapes_naming_the_field() {
        for s in [r#""\ud800 alone""#, r#""\x""#, r#""\u12""#, r#""\udc00""#] {
            let e = unescape(s, 64).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{s}");
            assert!(e.to_string().starts_with("Response.Data: "), "{e}");
        }
    }
}
