//! `DescribeTrtcUsage`: the app's usage in 5-minute buckets, in minutes,
//! the figure Tencent names for reconciliation (`docs/tencent-api.md`).
//!
//! Its answer has the shape every usage API but the room one shares
//! ([`crate::tencent::usage`]).

use serde::{Deserialize, Serialize};

use crate::tencent::api::{ApiError, Client};
use crate::tencent::pacing::Call;
use crate::tencent::usage::Usage;

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

impl Call for AppUsageRequest {
    type Answer = Usage;
    fn action(&self) -> &'static str {
        ACTION
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
        crate::tencent::usage::describe(client, ACTION, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
