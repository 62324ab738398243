//! `recording_usage`: cloud recording minutes per 5-minute bucket,
//! `MixType` and `UsageKey`, from `DescribeRecordingUsage` asked twice a
//! partition, once per `MixType` (opt-in: `--tables recording_usage`).

use crate::jobs::fetch::meter::Meter;
use crate::tables::{Table, meter};
use crate::tencent::recording_usage;

/// The table: long rows with the call's `mix_type`.
pub const TABLE: Table = Table::fetched("recording_usage", || meter::file_schema(true));

/// Two calls a partition, `single` then `multi`: the answer does not say
/// which it answers, so the label does (its raw object's name, the rows'
/// `mix_type`).
pub const RECORDING_USAGE: Meter = Meter {
    table: TABLE,
    action: recording_usage::ACTION,
    labels: &recording_usage::MIX_TYPES,
    request: |p, mix_type| recording_usage::request(p.app_id, p.usage_date, mix_type),
};
