//! What the door stores and how: storage keys (one place), record encodings, freshness policy.
//! Pure: no storage is touched here.

pub mod decide;
pub mod keys;
pub mod multipart;
mod record;

pub use record::{AbsentRecord, ManifestRecord, TagRecord, INLINE_MANIFEST_BYTES};
