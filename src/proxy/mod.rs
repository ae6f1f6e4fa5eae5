//! Pull-through orchestration, generic over the ports: serve from the cache, or fetch upstream,
//! verify, store and serve. One module per job, as distribution's proxy keeps them apart:
//!
//! - this module: the request's types ([`ClientRequest`], [`Outcome`], [`Door`]), the dispatch
//!   and its access gate, and the KV helpers (read, mark read today, write);
//! - `tags`: the tag service — a tag's canonical entry and its TTL, revalidation, narrow clients,
//!   stale answers and `serve_stale_on`;
//! - `manifests`: the manifest store by digest — local, else fetched, verified and stored;
//!   upstream's refusals and the 404s remembered;
//! - `blobs`: the blob store — membership (links, vouching registries), R2 reads and ranges,
//!   fills, redirects to storage;
//! - `fetch`: the upstream fetch — the registry, then its fallbacks, skipping those down;
//!   `cloud`: minted cloud credentials;
//! - `misses`: the coalescing layer on the miss path (here, or at the object's owner);
//! - `policy`: the supply-chain policy carried out around a manifest (resolve, admit, `VERIFY`);
//! - `endpoints`: one module per endpoint the door serves itself — `token` (and the challenge),
//!   `resolve`, `prewarm`, `tag_list`, `referrers`, `signed_blob` (the status page is
//!   `crate::status`'s);
//! - `replies`: the reply builders (common headers, OCI error bodies, manifest and blob headers).
//!
//! What holds throughout:
//!
//! - Manifests are kept in KV by digest (immutable) plus a tag → digest pointer trusted for
//!   `TAG_TTL_SECONDS`. Bytes are served exactly as received; their digest is computed over those
//!   bytes and checked against the reference and upstream's `Docker-Content-Digest` before anything
//!   is stored.
//! - Blobs are served from R2; on a miss they stream from upstream to the client while R2 stores
//!   the same bytes, and R2 refuses the object unless its checksum matches the digest.
//! - A client HEAD on a miss becomes an upstream HEAD, never a GET.
//! - `Range` reads are served from R2 as `206`, several ranges as one `multipart/byteranges` body
//!   (`crate::range`); on a miss a range from byte 0 — or a list of ranges — fills the cache as a
//!   whole read would (200), any other single range is passed upstream and not cached.
//! - Manifests are served only with a checked manifest media type (`crate::oci::serving_type`):
//!   nothing upstream says becomes active content on the door's origin.
//! - Tag lists are sorted (the spec's MUST) with their `Link` pointed back at the door; referrers
//!   come from upstream's API, or from the referrers tag schema (`sha256-<hex>`) when upstream
//!   lacks it.

use crate::access::{AuthError, Principal};
use crate::cache::decide::{tag_plan, AcceptSet, TagPlan, CANONICAL_ACCEPT};
use crate::cache::{keys, AbsentRecord, ManifestRecord, TagRecord};
use crate::config::Config;
use crate::config::{pin_key, BlobRedirect};
use crate::error::{ErrorCode, RegistryError};
use crate::oci::{
    acceptable, manifest_media_type, says_nothing, serving_type, Digest, Reference, References,
    DEFAULT_MANIFEST_ACCEPT, JSON, OCI_INDEX,
};
use crate::policy::AccessVerdict;
use crate::ports::{Blobs, Coalesce, Fetched, Headers, HttpMethod, Kv, Stored, Upstream};
use crate::range::{self, Ranges};
use crate::route::{resolve_name, route, Kind, Method, RequestLine, Route, Routed, Target};
use crate::signing::sigv4::{PresignRequest, R2_REGION, S3_SERVICE};
use crate::signing::url_token;
use crate::upstream::health::{Admit, Backoff, Health};
use crate::upstream::token::TokenCache;
use crate::upstream::{net_error, upstream_status, Client, UpstreamError};
use std::cell::RefCell;

mod blobs;
mod cloud;
mod endpoints;
mod fetch;
mod manifests;
mod misses;
mod policy;
mod replies;
mod tags;

pub use endpoints::Prewarmed;
use fetch::{is_transient, is_transient_error};
use misses::Missed;
pub use misses::{path_request_headers, Misses};
pub use policy::POLICY_HEADER;
use replies::{blob_headers, head_reply, manifest_reply, pointer_reply};
pub use replies::{error_reply, reply, DEFAULT_CSP, NOSNIFF};

/// The spec's limit that registries apply to manifests (distribution: 4 MiB).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// The most images one `/_frontdoor/resolve` request may name: each can cost an upstream HEAD,
/// so a longer list is refused (`400`) before any is resolved.
pub const MAX_RESOLVE_IMAGES: usize = 50;

/// The largest upstream tag list read (to sort it): Docker Hub's longest lists are far smaller.
pub const MAX_TAG_LIST_BYTES: usize = 16 * 1024 * 1024;

/// What the client sent that matters to the door.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientRequest<'r> {
    pub line: RequestLine<'r>,
    /// All `Accept` values, comma-joined.
    pub accept: Option<&'r str>,
    /// The `Range` header.
    pub range: Option<&'r str>,
    /// The `Authorization` header.
    pub authorization: Option<&'r str>,
    /// How the client reached the door (`https://door.example.com`), for the token realm.
    pub origin: Option<&'r str>,
    /// The request body, read only for `POST /token`.
    pub body: Option<&'r [u8]>,
    /// `CF-Connecting-IP`: where the client is, for the audit trail.
    pub client_ip: Option<&'r str>,
}

pub use crate::ports::{Body, Reply};

/// Where a manifest or blob answer came from; also sent to the client as `X-Frontdoor-Cache`.
pub const CACHE_HEADER: &str = "x-frontdoor-cache";
/// Seconds until a down upstream is asked again (see [`Outcome::upstream_down`]).
pub const DOWN_HEADER: &str = "x-frontdoor-upstream-down";
pub const SECONDS_PER_DAY: u64 = 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Served from the cache without asking upstream.
    Hit,
    /// Fetched from upstream.
    Miss,
    /// A stale tag confirmed unchanged by an upstream HEAD.
    Revalidated,
    /// Served from the cache because upstream failed (429, 5xx, unreachable).
    Stale,
    /// Streamed from another client's fill under way (a cold herd's later clients).
    Joined,
}

impl CacheOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheOutcome::Hit => "hit",
            CacheOutcome::Miss => "miss",
            CacheOutcome::Revalidated => "revalidated",
            CacheOutcome::Stale => "stale",
            CacheOutcome::Joined => "joined",
        }
    }

    /// An owner's `X-Frontdoor-Cache` as this door's outcome (anything else: it fetched).
    pub fn of_owner(header: Option<&str>) -> CacheOutcome {
        [
            CacheOutcome::Hit,
            CacheOutcome::Revalidated,
            CacheOutcome::Stale,
            CacheOutcome::Joined,
        ]
        .into_iter()
        .find(|c| header == Some(c.as_str()))
        .unwrap_or(CacheOutcome::Miss)
    }
}

/// What happened while answering, for the request log.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub registry: Option<String>,
    pub repository: Option<String>,
    /// What was asked for (`Kind::Other` when the request routes nowhere).
    pub kind: Kind,
    pub cache: Option<CacheOutcome>,
    pub upstream_calls: u32,
    /// The miss was handed to the object's owner (see [`Coalesce`]).
    pub coalesced: bool,
    /// Upstream's last `ratelimit-remaining` and `ratelimit-limit` (Docker Hub: `N;w=21600`).
    pub ratelimit_remaining: Option<String>,
    pub ratelimit_limit: Option<String>,
    /// Things an operator should see (storage failures, refused upstream content).
    pub notes: Vec<String>,
    /// Seconds until the registry's upstream is asked again, when it was found down (or known
    /// to be): sent as `X-Frontdoor-Upstream-Down`, which is how an object's owner tells the
    /// worker that handed it the request, so the worker's next clients are served at once.
    pub upstream_down: Option<u64>,
    /// The audit trail (see `crate::policy`): who asked (the `ACCESS` user, or `anonymous`), from
    /// where (`CF-Connecting-IP`), for which reference, the digest served or refused, and the
    /// policy decision. Never a credential.
    pub user: Option<String>,
    pub client_ip: Option<String>,
    pub reference: Option<String>,
    pub digest: Option<String>,
    pub decision: Option<String>,
    /// An immutable tag found moved upstream: (image, digest kept, digest upstream names now).
    pub tag_moved: Option<(String, String, String)>,
}

/// One request's view of the door.
pub struct Door<'a, K, B, U, C> {
    pub config: &'a Config,
    pub kv: &'a K,
    pub blobs: &'a B,
    pub upstream: &'a U,
    pub tokens: &'a RefCell<TokenCache>,
    /// Which upstreams are down (per isolate, like the tokens).
    pub health: &'a RefCell<Health>,
    /// Where cache misses are answered: here, or at each object's owner (see [`Misses`]).
    pub misses: Misses<'a, C>,
    /// Unix seconds.
    pub now: u64,
}

impl<K, B, U, C> Door<'_, K, B, U, C>
where
    K: Kv,
    U: Upstream,
    B: Blobs<Body = U::Body>,
    C: Coalesce<Body = U::Body>,
{
    pub async fn handle(&self, req: ClientRequest<'_>) -> (Reply<U::Body>, Outcome) {
        let mut outcome = Outcome::default();
        let result = match route(self.config, req.line) {
            Err(e) => Err(e),
            Ok(routed) => self.dispatch(routed, &req, &mut outcome).await,
        };
        outcome.client_ip = req.client_ip.map(str::to_owned);
        let mut reply = result.unwrap_or_else(|e| error_reply(&e, req.line.method == "HEAD"));
        policy::note_decision(&mut reply, &mut outcome);
        if let Some(cache) = outcome.cache {
            reply.headers.set(CACHE_HEADER, cache.as_str());
        }
        if let Some(seconds) = outcome.upstream_down {
            reply.headers.set(DOWN_HEADER, seconds.to_string());
        }
        (reply, outcome)
    }

    /// Checks who is asking and whether they may, then answers the route.
    async fn dispatch(
        &self,
        routed: Routed,
        req: &ClientRequest<'_>,
        outcome: &mut Outcome,
    ) -> Result<Reply<U::Body>, RegistryError> {
        let head = routed.method == Method::Head;
        outcome.kind = routed.route.kind();
        // These carry their own authority: a URL signature, or the credentials being exchanged.
        match &routed.route {
            Route::SignedBlob { digest, query } => {
                return self
                    .signed_blob(digest, query, head, req.range, outcome)
                    .await;
            }
            Route::Token { post, query } => {
                return self.token(*post, query, req);
            }
            Route::Prewarm { query } => {
                return self.prewarm_endpoint(query, req).await;
            }
            Route::Status { .. } => {
                // The worker answers these before the door (`crate::status::serve`): the counters
                // live outside the request's ports.
                crate::status::authorize(self.config, req.authorization, self.now)?;
                return Err(RegistryError::new(
                    ErrorCode::Unsupported,
                    "the status is not served here",
                )
                .with_status(404));
            }
            _ => {}
        }
        let access = &self.config.access;
        let principal = access
            .authenticate(req.authorization, self.now)
            .map_err(|e| {
                let why = match e {
                    AuthError::BadCredentials => "the user name or password is wrong",
                    AuthError::BadToken => "the token is invalid or expired",
                };
                self.challenge(req, None, why)
            })?;
        outcome.user = Some(policy::user_of(&principal));
        if let Some(target) = routed.route.target() {
            outcome.note_target(target);
            let name = format!("{}/{}", target.registry, target.repository);
            match crate::policy::access(access, &principal, &name) {
                AccessVerdict::Allowed => {}
                // A user (by Basic credentials or a token issued to them) whose own patterns
                // do not allow it: a new token won't help, so say so rather than challenge —
                // clients print a 401 as "not logged in".
                AccessVerdict::DeniedUser(user) => {
                    return Err(RegistryError::new(
                        ErrorCode::Denied,
                        format!("{user} may not pull {name}"),
                    ))
                }
                // Anonymous, or a token lacking a scope its user could have: fetch one.
                AccessVerdict::Challenge => {
                    return Err(self.challenge(req, Some(&name), "authentication required"))
                }
            }
        } else if principal == Principal::Anonymous && access.is_restricted() {
            // The version check is where clients learn how to authenticate (containers/image
            // only ever uses the challenge it got here), so a restricted door always answers it
            // with one; anonymous clients then get an anonymous token and pull what they may.
            return Err(self.challenge(req, None, "authentication required"));
        }

        if let Route::Resolve { query } = &routed.route {
            return self.resolve(query, req, &principal, outcome).await;
        }
        match routed.route {
            Route::Base => {
                Ok(reply(200, Headers::new(), Body::Bytes(b"{}".to_vec()), head).with_type(JSON))
            }
            Route::Manifest { target, reference } => {
                self.manifest(&target, &reference, head, req.accept, outcome)
                    .await
            }
            Route::Blob { target, digest } => {
                self.screen_blob(&target, &digest, outcome)?;
                self.blob(&target, &digest, head, req.range, outcome).await
            }
            Route::Tags {
                target,
                n,
                last,
                link_path,
                link_ns,
            } => {
                let link = (link_path.as_str(), link_ns.as_deref());
                self.tags(&target, n, last.as_deref(), link, head, outcome)
                    .await
            }
            Route::Referrers {
                target,
                digest,
                artifact_type,
            } => {
                self.referrers(&target, &digest, artifact_type.as_deref(), head, outcome)
                    .await
            }
            Route::SignedBlob { .. }
            | Route::Token { .. }
            | Route::Resolve { .. }
            | Route::Prewarm { .. }
            | Route::Status { .. } => unreachable!("answered above"),
        }
    }

    /// A storage read that fails is logged and treated as a miss: upstream can still answer.
    async fn kv_get(&self, key: &str, outcome: &mut Outcome) -> Option<Vec<u8>> {
        self.kv_read(key, outcome).await.map(|(value, _)| value)
    }

    /// Reads a record and marks it read today (for retention), saying whether it marked it. The
    /// mark is a KV write, made only when the stored day is older: at most once a day per record,
    /// never on every hit.
    async fn kv_read(&self, key: &str, outcome: &mut Outcome) -> Option<(Vec<u8>, bool)> {
        let entry = match self.kv.get(key).await {
            Ok(entry) => entry?,
            Err(e) => {
                outcome.notes.push(format!("kv get: {e}"));
                return None;
            }
        };
        let stale = entry.read_day.is_none_or(|day| day < self.today());
        if stale {
            self.kv_put(key, entry.value.clone(), outcome).await;
        }
        Some((entry.value, stale))
    }

    /// A storage write that fails is logged; the client still gets its answer. What is written
    /// counts as read today.
    async fn kv_put(&self, key: &str, value: Vec<u8>, outcome: &mut Outcome) {
        if let Err(e) = self.kv.put(key, value, self.today()).await {
            outcome.notes.push(format!("kv put: {e}"));
        }
    }

    /// Today in Unix days: the unit of "last read".
    fn today(&self) -> u64 {
        self.now / SECONDS_PER_DAY
    }
}

impl Outcome {
    fn note_target(&mut self, target: &Target) {
        self.registry = Some(target.registry.clone());
        self.repository = Some(target.repository.to_string());
    }
}
