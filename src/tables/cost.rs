//! `cost`: what a day's usage cost at the user's prices, as FOCUS 1.2
//! rows (`docs/cost.md`): one row per room and series with usage, and one
//! per meter key (and mix type) with usage, its resource the app.
//!
//! Every FOCUS 1.2 column is there, named and typed as the specification
//! says (Decimal as Float64, DateTime as Timestamp(µs, UTC), String as
//! Utf8), in its column order (alphabetical), then ours, prefixed `x_`.
//! The rows are an estimate from the price list, not Tencent's invoice.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, new_null_array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use chrono::{Datelike, FixedOffset, NaiveDate, TimeZone};

use crate::tables::meter::{self, MeterTable};
use crate::tables::prices::{Price, PriceList};
use crate::tables::schema;

/// The FOCUS version the rows follow (recorded in each partition's
/// manifest: a new one recomputes the partition).
pub const FOCUS_VERSION: &str = "1.2";
/// `ProviderName`, `PublisherName`, `InvoiceIssuerName`.
pub const PROVIDER: &str = "Tencent Cloud";
/// `ServiceName`.
pub const SERVICE_NAME: &str = "Tencent Real-Time Communication";
/// `ServiceCategory`: FOCUS 1.0's category for audio and video services.
pub const SERVICE_CATEGORY: &str = "Media";
/// `ServiceSubcategory`: FOCUS 1.2's subcategory of Media for real-time
/// audio and video. One for the service (a FOCUS rule: one subcategory per
/// `ServiceName`), whichever meter a row prices.
pub const SERVICE_SUBCATEGORY: &str = "Media Streaming";
/// `BillingAccountType`: what `BillingAccountId` names.
pub const BILLING_ACCOUNT_TYPE: &str = "Tencent Cloud Account";
/// `SubAccountType`: what `SubAccountId` (an SdkAppId) names.
pub const SUB_ACCOUNT_TYPE: &str = "TRTC Application";
/// `PricingUnit`, `ConsumedUnit` (FOCUS Unit Format: a plural time unit).
pub const UNIT: &str = "Minutes";

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Dec,
    Time,
    I64,
    Date,
}

/// Every column: name, type, nullable. The 57 columns of FOCUS 1.2,
/// in the specification's (alphabetical) order, then ours.
const COLUMNS: &[(&str, Kind, bool)] = &[
    ("AvailabilityZone", Kind::Str, true),
    ("BilledCost", Kind::Dec, false),
    ("BillingAccountId", Kind::Str, false),
    ("BillingAccountName", Kind::Str, true),
    ("BillingAccountType", Kind::Str, true),
    ("BillingCurrency", Kind::Str, false),
    ("BillingPeriodEnd", Kind::Time, false),
    ("BillingPeriodStart", Kind::Time, false),
    ("CapacityReservationId", Kind::Str, true),
    ("CapacityReservationStatus", Kind::Str, true),
    ("ChargeCategory", Kind::Str, false),
    ("ChargeClass", Kind::Str, true),
    ("ChargeDescription", Kind::Str, true),
    ("ChargeFrequency", Kind::Str, true),
    ("ChargePeriodEnd", Kind::Time, false),
    ("ChargePeriodStart", Kind::Time, false),
    ("CommitmentDiscountCategory", Kind::Str, true),
    ("CommitmentDiscountId", Kind::Str, true),
    ("CommitmentDiscountName", Kind::Str, true),
    ("CommitmentDiscountQuantity", Kind::Dec, true),
    ("CommitmentDiscountStatus", Kind::Str, true),
    ("CommitmentDiscountType", Kind::Str, true),
    ("CommitmentDiscountUnit", Kind::Str, true),
    ("ConsumedQuantity", Kind::Dec, true),
    ("ConsumedUnit", Kind::Str, true),
    ("ContractedCost", Kind::Dec, false),
    ("ContractedUnitPrice", Kind::Dec, true),
    ("EffectiveCost", Kind::Dec, false),
    ("InvoiceId", Kind::Str, true),
    ("InvoiceIssuerName", Kind::Str, false),
    ("ListCost", Kind::Dec, false),
    ("ListUnitPrice", Kind::Dec, true),
    ("PricingCategory", Kind::Str, true),
    ("PricingCurrency", Kind::Str, true),
    ("PricingCurrencyContractedUnitPrice", Kind::Dec, true),
    ("PricingCurrencyEffectiveCost", Kind::Dec, true),
    ("PricingCurrencyListUnitPrice", Kind::Dec, true),
    ("PricingQuantity", Kind::Dec, true),
    ("PricingUnit", Kind::Str, true),
    ("ProviderName", Kind::Str, false),
    ("PublisherName", Kind::Str, false),
    ("RegionId", Kind::Str, true),
    ("RegionName", Kind::Str, true),
    ("ResourceId", Kind::Str, true),
    ("ResourceName", Kind::Str, true),
    ("ResourceType", Kind::Str, true),
    ("ServiceCategory", Kind::Str, false),
    ("ServiceName", Kind::Str, false),
    ("ServiceSubcategory", Kind::Str, true),
    ("SkuId", Kind::Str, true),
    ("SkuMeter", Kind::Str, true),
    ("SkuPriceDetails", Kind::Str, true),
    ("SkuPriceId", Kind::Str, true),
    ("SubAccountId", Kind::Str, true),
    ("SubAccountName", Kind::Str, true),
    ("SubAccountType", Kind::Str, true),
    ("Tags", Kind::Str, true),
    ("x_app_id", Kind::I64, false),
    ("x_usage_date", Kind::Date, false),
    ("x_series", Kind::Str, false),
    ("x_room_request_id", Kind::Str, false),
];

/// The FOCUS columns (all but ours).
pub fn focus_columns() -> impl Iterator<Item = &'static str> {
    COLUMNS
        .iter()
        .map(|(n, _, _)| *n)
        .filter(|n| !n.starts_with("x_"))
}

/// Columns whose values vary from row to row: no dictionary for them
/// (the rest are constant in a file, or per series). The quantities and
/// costs are here: a room's seconds take one of 86,400 values a day, but a
/// row group of a big day holds most of them, past a dictionary page's
/// limit, and the writer fell back to plain values after trying.
pub const VARYING: [&str; 9] = [
    "ResourceId",
    "ResourceName",
    "ConsumedQuantity",
    "PricingQuantity",
    "ListCost",
    "ContractedCost",
    "EffectiveCost",
    "BilledCost",
    "PricingCurrencyEffectiveCost",
];

/// The columns with statistics (page level): those a reader filters on.
/// The rest are constant in a file or per series, and computing their
/// minimum and maximum took a fifth of the table's time.
/// The columns whose value varies from row to row (by room, by series or
/// key, by minutes); every other column holds one value in a day's file.
pub const PER_ROW: [&str; 21] = [
    "BilledCost",
    "ChargeDescription",
    "ConsumedQuantity",
    "ContractedCost",
    "ContractedUnitPrice",
    "EffectiveCost",
    "ListCost",
    "ListUnitPrice",
    "PricingCurrencyContractedUnitPrice",
    "PricingCurrencyEffectiveCost",
    "PricingCurrencyListUnitPrice",
    "PricingQuantity",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "SkuId",
    "SkuMeter",
    "SkuPriceDetails",
    "SkuPriceId",
    "x_series",
    "x_room_request_id",
];

/// [`file_schema`] without the constant columns: the schema of
/// [`Day::rows`]' batches.
pub fn per_row_schema() -> SchemaRef {
    let all = file_schema();
    Arc::new(Schema::new(
        all.fields()
            .iter()
            .filter(|f| PER_ROW.contains(&f.name().as_str()))
            .cloned()
            .collect::<Vec<_>>(),
    ))
}

pub const WITH_STATISTICS: [&str; 4] = ["ResourceId", "x_app_id", "x_usage_date", "x_series"];

/// How the per-row columns are shared between two encoding threads: those
/// before file column `SPLIT` on one (the seven cost and quantity columns,
/// the four unit prices, ResourceId, one per-series string), the rest on
/// the other (ResourceName, the other per-series strings; it also takes
/// the rows from the reader and prices them). The constant columns cost
/// neither: they are encoded once (`Day::constants`). Measured on the
/// million-room day, the builds interleaved: 30 → 1.57 s, 36 → 1.42-1.69 s,
/// 44 → 1.27-1.58 s, 46 → 1.38-1.41 s, 50 → 1.55-1.64 s.
pub const SPLIT: usize = 44;

pub fn file_schema() -> SchemaRef {
    Arc::new(Schema::new(
        COLUMNS
            .iter()
            .map(|&(name, kind, nullable)| {
                let t = match kind {
                    Kind::Str => DataType::Utf8,
                    Kind::Dec => DataType::Float64,
                    Kind::Time => schema::fetched_at_type(),
                    Kind::I64 => DataType::Int64,
                    Kind::Date => DataType::Date32,
                };
                Field::new(name, t, nullable)
            })
            .collect::<Vec<_>>(),
    ))
}

/// Why a day cannot be costed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CostError {
    #[error(
        "series {series} has usage on {day} but the price list has no price for it on that day; add a [[price]] for {series} (from {day} or earlier)"
    )]
    NoPrice { series: String, day: NaiveDate },
    #[error(
        "{table} has usage of {} on {day} but the price list has no price for it on that day; add a [[price]] with table = \"{table}\", usage_key = \"{usage_key}\"{} (from {day} or earlier)",
        match mix_type { Some(m) => format!("{m} {usage_key}"), None => usage_key.clone() },
        match mix_type { Some(m) => format!(", mix_type = \"{m}\""), None => String::new() }
    )]
    NoMeterPrice {
        table: String,
        mix_type: Option<String>,
        usage_key: String,
        day: NaiveDate,
    },
    #[error("the room_usage file lacks column {0}")]
    Column(String),
    #[error("a meter file lacks column {0}")]
    MeterColumn(String),
    #[error("{what} is {value}, not a finite number")]
    NotFinite { what: String, value: f64 },
}

/// What every row of one (app, day) shares.
#[derive(Debug, Clone)]
pub struct Day {
    pub app_id: u64,
    pub day: NaiveDate,
    /// `ChargePeriodStart/End`, `BillingPeriodStart/End`, µs since the epoch.
    charge: (i64, i64),
    billing: (i64, i64),
    pub currency: String,
    pub billing_account_id: String,
    pub billing_account_name: Option<String>,
    pub room_request_id: String,
    /// The price of each room series that day, by series.
    prices: BTreeMap<String, Price>,
    /// The whole list, for the meters' keys.
    list: PriceList,
}

/// Midnight of `day` in the API's clock, in µs since the epoch.
fn midnight(day: NaiveDate, offset: FixedOffset) -> i64 {
    offset
        .from_local_datetime(&day.and_hms_opt(0, 0, 0).expect("midnight exists"))
        .single()
        .expect("a fixed offset has one midnight")
        .timestamp_micros()
}

impl Day {
    /// The day `day` of app `app_id`, in the API's clock `offset`, priced
    /// from `prices`.
    pub fn new(
        app_id: u64,
        day: NaiveDate,
        offset: FixedOffset,
        prices: &PriceList,
        billing_account_id: String,
        room_request_id: String,
    ) -> Self {
        let next = day.succ_opt().expect("a day after");
        let month = day.with_day(1).expect("the 1st exists");
        let next_month = month
            .checked_add_months(chrono::Months::new(1))
            .expect("a month after");
        Day {
            app_id,
            day,
            charge: (midnight(day, offset), midnight(next, offset)),
            billing: (midnight(month, offset), midnight(next_month, offset)),
            currency: prices.currency.clone(),
            billing_account_id,
            billing_account_name: prices.billing_account_name.clone(),
            room_request_id,
            prices: prices
                .series()
                .filter_map(|s| prices.price(s, day).map(|p| (s.to_owned(), p.clone())))
                .collect(),
            list: prices.clone(),
        }
    }

    /// The cost rows of one `room_usage` batch (file schema), and each
    /// series' `BilledCost` in them, added to `totals`.
    pub fn rows(
        &self,
        rooms: &RecordBatch,
        totals: &mut BTreeMap<String, f64>,
    ) -> Result<RecordBatch, CostError> {
        let column = |name: &str| {
            rooms
                .column_by_name(name)
                .ok_or_else(|| CostError::Column(name.to_owned()))
        };
        let room_ids = column(schema::ROOM_ID)?
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| CostError::Column(schema::ROOM_ID.into()))?;
        // Every value column: known series first, then the extras.
        let mut series: Vec<(String, &Int64Array)> = Vec::new();
        for field in rooms.schema().fields() {
            let Some(s) = field
                .name()
                .strip_suffix(schema::SECONDS)
                .map(str::to_owned)
            else {
                continue;
            };
            let values = rooms
                .column_by_name(field.name())
                .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
                .ok_or_else(|| CostError::Column(field.name().clone()))?;
            series.push((s, values));
        }
        // (row, series index) of every room and series with usage.
        let mut picks: Vec<(usize, usize)> = Vec::new();
        for row in 0..rooms.num_rows() {
            for (i, (name, values)) in series.iter().enumerate() {
                if values.is_valid(row) && values.value(row) > 0 {
                    if !self.prices.contains_key(name) {
                        return Err(CostError::NoPrice {
                            series: name.clone(),
                            day: self.day,
                        });
                    }
                    picks.push((row, i));
                }
            }
        }
        // Every series of the batch, priced or not: only those with usage
        // (each of which has a price) are picked.
        let skus: Vec<Sku> = series
            .iter()
            .map(|(name, _)| Sku {
                id: format!("trtc-{name}"),
                series: name.clone(),
                price: self.prices.get(name).cloned(),
                resource_type: "Room",
                meter: sku_meter(name),
                description: description(name),
                request_id: self.room_request_id.clone(),
            })
            .collect();
        let minutes: Vec<f64> = picks
            .iter()
            .map(|&(row, i)| series[i].1.value(row) as f64 / 60.0)
            .collect();
        // The room id, unless it holds what FOCUS's string handling
        // refuses (then escaped: `resource_id`).
        let resource_ids = if picks
            .iter()
            .all(|&(row, _)| !needs_escape(room_ids.value(row)))
        {
            strings(picks.iter().map(|&(row, _)| room_ids.value(row)))
        } else {
            let ids: Vec<std::borrow::Cow<str>> = picks
                .iter()
                .map(|&(row, _)| resource_id(room_ids.value(row)))
                .collect();
            strings(ids.iter().map(|c| c.as_ref()))
        };
        let of: Vec<usize> = picks.iter().map(|&(_, i)| i).collect();
        self.batch(&skus, &of, resource_ids, minutes, totals)
    }

    /// The cost rows of a meter's day: one per (`mix_type`, `usage_key`)
    /// with usage, its resource the app, its `BilledCost` added to
    /// `totals` under its `x_series`.
    pub fn meter_rows(
        &self,
        meter: MeterTable,
        usage: &[MeterUsage],
        totals: &mut BTreeMap<String, f64>,
    ) -> Result<RecordBatch, CostError> {
        let table = meter.table.name();
        let mut skus = Vec::new();
        let mut minutes = Vec::new();
        for u in usage.iter().filter(|u| u.minutes > 0.0) {
            let series = match &u.mix_type {
                Some(m) => format!("{table}:{m}:{}", u.usage_key),
                None => format!("{table}:{}", u.usage_key),
            };
            let price = self
                .list
                .meter_price(table, u.mix_type.as_deref(), &u.usage_key, self.day)
                .ok_or_else(|| CostError::NoMeterPrice {
                    table: table.to_owned(),
                    mix_type: u.mix_type.clone(),
                    usage_key: u.usage_key.clone(),
                    day: self.day,
                })?;
            let what = match &u.mix_type {
                Some(m) => format!("{} ({m}) {}", meter.what, u.usage_key),
                None => format!("{} {}", meter.what, u.usage_key),
            };
            skus.push(Sku {
                id: format!("trtc-{series}"),
                series,
                price: Some(price.clone()),
                resource_type: "Application",
                meter: format!("{what} minutes"),
                description: format!("TRTC {what} minutes of the app"),
                request_id: u.request_id.clone(),
            });
            minutes.push(u.minutes);
        }
        let n = skus.len();
        let app_id = self.app_id.to_string();
        let resource_ids = strings(std::iter::repeat_n(app_id.as_str(), n));
        let of: Vec<usize> = (0..n).collect();
        self.batch(&skus, &of, resource_ids, minutes, totals)
    }

    /// The rows of `minutes` of `skus[of[row]]`, each of resource
    /// `resource_ids[row]`.
    fn batch(
        &self,
        skus: &[Sku],
        of: &[usize],
        resource_ids: ArrayRef,
        minutes: Vec<f64>,
        totals: &mut BTreeMap<String, f64>,
    ) -> Result<RecordBatch, CostError> {
        let price = |i: usize| skus[i].price.as_ref().expect("a picked SKU has a price");
        let list: Vec<f64> = of
            .iter()
            .zip(&minutes)
            .map(|(&i, m)| m * price(i).list_per_minute())
            .collect();
        let contracted: Vec<f64> = of
            .iter()
            .zip(&minutes)
            .map(|(&i, m)| m * price(i).contracted_per_minute())
            .collect();
        for (&i, c) in of.iter().zip(&contracted) {
            if !c.is_finite() {
                return Err(CostError::NotFinite {
                    what: format!("a cost of series {}", skus[i].series),
                    value: *c,
                });
            }
            *totals.entry(skus[i].series.clone()).or_default() += c;
        }
        // What differs by SKU is made once per batch, not per row.
        let by_sku = |f: &dyn Fn(&Sku) -> String| -> ArrayRef {
            let values: Vec<String> = skus.iter().map(f).collect();
            strings(of.iter().map(|&i| values[i].as_str()))
        };
        let floats = |v: Vec<f64>| -> ArrayRef { Arc::new(Float64Array::from(v)) };
        // Equal columns share one array.
        let contracted = floats(contracted);
        let list = floats(list);
        let minutes = floats(minutes);
        let list_unit = floats(of.iter().map(|&i| price(i).list_per_minute()).collect());
        let contracted_unit = floats(
            of.iter()
                .map(|&i| price(i).contracted_per_minute())
                .collect(),
        );
        let priced =
            |s: &Sku, f: &dyn Fn(&Price) -> String| s.price.as_ref().map(f).unwrap_or_default();
        let schema = per_row_schema();
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|field| match field.name().as_str() {
                "BilledCost"
                | "ContractedCost"
                | "EffectiveCost"
                | "PricingCurrencyEffectiveCost" => contracted.clone(),
                "ListCost" => list.clone(),
                "ConsumedQuantity" | "PricingQuantity" => minutes.clone(),
                "ListUnitPrice" | "PricingCurrencyListUnitPrice" => list_unit.clone(),
                "ContractedUnitPrice" | "PricingCurrencyContractedUnitPrice" => {
                    contracted_unit.clone()
                }
                "ChargeDescription" => by_sku(&|s| s.description.clone()),
                "ResourceId" | "ResourceName" => resource_ids.clone(),
                "ResourceType" => by_sku(&|s| s.resource_type.to_owned()),
                "SkuId" => by_sku(&|s| s.id.clone()),
                "SkuMeter" => by_sku(&|s| s.meter.clone()),
                "SkuPriceId" => by_sku(&|s| priced(s, &|p| p.id(&s.id))),
                "SkuPriceDetails" => by_sku(&|s| priced(s, &Price::details)),
                "x_series" => by_sku(&|s| s.series.clone()),
                "x_room_request_id" => by_sku(&|s| s.request_id.clone()),
                other => unreachable!("{other} is not a per-row column"),
            })
            .collect();
        Ok(RecordBatch::try_new(schema, columns).expect("arrays match the schema"))
    }

    /// The columns that hold one value in every row of the day's file
    /// (every column but [`PER_ROW`]), each as (its index in
    /// [`file_schema`], a one-row array of its value): the encoder writes
    /// them once, not per row.
    pub fn constants(&self) -> Vec<(usize, ArrayRef)> {
        file_schema()
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| !PER_ROW.contains(&f.name().as_str()))
            .map(|(i, f)| (i, self.constant(f, 1)))
            .collect()
    }

    /// Constant column `field`, `n` rows of it.
    fn constant(&self, field: &Field, n: usize) -> ArrayRef {
        let constant = |s: &str| strings(std::iter::repeat_n(s, n));
        let time = |us: i64| -> ArrayRef {
            Arc::new(TimestampMicrosecondArray::from(vec![us; n]).with_timezone("UTC"))
        };
        let app_id = self.app_id.to_string();
        match field.name().as_str() {
            "BillingAccountId" => constant(&self.billing_account_id),
            "BillingAccountName" => match &self.billing_account_name {
                Some(name) => constant(name),
                None => new_null_array(field.data_type(), n),
            },
            "BillingAccountType" => constant(BILLING_ACCOUNT_TYPE),
            "BillingCurrency" | "PricingCurrency" => constant(&self.currency),
            "BillingPeriodStart" => time(self.billing.0),
            "BillingPeriodEnd" => time(self.billing.1),
            "ChargePeriodStart" => time(self.charge.0),
            "ChargePeriodEnd" => time(self.charge.1),
            "ChargeCategory" => constant("Usage"),
            "ChargeFrequency" => constant("Usage-Based"),
            "ConsumedUnit" | "PricingUnit" => constant(UNIT),
            "InvoiceIssuerName" | "ProviderName" | "PublisherName" => constant(PROVIDER),
            "PricingCategory" => constant("Standard"),
            "ServiceCategory" => constant(SERVICE_CATEGORY),
            "ServiceName" => constant(SERVICE_NAME),
            "ServiceSubcategory" => constant(SERVICE_SUBCATEGORY),
            "SubAccountId" => constant(&app_id),
            "SubAccountName" => constant(&format!("TRTC app {app_id}")),
            "SubAccountType" => constant(SUB_ACCOUNT_TYPE),
            "Tags" => constant("{}"),
            "x_app_id" => Arc::new(Int64Array::from(vec![self.app_id as i64; n])),
            "x_usage_date" => Arc::new(Date32Array::from(vec![
                self.day
                    .signed_duration_since(NaiveDate::default())
                    .num_days()
                    as i32;
                n
            ])),
            // Invoice, commitment discount, capacity reservation, zone,
            // region and class: nothing a price list says.
            _ => new_null_array(field.data_type(), n),
        }
    }

    /// A batch of [`Day::rows`] or [`Day::meter_rows`] with every column
    /// of the file, the constant ones repeated: what a reader sees.
    #[cfg(test)]
    pub fn with_constants(&self, rows: &RecordBatch) -> RecordBatch {
        let n = rows.num_rows();
        let schema = file_schema();
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| match rows.column_by_name(f.name()) {
                Some(c) => c.clone(),
                None => self.constant(f, n),
            })
            .collect();
        RecordBatch::try_new(schema, columns).expect("arrays match the schema")
    }
}

/// What a batch's rows are priced as: a room series, or a meter's (mix
/// type and) usage key.
struct Sku {
    /// `SkuId`: `trtc-` and the series.
    id: String,
    /// `x_series`: `audio`, `recording_usage:multi:MixRecording`, ….
    series: String,
    /// `None` for a room series with no price (and so no rows).
    price: Option<Price>,
    resource_type: &'static str,
    /// `SkuMeter`, `ChargeDescription`.
    meter: String,
    description: String,
    /// `x_room_request_id`: the RequestId of the answer the usage is from.
    request_id: String,
}

/// A meter's usage of one (`mix_type`, `usage_key`) on a day.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterUsage {
    pub mix_type: Option<String>,
    pub usage_key: String,
    pub minutes: f64,
    /// The RequestId of the (first) answer it is in.
    pub request_id: String,
}

/// A meter partition's rows (its file schema) summed per (`mix_type`,
/// `usage_key`), in the order they first appear.
pub fn meter_usage(batches: &[RecordBatch]) -> Result<Vec<MeterUsage>, CostError> {
    let mut out: Vec<MeterUsage> = Vec::new();
    let mut index: BTreeMap<(Option<String>, String), usize> = BTreeMap::new();
    for b in batches {
        let strings_of = |name: &str| -> Result<Option<&StringArray>, CostError> {
            match b.column_by_name(name) {
                None => Ok(None),
                Some(c) => c
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .map(Some)
                    .ok_or_else(|| CostError::MeterColumn(name.to_owned())),
            }
        };
        let missing = |name: &str| CostError::MeterColumn(name.to_owned());
        let mix = strings_of(meter::MIX_TYPE)?;
        let keys = strings_of(meter::USAGE_KEY)?.ok_or_else(|| missing(meter::USAGE_KEY))?;
        let ids = strings_of(schema::REQUEST_ID)?.ok_or_else(|| missing(schema::REQUEST_ID))?;
        let values = b
            .column_by_name(meter::VALUE)
            .and_then(|c| c.as_any().downcast_ref::<Float64Array>())
            .ok_or_else(|| CostError::MeterColumn(meter::VALUE.to_owned()))?;
        for row in 0..b.num_rows() {
            let key = (
                mix.map(|m| m.value(row).to_owned()),
                keys.value(row).to_owned(),
            );
            let i = *index.entry(key.clone()).or_insert_with(|| {
                out.push(MeterUsage {
                    mix_type: key.0,
                    usage_key: key.1,
                    minutes: 0.0,
                    request_id: ids.value(row).to_owned(),
                });
                out.len() - 1
            });
            out[i].minutes += values.value(row);
        }
    }
    Ok(out)
}

/// A string column of `values`, each buffer allocated once at its exact
/// size: growing them by doubling, batch after batch, fragmented the heap
/// until a 10-million-room day took 140 MiB.
fn strings<'a>(values: impl Iterator<Item = &'a str> + Clone) -> ArrayRef {
    let bytes: usize = values.clone().map(str::len).sum();
    let mut data = Vec::with_capacity(bytes);
    for v in values.clone() {
        data.extend_from_slice(v.as_bytes());
    }
    let offsets = arrow_buffer::OffsetBuffer::<i32>::from_lengths(values.map(str::len));
    Arc::new(StringArray::new(
        offsets,
        arrow_buffer::Buffer::from_vec(data),
        None,
    ))
}

/// Whether a room id holds what FOCUS's string handling refuses in an id
/// (anything but printable ASCII), or `%`, which [`resource_id`] escapes
/// with.
fn needs_escape(room_id: &str) -> bool {
    room_id
        .bytes()
        .any(|b| !(0x20..0x7f).contains(&b) || b == b'%')
}

/// `ResourceId`: the room id, with every byte outside printable ASCII, and
/// `%`, percent-encoded (`会议-1` → `%E4%BC%9A%E8%AE%AE-1`), so it stays
/// unique, reversible (DuckDB: `url_decode(ResourceId)`) and ASCII, as
/// FOCUS 1.2 wants `ResourceId` and `ResourceName`. TRTC's own room ids are
/// ASCII, and stay as they are.
pub fn resource_id(room_id: &str) -> std::borrow::Cow<'_, str> {
    if !needs_escape(room_id) {
        return room_id.into();
    }
    let mut out = String::with_capacity(room_id.len() * 3);
    for b in room_id.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.into()
}

/// `SkuMeter`: what the SKU measures, in words.
fn sku_meter(series: &str) -> String {
    let what = match series {
        "audio" => "Audio",
        "video_sd" => "SD video",
        "video_hd" => "HD video",
        "video_full_hd" => "Full HD video",
        "video_2k" => "2K video",
        "video_4k" => "4K video",
        other => other,
    };
    format!("{what} minutes")
}

/// `ChargeDescription`: what the row is, in words.
fn description(series: &str) -> String {
    let what = match series {
        "audio" => "audio",
        "video_sd" => "SD video",
        "video_hd" => "HD video",
        "video_full_hd" => "Full HD video",
        "video_2k" => "2K video",
        "video_4k" => "4K video",
        other => other,
    };
    format!("TRTC {what} minutes in a room")
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;

    fn prices() -> PriceList {
        PriceList::parse(
            "p.toml",
            br#"
currency = "USD"
billing_account_id = "100012345678"
[[price]]
series = "audio"
list = 0.99
contracted = 0.89
[[price]]
series = "video_hd"
list = 4
[[price]]
series = "video_hd"
list = 3
from = "2026-03-01"
"#,
        )
        .unwrap()
    }

    fn rooms(rows: &[(&str, Option<i64>, Option<i64>)]) -> RecordBatch {
        let n = rows.len();
        let mut cols: Vec<ArrayRef> = vec![Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.0),
        ))];
        for (_, name) in schema::VALUE_COLUMNS {
            let v: Vec<Option<i64>> = rows
                .iter()
                .map(|r| match name {
                    "audio_seconds" => r.1,
                    "video_hd_seconds" => r.2,
                    _ => Some(0),
                })
                .collect();
            cols.push(Arc::new(Int64Array::from(v)));
        }
        cols.push(Arc::new(StringArray::from(vec!["req"; n])));
        cols.push(Arc::new(
            TimestampMicrosecondArray::from(vec![0; n]).with_timezone("UTC"),
        ));
        RecordBatch::try_new(schema::file_schema(&[]), cols).unwrap()
    }

    /// What a reader sees of a batch: every column, constants repeated.
    trait Full {
        fn full(self, day: &Day) -> Self;
    }

    impl<E> Full for Result<RecordBatch, E> {
        fn full(self, day: &Day) -> Self {
            self.map(|b| day.with_constants(&b))
        }
    }

    fn day(d: &str) -> Day {
        day_of(d, &prices())
    }

    /// Day `d` of app 1400000001 in +08:00, priced from `prices`.
    fn day_of(d: &str, prices: &PriceList) -> Day {
        Day::new(
            1400000001,
            d.parse().unwrap(),
            FixedOffset::east_opt(8 * 3600).unwrap(),
            prices,
            "100012345678".into(),
            "req".into(),
        )
    }

    #[test]
    fn one_row_per_room_and_series_with_usage() {
        let mut totals = BTreeMap::new();
        let d = day("2026-02-28");
        let b = d
            .rows(
                &rooms(&[
                    ("r1", Some(600), Some(60)),
                    ("r2", Some(0), None),
                    ("r3", None, Some(120)),
                ]),
                &mut totals,
            )
            .full(&d)
            .unwrap();
        assert_eq!(b.num_rows(), 3);
        let s = |c: &str| b.column_by_name(c).unwrap().as_string::<i32>().clone();
        let f = |c: &str| {
            b.column_by_name(c)
                .unwrap()
                .as_primitive::<arrow_array::types::Float64Type>()
                .values()
                .to_vec()
        };
        assert_eq!(
            s("ResourceId").iter().flatten().collect::<Vec<_>>(),
            ["r1", "r1", "r3"]
        );
        assert_eq!(
            s("x_series").iter().flatten().collect::<Vec<_>>(),
            ["audio", "video_hd", "video_hd"]
        );
        let close = |got: Vec<f64>, want: [f64; 3]| {
            assert!(
                got.iter()
                    .zip(want)
                    .all(|(g, w)| (g - w).abs() <= 1e-15 * w.abs().max(1.0)),
                "{got:?} != {want:?}"
            )
        };
        assert_eq!(f("ConsumedQuantity"), [10.0, 1.0, 2.0]);
        close(f("ListUnitPrice"), [0.00099, 0.004, 0.004]);
        close(f("ContractedUnitPrice"), [0.00089, 0.004, 0.004]);
        close(f("ListCost"), [10.0 * 0.00099, 0.004, 0.008]);
        assert_eq!(f("BilledCost"), f("ContractedCost"));
        assert_eq!(f("EffectiveCost"), f("ContractedCost"));
        assert_eq!(s("SkuPriceId").value(1), "trtc-video_hd");
        assert_eq!(s("SubAccountId").value(0), "1400000001");
        assert!(b.column_by_name("CommitmentDiscountId").unwrap().is_null(0));
        // 2026-02-28 00:00 +08:00 is 2026-02-27 16:00 UTC.
        let t = |c: &str| {
            b.column_by_name(c)
                .unwrap()
                .as_primitive::<arrow_array::types::TimestampMicrosecondType>()
                .value(0)
        };
        let utc = |s: &str| {
            s.parse::<chrono::DateTime<chrono::Utc>>()
                .unwrap()
                .timestamp_micros()
        };
        assert_eq!(t("ChargePeriodStart"), utc("2026-02-27T16:00:00Z"));
        assert_eq!(t("ChargePeriodEnd"), utc("2026-02-28T16:00:00Z"));
        assert_eq!(t("BillingPeriodStart"), utc("2026-01-31T16:00:00Z"));
        assert_eq!(t("BillingPeriodEnd"), utc("2026-02-28T16:00:00Z"));
        assert!((totals["audio"] - 10.0 * 0.00089).abs() < 1e-15);
        assert!((totals["video_hd"] - 0.012).abs() < 1e-15);
    }

    #[test]
    fn a_room_id_beyond_printable_ascii_is_escaped_reversibly() {
        assert_eq!(resource_id("room-1 (a)"), "room-1 (a)");
        assert!(matches!(
            resource_id("room-1"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(resource_id("会议-1"), "%E4%BC%9A%E8%AE%AE-1");
        assert_eq!(resource_id("50%"), "50%25", "% itself, so it reverses");
        assert_eq!(resource_id("a\tb"), "a%09b");
        let mut totals = BTreeMap::new();
        let d = day("2026-02-28");
        let b = d
            .rows(
                &rooms(&[("r1", Some(60), None), ("会", Some(60), None)]),
                &mut totals,
            )
            .full(&d)
            .unwrap();
        let s = |c: &str| b.column_by_name(c).unwrap().as_string::<i32>().clone();
        assert_eq!(
            s("ResourceId").iter().flatten().collect::<Vec<_>>(),
            ["r1", "%E4%BC%9A"]
        );
        assert_eq!(s("ResourceName").value(1), "%E4%BC%9A");
        assert_eq!(s("SkuMeter").value(0), "Audio minutes");
        assert_eq!(s("SkuPriceDetails").value(0), r#"{"x_Series":"audio"}"#);
        assert_eq!(s("ServiceSubcategory").value(0), "Media Streaming");
        assert_eq!(s("SubAccountName").value(0), "TRTC app 1400000001");
        assert_eq!(s("PricingCurrency").value(0), "USD");
        assert!(b.column_by_name("InvoiceId").unwrap().is_null(0));
        assert!(
            b.column_by_name("CommitmentDiscountQuantity")
                .unwrap()
                .is_null(0)
        );
    }

    #[test]
    fn a_price_change_applies_from_its_day() {
        let mut totals = BTreeMap::new();
        let b = day("2026-03-01")
            .rows(&rooms(&[("r1", None, Some(60))]), &mut totals)
            .unwrap();
        let prices = b
            .column_by_name("ListUnitPrice")
            .unwrap()
            .as_primitive::<arrow_array::types::Float64Type>()
            .value(0);
        assert_eq!(prices, 0.003);
    }

    #[test]
    fn usage_without_a_price_names_the_series_and_day() {
        let mut b = rooms(&[("r1", Some(1), Some(0))]);
        // video_sd usage, which the list does not price.
        let mut cols = b.columns().to_vec();
        cols[2] = Arc::new(Int64Array::from(vec![Some(30)]));
        b = RecordBatch::try_new(b.schema(), cols).unwrap();
        let e = day("2026-02-28")
            .rows(&b, &mut BTreeMap::new())
            .unwrap_err();
        assert_eq!(
            e,
            CostError::NoPrice {
                series: "video_sd".into(),
                day: "2026-02-28".parse().unwrap()
            }
        );
        assert!(
            e.to_string().contains("video_sd has usage on 2026-02-28"),
            "{e}"
        );
    }

    #[test]
    fn every_focus_column_is_there_once() {
        let s = file_schema();
        assert_eq!(focus_columns().count(), 57, "FOCUS 1.2 has 57 columns");
        for c in VARYING {
            assert!(s.field_with_name(c).is_ok(), "{c}");
        }
        let mut names: Vec<&str> = focus_columns().collect();
        let sorted = {
            let mut v = names.clone();
            v.sort();
            v
        };
        assert_eq!(names, sorted, "the specification's (alphabetical) order");
        names.dedup();
        assert_eq!(names.len(), 57);
    }

    fn meter_prices() -> PriceList {
        PriceList::parse(
            "p.toml",
            br#"
currency = "USD"
billing_account_id = "100012345678"
[[price]]
series = "audio"
list = 1
[[price]]
table = "recording_usage"
mix_type = "multi"
usage_key = "mixrecording"
list = 14
contracted = 12
[[price]]
table = "relay_usage"
usage_key = "AudioRelay"
list = 2
from = "2026-03-01"
"#,
        )
        .unwrap()
    }

    fn meter_batch(mix: bool, rows: &[(&str, &str, f64, &str)]) -> RecordBatch {
        let mut cols: Vec<ArrayRef> = Vec::new();
        if mix {
            cols.push(Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.0),
            )));
        }
        let n = rows.len();
        cols.push(Arc::new(
            TimestampMicrosecondArray::from((0..n as i64).collect::<Vec<_>>()).with_timezone("UTC"),
        ));
        cols.push(Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.1),
        )));
        cols.push(Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|r| r.2),
        )));
        cols.push(Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.3),
        )));
        cols.push(Arc::new(
            TimestampMicrosecondArray::from(vec![0; n]).with_timezone("UTC"),
        ));
        RecordBatch::try_new(meter::file_schema(mix), cols).unwrap()
    }

    fn meter_day(d: &str) -> Day {
        day_of(d, &meter_prices())
    }

    #[test]
    fn a_meter_day_is_one_row_per_mix_type_and_key_with_usage() {
        let usage = meter_usage(&[
            meter_batch(
                true,
                &[
                    ("multi", "MixRecording", 30.0, "req-multi"),
                    ("single", "AudioRecording", 0.0, "req-single"),
                ],
            ),
            meter_batch(true, &[("multi", "MixRecording", 60.5, "req-multi")]),
        ])
        .unwrap();
        assert_eq!(usage.len(), 2);
        assert_eq!(usage[0].minutes, 90.5, "summed over the buckets");
        let mut totals = BTreeMap::new();
        let b = meter_day("2026-02-28")
            .meter_rows(meter::RECORDING_USAGE, &usage, &mut totals)
            .unwrap();
        assert_eq!(
            b.num_rows(),
            1,
            "no row for a key with no usage, priced or not"
        );
        let s = |c: &str| {
            b.column_by_name(c)
                .unwrap()
                .as_string::<i32>()
                .value(0)
                .to_owned()
        };
        let f = |c: &str| {
            b.column_by_name(c)
                .unwrap()
                .as_primitive::<arrow_array::types::Float64Type>()
                .value(0)
        };
        assert_eq!(
            s("x_series"),
            "recording_usage:multi:MixRecording",
            "the key as the answer has it"
        );
        assert_eq!(s("ResourceId"), "1400000001", "the SdkAppId");
        assert_eq!(s("ResourceType"), "Application");
        assert_eq!(s("SkuId"), "trtc-recording_usage:multi:MixRecording");
        assert_eq!(s("SkuPriceId"), "trtc-recording_usage:multi:MixRecording");
        assert_eq!(
            s("x_room_request_id"),
            "req-multi",
            "the answer the usage is from"
        );
        assert_eq!(
            s("ChargeDescription"),
            "TRTC cloud recording (multi) MixRecording minutes of the app"
        );
        assert_eq!(f("ConsumedQuantity"), 90.5);
        assert!((f("ListCost") - 90.5 * 0.014).abs() < 1e-12);
        assert!((f("BilledCost") - 90.5 * 0.012).abs() < 1e-12);
        assert!((totals["recording_usage:multi:MixRecording"] - 90.5 * 0.012).abs() < 1e-12);
    }

    #[test]
    fn meter_usage_without_a_price_names_table_key_and_day() {
        let usage = meter_usage(&[meter_batch(false, &[("", "AudioRelay", 5.0, "r")])]).unwrap();
        let mut totals = BTreeMap::new();
        // The relay price starts on 2026-03-01.
        let e = meter_day("2026-02-28")
            .meter_rows(meter::RELAY_USAGE, &usage, &mut totals)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "relay_usage has usage of AudioRelay on 2026-02-28 but the price list has no price for it on that day; add a [[price]] with table = \"relay_usage\", usage_key = \"AudioRelay\" (from 2026-02-28 or earlier)"
        );
        let b = meter_day("2026-03-01")
            .meter_rows(meter::RELAY_USAGE, &usage, &mut totals)
            .unwrap();
        assert_eq!(b.num_rows(), 1);
        let usage =
            meter_usage(&[meter_batch(true, &[("single", "AudioRecording", 1.0, "r")])]).unwrap();
        let e = meter_day("2026-03-01")
            .meter_rows(meter::RECORDING_USAGE, &usage, &mut totals)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("recording_usage has usage of single AudioRecording on 2026-03-01"),
            "{e}"
        );
        assert!(e.contains("mix_type = \"single\""), "{e}");
    }
}
