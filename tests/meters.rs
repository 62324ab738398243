//! The other TRTC meters (`recording_usage`, `transcoding_usage`,
//! `relay_usage`): each end to end on local disk and on S3 (its calls, raw
//! objects, rows, rebuild to the byte, status, the dry run's counts), its
//! own pace, a missing permission, an unknown key and a bad bucket.

use std::time::Duration;

use trtc_usage::simulator::{Api, AppFault, Fault, FaultRule};

use crate::util::*;

on_every_destination!(
    every_meter_end_to_end_and_rebuilt_to_the_byte,
    a_missing_permission_fails_that_table_only_with_one_call,
    an_unknown_key_is_a_row_and_a_bad_bucket_fails_its_partition,
);

/// Each meter: its table, its action, its calls a partition, the keys (in
/// the simulator's spelling) of one call's answer.
const METERS: [(&str, &str, u32); 3] = [
    ("recording_usage", "DescribeRecordingUsage", 2),
    ("transcoding_usage", "DescribeMixTranscodingUsage", 1),
    ("relay_usage", "DescribeRelayUsage", 1),
];

fn with(args: &[String], more: &[&str]) -> Vec<String> {
    let mut a = args.to_vec();
    a.extend(more.iter().map(|s| (*s).to_owned()));
    a
}

/// The string column `name` of `batches`, every row.
fn strings(batches: &[arrow_array::RecordBatch], name: &str) -> Vec<String> {
    use arrow_array::{Array, StringArray};
    batches
        .iter()
        .flat_map(|b| {
            let c = b
                .column_by_name(name)
                .unwrap_or_else(|| panic!("no {name}"));
            let c = c.as_any().downcast_ref::<StringArray>().unwrap();
            (0..c.len())
                .map(|i| c.value(i).to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn rows(batches: &[arrow_array::RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

fn every_meter_end_to_end_and_rebuilt_to_the_byte(dest: TestDest) {
    let sim = start_sim(sim_config());
    let days: Vec<_> = days_ago(12).iter_days().take(2).collect();
    let args = with(
        &range_args(&[APP_A], days[0], days[1]),
        &["--tables", "all"],
    );

    // The dry run counts each API's calls (a local lake is read for final
    // partitions; an S3 one is not, and counts the same on a fresh lake).
    let r = run(
        cmd(&sim, &dest),
        &with(&args, &["--dry-run", "--log-format", "json"]),
    );
    r.assert_code(0);
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(v["plan"]["room_calls"], 2);
    assert_eq!(v["plan"]["app_calls"], 2);
    assert_eq!(v["plan"]["recording_calls"], 4, "two calls a partition");
    assert_eq!(v["plan"]["transcoding_calls"], 2);
    assert_eq!(v["plan"]["relay_calls"], 2);
    assert_eq!(sim.stats().total_requests(), 0, "a dry run calls nothing");

    let r = run(cmd(&sim, &dest), &args);
    r.assert_code(0);
    r.assert_stdout_has(&["12 written"]);
    let stats = sim.stats();
    for (table, action, calls) in METERS {
        let m = stats.meter(action);
        assert_eq!(m.requests, 2 * calls as u64, "{action}");
        assert_eq!(m.throttled, 0, "{action}: each API within its limit");
        for &day in &days {
            let batches = read_table(&dest, table, APP_A, day);
            let manifest = read_table_manifest(&dest, table, APP_A, day);
            assert_eq!(manifest.rows as usize, rows(&batches), "{table}");
            // One row per bucket and key: 288 buckets a day.
            assert_eq!(rows(&batches) % 288, 0, "{table}");
            let keys = strings(&batches, "usage_key");
            assert!(keys.iter().all(|k| !k.is_empty()), "{table}");
            // Every call's answer kept; a recording one names its MixType.
            let raw: Vec<String> = object_names_under(
                &dest,
                &format!("_raw/{table}/app_id={APP_A}/usage_date={day}/"),
            );
            assert_eq!(raw.len(), calls as usize, "{table}: {raw:?}");
            if calls == 2 {
                assert!(raw.iter().any(|n| n.contains("Z_single_")), "{raw:?}");
                assert!(raw.iter().any(|n| n.contains("Z_multi_")), "{raw:?}");
                assert_eq!(manifest.calls.len(), 2);
                assert_eq!(manifest.calls[0].label, "single");
                assert_eq!(manifest.calls[1].label, "multi");
                let mix = strings(&batches, "mix_type");
                assert!(mix.contains(&"single".to_owned()) && mix.contains(&"multi".to_owned()));
                // Each row carries its own call's RequestId.
                let ids = strings(&batches, "request_id");
                assert!(ids.contains(&manifest.calls[1].request_id));
                assert!(ids.contains(&manifest.request_id));
            } else {
                assert!(manifest.calls.is_empty());
                assert!(batches[0].column_by_name("mix_type").is_none());
            }
        }
    }

    // A rerun makes no call: every partition is final.
    let before = sim.stats().total_requests();
    run(cmd(&sim, &dest), &args).assert_code(0);
    assert_eq!(sim.stats().total_requests(), before);

    // rebuild from the raw zone: the same files to the byte, no call.
    let files = objects(&dest);
    let r = run_sub(
        lake_cmd(&dest),
        "rebuild",
        &with(
            &range_args(&[APP_A], days[0], days[1]),
            &["--tables", "all"],
        ),
    );
    r.assert_code(0);
    let after = objects(&dest);
    for (table, _, _) in METERS {
        for &day in &days {
            let part = format!("{table}/app_id={APP_A}/usage_date={day}/part-00000.parquet");
            assert_eq!(after[&part], files[&part], "{part} rebuilt to the byte");
        }
    }
    assert_eq!(sim.stats().total_requests(), before);

    // status: each meter's days final, its raw answers counted.
    let r = run_sub(
        lake_cmd(&dest),
        "status",
        &with(
            &range_args(&[APP_A], days[0], days[1]),
            &["--tables", "all"],
        ),
    );
    r.assert_code(0);
    for (table, _, calls) in METERS {
        let at = r
            .stdout
            .find(&format!("{table} {}..{}", days[0], days[1]))
            .unwrap_or_else(|| panic!("no {table} in {}", r.stdout));
        let line = r.stdout[at..]
            .lines()
            .find(|l| l.trim_start().starts_with(&APP_A.to_string()))
            .unwrap();
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells[1], "2", "{table} final: {line}");
        assert_eq!(cells[6], (2 * calls).to_string(), "{table} raw: {line}");
    }
}

fn object_names_under(dest: &TestDest, prefix: &str) -> Vec<String> {
    objects(dest)
        .into_keys()
        .filter(|k| k.starts_with(prefix))
        .collect()
}

fn a_missing_permission_fails_that_table_only_with_one_call(dest: TestDest) {
    let sim = start_sim(sim_config());
    sim.inject(
        FaultRule::always(
            None,
            None,
            Fault::ApiError("AuthFailure.UnauthorizedOperation".into()),
        )
        .on(Api::Meter("DescribeRelayUsage")),
    );
    let days: Vec<_> = days_ago(14).iter_days().take(2).collect();
    let args = with(
        &range_args(&[APP_A], days[0], days[1]),
        &[
            "--tables",
            "room_usage,app_usage,checks,transcoding_usage,relay_usage",
        ],
    );
    let r = run(cmd(&sim, &dest), &args);
    r.assert_code(1);
    r.assert_stderr_has(&["grant trtc:DescribeRelayUsage to fill relay_usage"]);
    let naming = r
        .stderr
        .lines()
        .filter(|l| l.contains("trtc:DescribeRelayUsage"))
        .count();
    assert_eq!(naming, 1, "one line names the action: {}", r.stderr);
    assert_eq!(
        sim.stats().meter("DescribeRelayUsage").requests,
        1,
        "no further call of the action"
    );
    let names = object_names(&dest);
    assert!(
        !names.iter().any(|n| n.starts_with("relay_usage/")),
        "{names:?}"
    );
    // The other tables go on.
    for table in ["room_usage", "app_usage", "checks", "transcoding_usage"] {
        for &day in &days {
            let part = format!("{table}/app_id={APP_A}/usage_date={day}/_manifest.json");
            assert!(names.contains(&part), "{part}");
        }
    }
    r.assert_stdout_has(&["8 written", "2 failed"]);
}

fn an_unknown_key_is_a_row_and_a_bad_bucket_fails_its_partition(dest: TestDest) {
    let sim = start_sim(sim_config());
    let days: Vec<_> = days_ago(16).iter_days().take(2).collect();
    // An eighth key Tencent never named: just another row.
    sim.inject(
        FaultRule::always(Some(APP_A), Some(days[0]), Fault::App(AppFault::ExtraKey))
            .on(Api::Meter("DescribeMixTranscodingUsage")),
    );
    // A bucket of the next day: the partition fails, naming it.
    sim.inject(
        FaultRule::always(Some(APP_A), Some(days[1]), Fault::App(AppFault::OutsideDay))
            .on(Api::Meter("DescribeRelayUsage")),
    );
    // A negative value in the second call of a recording partition.
    sim.inject(
        FaultRule::next(1, Fault::App(AppFault::Negative)).on(Api::Meter("DescribeRecordingUsage")),
    );
    let args = with(
        &range_args(&[APP_A], days[0], days[1]),
        &["--tables", "recording_usage,transcoding_usage,relay_usage"],
    );
    let r = run(cmd(&sim, &dest), &args);
    r.assert_code(1);
    let keys = strings(
        &read_table(&dest, "transcoding_usage", APP_A, days[0]),
        "usage_key",
    );
    assert_eq!(keys.iter().filter(|k| *k == "8K").count(), 288);
    r.assert_stderr_has(&[
        "table=relay_usage",
        &format!("usage_date={}", days[1]),
        "bucket (next day)",
        "is outside",
    ]);
    r.assert_stderr_has(&[
        "table=recording_usage",
        "MixType single: bucket",
        "is not a non-negative finite number",
    ]);
    let names = object_names(&dest);
    for (table, day, kept) in [
        ("relay_usage", days[0], true),
        ("relay_usage", days[1], false),
        ("transcoding_usage", days[1], true),
        ("recording_usage", days[0], false),
        ("recording_usage", days[1], true),
    ] {
        let part = format!("{table}/app_id={APP_A}/usage_date={day}/_manifest.json");
        assert_eq!(names.contains(&part), kept, "{part}");
    }
    // The failed partitions' answers are kept all the same.
    assert!(names.contains(&format!(
        "_raw/relay_usage/app_id={APP_A}/usage_date={}/*",
        days[1]
    )));
}

/// Each API its own pacer: the recording calls of a partition are an
/// interval apart, and the other meters' calls are made meanwhile, never
/// waiting on them; no API is ever called faster than its limit.
#[test]
fn each_meter_keeps_its_own_pace() {
    let interval = Duration::from_millis(400);
    let sim = start_sim(trtc_usage::simulator::SimConfig {
        app_interval: interval,
        ..sim_config()
    });
    let dest = TestDest::local();
    let days: Vec<_> = days_ago(18).iter_days().take(2).collect();
    let args = with(
        &range_args(&[APP_A], days[0], days[1]),
        &["--tables", "all", "--app-min-interval", "400ms"],
    );
    run(cmd(&sim, &dest), &args).assert_code(0);
    let stats = sim.stats();
    let recording = stats.meter("DescribeRecordingUsage").admitted_at;
    assert_eq!(recording.len(), 4);
    for (_, action, _) in METERS {
        assert_eq!(stats.meter(action).throttled, 0, "{action}");
    }
    assert_eq!(stats.app.throttled, 0);
    // The relay call of the first day went while the recording pacer held
    // the second recording call back.
    let relay = stats.meter("DescribeRelayUsage").admitted_at;
    assert!(relay[0] < recording[1], "relay waited on recording's pacer");
    assert!(recording[1].duration_since(recording[0]) >= interval);
}
