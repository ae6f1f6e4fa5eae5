//! Manifest media types and `Accept` negotiation. The only place the door spells a media type.

use super::Digest;

/// The OCI image index (a multi-platform image).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// The OCI image manifest type: what a manifest that says nothing about its type is served as
/// (the image spec makes `mediaType` a SHOULD, and registries that omit it send this type).
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker's manifest list (schema 2), the index's predecessor.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker's image manifest (schema 2).
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// What the door's own JSON answers are: OCI error bodies, tokens, status, tag lists.
pub const JSON: &str = "application/json";

/// What the door asks upstream for when the client sent no `Accept`: every manifest type a pull
/// client can use. Without it, registries fall back to the legacy schema 1 (or refuse). Spelled
/// out because a `const` cannot join the constants above; a test checks it is exactly them.
pub const DEFAULT_MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Whether a manifest of `media_type` may be served to a client that sent `accept` (the values of
/// all its `Accept` headers, comma-joined). No `Accept`, `*/*` or `application/*` accepts anything;
/// parameters such as `;q=0.5` are ignored, as registries do.
pub fn acceptable(media_type: &str, accept: Option<&str>) -> bool {
    let Some(accept) = accept else { return true };
    let mut any = false;
    for item in accept.split(',') {
        let ty = item.split(';').next().unwrap_or("").trim();
        if ty.is_empty() {
            continue;
        }
        any = true;
        if ty == "*/*" || ty == "application/*" || ty.eq_ignore_ascii_case(media_type) {
            return true;
        }
    }
    !any
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = OCI_INDEX;
    const DOCKER: &str = DOCKER_MANIFEST;

    #[test]
    fn the_default_accept_is_the_four_manifest_types() {
        assert_eq!(
            DEFAULT_MANIFEST_ACCEPT,
            [
                OCI_INDEX,
                OCI_MANIFEST,
                DOCKER_MANIFEST_LIST,
                DOCKER_MANIFEST
            ]
            .join(", ")
        );
    }

    #[test]
    fn negotiation_table() {
        let cases: &[(&str, Option<&str>, bool)] = &[
            (INDEX, None, true),
            (INDEX, Some(""), true),
            (INDEX, Some("*/*"), true),
            (INDEX, Some(DEFAULT_MANIFEST_ACCEPT), true),
            (INDEX, Some(DOCKER), false),
            (DOCKER, Some(&format!("{INDEX}; q=0.5 ,{DOCKER};q=1")), true),
            (DOCKER, Some("application/json"), false),
        ];
        for (ty, accept, want) in cases {
            assert_eq!(acceptable(ty, *accept), *want, "{ty} vs {accept:?}");
        }
    }
}

/// What a manifest points at: the manifests an index lists (`manifests[].digest`) and the blobs an
/// image manifest needs (`config.digest`, `layers[].digest`), in document order, each once.
/// Anything unparsable points at nothing.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct References {
    pub manifests: Vec<Digest>,
    pub blobs: Vec<Digest>,
}

impl References {
    /// Read through `serde_json::Value`, which the door parses anyway: derived structs would add
    /// a deserializer of their own to the upload. As strict as those were: `manifests` and
    /// `layers` must be lists (or absent), `config` an object (or absent or null), and each
    /// descriptor an object with a string `digest`; otherwise the manifest points at nothing.
    pub fn of(manifest: &[u8]) -> References {
        use serde_json::Value;
        let Ok(Value::Object(doc)) = serde_json::from_slice::<Value>(manifest) else {
            return References::default();
        };
        fn digest(descriptor: &Value) -> Option<&str> {
            descriptor.as_object()?.get("digest")?.as_str()
        }
        let list = |name: &str| -> Option<Vec<&str>> {
            match doc.get(name) {
                None => Some(Vec::new()),
                Some(list) => list.as_array()?.iter().map(digest).collect(),
            }
        };
        let config = match doc.get("config") {
            None | Some(Value::Null) => Some(None),
            Some(descriptor) => digest(descriptor).map(Some),
        };
        let (Some(manifests), Some(config), Some(layers)) =
            (list("manifests"), config, list("layers"))
        else {
            return References::default();
        };
        let digests = |list: &mut dyn Iterator<Item = &str>| -> Vec<Digest> {
            let mut out: Vec<Digest> = Vec::new();
            for d in list {
                if let Ok(d) = Digest::parse(d) {
                    if !out.contains(&d) {
                        out.push(d);
                    }
                }
            }
            out
        };
        References {
            manifests: digests(&mut manifests.into_iter()),
            blobs: digests(&mut config.into_iter().chain(layers)),
        }
    }
}

#[cfg(test)]
mod references_tests {
    use super::*;
    use crate::oci::Algorithm;

    #[test]
    fn index_and_image() {
        let a = Digest::of(Algorithm::Sha256, b"a");
        let b = Digest::of(Algorithm::Sha256, b"b");
        let index =
            format!(r#"{{"schemaVersion":2,"manifests":[{{"digest":"{a}"}},{{"digest":"{b}"}}]}}"#);
        assert_eq!(
            References::of(index.as_bytes()).manifests,
            vec![a.clone(), b.clone()]
        );
        let image = format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"{a}"}},"layers":[{{"digest":"{b}"}},{{"digest":"{a}"}},{{"digest":"nope"}}]}}"#
        );
        let refs = References::of(image.as_bytes());
        assert_eq!(refs.blobs, vec![a, b]);
        assert!(refs.manifests.is_empty());
        assert_eq!(References::of(b"not json"), References::default());
    }

    #[test]
    fn a_malformed_manifest_points_at_nothing() {
        let a = Digest::of(Algorithm::Sha256, b"a");
        let nothing: &[&str] = &[
            r#"[]"#,
            r#"{"manifests":null}"#,
            r#"{"layers":{}}"#,
            r#"{"layers":[{"size":1}]}"#,
            r#"{"layers":[{"digest":1}]}"#,
            r#"{"config":"x"}"#,
        ];
        for doc in nothing {
            assert_eq!(
                References::of(doc.as_bytes()),
                References::default(),
                "{doc}"
            );
        }
        let bare = format!(r#"{{"config":null,"layers":[{{"digest":"{a}","size":1}}]}}"#);
        assert_eq!(References::of(bare.as_bytes()).blobs, vec![a]);
    }
}

/// The media type a manifest may be served with, from a `Content-Type` value or a manifest's
/// `mediaType` field: the type without parameters, lowercased — or `None` when it must not be.
///
/// The door serves manifests from its own origin (that of `/token` and the status page), so what
/// upstream says a manifest is must never become active content there. Accepted:
/// - RFC 6838 §4.2 syntax: `type "/" subtype`, each a `restricted-name` (1 to 127 characters, the
///   first a letter or digit, the rest letters, digits and ``!#$&-^_.+``). That excludes CR, LF,
///   NUL, spaces and anything else a response header cannot carry or a browser might re-read.
/// - the `application` type only: never `text/*` (`text/html` runs scripts), `image/*` (SVG does).
/// - a JSON subtype only: `json`, `…+json`, or schema 1's `…+prettyjws`. Every manifest and index
///   type of the OCI image spec and of Docker's schemas is one of those; other `application`
///   types (`xhtml+xml`, any `+xml`, `javascript`, `pdf`) are documents a browser renders or runs.
///
/// Parameters (`; charset=utf-8`) are dropped; a value with a control character or a non-ASCII
/// byte anywhere — parameters included — is refused whole.
pub fn manifest_media_type(value: &str) -> Option<String> {
    if value.bytes().any(|b| b.is_ascii_control() || !b.is_ascii()) {
        return None;
    }
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim_matches([' ', '\t']);
    let (ty, subtype) = essence.split_once('/')?;
    if !ty.eq_ignore_ascii_case("application") || !restricted_name(subtype) {
        return None;
    }
    let subtype = subtype.to_ascii_lowercase();
    let json = subtype == "json" || subtype.ends_with("+json") || subtype.ends_with("+prettyjws");
    json.then(|| format!("application/{subtype}"))
}

/// RFC 6838 §4.2 `restricted-name`.
fn restricted_name(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=127).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&c))
}

/// Upstream sent a manifest whose type, from its `Content-Type` and its own `mediaType`, cannot be
/// served (see [`manifest_media_type`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnusableMediaType;

/// The type to serve a manifest with: upstream's `Content-Type` when it is a valid manifest type,
/// else the manifest's own `mediaType` when that is, else — only when upstream said nothing about
/// the type (no header, or the generic `application/octet-stream` / `text/plain` some registries
/// send, and no `mediaType`) — [`OCI_MANIFEST`]. Anything else is refused: a `Content-Type` of
/// `text/html` with no usable `mediaType`, or a `mediaType` that is not a manifest type.
pub fn serving_type(
    content_type: Option<&str>,
    manifest: &[u8],
) -> Result<String, UnusableMediaType> {
    if let Some(t) = content_type.and_then(manifest_media_type) {
        return Ok(t);
    }
    let declared = serde_json::from_slice::<serde_json::Value>(manifest)
        .ok()
        .and_then(|doc| doc.get("mediaType").cloned());
    match declared {
        Some(serde_json::Value::String(t)) => manifest_media_type(&t).ok_or(UnusableMediaType),
        Some(_) => Err(UnusableMediaType),
        None if content_type.is_none_or(says_nothing) => Ok(OCI_MANIFEST.to_owned()),
        None => Err(UnusableMediaType),
    }
}

/// A `Content-Type` that carries no information about a manifest: absent in effect.
pub fn says_nothing(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.is_empty()
        || essence.eq_ignore_ascii_case("application/octet-stream")
        || essence.eq_ignore_ascii_case("text/plain")
}

#[cfg(test)]
mod media_type_tests {
    use super::*;

    #[test]
    fn manifest_media_types_table() {
        let cases: &[(&str, Option<&str>)] = &[
            (OCI_MANIFEST, Some(OCI_MANIFEST)),
            (
                "application/vnd.oci.image.index.v1+json",
                Some("application/vnd.oci.image.index.v1+json"),
            ),
            (
                "application/vnd.docker.distribution.manifest.v2+json; charset=utf-8",
                Some("application/vnd.docker.distribution.manifest.v2+json"),
            ),
            (
                "Application/Vnd.Docker.Distribution.Manifest.V1+PrettyJWS",
                Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
            ),
            ("application/json", Some("application/json")),
            (" application/json ", Some("application/json")),
            ("text/html", None),
            ("text/html; charset=utf-8", None),
            ("TEXT/HTML", None),
            ("text/plain", None),
            ("text/json", None),
            ("image/svg+xml", None),
            ("application/xhtml+xml", None),
            ("application/vnd.evil+xml", None),
            ("application/xml", None),
            ("application/javascript", None),
            ("application/pdf", None),
            ("application/octet-stream", None),
            (
                "application/vnd.oci.image.manifest.v1+json\r\nSet-Cookie: x=1",
                None,
            ),
            ("application/vnd.oci.image.manifest.v1+json\r", None),
            ("application/vnd.oci.image.manifest.v1+json\n", None),
            ("application/vnd.oci.image.manifest.v1+json\0", None),
            ("application/json; x=\"\r\n\"", None),
            ("application/vnd oci+json", None),
            ("application/vnd.oci.image.manifest.v1+jsón", None),
            ("application/", None),
            ("/json", None),
            ("application/json/x", None),
            ("application/.json", None),
            ("application/+json", None),
            ("application/<script>+json", None),
            ("application/vnd.\"x\"+json", None),
            ("", None),
        ];
        for (value, want) in cases {
            assert_eq!(manifest_media_type(value).as_deref(), *want, "{value:?}");
        }
        let long = format!("application/{}+json", "a".repeat(122));
        assert!(manifest_media_type(&long).is_some(), "127 characters");
        let longer = format!("application/{}+json", "a".repeat(123));
        assert!(manifest_media_type(&longer).is_none(), "128 characters");
    }

    #[test]
    fn serving_type_table() {
        let docker = "application/vnd.docker.distribution.manifest.v2+json";
        let with = |t: &str| format!(r#"{{"schemaVersion":2,"mediaType":"{t}"}}"#);
        let bare = br#"{"schemaVersion":2}"#.as_slice();
        let ok = |t: &str| Ok(t.to_owned());
        type Case<'a> = (Option<&'a str>, Vec<u8>, Result<String, UnusableMediaType>);
        let cases: &[Case] = &[
            (Some(docker), with(OCI_MANIFEST).into_bytes(), ok(docker)),
            (Some("text/html"), with(docker).into_bytes(), ok(docker)),
            (Some("text/html"), bare.to_vec(), Err(UnusableMediaType)),
            (Some("a\r\nb"), with(docker).into_bytes(), ok(docker)),
            (Some("a\r\nb"), bare.to_vec(), Err(UnusableMediaType)),
            (None, with(docker).into_bytes(), ok(docker)),
            (None, bare.to_vec(), ok(OCI_MANIFEST)),
            (
                Some("application/octet-stream"),
                bare.to_vec(),
                ok(OCI_MANIFEST),
            ),
            (
                Some("text/plain; charset=utf-8"),
                bare.to_vec(),
                ok(OCI_MANIFEST),
            ),
            (None, with("text/html").into_bytes(), Err(UnusableMediaType)),
            (
                Some("text/plain"),
                with("text/html").into_bytes(),
                Err(UnusableMediaType),
            ),
            (None, br#"{"mediaType":7}"#.to_vec(), Err(UnusableMediaType)),
            (None, b"not json".to_vec(), ok(OCI_MANIFEST)),
            (
                Some("text/html"),
                b"<script>".to_vec(),
                Err(UnusableMediaType),
            ),
        ];
        for (header, body, want) in cases {
            assert_eq!(
                &serving_type(*header, body),
                want,
                "{header:?} {}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
