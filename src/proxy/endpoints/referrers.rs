//! `referrers/<digest>`: upstream's referrers API, else the referrers tag schema
//! (`<alg>-<hex>`), else an empty index; filtered by `artifactType` when upstream did not.

use super::*;

impl<K, B, U, C> Door<'_, K, B, U, C>
where
    K: Kv,
    U: Upstream,
    B: Blobs<Body = U::Body>,
    C: Coalesce<Body = U::Body>,
{
    /// The referrers of `digest`: upstream's referrers API, or — when upstream answers 404, which
    /// the spec forbids a registry that has the API to do — the referrers tag schema
    /// (`<alg>-<hex>` tag holding an index), or an empty index when that tag does not exist either.
    pub(in crate::proxy) async fn referrers(
        &self,
        target: &Target,
        digest: &Digest,
        artifact_type: Option<&str>,
        head: bool,
        outcome: &mut Outcome,
    ) -> Result<Reply<U::Body>, RegistryError> {
        let mut tail = format!("referrers/{digest}");
        if let Some(t) = artifact_type {
            let q: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("artifactType", t)
                .finish();
            tail = format!("{tail}?{q}");
        }
        let mut headers = Headers::new();
        headers.set("accept", OCI_INDEX);
        let fetched = self
            .fetch_upstream(target, HttpMethod::Get, &tail, headers, outcome)
            .await?;
        let (index, filtered_upstream) = match fetched.status {
            200 => {
                let filtered = fetched
                    .headers
                    .get("oci-filters-applied")
                    .is_some_and(|f| f.split(',').any(|x| x.trim() == "artifactType"));
                let bytes = self
                    .upstream
                    .read(fetched.body, MAX_MANIFEST_BYTES)
                    .await
                    .map_err(|e| net_error(&target.registry, e))?;
                (Some(bytes), filtered)
            }
            404 => {
                let tag =
                    Reference::Tag(format!("{}-{}", digest.algorithm().as_str(), digest.hex()));
                // Read here, not through an owner: the owner would answer the client's request
                // (this referrers call), not the tag's manifest.
                // (Its bytes are read here: no owner either, whose answer would be a stream.)
                let direct = self.direct();
                // By tag, not through `manifest`: a listing of signatures is not an image the
                // policy judges (and `VERIFY` looks up referrers itself).
                let Reference::Tag(tag) = &tag else {
                    unreachable!("a tag")
                };
                match direct
                    .manifest_by_tag(target, tag, false, Some(OCI_INDEX), outcome)
                    .await
                {
                    Ok(r) => match r.body {
                        Body::Bytes(b) => (Some(b), false),
                        _ => (None, false),
                    },
                    Err(e) if e.code == ErrorCode::ManifestUnknown => (None, false),
                    Err(e) => return Err(e),
                }
            }
            s => {
                return Err(upstream_status(
                    s,
                    &fetched.headers,
                    ErrorCode::ManifestUnknown,
                    &target.registry,
                ))
            }
        };
        let mut index: serde_json::Value = match index {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                RegistryError::new(
                    ErrorCode::Unavailable,
                    format!("upstream referrers index is not JSON: {e}"),
                )
            })?,
            None => {
                serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})
            }
        };
        let mut headers = Headers::new();
        headers.set("content-type", OCI_INDEX);
        if let Some(wanted) = artifact_type {
            if !filtered_upstream {
                if let Some(list) = index
                    .get_mut("manifests")
                    .and_then(serde_json::Value::as_array_mut)
                {
                    list.retain(|m| m.get("artifactType").and_then(|t| t.as_str()) == Some(wanted));
                }
            }
            headers.set("oci-filters-applied", "artifactType");
        }
        let body = serde_json::to_vec(&index).expect("a JSON value serializes");
        Ok(reply(200, headers, Body::Bytes(body), head))
    }
}
