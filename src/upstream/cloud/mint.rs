//! When to mint a cloud credential, how long to trust it, and what a failure costs: a pure
//! policy ([`plan`], [`after_success`], [`after_failure`]) over a persisted [`Record`], and
//! [`obtain`], which carries the plan out through the ports.
//!
//! - A credential is refreshed once three quarters of its lifetime have passed, and trusted until
//!   a twentieth of its lifetime before it expires: margins that scale, so a 20-second test token
//!   behaves like ECR's 12-hour one (refreshed after 9 h, trusted until 11 h 24 min).
//! - The record is persisted (KV, `crate::cache::keys::credential`) and kept in the isolate's
//!   memory, so isolates and a restarted door find it instead of minting their own. In the worker
//!   every refresh goes through one owner (the `Coalescer` Durable Object named by the record's
//!   key, which serves one request at a time): one refresh at a time for the whole door.
//! - A failed refresh keeps the still-trusted credential and is retried after a back-off that
//!   doubles per failure (a hundredth of the lifetime at first, at most an eighth); with no
//!   usable credential at all, after 1, 2, 4 … 60 seconds.
//! - A registry refusing a credential (401/403) forces one refresh of exactly that credential
//!   (named by its [`super::fingerprint`]), unless it was minted a moment ago: a registry that
//!   refuses every credential costs one mint per back-off step, never a loop.
//!
//! Time is a parameter; nothing here reads a clock.

use super::{ecr, fingerprint, google, CloudAuth};
use crate::error::{ErrorCode, RegistryError};
use crate::ports::{Kv, Upstream};
use crate::upstream::token::TokenCache;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fmt;

/// Token endpoints answer a few hundred bytes.
const MAX_ANSWER: usize = 64 * 1024;

/// A minted user name and password. `Debug` redacts the password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Minted {
    pub username: String,
    pub password: String,
    /// Unix seconds.
    pub minted_at: u64,
    pub expires_at: u64,
}

impl fmt::Debug for Minted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Minted")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("minted_at", &self.minted_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl Minted {
    fn lifetime(&self) -> u64 {
        self.expires_at.saturating_sub(self.minted_at).max(1)
    }

    /// When a refresh is due: three quarters of the lifetime after minting.
    pub fn refresh_at(&self) -> u64 {
        self.minted_at + self.lifetime() * 3 / 4
    }

    /// Until when it is used: a twentieth of its lifetime before it expires.
    pub fn usable_until(&self) -> u64 {
        self.expires_at - self.lifetime() / 20
    }

    pub fn usable(&self, now: u64) -> bool {
        now < self.usable_until()
    }
}

/// What is kept per upstream: the credential (if any), and how minting has gone lately.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// [`CloudAuth::identity`] of the settings that minted it.
    pub identity: String,
    pub credential: Option<Minted>,
    /// Failed mints in a row, and when the next may be tried.
    #[serde(default)]
    pub failures: u32,
    #[serde(default)]
    pub retry_at: u64,
    /// Why the last mint failed (never a secret: the API's error type or code).
    #[serde(default)]
    pub last_error: Option<String>,
    /// Whether the minting API refused (a 4xx: a revoked key, a wrong secret) rather than failed:
    /// a refusal is answered `403 DENIED`, a failure `503`, which may serve a stale copy.
    #[serde(default)]
    pub refused: bool,
    /// When the record was last written (which of two copies is newer).
    #[serde(default)]
    pub updated_at: u64,
}

/// What to do about a request for the credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The record's credential is good: use it.
    Use,
    /// Mint one; the record's credential, if still usable, is the fallback.
    Mint,
    /// Minting failed recently and nothing usable is left: fail for `retry_in` seconds.
    Wait { retry_in: u64 },
}

/// The decision for `record` (if any, and made under `identity`) at `now`; `refused` names a
/// credential a registry just refused.
pub fn plan(record: Option<&Record>, identity: &str, now: u64, refused: Option<&str>) -> Plan {
    let Some(r) = record.filter(|r| r.identity == identity) else {
        return Plan::Mint;
    };
    let current = r.credential.as_ref().filter(|c| c.usable(now));
    let refused_now = match (current, refused) {
        (Some(c), Some(fp)) => fingerprint(&c.password) == fp,
        _ => false,
    };
    // A credential minted a moment ago and refused at once is not minted again (that would loop).
    let just_minted = current.is_some_and(|c| now < c.minted_at + step(c.lifetime()));
    let current = current.filter(|_| !refused_now || just_minted);
    if now < r.retry_at {
        return match current {
            Some(_) => Plan::Use,
            None => Plan::Wait {
                retry_in: r.retry_at - now,
            },
        };
    }
    match current {
        Some(_) if refused_now && just_minted => Plan::Use,
        Some(c) if now < c.refresh_at() => Plan::Use,
        _ => Plan::Mint,
    }
}

/// The first back-off step for a credential of `lifetime`: a hundredth of it, at least 1 s.
fn step(lifetime: u64) -> u64 {
    (lifetime / 100).max(1)
}

/// The record after a mint that succeeded.
pub fn after_success(identity: &str, minted: Minted, now: u64) -> Record {
    Record {
        identity: identity.to_owned(),
        credential: Some(minted),
        failures: 0,
        retry_at: 0,
        last_error: None,
        refused: false,
        updated_at: now,
    }
}

/// What a worker remembers of a credential its owner answered with: until its refresh is due,
/// or — when the owner answered with one already due (its refresh failed) — for one back-off
/// step, so the worker does not ask the owner again on every request.
pub fn remembered(identity: &str, credential: Minted, now: u64) -> Record {
    let hold = (now >= credential.refresh_at()).then(|| now + step(credential.lifetime()));
    Record {
        retry_at: hold.unwrap_or(0),
        ..after_success(identity, credential, now)
    }
}

/// The record after a mint that failed with `why`: the credential is kept (it may still be
/// usable), the next try waits a back-off that doubles with each failure.
pub fn after_failure(
    previous: Option<&Record>,
    identity: &str,
    why: String,
    refused: bool,
    now: u64,
) -> Record {
    let previous = previous.filter(|r| r.identity == identity);
    let credential = previous.and_then(|r| r.credential.clone());
    let failures = previous.map_or(0, |r| r.failures).saturating_add(1);
    let doubling = 1u64 << (failures - 1).min(20);
    let wait = match credential.as_ref().filter(|c| c.usable(now)) {
        Some(c) => (step(c.lifetime()) * doubling).min((c.lifetime() / 8).max(1)),
        None => doubling.min(60),
    };
    Record {
        identity: identity.to_owned(),
        credential,
        failures,
        retry_at: now + wait,
        last_error: Some(why),
        refused,
        updated_at: now,
    }
}

/// Each isolate's copy of the records, and the refreshes it has under way.
#[derive(Debug, Default)]
pub struct MintMemory {
    pub records: HashMap<String, Record>,
    pub in_flight: HashSet<String>,
}

/// A credential ready to use.
#[derive(Debug, Clone)]
pub struct Obtained {
    pub credential: Minted,
    /// Requests sent to mint it (0: it was already known).
    pub calls: u32,
    /// For the request log: minted, or a refresh that failed. Never a secret.
    pub notes: Vec<String>,
}

/// Finds or mints the credential of one upstream: this isolate's memory, then the persisted
/// record in `kv` under `key`, then a mint through `port`, each as [`plan`] says. The outcome
/// is written back to both.
#[allow(clippy::too_many_arguments)]
pub async fn obtain<K: Kv, U: Upstream>(
    kv: &K,
    port: &U,
    memory: &RefCell<TokenCache>,
    key: &str,
    auth: &CloudAuth,
    registry: &str,
    now: u64,
    refused: Option<&str>,
) -> Result<Obtained, RegistryError> {
    let identity = auth.identity();
    let mut notes = Vec::new();
    let mut record = memory.borrow().minted.records.get(key).cloned();
    if plan(record.as_ref(), &identity, now, refused) != Plan::Use {
        match kv.get(key).await {
            Ok(Some(entry)) => {
                if let Ok(stored) = serde_json::from_slice::<Record>(&entry.value) {
                    if record
                        .as_ref()
                        .is_none_or(|r| stored.updated_at >= r.updated_at)
                    {
                        record = Some(stored);
                    }
                }
            }
            Ok(None) => {}
            Err(e) => notes.push(format!("credential record: kv get: {e}")),
        }
    }
    let decided = plan(record.as_ref(), &identity, now, refused);
    if let Some(r) = &record {
        memory
            .borrow_mut()
            .minted
            .records
            .insert(key.to_owned(), r.clone());
    }
    let fallback = record
        .as_ref()
        .filter(|r| r.identity == identity)
        .and_then(|r| r.credential.clone())
        .filter(|c| c.usable(now));
    match decided {
        Plan::Use => {
            return Ok(Obtained {
                credential: fallback.expect("Use means a usable credential"),
                calls: 0,
                notes,
            })
        }
        Plan::Wait { retry_in } => {
            let refused = record.as_ref().is_some_and(|r| r.refused);
            let why = record
                .and_then(|r| r.last_error)
                .unwrap_or_else(|| "minting failed".into());
            let message = format!("the mirror has no current {} credentials for {registry} ({why}); it tries again in {retry_in} s", auth.kind());
            return Err(mint_error(refused, message, Some(retry_in)));
        }
        Plan::Mint => {}
    }
    // Another request of this isolate is refreshing: the current credential serves meanwhile.
    let refused_fallback = fallback.filter(|c| refused != Some(fingerprint(&c.password).as_str()));
    if let Some(c) = &refused_fallback {
        if memory.borrow().minted.in_flight.contains(key) {
            return Ok(Obtained {
                credential: c.clone(),
                calls: 0,
                notes,
            });
        }
    }
    memory.borrow_mut().minted.in_flight.insert(key.to_owned());
    let (minted, calls) = mint_now(auth, port, now).await;
    memory.borrow_mut().minted.in_flight.remove(key);
    let (next, answer) = match minted {
        Ok(m) => {
            notes.push(format!(
                "minted {} credentials for {registry}, valid for {} s",
                auth.kind(),
                m.expires_at.saturating_sub(now)
            ));
            (after_success(&identity, m.clone(), now), Ok(m))
        }
        Err((why, refused)) => {
            let next = after_failure(record.as_ref(), &identity, why.clone(), refused, now);
            let retry_in = next.retry_at - now;
            let answer = match refused_fallback {
                Some(c) => {
                    notes.push(format!(
                        "refreshing {} credentials for {registry} failed ({why}); the current ones serve until {}, next try in {retry_in} s",
                        auth.kind(),
                        c.usable_until()
                    ));
                    Ok(c)
                }
                None => Err(mint_error(
                    refused,
                    format!(
                        "the mirror could not mint {} credentials for {registry}: {why}",
                        auth.kind()
                    ),
                    None,
                )),
            };
            (next, answer)
        }
    };
    memory
        .borrow_mut()
        .minted
        .records
        .insert(key.to_owned(), next.clone());
    let bytes = serde_json::to_vec(&next).expect("a record serializes");
    if let Err(e) = kv.put(key, bytes, now / 86_400).await {
        notes.push(format!("credential record: kv put: {e}"));
    }
    answer.map(|credential| Obtained {
        credential,
        calls,
        notes,
    })
}

/// One mint: the API call (after signing the JWT, for Google), and its answer read.
async fn mint_now<U: Upstream>(
    auth: &CloudAuth,
    port: &U,
    now: u64,
) -> (Result<Minted, (String, bool)>, u32) {
    let (minted, calls) = mint_call(auth, port, now).await;
    let refused = |status: u16| (400..500).contains(&status);
    (
        minted.map_err(|(why, status)| (why, refused(status))),
        calls,
    )
}

/// A minting API that refused (`403 DENIED`: not an outage, no stale copy unless the upstream's
/// `serve_stale_on` says so), or one that failed (`503`, with `Retry-After` when known).
fn mint_error(refused: bool, message: String, retry_in: Option<u64>) -> RegistryError {
    if refused {
        return RegistryError::new(ErrorCode::Denied, message);
    }
    let mut e = RegistryError::new(ErrorCode::Unavailable, message).with_status(503);
    e.retry_after = retry_in.map(|s| s.to_string());
    e
}

async fn mint_call<U: Upstream>(
    auth: &CloudAuth,
    port: &U,
    now: u64,
) -> (Result<Minted, (String, u16)>, u32) {
    let request = match auth {
        CloudAuth::Ecr(a) => a.request(now),
        CloudAuth::Google(sa) => {
            let input = sa.signing_input(now);
            match port.sign_rs256(&sa.private_key_der, input.as_bytes()).await {
                Ok(signature) => Ok(sa.token_request(&input, &signature)),
                Err(e) => Err(format!("signing the JWT failed: {e}")),
            }
        }
    };
    let request = match request {
        Ok(r) => r,
        Err(e) => return (Err((e, 0)), 0),
    };
    let answer = match port.send(request).await {
        Ok(a) => a,
        Err(e) => return (Err((format!("the minting API {e}"), 0)), 1),
    };
    let status = answer.status;
    let body = match port.read(answer.body, MAX_ANSWER).await {
        Ok(b) => b,
        Err(e) => return (Err((format!("the minting API's answer {e}"), 0)), 1),
    };
    let minted = match auth {
        CloudAuth::Ecr(_) => ecr::read_answer(status, &body, now),
        CloudAuth::Google(_) => google::read_answer(status, &body, now),
    };
    (minted.map_err(|e| (e, status)), 1)
}

/// What a worker sends an upstream's owner to get its credential (see `Coalesce::mint`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ask {
    pub registry: String,
    /// 0 for the registry's upstream, `i` for its fallback `i - 1`.
    pub upstream: usize,
    /// The fingerprint of a credential the registry refused.
    pub refused: Option<String>,
}

/// The owner's answer: the credential, or the error to answer with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answer {
    pub credential: Option<Minted>,
    pub calls: u32,
    pub notes: Vec<String>,
    pub error: Option<String>,
    /// The error is a refusal (`DENIED`), not a failure (`UNAVAILABLE`).
    #[serde(default)]
    pub denied: bool,
    pub status: u16,
    pub retry_after: Option<String>,
}

impl Answer {
    pub fn of(result: Result<Obtained, RegistryError>) -> Answer {
        match result {
            Ok(o) => Answer {
                credential: Some(o.credential),
                calls: o.calls,
                notes: o.notes,
                error: None,
                denied: false,
                status: 200,
                retry_after: None,
            },
            Err(e) => Answer {
                credential: None,
                calls: 0,
                notes: Vec::new(),
                error: Some(e.message.clone()),
                denied: e.code == ErrorCode::Denied,
                status: e.status,
                retry_after: e.retry_after.clone(),
            },
        }
    }

    pub fn into_result(self) -> Result<Obtained, RegistryError> {
        match self.credential {
            Some(credential) => Ok(Obtained {
                credential,
                calls: self.calls,
                notes: self.notes,
            }),
            None => {
                let code = match self.denied {
                    true => ErrorCode::Denied,
                    false => ErrorCode::Unavailable,
                };
                let mut e =
                    RegistryError::new(code, self.error.unwrap_or_else(|| "no credential".into()))
                        .with_status(self.status);
                e.retry_after = self.retry_after;
                Err(e)
            }
        }
    }
}

/// What the status shows of a record: kind, expiry, refresh time, failures. Never the secret.
pub fn status(kind: &str, record: Option<&Record>) -> serde_json::Value {
    let c = record.and_then(|r| r.credential.as_ref());
    serde_json::json!({
        "kind": kind,
        "expires_at": c.map(|c| c.expires_at),
        "refresh_at": c.map(|c| c.refresh_at()),
        "minted_at": c.map(|c| c.minted_at),
        "failures": record.map_or(0, |r| r.failures),
        "last_error": record.and_then(|r| r.last_error.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minted(at: u64, lifetime: u64, password: &str) -> Minted {
        Minted {
            username: "AWS".into(),
            password: password.into(),
            minted_at: at,
            expires_at: at + lifetime,
        }
    }

    fn record(c: Option<Minted>, failures: u32, retry_at: u64) -> Record {
        Record {
            identity: "id".into(),
            credential: c,
            failures,
            retry_at,
            last_error: None,
            refused: false,
            updated_at: 0,
        }
    }

    #[test]
    fn margins_scale_with_the_lifetime() {
        let ecr = minted(0, 12 * 3600, "p");
        assert_eq!(ecr.refresh_at(), 9 * 3600);
        assert_eq!(ecr.usable_until(), 12 * 3600 - 2160);
        let test = minted(1000, 20, "p");
        assert_eq!((test.refresh_at(), test.usable_until()), (1015, 1019));
        let google = minted(0, 3599, "p");
        assert_eq!(
            (google.refresh_at(), google.usable_until()),
            (2699, 3599 - 179)
        );
    }

    #[test]
    fn plans() {
        let fp = fingerprint("p");
        let c = || Some(minted(1000, 20, "p"));
        type Case<'a> = (&'a str, Option<Record>, u64, Option<&'a str>, Plan);
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            ("nothing known", None, 1000, None, Plan::Mint),
            ("other settings", Some(Record { identity: "old".into(), ..record(c(), 0, 0) }), 1001, None, Plan::Mint),
            ("fresh", Some(record(c(), 0, 0)), 1001, None, Plan::Use),
            ("just before 3/4", Some(record(c(), 0, 0)), 1014, None, Plan::Use),
            ("3/4 passed", Some(record(c(), 0, 0)), 1015, None, Plan::Mint),
            ("expired", Some(record(c(), 0, 0)), 1020, None, Plan::Mint),
            ("refresh failed, still usable", Some(record(c(), 1, 1017)), 1016, None, Plan::Use),
            ("refresh failed, back-off over", Some(record(c(), 1, 1017)), 1017, None, Plan::Mint),
            ("failed, nothing usable", Some(record(None, 3, 1030)), 1025, None, Plan::Wait { retry_in: 5 }),
            ("failed, past its margin", Some(record(c(), 2, 1030)), 1019, None, Plan::Wait { retry_in: 11 }),
            ("refused", Some(record(c(), 0, 0)), 1005, Some(fp.as_str()), Plan::Mint),
            ("refused another", Some(record(c(), 0, 0)), 1005, Some("0000000000000000"), Plan::Use),
            ("refused at once after minting", Some(record(c(), 0, 0)), 1000, Some(fp.as_str()), Plan::Use),
            ("refused while backing off", Some(record(c(), 1, 1010)), 1005, Some(fp.as_str()), Plan::Wait { retry_in: 5 }),
        ];
        for (what, r, now, refused, want) in cases {
            assert_eq!(plan(r.as_ref(), "id", now, refused), want, "{what}");
        }
    }

    #[test]
    fn back_off_doubles_and_keeps_the_credential() {
        let c = minted(0, 12 * 3600, "p");
        let mut r = record(Some(c.clone()), 0, 0);
        let mut waits = Vec::new();
        for i in 0..6 {
            let now = 9 * 3600 + i;
            r = after_failure(
                Some(&r),
                "id",
                "GetAuthorizationToken answered 500".into(),
                false,
                now,
            );
            assert_eq!(r.credential.as_ref(), Some(&c), "kept");
            waits.push(r.retry_at - now);
        }
        assert_eq!(waits, [432, 864, 1728, 3456, 5400, 5400]);
        let mut r = record(None, 0, 0);
        let mut waits = Vec::new();
        for _ in 0..8 {
            r = after_failure(Some(&r), "id", "x".into(), false, 50);
            waits.push(r.retry_at - 50);
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        // A worker holding a credential whose refresh failed at the owner asks again after a step.
        let held = remembered("id", minted(0, 20, "q"), 16);
        assert_eq!(plan(Some(&held), "id", 16, None), Plan::Use);
        assert_eq!(plan(Some(&held), "id", 17, None), Plan::Mint);
        let fresh = remembered("id", minted(10, 20, "q"), 11);
        assert_eq!(
            (fresh.retry_at, plan(Some(&fresh), "id", 24, None)),
            (0, Plan::Use)
        );
        let ok = after_success("id", minted(60, 20, "q"), 60);
        assert_eq!((ok.failures, ok.retry_at, ok.last_error), (0, 0, None));
    }

    #[test]
    fn secrets_stay_out_of_debug_and_status() {
        let r = record(Some(minted(0, 20, "s3cr3t-token")), 0, 0);
        assert!(!format!("{r:?}").contains("s3cr3t"));
        let s = status("ecr", Some(&r)).to_string();
        assert!(!s.contains("s3cr3t"), "{s}");
        assert!(s.contains("\"expires_at\":20"), "{s}");
    }

    /// A scripted ECR API (answers per call from `script`: a status) and an in-memory KV.
    struct Api {
        script: RefCell<Vec<u16>>,
        calls: std::cell::Cell<u32>,
        lifetime: u64,
        now: std::cell::Cell<u64>,
    }

    impl Upstream for Api {
        type Body = Vec<u8>;
        async fn send(
            &self,
            req: crate::ports::OutboundRequest,
        ) -> Result<crate::ports::Fetched<Vec<u8>>, crate::ports::NetError> {
            assert_eq!(req.method, crate::ports::HttpMethod::Post);
            assert!(req
                .headers
                .get("authorization")
                .unwrap()
                .contains("/ecr/aws4_request"));
            self.calls.set(self.calls.get() + 1);
            let status = self.script.borrow_mut().pop().unwrap_or(200);
            use base64::Engine as _;
            let n = self.calls.get();
            let token = base64::engine::general_purpose::STANDARD.encode(format!("AWS:pw{n}"));
            let body = match status {
                200 => format!(
                    r#"{{"authorizationData":[{{"authorizationToken":"{token}","expiresAt":{}}}]}}"#,
                    self.now.get() + self.lifetime
                ),
                _ => r#"{"__type":"ServerException"}"#.to_owned(),
            };
            Ok(crate::ports::Fetched {
                status,
                headers: crate::ports::Headers::new(),
                body: body.into_bytes(),
            })
        }
        async fn read(&self, body: Vec<u8>, _: usize) -> Result<Vec<u8>, crate::ports::NetError> {
            Ok(body)
        }
    }

    #[derive(Default)]
    struct MemKv(RefCell<HashMap<String, Vec<u8>>>);

    impl Kv for MemKv {
        async fn get(
            &self,
            key: &str,
        ) -> Result<Option<crate::ports::Entry>, crate::ports::StoreError> {
            Ok(self.0.borrow().get(key).map(|v| crate::ports::Entry {
                value: v.clone(),
                read_day: None,
            }))
        }
        async fn put(
            &self,
            key: &str,
            value: Vec<u8>,
            _: u64,
        ) -> Result<(), crate::ports::StoreError> {
            self.0.borrow_mut().insert(key.to_owned(), value);
            Ok(())
        }
        async fn delete(&self, key: &str) -> Result<(), crate::ports::StoreError> {
            self.0.borrow_mut().remove(key);
            Ok(())
        }
        async fn list(
            &self,
            _: &str,
            _: Option<&str>,
            _: u32,
        ) -> Result<crate::ports::Page, crate::ports::StoreError> {
            Ok(crate::ports::Page::default())
        }
    }

    fn ecr_auth() -> CloudAuth {
        CloudAuth::Ecr(
            ecr::EcrAccess::new("AKID".into(), "secret".into(), "us-east-1".into(), None).unwrap(),
        )
    }

    fn get(
        api: &Api,
        kv: &MemKv,
        memory: &RefCell<TokenCache>,
        now: u64,
        refused: Option<&str>,
    ) -> Result<String, RegistryError> {
        api.now.set(now);
        futures::executor::block_on(obtain(
            kv,
            api,
            memory,
            "k",
            &ecr_auth(),
            "ecr.test",
            now,
            refused,
        ))
        .map(|o| o.credential.password)
    }

    /// Requests every second for 100 s with a 20 s credential: one mint per 15 s window; a second
    /// isolate sharing the KV mints none; a failed refresh keeps the credential and backs off; a
    /// refusal forces one refresh.
    #[test]
    fn obtain_mints_once_per_window_and_survives_failures() {
        let api = Api {
            script: RefCell::new(Vec::new()),
            calls: 0.into(),
            lifetime: 20,
            now: 0.into(),
        };
        let kv = MemKv::default();
        let one = RefCell::new(TokenCache::default());
        let two = RefCell::new(TokenCache::default());
        for t in 1000..1100 {
            let memory = if t % 2 == 0 { &one } else { &two };
            get(&api, &kv, memory, t, None).unwrap();
        }
        // Mints at 1000, 1015, 1030, 1045, 1060, 1075, 1090.
        assert_eq!(api.calls.get(), 7);

        // The refresh due at 1105 fails twice: the credential (good until 1109) serves meanwhile,
        // and the API is asked again only after the back-off (1 s, then 2 s).
        api.script.borrow_mut().extend([500, 500]);
        let current = get(&api, &kv, &one, 1104, None).unwrap();
        assert_eq!(get(&api, &kv, &one, 1105, None).unwrap(), current);
        assert_eq!(api.calls.get(), 8);
        assert_eq!(
            get(&api, &kv, &one, 1105, None).unwrap(),
            current,
            "backing off"
        );
        assert_eq!(api.calls.get(), 8);
        assert_eq!(get(&api, &kv, &one, 1106, None).unwrap(), current);
        assert_eq!(api.calls.get(), 9);
        let fresh = get(&api, &kv, &one, 1108, None).unwrap();
        assert_ne!(fresh, current);
        assert_eq!(api.calls.get(), 10);

        // The registry refuses it: one refresh; refusing the new one at once mints nothing.
        let refreshed = get(&api, &kv, &one, 1110, Some(&fingerprint(&fresh))).unwrap();
        assert_ne!(refreshed, fresh);
        assert_eq!(api.calls.get(), 11);
        assert_eq!(
            get(&api, &kv, &one, 1110, Some(&fingerprint(&refreshed))).unwrap(),
            refreshed
        );
        assert_eq!(api.calls.get(), 11);

        // Nothing usable and the API down: 503 with Retry-After, and no call during the back-off.
        api.script.borrow_mut().extend([500]);
        let e = get(&api, &kv, &one, 1200, None).unwrap_err();
        assert_eq!(api.calls.get(), 12);
        assert_eq!((e.status, e.retry_after.as_deref()), (503, None));
        let e = get(&api, &kv, &one, 1200, None).unwrap_err();
        assert_eq!((e.status, e.retry_after.as_deref()), (503, Some("1")));
        assert_eq!(api.calls.get(), 12);
        let stored = String::from_utf8(kv.0.borrow()["k"].clone()).unwrap();
        assert!(stored.contains("\"failures\":1"), "{stored}");
    }
}
