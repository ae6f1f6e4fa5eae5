//! The only seam between the door's logic and the runtime: key-value storage (KV), blob storage
//! (R2) and the upstream HTTP client, plus the plain data that crosses the seam.
//!
//! The Workers implementations live in `glue`; host tests implement the same traits in memory.
//! There is no clock trait: time is a parameter (`now`, Unix seconds), because `SystemTime::now()`
//! panics on `wasm32-unknown-unknown`.
//!
//! The traits use `async fn` without `Send` bounds on purpose: a Worker isolate is single-threaded
//! and its JS-backed futures are not `Send`.
#![allow(async_fn_in_trait)]

use crate::error::RegistryError;
use crate::oci::Digest;
use std::fmt;
use url::Url;

/// HTTP header list; names are kept lowercase.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    pub fn new() -> Self {
        Headers(Vec::new())
    }

    /// The first value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Adds a header (keeping earlier values of the same name).
    pub fn append(&mut self, name: &str, value: impl Into<String>) {
        self.0.push((name.to_ascii_lowercase(), value.into()));
    }

    /// Sets a header, replacing earlier values of the same name.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.remove(name);
        self.append(name, value);
    }

    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    Head,
    /// Only for minting cloud credentials (`crate::upstream::cloud`); never for a client's request.
    Post,
}

impl HttpMethod {
    /// What to ask upstream for a client's GET or HEAD: a HEAD never becomes a GET.
    pub fn for_client(head: bool) -> HttpMethod {
        if head {
            HttpMethod::Head
        } else {
            HttpMethod::Get
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Head => "HEAD",
            HttpMethod::Post => "POST",
        }
    }
}

/// A request to an upstream registry or token endpoint, as data. Redirects are not followed by
/// the port: the upstream client decides what to send to the next host.
#[derive(Clone, PartialEq, Eq)]
pub struct OutboundRequest {
    pub method: HttpMethod,
    pub url: Url,
    pub headers: Headers,
    /// A body (a minting API's `POST`); `None` for registry requests.
    pub body: Option<Vec<u8>>,
}

impl fmt::Debug for OutboundRequest {
    /// Never prints header values: `Authorization` carries secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n).collect();
        f.debug_struct("OutboundRequest")
            .field("method", &self.method)
            .field("url", &self.url.as_str())
            .field("headers", &names)
            .finish()
    }
}

/// An upstream answer whose body has not been read yet.
pub struct Fetched<B> {
    pub status: u16,
    pub headers: Headers,
    pub body: B,
}

/// Why an upstream request produced no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetError {
    Timeout,
    Failed(String),
    /// The body was longer than the caller's limit.
    TooLarge,
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::Timeout => f.write_str("timed out"),
            NetError::Failed(m) => write!(f, "failed: {m}"),
            NetError::TooLarge => f.write_str("body too large"),
        }
    }
}

/// A storage operation that failed (not "not found", which is `Ok(None)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The upstream HTTP client.
pub trait Upstream {
    /// A response body not yet read (a stream in the worker).
    type Body;
    async fn send(&self, req: OutboundRequest) -> Result<Fetched<Self::Body>, NetError>;
    /// Reads a whole body, failing with `TooLarge` past `limit` bytes.
    async fn read(&self, body: Self::Body, limit: usize) -> Result<Vec<u8>, NetError>;
    /// RSASSA-PKCS1-v1_5 with SHA-256 of `message` by the PKCS#8 key `pkcs8_der`: the runtime's
    /// crypto (WebCrypto in the worker) signing a Google service account's JWT
    /// (`crate::upstream::cloud::google`). A port without it refuses.
    async fn sign_rs256(&self, pkcs8_der: &[u8], message: &[u8]) -> Result<Vec<u8>, String> {
        let _ = (pkcs8_der, message);
        Err("no RSA signer here".into())
    }
}

/// A stored record and the day it was last read (Unix days, kept in the key's KV metadata so a
/// listing shows it without reading the value; `None` for a record written without one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: Vec<u8>,
    pub read_day: Option<u64>,
}

/// One page of a key listing: each key with its last-read day, and where the next page starts
/// (`None` when this was the last page).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub keys: Vec<(String, Option<u64>)>,
    pub cursor: Option<String>,
}

/// Small records (manifests, tag pointers, links).
pub trait Kv {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError>;
    /// Stores `value`, marked as read on `read_day`.
    async fn put(&self, key: &str, value: Vec<u8>, read_day: u64) -> Result<(), StoreError>;
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// At most `limit` keys starting with `prefix`, in key order, from `cursor` on.
    async fn list(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page, StoreError>;
}

/// What storage holds under a blob's key: its size, and the registries whose upstreams delivered
/// exactly these bytes. That list is stored with the object itself (R2 custom metadata), so it is
/// written only by a put that storage accepted — one whose bytes hashed to the digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub size: u64,
    /// Registry names as configured; empty for an object stored before the list existed.
    pub registries: Vec<String>,
}

impl Stored {
    /// Whether `registry`'s upstream delivered these bytes itself.
    pub fn vouched_by(&self, registry: &str) -> bool {
        self.registries.iter().any(|r| r == registry)
    }

    /// The list to store with a new copy that `registry` delivered.
    pub fn with(&self, registry: &str) -> Vec<String> {
        let mut registries = self.registries.clone();
        if !self.vouched_by(registry) {
            registries.push(registry.to_owned());
        }
        registries
    }

    /// The list as stored in the object's metadata: a JSON array of names.
    pub fn encode_registries(registries: &[String]) -> String {
        serde_json::to_string(registries).expect("a list of strings serializes")
    }

    /// Reads the stored list; anything unreadable vouches for nobody.
    pub fn decode_registries(value: Option<&str>) -> Vec<String> {
        value
            .and_then(|v| serde_json::from_str(v).ok())
            .unwrap_or_default()
    }
}

/// The custom-metadata name under which a blob object keeps [`Stored::registries`].
pub const REGISTRIES_METADATA: &str = "registries";

/// Blob storage.
pub trait Blobs {
    /// A body to hand the client (a stream in the worker).
    type Body;
    /// What is stored under `key`, if anything.
    async fn stat(&self, key: &str) -> Result<Option<Stored>, StoreError>;
    /// The blob and its bytes, or only `len` bytes from `offset` when `part` is
    /// `Some((offset, len))` (the caller has checked the part lies inside the blob).
    async fn get(
        &self,
        key: &str,
        part: Option<(u64, u64)>,
    ) -> Result<Option<(Stored, Self::Body)>, StoreError>;
    /// Returns a body that yields `body`'s bytes to the client while the same bytes are stored under
    /// `key` in the background, with `registries` (see [`Stored`]). Storage must refuse the object
    /// unless it is exactly `len` bytes that hash to `digest`, so a corrupt or truncated transfer
    /// is never cached — and a refused put leaves what was stored before untouched.
    ///
    /// The returned body ends cleanly only when the bytes were right: when they turn out short,
    /// long or hashing to another digest, or upstream stalls (see [`crate::watchdog`]), it errors,
    /// so the client sees a failed transfer rather than a clean end.
    fn fill(
        &self,
        key: &str,
        body: Self::Body,
        len: u64,
        digest: &Digest,
        registries: &[String],
    ) -> Self::Body;
    /// Returns a body that yields `body`'s bytes to the client without storing them, and errors at
    /// its end unless they are `len` bytes (when given) hashing to `digest` — or as soon as upstream
    /// stalls or sends more than `len`. For bytes that must not be cached (no `Content-Length`, or
    /// a blob read on another registry's word) but must not end cleanly when wrong either.
    fn verify(&self, body: Self::Body, len: Option<u64>, digest: &Digest) -> Self::Body;
    /// Returns a body that yields `pieces` in order, `len` bytes in all (a `multipart/byteranges`
    /// answer, see [`crate::range::multipart`]): each [`Piece::Blob`] is read from `key` only when
    /// its turn comes, one storage read open at a time, so memory stays flat whatever the parts'
    /// sizes. The body errors (never ends cleanly) when a read fails or the blob is gone.
    fn pieces(&self, key: &str, pieces: Vec<Piece>, len: u64) -> Self::Body;
    /// Lets go of a body nobody will read (pre-warming): a filling blob keeps filling.
    fn discard(&self, body: Self::Body);
    /// A fill of `key` under way here that another client may follow: the size and registries
    /// the object will be stored with. Only an object's coalescing owner knows its fills; it
    /// announces only fills it can replay from their first byte (see [`Blobs::follow`]).
    fn filling(&self, _key: &str) -> Option<Stored> {
        None
    }
    /// A body that yields the bytes of the fill of `key` under way, from the first byte, as they
    /// arrive from upstream (what has gone by is read back from storage), and ends cleanly only
    /// when the fill proved right — it errors when the fill fails, as the filling client's does.
    /// `None` when no fill of `key` is under way any more.
    fn follow(&self, _key: &str) -> Option<Self::Body> {
        None
    }
    /// Removes a stored blob (retention); removing one that is not stored is not an error.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
}

/// One piece of a body put together from a stored blob (see [`Blobs::pieces`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Bytes the core wrote (a part's headers, a delimiter).
    Bytes(Vec<u8>),
    /// `len` bytes of the blob from `offset` (the caller has checked they lie inside it).
    Blob { offset: u64, len: u64 },
}

/// A body for the client.
pub enum Body<S> {
    Empty,
    Bytes(Vec<u8>),
    Stream(S),
}

/// The answer for the client.
pub struct Reply<S> {
    pub status: u16,
    pub headers: Headers,
    pub body: Body<S>,
}

/// Request coalescing: every cache miss for one object is handed to a single owner (in the
/// worker, a Durable Object named by the object's storage key), which runs the same pull-through
/// logic one request at a time. The first request fetches and fills the cache; the ones that
/// queued behind it find the object cached. So 50 nodes asking at once cost one upstream fetch,
/// across isolates and machines — an in-memory map per isolate could not promise that.
pub trait Coalesce {
    type Body;
    /// Re-sends the client's request to the owner of `key` and returns its answer.
    async fn forward(&self, key: &str) -> Result<Reply<Self::Body>, RegistryError>;
    /// Sends the owner of `key` a `GET` of `path` (a `/v2/<registry>/<repository>/manifests/<digest>`
    /// path the door routes itself) with the client's credentials: how a tag's answer gets the
    /// manifest its tag names from that manifest's own owner, so a client asking for the tag and
    /// one asking for its digest cost one upstream fetch between them.
    async fn forward_path(&self, key: &str, path: &str)
        -> Result<Reply<Self::Body>, RegistryError>;
    /// Asks the owner of a credential record (`key`) for the credential `ask` names (a JSON
    /// `crate::upstream::cloud::mint::Ask`), answered as a JSON `mint::Answer`: the owner serves
    /// one request at a time, so the door refreshes each credential once. `None`: no owner to
    /// ask; mint here.
    async fn mint(&self, key: &str, ask: &[u8]) -> Option<Result<Vec<u8>, RegistryError>> {
        let _ = (key, ask);
        None
    }
}

/// No owner to hand misses to: each request fetches for itself (host tests, or the owner itself).
pub struct NoCoalescing<S>(std::marker::PhantomData<S>);

impl<S> Coalesce for NoCoalescing<S> {
    type Body = S;
    async fn forward(&self, key: &str) -> Result<Reply<S>, RegistryError> {
        Err(RegistryError::new(
            crate::error::ErrorCode::Unknown,
            format!("no owner to forward {key} to"),
        ))
    }
    async fn forward_path(&self, key: &str, _path: &str) -> Result<Reply<S>, RegistryError> {
        self.forward(key).await
    }
}

/// The door-wide counters (in the worker, the `StatsHub` Durable Object, after this isolate's own
/// pending counts were sent to it).
pub trait StatsSource {
    async fn current(&self) -> Result<crate::stats::Stats, StoreError>;
    /// The stored record under a credential key (`crate::cache::keys::credential`), for the
    /// status to show its kind and expiry (never the credential); `None` when there is none.
    async fn credential(&self, key: &str) -> Option<Vec<u8>> {
        let _ = key;
        None
    }
}
