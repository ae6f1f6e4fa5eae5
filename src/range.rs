//! HTTP `Range` for blob reads (RFC 9110 §14): the single byte ranges clients send to resume a
//! layer download (containerd sends `bytes=N-`), and the lists of ranges podman's zstd:chunked
//! partial pulls send (`bytes=a-b,c-d,…`), answered as one `multipart/byteranges` body (RFC 9110
//! §14.6, §15.3.7). This module decides everything about such an answer — which parts, in what
//! order, the bytes between them and the exact length; storage only reads the stretches it names.
//!
//! A syntactically broken header is an error the client hears about (`416 RANGE_INVALID`), not
//! something silently ignored. Parts that overlap or touch are coalesced, as RFC 9110 §14.2
//! allows; parts outside the blob are dropped, and only when none is left is the answer 416.
//! More than [`MAX_PARTS`] ranges are valid but ignored: the whole blob is served (200), which
//! RFC 9110 allows too — a client always copes with that, and one request cannot make the door
//! open hundreds of storage reads.

use crate::oci::Digest;
use crate::ports::Piece;

/// The most ranges one request is served as parts; past this the whole blob is served.
pub const MAX_PARTS: usize = 64;

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

/// The ranges a `Range` header asks for, in the order it lists them (at least one, at most
/// [`MAX_PARTS`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranges(Vec<ByteRange>);

impl Ranges {
    /// The range, when the header named exactly one.
    pub fn single(&self) -> Option<ByteRange> {
        match self.0.as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }

    pub fn list(&self) -> &[ByteRange] {
        &self.0
    }

    /// The header value, as a client would send it.
    pub fn header(&self) -> String {
        let specs: Vec<String> = self.0.iter().map(|r| r.spec()).collect();
        format!("bytes={}", specs.join(","))
    }

    /// First and last byte (inclusive) of each part to send from a blob of `size` bytes: parts
    /// that cannot be satisfied are dropped, parts that overlap or touch are merged into one
    /// (placed where the first of them was asked for: RFC 9110 §15.3.7 wants the parts in the
    /// order asked, less those coalesced). Empty when nothing can be satisfied (416).
    pub fn resolve(&self, size: u64) -> Vec<(u64, u64)> {
        let mut parts: Vec<(u64, u64)> = Vec::new();
        for r in &self.0 {
            let Some((mut first, mut last)) = r.resolve(size) else {
                continue;
            };
            // Merge with every part it overlaps or touches; the merged part may now reach others.
            let mut at = None;
            while let Some(i) = parts
                .iter()
                .position(|&(f, l)| first <= l.saturating_add(1) && f <= last.saturating_add(1))
            {
                let (f, l) = parts.remove(i);
                first = first.min(f);
                last = last.max(l);
                at = Some(at.map_or(i, |a: usize| a.min(i)));
            }
            match at {
                Some(i) => parts.insert(i, (first, last)),
                None => parts.push((first, last)),
            }
        }
        parts
    }
}

/// Parses a `Range` header: `Ok(None)` when it lists more than [`MAX_PARTS`] ranges (serve
/// everything).
pub fn parse(header: &str) -> Result<Option<Ranges>, String> {
    let bad = || format!("Range {header:?} is not a valid bytes range");
    // Range units are case-insensitive (RFC 9110 §14.1).
    let trimmed = header.trim();
    let spec = trimmed
        .get(..6)
        .filter(|unit| unit.eq_ignore_ascii_case("bytes="))
        .map(|_| trimmed[6..].trim())
        .ok_or_else(bad)?;
    // Every part is validated, so garbage is refused even in a list too long to serve.
    // Empty list items are skipped (RFC 9110 §5.6.1.2); at least one range must remain.
    let mut ranges = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        ranges.push(parse_one(part).ok_or_else(bad)?);
    }
    if ranges.is_empty() {
        return Err(bad());
    }
    Ok((ranges.len() <= MAX_PARTS).then_some(Ranges(ranges)))
}

/// The `multipart/byteranges` boundary for a blob's parts: a fixed text and 128 bits of the
/// blob's own digest (53 characters; RFC 2046 allows 70). Any boundary is allowed, but it must not
/// occur in the parts' bytes: a blob holding 128 bits of its own digest would be a partial hash
/// fixed point, which nobody can build — and the same blob always gets the same boundary.
pub fn boundary(digest: &Digest) -> String {
    let hex = digest.hex();
    format!("frontdoor-byteranges-{}", &hex[..hex.len().min(32)])
}

/// The `Content-Type` of a multipart answer.
pub fn multipart_type(boundary: &str) -> String {
    format!("multipart/byteranges; boundary={boundary}")
}

/// The body of a `multipart/byteranges` answer with `parts` (first, last) of a blob of `size`
/// bytes, as the pieces to send in order, and its exact length (RFC 9110 §14.6 and RFC 2046
/// §5.1.1): each part is a delimiter line, `Content-Type` and `Content-Range` headers, an empty
/// line and the bytes; CRLF line ends, the CRLF before a delimiter belonging to it; the body ends
/// with the close delimiter `--boundary--` and a CRLF.
pub fn multipart(parts: &[(u64, u64)], size: u64, boundary: &str) -> (Vec<Piece>, u64) {
    let mut pieces = Vec::with_capacity(parts.len() * 2 + 1);
    let mut len = 0u64;
    for (i, &(first, last)) in parts.iter().enumerate() {
        let head = format!(
            "{}--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {first}-{last}/{size}\r\n\r\n",
            if i == 0 { "" } else { "\r\n" }
        );
        len += head.len() as u64;
        pieces.push(Piece::Bytes(head.into_bytes()));
        let part_len = last - first + 1;
        len += part_len;
        pieces.push(Piece::Blob {
            offset: first,
            len: part_len,
        });
    }
    let close = format!("\r\n--{boundary}--\r\n");
    len += close.len() as u64;
    pieces.push(Piece::Bytes(close.into_bytes()));
    (pieces, len)
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
        format!("bytes={}", self.spec())
    }

    /// The range as one item of a header's list (`N-`, `N-M`, `-N`).
    fn spec(self) -> String {
        match self {
            ByteRange::From(s) => format!("{s}-"),
            ByteRange::FromTo(s, e) => format!("{s}-{e}"),
            ByteRange::Suffix(n) => format!("-{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        use ByteRange::*;
        type Want = Result<Option<Vec<ByteRange>>, ()>;
        let cases: &[(&str, Want)] = &[
            ("bytes=0-", Ok(Some(vec![From(0)]))),
            ("bytes=100-", Ok(Some(vec![From(100)]))),
            ("bytes=5-9", Ok(Some(vec![FromTo(5, 9)]))),
            (" bytes= -20 ", Ok(Some(vec![Suffix(20)]))),
            ("Bytes=0-1", Ok(Some(vec![FromTo(0, 1)]))),
            ("bytes=0-1, 5-6", Ok(Some(vec![FromTo(0, 1), FromTo(5, 6)]))),
            ("bytes=0-1,,5-", Ok(Some(vec![FromTo(0, 1), From(5)]))),
            ("bytes=-3,0-0", Ok(Some(vec![Suffix(3), FromTo(0, 0)]))),
            ("bytes=9-5", Err(())),
            ("bytes=-0", Err(())),
            ("bytes=-", Err(())),
            ("bytes=a-b", Err(())),
            ("bytes=+1-2", Err(())),
            ("bytes=0-1,x", Err(())),
            ("bytes=0-1,9-5", Err(())),
            ("bytes=,", Err(())),
            ("bytes=", Err(())),
            ("items=0-1", Err(())),
            ("bytes=99999999999999999999999-", Err(())),
            ("", Err(())),
        ];
        for (h, want) in cases {
            let got = parse(h).map(|r| r.map(|r| r.list().to_vec()));
            assert_eq!(got.map_err(|_| ()), *want, "{h:?}");
        }
        assert_eq!(
            parse("bytes=0-1,5-6").unwrap().unwrap().header(),
            "bytes=0-1,5-6"
        );
        assert_eq!(parse("bytes=5-").unwrap().unwrap().single(), Some(From(5)));
        assert_eq!(parse("bytes=5-,7-").unwrap().unwrap().single(), None);
        // Past the bound the header is ignored (the whole blob), yet garbage still refused.
        let many = |n: usize| {
            let specs: Vec<String> = (0..n)
                .map(|i| format!("{}-{}", i * 10, i * 10 + 1))
                .collect();
            format!("bytes={}", specs.join(","))
        };
        assert_eq!(
            parse(&many(MAX_PARTS)).unwrap().unwrap().list().len(),
            MAX_PARTS
        );
        assert_eq!(parse(&many(MAX_PARTS + 1)), Ok(None));
        assert!(parse(&format!("{},x", many(MAX_PARTS + 1))).is_err());
    }

    #[test]
    fn parts_are_coalesced_in_the_order_asked() {
        type Parts = &'static [(u64, u64)];
        let cases: &[(&str, u64, Parts)] = &[
            ("bytes=0-9,100-199", 1000, &[(0, 9), (100, 199)]),
            // Order kept: the client asked for the later part first.
            ("bytes=100-199,0-9", 1000, &[(100, 199), (0, 9)]),
            // Overlapping and touching parts become one.
            ("bytes=0-9,5-20", 1000, &[(0, 20)]),
            ("bytes=0-9,10-19", 1000, &[(0, 19)]),
            ("bytes=0-9,11-19", 1000, &[(0, 9), (11, 19)]),
            // A later part bridging two earlier ones merges all three, where the first was.
            ("bytes=50-59,0-9,8-52", 1000, &[(0, 59)]),
            ("bytes=500-,0-9,20-29,5-25", 1000, &[(500, 999), (0, 29)]),
            // Suffix and open ranges, clamped to the blob.
            ("bytes=-10,0-0", 1000, &[(990, 999), (0, 0)]),
            ("bytes=990-,-5", 1000, &[(990, 999)]),
            ("bytes=0-0,-2000", 1000, &[(0, 999)]),
            // Parts outside the blob are dropped; none left is 416's empty list.
            ("bytes=0-9,5000-6000", 1000, &[(0, 9)]),
            ("bytes=1000-,2000-2001", 1000, &[]),
            ("bytes=0-1,3-4", 0, &[]),
        ];
        for (h, size, want) in cases {
            let ranges = parse(h).unwrap().unwrap();
            assert_eq!(ranges.resolve(*size), want.to_vec(), "{h} of {size}");
        }
    }

    #[test]
    fn multipart_layout() {
        let (pieces, len) = multipart(&[(0, 1), (5, 9)], 10, "B");
        let want: &[&[u8]] = &[
            b"--B\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 0-1/10\r\n\r\n",
            b"\r\n--B\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 5-9/10\r\n\r\n",
            b"\r\n--B--\r\n",
        ];
        let texts: Vec<&[u8]> = pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Bytes(b) => Some(b.as_slice()),
                Piece::Blob { .. } => None,
            })
            .collect();
        assert_eq!(texts, want);
        let stretches: Vec<(u64, u64)> = pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Blob { offset, len } => Some((*offset, *len)),
                Piece::Bytes(_) => None,
            })
            .collect();
        assert_eq!(stretches, [(0, 2), (5, 5)]);
        let text_len: usize = want.iter().map(|t| t.len()).sum();
        assert_eq!(len, text_len as u64 + 2 + 5);
        // Pieces alternate: header, stretch, header, stretch, close.
        assert!(matches!(pieces[1], Piece::Blob { .. }) && matches!(pieces[3], Piece::Blob { .. }));

        let d = Digest::parse(&format!("sha256:{}", "ab".repeat(32))).unwrap();
        let b = boundary(&d);
        assert_eq!(b, format!("frontdoor-byteranges-{}", "ab".repeat(16)));
        assert!(b.len() <= 70);
        assert_eq!(
            multipart_type(&b),
            format!("multipart/byteranges; boundary={b}")
        );
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
