//! CSV records read in place: the day's CSV is nearly all plain lines
//! (`room,12,0,0,0,0,0`), which are split on commas where they lie in the
//! read buffer, with no copy; a line with a quote or a bare carriage return
//! goes to `csv_core`, the `csv` crate's own parser. What comes out is what
//! `csv::ReaderBuilder::new().has_headers(false).flexible(true)` reads, record
//! for record and line for line (a property test holds the two together):
//! empty lines are skipped, `\r\n`, `\n` and `\r` end a record, quoted
//! fields may hold commas, quotes (doubled) and line breaks.

use std::io::Read;

/// Bytes read from the source at a time (the buffer grows for a record
/// longer than this).
const READ_BUFFER: usize = 256 * 1024;

const ORDINARY: u8 = 0;
const COMMA: u8 = 1;
const NEWLINE: u8 = 2;
const SPECIAL: u8 = 3;

/// What each byte is to a plain line.
const CLASS: [u8; 256] = {
    let mut c = [ORDINARY; 256];
    c[b',' as usize] = COMMA;
    c[b'\n' as usize] = NEWLINE;
    c[b'"' as usize] = SPECIAL;
    c[b'\r' as usize] = SPECIAL;
    c
};

/// How a line begins, as [`plain_line`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// A plain line of this many bytes, ended by `\n` or `\r\n`.
    End(usize),
    /// A quote, or a carriage return not before a `\n`: csv_core's.
    Special,
    /// No line break in the bytes given.
    More,
}

/// Reads the line at the start of `rest`, pushing where its commas are to
/// `ends`: 16 bytes at a time with SSE2 on x86_64 (the byte classes of a
/// block compared at once, each comma then found by its bit), byte by byte
/// elsewhere and for the last bytes.
fn plain_line(rest: &[u8], ends: &mut Vec<usize>) -> Line {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: SSE2 is part of x86_64; loads stay within `rest`.
        let (line, from) = unsafe { plain_line_sse2(rest, ends) };
        match line {
            Some(line) => line,
            None => plain_line_bytes(rest, from, ends),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    plain_line_bytes(rest, 0, ends)
}

/// The byte-by-byte [`plain_line`], from `from` (the bytes before it are
/// known plain, their commas pushed).
fn plain_line_bytes(rest: &[u8], from: usize, ends: &mut Vec<usize>) -> Line {
    for (i, &b) in rest.iter().enumerate().skip(from) {
        match CLASS[b as usize] {
            ORDINARY => {}
            COMMA => ends.push(i),
            NEWLINE => return Line::End(i),
            _ => return special(rest, i),
        }
    }
    Line::More
}

/// What the quote or carriage return at `at` makes of the line.
fn special(rest: &[u8], at: usize) -> Line {
    match (rest[at], rest.get(at + 1)) {
        (b'\r', Some(b'\n')) => Line::End(at),
        // A `\r` at the buffer's end may be a CRLF's first half: csv_core
        // reads it either way.
        _ => Line::Special,
    }
}

/// [`plain_line`] over whole 16-byte blocks: the line's end when a block
/// holds it, else `None` and where the blocks stopped.
#[cfg(target_arch = "x86_64")]
unsafe fn plain_line_sse2(rest: &[u8], ends: &mut Vec<usize>) -> (Option<Line>, usize) {
    use std::arch::x86_64::*;
    let mut i = 0;
    // SAFETY (whole function): SSE2 is baseline on x86_64, and each load
    // reads 16 bytes at `i` with `i + 16 <= rest.len()`.
    unsafe {
        let comma = _mm_set1_epi8(b',' as i8);
        let newline = _mm_set1_epi8(b'\n' as i8);
        let quote = _mm_set1_epi8(b'"' as i8);
        let cr = _mm_set1_epi8(b'\r' as i8);
        while i + 16 <= rest.len() {
            let v = _mm_loadu_si128(rest.as_ptr().add(i) as *const __m128i);
            let mut commas = _mm_movemask_epi8(_mm_cmpeq_epi8(v, comma)) as u32;
            let stops = _mm_or_si128(
                _mm_cmpeq_epi8(v, newline),
                _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, cr)),
            );
            let stops = _mm_movemask_epi8(stops) as u32;
            if stops != 0 {
                let first = stops.trailing_zeros();
                commas &= (1u32 << first) - 1;
            }
            while commas != 0 {
                ends.push(i + commas.trailing_zeros() as usize);
                commas &= commas - 1;
            }
            if stops != 0 {
                let at = i + stops.trailing_zeros() as usize;
                let line = match rest[at] {
                    b'\n' => Line::End(at),
                    _ => special(rest, at),
                };
                return (Some(line), at);
            }
            i += 16;
        }
    }
    (None, i)
}

/// Reads CSV records from `R`.
pub struct Records<R: Read> {
    src: R,
    buf: Vec<u8>,
    /// The unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    eof: bool,
    /// `\n` bytes consumed so far: the next record starts on line
    /// `newlines + 1`.
    newlines: u64,
    core: csv_core::Reader,
    /// A quoted record, as `csv_core` unquoted it.
    out: Vec<u8>,
    /// Where each field of the current record ends, in its bytes.
    ends: Vec<usize>,
    /// The current record's bytes: in `buf` (a plain line) or in `out`.
    at: Place,
    /// The line the current record started on.
    line: u64,
}

#[derive(Debug, Clone, Copy)]
enum Place {
    Buf(usize, usize),
    Out(usize),
}

/// One record: its fields and the line it started on (1-based).
#[derive(Debug)]
pub struct Record<'a> {
    bytes: &'a [u8],
    /// Where each field ends in `bytes`.
    ends: &'a [usize],
    /// Bytes between two fields: 1 (the comma) in a line split in place,
    /// 0 in csv_core's output.
    gap: usize,
    pub line: u64,
}

impl<'a> Record<'a> {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Field `i`.
    pub fn get(&self, i: usize) -> &'a [u8] {
        let from = if i == 0 {
            0
        } else {
            self.ends[i - 1] + self.gap
        };
        &self.bytes[from..self.ends[i]]
    }

    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        (0..self.ends.len()).map(|i| self.get(i))
    }
}

impl<R: Read> Records<R> {
    pub fn new(src: R) -> Self {
        Self {
            src,
            buf: vec![0; READ_BUFFER],
            start: 0,
            end: 0,
            eof: false,
            newlines: 0,
            core: csv_core::Reader::new(),
            out: Vec::new(),
            ends: Vec::new(),
            at: Place::Buf(0, 0),
            line: 0,
        }
    }

    /// The line the last record read started on (0 before the first).
    pub fn line(&self) -> u64 {
        self.line
    }

    /// Reads more of the source after the unread bytes, growing the buffer
    /// when they fill it; `false` at the end of the source.
    fn fill(&mut self) -> std::io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        loop {
            match self.src.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The next record, or `None` at the end.
    pub fn next_record(&mut self) -> std::io::Result<Option<Record<'_>>> {
        if !self.read()? {
            return Ok(None);
        }
        let (bytes, gap) = match self.at {
            Place::Buf(from, to) => (&self.buf[from..to], 1),
            Place::Out(len) => (&self.out[..len], 0),
        };
        Ok(Some(Record {
            bytes,
            ends: &self.ends,
            gap,
            line: self.line,
        }))
    }

    /// Reads the next record into `at` and `ends`; `false` at the end.
    fn read(&mut self) -> std::io::Result<bool> {
        loop {
            // Skip what ends empty lines, as csv_core does.
            while self.start < self.end && matches!(self.buf[self.start], b'\n' | b'\r') {
                if self.buf[self.start] == b'\n' {
                    self.newlines += 1;
                }
                self.start += 1;
            }
            if self.start == self.end {
                if self.fill()? {
                    continue;
                }
                return Ok(false);
            }
            // One pass over the line: commas are where fields end; a
            // quote or a carriage return (other than before the `\n`)
            // hands the record to csv_core.
            self.ends.clear();
            let rest = &self.buf[self.start..self.end];
            let len = match plain_line(rest, &mut self.ends) {
                Line::Special => return self.quoted(),
                Line::End(len) => len,
                Line::More => {
                    // The line goes on past the buffer: read more, unless
                    // the source is done (a last line without a line
                    // break).
                    if self.fill()? {
                        continue;
                    }
                    return self.plain(self.end - self.start, self.end - self.start);
                }
            };
            // The line break at `len` is `\n` or `\r\n` (see `Line::End`).
            let line_break = if rest[len] == b'\r' { 2 } else { 1 };
            return self.plain(len, len + line_break);
        }
    }

    /// The plain record at `start`: `len` bytes of fields (their commas in
    /// `ends`), then its line break, `taken` bytes in all.
    fn plain(&mut self, len: usize, taken: usize) -> std::io::Result<bool> {
        self.ends.push(len);
        self.at = Place::Buf(self.start, self.start + len);
        self.line = self.newlines + 1;
        let newline = taken > len;
        self.start += taken;
        self.newlines += u64::from(newline);
        Ok(true)
    }

    /// A record with a quote (or a bare `\r`) at `start`, read by csv_core,
    /// refilling the buffer as long as the record goes on.
    fn quoted(&mut self) -> std::io::Result<bool> {
        use csv_core::ReadRecordResult;
        self.line = self.newlines + 1;
        let mut out_len = 0;
        let mut nends = 0;
        self.ends.clear();
        loop {
            if self.out.len() < out_len + 1024 {
                self.out.resize((self.out.len() * 2).max(out_len + 1024), 0);
            }
            if self.ends.len() < nends + 64 {
                self.ends.resize(self.ends.len() * 2 + 64, 0);
            }
            let input = &self.buf[self.start..self.end];
            let (result, nin, nout, nend) =
                self.core
                    .read_record(input, &mut self.out[out_len..], &mut self.ends[nends..]);
            self.newlines += memchr::memchr_iter(b'\n', &input[..nin]).count() as u64;
            self.start += nin;
            out_len += nout;
            nends += nend;
            match result {
                ReadRecordResult::InputEmpty => {
                    if !self.fill()? {
                        // The end of the source ends the record: csv_core
                        // is told so with an empty input.
                        continue;
                    }
                }
                ReadRecordResult::OutputFull | ReadRecordResult::OutputEndsFull => {}
                ReadRecordResult::Record => {
                    self.ends.truncate(nends);
                    self.at = Place::Out(out_len);
                    return Ok(true);
                }
                ReadRecordResult::End => {
                    self.ends.clear();
                    return Ok(false);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A source that hands over at most `n` bytes per read.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.len().min(self.1).min(out.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn fields(records: Vec<(u64, Vec<Vec<u8>>)>) -> Vec<Vec<Vec<u8>>> {
        records.into_iter().map(|(_, f)| f).collect()
    }

    fn ours(data: &[u8], step: usize) -> Vec<(u64, Vec<Vec<u8>>)> {
        let mut r = Records::new(Trickle(data, step));
        let mut got = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            got.push((rec.line, rec.iter().map(|f| f.to_vec()).collect()));
        }
        got
    }

    fn theirs(data: &[u8]) -> Vec<(u64, Vec<Vec<u8>>)> {
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(data);
        let mut rec = csv::ByteRecord::new();
        let mut got = Vec::new();
        while r.read_byte_record(&mut rec).unwrap() {
            let line = rec.position().unwrap().line();
            got.push((line, rec.iter().map(|f| f.to_vec()).collect()));
        }
        got
    }

    #[test]
    fn plain_quoted_and_odd_lines_read_as_the_csv_crate_reads_them() {
        let data: &[u8] =
            b"RoomId,Audio\r\n\r\nr1,1\n\"r,2\",\"2\"\"\"\n\"multi\nline\",3\ra,b\n\nlast,9";
        assert_eq!(fields(ours(data, 1 << 20)), fields(theirs(data)));
        assert_eq!(fields(ours(data, 1)), fields(theirs(data)));
        let got = ours(data, 3);
        // Each on the line it starts on.
        let lines: Vec<u64> = got.iter().map(|r| r.0).collect();
        assert_eq!(lines, [1, 3, 4, 5, 6, 8]);
        assert_eq!(got[2].1, [b"r,2".to_vec(), b"2\"".to_vec()]);
    }

    #[test]
    fn a_record_longer_than_the_buffer_is_read_whole() {
        let long = "x".repeat(3 * READ_BUFFER + 7);
        let data = format!("a,b\n{long},1\n\"{long}\",2\n");
        assert_eq!(ours(data.as_bytes(), 1 << 20), theirs(data.as_bytes()));
        assert_eq!(ours(data.as_bytes(), 1 << 20)[2].1[0].len(), long.len());
    }

    #[test]
    fn a_read_error_is_returned_after_the_records_before_it() {
        struct Failing<'a>(&'a [u8]);
        impl Read for Failing<'_> {
            fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
                if self.0.is_empty() {
                    return Err(std::io::Error::other("bad escape"));
                }
                let n = self.0.len().min(out.len());
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut r = Records::new(Failing(b"a,b\nc,d\ne,"));
        assert_eq!(r.next_record().unwrap().unwrap().line, 1);
        assert_eq!(r.next_record().unwrap().unwrap().line, 2);
        assert_eq!(r.next_record().unwrap_err().to_string(), "bad escape");
        assert_eq!(r.line(), 2);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The 16-byte-block line reader finds what the byte-by-byte one
        /// finds: the same end and the same commas.
        #[test]
        fn blocks_and_bytes_read_a_line_alike(
            data in proptest::collection::vec(
                prop_oneof![
                    8 => b'a'..=b'z', 3 => Just(b','), 1 => Just(b'\n'), 1 => Just(b'"'),
                    1 => Just(b'\r'), 1 => Just(0xe6)
                ],
                0..80,
            ),
        ) {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            let line = plain_line(&data, &mut a);
            prop_assert_eq!(line, plain_line_bytes(&data, 0, &mut b));
            prop_assert_eq!(a, b);
        }

        /// Any bytes made of what matters to CSV (commas, quotes, CR, LF)
        /// and others, read in pieces of any size: the same records, field
        /// for field, as the csv crate; with only `\n` line breaks and no
        /// blank line, on the same lines too.
        #[test]
        fn reads_as_the_csv_crate(
            data in proptest::collection::vec(
                prop_oneof![
                    Just(b','), Just(b'"'), Just(b'\n'), Just(b'\r'), Just(b' '),
                    (b'0'..=b'9'), Just(0xff), Just(0xe6), (b'a'..=b'c')
                ],
                0..300,
            ),
            step in 1usize..40,
        ) {
            let (a, b) = (ours(&data, step), theirs(&data));
            let lf_only = !data.contains(&b'\r') && !data.windows(2).any(|w| w == b"\n\n")
                && data.first() != Some(&b'\n');
            if lf_only {
                prop_assert_eq!(&a, &b);
            }
            prop_assert_eq!(fields(a), fields(b));
        }
    }
}
