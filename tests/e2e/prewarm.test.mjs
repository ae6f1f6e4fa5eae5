// Pre-warming before a node rotation: the cron trigger (Miniflare's scheduled event) pulls every
// platform of the PREWARM images into the cache; afterwards a full multi-platform pull costs no
// upstream GET at all. POST /_frontdoor/prewarm does the same on demand, with ADMIN_TOKEN only.
import assert from "node:assert/strict";
import crypto from "node:crypto";
import path from "node:path";
import { after, before, test } from "node:test";
import { buildImage } from "./lib/image.mjs";
import { startDoor } from "./lib/door.mjs";
import { startUpstream } from "./lib/registry.mjs";
import { skopeo, tempDir, waitFor } from "./lib/util.mjs";

const SVC = "svc";
const PW = crypto.randomBytes(12).toString("hex");
const ADMIN = crypto.randomBytes(16).toString("hex");
let tmp, upstream, door, image;

before(async () => {
  tmp = tempDir("prewarm");
  upstream = await startUpstream({ dir: tmp.dir, users: { [SVC]: PW } });
  image = buildImage(path.join(tmp.dir, "multi"), {
    platforms: [{ os: "linux", architecture: "amd64" }, { os: "linux", architecture: "arm64" }],
    layers: 2, bigLayerBytes: 128 << 10,
  });
  await upstream.push(path.join(tmp.dir, "multi"), `base/os:v1`, { all: true });
  door = await startDoor({
    bindings: {
      UPSTREAMS: JSON.stringify({ "registry.test": { url: upstream.url, username: SVC, password_secret: "PW" } }),
      DEFAULT_REGISTRY: "registry.test",
      PW,
      PREWARM: JSON.stringify(["base/os:v1"]),
      ADMIN_TOKEN: ADMIN,
    },
  });
});

after(async () => {
  await door?.stop();
  await upstream?.stop();
  tmp?.remove();
});

const blobs = () => image.manifests.flatMap((m) => [m.config, ...m.layers]);

test("the cron trigger warms every platform; the next full pull costs no upstream GET", async () => {
  await door.scheduled();
  await waitFor(async () => (await Promise.all(blobs().map(door.stored))).every(Boolean), 15000, "the fills");
  assert.match(door.logs(), /"prewarm":\{[^}]*"blobs_fetched":6/);
  upstream.resetCounts();
  await skopeo(["copy", "--all", "--src-tls-verify=false", `docker://${door.host}/base/os:v1`, `oci:${path.join(tmp.dir, "out")}:x`]);
  assert.equal((upstream.counts["GET blobs"] ?? 0) + (upstream.counts["GET manifests"] ?? 0), 0, JSON.stringify(upstream.counts));
});

test("POST /_frontdoor/prewarm needs the admin token and reports what it did", async () => {
  const denied = await fetch(`${door.url}/_frontdoor/prewarm`, { method: "POST", headers: { authorization: "Bearer nope" } });
  assert.equal(denied.status, 401);
  assert.equal((await denied.json()).errors[0].code, "UNAUTHORIZED");
  const r = await fetch(`${door.url}/_frontdoor/prewarm?image=base/os:v1`, {
    method: "POST", headers: { authorization: `Bearer ${ADMIN}` },
  });
  assert.equal(r.status, 200);
  const [report] = (await r.json()).images;
  assert.deepEqual(report, { image: "base/os:v1", manifests: 3, blobs_fetched: 0, blobs_cached: 6, error: null });
  assert.equal((await fetch(`${door.url}/_frontdoor/prewarm`)).status, 405);
});
