//! Amazon ECR: `GetAuthorizationToken` as data, and its answer.
//!
//! The call is `POST /` on the regional API (`https://api.ecr.<region>.amazonaws.com`) with
//! `X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken`, `Content-Type:
//! application/x-amz-json-1.1` and the body `{}`, signed with SigV4 for service `ecr`
//! ([`crate::signing::sigv4::sign_headers`]). The answer's `authorizationData[0]` carries
//! `authorizationToken`, base64 of `AWS:<password>`, and `expiresAt` (epoch seconds; 12 hours
//! on). The registry (`<account>.dkr.ecr.<region>.amazonaws.com`) then takes Basic
//! `AWS:<password>`. IAM needs `ecr:GetAuthorizationToken` (and, to pull,
//! `ecr:BatchGetImage` and `ecr:GetDownloadUrlForLayer`).

use super::endpoint_url;
use super::mint::Minted;
use crate::ports::{Headers, HttpMethod, OutboundRequest};
use crate::signing::sigv4::{sign_headers, SigningCredentials};
use base64::Engine as _;
use std::fmt;
use url::Url as HttpUrl;

pub const TARGET: &str = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken";
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
pub const SERVICE: &str = "ecr";
const BODY: &[u8] = b"{}";

/// IAM keys and where to call. `Debug` redacts the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct EcrAccess {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub region: String,
    pub endpoint: HttpUrl,
}

impl fmt::Debug for EcrAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcrAccess")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint.as_str())
            .finish()
    }
}

impl EcrAccess {
    pub fn new(
        access_key_id: String,
        secret_access_key: String,
        region: String,
        endpoint: Option<String>,
    ) -> Result<EcrAccess, String> {
        if region.is_empty()
            || !region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err("region must be an AWS region name (us-east-1)".into());
        }
        if access_key_id.is_empty() || access_key_id.bytes().any(|b| !b.is_ascii_alphanumeric()) {
            return Err("access_key_id must be an IAM access key id (letters and digits)".into());
        }
        let endpoint = match endpoint {
            Some(e) => endpoint_url(&e).map_err(|p| format!("endpoint {p}"))?,
            None => HttpUrl::parse(&format!("https://api.ecr.{region}.amazonaws.com/"))
                .map_err(|_| "region makes no endpoint".to_owned())?,
        };
        if endpoint.path() != "/" {
            return Err("endpoint must be an origin, without a path".into());
        }
        Ok(EcrAccess {
            access_key_id,
            secret_access_key,
            region,
            endpoint,
        })
    }

    /// The signed `GetAuthorizationToken` call at `now`.
    pub fn request(&self, now: u64) -> Result<OutboundRequest, String> {
        let mut headers = Headers::new();
        headers.set("content-type", CONTENT_TYPE);
        headers.set("x-amz-target", TARGET);
        let creds = SigningCredentials {
            access_key_id: &self.access_key_id,
            secret_access_key: &self.secret_access_key,
            region: &self.region,
            service: SERVICE,
            now,
        };
        sign_headers("POST", &self.endpoint, &mut headers, BODY, &creds)
            .map_err(|e| e.to_string())?;
        Ok(OutboundRequest {
            method: HttpMethod::Post,
            url: self.endpoint.clone(),
            headers,
            body: Some(BODY.to_vec()),
        })
    }
}

/// Reads the API's answer (`status`, `body`) received at `now`. A refusal names AWS's error
/// type (`UnrecognizedClientException`, `InvalidSignatureException`, …), never its message.
/// Read through `serde_json::Value`, which the door parses anyway (derived structs would add
/// their own deserializers to the upload).
pub fn read_answer(status: u16, body: &[u8], now: u64) -> Result<Minted, String> {
    let answer: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    if status != 200 {
        let kind = answer
            .as_ref()
            .and_then(|a| a["__type"].as_str())
            .map(|k| k.rsplit('#').next().unwrap_or_default().to_owned())
            .filter(|k| k.bytes().all(|b| b.is_ascii_alphanumeric()))
            .unwrap_or_else(|| "no error type".into());
        return Err(format!("GetAuthorizationToken answered {status} ({kind})"));
    }
    let answer = answer.ok_or("GetAuthorizationToken answered something that is not its JSON")?;
    let data = &answer["authorizationData"][0];
    let token = data["authorizationToken"]
        .as_str()
        .ok_or("GetAuthorizationToken answered no authorizationData")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or("authorizationToken is not base64 text")?;
    let (username, password) = decoded
        .split_once(':')
        .filter(|(u, p)| !u.is_empty() && !p.is_empty())
        .ok_or("authorizationToken is not <user>:<password>")?;
    let expires_at = match &data["expiresAt"] {
        serde_json::Value::Null => now + 12 * 3600,
        t => match t.as_f64() {
            Some(t) if t.is_finite() && t > now as f64 => t as u64,
            _ => return Err("authorizationToken has no future expiresAt".into()),
        },
    };
    Ok(Minted {
        username: username.to_owned(),
        password: password.to_owned(),
        minted_at: now,
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access() -> EcrAccess {
        EcrAccess::new(
            "AKIDEXAMPLE".into(),
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            "us-east-1".into(),
            None,
        )
        .unwrap()
    }

    /// The call, signed at the AWS test suite's time with its keys. The signature was recomputed
    /// independently with botocore 1.43 (`SigV4Auth(Credentials(...), "ecr", "us-east-1")` over
    /// the same request, clock fixed at 2015-08-30T12:36:00Z).
    #[test]
    fn get_authorization_token_request() {
        let req = access().request(1_440_938_160).unwrap();
        assert_eq!(req.method, HttpMethod::Post);
        assert_eq!(req.url.as_str(), "https://api.ecr.us-east-1.amazonaws.com/");
        assert_eq!(req.body.as_deref(), Some(&b"{}"[..]));
        assert_eq!(req.headers.get("x-amz-target"), Some(TARGET));
        assert_eq!(req.headers.get("content-type"), Some(CONTENT_TYPE));
        assert_eq!(req.headers.get("x-amz-date"), Some("20150830T123600Z"));
        let auth = req.headers.get("authorization").unwrap();
        assert!(
            auth.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/ecr/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature="
            ),
            "{auth}"
        );
        assert_eq!(auth.rsplit('=').next().unwrap(), ECR_SIGNATURE);
        assert!(!format!("{:?} {req:?}", access()).contains("EXAMPLEKEY"));
    }

    const ECR_SIGNATURE: &str = "527a2155e9afc2426cb4c659023df9c031e8103458f349819615ff25111f5de0";

    #[test]
    fn endpoints() {
        let e = |r: &str, e: Option<&str>| {
            EcrAccess::new("AK".into(), "s".into(), r.into(), e.map(str::to_owned))
        };
        assert_eq!(
            e(
                "cn-north-1",
                Some("https://api.ecr.cn-north-1.amazonaws.com.cn")
            )
            .unwrap()
            .endpoint
            .as_str(),
            "https://api.ecr.cn-north-1.amazonaws.com.cn/"
        );
        assert_eq!(
            e("us-east-1", Some("http://127.0.0.1:9000"))
                .unwrap()
                .endpoint
                .as_str(),
            "http://127.0.0.1:9000/"
        );
        for (region, endpoint) in [
            ("US-EAST-1", None),
            ("", None),
            ("us-east-1", Some("http://api.example.com")),
            ("us-east-1", Some("https://u:p@api.example.com")),
            ("us-east-1", Some("https://api.example.com/x")),
        ] {
            assert!(e(region, endpoint).is_err(), "{region} {endpoint:?}");
        }
    }

    #[test]
    fn answers() {
        let token = base64::engine::general_purpose::STANDARD.encode("AWS:pa55word");
        let body = format!(
            r#"{{"authorizationData":[{{"authorizationToken":"{token}","expiresAt":1.7e9,"proxyEndpoint":"https://1.dkr.ecr.us-east-1.amazonaws.com"}}]}}"#
        );
        let m = read_answer(200, body.as_bytes(), 1_600_000_000).unwrap();
        assert_eq!(
            (m.username.as_str(), m.password.as_str()),
            ("AWS", "pa55word")
        );
        assert_eq!((m.minted_at, m.expires_at), (1_600_000_000, 1_700_000_000));
        assert!(!format!("{m:?}").contains("pa55word"));
        let refused = read_answer(
            400,
            br#"{"__type":"UnrecognizedClientException","message":"The security token included in the request is invalid."}"#,
            0,
        )
        .unwrap_err();
        assert_eq!(
            refused,
            "GetAuthorizationToken answered 400 (UnrecognizedClientException)"
        );
        for bad in [
            &br#"{"authorizationData":[]}"#[..],
            br#"{"authorizationData":[{"authorizationToken":"!!"}]}"#,
            br#"{"authorizationData":[{"authorizationToken":"QVdT"}]}"#,
            b"nope",
        ] {
            assert!(read_answer(200, bad, 0).is_err());
        }
        let old = format!(
            r#"{{"authorizationData":[{{"authorizationToken":"{token}","expiresAt":5}}]}}"#
        );
        assert!(read_answer(200, old.as_bytes(), 10).is_err());
    }
}
