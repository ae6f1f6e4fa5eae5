//! `/_frontdoor/prewarm` (behind `ADMIN_TOKEN`) and the pre-warm walk it and the cron run: every
//! manifest and blob of an image pulled into the cache, blobs already stored only marked read.

use super::*;

impl<K, B, U, C> Door<'_, K, B, U, C>
where
    K: Kv,
    U: Upstream,
    B: Blobs<Body = U::Body>,
    C: Coalesce<Body = U::Body>,
{
    /// `POST /_frontdoor/prewarm[?image=…]` with `Authorization: Bearer <ADMIN_TOKEN>`: pre-warms
    /// the images named, or `PREWARM`'s.
    pub(in crate::proxy) async fn prewarm_endpoint(
        &self,
        query: &str,
        req: &ClientRequest<'_>,
    ) -> Result<Reply<U::Body>, RegistryError> {
        let allowed = self
            .config
            .admin_token
            .as_ref()
            .is_some_and(|t| crate::access::bearer_is(&t.0, req.authorization));
        if !allowed {
            let mut e = RegistryError::new(
                ErrorCode::Unauthorized,
                "the admin token is missing or wrong",
            );
            e.www_authenticate = Some("Bearer realm=\"frontdoor admin\"".to_owned());
            return Err(e);
        }
        let mut images: Vec<String> = form_urlencoded::parse(query.as_bytes())
            .filter(|(k, _)| k == "image")
            .map(|(_, v)| v.into_owned())
            .collect();
        if images.is_empty() {
            images = self.config.prewarm.clone();
        }
        let mut reports = Vec::new();
        for image in &images {
            reports.push(self.prewarm(image, req.line.host).await);
        }
        let body = serde_json::json!({ "images": reports });
        Ok(reply(
            200,
            Headers::new(),
            Body::Bytes(body.to_string().into_bytes()),
            false,
        )
        .with_type(JSON))
    }

    /// Pulls `image` — every platform of an index, every manifest and blob — into the cache, so a
    /// node rotation finds it warm. Blobs already stored are not fetched again.
    pub async fn prewarm(&self, image: &str, host: Option<&str>) -> Prewarmed {
        let mut report = Prewarmed {
            image: image.to_owned(),
            ..Prewarmed::default()
        };
        if let Err(e) = self.prewarm_into(image, host, &mut report).await {
            report.error = Some(format!("{}: {}", e.code.as_str(), e.message));
        }
        report
    }

    pub(super) async fn prewarm_into(
        &self,
        image: &str,
        host: Option<&str>,
        report: &mut Prewarmed,
    ) -> Result<(), RegistryError> {
        // Fetched here, not through an owner: an owner would answer some client's request.
        let direct = self.direct();
        let (target, reference) = parse_image(self.config, image, host)?;
        let mut outcome = Outcome::default();
        let mut manifests = vec![reference];
        let mut blobs = Vec::new();
        while let Some(reference) = manifests.pop() {
            let reply = direct
                .manifest(&target, &reference, false, None, &mut outcome)
                .await?;
            report.manifests += 1;
            let Body::Bytes(bytes) = reply.body else {
                continue;
            };
            let refs = References::of(&bytes);
            manifests.extend(refs.manifests.into_iter().map(Reference::Digest));
            for digest in refs.blobs {
                if !blobs.contains(&digest) {
                    blobs.push(digest);
                }
            }
        }
        for digest in blobs {
            let stored = self.blobs.stat(&keys::blob(&digest)).await;
            if matches!(&stored, Ok(Some(s)) if s.vouched_by(&target.registry)) {
                // Still wanted: marked read as a pull would, so retention keeps it. (The manifest
                // that names it came from upstream for this repository: it belongs here.)
                if !self.read_link(&target, &digest, &mut outcome).await {
                    self.link_blob(&target, &digest, &mut outcome).await;
                }
                report.blobs_cached += 1;
                continue;
            }
            let reply = direct
                .blob(&target, &digest, false, None, &mut outcome)
                .await?;
            if let Body::Stream(body) = reply.body {
                self.blobs.discard(body);
            }
            report.blobs_fetched += 1;
        }
        Ok(())
    }
}

/// What pre-warming one image did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Prewarmed {
    pub image: String,
    pub manifests: u32,
    pub blobs_fetched: u32,
    pub blobs_cached: u32,
    pub error: Option<String>,
}
