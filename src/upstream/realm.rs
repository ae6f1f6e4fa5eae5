//! Where the service account's credentials may go: the rule for a token realm that a `401` names,
//! as a pure function of the upstream's URL, its `auth_hosts` and the realm's URL.
//!
//! The realm comes from whoever answered `401`, so it is upstream-controlled data: sending the
//! service account's Basic credentials to any realm named would hand them to anyone who can make an
//! upstream (or a host it redirects to) name a realm. distribution's proxy has the same concern
//! (`realmAllowed`). Credentials go to a realm only when
//!
//! - its scheme is `https`, or the upstream itself is plain `http` (then nothing is encrypted
//!   anyway: a test registry on loopback), and
//! - its host is the upstream's own host (any port), or
//! - both hosts are domain names with the same *registrable domain*, a public suffix plus one
//!   label (`registry-1.docker.io` → `auth.docker.io`, `registry.gitlab.com` → `gitlab.com`), or
//! - its host is listed in that upstream's `auth_hosts` (`nvcr.io` → `authn.nvidia.com`).
//!
//! IP-address hosts match only exactly. Anywhere else the token is asked for anonymously.
//!
//! The public suffixes are a small built-in rule, not the whole Public Suffix List (~9 000 rules;
//! compiled in it would cost tens of KiB of the upload, and it goes stale between deploys): every
//! top-level domain; a two-letter country TLD under which the second label is short or generic
//! (`co.uk`, `com.au`, `ne.jp`, `gov.br`); and [`MULTI_TENANT`], platform domains whose
//! subdomains belong to different customers. Under a platform domain every host is its own
//! (`foo.azurecr.io` shares credentials with no other `*.azurecr.io` host, not even
//! `x.foo.azurecr.io`). The rule errs towards *fewer* hosts: where it does not know a suffix it may
//! refuse credentials to a host that really shares the domain (list that host in `auth_hosts`),
//! and the short-label rule keeps it from taking `xx.yy`-style suffixes for registrable domains.

use url::{Host, Url};

/// Platform domains whose subdomains are separate tenants: a host under one shares its
/// registrable domain with no other host. Registries on them keep their realm on their own host
/// (ACR `foo.azurecr.io/oauth2/token`, Artifact Registry `*-docker.pkg.dev/v2/token`).
pub const MULTI_TENANT: &[&str] = &[
    "amazonaws.com",
    "amazonaws.com.cn",
    "appspot.com",
    "azure-api.net",
    "azurecr.cn",
    "azurecr.io",
    "azurecr.us",
    "azureedge.net",
    "azurewebsites.net",
    "blob.core.windows.net",
    "cloudapp.net",
    "cloudflare-ipfs.com",
    "cloudfront.net",
    "cloudfunctions.net",
    "digitaloceanspaces.com",
    "firebaseapp.com",
    "fly.dev",
    "github.io",
    "gitlab.io",
    "googleusercontent.com",
    "herokuapp.com",
    "jfrog.io",
    "netlify.app",
    "ngrok-free.app",
    "ngrok.io",
    "onrender.com",
    "pages.dev",
    "pkg.dev",
    "r2.dev",
    "run.app",
    "trycloudflare.com",
    "vercel.app",
    "web.app",
    "workers.dev",
    // CentralNic-style second-level "country" domains under generic TLDs.
    "cn.com",
    "de.com",
    "eu.com",
    "eu.org",
    "gb.net",
    "uk.com",
    "uk.net",
    "us.com",
    "za.com",
];

/// Second labels under a two-letter country TLD that are registries' generic categories even
/// though longer than three characters (`gouv.fr`, `govt.nz`, `info.pl`).
const LONG_GENERIC: &[&str] = &[
    "gouv", "govt", "info", "nome", "priv", "firm", "store", "school",
];

/// Why a realm gets no credentials (the request log names the realm's host with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The upstream is `https` and the realm plain `http`.
    PlainHttp,
    /// Not the upstream's host, not its registrable domain, not in `auth_hosts`.
    AnotherHost,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::PlainHttp => "plain http for an https upstream",
            Refusal::AnotherHost => "not the upstream's host or domain, nor in its auth_hosts",
        }
    }
}

/// Whether the service account's credentials may be sent to `realm`, a token realm a challenge
/// from `upstream` named. `auth_hosts` are the upstream's extra realm hosts, as
/// [`normalize_host`] wrote them.
pub fn credentials_allowed(
    upstream: &Url,
    auth_hosts: &[String],
    realm: &Url,
) -> Result<(), Refusal> {
    if realm.scheme() == "http" && upstream.scheme() == "https" {
        return Err(Refusal::PlainHttp);
    }
    // An http(s) URL always has a host (url refuses `http://`); one without is refused anyway.
    let (Some(realm_host), Some(upstream_host)) = (realm.host_str(), upstream.host_str()) else {
        return Err(Refusal::AnotherHost);
    };
    let realm_host = bare(realm_host);
    if realm_host == bare(upstream_host) || auth_hosts.iter().any(|h| bare(h) == realm_host) {
        return Ok(());
    }
    if let (Some(Host::Domain(r)), Some(Host::Domain(u))) = (realm.host(), upstream.host()) {
        if let (Some(r), Some(u)) = (registrable_domain(r), registrable_domain(u)) {
            if r == u {
                return Ok(());
            }
        }
    }
    Err(Refusal::AnotherHost)
}

/// A host as a URL's `host_str` writes it (lowercase, IPv4 in four decimals, IPv6 in brackets,
/// compressed), for `auth_hosts`; `None` if `host` is not a bare host (a scheme, port, path,
/// credentials, or an invalid name).
pub fn normalize_host(host: &str) -> Option<String> {
    let host = host.trim();
    let bad = |c: char| c.is_whitespace() || matches!(c, '/' | '\\' | '@' | '?' | '#' | '%');
    if host.is_empty() || host.contains(bad) {
        return None;
    }
    // A colon only inside an IPv6 address's brackets: no port.
    let colon_outside = match host.strip_prefix('[') {
        Some(inner) => !inner.ends_with(']'),
        None => host.contains(':'),
    };
    if colon_outside {
        return None;
    }
    let url = Url::parse(&format!("https://{host}/")).ok()?;
    Some(bare(url.host_str()?).to_owned())
}

/// Without a trailing dot (`auth.docker.io.` is `auth.docker.io`).
fn bare(host: &str) -> &str {
    host.strip_suffix('.').unwrap_or(host)
}

/// The public suffix of `domain` plus one label, or `None` when `domain` is itself a public
/// suffix, a single label, or under a [`MULTI_TENANT`] domain (where each host stands alone).
pub fn registrable_domain(domain: &str) -> Option<&str> {
    let domain = bare(domain);
    let under = |suffix: &str| {
        domain == suffix
            || domain
                .strip_suffix(suffix)
                .is_some_and(|rest| rest.ends_with('.'))
    };
    if MULTI_TENANT.iter().any(|s| under(s)) {
        return None;
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.iter().any(|l| l.is_empty()) {
        return None;
    }
    let n = labels.len();
    let tld = labels[n - 1];
    let two_label_suffix = n >= 2 && tld.len() == 2 && {
        let second = labels[n - 2];
        second.len() <= 3 || LONG_GENERIC.contains(&second)
    };
    let suffix_labels = if two_label_suffix { 2 } else { 1 };
    if n <= suffix_labels {
        return None;
    }
    let keep: usize = labels[n - suffix_labels - 1..]
        .iter()
        .map(|l| l.len() + 1)
        .sum::<usize>()
        - 1;
    Some(&domain[domain.len() - keep..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn registrable_domains() {
        let cases = [
            ("registry-1.docker.io", Some("docker.io")),
            ("auth.docker.io", Some("docker.io")),
            ("docker.io", Some("docker.io")),
            ("registry.gitlab.com", Some("gitlab.com")),
            ("gitlab.com.", Some("gitlab.com")),
            ("a.b.example.co.uk", Some("example.co.uk")),
            ("example.co.uk", Some("example.co.uk")),
            ("co.uk", None),
            ("registry.example.com.au", Some("example.com.au")),
            ("x.gouv.fr", Some("x.gouv.fr")),
            ("gouv.fr", None),
            ("registry.example.de", Some("example.de")),
            ("quay.io", Some("quay.io")),
            ("io", None),
            ("localhost", None),
            ("foo.azurecr.io", None),
            ("azurecr.io", None),
            ("123.dkr.ecr.us-east-1.amazonaws.com", None),
            ("d1.cloudfront.net", None),
            ("us-docker.pkg.dev", None),
            ("myapp.herokuapp.com", None),
            ("evilazurecr.io", Some("evilazurecr.io")),
            ("a..b", None),
        ];
        for (domain, want) in cases {
            assert_eq!(registrable_domain(domain), want, "{domain}");
        }
    }

    #[test]
    fn where_credentials_may_go() {
        let none: &[String] = &[];
        let nvidia = ["authn.nvidia.com".to_owned()];
        type Case<'a> = (&'a str, &'a [String], &'a str, Result<(), Refusal>);
        let cases: &[Case] = &[
            // Docker Hub and GitLab: a sibling or the parent in the same registrable domain.
            (
                "https://registry-1.docker.io",
                none,
                "https://auth.docker.io/token",
                Ok(()),
            ),
            (
                "https://registry.gitlab.com",
                none,
                "https://gitlab.com/jwt/auth",
                Ok(()),
            ),
            ("https://ghcr.io", none, "https://ghcr.io/token", Ok(())),
            ("https://ghcr.io", none, "https://GHCR.io./token", Ok(())),
            // ACR: each registry is a tenant of azurecr.io.
            (
                "https://foo.azurecr.io",
                none,
                "https://foo.azurecr.io/oauth2/token",
                Ok(()),
            ),
            (
                "https://foo.azurecr.io",
                none,
                "https://evil.azurecr.io/oauth2/token",
                Err(Refusal::AnotherHost),
            ),
            (
                "https://foo.azurecr.io",
                none,
                "https://x.foo.azurecr.io/t",
                Err(Refusal::AnotherHost),
            ),
            (
                "https://a.pkg.dev",
                none,
                "https://b.pkg.dev/v2/token",
                Err(Refusal::AnotherHost),
            ),
            (
                "https://shop.example.co.uk",
                none,
                "https://evil.co.uk/token",
                Err(Refusal::AnotherHost),
            ),
            (
                "https://shop.example.co.uk",
                none,
                "https://auth.example.co.uk/token",
                Ok(()),
            ),
            // Another domain, unless listed.
            (
                "https://registry-1.docker.io",
                none,
                "https://auth.docker.io.evil.com/token",
                Err(Refusal::AnotherHost),
            ),
            (
                "https://registry-1.docker.io",
                none,
                "https://evil-docker.io/token",
                Err(Refusal::AnotherHost),
            ),
            (
                "https://nvcr.io",
                none,
                "https://authn.nvidia.com/token",
                Err(Refusal::AnotherHost),
            ),
            (
                "https://nvcr.io",
                &nvidia,
                "https://authn.nvidia.com/token",
                Ok(()),
            ),
            (
                "https://nvcr.io",
                &nvidia,
                "https://AUTHN.nvidia.com.:8443/token",
                Ok(()),
            ),
            // Never plain http for an https upstream, listed or not.
            (
                "https://registry-1.docker.io",
                none,
                "http://auth.docker.io/token",
                Err(Refusal::PlainHttp),
            ),
            (
                "https://nvcr.io",
                &nvidia,
                "http://authn.nvidia.com/token",
                Err(Refusal::PlainHttp),
            ),
            // IP addresses match exactly (any port); loopback names are other hosts.
            (
                "http://127.0.0.1:5000",
                none,
                "http://127.0.0.1:5001/token",
                Ok(()),
            ),
            (
                "http://127.0.0.1:5000",
                none,
                "http://2130706433:5001/token",
                Ok(()),
            ),
            (
                "http://127.0.0.1:5000",
                none,
                "http://localhost:5001/token",
                Err(Refusal::AnotherHost),
            ),
            (
                "http://127.0.0.1:5000",
                none,
                "http://127.0.0.2:5001/token",
                Err(Refusal::AnotherHost),
            ),
            (
                "http://10.0.0.1",
                none,
                "http://10.0.0.10/token",
                Err(Refusal::AnotherHost),
            ),
            ("http://[::1]:5000", none, "http://[0:0::1]:1/token", Ok(())),
            (
                "http://localhost:5000",
                none,
                "http://127.0.0.1:5001/token",
                Err(Refusal::AnotherHost),
            ),
            (
                "http://reg.test",
                none,
                "http://auth.reg.test/token",
                Ok(()),
            ),
        ];
        for (upstream, hosts, realm, want) in cases {
            assert_eq!(
                credentials_allowed(&url(upstream), hosts, &url(realm)),
                *want,
                "{upstream} → {realm}"
            );
        }
        // `nvidia.com` is registrable: listing one host admits its siblings only through the list.
        let listed = ["authn.nvidia.com".to_owned()];
        assert_eq!(
            credentials_allowed(
                &url("https://nvcr.io"),
                &listed,
                &url("https://evil.nvidia.com/t")
            ),
            Err(Refusal::AnotherHost)
        );
    }

    #[test]
    fn auth_hosts_are_bare_hosts() {
        let cases = [
            ("authn.nvidia.com", Some("authn.nvidia.com")),
            ("AUTHN.Nvidia.com.", Some("authn.nvidia.com")),
            ("10.0.0.1", Some("10.0.0.1")),
            ("0x7f.1", Some("127.0.0.1")),
            ("[::1]", Some("[::1]")),
            ("", None),
            ("https://authn.nvidia.com", None),
            ("authn.nvidia.com:443", None),
            ("authn.nvidia.com/token", None),
            ("user:pw@authn.nvidia.com", None),
            ("a b", None),
            ("::1", None),
            ("[::1", None),
        ];
        for (host, want) in cases {
            assert_eq!(normalize_host(host).as_deref(), want, "{host}");
        }
    }
}
