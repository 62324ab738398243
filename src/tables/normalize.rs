//! CSV → Arrow: turns one day's `Response.Data` into record batches of the
//! file schema, with an explicit schema and never inference.
//!
//! Accepts what the real service and RFC 4180 allow: any header case,
//! surrounding spaces, a BOM, CRLF, quoted fields. Refuses, naming the CSV
//! line (1-based, the header is line 1) and the column, anything that is not
//! a non-negative integer where seconds belong, ragged rows, invalid UTF-8
//! in a room id and, under `--schema-contract freeze`, unknown columns.
//!
//! Batches are produced one at a time so a million-room day never holds more
//! than one batch of Arrow arrays at once.

use std::io::Read;
use std::sync::Arc;

use arrow_array::builder::{Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::SchemaRef;

use crate::tables::records::Records;
use crate::tables::schema::{self, ROOM_ID_HEADER, VALUE_COLUMNS};

/// Rows per record batch.
pub const DEFAULT_BATCH_ROWS: usize = 16_384;
/// Room ids are at most 64 bytes in TRTC; anything this long is corrupt data.
pub const MAX_ROOM_ID_BYTES: usize = 1024;

/// What an unknown CSV column does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemaContract {
    /// Keep it as an extra nullable Int64 column, with a warning.
    Evolve,
    /// Fail the partition.
    Freeze,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NormalizeError {
    #[error("CSV line {line}, column '{column}': {value:?} is not a non-negative integer")]
    BadValue {
        line: u64,
        column: String,
        value: String,
    },
    #[error("CSV line {line} has {found} fields but the header has {expected}")]
    Ragged {
        line: u64,
        expected: usize,
        found: usize,
    },
    #[error("CSV line {line}, column '{column}': not valid UTF-8")]
    Utf8 { line: u64, column: String },
    #[error(
        "CSV line {line}, column '{column}': room id is {len} bytes, over the {max}-byte limit"
    )]
    RoomIdTooLong {
        line: u64,
        column: String,
        len: usize,
        max: usize,
    },
    #[error(
        "CSV header: unknown column '{column}' (--schema-contract freeze; use evolve to keep it as {extra})"
    )]
    UnknownColumn { column: String, extra: String },
    #[error("CSV header: column '{column}' appears twice")]
    DuplicateColumn { column: String },
    #[error("CSV header has no RoomId column (found: {found})")]
    NoRoomId { found: String },
    #[error("CSV line {line}: {message}")]
    Csv { line: u64, message: String },
}

/// What the header said, for the manifest and the warnings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderInfo {
    /// The CSV's column names as they appear (trimmed, BOM stripped).
    pub columns_found: Vec<String>,
    /// Known columns the CSV lacked, written as nulls.
    pub missing: Vec<String>,
    /// Extra columns carried, as `(csv name, column name)`.
    pub extras: Vec<(String, String)>,
}

impl HeaderInfo {
    pub fn extra_columns(&self) -> Vec<String> {
        self.extras.iter().map(|(_, c)| c.clone()).collect()
    }
}

#[derive(Debug, Clone, Copy)]
enum Target {
    RoomId,
    /// Index into the value builders: the 6 known columns, then extras.
    Value(usize),
}

/// The CSV as the parser reads it: whatever the source, with a leading BOM
/// taken off.
type Source<R> = std::io::Chain<std::io::Cursor<Vec<u8>>, R>;

/// Reads past a UTF-8 byte order mark at the start of `r`, if there is one.
fn skip_bom<R: Read>(mut r: R) -> std::io::Result<Source<R>> {
    let mut head = Vec::with_capacity(3);
    (&mut r).take(3).read_to_end(&mut head)?;
    if head == "\u{feff}".as_bytes() {
        head.clear();
    }
    Ok(std::io::Cursor::new(head).chain(r))
}

/// Streams record batches out of one day's CSV, read from any source (the
/// API's body unescapes as it is read; tests pass byte slices).
pub struct Normalizer<R: Read> {
    reader: Records<Source<R>>,
    header: HeaderInfo,
    targets: Vec<Target>,
    /// Column name of each value builder, for error messages.
    value_names: Vec<String>,
    /// Known columns absent from the CSV.
    absent: Vec<bool>,
    schema: SchemaRef,
    batch_rows: usize,
    request_id: String,
    fetched_at_micros: i64,
    /// The constant columns of a full batch (see [`Normalizer::constants`]).
    full_constants: Option<(ArrayRef, ArrayRef)>,
    done: bool,
}

impl<R: Read> std::fmt::Debug for Normalizer<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Normalizer")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

fn parse_seconds(raw: &[u8]) -> Result<Option<i64>, ()> {
    // Nearly every value: 1 to 18 plain digits, which cannot overflow.
    if !raw.is_empty() && raw.len() <= 18 {
        let mut n = 0u64;
        let mut digits = true;
        for &b in raw {
            let d = b.wrapping_sub(b'0');
            digits &= d < 10;
            n = n.wrapping_mul(10).wrapping_add(u64::from(d));
        }
        if digits {
            return Ok(Some(n as i64));
        }
    }
    let v = raw.trim_ascii();
    if v.is_empty() {
        return Ok(None);
    }
    // Leading zeros do not count against Int64's 19 digits ("007" is 7).
    let first = v.iter().position(|&b| b != b'0').unwrap_or(v.len());
    let v = if first == v.len() {
        &v[v.len() - 1..]
    } else {
        &v[first..]
    };
    if v.len() > 19 {
        return Err(());
    }
    let mut n: u64 = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return Err(());
        }
        n = n * 10 + u64::from(b - b'0');
    }
    i64::try_from(n).map(Some).map_err(|_| ())
}

#[cfg(test)]
#[test]
fn leading_zeros_do_not_count_against_int64() {
    assert_eq!(parse_seconds(b"00000000000000000000001"), Ok(Some(1)));
    assert_eq!(parse_seconds(b"000"), Ok(Some(0)));
    assert_eq!(
        parse_seconds(b" 0009223372036854775807 "),
        Ok(Some(i64::MAX))
    );
    assert_eq!(parse_seconds(b"9223372036854775808"), Err(()));
    assert_eq!(parse_seconds(b"00x"), Err(()));
}

fn shorten(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s.into_owned()
    }
}

impl<R: Read> Normalizer<R> {
    /// Reads the header and prepares to stream rows. An empty `data` is a
    /// day with no rooms.
    pub fn new(
        data: R,
        contract: SchemaContract,
        request_id: &str,
        fetched_at_micros: i64,
        batch_rows: usize,
    ) -> Result<Self, NormalizeError> {
        let data = skip_bom(data).map_err(|e| NormalizeError::Csv {
            line: 1,
            message: e.to_string(),
        })?;
        let mut reader = Records::new(data);
        let mut header = HeaderInfo::default();
        let mut targets = Vec::new();
        let mut value_names: Vec<String> =
            VALUE_COLUMNS.iter().map(|(_, c)| (*c).to_owned()).collect();
        let mut seen_known = [false; VALUE_COLUMNS.len()];
        let record = reader.next_record().map_err(|e| read_error(&e, 1))?;
        let has_header = record.is_some();
        let mut done = true;
        if let Some(record) = record {
            done = false;
            let mut has_room_id = false;
            let mut seen_keys: Vec<String> = Vec::new();
            for raw in record.iter() {
                let name = std::str::from_utf8(raw).map_err(|_| NormalizeError::Utf8 {
                    line: 1,
                    column: shorten(raw),
                })?;
                let name = name.trim_start_matches('\u{feff}').trim().to_owned();
                let key = schema::header_key(&name);
                if seen_keys.contains(&key) {
                    return Err(NormalizeError::DuplicateColumn { column: name });
                }
                seen_keys.push(key.clone());
                let target = if key == ROOM_ID_HEADER {
                    has_room_id = true;
                    Target::RoomId
                } else if let Some(i) = VALUE_COLUMNS.iter().position(|(k, _)| *k == key) {
                    seen_known[i] = true;
                    Target::Value(i)
                } else {
                    let extra = schema::extra_column_name(&name);
                    if contract == SchemaContract::Freeze {
                        return Err(NormalizeError::UnknownColumn {
                            column: name,
                            extra,
                        });
                    }
                    if value_names.contains(&extra) {
                        return Err(NormalizeError::DuplicateColumn { column: name });
                    }
                    header.extras.push((name.clone(), extra.clone()));
                    value_names.push(extra);
                    Target::Value(value_names.len() - 1)
                };
                targets.push(target);
                header.columns_found.push(name);
            }
            if !has_room_id {
                return Err(NormalizeError::NoRoomId {
                    found: header.columns_found.join(","),
                });
            }
            header.missing = VALUE_COLUMNS
                .iter()
                .zip(seen_known)
                .filter(|(_, seen)| !seen)
                .map(|((_, c), _)| (*c).to_owned())
                .collect();
        }
        let mut absent = vec![false; value_names.len()];
        if has_header {
            for (i, seen) in seen_known.iter().enumerate() {
                absent[i] = !seen;
            }
        }
        let schema = schema::file_schema(&header.extra_columns());
        Ok(Self {
            reader,
            header,
            targets,
            value_names,
            absent,
            schema,
            batch_rows: batch_rows.max(1),
            request_id: request_id.to_owned(),
            fetched_at_micros,
            full_constants: None,
            done,
        })
    }

    /// The `request_id` and `fetched_at` columns of a batch of `rows`: the
    /// same arrays for every full batch, built once.
    fn constants(&mut self, rows: usize) -> (ArrayRef, ArrayRef) {
        let build = |rows: usize| -> (ArrayRef, ArrayRef) {
            (
                Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                    self.request_id.as_str(),
                    rows,
                ))),
                Arc::new(
                    TimestampMicrosecondArray::from_value(self.fetched_at_micros, rows)
                        .with_timezone("UTC"),
                ),
            )
        };
        if rows != self.batch_rows {
            return build(rows);
        }
        self.full_constants
            .get_or_insert_with(|| build(rows))
            .clone()
    }

    pub fn header(&self) -> &HeaderInfo {
        &self.header
    }

    /// The file schema of every batch this yields.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The next batch, or `None` at the end of the CSV.
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>, NormalizeError> {
        if self.done {
            return Ok(None);
        }
        let cap = self.batch_rows;
        let mut room_ids = StringBuilder::with_capacity(cap, cap * 16);
        let mut values: Vec<Int64Builder> = (0..self.value_names.len())
            .map(|_| Int64Builder::with_capacity(cap))
            .collect();
        let expected = self.targets.len();
        let mut rows = 0;
        while rows < cap {
            // A read error (a bad escape in the body) has no position of its
            // own: it is on the line after the last one read.
            let next_line = self.reader.line() + 1;
            let record = match self.reader.next_record() {
                Ok(Some(record)) => record,
                Ok(None) => {
                    self.done = true;
                    break;
                }
                Err(e) => return Err(read_error(&e, next_line)),
            };
            let line = record.line;
            // A line holding only whitespace, where several columns are
            // expected, is a blank line, not a row (the csv reader skips
            // empty lines itself). In a one-column CSV every record is a
            // room, as any CSV reader sees it: `" "` or a quoted `""` is a
            // room whose id is a space, or empty.
            if expected > 1 && record.len() == 1 && record.get(0).trim_ascii().is_empty() {
                continue;
            }
            if record.len() != expected {
                return Err(NormalizeError::Ragged {
                    line,
                    expected,
                    found: record.len(),
                });
            }
            for (field, target) in record.iter().zip(&self.targets) {
                match *target {
                    Target::RoomId => {
                        if field.len() > MAX_ROOM_ID_BYTES {
                            return Err(NormalizeError::RoomIdTooLong {
                                line,
                                column: "RoomId".into(),
                                len: field.len(),
                                max: MAX_ROOM_ID_BYTES,
                            });
                        }
                        let s = match field.is_ascii() {
                            // SAFETY: ASCII is UTF-8.
                            true => unsafe { std::str::from_utf8_unchecked(field) },
                            false => {
                                std::str::from_utf8(field).map_err(|_| NormalizeError::Utf8 {
                                    line,
                                    column: "RoomId".into(),
                                })?
                            }
                        };
                        room_ids.append_value(s);
                    }
                    Target::Value(i) => match parse_seconds(field) {
                        Ok(Some(v)) => values[i].append_value(v),
                        Ok(None) => values[i].append_null(),
                        Err(()) => {
                            return Err(NormalizeError::BadValue {
                                line,
                                column: csv_name(&self.targets, &self.header, &self.value_names, i),
                                value: shorten(field),
                            });
                        }
                    },
                }
            }
            for (i, absent) in self.absent.iter().enumerate() {
                if *absent {
                    values[i].append_null();
                }
            }
            rows += 1;
        }
        if rows == 0 {
            return Ok(None);
        }
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        columns.push(Arc::new(room_ids.finish()));
        let mut values = values.into_iter();
        for _ in 0..VALUE_COLUMNS.len() {
            columns.push(Arc::new(values.next().expect("known column").finish()));
        }
        let (request_ids, fetched_at) = self.constants(rows);
        columns.push(request_ids);
        columns.push(fetched_at);
        for mut extra in values {
            columns.push(Arc::new(extra.finish()));
        }
        let batch = RecordBatch::try_new(self.schema.clone(), columns)
            .expect("columns are built to the schema");
        Ok(Some(batch))
    }
}

/// The CSV's own name for value column `i`, as the user sees it in the
/// data.
fn csv_name(targets: &[Target], header: &HeaderInfo, value_names: &[String], i: usize) -> String {
    targets
        .iter()
        .zip(&header.columns_found)
        .find(|(t, _)| matches!(t, Target::Value(j) if *j == i))
        .map(|(_, name)| name.clone())
        .unwrap_or_else(|| value_names[i].clone())
}

/// A read error of the source (a bad escape in the body) on `line`.
fn read_error(e: &std::io::Error, line: u64) -> NormalizeError {
    NormalizeError::Csv {
        line,
        message: e.to_string(),
    }
}

/// Normalizes a whole CSV into batches; convenient for tests and small days.
pub fn normalize_all(
    data: &str,
    contract: SchemaContract,
    request_id: &str,
    fetched_at_micros: i64,
) -> Result<(HeaderInfo, Vec<RecordBatch>), NormalizeError> {
    let mut n = Normalizer::new(
        data.as_bytes(),
        contract,
        request_id,
        fetched_at_micros,
        DEFAULT_BATCH_ROWS,
    )?;
    let mut batches = Vec::new();
    while let Some(b) = n.next_batch()? {
        batches.push(b);
    }
    Ok((n.header().clone(), batches))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Array, Int64Array};

    fn run(data: &str) -> Result<(HeaderInfo, Vec<RecordBatch>), NormalizeError> {
        normalize_all(data, SchemaContract::Evolve, "req-1", 1_700_000_000_000_000)
    }

    fn rows(batches: &[RecordBatch]) -> usize {
        batches.iter().map(|b| b.num_rows()).sum()
    }

    fn col_i64(b: &RecordBatch, name: &str) -> Vec<Option<i64>> {
        b.column_by_name(name)
            .unwrap()
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .iter()
            .collect()
    }

    fn col_str(b: &RecordBatch, name: &str) -> Vec<String> {
        b.column_by_name(name)
            .unwrap()
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap()
            .iter()
            .map(|s| s.unwrap().to_owned())
            .collect()
    }

    #[test]
    fn documented_example() {
        let (h, b) = run("RoomId,Audio,SD,hd,FullHD,2K,4K\ntest_room,1,2,3,4,5,6\n").unwrap();
        assert!(h.missing.is_empty() && h.extras.is_empty());
        assert_eq!(
            h.columns_found,
            vec!["RoomId", "Audio", "SD", "hd", "FullHD", "2K", "4K"]
        );
        assert_eq!(rows(&b), 1);
        assert_eq!(col_str(&b[0], "room_id"), vec!["test_room"]);
        assert_eq!(col_i64(&b[0], "audio_seconds"), vec![Some(1)]);
        assert_eq!(col_i64(&b[0], "video_hd_seconds"), vec![Some(3)]);
        assert_eq!(col_i64(&b[0], "video_4k_seconds"), vec![Some(6)]);
        assert_eq!(col_str(&b[0], "request_id"), vec!["req-1"]);
        assert_eq!(b[0].schema(), schema::file_schema(&[]));
    }

    #[test]
    fn empty_data_and_header_only_are_zero_rows() {
        for data in [
            "",
            "\u{feff}",
            "RoomId,Audio,SD,hd,FullHD,2K,4K\n",
            "RoomId,Audio,SD,hd,FullHD,2K,4K",
        ] {
            let (h, b) = run(data).unwrap();
            assert_eq!(rows(&b), 0, "{data:?}");
            assert!(h.missing.is_empty(), "{data:?}");
        }
    }

    #[test]
    fn a_bom_before_a_quoted_header_is_not_part_of_it() {
        let (h, b) = run("\u{feff}\"RoomId\",\"Audio\"\n\"r,1\",7\n").unwrap();
        assert_eq!(h.columns_found, vec!["RoomId", "Audio"]);
        assert_eq!(col_str(&b[0], "room_id"), vec!["r,1"]);
        assert_eq!(col_i64(&b[0], "audio_seconds"), vec![Some(7)]);
    }

    #[test]
    fn header_case_spaces_bom_crlf_and_column_order() {
        let data =
            "\u{feff} roomid ,4k, AUDIO ,Hd,sd,fullhd,2K\r\n r1 ,6,1,3,2,4,5\r\nr2,0,0,0,0,0,0\r\n";
        let (_, b) = run(data).unwrap();
        assert_eq!(rows(&b), 2);
        // Room ids are byte for byte, spaces included.
        assert_eq!(col_str(&b[0], "room_id"), vec![" r1 ", "r2"]);
        assert_eq!(col_i64(&b[0], "audio_seconds"), vec![Some(1), Some(0)]);
        assert_eq!(col_i64(&b[0], "video_sd_seconds"), vec![Some(2), Some(0)]);
        assert_eq!(col_i64(&b[0], "video_hd_seconds"), vec![Some(3), Some(0)]);
        assert_eq!(
            col_i64(&b[0], "video_full_hd_seconds"),
            vec![Some(4), Some(0)]
        );
        assert_eq!(col_i64(&b[0], "video_2k_seconds"), vec![Some(5), Some(0)]);
        assert_eq!(col_i64(&b[0], "video_4k_seconds"), vec![Some(6), Some(0)]);
    }

    #[test]
    fn quoted_fields_and_room_ids_kept_verbatim() {
        let data = "RoomId,Audio,SD,hd,FullHD,2K,4K\n\"a,b\",1,2,3,4,5,6\n007,1,1,1,1,1,1\n\"say \"\"hi\"\"\",\"7\",0,0,0,0,0\n房间一,1,0,0,0,0,0\n";
        let (_, b) = run(data).unwrap();
        assert_eq!(
            col_str(&b[0], "room_id"),
            vec!["a,b", "007", "say \"hi\"", "房间一"]
        );
        assert_eq!(col_i64(&b[0], "audio_seconds")[2], Some(7));
    }

    #[test]
    fn empty_fields_are_nulls_and_missing_columns_are_null_columns() {
        let (h, b) = run("RoomId,Audio,SD\nr1,,5\nr2,3,\n").unwrap();
        assert_eq!(
            h.missing,
            vec![
                "video_hd_seconds",
                "video_full_hd_seconds",
                "video_2k_seconds",
                "video_4k_seconds"
            ]
        );
        assert_eq!(col_i64(&b[0], "audio_seconds"), vec![None, Some(3)]);
        assert_eq!(col_i64(&b[0], "video_sd_seconds"), vec![Some(5), None]);
        assert_eq!(
            b[0].column_by_name("video_4k_seconds")
                .unwrap()
                .null_count(),
            2
        );
    }

    #[test]
    fn unknown_columns_evolve_or_freeze() {
        let data = "RoomId,Audio,SD,hd,FullHD,2K,4K,8K\nr1,1,2,3,4,5,6,7\n";
        let (h, b) = run(data).unwrap();
        assert_eq!(
            h.extras,
            vec![("8K".to_owned(), "extra_8k_seconds".to_owned())]
        );
        assert_eq!(
            b[0].schema().fields().last().unwrap().name(),
            "extra_8k_seconds"
        );
        assert_eq!(col_i64(&b[0], "extra_8k_seconds"), vec![Some(7)]);
        let err = normalize_all(data, SchemaContract::Freeze, "r", 0).unwrap_err();
        assert!(matches!(err, NormalizeError::UnknownColumn { ref column, .. } if column == "8K"));
        assert!(err.to_string().contains("'8K'"), "{err}");
    }

    #[test]
    fn bad_values_name_line_and_column() {
        let cases = [
            ("r1,1,2,3,4,5,-6", 2, "4K", "-6"),
            ("r1,1,2,3,4,5,6\nr2,1.5,0,0,0,0,0", 3, "Audio", "1.5"),
            ("r1,1,abc,3,4,5,6", 2, "SD", "abc"),
            (
                "r1,1,2,99999999999999999999,4,5,6",
                2,
                "hd",
                "99999999999999999999",
            ),
            (
                "r1,1,2,3,9223372036854775808,5,6",
                2,
                "FullHD",
                "9223372036854775808",
            ),
            ("r1,1,2,3,4,+5,6", 2, "2K", "+5"),
        ];
        for (rows, line, column, value) in cases {
            let data = format!("RoomId,Audio,SD,hd,FullHD,2K,4K\n{rows}\n");
            let err = run(&data).unwrap_err();
            assert_eq!(
                err,
                NormalizeError::BadValue {
                    line,
                    column: column.into(),
                    value: value.into()
                },
                "{rows}"
            );
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("line {line}")) && msg.contains(column),
                "{msg}"
            );
        }
        // The largest Int64 is fine.
        let (_, b) = run("RoomId,Audio\nr,9223372036854775807\n").unwrap();
        assert_eq!(col_i64(&b[0], "audio_seconds"), vec![Some(i64::MAX)]);
    }

    #[test]
    fn ragged_rows_and_structural_errors() {
        let err = run("RoomId,Audio,SD\nr1,1\n").unwrap_err();
        assert_eq!(
            err,
            NormalizeError::Ragged {
                line: 2,
                expected: 3,
                found: 2
            }
        );
        let err = run("RoomId,Audio\nr1,1\nr2,1,2\n").unwrap_err();
        assert!(
            matches!(err, NormalizeError::Ragged { line: 3, .. }),
            "{err}"
        );
        assert!(matches!(
            run("Audio,SD\n1,2\n").unwrap_err(),
            NormalizeError::NoRoomId { .. }
        ));
        assert!(matches!(
            run("RoomId,HD,hd\nr,1,2\n").unwrap_err(),
            NormalizeError::DuplicateColumn { .. }
        ));
    }

    #[test]
    fn quoted_newline_counts_lines_from_the_record_start() {
        let data = "RoomId,Audio\n\"multi\nline\",1\nr2,x\n";
        let err = run(data).unwrap_err();
        assert_eq!(
            err,
            NormalizeError::BadValue {
                line: 4,
                column: "Audio".into(),
                value: "x".into()
            }
        );
    }

    #[test]
    fn invalid_utf8_and_huge_room_ids_fail() {
        let mut data = b"RoomId,Audio\n".to_vec();
        data.extend_from_slice(b"r\xff,1\n");
        let mut n = Normalizer::new(data.as_slice(), SchemaContract::Evolve, "r", 0, 10).unwrap();
        let err = n.next_batch().unwrap_err();
        assert_eq!(
            err,
            NormalizeError::Utf8 {
                line: 2,
                column: "RoomId".into()
            }
        );
        let huge = format!("RoomId,Audio\n{},1\n", "x".repeat(MAX_ROOM_ID_BYTES + 1));
        assert!(matches!(
            run(&huge).unwrap_err(),
            NormalizeError::RoomIdTooLong { line: 2, .. }
        ));
    }

    #[test]
    fn batches_split_at_the_batch_size() {
        let mut data = String::from("RoomId,Audio,SD,hd,FullHD,2K,4K\n");
        for i in 0..25 {
            data.push_str(&format!("room{i},{i},0,0,0,0,0\n"));
        }
        let mut n = Normalizer::new(data.as_bytes(), SchemaContract::Evolve, "r", 0, 10).unwrap();
        let mut sizes = vec![];
        while let Some(b) = n.next_batch().unwrap() {
            sizes.push(b.num_rows());
        }
        assert_eq!(sizes, vec![10, 10, 5]);
    }

    #[test]
    fn blank_lines_are_skipped() {
        let (_, b) = run("RoomId,Audio\n\nr1,1\n\n").unwrap();
        assert_eq!(rows(&b), 1);
        let (_, b) = run("RoomId,Audio\n   \nr1,1\n").unwrap();
        assert_eq!(rows(&b), 1);
    }

    #[test]
    fn a_quoted_empty_room_id_in_a_one_column_csv_is_a_row() {
        let (_, b) = run("RoomId\n\"\"\nr1\n\n").unwrap();
        assert_eq!(rows(&b), 2);
        // So is a room whose id is a space.
        let (_, b) = run("RoomId\n \nr1\n").unwrap();
        assert_eq!(rows(&b), 2);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn drain(data: &[u8], contract: SchemaContract) -> Result<usize, NormalizeError> {
            let mut n = Normalizer::new(data, contract, "r", 0, 7)?;
            let mut rows = 0;
            while let Some(b) = n.next_batch()? {
                rows += b.num_rows();
            }
            Ok(rows)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1000))]

            /// Whatever the bytes, the normalizer answers rows or an error,
            /// and never panics.
            #[test]
            fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
                let _ = drain(&data, SchemaContract::Evolve);
                let _ = drain(&data, SchemaContract::Freeze);
            }

            /// Bytes shaped like the API's CSV: header, then fields made of
            /// digits, signs, quotes, commas, CR/LF and non-ASCII.
            #[test]
            fn csv_like_bytes_never_panic(
                body in proptest::collection::vec(
                    prop_oneof![
                        Just(b','), Just(b'"'), Just(b'\n'), Just(b'\r'), Just(b'-'), Just(b' '),
                        (b'0'..=b'9'), Just(0xff), Just(0xe6), (b'a'..=b'z')
                    ],
                    0..400,
                )
            ) {
                let mut data = b"RoomId,Audio,SD,hd,FullHD,2K,4K\n".to_vec();
                data.extend(body);
                let _ = drain(&data, SchemaContract::Evolve);
            }

        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]

            /// Well-formed rows come back exactly: ids byte for byte, values
            /// and nulls as written.
            #[test]
            fn well_formed_rows_round_trip(
                rows in proptest::collection::vec(
                    ("[^\u{0}]{0,12}", proptest::option::of(0i64..=i64::MAX), proptest::option::of(0i64..1_000_000)),
                    0..40,
                )
            ) {
                let mut data = String::from("RoomId,Audio,4K\r\n");
                for (id, a, k) in &rows {
                    let quoted = format!("\"{}\"", id.replace('"', "\"\""));
                    let f = |v: &Option<i64>| v.map(|x| x.to_string()).unwrap_or_default();
                    data.push_str(&format!("{quoted},{},{}\r\n", f(a), f(k)));
                }
                let (_, batches) = normalize_all(&data, SchemaContract::Freeze, "r", 0).unwrap();
                let ids: Vec<String> = batches.iter().flat_map(|b| col_str(b, "room_id")).collect();
                let audio: Vec<Option<i64>> = batches.iter().flat_map(|b| col_i64(b, "audio_seconds")).collect();
                let k4: Vec<Option<i64>> = batches.iter().flat_map(|b| col_i64(b, "video_4k_seconds")).collect();
                prop_assert_eq!(ids, rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>());
                prop_assert_eq!(audio, rows.iter().map(|r| r.1).collect::<Vec<_>>());
                prop_assert_eq!(k4, rows.iter().map(|r| r.2).collect::<Vec<_>>());
            }
        }
    }
}
