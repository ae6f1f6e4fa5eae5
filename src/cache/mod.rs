//! What the door stores and how: storage keys (one place), record encodings, freshness policy,
//! the multipart fill loop and an owner's read-your-writes memory. Pure: no storage is touched
//! here (the fill loop drives an upload behind a trait).

pub mod decide;
pub mod keys;
pub mod multipart;
pub mod recent;
mod record;

pub use record::{AbsentRecord, ManifestRecord, TagRecord, INLINE_MANIFEST_BYTES};
