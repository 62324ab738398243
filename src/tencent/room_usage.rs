//! `DescribeTrtcRoomUsage`: seconds per room of one app over a window of
//! at most 24 hours, as CSV in `Response.Data`. The answer can be large:
//! its body is spooled and scanned as it arrives ([`crate::tencent::scan`]),
//! never held whole, and the CSV is read from the spool, unescaped as it
//! goes ([`DataReader`]).

use std::io::BufRead;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::spool::{SpoolReader, Spooled};
use crate::tencent::api::{ApiError, Client, EarlyDigest, answered};
use crate::tencent::error::ErrorBody;
use crate::tencent::pacing::{Answer, Call};
pub use crate::tencent::scan::DataReader;
use crate::tencent::scan::{DataValue, Found, ScanError, Scanner};

/// The room API's action.
pub const ACTION: &str = "DescribeTrtcRoomUsage";

/// The request body. Field order and spelling (`SdkAppid`) are the API's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomUsageRequest {
    #[serde(rename = "SdkAppid")]
    pub sdk_app_id: u64,
    #[serde(rename = "StartTime")]
    pub start_time: String,
    #[serde(rename = "EndTime")]
    pub end_time: String,
}

/// A successful answer.
#[derive(Debug)]
pub struct RoomUsage {
    /// The HTTP body, spooled (in memory when small, else in a temporary
    /// file); `csv` is where `Response.Data`'s escaped text lies in it (see
    /// [`RoomUsage::csv`]). The raw zone's copy is compressed from it.
    pub body: Arc<Spooled>,
    csv: std::ops::Range<u64>,
    pub request_id: String,
    /// What the scan found wrong inside `Data`'s text (see
    /// [`Found::data_problem`]): the answer is refused, by the CSV reader
    /// naming the line and column when it meets the problem, else with this.
    pub data_problem: Option<String>,
    /// When the response arrived (local clock, UTC).
    pub fetched_at: DateTime<Utc>,
    /// Size of the HTTP body, for logs and benchmarks.
    pub body_bytes: usize,
    /// When the response's headers arrived: the start of the data path
    /// that the benchmark times.
    pub response_at: std::time::Instant,
    /// The body's digest for the raw zone, begun while it downloaded (see
    /// [`crate::spool::Tail`]); taken once.
    digest: std::sync::Mutex<Option<EarlyDigest>>,
}

impl Answer for RoomUsage {
    fn request_id(&self) -> &str {
        &self.request_id
    }
    fn fetched_at(&self) -> DateTime<Utc> {
        self.fetched_at
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
    fn take_digest(&self) -> Option<EarlyDigest> {
        RoomUsage::take_digest(self)
    }
}

impl Call for RoomUsageRequest {
    type Answer = RoomUsage;
    fn action(&self) -> &'static str {
        ACTION
    }
    fn app_id(&self) -> u64 {
        self.sdk_app_id
    }
    fn day(&self) -> &str {
        self.start_time.get(..10).unwrap_or(&self.start_time)
    }
    fn window(&self) -> (&str, &str) {
        (&self.start_time, &self.end_time)
    }
    fn attempt<'a>(
        &'a self,
        client: &'a Client,
    ) -> impl std::future::Future<Output = Result<RoomUsage, ApiError>> + Send + 'a {
        describe(client, self)
    }
}

impl RoomUsage {
    /// An answer read back from a kept body (the raw zone), as it was
    /// parsed when it arrived at `fetched_at`. `origin` names where the body
    /// came from, for errors. Reads the body once, in pieces (it may be a
    /// spool file): call it from a blocking thread.
    pub fn from_spooled(
        body: Spooled,
        fetched_at: DateTime<Utc>,
        origin: &str,
    ) -> Result<Self, ApiError> {
        let body = Arc::new(body);
        let mut scanner = Scanner::new();
        let mut reader = SpoolReader::new(body.clone(), 0..body.len());
        loop {
            let chunk = reader.fill_buf().map_err(|e| ApiError::Body {
                endpoint: origin.to_owned(),
                reason: format!("reading it back: {e}"),
                request_id: None,
            })?;
            if chunk.is_empty() {
                break;
            }
            scanner.feed(chunk);
            let n = chunk.len();
            reader.consume(n);
        }
        let (csv, request_id, data_problem) = located(scanner.finish(), origin, None)?;
        Ok(Self {
            body_bytes: body.len() as usize,
            body,
            csv,
            request_id,
            data_problem,
            fetched_at,
            response_at: std::time::Instant::now(),
            digest: std::sync::Mutex::new(None),
        })
    }

    /// The digest begun while the body downloaded, if there is one (once).
    pub fn take_digest(&self) -> Option<EarlyDigest> {
        self.digest.lock().expect("digest lock").take()
    }

    /// The CSV of `Response.Data`, unescaped as it is read. The CSV parser
    /// pulls from this, so unescaping runs on the parser's thread, in step
    /// with Parquet encoding, and the CSV never exists as a copy.
    pub fn csv(&self) -> DataReader<std::io::BufReader<SpoolReader>> {
        DataReader::new(SpoolReader::new(self.body.clone(), self.csv.clone()))
    }
}

/// What a scan of the room answer's body found: the API's error, or where
/// `Response.Data`'s escaped text lies in the body, the RequestId, and what
/// is wrong inside that text, if anything. Every error names the RequestId
/// when the answer had one.
#[allow(clippy::type_complexity)]
fn located(
    scanned: Result<Found, ScanError>,
    origin: &str,
    server_time: Option<i64>,
) -> Result<(std::ops::Range<u64>, String, Option<String>), ApiError> {
    let body_error = |reason: String, request_id: Option<String>| ApiError::Body {
        endpoint: origin.to_owned(),
        reason,
        request_id,
    };
    let found = scanned
        .map_err(|e| body_error(format!("not the API's JSON ({})", e.reason), e.request_id))?;
    let request_id = match &found.request_id {
        None => None,
        Some(text) => Some(serde_json::from_slice::<String>(text).map_err(|e| {
            body_error(
                format!("not the API's JSON (Response.RequestId: {e})"),
                None,
            )
        })?),
    };
    let error = match &found.error {
        None => None,
        Some(text) => Some(serde_json::from_slice::<ErrorBody>(text).map_err(|e| {
            body_error(
                format!("not the API's JSON (Response.Error: {e})"),
                request_id.clone(),
            )
        })?),
    };
    let request_id = answered(request_id, error, origin, server_time)?;
    match found.data {
        // Only an empty string means a day with no rooms; an answer without
        // Data (or with null) is not one, and must not become a final day.
        DataValue::Missing | DataValue::Null => Err(body_error(
            "Response.Data is missing or null".into(),
            Some(request_id),
        )),
        DataValue::NotString => Err(body_error(
            "Response.Data is not a string".into(),
            Some(request_id),
        )),
        DataValue::String(range) => Ok((range, request_id, found.data_problem)),
    }
}

/// One signed attempt at `DescribeTrtcRoomUsage`.
pub async fn describe(client: &Client, request: &RoomUsageRequest) -> Result<RoomUsage, ApiError> {
    let body = serde_json::to_vec(request).expect("a plain struct serializes");
    let answer = client.post(ACTION, body, true).await?;
    let endpoint = client.endpoint();
    let scanned = answer.scanned.expect("the room answer is scanned");
    let (csv, request_id, data_problem) = located(scanned, &endpoint, answer.server_time)?;
    Ok(RoomUsage {
        body_bytes: answer.body.len() as usize,
        body: Arc::new(answer.body),
        csv,
        request_id,
        data_problem,
        fetched_at: answer.fetched_at,
        response_at: answer.response_at,
        digest: std::sync::Mutex::new(answer.digest),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::SpoolConfig;
    use crate::tencent::api::{ApiConfig, ErrorClass};
    use crate::tencent::credentials::Provider;
    use std::time::Duration;
    use url::Url;

    fn locate_data(
        body: &[u8],
        origin: &str,
        server_time: Option<i64>,
    ) -> Result<(std::ops::Range<usize>, String), ApiError> {
        let mut scanner = Scanner::new();
        scanner.feed(body);
        located(scanner.finish(), origin, server_time)
            .map(|(r, id, _)| (r.start as usize..r.end as usize, id))
    }
    #[test]
    fn locate_data_finds_the_csv_or_names_what_is_wrong() {
        let body = br#"{"Response": {"Data": "RoomId\nr\"1\n", "RequestId": "req-1"}}"#;
        let (range, request_id) = locate_data(body, "e", None).unwrap();
        assert_eq!(&body[range], br#"RoomId\nr\"1\n"#);
        assert_eq!(request_id, "req-1");

        let error = br#"{"Response": {"Error": {"Code": "InvalidParameter", "Message": "m"}, "RequestId": "req-2"}}"#;
        match locate_data(error, "e", Some(7)).unwrap_err() {
            ApiError::Service {
                code,
                request_id,
                server_time,
                ..
            } => {
                assert_eq!(code, "InvalidParameter");
                assert_eq!(request_id, "req-2");
                assert_eq!(server_time, Some(7));
            }
            other => panic!("{other:?}"),
        }
        for (body, reason) in [
            (&b"<html>"[..], "not the API's JSON"),
            (&b"\xff\xfe<html>"[..], "not the API's JSON"),
            (
                br#"{"Response": {"Data": ""}}"#,
                "Response.RequestId is missing",
            ),
            (
                br#"{"Response": {"Data": 5, "RequestId": "r"}}"#,
                "Response.Data is not a string",
            ),
            (
                br#"{"Response": {"RequestId": "r"}}"#,
                "Response.Data is missing or null",
            ),
            (
                br#"{"Response": {"Data": null, "RequestId": "r"}}"#,
                "Response.Data is missing or null",
            ),
            (
                br#"{"Response": {"Data": "", "RequestId": 5}}"#,
                "Response.RequestId: invalid type",
            ),
            (
                br#"{"Response": {"Error": {"Code": 5}, "RequestId": "r"}}"#,
                "Response.Error: invalid type",
            ),
            (
                br#"{"Response": {"Data": "", "RequestId": "r"}"#,
                "the answer ends early",
            ),
        ] {
            let e = locate_data(body, "e", None).unwrap_err();
            assert!(e.to_string().contains(reason), "{e}");
            assert_eq!(e.class(), ErrorClass::Transient, "{e}");
        }
    }
    /// A spool directory that goes away (or fills up) mid-run stops the
    /// run, naming the flag: every later answer would fail the same way.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_answer_that_cannot_be_spooled_stops_the_run_naming_spool_dir() {
        use crate::simulator::{DEMO_SECRET_ID, DEMO_SECRET_KEY, SimConfig, Simulator};
        let sim = Simulator::start(
            "127.0.0.1:0".parse().unwrap(),
            SimConfig {
                rooms: 5_000,
                exact_rooms: true,
                interval: Duration::ZERO,
                ..SimConfig::default()
            },
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        let client = Client::new(
            ApiConfig {
                endpoint: Url::parse(&sim.endpoint()).unwrap(),
                region: "ap-guangzhou".into(),
                request_timeout: Duration::from_secs(30),
                spool: SpoolConfig {
                    dir: gone.clone(),
                    memory_limit: 1024,
                    in_lake: false,
                },
                raw_level: Some(1),
                raw_spool: SpoolConfig::default(),
            },
            Provider::Static(crate::tencent::credentials::Credentials {
                secret_id: DEMO_SECRET_ID.into(),
                secret_key: crate::tencent::credentials::Secret::new(DEMO_SECRET_KEY),
                token: None,
                source: "test".into(),
            }),
        )
        .unwrap();
        let day = (Utc::now() - chrono::Duration::days(9)).date_naive();
        let request = RoomUsageRequest {
            sdk_app_id: 1400000001,
            start_time: format!("{day} 00:00"),
            end_time: format!("{day} 23:59"),
        };
        let e = describe(&client, &request).await.unwrap_err();
        assert_eq!(e.class(), ErrorClass::FatalRun);
        let msg = e.to_string();
        assert!(
            msg.starts_with("cannot keep the answer: creating a spool file in ")
                && msg.contains("gone (--spool-dir)"),
            "{msg}"
        );
    }
    #[test]
    fn body_is_the_documented_shape() {
        let req = RoomUsageRequest {
            sdk_app_id: 1400017192,
            start_time: "2023-01-06 00:00".into(),
            end_time: "2023-01-06 10:00".into(),
        };
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"SdkAppid":1400017192,"StartTime":"2023-01-06 00:00","EndTime":"2023-01-06 10:00"}"#
        );
    }
}
