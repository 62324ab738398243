//! Fencing: a run commits a partition only while its lease is surely still
//! its own (`docs/lake.md`, "Fencing").
//!
//! A lease that stops being renewed (a stalled store, a paused process) is
//! taken over by another run once its record's `expires_at` has passed on
//! the taker's clock. So the holder, on its own monotonic clock, stops
//! committing well before that: a [`Fence`] is open until the start of its
//! last successful renewal (or of the take) plus the time to live, less a
//! safety margin ([`margin`]). Every write of a partition (its intent, its
//! raw answer, its file, its manifest) asks the [`Fences`] of the lake
//! first; a closed fence refuses the write, and closing it stops the run.
//!
//! This module sits below the store: [`crate::lake::store::Destination`]
//! carries the run's fences, [`crate::lake::lease`] opens and renews them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

/// The safety margin for a lease of `ttl`: a quarter of it (75 s for the
/// default 5 minutes). It must cover the clock difference between the
/// holder's host and a taker's (both read `expires_at` in UTC) and the
/// longest single store write that started before the fence closed. With
/// renewals every third of `ttl`, one failed renewal still leaves the fence
/// open until the next one; two in a row close it.
pub fn margin(ttl: Duration) -> Duration {
    ttl / 4
}

/// Why a write was refused.
#[derive(Debug, Clone, thiserror::Error)]
#[error("not committed: {0}")]
pub struct FenceError(pub String);

#[derive(Debug)]
struct State {
    /// The lease's path, relative to the lake's root, for messages.
    lease: String,
    ttl: Duration,
    valid_until: Mutex<Instant>,
    /// The wall-clock time of the last successful renewal (or the take).
    renewed_at: Mutex<DateTime<Utc>>,
    lost: Mutex<Option<String>>,
    cancel: CancellationToken,
}

/// One lease's fence. Clones share it.
#[derive(Debug, Clone)]
pub struct Fence(Arc<State>);

impl Fence {
    /// A fence for a lease of `ttl` whose take started at `started`;
    /// closing it cancels `cancel` (the run).
    pub fn new(lease: String, ttl: Duration, started: Instant, cancel: CancellationToken) -> Self {
        Fence(Arc::new(State {
            lease,
            ttl,
            valid_until: Mutex::new(started + ttl.saturating_sub(margin(ttl))),
            renewed_at: Mutex::new(Utc::now()),
            lost: Mutex::new(None),
            cancel,
        }))
    }

    /// A renewal that started at `started` succeeded. One that started
    /// after the fence closed reopens nothing: the lease may already be in
    /// another run's hands, mid-takeover.
    pub fn renewed(&self, started: Instant) {
        if self.lost().is_some() {
            return;
        }
        let until = started + self.0.ttl.saturating_sub(margin(self.0.ttl));
        let mut valid = self.0.valid_until.lock().expect("fence lock");
        if started >= *valid {
            return;
        }
        *valid = (*valid).max(until);
        *self.0.renewed_at.lock().expect("fence lock") = Utc::now();
    }

    /// Until when writes are allowed (monotonic clock).
    pub fn valid_until(&self) -> Instant {
        *self.0.valid_until.lock().expect("fence lock")
    }

    pub fn lease(&self) -> &str {
        &self.0.lease
    }

    /// Why the fence closed, if it did.
    pub fn lost(&self) -> Option<String> {
        self.0.lost.lock().expect("fence lock").clone()
    }

    /// Closes the fence for good, for `why` (the first reason is kept),
    /// and stops the run.
    pub fn close(&self, why: String) {
        let mut lost = self.0.lost.lock().expect("fence lock");
        if lost.is_none() {
            *lost = Some(why);
        }
        drop(lost);
        self.0.cancel.cancel();
    }

    /// The reason a stalled or failing renewal closes the fence.
    pub fn expired_reason(&self) -> String {
        let ttl = self.0.ttl;
        format!(
            "the lease {} was last renewed at {}; it could not be renewed since, so the run stopped before it could expire (time to live {}, less a safety margin of {}) and commits nothing more",
            self.0.lease,
            self.0.renewed_at.lock().expect("fence lock").to_rfc3339(),
            humantime::format_duration(ttl),
            humantime::format_duration(margin(ttl)),
        )
    }

    /// Whether a write may go ahead now; a fence found past its time closes.
    pub fn check(&self) -> Result<(), FenceError> {
        if let Some(why) = self.lost() {
            return Err(FenceError(why));
        }
        if Instant::now() >= self.valid_until() {
            let why = self.expired_reason();
            self.close(why.clone());
            return Err(FenceError(why));
        }
        Ok(())
    }
}

/// The fences a run holds over a lake: none (no lease: `--lease off`,
/// `status`, a dry run), one for the whole lake, or one per app.
#[derive(Debug, Clone, Default)]
pub struct Fences(Arc<RwLock<Installed>>);

#[derive(Debug, Default)]
enum Installed {
    #[default]
    None,
    Lake(Fence),
    Apps(HashMap<u64, Fence>),
}

impl Fences {
    /// From now on, every write to the lake asks `fence`.
    pub fn install_lake(&self, fence: Fence) {
        *self.0.write().expect("fences lock") = Installed::Lake(fence);
    }

    /// From now on, a write of app `app_id` asks its fence, and a write of
    /// an app without one is refused. The fences of apps installed before
    /// (another account's leases, taken by the same run) stay.
    pub fn install_apps(&self, fences: HashMap<u64, Fence>) {
        let mut installed = self.0.write().expect("fences lock");
        match &mut *installed {
            Installed::Apps(by_app) => by_app.extend(fences),
            other => *other = Installed::Apps(fences),
        }
    }

    /// Whether a partition of `app_id` may be written now.
    pub fn check(&self, app_id: u64) -> Result<(), FenceError> {
        match &*self.0.read().expect("fences lock") {
            Installed::None => Ok(()),
            Installed::Lake(f) => f.check(),
            Installed::Apps(by_app) => match by_app.get(&app_id) {
                Some(f) => f.check(),
                None => Err(FenceError(format!(
                    "this run holds no lease for app {app_id}"
                ))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_until_ttl_less_margin_after_the_last_renewal_then_closed_for_good() {
        let cancel = CancellationToken::new();
        let ttl = Duration::from_millis(400);
        let f = Fence::new("l".into(), ttl, Instant::now(), cancel.clone());
        assert!(f.check().is_ok());
        std::thread::sleep(Duration::from_millis(200));
        f.renewed(Instant::now());
        std::thread::sleep(Duration::from_millis(200));
        assert!(f.check().is_ok(), "renewed: open 300 ms from the renewal");
        std::thread::sleep(Duration::from_millis(150));
        let e = f.check().unwrap_err().to_string();
        assert!(
            e.contains("lease l was last renewed") && e.contains("margin of 100ms"),
            "{e}"
        );
        assert!(cancel.is_cancelled(), "closing the fence stops the run");
        f.renewed(Instant::now());
        assert!(f.check().is_err(), "a closed fence stays closed");
        // A renewal that began after the fence's time reopens nothing,
        // even before anyone looked.
        let late = Fence::new("l".into(), ttl, Instant::now(), CancellationToken::new());
        std::thread::sleep(Duration::from_millis(350));
        late.renewed(Instant::now());
        assert!(late.check().is_err());
    }

    #[test]
    fn apps_without_a_fence_are_refused() {
        let fences = Fences::default();
        assert!(fences.check(1).is_ok(), "no lease: no fence");
        let f = Fence::new(
            "l".into(),
            Duration::from_secs(60),
            Instant::now(),
            CancellationToken::new(),
        );
        fences.install_apps(HashMap::from([(1, f.clone())]));
        assert!(fences.check(1).is_ok());
        // A second lease of the same run (another account's apps) adds its
        // apps; the first one's stay fenced.
        fences.install_apps(HashMap::from([(3, f)]));
        assert!(fences.check(1).is_ok() && fences.check(3).is_ok());
        assert!(
            fences
                .check(2)
                .unwrap_err()
                .to_string()
                .contains("no lease for app 2")
        );
    }
}
