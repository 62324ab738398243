//! `recording_usage`: cloud recording minutes per 5-minute bucket,
//! `MixType` and `UsageKey`, from `DescribeRecordingUsage` asked twice a
//! partition, once per `MixType` (opt-in: `--tables recording_usage`).

use crate::jobs::fetch::meter::Meter;
use crate::tables::meter;
use crate::tencent::recording_usage;

/// Two calls a partition, `single` then `multi`: the answer does not say
/// which it answers, so the label does (its raw object's name, the rows'
/// `mix_type`).
pub const RECORDING_USAGE: Meter = Meter {
    table: meter::RECORDING_USAGE.table,
    action: recording_usage::ACTION,
    labels: &recording_usage::MIX_TYPES,
    request: |p, mix_type| recording_usage::request(p.app_id, p.usage_date, mix_type),
};

#[cfg(test)]
mod tests {
    /// The price list checks a `mix_type` against the table's; the calls
    /// make them.
    #[test]
    fn the_tables_mix_types_are_the_calls() {
        assert_eq!(
            super::meter::RECORDING_USAGE.mix_types,
            super::recording_usage::MIX_TYPES
        );
    }
}
