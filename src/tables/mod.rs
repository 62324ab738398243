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
//! - [`cost`]: room usage × prices → FOCUS 1.0 rows;
//! - [`Table`]: the lake's tables by name.
//!
//! Nothing here does I/O beyond reading the bytes it is handed.

pub mod app_usage;
pub mod checks;
pub mod cost;
pub mod normalize;
pub mod prices;
pub mod records;
pub mod schema;

/// A table of the lake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    /// Seconds per room and day, from `DescribeTrtcRoomUsage`.
    RoomUsage,
    /// Minutes per 5-minute bucket, from `DescribeTrtcUsage`.
    AppUsage,
    /// Whether the rooms add up to the app's figure; no API of its own.
    Checks,
    /// What the rooms cost at the user's prices, as FOCUS rows; no API of
    /// its own, and only with `--prices`.
    Cost,
}

impl Table {
    /// Every table, in the order a run fills them.
    pub const ALL: [Table; 4] = [
        Table::RoomUsage,
        Table::AppUsage,
        Table::Checks,
        Table::Cost,
    ];

    /// The tables a run fills when `--tables` does not say: all but
    /// `cost`, which needs a price list (`--prices` adds it).
    pub const DEFAULT: [Table; 3] = [Table::RoomUsage, Table::AppUsage, Table::Checks];

    /// The table's directory name under the lake's root (and under `_raw/`).
    pub fn name(self) -> &'static str {
        match self {
            Table::RoomUsage => "room_usage",
            Table::AppUsage => "app_usage",
            Table::Checks => "checks",
            Table::Cost => "cost",
        }
    }

    /// The tables a derived table is computed from; none for a table
    /// filled from an API answer.
    pub fn inputs(self) -> &'static [Table] {
        match self {
            Table::RoomUsage | Table::AppUsage => &[],
            Table::Checks => &[Table::RoomUsage, Table::AppUsage],
            Table::Cost => &[Table::RoomUsage],
        }
    }

    /// Whether the table is filled from an API answer (and so has a raw
    /// zone); a derived table (`checks`) is computed from others.
    pub fn is_fetched(self) -> bool {
        self.inputs().is_empty()
    }

    /// The table's columns in its Parquet files (extra CSV columns, which
    /// a day may add, aside).
    pub fn file_schema(self) -> arrow_schema::SchemaRef {
        match self {
            Table::RoomUsage => schema::file_schema(&[]),
            Table::AppUsage => app_usage::file_schema(&[]),
            Table::Checks => checks::file_schema(),
            Table::Cost => cost::file_schema(),
        }
    }

    /// The table named `name`, if any.
    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
