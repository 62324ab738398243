//! Tencent Cloud credentials, found the way the official SDKs find them:
//! the environment first, then the profile file.
//!
//! Secrets live in [`Secret`], which never prints its value in `Debug` or
//! `Display`, so no log line, error or panic message can leak a key.

use std::path::{Path, PathBuf};

/// A string that must never be shown: it redacts itself when formatted.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value, for the signer and the wire only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A SecretId/SecretKey pair, with the token of temporary credentials.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// The SecretId is an identifier, not a secret: it appears in every
    /// `Authorization` header and in Tencent's own logs.
    pub secret_id: String,
    pub secret_key: Secret,
    pub token: Option<Secret>,
    /// Where they came from, for the log line that says which were used.
    pub source: String,
}

/// Where the client gets the credentials for each call. Static keys today;
/// providers that refresh temporary keys plug in here.
#[derive(Debug, Clone)]
pub enum Provider {
    Static(Credentials),
}

impl Provider {
    /// The credentials to sign the next call with.
    pub async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        match self {
            Provider::Static(c) => Ok(c.clone()),
        }
    }

    /// Where the credentials come from, for the start-up log line.
    pub fn describe(&self) -> String {
        match self {
            Provider::Static(c) => format!("{} (SecretId {})", c.source, c.secret_id),
        }
    }
}

/// Why no usable credentials were found.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("{name} is set but empty; unset it or give it a value")]
    EmptyEnv { name: &'static str },
    #[error("{set} is set but {missing} is not; set both")]
    HalfSetEnv {
        set: &'static str,
        missing: &'static str,
    },
    #[error("credentials file {path}: {reason}")]
    Profile { path: PathBuf, reason: String },
    #[error(
        "no Tencent Cloud credentials: set TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY \
         (and TENCENTCLOUD_SESSION_TOKEN for temporary keys), or write them to \
         ~/.tencentcloud/credentials"
    )]
    NotFound,
}

/// Reads environment variables; a seam so tests need not touch the process
/// environment.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for std::collections::HashMap<&str, &str> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).map(|v| v.to_string())
    }
}

const ENV_ID: &str = "TENCENTCLOUD_SECRET_ID";
const ENV_KEY: &str = "TENCENTCLOUD_SECRET_KEY";
const ENV_TOKENS: [&str; 2] = ["TENCENTCLOUD_SESSION_TOKEN", "TENCENTCLOUD_TOKEN"];

fn non_empty(env: &dyn Env, name: &'static str) -> Result<Option<String>, CredentialsError> {
    match env.var(name) {
        None => Ok(None),
        Some(v) if v.trim().is_empty() => Err(CredentialsError::EmptyEnv { name }),
        Some(v) => Ok(Some(v.trim().to_owned())),
    }
}

/// Credentials from `TENCENTCLOUD_SECRET_ID` / `TENCENTCLOUD_SECRET_KEY` and
/// an optional token; `Ok(None)` when neither id nor key is set.
pub fn from_env(env: &dyn Env) -> Result<Option<Credentials>, CredentialsError> {
    let id = non_empty(env, ENV_ID)?;
    let key = non_empty(env, ENV_KEY)?;
    let mut token = None;
    for name in ENV_TOKENS {
        if let Some(t) = non_empty(env, name)? {
            token = Some(Secret::new(t));
            break;
        }
    }
    match (id, key) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(CredentialsError::HalfSetEnv {
            set: ENV_ID,
            missing: ENV_KEY,
        }),
        (None, Some(_)) => Err(CredentialsError::HalfSetEnv {
            set: ENV_KEY,
            missing: ENV_ID,
        }),
        (Some(secret_id), Some(key)) => Ok(Some(Credentials {
            secret_id,
            secret_key: Secret::new(key),
            token,
            source: "environment".into(),
        })),
    }
}

/// The profile files the SDKs read, in order.
pub fn profile_paths(env: &dyn Env) -> Vec<PathBuf> {
    if let Some(p) = env
        .var("TENCENTCLOUD_CREDENTIALS_FILE")
        .filter(|p| !p.is_empty())
    {
        return vec![PathBuf::from(p)];
    }
    let mut paths = Vec::new();
    if let Some(home) = env.var("HOME").filter(|h| !h.is_empty()) {
        paths.push(Path::new(&home).join(".tencentcloud").join("credentials"));
    }
    paths.push(PathBuf::from("/etc/tencentcloud/credentials"));
    paths
}

/// Reads the `[default]` section of a profile file.
pub fn from_profile(path: &Path) -> Result<Credentials, CredentialsError> {
    let fail = |reason: String| CredentialsError::Profile {
        path: path.to_owned(),
        reason,
    };
    let ini = ini::Ini::load_from_file(path).map_err(|e| fail(e.to_string()))?;
    let section = ini
        .section(Some("default"))
        .ok_or_else(|| fail("no [default] section".into()))?;
    let get = |key: &str| {
        section
            .get(key)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let secret_id = get("secret_id").ok_or_else(|| fail("secret_id missing or empty".into()))?;
    let secret_key = get("secret_key").ok_or_else(|| fail("secret_key missing or empty".into()))?;
    Ok(Credentials {
        secret_id,
        secret_key: Secret::new(secret_key),
        token: get("token").map(Secret::new),
        source: format!("profile file {}", path.display()),
    })
}

/// The static part of the SDKs' chain: environment, then the first profile
/// file that exists.
pub fn resolve(env: &dyn Env) -> Result<Credentials, CredentialsError> {
    if let Some(c) = from_env(env)? {
        return Ok(c);
    }
    for path in profile_paths(env) {
        if path.is_file() {
            return from_profile(&path);
        }
    }
    Err(CredentialsError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn env_pair_with_either_token_name() {
        let env = HashMap::from([
            (ENV_ID, "AKIDx"),
            (ENV_KEY, "key"),
            ("TENCENTCLOUD_TOKEN", "tok"),
        ]);
        let c = from_env(&env).unwrap().unwrap();
        assert_eq!(c.secret_id, "AKIDx");
        assert_eq!(c.secret_key.expose(), "key");
        assert_eq!(c.token.unwrap().expose(), "tok");
        let env = HashMap::from([
            (ENV_ID, "AKIDx"),
            (ENV_KEY, "key"),
            ("TENCENTCLOUD_SESSION_TOKEN", "tok2"),
        ]);
        assert_eq!(
            from_env(&env).unwrap().unwrap().token.unwrap().expose(),
            "tok2"
        );
    }

    #[test]
    fn set_but_empty_is_an_error_not_absent() {
        let env = HashMap::from([(ENV_ID, "AKIDx"), (ENV_KEY, "")]);
        let err = from_env(&env).unwrap_err().to_string();
        assert!(
            err.contains("TENCENTCLOUD_SECRET_KEY is set but empty"),
            "{err}"
        );
        let env = HashMap::from([
            (ENV_ID, "AKIDx"),
            (ENV_KEY, "k"),
            ("TENCENTCLOUD_TOKEN", " "),
        ]);
        assert!(from_env(&env).is_err());
    }

    #[test]
    fn half_set_pair_names_the_missing_variable() {
        let env = HashMap::from([(ENV_ID, "AKIDx")]);
        let err = from_env(&env).unwrap_err().to_string();
        assert!(err.contains("TENCENTCLOUD_SECRET_KEY"), "{err}");
    }

    #[test]
    fn profile_file_is_read_when_env_is_absent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        std::fs::write(&path, "[default]\nsecret_id = AKIDp\nsecret_key = pk\n").unwrap();
        let p = path.to_str().unwrap();
        let env = HashMap::from([("TENCENTCLOUD_CREDENTIALS_FILE", p)]);
        let c = resolve(&env).unwrap();
        assert_eq!(c.secret_id, "AKIDp");
        assert_eq!(c.secret_key.expose(), "pk");
        assert!(c.token.is_none());
        assert!(c.source.contains("profile"));
    }

    #[test]
    fn home_profile_then_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().to_str().unwrap();
        let env = HashMap::from([("HOME", home)]);
        if !Path::new("/etc/tencentcloud/credentials").exists() {
            assert!(matches!(resolve(&env), Err(CredentialsError::NotFound)));
        }
        std::fs::create_dir(dir.path().join(".tencentcloud")).unwrap();
        std::fs::write(
            dir.path().join(".tencentcloud/credentials"),
            "[default]\nsecret_id=AKIDh\nsecret_key=hk\ntoken=ht\n",
        )
        .unwrap();
        let c = resolve(&env).unwrap();
        assert_eq!(c.secret_id, "AKIDh");
        assert_eq!(c.token.unwrap().expose(), "ht");
    }

    #[test]
    fn profile_without_key_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        std::fs::write(&path, "[default]\nsecret_id=AKID\n").unwrap();
        let err = from_profile(&path).unwrap_err().to_string();
        assert!(
            err.contains("secret_key") && err.contains(path.to_str().unwrap()),
            "{err}"
        );
    }

    #[test]
    fn debug_redacts_secrets() {
        let c = Credentials {
            secret_id: "AKIDvisible".into(),
            secret_key: Secret::new("supersecretkey"),
            token: Some(Secret::new("supersecrettoken")),
            source: "test".into(),
        };
        let shown = format!("{c:?}");
        assert!(shown.contains("AKIDvisible"));
        assert!(!shown.contains("supersecret"), "{shown}");
        assert_eq!(c.secret_key.to_string(), "<redacted>");
    }
}
