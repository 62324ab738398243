//! Destinations: a local directory or an S3-compatible bucket, behind one
//! `object_store` interface, and the Hive partition layout inside it
//! (`docs/lake.md`).

use std::sync::Arc;

use crate::lake::fence::Fences;
use chrono::NaiveDate;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::tables::Table;

/// The job's own directory under the lake's root (leases, intents, the
/// lake's marker).
pub const STATE_DIR: &str = "_trtc_usage";

/// The one data file of a partition.
pub const PART_FILE: &str = "part-00000.parquet";
/// Written last; its presence marks a partition done.
pub const MANIFEST_FILE: &str = "_manifest.json";
/// The raw zone's directory under the lake's root.
pub const RAW_DIR: &str = "_raw";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("--dest {dest}: {reason}")]
    Config { dest: String, reason: String },
    #[error("--dest {dest} is not usable: {action} {path} failed: {source}")]
    Preflight {
        dest: String,
        action: &'static str,
        path: String,
        #[source]
        source: Box<object_store::Error>,
    },
    #[error(
        "--dest {dest}: no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
         (and AWS_ENDPOINT for MinIO, COS or R2: docs/s3.md); without them the instance \
         metadata service was asked, and failed: {source}"
    )]
    NoAwsCredentials {
        dest: String,
        #[source]
        source: Box<object_store::Error>,
    },
    #[error(
        "--dest {dest} holds the 0.1 layout (app_id=... directly under it); this version keeps \
         tables under it, so move the partitions into room_usage/ ({how}) and run again"
    )]
    OldLayout { dest: String, how: String },
}

/// The partition and the file name a key lies in:
/// `…/app_id=<id>/usage_date=<day>/<name>`; `None` for any other key.
pub fn partition_of(path: &Path) -> Option<(u64, NaiveDate, String)> {
    let parts: Vec<_> = path.parts().collect();
    let [.., app, day, name] = parts.as_slice() else {
        return None;
    };
    let app = app.as_ref().strip_prefix("app_id=")?.parse().ok()?;
    let day = day.as_ref().strip_prefix("usage_date=")?.parse().ok()?;
    Some((app, day, name.as_ref().to_owned()))
}

/// Where partitions go.
#[derive(Clone)]
pub struct Destination {
    store: Arc<dyn ObjectStore>,
    /// The prefix inside the store under which `app_id=…` directories live.
    root: Path,
    /// What the user gave, for messages.
    display: String,
    /// The directory, for a local destination.
    local: Option<std::path::PathBuf>,
    /// The leases this run holds over the lake: every partition write asks
    /// them first (see [`crate::lake::fence`]). Clones share them.
    fences: Fences,
    /// An S3 destination whose environment names no AWS credentials (the
    /// instance metadata service is asked): a failed preflight says so.
    no_aws_keys: bool,
    /// The tables the program knows (its registries'), so the lake can
    /// tell a table's directory, an intent's table or a marker's list
    /// from a name: see [`Destination::knowing`].
    tables: Arc<[Table]>,
}

/// The tables a destination knows until the jobs tell it theirs
/// ([`Destination::knowing`]).
const BUILT_IN: &[Table] = &[
    Table::ROOM_USAGE,
    Table::APP_USAGE,
    Table::CHECKS,
    Table::COST,
];

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Destination")
            .field("dest", &self.display)
            .finish_non_exhaustive()
    }
}

/// The nearest existing directory of `path` (canonical: symlinks and `..`
/// resolved) and the components below it that do not exist yet.
fn existing_ancestor(
    path: &std::path::Path,
) -> std::io::Result<(std::path::PathBuf, Vec<std::ffi::OsString>)> {
    let absolute = std::path::absolute(path)?;
    let mut existing = absolute.as_path();
    let mut missing = Vec::new();
    loop {
        match existing.canonicalize() {
            Ok(base) if base.is_dir() => {
                missing.reverse();
                return Ok((base, missing));
            }
            Ok(base) => {
                return Err(std::io::Error::other(format!(
                    "{} is not a directory",
                    base.display()
                )));
            }
            Err(e) => match (existing.parent(), existing.file_name()) {
                (Some(parent), Some(name)) => {
                    missing.push(name.to_owned());
                    existing = parent;
                }
                _ => return Err(e),
            },
        }
    }
}

/// How object_store retries a failed S3 request (5xx, 429, timeouts,
/// dropped connections): 5 times with exponential backoff from 100 ms to at
/// most 5 s, within 60 s of the first attempt. object_store's own default
/// (10 times within 3 minutes) would hold a stop request or a failing
/// partition for minutes; beyond this bound the partition fails and the
/// next run fetches it again.
pub fn s3_retry() -> object_store::RetryConfig {
    object_store::RetryConfig {
        backoff: object_store::BackoffConfig {
            init_backoff: std::time::Duration::from_millis(100),
            max_backoff: std::time::Duration::from_secs(5),
            base: 2.0,
        },
        max_retries: 5,
        retry_timeout: std::time::Duration::from_secs(60),
    }
}

/// Whether the environment gives object_store any AWS credentials other
/// than the instance metadata service (keys, a web identity, a container's
/// credentials endpoint).
fn aws_credentials_in_env() -> bool {
    [
        "AWS_ACCESS_KEY_ID",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

/// The name of the preflight's probe objects, under `_trtc_usage/`.
pub const PREFLIGHT_PROBE: &str = "preflight-";
/// The lease's probe of create-only writes, under [`STATE_DIR`].
pub const CREATE_PROBE: &str = "create-probe-";

impl Destination {
    /// Opens `dest`: a path, `file://…`, or `s3://bucket/prefix`. S3 settings
    /// come from the `AWS_*` environment, as object_store reads it.
    pub fn open(dest: &str) -> Result<Self, StoreError> {
        let fail = |reason: String| StoreError::Config {
            dest: dest.to_owned(),
            reason,
        };
        if let Some(rest) = dest.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(fail("no bucket name after s3://".into()));
            }
            let store = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_retry(s3_retry())
                .build()
                .map_err(|e| fail(e.to_string()))?;
            let root = Path::parse(prefix.trim_matches('/')).map_err(|e| fail(e.to_string()))?;
            return Ok(Self {
                store: Arc::new(store),
                root,
                display: dest.to_owned(),
                local: None,
                fences: Fences::default(),
                no_aws_keys: !aws_credentials_in_env(),
                tables: Arc::from(BUILT_IN),
            });
        }
        if dest.contains("://") && !dest.starts_with("file://") {
            return Err(fail(
                "unsupported scheme; use a local path, file://… or s3://bucket/prefix".into(),
            ));
        }
        let path = if dest.starts_with("file://") {
            // A file URL: absolute, percent-decoded (file:///data/my%20lake).
            url::Url::parse(dest)
                .ok()
                .filter(|u| u.host_str().is_none_or(str::is_empty))
                .and_then(|u| u.to_file_path().ok())
                .ok_or_else(|| {
                    fail("a file:// URL must name an absolute path, like file:///data/lake".into())
                })?
        } else {
            std::path::PathBuf::from(dest)
        };
        // Nothing is created here: the directory appears with the first
        // object written (a dry run, or a run refused before its first
        // write, leaves no trace).
        // The store is rooted at the nearest directory that exists, so its
        // cleanup of emptied directories never climbs above it.
        let (base, missing) =
            existing_ancestor(&path).map_err(|e| fail(format!("cannot resolve the path: {e}")))?;
        // fsync: a manifest is written only once the file it names (and the
        // directory entry) is on stable storage, so a power loss never
        // leaves a manifest naming bytes that never reached the disk.
        let store = LocalFileSystem::new_with_prefix(&base)
            .map_err(|e| fail(e.to_string()))?
            .with_automatic_cleanup(true)
            .with_fsync(true);
        // Each missing component is taken as it is (`PathPart::parse`), not
        // percent-encoded (`Path::join(&str)` would turn `音` or `%` into
        // `%E9…`/`%25`, which LocalFileSystem writes to disk literally, a
        // sibling directory of the one given).
        let mut parts = Vec::with_capacity(missing.len());
        for part in &missing {
            let part = part
                .to_str()
                .ok_or_else(|| fail("the path is not valid UTF-8".into()))?;
            let part = object_store::path::PathPart::parse(part).map_err(|_| {
                fail(format!(
                    "'{part}' cannot name a directory that does not exist yet; \
                     create the directory or give the path without it"
                ))
            })?;
            parts.push(part);
        }
        let root = Path::from_iter(parts);
        let local = missing.iter().fold(base, |p, part| p.join(part));
        Ok(Self {
            store: Arc::new(store),
            root,
            display: dest.to_owned(),
            local: Some(local),
            fences: Fences::default(),
            no_aws_keys: false,
            tables: Arc::from(BUILT_IN),
        })
    }

    /// Where `path` is on local disk, for a local destination.
    pub fn local_path(&self, path: &Path) -> Option<std::path::PathBuf> {
        let dir = self.local.as_ref()?;
        let rel = self.relative(path);
        Some(if path == &self.root || rel.is_empty() {
            dir.clone()
        } else {
            dir.join(rel)
        })
    }

    /// Whether the destination is on local disk (reading it makes no
    /// network request).
    pub fn is_local(&self) -> bool {
        self.local.is_some()
    }

    /// Whether the destination is a local directory that does not exist
    /// yet (nothing has been written to it).
    pub fn is_absent(&self) -> bool {
        self.local.as_ref().is_some_and(|d| !d.exists())
    }

    /// A destination over any store, for tests.
    pub fn from_store(store: Arc<dyn ObjectStore>, root: Path, display: &str) -> Self {
        Self {
            store,
            root,
            display: display.to_owned(),
            local: None,
            fences: Fences::default(),
            no_aws_keys: false,
            tables: Arc::from(BUILT_IN),
        }
    }

    /// The run's fences over this lake.
    pub fn fences(&self) -> &Fences {
        &self.fences
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    pub fn display(&self) -> &str {
        &self.display
    }

    /// The lake's root, as a path inside the store.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/<table>`: a table's directory.
    pub fn table_dir(&self, table: Table) -> Path {
        self.root.clone().join(table.name())
    }

    /// `<root>/<table>/app_id=<id>/usage_date=<day>`.
    pub fn partition_dir(&self, table: Table, app_id: u64, day: NaiveDate) -> Path {
        self.table_dir(table)
            .join(format!("app_id={app_id}"))
            .join(format!("usage_date={day}"))
    }

    pub fn part_path(&self, table: Table, app_id: u64, day: NaiveDate) -> Path {
        self.partition_dir(table, app_id, day).join(PART_FILE)
    }

    pub fn manifest_path(&self, table: Table, app_id: u64, day: NaiveDate) -> Path {
        self.partition_dir(table, app_id, day).join(MANIFEST_FILE)
    }

    /// `<root>/_raw/<table>`: a table's raw responses.
    pub fn raw_table_dir(&self, table: Table) -> Path {
        self.root.clone().join(RAW_DIR).join(table.name())
    }

    /// `<root>/_raw/<table>/app_id=<id>/usage_date=<day>`: one partition's
    /// raw responses, one object per fetch.
    pub fn raw_dir(&self, table: Table, app_id: u64, day: NaiveDate) -> Path {
        self.raw_table_dir(table)
            .join(format!("app_id={app_id}"))
            .join(format!("usage_date={day}"))
    }

    /// `path` relative to the lake's root, as manifests and messages name it.
    pub fn relative<'a>(&self, path: &'a Path) -> &'a str {
        let full = path.as_ref();
        let root = self.root.as_ref();
        if root.is_empty() {
            full
        } else {
            full.strip_prefix(root)
                .and_then(|r| r.strip_prefix('/'))
                .unwrap_or(full)
        }
    }

    /// The object at `relative` (a path relative to the lake's root).
    pub fn resolve(&self, relative: &str) -> Path {
        relative
            .split('/')
            .fold(self.root.clone(), |p, part| p.join(part))
    }

    /// Refuses a lake that still has the 0.1 layout (`app_id=…` directly
    /// under the root), naming how to move it. One listing of the root.
    pub async fn check_layout(&self) -> Result<(), StoreError> {
        let old = self
            .root_directories()
            .await?
            .iter()
            .any(|n| n.starts_with("app_id="));
        if old {
            return Err(StoreError::OldLayout {
                dest: self.display.clone(),
                how: self.move_hint(),
            });
        }
        Ok(())
    }

    /// The destination, knowing `tables` (every table the program has):
    /// without it only the default ones are recognized by name.
    pub fn knowing(mut self, tables: &[Table]) -> Self {
        self.tables = Arc::from(tables);
        self
    }

    /// The known table named `name`.
    pub fn table_named(&self, name: &str) -> Option<Table> {
        Table::named(&self.tables, name)
    }

    /// Every table the program knows.
    pub fn known_tables(&self) -> &[Table] {
        &self.tables
    }

    /// Whether the destination holds a lake at all: a table, the raw zone
    /// or the job's own directory at its root. A mistyped `--dest` holds
    /// none.
    pub async fn holds_lake(&self) -> Result<bool, StoreError> {
        // A 0.1 lake (`app_id=…` at the root) is a lake: the layout check
        // refuses it with its own message.
        Ok(self.root_directories().await?.iter().any(|n| {
            self.table_named(n).is_some()
                || n == "_raw"
                || n == STATE_DIR
                || n.starts_with("app_id=")
        }))
    }

    /// The tables that have a directory at the lake's root.
    pub async fn tables_held(&self) -> Result<Vec<Table>, StoreError> {
        Ok(self
            .root_directories()
            .await?
            .iter()
            .filter_map(|n| self.table_named(n))
            .collect())
    }

    /// The names of the directories (common prefixes) at the lake's root.
    async fn root_directories(&self) -> Result<Vec<String>, StoreError> {
        let listing = self
            .store
            .list_with_delimiter(Some(&self.root))
            .await
            .map_err(|e| StoreError::Preflight {
                dest: self.display.clone(),
                action: "listing",
                path: self.root.to_string(),
                source: Box::new(e),
            })?;
        Ok(listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_owned))
            .collect())
    }

    fn move_hint(&self) -> String {
        let d = self.display.trim_end_matches('/');
        if d.starts_with("s3://") {
            format!(
                "for each app: aws s3 mv --recursive {d}/app_id=<ID>/ {d}/room_usage/app_id=<ID>/"
            )
        } else {
            let d = d.strip_prefix("file://").unwrap_or(d);
            format!("mkdir -p {d}/room_usage && mv {d}/app_id=* {d}/room_usage/")
        }
    }

    /// Proves the destination is usable before any API call: lists the
    /// root, writes a probe object and deletes it.
    pub async fn preflight(&self) -> Result<(), StoreError> {
        let err = |action, path: &Path, source| StoreError::Preflight {
            dest: self.display.clone(),
            action,
            path: path.to_string(),
            source: Box::new(source),
        };
        let mut listing = self.store.list(Some(&self.root));
        listing
            .try_next()
            .await
            .map_err(|e| match self.no_aws_keys {
                // The likeliest cause, named with its fix.
                true => StoreError::NoAwsCredentials {
                    dest: self.display.clone(),
                    source: Box::new(e),
                },
                false => err("listing", &self.root, e),
            })?;
        drop(listing);
        // Under the job's own directory, which readers never look in; a
        // probe a crash leaves there is removed by the next run's sweep.
        let probe = self
            .root
            .clone()
            .join(STATE_DIR)
            .join(format!("{PREFLIGHT_PROBE}{}", uuid::Uuid::new_v4()));
        self.store
            .put(&probe, PutPayload::from_static(b"probe"))
            .await
            .map_err(|e| err("writing", &probe, e))?;
        match self.store.delete(&probe).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(err("deleting", &probe, e)),
        }
        self.check_layout().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_hive_partitioned() {
        let dir = tempfile::tempdir().unwrap();
        let d = Destination::open(dir.path().to_str().unwrap()).unwrap();
        let day: NaiveDate = "2026-11-20".parse().unwrap();
        assert_eq!(
            d.relative(&d.part_path(Table::ROOM_USAGE, 1400000001, day)),
            "room_usage/app_id=1400000001/usage_date=2026-11-20/part-00000.parquet"
        );
        assert_eq!(
            d.manifest_path(Table::ROOM_USAGE, 1400000001, day).as_ref(),
            "room_usage/app_id=1400000001/usage_date=2026-11-20/_manifest.json"
        );
        assert_eq!(
            d.raw_dir(Table::ROOM_USAGE, 1400000001, day).as_ref(),
            "_raw/room_usage/app_id=1400000001/usage_date=2026-11-20"
        );
    }

    #[test]
    fn bad_destinations_name_the_flag() {
        let e = Destination::open("gs://bucket/x").unwrap_err().to_string();
        assert!(e.starts_with("--dest gs://bucket/x"), "{e}");
        let e = Destination::open("s3:///x").unwrap_err().to_string();
        assert!(e.contains("no bucket"), "{e}");
    }

    #[test]
    fn partition_of_reads_the_hive_path() {
        let p = Path::from("lake/room_usage/app_id=7/usage_date=2026-11-20/_manifest.json");
        let day: NaiveDate = "2026-11-20".parse().unwrap();
        assert_eq!(partition_of(&p), Some((7, day, MANIFEST_FILE.to_owned())));
        assert_eq!(
            partition_of(&Path::from("app_id=x/usage_date=2026-11-20/f")),
            None
        );
        assert_eq!(partition_of(&Path::from("usage_date=2026-11-20/f")), None);
    }

    #[test]
    fn relative_and_resolve_are_inverse_under_a_prefix() {
        let store = Arc::new(object_store::memory::InMemory::new());
        let d = Destination::from_store(store, Path::from("lake/v2"), "s3://b/lake/v2");
        let p = d.raw_dir(Table::ROOM_USAGE, 7, "2026-11-20".parse().unwrap());
        let rel = d.relative(&p);
        assert_eq!(rel, "_raw/room_usage/app_id=7/usage_date=2026-11-20");
        assert_eq!(d.resolve(rel), p);
    }

    #[tokio::test]
    async fn the_old_layout_is_refused_with_how_to_move_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("app_id=1/usage_date=2026-11-20")).unwrap();
        std::fs::write(dir.path().join("app_id=1/usage_date=2026-11-20/x"), b"x").unwrap();
        let d = Destination::open(dir.path().to_str().unwrap()).unwrap();
        let e = d.preflight().await.unwrap_err().to_string();
        assert!(e.contains("0.1 layout") && e.contains("mv "), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }

    #[tokio::test]
    async fn local_preflight_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let d = Destination::open(&format!("file://{}", dir.path().display())).unwrap();
        d.preflight().await.unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn file_urls_are_absolute_and_percent_decoded() {
        let dir = tempfile::tempdir().unwrap();
        let spaced = dir.path().join("my lake");
        let url = format!("file://{}", dir.path().join("my%20lake").display());
        let d = Destination::open(&url).unwrap();
        assert_eq!(
            d.local_path(d.root()).unwrap().file_name().unwrap(),
            "my lake"
        );
        assert!(!spaced.exists(), "nothing created");
        let e = Destination::open("file://relative/lake")
            .unwrap_err()
            .to_string();
        assert!(e.contains("absolute path"), "{e}");
    }

    #[test]
    fn opening_a_local_dest_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let lake = dir.path().join("a/b/lake");
        let d = Destination::open(lake.to_str().unwrap()).unwrap();
        assert!(!dir.path().join("a").exists());
        assert_eq!(
            d.local_path(d.root()).unwrap(),
            lake.canonicalize()
                .unwrap_or(dir.path().canonicalize().unwrap().join("a/b/lake"))
        );
        assert_eq!(
            d.relative(&d.part_path(Table::ROOM_USAGE, 1, "2026-11-20".parse().unwrap())),
            "room_usage/app_id=1/usage_date=2026-11-20/part-00000.parquet"
        );
    }
}
