//! HTTP `Range` for blob reads (RFC 9110 §14): the single byte ranges clients send to resume a
//! layer download (containerd sends `bytes=N-`).
//!
//! A syntactically broken header is an error the client hears about (`416 RANGE_INVALID`), not
//! something silently ignored; several ranges at once are valid but not served as
//! `multipart/byteranges`: the whole blob is served instead, which RFC 9110 allows.

/// One requested range, before the blob's size is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=N-`
    From(u64),
    /// `bytes=N-M` (inclusive)
    FromTo(u64, u64),
    /// `bytes=-N`: the last N bytes.
    Suffix(u64),
}

/// Parses a `Range` header: `Ok(None)` when it asks for several ranges (serve everything).
pub fn parse(header: &str) -> Result<Option<ByteRange>, String> {
    let bad = || format!("Range {header:?} is not a valid bytes range");
    // Range units are case-insensitive (RFC 9110 §14.1).
    let trimmed = header.trim();
    let spec = trimmed
        .get(..6)
        .filter(|unit| unit.eq_ignore_ascii_case("bytes="))
        .map(|_| trimmed[6..].trim())
        .ok_or_else(bad)?;
    if spec.contains(',') {
        // Still validate every part, so garbage is refused even in a list.
        for part in spec.split(',') {
            parse_one(part.trim()).ok_or_else(bad)?;
        }
        return Ok(None);
    }
    parse_one(spec).map(Some).ok_or_else(bad)
}

fn parse_one(spec: &str) -> Option<ByteRange> {
    let (start, end) = spec.split_once('-')?;
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (start.is_empty(), end.is_empty()) {
        (true, true) => None,
        (true, false) => num(end).filter(|&n| n > 0).map(ByteRange::Suffix),
        (false, true) => num(start).map(ByteRange::From),
        (false, false) => {
            let (s, e) = (num(start)?, num(end)?);
            (s <= e).then_some(ByteRange::FromTo(s, e))
        }
    }
}

impl ByteRange {
    /// First and last byte (inclusive) within a blob of `size` bytes, or `None` when the range
    /// cannot be satisfied (416).
    pub fn resolve(self, size: u64) -> Option<(u64, u64)> {
        if size == 0 {
            return None;
        }
        let last = size - 1;
        match self {
            ByteRange::From(s) if s <= last => Some((s, last)),
            ByteRange::FromTo(s, e) if s <= last && s <= e => Some((s, e.min(last))),
            ByteRange::Suffix(n) if n > 0 => Some((size - n.min(size), last)),
            _ => None,
        }
    }

    /// Whether this range is the whole blob whatever its size (`bytes=0-`).
    pub fn is_everything(self) -> bool {
        self == ByteRange::From(0)
    }

    /// The header value to send upstream.
    pub fn header(self) -> String {
        match self {
            ByteRange::From(s) => format!("bytes={s}-"),
            ByteRange::FromTo(s, e) => format!("bytes={s}-{e}"),
            ByteRange::Suffix(n) => format!("bytes=-{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let cases: &[(&str, Result<Option<ByteRange>, ()>)] = &[
            ("bytes=0-", Ok(Some(ByteRange::From(0)))),
            ("bytes=100-", Ok(Some(ByteRange::From(100)))),
            ("bytes=5-9", Ok(Some(ByteRange::FromTo(5, 9)))),
            (" bytes= -20 ", Ok(Some(ByteRange::Suffix(20)))),
            ("Bytes=0-1", Ok(Some(ByteRange::FromTo(0, 1)))),
            ("bytes=0-1, 5-6", Ok(None)),
            ("bytes=9-5", Err(())),
            ("bytes=-0", Err(())),
            ("bytes=-", Err(())),
            ("bytes=a-b", Err(())),
            ("bytes=+1-2", Err(())),
            ("bytes=0-1,x", Err(())),
            ("items=0-1", Err(())),
            ("bytes=99999999999999999999999-", Err(())),
            ("", Err(())),
        ];
        for (h, want) in cases {
            assert_eq!(parse(h).map_err(|_| ()), *want, "{h:?}");
        }
    }

    #[test]
    fn resolve_table() {
        let cases = [
            (ByteRange::From(0), 10, Some((0, 9))),
            (ByteRange::From(9), 10, Some((9, 9))),
            (ByteRange::From(10), 10, None),
            (ByteRange::FromTo(2, 4), 10, Some((2, 4))),
            (ByteRange::FromTo(8, 100), 10, Some((8, 9))),
            (ByteRange::FromTo(10, 11), 10, None),
            (ByteRange::FromTo(1, 0), 2, None),
            (ByteRange::Suffix(0), 1, None),
            (ByteRange::Suffix(3), 10, Some((7, 9))),
            (ByteRange::Suffix(30), 10, Some((0, 9))),
            (ByteRange::From(0), 0, None),
        ];
        for (r, size, want) in cases {
            assert_eq!(r.resolve(size), want, "{r:?} of {size}");
        }
        assert_eq!(ByteRange::FromTo(1, 2).header(), "bytes=1-2");
        assert!(ByteRange::From(0).is_everything());
    }
}
