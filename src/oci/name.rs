//! Repository names and manifest references, validated by the OCI distribution spec's grammar.
//!
//! name:  `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`
//! tag:   `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`
//!
//! Hand-written rather than a regex: the grammar is small and a regex engine would cost more bundle
//! bytes than this whole module.

use super::Digest;
use std::fmt;

/// The spec lets clients cap `<registry>/<name>` at 255 characters; the door caps the name itself.
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A repository name that matches the spec's grammar, e.g. `library/alpine`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Repository(String);

impl Repository {
    pub fn parse(s: &str) -> Result<Repository, String> {
        if s.is_empty() {
            return Err("repository name is empty".into());
        }
        if s.len() > MAX_NAME_LEN {
            return Err(format!(
                "repository name is longer than {MAX_NAME_LEN} characters"
            ));
        }
        for component in s.split('/') {
            if !valid_component(component) {
                return Err(format!(
                    "repository name component {component:?} is invalid: lowercase letters, digits and single separators (., _, __, -) only"
                ));
            }
        }
        Ok(Repository(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Number of `/`-separated components.
    pub fn depth(&self) -> usize {
        self.0.split('/').count()
    }

    /// `prefix/self` (used for Docker Hub's implicit `library/`).
    pub fn prefixed(&self, prefix: &str) -> Repository {
        Repository(format!("{prefix}/{}", self.0))
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or one or more "-".
        let start = i;
        let sep = b[i];
        while i < b.len() && b[i] == sep {
            i += 1;
        }
        let run = i - start;
        let ok = match sep {
            b'.' => run == 1,
            b'_' => run <= 2,
            b'-' => true,
            _ => false,
        };
        // One separator between alphanumerics: never two kinds in a row (`-_`, `._.`).
        if !ok || !b.get(i).copied().is_some_and(alnum) {
            return false;
        }
    }
    true
}

/// What follows `/manifests/`: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
}

impl Reference {
    pub fn parse(s: &str) -> Result<Reference, String> {
        if s.contains(':') {
            return Digest::parse(s).map(Reference::Digest);
        }
        let b = s.as_bytes();
        let first_ok = b
            .first()
            .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_');
        let rest_ok = b
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
        if !first_ok || !rest_ok || b.len() > MAX_TAG_LEN {
            return Err(format!(
                "tag {s:?} is invalid: [A-Za-z0-9_][A-Za-z0-9._-]{{0,127}}"
            ));
        }
        Ok(Reference::Tag(s.to_owned()))
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => f.write_str(t),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_grammar() {
        let good = [
            "a",
            "library/alpine",
            "my-org/sub.group/app_1",
            "a__b",
            "a---b",
            "0/1/2",
        ];
        for g in good {
            assert!(Repository::parse(g).is_ok(), "{g} should parse");
        }
        let long = "a".repeat(256);
        let bad = [
            "",
            "Alpine",
            "a//b",
            "/a",
            "a/",
            "a..b",
            "a___b",
            "-a",
            "a-",
            "a/../b",
            "..",
            "0---__00a00a",
            "a._.aa",
            "a-.b",
            "a%2Fb",
            "a b",
            "a:b",
            long.as_str(),
        ];
        for b in bad {
            assert!(Repository::parse(b).is_err(), "{b:?} should be refused");
        }
        assert_eq!(Repository::parse("x/y/z").unwrap().depth(), 3);
        assert_eq!(
            Repository::parse("alpine")
                .unwrap()
                .prefixed("library")
                .as_str(),
            "library/alpine"
        );
    }

    #[test]
    fn reference_grammar() {
        assert_eq!(
            Reference::parse("v1.2_3-rc").unwrap(),
            Reference::Tag("v1.2_3-rc".into())
        );
        assert!(Reference::parse(&"a".repeat(128)).is_ok());
        assert!(matches!(
            Reference::parse(&format!("sha256:{}", "0".repeat(64))).unwrap(),
            Reference::Digest(_)
        ));
        for bad in [
            "",
            ".hidden",
            "-x",
            "a/b",
            "a b",
            "sha256:zz",
            &"a".repeat(129),
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
