//! One clock, one place, one truth per lake (contract section 12): what a
//! run is told never leaves the lake disagreeing with itself.

use trtc_usage::simulator::SimConfig;

use crate::util::*;

on_every_destination!(
    one_clock_per_lake,
    a_damaged_derived_partition_is_recomputed_with_no_call,
    a_repaired_input_has_its_derived_partitions_seen_to,
    rebuild_uses_the_answer_the_manifest_names_and_checks_it,
    an_empty_answer_never_replaces_a_forgotten_days_rooms,
);

/// The Python with DuckDB, when `scripts/test` provides it.
fn duckdb_python() -> Option<String> {
    provided_python("TRTC_TEST_PYTHON", "DuckDB")
}

/// Rows DuckDB reads from the room table under `dir`, as the README
/// reads it.
fn duckdb_rooms(python: &str, dir: &std::path::Path) -> u64 {
    duckdb_read(python, dir.to_str().unwrap())["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[2].as_u64().unwrap())
        .sum()
}

/// Point 1: a local `--dest` is the path given, byte for byte, whatever
/// its name, whether it exists or not; a `file://` URL is decoded once.
#[test]
fn a_local_dest_is_the_path_given_whatever_its_name() {
    let sim = start_sim(sim_config());
    let day = days_ago(10);
    let python = duckdb_python();
    let names = [
        "音视频/trtc",
        "ünï",
        "my lake",
        "50%off",
        "a#b",
        "why?",
        "%E6%95%B0",
    ];
    for name in names {
        for existing in [false, true] {
            let base = tempfile::tempdir().unwrap();
            let lake = base.path().join(name);
            if existing {
                std::fs::create_dir_all(&lake).unwrap();
            }
            let given = lake.to_str().unwrap();
            let scratch = TestDest::local();
            let mut args = date_args(&[APP_A], day);
            args.extend(["--dest".into(), given.into()]);
            run(cmd(&sim, &scratch), &args).assert_code(0);
            let prefix = format!("{name}/");
            let files = files_under(base.path());
            assert!(
                files.iter().all(|f| f.starts_with(&prefix)),
                "{name} (existing: {existing}): everything under the path given, nothing beside it: {files:?}"
            );
            assert!(
                files.contains(&format!(
                    "{prefix}room_usage/app_id={APP_A}/usage_date={day}/_manifest.json"
                )),
                "{name}: {files:?}"
            );
            let s = run_sub(lake_cmd(&scratch), "status", &["--dest", given, "--verify"]);
            s.assert_code(0);
            s.assert_stdout_has(&["final"]);
            std::fs::remove_dir_all(lake.join("room_usage")).unwrap();
            run_sub(lake_cmd(&scratch), "rebuild", &["--dest", given]).assert_code(0);
            assert_eq!(files_under(base.path()), files, "{name}: rebuilt in place");
            if let Some(py) = &python {
                let manifest = lake.join(format!(
                    "room_usage/app_id={APP_A}/usage_date={day}/_manifest.json"
                ));
                let m: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
                assert_eq!(
                    duckdb_rooms(py, &lake),
                    m["rows"].as_u64().unwrap(),
                    "{name}: DuckDB reads it"
                );
            }
        }
    }
    // A file:// URL is percent-decoded once: %E6%95%B0 is 数.
    let base = tempfile::tempdir().unwrap();
    let url = format!("file://{}/%E6%95%B0", base.path().display());
    let scratch = TestDest::local();
    let mut args = date_args(&[APP_A], day);
    args.extend(["--dest".into(), url.clone()]);
    run(cmd(&sim, &scratch), &args).assert_code(0);
    let files = files_under(base.path());
    assert!(files.iter().all(|f| f.starts_with("数/")), "{files:?}");
    run_sub(lake_cmd(&scratch), "status", &["--dest", &url]).assert_code(0);
}

/// Point 2: one clock per lake. Another `--utc-offset` is refused before
/// any call or write, naming both; `rebuild` and `status` take the lake's.
fn one_clock_per_lake(dest: TestDest) {
    // An API whose clock is UTC.
    let sim = start_sim(SimConfig {
        utc_offset: chrono::FixedOffset::east_opt(0).unwrap(),
        ..sim_config()
    });
    let day = days_ago(10);
    let mut utc = date_args(&[APP_A], day);
    utc.extend(["--utc-offset".into(), "+00:00".into()]);
    run(cmd(&sim, &dest), &utc).assert_code(0);
    let before = objects(&dest);
    let calls = sim.stats().total_requests();

    // The default clock (+08:00) on a +00:00 lake: refused, nothing done.
    let r = run(cmd(&sim, &dest), &date_args(&[APP_A], day));
    r.assert_code(2);
    r.assert_stderr_has(&["+00:00", "+08:00", "one clock", "_trtc_usage/lake.json"]);
    assert_eq!(sim.stats().total_requests(), calls, "no call");
    assert_eq!(objects(&dest), before, "nothing written");
    let mut forced = date_args(&[APP_A], day);
    forced.extend(["--force".into(), "--tables".into(), "room_usage".into()]);
    run(cmd(&sim, &dest), &forced).assert_code(2);
    assert_eq!(sim.stats().total_requests(), calls, "no call");

    // rebuild and status without --utc-offset use the lake's.
    delete_objects(&dest, "room_usage/");
    run_sub(lake_cmd(&dest), "rebuild", &[] as &[&str]).assert_code(0);
    assert_eq!(read_manifest(&dest, APP_A, day).utc_offset, "+00:00");
    let s = run_sub(lake_cmd(&dest), "status", &["--verify"]);
    s.assert_code(0);
    let r = run_sub(lake_cmd(&dest), "rebuild", &["--utc-offset", "+08:00"]);
    r.assert_code(2);
    r.assert_stderr_has(&["+00:00", "+08:00"]);
    run_sub(lake_cmd(&dest), "status", &["--utc-offset", "+08:00"]).assert_code(2);
    assert_eq!(read_manifest(&dest, APP_A, day).utc_offset, "+00:00");

    // A lake written before the clock was recorded: its manifests say.
    put_object(
        &dest,
        "_trtc_usage/lake.json",
        br#"{"source":"tencent_cloud","created_at":"2026-01-01T00:00:00Z","tool_version":"0.7.1"}"#
            .to_vec(),
    );
    let r = run(cmd(&sim, &dest), &date_args(&[APP_A], day));
    r.assert_code(2);
    r.assert_stderr_has(&["+00:00", "+08:00", "_manifest.json"]);
    assert_eq!(sim.stats().total_requests(), calls, "no call");
    // The same clock is accepted, and recorded from then on.
    run(cmd(&sim, &dest), &utc).assert_code(0);
    let marker = objects(&dest)["_trtc_usage/lake.json"].clone();
    let marker: serde_json::Value = serde_json::from_slice(&marker).unwrap();
    assert_eq!(marker["utc_offset"], "+00:00");
}

/// Point 10: an endpoint with user info is refused and its password never
/// printed.
#[test]
fn an_endpoint_with_user_info_is_refused_and_never_printed() {
    let sim = start_sim(sim_config());
    let dest = TestDest::local();
    let endpoint = sim
        .endpoint()
        .replacen("http://", "http://someone:hunter2pw@", 1);
    let mut c = cmd(&sim, &dest);
    c.env("TRTC_ENDPOINT", &endpoint);
    let r = run(c, &date_args(&[APP_A], days_ago(10)));
    r.assert_code(2);
    r.assert_stderr_has(&["--endpoint", "user info"]);
    assert!(
        !r.stderr.contains("hunter2pw") && !r.stdout.contains("hunter2pw"),
        "{}",
        r.stderr
    );
    assert_eq!(sim.stats().total_requests(), 0);
}

/// Point 11: a usage or credentials error writes nothing, not even the
/// lake's directory.
#[test]
fn a_refused_export_leaves_no_directory() {
    let base = tempfile::tempdir().unwrap();
    let lake = base.path().join("warehouse");
    let scratch = TestDest::local();
    let mut c = lake_cmd(&scratch);
    c.current_dir(base.path());
    c.env_remove("TRTC_DEST");
    // No credentials anywhere: refused before any call.
    let r = run(c, &date_args(&[APP_A], days_ago(10)));
    r.assert_code(2);
    assert!(!lake.exists(), "no ./warehouse left behind");
    assert_eq!(files_under(base.path()), Default::default());
    // A usage error, likewise.
    let mut c = lake_cmd(&scratch);
    c.current_dir(base.path());
    c.env_remove("TRTC_DEST");
    run(c, &["--app-id", "1", "--date", "2026-13-01"]).assert_code(2);
    assert!(!lake.exists());
}

/// `c` run with its stderr closed at once, as `2>&1 | head -1` leaves it
/// (the reader gone); stdout read whole.
fn run_with_stderr_closed(mut c: std::process::Command, args: &[String]) -> (i32, String) {
    c.args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    drop(child.stderr.take()); // the reader went away
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Point 13: a closed stderr ends nothing: the run finishes, its leases
/// are released, its exit code stands.
#[test]
fn a_closed_stderr_ends_nothing_and_leaves_no_lease() {
    let sim = start_sim(sim_config());
    let dest = TestDest::local();
    let days: Vec<_> = days_ago(12).iter_days().take(3).collect();
    let mut args = vec!["export".to_owned()];
    args.extend(range_args(&[APP_A, APP_B], days[0], days[2]));
    let (code, stdout) = run_with_stderr_closed(cmd(&sim, &dest), &args);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("ok"), "{stdout}");
    let leases: Vec<_> = object_names(&dest)
        .into_iter()
        .filter(|n| n.starts_with("_trtc_usage/leases/"))
        .collect();
    assert!(leases.is_empty(), "{leases:?}");
    assert_eq!(object_names(&dest), expected_layout(&[APP_A, APP_B], &days));
    // rebuild likewise.
    delete_objects(&dest, "room_usage/");
    let (code, _) = run_with_stderr_closed(lake_cmd(&dest), &["rebuild".to_owned()]);
    assert_eq!(code, 0);
    assert_eq!(object_names(&dest), expected_layout(&[APP_A, APP_B], &days));
    // A usage error with stderr closed: exit 2, no panic (101).
    let (code, _) = run_with_stderr_closed(lake_cmd(&dest), &["export".into(), "--bogus".into()]);
    assert_eq!(code, 2);
}

/// The example price list, which prices every series the simulator serves.
fn example_prices() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/jobs/prices.example.toml").to_owned()
}

/// Replaces the object at `rel` with `bytes`.
fn damage(dest: &TestDest, rel: &str, bytes: Vec<u8>) {
    put_object(dest, rel, bytes);
}

fn part(table: &str, app: u64, day: chrono::NaiveDate) -> String {
    format!("{table}/app_id={app}/usage_date={day}/part-00000.parquet")
}

/// Point 3: a damaged derived partition (a cost file gone, a checks file
/// cut short, one of the right size with other bytes under `--verify`) is
/// computed again by the next export, with no call and no Tencent
/// credentials; then `status --verify` is clean.
fn a_damaged_derived_partition_is_recomputed_with_no_call(dest: TestDest) {
    let sim = start_sim(sim_config());
    let day = days_ago(10);
    let mut args = date_args(&[APP_A], day);
    args.extend(["--prices".into(), example_prices()]);
    run(cmd(&sim, &dest), &args).assert_code(0);
    let calls = sim.stats().total_requests();
    let good = objects(&dest);

    delete_objects(&dest, &part("cost", APP_A, day));
    let checks = part("checks", APP_A, day);
    damage(&dest, &checks, good[&checks][..100].to_vec());
    run_sub(lake_cmd(&dest), "status", &["--verify"]).assert_code(1);
    // No credentials, no endpoint: nothing is fetched.
    let r = run(lake_cmd(&dest), &args);
    r.assert_code(0);
    r.assert_stdout_has(&["2 written", "2 skipped", "0 calls"]);
    assert_eq!(sim.stats().total_requests(), calls, "no call");
    run_sub(lake_cmd(&dest), "status", &["--verify"]).assert_code(0);

    // The right size, other bytes: only --verify sees it.
    let cost = part("cost", APP_A, day);
    let now = objects(&dest);
    let mut flipped = now[&cost].clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xff;
    damage(&dest, &cost, flipped);
    run(lake_cmd(&dest), &args).assert_stdout_has(&["0 written", "4 skipped"]);
    let mut verify = args.clone();
    verify.push("--verify".into());
    let r = run(lake_cmd(&dest), &verify);
    r.assert_code(0);
    r.assert_stdout_has(&["1 written", "3 skipped"]);
    run_sub(lake_cmd(&dest), "status", &["--verify"]).assert_code(0);
    assert_eq!(sim.stats().total_requests(), calls, "no call");
}

/// Point 6: a room file repaired from the raw zone during an export has
/// what is derived from it looked at in the same run: a damaged checks
/// file recomputed, the cost still current counted as skipped; every
/// planned partition is counted.
fn a_repaired_input_has_its_derived_partitions_seen_to(dest: TestDest) {
    let sim = start_sim(sim_config());
    let day = days_ago(10);
    let mut args = date_args(&[APP_A], day);
    args.extend(["--prices".into(), example_prices()]);
    run(cmd(&sim, &dest), &args).assert_code(0);
    let calls = sim.stats().total_requests();
    let good = objects(&dest);
    let room = part("room_usage", APP_A, day);
    let checks = part("checks", APP_A, day);
    damage(&dest, &room, good[&room][..200].to_vec());
    damage(&dest, &checks, good[&checks][..100].to_vec());
    let r = run(lake_cmd(&dest), &args);
    r.assert_code(0);
    r.assert_stdout_has(&[
        "2 written",
        "2 skipped",
        "0 failed of 4 partitions",
        "0 calls",
    ]);
    r.assert_stderr_has(&["Rebuilt a damaged partition from the raw zone"]);
    assert_eq!(sim.stats().total_requests(), calls);
    run_sub(lake_cmd(&dest), "status", &["--verify"]).assert_code(0);
    assert!(objects(&dest)[&room] == good[&room], "the same bytes again");
}

/// Point 10: `status` calls a derived partition final only when its inputs
/// are: a check computed after the day settled, from a room answer fetched
/// while it was still settling, is settling too.
#[test]
fn a_derived_partition_is_final_only_when_its_inputs_are() {
    let sim = start_sim(sim_config());
    let dest = TestDest::local();
    let day = days_ago(10);
    run(cmd(&sim, &dest), &date_args(&[APP_A], day)).assert_code(0);
    // The room answer as if fetched at noon of the day itself.
    let rel = format!("room_usage/app_id={APP_A}/usage_date={day}/_manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&objects(&dest)[&rel]).unwrap();
    m["fetched_at"] = serde_json::json!(format!("{day}T04:00:00Z"));
    put_object(&dest, &rel, serde_json::to_vec(&m).unwrap());
    let s = run_sub(
        lake_cmd(&dest),
        "status",
        &["--tables", "room_usage,checks", "--log-format", "json"],
    );
    s.assert_code(0);
    let v: serde_json::Value = serde_json::from_str(s.stdout.trim()).unwrap();
    let app = |table: &str| {
        v["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == table)
            .unwrap()["apps"][0]
            .clone()
    };
    let day = serde_json::json!(day.to_string());
    for table in ["room_usage", "checks"] {
        let a = app(table);
        assert!(
            a["settling"].as_array().unwrap().contains(&day),
            "{table}: {a}"
        );
        assert!(
            !a["final"].as_array().unwrap().contains(&day),
            "{table}: {a}"
        );
    }
}

/// The file name of a raw object's key.
fn file_name(key: &str) -> &str {
    key.rsplit('/').next().unwrap()
}

/// Point 5: `rebuild` uses the answer each manifest names, never another
/// that lies beside it, and checks it: a body whose RequestId is not the
/// one its name holds, or whose SHA-256 is not the manifest's, fails its
/// partition naming the object, and the partition is left as it was.
fn rebuild_uses_the_answer_the_manifest_names_and_checks_it(dest: TestDest) {
    let sim = start_sim(sim_config());
    let (d, e) = (days_ago(12), days_ago(11));
    run(cmd(&sim, &dest), &range_args(&[APP_A], d, e)).assert_code(0);
    let (d_key, d_body) = raw_objects(&dest, APP_A, d).remove(0);
    let (e_key, e_body) = raw_objects(&dest, APP_A, e).remove(0);
    let good = objects(&dest);
    let room = part("room_usage", APP_A, d);
    let d_dir = format!("_raw/room_usage/app_id={APP_A}/usage_date={d}");
    let zstd = |body: &[u8]| zstd::stream::encode_all(body, 1).unwrap();
    let rebuild_d = || {
        run_sub(
            lake_cmd(&dest),
            "rebuild",
            &[
                "--start",
                &d.to_string(),
                "--end",
                &d.to_string(),
                "--tables",
                "room_usage",
            ],
        )
    };

    // Another day's answer laid in D's directory, newer than D's own.
    put_object(
        &dest,
        &format!("{d_dir}/{}", file_name(&e_key)),
        good[&e_key].clone(),
    );
    rebuild_d().assert_code(0);
    assert!(
        objects(&dest)[&room] == good[&room],
        "rebuilt from D's own answer"
    );
    assert_eq!(
        read_manifest(&dest, APP_A, d).raw_object.as_deref(),
        Some(d_key.as_str())
    );

    // The named object holds another answer: refused, naming it.
    put_object(&dest, &d_key, zstd(&e_body));
    let r = rebuild_d();
    r.assert_code(1);
    r.assert_stderr_has(&[&d_key, "RequestId", "not the one its name holds"]);
    assert!(objects(&dest)[&room] == good[&room], "left as it was");

    // The named object's RequestId is right but its rows were altered.
    let altered = String::from_utf8(d_body.clone())
        .unwrap()
        .replacen(",1", ",9", 1);
    assert_ne!(altered.as_bytes(), &d_body[..]);
    put_object(&dest, &d_key, zstd(altered.as_bytes()));
    let r = rebuild_d();
    r.assert_code(1);
    r.assert_stderr_has(&[&d_key, "SHA-256", "manifest"]);
    assert!(objects(&dest)[&room] == good[&room], "left as it was");

    // With no manifest, the newest answer is used; one whose name and
    // body disagree is refused, naming it.
    put_object(&dest, &d_key, good[&d_key].clone());
    delete_objects(&dest, &format!("{d_dir}/{}", file_name(&e_key)));
    let renamed = format!(
        "{d_dir}/{}",
        file_name(&e_key)
            .replacen('_', "_f00d", 1)
            .replacen("20", "29", 1)
    );
    put_object(&dest, &renamed, zstd(&d_body));
    delete_objects(&dest, &format!("room_usage/app_id={APP_A}/usage_date={d}/"));
    let r = rebuild_d();
    r.assert_code(1);
    r.assert_stderr_has(&[&renamed, "not the one its name holds"]);
}

/// Point 9: an answer with no rooms never replaces the rooms of a day
/// older than the API keeps: exit 1 naming both RequestIds, the partition
/// keeps its rows, the empty answer is kept raw, and `rebuild` keeps using
/// the good one.
fn an_empty_answer_never_replaces_a_forgotten_days_rooms(dest: TestDest) {
    let sim = start_sim(sim_config());
    let day = days_ago(100);
    let args = date_args(&[APP_A], day);
    run(cmd(&sim, &dest), &args).assert_code(0);
    let good = read_manifest(&dest, APP_A, day);
    assert!(good.rows > 0);
    let room = part("room_usage", APP_A, day);
    let before = objects(&dest)[&room].clone();
    sim.inject(trtc_usage::simulator::FaultRule::next(
        1,
        trtc_usage::simulator::Fault::Data("RoomId,Audio,SD,hd,FullHD,2K,4K\n".into()),
    ));
    std::thread::sleep(std::time::Duration::from_millis(2 * INTERVAL_MS));
    let mut forced = args.clone();
    forced.push("--force".into());
    let r = run(cmd(&sim, &dest), &forced);
    r.assert_code(1);
    r.assert_stderr_has(&[&good.request_id, "with no rows", "keeps its rows"]);
    assert_eq!(read_manifest(&dest, APP_A, day), good);
    assert!(objects(&dest)[&room] == before, "the file is unchanged");
    assert_eq!(
        raw_objects(&dest, APP_A, day).len(),
        2,
        "the empty answer is kept"
    );
    run_sub(lake_cmd(&dest), "rebuild", &[] as &[&str]).assert_code(0);
    assert_eq!(read_manifest(&dest, APP_A, day).request_id, good.request_id);
    assert!(objects(&dest)[&room] == before, "the file is unchanged");
    // A recent day may well be empty: no such guard there.
    let recent = days_ago(10);
    sim.inject(trtc_usage::simulator::FaultRule::next(
        1,
        trtc_usage::simulator::Fault::Data("RoomId,Audio,SD,hd,FullHD,2K,4K\n".into()),
    ));
    std::thread::sleep(std::time::Duration::from_millis(2 * INTERVAL_MS));
    run(cmd(&sim, &dest), &date_args(&[APP_A], recent)).assert_code(0);
    assert_eq!(read_manifest(&dest, APP_A, recent).rows, 0);
}

/// Point 12 (and issue 35): a flag set through its environment variable is
/// named by that variable in errors, and switches read 1/0 from it.
#[test]
fn errors_name_the_environment_variable_set_and_switches_read_1_and_0() {
    let sim = start_sim(sim_config());
    let dest = TestDest::local();
    let accounts = tmp_path("accounts-env.toml");
    std::fs::write(
        &accounts,
        "[[account]]\nname = \"a\"\napp_ids = [1]\ncredentials_file = \"x\"\n",
    )
    .unwrap();
    let mut c = cmd(&sim, &dest);
    c.env("TRTC_APP_IDS", "1400000001");
    let r = run(c, &["--accounts", accounts.to_str().unwrap()]);
    r.assert_code(2);
    r.assert_stderr_has(&["TRTC_APP_IDS (the environment's --app-id)"]);
    let mut c = cmd(&sim, &dest);
    c.env("TRTC_FORCE", "maybe");
    let r = run(c, &date_args(&[APP_A], days_ago(10)));
    r.assert_code(2);
    r.assert_stderr_has(&["TRTC_FORCE (the environment's --force)"]);
    // 1 and 0, as a CronJob's env block writes them.
    let day = days_ago(10);
    run(cmd(&sim, &dest), &date_args(&[APP_A], day)).assert_code(0);
    let calls = sim.stats().total_requests();
    let mut c = cmd(&sim, &dest);
    c.env("TRTC_FORCE", "0");
    run(c, &date_args(&[APP_A], day)).assert_stdout_has(&["0 written"]);
    assert_eq!(sim.stats().total_requests(), calls, "0: not forced");
    std::thread::sleep(std::time::Duration::from_millis(2 * INTERVAL_MS));
    let mut c = cmd(&sim, &dest);
    c.env("TRTC_FORCE", "1");
    run(c, &date_args(&[APP_A], day)).assert_stdout_has(&["3 written"]);
}
