//! `tags/list`, passed through from upstream: sorted and paged here (the spec's MUST), with
//! upstream's `Link` to the next page pointed back at the door.

use super::*;

impl<K, B, U, C> Door<'_, K, B, U, C>
where
    K: Kv,
    U: Upstream,
    B: Blobs<Body = U::Body>,
    C: Coalesce<Body = U::Body>,
{
    /// `tags/list` from upstream (tags change; there is nothing to cache or verify), in lexical
    /// order — the spec's MUST, which some registries do not keep — with upstream's `Link` to the
    /// next page rewritten to the door's own path for this repository. A client HEAD is answered
    /// from an upstream GET (a tag list is no pull, and distribution has no HEAD for it: it
    /// answers 405), with the headers the GET would get.
    pub(in crate::proxy) async fn tags(
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
