// Serve what you have when upstream says 404 or 401 (issue 12, item 7): `serve_stale_on` in an
// UPSTREAMS entry keeps a cached tag in service when the tag is deleted upstream or the mirror's
// credentials are revoked, answered `X-Frontdoor-Cache: stale` with a note in the log line. A door
// without the setting is the control: it answers what upstream said. The upstream is a real
// docker-registry behind real token auth; the tag is deleted through the registry's own API and
// the credentials are revoked at its token issuer, so what the door meets is what a real registry
// answers.
import assert from "node:assert/strict";
import crypto from "node:crypto";
import path from "node:path";
import { after, before, test } from "node:test";
import { buildImage } from "./lib/image.mjs";
import { startDoor } from "./lib/door.mjs";
import { startUpstream } from "./lib/registry.mjs";
import { MANIFEST_ACCEPT, sha256, tempDir } from "./lib/util.mjs";

const SVC = "svc";
const PW = crypto.randomBytes(12).toString("hex");
// `private/` repositories are the service account's only: anonymous pulls of them are refused.
const GONE = "private/gone";
const REVOKED = "private/kept";

let tmp, users, upstream, keeping, control, images;

const doorFor = (extra) =>
  startDoor({
    bindings: {
      UPSTREAMS: JSON.stringify({ "registry.test": { url: upstream.url, username: SVC, password_secret: "PW", ...extra } }),
      DEFAULT_REGISTRY: "registry.test",
      PW,
      TAG_TTL_SECONDS: "1",
    },
  });

before(async () => {
  tmp = tempDir("keep");
  users = { [SVC]: PW };
  // Short-lived tokens (the door renews a token 10 s before it expires): a revoked password
  // is met at the next renewal, as with any registry whose tokens outlive a revocation.
  upstream = await startUpstream({ dir: tmp.dir, users, tokenTtl: 12 });
  images = {};
  for (const repo of [GONE, REVOKED]) {
    const dir = path.join(tmp.dir, repo.replace("/", "-"));
    images[repo] = buildImage(dir, { layers: 1, bigLayerBytes: 4 << 10 });
    await upstream.push(dir, `${repo}:v1`);
  }
  keeping = await doorFor({ serve_stale_on: [401, 404] });
  control = await doorFor({});
});

after(async () => {
  await keeping?.stop();
  await control?.stop();
  await upstream?.stop();
  tmp?.remove();
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const get = async (door, repo) => {
  const r = await fetch(`${door.url}/v2/${repo}/manifests/v1`, { headers: { accept: MANIFEST_ACCEPT } });
  const body = Buffer.from(await r.arrayBuffer());
  return { status: r.status, cache: r.headers.get("x-frontdoor-cache"), digest: sha256(body), body: body.toString() };
};
const notes = (door, repo) =>
  door.requests().filter((l) => l.repository === repo && l.kind === "manifest").flatMap((l) => l.notes ?? []);

test("a tag deleted upstream keeps serving the cached copy where serve_stale_on has 404, and 404s elsewhere", async () => {
  for (const door of [keeping, control]) {
    const warm = await get(door, GONE);
    assert.equal(warm.status, 200);
    assert.equal(warm.digest, images[GONE].top);
  }
  // Deleted through the registry's own API: the manifest, and so every tag naming it.
  const token = await upstream.issuer.token(SVC, `repository:${GONE}:pull,push,delete`);
  const del = await fetch(`${upstream.registryUrl}/v2/${GONE}/manifests/${images[GONE].top}`, {
    method: "DELETE", headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(del.status, 202, "the registry deleted the manifest");
  await sleep(2000); // past the tag TTL: both doors ask upstream

  const kept = await get(keeping, GONE);
  assert.equal(kept.status, 200);
  assert.equal(kept.cache, "stale");
  assert.equal(kept.digest, images[GONE].top, "the copy the door held");
  assert.ok(notes(keeping, GONE).some((n) => n.includes("upstream answered 404") && n.includes("serve_stale_on")),
    JSON.stringify(notes(keeping, GONE)));

  const refused = await get(control, GONE);
  assert.equal(refused.status, 404);
  assert.equal(JSON.parse(refused.body).errors[0].code, "MANIFEST_UNKNOWN");
});

test("revoked credentials keep a cached tag in service where serve_stale_on has 401, and refuse elsewhere", async () => {
  for (const door of [keeping, control]) {
    const warm = await get(door, REVOKED);
    assert.equal(warm.status, 200);
    assert.equal(warm.digest, images[REVOKED].top);
  }
  users[SVC] = crypto.randomBytes(12).toString("hex"); // the token issuer no longer takes PW
  try {
    await sleep(3000); // past the tag TTL, and past the door's use of its last token
    const kept = await get(keeping, REVOKED);
    assert.equal(kept.status, 200);
    assert.equal(kept.cache, "stale");
    assert.equal(kept.digest, images[REVOKED].top);
    assert.ok(notes(keeping, REVOKED).some((n) => n.includes("upstream answered 401") && n.includes("serve_stale_on")),
      JSON.stringify(notes(keeping, REVOKED)));
    // Asked again only after another TTL: the next pull is a plain hit of the kept copy.
    const again = await get(keeping, REVOKED);
    assert.equal(again.status, 200);
    assert.equal(again.digest, images[REVOKED].top);

    const refused = await get(control, REVOKED);
    assert.notEqual(refused.status, 200, "a door without serve_stale_on does not serve a revoked mirror's copy");
    assert.ok(JSON.parse(refused.body).errors?.length, refused.body);
  } finally {
    users[SVC] = PW;
  }
});
