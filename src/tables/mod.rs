//! The tables: what each table's rows are and how an API answer becomes
//! them. A table is a value (its name, its Arrow schema, its normalizer);
//! the jobs and the lake handle every table alike through it.
//!
//! - [`schema`]: `room_usage`'s Arrow schema, column names and naming rules;
//! - [`normalize`]: the room CSV → Arrow record batches, streaming;
//! - [`records`]: CSV records, plain lines split in place;
//! - [`app_usage`]: the `DescribeTrtcUsage` answer → 5-minute rows;
//! - [`checks`]: room totals against app totals, one row per series;
//! - [`prices`]: the user's price list, checked;
//! - [`cost`]: room and meter usage × prices → FOCUS 1.2 rows;
//! - [`Table`]: the lake's tables by name.
//!
//! Nothing here does I/O beyond reading the bytes it is handed.

pub mod app_usage;
pub mod buckets;
pub mod checks;
pub mod cost;
pub mod meter;
pub mod normalize;
pub mod prices;
pub mod records;
pub mod schema;

/// A table of the lake: its name (its directory under the lake's root and
/// under `_raw/`), the tables it is computed from (none for a table fetched
/// from an API) and its Arrow schema. A value, not a variant: each table's
/// module defines its own (`room_usage`'s is [`Table::ROOM_USAGE`], a
/// meter's is in its module of `jobs::fetch`), and the jobs list them in
/// their registries, so no `match` anywhere names every table. Two tables
/// are the same when their names are.
#[derive(Clone, Copy)]
pub struct Table {
    name: &'static str,
    inputs: &'static [Table],
    optional: &'static [Table],
    schema: fn() -> arrow_schema::SchemaRef,
}

impl Table {
    /// A table filled from an API's answers.
    pub const fn fetched(name: &'static str, schema: fn() -> arrow_schema::SchemaRef) -> Self {
        Self {
            name,
            inputs: &[],
            optional: &[],
            schema,
        }
    }

    /// A table computed from `inputs`' partitions of the same (app, day).
    pub const fn derived(
        name: &'static str,
        inputs: &'static [Table],
        schema: fn() -> arrow_schema::SchemaRef,
    ) -> Self {
        Self::derived_with(name, inputs, &[], schema)
    }

    /// A table computed from `inputs`' partitions of the same (app, day),
    /// and from those of `optional` that the lake holds (or the run fills).
    pub const fn derived_with(
        name: &'static str,
        inputs: &'static [Table],
        optional: &'static [Table],
        schema: fn() -> arrow_schema::SchemaRef,
    ) -> Self {
        Self {
            name,
            inputs,
            optional,
            schema,
        }
    }

    /// Seconds per room and day, from `DescribeTrtcRoomUsage`.
    pub const ROOM_USAGE: Table = Table::fetched("room_usage", || schema::file_schema(&[]));
    /// Minutes per 5-minute bucket, from `DescribeTrtcUsage`.
    pub const APP_USAGE: Table = Table::fetched("app_usage", || app_usage::file_schema(&[]));
    /// Whether the rooms add up to the app's figure; no API of its own.
    pub const CHECKS: Table = Table::derived(
        "checks",
        &[Table::ROOM_USAGE, Table::APP_USAGE],
        checks::file_schema,
    );
    /// What the usage cost at the user's prices, as FOCUS rows: the rooms',
    /// and the other meters' the lake holds that day; no API of its own,
    /// and only with `--prices`.
    pub const COST: Table = Table::derived_with(
        "cost",
        &[Table::ROOM_USAGE],
        &meter::TABLES,
        cost::file_schema,
    );

    /// The tables a run fills when `--tables` does not say: all but the
    /// opt-in ones (`cost` needs a price list, `--prices` adds it; the
    /// other meters need permissions an older key may lack).
    pub const DEFAULT: [Table; 3] = [Table::ROOM_USAGE, Table::APP_USAGE, Table::CHECKS];

    /// The table's directory name under the lake's root (and under `_raw/`).
    pub const fn name(self) -> &'static str {
        self.name
    }

    /// The tables a derived table is computed from; none for a table
    /// filled from an API answer.
    pub fn inputs(self) -> &'static [Table] {
        self.inputs
    }

    /// The tables a derived table also reads when the lake holds them that
    /// (app, day), or the run fills them (`cost`: the other meters).
    pub fn optional_inputs(self) -> &'static [Table] {
        self.optional
    }

    /// Every table a derived table may read: [`Table::inputs`], then
    /// [`Table::optional_inputs`].
    pub fn all_inputs(self) -> impl Iterator<Item = Table> {
        self.inputs.iter().chain(self.optional).copied()
    }

    /// Whether the table is filled from an API answer (and so has a raw
    /// zone); a derived table (`checks`) is computed from others.
    pub fn is_fetched(self) -> bool {
        self.inputs.is_empty()
    }

    /// The table's columns in its Parquet files (extra CSV columns, which
    /// a day may add, aside).
    pub fn file_schema(self) -> arrow_schema::SchemaRef {
        (self.schema)()
    }

    /// The table of `known` named `name`, if any.
    pub fn named(known: &[Table], name: &str) -> Option<Table> {
        known.iter().copied().find(|t| t.name == name)
    }
}

impl PartialEq for Table {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Table {}

impl std::hash::Hash for Table {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl PartialOrd for Table {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// By name, so a summary lists tables alike on every run.
impl Ord for Table {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.name.cmp(other.name)
    }
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl serde::Serialize for Table {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name)
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
