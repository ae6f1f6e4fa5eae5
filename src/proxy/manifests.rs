//! Manifests: by digest (immutable: local, else fetched, verified, stored) and by tag (the tag's
//! canonical entry, decided by `crate::cache::decide`; narrow clients; stale and `serve_stale_on`).
//! What may be served at all is decided first and last by `super::policy`.

use super::*;

/// What the door knows of a tag when it misses.
struct TagKnown {
    pointer: Option<TagRecord>,
    digest: Option<Digest>,
    cached: Option<ManifestRecord>,
}

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

    /// A manifest by tag, from the tag's canonical entry (see [`crate::cache::decide`]).
    pub(super) async fn manifest_by_tag(
        &self,
        target: &Target,
        tag: &str,
        head: bool,
        accept: Option<&str>,
        outcome: &mut Outcome,
    ) -> Result<Reply<U::Body>, RegistryError> {
        let (registry, repo) = (&target.registry, &target.repository);
        let tag_key = keys::tag(registry, repo, tag);
        let (mut pointer, marked) = self.read_pointer(&tag_key, outcome).await;
        let digest = pointer.as_ref().and_then(|p| Digest::parse(&p.digest).ok());
        pointer = pointer.filter(|_| digest.is_some());
        // The manifest, when the pointer carries it: the warm pull's one KV read.
        let mut cached = self
            .carried(target, pointer.as_mut(), digest.as_ref(), marked, outcome)
            .await;
        // Else a GET needs the manifest; so does a HEAD when the pointer predates type and size.
        let needs_manifest = cached.is_none()
            && (!head
                || pointer
                    .as_ref()
                    .is_some_and(|p| p.media_type.is_none() || p.size.is_none()));
        if let (Some(d), true) = (&digest, needs_manifest) {
            cached = self.cached_manifest(target, d, outcome).await;
        }
        let canonical_type = pointer
            .as_ref()
            .and_then(|p| p.media_type.clone())
            .or_else(|| cached.as_ref().map(|r| r.media_type.clone()));
        let reference = Reference::Tag(tag.to_owned());
        let absent_fresh = pointer.is_none() && self.absent_fresh(target, &reference).await;
        let plan = tag_plan(
            pointer.as_ref(),
            canonical_type.as_deref(),
            accept,
            absent_fresh,
            self.now,
            self.config.tag_ttl_seconds,
        );
        match plan {
            TagPlan::Absent => {
                outcome.cache = Some(CacheOutcome::Hit);
                return Err(RegistryError::new(
                    ErrorCode::ManifestUnknown,
                    format!("{registry} does not have {repo}:{tag}"),
                ));
            }
            TagPlan::Narrow => return self.narrow(target, tag, head, accept, outcome).await,
            TagPlan::Serve => {
                let (pointer, digest) = (pointer.expect("planned"), digest.expect("planned"));
                if head && cached.is_none() {
                    outcome.cache = Some(CacheOutcome::Hit);
                    return Ok(pointer_reply(&pointer, &digest));
                }
                if let Some(record) = cached {
                    outcome.cache = Some(CacheOutcome::Hit);
                    return Ok(manifest_reply(record, &digest, head));
                }
                // Known from a HEAD only: the manifest itself, by digest.
                return self.fetch_named(target, &digest, outcome).await;
            }
            TagPlan::Revalidate | TagPlan::Fetch => {}
        }

        // The registry is known to be down: served here and now, not queued behind a probe.
        if let (Some(retry_in), true) = (self.registry_down(target), self.misses.forwards()) {
            outcome.upstream_down = Some(retry_in);
            if let (Some(pointer), Some(old)) = (&pointer, &digest) {
                let why = format!("{registry} is down; asked again in {retry_in} s");
                let known = (pointer, old, cached.as_ref());
                if let Some(reply) = self.stale_tag(known, head, accept, &why, outcome) {
                    return Ok(reply);
                }
            }
        }
        outcome.cache = Some(CacheOutcome::Miss);
        let known = TagKnown {
            pointer,
            digest,
            cached,
        };
        let here = Box::pin(self.fetch_tag(target, tag, head, accept, plan, known, outcome));
        let missed = self.misses.object(&tag_key, here).await;
        self.answered(target, missed, outcome)
    }

    /// A tag's miss, from upstream (with what the door knows of it: see `manifest_by_tag`).
    #[allow(clippy::too_many_arguments)]
    async fn fetch_tag(
        &self,
        target: &Target,
        tag: &str,
        head: bool,
        accept: Option<&str>,
        plan: TagPlan,
        known: TagKnown,
        outcome: &mut Outcome,
    ) -> Result<Reply<U::Body>, RegistryError> {
        let TagKnown {
            pointer,
            digest,
            cached,
        } = known;
        let registry = &target.registry;
        let tag_key = keys::tag(registry, &target.repository, tag);
        let reference = Reference::Tag(tag.to_owned());
        let tail = format!("manifests/{tag}");
        let mut headers = Headers::new();
        headers.set("accept", CANONICAL_ACCEPT);

        // A HEAD first — free on Docker Hub — for a stale tag (did it move?), a client HEAD, or a
        // client that may not take the canonical type (which one is it?). A GET from a client
        // that takes everything skips it.
        let full = AcceptSet::of(accept).is_full();
        if plan == TagPlan::Revalidate || head || !full {
            let answer = self
                .fetch_upstream(target, HttpMethod::Head, &tail, headers.clone(), outcome)
                .await;
            if is_transient(&answer) {
                if let (Some(pointer), Some(digest)) = (&pointer, &digest) {
                    let why = match &answer {
                        Ok(f) => format!("upstream answered {}", f.status),
                        Err(e) => e.message(),
                    };
                    let known = (pointer, digest, cached.as_ref());
                    if let Some(reply) = self.stale_tag(known, head, accept, &why, outcome) {
                        return Ok(reply);
                    }
                }
            }
            // Opt-in (`serve_stale_on`): a tag deleted upstream, or the mirror's credentials
            // revoked, keeps the copy the door holds in service rather than failing every pull.
            let refusal = match &answer {
                Ok(f) if f.status != 200 => Some(f.status),
                Err(e) if e.is_refusal() => Some(401),
                _ => None,
            };
            let opted = |status: u16| {
                self.config.upstream(registry).is_some_and(|u| {
                    u.serve_stale_on.contains(&status)
                        || (status == 401 && u.serve_stale_on.contains(&403))
                })
            };
            if let (Some(status), Some(pointer), Some(old)) = (refusal, &pointer, &digest) {
                if opted(status) {
                    let why =
                        format!("upstream answered {status}; kept in service (serve_stale_on)");
                    let known = (pointer, old, cached.as_ref());
                    if let Some(reply) = self.stale_tag(known, head, accept, &why, outcome) {
                        // Asked again after another TTL, not on every pull.
                        let mut kept = TagRecord {
                            fetched_at: self.now,
                            ..pointer.clone()
                        };
                        if let Some(record) = &cached {
                            kept = kept.carrying(record);
                        }
                        self.kv_put(&tag_key, kept.encode(), outcome).await;
                        return Ok(reply);
                    }
                }
            }
            let answer = answer?;
            if answer.status != 200 {
                return Err(self
                    .refused(target, &reference, &answer, true, outcome)
                    .await);
            }
            let media_type = head_media_type(registry, &answer.headers, outcome)?;
            let Some(learned) = pointer_from_head(&answer.headers, media_type, self.now) else {
                return Err(RegistryError::new(
                    ErrorCode::Unavailable,
                    format!("{registry} answered a manifest HEAD without a usable Docker-Content-Digest"),
                ));
            };
            let learned_digest = Digest::parse(&learned.digest).expect("parsed above");
            let same = digest.as_ref() == Some(&learned_digest);
            if same {
                outcome.cache = Some(CacheOutcome::Revalidated);
            }
            let media_type = learned.media_type.clone().unwrap_or_default();
            // Whether the new manifest is fetched below (the pointer is written after it).
            let known = same && cached.is_some();
            let fetch_next = !(head || known) && acceptable(&media_type, accept);
            if !fetch_next {
                // Unchanged: the pointer keeps carrying the manifest the door holds.
                let learned = match cached.as_ref().filter(|_| same) {
                    Some(record) => learned.clone().carrying(record),
                    None => learned.clone(),
                };
                self.kv_put(&tag_key, learned.encode(), outcome).await;
            }
            if !acceptable(&media_type, accept) {
                return self.narrow(target, tag, head, accept, outcome).await;
            }
            if head {
                return Ok(pointer_reply(&learned, &learned_digest));
            }
            if same {
                if let Some(record) = cached {
                    return Ok(manifest_reply(record, &learned_digest, false));
                }
            }
            // The manifest HEAD named, by digest: exactly those bytes, verified — carried by the
            // new pointer when they came back whole (not streamed from an owner).
            let cache = outcome.cache;
            let answer = self.fetch_named(target, &learned_digest, outcome).await;
            let learned = match &answer {
                Ok(r) if r.status == 200 => match (&r.body, r.headers.get("content-type")) {
                    (Body::Bytes(bytes), Some(t)) if learned_digest.verifies(bytes) => learned
                        .carrying(&ManifestRecord {
                            media_type: t.to_owned(),
                            bytes: bytes.clone(),
                        }),
                    _ => learned,
                },
                _ => learned,
            };
            self.kv_put(&tag_key, learned.encode(), outcome).await;
            let failed = |status: u16| status == 429 || status >= 500;
            return match answer {
                Ok(reply) if failed(reply.status) => {
                    match (
                        cached.filter(|r| acceptable(&r.media_type, accept)),
                        &digest,
                    ) {
                        (Some(record), Some(old)) => {
                            let why = format!("the new manifest's fetch answered {}", reply.status);
                            Ok(self.stale(record, old, false, &why, outcome))
                        }
                        _ => Ok(reply),
                    }
                }
                Ok(reply) => {
                    outcome.cache = cache;
                    Ok(reply)
                }
                // The new manifest could not be had (a body that stalled past its deadline, an
                // outage between the HEAD and the GET): what was cached is served instead.
                Err(e) if is_transient_error(&e) => {
                    match (
                        cached.filter(|r| acceptable(&r.media_type, accept)),
                        &digest,
                    ) {
                        (Some(record), Some(old)) => {
                            Ok(self.stale(record, old, false, &e.message, outcome))
                        }
                        _ => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
        }

        // A GET with the full Accept: the canonical answer, stored with its pointer.
        let (digest, record) = self
            .get_manifest(target, &reference, &tail, headers, outcome)
            .await?;
        let pointer = TagRecord::of(&digest, &record, self.now);
        self.kv_put(&tag_key, pointer.encode(), outcome).await;
        Ok(manifest_reply(record, &digest, false))
    }

    /// The manifest a tag names, by its digest: through that manifest's owner when there is one,
    /// else fetched here.
    pub(super) async fn fetch_named(
        &self,
        target: &Target,
        digest: &Digest,
        outcome: &mut Outcome,
    ) -> Result<Reply<U::Body>, RegistryError> {
        let key = keys::manifest(&target.registry, &target.repository, digest);
        let accept = Some(CANONICAL_ACCEPT);
        let here = Box::pin(self.manifest_by_digest(target, digest, false, accept, outcome));
        let missed = self.misses.named(&key, target, digest, here).await;
        self.answered(target, missed, outcome)
    }

    /// A client that cannot take the tag's canonical type: served from a pointer of its own (per
    /// set of accepted types), else upstream with its own `Accept`. Nothing here touches the
    /// canonical pointer, and a 404 here is not remembered (it answers only this `Accept`).
    pub(super) async fn narrow(
        &self,
        target: &Target,
        tag: &str,
        head: bool,
        accept: Option<&str>,
        outcome: &mut Outcome,
    ) -> Result<Reply<U::Body>, RegistryError> {
        let (registry, repo) = (&target.registry, &target.repository);
        let key = keys::narrow_tag(registry, repo, tag, &AcceptSet::of(accept).key());
        let (mut pointer, marked) = self.read_pointer(&key, outcome).await;
        let digest = pointer.as_ref().and_then(|p| Digest::parse(&p.digest).ok());
        let mut cached = self
            .carried(target, pointer.as_mut(), digest.as_ref(), marked, outcome)
            .await;
        if let (Some(d), None) = (&digest, &cached) {
            cached = self.cached_manifest(target, d, outcome).await;
        }
        cached = cached.filter(|r| acceptable(&r.media_type, accept));
        let fresh = pointer
            .as_ref()
            .is_some_and(|p| p.is_fresh(self.now, self.config.tag_ttl_seconds));
        if let (true, Some(record), Some(digest)) = (fresh, &cached, &digest) {
            outcome.cache = Some(CacheOutcome::Hit);
            return Ok(manifest_reply(record.clone(), digest, head));
        }
        outcome.cache = Some(CacheOutcome::Miss);
        outcome.notes.push(format!(
            "{tag}: the client does not accept the tag's canonical type"
        ));
        let tail = format!("manifests/{tag}");
        let mut headers = Headers::new();
        headers.set("accept", accept.unwrap_or(DEFAULT_MANIFEST_ACCEPT));
        let method = HttpMethod::for_client(head);
        let answer = self
            .fetch_upstream(target, method, &tail, headers, outcome)
            .await;
        if let (Some(record), Some(digest)) = (&cached, &digest) {
            if is_transient(&answer) {
                let why = match &answer {
                    Ok(f) => format!("upstream answered {}", f.status),
                    Err(e) => e.message(),
                };
                return Ok(self.stale(record.clone(), digest, head, &why, outcome));
            }
        }
        let fetched = answer?;
        if fetched.status != 200 {
            let reference = Reference::Tag(tag.to_owned());
            return Err(self
                .refused(target, &reference, &fetched, false, outcome)
                .await);
        }
        if head {
            let media_type = head_media_type(registry, &fetched.headers, outcome)?;
            return Ok(head_reply(&fetched.headers, media_type));
        }
        let received = self
            .receive(target, &Reference::Tag(tag.to_owned()), fetched, outcome)
            .await;
        let (digest, record) = match (received, cached, &digest) {
            (Ok(got), _, _) => got,
            (Err(e), Some(record), Some(old)) if is_transient_error(&e) => {
                return Ok(self.stale(record, old, false, &e.message, outcome));
            }
            (Err(e), _, _) => return Err(e),
        };
        let pointer = TagRecord::of(&digest, &record, self.now);
        self.kv_put(&key, pointer.encode(), outcome).await;
        Ok(manifest_reply(record, &digest, false))
    }

    /// A tag's record, and whether this read marked it read today (see `Door::kv_read`).
    async fn read_pointer(&self, key: &str, outcome: &mut Outcome) -> (Option<TagRecord>, bool) {
        match self.kv_read(key, outcome).await {
            Some((value, marked)) => (TagRecord::decode(&value), marked),
            None => (None, false),
        }
    }

    /// The manifest `pointer` carries, if it carries a usable one. The manifest's own record is
    /// then not read on a warm pull; so that retention keeps it as long as the tag is pulled, it
    /// is marked read whenever the pointer is (`marked`: the day's first read) — and stored
    /// again from the pointer's copy if it is gone.
    async fn carried(
        &self,
        target: &Target,
        pointer: Option<&mut TagRecord>,
        digest: Option<&Digest>,
        marked: bool,
        outcome: &mut Outcome,
    ) -> Option<ManifestRecord> {
        let digest = digest?;
        let record = pointer?
            .inline(digest)
            .filter(|r| manifest_media_type(&r.media_type).is_some())?;
        if marked {
            let key = keys::manifest(&target.registry, &target.repository, digest);
            if self.kv_read(&key, outcome).await.is_none() {
                self.kv_put(&key, record.encode(), outcome).await;
            }
        }
        Some(record)
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
    async fn get_manifest(
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

    /// What the door can serve stale for a tag it knows (`pointer`, `digest`, the cached manifest if
    /// any): that manifest when the client takes its type, else — for a HEAD — what the pointer
    /// says. `None` when it holds neither.
    pub(super) fn stale_tag(
        &self,
        (pointer, digest, cached): (&TagRecord, &Digest, Option<&ManifestRecord>),
        head: bool,
        accept: Option<&str>,
        why: &str,
        outcome: &mut Outcome,
    ) -> Option<Reply<U::Body>> {
        if let Some(record) = cached.filter(|r| acceptable(&r.media_type, accept)) {
            return Some(self.stale(record.clone(), digest, head, why, outcome));
        }
        let takes = pointer
            .media_type
            .as_deref()
            .is_some_and(|t| acceptable(t, accept));
        if !(head && takes && pointer.size.is_some()) {
            return None;
        }
        outcome.cache = Some(CacheOutcome::Stale);
        outcome.notes.push(format!("served stale {digest}: {why}"));
        Some(pointer_reply(pointer, digest))
    }

    /// A cached manifest served because upstream could not answer (429, 5xx, unreachable).
    pub(super) fn stale(
        &self,
        record: ManifestRecord,
        digest: &Digest,
        head: bool,
        why: &str,
        outcome: &mut Outcome,
    ) -> Reply<U::Body> {
        outcome.cache = Some(CacheOutcome::Stale);
        outcome.notes.push(format!("served stale {digest}: {why}"));
        manifest_reply(record, digest, head)
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

/// A HEAD answered from a tag pointer: what upstream's HEAD said, without the bytes.
pub(super) fn pointer_reply<S>(pointer: &TagRecord, digest: &Digest) -> Reply<S> {
    let mut headers = Headers::new();
    if let Some(t) = &pointer.media_type {
        headers.set("content-type", t.clone());
    }
    if let Some(size) = pointer.size {
        headers.set("content-length", size.to_string());
    }
    headers.set("docker-content-digest", digest.to_string());
    headers.set("etag", format!("\"{digest}\""));
    reply(200, headers, Body::Empty, true)
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

/// Upstream's answer to a manifest HEAD, passed on with its checked type.
pub(super) fn head_reply<S>(upstream: &Headers, media_type: Option<String>) -> Reply<S> {
    let mut headers = Headers::new();
    if let Some(t) = media_type {
        headers.set("content-type", t);
    }
    for name in ["content-length", "docker-content-digest"] {
        if let Some(v) = upstream.get(name) {
            headers.set(name, v);
        }
    }
    reply(200, headers, Body::Empty, true)
}

/// What a manifest HEAD tells about a tag: its digest (required), checked type and size.
pub(super) fn pointer_from_head(
    headers: &Headers,
    media_type: Option<String>,
    now: u64,
) -> Option<TagRecord> {
    let digest = Digest::parse(headers.get("docker-content-digest")?.trim()).ok()?;
    let size = headers
        .get("content-length")
        .and_then(|l| l.trim().parse::<u64>().ok());
    Some(TagRecord {
        digest: digest.to_string(),
        fetched_at: now,
        media_type,
        size,
        manifest: None,
    })
}

pub(super) fn manifest_reply<S>(record: ManifestRecord, digest: &Digest, head: bool) -> Reply<S> {
    let mut headers = Headers::new();
    headers.set("content-type", record.media_type);
    headers.set("docker-content-digest", digest.to_string());
    headers.set("etag", format!("\"{digest}\""));
    reply(200, headers, Body::Bytes(record.bytes), head)
}
