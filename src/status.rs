//! `GET /` (the HTML status page) and `GET /_frontdoor/status` (the same counters as JSON): who
//! may read them, and what they answer. They name private repositories and recent errors, so on a
//! door with `ACCESS` only a person may read them — a configured user, by Basic credentials or by a
//! token issued to that user — or whoever holds `ADMIN_TOKEN` (`Authorization: Bearer …`). An
//! anonymous token, which `/token` hands anyone, is anonymous. Without `ACCESS` they are public,
//! like everything else on the door.
//!
//! Pure but for the counters, which come through [`StatsSource`]: nothing is fetched for a client
//! that may not read them.

use crate::access::bearer_is;
use crate::config::Config;
use crate::error::{ErrorCode, RegistryError};
use crate::ports::{Body, Headers, Reply, StatsSource};
use crate::proxy::{error_reply, reply, ClientRequest, Outcome};
use crate::route::{route, Method, Route};

/// The challenge a refused status request gets: Basic, so a browser asks its person for a user
/// name and password.
pub const CHALLENGE: &str = "Basic realm=\"frontdoor status\"";

/// Whether the client behind `authorization` may read the status (see the module docs).
pub fn authorize(
    config: &Config,
    authorization: Option<&str>,
    now: u64,
) -> Result<(), RegistryError> {
    let access = &config.access;
    if !access.is_restricted() {
        return Ok(());
    }
    if let Some(admin) = &config.admin_token {
        if bearer_is(&admin.0, authorization) {
            return Ok(());
        }
    }
    let why = match access.authenticate(authorization, now) {
        Ok(p) if access.may_read_status(&p) => return Ok(()),
        Ok(_) => "the status needs a user's credentials or the admin token on this door",
        Err(_) => "the credentials are wrong or expired",
    };
    let mut e = RegistryError::new(ErrorCode::Unauthorized, why);
    e.www_authenticate = Some(CHALLENGE.to_owned());
    Err(e)
}

/// Answers `req` if it asks for the status (else `None`: it is for the door): checks who asks,
/// then reads the counters from `source` and renders them.
pub async fn serve<S, B>(
    config: &Config,
    req: &ClientRequest<'_>,
    now: u64,
    source: &S,
) -> Option<(Reply<B>, Outcome)>
where
    S: StatsSource,
{
    if !matches!(req.line.path, "/" | "/_frontdoor/status") {
        return None;
    }
    let Ok(routed) = route(config, req.line) else {
        return None; // the door answers the refusal (a method other than GET or HEAD)
    };
    let Route::Status { page } = routed.route else {
        return None;
    };
    let head = routed.method == Method::Head;
    let outcome = Outcome {
        kind: crate::route::Kind::Status,
        ..Outcome::default()
    };
    let answer = match authorize(config, req.authorization, now) {
        Err(e) => error_reply(&e, head),
        Ok(()) => match source.current().await {
            Ok(stats) => {
                let credentials = credentials(config, source).await;
                answer_with(page, &stats, &credentials, now, head)
            }
            Err(e) => error_reply(
                &RegistryError::new(ErrorCode::Unknown, format!("the counters: {e}")),
                head,
            ),
        },
    };
    Some((answer, outcome))
}

/// Per upstream with minted cloud credentials (`crate::upstream::cloud`): its name (`<registry>`,
/// or `<registry> fallback <i>`) and what [`crate::upstream::cloud::mint::status`] shows of it.
async fn credentials<S: StatsSource>(
    config: &Config,
    source: &S,
) -> Vec<(String, serde_json::Value)> {
    let mut rows = Vec::new();
    for (name, primary) in &config.upstreams {
        let all = std::iter::once(primary).chain(primary.fallbacks.iter());
        for (i, upstream) in all.enumerate() {
            let Some(auth) = &upstream.cloud else {
                continue;
            };
            let record = source
                .credential(&crate::cache::keys::credential(name, i))
                .await
                .and_then(|b| {
                    serde_json::from_slice::<crate::upstream::cloud::mint::Record>(&b).ok()
                })
                .filter(|r| r.identity == auth.identity());
            let label = match i {
                0 => name.clone(),
                i => format!("{name} fallback {i}"),
            };
            rows.push((
                label,
                crate::upstream::cloud::mint::status(auth.kind(), record.as_ref()),
            ));
        }
    }
    rows
}

/// The page (with its own [`crate::status_page::content_security_policy`]) or the JSON.
pub fn answer<B>(page: bool, stats: &crate::stats::Stats, now: u64, head: bool) -> Reply<B> {
    answer_with(page, stats, &[], now, head)
}

/// [`answer`], with the minted credentials' kinds and expiries.
pub fn answer_with<B>(
    page: bool,
    stats: &crate::stats::Stats,
    credentials: &[(String, serde_json::Value)],
    now: u64,
    head: bool,
) -> Reply<B> {
    let mut headers = Headers::new();
    headers.set("cache-control", "no-store");
    let (content_type, body) = if page {
        headers.set(
            "content-security-policy",
            crate::status_page::content_security_policy(),
        );
        let mut html = crate::status_page::render(stats, now);
        if !credentials.is_empty() {
            let table = crate::status_page::credentials(credentials, now);
            html = html.replacen("<p>JSON: ", &format!("{table}<p>JSON: "), 1);
        }
        ("text/html; charset=utf-8", html.into_bytes())
    } else {
        let json = serde_json::json!({
            "generated_at": now,
            "registries": stats.registries,
            "last_errors": stats.last_errors,
            "credentials": credentials.iter().cloned().collect::<serde_json::Map<_, _>>(),
            "tag_moves": stats.tag_moves,
        });
        (crate::oci::JSON, json.to_string().into_bytes())
    };
    headers.set("content-type", content_type);
    reply(200, headers, Body::Bytes(body), head)
}
