//! Cutting a blob stream into multipart-upload parts. R2 (like S3) takes at most one object of
//! about 5 GiB in a single put; a larger blob is stored as a multipart upload whose parts all have
//! the same size except the last. Pure: bytes in, parts out.

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
}
