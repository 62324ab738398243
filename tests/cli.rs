//! The command line's contract: usage errors, dry runs, credentials, logs.

use crate::util::*;

fn no_calls_and_code_2(args: &[&str], needle: &str) {
    let sim = start_sim(sim_config());
    let dest = TestDest::local();
    let r = run(cmd(&sim, &dest), args);
    r.assert_code(2).assert_stderr_has(&[needle]);
    assert_eq!(
        r.stderr.trim().lines().count(),
        1,
        "one clear line:\n{}",
        r.stderr
    );
    assert_eq!(sim.stats().requests, 0, "no API call before a usage error");
    assert!(object_names(&dest).is_empty());
}

#[test]
fn usage_errors_exit_2_before_any_call() {
    let d = days_ago(5).to_string();
    let later = days_ago(3).to_string();
    no_calls_and_code_2(&["--app-id", "1", "--date", &d, "--start", &d], "--date");
    no_calls_and_code_2(
        &["--app-id", "1", "--start", &later, "--end", &d],
        "is before --start",
    );
    no_calls_and_code_2(&["--app-id", "1", "--date", "2023-03-31"], "2023-04-01");
    no_calls_and_code_2(&["--app-id", "1", "--date", "2026-13-01"], "YYYY-MM-DD");
    no_calls_and_code_2(
        &["--app-id", "1", "--date", &days_ago(-1).to_string()],
        "not complete yet",
    );
    no_calls_and_code_2(&["--app-id", "1", "--utc-offset", "8"], "--utc-offset");
    no_calls_and_code_2(
        &["--app-id", "1", "--min-interval", "soon"],
        "--min-interval",
    );
    no_calls_and_code_2(
        &["--app-id", "1", "--endpoint", "http://trtc.example.com"],
        "--allow-insecure-endpoint",
    );
    no_calls_and_code_2(&["--date", &d], "--app-id");
}

#[test]
fn missing_credentials_name_what_to_set() {
    let sim = start_sim(sim_config());
    let dest = TestDest::local();
    let mut c = cmd(&sim, &dest);
    c.env_remove("TENCENTCLOUD_SECRET_ID")
        .env_remove("TENCENTCLOUD_SECRET_KEY");
    let r = run(c, &["--app-id", "1", "--date", &days_ago(5).to_string()]);
    r.assert_code(2);
    r.assert_stderr_has(&["TENCENTCLOUD_SECRET_ID"]);
    assert_eq!(sim.stats().requests, 0);

    let mut c = cmd(&sim, &dest);
    c.env("TENCENTCLOUD_SECRET_KEY", "");
    let r = run(c, &["--app-id", "1", "--date", &days_ago(5).to_string()]);
    r.assert_code(2);
    r.assert_stderr_has(&["TENCENTCLOUD_SECRET_KEY is set but empty"]);
}

#[test]
fn dry_run_needs_no_credentials_and_touches_nothing() {
    let sim = start_sim(sim_config());
    let dest = TestDest::local();
    let mut c = cmd(&sim, &dest);
    c.env_remove("TENCENTCLOUD_SECRET_ID")
        .env_remove("TENCENTCLOUD_SECRET_KEY");
    c.env("TRTC_MIN_INTERVAL", "15s");
    let r = run(
        c,
        &[
            "--app-id",
            "1,2",
            "--start",
            &days_ago(12).to_string(),
            "--end",
            &days_ago(10).to_string(),
            "--dry-run",
        ],
    );
    r.assert_code(0);
    r.assert_stdout_has(&[
        "2 app(s) × 3 day(s) × 3 table(s)",
        "6 DescribeTrtcRoomUsage call(s)",
        "6 DescribeTrtcUsage call(s)",
    ]);
    r.assert_stdout_has(&["6 DescribeTrtcUsage call(s) at one per 200ms (made while the room calls wait): about 1m 15s"]);
    assert_eq!(sim.stats().requests, 0);
    assert!(object_names(&dest).is_empty());
}

#[test]
fn lookback_defaults_to_three_complete_days() {
    let sim = start_sim(sim_config());
    let dest = TestDest::local();
    run(cmd(&sim, &dest), &["--app-id", &APP_A.to_string()]).assert_code(0);
    let days: Vec<_> = (1..=3).rev().map(days_ago).collect();
    assert_eq!(object_names(&dest), expected_layout(&[APP_A], &days));
}

#[test]
fn json_logs_are_one_object_per_line_and_stdout_is_the_summary() {
    let sim = start_sim(sim_config());
    let dest = TestDest::local();
    let summary_file = tmp_path("summary.json");
    let r = run(
        cmd(&sim, &dest),
        &[
            "--app-id",
            &APP_A.to_string(),
            "--date",
            &days_ago(4).to_string(),
            "--log-format",
            "json",
            "--summary-file",
            summary_file.to_str().unwrap(),
        ],
    );
    r.assert_code(0);
    for line in r.stderr.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v.get("level").is_some() && v.get("message").is_some(),
            "{line}"
        );
    }
    let wrote = r
        .stderr
        .lines()
        .find(|l| l.contains("Wrote partition."))
        .expect("a partition line");
    let v: serde_json::Value = serde_json::from_str(wrote).unwrap();
    assert_eq!(v["app_id"], APP_A);
    assert!(v["rows"].is_u64() && v["request_id"].is_string(), "{wrote}");
    let s: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(s["status"], "ok");
    assert_eq!(s["written"], 3, "room_usage, app_usage and checks");
    assert_eq!(s["tables"]["app_usage"]["written"], 1);
    assert_eq!(s["checks"]["passed"], 1);
    assert_eq!(s["calls"], 2, "one call to each API");
    let f: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary_file).unwrap()).unwrap();
    assert_eq!(f, s);
}

/// A dry run creates nothing (not even the lake's directory) and, on S3
/// with no keys, makes no request of any kind: no connect(2) at all, not
/// even to the cloud metadata address (pointed at a closed loopback port,
/// so nothing could leave the machine). Under json, stdout is one object
/// with the plan in it.
#[test]
fn a_dry_run_creates_nothing_and_connects_nowhere() {
    let sim = start_sim(sim_config());
    let parent = tempfile::tempdir().unwrap();
    let lake = parent.path().join("not/yet/a/lake");
    let mut c = lake_cmd(&TestDest::local());
    c.env("TRTC_DEST", &lake);
    c.env("TRTC_ENDPOINT", sim.endpoint());
    let day = days_ago(10).to_string();
    let args = [
        "--log-format",
        "json",
        "export",
        "--app-id",
        "1",
        "--date",
        &day,
        "--dry-run",
    ];
    let r = run_sub(c, args[0], &args[1..]);
    r.assert_code(0);
    assert!(!parent.path().join("not").exists(), "nothing created");
    let v: serde_json::Value =
        serde_json::from_str(r.stdout.trim()).expect("stdout is one JSON object");
    assert_eq!(v["status"], "dry_run");
    assert_eq!(v["plan"]["room_calls"], 1);
    assert_eq!(v["plan"]["app_calls"], 1);
    assert_eq!(v["plan"]["partitions"].as_array().unwrap().len(), 3);
    assert_eq!(v["plan"]["partitions"][0]["action"], "fetch");
    assert_eq!(r.stdout.trim().lines().count(), 1);

    if std::process::Command::new("strace")
        .arg("-V")
        .output()
        .is_err()
    {
        crate::util::skip_note(
            "strace-cli",
            "strace is not installed: the no-connection check is skipped",
        );
        return;
    }
    let trace = parent.path().join("trace");
    let mut c = std::process::Command::new("strace");
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", parent.path())
        .env("TRTC_DEST", "s3://some-bucket/lake")
        .env("AWS_METADATA_ENDPOINT", "http://127.0.0.1:9")
        .env("AWS_EC2_METADATA_DISABLED", "false")
        .args(["-f", "-e", "trace=connect", "-o"])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_trtc-usage"))
        .args(args)
        .stdin(std::process::Stdio::null());
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("WARN") && !stderr.contains("169.254"),
        "{stderr}"
    );
    let calls = std::fs::read_to_string(&trace).unwrap();
    assert!(
        !calls.contains("connect("),
        "a dry run connected somewhere:\n{calls}"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["plan"]["finality_checked"], false);
}

/// `demo` reads no environment: a production `TRTC_DEST` (or any export
/// setting) in the shell changes nothing; and a lake says where its data
/// comes from, so the demo's and a real export's never mix.
#[test]
fn the_demo_ignores_the_environment_and_never_mixes_with_real_data() {
    let sim = start_sim(sim_config());
    let work = tempfile::tempdir().unwrap();
    let real = TestDest::local();
    let mut c = lake_cmd(&real);
    // What a production shell or pod might have set.
    c.env("TRTC_DEST", real.url())
        .env("TRTC_TABLES", "room_usage")
        .env("TRTC_RAW", "off")
        .env("TRTC_APP_IDS", "1400099999")
        .current_dir(work.path());
    let r = run_sub(
        c,
        "demo",
        &[
            "--min-interval",
            "100ms",
            "--days",
            "1",
            "--apps",
            "1",
            "--progress",
            "off",
        ],
    );
    r.assert_code(0);
    assert!(object_names(&real).is_empty(), "nothing in TRTC_DEST");
    let lake = work.path().join("warehouse");
    for table in [
        "room_usage",
        "app_usage",
        "checks",
        "_raw",
        "_trtc_usage/lake.json",
    ] {
        assert!(
            lake.join(table).exists(),
            "{table}: the demo's own settings, not the environment's"
        );
    }

    // A real export into the demo's lake is refused, before any call.
    let mut c = cmd(&sim, &real);
    c.env("TRTC_DEST", &lake);
    let r = run(c, &date_args(&[APP_A], days_ago(5)));
    r.assert_code(2);
    r.assert_stderr_has(&[
        "holds simulated data (written by trtc-usage demo)",
        "use another --dest",
    ]);
    assert_eq!(sim.stats().total_requests(), 0);

    // And the demo into a real lake.
    run(cmd(&sim, &real), &date_args(&[APP_A], days_ago(5))).assert_code(0);
    let mut c = lake_cmd(&real);
    c.current_dir(work.path());
    let r = run_sub(
        c,
        "demo",
        &[
            "--dest",
            &real.url(),
            "--min-interval",
            "100ms",
            "--days",
            "1",
            "--apps",
            "1",
        ],
    );
    r.assert_code(2);
    r.assert_stderr_has(&["holds Tencent Cloud data (written by export)"]);
}

/// `scripts/check_rust_version.py` (run by scripts/test) fails when a
/// dependency needs a newer Rust than Cargo.toml's `rust-version`.
#[test]
fn the_rust_version_check_fails_on_a_raised_dependency() {
    let dir = tempfile::tempdir().unwrap();
    let check = |dep_needs: &str| {
        let meta = serde_json::json!({
            "resolve": {"root": "root-id"},
            "packages": [
                {"id": "root-id", "name": "trtc-usage", "version": "0.3.0", "rust_version": "1.89"},
                {"id": "dep-id", "name": "uuid", "version": "9.9.9", "rust_version": dep_needs},
                {"id": "old-id", "name": "csv", "version": "1.4.0", "rust_version": null},
            ]
        });
        let file = dir.path().join(format!("meta-{dep_needs}.json"));
        std::fs::write(&file, meta.to_string()).unwrap();
        std::process::Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/scripts/check_rust_version.py"
            ))
            .arg("--metadata")
            .arg(&file)
            .output()
            .unwrap()
    };
    let ok = check("1.89.0");
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let raised = check("1.93");
    assert_eq!(raised.status.code(), Some(1));
    let out = String::from_utf8_lossy(&raised.stdout);
    assert!(
        out.contains("uuid 9.9.9 needs Rust 1.93, but Cargo.toml says rust-version = 1.89"),
        "{out}"
    );
}

/// Usage errors speak with one voice, whether clap or the job's own checks
/// find them: one line, `error: <the flag and the problem> (see
/// 'trtc-usage <subcommand> --help')`, exit 2; a mistyped subcommand gets a
/// suggestion; no subcommand lists them.
#[test]
fn usage_errors_are_one_line_in_one_form() {
    let cases: [(&[&str], &str, &str); 5] = [
        (
            &["export", "--app-id", "x"],
            "invalid value 'x' for '--app-id <ID>'",
            "trtc-usage export --help",
        ),
        (
            &[
                "export",
                "--app-id",
                "1",
                "--start",
                "2026-11-05",
                "--end",
                "2026-11-01",
            ],
            "--end 2026-11-01 is before --start 2026-11-05",
            "trtc-usage export --help",
        ),
        (
            &["exprt"],
            "a similar subcommand exists: 'export'",
            "trtc-usage --help",
        ),
        (
            &[],
            "a subcommand is needed: export, rebuild, status, demo or simulator",
            "trtc-usage --help",
        ),
        (
            &["status", "--utc-offset", "+25:00"],
            "--utc-offset '+25:00' is not a UTC offset",
            "trtc-usage status --help",
        ),
    ];
    for (args, problem, help) in cases {
        let c = lake_cmd(&TestDest::local());
        let mut c = c;
        c.args(args);
        let out = c.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
        assert!(lines[0].starts_with("error: "), "{stderr}");
        assert!(lines[0].contains(problem), "{args:?}: {stderr}");
        assert!(
            lines[0].ends_with(&format!("(see '{help}')")),
            "{args:?}: {stderr}"
        );
    }
}

/// A closed stdout (`| head -2`) ends the output quietly, not in a panic;
/// and an unwritable `--summary-file` is a usage error before any call.
#[test]
fn a_closed_stdout_and_an_unwritable_summary_file() {
    let sim = start_sim(sim_config());
    let dest = TestDest::local();
    let mut c = cmd(&sim, &dest);
    c.args([
        "export",
        "--app-id",
        "1,2,3",
        "--lookback-days",
        "30",
        "--dry-run",
    ])
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    drop(child.stdout.take()); // the reader goes away at once
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let missing = tempfile::tempdir()
        .unwrap()
        .path()
        .join("no/such/dir/return.json");
    let mut c = cmd(&sim, &dest);
    c.env("TRTC_SUMMARY_FILE", &missing);
    let r = run(c, &date_args(&[APP_A], days_ago(5)));
    r.assert_code(2);
    r.assert_stderr_has(&[
        "--summary-file",
        "cannot be written",
        "(see 'trtc-usage export --help')",
    ]);
    assert_eq!(sim.stats().total_requests(), 0);
    assert!(object_names(&dest).is_empty());
}

/// The demo reads no environment variable (TRTC_LOG_FORMAT included), and
/// under `--log-format json` every line it writes to stderr is JSON.
#[test]
fn the_demo_ignores_the_environment_and_speaks_json_when_asked() {
    let work = tempfile::tempdir().unwrap();
    let mut demo = lake_cmd(&TestDest::local());
    demo.current_dir(work.path()).env("TRTC_LOG_FORMAT", "json");
    let r = run_sub(
        demo,
        "demo",
        &["--min-interval", "100ms", "--progress", "off"],
    );
    r.assert_code(0);
    assert!(
        r.stderr
            .lines()
            .any(|l| l.contains(" INFO Demo: exporting")),
        "text, whatever TRTC_LOG_FORMAT says:\n{}",
        r.stderr
    );
    let mut demo = lake_cmd(&TestDest::local());
    demo.current_dir(work.path());
    let r = run_sub(
        demo,
        "demo",
        &[
            "--min-interval",
            "100ms",
            "--progress",
            "log",
            "--log-format",
            "json",
        ],
    );
    r.assert_code(0);
    for line in r.stderr.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v.get("level").is_some(), "{line}");
    }
    assert!(r.stderr.contains("rooms_query"), "the first look, as JSON");
    serde_json::from_str::<serde_json::Value>(r.stdout.trim()).expect("the summary is JSON");
}

/// `status` and `rebuild` on a --dest that holds no lake at all (a typo)
/// say so: a warning for status, exit 2 for rebuild.
#[test]
fn status_and_rebuild_on_no_lake_say_so() {
    let nowhere = TestDest::local();
    let s = run_sub(lake_cmd(&nowhere), "status", &[] as &[&str]);
    s.assert_code(0);
    s.assert_stdout_has(&["no lake here (no table, no raw zone): is --dest right?"]);
    s.assert_stderr_has(&["WARN No lake here"]);
    let r = run_sub(lake_cmd(&nowhere), "rebuild", &[] as &[&str]);
    r.assert_code(2);
    r.assert_stderr_has(&[
        "holds no lake (no table, no raw zone): nothing to rebuild; is --dest right?",
    ]);
    assert!(object_names(&nowhere).is_empty(), "nothing created");
}
