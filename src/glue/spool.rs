//! Fills a cold herd can follow. At a blob's coalescing owner, a fill of a large blob is streamed
//! segment by segment into storage under `spool/` (`crate::cache::keys::spool_segment`) as its
//! bytes arrive: the pump writes each chunk straight into the current segment's put ([`Writer`]).
//! Every later client of the same blob, while the fill runs, gets its response headers at once and
//! the bytes from the first one on, read back from the segments that have landed: at most a
//! segment behind the fill, at the upstream's pace. Still one upstream GET fills the cache.
//!
//! Nothing partial is served as complete: the pump (`super::pump`) hands the spool the last chunk
//! only after the length and digest proved right, so the last segment lands only then; and a
//! follower's stream is a `FixedLengthStream` of the blob's size, so a fill that fails aborts
//! every follower short of the end, as it does the filling client.
//!
//! Memory stays flat: the spool keeps no bytes of its own. A chunk is written once, into its
//! segment's put, and its buffer goes back to the pump once storage has taken it; at most one
//! segment is still landing while the next streams (then the pump waits: storage paces the fill).
//! Followers and the blob's own object read the segments back through the runtime's own pipes,
//! so those bytes never pass through JS. When the fill has proved right, the blob's object is put
//! together from the segments — an R2 put that carries the digest, as every fill's does — and the
//! segments are deleted once no follower reads them. Which fills are followed (the registry's
//! evidence) is the core's decision (`Blobs::filling`).

use super::js::failure;
use super::ports::pipe_range;
use super::pump::{fixed_length, now_ms, Lease, Outlet};
use crate::cache::keys;
use crate::cache::spool::{End, Next, Spool};
use crate::oci::{Algorithm, Digest};
use crate::ports::{Stored, REGISTRIES_METADATA};
use futures::channel::oneshot;
use futures::future::LocalBoxFuture;
use js_sys::Uint8Array;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use wasm_bindgen_futures::JsFuture;
use web_sys::{ReadableStream, WritableStream};
use worker::{console_error, Bucket, Data};

/// The fills under way at one owner that a client may follow, by blob key.
#[derive(Default)]
pub struct Fills(RefCell<HashMap<String, Rc<Fill>>>);

impl Fills {
    /// What the fill of `key` under way will store, if one runs and has not failed.
    pub fn filling(&self, key: &str) -> Option<Stored> {
        let fills = self.0.borrow();
        let fill = fills.get(key)?;
        let followable = fill.state.borrow().spool.followable();
        followable.then(|| Stored {
            size: fill.size(),
            registries: fill.registries.clone(),
        })
    }

    /// Whether a fill is under way here (its owner then lets the next request in at once).
    pub fn running(&self) -> bool {
        self.0
            .borrow()
            .values()
            .any(|f| f.state.borrow().spool.followable())
    }

    /// A follower of the fill of `key`: its client's stream and the task that feeds it.
    pub fn follow(&self, bucket: &Bucket, key: &str) -> Option<(ReadableStream, Task)> {
        let fill = self.0.borrow().get(key).cloned()?;
        let fixed = fixed_length(fill.size()).ok()?;
        fill.state.borrow_mut().spool.followers += 1;
        let task = feed(bucket.clone(), fill, fixed.writable());
        Some((fixed.readable(), Box::pin(task)))
    }
}

pub type Task = LocalBoxFuture<'static, ()>;

/// One spooled fill.
pub struct Fill {
    key: String,
    started_ms: u64,
    digest: Digest,
    registries: Vec<String>,
    state: RefCell<State>,
}

/// The fill's state (`crate::cache::spool`, which decides what each follower reads next), and
/// the tasks waiting for it to change.
struct State {
    spool: Spool,
    waiters: Vec<oneshot::Sender<()>>,
}

impl State {
    fn wake(&mut self) {
        for w in self.waiters.drain(..) {
            let _ = w.send(());
        }
    }
}

impl Fill {
    /// The blob's length, as its spool knows it.
    fn size(&self) -> u64 {
        self.state.borrow().spool.size()
    }

    fn segment_key(&self, n: usize) -> String {
        keys::spool_segment(&self.key, self.started_ms, n as u32)
    }

    fn finish(&self, end: End) {
        let mut state = self.state.borrow_mut();
        state.spool.end = end;
        state.wake();
    }
}

/// Starts a spooled fill of `key` at its owner: the pump writes the blob's bytes (verified: see
/// the module's docs) into the returned writer; the task puts the blob's object together once
/// they have all landed, and cleans up.
pub fn start(
    fills: &Rc<Fills>,
    bucket: &Bucket,
    key: &str,
    size: u64,
    digest: &Digest,
    registries: &[String],
) -> (Writer, Task) {
    let fill = Rc::new(Fill {
        key: key.to_owned(),
        started_ms: now_ms(),
        digest: digest.clone(),
        registries: registries.to_vec(),
        state: RefCell::new(State {
            spool: Spool::new(size),
            waiters: Vec::new(),
        }),
    });
    fills.0.borrow_mut().insert(key.to_owned(), fill.clone());
    let (ended, spooled) = oneshot::channel();
    let writer = Writer {
        fill: fill.clone(),
        bucket: bucket.clone(),
        at: 0,
        current: None,
        next: None,
        landing: None,
        ended: Some(ended),
    };
    let task = run(fills.clone(), bucket.clone(), fill, spooled);
    (writer, Box::pin(task))
}

/// Waits for the spool to end, then stores the blob's object from the segments, then cleans up
/// once no follower needs the segments.
async fn run(
    fills: Rc<Fills>,
    bucket: Bucket,
    fill: Rc<Fill>,
    spooled: oneshot::Receiver<Result<(), String>>,
) {
    let spooled = spooled
        .await
        .unwrap_or_else(|_| Err("the pump went away".to_owned()));
    match spooled {
        Ok(()) => {
            fill.finish(End::Proved);
            if let Err(e) = assemble(&bucket, &fill).await {
                console_error!(
                    "{}",
                    serde_json::json!({"fill": fill.key, "spooled": true, "error": e})
                );
            }
            fill.finish(End::Done);
        }
        Err(e) => {
            fill.finish(End::Failed);
            console_error!(
                "{}",
                serde_json::json!({"fill": fill.key, "spooled": true, "error": e})
            );
        }
    }
    // The segments go once no follower reads them any more.
    loop {
        let wait = {
            let mut state = fill.state.borrow_mut();
            if state.spool.followers == 0 {
                break;
            }
            let (tx, rx) = oneshot::channel();
            state.waiters.push(tx);
            rx
        };
        let _ = wait.await;
    }
    {
        let mut map = fills.0.borrow_mut();
        if map.get(&fill.key).is_some_and(|f| Rc::ptr_eq(f, &fill)) {
            map.remove(&fill.key);
        }
    }
    let begun = fill.state.borrow().spool.segments_begun();
    for n in 0..begun {
        let _ = bucket.delete(fill.segment_key(n)).await;
    }
}

/// The pump's storage end for a spooled fill: streams the bytes into one segment's put after
/// another, and tells the fill's task how the spool ended.
pub struct Writer {
    fill: Rc<Fill>,
    bucket: Bucket,
    /// Bytes written so far.
    at: u64,
    /// The segment being written.
    current: Option<Segment>,
    /// The one after it, its put already open.
    next: Option<Segment>,
    /// The segment written and not yet landed.
    landing: Option<Landing>,
    /// How the spool ended, for the fill's task (`None` once said).
    ended: Option<oneshot::Sender<Result<(), String>>>,
}

/// One segment's put: its stream and its outcome.
struct Segment {
    n: usize,
    start: u64,
    len: u64,
    /// Bytes still to write.
    left: u64,
    outlet: Outlet,
    put: oneshot::Receiver<Result<(), String>>,
}

/// A whole segment on its way into storage: the outcome of closing its stream and its put.
struct Landing {
    n: usize,
    start: u64,
    len: u64,
    put: oneshot::Receiver<Result<(), String>>,
}

/// Closes a whole segment's stream at once, in a task of its own (each write's buffer goes back
/// to the pump as storage takes it), and then gives its put's outcome.
fn closed(segment: Segment) -> oneshot::Receiver<Result<(), String>> {
    let Segment {
        mut outlet, put, ..
    } = segment;
    let (done, landed) = oneshot::channel();
    wasm_bindgen_futures::spawn_local(async move {
        outlet.close().await;
        let result = put
            .await
            .unwrap_or_else(|_| Err("the segment's put was dropped".to_owned()));
        let _ = done.send(result);
    });
    landed
}

impl Writer {
    /// Whether the spool still takes bytes (a failed one is dropped: the client goes on).
    pub fn open(&self) -> bool {
        self.ended.is_some()
    }

    /// Writes `chunk` into its segment(s), holding `lease` until storage has taken the bytes.
    pub async fn write(&mut self, chunk: &Uint8Array, lease: Option<Lease>) -> Result<(), String> {
        if !self.open() {
            return Ok(());
        }
        let result = self.stream(chunk, lease).await;
        if let Err(e) = &result {
            self.abort(e).await;
        }
        result
    }

    async fn stream(&mut self, chunk: &Uint8Array, lease: Option<Lease>) -> Result<(), String> {
        let total = chunk.length() as u64;
        let mut done = 0u64;
        while done < total {
            if self.current.is_none() {
                let opened = match self.next.take() {
                    Some(next) => next,
                    None => open_segment(&self.bucket, &self.fill, self.at)?,
                };
                // The next segment's put is opened now, so that it is ready to take bytes the
                // moment this one is whole.
                let after = opened.start + opened.len;
                if after < self.fill.size() {
                    self.next = Some(open_segment(&self.bucket, &self.fill, after)?);
                }
                self.current = Some(opened);
            }
            let current = self.current.as_mut().expect("a segment is open");
            let take = current.left.min(total - done);
            let piece = match take == total {
                true => chunk.clone(),
                false => chunk.subarray(done as u32, (done + take) as u32),
            };
            current.outlet.write(&piece, lease.clone()).await?;
            current.left -= take;
            done += take;
            self.at += take;
            if current.left == 0 {
                self.seal().await?;
            }
        }
        Ok(())
    }

    /// The current segment is whole: its stream closes (by itself, while the next segment
    /// streams), and the one before it must land before more is written (at most one segment
    /// lands while the next streams).
    async fn seal(&mut self) -> Result<(), String> {
        let Some(sealed) = self.current.take() else {
            return Ok(());
        };
        let landing = Landing {
            n: sealed.n,
            start: sealed.start,
            len: sealed.len,
            put: closed(sealed),
        };
        match self.landing.replace(landing) {
            Some(previous) => land(&self.fill, previous).await,
            None => Ok(()),
        }
    }

    /// The end of the verified bytes: the last segment lands, and the fill's task learns
    /// whether every byte is in storage.
    pub async fn close(&mut self) {
        if !self.open() {
            return;
        }
        let result = async {
            if self.current.is_some() {
                return Err(format!("only {} bytes", self.at));
            }
            if let Some(last) = self.landing.take() {
                land(&self.fill, last).await?;
            }
            self.fill.state.borrow().spool.finished()
        }
        .await;
        match result {
            Ok(()) => {
                if let Some(ended) = self.ended.take() {
                    let _ = ended.send(Ok(()));
                }
            }
            Err(e) => self.abort(&e).await,
        }
    }

    /// The bytes were wrong or broke off, or storage failed: the segments still open (the one
    /// being written, the one opened ahead) are aborted, so no put waits for bytes that will not
    /// come, and the fill fails.
    pub async fn abort(&mut self, why: &str) {
        for mut open in [self.current.take(), self.next.take()]
            .into_iter()
            .flatten()
        {
            open.outlet.abort(&why).await;
        }
        self.fail(why);
    }

    /// Followers fail at once (nothing partial is served as complete), the task learns why.
    fn fail(&mut self, why: &str) {
        self.fill.finish(End::Failed);
        if let Some(ended) = self.ended.take() {
            let _ = ended.send(Err(why.to_owned()));
        }
    }
}

/// Starts the put of the segment that begins at byte `at`.
fn open_segment(bucket: &Bucket, fill: &Fill, at: u64) -> Result<Segment, String> {
    let (n, len) = fill.state.borrow().spool.segment(at);
    if len == 0 {
        return Err(format!("more than {} bytes", fill.size()));
    }
    let fixed = fixed_length(len).map_err(failure)?;
    let (done, put) = oneshot::channel();
    let bucket = bucket.clone();
    let key = fill.segment_key(n);
    let readable = fixed.readable();
    wasm_bindgen_futures::spawn_local(async move {
        let result = bucket
            .put(&key, Data::ReadableStream(readable))
            .execute()
            .await;
        let _ = done.send(
            result
                .map(|_| ())
                .map_err(|e| format!("segment {key}: {e}")),
        );
    });
    Ok(Segment {
        n,
        start: at,
        len,
        left: len,
        outlet: Outlet::of(Some(&fixed.writable())),
        put,
    })
}

/// Waits for a written segment's put: followers read it from storage once it has landed.
async fn land(fill: &Fill, segment: Landing) -> Result<(), String> {
    let landed = segment
        .put
        .await
        .unwrap_or_else(|_| Err(format!("segment {} was dropped", segment.n)));
    landed?;
    let mut state = fill.state.borrow_mut();
    state.spool.landed(segment.start, segment.len);
    state.wake();
    Ok(())
}

/// The blob's own object, from its segments, with the digest for R2 to check again.
async fn assemble(bucket: &Bucket, fill: &Fill) -> Result<(), String> {
    let fixed = fixed_length(fill.size()).map_err(failure)?;
    let writable = fixed.writable();
    let metadata = HashMap::from([(
        REGISTRIES_METADATA.to_owned(),
        Stored::encode_registries(&fill.registries),
    )]);
    let builder = bucket
        .put(&fill.key, Data::ReadableStream(fixed.readable()))
        .custom_metadata(metadata);
    let raw = fill.digest.raw();
    let builder = match fill.digest.algorithm() {
        Algorithm::Sha256 => builder.sha256(raw),
        Algorithm::Sha512 => builder.sha512(raw),
    };
    let segments = fill.state.borrow().spool.segments().to_vec();
    let write = async {
        for (n, (_, len)) in segments.iter().enumerate() {
            pipe_range(bucket, &fill.segment_key(n), 0, *len, &writable).await?;
        }
        JsFuture::from(writable.close()).await.map_err(failure)?;
        Ok::<_, String>(())
    };
    let (put, write) = futures::join!(builder.execute(), write);
    if let Err(e) = &write {
        let _ = JsFuture::from(writable.abort_with_reason(&js_sys::Error::new(e))).await;
    }
    write?;
    put.map(|_| ()).map_err(|e| e.to_string())
}

/// What a follower does next.
enum Step {
    Segment(u64, u64, String),
    Close,
    Fail,
    Wait(oneshot::Receiver<()>),
}

/// Feeds one follower from the first byte to the last: the landed segments, and a wait when the
/// next one has not landed.
async fn feed(bucket: Bucket, fill: Rc<Fill>, writable: WritableStream) {
    let mut at = 0u64;
    let result = loop {
        let step = {
            let mut state = fill.state.borrow_mut();
            match state.spool.next(at) {
                Next::Fail => Step::Fail,
                Next::Close => Step::Close,
                Next::Segment { n, offset, len } => Step::Segment(offset, len, fill.segment_key(n)),
                Next::Wait => {
                    let (tx, rx) = oneshot::channel();
                    state.waiters.push(tx);
                    Step::Wait(rx)
                }
            }
        };
        match step {
            Step::Segment(offset, len, key) => {
                if let Err(e) = pipe_range(&bucket, &key, offset, len, &writable).await {
                    break Err(e);
                }
                at += len;
            }
            Step::Close => break Ok(()),
            Step::Fail => break Err("the fill it followed failed".to_owned()),
            Step::Wait(rx) => {
                let _ = rx.await;
            }
        }
    };
    match result {
        Ok(()) => {
            let _ = JsFuture::from(writable.close()).await;
        }
        Err(why) => {
            let reason = js_sys::Error::new(&why);
            let _ = JsFuture::from(writable.abort_with_reason(&reason)).await;
        }
    }
    let mut state = fill.state.borrow_mut();
    state.spool.followers -= 1;
    state.wake();
}
