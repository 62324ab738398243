//! The tables' Arrow schemas (`docs/lake.md`, "Schemas"), and how CSV headers map onto it.
//!
//! Two views of one schema: [`table_schema`] is what readers see, with the
//! partition columns `app_id` and `usage_date`; [`file_schema`] is what each
//! Parquet file stores, without them, since they live in the path as Hive,
//! Spark and DuckDB expect.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

pub const APP_ID: &str = "app_id";
pub const USAGE_DATE: &str = "usage_date";
pub const ROOM_ID: &str = "room_id";
pub const REQUEST_ID: &str = "request_id";
pub const FETCHED_AT: &str = "fetched_at";

/// The CSV's known value columns: lower-cased header, column name.
pub const VALUE_COLUMNS: [(&str, &str); 6] = [
    ("audio", "audio_seconds"),
    ("sd", "video_sd_seconds"),
    ("hd", "video_hd_seconds"),
    ("fullhd", "video_full_hd_seconds"),
    ("2k", "video_2k_seconds"),
    ("4k", "video_4k_seconds"),
];

/// The CSV's room id header, lower-cased.
pub const ROOM_ID_HEADER: &str = "roomid";

/// Timestamp(Microsecond, "UTC"): `fetched_at`, `interval_start`, `checked_at`.
pub fn fetched_at_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn file_fields(extras: &[String]) -> Vec<Field> {
    let mut fields = vec![Field::new(ROOM_ID, DataType::Utf8, false)];
    fields.extend(
        VALUE_COLUMNS
            .iter()
            .map(|(_, name)| Field::new(*name, DataType::Int64, true)),
    );
    fields.push(Field::new(REQUEST_ID, DataType::Utf8, false));
    fields.push(Field::new(FETCHED_AT, fetched_at_type(), false));
    fields.extend(extras.iter().map(|n| Field::new(n, DataType::Int64, true)));
    fields
}

/// The schema stored in each Parquet file: no partition columns.
pub fn file_schema(extras: &[String]) -> SchemaRef {
    Arc::new(Schema::new(file_fields(extras)))
}

/// The whole table as readers see it: partition columns first.
pub fn table_schema(extras: &[String]) -> SchemaRef {
    with_partition_columns(&file_schema(extras))
}

/// `file` as readers see it, with `app_id` and `usage_date` first.
pub fn with_partition_columns(file: &Schema) -> SchemaRef {
    let mut fields = vec![
        Field::new(APP_ID, DataType::Int64, false),
        Field::new(USAGE_DATE, DataType::Date32, false),
    ];
    fields.extend(file.fields().iter().map(|f| f.as_ref().clone()));
    Arc::new(Schema::new(fields))
}

/// Normalizes a header for matching: BOM stripped, trimmed, lower-cased.
pub fn header_key(raw: &str) -> String {
    raw.trim_start_matches('\u{feff}').trim().to_lowercase()
}

/// The column an unknown CSV header becomes: `8K` → `extra_8k_seconds`,
/// `UltraHD` → `extra_ultra_hd_seconds`, `Full HD+` → `extra_full_hd_seconds`.
pub fn extra_column_name(raw: &str) -> String {
    format!("{}{SECONDS}", extra_series(raw))
}

/// The suffix of the room table's value columns.
pub const SECONDS: &str = "_seconds";

/// The series a value column measures: `video_hd_seconds` → `video_hd`,
/// `extra_8k_minutes` → `extra_8k` (the `checks` table's `series`).
pub fn series_of(column: &str) -> Option<&str> {
    column
        .strip_suffix(SECONDS)
        .or_else(|| column.strip_suffix("_minutes"))
}

/// The series an unknown name (a CSV header, a `UsageKey`) becomes, in
/// lower snake case: `UltraHD` → `extra_ultra_hd`.
pub fn extra_series(raw: &str) -> String {
    let raw = raw.trim_start_matches('\u{feff}').trim();
    let mut snake = String::with_capacity(raw.len() + 4);
    let mut prev: Option<char> = None;
    for c in raw.chars() {
        if c.is_alphanumeric() {
            let boundary = c.is_uppercase() && prev.is_some_and(char::is_lowercase);
            if boundary && !snake.ends_with('_') {
                snake.push('_');
            }
            snake.extend(c.to_lowercase());
        } else if !snake.is_empty() && !snake.ends_with('_') {
            snake.push('_');
        }
        prev = Some(c);
    }
    let snake = snake.trim_end_matches('_');
    let snake = if snake.is_empty() { "unnamed" } else { snake };
    format!("extra_{snake}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_schema_is_the_contract() {
        let s = table_schema(&[]);
        let cols: Vec<(&str, &DataType, bool)> = s
            .fields()
            .iter()
            .map(|f| (f.name().as_str(), f.data_type(), f.is_nullable()))
            .collect();
        assert_eq!(
            cols,
            vec![
                ("app_id", &DataType::Int64, false),
                ("usage_date", &DataType::Date32, false),
                ("room_id", &DataType::Utf8, false),
                ("audio_seconds", &DataType::Int64, true),
                ("video_sd_seconds", &DataType::Int64, true),
                ("video_hd_seconds", &DataType::Int64, true),
                ("video_full_hd_seconds", &DataType::Int64, true),
                ("video_2k_seconds", &DataType::Int64, true),
                ("video_4k_seconds", &DataType::Int64, true),
                ("request_id", &DataType::Utf8, false),
                ("fetched_at", &fetched_at_type(), false),
            ]
        );
    }

    #[test]
    fn file_schema_drops_partition_columns_and_appends_extras() {
        let s = file_schema(&["extra_8k_seconds".into()]);
        assert!(s.field_with_name(APP_ID).is_err());
        assert!(s.field_with_name(USAGE_DATE).is_err());
        assert_eq!(s.fields().last().unwrap().name(), "extra_8k_seconds");
        assert_eq!(s.fields().len(), 10);
    }

    #[test]
    fn extra_names_are_lower_snake_case() {
        for (raw, want) in [
            ("8K", "extra_8k_seconds"),
            ("UltraHD", "extra_ultra_hd_seconds"),
            ("Full HD+", "extra_full_hd_seconds"),
            (" VR360 ", "extra_vr360_seconds"),
            ("\u{feff}Spatial-Audio", "extra_spatial_audio_seconds"),
            ("**", "extra_unnamed_seconds"),
        ] {
            assert_eq!(extra_column_name(raw), want, "{raw}");
        }
    }

    #[test]
    fn header_keys_ignore_case_space_and_bom() {
        assert_eq!(header_key("\u{feff} RoomId "), "roomid");
        assert_eq!(header_key("HD"), "hd");
    }
}
