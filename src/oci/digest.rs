//! Content digests (`algorithm:encoded`), as the OCI image spec defines them.
//!
//! Only the registered algorithms `sha256` and `sha512` are accepted: the spec says an
//! implementation "SHOULD" refuse an unknown algorithm rather than pass it through unverified, and a
//! door that cannot verify a digest must not cache what it names.

use sha2::{Digest as _, Sha256, Sha512};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the hex encoding.
    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A validated digest: a registered algorithm and its lowercase hex encoding.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// Parses `sha256:<64 lowercase hex>` or `sha512:<128 lowercase hex>`.
    pub fn parse(s: &str) -> Result<Digest, String> {
        let (alg, hex) = s
            .split_once(':')
            .ok_or_else(|| format!("digest {s:?} has no algorithm"))?;
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => return Err(format!("digest algorithm {alg:?} is not supported")),
        };
        if hex.len() != algorithm.hex_len() {
            return Err(format!(
                "{alg} digest must have {} hex characters, got {}",
                algorithm.hex_len(),
                hex.len()
            ));
        }
        // The spec's encoded form for sha256/sha512 is `[a-f0-9]`: uppercase is not the same digest.
        if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(format!("{alg} digest must be lowercase hex"));
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_owned(),
        })
    }

    /// The digest of `bytes` under `algorithm`.
    pub fn of(algorithm: Algorithm, bytes: &[u8]) -> Digest {
        let hex = match algorithm {
            Algorithm::Sha256 => hex::encode(Sha256::digest(bytes)),
            Algorithm::Sha512 => hex::encode(Sha512::digest(bytes)),
        };
        Digest { algorithm, hex }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The hex encoding, without the algorithm.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The raw hash bytes (what R2 wants for its checksum check).
    pub fn raw(&self) -> Vec<u8> {
        hex::decode(&self.hex).expect("validated at construction")
    }

    /// Whether `bytes` hash to this digest.
    pub fn verifies(&self, bytes: &[u8]) -> bool {
        Digest::of(self.algorithm, bytes) == *self
    }
}

/// A digest computed over bytes that arrive in pieces (a streamed blob).
#[derive(Clone)]
pub enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Hasher {
    pub fn new(algorithm: Algorithm) -> Hasher {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    pub fn finish(self) -> Digest {
        match self {
            Hasher::Sha256(h) => Digest {
                algorithm: Algorithm::Sha256,
                hex: hex::encode(h.finalize()),
            },
            Hasher::Sha512(h) => Digest {
                algorithm: Algorithm::Sha512,
                hex: hex::encode(h.finalize()),
            },
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_prints_back() {
        let d = Digest::parse(EMPTY_SHA256).unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.to_string(), EMPTY_SHA256);
        assert_eq!(d.raw().len(), 32);
    }

    #[test]
    fn verifies_content() {
        let d = Digest::parse(EMPTY_SHA256).unwrap();
        assert!(d.verifies(b""));
        assert!(!d.verifies(b"x"));
        assert_eq!(Digest::of(Algorithm::Sha256, b""), d);
        let d512 = Digest::of(Algorithm::Sha512, b"abc");
        assert_eq!(d512.hex().len(), 128);
        assert!(Digest::parse(&d512.to_string()).unwrap().verifies(b"abc"));
    }

    #[test]
    fn hashing_in_pieces_equals_hashing_at_once() {
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let mut h = Hasher::new(alg);
            for piece in [&b"hello "[..], b"", b"wor", b"ld"] {
                h.update(piece);
            }
            assert_eq!(h.finish(), Digest::of(alg, b"hello world"));
        }
    }

    #[test]
    fn refuses_malformed() {
        let hex64 = "a".repeat(64);
        let cases = [
            "",
            "sha256",
            ":abc",
            &format!("md5:{hex64}"),
            &format!("SHA256:{hex64}"),
            "sha256:abc",
            &format!("sha256:{}", "A".repeat(64)),
            &format!("sha256:{}", "g".repeat(64)),
            &format!("sha256:{hex64}0"),
            &format!("sha512:{hex64}"),
            &format!("sha256:{}", "é".repeat(32)),
        ];
        for case in cases {
            assert!(Digest::parse(case).is_err(), "{case:?} should be refused");
        }
    }
}
