//! A spooled fill's state (see `crate::glue`'s spool): the blob's verified bytes as they arrive
//! at its owner, streamed into segments of `SEGMENT_BYTES` that go to storage one after another,
//! and, for each follower (a herd's later client), where its next bytes come from: the landed
//! segments, or a wait for the next one. Pure: the glue stores and streams the bytes.

use super::multipart::SEGMENT_BYTES;

/// Where a fill stands.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum End {
    Running,
    /// Every byte arrived and proved right (the blob's object may not have landed yet).
    Proved,
    Failed,
    /// The blob's object is stored (or its put failed: then later requests fetch again).
    Done,
}

/// What a follower at some byte does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// The next bytes are in landed segment `n`: `len` bytes from `offset` in it.
    Segment { n: usize, offset: u64, len: u64 },
    /// Every byte was given.
    Close,
    /// The fill failed: so does the follower (nothing partial is served as complete).
    Fail,
    /// The next bytes have not landed yet.
    Wait,
}

/// One spooled fill of `size` bytes.
#[derive(Debug)]
pub struct Spool {
    size: u64,
    /// Segments in storage: (first byte, length), in order, without gaps.
    landed: Vec<(u64, u64)>,
    pub end: End,
    pub followers: usize,
}

impl Spool {
    pub fn new(size: u64) -> Self {
        Spool {
            size,
            landed: Vec::new(),
            end: End::Running,
            followers: 0,
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether a later client may follow this fill (it has not failed, nor finished).
    pub fn followable(&self) -> bool {
        matches!(self.end, End::Running | End::Proved)
    }

    /// The segment that starts at byte `start` (a multiple of `SEGMENT_BYTES`): its number, and
    /// its length (a whole segment, or the rest; 0 past the end).
    pub fn segment(&self, start: u64) -> (usize, u64) {
        let n = (start / SEGMENT_BYTES) as usize;
        (n, SEGMENT_BYTES.min(self.size.saturating_sub(start)))
    }

    /// The end of the stream: an error unless every byte has landed.
    pub fn finished(&self) -> Result<(), String> {
        match self.landed_end() == self.size {
            true => Ok(()),
            false => Err(format!(
                "stored {} of {} bytes",
                self.landed_end(),
                self.size
            )),
        }
    }

    /// How many segments may have been begun in storage, for cleaning up: the landed ones, and
    /// after them at most one landing, one being written and one opened ahead — never more
    /// than the blob has.
    pub fn segments_begun(&self) -> usize {
        let all = self.size.div_ceil(SEGMENT_BYTES) as usize;
        (self.landed.len() + 3).min(all)
    }

    /// The segments in storage, in order.
    pub fn segments(&self) -> &[(u64, u64)] {
        &self.landed
    }

    /// Segment `len` bytes from `start` is in storage: followers read it from there.
    pub fn landed(&mut self, start: u64, len: u64) {
        debug_assert_eq!(start, self.landed_end(), "segments land in order");
        self.landed.push((start, len));
    }

    fn landed_end(&self) -> u64 {
        self.landed.last().map_or(0, |(start, len)| start + len)
    }

    /// What a follower that has had the bytes before `at` does next: storage when the next bytes
    /// have landed, a wait when they have not.
    pub fn next(&self, at: u64) -> Next {
        if self.end == End::Failed {
            return Next::Fail;
        }
        if at == self.size {
            return Next::Close;
        }
        match self
            .landed
            .iter()
            .enumerate()
            .find(|(_, (start, len))| *start <= at && at < start + len)
        {
            Some((n, (start, len))) => Next::Segment {
                n,
                offset: at - start,
                len: start + len - at,
            },
            None => Next::Wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_follower_reads_what_has_landed_and_waits_for_the_rest() {
        let mut spool = Spool::new(10);
        assert_eq!(spool.next(0), Next::Wait, "nothing landed");
        spool.landed(0, 7);
        let segment = |n, offset, len| Next::Segment { n, offset, len };
        assert_eq!(spool.next(0), segment(0, 0, 7));
        assert_eq!(spool.next(5), segment(0, 5, 2));
        assert_eq!(spool.next(7), Next::Wait, "byte 7 has not landed");
        assert_eq!(spool.finished(), Err("stored 7 of 10 bytes".to_owned()));
        spool.landed(7, 3);
        assert_eq!(spool.next(8), segment(1, 1, 2));
        assert_eq!(spool.next(10), Next::Close);
        assert_eq!(spool.segments(), &[(0, 7), (7, 3)]);
        assert_eq!(spool.finished(), Ok(()));
    }

    #[test]
    fn a_failed_fill_fails_every_follower() {
        let mut spool = Spool::new(10);
        spool.landed(0, 4);
        assert!(spool.followable());
        spool.end = End::Failed;
        assert!(!spool.followable());
        for at in [0, 4, 10] {
            assert_eq!(spool.next(at), Next::Fail, "{at}");
        }
    }

    #[test]
    fn segments_are_whole_but_the_last() {
        let size = 2 * SEGMENT_BYTES + 5;
        let spool = Spool::new(size);
        assert_eq!(spool.segment(0), (0, SEGMENT_BYTES));
        assert_eq!(spool.segment(SEGMENT_BYTES), (1, SEGMENT_BYTES));
        assert_eq!(spool.segment(2 * SEGMENT_BYTES), (2, 5));
        assert_eq!(spool.segment(size).1, 0, "nothing past the end");
        let whole = Spool::new(SEGMENT_BYTES);
        assert_eq!(whole.segment(0), (0, SEGMENT_BYTES));
        assert_eq!(whole.segment(SEGMENT_BYTES).1, 0);
    }

    #[test]
    fn cleaning_up_covers_every_segment_begun_and_no_more_than_the_blob_has() {
        let mut big = Spool::new(10 * SEGMENT_BYTES);
        assert_eq!(
            big.segments_begun(),
            3,
            "one landing, one written, one opened ahead"
        );
        big.landed(0, SEGMENT_BYTES);
        assert_eq!(big.segments_begun(), 4);
        let mut two = Spool::new(SEGMENT_BYTES + 1);
        assert_eq!(two.segments_begun(), 2);
        two.landed(0, SEGMENT_BYTES);
        two.landed(SEGMENT_BYTES, 1);
        assert_eq!(two.finished(), Ok(()));
        assert_eq!(
            two.segments_begun(),
            2,
            "a finished fill: exactly its segments"
        );
    }
}
