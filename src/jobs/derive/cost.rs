//! `cost` as a derived table: the day's meter files (the lake's, each a
//! few thousand rows) summed per key and priced first, then its
//! `room_usage` file read back a row group at a time, priced
//! ([`crate::tables::cost`]), and encoded on a blocking thread while the
//! next batch is read, so a 10-million-room day takes the memory of a few
//! batches. No API call, no raw answer of its own.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use chrono::FixedOffset;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::arrow::async_reader::ParquetRecordBatchStream;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

use crate::jobs::derive::{Context, Derived, Inputs, Settings};
use crate::jobs::partition::{self, Written};
use crate::jobs::summary::{Partition, Summary};
use crate::lake::manifest::DerivedInfo;
use crate::lake::upload::Output;
use crate::lake::write::{self, CallInfo};
use crate::tables::Table;
use crate::tables::prices::PriceList;
use crate::tables::{cost, meter};

/// Rooms per batch read back from `room_usage`: a batch of cost rows (up
/// to six per room, 21 per-row columns) stays a few MiB.
const BATCH_ROWS: usize = 4 * 1024;

pub struct Cost {
    prices: Arc<PriceList>,
    /// App → its account's own billing account.
    billing_accounts: BTreeMap<u64, String>,
    /// Partition → the billing account its manifest records.
    kept_billing: BTreeMap<Partition, String>,
    offset: FixedOffset,
}

/// `cost` is filled when the run has a price list.
pub fn register(settings: &Settings) -> Option<Box<dyn Derived>> {
    Some(Box::new(Cost {
        prices: settings.prices.clone()?,
        billing_accounts: settings.billing_accounts.clone(),
        kept_billing: settings.kept_billing.clone(),
        offset: settings.offset,
    }))
}

impl Cost {
    /// The billing account of partition `p`: its account's (`--accounts`),
    /// else the one the partition was computed for before (its manifest's),
    /// else the price list's (one of them is there: checked with the
    /// flags).
    fn billing_account(&self, p: Partition) -> Option<&str> {
        self.billing_accounts
            .get(&p.app_id)
            .or(self.kept_billing.get(&p))
            .or(self.prices.billing_account_id.as_ref())
            .map(String::as_str)
    }
}

impl Derived for Cost {
    fn table(&self) -> Table {
        Table::COST
    }

    fn settings(&self, p: Partition) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("prices_sha256".to_owned(), self.prices.sha256.clone()),
            (
                "billing_account_id".to_owned(),
                self.billing_account(p).unwrap_or_default().to_owned(),
            ),
            ("utc_offset".to_owned(), self.offset.to_string()),
            // The rows' format: a lake written by an earlier release
            // (FOCUS 1.0) is recomputed, with no call, when its days come
            // round again (or at once: `rebuild --tables cost`).
            ("focus_version".to_owned(), cost::FOCUS_VERSION.to_owned()),
        ])
    }

    fn compute<'a>(
        &'a self,
        cx: &'a Context<'a>,
        p: Partition,
        inputs: &'a Inputs,
        info: DerivedInfo,
        _summary: &'a mut Summary,
    ) -> BoxFuture<'a, Result<Option<Written>, String>> {
        async move {
            let started = std::time::Instant::now();
            let room = &inputs[&Table::ROOM_USAGE];
            let billing_account_id = self.billing_account(p).ok_or_else(|| {
                format!(
                    "no billing_account_id for app {} in {} or its account",
                    p.app_id, self.prices.path
                )
            })?;
            let day = cost::Day::new(
                p.app_id,
                p.usage_date,
                self.offset,
                &self.prices,
                billing_account_id.to_owned(),
                room.request_id.clone(),
            );
            // The meters first: small (a row per bucket and key), and a
            // key without a price fails the day before any room is read.
            let mut totals = BTreeMap::new();
            let mut ready = std::collections::VecDeque::new();
            for meter in meter::METERS {
                let Some(m) = inputs.get(&meter.table) else {
                    continue;
                };
                let batches: Vec<RecordBatch> = open(cx, meter.table, p, m.file.size)
                    .await?
                    .try_collect()
                    .await
                    .map_err(|e| read_error(cx, meter.table, p, e))?;
                let usage = cost::meter_usage(&batches)
                    .map_err(|e| format!("{} {}: {e}", meter.table, p.usage_date))?;
                let rows = day
                    .meter_rows(meter, &usage, &mut totals)
                    .map_err(|e| e.to_string())?;
                if rows.num_rows() > 0 {
                    ready.push_back(rows);
                }
            }
            let mut batches = open(cx, Table::ROOM_USAGE, p, room.file.size).await?;
            // The reader (async, here) and the pricer and encoder (a
            // blocking thread) overlap; two batches in flight at most.
            let (tx, mut rx) = tokio::sync::mpsc::channel(1);
            let out = Output::for_path(
                cx.dest,
                &cx.dest.part_path(Table::COST, p.app_id, p.usage_date),
                &cx.encoding.outputs,
            );
            let constants = day.constants();
            let encoder = tokio::task::spawn_blocking(move || {
                let encoded = write::encode_stream(
                    cost::file_schema(),
                    write::writer_properties_for(&cost::VARYING, &cost::WITH_STATISTICS),
                    out,
                    cost::SPLIT,
                    &constants,
                    || match ready.pop_front() {
                        Some(priced) => Ok(Some(priced)),
                        None => match rx.blocking_recv() {
                            None => Ok(None),
                            Some(Err(e)) => Err(e),
                            Some(Ok(rooms)) => day
                                .rows(&rooms, &mut totals)
                                .map(Some)
                                .map_err(|e| e.to_string()),
                        },
                    },
                );
                encoded.map(|mut e| {
                    e.totals = totals;
                    e
                })
            });
            while let Some(batch) = batches.next().await {
                let failed = batch.is_err();
                let batch = batch.map_err(|e| read_error(cx, Table::ROOM_USAGE, p, e));
                if tx.send(batch).await.is_err() || failed {
                    break; // the encoder stopped: its error is reported
                }
            }
            drop(tx);
            let encoded = encoder
                .await
                .expect("the cost encoder does not panic")
                .map_err(|e| format!("{}: {e}", p.usage_date))?;
            let call = CallInfo {
                table: Table::COST,
                app_id: p.app_id,
                day: p.usage_date,
                request_id: String::new(),
                fetched_at: crate::tencent::api::now_micros(),
                start_time: String::new(),
                end_time: String::new(),
                utc_offset: cx.utc_offset.clone(),
                body: None,
                raw_object: None,
                calls: Vec::new(),
                check: None,
                derived: Some(info),
            };
            partition::commit(cx.dest, &call, encoded, started, 0)
                .await
                .map(Some)
        }
        .boxed()
    }
}

/// `table`'s partition `p` (its file `size` bytes, as its manifest
/// says), read back a batch at a time.
async fn open(
    cx: &Context<'_>,
    table: Table,
    p: Partition,
    size: u64,
) -> Result<ParquetRecordBatchStream<StoreReader>, String> {
    let reader = StoreReader {
        store: cx.dest.store().clone(),
        path: cx.dest.part_path(table, p.app_id, p.usage_date),
        size,
    };
    ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| read_error(cx, table, p, e))?
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| read_error(cx, table, p, e))
}

/// What a read of `table`'s partition `p` that failed says.
fn read_error(cx: &Context<'_>, table: Table, p: Partition, e: ParquetError) -> String {
    let path = cx.dest.part_path(table, p.app_id, p.usage_date);
    format!("reading {}: {e}", cx.dest.relative(&path))
}

/// A Parquet file of the lake, read by range (a row group at a time), its
/// size known from its manifest.
struct StoreReader {
    store: Arc<dyn ObjectStore>,
    path: object_store::path::Path,
    size: u64,
}

fn external(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for StoreReader {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> BoxFuture<'_, parquet::errors::Result<bytes::Bytes>> {
        async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(external)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<bytes::Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(external)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}
