//! A spooled fill's state (see `crate::glue`'s spool): the blob's verified bytes as they arrive
//! at its owner, cut into segments that go to storage, with the newest bytes kept in memory until
//! their segment has landed; and, for each follower (a herd's later client), where its next bytes
//! come from. Pure: chunks of any type that knows its length; the glue stores and streams them.

use super::multipart::SEGMENT_BYTES;
use std::collections::VecDeque;

/// A piece of the blob as it arrived.
pub trait Chunk: Clone {
    /// How many bytes it holds.
    fn bytes(&self) -> u64;
}

impl Chunk for Vec<u8> {
    fn bytes(&self) -> u64 {
        self.len() as u64
    }
}

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
pub enum Next<C> {
    /// The next bytes, from memory (at most a few chunks at a time).
    Chunks(Vec<C>),
    /// The next bytes are in landed segment `n`: `len` bytes from `offset` in it.
    Segment { n: usize, offset: u64, len: u64 },
    /// Every byte was given.
    Close,
    /// The fill failed: so does the follower (nothing partial is served as complete).
    Fail,
    /// The next bytes have not arrived yet.
    Wait,
}

/// The most chunks one step hands a follower from memory.
const CHUNKS_PER_STEP: usize = 8;

/// One spooled fill of `size` bytes.
#[derive(Debug)]
pub struct Spool<C> {
    size: u64,
    /// Segments in storage: (first byte, length), in order, without gaps.
    landed: Vec<(u64, u64)>,
    /// Chunks past the landed segments, oldest first, with their offsets.
    memory: VecDeque<(u64, C)>,
    received: u64,
    pub end: End,
    pub followers: usize,
}

impl<C: Chunk> Spool<C> {
    pub fn new(size: u64) -> Self {
        Spool {
            size,
            landed: Vec::new(),
            memory: VecDeque::new(),
            received: 0,
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

    /// A verified chunk arrived; followers may read it from memory now. Returns the bytes received.
    pub fn arrived(&mut self, chunk: C) -> u64 {
        let len = chunk.bytes();
        self.memory.push_back((self.received, chunk));
        self.received += len;
        self.received
    }

    /// Whether the bytes collected since the last cut make a segment to store: a whole segment,
    /// or the rest at the end.
    pub fn cut(collected: u64, done: bool) -> bool {
        collected >= SEGMENT_BYTES || (done && collected > 0)
    }

    /// The end of the stream: an error unless exactly `size` bytes arrived.
    pub fn finished(&self) -> Result<(), String> {
        match self.received == self.size {
            true => Ok(()),
            false => Err(format!("got {} of {} bytes", self.received, self.size)),
        }
    }

    /// The number the next segment stored gets.
    pub fn next_segment(&self) -> usize {
        self.landed.len()
    }

    /// The segments in storage, in order.
    pub fn segments(&self) -> &[(u64, u64)] {
        &self.landed
    }

    /// Segment `len` bytes from `start` is in storage: followers read it from there, and memory
    /// lets its chunks go.
    pub fn landed(&mut self, start: u64, len: u64) {
        self.landed.push((start, len));
        let end = start + len;
        while self.memory.front().is_some_and(|(at, _)| *at < end) {
            self.memory.pop_front();
        }
    }

    fn landed_end(&self) -> u64 {
        self.landed.last().map_or(0, |(start, len)| start + len)
    }

    /// What a follower that has had the bytes before `at` does next: memory when it holds the
    /// next bytes, storage when they have gone by, a wait when they have not arrived.
    pub fn next(&self, at: u64) -> Next<C> {
        if self.end == End::Failed {
            return Next::Fail;
        }
        if at == self.size {
            return Next::Close;
        }
        if self.memory.iter().any(|(offset, _)| *offset == at) {
            let chunks = self
                .memory
                .iter()
                .skip_while(|(offset, _)| *offset < at)
                .take(CHUNKS_PER_STEP)
                .map(|(_, c)| c.clone())
                .collect();
            return Next::Chunks(chunks);
        }
        if at < self.landed_end() {
            let (n, (start, len)) = self
                .landed
                .iter()
                .copied()
                .enumerate()
                .find(|(_, (start, len))| *start <= at && at < start + len)
                .expect("the landed segments have no gaps");
            return Next::Segment {
                n,
                offset: at - start,
                len: start + len - at,
            };
        }
        Next::Wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(n: usize) -> Vec<u8> {
        vec![7; n]
    }

    #[test]
    fn a_follower_reads_memory_then_storage_and_waits_for_what_has_not_arrived() {
        let mut spool = Spool::new(10);
        assert_eq!(spool.next(0), Next::Wait, "nothing arrived");
        assert_eq!(spool.arrived(chunk(3)), 3);
        assert_eq!(spool.arrived(chunk(4)), 7);
        assert_eq!(spool.next(0), Next::Chunks(vec![chunk(3), chunk(4)]));
        assert_eq!(spool.next(3), Next::Chunks(vec![chunk(4)]));
        assert_eq!(spool.next(7), Next::Wait, "byte 7 has not arrived");
        // The first 7 bytes land as segment 0: memory lets them go, storage has them.
        assert_eq!(spool.next_segment(), 0);
        spool.landed(0, 7);
        assert_eq!(spool.next_segment(), 1);
        assert_eq!(
            spool.next(0),
            Next::Segment {
                n: 0,
                offset: 0,
                len: 7
            }
        );
        assert_eq!(
            spool.next(5),
            Next::Segment {
                n: 0,
                offset: 5,
                len: 2
            }
        );
        spool.arrived(chunk(3));
        assert_eq!(spool.next(7), Next::Chunks(vec![chunk(3)]));
        spool.landed(7, 3);
        assert_eq!(
            spool.next(8),
            Next::Segment {
                n: 1,
                offset: 1,
                len: 2
            }
        );
        assert_eq!(spool.next(10), Next::Close);
        assert_eq!(spool.segments(), &[(0, 7), (7, 3)]);
        assert_eq!(spool.finished(), Ok(()));
    }

    #[test]
    fn a_failed_fill_fails_every_follower_and_a_short_one_is_refused() {
        let mut spool = Spool::new(10);
        spool.arrived(chunk(4));
        assert!(spool.followable());
        assert_eq!(spool.finished(), Err("got 4 of 10 bytes".to_owned()));
        spool.end = End::Failed;
        assert!(!spool.followable());
        for at in [0, 4, 10] {
            assert_eq!(spool.next(at), Next::Fail, "{at}");
        }
    }

    #[test]
    fn memory_hands_a_few_chunks_at_a_time_and_segments_are_cut_whole() {
        let mut spool = Spool::new(100);
        for _ in 0..10 {
            spool.arrived(chunk(10));
        }
        let Next::Chunks(chunks) = spool.next(0) else {
            panic!("memory holds byte 0")
        };
        assert_eq!(chunks.len(), CHUNKS_PER_STEP);
        assert!(!Spool::<Vec<u8>>::cut(SEGMENT_BYTES - 1, false));
        assert!(Spool::<Vec<u8>>::cut(SEGMENT_BYTES, false));
        assert!(Spool::<Vec<u8>>::cut(1, true));
        assert!(!Spool::<Vec<u8>>::cut(0, true));
    }
}
