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

/// What a tag pointed at, and when upstream said so (Unix seconds). An upstream `HEAD` tells the
/// manifest's type and size as well as its digest, so a `HEAD` of the tag can be answered from
/// this record alone (older records carry only the digest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagRecord {
    pub digest: String,
    pub fetched_at: u64,
    #[serde(default, rename = "mediaType", skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

impl TagRecord {
    /// What a tag names now: `record`, stored under `digest`, as upstream sent it at `now`.
    pub fn of(digest: &Digest, record: &ManifestRecord, now: u64) -> TagRecord {
        TagRecord {
            digest: digest.to_string(),
            fetched_at: now,
            media_type: Some(record.media_type.clone()),
            size: Some(record.bytes.len() as u64),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("serializing a record cannot fail")
    }

    pub fn decode(stored: &[u8]) -> Option<TagRecord> {
        serde_json::from_slice(stored).ok()
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
}
