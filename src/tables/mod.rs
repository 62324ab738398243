//! The tables: what each table's rows are and how an API answer becomes
//! them. A table is a value (its name, its Arrow schema, its normalizer);
//! the jobs and the lake handle every table alike through it.
//!
//! - [`schema`]: the Arrow schemas, column names and naming rules;
//! - [`normalize`]: the room CSV → Arrow record batches, streaming;
//! - [`Table`]: the lake's tables by name.
//!
//! Nothing here does I/O beyond reading the bytes it is handed.

pub mod normalize;
pub mod schema;

/// A table of the lake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// Seconds per room and day, from `DescribeTrtcRoomUsage`.
    RoomUsage,
}

impl Table {
    /// Every table, in the order a run fills them.
    pub const ALL: [Table; 1] = [Table::RoomUsage];

    /// The table's directory name under the lake's root (and under `_raw/`).
    pub fn name(self) -> &'static str {
        match self {
            Table::RoomUsage => "room_usage",
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
