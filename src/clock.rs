//! The one clock every part reads: now, to the microsecond.

use chrono::{DateTime, Utc};

/// Now, to the microsecond: the precision of the `fetched_at` column, of
/// the manifest and of the raw object's name, so all three agree exactly.
pub fn now_micros() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}
