//! `transcoding_usage`: On-Cloud MixTranscoding minutes per 5-minute
//! bucket and `UsageKey`, from `DescribeMixTranscodingUsage` (opt-in:
//! `--tables transcoding_usage`).

use crate::jobs::fetch::meter::Meter;
use crate::tables::meter;
use crate::tencent::mix_transcoding_usage;

/// One call a partition.
pub const TRANSCODING_USAGE: Meter = Meter {
    table: meter::TRANSCODING_USAGE.table,
    action: mix_transcoding_usage::ACTION,
    labels: &[""],
    request: |p, _| mix_transcoding_usage::request(p.app_id, p.usage_date),
};
