// A scripted Docker Hub in front of a real registry: the pull rate limit and the outages that Docker
// Hub's documentation describes, forwarded to a real `docker-registry` (usually `startUpstream`'s
// counting proxy, so its counts keep working).
//
// Rate limit (docs.docker.com/docker-hub/usage/pulls/):
// - A pull is a manifest GET (`/v2/<name>/manifests/<ref>`) that the registry answers 200. HEADs
//   and blob requests are free. The quota is per client: the client's IP (the limit here is what an
//   anonymous or service-account client gets; all test clients are 127.0.0.1, so one counter).
// - The window slides: a pull counts for `window` seconds after it was made.
// - Manifest answers carry `ratelimit-limit: L;w=W`, `ratelimit-remaining: R;w=W` and
//   `docker-ratelimit-source: <ip>`.
// - With the quota spent, an authenticated manifest GET answers 429 `TOOMANYREQUESTS` with
//   `retry-after` and remaining 0, and is not forwarded. The registry authenticates first, as Docker
//   Hub does: a manifest GET without `Authorization` is forwarded, and its 401 challenge passes
//   through (free) so the client can fetch a token before it meets the 429.
//
// Faults (`state.mode`), for every request: "ok"; "5xx" answers 503 with an HTML page like Docker
// Hub's outage page; "timeout" accepts the request and never answers (until `stop`); "reset"
// destroys the socket at once.
//
// The token realm: the registry's challenges name the issuer's realm URL directly, so by default a
// client gets its tokens from the issuer and faults never touch it (a client holding a valid token
// sees only the registry's faults). Pass `realmUrl` (the issuer's `realm`) and hubsim also serves
// the realm from a second port, like auth.docker.io beside registry-1.docker.io: it rewrites
// `realm="…"` in every `WWW-Authenticate` it forwards to point there, forwards token requests to
// the issuer, and applies `state.authMode` (defaulting to `state.mode` when null) to them.
import http from "node:http";

const HTML_503 = `<!DOCTYPE html>
<html><head><title>503 Service Temporarily Unavailable</title></head>
<body><center><h1>503 Service Temporarily Unavailable</h1></center>
<p>Docker Hub is experiencing an outage. Please check https://www.dockerstatus.com/ for updates.</p>
</body></html>
`;

const TOO_MANY = JSON.stringify({
  errors: [{
    code: "TOOMANYREQUESTS",
    message: "You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit",
  }],
});

const MANIFEST = /^\/v2\/(.+)\/manifests\/([^/?]+)(\?.*)?$/;
const BLOB = /^\/v2\/(.+)\/blobs\/([^/?]+)(\?.*)?$/;

function newCounts() {
  return {
    pulls: 0, // manifest GETs the registry answered 200: what the quota counts
    manifestGets: 0, // every manifest GET that reached hubsim (401 challenges and 429s included)
    manifestHeads: 0,
    blobGets: 0,
    blobHeads: 0,
    pings: 0, // GET/HEAD /v2/ (the version check clients use to find the challenge)
    other: 0, // tags/list, referrers, …
    tooMany: 0, // 429s sent
    challenges: 0, // 401s passed through
    faults: 0, // requests answered by a fault mode (registry and realm)
    tokenRequests: 0, // token requests through the realm proxy (only with `realmUrl`)
  };
}

/**
 * `targetUrl`: the registry (or its counting proxy). `limit` pulls per `window` seconds per client.
 * `realmUrl`: optionally proxy the token realm too (see the top of this file).
 * Returns `{ url, authUrl?, state, stop }`.
 */
export async function startHubSim({ targetUrl, limit = 100, window = 21600, realmUrl = null }) {
  const target = new URL(targetUrl);
  const realm = realmUrl ? new URL(realmUrl) : null;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  /** client key → timestamps (ms) of its counted pulls inside the window. */
  const pullsByClient = new Map();
  const hanging = new Set();

  const state = {
    mode: "ok",
    /** Fault mode of the realm proxy; null follows `mode`. */
    authMode: null,
    limit,
    window,
    counts: newCounts(),
    /** Every manifest request as `METHOD /v2/… → status` (429s included), in arrival order. */
    manifestLog: [],
    /** Counted pulls still inside the window, per client key. */
    quota: pullsByClient,
    reset() {
      Object.assign(state.counts, newCounts());
      state.manifestLog.length = 0;
      pullsByClient.clear();
    },
    /** Pulls left for a client key (default 127.0.0.1). */
    remaining(key = "127.0.0.1") {
      return Math.max(0, state.limit - live(key).length);
    },
  };

  function live(key) {
    const cutoff = Date.now() - state.window * 1000;
    const list = (pullsByClient.get(key) || []).filter((t) => t > cutoff);
    pullsByClient.set(key, list);
    return list;
  }

  // Docker Hub keys anonymous pulls by IP (authenticated ones by account, which is one service
  // account here); the IP is what a proxy in front of it shares, so that is the key.
  const clientKey = (req) => (req.socket.remoteAddress || "unknown").replace(/^::ffff:/, "");

  function rateHeaders(key) {
    return [
      "ratelimit-limit", `${state.limit};w=${state.window}`,
      "ratelimit-remaining", `${state.remaining(key)};w=${state.window}`,
      "docker-ratelimit-source", key,
    ];
  }

  /** Answers with the fault of `mode`; false when the mode is "ok". */
  function fault(mode, req, res) {
    if (!mode || mode === "ok") return false;
    state.counts.faults++;
    req.resume();
    if (mode === "5xx") {
      res.writeHead(503, { "content-type": "text/html", "content-length": Buffer.byteLength(HTML_503) });
      res.end(HTML_503);
    } else if (mode === "timeout") {
      hanging.add(res);
      res.on("close", () => hanging.delete(res));
    } else if (mode === "reset") {
      req.socket.destroy();
    } else {
      throw new Error(`hubsim: unknown mode ${mode}`);
    }
    return true;
  }

  /** Forwards `req` to `to`, streaming both ways; `edit(status, rawHeaders)` may add headers. */
  function forward(req, res, to, edit) {
    // Every header as sent, duplicates (several Accept lines) included, in order; `Host` too, so
    // the registry's absolute URLs (Location, Link) name hubsim, as Docker Hub's name itself.
    const headers = [...req.rawHeaders];
    if (!req.headers.host) headers.push("host", to.host); // an array of headers gets no automatic Host
    const up = http.request(
      { host: to.hostname, port: to.port, method: req.method, path: req.url, headers, agent },
      (upRes) => {
        const raw = edit ? edit(upRes.statusCode, [...upRes.rawHeaders]) : upRes.rawHeaders;
        res.writeHead(upRes.statusCode, upRes.statusMessage, raw);
        upRes.pipe(res);
        upRes.on("error", () => res.destroy());
      },
    );
    up.on("error", () => {
      if (!res.headersSent) {
        res.writeHead(502, { "content-type": "text/plain" });
        res.end("hubsim: upstream unreachable\n");
      } else res.destroy();
    });
    res.on("close", () => { if (!res.writableFinished) up.destroy(); });
    req.pipe(up);
  }

  /** Points `realm="…"` of forwarded challenges at the realm proxy. */
  function rewriteRealm(raw) {
    if (!authUrl) return raw;
    for (let i = 0; i < raw.length; i += 2) {
      if (raw[i].toLowerCase() === "www-authenticate") {
        raw[i + 1] = raw[i + 1].replace(/realm="([^"]*)"/i, (m, value) =>
          value.startsWith(realm.origin) ? `realm="${authUrl}${value.slice(realm.origin.length)}"` : m);
      }
    }
    return raw;
  }

  const server = http.createServer((req, res) => {
    if (fault(state.mode, req, res)) return;
    const path = req.url;
    const manifest = MANIFEST.test(path);
    const blob = !manifest && BLOB.test(path);
    const c = state.counts;
    if (manifest && req.method === "GET") c.manifestGets++;
    else if (manifest && req.method === "HEAD") c.manifestHeads++;
    else if (blob && req.method === "GET") c.blobGets++;
    else if (blob && req.method === "HEAD") c.blobHeads++;
    else if (/^\/v2\/?(\?.*)?$/.test(path)) c.pings++;
    else c.other++;

    const key = clientKey(req);
    if (manifest && req.method === "GET" && req.headers.authorization && state.remaining(key) === 0) {
      c.tooMany++;
      state.manifestLog.push(`${req.method} ${path} → 429`);
      req.resume();
      const list = live(key);
      const retryAfter = Math.max(1, Math.ceil((list[0] + state.window * 1000 - Date.now()) / 1000));
      res.writeHead(429, [
        "content-type", "application/json",
        "content-length", String(Buffer.byteLength(TOO_MANY)),
        "retry-after", String(retryAfter),
        ...rateHeaders(key),
      ]);
      return res.end(TOO_MANY);
    }

    forward(req, res, target, (status, raw) => {
      if (status === 401) {
        c.challenges++;
        return rewriteRealm(raw);
      }
      if (!manifest) return raw;
      state.manifestLog.push(`${req.method} ${path} → ${status}`);
      if (req.method === "GET" && status === 200) {
        const list = live(key);
        list.push(Date.now());
        c.pulls++;
      }
      return [...raw, ...rateHeaders(key)];
    });
  });
  server.keepAliveTimeout = 30000;

  let authServer = null;
  let authUrl = null;
  if (realm) {
    authServer = http.createServer((req, res) => {
      if (fault(state.authMode ?? state.mode, req, res)) return;
      state.counts.tokenRequests++;
      forward(req, res, realm);
    });
    await new Promise((r) => authServer.listen(0, "127.0.0.1", r));
    authUrl = `http://127.0.0.1:${authServer.address().port}`;
  }
  await new Promise((r) => server.listen(0, "127.0.0.1", r));

  return {
    url: `http://127.0.0.1:${server.address().port}`,
    /** The realm proxy's origin (only with `realmUrl`); challenges name `${authUrl}${realm path}`. */
    authUrl,
    state,
    async stop() {
      for (const res of hanging) res.destroy();
      hanging.clear();
      const close = (s) => s && new Promise((r) => { s.closeAllConnections(); s.close(r); });
      await Promise.all([close(server), close(authServer)]);
      agent.destroy();
    },
  };
}
