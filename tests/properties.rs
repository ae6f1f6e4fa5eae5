//! Property-based fuzzing of the parsers that read what clients and upstreams send: digests,
//! repository names, references, `WWW-Authenticate`, `Range`, the router, and the URLs the SSRF
//! rules judge (as the `url` crate parses them).
//!
//! Every parser is driven twice: with arbitrary strings (it must never panic), and with inputs
//! generated from its grammar, then lightly mutated (an inserted, deleted or replaced character), so
//! the cases sit near the edge between accepted and refused where the bugs are. What is accepted
//! must print back to the same text and parse again to the same value.
//!
//! The number of cases per property is [`CASES`]; the standard `PROPTEST_CASES` variable overrides
//! it (`PROPTEST_CASES=20000 cargo test --test properties` for a longer fuzz). A failure is shrunk
//! and its seed kept in `tests/properties.proptest-regressions`, which belongs in the repository.

// Host only: proptest has no wasm32-unknown-unknown random source (see Cargo.toml).
#![cfg(not(target_arch = "wasm32"))]

use frontdoor::config::Config;
use frontdoor::oci::{Algorithm, Digest, Reference, Repository};
use frontdoor::range::{self, ByteRange};
use frontdoor::route::{route, RequestLine};
use frontdoor::upstream::{challenge, is_http, is_private};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::FileFailurePersistence;

/// Cases per property when `PROPTEST_CASES` is not set: the whole file runs in a few seconds.
const CASES: u32 = 2048;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CASES);
    ProptestConfig {
        cases,
        // `tests/properties.proptest-regressions`, re-run first on every later run.
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

/// Characters mutations draw from: grammar characters, their near misses, and hostile ones.
const MUTATION_CHARS: &str = "afgzAFZ09:/._-%@+,=\"\\ \t\0\né\u{17F}\u{212A}\u{1F600}\u{FEFF}";

/// Up to three edits of `s`: insert, delete, replace or duplicate a character.
fn mutate(s: String, edits: Vec<(u8, Index, char)>) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    for (op, at, c) in edits {
        match op % 4 {
            0 => chars.insert(at.index(chars.len() + 1), c),
            _ if chars.is_empty() => {}
            1 => {
                chars.remove(at.index(chars.len()));
            }
            2 => {
                let i = at.index(chars.len());
                chars[i] = c;
            }
            _ => {
                let i = at.index(chars.len());
                chars.insert(i, chars[i]);
            }
        }
    }
    chars.into_iter().collect()
}

/// `base`, or `base` with a few mutations.
fn near(base: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    let edit = (
        any::<u8>(),
        any::<Index>(),
        prop::sample::select(MUTATION_CHARS.chars().collect::<Vec<_>>()),
    );
    (base, prop::collection::vec(edit, 0..4)).prop_map(|(s, edits)| mutate(s, edits))
}

fn valid_digest() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-f]{64}".prop_map(|h| format!("sha256:{h}")),
        "[0-9a-f]{128}".prop_map(|h| format!("sha512:{h}")),
    ]
}

/// One name component by the spec's grammar: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn component() -> impl Strategy<Value = String> {
    let separator = prop_oneof![
        Just(".".to_owned()),
        Just("_".to_owned()),
        Just("__".to_owned()),
        "-{1,3}",
    ];
    (
        "[a-z0-9]{1,6}",
        prop::collection::vec((separator, "[a-z0-9]{1,6}"), 0..3),
    )
        .prop_map(|(head, rest)| {
            rest.into_iter()
                .fold(head, |acc, (sep, alnum)| acc + &sep + &alnum)
        })
}

/// A repository name by the spec's grammar (at most 169 characters, under the 255 cap).
fn valid_name() -> impl Strategy<Value = String> {
    prop::collection::vec(component(), 1..6).prop_map(|c| c.join("/"))
}

fn valid_tag() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}"
}

// ---------------------------------------------------------------------------------------------
// Digest, Repository, Reference
// ---------------------------------------------------------------------------------------------

/// Independent oracle for digests: `sha256:` + 64 or `sha512:` + 128 lowercase hex, nothing else.
fn grammar_digest(s: &str) -> bool {
    match s.split_once(':') {
        Some((alg, hex)) => {
            matches!((alg, hex.len()), ("sha256", 64) | ("sha512", 128))
                && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        }
        None => false,
    }
}

/// Independent oracle for repository names, written differently from the parser: every component
/// starts and ends with `[a-z0-9]`, and every maximal run of other characters between them is one
/// separator of the grammar (`.`, `_`, `__` or `-+`); at most 255 characters.
fn grammar_name(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let component_ok = |c: &str| {
        c.starts_with(alnum)
            && c.ends_with(alnum)
            && c.split(alnum)
                .filter(|run| !run.is_empty())
                .all(|run| matches!(run, "." | "_" | "__") || run.chars().all(|ch| ch == '-'))
    };
    !s.is_empty() && s.len() <= 255 && s.split('/').all(component_ok)
}

/// What is accepted prints back as the input and parses again to the same value.
fn digest_round_trips(s: &str) -> Result<(), TestCaseError> {
    if let Ok(d) = Digest::parse(s) {
        prop_assert_eq!(d.to_string(), s);
        prop_assert_eq!(Digest::parse(&d.to_string()), Ok(d.clone()));
        let want_len = match d.algorithm() {
            Algorithm::Sha256 => 32,
            Algorithm::Sha512 => 64,
        };
        prop_assert_eq!(d.raw().len(), want_len);
    }
    Ok(())
}

fn repository_round_trips(s: &str) -> Result<(), TestCaseError> {
    let parsed = Repository::parse(s);
    prop_assert_eq!(
        parsed.is_ok(),
        grammar_name(s),
        "{:?}: the parser says {:?}",
        s,
        parsed
    );
    if let Ok(r) = parsed {
        prop_assert_eq!(r.to_string(), s);
        prop_assert_eq!(r.as_str(), s);
        prop_assert_eq!(Repository::parse(&r.to_string()), Ok(r.clone()));
        prop_assert!(s.len() <= 255, "{s:?} is longer than 255");
        prop_assert!(
            s.bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' | b'/')),
            "{s:?} has a character outside the grammar"
        );
    }
    Ok(())
}

fn reference_round_trips(s: &str) -> Result<(), TestCaseError> {
    if let Ok(r) = Reference::parse(s) {
        prop_assert_eq!(r.to_string(), s);
        prop_assert_eq!(Reference::parse(&r.to_string()), Ok(r.clone()));
        if let Reference::Tag(t) = &r {
            prop_assert!(!t.is_empty() && t.len() <= 128, "{t:?}");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn digest_arbitrary(s in any::<String>()) {
        digest_round_trips(&s)?;
    }

    #[test]
    fn digest_near_valid(s in near(valid_digest())) {
        digest_round_trips(&s)?;
        prop_assert_eq!(Digest::parse(&s).is_ok(), grammar_digest(&s), "{:?}", s);
    }

    #[test]
    fn digest_valid_is_accepted(s in valid_digest()) {
        let d = Digest::parse(&s).map_err(TestCaseError::fail)?;
        prop_assert_eq!(d.to_string(), s);
    }

    #[test]
    fn digest_other_spellings_are_refused(
        hex in "[0-9a-f]{64}",
        at in any::<Index>(),
        alg in prop_oneof![Just("SHA256"), Just("md5"), Just("sha384"), Just("sha256+b64"), Just("")],
    ) {
        // One hex letter uppercased is another string, not the same digest.
        let letters: Vec<usize> = hex
            .char_indices()
            .filter(|(_, c)| c.is_ascii_alphabetic())
            .map(|(i, _)| i)
            .collect();
        if !letters.is_empty() {
            let i = letters[at.index(letters.len())];
            let mut upper = hex.clone();
            upper[i..=i].make_ascii_uppercase();
            prop_assert!(Digest::parse(&format!("sha256:{upper}")).is_err(), "{}", upper);
        }
        prop_assert!(Digest::parse(&format!("{alg}:{hex}")).is_err(), "algorithm {:?}", alg);
        prop_assert!(Digest::parse(&format!("sha256{hex}")).is_err(), "no colon");
        prop_assert!(Digest::parse(&format!("sha256:{}", &hex[1..])).is_err(), "63 hex");
        prop_assert!(Digest::parse(&format!("sha512:{hex}")).is_err(), "sha512 of 64 hex");
    }

    #[test]
    fn repository_arbitrary(s in any::<String>()) {
        repository_round_trips(&s)?;
    }

    #[test]
    fn repository_near_valid(s in near(valid_name())) {
        repository_round_trips(&s)?;
    }

    #[test]
    fn repository_valid_is_accepted(s in valid_name()) {
        let r = Repository::parse(&s).map_err(TestCaseError::fail)?;
        prop_assert_eq!(r.as_str(), s.as_str());
        prop_assert_eq!(r.depth(), s.split('/').count());
    }

    #[test]
    fn repository_broken_by_construction_is_refused(
        name in valid_name(),
        at in any::<Index>(),
        poison in prop_oneof![
            Just("A"), Just("//"), Just(".."), Just("___"), Just("%2F"), Just("%2e%2e"),
            Just(":"), Just("@"), Just(" "), Just("\0"), Just("é"), Just("/../"), Just("._"),
        ],
    ) {
        // Inserted at a character boundary anywhere, each of these breaks the grammar.
        let i = at.index(name.len() + 1);
        let s = format!("{}{poison}{}", &name[..i], &name[i..]);
        prop_assert!(Repository::parse(&s).is_err(), "{:?} was accepted", s);
        for s in [format!("/{name}"), format!("{name}/"), format!("-{name}"), format!("{name}.")] {
            prop_assert!(Repository::parse(&s).is_err(), "{:?} was accepted", s);
        }
    }

    #[test]
    fn repository_length_cap(n in 1usize..400, slashes in any::<bool>()) {
        // `a`, `aa`, … or `a/a/…/a`, exactly n characters.
        let s: String = (0..n)
            .map(|i| if slashes && i % 2 == 1 && i + 1 < n { '/' } else { 'a' })
            .collect();
        prop_assert_eq!(s.len(), n);
        prop_assert_eq!(Repository::parse(&s).is_ok(), n <= 255, "{} characters", n);
    }

    #[test]
    fn reference_arbitrary(s in any::<String>()) {
        reference_round_trips(&s)?;
    }

    #[test]
    fn reference_near_valid(s in near(prop_oneof![valid_tag(), valid_digest()])) {
        reference_round_trips(&s)?;
        // A string without `:` is a tag, and a tag is accepted exactly by its grammar.
        if !s.contains(':') {
            let b = s.as_bytes();
            let want = !b.is_empty()
                && b.len() <= 128
                && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
                && b.iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
            prop_assert_eq!(Reference::parse(&s).is_ok(), want, "{:?}", s);
        }
    }

    #[test]
    fn reference_valid_is_accepted(tag in valid_tag(), digest in valid_digest()) {
        prop_assert_eq!(Reference::parse(&tag), Ok(Reference::Tag(tag.clone())));
        let d = Digest::parse(&digest).map_err(TestCaseError::fail)?;
        prop_assert_eq!(Reference::parse(&digest), Ok(Reference::Digest(d)));
    }

    #[test]
    fn reference_bad_tags_are_refused(
        tag in "[a-zA-Z0-9._-]{0,200}",
        lead in prop_oneof![Just('.'), Just('-')],
    ) {
        prop_assert!(Reference::parse(&format!("{lead}{tag}")).is_err(), "leading {:?}", lead);
        let long = format!("a{tag}{}", "b".repeat(128));
        prop_assert!(Reference::parse(&long).is_err(), "{} characters", long.len());
    }
}

// ---------------------------------------------------------------------------------------------
// WWW-Authenticate
// ---------------------------------------------------------------------------------------------

/// A quoted-string for `v`: `\` and `"` escaped.
fn quote(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Values full of what breaks naive parsers: commas, spaces, quotes, backslashes, `=`.
fn param_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,40}",
        "[a-z:/,= \"\\\\]{0,30}",
        "\\PC{0,20}",
        Just("repository:a/b:pull,push".to_owned()),
        Just(String::new()),
    ]
}

/// Optional whitespace, as RFC 7235's BWS and OWS allow.
fn ws() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just(""), Just(" "), Just("  "), Just("\t")]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn challenge_arbitrary(s in any::<String>()) {
        for c in challenge::parse(&s) {
            prop_assert!(!c.scheme.is_empty());
            prop_assert_eq!(c.scheme.to_ascii_lowercase(), c.scheme.clone());
        }
    }

    #[test]
    fn challenge_header_alphabet(s in near("[A-Za-z =,\"\\\\\t!#$%&'*+.^_`|~-]{0,80}")) {
        let _ = challenge::parse(&s);
    }

    #[test]
    fn challenge_bearer_parameters_come_back_exactly(
        realm in param_value(),
        service in param_value(),
        scope in param_value(),
        scheme in prop_oneof![Just("Bearer"), Just("bearer"), Just("BEARER")],
        names in prop_oneof![
            Just(["realm", "service", "scope"]),
            Just(["Realm", "SERVICE", "Scope"]),
        ],
        (w1, w2, w3, w4) in (ws(), ws(), ws(), ws()),
        basic_first in any::<bool>(),
    ) {
        let [n_realm, n_service, n_scope] = names;
        let header = format!(
            "{scheme} {n_realm}{w1}={w2}{},{w3}{n_service}={},{w4}{n_scope}{w1}={}",
            quote(&realm),
            quote(&service),
            quote(&scope)
        );
        let header = if basic_first {
            format!("Basic realm={}, {header}", quote(&realm))
        } else {
            header
        };
        let parsed = challenge::parse(&header);
        let want_len = if basic_first { 2 } else { 1 };
        prop_assert_eq!(parsed.len(), want_len, "{}: {:?}", header, parsed);
        let bearer = parsed.last().unwrap();
        prop_assert_eq!(&bearer.scheme, "bearer");
        let want: Vec<(String, String)> = vec![
            ("realm".into(), realm.clone()),
            ("service".into(), service.clone()),
            ("scope".into(), scope.clone()),
        ];
        prop_assert_eq!(&bearer.params, &want, "{}", header);
        if basic_first {
            prop_assert_eq!(&parsed[0].scheme, "basic");
            prop_assert_eq!(parsed[0].param("realm"), Some(realm.as_str()));
        }
    }

    #[test]
    fn challenge_mutated_bearer_does_not_panic(
        header in near(
            (param_value(), param_value(), param_value()).prop_map(|(r, s, sc)| {
                format!("Bearer realm={},service={},scope={}", quote(&r), quote(&s), quote(&sc))
            })
        )
    ) {
        let _ = challenge::parse(&header);
    }
}

// ---------------------------------------------------------------------------------------------
// Range
// ---------------------------------------------------------------------------------------------

fn range_number() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..1000).prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        Just(u64::MAX.to_string()),
        Just("18446744073709551616".to_owned()), // u64::MAX + 1
        "[0-9]{20,40}",
        Just(String::new()),
        Just("+1".to_owned()),
        Just("0x10".to_owned()),
    ]
}

fn near_range_header() -> impl Strategy<Value = String> {
    let one = (range_number(), range_number()).prop_map(|(a, b)| format!("{a}-{b}"));
    let unit = prop_oneof![
        Just("bytes="),
        Just("bytes= "),
        Just(" bytes="),
        Just("items=")
    ];
    near(
        (unit, prop::collection::vec(one, 1..4))
            .prop_map(|(unit, parts)| format!("{unit}{}", parts.join(","))),
    )
}

/// The ranges `parse` can return: `FromTo` in order, `Suffix` of at least one byte.
fn parsable_byte_range() -> impl Strategy<Value = ByteRange> {
    any_byte_range().prop_filter_map("not produced by parse", |r| match r {
        ByteRange::FromTo(s, e) if s > e => Some(ByteRange::FromTo(e, s)),
        ByteRange::Suffix(0) => None,
        r => Some(r),
    })
}

fn any_byte_range() -> impl Strategy<Value = ByteRange> {
    let n = prop_oneof![0u64..64, any::<u64>(), Just(u64::MAX), Just(u64::MAX - 1)];
    prop_oneof![
        n.clone().prop_map(ByteRange::From),
        (n.clone(), n.clone()).prop_map(|(a, b)| ByteRange::FromTo(a, b)),
        n.prop_map(ByteRange::Suffix),
    ]
}

fn blob_size() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..64, any::<u64>(), Just(u64::MAX)]
}

/// A resolved range lies inside the blob.
fn resolves_inside(r: ByteRange, size: u64) -> Result<(), TestCaseError> {
    if let Some((first, last)) = r.resolve(size) {
        prop_assert!(
            first <= last && last < size,
            "{r:?} of {size} → {first}..={last}"
        );
    }
    Ok(())
}

/// The parts `ranges` resolves to within `size` bytes cover exactly the bytes some range asks for
/// (small sizes are checked byte by byte), and no two of them overlap or touch.
fn parts_cover_exactly(ranges: &range::Ranges, size: u64) -> Result<(), TestCaseError> {
    let parts = ranges.resolve(size);
    for (i, &(f, l)) in parts.iter().enumerate() {
        prop_assert!(f <= l && l < size, "{parts:?} of {size}");
        for &(g, m) in &parts[i + 1..] {
            prop_assert!(l + 1 < g || m + 1 < f, "{parts:?} overlap or touch");
        }
    }
    if size <= 4096 {
        for byte in 0..size {
            let asked = ranges
                .list()
                .iter()
                .any(|r| r.resolve(size).is_some_and(|(f, l)| f <= byte && byte <= l));
            let sent = parts
                .iter()
                .filter(|&&(f, l)| f <= byte && byte <= l)
                .count();
            prop_assert_eq!(sent, usize::from(asked), "byte {} of {}", byte, size);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn range_arbitrary(s in any::<String>(), size in blob_size()) {
        if let Ok(Some(ranges)) = range::parse(&s) {
            for r in ranges.list() {
                resolves_inside(*r, size)?;
            }
            parts_cover_exactly(&ranges, size)?;
        }
    }

    #[test]
    fn range_near_valid(s in near_range_header(), size in blob_size()) {
        if let Ok(Some(ranges)) = range::parse(&s) {
            for r in ranges.list() {
                resolves_inside(*r, size)?;
            }
            parts_cover_exactly(&ranges, size)?;
            // What is accepted is what the door would send upstream, and that parses back.
            prop_assert_eq!(range::parse(&ranges.header()), Ok(Some(ranges.clone())));
        }
    }

    /// Lists of ranges: the coalesced parts are exactly the bytes asked for, each once.
    #[test]
    fn range_lists_cover_exactly(
        list in proptest::collection::vec(parsable_byte_range(), 1..8),
        size in 0u64..64,
    ) {
        let specs: Vec<String> = list.iter().map(|r| r.header()[6..].to_owned()).collect();
        let header = format!("bytes={}", specs.join(","));
        let ranges = range::parse(&header).unwrap().unwrap();
        parts_cover_exactly(&ranges, size)?;
    }

    #[test]
    fn range_resolve_stays_inside(r in parsable_byte_range(), size in blob_size()) {
        resolves_inside(r, size)?;
        // And is exactly what was asked for, clipped to the blob.
        match (r, r.resolve(size)) {
            (ByteRange::From(s), got) => prop_assert_eq!(got, (s < size).then(|| (s, size - 1))),
            (ByteRange::FromTo(s, e), Some((f, l))) => prop_assert_eq!((f, l), (s, e.min(size - 1))),
            (ByteRange::Suffix(n), Some((f, l))) => {
                prop_assert_eq!(l - f + 1, n.min(size));
                prop_assert_eq!(l, size - 1);
            }
            (_, None) => {}
        }
    }

    /// `ByteRange`'s variants are public, so `resolve` must hold for values `parse` never makes
    /// (`FromTo(5, 1)`, `Suffix(0)`) too.
    #[test]
    fn range_resolve_of_any_value_stays_inside(r in any_byte_range(), size in blob_size()) {
        resolves_inside(r, size)?;
    }

    #[test]
    fn range_valid_is_accepted(a in any::<u64>(), b in any::<u64>()) {
        let (s, e) = (a.min(b), a.max(b));
        let one = |h: String| range::parse(&h).map(|r| r.and_then(|r| r.single()));
        prop_assert_eq!(one(format!("bytes={s}-{e}")), Ok(Some(ByteRange::FromTo(s, e))));
        prop_assert_eq!(one(format!("bytes={a}-")), Ok(Some(ByteRange::From(a))));
        if a > 0 {
            prop_assert_eq!(one(format!("bytes=-{a}")), Ok(Some(ByteRange::Suffix(a))));
        }
        if s < e {
            prop_assert!(range::parse(&format!("bytes={e}-{s}")).is_err(), "backwards");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------------------------

fn door_config() -> Config {
    Config::load(|k| match k {
        "UPSTREAMS" => Some(
            r#"{"docker.io": {"url": "https://registry-1.docker.io"},
                "ghcr.io": {"url": "https://ghcr.io"},
                "127.0.0.1:5000": {"url": "http://127.0.0.1:5000"}}"#
                .into(),
        ),
        "HOSTS" => Some(r#"{"ghcr.example.com": "ghcr.io"}"#.into()),
        _ => None,
    })
    .expect("the test configuration loads")
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(&[
            "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "get",
            "",
        ][..]).prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

/// Paths near the door's endpoints: names, registries and references from the grammars, mutated.
fn near_path() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        valid_name(),
        (
            prop::sample::select(
                &[
                    "docker.io",
                    "ghcr.io",
                    "127.0.0.1:5000",
                    "quay.io",
                    "localhost"
                ][..]
            ),
            valid_name(),
        )
            .prop_map(|(r, n)| format!("{r}/{n}")),
    ];
    let tail = prop_oneof![
        valid_tag().prop_map(|t| format!("manifests/{t}")),
        valid_digest().prop_map(|d| format!("manifests/{d}")),
        valid_digest().prop_map(|d| format!("blobs/{d}")),
        valid_digest().prop_map(|d| format!("referrers/{d}")),
        Just("tags/list".to_owned()),
        Just("_catalog".to_owned()),
    ];
    let endpoint = prop_oneof![
        4 => (name, tail).prop_map(|(n, t)| format!("/v2/{n}/{t}")),
        1 => valid_digest().prop_map(|d| format!("/_blob/{}", d.replacen(':', "/", 1))),
        1 => prop::sample::select(&["/v2", "/v2/", "/token", "/", "//v2/x", "/v2/_catalog"][..])
            .prop_map(str::to_owned),
    ];
    near(endpoint)
}

fn near_query() -> impl Strategy<Value = Option<String>> {
    let pair = prop_oneof![
        prop::sample::select(&["ghcr.io", "docker.io", "quay.io", "", "%ZZ", "a%00"][..])
            .prop_map(|v| format!("ns={v}")),
        prop_oneof![
            range_number(),
            Just("-1".to_owned()),
            Just("abc".to_owned())
        ]
        .prop_map(|v| format!("n={v}")),
        "[ -~]{0,12}".prop_map(|v| format!("last={v}")),
        "[ -~]{0,12}".prop_map(|v| format!("artifactType={v}")),
    ];
    prop_oneof![
        1 => Just(None),
        3 => near(prop::collection::vec(pair, 0..4).prop_map(|p| p.join("&"))).prop_map(Some),
        1 => any::<String>().prop_map(Some),
    ]
}

fn host() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("door.example.com".to_owned())),
        Just(Some("ghcr.example.com:8443".to_owned())),
        any::<String>().prop_map(Some),
    ]
}

/// Routing answers a route or a client error (4xx) with a well-formed OCI body; never panics.
fn routes_or_refuses(
    cfg: &Config,
    method: &str,
    host: Option<&str>,
    path: &str,
    query: Option<&str>,
) -> Result<(), TestCaseError> {
    // Spelled with `..Default::default()` so fields added to `RequestLine` later keep their defaults.
    #[allow(clippy::needless_update)]
    let line = RequestLine {
        method,
        host,
        path,
        query,
        ..RequestLine::default()
    };
    if let Err(e) = route(cfg, line) {
        prop_assert!(
            (400..500).contains(&e.status),
            "{method} {path:?} ?{query:?} host {host:?} → {e}"
        );
        let body: serde_json::Value = serde_json::from_slice(&e.body())
            .map_err(|err| TestCaseError::fail(format!("{e}: body is not JSON: {err}")))?;
        prop_assert_eq!(&body["errors"][0]["code"], e.code.as_str());
        prop_assert!(body["errors"][0]["message"].is_string());
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn route_arbitrary(
        method in method(),
        host in host(),
        path in any::<String>(),
        query in prop::option::of(any::<String>()),
    ) {
        let cfg = door_config();
        routes_or_refuses(&cfg, &method, host.as_deref(), &path, query.as_deref())?;
    }

    #[test]
    fn route_near_valid(
        method in method(),
        host in host(),
        path in near_path(),
        query in near_query(),
    ) {
        let cfg = door_config();
        routes_or_refuses(&cfg, &method, host.as_deref(), &path, query.as_deref())?;
    }
}

// ---------------------------------------------------------------------------------------------
// URLs: what the door's SSRF rules see is what `fetch` is handed
// ---------------------------------------------------------------------------------------------

/// A scheme, with the separators the standard tolerates after it.
fn url_scheme() -> impl Strategy<Value = String> {
    let scheme = prop_oneof![
        4 => prop::sample::select(&["http", "https", "HTTP", "hTtPs"][..]),
        1 => prop::sample::select(&["ftp", "ws", "file", "mailto", "h-t+t.p"][..]),
    ];
    let separator = prop_oneof![
        4 => Just("://"),
        1 => prop::sample::select(&[":", ":/", ":///", ":\\\\", ":/\\"][..]),
    ];
    (scheme, separator).prop_map(|(s, sep)| format!("{s}{sep}"))
}

/// Hosts: ASCII domains (with escapes and near misses), IPv4 in the standard's forms, IPv6.
fn url_host() -> impl Strategy<Value = String> {
    let label = prop_oneof![
        8 => "[a-zA-Z0-9_~!$&'()*+,;=\"{}`-]{1,6}",
        1 => "%4[1-9]|%2[eE]|%25|%zz|[ ^|<>]",
    ];
    let domain = prop::collection::vec(label, 1..4).prop_map(|l| l.join("."));
    let v4_part = prop_oneof![
        "[0-9]{1,3}",
        "0[0-9]{0,3}",
        "0[xX][0-9a-fA-F]{0,9}",
        "[0-9]{9,11}",
    ];
    let ipv4 = (prop::collection::vec(v4_part, 1..6), any::<bool>()).prop_map(|(p, dot)| {
        let mut s = p.join(".");
        if dot {
            s.push('.');
        }
        s
    });
    let hex = "[0-9a-fA-F]{1,4}";
    let dotted = "(25[0-5]|1?[0-9]{1,2})(\\.(25[0-5]|1?[0-9]{1,2}|0[0-9])){2,4}";
    let ipv6 = prop_oneof![
        prop::collection::vec(hex, 8).prop_map(|p| p.join(":")),
        (
            prop::collection::vec(hex, 0..4),
            prop::collection::vec(hex, 0..4)
        )
            .prop_map(|(a, b)| format!("{}::{}", a.join(":"), b.join(":"))),
        (prop::collection::vec(hex, 0..4), dotted)
            .prop_map(|(a, v4)| format!("{}::{v4}", a.join(":"))),
        prop::collection::vec(prop_oneof![hex, Just(String::new()), dotted], 1..10)
            .prop_map(|p| p.join(":")),
    ];
    prop_oneof![
        4 => domain,
        1 => domain_with_number(),
        3 => ipv4,
        3 => ipv6.prop_map(|a| format!("[{a}]")),
        1 => Just(String::new()),
    ]
}

/// A domain whose last label looks like a number: an IPv4 address or an error.
fn domain_with_number() -> impl Strategy<Value = String> {
    ("[a-z]{1,4}", "[0-9]{1,3}|0[xX][0-9a-f]{0,3}|0[xX]")
        .prop_map(|(name, number)| format!("{name}.{number}"))
}

fn url_userinfo() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just(String::new()),
        1 => "[a-z:@%/ é]{0,8}".prop_map(|u| format!("{u}@")),
    ]
}

fn url_port() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just(String::new()),
        1 => Just(":".to_owned()),
        1 => prop::sample::select(&[":80", ":443", ":0", ":00080", ":65535", ":65536", ":8a"][..])
            .prop_map(str::to_owned),
        1 => (0u32..70000).prop_map(|p| format!(":{p}")),
    ]
}

/// A path, query and fragment with dot segments, backslashes and what must be escaped.
fn url_rest() -> impl Strategy<Value = String> {
    let segment = "\\.|\\.\\.|%2[eE]|\\.%2[eE]|%2[eE]%2[eE]|[a-zA-Z0-9%'\"<>`{}^| é\t-]{0,5}";
    let path = prop::collection::vec((prop::sample::select(&["/", "\\"][..]), segment), 0..5)
        .prop_map(|s| {
            s.into_iter()
                .map(|(sep, seg)| format!("{sep}{seg}"))
                .collect::<String>()
        });
    let query = prop::option::of("[a-zA-Z0-9=&+%'\"<>`#? é]{0,10}");
    let fragment = prop::option::of("[a-zA-Z0-9%'\"<>`#? é]{0,6}");
    (path, query, fragment).prop_map(|(path, query, fragment)| {
        let mut s = path;
        if let Some(q) = query {
            s = format!("{s}?{q}");
        }
        if let Some(f) = fragment {
            s = format!("{s}#{f}");
        }
        s
    })
}

fn url_absolute() -> impl Strategy<Value = String> {
    (
        url_scheme(),
        url_userinfo(),
        url_host(),
        url_port(),
        url_rest(),
    )
        .prop_map(|(scheme, user, host, port, rest)| format!("{scheme}{user}{host}{port}{rest}"))
}

/// A reference as a `Location` or `Link` carries one.
fn url_reference() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => url_absolute(),
        1 => (url_userinfo(), url_host(), url_port(), url_rest())
            .prop_map(|(u, h, p, r)| format!("//{u}{h}{p}{r}")),
        3 => url_rest(),
        1 => url_rest().prop_map(|r| r.trim_start_matches(['/', '\\']).to_owned()),
        1 => (prop::sample::select(&["http:", "https:", "HTTP:"][..]), url_rest())
            .prop_map(|(s, r)| format!("{s}{r}")),
    ]
}

/// What the SSRF rules rely on for a URL the door would fetch (`is_http`): it has a host, that
/// host is ASCII (the `idna_adapter` 1.0 stub refuses Unicode hostnames; IDNA stays out of the
/// upload), and its serialization — what `fetch` is handed and parses again — parses to the same
/// URL, so `is_private` judged the host that will be connected to.
fn fetchable_url_is_stable(
    input: &str,
    parsed: Result<url::Url, url::ParseError>,
) -> Result<(), TestCaseError> {
    let Ok(url) = parsed else {
        return Ok(());
    };
    if !is_http(&url) {
        prop_assert!(
            !matches!(url.scheme(), "http" | "https"),
            "{:?}: {}",
            input,
            url
        );
        return Ok(());
    }
    let host = url.host_str();
    prop_assert!(
        host.is_some_and(|h| !h.is_empty() && h.is_ascii()),
        "{:?}: {}",
        input,
        url
    );
    prop_assert!(
        !host.unwrap().bytes().any(|b| b.is_ascii_uppercase()),
        "{:?}: {}",
        input,
        url
    );
    let again = url::Url::parse(url.as_str());
    prop_assert_eq!(again.as_ref(), Ok(&url), "{:?}", input);
    prop_assert_eq!(is_private(&again.unwrap()), is_private(&url));
    Ok(())
}

/// IPv4 special-purpose blocks (IANA's registry, RFC 6890 and successors), written out here apart
/// from `frontdoor::upstream`'s rule: `(first address, prefix length)`.
const SPECIAL_V4: &[([u8; 4], u32)] = &[
    ([0, 0, 0, 0], 8),
    ([10, 0, 0, 0], 8),
    ([100, 64, 0, 0], 10),
    ([127, 0, 0, 0], 8),
    ([169, 254, 0, 0], 16),
    ([172, 16, 0, 0], 12),
    ([192, 0, 0, 0], 24),
    ([192, 0, 2, 0], 24),
    ([192, 88, 99, 0], 24),
    ([192, 168, 0, 0], 16),
    ([198, 18, 0, 0], 15),
    ([198, 51, 100, 0], 24),
    ([203, 0, 113, 0], 24),
    ([224, 0, 0, 0], 4),
    ([240, 0, 0, 0], 4),
];

fn special_v4(addr: u32) -> bool {
    SPECIAL_V4
        .iter()
        .any(|&(net, len)| addr >> (32 - len) == u32::from_be_bytes(net) >> (32 - len))
}

/// An IPv4 address in one of the spellings the URL standard accepts: one to four parts, the last
/// taking the remaining bytes, each in decimal, octal (`0` prefix) or hex (`0x`), maybe a final dot.
fn ipv4_spelling() -> impl Strategy<Value = (u32, String)> {
    let addr = prop_oneof![
        1 => any::<u32>(),
        // Near the special blocks, where a wrong reading matters.
        2 => (prop::sample::select(SPECIAL_V4), any::<u32>())
            .prop_map(|((net, len), low)| u32::from_be_bytes(net) | (low >> len)),
    ];
    (
        addr,
        1usize..=4,
        prop::collection::vec(0u8..3, 4),
        any::<bool>(),
    )
        .prop_map(|(addr, parts, radixes, dot)| {
            let bytes = addr.to_be_bytes();
            let mut values: Vec<u32> = bytes[..parts - 1].iter().map(|&b| u32::from(b)).collect();
            let rest = bytes[parts - 1..]
                .iter()
                .fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
            values.push(rest);
            let text: Vec<String> = values
                .iter()
                .zip(&radixes)
                .map(|(&v, radix)| match radix {
                    0 => format!("{v}"),
                    1 => format!("0{v:o}"),
                    _ => format!("0x{v:X}"),
                })
                .collect();
            let mut text = text.join(".");
            if dot {
                text.push('.');
            }
            (addr, text)
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fetchable_urls_parse_to_themselves(input in near(url_absolute())) {
        fetchable_url_is_stable(&input, url::Url::parse(&input))?;
    }

    #[test]
    fn fetchable_urls_from_any_string_parse_to_themselves(input in any::<String>()) {
        fetchable_url_is_stable(&input, url::Url::parse(&input))?;
    }

    /// A `Location` joined onto the URL that sent it.
    #[test]
    fn joined_redirects_parse_to_themselves(base in url_absolute(), input in near(url_reference())) {
        let Ok(base) = url::Url::parse(&base) else {
            return Ok(());
        };
        fetchable_url_is_stable(&input, base.join(&input))?;
    }

    /// `http://2130706433/`, `http://0x7f.1/`, `http://0177.0.0.1./`: every spelling of an
    /// address is judged as the address it is.
    #[test]
    fn every_ipv4_spelling_is_judged_by_its_address((addr, text) in ipv4_spelling(), secure in any::<bool>()) {
        let scheme = if secure { "https" } else { "http" };
        let url = url::Url::parse(&format!("{scheme}://{text}/v2/")).unwrap();
        prop_assert_eq!(url.host(), Some(url::Host::Ipv4(std::net::Ipv4Addr::from(addr))), "{}", text);
        prop_assert_eq!(is_private(&url), special_v4(addr), "{} = {}", text, url);
        // The same address inside IPv4-mapped IPv6 is judged the same.
        let mapped = url::Url::parse(&format!("{scheme}://[::ffff:{}]/", std::net::Ipv4Addr::from(addr))).unwrap();
        prop_assert_eq!(is_private(&mapped), special_v4(addr), "{}", mapped);
    }
}
