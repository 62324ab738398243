//! The output as users read it: DuckDB with the README's query.

use std::collections::BTreeMap;

use trtc_usage::simulator::{Fault, FaultRule};

use crate::util::*;

/// The Python with DuckDB.
fn python() -> Option<String> {
    provided_python("TRTC_TEST_PYTHON", "DuckDB")
}

#[test]
fn duckdb_reads_the_contract_types_and_the_simulators_totals() {
    let Some(py) = python() else { return };
    let sim = start_sim(sim_config());
    let dest = TestDest::local();
    let days: Vec<_> = days_ago(12).iter_days().take(3).collect();
    let args = range_args(&[APP_A, APP_B], days[0], days[2]);
    run(cmd(&sim, &dest), &args).assert_code(0);

    let v = duckdb_read(&py, &dest.url());
    let types: BTreeMap<String, String> = serde_json::from_value(v["types"].clone()).unwrap();
    let want = [
        ("app_id", "BIGINT"),
        ("usage_date", "DATE"),
        ("room_id", "VARCHAR"),
        ("audio_seconds", "BIGINT"),
        ("video_sd_seconds", "BIGINT"),
        ("video_hd_seconds", "BIGINT"),
        ("video_full_hd_seconds", "BIGINT"),
        ("video_2k_seconds", "BIGINT"),
        ("video_4k_seconds", "BIGINT"),
        ("request_id", "VARCHAR"),
        ("fetched_at", "TIMESTAMP WITH TIME ZONE"),
    ];
    assert_eq!(
        types,
        want.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    );

    // Every partition with rooms, with the simulator's totals; empty days
    // have no rows to group but still have their file (checked elsewhere).
    let mut expected = Vec::new();
    let mut all_ids = Vec::new();
    for app in [APP_A, APP_B] {
        for &day in &days {
            let t = sim_totals(app, day, 30);
            all_ids.extend(t.room_ids.clone());
            if t.rows > 0 {
                expected.push(serde_json::json!([app, day.to_string(), t.rows, t.sums]));
            }
        }
    }
    assert_eq!(v["partitions"], serde_json::Value::Array(expected));
    all_ids.sort();
    let got: Vec<String> = serde_json::from_value(v["room_ids"].clone()).unwrap();
    assert_eq!(got, all_ids, "room ids byte for byte");
}

#[test]
fn duckdb_reads_an_evolved_column_with_union_by_name() {
    let Some(py) = python() else { return };
    let sim = start_sim(sim_config());
    let (plain, evolved) = (days_ago(12), days_ago(11));
    sim.inject(FaultRule::always(
        None,
        Some(evolved),
        Fault::Data("RoomId,Audio,SD,hd,FullHD,2K,4K,8K\nr1,1,2,3,4,5,6,7\n".into()),
    ));
    let dest = TestDest::local();
    let args = [
        "--app-id",
        &APP_A.to_string(),
        "--start",
        &plain.to_string(),
        "--end",
        &evolved.to_string(),
    ];
    run(cmd(&sim, &dest), &args).assert_code(0);
    let v = duckdb_read(&py, &dest.url());
    assert_eq!(v["types"]["extra_8k_seconds"], "BIGINT");
    assert_eq!(v["types"]["app_id"], "BIGINT");
}

/// The documented queries (docs/queries.sql, shown in docs/reading.md),
/// run by DuckDB on a lake with all three tables: every one runs, with the
/// types and figures expected.
#[test]
fn the_documented_queries_run_on_all_three_tables() {
    let Some(py) = python() else { return };
    let sim = start_sim(sim_config());
    let dest = TestDest::local();
    let days: Vec<_> = days_ago(12).iter_days().take(2).collect();
    run(
        cmd(&sim, &dest),
        &range_args(&[APP_A, APP_B], days[0], days[1]),
    )
    .assert_code(0);
    let out = std::process::Command::new(&py)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/run_queries.py"
        ))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/queries.sql"))
        .arg(dest.url())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let types = &v["types"];
    for (table, column, want) in [
        ("app_usage", "app_id", "BIGINT"),
        ("app_usage", "usage_date", "DATE"),
        ("app_usage", "interval_start", "TIMESTAMP WITH TIME ZONE"),
        ("app_usage", "audio_minutes", "DOUBLE"),
        ("app_usage", "video_4k_minutes", "DOUBLE"),
        ("app_usage", "request_id", "VARCHAR"),
        ("app_usage", "fetched_at", "TIMESTAMP WITH TIME ZONE"),
        ("checks", "series", "VARCHAR"),
        ("checks", "room_minutes", "DOUBLE"),
        ("checks", "tolerance", "DOUBLE"),
        ("checks", "status", "VARCHAR"),
        ("checks", "checked_at", "TIMESTAMP WITH TIME ZONE"),
        ("checks", "usage_date", "DATE"),
    ] {
        assert_eq!(types[table][column], want, "{table}.{column}");
    }
    let q = &v["queries"];
    for name in [
        "minutes_per_resolution_per_day",
        "busiest_five_minutes",
        "top_rooms",
        "failing_checks",
        "rooms_against_app_per_day",
    ] {
        assert!(q[name]["types"].is_array(), "{name} ran");
    }
    assert_eq!(
        q["busiest_five_minutes"]["rows"].as_array().unwrap().len(),
        5
    );
    assert_eq!(q["top_rooms"]["rows"].as_array().unwrap().len(), 10);
    assert_eq!(
        q["failing_checks"]["rows"],
        serde_json::json!([]),
        "the simulator adds up"
    );
    // The join: one row per app-day with rooms, each side within a minute.
    let joined = q["rooms_against_app_per_day"]["rows"].as_array().unwrap();
    assert!(!joined.is_empty());
    for row in joined {
        let room: f64 = row[2].as_str().unwrap().parse().unwrap_or(0.0);
        let app: f64 = row[3].as_str().unwrap().parse().unwrap();
        assert!((room - app).abs() < 1.0, "{row}");
    }
    // docs/reading.md shows the same queries, to the character.
    let page =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/reading.md")).unwrap();
    let sql =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/queries.sql")).unwrap();
    for block in sql.split("-- name: ").skip(1) {
        let body = block.split_once('\n').unwrap().1.trim();
        assert!(
            page.contains(body),
            "docs/reading.md lacks the query:\n{body}"
        );
    }
}

/// The Python with pyspark that `scripts/test` provides.
fn spark_python() -> Option<String> {
    provided_python("TRTC_TEST_SPARK_PYTHON", "Spark")
}

/// Spark reads every table with exact row counts after runs were killed
/// mid-way and a crash left object_store's `part-00000.parquet#1` (which
/// Spark, unlike DuckDB's glob, would read as data) under an intent.
#[test]
fn spark_reads_every_table_exactly_after_crashes() {
    let Some(py) = spark_python() else { return };
    let mut config = sim_config();
    config.interval = std::time::Duration::from_millis(20);
    config.rooms = 2_000;
    let sim = start_sim(config);
    let dest = TestDest::local();
    let days: Vec<_> = days_ago(12).iter_days().take(2).collect();
    let mut args = range_args(&[APP_A, APP_B], days[0], days[1]);
    args.extend([
        "--min-interval".into(),
        "20ms".into(),
        "--lease-ttl".into(),
        "1s".into(),
        // The cost table too, at the example's prices.
        "--prices".into(),
        concat!(env!("CARGO_MANIFEST_DIR"), "/jobs/prices.example.toml").into(),
    ]);
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..2 {
        let mut c = cmd(&sim, &dest);
        c.arg("export").args(&args);
        c.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = c.spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(rng.u64(50..300)));
        let _ = child.kill();
        let _ = child.wait();
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    run(cmd(&sim, &dest), &args).assert_code(0);
    // A crash at object_store's rename, in a final partition: its staging
    // file is a whole copy, which Spark would count twice.
    let TestDest::Local(dir) = &dest else {
        unreachable!()
    };
    let part_dir = dir
        .path()
        .join(format!("room_usage/app_id={APP_A}/usage_date={}", days[0]));
    std::fs::copy(
        part_dir.join("part-00000.parquet"),
        part_dir.join("part-00000.parquet#1"),
    )
    .unwrap();
    put_object(
        &dest,
        &format!(
            "_trtc_usage/inflight/room_usage/app_id={APP_A}/usage_date={}/intent.json",
            days[0]
        ),
        b"{}".to_vec(),
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    run(cmd(&sim, &dest), &args).assert_code(0);

    let out = std::process::Command::new(&py)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/read_with_spark.py"
        ))
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "spark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let mut want_rooms = Vec::new();
    let mut want_app = Vec::new();
    let mut want_checks = Vec::new();
    let mut want_cost = Vec::new();
    for app in [APP_A, APP_B] {
        for d in &days {
            let cost_rows = read_table_manifest(&dest, "cost", app, *d).rows;
            if cost_rows > 0 {
                want_cost.push(serde_json::json!([app, d.to_string(), cost_rows]));
            }
            let rows = sim_totals(app, *d, 2_000).rows;
            if rows > 0 {
                want_rooms.push(serde_json::json!([app, d.to_string(), rows]));
            }
            want_app.push(serde_json::json!([app, d.to_string(), 288]));
            want_checks.push(serde_json::json!([app, d.to_string(), 6]));
        }
    }
    assert_eq!(v["room_usage"]["partitions"], serde_json::json!(want_rooms));
    assert_eq!(v["app_usage"]["partitions"], serde_json::json!(want_app));
    assert_eq!(v["checks"]["partitions"], serde_json::json!(want_checks));
    assert_eq!(v["cost"]["partitions"], serde_json::json!(want_cost));
    assert!(want_cost.len() == 4, "every (app, day) has costed rooms");
    assert_eq!(v["cost"]["types"]["BilledCost"], "double");
    assert_eq!(v["cost"]["types"]["ChargePeriodStart"], "timestamp");
    assert_eq!(v["cost"]["types"]["ResourceId"], "string");
    assert_eq!(v["room_usage"]["types"]["audio_seconds"], "bigint");
    assert_eq!(v["room_usage"]["types"]["usage_date"], "date");
    assert_eq!(v["app_usage"]["types"]["interval_start"], "timestamp");
    assert_eq!(v["app_usage"]["types"]["audio_minutes"], "double");
    assert_eq!(v["checks"]["types"]["status"], "string");
}

/// The README's first look ("Then look at the data") works right after the
/// two commands: run as written (the binary put in for `cargo run
/// --release --`), with `scripts/query` installing DuckDB into the cache
/// `TRTC_CACHE_DIR` names, as it would on a fresh machine; and its queries
/// are the ones the demo prints at its end.
#[test]
fn the_readme_first_look_commands_work_after_the_demo() {
    // scripts/test provides the cache (and Python); a plain cargo test skips.
    if python().is_none() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let mut demo = lake_cmd(&TestDest::local());
    demo.current_dir(work.path());
    let r = run_sub(
        demo,
        "demo",
        &["--min-interval", "100ms", "--progress", "off"],
    );
    r.assert_code(0);
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("Then look at the data")
        .nth(1)
        .expect("the first-look section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("its code block");
    for query in trtc_usage::app::first_look_queries("warehouse") {
        assert!(block.contains(&query), "README's first look lacks {query}");
        assert!(
            r.stderr.contains(&format!("./scripts/query \"{query}\"")),
            "the demo does not print {query}:\n{}",
            r.stderr
        );
    }
    assert!(!block.contains("~/.cache"), "no hard-coded cache path");
    let script = block
        .replace("cargo run --release --", env!("CARGO_BIN_EXE_trtc-usage"))
        .replace(
            "./scripts/query",
            concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/query"),
        );
    let mut c = std::process::Command::new("bash");
    c.arg("-ec").arg(&script).current_dir(work.path());
    if let Some(cache) = std::env::var_os("TRTC_CACHE_DIR") {
        c.env("TRTC_CACHE_DIR", cache);
    }
    let out = c.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "room_usage 20",
        "checks 20",
        "1400000001",
        "audio_s",
        "pass",
    ] {
        assert!(stdout.contains(needle), "{needle} in:\n{stdout}");
    }
}
