// scripts/bench's cold-rotation rows (issue 12): a cold herd on one big layer, one cold client on
// a 256 MiB layer against a direct upstream read and against what storage itself takes, and
// OCI-only / Docker-only Accept clients in a 50-node rotation. Each row's door is started here,
// alone in its own workerd, so that workerd's memory is the door's.
import crypto from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { buildImage } from "../tests/e2e/lib/image.mjs";
import { startDoor } from "../tests/e2e/lib/door.mjs";
import { startHubSim } from "../tests/e2e/lib/hubsim.mjs";
import { MANIFEST_ACCEPT, waitFor } from "../tests/e2e/lib/util.mjs";

// BENCH_HERD_CLIENTS and BENCH_HERD_MIB (comma-separated) change the herd rows' workload, e.g.
// 50 clients on a 1024 MiB layer (issue 12's fleet case: several minutes on a 2-core machine);
// BENCH_SINGLE_MIB the single cold client's layer.
const HERD = Number(process.env.BENCH_HERD_CLIENTS || 16);
const HERD_LAYERS = (process.env.BENCH_HERD_MIB || "16,64").split(",").map((m) => Number(m) << 20);
const SINGLE_LAYER = Number(process.env.BENCH_SINGLE_MIB || 256) << 20;
export const ROTATION_NODES = 50;
const OCI_ONLY = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";
const DOCKER_ONLY = "application/vnd.docker.distribution.manifest.v2+json";

const percentile = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

/** Process ids of every workerd running now. */
function workerds() {
  return new Set(readdirSync("/proc").filter((p) => /^\d+$/.test(p)).filter((p) => {
    try {
      return /^Name:\s+workerd$/m.test(readFileSync(`/proc/${p}/status`, "utf8"));
    } catch {
      return false;
    }
  }));
}

/** Resident memory of `pids`, MiB. */
function rss(pids) {
  let kib = 0;
  for (const p of pids) {
    try {
      kib += Number(readFileSync(`/proc/${p}/status`, "utf8").match(/VmRSS:\s+(\d+)/)[1]);
    } catch {}
  }
  return kib / 1024;
}

/** Starts sampling the memory of `pids` every 100 ms; the returned function stops and gives the
 * growth (peak less the level at the start), MiB. */
function sampler(pids) {
  const base = rss(pids);
  let peak = base;
  const timer = setInterval(() => { peak = Math.max(peak, rss(pids)); }, 100);
  return () => {
    clearInterval(timer);
    return Math.max(peak, rss(pids)) - base;
  };
}

/** A door of its own (its workerd's pids are its own too). */
async function ownDoor(hub, svc, pw, dir) {
  const before = workerds();
  const door = await startDoor({
    persistDir: dir,
    bindings: {
      UPSTREAMS: JSON.stringify({ "registry.test": { url: hub.url, username: svc, password_secret: "PW" } }),
      DEFAULT_REGISTRY: "registry.test",
      PW: pw,
    },
  });
  const pids = [...workerds()].filter((p) => !before.has(p));
  return { door, pids };
}

/** GETs `url` to the end: status, cache header, headers/done times from `t0` (ms), digest. */
async function timed(url, t0, headers = {}) {
  const r = await fetch(url, { headers });
  const out = { status: r.status, cache: r.headers.get("x-frontdoor-cache"), headers: performance.now() - t0 };
  const hash = crypto.createHash("sha256");
  let bytes = 0;
  try {
    for await (const chunk of r.body) {
      hash.update(chunk);
      bytes += chunk.length;
    }
  } catch (e) {
    // A transfer cut short is this client's failure, counted with the others'.
    return { ...out, done: performance.now() - t0, bytes, error: `${e.message} (${e.cause?.message ?? "no cause"})` };
  }
  return { ...out, done: performance.now() - t0, bytes, digest: `sha256:${hash.digest("hex")}` };
}

/** Pushes a one-layer image of `size` bytes as `repo:v1`; returns the layer's digest and size. */
async function bigImage(upstream, dir, repo, size) {
  const image = buildImage(dir, { layers: 1, bigLayerBytes: size });
  await upstream.push(dir, `${repo}:v1`);
  const layer = image.manifests[0].layers[0];
  return { layer, size: statSync(path.join(dir, "blobs", "sha256", layer.slice(7))).size };
}

/**
 * The herd rows: for each layer size, HERD clients GET the cold layer at once through a fresh
 * door; times to headers (the owner's, the others' p50 and max), the last client's completion,
 * upstream blob GETs, and the growth of the door's workerd memory while it ran (sampled every
 * 100 ms, peak less the level before).
 */
export async function herdRows({ upstream, hub, svc, pw, dir, log }) {
  const out = [];
  for (const [i, want] of HERD_LAYERS.entries()) {
    const repo = `bench/herd${i}`;
    const { layer, size } = await bigImage(upstream, path.join(dir, `herd${i}`), repo, want);
    const { door, pids } = await ownDoor(hub, svc, pw, path.join(dir, `herd-door${i}`));
    try {
      const m = await fetch(`${door.url}/v2/${repo}/manifests/v1`, { headers: { accept: MANIFEST_ACCEPT } });
      if (m.status !== 200) throw new Error(`herd: manifest ${m.status}`);
      await m.arrayBuffer();
      log(`cold herd: ${HERD} clients × ${(size / 2 ** 20).toFixed(0)} MiB layer`);
      const sample = sampler(pids);
      const gets = hub.state.counts.blobGets;
      const t0 = performance.now();
      const results = await Promise.all(Array.from({ length: HERD }, () => timed(`${door.url}/v2/${repo}/blobs/${layer}`, t0)));
      // The blob's own object lands after the herd (put together from the spool): part of the fill.
      await waitFor(() => door.stored(layer), 120000, "herd: the layer in R2");
      const rssGrowth = sample();
      const bad = results.filter((r) => r.status !== 200 || r.digest !== layer || r.bytes !== size);
      if (bad.length) {
        const lines = door.logs().split("\n").filter((l) => /"status":5|error|released|abort|stall/i.test(l));
        log(`herd: the door's last error lines:\n${lines.slice(-12).join("\n")}`);
        throw new Error(`herd: ${bad.length} of ${HERD} clients got no whole layer: ${JSON.stringify(bad[0])}`);
      }
      const owner = results.find((r) => r.cache === "miss");
      const others = results.filter((r) => r !== owner).map((r) => r.headers);
      out.push({
        mib: size / 2 ** 20,
        clients: HERD,
        ownerHeaders: owner?.headers,
        othersP50: percentile(others, 50),
        othersMax: Math.max(...others),
        completion: Math.max(...results.map((r) => r.done)) / 1000,
        joined: results.filter((r) => r.cache === "joined").length,
        blobGets: hub.state.counts.blobGets - gets,
        rssGrowth,
      });
    } finally {
      await door.stop();
    }
  }
  return out;
}

/**
 * One cold client on a SINGLE_LAYER layer through a fresh door, against a direct upstream read of
 * the same layer and against storage's own pace (`storagePace`).
 */
export async function singleColdRow({ upstream, hub, svc, pw, dir, log }) {
  const repo = "bench/single";
  const { layer, size } = await bigImage(upstream, path.join(dir, "single"), repo, SINGLE_LAYER);
  const { door, pids } = await ownDoor(hub, svc, pw, path.join(dir, "single-door"));
  try {
    const m = await fetch(`${door.url}/v2/${repo}/manifests/v1`, { headers: { accept: MANIFEST_ACCEPT } });
    await m.arrayBuffer();
    log(`one cold client × ${(size / 2 ** 20).toFixed(0)} MiB layer, a direct read, storage's pace`);
    const token = await upstream.issuer.token(svc, `repository:${repo}:pull`);
    const direct = await timed(`${hub.url}/v2/${repo}/blobs/${layer}`, performance.now(), { authorization: `Bearer ${token}` });
    const sample = sampler(pids);
    const cold = await timed(`${door.url}/v2/${repo}/blobs/${layer}`, performance.now());
    if (cold.digest !== layer || direct.digest !== layer || cold.cache !== "miss") throw new Error(`single cold: ${JSON.stringify(cold)}`);
    await waitFor(() => door.stored(layer), 120000, "single cold: the layer in R2");
    const doorRss = sample();
    const floor = await storagePace(`${hub.url}/v2/${repo}/blobs/${layer}`, token);
    const mbps = (r) => r.bytes / (r.done / 1000) / 1e6;
    return { mib: size / 2 ** 20, door: mbps(cold), direct: mbps(direct), storage: size / (floor.ms / 1000) / 1e6, doorRss, floorRss: floor.rss };
  } finally {
    await door.stop();
  }
}

/**
 * The least a fill can do: a JS worker (its own workerd) that fetches the layer from upstream and
 * puts the body straight into R2, with nobody to answer. Its time (ms) and its workerd's memory
 * growth (MiB): the runtime's own share of any fill's growth (garbage not yet collected).
 */
async function storagePace(url, token) {
  const { Miniflare } = await import("miniflare");
  const before = workerds();
  const mf = new Miniflare({
    modules: true,
    compatibilityDate: "2026-08-01",
    r2Buckets: ["B"],
    bindings: { URL: url, TOKEN: token },
    script: `export default { async fetch(req, env) {
      const t0 = Date.now();
      const r = await fetch(env.URL, { headers: { authorization: "Bearer " + env.TOKEN } });
      const fixed = new FixedLengthStream(Number(r.headers.get("content-length")));
      await Promise.all([env.B.put("k", fixed.readable), r.body.pipeTo(fixed.writable)]);
      return new Response(String(Date.now() - t0));
    } }`,
  });
  try {
    await mf.ready;
    const sample = sampler([...workerds()].filter((p) => !before.has(p)));
    const ms = Number(await (await mf.dispatchFetch("http://storage.test/")).text());
    return { ms, rss: sample() };
  } finally {
    await mf.dispose();
  }
}

/**
 * A 50-node rotation with each narrow Accept: every node GETs a multi-platform tag's index (or
 * what its Accept takes), a platform manifest and a single-platform tag, all at once, against a
 * quota of three. Counted pulls, 429s, answers and the distinct manifests served, per Accept.
 */
export async function acceptRows({ upstream, svc, pw, dir, log }) {
  const platforms = [{ os: "linux", architecture: "amd64" }, { os: "linux", architecture: "arm64" }];
  const out = {};
  for (const [name, accept, format] of [["oci", OCI_ONLY], ["docker", DOCKER_ONLY, "v2s2"]]) {
    // Docker-only clients pull Docker-typed images (a manifest list over schema 2 manifests).
    buildImage(path.join(dir, `${name}-multi`), { layers: 1, bigLayerBytes: 4 << 10, platforms });
    buildImage(path.join(dir, `${name}-single`), { layers: 1, bigLayerBytes: 4 << 10 });
    await upstream.push(path.join(dir, `${name}-multi`), `rot/${name}-multi:v1`, { all: true, format });
    await upstream.push(path.join(dir, `${name}-single`), `rot/${name}-single:v1`, { format });
    // The quota: the three manifests a node takes at most; counted pulls should be those it got.
    const hub = await startHubSim({ targetUrl: upstream.url, limit: 3 });
    const { door } = await ownDoor(hub, svc, pw, path.join(dir, `${name}-door`));
    try {
      log(`${ROTATION_NODES}-node rotation, ${name === "oci" ? "OCI-only" : "Docker-only"} Accept`);
      const served = new Set();
      const get = async (ref) => {
        const r = await fetch(`${door.url}/v2/${ref}`, { headers: { accept } });
        const body = Buffer.from(await r.arrayBuffer());
        if (r.status === 200) served.add(r.headers.get("docker-content-digest"));
        return { status: r.status, body };
      };
      // A node: the multi-platform tag, then the platform manifest it lists; the single tag.
      const node = async () => {
        const [top, single] = await Promise.all([get(`rot/${name}-multi/manifests/v1`), get(`rot/${name}-single/manifests/v1`)]);
        const listed = top.status === 200 ? JSON.parse(top.body).manifests?.[0]?.digest : undefined;
        const platform = listed ? await get(`rot/${name}-multi/manifests/${listed}`) : { status: "none" };
        return [top.status, platform.status, single.status];
      };
      const statuses = (await Promise.all(Array.from({ length: ROTATION_NODES }, node))).flat();
      const tally = {};
      for (const s of statuses) tally[s] = (tally[s] ?? 0) + 1;
      out[name] = { pulls: hub.state.counts.pulls, tooMany: hub.state.counts.tooMany, distinct: served.size, statuses: tally };
    } finally {
      await door.stop();
      await hub.stop();
    }
  }
  return out;
}
