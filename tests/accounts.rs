//! Many accounts, one lake: a lease per app, every account at once in one
//! process (each with its own pacers and keys) or one process per account,
//! side by side on one lake.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use trtc_usage::simulator::{Fault, FaultRule, SimConfig, Simulator};

use crate::util::*;

on_every_destination!(
    two_processes_on_disjoint_apps_write_one_lake_at_once,
    a_killed_holders_leases_are_taken_over_after_the_ttl_and_no_other_app_is_touched,
    a_held_app_stops_its_account_only,
);

const APP_C: u64 = 1_400_000_003;
const APP_D: u64 = 1_400_000_004;

/// The SecretId and SecretKey of account `i` (the simulator knows them).
fn keys(i: usize) -> (String, String) {
    (
        format!("AKIDACCOUNT{i}000000000000000000000000"),
        format!("account-{i}-secret-key-not-a-secret"),
    )
}

/// A simulator that knows accounts 0..3, each with its own limits.
fn sim_for_accounts(interval: Duration) -> Simulator {
    let mut config = SimConfig {
        interval,
        ..sim_config()
    };
    for i in 0..3 {
        let (id, key) = keys(i);
        config.keys.insert(id, key);
    }
    start_sim(config)
}

/// An accounts file of `accounts` (name, apps), account i's keys in the
/// variables ACC<i>_ID / ACC<i>_KEY, every endpoint the simulator's.
fn accounts_file(sim: &Simulator, accounts: &[(&str, &[u64])]) -> PathBuf {
    let mut text = String::from("# test accounts\n");
    for (i, (name, apps)) in accounts.iter().enumerate() {
        let apps: Vec<String> = apps.iter().map(u64::to_string).collect();
        text.push_str(&format!(
            "[[account]]\nname = \"{name}\"\napp_ids = [{}]\nsecret_id_env = \"ACC{i}_ID\"\nsecret_key_env = \"ACC{i}_KEY\"\nendpoint = \"{}\"\n\n",
            apps.join(", "),
            sim.endpoint()
        ));
    }
    let path = tmp_path("accounts.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A command with every account's keys in its environment, and no default
/// credentials.
fn accounts_cmd(sim: &Simulator, dest: &TestDest, file: &std::path::Path) -> Command {
    let mut c = cmd(sim, dest);
    c.env_remove("TENCENTCLOUD_SECRET_ID")
        .env_remove("TENCENTCLOUD_SECRET_KEY")
        .env("TRTC_ACCOUNTS", file);
    for i in 0..3 {
        let (id, key) = keys(i);
        c.env(format!("ACC{i}_ID"), id)
            .env(format!("ACC{i}_KEY"), key);
    }
    c
}

fn days(n: usize) -> Vec<chrono::NaiveDate> {
    days_ago(8 + n as i64).iter_days().take(n).collect()
}

/// Days ago as export arguments, with no --app-id (the file has them).
fn day_args(days: &[chrono::NaiveDate]) -> Vec<String> {
    vec![
        "--start".into(),
        days[0].to_string(),
        "--end".into(),
        days[days.len() - 1].to_string(),
    ]
}

/// Three accounts of one process run side by side, each on its own
/// SecretId and within its own rate limit; the summary names each; the
/// lake holds every app exactly. Then each account alone (`--account N`)
/// exports only its own apps. The wall times are printed for the record
/// (`cargo test accounts -- --nocapture`), not asserted.
#[test]
fn accounts_run_side_by_side_each_within_its_own_limit() {
    let interval = Duration::from_millis(400);
    let sim = sim_for_accounts(interval);
    let accounts: [(&str, &[u64]); 3] = [
        ("big", &[APP_A, APP_B]),
        ("small-1", &[APP_C]),
        ("small-2", &[APP_D]),
    ];
    let file = accounts_file(&sim, &accounts);
    let days = days(3);
    let dest = TestDest::local();
    let summary = tmp_path("summary.json");
    let mut c = accounts_cmd(&sim, &dest, &file);
    c.env("TRTC_MIN_INTERVAL", "400ms");
    let mut args = day_args(&days);
    args.extend(["--summary-file".into(), summary.display().to_string()]);
    let t0 = Instant::now();
    let r = run(c, &args);
    let together = t0.elapsed();
    r.assert_code(0);
    r.assert_stdout_has(&[
        "trtc-usage [account big]: ok: 18 written",
        "trtc-usage [account small-1]: ok: 9 written",
        "trtc-usage [account small-2]: ok: 9 written",
        "(3 accounts)",
    ]);
    // Every log line of an account's work names it.
    assert!(
        r.stderr
            .lines()
            .filter(|l| l.contains("Wrote partition."))
            .all(|l| l.contains("account{account=")),
        "{}",
        r.stderr
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let per: Vec<(String, u64)> = json["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["account"].as_str().unwrap().to_owned(),
                a["written"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        per,
        [
            ("big".into(), 18),
            ("small-1".into(), 9),
            ("small-2".into(), 9)
        ]
    );
    let apps = [APP_A, APP_B, APP_C, APP_D];
    assert_eq!(object_names(&dest), expected_layout(&apps, &days));
    for app in apps {
        for &day in &days {
            let (got, _) = read_partition(&dest, app, day);
            assert_eq!(got, sim_totals(app, day, 30), "{app} {day}");
        }
    }
    // Each account's room calls used its own SecretId, spaced by its own
    // limit (the simulator throttles any that is not), and the accounts'
    // calls overlapped in time.
    let stats = sim.stats();
    assert_eq!(stats.throttled, 0, "no account broke its limit");
    let mut by_key: std::collections::BTreeMap<&str, Vec<Instant>> = Default::default();
    for (id, at) in stats.secret_ids.iter().zip(&stats.admitted_at) {
        by_key.entry(id.as_str()).or_default().push(*at);
    }
    let counts: Vec<usize> = (0..3).map(|i| by_key[keys(i).0.as_str()].len()).collect();
    assert_eq!(counts, [6, 3, 3]);
    for calls in by_key.values() {
        for w in calls.windows(2) {
            assert!(w[1] - w[0] >= interval - Duration::from_millis(20), "{w:?}");
        }
    }
    let first_small = by_key[keys(1).0.as_str()][0];
    let last_big = *by_key[keys(0).0.as_str()].last().unwrap();
    assert!(first_small < last_big, "the accounts ran side by side");

    // Alone, one account at a time: only its apps.
    let mut alone = Duration::ZERO;
    for (i, (name, apps)) in accounts.iter().enumerate() {
        let dest = TestDest::local();
        let mut c = accounts_cmd(&sim, &dest, &file);
        c.env("TRTC_MIN_INTERVAL", "400ms");
        let t0 = Instant::now();
        let mut args = day_args(&days);
        args.extend(["--account".into(), i.to_string()]);
        let r = run(c, &args);
        alone += t0.elapsed();
        r.assert_code(0);
        r.assert_stdout_has(&[&format!("trtc-usage [account {name}]: ok")]);
        assert_eq!(object_names(&dest), expected_layout(apps, &days), "{name}");
    }
    eprintln!(
        "accounts: 3 accounts (6, 3 and 3 room calls at {interval:?}) in one process: {:.2} s; each alone, one after another: {:.2} s",
        together.as_secs_f64(),
        alone.as_secs_f64()
    );
}

/// A bad accounts file, a missing account or missing keys: exit 2 before
/// any call, one line per problem.
#[test]
fn a_bad_accounts_file_exits_2_with_a_line_per_problem_and_no_call() {
    let sim = sim_for_accounts(Duration::from_millis(100));
    let dest = TestDest::local();
    let days = days(1);
    let duplicate = accounts_file(&sim, &[("a", &[APP_A, APP_B]), ("b", &[APP_B])]);
    let r = run(accounts_cmd(&sim, &dest, &duplicate), &day_args(&days));
    r.assert_code(2);
    r.assert_stderr_has(&[&format!(
        "account 'b' (#1): app id {APP_B} is also in account 'a'"
    )]);
    let good = accounts_file(&sim, &[("a", &[APP_A]), ("b", &[APP_B])]);
    let mut args = day_args(&days);
    args.extend(["--account".into(), "c".into()]);
    let r = run(accounts_cmd(&sim, &dest, &good), &args);
    r.assert_code(2);
    r.assert_stderr_has(&["--account c: no such account; the file has 2 (a, b)"]);
    // Keys missing for both accounts: a line each.
    let mut c = accounts_cmd(&sim, &dest, &good);
    c.env_remove("ACC0_KEY").env("ACC1_ID", "");
    let r = run(c, &day_args(&days));
    r.assert_code(2);
    r.assert_stderr_has(&[
        "account 'a': environment variable ACC0_KEY is not set",
        "account 'b': environment variable ACC1_ID is empty",
    ]);
    assert_eq!(
        r.stderr.lines().filter(|l| l.starts_with("error:")).count(),
        2,
        "{}",
        r.stderr
    );
    // Only the selected account's keys are needed.
    let mut c = accounts_cmd(&sim, &dest, &good);
    c.env_remove("ACC1_KEY");
    let mut args = day_args(&days);
    args.extend(["--account".into(), "a".into()]);
    run(c, &args).assert_code(0);
    let calls = sim.stats().total_requests();
    // --app-id and --accounts together are a usage error.
    let mut args = day_args(&days);
    args.extend(["--app-id".into(), APP_A.to_string()]);
    let r = run(accounts_cmd(&sim, &dest, &good), &args);
    r.assert_code(2);
    r.assert_stderr_has(&["--app-id", "--accounts"]);
    assert_eq!(sim.stats().total_requests(), calls, "no call");
}

/// Two processes with different keys on disjoint apps: both write one lake
/// at the same time, both exit 0, and the lake is exact.
fn two_processes_on_disjoint_apps_write_one_lake_at_once(dest: TestDest) {
    let sim = sim_for_accounts(Duration::from_millis(200));
    let file = accounts_file(&sim, &[("one", &[APP_A]), ("two", &[APP_B])]);
    let days = days(4);
    let spawn = |account: &str| {
        let mut c = accounts_cmd(&sim, &dest, &file);
        c.env("TRTC_MIN_INTERVAL", "200ms");
        let mut args = day_args(&days);
        args.extend(["--account".into(), account.into()]);
        c.arg("export")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c.spawn().unwrap()
    };
    let (one, two) = (spawn("one"), spawn("two"));
    for child in [one, two] {
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(object_names(&dest), expected_layout(&[APP_A, APP_B], &days));
    for app in [APP_A, APP_B] {
        for &day in &days {
            let (got, _) = read_partition(&dest, app, day);
            assert_eq!(got, sim_totals(app, day, 30), "{app} {day}");
        }
    }
    assert_eq!(sim.stats().throttled, 0);
}

/// A run that needs an app another run holds is refused at once, with no
/// API call, naming the app; the apps it took first are given back.
#[test]
fn a_run_on_a_held_app_is_refused_with_no_call_naming_the_app() {
    let sim = start_sim(sim_config());
    let dest = TestDest::local();
    let day = days_ago(9);
    // The first run waits 15 s for its first answer, holding app A.
    sim.inject(FaultRule::next(1, Fault::Delay(Duration::from_secs(15))));
    let (mut first, _lines) = spawn_run(&sim, &dest, &date_args(&[APP_A], day));
    // Both of its calls are in: the room call (held) and the app call.
    let t0 = Instant::now();
    while sim.stats().requests == 0 || sim.stats().app.served == 0 {
        assert!(t0.elapsed() < Duration::from_secs(120), "no calls");
        std::thread::sleep(Duration::from_millis(10));
    }
    let calls = sim.stats().total_requests();
    let r = run(cmd(&sim, &dest), &date_args(&[APP_B, APP_A], day));
    r.assert_code(2);
    r.assert_stderr_has(&[
        &format!("app {APP_A} of "),
        "is being written by another run",
        &format!("_trtc_usage/leases/app_id={APP_A}.json"),
    ]);
    assert_eq!(sim.stats().total_requests(), calls, "no API call");
    // App B was given back: a run on it alone goes ahead beside the first.
    run(cmd(&sim, &dest), &date_args(&[APP_B], day)).assert_code(0);
    assert_eq!(wait_with_deadline(&mut first, Duration::from_secs(120)), 0);
}

/// A holder of apps A and B is killed (-9); a run on app C goes on beside
/// it; after the TTL, a run on A and B takes their leases over with a
/// warning, and the run on C never notices.
fn a_killed_holders_leases_are_taken_over_after_the_ttl_and_no_other_app_is_touched(
    dest: TestDest,
) {
    let sim = sim_for_accounts(Duration::from_millis(300));
    let days = days(8);
    // Apps A and B are account 0's, app C account 1's: each account has
    // its own limit (two processes of one account would share one).
    let export_of = |apps: &[u64]| {
        let (id, key) = keys(if apps.contains(&APP_C) { 1 } else { 0 });
        let mut c = cmd(&sim, &dest);
        c.env("TENCENTCLOUD_SECRET_ID", id)
            .env("TENCENTCLOUD_SECRET_KEY", key)
            .env("TRTC_MIN_INTERVAL", "300ms");
        let mut args = range_args(apps, days[0], days[7]);
        args.push("--progress".into());
        args.push("log".into());
        (c, args)
    };
    let (c, args) = export_of(&[APP_A, APP_B]);
    let (mut killed, killed_lines) = spawn_export(c, &args);
    let (c, args) = export_of(&[APP_C]);
    let (mut other, other_lines) = spawn_export(c, &args);
    let t0 = Instant::now();
    let first = format!(
        "room_usage/app_id={APP_A}/usage_date={}/_manifest.json",
        days[0]
    );
    while !exists(&dest, &first) {
        if t0.elapsed() > Duration::from_secs(120) {
            let _ = killed.kill();
            let log: Vec<String> = killed_lines.try_iter().collect();
            panic!("nothing written: {log:#?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    killed.kill().unwrap(); // SIGKILL: never renews, never releases
    killed.wait().unwrap();
    // A time to live later (aged here, not waited for): its leases expire.
    expire_leases(&dest, &[APP_A, APP_B]);
    let (c, args) = export_of(&[APP_A, APP_B]);
    let r = run(c, &args);
    r.assert_code(0);
    r.assert_stderr_has(&["Taking over an expired lease"]);
    assert_eq!(wait_with_deadline(&mut other, Duration::from_secs(120)), 0);
    let other_log: Vec<String> = other_lines.iter().collect();
    assert!(
        !other_log
            .iter()
            .any(|l| l.contains("Lost a lease") || l.contains("Taking over")),
        "{other_log:?}"
    );
    assert_eq!(
        object_names(&dest),
        expected_layout(&[APP_A, APP_B, APP_C], &days)
    );
    for app in [APP_A, APP_B, APP_C] {
        for &day in &days {
            let (got, _) = read_partition(&dest, app, day);
            assert_eq!(got, sim_totals(app, day, 30), "{app} {day}");
        }
    }
}

/// `rebuild` and `status` read the accounts file too: `--account` picks
/// the apps (no credentials needed); rebuild takes only their leases.
#[test]
fn rebuild_and_status_take_their_apps_from_the_accounts_file() {
    let sim = sim_for_accounts(Duration::from_millis(100));
    let dest = TestDest::local();
    let file = accounts_file(&sim, &[("one", &[APP_A]), ("two", &[APP_B])]);
    let days = days(1);
    run(accounts_cmd(&sim, &dest, &file), &day_args(&days)).assert_code(0);
    // The fetched tables' files and manifests (a check is recomputed at a
    // new time), by SHA-256.
    let fetched = || -> Vec<(String, String)> {
        use sha2::Digest;
        objects(&dest)
            .into_iter()
            .filter(|(k, _)| k.starts_with("room_usage/") || k.starts_with("app_usage/"))
            .map(|(k, v)| (k, hex::encode(sha2::Sha256::digest(&v))))
            .collect()
    };
    let before = fetched();
    let mut c = lake_cmd(&dest);
    c.env("TRTC_ACCOUNTS", &file);
    let r = run_sub(c, "rebuild", &["--account", "two"]);
    r.assert_code(0);
    r.assert_stderr_has(&["Took the leases of 1 app(s). apps=1400000002"]);
    assert!(
        r.stdout.contains("3 written"),
        "app B's two tables and its check: {}",
        r.stdout
    );
    assert_eq!(fetched(), before, "the same bytes, rebuilt");
    let mut c = lake_cmd(&dest);
    c.env("TRTC_ACCOUNTS", &file);
    let s = run_sub(c, "status", &["--account", "one"]);
    s.assert_code(0);
    assert!(
        s.stdout.contains(&APP_A.to_string()) && !s.stdout.contains(&APP_B.to_string()),
        "{}",
        s.stdout
    );
}

/// With `--accounts`, an account's own `billing_account_id` is its apps'
/// `BillingAccountId` in `cost`; the others take the price list's; a price
/// list without one is refused (exit 2, no call) while an account lacks
/// its own, naming the account.
#[test]
fn each_accounts_billing_account_is_its_apps_cost_rows() {
    use arrow_array::cast::AsArray;
    let sim = sim_for_accounts(Duration::from_millis(100));
    let dest = TestDest::local();
    let file = accounts_file(&sim, &[("one", &[APP_A]), ("two", &[APP_B])]);
    let text = std::fs::read_to_string(&file).unwrap().replacen(
        "name = \"two\"\n",
        "name = \"two\"\nbilling_account_id = \"200000000002\"\n",
        1,
    );
    std::fs::write(&file, text).unwrap();
    let days = days(1);
    let prices = tmp_path("prices-accounts.toml");
    let list = "currency = \"EUR\"\n[[price]]\nseries = \"audio\"\nlist = 1\n[[price]]\nseries = \"video_sd\"\nlist = 1\n[[price]]\nseries = \"video_hd\"\nlist = 1\n[[price]]\nseries = \"video_full_hd\"\nlist = 1\n[[price]]\nseries = \"video_2k\"\nlist = 1\n[[price]]\nseries = \"video_4k\"\nlist = 1\n";
    std::fs::write(&prices, list).unwrap();
    let mut args = day_args(&days);
    args.extend(["--prices".into(), prices.display().to_string()]);
    let r = run(accounts_cmd(&sim, &dest, &file), &args);
    r.assert_code(2);
    r.assert_stderr_has(&["no billing_account_id for account one"]);
    assert_eq!(sim.stats().served, 0, "no call");

    std::fs::write(
        &prices,
        format!("billing_account_id = \"100000000001\"\n{list}"),
    )
    .unwrap();
    run(accounts_cmd(&sim, &dest, &file), &args).assert_code(0);
    // The billing accounts of an app's cost rows.
    let billing = |app: u64| {
        read_table(&dest, "cost", app, days[0])
            .iter()
            .flat_map(|b| {
                b.column_by_name("BillingAccountId")
                    .unwrap()
                    .as_string::<i32>()
                    .iter()
                    .map(|v| v.unwrap().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect::<std::collections::BTreeSet<String>>()
    };
    for (app, want) in [(APP_A, "100000000001"), (APP_B, "200000000002")] {
        assert_eq!(
            billing(app).into_iter().collect::<Vec<_>>(),
            [want],
            "app {app}"
        );
    }

    // Issue 31, point 4: a rebuild of cost with a price list and no
    // --accounts keeps each partition's billing account (the one its
    // manifest records), never silently the price list's.
    std::fs::write(
        &prices,
        format!(
            "billing_account_id = \"100000000001\"\n{}",
            list.replace("list = 1", "list = 2")
        ),
    )
    .unwrap();
    let r = run_sub(
        lake_cmd(&dest),
        "rebuild",
        &[
            "--tables",
            "cost",
            "--prices",
            &prices.display().to_string(),
        ],
    );
    r.assert_code(0);
    r.assert_stdout_has(&["2 written"]);
    assert_eq!(
        billing(APP_B).into_iter().collect::<Vec<_>>(),
        ["200000000002"]
    );
    assert_eq!(
        billing(APP_A).into_iter().collect::<Vec<_>>(),
        ["100000000001"]
    );
    let m = read_table_manifest(&dest, "cost", APP_B, days[0]);
    assert_eq!(
        m.derived.unwrap().settings["billing_account_id"],
        "200000000002"
    );
}

/// A live lease of `app` held by another run, written as that run would.
fn hold(dest: &TestDest, app: u64) {
    let now = chrono::Utc::now();
    let record = serde_json::json!({
        "app_id": app,
        "holder": {"host": "elsewhere", "pid": 1, "run_id": "another-run"},
        "command": "export",
        "taken_at": now,
        "renewed_at": now,
        "expires_at": now + chrono::Duration::hours(1),
        "ttl_secs": 3600,
        "tool_version": "0.7.1",
    });
    put_object(
        dest,
        &format!("_trtc_usage/leases/app_id={app}.json"),
        serde_json::to_vec(&record).unwrap(),
    );
}

/// Issue 31, point 7: an app held by another run (an `--app-id` backfill)
/// stops its own account only; the other accounts of the run export their
/// apps; the run exits 2 naming the held app.
fn a_held_app_stops_its_account_only(dest: TestDest) {
    let sim = sim_for_accounts(Duration::from_millis(INTERVAL_MS));
    let file = accounts_file(&sim, &[("cn", &[APP_A]), ("intl", &[APP_B])]);
    let days = days(1);
    // The lake exists (another run is writing it).
    run(cmd(&sim, &dest), &date_args(&[APP_C], days[0])).assert_code(0);
    hold(&dest, APP_A);
    let r = run(accounts_cmd(&sim, &dest, &file), &day_args(&days));
    r.assert_code(2);
    r.assert_stderr_has(&[
        &format!("app {APP_A} of "),
        "is being written by another run",
    ]);
    let names = object_names(&dest);
    assert!(
        names.contains(&format!(
            "room_usage/app_id={APP_B}/usage_date={}/_manifest.json",
            days[0]
        )),
        "the free account ran: {names:?}"
    );
    assert!(
        !names
            .iter()
            .any(|n| n.contains(&format!("app_id={APP_A}/"))),
        "the held app is untouched: {names:?}"
    );
    assert!(
        names.contains(&format!("_trtc_usage/leases/app_id={APP_A}.json")),
        "the other run's lease stays"
    );
    assert!(
        !names.contains(&format!("_trtc_usage/leases/app_id={APP_B}.json")),
        "ours is released"
    );
}

/// Issue 31, point 10: under `--log-format json`, each line of an
/// account's work names the account (`"span": {"account": …}`).
#[test]
fn json_lines_of_several_accounts_name_their_account() {
    let sim = sim_for_accounts(Duration::from_millis(INTERVAL_MS));
    let dest = TestDest::local();
    let file = accounts_file(&sim, &[("cn", &[APP_A]), ("intl", &[APP_B])]);
    let mut c = accounts_cmd(&sim, &dest, &file);
    c.env("TRTC_LOG_FORMAT", "json");
    let r = run(c, &day_args(&days(1)));
    r.assert_code(0);
    let mut wrote = 0;
    for line in r.stderr.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect(line);
        if v["message"] == "Wrote partition." {
            wrote += 1;
            let want = if v["app_id"] == APP_A { "cn" } else { "intl" };
            assert_eq!(v["span"]["account"], want, "{line}");
        }
    }
    assert!(wrote >= 6, "{}", r.stderr);
}
