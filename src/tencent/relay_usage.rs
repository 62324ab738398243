//! `DescribeRelayUsage`: relay-to-CDN minutes per 5-minute bucket. Body
//! `{"StartTime": "D", "EndTime": "D", "SdkAppId": N}`; the answer has the
//! [`crate::tencent::usage`] shape.

use chrono::NaiveDate;

use crate::tencent::usage::DayRequest;

pub const ACTION: &str = "DescribeRelayUsage";

/// The request for app `app_id`'s day `day`.
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
