//! One small module per endpoint the door answers itself or passes through: `token` (`/token`
//! and the challenge that sends clients there), `resolve`, `prewarm`, `tag_list` (`tags/list`),
//! `referrers` and `signed_blob` (`/_blob/`). The status page is `crate::status`'s. What they
//! share — an image as people write it — is here.

use super::*;

mod prewarm;
mod referrers;
mod resolve;
mod signed_blob;
mod tag_list;
mod token;

pub use prewarm::Prewarmed;

/// An image as people write it (`alpine:3.20`, `ghcr.io/acme/app@sha256:…`; no tag means
/// `latest`), as the door names it.
pub(super) fn parse_image(
    config: &Config,
    image: &str,
    host: Option<&str>,
) -> Result<(Target, Reference), RegistryError> {
    let invalid =
        |why: &str| RegistryError::new(ErrorCode::NameInvalid, format!("{image:?}: {why}"));
    let (name, reference) = match image.split_once('@') {
        Some((name, digest)) => (
            name,
            Reference::Digest(Digest::parse(digest).map_err(|e| invalid(&e))?),
        ),
        None => match image.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
            Some((name, tag)) => (name, Reference::parse(tag).map_err(|e| invalid(&e))?),
            None => (image, Reference::Tag("latest".to_owned())),
        },
    };
    Ok((resolve_name(config, name, host)?, reference))
}
