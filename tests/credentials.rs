//! Temporary credentials beyond static keys: TKE OIDC and the CVM instance
//! role, against fake STS and metadata servers on 127.0.0.1.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};

use crate::util::*;

#[derive(Default)]
struct Seen {
    requests: Vec<(HeaderMap, String)>,
}

type Shared = Arc<Mutex<Seen>>;

/// STS that issues key n on its n-th call, valid for `valid_secs`.
fn fake_sts(valid_secs: i64) -> (FakeServer, Shared) {
    let seen: Shared = Default::default();
    async fn assume(
        State((seen, valid)): State<(Shared, i64)>,
        headers: HeaderMap,
        body: String,
    ) -> String {
        let n = {
            let mut s = seen.lock().unwrap();
            s.requests.push((headers, body));
            s.requests.len()
        };
        serde_json::json!({"Response": {
            "Credentials": {"TmpSecretId": format!("AKIDtke{n}"), "TmpSecretKey": format!("tke-key-{n}"), "Token": format!("tke-token-{n}")},
            "ExpiredTime": chrono::Utc::now().timestamp() + valid,
            "Expiration": "ignored",
            "RequestId": format!("sts-{n}"),
        }})
        .to_string()
    }
    let router = axum::Router::new()
        .route("/", post(assume))
        .with_state((seen.clone(), valid_secs));
    (FakeServer::start(router), seen)
}

fn sim_with_keys(prefix: &str, n: usize) -> trtc_usage::simulator::Simulator {
    let mut config = sim_config();
    for i in 1..=n {
        let id = format!("AKID{prefix}{i}");
        config.keys.insert(id.clone(), format!("{prefix}-key-{i}"));
        config.tokens.insert(id, format!("{prefix}-token-{i}"));
    }
    start_sim(config)
}

fn without_static_keys(c: &mut std::process::Command) {
    c.env_remove("TENCENTCLOUD_SECRET_ID")
        .env_remove("TENCENTCLOUD_SECRET_KEY");
}

#[test]
fn tke_oidc_signs_with_sts_keys_and_refreshes_before_expiry() {
    // Valid for 301 s: within the 300 s refresh margin after one second.
    let (sts, seen) = fake_sts(301);
    let sim = sim_with_keys("tke", 10);
    let dest = TestDest::local();
    let token_file = tmp_path("tke-token");
    std::fs::write(&token_file, "eyJ-oidc-token\n").unwrap();
    let mut c = cmd(&sim, &dest);
    without_static_keys(&mut c);
    c.env("TKE_REGION", "ap-guangzhou")
        .env("TKE_PROVIDER_ID", "provider-1")
        .env("TKE_WEB_IDENTITY_TOKEN_FILE", &token_file)
        .env(
            "TKE_ROLE_ARN",
            "qcs::cam::uin/100000000001:roleName/trtc-usage",
        )
        .env("TRTC_STS_ENDPOINT", sts.url())
        .env("TRTC_MIN_INTERVAL", "700ms");
    let r = run(c, &range_args(&[APP_A], days_ago(10), days_ago(8)));
    r.assert_code(0);
    let seen = seen.lock().unwrap();
    assert!(
        seen.requests.len() >= 2,
        "refreshed during the run: {} STS calls",
        seen.requests.len()
    );
    let (headers, body) = &seen.requests[0];
    assert_eq!(headers["authorization"], "SKIP");
    assert_eq!(headers["x-tc-action"], "AssumeRoleWithWebIdentity");
    assert_eq!(headers["x-tc-version"], "2018-08-13");
    assert_eq!(headers["x-tc-region"], "ap-guangzhou");
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["WebIdentityToken"], "eyJ-oidc-token");
    assert_eq!(body["ProviderId"], "provider-1");
    assert_eq!(
        body["RoleArn"],
        "qcs::cam::uin/100000000001:roleName/trtc-usage"
    );
    assert_eq!(body["DurationSeconds"], 7200);
    let ids = sim.stats().secret_ids;
    assert_eq!(ids.len(), 3);
    assert_eq!(ids[0], "AKIDtke1");
    assert_ne!(
        ids[2], "AKIDtke1",
        "later calls use refreshed keys: {ids:?}"
    );
    assert!(
        !r.stderr.contains("tke-key-") && !r.stderr.contains("tke-token-"),
        "{}",
        r.stderr
    );
}

#[test]
fn tke_variables_half_set_is_a_usage_error() {
    let sim = start_sim(sim_config());
    let dest = TestDest::local();
    let mut c = cmd(&sim, &dest);
    without_static_keys(&mut c);
    c.env("TKE_REGION", "ap-guangzhou");
    let r = run(c, &["--app-id", "1", "--date", &days_ago(5).to_string()]);
    r.assert_code(2);
    r.assert_stderr_has(&["TKE_PROVIDER_ID"]);
    assert_eq!(sim.stats().requests, 0);
}

fn fake_metadata() -> (FakeServer, Shared) {
    let seen: Shared = Default::default();
    async fn roles(State(seen): State<Shared>, headers: HeaderMap) -> &'static str {
        seen.lock()
            .unwrap()
            .requests
            .push((headers, "roles".into()));
        "trtc-usage-role\n"
    }
    async fn creds(State(seen): State<Shared>, headers: HeaderMap) -> String {
        let n = {
            let mut s = seen.lock().unwrap();
            s.requests.push((headers, "creds".into()));
            s.requests.len()
        };
        serde_json::json!({
            "TmpSecretId": "AKIDcvm1", "TmpSecretKey": "cvm-key-1", "Token": "cvm-token-1",
            "ExpiredTime": chrono::Utc::now().timestamp() + 3600, "Expiration": "x", "Code": "Success", "n": n,
        })
        .to_string()
    }
    let router = axum::Router::new()
        .route("/latest/meta-data/cam/security-credentials/", get(roles))
        .route(
            "/latest/meta-data/cam/security-credentials/trtc-usage-role",
            get(creds),
        )
        .with_state(seen.clone());
    (FakeServer::start(router), seen)
}

#[test]
fn cvm_role_is_used_only_when_opted_in() {
    let (meta, seen) = fake_metadata();
    let sim = sim_with_keys("cvm", 1);
    let dest = TestDest::local();

    let mut c = cmd(&sim, &dest);
    without_static_keys(&mut c);
    c.env("TRTC_CVM_METADATA_ENDPOINT", meta.url());
    let r = run(c, &date_args(&[APP_A], days_ago(9)));
    r.assert_code(2);
    r.assert_stderr_has(&["--use-cvm-role"]);
    assert!(
        seen.lock().unwrap().requests.is_empty(),
        "no metadata call without opting in"
    );

    let mut c = cmd(&sim, &dest);
    without_static_keys(&mut c);
    c.env("TRTC_CVM_METADATA_ENDPOINT", meta.url())
        .env("TRTC_USE_CVM_ROLE", "true");
    let r = run(c, &date_args(&[APP_A], days_ago(9)));
    r.assert_code(0);
    assert_eq!(
        seen.lock().unwrap().requests.len(),
        2,
        "role name, then its keys, once"
    );
    assert_eq!(sim.stats().secret_ids, vec!["AKIDcvm1"]);
}

#[test]
fn static_keys_win_over_remote_sources() {
    let (meta, seen) = fake_metadata();
    let sim = start_sim(sim_config());
    let dest = TestDest::local();
    let mut c = cmd(&sim, &dest);
    c.env("TRTC_CVM_METADATA_ENDPOINT", meta.url())
        .env("TRTC_USE_CVM_ROLE", "true");
    run(c, &date_args(&[APP_A], days_ago(9))).assert_code(0);
    assert!(seen.lock().unwrap().requests.is_empty());
}
