//! TC3-HMAC-SHA256 request signing, exactly as Tencent Cloud's official SDKs
//! do it.
//!
//! Everything here is a pure function of the request, the credentials and a
//! timestamp that the caller supplies, so the published worked examples can be
//! pinned byte for byte in tests and the simulator can verify signatures with
//! the same code path the client signs with.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// The signing algorithm's name as it appears on the wire.
pub const ALGORITHM: &str = "TC3-HMAC-SHA256";
/// Headers covered by the signature, lower-case and sorted.
pub const SIGNED_HEADERS: &str = "content-type;host";

/// What is signed: the parts of a POST that end up in the canonical request.
#[derive(Debug, Clone, Copy)]
pub struct SignInput<'a> {
    /// Service name, the first label of the host (`trtc`, `cvm`, `sts`).
    pub service: &'a str,
    /// Host of the endpoint actually used, with `:port` when the URL has one.
    pub host: &'a str,
    /// The `Content-Type` header exactly as sent.
    pub content_type: &'a str,
    /// The exact body bytes sent.
    pub body: &'a [u8],
    /// Unix seconds, as sent in `X-TC-Timestamp`.
    pub timestamp: i64,
}

/// The intermediate values and the result of signing, for tests and for the
/// simulator's diagnostics.
#[derive(Clone, PartialEq, Eq)]
pub struct Signature {
    pub payload_hash: String,
    pub canonical_request_hash: String,
    pub credential_scope: String,
    /// Hex HMAC of the string to sign.
    pub signature: String,
}

impl std::fmt::Debug for Signature {
    // A signature is a bearer proof for five minutes: keep it out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signature")
            .field("credential_scope", &self.credential_scope)
            .field("signature", &"<redacted>")
            .finish_non_exhaustive()
    }
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any size");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The UTC date (`YYYY-MM-DD`) of a Unix timestamp. Tencent's credential
/// scope uses the UTC date, not the local (Beijing) one.
pub fn utc_date(timestamp: i64) -> String {
    chrono::DateTime::from_timestamp(timestamp, 0)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "1970-01-01".to_owned())
}

/// The canonical request of a TC3 POST to `/` with no query string.
pub fn canonical_request(input: &SignInput<'_>) -> String {
    format!(
        "POST\n/\n\ncontent-type:{}\nhost:{}\n\n{}\n{}",
        input.content_type,
        input.host,
        SIGNED_HEADERS,
        sha256_hex(input.body)
    )
}

/// Signs `input` with `secret_key`.
pub fn sign(input: &SignInput<'_>, secret_key: &str) -> Signature {
    let date = utc_date(input.timestamp);
    let credential_scope = format!("{date}/{}/tc3_request", input.service);
    let canonical = canonical_request(input);
    let canonical_request_hash = sha256_hex(canonical.as_bytes());
    let string_to_sign = format!(
        "{ALGORITHM}\n{}\n{credential_scope}\n{canonical_request_hash}",
        input.timestamp
    );
    let k_date = hmac_sha256(format!("TC3{secret_key}").as_bytes(), date.as_bytes());
    let k_service = hmac_sha256(&k_date, input.service.as_bytes());
    let k_signing = hmac_sha256(&k_service, b"tc3_request");
    let signature = hex::encode(hmac_sha256(&k_signing, string_to_sign.as_bytes()));
    Signature {
        payload_hash: sha256_hex(input.body),
        canonical_request_hash,
        credential_scope,
        signature,
    }
}

/// The `Authorization` header value for a signature made with `secret_id`.
pub fn authorization(secret_id: &str, sig: &Signature) -> String {
    format!(
        "{ALGORITHM} Credential={secret_id}/{}, SignedHeaders={SIGNED_HEADERS}, Signature={}",
        sig.credential_scope, sig.signature
    )
}

/// The parts of an `Authorization` header, as a server reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAuthorization {
    pub secret_id: String,
    pub date: String,
    pub service: String,
    pub signed_headers: String,
    pub signature: String,
}

/// Parses an `Authorization` header of the TC3 form; `None` when malformed.
pub fn parse_authorization(header: &str) -> Option<ParsedAuthorization> {
    let rest = header.strip_prefix(ALGORITHM)?.trim_start();
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (key, value) = part.trim().split_once('=')?;
        match key {
            "Credential" => credential = Some(value),
            "SignedHeaders" => signed_headers = Some(value),
            "Signature" => signature = Some(value),
            _ => return None,
        }
    }
    let mut scope = credential?.splitn(4, '/');
    let secret_id = scope.next()?.to_owned();
    let date = scope.next()?.to_owned();
    let service = scope.next()?.to_owned();
    if scope.next()? != "tc3_request" {
        return None;
    }
    Some(ParsedAuthorization {
        secret_id,
        date,
        service,
        signed_headers: signed_headers?.to_owned(),
        signature: signature?.to_owned(),
    })
}

/// Compares two hex signatures in constant time.
pub fn signatures_match(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET_ID: &str = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE";
    const SECRET_KEY: &str = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE";

    #[test]
    fn tencent_documented_cvm_example() {
        let body = br#"{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}"#;
        let input = SignInput {
            service: "cvm",
            host: "cvm.tencentcloudapi.com",
            content_type: "application/json; charset=utf-8",
            body,
            timestamp: 1551113065,
        };
        let sig = sign(&input, SECRET_KEY);
        assert_eq!(
            sig.payload_hash,
            "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
        );
        assert_eq!(sig.credential_scope, "2019-02-25/cvm/tc3_request");
        assert_eq!(
            sig.signature,
            "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
        );
        assert_eq!(
            authorization(SECRET_ID, &sig),
            "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request, \
             SignedHeaders=content-type;host, \
             Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
        );
    }

    #[test]
    fn trtc_room_usage_vector() {
        let body = br#"{"SdkAppid":1400017192,"StartTime":"2023-01-06 00:00","EndTime":"2023-01-06 10:00"}"#;
        let input = SignInput {
            service: "trtc",
            host: "trtc.tencentcloudapi.com",
            content_type: "application/json",
            body,
            timestamp: 1551113065,
        };
        assert_eq!(
            canonical_request(&input),
            "POST\n/\n\ncontent-type:application/json\nhost:trtc.tencentcloudapi.com\n\n\
             content-type;host\nbd109553c637ae697c1bd64ae1432aff9e3838fdd8170233cdf43a2a7154d641"
        );
        let sig = sign(&input, SECRET_KEY);
        assert_eq!(
            sig.payload_hash,
            "bd109553c637ae697c1bd64ae1432aff9e3838fdd8170233cdf43a2a7154d641"
        );
        assert_eq!(
            sig.canonical_request_hash,
            "7e89148a40731f5fcaf7964b33c5a85334488f68f4a1eeac8c221ae40b8f49c5"
        );
        assert_eq!(
            sig.signature,
            "020530dd7aee96101b8dd1f6f209db1c8358985bfdc83c4e43f6d4ec6277aadd"
        );
        assert_eq!(
            authorization(SECRET_ID, &sig),
            "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/trtc/tc3_request, \
             SignedHeaders=content-type;host, \
             Signature=020530dd7aee96101b8dd1f6f209db1c8358985bfdc83c4e43f6d4ec6277aadd"
        );
    }

    #[test]
    fn scope_uses_the_utc_date_not_beijing() {
        // 2024-03-01 23:30:00 UTC is already 2024-03-02 07:30 in Beijing.
        let ts = 1709335800;
        assert_eq!(utc_date(ts), "2024-03-01");
        let sig = sign(
            &SignInput {
                service: "trtc",
                host: "trtc.tencentcloudapi.com",
                content_type: "application/json",
                body: b"{}",
                timestamp: ts,
            },
            SECRET_KEY,
        );
        assert_eq!(sig.credential_scope, "2024-03-01/trtc/tc3_request");
    }

    #[test]
    fn host_with_port_is_signed_as_is() {
        let a = SignInput {
            service: "trtc",
            host: "127.0.0.1:8080",
            content_type: "application/json",
            body: b"{}",
            timestamp: 1,
        };
        assert!(canonical_request(&a).contains("\nhost:127.0.0.1:8080\n"));
        let b = SignInput {
            host: "127.0.0.1",
            ..a
        };
        assert_ne!(
            sign(&a, SECRET_KEY).signature,
            sign(&b, SECRET_KEY).signature
        );
    }

    #[test]
    fn authorization_round_trips_through_the_parser() {
        let sig = sign(
            &SignInput {
                service: "trtc",
                host: "h",
                content_type: "application/json",
                body: b"x",
                timestamp: 1551113065,
            },
            SECRET_KEY,
        );
        let parsed = parse_authorization(&authorization(SECRET_ID, &sig)).unwrap();
        assert_eq!(parsed.secret_id, SECRET_ID);
        assert_eq!(parsed.date, "2019-02-25");
        assert_eq!(parsed.service, "trtc");
        assert_eq!(parsed.signed_headers, SIGNED_HEADERS);
        assert!(signatures_match(&parsed.signature, &sig.signature));
        assert!(!signatures_match(&parsed.signature, "00"));
        assert!(parse_authorization("Bearer abc").is_none());
        assert!(parse_authorization("TC3-HMAC-SHA256 Credential=a/b/c/d, Signature=x").is_none());
    }

    #[test]
    fn debug_never_shows_the_signature() {
        let sig = sign(
            &SignInput {
                service: "trtc",
                host: "h",
                content_type: "application/json",
                body: b"x",
                timestamp: 1,
            },
            SECRET_KEY,
        );
        assert!(!format!("{sig:?}").contains(&sig.signature));
    }
}
