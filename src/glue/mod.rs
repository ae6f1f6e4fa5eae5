//! The Workers runtime glue: `#[event(fetch)]` and the Workers-backed ports. The only code that
//! names `worker::`; it decides nothing, it only translates between JS objects and the core.

mod coalescer;
mod js;
mod minter;
mod ports;
mod pump;
mod request;
mod spool;
mod stats;
#[cfg(test)]
mod tests;

use crate::analytics;
use crate::cache::memo::Memo;
use crate::cache::recent::Recent;
use crate::config::Config;
use crate::error::{ErrorCode, RegistryError};
use crate::proxy::{error_reply, Body, ClientRequest, Door, Misses, Outcome, Reply};
use crate::retention::Sweep;
use crate::route::RequestLine;
use crate::upstream::health::Health;
use crate::upstream::token::TokenCache;
use coalescer::DurableCoalescer;
use futures::future::LocalBoxFuture;
use ports::{FetchUpstream, R2Blobs, Stream, WorkerKv};
use std::cell::RefCell;
use std::rc::Rc;
use worker::{
    console_error, console_log, event, Context, Env, Response, ResponseBody, ScheduleContext,
    ScheduledEvent,
};

/// KV namespace binding holding manifests and tag pointers.
const KV_BINDING: &str = "CACHE";
/// R2 bucket binding holding blobs.
const R2_BINDING: &str = "BLOBS";
/// Durable Object namespace that owns cache misses (see `coalescer`). Without the binding the
/// door still works, each isolate fetching its own misses.
pub(crate) const COALESCER_BINDING: &str = "COALESCER";
/// Workers Analytics Engine dataset: one data point per request when bound (see `analytics`).
const ANALYTICS_BINDING: &str = "ANALYTICS";

thread_local! {
    /// Upstream tokens live as long as the isolate; an isolate is single-threaded.
    static TOKENS: &'static RefCell<TokenCache> = Box::leak(Box::default());
    /// Which upstreams are down, for as long as the isolate lives.
    static HEALTH: &'static RefCell<Health> = Box::leak(Box::default());
    /// The settings, parsed and validated once per isolate: a Worker's vars and secrets are fixed
    /// for the life of its isolate (a new deployment, or a changed secret, starts new isolates).
    static CONFIG: &'static std::cell::OnceCell<Config> = Box::leak(Box::default());
    /// This isolate's KV reads of this second (`crate::cache::memo`), for every role: each
    /// write or delete in the isolate forgets its key.
    static MEMO: &'static RefCell<Memo> = Box::leak(Box::default());
}

pub(crate) fn memo() -> &'static RefCell<Memo> {
    MEMO.with(|m| *m)
}

/// The settings (see `CONFIG`); settings that do not load are read again on the next request,
/// so every request answers with the error until they are fixed.
pub(crate) fn settings(env: &Env) -> Result<&'static Config, crate::config::ConfigError> {
    let cell = CONFIG.with(|c| *c);
    if let Some(config) = cell.get() {
        return Ok(config);
    }
    let config = Config::load(|name| lookup(env, name))?;
    Ok(cell.get_or_init(|| config))
}

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

/// The request is taken as the runtime's own object: `worker::Request` would read its `cf`
/// properties into JS on every request (a tenth of a warm pull's time), which the door never uses.
#[event(fetch)]
async fn fetch(req: web_sys::Request, env: Env, ctx: Context) -> worker::Result<Response> {
    // Bindings are read as they are (`Env::durable_object` and `Env::bucket` also ask each one
    // its constructor's name, twice the calls on every request).
    let coalescer =
        js::binding::<worker::ObjectNamespace>(&env, COALESCER_BINDING).map(|namespace| {
            DurableCoalescer {
                namespace,
                request: &req,
            }
        });
    let spawn = |f: LocalBoxFuture<'static, ()>| ctx.wait_until(f);
    let ports = Ports {
        spawn: &spawn,
        recent: None,
        fills: None,
        misses: coalescer.as_ref().map_or(Misses::Here, Misses::ToOwners),
        role: "worker",
    };
    serve_request(&req, &env, ports).await
}

/// What differs between the worker and the coalescing Durable Object.
pub(crate) struct Ports<'a> {
    /// Runs a background future (an R2 fill) past the response.
    pub spawn: &'a dyn Fn(LocalBoxFuture<'static, ()>),
    /// The Durable Object's memory of recent KV writes (KV reads may lag writes for a while).
    pub recent: Option<&'a Recent>,
    /// The Durable Object's fills that later clients may follow.
    pub fills: Option<&'a Rc<spool::Fills>>,
    /// Where misses are answered (see `crate::proxy::Misses`).
    pub misses: Misses<'a, DurableCoalescer<'a>>,
    /// For the log: `worker` or `owner`.
    pub role: &'static str,
}

/// Reads the request, runs the door, logs one line, answers.
pub(crate) async fn serve_request(
    req: &web_sys::Request,
    env: &Env,
    ports: Ports<'_>,
) -> worker::Result<Response> {
    let started = pump::now_ms();
    let url = url::Url::parse(&req.url()).map_err(|e| worker::Error::RustError(e.to_string()))?;
    // The raw method: `worker::Method` turns every method it does not know (PURGE, PROPFIND, …)
    // into GET, which would answer them as reads.
    let method = req.method();
    // `Headers.get` joins repeated headers with ", ", which is what the core expects.
    let headers = req.headers();
    let header = |name: &str| headers.get(name).map_err(worker::Error::from);
    let accept = header("accept")?;
    let range = header("range")?;
    let host = header("host")?;
    let authorization = header("authorization")?;
    let client_ip = header("cf-connecting-ip")?;
    let origin = format!(
        "{}://{}",
        url.scheme(),
        host.as_deref().or(url.host_str()).unwrap_or_default()
    );
    let body = match crate::route::body_limit(&method, url.path()) {
        Some(limit) => Some(
            FetchUpstream::read_limited(req.clone()?.body(), limit)
                .await
                .unwrap_or_default(),
        ),
        None => None,
    };
    let client_req = ClientRequest {
        line: RequestLine {
            method: &method,
            host: host.as_deref().or(url.host_str()),
            path: url.path(),
            query: url.query(),
        },
        accept: accept.as_deref(),
        range: range.as_deref(),
        authorization: authorization.as_deref(),
        origin: Some(&origin),
        body: body.as_deref(),
        client_ip: client_ip.as_deref(),
    };

    let (reply, outcome) = match serve(env, &ports, client_req, started).await {
        Ok(answer) => answer,
        Err(e) => {
            let mut outcome = Outcome::default();
            outcome.notes.push(e.message.clone());
            (error_reply(&e, method == "HEAD"), outcome)
        }
    };
    let owner = ports.role == "owner";
    let bytes = reply
        .headers
        .get("content-length")
        .and_then(|l| l.parse::<u64>().ok())
        .filter(|_| method != "HEAD");
    let recorded = analytics::Request {
        role: ports.role,
        method: &method,
        status: reply.status,
        bytes,
        ms: pump::now_ms().saturating_sub(started),
    };
    print(crate::log::request_line(&recorded, url.path(), &outcome));
    if let Some(dataset) = js::binding::<js::AnalyticsEngineDataset>(env, ANALYTICS_BINDING) {
        let point = analytics::data_point(&recorded, &outcome);
        if let Err(e) = dataset.write_data_point(&point.index, &point.blobs, &point.doubles) {
            console_error!("{{\"analytics\":{e:?}}}");
        }
    }
    stats::record(&outcome, reply.status, bytes, started, owner);
    // The owner handles only misses: send its upstream counts at once.
    if let Some(due) = stats::take_due(started, owner) {
        let env = env.clone();
        (ports.spawn)(Box::pin(async move { stats::send(&env, due).await }));
    }
    into_response(reply)
}

async fn serve(
    env: &Env,
    ports: &Ports<'_>,
    req: ClientRequest<'_>,
    now_ms: u64,
) -> Result<(Reply<Stream>, Outcome), RegistryError> {
    let config =
        settings(env).map_err(|e| RegistryError::new(ErrorCode::Unknown, e.to_string()))?;
    let hub = stats::Hub { env, now_ms };
    if let Some(answer) = crate::status::serve(config, &req, now_ms / 1000, &hub).await {
        return Ok(answer);
    }
    let parts = Parts::new(env, config, ports, now_ms)?;
    Ok(parts.door(config, ports, now_ms).handle(req).await)
}

/// The Workers-backed ports for one request or one scheduled run.
struct Parts<'a> {
    kv: WorkerKv<'a>,
    blobs: R2Blobs<'a>,
    upstream: FetchUpstream,
}

impl<'a> Parts<'a> {
    fn new(
        env: &Env,
        config: &Config,
        ports: &Ports<'a>,
        now_ms: u64,
    ) -> Result<Parts<'a>, RegistryError> {
        let binding = |what: &str, e: worker::Error| {
            RegistryError::new(ErrorCode::Unknown, format!("binding {what}: {e}"))
        };
        Ok(Parts {
            kv: WorkerKv {
                store: js::binding(env, KV_BINDING).ok_or_else(|| {
                    binding(KV_BINDING, format!("invalid kv store: {KV_BINDING}").into())
                })?,
                recent: ports.recent,
                memo: Some((memo(), now_ms / 1000)),
            },
            blobs: R2Blobs {
                bucket: js::binding(env, R2_BINDING).ok_or_else(|| {
                    binding(
                        R2_BINDING,
                        format!("invalid r2 bucket: {R2_BINDING}").into(),
                    )
                })?,
                spawn: ports.spawn,
                multipart_threshold: config.multipart_threshold_bytes,
                part_bytes: config.multipart_part_bytes,
                limits: config.body_limits(),
                fills: ports.fills.cloned(),
            },
            upstream: FetchUpstream::new(config.body_limits()),
        })
    }

    fn door<'d>(
        &'d self,
        config: &'d Config,
        ports: &'d Ports<'a>,
        now_ms: u64,
    ) -> Door<'d, WorkerKv<'a>, R2Blobs<'a>, FetchUpstream, DurableCoalescer<'a>> {
        Door {
            config,
            kv: &self.kv,
            blobs: &self.blobs,
            upstream: &self.upstream,
            tokens: TOKENS.with(|t| *t),
            health: HEALTH.with(|h| *h),
            misses: ports.misses,
            now: now_ms / 1000,
        }
    }
}

/// The cron trigger: pre-warms the `PREWARM` images, then runs one bounded step of the retention
/// sweep; one JSON log line each. Time is the trigger's scheduled time.
#[event(scheduled)]
async fn scheduled(event: ScheduledEvent, env: Env, ctx: ScheduleContext) {
    let config = match Config::load(|name| lookup(&env, name)) {
        Ok(config) => config,
        Err(e) => return console_error!("{{\"cron\":\"not run\",\"config\":{:?}}}", e.to_string()),
    };
    let spawn = |f: LocalBoxFuture<'static, ()>| ctx.wait_until(f);
    let ports = Ports {
        spawn: &spawn,
        recent: None,
        fills: None,
        misses: Misses::Here,
        role: "cron",
    };
    let parts = match Parts::new(&env, &config, &ports, event.schedule() as u64) {
        Ok(parts) => parts,
        Err(e) => return console_error!("{{\"cron\":\"not run\",\"error\":{:?}}}", e.message),
    };
    let now_ms = event.schedule() as u64;
    let door = parts.door(&config, &ports, now_ms);
    for image in &config.prewarm {
        let report = door.prewarm(image, None).await;
        console_log!("{}", serde_json::json!({ "prewarm": report }));
    }
    let sweep = Sweep {
        config: &config,
        kv: &parts.kv,
        blobs: &parts.blobs,
        now: now_ms / 1000,
    };
    let swept = sweep.step().await;
    let line = serde_json::json!({ "retention": swept });
    if swept.errors.is_empty() {
        console_log!("{line}");
    } else {
        console_error!("{line}");
    }
}

/// A setting: a plain var or secret, or a `[vars]` table (given back as JSON).
fn lookup(env: &Env, name: &str) -> Option<String> {
    if let Ok(v) = env.var(name) {
        return Some(v.to_string());
    }
    // What `env.object_var` accepts (a plain object), as `JSON.stringify` writes it: going through
    // `serde_json::Value` would cost serde-wasm-bindgen's deserializer in the upload.
    let table = js_sys::Reflect::get(env, &name.into()).ok()?;
    let object: &js_sys::Object = wasm_bindgen::JsCast::dyn_ref(&table)?;
    if object.constructor().name() != "Object" {
        return None;
    }
    js_sys::JSON::stringify(&table).ok()?.as_string()
}

fn into_response(reply: Reply<Stream>) -> worker::Result<Response> {
    let headers = js::to_js_headers(&reply.headers)?;
    let body = match reply.body {
        Body::Empty | Body::Stream(None) => ResponseBody::Empty,
        Body::Bytes(b) => ResponseBody::Body(b),
        Body::Stream(Some(s)) => ResponseBody::Stream(s),
    };
    Ok(Response::builder()
        .with_status(reply.status)
        .with_headers(headers)
        .body(body))
}

/// Prints one log line (the core's, `crate::log`) at its level.
fn print((level, line): (crate::log::Level, String)) {
    match level {
        crate::log::Level::Error => console_error!("{line}"),
        crate::log::Level::Info => console_log!("{line}"),
    }
}
