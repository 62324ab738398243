//! The FOCUS `cost` table (`--prices`): validated by the FinOps
//! Foundation's own validator, added up with DuckDB against `room_usage`
//! (not with the code under test), recomputed with no call when the prices
//! or the rooms change, refused before any call when the price list is bad.

use std::path::{Path, PathBuf};

use crate::util::*;

/// A price list with a price change on `change` (video_hd: 8 → 7 per
/// 1,000 minutes), in a file of its own.
fn price_file(name: &str, audio_list: f64, change: chrono::NaiveDate) -> PathBuf {
    let path = tmp_path(name);
    std::fs::write(
        &path,
        format!(
            r#"currency = "USD"
billing_account_id = "100012345678"
billing_account_name = "Test Ltd"
[[price]]
series = "audio"
list = {audio_list}
contracted = 0.5
[[price]]
series = "video_sd"
list = 4
[[price]]
series = "video_hd"
list = 8
[[price]]
series = "video_hd"
list = 7
from = "{change}"
[[price]]
series = "video_full_hd"
list = 18
[[price]]
series = "video_2k"
list = 36
[[price]]
series = "video_4k"
list = 72
"#
        ),
    )
    .unwrap();
    path
}

/// Runs `script` with `python`, its arguments `args`; its stdout.
fn python(python: &str, script: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn lake_path(dest: &TestDest) -> String {
    match dest {
        TestDest::Local(dir) => dir.path().display().to_string(),
        TestDest::S3 { .. } => panic!("DuckDB reads the local lake"),
    }
}

/// Per (app, day, series): the rooms' minutes (from `room_usage`, by
/// DuckDB), the cost rows' sums, and the list price the rows carry; the
/// list and contracted costs must be minutes × the prices.
const ADDS_UP: &str = r#"
import duckdb, json, sys
lake = sys.argv[1]
con = duckdb.connect()
rows = con.execute(f"""
WITH rooms AS (
  UNPIVOT (SELECT app_id, usage_date, room_id, audio_seconds, video_sd_seconds, video_hd_seconds,
                  video_full_hd_seconds, video_2k_seconds, video_4k_seconds
           FROM read_parquet('{lake}/room_usage/**/*.parquet', hive_partitioning = true))
  ON COLUMNS(* EXCLUDE (app_id, usage_date, room_id)) INTO NAME col VALUE seconds
), room_minutes AS (
  SELECT app_id, usage_date, replace(col, '_seconds', '') AS series,
         sum(seconds) / 60.0 AS minutes, count(*) FILTER (WHERE seconds > 0) AS rooms
  FROM rooms GROUP BY ALL
), cost AS (
  SELECT app_id, usage_date, x_series AS series, sum(ListCost) AS list_cost,
         sum(ContractedCost) AS contracted_cost, sum(BilledCost) AS billed,
         sum(EffectiveCost) AS effective, min(ListUnitPrice) AS lp, max(ListUnitPrice) AS lp2,
         min(ContractedUnitPrice) AS cp, count(*) AS n, sum(ConsumedQuantity) AS q
  FROM read_parquet('{lake}/cost/**/*.parquet', hive_partitioning = true) GROUP BY ALL
)
SELECT r.app_id, CAST(r.usage_date AS VARCHAR), r.series, r.minutes, r.rooms,
       c.list_cost, c.contracted_cost, c.billed, c.effective, c.lp, c.lp2, c.cp, c.n, c.q
FROM room_minutes r LEFT JOIN cost c USING (app_id, usage_date, series)
ORDER BY ALL
""").fetchall()
print(json.dumps(rows))
"#;

/// Every column, its DuckDB type, its nulls, its rows and its values
/// outside printable ASCII.
const COLUMNS: &str = r#"
import duckdb, json, sys
lake = sys.argv[1]
con = duckdb.connect()
q = f"FROM read_parquet('{lake}/cost/**/*.parquet', hive_partitioning = true)"
types = con.execute(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * {q})").fetchall()
out = {}
for c, t in types:
    n = con.execute(f"""SELECT count(*) FILTER (WHERE "{c}" IS NULL), count(*),
        count(*) FILTER (WHERE NOT regexp_full_match(CAST("{c}" AS VARCHAR), '[ -~]*')) {q}""").fetchone()
    out[c] = [t, n[0], n[1], n[2]]
print(json.dumps(out))
"#;

/// The 57 columns of FOCUS 1.2 (its Cost and Usage dataset), as the
/// specification names and types them (D: Decimal, T: Date/Time, S:
/// String; Tags, SkuPriceDetails: JSON as a string), and whether a row of
/// ours may leave it null. Written out here from the specification, not
/// read from the code under test.
const FOCUS_1_2: [(&str, char, bool); 57] = [
    ("AvailabilityZone", 'S', true),
    ("BilledCost", 'D', false),
    ("BillingAccountId", 'S', false),
    ("BillingAccountName", 'S', false),
    ("BillingAccountType", 'S', false),
    ("BillingCurrency", 'S', false),
    ("BillingPeriodEnd", 'T', false),
    ("BillingPeriodStart", 'T', false),
    ("CapacityReservationId", 'S', true),
    ("CapacityReservationStatus", 'S', true),
    ("ChargeCategory", 'S', false),
    ("ChargeClass", 'S', true),
    ("ChargeDescription", 'S', false),
    ("ChargeFrequency", 'S', false),
    ("ChargePeriodEnd", 'T', false),
    ("ChargePeriodStart", 'T', false),
    ("CommitmentDiscountCategory", 'S', true),
    ("CommitmentDiscountId", 'S', true),
    ("CommitmentDiscountName", 'S', true),
    ("CommitmentDiscountQuantity", 'D', true),
    ("CommitmentDiscountStatus", 'S', true),
    ("CommitmentDiscountType", 'S', true),
    ("CommitmentDiscountUnit", 'S', true),
    ("ConsumedQuantity", 'D', false),
    ("ConsumedUnit", 'S', false),
    ("ContractedCost", 'D', false),
    ("ContractedUnitPrice", 'D', false),
    ("EffectiveCost", 'D', false),
    ("InvoiceId", 'S', true),
    ("InvoiceIssuerName", 'S', false),
    ("ListCost", 'D', false),
    ("ListUnitPrice", 'D', false),
    ("PricingCategory", 'S', false),
    ("PricingCurrency", 'S', false),
    ("PricingCurrencyContractedUnitPrice", 'D', false),
    ("PricingCurrencyEffectiveCost", 'D', false),
    ("PricingCurrencyListUnitPrice", 'D', false),
    ("PricingQuantity", 'D', false),
    ("PricingUnit", 'S', false),
    ("ProviderName", 'S', false),
    ("PublisherName", 'S', false),
    ("RegionId", 'S', true),
    ("RegionName", 'S', true),
    ("ResourceId", 'S', false),
    ("ResourceName", 'S', false),
    ("ResourceType", 'S', false),
    ("ServiceCategory", 'S', false),
    ("ServiceName", 'S', false),
    ("ServiceSubcategory", 'S', false),
    ("SkuId", 'S', false),
    ("SkuMeter", 'S', false),
    ("SkuPriceDetails", 'S', false),
    ("SkuPriceId", 'S', false),
    ("SubAccountId", 'S', false),
    ("SubAccountName", 'S', false),
    ("SubAccountType", 'S', false),
    ("Tags", 'S', false),
];

/// The columns an estimate tied to no invoice, commitment or reservation
/// leaves null in every row.
const ALWAYS_NULL: [&str; 12] = [
    "AvailabilityZone",
    "CapacityReservationId",
    "CapacityReservationStatus",
    "ChargeClass",
    "CommitmentDiscountCategory",
    "CommitmentDiscountId",
    "CommitmentDiscountName",
    "CommitmentDiscountQuantity",
    "CommitmentDiscountStatus",
    "CommitmentDiscountType",
    "CommitmentDiscountUnit",
    "InvoiceId",
];

/// The applicability criteria that fit an estimate from a price list
/// (`docs/cost.md`).
const CRITERIA: &str = "PUBLIC_PRICE_LIST_SUPPORTED,UNIT_PRICING_SUPPORTED,USAGE_MEASUREMENT_SUPPORTED,\
BILLING_BASED_ON_PROVISIONED_RESOURCES_SUPPORTED,RESOURCE_TYPE_ASSIGNMENT_SUPPORTED,REGION_SUPPORTED,\
SUB_ACCOUNT_SUPPORTED,TAGGING_SUPPORTED,NEGOTIATED_PRICING_SUPPORTED,MULTIPLE_PRICING_CATEGORIES_SUPPORTED";

/// The rules `focus-validator` 2.2.1 fails on any estimate, because its
/// own FOCUS 1.2 model has them wrong (`docs/cost.md` says how).
const TOLERATED: [&str; 4] = [
    "InvoiceId-C-005-C",
    "CommitmentDiscountStatus-C-004-C",
    "CommitmentDiscountStatus-C-002-C",
    "CommitmentDiscountStatus-C-000-C",
];

/// What the validator said: (total, passed, failed, skipped) and the ids
/// of the failed rules.
struct Verdict {
    counts: [u64; 4],
    failed: Vec<String>,
    text: String,
}

/// Runs the FinOps Foundation's `focus-validator` on `file` against FOCUS
/// 1.2, with its own rule model (no download), from its own site-packages
/// directory (it reads its currency list from a relative path).
fn focus_validate(python: &str, file: &Path) -> Verdict {
    let site = String::from_utf8(
        std::process::Command::new(python)
            .args([
                "-c",
                "import focus_validator, os; print(os.path.dirname(os.path.dirname(focus_validator.__file__)))",
            ])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let out = std::process::Command::new(python)
        .args(["-m", "focus_validator.main", "--validate-version", "1.2"])
        .arg("--block-download")
        .args(["--applicability-criteria", CRITERIA])
        .arg("--data-file")
        .arg(file)
        .current_dir(site.trim())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "focus-validator: {text}");
    // "Total: 578 | Pass: 271 | Fail: 1 | Skipped: 306"
    let totals = text
        .lines()
        .find(|l| l.starts_with("Total: "))
        .unwrap_or_else(|| panic!("no totals in:\n{text}"));
    let counts: Vec<u64> = totals
        .split('|')
        .map(|part| {
            part.rsplit(' ')
                .find(|w| !w.is_empty())
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    let failed = text
        .lines()
        .filter_map(|l| l.strip_prefix("\u{274c} "))
        .filter_map(|l| l.split_once(": FAIL"))
        .map(|(rule, _)| rule.to_owned())
        .collect();
    Verdict {
        counts: counts.try_into().expect("four counts"),
        failed,
        text,
    }
}

#[test]
fn the_cost_table_passes_the_focus_validator_and_adds_up_to_the_rooms() {
    let sim = start_sim(sim_config());
    let dest = TestDest::local();
    let days: Vec<_> = days_ago(12).iter_days().take(2).collect();
    // The video_hd price changes on the second day.
    let prices = price_file("prices-validator.toml", 1.0, days[1]);
    let mut args = range_args(&[APP_A, APP_B], days[0], days[1]);
    args.extend(["--prices".into(), prices.display().to_string()]);
    let r = run(cmd(&sim, &dest), &args);
    r.assert_code(0);
    let lake = lake_path(&dest);
    for &app in &[APP_A, APP_B] {
        for &day in &days {
            let m = read_table_manifest(&dest, "cost", app, day);
            let d = m
                .derived
                .expect("a cost manifest says what it was computed from");
            assert_eq!(
                d.inputs["room_usage"],
                read_manifest(&dest, app, day).request_id
            );
            assert_eq!(
                d.settings["prices_sha256"],
                sha256_hex(&std::fs::read(&prices).unwrap())
            );
            assert_eq!(d.settings["focus_version"], "1.2");
            assert!(m.raw_object.is_none(), "no raw answer of its own");
        }
    }
    assert!(
        !object_names(&dest)
            .iter()
            .any(|n| n.starts_with("_raw/cost")),
        "cost has no raw zone"
    );

    let Some(py) = provided_python("TRTC_TEST_PYTHON", "DuckDB") else {
        return;
    };
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&python(&py, ADDS_UP, &[&lake])).unwrap();
    assert_eq!(rows.len(), 2 * 2 * 6, "every (app, day, series)");
    let list = |series: &str, day: &str| -> (f64, f64) {
        match series {
            "audio" => (1.0, 0.5),
            "video_sd" => (4.0, 4.0),
            "video_hd" if day >= days[1].to_string().as_str() => (7.0, 7.0),
            "video_hd" => (8.0, 8.0),
            "video_full_hd" => (18.0, 18.0),
            "video_2k" => (36.0, 36.0),
            "video_4k" => (72.0, 72.0),
            other => panic!("{other}"),
        }
    };
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
    let mut priced = 0;
    for row in &rows {
        let r = row.as_array().unwrap();
        let (day, series) = (r[1].as_str().unwrap(), r[2].as_str().unwrap());
        let (minutes, rooms) = (r[3].as_f64().unwrap(), r[4].as_u64().unwrap());
        if rooms == 0 {
            assert!(r[5].is_null(), "no usage, no row: {r:?}");
            continue;
        }
        priced += 1;
        let (lp, cp) = (list(series, day).0 / 1000.0, list(series, day).1 / 1000.0);
        let f = |i: usize| r[i].as_f64().unwrap();
        assert!(close(f(5), minutes * lp), "ListCost {r:?}");
        assert!(close(f(6), minutes * cp), "ContractedCost {r:?}");
        assert!(
            close(f(7), f(6)) && close(f(8), f(6)),
            "Billed = Effective = Contracted {r:?}"
        );
        assert!(
            close(f(9), lp) && close(f(10), lp),
            "one ListUnitPrice {r:?}"
        );
        assert!(close(f(11), cp), "ContractedUnitPrice {r:?}");
        assert_eq!(
            r[12].as_u64().unwrap(),
            rooms,
            "a row per room with usage {r:?}"
        );
        assert!(close(f(13), minutes), "ConsumedQuantity {r:?}");
    }
    assert!(
        priced >= 8,
        "the simulator's rooms use most series: {rows:?}"
    );

    // Every FOCUS 1.2 column, as the specification types it; ours after.
    let columns: serde_json::Value = serde_json::from_str(&python(&py, COLUMNS, &[&lake])).unwrap();
    let columns = columns.as_object().unwrap();
    for (name, kind, nullable) in FOCUS_1_2 {
        let c = columns
            .get(name)
            .unwrap_or_else(|| panic!("FOCUS 1.2 column {name} is missing"));
        let want = match kind {
            'D' => "DOUBLE",
            'T' => "TIMESTAMP WITH TIME ZONE",
            _ => "VARCHAR",
        };
        assert_eq!(c[0], want, "{name}");
        let (nulls, rows) = (c[1].as_u64().unwrap(), c[2].as_u64().unwrap());
        assert!(rows > 0);
        if ALWAYS_NULL.contains(&name) {
            assert_eq!(nulls, rows, "{name} is null in every row");
        } else if !nullable {
            assert_eq!(nulls, 0, "{name} has nulls");
        }
        if kind == 'S' {
            assert_eq!(c[3], 0, "{name} holds more than printable ASCII");
        }
    }
    let ours: Vec<&String> = columns
        .keys()
        .filter(|k| !FOCUS_1_2.iter().any(|(n, _, _)| n == k))
        .collect();
    assert!(
        ours.iter()
            .all(|k| k.starts_with("x_") || ["app_id", "usage_date"].contains(&k.as_str())),
        "a column neither FOCUS's nor x_-prefixed: {ours:?}"
    );

    // One file of each price period.
    validate_cost_files(&lake, &days, "rooms");
}

/// Runs the FinOps Foundation's validator on `APP_A`'s cost file of each
/// of `days` (of `kind`, for the log): no rule fails but the tolerated
/// ones; its counts are printed (`--nocapture`).
fn validate_cost_files(lake: &str, days: &[chrono::NaiveDate], kind: &str) {
    let Some(focus) = provided_python("TRTC_TEST_FOCUS_PYTHON", "FOCUS validator") else {
        return;
    };
    for day in days {
        let file = PathBuf::from(lake).join(format!(
            "cost/app_id={APP_A}/usage_date={day}/part-00000.parquet"
        ));
        let v = focus_validate(&focus, &file);
        let [total, passed, failed, skipped] = v.counts;
        assert_eq!(total, passed + failed + skipped, "{}", v.text);
        assert!(passed > 200, "{}", v.text);
        assert_eq!(failed as usize, v.failed.len(), "{}", v.text);
        for rule in &v.failed {
            assert!(
                TOLERATED.contains(&rule.as_str()),
                "{rule} failed:\n{}",
                v.text
            );
        }
        eprintln!(
            "focus-validator 1.2 on {kind}, {day}: {total} rules, {passed} passed, {failed} failed ({}), {skipped} skipped",
            v.failed.join(", ")
        );
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// `x_series` → the sum of `ListCost` in one cost partition.
fn list_costs(dest: &TestDest, app: u64, day: chrono::NaiveDate) -> (usize, f64) {
    use arrow_array::cast::AsArray;
    let batches = read_table(dest, "cost", app, day);
    let rows = batches.iter().map(|b| b.num_rows()).sum();
    let sum = batches
        .iter()
        .flat_map(|b| {
            b.column_by_name("ListCost")
                .unwrap()
                .as_primitive::<arrow_array::types::Float64Type>()
                .values()
                .to_vec()
        })
        .sum();
    (rows, sum)
}

/// A changed price list recomputes every cost partition it covers with no
/// API call; the same list again rewrites nothing; a re-fetched room
/// partition recomputes its day's cost.
fn recomputes_with_no_call(dest: TestDest) {
    let sim = start_sim(sim_config());
    let day = days_ago(9);
    let a = price_file(&format!("prices-a-{}.toml", uuid::Uuid::new_v4()), 1.0, day);
    let b = price_file(&format!("prices-b-{}.toml", uuid::Uuid::new_v4()), 3.0, day);
    let with = |p: &Path| {
        let mut args = date_args(&[APP_A], day);
        args.extend(["--prices".into(), p.display().to_string()]);
        args
    };
    run(cmd(&sim, &dest), &with(&a)).assert_code(0);
    let served = sim.stats().served;
    let (rows_a, cost_a) = list_costs(&dest, APP_A, day);
    let first = read_table_manifest(&dest, "cost", APP_A, day);
    assert!(rows_a > 0);

    let r = run(cmd(&sim, &dest), &with(&b));
    r.assert_code(0);
    assert_eq!(sim.stats().served, served, "no call: the rooms are final");
    let (rows_b, cost_b) = list_costs(&dest, APP_A, day);
    let second = read_table_manifest(&dest, "cost", APP_A, day);
    assert_eq!(rows_a, rows_b);
    assert!(
        cost_b > cost_a,
        "audio at 3 instead of 1: {cost_a} → {cost_b}"
    );
    assert_ne!(
        first.derived.as_ref().unwrap().fingerprint,
        second.derived.as_ref().unwrap().fingerprint
    );

    // The same list again: current, left as it is.
    run(cmd(&sim, &dest), &with(&b)).assert_code(0);
    let third = read_table_manifest(&dest, "cost", APP_A, day);
    assert_eq!(third.fetched_at, second.fetched_at, "not recomputed");
    assert_eq!(sim.stats().served, served);

    // The rooms fetched again (--force): the day's cost follows them.
    let mut force = with(&b);
    force.push("--force".into());
    run(cmd(&sim, &dest), &force).assert_code(0);
    let room = read_manifest(&dest, APP_A, day);
    let fourth = read_table_manifest(&dest, "cost", APP_A, day);
    assert_eq!(
        fourth.derived.unwrap().inputs["room_usage"],
        room.request_id
    );
    assert_ne!(room.request_id, first.derived.unwrap().inputs["room_usage"]);
}

#[test]
fn a_changed_price_list_recomputes_cost_with_no_call() {
    recomputes_with_no_call(TestDest::local());
}

#[test]
fn a_changed_price_list_recomputes_cost_with_no_call_on_s3() {
    let Some(dest) = TestDest::s3() else { return };
    recomputes_with_no_call(dest);
}

/// A cost file bigger than an 8 MiB part, on S3: it goes up in parts
/// while it is encoded, and lands whole: its manifest's size and SHA-256
/// are the object's, and its rows are the manifest's.
#[test]
fn a_cost_file_bigger_than_a_part_streams_to_s3_whole() {
    let Some(dest) = TestDest::s3() else { return };
    // About 12 MB of cost file (some 35 bytes a row, 2.2 rows a room).
    const ROOMS: u64 = 150_000;
    let sim = start_sim(trtc_usage::simulator::SimConfig {
        rooms: ROOMS,
        exact_rooms: true,
        ..sim_config()
    });
    let day = days_ago(9);
    let prices = price_file("prices-big.toml", 1.0, day);
    let mut args = date_args(&[APP_A], day);
    args.extend(["--prices".into(), prices.display().to_string()]);
    let mut c = cmd(&sim, &dest);
    c.env("RUST_LOG", "trtc_usage=debug");
    let r = run(c, &args);
    r.assert_code(0);
    let streamed = r.stderr.lines().any(|l| {
        l.contains("Uploading in parts while the file is written.") && l.contains("cost/")
    });
    assert!(
        streamed,
        "the cost file went up while encoded:\n{}",
        r.stderr
    );
    let m = read_table_manifest(&dest, "cost", APP_A, day);
    assert!(m.file.size > 8 * 1024 * 1024, "{} bytes", m.file.size);
    let file = &objects(&dest)[&format!("cost/app_id={APP_A}/usage_date={day}/part-00000.parquet")];
    assert_eq!(m.file.size, file.len() as u64);
    assert_eq!(m.file.sha256, sha256_hex(file));
    let (rows, _) = list_costs(&dest, APP_A, day);
    assert_eq!(rows as u64, m.rows);
    assert!(rows as u64 > ROOMS, "{rows} rows for {ROOMS} rooms");
}

#[test]
fn a_bad_price_list_exits_2_before_any_call() {
    let sim = start_sim(sim_config());
    let dest = TestDest::local();
    let day = days_ago(9);
    let bad = tmp_path("prices-bad.toml");
    std::fs::write(
        &bad,
        "currency = \"usd\"\n[[price]]\nseries = \"video_8k\"\nlist = -1\n[[price]]\nseries = \"audio\"\nlist = inf\n",
    )
    .unwrap();
    let mut args = date_args(&[APP_A], day);
    args.extend(["--prices".into(), bad.display().to_string()]);
    let r = run(cmd(&sim, &dest), &args);
    r.assert_code(2);
    r.assert_stderr_has(&[
        "currency \"usd\" is not an ISO 4217 code",
        "unknown series \"video_8k\"",
        "#2 (audio): list = inf is not a finite number",
    ]);
    // No billing account anywhere.
    let nobody = tmp_path("prices-nobody.toml");
    std::fs::write(
        &nobody,
        "currency = \"USD\"\n[[price]]\nseries = \"audio\"\nlist = 1\n",
    )
    .unwrap();
    let mut args = date_args(&[APP_A], day);
    args.extend(["--prices".into(), nobody.display().to_string()]);
    let r = run(cmd(&sim, &dest), &args);
    r.assert_code(2);
    r.assert_stderr_has(&["no billing_account_id for the account"]);
    // cost without prices.
    let mut args = date_args(&[APP_A], day);
    args.extend(["--tables".into(), "room_usage,cost".into()]);
    let r = run(cmd(&sim, &dest), &args);
    r.assert_code(2);
    r.assert_stderr_has(&["cost needs a price list; give --prices FILE"]);
    let r = run_sub(lake_cmd(&dest), "rebuild", &["--tables", "cost"]);
    r.assert_code(2);
    assert_eq!(sim.stats().served, 0, "no call");
    assert!(object_names(&dest).is_empty(), "nothing written");
}

#[test]
fn usage_without_a_price_fails_that_days_cost_naming_series_and_day() {
    let sim = start_sim(sim_config());
    let dest = TestDest::local();
    let day = days_ago(9);
    let audio_only = tmp_path("prices-audio-only.toml");
    std::fs::write(
        &audio_only,
        "currency = \"USD\"\nbilling_account_id = \"1\"\n[[price]]\nseries = \"audio\"\nlist = 1\n",
    )
    .unwrap();
    let mut args = date_args(&[APP_A], day);
    args.extend(["--prices".into(), audio_only.display().to_string()]);
    let r = run(cmd(&sim, &dest), &args);
    r.assert_code(1);
    r.assert_stderr_has(&[&format!(
        "has usage on {day} but the price list has no price for it"
    )]);
    assert!(exists(
        &dest,
        &format!("room_usage/app_id={APP_A}/usage_date={day}/_manifest.json")
    ));
    assert!(!exists(
        &dest,
        &format!("cost/app_id={APP_A}/usage_date={day}/_manifest.json")
    ));
    assert!(
        !local_files(&dest)
            .iter()
            .any(|f| f.starts_with("cost/") && f.ends_with(".parquet")),
        "no cost file: {:?}",
        local_files(&dest)
    );
    // Issue 31, point 12: status shows cost, although every cost partition
    // failed, with the day missing.
    let s = run_sub(lake_cmd(&dest), "status", &["--log-format", "json"]);
    s.assert_code(0);
    let v: serde_json::Value = serde_json::from_str(s.stdout.trim()).unwrap();
    let cost = v["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "cost")
        .unwrap_or_else(|| panic!("status hides cost: {v}"));
    assert_eq!(cost["apps"][0]["missing"][0], day.to_string(), "{cost}");
}

#[test]
fn rebuild_tables_cost_recomputes_it_from_the_lake_alone_and_status_shows_it() {
    let sim = start_sim(sim_config());
    let dest = TestDest::local();
    let day = days_ago(9);
    let prices = price_file("prices-rebuild.toml", 1.0, day);
    let mut args = date_args(&[APP_A], day);
    args.extend(["--prices".into(), prices.display().to_string()]);
    run(cmd(&sim, &dest), &args).assert_code(0);
    let before = list_costs(&dest, APP_A, day);
    let s = run_sub(lake_cmd(&dest), "status", &[] as &[&str]);
    s.assert_code(0);
    s.assert_stdout_has(&[&format!("cost {day}..{day}")]);
    delete_objects(&dest, "cost/");
    // No credentials, no endpoint: the lake alone.
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
    assert_eq!(list_costs(&dest, APP_A, day), before);
    let s = run_sub(lake_cmd(&dest), "status", &["--tables", "cost", "--verify"]);
    s.assert_code(0);
    s.assert_stdout_has(&[&format!("cost {day}..{day}")]);
    assert!(
        !s.stdout.contains("missing:") && !s.stdout.contains("stale"),
        "{}",
        s.stdout
    );
    assert_eq!(sim.stats().served, 1);
}

/// The README's three cost queries, run by DuckDB on the demo's lake (its
/// `cost` table is at the example price list's prices).
#[test]
fn the_readmes_cost_queries_run_on_the_demo_lake() {
    let Some(py) = provided_python("TRTC_TEST_PYTHON", "DuckDB") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let mut demo = lake_cmd(&TestDest::local());
    demo.current_dir(work.path());
    run_sub(
        demo,
        "demo",
        &["--min-interval", "100ms", "--progress", "off"],
    )
    .assert_code(0);
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("## What it cost")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("the README's cost section");
    let queries: Vec<&str> = section
        .lines()
        .filter_map(|l| l.strip_prefix("./scripts/query \""))
        .map(|q| q.strip_suffix('"').expect("a quoted query"))
        .collect();
    assert_eq!(queries.len(), 3, "{section}");
    let mut meters = false;
    let run_query = r#"
import duckdb, json, sys
rows = duckdb.sql(sys.argv[1]).fetchall()
print(json.dumps([len(rows), [list(map(str, r)) for r in rows[:3]], any('relay_usage' in map(str, r) for r in rows)]))
"#;
    for q in queries {
        let out = std::process::Command::new(&py)
            .args(["-c", run_query, q])
            .current_dir(work.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{q}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(v[0].as_u64().unwrap() > 0, "{q} returned no row");
        eprintln!("{q}\n  {}", v[1]);
        meters |= v[2].as_bool().unwrap();
    }
    assert!(meters, "a query shows the other meters' cost");
}

/// A new price list over a long range is long work with no call: it shows
/// progress, and SIGTERM stops it between partitions (exit 143, what is
/// left named); the next run finishes it.
#[test]
fn recomputing_a_long_range_shows_progress_and_stops_on_sigterm() {
    let mut config = sim_config();
    config.rooms = 3_000;
    config.interval = std::time::Duration::from_millis(20);
    let sim = start_sim(config);
    let dest = TestDest::local();
    let (first, last) = (days_ago(70), days_ago(11));
    let a = price_file("prices-long-a.toml", 1.0, first);
    let b = price_file("prices-long-b.toml", 2.0, first);
    let with = |p: &Path| {
        let mut args = range_args(&[APP_A, APP_B], first, last);
        args.extend([
            "--min-interval".into(),
            "20ms".into(),
            "--prices".into(),
            p.display().to_string(),
        ]);
        args
    };
    run(cmd(&sim, &dest), &with(&a)).assert_code(0);
    let served = sim.stats().served;
    let fingerprint = |day| {
        read_table_manifest(&dest, "cost", APP_B, day)
            .derived
            .unwrap()
            .fingerprint
    };
    let old = fingerprint(last);

    let mut c = cmd(&sim, &dest);
    c.env("TRTC_PROGRESS", "log");
    let (mut child, lines) = spawn_export(c, &with(&b));
    let mut seen = Vec::new();
    loop {
        let line = lines
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("a progress line");
        seen.push(line.clone());
        if line.contains("derived partitions") && line.contains("Progress: 0/120") {
            break;
        }
    }
    signal(&child, "TERM");
    // What shows it stopped early is that the last day was not reached
    // (below), not how fast a busy machine gets there.
    let code = wait_with_deadline(&mut child, std::time::Duration::from_secs(120));
    let rest: Vec<String> = lines.try_iter().collect();
    assert_eq!(code, 143, "{seen:?}\n{rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("Stopped at a safe point")),
        "{rest:?}"
    );
    assert_eq!(fingerprint(last), old, "the last day was not reached");
    assert_eq!(sim.stats().served, served, "no call");

    run(cmd(&sim, &dest), &with(&b)).assert_code(0);
    assert_ne!(fingerprint(last), old, "the next run finishes it");
    assert_eq!(sim.stats().served, served, "still no call");
}

/// Issue 31, point 12: the cost error for an unpriced extra series
/// ("add a [[price]] for extra_8k") can be followed: the price list takes
/// `extra_<name>`, and the day is then priced, the extra series included.
#[test]
fn an_extra_series_is_priced_once_the_list_names_it() {
    use trtc_usage::simulator::{Fault, FaultRule};
    let sim = start_sim(sim_config());
    let dest = TestDest::local();
    let day = days_ago(9);
    sim.inject(FaultRule::next(
        1,
        Fault::Data("RoomId,Audio,SD,hd,FullHD,2K,4K,8K\nr1,60,0,0,0,0,0,120\n".into()),
    ));
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/jobs/prices.example.toml"
    ))
    .unwrap();
    let prices = tmp_path("prices-8k.toml");
    std::fs::write(&prices, &example).unwrap();
    let mut args = date_args(&[APP_A], day);
    args.extend(["--prices".into(), prices.display().to_string()]);
    let r = run(cmd(&sim, &dest), &args);
    r.assert_code(1);
    r.assert_stderr_has(&["series extra_8k has usage", "add a [[price]] for extra_8k"]);
    std::fs::write(
        &prices,
        format!("{example}\n[[price]]\nseries = \"extra_8k\"\nlist = 100\n"),
    )
    .unwrap();
    run(lake_cmd(&dest), &args).assert_code(0);
    let m = read_table_manifest(&dest, "cost", APP_A, day);
    assert_eq!(m.rows, 2, "audio and extra_8k of room r1");
}

/// The meter entries of a price list: the simulator's keys, relay's
/// `AudioRelay` changing price on `change` (1.5 → 2.5 per 1,000 minutes),
/// recording's `MixRecording` priced for either mix type.
fn meter_prices(change: chrono::NaiveDate, relay_video: bool) -> String {
    let mut s = format!(
        r#"
[[price]]
table = "recording_usage"
mix_type = "single"
usage_key = "AudioRecording"
list = 2
[[price]]
table = "recording_usage"
mix_type = "single"
usage_key = "videorecordingsd"
list = 6
[[price]]
table = "recording_usage"
mix_type = "single"
usage_key = "VideoRecordingHD"
list = 12
[[price]]
table = "recording_usage"
usage_key = "MixRecording"
list = 14
contracted = 13
[[price]]
table = "transcoding_usage"
usage_key = "AudioTranscoding"
list = 3
[[price]]
table = "transcoding_usage"
usage_key = "SD"
list = 10
[[price]]
table = "transcoding_usage"
usage_key = "HD"
list = 20
[[price]]
table = "transcoding_usage"
usage_key = "FullHD"
list = 35
[[price]]
table = "relay_usage"
usage_key = "AudioRelay"
list = 1.5
[[price]]
table = "relay_usage"
usage_key = "AudioRelay"
list = 2.5
from = "{change}"
"#
    );
    if relay_video {
        s.push_str("[[price]]\ntable = \"relay_usage\"\nusage_key = \"VideoRelay\"\nlist = 5\n");
    }
    s
}

/// A price list of rooms and meters, in a file of its own.
fn bill_file(name: &str, change: chrono::NaiveDate, relay_video: bool) -> PathBuf {
    let path = price_file(name, 1.0, change);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&meter_prices(change, relay_video));
    std::fs::write(&path, text).unwrap();
    path
}

/// Per (app, day, table, mix type, key): the meter tables' minutes (by
/// DuckDB, from the meter tables) and the cost rows' sums.
const METERS_ADD_UP: &str = r#"
import duckdb, json, sys
lake = sys.argv[1]
con = duckdb.connect()
def src(t):
    return f"read_parquet('{lake}/{t}/**/*.parquet', hive_partitioning = true, union_by_name = true)"
rows = con.execute(f"""
WITH usage AS (
  SELECT app_id, usage_date, 'recording_usage:' || mix_type || ':' || usage_key AS series, sum(value) AS minutes
  FROM {src('recording_usage')} GROUP BY ALL
  UNION ALL
  SELECT app_id, usage_date, 'transcoding_usage:' || usage_key, sum(value) FROM {src('transcoding_usage')} GROUP BY ALL
  UNION ALL
  SELECT app_id, usage_date, 'relay_usage:' || usage_key, sum(value) FROM {src('relay_usage')} GROUP BY ALL
), cost AS (
  SELECT app_id, usage_date, x_series AS series, count(*) AS n, sum(ConsumedQuantity) AS q,
         sum(ListCost) AS list_cost, sum(ContractedCost) AS contracted_cost,
         min(ListUnitPrice) AS lp, min(ContractedUnitPrice) AS cp,
         min(ResourceId) AS resource, min(SkuPriceId) AS sku_price
  FROM {src('cost')} WHERE x_series LIKE '%:%' GROUP BY ALL
)
SELECT u.app_id, CAST(u.usage_date AS VARCHAR), u.series, u.minutes,
       c.n, c.q, c.list_cost, c.contracted_cost, c.lp, c.cp, c.resource, c.sku_price
FROM usage u FULL JOIN cost c USING (app_id, usage_date, series)
ORDER BY ALL
""").fetchall()
print(json.dumps(rows))
"#;

/// Contract 4, section 11: the whole bill. Every meter's keys priced by
/// table, mix type and key (one relay price changing mid-range), one cost
/// row per (app, day, table, mix type, key) with usage, adding up (by
/// DuckDB, from the meter tables) to minutes × price, and the FinOps
/// Foundation's validator on a file of rooms and meters of each price
/// period.
#[test]
fn the_whole_bill_is_priced_adds_up_and_passes_the_focus_validator() {
    let sim = start_sim(sim_config());
    let dest = TestDest::local();
    let days: Vec<_> = days_ago(12).iter_days().take(2).collect();
    let prices = bill_file("prices-bill.toml", days[1], true);
    let mut args = range_args(&[APP_A, APP_B], days[0], days[1]);
    args.extend([
        "--tables".into(),
        "all".into(),
        "--prices".into(),
        prices.display().to_string(),
    ]);
    run(cmd(&sim, &dest), &args).assert_code(0);
    for &app in &[APP_A, APP_B] {
        for &day in &days {
            let d = read_table_manifest(&dest, "cost", app, day)
                .derived
                .unwrap();
            for t in [
                "room_usage",
                "recording_usage",
                "transcoding_usage",
                "relay_usage",
            ] {
                let input = read_table_manifest(&dest, t, app, day);
                assert_eq!(d.inputs[t], input.request_id, "cost of {day} read {t}");
            }
        }
    }
    let Some(py) = provided_python("TRTC_TEST_PYTHON", "DuckDB") else {
        return;
    };
    let lake = lake_path(&dest);
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&python(&py, METERS_ADD_UP, &[&lake])).unwrap();
    let price = |series: &str, day: &str| -> (f64, f64) {
        let key = series.rsplit(':').next().unwrap();
        match key {
            "AudioRecording" => (2.0, 2.0),
            "VideoRecordingSD" => (6.0, 6.0),
            "VideoRecordingHD" => (12.0, 12.0),
            "MixRecording" => (14.0, 13.0),
            "AudioTranscoding" => (3.0, 3.0),
            "SD" => (10.0, 10.0),
            "HD" => (20.0, 20.0),
            "FullHD" => (35.0, 35.0),
            "AudioRelay" if day >= days[1].to_string().as_str() => (2.5, 2.5),
            "AudioRelay" => (1.5, 1.5),
            "VideoRelay" => (5.0, 5.0),
            other => panic!("{other}"),
        }
    };
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
    let mut priced = std::collections::BTreeSet::new();
    for row in &rows {
        let r = row.as_array().unwrap();
        let (app, day, series) = (
            r[0].as_u64().unwrap(),
            r[1].as_str().unwrap(),
            r[2].as_str().unwrap(),
        );
        let minutes = r[3]
            .as_f64()
            .unwrap_or_else(|| panic!("a cost row of no usage: {r:?}"));
        if minutes == 0.0 {
            assert!(r[4].is_null(), "no usage, no row: {r:?}");
            continue;
        }
        let f = |i: usize| {
            r[i].as_f64()
                .unwrap_or_else(|| panic!("usage without a cost row: {r:?}"))
        };
        let (lp, cp) = (price(series, day).0 / 1000.0, price(series, day).1 / 1000.0);
        assert_eq!(r[4].as_u64(), Some(1), "one row per key and day: {r:?}");
        assert!(close(f(5), minutes), "ConsumedQuantity {r:?}");
        assert!(close(f(6), minutes * lp), "ListCost {r:?}");
        assert!(close(f(7), minutes * cp), "ContractedCost {r:?}");
        assert!(close(f(8), lp) && close(f(9), cp), "unit prices {r:?}");
        assert_eq!(
            r[10].as_str().unwrap(),
            app.to_string(),
            "ResourceId is the SdkAppId"
        );
        let sku_price = r[11].as_str().unwrap();
        assert_eq!(
            sku_price.ends_with(&format!("@{}", days[1])),
            series == "relay_usage:AudioRelay" && day >= days[1].to_string().as_str(),
            "{sku_price}"
        );
        priced.insert(series.to_owned());
    }
    assert_eq!(priced.len(), 10, "every key of every meter: {priced:?}");
    assert!(
        priced.contains("recording_usage:multi:MixRecording"),
        "{priced:?}"
    );

    validate_cost_files(&lake, &days, "rooms and meters");
}

/// The meters' cost follows the meters: a run that adds them recomputes
/// the day's cost with no room call; a later run that does not fill them
/// keeps pricing what the lake holds (nothing recomputed); a key the list
/// does not price fails that day's cost naming table, key and day, and
/// leaves the last good partition in place.
fn meter_cost_follows_the_meters(dest: TestDest) {
    let sim = start_sim(sim_config());
    let day = days_ago(9);
    let prices = bill_file(
        &format!("prices-m-{}.toml", uuid::Uuid::new_v4()),
        day,
        true,
    );
    let with = |tables: Option<&str>| {
        let mut args = date_args(&[APP_A], day);
        args.extend(["--prices".into(), prices.display().to_string()]);
        if let Some(t) = tables {
            args.extend(["--tables".into(), t.into()]);
        }
        args
    };
    run(cmd(&sim, &dest), &with(None)).assert_code(0);
    let rooms_only = read_table_manifest(&dest, "cost", APP_A, day);
    assert_eq!(
        rooms_only.derived.as_ref().unwrap().inputs.len(),
        1,
        "rooms alone"
    );
    let (room_calls, calls) = (sim.stats().served, sim.stats().total_requests());

    // The meters added: cost recomputed with them, the rooms not fetched.
    run(cmd(&sim, &dest), &with(Some("all"))).assert_code(0);
    assert_eq!(sim.stats().served, room_calls, "no room call");
    assert_eq!(
        sim.stats().total_requests(),
        calls + 4,
        "the meters' 4 calls, no other"
    );
    let whole = read_table_manifest(&dest, "cost", APP_A, day);
    assert_eq!(whole.derived.as_ref().unwrap().inputs.len(), 4);
    assert!(whole.rows > rooms_only.rows);
    let series = |dest: &TestDest| -> std::collections::BTreeSet<String> {
        use arrow_array::cast::AsArray;
        read_table(dest, "cost", APP_A, day)
            .iter()
            .flat_map(|b| {
                b.column_by_name("x_series")
                    .unwrap()
                    .as_string::<i32>()
                    .iter()
                    .flatten()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    assert!(series(&dest).contains("relay_usage:VideoRelay"));

    // The default tables again: the lake's meters still priced.
    run(cmd(&sim, &dest), &with(None)).assert_code(0);
    let again = read_table_manifest(&dest, "cost", APP_A, day);
    assert_eq!(
        again.fetched_at, whole.fetched_at,
        "current: not recomputed"
    );
    assert_eq!(sim.stats().total_requests(), calls + 4, "no call");

    // VideoRelay unpriced: that day's cost fails, naming it; the last
    // good partition stays.
    let partial = bill_file(
        &format!("prices-n-{}.toml", uuid::Uuid::new_v4()),
        day,
        false,
    );
    let r = run_sub(
        lake_cmd(&dest),
        "rebuild",
        &[
            "--tables",
            "cost",
            "--prices",
            &partial.display().to_string(),
        ],
    );
    r.assert_code(1);
    r.assert_stderr_has(&[&format!(
        "relay_usage has usage of VideoRelay on {day} but the price list has no price for it"
    )]);
    let kept = read_table_manifest(&dest, "cost", APP_A, day);
    assert_eq!(
        kept.fetched_at, whole.fetched_at,
        "the last good cost stays"
    );
    assert!(series(&dest).contains("relay_usage:VideoRelay"));
    assert_eq!(sim.stats().total_requests(), calls + 4, "no call");
}

#[test]
fn meter_cost_follows_the_meters_with_no_room_call() {
    meter_cost_follows_the_meters(TestDest::local());
}

#[test]
fn meter_cost_follows_the_meters_with_no_room_call_on_s3() {
    let Some(dest) = TestDest::s3() else { return };
    meter_cost_follows_the_meters(dest);
}

/// A meter the run fills is waited for: a day whose relay fetch failed is
/// not costed from its rooms alone (no cost partition, the rooms and the
/// other meters written); the next run fetches the relay minutes and
/// costs the day from all four inputs, with no room call.
#[test]
fn a_day_whose_meter_failed_is_costed_only_once_the_meter_is_there() {
    use trtc_usage::simulator::{Api, Fault, FaultRule};
    let sim = start_sim(sim_config());
    let dest = TestDest::local();
    let day = days_ago(9);
    let prices = bill_file("prices-wait.toml", day, true);
    sim.inject(
        FaultRule::next(1, Fault::ApiError("InvalidParameter".into()))
            .on(Api::Meter("DescribeRelayUsage")),
    );
    let mut args = date_args(&[APP_A], day);
    args.extend([
        "--tables".into(),
        "all".into(),
        "--prices".into(),
        prices.display().to_string(),
    ]);
    let r = run(cmd(&sim, &dest), &args);
    r.assert_code(1);
    r.assert_stderr_has(&["InvalidParameter"]);
    let manifest = |table: &str| {
        exists(
            &dest,
            &format!("{table}/app_id={APP_A}/usage_date={day}/_manifest.json"),
        )
    };
    assert!(manifest("room_usage") && manifest("recording_usage"));
    assert!(!manifest("relay_usage"), "the relay fetch failed");
    assert!(!manifest("cost"), "not costed from part of the day");
    let room_calls = sim.stats().served;

    run(cmd(&sim, &dest), &args).assert_code(0);
    assert_eq!(sim.stats().served, room_calls, "no room call");
    let d = read_table_manifest(&dest, "cost", APP_A, day)
        .derived
        .unwrap();
    assert_eq!(
        d.inputs.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "recording_usage",
            "relay_usage",
            "room_usage",
            "transcoding_usage"
        ]
    );
}
