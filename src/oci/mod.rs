//! OCI vocabulary: digests, repository names and references, manifest media types.
//!
//! Parsing only; nothing here knows about HTTP, storage or the runtime.

mod digest;
mod media;
mod name;

pub use digest::{Algorithm, Digest, Hasher};
pub use media::{
    acceptable, manifest_media_type, says_nothing, serving_type, References, UnusableMediaType,
    DEFAULT_MANIFEST_ACCEPT, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, JSON, OCI_INDEX, OCI_MANIFEST,
};
pub use name::{Reference, Repository};
