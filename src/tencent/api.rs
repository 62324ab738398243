//! The TRTC API client: one signed attempt at `DescribeTrtcRoomUsage` or
//! `DescribeTrtcUsage` (see [`crate::tencent::app_usage`]), and the typed
//! errors it can end in.
//!
//! This module makes exactly one HTTP attempt per call. Pacing and retries
//! live in [`crate::tencent::pacing`]; what an error *means* for the run (retry, stop
//! the app, stop everything) is [`ApiError::class`], decided here once so no
//! other module matches on error strings.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use url::Url;

use crate::tencent::app_usage::{self, AppUsage, AppUsageRequest};
use crate::tencent::credentials::Provider;
use crate::tencent::error::ErrorBody;
pub use crate::tencent::error::{ErrorClass, classify_code};
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
    /// The HTTP body; `csv` is where `Response.Data`'s escaped text lies in
    /// it (see [`RoomUsage::csv`]), so a large day is held in memory once.
    buffer: Vec<u8>,
    csv: std::ops::Range<usize>,
    pub request_id: String,
    /// When the response arrived (local clock, UTC).
    pub fetched_at: DateTime<Utc>,
    /// Size of the HTTP body, for logs and benchmarks.
    pub body_bytes: usize,
    /// SHA-256 of the HTTP body, hex.
    pub body_sha256: String,
    /// The body, zstd-compressed as it arrived, when the client keeps it.
    pub compressed_body: Option<Vec<u8>>,
    /// When the response's headers arrived: the start of the data path
    /// that the benchmark times.
    pub response_at: std::time::Instant,
}

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
    #[error("unreadable response from {endpoint}: {reason}")]
    Body { endpoint: String, reason: String },
    /// A well-formed answer whose data cannot be right (bytes that are not
    /// UTF-8 in the CSV): a retry would bring the same, so it is not retried.
    #[error("RequestId {request_id}: {reason}")]
    BadData { request_id: String, reason: String },
    #[error(transparent)]
    Credentials(#[from] crate::tencent::credentials::CredentialsError),
}

impl ApiError {
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
    /// Keep a zstd-compressed copy of every body, made as it arrives, at
    /// this level (`None`: keep none).
    pub keep_body: Option<i32>,
}

/// What is kept of a body as its bytes go by: its SHA-256 always, and a
/// zstd-compressed copy when asked. The compressed copy is the only one the
/// job ever holds besides the body itself, and is a fraction of its size.
pub struct BodyCapture {
    sha256: Sha256,
    zstd: Option<zstd::stream::write::Encoder<'static, Vec<u8>>>,
}

impl BodyCapture {
    /// A capture that compresses at `level`, or only hashes (`None`).
    pub fn new(level: Option<i32>) -> std::io::Result<Self> {
        let zstd = match level {
            Some(level) => Some(zstd::stream::write::Encoder::new(Vec::new(), level)?),
            None => None,
        };
        Ok(Self {
            sha256: Sha256::new(),
            zstd,
        })
    }

    pub fn update(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.sha256.update(bytes);
        if let Some(z) = self.zstd.as_mut() {
            std::io::Write::write_all(z, bytes)?;
        }
        Ok(())
    }

    /// The body's SHA-256 (hex) and its compressed copy.
    pub fn finish(self) -> std::io::Result<(String, Option<Vec<u8>>)> {
        let compressed = match self.zstd {
            Some(z) => Some(z.finish()?),
            None => None,
        };
        Ok((hex::encode(self.sha256.finalize()), compressed))
    }
}

/// Now, to the microsecond: the precision of the `fetched_at` column, of
/// the manifest and of the raw object's name, so all three agree exactly.
pub fn now_micros() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

/// The bytes of one successful HTTP answer, before any API parses them.
struct Answer {
    buffer: Vec<u8>,
    fetched_at: DateTime<Utc>,
    body_sha256: String,
    compressed_body: Option<Vec<u8>>,
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
    /// came from, for errors.
    pub fn from_body(
        buffer: Vec<u8>,
        fetched_at: DateTime<Utc>,
        origin: &str,
    ) -> Result<Self, ApiError> {
        let (csv, request_id) = locate_data(&buffer, origin, None)?;
        Ok(Self {
            body_bytes: buffer.len(),
            body_sha256: hex::encode(Sha256::digest(&buffer)),
            compressed_body: None,
            buffer,
            csv,
            request_id,
            fetched_at,
            response_at: std::time::Instant::now(),
        })
    }

    /// The CSV of `Response.Data`, unescaped as it is read. The CSV parser
    /// pulls from this, so unescaping runs on the parser's thread, in step
    /// with Parquet encoding, and the CSV never exists as a second copy.
    pub fn csv(&self) -> DataReader<'_> {
        DataReader::new(&self.buffer[self.csv.clone()])
    }
}

/// Reads the text of a JSON string literal's contents (the bytes between
/// the quotes, as they are on the wire), unescaping as it goes.
#[derive(Debug)]
pub struct DataReader<'a> {
    rest: &'a [u8],
    /// A decoded character that did not fit in the caller's buffer.
    pending: [u8; 4],
    pending_at: usize,
    pending_len: usize,
}

impl<'a> DataReader<'a> {
    /// `escaped` is the literal's contents without its quotes.
    pub fn new(escaped: &'a [u8]) -> Self {
        Self {
            rest: escaped,
            pending: [0; 4],
            pending_at: 0,
            pending_len: 0,
        }
    }

    /// Decodes the escape at the start of `self.rest` (which begins with a
    /// backslash) into UTF-8, consuming it.
    fn escape(&mut self) -> Result<([u8; 4], usize), String> {
        let hex4 = |b: &[u8]| -> Result<u32, String> {
            let s = std::str::from_utf8(b).map_err(|_| "bad \\u escape".to_owned())?;
            u32::from_str_radix(s, 16).map_err(|_| format!("bad \\u escape {s:?}"))
        };
        let r = self.rest;
        let e = *r.get(1).ok_or("truncated escape")?;
        let mut used = 2;
        let c = match e {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = hex4(r.get(2..6).ok_or("truncated \\u escape")?)?;
                used = 6;
                let code = if (0xD800..0xDC00).contains(&hi) {
                    if r.get(6..8) != Some(b"\\u") {
                        return Err("unpaired surrogate in \\u escape".into());
                    }
                    let lo = hex4(r.get(8..12).ok_or("truncated \\u escape")?)?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return Err("unpaired surrogate in \\u escape".into());
                    }
                    used = 12;
                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                } else {
                    hi
                };
                char::from_u32(code).ok_or("invalid \\u escape")?
            }
            other => return Err(format!("bad escape \\{}", other as char)),
        };
        self.rest = &r[used..];
        let mut out = [0u8; 4];
        let len = c.encode_utf8(&mut out).len();
        Ok((out, len))
    }
}

impl std::io::Read for DataReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let mut n = 0;
        while n < out.len() && self.pending_at < self.pending_len {
            out[n] = self.pending[self.pending_at];
            self.pending_at += 1;
            n += 1;
        }
        while n < out.len() && !self.rest.is_empty() {
            // Copy the run up to the next escape, looking no further than
            // the caller's buffer reaches.
            let window = &self.rest[..self.rest.len().min(out.len() - n)];
            let run = memchr::memchr(b'\\', window).unwrap_or(window.len());
            if run > 0 {
                out[n..n + run].copy_from_slice(&window[..run]);
                n += run;
                self.rest = &self.rest[run..];
                continue;
            }
            let (bytes, len) = match self.escape() {
                Ok(decoded) => decoded,
                // Hand over the good text first, so the error comes with
                // the parser positioned at the line that holds it.
                Err(_) if n > 0 => return Ok(n),
                Err(e) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("Response.Data: {e}"),
                    ));
                }
            };
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

/// Bodies up to this size are parsed on the async thread; larger ones on a
/// blocking one.
const INLINE_PARSE_LIMIT: usize = 64 * 1024;

/// Parses the API's JSON answer in `buffer`: the API's error, or where
/// `Response.Data`'s escaped text lies in `buffer` and the RequestId.
fn locate_data(
    buffer: &[u8],
    endpoint: &str,
    server_time: Option<i64>,
) -> Result<(std::ops::Range<usize>, String), ApiError> {
    let body_error = |reason: String| ApiError::Body {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let envelope: Envelope = match serde_json::from_slice(buffer) {
        Ok(e) => e,
        Err(e) => {
            return Err(match bad_utf8_in_data(buffer) {
                Some(bad) => bad,
                None => body_error(format!("not the API's JSON ({e})")),
            });
        }
    };
    let r = envelope.response;
    let request_id = answered(r.request_id, r.error, endpoint, server_time)?;
    let csv = match r.data {
        // Only an empty string means a day with no rooms; an answer without
        // Data (or with null) is not one, and must not become a final day.
        // (serde reads `null` as None too.)
        None => return Err(body_error("Response.Data is missing or null".into())),
        Some(raw) if !raw.get().starts_with('"') => {
            return Err(body_error("Response.Data is not a string".into()));
        }
        Some(raw) => {
            // The literal's contents, quotes excluded; serde_json has
            // checked its escapes, the reader decodes them.
            let offset = raw.get().as_ptr() as usize - buffer.as_ptr() as usize;
            offset + 1..offset + raw.get().len() - 1
        }
    };
    Ok((csv, request_id))
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
        });
    }
    Ok(request_id)
}

/// When a body is not UTF-8 only inside `Response.Data` (otherwise the
/// API's JSON, with a RequestId), the CSV line and column of the first bad
/// byte, as a data error.
fn bad_utf8_in_data(buffer: &[u8]) -> Option<ApiError> {
    std::str::from_utf8(buffer).err()?;
    let lossy = String::from_utf8_lossy(buffer);
    let v: serde_json::Value = serde_json::from_str(&lossy).ok()?;
    let request_id = v["Response"]["RequestId"].as_str()?.to_owned();
    let data = v["Response"]["Data"].as_str()?;
    let at = data.find('\u{FFFD}')?;
    let before = &data[..at];
    let line_no = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let field = data[line_start..at].matches(',').count();
    let header: Vec<&str> = data.lines().next().unwrap_or("").split(',').collect();
    let column = header.get(field).map_or("?", |c| c.trim());
    Some(ApiError::BadData {
        request_id,
        reason: format!("CSV line {line_no}, column '{column}': not valid UTF-8"),
    })
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "Response", borrow)]
    response: ResponseBody<'a>,
}

#[derive(Deserialize)]
struct ResponseBody<'a> {
    #[serde(rename = "Data", borrow)]
    data: Option<&'a serde_json::value::RawValue>,
    #[serde(rename = "RequestId")]
    request_id: Option<String>,
    #[serde(rename = "Error")]
    error: Option<ErrorBody>,
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
        let answer = self.post(ACTION, body).await?;
        let endpoint = self.config.endpoint.to_string();
        let server_time = answer.server_time;
        // Scanning a large day's JSON takes milliseconds of CPU: do it off
        // the async threads, as the CSV work is.
        let scan = move |buffer: Vec<u8>| {
            let located = locate_data(&buffer, &endpoint, server_time);
            (buffer, located)
        };
        let Answer {
            buffer,
            fetched_at,
            body_sha256,
            compressed_body,
            response_at,
            ..
        } = answer;
        let body_bytes = buffer.len();
        let (buffer, located) = if body_bytes > INLINE_PARSE_LIMIT {
            tokio::task::spawn_blocking(move || scan(buffer))
                .await
                .expect("the JSON scan does not panic")
        } else {
            scan(buffer)
        };
        let (csv, request_id) = located?;
        Ok(RoomUsage {
            buffer,
            csv,
            request_id,
            fetched_at,
            body_bytes,
            body_sha256,
            compressed_body,
            response_at,
        })
    }

    /// One signed attempt at `DescribeTrtcUsage`.
    pub async fn describe_app_usage(
        &self,
        request: &AppUsageRequest,
    ) -> Result<AppUsage, ApiError> {
        let body = serde_json::to_vec(request).expect("a plain struct serializes");
        let answer = self.post(app_usage::ACTION, body).await?;
        let endpoint = self.config.endpoint.to_string();
        AppUsage::parse(
            answer.buffer,
            answer.fetched_at,
            answer.body_sha256,
            answer.compressed_body,
            &endpoint,
            answer.server_time,
        )
    }

    /// One signed POST of `body` as `action`; the answer's bytes, hashed
    /// (and compressed, when kept) as they arrived. A non-2xx status is an
    /// error; the body's meaning is the caller's.
    async fn post(&self, action: &str, body: Vec<u8>) -> Result<Answer, ApiError> {
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
        // Stream the body into one buffer sized from Content-Length: a large
        // day is held once, never as chunks plus their concatenation.
        let capacity = response.content_length().unwrap_or(0).min(1 << 30) as usize;
        let mut buffer: Vec<u8> = Vec::with_capacity(capacity);
        let capture_error = |e: std::io::Error| ApiError::Body {
            endpoint: endpoint.to_owned(),
            reason: format!("keeping a compressed copy of the body: {e}"),
        };
        let mut capture = BodyCapture::new(self.config.keep_body).map_err(capture_error)?;
        while let Some(chunk) = response.chunk().await.map_err(map_send)? {
            capture.update(&chunk).map_err(capture_error)?;
            buffer.extend_from_slice(&chunk);
        }
        let fetched_at = now_micros();
        let (body_sha256, compressed_body) = capture.finish().map_err(capture_error)?;
        Ok(Answer {
            buffer,
            fetched_at,
            body_sha256,
            compressed_body,
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
        };
        assert_eq!(body.class(), ErrorClass::Transient);
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
        let utf8 = b"{\"Response\": {\"Data\": \"RoomId,Audio\\nr1,5\\nr\xff2,6\\n\", \"RequestId\": \"r-8\"}}";
        let e = locate_data(utf8, "e", None).unwrap_err();
        assert_eq!(e.class(), ErrorClass::FatalPartition, "not retried");
        assert_eq!(
            e.to_string(),
            "RequestId r-8: CSV line 3, column 'RoomId': not valid UTF-8"
        );
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
        ] {
            let e = locate_data(body, "e", None).unwrap_err().to_string();
            assert!(e.contains(reason), "{e}");
        }
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

    #[test]
    fn rejects_broken_escapes_naming_the_field() {
        for s in [r#""\ud800 alone""#, r#""\x""#, r#""\u12""#, r#""\udc00""#] {
            let e = unescape(s, 64).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{s}");
            assert!(e.to_string().starts_with("Response.Data: "), "{e}");
        }
    }
}
