//! The price list a user owns (`--prices FILE`, `docs/cost.md`): TOML,
//! checked as a whole before any call, one line per problem.
//!
//! ```toml
//! currency = "USD"
//! billing_account_id = "100012345678"
//! billing_account_name = "Example Ltd"   # optional
//! [[price]]
//! series = "audio"
//! list = 0.99          # per 1,000 minutes
//! contracted = 0.89    # optional, default: list
//! from = "2026-01-01"  # optional: first day it applies
//! [[price]]
//! table = "recording_usage"   # another meter: by its usage_key
//! mix_type = "multi"          # optional, recording_usage only
//! usage_key = "MixRecording"  # any case
//! list = 14
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use chrono::NaiveDate;
use sha2::{Digest, Sha256};

use crate::tables::checks::KNOWN_SERIES;
use crate::tables::meter;

/// ISO 4217 currency codes (the SIX list one the FinOps Foundation's
/// validator checks `BillingCurrency` against).
const ISO_4217: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD",
    "CAD", "CDF", "CHE", "CHF", "CHW", "CLF", "CLP", "CNY", "COP", "COU", "CRC", "CUC", "CUP",
    "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP",
    "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS",
    "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW",
    "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD",
    "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MXV", "MYR", "MZN", "NAD", "NGN",
    "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR",
    "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SLL",
    "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY",
    "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS", "VED", "VES",
    "VND", "VUV", "WST", "XAF", "XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XCD", "XDR", "XOF",
    "XPD", "XPF", "XPT", "XSU", "XTS", "XUA", "XXX", "YER", "ZAR", "ZMW", "ZWL",
];

/// One price, from its `from` day (or from the start): of a room series
/// (`table` `room_usage`), or of a meter's `usage_key` (and `mix_type`).
#[derive(Debug, Clone, PartialEq)]
pub struct Price {
    /// `room_usage`, or a meter table's name.
    pub table: &'static str,
    /// `recording_usage`'s `single` or `multi`; `None`: either.
    pub mix_type: Option<String>,
    /// The room series (`audio`, …), or the meter's `usage_key` as the list
    /// writes it (matched case-insensitively).
    pub series: String,
    /// Per 1,000 minutes, as the file says.
    pub list_per_1000: f64,
    pub contracted_per_1000: f64,
    pub from: Option<NaiveDate>,
}

impl Price {
    /// The price per minute (FOCUS `ListUnitPrice`, `PricingUnit` Minutes).
    pub fn list_per_minute(&self) -> f64 {
        self.list_per_1000 / 1000.0
    }

    pub fn contracted_per_minute(&self) -> f64 {
        self.contracted_per_1000 / 1000.0
    }

    /// FOCUS `SkuPriceId` of this price for the SKU `sku_id` (a price
    /// without `mix_type` prices two SKUs): the SKU and the day the price
    /// starts.
    pub fn id(&self, sku_id: &str) -> String {
        match self.from {
            Some(d) => format!("{sku_id}@{d}"),
            None => sku_id.to_owned(),
        }
    }

    /// FOCUS `SkuPriceDetails`: a JSON object of what the price is for,
    /// with our (`x_`) keys only: the series (or the meter's table, mix
    /// type and key), and the first day the price applies when the list
    /// gives one.
    pub fn details(&self) -> String {
        let mut o = serde_json::Map::new();
        if self.table == ROOM_USAGE {
            o.insert("x_Series".into(), self.series.clone().into());
        } else {
            o.insert("x_Table".into(), self.table.into());
            if let Some(m) = &self.mix_type {
                o.insert("x_MixType".into(), m.clone().into());
            }
            o.insert("x_UsageKey".into(), self.series.clone().into());
        }
        if let Some(d) = self.from {
            o.insert("x_PriceFrom".into(), d.to_string().into());
        }
        serde_json::Value::Object(o).to_string()
    }

    /// How the list's messages name it: `audio`, `relay_usage AudioRelay`,
    /// `recording_usage multi MixRecording`.
    fn shown(&self) -> String {
        shown(self.table, self.mix_type.as_deref(), &self.series)
    }
}

/// The table whose series a `[[price]]` names when it names no table.
pub const ROOM_USAGE: &str = crate::tables::Table::ROOM_USAGE.name();

fn shown(table: &str, mix_type: Option<&str>, item: &str) -> String {
    match (table, mix_type) {
        (ROOM_USAGE, _) => item.to_owned(),
        (t, Some(m)) => format!("{t} {m} {item}"),
        (t, None) => format!("{t} {item}"),
    }
}

/// What a price is looked up by: table, mix type, and the series or the
/// lower-cased usage key.
type Key = (&'static str, Option<String>, String);

/// A checked price list.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceList {
    /// The file, as given (for messages).
    pub path: String,
    /// SHA-256 (hex) of the file's bytes: a change recomputes `cost`.
    pub sha256: String,
    pub currency: String,
    /// `None` when every account names its own (`--accounts`).
    pub billing_account_id: Option<String>,
    pub billing_account_name: Option<String>,
    /// What is priced → its prices, by `from` (an entry without one first).
    prices: BTreeMap<Key, Vec<Price>>,
}

/// The problems of a price list, one line each.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct PricesError(pub Vec<String>);

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    currency: String,
    billing_account_id: Option<String>,
    billing_account_name: Option<String>,
    #[serde(default)]
    price: Vec<RawPrice>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrice {
    series: Option<String>,
    table: Option<String>,
    mix_type: Option<String>,
    usage_key: Option<String>,
    list: f64,
    contracted: Option<f64>,
    from: Option<Day>,
}

/// `from`, as a string (`"2026-01-01"`) or a TOML date (`2026-01-01`).
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Day {
    Text(String),
    Toml(toml::value::Datetime),
}

impl Day {
    /// The day, or the value as given (for the error).
    fn parse(&self) -> Result<NaiveDate, String> {
        match self {
            Day::Text(s) => s.parse().map_err(|_| format!("\"{s}\"")),
            Day::Toml(dt) => match (dt.date, dt.time) {
                (Some(d), None) => {
                    NaiveDate::from_ymd_opt(d.year.into(), d.month.into(), d.day.into())
                        .ok_or_else(|| dt.to_string())
                }
                _ => Err(dt.to_string()),
            },
        }
    }
}

/// Whether `series` can be priced: a known one, or `extra_<name>`, the
/// series of an extra column of the room CSV (`8K` → `extra_8k`).
fn priceable(series: &str) -> bool {
    KNOWN_SERIES.contains(&series)
        || series.strip_prefix("extra_").is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
}

/// What is wrong with a billing account id or name, if anything.
pub fn id_problem(what: &str, value: &str) -> Option<String> {
    if value.trim().is_empty() {
        Some(format!("{what} is empty"))
    } else if value.chars().any(char::is_control) {
        Some(format!(
            "{what} {value:?} holds a control character (a newline?)"
        ))
    } else {
        None
    }
}

impl PriceList {
    /// Reads and checks the price list at `path`.
    pub fn load(path: &Path) -> Result<Self, PricesError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path)
            .map_err(|e| PricesError(vec![format!("--prices {shown}: cannot be read ({e})")]))?;
        Self::parse(&shown, &bytes)
    }

    /// Checks the price list `bytes`, read from `path`.
    pub fn parse(path: &str, bytes: &[u8]) -> Result<Self, PricesError> {
        let at = |msg: String| format!("--prices {path}: {msg}");
        let text = std::str::from_utf8(bytes)
            .map_err(|e| PricesError(vec![at(format!("not UTF-8 text ({e})"))]))?;
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let msg = e.message().trim().to_owned();
            let line = e
                .span()
                .map(|s| format!("line {}: ", text[..s.start].matches('\n').count() + 1))
                .unwrap_or_default();
            PricesError(vec![at(format!("{line}{msg}"))])
        })?;
        let mut problems = Vec::new();
        if !ISO_4217.contains(&raw.currency.as_str()) {
            problems.push(at(format!(
                "currency \"{}\" is not an ISO 4217 code (like \"USD\", \"CNY\", \"EUR\")",
                raw.currency
            )));
        }
        if let Some(problem) = raw
            .billing_account_id
            .as_deref()
            .and_then(|v| id_problem("billing_account_id", v))
        {
            problems.push(at(problem));
        }
        // An empty name is as good as none; a control character is not.
        if let Some(name) = raw.billing_account_name.as_deref()
            && !name.trim().is_empty()
            && let Some(problem) = id_problem("billing_account_name", name)
        {
            problems.push(at(problem));
        }
        if raw.price.is_empty() {
            problems.push(at("no [[price]] entry".into()));
        }
        let mut prices: BTreeMap<Key, Vec<Price>> = BTreeMap::new();
        for (i, p) in raw.price.iter().enumerate() {
            let (table, mix_type, item) = match what_is_priced(p) {
                Ok(w) => w,
                Err(msg) => {
                    problems.push(at(format!("[[price]] #{}: {msg}", i + 1)));
                    continue;
                }
            };
            let here = format!("[[price]] #{} ({})", i + 1, shown(table, mix_type, item));
            if table == ROOM_USAGE && !priceable(item) {
                problems.push(at(format!(
                    "{here}: unknown series \"{item}\"; series: {}, or extra_<name> for an extra \
                     column of the room CSV (8K → extra_8k)",
                    KNOWN_SERIES.join(", ")
                )));
                continue;
            }
            let contracted = p.contracted.unwrap_or(p.list);
            let given = [("list", Some(p.list)), ("contracted", p.contracted)];
            for (name, v) in given.into_iter().filter_map(|(n, v)| Some((n, v?))) {
                if !v.is_finite() {
                    problems.push(at(format!("{here}: {name} = {v} is not a finite number")));
                } else if v.is_sign_negative() {
                    problems.push(at(format!("{here}: {name} = {v} is negative")));
                }
            }
            let from = match p.from.as_ref().map(Day::parse) {
                None => None,
                Some(Ok(d)) => Some(d),
                Some(Err(s)) => {
                    problems.push(at(format!("{here}: from = {s} is not a day (YYYY-MM-DD)")));
                    continue;
                }
            };
            let price = Price {
                table,
                mix_type: mix_type.map(str::to_owned),
                series: item.to_owned(),
                list_per_1000: p.list,
                contracted_per_1000: contracted,
                from,
            };
            let key = (table, price.mix_type.clone(), key_of(table, item));
            let list = prices.entry(key).or_default();
            if let Some(prev) = list.last() {
                let when =
                    |d: Option<NaiveDate>| d.map_or("the start".to_owned(), |d| d.to_string());
                if prev.from == from {
                    problems.push(at(format!(
                        "{here}: a second price of {} from {}; give each price its own from",
                        prev.shown(),
                        when(from)
                    )));
                } else if from < prev.from {
                    problems.push(at(format!(
                        "{here}: from {} is listed after a price of {} from {}; list each series' prices in order of from",
                        when(from),
                        prev.shown(),
                        when(prev.from)
                    )));
                }
            }
            list.push(price);
        }
        if !problems.is_empty() {
            return Err(PricesError(problems));
        }
        Ok(PriceList {
            path: path.to_owned(),
            sha256: hex::encode(Sha256::digest(bytes)),
            currency: raw.currency,
            billing_account_id: raw.billing_account_id,
            billing_account_name: raw.billing_account_name.filter(|s| !s.trim().is_empty()),
            prices,
        })
    }

    /// Every room series the list prices (known ones and `extra_<name>`).
    pub fn series(&self) -> impl Iterator<Item = &str> {
        self.prices
            .keys()
            .filter(|(t, _, _)| *t == ROOM_USAGE)
            .map(|(_, _, s)| s.as_str())
    }

    /// The price of room series `series` on `day`: the newest entry not
    /// after it.
    pub fn price(&self, series: &str, day: NaiveDate) -> Option<&Price> {
        self.newest(&(ROOM_USAGE, None, series.to_owned()), day)
    }

    /// The price of meter `table`'s `usage_key` (of `mix_type`, if the
    /// table has one) on `day`: an entry naming the mix type wins over one
    /// that does not; the key matches whatever its case.
    pub fn meter_price(
        &self,
        table: &str,
        mix_type: Option<&str>,
        usage_key: &str,
        day: NaiveDate,
    ) -> Option<&Price> {
        let table = meter::named(table)?.table.name();
        let key = usage_key.to_lowercase();
        mix_type
            .and_then(|m| self.newest(&(table, Some(m.to_owned()), key.clone()), day))
            .or_else(|| self.newest(&(table, None, key), day))
    }

    fn newest(&self, key: &Key, day: NaiveDate) -> Option<&Price> {
        self.prices
            .get(key)?
            .iter()
            .rev()
            .find(|p| p.from.is_none_or(|f| f <= day))
    }
}

/// The lookup key of `item` in `table`: a room series as it is, a usage
/// key lower-cased.
fn key_of(table: &str, item: &str) -> String {
    if table == ROOM_USAGE {
        item.to_owned()
    } else {
        item.to_lowercase()
    }
}

/// What a `[[price]]` entry prices: (table, mix type, series or usage
/// key), or why it cannot say.
fn what_is_priced(p: &RawPrice) -> Result<(&'static str, Option<&str>, &str), String> {
    let table = p.table.as_deref().unwrap_or(ROOM_USAGE);
    if table == ROOM_USAGE {
        if p.usage_key.is_some() || p.mix_type.is_some() {
            return Err(
                "usage_key and mix_type are for the meter tables; a room_usage price names series"
                    .into(),
            );
        }
        let series = p
            .series
            .as_deref()
            .ok_or("no series (audio, video_hd, …), nor table and usage_key for another meter")?;
        return Ok((ROOM_USAGE, None, series));
    }
    let Some(m) = meter::named(table) else {
        let known: Vec<&str> = std::iter::once(ROOM_USAGE)
            .chain(meter::METERS.iter().map(|m| m.table.name()))
            .collect();
        return Err(format!(
            "unknown table \"{table}\"; tables: {}",
            known.join(", ")
        ));
    };
    let table = m.table.name();
    if p.series.is_some() {
        return Err(format!(
            "series is for room_usage; a {table} price names usage_key"
        ));
    }
    let key = p
        .usage_key
        .as_deref()
        .filter(|k| !k.trim().is_empty())
        .ok_or_else(|| format!("a {table} price needs a usage_key (as the answers name it)"))?;
    match p.mix_type.as_deref() {
        Some(mix) if m.mix_types.is_empty() => Err(format!(
            "mix_type \"{mix}\" for {table}, which has none (recording_usage has)"
        )),
        Some(mix) if !m.mix_types.contains(&mix) => Err(format!(
            "mix_type \"{mix}\" of {table} is not one of {}",
            m.mix_types.join(", ")
        )),
        mix => Ok((table, mix, key)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PriceList, Vec<String>> {
        PriceList::parse("p.toml", text.as_bytes()).map_err(|e| e.0)
    }

    const GOOD: &str = r#"
currency = "USD"
billing_account_id = "100012345678"
[[price]]
series = "audio"
list = 0.99
contracted = 0.89
[[price]]
series = "audio"
list = 0.5
from = "2026-03-01"
[[price]]
series = "video_hd"
list = 4
"#;

    #[test]
    fn the_newest_price_not_after_the_day_wins() {
        let p = parse(GOOD).unwrap();
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        let audio = |day| p.price("audio", d(day)).unwrap();
        assert_eq!(audio("2026-02-28").list_per_1000, 0.99);
        assert_eq!(audio("2026-02-28").contracted_per_1000, 0.89);
        assert_eq!(audio("2026-03-01").list_per_1000, 0.5);
        assert_eq!(
            audio("2026-03-01").contracted_per_1000,
            0.5,
            "default: list"
        );
        assert_eq!(
            audio("2026-03-01").id("trtc-audio"),
            "trtc-audio@2026-03-01"
        );
        assert_eq!(
            p.price("video_hd", d("2020-01-01"))
                .unwrap()
                .list_per_minute(),
            0.004
        );
        assert!(p.price("video_sd", d("2026-03-01")).is_none());
        assert_eq!(p.sha256.len(), 64);
    }

    #[test]
    fn a_price_from_a_later_day_does_not_cover_earlier_ones() {
        let p = parse(
            "currency = \"EUR\"\nbilling_account_id = \"1\"\n[[price]]\nseries = \"audio\"\nlist = 1\nfrom = \"2026-05-01\"\n",
        )
        .unwrap();
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        assert!(p.price("audio", d("2026-04-30")).is_none());
        assert!(p.price("audio", d("2026-05-01")).is_some());
    }

    #[test]
    fn every_problem_is_a_line_naming_it() {
        let bad = r#"
currency = "usd"
[[price]]
series = "video_8k"
list = 1
[[price]]
series = "audio"
list = -1
[[price]]
series = "video_sd"
list = nan
contracted = inf
[[price]]
series = "video_hd"
list = 1
from = "2026-05-01"
[[price]]
series = "video_hd"
list = 1
from = "2026-04-01"
[[price]]
series = "video_2k"
list = 1
[[price]]
series = "video_2k"
list = 2
[[price]]
series = "video_4k"
list = 1
from = "May 1"
"#;
        let e = parse(bad).unwrap_err();
        let all = e.join("\n");
        for want in [
            "currency \"usd\" is not an ISO 4217 code",
            "unknown series \"video_8k\"",
            "#2 (audio): list = -1 is negative",
            "#3 (video_sd): list = NaN is not a finite number",
            "#3 (video_sd): contracted = inf is not a finite number",
            "#5 (video_hd): from 2026-04-01 is listed after a price of video_hd from 2026-05-01",
            "#7 (video_2k): a second price of video_2k from the start",
            "#8 (video_4k): from = \"May 1\" is not a day",
        ] {
            assert!(all.contains(want), "{want} in\n{all}");
        }
        assert_eq!(e.len(), 8, "{all}");
        assert!(
            e.iter().all(|l| l.starts_with("--prices p.toml: ")),
            "{all}"
        );
    }

    /// Issue 31, point 12: `from` as a TOML date; an extra series priced
    /// (the cost error's advice, "add a [[price]] for extra_8k", can be
    /// followed); -0.0 and a billing id with a newline refused.
    #[test]
    fn toml_dates_extra_series_negative_zero_and_control_characters() {
        let p = parse(
            "currency = \"EUR\"\nbilling_account_id = \"1\"\n[[price]]\nseries = \"audio\"\nlist = 1\n[[price]]\nseries = \"audio\"\nlist = 2\nfrom = 2026-05-01\n[[price]]\nseries = \"extra_8k\"\nlist = 99\n",
        )
        .unwrap();
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        assert_eq!(
            p.price("audio", d("2026-05-01")).unwrap().list_per_1000,
            2.0
        );
        assert_eq!(
            p.price("extra_8k", d("2026-05-01")).unwrap().list_per_1000,
            99.0
        );
        let e = parse(
            "currency = \"EUR\"\nbilling_account_id = \"1\\n\"\n[[price]]\nseries = \"audio\"\nlist = -0.0\nfrom = 2026-05-01T10:00:00\n[[price]]\nseries = \"extra_\"\nlist = 1\n",
        )
        .unwrap_err();
        for want in [
            "billing_account_id \"1\\n\" holds a control character",
            "list = -0 is negative",
            "from = 2026-05-01T10:00:00 is not a day",
            "unknown series \"extra_\"",
        ] {
            assert!(e.iter().any(|p| p.contains(want)), "{want}: {e:?}");
        }
    }

    #[test]
    fn unknown_keys_and_syntax_are_refused_with_their_line() {
        let e = parse("currency = \"USD\"\ncolour = 1\n").unwrap_err();
        assert!(e[0].contains("line 2") && e[0].contains("colour"), "{e:?}");
        let e =
            parse("currency = \"USD\"\n[[price]]\nseries = \"audio\"\nlist = 1\nlist_price = 2\n")
                .unwrap_err();
        assert!(e[0].contains("list_price"), "{e:?}");
        let e = parse("currency = \"USD\"\n").unwrap_err();
        assert!(e[0].contains("no [[price]] entry"), "{e:?}");
    }

    /// Contract 4, section 11: a price may name a meter table's usage key
    /// (and recording's mix type) instead of a room series.
    #[test]
    fn meter_keys_are_priced_by_table_mix_type_and_key_whatever_its_case() {
        let p = parse(
            r#"currency = "USD"
billing_account_id = "1"
[[price]]
series = "audio"
list = 1
[[price]]
table = "relay_usage"
usage_key = "AudioRelay"
list = 2
[[price]]
table = "relay_usage"
usage_key = "audiorelay"
list = 3
from = 2026-05-01
[[price]]
table = "recording_usage"
usage_key = "MixRecording"
list = 4
[[price]]
table = "recording_usage"
mix_type = "multi"
usage_key = "MixRecording"
list = 5
contracted = 4.5
"#,
        )
        .unwrap();
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        let relay = |day| p.meter_price("relay_usage", None, "AUDIORELAY", d(day));
        assert_eq!(relay("2026-04-30").unwrap().list_per_1000, 2.0);
        assert_eq!(
            relay("2026-05-01").unwrap().list_per_1000,
            3.0,
            "a change by key, any case"
        );
        let rec = |mix| p.meter_price("recording_usage", mix, "MixRecording", d("2026-01-01"));
        assert_eq!(
            rec(Some("multi")).unwrap().contracted_per_1000,
            4.5,
            "its mix type wins"
        );
        assert_eq!(
            rec(Some("single")).unwrap().list_per_1000,
            4.0,
            "else the entry of either"
        );
        assert!(
            p.meter_price("relay_usage", None, "VideoRelay", d("2026-01-01"))
                .is_none()
        );
        assert!(
            p.meter_price("transcoding_usage", None, "AudioRelay", d("2026-01-01"))
                .is_none()
        );
        assert!(
            p.meter_price("room_usage", None, "audio", d("2026-01-01"))
                .is_none()
        );
        assert_eq!(
            p.series().collect::<Vec<_>>(),
            ["audio"],
            "room series only"
        );
        let multi = rec(Some("multi")).unwrap();
        assert_eq!(
            multi.details(),
            r#"{"x_MixType":"multi","x_Table":"recording_usage","x_UsageKey":"MixRecording"}"#
        );
        assert_eq!(
            relay("2026-05-01")
                .unwrap()
                .id("trtc-relay_usage:AudioRelay"),
            "trtc-relay_usage:AudioRelay@2026-05-01"
        );
    }

    #[test]
    fn a_meter_price_that_cannot_say_what_it_prices_is_refused() {
        let e = parse(
            r#"currency = "USD"
billing_account_id = "1"
[[price]]
table = "relay_usage"
list = 1
[[price]]
table = "cdn_usage"
usage_key = "X"
list = 1
[[price]]
table = "relay_usage"
series = "audio"
usage_key = "X"
list = 1
[[price]]
series = "audio"
usage_key = "X"
list = 1
[[price]]
table = "relay_usage"
mix_type = "multi"
usage_key = "X"
list = 1
[[price]]
table = "recording_usage"
mix_type = "mixed"
usage_key = "X"
list = 1
[[price]]
table = "transcoding_usage"
usage_key = "SD"
list = 1
[[price]]
table = "transcoding_usage"
usage_key = "sd"
list = 2
[[price]]
list = 1
"#,
        )
        .unwrap_err();
        let all = e.join("\n");
        for want in [
            "#1: a relay_usage price needs a usage_key",
            "#2: unknown table \"cdn_usage\"; tables: room_usage, recording_usage, transcoding_usage, relay_usage",
            "#3: series is for room_usage; a relay_usage price names usage_key",
            "#4: usage_key and mix_type are for the meter tables",
            "#5: mix_type \"multi\" for relay_usage, which has none",
            "#6: mix_type \"mixed\" of recording_usage is not one of single, multi",
            "#8 (transcoding_usage sd): a second price of transcoding_usage SD from the start",
            "#9: no series",
        ] {
            assert!(all.contains(want), "{want} in\n{all}");
        }
        assert_eq!(e.len(), 8, "{all}");
    }
}
