//! Trust at the edges: answers that a standard JSON parser reads otherwise
//! or not at all, figures that overflow, a writer paused past its lease, a
//! spool that fills, RequestIds of any length. Each answer is served
//! verbatim by the simulator (`Fault::Body`).

use std::process::Command;
use std::time::Duration;

use trtc_usage::simulator::{Fault, FaultRule, SimConfig};

use crate::util::*;

on_every_destination!(a_long_request_id_is_kept_whole_and_named_short_in_the_raw_zone);

const HEADER: &str = r"RoomId,Audio,SD,hd,FullHD,2K,4K\n";

fn body(json: String) -> Fault {
    Fault::Body(json.into_bytes())
}

/// Room API requests the simulator admitted: under load a request may
/// arrive a little early and be throttled (and retried), which is pacing,
/// not what these tests count.
fn admitted(sim: &trtc_usage::simulator::Simulator) -> u64 {
    let s = sim.stats();
    s.requests - s.throttled
}

/// Serves `fault` on every room call of one day; returns the run and the
/// room API's admitted requests.
fn serve_room(fault: Fault, extra: &[&str]) -> (Run, u64, TestDest, chrono::NaiveDate) {
    let sim = start_sim(sim_config());
    let day = days_ago(9);
    sim.inject(FaultRule::always(None, Some(day), fault));
    let dest = TestDest::local();
    let mut args = date_args(&[APP_A], day);
    args.extend(extra.iter().map(|s| s.to_string()));
    let r = run(cmd(&sim, &dest), &args);
    (r, admitted(&sim), dest, day)
}

fn room_partition_written(dest: &TestDest) -> bool {
    object_names(dest)
        .iter()
        .any(|n| n.starts_with("room_usage/"))
}

/// `"D\u0061ta"` is `Data`: given after `Data`, the answer is refused (a
/// standard parser reads the second one, or refuses), naming the key and
/// the RequestId; alone, escaped keys are read.
#[test]
fn escaped_keys_are_our_keys_and_one_given_twice_is_refused() {
    let (r, requests, dest, _) = serve_room(
        body(format!(
            r#"{{"Response": {{"RequestId": "req-dup", "Data": "{HEADER}a,1,1,1,1,1,1\n", "D\u0061ta": "{HEADER}b,2,2,2,2,2,2\n"}}}}"#
        )),
        &[],
    );
    r.assert_code(1);
    r.assert_stderr_has(&[r#"key "Data" appears twice"#, "(RequestId req-dup)"]);
    assert_eq!(requests, 5, "an unreadable answer is retried, then fails");
    assert!(!room_partition_written(&dest));

    let (r, requests, dest, day) = serve_room(
        body(format!(
            r#"{{"R\u0065sponse": {{"D\u0061ta": "{HEADER}r\u00e9,1,2,3,4,5,6\n", "Request\u0049d": "req-esc"}}}}"#
        )),
        &[],
    );
    r.assert_code(0);
    assert_eq!(requests, 1);
    let (got, _) = read_partition(&dest, APP_A, day);
    assert_eq!(got.room_ids, ["ré"]);
    assert_eq!(got.sums, [1, 2, 3, 4, 5, 6]);
    assert_eq!(read_manifest(&dest, APP_A, day).request_id, "req-esc");
}

/// What a standard parser refuses is refused, naming the RequestId: a
/// `\u` escape with a sign, a literal cut short, no `Data` at all.
#[test]
fn malformed_answers_are_refused_naming_their_request_id() {
    // Inside Data: bad data, not a network fault; one call.
    let (r, requests, dest, _) = serve_room(
        body(format!(
            r#"{{"Response": {{"Data": "{HEADER}r\u+041,1,2,3,4,5,6\n", "RequestId": "req-sign"}}}}"#
        )),
        &[],
    );
    r.assert_code(1);
    r.assert_stderr_has(&[
        "RequestId req-sign",
        "CSV line 2",
        r#"bad \u escape "+041""#,
    ]);
    assert_eq!(requests, 1, "not retried");
    assert!(!room_partition_written(&dest));

    for (json, why) in [
        (
            format!(r#"{{"Response": {{"RequestId": "req-tru", "Data": "{HEADER}", "X": tru}}}}"#),
            r#""tru" is not a JSON value"#,
        ),
        (
            r#"{"Response": {"RequestId": "req-nodata"}}"#.to_owned(),
            "Response.Data is missing or null",
        ),
        (
            r#"{"Response": {"RequestId": "req-null", "Data": null}}"#.to_owned(),
            "Response.Data is missing or null",
        ),
    ] {
        let id = json
            .split("req-")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let (r, requests, dest, _) = serve_room(body(json.clone()), &[]);
        r.assert_code(1);
        r.assert_stderr_has(&[why, &format!("(RequestId req-{id})")]);
        assert_eq!(requests, 5, "{json}: retried, then failed");
        assert!(!room_partition_written(&dest));
    }
}

/// A room whose id is one space is a room, not a blank line.
#[test]
fn a_room_named_by_a_single_space_is_kept() {
    let (r, _, dest, day) = serve_room(
        body(r#"{"Response": {"Data": "RoomId\n \n", "RequestId": "req-space"}}"#.to_owned()),
        &[],
    );
    r.assert_code(0);
    let (got, _) = read_partition(&dest, APP_A, day);
    assert_eq!(got.room_ids, [" "]);
}

/// Three buckets of 1e308: each finite, the day's sum not. The app
/// partition fails naming series and bucket, and no check passes on it.
#[test]
fn an_app_total_that_overflows_fails_its_partition_and_no_check_passes() {
    let sim = start_sim(sim_config());
    let day = days_ago(9);
    let buckets: Vec<String> = ["00:00", "00:05", "00:10"]
        .iter()
        .map(|t| format!(r#"{{"TimeKey": "{day} {t}:00", "UsageValue": [1e308, 0, 0, 0, 0, 0]}}"#))
        .collect();
    let json = format!(
        r#"{{"Response": {{"RequestId": "req-inf", "UsageKey": ["Audio", "SD", "HD", "FullHD", "2K", "4K"], "UsageList": [{}]}}}}"#,
        buckets.join(", ")
    );
    sim.inject(FaultRule::always(None, Some(day), body(json)).app());
    let dest = TestDest::local();
    let mut args = date_args(&[APP_A], day);
    args.extend(["--checks".into(), "fail".into()]);
    let r = run(cmd(&sim, &dest), &args);
    r.assert_code(1);
    r.assert_stderr_has(&[
        "RequestId req-inf",
        &format!("bucket {day} 00:05:00, series 'Audio'"),
        "no longer a finite number",
    ]);
    let app = sim.stats().app;
    assert_eq!(app.requests - app.throttled, 1, "bad data: not retried");
    let names = object_names(&dest);
    assert!(names.iter().any(|n| n.starts_with("room_usage/")));
    assert!(!names.iter().any(|n| n.starts_with("app_usage/")));
    assert!(!names.iter().any(|n| n.starts_with("checks/")), "{names:?}");
}

/// A RequestId of 300 characters: the partition is written (the raw
/// object's name would overflow a file name's 255 bytes), the manifest and
/// the rows keep it whole, and `rebuild` finds the raw answer.
fn a_long_request_id_is_kept_whole_and_named_short_in_the_raw_zone(dest: TestDest) {
    let long = format!("req-{}", "x".repeat(296));
    let sim = start_sim(sim_config());
    let day = days_ago(9);
    sim.inject(FaultRule::always(
        None,
        Some(day),
        body(format!(
            r#"{{"Response": {{"Data": "{HEADER}r1,1,2,3,4,5,6\n", "RequestId": "{long}"}}}}"#
        )),
    ));
    run(cmd(&sim, &dest), &date_args(&[APP_A], day)).assert_code(0);
    let m = read_manifest(&dest, APP_A, day);
    assert_eq!(m.request_id, long);
    let raw = m.raw_object.expect("kept");
    let name = raw.rsplit('/').next().unwrap();
    assert!(name.len() < 100 && name.contains("_req-xxxx"), "{name}");
    let (_, batches) = read_partition(&dest, APP_A, day);
    let ids = batches[0]
        .column_by_name("request_id")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow_array::StringArray>()
        .unwrap()
        .value(0)
        .to_owned();
    assert_eq!(ids, long);
    let before = read_table(&dest, "room_usage", APP_A, day);
    run_sub(lake_cmd(&dest), "rebuild", &date_args(&[APP_A], day)).assert_code(0);
    assert_eq!(read_table(&dest, "room_usage", APP_A, day), before);
}

/// A tmpfs of `size`, mounted for the test; `None` (with a note) where
/// this machine cannot mount one.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            crate::util::skip_note(
                "tmpfs",
                "cannot mount a tmpfs here (not root?): the full-spool test is skipped",
            );
            return None;
        }
        Some(Tmpfs(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

/// Days of 26,000 rooms: an 850 KB body, a 310 KB Parquet file.
fn rooms_26k() -> SimConfig {
    SimConfig {
        rooms: 26_000,
        exact_rooms: true,
        ..sim_config()
    }
}

/// The spool fills while the answer's body arrives (a 512 KiB tmpfs; the
/// body of 26,000 rooms is about 850 KB): the run stops at that answer with
/// exit 2 naming `--spool-dir`, and the two days left cost no call.
#[test]
fn a_spool_that_fills_stops_the_run_naming_spool_dir() {
    let Some(tmpfs) = Tmpfs::mount("512k") else {
        return;
    };
    let sim = start_sim(rooms_26k());
    let dest = TestDest::local();
    let mut args = range_args(&[APP_A], days_ago(11), days_ago(9));
    args.extend([
        "--spool-dir".into(),
        tmpfs.0.path().display().to_string(),
        "--spool-memory".into(),
        "64KiB".into(),
    ]);
    let r = run(cmd(&sim, &dest), &args);
    r.assert_code(2);
    r.assert_stderr_has(&["(--spool-dir)", "No space left on device"]);
    assert_eq!(admitted(&sim), 1, "the days left cost no call");
    assert!(!room_partition_written(&dest));
    assert_eq!(std::fs::read_dir(tmpfs.0.path()).unwrap().count(), 0);
}

/// On local disk the Parquet file and the raw copy are built in the lake's
/// own file system (unnamed, then linked into place). A lake that fills
/// while they are built (a 512 KiB tmpfs; they take about 600 KB for
/// 26,000 rooms) stops the run with exit 2 naming the lake's directory: no
/// partition and no file being built is left, and the days left cost no
/// call.
#[test]
fn a_lake_that_fills_while_files_are_built_stops_the_run_naming_it() {
    let Some(tmpfs) = Tmpfs::mount("512k") else {
        return;
    };
    let sim = start_sim(rooms_26k());
    let dest = TestDest::local();
    let lake = tmpfs.0.path().join("lake");
    let mut c = cmd(&sim, &dest);
    c.env("TRTC_DEST", &lake);
    let mut args = range_args(&[APP_A], days_ago(11), days_ago(9));
    args.extend(["--spool-memory".into(), "64KiB".into()]);
    let r = run(c, &args);
    r.assert_code(2);
    r.assert_stderr_has(&["the lake's directory", "No space left on device"]);
    assert_eq!(admitted(&sim), 1, "the days left cost no call");
    // Which of the two files met the full disk first varies; neither the
    // partition nor any file being built is there.
    let names = files_under(&lake);
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("room_usage/") || n.contains("inflight")),
        "{names:?}"
    );
}

/// A writer paused (SIGSTOP) mid-call for longer than its lease's time to
/// live: another run takes the lease over and writes the day; the paused
/// one, resumed, commits nothing (its fence closed on its own monotonic
/// clock) and exits 2 naming the lease.
///
/// The time to live (4 s) is long enough that a loaded machine cannot let
/// it lapse before the pause; the pause (6 s) is longer than it, which is
/// all the test needs of the clock.
#[test]
fn a_paused_writer_commits_nothing_once_its_lease_could_have_expired() {
    let sim = start_sim(sim_config());
    let day = days_ago(9);
    sim.inject(FaultRule::next(1, Fault::Delay(Duration::from_secs(8))));
    let dest = TestDest::local();
    let args = date_args(&[APP_A], day);
    let mut first = cmd(&sim, &dest);
    first.env("TRTC_LEASE_TTL", "4s");
    let (mut a, lines) = spawn_export(first, &args);
    // A's room call is at the simulator, which holds it for 8 s.
    let t0 = std::time::Instant::now();
    while sim.stats().requests == 0 {
        assert!(t0.elapsed() < Duration::from_secs(60), "no call");
        std::thread::sleep(Duration::from_millis(10));
    }
    signal(&a, "STOP");
    std::thread::sleep(Duration::from_millis(6000));
    let b = run(cmd(&sim, &dest), &args);
    b.assert_code(0);
    b.assert_stderr_has(&["Taking over an expired lease"]);
    let b_manifest = read_manifest(&dest, APP_A, day);
    signal(&a, "CONT");
    assert_eq!(wait_with_deadline(&mut a, Duration::from_secs(60)), 2);
    let stderr: Vec<String> = lines.iter().collect();
    let stderr = stderr.join("\n");
    // Whether the fence closed during the call (the watchdog) or at the
    // commit, the line names the lease and says nothing more is committed.
    assert!(
        stderr.contains("_trtc_usage/leases/app_id=") && stderr.contains("commits nothing more"),
        "{stderr}"
    );
    // The lake is B's: one raw answer for the day, the manifest B wrote.
    assert_eq!(read_manifest(&dest, APP_A, day), b_manifest);
    let raws = raw_objects(&dest, APP_A, day);
    let room_raws: Vec<&String> = raws
        .iter()
        .map(|(n, _)| n)
        .filter(|n| n.starts_with("_raw/room_usage/"))
        .collect();
    assert_eq!(room_raws.len(), 1, "{room_raws:?}");
    assert_eq!(admitted(&sim), 2);
}

/// A manifest whose raw answer was deleted: `status --verify` says the
/// partition can no longer be rebuilt (exit 1), and `rebuild` over the
/// whole lake reports it (exit 1) instead of passing it by.
#[test]
fn a_partition_whose_raw_answer_is_gone_is_reported() {
    let sim = start_sim(sim_config());
    let day = days_ago(9);
    let dest = TestDest::local();
    run(cmd(&sim, &dest), &date_args(&[APP_A], day)).assert_code(0);
    run_sub(lake_cmd(&dest), "status", &["--verify"]).assert_code(0);
    delete_objects(&dest, "_raw/room_usage/");
    let s = run_sub(lake_cmd(&dest), "status", &["--verify"]);
    s.assert_code(1);
    s.assert_stdout_has(&[&format!("raw answer missing: {day}"), "cannot be rebuilt"]);
    let r = run_sub(lake_cmd(&dest), "rebuild", &[] as &[&str]);
    r.assert_code(1);
    r.assert_stderr_has(&["no raw response under _raw/room_usage/"]);
    // Left as it was.
    let (got, _) = read_partition(&dest, APP_A, day);
    assert_eq!(got, sim_totals(APP_A, day, 30));
}

/// A check whose app_usage partition is gone: `rebuild --tables checks`
/// cannot recompute it and says so (exit 1, not "0 of 0"), `status`
/// calls it stale rather than final, and the next export fetches what is
/// missing and checks again.
#[test]
fn a_check_whose_input_is_gone_is_stale_until_exported_again() {
    let sim = start_sim(sim_config());
    let day = days_ago(9);
    let dest = TestDest::local();
    let args = date_args(&[APP_A], day);
    run(cmd(&sim, &dest), &args).assert_code(0);
    delete_objects(&dest, "app_usage/");
    let r = run_sub(lake_cmd(&dest), "rebuild", &["--tables", "checks"]);
    r.assert_code(1);
    r.assert_stderr_has(&["its app_usage partition is missing", "stale"]);
    let s = run_sub(lake_cmd(&dest), "status", &["--tables", "checks"]);
    s.assert_code(0);
    s.assert_stdout_has(&[&format!("stale: {day}")]);
    run_sub(
        lake_cmd(&dest),
        "status",
        &["--tables", "checks", "--verify"],
    )
    .assert_code(1);
    run(cmd(&sim, &dest), &args).assert_code(0);
    // Counted as served: under load a call may be throttled and retried.
    assert_eq!(sim.stats().app.served, 2, "app_usage fetched again");
    assert_eq!(sim.stats().served, 1, "and only it");
    let s = run_sub(
        lake_cmd(&dest),
        "status",
        &["--tables", "checks", "--verify"],
    );
    s.assert_code(0);
    assert!(!s.stdout.contains("stale"), "{}", s.stdout);
}
