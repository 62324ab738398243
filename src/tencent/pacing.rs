//! Pacing and retry: every attempt of every call goes through one [`Pacer`],
//! so no retry, no app and no day can break the API's one-call-per-interval
//! rule; failures are retried by class with jittered backoff, a bounded
//! number of times.
//!
//! What is retried (see [`crate::tencent::api::ErrorClass`]):
//! - throttling (`OperationDenied.FreqOverLimit`, `RequestLimitExceeded*`,
//!   HTTP 429): after at least one full interval plus backoff;
//! - server and network trouble (`InternalError*`, `ServiceUnavailable`,
//!   `ResourceUnavailable`, HTTP errors, timeouts, unreadable bodies):
//!   after backoff;
//! - `AuthFailure.SignatureExpire`: once, after adopting the server's clock
//!   from its `Date` header.
//!
//! Everything else ends the call at once.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use std::future::Future;
use std::sync::Arc;

use crate::tencent::api::{ApiError, Client, ErrorClass};

/// What every successful answer carries, whichever API gave it.
pub trait Answer {
    fn request_id(&self) -> &str;
    /// When it arrived (UTC, microseconds).
    fn fetched_at(&self) -> chrono::DateTime<chrono::Utc>;
    /// The HTTP body's size.
    fn body_bytes(&self) -> usize;
    /// The HTTP body as it arrived (spooled), for the raw zone.
    fn spooled_body(&self) -> std::sync::Arc<crate::spool::Spooled>;
    /// When its response began (the start of the data path's timing).
    fn response_at(&self) -> std::time::Instant;
    /// The body's digest begun while it downloaded, if any (taken once).
    fn take_digest(&self) -> Option<crate::tencent::api::EarlyDigest>;
}

/// A request one of the APIs answers: what to log it as, and one attempt.
pub trait Call: Send + Sync {
    type Answer: Answer + Send + Sync;
    /// The API's action, as sent in `X-TC-Action`.
    fn action(&self) -> &'static str;
    fn app_id(&self) -> u64;
    /// The day asked for, `YYYY-MM-DD`.
    fn day(&self) -> &str;
    /// `StartTime` and `EndTime` as sent.
    fn window(&self) -> (&str, &str);
    fn attempt<'a>(
        &'a self,
        client: &'a Client,
    ) -> impl Future<Output = Result<Self::Answer, ApiError>> + Send + 'a;
}

/// Spaces API calls at least `interval` apart, measured from the end of one
/// attempt to the start of the next. Measuring from the end (not the start)
/// means a slow response or network jitter can never make two calls arrive
/// at the server closer together than the interval.
#[derive(Debug)]
pub struct Pacer {
    interval: Duration,
    last_end: Mutex<Option<Instant>>,
}

impl Pacer {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last_end: Mutex::new(None),
        }
    }

    /// The earliest instant the next attempt may start.
    pub fn next_slot(&self) -> Instant {
        let last = *self.last_end.lock().expect("pacer lock");
        match last {
            Some(t) => t + self.interval,
            None => Instant::now(),
        }
    }

    /// Records that an attempt has just ended.
    pub fn mark(&self) {
        *self.last_end.lock().expect("pacer lock") = Some(Instant::now());
    }
}

/// How many times to try and how long to back off between tries.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// Backoff before the first retry; doubles each retry.
    pub backoff_base: Duration,
    /// Cap on one backoff.
    pub backoff_max: Duration,
}

/// Exponential backoff with "equal jitter": half the step fixed, half
/// random, so concurrent jobs spread out but no wait is near zero.
#[derive(Debug)]
pub struct Backoff {
    rng: fastrand::Rng,
}

impl Backoff {
    /// A backoff whose jitter comes from `seed`: injectable for tests.
    pub fn with_seed(seed: u64) -> Self {
        Self {
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    pub fn new() -> Self {
        Self {
            rng: fastrand::Rng::new(),
        }
    }

    /// The wait before retry number `retry` (1 for the first retry).
    pub fn delay(&mut self, policy: &RetryPolicy, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        let step = policy
            .backoff_base
            .saturating_mul(factor)
            .min(policy.backoff_max);
        let half = step / 2;
        half + half.mul_f64(self.rng.f64())
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

/// Counters of what the calls cost, for the run summary.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CallStats {
    /// HTTP attempts made.
    pub calls: u64,
    /// Attempts that were retries.
    pub retries: u64,
    /// Attempts answered with a rate-limit error.
    pub throttles: u64,
    /// Attempts that failed, by what failed them: the API's error code
    /// (`InternalError`), `http_<status>`, `timeout`, `network`,
    /// `unreadable` (the metrics' outcome label).
    #[serde(skip)]
    pub errors: std::collections::BTreeMap<String, u64>,
    /// Time spent waiting for the pacer or a backoff.
    #[serde(skip)]
    pub waited: Duration,
}

impl CallStats {
    /// Adds `other`'s counts (the two APIs' calls, say) to these.
    pub fn add(&mut self, other: &CallStats) {
        self.calls += other.calls;
        self.retries += other.retries;
        self.throttles += other.throttles;
        for (code, n) in &other.errors {
            *self.errors.entry(code.clone()).or_default() += n;
        }
        self.waited = self.waited.max(other.waited);
    }
}

/// How a paced call ended, when it did not succeed.
#[derive(Debug)]
pub enum CallError {
    /// Gave up: the last error, after `attempts` attempts.
    Failed { error: ApiError, attempts: u32 },
    /// A stop was requested while waiting or calling; nothing was fetched.
    Cancelled,
}

/// Sleeps until `until`, unless cancelled first. Returns `false` when cancelled.
async fn sleep_until(until: Instant, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep_until(until) => true,
        _ = cancel.cancelled() => false,
    }
}

/// The API client with everything that decides when one API may be
/// called: its pacer, the retry policy and the backoff's jitter. Each API
/// gets its own, sharing one [`Client`] (and so one clock correction).
#[derive(Debug)]
pub struct PacedClient {
    client: Arc<Client>,
    pacer: Pacer,
    policy: RetryPolicy,
    backoff: Backoff,
}

impl PacedClient {
    pub fn new(client: Arc<Client>, pacer: Pacer, policy: RetryPolicy, backoff: Backoff) -> Self {
        Self {
            client,
            pacer,
            policy,
            backoff,
        }
    }

    /// Makes one logical call: paced, retried by class, bounded, cancellable.
    pub async fn call<R: Call>(
        &mut self,
        request: &R,
        cancel: &CancellationToken,
        stats: &mut CallStats,
    ) -> Result<R::Answer, CallError> {
        let Self {
            client,
            pacer,
            policy,
            backoff,
        } = self;
        let app_id = request.app_id();
        let day = request.day();
        let mut attempt: u32 = 0;
        let mut not_before = Instant::now();
        let mut skew_corrected = false;
        loop {
            attempt += 1;
            let start_at = pacer.next_slot().max(not_before);
            let now = Instant::now();
            if start_at > now {
                let wait = start_at - now;
                debug!(
                    app_id,
                    usage_date = day,
                    attempt,
                    wait_ms = wait.as_millis() as u64,
                    "Waiting for the rate limit."
                );
                stats.waited += wait;
                if !sleep_until(start_at, cancel).await {
                    return Err(CallError::Cancelled);
                }
            }
            if cancel.is_cancelled() {
                return Err(CallError::Cancelled);
            }
            stats.calls += 1;
            if attempt > 1 {
                stats.retries += 1;
            }
            let result = tokio::select! {
                r = request.attempt(client) => r,
                _ = cancel.cancelled() => {
                    pacer.mark();
                    return Err(CallError::Cancelled);
                }
            };
            pacer.mark();
            let error = match result {
                Ok(usage) => return Ok(usage),
                Err(e) => e,
            };
            *stats.errors.entry(error.outcome()).or_default() += 1;
            let class = error.class();
            let retry_wait = match class {
                ErrorClass::Throttled => {
                    stats.throttles += 1;
                    // The pacer already enforces one full interval from now.
                    Some(backoff.delay(policy, attempt))
                }
                ErrorClass::Transient => Some(backoff.delay(policy, attempt)),
                ErrorClass::ClockSkew => match &error {
                    ApiError::Service {
                        server_time: Some(server_time),
                        ..
                    } if !skew_corrected => {
                        skew_corrected = true;
                        let skew = client.correct_skew(*server_time);
                        warn!(
                            app_id,
                            usage_date = day,
                            skew_secs = skew,
                            "The local clock is off from the API's; signing with the server's time. Check the clock (NTP)."
                        );
                        Some(Duration::ZERO)
                    }
                    _ => None,
                },
                ErrorClass::FatalRun | ErrorClass::FatalApp | ErrorClass::FatalPartition => None,
            };
            match retry_wait {
                Some(wait) if attempt < policy.max_attempts => {
                    not_before = Instant::now() + wait;
                    let until = pacer.next_slot().max(not_before);
                    warn!(
                        app_id,
                        usage_date = day,
                        attempt,
                        wait_ms = until.saturating_duration_since(Instant::now()).as_millis() as u64,
                        error = %error,
                        "Call failed; retrying."
                    );
                }
                _ => {
                    return Err(CallError::Failed {
                        error,
                        attempts: attempt,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let policy = RetryPolicy {
            max_attempts: 10,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(8),
        };
        let mut b = Backoff::with_seed(7);
        for (retry, step) in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0), (9, 8.0)] {
            for _ in 0..50 {
                let d = b.delay(&policy, retry).as_secs_f64();
                assert!(d >= step / 2.0 && d <= step, "retry {retry}: {d}");
            }
        }
        let same = |seed| {
            let mut b = Backoff::with_seed(seed);
            (0..5).map(|r| b.delay(&policy, r)).collect::<Vec<_>>()
        };
        assert_eq!(same(3), same(3));
    }

    #[tokio::test(start_paused = true)]
    async fn pacer_spaces_attempts_from_the_end_of_the_last() {
        let pacer = Pacer::new(Duration::from_secs(15));
        let t0 = Instant::now();
        assert_eq!(pacer.next_slot(), t0);
        pacer.mark();
        assert_eq!(pacer.next_slot(), t0 + Duration::from_secs(15));
        tokio::time::advance(Duration::from_secs(3)).await;
        pacer.mark();
        assert_eq!(pacer.next_slot(), t0 + Duration::from_secs(18));
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_sleep_returns_early() {
        let cancel = CancellationToken::new();
        let c2 = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            c2.cancel();
        });
        let t0 = Instant::now();
        assert!(!sleep_until(t0 + Duration::from_secs(15), &cancel).await);
        assert!(Instant::now() - t0 < Duration::from_secs(2));
    }
}
