//! Minted cloud credentials through the door's core (in-memory ports): a registry that stops
//! taking the current ECR token costs one refresh and one retry; a registry that refuses every
//! token costs at most one mint per request and never loops; credentials go only as Basic
//! `AWS:<password>` to the registry, and the minting call is a signed `POST`.

use base64::Engine as _;
use frontdoor::config::Config;
use frontdoor::oci::Digest;
use frontdoor::ports::*;
use frontdoor::proxy::{Body, ClientRequest, Door, Misses, Reply};
use frontdoor::route::RequestLine;
use frontdoor::upstream::health::Health;
use frontdoor::upstream::token::TokenCache;
use futures::executor::block_on;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

#[derive(Default)]
struct MemKv(RefCell<BTreeMap<String, Vec<u8>>>);

impl Kv for MemKv {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        Ok(self.0.borrow().get(key).map(|v| Entry {
            value: v.clone(),
            read_day: Some(0),
        }))
    }
    async fn put(&self, key: &str, value: Vec<u8>, _: u64) -> Result<(), StoreError> {
        self.0.borrow_mut().insert(key.into(), value);
        Ok(())
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.0.borrow_mut().remove(key);
        Ok(())
    }
    async fn list(&self, _: &str, _: Option<&str>, _: u32) -> Result<Page, StoreError> {
        Ok(Page::default())
    }
}

/// Manifests only: the blob store is never reached.
struct NoBlobs;

impl Blobs for NoBlobs {
    type Body = Vec<u8>;
    async fn stat(&self, _: &str) -> Result<Option<Stored>, StoreError> {
        unreachable!("manifests only")
    }
    async fn get(
        &self,
        _: &str,
        _: Option<(u64, u64)>,
    ) -> Result<Option<(Stored, Vec<u8>)>, StoreError> {
        unreachable!("manifests only")
    }
    fn fill(&self, _: &str, b: Vec<u8>, _: u64, _: &Digest, _: &[String]) -> Vec<u8> {
        b
    }
    fn verify(&self, b: Vec<u8>, _: Option<u64>, _: &Digest) -> Vec<u8> {
        b
    }
    fn pieces(&self, _: &str, _: Vec<Piece>, _: u64) -> Vec<u8> {
        unreachable!("manifests only")
    }
    fn discard(&self, _: Vec<u8>) {}
    async fn delete(&self, _: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

/// ECR's API (`https://api.test`) and a registry (`https://reg.test`) taking Basic
/// `AWS:<password>` for the passwords in `accepted`.
#[derive(Default)]
struct Ecr {
    mints: Cell<u32>,
    accepted: RefCell<Vec<String>>,
    /// Accept only the newest password (the others were revoked).
    newest_only: Cell<bool>,
    refuse_all: Cell<bool>,
    registry_requests: Cell<u32>,
    now: Cell<u64>,
}

fn answer(status: u16, headers: &[(&str, &str)], body: Vec<u8>) -> Fetched<Vec<u8>> {
    let mut h = Headers::new();
    for (n, v) in headers {
        h.set(n, *v);
    }
    Fetched {
        status,
        headers: h,
        body,
    }
}

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const ACCEPT_ALL: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

fn manifest(n: u32) -> (Vec<u8>, String) {
    let body = format!(r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{n:064x}","size":{n}}},"layers":[]}}"#).into_bytes();
    let digest = format!("sha256:{}", hex_sha256(&body));
    (body, digest)
}

fn hex_sha256(b: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(b))
}

impl Upstream for Ecr {
    type Body = Vec<u8>;
    async fn send(&self, req: OutboundRequest) -> Result<Fetched<Vec<u8>>, NetError> {
        let url = req.url.as_str().to_owned();
        if url == "https://api.test/" {
            assert_eq!(req.method, HttpMethod::Post);
            assert_eq!(req.body.as_deref(), Some(&b"{}"[..]));
            let auth = req.headers.get("authorization").unwrap();
            assert!(
                auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIATEST/"),
                "{auth}"
            );
            self.mints.set(self.mints.get() + 1);
            let password = format!("token-{}", self.mints.get());
            self.accepted.borrow_mut().push(password.clone());
            let token = base64::engine::general_purpose::STANDARD.encode(format!("AWS:{password}"));
            let body = format!(
                r#"{{"authorizationData":[{{"authorizationToken":"{token}","expiresAt":{}}}]}}"#,
                self.now.get() + 100
            );
            return Ok(answer(200, &[], body.into_bytes()));
        }
        if url.starts_with("https://s3.test/") {
            // A redirect's target that refuses: not the registry refusing the credential.
            assert!(req.headers.get("authorization").is_none());
            return Ok(answer(403, &[], b"AccessDenied".to_vec()));
        }
        assert!(
            url.starts_with("https://reg.test/v2/app/manifests/"),
            "{url}"
        );
        self.registry_requests.set(self.registry_requests.get() + 1);
        let challenge = [(
            "www-authenticate",
            r#"Basic realm="https://reg.test/",service="ecr.amazonaws.com""#,
        )];
        let given = req
            .headers
            .get("authorization")
            .and_then(|a| a.strip_prefix("Basic "))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .and_then(|b| String::from_utf8(b).ok());
        let accepted = self.accepted.borrow();
        let ok = match given.as_deref().and_then(|g| g.strip_prefix("AWS:")) {
            _ if self.refuse_all.get() => false,
            Some(p) if self.newest_only.get() => accepted.last().map(String::as_str) == Some(p),
            Some(p) => accepted.iter().any(|a| a == p),
            None => false,
        };
        if !ok {
            return Ok(answer(401, &challenge, b"{}".to_vec()));
        }
        let n: u32 = url.rsplit('/').next().unwrap().parse().unwrap_or(0);
        if n == 99 {
            return Ok(answer(
                307,
                &[("location", "https://s3.test/layer?X-Amz-Signature=x")],
                vec![],
            ));
        }
        let (body, digest) = manifest(n);
        let len = body.len().to_string();
        Ok(answer(
            200,
            &[
                ("content-type", MANIFEST),
                ("docker-content-digest", &digest),
                ("content-length", &len),
            ],
            body,
        ))
    }
    async fn read(&self, body: Vec<u8>, _: usize) -> Result<Vec<u8>, NetError> {
        Ok(body)
    }
}

struct World {
    config: Config,
    kv: MemKv,
    ecr: Ecr,
    tokens: RefCell<TokenCache>,
    health: RefCell<Health>,
}

impl World {
    fn new() -> World {
        let config = Config::load(|k| match k {
            "UPSTREAMS" => Some(r#"{"r.test": {"url": "https://reg.test", "aws": {"access_key_id": "AKIATEST", "secret_access_key_secret": "S", "region": "us-east-1", "endpoint": "https://api.test"}}}"#.into()),
            "DEFAULT_REGISTRY" => Some("r.test".into()),
            "TAG_TTL_SECONDS" => Some("0".into()),
            "S" => Some("the-secret".into()),
            _ => None,
        })
        .unwrap();
        World {
            config,
            kv: MemKv::default(),
            ecr: Ecr::default(),
            tokens: RefCell::default(),
            health: RefCell::default(),
        }
    }

    /// `GET /v2/app/manifests/<n>` (a tag per request, so each one goes upstream) at `now`.
    fn pull(&self, n: u32, now: u64) -> Reply<Vec<u8>> {
        self.ecr.now.set(now);
        let door = Door::<_, _, _, NoCoalescing<Vec<u8>>> {
            config: &self.config,
            kv: &self.kv,
            blobs: &NoBlobs,
            upstream: &self.ecr,
            tokens: &self.tokens,
            health: &self.health,
            misses: Misses::Here,
            now,
        };
        let path = format!("/v2/app/manifests/{n}");
        block_on(door.handle(ClientRequest {
            line: RequestLine {
                method: "GET",
                host: Some("door.test"),
                path: &path,
                query: None,
            },
            accept: Some(ACCEPT_ALL),
            ..ClientRequest::default()
        }))
        .0
    }
}

fn code(r: &Reply<Vec<u8>>) -> String {
    match &r.body {
        Body::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    }
}

#[test]
fn a_refused_token_costs_one_refresh_and_one_retry_never_a_loop() {
    let w = World::new();
    assert_eq!(w.pull(1, 1000).status, 200);
    assert_eq!(w.ecr.mints.get(), 1);
    // Basic is sent at once from then on: one registry request per pull.
    let before = w.ecr.registry_requests.get();
    assert_eq!(w.pull(2, 1001).status, 200);
    assert_eq!(
        (w.ecr.mints.get(), w.ecr.registry_requests.get() - before),
        (1, 1)
    );

    // The registry stops taking token-1 (only a newer one will do): one refresh, one retry.
    w.ecr.newest_only.set(true);
    w.ecr.accepted.borrow_mut().push("something-newer".into());
    assert_eq!(w.pull(3, 1005).status, 200);
    assert_eq!(w.ecr.mints.get(), 2);

    // A registry refusing every token: one refresh per request, then the refusal is the answer.
    w.ecr.refuse_all.set(true);
    let r = w.pull(4, 1010);
    assert_eq!(r.status, 403, "{}", code(&r));
    assert!(code(&r).contains("DENIED"));
    assert_eq!(w.ecr.mints.get(), 3);
    let requests = w.ecr.registry_requests.get();
    // Right after that mint, a refusal mints nothing more.
    assert_eq!(w.pull(5, 1010).status, 403);
    assert_eq!(w.ecr.mints.get(), 3);
    assert!(w.ecr.registry_requests.get() - requests <= 2);
    // A 403 from where the registry redirected to is not the registry refusing: no mint.
    w.ecr.refuse_all.set(false);
    w.ecr.newest_only.set(false);
    let mints = w.ecr.mints.get();
    assert_eq!(w.pull(99, 1012).status, 403);
    assert_eq!(w.ecr.mints.get(), mints);
    // Nothing secret in the answer.
    assert!(!code(&r).contains("token-") && !code(&r).contains("the-secret"));
}

#[test]
fn the_credential_is_refreshed_at_three_quarters_of_its_life_and_persisted() {
    let w = World::new();
    for t in 1000..1200 {
        assert_eq!(w.pull(t as u32, t).status, 200, "at {t}");
    }
    // 100-second tokens, refreshed every 75 s: at 1000, 1075, 1150.
    assert_eq!(w.ecr.mints.get(), 3);
    // Another isolate (its own memory) on the same KV mints nothing.
    let other = RefCell::new(TokenCache::default());
    std::mem::swap(&mut *w.tokens.borrow_mut(), &mut *other.borrow_mut());
    assert_eq!(w.pull(7, 1201).status, 200);
    assert_eq!(w.ecr.mints.get(), 3);
}
