//! The bundled TRTC API simulator: `DescribeTrtcRoomUsage`,
//! `DescribeTrtcUsage` and the other usage meters over the real wire
//! protocol on a local address, each API served from its own module
//! (`room.rs`, `usage.rs`, `meters.rs`); this one verifies, paces, injects
//! faults and counts, alike for all.
//!
//! It verifies TC3-HMAC-SHA256 signatures and timestamps the way the real
//! service does, enforces each API's minimum interval per SecretId
//! (answering the real throttle error), serves deterministic per-(app, day)
//! CSV with the real header and 5-minute buckets that add up to it, and
//! injects the faults of `docs/tencent-api.md`'s error table on demand. Tests,
//! the README demo and the benchmarks all run against it.

pub mod data;
mod meters;
mod room;
mod usage;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use serde_json::json;
use tokio::net::TcpListener;

use crate::tencent::signer::{self, SignInput};

/// Keys the simulator accepts by default (used by `trtc-usage demo`). Not
/// secrets: the simulator is public and local.
pub const DEMO_SECRET_ID: &str = "AKIDSIMULATOR0000000000000000000DEMO";
pub const DEMO_SECRET_KEY: &str = "simulator-demo-key-not-a-secret0";

/// One injected misbehaviour.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer HTTP 200 with `Response.Error.Code` = this code.
    ApiError(String),
    /// Answer this HTTP status with a gateway's HTML page.
    Http(u16),
    /// Answer HTTP 200 with a body that is not JSON.
    NotJson,
    /// Wait this long before answering normally.
    Delay(Duration),
    /// Send the start of a response, then drop the connection.
    DropConnection,
    /// Serve this CSV as `Response.Data`.
    Data(String),
    /// Answer HTTP 200 with exactly these bytes (a malformed answer).
    Body(Vec<u8>),
    /// Serve `DescribeTrtcUsage`'s answer, altered.
    App(AppFault),
}

/// How an app-usage answer is altered.
#[derive(Debug, Clone, PartialEq)]
pub enum AppFault {
    /// Every value multiplied by this: the rooms no longer add up.
    Scale(f64),
    /// `UsageKey` in odd case (`audio`, `sd`, `Hd`, …): still matches.
    OddKeyCase,
    /// No `TimeStampKey`: buckets are read from `TimeKey`.
    NoTimeStamp,
    /// An extra series `8K` with a value in every bucket.
    ExtraKey,
    /// One bucket with a value fewer than `UsageKey` has keys.
    ShortValues,
    /// One negative value.
    Negative,
    /// One bucket on the next day.
    OutsideDay,
}

/// Which API a rule or a counter is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    /// `DescribeTrtcRoomUsage`.
    Room,
    /// `DescribeTrtcUsage`.
    App,
    /// Another meter, by its action (`DescribeRelayUsage`).
    Meter(&'static str),
}

/// When a fault applies: to calls matching the app and day (any when
/// `None`), for the first `times` such calls.
#[derive(Debug, Clone)]
pub struct FaultRule {
    /// The API it applies to (the room API unless [`FaultRule::app`]).
    pub api: Api,
    pub app_id: Option<u64>,
    pub day: Option<NaiveDate>,
    pub times: u32,
    pub fault: Fault,
}

impl FaultRule {
    /// `fault` on the next `times` calls, whatever they ask for.
    pub fn next(times: u32, fault: Fault) -> Self {
        Self {
            api: Api::Room,
            app_id: None,
            day: None,
            times,
            fault,
        }
    }

    /// `fault` on every call for `(app_id, day)`.
    pub fn always(app_id: Option<u64>, day: Option<NaiveDate>, fault: Fault) -> Self {
        Self {
            api: Api::Room,
            app_id,
            day,
            times: u32::MAX,
            fault,
        }
    }
}

impl FaultRule {
    /// The same rule, for `DescribeTrtcUsage` calls instead.
    pub fn app(mut self) -> Self {
        self.api = Api::App;
        self
    }

    /// The same rule, for `api`'s calls instead.
    pub fn on(mut self, api: Api) -> Self {
        self.api = api;
        self
    }
}

/// How the simulator behaves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Minimum interval between admitted room calls of one SecretId.
    pub interval: Duration,
    /// The same for `DescribeTrtcUsage`, and for each other meter on its
    /// own (the real limit: 5 a second each).
    pub app_interval: Duration,
    /// The code answered when called too fast.
    pub throttle_code: String,
    /// Accepted SecretId → SecretKey.
    pub keys: HashMap<String, String>,
    /// SecretId → the `X-TC-Token` its calls must carry (temporary keys).
    pub tokens: HashMap<String, String>,
    /// Known app ids; `None` accepts any.
    pub apps: Option<Vec<u64>>,
    /// Typical rooms per app and day.
    pub rooms: u64,
    /// Every (app, day) has exactly `rooms` rooms (benchmarks).
    pub exact_rooms: bool,
    /// Seconds the simulator's clock is ahead of the machine's.
    pub clock_offset_secs: i64,
    /// The API's clock, which decides which days are complete.
    pub utc_offset: FixedOffset,
    pub faults: Vec<FaultRule>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(15),
            app_interval: Duration::from_millis(200),
            throttle_code: "OperationDenied.FreqOverLimit".into(),
            keys: HashMap::from([(DEMO_SECRET_ID.to_owned(), DEMO_SECRET_KEY.to_owned())]),
            tokens: HashMap::new(),
            apps: None,
            rooms: 40,
            exact_rooms: false,
            clock_offset_secs: 0,
            utc_offset: FixedOffset::east_opt(8 * 3600).expect("valid"),
            faults: Vec::new(),
        }
    }
}

/// What the simulator saw of `DescribeTrtcUsage` (or another meter).
#[derive(Debug, Default, Clone)]
pub struct AppStats {
    pub requests: u64,
    pub served: u64,
    pub throttled: u64,
    pub served_by_partition: HashMap<(u64, NaiveDate), u32>,
    pub admitted_at: Vec<Instant>,
}

/// What the simulator saw, for tests' assertions: the room API's counters,
/// and the app API's in `app`.
#[derive(Debug, Default, Clone)]
pub struct SimStats {
    /// Every request that reached the handler, except `DescribeTrtcUsage`
    /// ones (counted in `app`).
    pub requests: u64,
    /// Calls answered with data.
    pub served: u64,
    /// Calls refused for the rate limit.
    pub throttled: u64,
    /// Calls refused for authentication.
    pub auth_failures: u64,
    /// Served calls per (app, day).
    pub served_by_partition: HashMap<(u64, NaiveDate), u32>,
    /// Arrival of every admitted call (served or failed by a fault).
    pub admitted_at: Vec<Instant>,
    /// The SecretId of every admitted call.
    pub secret_ids: Vec<String>,
    /// SHA-256 (hex) of every body served with data, by its RequestId
    /// (both APIs).
    pub body_sha256: HashMap<String, String>,
    pub app: AppStats,
    /// The other meters', by action.
    pub meters: HashMap<&'static str, AppStats>,
}

impl SimStats {
    /// Requests of every API.
    pub fn total_requests(&self) -> u64 {
        self.requests + self.app.requests + self.meters.values().map(|m| m.requests).sum::<u64>()
    }

    /// What the simulator saw of `action`, a meter's (empty if none came).
    pub fn meter(&self, action: &str) -> AppStats {
        self.meters.get(action).cloned().unwrap_or_default()
    }
}

struct Inner {
    config: SimConfig,
    stats: SimStats,
    last_admitted: HashMap<(String, Api), Instant>,
    /// Room totals per (app, day), so the app API need not regenerate a
    /// big day's rooms on every call.
    totals: HashMap<(u64, NaiveDate), [u64; 6]>,
}

type Shared = Arc<Mutex<Inner>>;

impl Inner {
    /// The counters of `api`, when it is not the room API (whose are
    /// [`SimStats`]'s own).
    fn usage_stats(&mut self, api: Api) -> Option<&mut AppStats> {
        match api {
            Api::Room => None,
            Api::App => Some(&mut self.stats.app),
            Api::Meter(action) => Some(self.stats.meters.entry(action).or_default()),
        }
    }

    fn shared(config: SimConfig) -> Shared {
        Arc::new(Mutex::new(Inner {
            config,
            stats: SimStats::default(),
            last_admitted: HashMap::new(),
            totals: HashMap::new(),
        }))
    }
}

/// A running simulator.
pub struct Simulator {
    addr: SocketAddr,
    shared: Shared,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Simulator {
    /// Serves on `listener` until `shutdown` resolves. For async callers.
    pub async fn serve(
        listener: TcpListener,
        config: SimConfig,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let shared = Inner::shared(config);
        serve_shared(listener, shared, shutdown).await
    }

    /// Starts on `addr` (port 0 for any) in a thread of its own, so
    /// synchronous tests can drive the real binary against it.
    pub fn start(addr: SocketAddr, config: SimConfig) -> std::io::Result<Self> {
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let shared = Inner::shared(config);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let s2 = shared.clone();
        let thread = std::thread::Builder::new()
            .name("trtc-simulator".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("simulator runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(std_listener).expect("listener");
                    let _ = serve_shared(listener, s2, async {
                        let _ = rx.await;
                    })
                    .await;
                });
            })?;
        Ok(Self {
            addr,
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`, for `--endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stats(&self) -> SimStats {
        self.shared.lock().expect("sim lock").stats.clone()
    }

    /// Adds a fault rule while running.
    pub fn inject(&self, rule: FaultRule) {
        self.shared
            .lock()
            .expect("sim lock")
            .config
            .faults
            .push(rule);
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve_shared(
    listener: TcpListener,
    shared: Shared,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .route("/", axum::routing::post(handle))
        .with_state(shared);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

fn http_date(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

fn json_response(now: DateTime<Utc>, body: serde_json::Value) -> Response {
    body_response(now, body.to_string())
}

fn body_response(now: DateTime<Utc>, body: String) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(&http_date(now)) {
        h.insert("date", v);
    }
    resp
}

fn api_error(now: DateTime<Utc>, code: &str, message: &str) -> Response {
    json_response(
        now,
        json!({"Response": {
            "Error": {"Code": code, "Message": message},
            "RequestId": uuid::Uuid::new_v4().to_string(),
        }}),
    )
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Checks the signature, the timestamp and the token; `Err` is the
/// response to send.
fn authenticate(
    config: &SimConfig,
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<String, (&'static str, &'static str)> {
    let fail = |code: &'static str, msg: &'static str| Err((code, msg));
    let Some(auth) = header(headers, "authorization") else {
        return fail("AuthFailure.MFAFailure", "Authorization header is missing.");
    };
    let Some(parsed) = signer::parse_authorization(auth) else {
        return fail(
            "AuthFailure.InvalidAuthorization",
            "Authorization is malformed.",
        );
    };
    let Some(timestamp) = header(headers, "x-tc-timestamp").and_then(|t| t.parse::<i64>().ok())
    else {
        return fail("MissingParameter", "X-TC-Timestamp is missing.");
    };
    if (now.timestamp() - timestamp).abs() > 300 {
        return fail(
            "AuthFailure.SignatureExpire",
            "The signature has expired: the request timestamp is more than 5 minutes off.",
        );
    }
    let Some(secret_key) = config.keys.get(&parsed.secret_id) else {
        return fail(
            "AuthFailure.SecretIdNotFound",
            "The SecretId does not exist.",
        );
    };
    let content_type = header(headers, "content-type").unwrap_or("");
    let host = header(headers, "host").unwrap_or("");
    let expected = signer::sign(
        &SignInput {
            service: "trtc",
            host,
            content_type,
            body,
            timestamp,
        },
        secret_key,
    );
    if parsed.service != "trtc"
        || parsed.signed_headers != signer::SIGNED_HEADERS
        || parsed.date != signer::utc_date(timestamp)
        || !signer::signatures_match(&parsed.signature, &expected.signature)
    {
        return fail(
            "AuthFailure.SignatureFailure",
            "The signature does not match.",
        );
    }
    if let Some(token) = config.tokens.get(&parsed.secret_id)
        && header(headers, "x-tc-token") != Some(token.as_str())
    {
        return fail(
            "AuthFailure.TokenFailure",
            "The token is missing or invalid.",
        );
    }
    Ok(parsed.secret_id)
}

fn take_fault(
    config: &mut SimConfig,
    api: Api,
    app_id: Option<u64>,
    day: Option<NaiveDate>,
) -> Option<Fault> {
    let rule = config.faults.iter_mut().find(|r| {
        r.times > 0
            && r.api == api
            && r.app_id.is_none_or(|a| Some(a) == app_id)
            && r.day.is_none_or(|d| Some(d) == day)
    })?;
    if rule.times != u32::MAX {
        rule.times -= 1;
    }
    Some(rule.fault.clone())
}

/// Which API `action` is, if the simulator serves it.
fn api_of(action: Option<&str>) -> Option<Api> {
    match action? {
        crate::tencent::room_usage::ACTION => Some(Api::Room),
        crate::tencent::app_usage::ACTION => Some(Api::App),
        other => meters::find(other).map(|(action, _)| Api::Meter(action)),
    }
}

async fn handle(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let arrived = Instant::now();
    let Some(api) = api_of(header(&headers, "x-tc-action")) else {
        let mut inner = shared.lock().expect("sim lock");
        inner.stats.requests += 1;
        let now = Utc::now() + chrono::Duration::seconds(inner.config.clock_offset_secs);
        return api_error(
            now,
            "InvalidAction",
            "The simulator does not serve this action.",
        );
    };
    let (now, fault, outcome) = match admit(&shared, api, &headers, &body, arrived) {
        Ok(admitted) => admitted,
        Err(refused) => return *refused,
    };
    let outcome = match fault {
        None => outcome,
        Some(fault) => match faulty(fault, now, outcome).await {
            Ok(outcome) => outcome,
            Err(response) => return response,
        },
    };
    match outcome {
        Err((code, message)) => api_error(now, code, &message),
        Ok((app, day, answer)) => {
            let request_id = uuid::Uuid::new_v4().to_string();
            let body = match answer {
                Answer::Room(csv) => {
                    json!({"Response": {"Data": csv, "RequestId": request_id}}).to_string()
                }
                // RequestId first here, unlike the room answer: the official
                // examples differ the same way, and the client reads by key.
                Answer::App(usage) => json!({"Response": {
                    "RequestId": request_id,
                    "UsageKey": usage.keys,
                    "UsageList": usage.list,
                }})
                .to_string(),
            };
            let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body.as_bytes()));
            {
                let mut inner = shared.lock().expect("sim lock");
                inner.stats.body_sha256.insert(request_id, sha);
                match inner.usage_stats(api) {
                    Some(s) => {
                        s.served += 1;
                        *s.served_by_partition.entry((app, day)).or_default() += 1;
                    }
                    None => {
                        inner.stats.served += 1;
                        *inner
                            .stats
                            .served_by_partition
                            .entry((app, day))
                            .or_default() += 1;
                    }
                }
            }
            body_response(now, body)
        }
    }
}

/// Verifies, paces and answers a request of `api`: the simulator's clock,
/// the fault to inject (if any) and the answer; `Err` is the response to a
/// request refused (version, region, signature, rate, body).
fn admit(
    shared: &Shared,
    api: Api,
    headers: &HeaderMap,
    body: &[u8],
    arrived: Instant,
) -> Result<(DateTime<Utc>, Option<Fault>, Outcome), Box<Response>> {
    let mut inner = shared.lock().expect("sim lock");
    match inner.usage_stats(api) {
        Some(s) => s.requests += 1,
        None => inner.stats.requests += 1,
    }
    let now = Utc::now() + chrono::Duration::seconds(inner.config.clock_offset_secs);
    if header(headers, "x-tc-version") != Some(crate::tencent::api::VERSION) {
        return Err(Box::new(api_error(
            now,
            "InvalidParameter",
            "X-TC-Version must be 2019-07-22.",
        )));
    }
    match header(headers, "x-tc-region") {
        Some("ap-guangzhou" | "ap-singapore") => {}
        _ => {
            return Err(Box::new(api_error(
                now,
                "UnsupportedRegion",
                "The region is not supported.",
            )));
        }
    }
    let secret_id = match authenticate(&inner.config, headers, body, now) {
        Ok(id) => id,
        Err((code, message)) => {
            inner.stats.auth_failures += 1;
            return Err(Box::new(api_error(now, code, message)));
        }
    };
    // Each API its own limit, per SecretId.
    let interval = match api {
        Api::Room => inner.config.interval,
        Api::App | Api::Meter(_) => inner.config.app_interval,
    };
    let key = (secret_id.clone(), api);
    if let Some(last) = inner.last_admitted.get(&key)
        && arrived.duration_since(*last) < interval
    {
        match inner.usage_stats(api) {
            Some(s) => s.throttled += 1,
            None => inner.stats.throttled += 1,
        }
        let code = inner.config.throttle_code.clone();
        return Err(Box::new(api_error(
            now,
            &code,
            "The API was called too often.",
        )));
    }
    inner.last_admitted.insert(key, arrived);
    match inner.usage_stats(api) {
        Some(s) => s.admitted_at.push(arrived),
        None => {
            inner.stats.secret_ids.push(secret_id);
            inner.stats.admitted_at.push(arrived);
        }
    }
    let bad_body = |e: serde_json::Error| {
        Box::new(api_error(
            now,
            "InvalidParameter",
            &format!("Bad request body: {e}"),
        ))
    };
    let (fault, outcome) = match api {
        Api::Room => {
            let (app_id, day, request) = room::parse(body).map_err(bad_body)?;
            let fault = take_fault(&mut inner.config, api, Some(app_id), day);
            (fault, room::evaluate(&inner.config, &request))
        }
        Api::App | Api::Meter(_) => {
            let (app_id, day, request) = usage::parse(body).map_err(bad_body)?;
            let fault = take_fault(&mut inner.config, api, Some(app_id), day);
            let series = match api {
                Api::Meter(action) => meters::find(action).expect("a served meter").1,
                _ => usage::app_series,
            };
            (fault, usage::evaluate(&mut inner, &request, series))
        }
    };
    Ok((now, fault, outcome))
}

/// Applies `fault` to an answer: the answer to send instead (`Err`), or
/// the answer altered.
async fn faulty(fault: Fault, now: DateTime<Utc>, outcome: Outcome) -> Result<Outcome, Response> {
    match fault {
        Fault::ApiError(code) => Err(api_error(now, &code, "Injected by the simulator.")),
        Fault::Http(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            Err((status, "<html><body><h1>502 Bad Gateway</h1></body></html>").into_response())
        }
        Fault::NotJson => Err((StatusCode::OK, "<html>maintenance</html>").into_response()),
        Fault::DropConnection => {
            let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
                Ok(Bytes::from_static(b"{\"Response\": {\"Data\": \"RoomId,Au")),
                Err(std::io::Error::other("connection dropped by the simulator")),
            ];
            let mut resp = Response::new(Body::from_stream(futures::stream::iter(chunks)));
            resp.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/json"));
            Err(resp)
        }
        Fault::Delay(d) => {
            tokio::time::sleep(d).await;
            Ok(outcome)
        }
        Fault::Data(csv) => Ok(outcome.map(|(app, day, _)| (app, day, Answer::Room(csv)))),
        Fault::App(f) => Ok(outcome.map(|(app, day, answer)| match answer {
            Answer::App(mut usage) => {
                alter(&mut usage, &f);
                (app, day, Answer::App(usage))
            }
            other => (app, day, other),
        })),
        Fault::Body(bytes) => {
            let mut resp = (StatusCode::OK, bytes).into_response();
            resp.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/json"));
            Err(resp)
        }
    }
}

/// The data of an answer, before its envelope.
enum Answer {
    Room(String),
    App(AppAnswer),
}

/// `UsageKey` and `UsageList` as JSON, so faults can bend them.
pub(crate) struct AppAnswer {
    keys: Vec<serde_json::Value>,
    list: Vec<serde_json::Value>,
}

/// Applies `fault` to a served app answer.
fn alter(usage: &mut AppAnswer, fault: &AppFault) {
    let values = |b: &mut serde_json::Value| -> Vec<serde_json::Value> {
        b["UsageValue"].as_array().cloned().unwrap_or_default()
    };
    match fault {
        AppFault::Scale(k) => {
            for b in &mut usage.list {
                let v: Vec<serde_json::Value> = values(b)
                    .iter()
                    .map(|v| json!(v.as_f64().unwrap_or(0.0) * k))
                    .collect();
                b["UsageValue"] = json!(v);
            }
        }
        AppFault::OddKeyCase => {
            usage.keys = ["audio", "sd", "Hd", "FULLHD", "2k", "4K"]
                .iter()
                .map(|k| json!(k))
                .collect();
        }
        AppFault::NoTimeStamp => {
            for b in &mut usage.list {
                if let Some(o) = b.as_object_mut() {
                    o.remove("TimeStampKey");
                }
            }
        }
        AppFault::ExtraKey => {
            usage.keys.push(json!("8K"));
            for b in &mut usage.list {
                let mut v = values(b);
                v.push(json!(0.5));
                b["UsageValue"] = json!(v);
            }
        }
        AppFault::ShortValues => {
            if let Some(b) = usage.list.get_mut(100) {
                let mut v = values(b);
                v.pop();
                b["UsageValue"] = json!(v);
            }
        }
        AppFault::Negative => {
            if let Some(b) = usage.list.get_mut(7) {
                let mut v = values(b);
                v[2] = json!(-3.5);
                b["UsageValue"] = json!(v);
            }
        }
        AppFault::OutsideDay => {
            if let Some(b) = usage.list.last_mut() {
                let ts = b["TimeStampKey"].as_i64().unwrap_or(0) + 300;
                b["TimeStampKey"] = json!(ts);
                b["TimeKey"] = json!("(next day)");
            }
        }
    }
}

/// What a request is answered with: the app, the day and the data, or
/// an API error.
type Outcome = Result<(u64, NaiveDate, Answer), (&'static str, String)>;
