//! Request routing: `(method, host, path, query)` → what the client asked for, or the OCI error to
//! answer.
//!
//! The registry a request goes to is chosen, in order, by the `HOSTS` map (the `Host` the client
//! used, for `docker.example.com`-style deployments), containerd's `ns` query parameter, a
//! `/v2/<registry>/…` path prefix naming a configured registry, then `DEFAULT_REGISTRY`. A first path
//! component that looks like a hostname (has a `.` or `:`, or is `localhost`, as Docker's reference
//! grammar defines a domain) but is not configured is refused with `NAME_UNKNOWN`, and so is an `ns`
//! naming an unconfigured registry: the door never contacts a registry it was not configured for,
//! and never sends such a name to the default one.
//!
//! Names are matched by hand rather than with a router: repository names contain `/`, so the kind
//! (`manifests`, `blobs`, `tags/list`, `referrers`) is found from the end of the path.

use crate::config::{Config, UpstreamConfig};
use crate::error::{ErrorCode, RegistryError};
use crate::oci::{Digest, Reference, Repository};

/// The only methods a client reads with; the same type the door sends upstream.
pub use crate::ports::HttpMethod as Method;

/// The parts of an HTTP request that routing looks at.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestLine<'r> {
    pub method: &'r str,
    /// The `Host` header (with any port).
    pub host: Option<&'r str>,
    /// The path, still percent-encoded, as sent.
    pub path: &'r str,
    /// The raw query string, without `?`.
    pub query: Option<&'r str>,
}

/// Which upstream repository a request is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Key of the registry in `UPSTREAMS`.
    pub registry: String,
    /// The repository as upstream names it (Docker Hub's `library/` already applied).
    pub repository: Repository,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`: the API version check.
    Base,
    Manifest {
        target: Target,
        reference: Reference,
    },
    Blob {
        target: Target,
        digest: Digest,
    },
    /// `/v2/<name>/tags/list?n=&last=`.
    Tags {
        target: Target,
        n: Option<u32>,
        last: Option<String>,
        /// How the client reached this list (`/v2/<name as written>/tags/list`, plus `ns`), so a
        /// `Link` to the next page points back at the door the same way.
        link_path: String,
        link_ns: Option<String>,
    },
    /// `POST /_frontdoor/prewarm[?image=…]`: pull images into the cache (admin).
    Prewarm {
        query: String,
    },
    /// `/_frontdoor/resolve?image=…`: tags to digest-pinned references.
    Resolve {
        query: String,
    },
    /// `/token`: the door's token endpoint (GET with Basic credentials, or an OAuth2 POST).
    Token {
        post: bool,
        query: String,
    },
    /// `/_blob/<alg>/<hex>?expires=…&sig=…`: the door's own signed blob URL (`BLOB_REDIRECT=self`).
    SignedBlob {
        digest: Digest,
        query: String,
    },
    /// `/` (the HTML page, `page`) and `/_frontdoor/status` (JSON): the door's counters.
    Status {
        page: bool,
    },
    /// `/v2/<name>/referrers/<digest>?artifactType=`.
    Referrers {
        target: Target,
        digest: Digest,
        artifact_type: Option<String>,
    },
}

/// What a request asked for, for the request log, the counters and Analytics Engine (see
/// [`Route::kind`]); `Other` for a request that routes nowhere.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Kind {
    #[default]
    Other,
    Base,
    Manifest,
    Blob,
    Tags,
    Referrers,
    Prewarm,
    Resolve,
    Token,
    SignedBlob,
    Status,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Other => "other",
            Kind::Base => "base",
            Kind::Manifest => "manifest",
            Kind::Blob => "blob",
            Kind::Tags => "tags",
            Kind::Referrers => "referrers",
            Kind::Prewarm => "prewarm",
            Kind::Resolve => "resolve",
            Kind::Token => "token",
            Kind::SignedBlob => "signed-blob",
            Kind::Status => "status",
        }
    }
}

impl Route {
    pub fn kind(&self) -> Kind {
        match self {
            Route::Base => Kind::Base,
            Route::Manifest { .. } => Kind::Manifest,
            Route::Blob { .. } => Kind::Blob,
            Route::Tags { .. } => Kind::Tags,
            Route::Referrers { .. } => Kind::Referrers,
            Route::Prewarm { .. } => Kind::Prewarm,
            Route::Resolve { .. } => Kind::Resolve,
            Route::Token { .. } => Kind::Token,
            Route::SignedBlob { .. } => Kind::SignedBlob,
            Route::Status { .. } => Kind::Status,
        }
    }

    /// The repository the route reads, if it reads one.
    pub fn target(&self) -> Option<&Target> {
        match self {
            Route::Manifest { target, .. }
            | Route::Blob { target, .. }
            | Route::Tags { target, .. }
            | Route::Referrers { target, .. } => Some(target),
            Route::Base
            | Route::Status { .. }
            | Route::SignedBlob { .. }
            | Route::Token { .. }
            | Route::Resolve { .. }
            | Route::Prewarm { .. } => None,
        }
    }
}

/// A routed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    pub method: Method,
    pub route: Route,
}

pub fn route(cfg: &Config, req: RequestLine<'_>) -> Result<Routed, RegistryError> {
    let path = req.path;
    let not_found = || {
        RegistryError::new(ErrorCode::Unsupported, format!("no endpoint at {path}"))
            .with_status(404)
    };
    if path == "/_frontdoor/prewarm" {
        if req.method != "POST" {
            return Err(RegistryError::new(
                ErrorCode::Unsupported,
                "pre-warming is a POST",
            ));
        }
        let query = req.query.unwrap_or("").to_owned();
        return Ok(Routed {
            method: Method::Get,
            route: Route::Prewarm { query },
        });
    }
    if path == "/token" {
        let post = match req.method {
            "GET" | "HEAD" => false,
            "POST" => true,
            other => {
                return Err(RegistryError::new(
                    ErrorCode::Unsupported,
                    format!("{other} is not supported on /token"),
                ))
            }
        };
        let query = req.query.unwrap_or("").to_owned();
        return Ok(Routed {
            method: Method::Get,
            route: Route::Token { post, query },
        });
    }
    let method = match req.method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        other => {
            return Err(RegistryError::new(
                ErrorCode::Unsupported,
                format!("{other} is not supported: this registry mirror is read-only"),
            ))
        }
    };
    if path == "/" || path == "/_frontdoor/status" {
        let route = Route::Status { page: path == "/" };
        return Ok(Routed { method, route });
    }
    if path == "/_frontdoor/resolve" {
        let route = Route::Resolve {
            query: req.query.unwrap_or("").to_owned(),
        };
        return Ok(Routed { method, route });
    }
    if let Some(blob) = path.strip_prefix("/_blob/") {
        let digest = match blob.split_once('/') {
            Some((alg, hex)) => parse_digest(&format!("{alg}:{hex}"))?,
            None => return Err(not_found()),
        };
        let route = Route::SignedBlob {
            digest,
            query: req.query.unwrap_or("").to_owned(),
        };
        return Ok(Routed { method, route });
    }
    let rest = match path {
        "/v2" | "/v2/" => "",
        _ => path.strip_prefix("/v2/").ok_or_else(not_found)?,
    };
    if rest.is_empty() {
        return Ok(Routed {
            method,
            route: Route::Base,
        });
    }
    if rest == "_catalog" {
        return Err(RegistryError::new(
            ErrorCode::Unsupported,
            "the catalog is not served by this mirror",
        )
        .with_status(404));
    }

    let query = Query::parse(req.query);
    let segments: Vec<&str> = rest.split('/').collect();
    if segments.len() < 3 {
        return Err(not_found());
    }
    let (name, tail) = segments.split_at(segments.len() - 2);
    let route = match tail {
        ["manifests", reference] => {
            let target = target(cfg, name, req.host, query.ns.as_deref())?;
            let reference = Reference::parse(reference).map_err(|e| {
                // Not a tag: no manifest can have it, which is what the OCI conformance suite
                // expects (`GET …/manifests/.INVALID_MANIFEST_NAME` → 404). A malformed digest
                // stays a 400 DIGEST_INVALID: the suite accepts 400 or 404 for one
                // (`sha256:totallywrong`), and 400 tells the client what is wrong with it.
                match reference.contains(':') {
                    true => RegistryError::new(ErrorCode::DigestInvalid, e),
                    false => RegistryError::new(
                        ErrorCode::ManifestUnknown,
                        format!("no manifest can be named {reference:?}: {e}"),
                    ),
                }
            })?;
            Route::Manifest { target, reference }
        }
        ["blobs", digest] => {
            let target = target(cfg, name, req.host, query.ns.as_deref())?;
            Route::Blob {
                target,
                digest: parse_digest(digest)?,
            }
        }
        ["tags", "list"] => {
            let target = target(cfg, name, req.host, query.ns.as_deref())?;
            let n = match query.n.as_deref() {
                None => None,
                Some(n) => Some(n.parse::<u32>().map_err(|_| {
                    RegistryError::new(
                        ErrorCode::Unsupported,
                        format!("n={n:?} is not a page size"),
                    )
                    .with_status(400)
                })?),
            };
            Route::Tags {
                target,
                n,
                last: query.last,
                link_path: format!("/v2/{}/tags/list", name.join("/")),
                link_ns: query.ns,
            }
        }
        ["referrers", digest] => {
            let target = target(cfg, name, req.host, query.ns.as_deref())?;
            Route::Referrers {
                target,
                digest: parse_digest(digest)?,
                artifact_type: query.artifact_type,
            }
        }
        _ => return Err(not_found()),
    };
    Ok(Routed { method, route })
}

fn parse_digest(s: &str) -> Result<Digest, RegistryError> {
    Digest::parse(s).map_err(|e| RegistryError::new(ErrorCode::DigestInvalid, e))
}

/// The query parameters the door understands; others are ignored.
#[derive(Default)]
struct Query {
    ns: Option<String>,
    n: Option<String>,
    last: Option<String>,
    artifact_type: Option<String>,
}

impl Query {
    fn parse(raw: Option<&str>) -> Query {
        let mut q = Query::default();
        for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            let slot = match k.as_ref() {
                "ns" => &mut q.ns,
                "n" => &mut q.n,
                "last" => &mut q.last,
                "artifactType" => &mut q.artifact_type,
                _ => continue,
            };
            slot.get_or_insert_with(|| v.into_owned());
        }
        q
    }
}

/// The repository a bare name (as in a token scope, `repository:<name>:pull`) means when the door
/// is reached at `host`: by `HOSTS`, a registry prefix, or the default registry.
pub fn resolve_name(cfg: &Config, name: &str, host: Option<&str>) -> Result<Target, RegistryError> {
    let segments: Vec<&str> = name.split('/').collect();
    target(cfg, &segments, host, None)
}

fn target(
    cfg: &Config,
    name: &[&str],
    host: Option<&str>,
    ns: Option<&str>,
) -> Result<Target, RegistryError> {
    let unknown = |registry: &str| {
        RegistryError::new(
            ErrorCode::NameUnknown,
            format!("registry {registry:?} is not served by this mirror"),
        )
    };
    let by_host = host.and_then(|h| cfg.host_registry(h));
    let (registry, repo_segments) = match (by_host, ns) {
        (Some(registry), _) => (registry, name),
        (None, Some(ns)) => (ns, name),
        (None, None) => match name {
            [first, rest @ ..] if !rest.is_empty() && cfg.upstream(first).is_some() => {
                (*first, rest)
            }
            [first, rest @ ..] if !rest.is_empty() && looks_like_host(first) => {
                return Err(unknown(first))
            }
            _ => (cfg.default_registry.as_str(), name),
        },
    };
    let upstream = cfg.upstream(registry).ok_or_else(|| unknown(registry))?;
    let repository = repository_on(upstream, &repo_segments.join("/"))
        .map_err(|e| RegistryError::new(ErrorCode::NameInvalid, e))?;
    Ok(Target {
        registry: registry.to_owned(),
        repository,
    })
}

/// The repository `name` means on `upstream`: the name grammar, then Docker Hub's implicit
/// `library/` for a one-component name. The one normalization for request paths, token scopes
/// and `PINS` keys (see `config`), so a pin is keyed exactly as the requests it should match.
pub fn repository_on(upstream: &UpstreamConfig, name: &str) -> Result<Repository, String> {
    let repository = Repository::parse(name)?;
    Ok(if upstream.implicit_library() && repository.depth() == 1 {
        repository.prefixed("library")
    } else {
        repository
    })
}

/// Docker's reference grammar: the first component is a domain if it has a `.` or `:` or is
/// `localhost`.
fn looks_like_host(s: &str) -> bool {
    s.contains('.') || s.contains(':') || s == "localhost"
}

/// The largest `POST /token` form read.
pub const MAX_TOKEN_FORM: usize = 16 * 1024;

/// How much of a request's body the door reads, if any: only the token endpoint has a body worth
/// reading, a small form read up to a limit (a larger one is not a token request and is read no
/// further). Every other body is never read.
pub fn body_limit(method: &str, path: &str) -> Option<usize> {
    (method == "POST" && path == "/token").then_some(MAX_TOKEN_FORM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_token_post_has_its_body_read() {
        for (method, path, limit) in [
            ("POST", "/token", Some(MAX_TOKEN_FORM)),
            ("GET", "/token", None),
            ("POST", "/v2/", None),
            ("POST", "/_frontdoor/prewarm", None),
            ("PUT", "/token", None),
        ] {
            assert_eq!(body_limit(method, path), limit, "{method} {path}");
        }
    }

    fn cfg() -> Config {
        Config::load(|k| match k {
            "UPSTREAMS" => Some(
                r#"{"docker.io": {"url": "https://registry-1.docker.io"},
                    "ghcr.io": {"url": "https://ghcr.io"},
                    "127.0.0.1:5000": {"url": "http://127.0.0.1:5000"}}"#
                    .into(),
            ),
            "HOSTS" => Some(r#"{"ghcr.example.com": "ghcr.io"}"#.into()),
            _ => None,
        })
        .unwrap()
    }

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn line<'a>(method: &'a str, path: &'a str, query: Option<&'a str>) -> RequestLine<'a> {
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, query),
        };
        RequestLine {
            method,
            host: Some("door.example.com"),
            path,
            query,
        }
    }

    fn ok(method: &str, path: &str, ns: Option<&str>) -> Routed {
        let q = ns.map(|ns| format!("ns={ns}"));
        route(&cfg(), line(method, path, q.as_deref())).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn target_of(r: &Routed) -> (&str, &str) {
        let target = r.route.target().expect("a route with a target");
        (&target.registry, target.repository.as_str())
    }

    #[test]
    fn status_pages() {
        assert_eq!(ok("GET", "/", None).route, Route::Status { page: true });
        assert_eq!(
            ok("HEAD", "/_frontdoor/status", None).route,
            Route::Status { page: false }
        );
    }

    #[test]
    fn base() {
        assert_eq!(ok("GET", "/v2/", None).route, Route::Base);
        assert_eq!(ok("HEAD", "/v2", None).method, Method::Head);
    }

    #[test]
    fn registry_selection_table() {
        let cases = [
            (
                "/v2/alpine/manifests/3",
                None,
                ("docker.io", "library/alpine"),
            ),
            (
                "/v2/library/alpine/manifests/3",
                None,
                ("docker.io", "library/alpine"),
            ),
            (
                "/v2/grafana/loki/manifests/3",
                None,
                ("docker.io", "grafana/loki"),
            ),
            (
                "/v2/docker.io/alpine/manifests/3",
                None,
                ("docker.io", "library/alpine"),
            ),
            ("/v2/ghcr.io/o/app/manifests/3", None, ("ghcr.io", "o/app")),
            ("/v2/ghcr.io/app/manifests/3", None, ("ghcr.io", "app")),
            (
                "/v2/127.0.0.1:5000/x/blobs/D",
                None,
                ("127.0.0.1:5000", "x"),
            ),
            (
                "/v2/o/app/manifests/3",
                Some("ghcr.io"),
                ("ghcr.io", "o/app"),
            ),
            (
                "/v2/alpine/manifests/3",
                Some("docker.io"),
                ("docker.io", "library/alpine"),
            ),
        ];
        for (path, ns, want) in cases {
            let path = path.replace("/D", &format!("/{D}"));
            assert_eq!(target_of(&ok("GET", &path, ns)), want, "{path} ns={ns:?}");
        }
    }

    #[test]
    fn host_map_comes_first() {
        let mut l = line("GET", "/v2/o/app/manifests/1", Some("ns=docker.io"));
        l.host = Some("ghcr.example.com:8443");
        let r = route(&cfg(), l).unwrap();
        assert_eq!(target_of(&r), ("ghcr.io", "o/app"));
    }

    #[test]
    fn tags_and_referrers() {
        let r = ok("GET", "/v2/ghcr.io/o/app/tags/list?n=2&last=v%2B1", None);
        assert_eq!(
            r.route,
            Route::Tags {
                target: Target {
                    registry: "ghcr.io".into(),
                    repository: Repository::parse("o/app").unwrap()
                },
                n: Some(2),
                last: Some("v+1".into()),
                link_path: "/v2/ghcr.io/o/app/tags/list".into(),
                link_ns: None,
            }
        );
        let r = ok("GET", "/v2/alpine/tags/list", Some("docker.io"));
        match r.route {
            Route::Tags {
                target, link_ns, ..
            } => {
                assert_eq!(target.repository.as_str(), "library/alpine");
                assert_eq!(link_ns.as_deref(), Some("docker.io"));
            }
            r => panic!("{r:?}"),
        }
        let path = format!("/v2/a/referrers/{D}?artifactType=application%2Fvnd.example");
        match ok("GET", &path, None).route {
            Route::Referrers {
                digest,
                artifact_type,
                ..
            } => {
                assert_eq!(digest.to_string(), D);
                assert_eq!(artifact_type.as_deref(), Some("application/vnd.example"));
            }
            r => panic!("{r:?}"),
        }
    }

    #[test]
    fn references() {
        match ok("GET", &format!("/v2/a/manifests/{D}"), None).route {
            Route::Manifest {
                reference: Reference::Digest(d),
                ..
            } => assert_eq!(d.to_string(), D),
            r => panic!("{r:?}"),
        }
        match ok("HEAD", &format!("/v2/a/b/blobs/{D}"), None).route {
            Route::Blob { digest, .. } => assert_eq!(digest.to_string(), D),
            r => panic!("{r:?}"),
        }
    }

    #[test]
    fn refusals_table() {
        let cases = [
            ("GET", "/x", None, ErrorCode::Unsupported, 404),
            (
                "GET",
                "/_frontdoor/status/x",
                None,
                ErrorCode::Unsupported,
                404,
            ),
            ("POST", "/", None, ErrorCode::Unsupported, 405),
            (
                "PUT",
                "/_frontdoor/status",
                None,
                ErrorCode::Unsupported,
                405,
            ),
            ("GET", "/v2/x", None, ErrorCode::Unsupported, 404),
            ("GET", "/v2/x/tags", None, ErrorCode::Unsupported, 404),
            ("GET", "/v2/x/other/y", None, ErrorCode::Unsupported, 404),
            (
                "PUT",
                "/v2/x/manifests/1",
                None,
                ErrorCode::Unsupported,
                405,
            ),
            ("DELETE", "/v2/x/blobs/y", None, ErrorCode::Unsupported, 405),
            (
                "GET",
                "/v2/Alpine/manifests/1",
                None,
                ErrorCode::NameInvalid,
                400,
            ),
            (
                "GET",
                "/v2/a/../b/manifests/1",
                None,
                ErrorCode::NameInvalid,
                400,
            ),
            (
                "GET",
                "/v2/a%2Fb/manifests/1",
                None,
                ErrorCode::NameInvalid,
                400,
            ),
            (
                "GET",
                "/v2/a/manifests/",
                None,
                ErrorCode::ManifestUnknown,
                404,
            ),
            (
                "GET",
                "/v2/a/manifests/-x",
                None,
                ErrorCode::ManifestUnknown,
                404,
            ),
            (
                "GET",
                "/v2/a/manifests/.INVALID_MANIFEST_NAME",
                None,
                ErrorCode::ManifestUnknown,
                404,
            ),
            (
                "HEAD",
                "/v2/a/manifests/.INVALID_MANIFEST_NAME",
                None,
                ErrorCode::ManifestUnknown,
                404,
            ),
            (
                "GET",
                "/v2/a/manifests/sha256:zzz",
                None,
                ErrorCode::DigestInvalid,
                400,
            ),
            (
                "GET",
                "/v2/a/manifests/sha256:totallywrong",
                None,
                ErrorCode::DigestInvalid,
                400,
            ),
            (
                "GET",
                "/v2/a/manifests/md5:00",
                None,
                ErrorCode::DigestInvalid,
                400,
            ),
            (
                "GET",
                "/v2/a/blobs/latest",
                None,
                ErrorCode::DigestInvalid,
                400,
            ),
            (
                "GET",
                "/v2/quay.io/a/manifests/1",
                None,
                ErrorCode::NameUnknown,
                404,
            ),
            (
                "GET",
                "/v2/localhost/a/manifests/1",
                None,
                ErrorCode::NameUnknown,
                404,
            ),
            (
                "GET",
                "/v2/a/manifests/1",
                Some("quay.io"),
                ErrorCode::NameUnknown,
                404,
            ),
        ];
        for (method, path, ns, code, status) in cases {
            let q = ns.map(|ns| format!("ns={ns}"));
            let err = route(&cfg(), line(method, path, q.as_deref())).expect_err(path);
            assert_eq!(
                (err.code, err.status),
                (code, status),
                "{method} {path}: {err}"
            );
        }
    }
}
