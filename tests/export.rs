//! The export job end to end: the real binary against the simulator, on
//! local disk and on S3 (one body of scenarios, run against both).

use trtc_usage::simulator::{Fault, FaultRule};

use crate::util::*;

on_every_destination!(
    two_apps_three_days,
    rerun_makes_no_calls_and_force_replaces,
    retries_throttle_502_and_internal_error,
    bad_credentials_stop_the_run_and_write_nothing,
    unknown_app_fails_only_that_app,
    bad_csv_value_fails_only_that_partition,
    unknown_column_evolves_then_freezes,
);

fn two_apps_three_days(dest: TestDest) {
    let sim = start_sim(sim_config());
    let (start, end) = (days_ago(12), days_ago(10));
    let days: Vec<_> = start.iter_days().take(3).collect();
    let args = range_args(&[APP_A, APP_B], start, end);
    let r = run(cmd(&sim, &dest), &args);
    r.assert_code(0);
    assert_eq!(object_names(&dest), expected_layout(&[APP_A, APP_B], &days));
    for app in [APP_A, APP_B] {
        for &day in &days {
            let (got, _) = read_partition(&dest, app, day);
            let want = sim_totals(app, day, 30);
            assert_eq!(got, want, "{app} {day}");
            let m = read_manifest(&dest, app, day);
            assert_eq!(m.rows, want.rows);
            assert_eq!(m.start_time, format!("{day} 00:00"));
            assert_eq!(m.end_time, format!("{day} 23:59"));
            assert_eq!(m.app_id, app);
            assert!(!m.request_id.is_empty());
        }
    }
    let stats = sim.stats();
    assert_eq!(stats.requests, 6, "exactly one room call per partition");
    assert_eq!(stats.served, 6);
    assert_eq!(stats.throttled, 0);
    assert!(stats.served_by_partition.values().all(|n| *n == 1));
    assert_eq!(stats.app.requests, 6, "exactly one app call per partition");
    assert_eq!(stats.app.throttled, 0);
    assert!(stats.app.served_by_partition.values().all(|n| *n == 1));
    // Calls are spaced by at least the interval.
    for w in stats.admitted_at.windows(2) {
        assert!(w[1] - w[0] >= std::time::Duration::from_millis(INTERVAL_MS));
    }
    // Five-minute buckets that add up to the rooms, checked and passing.
    for app in [APP_A, APP_B] {
        for &day in &days {
            let rows = app_usage_rows(&dest, app, day);
            assert_eq!(rows.len(), 288, "{app} {day}");
            let want = sim_totals(app, day, 30);
            let audio: f64 = rows.iter().map(|r| r.1[0]).sum();
            assert!((audio - want.sums[0] as f64 / 60.0).abs() < 0.5, "{audio}");
            let checks = checks_rows(&dest, app, day);
            assert_eq!(checks.len(), 6);
            assert!(checks.iter().all(|c| c.status == "pass"), "{checks:?}");
            let room = read_manifest(&dest, app, day);
            let m = read_table_manifest(&dest, "app_usage", app, day);
            assert!(
                checks
                    .iter()
                    .all(|c| c.room_request_id == room.request_id
                        && c.app_request_id == m.request_id)
            );
        }
    }
    assert!(
        r.stdout.starts_with("trtc-usage: ok: 18 written")
            && r.stdout.contains("checks 6 passed, 0 failed"),
        "{}",
        r.stdout
    );
    assert_eq!(r.stdout.lines().count(), 1, "stdout is only the summary");
}

fn rerun_makes_no_calls_and_force_replaces(dest: TestDest) {
    let sim = start_sim(sim_config());
    let (start, end) = (days_ago(20), days_ago(19));
    let days: Vec<_> = start.iter_days().take(2).collect();
    let args = range_args(&[APP_A], start, end);
    run(cmd(&sim, &dest), &args).assert_code(0);
    let first = objects(&dest);
    assert_eq!(sim.stats().requests, 2);

    let r = run(cmd(&sim, &dest), &args);
    r.assert_code(0);
    assert_eq!(
        sim.stats().requests,
        2,
        "final partitions are not fetched again"
    );
    assert_eq!(sim.stats().app.requests, 2, "nor are final app_usage ones");
    assert_eq!(objects(&dest), first, "files unchanged");
    r.assert_stdout_has(&["0 written, 6 skipped (final)"]);

    let mut forced = args.clone();
    forced.push("--force".into());
    // A new process has a fresh pacer; the simulator remembers the last call.
    std::thread::sleep(std::time::Duration::from_millis(2 * INTERVAL_MS));
    run(cmd(&sim, &dest), &forced).assert_code(0);
    assert_eq!(sim.stats().requests, 4);
    assert_eq!(
        object_names(&dest),
        expected_layout(&[APP_A], &days),
        "no duplicate or stale object"
    );
    for &day in &days {
        let before: trtc_usage::lake::manifest::Manifest = serde_json::from_slice(
            &first[&format!("room_usage/app_id={APP_A}/usage_date={day}/_manifest.json")],
        )
        .unwrap();
        let m = read_manifest(&dest, APP_A, day);
        assert_ne!(m.request_id, before.request_id, "replaced by the new call");
        // Every fetch adds a raw object; the old answer stays.
        let raws = raw_objects(&dest, APP_A, day);
        assert_eq!(raws.len(), 2, "{raws:?}");
        assert!(
            raws[1].0.contains(&m.request_id),
            "newest last: {}",
            raws[1].0
        );
        assert_eq!(m.raw_object.as_deref(), Some(raws[1].0.as_str()));
        let (got, _) = read_partition(&dest, APP_A, day);
        assert_eq!(
            got,
            sim_totals(APP_A, day, 30),
            "exactly the new rows, no duplicates"
        );
    }
}

fn retries_throttle_502_and_internal_error(dest: TestDest) {
    let sim = start_sim(sim_config());
    sim.inject(FaultRule::next(
        1,
        Fault::ApiError("OperationDenied.FreqOverLimit".into()),
    ));
    sim.inject(FaultRule::next(1, Fault::Http(502)));
    sim.inject(FaultRule::next(1, Fault::ApiError("InternalError".into())));
    let day = days_ago(15);
    let r = run(cmd(&sim, &dest), &date_args(&[APP_A], day));
    r.assert_code(0);
    let (got, _) = read_partition(&dest, APP_A, day);
    assert_eq!(got, sim_totals(APP_A, day, 30));
    let stats = sim.stats();
    assert_eq!(stats.requests, 4);
    assert_eq!(stats.throttled, 0, "the pacer never calls too fast");
    // The app call, unfaulted, is the fifth.
    r.assert_stdout_has(&["5 calls (3 retries, 1 throttled)"]);
    r.assert_stderr_has(&["OperationDenied.FreqOverLimit", "502"]);
}

fn bad_credentials_stop_the_run_and_write_nothing(dest: TestDest) {
    let sim = start_sim(sim_config());
    let mut c = cmd(&sim, &dest);
    c.env("TENCENTCLOUD_SECRET_KEY", "wrong-key");
    let r = run(c, &range_args(&[APP_A, APP_B], days_ago(12), days_ago(10)));
    r.assert_code(2);
    assert_eq!(
        sim.stats().requests,
        1,
        "the run stops at the first fatal answer"
    );
    assert_eq!(
        sim.stats().app.requests,
        1,
        "the app call beside it fails too"
    );
    assert!(object_names(&dest).is_empty(), "nothing written");
    r.assert_stderr_has(&["AuthFailure.SignatureFailure", "RequestId"]);
    // 2 apps × 3 days × 3 tables: 2 failed, the 16 others not attempted.
    r.assert_stdout_has(&["fatal error", "2 failed, 16 not attempted of 18 partitions"]);
}

fn unknown_app_fails_only_that_app(dest: TestDest) {
    let mut config = sim_config();
    config.apps = Some(vec![APP_A]);
    let sim = start_sim(config);
    let (start, end) = (days_ago(12), days_ago(10));
    let days: Vec<_> = start.iter_days().take(3).collect();
    let args = range_args(&[APP_A, APP_B], start, end);
    let r = run(cmd(&sim, &dest), &args);
    r.assert_code(1);
    assert_eq!(object_names(&dest), expected_layout(&[APP_A], &days));
    assert_eq!(
        sim.stats().requests,
        4,
        "3 for app A, 1 for the unknown app B"
    );
    assert_eq!(sim.stats().app.requests, 4);
    r.assert_stderr_has(&["FailedOperation.SdkAppIdNotExist"]);
    r.assert_stdout_has(&["9 written, 0 skipped (final), 6 failed"]);
}

fn bad_csv_value_fails_only_that_partition(dest: TestDest) {
    let sim = start_sim(sim_config());
    let (start, end) = (days_ago(12), days_ago(10));
    let bad_day = days_ago(11);
    sim.inject(FaultRule::always(
        Some(APP_A),
        Some(bad_day),
        Fault::Data("RoomId,Audio,SD,hd,FullHD,2K,4K\nr1,1,2,3,4,5,6\nr2,1,-5,0,0,0,0\n".into()),
    ));
    let args = range_args(&[APP_A], start, end);
    let r = run(cmd(&sim, &dest), &args);
    r.assert_code(1);
    // The bad day has no partition, but its answer is kept: a version that
    // reads it differently can rebuild it without the API.
    let mut want = expected_layout(&[APP_A], &[days_ago(12), days_ago(10)]);
    want.extend(raw_layout(&[APP_A], &[bad_day]));
    // Its app_usage is fine, and written; with no rooms, no check.
    want.extend(layout_of(&["app_usage"], &[APP_A], &[bad_day]));
    assert_eq!(object_names(&dest), want);
    r.assert_stderr_has(&["CSV line 3, column 'SD'", bad_day.to_string().as_str()]);
    assert_eq!(sim.stats().requests, 3, "a data error is not retried");
}

fn unknown_column_evolves_then_freezes(dest: TestDest) {
    let sim = start_sim(sim_config());
    let day = days_ago(14);
    sim.inject(FaultRule::always(
        Some(APP_A),
        Some(day),
        Fault::Data("RoomId,Audio,SD,hd,FullHD,2K,4K,8K\nr1,1,2,3,4,5,6,7\n".into()),
    ));
    let args = ["--app-id", &APP_A.to_string(), "--date", &day.to_string()];
    let r = run(cmd(&sim, &dest), &args);
    r.assert_code(0);
    r.assert_stderr_has(&["unknown column", "8K"]);
    let (_, batches) = read_partition(&dest, APP_A, day);
    let schema = batches[0].schema();
    assert_eq!(schema.fields().last().unwrap().name(), "extra_8k_seconds");
    let m = read_manifest(&dest, APP_A, day);
    assert_eq!(m.extra_columns, vec!["extra_8k_seconds"]);
    assert!(m.columns_found.contains(&"8K".to_owned()));

    let mut frozen = args.to_vec();
    frozen.extend(["--force", "--schema-contract", "freeze"]);
    let r = run(cmd(&sim, &dest), &frozen);
    r.assert_code(1);
    r.assert_stderr_has(&["unknown column '8K'"]);
}
