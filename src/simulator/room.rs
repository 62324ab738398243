//! `DescribeTrtcRoomUsage` as the simulator serves it: a window of at most
//! 24 hours, data from 2023-04-01, the day's rooms as CSV.

use chrono::{NaiveDate, NaiveDateTime, Utc};

use crate::simulator::{Answer, Outcome, SimConfig, data};
use crate::tencent::room_usage::RoomUsageRequest;

fn parse_time(s: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").ok()
}

/// The request in `body`: its app, its day (when `StartTime` reads), and
/// the request.
pub(crate) fn parse(body: &[u8]) -> serde_json::Result<(u64, Option<NaiveDate>, RoomUsageRequest)> {
    serde_json::from_slice::<RoomUsageRequest>(body)
        .map(|r| (r.sdk_app_id, parse_time(&r.start_time).map(|s| s.date()), r))
}

/// The answer to a well-formed, authenticated, admitted request.
pub(crate) fn evaluate(config: &SimConfig, request: &RoomUsageRequest) -> Outcome {
    let (Some(start), Some(end)) = (
        parse_time(&request.start_time),
        parse_time(&request.end_time),
    ) else {
        return Err((
            "InvalidParameter.TimeFormat",
            "StartTime and EndTime must look like 2023-01-06 00:00.".into(),
        ));
    };
    if end < start || end - start > chrono::Duration::hours(24) {
        return Err((
            "InvalidParameter.QueryTimeRange",
            "The window must be at most 24 hours.".into(),
        ));
    }
    let first = NaiveDate::from_ymd_opt(2023, 4, 1).expect("valid");
    if start.date() < first {
        return Err((
            "InvalidParameter.StartTime",
            "Data exists from 2023-04-01 only.".into(),
        ));
    }
    if let Some(apps) = &config.apps
        && !apps.contains(&request.sdk_app_id)
    {
        return Err((
            "FailedOperation.SdkAppIdNotExist",
            format!("SdkAppId {} does not exist.", request.sdk_app_id),
        ));
    }
    let day = start.date();
    let today = Utc::now().with_timezone(&config.utc_offset).date_naive();
    let csv = if day >= today {
        String::new()
    } else {
        data::csv_for(request.sdk_app_id, day, config.rooms, config.exact_rooms)
    };
    Ok((request.sdk_app_id, day, Answer::Room(csv)))
}
