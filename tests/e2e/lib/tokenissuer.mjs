// A Docker-token-spec issuer for distribution's `auth.token`: ES256 JWTs whose `x5c` header carries
// a self-signed certificate that is also the registry's rootcertbundle — the flow Docker Hub's
// auth.docker.io gives clients. It answers GET with Basic credentials and the OAuth2 password-grant
// POST that containerd sends first.
//
// Policy: `users` may pull, push and delete anything; anonymous clients may pull only repositories that do
// not start with `private/`.
import crypto from "node:crypto";
import { readFileSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { execFileP } from "./util.mjs";

const b64url = (buf) => Buffer.from(buf).toString("base64url");

/**
 * `authenticate(user, password)`, if given, decides Basic credentials instead of `users` (how a
 * cloud registry's token server takes minted or specially formed credentials); `ttl` is the
 * lifetime of the tokens it issues (300 s).
 */
export async function startTokenIssuer({ dir, port, service, issuer = "frontdoor-test-issuer", users, authenticate, ttl = 300 }) {
  const key = path.join(dir, "token.key");
  const cert = path.join(dir, "token.crt");
  await execFileP("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=frontdoor-test-issuer",
  ]);
  const keyPem = readFileSync(key, "utf8");
  const certDer = new crypto.X509Certificate(readFileSync(cert)).raw;
  const stats = { requests: 0, granted: 0, refused: 0, byMethod: {} };

  function sign(claims) {
    const header = { alg: "ES256", typ: "JWT", x5c: [certDer.toString("base64")] };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const sig = crypto.sign("sha256", Buffer.from(input), { key: keyPem, dsaEncoding: "ieee-p1363" });
    return `${input}.${b64url(sig)}`;
  }

  function grant(account, scopes) {
    const access = [];
    for (const scope of scopes) {
      const [type, name, actions] = scope.split(":");
      if (type !== "repository" || !name || !actions) continue;
      const wanted = actions.split(",");
      const allowed = account
        ? wanted.filter((a) => a === "pull" || a === "push" || a === "delete")
        : name.startsWith("private/") ? [] : wanted.filter((a) => a === "pull");
      if (allowed.length) access.push({ type, name, actions: allowed });
    }
    return access;
  }

  function answer(res, account, scopes) {
    const now = Math.floor(Date.now() / 1000);
    const access = grant(account, scopes);
    if (access.length) stats.granted++;
    else if (scopes.length) stats.refused++;
    const token = sign({
      iss: issuer, sub: account || "", aud: service, exp: now + ttl, nbf: now - 10, iat: now,
      jti: crypto.randomUUID(), access,
    });
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ token, access_token: token, expires_in: ttl, issued_at: new Date(now * 1000).toISOString() }));
  }

  function deny(res) {
    res.writeHead(401, { "content-type": "application/json", "www-authenticate": 'Basic realm="token"' });
    res.end(JSON.stringify({ errors: [{ code: "UNAUTHORIZED", message: "bad credentials" }] }));
  }

  const server = http.createServer((req, res) => {
    stats.requests++;
    stats.byMethod[req.method] = (stats.byMethod[req.method] || 0) + 1;
    const url = new URL(req.url, "http://x");
    if (url.pathname !== "/token") { res.writeHead(404); return res.end(); }
    if (req.method === "GET") {
      let account = null;
      const auth = req.headers.authorization;
      if (auth) {
        const [scheme, value] = auth.split(" ");
        const [user, ...rest] = Buffer.from(value || "", "base64").toString().split(":");
        const known = authenticate ? authenticate(user, rest.join(":")) : users[user] !== undefined && users[user] === rest.join(":");
        if (scheme !== "Basic" || !known) return deny(res);
        account = user;
      }
      return answer(res, account, url.searchParams.getAll("scope"));
    }
    if (req.method === "POST") {
      let body = "";
      req.on("data", (d) => (body += d));
      req.on("end", () => {
        const form = new URLSearchParams(body);
        let account = null;
        if (form.get("grant_type") === "password") {
          const user = form.get("username");
          if (users[user] === undefined || users[user] !== form.get("password")) return deny(res);
          account = user;
        }
        answer(res, account, (form.get("scope") || "").split(" ").filter(Boolean));
      });
      return;
    }
    res.writeHead(405);
    res.end();
  });
  await new Promise((r) => server.listen(port, "127.0.0.1", r));
  return {
    realm: `http://127.0.0.1:${port}/token`,
    service,
    issuer,
    cert,
    stats,
    /** A token straight from the issuer, for asking the registry directly. */
    async token(user, scope) {
      const url = `http://127.0.0.1:${port}/token?service=${encodeURIComponent(service)}&scope=${encodeURIComponent(scope)}`;
      const headers = user ? { authorization: `Basic ${Buffer.from(`${user}:${users[user]}`).toString("base64")}` } : {};
      const r = await fetch(url, { headers });
      return (await r.json()).token;
    },
    stop: () => new Promise((r) => server.close(r)),
  };
}
