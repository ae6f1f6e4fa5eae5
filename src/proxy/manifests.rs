//! The manifest store by digest: a manifest is immutable, so the stored copy is served; else it
//! is fetched upstream, verified (against the digest asked for, or upstream's
//! `Docker-Content-Digest`), given a checked media type and stored. Upstream's refusals, and a 404
//! remembered for `NEGATIVE_TTL_SECONDS`. Tags are `super::tags`'s; what may be served at all is
//! decided first and last by `super::policy`.

use super::*;

impl<K, B, U, C> Door<'_, K, B, U, C>
where
    K: Kv,
    U: Upstream,
    B: Blobs<Body = U::Body>,
    C: Coalesce<Body = U::Body>,
{
    /// A manifest by digest: immutable, so a cached copy is always served; otherwise fetched,
    /// verified and stored.
    pub(super) async fn manifest_by_digest(
        &self,
        target: &Target,
        digest: &Digest,
        head: bool,
        accept: Option<&str>,
        outcome: &mut Outcome,
    ) -> Result<Reply<U::Body>, RegistryError> {
        let (registry, repo) = (&target.registry, &target.repository);
        if let Some(record) = self
            .cached_manifest(target, digest, outcome)
            .await
            .filter(|r| acceptable(&r.media_type, accept))
        {
            outcome.cache = Some(CacheOutcome::Hit);
            return Ok(manifest_reply(record, digest, head));
        }
        let reference = Reference::Digest(digest.clone());
        if self.absent_fresh(target, &reference).await {
            outcome.cache = Some(CacheOutcome::Hit);
            return Err(RegistryError::new(
                ErrorCode::ManifestUnknown,
                format!("{registry} does not have {repo}@{digest}"),
            ));
        }
        outcome.cache = Some(CacheOutcome::Miss);
        let key = keys::manifest(registry, repo, digest);
        let here = Box::pin(self.fetch_by_digest(target, digest, head, accept, outcome));
        let missed = self.misses.object(&key, here).await;
        self.answered(target, missed, outcome)
    }

    /// A manifest by digest, from upstream: verified and stored.
    async fn fetch_by_digest(
        &self,
        target: &Target,
        digest: &Digest,
        head: bool,
        accept: Option<&str>,
        outcome: &mut Outcome,
    ) -> Result<Reply<U::Body>, RegistryError> {
        let registry = &target.registry;
        let reference = Reference::Digest(digest.clone());
        let tail = format!("manifests/{digest}");
        let mut headers = Headers::new();
        headers.set("accept", accept.unwrap_or(DEFAULT_MANIFEST_ACCEPT));
        if head {
            let fetched = self
                .fetch_upstream(target, HttpMethod::Head, &tail, headers, outcome)
                .await?;
            if fetched.status != 200 {
                return Err(self
                    .refused(target, &reference, &fetched, true, outcome)
                    .await);
            }
            let media_type = head_media_type(registry, &fetched.headers, outcome)?;
            return Ok(head_reply(&fetched.headers, media_type));
        }
        let (digest, record) = self
            .get_manifest(target, &reference, &tail, headers, outcome)
            .await?;
        Ok(manifest_reply(record, &digest, false))
    }

    /// The manifest stored under `digest` for this repository, if any (and if it still verifies).
    pub(super) async fn cached_manifest(
        &self,
        target: &Target,
        digest: &Digest,
        outcome: &mut Outcome,
    ) -> Option<ManifestRecord> {
        self.kv_get(
            &keys::manifest(&target.registry, &target.repository, digest),
            outcome,
        )
        .await
        .and_then(|b| ManifestRecord::decode(&b, digest))
        // A record stored before media types were checked may hold one that must not be served:
        // it is a miss, fetched again.
        .filter(|r| manifest_media_type(&r.media_type).is_some())
    }

    /// Whether upstream said 404 for `reference` less than `NEGATIVE_TTL_SECONDS` ago. (Read
    /// without marking it read: a 404 is remembered only briefly.)
    pub(super) async fn absent_fresh(&self, target: &Target, reference: &Reference) -> bool {
        let key = keys::absent(&target.registry, &target.repository, &reference.to_string());
        self.kv
            .get(&key)
            .await
            .ok()
            .flatten()
            .and_then(|e| AbsentRecord::decode(&e.value))
            .is_some_and(|a| a.is_fresh(self.now, self.config.negative_ttl_seconds))
    }

    /// GETs `tail` (the manifest `reference` names) upstream and [`Self::receive`]s it; any answer
    /// but 200 is refused as [`Self::refused`] says (remembered when it is a 404).
    pub(super) async fn get_manifest(
        &self,
        target: &Target,
        reference: &Reference,
        tail: &str,
        headers: Headers,
        outcome: &mut Outcome,
    ) -> Result<(Digest, ManifestRecord), RegistryError> {
        let fetched = self
            .fetch_upstream(target, HttpMethod::Get, tail, headers, outcome)
            .await?;
        if fetched.status != 200 {
            return Err(self
                .refused(target, reference, &fetched, true, outcome)
                .await);
        }
        self.receive(target, reference, fetched, outcome).await
    }

    /// Reads a manifest GET's body, verifies it against `reference` and upstream's claimed digest,
    /// and stores it by digest (immutable).
    pub(super) async fn receive(
        &self,
        target: &Target,
        reference: &Reference,
        fetched: Fetched<U::Body>,
        outcome: &mut Outcome,
    ) -> Result<(Digest, ManifestRecord), RegistryError> {
        let bytes = self
            .upstream
            .read(fetched.body, MAX_MANIFEST_BYTES)
            .await
            .map_err(|e| net_error(&target.registry, e))?;
        let digest = verified_digest(
            reference,
            fetched.headers.get("docker-content-digest"),
            &bytes,
        )
        .map_err(|m| {
            outcome.notes.push(m.clone());
            RegistryError::new(ErrorCode::Unavailable, m)
        })?;
        let media_type = media_type_of(
            &target.registry,
            fetched.headers.get("content-type"),
            &bytes,
        )
        .inspect_err(|e| outcome.notes.push(e.message.clone()))?;
        let record = ManifestRecord { media_type, bytes };
        self.kv_put(
            &keys::manifest(&target.registry, &target.repository, &digest),
            record.encode(),
            outcome,
        )
        .await;
        Ok((digest, record))
    }

    /// The error for a manifest answer that is not 200; a 404 to the full `Accept` (`remember`)
    /// is remembered for a short while.
    pub(super) async fn refused(
        &self,
        target: &Target,
        reference: &Reference,
        fetched: &Fetched<U::Body>,
        remember: bool,
        outcome: &mut Outcome,
    ) -> RegistryError {
        if fetched.status == 404 && remember {
            let key = keys::absent(&target.registry, &target.repository, &reference.to_string());
            let record = AbsentRecord {
                fetched_at: self.now,
            };
            self.kv_put(&key, record.encode(), outcome).await;
        }
        upstream_status(
            fetched.status,
            &fetched.headers,
            ErrorCode::ManifestUnknown,
            &target.registry,
        )
    }
}

/// The digest of manifest `bytes`, checked against what was asked for and what upstream claimed.
pub(super) fn verified_digest(
    reference: &Reference,
    claimed: Option<&str>,
    bytes: &[u8],
) -> Result<Digest, String> {
    let claimed = claimed.and_then(|c| Digest::parse(c.trim()).ok());
    if let Reference::Digest(want) = reference {
        if !want.verifies(bytes) {
            return Err(format!("upstream manifest does not match {want}"));
        }
        return Ok(want.clone());
    }
    match claimed {
        Some(c) if !c.verifies(bytes) => Err(format!(
            "upstream manifest does not match its Docker-Content-Digest {c}"
        )),
        Some(c) => Ok(c),
        None => Ok(Digest::of(crate::oci::Algorithm::Sha256, bytes)),
    }
}

/// The type a fetched manifest is served and stored with (see [`serving_type`]); a manifest upstream
/// gives no usable type for is refused, and nothing is stored.
pub(super) fn media_type_of(
    registry: &str,
    content_type: Option<&str>,
    bytes: &[u8],
) -> Result<String, RegistryError> {
    serving_type(content_type, bytes).map_err(|_| unusable_media_type(registry))
}

pub(super) fn unusable_media_type(registry: &str) -> RegistryError {
    RegistryError::new(
        ErrorCode::Unavailable,
        format!("upstream {registry} sent an unusable media type for the manifest (not an application/…+json manifest type)"),
    )
}

/// The type of an upstream manifest HEAD answer. There is no body to fall back on: upstream's
/// type is served if valid, dropped if it says nothing, and refused (nothing recorded) otherwise.
pub(super) fn head_media_type(
    registry: &str,
    headers: &Headers,
    outcome: &mut Outcome,
) -> Result<Option<String>, RegistryError> {
    match headers.get("content-type") {
        None => Ok(None),
        Some(t) if says_nothing(t) => Ok(None),
        Some(t) => manifest_media_type(t).map(Some).ok_or_else(|| {
            let e = unusable_media_type(registry);
            outcome.notes.push(e.message.clone());
            e
        }),
    }
}
