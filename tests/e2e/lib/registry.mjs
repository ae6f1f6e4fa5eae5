// A real upstream: distribution's `docker-registry` (Debian) behind token auth, with a counting
// proxy in front so tests can assert how many manifest and blob requests reached it.
import { writeFileSync, mkdirSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { freePort, startProcess, waitFor } from "./util.mjs";
import { startTokenIssuer } from "./tokenissuer.mjs";

export const SERVICE = "frontdoor-test-registry";

/** Starts issuer + registry + counting proxy. `users`: name → password (full access). */
export async function startUpstream({ dir, users }) {
  const tokenPort = await freePort();
  const regPort = await freePort();
  const issuer = await startTokenIssuer({ dir, port: tokenPort, service: SERVICE, users });
  const storage = path.join(dir, "storage");
  mkdirSync(storage, { recursive: true });
  const configPath = path.join(dir, "registry.yml");
  writeFileSync(configPath, `version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: ${storage}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:${regPort}
  secret: frontdoor-test-secret
auth:
  token:
    realm: ${issuer.realm}
    service: ${SERVICE}
    issuer: ${issuer.issuer}
    rootcertbundle: ${issuer.cert}
`);
  const registry = startProcess("docker-registry", ["serve", configPath]);
  const registryUrl = `http://127.0.0.1:${regPort}`;
  await waitFor(async () => (await fetch(`${registryUrl}/v2/`)).status === 401, 15000, "docker-registry")
    .catch((e) => { throw new Error(`${e.message}\n${registry.output()}`); });

  const counter = await startCountingProxy(regPort);
  return {
    issuer,
    registryUrl,
    /** Where the door should send its upstream requests. */
    url: counter.url,
    /** `127.0.0.1:PORT` for pushing straight to the registry. */
    host: `127.0.0.1:${regPort}`,
    counts: counter.counts,
    resetCounts: counter.reset,
    async stop() {
      await counter.stop();
      await registry.stop();
      await issuer.stop();
    },
  };
}

/**
 * Forwards every request unchanged to the registry and counts it by method and kind
 * (`manifests`, `blobs`, `other`): counts[`GET blobs`], counts[`HEAD manifests`], ….
 */
export async function startCountingProxy(targetPort) {
  const counts = {};
  const server = http.createServer((req, res) => {
    const kind = /\/manifests\//.test(req.url) ? "manifests" : /\/blobs\//.test(req.url) ? "blobs" : "other";
    const key = `${req.method} ${kind}`;
    counts[key] = (counts[key] || 0) + 1;
    const upstream = http.request(
      { host: "127.0.0.1", port: targetPort, method: req.method, path: req.url, headers: req.headers },
      (up) => {
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
