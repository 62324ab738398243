//! The other TRTC meters as the simulator serves them: each API's series.
//! Tencent does not document these APIs' `UsageKey` values; the keys here
//! are the simulator's own, and the lake keeps whatever keys an answer
//! has. Adding a meter is one function and one line of [`METERS`].

use crate::simulator::usage::Series;

/// Every meter the simulator serves: its action, its series.
pub(crate) const METERS: [(&str, Series); 0] = [];

/// The series of `action`, if the simulator serves it.
pub(crate) fn find(action: &str) -> Option<(&'static str, Series)> {
    METERS.iter().find(|(a, _)| *a == action).copied()
}
