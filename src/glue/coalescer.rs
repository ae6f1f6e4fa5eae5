//! Request coalescing across isolates: a Durable Object per cached object (named by its storage
//! key) owns every cache miss for that object. It serves one request at a time: the first fetches
//! from upstream and fills the cache — streaming to its client while R2 stores the same bytes — and
//! the lock is held until the fill has landed, so the requests queued behind it are cache hits.
//! Fifty nodes asking for one layer at once cost one upstream GET. A fill that has not landed by
//! its turn's deadline lets the queue go on: the next request finds no blob and fetches for
//! itself, while the slow fill carries on. The rule is the core's (`crate::watchdog::release`);
//! this only carries it out.

use super::ports::Stream;
use super::spool::Fills;
use super::{serve_request, Ports};
use crate::error::{ErrorCode, RegistryError};
use crate::ports::{Body, Coalesce, Reply};
use crate::proxy::Misses;
use crate::watchdog::{release, turn_released_line, Limits, Release};
use futures::future::{select, Either, LocalBoxFuture};
use futures::lock::Mutex;
use futures::FutureExt;
use std::cell::{OnceCell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use worker::{
    console_error, durable_object, DurableObject, Env, ObjectNamespace, Request, Response,
    ResponseBody, State,
};

use crate::cache::recent::Recent;

/// The worker's side: forwards the client's request to the owner of a key.
pub(crate) struct DurableCoalescer<'a> {
    pub namespace: ObjectNamespace,
    pub request: &'a web_sys::Request,
}

impl Coalesce for DurableCoalescer<'_> {
    type Body = Stream;

    async fn forward(&self, key: &str) -> Result<Reply<Stream>, RegistryError> {
        let request = self
            .request
            .clone()
            .map(Request::from)
            .map_err(|e| failed(key, e.into()))?;
        self.send(key, request).await
    }

    async fn forward_path(&self, key: &str, path: &str) -> Result<Reply<Stream>, RegistryError> {
        // The host is one no `HOSTS` entry names, so the `<registry>/` prefix in `path` chooses
        // the registry.
        let client = super::js::from_js_headers(&worker::Headers(self.request.headers()));
        let headers = crate::proxy::path_request_headers(&client);
        let headers = super::js::to_js_headers(&headers).map_err(|e| failed(key, e))?;
        let init = super::request::Init {
            method: "GET",
            headers: Some(&headers),
            body: None,
            manual_redirect: false,
        };
        let url = format!("https://frontdoor.internal{path}");
        let request = super::request::new(&url, init).map_err(|e| failed(key, e))?;
        self.send(key, request).await
    }

    /// `POST /_frontdoor/mint` to the record's owner (see `super::minter`), which only this
    /// binding reaches: the answer carries the credential, and goes no further than the core.
    async fn mint(&self, key: &str, ask: &[u8]) -> Option<Result<Vec<u8>, RegistryError>> {
        let answer = async {
            let body = wasm_bindgen::JsValue::from(js_sys::Uint8Array::from(ask));
            let init = super::request::Init {
                method: "POST",
                headers: None,
                body: Some(&body),
                manual_redirect: false,
            };
            let url = format!("https://frontdoor.internal{}", super::minter::PATH);
            let request = super::request::new(&url, init)?;
            let stub = self.namespace.id_from_name(key)?.get_stub()?;
            let mut response = stub.fetch_with_request(request).await?;
            response.bytes().await
        };
        Some(answer.await.map_err(|e| failed(key, e)))
    }
}

fn failed(key: &str, e: worker::Error) -> RegistryError {
    RegistryError::new(ErrorCode::Unknown, format!("coalescer for {key}: {e}"))
}

impl DurableCoalescer<'_> {
    async fn send(&self, key: &str, request: Request) -> Result<Reply<Stream>, RegistryError> {
        let stub = self
            .namespace
            .id_from_name(key)
            .and_then(|id| id.get_stub())
            .map_err(|e| failed(key, e))?;
        let response = stub
            .fetch_with_request(request)
            .await
            .map_err(|e| failed(key, e))?;
        let headers = super::js::from_js_headers(response.headers());
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
    /// Fills under way that later requests follow instead of waiting (see `super::spool`).
    fills: Rc<Fills>,
    /// The settings' limits on upstream answers (read once: an object's settings do not change).
    limits: OnceCell<Limits>,
}

impl Coalescer {
    fn limits(&self) -> Limits {
        *self.limits.get_or_init(|| {
            // Settings that do not load answer every request with an error: no fill to wait for.
            super::settings(&self.env).map_or(
                Limits {
                    answer_seconds: 0,
                    idle_seconds: 0,
                },
                |c| c.body_limits(),
            )
        })
    }
}

impl DurableObject for Coalescer {
    fn new(state: State, env: Env) -> Self {
        Coalescer {
            state,
            env,
            turn: Arc::new(Mutex::new(())),
            recent: Rc::new(Recent::default()),
            fills: Rc::default(),
            limits: OnceCell::new(),
        }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        let turn = self.turn.clone().lock_owned().await;
        if req.path() == super::minter::PATH && req.method() == worker::Method::Post {
            // Only the worker's `Coalesce::mint` sends this (a client's request reaches an owner
            // only as a `/v2/` miss); answered under the turn: one refresh at a time.
            let answer = super::minter::serve(req, &self.env, &self.recent).await;
            drop(turn);
            return answer;
        }
        let fills: Rc<RefCell<Vec<LocalBoxFuture<'static, ()>>>> = Rc::default();
        let collect = {
            let fills = fills.clone();
            move |f: LocalBoxFuture<'static, ()>| fills.borrow_mut().push(f)
        };
        // An owner hands nothing on but a tag's manifest fetch by digest (`Door::digest_owner`):
        // the digest's owner never forwards, so no owner waits on itself.
        let digest_owner =
            super::js::binding::<ObjectNamespace>(&self.env, super::COALESCER_BINDING).map(
                |namespace| DurableCoalescer {
                    namespace,
                    request: req.inner(),
                },
            );
        let ports = Ports {
            spawn: &collect,
            recent: Some(&self.recent),
            fills: Some(&self.fills),
            misses: digest_owner
                .as_ref()
                .map_or(Misses::Here, |digests| Misses::Owner { digests }),
            role: "owner",
        };
        let response = serve_request(req.inner(), &self.env, ports).await;
        let pending: Vec<_> = fills.borrow_mut().drain(..).collect();
        let content_length = response
            .as_ref()
            .ok()
            .and_then(|r| r.headers().get("content-length").ok().flatten());
        let rule = release(
            !pending.is_empty(),
            self.fills.running(),
            content_length.as_deref(),
            self.limits(),
        );
        let hold = match rule {
            Release::Now => {
                drop(turn);
                if !pending.is_empty() {
                    self.state
                        .wait_until(futures::future::join_all(pending).map(|_| ()));
                }
                return response;
            }
            Release::Hold { deadline_ms } => deadline_ms,
        };
        let path = req.path();
        self.state.wait_until(async move {
            let fills = std::pin::pin!(futures::future::join_all(pending));
            let deadline =
                std::pin::pin!(worker::Delay::from(std::time::Duration::from_millis(hold)));
            match select(fills, deadline).await {
                Either::Left(_) => drop(turn),
                Either::Right(((), fills)) => {
                    drop(turn);
                    console_error!("{}", turn_released_line(&path, hold));
                    fills.await;
                }
            }
        });
        response
    }
}
