//! The owner's side of minted cloud credentials: a `Coalescer` Durable Object named by a
//! credential record's key answers `POST /_frontdoor/mint` (a JSON `mint::Ask`) with the
//! credential, minting it only when the core's plan says so (`crate::upstream::cloud::mint`).
//! It runs under the object's turn, so concurrent asks wait and then find the fresh record.
//! One JSON log line per ask, never the credential.

use super::js;
use super::ports::{FetchUpstream, WorkerKv};
use crate::cache::keys;
use crate::cache::recent::Recent;
use crate::upstream::cloud::mint::{self, Answer, Ask};
use worker::{console_log, Date, Env, Request, Response};

pub const PATH: &str = "/_frontdoor/mint";

pub async fn serve(mut req: Request, env: &Env, recent: &Recent) -> worker::Result<Response> {
    // Bytes through serde_json: `Request::json` would go through serde-wasm-bindgen.
    let body = req.bytes().await.unwrap_or_default();
    let Ok(ask) = serde_json::from_slice::<Ask>(&body) else {
        return Response::error("not a mint ask", 400);
    };
    let config = match super::settings(env) {
        Ok(c) => c,
        Err(e) => return Response::error(e.to_string(), 500),
    };
    let Some(primary) = config.upstream(&ask.registry) else {
        return Response::error("no such registry", 404);
    };
    let upstream = match ask.upstream {
        0 => Some(primary),
        i => primary.fallbacks.get(i - 1),
    };
    let Some((upstream, auth)) = upstream.and_then(|u| u.cloud.as_ref().map(|a| (u, a))) else {
        return Response::error("no cloud credentials for that upstream", 404);
    };
    let Some(store) = js::binding(env, "CACHE") else {
        return Response::error("no CACHE binding", 500);
    };
    let now = Date::now().as_millis() / 1000;
    let kv = WorkerKv {
        store,
        recent: Some(recent),
        memo: Some((super::memo(), now)),
    };
    let port = FetchUpstream::new(config.body_limits());
    let key = keys::credential(&upstream.name, ask.upstream);
    let tokens = super::TOKENS.with(|t| *t);
    let result = mint::obtain(
        &kv,
        &port,
        tokens,
        &key,
        auth,
        &upstream.name,
        now,
        ask.refused.as_deref(),
    )
    .await;
    let answer = Answer::of(result);
    console_log!(
        "{}",
        serde_json::json!({
            "role": "minter",
            "registry": upstream.name,
            "upstream": ask.upstream,
            "kind": auth.kind(),
            "refused": ask.refused.is_some(),
            "calls": answer.calls,
            "expires_at": answer.credential.as_ref().map(|c| c.expires_at),
            "error": answer.error,
            "notes": answer.notes,
        })
    );
    Response::from_json(&answer)
}
