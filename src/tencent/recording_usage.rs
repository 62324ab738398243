//! `DescribeRecordingUsage`: cloud recording minutes per 5-minute bucket,
//! asked once per `MixType` (`single`: each stream recorded on its own;
//! `multi`: streams mixed into one). Body `{"StartTime": "D", "EndTime":
//! "D", "SdkAppId": N, "MixType": "single"}`; the answer has the
//! [`crate::tencent::usage`] shape and does not say which `MixType` it
//! answers (`docs/tencent-api.md`).

use chrono::NaiveDate;

use crate::tencent::usage::DayRequest;

pub const ACTION: &str = "DescribeRecordingUsage";

/// The two mix types, in the order a partition asks for them.
pub const MIX_TYPES: [&str; 2] = ["single", "multi"];

/// The request for app `app_id`'s day `day`, of mix type `mix_type`.
pub fn request(app_id: u64, day: NaiveDate, mix_type: &'static str) -> DayRequest {
    DayRequest {
        mix_type: Some(mix_type),
        ..DayRequest::new(ACTION, app_id, day)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn body_is_the_documented_shape() {
        let r = super::request(1400017192, "2026-11-20".parse().unwrap(), "multi");
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"StartTime":"2026-11-20","EndTime":"2026-11-20","SdkAppId":1400017192,"MixType":"multi"}"#
        );
    }
}
