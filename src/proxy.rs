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
use crate::http_url::HttpUrl;
use crate::oci::{
    acceptable, manifest_media_type, says_nothing, serving_type, Digest, Reference, References,
    DEFAULT_MANIFEST_ACCEPT,
};
use crate::ports::{Blobs, Coalesce, Fetched, Headers, HttpMethod, Kv, Stored, Upstream};
use crate::range::{self, Ranges};
use crate::route::{resolve_name, route, Method, RequestLine, Route, Routed, Target};
use crate::signing::sigv4::{PresignRequest, R2_REGION, S3_SERVICE};
use crate::signing::url_token;
use crate::upstream::health::{Admit, Backoff, Health};
use crate::upstream::token::TokenCache;
use crate::upstream::{net_error, upstream_status, Client};
use std::cell::RefCell;

/// The spec's limit that registries apply to manifests (distribution: 4 MiB).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// The most images one `/_frontdoor/resolve` request may name: each can cost an upstream HEAD,
/// so a longer list is refused (`400`) before any is resolved.
pub const MAX_RESOLVE_IMAGES: usize = 50;

/// The largest upstream tag list read (to sort it): Docker Hub's longest lists are far smaller.
pub const MAX_TAG_LIST_BYTES: usize = 16 * 1024 * 1024;

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

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
}

impl CacheOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheOutcome::Hit => "hit",
            CacheOutcome::Miss => "miss",
            CacheOutcome::Revalidated => "revalidated",
            CacheOutcome::Stale => "stale",
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
    /// Where cache misses go so that only one place fetches each object from upstream. `None`
    /// inside that place (or where there is no such place): fetch directly.
    pub coalesce: Option<&'a C>,
    /// Where a tag's answer gets the manifest its tag names when only its digest is known (the
    /// manifest key's owner, asked by path): set in the worker and in every owner, so the tag's
    /// owner and a by-digest client never fetch the same manifest twice. `None`: fetch directly.
    pub digest_owner: Option<&'a C>,
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
        let mut outcome = Outcome {
            kind: "other",
            ..Outcome::default()
        };
        let result = match route(self.config, req.line) {
            Err(e) => Err(e),
            Ok(routed) => self.dispatch(routed, &req, &mut outcome).await,
        };
        let mut reply = result.unwrap_or_else(|e| error_reply(&e, req.line.method == "HEAD"));
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
        // These carry their own authority: a URL signature, or the credentials being exchanged.
        match &routed.route {
            Route::SignedBlob { digest, query } => {
                outcome.kind = "signed-blob";
                return self
                    .signed_blob(digest, query, head, req.range, outcome)
                    .await;
            }
            Route::Token { post, query } => {
                outcome.kind = "token";
                return self.token(*post, query, req);
            }
            Route::Prewarm { query } => {
                outcome.kind = "prewarm";
                return self.prewarm_endpoint(query, req).await;
            }
            Route::Status { .. } => {
                // The worker answers these before the door (`crate::status::serve`): the counters
                // live outside the request's ports.
                outcome.kind = "status";
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
        if let Some(target) = routed.route.target() {
            outcome.note_target(target);
            let name = format!("{}/{}", target.registry, target.repository);
            if !access.can_pull(&principal, &name) {
                return Err(match access.denied_user(&principal, &name) {
                    // A user (by Basic credentials or a token issued to them) whose own patterns
                    // do not allow it: a new token won't help, so say so rather than challenge —
                    // clients print a 401 as "not logged in".
                    Some(user) => {
                        RegistryError::new(ErrorCode::Denied, format!("{user} may not pull {name}"))
                    }
                    // Anonymous, or a token lacking a scope its user could have: fetch one.
                    None => self.challenge(req, Some(&name), "authentication required"),
                });
            }
        } else if principal == Principal::Anonymous && access.is_restricted() {
            // The version check is where clients learn how to authenticate (containers/image
            // only ever uses the challenge it got here), so a restricted door always answers it
            // with one; anonymous clients then get an anonymous token and pull what they may.
            return Err(self.challenge(req, None, "authentication required"));
        }

        if let Route::Resolve { query } = &routed.route {
            outcome.kind = "resolve";
            return self.resolve(query, req, &principal, outcome).await;
        }
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
                self.manifest(&target, &reference, head, req.accept, outcome)
                    .await
            }
            Route::Blob { target, digest } => {
                outcome.kind = "blob";
                self.blob(&target, &digest, head, req.range, outcome).await
            }
            Route::Tags {
                target,
                n,
                last,
                link_path,
                link_ns,
            } => {
                outcome.kind = "tags";
                let link = (link_path.as_str(), link_ns.as_deref());
                self.tags(&target, n, last.as_deref(), link, head, outcome)
                    .await
            }
            Route::Referrers {
                target,
                digest,
                artifact_type,
            } => {
                outcome.kind = "referrers";
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

    /// `POST /_frontdoor/prewarm[?image=…]` with `Authorization: Bearer <ADMIN_TOKEN>`: pre-warms
    /// the images named, or `PREWARM`'s.
    async fn prewarm_endpoint(
        &self,
        query: &str,
        req: &ClientRequest<'_>,
    ) -> Result<Reply<U::Body>, RegistryError> {
        let allowed = self
            .config
            .admin_token
            .as_ref()
            .is_some_and(|t| crate::access::bearer_is(&t.0, req.authorization));
        if !allowed {
            let mut e = RegistryError::new(
                ErrorCode::Unauthorized,
                "the admin token is missing or wrong",
            );
            e.www_authenticate = Some("Bearer realm=\"frontdoor admin\"".to_owned());
            return Err(e);
        }
        let mut images: Vec<String> = form_urlencoded::parse(query.as_bytes())
            .filter(|(k, _)| k == "image")
            .map(|(_, v)| v.into_owned())
            .collect();
        if images.is_empty() {
            images = self.config.prewarm.clone();
        }
        let mut reports = Vec::new();
        for image in &images {
            reports.push(self.prewarm(image, req.line.host).await);
        }
        let body = serde_json::json!({ "images": reports });
        Ok(reply(
            200,
            Headers::new(),
            Body::Bytes(body.to_string().into_bytes()),
            false,
        )
        .with_type("application/json"))
    }

    /// Pulls `image` — every platform of an index, every manifest and blob — into the cache, so a
    /// node rotation finds it warm. Blobs already stored are not fetched again.
    pub async fn prewarm(&self, image: &str, host: Option<&str>) -> Prewarmed {
        let mut report = Prewarmed {
            image: image.to_owned(),
            ..Prewarmed::default()
        };
        if let Err(e) = self.prewarm_into(image, host, &mut report).await {
            report.error = Some(format!("{}: {}", e.code.as_str(), e.message));
        }
        report
    }

    async fn prewarm_into(
        &self,
        image: &str,
        host: Option<&str>,
        report: &mut Prewarmed,
    ) -> Result<(), RegistryError> {
        // Fetched here, not through an owner: an owner would answer some client's request.
        let direct = Door {
            coalesce: None,
            digest_owner: None,
            ..*self
        };
        let (target, reference) = parse_image(self.config, image, host)?;
        let mut outcome = Outcome::default();
        let mut manifests = vec![reference];
        let mut blobs = Vec::new();
        while let Some(reference) = manifests.pop() {
            let reply = direct
                .manifest(&target, &reference, false, None, &mut outcome)
                .await?;
            report.manifests += 1;
            let Body::Bytes(bytes) = reply.body else {
                continue;
            };
            let refs = References::of(&bytes);
            manifests.extend(refs.manifests.into_iter().map(Reference::Digest));
            for digest in refs.blobs {
                if !blobs.contains(&digest) {
                    blobs.push(digest);
                }
            }
        }
        for digest in blobs {
            let stored = self.blobs.stat(&keys::blob(&digest)).await;
            if matches!(&stored, Ok(Some(s)) if s.vouched_by(&target.registry)) {
                // Still wanted: marked read as a pull would, so retention keeps it. (The manifest
                // that names it came from upstream for this repository: it belongs here.)
                if !self.read_link(&target, &digest, &mut outcome).await {
                    self.link_blob(&target, &digest, &mut outcome).await;
                }
                report.blobs_cached += 1;
                continue;
            }
            let reply = direct
                .blob(&target, &digest, false, None, &mut outcome)
                .await?;
            if let Body::Stream(body) = reply.body {
                self.blobs.discard(body);
            }
            report.blobs_fetched += 1;
        }
        Ok(())
    }

    /// `/_frontdoor/resolve?image=alpine:3.20&image=ghcr.io/acme/app:1.4`: each image as a
    /// digest-pinned reference (`docker.io/library/alpine:3.20@sha256:…`) for CI to write into
    /// Kubernetes manifests — from `PINS`, the cache, or an upstream HEAD (never a counted pull).
    async fn resolve(
        &self,
        query: &str,
        req: &ClientRequest<'_>,
        principal: &Principal,
        outcome: &mut Outcome,
    ) -> Result<Reply<U::Body>, RegistryError> {
        let images: Vec<String> = form_urlencoded::parse(query.as_bytes())
            .filter(|(key, _)| key == "image")
            .map(|(_, image)| image.into_owned())
            .collect();
        // Checked before anything is resolved: one request must not become hundreds upstream.
        if images.len() > MAX_RESOLVE_IMAGES {
            return Err(RegistryError::new(
                ErrorCode::Unsupported,
                format!(
                    "at most {MAX_RESOLVE_IMAGES} images per resolve request; this one names {}: split it",
                    images.len()
                ),
            )
            .with_status(400));
        }
        let mut results = Vec::new();
        for image in images {
            let answer = self.resolve_one(&image, req, principal, outcome).await;
            results.push(match answer {
                Ok(pinned) => serde_json::json!({"image": image, "pinned": pinned}),
                Err(e) => serde_json::json!({
                    "image": image,
                    "error": {"code": e.code.as_str(), "message": e.message},
                }),
            });
        }
        let status = if results.is_empty() { 400 } else { 200 };
        let body = serde_json::json!({ "images": results });
        let mut headers = Headers::new();
        headers.set("cache-control", "no-store");
        Ok(reply(
            status,
            headers,
            Body::Bytes(body.to_string().into_bytes()),
            false,
        )
        .with_type("application/json"))
    }

    async fn resolve_one(
        &self,
        image: &str,
        req: &ClientRequest<'_>,
        principal: &Principal,
        outcome: &mut Outcome,
    ) -> Result<String, RegistryError> {
        let (target, reference) = parse_image(self.config, image, req.line.host)?;
        let canonical = format!("{}/{}", target.registry, target.repository);
        if !self.config.access.can_pull(principal, &canonical) {
            return Err(RegistryError::new(
                ErrorCode::Denied,
                format!("may not pull {canonical}"),
            ));
        }
        let tag = match &reference {
            Reference::Tag(t) => format!(":{t}"),
            Reference::Digest(_) => String::new(),
        };
        // A HEAD, answered here: an owner would answer the client's request (this resolve).
        let direct = Door {
            coalesce: None,
            digest_owner: None,
            ..*self
        };
        let answer = direct
            .manifest(&target, &reference, true, None, outcome)
            .await?;
        let digest = answer
            .headers
            .get("docker-content-digest")
            .ok_or_else(|| RegistryError::new(ErrorCode::Unavailable, "upstream sent no digest"))?;
        Ok(format!("{canonical}{tag}@{digest}"))
    }

    /// 401 with the challenge that sends a client to the door's `/token` for `repository`.
    fn challenge(
        &self,
        req: &ClientRequest<'_>,
        repository: Option<&str>,
        why: &str,
    ) -> RegistryError {
        // `PUBLIC_URL` when set: the client's `Host` header does not choose where it sends its
        // credentials next.
        let public = self.config.public_url.as_ref();
        let origin = public
            .map(|u| u.as_str().trim_end_matches('/'))
            .or(req.origin)
            .unwrap_or("");
        let service = origin.split("://").nth(1).unwrap_or(origin);
        let mut value = format!("Bearer realm=\"{origin}/token\",service=\"{service}\"");
        if let Some(repository) = repository {
            value.push_str(&format!(",scope=\"repository:{repository}:pull\""));
        }
        let mut e = RegistryError::new(ErrorCode::Unauthorized, why);
        e.www_authenticate = Some(value);
        e
    }

    /// `/token`: exchanges credentials (Basic on GET, the OAuth2 password grant on POST, or none)
    /// for a short-lived token granting pull on the requested repositories the principal may read —
    /// and only those.
    fn token(
        &self,
        post: bool,
        query: &str,
        req: &ClientRequest<'_>,
    ) -> Result<Reply<U::Body>, RegistryError> {
        let access = &self.config.access;
        let unauthorized = || {
            RegistryError::new(
                ErrorCode::Unauthorized,
                "the user name or password is wrong",
            )
        };
        let form_body = if post {
            std::str::from_utf8(req.body.unwrap_or_default()).unwrap_or("")
        } else {
            query
        };
        let form: Vec<(String, String)> = form_urlencoded::parse(form_body.as_bytes())
            .into_owned()
            .collect();
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let principal = if post {
            match field("grant_type") {
                Some("password") => access
                    .login(
                        field("username").unwrap_or(""),
                        field("password").unwrap_or(""),
                    )
                    .map_err(|_| unauthorized())?,
                _ => {
                    return Err(RegistryError::new(
                        ErrorCode::Unsupported,
                        "only grant_type=password is supported",
                    )
                    .with_status(400));
                }
            }
        } else {
            match access.authenticate(req.authorization, self.now) {
                Ok(Principal::Token { .. }) | Err(_) => return Err(unauthorized()),
                Ok(p) => p,
            }
        };
        let mut granted = Vec::new();
        for scope in form
            .iter()
            .filter(|(k, _)| k == "scope")
            .flat_map(|(_, v)| v.split(' '))
        {
            let Some(rest) = scope.strip_prefix("repository:") else {
                continue;
            };
            let Some((name, actions)) = rest.rsplit_once(':') else {
                continue;
            };
            if !actions.split(',').any(|a| a == "pull") {
                continue;
            }
            let Ok(target) = resolve_name(self.config, name, req.line.host) else {
                continue;
            };
            let canonical = format!("{}/{}", target.registry, target.repository);
            if access.can_pull(&principal, &canonical) && !granted.contains(&canonical) {
                granted.push(canonical);
            }
        }
        let (token, ttl) = access
            .issue(&principal, granted, self.now)
            .unwrap_or_else(|| ("public".to_owned(), 3600));
        let body = serde_json::json!({"token": token, "access_token": token, "expires_in": ttl});
        let mut headers = Headers::new();
        headers.set("cache-control", "no-store");
        Ok(reply(
            200,
            headers,
            Body::Bytes(body.to_string().into_bytes()),
            false,
        )
        .with_type("application/json"))
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
        // 0. The door's own rules for tags: `:latest` refused, pinned tags frozen at a digest.
        let pinned;
        let reference = match reference {
            Reference::Tag(tag) if self.config.deny_latest && tag == "latest" => {
                return Err(RegistryError::new(
                    ErrorCode::Denied,
                    format!("{registry}/{repo}:latest is refused by this mirror: pull a version tag or a digest"),
                ));
            }
            Reference::Tag(tag) => {
                match self.config.pins.get(&pin_key(registry, repo.as_str(), tag)) {
                    Some(digest) => {
                        outcome.notes.push(format!("{tag} is pinned to {digest}"));
                        pinned = Reference::Digest(digest.clone());
                        &pinned
                    }
                    None => reference,
                }
            }
            Reference::Digest(_) => reference,
        };
        match reference {
            Reference::Digest(digest) => {
                self.manifest_by_digest(target, digest, head, accept, outcome)
                    .await
            }
            Reference::Tag(tag) => {
                self.manifest_by_tag(target, tag, head, accept, outcome)
                    .await
            }
        }
    }

    /// A manifest by digest: immutable, so a cached copy is always served; otherwise fetched,
    /// verified and stored.
    async fn manifest_by_digest(
        &self,
        target: &Target,
        digest: &Digest,
        head: bool,
        accept: Option<&str>,
        outcome: &mut Outcome,
    ) -> Result<Reply<U::Body>, RegistryError> {
        let (registry, repo) = (&target.registry, &target.repository);
        if let Some(record) = self
            .cached_manifest(target, digest, outcome)
            .await
            .filter(|r| acceptable(&r.media_type, accept))
        {
            outcome.cache = Some(CacheOutcome::Hit);
            return Ok(manifest_reply(record, digest, head));
        }
        let reference = Reference::Digest(digest.clone());
        if self.absent_fresh(target, &reference).await {
            outcome.cache = Some(CacheOutcome::Hit);
            return Err(RegistryError::new(
                ErrorCode::ManifestUnknown,
                format!("{registry} does not have {repo}@{digest}"),
            ));
        }
        outcome.cache = Some(CacheOutcome::Miss);
        if let Some(owner) = self.coalesce {
            return self
                .forward(
                    owner,
                    target,
                    &keys::manifest(registry, repo, digest),
                    outcome,
                )
                .await;
        }
        let tail = format!("manifests/{digest}");
        let mut headers = Headers::new();
        headers.set("accept", accept.unwrap_or(DEFAULT_MANIFEST_ACCEPT));
        if head {
            let fetched = self
                .fetch_upstream(target, HttpMethod::Head, &tail, headers, outcome)
                .await?;
            if fetched.status != 200 {
                return Err(self
                    .refused(target, &reference, &fetched, true, outcome)
                    .await);
            }
            let media_type = head_media_type(registry, &fetched.headers, outcome)?;
            return Ok(head_reply(&fetched.headers, media_type));
        }
        let fetched = self
            .fetch_upstream(target, HttpMethod::Get, &tail, headers, outcome)
            .await?;
        if fetched.status != 200 {
            return Err(self
                .refused(target, &reference, &fetched, true, outcome)
                .await);
        }
        let (digest, record) = self.receive(target, &reference, fetched, outcome).await?;
        Ok(manifest_reply(record, &digest, false))
    }

    /// A manifest by tag, from the tag's canonical entry (see [`crate::cache::decide`]).
    async fn manifest_by_tag(
        &self,
        target: &Target,
        tag: &str,
        head: bool,
        accept: Option<&str>,
        outcome: &mut Outcome,
    ) -> Result<Reply<U::Body>, RegistryError> {
        let (registry, repo) = (&target.registry, &target.repository);
        let tag_key = keys::tag(registry, repo, tag);
        let pointer = self
            .kv_get(&tag_key, outcome)
            .await
            .and_then(|b| TagRecord::decode(&b));
        let digest = pointer.as_ref().and_then(|p| Digest::parse(&p.digest).ok());
        let pointer = pointer.filter(|_| digest.is_some());
        // A GET needs the manifest; so does a HEAD when the pointer predates type and size.
        let needs_manifest = !head
            || pointer
                .as_ref()
                .is_some_and(|p| p.media_type.is_none() || p.size.is_none());
        let mut cached = None;
        if let (Some(d), true) = (&digest, needs_manifest) {
            cached = self.cached_manifest(target, d, outcome).await;
        }
        let canonical_type = pointer
            .as_ref()
            .and_then(|p| p.media_type.clone())
            .or_else(|| cached.as_ref().map(|r| r.media_type.clone()));
        let reference = Reference::Tag(tag.to_owned());
        let absent_fresh = pointer.is_none() && self.absent_fresh(target, &reference).await;
        let plan = tag_plan(
            pointer.as_ref(),
            canonical_type.as_deref(),
            accept,
            absent_fresh,
            self.now,
            self.config.tag_ttl_seconds,
        );
        match plan {
            TagPlan::Absent => {
                outcome.cache = Some(CacheOutcome::Hit);
                return Err(RegistryError::new(
                    ErrorCode::ManifestUnknown,
                    format!("{registry} does not have {repo}:{tag}"),
                ));
            }
            TagPlan::Narrow => return self.narrow(target, tag, head, accept, outcome).await,
            TagPlan::Serve => {
                let (pointer, digest) = (pointer.expect("planned"), digest.expect("planned"));
                if head && cached.is_none() {
                    outcome.cache = Some(CacheOutcome::Hit);
                    return Ok(pointer_reply(&pointer, &digest));
                }
                if let Some(record) = cached {
                    outcome.cache = Some(CacheOutcome::Hit);
                    return Ok(manifest_reply(record, &digest, head));
                }
                // Known from a HEAD only: the manifest itself, by digest.
                return self.fetch_named(target, &digest, outcome).await;
            }
            TagPlan::Revalidate | TagPlan::Fetch => {}
        }

        // The registry is known to be down: served here and now, not queued behind a probe.
        if let (Some(retry_in), true) = (self.registry_down(target), self.coalesce.is_some()) {
            outcome.upstream_down = Some(retry_in);
            if let (Some(pointer), Some(old)) = (&pointer, &digest) {
                let why = format!("{registry} is down; asked again in {retry_in} s");
                let known = (pointer, old, cached.as_ref());
                if let Some(reply) = self.stale_tag(known, head, accept, &why, outcome) {
                    return Ok(reply);
                }
            }
        }
        outcome.cache = Some(CacheOutcome::Miss);
        if let Some(owner) = self.coalesce {
            return self.forward(owner, target, &tag_key, outcome).await;
        }
        let tail = format!("manifests/{tag}");
        let mut headers = Headers::new();
        headers.set("accept", CANONICAL_ACCEPT);

        // A HEAD first — free on Docker Hub — for a stale tag (did it move?), a client HEAD, or a
        // client that may not take the canonical type (which one is it?). A GET from a client
        // that takes everything skips it.
        let full = AcceptSet::of(accept).is_full();
        if plan == TagPlan::Revalidate || head || !full {
            let answer = self
                .fetch_upstream(target, HttpMethod::Head, &tail, headers.clone(), outcome)
                .await;
            if is_transient(&answer) {
                if let (Some(pointer), Some(digest)) = (&pointer, &digest) {
                    let why = match &answer {
                        Ok(f) => format!("upstream answered {}", f.status),
                        Err(e) => e.message.clone(),
                    };
                    let known = (pointer, digest, cached.as_ref());
                    if let Some(reply) = self.stale_tag(known, head, accept, &why, outcome) {
                        return Ok(reply);
                    }
                }
            }
            // Opt-in (`serve_stale_on`): a tag deleted upstream, or the mirror's credentials
            // revoked, keeps the copy the door holds in service rather than failing every pull.
            let refusal = match &answer {
                Ok(f) if f.status != 200 => Some(f.status),
                Err(e) if e.code == ErrorCode::Denied => Some(401),
                _ => None,
            };
            let opted = |status: u16| {
                self.config.upstream(registry).is_some_and(|u| {
                    u.serve_stale_on.contains(&status)
                        || (status == 401 && u.serve_stale_on.contains(&403))
                })
            };
            if let (Some(status), Some(pointer), Some(old)) = (refusal, &pointer, &digest) {
                if opted(status) {
                    let why =
                        format!("upstream answered {status}; kept in service (serve_stale_on)");
                    let known = (pointer, old, cached.as_ref());
                    if let Some(reply) = self.stale_tag(known, head, accept, &why, outcome) {
                        // Asked again after another TTL, not on every pull.
                        let kept = TagRecord {
                            fetched_at: self.now,
                            ..pointer.clone()
                        };
                        self.kv_put(&tag_key, kept.encode(), outcome).await;
                        return Ok(reply);
                    }
                }
            }
            let answer = answer?;
            if answer.status != 200 {
                return Err(self
                    .refused(target, &reference, &answer, true, outcome)
                    .await);
            }
            let media_type = head_media_type(registry, &answer.headers, outcome)?;
            let Some(learned) = pointer_from_head(&answer.headers, media_type, self.now) else {
                return Err(RegistryError::new(
                    ErrorCode::Unavailable,
                    format!("{registry} answered a manifest HEAD without a usable Docker-Content-Digest"),
                ));
            };
            let learned_digest = Digest::parse(&learned.digest).expect("parsed above");
            let same = digest.as_ref() == Some(&learned_digest);
            self.kv_put(&tag_key, learned.encode(), outcome).await;
            if same {
                outcome.cache = Some(CacheOutcome::Revalidated);
            }
            let media_type = learned.media_type.clone().unwrap_or_default();
            if !acceptable(&media_type, accept) {
                return self.narrow(target, tag, head, accept, outcome).await;
            }
            if head {
                return Ok(pointer_reply(&learned, &learned_digest));
            }
            if same {
                if let Some(record) = cached {
                    return Ok(manifest_reply(record, &learned_digest, false));
                }
            }
            // The manifest HEAD named, by digest: exactly those bytes, verified.
            let cache = outcome.cache;
            let answer = self.fetch_named(target, &learned_digest, outcome).await;
            let failed = |status: u16| status == 429 || status >= 500;
            return match answer {
                Ok(reply) if failed(reply.status) => {
                    match (
                        cached.filter(|r| acceptable(&r.media_type, accept)),
                        &digest,
                    ) {
                        (Some(record), Some(old)) => {
                            let why = format!("the new manifest's fetch answered {}", reply.status);
                            Ok(self.stale(record, old, false, &why, outcome))
                        }
                        _ => Ok(reply),
                    }
                }
                Ok(reply) => {
                    outcome.cache = cache;
                    Ok(reply)
                }
                // The new manifest could not be had (a body that stalled past its deadline, an
                // outage between the HEAD and the GET): what was cached is served instead.
                Err(e) if is_transient::<U::Body>(&Err(e.clone())) => {
                    match (
                        cached.filter(|r| acceptable(&r.media_type, accept)),
                        &digest,
                    ) {
                        (Some(record), Some(old)) => {
                            Ok(self.stale(record, old, false, &e.message, outcome))
                        }
                        _ => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
        }

        // A GET with the full Accept: the canonical answer, stored with its pointer.
        let fetched = self
            .fetch_upstream(target, HttpMethod::Get, &tail, headers, outcome)
            .await?;
        if fetched.status != 200 {
            return Err(self
                .refused(target, &reference, &fetched, true, outcome)
                .await);
        }
        let (digest, record) = self.receive(target, &reference, fetched, outcome).await?;
        let pointer = TagRecord::of(&digest, &record, self.now);
        self.kv_put(&tag_key, pointer.encode(), outcome).await;
        Ok(manifest_reply(record, &digest, false))
    }

    /// The manifest a tag names, by its digest: through that manifest's owner when there is one,
    /// else fetched here.
    async fn fetch_named(
        &self,
        target: &Target,
        digest: &Digest,
        outcome: &mut Outcome,
    ) -> Result<Reply<U::Body>, RegistryError> {
        let key = keys::manifest(&target.registry, &target.repository, digest);
        let Some(owner) = self.digest_owner else {
            let direct = Door {
                coalesce: None,
                ..*self
            };
            return direct
                .manifest_by_digest(target, digest, false, Some(CANONICAL_ACCEPT), outcome)
                .await;
        };
        // The door routes a `<registry>/` prefix whatever host the client used.
        let path = format!(
            "/v2/{}/{}/manifests/{digest}",
            target.registry, target.repository
        );
        outcome.coalesced = true;
        // The owner's answer is already the client's (its error body included).
        let mut reply = owner.forward_path(&key, &path).await?;
        self.learn_down(target, &mut reply);
        outcome.cache = Some(match reply.headers.get(CACHE_HEADER) {
            Some("hit") => CacheOutcome::Hit,
            Some("stale") => CacheOutcome::Stale,
            _ => CacheOutcome::Miss,
        });
        Ok(reply)
    }

    /// A client that cannot take the tag's canonical type: served from a pointer of its own (per
    /// set of accepted types), else upstream with its own `Accept`. Nothing here touches the
    /// canonical pointer, and a 404 here is not remembered (it answers only this `Accept`).
    async fn narrow(
        &self,
        target: &Target,
        tag: &str,
        head: bool,
        accept: Option<&str>,
        outcome: &mut Outcome,
    ) -> Result<Reply<U::Body>, RegistryError> {
        let (registry, repo) = (&target.registry, &target.repository);
        let key = keys::narrow_tag(registry, repo, tag, &AcceptSet::of(accept).key());
        let pointer = self
            .kv_get(&key, outcome)
            .await
            .and_then(|b| TagRecord::decode(&b));
        let digest = pointer.as_ref().and_then(|p| Digest::parse(&p.digest).ok());
        let mut cached = None;
        if let Some(d) = &digest {
            cached = self
                .cached_manifest(target, d, outcome)
                .await
                .filter(|r| acceptable(&r.media_type, accept));
        }
        let fresh = pointer
            .as_ref()
            .is_some_and(|p| p.is_fresh(self.now, self.config.tag_ttl_seconds));
        if let (true, Some(record), Some(digest)) = (fresh, &cached, &digest) {
            outcome.cache = Some(CacheOutcome::Hit);
            return Ok(manifest_reply(record.clone(), digest, head));
        }
        outcome.cache = Some(CacheOutcome::Miss);
        outcome.notes.push(format!(
            "{tag}: the client does not accept the tag's canonical type"
        ));
        let tail = format!("manifests/{tag}");
        let mut headers = Headers::new();
        headers.set("accept", accept.unwrap_or(DEFAULT_MANIFEST_ACCEPT));
        let method = HttpMethod::for_client(head);
        let answer = self
            .fetch_upstream(target, method, &tail, headers, outcome)
            .await;
        if let (Some(record), Some(digest)) = (&cached, &digest) {
            if is_transient(&answer) {
                let why = match &answer {
                    Ok(f) => format!("upstream answered {}", f.status),
                    Err(e) => e.message.clone(),
                };
                return Ok(self.stale(record.clone(), digest, head, &why, outcome));
            }
        }
        let fetched = answer?;
        if fetched.status != 200 {
            let reference = Reference::Tag(tag.to_owned());
            return Err(self
                .refused(target, &reference, &fetched, false, outcome)
                .await);
        }
        if head {
            let media_type = head_media_type(registry, &fetched.headers, outcome)?;
            return Ok(head_reply(&fetched.headers, media_type));
        }
        let received = self
            .receive(target, &Reference::Tag(tag.to_owned()), fetched, outcome)
            .await;
        let (digest, record) = match (received, cached, &digest) {
            (Ok(got), _, _) => got,
            (Err(e), Some(record), Some(old)) if is_transient::<U::Body>(&Err(e.clone())) => {
                return Ok(self.stale(record, old, false, &e.message, outcome));
            }
            (Err(e), _, _) => return Err(e),
        };
        let pointer = TagRecord::of(&digest, &record, self.now);
        self.kv_put(&key, pointer.encode(), outcome).await;
        Ok(manifest_reply(record, &digest, false))
    }

    /// The manifest stored under `digest` for this repository, if any (and if it still verifies).
    async fn cached_manifest(
        &self,
        target: &Target,
        digest: &Digest,
        outcome: &mut Outcome,
    ) -> Option<ManifestRecord> {
        self.kv_get(
            &keys::manifest(&target.registry, &target.repository, digest),
            outcome,
        )
        .await
        .and_then(|b| ManifestRecord::decode(&b, digest))
        // A record stored before media types were checked may hold one that must not be served:
        // it is a miss, fetched again.
        .filter(|r| manifest_media_type(&r.media_type).is_some())
    }

    /// Whether upstream said 404 for `reference` less than `NEGATIVE_TTL_SECONDS` ago. (Read
    /// without marking it read: a 404 is remembered only briefly.)
    async fn absent_fresh(&self, target: &Target, reference: &Reference) -> bool {
        let key = keys::absent(&target.registry, &target.repository, &reference.to_string());
        self.kv
            .get(&key)
            .await
            .ok()
            .flatten()
            .and_then(|e| AbsentRecord::decode(&e.value))
            .is_some_and(|a| a.is_fresh(self.now, self.config.negative_ttl_seconds))
    }

    /// Reads a manifest GET's body, verifies it against `reference` and upstream's claimed digest,
    /// and stores it by digest (immutable).
    async fn receive(
        &self,
        target: &Target,
        reference: &Reference,
        fetched: Fetched<U::Body>,
        outcome: &mut Outcome,
    ) -> Result<(Digest, ManifestRecord), RegistryError> {
        let bytes = self
            .upstream
            .read(fetched.body, MAX_MANIFEST_BYTES)
            .await
            .map_err(|e| net_error(&target.registry, e))?;
        let digest = verified_digest(
            reference,
            fetched.headers.get("docker-content-digest"),
            &bytes,
        )
        .map_err(|m| {
            outcome.notes.push(m.clone());
            RegistryError::new(ErrorCode::Unavailable, m)
        })?;
        let media_type = media_type_of(
            &target.registry,
            fetched.headers.get("content-type"),
            &bytes,
        )
        .inspect_err(|e| outcome.notes.push(e.message.clone()))?;
        let record = ManifestRecord { media_type, bytes };
        self.kv_put(
            &keys::manifest(&target.registry, &target.repository, &digest),
            record.encode(),
            outcome,
        )
        .await;
        Ok((digest, record))
    }

    /// Hands a miss to the owner of `key`; the owner's answer says what happened there.
    async fn forward(
        &self,
        owner: &C,
        target: &Target,
        key: &str,
        outcome: &mut Outcome,
    ) -> Result<Reply<U::Body>, RegistryError> {
        outcome.coalesced = true;
        let mut reply = owner.forward(key).await?;
        self.learn_down(target, &mut reply);
        if let Some(cache) = reply.headers.get(CACHE_HEADER) {
            outcome.cache = match cache {
                "hit" => Some(CacheOutcome::Hit),
                "revalidated" => Some(CacheOutcome::Revalidated),
                "stale" => Some(CacheOutcome::Stale),
                _ => Some(CacheOutcome::Miss),
            };
        }
        Ok(reply)
    }

    /// An owner's word that the registry's upstream is down: remembered here (the header is the
    /// owner's, not the client's, and is passed on only as this door's own).
    fn learn_down(&self, target: &Target, reply: &mut Reply<U::Body>) {
        let Some(seconds) = reply
            .headers
            .get(DOWN_HEADER)
            .and_then(|s| s.trim().parse::<u64>().ok())
        else {
            return;
        };
        if let Some(primary) = self.config.upstream(&target.registry) {
            let mut health = self.health.borrow_mut();
            for upstream in std::iter::once(primary).chain(primary.fallbacks.iter()) {
                health.note_down(upstream.url.as_str(), self.now, seconds);
            }
        }
    }

    /// Seconds until the registry's upstreams are asked again, when every one of them is down now
    /// (asking sends no probe).
    fn registry_down(&self, target: &Target) -> Option<u64> {
        let primary = self.config.upstream(&target.registry)?;
        let backoff = self.backoff();
        let health = self.health.borrow();
        std::iter::once(primary)
            .chain(primary.fallbacks.iter())
            .map(|u| health.peek(u.url.as_str(), self.now, backoff))
            .try_fold(u64::MAX, |least, wait| wait.map(|w| least.min(w)))
    }

    fn backoff(&self) -> Backoff {
        Backoff {
            seconds: self.config.upstream_backoff_seconds,
            // Headers, then the body (read under the same limit), plus a token request.
            probe_timeout: self.config.upstream_timeout_seconds.saturating_mul(3),
        }
    }

    /// What the door can serve stale for a tag it knows (`pointer`, `digest`, the cached manifest if
    /// any): that manifest when the client takes its type, else — for a HEAD — what the pointer
    /// says. `None` when it holds neither.
    fn stale_tag(
        &self,
        (pointer, digest, cached): (&TagRecord, &Digest, Option<&ManifestRecord>),
        head: bool,
        accept: Option<&str>,
        why: &str,
        outcome: &mut Outcome,
    ) -> Option<Reply<U::Body>> {
        if let Some(record) = cached.filter(|r| acceptable(&r.media_type, accept)) {
            return Some(self.stale(record.clone(), digest, head, why, outcome));
        }
        let takes = pointer
            .media_type
            .as_deref()
            .is_some_and(|t| acceptable(t, accept));
        if !(head && takes && pointer.size.is_some()) {
            return None;
        }
        outcome.cache = Some(CacheOutcome::Stale);
        outcome.notes.push(format!("served stale {digest}: {why}"));
        Some(pointer_reply(pointer, digest))
    }

    /// A cached manifest served because upstream could not answer (429, 5xx, unreachable).
    fn stale(
        &self,
        record: ManifestRecord,
        digest: &Digest,
        head: bool,
        why: &str,
        outcome: &mut Outcome,
    ) -> Reply<U::Body> {
        outcome.cache = Some(CacheOutcome::Stale);
        outcome.notes.push(format!("served stale {digest}: {why}"));
        manifest_reply(record, digest, head)
    }

    /// The error for a manifest answer that is not 200; a 404 to the full `Accept` (`remember`)
    /// is remembered for a short while.
    async fn refused(
        &self,
        target: &Target,
        reference: &Reference,
        fetched: &Fetched<U::Body>,
        remember: bool,
        outcome: &mut Outcome,
    ) -> RegistryError {
        if fetched.status == 404 && remember {
            let key = keys::absent(&target.registry, &target.repository, &reference.to_string());
            let record = AbsentRecord {
                fetched_at: self.now,
            };
            self.kv_put(&key, record.encode(), outcome).await;
        }
        upstream_status(
            fetched.status,
            &fetched.headers,
            ErrorCode::ManifestUnknown,
            &target.registry,
        )
    }

    /// Sends one request upstream: to the registry, then to each configured fallback while the
    /// answer is a transient failure (429, 5xx, unreachable). The last answer is returned. An
    /// upstream that is down (see [`crate::upstream::health`]) is skipped without a request.
    async fn fetch_upstream(
        &self,
        target: &Target,
        method: HttpMethod,
        tail: &str,
        headers: Headers,
        outcome: &mut Outcome,
    ) -> Result<Fetched<U::Body>, RegistryError> {
        let primary = self.config.upstream(&target.registry).ok_or_else(|| {
            RegistryError::new(ErrorCode::NameUnknown, "registry is not configured")
        })?;
        let backoff = self.backoff();
        let mut answer = None;
        for (i, upstream) in std::iter::once(primary)
            .chain(primary.fallbacks.iter())
            .enumerate()
        {
            let health_key = upstream.url.as_str();
            let admit = self
                .health
                .borrow_mut()
                .admit(health_key, self.now, backoff);
            if let Admit::Down { retry_in } = admit {
                outcome.upstream_down = Some(retry_in);
                outcome.notes.push(format!(
                    "{} is down: not asked (next probe in {retry_in} s)",
                    upstream.url
                ));
                let mut e = RegistryError::new(
                    ErrorCode::Unavailable,
                    format!(
                        "{} is unreachable; the mirror retries it in {retry_in} s",
                        target.registry
                    ),
                )
                .with_status(503);
                e.retry_after = Some(retry_in.to_string());
                answer = Some(Err(e));
                continue;
            }
            let client = Client::new(self.upstream, upstream, self.tokens, self.now);
            let result = client
                .fetch(method, &target.repository, tail, headers.clone())
                .await;
            outcome.upstream_calls += client.calls.get();
            outcome.notes.append(&mut client.notes.borrow_mut());
            let reachable = !is_outage(&result);
            let wait = self
                .health
                .borrow_mut()
                .record(health_key, reachable, self.now, backoff);
            match (admit, reachable) {
                (Admit::Probe, true) => outcome
                    .notes
                    .push(format!("{} is back (probe answered)", upstream.url)),
                (_, false) if wait > 0 => {
                    outcome.upstream_down = Some(wait);
                    outcome.notes.push(format!(
                        "{} is down: not asked again for {wait} s",
                        upstream.url
                    ))
                }
                _ => {}
            }
            if let Ok(f) = &result {
                if let Some(r) = f.headers.get("ratelimit-remaining") {
                    outcome.ratelimit_remaining = Some(r.to_owned());
                    outcome.ratelimit_limit = f.headers.get("ratelimit-limit").map(str::to_owned);
                }
            }
            if i > 0 {
                outcome
                    .notes
                    .push(format!("used fallback {}", upstream.url));
            }
            let transient = is_transient(&result);
            answer = Some(result);
            if !transient {
                break;
            }
        }
        answer.expect("the primary is always tried")
    }

    async fn blob(
        &self,
        target: &Target,
        digest: &Digest,
        head: bool,
        range_header: Option<&str>,
        outcome: &mut Outcome,
    ) -> Result<Reply<U::Body>, RegistryError> {
        let key = keys::blob(digest);
        // HEAD ignores Range, as registries do.
        let range = parse_range(range_header, head)?;

        // 0. Blobs are stored once for every repository and registry, so a stored blob is served
        //    through this name only on this registry's own evidence: its upstream delivered these
        //    bytes (storage keeps the registries whose puts it verified), and the blob belongs to
        //    this repository — linked when it was fetched through it, or confirmed now by this
        //    registry's upstream (a HEAD, with the mirror's rights on this repository). Otherwise a
        //    private layer could be read through any public repository's name, or through another
        //    registry whose upstream says yes to every digest.
        let linked = self.read_link(target, digest, outcome).await;
        let mut known = None;
        if !linked || self.config.blob_redirect != BlobRedirect::Off || head || range.is_some() {
            known = match self.blobs.stat(&key).await {
                Ok(stored) => stored,
                Err(e) => {
                    outcome.notes.push(format!("blob store: {e}"));
                    None
                }
            };
        }
        let mut refill = None;
        match &known {
            Some(stored) if !stored.vouched_by(&target.registry) => refill = Some(stored.clone()),
            Some(_) if !linked => {
                let answer = self
                    .fetch_upstream(
                        target,
                        HttpMethod::Head,
                        &format!("blobs/{digest}"),
                        Headers::new(),
                        outcome,
                    )
                    .await?;
                if answer.status != 200 {
                    return Err(upstream_status(
                        answer.status,
                        &answer.headers,
                        ErrorCode::BlobUnknown,
                        &target.registry,
                    ));
                }
                self.link_blob(target, digest, outcome).await;
            }
            _ => {}
        }

        // 1. From R2: a redirect to storage when configured, else the bytes.
        if refill.is_none() {
            if !head && self.config.blob_redirect != BlobRedirect::Off && known.is_some() {
                outcome.cache = Some(CacheOutcome::Hit);
                return self.redirect(digest);
            }
            match self
                .stored_blob(
                    digest,
                    head,
                    range.clone(),
                    Some(&target.registry),
                    known,
                    outcome,
                )
                .await?
            {
                Served::Reply(reply) => return Ok(reply),
                Served::Absent => {}
                Served::NotVouched(stored) => refill = Some(stored),
            }
        }
        if refill.is_some() {
            outcome.notes.push(format!(
                "{digest} is stored, but not from {}: fetched from it",
                target.registry
            ));
        }
        outcome.cache = Some(CacheOutcome::Miss);

        // 2. From upstream. A range that does not start at 0 is only passed through; a whole read
        //    goes to the object's single owner, which fetches and fills once for everyone.
        //    Several ranges of a blob not stored yet are read whole, like no range: the first
        //    client gets the whole blob (200) while it fills the cache, later ones their parts.
        let partial = range
            .as_ref()
            .and_then(Ranges::single)
            .filter(|r| !r.is_everything());
        if let (Some(owner), false, None) = (self.coalesce, head, partial) {
            return self.forward(owner, target, &key, outcome).await;
        }
        let mut headers = Headers::new();
        if let Some(r) = partial {
            headers.set("range", r.header());
        }
        let method = HttpMethod::for_client(head);
        let fetched = self
            .fetch_upstream(target, method, &format!("blobs/{digest}"), headers, outcome)
            .await?;
        let len = fetched
            .headers
            .get("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok());
        match fetched.status {
            200 => {}
            206 if partial.is_some() => {
                let mut headers = blob_headers(digest, len);
                if let Some(cr) = fetched.headers.get("content-range") {
                    headers.set("content-range", cr);
                }
                return Ok(reply(206, headers, Body::Stream(fetched.body), false));
            }
            s => {
                return Err(upstream_status(
                    s,
                    &fetched.headers,
                    ErrorCode::BlobUnknown,
                    &target.registry,
                ))
            }
        }
        // Upstream has it in this repository: it belongs here.
        self.link_blob(target, digest, outcome).await;
        if head {
            return Ok(reply(200, blob_headers(digest, len), Body::Empty, true));
        }
        // A whole blob (asked for, or upstream ignored the range): fill the cache as it streams.
        match len {
            Some(len) => {
                // A copy already stored keeps the registries that vouched for it; this one adds
                // itself — if storage accepts the bytes.
                let registries = match &refill {
                    Some(stored) => stored.with(&target.registry),
                    None => vec![target.registry.clone()],
                };
                let body = self
                    .blobs
                    .fill(&key, fetched.body, len, digest, &registries);
                Ok(reply(
                    200,
                    blob_headers(digest, Some(len)),
                    Body::Stream(body),
                    false,
                ))
            }
            None => {
                // Storage needs the length up front; pass the bytes through uncached (checked
                // against the digest all the same: a wrong blob must not end cleanly).
                outcome.notes.push(format!(
                    "{digest}: upstream sent no Content-Length; not cached"
                ));
                let body = self.blobs.verify(fetched.body, None, digest);
                Ok(reply(
                    200,
                    blob_headers(digest, None),
                    Body::Stream(body),
                    false,
                ))
            }
        }
    }

    /// A blob as R2 holds it: whole, a range (206), or headers only; a stored blob counts as a hit
    /// even when the range asked for is outside it. With `registry`, only a copy that registry
    /// vouched for is served (see [`crate::ports::Stored`]). `known`: what a `stat` just said.
    async fn stored_blob(
        &self,
        digest: &Digest,
        head: bool,
        range: Option<Ranges>,
        registry: Option<&str>,
        known: Option<Stored>,
        outcome: &mut Outcome,
    ) -> Result<Served<U::Body>, RegistryError> {
        let key = keys::blob(digest);
        let vouched = |s: &Stored| registry.is_none_or(|r| s.vouched_by(r));
        let stored = match (head, &range, known) {
            (false, None, _) => match self.blobs.get(&key, None).await {
                Ok(Some((stored, body))) if vouched(&stored) => {
                    outcome.cache = Some(CacheOutcome::Hit);
                    let headers = blob_headers(digest, Some(stored.size));
                    return Ok(Served::Reply(reply(
                        200,
                        headers,
                        Body::Stream(body),
                        false,
                    )));
                }
                Ok(Some((stored, body))) => {
                    self.blobs.discard(body);
                    return Ok(Served::NotVouched(stored));
                }
                Ok(None) => return Ok(Served::Absent),
                Err(e) => {
                    outcome.notes.push(format!("blob store: {e}"));
                    return Ok(Served::Absent);
                }
            },
            (_, _, Some(known)) => known,
            _ => match self.blobs.stat(&key).await {
                Ok(Some(stored)) => stored,
                Ok(None) => return Ok(Served::Absent),
                Err(e) => {
                    outcome.notes.push(format!("blob store: {e}"));
                    return Ok(Served::Absent);
                }
            },
        };
        if !vouched(&stored) {
            return Ok(Served::NotVouched(stored));
        }
        outcome.cache = Some(CacheOutcome::Hit);
        let size = stored.size;
        let Some(range) = range else {
            return Ok(Served::Reply(reply(
                200,
                blob_headers(digest, Some(size)),
                Body::Empty,
                true,
            )));
        };
        let parts = range.resolve(size);
        let (first, last) = match parts.as_slice() {
            [] => {
                let mut e = RegistryError::new(
                    ErrorCode::RangeInvalid,
                    format!("{} is outside the blob's {size} bytes", range.header()),
                );
                e.content_range = Some(format!("bytes */{size}"));
                return Err(e);
            }
            [one] => *one,
            several => {
                // RFC 9110 §15.3.7: several parts go as one multipart/byteranges body.
                let boundary = range::boundary(digest);
                let (pieces, len) = range::multipart(several, size, &boundary);
                let mut headers = blob_headers(digest, Some(len));
                headers.set("content-type", range::multipart_type(&boundary));
                let body = self.blobs.pieces(&key, pieces, len);
                return Ok(Served::Reply(reply(
                    206,
                    headers,
                    Body::Stream(body),
                    false,
                )));
            }
        };
        let len = last - first + 1;
        match self.blobs.get(&key, Some((first, len))).await {
            Ok(Some((_, body))) => {
                let mut headers = blob_headers(digest, Some(len));
                headers.set("content-range", format!("bytes {first}-{last}/{size}"));
                Ok(Served::Reply(reply(
                    206,
                    headers,
                    Body::Stream(body),
                    false,
                )))
            }
            _ => Ok(Served::Absent),
        }
    }

    /// 307 to where storage serves the blob: a presigned R2 URL, or the door's own signed URL.
    fn redirect(&self, digest: &Digest) -> Result<Reply<U::Body>, RegistryError> {
        let ttl = self.config.redirect_ttl_seconds;
        let location = match &self.config.blob_redirect {
            BlobRedirect::Off => {
                return Err(RegistryError::new(
                    ErrorCode::Unknown,
                    "redirect asked for with BLOB_REDIRECT=off",
                ))
            }
            BlobRedirect::S3(s3) => PresignRequest {
                endpoint: s3.endpoint.clone(),
                bucket: s3.bucket.clone(),
                key: keys::blob(digest),
                region: R2_REGION.to_owned(),
                service: S3_SERVICE.to_owned(),
                access_key_id: s3.access_key_id.clone(),
                secret_access_key: s3.secret_access_key.clone(),
                now: self.now,
                expires_in: ttl,
            }
            .presign()
            .map_err(|e| RegistryError::new(ErrorCode::Unknown, format!("presigning: {e}")))?,
            BlobRedirect::SelfSigned(key) => format!(
                "/_blob/{}/{}?{}",
                digest.algorithm().as_str(),
                digest.hex(),
                url_token::sign(&key.0, &digest.to_string(), self.now + ttl)
            ),
        };
        let mut headers = Headers::new();
        headers.set("location", location);
        headers.set("docker-content-digest", digest.to_string());
        headers.set("cache-control", "no-store");
        Ok(reply(307, headers, Body::Empty, false))
    }

    /// `/_blob/<alg>/<hex>?expires=…&sig=…`: the door's own signed blob URL, served straight from
    /// R2 (with `Range`) and cacheable forever — the bytes under a digest never change. A bad or
    /// expired signature gets 403 and no bytes.
    async fn signed_blob(
        &self,
        digest: &Digest,
        query: &str,
        head: bool,
        range_header: Option<&str>,
        outcome: &mut Outcome,
    ) -> Result<Reply<U::Body>, RegistryError> {
        let BlobRedirect::SelfSigned(key) = &self.config.blob_redirect else {
            return Err(RegistryError::new(
                ErrorCode::Unsupported,
                "self-signed blob URLs are not enabled",
            )
            .with_status(404));
        };
        url_token::verify_query(&key.0, &digest.to_string(), query, self.now)
            .map_err(|e| RegistryError::new(ErrorCode::Denied, format!("blob URL refused: {e}")))?;
        let range = parse_range(range_header, head)?;
        match self
            .stored_blob(digest, head, range, None, None, outcome)
            .await?
        {
            Served::Reply(mut reply) => {
                reply
                    .headers
                    .set("cache-control", "public, max-age=31536000, immutable");
                Ok(reply)
            }
            Served::Absent | Served::NotVouched(_) => Err(RegistryError::new(
                ErrorCode::BlobUnknown,
                format!("{digest} is not stored"),
            )),
        }
    }

    /// `tags/list` from upstream (tags change; there is nothing to cache or verify), in lexical
    /// order — the spec's MUST, which some registries do not keep — with upstream's `Link` to the
    /// next page rewritten to the door's own path for this repository. A client HEAD is answered
    /// from an upstream GET (a tag list is no pull, and distribution has no HEAD for it: it
    /// answers 405), with the headers the GET would get.
    async fn tags(
        &self,
        target: &Target,
        n: Option<u32>,
        last: Option<&str>,
        (link_path, link_ns): (&str, Option<&str>),
        head: bool,
        outcome: &mut Outcome,
    ) -> Result<Reply<U::Body>, RegistryError> {
        let mut query = form_urlencoded::Serializer::new(String::new());
        if let Some(n) = n {
            query.append_pair("n", &n.to_string());
        }
        if let Some(last) = last {
            query.append_pair("last", last);
        }
        let query = query.finish();
        let tail = match query.is_empty() {
            true => "tags/list".to_owned(),
            false => format!("tags/list?{query}"),
        };
        let fetched = self
            .fetch_upstream(target, HttpMethod::Get, &tail, Headers::new(), outcome)
            .await?;
        if fetched.status != 200 {
            return Err(upstream_status(
                fetched.status,
                &fetched.headers,
                ErrorCode::NameUnknown,
                &target.registry,
            ));
        }
        let upstream_link = fetched
            .headers
            .get("link")
            .and_then(|l| next_link(l, link_path, link_ns));
        let bytes = self
            .upstream
            .read(fetched.body, MAX_TAG_LIST_BYTES)
            .await
            .map_err(|e| net_error(&target.registry, e))?;
        #[derive(serde::Deserialize, serde::Serialize)]
        struct TagList {
            #[serde(default)]
            name: String,
            tags: Option<Vec<String>>,
        }
        let mut list: TagList = serde_json::from_slice(&bytes).map_err(|e| {
            RegistryError::new(
                ErrorCode::Unavailable,
                format!("upstream tag list is not JSON: {e}"),
            )
        })?;
        // Some registries (distribution 2.8 on filesystem storage among them) ignore `n` and
        // `last`: they are applied here too — idempotent when upstream already did — so clients
        // always get pages in lexical order with a `Link` to the next.
        let mut tags = list.tags.take().unwrap_or_default();
        tags.sort();
        if let Some(last) = last {
            tags.retain(|t| t.as_str() > last);
        }
        let mut link = upstream_link;
        if let Some(n) = n.map(|n| n as usize) {
            if tags.len() > n {
                tags.truncate(n);
                if let Some(last) = tags.last() {
                    let page = format!("n={n}&last={last}");
                    link = next_link(&format!("</?{page}>"), link_path, link_ns);
                }
            }
        }
        let mut headers = Headers::new();
        headers.set("content-type", "application/json");
        if let Some(link) = link {
            headers.set("link", link);
        }
        list.tags = Some(tags);
        if list.name.is_empty() {
            list.name = target.repository.to_string();
        }
        let body = serde_json::to_vec(&list).expect("a tag list serializes");
        Ok(reply(200, headers, Body::Bytes(body), head))
    }

    /// The referrers of `digest`: upstream's referrers API, or — when upstream answers 404, which
    /// the spec forbids a registry that has the API to do — the referrers tag schema
    /// (`<alg>-<hex>` tag holding an index), or an empty index when that tag does not exist either.
    async fn referrers(
        &self,
        target: &Target,
        digest: &Digest,
        artifact_type: Option<&str>,
        head: bool,
        outcome: &mut Outcome,
    ) -> Result<Reply<U::Body>, RegistryError> {
        let mut tail = format!("referrers/{digest}");
        if let Some(t) = artifact_type {
            let q: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("artifactType", t)
                .finish();
            tail = format!("{tail}?{q}");
        }
        let mut headers = Headers::new();
        headers.set("accept", OCI_INDEX);
        let fetched = self
            .fetch_upstream(target, HttpMethod::Get, &tail, headers, outcome)
            .await?;
        let (index, filtered_upstream) = match fetched.status {
            200 => {
                let filtered = fetched
                    .headers
                    .get("oci-filters-applied")
                    .is_some_and(|f| f.split(',').any(|x| x.trim() == "artifactType"));
                let bytes = self
                    .upstream
                    .read(fetched.body, MAX_MANIFEST_BYTES)
                    .await
                    .map_err(|e| net_error(&target.registry, e))?;
                (Some(bytes), filtered)
            }
            404 => {
                let tag =
                    Reference::Tag(format!("{}-{}", digest.algorithm().as_str(), digest.hex()));
                // Read here, not through an owner: the owner would answer the client's request
                // (this referrers call), not the tag's manifest.
                // (Its bytes are read here: no owner either, whose answer would be a stream.)
                let direct = Door {
                    coalesce: None,
                    digest_owner: None,
                    ..*self
                };
                match direct
                    .manifest(target, &tag, false, Some(OCI_INDEX), outcome)
                    .await
                {
                    Ok(r) => match r.body {
                        Body::Bytes(b) => (Some(b), false),
                        _ => (None, false),
                    },
                    Err(e) if e.code == ErrorCode::ManifestUnknown => (None, false),
                    Err(e) => return Err(e),
                }
            }
            s => {
                return Err(upstream_status(
                    s,
                    &fetched.headers,
                    ErrorCode::ManifestUnknown,
                    &target.registry,
                ))
            }
        };
        let mut index: serde_json::Value = match index {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                RegistryError::new(
                    ErrorCode::Unavailable,
                    format!("upstream referrers index is not JSON: {e}"),
                )
            })?,
            None => {
                serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})
            }
        };
        let mut headers = Headers::new();
        headers.set("content-type", OCI_INDEX);
        if let Some(wanted) = artifact_type {
            if !filtered_upstream {
                if let Some(list) = index
                    .get_mut("manifests")
                    .and_then(serde_json::Value::as_array_mut)
                {
                    list.retain(|m| m.get("artifactType").and_then(|t| t.as_str()) == Some(wanted));
                }
            }
            headers.set("oci-filters-applied", "artifactType");
        }
        let body = serde_json::to_vec(&index).expect("a JSON value serializes");
        Ok(reply(200, headers, Body::Bytes(body), head))
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

    /// Whether `digest` is linked to the target's repository. Reading the link marks it read; the
    /// day its mark moves, the blob's own mark moves too (see `crate::retention`).
    async fn read_link(&self, target: &Target, digest: &Digest, outcome: &mut Outcome) -> bool {
        let link = keys::link(&target.registry, &target.repository, digest);
        match self.kv_read(&link, outcome).await {
            Some((_, marked)) => {
                if marked {
                    self.kv_put(&keys::blob_read(digest), Vec::new(), outcome)
                        .await;
                }
                true
            }
            None => false,
        }
    }

    /// Records that `digest` belongs to the target's repository, and that the blob was read today.
    async fn link_blob(&self, target: &Target, digest: &Digest, outcome: &mut Outcome) {
        let link = keys::link(&target.registry, &target.repository, digest);
        self.kv_put(&link, b"1".to_vec(), outcome).await;
        self.kv_put(&keys::blob_read(digest), Vec::new(), outcome)
            .await;
    }

    /// Today in Unix days: the unit of "last read".
    fn today(&self) -> u64 {
        self.now / SECONDS_PER_DAY
    }
}

/// Upstream's `Link: <…/tags/list?n=…&last=…>; rel="next"`, pointed at the door's `link_path` (the
/// name as the client wrote it) with the same page query, plus `ns` if the client sent one.
fn next_link(link: &str, link_path: &str, link_ns: Option<&str>) -> Option<String> {
    let target = link.split('<').nth(1)?.split('>').next()?;
    let url = HttpUrl::parse("http://upstream.invalid/")
        .ok()?
        .join(target)
        .ok()?;
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in url.query_pairs() {
        if k == "n" || k == "last" {
            query.append_pair(&k, &v);
        }
    }
    if let Some(ns) = link_ns {
        query.append_pair("ns", ns);
    }
    Some(format!("<{link_path}?{}>; rel=\"next\"", query.finish()))
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

fn blob_headers(digest: &Digest, len: Option<u64>) -> Headers {
    let mut h = Headers::new();
    h.set("content-type", "application/octet-stream");
    if let Some(len) = len {
        h.set("content-length", len.to_string());
    }
    h.set("docker-content-digest", digest.to_string());
    h.set("accept-ranges", "bytes");
    h
}

/// The client's `Range`, if it sent one that applies (HEAD ignores it, as registries do).
/// Past [`range::MAX_PARTS`] ranges the header is ignored (`None`: the whole blob).
fn parse_range(header: Option<&str>, head: bool) -> Result<Option<Ranges>, RegistryError> {
    match header.filter(|_| !head) {
        None => Ok(None),
        Some(h) => range::parse(h).map_err(|e| RegistryError::new(ErrorCode::RangeInvalid, e)),
    }
}

/// What storage had for a blob read.
enum Served<S> {
    Reply(Reply<S>),
    Absent,
    /// Stored, but not vouched for by the registry asked through.
    NotVouched(Stored),
}

/// What pre-warming one image did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Prewarmed {
    pub image: String,
    pub manifests: u32,
    pub blobs_fetched: u32,
    pub blobs_cached: u32,
    pub error: Option<String>,
}

/// An image as people write it (`alpine:3.20`, `ghcr.io/acme/app@sha256:…`; no tag means
/// `latest`), as the door names it.
fn parse_image(
    config: &Config,
    image: &str,
    host: Option<&str>,
) -> Result<(Target, Reference), RegistryError> {
    let invalid =
        |why: &str| RegistryError::new(ErrorCode::NameInvalid, format!("{image:?}: {why}"));
    let (name, reference) = match image.split_once('@') {
        Some((name, digest)) => (
            name,
            Reference::Digest(Digest::parse(digest).map_err(|e| invalid(&e))?),
        ),
        None => match image.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
            Some((name, tag)) => (name, Reference::parse(tag).map_err(|e| invalid(&e))?),
            None => (image, Reference::Tag("latest".to_owned())),
        },
    };
    Ok((resolve_name(config, name, host)?, reference))
}

/// Whether an upstream answer is a failure worth serving stale content or trying a fallback for.
fn is_transient<B>(answer: &Result<Fetched<B>, RegistryError>) -> bool {
    match answer {
        Ok(f) => f.status == 429 || f.status >= 500,
        Err(e) => matches!(e.code, ErrorCode::Unavailable | ErrorCode::TooManyRequests),
    }
}

/// Whether an answer means the upstream is not serving at all (unreachable, timed out, rate
/// limiting, or a gateway saying so), as opposed to an answer about one resource.
fn is_outage<B>(answer: &Result<Fetched<B>, RegistryError>) -> bool {
    match answer {
        Ok(f) => matches!(f.status, 429 | 502 | 503 | 504),
        Err(e) => {
            e.code == ErrorCode::TooManyRequests
                || (e.code == ErrorCode::Unavailable && e.status >= 502)
        }
    }
}

/// The type a fetched manifest is served and stored with (see [`serving_type`]); a manifest upstream
/// gives no usable type for is refused, and nothing is stored.
fn media_type_of(
    registry: &str,
    content_type: Option<&str>,
    bytes: &[u8],
) -> Result<String, RegistryError> {
    serving_type(content_type, bytes).map_err(|_| unusable_media_type(registry))
}

fn unusable_media_type(registry: &str) -> RegistryError {
    RegistryError::new(
        ErrorCode::Unavailable,
        format!("upstream {registry} sent an unusable media type for the manifest (not an application/…+json manifest type)"),
    )
}

/// A HEAD answered from a tag pointer: what upstream's HEAD said, without the bytes.
fn pointer_reply<S>(pointer: &TagRecord, digest: &Digest) -> Reply<S> {
    let mut headers = Headers::new();
    if let Some(t) = &pointer.media_type {
        headers.set("content-type", t.clone());
    }
    if let Some(size) = pointer.size {
        headers.set("content-length", size.to_string());
    }
    headers.set("docker-content-digest", digest.to_string());
    headers.set("etag", format!("\"{digest}\""));
    reply(200, headers, Body::Empty, true)
}

/// The type of an upstream manifest HEAD answer. There is no body to fall back on: upstream's
/// type is served if valid, dropped if it says nothing, and refused (nothing recorded) otherwise.
fn head_media_type(
    registry: &str,
    headers: &Headers,
    outcome: &mut Outcome,
) -> Result<Option<String>, RegistryError> {
    match headers.get("content-type") {
        None => Ok(None),
        Some(t) if says_nothing(t) => Ok(None),
        Some(t) => manifest_media_type(t).map(Some).ok_or_else(|| {
            let e = unusable_media_type(registry);
            outcome.notes.push(e.message.clone());
            e
        }),
    }
}

/// Upstream's answer to a manifest HEAD, passed on with its checked type.
fn head_reply<S>(upstream: &Headers, media_type: Option<String>) -> Reply<S> {
    let mut headers = Headers::new();
    if let Some(t) = media_type {
        headers.set("content-type", t);
    }
    for name in ["content-length", "docker-content-digest"] {
        if let Some(v) = upstream.get(name) {
            headers.set(name, v);
        }
    }
    reply(200, headers, Body::Empty, true)
}

/// What a manifest HEAD tells about a tag: its digest (required), checked type and size.
fn pointer_from_head(headers: &Headers, media_type: Option<String>, now: u64) -> Option<TagRecord> {
    let digest = Digest::parse(headers.get("docker-content-digest")?.trim()).ok()?;
    let size = headers
        .get("content-length")
        .and_then(|l| l.trim().parse::<u64>().ok());
    Some(TagRecord {
        digest: digest.to_string(),
        fetched_at: now,
        media_type,
        size,
    })
}

fn manifest_reply<S>(record: ManifestRecord, digest: &Digest, head: bool) -> Reply<S> {
    let mut headers = Headers::new();
    headers.set("content-type", record.media_type);
    headers.set("docker-content-digest", digest.to_string());
    headers.set("etag", format!("\"{digest}\""));
    reply(200, headers, Body::Bytes(record.bytes), head)
}

/// What every answer says about how a browser may treat it: never sniff a type other than the one
/// sent, and — unless the answer sets its own policy (the status page) — run nothing, load
/// nothing, be framed nowhere. Registry clients ignore both; they only matter if someone opens a
/// door URL in a browser, which shares the origin of `/token` and the status page.
pub const NOSNIFF: (&str, &str) = ("x-content-type-options", "nosniff");
pub const DEFAULT_CSP: (&str, &str) = (
    "content-security-policy",
    "default-src 'none'; frame-ancestors 'none'; sandbox",
);

/// Every reply carries the API version header and [`NOSNIFF`] (and [`DEFAULT_CSP`] unless it set
/// a policy); a HEAD reply keeps its `Content-Length` but no body.
pub fn reply<S>(status: u16, mut headers: Headers, body: Body<S>, head: bool) -> Reply<S> {
    headers.set("docker-distribution-api-version", "registry/2.0");
    headers.set(NOSNIFF.0, NOSNIFF.1);
    if headers.get(DEFAULT_CSP.0).is_none() {
        headers.set(DEFAULT_CSP.0, DEFAULT_CSP.1);
    }
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
    pub fn with_type(mut self, content_type: &str) -> Self {
        self.headers.set("content-type", content_type);
        self
    }
}

pub fn error_reply<S>(e: &RegistryError, head: bool) -> Reply<S> {
    let mut headers = Headers::new();
    if let Some(ra) = &e.retry_after {
        headers.set("retry-after", ra.clone());
    }
    if let Some(cr) = &e.content_range {
        headers.set("content-range", cr.clone());
    }
    if let Some(challenge) = &e.www_authenticate {
        headers.set("www-authenticate", challenge.clone());
    }
    reply(e.status, headers, Body::Bytes(e.body()), head).with_type("application/json")
}
