//! Workers Analytics Engine: one data point per request when the `ANALYTICS` binding is present
//! (`[[analytics_engine_datasets]]` in wrangler.toml), so hit ratios, bytes and upstream spend can
//! be queried with SQL over any time range. The fields, in the order written:
//!
//! | field     | value                                                                      |
//! |-----------|----------------------------------------------------------------------------|
//! | `index1`  | registry (`-` when the request named none): the sampling key               |
//! | `blob1`…`blob6` | registry, repository, kind, cache outcome, role (`worker`/`owner`), method |
//! | `blob7`…`blob11` | the audit trail: user (`anonymous` or the `ACCESS` user), client IP (`CF-Connecting-IP`), reference, digest served or refused, policy decision (see `crate::policy`) |
//! | `double1` | HTTP status                                                                |
//! | `double2` | body bytes answered (0 for none or unknown)                                |
//! | `double3` | upstream requests made                                                     |
//! | `double4` | duration, ms                                                               |
//! | `double5` | upstream's `ratelimit-remaining` when it sent one, else -1                 |
//!
//! A blank blob is `-`. Like the log line, a data point never carries a header or a credential.

use crate::proxy::Outcome;

/// A data point as plain values; the glue hands it to `writeDataPoint`.
#[derive(Debug, Clone, PartialEq)]
pub struct DataPoint {
    pub index: String,
    pub blobs: Vec<String>,
    pub doubles: Vec<f64>,
}

/// What one request is recorded as.
pub struct Request<'a> {
    pub role: &'a str,
    pub method: &'a str,
    pub status: u16,
    pub bytes: Option<u64>,
    pub ms: u64,
}

pub fn data_point(req: &Request<'_>, outcome: &Outcome) -> DataPoint {
    let text = |v: Option<&str>| v.filter(|s| !s.is_empty()).unwrap_or("-").to_owned();
    let registry = text(outcome.registry.as_deref());
    // Docker Hub sends `ratelimit-remaining: 76;w=21600`: a count, read as an integer (parsing
    // it as a float would bring core's float parser and its tables into the upload, ~5 KiB).
    let remaining = outcome
        .ratelimit_remaining
        .as_deref()
        .and_then(|r| r.split(';').next()?.trim().parse::<u64>().ok())
        .map_or(-1.0, |r| r as f64);
    DataPoint {
        index: registry.clone(),
        blobs: vec![
            registry,
            text(outcome.repository.as_deref()),
            text(Some(outcome.kind.as_str())),
            text(outcome.cache.map(|c| c.as_str())),
            text(Some(req.role)),
            text(Some(req.method)),
            text(outcome.user.as_deref()),
            text(outcome.client_ip.as_deref()),
            text(outcome.reference.as_deref()),
            text(outcome.digest.as_deref()),
            text(outcome.decision.as_deref()),
        ],
        doubles: vec![
            f64::from(req.status),
            req.bytes.unwrap_or(0) as f64,
            f64::from(outcome.upstream_calls),
            req.ms as f64,
            remaining,
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::CacheOutcome;

    #[test]
    fn a_request_becomes_one_point() {
        let outcome = Outcome {
            registry: Some("docker.io".into()),
            repository: Some("library/alpine".into()),
            kind: crate::route::Kind::Blob,
            cache: Some(CacheOutcome::Miss),
            upstream_calls: 2,
            ratelimit_remaining: Some("76;w=21600".into()),
            user: Some("ann".into()),
            client_ip: Some("203.0.113.7".into()),
            reference: Some("sha256:ab".into()),
            digest: Some("sha256:ab".into()),
            decision: Some("verified by key 1".into()),
            ..Outcome::default()
        };
        let req = Request {
            role: "worker",
            method: "GET",
            status: 200,
            bytes: Some(3_000_000),
            ms: 41,
        };
        let point = data_point(&req, &outcome);
        assert_eq!(point.index, "docker.io");
        assert_eq!(
            point.blobs,
            [
                "docker.io",
                "library/alpine",
                "blob",
                "miss",
                "worker",
                "GET",
                "ann",
                "203.0.113.7",
                "sha256:ab",
                "sha256:ab",
                "verified by key 1"
            ]
        );
        assert_eq!(point.doubles, [200.0, 3_000_000.0, 2.0, 41.0, 76.0]);

        let bare = data_point(
            &Request {
                status: 404,
                bytes: None,
                ..req
            },
            &Outcome {
                kind: crate::route::Kind::Other,
                ..Outcome::default()
            },
        );
        assert_eq!(bare.index, "-");
        assert_eq!(bare.blobs[..4], ["-", "-", "other", "-"]);
        assert_eq!(bare.doubles, [404.0, 0.0, 0.0, 41.0, -1.0]);
    }
}
