//! Writing a partition: normalized batches → one zstd Parquet file, spooled
//! (in memory when small, else in a temporary file) → the store, then the manifest, in an order that never shows a reader a
//! partial file and always leaves exactly one data file per partition.
//!
//! Commit order, and why:
//! 1. delete the old manifest, so a crash mid-way leaves the partition
//!    "not exported" (and so re-fetched), never "final" with a stale record;
//! 2. put `part-00000.parquet`: a single atomic PUT (or a multipart upload,
//!    which becomes visible only when completed and is aborted on failure;
//!    on S3 a big file's parts went up while it was encoded, and this step
//!    sends the last one and completes it: see [`upload`]), replacing the
//!    old file in place under the same key;
//! 3. delete every other object in the partition directory (stale files of
//!    older versions, leftovers of a killed upload);
//! 4. put `_manifest.json`, which marks the partition done.

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

use arrow_array::{Array, Int64Array, RecordBatch};
use chrono::{DateTime, NaiveDate, Utc};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use sha2::{Digest, Sha256};

use crate::lake::manifest::{self, BodyInfo, CheckInfo, DerivedInfo, FileInfo, Manifest};
use crate::lake::store::{Destination, PART_FILE};
use crate::lake::upload::{self, Output, Streamed, UploadError, store_err};
use crate::spool::{SpoolConfig, SpoolWriter, Spooled};
use crate::tables::Table;
use crate::tables::normalize::{HeaderInfo, NormalizeError, Normalizer, SchemaContract};
use crate::tables::schema;

/// How a room day is encoded: rows per batch, where answers are spooled,
/// and where the files the lake keeps are built.
#[derive(Debug, Clone)]
pub struct Encoding {
    pub batch_rows: usize,
    /// Answers (and raw answers read back): `--spool-dir`.
    pub spool: SpoolConfig,
    /// Parquet files and compressed raw answers while they are built: the
    /// lake's own directory when it is on local disk (committing is then a
    /// link, no copy), else `spool`.
    pub outputs: SpoolConfig,
}

impl Default for Encoding {
    fn default() -> Self {
        Self {
            batch_rows: crate::tables::normalize::DEFAULT_BATCH_ROWS,
            spool: SpoolConfig::default(),
            outputs: SpoolConfig::default(),
        }
    }
}

impl Encoding {
    /// Spooling in `spool`, files built in `dest`'s directory when it is
    /// local.
    pub fn new(spool: SpoolConfig, dest: &Destination) -> Self {
        let outputs = match dest.local_path(dest.root()) {
            Some(dir) => spool.in_lake(&dir),
            None => spool.clone(),
        };
        Self {
            spool,
            outputs,
            ..Self::default()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Normalize(#[from] NormalizeError),
    #[error("encoding Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error(transparent)]
    Upload(#[from] UploadError),
    /// A figure for the manifest that JSON cannot hold (serde_json would
    /// write `null`): refused before anything is written.
    #[error("{what} is {value}, not a finite number; nothing was written")]
    NotFinite { what: String, value: f64 },
    #[error(transparent)]
    Fenced(#[from] crate::lake::fence::FenceError),
    /// A derived table's rows could not be made.
    #[error("{0}")]
    Rows(String),
}

/// A partition's Parquet file, ready to upload.
#[derive(Debug)]
pub struct Encoded {
    pub file: Spooled,
    pub rows: u64,
    pub header: HeaderInfo,
    pub sha256: String,
    /// Series → the day's total, for the manifest (see [`Manifest::totals`]).
    pub totals: BTreeMap<String, f64>,
    /// The upload that followed the file while it was built (S3): the
    /// commit completes it; dropped, it is aborted.
    pub upload: Option<Streamed>,
}

/// Adds each `_seconds` column of `batch` to its series' total.
fn add_totals(batch: &RecordBatch, totals: &mut BTreeMap<String, i64>) {
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        let Some(series) = field.name().strip_suffix(schema::SECONDS) else {
            continue;
        };
        let Some(values) = column.as_any().downcast_ref::<Int64Array>() else {
            continue;
        };
        let sum: i64 = values.iter().flatten().fold(0i64, i64::saturating_add);
        let total = totals.entry(series.to_owned()).or_default();
        *total = total.saturating_add(sum);
    }
}

/// Encodes one small record batch (an `app_usage` day, a `checks` day) as
/// a Parquet file, with the same settings as the room table.
pub fn encode_batch(
    batch: &RecordBatch,
    header: HeaderInfo,
    totals: BTreeMap<String, f64>,
) -> Result<Encoded, WriteError> {
    let sink = HashingSink {
        bytes: Vec::new(),
        sha256: Sha256::new(),
    };
    let mut writer = ArrowWriter::try_new(sink, batch.schema(), Some(writer_properties()))?;
    writer.write(batch)?;
    let sink = writer.into_inner()?;
    Ok(Encoded {
        file: Spooled::Memory(sink.bytes),
        rows: batch.num_rows() as u64,
        header,
        sha256: hex::encode(sink.sha256.finalize()),
        totals,
        upload: None,
    })
}

/// Encodes the batches `next` yields, until `None`, as one Parquet file of
/// `schema`, spooled and hashed as it is produced: a derived table's rows,
/// streamed, so memory stays that of a batch and a row group whatever the
/// day's size.
///
/// `constants` are the columns that hold one value in every row of the
/// file (file column index, that value as a one-row array): `next`'s
/// batches leave them out (their schema is `schema` without them), and
/// each is encoded once per row-group size, then copied into every row
/// group of that size (a `ChunkCopy`, as the room table's constant
/// columns), so they cost nothing per row.
///
/// Both cores work: each row group's other columns are encoded half on a
/// second thread (those before file column `split`) and half on this one,
/// which also calls `next`; the chunks are then appended in column order,
/// so the file is what one `ArrowWriter` would write with the same row
/// groups.
pub fn encode_stream(
    schema: arrow_schema::SchemaRef,
    properties: WriterProperties,
    out: Output,
    split: usize,
    constants: &[(usize, arrow_array::ArrayRef)],
    mut next: impl FnMut() -> Result<Option<RecordBatch>, String>,
) -> Result<Encoded, WriteError> {
    use parquet::arrow::arrow_writer::ArrowColumnWriter;
    let Output { writer, upload } = out;
    let sink: HashingSink<SpoolWriter> = HashingSink {
        bytes: writer,
        sha256: Sha256::new(),
    };
    let row_group_rows = properties
        .max_row_group_row_count()
        .unwrap_or(ROW_GROUP_ROWS);
    let (mut file, factory) =
        ArrowWriter::try_new(sink, schema.clone(), Some(properties))?.into_serialized_writer()?;
    let constant = |i: usize| constants.iter().find(|(c, _)| *c == i).map(|(_, v)| v);
    // The file column of each batch column: every column but the constants.
    let file_column: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| constant(i).is_none())
        .collect();
    let batch_schema = arrow_schema::Schema::new(
        file_column
            .iter()
            .map(|&i| schema.field(i).clone())
            .collect::<Vec<_>>(),
    );
    let mut encoded_constants: BTreeMap<(usize, usize), ChunkCopy> = BTreeMap::new();
    let mut rows = 0u64;
    let mut pending: Option<RecordBatch> = None;
    let mut ended = false;
    let mut group = 0;
    while !ended {
        // (batch column, writer) of every column not constant; the
        // constants' writers, (file column, writer), kept aside.
        let (ours, mut aside): (Vec<(usize, ArrowColumnWriter)>, Vec<_>) = factory
            .create_column_writers(group)?
            .into_iter()
            .enumerate()
            .partition(|(i, _)| constant(*i).is_none());
        let mut ours: Vec<(usize, ArrowColumnWriter)> =
            ours.into_iter().map(|(_, w)| w).enumerate().collect();
        let theirs: Vec<_> = ours
            .extract_if(.., |(at, _)| file_column[*at] < split)
            .collect();
        let (tx, rx) = std::sync::mpsc::sync_channel::<RecordBatch>(1);
        let batch_schema = &batch_schema;
        let (their_chunks, group_rows) = std::thread::scope(|scope| {
            let worker = scope.spawn(move || {
                let mut theirs = theirs;
                for batch in rx {
                    feed(batch_schema, &mut theirs, &batch)?;
                }
                close_all(theirs)
            });
            let mut group_rows = 0usize;
            let fed: Result<(), WriteError> = (|| {
                while group_rows < row_group_rows {
                    let batch = match pending.take() {
                        Some(b) => b,
                        None => match next().map_err(WriteError::Rows)? {
                            Some(b) => b,
                            None => {
                                ended = true;
                                break;
                            }
                        },
                    };
                    let batch = fill_up(batch, row_group_rows - group_rows, &mut pending);
                    group_rows += batch.num_rows();
                    if tx.send(batch.clone()).is_err() {
                        break; // the worker failed: its error is below
                    }
                    feed(batch_schema, &mut ours, &batch)?;
                }
                Ok(())
            })();
            drop(tx);
            let theirs = worker.join().expect("a column encoder does not panic");
            fed?;
            Ok::<_, WriteError>((theirs?, group_rows))
        })?;
        if group_rows == 0 {
            break; // no empty row group (a day with no rows has none)
        }
        // A constant is encoded at the first row group of each size, by
        // its writer, on `group_rows` copies of its value; then copied.
        aside.retain(|(i, _)| !encoded_constants.contains_key(&(*i, group_rows)));
        for (i, mut w) in aside {
            let value = constant(i).expect("a constant's writer");
            let repeated = arrow_select::take::take(
                value.as_ref(),
                &arrow_array::UInt32Array::from(vec![0; group_rows]),
                None,
            )
            .map_err(parquet::errors::ParquetError::from)?;
            write_column(schema.field(i), &mut w, &repeated)?;
            for (i, copy) in copy_chunks(&schema, vec![(i, w.close()?)])? {
                encoded_constants.insert((i, group_rows), copy);
            }
        }
        let mut chunks: BTreeMap<usize, parquet::arrow::arrow_writer::ArrowColumnChunk> =
            their_chunks
                .into_iter()
                .chain(close_all(ours)?)
                .map(|(at, chunk)| (file_column[at], chunk))
                .collect();
        let mut row_group = file.next_row_group()?;
        for i in 0..schema.fields().len() {
            match chunks.remove(&i) {
                Some(chunk) => chunk.append_to_row_group(&mut row_group)?,
                None => {
                    let ChunkCopy { bytes, close } = &encoded_constants[&(i, group_rows)];
                    row_group.append_column(bytes, close.clone())?;
                }
            }
        }
        row_group.close()?;
        rows += group_rows as u64;
        group += 1;
        if group % TRIM_EVERY_ROW_GROUPS == 0 {
            trim_heap();
        }
    }
    file.into_inner()?
        .into_encoded(rows, HeaderInfo::default(), BTreeMap::new(), upload)
}

/// Hands the heap's free pages back to the system after a row group
/// (glibc): each row group's column writers grow and free their buffers,
/// and without this a 10-million-room day's cost table grew the process
/// to 120-140 MiB though its heap stayed under 90 MB.
/// How often [`encode_stream`] trims the heap: every row group cost a
/// fifth more time in page faults; every eighth keeps the bound for a
/// tenth of that.
const TRIM_EVERY_ROW_GROUPS: usize = 4;

fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the system; glibc
    // makes it safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// [`writer_properties`] for a derived table whose columns are mostly
/// constant in a file: dictionary encoding for every column but `varying`,
/// statistics only for `with_statistics`.
pub fn writer_properties_for(varying: &[&str], with_statistics: &[&str]) -> WriterProperties {
    let mut builder = writer_properties()
        .into_builder()
        .set_dictionary_enabled(true)
        .set_statistics_enabled(EnabledStatistics::None);
    for column in varying {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(*column), false);
    }
    for column in with_statistics {
        builder = builder
            .set_column_statistics_enabled(ColumnPath::from(*column), EnabledStatistics::Page);
    }
    builder.build()
}

/// Rows per row group: big enough for readers to skip whole groups by their
/// statistics, small enough that the group being built (held compressed in
/// memory until it is flushed) stays about 1.5 MiB for a big day.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Parquet settings, chosen on the benchmark's million-room day (see README
/// "Performance"): zstd level 1 and page statistics everywhere; dictionary
/// encoding only for the two columns that are constant within a file
/// (`request_id`, `fetched_at`), where it stores one value. Room ids are
/// nearly all distinct, and the seconds columns compress better as plain
/// values under zstd than as dictionary indices: with dictionaries on them
/// the file was 2.5% larger and encoding took 55% longer.
pub fn writer_properties() -> WriterProperties {
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).expect("valid level"),
        ))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_dictionary_enabled(false)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_created_by(concat!("trtc-usage ", env!("CARGO_PKG_VERSION")).to_owned());
    // Constant within a file: one dictionary value, and no statistics
    // (their per-row comparisons cost more than anything a reader gains).
    for constant in [schema::REQUEST_ID, schema::FETCHED_AT] {
        builder = builder
            .set_column_dictionary_enabled(ColumnPath::from(constant), true)
            .set_column_statistics_enabled(ColumnPath::from(constant), EnabledStatistics::None);
    }
    builder.build()
}

/// The Parquet file as it is encoded: its bytes (in memory, or spooled),
/// hashed as they are written so the checksum costs no pass of its own at
/// the end.
struct HashingSink<W> {
    bytes: W,
    sha256: Sha256,
}

impl HashingSink<SpoolWriter> {
    /// The finished file, its hash and what the manifest says of it.
    fn into_encoded(
        self,
        rows: u64,
        header: HeaderInfo,
        totals: BTreeMap<String, f64>,
        upload: Option<Streamed>,
    ) -> Result<Encoded, WriteError> {
        let file = self
            .bytes
            .finish()
            .map_err(parquet::errors::ParquetError::from)?;
        Ok(Encoded {
            file,
            rows,
            header,
            sha256: hex::encode(self.sha256.finalize()),
            totals,
            upload,
        })
    }
}

impl<W: std::io::Write> std::io::Write for HashingSink<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.sha256.update(buf);
        self.bytes.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.bytes.flush()
    }
}

/// Normalizes the CSV read from `data` and encodes it as one Parquet file.
/// CPU-bound: call it from a blocking thread for large days.
///
/// Two threads, a pipeline on both cores: one reads (and, for the API's
/// body, unescapes) the CSV, parses it into record batches and encodes the
/// two constant columns (`PARSER_COLUMNS`: once, for the first full row
/// group, then copied, see `ChunkCopy`); the other encodes and compresses
/// the rest, and writes each row group once both halves are done. Nothing
/// waits at a row group's end: the parser hands its closed column chunks
/// over in order with the batches and goes on. The file is the one an
/// `ArrowWriter` writes for the same batches, byte for byte. At most four
/// messages (a batch, or a row group's chunks) wait between the two, which
/// bounds memory and rides out the moments one thread is descheduled.
pub fn encode<R: Read + Send>(
    data: R,
    contract: SchemaContract,
    request_id: &str,
    fetched_at: DateTime<Utc>,
    encoding: &Encoding,
    out: Output,
) -> Result<Encoded, WriteError> {
    use parquet::arrow::arrow_writer::ArrowColumnWriter;
    /// What the parser hands the encoder, in order.
    enum Step {
        /// A new row group: the encoder's column writers for it.
        Group(Vec<(usize, ArrowColumnWriter)>),
        Batch(RecordBatch),
        /// The row group's rows are all sent: the parser's closed chunks.
        Chunks(Vec<(usize, Piece)>),
    }
    let mut normalizer = Normalizer::new(
        data,
        contract,
        request_id,
        fetched_at.timestamp_micros(),
        encoding.batch_rows,
    )?;
    let header = normalizer.header().clone();
    let schema = normalizer.schema();
    let batch_rows = encoding.batch_rows.max(1);
    let Output { writer, upload } = out;
    let sink: HashingSink<SpoolWriter> = HashingSink {
        bytes: writer,
        sha256: Sha256::new(),
    };
    let (mut file, factory) =
        ArrowWriter::try_new(sink, schema.clone(), Some(writer_properties()))?
            .into_serialized_writer()?;
    let on_parser: Vec<bool> = schema
        .fields()
        .iter()
        .map(|f| PARSER_COLUMNS.contains(&f.name().as_str()))
        .collect();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Step>(4);
    // Every known series has a total, 0 when the CSV lacks its column.
    let mut totals: BTreeMap<String, i64> = schema::VALUE_COLUMNS
        .iter()
        .filter_map(|(_, c)| schema::series_of(c))
        .map(|s| (s.to_owned(), 0))
        .collect();
    let (rows, parsed) = std::thread::scope(|scope| {
        let sums = &mut totals;
        let schema = schema.as_ref();
        let parser = scope.spawn(move || -> Result<Duration, WriteError> {
            // Time spent waiting for the encoder: which side is the
            // bottleneck, in the debug log.
            let mut blocked = Duration::ZERO;
            let mut send = |step: Step| {
                let t = std::time::Instant::now();
                // A closed channel is the encoder's failure: it reports it.
                let sent = tx.send(step).is_ok();
                blocked += t.elapsed();
                sent
            };
            let mut pending: Option<RecordBatch> = None;
            // The parser's columns of a full row group, once encoded: the
            // same bytes for every full group after it, when every full
            // group gets the same batches (uncut: the default 16,384 rows
            // divide a group), so the file stays the one `ArrowWriter`
            // writes.
            let mut copies: Option<Vec<(usize, ChunkCopy)>> = None;
            let may_copy = ROW_GROUP_ROWS.is_multiple_of(batch_rows);
            for group in 0.. {
                let (mut mine, theirs): (Vec<_>, Vec<_>) = factory
                    .create_column_writers(group)?
                    .into_iter()
                    .enumerate()
                    .partition(|(i, _)| on_parser[*i]);
                if !send(Step::Group(theirs)) {
                    break;
                }
                // With copies at hand, the group's constant columns are
                // encoded only if it turns out short (the last one).
                let mut held: Vec<Vec<arrow_array::ArrayRef>> = Vec::new();
                let mut rows = 0;
                while rows < ROW_GROUP_ROWS {
                    let batch = match pending.take() {
                        Some(b) => b,
                        None => match normalizer.next_batch()? {
                            Some(b) => {
                                add_totals(&b, sums);
                                b
                            }
                            None => break,
                        },
                    };
                    let batch = fill_up(batch, ROW_GROUP_ROWS - rows, &mut pending);
                    rows += batch.num_rows();
                    if copies.is_some() {
                        held.push(mine.iter().map(|(i, _)| batch.column(*i).clone()).collect());
                    } else {
                        feed(schema, &mut mine, &batch)?;
                    }
                    if !send(Step::Batch(batch)) {
                        return Ok(blocked);
                    }
                }
                if rows == 0 {
                    break; // no empty row group (a day with no rows has none)
                }
                let full = rows == ROW_GROUP_ROWS;
                let pieces = match &copies {
                    Some(copies) if full => Piece::copies(copies),
                    _ => {
                        for arrays in held {
                            for ((i, w), array) in mine.iter_mut().zip(&arrays) {
                                write_column(schema.field(*i), w, array)?;
                            }
                        }
                        let closed = close_all(mine)?;
                        if full && may_copy {
                            Piece::copies(copies.insert(copy_chunks(schema, closed)?))
                        } else {
                            Piece::chunks(closed)
                        }
                    }
                };
                // A group left short means the batches have ended.
                if !send(Step::Chunks(pieces)) || !full {
                    break;
                }
            }
            Ok(blocked)
        });
        let mut rows = 0u64;
        let mut waited = Duration::ZERO;
        let written = (|| -> Result<(), WriteError> {
            let mut theirs: Vec<(usize, ArrowColumnWriter)> = Vec::new();
            loop {
                let t = std::time::Instant::now();
                let Ok(step) = rx.recv() else {
                    return Ok(());
                };
                waited += t.elapsed();
                match step {
                    Step::Group(writers) => theirs = writers,
                    Step::Batch(batch) => {
                        rows += batch.num_rows() as u64;
                        feed(schema, &mut theirs, &batch)?;
                    }
                    Step::Chunks(parsers) => {
                        let mut pieces = Piece::chunks(close_all(std::mem::take(&mut theirs))?);
                        pieces.extend(parsers);
                        pieces.sort_by_key(|(i, _)| *i);
                        let mut row_group = file.next_row_group()?;
                        for (_, piece) in pieces {
                            piece.append_to(&mut row_group)?;
                        }
                        row_group.close()?;
                    }
                }
            }
        })();
        // The encoder stops reading on an error: the parser's next send
        // fails and it ends.
        drop(rx);
        let parsed = parser.join().expect("the CSV parser does not panic");
        if let Ok(blocked) = &parsed {
            tracing::debug!(
                rows,
                parser_waited_ms = blocked.as_millis() as u64,
                encoder_waited_ms = waited.as_millis() as u64,
                "Encoded the CSV (each side's wait for the other)."
            );
        }
        // A parse error is the cause when both failed (the encoder then
        // saw the batches end early).
        (rows, parsed.and(written))
    });
    parsed?;
    file.into_inner()?.into_encoded(
        rows,
        header,
        totals.into_iter().map(|(s, t)| (s, t as f64)).collect(),
        upload,
    )
}

/// The room file's columns the parser encodes itself (the rest are the
/// encoder's): chosen so the two threads are about equally busy on a large
/// day (see `docs/performance.md`).
const PARSER_COLUMNS: [&str; 2] = [schema::REQUEST_ID, schema::FETCHED_AT];

/// A column chunk of a row group, for the encoder to append: encoded for
/// this group, or a copy of one encoded before.
enum Piece {
    Chunk(parquet::arrow::arrow_writer::ArrowColumnChunk),
    Copy(ChunkCopy),
}

impl Piece {
    /// Closed chunks (see [`close_all`]), by column index.
    fn chunks(
        closed: Vec<(usize, parquet::arrow::arrow_writer::ArrowColumnChunk)>,
    ) -> Vec<(usize, Piece)> {
        closed
            .into_iter()
            .map(|(i, c)| (i, Piece::Chunk(c)))
            .collect()
    }

    /// Copies kept from an earlier row group, by column index.
    fn copies(copies: &[(usize, ChunkCopy)]) -> Vec<(usize, Piece)> {
        copies
            .iter()
            .map(|(i, c)| (*i, Piece::Copy(c.clone())))
            .collect()
    }

    /// Appends the chunk as the row group's next column.
    fn append_to<W: std::io::Write + Send>(
        self,
        row_group: &mut parquet::file::writer::SerializedRowGroupWriter<'_, W>,
    ) -> Result<(), parquet::errors::ParquetError> {
        match self {
            Piece::Chunk(chunk) => chunk.append_to_row_group(row_group),
            Piece::Copy(ChunkCopy { bytes, close }) => row_group.append_column(&bytes, close),
        }
    }
}

/// An encoded column chunk that can be appended again and again: its bytes
/// (dictionary page first) and what closing it gave, its offsets counted
/// from the chunk's start. A constant column of a full row group encodes to
/// the same bytes every time, so the parser encodes it once (arrow-rs
/// would intern its one value again for every row).
#[derive(Clone)]
struct ChunkCopy {
    bytes: bytes::Bytes,
    close: parquet::column::writer::ColumnCloseResult,
}

/// Turns closed chunks into [`ChunkCopy`]s: each is appended to a file of its
/// one column in memory, whose bytes and layout it then has.
fn copy_chunks(
    schema: &arrow_schema::Schema,
    chunks: Vec<(usize, parquet::arrow::arrow_writer::ArrowColumnChunk)>,
) -> Result<Vec<(usize, ChunkCopy)>, parquet::errors::ParquetError> {
    use parquet::errors::ParquetError;
    chunks
        .into_iter()
        .map(|(i, chunk)| {
            let close = chunk.close().clone();
            let one = std::sync::Arc::new(arrow_schema::Schema::new(vec![schema.field(i).clone()]));
            let (mut file, _) = ArrowWriter::try_new(Vec::new(), one, Some(writer_properties()))?
                .into_serialized_writer()?;
            let mut row_group = file.next_row_group()?;
            chunk.append_to_row_group(&mut row_group)?;
            let meta = row_group.close()?;
            let column = meta.column(0);
            let start = column
                .dictionary_page_offset()
                .unwrap_or_else(|| column.data_page_offset());
            let (from, to) = (start as usize, (start + column.compressed_size()) as usize);
            file.flush()?;
            let bytes = file.inner().get(from..to).ok_or_else(|| {
                ParquetError::General("a column chunk outside its file".to_owned())
            })?;
            // The chunk's offsets as `append_to_row_group` lays it out:
            // dictionary page first.
            let dictionary = (column.data_page_offset() - start) as usize;
            Ok((
                i,
                ChunkCopy {
                    bytes: bytes::Bytes::copy_from_slice(bytes),
                    close: close.update_dictionary_location(dictionary)?,
                },
            ))
        })
        .collect()
}

/// The first `room` rows of `batch` (what a row group still takes); the
/// rest, if any, in `pending` for the next.
fn fill_up(batch: RecordBatch, room: usize, pending: &mut Option<RecordBatch>) -> RecordBatch {
    if batch.num_rows() > room {
        *pending = Some(batch.slice(room, batch.num_rows() - room));
        batch.slice(0, room)
    } else {
        batch
    }
}

/// Closes each `(column index, writer)`: its column chunk, by index.
fn close_all(
    writers: Vec<(usize, parquet::arrow::arrow_writer::ArrowColumnWriter)>,
) -> Result<
    Vec<(usize, parquet::arrow::arrow_writer::ArrowColumnChunk)>,
    parquet::errors::ParquetError,
> {
    writers
        .into_iter()
        .map(|(i, w)| w.close().map(|c| (i, c)))
        .collect()
}

/// Feeds each of `batch`'s columns to its writer (`(column index,
/// writer)`).
fn feed(
    schema: &arrow_schema::Schema,
    writers: &mut [(usize, parquet::arrow::arrow_writer::ArrowColumnWriter)],
    batch: &RecordBatch,
) -> Result<(), parquet::errors::ParquetError> {
    for (i, w) in writers.iter_mut() {
        write_column(schema.field(*i), w, batch.column(*i))?;
    }
    Ok(())
}

/// Feeds one column's `array` to its `writer`.
fn write_column(
    field: &arrow_schema::Field,
    writer: &mut parquet::arrow::arrow_writer::ArrowColumnWriter,
    array: &arrow_array::ArrayRef,
) -> Result<(), parquet::errors::ParquetError> {
    for leaf in parquet::arrow::arrow_writer::compute_leaves(field, array)? {
        writer.write(&leaf)?;
    }
    Ok(())
}

/// Everything about the call that the manifest records.
#[derive(Debug, Clone)]
pub struct CallInfo {
    pub table: Table,
    pub app_id: u64,
    pub day: NaiveDate,
    pub request_id: String,
    pub fetched_at: DateTime<Utc>,
    pub start_time: String,
    pub end_time: String,
    pub utc_offset: String,
    /// The answer's bytes; `None` for `checks`, which has no call.
    pub body: Option<BodyInfo>,
    /// The raw object, relative to the lake's root.
    pub raw_object: Option<String>,
    /// Every call, when the partition was built from several.
    pub calls: Vec<crate::lake::manifest::CallRecord>,
    /// What a `checks` partition compared.
    pub check: Option<CheckInfo>,
    /// What a derived partition was computed from.
    pub derived: Option<DerivedInfo>,
}

/// Replaces the partition with `encoded` and its manifest (see the module
/// docs for the order).
pub async fn commit(
    dest: &Destination,
    call: &CallInfo,
    encoded: Encoded,
) -> Result<Manifest, WriteError> {
    let store = dest.store();
    let dir = dest.partition_dir(call.table, call.app_id, call.day);
    let part = dest.part_path(call.table, call.app_id, call.day);
    let manifest_path = dest.manifest_path(call.table, call.app_id, call.day);
    // Every number of the manifest reads back as written: no NaN or
    // infinity (which JSON writes as null) reaches the lake.
    let figures = encoded
        .totals
        .iter()
        .map(|(series, v)| (format!("the day's total of series '{series}'"), *v))
        .chain(
            call.check
                .iter()
                .map(|c| ("the check's tolerance".to_owned(), c.tolerance)),
        );
    for (what, value) in figures {
        if !value.is_finite() {
            return Err(WriteError::NotFinite { what, value });
        }
    }

    // Each step asks the run's lease first: a run that may have been
    // overtaken writes nothing more.
    let fenced = || dest.fences().check(call.app_id);
    fenced()?;
    match store.delete(&manifest_path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(store_err("deleting old manifest", &manifest_path)(e).into()),
    }

    let size = encoded.file.len();
    fenced()?;
    upload::put(dest, &part, encoded.file, encoded.upload).await?;

    let stale: Vec<Path> = store
        .list(Some(&dir))
        .map_ok(|m| m.location)
        .try_filter(|p| std::future::ready(*p != part && *p != manifest_path))
        .try_collect()
        .await
        .map_err(store_err("listing", &dir))?;
    for path in stale {
        match store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(store_err("deleting stale object", &path)(e).into()),
        }
    }

    let manifest = Manifest {
        format_version: manifest::FORMAT_VERSION,
        table: call.table.name().to_owned(),
        app_id: call.app_id,
        usage_date: call.day,
        rows: encoded.rows,
        request_id: call.request_id.clone(),
        fetched_at: call.fetched_at,
        start_time: call.start_time.clone(),
        end_time: call.end_time.clone(),
        utc_offset: call.utc_offset.clone(),
        file: FileInfo {
            name: PART_FILE.to_owned(),
            size,
            sha256: encoded.sha256,
        },
        body: call.body.clone(),
        raw_object: call.raw_object.clone(),
        calls: call.calls.clone(),
        columns_found: encoded.header.columns_found.clone(),
        missing_columns: encoded.header.missing.clone(),
        extra_columns: encoded.header.extra_columns(),
        totals: encoded.totals,
        check: call.check.clone(),
        derived: call.derived.clone(),
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let json = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
    fenced()?;
    store
        .put(&manifest_path, PutPayload::from(json))
        .await
        .map_err(store_err("writing", &manifest_path))?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::schema;
    use bytes::Bytes;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    /// Two threads, row groups cut inside batches: the file reads back as
    /// the batches given, in order, with ArrowWriter's row groups; no rows,
    /// a readable file with none.
    #[test]
    fn encode_stream_writes_what_it_is_given_on_two_threads() {
        use arrow_array::{Float64Array, StringArray};
        use std::sync::Arc;
        let schema = Arc::new(arrow_schema::Schema::new(vec![
            arrow_schema::Field::new("a", arrow_schema::DataType::Utf8, false),
            arrow_schema::Field::new("b", arrow_schema::DataType::Float64, true),
            arrow_schema::Field::new("c", arrow_schema::DataType::Utf8, true),
        ]));
        let batch = |start: usize, n: usize| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from_iter_values(
                        (start..start + n).map(|i| format!("r{i}")),
                    )),
                    Arc::new(Float64Array::from_iter(
                        (start..start + n).map(|i| (i % 7 != 0).then_some(i as f64 / 60.0)),
                    )),
                    Arc::new(StringArray::from_iter(
                        (start..start + n).map(|i| (i % 3 == 0).then_some("x")),
                    )),
                ],
            )
            .unwrap()
        };
        let props = writer_properties()
            .into_builder()
            .set_max_row_group_row_count(Some(1000))
            .build();
        for split in [0, 1, 2, 3, 9] {
            let sizes = [700usize, 700, 0, 1500, 99];
            let mut at = 0;
            let mut given = sizes.iter().map(|&n| {
                let b = batch(at, n);
                at += n;
                b
            });
            let e = encode_stream(
                schema.clone(),
                props.clone(),
                Output::spooled(&SpoolConfig::default()),
                split,
                &[],
                || Ok(given.next()),
            )
            .unwrap();
            assert_eq!(e.rows, 2999);
            let bytes = bytes::Bytes::from(e.file.to_vec().unwrap());
            assert_eq!(hex::encode(Sha256::digest(&bytes)), e.sha256);
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
            let groups: Vec<i64> = reader
                .metadata()
                .row_groups()
                .iter()
                .map(|g| g.num_rows())
                .collect();
            assert_eq!(groups, [1000, 1000, 999], "split {split}");
            let read: Vec<RecordBatch> = reader.build().unwrap().map(Result::unwrap).collect();
            let values = |batches: &[RecordBatch]| {
                use arrow_array::cast::AsArray;
                let mut out = Vec::new();
                for b in batches {
                    let (a, f, c) = (
                        b.column(0).as_string::<i32>(),
                        b.column(1)
                            .as_primitive::<arrow_array::types::Float64Type>(),
                        b.column(2).as_string::<i32>(),
                    );
                    for i in 0..b.num_rows() {
                        out.push((
                            a.value(i).to_owned(),
                            f.is_valid(i).then(|| f.value(i)),
                            c.is_valid(i).then(|| c.value(i).to_owned()),
                        ));
                    }
                }
                out
            };
            assert_eq!(values(&read), values(&[batch(0, 2999)]), "split {split}");
        }
        let e = encode_stream(
            schema.clone(),
            props,
            Output::spooled(&SpoolConfig::default()),
            1,
            &[],
            || Ok(None),
        )
        .unwrap();
        assert_eq!(e.rows, 0);
        let bytes = bytes::Bytes::from(e.file.to_vec().unwrap());
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
        assert_eq!(reader.schema().fields().len(), 3);
        assert_eq!(reader.metadata().num_row_groups(), 0);
    }

    /// Columns with one value in every row are left out of the batches,
    /// encoded once per row-group size and copied: read back, every row has
    /// them (strings, integers, timestamps, days, and nulls of each), in
    /// their place among the others, on either thread's side of `split`.
    #[test]
    fn constant_columns_are_encoded_once_and_read_back_in_every_row() {
        use arrow_array::{ArrayRef, Date32Array, StringArray, TimestampMicrosecondArray};
        use arrow_schema::{DataType, Field, TimeUnit};
        use std::sync::Arc;
        let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let schema = Arc::new(arrow_schema::Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("a", DataType::Utf8, false),
            Field::new("z", DataType::Int64, true),
            Field::new("n", DataType::Float64, true),
            Field::new("t", ts.clone(), false),
            Field::new("b", DataType::Int64, false),
            Field::new("d", DataType::Date32, false),
            Field::new("s", DataType::Utf8, true),
        ]));
        let constants: Vec<(usize, ArrayRef)> = vec![
            (0, Arc::new(StringArray::from(vec!["Tencent Cloud"]))),
            (2, arrow_array::new_null_array(&DataType::Int64, 1)),
            (3, arrow_array::new_null_array(&DataType::Float64, 1)),
            (
                4,
                Arc::new(
                    TimestampMicrosecondArray::from(vec![1_700_000_000_000_000])
                        .with_timezone("UTC"),
                ),
            ),
            (6, Arc::new(Date32Array::from(vec![20_000]))),
            (7, arrow_array::new_null_array(&DataType::Utf8, 1)),
        ];
        let projected = Arc::new(arrow_schema::Schema::new(vec![
            schema.field(1).clone(),
            schema.field(5).clone(),
        ]));
        let batch = |start: usize, n: usize| {
            RecordBatch::try_new(
                projected.clone(),
                vec![
                    Arc::new(StringArray::from_iter_values(
                        (start..start + n).map(|i| format!("r{i}")),
                    )),
                    Arc::new(Int64Array::from_iter_values(
                        (start..start + n).map(|i| i as i64),
                    )),
                ],
            )
            .unwrap()
        };
        let props = writer_properties_for(&["a"], &["k", "t"])
            .into_builder()
            .set_max_row_group_row_count(Some(1000))
            .build();
        for split in [0, 3, 6, 9] {
            let mut at = 0;
            let mut given = [700usize, 1800, 2].into_iter().map(|n| {
                let b = batch(at, n);
                at += n;
                b
            });
            let e = encode_stream(
                schema.clone(),
                props.clone(),
                Output::spooled(&SpoolConfig::default()),
                split,
                &constants,
                || Ok(given.next()),
            )
            .unwrap();
            assert_eq!(e.rows, 2502);
            let bytes = bytes::Bytes::from(e.file.to_vec().unwrap());
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
            assert_eq!(reader.schema().as_ref(), schema.as_ref());
            let groups: Vec<i64> = reader
                .metadata()
                .row_groups()
                .iter()
                .map(|g| g.num_rows())
                .collect();
            assert_eq!(groups, [1000, 1000, 502], "split {split}");
            let mut row = 0;
            for b in reader.build().unwrap().map(Result::unwrap) {
                use arrow_array::cast::AsArray;
                for i in 0..b.num_rows() {
                    assert_eq!(b.column(0).as_string::<i32>().value(i), "Tencent Cloud");
                    assert_eq!(b.column(1).as_string::<i32>().value(i), format!("r{row}"));
                    assert!(b.column(2).is_null(i) && b.column(3).is_null(i));
                    let t = b
                        .column(4)
                        .as_primitive::<arrow_array::types::TimestampMicrosecondType>();
                    assert_eq!(t.value(i), 1_700_000_000_000_000);
                    let v = b.column(5).as_primitive::<arrow_array::types::Int64Type>();
                    assert_eq!(v.value(i), row as i64);
                    let d = b.column(6).as_primitive::<arrow_array::types::Date32Type>();
                    assert_eq!(d.value(i), 20_000);
                    assert!(b.column(7).is_null(i));
                    row += 1;
                }
            }
            assert_eq!(row, 2502, "split {split}");
        }
    }

    fn enc(batch_rows: usize) -> Encoding {
        Encoding {
            batch_rows,
            ..Encoding::default()
        }
    }

    /// `data` encoded as the room table, `batch_rows` at a time, in
    /// memory or a spool file.
    fn encode_csv(data: impl Read + Send, batch_rows: usize) -> Result<Encoded, WriteError> {
        encode(
            data,
            SchemaContract::Evolve,
            "req",
            now(),
            &enc(batch_rows),
            Output::spooled(&SpoolConfig::default()),
        )
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_764_000_000, 123_456_000).unwrap()
    }

    #[test]
    fn encodes_a_readable_zstd_file_without_partition_columns() {
        let data = "RoomId,Audio,SD,hd,FullHD,2K,4K\nr1,1,2,3,4,5,6\n007,0,0,0,0,0,9\n";
        let e = encode_csv(data.as_bytes(), 1024).unwrap();
        assert_eq!(e.rows, 2);
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(Bytes::from(e.file.to_vec().unwrap()))
                .unwrap();
        let meta = reader.metadata().clone();
        // The level is not stored in the file, only the codec.
        assert!(matches!(
            meta.row_group(0).column(0).compression(),
            Compression::ZSTD(_)
        ));
        assert!(meta.row_group(0).column(1).statistics().is_some());
        let schema = reader.schema().clone();
        assert_eq!(schema, schema::file_schema(&e.header.extra_columns()));
        let batches: Vec<_> = reader.build().unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
    }

    /// The two threads' file is the one a single `ArrowWriter` writes for
    /// the same batches, byte for byte: over several row groups (the
    /// constant columns copied, with a batch size that divides a group),
    /// batches cut by a row group's end (no copies), and no rows.
    #[test]
    fn the_room_file_is_what_one_arrow_writer_writes() {
        // Three full row groups (the parser encodes its constant columns for
        // the first and copies them into the next two) and a short one.
        let rows = 3 * ROW_GROUP_ROWS + 1000;
        let mut data = String::from("RoomId,Audio,SD,hd,FullHD,2K,4K,8K\n");
        for i in 0..rows {
            data.push_str(&format!(
                "room_{i},{},{},{},0,,7,{}\n",
                i % 977,
                i % 13,
                i % 5,
                i % 3
            ));
        }
        for (data, batch_rows) in [
            (data.as_str(), 4096),
            (data.as_str(), 3000),
            ("RoomId,Audio\n", 10),
        ] {
            let e = encode_csv(data.as_bytes(), batch_rows).unwrap();
            let mut n = Normalizer::new(
                data.as_bytes(),
                SchemaContract::Evolve,
                "req",
                now().timestamp_micros(),
                batch_rows,
            )
            .unwrap();
            let mut w =
                ArrowWriter::try_new(Vec::new(), n.schema(), Some(writer_properties())).unwrap();
            while let Some(b) = n.next_batch().unwrap() {
                w.write(&b).unwrap();
            }
            let want = w.into_inner().unwrap();
            let got = e.file.to_vec().unwrap();
            assert_eq!(got.len(), want.len(), "{batch_rows}-row batches");
            assert!(got == want, "{batch_rows}-row batches: the bytes differ");
            assert_eq!(e.sha256, hex::encode(Sha256::digest(&want)));
        }
    }

    #[test]
    fn dictionaries_only_for_constant_columns_and_bounded_row_groups() {
        let rows = ROW_GROUP_ROWS + 10;
        let mut data = String::from("RoomId,Audio,SD,hd,FullHD,2K,4K\n");
        for i in 0..rows {
            data.push_str(&format!("room_{i},{},{},0,0,0,0\n", i % 977, i % 13));
        }
        let e = encode_csv(data.as_bytes(), 4096).unwrap();
        assert_eq!(e.rows, rows as u64);
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(Bytes::from(e.file.to_vec().unwrap()))
                .unwrap();
        let meta = reader.metadata();
        assert_eq!(meta.num_row_groups(), 2);
        assert_eq!(meta.row_group(0).num_rows(), ROW_GROUP_ROWS as i64);
        for rg in meta.row_groups() {
            for col in rg.columns() {
                let name = col.column_path().string();
                let constant = name == schema::REQUEST_ID || name == schema::FETCHED_AT;
                assert_eq!(
                    col.dictionary_page_offset().is_some(),
                    constant,
                    "dictionary on {name}"
                );
                // Statistics where readers prune by them, not on constants.
                assert_eq!(col.statistics().is_none(), constant, "statistics on {name}");
            }
        }
    }

    #[test]
    fn a_bad_escape_in_the_body_fails_naming_the_line() {
        // What the API client's reader of `Data` does at a bad escape:
        // the good text, then an error naming the field.
        struct Unescaped(Option<&'static [u8]>);
        impl std::io::Read for Unescaped {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                match self.0.take() {
                    Some(text) => {
                        buf[..text.len()].copy_from_slice(text);
                        Ok(text.len())
                    }
                    None => Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "Response.Data: unpaired surrogate in \\u escape",
                    )),
                }
            }
        }
        let body = std::io::BufReader::new(Unescaped(Some(b"RoomId,Audio\nr1,1\nr2,2")));
        let err = encode_csv(body, 1024).unwrap_err().to_string();
        assert_eq!(
            err,
            "CSV line 3: Response.Data: unpaired surrogate in \\u escape"
        );
    }

    #[test]
    fn zero_rows_still_make_a_file_with_the_full_schema() {
        let e = encode_csv(&b""[..], 1024).unwrap();
        assert_eq!(e.rows, 0);
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(Bytes::from(e.file.to_vec().unwrap()))
                .unwrap();
        assert_eq!(reader.schema().clone(), schema::file_schema(&[]));
    }

    #[tokio::test]
    async fn commit_replaces_and_removes_stale_objects() {
        let dir = tempfile::tempdir().unwrap();
        let dest = Destination::open(dir.path().to_str().unwrap()).unwrap();
        let day: NaiveDate = "2026-11-20".parse().unwrap();
        let call = CallInfo {
            table: Table::ROOM_USAGE,
            app_id: 7,
            day,
            request_id: "req".into(),
            fetched_at: now(),
            start_time: "2026-11-20 00:00".into(),
            end_time: "2026-11-20 23:59".into(),
            utc_offset: "+08:00".into(),
            body: Some(BodyInfo {
                bytes: 1,
                sha256: "00".into(),
            }),
            raw_object: None,
            calls: Vec::new(),
            check: None,
            derived: None,
        };
        let pdir = dir.path().join("room_usage/app_id=7/usage_date=2026-11-20");
        std::fs::create_dir_all(&pdir).unwrap();
        std::fs::write(pdir.join("part-00001.parquet"), b"stale").unwrap();
        let e = encode_csv(&b"RoomId,Audio\nr,1\n"[..], 8).unwrap();
        let m = commit(&dest, &call, e).await.unwrap();
        assert_eq!(m.rows, 1);
        let mut names: Vec<_> = std::fs::read_dir(&pdir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, vec!["_manifest.json", "part-00000.parquet"]);
        let bytes = std::fs::read(pdir.join("part-00000.parquet")).unwrap();
        assert_eq!(m.file.size, bytes.len() as u64);
        assert_eq!(m.file.sha256, hex::encode(Sha256::digest(&bytes)));
        let back = manifest::read(&dest, Table::ROOM_USAGE, 7, day)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back, m);
        assert_eq!(m.missing_columns.len(), 5);
        // Every known series has its total, in seconds.
        assert_eq!(m.totals.len(), 6);
        assert_eq!(m.totals["audio"], 1.0);
        assert_eq!(m.totals["video_4k"], 0.0);
    }
}
