//! The first hour, round three (issue 35): every message names what to
//! fix, nothing is silently ignored, a dry run says what the real run
//! would do.

use crate::util::*;

/// A demo's lake of one app and one day, in `dir`.
fn demo_lake(dir: &std::path::Path) -> String {
    let lake = dir.join("warehouse");
    let scratch = TestDest::local();
    let mut c = lake_cmd(&scratch);
    c.current_dir(dir);
    let r = run_sub(
        c,
        "demo",
        &[
            "--dest",
            lake.to_str().unwrap(),
            "--min-interval",
            "100ms",
            "--days",
            "1",
            "--apps",
            "1",
        ],
    );
    r.assert_code(0);
    lake.to_str().unwrap().to_owned()
}

/// The README's dry run, from where the demo left its lake: the real run
/// would refuse the simulated lake, so the dry run does too (it planned
/// 258 fetches and exited 0). And `status --verify` on a damaged demo lake
/// names the fix that lake takes (`rebuild`), not an export it refuses.
#[test]
fn a_dry_run_refuses_what_the_real_run_would_and_status_names_the_fix() {
    let sim = start_sim(sim_config());
    let work = tempfile::tempdir().unwrap();
    let lake = demo_lake(work.path());
    let scratch = TestDest::local();
    let mut args = date_args(&[APP_A], days_ago(5));
    args.extend(["--dest".into(), lake.clone(), "--dry-run".into()]);
    let r = run(cmd(&sim, &scratch), &args);
    r.assert_code(2);
    r.assert_stderr_has(&["holds simulated data", "use another --dest"]);
    assert_eq!(sim.stats().total_requests(), 0);

    let file = files_under(std::path::Path::new(&lake))
        .into_iter()
        .find(|f| f.starts_with("room_usage/") && f.ends_with(".parquet"))
        .unwrap();
    std::fs::write(std::path::Path::new(&lake).join(&file), b"damaged").unwrap();
    let s = run_sub(lake_cmd(&scratch), "status", &["--dest", &lake, "--verify"]);
    s.assert_code(1);
    s.assert_stderr_has(&["a demo's lake", "trtc-usage rebuild"]);
    assert!(!s.stderr.contains("rerun the export"), "{}", s.stderr);
    run_sub(lake_cmd(&scratch), "rebuild", &["--dest", &lake]).assert_code(0);
    run_sub(lake_cmd(&scratch), "status", &["--dest", &lake, "--verify"]).assert_code(0);
}

/// Flags that do nothing alone are usage errors (exit 2, naming what to
/// add), and a day that does not exist is named as such.
#[test]
fn flags_that_would_be_ignored_are_usage_errors() {
    let sim = start_sim(sim_config());
    let dest = TestDest::local();
    let r = run(cmd(&sim, &dest), &["--app-id", "1", "--account", "1"]);
    r.assert_code(2);
    r.assert_stderr_has(&["--account 1", "give --accounts FILE"]);
    let mut c = cmd(&sim, &dest);
    c.env("TRTC_ACCOUNT", "0");
    run(c, &date_args(&[APP_A], days_ago(5))).assert_code(2);
    let r = run_sub(
        lake_cmd(&dest),
        "simulator",
        &["--dump-partition", "1:2026-11-01"],
    );
    r.assert_code(2);
    r.assert_stderr_has(&["--dump-partition", "needs --dump-csv"]);
    let r = run(cmd(&sim, &dest), &["--app-id", "1", "--date", "2026-11-31"]);
    r.assert_code(2);
    r.assert_stderr_has(&["there is no day 2026-11-31"]);
    assert_eq!(sim.stats().total_requests(), 0);
    assert!(object_names(&dest).is_empty());
}

/// A wrong SecretKey: one error line, though both calls of the step were
/// refused.
#[test]
fn a_wrong_secret_key_is_one_error_line() {
    let sim = start_sim(sim_config());
    let dest = TestDest::local();
    let mut c = cmd(&sim, &dest);
    c.env("TENCENTCLOUD_SECRET_KEY", "wrong-key");
    let r = run(c, &range_args(&[APP_A, APP_B], days_ago(12), days_ago(10)));
    r.assert_code(2);
    let errors: Vec<&str> = r.stderr.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{}", r.stderr);
    assert!(
        errors[0].contains("AuthFailure.SignatureFailure"),
        "{}",
        errors[0]
    );
}

/// An `s3://` destination with no AWS keys: the error says so and names
/// the variables, instead of a 403 from the instance metadata service
/// (here a loopback stand-in: nothing leaves the machine).
#[test]
fn an_s3_dest_without_aws_keys_names_the_variables() {
    let Some(dest) = TestDest::s3() else { return };
    let metadata = FakeServer::start(
        axum::Router::new()
            .fallback(|| async { (axum::http::StatusCode::FORBIDDEN, "no role here") }),
    );
    let sim = start_sim(sim_config());
    let mut c = cmd(&sim, &dest);
    c.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_METADATA_ENDPOINT", metadata.url());
    let r = run(c, &date_args(&[APP_A], days_ago(5)));
    r.assert_code(2);
    r.assert_stderr_has(&[
        "no AWS credentials",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ]);
    assert_eq!(sim.stats().total_requests(), 0);
}
