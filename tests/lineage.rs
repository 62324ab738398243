//! OpenLineage (issue 34): START, then COMPLETE, FAIL or ABORT, to a file
//! or over HTTP to a loopback receiver, every event checked by the spec's
//! models (openlineage-python, tests/data/validate_openlineage.py).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use trtc_usage::simulator::{Fault, FaultRule};

use crate::util::*;

const PARENT: &str = "airflow/trtc_usage_daily.export/01890a5f-3d0c-7d6b-9f42-1a2b3c4d5e6f";

/// The events in `file`, each validated by the spec's models; their types.
fn validated(file: &std::path::Path) -> Vec<serde_json::Value> {
    if let Some(py) = provided_python("TRTC_TEST_OPENLINEAGE_PYTHON", "OpenLineage") {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/validate_openlineage.py"
        );
        let out = std::process::Command::new(py)
            .arg(script)
            .arg(file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the spec's models refuse an event: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A loopback receiver of `POST /api/v1/lineage`, keeping the bodies.
fn receiver() -> (FakeServer, Arc<Mutex<Vec<String>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = got.clone();
    let router = axum::Router::new().route(
        "/api/v1/lineage",
        axum::routing::post(move |body: String| {
            let keep = keep.clone();
            async move {
                keep.lock().unwrap().push(body);
                axum::http::StatusCode::CREATED
            }
        }),
    );
    (FakeServer::start(router), got)
}

/// A successful run to a file: START then COMPLETE, valid, the Airflow
/// parent named, the TRTC actions as inputs, each table written an output
/// with its schema and its rows and bytes.
#[test]
fn a_run_emits_start_and_complete_with_its_datasets() {
    let sim = start_sim(sim_config());
    let dest = TestDest::local();
    let file = tmp_path("lineage.jsonl");
    let day = days_ago(10);
    let mut args = date_args(&[APP_A], day);
    args.extend(["--openlineage-file".into(), file.display().to_string()]);
    let mut c = cmd(&sim, &dest);
    c.env("OPENLINEAGE_PARENT_ID", PARENT);
    run(c, &args).assert_code(0);
    let events = validated(&file);
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["START", "COMPLETE"]);
    assert_eq!(events[0]["run"]["runId"], events[1]["run"]["runId"]);
    for e in &events {
        let parent = &e["run"]["facets"]["parent"];
        assert_eq!(parent["job"]["namespace"], "airflow");
        assert_eq!(parent["job"]["name"], "trtc_usage_daily.export");
        assert_eq!(
            parent["run"]["runId"],
            "01890a5f-3d0c-7d6b-9f42-1a2b3c4d5e6f"
        );
        assert_eq!(e["job"]["namespace"], "trtc-usage");
    }
    let end = &events[1];
    let inputs: Vec<&str> = end["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(inputs, ["DescribeTrtcRoomUsage", "DescribeTrtcUsage"]);
    let room = end["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"].as_str().unwrap().ends_with("/room_usage"))
        .unwrap();
    assert_eq!(room["namespace"], "file");
    let m = read_manifest(&dest, APP_A, day);
    assert_eq!(room["facets"]["outputStatistics"]["rowCount"], m.rows);
    assert_eq!(room["facets"]["outputStatistics"]["size"], m.file.size);
    assert!(
        room["facets"]["schema"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "audio_seconds")
    );
}

/// Over HTTP: a failed run is START then FAIL; a stopped one START then
/// ABORT; both valid.
#[test]
fn failed_and_stopped_runs_send_fail_and_abort() {
    let (server, got) = receiver();
    let sim = start_sim(sim_config());
    let dest = TestDest::local();
    let mut args = date_args(&[APP_A], days_ago(10));
    args.extend(["--openlineage-url".into(), server.url()]);
    let mut c = cmd(&sim, &dest);
    c.env("TENCENTCLOUD_SECRET_KEY", "wrong-key");
    run(c, &args).assert_code(2);

    sim.inject(FaultRule::next(1, Fault::Delay(Duration::from_secs(30))));
    let (mut child, lines) = spawn_export(cmd(&sim, &dest), &args);
    let t0 = std::time::Instant::now();
    while sim.stats().requests < 2 && t0.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(20));
    }
    // The START is sent before the first call.
    assert!(got.lock().unwrap().len() >= 3, "START sent before the call");
    signal(&child, "TERM");
    let code = wait_with_deadline(&mut child, Duration::from_secs(120));
    assert_eq!(code, 143, "{:?}", lines.try_iter().collect::<Vec<_>>());

    let file = tmp_path("received.jsonl");
    let bodies: Vec<String> = got.lock().unwrap().clone();
    std::fs::write(&file, bodies.join("\n") + "\n").unwrap();
    let kinds: Vec<String> = validated(&file)
        .iter()
        .map(|e| e["eventType"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["START", "FAIL", "START", "ABORT"]);
}

/// A lineage endpoint that is down: one warning, the run's own exit status.
#[test]
fn a_lineage_endpoint_that_is_down_is_one_warning() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let sim = start_sim(sim_config());
    let dest = TestDest::local();
    let mut args = date_args(&[APP_A], days_ago(10));
    args.extend(["--openlineage-url".into(), closed]);
    let r = run(cmd(&sim, &dest), &args);
    r.assert_code(0);
    let warnings: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("--openlineage-url"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", r.stderr);
    assert!(warnings[0].contains("WARN"));
}
