//! The reply builders, in one place: every answer's common headers ([`reply`]), the OCI error
//! body ([`error_reply`]), and the headers of manifest, tag-pointer, HEAD and blob answers. They
//! only build replies; what to answer is decided elsewhere.

use super::*;

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
    reply(e.status, headers, Body::Bytes(e.body()), head).with_type(JSON)
}

/// Upstream's answer to a manifest HEAD, passed on with its checked type.
pub(super) fn head_reply<S>(upstream: &Headers, media_type: Option<String>) -> Reply<S> {
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

pub(super) fn manifest_reply<S>(record: ManifestRecord, digest: &Digest, head: bool) -> Reply<S> {
    let mut headers = Headers::new();
    headers.set("content-type", record.media_type);
    headers.set("docker-content-digest", digest.to_string());
    headers.set("etag", format!("\"{digest}\""));
    reply(200, headers, Body::Bytes(record.bytes), head)
}

/// A HEAD answered from a tag pointer: what upstream's HEAD said, without the bytes.
pub(super) fn pointer_reply<S>(pointer: &TagRecord, digest: &Digest) -> Reply<S> {
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

pub(super) fn blob_headers(digest: &Digest, len: Option<u64>) -> Headers {
    let mut h = Headers::new();
    h.set("content-type", "application/octet-stream");
    if let Some(len) = len {
        h.set("content-length", len.to_string());
    }
    h.set("docker-content-digest", digest.to_string());
    h.set("accept-ranges", "bytes");
    h
}
