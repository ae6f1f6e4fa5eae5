//! Who may pull what: the `ACCESS` setting, client credentials, and the door's own bearer tokens.
//!
//! ```json
//! {"anonymous": ["docker.io/library/*"],
//!  "users": {"ci": {"password_secret": "CI_PASSWORD", "pull": ["registry.test/private/*", "*"]}},
//!  "token_ttl_seconds": 300}
//! ```
//!
//! Patterns name `<registry>/<repository>` with `*` matching any run of characters (`/` included),
//! so `docker.io/library/*` is Docker Hub's official images and `*` is everything configured.
//! Unset, `ACCESS` means a public mirror: anyone may pull everything configured. Set, it needs
//! `ACCESS_TOKEN_KEY` (a secret of at least 32 bytes) to sign the short-lived tokens `/token`
//! issues. Tokens carry the repositories granted, so a token is only ever as good as the scopes it
//! was issued for. Pure: no I/O, time is a parameter.

use crate::config::ConfigError;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use subtle::ConstantTimeEq as _;

const DEFAULT_TOKEN_TTL: u64 = 300;
const MIN_KEY_BYTES: usize = 32;
const TOKEN_VERSION: &str = "fd1";

#[derive(Clone)]
pub struct Access {
    /// `None`: the public default, anyone may pull everything.
    rules: Option<Rules>,
}

#[derive(Clone)]
struct Rules {
    anonymous: Vec<String>,
    users: BTreeMap<String, User>,
    key: Vec<u8>,
    token_ttl: u64,
}

#[derive(Clone)]
struct User {
    password: String,
    pull: Vec<String>,
}

impl fmt::Debug for Access {
    /// Patterns and user names only: never a password or the token key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rules {
            None => f.write_str("Access(public)"),
            Some(r) => f
                .debug_struct("Access")
                .field("anonymous", &r.anonymous)
                .field("users", &r.users.keys().collect::<Vec<_>>())
                .field("token_ttl", &r.token_ttl)
                .finish(),
        }
    }
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Anonymous,
    User(String),
    /// A door token: the repositories (`<registry>/<repository>`) it grants.
    Token {
        subject: String,
        access: Vec<String>,
    },
}

/// Why credentials were not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    BadCredentials,
    BadToken,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccess {
    #[serde(default)]
    anonymous: Vec<String>,
    #[serde(default)]
    users: BTreeMap<String, RawUser>,
    token_ttl_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    password_secret: String,
    #[serde(default)]
    pull: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    access: Vec<String>,
}

fn bad(setting: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        setting: setting.to_owned(),
        problem: problem.into(),
    }
}

impl Access {
    /// The public default.
    pub fn public() -> Access {
        Access { rules: None }
    }

    pub fn load(lookup: &impl Fn(&str) -> Option<String>) -> Result<Access, ConfigError> {
        let Some(raw) = lookup("ACCESS") else {
            return Ok(Access::public());
        };
        let raw: RawAccess = serde_json::from_str(&raw).map_err(|e| {
            let problem = crate::config::json_problem(&e);
            bad("ACCESS", format!("not a valid access document: {problem}"))
        })?;
        let key = lookup("ACCESS_TOKEN_KEY")
            .filter(|k| k.len() >= MIN_KEY_BYTES)
            .ok_or_else(|| {
                bad(
                    "ACCESS_TOKEN_KEY",
                    format!("must be set (at least {MIN_KEY_BYTES} bytes) when ACCESS is"),
                )
            })?
            .into_bytes();
        let mut users = BTreeMap::new();
        for (name, u) in raw.users {
            if name.is_empty() || name.contains(':') {
                return Err(bad(
                    &format!("ACCESS.users[{name:?}]"),
                    "a user name is non-empty and has no ':'",
                ));
            }
            let password = lookup(&u.password_secret)
                .filter(|p| !p.is_empty())
                .ok_or_else(|| {
                    bad(
                        &format!("ACCESS.users[{name:?}].password_secret"),
                        format!("names the secret {}, which is not set", u.password_secret),
                    )
                })?;
            users.insert(
                name,
                User {
                    password,
                    pull: u.pull,
                },
            );
        }
        let token_ttl = raw.token_ttl_seconds.unwrap_or(DEFAULT_TOKEN_TTL);
        if !(1..=86_400).contains(&token_ttl) {
            return Err(bad("ACCESS.token_ttl_seconds", "must be 1 to 86400"));
        }
        Ok(Access {
            rules: Some(Rules {
                anonymous: raw.anonymous,
                users,
                key,
                token_ttl,
            }),
        })
    }

    /// Whether `ACCESS` is set (else the mirror is public and issues no tokens).
    pub fn is_restricted(&self) -> bool {
        self.rules.is_some()
    }

    /// Whether `principal` may pull `<registry>/<repository>`.
    pub fn can_pull(&self, principal: &Principal, repository: &str) -> bool {
        let Some(rules) = &self.rules else {
            return true;
        };
        let patterns = match principal {
            Principal::Anonymous => &rules.anonymous,
            Principal::User(name) => match rules.users.get(name) {
                Some(u) => &u.pull,
                None => return false,
            },
            Principal::Token { access, .. } => return access.iter().any(|a| a == repository),
        };
        patterns.iter().any(|p| glob(p, repository))
    }

    /// Whether `principal` may read the door's status (`/` and `/_frontdoor/status`, which name
    /// private repositories and recent errors): anyone on a public door; on a restricted one only
    /// a person — a configured user, by Basic credentials or by a token issued to a user who is
    /// still configured. An anonymous token (what `/token` hands anyone) is anonymous.
    pub fn may_read_status(&self, principal: &Principal) -> bool {
        let Some(rules) = &self.rules else {
            return true;
        };
        match principal {
            Principal::Anonymous => false,
            Principal::User(name) | Principal::Token { subject: name, .. } => {
                rules.users.contains_key(name)
            }
        }
    }

    /// The user a refusal of `repository` is final for: asking for a new token cannot help,
    /// because the user's own patterns do not allow it. `Some` for Basic credentials of a user
    /// who may not pull it, and for a token issued to such a user; `None` for anonymous clients
    /// and for a token that merely lacks a scope its user could get (a new token fixes that).
    pub fn denied_user<'p>(&self, principal: &'p Principal, repository: &str) -> Option<&'p str> {
        let rules = self.rules.as_ref()?;
        let name = match principal {
            Principal::Anonymous => return None,
            Principal::User(name) => name,
            Principal::Token { subject, .. } if rules.users.contains_key(subject) => subject,
            Principal::Token { .. } => return None,
        };
        (!self.can_pull(&Principal::User(name.clone()), repository)).then_some(name.as_str())
    }

    /// Checks a user name and password (in constant time over the password).
    pub fn login(&self, user: &str, password: &str) -> Result<Principal, AuthError> {
        let Some(rules) = &self.rules else {
            return Ok(Principal::Anonymous);
        };
        match rules.users.get(user) {
            Some(u) if same_secret(&u.password, password) => Ok(Principal::User(user.to_owned())),
            _ => Err(AuthError::BadCredentials),
        }
    }

    /// Reads an `Authorization` header: `Basic` credentials or a door `Bearer` token.
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        now: u64,
    ) -> Result<Principal, AuthError> {
        let Some(value) = authorization.map(str::trim).filter(|v| !v.is_empty()) else {
            return Ok(Principal::Anonymous);
        };
        if self.rules.is_none() {
            // A public mirror ignores credentials, as a public registry does.
            return Ok(Principal::Anonymous);
        }
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = STANDARD
                .decode(rest.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or(AuthError::BadCredentials)?;
            let (user, password) = decoded.split_once(':').ok_or(AuthError::BadCredentials)?;
            return self.login(user, password);
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            return self.verify(rest.trim(), now);
        }
        Err(AuthError::BadCredentials)
    }

    /// A token for `principal` granting pull on `repositories` (already checked), and its lifetime.
    pub fn issue(
        &self,
        principal: &Principal,
        repositories: Vec<String>,
        now: u64,
    ) -> Option<(String, u64)> {
        let rules = self.rules.as_ref()?;
        let sub = match principal {
            Principal::Anonymous => String::new(),
            Principal::User(u) => u.clone(),
            Principal::Token { subject, .. } => subject.clone(),
        };
        let claims = Claims {
            sub,
            exp: now + rules.token_ttl,
            access: repositories,
        };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).ok()?);
        let signed = format!("{TOKEN_VERSION}.{payload}");
        let sig = URL_SAFE_NO_PAD.encode(mac(&rules.key, &signed).finalize().into_bytes());
        Some((format!("{signed}.{sig}"), rules.token_ttl))
    }

    fn verify(&self, token: &str, now: u64) -> Result<Principal, AuthError> {
        let rules = self.rules.as_ref().ok_or(AuthError::BadToken)?;
        let (signed, sig) = token.rsplit_once('.').ok_or(AuthError::BadToken)?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| AuthError::BadToken)?;
        mac(&rules.key, signed)
            .verify_slice(&sig)
            .map_err(|_| AuthError::BadToken)?;
        let payload = signed
            .strip_prefix(TOKEN_VERSION)
            .and_then(|p| p.strip_prefix('.'))
            .ok_or(AuthError::BadToken)?;
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(AuthError::BadToken)?;
        if now >= claims.exp {
            return Err(AuthError::BadToken);
        }
        Ok(Principal::Token {
            subject: claims.sub,
            access: claims.access,
        })
    }
}

fn mac(key: &[u8], message: &str) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(message.as_bytes());
    m
}

/// Whether `authorization` is `Bearer <secret>` (compared as [`same_secret`] does).
pub fn bearer_is(secret: &[u8], authorization: Option<&str>) -> bool {
    let Some(given) = authorization
        .map(str::trim)
        .and_then(|a| a.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
    else {
        return false;
    };
    same_secret(&String::from_utf8_lossy(secret), given)
}

/// Compares two secrets in constant time (`subtle`'s `ct_eq`, which the optimizer cannot turn
/// into an early exit), over their SHA-256 so that lengths do not leak either.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    let (x, y) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    x.as_slice().ct_eq(y.as_slice()).into()
}

/// `*` matches any run of characters, `/` included; everything else matches itself.
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    fn access(doc: &str) -> Access {
        let map: HashMap<&str, &str> = HashMap::from([
            ("ACCESS", doc),
            ("ACCESS_TOKEN_KEY", KEY),
            ("A_PW", "alpha"),
            ("B_PW", "beta"),
        ]);
        Access::load(&|k| map.get(k).map(|v| v.to_string())).unwrap()
    }

    fn matrix() -> Access {
        access(
            r#"{"anonymous": ["docker.io/library/*"],
                "users": {"a": {"password_secret": "A_PW", "pull": ["reg.test/private/*", "docker.io/*"]},
                          "b": {"password_secret": "B_PW", "pull": ["reg.test/public/*"]}}}"#,
        )
    }

    #[test]
    fn globs() {
        let cases = [
            ("*", "anything/at/all", true),
            ("docker.io/library/*", "docker.io/library/alpine", true),
            ("docker.io/library/*", "docker.io/grafana/loki", false),
            ("docker.io/*/loki", "docker.io/grafana/loki", true),
            ("reg.test/private/app", "reg.test/private/app", true),
            ("reg.test/private/app", "reg.test/private/app2", false),
            ("*b*", "abc", true),
            ("", "", true),
            ("", "x", false),
        ];
        for (p, t, want) in cases {
            assert_eq!(glob(p, t), want, "{p} vs {t}");
        }
    }

    #[test]
    fn the_access_matrix() {
        let a = matrix();
        let anon = Principal::Anonymous;
        let (ua, ub) = (Principal::User("a".into()), Principal::User("b".into()));
        let cases = [
            (&anon, "docker.io/library/alpine", true),
            (&anon, "reg.test/private/app", false),
            (&ua, "reg.test/private/app", true),
            (&ua, "docker.io/grafana/loki", true),
            (&ub, "reg.test/private/app", false),
            (&ub, "reg.test/public/app", true),
            (
                &Principal::User("ghost".into()),
                "docker.io/library/alpine",
                false,
            ),
        ];
        for (who, repo, want) in cases {
            assert_eq!(a.can_pull(who, repo), want, "{who:?} {repo}");
        }
        assert!(Access::public().can_pull(&anon, "reg.test/private/app"));
        assert!(a.is_restricted() && !Access::public().is_restricted());
    }

    #[test]
    fn who_may_read_the_status() {
        let a = matrix();
        let token = |sub: &str| Principal::Token {
            subject: sub.into(),
            access: vec!["docker.io/library/alpine".into()],
        };
        let cases = [
            (Principal::Anonymous, false),
            (token(""), false),
            (token("a"), true),
            (token("deleted"), false),
            (Principal::User("b".into()), true),
            (Principal::User("ghost".into()), false),
        ];
        for (who, want) in cases {
            assert_eq!(a.may_read_status(&who), want, "{who:?}");
            assert!(Access::public().may_read_status(&who), "public: {who:?}");
        }
    }

    #[test]
    fn final_refusals_name_the_user() {
        let a = matrix();
        let token = |sub: &str| Principal::Token {
            subject: sub.into(),
            access: vec![],
        };
        let private = "reg.test/private/app";
        let cases = [
            (Principal::Anonymous, None),
            (token(""), None),
            (token("a"), None),
            (token("b"), Some("b")),
            (token("deleted"), None),
            (Principal::User("a".into()), None),
            (Principal::User("b".into()), Some("b")),
        ];
        for (who, want) in cases {
            assert_eq!(a.denied_user(&who, private), want, "{who:?}");
        }
        assert_eq!(Access::public().denied_user(&token("b"), private), None);
    }

    #[test]
    fn bearer_secrets() {
        let cases = [
            (Some("Bearer s3cret"), true),
            (Some("bearer  s3cret "), true),
            (Some("Bearer s3cre"), false),
            (Some("Basic s3cret"), false),
            (Some("s3cret"), false),
            (Some("Bearer"), false),
            (None, false),
        ];
        for (auth, want) in cases {
            assert_eq!(bearer_is(b"s3cret", auth), want, "{auth:?}");
        }
    }

    #[test]
    fn basic_credentials() {
        let a = matrix();
        let basic = |u: &str, p: &str| format!("Basic {}", STANDARD.encode(format!("{u}:{p}")));
        assert_eq!(
            a.authenticate(Some(&basic("a", "alpha")), 0),
            Ok(Principal::User("a".into()))
        );
        for bad in [
            basic("a", "beta"),
            basic("nobody", "x"),
            "Basic !!!".into(),
            "Digest x".into(),
        ] {
            assert_eq!(
                a.authenticate(Some(&bad), 0),
                Err(AuthError::BadCredentials),
                "{bad}"
            );
        }
        assert_eq!(a.authenticate(None, 0), Ok(Principal::Anonymous));
    }

    #[test]
    fn tokens_carry_only_their_grants_and_expire() {
        let a = matrix();
        let (token, ttl) = a
            .issue(
                &Principal::User("a".into()),
                vec!["reg.test/private/app".into()],
                1000,
            )
            .unwrap();
        assert_eq!(ttl, 300);
        let who = a
            .authenticate(Some(&format!("Bearer {token}")), 1100)
            .unwrap();
        assert!(a.can_pull(&who, "reg.test/private/app"));
        assert!(
            !a.can_pull(&who, "reg.test/private/other"),
            "only what was granted"
        );
        assert_eq!(
            a.authenticate(Some(&format!("Bearer {token}")), 1300),
            Err(AuthError::BadToken)
        );
        let tampered = token.replacen("fd1.", "fd1.e", 1);
        assert_eq!(
            a.authenticate(Some(&format!("Bearer {tampered}")), 1100),
            Err(AuthError::BadToken)
        );
        let other_key = Access::load(&|k| match k {
            "ACCESS" => Some("{}".into()),
            "ACCESS_TOKEN_KEY" => Some("another-key-another-key-another-k".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(
            other_key.authenticate(Some(&format!("Bearer {token}")), 1100),
            Err(AuthError::BadToken)
        );
    }

    #[test]
    fn bad_documents_are_named() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("ACCESS", "{")], "ACCESS"),
            (
                &[
                    ("ACCESS", r#"{"anonymous": "*"}"#),
                    ("ACCESS_TOKEN_KEY", KEY),
                ],
                "ACCESS",
            ),
            (&[("ACCESS", "{}")], "ACCESS_TOKEN_KEY"),
            (
                &[("ACCESS", "{}"), ("ACCESS_TOKEN_KEY", "short")],
                "ACCESS_TOKEN_KEY",
            ),
            (
                &[
                    ("ACCESS", r#"{"users": {"u": {"password_secret": "NOPE"}}}"#),
                    ("ACCESS_TOKEN_KEY", KEY),
                ],
                r#"ACCESS.users["u"].password_secret"#,
            ),
            (
                &[
                    ("ACCESS", r#"{"token_ttl_seconds": 0}"#),
                    ("ACCESS_TOKEN_KEY", KEY),
                ],
                "ACCESS.token_ttl_seconds",
            ),
        ];
        for (pairs, setting) in cases {
            let map: HashMap<&str, &str> = pairs.iter().copied().collect();
            let err = Access::load(&|k| map.get(k).map(|v| v.to_string())).unwrap_err();
            assert_eq!(err.setting, *setting, "{pairs:?}");
        }
        let dbg = format!("{:?}", matrix());
        assert!(!dbg.contains("alpha") && !dbg.contains(KEY), "{dbg}");
    }
}
