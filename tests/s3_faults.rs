//! S3 faults, for real: a fault-injecting HTTP proxy between the job and
//! the test's S3 server (s3s-fs). The proxy forwards every request as it
//! came (the `Host` header kept, so SigV4 signatures still verify) and,
//! on demand, answers 500, 503 SlowDown, a cut-off response, or a slow
//! one, or pretends a create-only write succeeded (a store that ignores
//! conditional writes). After each fault: retried or the partition failed,
//! nothing partial visible, every manifest matching its file, and the next
//! run completing the lake exactly.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::util::*;

/// One injected S3 misbehaviour.
#[derive(Debug, Clone, Copy, PartialEq)]
enum S3Fault {
    /// HTTP 500 InternalError.
    Internal,
    /// HTTP 503 SlowDown, S3's throttle.
    SlowDown,
    /// The response starts, then the connection is cut.
    Cut,
    /// The response comes after this long.
    Slow(Duration),
}

#[derive(Debug, Default)]
struct ProxyState {
    upstream: String,
    /// (method, a substring of the path, times left, fault)
    rules: Vec<(Method, String, u32, S3Fault)>,
    /// The same, for requests that carry a header (`if-match`: the lease's
    /// renewals, not its take).
    header_rules: Vec<(Method, String, &'static str, u32, S3Fault)>,
    /// Answer a refused create-only write (412) as if it succeeded.
    ignore_conditions: bool,
    /// Faults served.
    injected: u32,
    /// Every request: its method and its path with the query (`=` decoded).
    seen: Vec<(Method, String)>,
}

struct Proxy {
    server: FakeServer,
    state: Arc<Mutex<ProxyState>>,
}

impl Proxy {
    fn start(upstream: &str) -> Self {
        let state = Arc::new(Mutex::new(ProxyState {
            upstream: upstream.trim_end_matches('/').to_owned(),
            ..ProxyState::default()
        }));
        let router = axum::Router::new()
            .fallback(forward)
            // Parts of multipart uploads are megabytes.
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(state.clone());
        Proxy {
            server: FakeServer::start(router),
            state,
        }
    }

    fn inject(&self, method: Method, path_has: &str, times: u32, fault: S3Fault) {
        self.state
            .lock()
            .unwrap()
            .rules
            .push((method, path_has.to_owned(), times, fault));
    }

    /// `fault` on requests with `header`, as [`Proxy::inject`] does.
    fn inject_with_header(
        &self,
        method: Method,
        path_has: &str,
        header: &'static str,
        times: u32,
        fault: S3Fault,
    ) {
        self.state.lock().unwrap().header_rules.push((
            method,
            path_has.to_owned(),
            header,
            times,
            fault,
        ));
    }

    fn injected(&self) -> u32 {
        self.state.lock().unwrap().injected
    }

    /// The requests seen so far with `method` whose path and query contain
    /// every one of `has`.
    fn seen(&self, method: Method, has: &[&str]) -> usize {
        self.state
            .lock()
            .unwrap()
            .seen
            .iter()
            .filter(|(m, p)| *m == method && has.iter().all(|h| p.contains(h)))
            .count()
    }

    /// Waits (up to 20 s) until [`Proxy::seen`] counts at least `n`.
    fn wait_seen(&self, method: Method, has: &[&str], n: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while self.seen(method.clone(), has) < n {
            assert!(
                std::time::Instant::now() < deadline,
                "{n} {method} {has:?} not seen: {:?}",
                self.state.lock().unwrap().seen
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A command that reaches S3 through the proxy.
    fn cmd(
        &self,
        sim: &trtc_usage::simulator::Simulator,
        dest: &TestDest,
    ) -> std::process::Command {
        let mut c = cmd(sim, dest);
        c.env("AWS_ENDPOINT", self.server.url());
        c
    }
}

async fn forward(
    State(state): State<Arc<Mutex<ProxyState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Keys arrive percent-encoded (`app_id%3D1`); rules name them plainly.
    let path = uri.path().replace("%3D", "=").replace("%3d", "=");
    let (upstream, fault, ignore_conditions) = {
        let mut s = state.lock().unwrap();
        let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
        s.seen.push((method.clone(), format!("{path}{query}")));
        let with_header = s
            .header_rules
            .iter_mut()
            .find(|(m, p, h, n, _)| {
                *m == method && path.contains(p.as_str()) && headers.contains_key(*h) && *n > 0
            })
            .map(|r| {
                r.3 -= 1;
                r.4
            });
        let fault = with_header.or_else(|| {
            s.rules
                .iter_mut()
                .find(|(m, p, n, _)| *m == method && path.contains(p.as_str()) && *n > 0)
                .map(|r| {
                    r.2 -= 1;
                    r.3
                })
        });
        if fault.is_some() {
            s.injected += 1;
        }
        (s.upstream.clone(), fault, s.ignore_conditions)
    };
    match fault {
        Some(S3Fault::Internal) => {
            return s3_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError");
        }
        Some(S3Fault::SlowDown) => {
            return s3_error(StatusCode::SERVICE_UNAVAILABLE, "SlowDown");
        }
        Some(S3Fault::Cut) => {
            let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
                Ok(Bytes::from_static(b"<?xml version=\"1.0\"?><Err")),
                Err(std::io::Error::other("connection cut by the proxy")),
            ];
            let mut r = Response::new(Body::from_stream(futures::stream::iter(chunks)));
            r.headers_mut()
                .insert("content-length", "400".parse().unwrap());
            return r;
        }
        Some(S3Fault::Slow(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    let url = format!(
        "{upstream}{}",
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    let client = reqwest::Client::new();
    let mut req = client.request(method.clone(), url).body(body);
    for (k, v) in &headers {
        req = req.header(k, v);
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = resp.status();
    let conditional = headers.contains_key("if-none-match");
    if ignore_conditions && conditional && status == StatusCode::PRECONDITION_FAILED {
        // A store that accepts the header and ignores it.
        let mut r = StatusCode::OK.into_response();
        r.headers_mut()
            .insert("etag", "\"ignored-condition\"".parse().unwrap());
        return r;
    }
    let mut out = Response::builder().status(status);
    for (k, v) in resp.headers() {
        if k != "transfer-encoding" && k != "connection" {
            out = out.header(k, v);
        }
    }
    out.body(Body::from(resp.bytes().await.unwrap_or_default()))
        .unwrap()
}

fn s3_error(status: StatusCode, code: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected by the test proxy</Message><RequestId>proxy</RequestId></Error>"
    );
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert("content-type", "application/xml".parse().unwrap());
    r
}

fn s3_dest_and_proxy() -> Option<(TestDest, Proxy)> {
    let dest = TestDest::s3()?;
    let endpoint = s3_env()?
        .into_iter()
        .find(|(k, _)| k == "AWS_ENDPOINT")
        .map(|(_, v)| v)?;
    Some((dest, Proxy::start(&endpoint)))
}

/// Every manifest matches its file, and every visible file is whole.
fn assert_whole(dest: &TestDest) {
    use sha2::Digest;
    let objs = objects(dest);
    for (name, bytes) in &objs {
        if let Some(dir) = name.strip_suffix("/_manifest.json") {
            let m: trtc_usage::lake::manifest::Manifest = serde_json::from_slice(bytes).unwrap();
            let file = &objs[&format!("{dir}/part-00000.parquet")];
            assert_eq!(m.file.size, file.len() as u64, "{dir}");
            assert_eq!(
                m.file.sha256,
                hex::encode(sha2::Sha256::digest(file)),
                "{dir}"
            );
        }
        if name.ends_with(".parquet") {
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                bytes::Bytes::from(bytes.clone()),
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}

/// Transient S3 faults on the writes of part files are retried by the
/// store client: the run succeeds and the lake is exact.
#[test]
fn transient_s3_faults_are_retried_and_the_lake_is_exact() {
    let Some((dest, proxy)) = s3_dest_and_proxy() else {
        return;
    };
    let sim = start_sim(sim_config());
    let days: Vec<_> = days_ago(13).iter_days().take(4).collect();
    proxy.inject(Method::PUT, "part-00000.parquet", 2, S3Fault::Internal);
    proxy.inject(Method::PUT, "_manifest.json", 2, S3Fault::SlowDown);
    proxy.inject(Method::PUT, ".json.zst", 1, S3Fault::Cut);
    proxy.inject(
        Method::GET,
        "_trtc_usage/leases/app_id=",
        1,
        S3Fault::Slow(Duration::from_millis(1500)),
    );
    let args = range_args(&[APP_A], days[0], days[3]);
    let r = run(proxy.cmd(&sim, &dest), &args);
    r.assert_code(0);
    assert!(proxy.injected() >= 5, "faults served: {}", proxy.injected());
    assert_eq!(object_names(&dest), expected_layout(&[APP_A], &days));
    assert_whole(&dest);
    for &day in &days {
        let (got, _) = read_partition(&dest, APP_A, day);
        assert_eq!(got, sim_totals(APP_A, day, 30), "{day}");
    }
}

/// A write that keeps failing fails its partition: no manifest, nothing
/// partial visible, the other days written; the next run completes it.
#[test]
fn a_persistent_s3_fault_fails_the_partition_and_the_next_run_completes_it() {
    let Some((dest, proxy)) = s3_dest_and_proxy() else {
        return;
    };
    let sim = start_sim(sim_config());
    let days: Vec<_> = days_ago(13).iter_days().take(3).collect();
    let bad = days[1];
    proxy.inject(
        Method::PUT,
        &format!("room_usage/app_id={APP_A}/usage_date={bad}/part-00000.parquet"),
        u32::MAX,
        S3Fault::Internal,
    );
    let args = range_args(&[APP_A], days[0], days[2]);
    let r = run(proxy.cmd(&sim, &dest), &args);
    r.assert_code(1);
    r.assert_stderr_has(&[
        &format!("usage_date={bad}"),
        "Partition failed",
        "part-00000.parquet",
    ]);
    assert_whole(&dest);
    let names = object_names(&dest);
    assert!(!names.contains(&format!(
        "room_usage/app_id={APP_A}/usage_date={bad}/_manifest.json"
    )));
    assert!(!names.contains(&format!(
        "room_usage/app_id={APP_A}/usage_date={bad}/part-00000.parquet"
    )));

    // The store recovers; the next run fetches that day only.
    proxy.state.lock().unwrap().rules.clear();
    std::thread::sleep(Duration::from_millis(2 * INTERVAL_MS));
    let before = sim.stats().requests;
    run(proxy.cmd(&sim, &dest), &args).assert_code(0);
    assert_eq!(
        sim.stats().requests - before,
        1,
        "only the failed day's room call"
    );
    assert_eq!(object_names(&dest), expected_layout(&[APP_A], &days));
    assert_whole(&dest);
    let (got, _) = read_partition(&dest, APP_A, bad);
    assert_eq!(got, sim_totals(APP_A, bad, 30));
}

/// A store that accepts `If-None-Match: *` and ignores it cannot hold a
/// lease: refused at preflight, exit 2, no API call, one line naming
/// `--lease off`; with `--lease off` the run goes ahead.
#[test]
fn a_store_that_ignores_create_only_writes_is_refused_naming_lease_off() {
    let Some((dest, proxy)) = s3_dest_and_proxy() else {
        return;
    };
    proxy.state.lock().unwrap().ignore_conditions = true;
    let sim = start_sim(sim_config());
    let args = date_args(&[APP_A], days_ago(10));
    let r = run(proxy.cmd(&sim, &dest), &args);
    r.assert_code(2);
    r.assert_stderr_has(&["does not honour create-only writes", "--lease off"]);
    assert_eq!(sim.stats().total_requests(), 0, "no API call");
    assert_eq!(
        r.stderr.lines().filter(|l| l.contains("ERROR")).count(),
        1,
        "{}",
        r.stderr
    );

    let mut off = args.clone();
    off.extend(["--lease".into(), "off".into()]);
    run(proxy.cmd(&sim, &dest), &off).assert_code(0);
    assert_eq!(
        object_names(&dest),
        expected_layout(&[APP_A], &[days_ago(10)])
    );
}

/// Two runs at once against S3: the lease is taken with If-None-Match,
/// the second run is refused with no API call.
#[test]
fn the_lease_holds_on_s3_too() {
    let Some(dest) = TestDest::s3() else {
        return;
    };
    let mut config = sim_config();
    config.interval = Duration::from_secs(5);
    let sim = start_sim(config);
    let mut args = range_args(&[APP_A], days_ago(12), days_ago(11));
    args.extend(["--min-interval".into(), "5s".into()]);
    let mut c = cmd(&sim, &dest);
    c.arg("export").args(&args);
    c.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut first = c.spawn().unwrap();
    // Wait until the first run holds the lease.
    let t0 = std::time::Instant::now();
    while !exists(&dest, &format!("_trtc_usage/leases/app_id={APP_A}.json")) {
        assert!(t0.elapsed() < Duration::from_secs(120), "no lease taken");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The second run talks to a simulator of its own, so its calls count alone.
    let other = start_sim(sim_config());
    let r = run(cmd(&other, &dest), &args);
    r.assert_code(2);
    r.assert_stderr_has(&["is being written by another run"]);
    assert_eq!(
        other.stats().total_requests(),
        0,
        "the second run made no call"
    );
    assert_eq!(first.wait().unwrap().code(), Some(0));
    assert!(
        !object_names(&dest)
            .iter()
            .any(|n| n.starts_with("_trtc_usage/"))
    );
}

/// A store that stalls cannot hold a stop: SIGTERM while a PUT hangs ends
/// the run within the stop's grace (5 s) with 143, the partition left for
/// the next run, which completes the lake exactly; a second signal ends it
/// at once.
#[test]
fn stops_are_honoured_while_the_store_stalls() {
    let Some((dest, proxy)) = s3_dest_and_proxy() else {
        return;
    };
    let sim = start_sim(sim_config());
    let days: Vec<_> = days_ago(12).iter_days().take(2).collect();
    let args = range_args(&[APP_A], days[0], days[1]);
    for second_signal in [false, true] {
        proxy.state.lock().unwrap().rules.clear();
        proxy.inject(
            Method::PUT,
            "part-00000.parquet",
            1,
            S3Fault::Slow(Duration::from_secs(120)),
        );
        let before = proxy.injected();
        let mut c = proxy.cmd(&sim, &dest);
        c.arg("export")
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        let t0 = std::time::Instant::now();
        // A generous bound: a loaded machine may take long to get there.
        while proxy.injected() == before {
            if let Some(status) = child.try_wait().unwrap() {
                let mut stderr = String::new();
                std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr)
                    .unwrap();
                panic!("the run ended ({status}) before its PUT stalled:\n{stderr}");
            }
            assert!(
                t0.elapsed() < Duration::from_secs(180),
                "the PUT never stalled"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let kill = |sig: &str| {
            assert!(
                std::process::Command::new("kill")
                    .arg(format!("-{sig}"))
                    .arg(child.id().to_string())
                    .status()
                    .unwrap()
                    .success()
            );
        };
        let stopped = std::time::Instant::now();
        kill("TERM");
        if second_signal {
            std::thread::sleep(Duration::from_millis(300));
            kill("INT");
        }
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(stopped.elapsed() < Duration::from_secs(15), "did not stop");
            std::thread::sleep(Duration::from_millis(20));
        };
        let took = stopped.elapsed();
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        if second_signal {
            assert_eq!(status.code(), Some(130), "{stderr}");
            assert!(took < Duration::from_secs(2), "{took:?}");
            assert!(stderr.contains("second stop request"), "{stderr}");
        } else {
            assert_eq!(status.code(), Some(143), "{stderr}");
            assert!(took < Duration::from_secs(9), "stopped in {took:?}");
            assert!(stderr.contains("abandoning the partition"), "{stderr}");
        }
        assert_whole(&dest);
    }
    // The store recovers: the next run completes the lake exactly, taking
    // over the lease the run ended by a second signal left, a time to live
    // later (aged here, not waited for).
    proxy.state.lock().unwrap().rules.clear();
    expire_leases(&dest, &[APP_A]);
    run(proxy.cmd(&sim, &dest), &args).assert_code(0);
    assert_eq!(object_names(&dest), expected_layout(&[APP_A], &days));
    assert_whole(&dest);
}

/// The lease is renewed (If-Match on its ETag, on S3) while the run lasts:
/// with a 4 s time to live, a run of about 14 s still holds it when its
/// first term has long expired, so a second run is refused then. (A
/// shorter time to live would test the same, and fail on a loaded machine
/// whose scheduler delays a renewal past it.)
#[test]
fn the_lease_is_renewed_on_s3_while_the_run_lasts() {
    let Some(dest) = TestDest::s3() else {
        return;
    };
    let mut config = sim_config();
    config.interval = Duration::from_millis(700);
    let sim = start_sim(config);
    // Twenty days at 0.7 s: the first run lasts over 13 s.
    let args = range_args(&[APP_A], days_ago(29), days_ago(10));
    let mut c = cmd(&sim, &dest);
    c.env("TRTC_LEASE_TTL", "4s")
        .env("TRTC_MIN_INTERVAL", "700ms")
        .arg("export")
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let first = c.spawn().unwrap();
    let t0 = std::time::Instant::now();
    while !exists(&dest, &format!("_trtc_usage/leases/app_id={APP_A}.json")) {
        assert!(t0.elapsed() < Duration::from_secs(120), "no lease taken");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The lease as taken; once its term is over, it must still be held
    // (renewed: a later expiry), and the first run still running.
    let expiry = || read_lease(&dest, APP_A).map(|lease| lease.expires_at);
    let first_term = expiry().expect("the lease as taken");
    while chrono::Utc::now() < first_term + chrono::Duration::milliseconds(500) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let renewed = expiry().expect("the lease is still there");
    assert!(renewed > first_term, "{renewed} after {first_term}");
    let other = start_sim(sim_config());
    let r = run(cmd(&other, &dest), &args);
    r.assert_code(2);
    r.assert_stderr_has(&["is being written by another run"]);
    assert_eq!(other.stats().total_requests(), 0);
    let out = first.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("Lost a lease"), "{stderr}");
}

/// A writer whose lease renewals cannot go through (`fault` on every
/// renewal, an `If-Match` PUT): it stops before its lease could expire,
/// exit 2 naming the lease, leaving only whole partitions; another run
/// then completes the lake exactly.
fn a_writer_that_cannot_renew_stops_before_it_could_be_overtaken(fault: S3Fault) {
    let Some((dest, proxy)) = s3_dest_and_proxy() else {
        return;
    };
    let mut config = sim_config();
    config.interval = Duration::from_millis(300);
    let sim = start_sim(config);
    proxy.inject_with_header(
        Method::PUT,
        "_trtc_usage/leases/app_id=",
        "if-match",
        1000,
        fault,
    );
    // 40 days at 0.3 s: 12 s of calls, where the fence closes 1.5 s after
    // the take (time to live 2 s, less its quarter).
    let days: Vec<_> = days_ago(49).iter_days().take(40).collect();
    let args = range_args(&[APP_A], days[0], days[39]);
    let mut a = proxy.cmd(&sim, &dest);
    a.env("TRTC_LEASE_TTL", "2s")
        .env("TRTC_MIN_INTERVAL", "300ms");
    let r = run(a, &args);
    r.assert_code(2);
    r.assert_stderr_has(&[
        "_trtc_usage/leases/app_id=",
        "could not be renewed since",
        "commits nothing more",
    ]);
    // Early, by its own clock: 40 calls take 12 s, the fence 1.5 s (how
    // long a loaded machine takes to get there is no part of it).
    assert!(sim.stats().requests < 40, "it stopped early");
    assert_whole(&dest);
    // Straight to the store: the next run completes what was left.
    run(cmd(&sim, &dest), &args).assert_code(0);
    assert_eq!(object_names(&dest), expected_layout(&[APP_A], &days));
    assert_whole(&dest);
}

#[test]
fn a_writer_whose_renewals_stall_stops_before_it_could_be_overtaken() {
    a_writer_that_cannot_renew_stops_before_it_could_be_overtaken(S3Fault::Slow(
        Duration::from_secs(60),
    ));
}

#[test]
fn a_writer_whose_renewals_fail_for_its_whole_ttl_stops() {
    a_writer_that_cannot_renew_stops_before_it_could_be_overtaken(S3Fault::Internal);
}

/// A file for S3 streamed while it is written (`upload::Streamed`), at
/// the library's level, through the proxy: the destination, the key, a
/// spool that moves to a file at once, and a runtime.
struct Streaming {
    dest: TestDest,
    proxy: Proxy,
    lake: trtc_usage::lake::store::Destination,
    path: object_store::path::Path,
    spool: trtc_usage::spool::SpoolConfig,
    _spool_dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
}

/// Parts of 5 MiB, S3's smallest.
const PART: usize = 5 * 1024 * 1024;

impl Streaming {
    fn start() -> Option<Self> {
        let (dest, proxy) = s3_dest_and_proxy()?;
        let lake = dest.open_at(&proxy.server.url());
        let path = lake.part_path(trtc_usage::tables::Table::ROOM_USAGE, APP_A, days_ago(3));
        let spool_dir = tempfile::tempdir().unwrap();
        Some(Streaming {
            dest,
            proxy,
            lake,
            path,
            spool: trtc_usage::spool::SpoolConfig {
                dir: spool_dir.path().to_owned(),
                memory_limit: 64 * 1024,
                in_lake: false,
            },
            _spool_dir: spool_dir,
            runtime: tokio::runtime::Runtime::new().unwrap(),
        })
    }

    /// A writer and the upload following it.
    fn follow(
        &self,
    ) -> (
        trtc_usage::spool::SpoolWriter,
        trtc_usage::lake::upload::Streamed,
    ) {
        let _in = self.runtime.enter();
        let mut writer = self.spool.writer();
        let upload = trtc_usage::lake::upload::Streamed::follow(
            self.lake.store(),
            &self.path,
            &mut writer,
            PART,
        );
        (writer, upload)
    }

    /// The commit's put: `upload` completed, or `file` put whole.
    fn put(
        &self,
        file: trtc_usage::spool::Spooled,
        upload: trtc_usage::lake::upload::Streamed,
    ) -> Result<(), trtc_usage::lake::upload::UploadError> {
        self.runtime.block_on(trtc_usage::lake::upload::put(
            &self.lake,
            &self.path,
            file,
            Some(upload),
        ))
    }

    fn visible(&self) -> bool {
        use object_store::ObjectStoreExt;
        self.runtime
            .block_on(self.lake.store().head(&self.path))
            .is_ok()
    }

    /// Part uploads of the key seen by the proxy.
    fn parts_sent(&self) -> usize {
        self.proxy
            .seen(Method::PUT, &["part-00000.parquet?", "partNumber="])
    }
}

fn bytes_of(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i >> 16) as u8)
        .collect()
}

/// Whole parts go up while the file is still being written, the last one
/// once it is done; nothing is visible before the commit completes the
/// upload, and then the object is the bytes written.
#[test]
fn a_big_file_goes_up_in_parts_while_it_is_written() {
    use std::io::Write;
    let Some(s) = Streaming::start() else { return };
    // The follower hears of the bytes a mebibyte at a time, behind the
    // writer's buffer: 2 MiB past the second part is surely past it.
    let bytes = bytes_of(2 * PART + 2 * 1024 * 1024);
    let (mut writer, upload) = s.follow();
    writer.write_all(&bytes).unwrap();
    // Not finished: the two whole parts are sent all the same.
    s.proxy.wait_seen(Method::PUT, &["partNumber="], 2);
    assert_eq!(
        s.proxy.seen(Method::POST, &["part-00000.parquet?uploads"]),
        1
    );
    assert!(!s.visible(), "nothing is visible before the commit");
    let file = writer.finish().unwrap();
    assert!(!s.visible(), "nor once the file is written");
    s.put(file, upload).unwrap();
    assert_eq!(s.parts_sent(), 3);
    assert_eq!(
        s.proxy.seen(Method::POST, &["uploadId="]),
        1,
        "completed once"
    );
    let back = objects(&s.dest);
    let key = s.lake.relative(&s.path).to_owned();
    assert!(back[&key] == bytes, "the object is the bytes written");
}

/// A file of one part or less is one PUT at the commit, no multipart
/// upload.
#[test]
fn a_small_file_is_one_put() {
    use std::io::Write;
    let Some(s) = Streaming::start() else { return };
    let bytes = bytes_of(PART);
    let (mut writer, upload) = s.follow();
    writer.write_all(&bytes).unwrap();
    let file = writer.finish().unwrap();
    s.put(file, upload).unwrap();
    assert_eq!(s.proxy.seen(Method::POST, &["uploads"]), 0);
    assert_eq!(s.proxy.seen(Method::PUT, &["part-00000.parquet"]), 1);
    assert!(objects(&s.dest)[s.lake.relative(&s.path)] == bytes);
}

/// An upload that is not committed leaves nothing: dropped after the file
/// was written (the partition failed elsewhere), or with its writer
/// dropped half-way (the encoder failed), it is aborted.
#[test]
fn an_upload_not_committed_is_aborted() {
    use std::io::Write;
    let Some(s) = Streaming::start() else { return };
    let aborts = |s: &Streaming| {
        s.proxy
            .seen(Method::DELETE, &["part-00000.parquet?uploadId="])
    };
    let bytes = bytes_of(2 * PART + 1);

    let (mut writer, upload) = s.follow();
    writer.write_all(&bytes).unwrap();
    let _file = writer.finish().unwrap();
    s.proxy.wait_seen(Method::PUT, &["partNumber="], 2);
    drop(upload);
    s.proxy
        .wait_seen(Method::DELETE, &["part-00000.parquet?uploadId="], 1);

    // (The first upload's parts are all counted: it aborts its requests
    // before it aborts the upload.)
    let sent = s.parts_sent();
    let (mut writer, upload) = s.follow();
    writer.write_all(&bytes[..PART + 2 * 1024 * 1024]).unwrap();
    s.proxy.wait_seen(Method::PUT, &["partNumber="], sent + 1);
    drop(writer);
    s.proxy
        .wait_seen(Method::DELETE, &["part-00000.parquet?uploadId="], 2);
    // The upload says it put nothing: the caller's file is what counts.
    let put = s.runtime.block_on(upload.complete()).unwrap();
    assert!(!put, "an abandoned upload is not in place");
    assert_eq!(aborts(&s), 2);
    assert!(!s.visible());
    assert_eq!(
        s.proxy.seen(Method::POST, &["uploadId="]),
        0,
        "never completed"
    );
}

/// A part the store keeps refusing fails the upload, naming the object:
/// the upload is aborted and nothing is visible.
#[test]
fn a_part_that_keeps_failing_fails_the_upload_naming_it() {
    use std::io::Write;
    let Some(s) = Streaming::start() else { return };
    s.proxy.inject(
        Method::PUT,
        "part-00000.parquet",
        u32::MAX,
        S3Fault::Internal,
    );
    let (mut writer, upload) = s.follow();
    writer.write_all(&bytes_of(3 * PART)).unwrap();
    let file = writer.finish().unwrap();
    let e = s.put(file, upload).unwrap_err().to_string();
    assert!(
        e.contains("uploading") && e.contains("part-00000.parquet"),
        "{e}"
    );
    assert!(s.proxy.seen(Method::DELETE, &["uploadId="]) >= 1, "aborted");
    assert!(!s.visible());
}

/// A day whose room file is bigger than a part, exported to S3: the file
/// goes up in parts while it is encoded. A part the store keeps refusing
/// fails the partition with one line naming the object; the upload is
/// aborted and nothing of the day is visible. The next run writes the day,
/// exact.
#[test]
fn a_day_bigger_than_a_part_streams_to_s3_and_a_failed_part_leaves_nothing() {
    use trtc_usage::simulator::{self, SimConfig};
    let Some((dest, proxy)) = s3_dest_and_proxy() else {
        return;
    };
    // About 12 MB of room file: two 8 MiB parts.
    const ROOMS: u64 = 1_000_000;
    let sim = start_sim(SimConfig {
        rooms: ROOMS,
        exact_rooms: true,
        ..sim_config()
    });
    let day = days_ago(9);
    let room_part = format!("room_usage/app_id={APP_A}/usage_date={day}/part-00000.parquet");
    // No raw zone here: s3s-fs cannot hold a multipart upload of a key as
    // long as a raw object's (it names a file after the key's base64 and
    // the upload's id, past 255 bytes), and this test is about the room
    // file; real stores take keys of 1,024 bytes.
    let args = [
        date_args(&[APP_A], day),
        ["--tables", "room_usage", "--raw", "off"]
            .map(str::to_owned)
            .to_vec(),
    ]
    .concat();
    proxy.inject(Method::PUT, &room_part, u32::MAX, S3Fault::Internal);
    let r = run(proxy.cmd(&sim, &dest), &args);
    r.assert_code(1);
    r.assert_stderr_has(&["Partition failed", "uploading", &room_part, "partNumber="]);
    assert_eq!(
        proxy.seen(Method::POST, &[&format!("{room_part}?uploads")]),
        1,
        "a multipart upload, begun while the file was encoded"
    );
    assert!(
        proxy.seen(Method::DELETE, &[&format!("{room_part}?uploadId=")]) >= 1,
        "aborted"
    );
    let names = object_names(&dest);
    assert!(
        !names.iter().any(|n| n.starts_with("room_usage/")),
        "{names:?}"
    );

    proxy.state.lock().unwrap().rules.clear();
    std::thread::sleep(Duration::from_millis(2 * INTERVAL_MS));
    run(proxy.cmd(&sim, &dest), &args).assert_code(0);
    assert_eq!(
        proxy.seen(Method::POST, &[&format!("{room_part}?uploadId=")]),
        1,
        "completed once"
    );
    assert_whole(&dest);
    let m = read_manifest(&dest, APP_A, day);
    assert!(m.file.size > 8 * 1024 * 1024, "{} bytes", m.file.size);
    let want = totals_of_csv(&simulator::data::csv_for(APP_A, day, ROOMS, true));
    let (got, _) = read_partition(&dest, APP_A, day);
    assert!(got == want, "the rows differ from the simulator's");
}
