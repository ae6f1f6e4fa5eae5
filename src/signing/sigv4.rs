//! AWS Signature Version 4 presigned `GET` URLs, the query-string form that S3 and Cloudflare R2's
//! S3-compatible API accept, so a client can fetch an object straight from the bucket.
//!
//! Follows "Authenticating Requests: Using Query Parameters (AWS Signature Version 4)" step by step:
//! canonical request → string to sign → signing key (an HMAC chain over date, region, service and
//! `aws4_request`) → hex signature, appended as `X-Amz-Signature`. URLs are path-style,
//! `<endpoint>/<bucket>/<key>`, which is what R2 serves at `https://<account>.r2.cloudflarestorage.com`.
//!
//! [`sign_headers`] signs an API call in the `Authorization` header instead ("Authenticating
//! Requests: Using the Authorization Header"), payload hashed: ECR's `GetAuthorizationToken`
//! (`crate::upstream::cloud::ecr`). Both share the signing-key chain and the date format.
//!
//! It does not: carry a session token, sign paths other than plain ones (`/`, unreserved
//! characters), or verify signatures (the bucket or the API does that). It reads no clock: the
//! signing time is a parameter.

use hmac::{Hmac, Mac};
use sha2::{Digest as _, Sha256};
use std::fmt;
use url::Url;

type HmacSha256 = Hmac<Sha256>;

/// The `X-Amz-Algorithm` value: SigV4 with HMAC-SHA256.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The service name S3 and R2 sign for.
pub const S3_SERVICE: &str = "s3";
/// R2's region: "When using the S3 API, the region for an R2 bucket is `auto`."
pub const R2_REGION: &str = "auto";
/// "The minimum value you can set is 1, and the maximum is 604800 (seven days)": a signing key is
/// only valid for seven days, so S3 refuses anything longer.
pub const MAX_EXPIRES_IN: u64 = 604_800;
/// The payload hash of a presigned URL: the body is not known when the URL is made.
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// "The maximum length [of an object key] is 1,024 bytes" of UTF-8.
const MAX_KEY_BYTES: usize = 1024;
/// 9999-12-31T23:59:59Z: `X-Amz-Date` has a four-digit year.
const MAX_TIME: u64 = 253_402_300_799;

/// What to presign: one object, by whom, when, and for how long. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct PresignRequest {
    /// The S3 API's origin, e.g. `https://<account>.r2.cloudflarestorage.com`; no path, query or
    /// credentials.
    pub endpoint: Url,
    pub bucket: String,
    /// The object key, unencoded (`blobs/sha256/<hex>`); `/` in it separates path segments.
    pub key: String,
    /// [`R2_REGION`] for R2, e.g. `us-east-1` for AWS.
    pub region: String,
    /// [`S3_SERVICE`].
    pub service: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// When the URL is signed, Unix seconds (UTC). The URL is valid from then on, not before.
    pub now: u64,
    /// How long the URL stays valid, in seconds: `1..=604800`.
    pub expires_in: u64,
}

impl fmt::Debug for PresignRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PresignRequest")
            .field("endpoint", &self.endpoint.as_str())
            .field("bucket", &self.bucket)
            .field("key", &self.key)
            .field("region", &self.region)
            .field("service", &self.service)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("now", &self.now)
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Why a URL could not be presigned; each names the input at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresignError {
    Endpoint(String),
    Bucket(String),
    Key(String),
    /// The region, service or access key id cannot go into a credential scope.
    Scope(String),
    /// `expires_in` outside `1..=604800`.
    ExpiresIn(u64),
    /// A time `X-Amz-Date` cannot write (after year 9999).
    Time(u64),
}

impl fmt::Display for PresignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PresignError::Endpoint(p) => write!(f, "presign endpoint: {p}"),
            PresignError::Bucket(p) => write!(f, "presign bucket: {p}"),
            PresignError::Key(p) => write!(f, "presign key: {p}"),
            PresignError::Scope(p) => write!(f, "presign credential scope: {p}"),
            PresignError::ExpiresIn(s) => {
                write!(f, "presign expiry {s}s is outside 1..={MAX_EXPIRES_IN}")
            }
            PresignError::Time(t) => write!(f, "presign time {t} is after year 9999"),
        }
    }
}

impl std::error::Error for PresignError {}

impl PresignRequest {
    /// The path-style presigned URL, `<endpoint>/<bucket>/<key>?X-Amz-…&X-Amz-Signature=<hex>`,
    /// exactly as signed: send it as is, do not re-encode it.
    pub fn presign(&self) -> Result<String, PresignError> {
        self.validate()?;
        let host = host_header(&self.endpoint);
        let path = path_style_uri(&self.bucket, &self.key);
        let query = self.signed_query(&host, &path);
        Ok(format!("{}://{host}{path}?{query}", self.endpoint.scheme()))
    }

    fn validate(&self) -> Result<(), PresignError> {
        let e = &self.endpoint;
        if !matches!(e.scheme(), "http" | "https") || !e.has_host() {
            return Err(PresignError::Endpoint(
                "must be an http(s) URL with a host".into(),
            ));
        }
        if !e.username().is_empty() || e.password().is_some() {
            return Err(PresignError::Endpoint("must not carry credentials".into()));
        }
        // Path-style puts the bucket right after the origin; a base path would have to be signed
        // as part of the canonical URI, and neither S3 nor R2 uses one.
        if e.path() != "/" || e.query().is_some() || e.fragment().is_some() {
            return Err(PresignError::Endpoint(
                "must be an origin, without path, query or fragment".into(),
            ));
        }
        validate_bucket(&self.bucket)?;
        validate_key(&self.key)?;
        validate_scope_part("region", &self.region)?;
        validate_scope_part("service", &self.service)?;
        if self.access_key_id.is_empty()
            || self
                .access_key_id
                .chars()
                .any(|c| c == '/' || c.is_whitespace() || c.is_control())
        {
            return Err(PresignError::Scope(
                "access key id must be non-empty, without '/' or whitespace".into(),
            ));
        }
        if self.secret_access_key.is_empty() {
            return Err(PresignError::Scope("secret access key is empty".into()));
        }
        if !(1..=MAX_EXPIRES_IN).contains(&self.expires_in) {
            return Err(PresignError::ExpiresIn(self.expires_in));
        }
        if self.now > MAX_TIME {
            return Err(PresignError::Time(self.now));
        }
        Ok(())
    }

    /// The core of the algorithm: the URL's query for a request to `host` (the `Host` header's
    /// value) at `canonical_uri` (already URI-encoded), that is the canonical query string with
    /// `X-Amz-Signature` appended. It takes host and path apart from the endpoint, bucket and key
    /// so that AWS's published example, which is virtual-hosted style, can be reproduced.
    fn signed_query(&self, host: &str, canonical_uri: &str) -> String {
        let canonical_query = self.canonical_query();
        let canonical_request = canonical_request(host, canonical_uri, &canonical_query);
        let signature = self.signature(&self.string_to_sign(&canonical_request));
        format!("{canonical_query}&X-Amz-Signature={signature}")
    }

    /// `<YYYYMMDD>/<region>/<service>/aws4_request`: what the signing key is good for.
    fn scope(&self) -> String {
        let date = &amz_date(self.now)[..8];
        format!("{date}/{}/{}/aws4_request", self.region, self.service)
    }

    /// The `X-Amz-*` parameters but the signature: "Sort the parameter names by character code
    /// point in ascending order", each name and value URI-encoded ('/' too: the credential's
    /// slashes become %2F).
    fn canonical_query(&self) -> String {
        let credential = format!("{}/{}", self.access_key_id, self.scope());
        let amz_date = amz_date(self.now);
        let expires = self.expires_in.to_string();
        let mut params: Vec<(String, String)> = [
            ("X-Amz-Algorithm", ALGORITHM),
            ("X-Amz-Credential", credential.as_str()),
            ("X-Amz-Date", amz_date.as_str()),
            ("X-Amz-Expires", expires.as_str()),
            ("X-Amz-SignedHeaders", "host"),
        ]
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
        params.sort();
        params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// `Algorithm \n RequestDateTime \n CredentialScope \n HashedCanonicalRequest`.
    fn string_to_sign(&self, canonical_request: &str) -> String {
        format!(
            "{ALGORITHM}\n{}\n{}\n{}",
            amz_date(self.now),
            self.scope(),
            hex::encode(Sha256::digest(canonical_request.as_bytes()))
        )
    }

    /// The hex signature of `string_to_sign` under the derived signing key: the secret never
    /// signs anything itself, only the chain `HMAC("AWS4" + secret, date)` → region → service →
    /// `aws4_request`, so a key leaked from one day, region or service is useless elsewhere.
    fn signature(&self, string_to_sign: &str) -> String {
        let key = signing_key(
            &self.secret_access_key,
            &amz_date(self.now)[..8],
            &self.region,
            &self.service,
        );
        hex::encode(hmac(&key, string_to_sign.as_bytes()))
    }
}

/// `HMAC("AWS4" + secret, date)` → region → service → `aws4_request`.
fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// Who signs an API call, where, and when. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningCredentials<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    /// Unix seconds (UTC).
    pub now: u64,
}

impl fmt::Debug for SigningCredentials<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("region", &self.region)
            .field("service", &self.service)
            .field("now", &self.now)
            .finish()
    }
}

/// Signs `method url` with `payload` in the `Authorization` header: sets `x-amz-date` in
/// `headers`, then signs every header in them (their names, lowercased, sorted; values trimmed,
/// inner runs of spaces made one) plus `host` (which the runtime sends from the URL and so is not
/// added), and sets `authorization`. The canonical request is
/// `METHOD \n URI \n QUERY \n HEADERS \n SIGNED \n hex(sha256(payload))`, with the query's
/// pairs decoded, AWS-encoded and sorted.
pub fn sign_headers(
    method: &str,
    url: &Url,
    headers: &mut crate::ports::Headers,
    payload: &[u8],
    creds: &SigningCredentials<'_>,
) -> Result<(), PresignError> {
    validate_scope_part("region", creds.region)?;
    validate_scope_part("service", creds.service)?;
    if creds.access_key_id.is_empty()
        || creds
            .access_key_id
            .chars()
            .any(|c| c == '/' || c.is_whitespace() || c.is_control())
    {
        return Err(PresignError::Scope(
            "access key id must be non-empty, without '/' or whitespace".into(),
        ));
    }
    if creds.secret_access_key.is_empty() {
        return Err(PresignError::Scope("secret access key is empty".into()));
    }
    if creds.now > MAX_TIME {
        return Err(PresignError::Time(creds.now));
    }
    let path = url.path();
    // A plain path is its own canonical form (no segment to normalize, nothing to encode twice).
    let plain = path.starts_with('/')
        && !path.split('/').any(|s| s == "." || s == "..")
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/'));
    if !plain || !url.username().is_empty() || url.password().is_some() {
        return Err(PresignError::Endpoint(
            "an API path must be plain: '/', letters, digits, '-', '.', '_', '~'".into(),
        ));
    }
    let amz = amz_date(creds.now);
    headers.set("x-amz-date", amz.clone());
    headers.remove("authorization");
    let mut signed: Vec<(String, String)> = vec![("host".to_owned(), host_header(url))];
    for (name, value) in headers.iter() {
        let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
        match signed.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => {
                v.push(',');
                v.push_str(&value);
            }
            None => signed.push((name.to_owned(), value)),
        }
    }
    signed.sort();
    let canonical_headers: String = signed.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
    let signed_names = signed
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let mut query: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (uri_encode(&k, false), uri_encode(&v, false)))
        .collect();
    query.sort();
    let canonical_query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let canonical_request = format!(
        "{method}\n{path}\n{canonical_query}\n{canonical_headers}\n{signed_names}\n{}",
        hex::encode(Sha256::digest(payload))
    );
    let scope = format!(
        "{}/{}/{}/aws4_request",
        &amz[..8],
        creds.region,
        creds.service
    );
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let key = signing_key(
        creds.secret_access_key,
        &amz[..8],
        creds.region,
        creds.service,
    );
    let signature = hex::encode(hmac(&key, string_to_sign.as_bytes()));
    headers.set(
        "authorization",
        format!(
            "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_names}, Signature={signature}",
            creds.access_key_id
        ),
    );
    Ok(())
}

/// `HTTPMethod \n CanonicalURI \n CanonicalQueryString \n CanonicalHeaders \n SignedHeaders \n
/// HashedPayload`, where `CanonicalHeaders` (here only `host`) ends with its own newline.
fn canonical_request(host: &str, canonical_uri: &str, canonical_query: &str) -> String {
    format!("GET\n{canonical_uri}\n{canonical_query}\nhost:{host}\n\nhost\n{UNSIGNED_PAYLOAD}")
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The `Host` header: the host, and the port only if it is not the scheme's default (a client
/// sends `Host: h` for `https://h:443/`, and the signature must match what it sends). `Url`
/// already lowercases domain names and brackets IPv6 addresses.
fn host_header(endpoint: &Url) -> String {
    let host = endpoint.host_str().unwrap_or_default();
    match endpoint.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// `/<bucket>/<key>`, encoded as the canonical URI. S3 signs the path as sent ("Do not normalize
/// URI paths for requests to Amazon S3"), so this is also the URL's path, encoded once.
fn path_style_uri(bucket: &str, key: &str) -> String {
    format!("/{}/{}", uri_encode(bucket, false), uri_encode(key, true))
}

/// AWS's `UriEncode`: "URI encode every byte except the unreserved characters: 'A'-'Z', 'a'-'z',
/// '0'-'9', '-', '.', '_', and '~'. The space character … must be encoded as %20 (and not as
/// '+'). … Letters in the hexadecimal value must be uppercase. … Encode the forward slash
/// character, '/', everywhere except in the object key name."
fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// S3's bucket naming rules (R2's are a subset): 3 to 63 characters of lowercase letters, digits,
/// '.' and '-', beginning and ending with a letter or digit.
fn validate_bucket(bucket: &str) -> Result<(), PresignError> {
    let ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-'))
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(PresignError::Bucket(format!(
            "{bucket:?} is not 3-63 of [a-z0-9.-], starting and ending with a letter or digit"
        )))
    }
}

fn validate_key(key: &str) -> Result<(), PresignError> {
    if key.is_empty() {
        return Err(PresignError::Key("is empty".into()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(PresignError::Key(format!(
            "is {} bytes, more than {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    // '.' is unreserved, so it is sent as is, and URL parsers (the WHATWG one in every fetch)
    // remove `.` and `..` segments: the client would ask for another path than the one signed.
    if key.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(PresignError::Key(format!(
            "{key:?} has a '.' or '..' segment, which URL parsers rewrite"
        )));
    }
    Ok(())
}

/// Region and service are `/`-separated fields of the credential scope: keep them to the
/// characters AWS and R2 use (`us-east-1`, `auto`, `s3`).
fn validate_scope_part(what: &str, value: &str) -> Result<(), PresignError> {
    if !value.is_empty()
        && value
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
    {
        Ok(())
    } else {
        Err(PresignError::Scope(format!(
            "{what} {value:?} must be non-empty [a-z0-9-]"
        )))
    }
}

/// `YYYYMMDD'T'HHMMSS'Z'`, the ISO 8601 basic format SigV4 wants for `X-Amz-Date`, of Unix seconds
/// `t` in UTC. Unix time has no leap seconds, so every day is 86400 of them.
fn amz_date(t: u64) -> String {
    let (y, m, d) = civil_from_days(t / 86_400);
    let s = t % 86_400;
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

/// (year, month 1-12, day 1-31) of the proleptic Gregorian date `days` after 1970-01-01: Howard
/// Hinnant's `civil_from_days` ("chrono-Compatible Low-Level Date Algorithms"), specialised to
/// days on or after the epoch so it works in unsigned arithmetic.
///
/// It counts in 400-year eras of 146097 days starting on a 1 March, so the leap day is the last
/// day of its year and needs no special case; the month is then found from day-of-year by the
/// linear formula `(5·doy + 2) / 153`, with months numbered from March.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Days from 0000-03-01 to 1970-01-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097; // day of era, [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era, [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from 1 March, [0, 365]
    let mp = (5 * doy + 2) / 153; // month from March, [0, 11]
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    /// 2013-05-24T00:00:00Z, the time of AWS's example.
    const AWS_TIME: u64 = 1_369_353_600;

    /// The inputs of AWS's published example, "Authenticating Requests: Using Query Parameters
    /// (AWS Signature Version 4)": GET `test.txt` from `examplebucket`, us-east-1, one day.
    fn aws_example() -> PresignRequest {
        PresignRequest {
            endpoint: Url::parse("https://s3.amazonaws.com").unwrap(),
            bucket: "examplebucket".into(),
            key: "test.txt".into(),
            region: "us-east-1".into(),
            service: S3_SERVICE.into(),
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: AWS_SECRET.into(),
            now: AWS_TIME,
            expires_in: 86_400,
        }
    }

    fn r2(key: &str) -> PresignRequest {
        PresignRequest {
            endpoint: Url::parse("https://0123456789abcdef.r2.cloudflarestorage.com").unwrap(),
            bucket: "frontdoor-blobs".into(),
            key: key.into(),
            region: R2_REGION.into(),
            service: S3_SERVICE.into(),
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: AWS_SECRET.into(),
            now: AWS_TIME,
            expires_in: 3600,
        }
    }

    fn param<'a>(url: &'a str, name: &str) -> &'a str {
        let query = url.split_once('?').unwrap().1;
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .unwrap()
    }

    /// AWS's example is virtual-hosted style (host `examplebucket.s3.amazonaws.com`, path
    /// `/test.txt`); every intermediate value and the signature are the published ones.
    #[test]
    fn reproduces_aws_published_presigned_url_example() {
        let req = aws_example();
        let canonical_request = canonical_request(
            "examplebucket.s3.amazonaws.com",
            "/test.txt",
            &req.canonical_query(),
        );
        assert_eq!(
            canonical_request,
            "GET\n\
             /test.txt\n\
             X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\n\
             host:examplebucket.s3.amazonaws.com\n\
             \n\
             host\n\
             UNSIGNED-PAYLOAD"
        );
        let string_to_sign = req.string_to_sign(&canonical_request);
        assert_eq!(
            string_to_sign,
            "AWS4-HMAC-SHA256\n\
             20130524T000000Z\n\
             20130524/us-east-1/s3/aws4_request\n\
             3bfa292879f6447bbcda7001decf97f4a54dc650c8942174ae0a9121cf58ad04"
        );
        assert_eq!(
            req.signature(&string_to_sign),
            "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
        assert_eq!(
            format!(
                "https://examplebucket.s3.amazonaws.com/test.txt?{}",
                req.signed_query("examplebucket.s3.amazonaws.com", "/test.txt")
            ),
            "https://examplebucket.s3.amazonaws.com/test.txt\
             ?X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
    }

    /// The same object path-style: the bucket moves into the path, the host changes, and so the
    /// signature does; the public entry point builds exactly that URL on the same core.
    #[test]
    fn path_style_url_is_built_on_the_same_core() {
        let req = aws_example();
        let url = req.presign().unwrap();
        let query = req.signed_query("s3.amazonaws.com", "/examplebucket/test.txt");
        assert_eq!(
            url,
            format!("https://s3.amazonaws.com/examplebucket/test.txt?{query}")
        );
        assert_ne!(
            param(&url, "X-Amz-Signature"),
            "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
    }

    /// An R2 URL, region `auto`, as botocore 1.43 (`S3SigV4QueryAuth`, path-style, clock fixed at
    /// 2013-05-24T00:00:00Z) signs it: an independent implementation agrees on the whole URL.
    #[test]
    fn r2_url_matches_botocore() {
        let url =
            r2("blobs/sha256/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
                .presign()
                .unwrap();
        assert_eq!(url, BOTOCORE_R2_PLAIN);
        let url = r2("dir/a b+c~d*é.txt").presign().unwrap();
        assert_eq!(url, BOTOCORE_R2_SPECIAL);
    }

    const BOTOCORE_R2_PLAIN: &str = "https://0123456789abcdef.r2.cloudflarestorage.com\
        /frontdoor-blobs/blobs/sha256/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\
        ?X-Amz-Algorithm=AWS4-HMAC-SHA256\
        &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fauto%2Fs3%2Faws4_request\
        &X-Amz-Date=20130524T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host\
        &X-Amz-Signature=94cb9351269239285eb62c684d8de970e366983767ed68871769daa0c7fa5158";
    const BOTOCORE_R2_SPECIAL: &str = "https://0123456789abcdef.r2.cloudflarestorage.com\
        /frontdoor-blobs/dir/a%20b%2Bc~d%2A%C3%A9.txt\
        ?X-Amz-Algorithm=AWS4-HMAC-SHA256\
        &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fauto%2Fs3%2Faws4_request\
        &X-Amz-Date=20130524T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host\
        &X-Amz-Signature=e03b6c3f343f2de6038360a53da1128707948e6a6d84f9f5cd9b2d21cd74cbfa";

    #[test]
    fn encodes_keys_per_aws_rules() {
        let cases = [
            ("test.txt", "test.txt"),
            ("a b", "a%20b"),
            ("a+b", "a%2Bb"),
            ("tilde~kept_-.", "tilde~kept_-."),
            ("é", "%C3%A9"),
            ("雪/☃", "%E9%9B%AA/%E2%98%83"),
            ("photos/Jan/sample.jpg", "photos/Jan/sample.jpg"),
            ("a//b", "a//b"),
            ("*!'()", "%2A%21%27%28%29"),
            ("%2F", "%252F"),
            ("q?x=1&y#z", "q%3Fx%3D1%26y%23z"),
        ];
        for (key, encoded) in cases {
            assert_eq!(uri_encode(key, true), encoded, "key {key:?}");
            let url = r2(key).presign().unwrap();
            let path = url
                .strip_prefix("https://0123456789abcdef.r2.cloudflarestorage.com")
                .unwrap();
            assert!(
                path.starts_with(&format!("/frontdoor-blobs/{encoded}?X-Amz-Algorithm=")),
                "{url}"
            );
        }
        // Outside the key, '/' is encoded too (the credential in the query).
        assert_eq!(uri_encode("a/b c", false), "a%2Fb%20c");
    }

    #[test]
    fn expiry_bounds_are_enforced() {
        let cases = [
            (0, Err(PresignError::ExpiresIn(0))),
            (1, Ok(())),
            (86_400, Ok(())),
            (604_800, Ok(())),
            (604_801, Err(PresignError::ExpiresIn(604_801))),
            (u64::MAX, Err(PresignError::ExpiresIn(u64::MAX))),
        ];
        for (expires_in, want) in cases {
            let req = PresignRequest {
                expires_in,
                ..r2("k")
            };
            let got = req.presign();
            assert_eq!(
                got.as_ref().map(|_| ()),
                want.as_ref().map(|_| ()),
                "{expires_in}"
            );
            if let Ok(url) = got {
                assert_eq!(param(&url, "X-Amz-Expires"), expires_in.to_string());
            }
        }
    }

    #[test]
    fn signature_depends_on_every_input() {
        let sig = |r: &PresignRequest| param(&r.presign().unwrap(), "X-Amz-Signature").to_owned();
        let base = sig(&r2("blobs/x"));
        assert_eq!(sig(&r2("blobs/x")), base, "deterministic");
        #[rustfmt::skip]
        let changes: [fn(&mut PresignRequest); 9] = [
            |r| r.now += 1,
            |r| r.now += 86_400,
            |r| r.expires_in += 1,
            |r| r.key = "blobs/y".into(),
            |r| r.bucket = "other-bucket".into(),
            |r| r.region = "us-east-1".into(),
            |r| r.secret_access_key = "another".into(),
            |r| r.access_key_id = "AKIDOTHER".into(),
            |r| r.endpoint = Url::parse("https://other.r2.cloudflarestorage.com").unwrap(),
        ];
        for change in changes {
            let mut req = r2("blobs/x");
            change(&mut req);
            assert_ne!(sig(&req), base, "{req:?}");
        }
    }

    #[test]
    fn host_carries_only_a_non_default_port() {
        let cases = [
            ("https://r2.example", "https://r2.example/"),
            ("https://r2.example:443", "https://r2.example/"),
            ("http://r2.example:80", "http://r2.example/"),
            ("https://R2.Example:8443", "https://r2.example:8443/"),
            ("http://127.0.0.1:9000", "http://127.0.0.1:9000/"),
            ("http://[::1]:9000", "http://[::1]:9000/"),
        ];
        for (endpoint, prefix) in cases {
            let req = PresignRequest {
                endpoint: Url::parse(endpoint).unwrap(),
                ..r2("k")
            };
            let url = req.presign().unwrap();
            assert!(
                url.starts_with(&format!("{prefix}frontdoor-blobs/k?")),
                "{url}"
            );
            let host = &prefix[prefix.find("//").unwrap() + 2..prefix.len() - 1];
            let query = req.signed_query(host, "/frontdoor-blobs/k");
            assert_eq!(url.split_once('?').unwrap().1, query);
            let canonical = canonical_request(host, "/frontdoor-blobs/k", &req.canonical_query());
            assert!(
                canonical.contains(&format!("\nhost:{host}\n")),
                "{canonical}"
            );
        }
    }

    /// Which input an error blames.
    fn blames(e: &PresignError) -> &'static str {
        match e {
            PresignError::Endpoint(_) => "endpoint",
            PresignError::Bucket(_) => "bucket",
            PresignError::Key(_) => "key",
            PresignError::Scope(_) => "scope",
            PresignError::ExpiresIn(_) => "expires_in",
            PresignError::Time(_) => "time",
        }
    }

    #[test]
    fn refuses_unusable_inputs() {
        type Change = fn(&mut PresignRequest);
        fn endpoint(s: &str) -> Url {
            Url::parse(s).unwrap()
        }
        #[rustfmt::skip]
        let cases: [(Change, &str); 20] = [
            (|r| r.endpoint = endpoint("ftp://h"), "endpoint"),
            (|r| r.endpoint = endpoint("data:text/plain,x"), "endpoint"),
            (|r| r.endpoint = endpoint("https://u:p@h"), "endpoint"),
            (|r| r.endpoint = endpoint("https://h/base"), "endpoint"),
            (|r| r.endpoint = endpoint("https://h/?x=1"), "endpoint"),
            (|r| r.bucket = "".into(), "bucket"),
            (|r| r.bucket = "Upper".into(), "bucket"),
            (|r| r.bucket = "a/b".into(), "bucket"),
            (|r| r.bucket = "-ab".into(), "bucket"),
            (|r| r.key = "".into(), "key"),
            (|r| r.key = "a/../b".into(), "key"),
            (|r| r.key = "./b".into(), "key"),
            (|r| r.key = "k".repeat(1025), "key"),
            (|r| r.region = "".into(), "scope"),
            (|r| r.region = "us/east".into(), "scope"),
            (|r| r.service = "S3".into(), "scope"),
            (|r| r.access_key_id = "".into(), "scope"),
            (|r| r.access_key_id = "a/b".into(), "scope"),
            (|r| r.secret_access_key = "".into(), "scope"),
            (|r| r.now = MAX_TIME + 1, "time"),
        ];
        for (change, want) in cases {
            let mut req = r2("k");
            change(&mut req);
            let err = req.presign().expect_err(&format!("{req:?}"));
            assert_eq!(blames(&err), want, "{req:?} gave {err}");
        }
        // Still fine: '.' inside segments, the longest key, the last representable second.
        #[rustfmt::skip]
        let fine: [Change; 3] = [
            |r| r.key = "a/.b/c..d/e.".into(),
            |r| r.key = "k".repeat(1024),
            |r| r.now = MAX_TIME,
        ];
        for change in fine {
            let mut req = r2("k");
            change(&mut req);
            assert!(req.presign().is_ok(), "{req:?}");
        }
    }

    /// AWS's "Signature Version 4 test suite" (aws-sig-v4-test-suite, 2015-08-30T12:36:00Z,
    /// `AKIDEXAMPLE`, region us-east-1, service `service`): the published `.authz` of each case.
    #[test]
    fn header_signing_reproduces_the_aws_test_suite() {
        const SUITE_TIME: u64 = 1_440_938_160; // 2015-08-30T12:36:00Z
        let creds = SigningCredentials {
            access_key_id: "AKIDEXAMPLE",
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            region: "us-east-1",
            service: "service",
            now: SUITE_TIME,
        };
        let scope = "Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request";
        type Case<'a> = (
            &'a str,
            &'a str,
            &'a [(&'a str, &'a str)],
            &'a [u8],
            &'a str,
        );
        #[rustfmt::skip]
        let cases: [Case; 4] = [
            ("GET", "https://example.amazonaws.com/", &[], b"",
             "SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
            ("POST", "https://example.amazonaws.com/", &[], b"",
             "SignedHeaders=host;x-amz-date, Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
            ("GET", "https://example.amazonaws.com/?Param2=value2&Param1=value1", &[], b"",
             "SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
            ("POST", "https://example.amazonaws.com/", &[("Content-Type", "application/x-www-form-urlencoded")], b"Param1=value1",
             "SignedHeaders=content-type;host;x-amz-date, Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"),
        ];
        for (method, url, extra, payload, want) in cases {
            let mut headers = crate::ports::Headers::new();
            for (n, v) in extra {
                headers.set(n, *v);
            }
            let url = Url::parse(url).unwrap();
            sign_headers(method, &url, &mut headers, payload, &creds).unwrap();
            assert_eq!(headers.get("x-amz-date"), Some("20150830T123600Z"));
            assert_eq!(
                headers.get("authorization").unwrap(),
                format!("AWS4-HMAC-SHA256 {scope}, {want}"),
                "{method} {url}"
            );
        }
        // A path that would need normalizing or double encoding is refused, not signed wrongly.
        for bad in ["https://h/a%20b", "https://h/caf%C3%A9"] {
            let mut headers = crate::ports::Headers::new();
            let url = Url::parse(bad).unwrap();
            assert!(
                sign_headers("GET", &url, &mut headers, b"", &creds).is_err(),
                "{bad}"
            );
        }
        assert!(!format!("{creds:?}").contains("EXAMPLEKEY"));
    }

    #[test]
    fn debug_redacts_the_secret() {
        let shown = format!("{:?}", aws_example());
        assert!(!shown.contains(AWS_SECRET), "{shown}");
        assert!(shown.contains("<redacted>"));
        assert!(shown.contains("AKIAIOSFODNN7EXAMPLE"));
    }

    #[test]
    fn formats_amz_dates() {
        let cases = [
            (0, "19700101T000000Z"),
            (946_684_799, "19991231T235959Z"),
            (951_827_696, "20000229T123456Z"), // 2000 is a leap year (divisible by 400)
            (951_868_800, "20000301T000000Z"), // the day after it
            (AWS_TIME, "20130524T000000Z"),
            (1_700_000_000, "20231114T221320Z"),
            (1_709_251_199, "20240229T235959Z"),
            (1_709_251_200, "20240301T000000Z"),
            (4_107_542_399, "21000228T235959Z"), // 2100 is not (divisible by 100)
            (4_107_542_400, "21000301T000000Z"),
            (MAX_TIME, "99991231T235959Z"),
        ];
        for (t, want) in cases {
            assert_eq!(amz_date(t), want, "{t}");
        }
    }

    /// Against the obvious day-by-day count, over 1970-01-01 to 2399-12-31 (every leap rule).
    #[test]
    fn civil_from_days_agrees_with_counting() {
        let (mut y, mut m, mut d) = (1970, 1, 1);
        for days in 0..157_054 {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let month_len = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > month_len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
        assert_eq!((y, m, d), (2400, 1, 1));
    }
}
