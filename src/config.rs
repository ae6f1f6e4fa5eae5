//! Typed settings, read once from a lookup function (worker vars and secrets, or a map in tests) and
//! validated before any request is served.
//!
//! | setting            | meaning                                                                  |
//! |--------------------|--------------------------------------------------------------------------|
//! | `UPSTREAMS`        | JSON: registry name → `{"url", "username"?, "password_secret"?, "aws"?, "google"?, "auth_hosts"?, "fallback"?}` (`aws`/`google`: see [`crate::upstream::cloud`]) |
//! | `DEFAULT_REGISTRY` | registry for names with no registry prefix (default `docker.io`)         |
//! | `TAG_TTL_SECONDS`  | how long a tag → digest answer is trusted without asking upstream (300)  |
//! | `NEGATIVE_TTL_SECONDS` | how long an upstream 404 for a manifest is remembered (60)           |
//! | `UPSTREAM_TIMEOUT_SECONDS` | how long to wait for an upstream's answer (15)                   |
//! | `UPSTREAM_IDLE_TIMEOUT_SECONDS` | the longest silence inside an upstream body, 1 to 300 (20); see [`crate::watchdog`] |
//! | `BLOB_REDIRECT`    | `off` \| `s3` \| `self`: how blob reads that R2 holds are answered (off)   |
//! | `REDIRECT_TTL_SECONDS` | how long a redirect URL is valid, 1 s to 7 days (300)              |
//! | `R2_S3_ENDPOINT`, `R2_BUCKET`, `R2_ACCESS_KEY_ID`*, `R2_SECRET_ACCESS_KEY`* | for `s3` |
//! | `URL_SIGNING_KEY`* | for `self`: HMAC key of the door's own `/_blob/` URLs, ≥ 32 bytes      |
//! | `MULTIPART_THRESHOLD_BYTES`, `MULTIPART_PART_BYTES` | blobs above the threshold (R2's single-put limit) are filled in parts of this size (32 MiB) |
//! | `ACCESS`, `ACCESS_TOKEN_KEY`* | who may pull what; see [`crate::access`] (default: everyone)   |
//! | `PINS`             | JSON: `<registry>/<repository>:<tag>` → digest the door serves for it  |
//! | `DENY_LATEST`      | `true`: refuse manifests by the `latest` tag (false)                  |
//! | `DENY`, `IMMUTABLE_TAGS`, `VERIFY` | known-bad digests, tags kept at their first digest, keys manifests must be signed by; see [`crate::policy`] |
//! | `PREWARM`, `ADMIN_TOKEN`* | images the cron trigger pulls into the cache; the admin endpoint's token |
//! | `HOSTS`            | JSON: hostname the door is reached at → registry name (optional)         |
//! | `PUBLIC_URL`       | the door's own origin (`https://door.example.com`), named in its challenges |
//! | `RETENTION_DAYS`   | the cron trigger deletes what was not read for this many days; 0: never (30) |
//! | `RETENTION_BATCH`  | keys the retention sweep looks at per cron run, 1 to 1000 (300)         |
//!
//! (* a secret.) `password_secret` names *another* binding (a wrangler secret) that holds the password or token, so
//! the JSON itself never carries a secret. A bad setting is an error that names it; there is no
//! silent fallback. An error never repeats a value that could hold a secret: a URL with
//! credentials in it is refused without being quoted, and JSON errors lose their quoted input.

use crate::access::Access;
use crate::cache::multipart;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use url::Url;

/// What the door does when `UPSTREAMS` is not set at all: mirror Docker Hub anonymously.
pub const DEFAULT_UPSTREAMS: &str = r#"{"docker.io": {"url": "https://registry-1.docker.io"}}"#;
const DEFAULT_TAG_TTL: u64 = 300;
const DEFAULT_NEGATIVE_TTL: u64 = 60;
const DEFAULT_UPSTREAM_TIMEOUT: u64 = 15;
const DEFAULT_REDIRECT_TTL: u64 = 300;
const DEFAULT_UPSTREAM_BACKOFF: u64 = 10;
/// Back-offs double up to 8× the setting: 10 minutes here is over an hour there.
const MAX_UPSTREAM_BACKOFF: u64 = 600;
const DEFAULT_RETENTION_DAYS: u64 = 30;
const DEFAULT_RETENTION_BATCH: u64 = 300;

/// Docker Hub's name as clients write it; one-component names there live under `library/`.
pub const DOCKER_HUB: &str = "docker.io";

#[derive(Debug, Clone)]
pub struct Config {
    /// Keyed by the registry name as clients write it.
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    pub default_registry: String,
    pub tag_ttl_seconds: u64,
    /// How long an upstream 404 for a manifest is remembered.
    pub negative_ttl_seconds: u64,
    /// How long to wait for an upstream's answer (its headers) before giving up on it.
    pub upstream_timeout_seconds: u64,
    /// `UPSTREAM_BACKOFF_SECONDS`: after an outage, how long an upstream is left alone before one
    /// probe checks whether it is back (see `crate::upstream::health`); 0 turns it off.
    pub upstream_backoff_seconds: u64,
    /// Hostname (lowercase, no port) → registry name, for one-hostname-per-registry deployments.
    pub hosts: BTreeMap<String, String>,
    /// How blob reads that R2 already holds are answered.
    pub blob_redirect: BlobRedirect,
    pub redirect_ttl_seconds: u64,
    /// Blobs larger than this are filled with a multipart upload of `multipart_part_bytes` parts.
    pub multipart_threshold_bytes: u64,
    pub multipart_part_bytes: u64,
    /// Who may pull what (`ACCESS`, default: everyone everything).
    pub access: Access,
    /// `PINS`: `<registry>/<repository>:<tag>` → the digest the door serves for it, whatever
    /// upstream says.
    pub pins: BTreeMap<String, crate::oci::Digest>,
    /// `DENY_LATEST`: refuse manifests by the `latest` tag.
    pub deny_latest: bool,
    /// `DENY`, `IMMUTABLE_TAGS`, `VERIFY`: see [`crate::policy`].
    pub policy: crate::policy::Policy,
    /// `PREWARM`: images the cron trigger (and `POST /_frontdoor/prewarm`) pull into the cache.
    pub prewarm: Vec<String>,
    /// `ADMIN_TOKEN` (a secret): the bearer token of the admin endpoints. Redacted in `Debug`.
    pub admin_token: Option<SigningKey>,
    /// `RETENTION_DAYS`: records and blobs not read for longer are deleted; 0 keeps everything.
    pub retention_days: u64,
    /// `RETENTION_BATCH`: how many keys one cron run of the sweep looks at (one KV list page).
    pub retention_batch: u32,

    // Upstream bodies (see `crate::watchdog`).
    /// `UPSTREAM_IDLE_TIMEOUT_SECONDS`: an upstream body that sends no byte for this long is
    /// aborted (nothing stored; the client's stream errors, or a cached manifest is served).
    pub upstream_idle_timeout_seconds: u64,
    /// `PUBLIC_URL`: the door's own origin (no path), which its `WWW-Authenticate` challenges
    /// name whatever `Host` a client sent. `None`: the origin the request came in on.
    pub public_url: Option<Url>,
}

/// `BLOB_REDIRECT`: stream blobs through the worker, or send the client to storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobRedirect {
    /// Stream from R2 through the worker.
    Off,
    /// 307 to a SigV4-presigned GET on R2's S3 endpoint.
    S3(S3Access),
    /// 307 to the door's own `/_blob/…` URL, HMAC-signed with an expiry.
    SelfSigned(SigningKey),
}

/// R2's S3 API: where the bucket is and the access key to presign with. `Debug` redacts the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Access {
    pub endpoint: Url,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl fmt::Debug for S3Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Access")
            .field("endpoint", &self.endpoint.as_str())
            .field("bucket", &self.bucket)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// The key of the door's self-signed blob URLs. `Debug` redacts it.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(pub Vec<u8>);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// The registry's name as clients write it (`docker.io`, `ghcr.io`, `127.0.0.1:5000`).
    pub name: String,
    /// Base URL without a trailing slash, e.g. `https://registry-1.docker.io`.
    pub url: Url,
    pub credentials: Option<Credentials>,
    /// Hosts besides the upstream's own and its registrable domain whose token realms get the
    /// service account's credentials (see [`crate::upstream::realm`]), as `host_str` writes them.
    pub auth_hosts: Vec<String>,
    /// Tried in order when this upstream answers 429 or 5xx or cannot be reached; content from
    /// them is verified exactly like the primary's.
    pub fallbacks: Vec<UpstreamConfig>,
    /// `serve_stale_on` (opt-in): when revalidating a tag the door holds a copy of, these upstream
    /// answers (`404`: the tag was deleted; `401`/`403`: the mirror's credentials were revoked)
    /// keep serving that copy, marked stale, instead of failing the pull.
    pub serve_stale_on: Vec<u16>,
    /// `aws` / `google`: credentials minted from a cloud service account instead of a fixed
    /// password (see [`crate::upstream::cloud`]).
    pub cloud: Option<crate::upstream::cloud::CloudAuth>,
}

impl UpstreamConfig {
    /// Whether one-component names get Docker Hub's implicit `library/` namespace.
    pub fn implicit_library(&self) -> bool {
        self.name == DOCKER_HUB
    }
}

/// A service account. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A setting that cannot be used, with the setting's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub setting: String,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "configuration {}: {}", self.setting, self.problem)
    }
}

fn bad(setting: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        setting: setting.into(),
        problem: problem.into(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    url: String,
    username: Option<String>,
    password_secret: Option<String>,
    /// Extra hosts whose token realms may get the credentials.
    #[serde(default)]
    auth_hosts: Vec<String>,
    /// Mirrors tried in order when this one answers 429 or 5xx (not allowed inside a fallback).
    #[serde(default)]
    fallback: Vec<RawUpstream>,
    /// Upstream answers (401, 403, 404) to a stale tag that keep its cached copy in service.
    #[serde(default)]
    serve_stale_on: Vec<u16>,
    /// ECR: IAM keys that mint the registry's password (see `crate::upstream::cloud::ecr`).
    aws: Option<crate::upstream::cloud::RawAws>,
    /// GAR/GCR: a service account key that mints access tokens (`crate::upstream::cloud::google`).
    google: Option<crate::upstream::cloud::RawGoogle>,
}

/// Builds one upstream (or fallback) from its raw form; `setting` names it in errors.
fn upstream_from(
    name: &str,
    r: RawUpstream,
    setting: &str,
    lookup: &impl Fn(&str) -> Option<String>,
    nested: bool,
) -> Result<UpstreamConfig, ConfigError> {
    let url = parse_url(&r.url).map_err(|p| bad(format!("{setting}.url"), p))?;
    let mut auth_hosts = Vec::new();
    for (i, host) in r.auth_hosts.iter().enumerate() {
        let host = crate::upstream::realm::normalize_host(host).ok_or_else(|| {
            bad(
                format!("{setting}.auth_hosts[{i}]"),
                "must be a bare hostname or IP address: no scheme, port, path or credentials",
            )
        })?;
        auth_hosts.push(host);
    }
    let credentials = match (r.username, r.password_secret) {
        (None, None) => None,
        (Some(username), Some(secret)) => {
            let password = lookup(&secret).filter(|p| !p.is_empty()).ok_or_else(|| {
                bad(
                    format!("{setting}.password_secret"),
                    format!("names the secret {secret}, which is not set"),
                )
            })?;
            Some(Credentials { username, password })
        }
        (Some(_), None) => return Err(bad(setting, "username is set but password_secret is not")),
        (None, Some(_)) => return Err(bad(setting, "password_secret is set but username is not")),
    };
    let cloud = crate::upstream::cloud::from_raw(r.aws, r.google, setting, lookup)
        .map_err(|(setting, problem)| bad(setting, problem))?;
    if cloud.is_some() && credentials.is_some() {
        return Err(bad(
            setting,
            "has username/password_secret and cloud credentials (aws or google); use one",
        ));
    }
    if nested && !r.fallback.is_empty() {
        return Err(bad(setting, "a fallback cannot have fallbacks of its own"));
    }
    if let Some(s) = r
        .serve_stale_on
        .iter()
        .find(|s| !matches!(s, 401 | 403 | 404))
    {
        return Err(bad(
            format!("{setting}.serve_stale_on"),
            format!("{s} is not one of 401, 403, 404"),
        ));
    }
    let mut fallbacks = Vec::new();
    for (i, f) in r.fallback.into_iter().enumerate() {
        fallbacks.push(upstream_from(
            name,
            f,
            &format!("{setting}.fallback[{i}]"),
            lookup,
            true,
        )?);
    }
    Ok(UpstreamConfig {
        name: name.to_owned(),
        url,
        credentials,
        auth_hosts,
        fallbacks,
        serve_stale_on: r.serve_stale_on,
        cloud,
    })
}

impl Config {
    /// Reads every setting through `lookup` (binding name → value) and validates it.
    pub fn load(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let raw_json = lookup("UPSTREAMS").unwrap_or_else(|| DEFAULT_UPSTREAMS.to_owned());
        let raw: BTreeMap<String, RawUpstream> = serde_json::from_str(&raw_json).map_err(|e| {
            bad(
                "UPSTREAMS",
                format!("not a JSON object of registries: {}", json_problem(&e)),
            )
        })?;
        if raw.is_empty() {
            return Err(bad("UPSTREAMS", "names no registry"));
        }
        let mut upstreams = BTreeMap::new();
        for (name, r) in raw {
            if name.contains('@') {
                // Likely `user:password@host`: refused without being repeated.
                return Err(bad(
                    "UPSTREAMS",
                    "a registry name contains '@'; credentials belong in a secret named by password_secret",
                ));
            }
            let setting = format!("UPSTREAMS[{name:?}]");
            if name.is_empty() || name.contains('/') || name.chars().any(char::is_whitespace) {
                return Err(bad(setting, "registry name must be a host[:port]"));
            }
            let upstream = upstream_from(&name, r, &setting, &lookup, false)?;
            upstreams.insert(name, upstream);
        }

        let default_registry = lookup("DEFAULT_REGISTRY").unwrap_or_else(|| DOCKER_HUB.into());
        if !upstreams.contains_key(&default_registry) {
            return Err(bad(
                "DEFAULT_REGISTRY",
                format!("{default_registry:?} is not a key of UPSTREAMS"),
            ));
        }

        let seconds = |setting: &str, default: u64| match lookup(setting) {
            None => Ok(default),
            Some(s) => s
                .trim()
                .parse()
                .map_err(|_| bad(setting, format!("{s:?} is not a whole number of seconds"))),
        };
        let tag_ttl_seconds = seconds("TAG_TTL_SECONDS", DEFAULT_TAG_TTL)?;
        let negative_ttl_seconds = seconds("NEGATIVE_TTL_SECONDS", DEFAULT_NEGATIVE_TTL)?;
        let upstream_timeout_seconds =
            seconds("UPSTREAM_TIMEOUT_SECONDS", DEFAULT_UPSTREAM_TIMEOUT)?;
        if upstream_timeout_seconds == 0 {
            return Err(bad("UPSTREAM_TIMEOUT_SECONDS", "must be at least 1"));
        }
        let upstream_backoff_seconds =
            seconds("UPSTREAM_BACKOFF_SECONDS", DEFAULT_UPSTREAM_BACKOFF)?;
        if upstream_backoff_seconds > MAX_UPSTREAM_BACKOFF {
            return Err(bad(
                "UPSTREAM_BACKOFF_SECONDS",
                format!("must be 0 (off) to {MAX_UPSTREAM_BACKOFF}"),
            ));
        }

        let pins = pins(&lookup, &upstreams)?;
        let hosts = match lookup("HOSTS") {
            None => BTreeMap::new(),
            Some(raw) => {
                let map: BTreeMap<String, String> = serde_json::from_str(&raw).map_err(|e| {
                    bad(
                        "HOSTS",
                        format!(
                            "not a JSON object of hostname → registry: {}",
                            json_problem(&e)
                        ),
                    )
                })?;
                let mut hosts = BTreeMap::new();
                for (host, registry) in map {
                    if !upstreams.contains_key(&registry) {
                        return Err(bad(
                            format!("HOSTS[{host:?}]"),
                            format!("{registry:?} is not a key of UPSTREAMS"),
                        ));
                    }
                    hosts.insert(host.to_ascii_lowercase(), registry);
                }
                hosts
            }
        };

        let redirect_ttl_seconds = seconds("REDIRECT_TTL_SECONDS", DEFAULT_REDIRECT_TTL)?;
        if !(1..=crate::signing::sigv4::MAX_EXPIRES_IN).contains(&redirect_ttl_seconds) {
            return Err(bad(
                "REDIRECT_TTL_SECONDS",
                "must be between 1 second and 7 days (604800)",
            ));
        }
        let blob_redirect = blob_redirect(&lookup)?;
        let bytes = |setting: &str, default: u64| match lookup(setting) {
            None => Ok(default),
            Some(s) => s
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| bad(setting, format!("{s:?} is not a positive number of bytes"))),
        };
        let multipart_threshold_bytes =
            bytes("MULTIPART_THRESHOLD_BYTES", multipart::SINGLE_PUT_LIMIT)?;
        let multipart_part_bytes = bytes("MULTIPART_PART_BYTES", multipart::DEFAULT_PART_BYTES)?;
        if multipart_threshold_bytes > multipart::SINGLE_PUT_LIMIT {
            return Err(bad(
                "MULTIPART_THRESHOLD_BYTES",
                "cannot exceed R2's single-put limit",
            ));
        }
        if !(multipart::MIN_PART_BYTES..=512 * 1024 * 1024).contains(&multipart_part_bytes) {
            return Err(bad(
                "MULTIPART_PART_BYTES",
                "must be from R2's smallest part (5 MiB) to 512 MiB (a part is buffered in memory)",
            ));
        }

        let count = |setting: &str, default: u64| match lookup(setting) {
            None => Ok(default),
            Some(s) => s
                .trim()
                .parse::<u64>()
                .map_err(|_| bad(setting, format!("{s:?} is not a whole number"))),
        };
        let retention_days = count("RETENTION_DAYS", DEFAULT_RETENTION_DAYS)?;
        let retention_batch = count("RETENTION_BATCH", DEFAULT_RETENTION_BATCH)?;
        if !(1..=1000).contains(&retention_batch) {
            return Err(bad(
                "RETENTION_BATCH",
                "must be from 1 to 1000 (KV lists at most 1000 keys at a time)",
            ));
        }

        // Upstream bodies (see `crate::watchdog`).
        let upstream_idle_timeout_seconds = seconds(
            "UPSTREAM_IDLE_TIMEOUT_SECONDS",
            crate::watchdog::DEFAULT_IDLE_SECONDS,
        )?;
        if !(1..=crate::watchdog::MAX_IDLE_SECONDS).contains(&upstream_idle_timeout_seconds) {
            return Err(bad(
                "UPSTREAM_IDLE_TIMEOUT_SECONDS",
                "must be from 1 to 300 seconds",
            ));
        }

        let public_url = match lookup("PUBLIC_URL").filter(|v| !v.trim().is_empty()) {
            None => None,
            Some(raw) => {
                let url = parse_url(raw.trim()).map_err(|p| bad("PUBLIC_URL", p))?;
                if url.path() != "/" {
                    return Err(bad(
                        "PUBLIC_URL",
                        "must be an origin (scheme, host, port), without a path",
                    ));
                }
                Some(url)
            }
        };

        Ok(Config {
            upstream_idle_timeout_seconds,
            public_url,
            retention_days,
            retention_batch: retention_batch as u32,
            upstreams,
            default_registry,
            tag_ttl_seconds,
            negative_ttl_seconds,
            upstream_timeout_seconds,
            upstream_backoff_seconds,
            hosts,
            blob_redirect,
            redirect_ttl_seconds,
            multipart_threshold_bytes,
            multipart_part_bytes,
            access: Access::load(&lookup)?,
            pins,
            policy: crate::policy::Policy::load(&lookup)?,
            prewarm: match lookup("PREWARM") {
                None => Vec::new(),
                Some(raw) => serde_json::from_str(&raw).map_err(|e| {
                    bad(
                        "PREWARM",
                        format!("not a JSON list of images: {}", json_problem(&e)),
                    )
                })?,
            },
            admin_token: lookup("ADMIN_TOKEN")
                .filter(|t| !t.is_empty())
                .map(|t| SigningKey(t.into_bytes())),
            deny_latest: match lookup("DENY_LATEST").as_deref().map(str::trim) {
                None | Some("") | Some("false") | Some("0") => false,
                Some("true") | Some("1") => true,
                Some(other) => {
                    return Err(bad(
                        "DENY_LATEST",
                        format!("{other:?} is not true or false"),
                    ))
                }
            },
        })
    }

    pub fn upstream(&self, name: &str) -> Option<&UpstreamConfig> {
        self.upstreams.get(name)
    }

    /// The registry a `Host` header maps to in `HOSTS` (the port is ignored).
    pub fn host_registry(&self, host: &str) -> Option<&str> {
        if self.hosts.is_empty() {
            return None;
        }
        let name = match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        };
        self.hosts
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// `PINS`: image (`<registry>/<repository>:<tag>`) → digest. The repository is normalized as a
/// request's is ([`crate::route::repository_on`]: the name grammar, Docker Hub's `library/`), and
/// the tag must be one a client can ask for, so a key that no request could match is refused here
/// rather than loaded and silently never used (`docker.io/Alpine:3`: names are lowercase).
fn pins(
    lookup: &impl Fn(&str) -> Option<String>,
    upstreams: &BTreeMap<String, UpstreamConfig>,
) -> Result<BTreeMap<String, crate::oci::Digest>, ConfigError> {
    let Some(raw) = lookup("PINS") else {
        return Ok(BTreeMap::new());
    };
    let map: BTreeMap<String, String> = serde_json::from_str(&raw).map_err(|e| {
        bad(
            "PINS",
            format!("not a JSON object of image → digest: {}", json_problem(&e)),
        )
    })?;
    let mut pins = BTreeMap::new();
    for (image, digest) in map {
        let setting = format!("PINS[{image:?}]");
        let digest = crate::oci::Digest::parse(&digest).map_err(|e| bad(&setting, e))?;
        let (name, tag) = image
            .rsplit_once(':')
            .filter(|(n, t)| !t.contains('/') && !n.is_empty())
            .ok_or_else(|| bad(&setting, "must be <registry>/<repository>:<tag>"))?;
        let (registry, repo) = name
            .split_once('/')
            .ok_or_else(|| bad(&setting, "must name the registry"))?;
        let Some(upstream) = upstreams.get(registry) else {
            return Err(bad(
                &setting,
                format!("{registry:?} is not a key of UPSTREAMS"),
            ));
        };
        let repo = crate::route::repository_on(upstream, repo).map_err(|e| {
            let lower = repo.to_ascii_lowercase();
            let hint = if lower != repo && crate::route::repository_on(upstream, &lower).is_ok() {
                format!(" (names are lowercase: write \"{registry}/{lower}:{tag}\")")
            } else {
                String::new()
            };
            bad(&setting, format!("no client can ask for it: {e}{hint}"))
        })?;
        match crate::oci::Reference::parse(tag) {
            Ok(crate::oci::Reference::Tag(_)) => {}
            _ => {
                return Err(bad(
                    &setting,
                    format!(
                        "no client can ask for it: {tag:?} is not a tag \
                         ([A-Za-z0-9_][A-Za-z0-9._-]{{0,127}}; a digest needs no pin)"
                    ),
                ))
            }
        }
        pins.insert(pin_key(registry, repo.as_str(), tag), digest);
    }
    Ok(pins)
}

/// How `PINS` entries are keyed.
pub fn pin_key(registry: &str, repository: &str, tag: &str) -> String {
    format!("{registry}/{repository}:{tag}")
}

/// A `PINS` key taken apart again: (registry, repository, tag). Registry names hold no `/` and
/// tags no `:` or `/`, so the split is unambiguous.
pub fn split_pin_key(key: &str) -> Option<(&str, &str, &str)> {
    let (registry, rest) = key.split_once('/')?;
    let (repository, tag) = rest.rsplit_once(':')?;
    Some((registry, repository, tag))
}

fn blob_redirect(lookup: &impl Fn(&str) -> Option<String>) -> Result<BlobRedirect, ConfigError> {
    let required = |name: &str| {
        lookup(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| bad(name, "must be set for this BLOB_REDIRECT mode"))
    };
    match lookup("BLOB_REDIRECT").as_deref().map(str::trim) {
        None | Some("") | Some("off") => Ok(BlobRedirect::Off),
        Some("s3") => {
            let endpoint =
                parse_url(&required("R2_S3_ENDPOINT")?).map_err(|p| bad("R2_S3_ENDPOINT", p))?;
            if endpoint.path() != "/" {
                return Err(bad("R2_S3_ENDPOINT", "must be an origin, without a path"));
            }
            Ok(BlobRedirect::S3(S3Access {
                endpoint,
                bucket: required("R2_BUCKET")?,
                access_key_id: required("R2_ACCESS_KEY_ID")?,
                secret_access_key: required("R2_SECRET_ACCESS_KEY")?,
            }))
        }
        Some("self") => {
            let key = required("URL_SIGNING_KEY")?.into_bytes();
            if key.len() < crate::signing::url_token::MIN_KEY_BYTES {
                return Err(bad(
                    "URL_SIGNING_KEY",
                    format!(
                        "must be at least {} bytes",
                        crate::signing::url_token::MIN_KEY_BYTES
                    ),
                ));
            }
            Ok(BlobRedirect::SelfSigned(SigningKey(key)))
        }
        Some(other) => Err(bad(
            "BLOB_REDIRECT",
            format!("{other:?} is not one of off, s3, self"),
        )),
    }
}

/// A URL setting. The problem never quotes the value: a URL may carry `user:password@`, and
/// where it does not parse nobody can tell which part is a secret.
fn parse_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s.trim_end_matches('/')).map_err(|e| format!("is not a URL: {e}"))?;
    if !crate::upstream::is_http(&url) {
        return Err("must be an http(s) URL with a host".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "must not carry credentials (user:password@); put a password in a secret \
             named by password_secret"
                .to_owned(),
        );
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not carry a query or fragment".to_owned());
    }
    Ok(url)
}

/// A JSON error without the input it quotes: serde writes unexpected strings in quotes
/// (`invalid type: string "https://u:pw@host", expected …`) and map keys as field names in
/// backticks; both go, what is left (the kind of error, the position, the expected fields) stays.
pub fn json_problem(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            // A Debug-quoted string: escapes keep any `"` inside it behind a `\`.
            '"' => {
                out.push_str("\"…\"");
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            // Backticks: serde's field names; an identifier is shown, anything else is input.
            '`' => {
                let quoted: String = chars.by_ref().take_while(|&c| c != '`').collect();
                if !quoted.is_empty()
                    && quoted
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    out.push('`');
                    out.push_str(&quoted);
                    out.push('`');
                } else {
                    out.push_str("`…`");
                }
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_mirror_docker_hub_anonymously() {
        let c = load(&[]).unwrap();
        assert_eq!(c.default_registry, "docker.io");
        assert_eq!(c.tag_ttl_seconds, 300);
        let hub = c.upstream("docker.io").unwrap();
        assert_eq!(hub.url.as_str(), "https://registry-1.docker.io/");
        assert!(hub.credentials.is_none());
        assert!(hub.implicit_library());
    }

    #[test]
    fn credentials_come_from_the_named_secret() {
        let c = load(&[
            (
                "UPSTREAMS",
                r#"{"127.0.0.1:5000": {"url": "http://127.0.0.1:5000/", "username": "svc", "password_secret": "REG_PW"}}"#,
            ),
            ("REG_PW", "hunter2"),
            ("DEFAULT_REGISTRY", "127.0.0.1:5000"),
            ("TAG_TTL_SECONDS", "60"),
        ])
        .unwrap();
        let up = c.upstream("127.0.0.1:5000").unwrap();
        let creds = up.credentials.as_ref().unwrap();
        assert_eq!(creds.username, "svc");
        assert_eq!(creds.password, "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"), "Debug must redact");
        assert!(!up.implicit_library());
        assert_eq!(c.tag_ttl_seconds, 60);
    }

    #[test]
    fn fallbacks_are_upstreams_of_the_same_registry() {
        let c = load(&[
            (
                "UPSTREAMS",
                r#"{"docker.io": {"url": "https://registry-1.docker.io",
                    "fallback": [{"url": "https://mirror.gcr.io"},
                                 {"url": "https://m2.example", "username": "u", "password_secret": "M2"}]}}"#,
            ),
            ("M2", "s"),
        ])
        .unwrap();
        let hub = c.upstream("docker.io").unwrap();
        let urls: Vec<&str> = hub.fallbacks.iter().map(|f| f.url.as_str()).collect();
        assert_eq!(urls, ["https://mirror.gcr.io/", "https://m2.example/"]);
        assert!(hub.fallbacks.iter().all(|f| f.name == "docker.io"));
        assert!(hub.fallbacks[1].credentials.is_some());
        assert_eq!(c.negative_ttl_seconds, 60);
    }

    #[test]
    fn blob_redirect_modes() {
        assert_eq!(load(&[]).unwrap().blob_redirect, BlobRedirect::Off);
        let c = load(&[
            ("BLOB_REDIRECT", "s3"),
            ("R2_S3_ENDPOINT", "https://acct.r2.cloudflarestorage.com"),
            ("R2_BUCKET", "blobs"),
            ("R2_ACCESS_KEY_ID", "AK"),
            ("R2_SECRET_ACCESS_KEY", "very-secret"),
            ("REDIRECT_TTL_SECONDS", "60"),
        ])
        .unwrap();
        assert!(matches!(&c.blob_redirect, BlobRedirect::S3(s) if s.bucket == "blobs"));
        assert_eq!(c.redirect_ttl_seconds, 60);
        assert!(!format!("{c:?}").contains("very-secret"));
        let key = "k".repeat(32);
        let c = load(&[("BLOB_REDIRECT", "self"), ("URL_SIGNING_KEY", &key)]).unwrap();
        assert!(matches!(c.blob_redirect, BlobRedirect::SelfSigned(_)));
        assert!(!format!("{c:?}").contains(&key));
    }

    #[test]
    fn pins_are_normalized_like_requests() {
        let d = format!("sha256:{}", "a".repeat(64));
        let c = load(&[
            ("PINS", &format!(r#"{{"docker.io/alpine:3.20": "{d}"}}"#)),
            ("DENY_LATEST", "true"),
        ])
        .unwrap();
        assert_eq!(
            c.pins
                .get(&pin_key("docker.io", "library/alpine", "3.20"))
                .map(|d| d.to_string()),
            Some(d.clone())
        );
        assert!(c.deny_latest);
        // A key no request could match is refused, with what to write instead where there is one.
        let upstreams = r#"{"docker.io": {"url": "https://registry-1.docker.io"},
                            "ghcr.io": {"url": "https://ghcr.io"}}"#;
        let cases: &[(&str, &str)] = &[
            ("docker.io/Alpine:3", r#"write "docker.io/alpine:3""#),
            ("ghcr.io/Team/App:v1", r#"write "ghcr.io/team/app:v1""#),
            ("docker.io/alpine:-3", "is not a tag"),
            ("docker.io/alpine:3.20!", "is not a tag"),
            ("docker.io/alpine@sha256:3", "no client can ask for it"),
            ("docker.io/a//b:3", "no client can ask for it"),
            ("docker.io/alpine:", "is not a tag"),
        ];
        for (image, want) in cases {
            let pins = format!(r#"{{"{image}": "{d}"}}"#);
            let e = load(&[("UPSTREAMS", upstreams), ("PINS", &pins)]).unwrap_err();
            assert_eq!(e.setting, format!("PINS[{image:?}]"), "{image}");
            assert!(e.problem.contains(want), "{image}: {}", e.problem);
        }
        // Keys are built by the router's normalization: a pin matches what a request resolves to.
        let c = load(&[
            ("UPSTREAMS", upstreams),
            (
                "PINS",
                &format!(r#"{{"docker.io/team/app:1": "{d}", "ghcr.io/x:1": "{d}"}}"#),
            ),
        ])
        .unwrap();
        for (path, key) in [
            ("docker.io/team/app", "docker.io/team/app:1"),
            ("ghcr.io/x", "ghcr.io/x:1"),
            ("docker.io/alpine", ""),
        ] {
            let t = crate::route::resolve_name(&c, path, None).unwrap();
            let want = (!key.is_empty()).then(|| key.to_owned());
            let got = Some(pin_key(&t.registry, t.repository.as_str(), "1"))
                .filter(|k| c.pins.contains_key(k));
            assert_eq!(got, want, "{path}");
        }
        let key = pin_key("127.0.0.1:5000", "team/app", "v1");
        assert_eq!(
            split_pin_key(&key),
            Some(("127.0.0.1:5000", "team/app", "v1"))
        );
    }

    #[test]
    fn retention_settings() {
        let c = load(&[]).unwrap();
        assert_eq!((c.retention_days, c.retention_batch), (30, 300));
        let c = load(&[("RETENTION_DAYS", "0"), ("RETENTION_BATCH", "1000")]).unwrap();
        assert_eq!((c.retention_days, c.retention_batch), (0, 1000));
        for (setting, value) in [
            ("RETENTION_DAYS", "-1"),
            ("RETENTION_DAYS", "a month"),
            ("RETENTION_BATCH", "0"),
            ("RETENTION_BATCH", "1001"),
        ] {
            let e = load(&[(setting, value)]).unwrap_err();
            assert!(e.to_string().contains(setting), "{e}");
        }
    }

    #[test]
    fn hosts_map_hostnames_to_registries() {
        let c = load(&[("HOSTS", r#"{"Docker.Example.com": "docker.io"}"#)]).unwrap();
        assert_eq!(c.host_registry("docker.example.com"), Some("docker.io"));
        assert_eq!(c.host_registry("DOCKER.example.com:443"), Some("docker.io"));
        assert_eq!(c.host_registry("other.example.com"), None);
        assert_eq!(load(&[]).unwrap().host_registry("docker.example.com"), None);
    }

    #[test]
    fn serve_stale_on_takes_only_the_refusals_it_can_outlast() {
        let c = load(&[(
            "UPSTREAMS",
            r#"{"docker.io": {"url": "https://x", "serve_stale_on": [404, 401]}}"#,
        )])
        .unwrap();
        assert_eq!(c.upstream("docker.io").unwrap().serve_stale_on, [404, 401]);
        assert!(load(&[])
            .unwrap()
            .upstream("docker.io")
            .unwrap()
            .serve_stale_on
            .is_empty());
        let e = load(&[(
            "UPSTREAMS",
            r#"{"docker.io": {"url": "https://x", "serve_stale_on": [500]}}"#,
        )])
        .unwrap_err();
        assert_eq!(e.setting, r#"UPSTREAMS["docker.io"].serve_stale_on"#);
        assert!(e.problem.contains("500"), "{}", e.problem);
    }

    #[test]
    fn auth_hosts_for_upstreams_and_fallbacks() {
        let c = load(&[(
            "UPSTREAMS",
            r#"{"docker.io": {"url": "https://nvcr.io", "auth_hosts": ["AUTHN.nvidia.com", "10.0.0.1"],
                "fallback": [{"url": "https://m.example", "auth_hosts": ["auth.example.net"]}]}}"#,
        )])
        .unwrap();
        let hub = c.upstream("docker.io").unwrap();
        assert_eq!(hub.auth_hosts, ["authn.nvidia.com", "10.0.0.1"]);
        assert_eq!(hub.fallbacks[0].auth_hosts, ["auth.example.net"]);
        assert!(load(&[])
            .unwrap()
            .upstream("docker.io")
            .unwrap()
            .auth_hosts
            .is_empty());
        for (json, setting) in [
            (
                r#"{"docker.io": {"url": "https://x", "auth_hosts": ["https://a.example"]}}"#,
                r#"UPSTREAMS["docker.io"].auth_hosts[0]"#,
            ),
            (
                r#"{"docker.io": {"url": "https://x", "fallback": [{"url": "https://y", "auth_hosts": ["ok.example", "a.example:443"]}]}}"#,
                r#"UPSTREAMS["docker.io"].fallback[0].auth_hosts[1]"#,
            ),
        ] {
            assert_eq!(load(&[("UPSTREAMS", json)]).unwrap_err().setting, setting);
        }
    }

    #[test]
    fn public_url_is_an_origin() {
        assert_eq!(load(&[]).unwrap().public_url, None);
        let c = load(&[("PUBLIC_URL", "https://Door.Example.com/")]).unwrap();
        assert_eq!(
            c.public_url.as_ref().map(Url::as_str),
            Some("https://door.example.com/")
        );
        let c = load(&[("PUBLIC_URL", "http://127.0.0.1:8787")]).unwrap();
        assert_eq!(c.public_url.unwrap().as_str(), "http://127.0.0.1:8787/");
        for bad in [
            "door.example.com",
            "ftp://door.example.com",
            "https://door.example.com/prefix",
            "https://door.example.com/?x=1",
            "https://door.example.com/#x",
            "https://u:hunter2@door.example.com",
        ] {
            let e = load(&[("PUBLIC_URL", bad)]).unwrap_err();
            assert_eq!(e.setting, "PUBLIC_URL", "{bad}");
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
    }

    /// A password written into a URL (or anywhere in a JSON setting) is refused, and the error
    /// names the setting without repeating the password — the error is every answer's body.
    #[test]
    fn configuration_errors_never_repeat_a_secret() {
        let s3 = |endpoint: &'static str| {
            vec![
                ("BLOB_REDIRECT", "s3"),
                ("R2_S3_ENDPOINT", endpoint),
                ("R2_BUCKET", "b"),
                ("R2_ACCESS_KEY_ID", "AK"),
                ("R2_SECRET_ACCESS_KEY", "SK"),
            ]
        };
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (
                vec![(
                    "UPSTREAMS",
                    r#"{"docker.io": {"url": "https://svc:hunter2@registry.example"}}"#,
                )],
                r#"UPSTREAMS["docker.io"].url"#,
            ),
            (
                vec![(
                    "UPSTREAMS",
                    r#"{"docker.io": {"url": "https://hunter2@registry.example"}}"#,
                )],
                r#"UPSTREAMS["docker.io"].url"#,
            ),
            (
                vec![(
                    "UPSTREAMS",
                    r#"{"docker.io": {"url": "https://svc:hunter2@[oops/"}}"#,
                )],
                r#"UPSTREAMS["docker.io"].url"#,
            ),
            (
                vec![(
                    "UPSTREAMS",
                    r#"{"docker.io": {"url": "https://x", "fallback": [{"url": "https://svc:hunter2@m.example"}]}}"#,
                )],
                r#"UPSTREAMS["docker.io"].fallback[0].url"#,
            ),
            (
                vec![(
                    "UPSTREAMS",
                    r#"{"docker.io": "https://svc:hunter2@registry.example"}"#,
                )],
                "UPSTREAMS",
            ),
            (
                vec![(
                    "UPSTREAMS",
                    r#"{"docker.io": {"url": "https://x", "fallback": "https://svc:hunter2@m"}}"#,
                )],
                "UPSTREAMS",
            ),
            (
                vec![(
                    "UPSTREAMS",
                    r#"{"docker.io": {"url": "https://x", "https://svc:hunter2@m": 1}}"#,
                )],
                "UPSTREAMS",
            ),
            (
                vec![(
                    "UPSTREAMS",
                    r#"{"svc:hunter2@registry.example": {"url": "https://x"}}"#,
                )],
                "UPSTREAMS",
            ),
            (
                s3("https://AK:hunter2@acct.r2.cloudflarestorage.com"),
                "R2_S3_ENDPOINT",
            ),
            (s3("hunter2"), "R2_S3_ENDPOINT"),
            (
                vec![("PUBLIC_URL", "https://u:hunter2@door.example")],
                "PUBLIC_URL",
            ),
            (vec![("HOSTS", r#"{"a": ["hunter2"]}"#)], "HOSTS"),
            (vec![("PINS", r#"{"a": ["hunter2"]}"#)], "PINS"),
            (vec![("PREWARM", r#"["ok", {"x": "hunter2"}]"#)], "PREWARM"),
            (
                vec![(
                    "ACCESS",
                    r#"{"users": {"ci": {"password_secret": ["hunter2"]}}}"#,
                )],
                "ACCESS",
            ),
            (vec![("ACCESS", r#"{"users": "hunter2"}"#)], "ACCESS"),
        ];
        for (pairs, setting) in cases {
            let e = load(&pairs).expect_err(&format!("{pairs:?} should fail"));
            assert_eq!(e.setting, setting, "{pairs:?}: {e}");
            let text = e.to_string();
            assert!(text.contains(setting), "{text}");
            assert!(!text.contains("hunter2"), "{text}");
        }
        let e = load(&[(
            "UPSTREAMS",
            r#"{"docker.io": {"url": "https://u:hunter2@x"}}"#,
        )])
        .unwrap_err();
        assert!(e.problem.contains("credentials"), "{e}");
    }

    #[test]
    fn json_problems_keep_their_shape_but_not_their_input() {
        let Err(e) = serde_json::from_str::<BTreeMap<String, RawUpstream>>(
            r#"{"r": {"url": "https://x", "usr": "a"}}"#,
        ) else {
            panic!("an unknown field")
        };
        let p = json_problem(&e);
        assert!(
            p.starts_with("unknown field `usr`, expected one of `url`"),
            "{p}"
        );
        let e = serde_json::from_str::<Vec<String>>(r#"["a\"b", 1]"#).unwrap_err();
        assert_eq!(
            json_problem(&e),
            "invalid type: integer `1`, expected a string at line 1 column 10"
        );
        let e = serde_json::from_str::<u8>(r#""x\"y\\\"z` tail""#).unwrap_err();
        assert_eq!(
            json_problem(&e),
            "invalid type: string \"…\", expected u8 at line 1 column 17"
        );
    }

    #[test]
    fn bad_settings_are_named() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("UPSTREAMS", "{")], "UPSTREAMS"),
            (&[("UPSTREAMS", "[]")], "UPSTREAMS"),
            (&[("UPSTREAMS", "{}")], "UPSTREAMS"),
            (
                &[("UPSTREAMS", r#"{"docker.io": {"url": "ftp://x"}}"#)],
                r#"UPSTREAMS["docker.io"].url"#,
            ),
            (
                &[("UPSTREAMS", r#"{"docker.io": {"url": "https://:pw@x"}}"#)],
                r#"UPSTREAMS["docker.io"].url"#,
            ),
            (
                &[(
                    "UPSTREAMS",
                    r#"{"docker.io": {"url": "https://x", "usr": "a"}}"#,
                )],
                "UPSTREAMS",
            ),
            (
                &[(
                    "UPSTREAMS",
                    r#"{"docker.io": {"url": "https://x", "username": "a", "password_secret": "NOPE"}}"#,
                )],
                r#"UPSTREAMS["docker.io"].password_secret"#,
            ),
            (
                &[(
                    "UPSTREAMS",
                    r#"{"docker.io": {"url": "https://x", "username": "a"}}"#,
                )],
                r#"UPSTREAMS["docker.io"]"#,
            ),
            (&[("DEFAULT_REGISTRY", "ghcr.io")], "DEFAULT_REGISTRY"),
            (&[("TAG_TTL_SECONDS", "5m")], "TAG_TTL_SECONDS"),
            (&[("HOSTS", "[1]")], "HOSTS"),
            (
                &[("PINS", r#"{"docker.io/alpine:3": "sha256:00"}"#)],
                r#"PINS["docker.io/alpine:3"]"#,
            ),
            (
                &[(
                    "PINS",
                    r#"{"ghcr.io/x:1": "sha256:0000000000000000000000000000000000000000000000000000000000000000"}"#,
                )],
                r#"PINS["ghcr.io/x:1"]"#,
            ),
            (&[("DENY_LATEST", "yes")], "DENY_LATEST"),
            (&[("PREWARM", r#"{"a": 1}"#)], "PREWARM"),
            (&[("NEGATIVE_TTL_SECONDS", "-1")], "NEGATIVE_TTL_SECONDS"),
            (
                &[("UPSTREAM_TIMEOUT_SECONDS", "0")],
                "UPSTREAM_TIMEOUT_SECONDS",
            ),
            (
                &[(
                    "UPSTREAMS",
                    r#"{"docker.io": {"url": "https://x", "fallback": [{"url": "nope"}]}}"#,
                )],
                r#"UPSTREAMS["docker.io"].fallback[0].url"#,
            ),
            (
                &[(
                    "UPSTREAMS",
                    r#"{"docker.io": {"url": "https://x", "fallback": [{"url": "https://y", "fallback": [{"url": "https://z"}]}]}}"#,
                )],
                r#"UPSTREAMS["docker.io"].fallback[0]"#,
            ),
            (
                &[("HOSTS", r#"{"ghcr.example.com": "ghcr.io"}"#)],
                r#"HOSTS["ghcr.example.com"]"#,
            ),
        ];
        for (pairs, setting) in cases {
            let err = load(pairs).expect_err(&format!("{pairs:?} should fail"));
            assert_eq!(err.setting, *setting, "{pairs:?}: {err}");
        }
    }

    #[test]
    fn the_idle_timeout_defaults_to_20_s_and_is_bounded() {
        assert_eq!(load(&[]).unwrap().upstream_idle_timeout_seconds, 20);
        let two = load(&[("UPSTREAM_IDLE_TIMEOUT_SECONDS", "2")]).unwrap();
        assert_eq!(two.upstream_idle_timeout_seconds, 2);
        assert_eq!(two.body_limits().idle_seconds, 2);
        assert_eq!(two.body_limits().answer_seconds, 15);
        for bad in ["0", "301", "soon", "-1"] {
            let err = load(&[("UPSTREAM_IDLE_TIMEOUT_SECONDS", bad)]).expect_err(bad);
            assert_eq!(err.setting, "UPSTREAM_IDLE_TIMEOUT_SECONDS", "{bad}");
        }
    }
}
