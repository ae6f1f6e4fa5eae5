// Door vs docker-registry in proxy mode, in one run, with the same workload against the same
// upstream: a real docker-registry behind token auth (tests/e2e/lib/registry.mjs) fronted by the
// Docker Hub simulator (tests/e2e/lib/hubsim.mjs), which counts what each mirror asks of it.
// Beside them, baselines from the same run: the floor (scripts/bench-floor.js, a JS worker doing one
// KV read, in the door's own workerd) for warm tag pulls, direct upstream reads for cold blob
// throughput, and the size target for the bundle wrangler would upload.
// Progress goes to stderr; the result is one markdown table on stdout and a PNG chart
// (test-output/bench.png, rendered by headless Chromium). Run through scripts/bench.
import { acceptRows, herdRows, ROTATION_NODES, singleColdRow } from "./bench-herd.mjs";
import crypto from "node:crypto";
import { execFile } from "node:child_process";
import { readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { buildImage } from "../tests/e2e/lib/image.mjs";
import { ROOT, startDoor } from "../tests/e2e/lib/door.mjs";
import { writeChart } from "./bench-chart.mjs";
import { policyPulls, policyRows } from "./bench-policy.mjs";
import { startHubSim } from "../tests/e2e/lib/hubsim.mjs";
import { startProxyRegistry } from "../tests/e2e/lib/peer.mjs";
import { startUpstream } from "../tests/e2e/lib/registry.mjs";
import { startS3 } from "../tests/e2e/lib/s3.mjs";
import { MANIFEST_ACCEPT as ACCEPT, tempDir, waitFor } from "../tests/e2e/lib/util.mjs";

const execFileP = promisify(execFile);
const SVC = "svc";
const PW = crypto.randomBytes(12).toString("hex");
const COLD_PULLS = 50;
const TTL_BATCHES = 10;
const TTL_BATCH = 10;
const TTL_SLEEP_MS = 1100;
const WARM_SECONDS = 5;
const WARM_WORKERS = 32;
// The door's warm rows and the floor's alternate this many rounds; each figure is their median.
const WARM_ROUNDS = 3;
const LAYERS = 3;
const BIG_LAYER = 1 << 20;
// Warm blob reads: one image whose first layer is ~4 MiB, GET sequentially through each target.
const BLOB_LAYER = 4 << 20;
const BLOB_GETS = 200;
const BLOB_WARMUP = 10;
// Cold blob throughput: one image per platform below, each with its own random layer, so every
// platform's layer is read cold once through each target.
const COLD_BLOB_LAYER = 16 << 20;
const COLD_BLOB_PLATFORMS = ["amd64", "arm64", "ppc64le", "s390x"].map((architecture) => ({ os: "linux", architecture }));
// What wrangler would upload, gzip'd (wrangler deploy --dry-run), must stay under this.
const BUNDLE_TARGET_KIB = 512;
// The floor worker's one KV key, and the path prefix Miniflare routes to it instead of the door.
const FLOOR_KEY = "floor/manifest";
const FLOOR_ROUTE = "/_floor/";
const S3_AK = "FRONTDOORBENCHKEY";
const S3_SK = crypto.randomBytes(20).toString("hex");
const S3_BUCKET = "door-blobs";
const DEADLINE_MS = 600_000; // the herd rows (twice: as is, and V8 heap capped) and the VERIFY rows add ~3 min
// The outage rows: how long the door waits for a hung upstream's headers.
const OUTAGE_TIMEOUT_S = 2;

const log = (...a) => console.error("bench:", ...a);
// V8 flags under which workerd collects garbage as a 128 MB Worker isolate would have to.
const CAPPED_V8 = "--max-old-space-size=64 --max-semi-space-size=1";

/** Runs `f` with workerd started under `flags` (Miniflare reads MINIFLARE_WORKERD_V8_FLAGS). */
async function withV8Flags(flags, f) {
  const before = process.env.MINIFLARE_WORKERD_V8_FLAGS;
  process.env.MINIFLARE_WORKERD_V8_FLAGS = flags;
  try {
    return await f();
  } finally {
    if (before === undefined) delete process.env.MINIFLARE_WORKERD_V8_FLAGS;
    else process.env.MINIFLARE_WORKERD_V8_FLAGS = before;
  }
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const sha256 = (b) => `sha256:${crypto.createHash("sha256").update(b).digest("hex")}`;

const stoppers = [];
let cleaning = null;
/** Stops everything started, newest first; every caller waits for the same run. */
function cleanup() {
  cleaning ??= (async () => {
    for (const stop of stoppers.reverse()) {
      // Bounded: a child that already died of the same Ctrl-C (it reaches the whole process
      // group) never emits "exit" again, and a stop waiting for it would hang.
      let timer;
      const bound = new Promise((r) => { timer = setTimeout(r, 5000); });
      try { await Promise.race([stop(), bound]); } catch (e) { log(`cleanup: ${e.message}`); }
      clearTimeout(timer);
    }
  })();
  return cleaning;
}
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => cleanup().finally(() => process.exit(130)));
// Miniflare answers SIGINT/SIGTERM itself: it stops workerd and calls process.exit at once, so
// the cleanup above may not get far. On exit, synchronously end this process's own children by
// pid (docker-registry, hey) and remove the temp dir.
const tempDirs = [];
process.on("exit", () => {
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === process.pid) process.kill(Number(entry), "SIGTERM");
    } catch { /* gone already */ }
  }
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});
const watchdog = setTimeout(() => {
  log(`gave up after ${DEADLINE_MS / 1000} s`);
  cleanup().finally(() => process.exit(1));
}, DEADLINE_MS);

/** What the upstream saw: hubsim's counts plus the token issuer's. */
function snapshot(hub, upstream) {
  return { ...hub.state.counts, tokens: upstream.issuer.stats.requests };
}
function delta(before, after) {
  const d = {};
  for (const k of Object.keys(after)) d[k] = after[k] - (before[k] ?? 0);
  d.registry = d.manifestGets + d.manifestHeads + d.blobGets + d.blobHeads + d.pings + d.other;
  return d;
}

/** A client pull: the manifest by tag with the full Accept list, then every blob, checked. */
async function pull(base, repo, tag) {
  const r = await fetch(`${base}/v2/${repo}/manifests/${tag}`, { headers: { accept: ACCEPT } });
  const bytes = Buffer.from(await r.arrayBuffer());
  if (r.status !== 200) throw new Error(`manifest ${r.status}: ${bytes.toString().slice(0, 200)}`);
  const m = JSON.parse(bytes);
  await Promise.all([m.config, ...m.layers].map(async ({ digest }) => {
    const b = await fetch(`${base}/v2/${repo}/blobs/${digest}`);
    const body = Buffer.from(await b.arrayBuffer());
    if (b.status !== 200) throw new Error(`blob ${b.status}`);
    if (sha256(body) !== digest) throw new Error(`blob ${digest} corrupt`);
  }));
}

async function tagPull(base, repo, tag) {
  const r = await fetch(`${base}/v2/${repo}/manifests/${tag}`, { headers: { accept: ACCEPT } });
  await r.arrayBuffer();
  if (r.status !== 200) throw new Error(`manifest ${r.status}`);
}

/** Waits until the upstream counts stop moving (background fills finish). */
async function settle(hub, upstream) {
  let last = JSON.stringify(snapshot(hub, upstream));
  for (let i = 0; i < 20; i++) {
    await sleep(250);
    const now = JSON.stringify(snapshot(hub, upstream));
    if (now === last) return;
    last = now;
  }
}

async function coldPulls(name, hub, upstream, base, repo) {
  await settle(hub, upstream);
  const before = snapshot(hub, upstream);
  const started = performance.now();
  const results = await Promise.allSettled(Array.from({ length: COLD_PULLS }, () => pull(base, repo, "v1")));
  const seconds = (performance.now() - started) / 1000;
  await settle(hub, upstream);
  const failed = results.filter((r) => r.status === "rejected");
  if (failed.length) log(`${name}: ${failed.length} of ${COLD_PULLS} cold pulls failed, e.g. ${failed[0].reason.message}`);
  return { ...delta(before, snapshot(hub, upstream)), seconds, failed: failed.length };
}

async function ttlPulls(hub, upstream, base, repo) {
  await settle(hub, upstream);
  const before = snapshot(hub, upstream);
  let failed = 0;
  for (let b = 0; b < TTL_BATCHES; b++) {
    if (b) await sleep(TTL_SLEEP_MS);
    for (let i = 0; i < TTL_BATCH; i++) await tagPull(base, repo, "v1").catch(() => failed++);
  }
  await settle(hub, upstream);
  return { ...delta(before, snapshot(hub, upstream)), failed };
}

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

/** `hey` if installed (scripts/bench installs it), else the same load from Node. */
async function load(url) {
  const hey = await execFileP("hey", ["-h"]).then(() => true, (e) => e.code !== "ENOENT");
  if (hey) {
    const { stdout } = await execFileP("hey", [
      "-z", `${WARM_SECONDS}s`, "-c", String(WARM_WORKERS), "-o", "csv", "-A", ACCEPT, url,
    ], { maxBuffer: 512 << 20 });
    const rows = stdout.trim().split("\n").slice(1).map((l) => l.split(","));
    const ok = rows.filter((r) => r[6] === "200").map((r) => Number(r[0]) * 1000);
    return { tool: "hey", ok, errors: rows.length - ok.length };
  }
  const ok = [];
  let errors = 0;
  const deadline = performance.now() + WARM_SECONDS * 1000;
  await Promise.all(Array.from({ length: WARM_WORKERS }, async () => {
    while (performance.now() < deadline) {
      const t = performance.now();
      try {
        const r = await fetch(url, { headers: { accept: ACCEPT } });
        await r.arrayBuffer();
        if (r.status === 200) ok.push(performance.now() - t);
        else errors++;
      } catch { errors++; }
    }
  }));
  return { tool: "node", ok, errors };
}

/** The warm load on `url`: pulls per second and latency percentiles of the 200 answers. */
async function warmLoad(url) {
  const { tool, ok, errors } = await load(url);
  ok.sort((a, b) => a - b);
  return { tool, rps: ok.length / WARM_SECONDS, p50: percentile(ok, 50), p99: percentile(ok, 99), requests: ok.length, errors };
}

async function warmPulls(hub, upstream, base, repo) {
  for (let i = 0; i < 20; i++) await tagPull(base, repo, "v1");
  await settle(hub, upstream);
  const before = snapshot(hub, upstream);
  const result = await warmLoad(`${base}/v2/${repo}/manifests/v1`);
  await settle(hub, upstream);
  return { ...delta(before, snapshot(hub, upstream)), ...result };
}

/**
 * Warm tag pulls with the tag always past its TTL (TAG_TTL_SECONDS=1): upstream healthy, then hung
 * (every registry request accepted and never answered). `urls.backoff` is the door with a back-off,
 * `urls.none` the same door without one. Each hung run starts after one pull has met the outage.
 */
async function outagePulls(hub, upstream, urls, repo) {
  const out = {};
  for (const [key, base] of Object.entries(urls)) {
    for (let i = 0; i < 20; i++) await tagPull(base, repo, "v1");
    out[key] = { healthy: await warmPulls(hub, upstream, base, repo) };
  }
  hub.state.mode = "timeout";
  try {
    for (const [key, base] of Object.entries(urls)) {
      await sleep(1100); // past the TTL
      await tagPull(base, repo, "v1"); // meets the outage (waits the timeout), then stale
      const before = snapshot(hub, upstream);
      const faultsBefore = hub.state.counts.faults;
      out[key].down = { ...(await warmLoad(`${base}/v2/${repo}/manifests/v1`)) };
      out[key].down.upstream = hub.state.counts.faults - faultsBefore;
      out[key].down.registry = delta(before, snapshot(hub, upstream)).registry;
    }
  } finally {
    hub.state.mode = "ok";
  }
  return out;
}

/**
 * The door's warm tag rows and the floor under them, in alternating rounds (door, floor, door, …)
 * so that both meet the same drift of this shared machine; each figure is the median of its
 * rounds. The floor worker answers every request with one KV read of the manifest the door serves
 * for `repo:v1` (put into its KV namespace here). Upstream counts cover every round (the floor's
 * rounds ask upstream nothing).
 */
async function warmAndFloor(hub, upstream, door, repo) {
  for (let i = 0; i < 20; i++) await tagPull(door.url, repo, "v1");
  const { bytes } = await manifestOf(door.url, repo, "v1");
  await (await door.mf.getKVNamespace("CACHE", "floor")).put(FLOOR_KEY, bytes);
  const floorUrl = `${door.url}${FLOOR_ROUTE}v2/${repo}/manifests/v1`;
  for (let i = 0; i < 20; i++) {
    const r = await fetch(floorUrl, { headers: { accept: ACCEPT } });
    const body = Buffer.from(await r.arrayBuffer());
    if (r.status !== 200 || !body.equals(bytes)) throw new Error(`floor: ${r.status}, ${body.length} bytes, not the manifest`);
  }
  await settle(hub, upstream);
  const before = snapshot(hub, upstream);
  const rounds = { door: [], floor: [] };
  for (let i = 0; i < WARM_ROUNDS; i++) {
    rounds.door.push(await warmLoad(`${door.url}/v2/${repo}/manifests/v1`));
    rounds.floor.push(await warmLoad(floorUrl));
  }
  await settle(hub, upstream);
  const median = (runs) => {
    const mid = (f) => runs.map(f).sort((a, b) => a - b)[Math.floor(runs.length / 2)];
    return {
      tool: runs[0].tool, rps: mid((r) => r.rps), p50: mid((r) => r.p50), p99: mid((r) => r.p99),
      requests: runs.reduce((n, r) => n + r.requests, 0), errors: runs.reduce((n, r) => n + r.errors, 0),
      rounds: runs.map((r) => Math.round(r.rps)),
    };
  };
  return { door: { ...delta(before, snapshot(hub, upstream)), ...median(rounds.door) }, floor: median(rounds.floor) };
}

/** GETs `url` to the last byte: its status, body, headers and seconds. */
async function timedGet(url, headers = {}) {
  const started = performance.now();
  const r = await fetch(url, { headers });
  const body = Buffer.from(await r.arrayBuffer());
  return { status: r.status, headers: r.headers, body, seconds: (performance.now() - started) / 1000 };
}

/**
 * Cold blob throughput: every digest is read once through each target (a cache miss at the door
 * and at docker-registry, a plain read for `direct`), in turn, so that drift on the machine hits
 * every target alike. Before the next GET the door's background fill to R2 must have finished, so
 * it does not compete with the next measurement. MB/s = 10^6 bytes per second, to the last byte.
 */
async function coldBlobThroughput(targets, door, repo, digests) {
  const out = targets.map(() => ({ bytes: 0, seconds: 0, each: [] }));
  for (const digest of digests) {
    for (const [k, t] of targets.entries()) {
      const r = await timedGet(`${t.url}/v2/${repo}/blobs/${digest}`, t.headers);
      if (r.status !== 200 || sha256(r.body) !== digest) throw new Error(`${t.name}: cold blob GET ${r.status}, ${r.body.length} bytes`);
      if (t.door && r.headers.get("x-frontdoor-cache") !== "miss")
        throw new Error(`${t.name}: cold blob GET answered ${r.headers.get("x-frontdoor-cache")}, not a miss`);
      if (t.door) await waitFor(() => door.stored(digest), 20000, `${t.name}: ${digest} in R2`);
      out[k].bytes += r.body.length;
      out[k].seconds += r.seconds;
      out[k].each.push(r.body.length / r.seconds / 1e6);
    }
  }
  return out.map((x) => ({ mbps: x.bytes / x.seconds / 1e6, min: Math.min(...x.each), max: Math.max(...x.each), n: x.each.length }));
}

/** What `wrangler deploy --dry-run` says it would upload: total and gzip, KiB. */
async function bundleSize(dir) {
  const { stdout, stderr } = await execFileP("wrangler", ["deploy", "--dry-run", "--outdir", dir], { cwd: ROOT, maxBuffer: 16 << 20 });
  const m = `${stdout}\n${stderr}`.match(/Total Upload: ([\d.]+) KiB \/ gzip: ([\d.]+) KiB/);
  if (!m) throw new Error(`wrangler deploy --dry-run printed no "Total Upload": ${stdout}\n${stderr}`);
  return { total: Number(m[1]), gzip: Number(m[2]) };
}

/** Fetches `url` following redirects by hand (as a client does), saying who sent each body. */
async function follow(url, init, doorOrigin) {
  const started = performance.now();
  const hops = [];
  for (let i = 0; i < 5; i++) {
    const r = await fetch(url, { ...init, redirect: "manual" });
    const body = Buffer.from(await r.arrayBuffer());
    hops.push({ origin: new URL(url).origin, path: new URL(url).pathname, status: r.status, bytes: body.length, ms: performance.now() - started });
    if (r.status >= 300 && r.status < 400 && r.headers.get("location")) {
      url = new URL(r.headers.get("location"), url).href;
      continue;
    }
    return { status: r.status, body, hops, fromDoor: hops.filter((h) => h.origin === doorOrigin).reduce((a, h) => a + h.bytes, 0) };
  }
  throw new Error(`too many redirects from ${url}`);
}

/** The manifest of `repo:tag` and its blob digests. */
async function manifestOf(base, repo, tag) {
  const r = await fetch(`${base}/v2/${repo}/manifests/${tag}`, { headers: { accept: ACCEPT } });
  const bytes = Buffer.from(await r.arrayBuffer());
  if (r.status !== 200) throw new Error(`manifest ${r.status}: ${bytes.toString().slice(0, 200)}`);
  const m = JSON.parse(bytes);
  return { bytes, blobs: [m.config, ...m.layers].map((x) => x.digest) };
}

/**
 * Makes every blob of `repo:tag` warm at `target`: a first pull fills, then each blob GET must be
 * answered from storage: a 307 in redirect modes, a 200 marked `hit` otherwise (the fill to R2 may
 * finish after the first answer).
 */
async function warmUp(target, repo, tag) {
  await pull(target.url, repo, tag);
  const { blobs } = await manifestOf(target.url, repo, tag);
  await waitFor(async () => {
    for (const d of blobs) {
      const r = await fetch(`${target.url}/v2/${repo}/blobs/${d}`, { redirect: "manual" });
      await r.arrayBuffer();
      const warm = target.redirects ? r.status === 307 : r.status === 200 && (!target.door || r.headers.get("x-frontdoor-cache") === "hit");
      if (!warm) return false;
    }
    return true;
  }, 20000, `${target.name}: blobs served from storage`);
  return blobs;
}

/** One warm pull (manifest by tag, every blob, redirects followed), counting whose bytes are whose. */
async function countedPull(target, repo, tag) {
  const origin = new URL(target.url).origin;
  const m = await follow(`${target.url}/v2/${repo}/manifests/${tag}`, { headers: { accept: ACCEPT } }, origin);
  if (m.status !== 200) throw new Error(`${target.name}: manifest ${m.status}`);
  const parsed = JSON.parse(m.body);
  const out = { manifest: m.fromDoor, blobs: 0, v2Blobs: 0, signedBlobs: 0, elsewhere: 0, redirects: 0, blobCount: 0 };
  for (const { digest } of [parsed.config, ...parsed.layers]) {
    const b = await follow(`${target.url}/v2/${repo}/blobs/${digest}`, {}, origin);
    if (b.status !== 200 || sha256(b.body) !== digest) throw new Error(`${target.name}: blob ${digest} ${b.status}`);
    out.blobs += b.fromDoor;
    for (const h of b.hops.filter((x) => x.origin === origin)) {
      if (h.path.startsWith("/_blob/")) out.signedBlobs += h.bytes;
      else out.v2Blobs += h.bytes;
    }
    if (b.hops.at(-1).origin !== origin) out.elsewhere += b.body.length;
    out.redirects += b.hops.filter((h) => h.status >= 300 && h.status < 400).length;
    out.blobCount++;
  }
  out.total = out.manifest + out.blobs;
  return out;
}

/**
 * `BLOB_GETS` sequential full downloads of `digest` from each target, round-robin so that drift on
 * the machine hits every target alike; time to last byte with redirects followed, and the time the
 * first answer (the 307) took. Every body is checked (outside the timed span).
 */
async function blobLatency(targets, repo, digest, size) {
  const times = targets.map(() => ({ total: [], hop: [], rest: [] }));
  for (let i = 0; i < BLOB_WARMUP + BLOB_GETS; i++) {
    for (const [k, t] of targets.entries()) {
      const r = await follow(`${t.url}/v2/${repo}/blobs/${digest}`, {}, new URL(t.url).origin);
      if (r.status !== 200 || r.body.length !== size || sha256(r.body) !== digest)
        throw new Error(`${t.name}: blob GET ${r.status}, ${r.body.length} bytes`);
      if (Boolean(t.redirects) !== r.hops.length > 1) throw new Error(`${t.name}: ${r.hops.length - 1} redirects`);
      if (i < BLOB_WARMUP) continue;
      times[k].total.push(r.hops.at(-1).ms);
      times[k].hop.push(r.hops[0].ms);
      times[k].rest.push(r.hops.at(-1).ms - r.hops[0].ms);
    }
  }
  const stats = (xs) => {
    xs.sort((a, b) => a - b);
    return { p50: percentile(xs, 50), p99: percentile(xs, 99) };
  };
  return times.map(({ total, hop, rest }) => ({ ...stats(total), hop: stats(hop), rest: stats(rest) }));
}

async function main() {
  const t0 = performance.now();
  const tmp = tempDir("bench");
  tempDirs.push(tmp.dir);
  stoppers.push(async () => tmp.remove());

  log("bundle size: wrangler deploy --dry-run");
  const bundle = await bundleSize(path.join(tmp.dir, "dry-run"));

  log("starting upstream (token issuer + docker-registry) and hubsim");
  const upstream = await startUpstream({ dir: path.join(tmp.dir), users: { [SVC]: PW } });
  stoppers.push(() => upstream.stop());
  const layout = path.join(tmp.dir, "image");
  buildImage(layout, { layers: LAYERS, bigLayerBytes: BIG_LAYER });
  for (const repo of ["bench/cold", "bench/ttl"]) {
    await upstream.push(layout, `${repo}:v1`);
  }
  const blobLayout = path.join(tmp.dir, "blob-image");
  const blobImage = buildImage(blobLayout, { layers: 2, bigLayerBytes: BLOB_LAYER });
  await upstream.push(blobLayout, `bench/blob:v1`);
  const coldBlobLayout = path.join(tmp.dir, "cold-blob-image");
  const coldBlobImage = buildImage(coldBlobLayout, { layers: 1, bigLayerBytes: COLD_BLOB_LAYER, platforms: COLD_BLOB_PLATFORMS });
  await upstream.push(coldBlobLayout, "bench/coldblob:v1", { all: true });
  // The limit is out of reach: the bench counts pulls, it does not want 429s to change the workload.
  const hub = await startHubSim({ targetUrl: upstream.url, limit: 1_000_000 });
  stoppers.push(() => hub.stop());

  log("starting the door (with the floor worker beside it; TAG_TTL_SECONDS default and =1) and docker-registry in proxy mode");
  const bindings = (extra = {}) => ({
    UPSTREAMS: JSON.stringify({ "registry.test": { url: hub.url, username: SVC, password_secret: "REGISTRY_TEST_PASSWORD" } }),
    DEFAULT_REGISTRY: "registry.test",
    REGISTRY_TEST_PASSWORD: PW,
    ...extra,
  });
  // The floor runs in the door's workerd, behind the same Miniflare entry router: requests under
  // FLOOR_ROUTE go to it, every other one to the door. It has a KV namespace of its own.
  const floor = {
    name: "floor",
    modules: true,
    scriptPath: path.join(ROOT, "scripts/bench-floor.js"),
    modulesRoot: path.join(ROOT, "scripts"),
    compatibilityDate: "2026-08-01",
    kvNamespaces: { CACHE: "FLOOR_CACHE" },
    routes: [`*${FLOOR_ROUTE}*`],
  };
  const door = await startDoor({ bindings: bindings(), extraWorkers: [floor], keepLogs: false });
  stoppers.push(() => door.stop());
  const doorTtl = await startDoor({ bindings: bindings({ TAG_TTL_SECONDS: "1" }), keepLogs: false });
  stoppers.push(() => doorTtl.stop());
  // The outage rows: tags past their TTL all the time, an upstream that stops answering, and a
  // short back-off so probes happen during the load; beside it the same door with no back-off
  // (every request asks upstream first, as the door did before the back-off existed).
  const outage = { TAG_TTL_SECONDS: "1", UPSTREAM_TIMEOUT_SECONDS: String(OUTAGE_TIMEOUT_S), UPSTREAM_BACKOFF_SECONDS: "2" };
  const doorOutage = await startDoor({ bindings: bindings(outage), keepLogs: false });
  stoppers.push(() => doorOutage.stop());
  const doorNoBackoff = await startDoor({ bindings: bindings({ ...outage, UPSTREAM_BACKOFF_SECONDS: "0" }), keepLogs: false });
  stoppers.push(() => doorNoBackoff.stop());
  const peerDir = path.join(tmp.dir, "peer");
  const peer = await startProxyRegistry({ dir: peerDir, remoteurl: hub.url, username: SVC, password: PW });
  stoppers.push(() => peer.stop());
  log("starting s3s-fs and the door with BLOB_REDIRECT=self and =s3");
  const s3 = await startS3({ dir: path.join(tmp.dir, "s3"), accessKey: S3_AK, secretKey: S3_SK, bucket: S3_BUCKET });
  stoppers.push(() => s3.stop());
  const doorSelf = await startDoor({ bindings: bindings({ BLOB_REDIRECT: "self", URL_SIGNING_KEY: crypto.randomBytes(32).toString("hex") }) });
  stoppers.push(() => doorSelf.stop());
  const doorS3 = await startDoor({ bindings: bindings({
    BLOB_REDIRECT: "s3", R2_S3_ENDPOINT: s3.endpoint, R2_BUCKET: S3_BUCKET, R2_ACCESS_KEY_ID: S3_AK, R2_SECRET_ACCESS_KEY: S3_SK,
  }) });
  stoppers.push(() => doorS3.stop());

  const res = { door: {}, peer: {} };
  log(`${COLD_PULLS} concurrent cold pulls (manifest + ${1 + LAYERS} blobs each)`);
  res.door.cold = await coldPulls("door", hub, upstream, door.url, "bench/cold");
  res.peer.cold = await coldPulls("docker-registry proxy", hub, upstream, peer.url, "bench/cold");
  if (res.peer.cold.failed) {
    const errors = peer.output().split("\n").filter((l) => /level=error/.test(l));
    log(`docker-registry proxy logged ${errors.length} errors, e.g.: ${errors[0]?.slice(0, 400)}`);
  }
  log(`${TTL_BATCHES}×${TTL_BATCH} tag re-pulls, ${TTL_SLEEP_MS} ms apart (door TAG_TTL_SECONDS=1)`);
  res.door.ttl = await ttlPulls(hub, upstream, doorTtl.url, "bench/ttl");
  res.peer.ttl = await ttlPulls(hub, upstream, peer.url, "bench/ttl");
  log(`warm tag pulls, door and floor (JS worker, one KV read, in the door's workerd) in ${WARM_ROUNDS} alternating rounds, ${WARM_WORKERS} workers × ${WARM_SECONDS} s each`);
  const warm = await warmAndFloor(hub, upstream, door, "bench/cold");
  log(`warm rounds, pulls/s: door ${warm.door.rounds.join(", ")}; floor ${warm.floor.rounds.join(", ")}`);
  res.door.warm = warm.door;
  res.floor = { warm: warm.floor };
  res.peer.warm = await warmPulls(hub, upstream, peer.url, "bench/cold");
  log(`warm tag pulls past the TTL, upstream healthy then hung (hubsim "timeout"), ${WARM_WORKERS} workers × ${WARM_SECONDS} s each`);
  res.outage = await outagePulls(hub, upstream, { backoff: doorOutage.url, none: doorNoBackoff.url }, "bench/ttl");

  // Cold blob throughput. A first manifest GET gives the door and docker-registry their token for
  // the repository (docker-registry asks for one per request anyway), so the blob GETs time the
  // blob alone; `direct` holds a token from the issuer, fetched before timing.
  const coldDigests = coldBlobImage.manifests.map((m) => m.layers[0]);
  const coldSize = statSync(path.join(coldBlobLayout, "blobs", "sha256", coldDigests[0].slice(7))).size;
  log(`cold blob throughput: ${coldDigests.length} × ${(coldSize / 2 ** 20).toFixed(2)} MiB layers, each read once per target`);
  for (const base of [door.url, peer.url]) await tagPull(base, "bench/coldblob", "v1");
  const token = await upstream.issuer.token(SVC, "repository:bench/coldblob:pull");
  const coldTargets = [
    { key: "door", name: "door", url: door.url, door: true },
    { key: "peer", name: "docker-registry proxy", url: peer.url },
    { key: "direct", name: "direct upstream read", url: hub.url, headers: { authorization: `Bearer ${token}` } },
  ];
  const coldBlobs = await coldBlobThroughput(coldTargets, door, "bench/coldblob", coldDigests);
  res.coldBlob = Object.fromEntries(coldTargets.map((t, i) => [t.key, coldBlobs[i]]));

  // The blob rows: the same cached image read through the door in each BLOB_REDIRECT mode and
  // through docker-registry. (The fills go through hubsim after the rows above are counted.)
  const blobTargets = [
    { key: "off", name: "door BLOB_REDIRECT=off", url: door.url, door: true },
    { key: "self", name: "door BLOB_REDIRECT=self", url: doorSelf.url, door: true, redirects: true },
    { key: "s3", name: "door BLOB_REDIRECT=s3", url: doorS3.url, door: true, redirects: true },
    { key: "peer", name: "docker-registry proxy", url: peer.url },
  ];
  const bigLayer = blobImage.manifests[0].layers[0];
  const blobFile = (d) => path.join(blobLayout, "blobs", "sha256", d.slice(7));
  const bigSize = statSync(blobFile(bigLayer)).size;
  log(`filling bench/blob (${(bigSize / 2 ** 20).toFixed(2)} MiB layer) in each target`);
  for (const t of blobTargets) {
    const digests = await warmUp(t, "bench/blob", "v1");
    // Miniflare's R2 and s3s-fs are two stores: put what the door filled into the bucket, as R2's
    // S3 endpoint would serve it, under the door's own key layout.
    if (t.key === "s3") for (const d of digests) await s3.putObject(`blobs/sha256/${d.slice(7)}`, readFileSync(blobFile(d)));
  }
  log("one warm pull of bench/blob per target, counting whose bytes are whose");
  res.bytes = {};
  for (const t of blobTargets) res.bytes[t.key] = await countedPull(t, "bench/blob", "v1");
  log(`${BLOB_GETS} sequential GETs of the ${(bigSize / 2 ** 20).toFixed(2)} MiB layer per target (round-robin, after ${BLOB_WARMUP} unmeasured)`);
  const latencies = await blobLatency(blobTargets, "bench/blob", bigLayer, bigSize);
  res.lat = Object.fromEntries(blobTargets.map((t, i) => [t.key, latencies[i]]));
  // The cold-rotation rows, each with a door of its own (after the rows above: nothing else runs).
  const herdArgs = { upstream, hub, svc: SVC, pw: PW, dir: path.join(tmp.dir, "herd"), log };
  res.herd = await herdRows(herdArgs);
  res.single = await singleColdRow(herdArgs);
  // The same rows with V8 collecting as a Worker isolate must (its memory limit is 128 MB): local
  // workerd has no such limit, so its garbage waits. Every isolate of those workerds runs so, the
  // JS fetch-and-put baseline's too.
  log(`the herd and single-client rows again, with workerd's V8 flags: ${CAPPED_V8}`);
  const cappedArgs = { ...herdArgs, dir: path.join(tmp.dir, "herd-capped") };
  res.herdCapped = await withV8Flags(CAPPED_V8, () => herdRows(cappedArgs));
  res.singleCapped = await withV8Flags(CAPPED_V8, () => singleColdRow(cappedArgs));
  res.accept = await acceptRows(herdArgs);
  log("VERIFY: cosign-signed against unsigned pulls through one door, cold and warm");
  res.policy = await policyPulls({ upstream, svc: SVC, hub, bindings, dir: tmp.dir, stoppers });
  const total = (performance.now() - t0) / 1000;

  await cleanup();

  const { door: d, peer: p, floor: { warm: f }, coldBlob: cb, outage: o } = res;
  const n = (v, digits = 0) => (v === undefined || Number.isNaN(v) ? "—" : v.toFixed(digits));
  const ratio = (a, b) => (a === undefined || b === undefined ? "—" : b ? `${(a / b).toFixed(2)}×` : a ? "∞" : "—");
  const cell = (v, digits, detail) => (detail ? `${n(v, digits)} (${detail})` : n(v, digits));
  /**
   * One table row: the door's number `a`, docker-registry's `b`, and where there is one, the
   * baseline `c` (the floor, a direct upstream read, or a target); `la`/`lb`/`lc` add detail.
   */
  const row = (name, a, b, { digits = 0, la, lb, c, lc } = {}) => [
    name, cell(a, digits, la), cell(b, digits, lb), ratio(a, b),
    c === undefined ? "" : cell(c, digits, lc), c === undefined ? "" : ratio(a, c),
  ];
  const mib = (b) => (b / 2 ** 20).toFixed(2);
  const minMax = (x) => `${n(x.min, 0)}–${n(x.max, 0)}`;
  const rows = [
    row(`upstream registry requests per ${COLD_PULLS} concurrent cold pulls`, d.cold.registry, p.cold.registry),
    row("… of which manifest GETs", d.cold.manifestGets, p.cold.manifestGets),
    row("… of which manifest HEADs", d.cold.manifestHeads, p.cold.manifestHeads),
    row("… of which blob GETs", d.cold.blobGets, p.cold.blobGets),
    row("… of which blob HEADs", d.cold.blobHeads, p.cold.blobHeads),
    row("… of which /v2/ pings", d.cold.pings, p.cold.pings),
    row("… of which 401 challenges (all kinds)", d.cold.challenges, p.cold.challenges),
    row(`token requests per ${COLD_PULLS} concurrent cold pulls`, d.cold.tokens, p.cold.tokens),
    row(`counted pulls per ${COLD_PULLS} concurrent cold pulls`, d.cold.pulls, p.cold.pulls),
    row(`failed of ${COLD_PULLS} concurrent cold pulls`, d.cold.failed, p.cold.failed),
    row(`wall time of ${COLD_PULLS} concurrent cold pulls (s)`, d.cold.seconds, p.cold.seconds, { digits: 2 }),
    row(`counted pulls per ${TTL_BATCHES * TTL_BATCH} re-pulls of an unchanged tag across TTL expiries`, d.ttl.pulls, p.ttl.pulls),
    row(`upstream registry requests per ${TTL_BATCHES * TTL_BATCH} re-pulls (manifest GET/HEAD/ping)`, d.ttl.registry, p.ttl.registry, {
      la: `${d.ttl.manifestGets}/${d.ttl.manifestHeads}/${d.ttl.pings}`, lb: `${p.ttl.manifestGets}/${p.ttl.manifestHeads}/${p.ttl.pings}`,
    }),
    row(`token requests per ${TTL_BATCHES * TTL_BATCH} re-pulls`, d.ttl.tokens, p.ttl.tokens),
    row(`warm tag pulls per second (${WARM_WORKERS} workers, ${d.warm.tool})`, d.warm.rps, p.warm.rps, { c: f.rps, lc: "floor: JS worker, one KV read" }),
    row("warm tag pull p50 latency (ms)", d.warm.p50, p.warm.p50, { digits: 2, c: f.p50, lc: "floor" }),
    row("warm tag pull p99 latency (ms)", d.warm.p99, p.warm.p99, { digits: 2, c: f.p99, lc: "floor" }),
    row("warm run: upstream registry requests (manifest HEADs)", d.warm.registry, p.warm.registry, { la: `${d.warm.manifestHeads}`, lb: `${p.warm.manifestHeads}` }),
    row("warm run: token requests", d.warm.tokens, p.warm.tokens),
    row("warm run: non-200 answers or errors", d.warm.errors, p.warm.errors, { c: f.errors, lc: "floor" }),
    row(`tag past its TTL, upstream healthy: pulls per second (door, UPSTREAM_BACKOFF_SECONDS=2)`, o.backoff.healthy.rps, undefined),
    row(`tag past its TTL, upstream hung: pulls per second (door, UPSTREAM_BACKOFF_SECONDS=2; baseline: the same door healthy)`, o.backoff.down.rps, undefined, { c: o.backoff.healthy.rps, lc: "healthy" }),
    row(`tag past its TTL, upstream hung: pulls per second with the back-off off (UPSTREAM_BACKOFF_SECONDS=0; baseline: that door healthy)`, o.none.down.rps, undefined, { c: o.none.healthy.rps, lc: "healthy" }),
    row(`tag past its TTL, upstream healthy: p99 latency (ms)`, o.backoff.healthy.p99, undefined, { digits: 2 }),
    row(`tag past its TTL, upstream hung: p99 latency (ms), back-off on (baseline: healthy)`, o.backoff.down.p99, undefined, { digits: 2, c: o.backoff.healthy.p99, lc: "healthy" }),
    row(`tag past its TTL, upstream hung: p99 latency (ms), back-off off (baseline: healthy)`, o.none.down.p99, undefined, { digits: 2, c: o.none.healthy.p99, lc: "healthy" }),
    row(`tag past its TTL, upstream hung: requests that reached upstream in ${WARM_SECONDS} s, back-off on / off`, o.backoff.down.upstream, undefined, { la: `off: ${o.none.down.upstream}` }),
    row(`tag past its TTL, upstream hung: non-200 answers or errors, back-off on / off`, o.backoff.down.errors, undefined, { la: `off: ${o.none.down.errors}` }),
    row(`cold blob GET throughput (MB/s; ${cb.door.n} × ${mib(coldSize)} MiB layers, each read once; in parentheses min–max)`,
      cb.door.mbps, cb.peer.mbps, { la: minMax(cb.door), lb: minMax(cb.peer), c: cb.direct.mbps, lc: `direct upstream read, ${minMax(cb.direct)}` }),
    ...res.herd.flatMap((h) => [
      row(`cold herd, ${h.clients} clients × ${n(h.mib)} MiB layer: others' time to headers, p50 / max (ms; baseline: the owner's + 1000 ms, the target)`,
        h.othersP50, undefined, { la: `max ${n(h.othersMax)}`, c: h.ownerHeaders + 1000, lc: `owner ${n(h.ownerHeaders)}` }),
      row(`cold herd, ${h.clients} × ${n(h.mib)} MiB: last client done (s); clients that joined the fill; upstream blob GETs`,
        h.completion, undefined, { digits: 1, la: `${h.joined} joined, ${h.blobGets} upstream GET${h.blobGets === 1 ? "" : "s"}` }),
      row(`cold herd, ${h.clients} × ${n(h.mib)} MiB: workerd RSS growth (MiB; baseline: the 64 MiB target)`, h.rssGrowth, undefined, { c: 64, lc: "target" }),
    ]),
    row(`one cold client, ${n(res.single.mib)} MiB layer: workerd RSS growth (MiB; baseline: a JS worker's fetch-and-put of it)`, res.single.doorRss, undefined,
      { c: res.single.floorRss, lc: "JS fetch-and-put" }),
    ...res.herdCapped.map((h) =>
      row(`cold herd, ${h.clients} × ${n(h.mib)} MiB, V8 heap capped: workerd RSS growth (MiB; baseline: the 64 MiB target)`, h.rssGrowth, undefined,
        { c: 64, lc: `target; ${h.joined} joined, ${h.blobGets} upstream GET, done in ${n(h.completion, 1)} s` })),
    row(`one cold client, ${n(res.singleCapped.mib)} MiB layer, V8 heap capped: workerd RSS growth (MiB; baseline: a JS worker's fetch-and-put of it)`,
      res.singleCapped.doorRss, undefined, { c: res.singleCapped.floorRss, lc: "JS fetch-and-put, capped too; the target: 64" }),
    row(`one cold client, ${n(res.single.mib)} MiB layer (MB/s; baseline: a direct upstream read)`, res.single.door, undefined,
      { c: res.single.direct, lc: `direct; a JS worker's fetch-and-put to R2: ${n(res.single.storage)} MB/s, the door ${ratio(res.single.door, res.single.storage)} of it` }),
    ...Object.entries(res.accept).map(([name, a]) =>
      row(`${ROTATION_NODES}-node rotation, ${name === "oci" ? "OCI-only" : "Docker-only"} Accept: counted pulls (baseline: distinct manifests served; quota 3)`,
        a.pulls, undefined, { la: `${a.tooMany} × 429; answers ${JSON.stringify(a.statuses)}`, c: a.distinct, lc: "distinct" })),
    ...policyRows(row, res.policy),
    row(`bundle wrangler would upload, gzip (KiB; ${n(bundle.total, 2)} KiB before gzip)`, bundle.gzip, undefined,
      { digits: 2, c: BUNDLE_TARGET_KIB, lc: `target: ≤ ${BUNDLE_TARGET_KIB} KiB` }),
  ];
  const { lat, bytes } = res;
  const pair = (x) => `${n(x.p50, 1)} / ${n(x.p99, 1)}`;
  const pairRatio = (x, y) => `${ratio(x.p50, y.p50)} / ${ratio(x.p99, y.p99)}`;
  const latName = `warm blob GET latency p50/p99 (ms), ${mib(bigSize)} MiB layer`;
  const withHop = (x) => `${pair(x)} (307: ${pair(x.hop)}; after it: ${pair(x.rest)})`;
  const bytesName = `bytes through the worker per warm pull (manifest + ${bytes.off.blobCount} blobs, ${mib(bytes.peer.total)} MiB)`;
  const extra = [
    [`${latName}: BLOB_REDIRECT=off (streamed through the worker)`, pair(lat.off), pair(lat.peer), pairRatio(lat.off, lat.peer), "", ""],
    [`${latName}: BLOB_REDIRECT=self (307 → /_blob/, from R2 via the worker)`, withHop(lat.self), pair(lat.peer), pairRatio(lat.self, lat.peer), "", ""],
    [`${latName}: BLOB_REDIRECT=s3 (307 → presigned URL, from s3s-fs)`, withHop(lat.s3), pair(lat.peer), pairRatio(lat.s3, lat.peer), "", ""],
    ...["off", "self", "s3"].map((k) => {
      const b = bytes[k];
      const parts = [`manifest ${b.manifest}`, `/v2/ blobs ${b.v2Blobs}`];
      if (k === "self") parts.push(`/_blob/ ${b.signedBlobs}`);
      const tail = [b.redirects ? `${b.redirects}× 307` : null, b.elsewhere ? `${b.elsewhere} from the bucket` : null].filter(Boolean);
      return [`${bytesName}: BLOB_REDIRECT=${k}`, `${b.total} (${parts.join(" + ")}${tail.length ? `; ${tail.join(", ")}` : ""})`,
        `${bytes.peer.total} (all of it)`, ratio(b.total, bytes.peer.total), "", ""];
    }),
  ];
  const out = [
    "",
    `Image: 1 config + ${LAYERS} layers (${BIG_LAYER >> 10} KiB + 2 tiny), one tag. Upstream: docker-registry 2.8 behind token auth,`,
    `fronted by hubsim (Docker Hub's pull counting). Door TAG_TTL_SECONDS: default for cold/warm, 1 for the re-pull rows.`,
    `Ratios are door ÷ the other column (lower is better except pulls per second and MB/s). Run took ${total.toFixed(0)} s.`,
    "",
    "| metric | door | docker-registry proxy | door ÷ proxy | baseline | door ÷ baseline |",
    "|---|---:|---:|---:|---:|---:|",
    ...[...rows, ...extra].map((cells) => `| ${cells.join(" | ")} |`),
    "",
    `Floor: scripts/bench-floor.js, a JS worker answering every request with one KV read of the same manifest, run in the door's`,
    `workerd (one Miniflare instance, behind the same entry router), under the same ${WARM_WORKERS}-worker ${d.warm.tool} load for ${WARM_SECONDS} s,`,
    `in ${WARM_ROUNDS} rounds alternating with the door's (median of each; pulls/s by round: door ${d.warm.rounds.join(", ")}, floor ${f.rounds.join(", ")}).`,
    `The bench's doors do not keep their log lines (startDoor keepLogs: false): the harness reading them is not the door's cost.`,
    `Cold blobs: ${cb.door.n} layers (one per platform of a ${cb.door.n}-platform image), each GET once through the door (a miss: streamed`,
    `from upstream while it fills R2; the next GET waits for that fill), once through docker-registry (a miss), and once straight from`,
    `the door's upstream URL (hubsim → docker-registry) with a token: the direct read. MB/s = 10^6 bytes/s to the last byte.`,
    `Bundle: "Total Upload … / gzip: …" of wrangler deploy --dry-run on build/ (what wrangler would upload).`,
    `Blob rows: a second image (1 config + a ${mib(bigSize)} MiB layer + 1 tiny), cached in every target first. Latency: ${BLOB_GETS} sequential`,
    `GETs per target to the last byte, redirects followed (in parentheses: the 307 answer alone, and the redirected GET alone),`,
    `Node fetch with keep-alive, round-robin over the four targets, ${BLOB_WARMUP} unmeasured first, every body's digest checked.`,
    `The s3 row's redirected GET is s3s-fs (a test S3 server over local files) serving the object, not R2.`,
    `Worker bytes: response bodies the door's own origin sent (a 307 is 0 bytes). In self mode the /_blob/ bytes still come from`,
    `the worker here (Miniflare has no edge cache); in production they carry Cache-Control: immutable, so Cloudflare's edge cache`,
    `can answer repeats. In s3 mode they come from the bucket (here s3s-fs, a second store the bench copies the blobs into).`,
  ];
  console.log(out.join("\n"));

  // The chart: the main numbers as bars, the door's ratios in each panel's subtitle.
  const x = (v, digits = 2) => `${n(v, digits)}×`;
  const num = (v, digits = 0) => n(v, digits);
  const chartDir = tempDir("bench-chart");
  tempDirs.push(chartDir.dir);
  const png = await writeChart({
    title: "frontdoor benchmark: the door vs docker-registry in proxy mode, with baselines",
    subtitle: `One run on this machine, ${new Date().toISOString().slice(0, 10)}; the bench took ${total.toFixed(0)} s. ` +
      `Door: the built worker in Miniflare (workerd). Upstream: docker-registry behind token auth, fronted by hubsim.`,
    footer: "Floor: a JS worker doing one KV read in the door's workerd. Direct: the blob read from the door's upstream URL with a token. " +
      "Numbers: scripts/bench's table.",
    panels: [
      {
        title: `Warm tag pulls per second (${WARM_WORKERS} workers, higher is better)`,
        subtitle: `door ÷ proxy ${x(d.warm.rps / p.warm.rps)}, door ÷ floor ${x(d.warm.rps / f.rps)}`,
        bars: [
          { label: "door", value: d.warm.rps, text: num(d.warm.rps), kind: "door" },
          { label: "docker-registry proxy", value: p.warm.rps, text: num(p.warm.rps), kind: "peer" },
          { label: "floor: JS worker, 1 KV read", value: f.rps, text: num(f.rps), kind: "base" },
        ],
      },
      {
        title: "Warm tag pull latency, ms (lower is better)",
        subtitle: `p50: door ÷ proxy ${x(d.warm.p50 / p.warm.p50)}, door ÷ floor ${x(d.warm.p50 / f.p50)}`,
        bars: [
          { label: "door p50", value: d.warm.p50, text: num(d.warm.p50, 1), kind: "door" },
          { label: "docker-registry proxy p50", value: p.warm.p50, text: num(p.warm.p50, 1), kind: "peer" },
          { label: "floor p50", value: f.p50, text: num(f.p50, 1), kind: "base" },
          { label: "door p99", value: d.warm.p99, text: num(d.warm.p99, 1), kind: "door" },
          { label: "docker-registry proxy p99", value: p.warm.p99, text: num(p.warm.p99, 1), kind: "peer" },
          { label: "floor p99", value: f.p99, text: num(f.p99, 1), kind: "base" },
        ],
      },
      {
        title: `Cold blob GET throughput, MB/s (${cb.door.n} × ${mib(coldSize)} MiB, higher is better)`,
        subtitle: `door ÷ direct ${x(cb.door.mbps / cb.direct.mbps)}, door ÷ proxy ${x(cb.door.mbps / cb.peer.mbps)}`,
        bars: [
          { label: "door (miss)", value: cb.door.mbps, text: num(cb.door.mbps), kind: "door" },
          { label: "docker-registry proxy (miss)", value: cb.peer.mbps, text: num(cb.peer.mbps), kind: "peer" },
          { label: "direct upstream read", value: cb.direct.mbps, text: num(cb.direct.mbps), kind: "base" },
        ],
      },
      {
        title: `Upstream requests per ${COLD_PULLS} concurrent cold pulls (lower is better)`,
        subtitle: `registry: door ÷ proxy ${x(d.cold.registry / p.cold.registry)}; tokens: ${x(d.cold.tokens / p.cold.tokens)}`,
        bars: [
          { label: "door: registry", value: d.cold.registry, text: num(d.cold.registry), kind: "door" },
          { label: "docker-registry: registry", value: p.cold.registry, text: num(p.cold.registry), kind: "peer" },
          { label: "door: token", value: d.cold.tokens, text: num(d.cold.tokens), kind: "door" },
          { label: "docker-registry: token", value: p.cold.tokens, text: num(p.cold.tokens), kind: "peer" },
        ],
      },
      {
        title: "Warm blob GET p50, ms (lower is better)",
        subtitle: `${mib(bigSize)} MiB layer; BLOB_REDIRECT=off: door ÷ proxy ${x(lat.off.p50 / lat.peer.p50)}`,
        bars: [
          { label: "door, BLOB_REDIRECT=off", value: lat.off.p50, text: num(lat.off.p50, 1), kind: "door" },
          { label: "door, BLOB_REDIRECT=self", value: lat.self.p50, text: num(lat.self.p50, 1), kind: "door" },
          { label: "door, BLOB_REDIRECT=s3", value: lat.s3.p50, text: num(lat.s3.p50, 1), kind: "door" },
          { label: "docker-registry proxy", value: lat.peer.p50, text: num(lat.peer.p50, 1), kind: "peer" },
        ],
      },
      {
        title: "Bundle wrangler would upload, gzip KiB (lower is better)",
        subtitle: `${n((100 * bundle.gzip) / BUNDLE_TARGET_KIB, 0)}% of the ${BUNDLE_TARGET_KIB} KiB target; ${n(bundle.total, 2)} KiB before gzip`,
        bars: [
          { label: "door", value: bundle.gzip, text: `${n(bundle.gzip, 2)} KiB`, kind: "door" },
          { label: "target", value: BUNDLE_TARGET_KIB, text: `≤ ${BUNDLE_TARGET_KIB} KiB`, kind: "base" },
        ],
      },
    ],
  }, path.join(ROOT, "test-output", "bench.png"), chartDir.dir);
  log(`chart: ${png}`);
  clearTimeout(watchdog);
}

main().catch(async (e) => {
  log(`failed: ${e.stack || e.message}`);
  await cleanup();
  process.exit(1);
});
