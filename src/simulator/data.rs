//! Deterministic room usage for the simulator: the same (app, day) always
//! gives the same CSV, so tests and benchmarks can recompute what was served.

use std::fmt::Write as _;

use chrono::{Datelike, NaiveDate};

/// The real service's header, `hd` lower-case included.
pub const HEADER: &str = "RoomId,Audio,SD,hd,FullHD,2K,4K";

fn seed(app_id: u64, day: NaiveDate) -> u64 {
    // SplitMix64 of the pair: cheap, stable across versions and platforms.
    let mut z = app_id
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(day.num_days_from_ce() as u64);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// How many rooms the simulator reports for `(app_id, day)` when the
/// typical count is `rooms`. Every 11th (app, day) or so has none.
pub fn room_count(app_id: u64, day: NaiveDate, rooms: u64) -> u64 {
    let s = seed(app_id, day);
    if rooms == 0 || s.is_multiple_of(11) {
        return 0;
    }
    // Between 75% and 125% of the typical count, at least one.
    let spread = rooms / 2;
    (rooms - rooms / 4
        + if spread > 0 {
            (s >> 8) % (spread + 1)
        } else {
            0
        })
    .max(1)
}

/// A room id in one of the shapes real apps use: numeric, string, with
/// leading zeros, with a comma (so quoted), or non-ASCII.
fn room_id(rng: &mut fastrand::Rng, i: u64, out: &mut String) {
    match rng.u32(0..100) {
        0..=44 => write!(out, "{}", 100_000 + i * 7 + rng.u64(0..7)),
        45..=84 => write!(out, "room_{:x}_{i}", rng.u32(..)),
        85..=92 => write!(out, "00{i}"),
        93..=96 => write!(out, "\"class,{i}\""),
        _ => write!(out, "会议室-{i}"),
    }
    .expect("writing to a String");
}

/// A skewed number of seconds: mostly short, some whole-day rooms.
fn seconds(rng: &mut fastrand::Rng, max: u64, zero_pct: u32) -> u64 {
    if rng.u32(0..100) < zero_pct {
        return 0;
    }
    let r = rng.f64();
    ((r * r * r) * max as f64) as u64
}

/// Appends `count` rows of `(app_id, day)` to `out`.
fn rows(app_id: u64, day: NaiveDate, count: u64, out: &mut String) {
    let mut rng = fastrand::Rng::with_seed(seed(app_id, day) ^ 0xA5A5);
    for i in 0..count {
        room_id(&mut rng, i, out);
        let audio = seconds(&mut rng, 86_400, 5);
        let sd = seconds(&mut rng, 86_400, 40);
        let hd = seconds(&mut rng, 86_400, 55);
        let fhd = seconds(&mut rng, 43_200, 80);
        let k2 = seconds(&mut rng, 21_600, 95);
        let k4 = seconds(&mut rng, 7_200, 99);
        writeln!(out, ",{audio},{sd},{hd},{fhd},{k2},{k4}").expect("writing to a String");
    }
}

/// The CSV for `(app_id, day)`: [`day_csv`], or exactly `rooms` rows when
/// `exact` (for benchmarks).
pub fn csv_for(app_id: u64, day: NaiveDate, rooms: u64, exact: bool) -> String {
    if !exact {
        return day_csv(app_id, day, rooms);
    }
    let mut out = String::with_capacity(HEADER.len() + 1 + rooms as usize * 40);
    out.push_str(HEADER);
    out.push('\n');
    rows(app_id, day, rooms, &mut out);
    out
}

/// The CSV the simulator serves as `Response.Data` for `(app_id, day)`.
/// A day without rooms alternates between the two shapes the API may use:
/// an empty string or a header line only.
pub fn day_csv(app_id: u64, day: NaiveDate, rooms: u64) -> String {
    let count = room_count(app_id, day, rooms);
    if count == 0 {
        return if seed(app_id, day).is_multiple_of(2) {
            String::new()
        } else {
            format!("{HEADER}\n")
        };
    }
    let mut out = String::with_capacity(HEADER.len() + 1 + count as usize * 40);
    out.push_str(HEADER);
    out.push('\n');
    rows(app_id, day, count, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_shaped_like_the_api() {
        let day: NaiveDate = "2026-11-20".parse().unwrap();
        let a = day_csv(1400000001, day, 40);
        assert_eq!(a, day_csv(1400000001, day, 40));
        assert_ne!(a, day_csv(1400000002, day, 40));
        if !a.is_empty() {
            assert!(a.starts_with("RoomId,Audio,SD,hd,FullHD,2K,4K\n"));
        }
        let mut empties = 0;
        for app in 1..200 {
            let n = room_count(app, day, 40);
            if n == 0 {
                empties += 1;
            } else {
                assert!((30..=50).contains(&n), "{n}");
            }
        }
        assert!(empties > 0 && empties < 40, "{empties}");
    }
}
