//! Google Artifact Registry and Container Registry: a service account's JSON key, the RS256 JWT
//! it signs, and the OAuth2 token exchange ("Using OAuth 2.0 for Server to Server Applications").
//!
//! The JWT's claims: `iss` = the key's `client_email`, `scope` =
//! `https://www.googleapis.com/auth/cloud-platform`, `aud` = the token URL, `iat` = now, `exp` =
//! now + 3600 (Google's maximum). It is signed RSASSA-PKCS1-v1_5 with SHA-256 by the key's
//! `private_key` — by the runtime (the [`crate::ports::Upstream::sign_rs256`] port: WebCrypto in
//! the worker, no RSA code in the upload) — and exchanged with
//! `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<jwt>` for an access token
//! that the registry's token realm takes as Basic `oauth2accesstoken:<access token>`. The role
//! to pull is `roles/artifactregistry.reader`.

use super::endpoint_url;
use super::mint::Minted;
use crate::ports::{Headers, HttpMethod, OutboundRequest};
use base64::Engine as _;
use std::fmt;
use url::Url as HttpUrl;

pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The user name GAR and GCR take with an access token as the password.
pub const USERNAME: &str = "oauth2accesstoken";
/// "The expiration time of the assertion … This value has a maximum of 1 hour after the issued
/// time."
pub const ASSERTION_SECONDS: u64 = 3600;

/// What the door needs of a service account's JSON key. `Debug` redacts the private key.
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceAccount {
    pub client_email: String,
    pub private_key_id: Option<String>,
    /// The key's PKCS#8 DER (`-----BEGIN PRIVATE KEY-----`, as Google writes it).
    pub private_key_der: Vec<u8>,
    pub token_url: HttpUrl,
}

impl fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("private_key", &"<redacted>")
            .field("token_url", &self.token_url.as_str())
            .finish()
    }
}

impl ServiceAccount {
    /// Reads the JSON key; `token_url` overrides its `token_uri`. Problems never quote the key.
    /// (Read through `serde_json::Value`, which the door parses anyway.)
    pub fn from_key(json: &str, token_url: Option<&str>) -> Result<ServiceAccount, String> {
        let key: serde_json::Value = serde_json::from_str(json)
            .ok()
            .filter(serde_json::Value::is_object)
            .ok_or("the service account key is not a JSON key file")?;
        let text = |field: &str| key[field].as_str().map(str::to_owned);
        if text("type").is_some_and(|k| k != "service_account") {
            return Err("the key is not a service account key (type)".into());
        }
        let client_email = text("client_email")
            .filter(|e| e.contains('@'))
            .ok_or("the service account key has no client_email")?;
        let pem = text("private_key").ok_or("the service account key has no private_key")?;
        let private_key_der = pkcs8_der(&pem)?;
        let url = token_url
            .map(str::to_owned)
            .or(text("token_uri"))
            .ok_or("no token_url, and the key has no token_uri")?;
        let token_url = endpoint_url(&url).map_err(|p| format!("token_url {p}"))?;
        Ok(ServiceAccount {
            client_email,
            private_key_id: text("private_key_id").filter(|k| !k.is_empty()),
            private_key_der,
            token_url,
        })
    }

    /// The JWT's `<header>.<claims>`, base64url, to be signed, for time `now`.
    pub fn signing_input(&self, now: u64) -> String {
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.private_key_id {
            header["kid"] = kid.clone().into();
        }
        let claims = serde_json::json!({
            "iss": self.client_email,
            "scope": SCOPE,
            "aud": self.token_url.as_str(),
            "iat": now,
            "exp": now + ASSERTION_SECONDS,
        });
        let b64 = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        format!("{}.{}", b64(header), b64(claims))
    }

    /// The token request carrying the signed JWT.
    pub fn token_request(&self, signing_input: &str, signature: &[u8]) -> OutboundRequest {
        let jwt = format!(
            "{signing_input}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature)
        );
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", GRANT_TYPE)
            .append_pair("assertion", &jwt)
            .finish();
        let mut headers = Headers::new();
        headers.set("content-type", "application/x-www-form-urlencoded");
        headers.set("accept", "application/json");
        OutboundRequest {
            method: HttpMethod::Post,
            url: self.token_url.clone(),
            headers,
            body: Some(body.into_bytes()),
        }
    }
}

/// PKCS#8 DER from PEM (`-----BEGIN PRIVATE KEY-----`). PKCS#1 (`BEGIN RSA PRIVATE KEY`) is
/// refused: WebCrypto imports PKCS#8 only, and Google's keys are PKCS#8.
fn pkcs8_der(pem: &str) -> Result<Vec<u8>, String> {
    let body = pem
        .trim()
        .strip_prefix("-----BEGIN PRIVATE KEY-----")
        .and_then(|rest| rest.trim_end().strip_suffix("-----END PRIVATE KEY-----"))
        .ok_or("private_key is not a PEM PKCS#8 key (BEGIN PRIVATE KEY)")?;
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .ok()
        .filter(|der| der.len() > 100)
        .ok_or_else(|| "private_key's PEM body is not base64 of a key".to_owned())
}

/// Reads the token endpoint's answer received at `now`. A refusal names OAuth2's `error` code
/// (`invalid_grant`, …), never its description.
pub fn read_answer(status: u16, body: &[u8], now: u64) -> Result<Minted, String> {
    let answer: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    if status != 200 {
        let code = answer
            .as_ref()
            .and_then(|a| a["error"].as_str())
            .filter(|e| e.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
            .unwrap_or("no error code");
        return Err(format!("the token endpoint answered {status} ({code})"));
    }
    let answer = answer.ok_or("the token endpoint answered something that is not JSON")?;
    let password = answer["access_token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or("the token endpoint answered no access_token")?
        .to_owned();
    let lifetime = answer["expires_in"]
        .as_u64()
        .unwrap_or(ASSERTION_SECONDS)
        .max(1);
    Ok(Minted {
        username: USERNAME.to_owned(),
        password,
        minted_at: now,
        expires_at: now + lifetime,
    })
}

/// The test-only key, for tests elsewhere in the crate (host tests: the signer is `rsa`, a
/// host-only dev-dependency).
#[cfg(all(test, not(target_arch = "wasm32")))]
pub fn tests_key_pem() -> &'static str {
    tests::TEST_KEY_PEM
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    /// A key made for this test only (`openssl genpkey -algorithm RSA`), never used anywhere.
    pub const TEST_KEY_PEM: &str = include_str!("testdata/test-only-rsa-key.pem");

    fn key_json(token_uri: &str) -> String {
        serde_json::json!({
            "type": "service_account",
            "project_id": "frontdoor-test",
            "private_key_id": "0123abcd",
            "private_key": TEST_KEY_PEM,
            "client_email": "puller@frontdoor-test.iam.gserviceaccount.com",
            "token_uri": token_uri,
        })
        .to_string()
    }

    #[test]
    fn reads_the_key_and_builds_the_jwt() {
        let sa = ServiceAccount::from_key(&key_json("https://oauth2.googleapis.com/token"), None)
            .unwrap();
        assert_eq!(sa.token_url.as_str(), "https://oauth2.googleapis.com/token");
        assert!(!format!("{sa:?}").contains("PRIVATE"), "{sa:?}");
        let input = sa.signing_input(1_700_000_000);
        let (h, c) = input.split_once('.').unwrap();
        let de = |s: &str| -> serde_json::Value {
            serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(s)
                    .unwrap(),
            )
            .unwrap()
        };
        assert_eq!(
            de(h),
            serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": "0123abcd"})
        );
        assert_eq!(
            de(c),
            serde_json::json!({
                "iss": "puller@frontdoor-test.iam.gserviceaccount.com",
                "scope": SCOPE,
                "aud": "https://oauth2.googleapis.com/token",
                "iat": 1_700_000_000u64,
                "exp": 1_700_003_600u64,
            })
        );
        assert_eq!(input, JWT_SIGNING_INPUT);
        let other = ServiceAccount::from_key(
            &key_json("https://oauth2.googleapis.com/token"),
            Some("http://127.0.0.1:7000/token"),
        )
        .unwrap();
        assert_eq!(other.token_url.as_str(), "http://127.0.0.1:7000/token");
    }

    /// The signing input at 2023-11-14T22:13:20Z, and its RS256 signature by the test key as
    /// `openssl dgst -sha256 -sign testdata/test-only-rsa-key.pem` computed it (PKCS#1 v1.5 is
    /// deterministic): what a host signer must reproduce and the token request must carry.
    const JWT_SIGNING_INPUT: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjAxMjNhYmNkIiwidHlwIjoiSldUIn0.eyJhdWQiOiJodHRwczovL29hdXRoMi5nb29nbGVhcGlzLmNvbS90b2tlbiIsImV4cCI6MTcwMDAwMzYwMCwiaWF0IjoxNzAwMDAwMDAwLCJpc3MiOiJwdWxsZXJAZnJvbnRkb29yLXRlc3QuaWFtLmdzZXJ2aWNlYWNjb3VudC5jb20iLCJzY29wZSI6Imh0dHBzOi8vd3d3Lmdvb2dsZWFwaXMuY29tL2F1dGgvY2xvdWQtcGxhdGZvcm0ifQ";
    const OPENSSL_SIGNATURE: &str = "hPneueps_l5EXNXQij3Aira9iYUGoAMfk72mUNkvCUDGoja-f0SeIlUp_rZIBE9pV3Bya-qrd478CikGoNxPj9Lj_EZ0wUo63Mcq0FvJzmIBLoHnHOoNAjbQ0188HNu20gOjwMYVzrzf65v96XCQ5lApN5g7UU3YEtESST1P7kaNOQtQCbTq8NgaV7WqqyUAPcJdRfrydcg94TKtKDrIjcx_rrsa0a0vtsKOJscZdnrnPJmrFVE8FxzDMM72rC6XUWls9ZcXEiYRa94oYGFwolWn_8I7zj9pURY-ZwqGHd3wwyl6KE6FsAWAGFWzn412R7jkIUylIQ3qJINGFYR-tQ";

    #[test]
    fn the_token_request_carries_the_signed_jwt() {
        let sa = ServiceAccount::from_key(&key_json("https://oauth2.googleapis.com/token"), None)
            .unwrap();
        let input = sa.signing_input(1_700_000_000);
        let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(OPENSSL_SIGNATURE)
            .unwrap();
        // The host signer (what tests/cloud.rs uses in place of WebCrypto) agrees with openssl.
        assert_eq!(host_sign(&sa.private_key_der, input.as_bytes()), signature);
        let req = sa.token_request(&input, &signature);
        assert_eq!(req.method, HttpMethod::Post);
        let body = String::from_utf8(req.body.unwrap()).unwrap();
        let form: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(form[0], ("grant_type".into(), GRANT_TYPE.into()));
        assert_eq!(
            form[1],
            ("assertion".into(), format!("{input}.{OPENSSL_SIGNATURE}"))
        );
        assert_eq!(
            req.headers.get("content-type"),
            Some("application/x-www-form-urlencoded")
        );
    }

    fn host_sign(der: &[u8], msg: &[u8]) -> Vec<u8> {
        use rsa::pkcs8::DecodePrivateKey;
        use rsa::signature::{SignatureEncoding, Signer};
        let key = rsa::RsaPrivateKey::from_pkcs8_der(der).unwrap();
        let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key);
        signer.sign(msg).to_vec()
    }

    #[test]
    fn refuses_unusable_keys() {
        let good = key_json("https://oauth2.googleapis.com/token");
        let mut no_email: serde_json::Value = serde_json::from_str(&good).unwrap();
        no_email["client_email"] = "".into();
        let mut pkcs1: serde_json::Value = serde_json::from_str(&good).unwrap();
        pkcs1["private_key"] =
            "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n".into();
        let mut user: serde_json::Value = serde_json::from_str(&good).unwrap();
        user["type"] = "authorized_user".into();
        for bad in [
            "not json".to_owned(),
            no_email.to_string(),
            pkcs1.to_string(),
            user.to_string(),
            key_json("http://oauth2.example.com/token"),
        ] {
            let e = ServiceAccount::from_key(&bad, None).unwrap_err();
            assert!(!e.contains("PRIVATE KEY-----\n"), "{e}");
        }
    }

    #[test]
    fn token_answers() {
        let m = read_answer(
            200,
            br#"{"access_token":"ya29.abc","expires_in":3599,"token_type":"Bearer"}"#,
            100,
        )
        .unwrap();
        assert_eq!(
            (m.username.as_str(), m.password.as_str(), m.expires_at),
            (USERNAME, "ya29.abc", 3699)
        );
        assert_eq!(
            read_answer(
                400,
                br#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#,
                0
            )
            .unwrap_err(),
            "the token endpoint answered 400 (invalid_grant)"
        );
        assert!(read_answer(200, br#"{"expires_in":5}"#, 0).is_err());
    }
}
