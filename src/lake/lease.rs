//! One writer per app: a lease per app id at
//! `<dest>/_trtc_usage/leases/app_id=<SdkAppId>.json` (`docs/lake.md`, "One
//! writer per app"). Runs on different apps share a lake freely; two runs
//! never write the same app's partitions at once.
//!
//! - A run takes the leases of every app it will write, all or none, in
//!   app id order, each with a create-only write (`PutMode::Create`:
//!   `If-None-Match: *` on S3, an exclusive create on local disk) before
//!   its first API call. One it cannot take releases those it took, and the
//!   run is refused naming the app and its holder.
//! - A live lake-wide lease of 0.4 (`_trtc_usage/lease.json`) is honoured:
//!   it refuses every run until it expires or is released.
//! - Renewed every third of their time to live with a compare-and-swap
//!   (`If-Match` on the ETag on S3; on local disk, which object_store gives
//!   no conditional update, a read that must still show this run, then a
//!   write). A renewal that finds another holder means a lease was lost:
//!   the run is stopped.
//! - Released (deleted, if still ours) when the run ends, on errors and on
//!   SIGTERM/SIGINT too.
//! - Fenced (`docs/lake.md`, "Fencing"): the run commits only while the
//!   start of its last successful renewal of every lease plus the time to
//!   live, less a safety margin, lies ahead on its monotonic clock
//!   ([`Fence`], one for the run's leases). A renewal that stalls or keeps
//!   failing until then closes the fence and stops the run, before another
//!   run could take a lease over.
//! - A lease its holder stopped renewing expires after its time to live and
//!   is taken over, with a warning. Two runs taking over at once are
//!   ordered by one more create-only write, of a marker named after the
//!   lease and the expired holder's run id: only the run that creates it
//!   may replace the lease.
//! - Before any of this, a probe proves the store honours create-only
//!   writes (a second create of the same object must be refused); a store
//!   that does not is refused, naming `--lease off`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::lake::fence::Fence;
use crate::lake::store::{CREATE_PROBE, Destination};

pub use crate::lake::store::STATE_DIR;
/// Under [`STATE_DIR`]: one lease per app.
pub const LEASES_DIR: &str = "leases";
/// Under [`STATE_DIR`]: the lake-wide lease of 0.4, honoured while live.
pub const LEGACY_LEASE_FILE: &str = "lease.json";

/// Where app `app_id`'s lease lives.
pub fn lease_path(dest: &Destination, app_id: u64) -> Path {
    leases_dir(dest).join(format!("app_id={app_id}.json"))
}

fn leases_dir(dest: &Destination) -> Path {
    dest.root().clone().join(STATE_DIR).join(LEASES_DIR)
}

/// The start of the name of a takeover marker of app `app_id`'s lease,
/// which the expired holder's run id completes.
fn marker_prefix(app_id: u64) -> String {
    format!("takeover-app_id={app_id}-")
}

fn legacy_lease_path(dest: &Destination) -> Path {
    dest.root().clone().join(STATE_DIR).join(LEGACY_LEASE_FILE)
}

/// Who holds a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub host: String,
    pub pid: u32,
    pub run_id: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host {} pid {} run {}", self.host, self.pid, self.run_id)
    }
}

/// A lease file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The app it guards (none in a 0.4 lake-wide lease).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<u64>,
    pub holder: Holder,
    /// `export` or `rebuild`.
    pub command: String,
    pub taken_at: DateTime<Utc>,
    pub renewed_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub ttl_secs: u64,
    pub tool_version: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(
        "{what} is being written by another run ({holder}, {command} since {taken_at}); its lease \
         {path} expires at {expires_at} unless renewed. Wait for that run, or, if it is gone, \
         rerun after that time",
        what = match app {
            Some(app) => format!("app {app} of {dest}"),
            None => format!("{dest} (a lake-wide lease of trtc-usage 0.4)"),
        }
    )]
    Held {
        /// The app whose lease is held; none for a 0.4 lake-wide lease.
        app: Option<u64>,
        dest: String,
        path: String,
        holder: Holder,
        command: String,
        taken_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    },
    #[error(
        "{dest} does not honour create-only writes ({detail}), so one writer per lake cannot be \
         enforced there; run with --lease off (TRTC_LEASE=off) and make sure no two runs write \
         this lake at once"
    )]
    Unsupported { dest: String, detail: String },
    #[error("{dest}: another run is taking or releasing the lease at this very moment; try again")]
    Contended { dest: String },
    #[error("the lease {path}: {action}: {source}")]
    Store {
        path: String,
        action: &'static str,
        #[source]
        source: object_store::Error,
    },
    #[error(
        "the lease {path} is not one this tool can read ({reason}); if no trtc-usage run is \
         writing this lake, remove it and rerun"
    )]
    Unreadable { path: String, reason: String },
}

fn store_err(path: &Path, action: &'static str) -> impl FnOnce(object_store::Error) -> LeaseError {
    let path = path.to_string();
    move |source| LeaseError::Store {
        path,
        action,
        source,
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

fn create() -> PutOptions {
    PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    }
}

/// Proves the store refuses a second create-only write of one object.
async fn probe(dest: &Destination) -> Result<(), LeaseError> {
    // A second create accepted once may be another run's sweep removing
    // this probe in between (it removes a probe a second old, left by a
    // killed run, by its store time): only twice in a row says the store
    // ignores the condition.
    for attempt in 1..=2 {
        match probe_once(dest).await? {
            true => return Ok(()),
            false if attempt == 1 => {
                debug!("A second create-only write was accepted once; probing again.")
            }
            false => {}
        }
    }
    Err(LeaseError::Unsupported {
        dest: dest.display().to_owned(),
        detail: "a second create-only write of the same object was accepted".into(),
    })
}

/// One probe: whether a second create-only write of an object is refused.
async fn probe_once(dest: &Destination) -> Result<bool, LeaseError> {
    let store = dest.store();
    let path = dest
        .root()
        .clone()
        .join(STATE_DIR)
        .join(format!("{CREATE_PROBE}{}", uuid::Uuid::new_v4()));
    match store
        .put_opts(&path, PutPayload::from_static(b"1"), create())
        .await
    {
        Ok(_) => {}
        Err(object_store::Error::NotImplemented { .. }) => {
            return Err(LeaseError::Unsupported {
                dest: dest.display().to_owned(),
                detail: "the client has no create-only write for it".into(),
            });
        }
        Err(e) => return Err(store_err(&path, "writing a probe")(e)),
    }
    let second = store
        .put_opts(&path, PutPayload::from_static(b"2"), create())
        .await;
    let _ = store.delete(&path).await;
    match second {
        Err(object_store::Error::AlreadyExists { .. }) => Ok(true),
        Ok(_) => Ok(false),
        Err(e) => Err(store_err(&path, "writing a probe twice")(e)),
    }
}

/// Removes the takeover markers of app `app` whose own time to live has
/// passed, once this run holds the app's lease: a taker killed after it
/// replaced an expired lease, but before it removed its marker, leaves one
/// named after the *old* holder, which no later takeover looks at. A live
/// taker's marker has not expired, and is left to it.
async fn forget_markers(dest: &Destination, app: u64, now: DateTime<Utc>) {
    let dir = leases_dir(dest);
    let prefix = marker_prefix(app);
    let Ok(listing) = dest.store().list_with_delimiter(Some(&dir)).await else {
        return; // left for the next run
    };
    for m in listing.objects {
        // Only a marker read as expired: one that cannot be read now (a
        // store hiccup) may be a live taker's.
        let stale = m
            .location
            .filename()
            .is_some_and(|n| n.starts_with(&prefix))
            && matches!(read(dest, &m.location).await, Ok(Some((r, _))) if r.expires_at <= now);
        if stale {
            info!(app_id = app, marker = %dest.relative(&m.location), "Removed a takeover marker a killed run left.");
            let _ = dest.store().delete(&m.location).await;
        }
    }
}

/// Whether a takeover marker was left by a taker whose own lease record in
/// it has expired (or that cannot be read as one).
async fn stale_marker(dest: &Destination, marker: &Path, now: DateTime<Utc>) -> bool {
    match read(dest, marker).await {
        Ok(Some((record, _))) => record.expires_at <= now,
        Ok(None) => false,
        Err(_) => true,
    }
}

/// The leases a run holds, one per app. Dropping them without
/// [`Lease::release`] leaves them to expire.
#[derive(Debug)]
pub struct Lease {
    dest: Destination,
    /// (app, its lease's path), in app id order.
    paths: Vec<(u64, Path)>,
    record: Arc<Mutex<Record>>,
    stop: CancellationToken,
    renewer: Option<tokio::task::JoinHandle<()>>,
    fence: Fence,
}

/// The lease as it is in the store, with its version for a CAS.
async fn read(
    dest: &Destination,
    path: &Path,
) -> Result<Option<(Record, UpdateVersion)>, LeaseError> {
    let unreadable = |reason: String| LeaseError::Unreadable {
        path: dest.relative(path).to_owned(),
        reason,
    };
    let got = match dest.store().get(path).await {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => {
            // Not there, or not a file (a directory by that name).
            return match dest.local_path(path) {
                Some(p) if p.is_dir() => Err(unreadable("it is a directory".into())),
                _ => Ok(None),
            };
        }
        Err(e) => return Err(store_err(path, "reading")(e)),
    };
    let version = UpdateVersion {
        e_tag: got.meta.e_tag.clone(),
        version: got.meta.version.clone(),
    };
    let bytes = got.bytes().await.map_err(store_err(path, "reading"))?;
    let record = serde_json::from_slice(&bytes).map_err(|e| unreadable(e.to_string()))?;
    Ok(Some((record, version)))
}

fn held(dest: &Destination, path: &Path, r: Record) -> LeaseError {
    LeaseError::Held {
        app: r.app_id,
        dest: dest.display().to_owned(),
        path: dest.relative(path).to_owned(),
        holder: r.holder,
        command: r.command,
        taken_at: r.taken_at,
        expires_at: r.expires_at,
    }
}

/// The lease as someone else holds it now, after our create lost a race:
/// whoever's record is there, else the one we read before.
async fn held_now(dest: &Destination, path: &Path, before: Record) -> LeaseError {
    match read(dest, path).await {
        Ok(Some((now, _))) => held(dest, path, now),
        Ok(None) => held(dest, path, before),
        Err(e) => e,
    }
}

/// Takes app `app`'s lease for `record`: a create-only write, or the
/// takeover of an expired lease, ordered among takers by a marker that is
/// removed again whatever happens once it was made.
async fn take(
    dest: &Destination,
    app: u64,
    record: &Record,
    now: DateTime<Utc>,
) -> Result<(), LeaseError> {
    let path = &lease_path(dest, app);
    let body = || PutPayload::from(serde_json::to_vec_pretty(record).expect("serializes"));
    match dest.store().put_opts(path, body(), create()).await {
        Ok(_) => return Ok(()),
        Err(object_store::Error::AlreadyExists { .. }) => {}
        Err(object_store::Error::NotImplemented { .. }) => {
            return Err(LeaseError::Unsupported {
                dest: dest.display().to_owned(),
                detail: "the client has no create-only write for it".into(),
            });
        }
        Err(e) => return Err(store_err(path, "taking")(e)),
    }
    let Some((old, _)) = read(dest, path).await? else {
        // Released between our create and our read: try once more.
        return match dest.store().put_opts(path, body(), create()).await {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => match read(dest, path).await? {
                Some((other, _)) => Err(held(dest, path, other)),
                None => Err(LeaseError::Contended {
                    dest: dest.display().to_owned(),
                }),
            },
            Err(e) => Err(store_err(path, "taking")(e)),
        };
    };
    if old.expires_at > now {
        return Err(held(dest, path, old));
    }
    // Expired: only the run that creates the takeover marker for this
    // holder may replace its lease.
    let marker = leases_dir(dest).join(format!("{}{}", marker_prefix(app), old.holder.run_id));
    let mut created = dest.store().put_opts(&marker, body(), create()).await;
    if matches!(created, Err(object_store::Error::AlreadyExists { .. }))
        && stale_marker(dest, &marker, now).await
    {
        // A taker killed mid-takeover left its marker, and its own time to
        // live has passed: it will not finish.
        warn!(marker = %dest.relative(&marker), "Removing a takeover marker left by a run that died taking over the lease.");
        let _ = dest.store().delete(&marker).await;
        created = dest.store().put_opts(&marker, body(), create()).await;
    }
    match created {
        Ok(_) => {}
        // Another run is taking it over: report whoever holds it now.
        Err(object_store::Error::AlreadyExists { .. }) => {
            return Err(held_now(dest, path, old).await);
        }
        Err(e) => return Err(store_err(&marker, "taking over")(e)),
    }
    warn!(
        lease = %dest.relative(path),
        expired_holder = %old.holder,
        expired_at = %old.expires_at,
        "Taking over an expired lease: its run stopped renewing it (killed, or its node lost)."
    );
    let replaced = async {
        match read(dest, path).await? {
            Some((still, _)) if still.holder == old.holder => dest
                .store()
                .delete(path)
                .await
                .map_err(store_err(path, "removing the expired lease"))?,
            Some((other, _)) => return Err(held(dest, path, other)),
            None => {}
        }
        match dest.store().put_opts(path, body(), create()).await {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => {
                Err(held_now(dest, path, old.clone()).await)
            }
            Err(e) => Err(store_err(path, "taking")(e)),
        }
    }
    .await;
    // The marker goes, whether the takeover succeeded or lost a race.
    let _ = dest.store().delete(&marker).await;
    replaced
}

/// Refuses the run while a 0.4 lake-wide lease is live.
async fn honour_legacy(dest: &Destination, now: DateTime<Utc>) -> Result<(), LeaseError> {
    let path = legacy_lease_path(dest);
    match read(dest, &path).await {
        Ok(Some((r, _))) if r.expires_at > now => Err(held(dest, &path, r)),
        // Expired, gone, or not one we can read: it guards nothing.
        Ok(_) | Err(LeaseError::Unreadable { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

impl Lease {
    /// Takes the leases of `apps` for `command`, all or none, for `ttl` at
    /// a time; renews them in the background until released. `cancel` is
    /// cancelled if one is lost, so the run stops at its next safe point.
    pub async fn acquire(
        dest: &Destination,
        command: &str,
        apps: &[u64],
        ttl: Duration,
        cancel: CancellationToken,
    ) -> Result<Lease, LeaseError> {
        probe(dest).await?;
        // The fence counts from before the leases are written: their
        // expiry, on any clock, lies later.
        let started = Instant::now();
        let now = crate::clock::now_micros();
        honour_legacy(dest, now).await?;
        let ttl_chrono = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        let record = Record {
            app_id: None,
            holder: Holder {
                host: hostname(),
                pid: std::process::id(),
                run_id: uuid::Uuid::new_v4().to_string(),
            },
            command: command.to_owned(),
            taken_at: now,
            renewed_at: now,
            expires_at: now
                .checked_add_signed(ttl_chrono)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            ttl_secs: ttl.as_secs(),
            tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        let mut apps = apps.to_vec();
        apps.sort_unstable();
        apps.dedup();
        let mut taken: Vec<(u64, Path)> = Vec::with_capacity(apps.len());
        for app in apps {
            let path = lease_path(dest, app);
            let mine = Record {
                app_id: Some(app),
                ..record.clone()
            };
            if let Err(e) = take(dest, app, &mine, now).await {
                // All or none: give back what was taken.
                release_paths(dest, &taken, &record.holder).await;
                return Err(e);
            }
            taken.push((app, path));
            forget_markers(dest, app, now).await;
        }
        Ok(Self::start(dest, taken, record, ttl, started, cancel))
    }

    fn start(
        dest: &Destination,
        paths: Vec<(u64, Path)>,
        record: Record,
        ttl: Duration,
        started: Instant,
        cancel: CancellationToken,
    ) -> Lease {
        let apps: Vec<String> = paths.iter().map(|(a, _)| a.to_string()).collect();
        let lease = match paths.as_slice() {
            [(_, one)] => dest.relative(one).to_owned(),
            _ => format!(
                "{}/{}/app_id={{{}}}.json",
                STATE_DIR,
                LEASES_DIR,
                apps.join(",")
            ),
        };
        info!(apps = %apps.join(","), holder = %record.holder, expires_at = %record.expires_at, "Took the leases of {} app(s).", apps.len());
        let record = Arc::new(Mutex::new(record));
        let fence = Fence::new(lease, ttl, started, cancel);
        dest.fences()
            .install_apps(paths.iter().map(|(app, _)| (*app, fence.clone())).collect());
        let stop = CancellationToken::new();
        let every = (ttl / 3).max(Duration::from_millis(100));
        let renewer = tokio::spawn(renew_loop(
            dest.clone(),
            paths.clone(),
            record.clone(),
            ttl,
            every,
            stop.clone(),
            fence.clone(),
        ));
        Lease {
            dest: dest.clone(),
            paths,
            record,
            stop,
            renewer: Some(renewer),
            fence,
        }
    }

    /// The apps whose leases are held.
    pub fn apps(&self) -> Vec<u64> {
        self.paths.iter().map(|(a, _)| *a).collect()
    }

    /// Why a lease was lost mid-run, if one was.
    pub fn lost(&self) -> Option<String> {
        self.fence.lost()
    }

    /// Stops renewing and deletes the leases that are still this run's.
    pub async fn release(mut self) {
        self.stop.cancel();
        if let Some(r) = self.renewer.take() {
            let _ = r.await;
        }
        let mine = self.record.lock().expect("lease lock").holder.clone();
        release_paths(&self.dest, &self.paths, &mine).await;
    }
}

/// Deletes each lease of `paths` that `holder` still holds.
async fn release_paths(dest: &Destination, paths: &[(u64, Path)], holder: &Holder) {
    for (app, path) in paths {
        match read(dest, path).await {
            Ok(Some((r, _))) if r.holder == *holder => match dest.store().delete(path).await {
                Ok(()) => {
                    info!(app_id = app, lease = %dest.relative(path), "Released the app's lease.")
                }
                Err(e) => {
                    warn!(app_id = app, lease = %dest.relative(path), error = %e, "Cannot release the app's lease; it expires by itself.")
                }
            },
            Ok(_) => debug!(
                app_id = app,
                "The lease is no longer this run's; nothing to release."
            ),
            Err(e) => {
                warn!(app_id = app, error = %e, "Cannot read the app's lease to release it; it expires by itself.")
            }
        }
    }
}

/// Renews the leases every `every` until `stop`. On losing one, or when no
/// renewal of all has succeeded by the time the fence closes (a store that
/// does not answer, or keeps failing), closes the fence, which stops the
/// run.
async fn renew_loop(
    dest: Destination,
    paths: Vec<(u64, Path)>,
    record: Arc<Mutex<Record>>,
    ttl: Duration,
    every: Duration,
    stop: CancellationToken,
    fence: Fence,
) {
    let lease = fence.lease().to_owned();
    let mut wait = every;
    loop {
        let deadline = tokio::time::Instant::from_std(fence.valid_until());
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
        // A fence past its time is closed for good: no renewal may revive
        // a lease that another run may be taking over.
        if fence.check().is_err() {
            error!(%lease, error = %fence.expired_reason(), "Cannot renew the leases in time; stopping the run before they could expire.");
            return;
        }
        let started = Instant::now();
        let deadline = tokio::time::Instant::from_std(fence.valid_until());
        let attempt = tokio::select! {
            _ = stop.cancelled() => return,
            r = tokio::time::timeout_at(deadline, renew(&dest, &paths, &record, ttl)) => r,
        };
        match attempt {
            Ok(Ok(())) => {
                fence.renewed(started);
                wait = every;
            }
            Ok(Err(Renewal::Lost(why))) => {
                error!(%lease, error = %why, "Lost a lease; stopping the run.");
                fence.close(why);
                return;
            }
            Ok(Err(Renewal::Failed(e))) if Instant::now() < fence.valid_until() => {
                // A store hiccup: try again soon; the fence stays open
                // until the time to live, less the margin, runs out.
                warn!(%lease, error = %e, "Cannot renew the leases; retrying.");
                wait = every / 3;
            }
            Ok(Err(Renewal::Failed(_))) | Err(_) => {
                let why = fence.expired_reason();
                error!(%lease, error = %why, "Cannot renew the leases in time; stopping the run before they could expire.");
                fence.close(why);
                return;
            }
        }
    }
}

enum Renewal {
    Lost(String),
    Failed(String),
}

/// Renews every lease of `paths`, each still this run's (else it was lost).
async fn renew(
    dest: &Destination,
    paths: &[(u64, Path)],
    record: &Arc<Mutex<Record>>,
    ttl: Duration,
) -> Result<(), Renewal> {
    let mine = record.lock().expect("lease lock").clone();
    let now = crate::clock::now_micros();
    let mut next = mine.clone();
    next.renewed_at = now;
    next.expires_at = now
        .checked_add_signed(chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    for (app, path) in paths {
        let lease = dest.relative(path);
        let lost = |why: String| Renewal::Lost(format!("the lease {lease} was lost: {why}"));
        let (current, version) = match read(dest, path).await {
            Ok(Some(x)) => x,
            Ok(None) => return Err(lost("it was deleted by someone else".into())),
            Err(e) => return Err(Renewal::Failed(e.to_string())),
        };
        if current.holder != mine.holder {
            return Err(lost(format!(
                "it is now held by {} (taken over at {})",
                current.holder, current.taken_at
            )));
        }
        let this = Record {
            app_id: Some(*app),
            ..next.clone()
        };
        let body = PutPayload::from(serde_json::to_vec_pretty(&this).expect("serializes"));
        let cas = PutOptions {
            mode: PutMode::Update(version),
            ..PutOptions::default()
        };
        match dest.store().put_opts(path, body.clone(), cas).await {
            Ok(_) => {}
            Err(object_store::Error::Precondition { .. }) => {
                return Err(lost("it changed between reading and renewing it".into()));
            }
            // Local disk: no conditional update; the read above showed it ours.
            Err(object_store::Error::NotImplemented { .. }) => dest
                .store()
                .put(path, body)
                .await
                .map(|_| ())
                .map_err(|e| Renewal::Failed(e.to_string()))?,
            Err(e) => return Err(Renewal::Failed(e.to_string())),
        }
    }
    debug!(expires_at = %next.expires_at, leases = paths.len(), "Renewed the leases.");
    *record.lock().expect("lease lock") = next;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: u64 = 7;

    /// Takes the lease of app 7 of `d` for `ttl`, for a run no one cancels.
    async fn take(d: &Destination, command: &str, ttl: Duration) -> Result<Lease, LeaseError> {
        take_apps(d, command, &[APP], ttl).await
    }

    async fn take_apps(
        d: &Destination,
        command: &str,
        apps: &[u64],
        ttl: Duration,
    ) -> Result<Lease, LeaseError> {
        Lease::acquire(d, command, apps, ttl, CancellationToken::new()).await
    }

    fn local() -> (tempfile::TempDir, Destination) {
        let dir = tempfile::tempdir().unwrap();
        let d = Destination::open(dir.path().to_str().unwrap()).unwrap();
        (dir, d)
    }

    #[tokio::test]
    async fn one_holder_then_released() {
        let (_dir, d) = local();
        let a = take(&d, "export", Duration::from_secs(60)).await.unwrap();
        let e = take(&d, "rebuild", Duration::from_secs(60))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("is being written by another run") && e.contains("export since"),
            "{e}"
        );
        a.release().await;
        let b = take(&d, "rebuild", Duration::from_secs(60)).await.unwrap();
        b.release().await;
    }

    #[tokio::test]
    async fn renewal_keeps_it_and_an_expired_one_is_taken_over_once() {
        let (_dir, d) = local();
        let a = take(&d, "export", Duration::from_millis(600))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(900)).await;
        // Renewed every 200 ms: still live after more than its ttl.
        assert!(take(&d, "export", Duration::from_secs(1)).await.is_err());
        // Stop renewing without releasing (as if killed), let it expire.
        a.stop.cancel();
        tokio::time::sleep(Duration::from_millis(800)).await;
        let (b, c) = tokio::join!(
            take(&d, "export", Duration::from_secs(60)),
            take(&d, "export", Duration::from_secs(60)),
        );
        assert!(
            b.is_ok() != c.is_ok(),
            "exactly one takes it over: {b:?} {c:?}"
        );
    }

    #[tokio::test]
    async fn a_taker_killed_mid_takeover_does_not_block_the_lake_forever() {
        let (_dir, d) = local();
        let a = take(&d, "export", Duration::from_millis(300))
            .await
            .unwrap();
        a.stop.cancel(); // killed: stops renewing, never releases
        let path = lease_path(&d, APP);
        let old = read(&d, &path).await.unwrap().unwrap().0;
        // A taker created its marker, then died before replacing the lease.
        let mut dead = old.clone();
        dead.holder.run_id = "dead-taker".into();
        dead.expires_at = old.expires_at + chrono::Duration::milliseconds(300);
        let marker = d
            .root()
            .clone()
            .join(STATE_DIR)
            .join(LEASES_DIR)
            .join(format!("takeover-app_id={APP}-{}", old.holder.run_id));
        d.store()
            .put(
                &marker,
                PutPayload::from(serde_json::to_vec(&dead).unwrap()),
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        // The lease expired, the dead taker's marker not yet: refused.
        assert!(take(&d, "export", Duration::from_secs(60)).await.is_err());
        tokio::time::sleep(Duration::from_millis(400)).await;
        // Both expired: taken over.
        let b = take(&d, "export", Duration::from_secs(60)).await.unwrap();
        b.release().await;
    }

    #[tokio::test]
    async fn a_lease_taken_over_is_lost_and_the_run_cancelled() {
        let (_dir, d) = local();
        let cancel = CancellationToken::new();
        let a = Lease::acquire(
            &d,
            "export",
            &[APP],
            Duration::from_millis(300),
            cancel.clone(),
        )
        .await
        .unwrap();
        // Someone else replaces it (as a takeover after a long pause would).
        let path = lease_path(&d, APP);
        let mut other = read(&d, &path).await.unwrap().unwrap().0;
        other.holder.run_id = "someone-else".into();
        d.store()
            .put(&path, PutPayload::from(serde_json::to_vec(&other).unwrap()))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(2), cancel.cancelled())
            .await
            .expect("the run is cancelled");
        assert!(a.lost().unwrap().contains("someone-else"));
        a.release().await;
        // The other holder's lease is left alone.
        assert_eq!(
            read(&d, &path).await.unwrap().unwrap().0.holder.run_id,
            "someone-else"
        );
    }

    #[tokio::test]
    async fn a_lease_path_that_is_no_lease_says_how_to_clear_it() {
        let (dir, d) = local();
        let lease = dir
            .path()
            .join(STATE_DIR)
            .join(LEASES_DIR)
            .join(format!("app_id={APP}.json"));
        std::fs::create_dir_all(lease.parent().unwrap()).unwrap();
        std::fs::create_dir_all(&lease).unwrap();
        let e = take(&d, "export", Duration::from_secs(60))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(
                "_trtc_usage/leases/app_id=7.json is not one this tool can read (it is a directory)"
            ) && e.contains("remove it and rerun"),
            "{e}"
        );
        std::fs::remove_dir(&lease).unwrap();
        for garbage in [&b""[..], b"{not json", b"[]"] {
            std::fs::write(&lease, garbage).unwrap();
            let e = take(&d, "export", Duration::from_secs(60))
                .await
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("_trtc_usage/leases/app_id=7.json is not one this tool can read")
                    && e.contains("remove it and rerun"),
                "{garbage:?}: {e}"
            );
        }
    }

    /// Threads that keep both cores busy until dropped, so a race runs on
    /// a loaded machine whatever else the machine does.
    struct Load(
        Arc<std::sync::atomic::AtomicBool>,
        Vec<std::thread::JoinHandle<()>>,
    );

    impl Load {
        fn start(threads: usize) -> Self {
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let handles = (0..threads)
                .map(|_| {
                    let stop = stop.clone();
                    std::thread::spawn(move || {
                        let mut x = 0u64;
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                        }
                    })
                })
                .collect();
            Load(stop, handles)
        }
    }

    impl Drop for Load {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
            for h in self.1.drain(..) {
                let _ = h.join();
            }
        }
    }

    /// Four runs racing to take over one expired lease, sixty times, on
    /// a runtime of four threads with both cores kept busy: exactly one
    /// wins each time, its fence is open, and no takeover marker is left.
    /// The takers' own leases live 60 s: a round's outcome never depends
    /// on how fast the machine is (see the next test for a winner whose
    /// own lease expires).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn takeover_races_under_load_have_one_winner_and_leave_no_marker() {
        let (dir, d) = local();
        let _load = Load::start(2);
        for round in 0..60 {
            let a = take(&d, "export", Duration::from_millis(50)).await.unwrap();
            a.stop.cancel(); // killed: never renewed, never released
            tokio::time::sleep(Duration::from_millis(60)).await;
            let takers: Vec<_> = (0..4)
                .map(|_| {
                    let d = d.clone();
                    tokio::spawn(async move { take(&d, "export", Duration::from_secs(60)).await })
                })
                .collect();
            let mut won = Vec::new();
            for t in takers {
                if let Ok(lease) = t.await.unwrap() {
                    won.push(lease);
                }
            }
            assert_eq!(won.len(), 1, "round {round}: one winner");
            for l in won {
                assert!(
                    l.fence.check().is_ok(),
                    "round {round}: the winner may write"
                );
                l.release().await;
            }
            // Released, the directory may be gone (emptied directories are
            // cleaned up).
            let left: Vec<String> = std::fs::read_dir(dir.path().join(STATE_DIR).join(LEASES_DIR))
                .into_iter()
                .flatten()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("takeover-"))
                .collect();
            assert!(left.is_empty(), "round {round}: {left:?}");
        }
    }

    /// What the old race test (50 ms leases for the takers too) saw once
    /// as "2 winners" on a loaded machine: a winner's own 50 ms lease is
    /// never renewed in time (renewals come every 100 ms at the least), so
    /// a taker that starts later finds it expired and takes it over. That
    /// is a second `Ok`, not a second writer: the first winner's fence
    /// closed before its lease expired, so it can commit nothing.
    #[tokio::test]
    async fn a_winner_whose_lease_expired_is_fenced_before_it_is_taken_over() {
        let (_dir, d) = local();
        let first = take(&d, "export", Duration::from_millis(50)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(
            first.fence.check().is_err(),
            "the fence closes at 3/4 of the lifetime, before the lease expires"
        );
        let second = take(&d, "export", Duration::from_secs(60)).await.unwrap();
        assert!(second.fence.check().is_ok());
        assert!(first.fence.check().is_err(), "and stays closed");
        first.stop.cancel();
        second.release().await;
    }

    /// Runs on disjoint apps hold their leases side by side; a run that
    /// needs one app that is held takes none (all or none), naming the app.
    #[tokio::test]
    async fn leases_are_per_app_and_taken_all_or_none() {
        let (dir, d) = local();
        let ttl = Duration::from_secs(60);
        let a = take_apps(&d, "export", &[1, 2], ttl).await.unwrap();
        let b = take_apps(&d, "export", &[3], ttl).await.unwrap();
        let e = take_apps(&d, "rebuild", &[4, 2], ttl)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("app 2 of ") && e.contains("is being written by another run"),
            "{e}"
        );
        assert!(
            e.contains("_trtc_usage/leases/app_id=2.json"),
            "names the lease: {e}"
        );
        let leases = || -> Vec<String> {
            let Ok(entries) = std::fs::read_dir(dir.path().join(STATE_DIR).join(LEASES_DIR)) else {
                return vec![]; // gone with its last lease
            };
            let mut names: Vec<String> = entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        assert_eq!(
            leases(),
            ["app_id=1.json", "app_id=2.json", "app_id=3.json"],
            "app 4 was given back"
        );
        assert_eq!(a.apps(), [1, 2]);
        a.release().await;
        b.release().await;
        assert!(leases().is_empty());
    }

    /// A live lake-wide lease of 0.4 refuses every run; an expired one
    /// guards nothing.
    #[tokio::test]
    async fn a_live_04_lease_is_honoured_until_it_expires() {
        let (_dir, d) = local();
        let now = Utc::now();
        let record = |expires_at| Record {
            app_id: None,
            holder: Holder {
                host: "old".into(),
                pid: 1,
                run_id: "run-04".into(),
            },
            command: "export".into(),
            taken_at: now,
            renewed_at: now,
            expires_at,
            ttl_secs: 300,
            tool_version: "0.4.0".into(),
        };
        let path = legacy_lease_path(&d);
        let put = |r: Record| {
            let d = d.clone();
            let path = path.clone();
            async move {
                d.store()
                    .put(&path, PutPayload::from(serde_json::to_vec(&r).unwrap()))
                    .await
                    .unwrap();
            }
        };
        put(record(now + chrono::Duration::seconds(60))).await;
        let e = take(&d, "export", Duration::from_secs(60))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("(a lake-wide lease of trtc-usage 0.4) is being written by another run")
                && e.contains("run run-04")
                && e.contains("_trtc_usage/lease.json"),
            "{e}"
        );
        put(record(now - chrono::Duration::seconds(1))).await;
        take(&d, "export", Duration::from_secs(60))
            .await
            .unwrap()
            .release()
            .await;
    }

    /// A taker killed after it replaced an expired lease, but before it
    /// removed its marker, leaves a marker named after the old holder; the
    /// next run to hold the app removes it once it has expired.
    #[tokio::test]
    async fn a_marker_left_after_a_finished_takeover_is_removed_by_the_next_holder() {
        let (dir, d) = local();
        let markers = || -> Vec<String> {
            std::fs::read_dir(dir.path().join(STATE_DIR).join(LEASES_DIR))
                .map(|entries| {
                    entries
                        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                        .filter(|n| n.starts_with("takeover-"))
                        .collect()
                })
                .unwrap_or_default()
        };
        // The killed taker's own lease, and the marker it made for the
        // holder it replaced, both with 200 ms to live.
        let t = take(&d, "export", Duration::from_millis(200))
            .await
            .unwrap();
        t.stop.cancel();
        let mine = read(&d, &lease_path(&d, APP)).await.unwrap().unwrap().0;
        let marker = d
            .root()
            .clone()
            .join(STATE_DIR)
            .join(LEASES_DIR)
            .join(format!("takeover-app_id={APP}-old-holder"));
        d.store()
            .put(
                &marker,
                PutPayload::from(serde_json::to_vec(&mine).unwrap()),
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let next = take(&d, "export", Duration::from_secs(60)).await.unwrap();
        assert!(markers().is_empty(), "{:?}", markers());
        next.release().await;
    }
}
