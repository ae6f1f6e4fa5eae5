//! Sigstore bundles attached as OCI 1.1 referrers — what `cosign sign --key` writes by default
//! since cosign 3. Pure: the door fetches, this reads.
//!
//! - The referrer is an image manifest with `artifactType`
//!   `application/vnd.dev.sigstore.bundle.v0.3+json` whose `subject` is the signed manifest; its
//!   layer of that type is the bundle. It is found through the referrers API (or its tag-schema
//!   fallback, `sha256-<hex>`), filtered by that artifact type.
//! - The bundle's `dsseEnvelope` carries an in-toto statement (`payloadType`
//!   `application/vnd.in-toto+json`, base64 `payload`) and `signatures[].sig` over DSSE's
//!   pre-authentication encoding: `"DSSEv1" SP len(type) SP type SP len(payload) SP payload`.
//! - A signature, not an attestation: the statement's `predicateType` must be
//!   `https://sigstore.dev/cosign/sign/v1` (cosign 3 attaches attestations as the same artifact
//!   type), and one of its `subject`s must name the manifest's digest.

use super::KeySet;
use crate::oci::Digest;
use base64::Engine as _;
use serde::Deserialize;

pub const BUNDLE_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
pub const IN_TOTO: &str = "application/vnd.in-toto+json";
pub const SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";
/// A bundle signed with a key is a few KiB (with a certificate chain, tens).
pub const MAX_BUNDLE_BYTES: usize = 256 * 1024;
/// The most referrers looked at for one manifest.
pub const MAX_BUNDLES: usize = 8;

#[derive(Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
    #[serde(rename = "artifactType", default)]
    artifact_type: Option<String>,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
}

/// The bundle referrers a referrers index lists.
pub fn bundle_referrers(index: &[u8]) -> Vec<Digest> {
    let Ok(index) = serde_json::from_slice::<Index>(index) else {
        return Vec::new();
    };
    index
        .manifests
        .iter()
        .filter(|d| d.artifact_type.as_deref() == Some(BUNDLE_TYPE))
        .filter_map(|d| Digest::parse(&d.digest).ok())
        .take(MAX_BUNDLES)
        .collect()
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    layers: Vec<Descriptor>,
}

/// The bundle blobs of a referrer manifest.
pub fn bundle_layers(manifest: &[u8]) -> Vec<Digest> {
    let Ok(m) = serde_json::from_slice::<Manifest>(manifest) else {
        return Vec::new();
    };
    m.layers
        .iter()
        .filter(|l| l.media_type.as_deref() == Some(BUNDLE_TYPE))
        .filter_map(|l| Digest::parse(&l.digest).ok())
        .collect()
}

#[derive(Deserialize)]
struct Bundle {
    #[serde(rename = "dsseEnvelope")]
    dsse: Option<Envelope>,
}

#[derive(Deserialize)]
struct Envelope {
    payload: String,
    #[serde(rename = "payloadType")]
    payload_type: String,
    #[serde(default)]
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Deserialize)]
struct EnvelopeSignature {
    sig: String,
}

#[derive(Deserialize)]
struct Statement {
    #[serde(rename = "predicateType")]
    predicate_type: String,
    #[serde(default)]
    subject: Vec<Subject>,
}

#[derive(Deserialize)]
struct Subject {
    #[serde(default)]
    digest: std::collections::BTreeMap<String, String>,
}

/// DSSE's pre-authentication encoding: what the signature is over.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// The trusted key (from 1) that signed `bundle` as a signature over `subject`; else why not.
pub fn check_bundle(bundle: &[u8], subject: &Digest, keys: &KeySet) -> Result<usize, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let envelope = serde_json::from_slice::<Bundle>(bundle)
        .ok()
        .and_then(|b| b.dsse)
        .ok_or("the bundle holds no DSSE envelope")?;
    if envelope.payload_type != IN_TOTO {
        return Err(format!(
            "the envelope's payloadType is {:?}, not {IN_TOTO:?}",
            envelope.payload_type
        ));
    }
    let payload = b64
        .decode(envelope.payload.trim())
        .map_err(|_| "the envelope's payload is not base64")?;
    let signed = pae(&envelope.payload_type, &payload);
    let key = envelope
        .signatures
        .iter()
        .filter_map(|s| b64.decode(s.sig.trim()).ok())
        .find_map(|sig| keys.signer(&signed, &sig))
        .ok_or("not made by a trusted key over its envelope")?;
    let statement: Statement = serde_json::from_slice(&payload)
        .map_err(|_| "the envelope's payload is not an in-toto statement")?;
    if statement.predicate_type != SIGN_PREDICATE {
        return Err(format!(
            "an attestation ({}), not a signature ({SIGN_PREDICATE})",
            statement.predicate_type
        ));
    }
    let names = |s: &Subject| {
        s.digest
            .get(subject.algorithm().as_str())
            .map(String::as_str)
            == Some(subject.hex())
    };
    if !statement.subject.iter().any(names) {
        return Err(format!(
            "the statement's subject is not {subject} (by key {key})"
        ));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Algorithm;
    use crate::policy::verify::tests::{key, pem, sign_der};

    fn bundle(subject: &Digest, predicate: &str, signer: u8) -> Vec<u8> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let statement = serde_json::json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"digest": {"sha256": subject.hex()}}],
            "predicateType": predicate,
            "predicate": {},
        })
        .to_string();
        let sig = sign_der(&key(signer), &pae(IN_TOTO, statement.as_bytes()));
        serde_json::json!({
            "mediaType": BUNDLE_TYPE,
            "verificationMaterial": {"publicKey": {"hint": "x"}},
            "dsseEnvelope": {"payload": b64.encode(&statement), "payloadType": IN_TOTO,
                "signatures": [{"sig": b64.encode(sig)}]},
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn a_bundle_counts_when_a_trusted_key_signed_a_signature_statement_naming_the_digest() {
        let keys = KeySet::parse(&[pem(&key(5)), pem(&key(6))]).unwrap();
        let d = Digest::of(Algorithm::Sha256, b"manifest");
        assert_eq!(
            check_bundle(&bundle(&d, SIGN_PREDICATE, 6), &d, &keys),
            Ok(2)
        );
        let other = Digest::of(Algorithm::Sha256, b"other");
        assert!(check_bundle(&bundle(&other, SIGN_PREDICATE, 6), &d, &keys)
            .unwrap_err()
            .contains("subject is not"));
        assert!(check_bundle(&bundle(&d, SIGN_PREDICATE, 7), &d, &keys)
            .unwrap_err()
            .contains("not made by a trusted key"));
        assert!(
            check_bundle(&bundle(&d, "https://slsa.dev/provenance/v1", 5), &d, &keys)
                .unwrap_err()
                .contains("an attestation")
        );
        let tampered = String::from_utf8(bundle(&d, SIGN_PREDICATE, 5))
            .unwrap()
            .replace("\"payload\":\"", "\"payload\":\"ey");
        assert!(check_bundle(tampered.as_bytes(), &d, &keys).is_err());
        assert!(check_bundle(b"{}", &d, &keys).is_err());
        assert_eq!(
            pae("t", b"ab"),
            b"DSSEv1 1 t 2 ab".to_vec(),
            "DSSE's encoding"
        );
        let index = format!(
            r#"{{"manifests":[{{"digest":"{d}","artifactType":"{BUNDLE_TYPE}"}},{{"digest":"{other}","artifactType":"application/spdx+json"}}]}}"#
        );
        let found = bundle_referrers(index.as_bytes());
        assert_eq!((found.len(), &found[0]), (1, &d));
        let m = format!(r#"{{"layers":[{{"mediaType":"{BUNDLE_TYPE}","digest":"{d}"}}]}}"#);
        assert_eq!(bundle_layers(m.as_bytes()), [d]);
    }
}
