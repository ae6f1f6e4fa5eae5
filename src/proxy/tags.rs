//! The tag service: a tag's canonical entry (its pointer, which carries the manifest so that a
//! warm pull is one read) served for `TAG_TTL_SECONDS`, then revalidated by an upstream HEAD, as
//! `crate::cache::decide` plans it; clients that cannot take the canonical type (a pointer of
//! their own); stale answers when upstream fails, and `serve_stale_on`. The manifest a tag names
//! is `super::manifests`'s (by digest); pins, immutable tags and `DENY_LATEST` are resolved before
//! a tag gets here, by `super::policy`.

use super::manifests::head_media_type;
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
