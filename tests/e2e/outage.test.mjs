// An outage costs one probe, not one request per client (UPSTREAM_BACKOFF_SECONDS): the door in
// front of the scripted Docker Hub (tests/e2e/lib/hubsim.mjs, switchable outages, counting every
// request) in front of a real docker-registry behind token auth. Tags are always past their TTL,
// so without the back-off every client would ask upstream before being served stale.
import assert from "node:assert/strict";
import crypto from "node:crypto";
import path from "node:path";
import { after, before, test } from "node:test";
import { buildImage } from "./lib/image.mjs";
import { startDoor } from "./lib/door.mjs";
import { startHubSim } from "./lib/hubsim.mjs";
import { startUpstream } from "./lib/registry.mjs";
import { MANIFEST_ACCEPT, sha256, tempDir } from "./lib/util.mjs";

const SVC = "svc";
const PW = crypto.randomBytes(12).toString("hex");
// Long enough that the quiet checks below fit inside it on a busy 2-core machine.
const BACKOFF = 5;
const CLIENTS = 40;

let tmp, upstream, hub, door, image;

before(async () => {
  tmp = tempDir("outage");
  upstream = await startUpstream({ dir: tmp.dir, users: { [SVC]: PW } });
  const dir = path.join(tmp.dir, "img");
  image = buildImage(dir, { layers: 1, bigLayerBytes: 16 << 10 });
  await upstream.push(dir, "team/app:v1");
  hub = await startHubSim({ targetUrl: upstream.url, limit: 1000 });
  door = await startDoor({
    bindings: {
      UPSTREAMS: JSON.stringify({ "docker.io": { url: hub.url, username: SVC, password_secret: "HUB_TOKEN" } }),
      DEFAULT_REGISTRY: "docker.io",
      HUB_TOKEN: PW,
      TAG_TTL_SECONDS: "1",
      UPSTREAM_TIMEOUT_SECONDS: "3",
      UPSTREAM_BACKOFF_SECONDS: String(BACKOFF),
    },
  });
});

after(async () => {
  await door?.stop();
  await hub?.stop();
  await upstream?.stop();
  tmp?.remove();
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const manifest = (tag = "v1") => fetch(`${door.url}/v2/team/app/manifests/${tag}`, { headers: { accept: MANIFEST_ACCEPT } });
/** Every registry request hubsim saw: answered ones, and those its fault mode answered. */
const seen = () => {
  const c = hub.state.counts;
  return c.manifestGets + c.manifestHeads + c.blobGets + c.blobHeads + c.pings + c.other + c.faults;
};

test("with upstream down, clients are served stale at once and only one probe per back-off goes out", async () => {
  const warm = await manifest();
  assert.equal(warm.status, 200);
  assert.equal(sha256(Buffer.from(await warm.arrayBuffer())), image.top);

  hub.state.mode = "reset";
  try {
    await sleep(1100); // past the tag TTL: every answer needs upstream or the stale copy
    const before = seen();
    const started = performance.now();
    const answers = await Promise.all(Array.from({ length: CLIENTS }, async () => {
      const r = await manifest();
      return { status: r.status, cache: r.headers.get("x-frontdoor-cache"), digest: sha256(Buffer.from(await r.arrayBuffer())) };
    }));
    const seconds = (performance.now() - started) / 1000;
    for (const a of answers) assert.deepEqual(a, { status: 200, cache: "stale", digest: image.top });
    // Those already on their way when the outage was found may each have met it; the rest not.
    const during = seen() - before;
    assert.ok(during >= 1 && during < CLIENTS / 4, `${during} upstream requests for ${CLIENTS} clients`);

    // Inside the back-off: nothing more is sent, and what is not cached gets 503 + Retry-After.
    const quiet = seen();
    for (let i = 0; i < 10; i++) assert.equal((await manifest()).headers.get("x-frontdoor-cache"), "stale");
    const missing = await manifest("never-pulled");
    assert.equal(missing.status, 503);
    assert.equal((await missing.json()).errors[0].code, "UNAVAILABLE");
    assert.ok(Number(missing.headers.get("retry-after")) >= 1);
    assert.equal(seen(), quiet, "nothing sent upstream inside the back-off");
    console.log(`outage: ${CLIENTS} clients served stale in ${seconds.toFixed(2)} s with ${during} upstream requests`);

    // After the back-off: one probe (it fails: the next back-off is longer), the others stale.
    await sleep(BACKOFF * 1000 + 100);
    const probing = seen();
    const again = await Promise.all(Array.from({ length: 10 }, async () => (await manifest()).headers.get("x-frontdoor-cache")));
    assert.deepEqual(again, Array(10).fill("stale"));
    assert.equal(seen() - probing, 1, "exactly one probe");
  } finally {
    hub.state.mode = "ok";
  }

  // Upstream is back: the next probe finds it (twice the back-off later), and the tag revalidates.
  await sleep(2 * BACKOFF * 1000 + 100);
  const back = await manifest();
  assert.equal(back.status, 200);
  assert.equal(back.headers.get("x-frontdoor-cache"), "revalidated");
  await back.arrayBuffer();
  const lines = door.requests().filter((l) => l.kind === "manifest" && l.notes?.some((n) => n.includes("is back")));
  assert.ok(lines.length >= 1, "the probe that found it back is logged");
});
