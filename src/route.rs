//! Request routing: `(method, path, ns)` → what the client asked for, or the OCI error to answer.
//!
//! The registry a request goes to is chosen, in order, by containerd's `ns` query parameter, then a
//! `/v2/<registry>/…` path prefix naming a configured registry, then `DEFAULT_REGISTRY`. A first path
//! component that looks like a hostname (has a `.` or `:`, or is `localhost`, as Docker's reference
//! grammar defines a domain) but is not configured is refused with `NAME_UNKNOWN`: the door never
//! contacts a registry it was not configured for, and never sends such a name to the default one.
//!
//! Names are matched by hand rather than with a router: repository names contain `/`, so the kind
//! (`manifests`/`blobs`) is found from the end of the path.

use crate::config::Config;
use crate::error::{ErrorCode, RegistryError};
use crate::oci::{Digest, Reference, Repository};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
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
}

/// A routed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    pub method: Method,
    pub route: Route,
}

pub fn route(
    cfg: &Config,
    method: &str,
    path: &str,
    ns: Option<&str>,
) -> Result<Routed, RegistryError> {
    let not_found = || {
        RegistryError::new(ErrorCode::Unsupported, format!("no endpoint at {path}"))
            .with_status(404)
    };
    let rest = match path {
        "/v2" | "/v2/" => "",
        _ => path.strip_prefix("/v2/").ok_or_else(not_found)?,
    };
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        other => {
            return Err(RegistryError::new(
                ErrorCode::Unsupported,
                format!("{other} is not supported: this registry mirror is read-only"),
            ))
        }
    };
    if rest.is_empty() {
        return Ok(Routed {
            method,
            route: Route::Base,
        });
    }

    let segments: Vec<&str> = rest.split('/').collect();
    if segments.len() < 3 {
        return Err(not_found());
    }
    let (name, tail) = segments.split_at(segments.len() - 2);
    let (kind, reference) = (tail[0], tail[1]);
    if !matches!(kind, "manifests" | "blobs") {
        return Err(not_found());
    }
    let target = target(cfg, name, ns)?;
    let route = if kind == "manifests" {
        let reference = Reference::parse(reference).map_err(|e| match reference.contains(':') {
            true => RegistryError::new(ErrorCode::DigestInvalid, e),
            false => RegistryError::new(ErrorCode::ManifestInvalid, e),
        })?;
        Route::Manifest { target, reference }
    } else {
        let digest = Digest::parse(reference)
            .map_err(|e| RegistryError::new(ErrorCode::DigestInvalid, e))?;
        Route::Blob { target, digest }
    };
    Ok(Routed { method, route })
}

fn target(cfg: &Config, name: &[&str], ns: Option<&str>) -> Result<Target, RegistryError> {
    let unknown = |registry: &str| {
        RegistryError::new(
            ErrorCode::NameUnknown,
            format!("registry {registry:?} is not served by this mirror"),
        )
    };
    let (registry, repo_segments) = match ns {
        Some(ns) => (ns, name),
        None => match name {
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
    let mut repository = Repository::parse(&repo_segments.join("/"))
        .map_err(|e| RegistryError::new(ErrorCode::NameInvalid, e))?;
    if upstream.implicit_library() && repository.depth() == 1 {
        repository = repository.prefixed("library");
    }
    Ok(Target {
        registry: registry.to_owned(),
        repository,
    })
}

/// Docker's reference grammar: the first component is a domain if it has a `.` or `:` or is
/// `localhost`.
fn looks_like_host(s: &str) -> bool {
    s.contains('.') || s.contains(':') || s == "localhost"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config::load(|k| match k {
            "UPSTREAMS" => Some(
                r#"{"docker.io": {"url": "https://registry-1.docker.io"},
                    "ghcr.io": {"url": "https://ghcr.io"},
                    "127.0.0.1:5000": {"url": "http://127.0.0.1:5000"}}"#
                    .into(),
            ),
            _ => None,
        })
        .unwrap()
    }

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn ok(method: &str, path: &str, ns: Option<&str>) -> Routed {
        route(&cfg(), method, path, ns).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn target_of(r: &Routed) -> (&str, &str) {
        match &r.route {
            Route::Manifest { target, .. } | Route::Blob { target, .. } => {
                (&target.registry, target.repository.as_str())
            }
            Route::Base => panic!("no target"),
        }
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
            ("GET", "/", None, ErrorCode::Unsupported, 404),
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
                ErrorCode::ManifestInvalid,
                400,
            ),
            (
                "GET",
                "/v2/a/manifests/-x",
                None,
                ErrorCode::ManifestInvalid,
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
            let err = route(&cfg(), method, path, ns).expect_err(path);
            assert_eq!(
                (err.code, err.status),
                (code, status),
                "{method} {path}: {err}"
            );
        }
    }
}
