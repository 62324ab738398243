//! Fetched tables: partitions made from API answers (`room_usage`,
//! `app_usage` and the other meters). One mechanism for all of them:
//!
//! - a fetched table is one module here implementing [`FetchedTable`]
//!   (which calls a partition needs, how a raw answer reads back, how the
//!   answers become rows), plus one line in [`registry`];
//! - `export` runs [`Fetched::export`] for each table a step fetches, each
//!   through its own API's pacer, side by side; `rebuild` (and `export`'s
//!   repair of a damaged file) runs [`Fetched::rebuild`] from the raw zone;
//!   `status`, the plan, the dry run and the summary loop over the
//!   registry, so none of them names a fetched table;
//! - the path of one partition is written once, here, for every table:
//!   intent → the calls → raw zone and encoding side by side → the file
//!   and its manifest. `rebuild` takes the same path from the raw answers,
//!   which is why a rebuilt file is the exported one to the byte.

pub mod app_usage;
pub mod meter;
pub mod recording_usage;
pub mod relay_usage;
pub mod room_usage;
pub mod transcoding_usage;

use std::time::Duration;

use chrono::{DateTime, FixedOffset, Utc};
use futures::future::BoxFuture;
use object_store::path::Path;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::jobs::partition::{self, Problem, Written};
use crate::jobs::plan;
use crate::jobs::summary::Partition;
use crate::lake::inflight;
use crate::lake::manifest::{self, BodyInfo, CallRecord, Manifest};
use crate::lake::raw::{self, RawObject};
use crate::lake::store::Destination;
use crate::lake::write::{CallInfo, Encoded, Encoding};
use crate::spool::Spooled;
use crate::tables::Table;
use crate::tables::normalize::SchemaContract;
use crate::tencent::api::{ApiError, ErrorClass};
use crate::tencent::pacing::{Answer, Call, CallError, CallStats, PacedClient};

/// Every fetched table, in the order a step makes its calls and a summary
/// lists them. Adding a table is one line here.
pub fn registry() -> &'static [&'static dyn Fetched] {
    &[
        &room_usage::RoomUsage,
        &app_usage::AppUsage,
        &recording_usage::RECORDING_USAGE,
        &transcoding_usage::TRANSCODING_USAGE,
        &relay_usage::RELAY_USAGE,
    ]
}

/// Where and how a fetched partition is written.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub dest: &'a Destination,
    pub contract: SchemaContract,
    pub encoding: &'a Encoding,
    /// The API's clock.
    pub offset: FixedOffset,
    /// The raw zone's zstd level; `None` under `--raw off`.
    pub raw_level: Option<i32>,
}

/// Which limit paces an API's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `--min-interval` (15 s): `DescribeTrtcRoomUsage`'s one call per 15
    /// seconds.
    MinInterval,
    /// `--app-min-interval` (200 ms): the usage APIs' 5 calls a second.
    AppMinInterval,
}

impl Limit {
    /// The interval, given the run's two.
    pub fn interval(self, min_interval: Duration, app_min_interval: Duration) -> Duration {
        match self {
            Limit::MinInterval => min_interval,
            Limit::AppMinInterval => app_min_interval,
        }
    }
}

/// The answer of one call of a partition, with the call's label (empty
/// when the partition takes one call).
pub type Labelled<A> = (&'static str, A);

/// A table filled from an API's answers, as its module writes it: typed.
/// [`Fetched`] is what the jobs see of it.
pub trait FetchedTable: Send + Sync + 'static {
    /// The request of its API (which knows its action and how to attempt it).
    type Request: Call;

    fn table(&self) -> Table;

    /// Its API's action, as sent in `X-TC-Action`.
    fn action(&self) -> &'static str;

    /// The limit its API's calls are paced at.
    fn limit(&self) -> Limit {
        Limit::AppMinInterval
    }

    /// Whether a key lacking the API's permission stops the run (the room
    /// and app APIs every run needs) rather than fail only this table's
    /// partitions of the account (an opt-in meter).
    fn denial_stops_run(&self) -> bool {
        false
    }

    /// The labels of the calls a partition takes, in order (`[""]` for one
    /// call).
    fn labels(&self) -> &'static [&'static str] {
        &[""]
    }

    /// The request of each call of partition `p`, one per label.
    fn requests(&self, p: Partition) -> Vec<Self::Request>;

    /// An answer kept in the raw zone, read back (`origin` names the object).
    fn read_raw(
        &self,
        body: Spooled,
        fetched_at: DateTime<Utc>,
        origin: String,
    ) -> impl Future<Output = Result<<Self::Request as Call>::Answer, ApiError>> + Send;

    /// The partition `call` describes, encoded from its answers (one per
    /// label, in order). A problem names the RequestId and, for bad data,
    /// where it lies.
    fn encode<'a>(
        &'a self,
        cx: &'a Context<'a>,
        answers: &'a [Labelled<<Self::Request as Call>::Answer>],
        call: &'a CallInfo,
    ) -> impl Future<Output = Result<Encoded, Problem>> + Send + 'a;
}

/// How one partition's export ended.
pub enum Outcome {
    Written(Box<Written>),
    Failed(String),
    /// The app is unknown: fail this and every later partition of it.
    AppFailed(String),
    /// The key may not call this table's API: fail this and every later
    /// partition of the table, for this account.
    TableFailed(String),
    /// Stop everything.
    Fatal(String),
    Cancelled,
}

/// A fetched table as the jobs use it: the same for every table.
pub trait Fetched: Send + Sync {
    fn table(&self) -> Table;
    /// Its API's action (`DescribeTrtcUsage`).
    fn action(&self) -> &'static str;
    fn limit(&self) -> Limit;
    /// The labels of a partition's calls (`[""]` for one call).
    fn labels(&self) -> &'static [&'static str];
    /// Calls a partition takes.
    fn calls(&self) -> usize {
        self.labels().len()
    }

    /// Fetches partition `p` through `api`, keeps the answers in the raw
    /// zone and writes the partition.
    fn export<'a>(
        &'a self,
        cx: &'a Context<'a>,
        api: &'a mut PacedClient,
        cancel: &'a CancellationToken,
        stats: &'a mut CallStats,
        p: Partition,
    ) -> BoxFuture<'a, Outcome>;

    /// Rewrites partition `p` from `sources`, one raw answer per label.
    fn rebuild<'a>(
        &'a self,
        cx: &'a Context<'a>,
        p: Partition,
        sources: &'a [Source],
    ) -> BoxFuture<'a, Result<Written, String>>;
}

impl<T: FetchedTable> Fetched for T {
    fn table(&self) -> Table {
        FetchedTable::table(self)
    }
    fn action(&self) -> &'static str {
        FetchedTable::action(self)
    }
    fn limit(&self) -> Limit {
        FetchedTable::limit(self)
    }
    fn labels(&self) -> &'static [&'static str] {
        FetchedTable::labels(self)
    }
    fn export<'a>(
        &'a self,
        cx: &'a Context<'a>,
        api: &'a mut PacedClient,
        cancel: &'a CancellationToken,
        stats: &'a mut CallStats,
        p: Partition,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(export_partition(self, cx, api, cancel, stats, p))
    }
    fn rebuild<'a>(
        &'a self,
        cx: &'a Context<'a>,
        p: Partition,
        sources: &'a [Source],
    ) -> BoxFuture<'a, Result<Written, String>> {
        Box::pin(rebuild_partition(self, cx, p, sources))
    }
}

fn describe_api_error(e: &ApiError, attempts: u32) -> String {
    let tries = if attempts > 1 {
        format!(" after {attempts} attempts")
    } else {
        String::new()
    };
    match e.class() {
        ErrorClass::ClockSkew => format!(
            "{e}{tries}: the machine's clock is more than 5 minutes off the API's; check the clock (NTP)"
        ),
        _ => format!("{e}{tries}"),
    }
}

/// Whether `e` says the key's CAM policy lacks the action.
fn is_denied(e: &ApiError) -> bool {
    matches!(e, ApiError::Service { code, .. }
        if code == "AuthFailure.UnauthorizedOperation" || code.starts_with("UnauthorizedOperation"))
}

/// What a paced call's failure means for its partition.
fn call_failed<T: FetchedTable>(t: &T, e: CallError) -> Outcome {
    let action = t.action();
    match e {
        CallError::Cancelled => Outcome::Cancelled,
        CallError::Failed { error, attempts } => {
            let msg = describe_api_error(&error, attempts);
            if is_denied(&error) && !t.denial_stops_run() {
                return Outcome::TableFailed(format!(
                    "{msg}: the key may not call {action}; grant trtc:{action} to fill {}",
                    t.table()
                ));
            }
            match error.class() {
                ErrorClass::FatalRun | ErrorClass::ClockSkew => Outcome::Fatal(msg),
                ErrorClass::FatalApp => Outcome::AppFailed(msg),
                _ => Outcome::Failed(msg),
            }
        }
    }
}

/// What the manifest of `table`'s partition `p` records of `answers`
/// (responses to requests for the window `window`), their raw objects and
/// their bodies' SHA-256s (hex; filled in once digested).
fn call_info<A: Answer>(
    table: Table,
    p: Partition,
    answers: &[Labelled<A>],
    (start_time, end_time): (&str, &str),
    offset: FixedOffset,
    raw_objects: Vec<Option<String>>,
    sha256s: Vec<String>,
) -> CallInfo {
    let calls: Vec<CallRecord> = answers
        .iter()
        .zip(raw_objects)
        .zip(sha256s)
        .map(|(((label, a), raw_object), sha256)| CallRecord {
            label: (*label).to_owned(),
            request_id: a.request_id().to_owned(),
            fetched_at: a.fetched_at(),
            body: BodyInfo {
                bytes: a.body_bytes() as u64,
                sha256,
            },
            raw_object,
        })
        .collect();
    let first = calls.first().expect("a partition takes a call");
    CallInfo {
        table,
        app_id: p.app_id,
        day: p.usage_date,
        request_id: first.request_id.clone(),
        fetched_at: first.fetched_at,
        start_time: start_time.to_owned(),
        end_time: end_time.to_owned(),
        utc_offset: offset.to_string(),
        body: Some(first.body.clone()),
        raw_object: first.raw_object.clone(),
        calls: if calls.len() > 1 { calls } else { Vec::new() },
        check: None,
        derived: None,
    }
}

/// Records each body's SHA-256 in `call` (the first's in its own fields).
fn set_sha256s(call: &mut CallInfo, sha256s: Vec<String>) {
    if let (Some(body), Some(first)) = (call.body.as_mut(), sha256s.first()) {
        body.sha256 = first.clone();
    }
    for (c, sha256) in call.calls.iter_mut().zip(sha256s) {
        c.body.sha256 = sha256;
    }
}

/// Bodies up to this size are digested on the async thread; larger ones
/// on a blocking one.
const INLINE_DIGEST_LIMIT: u64 = 64 * 1024;

/// Digests an answer's body — its SHA-256, for the manifest — and keeps it
/// in the raw zone at `path`, compressed (a piece at a time, from the
/// spool). It runs while the partition's file is encoded and must succeed
/// before that file is committed: if the answer cannot be kept, the
/// partition fails rather than exist without its source (and the run
/// stops, if the spool cannot be written).
async fn digest_and_keep(
    cx: &Context<'_>,
    app_id: u64,
    path: Option<&Path>,
    answer: &impl Answer,
) -> Result<String, Problem> {
    let level = path.and(cx.raw_level);
    let body = answer.spooled_body();
    let spool = cx.encoding.outputs.clone();
    // Begun while the body downloaded, at the same level (the client's
    // `raw_level` is this run's), when the body was large enough to gain.
    let early = match answer.take_digest() {
        // The thread sends before it ends: a closed channel is a panic.
        Some(handle) => handle.await.expect("hashing and zstd do not panic"),
        None => Ok(None),
    };
    let digested = if let Some(done) = early.transpose() {
        done
    } else if body.len() > INLINE_DIGEST_LIMIT {
        tokio::task::spawn_blocking(move || raw::digest(body, level, &spool))
            .await
            .expect("hashing and zstd do not panic")
    } else {
        raw::digest(body, level, &spool)
    };
    let failed = |e: String| {
        format!(
            "RequestId {}: storing the raw response in {}: {e}",
            answer.request_id(),
            cx.dest.display()
        )
    };
    let (sha256, compressed) = digested.map_err(|e| {
        let message = match path {
            Some(_) => failed(format!("compressing it: {e}")),
            // Under --raw off only the hash was taken.
            None => format!(
                "RequestId {}: reading the spooled response: {e}",
                answer.request_id()
            ),
        };
        Problem::of(&e, message)
    })?;
    if let (Some(path), Some(compressed)) = (path, compressed) {
        raw::put(cx.dest, app_id, path, compressed)
            .await
            .map_err(|e| Problem::of(&e, failed(e.to_string())))?;
    }
    Ok(sha256)
}

/// One partition of a fetched table: its intent, the paced calls, then the
/// raw zone and the table's encoding side by side, then the file and its
/// manifest.
async fn export_partition<T: FetchedTable>(
    t: &T,
    cx: &Context<'_>,
    api: &mut PacedClient,
    cancel: &CancellationToken,
    stats: &mut CallStats,
    p: Partition,
) -> Outcome {
    let table = t.table();
    if let Err(msg) = inflight::begin(cx.dest, table, p.app_id, p.usage_date).await {
        return Outcome::Failed(msg);
    }
    let result = async {
        let requests = t.requests(p);
        let mut answers = Vec::with_capacity(requests.len());
        for (request, &label) in requests.iter().zip(t.labels()) {
            match api.call(request, cancel, stats).await {
                Ok(a) => answers.push((label, a)),
                Err(e) => return call_failed(t, e),
            }
        }
        let raw_paths: Vec<Option<Path>> = answers
            .iter()
            .map(|(label, a)| {
                cx.raw_level.map(|_| {
                    let day = p.usage_date;
                    let at = a.fetched_at();
                    raw::path_for(cx.dest, table, p.app_id, day, at, label, a.request_id())
                })
            })
            .collect();
        // The bodies' SHA-256s are known once digested, next to the
        // encoding; the manifest gets them then.
        let relative = raw_paths
            .iter()
            .map(|r| r.as_ref().map(|r| cx.dest.relative(r).to_owned()))
            .collect();
        let blank = vec![String::new(); answers.len()];
        let window = requests[0].window();
        let mut call = call_info(table, p, &answers, window, cx.offset, relative, blank);
        let received = answers[0].1.response_at().elapsed();
        let started = std::time::Instant::now();
        let keep = futures::future::join_all(
            answers
                .iter()
                .zip(&raw_paths)
                .map(|((_, a), path)| digest_and_keep(cx, p.app_id, path.as_ref(), a)),
        );
        let ((kept, digest_time), (encoded, encode_time)) =
            tokio::join!(async { (keep.await, started.elapsed()) }, async {
                (t.encode(cx, &answers, &call).await, started.elapsed())
            });
        debug!(
            %table,
            app_id = p.app_id,
            usage_date = %p.usage_date,
            received_ms = received.as_millis() as u64,
            raw_ms = digest_time.as_millis() as u64,
            encode_ms = encode_time.as_millis() as u64,
            "Answer received, digested, kept and encoded."
        );
        let kept: Result<Vec<String>, Problem> = kept.into_iter().collect();
        // A spool that cannot be written stops the run, whichever side met
        // it; any other problem fails this partition only.
        let (sha256s, encoded) = match (kept, encoded) {
            (Ok(sha256s), Ok(encoded)) => (sha256s, encoded),
            (Err(Problem::Run(msg)), _) | (_, Err(Problem::Run(msg))) => {
                return Outcome::Fatal(msg);
            }
            (Err(Problem::Partition(msg)), _) | (_, Err(Problem::Partition(msg))) => {
                return Outcome::Failed(msg);
            }
        };
        set_sha256s(&mut call, sha256s);
        if let Some(msg) = empty_answer_of_a_forgotten_day(cx, table, p, &call, &encoded).await {
            return Outcome::Failed(msg);
        }
        let body_bytes = answers.iter().map(|(_, a)| a.body_bytes()).sum();
        let response_at = answers[0].1.response_at();
        match partition::commit(cx.dest, &call, encoded, response_at, body_bytes).await {
            Ok(w) => Outcome::Written(Box::new(w)),
            Err(msg) => Outcome::Failed(msg),
        }
    }
    .await;
    inflight::end(cx.dest, table, p.app_id, p.usage_date).await;
    result
}

/// Why an answer with no rows must not replace partition `p`: the day is
/// older than the API keeps and the partition holds rows (the API forgot
/// the day; the lake is its only memory). The answer stays in the raw
/// zone. `None` when the answer may be written.
async fn empty_answer_of_a_forgotten_day(
    cx: &Context<'_>,
    table: Table,
    p: Partition,
    call: &CallInfo,
    encoded: &Encoded,
) -> Option<String> {
    if encoded.rows > 0 || !plan::is_forgotten(p.usage_date, cx.offset, Utc::now()) {
        return None;
    }
    let old = manifest::read(cx.dest, table, p.app_id, p.usage_date)
        .await
        .ok()
        .flatten()
        .filter(|m| m.rows > 0)?;
    Some(format!(
        "RequestId {} answers {} with no rows, but the partition holds {} rows from RequestId \
         {}, and the API keeps only about 3 months: the partition keeps its rows (the empty \
         answer is kept in the raw zone); delete the partition to accept an empty day",
        call.request_id, p.usage_date, old.rows, old.request_id
    ))
}

/// A raw answer a partition is rebuilt from, and the SHA-256 its body
/// must have (the one a manifest recorded), if any.
#[derive(Debug, Clone)]
pub struct Source {
    pub object: RawObject,
    pub sha256: Option<String>,
}

/// For each label, the newest of `objects` (a partition's raw answers,
/// oldest first) with it; `None` when a label has none.
pub fn newest_of(f: &dyn Fetched, objects: &[RawObject]) -> Option<Vec<RawObject>> {
    f.labels()
        .iter()
        .map(|label| objects.iter().rev().find(|o| o.label == *label).cloned())
        .collect()
}

/// The raw answers partition `p` of `f` is rebuilt from, one per label,
/// and the SHA-256 each body must have: those its manifest names (with
/// the SHA-256s it records), else `newest`; `None` when there are neither.
/// A named answer that is gone fails the partition, naming it: another
/// answer would be other data.
pub async fn sources_of(
    dest: &Destination,
    f: &dyn Fetched,
    p: Partition,
    newest: Option<Vec<RawObject>>,
) -> Result<Option<Vec<Source>>, String> {
    let table = f.table();
    let m = manifest::read(dest, table, p.app_id, p.usage_date)
        .await
        .map_err(|e| e.to_string())?;
    let named: Vec<(String, Option<String>)> = match &m {
        Some(Manifest { calls, .. }) if !calls.is_empty() => calls
            .iter()
            .map(|c| (c.raw_object.clone(), Some(c.body.sha256.clone())))
            .map(|(o, s)| o.map(|o| (o, s)))
            .collect::<Option<Vec<_>>>()
            .unwrap_or_default(),
        Some(Manifest {
            raw_object: Some(named),
            body,
            ..
        }) => vec![(named.clone(), body.as_ref().map(|b| b.sha256.clone()))],
        _ => Vec::new(),
    };
    if named.len() != f.calls() {
        // No manifest, or one exported with --raw off (its own answers
        // were never kept): the newest.
        return Ok(newest.map(|objects| {
            objects
                .into_iter()
                .map(|object| Source {
                    object,
                    sha256: None,
                })
                .collect()
        }));
    }
    let mut sources = Vec::new();
    for (relative, sha256) in named {
        let object = RawObject::named(dest, table, p.app_id, p.usage_date, &relative)
            .await
            .map_err(|e| e.to_string())?;
        sources.push(Source { object, sha256 });
    }
    Ok(Some(sources))
}

/// Rebuilds partition `p` of `t` from `sources` (one per label) through
/// the export's own encoding. Each body must be the answer its object's
/// name says (its RequestId) and, given a SHA-256, the one a manifest
/// recorded: otherwise nothing is written and the error names the object.
async fn rebuild_partition<T: FetchedTable>(
    t: &T,
    cx: &Context<'_>,
    p: Partition,
    sources: &[Source],
) -> Result<Written, String> {
    let table = t.table();
    inflight::begin(cx.dest, table, p.app_id, p.usage_date).await?;
    let written = rebuild_inner(t, cx, p, sources).await;
    inflight::end(cx.dest, table, p.app_id, p.usage_date).await;
    written
}

async fn rebuild_inner<T: FetchedTable>(
    t: &T,
    cx: &Context<'_>,
    p: Partition,
    sources: &[Source],
) -> Result<Written, String> {
    let mut answers = Vec::with_capacity(sources.len());
    let (mut keys, mut sha256s) = (Vec::new(), Vec::new());
    for (source, &label) in sources.iter().zip(t.labels()) {
        let object = &source.object;
        let key = cx.dest.relative(&object.path).to_owned();
        // The manifest records the answer's SHA-256, as the export did.
        let (body, sha256) = raw::read(cx.dest, object, &cx.encoding.spool)
            .await
            .map_err(|e| e.to_string())?;
        let answer = t
            .read_raw(body, object.fetched_at, key.clone())
            .await
            .map_err(|e| format!("raw object {key}: {e}"))?;
        // Once the body reads as an answer: is it the one its name says,
        // and the one the partition's manifest records?
        let request_id = answer.request_id();
        if !object.is_named_for(request_id) {
            return Err(format!(
                "raw object {key}: its body's RequestId {request_id} is not the one its name \
                 holds; it is not this answer (moved or replaced?), not rebuilt from it"
            ));
        }
        if let Some(expected) = source.sha256.as_deref().filter(|e| *e != sha256) {
            return Err(format!(
                "raw object {key}: its body's SHA-256 {sha256} is not {expected}, the one the \
                 partition's manifest records; not rebuilt from it"
            ));
        }
        answers.push((label, answer));
        keys.push(Some(key));
        sha256s.push(sha256);
    }
    let first = keys.first().cloned().flatten().unwrap_or_default();
    let requests = t.requests(p);
    let call = call_info(
        t.table(),
        p,
        &answers,
        requests[0].window(),
        cx.offset,
        keys,
        sha256s,
    );
    let encoded = t
        .encode(cx, &answers, &call)
        .await
        .map_err(|e| format!("rebuilding from {first}: {}", e.message()))?;
    let body_bytes = answers.iter().map(|(_, a)| a.body_bytes()).sum();
    partition::commit(
        cx.dest,
        &call,
        encoded,
        answers[0].1.response_at(),
        body_bytes,
    )
    .await
    .map_err(|e| format!("rebuilding from {first}: {e}"))
}
