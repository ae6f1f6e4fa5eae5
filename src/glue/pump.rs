//! Carries upstream bodies under the watchdog (`crate::watchdog`): reads them with a timer, and
//! moves a streamed blob to the client (and to storage) so that it ends cleanly only when it was
//! the blob asked for. Every decision — when a wait is too long, whether the bytes are right — is
//! the core's; this file owns the timers, the readers and the writers.
//!
//! A blob goes through [`Pump`]: each chunk read from upstream is written to the client's stream,
//! to storage's (when filling) and to a `crypto.DigestStream` (the runtime's own SHA-256/512, so no
//! byte is copied into wasm or hashed there). The pump waits for the client and storage to take
//! each chunk before reading the next (as distribution's proxy copies to the client and its store
//! at once): memory stays bounded whoever reads slowly, and the idle clock runs only while the
//! door waits for upstream. At the end the length and digest are checked *before* storage's stream
//! is closed: when they are right, both streams close (and R2, given the checksum too, stores the
//! object); when not — or when upstream stalls, sends too much or breaks off — both streams are
//! aborted: the client sees a failed transfer, R2 stores nothing, and one JSON line is logged.

use crate::oci::{Algorithm, Digest};
use crate::watchdog::{Limits, Next, Tally, Watch, Wrong};
use futures::future::{select, Either, LocalBoxFuture};
use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{ReadableStream, ReadableStreamDefaultReader, WritableStreamDefaultWriter};
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

/// Reads an upstream body chunk by chunk, giving up when the watch says so.
pub struct WatchedReader {
    reader: ReadableStreamDefaultReader,
    pub watch: Watch,
}

impl WatchedReader {
    pub fn new(stream: &ReadableStream, watch: Watch) -> WatchedReader {
        WatchedReader {
            reader: stream.get_reader().unchecked_into(),
            watch,
        }
    }

    /// The next chunk (`None` at a clean end). Upstream is cancelled when it stalls or breaks.
    pub async fn next(&mut self) -> Result<Option<Uint8Array>, Wrong> {
        self.watch.reading(now_ms());
        let mut read = JsFuture::from(self.reader.read());
        let result = loop {
            let wait = match self.watch.next(now_ms()) {
                Next::Wait(ms) => ms,
                stop => {
                    self.cancel();
                    return Err(self.watch.failure(stop).unwrap_or(Wrong::Overdue));
                }
            };
            let timer = std::pin::pin!(Delay::from(std::time::Duration::from_millis(wait)));
            match select(&mut read, timer).await {
                Either::Left((result, _)) => break result,
                Either::Right(((), _)) => continue,
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
                Ok(Some(chunk))
            }
            Err(_) => {
                self.cancel();
                Err(Wrong::Broken("a chunk that is not bytes".into()))
            }
        }
    }

    /// Cancels the upstream body (the runtime then drops the connection).
    pub fn cancel(&self) {
        let _ = self.reader.cancel();
    }
}

/// A writer the pump feeds; `None` once its reader has gone away.
struct Outlet(Option<WritableStreamDefaultWriter>);

impl Outlet {
    fn of(stream: Option<&web_sys::WritableStream>) -> Outlet {
        Outlet(stream.and_then(|s| s.get_writer().ok()))
    }

    async fn write(&mut self, chunk: &Uint8Array) -> Result<(), String> {
        let Some(writer) = &self.0 else {
            return Ok(());
        };
        match JsFuture::from(writer.write_with_chunk(chunk)).await {
            Ok(_) => Ok(()),
            Err(e) => {
                self.0 = None;
                Err(describe(&e))
            }
        }
    }

    async fn close(&mut self) {
        if let Some(writer) = self.0.take() {
            let _ = JsFuture::from(writer.close()).await;
        }
    }

    async fn abort(&mut self, why: &Wrong) {
        if let Some(writer) = self.0.take() {
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

impl Pump {
    /// Starts a pump from `source`, which must be `len` bytes (when known) hashing to `digest`.
    /// `store` is storage's end: closed only when the bytes were right, aborted otherwise.
    pub fn start(
        source: ReadableStream,
        len: Option<u64>,
        digest: &Digest,
        limits: Limits,
        store: Option<web_sys::WritableStream>,
    ) -> Result<Pump, JsValue> {
        // A known length gives the client a `Content-Length` and the runtime's own length check.
        let client = match len {
            Some(len) => fixed_length(len)?.unchecked_into::<web_sys::TransformStream>(),
            None => web_sys::TransformStream::new()?,
        };
        let hash = DigestStream::new(match digest.algorithm() {
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha512 => "SHA-512",
        });
        let reader = WatchedReader::new(&source, Watch::stream(limits, now_ms()));
        let run = carry(
            reader,
            Outlet::of(Some(&client.writable())),
            Outlet::of(store.as_ref()),
            hash,
            Tally::new(len),
            digest.clone(),
        );
        Ok(Pump {
            client: client.readable(),
            run: Box::pin(run),
        })
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
    mut store: Outlet,
    hash: DigestStream,
    mut tally: Tally,
    digest: Digest,
) {
    let hasher = hash.get_writer().ok();
    // Each chunk is handed on only once the next has arrived, and the last one only when the
    // bytes proved right: a client that got every byte of a `Content-Length` body would see a
    // complete answer however the stream ended afterwards.
    let mut held: Option<Uint8Array> = None;
    let verdict = async {
        while let Some(chunk) = reader.next().await? {
            tally.add(chunk.length() as u64)?;
            if let Some(h) = &hasher {
                // The runtime hashes the chunks in order as they are written: no wait needed.
                let _ = h.write_with_chunk(&chunk);
            }
            if let Some(previous) = held.replace(chunk) {
                hand_on(&previous, &mut client, &mut store, &digest).await;
                if client.0.is_none() && store.0.is_none() {
                    // Nobody reads any more: stop reading upstream.
                    reader.cancel();
                    return Ok(());
                }
            }
        }
        let Some(h) = hasher else {
            return Err(Wrong::Broken("no digest stream".into()));
        };
        let _ = JsFuture::from(h.close()).await;
        let raw = JsFuture::from(hash.digest())
            .await
            .map_err(|e| Wrong::Broken(describe(&e)))?;
        tally.finish(&digest, &Uint8Array::new(&raw).to_vec())
    }
    .await;
    match verdict {
        Ok(()) => {
            if let Some(last) = held.take() {
                hand_on(&last, &mut client, &mut store, &digest).await;
            }
            futures::join!(store.close(), client.close());
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
async fn hand_on(chunk: &Uint8Array, client: &mut Outlet, store: &mut Outlet, digest: &Digest) {
    let (_, to_store) = futures::join!(client.write(chunk), store.write(chunk));
    if let Err(e) = to_store {
        console_error!(
            "{}",
            serde_json::json!({"fill": digest.to_string(), "error": e})
        );
    }
}
