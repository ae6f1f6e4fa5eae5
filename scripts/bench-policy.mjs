// The cost of VERIFY: pulls of cosign-signed images (simple signing, and cosign 3's sigstore bundle
// referrers) through a door that verifies them, against
// pulls of unsigned images (no VERIFY pattern covers them) through the same door. Cold: each image
// pulled once (manifest by tag with the full Accept, then every blob), timed, counting what reached
// upstream (hubsim); warm: one image of each kind pulled again and again. Signatures are made by the
// independent test signer (tests/e2e/lib/cosign.mjs). scripts/bench adds these rows to its table;
// `node scripts/bench-policy.mjs` runs them alone (a door, docker-registry and hubsim of its own).
import crypto from "node:crypto";
import path from "node:path";
import { attachBundle, keyPair, sign } from "../tests/e2e/lib/cosign.mjs";
import { buildImage } from "../tests/e2e/lib/image.mjs";
import { startDoor } from "../tests/e2e/lib/door.mjs";
import { startHubSim } from "../tests/e2e/lib/hubsim.mjs";
import { startUpstream } from "../tests/e2e/lib/registry.mjs";
import { MANIFEST_ACCEPT as ACCEPT, tempDir } from "../tests/e2e/lib/util.mjs";

export const POLICY_IMAGES = 10;
export const POLICY_WARM_PULLS = 100;

const percentile = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
const registryRequests = (c) => c.manifestGets + c.manifestHeads + c.blobGets + c.blobHeads + c.pings + c.other;

/** One pull: the manifest by tag, then every blob; ms to the last byte. */
async function pull(base, repo) {
  const started = performance.now();
  const r = await fetch(`${base}/v2/${repo}/manifests/v1`, { headers: { accept: ACCEPT } });
  const bytes = Buffer.from(await r.arrayBuffer());
  if (r.status !== 200) throw new Error(`${repo}: manifest ${r.status}: ${bytes.toString().slice(0, 300)}`);
  const m = JSON.parse(bytes);
  await Promise.all([m.config, ...m.layers].map(async ({ digest }) => {
    const b = await fetch(`${base}/v2/${repo}/blobs/${digest}`);
    await b.arrayBuffer();
    if (b.status !== 200) throw new Error(`${repo}: blob ${b.status}`);
  }));
  return performance.now() - started;
}

/**
 * Pushes `POLICY_IMAGES` signed and as many unsigned images to `upstream` (user `svc`), starts a
 * door with `bindings(extra)` and VERIFY over the signed ones, and measures. `stoppers` gets the door.
 */
export async function policyPulls({ upstream, svc, hub, bindings, dir, stoppers }) {
  const key = keyPair();
  const kinds = { signed: [], bundled: [], unsigned: [] };
  for (let i = 0; i < POLICY_IMAGES; i++) {
    for (const kind of Object.keys(kinds)) {
      const repo = `bench/${kind}-${i}`;
      const layout = path.join(dir, `policy-${kind}-${i}`);
      const image = buildImage(layout, { layers: 1, bigLayerBytes: 64 << 10 });
      await upstream.push(layout, `${repo}:v1`);
      if (kind === "signed") await sign(upstream, svc, repo, image.top, key);
      if (kind === "bundled") await attachBundle(upstream, svc, repo, image.top, key);
      kinds[kind].push(repo);
    }
  }
  const door = await startDoor({ bindings: bindings({ VERIFY: JSON.stringify({ "registry.test/bench/signed-*": [key.pem], "registry.test/bench/bundled-*": [key.pem] }) }) });
  stoppers.push(() => door.stop());
  const out = {};
  for (const kind of Object.keys(kinds)) out[kind] = { cold: [], coldRequests: 0, warm: [], warmRequests: 0 };
  // Cold, interleaved so that drift hits both kinds alike.
  for (let i = 0; i < POLICY_IMAGES; i++) {
    for (const kind of Object.keys(kinds)) {
      const before = registryRequests(hub.state.counts);
      out[kind].cold.push(await pull(door.url, kinds[kind][i]));
      out[kind].coldRequests += registryRequests(hub.state.counts) - before;
    }
  }
  for (let i = 0; i < POLICY_WARM_PULLS; i++) {
    for (const kind of Object.keys(kinds)) {
      const before = registryRequests(hub.state.counts);
      out[kind].warm.push(await pull(door.url, kinds[kind][0]));
      out[kind].warmRequests += registryRequests(hub.state.counts) - before;
    }
  }
  const summary = {};
  for (const [kind, o] of Object.entries(out)) {
    summary[kind] = {
      coldP50: percentile(o.cold, 50), coldMax: Math.max(...o.cold), coldRequests: o.coldRequests / POLICY_IMAGES,
      warmP50: percentile(o.warm, 50), warmP99: percentile(o.warm, 99), warmRequests: o.warmRequests,
    };
  }
  return summary;
}

/** The table rows (`row` as scripts/bench builds them: door column = signed, baseline = unsigned). */
export function policyRows(row, s) {
  const base = { lc: "unsigned pull, same door" };
  return [
    row(`VERIFY: cold pull of a cosign-signed image, p50 ms (${POLICY_IMAGES} images, manifest + 2 blobs; baseline: unsigned)`, s.signed.coldP50, undefined,
      { digits: 1, la: `max ${s.signed.coldMax.toFixed(1)}`, c: s.unsigned.coldP50, lc: `unsigned, max ${s.unsigned.coldMax.toFixed(1)}` }),
    row("VERIFY: upstream registry requests per cold pull (signed: + the .sig manifest and its payload blob)", s.signed.coldRequests, undefined,
      { digits: 1, c: s.unsigned.coldRequests, ...base }),
    row("VERIFY: cold pull of an image signed with a sigstore bundle referrer (cosign 3), p50 ms", s.bundled.coldP50, undefined,
      { digits: 1, la: `max ${s.bundled.coldMax.toFixed(1)}`, c: s.unsigned.coldP50, ...base }),
    row("VERIFY: upstream registry requests per cold pull, bundle (+ .sig 404, referrers 404, tag-schema index, referrer manifest, bundle blob)", s.bundled.coldRequests, undefined,
      { digits: 1, c: s.unsigned.coldRequests, ...base }),
    row(`VERIFY: warm pull of the signed image, p50 ms (${POLICY_WARM_PULLS} sequential pulls; baseline: unsigned)`, s.signed.warmP50, undefined,
      { digits: 2, c: s.unsigned.warmP50, ...base }),
    row("VERIFY: warm pull p99 ms", s.signed.warmP99, undefined, { digits: 2, c: s.unsigned.warmP99, ...base }),
    row(`VERIFY: upstream registry requests in ${POLICY_WARM_PULLS} warm pulls`, s.signed.warmRequests, undefined, { c: s.unsigned.warmRequests, ...base }),
  ];
}

// Alone: `node scripts/bench-policy.mjs` prints the rows as markdown.
if (import.meta.url === `file://${process.argv[1]}`) {
  const tmp = tempDir("bench-policy");
  const stoppers = [];
  try {
    const PW = crypto.randomBytes(12).toString("hex");
    const upstream = await startUpstream({ dir: tmp.dir, users: { svc: PW } });
    stoppers.push(() => upstream.stop());
    const hub = await startHubSim({ targetUrl: upstream.url, limit: 1_000_000 });
    stoppers.push(() => hub.stop());
    const bindings = (extra) => ({
      UPSTREAMS: JSON.stringify({ "registry.test": { url: hub.url, username: "svc", password_secret: "PW" } }),
      DEFAULT_REGISTRY: "registry.test", PW, ...extra,
    });
    const s = await policyPulls({ upstream, svc: "svc", hub, bindings, dir: tmp.dir, stoppers });
    const n = (v, d) => v.toFixed(d);
    const row = (name, a, _b, { digits = 0, la, c, lc } = {}) =>
      `| ${name} | ${n(a, digits)}${la ? ` (${la})` : ""} | ${n(c, digits)} (${lc}) | ${c ? `${(a / c).toFixed(2)}×` : "—"} |`;
    console.log(["| metric | signed, VERIFY | baseline | ratio |", "|---|---:|---:|---:|", ...policyRows(row, s)].join("\n"));
  } finally {
    for (const stop of stoppers.reverse()) await stop().catch(() => {});
    tmp.remove();
  }
}
