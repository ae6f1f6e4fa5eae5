//! `/_blob/<alg>/<hex>?expires=…&sig=…`, the door's own signed blob URLs (`BLOB_REDIRECT`
//! self-signed): a valid signature gets the bytes straight from storage, cacheable forever.

use super::super::blobs::{parse_range, Served};
use super::*;

impl<K, B, U, C> Door<'_, K, B, U, C>
where
    K: Kv,
    U: Upstream,
    B: Blobs<Body = U::Body>,
    C: Coalesce<Body = U::Body>,
{
    /// `/_blob/<alg>/<hex>?expires=…&sig=…`: the door's own signed blob URL, served straight from
    /// R2 (with `Range`) and cacheable forever — the bytes under a digest never change. A bad or
    /// expired signature gets 403 and no bytes.
    pub(in crate::proxy) async fn signed_blob(
        &self,
        digest: &Digest,
        query: &str,
        head: bool,
        range_header: Option<&str>,
        outcome: &mut Outcome,
    ) -> Result<Reply<U::Body>, RegistryError> {
        let BlobRedirect::SelfSigned(key) = &self.config.blob_redirect else {
            return Err(RegistryError::new(
                ErrorCode::Unsupported,
                "self-signed blob URLs are not enabled",
            )
            .with_status(404));
        };
        url_token::verify_query(&key.0, &digest.to_string(), query, self.now)
            .map_err(|e| RegistryError::new(ErrorCode::Denied, format!("blob URL refused: {e}")))?;
        let range = parse_range(range_header, head)?;
        match self
            .stored_blob(digest, head, range, None, None, outcome)
            .await?
        {
            Served::Reply(mut reply) => {
                reply
                    .headers
                    .set("cache-control", "public, max-age=31536000, immutable");
                Ok(reply)
            }
            Served::Absent | Served::NotVouched(_) => Err(RegistryError::new(
                ErrorCode::BlobUnknown,
                format!("{digest} is not stored"),
            )),
        }
    }
}
