//! The top of the program: one function per command, each ending in the
//! exit code, decided here in one place.
//!
//! Exit codes: 0 done; 1 some partitions failed; 2 usage, configuration or
//! fatal API error; 3 everything written but a check failed under
//! `--checks fail` (1 wins over 3); 128 + signal number when stopped by SIGINT (130) or
//! SIGTERM (143).

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::cli::{
    Cli, Command, DemoArgs, ExportArgs, LogFormat, RebuildArgs, SimSettings, SimulatorArgs,
    StatusArgs,
};
use crate::jobs::config::{JobConfig, LakeScope};
use crate::jobs::export::{self, Status, Summary};
use crate::jobs::progress;
use crate::jobs::rebuild::{self, RebuildConfig};
use crate::jobs::status::{self, StatusConfig};
use crate::simulator::{self, SimConfig, Simulator};
use crate::tencent::credentials::{self, ProcessEnv, Provider};

pub const EXIT_OK: u8 = 0;
pub const EXIT_PARTITIONS_FAILED: u8 = 1;
pub const EXIT_FATAL: u8 = 2;
pub const EXIT_CHECKS_FAILED: u8 = 3;

/// Runs the parsed command line with its log format ([`Cli::log_format`]);
/// returns the exit code.
pub async fn run(cli: Cli, log_format: LogFormat) -> u8 {
    match cli.command {
        Command::Export(args) => run_export(&args, log_format).await,
        Command::Simulator(args) => run_simulator(args).await,
        Command::Rebuild(args) => run_rebuild(&args, log_format).await,
        Command::Status(args) => run_status(&args, log_format).await,
        Command::Demo(args) => run_demo(args, log_format).await,
    }
}

async fn run_rebuild(args: &RebuildArgs, log_format: LogFormat) -> u8 {
    let mut scope = match LakeScope::from_args(&args.range) {
        Ok(s) => s,
        Err(e) => return usage_error("rebuild", &e, log_format),
    };
    if let Err(e) = scope.resolve_clock().await {
        return usage_error("rebuild", &e, log_format);
    }
    let priced = crate::jobs::config::rebuild_prices(args, &mut scope);
    let (prices, billing_accounts) = match priced {
        Ok(p) => p,
        Err(e) => return usage_error("rebuild", &e, log_format),
    };
    if let Err(e) = crate::jobs::config::check_summary_file(args.summary_file.as_deref())
        .and_then(|()| crate::jobs::config::check_spool(&args.spool.config()))
    {
        return usage_error("rebuild", &e, log_format);
    }
    let encoding = crate::lake::write::Encoding::new(args.spool.config(), &scope.dest);
    let cfg = RebuildConfig {
        scope,
        contract: args.schema_contract,
        encoding,
        summary_file: args.summary_file.clone(),
        progress: args.progress,
        checks: args.checks.checks,
        check_tolerance: args.checks.check_tolerance,
        lease_ttl: args.lease.ttl(),
        prices,
        billing_accounts,
        kept_billing: Default::default(),
    };
    let cancel = CancellationToken::new();
    let signal = stop_on_signals(cancel.clone());
    let mut progress = progress::for_mode(cfg.progress, log_format);
    let summary = rebuild::run(&cfg, cancel, progress.as_mut()).await;
    report(&summary, log_format, cfg.summary_file.as_deref());
    exit_code(&summary, signal.load(Ordering::SeqCst))
}

async fn run_status(args: &StatusArgs, log_format: LogFormat) -> u8 {
    let mut scope = match LakeScope::from_args(&args.range) {
        Ok(s) => s,
        Err(e) => return usage_error("status", &e, log_format),
    };
    if let Err(e) = scope.resolve_clock().await {
        return usage_error("status", &e, log_format);
    }
    // `cost` is shown by default when the lake has it, or a run was asked
    // to fill it (all its partitions may have failed).
    let asked = crate::lake::marker::tables(&scope.dest)
        .await
        .unwrap_or_default();
    let all = args.range.tables.contains(&crate::cli::TableArg::All);
    if args.range.tables.is_empty() || all {
        let held = scope.dest.tables_held().await.unwrap_or_default();
        let cost = crate::tables::Table::COST;
        if held.contains(&cost) || asked.contains(&cost) {
            scope.tables.push(cost);
        }
    }
    let cfg = StatusConfig {
        scope,
        settle: args.settle,
        verify: args.verify,
        asked,
    };
    match status::run(&cfg).await {
        Ok(report) => {
            match log_format {
                LogFormat::Text => stdout(&report.render()),
                LogFormat::Json => stdout(&format!(
                    "{}\n",
                    serde_json::to_string(&report).expect("the report serializes")
                )),
            }
            if report.has_damage() {
                // The fix the lake takes: a demo's lake refuses an export.
                let simulated = matches!(
                    crate::lake::marker::source(&cfg.scope.dest).await,
                    Ok(Some(crate::lake::marker::Source::Simulator))
                );
                if simulated {
                    error!(
                        "Verification failed: some files do not match their manifests, checks are stale, or raw answers are gone (listed above); this is a demo's lake: run `trtc-usage rebuild` on it (files are rebuilt from the raw zone), or run the demo again."
                    );
                } else {
                    error!(
                        "Verification failed: some files do not match their manifests, checks are stale, or raw answers are gone (listed above); rerun the export (files are rebuilt from the raw zone or fetched again, stale and damaged derived partitions recomputed)."
                    );
                }
                EXIT_PARTITIONS_FAILED
            } else {
                EXIT_OK
            }
        }
        Err(e) => {
            error!("{e}");
            EXIT_FATAL
        }
    }
}

/// A usage or configuration error, in the voice of the command line's own
/// (`main.rs`): one line, the flag and the problem, and where help is;
/// under `--log-format json`, that line as a JSON log event. Exit 2.
fn usage_error(subcommand: &str, e: &dyn std::fmt::Display, log_format: LogFormat) -> u8 {
    // An error of several problems (the accounts file's) is a line each.
    for problem in e.to_string().lines() {
        let line = crate::cli::usage_line(problem, Some(subcommand));
        match log_format {
            LogFormat::Text => crate::logging::stderr_line(&line),
            LogFormat::Json => error!("{line}"),
        }
    }
    EXIT_FATAL
}

/// Cancels `token` on SIGTERM or SIGINT, remembering which one came.
fn stop_on_signals(token: CancellationToken) -> Arc<AtomicI32> {
    let signal = Arc::new(AtomicI32::new(0));
    let seen = signal.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal as unix_signal};
        let (Ok(mut term), Ok(mut int)) = (
            unix_signal(SignalKind::terminate()),
            unix_signal(SignalKind::interrupt()),
        ) else {
            warn!("Cannot install signal handlers; SIGTERM will stop the run abruptly.");
            return;
        };
        let (name, number) = tokio::select! {
            _ = term.recv() => ("SIGTERM", 15),
            _ = int.recv() => ("SIGINT", 2),
        };
        seen.store(number, Ordering::SeqCst);
        warn!(
            signal = name,
            "Received {name}; stopping at the next safe point (a second signal stops at once)."
        );
        token.cancel();
        // A second signal: the user means now. What is in flight is left
        // under its in-flight name and cleaned by the next run.
        let (name, number) = tokio::select! {
            _ = term.recv() => ("SIGTERM", 15),
            _ = int.recv() => ("SIGINT", 2),
        };
        crate::logging::stderr_line(&format!(
            "trtc-usage: second stop request ({name}); exiting now. Rerun the same command to finish."
        ));
        std::process::exit(128 + number);
    });
    signal
}

fn exit_code(summary: &Summary, signal: i32) -> u8 {
    // A stop that came when nothing was left to do changes nothing: the
    // outcome's own code (1 if a partition failed, else 0).
    if summary.status == Status::Interrupted && summary.not_attempted.is_empty() {
        return if summary.failed.is_empty() {
            EXIT_OK
        } else {
            EXIT_PARTITIONS_FAILED
        };
    }
    match summary.status {
        Status::Ok | Status::DryRun => EXIT_OK,
        Status::PartitionsFailed => EXIT_PARTITIONS_FAILED,
        Status::ChecksFailed => EXIT_CHECKS_FAILED,
        Status::Fatal => EXIT_FATAL,
        Status::Interrupted => 128u8.saturating_add(if signal > 0 { signal as u8 } else { 15 }),
    }
}

/// Writes to stdout; a reader that went away (`| head`) ends nothing but
/// the output: no panic, the run's exit code stands.
fn stdout(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

fn report(summary: &Summary, log_format: LogFormat, summary_file: Option<&std::path::Path>) {
    let json = serde_json::to_string(summary).expect("summary serializes");
    match log_format {
        LogFormat::Text => {
            let plan = summary
                .plan
                .as_ref()
                .map(|p| p.render())
                .unwrap_or_default();
            stdout(&format!("{plan}{}\n", summary.line()));
        }
        LogFormat::Json => stdout(&format!("{json}\n")),
    }
    if let Some(path) = summary_file
        && let Err(e) = std::fs::write(path, format!("{json}\n"))
    {
        error!(path = %path.display(), error = %e, "Cannot write the summary file.");
    }
}

async fn run_job(cfg: JobConfig, providers: Vec<Option<Provider>>, log_format: LogFormat) -> u8 {
    let started = Utc::now();
    let cancel = CancellationToken::new();
    let signal = stop_on_signals(cancel.clone());
    let mut progress = progress::for_mode(cfg.progress, log_format);
    let lineage = cfg.lineage.as_ref().filter(|_| !cfg.dry_run);
    let cx = crate::jobs::lineage::Context {
        dest: &cfg.dest,
        endpoint: &cfg.api.endpoint,
        tables: &cfg.tables,
    };
    // Lineage that cannot be sent is one warning, and no more tries.
    let mut lineage_ok = true;
    if let Some(l) = lineage
        && let Err(e) = l.send(&l.event("START", started, &cx, None)).await
    {
        warn!("{e}; no more lineage events this run");
        lineage_ok = false;
    }
    let summary = export::run(&cfg, providers, cancel, progress.as_mut()).await;
    report(&summary, log_format, cfg.summary_file.as_deref());
    let signal = signal.load(Ordering::SeqCst);
    let code = exit_code(&summary, signal);
    if let Some(l) = lineage.filter(|_| lineage_ok) {
        let kind = crate::jobs::lineage::end_kind(summary.status);
        if let Err(e) = l
            .send(&l.event(kind, Utc::now(), &cx, Some(&summary)))
            .await
        {
            warn!("{e}");
        }
    }
    // Success, failure or a stop: monitoring hears of every real run.
    if !cfg.dry_run {
        let run = crate::jobs::metrics::Run {
            started,
            ended: Utc::now(),
        };
        crate::jobs::metrics::report(
            &summary,
            &run,
            |s| exit_code(s, signal),
            cfg.pushgateway.as_ref(),
            cfg.metrics_file.as_deref(),
        )
        .await;
    }
    code
}

async fn run_export(args: &ExportArgs, log_format: LogFormat) -> u8 {
    let cfg = match JobConfig::from_args(args, Utc::now()) {
        Ok(c) => c,
        Err(e) => return usage_error("export", &e, log_format),
    };
    if cfg.dry_run {
        let none = vec![None; cfg.accounts.len()];
        return run_job(cfg, none, log_format).await;
    }
    let remote = credentials::RemoteOptions {
        sts_endpoint: args.sts_endpoint.clone(),
        use_cvm_role: args.use_cvm_role,
        cvm_metadata_endpoint: args.cvm_metadata_endpoint.clone(),
    };
    // Every account's keys are found now (temporary keys fetched), so a
    // broken source stops the run before any API call; with several
    // accounts, one line per account that has none.
    let mut providers = Vec::with_capacity(cfg.accounts.len());
    let mut problems = Vec::new();
    for account in &cfg.accounts {
        let resolved = match &account.credentials {
            None => match credentials::resolve_chain(&ProcessEnv, &remote) {
                Ok(p) => p.credentials().await.map(|_| p).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            },
            Some(source) => {
                let name = account.name.as_deref().unwrap_or_default();
                crate::jobs::accounts::credentials(name, source, &ProcessEnv).map(Provider::Static)
            }
        };
        match resolved {
            Ok(p) => providers.push(Some(p)),
            Err(e) => {
                providers.push(None);
                problems.push((account, e));
            }
        }
    }
    // Keys are needed only for calls: a run with nothing to fetch (derived
    // partitions to recompute, files to repair from the raw zone) goes on
    // without them.
    let mut needed = Vec::new();
    for (account, problem) in problems {
        if export::needs_calls(&cfg, account).await {
            needed.push(problem);
        }
    }
    let problems = needed;
    if !problems.is_empty() {
        for p in &problems {
            match (&args.accounts.accounts, log_format) {
                (Some(file), LogFormat::Text) => {
                    crate::logging::stderr_line(&crate::cli::usage_line(
                        &format!("--accounts {}: {p}", file.display()),
                        Some("export"),
                    ))
                }
                (Some(file), LogFormat::Json) => error!("--accounts {}: {p}", file.display()),
                (None, _) => error!("{p}"),
            }
        }
        return EXIT_FATAL;
    }
    run_job(cfg, providers, log_format).await
}

fn sim_config(s: &SimSettings) -> SimConfig {
    SimConfig {
        interval: s.interval,
        app_interval: s.app_interval,
        keys: [(s.secret_id.clone(), s.secret_key.clone())].into(),
        apps: (!s.apps.is_empty()).then(|| s.apps.clone()),
        rooms: s.rooms,
        exact_rooms: s.exact_rooms,
        ..SimConfig::default()
    }
}

async fn run_simulator(args: SimulatorArgs) -> u8 {
    if let (None, Some(part)) = (&args.dump_csv, &args.dump_partition) {
        let e = format!("--dump-partition {part} needs --dump-csv PATH (where to write it)");
        return usage_error("simulator", &e, LogFormat::Text);
    }
    if let (Some(path), Some(part)) = (&args.dump_csv, &args.dump_partition) {
        let parsed = part.split_once(':').and_then(|(a, d)| {
            Some((a.parse::<u64>().ok()?, d.parse::<chrono::NaiveDate>().ok()?))
        });
        let Some((app, day)) = parsed else {
            error!("--dump-partition {part}: expected APP_ID:YYYY-MM-DD");
            return EXIT_FATAL;
        };
        let csv = simulator::data::csv_for(app, day, args.sim.rooms, args.sim.exact_rooms);
        return match std::fs::write(path, csv) {
            Ok(()) => EXIT_OK,
            Err(e) => {
                error!(path = %path.display(), "Cannot write the CSV: {e}");
                EXIT_FATAL
            }
        };
    }
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            error!(listen = %args.listen, "Cannot listen: {e}");
            return EXIT_FATAL;
        }
    };
    // The built-in keys are public (they are in the source and the docs):
    // printing them is how a user points an export here. A key the user
    // chose is theirs, and is not printed.
    let key = if args.sim.secret_key == simulator::DEMO_SECRET_KEY {
        args.sim.secret_key.clone()
    } else {
        "(the --sim-secret-key you gave)".into()
    };
    info!(
        endpoint = %format!("http://{}", args.listen),
        secret_id = %args.sim.secret_id,
        interval_ms = args.sim.interval.as_millis() as u64,
        "TRTC API simulator listening. Point an export at it: TENCENTCLOUD_SECRET_ID={} TENCENTCLOUD_SECRET_KEY={key} trtc-usage export --endpoint http://{} --app-id …",
        args.sim.secret_id,
        args.listen
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match Simulator::serve(listener, sim_config(&args.sim), shutdown).await {
        Ok(()) => EXIT_OK,
        Err(e) => {
            error!("Simulator failed: {e}");
            EXIT_FATAL
        }
    }
}

/// The demo's export arguments, parsed with every environment variable
/// ignored: only `argv` and the defaults count.
fn demo_export_args(argv: Vec<String>) -> Result<ExportArgs, clap::Error> {
    use clap::{CommandFactory, FromArgMatches};
    let root = Cli::command();
    let ids: Vec<clap::Id> = root.get_arguments().map(|a| a.get_id().clone()).collect();
    let root = ids
        .into_iter()
        .fold(root, |c, id| c.mut_arg(id, |a| a.env(None::<&'static str>)));
    let command = root.mut_subcommand("export", |export| {
        let ids: Vec<clap::Id> = export.get_arguments().map(|a| a.get_id().clone()).collect();
        ids.into_iter().fold(export, |export, id| {
            export.mut_arg(id, |a| a.env(None::<&'static str>))
        })
    });
    let matches = command.try_get_matches_from(argv)?;
    let export = matches
        .subcommand_matches("export")
        .expect("the demo parses an export command");
    ExportArgs::from_arg_matches(export)
}

/// The queries the demo ends with: the rooms per app and day, and whether
/// they add up to the app's figure, on the lake at `dest`. The same as the
/// README's first look (a test runs them).
pub fn first_look_queries(dest: &str) -> [String; 2] {
    [
        format!(
            "SELECT app_id, usage_date, count(*) AS rooms, sum(audio_seconds) AS audio_s \
             FROM read_parquet('{dest}/room_usage/**/*.parquet', hive_partitioning = true) \
             GROUP BY ALL ORDER BY ALL"
        ),
        format!(
            "SELECT app_id, usage_date, series, round(room_minutes, 1) AS room_min, \
             round(app_minutes, 1) AS app_min, status \
             FROM read_parquet('{dest}/checks/**/*.parquet', hive_partitioning = true) \
             ORDER BY ALL"
        ),
    ]
}

/// How to look at the demo's lake: with this repository's `scripts/query`
/// (DuckDB, installed on first use), or any DuckDB. Under `--log-format
/// json`, one JSON log event like every other line.
fn first_look(dest: &str, log_format: LogFormat) {
    let [rooms, checks] = first_look_queries(dest);
    match log_format {
        LogFormat::Json => info!(
            rooms_query = %rooms,
            checks_query = %checks,
            "Look at it: scripts/query \"<query>\" in this repository (DuckDB, installed on first use), or duckdb -c \"<query>\"."
        ),
        LogFormat::Text => crate::logging::stderr_line(&format!(
            "\nLook at it (DuckDB, installed on first use; or duckdb -c \"…\" with your own):\n  \
             ./scripts/query \"{rooms}\"\n  ./scripts/query \"{checks}\""
        )),
    }
}

async fn run_demo(args: DemoArgs, log_format: LogFormat) -> u8 {
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => {
            error!("Cannot start the simulator: {e}");
            return EXIT_FATAL;
        }
    };
    let addr = listener.local_addr().expect("bound");
    let apps: Vec<u64> = (1..=args.apps).map(|i| 1_400_000_000 + i).collect();
    let sim = SimConfig {
        interval: args.min_interval,
        apps: Some(apps.clone()),
        rooms: args.rooms,
        ..SimConfig::default()
    };
    let stop = CancellationToken::new();
    let stop_sim = stop.clone();
    let server = tokio::spawn(Simulator::serve(listener, sim, async move {
        stop_sim.cancelled().await
    }));
    let app_list = apps
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let argv = [
        "trtc-usage".to_owned(),
        "export".into(),
        "--app-id".into(),
        app_list,
        "--lookback-days".into(),
        args.days.to_string(),
        "--dest".into(),
        args.dest.clone(),
        "--endpoint".into(),
        format!("http://{addr}"),
        "--min-interval".into(),
        format!("{}ms", args.min_interval.as_millis()),
        "--progress".into(),
        format!("{:?}", args.progress).to_lowercase(),
        // Every meter, so the cost table prices the whole bill.
        "--tables".into(),
        "all".into(),
    ];
    let export = match demo_export_args(argv.to_vec()) {
        Ok(e) => e,
        Err(e) => {
            error!("{e}");
            return EXIT_FATAL;
        }
    };
    let mut cfg = match JobConfig::from_args(&export, Utc::now()) {
        Ok(c) => c,
        Err(e) => {
            error!("{e}");
            return EXIT_FATAL;
        }
    };
    cfg.source = crate::lake::marker::Source::Simulator;
    // The demo's lake has a `cost` table too, at the example price list's
    // made-up prices.
    cfg.prices = Some(std::sync::Arc::new(
        crate::tables::prices::PriceList::parse(
            "jobs/prices.example.toml (built in)",
            include_bytes!("../jobs/prices.example.toml"),
        )
        .expect("the example price list is valid"),
    ));
    cfg.tables.push(crate::tables::Table::COST);
    info!(
        endpoint = %format!("http://{addr}"),
        apps = args.apps,
        days = args.days,
        interval = %humantime::format_duration(args.min_interval),
        "Demo: exporting from the bundled TRTC API simulator (signatures verified, rate limit enforced)."
    );
    let provider = Provider::Static(credentials::Credentials {
        secret_id: simulator::DEMO_SECRET_ID.into(),
        secret_key: credentials::Secret::new(simulator::DEMO_SECRET_KEY),
        token: None,
        source: "the simulator's demo keys".into(),
    });
    let code = run_job(cfg, vec![Some(provider)], log_format).await;
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    if code == EXIT_OK {
        // `./warehouse` (the default) is printed as the README writes it.
        let dest = args.dest.trim_end_matches('/');
        first_look(dest.strip_prefix("./").unwrap_or(dest), log_format);
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_with_nothing_left_exits_with_the_outcome() {
        let mut s = Summary::new(1);
        s.status = Status::Interrupted;
        assert_eq!(exit_code(&s, 15), EXIT_OK, "nothing left, nothing failed");
        s.failed.push(crate::jobs::summary::Failure {
            table: crate::tables::Table::ROOM_USAGE,
            app_id: 1,
            usage_date: "2026-11-20".parse().unwrap(),
            error: "x".into(),
        });
        assert_eq!(exit_code(&s, 15), EXIT_PARTITIONS_FAILED);
        s.not_attempted.push(crate::jobs::summary::Partition {
            app_id: 1,
            usage_date: "2026-11-21".parse().unwrap(),
        });
        assert_eq!(exit_code(&s, 15), 143, "work was left");
        assert_eq!(exit_code(&s, 2), 130);
    }
}
