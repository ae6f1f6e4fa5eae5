//! Workers implementations of the core's ports: KV, R2 and `fetch`.

use super::coalescer::Recent;
use super::js::{failure, KvNamespace};
use crate::cache::multipart::PartSplitter;
use crate::oci::{Algorithm, Digest, Hasher};
use crate::ports::{
    Blobs, Entry, Fetched, Headers, HttpMethod, Kv, NetError, OutboundRequest, Page, StoreError,
    Stored, Upstream, REGISTRIES_METADATA,
};
use futures::future::{Either, LocalBoxFuture};
use futures::StreamExt;
use std::collections::HashMap;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use worker::worker_sys::FixedLengthStream;
use worker::{
    console_error, AbortController, Bucket, ByteStream, Data, Delay, Fetch, Range as R2Range,
    ResponseBody,
};

/// A body on its way through: `None` when upstream sent none.
pub type Stream = Option<web_sys::ReadableStream>;

pub struct WorkerKv<'a> {
    pub store: KvNamespace,
    /// Writes this Durable Object made recently: KV is eventually consistent, and the requests
    /// queued behind a fill must see what it wrote.
    pub recent: Option<&'a Recent>,
}

impl Kv for WorkerKv<'_> {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        if let Some(entry) = self.recent.and_then(|r| r.get(key)) {
            return Ok(Some(entry));
        }
        let got = self.store.get_entry(key).await.map_err(StoreError)?;
        Ok(got.map(|(value, read_day)| Entry { value, read_day }))
    }

    async fn put(&self, key: &str, value: Vec<u8>, read_day: u64) -> Result<(), StoreError> {
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

    /// Tees the upstream stream: one branch goes to the client, the other through a
    /// `FixedLengthStream` (R2 needs the length up front) into an R2 put that carries the
    /// expected checksum, so R2 itself refuses bytes that do not match the digest. A blob above
    /// the single-put limit goes up as a multipart upload instead (see `multipart_fill`).
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
        let branches = stream.tee();
        let to_client: web_sys::ReadableStream = branches.get(0).unchecked_into();
        let to_store: web_sys::ReadableStream = branches.get(1).unchecked_into();
        if len > self.multipart_threshold {
            let fill = multipart_fill(
                self.bucket.clone(),
                key.to_owned(),
                to_store,
                len,
                digest.clone(),
                self.part_bytes,
                metadata,
            );
            (self.spawn)(Box::pin(fill));
            return Some(to_client);
        }
        let fixed = match u32::try_from(len) {
            Ok(l) => FixedLengthStream::new(l),
            Err(_) => FixedLengthStream::new_big_int(js_sys::BigInt::from(len)),
        };
        let Ok(fixed) = fixed else {
            return Some(to_client);
        };
        let piping = JsFuture::from(to_store.pipe_to(&fixed.writable()));
        let readable = fixed.readable();
        (self.spawn)(Box::pin(async move {
            let (_, ()) = futures::join!(piping, put(Data::ReadableStream(readable)));
        }));
        Some(to_client)
    }
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

/// `fetch`, bounded by a time limit for the answer's headers (a hung upstream must not hang the
/// client: the door answers 504, or serves its stale copy).
/// Stores a blob too large for one put as a multipart upload. R2 checks no checksum of a
/// multipart object, so the digest is computed here while the parts go up; on a mismatch (or a
/// short stream) the upload is aborted and nothing is stored.
async fn multipart_fill(
    bucket: Bucket,
    key: String,
    stream: web_sys::ReadableStream,
    len: u64,
    digest: Digest,
    part_bytes: u64,
    metadata: HashMap<String, String>,
) {
    let result = async {
        let upload = bucket
            .create_multipart_upload(&key)
            .custom_metadata(metadata)
            .execute()
            .await?;
        let mut hasher = Hasher::new(digest.algorithm());
        let mut splitter = PartSplitter::new(part_bytes as usize);
        let mut parts = Vec::new();
        let mut seen = 0u64;
        let mut chunks = ByteStream::from(stream);
        let mut failure = None;
        while let Some(chunk) = chunks.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    failure = Some(format!("stream: {e}"));
                    break;
                }
            };
            seen += chunk.len() as u64;
            hasher.update(&chunk);
            for part in splitter.push(&chunk) {
                let number = parts.len() as u16 + 1;
                parts.push(upload.upload_part(number, part).await?);
            }
        }
        if failure.is_none() {
            if let Some(last) = splitter.finish() {
                let number = parts.len() as u16 + 1;
                parts.push(upload.upload_part(number, last).await?);
            }
            let got = hasher.finish();
            if seen != len || got != digest {
                failure = Some(format!("got {seen} bytes hashing to {got}"));
            }
        }
        if let Some(why) = failure {
            upload.abort().await?;
            return Err(worker::Error::from(format!("refused: {why}")));
        }
        upload.complete(parts).await?;
        Ok::<_, worker::Error>(())
    }
    .await;
    if let Err(e) = result {
        console_error!(
            "{{\"fill\":\"{key}\",\"multipart\":true,\"error\":{:?}}}",
            e.to_string()
        );
    }
}

pub struct FetchUpstream {
    pub timeout: std::time::Duration,
}

impl Upstream for FetchUpstream {
    type Body = Stream;

    async fn send(&self, req: OutboundRequest) -> Result<Fetched<Stream>, NetError> {
        let failed = |e: worker::Error| NetError::Failed(e.to_string());
        let headers = worker::Headers::new();
        for (name, value) in req.headers.iter() {
            headers.set(name, value).map_err(failed)?;
        }
        let method = match req.method {
            HttpMethod::Get => "GET",
            HttpMethod::Head => "HEAD",
        };
        let init = super::request::Init {
            method,
            headers: Some(&headers),
            body: None,
            manual_redirect: true,
        };
        let request = super::request::new(req.url.as_str(), init).map_err(failed)?;
        let controller = AbortController::default();
        let signal = controller.signal();
        let fetch = Fetch::Request(request);
        let sending = std::pin::pin!(fetch.send_with_signal(&signal));
        let timer = std::pin::pin!(Delay::from(self.timeout));
        let response = match futures::future::select(sending, timer).await {
            Either::Left((answer, _)) => answer.map_err(failed)?,
            Either::Right(((), _)) => {
                controller.abort();
                return Err(NetError::Timeout);
            }
        };
        let mut out = Headers::new();
        for (name, value) in response.headers().entries() {
            out.append(&name, value);
        }
        let status = response.status_code();
        let (_, body) = response.into_parts();
        let body = match body {
            ResponseBody::Stream(s) => Some(s),
            _ => None,
        };
        Ok(Fetched {
            status,
            headers: out,
            body,
        })
    }

    async fn read(&self, body: Stream, limit: usize) -> Result<Vec<u8>, NetError> {
        FetchUpstream::read_limited(body, limit).await
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
