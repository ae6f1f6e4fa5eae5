//! Workers implementations of the core's ports: KV, R2 and `fetch`.

use super::js::{failure, KvNamespace};
use super::pump::{fixed_length, now_ms, Pump, Store, WatchedReader};
use super::spool::{self, Fills};
use crate::cache::memo::Memo;
use crate::cache::multipart::{self, Chunks, FillError, FillPlan, Upload};
use crate::cache::recent::Recent;
use crate::oci::{Algorithm, Digest};
use crate::ports::{
    Blobs, Entry, Fetched, Kv, NetError, OutboundRequest, Page, Piece, StoreError, Stored,
    Upstream, REGISTRIES_METADATA,
};
use crate::watchdog::{Limits, Watch};
use futures::future::{Either, LocalBoxFuture};
use futures::StreamExt;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use wasm_bindgen_futures::JsFuture;
use worker::{
    console_error, AbortController, Bucket, ByteStream, Data, Delay, Fetch, MultipartUpload,
    Range as R2Range, ResponseBody, UploadedPart,
};

/// A body on its way through: `None` when upstream sent none.
pub type Stream = Option<web_sys::ReadableStream>;

pub struct WorkerKv<'a> {
    pub store: KvNamespace,
    /// Writes this Durable Object made recently: KV is eventually consistent, and the requests
    /// queued behind a fill must see what it wrote.
    pub recent: Option<&'a Recent>,
    /// The isolate's memory of this second's reads (`crate::cache::memo`), and the second.
    pub memo: Option<(&'a RefCell<Memo>, u64)>,
}

impl Kv for WorkerKv<'_> {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        if let Some(entry) = self.recent.and_then(|r| r.get(key)) {
            return Ok(Some(entry));
        }
        if let Some(entry) = self.memo.and_then(|(m, now)| m.borrow().get(key, now)) {
            return Ok(Some(entry));
        }
        let got = self.store.get_entry(key).await.map_err(StoreError)?;
        let got = got.map(|(value, read_day)| Entry { value, read_day });
        if let (Some(entry), Some((memo, now))) = (&got, self.memo) {
            memo.borrow_mut().put(key, entry, now);
        }
        Ok(got)
    }

    async fn put(&self, key: &str, value: Vec<u8>, read_day: u64) -> Result<(), StoreError> {
        if let Some((memo, _)) = self.memo {
            memo.borrow_mut().forget(key);
        }
        let put = self
            .store
            .put_entry(key, &value, read_day)
            .map_err(StoreError)?;
        if let Some(recent) = self.recent {
            recent.put(
                key,
                Entry {
                    value,
                    read_day: Some(read_day),
                },
            );
        }
        put.await.map(drop).map_err(|e| StoreError(failure(e)))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        if let Some(recent) = self.recent {
            recent.forget(key);
        }
        if let Some((memo, _)) = self.memo {
            memo.borrow_mut().forget(key);
        }
        self.store.delete(key).await.map_err(StoreError)
    }

    async fn list(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page, StoreError> {
        let (keys, cursor) = self
            .store
            .list_page(prefix, cursor, limit)
            .await
            .map_err(StoreError)?;
        Ok(Page { keys, cursor })
    }
}

pub struct R2Blobs<'a> {
    pub bucket: Bucket,
    /// Runs the R2 put past the response.
    pub spawn: &'a dyn Fn(LocalBoxFuture<'static, ()>),
    /// Blobs longer than this are stored with a multipart upload of `part_bytes` parts.
    pub multipart_threshold: u64,
    pub part_bytes: u64,
    /// How long upstream may leave a body silent.
    pub limits: Limits,
    /// At an object's owner, its fills that a herd may follow (see `super::spool`).
    pub fills: Option<Rc<Fills>>,
}

impl R2Blobs<'_> {
    /// `body` through a pump to the client (and to `store`); `None` when the runtime refuses to
    /// build the streams (logged).
    fn pump(
        &self,
        body: web_sys::ReadableStream,
        len: Option<u64>,
        digest: &Digest,
        store: Store,
    ) -> Option<Pump> {
        match Pump::start(body, len, digest, self.limits, store) {
            Ok(pump) => Some(pump),
            Err(e) => {
                console_error!("{{\"pump\":\"{digest}\",\"error\":{:?}}}", failure(e));
                None
            }
        }
    }
}

impl Blobs for R2Blobs<'_> {
    type Body = Stream;

    async fn stat(&self, key: &str) -> Result<Option<Stored>, StoreError> {
        let object = self
            .bucket
            .head(key)
            .await
            .map_err(|e| StoreError(e.to_string()))?;
        Ok(object.map(|o| stored(&o)))
    }

    async fn get(
        &self,
        key: &str,
        part: Option<(u64, u64)>,
    ) -> Result<Option<(Stored, Stream)>, StoreError> {
        let mut get = self.bucket.get(key);
        if let Some((offset, length)) = part {
            get = get.range(R2Range::OffsetWithLength { offset, length });
        }
        let Some(object) = get.execute().await.map_err(|e| StoreError(e.to_string()))? else {
            return Ok(None);
        };
        let info = stored(&object);
        let stream = match object.body().map(|b| b.response_body()) {
            Some(Ok(ResponseBody::Stream(s))) => Some(s),
            _ => None,
        };
        Ok(Some((info, stream)))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.bucket
            .delete(key)
            .await
            .map_err(|e| StoreError(e.to_string()))
    }

    /// Cancels the client's branch of a tee; the storage branch goes on (Streams spec: cancelling
    /// one branch of a tee does not cancel the source while the other branch is read).
    fn discard(&self, body: Stream) {
        if let Some(stream) = body {
            let _ = stream.cancel();
        }
    }

    /// Pumps the upstream stream to the client and through a `FixedLengthStream` (R2 needs the
    /// length up front) into an R2 put that carries the expected checksum, so R2 itself refuses
    /// bytes that do not match the digest as well. A blob above the single-put limit goes up as a
    /// multipart upload instead (see `multipart_fill`). The pump checks length and digest before
    /// it closes storage's stream and the client's, and aborts both when they are wrong.
    fn fill(
        &self,
        key: &str,
        body: Stream,
        len: u64,
        digest: &Digest,
        registries: &[String],
    ) -> Stream {
        let bucket = self.bucket.clone();
        let owned_key = key.to_owned();
        let raw = digest.raw();
        let algorithm = digest.algorithm();
        let metadata = registries_metadata(registries);
        let put_metadata = metadata.clone();
        let put = move |data: Data| async move {
            let key = owned_key;
            let builder = bucket.put(&key, data).custom_metadata(put_metadata);
            let builder = match algorithm {
                Algorithm::Sha256 => builder.sha256(raw),
                Algorithm::Sha512 => builder.sha512(raw),
            };
            if let Err(e) = builder.execute().await {
                console_error!("{{\"fill\":\"{key}\",\"error\":{:?}}}", e.to_string());
            }
        };
        let Some(stream) = body else {
            if len == 0 {
                (self.spawn)(Box::pin(put(Data::Bytes(Vec::new()))));
            }
            return None;
        };
        let plan = multipart::plan(len, self.fills.is_some(), self.multipart_threshold);
        if let (FillPlan::Spooled, Some(fills)) = (plan, &self.fills) {
            let (writer, task) = spool::start(fills, &self.bucket, key, len, digest, registries);
            let pump = self.pump(stream, Some(len), digest, Store::Spool(writer))?;
            (self.spawn)(Box::pin(async move {
                futures::join!(pump.run, task);
            }));
            return Some(pump.client);
        }
        if plan == FillPlan::Multipart {
            // A plain identity stream between the pump and the part splitter.
            let through = web_sys::TransformStream::new().ok()?;
            let pump = self.pump(stream, Some(len), digest, Store::Queued(through.writable()))?;
            let fill = multipart_fill(
                self.bucket.clone(),
                key.to_owned(),
                through.readable(),
                len,
                self.part_bytes,
                metadata,
            );
            (self.spawn)(Box::pin(async move {
                futures::join!(pump.run, fill);
            }));
            return Some(pump.client);
        }
        let fixed = fixed_length(len).ok()?;
        let pump = self.pump(stream, Some(len), digest, Store::Fixed(fixed.writable()))?;
        let readable = fixed.readable();
        (self.spawn)(Box::pin(async move {
            futures::join!(pump.run, put(Data::ReadableStream(readable)));
        }));
        Some(pump.client)
    }

    fn filling(&self, key: &str) -> Option<Stored> {
        self.fills.as_ref()?.filling(key)
    }

    fn follow(&self, key: &str) -> Option<Stream> {
        let (stream, task) = self.fills.as_ref()?.follow(&self.bucket, key)?;
        (self.spawn)(task);
        Some(Some(stream))
    }

    fn verify(&self, body: Stream, len: Option<u64>, digest: &Digest) -> Stream {
        let pump = self.pump(body?, len, digest, Store::None)?;
        (self.spawn)(pump.run);
        Some(pump.client)
    }

    /// A `FixedLengthStream` of `len` bytes the pieces are written into in order, past the
    /// response: the core's bytes through a writer, each stretch of the blob as its own R2 range
    /// read piped in (`preventClose`, so the next piece can follow). A failed read aborts the
    /// stream short of its length: the client sees a failed transfer.
    fn pieces(&self, key: &str, pieces: Vec<Piece>, len: u64) -> Stream {
        let fixed = match fixed_length(len) {
            Ok(fixed) => fixed,
            Err(e) => {
                console_error!("{{\"pieces\":\"{key}\",\"error\":{:?}}}", failure(e));
                return None;
            }
        };
        let writable = fixed.writable();
        let readable = fixed.readable();
        let bucket = self.bucket.clone();
        let key = key.to_owned();
        (self.spawn)(Box::pin(async move {
            let result = write_pieces(&bucket, &key, pieces, &writable).await;
            if let Err(why) = result {
                let reason = js_sys::Error::new(&why);
                let _ = JsFuture::from(writable.abort_with_reason(&reason)).await;
                console_error!("{{\"pieces\":\"{key}\",\"error\":{why:?}}}");
            }
        }));
        Some(readable)
    }
}

/// A stream of `len` bytes of the stored `key` from `offset`; an error names what is missing.
async fn read_range(
    bucket: &Bucket,
    key: &str,
    offset: u64,
    len: u64,
) -> Result<web_sys::ReadableStream, String> {
    let object = bucket
        .get(key)
        .range(R2Range::OffsetWithLength {
            offset,
            length: len,
        })
        .execute()
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{key} is gone"))?;
    match object.body().map(|b| b.response_body()) {
        Some(Ok(ResponseBody::Stream(s))) => Ok(s),
        _ => Err(format!("no body for {key}")),
    }
}

/// Pipes `len` bytes of the stored `key` from `offset` into `writable` through the runtime's own
/// pipe (no byte passes through JS), leaving it open for what follows.
pub(super) async fn pipe_range(
    bucket: &Bucket,
    key: &str,
    offset: u64,
    len: u64,
    writable: &web_sys::WritableStream,
) -> Result<(), String> {
    let stream = read_range(bucket, key, offset, len).await?;
    let options = web_sys::StreamPipeOptions::new();
    options.set_prevent_close(true);
    JsFuture::from(stream.pipe_to_with_options(writable, &options))
        .await
        .map(|_| ())
        .map_err(failure)
}

/// Writes `pieces` into `writable` in order and closes it (see `R2Blobs::pieces`).
async fn write_pieces(
    bucket: &Bucket,
    key: &str,
    pieces: Vec<Piece>,
    writable: &web_sys::WritableStream,
) -> Result<(), String> {
    let js = |e: wasm_bindgen::JsValue| failure(e);
    for piece in pieces {
        match piece {
            Piece::Bytes(bytes) => {
                let writer = writable.get_writer().map_err(js)?;
                let chunk = js_sys::Uint8Array::from(bytes.as_slice());
                let written = JsFuture::from(writer.write_with_chunk(&chunk)).await;
                writer.release_lock();
                written.map_err(js)?;
            }
            Piece::Blob { offset, len } => pipe_range(bucket, key, offset, len, writable).await?,
        }
    }
    JsFuture::from(writable.close()).await.map_err(js)?;
    Ok(())
}

/// What an R2 object says about itself: its size and the registries that vouched for its bytes.
fn stored(object: &worker::Object) -> Stored {
    let metadata = object.custom_metadata().unwrap_or_default();
    Stored {
        size: object.size(),
        registries: Stored::decode_registries(
            metadata.get(REGISTRIES_METADATA).map(String::as_str),
        ),
    }
}

fn registries_metadata(registries: &[String]) -> HashMap<String, String> {
    HashMap::from([(
        REGISTRIES_METADATA.to_owned(),
        Stored::encode_registries(registries),
    )])
}

/// Stores a blob too large for one put as a multipart upload: creates it, then hands it and the
/// stream to the core's loop (`multipart::fill`: parts, complete on a clean end of exactly `len`
/// bytes, abort otherwise). The pump in front checks length and digest and errors this stream
/// when they are wrong, so nothing wrong is stored.
async fn multipart_fill(
    bucket: Bucket,
    key: String,
    stream: web_sys::ReadableStream,
    len: u64,
    part_bytes: u64,
    metadata: HashMap<String, String>,
) {
    let created = bucket
        .create_multipart_upload(&key)
        .custom_metadata(metadata)
        .execute()
        .await;
    let result = match created {
        Ok(upload) => {
            let chunks = JsChunks(ByteStream::from(stream));
            multipart::fill(R2Upload(upload), chunks, len, part_bytes).await
        }
        Err(e) => Err(FillError::Store(StoreError(e.to_string()))),
    };
    if let Err(e) = result {
        console_error!("{}", e.log_line(&key));
    }
}

/// R2's multipart upload as the core's `Upload`.
struct R2Upload(MultipartUpload);

impl Upload for R2Upload {
    type Part = UploadedPart;

    async fn part(&self, number: u16, bytes: Vec<u8>) -> Result<UploadedPart, StoreError> {
        let store = |e: worker::Error| StoreError(e.to_string());
        self.0.upload_part(number, bytes).await.map_err(store)
    }

    async fn complete(self, parts: Vec<UploadedPart>) -> Result<(), StoreError> {
        let store = |e: worker::Error| StoreError(e.to_string());
        self.0.complete(parts).await.map(drop).map_err(store)
    }

    async fn abort(&self) -> Result<(), StoreError> {
        self.0.abort().await.map_err(|e| StoreError(e.to_string()))
    }
}

/// A JS byte stream as the core's `Chunks`: each chunk as it arrives.
struct JsChunks(ByteStream);

impl Chunks for JsChunks {
    async fn next(&mut self) -> Option<Result<Vec<u8>, String>> {
        let chunk = self.0.next().await?;
        Some(chunk.map_err(|e| e.to_string()))
    }
}

/// `fetch`, bounded by `UPSTREAM_TIMEOUT_SECONDS` for the answer's headers (a hung upstream must
/// not hang the client: the door answers 504, or serves its stale copy); a body read whole, by
/// the same deadline from the moment its request was sent, and by the idle timeout.
pub struct FetchUpstream {
    pub limits: Limits,
    /// Bodies not read yet and when their requests were sent (a few per client request).
    sent: RefCell<Vec<(web_sys::ReadableStream, u64)>>,
}

/// Bodies remembered for their send time; older ones (never read whole: blobs) are forgotten.
const SENT_MAX: usize = 16;

impl FetchUpstream {
    pub fn new(limits: Limits) -> FetchUpstream {
        FetchUpstream {
            limits,
            sent: RefCell::default(),
        }
    }

    /// When the request whose body this is was sent (now, for a body not from `send`).
    fn sent_at(&self, body: &web_sys::ReadableStream) -> u64 {
        let mut sent = self.sent.borrow_mut();
        match sent.iter().position(|(b, _)| b == body) {
            Some(i) => sent.remove(i).1,
            None => now_ms(),
        }
    }
}

impl Upstream for FetchUpstream {
    type Body = Stream;

    async fn send(&self, req: OutboundRequest) -> Result<Fetched<Stream>, NetError> {
        let failed = |e: worker::Error| NetError::Failed(e.to_string());
        let headers = super::js::to_js_headers(&req.headers).map_err(failed)?;
        let body = req
            .body
            .as_deref()
            .map(|b| wasm_bindgen::JsValue::from(js_sys::Uint8Array::from(b)));
        let init = super::request::Init {
            method: req.method.as_str(),
            headers: Some(&headers),
            body: body.as_ref(),
            manual_redirect: true,
        };
        let request = super::request::new(req.url.as_str(), init).map_err(failed)?;
        let sent = now_ms();
        let controller = AbortController::default();
        let signal = controller.signal();
        let fetch = Fetch::Request(request);
        let sending = std::pin::pin!(fetch.send_with_signal(&signal));
        let timeout = std::time::Duration::from_secs(self.limits.answer_seconds);
        let timer = std::pin::pin!(Delay::from(timeout));
        let response = match futures::future::select(sending, timer).await {
            Either::Left((answer, _)) => answer.map_err(failed)?,
            Either::Right(((), _)) => {
                controller.abort();
                return Err(NetError::Timeout);
            }
        };
        let out = super::js::from_js_headers(response.headers());
        let status = response.status_code();
        let (_, body) = response.into_parts();
        let body = match body {
            ResponseBody::Stream(s) => Some(s),
            _ => None,
        };
        if let Some(stream) = &body {
            let mut bodies = self.sent.borrow_mut();
            if bodies.len() >= SENT_MAX {
                bodies.remove(0);
            }
            bodies.push((stream.clone(), sent));
        }
        Ok(Fetched {
            status,
            headers: out,
            body,
        })
    }

    /// WebCrypto's `importKey("pkcs8", …, RSASSA-PKCS1-v1_5/SHA-256)` and `sign`: the runtime's
    /// own RSA, so the upload carries none.
    async fn sign_rs256(&self, pkcs8_der: &[u8], message: &[u8]) -> Result<Vec<u8>, String> {
        super::js::rs256(pkcs8_der, message).await.map_err(failure)
    }

    /// Reads a whole body under the watchdog: given up when idle, or still incomplete
    /// `UPSTREAM_TIMEOUT_SECONDS` after its request was sent (`NetError::Timeout`).
    async fn read(&self, body: Stream, limit: usize) -> Result<Vec<u8>, NetError> {
        let Some(stream) = body else {
            return Ok(Vec::new());
        };
        let watch = Watch::whole(self.limits, self.sent_at(&stream), now_ms());
        // Each chunk is copied out at once, so its buffer is read into again.
        let mut reader = WatchedReader::recycling(&stream, watch);
        let mut out = Vec::new();
        while let Some(chunk) = reader.next().await.map_err(|w| w.net_error())? {
            if out.len() + chunk.bytes.length() as usize > limit {
                reader.cancel();
                return Err(NetError::TooLarge);
            }
            out.extend_from_slice(&chunk.bytes.to_vec());
        }
        Ok(out)
    }
}

impl FetchUpstream {
    /// Reads a body, failing with `TooLarge` (and reading no further) past `limit` bytes.
    pub async fn read_limited(body: Stream, limit: usize) -> Result<Vec<u8>, NetError> {
        let Some(stream) = body else {
            return Ok(Vec::new());
        };
        let mut chunks = ByteStream::from(stream);
        let mut out = Vec::new();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| NetError::Failed(e.to_string()))?;
            if out.len() + chunk.len() > limit {
                return Err(NetError::TooLarge);
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }
}
