// The rate-limit shield against a scripted Docker Hub (tests/e2e/lib/hubsim.mjs: quota counted by
// manifest GET, ratelimit headers, 429 when spent, switchable outages) in front of a real
// docker-registry behind token auth.
import assert from "node:assert/strict";
import crypto from "node:crypto";
import path from "node:path";
import { after, before, test } from "node:test";
import { buildImage } from "./lib/image.mjs";
import { startDoor } from "./lib/door.mjs";
import { startHubSim } from "./lib/hubsim.mjs";
import { startUpstream } from "./lib/registry.mjs";
import { MANIFEST_ACCEPT, sha256, skopeo, tempDir } from "./lib/util.mjs";

const SVC = "svc";
const PW = crypto.randomBytes(12).toString("hex");
const IMAGES = 10;
const NODES = 50;

let tmp, upstream, hub, door;
const images = [];

before(async () => {
  tmp = tempDir("shield");
  upstream = await startUpstream({ dir: tmp.dir, users: { [SVC]: PW } });
  for (let i = 0; i < IMAGES; i++) {
    const dir = path.join(tmp.dir, `img${i}`);
    images.push({ name: `team/app${i}`, ...buildImage(dir, { layers: 2, bigLayerBytes: 32 << 10 }) });
    await upstream.push(dir, `team/app${i}:v1`);
  }
  hub = await startHubSim({ targetUrl: upstream.url, limit: 100 });
  door = await startDoor({
    bindings: {
      UPSTREAMS: JSON.stringify({ "docker.io": { url: hub.url, username: SVC, password_secret: "HUB_TOKEN" } }),
      DEFAULT_REGISTRY: "docker.io",
      HUB_TOKEN: PW,
      TAG_TTL_SECONDS: "1",
      // Long enough for 500 concurrent cold requests on 2 cores; short enough to test hung upstreams.
      UPSTREAM_TIMEOUT_SECONDS: "5",
      // Every request meets the outages staged here (the back-off has its own file, outage.test.mjs).
      UPSTREAM_BACKOFF_SECONDS: "0",
    },
  });
});

after(async () => {
  await door?.stop();
  await hub?.stop();
  await upstream?.stop();
  tmp?.remove();
});

/**
 * `fetch`, retried (at most twice) when the connection is reset before an answer, as pull clients
 * do (containerd and Docker retry); 500 concurrent requests on a busy 2-core machine can see a
 * reused keep-alive connection closed under them. Counted, so a door that crashes still fails.
 */
let resets = 0;
async function get(url, init) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fetch(url, init);
    } catch (e) {
      if (attempt === 2) throw e;
      resets++;
    }
  }
}

/** A node pulling one image: manifest by tag, then each blob, checking every digest. */
async function pull(image) {
  const m = await get(`${door.url}/v2/${image.name}/manifests/v1`, { headers: { accept: MANIFEST_ACCEPT } });
  if (m.status !== 200) return { status: m.status, body: await m.text() };
  const bytes = Buffer.from(await m.arrayBuffer());
  assert.equal(sha256(bytes), image.top);
  const manifest = JSON.parse(bytes);
  for (const { digest } of [manifest.config, ...manifest.layers]) {
    const b = await get(`${door.url}/v2/${image.name}/blobs/${digest}`);
    if (b.status !== 200) return { status: b.status, body: await b.text() };
    assert.equal(sha256(Buffer.from(await b.arrayBuffer())), digest);
  }
  return { status: 200, cache: m.headers.get("x-frontdoor-cache") };
}

/** Every node pulls every image, all at once. */
const wave = () => Promise.all(Array.from({ length: NODES }, () => Promise.all(images.map(pull))));

test(`${NODES} nodes × ${IMAGES} images, quota 100: no 429, one counted pull per distinct manifest`, async () => {
  const results = (await wave()).flat();
  const failed = results.filter((r) => r.status !== 200);
  assert.deepEqual(failed, [], "every pull succeeded");
  assert.ok(resets < NODES, `${resets} connections reset`);
  assert.equal(hub.state.counts.tooMany, 0);
  assert.equal(hub.state.counts.pulls, IMAGES, JSON.stringify(hub.state.counts));

  // The node pool rotates after the tag TTL: tags are revalidated with free HEADs, no new pulls.
  await new Promise((r) => setTimeout(r, 2000));
  const again = (await wave()).flat();
  assert.ok(again.every((r) => r.status === 200));
  assert.equal(hub.state.counts.pulls, IMAGES, "still one counted pull per manifest");
  assert.ok(hub.state.counts.manifestHeads >= IMAGES, JSON.stringify(hub.state.counts));

  const status = await (await fetch(`${door.url}/_frontdoor/status`)).json();
  assert.equal(status.registries["docker.io"].quota_remaining, `${100 - IMAGES};w=21600`);
  assert.equal(status.registries["docker.io"].quota_limit, "100;w=21600");
});

for (const mode of ["5xx", "reset", "timeout"]) {
  test(`upstream ${mode}: every cached image still pulls, served stale`, async () => {
    await new Promise((r) => setTimeout(r, 2000)); // past the tag TTL: the door must ask upstream
    hub.state.mode = mode;
    try {
      const results = await Promise.all(images.map(pull));
      assert.deepEqual(results.map((r) => r.status), images.map(() => 200));
      assert.ok(results.every((r) => r.cache === "stale"), JSON.stringify(results));
    } finally {
      hub.state.mode = "ok";
    }
  });
}

test("with nothing cached: 429 upstream → TOOMANYREQUESTS with Retry-After; outage → 502/504", async () => {
  const fresh = { name: "team/never", top: "" };
  await upstream.push(path.join(tmp.dir, "img0"), `team/never:v1`);
  hub.state.limit = hub.state.counts.pulls; // spent
  const r = await fetch(`${door.url}/v2/${fresh.name}/manifests/v1`, { headers: { accept: MANIFEST_ACCEPT } });
  assert.equal(r.status, 429);
  assert.equal((await r.json()).errors[0].code, "TOOMANYREQUESTS");
  assert.ok(Number(r.headers.get("retry-after")) > 0);
  // Cached images keep pulling while the quota is spent.
  await new Promise((r) => setTimeout(r, 2000));
  assert.equal((await pull(images[0])).status, 200);

  hub.state.limit = 100;
  for (const [mode, status] of [["5xx", 502], ["timeout", 504]]) {
    hub.state.mode = mode;
    try {
      const x = await fetch(`${door.url}/v2/team/never/manifests/v2`, { headers: { accept: MANIFEST_ACCEPT } });
      assert.equal(x.status, status, mode);
      assert.equal((await x.json()).errors[0].code, "UNAVAILABLE");
    } finally {
      hub.state.mode = "ok";
    }
  }
});
