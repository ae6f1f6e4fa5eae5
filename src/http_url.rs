//! Absolute `http:` and `https:` URLs: the WHATWG URL Standard's parser (as the `url` crate
//! implements it), for these two schemes only, which are all the door ever fetches. It parses
//! upstream URLs from the configuration, token realms, and the `Location` and `Link` references
//! upstream answers with, joined onto the URL they answered.
//!
//! Not the `url` crate: that one parses every scheme and carries IDNA, ~16 KiB of the gzipped
//! upload. What is left out: other schemes (a parse error, [`ParseError::NotHttp`]) and Unicode
//! hostnames — a hostname must be ASCII, an internationalized one written in its punycode
//! (`xn--`) form, as the configuration has always required; its `xn--` labels are taken as they
//! are, not decoded and checked (a malformed one fails when it is fetched, not when it is parsed).
//! Within that, `tests/properties.rs` checks parsing and joining against the `url` crate, which
//! the door used before. Where that crate departs from the standard, this parser keeps its
//! answer for a reference that starts with three slashes (`///host` is an empty host, not
//! `host`) and takes the standard's for `..` after a segment like `c:` (which the url crate,
//! applying a `file:` rule to every scheme, would not remove).
//!
//! Everything else follows the standard, because the runtime's `fetch` does: hosts are
//! percent-decoded and lowercased, IPv4 addresses are read in any of the forms the standard
//! accepts (`0x7f.1`, `2130706433`) and written as four decimals (so that
//! `crate::upstream::is_private` sees the address `fetch` would connect to), IPv6 addresses are
//! compressed, the scheme's default port is dropped, dot segments are removed, and what may not
//! appear in a path, query or fragment is percent-encoded.

use percent_encoding::{percent_decode, utf8_percent_encode, AsciiSet, CONTROLS};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The standard's percent-encode sets, as the `url` crate writes them.
const FRAGMENT: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'<').add(b'>').add(b'`');
const PATH: &AsciiSet = &FRAGMENT.add(b'#').add(b'?').add(b'{').add(b'}');
const USERINFO: &AsciiSet = &PATH
    .add(b'/')
    .add(b':')
    .add(b';')
    .add(b'=')
    .add(b'@')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'|');
const SPECIAL_QUERY: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'\'');

/// Why a string is not an `http(s)` URL. The texts are the `url` crate's (but `NotHttp`'s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// A URL, but of another scheme (`ftp:`, `mailto:`, …).
    NotHttp,
    RelativeUrlWithoutBase,
    EmptyHost,
    /// A forbidden character in a hostname, or a Unicode one.
    InvalidDomain,
    InvalidPort,
    InvalidIpv4Address,
    InvalidIpv6Address,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParseError::NotHttp => "not an http or https URL",
            ParseError::RelativeUrlWithoutBase => "relative URL without a base",
            ParseError::EmptyHost => "empty host",
            ParseError::InvalidDomain => "invalid international domain name",
            ParseError::InvalidPort => "invalid port number",
            ParseError::InvalidIpv4Address => "invalid IPv4 address",
            ParseError::InvalidIpv6Address => "invalid IPv6 address",
        })
    }
}

impl std::error::Error for ParseError {}

/// A URL's host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host<'a> {
    /// A lowercase ASCII domain name.
    Domain(&'a str),
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Address {
    Domain,
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
}

/// An absolute `http:` or `https:` URL, always with a host and a path, held as its serialization
/// (what [`HttpUrl::as_str`] gives, and `fetch` is given) and where its parts are in it.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpUrl {
    text: String,
    secure: bool,
    address: Address,
    /// `None` for none or the scheme's default.
    port: Option<u16>,
    /// Offsets in `text`: the end of the username, the host, the path, the `?` and the `#`.
    username_end: u32,
    host_start: u32,
    host_end: u32,
    path_start: u32,
    query_start: Option<u32>,
    fragment_start: Option<u32>,
}

/// A URL's parts, percent-encoded as serialized, while it is put together.
#[derive(Clone, Copy)]
struct Parts<'a> {
    secure: bool,
    /// Empty when absent.
    username: &'a str,
    password: &'a str,
    /// A domain, four decimals, or an IPv6 address in brackets.
    host: &'a str,
    address: Address,
    port: Option<u16>,
    /// Starts with `/`.
    path: &'a str,
    query: Option<&'a str>,
    fragment: Option<&'a str>,
}

impl Parts<'_> {
    fn assemble(&self) -> HttpUrl {
        let at = |text: &String| text.len() as u32;
        let mut text = String::with_capacity(self.host.len() + self.path.len() + 16);
        text.push_str(if self.secure { "https://" } else { "http://" });
        text.push_str(self.username);
        let username_end = at(&text);
        if !self.password.is_empty() {
            text.push(':');
            text.push_str(self.password);
        }
        if !self.username.is_empty() || !self.password.is_empty() {
            text.push('@');
        }
        let host_start = at(&text);
        text.push_str(self.host);
        let host_end = at(&text);
        if let Some(port) = self.port {
            text.push(':');
            text.push_str(&port.to_string());
        }
        let path_start = at(&text);
        text.push_str(self.path);
        let mark = |text: &mut String, mark: char, part: Option<&str>| {
            let start = part.map(|_| at(text));
            if let Some(part) = part {
                text.push(mark);
                text.push_str(part);
            }
            start
        };
        let query_start = mark(&mut text, '?', self.query);
        let fragment_start = mark(&mut text, '#', self.fragment);
        HttpUrl {
            text,
            secure: self.secure,
            address: self.address,
            port: self.port,
            username_end,
            host_start,
            host_end,
            path_start,
            query_start,
            fragment_start,
        }
    }
}

impl HttpUrl {
    /// Parses an absolute URL.
    pub fn parse(input: &str) -> Result<HttpUrl, ParseError> {
        parse(None, input)
    }

    /// Resolves a reference (absolute, `//host/…`, `/path`, `path`, `?query`, `#fragment`) against
    /// this URL, as a `Location` header's value is resolved against the URL that sent it.
    pub fn join(&self, input: &str) -> Result<HttpUrl, ParseError> {
        parse(Some(self), input)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.secure {
            "https"
        } else {
            "http"
        }
    }

    /// The host as written in the URL (an IPv6 address in brackets).
    pub fn host_str(&self) -> &str {
        self.slice(self.host_start, Some(self.host_end))
    }

    pub fn host(&self) -> Host<'_> {
        match self.address {
            Address::Domain => Host::Domain(self.host_str()),
            Address::Ipv4(ip) => Host::Ipv4(ip),
            Address::Ipv6(ip) => Host::Ipv6(ip),
        }
    }

    /// The port, unless it is the scheme's default (80, 443) or absent.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(if self.secure { 443 } else { 80 })
    }

    pub fn path(&self) -> &str {
        self.slice(self.path_start, self.query_start.or(self.fragment_start))
    }

    pub fn query(&self) -> Option<&str> {
        let start = self.query_start?;
        Some(self.slice(start + 1, self.fragment_start))
    }

    pub fn fragment(&self) -> Option<&str> {
        Some(self.slice(self.fragment_start? + 1, None))
    }

    /// Whether the URL carries a username or a password.
    pub fn has_credentials(&self) -> bool {
        self.host_start as usize > self.scheme().len() + 3
    }

    /// Same scheme, host and port: where credentials meant for one may go to the other.
    pub fn same_origin(&self, other: &HttpUrl) -> bool {
        self.secure == other.secure
            && self.host_str() == other.host_str()
            && self.port_or_default() == other.port_or_default()
    }

    /// The query's `application/x-www-form-urlencoded` pairs, decoded.
    pub fn query_pairs(&self) -> form_urlencoded::Parse<'_> {
        form_urlencoded::parse(self.query().unwrap_or_default().as_bytes())
    }

    /// Appends `name=value` to the query, form-encoded.
    pub fn append_query_pair(&mut self, name: &str, value: &str) {
        let mut query =
            form_urlencoded::Serializer::new(self.query().unwrap_or_default().to_owned());
        query.append_pair(name, value);
        let query = query.finish();
        *self = Parts {
            query: Some(&query),
            ..self.parts()
        }
        .assemble();
    }

    fn slice(&self, start: u32, end: Option<u32>) -> &str {
        let end = end.map_or(self.text.len(), |e| e as usize);
        &self.text[start as usize..end]
    }

    fn parts(&self) -> Parts<'_> {
        let userinfo = self.slice(self.scheme().len() as u32 + 3, Some(self.host_start));
        let userinfo = userinfo.strip_suffix('@').unwrap_or(userinfo);
        let (username, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        Parts {
            secure: self.secure,
            username,
            password,
            host: self.host_str(),
            address: self.address,
            port: self.port,
            path: self.path(),
            query: self.query(),
            fragment: self.fragment(),
        }
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

impl std::str::FromStr for HttpUrl {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<HttpUrl, ParseError> {
        HttpUrl::parse(s)
    }
}

/// A URL the runtime has already parsed and serialized (a request's `url`), split into the parts
/// the door routes on. Splitting is enough: a serialization parses to itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Serialized<'a> {
    pub scheme: &'a str,
    /// Without credentials or port; an IPv6 address in brackets. `None` when empty.
    pub host: Option<&'a str>,
    /// `/` when the URL has none.
    pub path: &'a str,
    pub query: Option<&'a str>,
}

impl<'a> Serialized<'a> {
    pub fn split(url: &'a str) -> Serialized<'a> {
        let url = url.split('#').next().unwrap_or_default();
        let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (rest, None),
        };
        let (authority, path) = match rest.find('/') {
            Some(slash) => rest.split_at(slash),
            None => (rest, "/"),
        };
        let host_port = authority.rsplit('@').next().unwrap_or_default();
        let host = match host_port.rfind(':') {
            // A colon after the last `]`: a port.
            Some(colon) if !host_port[colon..].contains(']') => &host_port[..colon],
            _ => host_port,
        };
        Serialized {
            scheme,
            host: Some(host).filter(|h| !h.is_empty()),
            path,
            query,
        }
    }
}

/// The basic URL parser, for special schemes: `input` alone, or as a reference against `base`.
fn parse(base: Option<&HttpUrl>, input: &str) -> Result<HttpUrl, ParseError> {
    // Leading and trailing C0 controls and spaces go, and every tab and newline.
    let input: String = input
        .trim_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    let Some((scheme, rest)) = split_scheme(&input) else {
        return match base {
            Some(base) => relative(base, &input),
            None => Err(ParseError::RelativeUrlWithoutBase),
        };
    };
    let secure = match scheme.as_str() {
        "http" => false,
        "https" => true,
        _ => return Err(ParseError::NotHttp),
    };
    let authority_input = rest.trim_start_matches(['/', '\\']);
    match base {
        // `http:path` against an `http:` URL is relative to it.
        Some(base) if base.secure == secure && rest.len() - authority_input.len() < 2 => {
            relative(base, rest)
        }
        _ => authority(secure, authority_input),
    }
}

/// `scheme:` (lowercased) and what follows, if `input` starts with a scheme.
fn split_scheme(input: &str) -> Option<(String, &str)> {
    let end = input.find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))?;
    let starts_alpha = input.as_bytes()[0].is_ascii_alphabetic();
    (starts_alpha && input[end..].starts_with(':'))
        .then(|| (input[..end].to_ascii_lowercase(), &input[end + 1..]))
}

/// The relative state: `input` has no scheme of its own (or `base`'s).
fn relative(base: &HttpUrl, input: &str) -> Result<HttpUrl, ParseError> {
    let parts = Parts {
        fragment: None,
        ..base.parts()
    };
    let mut segments: Vec<String> = Vec::new();
    let rest = match input.chars().next() {
        Some('/' | '\\') => {
            let after = &input[1..];
            if after.starts_with(['/', '\\']) {
                // The standard skips every further slash; the url crate, and so this parser,
                // only those of a `//` that is not exactly `//` (`///host` has an empty host).
                let authority_input = input
                    .strip_prefix("//")
                    .unwrap_or_else(|| input.trim_start_matches(['/', '\\']));
                return authority(base.secure, authority_input);
            }
            path(&mut segments, after)
        }
        None | Some('?' | '#') => return Ok(finish(parts, None, input)),
        Some(_) => {
            segments.extend(parts.path[1..].split('/').map(str::to_owned));
            segments.pop();
            path(&mut segments, input)
        }
    };
    let parts = Parts {
        query: None,
        ..parts
    };
    Ok(finish(parts, Some(segments), rest))
}

/// The authority state and what follows: `[userinfo@]host[:port][path][?query][#fragment]`.
fn authority(secure: bool, input: &str) -> Result<HttpUrl, ParseError> {
    let end = input.find(['/', '\\', '?', '#']).unwrap_or(input.len());
    let (authority, rest) = input.split_at(end);
    let (userinfo, host_port) = match authority.rfind('@') {
        Some(at) => (&authority[..at], &authority[at + 1..]),
        None => ("", authority),
    };
    let (username, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let username = utf8_percent_encode(username, USERINFO).to_string();
    let password = utf8_percent_encode(password, USERINFO).to_string();

    // The port is after the first colon outside brackets.
    let mut brackets = false;
    let colon = host_port.bytes().position(|b| {
        match b {
            b'[' => brackets = true,
            b']' => brackets = false,
            _ => {}
        }
        b == b':' && !brackets
    });
    let (host, port) = match colon {
        Some(c) => (&host_port[..c], Some(&host_port[c + 1..])),
        None => (host_port, None),
    };
    if host.is_empty() {
        return Err(ParseError::EmptyHost);
    }
    let (host, address) = parse_host(host)?;
    let port = match port {
        None | Some("") => None,
        Some(digits) => {
            let mut port = 0u32;
            for b in digits.bytes() {
                if !b.is_ascii_digit() {
                    return Err(ParseError::InvalidPort);
                }
                port = port * 10 + u32::from(b - b'0');
                if port > u32::from(u16::MAX) {
                    return Err(ParseError::InvalidPort);
                }
            }
            let default = if secure { 443 } else { 80 };
            Some(port as u16).filter(|&p| p != default)
        }
    };
    let parts = Parts {
        secure,
        username: &username,
        password: &password,
        host: &host,
        address,
        port,
        path: "/",
        query: None,
        fragment: None,
    };
    let mut segments = Vec::new();
    // The path start state: one leading slash belongs to the path.
    let rest = path(
        &mut segments,
        rest.strip_prefix(['/', '\\']).unwrap_or(rest),
    );
    Ok(finish(parts, Some(segments), rest))
}

/// The path state: pushes `input`'s segments onto `segments`, resolving `.` and `..`, up to the
/// query or fragment, which it returns (with its `?` or `#`).
fn path<'a>(segments: &mut Vec<String>, mut input: &'a str) -> &'a str {
    loop {
        let end = input.find(['/', '\\', '?', '#']).unwrap_or(input.len());
        let segment = &input[..end];
        let slash = input[end..].starts_with(['/', '\\']);
        let lower = segment.to_ascii_lowercase();
        match lower.as_str() {
            ".." | ".%2e" | "%2e." | "%2e%2e" => {
                segments.pop();
                if !slash {
                    segments.push(String::new());
                }
            }
            "." | "%2e" => {
                if !slash {
                    segments.push(String::new());
                }
            }
            _ => segments.push(utf8_percent_encode(segment, PATH).to_string()),
        }
        if !slash {
            return &input[end..];
        }
        input = &input[end + 1..];
    }
}

/// Sets the path (when given), then the query and fragment from `rest` (empty, or starting with
/// `?` or `#`), and puts the URL together.
fn finish(parts: Parts<'_>, segments: Option<Vec<String>>, rest: &str) -> HttpUrl {
    let mut path = String::new();
    for segment in segments.iter().flatten() {
        path.push('/');
        path.push_str(segment);
    }
    let (before, fragment) = match rest.split_once('#') {
        Some((before, fragment)) => (before, Some(fragment)),
        None => (rest, None),
    };
    let query = before
        .strip_prefix('?')
        .map(|q| utf8_percent_encode(q, SPECIAL_QUERY).to_string());
    let fragment = fragment.map(|f| utf8_percent_encode(f, FRAGMENT).to_string());
    Parts {
        path: if segments.is_some() {
            &path
        } else {
            parts.path
        },
        query: query.as_deref().or(parts.query),
        fragment: fragment.as_deref(),
        ..parts
    }
    .assemble()
}

/// The host parser: an IPv6 address in brackets, an IPv4 address in any of its forms, or an ASCII
/// domain name (percent-decoded, lowercased). Serialized as the URL carries it.
fn parse_host(input: &str) -> Result<(String, Address), ParseError> {
    if let Some(inner) = input.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or(ParseError::InvalidIpv6Address)?;
        let ip = parse_ipv6(inner.as_bytes()).ok_or(ParseError::InvalidIpv6Address)?;
        return Ok((format!("[{}]", ipv6_text(ip)), Address::Ipv6(ip)));
    }
    let mut domain: Vec<u8> = percent_decode(input.as_bytes()).collect();
    // The standard's forbidden domain code points; any non-ASCII byte is a Unicode hostname,
    // which this parser does not map (see the module's documentation).
    let forbidden = |b: &u8| *b <= b' ' || *b >= 0x7f || b"%#/:<>?@[\\]^|".contains(b);
    if domain.iter().any(forbidden) {
        return Err(ParseError::InvalidDomain);
    }
    domain.make_ascii_lowercase();
    let domain = String::from_utf8(domain).map_err(|_| ParseError::InvalidDomain)?;
    if ends_in_a_number(&domain) {
        let ip = parse_ipv4(&domain).ok_or(ParseError::InvalidIpv4Address)?;
        return Ok((ip.to_string(), Address::Ipv4(ip)));
    }
    Ok((domain, Address::Domain))
}

/// Whether the last label (before a trailing dot) is a number: the host is then an IPv4 address
/// or nothing (`1.2.3.4`, `0x7f.1`, but also `example.0x` and `example.1`, which are errors).
fn ends_in_a_number(domain: &str) -> bool {
    let mut labels = domain.rsplit('.');
    let mut last = labels.next().unwrap_or_default();
    if last.is_empty() {
        match labels.next() {
            Some(label) => last = label,
            None => return false,
        }
    }
    (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit())) || ipv4_number(last).is_some()
}

/// One part of an IPv4 address: decimal, octal (leading `0`) or hexadecimal (`0x`). `Some(None)`
/// is a valid number too large for 32 bits.
fn ipv4_number(part: &str) -> Option<Option<u32>> {
    if part.is_empty() {
        return None;
    }
    let (digits, radix) =
        if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (hex, 16)
        } else if part.len() >= 2 && part.starts_with('0') {
            (&part[1..], 8)
        } else {
            (part, 10)
        };
    if digits.is_empty() {
        return Some(Some(0));
    }
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    Some(u32::from_str_radix(digits, radix).ok())
}

/// The IPv4 parser: up to four parts, the last filling the bytes left (`127.1` is `127.0.0.1`).
fn parse_ipv4(domain: &str) -> Option<Ipv4Addr> {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    let parts: Vec<&str> = domain.split('.').collect();
    if parts.len() > 4 {
        return None;
    }
    let mut numbers = Vec::with_capacity(4);
    for part in parts {
        numbers.push(ipv4_number(part)??);
    }
    let last = numbers.pop()?;
    if last > u32::MAX >> (8 * numbers.len()) || numbers.iter().any(|&n| n > 255) {
        return None;
    }
    let mut ip = last;
    for (i, n) in numbers.iter().enumerate() {
        ip += n << (8 * (3 - i));
    }
    Some(Ipv4Addr::from(ip))
}

/// The IPv6 parser: up to eight pieces of hex, one `::` for a run of zeros, and possibly a
/// dotted IPv4 address for the last two pieces.
fn parse_ipv6(input: &[u8]) -> Option<Ipv6Addr> {
    let mut pieces = [0u16; 8];
    let mut piece = 0;
    let mut compress = None;
    let mut i = 0;
    let len = input.len();
    if input.first() == Some(&b':') {
        if input.get(1) != Some(&b':') {
            return None;
        }
        i = 2;
        piece = 1;
        compress = Some(1);
    }
    while i < len {
        if piece == 8 {
            return None;
        }
        if input[i] == b':' {
            if compress.is_some() {
                return None;
            }
            i += 1;
            piece += 1;
            compress = Some(piece);
            continue;
        }
        let start = i;
        let mut value = 0u16;
        while i < len && i < start + 4 && input[i].is_ascii_hexdigit() {
            value = value * 16 + (input[i] as char).to_digit(16).unwrap_or(0) as u16;
            i += 1;
        }
        if i < len && input[i] == b'.' {
            if i == start || piece > 6 {
                return None;
            }
            return ipv4_in_ipv6(&input[start..], pieces, piece, compress);
        }
        if i < len {
            if input[i] != b':' {
                return None;
            }
            i += 1;
            if i == len {
                return None;
            }
        }
        pieces[piece] = value;
        piece += 1;
    }
    compress_zeros(pieces, piece, compress)
}

/// The dotted tail of an IPv6 address: four decimals without leading zeros.
fn ipv4_in_ipv6(
    input: &[u8],
    mut pieces: [u16; 8],
    mut piece: usize,
    compress: Option<usize>,
) -> Option<Ipv6Addr> {
    let mut seen = 0;
    let mut i = 0;
    while i < input.len() {
        if seen > 0 {
            if seen < 4 && input[i] == b'.' {
                i += 1;
            } else {
                return None;
            }
        }
        let mut number: Option<u16> = None;
        while i < input.len() && input[i].is_ascii_digit() {
            let digit = u16::from(input[i] - b'0');
            number = match number {
                None => Some(digit),
                Some(0) => return None,
                Some(n) => Some(n * 10 + digit).filter(|&n| n <= 255),
            };
            number?;
            i += 1;
        }
        pieces[piece] = pieces[piece] * 0x100 + number?;
        seen += 1;
        if seen == 2 || seen == 4 {
            piece += 1;
        }
    }
    if seen != 4 {
        return None;
    }
    compress_zeros(pieces, piece, compress)
}

/// Moves the pieces after `::` to the end; without `::`, all eight must have been given.
fn compress_zeros(mut pieces: [u16; 8], piece: usize, compress: Option<usize>) -> Option<Ipv6Addr> {
    match compress {
        Some(start) => {
            let tail = piece - start;
            pieces.copy_within(start..piece, 8 - tail);
            pieces[start..8 - tail].fill(0);
        }
        None if piece != 8 => return None,
        None => {}
    }
    Some(Ipv6Addr::from(pieces))
}

/// The standard's IPv6 serialization: lowercase hex, the first longest run of two or more zero
/// pieces written `::`, and never a dotted IPv4 tail.
fn ipv6_text(ip: Ipv6Addr) -> String {
    let pieces = ip.segments();
    let (mut run, mut best) = ((0, 0), (0, 0));
    for (i, &p) in pieces.iter().enumerate() {
        if p == 0 {
            if run.1 == 0 {
                run.0 = i;
            }
            run.1 += 1;
            if run.1 > best.1 {
                best = run;
            }
        } else {
            run.1 = 0;
        }
    }
    let mut out = String::new();
    let mut i = 0;
    while i < 8 {
        if best.1 >= 2 && i == best.0 {
            out.push_str(if i == 0 { "::" } else { ":" });
            i += best.1;
            continue;
        }
        out.push_str(&format!("{:x}", pieces[i]));
        if i < 7 {
            out.push(':');
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
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
            ("http://:p@h/", "http://:p@h/"),
            ("http://u:@h/", "http://u@h/"),
            ("http://%41.com/", "http://a.com/"),
            ("http://0x7f.1/", "http://127.0.0.1/"),
            ("http://2130706433/", "http://127.0.0.1/"),
            ("http://1.2.3.4./", "http://1.2.3.4/"),
            ("http://[::ffff:1.2.3.4]/", "http://[::ffff:102:304]/"),
            ("http://[1:0:0:2:0:0:0:3]/", "http://[1:0:0:2::3]/"),
            ("http://[0:0:0:0:0:0:0:1]:8/", "http://[::1]:8/"),
            ("http://h/é?é#é", "http://h/%C3%A9?%C3%A9#%C3%A9"),
            ("http://h/%2e%2E/a/.%2e/b", "http://h/b"),
            ("http://h?q", "http://h/?q"),
            ("http://h/a'b?'", "http://h/a'b?%27"),
        ];
        for (input, want) in cases {
            let url = HttpUrl::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(url.as_str(), *want, "{input}");
        }
    }

    #[test]
    fn errors_table() {
        use ParseError::*;
        let cases: &[(&str, ParseError)] = &[
            ("ftp://h/", NotHttp),
            ("mailto:a@b", NotHttp),
            ("h/p", RelativeUrlWithoutBase),
            ("http://", EmptyHost),
            ("http://u@/", EmptyHost),
            ("http://h:65536/", InvalidPort),
            ("http://h:8a/", InvalidPort),
            ("http://a b/", InvalidDomain),
            ("http://a%25b/", InvalidDomain),
            ("http://ünicode.example/", InvalidDomain),
            ("http://1.2.3.256/", InvalidIpv4Address),
            ("http://example.0x/", InvalidIpv4Address),
            ("http://[1::2::3]/", InvalidIpv6Address),
            ("http://[::1/", InvalidIpv6Address),
        ];
        for (input, want) in cases {
            assert_eq!(HttpUrl::parse(input), Err(*want), "{input}");
        }
    }

    #[test]
    fn join_table() {
        let base = HttpUrl::parse("https://r.example/v2/a/b/manifests/x?q=1#f").unwrap();
        let cases: &[(&str, &str)] = &[
            ("", "https://r.example/v2/a/b/manifests/x?q=1"),
            ("#g", "https://r.example/v2/a/b/manifests/x?q=1#g"),
            ("?n=2", "https://r.example/v2/a/b/manifests/x?n=2"),
            ("y", "https://r.example/v2/a/b/manifests/y"),
            ("../../c", "https://r.example/v2/a/c"),
            ("/blobs/z?sig=1", "https://r.example/blobs/z?sig=1"),
            ("//cdn.example/p", "https://cdn.example/p"),
            ("https:y", "https://r.example/v2/a/b/manifests/y"),
            ("http:cdn.example", "http://cdn.example/"),
            ("HTTP://CDN.example:80/p", "http://cdn.example/p"),
        ];
        for (input, want) in cases {
            assert_eq!(base.join(input).unwrap().as_str(), *want, "{input}");
        }
        assert_eq!(base.join("ftp://x/"), Err(ParseError::NotHttp));
    }

    #[test]
    fn serialized_splits_like_a_parse() {
        for url in [
            "https://door.example/v2/library/alpine/manifests/3.20?ns=docker.io",
            "http://127.0.0.1:8787/",
            "http://[::1]:8787/token?a=b#c",
            "http://[::1]/",
            "https://u:p@h:1/p/q?",
            "https://h",
            "https://h?x",
        ] {
            let split = Serialized::split(url);
            let parsed = HttpUrl::parse(url).unwrap();
            let want = Serialized {
                scheme: parsed.scheme(),
                host: Some(parsed.host_str()),
                path: parsed.path(),
                query: parsed.query(),
            };
            assert_eq!(split, want, "{url}");
        }
    }

    #[test]
    fn parts() {
        let url = HttpUrl::parse("http://u:p@[::1]:8080/a?b=c%20d&e#f").unwrap();
        assert_eq!(url.scheme(), "http");
        assert_eq!(url.host_str(), "[::1]");
        assert_eq!(url.host(), Host::Ipv6(Ipv6Addr::LOCALHOST));
        assert_eq!(url.port(), Some(8080));
        assert_eq!(url.path(), "/a");
        assert_eq!(url.query(), Some("b=c%20d&e"));
        assert_eq!(url.fragment(), Some("f"));
        assert!(url.has_credentials());
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(
            pairs,
            [("b".into(), "c d".into()), ("e".into(), String::new())]
        );

        let mut realm = HttpUrl::parse("https://auth.example/token#x").unwrap();
        realm.append_query_pair("scope", "repository:a/b:pull");
        realm.append_query_pair("service", "r y");
        assert_eq!(
            realm.as_str(),
            "https://auth.example/token?scope=repository%3Aa%2Fb%3Apull&service=r+y#x"
        );
        let a = HttpUrl::parse("https://h/x").unwrap();
        assert!(a.same_origin(&HttpUrl::parse("https://H:443/y").unwrap()));
        assert!(!a.same_origin(&HttpUrl::parse("http://h/x").unwrap()));
        assert!(!a.same_origin(&HttpUrl::parse("https://h:8443/x").unwrap()));
    }
}
