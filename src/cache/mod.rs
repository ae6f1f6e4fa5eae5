//! What the door stores and how: storage keys (one place), record encodings, freshness policy,
//! how a fill is stored and the multipart fill loop, a spooled fill's state (what a herd's later
//! clients read next), an owner's read-your-writes memory, and the worker's memory of this
//! second's KV reads. Pure: no storage is touched
//! here (the fill loop drives an upload behind a trait).

pub mod decide;
pub mod keys;
pub mod memo;
pub mod multipart;
pub mod recent;
mod record;
pub mod spool;

pub use record::{AbsentRecord, ManifestRecord, TagRecord, INLINE_MANIFEST_BYTES};
