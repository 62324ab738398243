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

/// Calls `f` with each of the `count` rows of `(app_id, day)`: the room id
/// as the CSV spells it, and its seconds in the header's order.
fn each_row(app_id: u64, day: NaiveDate, count: u64, mut f: impl FnMut(&str, [u64; 6])) {
    let mut rng = fastrand::Rng::with_seed(seed(app_id, day) ^ 0xA5A5);
    let mut id = String::new();
    for i in 0..count {
        id.clear();
        room_id(&mut rng, i, &mut id);
        let audio = seconds(&mut rng, 86_400, 5);
        let sd = seconds(&mut rng, 86_400, 40);
        let hd = seconds(&mut rng, 86_400, 55);
        let fhd = seconds(&mut rng, 43_200, 80);
        let k2 = seconds(&mut rng, 21_600, 95);
        let k4 = seconds(&mut rng, 7_200, 99);
        f(&id, [audio, sd, hd, fhd, k2, k4]);
    }
}

/// Appends `count` rows of `(app_id, day)` to `out`.
fn rows(app_id: u64, day: NaiveDate, count: u64, out: &mut String) {
    each_row(app_id, day, count, |id, [a, sd, hd, fhd, k2, k4]| {
        writeln!(out, "{id},{a},{sd},{hd},{fhd},{k2},{k4}").expect("writing to a String");
    });
}

/// The seconds of every series (the header's order) summed over the rooms
/// that [`csv_for`] serves, without building the CSV.
pub fn totals_for(app_id: u64, day: NaiveDate, rooms: u64, exact: bool) -> [u64; 6] {
    let count = if exact {
        rooms
    } else {
        room_count(app_id, day, rooms)
    };
    let mut totals = [0u64; 6];
    each_row(app_id, day, count, |_, values| {
        for (t, v) in totals.iter_mut().zip(values) {
            *t += v;
        }
    });
    totals
}

/// The `UsageKey` of `DescribeTrtcUsage`, in the API's spelling.
pub const USAGE_KEY: [&str; 6] = ["Audio", "SD", "HD", "FullHD", "2K", "4K"];

/// Buckets in a day: one every 5 minutes.
pub const BUCKETS: usize = 288;

/// The day's 288 five-minute buckets of minutes per series, shaped like a
/// day of calls (quiet at night, busy in the evening), that add up to
/// `totals` seconds ÷ 60 within a thousandth of a minute per bucket.
pub fn buckets(totals: [u64; 6]) -> Vec<[f64; 6]> {
    let weight = |i: usize| {
        let hour = i as f64 / 12.0;
        1.0 + 4.0 * (-((hour - 20.0) / 3.0).powi(2)).exp()
            + 2.0 * (-((hour - 11.0) / 2.5).powi(2)).exp()
    };
    let sum: f64 = (0..BUCKETS).map(weight).sum();
    (0..BUCKETS)
        .map(|i| {
            let share = weight(i) / sum;
            totals.map(|secs| ((secs as f64 / 60.0) * share * 1000.0).round() / 1000.0)
        })
        .collect()
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
        let totals = totals_for(1400000001, day, 40, false);
        let mut want = [0u64; 6];
        for line in a.lines().skip(1) {
            let fields: Vec<&str> = line.rsplitn(7, ',').collect();
            for (i, v) in fields[..6].iter().rev().enumerate() {
                want[i] += v.parse::<u64>().unwrap();
            }
        }
        assert_eq!(totals, want);
        let b = buckets(totals);
        assert_eq!(b.len(), BUCKETS);
        for s in 0..6 {
            let sum: f64 = b.iter().map(|v| v[s]).sum();
            assert!(
                (sum - totals[s] as f64 / 60.0).abs() < 0.2,
                "{sum} vs {}",
                totals[s]
            );
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
