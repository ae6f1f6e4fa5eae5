//! Pull-through behaviour on the host: the door's core driven through in-memory ports, counting
//! what reaches upstream and the cache (the way distribution's proxy tests count hits and misses).
//!
//! The upstream here is a scripted registry with Docker Hub's token flow: anonymous requests get
//! `401` with a bearer challenge, the realm issues a token only for the service account, and blob
//! reads can be redirected to a "CDN" host that refuses any request carrying `Authorization`.

use base64::Engine as _;
use frontdoor::config::Config;
use frontdoor::oci::{Algorithm, Digest};
use frontdoor::ports::*;
use frontdoor::proxy::{Body, CacheOutcome, ClientRequest, Door, Misses, Outcome, Reply};
use frontdoor::route::{Kind, RequestLine};
use frontdoor::upstream::health::Health;
use frontdoor::upstream::token::TokenCache;
use futures::executor::block_on;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
const UPSTREAM: &str = "http://reg.test";

/// KV in memory: each value with its last-read day (KV metadata), listed in key order.
#[derive(Default)]
struct MemKv {
    map: RefCell<std::collections::BTreeMap<String, Entry>>,
    fail_puts: Cell<bool>,
    puts: Cell<u32>,
    gets: Cell<u32>,
}

impl Kv for MemKv {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        self.gets.set(self.gets.get() + 1);
        Ok(self.map.borrow().get(key).cloned())
    }
    async fn put(&self, key: &str, value: Vec<u8>, read_day: u64) -> Result<(), StoreError> {
        if self.fail_puts.get() {
            return Err(StoreError("kv is down".into()));
        }
        self.puts.set(self.puts.get() + 1);
        let entry = Entry {
            value,
            read_day: Some(read_day),
        };
        self.map.borrow_mut().insert(key.into(), entry);
        Ok(())
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.map.borrow_mut().remove(key);
        Ok(())
    }
    /// The cursor is the last key of the page, as an opaque string.
    async fn list(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page, StoreError> {
        let map = self.map.borrow();
        let mut keys: Vec<(String, Option<u64>)> = map
            .iter()
            .filter(|(k, _)| k.starts_with(prefix) && cursor.is_none_or(|c| k.as_str() > c))
            .map(|(k, e)| (k.clone(), e.read_day))
            .take(limit as usize + 1)
            .collect();
        let more = keys.len() > limit as usize;
        keys.truncate(limit as usize);
        let cursor = more.then(|| keys.last().map(|(k, _)| k.clone())).flatten();
        Ok(Page { keys, cursor })
    }
}

type StoredBlob = (Vec<u8>, Vec<String>);

/// Stores a filled blob only when its length and digest match, as R2's checksum check does, with
/// the registries the fill names; a refused fill leaves what was stored.
#[derive(Default)]
struct MemBlobs {
    /// Key → (bytes, registries that vouched for them).
    map: RefCell<HashMap<String, StoredBlob>>,
    refused: Cell<u32>,
    /// Bodies handed to `verify`, and how many of them would have errored at their end.
    verified: Cell<u32>,
    broken: Cell<u32>,
    /// Bodies put together with `pieces` (multipart answers).
    pieced: Cell<u32>,
    /// Fills under way at this owner that a client may follow: key → (bytes, registries).
    filling: RefCell<HashMap<String, StoredBlob>>,
    /// Bodies handed out by `follow`.
    followed: Cell<u32>,
}

impl MemBlobs {
    fn bytes(&self, key: &str) -> Option<Vec<u8>> {
        self.map.borrow().get(key).map(|(b, _)| b.clone())
    }
}

impl Blobs for MemBlobs {
    type Body = Vec<u8>;
    async fn stat(&self, key: &str) -> Result<Option<Stored>, StoreError> {
        Ok(self.map.borrow().get(key).map(|(b, r)| Stored {
            size: b.len() as u64,
            registries: r.clone(),
        }))
    }
    async fn get(
        &self,
        key: &str,
        part: Option<(u64, u64)>,
    ) -> Result<Option<(Stored, Vec<u8>)>, StoreError> {
        Ok(self.map.borrow().get(key).map(|(b, r)| {
            let bytes = match part {
                Some((offset, len)) => b[offset as usize..(offset + len) as usize].to_vec(),
                None => b.clone(),
            };
            let stored = Stored {
                size: b.len() as u64,
                registries: r.clone(),
            };
            (stored, bytes)
        }))
    }
    fn discard(&self, _body: Vec<u8>) {}

    fn filling(&self, key: &str) -> Option<Stored> {
        self.filling.borrow().get(key).map(|(b, r)| Stored {
            size: b.len() as u64,
            registries: r.clone(),
        })
    }

    fn follow(&self, key: &str) -> Option<Vec<u8>> {
        let bytes = self.filling.borrow().get(key).map(|(b, _)| b.clone())?;
        self.followed.set(self.followed.get() + 1);
        Some(bytes)
    }

    /// The pieces in order; a stretch of a blob that is gone or too short ends the body early
    /// (the worker's body errors instead).
    fn pieces(&self, key: &str, pieces: Vec<Piece>, len: u64) -> Vec<u8> {
        self.pieced.set(self.pieced.get() + 1);
        let mut out = Vec::new();
        for piece in pieces {
            match piece {
                Piece::Bytes(b) => out.extend(b),
                Piece::Blob { offset, len } => {
                    let map = self.map.borrow();
                    let Some(stretch) = map
                        .get(key)
                        .and_then(|(b, _)| b.get(offset as usize..(offset + len) as usize))
                    else {
                        return out;
                    };
                    out.extend_from_slice(stretch);
                }
            }
        }
        assert_eq!(out.len() as u64, len, "the length the door announced");
        out
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.map.borrow_mut().remove(key);
        Ok(())
    }

    fn fill(
        &self,
        key: &str,
        body: Vec<u8>,
        len: u64,
        digest: &Digest,
        registries: &[String],
    ) -> Vec<u8> {
        if body.len() as u64 == len && digest.verifies(&body) {
            self.map
                .borrow_mut()
                .insert(key.into(), (body.clone(), registries.to_vec()));
        } else {
            self.refused.set(self.refused.get() + 1);
        }
        body
    }

    fn verify(&self, body: Vec<u8>, len: Option<u64>, digest: &Digest) -> Vec<u8> {
        self.verified.set(self.verified.get() + 1);
        if len.is_some_and(|l| l != body.len() as u64) || !digest.verifies(&body) {
            self.broken.set(self.broken.get() + 1);
        }
        body
    }
}

/// The body of an answer that never completes (`read` times out on it).
const STALLED: &[u8] = b"\0stalled";

/// A registry behind bearer-token auth, with a log of every request it saw.
struct FakeRegistry {
    /// (repository, reference) → (content type, bytes)
    manifests: HashMap<(String, String), (String, Vec<u8>)>,
    blobs: HashMap<String, Vec<u8>>,
    log: RefCell<Vec<(HttpMethod, String, Option<String>)>>,
    tokens_issued: Cell<u32>,
    /// Blob GETs answer 307 to a CDN origin that rejects `Authorization`.
    redirect_blobs: bool,
    /// Bytes served differ from what the digest header claims.
    corrupt: Cell<bool>,
    /// Every registry request answers this status.
    status: Cell<Option<u16>>,
    password: String,
    /// Subject digest → referrers index, when the registry has the referrers API.
    referrers_api: Option<HashMap<String, String>>,
    /// Where this registry lives (the primary, or a fallback mirror).
    base: &'static str,
    /// Connections fail (the host is unreachable).
    down: Cell<bool>,
    /// The Docker Hub-style fallback mirror, when configured.
    fallback: Option<Box<FakeRegistry>>,
    /// A second configured registry, `other.test`, when there is one.
    other: Option<Box<FakeRegistry>>,
    /// Says yes to every blob: HEAD 200 for any digest, and GET 200 with bytes of its own.
    permissive: Cell<bool>,
    /// The token realm its challenges name.
    realm: &'static str,
    /// Blob digest → the only repository it exists in (others answer 404).
    only_in: HashMap<String, String>,
    /// Honour `Accept` as distribution does: a manifest whose type the client does not take is
    /// answered with the (repository, tag)'s entry here (the default platform of an index), else 404.
    platform_fallback: Option<HashMap<(String, String), String>>,
    /// Manifest GETs send their headers, then a body that never completes.
    stall_manifests: Cell<bool>,
    /// Blob GETs answer without `Content-Length` (chunked).
    chunked_blobs: Cell<bool>,
    /// The CDN answers `401` with a bearer challenge naming this realm.
    cdn_realm: Option<&'static str>,
    /// More fields for this registry's `UPSTREAMS` entry (`, "serve_stale_on": [404]`).
    config_extra: &'static str,
}

impl FakeRegistry {
    fn new() -> Self {
        FakeRegistry {
            manifests: HashMap::new(),
            blobs: HashMap::new(),
            log: RefCell::new(Vec::new()),
            tokens_issued: Cell::new(0),
            redirect_blobs: false,
            corrupt: Cell::new(false),
            status: Cell::new(None),
            password: "pw".into(),
            referrers_api: None,
            base: UPSTREAM,
            down: Cell::new(false),
            fallback: None,
            other: None,
            permissive: Cell::new(false),
            realm: "http://auth.reg.test/token",
            only_in: HashMap::new(),
            platform_fallback: None,
            stall_manifests: Cell::new(false),
            chunked_blobs: Cell::new(false),
            cdn_realm: None,
            config_extra: "",
        }
    }

    fn add_manifest(&mut self, repo: &str, tag: &str, ct: &str, bytes: &[u8]) -> Digest {
        let d = Digest::of(Algorithm::Sha256, bytes);
        for r in [tag.to_owned(), d.to_string()] {
            self.manifests
                .insert((repo.into(), r), (ct.into(), bytes.to_vec()));
        }
        d
    }

    fn add_blob(&mut self, bytes: &[u8]) -> Digest {
        let d = Digest::of(Algorithm::Sha256, bytes);
        self.blobs.insert(d.to_string(), bytes.to_vec());
        d
    }

    /// Requests to the registry itself (not the token realm, not the CDN) matching `what`.
    fn count(&self, method: HttpMethod, what: &str) -> usize {
        self.log
            .borrow()
            .iter()
            .filter(|(m, url, _)| *m == method && url.starts_with(self.base) && url.contains(what))
            .count()
    }

    fn total(&self) -> usize {
        self.log.borrow().len()
    }
}

fn answer(status: u16, headers: &[(&str, &str)], body: Vec<u8>) -> Fetched<Vec<u8>> {
    let mut h = Headers::new();
    for (n, v) in headers {
        h.append(n, *v);
    }
    Fetched {
        status,
        headers: h,
        body,
    }
}

impl Upstream for FakeRegistry {
    type Body = Vec<u8>;

    async fn send(&self, req: OutboundRequest) -> Result<Fetched<Vec<u8>>, NetError> {
        for f in [&self.fallback, &self.other].into_iter().flatten() {
            if req.url.as_str().starts_with(f.base) {
                return Box::pin(f.send(req)).await;
            }
        }
        let auth = req.headers.get("authorization").map(str::to_owned);
        let url = req.url.to_string();
        if url.starts_with(self.base) && self.down.get() {
            self.log.borrow_mut().push((req.method, url, auth));
            return Err(NetError::Failed("connection refused".into()));
        }
        self.log
            .borrow_mut()
            .push((req.method, url.clone(), auth.clone()));

        if let Some(rest) = url.strip_prefix(&format!("{}?", self.realm)) {
            let expected = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("svc:{}", self.password))
            );
            if auth.as_deref() != Some(expected.as_str()) {
                return Ok(answer(401, &[], b"{}".to_vec()));
            }
            assert!(rest.contains("service=reg.test"), "{rest}");
            let scope = rest
                .split("scope=")
                .nth(1)
                .unwrap()
                .replace("%3A", ":")
                .replace("%2F", "/");
            self.tokens_issued.set(self.tokens_issued.get() + 1);
            let body = format!(r#"{{"token":"T-{scope}","expires_in":300}}"#);
            return Ok(answer(200, &[], body.into_bytes()));
        }
        if let Some(path) = url.strip_prefix("http://cdn.test/") {
            if let Some(realm) = self.cdn_realm {
                let challenge = format!(r#"Bearer realm="{realm}",service="cdn""#);
                return Ok(answer(401, &[("www-authenticate", &challenge)], vec![]));
            }
            if auth.is_some() {
                return Ok(answer(400, &[], b"Authorization not allowed".to_vec()));
            }
            return Ok(match self.blobs.get(path) {
                Some(b) => answer(200, &[("content-length", &b.len().to_string())], b.clone()),
                None => answer(404, &[], vec![]),
            });
        }

        let path = url
            .strip_prefix(self.base)
            .expect("only configured hosts are contacted");
        let path = path.strip_prefix("/v2/").expect("registry API");
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let (repo, kind, reference) = {
            let mut parts: Vec<&str> = path.split('/').collect();
            let reference = parts.pop().unwrap().to_owned();
            let kind = parts.pop().unwrap().to_owned();
            (parts.join("/"), kind, reference)
        };
        let scope = format!("repository:{repo}:pull");
        if auth.as_deref() != Some(format!("Bearer T-{scope}").as_str()) {
            let challenge = format!(
                r#"Bearer realm="{}",service="reg.test",scope="{scope}""#,
                self.realm
            );
            return Ok(answer(401, &[("www-authenticate", &challenge)], vec![]));
        }
        if let Some(s) = self.status.get() {
            return Ok(answer(s, &[("retry-after", "60")], b"{}".to_vec()));
        }
        let head = req.method == HttpMethod::Head;
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .map(str::to_owned)
        };
        match kind.as_str() {
            "tags" => {
                let mut tags: Vec<&str> = self
                    .manifests
                    .keys()
                    .filter(|(r, t)| *r == repo && !t.contains(':'))
                    .map(|(_, t)| t.as_str())
                    .collect();
                tags.sort();
                if let Some(last) = param("last") {
                    tags.retain(|t| *t > last.as_str());
                }
                let mut headers = vec![];
                let link;
                if let Some(n) = param("n").and_then(|n| n.parse::<usize>().ok()) {
                    if tags.len() > n {
                        tags.truncate(n);
                        link = format!(
                            "</v2/{repo}/tags/list?last={}&n={n}>; rel=\"next\"",
                            tags[n - 1]
                        );
                        headers.push(("link", link.as_str()));
                    }
                }
                let body = serde_json::json!({"name": repo, "tags": tags}).to_string();
                Ok(answer(200, &headers, body.into_bytes()))
            }
            "referrers" => match &self.referrers_api {
                Some(map) => {
                    let body = map
                        .get(&reference)
                        .cloned()
                        .unwrap_or_else(|| r#"{"schemaVersion":2,"manifests":[]}"#.to_owned());
                    Ok(answer(200, &[("content-type", INDEX)], body.into_bytes()))
                }
                None => Ok(answer(404, &[], b"404 page not found".to_vec())),
            },
            "manifests" => match self
                .manifests
                .get(&(repo.clone(), reference.clone()))
                .and_then(|found| {
                    let Some(fallback) = &self.platform_fallback else {
                        return Some(found);
                    };
                    // An independent reading of Accept: exact type names, parameters dropped.
                    let takes = |ct: &str| {
                        req.headers.get("accept").is_none_or(|a| {
                            a.split(',')
                                .any(|t| t.split(';').next().unwrap_or("").trim() == ct)
                        })
                    };
                    if takes(&found.0) {
                        return Some(found);
                    }
                    fallback
                        .get(&(repo.clone(), reference.clone()))
                        .and_then(|d| self.manifests.get(&(repo.clone(), d.clone())))
                        .filter(|m| takes(&m.0))
                }) {
                Some((ct, bytes)) => {
                    let d = Digest::of(Algorithm::Sha256, bytes).to_string();
                    let mut body = bytes.clone();
                    if self.corrupt.get() {
                        body.push(b' ');
                    }
                    if self.stall_manifests.get() && !head {
                        body = STALLED.to_vec();
                    }
                    let len = body.len().to_string();
                    let headers = [
                        ("content-type", ct.as_str()),
                        ("docker-content-digest", d.as_str()),
                        ("content-length", len.as_str()),
                    ];
                    Ok(answer(200, &headers, if head { vec![] } else { body }))
                }
                None => Ok(answer(404, &[], b"{}".to_vec())),
            },
            "blobs" if self.permissive.get() => {
                let junk = b"says yes to everything".to_vec();
                let len = junk.len().to_string();
                let headers = [
                    ("content-length", len.as_str()),
                    ("docker-content-digest", &reference),
                ];
                Ok(answer(200, &headers, if head { vec![] } else { junk }))
            }
            "blobs" => match self
                .blobs
                .get(&reference)
                .filter(|_| self.only_in.get(&reference).is_none_or(|r| *r == repo))
            {
                Some(_) if self.redirect_blobs && !head => Ok(answer(
                    307,
                    &[("location", &format!("http://cdn.test/{reference}"))],
                    vec![],
                )),
                Some(b) if req.headers.get("range").is_some() => {
                    let r = req.headers.get("range").unwrap();
                    let (from, to) = r.strip_prefix("bytes=").unwrap().split_once('-').unwrap();
                    let from: usize = from.parse().unwrap();
                    let to: usize = to.parse().unwrap_or(b.len() - 1);
                    let range = format!("bytes {from}-{to}/{}", b.len());
                    let len = (to - from + 1).to_string();
                    let headers = [("content-range", range.as_str()), ("content-length", &len)];
                    Ok(answer(206, &headers, b[from..=to].to_vec()))
                }
                Some(b) => {
                    let mut body = b.clone();
                    if self.corrupt.get() {
                        body[0] ^= 1;
                    }
                    let len = body.len().to_string();
                    let headers: &[(&str, &str)] = if self.chunked_blobs.get() {
                        &[]
                    } else {
                        &[("content-length", &len)]
                    };
                    Ok(answer(200, headers, if head { vec![] } else { body }))
                }
                None => Ok(answer(404, &[], vec![])),
            },
            _ => Ok(answer(404, &[], vec![])),
        }
    }

    async fn read(&self, body: Vec<u8>, limit: usize) -> Result<Vec<u8>, NetError> {
        if body == STALLED {
            return Err(NetError::Timeout);
        }
        if body.len() > limit {
            return Err(NetError::TooLarge);
        }
        Ok(body)
    }
}

struct World {
    config: Config,
    kv: MemKv,
    blobs: MemBlobs,
    reg: FakeRegistry,
    tokens: RefCell<TokenCache>,
    health: RefCell<Health>,
    now: Cell<u64>,
    /// `Range` header for the next requests.
    range: RefCell<Option<String>>,
    /// `Authorization` header for the next requests.
    authorization: RefCell<Option<String>>,
    /// Body for the next requests (`POST /token`).
    body: RefCell<Option<Vec<u8>>>,
}

impl World {
    fn new(reg: FakeRegistry) -> World {
        World::with(reg, &[])
    }

    /// A world whose door also has the settings `extra`.
    fn with(reg: FakeRegistry, extra: &[(&str, &str)]) -> World {
        let fallback = match &reg.fallback {
            Some(f) => format!(
                r#", "fallback": [{{"url": "{}", "username": "svc", "password_secret": "PW"}}]"#,
                f.base
            ),
            None => String::new(),
        };
        let other = match &reg.other {
            Some(o) => format!(
                r#", "other.test": {{"url": "{}", "username": "svc", "password_secret": "PW"}}"#,
                o.base
            ),
            None => String::new(),
        };
        let config = Config::load(|k| match k {
            "UPSTREAMS" => Some(format!(
                r#"{{"reg.test": {{"url": "{UPSTREAM}", "username": "svc", "password_secret": "PW"{fallback}{}}}{other}}}"#,
                reg.config_extra
            )),
            "PW" => Some("pw".into()),
            "DEFAULT_REGISTRY" => Some("reg.test".into()),
            "TAG_TTL_SECONDS" => Some("300".into()),
            k => extra.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()),
        })
        .unwrap();
        World {
            config,
            kv: MemKv::default(),
            blobs: MemBlobs::default(),
            reg,
            tokens: RefCell::new(TokenCache::default()),
            health: RefCell::new(Health::default()),
            now: Cell::new(1_000_000),
            range: RefCell::new(None),
            authorization: RefCell::new(None),
            body: RefCell::new(None),
        }
    }

    fn request(&self, method: &str, path: &str, accept: Option<&str>) -> (Reply<Vec<u8>>, Outcome) {
        self.request_via(None::<&NoCoalescing<Vec<u8>>>, method, path, accept)
    }

    fn request_via<C: Coalesce<Body = Vec<u8>>>(
        &self,
        coalesce: Option<&C>,
        method: &str,
        path: &str,
        accept: Option<&str>,
    ) -> (Reply<Vec<u8>>, Outcome) {
        block_on(self.run(coalesce, method, path, accept))
    }

    async fn run<C: Coalesce<Body = Vec<u8>>>(
        &self,
        coalesce: Option<&C>,
        method: &str,
        path: &str,
        accept: Option<&str>,
    ) -> (Reply<Vec<u8>>, Outcome) {
        let door = Door {
            config: &self.config,
            kv: &self.kv,
            blobs: &self.blobs,
            upstream: &self.reg,
            tokens: &self.tokens,
            health: &self.health,
            misses: coalesce.map_or(Misses::Here, Misses::ToOwners),
            now: self.now.get(),
        };
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        let range = self.range.borrow().clone();
        let authorization = self.authorization.borrow().clone();
        let request_body = self.body.borrow().clone();
        door.handle(ClientRequest {
            line: RequestLine {
                method,
                host: Some("door.test"),
                path,
                query,
            },
            accept,
            range: range.as_deref(),
            authorization: authorization.as_deref(),
            origin: Some("https://door.test"),
            body: request_body.as_deref(),
            client_ip: Some("203.0.113.7"),
        })
        .await
    }

    fn get(&self, path: &str) -> (Reply<Vec<u8>>, Outcome) {
        self.request("GET", path, None)
    }
}

fn body(r: &Reply<Vec<u8>>) -> Vec<u8> {
    match &r.body {
        Body::Empty => vec![],
        Body::Bytes(b) | Body::Stream(b) => b.clone(),
    }
}

fn error_code(r: &Reply<Vec<u8>>) -> String {
    let v: serde_json::Value = serde_json::from_slice(&body(r)).expect("OCI error body");
    v["errors"][0]["code"].as_str().unwrap().to_owned()
}

fn image() -> (FakeRegistry, Digest, Digest) {
    let mut reg = FakeRegistry::new();
    let layer = reg.add_blob(b"layer bytes");
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","layers":[{{"digest":"{layer}"}}]}}"#
    );
    let m = reg.add_manifest("team/app", "v1", MANIFEST, manifest.as_bytes());
    (reg, m, layer)
}

#[test]
fn base_endpoint() {
    let w = World::new(FakeRegistry::new());
    let (r, _) = w.get("/v2/");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers.get("docker-distribution-api-version"),
        Some("registry/2.0")
    );
    assert_eq!(w.reg.total(), 0);
}

/// Every answer's outcome says what was asked for, from the route (the request log, the
/// counters and Analytics Engine read it).
#[test]
fn outcomes_name_what_was_asked_for() {
    let (reg, digest, layer) = image();
    let w = World::new(reg);
    let cases: &[(&str, &str, Kind)] = &[
        ("GET", "/v2/", Kind::Base),
        ("GET", "/v2/team/app/manifests/v1", Kind::Manifest),
        (
            "HEAD",
            &format!("/v2/team/app/manifests/{digest}"),
            Kind::Manifest,
        ),
        ("GET", &format!("/v2/team/app/blobs/{layer}"), Kind::Blob),
        ("GET", "/v2/team/app/tags/list", Kind::Tags),
        (
            "GET",
            &format!("/v2/team/app/referrers/{digest}"),
            Kind::Referrers,
        ),
        ("GET", "/token?scope=repository:team/app:pull", Kind::Token),
        (
            "GET",
            "/_frontdoor/resolve?image=team/app:v1",
            Kind::Resolve,
        ),
        ("POST", "/_frontdoor/prewarm", Kind::Prewarm),
        ("GET", "/nowhere", Kind::Other),
        ("DELETE", "/v2/team/app/manifests/v1", Kind::Other),
    ];
    for (method, path, kind) in cases {
        let (_, outcome) = w.request(method, path, None);
        assert_eq!(outcome.kind, *kind, "{method} {path}");
    }
}

#[test]
fn manifest_by_tag_is_fetched_once_within_the_ttl() {
    let (reg, digest, _) = image();
    let w = World::new(reg);

    let (r, o) = w.get("/v2/team/app/manifests/v1");
    assert_eq!(r.status, 200);
    assert_eq!(o.cache, Some(CacheOutcome::Miss));
    // 401 → token → retry.
    assert_eq!(w.reg.total(), 3);
    assert_eq!(o.upstream_calls, 3);
    assert_eq!(w.reg.tokens_issued.get(), 1);
    assert_eq!(r.headers.get("content-type"), Some(MANIFEST));
    let digest_s = digest.to_string();
    assert_eq!(
        r.headers.get("docker-content-digest"),
        Some(digest_s.as_str())
    );
    let first = body(&r);
    assert!(digest.verifies(&first));
    assert_eq!(
        r.headers.get("content-length"),
        Some(first.len().to_string().as_str())
    );

    // Within the TTL: no upstream request at all, same bytes.
    w.now.set(w.now.get() + 299);
    let (r, o) = w.get("/v2/team/app/manifests/v1");
    assert_eq!((r.status, o.cache), (200, Some(CacheOutcome::Hit)));
    assert_eq!(body(&r), first);
    assert_eq!(w.reg.total(), 3);

    // By digest: immutable, served from the cache forever.
    w.now.set(w.now.get() + 1_000_000);
    let (r, o) = w.get(&format!("/v2/team/app/manifests/{digest}"));
    assert_eq!((r.status, o.cache), (200, Some(CacheOutcome::Hit)));
    assert_eq!(w.reg.total(), 3);

    // After the TTL the tag is revalidated with one HEAD (the 300 s token expired too, and a new
    // one is fetched from the remembered realm first, so no 401).
    let (r, o) = w.get("/v2/team/app/manifests/v1");
    assert_eq!((r.status, o.cache), (200, Some(CacheOutcome::Revalidated)));
    assert_eq!(w.reg.count(HttpMethod::Get, "/manifests/v1"), 2);
    assert_eq!(w.reg.count(HttpMethod::Head, "/manifests/v1"), 1);
    assert_eq!(w.reg.tokens_issued.get(), 2);
}

#[test]
fn tokens_are_cached_per_scope() {
    let (mut reg, _, _) = image();
    reg.add_manifest("team/app", "v2", MANIFEST, b"{\"schemaVersion\":2}");
    reg.add_manifest(
        "team/other",
        "v1",
        MANIFEST,
        b"{\"schemaVersion\":2,\"x\":1}",
    );
    let w = World::new(reg);
    w.get("/v2/team/app/manifests/v1");
    assert_eq!(w.reg.tokens_issued.get(), 1);
    // Same repository: the cached token is sent straight away, one upstream request.
    let before = w.reg.total();
    let (r, o) = w.get("/v2/team/app/manifests/v2");
    assert_eq!(r.status, 200);
    assert_eq!(w.reg.total() - before, 1);
    assert_eq!(o.upstream_calls, 1);
    // Another repository needs its own scope; the realm is known, so the token comes first and
    // upstream sees no unauthorized request.
    let before = w.reg.total();
    let (r, _) = w.get("/v2/team/other/manifests/v1");
    assert_eq!(r.status, 200);
    assert_eq!(w.reg.tokens_issued.get(), 2);
    assert_eq!(w.reg.total() - before, 2, "token + GET, no 401");
}

#[test]
fn blob_miss_streams_and_fills_then_hits() {
    let (reg, _, layer) = image();
    let w = World::new(reg);
    let path = format!("/v2/team/app/blobs/{layer}");
    let (r, o) = w.get(&path);
    assert_eq!((r.status, o.cache), (200, Some(CacheOutcome::Miss)));
    assert_eq!(body(&r), b"layer bytes");
    assert_eq!(r.headers.get("content-length"), Some("11"));
    let layer_s = layer.to_string();
    assert_eq!(
        r.headers.get("docker-content-digest"),
        Some(layer_s.as_str())
    );
    assert_eq!(w.reg.count(HttpMethod::Get, "/blobs/"), 2);

    let before = w.reg.total();
    let (r, o) = w.get(&path);
    assert_eq!((r.status, o.cache), (200, Some(CacheOutcome::Hit)));
    assert_eq!(body(&r), b"layer bytes");
    let (r, _) = w.request("HEAD", &path, None);
    assert_eq!(
        (r.status, r.headers.get("content-length")),
        (200, Some("11"))
    );
    assert!(matches!(r.body, Body::Empty));
    assert_eq!(w.reg.total(), before, "hits never reach upstream");

    // The same blob through another repository of the registry is the same stored object: served
    // from storage once upstream confirms (a HEAD) that repository has it too; never fetched again.
    let before_get = w.reg.count(HttpMethod::Get, "/blobs/");
    let (r, o) = w.get(&format!("/v2/team/other/blobs/{layer}"));
    assert_eq!((r.status, o.cache), (200, Some(CacheOutcome::Hit)));
    assert_eq!(body(&r), b"layer bytes");
    assert_eq!(w.reg.count(HttpMethod::Get, "/blobs/"), before_get);
    assert_eq!(w.reg.count(HttpMethod::Head, "/v2/team/other/blobs/"), 1);
    assert_eq!(w.blobs.map.borrow().len(), 1);
}

#[test]
fn corrupt_blob_is_never_stored() {
    let (reg, _, layer) = image();
    let w = World::new(reg);
    w.reg.corrupt.set(true);
    let path = format!("/v2/team/app/blobs/{layer}");
    let (r, _) = w.get(&path);
    assert_eq!(r.status, 200, "bytes stream before they can be checked");
    assert_eq!(w.blobs.refused.get(), 1);
    assert!(w.blobs.map.borrow().is_empty());
    w.reg.corrupt.set(false);
    let (_, o) = w.get(&path);
    assert_eq!(o.cache, Some(CacheOutcome::Miss));
    assert_eq!(w.blobs.map.borrow().len(), 1);
}

#[test]
fn a_blob_without_a_length_is_passed_through_verified() {
    let (reg, _, layer) = image();
    let w = World::new(reg);
    w.reg.chunked_blobs.set(true);
    let path = format!("/v2/team/app/blobs/{layer}");
    let (r, o) = w.get(&path);
    assert_eq!((r.status, o.cache), (200, Some(CacheOutcome::Miss)));
    assert_eq!(body(&r), b"layer bytes");
    assert_eq!((w.blobs.verified.get(), w.blobs.broken.get()), (1, 0));
    assert!(
        w.blobs.map.borrow().is_empty(),
        "not cached without a length"
    );

    // Wrong bytes without a length: the body handed to the client errors at its end.
    w.reg.corrupt.set(true);
    let (r, _) = w.get(&path);
    assert_eq!(r.status, 200, "bytes stream before they can be checked");
    assert_eq!((w.blobs.verified.get(), w.blobs.broken.get()), (2, 1));
    assert!(w.blobs.map.borrow().is_empty());
}

#[test]
fn a_manifest_body_that_stalls_serves_the_stale_copy_or_504() {
    let (reg, digest, _) = image();
    let mut w = World::new(reg);
    let (fresh, _) = w.get("/v2/team/app/manifests/v1");
    // The tag moves upstream, then its new manifest's body stalls past the deadline.
    let moved = format!(r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","layers":[]}}"#);
    w.reg
        .add_manifest("team/app", "v1", MANIFEST, moved.as_bytes());
    w.reg.stall_manifests.set(true);
    w.now.set(w.now.get() + TTL + 1);
    let (r, o) = w.get("/v2/team/app/manifests/v1");
    assert_eq!(
        (r.status, o.cache),
        (200, Some(CacheOutcome::Stale)),
        "{:?}",
        o.notes
    );
    assert_eq!(body(&r), body(&fresh));
    let digest_s = digest.to_string();
    assert_eq!(
        r.headers.get("docker-content-digest"),
        Some(digest_s.as_str())
    );
    assert!(
        o.notes
            .iter()
            .any(|n| n.contains("served stale") && n.contains("timed out")),
        "{:?}",
        o.notes
    );
    // Nothing cached: the timeout is a 504.
    w.reg
        .add_manifest("team/other", "v1", MANIFEST, moved.as_bytes());
    let (r, _) = w.get("/v2/team/other/manifests/v1");
    assert_eq!((r.status, error_code(&r)), (504, "UNAVAILABLE".into()));
}

#[test]
fn corrupt_manifest_is_refused_and_not_cached() {
    let (reg, digest, _) = image();
    let w = World::new(reg);
    w.reg.corrupt.set(true);
    for path in [
        "/v2/team/app/manifests/v1".to_owned(),
        format!("/v2/team/app/manifests/{digest}"),
    ] {
        let (r, o) = w.get(&path);
        assert_eq!(r.status, 502, "{path}");
        assert_eq!(error_code(&r), "UNAVAILABLE");
        assert!(
            o.notes.iter().any(|n| n.contains("does not match")),
            "{:?}",
            o.notes
        );
    }
    assert!(w.kv.map.borrow().is_empty(), "nothing cached");
}

#[test]
fn redirects_do_not_carry_authorization_to_another_host() {
    let (mut reg, _, layer) = image();
    reg.redirect_blobs = true;
    let w = World::new(reg);
    let (r, _) = w.get(&format!("/v2/team/app/blobs/{layer}"));
    assert_eq!(r.status, 200);
    assert_eq!(body(&r), b"layer bytes");
    let log = w.reg.log.borrow();
    let cdn: Vec<_> = log
        .iter()
        .filter(|(_, u, _)| u.starts_with("http://cdn.test/"))
        .collect();
    assert_eq!(cdn.len(), 1);
    assert_eq!(cdn[0].2, None);
}

#[test]
fn client_head_never_becomes_an_upstream_get() {
    let (reg, digest, layer) = image();
    let w = World::new(reg);
    let (r, o) = w.request("HEAD", "/v2/team/app/manifests/v1", None);
    assert_eq!((r.status, o.cache), (200, Some(CacheOutcome::Miss)));
    let digest_s = digest.to_string();
    assert_eq!(
        r.headers.get("docker-content-digest"),
        Some(digest_s.as_str())
    );
    assert!(matches!(r.body, Body::Empty));
    let (r, _) = w.request("HEAD", &format!("/v2/team/app/blobs/{layer}"), None);
    assert_eq!(
        (r.status, r.headers.get("content-length")),
        (200, Some("11"))
    );
    assert_eq!(w.reg.count(HttpMethod::Get, "/v2/"), 0);
    // The manifest HEAD twice (the first collects the 401 challenge), the blob HEAD once (the
    // token is cached by then), and nothing else.
    assert_eq!(w.reg.count(HttpMethod::Head, "/manifests/v1"), 2);
    assert_eq!(w.reg.count(HttpMethod::Head, "/blobs/"), 1);
    assert_eq!(w.reg.count(HttpMethod::Head, "/v2/"), 3);
}

#[test]
fn upstream_errors_become_oci_errors() {
    let (reg, _, _) = image();
    let w = World::new(reg);
    let (r, _) = w.get("/v2/team/app/manifests/nope");
    assert_eq!((r.status, error_code(&r)), (404, "MANIFEST_UNKNOWN".into()));
    let missing = Digest::of(Algorithm::Sha256, b"missing");
    let (r, _) = w.get(&format!("/v2/team/app/blobs/{missing}"));
    assert_eq!((r.status, error_code(&r)), (404, "BLOB_UNKNOWN".into()));

    w.reg.status.set(Some(429));
    let (r, _) = w.get("/v2/team/app/manifests/v1");
    assert_eq!((r.status, error_code(&r)), (429, "TOOMANYREQUESTS".into()));
    assert_eq!(r.headers.get("retry-after"), Some("60"));
    // (Past the back-off the 429 started: the next request is the probe.)
    w.now.set(w.now.get() + 10);
    w.reg.status.set(Some(503));
    let (r, _) = w.get("/v2/team/app/manifests/v1");
    assert_eq!((r.status, error_code(&r)), (502, "UNAVAILABLE".into()));
    let kv = w.kv.map.borrow();
    assert!(
        kv.keys().all(|k| k.starts_with("v1/absent/")),
        "only the 404s are remembered: {:?}",
        kv.keys()
    );
}

#[test]
fn wrong_service_account_is_denied() {
    let (mut reg, _, _) = image();
    reg.password = "other".into();
    let w = World::new(reg);
    let (r, _) = w.get("/v2/team/app/manifests/v1");
    assert_eq!((r.status, error_code(&r)), (403, "DENIED".into()));
    let text = String::from_utf8(body(&r)).unwrap();
    assert!(!text.contains("pw"), "no secret in the body: {text}");
}

#[test]
fn accept_is_honoured_and_a_narrow_client_does_not_repoint_the_tag() {
    let mut reg = FakeRegistry::new();
    let index = reg.add_manifest(
        "team/app",
        "multi",
        INDEX,
        b"{\"schemaVersion\":2,\"manifests\":[]}",
    );
    let w = World::new(reg);
    let (r, _) = w.get("/v2/team/app/manifests/multi");
    assert_eq!(r.headers.get("content-type"), Some(INDEX));
    // A client that takes only Docker v2 must not be handed the cached index.
    let (_, o) = w.request("GET", "/v2/team/app/manifests/multi", Some(DOCKER_V2));
    assert_eq!(o.cache, Some(CacheOutcome::Miss));
    // The tag still points at the index for everyone else.
    let (r, o) = w.get("/v2/team/app/manifests/multi");
    assert_eq!(o.cache, Some(CacheOutcome::Hit));
    let index_s = index.to_string();
    assert_eq!(
        r.headers.get("docker-content-digest"),
        Some(index_s.as_str())
    );
}

#[test]
fn a_failing_cache_still_answers() {
    let (reg, _, _) = image();
    let w = World::new(reg);
    w.kv.fail_puts.set(true);
    let (r, o) = w.get("/v2/team/app/manifests/v1");
    assert_eq!(r.status, 200);
    assert!(o.notes.iter().any(|n| n.contains("kv put")));
}

#[test]
fn bad_requests_never_reach_upstream() {
    let w = World::new(FakeRegistry::new());
    for (method, path, status, code) in [
        ("GET", "/v2/UPPER/manifests/v1", 400, "NAME_INVALID"),
        ("GET", "/v2/a/blobs/sha256:xyz", 400, "DIGEST_INVALID"),
        ("PUT", "/v2/a/manifests/v1", 405, "UNSUPPORTED"),
        ("GET", "/v2/quay.io/a/manifests/v1", 404, "NAME_UNKNOWN"),
        ("GET", "/favicon.ico", 404, "UNSUPPORTED"),
    ] {
        let (r, _) = w.request(method, path, None);
        assert_eq!(
            (r.status, error_code(&r).as_str()),
            (status, code),
            "{method} {path}"
        );
    }
    assert_eq!(w.reg.total(), 0);
}

#[test]
fn ranges_from_the_cache_and_on_a_miss() {
    let (reg, _, layer) = image();
    let w = World::new(reg);
    let path = format!("/v2/team/app/blobs/{layer}");

    // A miss with a range from the middle is passed through, not cached.
    *w.range.borrow_mut() = Some("bytes=6-".into());
    let (r, o) = w.get(&path);
    assert_eq!((r.status, o.cache), (206, Some(CacheOutcome::Miss)));
    assert_eq!(body(&r), b"bytes");
    assert_eq!(r.headers.get("content-range"), Some("bytes 6-10/11"));
    assert!(w.blobs.map.borrow().is_empty());

    // `bytes=0-` is the whole blob: it fills the cache.
    *w.range.borrow_mut() = Some("bytes=0-".into());
    let (r, _) = w.get(&path);
    assert_eq!(r.status, 200);
    assert_eq!(body(&r), b"layer bytes");
    assert_eq!(w.blobs.map.borrow().len(), 1);

    let before = w.reg.total();
    let cases: &[(&str, u16, &[u8], Option<&str>)] = &[
        ("bytes=6-", 206, b"bytes", Some("bytes 6-10/11")),
        ("bytes=0-4", 206, b"layer", Some("bytes 0-4/11")),
        ("bytes=-5", 206, b"bytes", Some("bytes 6-10/11")),
        ("bytes=3-100", 206, b"er bytes", Some("bytes 3-10/11")),
        ("bytes=11-", 416, b"", Some("bytes */11")),
        // Parts that overlap or touch are one range: a plain 206.
        ("bytes=0-1,2-4", 206, b"layer", Some("bytes 0-4/11")),
        ("bytes=0-1,50-60", 206, b"la", Some("bytes 0-1/11")),
    ];
    for (range, status, want, content_range) in cases {
        *w.range.borrow_mut() = Some(range.to_string());
        let (r, o) = w.get(&path);
        assert_eq!(
            (r.status, o.cache),
            (*status, Some(CacheOutcome::Hit)),
            "{range}"
        );
        assert_eq!(r.headers.get("content-range"), *content_range, "{range}");
        if *status == 416 {
            assert_eq!(error_code(&r), "RANGE_INVALID");
        } else {
            assert_eq!(body(&r), *want, "{range}");
            assert_eq!(
                r.headers.get("content-length"),
                Some(want.len().to_string().as_str())
            );
        }
    }
    assert_eq!(
        w.reg.total(),
        before,
        "ranges of a cached blob never reach upstream"
    );

    *w.range.borrow_mut() = Some("bytes=x-".into());
    let (r, _) = w.get(&path);
    assert_eq!((r.status, error_code(&r)), (416, "RANGE_INVALID".into()));
    // HEAD ignores Range.
    let (r, _) = w.request("HEAD", &path, None);
    assert_eq!(r.status, 200);
}

/// A `multipart/byteranges` body as RFC 9110 §14.6 writes it, built here by hand.
fn byteranges(boundary: &str, size: usize, parts: &[(usize, usize, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, (first, last, bytes)) in parts.iter().enumerate() {
        if i > 0 {
            out.extend(b"\r\n");
        }
        out.extend(format!("--{boundary}\r\ncontent-type: application/octet-stream\r\n").bytes());
        out.extend(format!("content-range: bytes {first}-{last}/{size}\r\n\r\n").bytes());
        out.extend(*bytes);
    }
    out.extend(format!("\r\n--{boundary}--\r\n").bytes());
    out
}

#[test]
fn several_ranges_are_one_multipart_answer_from_the_cache() {
    let (reg, _, layer) = image();
    let w = World::new(reg);
    let path = format!("/v2/team/app/blobs/{layer}");

    // A miss with several ranges is read whole: 200, and it fills the cache.
    *w.range.borrow_mut() = Some("bytes=0-1,6-10".into());
    let (r, o) = w.get(&path);
    assert_eq!((r.status, o.cache), (200, Some(CacheOutcome::Miss)));
    assert_eq!(body(&r), b"layer bytes");
    assert_eq!(r.headers.get("content-range"), None);
    assert_eq!(w.blobs.map.borrow().len(), 1);
    assert_eq!(w.blobs.pieced.get(), 0);

    let before = w.reg.total();
    // (Range, the parts (first, last, bytes) of "layer bytes" in the order they must come.)
    type Parts<'a> = &'a [(usize, usize, &'a [u8])];
    let cases: &[(&str, Parts)] = &[
        ("bytes=0-1,6-10", &[(0, 1, b"la"), (6, 10, b"bytes")]),
        ("bytes=6-10,0-1", &[(6, 10, b"bytes"), (0, 1, b"la")]),
        ("bytes=-5,0-0", &[(6, 10, b"bytes"), (0, 0, b"l")]),
        ("bytes=9-, 0-1", &[(9, 10, b"es"), (0, 1, b"la")]),
        (
            "bytes=0-1,3-3,5-",
            &[(0, 1, b"la"), (3, 3, b"e"), (5, 10, b" bytes")],
        ),
        // Out-of-range parts are dropped, overlapping ones merged.
        ("bytes=0-1,99-,3-4,4-5", &[(0, 1, b"la"), (3, 5, b"er ")]),
    ];
    for (range, parts) in cases {
        *w.range.borrow_mut() = Some(range.to_string());
        let (r, o) = w.get(&path);
        assert_eq!(
            (r.status, o.cache),
            (206, Some(CacheOutcome::Hit)),
            "{range}"
        );
        let content_type = r.headers.get("content-type").unwrap();
        let boundary = content_type
            .strip_prefix("multipart/byteranges; boundary=")
            .unwrap_or_else(|| panic!("{range}: {content_type}"));
        assert!(
            (1..=70).contains(&boundary.len()) && boundary.bytes().all(|b| b.is_ascii_graphic()),
            "{boundary}"
        );
        let got = body(&r);
        // Header names are case-insensitive; compare with the door's spelling lowered.
        let lowered = String::from_utf8_lossy(&got)
            .replace("Content-Type:", "content-type:")
            .replace("Content-Range:", "content-range:");
        assert_eq!(
            lowered.as_bytes(),
            byteranges(boundary, 11, parts).as_slice(),
            "{range}"
        );
        assert_eq!(
            r.headers.get("content-length"),
            Some(got.len().to_string().as_str()),
            "{range}"
        );
        assert_eq!(r.headers.get("content-range"), None, "{range}");
        assert_eq!(
            r.headers.get("docker-content-digest"),
            Some(layer.to_string().as_str())
        );
    }
    assert_eq!(w.blobs.pieced.get(), cases.len() as u32);

    // Every part outside the blob: 416 with the size.
    *w.range.borrow_mut() = Some("bytes=11-,20-30".into());
    let (r, _) = w.get(&path);
    assert_eq!((r.status, error_code(&r)), (416, "RANGE_INVALID".into()));
    assert_eq!(r.headers.get("content-range"), Some("bytes */11"));
    // Garbage anywhere in the list is refused.
    *w.range.borrow_mut() = Some("bytes=0-1,4-2".into());
    let (r, _) = w.get(&path);
    assert_eq!((r.status, error_code(&r)), (416, "RANGE_INVALID".into()));
    // More ranges than the door serves as parts: the whole blob.
    let many: Vec<String> = (0..65).map(|i| format!("{}-{}", i % 11, i % 11)).collect();
    *w.range.borrow_mut() = Some(format!("bytes={}", many.join(",")));
    let (r, _) = w.get(&path);
    assert_eq!(r.status, 200);
    assert_eq!(body(&r), b"layer bytes");
    assert_eq!(
        w.reg.total(),
        before,
        "ranges of a cached blob never reach upstream"
    );
}

#[test]
fn tag_list_pages_point_back_at_the_door() {
    let mut reg = FakeRegistry::new();
    for t in ["a", "b", "c"] {
        reg.add_manifest(
            "team/app",
            t,
            MANIFEST,
            format!("{{\"t\":\"{t}\"}}").as_bytes(),
        );
    }
    let w = World::new(reg);
    let (r, _) = w.get("/v2/reg.test/team/app/tags/list?n=2");
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body(&r)).unwrap();
    assert_eq!(v["tags"], serde_json::json!(["a", "b"]));
    assert_eq!(
        r.headers.get("link"),
        Some("</v2/reg.test/team/app/tags/list?last=b&n=2>; rel=\"next\"")
    );
    let (r, _) = w.get("/v2/reg.test/team/app/tags/list?n=2&last=b");
    let v: serde_json::Value = serde_json::from_slice(&body(&r)).unwrap();
    assert_eq!(v["tags"], serde_json::json!(["c"]));
    assert_eq!(r.headers.get("link"), None);
}

#[test]
fn referrers_from_the_api_or_the_tag_schema() {
    let subject = Digest::of(Algorithm::Sha256, b"subject");
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{INDEX}","manifests":[
        {{"mediaType":"{MANIFEST}","digest":"sha256:{a}","size":1,"artifactType":"application/vnd.example.sbom"}},
        {{"mediaType":"{MANIFEST}","digest":"sha256:{b}","size":1,"artifactType":"application/vnd.example.sig"}}]}}"#,
        a = "a".repeat(64),
        b = "b".repeat(64)
    );
    let count = |r: &Reply<Vec<u8>>| {
        let v: serde_json::Value = serde_json::from_slice(&body(r)).unwrap();
        v["manifests"].as_array().unwrap().len()
    };
    let path = format!("/v2/team/app/referrers/{subject}");
    let filtered = format!("{path}?artifactType=application%2Fvnd.example.sig");

    // Upstream without the API and without the fallback tag: an empty index, not an error.
    let w = World::new(FakeRegistry::new());
    let (r, _) = w.get(&path);
    assert_eq!((r.status, count(&r)), (200, 0));
    assert_eq!(r.headers.get("content-type"), Some(INDEX));

    // The tag schema.
    let mut reg = FakeRegistry::new();
    reg.add_manifest(
        "team/app",
        &format!("sha256-{}", subject.hex()),
        INDEX,
        index.as_bytes(),
    );
    let w = World::new(reg);
    let (r, _) = w.get(&path);
    assert_eq!((r.status, count(&r)), (200, 2));
    let (r, _) = w.get(&filtered);
    assert_eq!((r.status, count(&r)), (200, 1));
    assert_eq!(r.headers.get("oci-filters-applied"), Some("artifactType"));

    // The API.
    let mut reg = FakeRegistry::new();
    reg.referrers_api = Some(HashMap::from([(subject.to_string(), index.clone())]));
    let w = World::new(reg);
    let (r, _) = w.get(&filtered);
    assert_eq!((r.status, count(&r)), (200, 1));
    assert_eq!(w.reg.count(HttpMethod::Get, "/manifests/"), 0);
}

const TTL: u64 = 300;

#[test]
fn a_stale_tag_is_revalidated_with_a_head_and_fetched_only_when_it_changed() {
    let (reg, digest, _) = image();
    let mut w = World::new(reg);
    w.get("/v2/team/app/manifests/v1");
    let gets = w.reg.count(HttpMethod::Get, "/manifests/");

    // Past the TTL, unchanged upstream: one HEAD, no GET, the tag is fresh again afterwards.
    w.now.set(w.now.get() + TTL + 1);
    let (r, o) = w.get("/v2/team/app/manifests/v1");
    assert_eq!((r.status, o.cache), (200, Some(CacheOutcome::Revalidated)));
    assert_eq!(r.headers.get("x-frontdoor-cache"), Some("revalidated"));
    assert_eq!(w.reg.count(HttpMethod::Get, "/manifests/"), gets);
    assert_eq!(w.reg.count(HttpMethod::Head, "/manifests/v1"), 1);
    let (_, o) = w.get("/v2/team/app/manifests/v1");
    assert_eq!(o.cache, Some(CacheOutcome::Hit));

    // Past the TTL again, and the tag moved upstream: HEAD, then GET of the new manifest.
    let moved = b"{\"schemaVersion\":2,\"moved\":true}";
    let new_digest = w.reg.add_manifest("team/app", "v1", MANIFEST, moved);
    assert_ne!(new_digest, digest);
    w.now.set(w.now.get() + TTL + 1);
    let (r, o) = w.get("/v2/team/app/manifests/v1");
    assert_eq!((r.status, o.cache), (200, Some(CacheOutcome::Miss)));
    assert_eq!(body(&r), moved);
    // (By the digest the HEAD named: exactly the bytes it announced.)
    assert_eq!(w.reg.count(HttpMethod::Get, "/manifests/"), gets + 1);
    assert_eq!(
        w.reg
            .count(HttpMethod::Get, &format!("/manifests/{new_digest}")),
        1
    );

    // A client HEAD on a stale tag costs one upstream HEAD and never a GET.
    w.now.set(w.now.get() + TTL + 1);
    let before = w.reg.count(HttpMethod::Get, "/manifests/");
    let (r, o) = w.request("HEAD", "/v2/team/app/manifests/v1", None);
    assert_eq!((r.status, o.cache), (200, Some(CacheOutcome::Revalidated)));
    assert_eq!(w.reg.count(HttpMethod::Get, "/manifests/"), before);
}

#[test]
fn upstream_failures_serve_the_stale_copy() {
    let (reg, digest, _) = image();
    let w = World::new(reg);
    let (fresh, _) = w.get("/v2/team/app/manifests/v1");
    for (status, down) in [(Some(429), false), (Some(503), false), (None, true)] {
        w.now.set(w.now.get() + TTL + 1);
        w.reg.status.set(status);
        w.reg.down.set(down);
        let (r, o) = w.get("/v2/team/app/manifests/v1");
        assert_eq!(
            (r.status, o.cache),
            (200, Some(CacheOutcome::Stale)),
            "{status:?} {down}"
        );
        assert_eq!(r.headers.get("x-frontdoor-cache"), Some("stale"));
        assert_eq!(body(&r), body(&fresh));
        assert!(
            o.notes.iter().any(|n| n.contains("served stale")),
            "{:?}",
            o.notes
        );
        // By digest is immutable: served whatever upstream does.
        let (r, o) = w.get(&format!("/v2/team/app/manifests/{digest}"));
        assert_eq!((r.status, o.cache), (200, Some(CacheOutcome::Hit)));
    }
    // Nothing cached and upstream down (just now: inside the back-off): a clean 503 with
    // Retry-After, not a hang or a panic.
    let (r, _) = w.get("/v2/team/other/manifests/v1");
    assert_eq!((r.status, error_code(&r)), (503, "UNAVAILABLE".into()));
    assert!(r.headers.get("retry-after").is_some());
}

#[test]
fn a_missing_manifest_is_remembered_briefly() {
    let (reg, _, _) = image();
    let w = World::new(reg);
    for _ in 0..3 {
        let (r, _) = w.get("/v2/team/app/manifests/nope");
        assert_eq!((r.status, error_code(&r)), (404, "MANIFEST_UNKNOWN".into()));
    }
    assert_eq!(
        w.reg.count(HttpMethod::Get, "/manifests/nope"),
        2,
        "401 + one GET"
    );
    w.now.set(w.now.get() + 61);
    w.get("/v2/team/app/manifests/nope");
    assert_eq!(w.reg.count(HttpMethod::Get, "/manifests/nope"), 3);
}

#[test]
fn the_fallback_answers_when_the_primary_is_rate_limited_and_is_verified_too() {
    let (mut reg, digest, layer) = image();
    reg.add_manifest("team/app", "v2", MANIFEST, b"{\"schemaVersion\":2,\"v\":2}");
    let (mut mirror, _, _) = image();
    mirror.base = "http://fallback.test";
    mirror.realm = "http://fallback.test/token";
    mirror.manifests = reg.manifests.clone();
    mirror.blobs = reg.blobs.clone();
    reg.fallback = Some(Box::new(mirror));
    let w = World::new(reg);
    w.reg.status.set(Some(429));
    let (r, o) = w.get("/v2/team/app/manifests/v1");
    assert_eq!((r.status, o.cache), (200, Some(CacheOutcome::Miss)));
    let digest_s = digest.to_string();
    assert_eq!(
        r.headers.get("docker-content-digest"),
        Some(digest_s.as_str())
    );
    assert!(o.notes.iter().any(|n| n.contains("fallback")));
    let (r, _) = w.get(&format!("/v2/team/app/blobs/{layer}"));
    assert_eq!(body(&r), b"layer bytes");

    // A fallback serving bytes that do not match is refused like the primary would be.
    w.reg.fallback.as_ref().unwrap().corrupt.set(true);
    let (r, _) = w.get("/v2/team/app/manifests/v2");
    assert_eq!((r.status, error_code(&r)), (502, "UNAVAILABLE".into()));
    assert!(
        !w.kv.map.borrow().keys().any(|k| k.contains("/v2")),
        "nothing cached"
    );
}

/// Plays the Durable Object: records which keys misses were handed to, and answers by running the
/// door without coalescing, as the owner does.
struct Owner<'w> {
    world: &'w World,
    request: (String, String),
    keys: RefCell<Vec<String>>,
}

impl Coalesce for Owner<'_> {
    type Body = Vec<u8>;
    async fn forward(&self, key: &str) -> Result<Reply<Vec<u8>>, frontdoor::error::RegistryError> {
        self.keys.borrow_mut().push(key.to_owned());
        let (method, path) = (&self.request.0, &self.request.1);
        let none = None::<&NoCoalescing<Vec<u8>>>;
        Ok(self.world.run(none, method, path, None).await.0)
    }
    async fn forward_path(
        &self,
        key: &str,
        path: &str,
    ) -> Result<Reply<Vec<u8>>, frontdoor::error::RegistryError> {
        self.keys.borrow_mut().push(format!("{key} {path}"));
        let none = None::<&NoCoalescing<Vec<u8>>>;
        Ok(self.world.run(none, "GET", path, None).await.0)
    }
}

#[test]
fn misses_go_to_the_object_owner_and_hits_do_not() {
    let (reg, digest, layer) = image();
    let w = World::new(reg);
    let via_owner = |method: &str, path: &str| {
        let owner = Owner {
            world: &w,
            request: (method.to_owned(), path.to_owned()),
            keys: RefCell::new(Vec::new()),
        };
        let (r, o) = w.request_via(Some(&owner), method, path, None);
        (r, o, owner.keys.into_inner())
    };
    let blob = format!("/v2/team/app/blobs/{layer}");
    let (r, o, keys) = via_owner("GET", "/v2/team/app/manifests/v1");
    assert_eq!((r.status, o.coalesced), (200, true));
    assert_eq!(keys, ["v1/tags/reg.test/team/app/v1"]);
    assert_eq!(
        o.cache,
        Some(CacheOutcome::Miss),
        "the owner's answer says what happened"
    );
    let (r, o, keys) = via_owner("GET", &blob);
    assert_eq!((r.status, body(&r)), (200, b"layer bytes".to_vec()));
    assert_eq!(keys, [format!("blobs/sha256/{}", layer.hex())]);
    assert!(o.coalesced);

    // Cached now: nothing is forwarded.
    for path in [
        "/v2/team/app/manifests/v1".to_owned(),
        format!("/v2/team/app/manifests/{digest}"),
        blob.clone(),
    ] {
        let (r, o, keys) = via_owner("GET", &path);
        assert_eq!(
            (r.status, o.cache, o.coalesced),
            (200, Some(CacheOutcome::Hit), false)
        );
        assert!(keys.is_empty(), "{path}");
    }
    // HEADs and partial ranges of missing blobs go straight upstream (free, and not cacheable).
    let missing = Digest::of(Algorithm::Sha256, b"missing");
    let (_, o, keys) = via_owner("HEAD", &format!("/v2/team/app/blobs/{missing}"));
    assert!(keys.is_empty() && !o.coalesced);
}

#[test]
fn containerd_style_resolve_by_head_then_get_by_digest_is_cached() {
    let (reg, digest, _) = image();
    let w = World::new(reg);
    let (r, _) = w.request("HEAD", "/v2/team/app/manifests/v1", None);
    assert_eq!(r.status, 200);
    let (r, _) = w.get(&format!("/v2/team/app/manifests/{digest}"));
    assert_eq!(r.status, 200);
    // The next resolve costs nothing upstream.
    let before = w.reg.total();
    let (r, o) = w.request("HEAD", "/v2/team/app/manifests/v1", None);
    assert_eq!((r.status, o.cache), (200, Some(CacheOutcome::Hit)));
    assert_eq!(w.reg.total(), before);
}

const SIGNING_KEY: &str = "0123456789abcdef0123456789abcdef";

#[test]
fn self_signed_redirects_serve_from_storage_and_refuse_tampering() {
    let (reg, _, layer) = image();
    let w = World::with(
        reg,
        &[("BLOB_REDIRECT", "self"), ("URL_SIGNING_KEY", SIGNING_KEY)],
    );
    let path = format!("/v2/team/app/blobs/{layer}");
    // A miss streams through and fills storage; only a stored blob is redirected.
    let (r, _) = w.get(&path);
    assert_eq!((r.status, body(&r)), (200, b"layer bytes".to_vec()));
    let (r, o) = w.get(&path);
    assert_eq!((r.status, o.cache), (307, Some(CacheOutcome::Hit)));
    assert!(body(&r).is_empty(), "no bytes through the worker");
    let location = r.headers.get("location").unwrap().to_owned();
    assert!(
        location.starts_with(&format!("/_blob/sha256/{}?expires=", layer.hex())),
        "{location}"
    );
    let (r, _) = w.request("HEAD", &path, None);
    assert_eq!(r.status, 200, "HEAD is answered directly");

    let (r, _) = w.get(&location);
    assert_eq!((r.status, body(&r)), (200, b"layer bytes".to_vec()));
    assert_eq!(
        r.headers.get("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    *w.range.borrow_mut() = Some("bytes=0-4".into());
    let (r, _) = w.get(&location);
    assert_eq!((r.status, body(&r)), (206, b"layer".to_vec()));
    *w.range.borrow_mut() = None;

    let other = Digest::of(Algorithm::Sha256, b"other");
    let tampered = [
        location.replace("sig=", "sig=A"),
        location.replace(layer.hex(), other.hex()),
        location.replace("expires=", "expires=9"),
        format!("/_blob/sha256/{}", layer.hex()),
    ];
    for bad in tampered {
        let (r, _) = w.get(&bad);
        assert_eq!((r.status, error_code(&r)), (403, "DENIED".into()), "{bad}");
    }
    w.now.set(w.now.get() + 301);
    let (r, _) = w.get(&location);
    assert_eq!(
        (r.status, error_code(&r)),
        (403, "DENIED".into()),
        "expired"
    );
}

#[test]
fn s3_redirects_are_presigned_for_the_bucket() {
    let (reg, _, layer) = image();
    let w = World::with(
        reg,
        &[
            ("BLOB_REDIRECT", "s3"),
            ("R2_S3_ENDPOINT", "https://acct.r2.cloudflarestorage.com"),
            ("R2_BUCKET", "door-blobs"),
            ("R2_ACCESS_KEY_ID", "AKID"),
            ("R2_SECRET_ACCESS_KEY", "SECRET-never-shown"),
            ("REDIRECT_TTL_SECONDS", "120"),
        ],
    );
    let path = format!("/v2/team/app/blobs/{layer}");
    w.get(&path);
    let (r, _) = w.get(&path);
    assert_eq!(r.status, 307);
    let location = r.headers.get("location").unwrap();
    let want = format!(
        "https://acct.r2.cloudflarestorage.com/door-blobs/blobs/sha256/{}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F",
        layer.hex()
    );
    assert!(location.starts_with(&want), "{location}");
    assert!(location.contains("X-Amz-Expires=120&"), "{location}");
    assert!(location.contains("X-Amz-Signature="), "{location}");
    assert!(!location.contains("SECRET"), "the secret never leaves");
    let (r, _) = w.get("/_blob/sha256/00");
    assert_eq!(r.status, 400);
}

const ACCESS_KEY: &str = "an-access-token-key-of-32-bytes!";

fn access_world() -> (World, Digest, Digest) {
    let (mut reg, digest, layer) = image();
    let m = format!(r#"{{"schemaVersion":2,"layers":[{{"digest":"{layer}"}}]}}"#);
    reg.add_manifest("public/app", "v1", MANIFEST, m.as_bytes());
    let w = World::with(
        reg,
        &[
            (
                "ACCESS",
                r#"{"anonymous": ["reg.test/public/*"],
                    "users": {"a": {"password_secret": "A_PW", "pull": ["reg.test/*"]},
                              "b": {"password_secret": "B_PW", "pull": ["reg.test/public/*"]}}}"#,
            ),
            ("ACCESS_TOKEN_KEY", ACCESS_KEY),
            ("A_PW", "alpha"),
            ("B_PW", "beta"),
        ],
    );
    (w, digest, layer)
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[test]
fn the_access_matrix_through_the_door() {
    let (w, _, _) = access_world();
    let private = "/v2/team/app/manifests/v1";
    let public = "/v2/public/app/manifests/v1";
    let cases = [
        (None, public, 200),
        (None, private, 401),
        (Some(basic("a", "alpha")), private, 200),
        (Some(basic("a", "alpha")), public, 200),
        (Some(basic("b", "beta")), public, 200),
        (Some(basic("b", "beta")), private, 403),
        (Some(basic("a", "wrong")), public, 401),
        (Some("Bearer not-a-token".to_owned()), public, 401),
    ];
    for (auth, path, status) in cases {
        *w.authorization.borrow_mut() = auth.clone();
        let (r, _) = w.get(path);
        assert_eq!(r.status, status, "{auth:?} {path}");
        if status == 401 {
            let challenge = r.headers.get("www-authenticate").unwrap();
            assert!(
                challenge
                    .starts_with(r#"Bearer realm="https://door.test/token",service="door.test""#),
                "{challenge}"
            );
            if auth.is_none() {
                assert!(
                    challenge.ends_with(r#",scope="repository:reg.test/team/app:pull""#),
                    "{challenge}"
                );
            }
        }
    }
}

#[test]
fn tokens_from_the_door_grant_only_what_the_user_may_read() {
    let (w, _, _) = access_world();
    // GET with Basic, asking for one readable and one unreadable repository.
    *w.authorization.borrow_mut() = Some(basic("b", "beta"));
    let (r, _) = w.get("/token?service=door.test&scope=repository:public/app:pull&scope=repository:reg.test/team/app:pull");
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body(&r)).unwrap();
    let token = v["token"].as_str().unwrap().to_owned();
    assert_eq!(v["access_token"], v["token"]);
    *w.authorization.borrow_mut() = Some(format!("Bearer {token}"));
    assert_eq!(w.get("/v2/public/app/manifests/v1").0.status, 200);
    let (r, _) = w.get("/v2/team/app/manifests/v1");
    assert_eq!(
        (r.status, error_code(&r)),
        (403, "DENIED".into()),
        "b may never pull it: a new token would not help"
    );

    // containerd's OAuth2 POST.
    *w.authorization.borrow_mut() = None;
    *w.body.borrow_mut() = Some(
        b"grant_type=password&username=a&password=alpha&service=door.test&scope=repository%3Ateam%2Fapp%3Apull".to_vec(),
    );
    let (r, _) = w.request("POST", "/token", None);
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body(&r)).unwrap();
    *w.authorization.borrow_mut() = Some(format!("Bearer {}", v["token"].as_str().unwrap()));
    *w.body.borrow_mut() = None;
    assert_eq!(w.get("/v2/team/app/manifests/v1").0.status, 200);

    // Wrong password: no token at all.
    *w.authorization.borrow_mut() = None;
    *w.body.borrow_mut() = Some(b"grant_type=password&username=a&password=nope".to_vec());
    let (r, _) = w.request("POST", "/token", None);
    assert_eq!((r.status, error_code(&r)), (401, "UNAUTHORIZED".into()));
    *w.body.borrow_mut() = Some(b"grant_type=refresh_token&refresh_token=x".to_vec());
    assert_eq!(w.request("POST", "/token", None).0.status, 400);
    *w.body.borrow_mut() = None;

    // Tokens expire.
    *w.authorization.borrow_mut() = Some(format!("Bearer {token}"));
    w.now.set(w.now.get() + 301);
    assert_eq!(w.get("/v2/public/app/manifests/v1").0.status, 401);
    // A restricted door's version check always challenges anonymous clients (that is where
    // containers/image learns the realm); with credentials it answers 200.
    *w.authorization.borrow_mut() = None;
    let (r, _) = w.get("/v2/");
    assert_eq!(r.status, 401);
    assert!(r
        .headers
        .get("www-authenticate")
        .unwrap()
        .starts_with("Bearer realm="));
    *w.authorization.borrow_mut() = Some(basic("b", "beta"));
    assert_eq!(w.get("/v2/").0.status, 200);
}

#[test]
fn a_blob_is_served_through_another_repository_only_if_it_belongs_there() {
    let (mut reg, _, private_layer) = image();
    let shared_layer = reg.add_blob(b"a shared base layer");
    reg.only_in
        .insert(private_layer.to_string(), "team/app".into());
    let w = World::new(reg);
    for layer in [&private_layer, &shared_layer] {
        let (r, _) = w.get(&format!("/v2/team/app/blobs/{layer}"));
        assert_eq!(r.status, 200);
    }
    // Stored now, but upstream says the other repository does not have it: no leak.
    let (r, _) = w.get(&format!("/v2/team/other/blobs/{private_layer}"));
    assert_eq!((r.status, error_code(&r)), (404, "BLOB_UNKNOWN".into()));
    // Where it does belong, it is confirmed once with a HEAD and then served from storage.
    let path = format!("/v2/team/other/blobs/{shared_layer}");
    let gets = w.reg.count(HttpMethod::Get, "/blobs/");
    let (r, o) = w.get(&path);
    assert_eq!((r.status, o.cache), (200, Some(CacheOutcome::Hit)));
    assert_eq!(body(&r), b"a shared base layer");
    let shared_path = format!("team/other/blobs/{shared_layer}");
    assert_eq!(w.reg.count(HttpMethod::Head, &shared_path), 1);
    assert_eq!(
        w.reg.count(HttpMethod::Get, "/blobs/"),
        gets,
        "no second download"
    );
    let before = w.reg.total();
    w.get(&path);
    assert_eq!(w.reg.total(), before, "linked now");
}

#[test]
fn a_token_realm_on_a_private_address_is_refused_for_a_public_upstream() {
    let (mut reg, _, _) = image();
    reg.realm = "http://169.254.169.254/latest/meta-data";
    let w = World::new(reg);
    let (r, o) = w.get("/v2/team/app/manifests/v1");
    assert_eq!((r.status, error_code(&r)), (502, "UNAVAILABLE".into()));
    assert!(String::from_utf8(body(&r))
        .unwrap()
        .contains("private address"));
    assert!(
        !w.reg
            .log
            .borrow()
            .iter()
            .any(|(_, u, _)| u.contains("169.254")),
        "never contacted"
    );
    assert_eq!(o.upstream_calls, 1);
}

#[test]
fn pins_freeze_tags_and_latest_can_be_refused() {
    let (mut reg, digest, _) = image();
    let moved = reg.add_manifest(
        "team/app",
        "v1",
        MANIFEST,
        b"{\"schemaVersion\":2,\"moved\":1}",
    );
    // v1 now names `moved` upstream, but the door is pinned to the original digest.
    reg.add_manifest("team/app", "latest", MANIFEST, b"{\"schemaVersion\":2}");
    let v2 = reg.add_manifest("team/app", "v2", MANIFEST, b"{\"schemaVersion\":2,\"v\":2}");
    let pins = format!(r#"{{"reg.test/team/app:v1": "{digest}"}}"#);
    let w = World::with(reg, &[("PINS", &pins), ("DENY_LATEST", "true")]);
    let (r, o) = w.get("/v2/team/app/manifests/v1");
    let digest_s = digest.to_string();
    assert_eq!(
        r.headers.get("docker-content-digest"),
        Some(digest_s.as_str())
    );
    assert_ne!(digest, moved);
    assert!(o.notes.iter().any(|n| n.contains("pinned")));
    let (r, _) = w.get("/v2/team/app/manifests/latest");
    assert_eq!((r.status, error_code(&r)), (403, "DENIED".into()));
    assert!(String::from_utf8(body(&r))
        .unwrap()
        .contains(":latest is refused"));

    // /_frontdoor/resolve: pinned, unpinned (upstream HEAD, no counted GET), by digest, refused.
    let gets = w.reg.count(HttpMethod::Get, "/manifests/");
    let (r, _) = w.get(&format!(
        "/_frontdoor/resolve?image=reg.test/team/app:v1&image=team/app@{digest}&image=team/app:latest&image=Bad:Name&image=team/app:v2"
    ));
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body(&r)).unwrap();
    let images = v["images"].as_array().unwrap();
    assert_eq!(
        images[0]["pinned"],
        format!("reg.test/team/app:v1@{digest}")
    );
    assert_eq!(images[1]["pinned"], format!("reg.test/team/app@{digest}"));
    assert_eq!(images[2]["error"]["code"], "DENIED");
    assert_eq!(images[3]["error"]["code"], "NAME_INVALID");
    assert_eq!(images[4]["pinned"], format!("reg.test/team/app:v2@{v2}"));
    assert_eq!(
        w.reg.count(HttpMethod::Get, "/manifests/"),
        gets,
        "no counted pull"
    );
}

// ---- Policy (`crate::policy`): DENY, IMMUTABLE_TAGS, VERIFY and the audit trail. ----

mod signing {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use p256::ecdsa::signature::Signer;
    use p256::ecdsa::{Signature, SigningKey};

    pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

    /// A fixed test key (its scalar is `seed` repeated).
    pub fn key(seed: u8) -> SigningKey {
        SigningKey::from_slice(&[seed; 32]).unwrap()
    }

    /// `cosign.pub`: the key as a PEM SubjectPublicKeyInfo.
    pub fn pem(key: &SigningKey) -> String {
        let mut der = hex_bytes("3059301306072a8648ce3d020106082a8648ce3d030107034200");
        der.extend_from_slice(key.verifying_key().to_encoded_point(false).as_bytes());
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            STANDARD.encode(der)
        )
    }

    fn hex_bytes(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// How a signature is spoiled.
    #[derive(Clone, Copy, PartialEq)]
    pub enum Spoil {
        None,
        OverAnotherDigest,
        PayloadAltered,
        SignatureCorrupted,
        WrongType,
    }

    pub fn payload(subject: &str, kind: &str) -> String {
        format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"reg.test/team/app"}},"image":{{"docker-manifest-digest":"{subject}"}},"type":"{kind}"}},"optional":null}}"#
        )
    }

    /// Signs `subject` the way `cosign sign --key` does, next to it in `repo`.
    pub fn sign(
        reg: &mut FakeRegistry,
        repo: &str,
        subject: &Digest,
        key: &SigningKey,
        spoil: Spoil,
    ) {
        let named = match spoil {
            Spoil::OverAnotherDigest => Digest::of(Algorithm::Sha256, b"another").to_string(),
            _ => subject.to_string(),
        };
        let kind = match spoil {
            Spoil::WrongType => "cosign attestation",
            _ => "cosign container image signature",
        };
        let signed = payload(&named, kind);
        let sig: Signature = key.sign(signed.as_bytes());
        let mut sig = sig.to_bytes().to_vec();
        if spoil == Spoil::SignatureCorrupted {
            sig[10] ^= 0x55;
        }
        let stored = match spoil {
            Spoil::PayloadAltered => signed.replace("null", "{\"by\":\"mallory\"}"),
            _ => signed,
        };
        let blob = reg.add_blob(stored.as_bytes());
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{blob}","size":2}},"layers":[{{"mediaType":"{SIMPLE_SIGNING}","digest":"{blob}","size":{},"annotations":{{"dev.cosignproject.cosign/signature":"{}"}}}}]}}"#,
            stored.len(),
            STANDARD.encode(sig)
        );
        let tag = format!("sha256-{}.sig", subject.hex());
        reg.add_manifest(repo, &tag, MANIFEST, manifest.as_bytes());
    }
}

/// Sigstore bundles (cosign 3's default) as referrers, found through the tag-schema fallback.
mod bundles {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use p256::ecdsa::signature::Signer;
    use p256::ecdsa::{Signature, SigningKey};

    pub const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

    /// `cosign sign --key` (cosign 3): an in-toto statement in a DSSE envelope, in a bundle, in a
    /// referrer manifest whose subject is `subject`, listed under the `sha256-<hex>` tag.
    pub fn attach(
        reg: &mut FakeRegistry,
        repo: &str,
        subject: &Digest,
        key: &SigningKey,
        predicate: &str,
    ) {
        let statement = serde_json::json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": repo, "digest": {"sha256": subject.hex()}}],
            "predicateType": predicate,
            "predicate": {},
        })
        .to_string();
        let payload_type = "application/vnd.in-toto+json";
        let pae = format!(
            "DSSEv1 {} {payload_type} {} {statement}",
            payload_type.len(),
            statement.len()
        );
        let sig: Signature = key.sign(pae.as_bytes());
        let bundle = serde_json::json!({
            "mediaType": BUNDLE,
            "verificationMaterial": {"publicKey": {"hint": "k"}},
            "dsseEnvelope": {"payload": STANDARD.encode(&statement), "payloadType": payload_type,
                "signatures": [{"sig": STANDARD.encode(sig.to_bytes())}]},
        })
        .to_string();
        let blob = reg.add_blob(bundle.as_bytes());
        let referrer = serde_json::json!({
            "schemaVersion": 2, "mediaType": MANIFEST, "artifactType": BUNDLE,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "size": 2},
            "layers": [{"mediaType": BUNDLE, "digest": blob.to_string(), "size": bundle.len()}],
            "subject": {"mediaType": MANIFEST, "digest": subject.to_string(), "size": 1},
        })
        .to_string();
        let r = Digest::of(Algorithm::Sha256, referrer.as_bytes());
        reg.add_manifest(repo, &r.to_string(), MANIFEST, referrer.as_bytes());
        let index = serde_json::json!({
            "schemaVersion": 2, "mediaType": INDEX,
            "manifests": [{"mediaType": MANIFEST, "digest": r.to_string(), "size": referrer.len(), "artifactType": BUNDLE}],
        })
        .to_string();
        reg.add_manifest(
            repo,
            &format!("sha256-{}", subject.hex()),
            INDEX,
            index.as_bytes(),
        );
    }
}

#[test]
fn verify_takes_a_sigstore_bundle_referrer_signed_by_a_trusted_key() {
    use signing::{key, pem};
    let mut reg = FakeRegistry::new();
    let mut add = |tag: &str| {
        let m = format!(r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","tag":"{tag}"}}"#);
        reg.add_manifest("team/app", tag, MANIFEST, m.as_bytes())
    };
    let (good, attested, other) = (add("good"), add("attested"), add("other-key"));
    add(&format!("sha256-{}.sig", "ab".repeat(32)));
    bundles::attach(
        &mut reg,
        "team/app",
        &good,
        &key(1),
        "https://sigstore.dev/cosign/sign/v1",
    );
    bundles::attach(
        &mut reg,
        "team/app",
        &attested,
        &key(1),
        "https://slsa.dev/provenance/v1",
    );
    bundles::attach(
        &mut reg,
        "team/app",
        &other,
        &key(2),
        "https://sigstore.dev/cosign/sign/v1",
    );
    let verify = serde_json::json!({ "reg.test/team/*": [pem(&key(1))] });
    let w = World::with(reg, &[("VERIFY", &verify.to_string())]);
    let (r, _) = w.get("/v2/team/app/manifests/good");
    assert_eq!(
        (r.status, decision(&r)),
        (200, "verified by key 1".into()),
        "{}",
        String::from_utf8_lossy(&body(&r))
    );
    let before = w.reg.total();
    let (r, _) = w.get(&format!("/v2/team/app/manifests/{good}"));
    assert_eq!((r.status, w.reg.total()), (200, before), "remembered");
    for (tag, why) in [
        (
            "attested",
            "an attestation (https://slsa.dev/provenance/v1), not a signature",
        ),
        ("other-key", "not made by a trusted key"),
    ] {
        let (r, _) = w.get(&format!("/v2/team/app/manifests/{tag}"));
        assert_eq!(r.status, 403, "{tag}");
        let m = message(&r);
        assert!(
            m.contains("has no sha256-") && m.contains(&format!("bundle 1: {why}")),
            "{tag}: {m}"
        );
    }
    // The signatures themselves are served without a signature of their own (cosign verify works
    // through the door).
    let (r, _) = w.get(&format!("/v2/team/app/manifests/sha256-{}", good.hex()));
    assert_eq!(r.status, 200);
    let (r, _) = w.get(&format!("/v2/team/app/referrers/{good}"));
    assert_eq!(r.status, 200);
    // Judged by the bytes, not the tag: an image pushed under a signature's tag needs a signature.
    let (r, _) = w.get(&format!(
        "/v2/team/app/manifests/sha256-{}.sig",
        "ab".repeat(32)
    ));
    assert_eq!((r.status, error_code(&r)), (403, "DENIED".into()));
}

fn decision(r: &Reply<Vec<u8>>) -> String {
    r.headers.get("x-frontdoor-policy").unwrap_or("").to_owned()
}

fn message(r: &Reply<Vec<u8>>) -> String {
    let v: serde_json::Value = serde_json::from_slice(&body(r)).expect("OCI error body");
    v["errors"][0]["message"].as_str().unwrap().to_owned()
}

#[test]
fn deny_refuses_known_bad_manifests_blobs_and_indexes_listing_them_with_the_reason() {
    let (mut reg, top, amd) = multi_platform();
    let layer = reg.add_blob(b"bad layer");
    let (single, digest, _) = image();
    reg.manifests.extend(single.manifests);
    reg.blobs.extend(single.blobs);
    let deny = serde_json::json!({
        amd.to_string(): "CVE-2026-1234",
        layer.to_string(): "TICKET-42",
        digest.to_string(): "CVE-2026-9999",
    });
    let w = World::with(reg, &[("DENY", &deny.to_string())]);

    // By digest: refused before upstream is asked.
    let before = w.reg.total();
    let (r, o) = w.get(&format!("/v2/team/app/manifests/{amd}"));
    assert_eq!((r.status, error_code(&r)), (403, "DENIED".into()));
    assert!(message(&r).contains("CVE-2026-1234"), "{}", message(&r));
    assert_eq!(
        w.reg.total(),
        before,
        "nothing fetched for a known-bad digest"
    );
    assert_eq!(o.digest, Some(amd.to_string()));
    assert!(o.decision.unwrap().starts_with("denied: "));

    // By tag: the digest served is refused, and so is an index that lists it.
    let (r, o) = w.get("/v2/team/app/manifests/v1");
    assert_eq!(r.status, 403);
    assert!(message(&r).contains("CVE-2026-9999"));
    assert_eq!(o.digest, Some(digest.to_string()));
    let (r, _) = w.get("/v2/team/app/manifests/multi");
    assert_eq!(r.status, 403);
    assert_eq!(
        message(&r),
        format!(
            "reg.test/team/app@{top} lists {amd}, which is refused by this mirror: CVE-2026-1234"
        )
    );
    let (r, _) = w.request("HEAD", "/v2/team/app/manifests/multi", None);
    assert_eq!(r.status, 403, "a HEAD of an index the door holds");

    // A blob.
    let (r, o) = w.get(&format!("/v2/team/app/blobs/{layer}"));
    assert_eq!((r.status, error_code(&r)), (403, "DENIED".into()));
    assert!(message(&r).contains("TICKET-42"));
    assert_eq!(o.digest, Some(layer.to_string()));
    // What is not denied is served, and says so.
    let (r, _) = w.get("/v2/team/app/manifests/arm64-only");
    assert_eq!((r.status, decision(&r)), (200, "allowed".into()));
}

#[test]
fn an_immutable_tag_keeps_its_first_digest_when_upstream_moves_it() {
    let (mut reg, first, _) = image();
    reg.add_manifest(
        "team/app",
        "rc",
        MANIFEST,
        b"{\"schemaVersion\":2,\"rc\":1}",
    );
    let w = World::with(reg, &[("IMMUTABLE_TAGS", r#"["reg.test/team/*:v*"]"#)]);
    let (r, o) = w.get("/v2/team/app/manifests/v1");
    assert_eq!(r.status, 200);
    assert_eq!(o.decision.as_deref(), Some("immutable (first served)"));

    // Upstream moves both tags; the cached tag entry expires.
    let mut w = w;
    let moved = w.reg.add_manifest(
        "team/app",
        "v1",
        MANIFEST,
        b"{\"schemaVersion\":2,\"moved\":1}",
    );
    let rc2 = w.reg.add_manifest(
        "team/app",
        "rc",
        MANIFEST,
        b"{\"schemaVersion\":2,\"rc\":2}",
    );
    w.now.set(w.now.get() + 301);
    let (r, o) = w.get("/v2/team/app/manifests/v1");
    assert_eq!(
        r.headers.get("docker-content-digest"),
        Some(first.to_string().as_str())
    );
    assert_eq!(decision(&r), "immutable");
    let want = (
        "reg.test/team/app:v1".to_owned(),
        first.to_string(),
        moved.to_string(),
    );
    assert_eq!(o.tag_moved, Some(want), "the move is reported");
    assert!(o.notes.iter().any(|n| n.contains("moved upstream")));
    assert_eq!(
        w.reg.count(HttpMethod::Get, &format!("manifests/{moved}")),
        0,
        "the new manifest is never fetched"
    );
    // Within the TTL: not compared again, and no upstream request at all.
    let before = w.reg.total();
    let (r, o) = w.get("/v2/team/app/manifests/v1");
    assert_eq!(
        r.headers.get("docker-content-digest"),
        Some(first.to_string().as_str())
    );
    assert_eq!((w.reg.total(), o.tag_moved), (before, None));
    let (r, _) = w.request("HEAD", "/v2/team/app/manifests/v1", None);
    assert_eq!(
        r.headers.get("docker-content-digest"),
        Some(first.to_string().as_str())
    );
    // A tag that does not match moves as tags do.
    let (r, _) = w.get("/v2/team/app/manifests/rc");
    assert_eq!(
        r.headers.get("docker-content-digest"),
        Some(rc2.to_string().as_str())
    );
    // /_frontdoor/resolve reports the kept digest, as pinned by the immutable tag.
    let (r, _) = w.get("/_frontdoor/resolve?image=reg.test/team/app:v1");
    let v: serde_json::Value = serde_json::from_slice(&body(&r)).unwrap();
    assert_eq!(
        v["images"][0]["pinned"],
        format!("reg.test/team/app:v1@{first}")
    );
    assert_eq!(v["images"][0]["policy"], "immutable");
}

#[test]
fn verify_serves_only_what_a_trusted_key_signed_and_remembers_it() {
    use signing::{key, pem, sign, Spoil};
    let (mut reg, top, amd) = multi_platform();
    let trusted = key(1);
    sign(&mut reg, "team/app", &top, &trusted, Spoil::None);
    let cases = [
        ("unsigned", Spoil::None, false, "has no sha256-"),
        ("other-key", Spoil::None, true, "not made by a trusted key"),
        (
            "other-digest",
            Spoil::OverAnotherDigest,
            false,
            "not this manifest",
        ),
        (
            "altered",
            Spoil::PayloadAltered,
            false,
            "not made by a trusted key",
        ),
        (
            "corrupted",
            Spoil::SignatureCorrupted,
            false,
            "not made by a trusted key",
        ),
        ("wrong-type", Spoil::WrongType, false, "critical.type"),
    ];
    let mut digests = Vec::new();
    for (tag, spoil, other_key, _) in cases {
        let m = format!(r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","case":"{tag}"}}"#);
        let d = reg.add_manifest("team/app", tag, MANIFEST, m.as_bytes());
        if tag != "unsigned" {
            let signer = if other_key { key(2) } else { key(1) };
            sign(&mut reg, "team/app", &d, &signer, spoil);
        }
        digests.push(d);
    }
    let verify = serde_json::json!({ "reg.test/team/*": [pem(&key(3)), pem(&trusted)] });
    let w = World::with(reg, &[("VERIFY", &verify.to_string())]);

    // A signed index: served, and each platform it lists is covered by its signature.
    let (r, o) = w.get("/v2/team/app/manifests/multi");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&body(&r)));
    assert_eq!(decision(&r), "verified by key 2");
    assert_eq!(o.digest, Some(top.to_string()));
    assert_eq!(
        w.reg
            .count(HttpMethod::Get, &format!("sha256-{}.sig", top.hex())),
        1
    );
    let (r, _) = w.get(&format!("/v2/team/app/manifests/{amd}"));
    assert_eq!(
        (r.status, decision(&r)),
        (200, "verified by key 2 (via its index)".into())
    );

    // Warm: the same pulls cost no upstream request.
    let before = w.reg.total();
    let (r, _) = w.get(&format!("/v2/team/app/manifests/{top}"));
    assert_eq!((r.status, decision(&r)), (200, "verified by key 2".into()));
    let (r, _) = w.request("HEAD", "/v2/team/app/manifests/multi", None);
    assert_eq!(r.status, 200);
    assert_eq!(
        w.reg.total(),
        before,
        "a warm signed pull asks upstream nothing"
    );

    // Every spoiled case: 403 DENIED saying what is missing, and nothing remembered.
    for ((tag, _, _, why), d) in cases.iter().zip(&digests) {
        for _ in 0..2 {
            let (r, o) = w.get(&format!("/v2/team/app/manifests/{tag}"));
            assert_eq!((r.status, error_code(&r)), (403, "DENIED".into()), "{tag}");
            let m = message(&r);
            assert!(
                m.starts_with(&format!(
                    "no signature by a trusted key for reg.test/team/app@{d}: "
                )),
                "{tag}: {m}"
            );
            assert!(m.contains(why), "{tag}: {m}");
            assert!(m.contains("cosign sign --key"), "{tag}: {m}");
            assert_eq!(o.digest, Some(d.to_string()));
            assert!(o.decision.unwrap().starts_with("denied: no signature"));
        }
    }
    assert_eq!(
        w.reg
            .count(HttpMethod::Get, &format!("sha256-{}.sig", digests[0].hex())),
        2,
        "a refusal is not remembered: the next pull looks again"
    );
}

#[test]
fn an_owners_policy_decision_reaches_the_workers_log_line() {
    use signing::{key, pem, sign, Spoil};
    let (mut reg, digest, _) = image();
    let m = format!(r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","unsigned":1}}"#);
    let unsigned = reg.add_manifest("team/app", "v2", MANIFEST, m.as_bytes());
    sign(&mut reg, "team/app", &digest, &key(1), Spoil::None);
    let verify = serde_json::json!({ "reg.test/team/*": pem(&key(1)) }).to_string();
    let settings = [
        ("VERIFY", verify.as_str()),
        ("IMMUTABLE_TAGS", r#"["reg.test/team/app:v1"]"#),
    ];
    let w = World::with(reg, &settings);
    for (tag, status, want, d) in [
        (
            "v1",
            200,
            "verified by key 1, immutable (first served)",
            &digest,
        ),
        ("v2", 403, "denied: no signature", &unsigned),
    ] {
        let path = format!("/v2/team/app/manifests/{tag}");
        let owner = Owner {
            world: &w,
            request: ("GET".into(), path.clone()),
            keys: RefCell::new(Vec::new()),
        };
        let (r, o) = w.request_via(Some(&owner), "GET", &path, None);
        assert!(o.coalesced, "{tag}: the owner answered");
        assert_eq!(r.status, status, "{tag}");
        let decision = o.decision.unwrap();
        assert!(decision.starts_with(want), "{tag}: {decision}");
        let learned = decision.matches("first served").count();
        assert_eq!(learned, usize::from(tag == "v1"), "{decision}");
        assert_eq!(o.digest, Some(d.to_string()), "{tag}");
    }
}

#[test]
fn the_audit_trail_names_who_what_and_the_decision() {
    let (reg, digest, _) = image();
    let w = World::new(reg);
    let (r, o) = w.get("/v2/team/app/manifests/v1");
    assert_eq!(r.status, 200);
    assert_eq!(o.user.as_deref(), Some("anonymous"));
    assert_eq!(o.client_ip.as_deref(), Some("203.0.113.7"));
    assert_eq!(o.reference.as_deref(), Some("v1"));
    assert_eq!(o.digest, Some(digest.to_string()));
    assert_eq!(o.decision.as_deref(), Some("allowed"));
    let (w, _, _) = access_world();
    *w.authorization.borrow_mut() = Some(basic("a", "alpha"));
    let (_, o) = w.get("/v2/team/app/manifests/v1");
    assert_eq!(o.user.as_deref(), Some("a"));
}

#[test]
fn prewarm_pulls_every_platform_into_the_cache_once() {
    let mut reg = FakeRegistry::new();
    let mut descriptors = Vec::new();
    for arch in ["amd64", "arm64"] {
        let config = reg.add_blob(format!("config {arch}").as_bytes());
        let layer = reg.add_blob(format!("layer {arch}").as_bytes());
        let shared = reg.add_blob(b"a shared layer");
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","config":{{"digest":"{config}"}},"layers":[{{"digest":"{layer}"}},{{"digest":"{shared}"}}]}}"#
        );
        let d = reg.add_manifest(
            "team/multi",
            &format!("only-{arch}"),
            MANIFEST,
            m.as_bytes(),
        );
        descriptors.push(format!(r#"{{"mediaType":"{MANIFEST}","digest":"{d}"}}"#));
    }
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{}]}}"#,
        descriptors.join(",")
    );
    reg.add_manifest("team/multi", "v1", INDEX, index.as_bytes());
    let w = World::with(
        reg,
        &[
            ("ADMIN_TOKEN", "admin-secret"),
            ("PREWARM", r#"["team/multi:v1"]"#),
        ],
    );

    let (r, _) = w.request("POST", "/_frontdoor/prewarm", None);
    assert_eq!((r.status, error_code(&r)), (401, "UNAUTHORIZED".into()));
    *w.authorization.borrow_mut() = Some("Bearer admin-secret".into());
    let (r, _) = w.request("POST", "/_frontdoor/prewarm", None);
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body(&r)).unwrap();
    let report = &v["images"][0];
    assert_eq!(report["image"], "team/multi:v1");
    assert_eq!(report["manifests"], 3, "the index and both platforms");
    assert_eq!(
        report["blobs_fetched"], 5,
        "2 configs, 2 layers, 1 shared layer: {v}"
    );
    assert_eq!(report["error"], serde_json::Value::Null);
    assert_eq!(w.blobs.map.borrow().len(), 5);

    // Warm now: a node pulling arm64 costs nothing upstream.
    *w.authorization.borrow_mut() = None;
    let before = w.reg.total();
    for path in ["/v2/team/multi/manifests/v1".to_owned()]
        .into_iter()
        .chain(w.blobs.map.borrow().keys().map(|k| {
            format!(
                "/v2/team/multi/blobs/sha256:{}",
                k.trim_start_matches("blobs/sha256/")
            )
        }))
        .collect::<Vec<_>>()
    {
        let (r, o) = w.get(&path);
        assert_eq!(
            (r.status, o.cache),
            (200, Some(CacheOutcome::Hit)),
            "{path}"
        );
    }
    assert_eq!(w.reg.total(), before);

    // Again, days later: everything is already there, and is marked read again so retention
    // keeps what PREWARM still asks for.
    w.now.set(w.now.get() + 40 * DAY);
    *w.authorization.borrow_mut() = Some("Bearer admin-secret".into());
    let (r, _) = w.request("POST", "/_frontdoor/prewarm?image=team/multi:v1", None);
    let v: serde_json::Value = serde_json::from_slice(&body(&r)).unwrap();
    assert_eq!(
        (
            v["images"][0]["blobs_fetched"].as_u64(),
            v["images"][0]["blobs_cached"].as_u64()
        ),
        (Some(0), Some(5))
    );
    let today = w.now.get() / DAY;
    let kv = w.kv.map.borrow();
    let old: Vec<&String> = kv
        .iter()
        .filter(|(_, e)| e.read_day != Some(today))
        .map(|(k, _)| k)
        .collect();
    assert!(old.is_empty(), "not marked by the pre-warm: {old:?}");
}

const DAY: u64 = 86_400;

/// Adds `repo:v1`, an image of one config and one layer, each unique to it.
fn add_image(reg: &mut FakeRegistry, repo: &str) -> (Digest, [Digest; 2]) {
    let config = reg.add_blob(format!("config of {repo}").as_bytes());
    let layer = reg.add_blob(format!("layer of {repo}").as_bytes());
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","config":{{"digest":"{config}"}},"layers":[{{"digest":"{layer}"}}]}}"#
    );
    let digest = reg.add_manifest(repo, "v1", MANIFEST, m.as_bytes());
    (digest, [config, layer])
}

impl World {
    /// A client pull: the tag, then each blob.
    fn pull(&self, repo: &str, blobs: &[Digest]) {
        let (r, _) = self.get(&format!("/v2/{repo}/manifests/v1"));
        assert_eq!(r.status, 200, "{repo}");
        for b in blobs {
            let (r, _) = self.get(&format!("/v2/{repo}/blobs/{b}"));
            assert_eq!(r.status, 200, "{repo} {b}");
        }
    }

    /// Runs the retention sweep until a pass completes, returning every run's report.
    fn sweep(&self) -> Vec<frontdoor::retention::Swept> {
        let mut runs = Vec::new();
        loop {
            let sweep = frontdoor::retention::Sweep {
                config: &self.config,
                kv: &self.kv,
                blobs: &self.blobs,
                now: self.now.get(),
            };
            let swept = block_on(sweep.step());
            assert!(swept.errors.is_empty(), "{:?}", swept.errors);
            let done = swept.pass_complete;
            runs.push(swept);
            if done || runs.len() > 100 {
                return runs;
            }
        }
    }

    fn has_blob(&self, d: &Digest) -> bool {
        self.blobs
            .map
            .borrow()
            .contains_key(&format!("blobs/sha256/{}", d.hex()))
    }

    fn kv_keys_of(&self, repo: &str) -> usize {
        let needle = format!("/{repo}/");
        self.kv
            .map
            .borrow()
            .keys()
            .filter(|k| k.contains(&needle))
            .count()
    }
}

#[test]
fn reads_mark_records_read_at_most_once_a_day() {
    let mut reg = FakeRegistry::new();
    let (digest, blobs) = add_image(&mut reg, "team/app");
    let w = World::new(reg);
    w.pull("team/app", &blobs);
    let by_digest = |w: &World| {
        let (r, _) = w.get(&format!("/v2/team/app/manifests/{digest}"));
        assert_eq!(r.status, 200);
        for b in &blobs {
            let (r, o) = w.get(&format!("/v2/team/app/blobs/{b}"));
            assert_eq!((r.status, o.cache), (200, Some(CacheOutcome::Hit)));
        }
    };
    let puts = w.kv.puts.get();
    by_digest(&w);
    by_digest(&w);
    assert_eq!(w.kv.puts.get(), puts, "hits the same day write nothing");

    w.now.set(w.now.get() + DAY);
    by_digest(&w);
    // The manifest, and for each blob its link and its own mark.
    assert_eq!(w.kv.puts.get(), puts + 1 + 2 * 2);
    let today = w.now.get() / DAY;
    let marks = w.kv.map.borrow();
    let mark = |k: String| marks.get(&k).and_then(|e| e.read_day);
    assert_eq!(
        mark(format!(
            "v1/manifests/reg.test/team/app/sha256/{}",
            digest.hex()
        )),
        Some(today)
    );
    for b in &blobs {
        assert_eq!(mark(format!("v1/blobs/sha256/{}", b.hex())), Some(today));
        assert_eq!(
            mark(format!("v1/links/reg.test/team/app/sha256/{}", b.hex())),
            Some(today)
        );
    }
    drop(marks);
    by_digest(&w);
    assert_eq!(w.kv.puts.get(), puts + 5, "once a day");
}

#[test]
fn retention_deletes_what_nobody_read_keeps_pins_and_works_in_bounded_steps() {
    let mut reg = FakeRegistry::new();
    let (pinned, pinned_blobs) = add_image(&mut reg, "team/pinned");
    let (_, old_blobs) = add_image(&mut reg, "team/old");
    let (_, fresh_blobs) = add_image(&mut reg, "team/fresh");
    let pins = format!(r#"{{"reg.test/team/pinned:v1": "{pinned}"}}"#);
    let w = World::with(reg, &[("PINS", &pins), ("RETENTION_BATCH", "3")]);
    let start = w.now.get();
    for (repo, blobs) in [
        ("team/pinned", &pinned_blobs),
        ("team/old", &old_blobs),
        ("team/fresh", &fresh_blobs),
    ] {
        w.pull(repo, blobs);
    }
    let records = w.kv.map.borrow().len();
    // pinned: manifest and 2 links (a pinned tag is never looked up); old and fresh: tag,
    // manifest, 2 links each; and the 6 blobs' marks.
    assert_eq!(records, 3 + 4 + 4 + 6);
    // A record from before marks existed is marked, never deleted on sight.
    w.kv.map.borrow_mut().insert(
        "v1/absent/reg.test/team/legacy/v0".into(),
        Entry {
            value: b"{}".to_vec(),
            read_day: None,
        },
    );

    // Thirty days on, nothing has been unread for *more* than 30 days.
    w.now.set(start + 10 * DAY);
    w.pull("team/fresh", &fresh_blobs);
    w.now.set(start + 30 * DAY);
    let runs = w.sweep();
    assert!(runs.iter().all(|r| r.deleted == 0), "{runs:?}");
    assert_eq!(runs.iter().map(|r| r.marked).sum::<u32>(), 1);
    assert!(runs.iter().all(|r| r.examined <= 3), "bounded: {runs:?}");
    assert_eq!(runs.len(), (records + 1).div_ceil(3), "each run resumes");
    assert!(!w.kv.map.borrow().contains_key("retention"), "pass done");

    // Day 35: old and pinned were last read on day 0, fresh on day 10.
    w.now.set(start + 35 * DAY);
    let runs = w.sweep();
    let total = |f: fn(&frontdoor::retention::Swept) -> u32| runs.iter().map(f).sum::<u32>();
    assert_eq!(
        total(|r| r.deleted),
        4 + 2,
        "old's tag, manifest, links; 2 marks"
    );
    assert_eq!(total(|r| r.blobs_deleted), 2);
    assert_eq!(total(|r| r.kept_pinned), 5);
    assert_eq!(w.kv_keys_of("team/old"), 0);
    assert!(old_blobs.iter().all(|b| !w.has_blob(b)));
    assert!(pinned_blobs
        .iter()
        .chain(&fresh_blobs)
        .all(|b| w.has_blob(b)));
    assert_eq!(w.kv_keys_of("team/fresh"), 4);
    assert_eq!(w.kv_keys_of("team/pinned"), 3);

    // What was deleted is fetched again on the next pull; the pinned image costs nothing.
    let before = w.reg.count(HttpMethod::Get, "/blobs/");
    w.pull("team/pinned", &pinned_blobs);
    assert_eq!(w.reg.count(HttpMethod::Get, "/blobs/"), before);
    w.pull("team/old", &old_blobs);
    assert_eq!(w.reg.count(HttpMethod::Get, "/blobs/"), before + 2);
    assert!(old_blobs.iter().all(|b| w.has_blob(b)));

    // RETENTION_DAYS=0 keeps everything.
    let mut reg = FakeRegistry::new();
    let (_, blobs) = add_image(&mut reg, "team/app");
    let w = World::with(reg, &[("RETENTION_DAYS", "0")]);
    w.pull("team/app", &blobs);
    w.now.set(w.now.get() + 1000 * DAY);
    let runs = w.sweep();
    assert_eq!((runs.len(), runs[0].examined), (1, 0));
    assert!(blobs.iter().all(|b| w.has_blob(b)));
}

#[test]
fn an_outage_costs_one_probe_per_backoff_not_one_request_per_client() {
    let (reg, _, _) = image();
    let w = World::new(reg);
    let (fresh, _) = w.get("/v2/team/app/manifests/v1");
    w.now.set(w.now.get() + TTL + 1);
    w.reg.down.set(true);
    let before = w.reg.total();

    // The first client finds upstream down (one attempt: a token request and the HEAD); the next
    // 49 are served stale at once.
    let mut calls = 0;
    for i in 0..50 {
        let (r, o) = w.get("/v2/team/app/manifests/v1");
        assert_eq!((r.status, o.cache), (200, Some(CacheOutcome::Stale)), "{i}");
        assert_eq!(body(&r), body(&fresh));
        assert_eq!(o.upstream_calls > 0, i == 0, "client {i}");
        calls += o.upstream_calls;
    }
    assert_eq!(
        w.reg.total() - before,
        calls as usize,
        "one attempt for fifty clients"
    );
    assert!(calls <= 2);

    // Nothing cached during the back-off: a clean 503 with Retry-After, and still no request.
    let (r, o) = w.get("/v2/team/other/manifests/v1");
    assert_eq!((r.status, error_code(&r)), (503, "UNAVAILABLE".into()));
    assert_eq!(r.headers.get("retry-after"), Some("10"));
    assert_eq!(o.upstream_calls, 0);

    // After the back-off one probe goes out; it fails, and the next back-off is twice as long.
    w.now.set(w.now.get() + 10);
    let (r, o) = w.get("/v2/team/app/manifests/v1");
    assert_eq!((r.status, o.cache), (200, Some(CacheOutcome::Stale)));
    assert!(o.upstream_calls > 0, "the probe");
    let (_, o) = w.get("/v2/team/app/manifests/v1");
    assert_eq!(o.upstream_calls, 0);
    w.now.set(w.now.get() + 19);
    assert_eq!(w.get("/v2/team/app/manifests/v1").1.upstream_calls, 0);

    // Upstream is back: the next probe revalidates, and everyone goes upstream again.
    w.reg.down.set(false);
    w.now.set(w.now.get() + 1);
    let (r, o) = w.get("/v2/team/app/manifests/v1");
    assert_eq!((r.status, o.cache), (200, Some(CacheOutcome::Revalidated)));
    assert!(
        o.notes.iter().any(|n| n.contains("is back")),
        "{:?}",
        o.notes
    );
    let (r, _) = w.get("/v2/team/other/manifests/v1");
    assert_eq!(error_code(&r), "MANIFEST_UNKNOWN");
}

#[test]
fn a_plain_500_is_an_answer_not_an_outage() {
    let (reg, _, _) = image();
    let w = World::new(reg);
    w.get("/v2/team/app/manifests/v1");
    w.reg.status.set(Some(500));
    let (r, _) = w.get("/v2/team/app/manifests/nope");
    assert_eq!(r.status, 502);
    w.reg.status.set(None);
    let (r, o) = w.get("/v2/team/app/manifests/nope");
    assert_eq!(error_code(&r), "MANIFEST_UNKNOWN");
    assert!(o.upstream_calls > 0);
}

#[test]
fn backoff_zero_sends_every_request() {
    let (reg, _, _) = image();
    let w = World::with(reg, &[("UPSTREAM_BACKOFF_SECONDS", "0")]);
    w.get("/v2/team/app/manifests/v1");
    w.now.set(w.now.get() + TTL + 1);
    w.reg.down.set(true);
    for _ in 0..3 {
        let (r, o) = w.get("/v2/team/app/manifests/v1");
        assert_eq!(r.status, 200);
        assert!(o.upstream_calls > 0);
    }
}

#[test]
fn a_permissive_registry_cannot_unlock_another_registrys_blobs() {
    let (mut reg, _, layer) = image();
    let mut open = FakeRegistry::new();
    open.base = "http://open.test";
    open.realm = "http://open.test/token";
    open.permissive.set(true);
    reg.other = Some(Box::new(open));
    let w = World::new(reg);
    let (r, _) = w.get(&format!("/v2/team/app/blobs/{layer}"));
    assert_eq!(body(&r), b"layer bytes");
    let key = format!("blobs/sha256/{}", layer.hex());

    // Through the registry that says yes to every digest: its HEAD is no evidence, and the stored
    // private bytes are never handed out; the door asks it for the bytes themselves.
    for path in [
        format!("/v2/other.test/any/thing/blobs/{layer}"),
        format!("/v2/other.test/team/app/blobs/{layer}"),
    ] {
        for method in ["GET", "HEAD"] {
            let (r, o) = w.request(method, &path, None);
            assert_ne!(body(&r), b"layer bytes", "{method} {path}");
            assert_ne!(o.cache, Some(CacheOutcome::Hit), "{method} {path}");
        }
    }
    let open = w.reg.other.as_ref().unwrap();
    assert_eq!(
        open.count(HttpMethod::Get, "/blobs/"),
        3,
        "a GET for each of the two GETs (the first one after a 401 challenge)"
    );
    assert_eq!(w.blobs.bytes(&key).as_deref(), Some(&b"layer bytes"[..]));
    let stored = block_on(w.blobs.stat(&key)).unwrap().unwrap();
    assert_eq!(
        stored.registries,
        ["reg.test"],
        "the refused bytes vouch for nothing"
    );
    assert_eq!(
        w.blobs.refused.get(),
        2,
        "the wrong bytes of each of the two GETs, refused by the store"
    );

    // The registry that did deliver the bytes still serves them from the cache.
    let (r, o) = w.get(&format!("/v2/team/app/blobs/{layer}"));
    assert_eq!(
        (body(&r), o.cache),
        (b"layer bytes".to_vec(), Some(CacheOutcome::Hit))
    );
}

#[test]
fn a_second_registry_that_delivers_the_bytes_is_vouched_for_too() {
    let (mut reg, _, layer) = image();
    let mut mirror = FakeRegistry::new();
    mirror.base = "http://mirror.test";
    mirror.realm = "http://mirror.test/token";
    mirror.blobs = reg.blobs.clone();
    reg.other = Some(Box::new(mirror));
    let w = World::new(reg);
    w.get(&format!("/v2/team/app/blobs/{layer}"));
    let path = format!("/v2/other.test/team/app/blobs/{layer}");
    let (r, o) = w.get(&path);
    assert_eq!(
        (body(&r), o.cache),
        (b"layer bytes".to_vec(), Some(CacheOutcome::Miss))
    );
    let key = format!("blobs/sha256/{}", layer.hex());
    let stored = block_on(w.blobs.stat(&key)).unwrap().unwrap();
    assert_eq!(stored.registries, ["reg.test", "other.test"]);
    let (r, o) = w.get(&path);
    assert_eq!(
        (body(&r), o.cache, o.upstream_calls),
        (b"layer bytes".to_vec(), Some(CacheOutcome::Hit), 0)
    );
}

#[test]
fn a_herds_later_clients_follow_the_fill_under_way_on_the_same_evidence_as_a_stored_copy() {
    let (mut reg, _, layer) = image();
    let mut mirror = FakeRegistry::new();
    mirror.base = "http://mirror.test";
    mirror.realm = "http://mirror.test/token";
    mirror.blobs = reg.blobs.clone();
    reg.other = Some(Box::new(mirror));
    let w = World::new(reg);
    let key = format!("blobs/sha256/{}", layer.hex());
    let path = format!("/v2/team/app/blobs/{layer}");
    // The owner's first client fetched and is filling (linked through team/app).
    w.get(&path);
    let filled = w.blobs.map.borrow_mut().remove(&key).unwrap();
    w.blobs.filling.borrow_mut().insert(key.clone(), filled);
    let gets = w.reg.count(HttpMethod::Get, "/blobs/");

    // The next client of the same repository follows: no upstream request at all.
    let (r, o) = w.get(&path);
    assert_eq!(
        (r.status, body(&r), o.cache, o.upstream_calls),
        (200, b"layer bytes".to_vec(), Some(CacheOutcome::Joined), 0)
    );
    assert_eq!(r.headers.get("content-length"), Some("11"));
    assert_eq!(w.blobs.followed.get(), 1);

    // Through another repository, upstream first confirms the blob belongs there (a HEAD).
    let other_repo = format!("/v2/team/other/blobs/{layer}");
    let (r, o) = w.get(&other_repo);
    assert_eq!((r.status, o.cache), (200, Some(CacheOutcome::Joined)));
    assert_eq!(w.reg.count(HttpMethod::Head, "/v2/team/other/blobs/"), 1);
    assert_eq!(w.reg.count(HttpMethod::Get, "/blobs/"), gets);
    // … and a repository upstream says it is not in never follows.
    w.reg.status.set(Some(404));
    let (r, _) = w.get(&format!("/v2/team/third/blobs/{layer}"));
    assert_eq!((r.status, error_code(&r).as_str()), (404, "BLOB_UNKNOWN"));
    w.reg.status.set(None);
    assert_eq!(w.blobs.followed.get(), 2);

    // A HEAD and a range that does not start at 0 are not followers: they ask upstream.
    let (r, o) = w.request("HEAD", &path, None);
    assert_eq!((r.status, o.cache), (200, Some(CacheOutcome::Miss)));
    *w.range.borrow_mut() = Some("bytes=2-4".into());
    let (r, _) = w.get(&path);
    assert_eq!((r.status, body(&r)), (206, b"yer".to_vec()));
    *w.range.borrow_mut() = None;
    assert_eq!(w.blobs.followed.get(), 2);

    // Another registry's clients do not take bytes this registry's upstream delivered.
    let (r, o) = w.get(&format!("/v2/other.test/team/app/blobs/{layer}"));
    assert_eq!((r.status, o.cache), (200, Some(CacheOutcome::Miss)));
    assert_eq!(w.blobs.followed.get(), 2);
}

#[test]
fn a_blob_stored_before_registries_were_recorded_is_fetched_once_more() {
    let (reg, _, layer) = image();
    let w = World::new(reg);
    let key = format!("blobs/sha256/{}", layer.hex());
    w.blobs
        .map
        .borrow_mut()
        .insert(key.clone(), (b"layer bytes".to_vec(), vec![]));
    let path = format!("/v2/team/app/blobs/{layer}");
    let (r, o) = w.get(&path);
    assert_eq!(
        (body(&r), o.cache),
        (b"layer bytes".to_vec(), Some(CacheOutcome::Miss))
    );
    assert_eq!(
        block_on(w.blobs.stat(&key)).unwrap().unwrap().registries,
        ["reg.test"]
    );
    let (_, o) = w.get(&path);
    assert_eq!((o.cache, o.upstream_calls), (Some(CacheOutcome::Hit), 0));
}

/// A multi-platform tag (an OCI index over two Docker v2 manifests) on a registry that honours
/// `Accept` as distribution does: a client that takes no index gets the amd64 manifest.
fn multi_platform() -> (FakeRegistry, Digest, Digest) {
    let mut reg = FakeRegistry::new();
    let amd = reg.add_manifest(
        "team/app",
        "amd64-only",
        DOCKER_V2,
        format!(r#"{{"schemaVersion":2,"mediaType":"{DOCKER_V2}","arch":"amd64"}}"#).as_bytes(),
    );
    let arm = reg.add_manifest(
        "team/app",
        "arm64-only",
        DOCKER_V2,
        format!(r#"{{"schemaVersion":2,"mediaType":"{DOCKER_V2}","arch":"arm64"}}"#).as_bytes(),
    );
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{INDEX}","manifests":[{{"digest":"{amd}","mediaType":"{DOCKER_V2}"}},{{"digest":"{arm}","mediaType":"{DOCKER_V2}"}}]}}"#
    );
    let top = reg.add_manifest("team/app", "multi", INDEX, index.as_bytes());
    reg.platform_fallback = Some(HashMap::from([(
        ("team/app".to_owned(), "multi".to_owned()),
        amd.to_string(),
    )]));
    (reg, top, amd)
}

const OCI_ONLY: &str =
    "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";

#[test]
fn one_canonical_entry_per_tag_serves_every_client_that_can_take_it() {
    let (reg, top, _) = multi_platform();
    let w = World::new(reg);
    // Fifty OCI-only clients: one HEAD (which type is it?) and one counted GET, then nothing.
    for i in 0..50 {
        let (r, o) = w.request("GET", "/v2/team/app/manifests/multi", Some(OCI_ONLY));
        assert_eq!(r.status, 200, "{i}");
        assert_eq!(r.headers.get("content-type"), Some(INDEX));
        assert_eq!(o.upstream_calls > 0, i == 0, "client {i}: {:?}", o.cache);
    }
    assert_eq!(w.reg.count(HttpMethod::Get, "/manifests/"), 1, "one pull");
    assert_eq!(
        w.reg.count(HttpMethod::Get, &format!("/manifests/{top}")),
        1,
        "by the digest the HEAD named"
    );
    // A client that takes everything is served the same canonical entry, from the cache.
    let (r, o) = w.get("/v2/team/app/manifests/multi");
    assert_eq!((o.cache, o.upstream_calls), (Some(CacheOutcome::Hit), 0));
    let top_s = top.to_string();
    assert_eq!(r.headers.get("docker-content-digest"), Some(top_s.as_str()));
}

#[test]
fn a_docker_only_client_gets_its_own_entry_and_never_repoints_the_tag() {
    let (reg, top, amd) = multi_platform();
    let w = World::new(reg);
    let top_s = top.to_string();
    let amd_s = amd.to_string();
    // The Docker-v2-only client first: upstream is asked with the full Accept (a HEAD: free),
    // finds an index, and then with the client's own Accept for its manifest.
    for i in 0..20 {
        let (r, o) = w.request("GET", "/v2/team/app/manifests/multi", Some(DOCKER_V2));
        assert_eq!(r.status, 200);
        assert_eq!(
            r.headers.get("docker-content-digest"),
            Some(amd_s.as_str()),
            "{i}"
        );
        assert_eq!(o.upstream_calls > 0, i == 0, "client {i}");
    }
    assert_eq!(
        w.reg.count(HttpMethod::Get, "/manifests/multi"),
        1,
        "one pull with the client's Accept"
    );
    // Everyone else still gets the index the canonical pointer names (known from the HEAD;
    // its bytes fetched by digest once), and then from the cache.
    for expected in [CacheOutcome::Miss, CacheOutcome::Hit] {
        let (r, o) = w.get("/v2/team/app/manifests/multi");
        assert_eq!(r.headers.get("docker-content-digest"), Some(top_s.as_str()));
        assert_eq!(o.cache, Some(expected));
    }
    assert_eq!(
        w.reg.count(HttpMethod::Get, &format!("/manifests/{top}")),
        1
    );
}

#[test]
fn a_remembered_404_is_only_the_answer_to_the_full_accept() {
    let (mut reg, top, _) = multi_platform();
    // A registry that has no platform to fall back to: a Docker-only client gets 404.
    reg.platform_fallback = Some(HashMap::new());
    let w = World::new(reg);
    let (r, _) = w.request("GET", "/v2/team/app/manifests/multi", Some(DOCKER_V2));
    assert_eq!(error_code(&r), "MANIFEST_UNKNOWN");
    // Which does not make the tag missing for anyone else.
    let (r, _) = w.get("/v2/team/app/manifests/multi");
    assert_eq!(r.status, 200);
    let top_s = top.to_string();
    assert_eq!(r.headers.get("docker-content-digest"), Some(top_s.as_str()));
    assert!(
        !w.kv
            .map
            .borrow()
            .keys()
            .any(|k| k.starts_with("v1/absent/")),
        "nothing remembered as absent"
    );
}

#[test]
fn heads_are_first_class() {
    let (reg, digest, _) = image();
    let w = World::new(reg);
    let digest_s = digest.to_string();
    // A tag only ever HEADed: one upstream HEAD, then none inside the TTL.
    for i in 0..10 {
        let (r, o) = w.request("HEAD", "/v2/team/app/manifests/v1", None);
        assert_eq!(r.status, 200);
        assert_eq!(
            r.headers.get("docker-content-digest"),
            Some(digest_s.as_str())
        );
        assert_eq!(r.headers.get("content-type"), Some(MANIFEST));
        assert!(r.headers.get("content-length").is_some());
        assert_eq!(o.upstream_calls > 0, i == 0, "HEAD {i}");
    }
    assert_eq!(
        w.reg.count(HttpMethod::Get, "/manifests/"),
        0,
        "never a pull"
    );
    // A GET of it fetches by digest, once.
    let (r, _) = w.get("/v2/team/app/manifests/v1");
    assert_eq!(r.status, 200);
    assert_eq!(
        w.reg
            .count(HttpMethod::Get, &format!("/manifests/{digest}")),
        1
    );
    assert_eq!(w.reg.count(HttpMethod::Get, "/manifests/v1"), 0);
    // During an outage, past the TTL, a HEAD is answered from what is known.
    let w2 = World::new(image().0);
    w2.request("HEAD", "/v2/team/app/manifests/v1", None);
    w2.now.set(w2.now.get() + TTL + 1);
    w2.reg.down.set(true);
    let (r, o) = w2.request("HEAD", "/v2/team/app/manifests/v1", None);
    assert_eq!((r.status, o.cache), (200, Some(CacheOutcome::Stale)));
    assert_eq!(
        r.headers.get("docker-content-digest"),
        Some(digest_s.as_str())
    );
}
// ------------------------------------------------------------------------------------------------
// Issue 11: status pages, media types, refusals, protocol edges, bounded fan-out
// ------------------------------------------------------------------------------------------------

/// Counters for the status endpoints, counting how often they were read.
#[derive(Default)]
struct FakeStats {
    reads: Cell<u32>,
}

impl StatsSource for FakeStats {
    async fn current(&self) -> Result<frontdoor::stats::Stats, StoreError> {
        self.reads.set(self.reads.get() + 1);
        let mut stats = frontdoor::stats::Stats::default();
        stats
            .registries
            .insert("reg.test".into(), Default::default());
        Ok(stats)
    }
}

impl World {
    /// A status request as the worker answers it (`None`: not a status request).
    fn status(
        &self,
        method: &str,
        path: &str,
        source: &FakeStats,
    ) -> Option<(Reply<Vec<u8>>, Outcome)> {
        let authorization = self.authorization.borrow().clone();
        let req = ClientRequest {
            line: RequestLine {
                method,
                host: Some("door.test"),
                path,
                query: None,
            },
            authorization: authorization.as_deref(),
            origin: Some("https://door.test"),
            ..ClientRequest::default()
        };
        block_on(frontdoor::status::serve(
            &self.config,
            &req,
            self.now.get(),
            source,
        ))
    }

    fn bearer(&self, token: &str) {
        *self.authorization.borrow_mut() = Some(format!("Bearer {token}"));
    }

    /// A token from the door's `/token` for `scope`, with the current `Authorization`.
    fn door_token(&self, scope: &str) -> String {
        let (r, _) = self.get(&format!("/token?service=door.test&scope={scope}"));
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&body(&r)));
        let v: serde_json::Value = serde_json::from_slice(&body(&r)).unwrap();
        v["token"].as_str().unwrap().to_owned()
    }
}

const ADMIN: &str = "the-admin-token";

#[test]
fn the_status_pages_need_a_person_not_a_token_anyone_can_mint() {
    let (mut w, _, _) = access_world();
    w.config.admin_token = Some(frontdoor::config::SigningKey(ADMIN.as_bytes().to_vec()));
    // Tokens as /token issues them: anonymous (to anyone), and to users a and b.
    let anonymous = w.door_token("repository:public/app:pull");
    *w.authorization.borrow_mut() = Some(basic("b", "beta"));
    let user_b = w.door_token("repository:public/app:pull");
    // A token issued to a user who has since been removed from ACCESS (same key).
    let deleted = w
        .config
        .access
        .issue(
            &frontdoor::access::Principal::User("gone".into()),
            vec!["reg.test/public/app".into()],
            w.now.get(),
        )
        .unwrap()
        .0;
    let cases: [(&str, Option<String>, u16); 8] = [
        ("no credentials", None, 401),
        ("anonymous token", Some(format!("Bearer {anonymous}")), 401),
        ("user token", Some(format!("Bearer {user_b}")), 200),
        ("Basic user", Some(basic("a", "alpha")), 200),
        ("wrong password", Some(basic("a", "wrong")), 401),
        ("admin token", Some(format!("Bearer {ADMIN}")), 200),
        (
            "wrong admin token",
            Some("Bearer the-admin-tokeN".into()),
            401,
        ),
        (
            "token of a deleted user",
            Some(format!("Bearer {deleted}")),
            401,
        ),
    ];
    for (what, auth, want) in cases {
        *w.authorization.borrow_mut() = auth;
        for path in ["/", "/_frontdoor/status"] {
            let source = FakeStats::default();
            let (r, outcome) = w.status("GET", path, &source).expect("a status request");
            assert_eq!(r.status, want, "{what} {path}");
            assert_eq!(outcome.kind, Kind::Status);
            assert_eq!(r.headers.get("x-content-type-options"), Some("nosniff"));
            if want == 401 {
                assert_eq!(error_code(&r), "UNAUTHORIZED", "{what} {path}");
                assert_eq!(
                    r.headers.get("www-authenticate"),
                    Some(frontdoor::status::CHALLENGE),
                    "{what} {path}"
                );
                assert_eq!(source.reads.get(), 0, "{what}: counters never read");
            } else {
                assert_eq!(source.reads.get(), 1, "{what} {path}");
            }
        }
    }
    // The door itself, asked directly, serves no counters to anyone.
    *w.authorization.borrow_mut() = Some(format!("Bearer {anonymous}"));
    assert_eq!(w.get("/_frontdoor/status").0.status, 401);
    *w.authorization.borrow_mut() = Some(basic("a", "alpha"));
    assert_eq!(w.get("/_frontdoor/status").0.status, 404);
    // Not status requests: the door answers them.
    let source = FakeStats::default();
    assert!(w.status("GET", "/v2/", &source).is_none());
    assert!(w.status("POST", "/", &source).is_none());
    assert_eq!(w.request("POST", "/", None).0.status, 405);
}

#[test]
fn without_access_the_status_pages_are_public() {
    let w = World::new(FakeRegistry::new());
    for auth in [
        None,
        Some("Bearer anything".to_owned()),
        Some(basic("x", "y")),
    ] {
        *w.authorization.borrow_mut() = auth.clone();
        let source = FakeStats::default();
        let (r, _) = w.status("GET", "/_frontdoor/status", &source).unwrap();
        assert_eq!(r.status, 200, "{auth:?}");
        assert_eq!(r.headers.get("content-type"), Some("application/json"));
        let v: serde_json::Value = serde_json::from_slice(&body(&r)).unwrap();
        assert!(v["registries"]["reg.test"].is_object());
    }
    let (r, _) = w.status("GET", "/", &FakeStats::default()).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers.get("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = r.headers.get("content-security-policy").unwrap();
    assert!(
        csp.starts_with("default-src 'none'; style-src 'sha256-"),
        "{csp}"
    );
    assert!(
        csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert_eq!(r.headers.get("cache-control"), Some("no-store"));
    assert!(String::from_utf8(body(&r)).unwrap().contains("reg.test"));
    let (r, _) = w.status("HEAD", "/", &FakeStats::default()).unwrap();
    assert_eq!(r.status, 200);
    assert!(body(&r).is_empty());
}

/// Stored manifests, tag pointers and not-found records (not blob links).
fn manifest_records(w: &World) -> Vec<String> {
    w.kv.map
        .borrow()
        .keys()
        .filter(|k| !k.contains("link") && !k.contains("blob"))
        .cloned()
        .collect()
}

#[test]
fn an_upstream_media_type_never_becomes_active_content() {
    let docker = "application/vnd.docker.distribution.manifest.v2+json";
    let with_type = format!(r#"{{"schemaVersion":2,"mediaType":"{docker}","layers":[]}}"#);
    let bare = r#"{"schemaVersion":2,"layers":[]}"#.to_owned();
    let evil_type = r#"{"schemaVersion":2,"mediaType":"text/html","layers":[]}"#.to_owned();
    // (upstream Content-Type, body, what the door serves it as: Some(type) or a 502)
    let cases: &[(&str, &String, Option<&str>)] = &[
        ("text/html", &with_type, Some(docker)),
        ("text/html", &bare, None),
        ("text/html; charset=utf-8", &bare, None),
        (
            "application/vnd.oci.image.manifest.v1+json\r\nx-evil: 1",
            &bare,
            None,
        ),
        (
            "application/vnd.oci.image.manifest.v1+json\r",
            &with_type,
            Some(docker),
        ),
        ("application/vnd.oci.image.manifest.v1+json\0", &bare, None),
        ("application/xhtml+xml", &bare, None),
        ("text/plain", &evil_type, None),
        (MANIFEST, &evil_type, Some(MANIFEST)),
        ("application/octet-stream", &bare, Some(MANIFEST)),
    ];
    for (ct, manifest, want) in cases {
        let mut reg = FakeRegistry::new();
        let digest = reg.add_manifest("team/app", "v1", ct, manifest.as_bytes());
        let w = World::new(reg);
        for path in [
            "/v2/team/app/manifests/v1".to_owned(),
            format!("/v2/team/app/manifests/{digest}"),
        ] {
            let (r, outcome) = w.get(&path);
            assert_eq!(r.headers.get("x-content-type-options"), Some("nosniff"));
            match want {
                Some(t) => {
                    assert_eq!(r.status, 200, "{ct:?} {path}");
                    assert_eq!(r.headers.get("content-type"), Some(*t), "{ct:?}");
                    assert_eq!(body(&r), manifest.as_bytes(), "the bytes as received");
                }
                None => {
                    assert_eq!(
                        (r.status, error_code(&r)),
                        (502, "UNAVAILABLE".into()),
                        "{ct:?}"
                    );
                    let v: serde_json::Value = serde_json::from_slice(&body(&r)).unwrap();
                    let message = v["errors"][0]["message"].as_str().unwrap();
                    assert!(message.contains("unusable media type"), "{message}");
                    assert!(outcome
                        .notes
                        .iter()
                        .any(|n| n.contains("unusable media type")));
                    assert_eq!(
                        manifest_records(&w),
                        Vec::<String>::new(),
                        "{ct:?}: nothing stored"
                    );
                }
            }
        }
    }
}

#[test]
fn a_head_with_an_unusable_media_type_is_refused_and_records_nothing() {
    for (ct, want) in [
        ("text/html", Some(502)),
        ("application/json\r\nx-evil: 1", Some(502)),
        ("application/octet-stream", None),
        (MANIFEST, Some(200)),
    ] {
        let mut reg = FakeRegistry::new();
        reg.add_manifest("team/app", "v1", ct, br#"{"schemaVersion":2}"#);
        let w = World::new(reg);
        let (r, _) = w.request("HEAD", "/v2/team/app/manifests/v1", None);
        assert_eq!(r.headers.get("x-content-type-options"), Some("nosniff"));
        match want {
            Some(502) => {
                assert_eq!(r.status, 502, "{ct:?}");
                assert_eq!(manifest_records(&w), Vec::<String>::new(), "{ct:?}");
            }
            Some(s) => {
                assert_eq!(r.status, s);
                assert_eq!(r.headers.get("content-type"), Some(ct));
            }
            None => {
                assert_eq!(r.status, 200, "{ct:?}");
                assert_eq!(
                    r.headers.get("content-type"),
                    None,
                    "says nothing: not passed on"
                );
            }
        }
    }
}

#[test]
fn a_cached_record_with_an_unusable_media_type_is_a_miss_not_a_500() {
    let (reg, digest, _) = image();
    let w = World::new(reg);
    let manifest = w.reg.manifests[&("team/app".to_owned(), "v1".to_owned())]
        .1
        .clone();
    // As an older door stored it: upstream's raw Content-Type, CR/LF and all.
    for bad in ["text/html", "application/json\r\nx-evil: 1"] {
        let record = frontdoor::cache::ManifestRecord {
            media_type: bad.into(),
            bytes: manifest.clone(),
        };
        let key = frontdoor::cache::keys::manifest(
            "reg.test",
            &frontdoor::oci::Repository::parse("team/app").unwrap(),
            &digest,
        );
        w.kv.map.borrow_mut().insert(
            key.clone(),
            Entry {
                value: record.encode(),
                read_day: Some(0),
            },
        );
        let before = w.reg.count(HttpMethod::Get, "/manifests/");
        let (r, outcome) = w.get(&format!("/v2/team/app/manifests/{digest}"));
        assert_eq!(r.status, 200, "{bad:?}");
        assert_eq!(outcome.cache, Some(CacheOutcome::Miss), "{bad:?}");
        assert_eq!(r.headers.get("content-type"), Some(MANIFEST));
        assert!(
            w.reg.count(HttpMethod::Get, "/manifests/") > before,
            "fetched again"
        );
        // Stored again, with the type it is served as: the next read is a hit.
        let (r, outcome) = w.get(&format!("/v2/team/app/manifests/{digest}"));
        assert_eq!((r.status, outcome.cache), (200, Some(CacheOutcome::Hit)));
    }
}

#[test]
fn every_answer_says_nosniff_and_runs_nothing() {
    let (reg, digest, layer) = image();
    let w = World::new(reg);
    for path in [
        "/v2/".to_owned(),
        "/v2/team/app/manifests/v1".to_owned(),
        format!("/v2/team/app/manifests/{digest}"),
        format!("/v2/team/app/blobs/{layer}"),
        "/v2/team/app/tags/list".to_owned(),
        "/v2/team/app/manifests/nope".to_owned(),
        "/v2/Bad/manifests/v1".to_owned(),
        "/token".to_owned(),
        "/nowhere".to_owned(),
    ] {
        let (r, _) = w.get(&path);
        assert_eq!(
            r.headers.get("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(
            r.headers.get("content-security-policy"),
            Some("default-src 'none'; frame-ancestors 'none'; sandbox"),
            "{path}"
        );
    }
}

#[test]
fn a_user_token_for_a_repository_the_user_may_never_pull_is_403_naming_the_user() {
    let (w, _, _) = access_world();
    // b asks /token for a private repository: the token grants nothing there.
    *w.authorization.borrow_mut() = Some(basic("b", "beta"));
    let token = w.door_token("repository:team/app:pull");
    w.bearer(&token);
    for method in ["GET", "HEAD"] {
        let (r, _) = w.request(method, "/v2/team/app/manifests/v1", None);
        assert_eq!(r.status, 403, "{method}");
        assert_eq!(
            r.headers.get("www-authenticate"),
            None,
            "no challenge: a token won't help"
        );
    }
    let (r, _) = w.get("/v2/team/app/manifests/v1");
    let v: serde_json::Value = serde_json::from_slice(&body(&r)).unwrap();
    assert_eq!(v["errors"][0]["code"], "DENIED");
    assert_eq!(
        v["errors"][0]["message"],
        "b may not pull reg.test/team/app"
    );
    // A's token for public/app lacks team/app, which a may pull: challenged, to fetch a new token.
    *w.authorization.borrow_mut() = Some(basic("a", "alpha"));
    let token = w.door_token("repository:public/app:pull");
    w.bearer(&token);
    let (r, _) = w.get("/v2/team/app/manifests/v1");
    assert_eq!(r.status, 401);
    assert!(r
        .headers
        .get("www-authenticate")
        .unwrap()
        .ends_with(r#"scope="repository:reg.test/team/app:pull""#));
    // Anonymous tokens are challenged as before.
    *w.authorization.borrow_mut() = None;
    let token = w.door_token("repository:team/app:pull");
    w.bearer(&token);
    assert_eq!(w.get("/v2/team/app/manifests/v1").0.status, 401);
}

#[test]
fn a_reference_that_is_no_tag_or_digest_names_no_manifest() {
    let (reg, _, _) = image();
    let w = World::new(reg);
    for (method, reference, want) in [
        ("GET", ".INVALID_MANIFEST_NAME", (404, "MANIFEST_UNKNOWN")),
        ("HEAD", ".INVALID_MANIFEST_NAME", (404, "")),
        ("GET", "-rc1", (404, "MANIFEST_UNKNOWN")),
        ("GET", &"a".repeat(129), (404, "MANIFEST_UNKNOWN")),
        // Digest-shaped: 400 DIGEST_INVALID (the conformance suite takes 400 or 404).
        ("GET", "sha256:zzz", (400, "DIGEST_INVALID")),
        ("GET", "sha256:totallywrong", (400, "DIGEST_INVALID")),
    ] {
        let (r, outcome) = w.request(method, &format!("/v2/team/app/manifests/{reference}"), None);
        let code = if method == "HEAD" {
            String::new()
        } else {
            error_code(&r)
        };
        assert_eq!((r.status, code.as_str()), want, "{method} {reference}");
        assert_eq!(outcome.upstream_calls, 0);
    }
    assert_eq!(w.reg.total(), 0, "nothing asked upstream");
}

/// An upstream without auth that answers tag lists unsorted, and HEAD on them with 405 (as
/// distribution does: its tags route has no HEAD).
struct UnsortedTags {
    log: RefCell<Vec<(HttpMethod, String)>>,
}

impl Upstream for UnsortedTags {
    type Body = Vec<u8>;
    async fn send(&self, req: OutboundRequest) -> Result<Fetched<Vec<u8>>, NetError> {
        self.log
            .borrow_mut()
            .push((req.method, req.url.to_string()));
        if req.method == HttpMethod::Head {
            return Ok(answer(405, &[("allow", "GET")], vec![]));
        }
        let body = br#"{"name":"team/app","tags":["v10","latest","v2","1.0","v1"]}"#.to_vec();
        let len = body.len().to_string();
        Ok(answer(
            200,
            &[
                ("content-type", "application/json"),
                ("content-length", &len),
            ],
            body,
        ))
    }
    async fn read(&self, body: Vec<u8>, limit: usize) -> Result<Vec<u8>, NetError> {
        if body.len() > limit {
            return Err(NetError::TooLarge);
        }
        Ok(body)
    }
}

fn unsorted_tags(method: &str, path_and_query: &str) -> (Reply<Vec<u8>>, usize) {
    let config = Config::load(|k| match k {
        "UPSTREAMS" => Some(r#"{"reg.test": {"url": "http://reg.test"}}"#.into()),
        "DEFAULT_REGISTRY" => Some("reg.test".into()),
        _ => None,
    })
    .unwrap();
    let up = UnsortedTags {
        log: RefCell::default(),
    };
    let (kv, blobs, tokens) = (MemKv::default(), MemBlobs::default(), RefCell::default());
    let door = Door {
        config: &config,
        kv: &kv,
        blobs: &blobs,
        upstream: &up,
        tokens: &tokens,
        health: &RefCell::default(),
        misses: Misses::<NoCoalescing<Vec<u8>>>::Here,
        now: 1_000_000,
    };
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let (reply, _) = block_on(door.handle(ClientRequest {
        line: RequestLine {
            method,
            host: Some("door.test"),
            path,
            query: Some(query).filter(|q| !q.is_empty()),
        },
        origin: Some("https://door.test"),
        ..ClientRequest::default()
    }));
    assert!(
        up.log.borrow().iter().all(|(m, _)| *m == HttpMethod::Get),
        "tag lists are read with GET"
    );
    let calls = up.log.borrow().len();
    (reply, calls)
}

#[test]
fn tag_lists_are_in_lexical_order_and_head_answers_like_get() {
    let (r, calls) = unsorted_tags("GET", "/v2/team/app/tags/list");
    assert_eq!((r.status, calls), (200, 1));
    let v: serde_json::Value = serde_json::from_slice(&body(&r)).unwrap();
    assert_eq!(
        v["tags"],
        serde_json::json!(["1.0", "latest", "v1", "v10", "v2"])
    );
    assert_eq!(v["name"], "team/app");
    let get_len = r.headers.get("content-length").unwrap().to_owned();
    assert_eq!(get_len, body(&r).len().to_string());
    let (r, _) = unsorted_tags("HEAD", "/v2/team/app/tags/list");
    assert_eq!(r.status, 200);
    assert_eq!(r.headers.get("content-length"), Some(get_len.as_str()));
    assert!(body(&r).is_empty());
    for q in ["last=v1", "n=2&last=latest", "n=1"] {
        let (get, _) = unsorted_tags("GET", &format!("/v2/team/app/tags/list?{q}"));
        let (head, _) = unsorted_tags("HEAD", &format!("/v2/team/app/tags/list?{q}"));
        assert_eq!((get.status, head.status), (200, 200), "{q}");
        assert!(body(&head).is_empty());
        assert_eq!(
            head.headers.get("content-length"),
            get.headers.get("content-length"),
            "{q}"
        );
        assert_eq!(head.headers.get("link"), get.headers.get("link"), "{q}");
    }
    let (r, _) = unsorted_tags("GET", "/v2/team/app/tags/list?last=v1");
    let v: serde_json::Value = serde_json::from_slice(&body(&r)).unwrap();
    assert_eq!(v["tags"], serde_json::json!(["v10", "v2"]));
    let (r, _) = unsorted_tags("GET", "/v2/team/app/tags/list?n=2&last=latest");
    let v: serde_json::Value = serde_json::from_slice(&body(&r)).unwrap();
    assert_eq!(v["tags"], serde_json::json!(["v1", "v10"]));
    assert_eq!(
        r.headers.get("link"),
        Some("</v2/team/app/tags/list?n=2&last=v10>; rel=\"next\"")
    );
}

#[test]
fn a_resolve_request_naming_too_many_images_is_refused_before_any_upstream_request() {
    let (reg, _, _) = image();
    let w = World::new(reg);
    let query = |n: usize| {
        (0..n)
            .map(|i| format!("image=team/app:v{i}"))
            .collect::<Vec<_>>()
            .join("&")
    };
    let limit = frontdoor::proxy::MAX_RESOLVE_IMAGES;
    assert_eq!(limit, 50);
    let (r, outcome) = w.get(&format!("/_frontdoor/resolve?{}", query(limit + 1)));
    assert_eq!((r.status, error_code(&r)), (400, "UNSUPPORTED".into()));
    let v: serde_json::Value = serde_json::from_slice(&body(&r)).unwrap();
    let message = v["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("at most 50 images") && message.contains("51"),
        "{message}"
    );
    assert_eq!((outcome.upstream_calls, w.reg.total()), (0, 0));
    let (r, _) = w.get(&format!("/_frontdoor/resolve?{}", query(300)));
    assert_eq!(r.status, 400);
    assert_eq!(w.reg.total(), 0, "300 images: not one upstream request");
    // At the limit, each is resolved.
    let (r, _) = w.get(&format!("/_frontdoor/resolve?{}", query(limit)));
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body(&r)).unwrap();
    assert_eq!(v["images"].as_array().unwrap().len(), limit);
    assert!(w.reg.total() > 0);
}

#[test]
fn a_tag_known_from_a_head_gets_its_manifest_from_the_digests_owner() {
    let (reg, digest, _) = image();
    let w = World::new(reg);
    w.request("HEAD", "/v2/team/app/manifests/v1", None);
    let owner = Owner {
        world: &w,
        request: ("GET".into(), "/v2/team/app/manifests/v1".into()),
        keys: RefCell::new(Vec::new()),
    };
    let (r, o) = w.request_via(Some(&owner), "GET", "/v2/team/app/manifests/v1", None);
    assert_eq!((r.status, o.coalesced), (200, true));
    let digest_s = digest.to_string();
    assert_eq!(
        r.headers.get("docker-content-digest"),
        Some(digest_s.as_str())
    );
    // The owner of the manifest's key, asked for it by digest (not sent the tag request), which
    // is exactly where a client asking by digest goes too.
    assert_eq!(
        owner.keys.into_inner(),
        [format!(
            "v1/manifests/reg.test/team/app/sha256/{} /v2/reg.test/team/app/manifests/{digest}",
            digest.hex()
        )]
    );
    assert_eq!(w.reg.count(HttpMethod::Get, "/manifests/"), 1);
    let (_, o) = w.get(&format!("/v2/team/app/manifests/{digest}"));
    assert_eq!(o.cache, Some(CacheOutcome::Hit));
}

/// The requests that carried the service account's Basic credentials, by URL.
fn basic_sent_to(w: &World) -> Vec<String> {
    let svc = basic("svc", "pw");
    w.reg
        .log
        .borrow()
        .iter()
        .filter(|(_, _, auth)| auth.as_deref() == Some(svc.as_str()))
        .map(|(_, url, _)| url.clone())
        .collect()
}

#[test]
fn a_realm_on_another_host_is_asked_without_credentials_unless_listed() {
    let (mut reg, _, _) = image();
    reg.realm = "http://evil.test/token";
    let w = World::new(reg);
    let (r, o) = w.get("/v2/team/app/manifests/v1");
    // The fake realm issues tokens only for the service account: anonymously, it refuses.
    assert_eq!((r.status, error_code(&r)), (403, "DENIED".into()));
    let realm_requests: Vec<_> = w
        .reg
        .log
        .borrow()
        .iter()
        .filter(|(_, u, _)| u.starts_with("http://evil.test/"))
        .map(|(_, _, auth)| auth.clone())
        .collect();
    assert_eq!(realm_requests, [None], "asked once, anonymously");
    assert_eq!(basic_sent_to(&w), Vec::<String>::new());
    let note = o
        .notes
        .iter()
        .find(|n| n.contains("token realm evil.test"))
        .unwrap_or_else(|| panic!("a note names the realm's host: {:?}", o.notes));
    assert!(note.contains("anonymously"), "{note}");
    let everything = format!("{:?}{}", o.notes, String::from_utf8_lossy(&body(&r)));
    assert!(
        !everything.contains(&basic("svc", "pw")[6..]),
        "{everything}"
    );
    assert!(!everything.contains("pw\""), "{everything}");

    // Listed in `auth_hosts`, the same realm gets the credentials and the pull works.
    let (mut reg, _, _) = image();
    reg.realm = "http://evil.test/token";
    let mut w = World::new(reg);
    w.config.upstreams.get_mut("reg.test").unwrap().auth_hosts = vec!["evil.test".into()];
    let (r, o) = w.get("/v2/team/app/manifests/v1");
    assert_eq!(r.status, 200, "{:?}", o.notes);
    assert_eq!(basic_sent_to(&w).len(), 1);
    assert!(basic_sent_to(&w)[0].starts_with("http://evil.test/token?"));
}

#[test]
fn a_challenge_from_a_redirect_target_is_neither_answered_nor_remembered() {
    let (mut reg, _, layer) = image();
    reg.redirect_blobs = true;
    // Same registrable domain as the registry: only the redirect makes it untrusted.
    reg.cdn_realm = Some("http://auth2.reg.test/token");
    let w = World::new(reg);
    let blob = format!("/v2/team/app/blobs/{layer}");
    for round in 0..2 {
        // Round 0: the 401 answers the retry that carried a fresh token; round 1: the first try,
        // with the token cached.
        let (r, o) = w.get(&blob);
        assert_eq!(
            (r.status, error_code(&r)),
            (403, "DENIED".into()),
            "{round}"
        );
        assert!(
            o.notes
                .iter()
                .any(|n| n.contains("401 from cdn.test") && n.contains("redirect")),
            "{round}: {:?}",
            o.notes
        );
        assert!(
            !w.reg
                .log
                .borrow()
                .iter()
                .any(|(_, u, _)| u.contains("auth2.reg.test")),
            "{round}: the redirect target's realm is never asked"
        );
        let realm = w
            .tokens
            .borrow()
            .realm("http://reg.test/")
            .cloned()
            .unwrap();
        assert_eq!(
            realm.realm, "http://auth.reg.test/token",
            "{round}: not remembered"
        );
    }
    assert!(basic_sent_to(&w)
        .iter()
        .all(|u| u.starts_with("http://auth.reg.test/token?")));
}

#[test]
fn challenges_name_the_public_url_whatever_host_the_client_sent() {
    let (reg, _, _) = image();
    let w = World::with(
        reg,
        &[
            ("ACCESS", r#"{"anonymous": []}"#),
            ("ACCESS_TOKEN_KEY", ACCESS_KEY),
            ("PUBLIC_URL", "https://door.example.com"),
        ],
    );
    // The world's requests come in as `https://door.test` (their Host header).
    for path in ["/v2/", "/v2/team/app/manifests/v1"] {
        let (r, _) = w.get(path);
        assert_eq!(r.status, 401, "{path}");
        let challenge = r.headers.get("www-authenticate").unwrap();
        assert!(
            challenge.starts_with(
                r#"Bearer realm="https://door.example.com/token",service="door.example.com""#
            ),
            "{challenge}"
        );
    }
}

#[test]
fn a_tag_deleted_upstream_or_revoked_credentials_keep_the_cached_copy_when_opted_in() {
    for (extra, status, password, kept) in [
        ("", Some(404), "pw", false),
        (r#", "serve_stale_on": [404]"#, Some(404), "pw", true),
        (r#", "serve_stale_on": [404]"#, None, "revoked", false),
        (r#", "serve_stale_on": [401, 404]"#, None, "revoked", true),
    ] {
        let (mut reg, digest, _) = image();
        reg.config_extra = extra;
        let mut w = World::new(reg);
        let (fresh, _) = w.get("/v2/team/app/manifests/v1");
        w.now.set(w.now.get() + TTL + 1);
        w.reg.status.set(status);
        w.reg.password = password.into();
        let (r, o) = w.get("/v2/team/app/manifests/v1");
        let case = format!("{extra} {status:?} {password}");
        if kept {
            assert_eq!(
                (r.status, o.cache),
                (200, Some(CacheOutcome::Stale)),
                "{case}"
            );
            assert_eq!(body(&r), body(&fresh));
            let digest_s = digest.to_string();
            assert_eq!(
                r.headers.get("docker-content-digest"),
                Some(digest_s.as_str())
            );
            assert!(
                o.notes.iter().any(|n| n.contains("serve_stale_on")),
                "{:?}",
                o.notes
            );
            // Kept for another TTL: the next pull asks nobody.
            let (_, o) = w.get("/v2/team/app/manifests/v1");
            assert_eq!(
                (o.cache, o.upstream_calls),
                (Some(CacheOutcome::Hit), 0),
                "{case}"
            );
        } else {
            assert_ne!(r.status, 200, "{case}");
        }
    }
}

#[test]
fn with_upstream_down_the_worker_serves_stale_itself_instead_of_queueing_at_the_owner() {
    let (reg, _, _) = image();
    let w = World::new(reg);
    w.get("/v2/team/app/manifests/v1");
    w.now.set(w.now.get() + TTL + 1);
    w.reg.down.set(true);
    let via_owner = || {
        let owner = Owner {
            world: &w,
            request: ("GET".into(), "/v2/team/app/manifests/v1".into()),
            keys: RefCell::new(Vec::new()),
        };
        let (r, o) = w.request_via(Some(&owner), "GET", "/v2/team/app/manifests/v1", None);
        (r, o, owner.keys.into_inner())
    };
    // The first goes to the owner, which finds upstream down and says so in its answer.
    let (r, o, keys) = via_owner();
    assert_eq!((r.status, o.cache), (200, Some(CacheOutcome::Stale)));
    assert_eq!(keys.len(), 1);
    assert_eq!(r.headers.get("x-frontdoor-upstream-down"), Some("10"));
    // The next ones are served stale by the worker at once: no owner, no upstream.
    for _ in 0..5 {
        let (r, o, keys) = via_owner();
        assert_eq!(
            (r.status, o.cache, o.upstream_calls),
            (200, Some(CacheOutcome::Stale), 0)
        );
        assert!(keys.is_empty(), "handed to the owner: {keys:?}");
    }
}

/// A warm pull of a tag inside its TTL is one KV read: the tag's record carries the manifest
/// (`INLINE_MANIFEST_BYTES`), for a GET and a HEAD alike, and nothing else is read or written.
#[test]
fn warm_tag_pull_is_one_kv_read() {
    let (reg, digest, _) = image();
    let w = World::new(reg);
    let (cold, _) = w.get("/v2/team/app/manifests/v1");
    assert_eq!(cold.status, 200);
    let upstream = w.reg.total();
    for method in ["GET", "HEAD", "GET"] {
        let (gets, puts) = (w.kv.gets.get(), w.kv.puts.get());
        let (r, o) = w.request(method, "/v2/team/app/manifests/v1", None);
        assert_eq!(
            (r.status, o.cache),
            (200, Some(CacheOutcome::Hit)),
            "{method}"
        );
        assert_eq!(w.kv.gets.get() - gets, 1, "{method}: one KV read");
        assert_eq!(w.kv.puts.get() - puts, 0, "{method}: no KV write");
        assert_eq!(
            r.headers.get("docker-content-digest"),
            Some(digest.to_string().as_str())
        );
        assert_eq!(r.headers.get("content-type"), Some(MANIFEST));
        assert_eq!(
            r.headers.get("content-length"),
            Some(body(&cold).len().to_string().as_str())
        );
        let want = if method == "GET" { body(&cold) } else { vec![] };
        assert_eq!(body(&r), want, "{method}: the exact bytes");
    }
    assert_eq!(w.reg.total(), upstream, "nothing asked upstream");
}

/// Tag records written before they carried manifests are still served, by digest (two reads).
#[test]
fn old_tag_records_are_served_by_digest() {
    let (reg, digest, _) = image();
    let w = World::new(reg);
    let (cold, _) = w.get("/v2/team/app/manifests/v1");
    let key = "v1/tags/reg.test/team/app/v1";
    let old = format!(
        r#"{{"digest":"{digest}","fetched_at":{},"mediaType":"{MANIFEST}","size":{}}}"#,
        w.now.get(),
        body(&cold).len()
    );
    w.kv.map.borrow_mut().get_mut(key).unwrap().value = old.into_bytes();
    let upstream = w.reg.total();
    let gets = w.kv.gets.get();
    let (r, o) = w.get("/v2/team/app/manifests/v1");
    assert_eq!((r.status, o.cache), (200, Some(CacheOutcome::Hit)));
    assert_eq!(body(&r), body(&cold));
    assert_eq!(w.kv.gets.get() - gets, 2, "the pointer, then the manifest");
    // The oldest records name the digest only.
    let oldest = format!(r#"{{"digest":"{digest}","fetched_at":{}}}"#, w.now.get());
    w.kv.map.borrow_mut().get_mut(key).unwrap().value = oldest.into_bytes();
    let (r, o) = w.request("HEAD", "/v2/team/app/manifests/v1", None);
    assert_eq!((r.status, o.cache), (200, Some(CacheOutcome::Hit)));
    assert_eq!(r.headers.get("content-type"), Some(MANIFEST));
    assert_eq!(w.reg.total(), upstream, "nothing asked upstream");
}

/// A tag whose manifest is above the inline limit keeps a small pointer and is served in two
/// reads; a record whose carried bytes no longer match its digest falls back the same way.
#[test]
fn large_or_corrupt_inline_manifests_are_read_by_digest() {
    let mut reg = FakeRegistry::new();
    let pad = "x".repeat(frontdoor::cache::INLINE_MANIFEST_BYTES);
    let manifest =
        format!(r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","layers":[],"pad":"{pad}"}}"#);
    let digest = reg.add_manifest("team/app", "big", MANIFEST, manifest.as_bytes());
    let small = reg.add_manifest("team/app", "v1", MANIFEST, br#"{"schemaVersion":2}"#);
    let w = World::new(reg);
    assert_eq!(w.get("/v2/team/app/manifests/big").0.status, 200);
    let pointer = w.kv.map.borrow()["v1/tags/reg.test/team/app/big"]
        .value
        .clone();
    assert!(pointer.len() < 1024, "the pointer names the digest only");
    let upstream = w.reg.total();
    let gets = w.kv.gets.get();
    let (r, o) = w.get("/v2/team/app/manifests/big");
    assert_eq!((r.status, o.cache), (200, Some(CacheOutcome::Hit)));
    assert_eq!(body(&r), manifest.as_bytes());
    assert_eq!(w.kv.gets.get() - gets, 2, "the pointer, then the manifest");
    assert_eq!(
        r.headers.get("docker-content-digest"),
        Some(digest.to_string().as_str())
    );

    assert_eq!(w.get("/v2/team/app/manifests/v1").0.status, 200);
    let key = "v1/tags/reg.test/team/app/v1";
    w.kv.map.borrow_mut().get_mut(key).unwrap().value.push(b' ');
    let gets = w.kv.gets.get();
    let (r, o) = w.get("/v2/team/app/manifests/v1");
    assert_eq!((r.status, o.cache), (200, Some(CacheOutcome::Hit)));
    assert_eq!(
        body(&r),
        br#"{"schemaVersion":2}"#,
        "never the corrupt bytes"
    );
    assert_eq!(w.kv.gets.get() - gets, 2);
    assert_eq!(
        r.headers.get("docker-content-digest"),
        Some(small.to_string().as_str())
    );
    assert_eq!(
        w.reg.total(),
        upstream + 1,
        "only v1's first pull went upstream"
    );
}

/// A tag revalidated past its TTL keeps its one-read warm pull: unchanged (by a GET or a HEAD)
/// the pointer keeps carrying the manifest; moved, it carries the new one.
#[test]
fn revalidated_tags_stay_one_kv_read() {
    let (reg, _, _) = image();
    let mut w = World::new(reg);
    let warm_reads = |w: &World| {
        let gets = w.kv.gets.get();
        let (r, o) = w.get("/v2/team/app/manifests/v1");
        assert_eq!((r.status, o.cache), (200, Some(CacheOutcome::Hit)));
        (w.kv.gets.get() - gets, body(&r))
    };
    let (cold, _) = w.get("/v2/team/app/manifests/v1");
    for method in ["GET", "HEAD"] {
        w.now.set(w.now.get() + TTL + 1);
        let (r, o) = w.request(method, "/v2/team/app/manifests/v1", None);
        assert_eq!((r.status, o.cache), (200, Some(CacheOutcome::Revalidated)));
        assert_eq!(warm_reads(&w), (1, body(&cold)), "after a {method}");
    }
    let moved = b"{\"schemaVersion\":2,\"moved\":true}";
    w.reg.add_manifest("team/app", "v1", MANIFEST, moved);
    w.now.set(w.now.get() + TTL + 1);
    let (r, o) = w.get("/v2/team/app/manifests/v1");
    assert_eq!((r.status, o.cache), (200, Some(CacheOutcome::Miss)));
    assert_eq!(warm_reads(&w), (1, moved.to_vec()));
}
