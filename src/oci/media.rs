//! Manifest media types and `Accept` negotiation.

use super::Digest;

/// What the door asks upstream for when the client sent no `Accept`: every manifest type a pull
/// client can use. Without it, registries fall back to the legacy schema 1 (or refuse).
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

    const INDEX: &str = "application/vnd.oci.image.index.v1+json";
    const DOCKER: &str = "application/vnd.docker.distribution.manifest.v2+json";

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
