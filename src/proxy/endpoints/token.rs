//! `/token`, the door's own token server: credentials (Basic, the OAuth2 password grant, or
//! none) exchanged for a short-lived token granting pull on what the principal may read; and the
//! `401` challenge that sends a client there.

use super::*;

impl<K, B, U, C> Door<'_, K, B, U, C>
where
    K: Kv,
    U: Upstream,
    B: Blobs<Body = U::Body>,
    C: Coalesce<Body = U::Body>,
{
    /// 401 with the challenge that sends a client to the door's `/token` for `repository`.
    pub(in crate::proxy) fn challenge(
        &self,
        req: &ClientRequest<'_>,
        repository: Option<&str>,
        why: &str,
    ) -> RegistryError {
        // `PUBLIC_URL` when set: the client's `Host` header does not choose where it sends its
        // credentials next.
        let public = self.config.public_url.as_ref();
        let origin = public
            .map(|u| u.as_str().trim_end_matches('/'))
            .or(req.origin)
            .unwrap_or("");
        let service = origin.split("://").nth(1).unwrap_or(origin);
        let mut value = format!("Bearer realm=\"{origin}/token\",service=\"{service}\"");
        if let Some(repository) = repository {
            value.push_str(&format!(",scope=\"repository:{repository}:pull\""));
        }
        let mut e = RegistryError::new(ErrorCode::Unauthorized, why);
        e.www_authenticate = Some(value);
        e
    }

    /// `/token`: exchanges credentials (Basic on GET, the OAuth2 password grant on POST, or none)
    /// for a short-lived token granting pull on the requested repositories the principal may read —
    /// and only those.
    pub(in crate::proxy) fn token(
        &self,
        post: bool,
        query: &str,
        req: &ClientRequest<'_>,
    ) -> Result<Reply<U::Body>, RegistryError> {
        let access = &self.config.access;
        let unauthorized = || {
            RegistryError::new(
                ErrorCode::Unauthorized,
                "the user name or password is wrong",
            )
        };
        let form_body = if post {
            std::str::from_utf8(req.body.unwrap_or_default()).unwrap_or("")
        } else {
            query
        };
        let form: Vec<(String, String)> = form_urlencoded::parse(form_body.as_bytes())
            .into_owned()
            .collect();
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let principal = if post {
            match field("grant_type") {
                Some("password") => access
                    .login(
                        field("username").unwrap_or(""),
                        field("password").unwrap_or(""),
                    )
                    .map_err(|_| unauthorized())?,
                _ => {
                    return Err(RegistryError::new(
                        ErrorCode::Unsupported,
                        "only grant_type=password is supported",
                    )
                    .with_status(400));
                }
            }
        } else {
            match access.authenticate(req.authorization, self.now) {
                Ok(Principal::Token { .. }) | Err(_) => return Err(unauthorized()),
                Ok(p) => p,
            }
        };
        let mut granted = Vec::new();
        for scope in form
            .iter()
            .filter(|(k, _)| k == "scope")
            .flat_map(|(_, v)| v.split(' '))
        {
            let Some(rest) = scope.strip_prefix("repository:") else {
                continue;
            };
            let Some((name, actions)) = rest.rsplit_once(':') else {
                continue;
            };
            if !actions.split(',').any(|a| a == "pull") {
                continue;
            }
            let Ok(target) = resolve_name(self.config, name, req.line.host) else {
                continue;
            };
            let canonical = format!("{}/{}", target.registry, target.repository);
            if access.can_pull(&principal, &canonical) && !granted.contains(&canonical) {
                granted.push(canonical);
            }
        }
        let (token, ttl) = access
            .issue(&principal, granted, self.now)
            .unwrap_or_else(|| ("public".to_owned(), 3600));
        let body = serde_json::json!({"token": token, "access_token": token, "expires_in": ttl});
        let mut headers = Headers::new();
        headers.set("cache-control", "no-store");
        Ok(reply(
            200,
            headers,
            Body::Bytes(body.to_string().into_bytes()),
            false,
        )
        .with_type(JSON))
    }
}
