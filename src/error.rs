//! The one error type that reaches HTTP: an OCI distribution error code with its status, written as
//! the spec's `{"errors":[{"code":…,"message":…}]}` body.
//!
//! Everything that can go wrong in a request ends up here, so clients always see a body they can read
//! and the status that goes with its code. This module does no I/O.

use serde::Serialize;

/// Error codes from the OCI distribution spec ("Error Codes" table), plus the few that
/// distribution itself uses for conditions the spec leaves open (`UNAVAILABLE`, `UNKNOWN`), and
/// `RANGE_INVALID` for a `Range` the door cannot serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BlobUnknown,
    DigestInvalid,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    /// A `Range` header that is malformed or cannot be satisfied.
    RangeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    /// The upstream registry could not be reached or answered with a server error.
    Unavailable,
    /// A fault of the door itself, such as a bad configuration.
    Unknown,
}

impl ErrorCode {
    /// The code as it is written in the error body.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::RangeInvalid => "RANGE_INVALID",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Unknown => "UNKNOWN",
        }
    }

    /// The HTTP status that goes with the code when nothing more specific applies.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BlobUnknown | ErrorCode::ManifestUnknown | ErrorCode::NameUnknown => 404,
            ErrorCode::DigestInvalid | ErrorCode::ManifestInvalid | ErrorCode::NameInvalid => 400,
            ErrorCode::RangeInvalid => 416,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Denied => 403,
            ErrorCode::Unsupported => 405,
            ErrorCode::TooManyRequests => 429,
            ErrorCode::Unavailable => 502,
            ErrorCode::Unknown => 500,
        }
    }
}

/// An error on its way to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryError {
    pub code: ErrorCode,
    pub status: u16,
    pub message: String,
    /// `Retry-After` to pass on, as upstream sent it (only with `TOOMANYREQUESTS`).
    pub retry_after: Option<String>,
    /// `Content-Range: bytes */<size>` for an unsatisfiable range.
    pub content_range: Option<String>,
    /// The challenge of a 401.
    pub www_authenticate: Option<String>,
}

impl RegistryError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RegistryError {
            code,
            status: code.status(),
            message: message.into(),
            retry_after: None,
            content_range: None,
            www_authenticate: None,
        }
    }

    /// The same error with another HTTP status (for example 504 for an upstream timeout).
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// The `{"errors":[…]}` body.
    pub fn body(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Entry<'a> {
            code: &'static str,
            message: &'a str,
        }
        #[derive(Serialize)]
        struct Body<'a> {
            errors: [Entry<'a>; 1],
        }
        let body = Body {
            errors: [Entry {
                code: self.code.as_str(),
                message: &self.message,
            }],
        };
        serde_json::to_vec(&body).expect("serializing strings cannot fail")
    }
}

impl std::fmt::Display for RegistryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status,
            self.code.as_str(),
            self.message
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_the_spec_shape() {
        let e = RegistryError::new(ErrorCode::ManifestUnknown, "no \"such\" tag");
        assert_eq!(e.status, 404);
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"errors":[{"code":"MANIFEST_UNKNOWN","message":"no \"such\" tag"}]})
        );
    }

    #[test]
    fn statuses_follow_the_spec_table() {
        let cases = [
            (ErrorCode::BlobUnknown, 404),
            (ErrorCode::DigestInvalid, 400),
            (ErrorCode::NameInvalid, 400),
            (ErrorCode::NameUnknown, 404),
            (ErrorCode::Unauthorized, 401),
            (ErrorCode::Denied, 403),
            (ErrorCode::Unsupported, 405),
            (ErrorCode::TooManyRequests, 429),
        ];
        for (code, status) in cases {
            assert_eq!(code.status(), status, "{code:?}");
        }
        assert_eq!(
            RegistryError::new(ErrorCode::Unavailable, "x")
                .with_status(504)
                .status,
            504
        );
    }
}
