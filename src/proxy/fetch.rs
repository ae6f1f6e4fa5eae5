//! The upstream fetch: the registry, then its fallbacks, skipping upstreams that are down
//! (`crate::upstream::health`); and what an owner's answer says about the upstream (`learn_down`).

use super::*;

impl<'a, K, B, U, C> Door<'a, K, B, U, C> {
    /// This door, fetching its own misses: for a request the door makes for itself (a pre-warm
    /// walk, a resolve, the referrers and bundles it reads), whose answer an owner must not give
    /// (an owner answers a client's request, as a stream). See [`Misses::Here`].
    pub(super) fn direct(&self) -> Door<'a, K, B, U, C> {
        Door {
            misses: Misses::Here,
            ..*self
        }
    }
}

impl<K, B, U, C> Door<'_, K, B, U, C>
where
    K: Kv,
    U: Upstream,
    B: Blobs<Body = U::Body>,
    C: Coalesce<Body = U::Body>,
{
    /// An owner's word that the registry's upstream is down: remembered here (the header is the
    /// owner's, not the client's, and is passed on only as this door's own).
    pub(super) fn learn_down(&self, target: &Target, reply: &mut Reply<U::Body>) {
        let Some(seconds) = reply
            .headers
            .get(DOWN_HEADER)
            .and_then(|s| s.trim().parse::<u64>().ok())
        else {
            return;
        };
        if let Some(primary) = self.config.upstream(&target.registry) {
            let mut health = self.health.borrow_mut();
            for upstream in std::iter::once(primary).chain(primary.fallbacks.iter()) {
                health.note_down(upstream.url.as_str(), self.now, seconds);
            }
        }
    }

    /// Seconds until the registry's upstreams are asked again, when every one of them is down now
    /// (asking sends no probe).
    pub(super) fn registry_down(&self, target: &Target) -> Option<u64> {
        let primary = self.config.upstream(&target.registry)?;
        let backoff = self.backoff();
        let health = self.health.borrow();
        std::iter::once(primary)
            .chain(primary.fallbacks.iter())
            .map(|u| health.peek(u.url.as_str(), self.now, backoff))
            .try_fold(u64::MAX, |least, wait| wait.map(|w| least.min(w)))
    }

    pub(super) fn backoff(&self) -> Backoff {
        Backoff {
            seconds: self.config.upstream_backoff_seconds,
            // Headers, then the body (read under the same limit), plus a token request.
            probe_timeout: self.config.upstream_timeout_seconds.saturating_mul(3),
        }
    }

    /// Sends one request upstream: to the registry, then to each configured fallback while the
    /// answer is a transient failure (429, 5xx, unreachable). The last answer is returned. An
    /// upstream that is down (see [`crate::upstream::health`]) is skipped without a request.
    pub(super) async fn fetch_upstream(
        &self,
        target: &Target,
        method: HttpMethod,
        tail: &str,
        headers: Headers,
        outcome: &mut Outcome,
    ) -> Result<Fetched<U::Body>, UpstreamError> {
        let primary = self
            .config
            .upstream(&target.registry)
            .ok_or(UpstreamError::NotConfigured)?;
        let backoff = self.backoff();
        let mut answer = None;
        for (i, upstream) in std::iter::once(primary)
            .chain(primary.fallbacks.iter())
            .enumerate()
        {
            let health_key = upstream.url.as_str();
            let admit = self
                .health
                .borrow_mut()
                .admit(health_key, self.now, backoff);
            if let Admit::Down { retry_in } = admit {
                outcome.upstream_down = Some(retry_in);
                outcome.notes.push(format!(
                    "{} is down: not asked (next probe in {retry_in} s)",
                    upstream.url
                ));
                answer = Some(Err(UpstreamError::Down {
                    registry: target.registry.clone(),
                    retry_in,
                }));
                continue;
            }
            let result = self
                .fetch_authenticated(upstream, i, target, method, tail, &headers, outcome)
                .await;
            let reachable = !is_outage(&result);
            let wait = self
                .health
                .borrow_mut()
                .record(health_key, reachable, self.now, backoff);
            match (admit, reachable) {
                (Admit::Probe, true) => outcome
                    .notes
                    .push(format!("{} is back (probe answered)", upstream.url)),
                (_, false) if wait > 0 => {
                    outcome.upstream_down = Some(wait);
                    outcome.notes.push(format!(
                        "{} is down: not asked again for {wait} s",
                        upstream.url
                    ))
                }
                _ => {}
            }
            if let Ok(f) = &result {
                if let Some(r) = f.headers.get("ratelimit-remaining") {
                    outcome.ratelimit_remaining = Some(r.to_owned());
                    outcome.ratelimit_limit = f.headers.get("ratelimit-limit").map(str::to_owned);
                }
            }
            if i > 0 {
                outcome
                    .notes
                    .push(format!("used fallback {}", upstream.url));
            }
            let transient = is_transient(&result);
            answer = Some(result);
            if !transient {
                break;
            }
        }
        answer.expect("the primary is always tried")
    }
}

/// Whether an upstream answer is a failure worth serving stale content or trying a fallback for.
pub(super) fn is_transient<B>(answer: &Result<Fetched<B>, UpstreamError>) -> bool {
    match answer {
        Ok(f) => f.status == 429 || f.status >= 500,
        Err(e) => e.is_transient(),
    }
}

/// Whether an answer means the upstream is not serving at all (unreachable, timed out, rate
/// limiting, or a gateway saying so), as opposed to an answer about one resource.
pub(super) fn is_outage<B>(answer: &Result<Fetched<B>, UpstreamError>) -> bool {
    match answer {
        Ok(f) => matches!(f.status, 429 | 502 | 503 | 504),
        Err(e) => e.is_outage(),
    }
}

/// Whether an error that already reached the client's shape (an owner's answer, a body that
/// could not be read) is worth serving stale content for: the same rule as [`is_transient`].
pub(super) fn is_transient_error(e: &RegistryError) -> bool {
    matches!(e.code, ErrorCode::Unavailable | ErrorCode::TooManyRequests)
}
