//! The other TRTC meters as the simulator serves them: each API's series.
//! Tencent does not document these APIs' `UsageKey` values; the keys here
//! are the simulator's own, and the lake keeps whatever keys an answer
//! has. Each series is a share of the rooms' minutes of its bucket, so a
//! day with no rooms has no usage. Adding a meter is one function and one
//! line of [`METERS`].

use crate::simulator::usage::{Keyed, Series, UsageBody};
use crate::tencent::{mix_transcoding_usage, recording_usage, relay_usage};

/// Every meter the simulator serves: its action, its series.
pub(crate) const METERS: [(&str, Series); 3] = [
    (recording_usage::ACTION, recording),
    (mix_transcoding_usage::ACTION, transcoding),
    (relay_usage::ACTION, relay),
];

/// The series of `action`, if the simulator serves it.
pub(crate) fn find(action: &str) -> Option<(&'static str, Series)> {
    METERS.iter().find(|(a, _)| *a == action).copied()
}

/// A share of a bucket's minutes, to the thousandth.
fn share(minutes: f64, k: f64) -> f64 {
    (minutes * k * 1000.0).round() / 1000.0
}

/// `DescribeRecordingUsage`: by `MixType`, which it requires.
fn recording(r: &UsageBody) -> Result<Keyed, (&'static str, String)> {
    match r.mix_type.as_deref() {
        Some("single") => Ok((
            vec!["AudioRecording", "VideoRecordingSD", "VideoRecordingHD"],
            |b| vec![share(b[0], 0.5), share(b[1], 0.5), share(b[2] + b[3], 0.5)],
        )),
        Some("multi") => Ok((vec!["MixRecording"], |b| vec![share(b.iter().sum(), 0.25)])),
        _ => Err((
            "InvalidParameter.MixType",
            "MixType must be single or multi.".into(),
        )),
    }
}

/// `DescribeMixTranscodingUsage`.
fn transcoding(_: &UsageBody) -> Result<Keyed, (&'static str, String)> {
    Ok((vec!["AudioTranscoding", "SD", "HD", "FullHD"], |b| {
        b[..4].iter().map(|m| share(*m, 0.3)).collect()
    }))
}

/// `DescribeRelayUsage`.
fn relay(_: &UsageBody) -> Result<Keyed, (&'static str, String)> {
    Ok((vec!["AudioRelay", "VideoRelay"], |b| {
        vec![share(b[0], 0.2), share(b[1..].iter().sum(), 0.2)]
    }))
}
