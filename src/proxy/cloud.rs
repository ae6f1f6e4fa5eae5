//! Upstreams with minted cloud credentials (`crate::upstream::cloud`): the credential comes from
//! this isolate's memory, else from its owner (the Durable Object named by the record's key, one
//! refresh at a time for the whole door), else is minted here; and a registry that refuses it
//! gets one refresh and one retry, never more.

use super::*;
use crate::config::{Credentials, UpstreamConfig};
use crate::upstream::cloud::{fingerprint, mint};

impl<K, B, U, C> Door<'_, K, B, U, C>
where
    K: Kv,
    U: Upstream,
    B: Blobs<Body = U::Body>,
    C: Coalesce<Body = U::Body>,
{
    /// One request to `upstream` (number `index` of the registry's list: 0, then its fallbacks)
    /// through the auth dance, with its minted credential when it has cloud credentials.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn fetch_authenticated(
        &self,
        upstream: &UpstreamConfig,
        index: usize,
        target: &Target,
        method: HttpMethod,
        tail: &str,
        headers: &Headers,
        outcome: &mut Outcome,
    ) -> Result<Fetched<U::Body>, UpstreamError> {
        let minted = match &upstream.cloud {
            None => None,
            Some(_) => Some(
                self.cloud_credential(upstream, index, None, outcome)
                    .await
                    .map_err(UpstreamError::Minting)?,
            ),
        };
        let send = |minted: Option<mint::Minted>| {
            let mut client = Client::new(self.upstream, upstream, self.tokens, self.now);
            client.minted = minted.map(|m| Credentials {
                username: m.username,
                password: m.password,
            });
            client
        };
        let client = send(minted.clone());
        let result = client
            .fetch(method, &target.repository, tail, headers.clone())
            .await;
        outcome.upstream_calls += client.calls.get();
        outcome.notes.append(&mut client.notes.borrow_mut());
        let Some(used) = minted else {
            return result;
        };
        if !client.refused.get() {
            return result;
        }
        // The registry refused a credential it should take (revoked, or rotated early): one
        // refresh of exactly that credential, and one retry if it brought another.
        let refused = fingerprint(&used.password);
        let fresh = match self
            .cloud_credential(upstream, index, Some(&refused), outcome)
            .await
        {
            Ok(fresh) => fresh,
            // No other credential to be had: the registry's refusal is the answer (a refusal,
            // not an outage: no stale copy unless `serve_stale_on` says so), with the reason.
            Err(e) => {
                outcome.notes.push(e.message.clone());
                return result.map_err(|mut refusal| {
                    if let UpstreamError::Auth { because, .. } = &mut refusal {
                        *because = Some(e.message);
                    }
                    refusal
                });
            }
        };
        if fresh.password == used.password {
            return result;
        }
        outcome.notes.push(format!(
            "{} refused the minted credentials; refreshed them and retried once",
            target.registry
        ));
        let client = send(Some(fresh));
        let retried = client
            .fetch(method, &target.repository, tail, headers.clone())
            .await;
        outcome.upstream_calls += client.calls.get();
        outcome.notes.append(&mut client.notes.borrow_mut());
        retried
    }

    /// The credential for `upstream` (see the module docs); `refused` names one just refused.
    async fn cloud_credential(
        &self,
        upstream: &UpstreamConfig,
        index: usize,
        refused: Option<&str>,
        outcome: &mut Outcome,
    ) -> Result<mint::Minted, RegistryError> {
        let auth = upstream.cloud.as_ref().expect("called for cloud upstreams");
        let key = keys::credential(&upstream.name, index);
        let identity = auth.identity();
        let remembered = self.tokens.borrow().minted.records.get(&key).cloned();
        if let (Some(r), mint::Plan::Use) = (
            &remembered,
            mint::plan(remembered.as_ref(), &identity, self.now, refused),
        ) {
            return Ok(r.credential.clone().expect("Use means a credential"));
        }
        let owner = self.misses.minter();
        let asked = match owner {
            Some(owner) => {
                let ask = mint::Ask {
                    registry: upstream.name.clone(),
                    upstream: index,
                    refused: refused.map(str::to_owned),
                };
                let ask = serde_json::to_vec(&ask).expect("an ask serializes");
                owner.mint(&key, &ask).await
            }
            None => None,
        };
        let from_owner = asked.is_some();
        let obtained = match asked {
            Some(Ok(bytes)) => serde_json::from_slice::<mint::Answer>(&bytes)
                .map_err(|_| {
                    RegistryError::new(
                        ErrorCode::Unknown,
                        "the credential owner's answer is unreadable",
                    )
                })?
                .into_result(),
            Some(Err(e)) => Err(e),
            None => {
                mint::obtain(
                    self.kv,
                    self.upstream,
                    self.tokens,
                    &key,
                    auth,
                    &upstream.name,
                    self.now,
                    refused,
                )
                .await
            }
        };
        let obtained = obtained?;
        outcome.upstream_calls += obtained.calls;
        outcome.notes.extend(obtained.notes);
        if from_owner {
            // What the owner decided, remembered here until its refresh is due.
            let record = mint::remembered(&identity, obtained.credential.clone(), self.now);
            self.tokens.borrow_mut().minted.records.insert(key, record);
        }
        Ok(obtained.credential)
    }
}
