//! A job you can alert on (issue 34): metrics pushed to a real Prometheus
//! Pushgateway and written for the textfile collector, checked by
//! promtool; the alert rules unit-tested by promtool.

use crate::util::*;

fn pushgateway() -> Option<String> {
    provided_python("TRTC_TEST_PUSHGATEWAY", "Pushgateway")
}

fn promtool() -> Option<String> {
    provided_python("TRTC_TEST_PROMTOOL", "promtool")
}

/// An accounts file of two accounts named `a` (app A) and `b` (app B), both
/// with the simulator's SecretId, `b`'s SecretKey in `b_key_env`.
fn two_accounts(a: &str, b: &str, b_key_env: &str) -> std::path::PathBuf {
    let file = tmp_path("accounts-metrics.toml");
    std::fs::write(
        &file,
        format!(
            "[[account]]\nname = \"{a}\"\napp_ids = [{APP_A}]\nsecret_id_env = \"TENCENTCLOUD_SECRET_ID\"\nsecret_key_env = \"TENCENTCLOUD_SECRET_KEY\"\n\n[[account]]\nname = \"{b}\"\napp_ids = [{APP_B}]\nsecret_id_env = \"TENCENTCLOUD_SECRET_ID\"\nsecret_key_env = \"{b_key_env}\"\n"
        ),
    )
    .unwrap();
    file
}

/// The value of the sample of `metric` whose labels include every one of
/// `labels`, in exposition `text`.
fn sample(text: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            l.split(['{', ' ']).next() == Some(metric) && labels.iter().all(|w| l.contains(w))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn scrape(url: &str) -> String {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys,urllib.request; print(urllib.request.urlopen(sys.argv[1] + '/metrics', timeout=30).read().decode())",
            url,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn promtool_check_metrics(promtool: &str, text: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A success, then a failure, pushed to a real Pushgateway: the scrape
/// still holds the success's time, and the failure's exit status and
/// counts. The metrics file holds the same, and promtool finds nothing to
/// say about either.
#[test]
fn a_failed_run_never_erases_the_last_success() {
    let (Some(gateway), Some(promtool)) = (pushgateway(), promtool()) else {
        return;
    };
    let sim = start_sim(sim_config());
    let dest = TestDest::local();
    let file = tmp_path("trtc-usage.prom");
    let mut args = date_args(&[APP_A], days_ago(10));
    args.extend([
        "--pushgateway".into(),
        gateway.clone(),
        "--metrics-file".into(),
        file.display().to_string(),
    ]);
    run(cmd(&sim, &dest), &args).assert_code(0);
    let text = std::fs::read_to_string(&file).unwrap();
    promtool_check_metrics(&promtool, &text);
    let success = sample(&text, "trtc_usage_last_success_timestamp_seconds", &[]).unwrap();
    let scraped = scrape(&gateway);
    let group = ["job=\"trtc_usage\"", "account=\"default\""];
    assert_eq!(
        sample(
            &scraped,
            "trtc_usage_last_success_timestamp_seconds",
            &group
        ),
        Some(success),
        "{scraped}"
    );
    assert_eq!(
        sample(
            &scraped,
            "trtc_usage_last_run_api_calls",
            &[
                "account=\"default\"",
                "DescribeTrtcRoomUsage",
                "outcome=\"ok\""
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &scraped,
            "trtc_usage_last_run_partitions",
            &["account=\"default\"", "room_usage", "outcome=\"written\""]
        ),
        Some(1.0)
    );

    // A failure: wrong keys.
    std::thread::sleep(std::time::Duration::from_millis(50));
    let mut c = cmd(&sim, &dest);
    c.env("TENCENTCLOUD_SECRET_KEY", "wrong-key");
    let mut failing = date_args(&[APP_A], days_ago(9));
    failing.extend(["--pushgateway".into(), gateway.clone()]);
    run(c, &failing).assert_code(2);
    let scraped = scrape(&gateway);
    assert_eq!(
        sample(
            &scraped,
            "trtc_usage_last_success_timestamp_seconds",
            &group
        ),
        Some(success),
        "the last success is kept:\n{scraped}"
    );
    assert_eq!(
        sample(&scraped, "trtc_usage_last_run_exit_code", &group),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &scraped,
            "trtc_usage_last_run_api_calls",
            &[
                "account=\"default\"",
                "DescribeTrtcRoomUsage",
                "outcome=\"AuthFailure.SignatureFailure\""
            ]
        ),
        Some(1.0),
        "{scraped}"
    );
    assert_eq!(
        sample(
            &scraped,
            "trtc_usage_last_run_partitions",
            &["account=\"default\"", "room_usage", "outcome=\"failed\""]
        ),
        Some(1.0)
    );
    let ended = sample(
        &scraped,
        "trtc_usage_last_run_end_timestamp_seconds",
        &group,
    )
    .unwrap();
    assert!(
        ended > success,
        "the failure's end is later: {ended} > {success}"
    );
}

/// With several accounts, one group each; the file labels each account.
#[test]
fn each_account_is_a_group_of_its_own() {
    let (Some(gateway), Some(promtool)) = (pushgateway(), promtool()) else {
        return;
    };
    let sim = start_sim(sim_config());
    let dest = TestDest::local();
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let (a, b) = (format!("a-{suffix}"), format!("b-{suffix}"));
    let accounts = two_accounts(&a, &b, "TENCENTCLOUD_SECRET_KEY");
    let file = tmp_path("accounts.prom");
    let day = days_ago(10).to_string();
    run(
        cmd(&sim, &dest),
        &[
            "--accounts",
            accounts.to_str().unwrap(),
            "--date",
            &day,
            "--pushgateway",
            &gateway,
            "--metrics-file",
            file.to_str().unwrap(),
        ],
    )
    .assert_code(0);
    let scraped = scrape(&gateway);
    for name in [&a, &b] {
        let group = [
            format!("account=\"{name}\""),
            "job=\"trtc_usage\"".to_owned(),
        ];
        let group: Vec<&str> = group.iter().map(String::as_str).collect();
        assert_eq!(
            sample(&scraped, "trtc_usage_last_run_exit_code", &group),
            Some(0.0),
            "{scraped}"
        );
    }
    let text = std::fs::read_to_string(&file).unwrap();
    promtool_check_metrics(&promtool, &text);
    assert!(
        text.contains(&format!(
            "trtc_usage_last_run_exit_code{{account=\"{a}\"}} 0"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "trtc_usage_last_run_exit_code{{account=\"{b}\"}} 0"
        )),
        "{text}"
    );
}

/// A Pushgateway that refuses, or is not there: one warning line, the run's
/// own exit status.
#[test]
fn a_pushgateway_that_fails_is_one_warning_and_changes_nothing() {
    let refusing = FakeServer::start(axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "down for maintenance",
        )
    }));
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    for gateway in [refusing.url(), closed] {
        let sim = start_sim(sim_config());
        let dest = TestDest::local();
        let mut args = date_args(&[APP_A], days_ago(10));
        args.extend(["--pushgateway".into(), gateway.clone()]);
        let r = run(cmd(&sim, &dest), &args);
        r.assert_code(0);
        let warnings: Vec<&str> = r
            .stderr
            .lines()
            .filter(|l| l.contains("--pushgateway"))
            .collect();
        assert_eq!(warnings.len(), 1, "{}", r.stderr);
        assert!(warnings[0].contains("WARN"), "{}", warnings[0]);
    }
}

/// The alert rules pass promtool's check and its unit tests.
#[test]
fn the_alert_rules_pass_promtools_unit_tests() {
    let Some(promtool) = promtool() else { return };
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/jobs/prometheus");
    for args in [
        ["check", "rules", "trtc-usage.rules.yml"],
        ["test", "rules", "trtc-usage.rules.test.yml"],
    ] {
        let out = std::process::Command::new(&promtool)
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Two accounts, one whose keys are refused: each group carries its own
/// account's exit status, and the account that succeeded records its
/// success (the run's worst status must not stand for every account).
#[test]
fn each_account_reports_its_own_exit_status() {
    let Some(gateway) = pushgateway() else { return };
    let sim = start_sim(sim_config());
    let dest = TestDest::local();
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let (good, bad) = (format!("good-{suffix}"), format!("bad-{suffix}"));
    let accounts = two_accounts(&good, &bad, "WRONG_KEY");
    let file = tmp_path("accounts-exit.prom");
    let mut c = cmd(&sim, &dest);
    c.env("WRONG_KEY", "not-the-key");
    let day = days_ago(10).to_string();
    run(
        c,
        &[
            "--accounts",
            accounts.to_str().unwrap(),
            "--date",
            &day,
            "--pushgateway",
            &gateway,
            "--metrics-file",
            file.to_str().unwrap(),
        ],
    )
    .assert_code(2);
    let scraped = scrape(&gateway);
    let good_group = format!("account=\"{good}\"");
    let bad_group = format!("account=\"{bad}\"");
    assert_eq!(
        sample(&scraped, "trtc_usage_last_run_exit_code", &[&good_group]),
        Some(0.0),
        "{scraped}"
    );
    assert_eq!(
        sample(&scraped, "trtc_usage_last_run_exit_code", &[&bad_group]),
        Some(2.0)
    );
    assert!(
        sample(
            &scraped,
            "trtc_usage_last_success_timestamp_seconds",
            &[&good_group]
        )
        .is_some()
    );
    assert!(
        sample(
            &scraped,
            "trtc_usage_last_success_timestamp_seconds",
            &[&bad_group]
        )
        .is_none()
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains(&format!("trtc_usage_last_run_exit_code{{{good_group}}} 0")),
        "{text}"
    );
    assert!(
        text.contains(&format!("trtc_usage_last_run_exit_code{{{bad_group}}} 2")),
        "{text}"
    );
}
