//! Trusted public keys and the signature checks the door makes over exact bytes: ECDSA P-256 with
//! SHA-256 (what `cosign generate-key-pair` keys sign) and Ed25519 (keys imported into cosign, or
//! held in a KMS). Pure; a key set is named by a hash of its keys, never by the keys themselves.
//!
//! Keys come as PEM `PUBLIC KEY` blocks (X.509 `SubjectPublicKeyInfo`, as in `cosign.pub`). Both
//! kinds of `SubjectPublicKeyInfo` are a fixed header followed by the key — for P-256 26 bytes
//! (`id-ecPublicKey`, `prime256v1`, a 66-byte BIT STRING) and the uncompressed SEC1 point, for
//! Ed25519 12 bytes (`id-Ed25519`, a 33-byte BIT STRING) and the 32-byte key — so they are matched,
//! not parsed: no ASN.1 library comes into the upload for them. RSA keys are refused.

use base64::Engine as _;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use sha2::{Digest as _, Sha256};
use std::fmt;

/// `SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (0 unused bits, 65 bytes) }`.
const P256_SPKI_HEADER: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// `SEQUENCE { SEQUENCE { id-Ed25519 }, BIT STRING (0 unused bits, 32 bytes) }` (RFC 8410).
const ED25519_SPKI_HEADER: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

#[derive(Clone)]
enum Key {
    P256(VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl Key {
    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            Key::P256(k) => {
                signature_from(signature).is_some_and(|s| k.verify(message, &s).is_ok())
            }
            Key::Ed25519(k) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|s| k.verify_strict(message, &s).is_ok()),
        }
    }
}

/// The keys trusted for a set of repositories (one `VERIFY` entry), in the order written: a
/// signature is "by key N", counting from 1.
#[derive(Clone)]
pub struct KeySet {
    keys: Vec<Key>,
    id: String,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeySet({} keys, {})", self.keys.len(), self.id)
    }
}

impl KeySet {
    /// Parses PEM public keys; an empty list trusts nothing and is refused.
    pub fn parse(pems: &[String]) -> Result<KeySet, String> {
        if pems.is_empty() {
            return Err("lists no key".into());
        }
        let mut keys = Vec::new();
        let mut hash = Sha256::new();
        for (i, pem) in pems.iter().enumerate() {
            let bad = |e: &str| format!("key {}: {e}", i + 1);
            let der = spki(pem).map_err(&bad)?;
            let key = if let Some(point) = der.strip_prefix(&P256_SPKI_HEADER[..]) {
                VerifyingKey::from_sec1_bytes(point)
                    .map(Key::P256)
                    .map_err(|_| bad("not a point on P-256"))?
            } else if let Some(Ok(raw)) = der
                .strip_prefix(&ED25519_SPKI_HEADER[..])
                .map(<[u8; 32]>::try_from)
            {
                ed25519_dalek::VerifyingKey::from_bytes(&raw)
                    .map(Key::Ed25519)
                    .map_err(|_| bad("not an Ed25519 point"))?
            } else {
                return Err(bad(
                    "not an ECDSA P-256 or Ed25519 public key (RSA is not verified here)",
                ));
            };
            hash.update(&der);
            keys.push(key);
        }
        let id = hex::encode(&hash.finalize()[..8]);
        Ok(KeySet { keys, id })
    }

    /// A short name for the set (a hash of its keys), for cache keys and logs.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The number (from 1) of the first key whose signature `signature` verifies over `message`:
    /// ECDSA-P256-SHA256 (ASN.1 DER, as cosign writes it, or the 64-byte `r‖s` form) or Ed25519
    /// (strict: no small-order keys or non-canonical signatures).
    pub fn signer(&self, message: &[u8], signature: &[u8]) -> Option<usize> {
        self.keys
            .iter()
            .position(|k| k.verifies(message, signature))
            .map(|i| i + 1)
    }
}

/// The DER inside a PEM `PUBLIC KEY` block.
fn spki(pem: &str) -> Result<Vec<u8>, &'static str> {
    let pem = pem.trim();
    let body = pem
        .strip_prefix("-----BEGIN PUBLIC KEY-----")
        .and_then(|rest| rest.trim_end().strip_suffix("-----END PUBLIC KEY-----"))
        .ok_or("not a PEM PUBLIC KEY block (cosign.pub)")?;
    let b64: String = body.split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "the PEM body is not base64")
}

/// An ECDSA signature from DER (`SEQUENCE { INTEGER r, INTEGER s }`) or raw `r‖s`.
fn signature_from(bytes: &[u8]) -> Option<Signature> {
    if bytes.len() == 64 {
        return Signature::from_slice(bytes).ok();
    }
    let (&tag, rest) = bytes.split_first()?;
    let (&len, rest) = rest.split_first()?;
    if tag != 0x30 || usize::from(len) != rest.len() {
        return None;
    }
    let (r, rest) = der_uint(rest)?;
    let (s, rest) = der_uint(rest)?;
    if !rest.is_empty() {
        return None;
    }
    let mut raw = [0u8; 64];
    raw[32 - r.len()..32].copy_from_slice(r);
    raw[64 - s.len()..].copy_from_slice(s);
    Signature::from_slice(&raw).ok()
}

/// One DER INTEGER of at most 32 significant bytes, without its sign padding.
fn der_uint(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    let (&len, rest) = rest.split_first()?;
    let len = usize::from(len);
    if tag != 0x02 || len == 0 || len > rest.len() {
        return None;
    }
    let (mut int, rest) = rest.split_at(len);
    while int.len() > 1 && int[0] == 0 {
        int = &int[1..];
    }
    (int.len() <= 32).then_some((int, rest))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer;
    use p256::ecdsa::SigningKey;

    /// A fixed key for tests (never a real one): its scalar is `seed` repeated.
    pub(crate) fn key(seed: u8) -> SigningKey {
        SigningKey::from_slice(&[seed; 32]).unwrap()
    }

    pub(crate) fn pem(key: &SigningKey) -> String {
        let point = key.verifying_key().to_encoded_point(false);
        let mut der = P256_SPKI_HEADER.to_vec();
        der.extend_from_slice(point.as_bytes());
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n")
    }

    pub(crate) fn sign_der(key: &SigningKey, message: &[u8]) -> Vec<u8> {
        let sig: Signature = key.sign(message);
        let raw = sig.to_bytes();
        let int = |half: &[u8]| {
            let mut v: Vec<u8> = half.iter().copied().skip_while(|&b| b == 0).collect();
            if v.first().is_some_and(|&b| b >= 0x80) {
                v.insert(0, 0);
            }
            let mut out = vec![0x02, v.len() as u8];
            out.extend(v);
            out
        };
        let body = [int(&raw[..32]), int(&raw[32..])].concat();
        [vec![0x30, body.len() as u8], body].concat()
    }

    #[test]
    fn a_signature_is_by_the_key_that_made_it_and_over_those_bytes_only() {
        let (a, b) = (key(1), key(2));
        let set = KeySet::parse(&[pem(&b), pem(&a)]).unwrap();
        let der = sign_der(&a, b"payload");
        assert_eq!(set.signer(b"payload", &der), Some(2));
        let raw: Signature = a.sign(b"payload");
        assert_eq!(set.signer(b"payload", &raw.to_bytes()), Some(2));
        assert_eq!(set.signer(b"payload!", &der), None, "other bytes");
        let mut flipped = der.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(
            set.signer(b"payload", &flipped),
            None,
            "a corrupted signature"
        );
        assert_eq!(set.signer(b"payload", b"\x30\x00"), None);
        let only_b = KeySet::parse(&[pem(&b)]).unwrap();
        assert_eq!(only_b.signer(b"payload", &der), None, "another key");
        assert_ne!(only_b.id(), set.id());
    }

    #[test]
    fn ed25519_keys_verify_too() {
        use ed25519_dalek::Signer as _;
        let ed = ed25519_dalek::SigningKey::from_bytes(&[4; 32]);
        let mut der = ED25519_SPKI_HEADER.to_vec();
        der.extend_from_slice(ed.verifying_key().as_bytes());
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let ed_pem = format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n");
        let set = KeySet::parse(&[pem(&key(1)), ed_pem]).unwrap();
        let sig = ed.sign(b"payload").to_bytes();
        assert_eq!(set.signer(b"payload", &sig), Some(2));
        assert_eq!(set.signer(b"payload?", &sig), None);
        assert_eq!(
            set.signer(b"payload", &sign_der(&key(1), b"payload")),
            Some(1)
        );
    }

    #[test]
    fn only_p256_and_ed25519_public_keys_are_taken() {
        assert!(KeySet::parse(&[]).is_err());
        let bad =
            KeySet::parse(&["-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----".into()]);
        assert!(bad
            .unwrap_err()
            .contains("key 1: not an ECDSA P-256 or Ed25519"));
        assert!(KeySet::parse(&["ssh-ed25519 AAAA".into()]).is_err());
        let set = KeySet::parse(&[pem(&key(3))]).unwrap();
        assert_eq!(set.len(), 1);
        assert!(
            !format!("{set:?}").contains("BEGIN"),
            "Debug names the set only"
        );
    }
}
