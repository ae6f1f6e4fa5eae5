// Scripted stand-ins for the cloud services the door mints credentials from, each checking what
// the real service checks with an implementation of its own (never the door's code):
// - `startEcr`: ECR's API (`GetAuthorizationToken`), recomputing every call's SigV4 signature
//   with `@smithy/signature-v4` (the AWS SDK's signer) and refusing mismatches, skew over 5
//   minutes, unknown keys and the wrong service or region; it issues short-lived tokens, and a
//   Basic-auth front on a real docker-registry accepts only current ones (`AWS:<password>`),
//   answering blob GETs with a 307 to an "S3" host that refuses any `Authorization`.
// - `startGoogle`: Google's OAuth2 token endpoint, verifying the JWT's RS256 signature against the
//   service account's public key with Node's crypto, and its aud, iss, scope, iat and exp; the
//   access tokens it issues are what a token server takes as `oauth2accesstoken`.
import crypto from "node:crypto";
import http from "node:http";
import { SignatureV4 } from "@smithy/signature-v4";
import { Hash } from "@smithy/hash-node";
import { recordSecrets } from "./door.mjs";
import { freePort } from "./util.mjs";

const now = () => Math.floor(Date.now() / 1000);
const readBody = (req) => new Promise((resolve) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => resolve(Buffer.concat(chunks)));
});
async function listen(handler) {
  const server = http.createServer((req, res) => {
    handler(req, res).catch((e) => { res.writeHead(500); res.end(String(e)); });
  });
  const port = await freePort();
  await new Promise((r) => server.listen(port, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${port}`,
    stop: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }),
  };
}
const json = (res, status, body, headers = {}) => {
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(JSON.stringify(body));
};

/** `20150830T123600Z` → Date. */
const amzDate = (s) => new Date(s.replace(/^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z$/, "$1-$2-$3T$4:$5:$6Z"));

/**
 * ECR. `keys`: access key id → secret; `region`; `lifetime`: seconds a token lives; `registry`:
 * the docker-registry URL the Basic front forwards to. `mode` ("ok" | "fail" | "revoked") makes
 * the API answer 500 or refuse the key (UnrecognizedClientException).
 */
export async function startEcr({ keys, region, lifetime, registry }) {
  const stats = { calls: 0, mints: [], refused: [], frontOk: 0, frontRefused: 0, s3: 0, s3RefusedAuthorization: 0 };
  const valid = new Map(); // password → expiry (Unix s)
  const state = { mode: "ok" };

  async function check(req, body) {
    if (req.method !== "POST" || new URL(req.url, "http://x").pathname !== "/") return "wrong method or path";
    if (req.headers["x-amz-target"] !== "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken") return "wrong X-Amz-Target";
    if (req.headers["content-type"] !== "application/x-amz-json-1.1") return "wrong Content-Type";
    if (body.toString() !== "{}") return "wrong body";
    const auth = req.headers.authorization || "";
    const m = auth.match(/^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$/);
    if (!m) return "no SigV4 Authorization";
    const [, keyId, day, scopeRegion, service, signedHeaders] = m;
    const secret = keys[keyId];
    if (!secret) return "UnrecognizedClientException";
    if (scopeRegion !== region) return `wrong region ${scopeRegion}`;
    if (service !== "ecr") return `wrong service ${service}`;
    const stamp = req.headers["x-amz-date"] || "";
    const at = amzDate(stamp);
    if (Number.isNaN(at.getTime()) || !stamp.startsWith(day)) return "bad X-Amz-Date";
    if (Math.abs(at.getTime() - Date.now()) > 5 * 60 * 1000) return "Signature expired (clock skew)";
    const headers = {};
    for (const h of signedHeaders.split(";")) {
      if (req.headers[h] === undefined) return `signed header ${h} missing`;
      headers[h] = req.headers[h];
    }
    for (const h of ["host", "x-amz-date", "x-amz-target", "content-type"]) if (!(h in headers)) return `${h} not signed`;
    const signer = new SignatureV4({
      credentials: { accessKeyId: keyId, secretAccessKey: secret },
      region, service: "ecr", sha256: Hash.bind(null, "sha256"), applyChecksum: false,
    });
    const [hostname, port] = req.headers.host.split(":");
    const signed = await signer.sign(
      { method: "POST", protocol: "http:", hostname, port: Number(port), path: "/", query: {}, headers, body: body.toString() },
      { signingDate: at },
    );
    return signed.headers.authorization === auth ? null : "SignatureDoesNotMatch";
  }

  const api = await listen(async (req, res) => {
    stats.calls++;
    const body = await readBody(req);
    const why = await check(req, body);
    if (why) {
      stats.refused.push(why);
      return json(res, why === "UnrecognizedClientException" ? 400 : 403, { __type: why.split(" ")[0], message: why });
    }
    if (state.mode === "fail") { stats.refused.push("failing"); return json(res, 500, { __type: "ServerException", message: "scripted failure" }); }
    if (state.mode === "revoked") { stats.refused.push("revoked"); return json(res, 400, { __type: "UnrecognizedClientException", message: "The security token included in the request is invalid." }); }
    const password = crypto.randomBytes(24).toString("base64url");
    const expiresAt = now() + lifetime;
    valid.set(password, expiresAt);
    const authorizationToken = Buffer.from(`AWS:${password}`).toString("base64");
    recordSecrets([password, authorizationToken]);
    stats.mints.push({ at: Date.now(), expiresAt });
    json(res, 200, { authorizationData: [{ authorizationToken, expiresAt, proxyEndpoint: front?.url }] });
  });

  let s3;
  const front = await listen(async (req, res) => {
    const [scheme, value] = (req.headers.authorization || "").split(" ");
    const [user, ...rest] = Buffer.from(value || "", "base64").toString().split(":");
    const expiry = valid.get(rest.join(":"));
    if (scheme !== "Basic" || user !== "AWS" || !expiry || expiry <= now()) {
      stats.frontRefused++;
      req.resume();
      return json(res, 401, { errors: [{ code: "DENIED", message: "Your authorization token has expired. Reauthenticate and try again." }] },
        { "www-authenticate": `Basic realm="${front.url}/",service="ecr.amazonaws.com"` });
    }
    stats.frontOk++;
    const blob = req.method === "GET" && req.url.match(/^\/v2\/(.+)\/blobs\/(sha256:[0-9a-f]{64})$/);
    if (blob) {
      // ECR's layers live in S3: a presigned URL that takes no Authorization.
      res.writeHead(307, { location: `${s3.url}/layers/${blob[1]}/${blob[2]}?X-Amz-Signature=scripted` });
      return res.end();
    }
    const headers = { ...req.headers };
    for (const h of ["authorization", "host", "connection", "content-length"]) delete headers[h];
    const r = await fetch(`${registry}${req.url}`, { method: req.method, headers });
    const out = {};
    for (const [k, v] of r.headers) if (k !== "content-encoding" && k !== "transfer-encoding") out[k] = v;
    res.writeHead(r.status, out);
    res.end(req.method === "HEAD" ? undefined : Buffer.from(await r.arrayBuffer()));
  });
  s3 = await listen(async (req, res) => {
    if (req.headers.authorization) {
      stats.s3RefusedAuthorization++;
      return json(res, 400, { error: "Only one auth mechanism allowed" });
    }
    const m = req.url.match(/^\/layers\/(.+)\/(sha256:[0-9a-f]{64})\?/);
    if (!m) { res.writeHead(404); return res.end(); }
    stats.s3++;
    const r = await fetch(`${registry}/v2/${m[1]}/blobs/${m[2]}`);
    res.writeHead(r.status, { "content-length": r.headers.get("content-length"), "content-type": "application/octet-stream" });
    res.end(Buffer.from(await r.arrayBuffer()));
  });

  return {
    api: api.url, url: front.url, stats, state,
    /** Forgets every token issued so far (a revoked or rotated credential). */
    revokeTokens: () => valid.clear(),
    /** Signs a call with `@smithy/signature-v4` (for checking the checker). */
    async signedCall({ keyId, secret, signRegion = region, service = "ecr", date = new Date() }) {
      const host = new URL(api.url).host;
      const signer = new SignatureV4({ credentials: { accessKeyId: keyId, secretAccessKey: secret }, region: signRegion, service, sha256: Hash.bind(null, "sha256"), applyChecksum: false });
      const [hostname, port] = host.split(":");
      const signed = await signer.sign({
        method: "POST", protocol: "http:", hostname, port: Number(port), path: "/", query: {}, body: "{}",
        headers: { host, "content-type": "application/x-amz-json-1.1", "x-amz-target": "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken" },
      }, { signingDate: date });
      const r = await fetch(`${api.url}/`, { method: "POST", headers: signed.headers, body: "{}" });
      return { status: r.status, body: await r.json() };
    },
    stop: async () => { await api.stop(); await front.stop(); await s3.stop(); },
  };
}

/**
 * Google's token endpoint for one service account (`clientEmail`, its `publicKey`): issues
 * access tokens living `lifetime` seconds. `mode` ("ok" | "fail" | "revoked") answers 500 or
 * `invalid_grant`. `isCurrent(token)` is what a registry's token server asks.
 */
export async function startGoogle({ clientEmail, publicKey, lifetime }) {
  const stats = { calls: 0, mints: [], refused: [] };
  const valid = new Map();
  const state = { mode: "ok" };
  let tokenUrl;
  const b64json = (s) => JSON.parse(Buffer.from(s, "base64url").toString());
  function check(form) {
    if (form.get("grant_type") !== "urn:ietf:params:oauth:grant-type:jwt-bearer") return "unsupported_grant_type";
    const parts = (form.get("assertion") || "").split(".");
    if (parts.length !== 3) return "invalid_request";
    let header, claims;
    try { header = b64json(parts[0]); claims = b64json(parts[1]); } catch { return "invalid_request"; }
    if (header.alg !== "RS256") return "invalid_grant (alg)";
    const ok = crypto.verify("RSA-SHA256", Buffer.from(`${parts[0]}.${parts[1]}`), publicKey, Buffer.from(parts[2], "base64url"));
    if (!ok) return "invalid_grant (signature)";
    if (claims.iss !== clientEmail) return "invalid_grant (iss)";
    if (claims.aud !== tokenUrl) return "invalid_grant (aud)";
    if (!String(claims.scope || "").split(" ").includes("https://www.googleapis.com/auth/cloud-platform")) return "invalid_scope";
    const t = now();
    if (!(Math.abs(claims.iat - t) <= 300)) return "invalid_grant (iat)";
    if (!(claims.exp > t && claims.exp - claims.iat <= 3600)) return "invalid_grant (exp)";
    return null;
  }
  const server = await listen(async (req, res) => {
    stats.calls++;
    const form = new URLSearchParams((await readBody(req)).toString());
    if (req.method !== "POST" || new URL(req.url, "http://x").pathname !== "/token") { res.writeHead(404); return res.end(); }
    const why = check(form);
    if (why) { stats.refused.push(why); return json(res, 400, { error: why.split(" ")[0], error_description: why }); }
    if (state.mode === "fail") { stats.refused.push("failing"); return json(res, 500, { error: "internal_failure" }); }
    if (state.mode === "revoked") { stats.refused.push("revoked"); return json(res, 400, { error: "invalid_grant", error_description: "Invalid JWT Signature." }); }
    const token = `ya29.${crypto.randomBytes(24).toString("base64url")}`;
    valid.set(token, now() + lifetime);
    recordSecrets([token]);
    stats.mints.push({ at: Date.now(), expiresAt: now() + lifetime });
    json(res, 200, { access_token: token, expires_in: lifetime, token_type: "Bearer" });
  });
  tokenUrl = `${server.url}/token`;
  return {
    tokenUrl, stats, state,
    isCurrent: (token) => (valid.get(token) ?? 0) > now(),
    revokeTokens: () => valid.clear(),
    stop: server.stop,
  };
}
