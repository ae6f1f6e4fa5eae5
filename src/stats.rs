//! Door-wide counters for `GET /_frontdoor/status`: per registry, cache outcomes, upstream calls by
//! kind, and the rate-limit quota upstream last reported (Docker Hub's `ratelimit-remaining`).
//!
//! Pure: isolates accumulate a [`Stats`] per request outcome and merge it into one shared copy (a
//! Durable Object in the worker). It holds names and numbers only — never a credential.

use crate::proxy::{CacheOutcome, Outcome};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub registries: BTreeMap<String, RegistryStats>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryStats {
    pub hits: u64,
    pub misses: u64,
    pub revalidated: u64,
    pub stale_serves: u64,
    /// Misses handed to an object's owner (coalesced).
    pub coalesced: u64,
    pub errors: u64,
    /// Upstream requests (including token requests and redirect hops) by request kind.
    pub upstream_calls: BTreeMap<String, u64>,
    /// Upstream's last `ratelimit-limit` / `ratelimit-remaining` (`100;w=21600`), with when.
    pub quota_limit: Option<String>,
    pub quota_remaining: Option<String>,
    pub quota_seen_at: Option<u64>,
}

impl Stats {
    pub fn is_empty(&self) -> bool {
        self.registries.is_empty()
    }

    /// Counts one answered request.
    pub fn record(&mut self, outcome: &Outcome, status: u16, now: u64) {
        let Some(registry) = &outcome.registry else {
            return;
        };
        let r = self.registries.entry(registry.clone()).or_default();
        match outcome.cache {
            Some(CacheOutcome::Hit) => r.hits += 1,
            Some(CacheOutcome::Miss) => r.misses += 1,
            Some(CacheOutcome::Revalidated) => r.revalidated += 1,
            Some(CacheOutcome::Stale) => r.stale_serves += 1,
            None => {}
        }
        if outcome.coalesced {
            r.coalesced += 1;
        }
        if status >= 400 {
            r.errors += 1;
        }
        if outcome.upstream_calls > 0 {
            *r.upstream_calls.entry(outcome.kind.to_owned()).or_default() +=
                u64::from(outcome.upstream_calls);
        }
        if outcome.ratelimit_remaining.is_some() {
            r.quota_remaining = outcome.ratelimit_remaining.clone();
            r.quota_limit = outcome.ratelimit_limit.clone().or(r.quota_limit.take());
            r.quota_seen_at = Some(now);
        }
    }

    /// Adds `other` (counts sum; the newer quota reading wins).
    pub fn merge(&mut self, other: Stats) {
        for (name, o) in other.registries {
            let r = self.registries.entry(name).or_default();
            r.hits += o.hits;
            r.misses += o.misses;
            r.revalidated += o.revalidated;
            r.stale_serves += o.stale_serves;
            r.coalesced += o.coalesced;
            r.errors += o.errors;
            for (kind, n) in o.upstream_calls {
                *r.upstream_calls.entry(kind).or_default() += n;
            }
            if o.quota_seen_at >= r.quota_seen_at && o.quota_seen_at.is_some() {
                r.quota_limit = o.quota_limit.or(r.quota_limit.take());
                r.quota_remaining = o.quota_remaining;
                r.quota_seen_at = o.quota_seen_at;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(cache: CacheOutcome, calls: u32, remaining: Option<&str>) -> Outcome {
        Outcome {
            registry: Some("docker.io".into()),
            kind: "manifest",
            cache: Some(cache),
            upstream_calls: calls,
            ratelimit_remaining: remaining.map(str::to_owned),
            ratelimit_limit: remaining.map(|_| "100;w=21600".to_owned()),
            ..Outcome::default()
        }
    }

    #[test]
    fn records_and_merges() {
        let mut a = Stats::default();
        a.record(&outcome(CacheOutcome::Miss, 2, Some("99;w=21600")), 200, 10);
        a.record(&outcome(CacheOutcome::Hit, 0, None), 200, 11);
        a.record(&outcome(CacheOutcome::Stale, 1, None), 200, 12);
        let mut b = Stats::default();
        b.record(&outcome(CacheOutcome::Miss, 1, Some("97;w=21600")), 200, 20);
        b.record(&outcome(CacheOutcome::Miss, 1, None), 502, 21);
        a.merge(b);
        let r = &a.registries["docker.io"];
        assert_eq!((r.hits, r.misses, r.stale_serves, r.errors), (1, 3, 1, 1));
        assert_eq!(r.upstream_calls["manifest"], 5);
        assert_eq!(r.quota_remaining.as_deref(), Some("97;w=21600"));
        assert_eq!(r.quota_limit.as_deref(), Some("100;w=21600"));
        assert_eq!(r.quota_seen_at, Some(20));

        // An older reading does not replace a newer one.
        let mut old = Stats::default();
        old.record(&outcome(CacheOutcome::Miss, 1, Some("50;w=21600")), 200, 5);
        a.merge(old);
        assert_eq!(
            a.registries["docker.io"].quota_remaining.as_deref(),
            Some("97;w=21600")
        );
    }

    #[test]
    fn requests_without_a_registry_are_not_counted() {
        let mut s = Stats::default();
        s.record(&Outcome::default(), 404, 1);
        assert!(s.is_empty());
    }
}
