//! Blobs: membership (links, and the registries that vouched for the bytes), R2 reads and ranges,
//! fills from upstream, and redirects to storage (a presigned R2 URL or the door's own signed URL,
//! which `endpoints::signed_blob` serves).

use super::*;

impl<K, B, U, C> Door<'_, K, B, U, C>
where
    K: Kv,
    U: Upstream,
    B: Blobs<Body = U::Body>,
    C: Coalesce<Body = U::Body>,
{
    pub(super) async fn blob(
        &self,
        target: &Target,
        digest: &Digest,
        head: bool,
        range_header: Option<&str>,
        outcome: &mut Outcome,
    ) -> Result<Reply<U::Body>, RegistryError> {
        let key = keys::blob(digest);
        // HEAD ignores Range, as registries do.
        let range = parse_range(range_header, head)?;

        // 0. Blobs are stored once for every repository and registry, so a stored blob is served
        //    through this name only on this registry's own evidence: its upstream delivered these
        //    bytes (storage keeps the registries whose puts it verified), and the blob belongs to
        //    this repository — linked when it was fetched through it, or confirmed now by this
        //    registry's upstream (a HEAD, with the mirror's rights on this repository). Otherwise a
        //    private layer could be read through any public repository's name, or through another
        //    registry whose upstream says yes to every digest.
        let linked = self.read_link(target, digest, outcome).await;
        // At the owner, a fill of this blob under way (a herd's later clients): follow it from its
        // first byte as the bytes arrive, on the same evidence a stored copy needs — before any
        // storage read, which could only miss.
        let whole = range
            .as_ref()
            .and_then(Ranges::single)
            .is_none_or(|r| r.is_everything());
        if !head && whole {
            if let Some(filling) = self.blobs.filling(&key) {
                if filling.vouched_by(&target.registry) {
                    if !linked {
                        self.confirm_link(target, digest, outcome).await?;
                    }
                    if let Some(body) = self.blobs.follow(&key) {
                        outcome.cache = Some(CacheOutcome::Joined);
                        let headers = blob_headers(digest, Some(filling.size));
                        return Ok(reply(200, headers, Body::Stream(body), false));
                    }
                }
            }
        }
        let mut known = None;
        if !linked || self.config.blob_redirect != BlobRedirect::Off || head || range.is_some() {
            known = match self.blobs.stat(&key).await {
                Ok(stored) => stored,
                Err(e) => {
                    outcome.notes.push(format!("blob store: {e}"));
                    None
                }
            };
        }
        let mut refill = None;
        match &known {
            Some(stored) if !stored.vouched_by(&target.registry) => refill = Some(stored.clone()),
            Some(_) if !linked => self.confirm_link(target, digest, outcome).await?,
            _ => {}
        }

        // 1. From R2: a redirect to storage when configured, else the bytes.
        if refill.is_none() {
            if !head && self.config.blob_redirect != BlobRedirect::Off && known.is_some() {
                outcome.cache = Some(CacheOutcome::Hit);
                return self.redirect(digest);
            }
            match self
                .stored_blob(
                    digest,
                    head,
                    range.clone(),
                    Some(&target.registry),
                    known,
                    outcome,
                )
                .await?
            {
                Served::Reply(reply) => return Ok(reply),
                Served::Absent => {}
                Served::NotVouched(stored) => refill = Some(stored),
            }
        }
        if refill.is_some() {
            outcome.notes.push(format!(
                "{digest} is stored, but not from {}: fetched from it",
                target.registry
            ));
        }
        outcome.cache = Some(CacheOutcome::Miss);

        // 2. From upstream. A range that does not start at 0 is only passed through; a whole read
        //    goes to the object's single owner, which fetches and fills once for everyone.
        //    Several ranges of a blob not stored yet are read whole, like no range: the first
        //    client gets the whole blob (200) while it fills the cache, later ones their parts.
        let partial = range
            .as_ref()
            .and_then(Ranges::single)
            .filter(|r| !r.is_everything());
        let here = Box::pin(self.fetch_blob(target, digest, head, partial, refill, outcome));
        let missed = match (head, partial) {
            (false, None) => self.misses.object(&key, here).await,
            _ => Missed::Here(here.await),
        };
        self.answered(target, missed, outcome)
    }

    /// A blob from upstream: a whole read fills the cache as it streams to the client; a HEAD
    /// or a `partial` range is passed through. `refill`: the stored copy that another registry
    /// vouched for, which this fill adds this registry to.
    async fn fetch_blob(
        &self,
        target: &Target,
        digest: &Digest,
        head: bool,
        partial: Option<range::ByteRange>,
        refill: Option<Stored>,
        outcome: &mut Outcome,
    ) -> Result<Reply<U::Body>, RegistryError> {
        let key = keys::blob(digest);
        let mut headers = Headers::new();
        if let Some(r) = partial {
            headers.set("range", r.header());
        }
        let method = HttpMethod::for_client(head);
        let fetched = self
            .fetch_upstream(target, method, &format!("blobs/{digest}"), headers, outcome)
            .await?;
        let len = fetched
            .headers
            .get("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok());
        match fetched.status {
            200 => {}
            206 if partial.is_some() => {
                let mut headers = blob_headers(digest, len);
                if let Some(cr) = fetched.headers.get("content-range") {
                    headers.set("content-range", cr);
                }
                return Ok(reply(206, headers, Body::Stream(fetched.body), false));
            }
            s => {
                return Err(upstream_status(
                    s,
                    &fetched.headers,
                    ErrorCode::BlobUnknown,
                    &target.registry,
                ))
            }
        }
        // Upstream has it in this repository: it belongs here.
        self.link_blob(target, digest, outcome).await;
        if head {
            return Ok(reply(200, blob_headers(digest, len), Body::Empty, true));
        }
        // A whole blob (asked for, or upstream ignored the range): fill the cache as it streams.
        match len {
            Some(len) => {
                // A copy already stored keeps the registries that vouched for it; this one adds
                // itself — if storage accepts the bytes.
                let registries = match &refill {
                    Some(stored) => stored.with(&target.registry),
                    None => vec![target.registry.clone()],
                };
                let body = self
                    .blobs
                    .fill(&key, fetched.body, len, digest, &registries);
                Ok(reply(
                    200,
                    blob_headers(digest, Some(len)),
                    Body::Stream(body),
                    false,
                ))
            }
            None => {
                // Storage needs the length up front; pass the bytes through uncached (checked
                // against the digest all the same: a wrong blob must not end cleanly).
                outcome.notes.push(format!(
                    "{digest}: upstream sent no Content-Length; not cached"
                ));
                let body = self.blobs.verify(fetched.body, None, digest);
                Ok(reply(
                    200,
                    blob_headers(digest, None),
                    Body::Stream(body),
                    false,
                ))
            }
        }
    }

    /// Asks this registry's upstream whether `digest` belongs to the repository (a HEAD, with the
    /// mirror's rights on it) and links it when it does; any other answer is the client's.
    async fn confirm_link(
        &self,
        target: &Target,
        digest: &Digest,
        outcome: &mut Outcome,
    ) -> Result<(), RegistryError> {
        let answer = self
            .fetch_upstream(
                target,
                HttpMethod::Head,
                &format!("blobs/{digest}"),
                Headers::new(),
                outcome,
            )
            .await?;
        if answer.status != 200 {
            return Err(upstream_status(
                answer.status,
                &answer.headers,
                ErrorCode::BlobUnknown,
                &target.registry,
            ));
        }
        self.link_blob(target, digest, outcome).await;
        Ok(())
    }

    /// A blob as R2 holds it: whole, a range (206), or headers only; a stored blob counts as a hit
    /// even when the range asked for is outside it. With `registry`, only a copy that registry
    /// vouched for is served (see [`crate::ports::Stored`]). `known`: what a `stat` just said.
    pub(super) async fn stored_blob(
        &self,
        digest: &Digest,
        head: bool,
        range: Option<Ranges>,
        registry: Option<&str>,
        known: Option<Stored>,
        outcome: &mut Outcome,
    ) -> Result<Served<U::Body>, RegistryError> {
        let key = keys::blob(digest);
        let vouched = |s: &Stored| registry.is_none_or(|r| s.vouched_by(r));
        let stored = match (head, &range, known) {
            (false, None, _) => match self.blobs.get(&key, None).await {
                Ok(Some((stored, body))) if vouched(&stored) => {
                    outcome.cache = Some(CacheOutcome::Hit);
                    let headers = blob_headers(digest, Some(stored.size));
                    return Ok(Served::Reply(reply(
                        200,
                        headers,
                        Body::Stream(body),
                        false,
                    )));
                }
                Ok(Some((stored, body))) => {
                    self.blobs.discard(body);
                    return Ok(Served::NotVouched(stored));
                }
                Ok(None) => return Ok(Served::Absent),
                Err(e) => {
                    outcome.notes.push(format!("blob store: {e}"));
                    return Ok(Served::Absent);
                }
            },
            (_, _, Some(known)) => known,
            _ => match self.blobs.stat(&key).await {
                Ok(Some(stored)) => stored,
                Ok(None) => return Ok(Served::Absent),
                Err(e) => {
                    outcome.notes.push(format!("blob store: {e}"));
                    return Ok(Served::Absent);
                }
            },
        };
        if !vouched(&stored) {
            return Ok(Served::NotVouched(stored));
        }
        outcome.cache = Some(CacheOutcome::Hit);
        let size = stored.size;
        let Some(range) = range else {
            return Ok(Served::Reply(reply(
                200,
                blob_headers(digest, Some(size)),
                Body::Empty,
                true,
            )));
        };
        let parts = range.resolve(size);
        let (first, last) = match parts.as_slice() {
            [] => {
                let mut e = RegistryError::new(
                    ErrorCode::RangeInvalid,
                    format!("{} is outside the blob's {size} bytes", range.header()),
                );
                e.content_range = Some(format!("bytes */{size}"));
                return Err(e);
            }
            [one] => *one,
            several => {
                // RFC 9110 §15.3.7: several parts go as one multipart/byteranges body.
                let boundary = range::boundary(digest);
                let (pieces, len) = range::multipart(several, size, &boundary);
                let mut headers = blob_headers(digest, Some(len));
                headers.set("content-type", range::multipart_type(&boundary));
                let body = self.blobs.pieces(&key, pieces, len);
                return Ok(Served::Reply(reply(
                    206,
                    headers,
                    Body::Stream(body),
                    false,
                )));
            }
        };
        let len = last - first + 1;
        match self.blobs.get(&key, Some((first, len))).await {
            Ok(Some((_, body))) => {
                let mut headers = blob_headers(digest, Some(len));
                headers.set("content-range", format!("bytes {first}-{last}/{size}"));
                Ok(Served::Reply(reply(
                    206,
                    headers,
                    Body::Stream(body),
                    false,
                )))
            }
            _ => Ok(Served::Absent),
        }
    }

    /// 307 to where storage serves the blob: a presigned R2 URL, or the door's own signed URL.
    pub(super) fn redirect(&self, digest: &Digest) -> Result<Reply<U::Body>, RegistryError> {
        let ttl = self.config.redirect_ttl_seconds;
        let location = match &self.config.blob_redirect {
            BlobRedirect::Off => {
                return Err(RegistryError::new(
                    ErrorCode::Unknown,
                    "redirect asked for with BLOB_REDIRECT=off",
                ))
            }
            BlobRedirect::S3(s3) => PresignRequest {
                endpoint: s3.endpoint.clone(),
                bucket: s3.bucket.clone(),
                key: keys::blob(digest),
                region: R2_REGION.to_owned(),
                service: S3_SERVICE.to_owned(),
                access_key_id: s3.access_key_id.clone(),
                secret_access_key: s3.secret_access_key.clone(),
                now: self.now,
                expires_in: ttl,
            }
            .presign()
            .map_err(|e| RegistryError::new(ErrorCode::Unknown, format!("presigning: {e}")))?,
            BlobRedirect::SelfSigned(key) => format!(
                "/_blob/{}/{}?{}",
                digest.algorithm().as_str(),
                digest.hex(),
                url_token::sign(&key.0, &digest.to_string(), self.now + ttl)
            ),
        };
        let mut headers = Headers::new();
        headers.set("location", location);
        headers.set("docker-content-digest", digest.to_string());
        headers.set("cache-control", "no-store");
        Ok(reply(307, headers, Body::Empty, false))
    }

    /// Whether `digest` is linked to the target's repository. Reading the link marks it read; the
    /// day its mark moves, the blob's own mark moves too (see `crate::retention`).
    pub(super) async fn read_link(
        &self,
        target: &Target,
        digest: &Digest,
        outcome: &mut Outcome,
    ) -> bool {
        let link = keys::link(&target.registry, &target.repository, digest);
        match self.kv_read(&link, outcome).await {
            Some((_, marked)) => {
                if marked {
                    self.kv_put(&keys::blob_read(digest), Vec::new(), outcome)
                        .await;
                }
                true
            }
            None => false,
        }
    }

    /// Records that `digest` belongs to the target's repository, and that the blob was read today.
    pub(super) async fn link_blob(&self, target: &Target, digest: &Digest, outcome: &mut Outcome) {
        let link = keys::link(&target.registry, &target.repository, digest);
        self.kv_put(&link, b"1".to_vec(), outcome).await;
        self.kv_put(&keys::blob_read(digest), Vec::new(), outcome)
            .await;
    }
}

/// The client's `Range`, if it sent one that applies (HEAD ignores it, as registries do).
/// Past [`range::MAX_PARTS`] ranges the header is ignored (`None`: the whole blob).
pub(super) fn parse_range(
    header: Option<&str>,
    head: bool,
) -> Result<Option<Ranges>, RegistryError> {
    match header.filter(|_| !head) {
        None => Ok(None),
        Some(h) => range::parse(h).map_err(|e| RegistryError::new(ErrorCode::RangeInvalid, e)),
    }
}

/// What storage had for a blob read.
pub(super) enum Served<S> {
    Reply(Reply<S>),
    Absent,
    /// Stored, but not vouched for by the registry asked through.
    NotVouched(Stored),
}
