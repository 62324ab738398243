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

/// Where the client gets the credentials for each call: static keys, or
/// temporary keys that are fetched and refreshed before they expire.
#[derive(Debug, Clone)]
pub enum Provider {
    Static(Credentials),
    Refreshing(std::sync::Arc<Refreshing>),
}

impl Provider {
    /// The credentials to sign the next call with.
    pub async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        match self {
            Provider::Static(c) => Ok(c.clone()),
            Provider::Refreshing(r) => r.get().await,
        }
    }

    /// Where the credentials come from, for the start-up log line.
    pub fn describe(&self) -> String {
        match self {
            Provider::Static(c) => format!("{} (SecretId {})", c.source, c.secret_id),
            Provider::Refreshing(r) => r.source.describe(),
        }
    }
}

/// Refresh temporary credentials this long before they expire.
pub const REFRESH_BEFORE_SECS: i64 = 300;

/// A remote source of temporary credentials.
#[derive(Debug, Clone)]
pub enum RemoteSource {
    /// TKE OIDC: `AssumeRoleWithWebIdentity` with the pod's token file.
    Tke {
        sts_endpoint: url::Url,
        region: String,
        provider_id: String,
        token_file: PathBuf,
        role_arn: String,
        session_name: String,
    },
    /// The CVM instance role, from the metadata service.
    Cvm { metadata_endpoint: url::Url },
}

impl RemoteSource {
    fn describe(&self) -> String {
        match self {
            RemoteSource::Tke {
                role_arn,
                sts_endpoint,
                ..
            } => {
                format!("TKE OIDC role {role_arn} via {sts_endpoint}")
            }
            RemoteSource::Cvm { metadata_endpoint } => {
                format!("CVM instance role via {metadata_endpoint}")
            }
        }
    }
}

/// Temporary credentials with their expiry, fetched on first use and
/// again [`REFRESH_BEFORE_SECS`] before they expire.
pub struct Refreshing {
    source: RemoteSource,
    http: reqwest::Client,
    cached: tokio::sync::Mutex<Option<(Credentials, i64)>>,
}

impl std::fmt::Debug for Refreshing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refreshing")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Deserialize)]
struct StsEnvelope {
    #[serde(rename = "Response")]
    response: StsResponse,
}

#[derive(serde::Deserialize)]
struct StsResponse {
    #[serde(rename = "Credentials")]
    credentials: Option<TmpKeys>,
    #[serde(rename = "ExpiredTime")]
    expired_time: Option<i64>,
    #[serde(rename = "Error")]
    error: Option<crate::tencent::error::ErrorBody>,
    #[serde(rename = "RequestId", default)]
    request_id: String,
}

/// Temporary keys, as both STS and the CVM metadata service name them.
#[derive(serde::Deserialize)]
struct TmpKeys {
    #[serde(rename = "TmpSecretId")]
    tmp_secret_id: String,
    #[serde(rename = "TmpSecretKey")]
    tmp_secret_key: String,
    #[serde(rename = "Token")]
    token: String,
}

impl TmpKeys {
    fn into_credentials(self, source: String) -> Credentials {
        Credentials {
            secret_id: self.tmp_secret_id,
            secret_key: Secret::new(self.tmp_secret_key),
            token: Some(Secret::new(self.token)),
            source,
        }
    }
}

#[derive(serde::Deserialize)]
struct CvmCredentials {
    #[serde(flatten)]
    keys: TmpKeys,
    #[serde(rename = "ExpiredTime")]
    expired_time: i64,
    #[serde(rename = "Code", default)]
    code: String,
}

impl Refreshing {
    pub fn new(source: RemoteSource) -> Self {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .expect("an HTTP client");
        Self {
            source,
            http,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    async fn get(&self) -> Result<Credentials, CredentialsError> {
        let mut cached = self.cached.lock().await;
        let now = chrono::Utc::now().timestamp();
        if let Some((c, expires)) = cached.as_ref()
            && now < expires - REFRESH_BEFORE_SECS
        {
            return Ok(c.clone());
        }
        match self.fetch().await {
            Ok((c, expires)) => {
                tracing::info!(
                    source = %self.source.describe(),
                    secret_id = %c.secret_id,
                    expires_in_secs = expires - now,
                    "Fetched temporary credentials."
                );
                *cached = Some((c.clone(), expires));
                Ok(c)
            }
            // Still valid, only due for refresh: keep using them.
            Err(e) if cached.as_ref().is_some_and(|(_, exp)| now < *exp - 30) => {
                tracing::warn!(error = %e, "Cannot refresh temporary credentials; using the current ones until they expire.");
                Ok(cached.as_ref().expect("checked").0.clone())
            }
            Err(e) => Err(e),
        }
    }

    fn remote_error(&self, reason: impl std::fmt::Display) -> CredentialsError {
        CredentialsError::Remote {
            source_name: self.source.describe(),
            reason: reason.to_string(),
        }
    }

    async fn fetch(&self) -> Result<(Credentials, i64), CredentialsError> {
        match &self.source {
            RemoteSource::Tke {
                sts_endpoint,
                region,
                provider_id,
                token_file,
                role_arn,
                session_name,
            } => {
                // Re-read at every refresh: the kubelet rotates the file.
                let token = std::fs::read_to_string(token_file).map_err(|e| {
                    self.remote_error(format!("reading {}: {e}", token_file.display()))
                })?;
                let body = serde_json::json!({
                    "ProviderId": provider_id,
                    "WebIdentityToken": token.trim(),
                    "RoleArn": role_arn,
                    "RoleSessionName": session_name,
                    "DurationSeconds": 7200,
                });
                let resp = self
                    .http
                    .post(sts_endpoint.clone())
                    .header("Authorization", "SKIP")
                    .header("Content-Type", "application/json")
                    .header("X-TC-Action", "AssumeRoleWithWebIdentity")
                    .header("X-TC-Version", "2018-08-13")
                    .header("X-TC-Region", region)
                    .header("X-TC-Timestamp", chrono::Utc::now().timestamp().to_string())
                    .body(body.to_string())
                    .send()
                    .await
                    .map_err(|e| self.remote_error(e))?;
                let status = resp.status();
                let bytes = resp.bytes().await.map_err(|e| self.remote_error(e))?;
                if !status.is_success() {
                    return Err(self.remote_error(format!("HTTP status {status}")));
                }
                let env: StsEnvelope = serde_json::from_slice(&bytes)
                    .map_err(|e| self.remote_error(format!("unreadable answer ({e})")))?;
                let r = env.response;
                if let Some(err) = r.error {
                    return Err(self.remote_error(format!(
                        "{} (RequestId {}): {}",
                        err.code, r.request_id, err.message
                    )));
                }
                let (Some(c), Some(expires)) = (r.credentials, r.expired_time) else {
                    return Err(self.remote_error("no Credentials in the answer"));
                };
                Ok((c.into_credentials(self.source.describe()), expires))
            }
            RemoteSource::Cvm { metadata_endpoint } => {
                let base = metadata_endpoint
                    .join("latest/meta-data/cam/security-credentials/")
                    .map_err(|e| self.remote_error(e))?;
                let get = |url: url::Url| async move {
                    let resp = self
                        .http
                        .get(url)
                        .send()
                        .await
                        .map_err(|e| self.remote_error(e))?;
                    if !resp.status().is_success() {
                        return Err(self.remote_error(format!("HTTP status {}", resp.status())));
                    }
                    resp.text().await.map_err(|e| self.remote_error(e))
                };
                let roles = get(base.clone()).await?;
                let role = roles
                    .lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty())
                    .ok_or_else(|| self.remote_error("the instance has no CAM role"))?
                    .to_owned();
                let url = base.join(&role).map_err(|e| self.remote_error(e))?;
                let c: CvmCredentials = serde_json::from_str(&get(url).await?)
                    .map_err(|e| self.remote_error(format!("unreadable answer ({e})")))?;
                if !c.code.is_empty() && c.code != "Success" {
                    return Err(self.remote_error(format!("Code {}", c.code)));
                }
                Ok((
                    c.keys.into_credentials(format!("CVM role {role}")),
                    c.expired_time,
                ))
            }
        }
    }
}

/// The remote sources the chain may fall back to.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    pub sts_endpoint: url::Url,
    pub use_cvm_role: bool,
    pub cvm_metadata_endpoint: url::Url,
}

const TKE_VARS: [&str; 4] = [
    "TKE_REGION",
    "TKE_PROVIDER_ID",
    "TKE_WEB_IDENTITY_TOKEN_FILE",
    "TKE_ROLE_ARN",
];

/// The SDKs' whole chain: environment, profile file, TKE OIDC (when the
/// `TKE_*` variables are set), the CVM instance role (only when opted in).
pub fn resolve_chain(env: &dyn Env, remote: &RemoteOptions) -> Result<Provider, CredentialsError> {
    match resolve(env) {
        Ok(c) => return Ok(Provider::Static(c)),
        Err(CredentialsError::NotFound) => {}
        Err(e) => return Err(e),
    }
    let tke: Vec<Option<String>> = TKE_VARS
        .iter()
        .map(|n| env.var(n).filter(|v| !v.trim().is_empty()))
        .collect();
    if tke.iter().any(Option::is_some) {
        if let Some(i) = tke.iter().position(Option::is_none) {
            return Err(CredentialsError::HalfSetEnv {
                set: TKE_VARS[tke.iter().position(Option::is_some).expect("some")],
                missing: TKE_VARS[i],
            });
        }
        let v: Vec<String> = tke.into_iter().map(|v| v.expect("all set")).collect();
        return Ok(Provider::Refreshing(std::sync::Arc::new(Refreshing::new(
            RemoteSource::Tke {
                sts_endpoint: remote.sts_endpoint.clone(),
                region: v[0].clone(),
                provider_id: v[1].clone(),
                token_file: PathBuf::from(&v[2]),
                role_arn: v[3].clone(),
                session_name: format!("trtc-usage-{}", chrono::Utc::now().timestamp()),
            },
        ))));
    }
    if remote.use_cvm_role {
        return Ok(Provider::Refreshing(std::sync::Arc::new(Refreshing::new(
            RemoteSource::Cvm {
                metadata_endpoint: remote.cvm_metadata_endpoint.clone(),
            },
        ))));
    }
    Err(CredentialsError::NotFound)
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
    #[error("temporary credentials from {source_name}: {reason}")]
    Remote { source_name: String, reason: String },
    #[error(
        "no Tencent Cloud credentials: set TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY \
         (and TENCENTCLOUD_SESSION_TOKEN for temporary keys), write them to \
         ~/.tencentcloud/credentials, set the TKE_* OIDC variables, or pass --use-cvm-role"
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
    // A file named explicitly must be there: falling through to "no
    // credentials" would hide the typo.
    if let Some(p) = env
        .var("TENCENTCLOUD_CREDENTIALS_FILE")
        .filter(|p| !p.is_empty())
    {
        let path = PathBuf::from(p);
        if !path.is_file() {
            return Err(CredentialsError::Profile {
                path,
                reason: "TENCENTCLOUD_CREDENTIALS_FILE names this file, which does not exist (or is not a file)".into(),
            });
        }
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
    fn a_credentials_file_named_but_missing_is_named() {
        let env = HashMap::from([("TENCENTCLOUD_CREDENTIALS_FILE", "/nonexistent/creds")]);
        let e = resolve(&env).unwrap_err().to_string();
        assert!(
            e.contains("/nonexistent/creds") && e.contains("does not exist"),
            "{e}"
        );
    }

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
