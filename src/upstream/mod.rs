//! Talking to an upstream registry: requests as data, the auth dance, redirects.
//!
//! [`Client::fetch`] sends a request with a cached token if there is one; on `401` it reads the
//! challenge, obtains a token for the service account (or anonymously) from the realm, caches it
//! per (registry, scope), and retries once. Redirects (Docker Hub → its CDN, Quay → CloudFront) are
//! followed here, not by the runtime, so `Authorization` is never sent to another origin.
//!
//! The service account's credentials go only to a realm [`realm::credentials_allowed`] admits;
//! any other realm is asked for an anonymous token, and [`Client::notes`] says why. A `401` from
//! a host the upstream redirected to is not answered at all (and its realm not remembered): the
//! retry would go back to the upstream, and the redirect would drop its `Authorization` anyway.

pub mod challenge;
pub mod cloud;
pub mod error;
pub mod health;
pub mod realm;
pub mod token;

use crate::config::UpstreamConfig;
use crate::error::{ErrorCode, RegistryError};
use crate::oci::Repository;
use crate::ports::{Fetched, Headers, HttpMethod, NetError, OutboundRequest, Upstream};
use base64::Engine as _;
pub use error::{AuthRefusal, Fault, RedirectRefusal, UpstreamError};
use std::cell::{Cell, RefCell};
use std::net::{Ipv4Addr, Ipv6Addr};
use token::{parse_token_response, pull_scope, BearerRealm, TokenCache};
use url::{Host, Url};

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
    /// Things the request log should say (a realm asked anonymously, and why). Never a credential.
    pub notes: RefCell<Vec<String>>,
    /// A minted cloud credential (see [`cloud`]), used in place of the configured one.
    pub minted: Option<crate::config::Credentials>,
    /// Whether the upstream (or its token realm) refused the credentials sent: a `401` to them,
    /// or a `403` from the upstream's own host. Not set by a host a redirect led to.
    pub refused: Cell<bool>,
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
            notes: RefCell::new(Vec::new()),
            minted: None,
            refused: Cell::new(false),
        }
    }

    fn note(&self, note: String) {
        self.notes.borrow_mut().push(note);
    }

    /// `METHOD <url>/v2/<repository>/<tail>` with pull rights on `repository`; `tail` may carry a
    /// query. `headers` are sent as given (`Accept`, `Range`), plus `Authorization`.
    pub async fn fetch(
        &self,
        method: HttpMethod,
        repository: &Repository,
        tail: &str,
        headers: Headers,
    ) -> Result<Fetched<U::Body>, UpstreamError> {
        let url = Url::parse(&format!(
            "{}/v2/{repository}/{tail}",
            self.upstream.url.as_str().trim_end_matches('/')
        ))
        .map_err(|e| UpstreamError::BadUrl(e.to_string()))?;
        let scope = pull_scope(repository.as_str());
        // Tokens belong to the upstream that issued them: a fallback mirror has its own.
        let token_key = self.upstream.url.as_str();

        let mut cached = self
            .tokens
            .borrow()
            .get(token_key, &scope, self.now)
            .map(str::to_owned);
        let mut basic_first = None;
        if cached.is_none() {
            // This upstream challenged before: get the token first instead of collecting a 401.
            let known = self.tokens.borrow().realm(token_key).cloned();
            if let Some(realm) = known {
                cached = self.token(&realm, None, &scope).await.ok();
            } else if self.tokens.borrow().basic.contains(token_key) {
                basic_first = self.basic();
            }
        }
        let mut req = OutboundRequest {
            method,
            url,
            headers,
            body: None,
        };
        if let Some(token) = &cached {
            req.headers.set("authorization", format!("Bearer {token}"));
        } else if let Some(basic) = &basic_first {
            req.headers.set("authorization", basic.clone());
        }
        let (first, answered_by) = self.send(req.clone()).await?;
        if first.status != 401 {
            let upstream = same_host(&answered_by, &self.upstream.url);
            self.refused.set(first.status == 403 && upstream);
            return Ok(first);
        }
        if !same_host(&answered_by, &self.upstream.url) {
            // A host the upstream redirected to asks for credentials: it gets none, and its
            // challenge is not remembered.
            return Err(self.redirected_challenge(&answered_by));
        }
        if cached.is_some() {
            // Upstream refused a token it issued (revoked, or clocks disagree): get a fresh one.
            self.tokens.borrow_mut().remove(token_key, &scope);
        }
        if basic_first.is_some() {
            // Upstream refused the Basic credentials it asked for before: they are wrong now.
            self.tokens.borrow_mut().basic.remove(token_key);
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
            let creds = self
                .basic()
                .ok_or_else(|| self.auth(AuthRefusal::NoCredentials))?;
            self.tokens.borrow_mut().basic.insert(token_key.to_owned());
            creds
        } else {
            return Err(self.fault(Fault::NoChallenge));
        };
        req.headers.set("authorization", authorization);
        let (second, answered_by) = self.send(req).await?;
        let upstream = same_host(&answered_by, &self.upstream.url);
        if second.status == 401 {
            self.tokens.borrow_mut().remove(token_key, &scope);
            if !upstream {
                return Err(self.redirected_challenge(&answered_by));
            }
            self.refused.set(true);
            return Err(self.auth(AuthRefusal::Credentials {
                repository: repository.to_string(),
            }));
        }
        self.refused.set(second.status == 403 && upstream);
        Ok(second)
    }

    /// Gets (and caches under `scope`) a token from `realm`, asking for `asked_scope` if the
    /// challenge named one (registries may spell the scope their own way), else `scope`.
    async fn token(
        &self,
        realm: &BearerRealm,
        asked_scope: Option<&str>,
        scope: &str,
    ) -> Result<String, UpstreamError> {
        let registry = self.upstream.name.as_str();
        if realm.realm.is_empty() {
            return Err(self.fault(Fault::RealmMissing));
        }
        let mut url = Url::parse(&realm.realm).map_err(|_| self.fault(Fault::RealmUnusable))?;
        if !is_http(&url) {
            return Err(self.fault(Fault::RealmNotHttp));
        }
        self.check_host(&url, "token realm")?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = &realm.service {
                query.append_pair("service", service);
            }
            query.append_pair("scope", asked_scope.unwrap_or(scope));
        }
        let mut headers = Headers::new();
        if let Some(basic) = self.basic() {
            let upstream = &self.upstream.url;
            match realm::credentials_allowed(upstream, &self.upstream.auth_hosts, &url) {
                Ok(()) => headers.set("authorization", basic),
                Err(why) => self.note(format!(
                    "token realm {} asked anonymously, without the service account: {}",
                    url.host_str().unwrap_or_default(),
                    why.as_str()
                )),
            }
        }
        let anonymous = headers.get("authorization").is_none();
        let (answer, _) = self
            .send(OutboundRequest {
                method: HttpMethod::Get,
                url,
                headers,
                body: None,
            })
            .await?;
        match answer.status {
            200 => {}
            401 | 403 => {
                self.refused.set(!anonymous);
                return Err(self.auth(AuthRefusal::TokenService { anonymous }));
            }
            s => {
                return Err(UpstreamError::status(
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
            .map_err(|e| UpstreamError::net(registry, e))?;
        let token = parse_token_response(&body, self.now)
            .map_err(|e| self.fault(Fault::Token(e.to_string())))?;
        let value = token.value.clone();
        self.tokens
            .borrow_mut()
            .insert(self.upstream.url.as_str(), scope, token, self.now);
        Ok(value)
    }

    /// The error for a `401` from `host`, reached by a redirect: not answered, not remembered.
    fn redirected_challenge(&self, answered_by: &Url) -> UpstreamError {
        let host = answered_by.host_str().unwrap_or_default();
        self.note(format!(
            "a 401 from {host}, reached by a redirect, was not answered"
        ));
        self.auth(AuthRefusal::RedirectedChallenge {
            host: host.to_owned(),
        })
    }

    fn basic(&self) -> Option<String> {
        let credentials = self.minted.as_ref().or(self.upstream.credentials.as_ref());
        credentials.map(|c| {
            let raw = format!("{}:{}", c.username, c.password);
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            )
        })
    }

    /// Sends `req`, following redirects; `Authorization` goes only to the origin it was meant for.
    /// Also gives the URL that answered (the last redirect's target).
    async fn send(
        &self,
        mut req: OutboundRequest,
    ) -> Result<(Fetched<U::Body>, Url), UpstreamError> {
        let registry = self.upstream.name.as_str();
        for _ in 0..=MAX_REDIRECTS {
            self.calls.set(self.calls.get() + 1);
            let res = self
                .port
                .send(req.clone())
                .await
                .map_err(|e| UpstreamError::net(registry, e))?;
            if !matches!(res.status, 301 | 302 | 303 | 307 | 308) {
                return Ok((res, req.url));
            }
            let next = res
                .headers
                .get("location")
                .and_then(|l| req.url.join(l).ok())
                .filter(is_http)
                .ok_or_else(|| self.redirect_refused(RedirectRefusal::NoLocation))?;
            self.check_host(&next, "redirect")?;
            if next.origin() != req.url.origin() {
                req.headers.remove("authorization");
            }
            req.url = next;
        }
        Err(self.redirect_refused(RedirectRefusal::TooMany { max: MAX_REDIRECTS }))
    }
}

impl<U> Client<'_, U> {
    /// No SSRF: a realm or redirect may name any public host, but a private, loopback or
    /// link-local one only when the upstream itself was configured on such an address.
    fn check_host(&self, url: &Url, what: &'static str) -> Result<(), UpstreamError> {
        if is_private(url) && !is_private(&self.upstream.url) {
            return Err(UpstreamError::PrivateAddress {
                registry: self.upstream.name.clone(),
                what,
            });
        }
        Ok(())
    }

    fn auth(&self, refusal: AuthRefusal) -> UpstreamError {
        UpstreamError::Auth {
            registry: self.upstream.name.clone(),
            refusal,
            because: None,
        }
    }

    fn fault(&self, fault: Fault) -> UpstreamError {
        UpstreamError::Protocol {
            registry: self.upstream.name.clone(),
            fault,
        }
    }

    fn redirect_refused(&self, refusal: RedirectRefusal) -> UpstreamError {
        UpstreamError::RedirectRefused {
            registry: self.upstream.name.clone(),
            refusal,
        }
    }
}

/// Whether two URLs name the same host (ports and schemes aside).
fn same_host(a: &Url, b: &Url) -> bool {
    let bare = |h: &str| h.strip_suffix('.').unwrap_or(h).to_owned();
    a.host_str().map(bare) == b.host_str().map(bare)
}

/// Whether `url` is one the door may fetch: `http:` or `https:` (whose URLs always have a host:
/// url refuses `http://`). A `Location` may name any scheme (`ftp:`, `file:`, `data:`); those
/// are refused like an unparsable one.
pub fn is_http(url: &Url) -> bool {
    matches!(url.scheme(), "http" | "https") && url.has_host()
}

/// Whether `url` names a loopback, private, link-local or otherwise internal or reserved address,
/// or a name reserved for such (`localhost`, `*.internal`, a single label). Only what the URL
/// itself says: a public name that *resolves* to a private address cannot be told from a Worker,
/// which has no DNS API. IPv4 arrives here already normalized by url's parser (`http://2130706433/`,
/// `http://0x7f.1/` and `http://127.1/` are all `127.0.0.1`), and IPv6 forms that carry an IPv4
/// address (mapped, compatible, NAT64, 6to4) are judged by that address.
/// A URL without a host (not one the door fetches) counts as private.
pub fn is_private(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => private_v4(ip),
        Some(Host::Ipv6(ip)) => private_v6(ip),
        Some(Host::Domain(d)) => private_name(d),
        None => true,
    }
}

/// IANA's special-purpose IPv4 registry, less the globally reachable few that matter nowhere here.
fn private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    a == 0 // "this network" 0/8
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
        || (a == 169 && b == 254)
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 168)
        || (a == 192 && b == 0 && (c == 0 || c == 2)) // IETF assignments, TEST-NET-1
        || (a == 192 && b == 88 && c == 99) // the old 6to4 relay anycast
        || (a == 198 && (18..20).contains(&b)) // benchmarking 198.18/15
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // TEST-NET-3
        || a >= 224 // multicast 224/4, reserved 240/4, broadcast
}

fn private_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if s[..5] == [0; 5] && (s[5] == 0 || s[5] == 0xffff) {
        // IPv4-compatible `::a.b.c.d` (and `::`, `::1`) or IPv4-mapped `::ffff:a.b.c.d`.
        return private_v4(v4(s[6], s[7]));
    }
    if s[..4] == [0; 4] && s[4] == 0xffff && s[5] == 0 {
        return private_v4(v4(s[6], s[7])); // IPv4-translated `::ffff:0:a.b.c.d`
    }
    if s[0] == 0x64 && s[1] == 0xff9b {
        // NAT64: the well-known prefix 64:ff9b::/96 carries an IPv4 address; the local-use
        // 64:ff9b:1::/48 is private whatever follows.
        return s[2..6] != [0; 4] || private_v4(v4(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return private_v4(v4(s[1], s[2])); // 6to4 2002:a.b.c.d::/48
    }
    (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local fec0::/10
        || (s[0] & 0xff00) == 0xff00 // multicast ff00::/8
        || (s[0] == 0x2001 && s[1] == 0) // Teredo 2001::/32: a tunnel to any IPv4 address
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x0100 && s[1..4] == [0; 3]) // discard-only 100::/64
}

/// Names that never mean a public host: `localhost`, the special-use `.local`, `.internal`,
/// `.localhost`, `.home.arpa`, `.localdomain`, and single labels (intranet names).
fn private_name(domain: &str) -> bool {
    let d = domain.strip_suffix('.').unwrap_or(domain);
    !d.contains('.')
        || ["localhost", "local", "internal", "home.arpa", "localdomain"]
            .iter()
            .any(|r| d == *r || d.ends_with(&format!(".{r}")))
}

/// The error for an upstream answer that is not a success. `not_found` is the code a 404 means
/// for this kind of request (`MANIFEST_UNKNOWN`, `BLOB_UNKNOWN`).
pub fn upstream_status(
    status: u16,
    headers: &Headers,
    not_found: ErrorCode,
    registry: &str,
) -> RegistryError {
    UpstreamError::status(status, headers, not_found, registry).into()
}

/// The error for an upstream body that could not be read.
pub fn net_error(registry: &str, e: NetError) -> RegistryError {
    UpstreamError::net(registry, e).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the door relies on from url's parser (the tables `http_url`, the hand-written parser
    /// it replaced, was held to): hosts lowercased and percent-decoded, every IPv4 spelling
    /// written as four decimals, IPv6 compressed, default ports dropped, dot segments removed.
    #[test]
    fn urls_as_the_door_reads_them() {
        let cases: &[(&str, &str)] = &[
            (
                "https://registry-1.docker.io",
                "https://registry-1.docker.io/",
            ),
            (
                "HTTPS://Example.COM:443/a/../b/./c?x=1 2#f g",
                "https://example.com/b/c?x=1%202#f%20g",
            ),
            ("http://h:8080", "http://h:8080/"),
            ("http://h:80/", "http://h/"),
            ("http:\\\\h\\p\\q", "http://h/p/q"),
            ("http:h/p", "http://h/p"),
            (" \thttp://h/a\nb ", "http://h/ab"),
            ("http://u:p:q@x@h/", "http://u:p%3Aq%40x@h/"),
            ("http://%41.com/", "http://a.com/"),
            ("http://0x7f.1/", "http://127.0.0.1/"),
            ("http://2130706433/", "http://127.0.0.1/"),
            ("http://1.2.3.4./", "http://1.2.3.4/"),
            ("http://[::ffff:1.2.3.4]/", "http://[::ffff:102:304]/"),
            ("http://[1:0:0:2:0:0:0:3]/", "http://[1:0:0:2::3]/"),
            ("http://[0:0:0:0:0:0:0:1]:8/", "http://[::1]:8/"),
            ("http://h/%2e%2E/a/.%2e/b", "http://h/b"),
            ("http://h?q", "http://h/?q"),
        ];
        for (input, want) in cases {
            let url = Url::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert!(is_http(&url), "{input}");
            assert_eq!(url.as_str(), *want, "{input}");
        }
        // Refused: not http(s), no host, bad ports and addresses, and (the idna_adapter 1.0
        // stub) any Unicode hostname, literal or percent-encoded.
        for input in ["ftp://h/", "mailto:a@b", "data:,x", "file:///etc/passwd"] {
            assert!(!is_http(&Url::parse(input).unwrap()), "{input}");
        }
        for input in [
            "h/p",
            "http://",
            "http://u@/",
            "http://h:65536/",
            "http://h:8a/",
            "http://a b/",
            "http://a%25b/",
            "http://ünicode.example/",
            "http://%C3%BCnicode.example/",
            "http://1.2.3.256/",
            "http://example.0x/",
            "http://[1::2::3]/",
            "http://[::1/",
        ] {
            assert!(Url::parse(input).is_err(), "{input}");
        }
    }

    /// A `Location` resolved against the URL that answered; another scheme is not followed.
    #[test]
    fn redirects_resolve_as_fetch_does() {
        let base = Url::parse("https://r.example/v2/a/b/manifests/x?q=1#f").unwrap();
        let cases: &[(&str, &str)] = &[
            ("", "https://r.example/v2/a/b/manifests/x?q=1"),
            ("?n=2", "https://r.example/v2/a/b/manifests/x?n=2"),
            ("y", "https://r.example/v2/a/b/manifests/y"),
            ("../../c", "https://r.example/v2/a/c"),
            ("/blobs/z?sig=1", "https://r.example/blobs/z?sig=1"),
            ("//cdn.example/p", "https://cdn.example/p"),
            ("https:y", "https://r.example/v2/a/b/manifests/y"),
            ("http:cdn.example", "http://cdn.example/"),
            ("HTTP://CDN.example:80/p", "http://cdn.example/p"),
            ("//0x7f.1/p", "https://127.0.0.1/p"),
        ];
        for (input, want) in cases {
            let next = base.join(input).unwrap();
            assert!(is_http(&next), "{input}");
            assert_eq!(next.as_str(), *want, "{input}");
        }
        for input in ["ftp://x/", "file:///etc/passwd", "data:,x"] {
            assert!(!is_http(&base.join(input).unwrap()), "{input}");
        }
        assert!(is_private(&base.join("//0x7f.1/p").unwrap()));
    }

    #[test]
    fn private_addresses_in_every_spelling() {
        let private = [
            "http://127.0.0.1:5000/",
            // IPv4 as the URL standard reads it: one number, hex, octal, short forms.
            "http://2130706433/",
            "http://0x7f.1/",
            "http://127.1/",
            "http://0177.0.0.1/",
            "http://0x7f000001/",
            "http://127.0.0.1./",
            "http://%31%32%37.0.0.1/",
            "http://10.1.2.3/",
            "http://012.1/",
            "http://172.16.0.1/",
            "http://172.31.255.255/",
            "http://192.168.1.1/",
            "http://3232235777/",
            "http://169.254.169.254/latest/meta-data",
            "http://0xa9fea9fe/",
            "http://100.64.0.1/",
            "http://100.127.255.255/",
            "http://198.18.0.1/",
            "http://198.19.255.255/",
            "http://192.0.0.1/",
            "http://192.0.2.1/",
            "http://198.51.100.1/",
            "http://203.0.113.1/",
            "http://224.0.0.1/",
            "http://240.0.0.1/",
            "http://255.255.255.255/",
            "http://0.0.0.0/",
            "http://0/",
            "http://0.1.2.3/",
            "http://[::1]/",
            "http://[0:0:0:0:0:0:0:1]/",
            "http://[::]/",
            "http://[::127.0.0.1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://[::ffff:0:10.0.0.1]/",
            "http://[64:ff9b::127.0.0.1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[64:ff9b:1::8.8.8.8]/",
            "http://[2002:7f00:1::]/",
            "http://[2002:c0a8:101::1]/",
            "http://[fc00::1]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[febf::1]/",
            "http://[fec0::1]/",
            "http://[ff02::1]/",
            "http://[2001::1]/",
            "http://[2001:db8::1]/",
            "http://localhost:8080/",
            "http://LOCALHOST./",
            "http://app.localhost/",
            "http://metadata.google.internal/",
            "http://printer.local/",
            "http://router.home.arpa/",
            "http://metadata/",
        ];
        for u in private {
            assert!(is_private(&Url::parse(u).unwrap()), "{u}");
        }
        for u in [
            "https://auth.docker.io/token",
            "https://8.8.8.8/",
            "https://134744072/",
            "https://[2606:4700::1]/",
            "https://[::ffff:8.8.8.8]/",
            "https://[64:ff9b::8.8.8.8]/",
            "https://[2002:808:808::1]/",
            "https://172.32.0.1/",
            "https://100.128.0.1/",
            "https://198.20.0.1/",
            "https://223.255.255.255/",
            "https://localhost.example.com/",
            "https://internal.example.com/",
        ] {
            assert!(!is_private(&Url::parse(u).unwrap()), "{u}");
        }
    }
}
