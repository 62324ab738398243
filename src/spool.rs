//! Spooling: bytes that may be large (an API answer, a Parquet file, a
//! compressed raw answer) are kept in memory up to a limit and in an
//! unnamed temporary file beyond it, so the job's memory does not grow with
//! the size of a day.
//!
//! A spool file is created with `O_TMPFILE` where the kernel has it (else
//! created and unlinked at once): it has no name, so nothing is left behind
//! when the process is killed, and its disk space returns when it is
//! dropped. The directory is `--spool-dir` (`TMPDIR` by default).

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            dir: std::env::temp_dir(),
            memory_limit: DEFAULT_MEMORY_LIMIT,
        }
    }
}

impl SpoolConfig {
    /// Fails (naming the directory) when no temporary file can be created
    /// in it: checked before any API call, so a bad `--spool-dir` costs no
    /// call.
    pub fn check(&self) -> io::Result<()> {
        tempfile::tempfile_in(&self.dir).map(drop)
    }

    /// A new, empty spool.
    pub fn writer(&self) -> SpoolWriter {
        SpoolWriter {
            config: self.clone(),
            memory: Vec::new(),
            file: None,
            len: 0,
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
}

impl SpoolWriter {
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
        SpoolError::io(
            e.kind(),
            format!(
                "{doing} a spool file in {} (--spool-dir): {e}",
                self.config.dir.display()
            ),
        )
    }

    fn spill(&mut self) -> io::Result<()> {
        let file =
            tempfile::tempfile_in(&self.config.dir).map_err(|e| self.named("creating", e))?;
        tracing::debug!(
            dir = %self.config.dir.display(),
            bytes = self.memory.len(),
            "Spooling to an unnamed temporary file."
        );
        let mut file = io::BufWriter::with_capacity(READ_BUFFER, file);
        file.write_all(&self.memory)
            .map_err(|e| self.named("writing", e))?;
        self.memory = Vec::new();
        self.file = Some(file);
        Ok(())
    }

    /// The bytes written, ready to read.
    pub fn finish(self) -> io::Result<Spooled> {
        match self.file {
            None => Ok(Spooled::Memory(self.memory)),
            Some(file) => {
                let dir = self.config.dir.display().to_string();
                let file = file.into_inner().map_err(|e| {
                    let e = e.into_error();
                    SpoolError::io(
                        e.kind(),
                        format!("writing a spool file in {dir} (--spool-dir): {e}"),
                    )
                })?;
                Ok(Spooled::File {
                    file,
                    len: self.len,
                })
            }
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
}
