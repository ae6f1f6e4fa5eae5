//! What the door stores and how: storage keys (one place), record encodings, freshness policy.
//! Pure: no storage is touched here.

pub mod keys;
mod record;

pub use record::{AbsentRecord, ManifestRecord, TagRecord};
