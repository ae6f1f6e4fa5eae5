//! Upstream bearer tokens: the token endpoint's answer, and a cache keyed by (upstream, scope); the
//! upstream is named by its URL, so a fallback mirror of the same registry keeps its own tokens.
//!
//! Follows the Docker token spec: the answer carries `token` (or OAuth2's `access_token`) and an
//! optional `expires_in`, which defaults to 60 seconds. Time is a parameter (`now`, Unix seconds);
//! nothing here reads a clock.

use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;

/// The Docker token spec's default lifetime when `expires_in` is absent.
const DEFAULT_EXPIRES_IN: u64 = 60;
/// A token this close to expiry is not used: it could expire on its way upstream.
const EXPIRY_MARGIN: u64 = 10;
/// Bound on cached tokens per isolate: one per (registry, repository) actually pulled.
const MAX_ENTRIES: usize = 1024;

/// A bearer token. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    pub value: String,
    /// Unix seconds.
    pub expires_at: u64,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("value", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

/// Reads a token endpoint's JSON answer received at `now`.
pub fn parse_token_response(body: &[u8], now: u64) -> Result<Token, String> {
    let r: TokenResponse = serde_json::from_slice(body)
        .map_err(|e| format!("token endpoint answered with invalid JSON: {e}"))?;
    let value = r
        .token
        .or(r.access_token)
        .filter(|t| !t.is_empty())
        .ok_or("token endpoint answered without a token")?;
    let expires_in = r.expires_in.unwrap_or(DEFAULT_EXPIRES_IN);
    Ok(Token {
        value,
        expires_at: now.saturating_add(expires_in),
    })
}

/// The pull scope for a repository, as registries write it in challenges.
pub fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

/// Where an upstream's tokens come from, as its last bearer challenge said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerRealm {
    pub realm: String,
    pub service: Option<String>,
}

/// Tokens per (upstream, scope), each until shortly before it expires, and each upstream's token
/// realm, so a request for a new repository can get its token before asking (saving a 401
/// round trip per repository).
#[derive(Debug, Default)]
pub struct TokenCache {
    tokens: HashMap<(String, String), Token>,
    realms: HashMap<String, BearerRealm>,
    /// Minted cloud credentials (see `crate::upstream::cloud::mint`).
    pub minted: crate::upstream::cloud::mint::MintMemory,
    /// Upstreams that challenged for Basic credentials (ECR does on every request): they get
    /// them at once, without another 401 first.
    pub basic: std::collections::HashSet<String>,
}

impl TokenCache {
    pub fn get(&self, registry: &str, scope: &str, now: u64) -> Option<&str> {
        self.tokens
            .get(&(registry.to_owned(), scope.to_owned()))
            .filter(|t| now.saturating_add(EXPIRY_MARGIN) < t.expires_at)
            .map(|t| t.value.as_str())
    }

    pub fn insert(&mut self, registry: &str, scope: &str, token: Token, now: u64) {
        if self.tokens.len() >= MAX_ENTRIES {
            self.tokens
                .retain(|_, t| now.saturating_add(EXPIRY_MARGIN) < t.expires_at);
            if self.tokens.len() >= MAX_ENTRIES {
                self.tokens.clear();
            }
        }
        self.tokens
            .insert((registry.to_owned(), scope.to_owned()), token);
    }

    /// Forgets a token upstream refused (revoked early, or a clock disagreement).
    pub fn remove(&mut self, registry: &str, scope: &str) {
        self.tokens.remove(&(registry.to_owned(), scope.to_owned()));
    }

    pub fn realm(&self, upstream: &str) -> Option<&BearerRealm> {
        self.realms.get(upstream)
    }

    pub fn remember_realm(&mut self, upstream: &str, realm: BearerRealm) {
        if self.realms.len() >= MAX_ENTRIES {
            self.realms.clear();
        }
        self.realms.insert(upstream.to_owned(), realm);
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_answers() {
        let t = parse_token_response(br#"{"token":"abc","expires_in":300}"#, 1000).unwrap();
        assert_eq!(t.value, "abc");
        assert_eq!(t.expires_at, 1300);
        let t = parse_token_response(br#"{"access_token":"xyz"}"#, 1000).unwrap();
        assert_eq!((t.value.as_str(), t.expires_at), ("xyz", 1060));
        for bad in [&b"{}"[..], b"{\"token\":\"\"}", b"nope", b"{\"token\":1}"] {
            assert!(parse_token_response(bad, 0).is_err());
        }
        assert!(!format!("{t:?}").contains("xyz"));
    }

    #[test]
    fn cache_keys_and_expiry() {
        let mut c = TokenCache::default();
        let scope = pull_scope("library/alpine");
        assert_eq!(scope, "repository:library/alpine:pull");
        c.insert(
            "docker.io",
            &scope,
            Token {
                value: "t1".into(),
                expires_at: 100,
            },
            0,
        );
        assert_eq!(c.get("docker.io", &scope, 50), Some("t1"));
        assert_eq!(c.get("docker.io", &scope, 89), Some("t1"));
        assert_eq!(c.get("docker.io", &scope, 90), None, "inside the margin");
        assert_eq!(c.get("ghcr.io", &scope, 50), None, "per registry");
        assert_eq!(
            c.get("docker.io", "repository:x:pull", 50),
            None,
            "per scope"
        );
        c.remove("docker.io", &scope);
        assert!(c.is_empty());
    }

    #[test]
    fn cache_is_bounded() {
        let mut c = TokenCache::default();
        for i in 0..(MAX_ENTRIES + 5) {
            c.insert(
                "r",
                &i.to_string(),
                Token {
                    value: "t".into(),
                    expires_at: if i < 10 { 5 } else { 1000 },
                },
                100,
            );
            assert!(c.len() <= MAX_ENTRIES);
        }
        assert_eq!(c.get("r", &(MAX_ENTRIES + 4).to_string(), 100), Some("t"));
    }
}
