//! `/_frontdoor/resolve`: images as digest-pinned references (from `PINS`, the cache, or an
//! upstream HEAD), each under the asker's own access rights.

use super::*;

impl<K, B, U, C> Door<'_, K, B, U, C>
where
    K: Kv,
    U: Upstream,
    B: Blobs<Body = U::Body>,
    C: Coalesce<Body = U::Body>,
{
    /// `/_frontdoor/resolve?image=alpine:3.20&image=ghcr.io/acme/app:1.4`: each image as a
    /// digest-pinned reference (`docker.io/library/alpine:3.20@sha256:…`) for CI to write into
    /// Kubernetes manifests — from `PINS`, the cache, or an upstream HEAD (never a counted pull).
    pub(in crate::proxy) async fn resolve(
        &self,
        query: &str,
        req: &ClientRequest<'_>,
        principal: &Principal,
        outcome: &mut Outcome,
    ) -> Result<Reply<U::Body>, RegistryError> {
        let images: Vec<String> = form_urlencoded::parse(query.as_bytes())
            .filter(|(key, _)| key == "image")
            .map(|(_, image)| image.into_owned())
            .collect();
        // Checked before anything is resolved: one request must not become hundreds upstream.
        if images.len() > MAX_RESOLVE_IMAGES {
            return Err(RegistryError::new(
                ErrorCode::Unsupported,
                format!(
                    "at most {MAX_RESOLVE_IMAGES} images per resolve request; this one names {}: split it",
                    images.len()
                ),
            )
            .with_status(400));
        }
        let mut results = Vec::new();
        for image in images {
            let answer = self.resolve_one(&image, req, principal, outcome).await;
            results.push(match answer {
                Ok((pinned, policy)) => {
                    serde_json::json!({"image": image, "pinned": pinned, "policy": policy})
                }
                Err(e) => serde_json::json!({
                    "image": image,
                    "error": {"code": e.code.as_str(), "message": e.message},
                }),
            });
        }
        let status = if results.is_empty() { 400 } else { 200 };
        let body = serde_json::json!({ "images": results });
        let mut headers = Headers::new();
        headers.set("cache-control", "no-store");
        Ok(reply(
            status,
            headers,
            Body::Bytes(body.to_string().into_bytes()),
            false,
        )
        .with_type(JSON))
    }

    pub(super) async fn resolve_one(
        &self,
        image: &str,
        req: &ClientRequest<'_>,
        principal: &Principal,
        outcome: &mut Outcome,
    ) -> Result<(String, Option<String>), RegistryError> {
        let (target, reference) = parse_image(self.config, image, req.line.host)?;
        let canonical = format!("{}/{}", target.registry, target.repository);
        if !self.config.access.can_pull(principal, &canonical) {
            return Err(RegistryError::new(
                ErrorCode::Denied,
                format!("may not pull {canonical}"),
            ));
        }
        let tag = match &reference {
            Reference::Tag(t) => format!(":{t}"),
            Reference::Digest(_) => String::new(),
        };
        // A HEAD, answered here: an owner would answer the client's request (this resolve).
        let direct = self.direct();
        let answer = direct
            .manifest(&target, &reference, true, None, outcome)
            .await?;
        let digest = answer
            .headers
            .get("docker-content-digest")
            .ok_or_else(|| RegistryError::new(ErrorCode::Unavailable, "upstream sent no digest"))?;
        // How it is frozen (`pinned`, `immutable`) and what else the policy said.
        let policy = answer.headers.get(POLICY_HEADER).map(str::to_owned);
        Ok((format!("{canonical}{tag}@{digest}"), policy))
    }
}
