//! What went wrong upstream, as the upstream client saw it: the network failed or timed out, an
//! answer refused the mirror, a redirect or realm was refused, the dance could not go on.
//!
//! The decisions about an upstream failure (is it an outage, worth a fallback or a stale copy? is
//! it a refusal `serve_stale_on` may cover?) are made on this type, in the pure functions below.
//! It becomes a [`RegistryError`] once, in `From<UpstreamError> for RegistryError`, the only place
//! that writes its code, status and message. No variant holds a credential or a token.

use crate::error::{ErrorCode, RegistryError};
use crate::ports::{Headers, NetError};

/// An upstream failure. `registry` is the name the message gives the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamError {
    /// The configured URL and the repository make no URL: a fault of the door's settings.
    BadUrl(String),
    /// No upstream is configured for the registry.
    NotConfigured,
    /// Not asked: the upstream is down (`crate::upstream::health`) for `retry_in` more seconds.
    Down { registry: String, retry_in: u64 },
    /// No answer: the connection failed, or the body could not be read.
    Network { registry: String, error: NetError },
    /// No answer within the deadline.
    Timeout { registry: String },
    /// An answer that is not a success. `not_found` is the code a 404 means for this kind of
    /// request (`MANIFEST_UNKNOWN`, `BLOB_UNKNOWN`, `UNAVAILABLE` for a token service).
    Status {
        registry: String,
        status: u16,
        not_found: ErrorCode,
        /// `Retry-After`, as upstream sent it.
        retry_after: Option<String>,
        /// `Content-Range` of a `416`.
        content_range: Option<String>,
    },
    /// The upstream, or its token service, refused the mirror (or asked for what it may not get).
    /// `because` says why no other credential could be had, when one was sought.
    Auth {
        registry: String,
        refusal: AuthRefusal,
        because: Option<String>,
    },
    /// A redirect the mirror does not follow.
    RedirectRefused {
        registry: String,
        refusal: RedirectRefusal,
    },
    /// A realm or redirect to a private address (SSRF), refused. `what` names which.
    PrivateAddress {
        registry: String,
        what: &'static str,
    },
    /// The auth dance could not go on: the challenge, the realm or the token answer was unusable.
    Protocol { registry: String, fault: Fault },
    /// A minted cloud credential could not be had (`crate::upstream::cloud`); the minter's answer
    /// is already an error for the client (it may come from the credential's owner, over HTTP).
    Minting(RegistryError),
}

/// How the mirror was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthRefusal {
    /// A Basic challenge, and no credentials configured.
    NoCredentials,
    /// A `401` to the token or credentials the mirror just obtained.
    Credentials { repository: String },
    /// The token service answered `401` or `403`.
    TokenService { anonymous: bool },
    /// A host a redirect led to asked for credentials: it gets none.
    RedirectedChallenge { host: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectRefusal {
    /// No `Location`, or one that is not an http(s) URL.
    NoLocation,
    /// More than `max` redirects.
    TooMany { max: usize },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// A `401` without a Bearer or Basic challenge.
    NoChallenge,
    RealmMissing,
    RealmUnusable,
    RealmNotHttp,
    /// The token service's answer is not a token.
    Token(String),
}

impl UpstreamError {
    /// A network failure; a timeout is its own kind.
    pub fn net(registry: &str, error: NetError) -> Self {
        let registry = registry.to_owned();
        match error {
            NetError::Timeout => UpstreamError::Timeout { registry },
            error => UpstreamError::Network { registry, error },
        }
    }

    /// An answer with `status` (not a success), with what its headers say.
    pub fn status(status: u16, headers: &Headers, not_found: ErrorCode, registry: &str) -> Self {
        UpstreamError::Status {
            registry: registry.to_owned(),
            status,
            not_found,
            retry_after: headers.get("retry-after").map(str::to_owned),
            content_range: headers.get("content-range").map(str::to_owned),
        }
    }

    /// Whether the upstream is not serving at all (unreachable, timed out, rate limiting, a dance
    /// it cannot finish), as opposed to an answer about one resource or a refusal. An outage
    /// counts against the upstream's health, and is worth a fallback or a stale copy.
    pub fn is_outage(&self) -> bool {
        match self {
            UpstreamError::Down { .. }
            | UpstreamError::Network { .. }
            | UpstreamError::Timeout { .. }
            | UpstreamError::RedirectRefused { .. }
            | UpstreamError::PrivateAddress { .. }
            | UpstreamError::Protocol { .. } => true,
            UpstreamError::Status {
                status, not_found, ..
            } => match status {
                401 | 403 | 416 => false,
                404 => *not_found == ErrorCode::Unavailable,
                _ => true,
            },
            UpstreamError::BadUrl(_)
            | UpstreamError::NotConfigured
            | UpstreamError::Auth { .. } => false,
            UpstreamError::Minting(e) => {
                e.code == ErrorCode::TooManyRequests
                    || (e.code == ErrorCode::Unavailable && e.status >= 502)
            }
        }
    }

    /// Whether a stale copy or a fallback is worth trying instead: an outage (a minter's
    /// `UNAVAILABLE` of any status counts too).
    pub fn is_transient(&self) -> bool {
        match self {
            UpstreamError::Minting(e) => {
                matches!(e.code, ErrorCode::Unavailable | ErrorCode::TooManyRequests)
            }
            e => e.is_outage(),
        }
    }

    /// Whether the upstream refused the mirror's access (what `serve_stale_on: [401]` covers).
    pub fn is_refusal(&self) -> bool {
        match self {
            UpstreamError::Auth { .. } => true,
            UpstreamError::Status { status, .. } => matches!(status, 401 | 403),
            UpstreamError::Minting(e) => e.code == ErrorCode::Denied,
            _ => false,
        }
    }

    /// What the client is told (the error body's message).
    pub fn message(&self) -> String {
        RegistryError::from(self.clone()).message
    }
}

impl From<UpstreamError> for RegistryError {
    fn from(e: UpstreamError) -> RegistryError {
        use UpstreamError as E;
        let unavailable = |m: String| RegistryError::new(ErrorCode::Unavailable, m);
        match e {
            E::BadUrl(e) => RegistryError::new(ErrorCode::Unknown, format!("upstream URL: {e}")),
            E::NotConfigured => {
                RegistryError::new(ErrorCode::NameUnknown, "registry is not configured")
            }
            E::Down { registry, retry_in } => {
                let mut e = unavailable(format!(
                    "{registry} is unreachable; the mirror retries it in {retry_in} s"
                ))
                .with_status(503);
                e.retry_after = Some(retry_in.to_string());
                e
            }
            E::Network { registry, error } => unavailable(format!("upstream {registry} {error}")),
            E::Timeout { registry } => {
                unavailable(format!("upstream {registry} {}", NetError::Timeout)).with_status(504)
            }
            E::Status {
                registry,
                status,
                not_found,
                retry_after,
                content_range,
            } => match status {
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
                    e.content_range = content_range;
                    e
                }
                429 => {
                    let mut e = RegistryError::new(
                        ErrorCode::TooManyRequests,
                        format!("{registry} is rate-limiting the mirror"),
                    );
                    e.retry_after = retry_after;
                    e
                }
                504 => unavailable(format!("{registry} timed out (504)")).with_status(504),
                s => unavailable(format!("{registry} answered {s}")),
            },
            E::Auth {
                registry,
                refusal,
                because,
            } => {
                let message = match refusal {
                    AuthRefusal::NoCredentials => {
                        format!("{registry} requires credentials and none are configured")
                    }
                    AuthRefusal::Credentials { repository } => {
                        format!("{registry} refused the mirror's credentials for {repository}")
                    }
                    AuthRefusal::TokenService { anonymous } => {
                        let whose = if anonymous {
                            "an anonymous token"
                        } else {
                            "the mirror's credentials"
                        };
                        format!("{registry}'s token service refused {whose}")
                    }
                    AuthRefusal::RedirectedChallenge { host } => format!(
                        "{registry} redirected to {host}, which asked for credentials; the mirror sends none there"
                    ),
                };
                let message = match because {
                    Some(why) => format!("{message}; {why}"),
                    None => message,
                };
                RegistryError::new(ErrorCode::Denied, message)
            }
            E::RedirectRefused { registry, refusal } => unavailable(match refusal {
                RedirectRefusal::NoLocation => {
                    format!("{registry} redirected without a usable Location")
                }
                RedirectRefusal::TooMany { max } => {
                    format!("{registry} redirected more than {max} times")
                }
            }),
            E::PrivateAddress { registry, what } => unavailable(format!(
                "{registry} sent a {what} to a private address; refused"
            )),
            E::Protocol { registry, fault } => unavailable(match fault {
                Fault::NoChallenge => format!("{registry} answered 401 without a usable challenge"),
                Fault::RealmMissing => {
                    format!("{registry} sent a bearer challenge without a realm")
                }
                Fault::RealmUnusable => format!("{registry} sent an unusable token realm"),
                Fault::RealmNotHttp => {
                    format!("{registry} sent a token realm that is not http(s)")
                }
                Fault::Token(e) => format!("{registry}: {e}"),
            }),
            E::Minting(e) => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, not_found: ErrorCode) -> UpstreamError {
        UpstreamError::status(status, &Headers::new(), not_found, "hub")
    }

    /// Every kind, what it tells the client, and what the door decides on it: (error, status,
    /// code, outage, transient, refusal).
    #[test]
    fn kinds_and_decisions() {
        let r = || "hub".to_owned();
        let auth = |refusal| UpstreamError::Auth {
            registry: r(),
            refusal,
            because: None,
        };
        use ErrorCode::*;
        let cases: Vec<(UpstreamError, u16, ErrorCode, bool, bool, bool)> = vec![
            (
                UpstreamError::BadUrl("x".into()),
                500,
                Unknown,
                false,
                false,
                false,
            ),
            (
                UpstreamError::NotConfigured,
                404,
                NameUnknown,
                false,
                false,
                false,
            ),
            (
                UpstreamError::Down {
                    registry: r(),
                    retry_in: 7,
                },
                503,
                Unavailable,
                true,
                true,
                false,
            ),
            (
                UpstreamError::net("hub", NetError::Failed("reset".into())),
                502,
                Unavailable,
                true,
                true,
                false,
            ),
            (
                UpstreamError::net("hub", NetError::Timeout),
                504,
                Unavailable,
                true,
                true,
                false,
            ),
            (
                status(404, ManifestUnknown),
                404,
                ManifestUnknown,
                false,
                false,
                false,
            ),
            (
                status(404, Unavailable),
                502,
                Unavailable,
                true,
                true,
                false,
            ),
            (
                status(401, ManifestUnknown),
                403,
                Denied,
                false,
                false,
                true,
            ),
            (
                status(403, ManifestUnknown),
                403,
                Denied,
                false,
                false,
                true,
            ),
            (
                status(416, BlobUnknown),
                416,
                RangeInvalid,
                false,
                false,
                false,
            ),
            (
                status(429, Unavailable),
                429,
                TooManyRequests,
                true,
                true,
                false,
            ),
            (
                status(500, Unavailable),
                502,
                Unavailable,
                true,
                true,
                false,
            ),
            (
                status(504, Unavailable),
                504,
                Unavailable,
                true,
                true,
                false,
            ),
            (
                auth(AuthRefusal::NoCredentials),
                403,
                Denied,
                false,
                false,
                true,
            ),
            (
                auth(AuthRefusal::TokenService { anonymous: true }),
                403,
                Denied,
                false,
                false,
                true,
            ),
            (
                auth(AuthRefusal::RedirectedChallenge { host: "cdn".into() }),
                403,
                Denied,
                false,
                false,
                true,
            ),
            (
                UpstreamError::RedirectRefused {
                    registry: r(),
                    refusal: RedirectRefusal::TooMany { max: 5 },
                },
                502,
                Unavailable,
                true,
                true,
                false,
            ),
            (
                UpstreamError::PrivateAddress {
                    registry: r(),
                    what: "redirect",
                },
                502,
                Unavailable,
                true,
                true,
                false,
            ),
            (
                UpstreamError::Protocol {
                    registry: r(),
                    fault: Fault::RealmMissing,
                },
                502,
                Unavailable,
                true,
                true,
                false,
            ),
            (
                UpstreamError::Minting(
                    RegistryError::new(Unavailable, "minting API down").with_status(503),
                ),
                503,
                Unavailable,
                true,
                true,
                false,
            ),
            (
                UpstreamError::Minting(RegistryError::new(Denied, "refused")),
                403,
                Denied,
                false,
                false,
                true,
            ),
        ];
        for (e, want_status, code, outage, transient, refusal) in cases {
            assert_eq!(e.is_outage(), outage, "outage: {e:?}");
            assert_eq!(e.is_transient(), transient, "transient: {e:?}");
            assert_eq!(e.is_refusal(), refusal, "refusal: {e:?}");
            let r = RegistryError::from(e.clone());
            assert_eq!((r.status, r.code), (want_status, code), "{e:?}");
        }
    }

    #[test]
    fn messages_as_clients_read_them() {
        let mut headers = Headers::new();
        headers.set("retry-after", "30");
        headers.set("content-range", "bytes */10");
        let limited = RegistryError::from(UpstreamError::status(
            429,
            &headers,
            ErrorCode::BlobUnknown,
            "hub",
        ));
        assert_eq!(limited.message, "hub is rate-limiting the mirror");
        assert_eq!(limited.retry_after.as_deref(), Some("30"));
        let range = RegistryError::from(UpstreamError::status(
            416,
            &headers,
            ErrorCode::BlobUnknown,
            "hub",
        ));
        assert_eq!(range.content_range.as_deref(), Some("bytes */10"));
        assert_eq!(range.retry_after, None);
        let down = RegistryError::from(UpstreamError::Down {
            registry: "hub".into(),
            retry_in: 7,
        });
        assert_eq!(
            (down.message.as_str(), down.retry_after.as_deref()),
            (
                "hub is unreachable; the mirror retries it in 7 s",
                Some("7")
            )
        );
        assert_eq!(
            UpstreamError::net("hub", NetError::Timeout).message(),
            "upstream hub timed out"
        );
        let refused = UpstreamError::Auth {
            registry: "ecr".into(),
            refusal: AuthRefusal::Credentials {
                repository: "app".into(),
            },
            because: Some("the minting API answered 403".into()),
        };
        assert_eq!(
            refused.message(),
            "ecr refused the mirror's credentials for app; the minting API answered 403"
        );
    }
}
