//! Fills a cold herd can follow. At a blob's coalescing owner, a fill of a large blob is stored
//! segment by segment under `spool/` (`crate::cache::keys::spool_segment`) as its bytes arrive,
//! and its latest bytes are kept in memory until their segment has landed. Every later client of
//! the same blob, while the fill runs, gets its response headers at once and the bytes from the
//! first one on: what has gone by is read back from the spooled segments, what is new is handed on
//! as it arrives, at the upstream's pace. Still one upstream GET fills the cache.
//!
//! Nothing partial is served as complete: the pump (`super::pump`) hands the spool the last chunk
//! only after the length and digest proved right, and a follower's stream is a
//! `FixedLengthStream` of the blob's size, so a fill that fails aborts every follower short of the
//! end, as it does the filling client.
//!
//! Memory stays flat: at most one segment is being stored while the next one collects (the pump
//! waits for storage beyond that), a follower takes bytes only as its client reads them, and a
//! follower that falls behind reads from storage, not from memory. When the fill has proved
//! right, the blob's own object is put together from the segments — an R2 put that carries the
//! digest, as every fill's does — and the segments are deleted once no follower reads them.
//! Which fills are followed (the registry's evidence) is the core's decision (`Blobs::filling`).

use super::js::failure;
use super::pump::{fixed_length, now_ms, Outlet};
use crate::cache::keys;
use crate::oci::{Algorithm, Digest};
use crate::ports::{Stored, REGISTRIES_METADATA};
use futures::channel::oneshot;
use futures::future::LocalBoxFuture;
use js_sys::{Reflect, Uint8Array};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{ReadableStream, ReadableStreamDefaultReader};
use worker::{console_error, Bucket, Data};

use crate::cache::spool::{Chunk, End, Next, Spool};

impl Chunk for Uint8Array {
    fn bytes(&self) -> u64 {
        self.length() as u64
    }
}

/// Bytes one follower's client may leave untaken before its feed waits: small, since a herd has
/// many followers (the bytes themselves are mostly the fill's own chunks, shared).
const FOLLOWER_WINDOW_BYTES: u64 = 512 * 1024;

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
        let outlet = Outlet::with_window(Some(&fixed.writable()), FOLLOWER_WINDOW_BYTES);
        let task = feed(bucket.clone(), fill, outlet);
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
    spool: Spool<Uint8Array>,
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
/// the module's docs) into the returned stream; the task stores them and serves followers.
pub fn start(
    fills: &Rc<Fills>,
    bucket: &Bucket,
    key: &str,
    size: u64,
    digest: &Digest,
    registries: &[String],
) -> Option<(web_sys::WritableStream, Task)> {
    let through = web_sys::TransformStream::new().ok()?;
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
    let reader: ReadableStreamDefaultReader = through.readable().get_reader().unchecked_into();
    let task = run(fills.clone(), bucket.clone(), fill, reader);
    Some((through.writable(), Box::pin(task)))
}

/// Reads the verified bytes, stores them segment by segment, then the blob's object, then
/// cleans up once no follower needs the segments.
async fn run(
    fills: Rc<Fills>,
    bucket: Bucket,
    fill: Rc<Fill>,
    reader: ReadableStreamDefaultReader,
) {
    let spooled = spool(&bucket, &fill, &reader).await;
    let segments = fill.state.borrow().spool.segments().len();
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
            let _ = reader.cancel();
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
    for n in 0..=segments {
        let _ = bucket.delete(fill.segment_key(n)).await;
    }
}

/// Collects the pump's chunks into segments and stores each; at most one segment is being stored
/// while the next collects (then the pump waits: storage paces the fill).
async fn spool(
    bucket: &Bucket,
    fill: &Rc<Fill>,
    reader: &ReadableStreamDefaultReader,
) -> Result<(), String> {
    let mut collecting: Vec<Uint8Array> = Vec::new();
    let mut collected = 0u64;
    let mut received = 0u64;
    let mut storing: Option<LocalBoxFuture<'static, Result<(u64, u64), String>>> = None;
    loop {
        let result = JsFuture::from(reader.read()).await.map_err(failure)?;
        let done = Reflect::get(&result, &"done".into()).is_ok_and(|d| d.is_truthy());
        if !done {
            let chunk: Uint8Array = Reflect::get(&result, &"value".into())
                .map_err(failure)?
                .dyn_into()
                .map_err(|_| "a chunk that is not bytes".to_owned())?;
            collected += chunk.bytes();
            {
                let mut state = fill.state.borrow_mut();
                received = state.spool.arrived(chunk.clone());
                state.wake();
            }
            collecting.push(chunk);
        }
        if Spool::<Uint8Array>::cut(collected, done) {
            if let Some(previous) = storing.take() {
                landed(fill, previous.await?);
            }
            let n = fill.state.borrow().spool.next_segment();
            let start = received - collected;
            let chunks = std::mem::take(&mut collecting);
            storing = Some(Box::pin(put_segment(
                bucket.clone(),
                fill.segment_key(n),
                start,
                collected,
                chunks,
            )));
            collected = 0;
        }
        if done {
            if let Some(last) = storing.take() {
                landed(fill, last.await?);
            }
            return fill.state.borrow().spool.finished();
        }
    }
}

/// A segment is in storage: followers read it from there, and memory lets its chunks go.
fn landed(fill: &Fill, (start, len): (u64, u64)) {
    let mut state = fill.state.borrow_mut();
    state.spool.landed(start, len);
    state.wake();
}

async fn put_segment(
    bucket: Bucket,
    key: String,
    start: u64,
    len: u64,
    chunks: Vec<Uint8Array>,
) -> Result<(u64, u64), String> {
    let fixed = fixed_length(len).map_err(failure)?;
    let writable = fixed.writable();
    let put = bucket
        .put(&key, Data::ReadableStream(fixed.readable()))
        .execute();
    let write = async {
        let mut outlet = Outlet::of(Some(&writable));
        for chunk in &chunks {
            outlet.write(chunk).await?;
        }
        outlet.close().await;
        Ok::<_, String>(())
    };
    let (put, write) = futures::join!(put, write);
    write?;
    put.map_err(|e| format!("segment {key}: {e}"))?;
    Ok((start, len))
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
        let mut outlet = Outlet::of(Some(&writable));
        for (n, (_, len)) in segments.iter().enumerate() {
            copy(bucket, &fill.segment_key(n), 0, *len, &mut outlet).await?;
        }
        outlet.close().await;
        Ok::<_, String>(())
    };
    let (put, write) = futures::join!(builder.execute(), write);
    write?;
    put.map(|_| ()).map_err(|e| e.to_string())
}

/// Writes `len` bytes of the stored `key` from `offset` to `outlet`.
async fn copy(
    bucket: &Bucket,
    key: &str,
    offset: u64,
    len: u64,
    outlet: &mut Outlet,
) -> Result<(), String> {
    let stream = super::ports::read_range(bucket, key, offset, len).await?;
    let reader: ReadableStreamDefaultReader = stream.get_reader().unchecked_into();
    loop {
        let result = JsFuture::from(reader.read()).await.map_err(failure)?;
        if Reflect::get(&result, &"done".into()).is_ok_and(|d| d.is_truthy()) {
            return Ok(());
        }
        let chunk: Uint8Array = Reflect::get(&result, &"value".into())
            .map_err(failure)?
            .dyn_into()
            .map_err(|_| "a chunk that is not bytes".to_owned())?;
        outlet.write(&chunk).await?;
    }
}

/// What a follower does next.
enum Step {
    Chunks(Vec<Uint8Array>),
    Segment(u64, u64, String),
    Close,
    Fail,
    Wait(oneshot::Receiver<()>),
}

/// Feeds one follower from the first byte to the last: memory when it holds the next bytes,
/// storage when they have gone by, a wait when they have not arrived.
async fn feed(bucket: Bucket, fill: Rc<Fill>, mut outlet: Outlet) {
    let mut at = 0u64;
    let result = loop {
        let step = {
            let mut state = fill.state.borrow_mut();
            match state.spool.next(at) {
                Next::Fail => Step::Fail,
                Next::Close => Step::Close,
                Next::Chunks(chunks) => Step::Chunks(chunks),
                Next::Segment { n, offset, len } => Step::Segment(offset, len, fill.segment_key(n)),
                Next::Wait => {
                    let (tx, rx) = oneshot::channel();
                    state.waiters.push(tx);
                    Step::Wait(rx)
                }
            }
        };
        match step {
            Step::Chunks(chunks) => {
                for chunk in &chunks {
                    if outlet.write(chunk).await.is_err() {
                        break;
                    }
                    at += chunk.length() as u64;
                }
                if !outlet.open() {
                    break Err("the client went away".to_owned());
                }
            }
            Step::Segment(offset, len, key) => {
                if let Err(e) = copy(&bucket, &key, offset, len, &mut outlet).await {
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
        Ok(()) => outlet.close().await,
        Err(why) => outlet.abort(&why).await,
    }
    let mut state = fill.state.borrow_mut();
    state.spool.followers -= 1;
    state.wake();
}
