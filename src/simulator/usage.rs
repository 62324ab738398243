//! The APIs that answer in `UsageKey`/`UsageList` as the simulator serves
//! them: one request shape (`StartTime`, `EndTime`, `SdkAppId`, and
//! `MixType` for recording), one day at a time in 5-minute buckets, each
//! API's series from its own function (`DescribeTrtcUsage` here, the other
//! meters in `meters.rs`), all adding up to the rooms the
//! room API serves.

use chrono::{NaiveDate, TimeZone, Utc};
use serde::Deserialize;
use serde_json::json;

use crate::simulator::{Answer, AppAnswer, Inner, Outcome, data};

/// What every such request carries.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct UsageBody {
    #[serde(rename = "StartTime")]
    pub start_time: String,
    #[serde(rename = "EndTime")]
    pub end_time: String,
    #[serde(rename = "SdkAppId")]
    pub sdk_app_id: u64,
    /// `DescribeRecordingUsage`'s.
    #[serde(rename = "MixType", default)]
    pub mix_type: Option<String>,
}

fn parse_day(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// The request in `body`, its app and its day.
pub(crate) fn parse(body: &[u8]) -> serde_json::Result<(u64, Option<NaiveDate>, UsageBody)> {
    serde_json::from_slice::<UsageBody>(body).map(|r| (r.sdk_app_id, parse_day(&r.start_time), r))
}

/// An API's series: their keys, and each bucket's values from its minutes
/// of the six room series.
pub(crate) type Keyed = (Vec<&'static str>, fn(&[f64; 6]) -> Vec<f64>);

/// The series an API answers a request with; `Err` is the API error to
/// answer instead.
pub(crate) type Series = fn(&UsageBody) -> Result<Keyed, (&'static str, String)>;

/// `DescribeTrtcUsage`: the six series, as the rooms add up to.
pub(crate) fn app_series(_: &UsageBody) -> Result<Keyed, (&'static str, String)> {
    Ok((data::USAGE_KEY.to_vec(), |b| b.to_vec()))
}

/// The answer to a well-formed, authenticated, admitted request of an API
/// whose series `series` gives: one day's 288 buckets.
pub(crate) fn evaluate(inner: &mut Inner, request: &UsageBody, series: Series) -> Outcome {
    let (Some(start), Some(end)) = (parse_day(&request.start_time), parse_day(&request.end_time))
    else {
        return Err((
            "InvalidParameter.TimeFormat",
            "StartTime and EndTime must look like 2023-01-06.".into(),
        ));
    };
    if end < start || (end - start).num_days() > 30 {
        return Err((
            "InvalidParameter.QueryScaleOversize",
            "The span must be at most 31 days.".into(),
        ));
    }
    if end != start {
        return Err((
            "InvalidParameter",
            "The simulator answers one day at a time (5-minute buckets).".into(),
        ));
    }
    let config = &inner.config;
    if let Some(apps) = &config.apps
        && !apps.contains(&request.sdk_app_id)
    {
        return Err((
            "InvalidParameter.SdkAppId",
            format!("SdkAppId {} does not exist.", request.sdk_app_id),
        ));
    }
    let (keys, values_of) = series(request)?;
    let day = start;
    let today = Utc::now().with_timezone(&config.utc_offset).date_naive();
    let (rooms, exact) = (config.rooms, config.exact_rooms);
    let totals = if day >= today {
        [0; 6]
    } else {
        *inner
            .totals
            .entry((request.sdk_app_id, day))
            .or_insert_with(|| data::totals_for(request.sdk_app_id, day, rooms, exact))
    };
    let offset = inner.config.utc_offset;
    let midnight = offset
        .from_local_datetime(&day.and_hms_opt(0, 0, 0).expect("midnight"))
        .single()
        .expect("a fixed offset has one midnight");
    let list = data::buckets(totals)
        .into_iter()
        .enumerate()
        .map(|(i, minutes)| {
            let t = midnight + chrono::Duration::minutes(5 * i as i64);
            json!({
                "TimeKey": t.format("%Y-%m-%d %H:%M:%S").to_string(),
                "TimeStampKey": t.timestamp(),
                "UsageValue": values_of(&minutes),
            })
        })
        .collect();
    let keys = keys.iter().map(|k| json!(k)).collect();
    Ok((
        request.sdk_app_id,
        day,
        Answer::App(AppAnswer { keys, list }),
    ))
}
