//! Validated job configuration: flags in, typed values out, every
//! cross-flag check made here, before any API call. Components never see
//! raw flags.

use std::time::Duration;

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use url::Url;

use crate::cli::{AccountsArgs, ExportArgs, Progress, RangeArgs, Switch, TableArg};
use crate::jobs::accounts;
pub use crate::jobs::accounts::check_endpoint;
use crate::jobs::plan::{self, DaySpec};
use crate::lake::store::Destination;
use crate::lake::write::Encoding;
use std::sync::Arc;

use crate::tables::Table;
use crate::tables::normalize::SchemaContract;
use crate::tables::prices::{PriceList, PricesError};
use crate::tencent::api::ApiConfig;
use crate::tencent::pacing::RetryPolicy;

/// A usage or configuration error: exit 2, before any API call.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Endpoint(#[from] crate::jobs::accounts::EndpointError),
    #[error("--utc-offset {0}")]
    Offset(String),
    /// `--pushgateway`, `--openlineage-url`: not an http(s) URL with a host.
    #[error("{flag} {url}: {reason}")]
    HttpUrl {
        flag: &'static str,
        url: String,
        reason: String,
    },
    #[error(transparent)]
    Plan(#[from] plan::PlanError),
    #[error(transparent)]
    Store(#[from] crate::lake::store::StoreError),
    /// The lake's clock (or source) refuses the run.
    #[error(transparent)]
    Lake(#[from] crate::lake::marker::MarkerError),
    #[error("--summary-file {path}: cannot be written ({reason})")]
    SummaryFile { path: String, reason: String },
    #[error("--spool-dir {path}: cannot hold temporary files ({reason})")]
    SpoolDir { path: String, reason: String },
    #[error("--app-id {0} is given twice")]
    DuplicateApp(u64),
    #[error("--end {end} is before --start {start}")]
    EndBeforeStart { start: NaiveDate, end: NaiveDate },
    #[error(
        "--tables {given}: {table} is computed from {inputs}, so it needs {needs}; add them, \
         or recompute {table} alone from the lake with `trtc-usage rebuild --tables {table}`"
    )]
    DerivedWithoutInputs {
        given: String,
        table: Table,
        inputs: String,
        /// "both", "it"…
        needs: &'static str,
    },
    /// One line per problem.
    #[error(transparent)]
    Accounts(#[from] accounts::AccountsError),
    /// One line per problem.
    #[error(transparent)]
    Prices(#[from] PricesError),
    #[error(
        "--prices {path}: no billing_account_id for {who}: set billing_account_id in the price list{or_account}"
    )]
    NoBillingAccount {
        path: String,
        who: String,
        or_account: &'static str,
    },
    #[error(
        "--account {0} (or TRTC_ACCOUNT) picks one account of an accounts file: give --accounts \
         FILE (env TRTC_ACCOUNTS) too, or drop it"
    )]
    AccountWithoutAccounts(String),
    #[error("--tables {given}: cost needs a price list; give --prices FILE (env TRTC_PRICES)")]
    CostWithoutPrices { given: String },
}

/// `--prices` read and checked, and every account of the run given a
/// billing account (its own, or the price list's); `None` without it.
/// `accounts`: each account's name (`None` without `--accounts`) and
/// whether it names its own billing account.
pub fn load_prices(
    path: Option<&std::path::Path>,
    accounts: &[(Option<String>, bool)],
) -> Result<Option<Arc<PriceList>>, ConfigError> {
    let Some(path) = path else { return Ok(None) };
    let prices = PriceList::load(path)?;
    if prices.billing_account_id.is_none()
        && let Some((name, _)) = accounts.iter().find(|(_, own)| !own)
    {
        return Err(ConfigError::NoBillingAccount {
            path: path.display().to_string(),
            who: match name {
                Some(name) => format!("account {name}"),
                None => "the account".into(),
            },
            or_account: if name.is_some() {
                " or in the account's entry of --accounts"
            } else {
                ""
            },
        });
    }
    Ok(Some(Arc::new(prices)))
}

/// The tables a run fills: `--tables` as given, or the default ones and
/// `cost` when there is a price list; `cost` without one is a usage error.
pub fn tables_with_prices(given: &[Table], prices: bool) -> Result<Vec<Table>, ConfigError> {
    let mut tables = tables_or_all(given);
    if given.is_empty() && prices {
        tables.push(Table::COST);
    }
    if tables.contains(&Table::COST) && !prices {
        let given: Vec<&str> = given.iter().map(|t| t.name()).collect();
        return Err(ConfigError::CostWithoutPrices {
            given: given.join(","),
        });
    }
    Ok(tables)
}

/// The accounts `--accounts` and `--account` name, checked; `None`
/// without `--accounts`.
pub fn selected_accounts(
    args: &AccountsArgs,
    allow_insecure_endpoint: bool,
) -> Result<Option<Vec<accounts::Account>>, ConfigError> {
    let Some(file) = &args.accounts else {
        // Never silently ignored: it picks one account of a file.
        if let Some(account) = &args.account {
            return Err(ConfigError::AccountWithoutAccounts(account.clone()));
        }
        return Ok(None);
    };
    let all = accounts::load(file, allow_insecure_endpoint)?;
    Ok(Some(accounts::select(file, all, args.account.as_deref())?))
}

/// One account a run exports: its apps, where its API is, its keys.
#[derive(Debug, Clone)]
pub struct AccountRun {
    /// `None` without `--accounts`: the one account the flags describe.
    pub name: Option<String>,
    pub app_ids: Vec<u64>,
    pub api: ApiConfig,
    /// `None`: the official SDKs' chain (environment, profile file, TKE
    /// OIDC, CVM role).
    pub credentials: Option<accounts::CredentialSource>,
    /// For `cost`: the account's own billing account (else the price
    /// list's).
    pub billing_account_id: Option<String>,
}

/// What a failed check does (`--checks`).
/// What a failed reconciliation does (`--checks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ChecksMode {
    /// A warning line per failing (app, day), and a count in the summary.
    Warn,
    /// As warn, and exit 3 once everything is written.
    Fail,
    /// No `checks` table.
    Off,
}

/// What `rebuild` and `status` cover, checked: the lake, the apps and days
/// (each `None` for "all the lake has"), the tables, the API's clock.
#[derive(Debug, Clone)]
pub struct LakeScope {
    pub dest: Destination,
    pub app_ids: Option<Vec<u64>>,
    /// First and last day, inclusive.
    pub days: Option<(NaiveDate, NaiveDate)>,
    pub tables: Vec<Table>,
    /// The API's clock: `--utc-offset`, else the lake's (see
    /// [`LakeScope::resolve_clock`]).
    pub offset: FixedOffset,
    /// `--utc-offset` as given (`None`: the lake's).
    pub given_offset: Option<FixedOffset>,
    /// The accounts `--accounts`/`--account` select (none without them).
    pub accounts: Vec<accounts::Account>,
}

impl LakeScope {
    pub fn from_args(args: &RangeArgs) -> Result<Self, ConfigError> {
        // No call is made: an account's endpoint does not matter here.
        let accounts = selected_accounts(&args.accounts, true)?.unwrap_or_default();
        let app_ids = if accounts.is_empty() {
            unique_apps(&args.app_ids)?
        } else {
            accounts.iter().flat_map(|a| a.app_ids.clone()).collect()
        };
        let days = args.days.range();
        if let Some((start, end)) = days
            && end < start
        {
            return Err(ConfigError::EndBeforeStart { start, end });
        }
        Ok(Self {
            dest: Destination::open(&args.dest)?.knowing(&crate::jobs::all_tables()),
            app_ids: (!app_ids.is_empty()).then_some(app_ids),
            days,
            tables: tables_or_all(&named_tables(&args.tables, false)),
            offset: plan::default_offset(),
            given_offset: args
                .utc_offset
                .as_deref()
                .map(plan::parse_offset)
                .transpose()
                .map_err(ConfigError::Offset)?,
            accounts,
        })
    }

    /// Takes the lake's clock, or refuses `--utc-offset` when it is another
    /// (one lake, one clock); +08:00 for a lake that records none. Reads
    /// only.
    pub async fn resolve_clock(&mut self) -> Result<(), ConfigError> {
        match self.given_offset {
            Some(given) => {
                crate::lake::marker::check_clock(&self.dest, given).await?;
                self.offset = given;
            }
            None => {
                if let Some(c) = crate::lake::marker::clock(&self.dest).await? {
                    self.offset = c.offset;
                }
            }
        }
        Ok(())
    }

    /// Whether `day` is in the range (always, with no range).
    pub fn covers(&self, day: NaiveDate) -> bool {
        self.days.is_none_or(|(s, e)| s <= day && day <= e)
    }

    /// Whether partition (`app`, `day`) is in scope: its app (every app,
    /// with none named) and its day.
    pub fn holds(&self, &(app, day): &(u64, NaiveDate)) -> bool {
        self.covers(day) && self.app_ids.as_ref().is_none_or(|ids| ids.contains(&app))
    }
}

/// The app ids in the order given; one given twice is a usage error.
fn unique_apps(given: &[u64]) -> Result<Vec<u64>, ConfigError> {
    let mut app_ids = Vec::with_capacity(given.len());
    for id in given {
        if app_ids.contains(id) {
            return Err(ConfigError::DuplicateApp(*id));
        }
        app_ids.push(*id);
    }
    Ok(app_ids)
}

/// Checks that `--summary-file` can be written, before any API call (an
/// Airflow XCom file in a directory that does not exist would otherwise
/// fail only at the end). Creates the file if it is absent; its content is
/// written when the run ends.
pub fn check_summary_file(path: Option<&std::path::Path>) -> Result<(), ConfigError> {
    let Some(path) = path else { return Ok(()) };
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map(|_| ())
        .map_err(|e| ConfigError::SummaryFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
}

/// Fails, naming `--spool-dir`, when no temporary file can be made there:
/// checked before any API call.
pub fn check_spool(spool: &crate::spool::SpoolConfig) -> Result<(), ConfigError> {
    spool.check().map_err(|e| ConfigError::SpoolDir {
        path: spool.dir.display().to_string(),
        reason: e.to_string(),
    })
}

/// `--tables` as given, `all` made every table (`cost` only when a price
/// list is given).
pub fn named_tables(given: &[TableArg], prices: bool) -> Vec<Table> {
    let mut out = Vec::new();
    for arg in given {
        match arg {
            TableArg::One(t) => out.push(*t),
            TableArg::All => out.extend(
                crate::jobs::all_tables()
                    .into_iter()
                    .filter(|t| *t != Table::COST || prices),
            ),
        }
    }
    out
}

/// `--tables` as given, each once, or the default tables (all but `cost`).
pub fn tables_or_all(given: &[Table]) -> Vec<Table> {
    if given.is_empty() {
        return Table::DEFAULT.to_vec();
    }
    crate::jobs::all_tables()
        .into_iter()
        .filter(|t| given.contains(t))
        .collect()
}

/// The zstd level of the raw zone, chosen on the benchmark's million-room
/// day (README "The raw zone"): level 1 took 0.15 s and 12.8 MB, level 3
/// 0.45 s and 13.4 MB for the same 33.8 MB body.
pub const RAW_ZSTD_LEVEL: i32 = 1;

/// Everything an export run needs, checked.
#[derive(Debug, Clone)]
pub struct JobConfig {
    /// Every app of the run (of every account).
    pub app_ids: Vec<u64>,
    /// The accounts the run exports, each with its own pacers; one, with
    /// no name, without `--accounts`.
    pub accounts: Vec<AccountRun>,
    pub days: Vec<NaiveDate>,
    /// Warnings the plan produced (old days, say), to log at start.
    pub warnings: Vec<String>,
    pub offset: FixedOffset,
    pub settle: Duration,
    pub force: bool,
    pub contract: SchemaContract,
    pub dest: Destination,
    /// The API of the account being run (of the only one, without
    /// `--accounts`): see [`JobConfig::for_account`].
    pub api: ApiConfig,
    pub min_interval: Duration,
    pub retry: RetryPolicy,
    pub dry_run: bool,
    /// Rows per batch, and where large answers and files are spooled.
    pub encoding: Encoding,
    /// The raw zone's zstd level; `None` under `--raw off`.
    pub raw_level: Option<i32>,
    pub summary_file: Option<std::path::PathBuf>,
    pub progress: Progress,
    /// The tables this run fills (no `checks` under `--checks off`).
    pub tables: Vec<Table>,
    pub checks: ChecksMode,
    /// A fraction: 0.01 is 1%.
    pub check_tolerance: f64,
    /// Spacing of `DescribeTrtcUsage` calls.
    pub app_min_interval: Duration,
    /// The lease's time to live; `None` under `--lease off`.
    pub lease_ttl: Option<Duration>,
    /// Where the data comes from: the simulator only for `demo`.
    pub source: crate::lake::marker::Source,
    /// Check final partitions' SHA-256, not only their size (`--verify`).
    pub verify: bool,
    /// The price list (`--prices`): `cost` is filled with it.
    pub prices: Option<Arc<PriceList>>,
    /// Where the run's metrics go when it ends (`--pushgateway`).
    pub pushgateway: Option<Url>,
    /// And the textfile collector's file (`--metrics-file`).
    pub metrics_file: Option<std::path::PathBuf>,
    /// Where the run's OpenLineage events go, if anywhere.
    pub lineage: Option<crate::jobs::lineage::Lineage>,
}

/// The tables an export fills: `--tables` (or the default ones, and
/// `cost` with a price list), less `checks` under `--checks off`; a
/// derived table without all its inputs is a usage error.
fn export_tables(
    given: &[Table],
    checks: ChecksMode,
    prices: bool,
) -> Result<Vec<Table>, ConfigError> {
    let mut tables = tables_with_prices(given, prices)?;
    for &table in &tables {
        if !table.inputs().iter().all(|i| tables.contains(i)) {
            let names = |ts: &[Table]| ts.iter().map(|t| t.name()).collect::<Vec<_>>();
            return Err(ConfigError::DerivedWithoutInputs {
                given: names(given).join(","),
                table,
                inputs: names(table.inputs()).join(" and "),
                needs: match table.inputs().len() {
                    1 => "it",
                    2 => "both",
                    _ => "all of them",
                },
            });
        }
    }
    if checks == ChecksMode::Off {
        tables.retain(|t| *t != Table::CHECKS);
    }
    Ok(tables)
}

/// A rebuild's price list and each app's billing account (`--accounts`),
/// checked; `cost` joins `scope`'s tables when `--tables` does not say.
#[allow(clippy::type_complexity)]
pub fn rebuild_prices(
    args: &crate::cli::RebuildArgs,
    scope: &mut LakeScope,
) -> Result<
    (
        Option<Arc<PriceList>>,
        std::collections::BTreeMap<u64, String>,
    ),
    ConfigError,
> {
    // The accounts file was read and checked with the scope.
    let accounts = &scope.accounts;
    let runs: Vec<(Option<String>, bool)> = if accounts.is_empty() {
        vec![(None, false)]
    } else {
        accounts
            .iter()
            .map(|a| (Some(a.name.clone()), a.billing_account_id.is_some()))
            .collect()
    };
    let prices = load_prices(args.prices.as_deref(), &runs)?;
    let billing = billing_by_app(
        accounts
            .iter()
            .map(|a| (&a.app_ids[..], a.billing_account_id.as_ref())),
    );
    let given = named_tables(&args.range.tables, prices.is_some());
    scope.tables = tables_with_prices(&given, prices.is_some())?;
    Ok((prices, billing))
}

/// App → its account's own billing account, from each account's apps and
/// `billing_account_id` (an account without one takes the price list's).
fn billing_by_app<'a>(
    accounts: impl Iterator<Item = (&'a [u64], Option<&'a String>)>,
) -> std::collections::BTreeMap<u64, String> {
    accounts
        .filter_map(|(apps, billing)| Some((apps, billing?)))
        .flat_map(|(apps, b)| apps.iter().map(move |app| (*app, b.clone())))
        .collect()
}

/// Where the run's OpenLineage events go (`--openlineage-url`,
/// `--openlineage-file`), with the parent run `OPENLINEAGE_PARENT_ID`
/// names; `None` without either flag. A parent that cannot be read is a
/// warning.
fn lineage(
    args: &ExportArgs,
    warnings: &mut Vec<String>,
) -> Result<Option<crate::jobs::lineage::Lineage>, ConfigError> {
    use crate::jobs::lineage::{Lineage, Parent};
    if args.openlineage_url.is_none() && args.openlineage_file.is_none() {
        return Ok(None);
    }
    let url = args
        .openlineage_url
        .as_deref()
        .map(|raw| http_url("--openlineage-url", raw, "http://marquez:5000"))
        .transpose()?;
    let parent = match std::env::var("OPENLINEAGE_PARENT_ID") {
        Ok(v) if !v.trim().is_empty() => {
            let parent = Parent::parse(v.trim());
            if parent.is_none() {
                warnings.push(format!(
                    "OPENLINEAGE_PARENT_ID '{v}' is not <namespace>/<job>/<run id>; the events name no parent run"
                ));
            }
            parent
        }
        _ => None,
    };
    Ok(Some(Lineage {
        url,
        file: args.openlineage_file.clone(),
        namespace: args.openlineage_namespace.clone(),
        run_id: uuid::Uuid::new_v4().to_string(),
        parent,
    }))
}

/// `flag`'s value: an http(s) URL with a host (its path is kept: a
/// service behind a prefix); the error shows `example`.
fn http_url(flag: &'static str, raw: &str, example: &str) -> Result<Url, ConfigError> {
    let fail = |reason: String| ConfigError::HttpUrl {
        flag,
        url: raw.to_owned(),
        reason,
    };
    let url = Url::parse(raw).map_err(|e| fail(format!("not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(fail(format!(
            "give an http:// or https:// URL with a host, like {example}"
        )));
    }
    Ok(url)
}

impl JobConfig {
    /// Checks `args` as of `now`.
    pub fn from_args(args: &ExportArgs, now: DateTime<Utc>) -> Result<Self, ConfigError> {
        let offset = plan::parse_offset(&args.utc_offset).map_err(ConfigError::Offset)?;
        let spec = match args.days.range() {
            Some((start, end)) => DaySpec::Range { start, end },
            None => DaySpec::Lookback(args.lookback_days),
        };
        let (days, mut warnings) = plan::plan_days(&spec, offset, now)?;
        let lineage = lineage(args, &mut warnings)?;
        let endpoint = check_endpoint(&args.endpoint, args.allow_insecure_endpoint)?;
        let raw_level = (args.raw == Switch::On).then_some(RAW_ZSTD_LEVEL);
        let api = |endpoint: Url, region: &str| ApiConfig {
            endpoint,
            region: region.to_owned(),
            request_timeout: args.request_timeout,
            spool: args.spool.config(),
            raw_level,
            raw_spool: args.spool.config(),
        };
        let mut accounts: Vec<AccountRun> =
            match selected_accounts(&args.accounts, args.allow_insecure_endpoint)? {
                None => vec![AccountRun {
                    name: None,
                    app_ids: unique_apps(&args.app_ids)?,
                    api: api(endpoint.clone(), args.region.as_str()),
                    credentials: None,
                    billing_account_id: None,
                }],
                Some(selected) => selected
                    .into_iter()
                    .map(|a| {
                        // Checked by `accounts::load` (https, or loopback).
                        let endpoint = match &a.endpoint {
                            Some(e) => check_endpoint(e, args.allow_insecure_endpoint)?,
                            None => endpoint.clone(),
                        };
                        let region = a.region.as_deref().unwrap_or(args.region.as_str());
                        Ok(AccountRun {
                            api: api(endpoint, region),
                            name: Some(a.name),
                            app_ids: a.app_ids,
                            credentials: Some(a.credentials),
                            billing_account_id: a.billing_account_id,
                        })
                    })
                    .collect::<Result<_, ConfigError>>()?,
            };
        let app_ids: Vec<u64> = accounts.iter().flat_map(|a| a.app_ids.clone()).collect();
        let named: Vec<(Option<String>, bool)> = accounts
            .iter()
            .map(|a| (a.name.clone(), a.billing_account_id.is_some()))
            .collect();
        let prices = load_prices(args.prices.as_deref(), &named)?;
        let dest = Destination::open(&args.dest)?.knowing(&crate::jobs::all_tables());
        if !args.dry_run {
            check_summary_file(args.summary_file.as_deref())?;
            check_spool(&args.spool.config())?;
        }
        // A dry run creates nothing, not even the lake's directory.
        let encoding = match args.dry_run {
            true => Encoding {
                spool: args.spool.config(),
                ..Encoding::default()
            },
            false => Encoding::new(args.spool.config(), &dest),
        };
        // Each client's raw copies, begun as bodies download, are built
        // where the lake's other files are (known once the destination is).
        for account in &mut accounts {
            account.api.raw_spool = encoding.outputs.clone();
        }
        Ok(Self {
            app_ids,
            api: accounts[0].api.clone(),
            accounts,
            days,
            warnings,
            offset,
            settle: args.settle,
            force: args.force,
            contract: args.schema_contract,
            dest,
            min_interval: args.min_interval,
            retry: RetryPolicy {
                max_attempts: args.max_attempts,
                backoff_base: args.retry_backoff,
                backoff_max: Duration::from_secs(60).max(args.retry_backoff),
            },
            dry_run: args.dry_run,
            encoding,
            raw_level,
            summary_file: args.summary_file.clone(),
            pushgateway: args
                .pushgateway
                .as_deref()
                .map(|raw| http_url("--pushgateway", raw, "http://pushgateway:9091"))
                .transpose()?,
            metrics_file: args.metrics_file.clone(),
            lineage,
            progress: args.progress,
            tables: export_tables(
                &named_tables(&args.tables, prices.is_some()),
                args.checks.checks,
                prices.is_some(),
            )?,
            checks: args.checks.checks,
            check_tolerance: args.checks.check_tolerance,
            app_min_interval: args.app_min_interval,
            lease_ttl: args.lease.ttl(),
            source: crate::lake::marker::Source::TencentCloud,
            verify: args.verify,
            prices,
        })
    }

    /// This run narrowed to one account: its apps and its API (the lake,
    /// its fences and every other setting shared).
    pub fn for_account(&self, account: &AccountRun) -> JobConfig {
        JobConfig {
            app_ids: account.app_ids.clone(),
            api: account.api.clone(),
            accounts: vec![account.clone()],
            ..self.clone()
        }
    }

    /// The derived tables this run fills, as its settings make them.
    pub fn derived(&self) -> Vec<Box<dyn crate::jobs::derive::Derived>> {
        let settings = crate::jobs::derive::Settings {
            check_tolerance: self.check_tolerance,
            prices: self.prices.clone(),
            billing_accounts: billing_by_app(
                self.accounts
                    .iter()
                    .map(|a| (&a.app_ids[..], a.billing_account_id.as_ref())),
            ),
            kept_billing: Default::default(),
            offset: self.offset,
        };
        crate::jobs::derive::registry(&settings, &self.tables)
    }

    /// The offset as written in manifests, e.g. `+08:00`.
    pub fn offset_label(&self) -> String {
        self.offset.to_string()
    }

    /// Where and how this run writes fetched partitions.
    pub fn fetch_context(&self) -> crate::jobs::fetch::Context<'_> {
        crate::jobs::fetch::Context {
            dest: &self.dest,
            contract: self.contract,
            encoding: &self.encoding,
            offset: self.offset,
            raw_level: self.raw_level,
        }
    }

    /// Where and how this run writes derived partitions.
    pub fn derive_context(&self) -> crate::jobs::derive::Context<'_> {
        crate::jobs::derive::Context {
            dest: &self.dest,
            utc_offset: self.offset_label(),
            encoding: &self.encoding,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert!(check_endpoint("https://trtc.tencentcloudapi.com", false).is_ok());
        assert!(check_endpoint("http://127.0.0.1:8300", false).is_ok());
        assert!(check_endpoint("http://localhost:8300/", false).is_ok());
        assert!(check_endpoint("http://[::1]:8300", false).is_ok());
        let e = check_endpoint("http://trtc.example.com", false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--endpoint http://trtc.example.com")
                && e.contains("--allow-insecure-endpoint"),
            "{e}"
        );
        assert!(check_endpoint("http://trtc.example.com", true).is_ok());
        assert!(check_endpoint("ftp://x", true).is_err());
        assert!(check_endpoint("https://x/path", false).is_err());
        assert!(check_endpoint("not a url", false).is_err());
    }

    #[test]
    fn an_endpoint_with_user_info_is_refused_without_showing_it() {
        for raw in [
            "https://u:s3cr3tpw@trtc.tencentcloudapi.com",
            "https://s3cr3tpw@trtc.tencentcloudapi.com",
            "http://u:s3cr3tpw@127.0.0.1:8300",
        ] {
            let e = check_endpoint(raw, true).unwrap_err().to_string();
            assert!(e.contains("user info"), "{e}");
            assert!(e.starts_with("--endpoint http"), "{e}");
            assert!(!e.contains("s3cr3tpw"), "the password is never shown: {e}");
        }
    }
}
