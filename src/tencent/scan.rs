//! A streaming scan of an API answer's JSON: fed the body's bytes as they
//! arrive, it finds where `Response.Data`'s text lies and reads
//! `Response.RequestId` and `Response.Error`, holding none of the body.
//!
//! `RequestId` may come before or after `Data` (Tencent's examples show
//! both), so the body is spooled (see [`crate::spool`]) and scanned as it
//! goes by; the CSV is then read from the spool, from the offsets found
//! here, by [`DataReader`], which decodes the string's
//! escapes.
//!
//! The scan accepts exactly the bodies `serde_json` parses into a value,
//! and reads the same values from them (a differential test below holds it
//! to that): every string's UTF-8, escapes (`\u` and exactly four hex
//! digits, surrogates in pairs) and control characters are checked; numbers
//! and literals are handed to `serde_json` itself; containers may nest 127
//! deep, as in `serde_json`. Keys are compared once unescaped, so
//! `"D\u0061ta"` is `Data`, and a key of ours (`Response`, and `Data`,
//! `RequestId`, `Error` inside it) given twice is refused, naming it. Two
//! limits are its own: one number or literal, and one captured value, of at
//! most 1 MiB.
//!
//! A problem inside `Data`'s text does not stop the scan: it is kept in
//! [`Found::data_problem`], so that the answer's RequestId is still read
//! and the CSV reader can name the line and column it lies on. The answer
//! is refused either way.

use std::io::BufRead;
use std::ops::Range;

/// The most bytes kept of one value (`RequestId`, `Error`), or of one number
/// or literal: an answer with more is not the API's.
const MAX_CAPTURE: usize = 1024 * 1024;
/// Keys longer than this, unescaped, are none of the ones looked for.
const MAX_KEY: usize = 64;
/// The deepest nesting `serde_json` parses (its recursion limit refuses a
/// 128th level); the limit also bounds the scanner's memory.
pub const MAX_DEPTH: usize = 127;

/// What `Response.Data` was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataValue {
    Missing,
    Null,
    NotString,
    /// The string's escaped contents, quotes excluded: offsets in the body.
    String(Range<u64>),
}

/// What the scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub data: DataValue,
    /// The first thing in `Data`'s text that is not valid JSON string text
    /// (bytes that are not UTF-8, a control character, a bad escape, a lone
    /// surrogate), with its byte offset: the answer must be refused.
    pub data_problem: Option<String>,
    /// `Response.RequestId`'s value as JSON text.
    pub request_id: Option<Vec<u8>>,
    /// `Response.Error`'s value as JSON text.
    pub error: Option<Vec<u8>>,
}

/// Why a body is not the API's JSON, with its RequestId when the scan had
/// read it by then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanError {
    pub reason: String,
    pub request_id: Option<String>,
}

impl std::fmt::Display for ScanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// What a value found at a place of interest is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The answer itself: must be an object.
    Root,
    /// `Response`: must be an object.
    Response,
    Data,
    RequestId,
    Error,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Object,
    Array,
}

#[derive(Debug, Clone, Copy)]
struct Frame {
    kind: Kind,
    role: Role,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a value (whitespace allowed).
    Value,
    /// After `{` (a key or `}`) or after `,` in an object (a key).
    Key { first: bool },
    /// Inside a string: a key's, or a value's.
    Str { key: bool },
    /// After a key, before its colon.
    Colon,
    /// Inside a number or literal.
    Token,
    /// After a value: `,`, a closing bracket, or the end.
    After,
    /// After an array's `[`: a value or `]`.
    ArrayStart,
}

/// Where a string's escape is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Esc {
    No,
    /// Just after a backslash.
    Backslash,
    /// After `\u` and `n` of its four hex digits, worth `value` so far;
    /// `bad` once one was not a hex digit.
    Hex {
        n: u8,
        value: u16,
        bad: bool,
    },
}

/// The scanner; feed it the body, then [`Scanner::finish`].
#[derive(Debug)]
pub struct Scanner {
    pos: u64,
    state: State,
    esc: Esc,
    /// A leading surrogate (`\uD83D`) whose trailing one must come next.
    high: Option<u16>,
    /// The first bytes of a UTF-8 sequence cut by the end of a piece.
    utf8: [u8; 4],
    utf8_len: usize,
    stack: Vec<Frame>,
    /// The role of the value about to start (after a key's colon).
    next_role: Role,
    /// The key being read, unescaped.
    key: Vec<u8>,
    key_long: bool,
    /// The number or literal being read.
    token: Vec<u8>,
    /// The role of the value being captured and its bytes so far, with the
    /// stack depth at which it started.
    capture: Option<(Role, usize, Vec<u8>)>,
    /// Where `Data`'s string began (its first content byte), while it is
    /// being read.
    data_start: u64,
    in_data: bool,
    found: Found,
    seen: [bool; 4],
    error: Option<String>,
}

impl Default for Scanner {
    fn default() -> Self {
        Self::new()
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')
}

/// The byte a one-character escape (`\n`, `\"`, …) stands for.
pub(crate) fn simple_escape(e: u8) -> Option<u8> {
    Some(match e {
        b'n' => b'\n',
        b'"' => b'"',
        b'\\' => b'\\',
        b'/' => b'/',
        b'r' => b'\r',
        b't' => b'\t',
        b'b' => 0x08,
        b'f' => 0x0c,
        _ => return None,
    })
}

/// Where the first control character (below 0x20, which JSON requires to
/// be escaped) is in `bytes`.
pub(crate) fn first_control(bytes: &[u8]) -> Option<usize> {
    // Chunks without a branch per byte: this runs over the whole CSV.
    let mut at = 0;
    for chunk in bytes.chunks(64) {
        if chunk.iter().fold(false, |any, &b| any | (b < 0x20)) {
            return chunk.iter().position(|&b| b < 0x20).map(|i| at + i);
        }
        at += chunk.len();
    }
    None
}

/// A short, printable form of `bytes` for an error.
fn shown(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(32)]).into_owned();
    if bytes.len() > 32 {
        format!("{s}…")
    } else {
        s
    }
}

impl Scanner {
    pub fn new() -> Self {
        Self {
            pos: 0,
            state: State::Value,
            esc: Esc::No,
            high: None,
            utf8: [0; 4],
            utf8_len: 0,
            stack: Vec::new(),
            next_role: Role::Root,
            key: Vec::new(),
            key_long: false,
            token: Vec::new(),
            capture: None,
            data_start: 0,
            in_data: false,
            found: Found {
                data: DataValue::Missing,
                data_problem: None,
                request_id: None,
                error: None,
            },
            seen: [false; 4],
            error: None,
        }
    }

    fn fail_at(&mut self, what: String, at: u64) {
        if self.error.is_none() {
            self.error = Some(format!("{what} at byte {at}"));
        }
    }

    fn fail(&mut self, what: String) {
        self.fail_at(what, self.pos);
    }

    /// Something in a string that JSON does not allow: the end of the scan,
    /// except in `Data`'s text, where it is kept for the caller.
    fn string_problem(&mut self, what: &str, at: u64) {
        if self.in_data {
            if self.found.data_problem.is_none() {
                self.found.data_problem = Some(format!("{what} at byte {at}"));
            }
        } else {
            self.fail_at(what.to_owned(), at);
        }
    }

    /// The role of a value under the key just read, in the current object.
    fn role_for_key(&mut self) -> Role {
        let parent = self.stack.last().map(|f| f.role);
        let key = (!self.key_long).then_some(self.key.as_slice());
        let (role, slot) = match (parent, key) {
            (Some(Role::Root), Some(b"Response")) => (Role::Response, 0),
            (Some(Role::Response), Some(b"Data")) => (Role::Data, 1),
            (Some(Role::Response), Some(b"RequestId")) => (Role::RequestId, 2),
            (Some(Role::Response), Some(b"Error")) => (Role::Error, 3),
            _ => return Role::Other,
        };
        if std::mem::replace(&mut self.seen[slot], true) {
            let name = String::from_utf8_lossy(&self.key).into_owned();
            self.fail(format!("key {name:?} appears twice"));
        }
        role
    }

    /// A value starts with byte `b` (not whitespace).
    fn begin_value(&mut self, b: u8) {
        let role = std::mem::replace(&mut self.next_role, Role::Other);
        if matches!(role, Role::Root | Role::Response) && b != b'{' {
            let what = if role == Role::Root {
                "the answer is not a JSON object"
            } else {
                "Response is not an object"
            };
            self.fail(what.into());
            return;
        }
        if self.capture.is_none()
            && (matches!(role, Role::RequestId | Role::Error) || (role == Role::Data && b != b'"'))
        {
            // Its first byte is this one (`feed` keeps later ones).
            self.capture = Some((role, self.stack.len(), vec![b]));
        }
        if matches!(b, b'{' | b'[') && self.stack.len() >= MAX_DEPTH {
            self.fail(format!("containers nested over {MAX_DEPTH} deep"));
            return;
        }
        match b {
            b'{' => {
                self.stack.push(Frame {
                    kind: Kind::Object,
                    role,
                });
                self.state = State::Key { first: true };
            }
            b'[' => {
                self.stack.push(Frame {
                    kind: Kind::Array,
                    role,
                });
                self.state = State::ArrayStart;
            }
            b'"' => {
                if role == Role::Data {
                    self.data_start = self.pos + 1;
                    self.in_data = true;
                }
                self.begin_string(false);
            }
            b if is_token(b) => {
                self.token.clear();
                self.token.push(b);
                self.state = State::Token;
            }
            b => self.fail(format!("unexpected {:?}", b as char)),
        }
    }

    fn begin_string(&mut self, key: bool) {
        self.state = State::Str { key };
        self.esc = Esc::No;
        self.high = None;
        self.utf8_len = 0;
    }

    /// The value that started at depth `depth` has ended.
    fn end_value(&mut self) {
        self.state = State::After;
        let depth = self.stack.len();
        if let Some((role, at, _)) = &self.capture
            && *at == depth
        {
            let role = *role;
            let (_, _, bytes) = self.capture.take().expect("checked");
            match role {
                Role::RequestId => self.found.request_id = Some(bytes),
                Role::Error => self.found.error = Some(bytes),
                Role::Data => {
                    self.found.data = if bytes.trim_ascii() == b"null" {
                        DataValue::Null
                    } else {
                        DataValue::NotString
                    };
                }
                _ => {}
            }
        }
    }

    /// The number or literal just read ended: `serde_json` says whether it
    /// is one.
    fn end_token(&mut self) {
        if let Err(e) = serde_json::from_slice::<serde_json::Value>(&self.token) {
            let at = self.pos - self.token.len() as u64;
            let what = format!("{:?} is not a JSON value ({e})", shown(&self.token));
            self.fail_at(what, at);
            return;
        }
        self.end_value();
    }

    /// Scans the next bytes of the body.
    pub fn feed(&mut self, chunk: &[u8]) {
        let mut i = 0;
        while i < chunk.len() && self.error.is_none() {
            // A string's run up to its next quote or backslash goes by in
            // one step: most of the body is `Data`'s text.
            if let State::Str { key } = self.state
                && self.esc == Esc::No
                && self.high.is_none()
            {
                let mut run = memchr::memchr2(b'"', b'\\', &chunk[i..]).unwrap_or(chunk.len() - i);
                // Outside a key (whose text is kept unescaped), a simple
                // escape such as `\n` (two ASCII bytes, nothing to decode)
                // after whole characters goes by in the same run: Data's
                // lines are one run, not two.
                while !key && i + run + 1 < chunk.len() && chunk[i + run] == b'\\' {
                    let whole = match run {
                        0 => self.utf8_len == 0,
                        _ => chunk[i + run - 1] < 0x80,
                    };
                    if !whole || simple_escape(chunk[i + run + 1]).is_none() {
                        break;
                    }
                    let from = i + run + 2;
                    run = from - i
                        + memchr::memchr2(b'"', b'\\', &chunk[from..])
                            .unwrap_or(chunk.len() - from);
                }
                let bytes = &chunk[i..i + run];
                self.text(bytes, key);
                self.capture_bytes(bytes);
                i += run;
                self.pos += run as u64;
                if i == chunk.len() || self.error.is_some() {
                    break;
                }
            }
            let b = chunk[i];
            if self.state == State::Token {
                if is_token(b) {
                    if self.token.len() >= MAX_CAPTURE {
                        self.fail("a number or literal over 1 MiB".into());
                        break;
                    }
                    self.token.push(b);
                    self.capture_bytes(&[b]);
                    i += 1;
                    self.pos += 1;
                    continue;
                }
                // The token ended before this byte.
                self.end_token();
                if self.error.is_some() {
                    break;
                }
            }
            self.capture_bytes(&[b]);
            self.step(b);
            i += 1;
            self.pos += 1;
        }
    }

    /// Raw text of a string (no quote, no backslash): no control
    /// character, UTF-8 (a sequence may be cut by the end of a piece).
    fn text(&mut self, bytes: &[u8], key: bool) {
        if let Some(at) = first_control(bytes) {
            self.string_problem(
                "a control character that is not escaped",
                self.pos + at as u64,
            );
        }
        let mut rest = bytes;
        let mut at = self.pos;
        while self.utf8_len > 0 && !rest.is_empty() {
            self.utf8[self.utf8_len] = rest[0];
            self.utf8_len += 1;
            rest = &rest[1..];
            at += 1;
            match std::str::from_utf8(&self.utf8[..self.utf8_len]) {
                Ok(_) => self.utf8_len = 0,
                Err(e) if e.error_len().is_none() => {}
                Err(_) => {
                    self.utf8_len = 0;
                    self.string_problem("bytes that are not UTF-8", at - 1);
                }
            }
        }
        if let Err(e) = std::str::from_utf8(rest) {
            match e.error_len() {
                None => {
                    let tail = &rest[e.valid_up_to()..];
                    self.utf8[..tail.len()].copy_from_slice(tail);
                    self.utf8_len = tail.len();
                }
                Some(_) => {
                    self.string_problem("bytes that are not UTF-8", at + e.valid_up_to() as u64)
                }
            }
        }
        if key {
            self.key_text(bytes);
        }
    }

    /// Keeps `bytes` of the key being read (unescaped).
    fn key_text(&mut self, bytes: &[u8]) {
        if self.key.len() + bytes.len() > MAX_KEY {
            self.key_long = true;
        } else {
            self.key.extend_from_slice(bytes);
        }
    }

    /// Keeps `bytes` in the value being captured, if any.
    fn capture_bytes(&mut self, bytes: &[u8]) {
        if let Some((_, _, buf)) = self.capture.as_mut() {
            if buf.len() + bytes.len() > MAX_CAPTURE {
                self.fail("a value is over 1 MiB".into());
                return;
            }
            buf.extend_from_slice(bytes);
        }
    }

    /// A `\uXXXX` of a string was read: surrogates must come in pairs.
    fn code_unit(&mut self, unit: u16, key: bool, at: u64) {
        let c = match self.high.take() {
            Some(high) if (0xDC00..=0xDFFF).contains(&unit) => {
                let code =
                    0x10000 + ((u32::from(high) - 0xD800) << 10) + (u32::from(unit) - 0xDC00);
                char::from_u32(code)
            }
            Some(_) => {
                self.string_problem("a lone leading surrogate in a \\u escape", at);
                return;
            }
            None if (0xDC00..=0xDFFF).contains(&unit) => {
                self.string_problem("a lone trailing surrogate in a \\u escape", at);
                return;
            }
            None if (0xD800..=0xDBFF).contains(&unit) => {
                self.high = Some(unit);
                return;
            }
            None => char::from_u32(u32::from(unit)),
        };
        if key && let Some(c) = c {
            let mut buf = [0u8; 4];
            self.key_text(c.encode_utf8(&mut buf).as_bytes());
        }
    }

    /// One byte inside a string that the fast path did not take: a quote,
    /// a backslash, a byte of an escape, or any byte while a trailing
    /// surrogate is due.
    fn string_byte(&mut self, b: u8, key: bool) {
        let at = self.pos;
        match self.esc {
            Esc::No => {
                if self.high.is_some() && b != b'\\' {
                    self.high = None;
                    self.string_problem("a lone leading surrogate in a \\u escape", at);
                }
                if matches!(b, b'"' | b'\\') && self.utf8_len > 0 {
                    self.utf8_len = 0;
                    self.string_problem("bytes that are not UTF-8 (a sequence cut short)", at);
                }
                match b {
                    b'\\' => self.esc = Esc::Backslash,
                    b'"' => {
                        if key {
                            self.state = State::Colon;
                        } else {
                            if self.in_data {
                                self.found.data = DataValue::String(self.data_start..self.pos);
                                self.in_data = false;
                            }
                            self.end_value();
                        }
                    }
                    b => self.text(&[b], key),
                }
            }
            Esc::Backslash => {
                if self.high.is_some() && b != b'u' {
                    self.high = None;
                    self.string_problem("a lone leading surrogate in a \\u escape", at);
                }
                self.esc = Esc::No;
                if b == b'u' {
                    self.esc = Esc::Hex {
                        n: 0,
                        value: 0,
                        bad: false,
                    };
                } else if let Some(c) = simple_escape(b) {
                    if key {
                        self.key_text(&[c]);
                    }
                } else {
                    let what = format!("a bad escape \\{}", shown(&[b]));
                    self.string_problem(&what, at - 1);
                }
            }
            Esc::Hex { n, value, bad } => {
                // Like serde_json, the four bytes after `\u` belong to the
                // escape whatever they are.
                let digit = (b as char).to_digit(16);
                let value = (value << 4) | digit.unwrap_or(0) as u16;
                let bad = bad || digit.is_none();
                if n < 3 {
                    self.esc = Esc::Hex {
                        n: n + 1,
                        value,
                        bad,
                    };
                    return;
                }
                self.esc = Esc::No;
                if bad {
                    self.high = None;
                    self.string_problem("a \\u escape that is not four hex digits", at - 5);
                } else {
                    self.code_unit(value, key, at - 5);
                }
            }
        }
    }

    /// Closes the innermost container with `b` (`}` or `]`) after a value.
    fn close(&mut self, b: u8) {
        let want = match self.stack.last().map(|f| f.kind) {
            Some(Kind::Object) => b'}',
            Some(Kind::Array) => b']',
            None => 0,
        };
        if b != want {
            self.fail(format!("unexpected {:?}", b as char));
            return;
        }
        self.stack.pop();
        self.end_value();
    }

    /// One byte, in the current state (never inside a token).
    fn step(&mut self, b: u8) {
        match self.state {
            State::Value => {
                if !is_space(b) {
                    self.begin_value(b);
                }
            }
            State::ArrayStart => {
                if b == b']' {
                    self.close(b);
                } else if !is_space(b) {
                    self.next_role = Role::Other;
                    self.begin_value(b);
                }
            }
            State::Key { first } => {
                if b == b'"' {
                    self.key.clear();
                    self.key_long = false;
                    self.begin_string(true);
                } else if b == b'}' && first {
                    self.close(b);
                } else if !is_space(b) {
                    self.fail(format!("expected a key, found {:?}", b as char));
                }
            }
            State::Str { key } => self.string_byte(b, key),
            State::Colon => {
                if b == b':' {
                    self.next_role = self.role_for_key();
                    self.state = State::Value;
                } else if !is_space(b) {
                    self.fail(format!("expected ':', found {:?}", b as char));
                }
            }
            State::Token => unreachable!("feed ends tokens before stepping"),
            State::After => {
                if is_space(b) {
                } else if self.stack.is_empty() {
                    self.fail(format!("{:?} after the answer", b as char));
                } else if b == b',' {
                    self.state = match self.stack.last().map(|f| f.kind) {
                        Some(Kind::Object) => State::Key { first: false },
                        _ => {
                            self.next_role = Role::Other;
                            State::Value
                        }
                    };
                } else {
                    self.close(b);
                }
            }
        }
    }

    /// What was found; an error names what is wrong with the JSON, and the
    /// RequestId if it had been read.
    pub fn finish(mut self) -> Result<Found, ScanError> {
        if self.error.is_none() && self.state == State::Token && self.stack.is_empty() {
            self.end_token();
        }
        if self.error.is_none() {
            if self.state != State::After || !self.stack.is_empty() {
                self.error = Some(format!("the answer ends early, at byte {}", self.pos));
            } else if !self.seen[0] {
                self.error = Some("no Response object".into());
            }
        }
        match self.error {
            None => Ok(self.found),
            Some(reason) => Err(ScanError {
                reason,
                request_id: self
                    .found
                    .request_id
                    .as_deref()
                    .and_then(|text| serde_json::from_slice::<String>(text).ok()),
            }),
        }
    }
}

/// Reads the text of a JSON string literal's contents (the bytes between
/// the quotes, as they are on the wire), unescaping and checking it as it
/// goes: a bad escape or a raw control character is an error naming
/// `Response.Data`.
#[derive(Debug)]
pub struct DataReader<R: BufRead> {
    inner: R,
    /// A decoded character that did not fit in the caller's buffer.
    pending: [u8; 4],
    pending_at: usize,
    pending_len: usize,
    /// An error found after good text was handed over, for the next read.
    failed: Option<String>,
}

/// The longest escape: a surrogate pair, `\uD83D\uDE00`.
const MAX_ESCAPE: usize = 12;

/// Decodes the escape at the start of `r` (which begins with a backslash):
/// the character and the bytes it took, or `None` when `r` ends before the
/// escape can be told.
fn decode_escape(r: &[u8]) -> Result<Option<(char, usize)>, String> {
    // Exactly four hex digits, as JSON says (`from_str_radix` alone would
    // take a sign: `\u+041`).
    let hex4 = |b: &[u8]| -> Result<u32, String> {
        b.iter()
            .try_fold(0u32, |v, &d| Some(v << 4 | (d as char).to_digit(16)?))
            .ok_or_else(|| format!("bad \\u escape {:?}", String::from_utf8_lossy(b)))
    };
    let Some(&e) = r.get(1) else {
        return Ok(None);
    };
    if let Some(b) = simple_escape(e) {
        return Ok(Some((char::from(b), 2)));
    }
    match e {
        b'u' => {
            let Some(h) = r.get(2..6) else {
                return Ok(None);
            };
            let hi = hex4(h)?;
            if !(0xD800..0xDC00).contains(&hi) {
                return char::from_u32(hi)
                    .map(|c| Some((c, 6)))
                    .ok_or_else(|| "unpaired surrogate in \\u escape".to_owned());
            }
            let Some(next) = r.get(6..8) else {
                return Ok(None);
            };
            if next != b"\\u" {
                return Err("unpaired surrogate in \\u escape".into());
            }
            let Some(l) = r.get(8..12) else {
                return Ok(None);
            };
            let lo = hex4(l)?;
            if !(0xDC00..0xE000).contains(&lo) {
                return Err("unpaired surrogate in \\u escape".into());
            }
            let code = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
            char::from_u32(code)
                .map(|c| Some((c, 12)))
                .ok_or_else(|| "invalid \\u escape".to_owned())
        }
        other => Err(format!("bad escape \\{}", other as char)),
    }
}

fn invalid_data(e: String) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("Response.Data: {e}"),
    )
}

impl<R: BufRead> DataReader<R> {
    /// `escaped` reads the literal's contents without its quotes.
    pub fn new(escaped: R) -> Self {
        Self {
            inner: escaped,
            pending: [0; 4],
            pending_at: 0,
            pending_len: 0,
            failed: None,
        }
    }

    /// Decodes the escape the input is at, consuming it; the escape may
    /// straddle the input's buffers.
    fn escape(&mut self) -> std::io::Result<Result<char, String>> {
        let buf = self.inner.fill_buf()?;
        match decode_escape(buf) {
            Ok(Some((c, used))) => {
                self.inner.consume(used);
                return Ok(Ok(c));
            }
            Ok(None) => {}
            Err(e) => return Ok(Err(e)),
        }
        // The escape runs past this buffer: gather it.
        let mut tmp = [0u8; MAX_ESCAPE];
        let mut have = buf.len();
        tmp[..have].copy_from_slice(buf);
        self.inner.consume(have);
        loop {
            let buf = self.inner.fill_buf()?;
            if buf.is_empty() {
                return Ok(Err("truncated escape".into()));
            }
            let extra = buf.len().min(MAX_ESCAPE - have);
            tmp[have..have + extra].copy_from_slice(&buf[..extra]);
            match decode_escape(&tmp[..have + extra]) {
                Ok(Some((c, used))) => {
                    self.inner.consume(used - have);
                    return Ok(Ok(c));
                }
                Ok(None) => {
                    self.inner.consume(extra);
                    have += extra;
                }
                Err(e) => return Ok(Err(e)),
            }
        }
    }
}

impl<R: BufRead> std::io::Read for DataReader<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if let Some(e) = &self.failed {
            return Err(invalid_data(e.clone()));
        }
        let mut n = 0;
        while n < out.len() && self.pending_at < self.pending_len {
            out[n] = self.pending[self.pending_at];
            self.pending_at += 1;
            n += 1;
        }
        while n < out.len() {
            let buf = self.inner.fill_buf()?;
            if buf.is_empty() {
                break;
            }
            // Copy the run up to the next escape, looking no further than
            // the caller's buffer reaches.
            let window = &buf[..buf.len().min(out.len() - n)];
            let mut run = memchr::memchr(b'\\', window).unwrap_or(window.len());
            let control = first_control(&window[..run]);
            if let Some(at) = control {
                run = at;
            }
            if run > 0 {
                out[n..n + run].copy_from_slice(&window[..run]);
                n += run;
                self.inner.consume(run);
                continue;
            }
            // The escapes of one byte (every CSV line ends in `\n`) are
            // decoded here, without the general path.
            if control.is_none()
                && let Some(&e) = buf.get(1)
                && let Some(b) = simple_escape(e)
            {
                out[n] = b;
                n += 1;
                self.inner.consume(2);
                continue;
            }
            let decoded = if control.is_some() {
                Err("a control character that is not escaped".to_owned())
            } else {
                self.escape()?
            };
            let c = match decoded {
                Ok(c) => c,
                // Hand over the good text first, so the error comes with
                // the parser positioned at the line that holds it.
                Err(e) if n > 0 => {
                    self.failed = Some(e);
                    return Ok(n);
                }
                Err(e) => {
                    self.failed = Some(e.clone());
                    return Err(invalid_data(e));
                }
            };
            let mut bytes = [0u8; 4];
            let len = c.encode_utf8(&mut bytes).len();
            let fit = len.min(out.len() - n);
            out[n..n + fit].copy_from_slice(&bytes[..fit]);
            n += fit;
            if fit < len {
                self.pending = bytes;
                self.pending_at = fit;
                self.pending_len = len;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;
    use serde_json::Value;
    use std::io::Read;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Scans `body` fed in pieces of `chunk` bytes.
    fn scan(body: &[u8], chunk: usize) -> Result<Found, ScanError> {
        let mut s = Scanner::new();
        for piece in body.chunks(chunk.max(1)) {
            s.feed(piece);
        }
        s.finish()
    }

    fn data(body: &[u8]) -> Vec<u8> {
        match scan(body, 1 << 20).unwrap().data {
            DataValue::String(r) => body[r.start as usize..r.end as usize].to_vec(),
            other => panic!("{other:?}"),
        }
    }

    /// What an answer says, as the job reads it: `Data` (decoded),
    /// `RequestId` and `Error`; `None` when the answer is refused.
    #[derive(Debug, PartialEq)]
    enum Data {
        Missing,
        Null,
        NotString,
        Text(String),
        /// The scan accepted it but the CSV reader could not decode it.
        Undecodable(String),
    }
    type Read3 = (Data, Option<Value>, Option<Value>);

    /// The reference: serde_json's value of the body, with our keys given
    /// once each (a derived struct refuses a duplicate field).
    fn reference(body: &[u8]) -> Option<Read3> {
        #[derive(Deserialize)]
        struct Root {
            #[serde(rename = "Response")]
            _response: Resp,
        }
        #[derive(Deserialize)]
        struct Resp {
            #[serde(rename = "Data")]
            _data: Option<serde::de::IgnoredAny>,
            #[serde(rename = "RequestId")]
            _request_id: Option<serde::de::IgnoredAny>,
            #[serde(rename = "Error")]
            _error: Option<serde::de::IgnoredAny>,
        }
        let v: Value = serde_json::from_slice(body).ok()?;
        let resp = v.as_object()?.get("Response")?.as_object()?;
        serde_json::from_slice::<Root>(body).ok()?;
        let data = match resp.get("Data") {
            None => Data::Missing,
            Some(Value::Null) => Data::Null,
            Some(Value::String(s)) => Data::Text(s.clone()),
            Some(_) => Data::NotString,
        };
        Some((
            data,
            resp.get("RequestId").cloned(),
            resp.get("Error").cloned(),
        ))
    }

    /// The scanner, then `DataReader` on the text it located.
    fn scanned(body: &[u8], chunk: usize) -> Option<Read3> {
        let found = scan(body, chunk).ok()?;
        if found.data_problem.is_some() {
            return None;
        }
        let data = match found.data {
            DataValue::Missing => Data::Missing,
            DataValue::Null => Data::Null,
            DataValue::NotString => Data::NotString,
            DataValue::String(r) => {
                let text = &body[r.start as usize..r.end as usize];
                let mut out = Vec::new();
                match DataReader::new(text).read_to_end(&mut out) {
                    Ok(_) => match String::from_utf8(out) {
                        Ok(s) => Data::Text(s),
                        Err(e) => Data::Undecodable(e.to_string()),
                    },
                    Err(e) => Data::Undecodable(e.to_string()),
                }
            }
        };
        let json = |t: Vec<u8>| serde_json::from_slice::<Value>(&t).expect("captured JSON");
        Some((data, found.request_id.map(json), found.error.map(json)))
    }

    /// A piece of a string literal's contents: mostly valid, sometimes
    /// not (so that about half the bodies are refused).
    fn string_piece() -> impl Strategy<Value = Vec<u8>> {
        let valid: Vec<&'static [u8]> = vec![
            br"\n",
            br#"\""#,
            br"\\",
            br"\/",
            br"\b\f\r\t",
            br"\u0041",
            br"\u00e9",
            br"\u00E9",
            br"\u0000",
            br"\uD83D\uDE00",
            br"\ud83d\ude00",
            b"\x7f",
            "é".as_bytes(),
            "😀".as_bytes(),
            "中".as_bytes(),
            b",",
        ];
        let invalid: Vec<&'static [u8]> = vec![
            br"\uD83D",
            br"\uDE00",
            br"\uD83D\u0041",
            br"\uD83D\uD83D",
            br"\uD83Dx",
            br"\uD83D\n",
            br"\u+041",
            br"\u-041",
            br"\u 041",
            br"\u00G1",
            br"\u12",
            br"\x",
            br"\U0041",
            br"\'",
            b"\x01",
            b"\x1f",
            b"\t",
            b"\n",
            b"\xff",
            b"\xc3",
            b"\xe2\x82",
            b"\xed\xa0\x80",
            b"\xf4\x90\x80\x80",
            b"\xc0\xaf",
        ];
        prop_oneof![
            60 => "[a-zA-Z0-9 ,_]{0,6}".prop_map(String::into_bytes),
            30 => prop::sample::select(valid).prop_map(<[u8]>::to_vec),
            1 => prop::sample::select(invalid).prop_map(<[u8]>::to_vec),
        ]
    }

    fn string() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(string_piece(), 0..5).prop_map(|pieces| {
            let mut s = vec![b'"'];
            pieces.iter().for_each(|p| s.extend_from_slice(p));
            s.push(b'"');
            s
        })
    }

    fn our_key() -> impl Strategy<Value = Vec<u8>> {
        let keys: Vec<&'static [u8]> = vec![
            br#""Response""#,
            br#""R\u0065sponse""#,
            br#""\u0052esponse""#,
            br#""Data""#,
            br#""D\u0061ta""#,
            br#""\u0044\u0061\u0074\u0061""#,
            br#""Data ""#,
            br#""data""#,
            br#""RequestId""#,
            br#""Request\u0049d""#,
            br#""Error""#,
            br#""Err\u006Fr""#,
        ];
        prop::sample::select(keys).prop_map(<[u8]>::to_vec)
    }

    fn key() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![3 => our_key(), 1 => string()]
    }

    fn token() -> impl Strategy<Value = Vec<u8>> {
        let valid: Vec<&'static str> = vec![
            "true",
            "false",
            "null",
            "0",
            "-0",
            "1",
            "-1",
            "1.5",
            "1e5",
            "1E+5",
            "1e-5",
            "1e-400",
            "123456789012345678901234567890",
            "18446744073709551616",
            "9007199254740993",
        ];
        let invalid: Vec<&'static str> = vec![
            "tru",
            "nul",
            "truex",
            "True",
            "01",
            "1.",
            ".5",
            "1.5e",
            "1.2.3e+-",
            "1e400",
            "-1e400",
            "-",
            "+1",
            "0x10",
            "NaN",
            "Infinity",
            "-Infinity",
        ];
        prop_oneof![
            20 => prop::sample::select(valid),
            1 => prop::sample::select(invalid),
        ]
        .prop_map(|t| t.as_bytes().to_vec())
    }

    fn ws() -> impl Strategy<Value = Vec<u8>> {
        let spaces: Vec<&'static [u8]> = vec![b"", b" ", b"\n\t ", b"\r\n"];
        let not_json: Vec<&'static [u8]> = vec![b"\x0c", b"\xc2\xa0"];
        prop_oneof![
            30 => prop::sample::select(spaces),
            1 => prop::sample::select(not_json),
        ]
        .prop_map(<[u8]>::to_vec)
    }

    fn object(members: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)>) -> Vec<u8> {
        let mut o = vec![b'{'];
        for (i, (space, k, v)) in members.into_iter().enumerate() {
            if i > 0 {
                o.push(b',');
            }
            o.extend(space);
            o.extend(k);
            o.push(b':');
            o.extend(v);
        }
        o.push(b'}');
        o
    }

    fn value() -> impl Strategy<Value = Vec<u8>> {
        let leaf = prop_oneof![string(), token()];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec((ws(), inner.clone()), 0..4).prop_map(|items| {
                    let mut a = vec![b'['];
                    for (i, (space, v)) in items.into_iter().enumerate() {
                        if i > 0 {
                            a.push(b',');
                        }
                        a.extend(space);
                        a.extend(v);
                    }
                    a.push(b']');
                    a
                }),
                prop::collection::vec((ws(), key(), inner), 0..4).prop_map(object),
            ]
        })
    }

    /// An answer-shaped body: `{…, "Response": {…}, …}` with our keys in
    /// any order, spelling and number, or any value at all; sometimes with
    /// one byte inserted, removed or replaced.
    fn body() -> impl Strategy<Value = Vec<u8>> {
        let data_value = prop_oneof![4 => string(), 1 => value()];
        let member = prop_oneof![
            2 => (ws(), our_key(), data_value),
            1 => (ws(), key(), value()),
        ];
        let response = prop::collection::vec(member, 0..5).prop_map(object);
        let response_key = prop_oneof![
            6 => prop::sample::select(vec![
                &br#""Response""#[..],
                br#""R\u0065sponse""#,
                br#""\u0052esponse""#,
            ])
            .prop_map(<[u8]>::to_vec),
            1 => our_key(),
        ];
        let root = (
            prop::collection::vec((ws(), key(), value()), 0..2),
            ws(),
            response_key,
            response,
            ws(),
        )
            .prop_map(|(mut others, space, k, r, tail)| {
                let at = others.len() / 2;
                others.insert(at, (space, k, r));
                let mut b = object(others);
                b.extend(tail);
                b
            });
        let shaped = prop_oneof![8 => root, 1 => value()];
        let interesting: Vec<u8> = b"\"\\{}[],: \x00\xffu0".to_vec();
        (
            shaped,
            prop::option::weighted(0.2, (any::<prop::sample::Index>(), 0..3u8)),
            prop::sample::select(interesting),
        )
            .prop_map(|(mut b, mutation, byte)| {
                if let Some((at, how)) = mutation {
                    let i = at.index(b.len() + 1);
                    match how {
                        0 => b.insert(i, byte),
                        1 if i < b.len() => {
                            b.remove(i);
                        }
                        _ if i < b.len() => b[i] = byte,
                        _ => b.push(byte),
                    }
                }
                b
            })
    }

    /// The scanner and serde_json agree on every generated body: the same
    /// verdict and the same `Data`, `RequestId` and `Error`, whatever the
    /// pieces the body arrives in.
    #[test]
    fn agrees_with_serde_json_on_generated_bodies() {
        const CASES: u32 = 20_000;
        let config = ProptestConfig {
            cases: CASES,
            failure_persistence: None,
            ..ProptestConfig::default()
        };
        let (accepted, refused) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let started = std::time::Instant::now();
        proptest::test_runner::TestRunner::new(config)
            .run(&(body(), 1usize..40), |(body, chunk)| {
                let want = reference(&body);
                let got = scanned(&body, chunk);
                prop_assert_eq!(
                    &got,
                    &want,
                    "body {:?} in pieces of {}",
                    String::from_utf8_lossy(&body),
                    chunk
                );
                let whole = scanned(&body, usize::MAX);
                prop_assert_eq!(&whole, &want);
                match want {
                    Some(_) => accepted.fetch_add(1, Ordering::Relaxed),
                    None => refused.fetch_add(1, Ordering::Relaxed),
                };
                Ok(())
            })
            .unwrap();
        let (accepted, refused) = (accepted.into_inner(), refused.into_inner());
        eprintln!(
            "differential scan: {CASES} bodies ({accepted} accepted, {refused} refused) in {:.2?}",
            started.elapsed()
        );
        // Both verdicts are exercised, or the test says little.
        assert!(accepted > CASES as usize / 10, "{accepted} accepted");
        assert!(refused > CASES as usize / 10, "{refused} refused");
    }

    /// Nesting: as deep as serde_json goes, and no deeper.
    #[test]
    fn nests_exactly_as_deep_as_serde_json() {
        for depth in 120..=130 {
            let body = format!(
                r#"{{"Response": {{"Data": "", "RequestId": "r", "X": {}{}}}}}"#,
                "[".repeat(depth - 2),
                "]".repeat(depth - 2)
            );
            let want = reference(body.as_bytes()).is_some();
            assert_eq!(scanned(body.as_bytes(), 7).is_some(), want, "depth {depth}");
        }
    }

    /// The shapes a hostile stand-in served, each read as serde_json does.
    #[test]
    fn hostile_shapes_read_as_serde_json_does() {
        let rows: [&[u8]; 12] = [
            // Escaped keys are our keys: a second Data is refused.
            br#"{"Response": {"Data": "A", "D\u0061ta": "B", "RequestId": "r"}}"#,
            br#"{"Response": {"Data": "A", "RequestId": "r"}, "R\u0065sponse": {"Data": "B", "RequestId": "r"}}"#,
            br#"{"Response": {"Data": "A", "RequestId": "r", "Request\u0049d": "s"}}"#,
            // An escaped key alone is read.
            br#"{"R\u0065sponse": {"D\u0061ta": "A", "Request\u0049d": "r"}}"#,
            br#"{"Response": {"Data": "\u+041", "RequestId": "r"}}"#,
            br#"{"Response": {"Data": "A", "RequestId": "r", "X": tru}}"#,
            br#"{"Response": {"Data": "A", "RequestId": "r", "X": 1.2.3e+-}}"#,
            b"{\"Response\": {\"Data\": \"A\", \"RequestId\": \"r\", \"X\": \"\x01\"}}",
            b"{\"Response\": {\"Data\": \"A\", \"RequestId\": \"r\", \"X\": \"\xff\"}}",
            b"{\"Response\": {\"Data\": \"A\xc3\", \"RequestId\": \"r\"}}",
            br#"{"Response": {"Data": "A", "RequestId": "r", "X": 1e400}}"#,
            br#"{"Response": {"Data": "\uDE00", "RequestId": "r"}}"#,
        ];
        for body in rows {
            for chunk in [1, 2, 5, usize::MAX] {
                assert_eq!(
                    scanned(body, chunk),
                    reference(body),
                    "{:?} in pieces of {chunk}",
                    String::from_utf8_lossy(body)
                );
            }
        }
        // And what each says.
        let e = scan(rows[0], 3).unwrap_err();
        assert!(e.reason.contains(r#"key "Data" appears twice"#), "{e}");
        let e = scan(rows[2], 3).unwrap_err();
        assert!(e.reason.contains(r#"key "RequestId" appears twice"#), "{e}");
        assert_eq!(
            e.request_id.as_deref(),
            Some("r"),
            "the RequestId read so far"
        );
        assert_eq!(
            scanned(rows[3], 1).unwrap().0,
            Data::Text("A".into()),
            "escaped keys are ours"
        );
        for (row, why) in [
            (4, "not four hex digits"),
            (9, "not UTF-8"),
            (11, "lone trailing surrogate"),
        ] {
            let found = scan(rows[row], 1).unwrap();
            let problem = found.data_problem.unwrap();
            assert!(problem.contains(why), "{problem}");
        }
        for (row, why) in [
            (5, "\"tru\" is not a JSON value"),
            (6, "\"1.2.3e+-\" is not a JSON value"),
            (7, "control character"),
            (8, "not UTF-8"),
            (10, "\"1e400\" is not a JSON value"),
        ] {
            let e = scan(rows[row], 2).unwrap_err().reason;
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn finds_data_and_request_id_in_either_order_whatever_the_pieces() {
        let bodies: [&[u8]; 3] = [
            br#"{"Response": {"Data": "RoomId\nr\"1\\\n", "RequestId": "req-1"}}"#,
            br#"{"Response":{"RequestId":"req-1","Data":"RoomId\nr\"1\\\n"}}"#,
            b" {\"Other\": [1, {\"Data\": \"x\"}, \"s\\\"\"], \"Response\" :\n{ \"Extra\": {\"RequestId\": 5}, \"RequestId\" : \"req-1\" , \"Data\":\"RoomId\\nr\\\"1\\\\\\n\" } }\n",
        ];
        for body in bodies {
            let want = br#"RoomId\nr\"1\\\n"#.to_vec();
            for chunk in [1, 2, 3, 7, 64, 1 << 20] {
                let f = scan(body, chunk).unwrap();
                assert_eq!(f.request_id.as_deref(), Some(&br#""req-1""#[..]), "{chunk}");
                let DataValue::String(r) = f.data else {
                    panic!("{f:?}")
                };
                assert_eq!(body[r.start as usize..r.end as usize], want[..], "{chunk}");
                assert!(f.error.is_none());
            }
        }
        assert_eq!(data(br#"{"Response":{"Data":"","RequestId":"r"}}"#), b"");
    }

    #[test]
    fn keeps_the_error_object_and_tells_null_from_missing() {
        let body = br#"{"Response": {"Error": {"Code": "A.B", "Message": "m [x] {y}", "N": [1, 2e5, true]}, "RequestId": "r"}}"#;
        for chunk in [1, 5, 1 << 20] {
            let f = scan(body, chunk).unwrap();
            assert_eq!(
                f.error.as_deref(),
                Some(&br#"{"Code": "A.B", "Message": "m [x] {y}", "N": [1, 2e5, true]}"#[..])
            );
            assert_eq!(f.data, DataValue::Missing);
        }
        let f = scan(br#"{"Response": {"Data": null, "RequestId": "r"}}"#, 1).unwrap();
        assert_eq!(f.data, DataValue::Null);
        let f = scan(br#"{"Response": {"Data": 5, "RequestId": "r"}}"#, 1).unwrap();
        assert_eq!(f.data, DataValue::NotString);
        let f = scan(br#"{"Response": {"Data": ["a"], "RequestId": "r"}}"#, 3).unwrap();
        assert_eq!(f.data, DataValue::NotString);
    }

    #[test]
    fn rejects_what_is_not_the_answers_json() {
        for (body, why) in [
            (&b"<html>"[..], "the answer is not a JSON object"),
            (b"", "ends early"),
            (br#"{"Response": {"Data": "abc"#, "ends early"),
            (br#"{"Response": {"Data": "a"}"#, "ends early"),
            (br#"{"Response": {"Data": "a"}}}"#, "after the answer"),
            (br#"{"Response": {"Data": "a"}} x"#, "after the answer"),
            (
                br#"{"Response": {"Data": "a", "Data": "b"}}"#,
                "appears twice",
            ),
            (br#"{"Response": 5}"#, "Response is not an object"),
            (br#"{"Other": {}}"#, "no Response object"),
            (br#"{"Response": {"Data" "a"}}"#, "expected ':'"),
            (br#"{"Response": {"Data": "a",}}"#, "expected a key"),
            (br#"{"Response": {"Data": "a"]}"#, "unexpected ']'"),
            (br#"[1]"#, "not a JSON object"),
            (
                format!(
                    r#"{{"Response": {{"Data": "", "X": {}}}}}"#,
                    "[".repeat(200)
                )
                .as_bytes(),
                "nested over 127 deep",
            ),
        ] {
            for chunk in [1, 1 << 20] {
                let e = scan(body, chunk).unwrap_err();
                assert!(
                    e.reason.contains(why),
                    "{:?}: {e}",
                    String::from_utf8_lossy(body)
                );
            }
        }
    }
}

#[cfg(test)]
mod data_reader_tests {
    use super::*;
    use std::io::Read;

    /// Reads the literal's text through buffers of `chunk` bytes, so a
    /// decoded character can straddle two reads.
    fn unescape(json_literal: &str, chunk: usize) -> std::io::Result<String> {
        let inner = &json_literal.as_bytes()[1..json_literal.len() - 1];
        let mut reader = DataReader::new(inner);
        let mut out = Vec::new();
        let mut buf = vec![0u8; chunk];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn agrees_with_serde_json_whatever_the_read_size() {
        for s in [
            r#""""#,
            r#""RoomId,Audio\ntest_room,1\n""#,
            r#""a\"b\\c\/d\b\f\r\t""#,
            r#""\u672a\u547d\u540d 房间""#,
            r#""\ud83d\ude00 emoji""#,
            r#""plain""#,
        ] {
            let want: String = serde_json::from_str(s).unwrap();
            for chunk in [1, 2, 3, 5, 64 * 1024] {
                assert_eq!(
                    unescape(s, chunk).unwrap(),
                    want,
                    "{s} in {chunk}-byte reads"
                );
            }
        }
    }

    /// The same, with the input's own buffer `capacity` bytes long, so an
    /// escape can straddle two of the input's buffers.
    fn unescape_buffered(json_literal: &str, capacity: usize) -> std::io::Result<String> {
        let inner = &json_literal.as_bytes()[1..json_literal.len() - 1];
        let mut reader = DataReader::new(std::io::BufReader::with_capacity(capacity, inner));
        let mut out = Vec::new();
        reader.read_to_end(&mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn escapes_straddling_the_inputs_buffers_decode_the_same() {
        for s in [
            r#""ab\ncd\"e\\f""#,
            r#""x\u672a\u547d\u540d""#,
            r#""\ud83d\ude00\ud83d\ude00 emoji""#,
        ] {
            let want: String = serde_json::from_str(s).unwrap();
            for capacity in 1..14 {
                assert_eq!(
                    unescape_buffered(s, capacity).unwrap(),
                    want,
                    "{s} {capacity}"
                );
            }
        }
        for capacity in 1..14 {
            let e = unescape_buffered(r#""ab\ud83dxyzxyzxyz""#, capacity).unwrap_err();
            assert!(e.to_string().contains("unpaired surrogate"), "{e}");
            let e = unescape_buffered(r#""ab\u12""#, capacity).unwrap_err();
            assert!(
                e.to_string().contains("truncated escape"),
                "{capacity}: {e}"
            );
        }
    }

    #[test]
    fn a_raw_control_character_is_refused_after_the_good_text() {
        let inner = b"RoomId\\nr1\n";
        let mut reader = DataReader::new(&inner[..]);
        let mut buf = [0u8; 64];
        let n = reader.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"RoomId\nr1");
        let e = reader.read(&mut buf).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Response.Data: a control character that is not escaped"
        );
    }

    #[test]
    fn rejects_broken_escapes_naming_the_field() {
        for s in [r#""\ud800 alone""#, r#""\x""#, r#""\u12""#, r#""\udc00""#] {
            let e = unescape(s, 64).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{s}");
            assert!(e.to_string().starts_with("Response.Data: "), "{e}");
        }
    }
}
