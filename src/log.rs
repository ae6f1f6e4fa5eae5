//! The request log: one JSON line per request, and whether it is an error line. Names and numbers
//! from the request's [`Outcome`] and its answer — never a header (headers carry credentials: the
//! client's `Authorization`, upstream's tokens), so none is given to it. Pure: the glue prints
//! the line.

use crate::analytics::Request;
use crate::proxy::Outcome;

/// Which console a line goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    /// The door failed the request (a 5xx): `console.error`, where alerts look.
    Error,
}

/// The line for one request to `path` (the path only: a query may carry anything), answered as
/// `req` says.
pub fn request_line(req: &Request<'_>, path: &str, outcome: &Outcome) -> (Level, String) {
    let line = Line {
        role: req.role,
        method: req.method,
        path,
        status: req.status,
        bytes: req.bytes,
        kind: outcome.kind.as_str(),
        registry: outcome.registry.as_deref(),
        repository: outcome.repository.as_deref(),
        cache: outcome.cache.map(|c| c.as_str()),
        coalesced: outcome.coalesced,
        upstream_calls: outcome.upstream_calls,
        ratelimit_remaining: outcome.ratelimit_remaining.as_deref(),
        user: outcome.user.as_deref(),
        client_ip: outcome.client_ip.as_deref(),
        reference: outcome.reference.as_deref(),
        digest: outcome.digest.as_deref(),
        decision: outcome.decision.as_deref(),
        ms: req.ms,
        notes: &outcome.notes,
    };
    let level = if req.status >= 500 {
        Level::Error
    } else {
        Level::Info
    };
    let text = serde_json::to_string(&line).expect("a line of strings and numbers serializes");
    (level, text)
}

/// The line's fields, borrowed from the request and its outcome (every request logs one: no
/// JSON tree is built for it).
#[derive(serde::Serialize)]
struct Line<'a> {
    role: &'a str,
    method: &'a str,
    path: &'a str,
    status: u16,
    bytes: Option<u64>,
    kind: &'a str,
    registry: Option<&'a str>,
    repository: Option<&'a str>,
    cache: Option<&'a str>,
    coalesced: bool,
    upstream_calls: u32,
    ratelimit_remaining: Option<&'a str>,
    user: Option<&'a str>,
    client_ip: Option<&'a str>,
    reference: Option<&'a str>,
    digest: Option<&'a str>,
    decision: Option<&'a str>,
    ms: u64,
    notes: &'a [String],
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::CacheOutcome;
    use crate::route::Kind;
    use serde_json::{json, Value};

    fn request(status: u16) -> Request<'static> {
        Request {
            role: "owner",
            method: "GET",
            status,
            bytes: Some(1234),
            ms: 17,
        }
    }

    #[test]
    fn the_line_carries_the_outcome_and_nothing_else() {
        let outcome = Outcome {
            registry: Some("docker.io".into()),
            repository: Some("library/alpine".into()),
            kind: Kind::Manifest,
            cache: Some(CacheOutcome::Revalidated),
            upstream_calls: 3,
            coalesced: true,
            ratelimit_remaining: Some("76;w=21600".into()),
            ratelimit_limit: Some("100;w=21600".into()),
            notes: vec!["kv put failed".into()],
            upstream_down: Some(30),
            user: Some("ann".into()),
            client_ip: Some("203.0.113.7".into()),
            reference: Some("3.20".into()),
            digest: Some("sha256:ab".into()),
            decision: Some("verified by key 1".into()),
            tag_moved: Some(("i".into(), "sha256:a".into(), "sha256:b".into())),
        };
        let (level, line) =
            request_line(&request(200), "/v2/library/alpine/manifests/3.20", &outcome);
        assert_eq!(level, Level::Info);
        let got: Value = serde_json::from_str(&line).unwrap();
        // Exactly these fields: a header, a token or a password has no field to go in.
        assert_eq!(
            got,
            json!({
                "role": "owner", "method": "GET", "path": "/v2/library/alpine/manifests/3.20",
                "status": 200, "bytes": 1234, "kind": "manifest", "registry": "docker.io",
                "repository": "library/alpine", "cache": "revalidated", "coalesced": true,
                "upstream_calls": 3, "ratelimit_remaining": "76;w=21600", "user": "ann",
                "client_ip": "203.0.113.7", "reference": "3.20", "digest": "sha256:ab",
                "decision": "verified by key 1", "ms": 17, "notes": ["kv put failed"],
            })
        );
        assert!(!line.contains('\n'), "one line");

        let (_, bare) = request_line(
            &Request {
                bytes: None,
                ..request(404)
            },
            "/nowhere",
            &Outcome::default(),
        );
        let bare: Value = serde_json::from_str(&bare).unwrap();
        assert_eq!(bare["bytes"], Value::Null);
        assert_eq!(bare["cache"], Value::Null);
        assert_eq!(bare["user"], Value::Null);
        assert_eq!(bare["notes"], json!([]));
        assert_eq!(
            bare.as_object().unwrap().len(),
            19,
            "the same fields, empty"
        );
    }

    #[test]
    fn server_failures_are_error_lines() {
        let cases = [
            (200, Level::Info),
            (401, Level::Info),
            (404, Level::Info),
            (499, Level::Info),
            (500, Level::Error),
            (502, Level::Error),
            (504, Level::Error),
        ];
        for (status, want) in cases {
            let (level, _) = request_line(&request(status), "/v2/", &Outcome::default());
            assert_eq!(level, want, "{status}");
        }
    }
}
