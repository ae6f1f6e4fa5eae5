//! The only place storage keys are built. The layout:
//!
//! ```text
//! KV (binding CACHE)
//! └── v1/
//!     ├── manifests/<registry>/<repository>/<algorithm>/<hex>   ManifestRecord, immutable
//!     ├── tags/<registry>/<repository>/<tag>                    TagRecord: the canonical answer,
//!     │                                                         carrying its manifest (≤ 64 KiB)
//!     ├── tags/<registry>/<repository>/<tag>@t<set>             TagRecord: a narrow client's answer
//!     ├── absent/<registry>/<repository>/<reference>            AbsentRecord: upstream said 404
//!     ├── links/<registry>/<repository>/<algorithm>/<hex>       the blob belongs to the repository
//!     └── blobs/<algorithm>/<hex>                               empty: the blob's last-read mark
//! retention                                                     the retention sweep's cursor
//! credentials/<registry>/<upstream>                             mint::Record: a minted cloud
//!                                                               credential (0: the upstream, i:
//!                                                               fallback i-1); never swept
//! policy/                                                       never swept: the policy's memory
//! ├── immutable/<registry>/<repository>/<tag>                   the tag's first digest (IMMUTABLE_TAGS)
//! └── verified/<key set>/<algorithm>/<hex>                      a trusted signature covers the digest
//! R2 (binding BLOBS)
//! ├── blobs/<algorithm>/<hex>                                   blob bytes, checksum-verified on put
//! └── spool/<algorithm>/<hex>/<fill>/<n>                        a fill's n-th segment while it runs
//! ```
//!
//! A fill a herd follows (`crate::glue::spool`) stores its bytes segment by segment under
//! `spool/` as they arrive, so a client joining late reads back what has gone by; the blob's own
//! object is then put together from the segments (checksum-verified like any put) and the
//! segments deleted. `<fill>` (the fill's start, in ms) keeps two fills of one blob apart.
//!
//! Every `v1/` record carries, in its KV metadata, the day it was last read; the retention sweep
//! (`crate::retention`) lists `v1/` and deletes what has not been read for `RETENTION_DAYS`,
//! taking a blob's bytes from R2 with its `v1/blobs/` mark.
//!
//! A tag's record carries the manifest it names when that is small (`INLINE_MANIFEST_BYTES`;
//! typically a few KiB): a warm pull of the tag is then one KV read, where a pointer alone costs
//! two in sequence (the pointer, then `manifests/` by digest). The manifest is still stored by
//! digest — pulls by digest, HEADs that learn only the digest and larger manifests read it there
//! — and is marked read whenever its tag's record is, so retention keeps the two together.
//!
//! Manifests are kept per repository (they are small, and a manifest names what a repository
//! holds); blobs are shared by digest across repositories and registries, since the same bytes
//! have the same digest everywhere. Every component is validated before it gets here (registry
//! names are configured keys, repositories and tags match the OCI grammar, digests are hex), so
//! no key can contain `..` or an unexpected `/`.

use crate::oci::{Digest, Repository};

/// The minted credential of `registry`'s upstream `upstream` (0, or fallback `i - 1` as `i`),
/// outside `v1/` so the retention sweep never deletes it (`crate::upstream::cloud::mint`).
pub fn credential(registry: &str, upstream: usize) -> String {
    format!("credentials/{registry}/{upstream}")
}

pub fn manifest(registry: &str, repository: &Repository, digest: &Digest) -> String {
    format!(
        "v1/manifests/{registry}/{repository}/{}/{}",
        digest.algorithm().as_str(),
        digest.hex()
    )
}

pub fn tag(registry: &str, repository: &Repository, tag: &str) -> String {
    format!("v1/tags/{registry}/{repository}/{tag}")
}

/// What `tag` named for clients that accept only the manifest types in `set` (see
/// `crate::cache::decide`); `@` cannot occur in a tag, so this never collides with a tag's key.
pub fn narrow_tag(registry: &str, repository: &Repository, tag: &str, set: &str) -> String {
    format!("v1/tags/{registry}/{repository}/{tag}@{set}")
}

/// A manifest upstream answered 404 for (`reference` is a tag or a digest).
pub fn absent(registry: &str, repository: &Repository, reference: &str) -> String {
    format!("v1/absent/{registry}/{repository}/{reference}")
}

/// Marks that `digest` was fetched through (or confirmed upstream for) `repository`.
pub fn link(registry: &str, repository: &Repository, digest: &Digest) -> String {
    format!(
        "v1/links/{registry}/{repository}/{}/{}",
        digest.algorithm().as_str(),
        digest.hex()
    )
}

/// Everything retention sweeps is under this prefix.
pub const RECORDS: &str = "v1/";

/// The retention sweep's cursor (outside `RECORDS`, so the sweep never sees it).
pub const RETENTION_STATE: &str = "retention";

/// The blob's last-read mark in KV (its bytes are in R2 under `blob`).
pub fn blob_read(digest: &Digest) -> String {
    format!("v1/blobs/{}/{}", digest.algorithm().as_str(), digest.hex())
}

/// The R2 key of the blob whose `blob_read` mark is `mark`, if `mark` is one.
pub fn blob_of_mark(mark: &str) -> Option<String> {
    mark.strip_prefix("v1/")
        .filter(|k| k.starts_with("blobs/"))
        .map(str::to_owned)
}

/// The digest an immutable tag was first served as (`crate::policy::ImmutableRecord`).
pub fn immutable_tag(registry: &str, repository: &Repository, tag: &str) -> String {
    format!("policy/immutable/{registry}/{repository}/{tag}")
}

/// That a signature by a key of `key_set` (its id) covers `digest` (`crate::policy::VerifiedRecord`).
pub fn verified(key_set: &str, digest: &Digest) -> String {
    format!(
        "policy/verified/{key_set}/{}/{}",
        digest.algorithm().as_str(),
        digest.hex()
    )
}

pub fn blob(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm().as_str(), digest.hex())
}

/// The `n`-th segment of the fill of the blob stored under `blob_key` that started at `fill_ms`.
/// `blob_key` is what [`blob`] built (`blobs/<algorithm>/<hex>`).
pub fn spool_segment(blob_key: &str, fill_ms: u64, n: u32) -> String {
    let blob = blob_key.strip_prefix("blobs/").unwrap_or(blob_key);
    format!("spool/{blob}/{fill_ms}/{n}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let repo = Repository::parse("library/alpine").unwrap();
        let d = Digest::of(crate::oci::Algorithm::Sha256, b"");
        assert_eq!(
            manifest("docker.io", &repo, &d),
            format!("v1/manifests/docker.io/library/alpine/sha256/{}", d.hex())
        );
        assert_eq!(
            tag("docker.io", &repo, "3.20"),
            "v1/tags/docker.io/library/alpine/3.20"
        );
        assert_eq!(blob(&d), format!("blobs/sha256/{}", d.hex()));
        assert_eq!(
            spool_segment(&blob(&d), 1700, 3),
            format!("spool/sha256/{}/1700/3", d.hex())
        );
        assert_eq!(blob_read(&d), format!("v1/blobs/sha256/{}", d.hex()));
        assert_eq!(blob_of_mark(&blob_read(&d)), Some(blob(&d)));
        assert_eq!(blob_of_mark(&link("docker.io", &repo, &d)), None);
        assert!(!RETENTION_STATE.starts_with(RECORDS));
        assert!(!immutable_tag("docker.io", &repo, "v1").starts_with(RECORDS));
        assert!(!verified("0011", &d).starts_with(RECORDS));
        assert_eq!(
            link("docker.io", &repo, &d),
            format!("v1/links/docker.io/library/alpine/sha256/{}", d.hex())
        );
        assert_eq!(
            absent("docker.io", &repo, "nope"),
            "v1/absent/docker.io/library/alpine/nope"
        );
    }
}
