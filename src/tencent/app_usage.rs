//! `DescribeTrtcUsage`: the app's usage in 5-minute buckets, in minutes,
//! the figure Tencent names for reconciliation (`docs/tencent-api.md`).
//!
//! The answer is small (288 buckets a day), so it is parsed whole, by key,
//! never by position. Only its *shape* is checked here (an answer without
//! `UsageKey` or `UsageList` is unreadable, and retried like any unreadable
//! body); what its values mean, and whether they are sane, is the table's
//! business ([`crate::tables::app_usage`]), which fails the partition
//! naming the bucket.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use crate::spool::Spooled;
use crate::tencent::api::ApiError;
use crate::tencent::error::ErrorBody;

pub const ACTION: &str = "DescribeTrtcUsage";

/// The request body. Note `SdkAppId` with a capital `I` here (the room API
/// spells it `SdkAppid`); dates are `YYYY-MM-DD`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppUsageRequest {
    #[serde(rename = "StartTime")]
    pub start_time: String,
    #[serde(rename = "EndTime")]
    pub end_time: String,
    #[serde(rename = "SdkAppId")]
    pub sdk_app_id: u64,
}

/// One 5-minute bucket as the API gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    /// `YYYY-MM-DD HH:MM:SS` in the API's clock.
    pub time_key: String,
    /// Unix seconds, when the API gave them.
    pub time_stamp_key: Option<i64>,
    /// One value per `UsageKey`, in minutes; a value that is not a number
    /// is NaN here, so the table rejects it naming the bucket.
    pub values: Vec<f64>,
}

/// A successful `DescribeTrtcUsage` answer.
#[derive(Debug)]
pub struct AppUsage {
    pub request_id: String,
    pub fetched_at: DateTime<Utc>,
    pub body_bytes: usize,
    /// The HTTP body (small: it is parsed whole), for the raw zone.
    pub body: Arc<Spooled>,
    /// When the response's headers arrived.
    pub response_at: std::time::Instant,
    /// The series, in the API's spelling (`Audio`, `SD`, `HD`, …).
    pub usage_key: Vec<String>,
    pub buckets: Vec<Bucket>,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "Response")]
    response: ResponseBody,
}

#[derive(Deserialize)]
struct ResponseBody {
    #[serde(rename = "UsageKey")]
    usage_key: Option<Vec<String>>,
    #[serde(rename = "UsageList")]
    usage_list: Option<Vec<BucketBody>>,
    #[serde(rename = "RequestId")]
    request_id: Option<String>,
    #[serde(rename = "Error")]
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct BucketBody {
    #[serde(rename = "TimeKey")]
    time_key: String,
    #[serde(rename = "TimeStampKey", default)]
    time_stamp_key: Option<i64>,
    #[serde(rename = "UsageValue")]
    usage_value: Vec<serde_json::Value>,
}

impl AppUsage {
    /// The app answer is small: it is digested once it is in.
    pub fn take_digest(&self) -> Option<crate::tencent::api::EarlyDigest> {
        None
    }

    /// Parses a body that arrived at `fetched_at` (or was read back from
    /// the raw zone). `origin` names where it came from, for errors.
    pub fn parse(
        body: Spooled,
        fetched_at: DateTime<Utc>,
        origin: &str,
        server_time: Option<i64>,
    ) -> Result<Self, ApiError> {
        let body_error = |reason: String, request_id: Option<&str>| ApiError::Body {
            endpoint: origin.to_owned(),
            reason,
            request_id: request_id.map(str::to_owned),
        };
        let bytes = match body.as_memory() {
            Some(b) => std::borrow::Cow::Borrowed(b),
            None => std::borrow::Cow::Owned(
                body.to_vec()
                    .map_err(|e| body_error(format!("reading the spooled body: {e}"), None))?,
            ),
        };
        // One definition of JSON for both answers: what serde_json parses
        // into a value (every string's UTF-8 included), then read by key,
        // a key given twice refused.
        let not_json = |e: serde_json::Error| body_error(format!("not the API's JSON ({e})"), None);
        serde_json::from_slice::<serde_json::Value>(&bytes).map_err(not_json)?;
        let envelope: Envelope = serde_json::from_slice(&bytes).map_err(not_json)?;
        let r = envelope.response;
        let request_id = crate::tencent::api::answered(r.request_id, r.error, origin, server_time)?;
        let usage_key = r.usage_key.ok_or_else(|| {
            body_error(
                "Response.UsageKey is missing or null".into(),
                Some(&request_id),
            )
        })?;
        let list = r.usage_list.ok_or_else(|| {
            body_error(
                "Response.UsageList is missing or null".into(),
                Some(&request_id),
            )
        })?;
        let buckets = list
            .into_iter()
            .map(|b| Bucket {
                time_key: b.time_key,
                time_stamp_key: b.time_stamp_key,
                values: b
                    .usage_value
                    .iter()
                    .map(|v| v.as_f64().unwrap_or(f64::NAN))
                    .collect(),
            })
            .collect();
        Ok(Self {
            request_id,
            fetched_at,
            body_bytes: body.len() as usize,
            body: Arc::new(body),
            response_at: std::time::Instant::now(),
            usage_key,
            buckets,
        })
    }

    /// An answer read back from a kept body (the raw zone).
    pub fn from_body(
        body: Vec<u8>,
        fetched_at: DateTime<Utc>,
        origin: &str,
    ) -> Result<Self, ApiError> {
        Self::parse(Spooled::Memory(body), fetched_at, origin, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<AppUsage, ApiError> {
        AppUsage::from_body(body.as_bytes().to_vec(), Utc::now(), "e")
    }

    #[test]
    fn body_is_the_documented_shape() {
        let req = AppUsageRequest {
            start_time: "2026-11-20".into(),
            end_time: "2026-11-20".into(),
            sdk_app_id: 1400017192,
        };
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"StartTime":"2026-11-20","EndTime":"2026-11-20","SdkAppId":1400017192}"#
        );
    }

    #[test]
    fn parses_by_key_in_any_order() {
        let u = parse(
            r#"{"Response": {"RequestId": "r1", "UsageList": [
                {"UsageValue": [1, 2.5, 0], "TimeStampKey": 1763568000, "TimeKey": "2026-11-20 00:00:00"},
                {"TimeKey": "2026-11-20 00:05:00", "UsageValue": [0, "x", 3]}
            ], "UsageKey": ["Audio", "SD", "hd"]}}"#,
        )
        .unwrap();
        assert_eq!(u.request_id, "r1");
        assert_eq!(u.usage_key, ["Audio", "SD", "hd"]);
        assert_eq!(u.buckets[0].time_stamp_key, Some(1763568000));
        assert_eq!(u.buckets[0].values, [1.0, 2.5, 0.0]);
        assert_eq!(u.buckets[1].time_stamp_key, None);
        assert!(u.buckets[1].values[1].is_nan());
    }

    #[test]
    fn errors_and_missing_parts_are_named() {
        match parse(r#"{"Response": {"Error": {"Code": "InvalidParameter.SdkAppId", "Message": "m"}, "RequestId": "r2"}}"#)
            .unwrap_err()
        {
            ApiError::Service {
                code, request_id, ..
            } => {
                assert_eq!(code, "InvalidParameter.SdkAppId");
                assert_eq!(request_id, "r2");
            }
            other => panic!("{other:?}"),
        }
        for (body, reason) in [
            (
                r#"{"Response": {"UsageKey": [], "UsageList": []}}"#,
                "RequestId is missing",
            ),
            (
                r#"{"Response": {"RequestId": "r", "UsageList": []}}"#,
                "UsageKey is missing",
            ),
            (
                r#"{"Response": {"RequestId": "r", "UsageKey": [], "UsageList": null}}"#,
                "UsageList is missing",
            ),
            ("<html>", "not the API's JSON"),
        ] {
            let e = parse(body).unwrap_err().to_string();
            assert!(e.contains(reason), "{e}");
        }
    }
}
