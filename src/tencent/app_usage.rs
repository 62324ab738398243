//! `DescribeTrtcUsage`: the app's usage in 5-minute buckets, in minutes,
//! the figure Tencent names for reconciliation (`docs/tencent-api.md`).
//! Body `{"StartTime": "D", "EndTime": "D", "SdkAppId": N}` (`SdkAppId`
//! with a capital `I` here; the room API spells it `SdkAppid`); its answer
//! has the shape every usage API but the room one shares
//! ([`crate::tencent::usage`]).

use chrono::NaiveDate;

use crate::tencent::usage::DayRequest;

pub const ACTION: &str = "DescribeTrtcUsage";

/// The request for app `app_id`'s day `day`: `StartTime = EndTime = D`,
/// which the API answers in 5-minute buckets.
pub fn request(app_id: u64, day: NaiveDate) -> DayRequest {
    DayRequest::new(ACTION, app_id, day)
}

#[cfg(test)]
mod tests {
    #[test]
    fn body_is_the_documented_shape() {
        let r = super::request(1400017192, "2026-11-20".parse().unwrap());
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"StartTime":"2026-11-20","EndTime":"2026-11-20","SdkAppId":1400017192}"#
        );
    }
}
