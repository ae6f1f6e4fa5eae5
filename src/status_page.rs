//! `GET /`: the status page a person reads at a glance — hit ratio, bytes from cache against bytes
//! from upstream, the quota each upstream last reported, the most pulled images, the last errors.
//! Pure: [`Stats`] in, HTML out; every name is escaped.

use crate::stats::Stats;
use std::fmt::Write as _;

/// The page's one stylesheet, inline; [`content_security_policy`] allows exactly it.
const STYLE: &str = "body{font:15px system-ui,sans-serif;margin:2em;color:#222}h1{font-size:1.4em}\
.tiles{display:flex;gap:1em;flex-wrap:wrap}.tile{border:1px solid #ccc;border-radius:8px;padding:1em 1.4em;min-width:12em}\
.big{font-size:2em;font-weight:600}table{border-collapse:collapse;margin:1em 0}td,th{border-bottom:1px solid #ddd;padding:.3em .8em;text-align:left}\
.num{text-align:right;font-variant-numeric:tabular-nums}.bad{color:#a00}";

/// The page's `Content-Security-Policy`: nothing may load or run but its own inline stylesheet
/// (allowed by its SHA-256, not by `'unsafe-inline'`), no form may post, no page may frame it.
/// The page has no script, image or font; its one link (to the JSON) is a plain navigation.
pub fn content_security_policy() -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(STYLE));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

pub fn render(stats: &Stats, now: u64) -> String {
    let mut total = (0u64, 0u64, 0u64, 0u64); // served from cache, answers, bytes cache, bytes upstream
    for r in stats.registries.values() {
        total.0 += r.hits + r.revalidated + r.stale_serves;
        total.1 += r.hits + r.revalidated + r.stale_serves + r.misses;
        total.2 += r.bytes_from_cache;
        total.3 += r.bytes_from_upstream;
    }
    let mut html = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>registry front door</title><style>",
    );
    html.push_str(STYLE);
    html.push_str("</style></head><body>");
    html.push_str("<h1>registry front door</h1>");
    let _ = write!(
        html,
        "<div class=\"tiles\"><div class=\"tile\"><div>hit ratio</div><div class=\"big\" id=\"hit-ratio\">{}</div><div>{} of {} answers from the cache</div></div>\
<div class=\"tile\"><div>bytes from cache</div><div class=\"big\" id=\"bytes-cache\">{}</div><div>{} from upstream</div></div></div>",
        percent(total.0, total.1),
        total.0,
        total.1,
        human(total.2),
        human(total.3)
    );

    html.push_str("<h2>Registries</h2><table id=\"registries\"><tr><th>registry</th><th>quota remaining</th><th class=\"num\">hits</th><th class=\"num\">misses</th><th class=\"num\">revalidated</th><th class=\"num\">stale</th><th class=\"num\">upstream calls</th><th class=\"num\">errors</th></tr>");
    for (name, r) in &stats.registries {
        let quota = match (&r.quota_remaining, &r.quota_limit) {
            (Some(rem), Some(lim)) => format!("{} of {}", window_free(rem), window_free(lim)),
            (Some(rem), None) => window_free(rem).to_owned(),
            _ => "not reported".to_owned(),
        };
        let calls: u64 = r.upstream_calls.values().sum();
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            escape(name),
            escape(&quota),
            r.hits,
            r.misses,
            r.revalidated,
            r.stale_serves,
            calls,
            r.errors
        );
    }
    html.push_str("</table>");

    let mut images: Vec<(String, u64)> = stats
        .registries
        .iter()
        .flat_map(|(reg, r)| {
            r.images
                .iter()
                .map(move |(img, n)| (format!("{reg}/{img}"), *n))
        })
        .collect();
    images.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    html.push_str("<h2>Top images</h2><table id=\"images\"><tr><th>image</th><th class=\"num\">manifest requests</th></tr>");
    for (image, n) in images.iter().take(10) {
        let _ = write!(
            html,
            "<tr><td>{}</td><td class=\"num\">{n}</td></tr>",
            escape(image)
        );
    }
    html.push_str("</table>");

    html.push_str("<h2>Policy</h2><table id=\"policy\"><tr><th>registry</th><th class=\"num\">refused (DENY_LATEST, DENY, VERIFY)</th></tr>");
    for (name, r) in &stats.registries {
        let _ = write!(
            html,
            "<tr><td>{}</td><td class=\"num\">{}</td></tr>",
            escape(name),
            r.policy_refusals
        );
    }
    html.push_str("</table><h3>Immutable tags moved upstream</h3><table id=\"tag-moves\"><tr><th>when</th><th>tag</th><th>kept serving</th><th>upstream now names</th></tr>");
    for m in stats.tag_moves.iter().rev() {
        let _ = write!(
            html,
            "<tr class=\"bad\"><td>{} s ago</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            now.saturating_sub(m.at),
            escape(&m.image),
            escape(&m.kept),
            escape(&m.upstream)
        );
    }
    if stats.tag_moves.is_empty() {
        html.push_str("<tr><td colspan=\"4\">none</td></tr>");
    }
    html.push_str("</table>");

    html.push_str("<h2>Last errors</h2><table id=\"errors\"><tr><th>when</th><th>status</th><th>what</th></tr>");
    for e in stats.last_errors.iter().rev() {
        let _ = write!(
            html,
            "<tr class=\"bad\"><td>{} s ago</td><td>{}</td><td>{}</td></tr>",
            now.saturating_sub(e.at),
            e.status,
            escape(&e.what)
        );
    }
    if stats.last_errors.is_empty() {
        html.push_str("<tr><td colspan=\"3\">none</td></tr>");
    }
    html.push_str(
        "</table><p>JSON: <a href=\"/_frontdoor/status\">/_frontdoor/status</a></p></body></html>",
    );
    html
}

/// The minted cloud credentials: kind, and when each expires and is refreshed (never the
/// credential itself, which the rows do not carry).
pub fn credentials(rows: &[(String, serde_json::Value)], now: u64) -> String {
    let mut html = String::from("<h2>Upstream credentials</h2><table id=\"credentials\"><tr><th>upstream</th><th>kind</th><th>expires</th><th>refresh</th><th>last error</th></tr>");
    let when = |v: &serde_json::Value| match v.as_u64() {
        Some(t) if t >= now => format!("in {} s", t - now),
        Some(t) => format!("{} s ago", now - t),
        None => "none minted".to_owned(),
    };
    for (name, row) in rows {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(name),
            escape(row["kind"].as_str().unwrap_or_default()),
            when(&row["expires_at"]),
            when(&row["refresh_at"]),
            escape(row["last_error"].as_str().unwrap_or("none")),
        );
    }
    html.push_str("</table>");
    html
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "–".to_owned();
    }
    format!("{:.1}%", part as f64 * 100.0 / whole as f64)
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `97;w=21600` → `97`.
fn window_free(v: &str) -> &str {
    v.split(';').next().unwrap_or(v)
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{ErrorEvent, RegistryStats};

    #[test]
    fn renders_the_numbers_and_escapes_names() {
        let mut stats = Stats::default();
        let r = RegistryStats {
            hits: 3,
            misses: 1,
            bytes_from_cache: 3 * 1024 * 1024,
            bytes_from_upstream: 1024,
            quota_remaining: Some("97;w=21600".into()),
            quota_limit: Some("100;w=21600".into()),
            images: [("library/alpine".to_owned(), 4)].into(),
            ..RegistryStats::default()
        };
        stats.registries.insert("docker.io".into(), r);
        stats.last_errors.push(ErrorEvent {
            at: 90,
            status: 502,
            what: "manifest <script>x</script>".into(),
        });
        stats.tag_moves.push(crate::stats::TagMove {
            at: 95,
            image: "docker.io/acme/app:v1".into(),
            kept: "sha256:aa".into(),
            upstream: "sha256:bb".into(),
        });
        let html = render(&stats, 100);
        assert!(html.contains("<td>docker.io/acme/app:v1</td><td>sha256:aa</td><td>sha256:bb</td>"));
        assert!(html.contains(">75.0%<"), "hit ratio");
        assert!(html.contains("3.0 MiB") && html.contains("1.0 KiB from upstream"));
        assert!(html.contains("97 of 100"));
        assert!(html.contains("docker.io/library/alpine</td><td class=\"num\">4"));
        assert!(html.contains("10 s ago") && html.contains("&lt;script&gt;"));
        assert!(!html.contains("<script>"));
        assert!(render(&Stats::default(), 0).contains("none"));
    }
}
