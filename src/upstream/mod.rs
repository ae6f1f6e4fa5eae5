//! Talking to an upstream registry: requests as data, the auth dance, redirects.
//!
//! [`Client::fetch`] sends a request with a cached token if there is one; on `401` it reads the
//! challenge, obtains a token for the service account (or anonymously) from the realm, caches it
//! per (registry, scope), and retries once. Redirects (Docker Hub → its CDN, Quay → CloudFront) are
//! followed here, not by the runtime, so `Authorization` is never sent to another origin.

pub mod challenge;
pub mod health;
pub mod token;

use crate::config::UpstreamConfig;
use crate::error::{ErrorCode, RegistryError};
use crate::http_url::{Host, HttpUrl, ParseError};
use crate::oci::Repository;
use crate::ports::{Fetched, Headers, HttpMethod, NetError, OutboundRequest, Upstream};
use base64::Engine as _;
use std::cell::{Cell, RefCell};
use token::{parse_token_response, pull_scope, BearerRealm, TokenCache};

const MAX_REDIRECTS: usize = 5;
/// Token answers are small; anything bigger is not a token endpoint.
const MAX_TOKEN_BODY: usize = 64 * 1024;

/// An upstream client for one registry and one request.
pub struct Client<'a, U> {
    pub port: &'a U,
    pub upstream: &'a UpstreamConfig,
    pub tokens: &'a RefCell<TokenCache>,
    pub now: u64,
    /// Requests actually sent (registry, token endpoint and redirect hops).
    pub calls: Cell<u32>,
}

impl<'a, U: Upstream> Client<'a, U> {
    pub fn new(
        port: &'a U,
        upstream: &'a UpstreamConfig,
        tokens: &'a RefCell<TokenCache>,
        now: u64,
    ) -> Self {
        Client {
            port,
            upstream,
            tokens,
            now,
            calls: Cell::new(0),
        }
    }

    /// `METHOD <url>/v2/<repository>/<tail>` with pull rights on `repository`; `tail` may carry a
    /// query. `headers` are sent as given (`Accept`, `Range`), plus `Authorization`.
    pub async fn fetch(
        &self,
        method: HttpMethod,
        repository: &Repository,
        tail: &str,
        headers: Headers,
    ) -> Result<Fetched<U::Body>, RegistryError> {
        let url = HttpUrl::parse(&format!(
            "{}/v2/{repository}/{tail}",
            self.upstream.url.as_str().trim_end_matches('/')
        ))
        .map_err(|e| RegistryError::new(ErrorCode::Unknown, format!("upstream URL: {e}")))?;
        let scope = pull_scope(repository.as_str());
        let registry = self.upstream.name.as_str();
        // Tokens belong to the upstream that issued them: a fallback mirror has its own.
        let token_key = self.upstream.url.as_str();

        let mut cached = self
            .tokens
            .borrow()
            .get(token_key, &scope, self.now)
            .map(str::to_owned);
        if cached.is_none() {
            // This upstream challenged before: get the token first instead of collecting a 401.
            let known = self.tokens.borrow().realm(token_key).cloned();
            if let Some(realm) = known {
                cached = self.token(&realm, None, &scope).await.ok();
            }
        }
        let mut req = OutboundRequest {
            method,
            url,
            headers,
        };
        if let Some(token) = &cached {
            req.headers.set("authorization", format!("Bearer {token}"));
        }
        let first = self.send(req.clone()).await?;
        if first.status != 401 {
            return Ok(first);
        }
        if cached.is_some() {
            // Upstream refused a token it issued (revoked, or clocks disagree): get a fresh one.
            self.tokens.borrow_mut().remove(token_key, &scope);
        }

        let challenges = first
            .headers
            .get("www-authenticate")
            .map(challenge::parse)
            .unwrap_or_default();
        let authorization = if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
            let realm = BearerRealm {
                realm: bearer.param("realm").unwrap_or_default().to_owned(),
                service: bearer.param("service").map(str::to_owned),
            };
            let token = self.token(&realm, bearer.param("scope"), &scope).await?;
            self.tokens.borrow_mut().remember_realm(token_key, realm);
            format!("Bearer {token}")
        } else if challenges.iter().any(|c| c.scheme == "basic") {
            let creds = self.basic().ok_or_else(|| {
                RegistryError::new(
                    ErrorCode::Denied,
                    format!("{registry} requires credentials and none are configured"),
                )
            })?;
            creds
        } else {
            return Err(RegistryError::new(
                ErrorCode::Unavailable,
                format!("{registry} answered 401 without a usable challenge"),
            ));
        };
        req.headers.set("authorization", authorization);
        let second = self.send(req).await?;
        if second.status == 401 {
            self.tokens.borrow_mut().remove(token_key, &scope);
            return Err(RegistryError::new(
                ErrorCode::Denied,
                format!("{registry} refused the mirror's credentials for {repository}"),
            ));
        }
        Ok(second)
    }

    /// Gets (and caches under `scope`) a token from `realm`, asking for `asked_scope` if the
    /// challenge named one (registries may spell the scope their own way), else `scope`.
    async fn token(
        &self,
        realm: &BearerRealm,
        asked_scope: Option<&str>,
        scope: &str,
    ) -> Result<String, RegistryError> {
        let registry = self.upstream.name.as_str();
        if realm.realm.is_empty() {
            return Err(RegistryError::new(
                ErrorCode::Unavailable,
                format!("{registry} sent a bearer challenge without a realm"),
            ));
        }
        let mut url = HttpUrl::parse(&realm.realm).map_err(|e| {
            let what = match e {
                ParseError::NotHttp => "a token realm that is not http(s)",
                _ => "an unusable token realm",
            };
            RegistryError::new(ErrorCode::Unavailable, format!("{registry} sent {what}"))
        })?;
        self.check_host(&url, "token realm")?;
        if let Some(service) = &realm.service {
            url.append_query_pair("service", service);
        }
        url.append_query_pair("scope", asked_scope.unwrap_or(scope));
        let mut headers = Headers::new();
        if let Some(basic) = self.basic() {
            headers.set("authorization", basic);
        }
        let answer = self
            .send(OutboundRequest {
                method: HttpMethod::Get,
                url,
                headers,
            })
            .await?;
        match answer.status {
            200 => {}
            401 | 403 => {
                return Err(RegistryError::new(
                    ErrorCode::Denied,
                    format!("{registry}'s token service refused the mirror's credentials"),
                ))
            }
            s => {
                return Err(upstream_status(
                    s,
                    &answer.headers,
                    ErrorCode::Unavailable,
                    registry,
                ))
            }
        }
        let body = self
            .port
            .read(answer.body, MAX_TOKEN_BODY)
            .await
            .map_err(|e| net_error(registry, e))?;
        let token = parse_token_response(&body, self.now)
            .map_err(|e| RegistryError::new(ErrorCode::Unavailable, format!("{registry}: {e}")))?;
        let value = token.value.clone();
        self.tokens
            .borrow_mut()
            .insert(self.upstream.url.as_str(), scope, token, self.now);
        Ok(value)
    }

    fn basic(&self) -> Option<String> {
        self.upstream.credentials.as_ref().map(|c| {
            let raw = format!("{}:{}", c.username, c.password);
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            )
        })
    }

    /// Sends `req`, following redirects; `Authorization` goes only to the origin it was meant for.
    async fn send(&self, mut req: OutboundRequest) -> Result<Fetched<U::Body>, RegistryError> {
        let registry = self.upstream.name.as_str();
        for _ in 0..=MAX_REDIRECTS {
            self.calls.set(self.calls.get() + 1);
            let res = self
                .port
                .send(req.clone())
                .await
                .map_err(|e| net_error(registry, e))?;
            if !matches!(res.status, 301 | 302 | 303 | 307 | 308) {
                return Ok(res);
            }
            let next = res
                .headers
                .get("location")
                .and_then(|l| req.url.join(l).ok())
                .ok_or_else(|| {
                    RegistryError::new(
                        ErrorCode::Unavailable,
                        format!("{registry} redirected without a usable Location"),
                    )
                })?;
            self.check_host(&next, "redirect")?;
            if !next.same_origin(&req.url) {
                req.headers.remove("authorization");
            }
            req.url = next;
        }
        Err(RegistryError::new(
            ErrorCode::Unavailable,
            format!("{registry} redirected more than {MAX_REDIRECTS} times"),
        ))
    }
}

impl<U> Client<'_, U> {
    /// No SSRF: a realm or redirect may name any public host, but a private, loopback or
    /// link-local one only when the upstream itself was configured on such an address.
    fn check_host(&self, url: &HttpUrl, what: &str) -> Result<(), RegistryError> {
        if is_private(url) && !is_private(&self.upstream.url) {
            return Err(RegistryError::new(
                ErrorCode::Unavailable,
                format!(
                    "{} sent a {what} to a private address; refused",
                    self.upstream.name
                ),
            ));
        }
        Ok(())
    }
}

/// Whether `url` names a loopback, private, link-local or otherwise internal address.
pub fn is_private(url: &HttpUrl) -> bool {
    let private_v4 = |ip: std::net::Ipv4Addr| {
        let [a, b, ..] = ip.octets();
        ip.is_loopback()
            || ip.is_private()
            || ip.is_link_local()
            || ip.is_unspecified()
            || ip.is_broadcast()
            || a == 0
            || (a == 100 && (64..128).contains(&b))
    };
    match url.host() {
        Host::Ipv4(ip) => private_v4(ip),
        Host::Ipv6(ip) => {
            let first = ip.segments()[0];
            ip.is_loopback()
                || ip.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || ip.to_ipv4_mapped().is_some_and(private_v4)
        }
        Host::Domain(d) => {
            let d = d.trim_end_matches('.');
            d == "localhost" || d.ends_with(".localhost") || d.ends_with(".internal")
        }
    }
}

/// The error for an upstream answer that is not a success. `not_found` is the code a 404 means
/// for this kind of request (`MANIFEST_UNKNOWN`, `BLOB_UNKNOWN`).
pub fn upstream_status(
    status: u16,
    headers: &Headers,
    not_found: ErrorCode,
    registry: &str,
) -> RegistryError {
    match status {
        404 => RegistryError::new(not_found, format!("{registry} does not have it")),
        401 | 403 => RegistryError::new(
            ErrorCode::Denied,
            format!("{registry} refused the mirror access ({status})"),
        ),
        416 => {
            let mut e = RegistryError::new(
                ErrorCode::RangeInvalid,
                format!("{registry} cannot serve that range"),
            );
            e.content_range = headers.get("content-range").map(str::to_owned);
            e
        }
        429 => {
            let mut e = RegistryError::new(
                ErrorCode::TooManyRequests,
                format!("{registry} is rate-limiting the mirror"),
            );
            e.retry_after = headers.get("retry-after").map(str::to_owned);
            e
        }
        504 => RegistryError::new(
            ErrorCode::Unavailable,
            format!("{registry} timed out (504)"),
        )
        .with_status(504),
        s => RegistryError::new(ErrorCode::Unavailable, format!("{registry} answered {s}")),
    }
}

pub fn net_error(registry: &str, e: NetError) -> RegistryError {
    let status = if e == NetError::Timeout { 504 } else { 502 };
    RegistryError::new(ErrorCode::Unavailable, format!("upstream {registry} {e}"))
        .with_status(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses() {
        let private = [
            "http://127.0.0.1:5000/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://localhost:8080/",
            "http://metadata.google.internal/",
        ];
        for u in private {
            assert!(is_private(&HttpUrl::parse(u).unwrap()), "{u}");
        }
        for u in [
            "https://auth.docker.io/token",
            "https://8.8.8.8/",
            "https://[2606:4700::1]/",
            "https://172.32.0.1/",
        ] {
            assert!(!is_private(&HttpUrl::parse(u).unwrap()), "{u}");
        }
    }
}
