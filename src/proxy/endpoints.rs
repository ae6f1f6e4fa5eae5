//! The endpoints the door answers itself or passes through: `/token` and its challenge, resolve,
//! pre-warm, tag lists and referrers.

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
    pub(super) async fn prewarm_endpoint(
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

    /// `/_frontdoor/resolve?image=alpine:3.20&image=ghcr.io/acme/app:1.4`: each image as a
    /// digest-pinned reference (`docker.io/library/alpine:3.20@sha256:…`) for CI to write into
    /// Kubernetes manifests — from `PINS`, the cache, or an upstream HEAD (never a counted pull).
    pub(super) async fn resolve(
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

    /// 401 with the challenge that sends a client to the door's `/token` for `repository`.
    pub(super) fn challenge(
        &self,
        req: &ClientRequest<'_>,
        repository: Option<&str>,
        why: &str,
    ) -> RegistryError {
        // `PUBLIC_URL` when set: the client's `Host` header does not choose where it sends its
        // credentials next.
        let public = self.config.public_url.as_ref();
        let origin = public
            .map(|u| u.as_str().trim_end_matches('/'))
            .or(req.origin)
            .unwrap_or("");
        let service = origin.split("://").nth(1).unwrap_or(origin);
        let mut value = format!("Bearer realm=\"{origin}/token\",service=\"{service}\"");
        if let Some(repository) = repository {
            value.push_str(&format!(",scope=\"repository:{repository}:pull\""));
        }
        let mut e = RegistryError::new(ErrorCode::Unauthorized, why);
        e.www_authenticate = Some(value);
        e
    }

    /// `/token`: exchanges credentials (Basic on GET, the OAuth2 password grant on POST, or none)
    /// for a short-lived token granting pull on the requested repositories the principal may read —
    /// and only those.
    pub(super) fn token(
        &self,
        post: bool,
        query: &str,
        req: &ClientRequest<'_>,
    ) -> Result<Reply<U::Body>, RegistryError> {
        let access = &self.config.access;
        let unauthorized = || {
            RegistryError::new(
                ErrorCode::Unauthorized,
                "the user name or password is wrong",
            )
        };
        let form_body = if post {
            std::str::from_utf8(req.body.unwrap_or_default()).unwrap_or("")
        } else {
            query
        };
        let form: Vec<(String, String)> = form_urlencoded::parse(form_body.as_bytes())
            .into_owned()
            .collect();
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let principal = if post {
            match field("grant_type") {
                Some("password") => access
                    .login(
                        field("username").unwrap_or(""),
                        field("password").unwrap_or(""),
                    )
                    .map_err(|_| unauthorized())?,
                _ => {
                    return Err(RegistryError::new(
                        ErrorCode::Unsupported,
                        "only grant_type=password is supported",
                    )
                    .with_status(400));
                }
            }
        } else {
            match access.authenticate(req.authorization, self.now) {
                Ok(Principal::Token { .. }) | Err(_) => return Err(unauthorized()),
                Ok(p) => p,
            }
        };
        let mut granted = Vec::new();
        for scope in form
            .iter()
            .filter(|(k, _)| k == "scope")
            .flat_map(|(_, v)| v.split(' '))
        {
            let Some(rest) = scope.strip_prefix("repository:") else {
                continue;
            };
            let Some((name, actions)) = rest.rsplit_once(':') else {
                continue;
            };
            if !actions.split(',').any(|a| a == "pull") {
                continue;
            }
            let Ok(target) = resolve_name(self.config, name, req.line.host) else {
                continue;
            };
            let canonical = format!("{}/{}", target.registry, target.repository);
            if access.can_pull(&principal, &canonical) && !granted.contains(&canonical) {
                granted.push(canonical);
            }
        }
        let (token, ttl) = access
            .issue(&principal, granted, self.now)
            .unwrap_or_else(|| ("public".to_owned(), 3600));
        let body = serde_json::json!({"token": token, "access_token": token, "expires_in": ttl});
        let mut headers = Headers::new();
        headers.set("cache-control", "no-store");
        Ok(reply(
            200,
            headers,
            Body::Bytes(body.to_string().into_bytes()),
            false,
        )
        .with_type(JSON))
    }

    /// `tags/list` from upstream (tags change; there is nothing to cache or verify), in lexical
    /// order — the spec's MUST, which some registries do not keep — with upstream's `Link` to the
    /// next page rewritten to the door's own path for this repository. A client HEAD is answered
    /// from an upstream GET (a tag list is no pull, and distribution has no HEAD for it: it
    /// answers 405), with the headers the GET would get.
    pub(super) async fn tags(
        &self,
        target: &Target,
        n: Option<u32>,
        last: Option<&str>,
        (link_path, link_ns): (&str, Option<&str>),
        head: bool,
        outcome: &mut Outcome,
    ) -> Result<Reply<U::Body>, RegistryError> {
        let mut query = form_urlencoded::Serializer::new(String::new());
        if let Some(n) = n {
            query.append_pair("n", &n.to_string());
        }
        if let Some(last) = last {
            query.append_pair("last", last);
        }
        let query = query.finish();
        let tail = match query.is_empty() {
            true => "tags/list".to_owned(),
            false => format!("tags/list?{query}"),
        };
        let fetched = self
            .fetch_upstream(target, HttpMethod::Get, &tail, Headers::new(), outcome)
            .await?;
        if fetched.status != 200 {
            return Err(upstream_status(
                fetched.status,
                &fetched.headers,
                ErrorCode::NameUnknown,
                &target.registry,
            ));
        }
        let upstream_link = fetched
            .headers
            .get("link")
            .and_then(|l| next_link(l, link_path, link_ns));
        let bytes = self
            .upstream
            .read(fetched.body, MAX_TAG_LIST_BYTES)
            .await
            .map_err(|e| net_error(&target.registry, e))?;
        #[derive(serde::Deserialize, serde::Serialize)]
        struct TagList {
            #[serde(default)]
            name: String,
            tags: Option<Vec<String>>,
        }
        let mut list: TagList = serde_json::from_slice(&bytes).map_err(|e| {
            RegistryError::new(
                ErrorCode::Unavailable,
                format!("upstream tag list is not JSON: {e}"),
            )
        })?;
        // Some registries (distribution 2.8 on filesystem storage among them) ignore `n` and
        // `last`: they are applied here too — idempotent when upstream already did — so clients
        // always get pages in lexical order with a `Link` to the next.
        let mut tags = list.tags.take().unwrap_or_default();
        tags.sort();
        if let Some(last) = last {
            tags.retain(|t| t.as_str() > last);
        }
        let mut link = upstream_link;
        if let Some(n) = n.map(|n| n as usize) {
            if tags.len() > n {
                tags.truncate(n);
                if let Some(last) = tags.last() {
                    let page = format!("n={n}&last={last}");
                    link = next_link(&format!("</?{page}>"), link_path, link_ns);
                }
            }
        }
        let mut headers = Headers::new();
        headers.set("content-type", JSON);
        if let Some(link) = link {
            headers.set("link", link);
        }
        list.tags = Some(tags);
        if list.name.is_empty() {
            list.name = target.repository.to_string();
        }
        let body = serde_json::to_vec(&list).expect("a tag list serializes");
        Ok(reply(200, headers, Body::Bytes(body), head))
    }

    /// The referrers of `digest`: upstream's referrers API, or — when upstream answers 404, which
    /// the spec forbids a registry that has the API to do — the referrers tag schema
    /// (`<alg>-<hex>` tag holding an index), or an empty index when that tag does not exist either.
    pub(super) async fn referrers(
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

/// Upstream's `Link: <…/tags/list?n=…&last=…>; rel="next"`, pointed at the door's `link_path` (the
/// name as the client wrote it) with the same page query, plus `ns` if the client sent one.
pub(super) fn next_link(link: &str, link_path: &str, link_ns: Option<&str>) -> Option<String> {
    let target = link.split('<').nth(1)?.split('>').next()?;
    let url = url::Url::parse("http://upstream.invalid/")
        .ok()?
        .join(target)
        .ok()?;
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in url.query_pairs() {
        if k == "n" || k == "last" {
            query.append_pair(&k, &v);
        }
    }
    if let Some(ns) = link_ns {
        query.append_pair("ns", ns);
    }
    Some(format!("<{link_path}?{}>; rel=\"next\"", query.finish()))
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

/// An image as people write it (`alpine:3.20`, `ghcr.io/acme/app@sha256:…`; no tag means
/// `latest`), as the door names it.
pub(super) fn parse_image(
    config: &Config,
    image: &str,
    host: Option<&str>,
) -> Result<(Target, Reference), RegistryError> {
    let invalid =
        |why: &str| RegistryError::new(ErrorCode::NameInvalid, format!("{image:?}: {why}"));
    let (name, reference) = match image.split_once('@') {
        Some((name, digest)) => (
            name,
            Reference::Digest(Digest::parse(digest).map_err(|e| invalid(&e))?),
        ),
        None => match image.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
            Some((name, tag)) => (name, Reference::parse(tag).map_err(|e| invalid(&e))?),
            None => (image, Reference::Tag("latest".to_owned())),
        },
    };
    Ok((resolve_name(config, name, host)?, reference))
}
