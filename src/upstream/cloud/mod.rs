//! Cloud registries whose service accounts do not have a fixed password: Amazon ECR (a 12-hour
//! token minted with IAM keys through `GetAuthorizationToken`, see [`ecr`]) and Google Artifact
//! Registry / GCR (a 1-hour OAuth2 access token minted from a service-account key with an RS256
//! JWT, see [`google`]). The minted credential is then an ordinary user name and password
//! (`AWS:<password>`, `oauth2accesstoken:<access token>`) that the usual auth dance sends the
//! registry however it challenges (ECR: `Basic`; GAR: a `Bearer` realm asked with Basic).
//!
//! When to mint, how long to trust a credential, and what to do when minting fails is
//! [`mint`]: a pure policy over a persisted [`mint::Record`], tested as a table. ACR and GHCR
//! need none of this: an ACR service principal or token, or a GitHub PAT, is a fixed user name
//! and password (`username` + `password_secret`).
//!
//! Every type holding a secret (IAM secret key, the JSON key, minted tokens) redacts it in
//! `Debug`; errors never quote one.

pub mod ecr;
pub mod google;
pub mod mint;

use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use std::fmt;
use url::Url as HttpUrl;

/// `"aws"` in an `UPSTREAMS` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAws {
    pub access_key_id: String,
    /// The name of the secret holding the IAM secret access key.
    pub secret_access_key_secret: String,
    pub region: String,
    /// Defaults to `https://api.ecr.<region>.amazonaws.com`; for tests and partitions (China,
    /// GovCloud) whose API lives elsewhere.
    pub endpoint: Option<String>,
}

/// `"google"` in an `UPSTREAMS` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGoogle {
    /// The name of the secret holding the service account's JSON key.
    pub service_account_key_secret: String,
    /// Defaults to the key's `token_uri`.
    pub token_url: Option<String>,
}

/// How an upstream's credentials are minted.
#[derive(Clone, PartialEq, Eq)]
pub enum CloudAuth {
    Ecr(ecr::EcrAccess),
    Google(google::ServiceAccount),
}

impl fmt::Debug for CloudAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloudAuth::Ecr(a) => a.fmt(f),
            CloudAuth::Google(g) => g.fmt(f),
        }
    }
}

impl CloudAuth {
    /// `ecr` or `google`, as the status shows it.
    pub fn kind(&self) -> &'static str {
        match self {
            CloudAuth::Ecr(_) => "ecr",
            CloudAuth::Google(_) => "google",
        }
    }

    /// A fingerprint of everything that decides what is minted (including a hash of the
    /// secret): a persisted credential minted under other settings is not used.
    pub fn identity(&self) -> String {
        let mut h = Sha256::new();
        match self {
            CloudAuth::Ecr(a) => {
                for part in [
                    "ecr",
                    &a.access_key_id,
                    &a.secret_access_key,
                    &a.region,
                    a.endpoint.as_str(),
                ] {
                    h.update(part.as_bytes());
                    h.update([0]);
                }
            }
            CloudAuth::Google(g) => {
                for part in ["google", &g.client_email, g.token_url.as_str()] {
                    h.update(part.as_bytes());
                    h.update([0]);
                }
                h.update(&g.private_key_der);
            }
        }
        hex::encode(&h.finalize()[..12])
    }
}

/// Reads `"aws"` / `"google"` of an `UPSTREAMS` entry; `setting` names it in errors, `lookup`
/// finds the secrets. `Err` is (the setting at fault, the problem), never quoting a secret.
pub fn from_raw(
    aws: Option<RawAws>,
    google: Option<RawGoogle>,
    setting: &str,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<Option<CloudAuth>, (String, String)> {
    let secret = |field: &str, name: &str| {
        lookup(name)
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| {
                (
                    format!("{setting}.{field}"),
                    format!("names the secret {name}, which is not set"),
                )
            })
    };
    match (aws, google) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err((
            setting.to_owned(),
            "has both aws and google; an upstream has one kind of credentials".into(),
        )),
        (Some(a), None) => {
            let secret = secret("aws.secret_access_key_secret", &a.secret_access_key_secret)?;
            ecr::EcrAccess::new(
                a.access_key_id,
                secret.trim().to_owned(),
                a.region,
                a.endpoint,
            )
            .map(|a| Some(CloudAuth::Ecr(a)))
            .map_err(|p| (format!("{setting}.aws"), p))
        }
        (None, Some(g)) => {
            let key = secret(
                "google.service_account_key_secret",
                &g.service_account_key_secret,
            )?;
            google::ServiceAccount::from_key(&key, g.token_url.as_deref())
                .map(|g| Some(CloudAuth::Google(g)))
                .map_err(|p| (format!("{setting}.google"), p))
        }
    }
}

/// An https URL (http only for a loopback test) without credentials, query or fragment.
fn endpoint_url(raw: &str) -> Result<HttpUrl, String> {
    let url = HttpUrl::parse(raw.trim())
        .ok()
        .filter(crate::upstream::is_http)
        .ok_or_else(|| "must be an http(s) URL".to_owned())?;
    if !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err("must not carry credentials, a query or a fragment".into());
    }
    if url.scheme() != "https" && !crate::upstream::is_private(&url) {
        return Err("must be https".into());
    }
    Ok(url)
}

/// A short, non-reversible name for a credential (the first 16 hex digits of its SHA-256): how
/// a refusal names the credential that was refused without carrying it.
pub fn fingerprint(password: &str) -> String {
    hex::encode(&Sha256::digest(password.as_bytes())[..8])
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use crate::config::Config;

    fn load(upstreams: &str, secrets: &[(&str, &str)]) -> Result<Config, String> {
        Config::load(|k| match k {
            "UPSTREAMS" => Some(upstreams.to_owned()),
            "DEFAULT_REGISTRY" => Some("r.test".into()),
            k => secrets
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string()),
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn cloud_settings_load_and_stay_secret() {
        let aws = r#"{"r.test": {"url": "https://1.dkr.ecr.eu-west-1.amazonaws.com", "aws": {"access_key_id": "AKIA1", "secret_access_key_secret": "S", "region": "eu-west-1"}}}"#;
        let c = load(aws, &[("S", "very-secret-key")]).unwrap();
        let u = c.upstream("r.test").unwrap();
        assert_eq!(u.cloud.as_ref().unwrap().kind(), "ecr");
        let shown = format!("{c:?}");
        assert!(!shown.contains("very-secret-key"), "{shown}");
        assert!(
            shown.contains("https://api.ecr.eu-west-1.amazonaws.com/"),
            "{shown}"
        );
        let key = serde_json::json!({
            "type": "service_account",
            "client_email": "a@p.iam.gserviceaccount.com",
            "private_key": super::google::tests_key_pem(),
            "token_uri": "https://oauth2.googleapis.com/token",
        })
        .to_string();
        let gar = r#"{"r.test": {"url": "https://us-docker.pkg.dev", "google": {"service_account_key_secret": "K"}}}"#;
        let c = load(gar, &[("K", &key)]).unwrap();
        assert_eq!(
            c.upstream("r.test").unwrap().cloud.as_ref().unwrap().kind(),
            "google"
        );
        assert!(!format!("{c:?}").contains("PRIVATE KEY"));
        let body_line = super::google::tests_key_pem()
            .lines()
            .nth(1)
            .unwrap()
            .to_owned();
        for (upstreams, secrets, blamed) in [
            (aws, vec![], "aws.secret_access_key_secret"),
            (gar, vec![("K", "{\"private_key\": \"x\"}")], "google"),
            (
                gar,
                vec![("K", key.replace("a@p", "ap").as_str())],
                "google",
            ),
            (
                r#"{"r.test": {"url": "https://x", "username": "u", "password_secret": "S", "aws": {"access_key_id": "AKIA1", "secret_access_key_secret": "S", "region": "eu-west-1"}}}"#,
                vec![("S", "very-secret-key")],
                "use one",
            ),
            (
                r#"{"r.test": {"url": "https://x", "aws": {"access_key_id": "AKIA1", "secret_access_key_secret": "S", "region": "eu-west-1"}, "google": {"service_account_key_secret": "K"}}}"#,
                vec![("S", "very-secret-key"), ("K", key.as_str())],
                "both",
            ),
        ] {
            let e = load(upstreams, &secrets).unwrap_err();
            assert!(e.contains(blamed), "{e}");
            assert!(
                !e.contains("very-secret-key") && !e.contains(&body_line),
                "{e}"
            );
        }
    }
}
