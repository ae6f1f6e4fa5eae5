//! Request coalescing across isolates: a Durable Object per cached object (named by its storage
//! key) owns every cache miss for that object. It serves one request at a time: the first fetches
//! from upstream and fills the cache — streaming to its client while R2 stores the same bytes — and
//! the lock is held until the fill has landed, so the requests queued behind it are cache hits.
//! Fifty nodes asking for one layer at once cost one upstream GET.

use super::ports::Stream;
use super::{serve_request, Ports};
use crate::error::{ErrorCode, RegistryError};
use crate::ports::{Body, Coalesce, Entry, Headers, Reply};
use futures::future::LocalBoxFuture;
use futures::lock::Mutex;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use worker::{
    durable_object, DurableObject, Env, ObjectNamespace, Request, Response, ResponseBody, State,
};

/// Bound on remembered KV writes per object owner; an owner handles a handful of keys.
const RECENT_MAX: usize = 64;

/// KV values this owner wrote lately, so its next requests do not depend on KV's propagation.
#[derive(Default)]
pub struct Recent(RefCell<HashMap<String, Entry>>);

impl Recent {
    pub fn get(&self, key: &str) -> Option<Entry> {
        self.0.borrow().get(key).cloned()
    }

    pub fn put(&self, key: &str, entry: Entry) {
        let mut map = self.0.borrow_mut();
        if map.len() >= RECENT_MAX {
            map.clear();
        }
        map.insert(key.to_owned(), entry);
    }

    pub fn forget(&self, key: &str) {
        self.0.borrow_mut().remove(key);
    }
}

/// The worker's side: forwards the client's request to the owner of a key.
pub(crate) struct DurableCoalescer<'a> {
    pub namespace: ObjectNamespace,
    pub request: &'a Request,
}

impl Coalesce for DurableCoalescer<'_> {
    type Body = Stream;

    async fn forward(&self, key: &str) -> Result<Reply<Stream>, RegistryError> {
        let failed = |e: worker::Error| {
            RegistryError::new(ErrorCode::Unknown, format!("coalescer for {key}: {e}"))
        };
        let stub = self
            .namespace
            .id_from_name(key)
            .and_then(|id| id.get_stub())
            .map_err(failed)?;
        let request = self.request.clone().map_err(failed)?;
        let response = stub.fetch_with_request(request).await.map_err(failed)?;
        let mut headers = Headers::new();
        for (name, value) in response.headers().entries() {
            headers.append(&name, value);
        }
        let status = response.status_code();
        let body = match response.into_parts().1 {
            ResponseBody::Stream(s) => Body::Stream(Some(s)),
            ResponseBody::Body(b) => Body::Bytes(b),
            ResponseBody::Empty => Body::Empty,
        };
        Ok(Reply {
            status,
            headers,
            body,
        })
    }
}

/// The owner of one object's cache misses.
#[durable_object]
pub struct Coalescer {
    state: State,
    env: Env,
    /// One request at a time; held until that request's cache fill has landed.
    turn: Arc<Mutex<()>>,
    recent: Rc<Recent>,
}

impl DurableObject for Coalescer {
    fn new(state: State, env: Env) -> Self {
        Coalescer {
            state,
            env,
            turn: Arc::new(Mutex::new(())),
            recent: Rc::new(Recent::default()),
        }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        let turn = self.turn.clone().lock_owned().await;
        let fills: Rc<RefCell<Vec<LocalBoxFuture<'static, ()>>>> = Rc::default();
        let collect = {
            let fills = fills.clone();
            move |f: LocalBoxFuture<'static, ()>| fills.borrow_mut().push(f)
        };
        let ports = Ports {
            spawn: &collect,
            recent: Some(&self.recent),
            coalesce: None,
            role: "owner",
        };
        let response = serve_request(&req, &self.env, ports).await;
        let pending: Vec<_> = fills.borrow_mut().drain(..).collect();
        self.state.wait_until(async move {
            futures::future::join_all(pending).await;
            drop(turn);
        });
        response
    }
}
