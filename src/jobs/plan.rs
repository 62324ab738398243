//! Planning: which days, in the API's clock, a run asks for, and which
//! already-exported partitions are final and so are skipped.
//!
//! Pure functions of the options and an injected "now", so every rule is
//! table-tested.

use chrono::{DateTime, Duration as ChronoDuration, FixedOffset, NaiveDate, NaiveTime, Utc};

/// The first day the API has data for.
pub const FIRST_DAY: NaiveDate = match NaiveDate::from_ymd_opt(2023, 4, 1) {
    Some(d) => d,
    None => panic!("valid date"),
};

/// The API keeps "roughly the last 3 months"; older days get a warning.
pub const RETENTION_DAYS: i64 = 92;

/// Which days the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaySpec {
    /// `--start` .. `--end`, inclusive.
    Range { start: NaiveDate, end: NaiveDate },
    /// The `n` complete days ending yesterday.
    Lookback(u32),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("--end {end} is before --start {start}")]
    EndBeforeStart { start: NaiveDate, end: NaiveDate },
    #[error("day {day} is before 2023-04-01, the first day the API has data for")]
    BeforeFirstDay { day: NaiveDate },
    #[error("day {day} is not complete yet in the API's clock (UTC{offset}); it ends at {ends_at}")]
    Incomplete {
        day: NaiveDate,
        offset: FixedOffset,
        ends_at: DateTime<Utc>,
    },
    #[error("--lookback-days must be at least 1")]
    ZeroLookback,
}

/// The day as the API's clock sees `now`.
pub fn today(now: DateTime<Utc>, offset: FixedOffset) -> NaiveDate {
    now.with_timezone(&offset).date_naive()
}

/// The instant, in UTC, at which `day` (in the API's clock) ends.
pub fn day_end(day: NaiveDate, offset: FixedOffset) -> DateTime<Utc> {
    let next = day.succ_opt().unwrap_or(day);
    let local = next.and_time(NaiveTime::MIN);
    local
        .and_local_timezone(offset)
        .single()
        .expect("a fixed offset has no gaps")
        .with_timezone(&Utc)
}

/// The days to export, oldest first, and warnings about them.
pub fn plan_days(
    spec: &DaySpec,
    offset: FixedOffset,
    now: DateTime<Utc>,
) -> Result<(Vec<NaiveDate>, Vec<String>), PlanError> {
    let today = today(now, offset);
    let (start, end) = match *spec {
        DaySpec::Range { start, end } => {
            if end < start {
                return Err(PlanError::EndBeforeStart { start, end });
            }
            (start, end)
        }
        DaySpec::Lookback(0) => return Err(PlanError::ZeroLookback),
        DaySpec::Lookback(n) => {
            let end = today.pred_opt().expect("not the first day of time");
            (end - ChronoDuration::days(i64::from(n) - 1), end)
        }
    };
    if start < FIRST_DAY {
        return Err(PlanError::BeforeFirstDay { day: start });
    }
    let ends_at = day_end(end, offset);
    if now < ends_at {
        return Err(PlanError::Incomplete {
            day: end,
            offset,
            ends_at,
        });
    }
    let days: Vec<NaiveDate> = start.iter_days().take_while(|d| *d <= end).collect();
    let mut warnings = Vec::new();
    let oldest_kept = today - ChronoDuration::days(RETENTION_DAYS);
    if start < oldest_kept {
        let old = days.iter().filter(|d| **d < oldest_kept).count();
        warnings.push(format!(
            "{old} day(s) from {start} are older than about 3 months ({oldest_kept}); the API may no longer have them"
        ));
    }
    Ok((days, warnings))
}

/// A partition is final when it was fetched at least `settle` after its
/// day ended: the API will not change it any more (`docs/lake.md`, "Which days are final").
pub fn is_final(
    day: NaiveDate,
    offset: FixedOffset,
    settle: std::time::Duration,
    fetched_at: DateTime<Utc>,
) -> bool {
    let settle = ChronoDuration::from_std(settle).unwrap_or(ChronoDuration::MAX);
    day_end(day, offset)
        .checked_add_signed(settle)
        .is_some_and(|t| fetched_at >= t)
}

/// The wall time of `calls` paced calls: the first goes at once, each
/// next one interval later. The dry run's estimate and the progress ETA
/// both use it.
pub fn wall_time(calls: usize, interval: std::time::Duration) -> std::time::Duration {
    interval.saturating_mul(calls.saturating_sub(1).min(u32::MAX as usize) as u32)
}

/// Whether `day` is older than the API keeps (about 3 months,
/// [`RETENTION_DAYS`]) as of `now` in the API's clock `offset`: a fetch
/// of it may find the data gone.
pub fn is_forgotten(day: NaiveDate, offset: FixedOffset, now: DateTime<Utc>) -> bool {
    day < today(now, offset) - ChronoDuration::days(RETENTION_DAYS)
}

/// The API's clock when neither the flag nor the lake says: Beijing time,
/// the TRTC API's own.
pub fn default_offset() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("+08:00")
}

pub fn parse_offset(s: &str) -> Result<FixedOffset, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("z") || t.eq_ignore_ascii_case("utc") {
        return Ok(FixedOffset::east_opt(0).expect("zero"));
    }
    let bad = || format!("'{s}' is not a UTC offset like +08:00");
    let (sign, rest) = match t.as_bytes().first() {
        Some(b'+') => (1, &t[1..]),
        Some(b'-') => (-1, &t[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: i32 = h.parse().map_err(|_| bad())?;
    let m: i32 = m.parse().map_err(|_| bad())?;
    // Real offsets run from -12:00 to +14:00.
    if h > 14 || m > 59 || (h == 14 && m > 0) {
        return Err(bad());
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60)).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }
    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }
    fn bj() -> FixedOffset {
        parse_offset("+08:00").unwrap()
    }

    #[test]
    fn ranges_and_lookbacks() {
        let now = t("2026-11-26T06:00:00Z"); // 14:00 on the 26th in Beijing
        let cases: Vec<(DaySpec, Result<Vec<&str>, ()>)> = vec![
            (
                DaySpec::Range {
                    start: d("2026-11-20"),
                    end: d("2026-11-22"),
                },
                Ok(vec!["2026-11-20", "2026-11-21", "2026-11-22"]),
            ),
            (
                DaySpec::Range {
                    start: d("2026-11-25"),
                    end: d("2026-11-25"),
                },
                Ok(vec!["2026-11-25"]),
            ),
            (
                DaySpec::Lookback(3),
                Ok(vec!["2026-11-23", "2026-11-24", "2026-11-25"]),
            ),
            (DaySpec::Lookback(1), Ok(vec!["2026-11-25"])),
            (DaySpec::Lookback(0), Err(())),
            (
                DaySpec::Range {
                    start: d("2026-11-22"),
                    end: d("2026-11-20"),
                },
                Err(()),
            ),
            (
                DaySpec::Range {
                    start: d("2026-11-26"),
                    end: d("2026-11-26"),
                },
                Err(()),
            ),
            (
                DaySpec::Range {
                    start: d("2023-03-31"),
                    end: d("2023-04-02"),
                },
                Err(()),
            ),
        ];
        for (spec, want) in cases {
            let got = plan_days(&spec, bj(), now)
                .map(|(days, _)| days)
                .map_err(|_| ());
            let want = want.map(|v| v.into_iter().map(d).collect::<Vec<_>>());
            assert_eq!(got, want, "{spec:?}");
        }
    }

    #[test]
    fn the_api_clock_decides_what_today_is() {
        // 20:00 UTC on the 25th is already 04:00 on the 26th in Beijing,
        // so the 25th is complete there but not in UTC.
        let now = t("2026-11-25T20:00:00Z");
        let spec = DaySpec::Range {
            start: d("2026-11-25"),
            end: d("2026-11-25"),
        };
        assert!(plan_days(&spec, bj(), now).is_ok());
        let err = plan_days(&spec, parse_offset("+00:00").unwrap(), now).unwrap_err();
        assert!(matches!(err, PlanError::Incomplete { .. }));
        assert!(err.to_string().contains("2026-11-25"), "{err}");
        let (days, _) =
            plan_days(&DaySpec::Lookback(1), parse_offset("+00:00").unwrap(), now).unwrap();
        assert_eq!(days, vec![d("2026-11-24")]);
    }

    #[test]
    fn errors_name_the_day_and_flag() {
        let now = t("2026-11-26T06:00:00Z");
        let e = plan_days(
            &DaySpec::Range {
                start: d("2026-11-26"),
                end: d("2026-11-26"),
            },
            bj(),
            now,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "day 2026-11-26 is not complete yet in the API's clock (UTC+08:00); it ends at 2026-11-26 16:00:00 UTC"
        );
        let e = plan_days(
            &DaySpec::Range {
                start: d("2023-03-01"),
                end: d("2023-04-02"),
            },
            bj(),
            now,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("2023-03-01") && e.contains("2023-04-01"), "{e}");
        let e = plan_days(
            &DaySpec::Range {
                start: d("2026-11-02"),
                end: d("2026-11-01"),
            },
            bj(),
            now,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("--end 2026-11-01") && e.contains("--start 2026-11-02"),
            "{e}"
        );
    }

    #[test]
    fn old_days_warn() {
        let now = t("2026-11-26T06:00:00Z");
        let (days, warnings) = plan_days(
            &DaySpec::Range {
                start: d("2026-08-01"),
                end: d("2026-08-03"),
            },
            bj(),
            now,
        )
        .unwrap();
        assert_eq!(days.len(), 3);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let (_, warnings) = plan_days(&DaySpec::Lookback(3), bj(), now).unwrap();
        assert!(warnings.is_empty());
    }

    #[test]
    fn finality_needs_the_settle_time_after_the_day_ends() {
        let day = d("2026-11-20"); // ends 2026-11-20T16:00Z in Beijing time
        let settle = std::time::Duration::from_secs(24 * 3600);
        assert_eq!(day_end(day, bj()), t("2026-11-20T16:00:00Z"));
        assert!(!is_final(day, bj(), settle, t("2026-11-21T15:59:59Z")));
        assert!(is_final(day, bj(), settle, t("2026-11-21T16:00:00Z")));
        assert!(is_final(
            day,
            bj(),
            std::time::Duration::ZERO,
            t("2026-11-20T16:00:00Z")
        ));
        assert!(!is_final(
            day,
            bj(),
            std::time::Duration::ZERO,
            t("2026-11-20T15:00:00Z")
        ));
    }

    #[test]
    fn offsets() {
        assert_eq!(parse_offset("+08:00").unwrap().local_minus_utc(), 8 * 3600);
        assert_eq!(
            parse_offset("-05:30").unwrap().local_minus_utc(),
            -(5 * 3600 + 1800)
        );
        assert_eq!(parse_offset("UTC").unwrap().local_minus_utc(), 0);
        for bad in ["8", "+8:00", "+08", "08:00", "+25:00", "+08:60", ""] {
            assert!(parse_offset(bad).is_err(), "{bad}");
        }
    }
}
