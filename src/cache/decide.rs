//! The tag decisions as data: what to do with a request for a manifest by tag, given what the
//! cache holds, the time and the client's `Accept` — a pure function, tested as a table.
//!
//! The door keeps one *canonical* entry per tag: upstream's answer to the full `Accept` (every
//! manifest and index type), whatever the client that caused it accepted. Each client is then
//! served from it locally when it accepts the canonical type. The one client that cannot be — one
//! that does not accept the canonical type, such as a Docker-v2-only client asking for a
//! multi-platform tag, which upstream answers with one platform's manifest — is *narrow*: it is
//! answered from a pointer of its own (keyed by the set of types it accepts), or upstream with its
//! own `Accept`, and never touches the canonical pointer. A remembered 404 is only ever the answer
//! to the full `Accept`.

use super::TagRecord;
use crate::oci::{
    acceptable, DEFAULT_MANIFEST_ACCEPT, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX,
    OCI_MANIFEST,
};

/// The four manifest types pull clients use, in the order of [`AcceptSet`]'s bits.
pub const MANIFEST_TYPES: [&str; 4] = [
    OCI_INDEX,
    DOCKER_MANIFEST_LIST,
    OCI_MANIFEST,
    DOCKER_MANIFEST,
];

/// Which of [`MANIFEST_TYPES`] a client's `Accept` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptSet(u8);

impl AcceptSet {
    pub fn of(accept: Option<&str>) -> AcceptSet {
        let mut bits = 0;
        for (i, t) in MANIFEST_TYPES.iter().enumerate() {
            if acceptable(t, accept) {
                bits |= 1 << i;
            }
        }
        AcceptSet(bits)
    }

    /// Every type: the canonical request.
    pub fn is_full(self) -> bool {
        self.0 == 0b1111
    }

    /// A short name for storage keys (`t5` is OCI index + OCI manifest).
    pub fn key(self) -> String {
        format!("t{}", self.0)
    }
}

/// The `Accept` the door sends for a tag's canonical entry.
pub const CANONICAL_ACCEPT: &str = DEFAULT_MANIFEST_ACCEPT;

/// What to do with a manifest request by tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagPlan {
    /// The canonical pointer is fresh and its type is one the client takes: answer from the cache
    /// (a GET needs the manifest by digest, fetched by digest if only a HEAD was seen so far).
    Serve,
    /// The canonical pointer is past the TTL: ask upstream with a HEAD whether it moved.
    Revalidate,
    /// Nothing is known: ask upstream with the full `Accept`.
    Fetch,
    /// The client cannot take the canonical type: its own pointer, or upstream with its `Accept`.
    Narrow,
    /// Upstream said 404 to the full `Accept` a moment ago.
    Absent,
}

/// The plan for a tag. `canonical_type` is the canonical manifest's media type where known (from
/// the pointer or the cached manifest); an unknown type is assumed acceptable until it is known.
pub fn tag_plan(
    pointer: Option<&TagRecord>,
    canonical_type: Option<&str>,
    accept: Option<&str>,
    absent_fresh: bool,
    now: u64,
    ttl: u64,
) -> TagPlan {
    match pointer {
        None if absent_fresh => TagPlan::Absent,
        None => TagPlan::Fetch,
        Some(p) if !p.is_fresh(now, ttl) => TagPlan::Revalidate,
        Some(_) if canonical_type.is_some_and(|t| !acceptable(t, accept)) => TagPlan::Narrow,
        Some(_) => TagPlan::Serve,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = MANIFEST_TYPES[0];
    const DOCKER_V2: &str = MANIFEST_TYPES[3];
    const OCI_ONLY: &str =
        "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";

    fn pointer(fetched_at: u64) -> TagRecord {
        TagRecord {
            digest: "sha256:x".into(),
            fetched_at,
            media_type: Some(INDEX.into()),
            size: Some(100),
            manifest: None,
        }
    }

    #[test]
    fn plans() {
        let fresh = pointer(1000);
        let stale = pointer(0);
        // (pointer, canonical type, client Accept, a fresh 404 remembered, plan)
        type Case<'a> = (
            Option<&'a TagRecord>,
            Option<&'a str>,
            Option<&'a str>,
            bool,
            TagPlan,
        );
        let cases: &[Case] = &[
            (None, None, None, false, TagPlan::Fetch),
            (None, None, Some(DOCKER_V2), false, TagPlan::Fetch),
            (None, None, None, true, TagPlan::Absent),
            (None, None, Some(DOCKER_V2), true, TagPlan::Absent),
            (Some(&fresh), Some(INDEX), None, false, TagPlan::Serve),
            (
                Some(&fresh),
                Some(INDEX),
                Some(OCI_ONLY),
                false,
                TagPlan::Serve,
            ),
            (
                Some(&fresh),
                Some(INDEX),
                Some(CANONICAL_ACCEPT),
                false,
                TagPlan::Serve,
            ),
            (
                Some(&fresh),
                Some(INDEX),
                Some(DOCKER_V2),
                false,
                TagPlan::Narrow,
            ),
            (Some(&fresh), None, Some(DOCKER_V2), false, TagPlan::Serve),
            (Some(&stale), Some(INDEX), None, false, TagPlan::Revalidate),
            (
                Some(&stale),
                Some(INDEX),
                Some(DOCKER_V2),
                false,
                TagPlan::Revalidate,
            ),
            // A fresh pointer outranks an older 404 (the tag appeared since).
            (Some(&fresh), Some(INDEX), None, true, TagPlan::Serve),
        ];
        for (i, (p, t, accept, absent, want)) in cases.iter().enumerate() {
            assert_eq!(
                tag_plan(*p, *t, *accept, *absent, 1100, 300),
                *want,
                "case {i}"
            );
        }
    }

    #[test]
    fn accept_sets() {
        assert!(AcceptSet::of(None).is_full());
        assert!(AcceptSet::of(Some("*/*")).is_full());
        assert!(AcceptSet::of(Some(CANONICAL_ACCEPT)).is_full());
        let oci = AcceptSet::of(Some(OCI_ONLY));
        assert!(!oci.is_full());
        assert_eq!(oci.key(), "t5");
        assert_eq!(AcceptSet::of(Some(DOCKER_V2)).key(), "t8");
    }
}
