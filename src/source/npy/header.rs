//! The NPY header codec: the magic and version preamble, the Python-literal dict (`descr`,
//! `fortran_order`, `shape`) parsed by our own small parser (versions 1.0, 2.0 and 3.0), and
//! the padded version 1.0 header that [`write_npy`](super::write_npy) writes.

use std::fmt::Write as _;

pub(super) const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// Deepest nesting of tuples/lists accepted in a header (guards the parser's stack).
const MAX_DEPTH: usize = 16;

/// Element types this module knows (images use `U1` and `F4`; labels the integers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Elem {
    U1,
    I1,
    U2,
    I2,
    U4,
    I4,
    U8,
    I8,
    F4,
}

impl Elem {
    pub(super) fn size(self) -> usize {
        match self {
            Elem::U1 | Elem::I1 => 1,
            Elem::U2 | Elem::I2 => 2,
            Elem::U4 | Elem::I4 | Elem::F4 => 4,
            Elem::U8 | Elem::I8 => 8,
        }
    }

    /// Parses a numpy `descr` such as `"|u1"` or `"<f4"`. Multi-byte types must be
    /// little-endian (`<`, or `=` / no prefix on a little-endian host): data is read in place.
    pub(super) fn parse(descr: &str) -> Option<Elem> {
        let (order, rest) = match descr.as_bytes().first() {
            Some(b'<' | b'>' | b'|' | b'=') => (descr.as_bytes()[0], &descr[1..]),
            _ => (b'=', descr),
        };
        let elem = match rest {
            "u1" | "B" => Elem::U1,
            "i1" | "b" => Elem::I1,
            "u2" => Elem::U2,
            "i2" => Elem::I2,
            "u4" => Elem::U4,
            "i4" => Elem::I4,
            "u8" => Elem::U8,
            "i8" => Elem::I8,
            "f4" => Elem::F4,
            _ => return None,
        };
        let ok = elem.size() == 1
            || order == b'<' && cfg!(target_endian = "little")
            || order == b'=' && cfg!(target_endian = "little");
        ok.then_some(elem)
    }
}

/// A parsed NPY header.
#[derive(Debug)]
pub(super) struct Header {
    pub(super) descr: String,
    pub(super) fortran_order: bool,
    pub(super) shape: Vec<usize>,
    /// Byte offset of the data from the start of the file.
    pub(super) data_offset: usize,
}

/// A Python literal as found in an NPY header.
#[derive(Debug)]
enum PyVal {
    Str(String),
    Bool(bool),
    Int(u64),
    None,
    Seq(Vec<PyVal>),
    Dict,
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.pos).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!(
                "bad header: expected '{}' at byte {}",
                c as char, self.pos
            ))
        }
    }

    fn value(&mut self, depth: usize) -> Result<PyVal, String> {
        if depth > MAX_DEPTH {
            return Err("bad header: nested too deeply".into());
        }
        match self.peek() {
            Some(q @ (b'\'' | b'"')) => {
                self.pos += 1;
                let start = self.pos;
                while self.pos < self.s.len() && self.s[self.pos] != q {
                    self.pos += if self.s[self.pos] == b'\\' { 2 } else { 1 };
                }
                if self.pos >= self.s.len() {
                    return Err("bad header: unterminated string".into());
                }
                let text = String::from_utf8_lossy(&self.s[start..self.pos]).into_owned();
                self.pos += 1;
                Ok(PyVal::Str(text))
            }
            Some(open @ (b'(' | b'[' | b'{')) => {
                let close = match open {
                    b'(' => b')',
                    b'[' => b']',
                    _ => b'}',
                };
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    if self.peek() == Some(close) {
                        self.pos += 1;
                        break;
                    }
                    items.push(self.value(depth + 1)?);
                    if open == b'{' {
                        self.expect(b':')?;
                        self.value(depth + 1)?;
                    }
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(c) if c == close => {}
                        _ => return Err(format!("bad header: expected ',' at byte {}", self.pos)),
                    }
                }
                Ok(if open == b'{' {
                    PyVal::Dict
                } else {
                    PyVal::Seq(items)
                })
            }
            Some(c) if c.is_ascii_digit() => {
                let mut n: u64 = 0;
                while let Some(&d) = self.s.get(self.pos).filter(|d| d.is_ascii_digit()) {
                    n = n
                        .checked_mul(10)
                        .and_then(|n| n.checked_add(u64::from(d - b'0')))
                        .ok_or("bad header: number too large")?;
                    self.pos += 1;
                }
                // Python 2 long suffix, as in old headers: `(10L, 3L)`.
                if matches!(self.s.get(self.pos), Some(b'L' | b'l')) {
                    self.pos += 1;
                }
                Ok(PyVal::Int(n))
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.pos;
                while self.pos < self.s.len() && self.s[self.pos].is_ascii_alphanumeric() {
                    self.pos += 1;
                }
                match &self.s[start..self.pos] {
                    b"True" => Ok(PyVal::Bool(true)),
                    b"False" => Ok(PyVal::Bool(false)),
                    b"None" => Ok(PyVal::None),
                    w => Err(format!(
                        "bad header: unexpected word '{}'",
                        String::from_utf8_lossy(w)
                    )),
                }
            }
            Some(_) => Err(format!(
                "bad header: unexpected character at byte {}",
                self.pos
            )),
            None => Err("bad header: unexpected end".into()),
        }
    }

    /// The top-level dict, as (key, value) pairs.
    fn dict(&mut self) -> Result<Vec<(String, PyVal)>, String> {
        self.expect(b'{')?;
        let mut out = Vec::new();
        loop {
            if self.peek() == Some(b'}') {
                self.pos += 1;
                break;
            }
            let key = match self.value(1)? {
                PyVal::Str(k) => k,
                _ => return Err("bad header: dict keys must be strings".into()),
            };
            self.expect(b':')?;
            let v = self.value(1)?;
            out.push((key, v));
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {}
                _ => return Err(format!("bad header: expected ',' at byte {}", self.pos)),
            }
        }
        if self.peek().is_some() {
            return Err("bad header: text after the closing '}'".into());
        }
        Ok(out)
    }
}

/// How many bytes at the start of a file hold its preamble and header, from its first 12 bytes
/// or more; `None` when `prefix` is too short to say. Not an NPY preamble: `prefix.len()` (the
/// parser then says what is wrong).
pub(crate) fn header_end(prefix: &[u8]) -> Option<usize> {
    if prefix.len() < 12 {
        return None;
    }
    if prefix[..6] != MAGIC[..] {
        return Some(prefix.len());
    }
    Some(match prefix[6] {
        1 => 10 + usize::from(u16::from_le_bytes([prefix[8], prefix[9]])),
        _ => 12 + u32::from_le_bytes([prefix[8], prefix[9], prefix[10], prefix[11]]) as usize,
    })
}

/// Parses the preamble and header dict at the start of `bytes` (the whole file or more).
pub(super) fn parse_header(bytes: &[u8]) -> Result<Header, String> {
    if bytes.is_empty() {
        return Err("empty file (0 bytes)".into());
    }
    let n = bytes.len().min(MAGIC.len());
    if bytes[..n] != MAGIC[..n] {
        return Err("not an npy file".into());
    }
    if bytes.len() < 8 {
        return Err("truncated header".into());
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (len_bytes, utf8) = match (major, minor) {
        (1, 0) => (2, false),
        (2, 0) => (4, false),
        (3, 0) => (4, true),
        _ => {
            return Err(format!(
                "unsupported npy version {major}.{minor} (supported: 1.0, 2.0, 3.0)"
            ));
        }
    };
    let start = 8 + len_bytes;
    if bytes.len() < start {
        return Err("truncated header".into());
    }
    let header_len = if len_bytes == 2 {
        u16::from_le_bytes([bytes[8], bytes[9]]) as usize
    } else {
        u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize
    };
    let end = start
        .checked_add(header_len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| {
            format!(
                "truncated header: expected {header_len} bytes of header, found {}",
                bytes.len() - start
            )
        })?;
    let text = &bytes[start..end];
    if utf8 && std::str::from_utf8(text).is_err() {
        return Err("bad header: not utf-8".into());
    }
    let mut descr = None;
    let mut fortran_order = None;
    let mut shape = None;
    for (key, v) in (Parser { s: text, pos: 0 }).dict()? {
        match (key.as_str(), v) {
            ("descr", PyVal::Str(d)) => descr = Some(d),
            // A list here is a structured dtype: report it as an unsupported dtype.
            ("descr", PyVal::Seq(_)) => descr = Some("structured".into()),
            ("fortran_order", PyVal::Bool(b)) => fortran_order = Some(b),
            ("shape", PyVal::Seq(items)) => {
                let dims = items
                    .iter()
                    .map(|d| match d {
                        PyVal::Int(n) => usize::try_from(*n).ok(),
                        _ => None,
                    })
                    .collect::<Option<Vec<usize>>>()
                    .ok_or("bad header: shape must be a tuple of integers")?;
                shape = Some(dims);
            }
            ("descr" | "fortran_order" | "shape", _) => {
                return Err(format!("bad header: '{key}' has the wrong type"));
            }
            _ => {}
        }
    }
    Ok(Header {
        descr: descr.ok_or("bad header: no 'descr'")?,
        fortran_order: fortran_order.ok_or("bad header: no 'fortran_order'")?,
        shape: shape.ok_or("bad header: no 'shape'")?,
        data_offset: end,
    })
}

pub(super) fn shape_str(shape: &[usize]) -> String {
    let mut s = String::from("(");
    for (k, d) in shape.iter().enumerate() {
        let _ = write!(s, "{}{d}", if k > 0 { ", " } else { "" });
    }
    if shape.len() == 1 {
        s.push(',');
    }
    s.push(')');
    s
}

/// Checks that the data after the header holds `count` elements of `elem`; returns its byte length.
pub(super) fn data_len(h: &Header, file_len: usize, elem: Elem) -> Result<usize, String> {
    let need = h
        .shape
        .iter()
        .try_fold(elem.size(), |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("shape {} is too large", shape_str(&h.shape)))?;
    let found = file_len.saturating_sub(h.data_offset);
    if found < need {
        return Err(format!(
            "truncated: expected {need} bytes of data, found {found}"
        ));
    }
    Ok(need)
}

/// Bytes per element of a `descr` like `"<f4"` or `"|u1"` (order char, kind letter, size).
pub(super) fn descr_size(descr: &str) -> Option<usize> {
    let rest = descr.strip_prefix(['<', '>', '|', '=']).unwrap_or(descr);
    let mut chars = rest.chars();
    let kind = chars.next()?;
    let digits = chars.as_str();
    if !kind.is_ascii_alphabetic()
        || digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    digits.parse().ok()
}

/// The preamble and header of an NPY v1.0 file holding `shape` of `descr` in C order: the dict
/// padded with spaces and a newline so that the data starts at a multiple of 64 bytes (as numpy
/// does). `None` when the header would not fit the 16-bit length of version 1.0.
pub(super) fn format_header(descr: &str, shape: &[usize]) -> Option<Vec<u8>> {
    let mut header = format!(
        "{{'descr': '{descr}', 'fortran_order': False, 'shape': {}, }}",
        shape_str(shape)
    );
    let unpadded = MAGIC.len() + 4 + header.len() + 1;
    header.extend(std::iter::repeat_n(
        ' ',
        unpadded.next_multiple_of(64) - unpadded,
    ));
    header.push('\n');
    let len = u16::try_from(header.len()).ok()?;
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + header.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preamble_says_where_the_header_ends() {
        let v1 = format_header("|u1", &[2, 3, 4]).unwrap();
        assert_eq!(header_end(&v1[..12]), Some(v1.len()));
        assert_eq!(header_end(&v1[..11]), None);
        let mut v2 = b"\x93NUMPY\x02\x00".to_vec();
        v2.extend_from_slice(&70_000u32.to_le_bytes());
        assert_eq!(header_end(&v2), Some(12 + 70_000));
        assert_eq!(header_end(b"not an npy file"), Some(15));
    }
}
