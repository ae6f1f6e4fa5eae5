//! Signed URLs, so a client can fetch a blob from somewhere other than the door's own handler
//! without any credential of its own: the URL carries a signature that says who allowed it, for
//! which object, and until when.
//!
//! - [`sigv4`]: AWS Signature Version 4 presigned `GET` URLs for the bucket's S3 API (R2 speaks
//!   it), so blob bytes can go to the client straight from storage;
//! - [`url_token`]: HMAC-signed, expiring query strings for the door's own `/_blob/<digest>`
//!   endpoint, scoped to one digest.
//!
//! Pure: no I/O, no clock (the time is always a parameter, since `SystemTime::now()` panics on
//! wasm32), and no key storage (keys and secrets come from the caller, and `Debug` never shows
//! them). Deciding when to hand out such a URL, and for how long, belongs to the proxy.

pub mod sigv4;
pub mod url_token;
