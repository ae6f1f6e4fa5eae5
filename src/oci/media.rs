//! Manifest media types and `Accept` negotiation.

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
