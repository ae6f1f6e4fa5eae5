//! Upstream bodies as decisions: when to stop waiting for the next bytes, and whether what arrived
//! is the blob its digest names. The glue owns the timers and the streams and only carries out
//! what this says; nothing here reads a clock (every time is a parameter, in milliseconds) or
//! touches a stream.
//!
//! Three limits keep a slow or hostile upstream from holding the door:
//! - **idle**: a body that sends no byte for `UPSTREAM_IDLE_TIMEOUT_SECONDS` while the door is
//!   waiting for one is aborted. The clock runs only while the door waits for upstream, so a
//!   client (or R2) that reads slowly never counts against upstream.
//! - **whole answer**: a body read whole (a manifest, at most 4 MiB, or a token) must have arrived
//!   `UPSTREAM_TIMEOUT_SECONDS` after its request was sent, headers included: a manifest that
//!   dribbles one byte every few seconds defeats an idle timeout alone. A blob has no such deadline
//!   (a large layer may take minutes); it has the idle timeout.
//! - **turn**: a coalescing owner serves one request at a time and holds its turn until its cache
//!   fill lands, so the requests queued behind it are cache hits. It holds the turn at most
//!   [`Limits::turn_ms`] after answering; then the next request goes ahead (finding no blob, it
//!   fetches for itself) while the slow fill carries on.
//!
//! And one check keeps a wrong blob from ending cleanly: a streamed blob is counted and hashed as
//! it passes ([`Tally`]); when it ends short, long, or hashing to another digest, the client's stream
//! is errored (so the client sees a failed transfer, not a clean `200`) and nothing is stored.

use crate::oci::Digest;
use crate::ports::NetError;
use std::fmt;

/// `UPSTREAM_IDLE_TIMEOUT_SECONDS` when unset.
pub const DEFAULT_IDLE_SECONDS: u64 = 20;
/// The longest idle timeout accepted: a body silent for five minutes is not coming.
pub const MAX_IDLE_SECONDS: u64 = 300;
/// The slowest cache fill a coalescing owner keeps its turn for: 1 MiB/s. A fill slower than that
/// (or one that never ends) releases the queue behind it; see [`Limits::turn_ms`].
pub const MIN_FILL_BYTES_PER_SECOND: u64 = 1024 * 1024;

/// The time limits on upstream answers, from the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `UPSTREAM_TIMEOUT_SECONDS`: headers of any answer, and the whole of an answer read whole.
    pub answer_seconds: u64,
    /// `UPSTREAM_IDLE_TIMEOUT_SECONDS`: the longest silence inside a body.
    pub idle_seconds: u64,
}

impl Limits {
    /// How long a coalescing owner keeps its turn after answering a request whose cache fill
    /// streams `len` bytes (milliseconds): the answer timeout plus the idle timeout, plus one
    /// second per MiB of the blob ([`MIN_FILL_BYTES_PER_SECOND`]). With the defaults (15 s and
    /// 20 s), 35 s for a small blob, about 2 min 40 s for a 128 MiB layer.
    pub fn turn_ms(&self, len: Option<u64>) -> u64 {
        let base = self.answer_seconds.saturating_add(self.idle_seconds);
        let transfer_ms = len
            .unwrap_or(0)
            .saturating_mul(1000)
            .checked_div(MIN_FILL_BYTES_PER_SECOND)
            .unwrap_or(0);
        base.saturating_mul(1000).saturating_add(transfer_ms)
    }
}

/// The longest timer the runtime sets (`setTimeout` takes a signed 32-bit delay, in ms).
pub const MAX_TIMER_MS: u64 = i32::MAX as u64;

/// When a coalescing owner lets the next request in, after answering one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// At once: no fill is pending, or the pending fill is one the next requests can follow
    /// (they need not wait for it to land).
    Now,
    /// When the pending fills land, or `deadline_ms` after answering, whichever comes first;
    /// at the deadline the release is logged ([`turn_released_line`]) and the fills carry on.
    Hold { deadline_ms: u64 },
}

/// The owner's turn rule, after answering a request: `pending`, whether the request left cache
/// fills running; `followable`, whether one of the owner's fills can be followed by a herd;
/// `content_length`, the answer's `Content-Length` (the blob being filled), which lengthens the
/// deadline by [`Limits::turn_ms`].
pub fn release(
    pending: bool,
    followable: bool,
    content_length: Option<&str>,
    limits: Limits,
) -> Release {
    if !pending || followable {
        return Release::Now;
    }
    let len = content_length.and_then(|l| l.trim().parse::<u64>().ok());
    Release::Hold {
        deadline_ms: limits.turn_ms(len).min(MAX_TIMER_MS),
    }
}

/// The JSON log line for a turn released at its deadline, `after_ms` after answering `path`
/// (a path, never a query or a header).
pub fn turn_released_line(path: &str, after_ms: u64) -> String {
    serde_json::json!({"turn": "released", "path": path, "after_ms": after_ms}).to_string()
}

impl crate::config::Config {
    /// The limits on upstream answers these settings give.
    pub fn body_limits(&self) -> Limits {
        Limits {
            answer_seconds: self.upstream_timeout_seconds,
            idle_seconds: self.upstream_idle_timeout_seconds,
        }
    }
}

/// What to do while waiting for a body's next bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Keep waiting; if nothing has arrived, ask again after this many milliseconds (> 0).
    Wait(u64),
    /// No byte for the idle timeout: abort the body.
    Idle,
    /// An answer read whole is not complete by its deadline: abort it.
    Overdue,
}

/// Watches one upstream body: the glue calls [`Watch::reading`] before each read, [`Watch::arrived`]
/// with each chunk, and [`Watch::next`] whenever its timer fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    idle_ms: u64,
    /// When an answer read whole is overdue (absolute, ms); `None` for a streamed body.
    deadline: Option<u64>,
    /// When the current wait for bytes began.
    waiting_since: u64,
    /// Whether bytes arrived since the current wait began (an empty chunk is no progress).
    progressed: bool,
}

impl Watch {
    /// A streamed body (a blob) whose headers arrived at `now`: only the idle timeout applies.
    pub fn stream(limits: Limits, now: u64) -> Watch {
        Watch {
            idle_ms: limits.idle_seconds.saturating_mul(1000),
            deadline: None,
            waiting_since: now,
            progressed: false,
        }
    }

    /// A body read whole, whose request was sent at `sent`: it is also overdue
    /// `UPSTREAM_TIMEOUT_SECONDS` after that.
    pub fn whole(limits: Limits, sent: u64, now: u64) -> Watch {
        Watch {
            deadline: Some(sent.saturating_add(limits.answer_seconds.saturating_mul(1000))),
            ..Watch::stream(limits, now)
        }
    }

    /// The door starts waiting for the next chunk at `now`. Time spent before (handing the last
    /// chunk on to a slow reader) is not upstream's silence; a wait that brought only empty chunks
    /// goes on counting.
    pub fn reading(&mut self, now: u64) {
        if self.progressed {
            self.waiting_since = now;
            self.progressed = false;
        }
    }

    /// A chunk of `bytes` bytes arrived.
    pub fn arrived(&mut self, bytes: usize) {
        if bytes > 0 {
            self.progressed = true;
        }
    }

    /// Whether to keep waiting for the chunk asked for, at `now`.
    pub fn next(&self, now: u64) -> Next {
        if self.deadline.is_some_and(|d| now >= d) {
            return Next::Overdue;
        }
        if self.progressed {
            // A chunk arrived; the glue is about to hand it on and read again.
            return Next::Wait(self.idle_ms.max(1));
        }
        let idle_at = self.waiting_since.saturating_add(self.idle_ms);
        if now >= idle_at {
            return Next::Idle;
        }
        let wake = self.deadline.map_or(idle_at, |d| d.min(idle_at));
        Next::Wait(wake - now)
    }

    /// Why a body was given up on, for [`Next::Idle`] and [`Next::Overdue`].
    pub fn failure(&self, next: Next) -> Option<Wrong> {
        match next {
            Next::Wait(_) => None,
            Next::Idle => Some(Wrong::Idle {
                seconds: self.idle_ms / 1000,
            }),
            Next::Overdue => Some(Wrong::Overdue),
        }
    }
}

/// Why an upstream body was refused: the door errors the client's stream and stores nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wrong {
    /// No byte for this many seconds.
    Idle { seconds: u64 },
    /// Not complete by `UPSTREAM_TIMEOUT_SECONDS` after its request was sent.
    Overdue,
    /// The stream ended before `expected` bytes (a cut-short transfer).
    Short { expected: u64, got: u64 },
    /// More bytes than `expected`.
    Long { expected: u64 },
    /// The bytes hash to `got`, not to the digest asked for.
    Mismatch { got: String },
    /// The upstream stream broke off (a reset connection, a chunked body cut short).
    Broken(String),
}

impl fmt::Display for Wrong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Wrong::Idle { seconds } => write!(f, "upstream sent no byte for {seconds} s"),
            Wrong::Overdue => f.write_str("upstream answer still incomplete at its deadline"),
            Wrong::Short { expected, got } => {
                write!(f, "upstream sent {got} of {expected} bytes")
            }
            Wrong::Long { expected } => write!(f, "upstream sent more than {expected} bytes"),
            Wrong::Mismatch { got } => write!(f, "bytes hash to {got}"),
            Wrong::Broken(why) => write!(f, "upstream body broke off: {why}"),
        }
    }
}

impl Wrong {
    /// The upstream failure this is, for an answer read whole: a timeout answers 504 (or serves a
    /// stale copy), the rest 502.
    pub fn net_error(&self) -> NetError {
        match self {
            Wrong::Idle { .. } | Wrong::Overdue => NetError::Timeout,
            other => NetError::Failed(other.to_string()),
        }
    }

    /// The JSON log line for a blob refused while streaming. It names the digest and the reason,
    /// never a header (headers carry credentials).
    pub fn log_line(&self, digest: &Digest, stored: bool) -> String {
        serde_json::json!({
            "blob": digest.to_string(),
            "refused": self.to_string(),
            "client": "stream errored",
            "stored": stored,
        })
        .to_string()
    }
}

/// Counts a streamed blob and checks it at its end: exactly `len` bytes (when known) that hash to
/// the digest asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    len: Option<u64>,
    seen: u64,
}

impl Tally {
    pub fn new(len: Option<u64>) -> Tally {
        Tally { len, seen: 0 }
    }

    /// A chunk of `bytes` passed; more than the length announced is refused at once.
    pub fn add(&mut self, bytes: u64) -> Result<(), Wrong> {
        self.seen = self.seen.saturating_add(bytes);
        match self.len {
            Some(expected) if self.seen > expected => Err(Wrong::Long { expected }),
            _ => Ok(()),
        }
    }

    /// The stream ended cleanly and its bytes hash to `raw` (the hash bytes, under `expected`'s
    /// algorithm): whether that is the blob asked for.
    pub fn finish(&self, expected: &Digest, raw: &[u8]) -> Result<(), Wrong> {
        if let Some(len) = self.len.filter(|&l| l != self.seen) {
            return Err(Wrong::Short {
                expected: len,
                got: self.seen,
            });
        }
        let got = format!("{}:{}", expected.algorithm().as_str(), hex::encode(raw));
        if got == expected.to_string() {
            Ok(())
        } else {
            Err(Wrong::Mismatch { got })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Algorithm;

    const LIMITS: Limits = Limits {
        answer_seconds: 15,
        idle_seconds: 20,
    };

    /// A scripted body: `(at, event)` with `Read` (the door asks for a chunk), `Chunk(n)` (n bytes
    /// arrive), `Timer` (the door's timer fires) → what `next` says at each timer.
    enum Ev {
        Read,
        Chunk(usize),
        Timer,
    }

    /// A named script and what `next` says at each of its timers.
    type Case = (&'static str, Watch, &'static [(u64, Ev)], &'static [Next]);

    fn run(mut watch: Watch, script: &[(u64, Ev)]) -> Vec<Next> {
        let mut out = Vec::new();
        for (at, ev) in script {
            match ev {
                Ev::Read => watch.reading(*at),
                Ev::Chunk(n) => watch.arrived(*n),
                Ev::Timer => out.push(watch.next(*at)),
            }
        }
        out
    }

    #[test]
    fn idle_bodies_are_given_up_and_steady_ones_are_not() {
        use Ev::*;
        let cases: &[Case] = &[
            (
                "silent from the start: idle at 20 s",
                Watch::stream(LIMITS, 1000),
                &[(1000, Read), (21_000, Timer)],
                &[Next::Idle],
            ),
            (
                "the first timer comes early: wait the rest",
                Watch::stream(LIMITS, 1000),
                &[(1000, Read), (5000, Timer)],
                &[Next::Wait(16_000)],
            ),
            (
                "a byte every 19 s never idles",
                Watch::stream(LIMITS, 0),
                &[
                    (0, Read),
                    (19_000, Chunk(1)),
                    (19_000, Read),
                    (38_000, Chunk(1)),
                    (38_000, Read),
                    (57_000, Timer),
                ],
                &[Next::Wait(1000)],
            ),
            (
                "time spent handing a chunk on is not upstream's silence",
                Watch::stream(LIMITS, 0),
                &[
                    (0, Read),
                    (1000, Chunk(10)),
                    (60_000, Read),
                    (70_000, Timer),
                ],
                &[Next::Wait(10_000)],
            ),
            (
                "empty chunks are no progress",
                Watch::stream(LIMITS, 0),
                &[
                    (0, Read),
                    (10_000, Chunk(0)),
                    (10_000, Read),
                    (19_000, Chunk(0)),
                    (19_000, Read),
                    (20_000, Timer),
                ],
                &[Next::Idle],
            ),
            (
                "a timer between a chunk and the next read waits on",
                Watch::stream(LIMITS, 0),
                &[(0, Read), (25_000, Chunk(5)), (25_000, Timer)],
                &[Next::Wait(20_000)],
            ),
        ];
        for (name, watch, script, want) in cases {
            assert_eq!(run(watch.clone(), script), *want, "{name}");
        }
    }

    #[test]
    fn an_answer_read_whole_is_due_at_its_deadline_however_it_dribbles() {
        use Ev::*;
        // Sent at 0, headers at 2 s: due at 15 s. A byte every 3 s keeps it from idling.
        let mut script = vec![(2000, Read)];
        for t in (5000..=14_000).step_by(3000) {
            script.push((t, Chunk(1)));
            script.push((t, Read));
        }
        script.push((14_000, Timer));
        script.push((15_000, Timer));
        let got = run(Watch::whole(LIMITS, 0, 2000), &script);
        assert_eq!(got, vec![Next::Wait(1000), Next::Overdue]);

        // The timer is set for whichever comes first: the deadline or the idle timeout.
        let idle_first = Limits {
            answer_seconds: 60,
            idle_seconds: 5,
        };
        assert_eq!(
            run(Watch::whole(idle_first, 0, 0), &[(0, Read), (1000, Timer)]),
            vec![Next::Wait(4000)]
        );
        assert_eq!(
            run(Watch::whole(LIMITS, 0, 0), &[(0, Read), (1000, Timer)]),
            vec![Next::Wait(14_000)]
        );
        // A stream has no deadline at all.
        assert_eq!(
            run(
                Watch::stream(LIMITS, 0),
                &[(0, Read), (3_600_000, Chunk(1)), (3_600_000, Timer)]
            ),
            vec![Next::Wait(20_000)]
        );
    }

    #[test]
    fn timeouts_are_timeouts_and_the_rest_are_failures() {
        let watch = Watch::stream(LIMITS, 0);
        assert_eq!(watch.failure(Next::Wait(5)), None);
        let idle = watch.failure(Next::Idle).unwrap();
        assert_eq!(idle, Wrong::Idle { seconds: 20 });
        assert_eq!(idle.net_error(), NetError::Timeout);
        assert_eq!(
            watch.failure(Next::Overdue).unwrap().net_error(),
            NetError::Timeout
        );
        assert!(matches!(
            Wrong::Broken("reset".into()).net_error(),
            NetError::Failed(_)
        ));
    }

    #[test]
    fn the_turn_covers_the_timeouts_and_a_slow_transfer() {
        assert_eq!(LIMITS.turn_ms(None), 35_000);
        assert_eq!(LIMITS.turn_ms(Some(1000)), 35_000);
        assert_eq!(LIMITS.turn_ms(Some(128 << 20)), 35_000 + 128_000);
        let short = Limits {
            answer_seconds: 3,
            idle_seconds: 2,
        };
        assert_eq!(short.turn_ms(Some(3 << 20)), 8000);
        let huge = Limits {
            answer_seconds: u64::MAX,
            idle_seconds: u64::MAX,
        };
        assert_eq!(huge.turn_ms(Some(u64::MAX)), u64::MAX);
    }

    #[test]
    fn the_owner_releases_its_turn_at_once_or_holds_it_until_a_deadline() {
        let hold = |deadline_ms| Release::Hold { deadline_ms };
        // (pending fills, a followable fill, Content-Length) → release
        let cases: &[(bool, bool, Option<&str>, Release)] = &[
            (false, false, None, Release::Now),
            (false, true, Some("1048576"), Release::Now),
            (true, true, Some("1048576"), Release::Now),
            (true, false, None, hold(35_000)),
            (true, false, Some("1048576"), hold(36_000)),
            (true, false, Some(" 134217728 "), hold(35_000 + 128_000)),
            (true, false, Some("12 MiB"), hold(35_000)),
            (true, false, Some("-5"), hold(35_000)),
            (true, false, Some(""), hold(35_000)),
        ];
        for &(pending, followable, len, want) in cases {
            assert_eq!(
                release(pending, followable, len, LIMITS),
                want,
                "pending {pending}, followable {followable}, length {len:?}"
            );
        }
        // A deadline the runtime's timer cannot take is cut to the longest it can.
        let long = Limits {
            answer_seconds: u64::MAX / 2000,
            idle_seconds: 0,
        };
        assert_eq!(release(true, false, None, long), hold(MAX_TIMER_MS));
        // Settings that do not load give zero limits: the turn is held for nothing.
        let none = Limits {
            answer_seconds: 0,
            idle_seconds: 0,
        };
        assert_eq!(release(true, false, Some("10"), none), hold(0));
    }

    #[test]
    fn the_release_line_names_the_path_and_the_wait() {
        let v: serde_json::Value =
            serde_json::from_str(&turn_released_line("/v2/a/blobs/sha256:ab", 35_000)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"turn": "released", "path": "/v2/a/blobs/sha256:ab", "after_ms": 35_000})
        );
    }

    #[test]
    fn a_blob_must_be_its_length_and_hash_to_its_digest() {
        let bytes = b"layer bytes";
        let digest = Digest::of(Algorithm::Sha256, bytes);
        let raw = digest.raw();
        let other = Digest::of(Algorithm::Sha256, b"other").raw();

        let mut exact = Tally::new(Some(11));
        assert_eq!(exact.add(5), Ok(()));
        assert_eq!(exact.add(6), Ok(()));
        assert_eq!(exact.finish(&digest, &raw), Ok(()));
        assert_eq!(
            exact.finish(&digest, &other),
            Err(Wrong::Mismatch {
                got: Digest::of(Algorithm::Sha256, b"other").to_string()
            })
        );

        let mut short = Tally::new(Some(11));
        short.add(4).unwrap();
        assert_eq!(
            short.finish(&digest, &raw),
            Err(Wrong::Short {
                expected: 11,
                got: 4
            })
        );

        let mut long = Tally::new(Some(11));
        long.add(11).unwrap();
        assert_eq!(long.add(1), Err(Wrong::Long { expected: 11 }));

        // No length announced (a chunked pass-through): only the digest decides.
        let mut unknown = Tally::new(None);
        unknown.add(11).unwrap();
        assert_eq!(unknown.finish(&digest, &raw), Ok(()));
        let mut cut = Tally::new(None);
        cut.add(3).unwrap();
        assert!(matches!(
            cut.finish(&digest, &Digest::of(Algorithm::Sha256, b"lay").raw()),
            Err(Wrong::Mismatch { .. })
        ));

        let sha512 = Digest::of(Algorithm::Sha512, bytes);
        let mut t = Tally::new(Some(11));
        t.add(11).unwrap();
        assert_eq!(t.finish(&sha512, &sha512.raw()), Ok(()));
        assert!(t.finish(&sha512, &raw).is_err(), "a sha256 is no sha512");
    }

    #[test]
    fn the_log_line_is_json_naming_the_digest() {
        let digest = Digest::of(Algorithm::Sha256, b"x");
        let line = Wrong::Short {
            expected: 10,
            got: 3,
        }
        .log_line(&digest, false);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["blob"], digest.to_string());
        assert_eq!(v["refused"], "upstream sent 3 of 10 bytes");
        assert_eq!(v["stored"], false);
    }
}
