//! The only place storage keys are built. The layout:
//!
//! ```text
//! KV (binding CACHE)
//! └── v1/
//!     ├── manifests/<registry>/<repository>/<algorithm>/<hex>   ManifestRecord, immutable
//!     ├── tags/<registry>/<repository>/<tag>                    TagRecord: digest + when fetched
//!     ├── absent/<registry>/<repository>/<reference>            AbsentRecord: upstream said 404
//!     └── links/<registry>/<repository>/<algorithm>/<hex>       the blob belongs to the repository
//! R2 (binding BLOBS)
//! └── blobs/<algorithm>/<hex>                                   blob bytes, checksum-verified on put
//! ```
//!
//! Manifests are kept per repository (they are small, and a manifest names what a repository
//! holds); blobs are shared by digest across repositories and registries, since the same bytes
//! have the same digest everywhere. Every component is validated before it gets here (registry
//! names are configured keys, repositories and tags match the OCI grammar, digests are hex), so
//! no key can contain `..` or an unexpected `/`.

use crate::oci::{Digest, Repository};

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

pub fn blob(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm().as_str(), digest.hex())
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
            link("docker.io", &repo, &d),
            format!("v1/links/docker.io/library/alpine/sha256/{}", d.hex())
        );
        assert_eq!(
            absent("docker.io", &repo, "nope"),
            "v1/absent/docker.io/library/alpine/nope"
        );
    }
}
