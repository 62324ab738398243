//! The command line (README "Command line"). Every option reads an environment
//! variable too, so a CronJob can configure the job without arguments.
//! These structs are raw input; [`crate::jobs::config`] validates them.

use std::time::Duration;

use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::tables::Table;
use crate::tables::normalize::SchemaContract;

const EXPORT_EXAMPLES: &str = "\
Examples:
  # The 3 complete days ending yesterday (Beijing time), to local disk:
  trtc-usage export --app-id 1400000001

  # A backfill of two apps into S3, resumable, one call every 15 s:
  trtc-usage export --app-id 1400000001,1400000002 \\
      --start 2026-09-01 --end 2026-11-25 --dest s3://lake/trtc

  # One day, as an Airflow task does it:
  trtc-usage export --app-id 1400000001 --date {{ ds }}

  # What would run, without credentials, calls or writes:
  trtc-usage export --app-id 1400000001 --start 2026-11-01 --end 2026-11-25 --dry-run

Exit status: 0 all planned partitions written or already final; 1 some
partitions failed (the rest are written); 2 usage, configuration or fatal
API error; 3 everything written but a check failed under --checks fail;
130/143 stopped by SIGINT/SIGTERM.";

/// Exports Tencent Cloud TRTC per-room usage to Hive-partitioned Parquet.
#[derive(Debug, Parser)]
#[command(
    name = "trtc-usage",
    version,
    about,
    propagate_version = true,
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log format on stderr: human text (default), or one JSON object per line. Also read from TRTC_LOG_FORMAT, except by `demo`, which reads no environment.
    #[arg(long = "log-format", value_name = "FORMAT", global = true, value_enum)]
    pub log_format_flag: Option<LogFormat>,
}

impl Cli {
    /// `--log-format`, else `TRTC_LOG_FORMAT` (not for `demo`: it reads no
    /// environment variable, so a production setting cannot change it),
    /// else text. An unknown value in the variable is a usage error.
    pub fn log_format(&self) -> Result<LogFormat, String> {
        if let Some(f) = self.log_format_flag {
            return Ok(f);
        }
        if matches!(self.command, Command::Demo(_)) {
            return Ok(LogFormat::Text);
        }
        match std::env::var("TRTC_LOG_FORMAT") {
            Ok(v) if !v.trim().is_empty() => LogFormat::from_str(v.trim(), true)
                .map_err(|_| format!("TRTC_LOG_FORMAT={v}: expected text or json")),
            _ => Ok(LogFormat::Text),
        }
    }
}

pub use crate::logging::LogFormat;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch room and app usage day by day, write them as Parquet partitions, and check that they add up.
    #[command(after_help = EXPORT_EXAMPLES)]
    Export(Box<ExportArgs>),
    /// Serve the bundled TRTC API simulator (for demos, tests, benchmarks).
    Simulator(SimulatorArgs),
    /// Rewrite partitions from the raw zone: no API call, no Tencent credentials.
    #[command(after_help = REBUILD_EXAMPLES)]
    Rebuild(Box<RebuildArgs>),
    /// Show what the lake holds over a range, from its manifests: final,
    /// settling, missing; no API call.
    #[command(after_help = STATUS_EXAMPLES)]
    Status(Box<StatusArgs>),
    /// Run an export end to end against an in-process simulator: no Tencent
    /// account needed.
    Demo(DemoArgs),
}

const REBUILD_EXAMPLES: &str = "\
Examples:
  # Every partition that has raw responses, from the newest of each:
  trtc-usage rebuild --dest s3://lake/trtc

  # One app's September, after a fix or a schema change:
  trtc-usage rebuild --app-id 1400000001 --start 2026-09-01 --end 2026-09-30

  # The checks again, at another tolerance, from the lake's own tables:
  trtc-usage rebuild --tables checks --check-tolerance 2%

Exit status: 0 every partition rebuilt; 1 some failed or had no raw
response (left as they were); 2 usage or configuration error; 3 every
partition rebuilt but a check failed under --checks fail.";

const STATUS_EXAMPLES: &str = "\
Examples:
  # Every app and day the lake knows of:
  trtc-usage status --dest s3://lake/trtc

  # The holes in a backfill's range, as JSON:
  trtc-usage --log-format json status --app-id 1400000001 --start 2026-09-01 --end 2026-11-25

  # Also recompute every file's SHA-256 against its manifest:
  trtc-usage status --verify

Exit status: 0; 1 when --verify finds a file that does not match its
manifest; 2 usage or configuration error.";

/// The one form of a usage error: `error: <problem> (see 'trtc-usage
/// <subcommand> --help')`, on one line.
pub fn usage_line(problem: &str, subcommand: Option<&str>) -> String {
    let problem = problem.trim().trim_start_matches("error:").trim();
    let help = match subcommand {
        Some(sub) => format!("trtc-usage {sub} --help"),
        None => "trtc-usage --help".to_owned(),
    };
    format!("error: {problem} (see '{help}')")
}

/// A clap error as [`usage_line`]: its message and any "tip" it gives (a
/// similar subcommand or flag), without the usage block.
pub fn clap_usage_line(e: &clap::Error, args: &[String]) -> String {
    let rendered = e.render().to_string();
    let mut parts: Vec<String> = Vec::new();
    for line in rendered.lines() {
        let t = line.trim();
        if t.starts_with("Usage:") || t.starts_with("For more information") {
            break;
        }
        if !t.is_empty() {
            parts.push(t.trim_start_matches("tip:").trim().to_owned());
        }
    }
    let subcommands = ["export", "rebuild", "status", "simulator", "demo"];
    let sub = args
        .iter()
        .skip(1)
        .find(|a| subcommands.contains(&a.as_str()))
        .map(String::as_str);
    let mut problem = String::new();
    for p in parts {
        if !problem.is_empty() {
            problem.push_str(if problem.ends_with(':') { " " } else { "; " });
        }
        problem.push_str(&p);
    }
    usage_line(&name_the_environment(&problem, args), sub)
}

/// `problem` with each flag the user did not type, but set through its
/// environment variable, named by that variable: `'--app-id <ID>'` becomes
/// `TRTC_APP_IDS (the environment's --app-id)`, so the message names what
/// was actually set.
fn name_the_environment(problem: &str, args: &[String]) -> String {
    let command = <Cli as clap::CommandFactory>::command();
    let mut out = problem.to_owned();
    for arg in command.get_subcommands().flat_map(|c| c.get_arguments()) {
        let (Some(long), Some(env)) = (arg.get_long(), arg.get_env()) else {
            continue;
        };
        let flag = format!("--{long}");
        let typed = args
            .iter()
            .any(|a| *a == flag || a.starts_with(&format!("{flag}=")));
        let env = env.to_string_lossy();
        if typed || std::env::var_os(env.as_ref()).is_none() {
            continue;
        }
        let quoted = format!("'{flag}");
        while let Some(start) = out.find(&quoted) {
            let rest = &out[start + 1..];
            let Some(len) = rest.find('\'') else { break };
            let end = start + 1 + len + 1;
            if !rest[..len].starts_with(&flag)
                || !matches!(rest[flag.len()..].chars().next(), Some(' ' | '\'' | '='))
            {
                break;
            }
            out.replace_range(start..end, &format!("{env} (the environment's {flag})"));
        }
    }
    out
}

/// How a switch (`--force`, `--verify`, …) reads its environment
/// variable: `1`/`0`, `true`/`false`, `yes`/`no`, `on`/`off` (what a
/// CronJob's env block writes), so `TRTC_FORCE=1` works.
fn switch() -> clap::builder::BoolishValueParser {
    clap::builder::BoolishValueParser::new()
}

/// `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

/// One name of `--tables`: a table, or `all` (every table; `cost` only
/// with a price list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableArg {
    All,
    One(Table),
}

/// Parses one name of `--tables`.
pub fn parse_table(s: &str) -> Result<TableArg, String> {
    let name = s.trim();
    if name == "all" {
        return Ok(TableArg::All);
    }
    crate::jobs::table_named(name)
        .map(TableArg::One)
        .ok_or_else(|| {
            let known: Vec<_> = crate::jobs::all_tables().iter().map(|t| t.name()).collect();
            format!(
                "'{name}' is not a table; tables: {}, or all",
                known.join(", ")
            )
        })
}

pub use crate::jobs::config::ChecksMode as Checks;

/// Parses `1%`, `0.5%` or `2` (percent) into a fraction: 0.01, 0.005, 0.02.
pub fn parse_tolerance(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let pct: f64 = t
        .strip_suffix('%')
        .unwrap_or(t)
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a percentage like 1% or 0.5%"))?;
    if !(0.0..=100.0).contains(&pct) {
        return Err(format!("'{s}' is not a percentage between 0% and 100%"));
    }
    Ok(pct / 100.0)
}

/// One writer per app; shared by `export` and `rebuild`.
#[derive(Debug, Clone, Args)]
pub struct LeaseArgs {
    /// Take a lease per app (`_trtc_usage/leases/app_id=<id>.json`) so no two runs write one app at once.
    #[arg(long, env = "TRTC_LEASE", value_enum, default_value_t = Switch::On)]
    pub lease: Switch,

    /// How long the lease lives unless renewed (it is renewed every third of this).
    #[arg(long, env = "TRTC_LEASE_TTL", default_value = "5m", value_parser = parse_lease_ttl)]
    pub lease_ttl: Duration,
}

impl LeaseArgs {
    /// The lease's time to live, or `None` under `--lease off`.
    pub fn ttl(&self) -> Option<Duration> {
        (self.lease == Switch::On).then_some(self.lease_ttl)
    }
}

fn parse_lease_ttl(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_secs(1) || d > Duration::from_secs(7 * 86400) {
        return Err(format!("'{s}' is not between 1s and 7 days"));
    }
    Ok(d)
}

/// Where large answers and files wait on disk; shared by `export` and
/// `rebuild`.
#[derive(Debug, Clone, Args)]
pub struct SpoolArgs {
    /// Directory for temporary files: an answer or Parquet file over --spool-memory waits there, unnamed, never left behind (default: $TMPDIR, else /tmp).
    #[arg(long, env = "TRTC_SPOOL_DIR")]
    pub spool_dir: Option<std::path::PathBuf>,

    /// Bytes of one answer or file held in memory before it moves to --spool-dir (e.g. 8MiB, 512KiB).
    #[arg(long, env = "TRTC_SPOOL_MEMORY", default_value = "8MiB", value_parser = parse_bytes)]
    pub spool_memory: usize,
}

impl SpoolArgs {
    pub fn config(&self) -> crate::spool::SpoolConfig {
        crate::spool::SpoolConfig {
            dir: self.spool_dir.clone().unwrap_or_else(std::env::temp_dir),
            memory_limit: self.spool_memory,
            in_lake: false,
        }
    }
}

/// `8MiB`, `512KiB`, `1GiB` or a number of bytes; at most 1 GiB.
pub fn parse_bytes(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, ""),
    };
    let unit: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(format!("'{s}' is not a size like 8MiB, 512KiB or 1048576")),
    };
    let n: usize = digits
        .parse()
        .map_err(|_| format!("'{s}' is not a size like 8MiB, 512KiB or 1048576"))?;
    match n.checked_mul(unit) {
        Some(b) if b <= 1 << 30 => Ok(b),
        _ => Err(format!("'{s}' is over 1GiB")),
    }
}

/// How the `checks` table is filled; shared by `export` and `rebuild`.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// What a failed reconciliation does: warn, fail (exit 3 once everything is written), or off (no checks table).
    #[arg(long, env = "TRTC_CHECKS", value_enum, default_value_t = Checks::Warn)]
    pub checks: Checks,

    /// Allowed difference between the rooms and the app's figure, relative to the app's (at least 1 minute).
    #[arg(long, env = "TRTC_CHECK_TOLERANCE", default_value = "1%", value_parser = parse_tolerance)]
    pub check_tolerance: f64,
}

/// The days of a command: `--start`/`--end`, or `--date`, or none.
#[derive(Debug, Clone, Args)]
pub struct DayArgs {
    /// First day, inclusive (YYYY-MM-DD, in the API's clock).
    #[arg(long, env = "TRTC_START", value_parser = parse_date, conflicts_with = "date")]
    pub start: Option<NaiveDate>,

    /// Last day, inclusive (default: --start).
    #[arg(long, env = "TRTC_END", value_parser = parse_date, requires = "start", conflicts_with = "date")]
    pub end: Option<NaiveDate>,

    /// One day (Airflow: --date {{ ds }}).
    #[arg(long, env = "TRTC_DATE", value_parser = parse_date)]
    pub date: Option<NaiveDate>,
}

impl DayArgs {
    /// First and last day as given (`--date D` is `D..=D`; `--end`
    /// defaults to `--start`), unchecked; `None` when no day is given.
    pub fn range(&self) -> Option<(NaiveDate, NaiveDate)> {
        match (self.date, self.start) {
            (Some(d), _) => Some((d, d)),
            (None, Some(start)) => Some((start, self.end.unwrap_or(start))),
            (None, None) => None,
        }
    }
}

/// Several Tencent Cloud accounts (`docs/accounts.md`); shared by `export`,
/// `rebuild` and `status`.
#[derive(Debug, Clone, Args)]
pub struct AccountsArgs {
    /// A TOML file of Tencent Cloud accounts, each with its app ids, the names of the environment variables (or the profile file) holding its keys, and optionally its endpoint and region; not with --app-id.
    #[arg(long, value_name = "FILE", env = "TRTC_ACCOUNTS")]
    pub accounts: Option<std::path::PathBuf>,

    /// With --accounts: only this account, by name or 0-based index (a Kubernetes Indexed Job passes $JOB_COMPLETION_INDEX).
    #[arg(
        long,
        value_name = "NAME|N",
        env = "TRTC_ACCOUNT",
        requires = "accounts"
    )]
    pub account: Option<String>,
}

/// Which partitions a `rebuild` or `status` covers: apps and days, each
/// optional (none: all the lake has).
#[derive(Debug, Clone, Args)]
pub struct RangeArgs {
    /// SdkAppId; repeat the flag or separate with commas (default: every app found).
    #[arg(long = "app-id", value_name = "ID", env = "TRTC_APP_IDS", value_delimiter = ',', conflicts_with = "accounts", value_parser = parse_app_id)]
    pub app_ids: Vec<u64>,

    #[command(flatten)]
    pub accounts: AccountsArgs,

    #[command(flatten)]
    pub days: DayArgs,

    /// Which tables, comma separated: room_usage, app_usage, checks, cost, recording_usage, transcoding_usage, relay_usage, or all (default: the first three; cost too when the lake has it (status) or with --prices (rebuild)).
    #[arg(long, env = "TRTC_TABLES", value_delimiter = ',', value_parser = parse_table)]
    pub tables: Vec<TableArg>,

    /// The lake: a local path, file://…, or s3://bucket/prefix.
    #[arg(long, env = "TRTC_DEST", default_value = "./warehouse")]
    pub dest: String,

    /// The API's clock, which defines a day (±HH:MM); by default the
    /// lake's (recorded at its first write), +08:00 for a lake with none.
    /// Another than the lake's is refused.
    #[arg(long, env = "TRTC_UTC_OFFSET", allow_hyphen_values = true)]
    pub utc_offset: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct RebuildArgs {
    #[command(flatten)]
    pub range: RangeArgs,

    /// A price list you own (TOML): also recompute the FOCUS `cost` table from room_usage.
    #[arg(long, env = "TRTC_PRICES", value_name = "FILE")]
    pub prices: Option<std::path::PathBuf>,

    /// What an unknown CSV column does: keep it as `extra_<name>_seconds`, or fail the partition.
    #[arg(long, env = "TRTC_SCHEMA_CONTRACT", value_enum, default_value_t = SchemaContract::Evolve)]
    pub schema_contract: SchemaContract,

    #[command(flatten)]
    pub checks: CheckArgs,

    #[command(flatten)]
    pub lease: LeaseArgs,

    #[command(flatten)]
    pub spool: SpoolArgs,

    /// Also write the run summary as JSON to this file.
    #[arg(long, env = "TRTC_SUMMARY_FILE")]
    pub summary_file: Option<std::path::PathBuf>,

    /// Progress display.
    #[arg(long, env = "TRTC_PROGRESS", value_enum, default_value_t = Progress::Auto)]
    pub progress: Progress,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub range: RangeArgs,

    /// How long after a day ends its data counts as final.
    #[arg(long, env = "TRTC_SETTLE", default_value = "24h", value_parser = parse_duration)]
    pub settle: Duration,

    /// Recompute every file's SHA-256 against its manifest (reads every file); exit 1 on a mismatch.
    #[arg(long, env = "TRTC_VERIFY", value_parser = switch())]
    pub verify: bool,
}

/// The longest duration any flag takes: a year. Longer ones are typos, and
/// would overflow the arithmetic on times.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 86_400);

/// Parses `15s`, `250ms`, `24h`, or a bare number of seconds, up to
/// [`MAX_DURATION`].
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let d = match t.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => {
            Duration::try_from_secs_f64(secs).map_err(|_| format!("'{s}' is too long"))?
        }
        Ok(_) => return Err(format!("'{s}' is not a duration like 15s, 250ms or 24h")),
        Err(_) => humantime::parse_duration(t)
            .map_err(|e| format!("'{s}' is not a duration like 15s, 250ms or 24h ({e})"))?,
    };
    if d > MAX_DURATION {
        return Err(format!("'{s}' is longer than a year"));
    }
    Ok(d)
}

/// A duration that must be at least `min` (a timeout of 0 would fail every call).
fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(100) {
        return Err(format!("'{s}' is shorter than 100ms"));
    }
    Ok(d)
}

fn parse_date(s: &str) -> Result<NaiveDate, String> {
    let t = s.trim();
    NaiveDate::parse_from_str(t, "%Y-%m-%d").map_err(|_| {
        // The right shape, but no such day (2026-11-31, 2026-02-29).
        let shaped = t.len() == 10
            && t.char_indices().all(|(i, c)| {
                if i == 4 || i == 7 {
                    c == '-'
                } else {
                    c.is_ascii_digit()
                }
            });
        if shaped {
            format!("there is no day {t} in the calendar (YYYY-MM-DD: no such month, or the month has fewer days)")
        } else {
            format!("'{s}' is not a date like 2026-11-20 (YYYY-MM-DD)")
        }
    })
}

fn parse_app_id(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(n) if n > 0 && n <= i64::MAX as u64 => Ok(n),
        _ => Err(format!(
            "'{s}' is not an SdkAppId (a positive integer like 1400000001)"
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Region {
    #[value(name = "ap-guangzhou")]
    ApGuangzhou,
    #[value(name = "ap-singapore")]
    ApSingapore,
}

impl Region {
    pub fn as_str(self) -> &'static str {
        match self {
            Region::ApGuangzhou => "ap-guangzhou",
            Region::ApSingapore => "ap-singapore",
        }
    }
}

pub use crate::jobs::progress::Mode as Progress;

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// SdkAppId to export; repeat the flag or separate with commas.
    #[arg(long = "app-id", value_name = "ID", env = "TRTC_APP_IDS", value_delimiter = ',', required_unless_present = "accounts", conflicts_with = "accounts", value_parser = parse_app_id)]
    pub app_ids: Vec<u64>,

    #[command(flatten)]
    pub accounts: AccountsArgs,

    #[command(flatten)]
    pub days: DayArgs,

    /// With no dates: the N complete days ending yesterday in the API's clock.
    #[arg(long, env = "TRTC_LOOKBACK_DAYS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub lookback_days: u32,

    /// Where to write: a local path, file://…, or s3://bucket/prefix.
    #[arg(long, env = "TRTC_DEST", default_value = "./warehouse")]
    pub dest: String,

    /// The TRTC API endpoint.
    #[arg(
        long,
        env = "TRTC_ENDPOINT",
        default_value = "https://trtc.tencentcloudapi.com"
    )]
    pub endpoint: String,

    /// The data region (X-TC-Region).
    #[arg(long, env = "TRTC_REGION", value_enum, default_value_t = Region::ApGuangzhou)]
    pub region: Region,

    /// The API's clock, which defines a day (±HH:MM).
    #[arg(
        long,
        env = "TRTC_UTC_OFFSET",
        default_value = "+08:00",
        allow_hyphen_values = true
    )]
    pub utc_offset: String,

    /// Spacing between DescribeTrtcRoomUsage calls ("15s", "250ms", "2s").
    #[arg(long, env = "TRTC_MIN_INTERVAL", default_value = "15s", value_parser = parse_duration)]
    pub min_interval: Duration,

    /// Spacing between the calls of each usage API but the room one (DescribeTrtcUsage and the other meters, each paced on its own: 5 a second each).
    #[arg(long, env = "TRTC_APP_MIN_INTERVAL", default_value = "200ms", value_parser = parse_duration)]
    pub app_min_interval: Duration,

    /// Re-export partitions that are already final.
    #[arg(long, env = "TRTC_FORCE", value_parser = switch())]
    pub force: bool,

    /// How long after a day ends its data counts as final.
    #[arg(long, env = "TRTC_SETTLE", default_value = "24h", value_parser = parse_duration)]
    pub settle: Duration,

    /// What an unknown CSV column does: keep it as `extra_<name>_seconds`, or fail the partition.
    #[arg(long, env = "TRTC_SCHEMA_CONTRACT", value_enum, default_value_t = SchemaContract::Evolve)]
    pub schema_contract: SchemaContract,

    /// Keep every API answer, zstd-compressed, in the lake's raw zone (`_raw/`), for `rebuild`.
    #[arg(long, env = "TRTC_RAW", value_enum, default_value_t = Switch::On)]
    pub raw: Switch,

    /// Which tables to fill, comma separated: room_usage, app_usage, checks, cost, recording_usage, transcoding_usage, relay_usage, or all (every table; cost only with --prices). Default: the first three, and cost with --prices; checks needs room_usage and app_usage, cost needs room_usage.
    #[arg(long, env = "TRTC_TABLES", value_delimiter = ',', value_parser = parse_table)]
    pub tables: Vec<TableArg>,

    /// A price list you own (TOML): also fill the FOCUS `cost` table, an estimate of what each room cost.
    #[arg(long, env = "TRTC_PRICES", value_name = "FILE")]
    pub prices: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub checks: CheckArgs,

    #[command(flatten)]
    pub lease: LeaseArgs,

    #[command(flatten)]
    pub spool: SpoolArgs,

    /// Before skipping a final partition, read its whole file and check its SHA-256 against the manifest (not only its size); a mismatch is repaired from the raw zone, else fetched again.
    #[arg(long, env = "TRTC_VERIFY", value_parser = switch())]
    pub verify: bool,

    /// Print the plan (partitions, calls, estimated time); no API call, nothing written.
    #[arg(long, env = "TRTC_DRY_RUN", value_parser = switch())]
    pub dry_run: bool,

    /// Attempts per call before its partition fails (the first included).
    #[arg(long, env = "TRTC_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_attempts: u32,

    /// First retry backoff; doubles each retry, with jitter, up to 60s.
    #[arg(long, env = "TRTC_RETRY_BACKOFF", default_value = "1s", value_parser = parse_duration)]
    pub retry_backoff: Duration,

    /// Timeout of one API request, the response body included.
    #[arg(long, env = "TRTC_REQUEST_TIMEOUT", default_value = "120s", value_parser = parse_positive_duration)]
    pub request_timeout: Duration,

    /// Allow an http:// endpoint that is not a loopback address (credentials would travel in clear).
    #[arg(long, env = "TRTC_ALLOW_INSECURE_ENDPOINT", value_parser = switch())]
    pub allow_insecure_endpoint: bool,

    /// Also write the run summary as JSON to this file (for Airflow XCom, say).
    #[arg(long, env = "TRTC_SUMMARY_FILE")]
    pub summary_file: Option<std::path::PathBuf>,

    /// Push the run's metrics to this Prometheus Pushgateway when it ends (group job=trtc_usage, account = the account name, or default).
    #[arg(long, value_name = "URL", env = "TRTC_PUSHGATEWAY")]
    pub pushgateway: Option<String>,

    /// Write the run's metrics to this file, atomically, for node_exporter's textfile collector (a .prom file).
    #[arg(long, value_name = "PATH", env = "TRTC_METRICS_FILE")]
    pub metrics_file: Option<std::path::PathBuf>,

    /// Send the run's OpenLineage events (START, then COMPLETE, FAIL or ABORT) to this URL (POSTed to its /api/v1/lineage).
    #[arg(long, value_name = "URL", env = "TRTC_OPENLINEAGE_URL")]
    pub openlineage_url: Option<String>,

    /// Append the run's OpenLineage events to this file, one JSON object a line.
    #[arg(long, value_name = "PATH", env = "TRTC_OPENLINEAGE_FILE")]
    pub openlineage_file: Option<std::path::PathBuf>,

    /// The OpenLineage namespace of the job.
    #[arg(
        long,
        value_name = "NAMESPACE",
        env = "TRTC_OPENLINEAGE_NAMESPACE",
        default_value = "trtc-usage"
    )]
    pub openlineage_namespace: String,

    /// Progress display.
    #[arg(long, env = "TRTC_PROGRESS", value_enum, default_value_t = Progress::Auto)]
    pub progress: Progress,

    /// Use the CVM instance role's temporary keys when no other credentials are found (as tccli's --use-cvm-role).
    #[arg(long, env = "TRTC_USE_CVM_ROLE", value_parser = switch())]
    pub use_cvm_role: bool,

    /// The CVM metadata service, for --use-cvm-role.
    #[arg(
        long,
        env = "TRTC_CVM_METADATA_ENDPOINT",
        default_value = "http://metadata.tencentyun.com"
    )]
    pub cvm_metadata_endpoint: url::Url,

    /// The STS endpoint for TKE OIDC (AssumeRoleWithWebIdentity, used when the TKE_* variables are set).
    #[arg(
        long,
        env = "TRTC_STS_ENDPOINT",
        default_value = "https://sts.tencentcloudapi.com"
    )]
    pub sts_endpoint: url::Url,
}

#[derive(Debug, Clone, Args)]
pub struct SimulatorArgs {
    /// Address to listen on.
    #[arg(long, env = "TRTC_SIM_LISTEN", default_value = "127.0.0.1:8300")]
    pub listen: std::net::SocketAddr,

    #[command(flatten)]
    pub sim: SimSettings,

    /// Instead of serving: write the CSV of APP_ID:YYYY-MM-DD to this file and exit.
    #[arg(long, value_name = "PATH", requires = "dump_partition")]
    pub dump_csv: Option<std::path::PathBuf>,

    /// The partition to dump, as APP_ID:YYYY-MM-DD.
    #[arg(long, value_name = "APP_ID:DATE")]
    pub dump_partition: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct SimSettings {
    /// The spacing the simulator enforces between DescribeTrtcRoomUsage calls of one SecretId (the real API's: 15s).
    #[arg(long = "min-interval", env = "TRTC_SIM_MIN_INTERVAL", default_value = "15s", value_parser = parse_duration)]
    pub interval: Duration,

    /// The same for DescribeTrtcUsage (the real API's: 200ms, 5 calls a second).
    #[arg(long = "app-min-interval", env = "TRTC_SIM_APP_MIN_INTERVAL", default_value = "200ms", value_parser = parse_duration)]
    pub app_interval: Duration,

    /// SecretId the simulator accepts.
    #[arg(long = "sim-secret-id", env = "TRTC_SIM_SECRET_ID", default_value = crate::simulator::DEMO_SECRET_ID)]
    pub secret_id: String,

    /// SecretKey the simulator accepts.
    #[arg(long = "sim-secret-key", env = "TRTC_SIM_SECRET_KEY", default_value = crate::simulator::DEMO_SECRET_KEY, hide_default_value = true)]
    pub secret_key: String,

    /// App ids the simulator knows (others get FailedOperation.SdkAppIdNotExist); default: any.
    #[arg(long = "sim-apps", env = "TRTC_SIM_APPS", value_delimiter = ',')]
    pub apps: Vec<u64>,

    /// Typical rooms per app and day.
    #[arg(long = "sim-rooms", env = "TRTC_SIM_ROOMS", default_value_t = 40)]
    pub rooms: u64,

    /// Serve exactly --sim-rooms rooms for every app and day (benchmarks).
    #[arg(long = "sim-exact-rooms")]
    pub exact_rooms: bool,
}

/// `demo` reads no environment variable: it must never pick up a
/// production `TRTC_DEST` (or any other export setting) by accident.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Where to write: a lake of simulated data, which a real export refuses to write into (and the demo refuses a real lake).
    #[arg(long, default_value = "./warehouse")]
    pub dest: String,

    /// How many simulated apps.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=20))]
    pub apps: u64,

    /// How many days, ending yesterday.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=90))]
    pub days: u32,

    /// Spacing between DescribeTrtcRoomUsage calls, which the simulator enforces too; the real API's is 15s.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub min_interval: Duration,

    /// Typical rooms per app and day.
    #[arg(long, default_value_t = 40)]
    pub rooms: u64,

    /// Progress display.
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    pub progress: Progress,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15s").unwrap(), Duration::from_secs(15));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86400));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1").is_err());
    }

    #[test]
    fn tolerances_are_percentages() {
        assert_eq!(parse_tolerance("1%").unwrap(), 0.01);
        assert_eq!(parse_tolerance(" 0.5 % ").unwrap(), 0.005);
        assert_eq!(parse_tolerance("2").unwrap(), 0.02);
        assert_eq!(parse_tolerance("0%").unwrap(), 0.0);
        for bad in ["-1%", "101%", "NaN", "one"] {
            assert!(parse_tolerance(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_are_bounded() {
        for bad in ["1e20", "1e19", "367d", "inf", "NaN", "-1"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(parse_positive_duration("0").is_err());
        assert_eq!(parse_duration("366d").unwrap(), MAX_DURATION);
    }

    use proptest::prelude::Strategy as _;

    proptest::proptest! {
        /// Whatever values the flags get, parsing and validating them ends
        /// in a configuration or one error line, never a panic.
        #[test]
        fn any_flag_values_parse_or_fail_without_panic(
            values in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::string::string_regex("[0-9a-z.:+-]{0,12}").unwrap(),
                    proptest::prelude::any::<u64>().prop_map(|n| n.to_string()),
                    proptest::prelude::any::<f64>().prop_map(|n| n.to_string()),
                    proptest::prelude::Just("1e20".to_owned()),
                    proptest::prelude::Just("100000000".to_owned()),
                    proptest::prelude::Just("9999-12-31".to_owned()),
                    proptest::prelude::Just("+14:59".to_owned()),
                ],
                9,
            )
        ) {
            let flags = [
                "--lookback-days", "--min-interval", "--settle", "--retry-backoff",
                "--request-timeout", "--utc-offset", "--start", "--max-attempts",
                "--check-tolerance",
            ];
            let now = chrono::Utc::now();
            for (flag, value) in flags.iter().zip(&values) {
                let argv = ["trtc-usage", "export", "--app-id", "1", "--dry-run", flag, value];
                if let Ok(Cli { command: Command::Export(args), .. }) = Cli::try_parse_from(argv)
                    && let Ok(cfg) = crate::jobs::config::JobConfig::from_args(&args, now)
                {
                    let _ = crate::jobs::plan::wall_time(cfg.days.len(), cfg.min_interval);
                }
            }
        }
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn app_ids_repeat_or_comma() {
        let cli = Cli::try_parse_from([
            "trtc-usage",
            "export",
            "--app-id",
            "1,2",
            "--app-id",
            "3",
            "--date",
            "2026-11-20",
        ])
        .unwrap();
        let Command::Export(a) = cli.command else {
            panic!()
        };
        assert_eq!(a.app_ids, vec![1, 2, 3]);
        assert!(Cli::try_parse_from(["trtc-usage", "export", "--app-id", "x"]).is_err());
        assert!(Cli::try_parse_from(["trtc-usage", "export", "--app-id", "0"]).is_err());
    }

    #[test]
    fn date_conflicts_with_a_range() {
        let r = Cli::try_parse_from([
            "trtc-usage",
            "export",
            "--app-id",
            "1",
            "--date",
            "2026-11-20",
            "--start",
            "2026-11-19",
        ]);
        assert!(r.is_err());
    }
}
