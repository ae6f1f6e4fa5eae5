//! The door-wide counters behind `GET /_frontdoor/status` and the status page at `/` (which the
//! core answers, `crate::status`). Each isolate accumulates its requests' outcomes and merges them
//! into one `StatsHub` Durable Object at most every couple of seconds (and before answering a
//! status request); the hub keeps the sum in memory and in its storage.

use crate::ports::{StatsSource, StoreError};
use crate::proxy::Outcome;
use crate::stats::{Pending, Stats};
use std::cell::RefCell;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use worker::{durable_object, DurableObject, Env, Method, Request, Response, State};

pub const STATS_BINDING: &str = "STATS";
/// The one hub's name.
const HUB: &str = "door";
const STORAGE_KEY: &str = "stats";

thread_local! {
    /// This isolate's counters not sent yet (what is counted, and when it is sent, is the core's:
    /// `crate::stats::Pending`).
    static PENDING: RefCell<Pending> = RefCell::default();
}

/// Counts one request (see `Pending::record`).
pub fn record(outcome: &Outcome, status: u16, bytes: Option<u64>, now_ms: u64, owner: bool) {
    PENDING.with(|p| p.borrow_mut().record(outcome, status, bytes, now_ms, owner));
}

/// The counters to send now, if it is time (see `Pending::take_due`).
pub fn take_due(now_ms: u64, force: bool) -> Option<Stats> {
    PENDING.with(|p| p.borrow_mut().take_due(now_ms, force))
}

/// Sends counters to the hub (errors are logged, never the client's problem).
pub async fn send(env: &Env, stats: Stats) {
    let result = async {
        let stub = env
            .durable_object(STATS_BINDING)?
            .id_from_name(HUB)?
            .get_stub()?;
        let body = serde_json::to_string(&stats)?.into();
        let init = super::request::Init {
            method: "POST",
            headers: None,
            body: Some(&body),
            manual_redirect: false,
        };
        let req = super::request::new("https://stats/merge", init)?;
        stub.fetch_with_request(req).await?;
        Ok::<_, worker::Error>(())
    }
    .await;
    if let Err(e) = result {
        worker::console_error!("{{\"stats\":\"not sent\",\"error\":{:?}}}", e.to_string());
    }
}

/// The door-wide counters, after sending this isolate's own.
async fn current(env: &Env, now_ms: u64) -> worker::Result<Stats> {
    if let Some(pending) = take_due(now_ms, true) {
        send(env, pending).await;
    }
    let stub = env
        .durable_object(STATS_BINDING)?
        .id_from_name(HUB)?
        .get_stub()?;
    let mut hub = stub.fetch_with_str("https://stats/").await?;
    hub.json().await
}

/// The counters for `GET /` and `GET /_frontdoor/status`, which the core answers
/// (`crate::status`): it decides who may read them, and asks only then.
pub struct Hub<'a> {
    pub env: &'a Env,
    pub now_ms: u64,
}

impl StatsSource for Hub<'_> {
    async fn current(&self) -> Result<Stats, StoreError> {
        current(self.env, self.now_ms)
            .await
            .map_err(|e| StoreError(e.to_string()))
    }

    async fn credential(&self, key: &str) -> Option<Vec<u8>> {
        let store: super::js::KvNamespace = super::js::binding(self.env, "CACHE")?;
        store
            .get_entry(key)
            .await
            .ok()
            .flatten()
            .map(|(value, _)| value)
    }
}

/// The hub: the sum of every isolate's counters.
#[durable_object]
pub struct StatsHub {
    state: State,
    stats: RefCell<Option<Stats>>,
}

impl StatsHub {
    /// Makes sure the stored sum is in memory. Merges then happen in memory with no `await`
    /// between reading and writing it, so concurrent merges cannot lose each other's counts.
    async fn load(&self) {
        if self.stats.borrow().is_some() {
            return;
        }
        let stored = self.stored().await;
        let mut slot = self.stats.borrow_mut();
        if slot.is_none() {
            *slot = Some(stored.unwrap_or_default());
        }
    }
}

impl StatsHub {
    /// The stored sum, kept as JSON text: serde_json already handles `Stats` everywhere else,
    /// while worker's typed storage `get`/`put` would need serde-wasm-bindgen code for it too.
    /// Older versions stored serde-wasm-bindgen's object (a JS `Map` for each map), still read.
    async fn stored(&self) -> Option<Stats> {
        let promise = self.state.storage().as_raw().get(STORAGE_KEY).ok()?;
        let value = JsFuture::from(promise).await.ok()?;
        let json = match value.as_string() {
            Some(json) => json,
            None if value.is_object() => {
                let maps =
                    Closure::<dyn Fn(JsValue, JsValue) -> JsValue>::new(|_key, v: JsValue| {
                        match v.dyn_ref::<js_sys::Map>() {
                            Some(map) => js_sys::Object::from_entries(map).map_or(v, JsValue::from),
                            None => v,
                        }
                    });
                js_sys::JSON::stringify_with_replacer(&value, maps.as_ref())
                    .ok()?
                    .as_string()?
            }
            None => return None,
        };
        serde_json::from_str(&json).ok()
    }
}

impl DurableObject for StatsHub {
    fn new(state: State, _env: Env) -> Self {
        StatsHub {
            state,
            stats: RefCell::new(None),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let delta: Option<Stats> = match req.method() {
            Method::Post => Some(serde_json::from_str(&req.text().await?)?),
            _ => None,
        };
        self.load().await;
        let snapshot = {
            let mut slot = self.stats.borrow_mut();
            let stats = slot.get_or_insert_with(Stats::default);
            if let Some(delta) = delta.clone() {
                stats.merge(delta);
            }
            stats.clone()
        };
        if delta.is_some() {
            let json = serde_json::to_string(&snapshot)?;
            self.state.storage().put_raw(STORAGE_KEY, json).await?;
            return Response::empty();
        }
        Response::from_json(&snapshot)
    }
}
