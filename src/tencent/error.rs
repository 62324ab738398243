//! The error envelope every Tencent Cloud API 3.0 answer shares, and what
//! each error code means for a run. Decided here once, by code only (Tencent
//! says the message text changes), so no other module matches on strings.
//! It sits below the client and the credential sources, which both read it.

use serde::Deserialize;

/// `Response.Error` of every Tencent Cloud API 3.0 answer (STS's too).
#[derive(Deserialize)]
pub struct ErrorBody {
    #[serde(rename = "Code")]
    pub code: String,
    #[serde(rename = "Message", default)]
    pub message: String,
}

/// What an error means for the run. See `docs/tencent-api.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// A rate limit: wait at least one interval, then retry.
    Throttled,
    /// Server or network trouble: bounded retry with backoff.
    Transient,
    /// The signature's timestamp is too far from the server's clock.
    ClockSkew,
    /// Credentials or permissions: stop the whole run (exit 2).
    FatalRun,
    /// The app id is unknown: fail all of its partitions, go on with others.
    FatalApp,
    /// This request is wrong (a day out of range, say): fail this partition.
    FatalPartition,
}

fn has_prefix(code: &str, family: &str) -> bool {
    code == family
        || code
            .strip_prefix(family)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// Maps a Tencent Cloud error code to what the job does about it.
pub fn classify_code(code: &str) -> ErrorClass {
    if code == "OperationDenied.FreqOverLimit" || has_prefix(code, "RequestLimitExceeded") {
        ErrorClass::Throttled
    } else if has_prefix(code, "InternalError")
        || has_prefix(code, "ServiceUnavailable")
        || has_prefix(code, "ResourceUnavailable")
    {
        ErrorClass::Transient
    } else if code == "AuthFailure.SignatureExpire" {
        ErrorClass::ClockSkew
    } else if has_prefix(code, "AuthFailure") || has_prefix(code, "UnauthorizedOperation") {
        ErrorClass::FatalRun
    } else if code == "FailedOperation.SdkAppIdNotExist" {
        ErrorClass::FatalApp
    } else {
        // InvalidParameter*, MissingParameter, UnknownParameter and any code
        // this job does not know: this request cannot succeed as it is.
        ErrorClass::FatalPartition
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_classified_as_api_md_says() {
        use ErrorClass::*;
        let table = [
            ("OperationDenied.FreqOverLimit", Throttled),
            ("RequestLimitExceeded", Throttled),
            ("RequestLimitExceeded.UinLimitExceeded", Throttled),
            ("InternalError", Transient),
            ("InternalError.DBError", Transient),
            ("ServiceUnavailable", Transient),
            ("ResourceUnavailable", Transient),
            ("AuthFailure.SignatureExpire", ClockSkew),
            ("AuthFailure.SignatureFailure", FatalRun),
            ("AuthFailure.SecretIdNotFound", FatalRun),
            ("UnauthorizedOperation", FatalRun),
            ("FailedOperation.SdkAppIdNotExist", FatalApp),
            ("InvalidParameter", FatalPartition),
            ("InvalidParameter.StartTime", FatalPartition),
            ("MissingParameter", FatalPartition),
            ("UnknownParameter", FatalPartition),
            ("RequestLimitExceededX", FatalPartition),
            ("SomethingNew.Entirely", FatalPartition),
        ];
        for (code, want) in table {
            assert_eq!(classify_code(code), want, "{code}");
        }
    }
}
