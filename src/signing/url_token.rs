//! Self-signed, expiring URLs for the door's own `/_blob/<digest>` endpoint: [`sign`] makes the
//! query string `expires=<unix>&sig=<mac>`, [`verify`] (or [`verify_query`]) checks one.
//!
//! The MAC is HMAC-SHA256, under a key only the door holds, over a canonical string of this
//! scheme's version tag, the digest and the expiry. So a signature is good for that one blob until
//! that second, and for nothing else: not another digest, not a later expiry, not another scheme
//! that happens to share the key. Signatures are compared in constant time (`hmac`'s
//! `verify_slice`), so the time a refusal takes says nothing about how close a forgery came.
//!
//! It does not: parse routes or digests (the caller passes the digest it has validated, in its
//! `algorithm:hex` form), choose lifetimes, hold or load the key, or read a clock (`now` is a
//! parameter, Unix seconds).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

type HmacSha256 = Hmac<Sha256>;

/// Names this scheme inside what is signed. A change to the canonical string gets a new tag, so
/// a signature made one way can never be read as one made another way.
const VERSION: &str = "frontdoor/blob-url/v1";
/// HMAC-SHA256's output: 32 bytes, 43 characters of unpadded base64url.
const SIG_BYTES: usize = 32;
/// The key the door should be configured with, at least: RFC 2104 says a key shorter than the
/// hash output "is strongly discouraged as it would decrease the security strength". Enforced
/// where the key is loaded, not here.
pub const MIN_KEY_BYTES: usize = 32;

/// Why a blob URL is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlTokenError {
    /// `expires` or `sig` is missing, repeated or not in the form [`sign`] writes.
    Malformed,
    /// Well-formed, but not what the key signs for this digest and expiry: tampered with, made
    /// for another blob, or made under another key.
    BadSignature,
    /// Genuine, and `now` is at or past its expiry.
    Expired,
}

impl fmt::Display for UrlTokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UrlTokenError::Malformed => "blob URL signature is malformed",
            UrlTokenError::BadSignature => "blob URL signature does not match",
            UrlTokenError::Expired => "blob URL has expired",
        })
    }
}

impl std::error::Error for UrlTokenError {}

/// `expires=<expires_at>&sig=<base64url, unpadded>`: the query string that lets `digest` be
/// fetched until `expires_at` (Unix seconds, exclusive). Neither value needs percent-encoding.
pub fn sign(key: &[u8], digest: &str, expires_at: u64) -> String {
    let sig = URL_SAFE_NO_PAD.encode(mac(key, digest, expires_at).finalize().into_bytes());
    format!("expires={expires_at}&sig={sig}")
}

/// Checks the `expires` and `sig` values of a blob URL for `digest` at `now`.
///
/// The signature is checked before the expiry, so [`UrlTokenError::Expired`] is only ever said of
/// a URL the door really made.
pub fn verify(
    key: &[u8],
    digest: &str,
    expires: &str,
    sig: &str,
    now: u64,
) -> Result<(), UrlTokenError> {
    let expires_at = parse_expires(expires)?;
    // The base64 engine refuses padding and non-zero trailing bits, so each signature has exactly
    // one accepted spelling.
    let sig = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| UrlTokenError::Malformed)?;
    if sig.len() != SIG_BYTES {
        return Err(UrlTokenError::Malformed);
    }
    mac(key, digest, expires_at)
        .verify_slice(&sig)
        .map_err(|_| UrlTokenError::BadSignature)?;
    if now >= expires_at {
        return Err(UrlTokenError::Expired);
    }
    Ok(())
}

/// [`verify`] on a whole query string (without the `?`), in any parameter order. Other
/// parameters are ignored; a repeated `expires` or `sig` is refused rather than guessed between.
pub fn verify_query(key: &[u8], digest: &str, query: &str, now: u64) -> Result<(), UrlTokenError> {
    let (mut expires, mut sig) = (None, None);
    for pair in query.split('&') {
        let slot = match pair.split_once('=') {
            Some(("expires", v)) => (&mut expires, v),
            Some(("sig", v)) => (&mut sig, v),
            _ => continue,
        };
        if slot.0.replace(slot.1).is_some() {
            return Err(UrlTokenError::Malformed);
        }
    }
    match (expires, sig) {
        (Some(expires), Some(sig)) => verify(key, digest, expires, sig, now),
        _ => Err(UrlTokenError::Malformed),
    }
}

/// The MAC over the canonical string `<VERSION>\n<digest>\n<expires_at>`. The expiry is last and
/// is only digits, so the string splits back into its fields one way only, whatever the digest.
fn mac(key: &[u8], digest: &str, expires_at: u64) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(format!("{VERSION}\n{digest}\n{expires_at}").as_bytes());
    mac
}

/// Decimal digits as [`sign`] writes them: no sign, no leading zero, no overflow. One spelling per
/// value, so a URL cannot be varied without its signature failing to parse or to match.
fn parse_expires(s: &str) -> Result<u64, UrlTokenError> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if !canonical {
        return Err(UrlTokenError::Malformed);
    }
    s.parse().map_err(|_| UrlTokenError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const DIGEST: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const OTHER_DIGEST: &str =
        "sha256:ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb";
    const EXPIRES: u64 = 1_700_000_000;

    fn sig_of(query: &str) -> String {
        query.split_once("&sig=").unwrap().1.to_owned()
    }

    /// Pins the wire format and the canonical string: computed independently with Python's
    /// `hmac` over `b"frontdoor/blob-url/v1\n" + digest + b"\n1700000000"`. If this changes,
    /// every URL already handed out stops verifying, so the version tag must change with it.
    #[test]
    fn known_answer() {
        assert_eq!(
            sign(KEY, DIGEST, EXPIRES),
            "expires=1700000000&sig=U3im7ubVy17_mUZ1JigYMF7Dfa6Lt3avZYJzwIf6xVs"
        );
    }

    #[test]
    fn verify_cases() {
        let good = sig_of(&sign(KEY, DIGEST, EXPIRES));
        let mut flipped = good.clone().into_bytes();
        flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        let unversioned = {
            let mut m = HmacSha256::new_from_slice(KEY).unwrap();
            m.update(format!("{DIGEST}\n{EXPIRES}").as_bytes());
            URL_SAFE_NO_PAD.encode(m.finalize().into_bytes())
        };
        let standard_alphabet = base64::engine::general_purpose::STANDARD_NO_PAD
            .encode(URL_SAFE_NO_PAD.decode(&good).unwrap());
        assert_ne!(
            standard_alphabet, good,
            "the case below needs a '-' or '_' in the signature"
        );
        let exp = EXPIRES.to_string();
        let later = (EXPIRES + 1).to_string();
        let leading_zero = format!("0{exp}");
        let plus_sign = format!("+{exp}");
        let before = EXPIRES - 1;

        use UrlTokenError::*;
        /// (what, key, digest, expires, sig, now, expected)
        type Case<'a> = (
            &'a str,
            &'a [u8],
            &'a str,
            &'a str,
            String,
            u64,
            Result<(), UrlTokenError>,
        );
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            ("genuine, well before expiry", KEY, DIGEST, &exp, good.clone(), 0, Ok(())),
            ("genuine, last valid second", KEY, DIGEST, &exp, good.clone(), before, Ok(())),
            ("at expiry", KEY, DIGEST, &exp, good.clone(), EXPIRES, Err(Expired)),
            ("after expiry", KEY, DIGEST, &exp, good.clone(), EXPIRES + 86_400, Err(Expired)),
            ("another digest", KEY, OTHER_DIGEST, &exp, good.clone(), before, Err(BadSignature)),
            ("another key", b"another key, just as long as it..", DIGEST, &exp, good.clone(), before, Err(BadSignature)),
            ("expiry pushed later", KEY, DIGEST, &later, good.clone(), before, Err(BadSignature)),
            ("signature altered", KEY, DIGEST, &exp, flipped, before, Err(BadSignature)),
            ("MAC without the version tag", KEY, DIGEST, &exp, unversioned, before, Err(BadSignature)),
            ("expired and tampered", KEY, OTHER_DIGEST, &exp, good.clone(), EXPIRES, Err(BadSignature)),
            ("signature truncated", KEY, DIGEST, &exp, good[..42].to_owned(), before, Err(Malformed)),
            ("signature too long", KEY, DIGEST, &exp, format!("{good}AAAA"), before, Err(Malformed)),
            ("signature padded", KEY, DIGEST, &exp, format!("{good}="), before, Err(Malformed)),
            ("standard alphabet", KEY, DIGEST, &exp, standard_alphabet, before, Err(Malformed)),
            ("signature empty", KEY, DIGEST, &exp, String::new(), before, Err(Malformed)),
            ("signature not base64", KEY, DIGEST, &exp, "!".repeat(43), before, Err(Malformed)),
            ("expiry empty", KEY, DIGEST, "", good.clone(), before, Err(Malformed)),
            ("expiry leading zero", KEY, DIGEST, &leading_zero, good.clone(), before, Err(Malformed)),
            ("expiry with sign", KEY, DIGEST, &plus_sign, good.clone(), before, Err(Malformed)),
            ("expiry not a number", KEY, DIGEST, "soon", good.clone(), before, Err(Malformed)),
            ("expiry overflows", KEY, DIGEST, "18446744073709551616", good.clone(), before, Err(Malformed)),
        ];
        for (name, key, digest, expires, sig, now, want) in cases {
            assert_eq!(verify(key, digest, expires, &sig, now), want, "{name}");
        }
    }

    #[test]
    fn sign_cases() {
        let cases = [
            (DIGEST, 0),
            (DIGEST, EXPIRES),
            (OTHER_DIGEST, EXPIRES),
            (DIGEST, u64::MAX),
        ];
        for (digest, expires_at) in cases {
            let q = sign(KEY, digest, expires_at);
            let (exp, sig) = q
                .strip_prefix("expires=")
                .and_then(|r| r.split_once("&sig="))
                .unwrap();
            assert_eq!(exp, expires_at.to_string());
            assert_eq!(sig.len(), 43, "{q}");
            assert!(sig
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            assert_eq!(sign(KEY, digest, expires_at), q, "deterministic");
            if expires_at > 0 {
                assert_eq!(verify(KEY, digest, exp, sig, expires_at - 1), Ok(()));
            }
        }
        // Scope: each (digest, expiry) pair has its own signature.
        assert_ne!(
            sig_of(&sign(KEY, DIGEST, EXPIRES)),
            sig_of(&sign(KEY, OTHER_DIGEST, EXPIRES))
        );
        assert_ne!(
            sig_of(&sign(KEY, DIGEST, EXPIRES)),
            sig_of(&sign(KEY, DIGEST, EXPIRES + 1))
        );
    }

    #[test]
    fn verify_query_cases() {
        let q = sign(KEY, DIGEST, EXPIRES);
        let sig = sig_of(&q);
        let now = EXPIRES - 60;
        let cases = [
            ("as signed", q.clone(), Ok(())),
            ("reordered", format!("sig={sig}&expires={EXPIRES}"), Ok(())),
            ("extra parameter", format!("ns=docker.io&{q}"), Ok(())),
            (
                "no sig",
                format!("expires={EXPIRES}"),
                Err(UrlTokenError::Malformed),
            ),
            (
                "no expires",
                format!("sig={sig}"),
                Err(UrlTokenError::Malformed),
            ),
            ("empty", String::new(), Err(UrlTokenError::Malformed)),
            (
                "repeated expires",
                format!("{q}&expires={EXPIRES}"),
                Err(UrlTokenError::Malformed),
            ),
            (
                "repeated sig",
                format!("{q}&sig={sig}"),
                Err(UrlTokenError::Malformed),
            ),
            (
                "name only",
                format!("expires&sig={sig}"),
                Err(UrlTokenError::Malformed),
            ),
            (
                "later expiry",
                format!("expires={}&sig={sig}", EXPIRES + 1),
                Err(UrlTokenError::BadSignature),
            ),
        ];
        for (name, query, want) in cases {
            assert_eq!(verify_query(KEY, DIGEST, &query, now), want, "{name}");
        }
        assert_eq!(
            verify_query(KEY, DIGEST, &q, EXPIRES),
            Err(UrlTokenError::Expired)
        );
        assert_eq!(
            verify_query(KEY, OTHER_DIGEST, &q, now),
            Err(UrlTokenError::BadSignature)
        );
    }
}
