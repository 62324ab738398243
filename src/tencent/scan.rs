//! A streaming scan of an API answer's JSON: fed the body's bytes as they
//! arrive, it finds where `Response.Data`'s text lies and reads
//! `Response.RequestId` and `Response.Error`, holding none of the body.
//!
//! `RequestId` may come before or after `Data` (Tencent's examples show
//! both), so the body is spooled (see [`crate::spool`]) and scanned as it
//! goes by; the CSV is then read from the spool, from the offsets found
//! here, by [`crate::tencent::api::DataReader`], which decodes (and checks)
//! the string's escapes.
//!
//! The scan checks the JSON's structure — balanced containers, strings,
//! keys, colons and commas, nothing after the answer — and rejects a key of
//! `Response` given twice. It does not check number syntax or the text of
//! strings it skips; the values it keeps are parsed by `serde_json`.

use std::ops::Range;

/// The most bytes kept of one value (`RequestId`, `Error`): an answer with
/// more is not the API's.
const MAX_CAPTURE: usize = 1024 * 1024;
/// Keys longer than this are none of the ones looked for.
const MAX_KEY: usize = 64;
/// Containers nested deeper than this are not the API's answer (which
/// nests three deep); the limit bounds the scanner's memory.
const MAX_DEPTH: usize = 64;

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
    /// `Response.RequestId`'s value as JSON text (a string literal).
    pub request_id: Option<Vec<u8>>,
    /// `Response.Error`'s value as JSON text.
    pub error: Option<Vec<u8>>,
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
    /// Inside a key string.
    KeyString { escape: bool },
    /// After a key, before its colon.
    Colon,
    /// Inside a string value.
    String { escape: bool },
    /// Inside a number or literal.
    Token,
    /// After a value: `,`, a closing bracket, or the end.
    After,
    /// After the first array element's `[`: a value or `]`.
    ArrayStart,
}

/// The scanner; feed it the body, then [`Scanner::finish`].
#[derive(Debug)]
pub struct Scanner {
    pos: u64,
    state: State,
    stack: Vec<Frame>,
    /// The role of the value about to start (after a key's colon).
    next_role: Role,
    key: Vec<u8>,
    key_long: bool,
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

impl Scanner {
    pub fn new() -> Self {
        Self {
            pos: 0,
            state: State::Value,
            stack: Vec::new(),
            next_role: Role::Root,
            key: Vec::new(),
            key_long: false,
            capture: None,
            data_start: 0,
            in_data: false,
            found: Found {
                data: DataValue::Missing,
                request_id: None,
                error: None,
            },
            seen: [false; 4],
            error: None,
        }
    }

    fn fail(&mut self, what: String) {
        if self.error.is_none() {
            self.error = Some(format!("{what} at byte {}", self.pos));
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
                self.state = State::String { escape: false };
            }
            b if is_token(b) => self.state = State::Token,
            b => self.fail(format!("unexpected {:?}", b as char)),
        }
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

    /// Scans the next bytes of the body.
    pub fn feed(&mut self, chunk: &[u8]) {
        let mut i = 0;
        while i < chunk.len() && self.error.is_none() {
            // A string's run up to its next quote or backslash goes by in
            // one step: most of the body is `Data`'s text.
            if let State::String { escape: false } | State::KeyString { escape: false } = self.state
            {
                let run = memchr::memchr2(b'"', b'\\', &chunk[i..]).unwrap_or(chunk.len() - i);
                let bytes = &chunk[i..i + run];
                if self.state == (State::KeyString { escape: false }) {
                    self.key_text(bytes);
                }
                self.capture_bytes(bytes);
                i += run;
                self.pos += run as u64;
                if i == chunk.len() {
                    break;
                }
            }
            let b = chunk[i];
            if self.state == State::Token {
                if is_token(b) {
                    self.capture_bytes(&[b]);
                    i += 1;
                    self.pos += 1;
                    continue;
                }
                // The token ended before this byte.
                self.end_value();
            }
            self.capture_bytes(&[b]);
            self.step(b);
            i += 1;
            self.pos += 1;
        }
    }

    /// Keeps `bytes` of the key being read.
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
                    self.state = State::KeyString { escape: false };
                } else if b == b'}' && first {
                    self.close(b);
                } else if !is_space(b) {
                    self.fail(format!("expected a key, found {:?}", b as char));
                }
            }
            State::KeyString { escape } => {
                if escape {
                    self.state = State::KeyString { escape: false };
                } else if b == b'\\' {
                    self.key_long = true; // an escaped key is none of ours
                    self.state = State::KeyString { escape: true };
                } else if b == b'"' {
                    self.state = State::Colon;
                }
            }
            State::Colon => {
                if b == b':' {
                    self.next_role = self.role_for_key();
                    self.state = State::Value;
                } else if !is_space(b) {
                    self.fail(format!("expected ':', found {:?}", b as char));
                }
            }
            State::String { escape } => {
                if escape {
                    self.state = State::String { escape: false };
                } else if b == b'\\' {
                    self.state = State::String { escape: true };
                } else if b == b'"' {
                    if self.in_data {
                        self.found.data = DataValue::String(self.data_start..self.pos);
                        self.in_data = false;
                    }
                    self.end_value();
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

    /// What was found; an error names what is wrong with the JSON.
    pub fn finish(mut self) -> Result<Found, String> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.state == State::Token && self.stack.is_empty() {
            self.end_value();
        }
        if self.state != State::After || !self.stack.is_empty() {
            return Err(format!("the answer ends early, at byte {}", self.pos));
        }
        if !self.seen[0] {
            return Err("no Response object".into());
        }
        Ok(self.found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scans `body` fed in pieces of `chunk` bytes.
    fn scan(body: &[u8], chunk: usize) -> Result<Found, String> {
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
                    "[".repeat(100)
                )
                .as_bytes(),
                "nested over 64 deep",
            ),
        ] {
            for chunk in [1, 1 << 20] {
                let e = scan(body, chunk).unwrap_err();
                assert!(e.contains(why), "{:?}: {e}", String::from_utf8_lossy(body));
            }
        }
    }
}
