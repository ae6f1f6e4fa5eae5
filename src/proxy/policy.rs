//! The policy carried out (its decisions are `crate::policy`'s): a manifest request resolved
//! before anything is fetched, its answer admitted before it is served, an immutable tag's first
//! digest remembered (and upstream's tag compared with it once per `TAG_TTL_SECONDS`), and the
//! signatures `VERIFY` asks for fetched and checked — once per (key set, digest), remembered in KV,
//! so a warm pull costs one KV read and no upstream request.

use super::*;
use crate::policy::{
    self as rules, cosign, sigstore, ImmutableRecord, KeySet, Refusal, Signed, Step, VerifiedRecord,
};

/// The policy decision of an answer, sent to the client as `X-Frontdoor-Policy` — and how an
/// object's owner tells the worker that handed it the request what it decided.
pub const POLICY_HEADER: &str = "x-frontdoor-policy";

/// Who the audit trail names.
pub(super) fn user_of(principal: &Principal) -> String {
    match principal {
        Principal::Anonymous => "anonymous".into(),
        Principal::User(user) => user.clone(),
        Principal::Token { subject, .. } => subject.clone(),
    }
}

/// The digest a refusal is about, sent with it (a refusal has no `Docker-Content-Digest`).
pub const REFUSED_DIGEST_HEADER: &str = "x-frontdoor-refused-digest";

/// The decision goes out with the answer (and a refusal names its digest); an answer that already
/// carries one (an owner's) is where this request's decision came from.
pub(super) fn note_decision<S>(reply: &mut Reply<S>, outcome: &mut Outcome) {
    match (&outcome.decision, reply.headers.get(POLICY_HEADER)) {
        (Some(d), _) => {
            reply.headers.set(POLICY_HEADER, d.clone());
            if let (true, Some(digest)) = (reply.status >= 400, &outcome.digest) {
                reply.headers.set(REFUSED_DIGEST_HEADER, digest.clone());
            }
        }
        (None, Some(theirs)) => {
            outcome.decision = Some(theirs.to_owned());
            if outcome.digest.is_none() {
                let digest = reply
                    .headers
                    .get(REFUSED_DIGEST_HEADER)
                    .or(reply.headers.get("docker-content-digest"));
                outcome.digest = digest.map(str::to_owned);
            }
        }
        (None, None) => {}
    }
}

impl<K, B, U, C> Door<'_, K, B, U, C>
where
    K: Kv,
    U: Upstream,
    B: Blobs<Body = U::Body>,
    C: Coalesce<Body = U::Body>,
{
    /// A manifest, under the policy: resolved (pins, immutable tags, `DENY` of what is asked for),
    /// answered by digest or by tag, then admitted (`DENY`, `VERIFY`) before it is served.
    pub(super) async fn manifest(
        &self,
        target: &Target,
        reference: &Reference,
        head: bool,
        accept: Option<&str>,
        outcome: &mut Outcome,
    ) -> Result<Reply<U::Body>, RegistryError> {
        let (registry, repo) = (&target.registry, &target.repository);
        outcome.reference = Some(reference.to_string());
        let tag = match reference {
            Reference::Tag(t) => Some(t.as_str()),
            Reference::Digest(_) => None,
        };
        let immutable = tag.filter(|t| {
            self.config.policy.is_immutable(registry, repo.as_str(), t)
                && !self
                    .config
                    .pins
                    .contains_key(&pin_key(registry, repo.as_str(), t))
        });
        let mut record = None;
        if let Some(tag) = immutable {
            let key = keys::immutable_tag(registry, repo, tag);
            record = self
                .kv
                .get(&key)
                .await
                .ok()
                .flatten()
                .and_then(|e| serde_json::from_slice::<ImmutableRecord>(&e.value).ok());
        }
        let learned = record.as_ref().and_then(|r| Digest::parse(&r.digest).ok());
        let resolved = rules::resolve(
            self.config,
            registry,
            repo.as_str(),
            reference,
            learned.as_ref(),
        )
        .map_err(|r| {
            // The digest refused, when one was named (asked for, pinned or learned).
            outcome.digest = match reference {
                Reference::Digest(d) => Some(d.to_string()),
                Reference::Tag(t) => self
                    .config
                    .pins
                    .get(&pin_key(registry, repo.as_str(), t))
                    .or(learned.as_ref())
                    .map(Digest::to_string),
            };
            self.refuse(r, outcome)
        })?;
        let mut steps: Vec<Step> = resolved.step.iter().cloned().collect();
        if let (Reference::Digest(d), Some(tag)) = (&resolved.reference, tag) {
            match resolved.step {
                Some(Step::Pinned) => outcome.notes.push(format!("{tag} is pinned to {d}")),
                Some(Step::Immutable) => {
                    let record = record.clone().expect("learned from a record");
                    self.recheck_immutable(target, tag, record, outcome).await;
                }
                _ => {}
            }
        }
        let mut reply = match &resolved.reference {
            Reference::Digest(digest) => {
                self.manifest_by_digest(target, digest, head, accept, outcome)
                    .await?
            }
            Reference::Tag(tag) => {
                self.manifest_by_tag(target, tag, head, accept, outcome)
                    .await?
            }
        };
        if reply.status != 200 {
            return Ok(reply);
        }
        let owner_said = self.admit(target, &reply, &mut steps, outcome).await?;
        // The first digest served for an immutable tag is kept (an owner that answered the same
        // request has kept it already). A narrow client's answer is not the tag's canonical one.
        let first = (
            immutable,
            &learned,
            &owner_said,
            AcceptSet::of(accept).is_full(),
        );
        if let (Some(tag), None, None, true) = first {
            if let Some(digest) = outcome.digest.clone() {
                let record = ImmutableRecord {
                    digest,
                    first_at: self.now,
                    checked_at: self.now,
                    moved_to: None,
                };
                let key = keys::immutable_tag(registry, repo, tag);
                self.put_json(&key, &record, outcome).await;
                steps.push(Step::ImmutableLearned);
            }
        }
        let ours = rules::decision(&steps, None);
        outcome.decision = Some(match owner_said {
            Some(theirs) if steps.is_empty() => theirs,
            Some(theirs) => format!("{theirs}, {ours}"),
            None => ours,
        });
        reply
            .headers
            .set(POLICY_HEADER, outcome.decision.clone().unwrap_or_default());
        Ok(reply)
    }

    /// `403 DENIED` with the policy's reason, noted for the log and the status page.
    fn refuse(&self, refusal: Refusal, outcome: &mut Outcome) -> RegistryError {
        outcome.decision = Some(rules::decision(&[], Some(&refusal)));
        RegistryError::new(ErrorCode::Denied, refusal.0)
    }

    /// Step 5 for a blob (`DENY`).
    pub(super) fn screen_blob(
        &self,
        target: &Target,
        digest: &Digest,
        outcome: &mut Outcome,
    ) -> Result<(), RegistryError> {
        outcome.reference = Some(digest.to_string());
        outcome.digest = Some(digest.to_string());
        let name = format!("{}/{}", target.registry, target.repository);
        rules::screen_blob(&self.config.policy, &name, digest)
            .map_err(|r| self.refuse(r, outcome))?;
        outcome.decision = Some(rules::decision(&[], None));
        Ok(())
    }

    /// Steps 5–6 for a manifest answer about to be served. An owner's answer was admitted by the
    /// owner: its decision is returned, not made again.
    async fn admit(
        &self,
        target: &Target,
        reply: &Reply<U::Body>,
        steps: &mut Vec<Step>,
        outcome: &mut Outcome,
    ) -> Result<Option<String>, RegistryError> {
        let Some(digest) = reply
            .headers
            .get("docker-content-digest")
            .and_then(|d| Digest::parse(d.trim()).ok())
        else {
            return Ok(None);
        };
        outcome.digest = Some(digest.to_string());
        if outcome.coalesced {
            if let Some(theirs) = reply.headers.get(POLICY_HEADER) {
                return Ok(Some(theirs.to_owned()));
            }
        }
        let name = format!("{}/{}", target.registry, target.repository);
        let policy = &self.config.policy;
        let keys = policy.keys_for(&name);
        // What an index lists matters only to `DENY` and `VERIFY`: without either, a warm pull
        // neither parses the manifest nor reads it again for a HEAD.
        let wanted = !policy.deny.is_empty() || keys.is_some();
        let listed = match &reply.body {
            _ if !wanted => Vec::new(),
            Body::Bytes(bytes) => rules::listed(bytes),
            // A HEAD: the index the door holds, if it holds it.
            _ if reply
                .headers
                .get("content-type")
                .is_some_and(|t| t.contains("index") || t.contains("manifest.list")) =>
            {
                match self.cached_manifest(target, &digest, outcome).await {
                    Some(record) => rules::listed(&record.bytes),
                    None => Vec::new(),
                }
            }
            _ => Vec::new(),
        };
        // `DENY` first: nothing is fetched to verify what is refused anyway.
        rules::admit(policy, &name, &digest, &listed, &Signed::NotRequired)
            .map_err(|r| self.refuse(r, outcome))?;
        let is_signature = |body: &Body<U::Body>| match body {
            Body::Bytes(bytes) => rules::is_signature_artifact(bytes),
            _ => false,
        };
        let signed = match keys {
            Some(keys) if !is_signature(&reply.body) => {
                self.signed(target, &digest, keys, &listed, outcome).await?
            }
            _ => Signed::NotRequired,
        };
        let step = rules::admit(policy, &name, &digest, &listed, &signed)
            .map_err(|r| self.refuse(r, outcome))?;
        steps.extend(step);
        Ok(None)
    }

    /// What the signatures of `digest` say, from the verification cache or upstream. A verified
    /// index covers the manifests it lists: they are recorded as covered too.
    async fn signed(
        &self,
        target: &Target,
        digest: &Digest,
        keys: &KeySet,
        listed: &[Digest],
        outcome: &mut Outcome,
    ) -> Result<Signed, RegistryError> {
        let key = keys::verified(keys.id(), digest);
        let cached = match self.kv.get(&key).await {
            Ok(entry) => {
                entry.and_then(|e| serde_json::from_slice::<VerifiedRecord>(&e.value).ok())
            }
            Err(e) => {
                outcome.notes.push(format!("kv get: {e}"));
                None
            }
        };
        let mut record = match cached {
            Some(r) if r.children || listed.is_empty() => {
                return Ok(Signed::By {
                    key: r.key,
                    via_index: r.via.is_some(),
                })
            }
            Some(r) => r,
            None => {
                let mut signed = self.simple_signing(target, digest, keys, outcome).await?;
                if let Signed::Unsigned(simple) = &signed {
                    signed = match self.bundles(target, digest, keys, outcome).await? {
                        Signed::Unsigned(bundles) => {
                            Signed::Unsigned(format!("{simple}; {bundles}"))
                        }
                        by => by,
                    };
                }
                match signed {
                    Signed::By { key, .. } => VerifiedRecord {
                        key,
                        via: None,
                        children: false,
                    },
                    other => return Ok(other),
                }
            }
        };
        for child in listed {
            let covered = VerifiedRecord {
                key: record.key,
                via: Some(digest.to_string()),
                children: false,
            };
            self.put_json(&keys::verified(keys.id(), child), &covered, outcome)
                .await;
        }
        record.children = !listed.is_empty();
        self.put_json(&key, &record, outcome).await;
        Ok(Signed::By {
            key: record.key,
            via_index: record.via.is_some(),
        })
    }

    /// cosign's keyed simple signing: the `sha256-<hex>.sig` manifest in the same repository,
    /// each signature layer's payload read, checked against its digest, its signature, and what
    /// it claims (see `crate::policy::cosign`).
    async fn simple_signing(
        &self,
        target: &Target,
        digest: &Digest,
        keys: &KeySet,
        outcome: &mut Outcome,
    ) -> Result<Signed, RegistryError> {
        let sig_tag = cosign::signature_tag(digest);
        let mut headers = Headers::new();
        headers.set(
            "accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
        );
        let tail = format!("manifests/{sig_tag}");
        let fetched = self
            .fetch_upstream(target, HttpMethod::Get, &tail, headers, outcome)
            .await?;
        match fetched.status {
            200 => {}
            404 => {
                return Ok(Signed::Unsigned(format!(
                    "{}/{} has no {sig_tag}",
                    target.registry, target.repository
                )))
            }
            status => {
                return Err(upstream_status(
                    status,
                    &fetched.headers,
                    ErrorCode::Unavailable,
                    &target.registry,
                ))
            }
        }
        let bytes = self
            .upstream
            .read(fetched.body, MAX_MANIFEST_BYTES)
            .await
            .map_err(|e| net_error(&target.registry, e))?;
        let layers = match cosign::signature_layers(&bytes) {
            Ok(layers) if layers.is_empty() => {
                return Ok(Signed::Unsigned(format!(
                    "{sig_tag} holds no simple-signing signature"
                )))
            }
            Ok(layers) => layers,
            Err(e) => return Ok(Signed::Unsigned(format!("{sig_tag}: {e}"))),
        };
        let mut why = Vec::new();
        for (i, layer) in layers.iter().enumerate() {
            let n = i + 1;
            let tail = format!("blobs/{}", layer.payload);
            let fetched = self
                .fetch_upstream(target, HttpMethod::Get, &tail, Headers::new(), outcome)
                .await?;
            if fetched.status != 200 {
                why.push(format!(
                    "signature {n}: its payload blob answered {}",
                    fetched.status
                ));
                continue;
            }
            let Ok(payload) = self
                .upstream
                .read(fetched.body, cosign::MAX_PAYLOAD_BYTES)
                .await
            else {
                why.push(format!("signature {n}: its payload blob could not be read"));
                continue;
            };
            if !layer.payload.verifies(&payload) {
                why.push(format!(
                    "signature {n}: the payload blob does not match its digest"
                ));
                continue;
            }
            let Some(key) = keys.signer(&payload, &layer.signature) else {
                why.push(format!(
                    "signature {n}: not made by a trusted key over its payload"
                ));
                continue;
            };
            if let Err(e) = cosign::check_payload(&payload, digest) {
                why.push(format!("signature {n} (by key {key}): {e}"));
                continue;
            }
            return Ok(Signed::By {
                key,
                via_index: false,
            });
        }
        Ok(Signed::Unsigned(format!("{sig_tag}: {}", why.join("; "))))
    }

    /// The body of a GET of `tail` upstream, read whole up to `limit` bytes; `None` when upstream
    /// answers anything but 200 or the body cannot be read (a signature that is not there).
    async fn read_upstream(
        &self,
        target: &Target,
        tail: &str,
        headers: Headers,
        limit: usize,
        outcome: &mut Outcome,
    ) -> Result<Option<Vec<u8>>, RegistryError> {
        let fetched = self
            .fetch_upstream(target, HttpMethod::Get, tail, headers, outcome)
            .await?;
        if fetched.status != 200 {
            return Ok(None);
        }
        Ok(self.upstream.read(fetched.body, limit).await.ok())
    }

    /// Sigstore bundles attached as referrers (through the referrers API or its tag-schema
    /// fallback), each referrer manifest and bundle blob checked against its digest, then read
    /// (see `crate::policy::sigstore`).
    async fn bundles(
        &self,
        target: &Target,
        digest: &Digest,
        keys: &KeySet,
        outcome: &mut Outcome,
    ) -> Result<Signed, RegistryError> {
        let direct = self.direct();
        let listing = direct
            .referrers(target, digest, Some(sigstore::BUNDLE_TYPE), false, outcome)
            .await?;
        let referrers = match &listing.body {
            Body::Bytes(index) => sigstore::bundle_referrers(index),
            _ => Vec::new(),
        };
        if referrers.is_empty() {
            return Ok(Signed::Unsigned("no sigstore bundle refers to it".into()));
        }
        let mut why = Vec::new();
        for (i, referrer) in referrers.iter().enumerate() {
            let n = i + 1;
            let mut headers = Headers::new();
            headers.set("accept", "application/vnd.oci.image.manifest.v1+json");
            let tail = format!("manifests/{referrer}");
            let manifest = self
                .read_upstream(target, &tail, headers, MAX_MANIFEST_BYTES, outcome)
                .await?;
            let Some(manifest) = manifest.filter(|m| referrer.verifies(m)) else {
                why.push(format!(
                    "bundle {n}: its referrer manifest could not be read"
                ));
                continue;
            };
            for layer in sigstore::bundle_layers(&manifest) {
                let tail = format!("blobs/{layer}");
                let limit = sigstore::MAX_BUNDLE_BYTES;
                let bundle = self
                    .read_upstream(target, &tail, Headers::new(), limit, outcome)
                    .await?;
                let Some(bundle) = bundle.filter(|b| layer.verifies(b)) else {
                    why.push(format!(
                        "bundle {n}: its blob could not be read or does not match its digest"
                    ));
                    continue;
                };
                match sigstore::check_bundle(&bundle, digest, keys) {
                    Ok(key) => {
                        return Ok(Signed::By {
                            key,
                            via_index: false,
                        })
                    }
                    Err(e) => why.push(format!("bundle {n}: {e}")),
                }
            }
        }
        Ok(Signed::Unsigned(why.join("; ")))
    }

    /// Compares an immutable tag with upstream's once per `TAG_TTL_SECONDS` (a HEAD): a move is
    /// logged and counted, and the door keeps the digest it has.
    async fn recheck_immutable(
        &self,
        target: &Target,
        tag: &str,
        mut record: ImmutableRecord,
        outcome: &mut Outcome,
    ) {
        if self.now
            < record
                .checked_at
                .saturating_add(self.config.tag_ttl_seconds)
        {
            return;
        }
        let mut headers = Headers::new();
        headers.set("accept", CANONICAL_ACCEPT);
        let tail = format!("manifests/{tag}");
        let answer = self
            .fetch_upstream(target, HttpMethod::Head, &tail, headers, outcome)
            .await;
        let upstream = match &answer {
            Ok(f) if f.status == 200 => f
                .headers
                .get("docker-content-digest")
                .and_then(|d| Digest::parse(d.trim()).ok()),
            _ => None,
        };
        let Some(upstream) = upstream else {
            outcome.notes.push(format!(
                "{tag}: upstream's tag could not be compared (IMMUTABLE_TAGS)"
            ));
            return;
        };
        if upstream.to_string() != record.digest {
            let image = format!("{}/{}:{tag}", target.registry, target.repository);
            outcome.notes.push(format!(
                "{image} moved upstream to {upstream}; the door keeps serving {} (IMMUTABLE_TAGS)",
                record.digest
            ));
            outcome.tag_moved = Some((image, record.digest.clone(), upstream.to_string()));
            record.moved_to = Some(upstream.to_string());
        }
        record.checked_at = self.now;
        let key = keys::immutable_tag(&target.registry, &target.repository, tag);
        self.put_json(&key, &record, outcome).await;
    }

    async fn put_json<T: serde::Serialize>(&self, key: &str, value: &T, outcome: &mut Outcome) {
        let bytes = serde_json::to_vec(value).expect("serializable");
        if let Err(e) = self.kv.put(key, bytes, self.today()).await {
            outcome.notes.push(format!("kv put: {e}"));
        }
    }
}
