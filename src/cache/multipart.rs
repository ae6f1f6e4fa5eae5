//! Storing a blob as a multipart upload. R2 (like S3) takes at most one object of about 5 GiB in a
//! single put; a larger blob is stored as a multipart upload whose parts all have the same size
//! except the last ([`PartSplitter`]), and [`fill`] is the loop that cuts the stream into parts and
//! completes the upload only on a clean end of exactly the blob's length, aborting it otherwise.
//! No I/O here: the upload is a trait ([`Upload`], R2's in the glue) and the bytes come from
//! another ([`Chunks`]).
#![allow(async_fn_in_trait)]

use crate::ports::StoreError;
use std::fmt;

/// R2's largest single put (5 GiB less 5 MiB, as documented); above it a fill goes multipart.
pub const SINGLE_PUT_LIMIT: u64 = 5 * 1024 * 1024 * 1024 - 5 * 1024 * 1024;
/// Default part size: large enough to keep the part count low, small enough to buffer in a Worker.
pub const DEFAULT_PART_BYTES: u64 = 32 * 1024 * 1024;
/// R2's smallest part (except the last).
pub const MIN_PART_BYTES: u64 = 5 * 1024 * 1024;

/// Collects chunks of any size into parts of exactly `part_size` bytes.
#[derive(Debug)]
pub struct PartSplitter {
    part_size: usize,
    buffer: Vec<u8>,
}

impl PartSplitter {
    pub fn new(part_size: usize) -> Self {
        assert!(part_size > 0, "a part has at least one byte");
        PartSplitter {
            part_size,
            buffer: Vec::with_capacity(part_size),
        }
    }

    /// Adds a chunk; returns the parts it completed.
    pub fn push(&mut self, mut chunk: &[u8]) -> Vec<Vec<u8>> {
        let mut done = Vec::new();
        while !chunk.is_empty() {
            let room = self.part_size - self.buffer.len();
            let (now, later) = chunk.split_at(room.min(chunk.len()));
            self.buffer.extend_from_slice(now);
            chunk = later;
            if self.buffer.len() == self.part_size {
                done.push(std::mem::replace(
                    &mut self.buffer,
                    Vec::with_capacity(self.part_size),
                ));
            }
        }
        done
    }

    /// The last, possibly shorter, part (`None` if the bytes ended on a part boundary).
    pub fn finish(self) -> Option<Vec<u8>> {
        (!self.buffer.is_empty()).then_some(self.buffer)
    }
}

/// A multipart upload already created: parts numbered from 1, then completed or aborted.
pub trait Upload {
    /// What an uploaded part gives back (R2: its number and ETag), for completing.
    type Part;
    async fn part(&self, number: u16, bytes: Vec<u8>) -> Result<Self::Part, StoreError>;
    /// Makes the object from `parts`, in order.
    async fn complete(self, parts: Vec<Self::Part>) -> Result<(), StoreError>;
    /// Drops the upload and its parts: nothing is stored.
    async fn abort(&self) -> Result<(), StoreError>;
}

/// A blob's bytes as they arrive: `None` at a clean end, an error when the stream broke off (or
/// was errored on purpose: the pump in front errors it when the bytes are wrong).
pub trait Chunks {
    async fn next(&mut self) -> Option<Result<Vec<u8>, String>>;
}

/// Why a multipart fill stored nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FillError {
    /// The bytes were not the blob: the stream failed, or ended short or long. The upload was
    /// aborted (`aborted`: the abort itself succeeded).
    Refused { why: String, aborted: bool },
    /// Storage failed (a part or the completion); after a failed part the upload was aborted.
    Store(StoreError),
}

impl fmt::Display for FillError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FillError::Refused { why, aborted: true } => write!(f, "refused: {why}"),
            FillError::Refused {
                why,
                aborted: false,
            } => {
                write!(f, "refused: {why} (and the abort failed)")
            }
            FillError::Store(e) => f.write_str(&e.0),
        }
    }
}

impl FillError {
    /// The JSON log line for a fill of `key` that stored nothing (names the key and why, never a
    /// header).
    pub fn log_line(&self, key: &str) -> String {
        serde_json::json!({"fill": key, "multipart": true, "error": self.to_string()}).to_string()
    }
}

/// Stores `chunks` through `upload` in parts of `part_bytes` (the last shorter): completed only
/// when the stream ends cleanly after exactly `len` bytes; aborted when it breaks off, ends short,
/// runs past `len` (refused at once, before another part goes up), or a part fails to upload.
/// R2 checks no checksum of a multipart object: the pump in front hashes the bytes and errors
/// this stream when they are wrong, so a wrong blob ends here as a broken stream.
pub async fn fill<U: Upload, C: Chunks>(
    upload: U,
    mut chunks: C,
    len: u64,
    part_bytes: u64,
) -> Result<(), FillError> {
    let mut splitter = PartSplitter::new(part_bytes as usize);
    let mut parts = Vec::new();
    let mut seen = 0u64;
    let refused = loop {
        let chunk = match chunks.next().await {
            None => break None,
            Some(Ok(chunk)) => chunk,
            Some(Err(e)) => break Some(format!("stream: {e}")),
        };
        seen += chunk.len() as u64;
        if seen > len {
            break Some(format!("more than {len} bytes"));
        }
        for part in splitter.push(&chunk) {
            upload_part(&upload, &mut parts, part).await?;
        }
    };
    let refused = refused.or_else(|| (seen != len).then(|| format!("got {seen} of {len} bytes")));
    if let Some(why) = refused {
        let aborted = upload.abort().await.is_ok();
        return Err(FillError::Refused { why, aborted });
    }
    if let Some(last) = splitter.finish() {
        upload_part(&upload, &mut parts, last).await?;
    }
    upload.complete(parts).await.map_err(FillError::Store)
}

/// Uploads the next part; when that fails, aborts the upload (best effort) and says why.
async fn upload_part<U: Upload>(
    upload: &U,
    parts: &mut Vec<U::Part>,
    bytes: Vec<u8>,
) -> Result<(), FillError> {
    let number = parts.len() as u16 + 1;
    match upload.part(number, bytes).await {
        Ok(part) => {
            parts.push(part);
            Ok(())
        }
        Err(e) => {
            let _ = upload.abort().await;
            Err(FillError::Store(e))
        }
    }
}

/// A spool segment's size: an owner's fill longer than this is spooled (a shorter one lands
/// before a herd's later clients would notice the wait), and how far behind the fill a later
/// client reads.
pub const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;

/// How a blob's fill of `len` bytes is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FillPlan {
    /// One put of exactly `len` bytes, which storage checks against the digest's checksum.
    Single,
    /// At an object's owner (`followable`), longer than a segment: spooled as segments that a
    /// herd's later clients follow as they land, then put together with the checksum.
    Spooled,
    /// Above the single-put threshold: a multipart upload (`fill`).
    Multipart,
}

/// The plan for a fill of `len` bytes; `followable`: later clients can follow this fill (it runs
/// at the object's owner); `threshold`: the largest single put (`MULTIPART_THRESHOLD_BYTES`).
pub fn plan(len: u64, followable: bool, threshold: u64) -> FillPlan {
    if len > threshold {
        FillPlan::Multipart
    } else if followable && len > SEGMENT_BYTES {
        FillPlan::Spooled
    } else {
        FillPlan::Single
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_have_equal_sizes_but_the_last() {
        let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        for chunk_size in [1, 7, 999, 1000, 1001, 10_000] {
            let mut s = PartSplitter::new(1000);
            let mut parts = Vec::new();
            for chunk in data.chunks(chunk_size) {
                parts.extend(s.push(chunk));
            }
            parts.extend(s.finish());
            assert_eq!(parts.len(), 10, "chunk {chunk_size}");
            assert!(parts.iter().all(|p| p.len() == 1000));
            assert_eq!(parts.concat(), data);
        }
        let mut s = PartSplitter::new(4);
        assert!(s.push(b"abcdefghij").len() == 2);
        assert_eq!(s.finish(), Some(b"ij".to_vec()));
        assert_eq!(PartSplitter::new(4).finish(), None);
    }

    /// What an in-memory upload was asked to do.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Call {
        Part(u16, usize),
        Complete(Vec<u16>),
        Abort,
    }

    /// Records every call; the part numbered `fail_part` fails, as does an abort if `fail_abort`.
    #[derive(Default)]
    struct Memory {
        calls: std::cell::RefCell<Vec<Call>>,
        bytes: std::cell::RefCell<Vec<u8>>,
        fail_part: Option<u16>,
        fail_abort: bool,
    }

    impl Upload for &Memory {
        type Part = u16;
        async fn part(&self, number: u16, bytes: Vec<u8>) -> Result<u16, StoreError> {
            self.calls
                .borrow_mut()
                .push(Call::Part(number, bytes.len()));
            if self.fail_part == Some(number) {
                return Err(StoreError(format!("part {number} refused")));
            }
            self.bytes.borrow_mut().extend_from_slice(&bytes);
            Ok(number)
        }
        async fn complete(self, parts: Vec<u16>) -> Result<(), StoreError> {
            self.calls.borrow_mut().push(Call::Complete(parts));
            Ok(())
        }
        async fn abort(&self) -> Result<(), StoreError> {
            self.calls.borrow_mut().push(Call::Abort);
            if self.fail_abort {
                return Err(StoreError("abort refused".into()));
            }
            Ok(())
        }
    }

    /// A scripted stream: chunks, then (optionally) an error instead of a clean end.
    struct Script(std::collections::VecDeque<Result<Vec<u8>, String>>);

    impl Chunks for Script {
        async fn next(&mut self) -> Option<Result<Vec<u8>, String>> {
            self.0.pop_front()
        }
    }

    fn script(sizes: &[usize], error: Option<&str>) -> Script {
        let mut byte = 0u8;
        let mut chunks: std::collections::VecDeque<_> = sizes
            .iter()
            .map(|&n| {
                Ok((0..n)
                    .map(|_| {
                        byte = byte.wrapping_add(1);
                        byte
                    })
                    .collect())
            })
            .collect();
        if let Some(e) = error {
            chunks.push_back(Err(e.to_owned()));
        }
        Script(chunks)
    }

    fn run(memory: &Memory, chunks: Script, len: u64) -> Result<(), FillError> {
        futures::executor::block_on(fill(memory, chunks, len, 10))
    }

    #[test]
    fn a_clean_stream_of_the_length_is_completed_in_equal_parts() {
        use Call::*;
        // (chunk sizes, length) → calls, with parts of 10 bytes
        let cases: &[(&[usize], u64, &[Call])] = &[
            (
                &[3, 3, 3, 3, 3, 3, 3, 3, 3, 2],
                29,
                &[Part(1, 10), Part(2, 10), Part(3, 9)],
            ),
            (&[25, 5], 30, &[Part(1, 10), Part(2, 10), Part(3, 10)]),
            (&[1], 1, &[Part(1, 1)]),
            (&[0, 10, 0], 10, &[Part(1, 10)]),
        ];
        for (sizes, len, want) in cases {
            let memory = Memory::default();
            let chunks = script(sizes, None);
            assert_eq!(run(&memory, chunks, *len), Ok(()), "{sizes:?}");
            let mut want = want.to_vec();
            let numbers = (1..=want.len() as u16).collect();
            want.push(Complete(numbers));
            assert_eq!(*memory.calls.borrow(), want, "{sizes:?}");
            let sent = memory.bytes.borrow();
            assert_eq!(sent.len() as u64, *len);
            assert!(sent.iter().zip(1u8..).all(|(b, i)| *b == i), "in order");
        }
    }

    #[test]
    fn a_wrong_stream_is_aborted_and_never_completed() {
        use Call::*;
        // (chunk sizes, error at the end, length) → why refused, calls
        type Case = (
            &'static [usize],
            Option<&'static str>,
            u64,
            &'static str,
            &'static [Call],
        );
        let cases: &[Case] = &[
            (
                &[10, 5],
                Some("digest mismatch"),
                30,
                "stream: digest mismatch",
                &[Part(1, 10), Abort],
            ),
            (
                &[10, 5],
                None,
                30,
                "got 15 of 30 bytes",
                &[Part(1, 10), Abort],
            ),
            (&[], None, 30, "got 0 of 30 bytes", &[Abort]),
            (
                &[10, 10, 11],
                None,
                30,
                "more than 30 bytes",
                &[Part(1, 10), Part(2, 10), Abort],
            ),
            (&[40], None, 30, "more than 30 bytes", &[Abort]),
        ];
        for (sizes, error, len, why, want) in cases {
            let memory = Memory::default();
            let got = run(&memory, script(sizes, *error), *len);
            let refused = FillError::Refused {
                why: why.to_string(),
                aborted: true,
            };
            assert_eq!(got, Err(refused), "{sizes:?} {error:?}");
            assert_eq!(*memory.calls.borrow(), *want, "{sizes:?} {error:?}");
        }
    }

    #[test]
    fn a_failed_part_or_abort_is_reported_and_the_upload_dropped() {
        use Call::*;
        let memory = Memory {
            fail_part: Some(2),
            ..Memory::default()
        };
        let got = run(&memory, script(&[10, 10, 10], None), 30);
        assert_eq!(
            got,
            Err(FillError::Store(StoreError("part 2 refused".into())))
        );
        assert_eq!(
            *memory.calls.borrow(),
            [Part(1, 10), Part(2, 10), Abort],
            "no part after the failed one, and never completed"
        );

        let memory = Memory {
            fail_abort: true,
            ..Memory::default()
        };
        let got = run(&memory, script(&[5], Some("reset")), 30).unwrap_err();
        assert_eq!(
            got.to_string(),
            "refused: stream: reset (and the abort failed)"
        );
        let line: serde_json::Value =
            serde_json::from_str(&got.log_line("blobs/sha256/ab")).unwrap();
        assert_eq!(
            line,
            serde_json::json!({"fill": "blobs/sha256/ab", "multipart": true,
                "error": "refused: stream: reset (and the abort failed)"})
        );
    }

    #[test]
    fn a_fill_is_one_put_spooled_or_multipart_by_its_length_and_where_it_runs() {
        let threshold = 64 * 1024 * 1024;
        let seg = SEGMENT_BYTES;
        for (len, followable, want) in [
            (0, true, FillPlan::Single),
            (seg, true, FillPlan::Single),
            (seg + 1, true, FillPlan::Spooled),
            (seg + 1, false, FillPlan::Single),
            (threshold, true, FillPlan::Spooled),
            (threshold, false, FillPlan::Single),
            (threshold + 1, true, FillPlan::Multipart),
            (threshold + 1, false, FillPlan::Multipart),
        ] {
            assert_eq!(plan(len, followable, threshold), want, "{len} {followable}");
        }
    }
}
