// A real upstream: distribution's `docker-registry` (Debian) behind token auth, with a counting
// proxy in front so tests can assert how many manifest and blob requests reached it.
import crypto from "node:crypto";
import { writeFileSync, mkdirSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { freePort, skopeo, startProcess, waitFor } from "./util.mjs";
import { startTokenIssuer } from "./tokenissuer.mjs";

export const SERVICE = "frontdoor-test-registry";

/**
 * Starts issuer + registry + counting proxy. `users`: name → password (full access; the issuer
 * reads it on every token request, so changing a password revokes it). `tokenTtl`: the tokens'
 * lifetime (s; the issuer's default when absent).
 * `redirectBlobs`: blob GETs the registry answers 200 are turned into a 307 to a second host (a
 * "CDN", as Docker Hub and Quay do) that refuses any request carrying `Authorization`.
 */
export async function startUpstream({ dir, users, redirectBlobs = false, tokenTtl }) {
  const tokenPort = await freePort();
  const regPort = await freePort();
  const issuer = await startTokenIssuer({ dir, port: tokenPort, service: SERVICE, users, ttl: tokenTtl });
  const registry = await startRegistry({
    dir,
    port: regPort,
    expect: 401,
    extra: `auth:
  token:
    realm: ${issuer.realm}
    service: ${SERVICE}
    issuer: ${issuer.issuer}
    rootcertbundle: ${issuer.cert}
`,
  });
  const registryUrl = registry.url;

  const [svcUser] = Object.keys(users);
  const cdn = redirectBlobs
    ? await startCdn(registryUrl, (repo) => issuer.token(svcUser, `repository:${repo}:pull`))
    : null;
  const counter = await startCountingProxy(regPort, cdn?.url);
  return {
    issuer,
    registryUrl,
    /** Where the door should send its upstream requests. */
    url: counter.url,
    /** `127.0.0.1:PORT` for pushing straight to the registry. */
    host: `127.0.0.1:${regPort}`,
    counts: counter.counts,
    resetCounts: counter.reset,
    cdn,
    /**
     * Pushes the OCI layout `layout` (tag v1) to `ref` straight to the registry with skopeo, as
     * the first user (the service account); `all` pushes every platform of an index.
     */
    /** `format: "v2s2"` stores Docker schema 2 manifests (and a manifest list) instead of OCI's. */
    async push(layout, ref, { all = false, format } = {}) {
      const [user, password] = Object.entries(users)[0];
      await skopeo(["copy", ...(all ? ["--all"] : []), ...(format ? ["--format", format] : []), "--dest-tls-verify=false",
        "--dest-creds", `${user}:${password}`, `oci:${layout}:v1`, `docker://127.0.0.1:${regPort}/${ref}`]);
    },
    async stop() {
      await counter.stop();
      await cdn?.stop();
      await registry.stop();
      await issuer.stop();
    },
  };
}

/**
 * Starts Debian's `docker-registry` with filesystem storage under `dir` on 127.0.0.1:`port`, plus
 * `extra` YAML (an `auth:` or `proxy:` section), and waits until `/v2/` answers `expect`.
 */
export async function startRegistry({ dir, port, extra = "", expect = 200, logLevel = "warn" }) {
  port ??= await freePort();
  const storage = path.join(dir, "storage");
  mkdirSync(storage, { recursive: true });
  const configPath = path.join(dir, "registry.yml");
  writeFileSync(configPath, `version: 0.1
log:
  level: ${logLevel}
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: ${storage}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:${port}
  secret: frontdoor-test-secret
${extra}`);
  const proc = startProcess("docker-registry", ["serve", configPath]);
  const url = `http://127.0.0.1:${port}`;
  await waitFor(async () => (await fetch(`${url}/v2/`)).status === expect, 15000, "docker-registry")
    .catch((e) => { throw new Error(`${e.message}\n${proc.output()}`); });
  return { url, host: `127.0.0.1:${port}`, output: proc.output, stop: proc.stop, child: proc.child };
}

/**
 * Forwards every request unchanged to the registry and counts it by method and kind
 * (`manifests`, `blobs`, `other`): counts[`GET blobs`], counts[`HEAD manifests`], …, and by the
 * registry's status too: counts[`GET manifests 200`], counts[`GET blobs 401`], ….
 */
export async function startCountingProxy(targetPort, redirectBlobsTo) {
  const counts = {};
  const server = http.createServer((req, res) => {
    const kind = /\/manifests\//.test(req.url) ? "manifests" : /\/blobs\//.test(req.url) ? "blobs" : "other";
    const key = `${req.method} ${kind}`;
    counts[key] = (counts[key] || 0) + 1;
    const upstream = http.request(
      { host: "127.0.0.1", port: targetPort, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        const answered = `${key} ${up.statusCode}`;
        counts[answered] = (counts[answered] || 0) + 1;
        const m = redirectBlobsTo && req.method === "GET" && up.statusCode === 200 && req.url.match(/^\/v2\/(.+)\/blobs\/([^/?]+)/);
        if (m) {
          up.resume();
          res.writeHead(307, { location: `${redirectBlobsTo}/cdn/${m[1]}/${m[2]}` });
          return res.end();
        }
        res.writeHead(up.statusCode, up.rawHeaders);
        up.pipe(res);
      },
    );
    upstream.on("error", () => { res.writeHead(502); res.end(); });
    req.pipe(upstream);
  });
  const port = await freePort();
  await new Promise((r) => server.listen(port, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${port}`,
    counts,
    reset: () => { for (const k of Object.keys(counts)) delete counts[k]; },
    stop: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }),
  };
}

/** A second host serving blobs by URL alone; any request with `Authorization` is refused (403). */
async function startCdn(registryUrl, tokenFor) {
  const stats = { served: 0, refusedAuthorization: 0 };
  const server = http.createServer(async (req, res) => {
    if (req.headers.authorization) {
      stats.refusedAuthorization++;
      res.writeHead(403);
      return res.end("Authorization is not accepted here");
    }
    const m = req.url.match(/^\/cdn\/(.+)\/(sha256:[0-9a-f]{64})$/);
    if (!m) { res.writeHead(404); return res.end(); }
    const headers = { authorization: `Bearer ${await tokenFor(m[1])}` };
    if (req.headers.range) headers.range = req.headers.range;
    const r = await fetch(`${registryUrl}/v2/${m[1]}/blobs/${m[2]}`, { headers });
    stats.served++;
    const out = { "content-length": r.headers.get("content-length") };
    if (r.headers.get("content-range")) out["content-range"] = r.headers.get("content-range");
    res.writeHead(r.status, out);
    res.end(Buffer.from(await r.arrayBuffer()));
  });
  const port = await freePort();
  await new Promise((r) => server.listen(port, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${port}`,
    stats,
    stop: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }),
  };
}

/** Pushes raw content straight to the registry with a push token (monolithic blob uploads). */
export async function pushRaw(upstream, user, repo, { blobs = [], manifests = [] }) {
  const token = await upstream.issuer.token(user, `repository:${repo}:pull,push`);
  const auth = { authorization: `Bearer ${token}` };
  for (const bytes of blobs) {
    const digest = `sha256:${crypto.createHash("sha256").update(bytes).digest("hex")}`;
    const start = await fetch(`${upstream.registryUrl}/v2/${repo}/blobs/uploads/`, { method: "POST", headers: auth });
    if (start.status !== 202) throw new Error(`upload start: ${start.status}`);
    const loc = new URL(start.headers.get("location"), upstream.registryUrl);
    loc.searchParams.set("digest", digest);
    const put = await fetch(loc, { method: "PUT", headers: { ...auth, "content-type": "application/octet-stream" }, body: bytes });
    if (put.status !== 201) throw new Error(`blob put: ${put.status} ${await put.text()}`);
  }
  for (const { reference, mediaType, bytes } of manifests) {
    const put = await fetch(`${upstream.registryUrl}/v2/${repo}/manifests/${reference}`, {
      method: "PUT", headers: { ...auth, "content-type": mediaType }, body: bytes,
    });
    if (put.status !== 201) throw new Error(`manifest put ${reference}: ${put.status} ${await put.text()}`);
  }
}
