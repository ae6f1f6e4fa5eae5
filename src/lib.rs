//! The front door to container registries: an OCI Distribution pull-through mirror that runs as a
//! Cloudflare Worker, caching manifests in KV and blobs in R2.
//!
//! Pure logic, unit-tested on the host with plain `cargo test`:
//! - [`access`]: who may pull what (`ACCESS`), client credentials, the door's own tokens;
//! - [`config`]: typed settings, validated once;
//! - [`error`]: the one error type that reaches HTTP, as the OCI error body;
//! - [`oci`]: digests, names, references, media types;
//! - [`policy`]: what is served to whom, in one documented order (access, pins, immutable tags,
//!   known-bad digests, signatures), and cosign's simple-signing format;
//! - [`route`]: `(method, host, path, query)` → what was asked for;
//! - [`range`]: HTTP `Range` parsing for blob reads;
//! - [`cache`]: storage keys (one place), record encodings, freshness, the multipart fill loop, an
//!   owner's read-your-writes memory;
//! - [`upstream`]: `WWW-Authenticate` parsing, tokens and their cache, the auth dance, redirects,
//!   and which token realms may receive the service account's credentials;
//! - [`signing`]: SigV4 presigned URLs for R2, and HMAC-signed URLs for the door's own blobs;
//! - [`ports`]: the traits that are the only seam to the runtime;
//! - [`proxy`]: pull-through orchestration, generic over the ports;
//! - [`retention`]: the cron sweep that deletes what was not read for `RETENTION_DAYS`;
//! - [`analytics`]: the Workers Analytics Engine data point written per request;
//! - [`log`]: the JSON log line written per request, and its level;
//! - [`stats`]: door-wide counters for `/_frontdoor/status`, and what an isolate counts and when it
//!   sends them;
//! - [`status`]: who may read the status endpoints, and their answers;
//! - [`status_page`]: the HTML status page at `/`;
//! - [`watchdog`]: idle and whole-answer deadlines for upstream bodies, a coalescing owner's turn
//!   rule, and the length and digest check that errors a wrong blob's stream.
//!
//! Glue, compiled only for `wasm32`: `glue` holds `#[event(fetch)]` and the Workers-backed ports,
//! and is the only code that names `worker::`. Because `worker` is a wasm-only dependency, a host
//! build proves the core never touches the runtime.

pub mod access;
pub mod analytics;
pub mod cache;
pub mod config;
pub mod error;
pub mod log;
pub mod oci;
pub mod policy;
pub mod ports;
pub mod proxy;
pub mod range;
pub mod retention;
pub mod route;
pub mod signing;
pub mod stats;
pub mod status;
pub mod status_page;
pub mod upstream;
pub mod watchdog;

#[cfg(target_arch = "wasm32")]
mod glue;
