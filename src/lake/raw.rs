//! The raw zone: every successful API answer, byte for byte,
//! zstd-compressed, at
//! `<root>/_raw/<table>/app_id=<id>/usage_date=<day>/<fetched_at>_<RequestId>.json.zst`.
//!
//! The API forgets a day after about three months; this is the lake's own
//! memory of it, from which `rebuild` remakes every table with no API call.
//! The job never overwrites or deletes a raw object (every fetch adds one,
//! with a name unique to the microsecond and the RequestId); retention is
//! the store's lifecycle rules. Names sort by time, so the newest answer of
//! a partition is the last name.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;

use crate::lake::store::{Destination, partition_of};
use crate::lake::upload;
use crate::lake::write::WriteError;
use crate::spool::{Digester, SpoolConfig, Spooled};
use crate::tables::Table;

/// The raw object's suffix.
pub const SUFFIX: &str = ".json.zst";
/// How `fetched_at` is written in a raw object's name.
const TIME_FORMAT: &str = "%Y%m%dT%H%M%S%.6fZ";

/// One kept answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawObject {
    pub path: Path,
    pub fetched_at: DateTime<Utc>,
    pub size: u64,
    /// Which of a partition's calls it answers, when the partition takes
    /// more than one (`recording_usage`: `single` or `multi`, the call's
    /// `MixType`, which the answer does not say); empty for one call.
    pub label: String,
}

impl RawObject {
    /// The object a manifest names (`relative` to the lake's root), when
    /// the raw zone holds it under `table`'s directory of that partition.
    pub async fn named(
        dest: &Destination,
        table: Table,
        app_id: u64,
        day: NaiveDate,
        relative: &str,
    ) -> Result<RawObject, RawError> {
        let unreadable = |reason: String| RawError::Unreadable {
            path: relative.to_owned(),
            reason,
        };
        let path = dest.resolve(relative);
        let name = match partition_of(&path) {
            Some((a, d, name))
                if a == app_id
                    && d == day
                    && path
                        .as_ref()
                        .starts_with(dest.raw_table_dir(table).as_ref()) =>
            {
                name
            }
            _ => {
                return Err(unreadable(format!(
                    "the manifest of {table} app {app_id} {day} names it, but it is not a raw \
                     answer of that partition"
                )));
            }
        };
        let fetched_at =
            fetched_at_of(&name).ok_or_else(|| unreadable("not a raw object's name".into()))?;
        let label = label_of(&name).to_owned();
        match dest.store().head(&path).await {
            Ok(meta) => Ok(RawObject {
                path,
                fetched_at,
                size: meta.size,
                label,
            }),
            Err(object_store::Error::NotFound { .. }) => Err(unreadable(format!(
                "the manifest of {table} app {app_id} {day} names it as the partition's answer, \
                 but the raw zone no longer holds it"
            ))),
            Err(e) => Err(unreadable(e.to_string())),
        }
    }

    /// Whether this object's name is the one the answer with `request_id`
    /// fetched at its time is kept under.
    pub fn is_named_for(&self, request_id: &str) -> bool {
        self.path.filename() == Some(object_name(self.fetched_at, &self.label, request_id).as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RawError {
    #[error("listing {path}: {source}")]
    List {
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("raw object {path}: {reason}")]
    Unreadable { path: String, reason: String },
}

/// The longest RequestId a raw object's name holds as it is.
const MAX_NAMED_ID: usize = 64;

/// `<fetched_at>_<RequestId>.json.zst`, or `<fetched_at>_<label>_<RequestId>.json.zst`
/// for one of a partition's several calls (`label` is the call's, e.g. its
/// `MixType`: letters and digits only). A RequestId is a UUID, kept as it
/// is; one longer than 64 characters, or with a character that is not safe
/// in a key, is named by its first 32 safe characters (others become `-`)
/// and 16 hex digits of its SHA-256, so the name stays within every
/// store's limits (255 bytes on local disk) and still tells RequestIds
/// apart. The name is for sorting and people: the RequestId itself is read
/// from the body, and the manifest and the rows keep it whole.
pub fn object_name(fetched_at: DateTime<Utc>, label: &str, request_id: &str) -> String {
    let safe_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
    let id = if request_id.len() <= MAX_NAMED_ID && request_id.chars().all(safe_char) {
        request_id.to_owned()
    } else {
        let prefix: String = request_id
            .chars()
            .take(32)
            .map(|c| if safe_char(c) { c } else { '-' })
            .collect();
        let digest = <sha2::Sha256 as sha2::Digest>::digest(request_id.as_bytes());
        format!("{prefix}-{}", &hex::encode(digest)[..16])
    };
    let label = if label.is_empty() {
        String::new()
    } else {
        format!("{label}_")
    };
    format!("{}_{label}{id}{SUFFIX}", fetched_at.format(TIME_FORMAT))
}

/// The label a raw object's name carries (empty when it has none). A
/// RequestId never holds `_` in a name, so a second `_` ends a label.
pub fn label_of(name: &str) -> &str {
    name.strip_suffix(SUFFIX)
        .and_then(|n| n.split_once('_'))
        .and_then(|(_, rest)| rest.split_once('_'))
        .map_or("", |(label, _)| label)
}

/// The `fetched_at` a raw object's name records.
pub fn fetched_at_of(name: &str) -> Option<DateTime<Utc>> {
    let (time, _) = name.strip_suffix(SUFFIX)?.split_once('_')?;
    NaiveDateTime::parse_from_str(time, TIME_FORMAT)
        .ok()
        .map(|t| t.and_utc())
}

/// Where the answer to the call `label` fetched at `fetched_at` with
/// `request_id` is kept.
pub fn path_for(
    dest: &Destination,
    table: Table,
    app_id: u64,
    day: NaiveDate,
    fetched_at: DateTime<Utc>,
    label: &str,
    request_id: &str,
) -> Path {
    dest.raw_dir(table, app_id, day)
        .join(object_name(fetched_at, label, request_id))
}

/// What the lake keeps of an answer's body, in one pass over it: its
/// SHA-256 (hex) and, given a `level`, its zstd-compressed copy, spooled.
/// Read and compressed a piece at a time, so neither copy is held whole.
/// CPU-bound: call it from a blocking thread for a large body.
pub fn digest(
    body: Arc<Spooled>,
    level: Option<i32>,
    spool: &SpoolConfig,
) -> std::io::Result<(String, Option<Spooled>)> {
    let len = body.len();
    let mut digester = Digester::new(level, spool, Some(len))?;
    digester.update_from(body, 0..len)?;
    digester.finish()
}

/// Stores one answer's compressed body at `path` (from [`path_for`]), for
/// app `app_id`, if the run's lease still allows it. Never replaces an
/// object: the name is new for every fetch.
pub async fn put(
    dest: &Destination,
    app_id: u64,
    path: &Path,
    compressed: Spooled,
) -> Result<(), WriteError> {
    dest.fences().check(app_id)?;
    // Not streamed while it is compressed: its name holds the RequestId,
    // which the body gives only at its end.
    Ok(upload::put(dest, path, compressed, None).await?)
}

/// Every raw object of `table` under `prefix` (the table's raw directory,
/// one app's, or one partition's), by partition, oldest first.
async fn list_under(
    dest: &Destination,
    prefix: &Path,
) -> Result<BTreeMap<(u64, NaiveDate), Vec<RawObject>>, RawError> {
    let metas: Vec<_> = dest
        .store()
        .list(Some(prefix))
        .try_collect()
        .await
        .map_err(|source| RawError::List {
            path: prefix.to_string(),
            source,
        })?;
    let mut out: BTreeMap<(u64, NaiveDate), Vec<RawObject>> = BTreeMap::new();
    for m in metas {
        let Some((app, day, name)) = partition_of(&m.location) else {
            continue;
        };
        let Some(fetched_at) = fetched_at_of(&name) else {
            continue; // not a raw object of ours
        };
        let label = label_of(&name).to_owned();
        out.entry((app, day)).or_default().push(RawObject {
            path: m.location,
            fetched_at,
            size: m.size,
            label,
        });
    }
    for objects in out.values_mut() {
        objects.sort_by(|a, b| a.path.as_ref().cmp(b.path.as_ref()));
    }
    Ok(out)
}

/// The raw objects of `table`, of every app or of `apps` only, by
/// partition, oldest first.
pub async fn list(
    dest: &Destination,
    table: Table,
    apps: Option<&[u64]>,
) -> Result<BTreeMap<(u64, NaiveDate), Vec<RawObject>>, RawError> {
    let dir = dest.raw_table_dir(table);
    match apps {
        None => list_under(dest, &dir).await,
        Some(apps) => {
            let mut all = BTreeMap::new();
            for app in apps {
                all.append(
                    &mut list_under(dest, &dir.clone().join(format!("app_id={app}"))).await?,
                );
            }
            Ok(all)
        }
    }
}

/// The raw objects of one partition, oldest first, listing that
/// partition only.
pub async fn list_partition(
    dest: &Destination,
    table: Table,
    app_id: u64,
    day: NaiveDate,
) -> Result<Vec<RawObject>, RawError> {
    let mut all = list_under(dest, &dest.raw_dir(table, app_id, day)).await?;
    Ok(all.remove(&(app_id, day)).unwrap_or_default())
}

/// The body kept in `object`, decompressed into a spool (a large day's
/// body is never held whole in memory), and its SHA-256 (hex), taken as it
/// is decompressed.
pub async fn read(
    dest: &Destination,
    object: &RawObject,
    spool: &SpoolConfig,
) -> Result<(Spooled, String), RawError> {
    let unreadable = |reason: String| RawError::Unreadable {
        path: dest.relative(&object.path).to_owned(),
        reason,
    };
    let compressed = match dest.store().get(&object.path).await {
        Ok(r) => r.bytes().await,
        Err(e) => Err(e),
    }
    .map_err(|e| unreadable(format!("cannot be read: {e}")))?;
    let spool = spool.clone();
    tokio::task::spawn_blocking(move || {
        // Decoding and spooling fail for different reasons: say which.
        use std::io::{Read, Write};
        let not_zstd = |e: std::io::Error| format!("is not valid zstd: {e}");
        let mut decoder = zstd::stream::read::Decoder::new(&compressed[..]).map_err(not_zstd)?;
        let mut out = spool.writer();
        let mut sha256 = <sha2::Sha256 as sha2::Digest>::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = decoder.read(&mut buf).map_err(not_zstd)?;
            if n == 0 {
                break;
            }
            sha2::Digest::update(&mut sha256, &buf[..n]);
            out.write_all(&buf[..n]).map_err(|e| e.to_string())?;
        }
        let body = out.finish().map_err(|e| e.to_string())?;
        Ok((body, hex::encode(sha2::Digest::finalize(sha256))))
    })
    .await
    .expect("zstd decoding does not panic")
    .map_err(unreadable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_time_and_give_back_the_time() {
        let t = DateTime::from_timestamp_micros(1_763_600_000_123_456).unwrap();
        let name = object_name(t, "", "8c5f0e2a-1b2c-4d3e-9f00-aabbccddeeff");
        assert_eq!(
            name,
            "20251120T005320.123456Z_8c5f0e2a-1b2c-4d3e-9f00-aabbccddeeff.json.zst"
        );
        assert_eq!(fetched_at_of(&name), Some(t));
        let later = object_name(t + chrono::Duration::microseconds(1), "", "0");
        assert!(later > name);
        // Odd: a readable prefix and a digest, so "a/b" and "a-b" differ.
        let odd = object_name(t, "", "a/b c");
        let odd = odd.split_once('_').unwrap().1;
        assert!(
            odd.starts_with("a-b-c-") && odd.len() == "a-b-c-".len() + 16 + 9,
            "{odd}"
        );
        assert_ne!(object_name(t, "", "a/b c"), object_name(t, "", "a-b-c"));
        // Long: within any store's name limit, and still apart.
        let long = "R".repeat(300);
        let name = object_name(t, "", &long);
        assert!(name.len() < 100, "{name}");
        assert_eq!(fetched_at_of(&name), Some(t));
        assert_ne!(name, object_name(t, "", &format!("{long}x")));
        assert_eq!(fetched_at_of("x.json.zst"), None);
        // A labelled call's answer: the label between time and RequestId.
        let single = object_name(t, "single", "8c5f0e2a-1b2c");
        assert_eq!(
            single,
            "20251120T005320.123456Z_single_8c5f0e2a-1b2c.json.zst"
        );
        assert_eq!(fetched_at_of(&single), Some(t));
        assert_eq!(label_of(&single), "single");
        assert_eq!(label_of(&name), "");
        assert_eq!(label_of(&object_name(t, "", "a/b c")), "");
    }

    #[tokio::test]
    async fn put_list_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let dest = Destination::open(dir.path().to_str().unwrap()).unwrap();
        let day: NaiveDate = "2026-11-20".parse().unwrap();
        let body = br#"{"Response":{"Data":"RoomId\n","RequestId":"r"}}"#;
        let spool = SpoolConfig {
            dir: dir.path().to_owned(),
            memory_limit: 16,
            in_lake: false,
        };
        let (sha, compressed) =
            digest(Arc::new(Spooled::Memory(body.to_vec())), Some(3), &spool).unwrap();
        assert_eq!(
            sha,
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body))
        );
        let compressed = compressed.expect("asked for");
        assert!(compressed.as_memory().is_none(), "spooled to a file");
        let compressed = compressed.to_vec().unwrap();
        let t1 = DateTime::from_timestamp_micros(1_763_600_000_000_001).unwrap();
        let t2 = DateTime::from_timestamp_micros(1_763_600_000_000_002).unwrap();
        for t in [t2, t1] {
            let path = path_for(&dest, Table::ROOM_USAGE, 7, day, t, "", "r");
            put(&dest, 1, &path, Spooled::Memory(compressed.clone()))
                .await
                .unwrap();
        }
        std::fs::write(
            dir.path()
                .join("_raw/room_usage/app_id=7/usage_date=2026-11-20/junk"),
            b"",
        )
        .unwrap();
        let all = list(&dest, Table::ROOM_USAGE, None).await.unwrap();
        let objects = &all[&(7, day)];
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[1].fetched_at, t2, "newest last");
        let (back, sha) = read(&dest, &objects[1], &spool).await.unwrap();
        assert_eq!(
            sha,
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body))
        );
        assert!(back.as_memory().is_none(), "spooled to a file");
        assert_eq!(back.to_vec().unwrap(), body);
        assert!(
            list(&dest, Table::ROOM_USAGE, Some(&[8]))
                .await
                .unwrap()
                .is_empty()
        );
    }
}
