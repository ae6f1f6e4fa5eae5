//! Policy: what the door serves to whom, decided here and nowhere else. Pure; the proxy asks these
//! functions and carries out their answers (fetching signatures, remembering tags).
//!
//! The order, each step seeing only what passed the steps before it:
//!
//! | # | setting          | asks                                                        | when it says no |
//! |---|------------------|-------------------------------------------------------------|-----------------|
//! | 1 | `ACCESS`         | may this principal pull this repository?                    | 401 challenge (anonymous, or a token lacking the scope), or 403 naming the user |
//! | 2 | `DENY_LATEST`    | is the reference the `latest` tag?                          | 403 `DENIED`    |
//! | 3 | `PINS`           | is the tag pinned? then it is that digest                   | —               |
//! | 4 | `IMMUTABLE_TAGS` | did the door already serve this tag? then it is that digest | —               |
//! | 5 | `DENY`           | is the digest asked for, the digest served, or a digest an index lists, known-bad? | 403 `DENIED` with the reason |
//! | 6 | `VERIFY`         | is the digest served signed by a trusted key (itself, or an index listing it)? | 403 `DENIED` saying what is missing |
//! | 7 | —                | allowed                                                     |                 |
//!
//! Steps 1–4 and 5 for the digest asked for run before anything is fetched ([`resolve`]); 5 and 6
//! for what upstream (or the cache) answered run before it is served ([`admit`]). A blob is only
//! subject to 1 and 5 ([`screen_blob`]). What applied is the request's audit decision
//! ([`decision`]): `allowed`, or the steps taken (`pinned`, `immutable`, `verified by key 2`), or
//! `denied: …`.

pub mod cosign;
pub mod sigstore;
pub mod verify;

use crate::access::{glob, Access, Principal};
use crate::config::{pin_key, Config, ConfigError};
use crate::oci::{Digest, Reference};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
pub use verify::KeySet;

/// The settings the policy reads besides `ACCESS`, `PINS` and `DENY_LATEST` (which predate it).
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// `DENY`: digest → why it is refused (a CVE id, a ticket).
    pub deny: BTreeMap<String, String>,
    /// `IMMUTABLE_TAGS`: `<registry>/<repository>:<tag>` patterns (`*` matches any run).
    pub immutable_tags: Vec<String>,
    /// `VERIFY`: `<registry>/<repository>` pattern → the keys trusted for it.
    pub verify: Vec<(String, KeySet)>,
}

fn bad(setting: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        setting: setting.to_owned(),
        problem: problem.into(),
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Keys {
    One(String),
    Many(Vec<String>),
}

impl Policy {
    pub fn load(lookup: &impl Fn(&str) -> Option<String>) -> Result<Policy, ConfigError> {
        let json = crate::config::json_problem;
        let mut policy = Policy::default();
        if let Some(raw) = lookup("DENY") {
            let map: BTreeMap<String, String> = serde_json::from_str(&raw).map_err(|e| {
                bad(
                    "DENY",
                    format!("not a JSON object of digest → reason: {}", json(&e)),
                )
            })?;
            for (digest, reason) in map {
                let d = Digest::parse(&digest).map_err(|e| bad(&format!("DENY[{digest:?}]"), e))?;
                policy.deny.insert(d.to_string(), reason);
            }
        }
        if let Some(raw) = lookup("IMMUTABLE_TAGS") {
            let list: Vec<String> = serde_json::from_str(&raw).map_err(|e| {
                bad(
                    "IMMUTABLE_TAGS",
                    format!("not a JSON list of patterns: {}", json(&e)),
                )
            })?;
            for p in &list {
                let ok = p
                    .rsplit_once(':')
                    .is_some_and(|(name, tag)| name.contains('/') && !tag.contains('/'));
                if !ok {
                    return Err(bad(
                        &format!("IMMUTABLE_TAGS[{p:?}]"),
                        "must be <registry>/<repository>:<tag> (with * anywhere)",
                    ));
                }
            }
            policy.immutable_tags = list;
        }
        if let Some(raw) = lookup("VERIFY") {
            let map: BTreeMap<String, Keys> = serde_json::from_str(&raw).map_err(|e| {
                bad(
                    "VERIFY",
                    format!(
                        "not a JSON object of <registry>/<repository> pattern → PEM public keys: {}",
                        json(&e)
                    ),
                )
            })?;
            for (pattern, keys) in map {
                let setting = format!("VERIFY[{pattern:?}]");
                if !pattern.contains('/') {
                    return Err(bad(&setting, "must be <registry>/<repository>"));
                }
                let keys = match keys {
                    Keys::One(k) => vec![k],
                    Keys::Many(k) => k,
                };
                let set = KeySet::parse(&keys).map_err(|e| bad(&setting, e))?;
                policy.verify.push((pattern, set));
            }
        }
        Ok(policy)
    }

    /// Why `digest` is refused, if it is (`DENY`).
    pub fn denied(&self, digest: &Digest) -> Option<&str> {
        self.deny.get(&digest.to_string()).map(String::as_str)
    }

    /// Whether `registry/repository:tag` keeps the first digest the door served for it.
    pub fn is_immutable(&self, registry: &str, repository: &str, tag: &str) -> bool {
        let image = pin_key(registry, repository, tag);
        self.immutable_tags.iter().any(|p| glob(p, &image))
    }

    /// The keys a manifest of `name` (`<registry>/<repository>`) must be signed by: those of the
    /// longest `VERIFY` pattern that matches it (the most specific), or `None` when none does.
    pub fn keys_for(&self, name: &str) -> Option<&KeySet> {
        self.verify
            .iter()
            .filter(|(p, _)| glob(p, name))
            .max_by_key(|(p, _)| p.len())
            .map(|(_, k)| k)
    }
}

/// What the door remembers of an immutable tag (`crate::cache::keys::immutable_tag`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImmutableRecord {
    /// The digest first served for the tag: served for good.
    pub digest: String,
    pub first_at: u64,
    /// When upstream's tag was last compared with it (once per `TAG_TTL_SECONDS`).
    pub checked_at: u64,
    /// What upstream's tag names instead, when it moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_to: Option<String>,
}

/// That a trusted signature covers a digest (`crate::cache::keys::verified`): by key `key`, over
/// the digest itself or over the index `via`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedRecord {
    pub key: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// For an index: whether the manifests it lists were recorded as covered too.
    #[serde(default)]
    pub children: bool,
}

/// The digests an index lists (`manifests[].digest`); none for anything else.
pub fn listed(manifest: &[u8]) -> Vec<Digest> {
    #[derive(Deserialize)]
    struct Index {
        #[serde(default)]
        manifests: Vec<Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        digest: String,
    }
    serde_json::from_slice::<Index>(manifest)
        .map(|i| {
            i.manifests
                .iter()
                .filter_map(|e| Digest::parse(&e.digest).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a manifest is itself a signature (a cosign `.sig` manifest, a sigstore bundle
/// referrer) or a listing of referrers (the `sha256-<hex>` tag schema: an index whose every entry
/// has an `artifactType`): `VERIFY` does not ask for a signature of a signature (`DENY` still
/// applies), so `cosign verify` works through the door. Judged by the bytes, never by the tag: an
/// image pushed under a `.sig` tag is an image. (A listing's entries are judged on their own when
/// pulled, and it covers none of them.)
pub fn is_signature_artifact(manifest: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Artifact {
        #[serde(rename = "artifactType", default)]
        artifact_type: Option<String>,
        #[serde(default)]
        layers: Vec<Layer>,
        #[serde(default)]
        manifests: Vec<Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        #[serde(rename = "artifactType", default)]
        artifact_type: Option<String>,
    }
    #[derive(Deserialize)]
    struct Layer {
        #[serde(rename = "mediaType", default)]
        media_type: String,
    }
    serde_json::from_slice::<Artifact>(manifest).is_ok_and(|a| {
        a.artifact_type.as_deref() == Some(sigstore::BUNDLE_TYPE)
            || (!a.manifests.is_empty() && a.manifests.iter().all(|m| m.artifact_type.is_some()))
            || (!a.layers.is_empty()
                && a.layers.iter().all(|l| {
                    l.media_type == cosign::SIMPLE_SIGNING || l.media_type == sigstore::BUNDLE_TYPE
                }))
    })
}

/// What step 1 says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessVerdict {
    Allowed,
    /// Anonymous, or a token lacking a scope its user could have: fetch a token.
    Challenge,
    /// A user whose own patterns do not allow it: a new token won't help.
    DeniedUser(String),
}

/// Step 1: may `principal` pull `name` (`<registry>/<repository>`)?
pub fn access(access: &Access, principal: &Principal, name: &str) -> AccessVerdict {
    if access.can_pull(principal, name) {
        return AccessVerdict::Allowed;
    }
    match access.denied_user(principal, name) {
        Some(user) => AccessVerdict::DeniedUser(user.to_owned()),
        None => AccessVerdict::Challenge,
    }
}

/// A policy step that applied to an answer, for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `PINS` named the digest.
    Pinned,
    /// `IMMUTABLE_TAGS`: the digest the door served first for the tag.
    Immutable,
    /// `IMMUTABLE_TAGS`: this answer's digest is now the tag's for good.
    ImmutableLearned,
    /// `VERIFY`: signed by this trusted key (from 1), over the digest itself or over an index
    /// that lists it.
    Verified { key: usize, via_index: bool },
}

impl Step {
    pub fn label(&self) -> String {
        match self {
            Step::Pinned => "pinned".into(),
            Step::Immutable => "immutable".into(),
            Step::ImmutableLearned => "immutable (first served)".into(),
            Step::Verified {
                key,
                via_index: false,
            } => format!("verified by key {key}"),
            Step::Verified {
                key,
                via_index: true,
            } => format!("verified by key {key} (via its index)"),
        }
    }
}

/// A refusal by steps 2, 5 or 6: `403 DENIED` with this message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

/// The audit decision of an answer: the steps taken, `allowed` when none, or the refusal.
pub fn decision(steps: &[Step], refusal: Option<&Refusal>) -> String {
    if let Some(Refusal(why)) = refusal {
        return format!("denied: {why}");
    }
    if steps.is_empty() {
        return "allowed".into();
    }
    steps.iter().map(Step::label).collect::<Vec<_>>().join(", ")
}

/// What a manifest reference becomes before anything is fetched (steps 2–5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub reference: Reference,
    pub step: Option<Step>,
}

/// Steps 2–5 for `registry/repository:reference`; `learned` is the digest the door recorded for
/// an immutable tag (see [`Policy::is_immutable`]), if any.
pub fn resolve(
    config: &Config,
    registry: &str,
    repository: &str,
    reference: &Reference,
    learned: Option<&Digest>,
) -> Result<Resolved, Refusal> {
    let name = format!("{registry}/{repository}");
    let (reference, step) = match reference {
        Reference::Tag(tag) if config.deny_latest && tag == "latest" => {
            return Err(Refusal(format!(
                "{name}:latest is refused by this mirror: pull a version tag or a digest"
            )));
        }
        Reference::Tag(tag) => match config.pins.get(&pin_key(registry, repository, tag)) {
            Some(pin) => (Reference::Digest(pin.clone()), Some(Step::Pinned)),
            None => match learned.filter(|_| config.policy.is_immutable(registry, repository, tag))
            {
                Some(d) => (Reference::Digest(d.clone()), Some(Step::Immutable)),
                None => (reference.clone(), None),
            },
        },
        Reference::Digest(_) => (reference.clone(), None),
    };
    if let Reference::Digest(d) = &reference {
        if let Some(why) = config.policy.denied(d) {
            return Err(Refusal(format!(
                "{name}@{d} is refused by this mirror: {why}"
            )));
        }
    }
    Ok(Resolved { reference, step })
}

/// What the signatures of a manifest said (the proxy looks, this judges).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signed {
    /// No `VERIFY` pattern covers the repository.
    NotRequired,
    /// A trusted key signed it (or an index listing it).
    By { key: usize, via_index: bool },
    /// Nothing verified; why, as a person can act on it.
    Unsigned(String),
}

/// Steps 5–6 for a manifest about to be served: `digest`, the digests it lists (an index's
/// `manifests`), and what its signatures said.
pub fn admit(
    policy: &Policy,
    name: &str,
    digest: &Digest,
    listed: &[Digest],
    signed: &Signed,
) -> Result<Option<Step>, Refusal> {
    if let Some(why) = policy.denied(digest) {
        return Err(Refusal(format!(
            "{name}@{digest} is refused by this mirror: {why}"
        )));
    }
    for child in listed {
        if let Some(why) = policy.denied(child) {
            return Err(Refusal(format!(
                "{name}@{digest} lists {child}, which is refused by this mirror: {why}"
            )));
        }
    }
    match signed {
        Signed::NotRequired => Ok(None),
        Signed::By { key, via_index } => Ok(Some(Step::Verified {
            key: *key,
            via_index: *via_index,
        })),
        Signed::Unsigned(why) => Err(Refusal(format!(
            "no signature by a trusted key for {name}@{digest}: {why} (sign it: cosign sign --key cosign.key {name}@{digest})"
        ))),
    }
}

/// Step 5 for a blob.
pub fn screen_blob(policy: &Policy, name: &str, digest: &Digest) -> Result<(), Refusal> {
    match policy.denied(digest) {
        Some(why) => Err(Refusal(format!(
            "{name}@{digest} is refused by this mirror: {why}"
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Algorithm;

    fn d(s: &str) -> Digest {
        Digest::of(Algorithm::Sha256, s.as_bytes())
    }

    fn config(extra: &[(&str, String)]) -> Config {
        let key = verify::tests::pem(&verify::tests::key(7));
        Config::load(|k| match k {
            "UPSTREAMS" => Some(r#"{"reg.test": {"url": "http://reg.test"}}"#.into()),
            "DEFAULT_REGISTRY" => Some("reg.test".into()),
            "ACCESS" => Some(
                r#"{"users": {"ann": {"password_secret": "PW", "pull": ["reg.test/team/*"]}}}"#
                    .into(),
            ),
            "ACCESS_TOKEN_KEY" => Some("0123456789abcdef0123456789abcdef".into()),
            "PW" => Some("pw".into()),
            "DENY_LATEST" => Some("true".into()),
            "PINS" => Some(format!(r#"{{"reg.test/team/app:v1": "{}"}}"#, d("pin"))),
            "IMMUTABLE_TAGS" => Some(r#"["reg.test/team/*:v*"]"#.into()),
            "DENY" => Some(format!(
                r#"{{"{}": "CVE-2026-0001", "{}": "TICKET-7"}}"#,
                d("bad"),
                d("bad child")
            )),
            "VERIFY" => Some(serde_json::json!({ "reg.test/team/signed*": [key] }).to_string()),
            k => extra.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()),
        })
        .unwrap()
    }

    /// One row: who asks, for what, what the door knows and what upstream answered → the decision.
    struct Row {
        user: Option<&'static str>,
        repo: &'static str,
        reference: &'static str,
        learned: Option<&'static str>,
        served: &'static str,
        listed: &'static [&'static str],
        signed: Signed,
        want: String,
    }

    /// The whole order, as the proxy runs it: access, then resolve, then admit.
    fn decide(c: &Config, row: &Row) -> String {
        let principal = match row.user {
            Some(u) => c.access.login(u, "pw").unwrap(),
            None => Principal::Anonymous,
        };
        let name = format!("reg.test/{}", row.repo);
        match access(&c.access, &principal, &name) {
            AccessVerdict::Allowed => {}
            AccessVerdict::Challenge => return "challenge".into(),
            AccessVerdict::DeniedUser(u) => return format!("403 {u}"),
        }
        let reference = if row.reference.starts_with("sha256:") {
            Reference::Digest(Digest::parse(row.reference).unwrap())
        } else {
            match row.reference.strip_prefix('@') {
                Some(s) => Reference::Digest(d(s)),
                None => Reference::Tag(row.reference.into()),
            }
        };
        let learned = row.learned.map(d);
        let resolved = match resolve(c, "reg.test", row.repo, &reference, learned.as_ref()) {
            Ok(r) => r,
            Err(r) => return decision(&[], Some(&r)),
        };
        let served = match &resolved.reference {
            Reference::Digest(x) => x.clone(),
            Reference::Tag(_) => d(row.served),
        };
        let listed: Vec<Digest> = row.listed.iter().map(|s| d(s)).collect();
        let mut steps: Vec<Step> = resolved.step.into_iter().collect();
        let signed = match c.policy.keys_for(&name) {
            Some(_) => row.signed.clone(),
            None => Signed::NotRequired,
        };
        match admit(&c.policy, &name, &served, &listed, &signed) {
            Ok(step) => steps.extend(step),
            Err(r) => return decision(&steps, Some(&r)),
        }
        decision(&steps, None)
    }

    #[test]
    fn the_policy_order_over_the_combinations() {
        let c = config(&[]);
        let by1 = Signed::By {
            key: 1,
            via_index: false,
        };
        let unsigned = || Signed::Unsigned("no sha256-….sig".into());
        let row = |user, repo, reference, learned, served, listed, signed, want: &str| Row {
            user,
            repo,
            reference,
            learned,
            served,
            listed,
            signed,
            want: want.to_owned(),
        };
        let ann = Some("ann");
        let rows = [
            // 1. ACCESS comes first: nothing else is even looked at.
            row(None, "team/app", "v1", None, "x", &[], unsigned(), "challenge"),
            row(ann, "other/app", "latest", None, "bad", &[], unsigned(), "403 ann"),
            // 2. DENY_LATEST before pins and DENY.
            row(ann, "team/app", "latest", None, "bad", &[], by1.clone(), "denied: reg.test/team/app:latest is refused by this mirror: pull a version tag or a digest"),
            // 3. PINS before IMMUTABLE_TAGS; a pinned digest that is unsigned-but-not-required is allowed.
            row(ann, "team/app", "v1", Some("learned"), "x", &[], unsigned(), "pinned"),
            // 4. IMMUTABLE_TAGS: the learned digest, only for tags that match.
            row(ann, "team/app", "v2", Some("learned"), "x", &[], unsigned(), "immutable"),
            row(ann, "team/app", "rc2", Some("learned"), "x", &[], unsigned(), "allowed"),
            // 5. DENY: the digest asked for (before any fetch), a learned one, one served, one listed.
            row(ann, "team/app", "@bad", None, "x", &[], by1.clone(), &deny("team/app", "bad", "CVE-2026-0001")),
            row(ann, "team/app", "v2", Some("bad"), "x", &[], by1.clone(), &deny("team/app", "bad", "CVE-2026-0001")),
            row(ann, "team/app", "rc2", None, "bad", &[], by1.clone(), &deny("team/app", "bad", "CVE-2026-0001")),
            row(ann, "team/app", "rc2", None, "index", &["ok", "bad child"], by1.clone(), &listing("team/app", "index", "bad child", "TICKET-7")),
            // 5 before 6: a known-bad digest is refused even when properly signed.
            row(ann, "team/signed", "rc2", None, "bad", &[], by1.clone(), &deny("team/signed", "bad", "CVE-2026-0001")),
            // 6. VERIFY only where a pattern covers the repository.
            row(ann, "team/signed", "rc2", None, "x", &[], by1.clone(), "verified by key 1"),
            row(ann, "team/signed-too", "rc2", None, "x", &[], Signed::By { key: 1, via_index: true }, "verified by key 1 (via its index)"),
            row(ann, "team/signed", "rc2", None, "x", &[], unsigned(), &format!("denied: no signature by a trusted key for reg.test/team/signed@{x}: no sha256-….sig (sign it: cosign sign --key cosign.key reg.test/team/signed@{x})", x = d("x"))),
            row(ann, "team/app", "rc2", None, "x", &[], unsigned(), "allowed"),
            // Steps add up: immutable and signed.
            row(ann, "team/signed", "v3", Some("learned"), "x", &[], by1.clone(), "immutable, verified by key 1"),
        ];
        for r in &rows {
            assert_eq!(decide(&c, r), r.want, "{} {}", r.repo, r.reference);
        }

        fn deny(repo: &str, what: &str, why: &str) -> String {
            format!(
                "denied: reg.test/{repo}@{} is refused by this mirror: {why}",
                d(what)
            )
        }
        fn listing(repo: &str, index: &str, child: &str, why: &str) -> String {
            format!(
                "denied: reg.test/{repo}@{} lists {}, which is refused by this mirror: {why}",
                d(index),
                d(child)
            )
        }
    }

    #[test]
    fn signatures_need_no_signature_of_their_own() {
        let sig = format!(
            r#"{{"layers":[{{"mediaType":"{}"}}]}}"#,
            cosign::SIMPLE_SIGNING
        );
        assert!(is_signature_artifact(sig.as_bytes()));
        let bundle = format!(
            r#"{{"artifactType":"{}","layers":[]}}"#,
            sigstore::BUNDLE_TYPE
        );
        assert!(is_signature_artifact(bundle.as_bytes()));
        let image = format!(
            r#"{{"layers":[{{"mediaType":"{}"}},{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip"}}]}}"#,
            cosign::SIMPLE_SIGNING
        );
        assert!(
            !is_signature_artifact(image.as_bytes()),
            "an image with one such layer is an image"
        );
        assert!(!is_signature_artifact(br#"{"manifests":[]}"#));
        let listing = format!(
            r#"{{"manifests":[{{"digest":"sha256:{}","artifactType":"{}"}}]}}"#,
            "ab".repeat(32),
            sigstore::BUNDLE_TYPE
        );
        assert!(
            is_signature_artifact(listing.as_bytes()),
            "a referrers listing"
        );
        let index = format!(
            r#"{{"manifests":[{{"digest":"sha256:{}"}}]}}"#,
            "ab".repeat(32)
        );
        assert!(!is_signature_artifact(index.as_bytes()), "an image index");
    }

    #[test]
    fn settings_are_checked_and_named() {
        let c = config(&[]);
        assert!(c.policy.is_immutable("reg.test", "team/app", "v1.2"));
        assert!(!c.policy.is_immutable("reg.test", "team/app", "latest"));
        assert!(c.policy.keys_for("reg.test/team/signed").is_some());
        assert!(c.policy.keys_for("reg.test/team/app").is_none());
        let load = |name: &str, value: &str| {
            Config::load(|k| match k {
                "UPSTREAMS" => Some(r#"{"reg.test": {"url": "http://reg.test"}}"#.into()),
                "DEFAULT_REGISTRY" => Some("reg.test".into()),
                k if k == name => Some(value.into()),
                _ => None,
            })
            .map(|_| ())
            .map_err(|e| e.setting)
        };
        assert_eq!(
            load("DENY", r#"{"sha256:abc": "x"}"#),
            Err(r#"DENY["sha256:abc"]"#.into())
        );
        assert_eq!(load("DENY", "[]"), Err("DENY".into()));
        assert_eq!(
            load("IMMUTABLE_TAGS", r#"["app"]"#),
            Err(r#"IMMUTABLE_TAGS["app"]"#.into())
        );
        assert_eq!(
            load("VERIFY", r#"{"reg.test/*": []}"#),
            Err(r#"VERIFY["reg.test/*"]"#.into())
        );
        assert_eq!(
            load("VERIFY", r#"{"reg.test/*": "nope"}"#),
            Err(r#"VERIFY["reg.test/*"]"#.into())
        );
        assert_eq!(
            load("VERIFY", r#"{"app": []}"#),
            Err(r#"VERIFY["app"]"#.into())
        );
        let key = verify::tests::pem(&verify::tests::key(9));
        let both = serde_json::json!({"reg.test/*": key, "reg.test/team/*": [key, key]});
        assert_eq!(load("VERIFY", &both.to_string()), Ok(()));
    }
}
