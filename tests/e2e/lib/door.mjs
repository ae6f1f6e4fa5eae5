// Runs the built worker (build/index.js + wasm) in Miniflare — workerd with real KV and R2
// bindings — listening on a loopback port so real clients can pull through it.
import { Miniflare } from "miniflare";
import { appendFileSync, writeFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");

/** Settings that are not secrets; every other binding is one (passwords, tokens, keys). */
const PUBLIC_SETTINGS = new Set([
  "UPSTREAMS", "DEFAULT_REGISTRY", "TAG_TTL_SECONDS", "NEGATIVE_TTL_SECONDS", "UPSTREAM_TIMEOUT_SECONDS",
  "HOSTS", "ACCESS", "PINS", "DENY_LATEST", "BLOB_REDIRECT", "REDIRECT_TTL_SECONDS", "R2_S3_ENDPOINT",
  "R2_BUCKET", "R2_ACCESS_KEY_ID", "MULTIPART_THRESHOLD_BYTES", "MULTIPART_PART_BYTES", "PREWARM",
  "RETENTION_DAYS", "RETENTION_BATCH", "UPSTREAM_BACKOFF_SECONDS",
  "UPSTREAM_IDLE_TIMEOUT_SECONDS", "PUBLIC_URL", "DENY", "IMMUTABLE_TAGS", "VERIFY",
]);

/**
 * With FRONTDOOR_LOG_DIR set (scripts/test sets it), every door's log, the secrets it was given,
 * and every answer `fetch` got from it are written there, for tests/e2e/check-secrets.mjs to scan
 * after the whole suite: no configured secret may appear in any answer or log line.
 */
const RECORD = process.env.FRONTDOOR_LOG_DIR;
let doors = 0;
const origins = new Set();
if (RECORD && !globalThis.fetch.frontdoorRecording) {
  const original = globalThis.fetch;
  const recording = async (input, init) => {
    const res = await original(input, init);
    const url = typeof input === "string" ? input : input.url ?? String(input);
    if ([...origins].some((o) => url.startsWith(o))) {
      const head = [...res.headers].map(([k, v]) => `${k}: ${v}`).join("\n");
      // Recorded when the body has arrived, without holding the caller until then: a test timing
      // a streamed answer must see its headers when the door sent them.
      res.clone().text().catch(() => "").then((body) => {
        appendFileSync(path.join(RECORD, `answers-${process.pid}.txt`), `${res.status} ${url}\n${head}\n\n${body}\n`);
      });
    }
    return res;
  };
  recording.frontdoorRecording = true;
  globalThis.fetch = recording;
}

let minted = 0;
/**
 * Secrets a scripted upstream issued (minted tokens, passwords, keys): written beside the doors'
 * own, so tests/e2e/check-secrets.mjs finds them too in any log or answer.
 */
export function recordSecrets(values) {
  if (RECORD) writeFileSync(path.join(RECORD, `secrets-minted-${process.pid}-${minted++}.json`), JSON.stringify(values));
}

/**
 * An Analytics Engine dataset that logs each data point as a JSON line (`{"analytics": point}`)
 * next to the door's own (Miniflare's built-in dataset drops them).
 */
const ANALYTICS_RECORDER = {
  name: "analytics-recorder",
  modules: true,
  script: `export default function () {
    return { writeDataPoint(point) { console.log(JSON.stringify({ analytics: point })); } };
  }`,
};

/**
 * `bindings`: vars and secrets, as wrangler would pass them. Console output is collected. With
 * `analytics`, the door gets an ANALYTICS dataset whose data points show up in `requests()`.
 * `extraWorkers`: more Miniflare worker options (each with a `name` and `routes`) to run in the same
 * workerd beside the door, which stays the first worker and gets every request no route of theirs
 * claims (scripts/bench runs its floor worker this way). Without either the door runs alone.
 * `keepLogs: false` drains the console output unread (scripts/bench: the harness's reading of
 * every line is not the door's cost); `logs()` and `requests()` are then empty.
 */
export async function startDoor({ bindings, persistDir, coalesce = true, analytics = false, extraWorkers = [], keepLogs = true }) {
  const logs = [];
  const id = `${process.pid}-${doors++}`;
  if (RECORD) {
    const secrets = Object.entries(bindings).filter(([k]) => !PUBLIC_SETTINGS.has(k)).map(([, v]) => v);
    writeFileSync(path.join(RECORD, `secrets-${id}.json`), JSON.stringify(secrets));
  }
  const record = (d) => {
    logs.push(d.toString());
    if (RECORD) appendFileSync(path.join(RECORD, `log-${id}.txt`), d);
  };
  const door = {
    modules: true,
    modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"] }],
    scriptPath: path.join(ROOT, "build/index.js"),
    modulesRoot: path.join(ROOT, "build"),
    compatibilityDate: "2026-08-01",
    kvNamespaces: ["CACHE"],
    r2Buckets: ["BLOBS"],
    durableObjects: coalesce ? { COALESCER: "Coalescer", STATS: "StatsHub" } : { STATS: "StatsHub" },
    bindings,
    ...(analytics ? { wrappedBindings: { ANALYTICS: "analytics-recorder" } } : {}),
  };
  const shared = {
    kvPersist: persistDir ? path.join(persistDir, "kv") : false,
    r2Persist: persistDir ? path.join(persistDir, "r2") : false,
    host: "127.0.0.1",
    port: 0,
    handleRuntimeStdio(stdout, stderr) {
      if (!keepLogs && !RECORD) {
        stdout.resume();
        stderr.resume();
        return;
      }
      stdout.on("data", record);
      stderr.on("data", record);
    },
  };
  const workers = [...(analytics ? [ANALYTICS_RECORDER] : []), ...extraWorkers];
  const mf = new Miniflare(workers.length
    ? { ...shared, workers: [{ name: "door", ...door }, ...workers] }
    : { ...shared, ...door });
  const inner = await mf.ready;
  origins.add(inner.origin);
  const front = await plainHttpFront(Number(inner.port));
  return {
    mf,
    // HTTP clients (fetch, ctr with an http:// hosts.toml) talk to workerd directly; `host` is the
    // TLS-refusing front for clients that try HTTPS first (skopeo, podman).
    url: inner.origin,
    host: `127.0.0.1:${front.port}`,
    logs: () => logs.join(""),
    /** Runs the cron trigger once (Miniflare's scheduled event), at `scheduledTime` if given. */
    scheduled: async (scheduledTime) => (await mf.getWorker()).scheduled({ cron: "*/30 * * * *", scheduledTime }),
    /** Whether R2 holds `digest` (read straight from the bucket, not through the door). */
    stored: async (digest) => (await (await mf.getR2Bucket("BLOBS")).head(`blobs/sha256/${digest.slice(7)}`)) !== null,
    /** The JSON lines the worker wrote: request logs, cron reports, analytics data points. */
    requests: () => logs.join("").split("\n").filter((l) => l.startsWith("{")).map((l) => { try { return JSON.parse(l); } catch { return null; } }).filter(Boolean),
    stop: async () => {
      front.close();
      await mf.dispose();
    },
  };
}

/**
 * skopeo and containerd try HTTPS before plain HTTP on an insecure registry; workerd's HTTP socket
 * never answers a TLS ClientHello, so each try would hang ~10 s. This front closes TLS attempts at
 * once (as a plain HTTP server in production would, by sending no TLS reply) and pipes everything
 * else to workerd untouched.
 */
async function plainHttpFront(targetPort) {
  const sockets = new Set();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on("close", () => sockets.delete(client));
    client.once("data", (first) => {
      client.pause();
      if (first[0] === 0x16) return client.destroy(); // TLS handshake record
      const upstream = net.connect(targetPort, "127.0.0.1", () => {
        upstream.write(first);
        client.pipe(upstream).pipe(client);
      });
      sockets.add(upstream);
      upstream.on("close", () => { sockets.delete(upstream); client.destroy(); });
      upstream.on("error", () => client.destroy());
      client.on("error", () => upstream.destroy());
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: server.address().port,
    close: () => { for (const s of sockets) s.destroy(); server.close(); },
  };
}
