//! cosign's keyed "simple signing" format, as its `specs/SIGNATURE_SPEC.md` describes it: where the
//! signatures of a manifest live and what a valid one says. Pure: the door fetches, this reads.
//!
//! > Signatures are stored in an OCI image manifest in the same repository, tagged
//! > `sha256-<hex>.sig` after the signed manifest's digest. Each layer is one signature: its media
//! > type is `application/vnd.dev.cosign.simplesigning.v1+json`, its blob is the payload that was
//! > signed, and its `dev.cosignproject.cosign/signature` annotation holds the base64 signature.
//!
//! The payload is JSON with `critical.type` = `cosign container image signature` and
//! `critical.image["docker-manifest-digest"]` = the signed manifest's digest. The signature is over
//! the payload blob's exact bytes, so the bytes are verified first and only then read as JSON.

use crate::oci::Digest;
use base64::Engine as _;
use serde::Deserialize;

pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
pub const SIGNATURE_TYPE: &str = "cosign container image signature";
/// A payload is a few hundred bytes; anything much larger is not one.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// The most signature layers looked at for one manifest (each costs a blob read on a cold pull).
pub const MAX_SIGNATURES: usize = 8;

/// The tag cosign stores the signatures of `digest` under.
pub fn signature_tag(digest: &Digest) -> String {
    format!("{}-{}.sig", digest.algorithm().as_str(), digest.hex())
}

/// One signature layer: the payload blob it names and the signature over it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureLayer {
    pub payload: Digest,
    pub signature: Vec<u8>,
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    layers: Vec<Layer>,
}

#[derive(Deserialize)]
struct Layer {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

/// The signature layers of a `.sig` manifest (layers of other types are not signatures and are
/// skipped; a signature annotation that is not base64 is skipped too, and said so).
pub fn signature_layers(manifest: &[u8]) -> Result<Vec<SignatureLayer>, String> {
    let m: Manifest = serde_json::from_slice(manifest)
        .map_err(|_| "the signature manifest is not an OCI image manifest".to_owned())?;
    let mut out = Vec::new();
    for layer in m
        .layers
        .into_iter()
        .filter(|l| l.media_type == SIMPLE_SIGNING)
    {
        let Some(b64) = layer.annotations.get(SIGNATURE_ANNOTATION) else {
            continue;
        };
        let (Ok(payload), Ok(signature)) = (
            Digest::parse(&layer.digest),
            base64::engine::general_purpose::STANDARD.decode(b64.trim()),
        ) else {
            continue;
        };
        out.push(SignatureLayer { payload, signature });
        if out.len() == MAX_SIGNATURES {
            break;
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
struct Payload {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    #[serde(rename = "type")]
    kind: String,
    image: Image,
}

#[derive(Deserialize)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    digest: String,
}

/// Whether a payload (whose bytes were already checked against its digest and its signature)
/// claims exactly `subject`; the error says what it claims instead.
pub fn check_payload(payload: &[u8], subject: &Digest) -> Result<(), String> {
    let p: Payload = serde_json::from_slice(payload).map_err(|_| {
        "the payload is not a simple-signing document (critical.type, critical.image)".to_owned()
    })?;
    if p.critical.kind != SIGNATURE_TYPE {
        return Err(format!(
            "the payload's critical.type is {:?}, not {SIGNATURE_TYPE:?}",
            p.critical.kind
        ));
    }
    if p.critical.image.digest != subject.to_string() {
        return Err(format!(
            "the signature is over {}, not this manifest",
            p.critical.image.digest
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Algorithm;

    #[test]
    fn signature_layers_and_payloads_per_the_spec() {
        let subject = Digest::of(Algorithm::Sha256, b"manifest");
        assert_eq!(
            signature_tag(&subject),
            format!("sha256-{}.sig", subject.hex())
        );
        let payload = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"reg.test/app"}},"image":{{"docker-manifest-digest":"{subject}"}},"type":"cosign container image signature"}},"optional":null}}"#
        );
        assert_eq!(check_payload(payload.as_bytes(), &subject), Ok(()));
        let other = Digest::of(Algorithm::Sha256, b"other");
        assert!(check_payload(payload.as_bytes(), &other)
            .unwrap_err()
            .contains("not this manifest"));
        let wrong = payload.replace("cosign container image signature", "attestation");
        assert!(check_payload(wrong.as_bytes(), &subject)
            .unwrap_err()
            .contains("critical.type"));
        assert!(check_payload(b"[]", &subject).is_err());

        let pd = Digest::of(Algorithm::Sha256, payload.as_bytes());
        let manifest = format!(
            r#"{{"schemaVersion":2,"config":{{}},"layers":[
              {{"mediaType":"{SIMPLE_SIGNING}","digest":"{pd}","annotations":{{"{SIGNATURE_ANNOTATION}":"AQID"}}}},
              {{"mediaType":"application/octet-stream","digest":"{pd}","annotations":{{"{SIGNATURE_ANNOTATION}":"AQID"}}}},
              {{"mediaType":"{SIMPLE_SIGNING}","digest":"{pd}"}},
              {{"mediaType":"{SIMPLE_SIGNING}","digest":"{pd}","annotations":{{"{SIGNATURE_ANNOTATION}":"not base64!"}}}}]}}"#
        );
        let layers = signature_layers(manifest.as_bytes()).unwrap();
        assert_eq!(
            layers,
            [SignatureLayer {
                payload: pd,
                signature: vec![1, 2, 3]
            }]
        );
        assert!(signature_layers(b"not json").is_err());
    }
}
