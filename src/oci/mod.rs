//! OCI vocabulary: digests, repository names and references, manifest media types.
//!
//! Parsing only; nothing here knows about HTTP, storage or the runtime.

mod digest;
mod media;
mod name;

pub use digest::{Algorithm, Digest, Hasher};
pub use media::{acceptable, References, DEFAULT_MANIFEST_ACCEPT};
pub use name::{Reference, Repository};
