//! Carries upstream bodies under the watchdog (`crate::watchdog`): reads them with a timer, and
//! moves a streamed blob to the client (and to storage) so that it ends cleanly only when it was
//! the blob asked for. Every decision — when a wait is too long, whether the bytes are right — is
//! the core's; this file owns the timers, the readers and the writers.
//!
//! A blob goes through [`Pump`]: each chunk read from upstream is written to the client's stream,
//! to storage's (when filling) and to a `crypto.DigestStream` (the runtime's own SHA-256/512, so no
//! byte is copied into wasm or hashed there). Writes are pipelined, but at most `WINDOW_BYTES` may
//! wait untaken by the client or by storage before the pump stops reading upstream (as
//! distribution's proxy copies to the client and its store at once, paced by the slower): memory
//! stays bounded whoever reads slowly, and the idle clock runs only while the
//! door waits for upstream. The last chunk is held back until the end, where the length and digest
//! are checked *before* storage's stream is closed: when they are right, the last chunk goes out and
//! both streams close (and R2, given the checksum too, stores the object); when not — or when
//! upstream stalls, sends too much or breaks off — both streams are aborted short of their length:
//! the client sees a failed transfer, R2 stores nothing, and one JSON line is logged.
//!
//! Read buffers are recycled ([`Pool`]): a chunk's buffer goes back to its pump once every stream
//! it was written to has taken it, and the next read fills it again. A fresh buffer per read is
//! garbage the runtime collects only after tens of MiB have piled up (V8 counts array buffers as
//! external memory), which was most of a cold fill's memory growth. Only streams whose write is
//! done when their reader has taken the bytes get recycled chunks: `FixedLengthStream`s, the
//! digest stream and the spool ([`Store`]); a JS `TransformStream` may still queue a chunk after
//! its write resolved, so a pump writing to one reads into fresh buffers.

use super::spool::Writer;
use crate::oci::{Algorithm, Digest};
use crate::watchdog::{Limits, Next, Tally, Watch, Wrong};
use futures::future::{select, Either, LocalBoxFuture};
use js_sys::{Reflect, Uint8Array};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::pin::Pin;
use std::rc::Rc;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    ReadableStream, ReadableStreamByobReader, ReadableStreamDefaultReader,
    WritableStreamDefaultWriter,
};
use worker::worker_sys::{DigestStream, FixedLengthStream};
use worker::{console_error, Delay};

/// Milliseconds since the epoch, as the runtime's clock says.
pub fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

/// The message of a JS failure (never a header: stream errors name no credentials).
fn describe(e: &JsValue) -> String {
    match e.dyn_ref::<js_sys::Error>() {
        Some(e) => String::from(e.message()),
        None => e.as_string().unwrap_or_else(|| format!("{e:?}")),
    }
}

/// The largest chunk read at once. A fetch body's default reader yields 4 KiB chunks; a BYOB
/// read takes whatever has arrived, up to this (about 250 reads for 64 MiB instead of 16 000:
/// the per-chunk cost is what a pump in wasm pays).
pub(super) const READ_BYTES: u32 = 256 * 1024;

/// A body's reader: bring-your-own-buffer when the stream is a byte stream (every fetch body is).
enum Reader {
    Byob(ReadableStreamByobReader),
    Default(ReadableStreamDefaultReader),
}

impl Reader {
    fn of(stream: &ReadableStream) -> Reader {
        match ReadableStreamByobReader::new(stream) {
            Ok(byob) => Reader::Byob(byob),
            Err(_) => Reader::Default(stream.get_reader().unchecked_into()),
        }
    }

    fn read(&self, pool: Option<&Pool>) -> js_sys::Promise {
        match self {
            // A recycled buffer when one is free; else a fresh one (the last one now belongs to
            // the chunk handed on).
            Reader::Byob(r) => {
                let view = match pool.and_then(Pool::take) {
                    Some(buffer) => Uint8Array::new(&buffer),
                    None => Uint8Array::new_with_length(READ_BYTES),
                };
                r.read_with_array_buffer_view(&view)
            }
            Reader::Default(r) => r.read(),
        }
    }

    fn cancel(&self) {
        let _ = match self {
            Reader::Byob(r) => r.cancel(),
            Reader::Default(r) => r.cancel(),
        };
    }
}

/// The most free read buffers a pump keeps (8 MiB): more than its streams (the client, the
/// digest, storage: each lets 2 MiB wait untaken) hold at once.
const POOL_BUFFERS: usize = 32;

/// A pump's free read buffers, each `READ_BYTES` long.
#[derive(Clone, Default)]
pub struct Pool(Rc<RefCell<Vec<js_sys::ArrayBuffer>>>);

impl Pool {
    pub(super) fn take(&self) -> Option<js_sys::ArrayBuffer> {
        self.0.borrow_mut().pop()
    }

    /// A claim on `buffer` that gives it back here when its last clone is dropped.
    pub(super) fn lease(&self, buffer: js_sys::ArrayBuffer) -> Lease {
        Lease {
            _held: Rc::new(Returns {
                buffer,
                pool: self.clone(),
            }),
        }
    }

    pub(super) fn give(&self, buffer: js_sys::ArrayBuffer) {
        let mut free = self.0.borrow_mut();
        if free.len() < POOL_BUFFERS && buffer.byte_length() == READ_BYTES {
            free.push(buffer);
        }
    }
}

/// A chunk's claim on its read buffer: when the last clone is dropped (every write of the chunk
/// is done), the buffer goes back to its pool.
#[derive(Clone)]
pub struct Lease {
    _held: Rc<Returns>,
}

struct Returns {
    buffer: js_sys::ArrayBuffer,
    pool: Pool,
}

impl Drop for Returns {
    fn drop(&mut self) {
        self.pool.give(self.buffer.clone());
    }
}

/// A chunk read from upstream, and its lease when its buffer is recycled.
pub struct Chunk {
    pub bytes: Uint8Array,
    pub lease: Option<Lease>,
}

/// Reads an upstream body chunk by chunk, giving up when the watch says so.
pub struct WatchedReader {
    reader: Reader,
    /// Where the read buffers come from and go back to (`None`: a fresh buffer per read).
    pool: Option<Pool>,
    pub watch: Watch,
    /// The pending timer and when it fires (ms). One timer serves many reads: when it fires
    /// early (bytes kept arriving) the watch says how much longer to wait, and a new one is set.
    timer: Option<(u64, Pin<Box<Delay>>)>,
}

impl WatchedReader {
    pub fn new(stream: &ReadableStream, watch: Watch) -> WatchedReader {
        WatchedReader {
            reader: Reader::of(stream),
            pool: None,
            watch,
            timer: None,
        }
    }

    /// A reader that recycles its buffers: each chunk carries a lease (see [`Pool`]).
    pub fn recycling(stream: &ReadableStream, watch: Watch) -> WatchedReader {
        WatchedReader {
            pool: Some(Pool::default()),
            ..WatchedReader::new(stream, watch)
        }
    }

    /// The next chunk (`None` at a clean end). Upstream is cancelled when it stalls or breaks.
    pub async fn next(&mut self) -> Result<Option<Chunk>, Wrong> {
        self.watch.reading(now_ms());
        let mut read = JsFuture::from(self.reader.read(self.pool.as_ref()));
        let result = loop {
            let now = now_ms();
            let wait = match self.watch.next(now) {
                Next::Wait(ms) => ms,
                stop => {
                    self.cancel();
                    return Err(self.watch.failure(stop).unwrap_or(Wrong::Overdue));
                }
            };
            let due = now.saturating_add(wait);
            let timer = match &mut self.timer {
                Some((at, timer)) if *at <= due => timer,
                slot => {
                    let delay = Delay::from(std::time::Duration::from_millis(wait));
                    &mut slot.insert((due, Box::pin(delay))).1
                }
            };
            match select(&mut read, timer.as_mut()).await {
                Either::Left((result, _)) => break result,
                Either::Right(((), _)) => self.timer = None,
            }
        };
        let result = result.map_err(|e| Wrong::Broken(describe(&e)))?;
        if Reflect::get(&result, &"done".into()).is_ok_and(|d| d.is_truthy()) {
            return Ok(None);
        }
        let value = Reflect::get(&result, &"value".into()).unwrap_or(JsValue::UNDEFINED);
        match value.dyn_into::<Uint8Array>() {
            Ok(chunk) => {
                self.watch.arrived(chunk.length() as usize);
                let buffer = chunk.buffer();
                // A small read keeps a copy of its own, not the whole read buffer (a dribbling
                // upstream must not pin 256 KiB per byte while a reader is slow); the buffer is
                // free again at once.
                if chunk.length() < READ_BYTES / 4 && buffer.byte_length() > chunk.length() {
                    let bytes = chunk.slice(0, chunk.length());
                    if let Some(pool) = &self.pool {
                        pool.give(buffer);
                    }
                    return Ok(Some(Chunk { bytes, lease: None }));
                }
                let lease = self.pool.as_ref().map(|pool| pool.lease(buffer));
                Ok(Some(Chunk {
                    bytes: chunk,
                    lease,
                }))
            }
            Err(_) => {
                self.cancel();
                Err(Wrong::Broken("a chunk that is not bytes".into()))
            }
        }
    }

    /// Cancels the upstream body (the runtime then drops the connection).
    pub fn cancel(&self) {
        self.reader.cancel();
    }
}

/// Bytes written to one outlet and not yet taken by its reader, at most: writes are pipelined up
/// to this, then the pump waits (memory stays bounded whoever reads slowly).
const WINDOW_BYTES: u64 = 2 * 1024 * 1024;

/// A writer the pump feeds; `None` once its reader has gone away.
pub(super) struct Outlet {
    writer: Option<WritableStreamDefaultWriter>,
    /// Writes not yet taken, oldest first, with their sizes and their chunks' leases.
    pending: VecDeque<(JsFuture, u64, Option<Lease>)>,
    pending_bytes: u64,
    /// Bytes that may wait untaken before `write` waits.
    window: u64,
}

impl Outlet {
    pub(super) fn of(stream: Option<&web_sys::WritableStream>) -> Outlet {
        Outlet::with_window(stream, WINDOW_BYTES)
    }

    /// An outlet that lets at most `window` bytes wait untaken.
    pub(super) fn with_window(stream: Option<&web_sys::WritableStream>, window: u64) -> Outlet {
        Outlet {
            writer: stream.and_then(|s| s.get_writer().ok()),
            pending: VecDeque::new(),
            pending_bytes: 0,
            window,
        }
    }

    pub(super) fn open(&self) -> bool {
        self.writer.is_some()
    }

    /// Queues `chunk`, then waits while more than the window is untaken; holds `lease` until
    /// the reader has taken the bytes.
    pub(super) async fn write(
        &mut self,
        chunk: &Uint8Array,
        lease: Option<Lease>,
    ) -> Result<(), String> {
        let Some(writer) = &self.writer else {
            return Ok(());
        };
        let size = chunk.length() as u64;
        let write = JsFuture::from(writer.write_with_chunk(chunk));
        self.pending.push_back((write, size, lease));
        self.pending_bytes += size;
        while self.pending_bytes > self.window {
            self.settle_one().await?;
        }
        Ok(())
    }

    /// Waits for the oldest pending write; a failed one means the reader went away.
    async fn settle_one(&mut self) -> Result<(), String> {
        let Some((write, size, _lease)) = self.pending.pop_front() else {
            return Ok(());
        };
        self.pending_bytes -= size;
        match write.await {
            Ok(_) => Ok(()),
            Err(e) => {
                self.writer = None;
                self.pending.clear();
                self.pending_bytes = 0;
                Err(describe(&e))
            }
        }
    }

    pub(super) async fn close(&mut self) {
        while !self.pending.is_empty() {
            if self.settle_one().await.is_err() {
                return;
            }
        }
        if let Some(writer) = self.writer.take() {
            let _ = JsFuture::from(writer.close()).await;
        }
    }

    pub(super) async fn abort(&mut self, why: &impl std::fmt::Display) {
        self.pending.clear();
        self.pending_bytes = 0;
        if let Some(writer) = self.writer.take() {
            let reason = js_sys::Error::new(&why.to_string());
            let _ = JsFuture::from(writer.abort_with_reason(&reason)).await;
        }
    }
}

/// A streamed blob on its way from upstream to the client and, when filling, to storage.
pub struct Pump {
    /// The client's end.
    pub client: ReadableStream,
    /// Moves the bytes; runs past the response (spawn it).
    pub run: LocalBoxFuture<'static, ()>,
}

/// Where a pump stores the blob it fills.
pub enum Store {
    /// Nowhere: the pump only verifies.
    None,
    /// The writable side of a `FixedLengthStream`: a write is done once its reader has the bytes.
    Fixed(web_sys::WritableStream),
    /// A JS `TransformStream`'s writable side: a chunk may wait in its queue after its write is
    /// done, so a pump writing here recycles no buffer.
    Queued(web_sys::WritableStream),
    /// A spooled fill's segments (`super::spool`).
    Spool(Writer),
}

impl Pump {
    /// Starts a pump from `source`, which must be `len` bytes (when known) hashing to `digest`.
    /// `store` is storage's end: closed only when the bytes were right, aborted otherwise.
    pub fn start(
        source: ReadableStream,
        len: Option<u64>,
        digest: &Digest,
        limits: Limits,
        store: Store,
    ) -> Result<Pump, JsValue> {
        // A known length gives the client a `Content-Length` and the runtime's own length check
        // (and a `FixedLengthStream`, which takes recycled chunks).
        let client = match len {
            Some(len) => fixed_length(len)?.unchecked_into::<web_sys::TransformStream>(),
            None => web_sys::TransformStream::new()?,
        };
        let hash = DigestStream::new(match digest.algorithm() {
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha512 => "SHA-512",
        });
        let watch = Watch::stream(limits, now_ms());
        let recycle = len.is_some() && !matches!(store, Store::Queued(_));
        let reader = match recycle {
            true => WatchedReader::recycling(&source, watch),
            false => WatchedReader::new(&source, watch),
        };
        let store = match store {
            Store::None => Sink::Outlet(Outlet::of(None)),
            Store::Fixed(w) | Store::Queued(w) => Sink::Outlet(Outlet::of(Some(&w))),
            Store::Spool(writer) => Sink::Spool(writer),
        };
        let hasher = Outlet::of(Some(hash.unchecked_ref::<web_sys::WritableStream>()));
        let run = carry(
            reader,
            Outlet::of(Some(&client.writable())),
            store,
            (hash, hasher),
            Tally::new(len),
            digest.clone(),
        );
        Ok(Pump {
            client: client.readable(),
            run: Box::pin(run),
        })
    }
}

/// Storage's end of a pump.
enum Sink {
    Outlet(Outlet),
    Spool(Writer),
}

impl Sink {
    fn open(&self) -> bool {
        match self {
            Sink::Outlet(o) => o.open(),
            Sink::Spool(w) => w.open(),
        }
    }

    async fn write(&mut self, chunk: &Uint8Array, lease: Option<Lease>) -> Result<(), String> {
        match self {
            Sink::Outlet(o) => o.write(chunk, lease).await,
            Sink::Spool(w) => w.write(chunk, lease).await,
        }
    }

    async fn close(&mut self) {
        match self {
            Sink::Outlet(o) => o.close().await,
            Sink::Spool(w) => w.close().await,
        }
    }

    async fn abort(&mut self, why: &Wrong) {
        match self {
            Sink::Outlet(o) => o.abort(why).await,
            Sink::Spool(w) => w.abort(&why.to_string()).await,
        }
    }
}

/// A `FixedLengthStream` of `len` bytes (a BigInt past 4 GiB).
pub fn fixed_length(len: u64) -> Result<FixedLengthStream, JsValue> {
    match u32::try_from(len) {
        Ok(l) => FixedLengthStream::new(l),
        Err(_) => FixedLengthStream::new_big_int(js_sys::BigInt::from(len)),
    }
}

async fn carry(
    mut reader: WatchedReader,
    mut client: Outlet,
    mut store: Sink,
    (hash, mut hasher): (DigestStream, Outlet),
    mut tally: Tally,
    digest: Digest,
) {
    // Each chunk is handed on only once the next has arrived, and the last one only when the
    // bytes proved right: a client that got every byte of a `Content-Length` body would see a
    // complete answer however the stream ended afterwards.
    let mut held: Option<Chunk> = None;
    let verdict = async {
        while let Some(chunk) = reader.next().await? {
            tally.add(chunk.bytes.length() as u64)?;
            // The runtime hashes the chunks in order as they are written.
            let _ = hasher.write(&chunk.bytes, chunk.lease.clone()).await;
            if let Some(previous) = held.replace(chunk) {
                hand_on(previous, &mut client, &mut store, &digest).await;
                if !client.open() && !store.open() {
                    // Nobody reads any more: stop reading upstream.
                    reader.cancel();
                    return Ok(());
                }
            }
        }
        if !hasher.open() {
            return Err(Wrong::Broken("no digest stream".into()));
        }
        hasher.close().await;
        let raw = JsFuture::from(hash.digest())
            .await
            .map_err(|e| Wrong::Broken(describe(&e)))?;
        tally.finish(&digest, &Uint8Array::new(&raw).to_vec())
    }
    .await;
    match verdict {
        Ok(()) => {
            // The client's answer ends first: the blob's own object is put together only
            // once storage has the last segment, and that work is not the client's to wait for.
            if let Some(last) = held.take() {
                hand_on(last, &mut client, &mut store, &digest).await;
            }
            client.close().await;
            store.close().await;
        }
        Err(wrong) => {
            reader.cancel();
            futures::join!(store.abort(&wrong), client.abort(&wrong));
            console_error!("{}", wrong.log_line(&digest, false));
        }
    }
}

/// Writes `chunk` to the client and to storage, waiting for both to take it. A client that went
/// away is dropped (storage goes on filling); a storage write that failed is logged and dropped.
async fn hand_on(chunk: Chunk, client: &mut Outlet, store: &mut Sink, digest: &Digest) {
    let Chunk { bytes, lease } = chunk;
    let (_, to_store) = futures::join!(
        client.write(&bytes, lease.clone()),
        store.write(&bytes, lease)
    );
    if let Err(e) = to_store {
        console_error!(
            "{}",
            serde_json::json!({"fill": digest.to_string(), "error": e})
        );
    }
}
