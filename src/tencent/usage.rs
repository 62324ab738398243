//! The answer of every usage API but the room one: `UsageKey` and
//! `UsageList` (`DescribeTrtcUsage`, `DescribeRecordingUsage`,
//! `DescribeMixTranscodingUsage`, `DescribeRelayUsage`; see
//! `docs/tencent-api.md`), and the one call that asks for it.
//!
//! The answer is small (288 buckets a day), so it is parsed whole, by key,
//! never by position. Only its *shape* is checked here (an answer without
//! `UsageKey` or `UsageList` is unreadable, and retried like any unreadable
//! body); what its values mean, and whether they are sane, is the table's
//! business (`tables::app_usage`, `tables::meter`), which fails the
//! partition naming the bucket.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use std::sync::Arc;

use crate::spool::Spooled;
use crate::tables::buckets::{Bucket, UsageList};
use crate::tencent::api::{ApiError, Client};
use crate::tencent::error::ErrorBody;

/// A successful answer of that shape.
#[derive(Debug)]
pub struct Usage {
    /// RequestId, when it arrived, the series and the buckets.
    pub list: UsageList,
    pub body_bytes: usize,
    /// The HTTP body (small: it is parsed whole), for the raw zone.
    pub body: Arc<Spooled>,
    /// When the response's headers arrived.
    pub response_at: std::time::Instant,
}

/// A request for one day of an API that answers in this shape:
/// `{"StartTime": "D", "EndTime": "D", "SdkAppId": N}` (plus `MixType`
/// where the API takes one), which the API answers in 5-minute buckets.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DayRequest {
    /// The API's action (not in the body).
    #[serde(skip)]
    pub action: &'static str,
    #[serde(rename = "StartTime")]
    pub start_time: String,
    #[serde(rename = "EndTime")]
    pub end_time: String,
    #[serde(rename = "SdkAppId")]
    pub sdk_app_id: u64,
    #[serde(rename = "MixType", skip_serializing_if = "Option::is_none")]
    pub mix_type: Option<&'static str>,
}

impl DayRequest {
    /// `action` for app `app_id`'s day `day`.
    pub fn new(action: &'static str, app_id: u64, day: chrono::NaiveDate) -> Self {
        Self {
            action,
            start_time: day.to_string(),
            end_time: day.to_string(),
            sdk_app_id: app_id,
            mix_type: None,
        }
    }
}

impl crate::tencent::pacing::Call for DayRequest {
    type Answer = Usage;
    fn action(&self) -> &'static str {
        self.action
    }
    fn app_id(&self) -> u64 {
        self.sdk_app_id
    }
    fn day(&self) -> &str {
        &self.start_time
    }
    fn window(&self) -> (&str, &str) {
        (&self.start_time, &self.end_time)
    }
    fn attempt<'a>(
        &'a self,
        client: &'a Client,
    ) -> impl std::future::Future<Output = Result<Usage, ApiError>> + Send + 'a {
        describe(client, self.action, self)
    }
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

impl crate::tencent::pacing::Answer for Usage {
    fn request_id(&self) -> &str {
        &self.list.request_id
    }
    fn fetched_at(&self) -> DateTime<Utc> {
        self.list.fetched_at
    }
    fn body_bytes(&self) -> usize {
        self.body_bytes
    }
    fn spooled_body(&self) -> Arc<Spooled> {
        self.body.clone()
    }
    fn response_at(&self) -> std::time::Instant {
        self.response_at
    }
    /// The answer is small: it is digested once it is in.
    fn take_digest(&self) -> Option<crate::tencent::api::EarlyDigest> {
        None
    }
}

impl Usage {
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
            list: UsageList {
                request_id,
                fetched_at,
                usage_key,
                buckets,
            },
            body_bytes: body.len() as usize,
            body: Arc::new(body),
            response_at: std::time::Instant::now(),
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

/// One signed attempt at `action`, an API that answers in the
/// `UsageKey`/`UsageList` shape ([`Usage`]), with `request` as its body.
pub async fn describe(
    client: &Client,
    action: &str,
    request: &(impl serde::Serialize + Sync),
) -> Result<Usage, ApiError> {
    let body = serde_json::to_vec(request).expect("a plain struct serializes");
    let answer = client.post(action, body, false).await?;
    let endpoint = client.endpoint();
    let mut usage = Usage::parse(
        answer.body,
        answer.fetched_at,
        &endpoint,
        answer.server_time,
    )?;
    usage.response_at = answer.response_at;
    Ok(usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Usage, ApiError> {
        Usage::from_body(body.as_bytes().to_vec(), Utc::now(), "e")
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
        let u = u.list;
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
