// Probe: N concurrent cold GETs of one big layer through the door; headers/done times, RSS.
import path from "node:path";
import { readFileSync, readdirSync } from "node:fs";
import { buildImage } from "./image.mjs";
import { startDoor } from "./door.mjs";
import { startHubSim } from "./hubsim.mjs";
import { startUpstream } from "./registry.mjs";
import { MANIFEST_ACCEPT, sha256, tempDir } from "./util.mjs";
import crypto from "node:crypto";

const N = Number(process.env.N ?? 8);
const MB = Number(process.env.MB ?? 256);
function workerdRss() {
  let total = 0;
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      const st = readFileSync(`/proc/${pid}/status`, "utf8");
      if (/^Name:\s+workerd/m.test(st)) total += Number(st.match(/VmRSS:\s+(\d+)/)[1]);
    } catch {}
  }
  return total / 1024;
}
const tmp = tempDir("herd");
const PW = crypto.randomBytes(8).toString("hex");
const up = await startUpstream({ dir: tmp.dir, users: { svc: PW } });
const dir = path.join(tmp.dir, "img");
const img = buildImage(dir, { layers: 1, bigLayerBytes: MB << 20 });
await up.push(dir, "big/app:v1");
const hub = await startHubSim({ targetUrl: up.url, limit: 1000 });
const door = await startDoor({ persistDir: process.env.PERSIST ? path.join(tmp.dir, "persist") : undefined, coalesce: process.env.COALESCE !== "0", bindings: { UPSTREAMS: JSON.stringify({ "docker.io": { url: hub.url, username: "svc", password_secret: "P" } }), DEFAULT_REGISTRY: "docker.io", P: PW } });
const m = await (await fetch(`${door.url}/v2/big/app/manifests/v1`, { headers: { accept: MANIFEST_ACCEPT } })).json();
const layer = m.layers[0].digest;
const rss0 = workerdRss();
let peak = rss0;
const sampler = setInterval(() => { peak = Math.max(peak, workerdRss()); }, 100);
const before = JSON.stringify(hub.state.counts);
const t0 = performance.now();
const res = await Promise.all(Array.from({ length: N }, async (_, i) => {
  const r = await fetch(`${door.url}/v2/big/app/blobs/${layer}`);
  const headers = performance.now() - t0;
  const h = crypto.createHash("sha256");
  for await (const c of r.body) h.update(c);
  return { i, status: r.status, cache: r.headers.get("x-frontdoor-cache"), headers: Math.round(headers), done: Math.round(performance.now() - t0), ok: `sha256:${h.digest("hex")}` === layer };
}));
clearInterval(sampler);
console.log(JSON.stringify(res));
console.log("rss0", rss0.toFixed(0), "peak", peak.toFixed(0), "growth MiB", (peak - rss0).toFixed(0));
console.log("hub before", before, "after", JSON.stringify(hub.state.counts));
// direct read
const tok = await up.issuer.token("svc", "repository:big/app:pull");
const t1 = performance.now();
const d = await fetch(`${up.url}/v2/big/app/blobs/${layer}`, { headers: { authorization: `Bearer ${tok}` } });
let n = 0; for await (const c of d.body) n += c.length;
const ds = (performance.now() - t1) / 1000;
console.log("direct MB/s", (n / ds / 1e6).toFixed(0), "door herd MB/s per client", res.map((r) => ((MB << 20) / r.done * 1000 / 1e6).toFixed(0)).join(","));
await door.stop(); await hub.stop(); await up.stop(); tmp.remove();
