//! Days far larger than the spool's memory limit and than one batch: the
//! answer, the Parquet file and the raw answer each move to an unnamed
//! temporary file in `--spool-dir`, and the lake is exactly the
//! simulator's rows. (The speed and memory of a 10-million-room day are
//! the benchmark's, `./scripts/bench --rooms 10000000`, never a test's.)

use sha2::Digest;
use trtc_usage::simulator::{self, SimConfig};

use crate::util::*;

on_every_destination!(a_large_day_streams_through_spool_files_and_is_exact);

/// Rooms in the large day: about 2 MB of body, four 16,384-row batches.
const ROOMS: u64 = 60_000;

fn a_large_day_streams_through_spool_files_and_is_exact(dest: TestDest) {
    let sim = start_sim(SimConfig {
        rooms: ROOMS,
        exact_rooms: true,
        ..sim_config()
    });
    let day = days_ago(9);
    let spool = tempfile::tempdir().unwrap();
    let with_spool = |mut c: std::process::Command| {
        c.env("TRTC_SPOOL_DIR", spool.path())
            .env("TRTC_SPOOL_MEMORY", "64KiB")
            .env("RUST_LOG", "trtc_usage=debug");
        c
    };
    let r = run(with_spool(cmd(&sim, &dest)), &date_args(&[APP_A], day));
    r.assert_code(0);
    // The body, the Parquet file and the raw answer each went to a file.
    let spooled = r
        .stderr
        .matches("Spooling to an unnamed temporary file.")
        .count();
    assert!(spooled >= 3, "{spooled} spool files:\n{}", r.stderr);

    let want = totals_of_csv(&simulator::data::csv_for(APP_A, day, ROOMS, true));
    assert_eq!(want.rows, ROOMS);
    let (got, _) = read_partition(&dest, APP_A, day);
    assert!(got == want, "the rows differ from the simulator's");
    let m = read_manifest(&dest, APP_A, day);
    assert_eq!(m.rows, ROOMS);
    let body = m.body.clone().unwrap();
    assert!(body.bytes > 20 * 64 * 1024, "{} bytes", body.bytes);
    assert!(m.file.size > 64 * 1024, "{} bytes", m.file.size);
    // The body's hash is the one the simulator sent, and the raw zone holds
    // that very body.
    assert_eq!(
        sim.stats().body_sha256.get(&m.request_id),
        Some(&body.sha256)
    );
    let raw = raw_objects(&dest, APP_A, day);
    assert_eq!(raw.len(), 1);
    assert_eq!(hex::encode(sha2::Sha256::digest(&raw[0].1)), body.sha256);
    // Spool files have no name: nothing is left in --spool-dir.
    assert_eq!(std::fs::read_dir(spool.path()).unwrap().count(), 0);

    // A rebuild reads the raw answer back through the same spool path and
    // writes the same file, to the byte.
    let part = format!("room_usage/app_id={APP_A}/usage_date={day}/part-00000.parquet");
    let before = objects(&dest)[&part].clone();
    let r = run_sub(
        with_spool(lake_cmd(&dest)),
        "rebuild",
        &[
            "--app-id".to_owned(),
            APP_A.to_string(),
            "--date".to_owned(),
            day.to_string(),
        ],
    );
    r.assert_code(0);
    assert!(objects(&dest)[&part] == before, "rebuilt file differs");
    assert_eq!(read_manifest(&dest, APP_A, day), m);
    assert_eq!(sim.stats().requests, 1, "rebuild made no call");
    assert_eq!(std::fs::read_dir(spool.path()).unwrap().count(), 0);
}

/// A spool directory that cannot hold files stops the run before any call,
/// naming the flag.
#[test]
fn an_unusable_spool_dir_is_refused_before_any_call() {
    let sim = start_sim(sim_config());
    let dest = TestDest::local();
    let mut c = cmd(&sim, &dest);
    c.env("TRTC_SPOOL_DIR", "/nonexistent/spool");
    let r = run(c, &date_args(&[APP_A], days_ago(9)));
    r.assert_code(2);
    r.assert_stderr_has(&["--spool-dir /nonexistent/spool: cannot hold temporary files"]);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert_eq!(sim.stats().requests, 0);
    let mut c = lake_cmd(&dest);
    c.env("TRTC_SPOOL_DIR", "/nonexistent/spool");
    let r = run_sub(c, "rebuild", &["--app-id", "1400000001"]);
    r.assert_code(2);
    r.assert_stderr_has(&["--spool-dir /nonexistent/spool"]);
}
