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
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use chrono::NaiveDate;
use sha2::{Digest, Sha256};

use crate::tables::checks::KNOWN_SERIES;

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

/// One price of a series, from its `from` day (or from the start).
#[derive(Debug, Clone, PartialEq)]
pub struct Price {
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

    /// FOCUS `SkuPriceId`: the series and the day the price starts.
    pub fn id(&self) -> String {
        match self.from {
            Some(d) => format!("trtc-{}@{d}", self.series),
            None => format!("trtc-{}", self.series),
        }
    }

    /// FOCUS `SkuPriceDetails`: a JSON object of what the price is for,
    /// with our (`x_`) keys only: the series, and the first day the price
    /// applies when the list gives one.
    pub fn details(&self) -> String {
        let mut o = serde_json::Map::new();
        o.insert("x_Series".into(), self.series.clone().into());
        if let Some(d) = self.from {
            o.insert("x_PriceFrom".into(), d.to_string().into());
        }
        serde_json::Value::Object(o).to_string()
    }
}

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
    /// Series → its prices, by `from` (an entry without one first).
    prices: BTreeMap<String, Vec<Price>>,
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
    series: String,
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
        let mut prices: BTreeMap<String, Vec<Price>> = BTreeMap::new();
        for (i, p) in raw.price.iter().enumerate() {
            let here = format!("[[price]] #{} ({})", i + 1, p.series);
            if !priceable(&p.series) {
                problems.push(at(format!(
                    "{here}: unknown series \"{}\"; series: {}, or extra_<name> for an extra \
                     column of the room CSV (8K → extra_8k)",
                    p.series,
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
            let list = prices.entry(p.series.clone()).or_default();
            if let Some(prev) = list.last() {
                let shown =
                    |d: Option<NaiveDate>| d.map_or("the start".to_owned(), |d| d.to_string());
                if prev.from == from {
                    problems.push(at(format!(
                        "{here}: a second price of {} from {}; give each price its own from",
                        p.series,
                        shown(from)
                    )));
                } else if from < prev.from {
                    problems.push(at(format!(
                        "{here}: from {} is listed after a price of {} from {}; list each series' prices in order of from",
                        shown(from),
                        p.series,
                        shown(prev.from)
                    )));
                }
            }
            list.push(Price {
                series: p.series.clone(),
                list_per_1000: p.list,
                contracted_per_1000: contracted,
                from,
            });
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

    /// Every series the list prices (known ones and `extra_<name>`).
    pub fn series(&self) -> impl Iterator<Item = &str> {
        self.prices.keys().map(String::as_str)
    }

    /// The price of `series` on `day`: the newest entry not after it.
    pub fn price(&self, series: &str, day: NaiveDate) -> Option<&Price> {
        self.prices
            .get(series)?
            .iter()
            .rev()
            .find(|p| p.from.is_none_or(|f| f <= day))
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
        assert_eq!(audio("2026-03-01").id(), "trtc-audio@2026-03-01");
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
}
