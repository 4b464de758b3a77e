//! The tar codec: walking 512-byte headers (ustar, GNU long names in `L` entries, GNU
//! base-256 sizes, pax `x` headers; the checksum, signed or unsigned) and building the ustar
//! headers that [`TarWriter`](super::TarWriter) writes.
//!
//! Our own rather than the `tar` crate's: the walk is over a memory map and records byte
//! ranges only (the `tar` crate reads through `io::Read`, and gives positions entry by entry
//! from a stateful `Archive`); its errors name what is wrong and where in words our tests and
//! users rely on; the writer's bytes are deterministic (mode 0644, owners and times 0), so the
//! same members give the same shard; and it is about 200 lines, fuzzed, with no dependency.

pub(super) const BLOCK: usize = 512;

/// A member as the header walk finds it.
pub(super) struct Member {
    pub(super) name: String,
    pub(super) start: usize,
    pub(super) len: usize,
}

/// NUL-terminated field as bytes.
fn cstr(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

/// A numeric header field: octal digits (space or NUL padded), or GNU base-256 when the top
/// bit of the first byte is set.
fn number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        if field[0] & 0x40 != 0 {
            return None; // negative
        }
        let mut v: u64 = u64::from(field[0] & 0x3f);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let s = cstr(field);
    let s = s.iter().skip_while(|&&b| b == b' ').copied();
    let mut v: u64 = 0;
    let mut any = false;
    for b in s {
        match b {
            b'0'..=b'7' => {
                v = v.checked_mul(8)?.checked_add(u64::from(b - b'0'))?;
                any = true;
            }
            b' ' => break,
            _ => return None,
        }
    }
    (any || field.iter().all(|&b| b == 0 || b == b' ')).then_some(v)
}

/// Whether the header's checksum field matches its bytes (unsigned or, as old tars wrote, signed).
fn checksum_ok(h: &[u8]) -> bool {
    let Some(stored) = number(&h[148..156]) else {
        return false;
    };
    let field = |i: usize| (148..156).contains(&i);
    let unsigned: u64 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| if field(i) { 32 } else { u64::from(b) })
        .sum();
    let signed: i64 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| if field(i) { 32 } else { i64::from(b as i8) })
        .sum();
    stored == unsigned || i64::try_from(stored).is_ok_and(|s| s == signed)
}

/// The `path` and `size` records of a pax extended header.
fn parse_pax(data: &[u8]) -> Result<(Option<String>, Option<u64>), String> {
    let (mut path, mut size) = (None, None);
    let mut rest = data;
    while !rest.is_empty() && rest[0] != 0 {
        let sp = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or("bad pax header: no record length")?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|&n| n > sp + 1 && n <= rest.len())
            .ok_or("bad pax header: bad record length")?;
        let record = &rest[sp + 1..len];
        let record = record
            .strip_suffix(b"\n")
            .ok_or("bad pax header: record does not end in a newline")?;
        let eq = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or("bad pax header: record without '='")?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        match key {
            b"path" => path = Some(String::from_utf8_lossy(value).into_owned()),
            b"size" => {
                size = Some(
                    std::str::from_utf8(value)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .ok_or("bad pax header: size is not a number")?,
                )
            }
            _ => {}
        }
        rest = &rest[len..];
    }
    Ok((path, size))
}

/// Walks the headers of a whole tar file; returns its regular-file members in order.
pub(super) fn walk(bytes: &[u8]) -> Result<Vec<Member>, String> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut long_name: Option<String> = None;
    let mut pax: (Option<String>, Option<u64>) = (None, None);
    while pos < bytes.len() {
        let Some(h) = bytes.get(pos..pos + BLOCK) else {
            return Err(format!(
                "truncated: header at byte {pos} is cut short ({} of 512 bytes)",
                bytes.len() - pos
            ));
        };
        if h.iter().all(|&b| b == 0) {
            break; // end-of-archive marker
        }
        if !checksum_ok(h) {
            return Err(format!("not a tar file: bad header checksum at byte {pos}"));
        }
        let kind = h[156];
        let field_size = number(&h[124..136])
            .ok_or_else(|| format!("bad header at byte {pos}: size is not a number"))?;
        let meta = matches!(kind, b'L' | b'x' | b'g' | b'K');
        let size = match kind {
            b'1' | b'2' => 0, // links: the size is not data
            _ if meta => field_size,
            _ => pax.1.unwrap_or(field_size),
        };
        let name = || {
            let mut name = cstr(&h[..100]).to_vec();
            if &h[257..263] == b"ustar\0" {
                let prefix = cstr(&h[345..500]);
                if !prefix.is_empty() {
                    name = [prefix, b"/", &name].concat();
                }
            }
            String::from_utf8_lossy(&name).into_owned()
        };
        let start = pos + BLOCK;
        let len =
            usize::try_from(size).map_err(|_| format!("member at byte {pos} is too large"))?;
        let end = start
            .checked_add(len)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| {
                format!(
                    "truncated: member '{}' at byte {pos} needs {len} bytes, the file has {}",
                    long_name.clone().or(pax.0.clone()).unwrap_or_else(name),
                    bytes.len().saturating_sub(start)
                )
            })?;
        let data = &bytes[start..end];
        match kind {
            b'L' => long_name = Some(String::from_utf8_lossy(cstr(data)).into_owned()),
            b'x' => pax = parse_pax(data).map_err(|m| format!("{m} (byte {pos})"))?,
            b'g' | b'K' => {}
            _ => {
                // A pax path wins over a GNU long name, which wins over the header's name.
                let member_name = pax.0.take().or(long_name.take()).unwrap_or_else(name);
                if matches!(kind, b'0' | 0 | b'7') {
                    out.push(Member {
                        name: member_name,
                        start,
                        len,
                    });
                }
                pax = (None, None);
                long_name = None;
            }
        }
        pos = start + len.next_multiple_of(BLOCK);
    }
    Ok(out)
}

/// A ustar header block for a member `name` (its first 100 bytes; longer names go in a GNU
/// `L` entry before it) of `size` bytes and type `kind`: mode 0644, owners and time 0, so the
/// same member always gives the same bytes.
pub(super) fn header(name: &[u8], size: u64, kind: u8) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    h[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    if size < 1 << 33 {
        h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    } else {
        // GNU base-256 for members of 8 GiB and more.
        h[124] = 0x80;
        h[128..136].copy_from_slice(&size.to_be_bytes());
    }
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = kind;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(number(b"00000001750\0"), Some(1000));
        assert_eq!(number(b"   1750 \0\0\0\0"), Some(1000));
        assert_eq!(number(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]), Some(256));
        assert_eq!(number(b"0009"), None);
        assert_eq!(number(&[0xff; 12]), None);
        assert_eq!(
            number(&[
                0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
            ]),
            None
        );
    }
}
