// One canonical cache entry per tag, whatever the client accepts, and HEADs as first-class
// requests: the door in front of the scripted Docker Hub (tests/e2e/lib/hubsim.mjs: counts pulls,
// 429 past its quota) in front of a real docker-registry behind token auth.
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
const OCI_ONLY = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";
const DOCKER_ONLY = "application/vnd.docker.distribution.manifest.v2+json";
const NODES = 20;

let tmp, upstream, hub, door;
const images = {};

before(async () => {
  tmp = tempDir("accept");
  upstream = await startUpstream({ dir: tmp.dir, users: { [SVC]: PW } });
  const platforms = [{ os: "linux", architecture: "amd64" }, { os: "linux", architecture: "arm64" }];
  for (const [name, opts] of [["multi", { platforms }], ["single", {}], ["headed", {}], ["narrow", { platforms }]]) {
    const dir = path.join(tmp.dir, name);
    images[name] = buildImage(dir, { layers: 1, bigLayerBytes: 8 << 10, ...opts });
    await upstream.push(dir, `team/${name}:v1`, { all: !!opts.platforms });
  }
  // The quota: exactly what the OCI-only rotation below needs (the multi-platform index, its
  // amd64 manifest, the single image), so one pull per client would meet 429s at once.
  hub = await startHubSim({ targetUrl: upstream.url, limit: 3 });
  door = await startDoor({
    bindings: {
      UPSTREAMS: JSON.stringify({ "docker.io": { url: hub.url, username: SVC, password_secret: "HUB_TOKEN" } }),
      DEFAULT_REGISTRY: "docker.io",
      HUB_TOKEN: PW,
    },
  });
});

after(async () => {
  await door?.stop();
  await hub?.stop();
  await upstream?.stop();
  tmp?.remove();
});

async function manifest(ref, accept, method = "GET") {
  const r = await fetch(`${door.url}/v2/${ref}`, { method, headers: accept ? { accept } : {} });
  const body = Buffer.from(await r.arrayBuffer());
  return { status: r.status, type: r.headers.get("content-type"), digest: r.headers.get("docker-content-digest"), body, cache: r.headers.get("x-frontdoor-cache") };
}

test("OCI-only clients of a rotation cost one pull per distinct manifest, then every client is a hit", async () => {
  const pullsBefore = hub.state.counts.pulls;
  await Promise.all(Array.from({ length: NODES }, async () => {
    const top = await manifest("team/multi/manifests/v1", OCI_ONLY);
    assert.equal(top.status, 200, top.body.toString().slice(0, 200));
    assert.equal(sha256(top.body), images.multi.index);
    assert.equal(top.type, "application/vnd.oci.image.index.v1+json");
    const amd = images.multi.manifests[0].digest;
    const platform = await manifest(`team/multi/manifests/${amd}`, OCI_ONLY);
    assert.equal(sha256(platform.body), amd);
    const single = await manifest("team/single/manifests/v1", OCI_ONLY);
    assert.equal(sha256(single.body), images.single.top);
  }));
  assert.equal(hub.state.counts.pulls - pullsBefore, 3, "one pull per distinct manifest");
  assert.equal(hub.state.counts.tooMany, 0, "no 429 reached anyone");
  // Clients that take every type are served the same canonical entries from the cache.
  for (const accept of [MANIFEST_ACCEPT, undefined, OCI_ONLY]) {
    const again = await manifest("team/multi/manifests/v1", accept);
    assert.equal(again.cache, "hit", String(accept));
    assert.equal(sha256(again.body), images.multi.index);
  }
  assert.equal(hub.state.counts.pulls - pullsBefore, 3);
});

test("a tag only ever HEADed costs one upstream HEAD, no pull; a GET of it then fetches by digest", async () => {
  hub.state.limit = 1000;
  const headsBefore = hub.state.counts.manifestHeads;
  const pullsBefore = hub.state.counts.pulls;
  for (let i = 0; i < NODES; i++) {
    const h = await manifest("team/headed/manifests/v1", MANIFEST_ACCEPT, "HEAD");
    assert.equal(h.status, 200);
    assert.equal(h.digest, images.headed.top);
    assert.equal(h.type, "application/vnd.oci.image.manifest.v1+json");
    assert.equal(h.cache, i === 0 ? "miss" : "hit", `HEAD ${i}`);
  }
  // (One: the door knows the realm from the pulls above, so it gets its token before asking.)
  assert.equal(hub.state.counts.manifestHeads - headsBefore, 1, "one upstream HEAD for every HEAD");
  assert.equal(hub.state.counts.pulls - pullsBefore, 0, "a HEAD is never a pull");
  const g = await manifest("team/headed/manifests/v1", MANIFEST_ACCEPT);
  assert.equal(sha256(g.body), images.headed.top);
  assert.equal(hub.state.counts.pulls - pullsBefore, 1);
  assert.equal((await manifest("team/headed/manifests/v1", MANIFEST_ACCEPT)).cache, "hit");
});

test("a client that takes no canonical type never poisons the tag: its 404 is not remembered", async () => {
  // distribution cannot turn an OCI index into a Docker v2 manifest: it answers this Accept 404.
  const narrow = await manifest("team/narrow/manifests/v1", DOCKER_ONLY);
  assert.equal(narrow.status, 404, narrow.body.toString().slice(0, 200));
  assert.equal(JSON.parse(narrow.body).errors[0].code, "MANIFEST_UNKNOWN");
  // Every other client still gets the tag, at once (no remembered 404 for NEGATIVE_TTL_SECONDS).
  const full = await manifest("team/narrow/manifests/v1", MANIFEST_ACCEPT);
  assert.equal(full.status, 200);
  assert.equal(sha256(full.body), images.narrow.index);
  // And the narrow client asking again is not handed a type it cannot take.
  const again = await manifest("team/narrow/manifests/v1", DOCKER_ONLY);
  assert.equal(again.status, 404);
});
