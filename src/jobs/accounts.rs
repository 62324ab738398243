//! Many Tencent Cloud accounts, one lake (`--accounts FILE`, `--account`):
//! the accounts file, checked before any call, and what each account
//! brings (its apps, credentials, endpoint and region).
//!
//! TRTC's rate limits are per account, so each account gets its own pacers
//! and its own credentials. The file never holds a secret: it names the
//! environment variables, or the profile file, where each account's keys
//! are, as the official SDKs would read them. `docs/accounts.md` shows the
//! file; `jobs/accounts.example.toml` is a commented one.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use url::Url;

use crate::tencent::credentials::{self, Credentials, Env, Secret};

/// Where an account's keys are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// Environment variables, by name (the values are never in the file).
    Env {
        secret_id: String,
        secret_key: String,
        token: Option<String>,
    },
    /// A profile file, as `~/.tencentcloud/credentials` (`[default]`).
    File(PathBuf),
}

/// One account of the file, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub app_ids: Vec<u64>,
    pub credentials: CredentialSource,
    /// `None`: `--endpoint`.
    pub endpoint: Option<String>,
    /// `None`: `--region`.
    pub region: Option<String>,
    /// For the `cost` table: the account's own billing account id.
    pub billing_account_id: Option<String>,
}

/// Everything wrong with the file (or the selection), one problem a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountsError {
    pub file: PathBuf,
    pub problems: Vec<String>,
}

impl std::fmt::Display for AccountsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lines: Vec<String> = self
            .problems
            .iter()
            .map(|p| format!("--accounts {}: {p}", self.file.display()))
            .collect();
        f.write_str(&lines.join("\n"))
    }
}

impl std::error::Error for AccountsError {}

const KEYS: [&str; 9] = [
    "name",
    "app_ids",
    "secret_id_env",
    "secret_key_env",
    "token_env",
    "credentials_file",
    "endpoint",
    "region",
    "billing_account_id",
];

pub const REGIONS: [&str; 2] = ["ap-guangzhou", "ap-singapore"];

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Reads and checks the accounts file: every problem is reported, one a
/// line; none of it needs the network or the credentials themselves. An
/// endpoint must be https, or http to loopback unless `allow_insecure`.
pub fn load(path: &Path, allow_insecure: bool) -> Result<Vec<Account>, AccountsError> {
    let fail = |problems: Vec<String>| AccountsError {
        file: path.to_owned(),
        problems,
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| fail(vec![format!("cannot be read ({e})")]))?;
    let table = parse_toml(&text).map_err(|e| fail(vec![e]))?;
    let mut problems = Vec::new();
    for key in table.keys().filter(|k| k.as_str() != "account") {
        problems.push(format!(
            "unknown key '{key}' (the file holds [[account]] tables only)"
        ));
    }
    let entries: &[toml::Value] = match table.get("account") {
        None => {
            problems.push("no [[account]] table".into());
            &[]
        }
        Some(toml::Value::Array(a)) => a,
        Some(_) => {
            problems.push("'account' must be [[account]] tables".into());
            &[]
        }
    };
    let mut accounts = Vec::new();
    let mut owner: BTreeMap<u64, String> = BTreeMap::new();
    for (i, entry) in entries.iter().enumerate() {
        let Some(t) = entry.as_table() else {
            problems.push(format!("account #{i}: not a table"));
            continue;
        };
        let label = match t.get("name").and_then(toml::Value::as_str) {
            Some(n) => format!("account '{n}' (#{i})"),
            None => format!("account #{i}"),
        };
        let mut problem = |what: String| problems.push(format!("{label}: {what}"));
        for key in t.keys().filter(|k| !KEYS.contains(&k.as_str())) {
            problem(format!("unknown key '{key}' (known: {})", KEYS.join(", ")));
        }
        let string = |key: &str, problem: &mut dyn FnMut(String)| string_of(t, key, problem);
        let name = string("name", &mut problem);
        match &name {
            None if !t.contains_key("name") => problem("no 'name'".into()),
            Some(n) if !valid_name(n) => problem(format!(
                "name '{n}' may hold only A-Z, a-z, 0-9, '_' and '-'"
            )),
            // `--account N` is an index when N is all digits.
            Some(n) if n.chars().all(|c| c.is_ascii_digit()) => problem(format!(
                "name '{n}' is all digits, which --account reads as an index; \
                 give it a letter (say 'account-{n}')"
            )),
            _ => {}
        }
        let app_ids = app_ids_of(t, &mut problem);
        for &app in &app_ids {
            let me = name.clone().unwrap_or_else(|| format!("#{i}"));
            if let Some(other) = owner.get(&app) {
                problem(format!(
                    "app id {app} is also in account '{other}'; an app belongs to one account"
                ));
            } else {
                owner.insert(app, me);
            }
        }
        let credentials = credentials_of(t, path, &mut problem);
        let endpoint = string("endpoint", &mut problem);
        if let Some(e) = &endpoint
            && let Err(err) = check_endpoint(e, allow_insecure)
        {
            problem(err.to_string().replacen("--endpoint", "endpoint", 1));
        }
        let region = string("region", &mut problem);
        if let Some(r) = &region
            && !REGIONS.contains(&r.as_str())
        {
            problem(format!("region '{r}' is not one of {}", REGIONS.join(", ")));
        }
        let billing_account_id = string("billing_account_id", &mut problem);
        if let Some(p) = billing_account_id
            .as_deref()
            .and_then(|b| crate::tables::prices::id_problem("billing_account_id", b))
        {
            problem(p);
        }
        if let (Some(name), Some(credentials)) = (name, credentials) {
            if accounts.iter().any(|a: &Account| a.name == name) {
                problems.push(format!("{label}: the name '{name}' is given twice"));
            }
            accounts.push(Account {
                name,
                app_ids,
                credentials,
                endpoint,
                region,
                billing_account_id,
            });
        }
    }
    if problems.is_empty() {
        Ok(accounts)
    } else {
        Err(fail(problems))
    }
}

/// The file's text as TOML; the error names the line, and the likely slip.
fn parse_toml(text: &str) -> Result<toml::Table, String> {
    text.parse().map_err(|e: toml::de::Error| {
        let line = e
            .span()
            .map(|s| format!("line {}: ", text[..s.start].matches('\n').count() + 1))
            .unwrap_or_default();
        let hint = match text.lines().any(|l| l.trim() == "[account]") {
            true => "; each account is an [[account]] table (two brackets)",
            false => "",
        };
        format!("{line}not TOML ({}){hint}", e.message().trim())
    })
}

/// The string at `key`, trimmed; a problem when it is there but not a
/// non-empty string.
fn string_of(t: &toml::Table, key: &str, problem: &mut dyn FnMut(String)) -> Option<String> {
    match t.get(key) {
        None => None,
        Some(toml::Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Some(_) => {
            problem(format!("'{key}' must be a non-empty string"));
            None
        }
    }
}

/// An account's `app_ids`, each a positive integer, once.
fn app_ids_of(t: &toml::Table, problem: &mut dyn FnMut(String)) -> Vec<u64> {
    let mut app_ids = Vec::new();
    match t.get("app_ids") {
        None => problem("no 'app_ids'".into()),
        Some(toml::Value::Array(ids)) if !ids.is_empty() => {
            for id in ids {
                match id.as_integer() {
                    Some(n) if n > 0 => {
                        let n = n as u64;
                        if app_ids.contains(&n) {
                            problem(format!("app id {n} is listed twice"));
                        } else {
                            app_ids.push(n);
                        }
                    }
                    _ => problem(format!("app id {id} is not a positive integer")),
                }
            }
        }
        Some(_) => problem("'app_ids' must be a non-empty list of app ids".into()),
    }
    app_ids
}

/// Where an account's keys come from: two environment variables (and a
/// token's), or a credentials file (relative to the accounts file).
fn credentials_of(
    t: &toml::Table,
    path: &Path,
    problem: &mut dyn FnMut(String),
) -> Option<CredentialSource> {
    let id_env = string_of(t, "secret_id_env", problem);
    let key_env = string_of(t, "secret_key_env", problem);
    let token_env = string_of(t, "token_env", problem);
    let file = string_of(t, "credentials_file", problem);
    match (id_env, key_env, file) {
        (Some(secret_id), Some(secret_key), None) => Some(CredentialSource::Env {
            secret_id,
            secret_key,
            token: token_env,
        }),
        (None, None, Some(file)) if token_env.is_none() => {
            // A relative path is the accounts file's neighbour, as a
            // ConfigMap mounts them, wherever the job is started.
            let file = PathBuf::from(file);
            Some(CredentialSource::File(match path.parent() {
                Some(dir) if file.is_relative() => dir.join(file),
                _ => file,
            }))
        }
        (None, None, Some(_)) => {
            problem("'token_env' goes with 'secret_id_env' and 'secret_key_env'; a credentials_file holds its own token".into());
            None
        }
        (None, None, None) => {
            problem("no credentials: give 'secret_id_env' and 'secret_key_env' (names of environment variables), or 'credentials_file'".into());
            None
        }
        (_, _, Some(_)) => {
            problem(
                "give either 'secret_id_env' and 'secret_key_env', or 'credentials_file', not both"
                    .into(),
            );
            None
        }
        (Some(_), None, None) => {
            problem("'secret_id_env' without 'secret_key_env'".into());
            None
        }
        (None, Some(_), None) => {
            problem("'secret_key_env' without 'secret_id_env'".into());
            None
        }
    }
}

/// The accounts `--account` picks: one by name or by 0-based index (a
/// Kubernetes Indexed Job passes `$JOB_COMPLETION_INDEX`), or all.
pub fn select(
    file: &Path,
    accounts: Vec<Account>,
    which: Option<&str>,
) -> Result<Vec<Account>, AccountsError> {
    let Some(which) = which else {
        return Ok(accounts);
    };
    let names: Vec<&str> = accounts.iter().map(|a| a.name.as_str()).collect();
    // All digits: an index (an Indexed Job's JOB_COMPLETION_INDEX), never
    // a name (names are never all digits).
    let found = if !which.is_empty() && which.chars().all(|c| c.is_ascii_digit()) {
        which.parse::<usize>().ok().filter(|i| *i < accounts.len())
    } else {
        accounts.iter().position(|a| a.name == which)
    };
    match found {
        Some(i) => Ok(vec![accounts[i].clone()]),
        None => Err(AccountsError {
            file: file.to_owned(),
            problems: vec![format!(
                "--account {which}: no such account; the file has {} ({}), by name or index 0..{}",
                accounts.len(),
                names.join(", "),
                accounts.len().saturating_sub(1)
            )],
        }),
    }
}

/// Account `name`'s keys, from where the file says they are; an error
/// names the account and the variable or file (never a value).
pub fn credentials(
    name: &str,
    source: &CredentialSource,
    env: &dyn Env,
) -> Result<Credentials, String> {
    let fail = |what: String| format!("account '{name}': {what}");
    match source {
        CredentialSource::Env {
            secret_id,
            secret_key,
            token,
        } => {
            let var = |name: &str| -> Result<String, String> {
                match env.var(name) {
                    None => Err(fail(format!("environment variable {name} is not set"))),
                    Some(v) if v.trim().is_empty() => {
                        Err(fail(format!("environment variable {name} is empty")))
                    }
                    Some(v) => Ok(v.trim().to_owned()),
                }
            };
            let id = var(secret_id)?;
            let key = var(secret_key)?;
            let token = token.as_deref().map(var).transpose()?;
            Ok(Credentials {
                secret_id: id,
                secret_key: Secret::new(key),
                token: token.map(Secret::new),
                source: format!("environment ({secret_id}, {secret_key})"),
            })
        }
        CredentialSource::File(path) => {
            credentials::from_profile(path).map_err(|e| fail(e.to_string()))
        }
    }
}

/// An endpoint that must not be used (`--endpoint`, or an account's).
#[derive(Debug, thiserror::Error)]
#[error("--endpoint {endpoint}: {reason}")]
pub struct EndpointError {
    pub endpoint: String,
    pub reason: String,
}

/// Whether `url` may carry credentials: https anywhere, http only to
/// loopback unless explicitly allowed.
pub fn check_endpoint(raw: &str, allow_insecure: bool) -> Result<Url, EndpointError> {
    // The endpoint as messages show it: a password in it is never printed.
    let parsed = Url::parse(raw);
    let shown = match &parsed {
        Ok(u) if !u.username().is_empty() || u.password().is_some() => {
            let mut u = u.clone();
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string().replacen("://", "://<user info>@", 1)
        }
        _ => raw.to_owned(),
    };
    let fail = |reason: &str| EndpointError {
        endpoint: shown.clone(),
        reason: reason.to_owned(),
    };
    let url = parsed.map_err(|e| fail(&format!("not a URL ({e})")))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(fail(
            "user info (user:password@) has no place in an endpoint; give the host only, \
             and the keys in TENCENTCLOUD_SECRET_ID/TENCENTCLOUD_SECRET_KEY",
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(fail("no host"));
    }
    if url.path() != "/" || url.query().is_some() {
        return Err(fail(
            "give the host only, like https://trtc.tencentcloudapi.com",
        ));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
                Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                None => false,
            };
            if loopback || allow_insecure {
                Ok(url)
            } else {
                Err(fail(
                    "http:// to a non-loopback host would send credentials in clear; use https:// \
                     or pass --allow-insecure-endpoint",
                ))
            }
        }
        other => Err(fail(&format!("unsupported scheme {other}://"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load_str(text: &str) -> Result<Vec<Account>, AccountsError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounts.toml");
        std::fs::write(&path, text).unwrap();
        load(&path, false)
    }

    const GOOD: &str = r#"
[[account]]
name = "cn-main"
app_ids = [1400000001, 1400000002]
secret_id_env = "CN_ID"
secret_key_env = "CN_KEY"
token_env = "CN_TOKEN"

[[account]]
name = "intl"
app_ids = [2000000001]
credentials_file = "/etc/trtc/intl.ini"
endpoint = "https://trtc.intl.tencentcloudapi.com"
region = "ap-singapore"
billing_account_id = "100099"
"#;

    #[test]
    fn reads_accounts_and_selects_by_name_or_index() {
        let a = load_str(GOOD).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].app_ids, [1400000001, 1400000002]);
        assert_eq!(
            a[1].credentials,
            CredentialSource::File("/etc/trtc/intl.ini".into())
        );
        assert_eq!(a[1].region.as_deref(), Some("ap-singapore"));
        let p = Path::new("f");
        assert_eq!(select(p, a.clone(), Some("intl")).unwrap()[0].name, "intl");
        assert_eq!(select(p, a.clone(), Some("1")).unwrap()[0].name, "intl");
        assert_eq!(select(p, a.clone(), None).unwrap().len(), 2);
        let e = select(p, a, Some("2")).unwrap_err().to_string();
        assert_eq!(
            e,
            "--accounts f: --account 2: no such account; the file has 2 (cn-main, intl), by name or index 0..1"
        );
    }

    /// `--account 2` is index 2, not an account named "2": with names
    /// that were all digits an Indexed Job exported one account twice and
    /// another never (issue 31, point 8). Such names are refused.
    #[test]
    fn an_all_digit_account_is_an_index_and_names_are_never_all_digits() {
        let e = load_str(
            "[[account]]\nname='1'\napp_ids=[1]\ncredentials_file='x'\n\
             [[account]]\nname='0'\napp_ids=[2]\ncredentials_file='y'\n",
        )
        .unwrap_err();
        assert_eq!(e.problems.len(), 2, "{e}");
        assert!(e.problems[0].contains("name '1' is all digits"), "{e}");
        let a = load_str(GOOD).unwrap();
        let p = Path::new("f");
        for (i, name) in ["cn-main", "intl"].into_iter().enumerate() {
            let picked = select(p, a.clone(), Some(&i.to_string())).unwrap();
            assert_eq!(picked[0].name, name);
        }
    }

    /// Issue 31, point 12; issue 35: a relative credentials_file is the
    /// accounts file's neighbour; `[account]` for `[[account]]` is named,
    /// with its line; a billing id with a newline is refused.
    #[test]
    fn relative_credentials_files_bracket_typos_and_billing_ids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounts.toml");
        std::fs::write(
            &path,
            "[[account]]\nname='a'\napp_ids=[1]\ncredentials_file='keys/a.ini'\n",
        )
        .unwrap();
        let a = load(&path, false).unwrap();
        assert_eq!(
            a[0].credentials,
            CredentialSource::File(dir.path().join("keys/a.ini"))
        );
        let e = load_str(
            "[account]\nname='a'\napp_ids=[1]\ncredentials_file='x'\n[account]\nname='b'\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("line 5") && e.contains("[[account]]"), "{e}");
        let e = load_str(
            "[[account]]\nname='a'\napp_ids=[1]\ncredentials_file='x'\nbilling_account_id=\"1\\n2\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("control character"), "{e}");
    }

    #[test]
    fn every_problem_is_a_line_of_its_own() {
        let e = load_str(
            r#"
color = "blue"
[[account]]
name = "a b"
app_ids = [1, 1, -3]
secret_id_env = "X"
secret = "oops"

[[account]]
name = "b"
app_ids = [1]
credentials_file = "/x"
secret_key_env = "Y"
region = "mars"
endpoint = "http://example.com"

[[account]]
app_ids = []
"#,
        )
        .unwrap_err();
        let want = [
            "unknown key 'color'",
            "account 'a b' (#0): unknown key 'secret'",
            "account 'a b' (#0): name 'a b' may hold only",
            "account 'a b' (#0): app id 1 is listed twice",
            "account 'a b' (#0): app id -3 is not a positive integer",
            "account 'a b' (#0): 'secret_id_env' without 'secret_key_env'",
            "account 'b' (#1): app id 1 is also in account 'a b'",
            "account 'b' (#1): give either",
            "account 'b' (#1): region 'mars' is not one of ap-guangzhou, ap-singapore",
            "account 'b' (#1): endpoint http://example.com: http:// to a non-loopback host",
            "account #2: no 'name'",
            "account #2: 'app_ids' must be a non-empty list",
            "account #2: no credentials",
        ];
        for w in want {
            assert!(e.problems.iter().any(|p| p.contains(w)), "{w}: {e}");
        }
        assert_eq!(e.problems.len(), want.len(), "{e}");
        assert!(e.to_string().lines().all(|l| l.starts_with("--accounts ")));
        let dup = load_str(
            "[[account]]\nname='a'\napp_ids=[1]\ncredentials_file='x'\n[[account]]\nname='a'\napp_ids=[2]\ncredentials_file='y'\n",
        )
        .unwrap_err();
        assert!(
            dup.problems[0].contains("the name 'a' is given twice"),
            "{dup}"
        );
        assert!(load_str("not toml [").unwrap_err().problems[0].starts_with("line 1: not TOML"));
    }

    #[test]
    fn credentials_come_from_the_named_variables_and_never_show_a_value() {
        let a = &load_str(GOOD).unwrap()[0];
        let env: HashMap<&str, &str> = HashMap::from([
            ("CN_ID", "AKIDx"),
            ("CN_KEY", "s3cr3t"),
            ("CN_TOKEN", "tok"),
        ]);
        let c = credentials(&a.name, &a.credentials, &env).unwrap();
        assert_eq!(c.secret_id, "AKIDx");
        assert_eq!(c.secret_key.expose(), "s3cr3t");
        assert_eq!(c.token.unwrap().expose(), "tok");
        let env: HashMap<&str, &str> = HashMap::from([("CN_ID", "AKIDx"), ("CN_KEY", " ")]);
        let e = credentials(&a.name, &a.credentials, &env).unwrap_err();
        assert_eq!(e, "account 'cn-main': environment variable CN_KEY is empty");
        let intl = &load_str(GOOD).unwrap()[1];
        let e = credentials(&intl.name, &intl.credentials, &env).unwrap_err();
        assert!(
            e.starts_with("account 'intl': ") && e.contains("/etc/trtc/intl.ini"),
            "{e}"
        );
    }

    /// The example in jobs/ and the Kubernetes ConfigMap's file are read
    /// as the job reads them.
    #[test]
    fn the_shipped_accounts_files_are_valid() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let example = load(&root.join("jobs/accounts.example.toml"), false).unwrap();
        assert_eq!(example.len(), 3);
        let yaml =
            std::fs::read_to_string(root.join("jobs/kubernetes/accounts-cronjob.yaml")).unwrap();
        let block: Vec<&str> = yaml
            .lines()
            .skip_while(|l| !l.contains("accounts.toml: |"))
            .skip(1)
            .take_while(|l| l.starts_with("    ") || l.is_empty())
            .map(|l| l.get(4..).unwrap_or(""))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounts.toml");
        std::fs::write(&path, block.join("\n")).unwrap();
        let configmap = load(&path, false).unwrap();
        let names: Vec<&str> = configmap.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["cn-main", "cn-games", "intl"]);
    }
}
