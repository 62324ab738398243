//! Spooling: bytes that may be large (an API answer, a Parquet file, a
//! compressed raw answer) are kept in memory up to a limit and in an
//! unnamed temporary file beyond it, so the job's memory does not grow with
//! the size of a day.
//!
//! A spool file is created with `O_TMPFILE` where the kernel has it (else
//! created and unlinked at once): it has no name, so nothing is left behind
//! when the process is killed, and its disk space returns when it is
//! dropped. The directory is `--spool-dir` (`TMPDIR` by default), except
//! for the files a local lake keeps, which are built in the lake's own
//! directory and linked into place ([`SpoolConfig::in_lake`]).

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

/// Bytes kept in memory before a spool moves to a file: the most a spool
/// holds in memory at once.
pub const DEFAULT_MEMORY_LIMIT: usize = 8 * 1024 * 1024;

/// Bytes read from a spool file at a time.
const READ_BUFFER: usize = 256 * 1024;

/// Where spools go and how much each may hold in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    pub memory_limit: usize,
    /// `dir` is the lake's own directory (see [`SpoolConfig::in_lake`]), not
    /// `--spool-dir`: errors name it so.
    pub in_lake: bool,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            dir: std::env::temp_dir(),
            memory_limit: DEFAULT_MEMORY_LIMIT,
            in_lake: false,
        }
    }
}

impl SpoolConfig {
    /// Spools for the files a local lake keeps (Parquet files, compressed
    /// raw answers), built as unnamed files in the lake's directory `dir`
    /// (created if need be): committing one is then a link, not a copy
    /// (see [`Spooled::persist`]).
    ///
    /// Nothing is created here: the directory is made by the first file
    /// spilled into it, so a run refused before its first write (a usage
    /// or credentials error) leaves no directory behind.
    pub fn in_lake(&self, dir: &Path) -> SpoolConfig {
        SpoolConfig {
            dir: dir.to_owned(),
            memory_limit: self.memory_limit,
            in_lake: true,
        }
    }

    /// Fails (naming the directory) when no temporary file can be created
    /// in it: checked before any API call, so a bad `--spool-dir` costs no
    /// call.
    pub fn check(&self) -> io::Result<()> {
        tempfile::tempfile_in(&self.dir).map(drop)
    }

    /// What failed, naming the directory and where it comes from.
    fn describe(&self, doing: &str, e: &io::Error) -> String {
        match self.in_lake {
            false => format!(
                "{doing} a spool file in {} (--spool-dir): {e}",
                self.dir.display()
            ),
            true => format!(
                "{doing} an unnamed file in the lake's directory {}: {e}",
                self.dir.display()
            ),
        }
    }

    /// A new, empty spool.
    pub fn writer(&self) -> SpoolWriter {
        SpoolWriter {
            config: self.clone(),
            memory: Vec::new(),
            file: None,
            len: 0,
            tail: None,
        }
    }
}

/// Collects bytes: in memory up to the limit, then in a temporary file.
#[derive(Debug)]
pub struct SpoolWriter {
    config: SpoolConfig,
    memory: Vec<u8>,
    file: Option<io::BufWriter<File>>,
    len: u64,
    /// Another thread reading the bytes as they are written, if any.
    tail: Option<Arc<Tail>>,
}

impl SpoolWriter {
    /// Lets another thread read the bytes while they are written: see
    /// [`Tail`].
    pub fn follow(&mut self) -> Arc<Tail> {
        let tail = Arc::new(Tail::default());
        self.tail = Some(tail.clone());
        tail
    }

    /// Tells the follower how far the file holds the bytes (what the
    /// buffer holds is not in it yet).
    fn publish(&self) {
        if let (Some(tail), Some(file)) = (&self.tail, &self.file) {
            tail.grew(self.len - file.buffer().len() as u64);
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the bytes have moved to a file.
    pub fn is_spilled(&self) -> bool {
        self.file.is_some()
    }

    /// `e`, naming the spool directory and the flag that sets it.
    fn named(&self, doing: &str, e: io::Error) -> io::Error {
        SpoolError::io(e.kind(), self.config.describe(doing, &e))
    }

    fn spill(&mut self) -> io::Result<()> {
        if self.config.in_lake && !self.config.dir.exists() {
            std::fs::create_dir_all(&self.config.dir).map_err(|e| self.named("creating", e))?;
        }
        let file =
            tempfile::tempfile_in(&self.config.dir).map_err(|e| self.named("creating", e))?;
        tracing::debug!(
            dir = %self.config.dir.display(),
            bytes = self.memory.len(),
            "Spooling to an unnamed temporary file."
        );
        if let Some(tail) = &self.tail {
            tail.spilled(file.try_clone().map_err(|e| self.named("opening", e))?);
        }
        let mut file = io::BufWriter::with_capacity(READ_BUFFER, file);
        file.write_all(&self.memory)
            .map_err(|e| self.named("writing", e))?;
        self.memory = Vec::new();
        self.file = Some(file);
        Ok(())
    }

    /// The bytes written, ready to read.
    pub fn finish(mut self) -> io::Result<Spooled> {
        let tail = self.tail.take();
        let finished = self.finish_inner();
        if let Some(tail) = tail {
            match &finished {
                Ok(spooled) => tail.end(TailEnd::Done(spooled.len())),
                Err(_) => tail.end(TailEnd::Abandoned),
            }
        }
        finished
    }

    fn finish_inner(&mut self) -> io::Result<Spooled> {
        match self.file.take() {
            None => Ok(Spooled::Memory(std::mem::take(&mut self.memory))),
            Some(file) => {
                let config = &self.config;
                let file = file.into_inner().map_err(|e| {
                    let e = e.into_error();
                    SpoolError::io(e.kind(), config.describe("writing", &e))
                })?;
                Ok(Spooled::File {
                    file,
                    len: self.len,
                })
            }
        }
    }
}

impl Drop for SpoolWriter {
    /// A spool dropped unfinished (the body broke off): its follower stops.
    fn drop(&mut self) {
        if let Some(tail) = self.tail.take() {
            tail.end(TailEnd::Abandoned);
        }
    }
}

impl Write for SpoolWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.file.is_none() && self.memory.len() + buf.len() > self.config.memory_limit {
            self.spill()?;
        }
        let written = match self.file.as_mut() {
            Some(f) => f.write_all(buf),
            None => {
                self.memory.extend_from_slice(buf);
                Ok(())
            }
        };
        written.map_err(|e| self.named("writing", e))?;
        self.len += buf.len() as u64;
        self.publish();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

/// A spool that cannot be written (`--spool-dir` full or gone): the
/// machine's problem, not one answer's, so a run stops on it. It travels
/// inside the `io::Error` the writer returns; [`is_spool_failure`] finds it.
#[derive(Debug)]
pub struct SpoolError(String);

impl SpoolError {
    fn io(kind: io::ErrorKind, message: String) -> io::Error {
        io::Error::new(kind, SpoolError(message))
    }
}

impl std::fmt::Display for SpoolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SpoolError {}

/// Whether `e`, or an error it was caused by, is a spool that cannot be
/// written.
pub fn is_spool_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut at = Some(e);
    while let Some(e) = at {
        let inner_is_spool = e
            .downcast_ref::<io::Error>()
            .and_then(|io| io.get_ref())
            .is_some_and(|inner| inner.is::<SpoolError>());
        if e.is::<SpoolError>() || inner_is_spool {
            return true;
        }
        at = e.source();
    }
    false
}

/// Bytes that were spooled.
#[derive(Debug)]
pub enum Spooled {
    Memory(Vec<u8>),
    /// An unnamed temporary file holding `len` bytes.
    File {
        file: File,
        len: u64,
    },
}

impl Spooled {
    pub fn len(&self) -> u64 {
        match self {
            Spooled::Memory(v) => v.len() as u64,
            Spooled::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads `range` of the bytes at `offset` into `buf`, returning how
    /// many were read (0 at the end).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let len = self.len();
        if offset >= len {
            return Ok(0);
        }
        let want = buf.len().min((len - offset) as usize);
        match self {
            Spooled::Memory(v) => {
                let at = offset as usize;
                buf[..want].copy_from_slice(&v[at..at + want]);
                Ok(want)
            }
            Spooled::File { file, .. } => file.read_at(&mut buf[..want], offset),
        }
    }

    /// The `len` bytes at `offset`, in memory (a part of an upload); an
    /// error if there are fewer.
    pub fn read_range(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut out = vec![0u8; len];
        let mut at = 0;
        while at < len {
            match self.read_at(&mut out[at..], offset + at as u64)? {
                0 => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the spool is shorter than what was asked of it",
                    ));
                }
                n => at += n,
            }
        }
        Ok(out)
    }

    /// All the bytes in memory: for bytes known to be small (an app usage
    /// answer), or a test.
    pub fn to_vec(&self) -> io::Result<Vec<u8>> {
        match self {
            Spooled::Memory(v) => Ok(v.clone()),
            Spooled::File { len, .. } => self.read_range(0, *len as usize),
        }
    }

    /// Whether the bytes are in memory (`Some`), not in a file.
    pub fn as_memory(&self) -> Option<&[u8]> {
        match self {
            Spooled::Memory(v) => Some(v),
            Spooled::File { .. } => None,
        }
    }

    /// Puts the bytes in the file at `path` (replaced if it exists) and
    /// makes them durable (fsync): a spool file on the same file system is
    /// given the name (`linkat(2)`; no byte is copied), anything else is
    /// copied ([`Spooled::copy_to_file`]).
    pub fn persist(&self, path: &Path) -> io::Result<()> {
        if let Spooled::File { file, .. } = self {
            file.sync_all()?;
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            if link_unnamed(file, path).is_ok() {
                return Ok(());
            }
        }
        self.copy_to_file(path)
    }

    /// Copies the bytes into the file at `path`, which is created (or
    /// truncated), and makes them durable (fsync).
    pub fn copy_to_file(&self, path: &Path) -> io::Result<()> {
        let mut out = File::create(path)?;
        match self {
            Spooled::Memory(v) => out.write_all(v)?,
            // `io::copy` between two files is copy_file_range(2): the
            // kernel copies the bytes, none pass through the process.
            Spooled::File { file, .. } => {
                let mut from = file;
                io::Seek::seek(&mut from, io::SeekFrom::Start(0))?;
                io::copy(&mut from, &mut out)?;
            }
        }
        out.sync_all()
    }
}

/// Gives the unnamed file `file` (`O_TMPFILE`) the name `path`. Fails when
/// it is on another file system, was created named and unlinked (no
/// `O_TMPFILE` there), or the platform has no `linkat`.
fn link_unnamed(file: &File, path: &Path) -> io::Result<()> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::io::AsRawFd;
        let from = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
        let to = CString::new(path.as_os_str().as_bytes())?;
        // SAFETY: both are NUL-terminated paths that live across the call.
        let linked = unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        };
        if linked == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = (file, path);
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}

/// Lowers the calling thread's scheduling priority to `nice` (5, 10): for
/// work that may wait while the critical path (the Parquet encoder) keeps a
/// core. A thread cannot raise it back, so call it only on a thread of its
/// own.
pub fn lower_priority(nice: i32) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: gettid and setpriority only read and set this thread's
    // scheduling attributes.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice);
    }
}

/// How a followed spool ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TailEnd {
    Open,
    /// Finished, with this many bytes, all in the file if it spilled.
    Done(u64),
    /// Dropped unfinished.
    Abandoned,
}

#[derive(Debug)]
struct TailState {
    /// A handle on the spool's file once the bytes moved there.
    file: Option<Arc<File>>,
    /// Bytes the file holds.
    written: u64,
    end: TailEnd,
}

impl Default for TailState {
    fn default() -> Self {
        Self {
            file: None,
            written: 0,
            end: TailEnd::Open,
        }
    }
}

/// A spool read by another thread while it is written (see
/// [`SpoolWriter::follow`]): an answer's body is hashed and compressed for
/// the raw zone as it downloads, on whatever CPU the download leaves,
/// instead of after it. The follower reads the spool file with `pread`
/// behind the writer and never holds it up: if it falls behind it catches
/// up from the file.
#[derive(Debug, Default)]
pub struct Tail {
    state: Mutex<TailState>,
    grown: Condvar,
}

/// Bytes the writer lets pile up before it wakes the follower.
const TAIL_STEP: u64 = 1024 * 1024;

impl Tail {
    fn spilled(&self, file: File) {
        self.state.lock().expect("tail lock").file = Some(Arc::new(file));
    }

    fn grew(&self, written: u64) {
        let mut state = self.state.lock().expect("tail lock");
        if written >= state.written + TAIL_STEP {
            state.written = written;
            self.grown.notify_all();
        }
    }

    fn end(&self, end: TailEnd) {
        let mut state = self.state.lock().expect("tail lock");
        if state.end == TailEnd::Open {
            state.end = end;
            if let TailEnd::Done(len) = end {
                state.written = len;
            }
        }
        self.grown.notify_all();
    }

    /// Waits until the spool's file holds more than `pos` bytes, or the
    /// writer is done with it.
    pub fn wait_past(&self, pos: u64) -> Followed {
        let mut state = self.state.lock().expect("tail lock");
        while state.end == TailEnd::Open && (state.file.is_none() || state.written <= pos) {
            state = self.grown.wait(state).expect("tail lock");
        }
        match (state.end, state.file.clone()) {
            (TailEnd::Abandoned, _) => Followed::Abandoned,
            (TailEnd::Done(len), file) => Followed::Done { file, len },
            (TailEnd::Open, file) => Followed::Grew {
                file: file.expect("waited for the file"),
                written: state.written,
            },
        }
    }

    /// Digests the spool as it is written (see [`Digester`]): `Ok(None)`
    /// when there is nothing to gain (the spool stayed in memory: the
    /// caller digests the finished bytes) or it was abandoned. `size`, when
    /// known, goes in the zstd frame's header.
    pub fn digest(
        &self,
        level: Option<i32>,
        spool: &SpoolConfig,
        size: Option<u64>,
    ) -> io::Result<Option<(String, Option<Spooled>)>> {
        let mut digester: Option<Digester> = None;
        let mut buf = vec![0u8; READ_BUFFER];
        let mut pos = 0u64;
        loop {
            let (file, upto, done) = match self.wait_past(pos) {
                Followed::Abandoned | Followed::Done { file: None, .. } => return Ok(None),
                Followed::Grew { file, written } => (file, written, false),
                Followed::Done {
                    file: Some(file),
                    len,
                } => (file, len, true),
            };
            let d = match digester.as_mut() {
                Some(d) => d,
                None => digester.insert(Digester::new(level, spool, size)?),
            };
            while pos < upto {
                let want = buf.len().min((upto - pos) as usize);
                let n = file.read_at(&mut buf[..want], pos)?;
                if n == 0 {
                    return Err(short_file());
                }
                d.update(&buf[..n])?;
                pos += n as u64;
            }
            if done {
                return digester.expect("set above").finish().map(Some);
            }
        }
    }
}

/// Where a followed spool stands (see [`Tail::wait_past`]).
#[derive(Debug)]
pub enum Followed {
    /// The writer goes on; its file holds `written` bytes.
    Grew { file: Arc<File>, written: u64 },
    /// The writer finished with `len` bytes, in `file` if they moved to
    /// one (else they stayed in memory).
    Done { file: Option<Arc<File>>, len: u64 },
    /// The writer was dropped unfinished.
    Abandoned,
}

/// The `len` bytes at `offset` of a followed spool's `file`.
pub fn read_exact_at(file: &File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut out = vec![0u8; len];
    file.read_exact_at(&mut out, offset)
        .map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => short_file(),
            _ => e,
        })?;
    Ok(out)
}

fn short_file() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the spool file is shorter than what was written to it",
    )
}

/// What is kept of bytes going by (an answer's body): their SHA-256, and
/// with a `level` a zstd-compressed copy, spooled.
pub struct Digester {
    sha256: sha2::Sha256,
    zstd: Option<zstd::stream::write::Encoder<'static, SpoolWriter>>,
    len: u64,
}

impl Digester {
    /// `size`, when known, goes in the zstd frame's header.
    pub fn new(level: Option<i32>, spool: &SpoolConfig, size: Option<u64>) -> io::Result<Self> {
        let zstd = match level {
            Some(level) => {
                let mut z = zstd::stream::write::Encoder::new(spool.writer(), level)?;
                z.set_pledged_src_size(size)?;
                Some(z)
            }
            None => None,
        };
        Ok(Self {
            sha256: <sha2::Sha256 as sha2::Digest>::new(),
            zstd,
            len: 0,
        })
    }

    /// Bytes digested so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn update(&mut self, bytes: &[u8]) -> io::Result<()> {
        sha2::Digest::update(&mut self.sha256, bytes);
        if let Some(z) = self.zstd.as_mut() {
            z.write_all(bytes)?;
        }
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Digests `range` of `spool`, a piece at a time.
    pub fn update_from(
        &mut self,
        spool: Arc<Spooled>,
        range: std::ops::Range<u64>,
    ) -> io::Result<()> {
        let mut reader = SpoolReader::new(spool, range);
        loop {
            let chunk = io::BufRead::fill_buf(&mut reader)?;
            if chunk.is_empty() {
                return Ok(());
            }
            let n = chunk.len();
            self.update(chunk)?;
            io::BufRead::consume(&mut reader, n);
        }
    }

    /// The SHA-256 (hex) and the compressed copy.
    pub fn finish(self) -> io::Result<(String, Option<Spooled>)> {
        let compressed = match self.zstd {
            Some(z) => Some(z.finish()?.finish()?),
            None => None,
        };
        Ok((hex::encode(sha2::Digest::finalize(self.sha256)), compressed))
    }
}

/// Reads a range of shared spooled bytes. Positioned reads (`pread`), so
/// any number of readers can read one spool at once.
#[derive(Debug)]
pub struct SpoolReader {
    spool: Arc<Spooled>,
    pos: u64,
    end: u64,
}

impl SpoolReader {
    /// A buffered reader of `range` of `spool`.
    pub fn new(spool: Arc<Spooled>, range: std::ops::Range<u64>) -> BufReader<SpoolReader> {
        let end = range.end.min(spool.len());
        BufReader::with_capacity(
            READ_BUFFER,
            SpoolReader {
                spool,
                pos: range.start.min(end),
                end,
            },
        )
    }
}

impl Read for SpoolReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min((self.end - self.pos) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.spool.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the spool file is shorter than what was written to it",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(limit: usize) -> (tempfile::TempDir, SpoolConfig) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SpoolConfig {
            dir: dir.path().to_owned(),
            memory_limit: limit,
            in_lake: false,
        };
        (dir, cfg)
    }

    #[test]
    fn small_stays_in_memory_large_moves_to_an_unnamed_file() {
        let (dir, cfg) = config(10);
        let mut w = cfg.writer();
        w.write_all(b"0123456789").unwrap();
        assert!(!w.is_spilled());
        let small = w.finish().unwrap();
        assert_eq!(small.as_memory(), Some(&b"0123456789"[..]));

        let mut w = cfg.writer();
        for _ in 0..3 {
            w.write_all(b"abcdefg").unwrap();
        }
        assert!(w.is_spilled());
        assert_eq!(w.len(), 21);
        let big = Arc::new(w.finish().unwrap());
        assert!(big.as_memory().is_none());
        assert_eq!(big.to_vec().unwrap(), b"abcdefgabcdefgabcdefg");
        // The file has no name: nothing in the directory, even while open.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        // Two readers of one spool at once, each its own range.
        let mut a = SpoolReader::new(big.clone(), 2..9);
        let mut b = SpoolReader::new(big.clone(), 14..100);
        let (mut sa, mut sb) = (String::new(), String::new());
        a.read_to_string(&mut sa).unwrap();
        b.read_to_string(&mut sb).unwrap();
        assert_eq!((sa.as_str(), sb.as_str()), ("cdefgab", "abcdefg"));

        let out = dir.path().join("copy");
        big.copy_to_file(&out).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"abcdefgabcdefgabcdefg");
    }

    #[test]
    fn an_unusable_directory_is_named() {
        let cfg = SpoolConfig {
            dir: "/nonexistent/spool".into(),
            memory_limit: 0,
            in_lake: false,
        };
        assert!(cfg.check().is_err());
        let mut w = cfg.writer();
        let e = w.write_all(b"x").unwrap_err();
        assert!(
            e.to_string().contains("/nonexistent/spool (--spool-dir)"),
            "{e}"
        );
        // Known as a spool failure however it is wrapped (the Parquet
        // writer's error, the lake's), and nothing else is.
        assert!(is_spool_failure(&e));
        let wrapped = crate::lake::write::WriteError::from(parquet::errors::ParquetError::from(e));
        assert!(is_spool_failure(&wrapped), "{wrapped}");
        assert!(!is_spool_failure(&io::Error::other("disk full elsewhere")));
    }

    /// The digest of `bytes` as the caller would take it after the fact.
    fn digest_after(bytes: &[u8], cfg: &SpoolConfig) -> (String, Vec<u8>) {
        let mut d = Digester::new(Some(1), cfg, None).unwrap();
        d.update(bytes).unwrap();
        let (sha, z) = d.finish().unwrap();
        (
            sha,
            zstd::decode_all(&z.unwrap().to_vec().unwrap()[..]).unwrap(),
        )
    }

    /// A follower started before the first byte digests what a spool file
    /// receives, whatever the pieces, exactly as the finished bytes would
    /// be digested; it sees the spill from memory to the file.
    #[test]
    fn a_follower_digests_a_growing_spool_as_the_finished_one() {
        let (_dir, cfg) = config(64 * 1024);
        let bytes: Vec<u8> = (0..5_000_000u32)
            .map(|i| (i % 251) as u8 ^ (i >> 13) as u8)
            .collect();
        let mut w = cfg.writer();
        let tail = w.follow();
        let follower_cfg = cfg.clone();
        let follower = std::thread::spawn(move || tail.digest(Some(1), &follower_cfg, None));
        let mut at = 0;
        let mut rng = fastrand::Rng::with_seed(7);
        while at < bytes.len() {
            let n = rng.usize(1..300_000).min(bytes.len() - at);
            w.write_all(&bytes[at..at + n]).unwrap();
            at += n;
        }
        assert!(w.is_spilled());
        let body = w.finish().unwrap();
        assert_eq!(body.to_vec().unwrap(), bytes);
        let (sha, z) = follower
            .join()
            .unwrap()
            .unwrap()
            .expect("digested as it grew");
        let unpacked = zstd::decode_all(&z.unwrap().to_vec().unwrap()[..]).unwrap();
        assert_eq!((sha, unpacked), digest_after(&bytes, &cfg));
    }

    /// A body that breaks off (its spool dropped unfinished) stops the
    /// follower with nothing; one that stays in memory is left to the
    /// caller (`None`), never half-digested.
    #[test]
    fn a_follower_gives_nothing_for_a_broken_or_small_body() {
        let (_dir, cfg) = config(1024);
        let mut w = cfg.writer();
        let tail = w.follow();
        let c = cfg.clone();
        let follower = std::thread::spawn(move || tail.digest(Some(1), &c, None));
        w.write_all(&vec![b'x'; 3 * 1024 * 1024]).unwrap();
        drop(w);
        assert!(follower.join().unwrap().unwrap().is_none());

        let mut w = cfg.writer();
        let tail = w.follow();
        let c = cfg.clone();
        let follower = std::thread::spawn(move || tail.digest(None, &c, None));
        w.write_all(b"small").unwrap();
        assert!(w.finish().unwrap().as_memory().is_some());
        assert!(follower.join().unwrap().unwrap().is_none());
    }

    /// A spool file built where it is to be kept is given its name (the
    /// same inode: no copy), replacing what was there, with the mode a
    /// created file has; one kept in memory is written out, and one on
    /// another file system copied.
    #[test]
    fn persist_links_a_spool_file_and_writes_a_small_one() {
        use std::os::unix::fs::MetadataExt;
        let (dir, cfg) = config(4);
        let lake = cfg.in_lake(&dir.path().join("lake"));
        assert!(lake.in_lake);
        let mut w = lake.writer();
        w.write_all(b"parquet bytes").unwrap();
        let file = w.finish().unwrap();
        let target = dir.path().join("lake/part/_part-00000.parquet.inflight");
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(&target, b"stale").unwrap();
        file.persist(&target).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"parquet bytes");
        let Spooled::File { file: f, .. } = &file else {
            panic!("spilled")
        };
        let (kept, spooled) = (std::fs::metadata(&target).unwrap(), f.metadata().unwrap());
        assert_eq!(kept.ino(), spooled.ino(), "linked, not copied");
        let created = dir.path().join("created");
        std::fs::write(&created, b"").unwrap();
        let mode = std::fs::metadata(&created).unwrap().mode() & 0o777;
        assert_eq!(kept.mode() & 0o777, mode);
        // Only the linked name is in the lake: the spool itself has none.
        assert_eq!(
            std::fs::read_dir(dir.path().join("lake")).unwrap().count(),
            1
        );

        let small = Spooled::Memory(b"ok".to_vec());
        small.persist(&target).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"ok");

        // Built on another file system (a tmpfs, where there is one): no
        // link is possible, so the bytes are copied, to a file of its own.
        let shm = std::path::Path::new("/dev/shm");
        let other_fs = shm.is_dir()
            && std::fs::metadata(shm).unwrap().dev()
                != std::fs::metadata(dir.path()).unwrap().dev();
        if other_fs && let Ok(elsewhere) = tempfile::tempdir_in(shm) {
            let cfg = SpoolConfig {
                dir: elsewhere.path().to_owned(),
                memory_limit: 4,
                in_lake: false,
            };
            let mut w = cfg.writer();
            w.write_all(b"copied bytes").unwrap();
            let file = w.finish().unwrap();
            file.persist(&target).unwrap();
            assert_eq!(std::fs::read(&target).unwrap(), b"copied bytes");
            let Spooled::File { file: f, .. } = &file else {
                panic!("spilled")
            };
            assert_ne!(
                std::fs::metadata(&target).unwrap().ino(),
                f.metadata().unwrap().ino()
            );
        }
    }
}
