//! `relay_usage`: relay-to-CDN minutes per 5-minute bucket and `UsageKey`,
//! from `DescribeRelayUsage` (opt-in: `--tables relay_usage`).

use crate::jobs::fetch::meter::Meter;
use crate::tables::meter;
use crate::tencent::relay_usage;

/// One call a partition.
pub const RELAY_USAGE: Meter = Meter {
    table: meter::RELAY_USAGE.table,
    action: relay_usage::ACTION,
    labels: &[""],
    request: |p, _| relay_usage::request(p.app_id, p.usage_date),
};
