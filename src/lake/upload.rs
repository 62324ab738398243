//! Putting a file the job built into the store: on local disk a link (or
//! copy) under a name no reader takes for data, then one rename; on S3 one
//! PUT for a file of at most one part, else a multipart upload, which no
//! reader sees until it is completed.
//!
//! A big file for S3 goes up while it is being encoded ([`Streamed`]): a
//! follower reads each whole part from the spool as soon as the encoder
//! has written past it, so when the encoder is done only the last part is
//! left to send. The encoder never waits on the network (the spool takes
//! what the uploads have not); the upload becomes visible only when the
//! commit completes it, after the old manifest is gone, and is aborted when
//! the partition is not committed.

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::sync::oneshot;

use crate::lake::store::Destination;
use crate::spool::{Followed, SpoolConfig, SpoolWriter, Spooled, Tail, read_exact_at};

/// How a file being written on local disk is named until it is renamed
/// into place: `_part-00000.parquet.inflight`, which no reader takes for
/// data.
pub const INFLIGHT_PREFIX: &str = "_";
pub const INFLIGHT_SUFFIX: &str = ".inflight";

/// `dir/_name.inflight` for `dir/name`.
pub fn inflight_name(path: &Path) -> Path {
    let mut parts: Vec<String> = path.parts().map(|p| p.as_ref().to_owned()).collect();
    let name = parts.pop().unwrap_or_default();
    parts.push(format!("{INFLIGHT_PREFIX}{name}{INFLIGHT_SUFFIX}"));
    Path::from_iter(parts)
}

/// Size of one uploaded part (S3 wants at least 5 MiB but for the last;
/// R2 wants them all the same size but for the last, which they are).
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Files larger than this are uploaded in parts: more than one part.
pub const MULTIPART_THRESHOLD: usize = PART_SIZE;
/// Parts being uploaded at once: with [`PART_SIZE`], what a multipart
/// upload holds in memory.
const PARTS_IN_FLIGHT: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{action} {path}: {source}")]
    Store {
        action: &'static str,
        path: String,
        #[source]
        source: object_store::Error,
    },
}

/// `action path: the store's error`, for `map_err`.
pub fn store_err(
    action: &'static str,
    path: &Path,
) -> impl FnOnce(object_store::Error) -> UploadError {
    let path = path.to_string();
    move |source| UploadError::Store {
        action,
        path,
        source,
    }
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> UploadError {
    let path = path.to_string();
    move |source| UploadError::Io {
        action,
        path,
        source,
    }
}

/// Where a partition's file is built: a spool and, for a remote lake, the
/// upload that follows it ([`Streamed`]).
#[derive(Debug)]
pub struct Output {
    pub writer: SpoolWriter,
    pub upload: Option<Streamed>,
}

impl Output {
    /// A file built in `spool`, with no upload while it is built: a local
    /// lake's (linked into place at the commit), or a test's.
    pub fn spooled(spool: &SpoolConfig) -> Self {
        Self {
            writer: spool.writer(),
            upload: None,
        }
    }

    /// The file to be kept at `path` in `dest`, built in `spool`; on a
    /// remote lake it goes up in parts as it is written. Call it within a
    /// multi-thread runtime (see [`Streamed::follow`]).
    pub fn for_path(dest: &Destination, path: &Path, spool: &SpoolConfig) -> Self {
        let mut writer = spool.writer();
        let upload = match dest.local_path(path) {
            Some(_) => None,
            None => Some(Streamed::follow(dest.store(), path, &mut writer, PART_SIZE)),
        };
        Self { writer, upload }
    }
}

/// A multipart upload fed from a spool while the spool is written.
///
/// A part goes up once the writer has written past its end, so the upload
/// begins only for a file of more than one part, and the last part always
/// waits for the end. [`Streamed::complete`] sends it and completes the
/// upload; dropping a `Streamed` instead aborts the upload (no part is
/// left behind), as does a writer dropped unfinished.
#[derive(Debug)]
pub struct Streamed {
    path: Path,
    go: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<Sent, UploadError>>,
}

/// What the follower did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// The file stayed within one part (or in memory): nothing went up.
    Nothing,
    /// Uploaded and completed: the object is in place.
    Completed,
    /// Told not to complete (or the writer gave up): aborted.
    Aborted,
}

impl Streamed {
    /// Starts following `writer`, to upload it to `path` in `part_size`
    /// parts. Call it within a multi-thread runtime (the follower drives
    /// the uploads from a blocking thread).
    pub fn follow(
        store: &Arc<dyn ObjectStore>,
        path: &Path,
        writer: &mut SpoolWriter,
        part_size: usize,
    ) -> Self {
        let tail = writer.follow();
        let (go, decision) = oneshot::channel();
        let (store, target) = (store.clone(), path.clone());
        let runtime = tokio::runtime::Handle::current();
        let task = tokio::task::spawn_blocking(move || {
            follow_and_upload(&runtime, &tail, &store, &target, part_size, decision)
        });
        Self {
            path: path.clone(),
            go,
            task,
        }
    }

    /// Sends what is left and completes the upload, once the writer has
    /// finished: `Ok(true)` when the object is then in place, `Ok(false)`
    /// when nothing went up (the file fitted in one part: the caller puts
    /// it whole).
    pub async fn complete(self) -> Result<bool, UploadError> {
        // Refused only when the follower has already ended (nothing sent,
        // or an error it returns below).
        let _ = self.go.send(());
        let path = self.path;
        match self.task.await {
            Ok(Ok(sent)) => Ok(sent == Sent::Completed),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(UploadError::Io {
                action: "uploading",
                path: path.to_string(),
                source: std::io::Error::other(format!("the upload's thread ended: {e}")),
            }),
        }
    }
}

/// A multipart upload's parts, sent in order; both the follower and
/// [`put_file`] send theirs through it.
struct Parts<'a> {
    store: &'a Arc<dyn ObjectStore>,
    path: &'a Path,
    part_size: usize,
    /// Begun with the first part.
    upload: Option<WriteMultipart>,
    /// Bytes sent so far.
    offset: u64,
}

impl<'a> Parts<'a> {
    fn new(store: &'a Arc<dyn ObjectStore>, path: &'a Path, part_size: usize) -> Self {
        Self {
            store,
            path,
            part_size,
            upload: None,
            offset: 0,
        }
    }

    /// Sends the bytes from what was sent up to `upto`, in `part_size`
    /// parts (the last may be short), each read with `read(offset, len)`
    /// once a part's upload may begin ([`PARTS_IN_FLIGHT`] at once).
    async fn send(
        &mut self,
        read: impl Fn(u64, usize) -> std::io::Result<Vec<u8>>,
        upto: u64,
    ) -> Result<(), UploadError> {
        let path = self.path;
        while self.offset < upto {
            let n = (self.part_size as u64).min(upto - self.offset) as usize;
            let writer = match &mut self.upload {
                Some(w) => w,
                None => {
                    let started = self
                        .store
                        .put_multipart(path)
                        .await
                        .map_err(store_err("starting multipart upload of", path))?;
                    self.upload
                        .insert(WriteMultipart::new_with_chunk_size(started, self.part_size))
                }
            };
            writer
                .wait_for_capacity(PARTS_IN_FLIGHT)
                .await
                .map_err(store_err("uploading part of", path))?;
            let bytes = read(self.offset, n).map_err(io_err("reading spooled", path))?;
            writer.put(Bytes::from(bytes));
            self.offset += n as u64;
        }
        Ok(())
    }
}

/// Aborts `upload`: nothing of it may stay (S3 then frees the parts).
async fn abort(upload: WriteMultipart, path: &Path) {
    if let Err(e) = upload.abort().await {
        tracing::warn!(%path, error = %e, "Could not abort the multipart upload; the bucket's lifecycle rule removes its parts.");
    }
}

/// The follower's thread: whole parts up as the spool grows, then the last
/// one, then the commit's decision (complete, or abort when the `Streamed`
/// was dropped).
fn follow_and_upload(
    runtime: &tokio::runtime::Handle,
    tail: &Tail,
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    part_size: usize,
    decision: oneshot::Receiver<()>,
) -> Result<Sent, UploadError> {
    let part = part_size as u64;
    let mut parts = Parts::new(store, path, part_size);
    let sent = loop {
        let at = parts.offset;
        let started = parts.upload.is_some();
        let (file, upto, done) = match tail.wait_past(at + part) {
            // Every whole part the writer has written past.
            Followed::Grew { file, written } => {
                (file, at + (written - at - 1) / part * part, false)
            }
            Followed::Done {
                file: Some(file),
                len,
            } if started || len > part => (file, len, true),
            Followed::Done { .. } => break Ok(Sent::Nothing),
            Followed::Abandoned => break Ok(Sent::Aborted),
        };
        let read = |offset, n| read_exact_at(&file, offset, n);
        if let Err(e) = runtime.block_on(parts.send(read, upto)) {
            break Err(e);
        }
        if !started && parts.upload.is_some() {
            tracing::debug!(%path, "Uploading in parts while the file is written.");
        }
        if done {
            break Ok(Sent::Completed);
        }
    };
    let Some(upload) = parts.upload else {
        return sent.map(|_| Sent::Nothing);
    };
    if matches!(sent, Ok(Sent::Completed)) && runtime.block_on(decision).is_ok() {
        // `finish` waits for the parts in flight (a part's failure shows
        // here) and aborts the upload itself when it fails, so no part is
        // left.
        runtime
            .block_on(upload.finish())
            .map_err(store_err("uploading", path))?;
        return Ok(Sent::Completed);
    }
    runtime.block_on(abort(upload, path));
    sent.map(|_| Sent::Aborted)
}

/// Puts `file` at `path`: the `upload` that followed it when there is one
/// and it went up, else [`put_file`] with this module's part size.
pub async fn put(
    dest: &Destination,
    path: &Path,
    file: Spooled,
    upload: Option<Streamed>,
) -> Result<(), UploadError> {
    if let Some(upload) = upload
        && upload.complete().await?
    {
        return Ok(());
    }
    put_file(dest, path, file, MULTIPART_THRESHOLD, PART_SIZE).await
}

/// Uploads `file` to `path`: one atomic PUT up to `threshold`, a multipart
/// upload of `part_size` parts above it (visible only once completed, and
/// aborted on failure so no part is left behind), read from the spool a
/// part at a time.
pub async fn put_file(
    dest: &Destination,
    path: &Path,
    file: Spooled,
    threshold: usize,
    part_size: usize,
) -> Result<(), UploadError> {
    let store = dest.store();
    let staging = inflight_name(path);
    if let Some(local) = dest.local_path(&staging) {
        // On local disk object_store writes `<name>#<n>` and renames it;
        // a crash in between would leave that name, which Spark reads as
        // data. So write a name a reader skips (leading `_`, not ending in
        // `.parquet`), then rename it: one atomic rename(2).
        match file {
            Spooled::Memory(bytes) => {
                store
                    .put(&staging, PutPayload::from(bytes))
                    .await
                    .map_err(store_err("writing", &staging))?;
            }
            // A spooled file is linked into place when it was built on the
            // lake's file system (else copied by the kernel,
            // copy_file_range), and made durable before the rename.
            file @ Spooled::File { .. } => {
                let target = local.clone();
                tokio::task::spawn_blocking(move || {
                    if let Some(dir) = target.parent() {
                        std::fs::create_dir_all(dir)?;
                    }
                    let copied = file.persist(&target);
                    if copied.is_err() {
                        // Nothing half-written stays behind.
                        let _ = std::fs::remove_file(&target);
                    }
                    copied
                })
                .await
                .expect("copying a file does not panic")
                .map_err(io_err("writing", &staging))?;
            }
        };
        if let Err(e) = store.rename(&staging, path).await {
            let _ = std::fs::remove_file(&local);
            return Err(store_err("renaming into place", path)(e));
        }
        return Ok(());
    }
    let len = file.len();
    if len as usize <= threshold {
        let payload = match file {
            Spooled::Memory(bytes) => PutPayload::from(bytes),
            file @ Spooled::File { .. } => PutPayload::from(
                file.read_range(0, len as usize)
                    .map_err(io_err("reading spooled", path))?,
            ),
        };
        store
            .put(path, payload)
            .await
            .map_err(store_err("writing", path))?;
        return Ok(());
    }
    let mut parts = Parts::new(store, path, part_size);
    let sent = parts
        .send(|offset, n| file.read_range(offset, n), len)
        .await;
    // None only when the upload could not begin: `sent` is that error.
    let Some(upload) = parts.upload else {
        return sent;
    };
    match sent {
        // `finish` aborts the upload itself when it fails.
        Ok(()) => upload
            .finish()
            .await
            .map(drop)
            .map_err(store_err("completing multipart upload of", path)),
        Err(e) => {
            abort(upload, path).await;
            Err(e)
        }
    }
}
