//! `app_usage` and `checks`: the second API beside the room calls, the
//! 5-minute table, and whether the rooms add up (on local disk and on S3).

use trtc_usage::simulator::{AppFault, Fault, FaultRule};

use crate::util::*;

on_every_destination!(
    a_mismatch_warns_fails_with_exit_3_or_is_off,
    tables_fill_a_subset_and_checks_need_no_call,
    bad_app_answers_fail_only_the_app_partition_naming_the_bucket,
    odd_but_valid_app_answers_read_the_same,
    app_api_errors_are_retried_or_fail_only_the_app_partition,
    rebuild_recomputes_checks_at_a_new_tolerance_with_no_call,
);

fn with(args: &[String], more: &[&str]) -> Vec<String> {
    let mut a = args.to_vec();
    a.extend(more.iter().map(|s| (*s).to_owned()));
    a
}

fn a_mismatch_warns_fails_with_exit_3_or_is_off(dest: TestDest) {
    let sim = start_sim(sim_config());
    // The app counts half as much again as its rooms, every day.
    sim.inject(FaultRule::always(None, None, Fault::App(AppFault::Scale(1.5))).app());
    let day = days_ago(10);
    let args = date_args(&[APP_A], day);
    let r = run(cmd(&sim, &dest), &args);
    r.assert_code(0);
    r.assert_stderr_has(&[
        "The rooms do not add up to the app's usage.",
        &format!("usage_date={day}"),
        "audio: rooms ",
        " min, app ",
    ]);
    r.assert_stdout_has(&["checks 0 passed, 1 failed"]);
    let rows = checks_rows(&dest, APP_A, day);
    let audio = rows.iter().find(|c| c.series == "audio").unwrap();
    assert_eq!(audio.status, "fail");
    assert!(
        (audio.app_minutes - 1.5 * audio.room_minutes).abs() < 1.0,
        "{audio:?}"
    );

    // Under --checks fail: everything is written, then exit 3.
    std::thread::sleep(std::time::Duration::from_millis(2 * INTERVAL_MS));
    let r = run(
        cmd(&sim, &dest),
        &with(&args, &["--force", "--checks", "fail"]),
    );
    r.assert_code(3);
    r.assert_stdout_has(&["checks failed: 3 written"]);
    assert_eq!(
        object_names(&dest).len(),
        expected_layout(&[APP_A], &[day]).len()
    );
    // 1 wins over 3: a failed partition beside a failed check exits 1.
    sim.inject(FaultRule::always(
        Some(APP_A),
        Some(days_ago(9)),
        Fault::ApiError("InvalidParameter".into()),
    ));
    std::thread::sleep(std::time::Duration::from_millis(2 * INTERVAL_MS));
    let two = range_args(&[APP_A], day, days_ago(9));
    run(
        cmd(&sim, &dest),
        &with(&two, &["--force", "--checks", "fail"]),
    )
    .assert_code(1);

    // Under --checks off: no checks table at all.
    let fresh = TestDest::local();
    std::thread::sleep(std::time::Duration::from_millis(2 * INTERVAL_MS));
    let r = run(cmd(&sim, &fresh), &with(&args, &["--checks", "off"]));
    r.assert_code(0);
    assert!(!r.stderr.contains("do not add up"), "{}", r.stderr);
    assert_eq!(object_names(&fresh), {
        let mut want = layout_of(&FETCHED, &[APP_A], &[day]);
        want.extend(raw_layout(&[APP_A], &[day]));
        want
    });
}

fn tables_fill_a_subset_and_checks_need_no_call(dest: TestDest) {
    let sim = start_sim(sim_config());
    let day = days_ago(11);
    let args = date_args(&[APP_A], day);
    run(cmd(&sim, &dest), &with(&args, &["--tables", "room_usage"])).assert_code(0);
    assert_eq!(
        sim.stats().app.requests,
        0,
        "--tables room_usage makes no app call"
    );
    let mut want = layout_of(&["room_usage"], &[APP_A], &[day]);
    want.extend(raw_layout_of(&["room_usage"], &[APP_A], &[day]));
    assert_eq!(object_names(&dest), want);

    run(cmd(&sim, &dest), &with(&args, &["--tables", "app_usage"])).assert_code(0);
    assert_eq!(
        sim.stats().requests,
        1,
        "--tables app_usage makes no room call"
    );
    assert_eq!(sim.stats().app.requests, 1);

    // Both inputs are final: the default run checks them with no call.
    let r = run(cmd(&sim, &dest), &args);
    r.assert_code(0);
    r.assert_stdout_has(&["1 written, 2 skipped (final)", "checks 1 passed", "0 calls"]);
    assert_eq!(sim.stats().total_requests(), 2);
    assert_eq!(object_names(&dest), expected_layout(&[APP_A], &[day]));
    // And once checked, a rerun does nothing at all.
    run(cmd(&sim, &dest), &args)
        .assert_code(0)
        .assert_stdout_has(&["0 written, 3 skipped (final)"]);

    // checks alone cannot be fetched: a usage error that says what to do.
    let r = run(cmd(&sim, &dest), &with(&args, &["--tables", "checks"]));
    r.assert_code(2);
    r.assert_stderr_has(&[
        "--tables checks",
        "needs both",
        "trtc-usage rebuild --tables checks",
    ]);
    assert_eq!(sim.stats().total_requests(), 2);
}

fn bad_app_answers_fail_only_the_app_partition_naming_the_bucket(dest: TestDest) {
    let cases = [
        (AppFault::ShortValues, "5 values for 6 UsageKey entries"),
        (
            AppFault::Negative,
            "series 'HD': -3.5 is not a non-negative number of minutes",
        ),
        (AppFault::OutsideDay, "is outside"),
    ];
    let sim = start_sim(sim_config());
    for (i, (fault, needle)) in cases.into_iter().enumerate() {
        let day = days_ago(10 + i as i64);
        sim.inject(FaultRule::always(Some(APP_A), Some(day), Fault::App(fault)).app());
        std::thread::sleep(std::time::Duration::from_millis(2 * INTERVAL_MS));
        let r = run(cmd(&sim, &dest), &date_args(&[APP_A], day));
        r.assert_code(1);
        r.assert_stderr_has(&[needle, "bucket", "RequestId", "table=app_usage"]);
        let names = object_names(&dest);
        let prefix = format!("app_usage/app_id={APP_A}/usage_date={day}/");
        assert!(!names.iter().any(|n| n.starts_with(&prefix)), "{names:?}");
        assert!(
            names.contains(&format!(
                "room_usage/app_id={APP_A}/usage_date={day}/_manifest.json"
            )),
            "the room partition is written"
        );
        assert!(
            names.contains(&format!("_raw/app_usage/app_id={APP_A}/usage_date={day}/*")),
            "the bad answer is kept"
        );
        assert!(
            !names
                .iter()
                .any(|n| n.starts_with(&format!("checks/app_id={APP_A}/usage_date={day}/")))
        );
    }
    assert_eq!(sim.stats().app.requests, 3, "bad data is not retried");
}

fn odd_but_valid_app_answers_read_the_same(dest: TestDest) {
    let sim = start_sim(sim_config());
    let day = days_ago(10);
    run(cmd(&sim, &dest), &date_args(&[APP_A], day)).assert_code(0);
    let plain = app_usage_rows(&dest, APP_A, day);
    for fault in [AppFault::OddKeyCase, AppFault::NoTimeStamp] {
        sim.inject(FaultRule::next(1, Fault::App(fault.clone())).app());
        std::thread::sleep(std::time::Duration::from_millis(2 * INTERVAL_MS));
        let r = run(
            cmd(&sim, &dest),
            &with(&date_args(&[APP_A], day), &["--force"]),
        );
        r.assert_code(0);
        assert_eq!(app_usage_rows(&dest, APP_A, day), plain, "{fault:?}");
        assert!(
            checks_rows(&dest, APP_A, day)
                .iter()
                .all(|c| c.status == "pass")
        );
    }

    // An unknown key evolves into an extra column, and a series of its own
    // in the checks (the rooms have none of it: it fails, as a warning).
    sim.inject(FaultRule::always(None, None, Fault::App(AppFault::ExtraKey)).app());
    std::thread::sleep(std::time::Duration::from_millis(2 * INTERVAL_MS));
    let r = run(
        cmd(&sim, &dest),
        &with(&date_args(&[APP_A], day), &["--force"]),
    );
    r.assert_code(0);
    r.assert_stderr_has(&["unknown column", "extra_8k_minutes"]);
    let batches = read_table(&dest, "app_usage", APP_A, day);
    assert_eq!(
        batches[0].schema().fields().last().unwrap().name(),
        "extra_8k_minutes"
    );
    let extra = checks_rows(&dest, APP_A, day)
        .into_iter()
        .find(|c| c.series == "extra_8k")
        .unwrap();
    assert_eq!((extra.room_minutes, extra.status.as_str()), (0.0, "fail"));
    assert!((extra.app_minutes - 144.0).abs() < 1e-6, "{extra:?}");
    // Frozen, the same answer fails its partition.
    std::thread::sleep(std::time::Duration::from_millis(2 * INTERVAL_MS));
    let r = run(
        cmd(&sim, &dest),
        &with(
            &date_args(&[APP_A], day),
            &["--force", "--schema-contract", "freeze"],
        ),
    );
    r.assert_code(1);
    r.assert_stderr_has(&["unknown UsageKey '8K'"]);
}

fn app_api_errors_are_retried_or_fail_only_the_app_partition(dest: TestDest) {
    let sim = start_sim(sim_config());
    sim.inject(FaultRule::next(1, Fault::ApiError("InternalError".into())).app());
    sim.inject(FaultRule::next(1, Fault::Http(502)).app());
    let day = days_ago(10);
    let r = run(cmd(&sim, &dest), &date_args(&[APP_A], day));
    r.assert_code(0);
    assert_eq!(sim.stats().app.requests, 3, "two failures, then served");
    assert_eq!(
        sim.stats().app.throttled,
        0,
        "the app pacer keeps to its limit"
    );
    assert_eq!(object_names(&dest), expected_layout(&[APP_A], &[day]));

    let bad = days_ago(9);
    sim.inject(
        FaultRule::always(
            Some(APP_A),
            Some(bad),
            Fault::ApiError("InvalidParameter.SdkAppId".into()),
        )
        .app(),
    );
    std::thread::sleep(std::time::Duration::from_millis(2 * INTERVAL_MS));
    let r = run(cmd(&sim, &dest), &date_args(&[APP_A], bad));
    r.assert_code(1);
    r.assert_stderr_has(&["InvalidParameter.SdkAppId", "RequestId", "table=app_usage"]);
    let names = object_names(&dest);
    assert!(names.contains(&format!(
        "room_usage/app_id={APP_A}/usage_date={bad}/_manifest.json"
    )));
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with(&format!("app_usage/app_id={APP_A}/usage_date={bad}/")))
    );
}

fn rebuild_recomputes_checks_at_a_new_tolerance_with_no_call(dest: TestDest) {
    let sim = start_sim(sim_config());
    // 3% more minutes than the rooms: within 5%, not within 1%.
    sim.inject(FaultRule::always(None, None, Fault::App(AppFault::Scale(1.03))).app());
    let days: Vec<_> = days_ago(12).iter_days().take(2).collect();
    let args = range_args(&[APP_A], days[0], days[1]);
    run(cmd(&sim, &dest), &with(&args, &["--check-tolerance", "5%"]))
        .assert_code(0)
        .assert_stdout_has(&["checks 2 passed, 0 failed"]);
    let before = objects(&dest);
    let requests = sim.stats().total_requests();

    let r = run_sub(
        lake_cmd(&dest),
        "rebuild",
        &with(
            &args,
            &[
                "--tables",
                "checks",
                "--check-tolerance",
                "1%",
                "--checks",
                "fail",
            ],
        ),
    );
    r.assert_code(3);
    r.assert_stdout_has(&["2 written", "checks 0 passed, 2 failed"]);
    r.assert_stderr_has(&["The rooms do not add up"]);
    assert_eq!(sim.stats().total_requests(), requests, "no API call");
    let after = objects(&dest);
    for (key, bytes) in &before {
        if !key.starts_with("checks/") {
            assert_eq!(&after[key], bytes, "{key} is untouched");
        }
    }
    assert!(
        checks_rows(&dest, APP_A, days[0])
            .iter()
            .any(|c| c.status == "fail")
    );

    // status names the days whose rooms do not add up.
    run_sub(lake_cmd(&dest), "status", &args)
        .assert_code(0)
        .assert_stdout_has(&[
            "checks ",
            &format!("rooms do not add up: {}..{}", days[0], days[1]),
        ]);
}

/// A lake written by 0.2 has room_usage manifests without totals: no check
/// (never one that counts the rooms as 0) until `rebuild` adds them.
#[test]
fn a_02_manifest_without_totals_gets_no_check_until_rebuilt() {
    let sim = start_sim(sim_config());
    let dest = TestDest::local();
    let day = days_ago(10);
    let args = date_args(&[APP_A], day);
    run(cmd(&sim, &dest), &args).assert_code(0);
    // Make the room manifest look like 0.2's, and drop the check.
    let key = format!("room_usage/app_id={APP_A}/usage_date={day}/_manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&objects(&dest)[&key]).unwrap();
    m["format_version"] = 2.into();
    m.as_object_mut().unwrap().remove("totals");
    put_object(&dest, &key, serde_json::to_vec_pretty(&m).unwrap());
    delete_objects(&dest, "checks/");

    let r = run(cmd(&sim, &dest), &args);
    r.assert_code(0);
    r.assert_stderr_has(&[
        "predates per-series totals",
        "rebuild --tables room_usage,checks",
    ]);
    assert!(!object_names(&dest).iter().any(|n| n.starts_with("checks/")));
    assert_eq!(sim.stats().total_requests(), 2, "no call for it");

    run_sub(
        lake_cmd(&dest),
        "rebuild",
        &with(&args, &["--tables", "room_usage,checks"]),
    )
    .assert_code(0)
    .assert_stdout_has(&["2 written", "checks 1 passed"]);
    assert_eq!(object_names(&dest), expected_layout(&[APP_A], &[day]));
}
