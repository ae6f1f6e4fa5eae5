// A scripted hostile upstream for where the service account's credentials go: what a real registry
// cannot be made to do. One node http server, reached as two hosts that both stay on loopback:
// `127.0.0.1:PORT` (where the door's UPSTREAMS point) and `localhost:PORT` ("another host").
//
// Each scenario is a path prefix, so each is its own upstream URL to the door (its own token cache):
//   /<scenario>/v2/<repo>/manifests/<ref>  401 naming the scenario's realm, or with a token the
//                                          manifest; `redirect` scenarios answer 307 to
//                                          http://localhost:PORT/cdn/<scenario>/… instead
//   /cdn/<scenario>/…                      401 naming a realm (a redirect target's challenge)
//   /token/<scenario>                      a token for anyone (anonymous pulls work), recording
//                                          the Authorization it got
// Every request is recorded (host, path, Authorization, and Basic credentials decoded). It checks
// independently of the door: it decodes what arrived and compares it with what the test gave.
// With FRONTDOOR_LOG_DIR set, what arrived for the scenarios named `mustNotReceive` is written to
// sink-<pid>.txt there, which tests/e2e/check-secrets.mjs scans for every configured secret.
import { appendFileSync } from "node:fs";
import crypto from "node:crypto";
import http from "node:http";
import path from "node:path";

const MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json";

/**
 * `scenarios`: name → { realmHost: "127.0.0.1" | "localhost", redirect?: boolean }.
 * The realm a scenario's 401s name is http://<realmHost>:PORT/token/<name>.
 */
export async function startRealmSink({ scenarios, mustNotReceive = [] }) {
  const received = [];
  const tokens = new Set();
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: MANIFEST_TYPE,
    config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: `sha256:${"0".repeat(64)}`, size: 2 },
    layers: [],
  }));
  const digest = `sha256:${crypto.createHash("sha256").update(manifest).digest("hex")}`;
  let port;

  const record = (req, scenario) => {
    const authorization = req.headers.authorization ?? null;
    let basic = null;
    if (authorization?.toLowerCase().startsWith("basic ")) {
      basic = Buffer.from(authorization.slice(6).trim(), "base64").toString("utf8");
    }
    const entry = { scenario, host: req.headers.host, path: req.url, authorization, basic };
    received.push(entry);
    const dir = process.env.FRONTDOOR_LOG_DIR;
    if (dir && mustNotReceive.includes(scenario)) {
      appendFileSync(path.join(dir, `sink-${process.pid}.txt`), `${JSON.stringify(entry)}\n`);
    }
  };
  const challenge = (res, scenario, repo) => {
    const realm = `http://${scenarios[scenario].realmHost}:${port}/token/${scenario}`;
    res.writeHead(401, {
      "www-authenticate": `Bearer realm="${realm}",service="hostile",scope="repository:${repo}:pull"`,
      "content-type": "application/json",
    });
    res.end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}');
  };

  const handler = (req, res) => {
    const url = new URL(req.url, "http://x");
    const parts = url.pathname.split("/").filter(Boolean);
    if (parts[0] === "token" && scenarios[parts[1]]) {
      record(req, parts[1]);
      const token = crypto.randomBytes(16).toString("hex");
      tokens.add(token);
      res.writeHead(200, { "content-type": "application/json" });
      return res.end(JSON.stringify({ token, expires_in: 300 }));
    }
    if (parts[0] === "cdn" && scenarios[parts[1]]) {
      record(req, parts[1]);
      return challenge(res, parts[1], "cdn");
    }
    const scenario = parts[0];
    if (!scenarios[scenario] || parts[1] !== "v2") {
      res.writeHead(404);
      return res.end();
    }
    record(req, scenario);
    const m = url.pathname.match(/^\/[^/]+\/v2\/(.+)\/manifests\/([^/]+)$/);
    const bearer = req.headers.authorization?.match(/^Bearer (.+)$/)?.[1];
    if (!m || !tokens.has(bearer)) {
      if (scenarios[scenario].redirect && m) {
        res.writeHead(307, { location: `http://localhost:${port}/cdn/${scenario}/${m[2]}` });
        return res.end();
      }
      return challenge(res, scenario, m?.[1] ?? "");
    }
    res.writeHead(200, {
      "content-type": MANIFEST_TYPE,
      "docker-content-digest": digest,
      "content-length": manifest.length,
    });
    res.end(req.method === "HEAD" ? undefined : manifest);
  };

  const v4 = http.createServer(handler);
  await new Promise((r) => v4.listen(0, "127.0.0.1", r));
  port = v4.address().port;
  // `localhost` may resolve to ::1 first: answer there too where the machine has IPv6.
  const v6 = http.createServer(handler);
  await new Promise((r) => {
    v6.once("error", () => r());
    v6.listen(port, "::1", r);
  });
  return {
    port,
    url: (scenario) => `http://127.0.0.1:${port}/${scenario}`,
    digest,
    /** Everything that reached the sink for `scenario`. */
    received: (scenario) => received.filter((e) => e.scenario === scenario),
    stop: async () => {
      await new Promise((r) => v4.close(r));
      if (v6.listening) await new Promise((r) => v6.close(r));
    },
  };
}
