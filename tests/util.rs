//! Helpers: a simulator per test, the real binary driven as a user would,
//! and destinations (local disk or S3) read back through object_store.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{Array, Int64Array, RecordBatch, StringArray};
use chrono::{NaiveDate, Utc};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use trtc_usage::lake::manifest::Manifest;
use trtc_usage::lake::store::Destination;
use trtc_usage::simulator::{self, SimConfig, Simulator};

/// Runs each scenario against local disk and against S3.
#[macro_export]
macro_rules! on_every_destination {
    ($($name:ident),* $(,)?) => {
        mod local {
            $( #[test] fn $name() { super::$name($crate::util::TestDest::local()) } )*
        }
        mod s3 {
            $( #[test] fn $name() {
                if let Some(d) = $crate::util::TestDest::s3() { super::$name(d) }
            } )*
        }
    };
}

pub const APP_A: u64 = 1_400_000_001;
pub const APP_B: u64 = 1_400_000_002;
/// Short intervals: tests never wait 15 seconds.
pub const INTERVAL_MS: u64 = 100;

/// A day `n` days ago in the API's clock (Beijing), complete and final.
pub fn days_ago(n: i64) -> NaiveDate {
    let today = (Utc::now() + chrono::Duration::hours(8)).date_naive();
    today - chrono::Duration::days(n)
}

pub fn sim_config() -> SimConfig {
    SimConfig {
        interval: Duration::from_millis(INTERVAL_MS),
        rooms: 30,
        ..SimConfig::default()
    }
}

pub fn start_sim(config: SimConfig) -> Simulator {
    Simulator::start("127.0.0.1:0".parse::<SocketAddr>().unwrap(), config).expect("simulator")
}

/// Where a test writes: local disk or the CI's S3 server.
pub enum TestDest {
    Local(tempfile::TempDir),
    S3 { bucket: String, prefix: String },
}

/// The S3 settings of the test server, from the environment `scripts/test` sets.
pub fn s3_env() -> Option<Vec<(String, String)>> {
    let endpoint = std::env::var("TRTC_TEST_S3_ENDPOINT").ok()?;
    Some(vec![
        ("AWS_ENDPOINT".into(), endpoint),
        (
            "AWS_ACCESS_KEY_ID".into(),
            std::env::var("TRTC_TEST_S3_KEY_ID").unwrap_or_default(),
        ),
        (
            "AWS_SECRET_ACCESS_KEY".into(),
            std::env::var("TRTC_TEST_S3_SECRET").unwrap_or_default(),
        ),
        (
            "AWS_REGION".into(),
            std::env::var("TRTC_TEST_S3_REGION").unwrap_or_else(|_| "us-east-1".into()),
        ),
        ("AWS_ALLOW_HTTP".into(), "true".into()),
    ])
}

pub fn s3_bucket() -> String {
    std::env::var("TRTC_TEST_S3_BUCKET").unwrap_or_else(|_| "trtc-test".into())
}

impl TestDest {
    pub fn local() -> Self {
        TestDest::Local(tempfile::tempdir().unwrap())
    }

    /// A fresh prefix in the test bucket, or `None` (and a note) when no S3
    /// server is configured. Under CI a missing server is a failure.
    pub fn s3() -> Option<Self> {
        if s3_env().is_none() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the S3 tests: set TRTC_TEST_S3_ENDPOINT (scripts/test does)"
            );
            skip_note(
                "S3",
                "TRTC_TEST_S3_ENDPOINT is not set: the S3 variants of the tests are skipped \
                 (./scripts/test starts an S3 server and runs them)",
            );
            return None;
        }
        Some(TestDest::S3 {
            bucket: s3_bucket(),
            // Short: s3s-fs names a metadata file after the base64 of the
            // whole key, so keys over ~159 bytes fail there ("File name too
            // long"); a raw object's key is ~130 bytes without the prefix.
            prefix: format!("t-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
        })
    }

    pub fn url(&self) -> String {
        match self {
            TestDest::Local(d) => d.path().to_str().unwrap().to_owned(),
            TestDest::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}"),
        }
    }

    pub fn env(&self) -> Vec<(String, String)> {
        match self {
            TestDest::Local(_) => vec![],
            TestDest::S3 { .. } => s3_env().unwrap(),
        }
    }

    /// The destination as the tool opens it, to read back what it wrote.
    pub fn open(&self) -> Destination {
        self.open_with(|b| b)
    }

    /// The S3 destination reached at `endpoint` (a proxy), its requests
    /// retried twice, 10-40 ms apart.
    pub fn open_at(&self, endpoint: &str) -> Destination {
        let retry = object_store::RetryConfig {
            backoff: object_store::BackoffConfig {
                init_backoff: std::time::Duration::from_millis(10),
                max_backoff: std::time::Duration::from_millis(40),
                base: 2.0,
            },
            max_retries: 2,
            retry_timeout: std::time::Duration::from_secs(10),
        };
        self.open_with(|b| b.with_endpoint(endpoint).with_retry(retry))
    }

    fn open_with(
        &self,
        configure: impl FnOnce(object_store::aws::AmazonS3Builder) -> object_store::aws::AmazonS3Builder,
    ) -> Destination {
        match self {
            TestDest::Local(_) => Destination::open(&self.url()).unwrap(),
            TestDest::S3 { bucket, prefix } => {
                let mut b = object_store::aws::AmazonS3Builder::new().with_bucket_name(bucket);
                for (k, v) in s3_env().unwrap() {
                    b = b.with_config(k.to_lowercase().parse().unwrap(), v);
                }
                let b = configure(b);
                Destination::from_store(
                    Arc::new(b.build().unwrap()),
                    Path::from(prefix.as_str()),
                    &self.url(),
                )
            }
        }
    }
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Every object under the destination, relative to it, with its bytes.
pub fn objects(dest: &TestDest) -> BTreeMap<String, Vec<u8>> {
    objects_under(dest, "")
}

/// The names of every object under the destination, relative to it.
fn names_under(dest: &TestDest, prefix: &str) -> Vec<String> {
    let d = dest.open();
    block_on(async {
        let root = Some(d.root().clone());
        let metas: Vec<_> = d.store().list(root.as_ref()).try_collect().await.unwrap();
        metas
            .into_iter()
            .map(|m| d.relative(&m.location).to_owned())
            .filter(|rel| rel.starts_with(prefix))
            .collect()
    })
}

/// The objects whose names (relative to the root) start with `prefix`,
/// with their bytes: only those are read.
pub fn objects_under(dest: &TestDest, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    let d = dest.open();
    let names = names_under(dest, prefix);
    block_on(async {
        let mut out = BTreeMap::new();
        for rel in names {
            let bytes = d
                .store()
                .get(&d.resolve(&rel))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            out.insert(rel, bytes.to_vec());
        }
        out
    })
}

/// Every object's name; a raw object's time-stamped name is shown as `*`
/// (`_raw/room_usage/app_id=…/usage_date=…/*`), so layouts compare exactly.
/// The lake's marker (`_trtc_usage/lake.json`, written by every export) is
/// left out, so layouts compare the data.
pub fn object_names(dest: &TestDest) -> BTreeSet<String> {
    names_under(dest, "")
        .into_iter()
        .filter(|k| k != "_trtc_usage/lake.json")
        .map(|k| match k.strip_prefix("_raw/") {
            Some(_) if k.ends_with(".json.zst") => format!("{}/*", &k[..k.rfind('/').unwrap()]),
            _ => k,
        })
        .collect()
}

/// The raw objects of a partition, oldest first: name and decompressed body.
pub fn raw_objects(dest: &TestDest, app: u64, day: NaiveDate) -> Vec<(String, Vec<u8>)> {
    let prefix = format!("_raw/room_usage/app_id={app}/usage_date={day}/");
    objects_under(dest, &prefix)
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                zstd::stream::decode_all(&v[..]).expect("raw objects are zstd"),
            )
        })
        .collect()
}

/// The tables a default run fills, and the two with a raw zone.
pub const TABLES: [&str; 3] = ["room_usage", "app_usage", "checks"];
pub const FETCHED: [&str; 2] = ["room_usage", "app_usage"];

/// The raw-zone entries (see [`object_names`]) of these tables' partitions.
pub fn raw_layout_of(tables: &[&str], apps: &[u64], days: &[NaiveDate]) -> BTreeSet<String> {
    let mut s = BTreeSet::new();
    for t in tables {
        for a in apps {
            for d in days {
                s.insert(format!("_raw/{t}/app_id={a}/usage_date={d}/*"));
            }
        }
    }
    s
}

/// The raw zone of a default run: both APIs' answers.
pub fn raw_layout(apps: &[u64], days: &[NaiveDate]) -> BTreeSet<String> {
    raw_layout_of(&FETCHED, apps, days)
}

/// These tables' objects only: part file and manifest of each partition.
pub fn layout_of(tables: &[&str], apps: &[u64], days: &[NaiveDate]) -> BTreeSet<String> {
    let mut s = BTreeSet::new();
    for t in tables {
        for a in apps {
            for d in days {
                s.insert(format!("{t}/app_id={a}/usage_date={d}/part-00000.parquet"));
                s.insert(format!("{t}/app_id={a}/usage_date={d}/_manifest.json"));
            }
        }
    }
    s
}

/// The three tables' objects of a default run.
pub fn table_layout(apps: &[u64], days: &[NaiveDate]) -> BTreeSet<String> {
    layout_of(&TABLES, apps, days)
}

/// What a lake of these partitions holds: each partition's file and
/// manifest, and its raw answers.
pub fn expected_layout(apps: &[u64], days: &[NaiveDate]) -> BTreeSet<String> {
    let mut s = table_layout(apps, days);
    s.extend(raw_layout(apps, days));
    s
}

/// Totals of one partition: rows, then the sum of each of the six columns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Totals {
    pub rows: u64,
    pub sums: [i64; 6],
    pub room_ids: Vec<String>,
}

/// Reads a partition's Parquet file back.
pub fn read_partition(dest: &TestDest, app: u64, day: NaiveDate) -> (Totals, Vec<RecordBatch>) {
    let bytes = get_object(
        dest,
        &format!("room_usage/app_id={app}/usage_date={day}/part-00000.parquet"),
    )
    .unwrap_or_else(|| panic!("no parquet for {app} {day}"));
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();
    let mut t = Totals::default();
    let cols = [
        "audio_seconds",
        "video_sd_seconds",
        "video_hd_seconds",
        "video_full_hd_seconds",
        "video_2k_seconds",
        "video_4k_seconds",
    ];
    for b in &batches {
        t.rows += b.num_rows() as u64;
        for (i, c) in cols.iter().enumerate() {
            let a = b
                .column_by_name(c)
                .unwrap()
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            t.sums[i] += a.iter().flatten().sum::<i64>();
        }
        let ids = b
            .column_by_name("room_id")
            .unwrap()
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        t.room_ids.extend(ids.iter().map(|s| s.unwrap().to_owned()));
    }
    (t, batches)
}

/// The `room_usage` manifest of a partition.
pub fn read_manifest(dest: &TestDest, app: u64, day: NaiveDate) -> Manifest {
    read_table_manifest(dest, "room_usage", app, day)
}

pub fn read_table_manifest(dest: &TestDest, table: &str, app: u64, day: NaiveDate) -> Manifest {
    let bytes = get_object(
        dest,
        &format!("{table}/app_id={app}/usage_date={day}/_manifest.json"),
    )
    .unwrap_or_else(|| panic!("no {table} manifest for {app} {day}"));
    serde_json::from_slice(&bytes).unwrap()
}

/// Reads a table's Parquet file of one partition back.
pub fn read_table(dest: &TestDest, table: &str, app: u64, day: NaiveDate) -> Vec<RecordBatch> {
    let bytes = get_object(
        dest,
        &format!("{table}/app_id={app}/usage_date={day}/part-00000.parquet"),
    )
    .unwrap_or_else(|| panic!("no {table} parquet for {app} {day}"));
    ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
        .unwrap()
        .build()
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Splits a simulator CSV line, which quotes only ids with a comma.
fn split_line(line: &str) -> Vec<String> {
    if let Some(rest) = line.strip_prefix('"') {
        let end = rest.find('"').unwrap();
        let mut v = vec![rest[..end].to_owned()];
        v.extend(rest[end + 2..].split(',').map(str::to_owned));
        v
    } else {
        line.split(',').map(str::to_owned).collect()
    }
}

/// What the simulator serves for `(app, day)`, totalled independently of
/// the tool's own normalizer.
pub fn sim_totals(app: u64, day: NaiveDate, rooms: u64) -> Totals {
    totals_of_csv(&simulator::data::day_csv(app, day, rooms))
}

/// A simulator CSV totalled independently of the tool's own normalizer.
pub fn totals_of_csv(csv: &str) -> Totals {
    let mut t = Totals::default();
    for line in csv.lines().skip(1) {
        let f = split_line(line);
        assert_eq!(f.len(), 7, "{line}");
        t.rows += 1;
        for i in 0..6 {
            t.sums[i] += f[i + 1].parse::<i64>().unwrap();
        }
        t.room_ids.push(f[0].clone());
    }
    t
}

/// A command for the real binary with a clean environment: no TRTC_*,
/// no real credentials, a private HOME, the simulator's demo keys.
pub fn cmd(sim: &Simulator, dest: &TestDest) -> Command {
    let mut c = lake_cmd(dest);
    c.env("TENCENTCLOUD_SECRET_ID", simulator::DEMO_SECRET_ID);
    c.env("TENCENTCLOUD_SECRET_KEY", simulator::DEMO_SECRET_KEY);
    c.env("TRTC_ENDPOINT", sim.endpoint());
    c.env("TRTC_MIN_INTERVAL", format!("{INTERVAL_MS}ms"));
    c.env("TRTC_RETRY_BACKOFF", "10ms");
    // Sized to the work, not to an idle machine: the debug-built simulator
    // takes many seconds to serve a million-room day on a loaded 2-core
    // machine. A test about timeouts sets its own (--request-timeout).
    c.env("TRTC_REQUEST_TIMEOUT", "300s");
    c
}

/// A command for the commands that need no API: a clean environment with
/// no Tencent credentials and no endpoint, only the destination.
pub fn lake_cmd(dest: &TestDest) -> Command {
    // TRTC_TEST_BIN runs the suite against another build (an older
    // release, to show a new test fails on it); by default, this one.
    let bin = std::env::var_os("TRTC_TEST_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_trtc-usage").into());
    let mut c = Command::new(bin);
    c.env_clear();
    c.env("PATH", std::env::var("PATH").unwrap_or_default());
    c.env(
        "HOME",
        std::env::temp_dir().join(format!("trtc-home-{}", uuid::Uuid::new_v4())),
    );
    c.env("TRTC_DEST", dest.url());
    c.env("TRTC_PROGRESS", "log");
    for (k, v) in dest.env() {
        c.env(k, v);
    }
    c.stdin(Stdio::null());
    c
}

/// Writes `bytes` at `rel` (relative to the lake's root).
pub fn put_object(dest: &TestDest, rel: &str, bytes: Vec<u8>) {
    let d = dest.open();
    block_on(async {
        d.store().put(&d.resolve(rel), bytes.into()).await.unwrap();
    });
}

/// The bytes of the object at `rel` (relative to the lake's root), if any:
/// one read, which a run writing other objects at the time cannot upset.
pub fn get_object(dest: &TestDest, rel: &str) -> Option<Vec<u8>> {
    let d = dest.open();
    block_on(async {
        match d.store().get(&d.resolve(rel)).await {
            Ok(r) => Some(r.bytes().await.unwrap().to_vec()),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => panic!("reading {rel}: {e}"),
        }
    })
}

/// App `app`'s lease as the lake holds it, if any.
pub fn read_lease(dest: &TestDest, app: u64) -> Option<trtc_usage::lake::lease::Record> {
    let d = dest.open();
    let rel = d
        .relative(&trtc_usage::lake::lease::lease_path(&d, app))
        .to_owned();
    get_object(dest, &rel).map(|bytes| serde_json::from_slice(&bytes).unwrap())
}

/// Ages the leases of `apps` as if their holders had stopped renewing them
/// a time to live ago: each lease's `expires_at` is put a minute in the
/// past, so the next run takes it over (with its warning) at once. A test
/// whose holder is dead (killed) uses this rather than a time to live of a
/// second, which a loaded machine's scheduler can let lapse while the
/// holder is still alive. A lease that is gone (released) is left gone.
pub fn expire_leases(dest: &TestDest, apps: &[u64]) {
    let d = dest.open();
    for &app in apps {
        let Some(mut lease) = read_lease(dest, app) else {
            continue;
        };
        lease.expires_at = chrono::Utc::now() - chrono::Duration::minutes(1);
        let rel = d
            .relative(&trtc_usage::lake::lease::lease_path(&d, app))
            .to_owned();
        put_object(dest, &rel, serde_json::to_vec(&lease).unwrap());
    }
}

/// Deletes every object whose name (relative to the root) starts with `prefix`.
pub fn delete_objects(dest: &TestDest, prefix: &str) {
    let d = dest.open();
    let names = names_under(dest, prefix);
    block_on(async {
        for n in names {
            d.store().delete(&d.resolve(&n)).await.unwrap();
        }
    });
}

/// Runs to completion; returns the output with stdout/stderr as strings.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Asserts stdout holds every one of `needles`, showing it if not.
    pub fn assert_stdout_has(&self, needles: &[&str]) -> &Self {
        assert_has("stdout", &self.stdout, needles);
        self
    }

    /// Asserts stderr holds every one of `needles`, showing it if not.
    pub fn assert_stderr_has(&self, needles: &[&str]) -> &Self {
        assert_has("stderr", &self.stderr, needles);
        self
    }
}

fn assert_has(name: &str, text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "want {needle:?} in {name}:\n{text}");
    }
}

pub fn run<S: AsRef<std::ffi::OsStr>>(c: Command, args: &[S]) -> Run {
    run_sub(c, "export", args)
}

/// Runs `trtc-usage <sub> args…` to completion.
pub fn run_sub<S: AsRef<std::ffi::OsStr>>(mut c: Command, sub: &str, args: &[S]) -> Run {
    c.arg(sub).args(args);
    let out: Output = c.output().expect("run trtc-usage");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `--app-id … --start S --end E`.
pub fn range_args(apps: &[u64], start: NaiveDate, end: NaiveDate) -> Vec<String> {
    vec![
        "--app-id".into(),
        apps_arg(apps),
        "--start".into(),
        start.to_string(),
        "--end".into(),
        end.to_string(),
    ]
}

/// `--app-id … --date D`.
pub fn date_args(apps: &[u64], day: NaiveDate) -> Vec<String> {
    vec![
        "--app-id".into(),
        apps_arg(apps),
        "--date".into(),
        day.to_string(),
    ]
}

pub fn apps_arg(apps: &[u64]) -> String {
    apps.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

pub fn tmp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{name}-{}", uuid::Uuid::new_v4()))
}

/// Serves `router` on 127.0.0.1 in a thread of its own until dropped.
pub struct FakeServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeServer {
    pub fn start(router: axum::Router) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            block_on(async move {
                let l = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(l, router)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await
                    .unwrap();
            })
        });
        Self {
            addr,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The `app_usage` rows of a partition: interval start (µs) and the six
/// minute columns (nulls as 0).
pub fn app_usage_rows(dest: &TestDest, app: u64, day: NaiveDate) -> Vec<(i64, [f64; 6])> {
    let cols = [
        "audio_minutes",
        "video_sd_minutes",
        "video_hd_minutes",
        "video_full_hd_minutes",
        "video_2k_minutes",
        "video_4k_minutes",
    ];
    let mut out = Vec::new();
    for b in read_table(dest, "app_usage", app, day) {
        let starts = b
            .column_by_name("interval_start")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow_array::TimestampMicrosecondArray>()
            .unwrap();
        let values: Vec<&arrow_array::Float64Array> = cols
            .iter()
            .map(|c| {
                b.column_by_name(c)
                    .unwrap()
                    .as_any()
                    .downcast_ref::<arrow_array::Float64Array>()
                    .unwrap()
            })
            .collect();
        for i in 0..b.num_rows() {
            let row = std::array::from_fn(|k| {
                if values[k].is_null(i) {
                    0.0
                } else {
                    values[k].value(i)
                }
            });
            out.push((starts.value(i), row));
        }
    }
    out
}

/// One row of `checks`.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckRow {
    pub series: String,
    pub room_minutes: f64,
    pub app_minutes: f64,
    pub status: String,
    pub room_request_id: String,
    pub app_request_id: String,
}

pub fn checks_rows(dest: &TestDest, app: u64, day: NaiveDate) -> Vec<CheckRow> {
    let mut out = Vec::new();
    for b in read_table(dest, "checks", app, day) {
        let s = |c: &str| {
            b.column_by_name(c)
                .unwrap()
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .clone()
        };
        let f = |c: &str| {
            b.column_by_name(c)
                .unwrap()
                .as_any()
                .downcast_ref::<arrow_array::Float64Array>()
                .unwrap()
                .clone()
        };
        let (series, status, rr, ar) = (
            s("series"),
            s("status"),
            s("room_request_id"),
            s("app_request_id"),
        );
        let (room, appm) = (f("room_minutes"), f("app_minutes"));
        for i in 0..b.num_rows() {
            out.push(CheckRow {
                series: series.value(i).to_owned(),
                room_minutes: room.value(i),
                app_minutes: appm.value(i),
                status: status.value(i).to_owned(),
                room_request_id: rr.value(i).to_owned(),
                app_request_id: ar.value(i).to_owned(),
            });
        }
    }
    out
}

/// Every file under a local destination, relative to it, as the file
/// system has them: including the names object_store's listing hides
/// (`name#<n>`, its staging files).
pub fn local_files(dest: &TestDest) -> BTreeSet<String> {
    match dest {
        TestDest::Local(dir) => files_under(dir.path()),
        _ => BTreeSet::new(),
    }
}

/// Every file below `dir`, relative to it.
pub fn files_under(dir: &std::path::Path) -> BTreeSet<String> {
    fn walk(base: &std::path::Path, dir: &std::path::Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.insert(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

/// Starts a run in the background; returns the child and a channel of its
/// stderr lines.
pub fn spawn_run(
    sim: &trtc_usage::simulator::Simulator,
    dest: &TestDest,
    args: &[String],
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    spawn_export(cmd(sim, dest), args)
}

/// Starts `export` with `c` in the background, as [`spawn_run`] does.
pub fn spawn_export(
    mut c: Command,
    args: &[String],
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    c.arg("export")
        .args(args)
        .stderr(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

pub fn signal(child: &std::process::Child, sig: &str) {
    let ok = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(ok.success());
}

pub fn wait_with_deadline(child: &mut std::process::Child, deadline: Duration) -> i32 {
    let t0 = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code().unwrap_or(-1);
        }
        assert!(t0.elapsed() < deadline, "did not stop within {deadline:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether an object exists at `rel` under the destination (one HEAD, so
/// it never races a run deleting other objects).
pub fn exists(dest: &TestDest, rel: &str) -> bool {
    let d = dest.open();
    let path = d.resolve(rel);
    block_on(async {
        object_store::ObjectStoreExt::head(d.store().as_ref(), &path)
            .await
            .is_ok()
    })
}

/// The tool that `scripts/test` provides in `var` (a Python with DuckDB,
/// pyspark or focus-validator; the Pushgateway's URL; promtool); `None`
/// (the test skips, said once) outside it, never under CI.
pub fn provided_python(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(p) => Some(p),
        Err(_) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the {what} tests (scripts/test sets {var})"
            );
            skip_note(
                what,
                &format!(
                    "{var} is not set: the {what} checks are skipped (./scripts/test provides it)"
                ),
            );
            None
        }
    }
}

/// Says once per group, on the real stderr (a plain `cargo test` captures
/// only the print macros, so a note printed with them was never seen),
/// that a group of tests is skipped, and why.
pub fn skip_note(group: &str, why: &str) {
    use std::io::Write;
    static SAID: std::sync::Mutex<BTreeSet<String>> = std::sync::Mutex::new(BTreeSet::new());
    if SAID.lock().unwrap().insert(group.to_owned()) {
        let _ = writeln!(std::io::stderr(), "skipped: {why}");
    }
}

/// What DuckDB reads of the lake at `dir`, as the README says to read it
/// (`tests/data/read_with_duckdb.py`): the column types, each partition's
/// rows and totals, the room ids.
pub fn duckdb_read(python: &str, dir: &str) -> serde_json::Value {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/read_with_duckdb.py"
    );
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "duckdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
