//! `relay_usage`: relay-to-CDN minutes per 5-minute bucket and `UsageKey`,
//! from `DescribeRelayUsage` (opt-in: `--tables relay_usage`).

use crate::jobs::fetch::meter::Meter;
use crate::tables::{Table, meter};
use crate::tencent::relay_usage;

/// The table: long rows, no `mix_type`.
pub const TABLE: Table = Table::fetched("relay_usage", || meter::file_schema(false));

/// One call a partition.
pub const RELAY_USAGE: Meter = Meter {
    table: TABLE,
    action: relay_usage::ACTION,
    labels: &[""],
    request: |p, _| relay_usage::request(p.app_id, p.usage_date),
};
