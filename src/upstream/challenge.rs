//! `WWW-Authenticate` parsing (RFC 7235 §4.1): one or more challenges, each a scheme followed by
//! comma-separated `name=value` parameters whose values are tokens or quoted strings.
//!
//! A real parser rather than `split(',')`: a quoted `scope` may itself contain commas
//! (`scope="repository:a:pull,push"`), and quoted values may contain escaped quotes.

/// One challenge: scheme (lowercased) and parameters (names lowercased, values unescaped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses every challenge in `header`. Malformed trailing input ends the parse; what was read
/// before it is kept.
pub fn parse(header: &str) -> Vec<Challenge> {
    let mut p = Parser {
        s: header.as_bytes(),
        i: 0,
    };
    let mut out = Vec::new();
    loop {
        p.skip(|c| c == b',' || is_ws(c));
        let scheme = p.token();
        if scheme.is_empty() {
            break;
        }
        let mut challenge = Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params: Vec::new(),
        };
        loop {
            p.skip(|c| c == b',' || is_ws(c));
            let save = p.i;
            let name = p.token();
            p.skip(is_ws);
            if name.is_empty() || !p.eat(b'=') {
                // Not a parameter: the start of the next challenge (or the end).
                p.i = save;
                break;
            }
            p.skip(is_ws);
            let value = if p.peek() == Some(b'"') {
                match p.quoted() {
                    Some(v) => v,
                    None => {
                        out.push(challenge);
                        return out;
                    }
                }
            } else {
                // RFC 7235 says a token, but registries send unquoted URLs (`realm=https://…`):
                // read up to the next separator instead.
                p.until(|c| c == b',' || is_ws(c))
            };
            challenge.params.push((name.to_ascii_lowercase(), value));
        }
        out.push(challenge);
    }
    out
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn skip(&mut self, f: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&f) {
            self.i += 1;
        }
    }
    fn token(&mut self) -> String {
        self.until(|c| !is_tchar(c))
    }
    fn until(&mut self, stop: impl Fn(u8) -> bool) -> String {
        let start = self.i;
        self.skip(|c| !stop(c));
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }
    /// A quoted-string starting at `"`; `None` if it is not closed.
    fn quoted(&mut self) -> Option<String> {
        self.i += 1;
        let mut v = Vec::new();
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                b'"' => return Some(String::from_utf8_lossy(&v).into_owned()),
                b'\\' => {
                    v.push(self.peek()?);
                    self.i += 1;
                }
                _ => v.push(c),
            }
        }
        None
    }
}

fn is_ws(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// RFC 7230 `tchar`.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(h: &str) -> Challenge {
        let mut v = parse(h);
        assert_eq!(v.len(), 1, "{h}: {v:?}");
        v.remove(0)
    }

    #[test]
    fn docker_hub_bearer() {
        let c = one(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
        );
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c.param("service"), Some("registry.docker.io"));
        assert_eq!(c.param("scope"), Some("repository:library/alpine:pull"));
    }

    #[test]
    fn unquoted_values_spaces_and_case() {
        let c = one("bearer  Realm = https://r.example/t , service=svc,error=invalid_token");
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.param("realm"), Some("https://r.example/t"));
        assert_eq!(c.param("service"), Some("svc"));
        assert_eq!(c.param("error"), Some("invalid_token"));
    }

    #[test]
    fn commas_and_escapes_inside_quotes() {
        let c = one(r#"Bearer realm="https://r/t",scope="repository:a:pull,push",x="say \"hi\"""#);
        assert_eq!(c.param("scope"), Some("repository:a:pull,push"));
        assert_eq!(c.param("x"), Some(r#"say "hi""#));
    }

    #[test]
    fn several_challenges() {
        let v = parse(r#"Basic realm="Registry Realm", Bearer realm="https://r/t",service=s"#);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].scheme, "basic");
        assert_eq!(v[0].param("realm"), Some("Registry Realm"));
        assert_eq!(v[1].scheme, "bearer");
        assert_eq!(v[1].param("service"), Some("s"));
        let v = parse("Negotiate, Basic");
        assert_eq!(
            v.iter().map(|c| c.scheme.as_str()).collect::<Vec<_>>(),
            ["negotiate", "basic"]
        );
    }

    #[test]
    fn malformed_input_does_not_panic() {
        for h in [
            "",
            ",,,",
            "Bearer realm=\"unterminated",
            "Bearer realm=",
            "=x",
            "Bearer \u{1F600}=1",
            "Basic dXNlcjpwYXNz==",
            "\"",
            "Bearer realm=\"a\\",
        ] {
            let _ = parse(h);
        }
        assert_eq!(parse("Bearer realm=\"unterminated")[0].scheme, "bearer");
        assert!(parse("").is_empty());
    }
}
