//! Door-wide counters for `GET /_frontdoor/status` and the status page: per registry, cache
//! outcomes, bytes from cache and from upstream, upstream calls by kind, the most pulled images, the
//! rate-limit quota upstream last reported (Docker Hub's `ratelimit-remaining`); and the last errors.
//!
//! Pure: isolates accumulate a [`Stats`] per request outcome ([`Pending`]: what an isolate counts
//! and when it sends it) and merge it into one shared copy (a Durable Object in the worker). It
//! holds names and numbers only — never a credential.

use crate::proxy::{CacheOutcome, Outcome};
use crate::route::Kind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How many distinct images and recent errors are kept.
const MAX_IMAGES: usize = 200;
const MAX_ERRORS: usize = 10;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub registries: BTreeMap<String, RegistryStats>,
    /// The most recent failed requests, oldest first.
    #[serde(default)]
    pub last_errors: Vec<ErrorEvent>,
    /// Immutable tags found moved upstream (`IMMUTABLE_TAGS`), one per image, oldest first.
    #[serde(default)]
    pub tag_moves: Vec<TagMove>,
}

/// An immutable tag upstream moved: the door keeps serving `kept`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagMove {
    pub at: u64,
    pub image: String,
    pub kept: String,
    pub upstream: String,
}

/// A failed request, for the status page. The message is the door's own, never upstream's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEvent {
    pub at: u64,
    pub status: u16,
    pub what: String,
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
    /// Bytes answered from the cache (hits, revalidations, stale serves) and after an upstream fetch.
    #[serde(default)]
    pub bytes_from_cache: u64,
    #[serde(default)]
    pub bytes_from_upstream: u64,
    /// Manifest requests per repository (the most pulled images).
    #[serde(default)]
    pub images: BTreeMap<String, u64>,
    /// Requests the policy refused (`DENY_LATEST`, `DENY`, `VERIFY`; see `crate::policy`).
    #[serde(default)]
    pub policy_refusals: u64,
}

impl Stats {
    pub fn is_empty(&self) -> bool {
        self.registries.is_empty() && self.last_errors.is_empty()
    }

    /// Counts one answered request of `bytes` (its `Content-Length`, when known).
    pub fn record(&mut self, outcome: &Outcome, status: u16, bytes: Option<u64>, now: u64) {
        // 401s are the normal start of a token dance, not errors worth showing.
        if status >= 400 && status != 401 && outcome.registry.is_some() {
            let what = match (&outcome.registry, &outcome.repository) {
                (Some(r), Some(repo)) => format!("{} {r}/{repo}", outcome.kind.as_str()),
                _ => outcome.kind.as_str().to_owned(),
            };
            // A policy refusal says why; anything else, its first note.
            let refusal = outcome
                .decision
                .as_deref()
                .filter(|d| d.starts_with("denied"));
            let note = refusal
                .or(outcome.notes.first().map(String::as_str))
                .map(|n| format!(": {n}"))
                .unwrap_or_default();
            self.push_error(ErrorEvent {
                at: now,
                status,
                what: format!("{what}{note}"),
            });
        }
        if let Some((image, kept, upstream)) = &outcome.tag_moved {
            self.push_move(TagMove {
                at: now,
                image: image.clone(),
                kept: kept.clone(),
                upstream: upstream.clone(),
            });
        }
        let Some(registry) = &outcome.registry else {
            return;
        };
        let r = self.registries.entry(registry.clone()).or_default();
        if outcome
            .decision
            .as_deref()
            .is_some_and(|d| d.starts_with("denied"))
        {
            r.policy_refusals += 1;
        }
        let bytes = bytes.unwrap_or(0);
        match outcome.cache {
            Some(CacheOutcome::Miss) => r.bytes_from_upstream += bytes,
            Some(_) => r.bytes_from_cache += bytes,
            None => {}
        }
        if outcome.kind == Kind::Manifest && status == 200 && outcome.cache.is_some() {
            if let Some(repo) = &outcome.repository {
                *r.images.entry(repo.clone()).or_default() += 1;
                trim_images(&mut r.images);
            }
        }
        match outcome.cache {
            Some(CacheOutcome::Hit | CacheOutcome::Joined) => r.hits += 1,
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
            *r.upstream_calls
                .entry(outcome.kind.as_str().to_owned())
                .or_default() += u64::from(outcome.upstream_calls);
        }
        if outcome.ratelimit_remaining.is_some() {
            r.quota_remaining = outcome.ratelimit_remaining.clone();
            r.quota_limit = outcome.ratelimit_limit.clone().or(r.quota_limit.take());
            r.quota_seen_at = Some(now);
        }
    }

    fn push_error(&mut self, e: ErrorEvent) {
        self.last_errors.push(e);
        self.last_errors.sort_by_key(|e| e.at);
        let excess = self.last_errors.len().saturating_sub(MAX_ERRORS);
        self.last_errors.drain(..excess);
    }

    /// The latest move per image, at most `MAX_ERRORS` images.
    fn push_move(&mut self, m: TagMove) {
        self.tag_moves.retain(|o| o.image != m.image || o.at > m.at);
        if self.tag_moves.iter().all(|o| o.image != m.image) {
            self.tag_moves.push(m);
        }
        self.tag_moves.sort_by_key(|m| m.at);
        let excess = self.tag_moves.len().saturating_sub(MAX_ERRORS);
        self.tag_moves.drain(..excess);
    }

    /// Adds `other` (counts sum; the newer quota reading wins).
    pub fn merge(&mut self, other: Stats) {
        for e in other.last_errors {
            self.push_error(e);
        }
        for m in other.tag_moves {
            self.push_move(m);
        }
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
            r.bytes_from_cache += o.bytes_from_cache;
            r.bytes_from_upstream += o.bytes_from_upstream;
            r.policy_refusals += o.policy_refusals;
            for (image, n) in o.images {
                *r.images.entry(image).or_default() += n;
            }
            trim_images(&mut r.images);
            if o.quota_seen_at >= r.quota_seen_at && o.quota_seen_at.is_some() {
                r.quota_limit = o.quota_limit.or(r.quota_limit.take());
                r.quota_remaining = o.quota_remaining;
                r.quota_seen_at = o.quota_seen_at;
            }
        }
    }
}

/// An isolate sends its counters at most this often (ms).
pub const FLUSH_EVERY_MS: u64 = 2000;

/// One isolate's counters not sent yet, and when it last sent them. The glue keeps one per
/// isolate and sends what [`Pending::take_due`] gives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pending {
    stats: Stats,
    /// When counters were last taken (ms); 0 before the first time, so the first is due at once.
    last_flush_ms: u64,
}

impl Pending {
    /// Counts one request answered at `now_ms`. `owner`: the request was run by an object's owner
    /// on behalf of a worker, which counts the answer itself (its status, bytes, image, error,
    /// cache outcome and policy refusal: it got the owner's answer); the owner adds only what it
    /// did upstream (a record without a cache outcome or a status).
    pub fn record(
        &mut self,
        outcome: &Outcome,
        status: u16,
        bytes: Option<u64>,
        now_ms: u64,
        owner: bool,
    ) {
        let now = now_ms / 1000;
        if !owner {
            return self.stats.record(outcome, status, bytes, now);
        }
        let upstream_only = Outcome {
            cache: None,
            coalesced: false,
            decision: None,
            ..outcome.clone()
        };
        self.stats.record(&upstream_only, 0, None, now);
    }

    /// The counters to send at `now_ms`, if [`FLUSH_EVERY_MS`] has passed since they were last
    /// taken (or `force`: an owner sends at once, and a status read sends first). Taking them
    /// restarts the interval even when there was nothing to send.
    pub fn take_due(&mut self, now_ms: u64, force: bool) -> Option<Stats> {
        let due = force || now_ms.saturating_sub(self.last_flush_ms) >= FLUSH_EVERY_MS;
        if !due {
            return None;
        }
        self.last_flush_ms = now_ms;
        let taken = std::mem::take(&mut self.stats);
        (!taken.is_empty()).then_some(taken)
    }
}

/// Keeps the most pulled images when there are too many to remember.
fn trim_images(images: &mut BTreeMap<String, u64>) {
    while images.len() > MAX_IMAGES {
        let least = images
            .iter()
            .min_by_key(|(_, n)| **n)
            .map(|(k, _)| k.clone())
            .expect("not empty");
        images.remove(&least);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(cache: CacheOutcome, calls: u32, remaining: Option<&str>) -> Outcome {
        Outcome {
            registry: Some("docker.io".into()),
            repository: Some("team/app".into()),
            kind: Kind::Manifest,
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
        a.record(
            &outcome(CacheOutcome::Miss, 2, Some("99;w=21600")),
            200,
            Some(1000),
            10,
        );
        a.record(&outcome(CacheOutcome::Hit, 0, None), 200, Some(1000), 11);
        a.record(&outcome(CacheOutcome::Stale, 1, None), 200, Some(10), 12);
        let mut b = Stats::default();
        b.record(
            &outcome(CacheOutcome::Miss, 1, Some("97;w=21600")),
            200,
            Some(5),
            20,
        );
        b.record(&outcome(CacheOutcome::Miss, 1, None), 502, None, 21);
        a.merge(b);
        let r = &a.registries["docker.io"];
        assert_eq!((r.hits, r.misses, r.stale_serves, r.errors), (1, 3, 1, 1));
        assert_eq!(r.upstream_calls["manifest"], 5);
        assert_eq!(r.quota_remaining.as_deref(), Some("97;w=21600"));
        assert_eq!(r.quota_limit.as_deref(), Some("100;w=21600"));
        assert_eq!(r.quota_seen_at, Some(20));
        assert_eq!((r.bytes_from_cache, r.bytes_from_upstream), (1010, 1005));
        assert_eq!(r.images["team/app"], 4, "the 502 is not a pull");
        assert_eq!(a.last_errors.len(), 1);
        assert_eq!(a.last_errors[0].status, 502);

        // An older reading does not replace a newer one.
        let mut old = Stats::default();
        old.record(
            &outcome(CacheOutcome::Miss, 1, Some("50;w=21600")),
            200,
            None,
            5,
        );
        a.merge(old);
        assert_eq!(
            a.registries["docker.io"].quota_remaining.as_deref(),
            Some("97;w=21600")
        );
    }

    #[test]
    fn policy_refusals_and_tag_moves_are_counted() {
        let mut a = Stats::default();
        let refused = Outcome {
            decision: Some(
                "denied: reg.test/team/app@sha256:… is refused by this mirror: CVE-1".into(),
            ),
            ..outcome(CacheOutcome::Hit, 0, None)
        };
        a.record(&refused, 403, None, 1);
        let moved = |upstream: &str| Outcome {
            tag_moved: Some((
                "reg.test/team/app:v1".into(),
                "sha256:a".into(),
                upstream.into(),
            )),
            ..outcome(CacheOutcome::Hit, 1, None)
        };
        a.record(&moved("sha256:b"), 200, None, 2);
        let mut b = Stats::default();
        b.record(&moved("sha256:c"), 200, None, 3);
        b.record(&refused, 403, None, 4);
        a.merge(b);
        assert_eq!(a.registries["docker.io"].policy_refusals, 2);
        assert_eq!(a.tag_moves.len(), 1, "one entry per image: the latest move");
        assert_eq!(a.tag_moves[0].upstream, "sha256:c");
        assert!(
            a.last_errors[0].what.contains("CVE-1"),
            "{:?}",
            a.last_errors
        );
    }

    #[test]
    fn an_owner_counts_only_what_it_did_upstream() {
        let miss = Outcome {
            coalesced: true,
            decision: Some("denied: latest".into()),
            ..outcome(CacheOutcome::Miss, 2, Some("90;w=21600"))
        };
        // (who ran it, status) → (hits+misses, coalesced, errors, refusals, bytes, images, calls)
        type Counted = (u64, u64, u64, u64, u64, usize, u64);
        let cases: &[(bool, u16, Counted)] = &[
            (false, 200, (1, 1, 0, 1, 512, 1, 2)),
            (false, 502, (1, 1, 1, 1, 512, 0, 2)),
            (true, 200, (0, 0, 0, 0, 0, 0, 2)),
            (true, 502, (0, 0, 0, 0, 0, 0, 2)),
        ];
        for &(owner, status, want) in cases {
            let mut p = Pending::default();
            p.record(&miss, status, Some(512), 7_000, owner);
            let s = p.take_due(7_000, true).expect("something was counted");
            let r = &s.registries["docker.io"];
            let got = (
                r.hits + r.misses,
                r.coalesced,
                r.errors,
                r.policy_refusals,
                r.bytes_from_upstream + r.bytes_from_cache,
                r.images.len(),
                r.upstream_calls["manifest"],
            );
            assert_eq!(got, want, "owner {owner}, status {status}");
            assert_eq!(r.quota_remaining.as_deref(), Some("90;w=21600"));
            assert_eq!(r.quota_seen_at, Some(7), "seconds");
            assert_eq!(s.last_errors.len(), usize::from(!owner && status >= 400));
        }
    }

    #[test]
    fn counters_are_sent_every_two_seconds_or_when_forced() {
        let counted = || outcome(CacheOutcome::Hit, 0, None);
        let mut p = Pending::default();
        p.record(&counted(), 200, None, 1_000_000, false);
        let first = p
            .take_due(1_000_000, false)
            .expect("the first is due at once");
        assert_eq!(first.registries["docker.io"].hits, 1);
        // (now, force, counted before) → sent hits (None: not due, or nothing to send)
        let script: &[(u64, bool, bool, Option<u64>)] = &[
            (1_000_500, false, true, None),
            (1_001_999, false, true, None),
            (1_002_000, false, false, Some(2)),
            (1_002_100, true, true, Some(1)),
            (1_003_000, false, true, None),
            (1_004_100, false, false, Some(1)),
            (1_006_100, false, false, None),
            (1_006_200, false, true, None),
            (1_008_100, false, false, Some(1)),
            (1_008_200, true, false, None),
        ];
        for &(now, force, count, want) in script {
            if count {
                p.record(&counted(), 200, None, now, false);
            }
            let got = p
                .take_due(now, force)
                .map(|s| s.registries["docker.io"].hits);
            assert_eq!(got, want, "at {now}, force {force}");
        }
    }

    #[test]
    fn requests_without_a_registry_are_not_counted() {
        let mut s = Stats::default();
        s.record(&Outcome::default(), 404, None, 1);
        assert!(s.is_empty());
    }
}
