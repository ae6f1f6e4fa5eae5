//! Record encodings for KV, and the tag freshness rule.

use crate::oci::Digest;
use serde::{Deserialize, Serialize};

/// A manifest as received from upstream. Encoded as one JSON header line, `\n`, then the exact
/// manifest bytes, so the bytes served are the bytes whose digest was verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRecord {
    pub media_type: String,
    pub bytes: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct ManifestHeader {
    #[serde(rename = "mediaType")]
    media_type: String,
}

impl ManifestRecord {
    pub fn encode(&self) -> Vec<u8> {
        let header = ManifestHeader {
            media_type: self.media_type.clone(),
        };
        let mut out = serde_json::to_vec(&header).expect("serializing a string cannot fail");
        out.push(b'\n');
        out.extend_from_slice(&self.bytes);
        out
    }

    /// Decodes a stored record and checks it still hashes to `digest`: a record that does not is
    /// treated as absent rather than served.
    pub fn decode(stored: &[u8], digest: &Digest) -> Option<ManifestRecord> {
        let nl = stored.iter().position(|&b| b == b'\n')?;
        let header: ManifestHeader = serde_json::from_slice(&stored[..nl]).ok()?;
        let bytes = stored[nl + 1..].to_vec();
        digest.verifies(&bytes).then_some(ManifestRecord {
            media_type: header.media_type,
            bytes,
        })
    }
}

/// The largest manifest a tag record carries itself ([`TagRecord::manifest`]). Manifests may be
/// 4 MiB (`crate::proxy::MAX_MANIFEST_BYTES`) and a KV value 25 MiB, but a tag's manifest is
/// typically a few KiB: carrying it makes a warm pull of the tag one KV read instead of two (the
/// pointer, then the manifest by digest). Above this the record names the digest only, and the
/// manifest is read by digest as before — a pointer stays small where the manifest is not.
pub const INLINE_MANIFEST_BYTES: usize = 64 * 1024;

/// What a tag pointed at, and when upstream said so (Unix seconds). An upstream `HEAD` tells the
/// manifest's type and size as well as its digest, so a `HEAD` of the tag can be answered from
/// this record alone (older records carry only the digest).
///
/// Encoded as a JSON line; when the record carries its manifest, `\n` and the manifest's exact
/// bytes follow (as in [`ManifestRecord`]: compact JSON holds no raw newline). A record without
/// the bytes — written from a `HEAD`, above [`INLINE_MANIFEST_BYTES`], or before records carried
/// them — is the same JSON alone, so records of every age decode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagRecord {
    pub digest: String,
    pub fetched_at: u64,
    #[serde(default, rename = "mediaType", skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The manifest's bytes, when the record carries them (see [`TagRecord::inline`]).
    #[serde(skip)]
    pub manifest: Option<Vec<u8>>,
}

impl TagRecord {
    /// What a tag names now: `record`, stored under `digest`, as upstream sent it at `now` —
    /// carrying the manifest itself when it is small enough.
    pub fn of(digest: &Digest, record: &ManifestRecord, now: u64) -> TagRecord {
        TagRecord {
            digest: digest.to_string(),
            fetched_at: now,
            media_type: None,
            size: None,
            manifest: None,
        }
        .carrying(record)
    }

    /// This record with `record` (the manifest it names) carried along, if small enough; its
    /// type and size are then the manifest's.
    pub fn carrying(mut self, record: &ManifestRecord) -> TagRecord {
        self.media_type = Some(record.media_type.clone());
        self.size = Some(record.bytes.len() as u64);
        self.manifest = (record.bytes.len() <= INLINE_MANIFEST_BYTES).then(|| record.bytes.clone());
        self
    }

    /// The manifest the record carries, if it carries one that still hashes to `digest` (the
    /// digest it names, parsed) with a known type: otherwise the manifest is read by digest, as
    /// for a record that carries none.
    pub fn inline(&mut self, digest: &Digest) -> Option<ManifestRecord> {
        let bytes = self.manifest.take()?;
        let media_type = self.media_type.clone()?;
        digest
            .verifies(&bytes)
            .then_some(ManifestRecord { media_type, bytes })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).expect("serializing a record cannot fail");
        if let Some(bytes) = &self.manifest {
            out.reserve(1 + bytes.len());
            out.push(b'\n');
            out.extend_from_slice(bytes);
        }
        out
    }

    pub fn decode(stored: &[u8]) -> Option<TagRecord> {
        let Some(nl) = stored.iter().position(|&b| b == b'\n') else {
            return serde_json::from_slice(stored).ok();
        };
        let mut record: TagRecord = serde_json::from_slice(&stored[..nl]).ok()?;
        record.manifest = Some(stored[nl + 1..].to_vec());
        Some(record)
    }

    /// Inside the tag TTL the door answers without asking upstream.
    pub fn is_fresh(&self, now: u64, ttl: u64) -> bool {
        now < self.fetched_at.saturating_add(ttl)
    }
}

/// An upstream 404, remembered for `NEGATIVE_TTL_SECONDS` so a missing tag does not cost an
/// upstream request every time a node asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbsentRecord {
    pub fetched_at: u64,
}

impl AbsentRecord {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("serializing a record cannot fail")
    }

    pub fn decode(stored: &[u8]) -> Option<AbsentRecord> {
        serde_json::from_slice(stored).ok()
    }

    pub fn is_fresh(&self, now: u64, ttl: u64) -> bool {
        now < self.fetched_at.saturating_add(ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Algorithm;

    #[test]
    fn manifest_roundtrip_keeps_exact_bytes() {
        let bytes = b"{ \"schemaVersion\": 2,\n \"x\": 1 }\n".to_vec();
        let d = Digest::of(Algorithm::Sha256, &bytes);
        let r = ManifestRecord {
            media_type: crate::oci::OCI_MANIFEST.into(),
            bytes,
        };
        assert_eq!(ManifestRecord::decode(&r.encode(), &d), Some(r.clone()));
        let other = Digest::of(Algorithm::Sha256, b"other");
        assert_eq!(
            ManifestRecord::decode(&r.encode(), &other),
            None,
            "corrupt record"
        );
        assert_eq!(ManifestRecord::decode(b"garbage", &d), None);
    }

    #[test]
    fn tag_freshness() {
        let t = TagRecord {
            digest: "sha256:x".into(),
            fetched_at: 1000,
            media_type: None,
            size: None,
            manifest: None,
        };
        assert_eq!(TagRecord::decode(&t.encode()), Some(t.clone()));
        assert_eq!(
            TagRecord::decode(br#"{"digest":"sha256:x","fetched_at":1000}"#),
            Some(t.clone()),
            "records written before type and size were kept"
        );
        let full = TagRecord {
            media_type: Some(crate::oci::OCI_INDEX.into()),
            size: Some(512),
            ..t.clone()
        };
        assert_eq!(TagRecord::decode(&full.encode()), Some(full));
        assert!(t.is_fresh(1000, 300));
        assert!(t.is_fresh(1299, 300));
        assert!(!t.is_fresh(1300, 300));
        assert!(!t.is_fresh(1000, 0), "TTL 0 always revalidates");
    }

    #[test]
    fn tag_record_carries_small_manifests() {
        let bytes = b"{\"schemaVersion\":2,\n \"x\": \"a\\nb\"}\n".to_vec();
        let d = Digest::of(Algorithm::Sha256, &bytes);
        let m = ManifestRecord {
            media_type: crate::oci::OCI_MANIFEST.into(),
            bytes: bytes.clone(),
        };
        let t = TagRecord::of(&d, &m, 1000);
        assert_eq!(t.manifest.as_deref(), Some(&bytes[..]));
        assert_eq!(t.size, Some(bytes.len() as u64));
        let stored = t.encode();
        assert!(
            stored.ends_with(&bytes),
            "the exact bytes, after the JSON line"
        );
        let mut back = TagRecord::decode(&stored).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.inline(&d), Some(m.clone()));
        assert_eq!(back.manifest, None, "taken");

        // Bytes that no longer hash to the digest are not served: the manifest is read by digest.
        let mut corrupt = stored.clone();
        *corrupt.last_mut().unwrap() = b' ';
        assert_eq!(TagRecord::decode(&corrupt).unwrap().inline(&d), None);
        let other = Digest::of(Algorithm::Sha256, b"other");
        assert_eq!(TagRecord::decode(&stored).unwrap().inline(&other), None);

        // A record from before records carried manifests carries none.
        let mut old = TagRecord::decode(
            br#"{"digest":"sha256:x","fetched_at":1000,"mediaType":"a","size":3}"#,
        )
        .unwrap();
        assert_eq!(old.inline(&d), None);

        // Above the limit the record names the digest, type and size only.
        let big = ManifestRecord {
            media_type: crate::oci::OCI_MANIFEST.into(),
            bytes: vec![b' '; INLINE_MANIFEST_BYTES + 1],
        };
        let bd = Digest::of(Algorithm::Sha256, &big.bytes);
        let t = TagRecord::of(&bd, &big, 1000);
        assert_eq!(
            (t.manifest.as_ref(), t.size),
            (None, Some(big.bytes.len() as u64))
        );
        assert!(!t.encode().contains(&b'\n'));
        let at_limit = ManifestRecord {
            bytes: vec![b' '; INLINE_MANIFEST_BYTES],
            ..big
        };
        let ad = Digest::of(Algorithm::Sha256, &at_limit.bytes);
        assert!(TagRecord::of(&ad, &at_limit, 1000).manifest.is_some());
    }
}
