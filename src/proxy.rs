//! Pull-through orchestration, generic over the ports: serve from the cache, or fetch upstream,
//! verify, store and serve.
//!
//! - Manifests are kept in KV by digest (immutable) plus a tag → digest pointer trusted for
//!   `TAG_TTL_SECONDS`. Bytes are served exactly as received; their digest is computed over those
//!   bytes and checked against the reference and upstream's `Docker-Content-Digest` before anything
//!   is stored.
//! - Blobs are served from R2; on a miss they stream from upstream to the client while R2 stores
//!   the same bytes, and R2 refuses the object unless its checksum matches the digest.
//! - A client HEAD on a miss becomes an upstream HEAD, never a GET.

use crate::cache::{keys, ManifestRecord, TagRecord};
use crate::config::Config;
use crate::error::{ErrorCode, RegistryError};
use crate::oci::{acceptable, Digest, Reference, DEFAULT_MANIFEST_ACCEPT};
use crate::ports::{Blobs, Headers, HttpMethod, Kv, Upstream};
use crate::route::{route, Method, Route, Target};
use crate::upstream::token::TokenCache;
use crate::upstream::{net_error, upstream_status, Client};
use std::cell::RefCell;

/// The spec's limit that registries apply to manifests (distribution: 4 MiB).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// What the client sent that matters to the door.
#[derive(Debug, Clone, Copy)]
pub struct ClientRequest<'r> {
    pub method: &'r str,
    pub path: &'r str,
    /// containerd's `?ns=<registry>`.
    pub ns: Option<&'r str>,
    /// All `Accept` values, comma-joined.
    pub accept: Option<&'r str>,
}

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

/// Where an answer came from, for the request log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Not a cacheable request (or an error before the cache was consulted).
    None,
    Hit,
    Miss,
}

impl CacheOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheOutcome::None => "none",
            CacheOutcome::Hit => "hit",
            CacheOutcome::Miss => "miss",
        }
    }
}

/// What happened while answering, for the request log.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub registry: Option<String>,
    pub repository: Option<String>,
    pub kind: &'static str,
    pub cache: Option<CacheOutcome>,
    pub upstream_calls: u32,
    /// Things an operator should see (storage failures, refused upstream content).
    pub notes: Vec<String>,
}

/// One request's view of the door.
pub struct Door<'a, K, B, U> {
    pub config: &'a Config,
    pub kv: &'a K,
    pub blobs: &'a B,
    pub upstream: &'a U,
    pub tokens: &'a RefCell<TokenCache>,
    /// Unix seconds.
    pub now: u64,
}

impl<K, B, U> Door<'_, K, B, U>
where
    K: Kv,
    U: Upstream,
    B: Blobs<Body = U::Body>,
{
    pub async fn handle(&self, req: ClientRequest<'_>) -> (Reply<U::Body>, Outcome) {
        let mut outcome = Outcome {
            kind: "other",
            ..Outcome::default()
        };
        let result = match route(self.config, req.method, req.path, req.ns) {
            Err(e) => Err(e),
            Ok(routed) => {
                let head = routed.method == Method::Head;
                match routed.route {
                    Route::Base => {
                        outcome.kind = "base";
                        Ok(
                            reply(200, Headers::new(), Body::Bytes(b"{}".to_vec()), head)
                                .with_type("application/json"),
                        )
                    }
                    Route::Manifest { target, reference } => {
                        outcome.kind = "manifest";
                        outcome.note_target(&target);
                        self.manifest(&target, &reference, head, req.accept, &mut outcome)
                            .await
                    }
                    Route::Blob { target, digest } => {
                        outcome.kind = "blob";
                        outcome.note_target(&target);
                        self.blob(&target, &digest, head, &mut outcome).await
                    }
                }
            }
        };
        let reply = result.unwrap_or_else(|e| error_reply(&e, req.method == "HEAD"));
        (reply, outcome)
    }

    fn client(&self, target: &Target) -> Result<Client<'_, U>, RegistryError> {
        let upstream = self.config.upstream(&target.registry).ok_or_else(|| {
            RegistryError::new(ErrorCode::NameUnknown, "registry is not configured")
        })?;
        Ok(Client::new(self.upstream, upstream, self.tokens, self.now))
    }

    async fn manifest(
        &self,
        target: &Target,
        reference: &Reference,
        head: bool,
        accept: Option<&str>,
        outcome: &mut Outcome,
    ) -> Result<Reply<U::Body>, RegistryError> {
        let (registry, repo) = (&target.registry, &target.repository);
        // 1. Which digest does the cache say this is?
        let known = match reference {
            Reference::Digest(d) => Some(d.clone()),
            Reference::Tag(tag) => self
                .kv_get(&keys::tag(registry, repo, tag), outcome)
                .await
                .and_then(|b| TagRecord::decode(&b))
                .filter(|t| t.is_fresh(self.now, self.config.tag_ttl_seconds))
                .and_then(|t| Digest::parse(&t.digest).ok()),
        };
        // 2. Serve it from the cache if we have it and the client can take it.
        if let Some(digest) = &known {
            if let Some(record) = self
                .kv_get(&keys::manifest(registry, repo, digest), outcome)
                .await
                .and_then(|b| ManifestRecord::decode(&b, digest))
            {
                if acceptable(&record.media_type, accept) {
                    outcome.cache = Some(CacheOutcome::Hit);
                    return Ok(manifest_reply(record, digest, head));
                }
            }
        }
        outcome.cache = Some(CacheOutcome::Miss);

        // 3. Ask upstream.
        let client = self.client(target)?;
        let tail = format!("manifests/{reference}");
        let wanted = Some(accept.unwrap_or(DEFAULT_MANIFEST_ACCEPT));
        let method = if head {
            HttpMethod::Head
        } else {
            HttpMethod::Get
        };
        let fetched = client.fetch(method, repo, &tail, wanted).await;
        outcome.upstream_calls += client.calls.get();
        let fetched = fetched?;
        if fetched.status != 200 {
            return Err(upstream_status(
                fetched.status,
                &fetched.headers,
                ErrorCode::ManifestUnknown,
                registry,
            ));
        }
        if head {
            // A HEAD never costs a pull upstream, and there are no bytes to verify or cache.
            let mut headers = Headers::new();
            for name in ["content-type", "content-length", "docker-content-digest"] {
                if let Some(v) = fetched.headers.get(name) {
                    headers.set(name, v);
                }
            }
            return Ok(reply(200, headers, Body::Empty, true));
        }
        let bytes = self
            .upstream
            .read(fetched.body, MAX_MANIFEST_BYTES)
            .await
            .map_err(|e| net_error(registry, e))?;

        // 4. Verify before anything is stored.
        let digest = verified_digest(
            reference,
            fetched.headers.get("docker-content-digest"),
            &bytes,
        )
        .map_err(|m| {
            outcome.notes.push(m.clone());
            RegistryError::new(ErrorCode::Unavailable, m)
        })?;
        let media_type = media_type_of(fetched.headers.get("content-type"), &bytes);
        let record = ManifestRecord { media_type, bytes };

        // 5. Store: the manifest by digest, and the tag pointer when the client accepted every
        //    manifest type (a pointer written for a client that could not take an index would
        //    point a multi-platform tag at one platform).
        self.kv_put(
            &keys::manifest(registry, repo, &digest),
            record.encode(),
            outcome,
        )
        .await;
        if let Reference::Tag(tag) = reference {
            if INDEX_TYPES.iter().all(|t| acceptable(t, accept)) {
                let pointer = TagRecord {
                    digest: digest.to_string(),
                    fetched_at: self.now,
                };
                self.kv_put(&keys::tag(registry, repo, tag), pointer.encode(), outcome)
                    .await;
            }
        }
        Ok(manifest_reply(record, &digest, false))
    }

    async fn blob(
        &self,
        target: &Target,
        digest: &Digest,
        head: bool,
        outcome: &mut Outcome,
    ) -> Result<Reply<U::Body>, RegistryError> {
        let key = keys::blob(digest);
        let blob_headers = |len: u64| {
            let mut h = Headers::new();
            h.set("content-type", "application/octet-stream");
            h.set("content-length", len.to_string());
            h.set("docker-content-digest", digest.to_string());
            h
        };
        if head {
            match self.blobs.size(&key).await {
                Ok(Some(len)) => {
                    outcome.cache = Some(CacheOutcome::Hit);
                    return Ok(reply(200, blob_headers(len), Body::Empty, true));
                }
                Ok(None) => {}
                Err(e) => outcome.notes.push(format!("blob store: {e}")),
            }
        } else {
            match self.blobs.get(&key).await {
                Ok(Some((len, body))) => {
                    outcome.cache = Some(CacheOutcome::Hit);
                    return Ok(reply(200, blob_headers(len), Body::Stream(body), false));
                }
                Ok(None) => {}
                Err(e) => outcome.notes.push(format!("blob store: {e}")),
            }
        }
        outcome.cache = Some(CacheOutcome::Miss);

        let client = self.client(target)?;
        let method = if head {
            HttpMethod::Head
        } else {
            HttpMethod::Get
        };
        let fetched = client
            .fetch(method, &target.repository, &format!("blobs/{digest}"), None)
            .await;
        outcome.upstream_calls += client.calls.get();
        let fetched = fetched?;
        if fetched.status != 200 {
            return Err(upstream_status(
                fetched.status,
                &fetched.headers,
                ErrorCode::BlobUnknown,
                &target.registry,
            ));
        }
        let len = fetched
            .headers
            .get("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok());
        if head {
            let mut headers = blob_headers(len.unwrap_or(0));
            if len.is_none() {
                headers.remove("content-length");
            }
            return Ok(reply(200, headers, Body::Empty, true));
        }
        match len {
            Some(len) => {
                let body = self.blobs.fill(&key, fetched.body, len, digest);
                Ok(reply(200, blob_headers(len), Body::Stream(body), false))
            }
            None => {
                // Storage needs the length up front; pass the bytes through uncached.
                outcome.notes.push(format!(
                    "{digest}: upstream sent no Content-Length; not cached"
                ));
                let mut headers = blob_headers(0);
                headers.remove("content-length");
                Ok(reply(200, headers, Body::Stream(fetched.body), false))
            }
        }
    }

    /// A storage read that fails is logged and treated as a miss: upstream can still answer.
    async fn kv_get(&self, key: &str, outcome: &mut Outcome) -> Option<Vec<u8>> {
        match self.kv.get(key).await {
            Ok(v) => v,
            Err(e) => {
                outcome.notes.push(format!("kv get: {e}"));
                None
            }
        }
    }

    /// A storage write that fails is logged; the client still gets its answer.
    async fn kv_put(&self, key: &str, value: Vec<u8>, outcome: &mut Outcome) {
        if let Err(e) = self.kv.put(key, value).await {
            outcome.notes.push(format!("kv put: {e}"));
        }
    }
}

impl Outcome {
    fn note_target(&mut self, target: &Target) {
        self.registry = Some(target.registry.clone());
        self.repository = Some(target.repository.to_string());
    }
}

/// The digest of manifest `bytes`, checked against what was asked for and what upstream claimed.
fn verified_digest(
    reference: &Reference,
    claimed: Option<&str>,
    bytes: &[u8],
) -> Result<Digest, String> {
    let claimed = claimed.and_then(|c| Digest::parse(c.trim()).ok());
    if let Reference::Digest(want) = reference {
        if !want.verifies(bytes) {
            return Err(format!("upstream manifest does not match {want}"));
        }
        return Ok(want.clone());
    }
    match claimed {
        Some(c) if !c.verifies(bytes) => Err(format!(
            "upstream manifest does not match its Docker-Content-Digest {c}"
        )),
        Some(c) => Ok(c),
        None => Ok(Digest::of(crate::oci::Algorithm::Sha256, bytes)),
    }
}

/// `Content-Type` without parameters, else the manifest's own `mediaType` field.
fn media_type_of(content_type: Option<&str>, bytes: &[u8]) -> String {
    let from_header = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim())
        .filter(|c| !c.is_empty() && *c != "application/octet-stream" && *c != "text/plain");
    if let Some(t) = from_header {
        return t.to_owned();
    }
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    serde_json::from_slice::<Probe>(bytes)
        .ok()
        .and_then(|p| p.media_type)
        .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".to_owned())
}

fn manifest_reply<S>(record: ManifestRecord, digest: &Digest, head: bool) -> Reply<S> {
    let mut headers = Headers::new();
    headers.set("content-type", record.media_type);
    headers.set("docker-content-digest", digest.to_string());
    headers.set("etag", format!("\"{digest}\""));
    reply(200, headers, Body::Bytes(record.bytes), head)
}

/// Every reply carries the API version header; a HEAD reply keeps its `Content-Length` but no body.
fn reply<S>(status: u16, mut headers: Headers, body: Body<S>, head: bool) -> Reply<S> {
    headers.set("docker-distribution-api-version", "registry/2.0");
    if let Body::Bytes(b) = &body {
        headers.set("content-length", b.len().to_string());
    }
    Reply {
        status,
        headers,
        body: if head { Body::Empty } else { body },
    }
}

impl<S> Reply<S> {
    fn with_type(mut self, content_type: &str) -> Self {
        self.headers.set("content-type", content_type);
        self
    }
}

pub fn error_reply<S>(e: &RegistryError, head: bool) -> Reply<S> {
    let mut headers = Headers::new();
    if let Some(ra) = &e.retry_after {
        headers.set("retry-after", ra.clone());
    }
    reply(e.status, headers, Body::Bytes(e.body()), head).with_type("application/json")
}
