//! The coalescing layer on the miss path. The door's miss path is written once, as the fetch
//! this door would make for the object (`here`: upstream, verify, store); [`Misses`] wraps it and
//! decides where it runs — here, or at the object's owner (`crate::ports::Coalesce`), which makes
//! that same fetch once for every client asking at the same time. Nothing else in the door asks
//! whether it coalesces. Callers box `here`: a miss's state then stays out of the future of the
//! warm path, which only reads the cache.

use super::*;
use std::future::Future;

/// Where this door's cache misses are answered.
pub enum Misses<'a, C> {
    /// Fetched here: a door with no owners (host tests, no `COALESCER` binding, the cron), and
    /// every request the door makes for itself (a pre-warm walk, a resolve, the referrers and
    /// bundles `VERIFY` reads: an owner answers a client's request, as a stream).
    Here,
    /// A worker: each miss goes to its object's owner.
    ToOwners(&'a C),
    /// An object's owner: its own misses are fetched here (it is the one place that fetches
    /// them); a tag's manifest known only by digest comes from that digest's owner, so a client
    /// of the tag and one of its digest cost one upstream fetch between them.
    Owner { digests: &'a C },
}

// Manual: `derive` would require `C: Clone`/`Copy`; the variants only hold references.
impl<C> Clone for Misses<'_, C> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<C> Copy for Misses<'_, C> {}

/// How a miss was answered: by the fetch made here, or by the owner (its answer already the
/// client's, error body included).
pub enum Missed<T, S> {
    Here(T),
    Owner(Result<Reply<S>, RegistryError>),
}

impl<C: Coalesce> Misses<'_, C> {
    /// A miss of the object under `key`: `here`, or the client's request handed to the owner.
    pub async fn object<F: Future>(&self, key: &str, here: F) -> Missed<F::Output, C::Body> {
        match self {
            Misses::ToOwners(owner) => Missed::Owner(owner.forward(key).await),
            Misses::Here | Misses::Owner { .. } => Missed::Here(here.await),
        }
    }

    /// The manifest a tag names, by `digest` (`key` is its manifest key): from the digest's owner
    /// when there is one, else `here`.
    pub async fn named<F: Future>(
        &self,
        key: &str,
        target: &Target,
        digest: &Digest,
        here: F,
    ) -> Missed<F::Output, C::Body> {
        match self {
            Misses::ToOwners(owner) | Misses::Owner { digests: owner } => {
                // The door routes a `<registry>/` prefix whatever host the client used.
                let path = format!(
                    "/v2/{}/{}/manifests/{digest}",
                    target.registry, target.repository
                );
                Missed::Owner(owner.forward_path(key, &path).await)
            }
            Misses::Here => Missed::Here(here.await),
        }
    }

    /// Whether misses leave this door: then a registry known to be down is answered from the
    /// cache at once rather than queued at an owner behind its probe.
    pub fn forwards(&self) -> bool {
        matches!(self, Misses::ToOwners(_))
    }

    /// Who refreshes a cloud credential (one request at a time there, so once for the door).
    pub fn minter(&self) -> Option<&C> {
        match self {
            Misses::ToOwners(owner) | Misses::Owner { digests: owner } => Some(owner),
            Misses::Here => None,
        }
    }
}

/// The headers of a by-path request to a manifest's owner (`Coalesce::forward_path`), from the
/// client's: its credentials and the rest, less `host` (the path's `<registry>/` prefix chooses
/// the registry, whatever host the client used), `range`, and `accept` — the full one is asked,
/// as for every manifest the door caches.
pub fn path_request_headers(client: &Headers) -> Headers {
    let mut headers = Headers::new();
    for (name, value) in client.iter() {
        if !["host", "accept", "range"].contains(&name.to_ascii_lowercase().as_str()) {
            headers.append(name, value);
        }
    }
    headers.set("accept", DEFAULT_MANIFEST_ACCEPT);
    headers
}

impl<K, B, U, C> Door<'_, K, B, U, C>
where
    K: Kv,
    U: Upstream,
    B: Blobs<Body = U::Body>,
    C: Coalesce<Body = U::Body>,
{
    /// The answer to a miss: the fetch made here as it is; an owner's answer read for what it
    /// says happened there.
    pub(super) fn answered(
        &self,
        target: &Target,
        missed: Missed<Result<Reply<U::Body>, RegistryError>, U::Body>,
        outcome: &mut Outcome,
    ) -> Result<Reply<U::Body>, RegistryError> {
        let answer = match missed {
            Missed::Here(answer) => return answer,
            Missed::Owner(answer) => answer,
        };
        outcome.coalesced = true;
        let mut reply = answer?;
        self.learn_down(target, &mut reply);
        outcome.cache = Some(CacheOutcome::of_owner(reply.headers.get(CACHE_HEADER)));
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Repository;
    use futures::executor::block_on;

    /// An owner that records what it was asked.
    #[derive(Default)]
    struct Owner(RefCell<Vec<String>>);

    impl Coalesce for Owner {
        type Body = ();
        async fn forward(&self, key: &str) -> Result<Reply<()>, RegistryError> {
            self.0.borrow_mut().push(format!("forward {key}"));
            Ok(reply(200, Headers::new(), Body::Empty, false))
        }
        async fn forward_path(&self, key: &str, path: &str) -> Result<Reply<()>, RegistryError> {
            self.0.borrow_mut().push(format!("path {key} {path}"));
            Ok(reply(200, Headers::new(), Body::Empty, false))
        }
    }

    fn ran<T>(missed: Missed<T, ()>) -> Option<T> {
        match missed {
            Missed::Here(t) => Some(t),
            Missed::Owner(_) => None,
        }
    }

    #[test]
    fn a_by_path_request_keeps_the_clients_credentials_and_asks_for_every_manifest_type() {
        let mut client = Headers::new();
        for (name, value) in [
            ("Host", "door.example.com"),
            ("authorization", "Bearer t"),
            (
                "accept",
                "application/vnd.docker.distribution.manifest.v2+json",
            ),
            ("range", "bytes=0-1"),
            ("user-agent", "containerd/2.1"),
        ] {
            client.append(name, value);
        }
        let sent = path_request_headers(&client);
        let mut names: Vec<_> = sent
            .iter()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                ("accept".to_owned(), DEFAULT_MANIFEST_ACCEPT.to_owned()),
                ("authorization".to_owned(), "Bearer t".to_owned()),
                ("user-agent".to_owned(), "containerd/2.1".to_owned()),
            ]
        );
    }

    #[test]
    fn each_door_answers_its_misses_where_its_role_says() {
        let target = Target {
            registry: "docker.io".into(),
            repository: Repository::parse("library/alpine").unwrap(),
        };
        let digest = Digest::parse(&format!("sha256:{}", "a".repeat(64))).unwrap();
        let path = format!("/v2/docker.io/library/alpine/manifests/{digest}");
        // (role, object miss ran here, named miss ran here, forwards, has a minter, owner's log)
        let owner = Owner::default();
        let here: Misses<Owner> = Misses::Here;
        let cases = [
            (here, true, true, false, false, vec![]),
            (
                Misses::ToOwners(&owner),
                false,
                false,
                true,
                true,
                vec!["forward k".to_owned(), format!("path m {path}")],
            ),
            (
                Misses::Owner { digests: &owner },
                true,
                false,
                false,
                true,
                vec![format!("path m {path}")],
            ),
        ];
        for (misses, object_here, named_here, forwards, minter, asked) in cases {
            owner.0.borrow_mut().clear();
            let object = block_on(misses.object("k", async { 1 }));
            let named = block_on(misses.named("m", &target, &digest, async { 2 }));
            assert_eq!(ran(object), object_here.then_some(1));
            assert_eq!(ran(named), named_here.then_some(2));
            assert_eq!(misses.forwards(), forwards);
            assert_eq!(misses.minter().is_some(), minter);
            assert_eq!(*owner.0.borrow(), asked);
        }
    }
}
