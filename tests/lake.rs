//! The lake v2: tables under one root, the raw zone, `rebuild` and
//! `status`, on local disk and on S3 (one body of scenarios, run on both).

use sha2::Digest;
use trtc_usage::simulator::{Fault, FaultRule};

use crate::util::*;

on_every_destination!(
    raw_object_is_the_body_the_simulator_sent,
    raw_off_keeps_no_raw_zone,
    rebuild_gives_the_same_files_with_no_call_and_no_credentials,
    rebuild_uses_the_newest_raw_answer,
    unreadable_raw_fails_its_partition_and_a_missing_one_is_left_alone,
    old_layout_is_refused_before_any_call,
    status_shows_final_settling_missing_and_verify_finds_damage,
    a_damaged_final_partition_is_rebuilt_from_raw_else_fetched,
    a_crash_mid_write_is_cleaned_by_the_next_run,
    export_verify_repairs_a_file_of_the_right_size_with_the_wrong_bytes,
);

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

fn raw_object_is_the_body_the_simulator_sent(dest: TestDest) {
    let sim = start_sim(sim_config());
    let day = days_ago(10);
    run(cmd(&sim, &dest), &date_args(&[APP_A], day)).assert_code(0);
    assert_eq!(object_names(&dest), expected_layout(&[APP_A], &[day]));
    let raws = raw_objects(&dest, APP_A, day);
    assert_eq!(raws.len(), 1);
    let (name, body) = &raws[0];
    let m = read_manifest(&dest, APP_A, day);
    let sent = &sim.stats().body_sha256[&m.request_id];
    assert_eq!(
        &sha256_hex(body),
        sent,
        "the raw object is the body, byte for byte"
    );
    assert_eq!(&m.body.as_ref().unwrap().sha256, sent);
    assert_eq!(m.body.as_ref().unwrap().bytes, body.len() as u64);
    assert_eq!(m.raw_object.as_deref(), Some(name.as_str()));
    assert!(
        name.ends_with(&format!("_{}.json.zst", m.request_id)),
        "{name}"
    );
    let stamp = m.fetched_at.format("%Y%m%dT%H%M%S%.6fZ").to_string();
    assert!(name.contains(&format!("/{stamp}_")), "{name} names {stamp}");
}

fn raw_off_keeps_no_raw_zone(dest: TestDest) {
    let sim = start_sim(sim_config());
    let day = days_ago(10);
    let mut args = date_args(&[APP_A], day);
    args.extend(["--raw".into(), "off".into()]);
    run(cmd(&sim, &dest), &args).assert_code(0);
    assert_eq!(object_names(&dest), table_layout(&[APP_A], &[day]));
    let m = read_manifest(&dest, APP_A, day);
    assert_eq!(m.raw_object, None);
    assert_eq!(
        m.body.as_ref().unwrap().sha256,
        sim.stats().body_sha256[&m.request_id]
    );
}

fn rebuild_gives_the_same_files_with_no_call_and_no_credentials(dest: TestDest) {
    let sim = start_sim(sim_config());
    let (start, end) = (days_ago(12), days_ago(11));
    let days: Vec<_> = start.iter_days().take(2).collect();
    run(cmd(&sim, &dest), &range_args(&[APP_A, APP_B], start, end)).assert_code(0);
    let exported = objects(&dest);
    let requests = sim.stats().total_requests();

    let checks_before: Vec<_> = days
        .iter()
        .flat_map(|d| [APP_A, APP_B].map(|a| checks_rows(&dest, a, *d)))
        .collect();
    for table in TABLES {
        delete_objects(&dest, &format!("{table}/"));
    }
    assert_eq!(
        object_names(&dest),
        raw_layout(&[APP_A, APP_B], &days),
        "only the raw zone is left"
    );
    // No range: every partition that has raw answers, and their checks.
    let r = run_sub(lake_cmd(&dest), "rebuild", &[] as &[&str]);
    r.assert_code(0);
    r.assert_stdout_has(&["12 written", "checks 4 passed, 0 failed", "0 calls"]);
    assert_eq!(sim.stats().total_requests(), requests, "no API call");
    let rebuilt = objects(&dest);
    assert_eq!(
        rebuilt.keys().collect::<Vec<_>>(),
        exported.keys().collect::<Vec<_>>()
    );
    for (key, bytes) in &exported {
        if !key.starts_with("checks/") {
            assert_eq!(&rebuilt[key], bytes, "{key} is the same to the byte");
        }
    }
    // A check says when it ran; everything else in it is the same.
    let checks_after: Vec<_> = days
        .iter()
        .flat_map(|d| [APP_A, APP_B].map(|a| checks_rows(&dest, a, *d)))
        .collect();
    assert_eq!(checks_after, checks_before);
}

fn rebuild_uses_the_newest_raw_answer(dest: TestDest) {
    let sim = start_sim(sim_config());
    let day = days_ago(10);
    let args = date_args(&[APP_A], day);
    run(cmd(&sim, &dest), &args).assert_code(0);
    let first = read_manifest(&dest, APP_A, day);
    // The second answer differs, so which one rebuild took shows in the rows.
    sim.inject(FaultRule::next(
        1,
        Fault::Data("RoomId,Audio,SD,hd,FullHD,2K,4K\nnewest,1,2,3,4,5,6\n".into()),
    ));
    std::thread::sleep(std::time::Duration::from_millis(2 * INTERVAL_MS));
    let mut forced = args.clone();
    forced.push("--force".into());
    run(cmd(&sim, &dest), &forced).assert_code(0);
    let second = read_manifest(&dest, APP_A, day);
    assert_ne!(first.request_id, second.request_id);
    assert_eq!(
        raw_objects(&dest, APP_A, day).len(),
        2,
        "a re-fetch adds one"
    );

    delete_objects(&dest, "room_usage/");
    run_sub(lake_cmd(&dest), "rebuild", &args).assert_code(0);
    let rebuilt = read_manifest(&dest, APP_A, day);
    assert_eq!(rebuilt, second, "rebuilt from the newest answer");
    let (totals, _) = read_partition(&dest, APP_A, day);
    assert_eq!(totals.room_ids, vec!["newest".to_owned()]);
}

fn unreadable_raw_fails_its_partition_and_a_missing_one_is_left_alone(dest: TestDest) {
    let sim = start_sim(sim_config());
    let days: Vec<_> = days_ago(13).iter_days().take(4).collect();
    run(cmd(&sim, &dest), &range_args(&[APP_A], days[0], days[2])).assert_code(0);
    // The fourth day is exported with no raw answer kept.
    let mut no_raw = date_args(&[APP_A], days[3]);
    no_raw.extend(["--raw".into(), "off".into()]);
    run(cmd(&sim, &dest), &no_raw).assert_code(0);
    let before = objects(&dest);

    // Day 0: not zstd. Day 1: valid zstd of an API error answer.
    let raw_name = |i: usize| raw_objects(&dest, APP_A, days[i])[0].0.clone();
    let (bad_zstd, error_body) = (raw_name(0), raw_name(1));
    put_object(&dest, &bad_zstd, b"not zstd at all".to_vec());
    let error =
        br#"{"Response":{"Error":{"Code":"InternalError","Message":"m"},"RequestId":"e-1"}}"#;
    put_object(
        &dest,
        &error_body,
        zstd::stream::encode_all(&error[..], 3).unwrap(),
    );

    let r = run_sub(
        lake_cmd(&dest),
        "rebuild",
        &range_args(&[APP_A], days[0], days[3]),
    );
    r.assert_code(1);
    // room_usage: day 2 rebuilt, days 0 and 1 unreadable, day 3 without
    // raw; app_usage: days 0-2 rebuilt, day 3 without raw; checks: days
    // 0-2, whose app_usage was rebuilt.
    r.assert_stdout_has(&["7 written", "4 failed", "checks 3 passed"]);
    r.assert_stderr_has(&[
        bad_zstd.as_str(),
        "is not valid zstd",
        error_body.as_str(),
        "InternalError",
        &format!("_raw/room_usage/app_id={APP_A}/usage_date={}/", days[3]),
        "left as it is",
    ]);
    let after = objects(&dest);
    for i in [0, 1, 3] {
        for file in ["part-00000.parquet", "_manifest.json"] {
            let key = format!("room_usage/app_id={APP_A}/usage_date={}/{file}", days[i]);
            assert_eq!(after[&key], before[&key], "{key} is left as it was");
        }
    }
}

fn old_layout_is_refused_before_any_call(dest: TestDest) {
    let sim = start_sim(sim_config());
    let day = days_ago(10);
    put_object(
        &dest,
        &format!("app_id={APP_A}/usage_date={day}/part-00000.parquet"),
        b"0.1".to_vec(),
    );
    let r = run(cmd(&sim, &dest), &date_args(&[APP_A], day));
    r.assert_code(2);
    r.assert_stderr_has(&["0.1 layout", "room_usage/"]);
    assert_eq!(
        sim.stats().total_requests(),
        0,
        "refused before any API call"
    );
    for sub in ["rebuild", "status"] {
        let r = run_sub(lake_cmd(&dest), sub, &[] as &[&str]);
        r.assert_code(2);
        r.assert_stderr_has(&["0.1 layout"]);
    }
}

fn status_shows_final_settling_missing_and_verify_finds_damage(dest: TestDest) {
    let sim = start_sim(sim_config());
    let (d12, d11, d10) = (days_ago(12), days_ago(11), days_ago(10));
    run(cmd(&sim, &dest), &date_args(&[APP_A], d12)).assert_code(0);
    run(cmd(&sim, &dest), &date_args(&[APP_A], d10)).assert_code(0);

    let range = range_args(&[APP_A], d12, d10);
    let r = run_sub(lake_cmd(&dest), "status", &range);
    r.assert_code(0);
    r.assert_stdout_has(&["room_usage", &format!("missing: {d11}")]);

    let mut json = vec!["--log-format".to_owned(), "json".into(), "status".into()];
    json.extend(range.iter().cloned());
    let mut c = lake_cmd(&dest);
    c.args(&json);
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let app = &v["tables"][0]["apps"][0];
    assert_eq!(app["app_id"], APP_A);
    assert_eq!(
        app["final"],
        serde_json::json!([d12.to_string(), d10.to_string()])
    );
    assert_eq!(app["missing"], serde_json::json!([d11.to_string()]));
    assert_eq!(app["raw_objects"], 2);
    assert_eq!(app["failed"], serde_json::json!([]));

    // Under a settle longer than the days' age, fetched days still settle.
    let mut long = range.clone();
    long.extend(["--settle".into(), "8000h".into()]);
    run_sub(lake_cmd(&dest), "status", &long)
        .assert_code(0)
        .assert_stdout_has(&[&format!("settling: {d12}, {d10}")]);

    // A day whose answer was kept but whose partition failed is "failed".
    sim.inject(FaultRule::always(
        Some(APP_A),
        Some(d11),
        Fault::Data("RoomId,Audio\nr,-1\n".into()),
    ));
    std::thread::sleep(std::time::Duration::from_millis(2 * INTERVAL_MS));
    run(cmd(&sim, &dest), &date_args(&[APP_A], d11)).assert_code(1);
    run_sub(lake_cmd(&dest), "status", &range)
        .assert_code(0)
        .assert_stdout_has(&[&format!("failed: {d11}")]);
    let requests = sim.stats().total_requests();

    // --verify reads every file: a damaged one is named, exit 1.
    put_object(
        &dest,
        &format!("room_usage/app_id={APP_A}/usage_date={d10}/part-00000.parquet"),
        b"garbage".to_vec(),
    );
    run_sub(lake_cmd(&dest), "status", &range).assert_code(0);
    let mut verify = range.clone();
    verify.push("--verify".into());
    run_sub(lake_cmd(&dest), "status", &verify)
        .assert_code(1)
        .assert_stdout_has(&[&format!("damaged: {d10} the file has 7 bytes")]);
    assert_eq!(
        sim.stats().total_requests(),
        requests,
        "status makes no API call"
    );
}

fn a_damaged_final_partition_is_rebuilt_from_raw_else_fetched(dest: TestDest) {
    let sim = start_sim(sim_config());
    let days: Vec<_> = days_ago(12).iter_days().take(3).collect();
    let args = range_args(&[APP_A], days[0], days[2]);
    run(cmd(&sim, &dest), &args).assert_code(0);
    let exported = objects(&dest);
    let part = |i: usize| {
        format!(
            "room_usage/app_id={APP_A}/usage_date={}/part-00000.parquet",
            days[i]
        )
    };
    // Day 0: the file is garbage; its raw answer is there.
    put_object(&dest, &part(0), b"garbage".to_vec());
    // Day 1: the file and the raw answers are gone.
    delete_objects(&dest, &part(1));
    delete_objects(
        &dest,
        &format!("_raw/room_usage/app_id={APP_A}/usage_date={}/", days[1]),
    );
    let requests = sim.stats().requests;

    std::thread::sleep(std::time::Duration::from_millis(2 * INTERVAL_MS));
    let r = run(cmd(&sim, &dest), &args);
    r.assert_code(0);
    r.assert_stderr_has(&[
        "not the size its manifest says",
        "Rebuilt a damaged partition from the raw zone",
        "missing or unreadable",
        "No raw answer to rebuild the damaged partition from; fetching it again",
    ]);
    // Written: day 0 rebuilt, day 1 fetched, and day 1's check (its input
    // changed); skipped: app_usage × 3, room_usage of day 2, the checks of
    // days 0 (same answers as before) and 2. Every one of the 9 is counted
    // (0.7.1 left day 0's check out: "5 skipped").
    r.assert_stdout_has(&["3 written, 6 skipped (final), 0 failed of 9 partitions"]);
    assert_eq!(
        sim.stats().requests,
        requests + 1,
        "only the day with no raw answer is fetched"
    );
    let after = objects(&dest);
    assert_eq!(after[&part(0)], exported[&part(0)], "rebuilt to the byte");
    assert_eq!(object_names(&dest), expected_layout(&[APP_A], &days));
    let (totals, _) = read_partition(&dest, APP_A, days[1]);
    assert_eq!(totals, sim_totals(APP_A, days[1], 30));
}

/// What a crash leaves in flight (an intent, a staging file under our name,
/// object_store's own `#<n>` name on local disk, a raw staging file) is
/// removed by the next run that writes the lake, final partitions
/// included, and nothing else is touched.
fn a_crash_mid_write_is_cleaned_by_the_next_run(dest: TestDest) {
    let sim = start_sim(sim_config());
    let day = days_ago(10);
    let args = date_args(&[APP_A], day);
    run(cmd(&sim, &dest), &args).assert_code(0);
    let before = objects(&dest);
    let part_dir = format!("room_usage/app_id={APP_A}/usage_date={day}");
    let raw_dir = format!("_raw/room_usage/app_id={APP_A}/usage_date={day}");
    put_object(
        &dest,
        &format!("_trtc_usage/inflight/room_usage/app_id={APP_A}/usage_date={day}/intent.json"),
        b"{}".to_vec(),
    );
    put_object(
        &dest,
        &format!("{part_dir}/_part-00000.parquet.inflight"),
        b"half".to_vec(),
    );
    if let TestDest::Local(dir) = &dest {
        std::fs::write(
            dir.path().join(&part_dir).join("part-00000.parquet#1"),
            b"half",
        )
        .unwrap();
        std::fs::write(dir.path().join(&raw_dir).join("x.json.zst#2"), b"half").unwrap();
    }
    let r = run(cmd(&sim, &dest), &args);
    r.assert_code(0);
    r.assert_stdout_has(&["0 written", "0 calls"]);
    r.assert_stderr_has(&["Cleaned a partition an earlier run left in flight."]);
    assert_eq!(objects(&dest), before, "exactly the lake as it was");
    if let TestDest::Local(_) = &dest {
        assert!(
            local_files(&dest)
                .iter()
                .all(|f| !f.contains('#') && !f.ends_with(".inflight")),
            "{:?}",
            local_files(&dest)
        );
    }
}

/// A file with its manifest's size but other bytes passes the size check;
/// `export --verify` reads it, finds the SHA-256 wrong, and repairs it from
/// the raw zone with no API call.
fn export_verify_repairs_a_file_of_the_right_size_with_the_wrong_bytes(dest: TestDest) {
    let sim = start_sim(sim_config());
    let day = days_ago(10);
    let args = date_args(&[APP_A], day);
    run(cmd(&sim, &dest), &args).assert_code(0);
    let key = format!("room_usage/app_id={APP_A}/usage_date={day}/part-00000.parquet");
    let good = objects(&dest)[&key].clone();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    put_object(&dest, &key, bad.clone());
    let requests = sim.stats().total_requests();

    run(cmd(&sim, &dest), &args)
        .assert_code(0)
        .assert_stdout_has(&["0 written, 3 skipped (final)"]);
    assert_eq!(
        objects(&dest)[&key],
        bad,
        "the size check alone cannot see it"
    );

    let mut verify = args.clone();
    verify.push("--verify".into());
    let r = run(cmd(&sim, &dest), &verify);
    r.assert_code(0);
    r.assert_stderr_has(&[
        "does not match its manifest",
        "SHA-256",
        "Rebuilt a damaged partition from the raw zone",
    ]);
    assert_eq!(objects(&dest)[&key], good, "repaired to the byte");
    assert_eq!(sim.stats().total_requests(), requests, "no API call");
}
