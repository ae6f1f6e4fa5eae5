// Concurrency through the door with real parts: 50 clients pulling one cold image at the same time
// must cost one upstream fetch per object — the Durable Object owner of each object fetches once
// and the rest are served from the cache it filled. Every client must still get every byte.
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { buildImage } from "./lib/image.mjs";
import { startDoor } from "./lib/door.mjs";
import { startUpstream } from "./lib/registry.mjs";
import { MANIFEST_ACCEPT, sha256, skopeo, tempDir } from "./lib/util.mjs";

const SVC = "svc";
const PW = crypto.randomBytes(12).toString("hex");

let tmp, upstream, door, image;

before(async () => {
  tmp = tempDir("coalesce");
  upstream = await startUpstream({ dir: tmp.dir, users: { [SVC]: PW } });
  image = buildImage(path.join(tmp.dir, "img"), { layers: 4, bigLayerBytes: 2 << 20 });
  await upstream.push(path.join(tmp.dir, "img"), `private/app:v1`);
  door = await startDoor({
    bindings: {
      UPSTREAMS: JSON.stringify({ "registry.test": { url: upstream.url, username: SVC, password_secret: "PW" } }),
      DEFAULT_REGISTRY: "registry.test",
      TAG_TTL_SECONDS: "1",
      PW,
    },
  });
});

after(async () => {
  await door?.stop();
  await upstream?.stop();
  tmp?.remove();
});

/** What a client does: manifest by tag, then every blob; returns each object's digest as received. */
async function pull(name, tag) {
  const m = await fetch(`${door.url}/v2/${name}/manifests/${tag}`, { headers: { accept: MANIFEST_ACCEPT } });
  assert.equal(m.status, 200);
  const bytes = Buffer.from(await m.arrayBuffer());
  const manifest = JSON.parse(bytes);
  const got = { manifest: sha256(bytes), blobs: {} };
  await Promise.all([manifest.config, ...manifest.layers].map(async ({ digest }) => {
    const r = await fetch(`${door.url}/v2/${name}/blobs/${digest}`);
    assert.equal(r.status, 200, digest);
    got.blobs[digest] = sha256(Buffer.from(await r.arrayBuffer()));
  }));
  return got;
}

test("50 concurrent cold pulls of one image: one upstream GET per object, every byte right", async () => {
  upstream.resetCounts();
  const pulls = await Promise.all(Array.from({ length: 50 }, () => pull("private/app", "v1")));
  const objects = [image.manifests[0].config, ...image.manifests[0].layers];
  for (const p of pulls) {
    assert.equal(p.manifest, image.top);
    for (const d of objects) assert.equal(p.blobs[d], d, "bytes match the digest");
  }
  const c = upstream.counts;
  assert.equal(c["GET manifests 200"], 1, `manifest fetched once: ${JSON.stringify(c)}`);
  assert.equal(c["GET blobs 200"], objects.length, `each blob fetched once: ${JSON.stringify(c)}`);
  assert.equal(c["GET blobs"], objects.length, "and no blob GET was wasted on a 401");
  const owners = door.requests().filter((l) => l.role === "owner" && l.kind === "blob");
  assert.ok(owners.some((l) => l.cache === "hit"), "queued requests were served from the fill");

  const status = await fetch(`${door.url}/_frontdoor/status`);
  assert.equal(status.status, 200);
  const text = await status.text();
  assert.ok(!text.includes(PW), "no secret in the status");
  const reg = JSON.parse(text).registries["registry.test"];
  const answered = reg.hits + reg.misses + reg.revalidated;
  assert.equal(answered, 50 * (1 + objects.length), JSON.stringify(reg));
  // A miss is an answer that needed upstream: once per object; the rest were served from the fill.
  assert.equal(reg.misses, 1 + objects.length, JSON.stringify(reg));
  assert.ok(reg.coalesced >= reg.misses, JSON.stringify(reg));
  assert.ok(reg.upstream_calls.blob >= objects.length, JSON.stringify(reg));
});

test("after warm-up, pulls survive upstream going away (stale tags are served)", async () => {
  await upstream.stop();
  await new Promise((r) => setTimeout(r, 1100)); // past TAG_TTL_SECONDS: the tag must be revalidated
  const dir = path.join(tmp.dir, "offline");
  await skopeo(["copy", "--src-tls-verify=false", `docker://${door.host}/private/app:v1`, `oci:${dir}:x`]);
  const index = JSON.parse(readFileSync(path.join(dir, "index.json")));
  assert.equal(index.manifests[0].digest, image.top);
  const stale = door.requests().filter((l) => l.kind === "manifest" && l.cache === "stale");
  assert.ok(stale.length > 0, "the tag was served stale");
  const r = await fetch(`${door.url}/v2/private/app/manifests/v1`);
  assert.equal(r.headers.get("x-frontdoor-cache"), "stale");
  // Something never cached cannot be served: a clean OCI error, not a hang — at once, with
  // Retry-After, while the door backs off from the upstream it just found down.
  const missing = await fetch(`${door.url}/v2/private/app/manifests/never-pulled`);
  assert.equal(missing.status, 503);
  assert.ok(Number(missing.headers.get("retry-after")) >= 1);
  assert.equal((await missing.json()).errors[0].code, "UNAVAILABLE");
  upstream = null;
});
