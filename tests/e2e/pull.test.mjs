// Walking skeleton, end to end with real parts: docker-registry behind token auth that refuses
// anonymous pulls of the test repository, an image pushed with skopeo, the worker in workerd
// (Miniflare) with real KV/R2 and the service account's password as a secret, and skopeo pulling
// through the door.
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { buildImage } from "./lib/image.mjs";
import { startDoor } from "./lib/door.mjs";
import { startUpstream } from "./lib/registry.mjs";
import { skopeo, tempDir } from "./lib/util.mjs";

const SVC_USER = "svc";
const SVC_PASSWORD = crypto.randomBytes(12).toString("hex");
const REPO = "private/app";

let tmp, upstream, door, image, upstreamManifest;

before(async () => {
  tmp = tempDir("pull");
  upstream = await startUpstream({ dir: tmp.dir, users: { [SVC_USER]: SVC_PASSWORD } });
  image = buildImage(path.join(tmp.dir, "image"), { layers: 3 });
  await upstream.push(path.join(tmp.dir, "image"), `${REPO}:v1`);
  // What upstream serves, read straight from the registry with the service account's token.
  const token = await upstream.issuer.token(SVC_USER, `repository:${REPO}:pull`);
  const r = await fetch(`${upstream.registryUrl}/v2/${REPO}/manifests/v1`, {
    headers: { authorization: `Bearer ${token}`, accept: "application/vnd.oci.image.manifest.v1+json" },
  });
  assert.equal(r.status, 200);
  const bytes = Buffer.from(await r.arrayBuffer());
  upstreamManifest = {
    digest: r.headers.get("docker-content-digest"),
    bytes,
    json: JSON.parse(bytes),
  };
  door = await startDoor({
    bindings: {
      UPSTREAMS: JSON.stringify({
        "registry.test": { url: upstream.url, username: SVC_USER, password_secret: "REGISTRY_TEST_PASSWORD" },
      }),
      DEFAULT_REGISTRY: "registry.test",
      REGISTRY_TEST_PASSWORD: SVC_PASSWORD,
    },
  });
});

after(async () => {
  await door?.stop();
  await upstream?.stop();
  tmp?.remove();
});

/** Pulls through the door into a fresh OCI layout; returns the manifest digest and blob list. */
async function pullThroughDoor(name, dest) {
  const dir = path.join(tmp.dir, dest);
  await skopeo(["copy", "--src-tls-verify=false", `docker://${door.host}/${name}`, `oci:${dir}:pulled`]);
  const index = JSON.parse(readFileSync(path.join(dir, "index.json")));
  const digest = index.manifests[0].digest;
  const manifestBytes = readFileSync(path.join(dir, "blobs", "sha256", digest.slice(7)));
  return { digest, manifestBytes, manifest: JSON.parse(manifestBytes) };
}

test("upstream refuses anonymous pulls, so the service account is what gets the door in", async () => {
  const r = await fetch(`${upstream.registryUrl}/v2/${REPO}/manifests/v1`, {
    headers: { authorization: `Bearer ${await upstream.issuer.token(null, `repository:${REPO}:pull`)}` },
  });
  assert.equal(r.status, 401);
  await assert.rejects(
    skopeo(["inspect", "--tls-verify=false", "--no-creds", `docker://${upstream.host}/${REPO}:v1`]),
    /unauthorized|authentication required/i,
  );
});

test("/v2/ answers 200 with the API version header", async () => {
  const r = await fetch(`${door.url}/v2/`);
  assert.equal(r.status, 200);
  assert.equal(r.headers.get("docker-distribution-api-version"), "registry/2.0");
});

test("skopeo pulls through the door; digests equal upstream's; a second pull costs no upstream blob GET", async () => {
  upstream.resetCounts();
  const first = await pullThroughDoor(`${REPO}:v1`, "pull-1");
  assert.equal(first.digest, upstreamManifest.digest);
  assert.equal(first.digest, image.top);
  assert.deepEqual(first.manifestBytes, upstreamManifest.bytes, "exact manifest bytes");
  assert.deepEqual(
    first.manifest.layers.map((l) => l.digest),
    upstreamManifest.json.layers.map((l) => l.digest),
  );
  assert.equal(first.manifest.config.digest, upstreamManifest.json.config.digest);
  const blobs = 1 + first.manifest.layers.length;
  assert.equal(upstream.counts["GET blobs"], blobs, `first pull fetched each blob once: ${JSON.stringify(upstream.counts)}`);
  const tokensAfterFirst = upstream.issuer.stats.requests;

  upstream.resetCounts();
  const second = await pullThroughDoor(`${REPO}:v1`, "pull-2");
  assert.equal(second.digest, upstreamManifest.digest);
  assert.deepEqual(second.manifestBytes, upstreamManifest.bytes);
  assert.equal(upstream.counts["GET blobs"] ?? 0, 0, `second pull: ${JSON.stringify(upstream.counts)}`);
  assert.equal(upstream.counts["GET manifests"] ?? 0, 0, "the tag is fresh: no manifest GET either");
  assert.equal(upstream.issuer.stats.requests, tokensAfterFirst, "no token request either");

  // The same image named with the registry prefix is the same cache entry.
  const third = await pullThroughDoor(`registry.test/${REPO}:v1`, "pull-3");
  assert.equal(third.digest, upstreamManifest.digest);
  assert.equal((upstream.counts["GET blobs"] ?? 0) + (upstream.counts["GET manifests"] ?? 0), 0);

  // By digest, too.
  const fourth = await pullThroughDoor(`${REPO}@${upstreamManifest.digest}`, "pull-4");
  assert.equal(fourth.digest, upstreamManifest.digest);
  assert.equal(upstream.counts["GET blobs"] ?? 0, 0);

  const cacheOutcomes = door.requests().filter((l) => l.kind === "blob").map((l) => l.cache);
  assert.ok(cacheOutcomes.includes("hit") && cacheOutcomes.includes("miss"), cacheOutcomes.join(","));
});

test("HEAD answers length and digest with no body; blobs come back byte for byte", async () => {
  const layer = upstreamManifest.json.layers[0];
  const url = `${door.url}/v2/${REPO}/blobs/${layer.digest}`;
  const head = await fetch(url, { method: "HEAD" });
  assert.equal(head.status, 200);
  assert.equal(head.headers.get("docker-content-digest"), layer.digest);
  assert.equal(Number(head.headers.get("content-length")), layer.size);
  const get = await fetch(url);
  const bytes = Buffer.from(await get.arrayBuffer());
  assert.equal(bytes.length, layer.size);
  assert.equal(`sha256:${crypto.createHash("sha256").update(bytes).digest("hex")}`, layer.digest);

  const m = await fetch(`${door.url}/v2/${REPO}/manifests/v1`, { method: "HEAD" });
  assert.equal(m.status, 200);
  assert.equal(m.headers.get("docker-content-digest"), upstreamManifest.digest);
  assert.equal(Number(m.headers.get("content-length")), upstreamManifest.bytes.length);
});

test("unknown things are OCI errors", async () => {
  const cases = [
    [`/v2/${REPO}/manifests/nope`, 404, "MANIFEST_UNKNOWN"],
    [`/v2/${REPO}/blobs/sha256:${"0".repeat(64)}`, 404, "BLOB_UNKNOWN"],
    [`/v2/${REPO}/blobs/sha256:xyz`, 400, "DIGEST_INVALID"],
    [`/v2/Private/App/manifests/v1`, 400, "NAME_INVALID"],
    [`/v2/ghcr.io/x/y/manifests/v1`, 404, "NAME_UNKNOWN"],
  ];
  for (const [p, status, code] of cases) {
    const r = await fetch(`${door.url}${p}`);
    assert.equal(r.status, status, p);
    assert.equal((await r.json()).errors[0].code, code, p);
  }
});

test("a door with the wrong service-account secret is denied, and says so", async () => {
  const wrong = await startDoor({
    bindings: {
      UPSTREAMS: JSON.stringify({
        "registry.test": { url: upstream.url, username: SVC_USER, password_secret: "PW" },
      }),
      DEFAULT_REGISTRY: "registry.test",
      PW: "not-the-password",
    },
  });
  try {
    const r = await fetch(`${wrong.url}/v2/${REPO}/manifests/v1`);
    assert.equal(r.status, 403);
    const body = await r.text();
    assert.equal(JSON.parse(body).errors[0].code, "DENIED");
    assert.ok(!body.includes("not-the-password"));
    assert.ok(!wrong.logs().includes("not-the-password"), "no secret in the log");
  } finally {
    await wrong.stop();
  }
});

test("a bad configuration answers every request with an error naming the setting", async () => {
  const bad = await startDoor({ bindings: { UPSTREAMS: "{not json", DEFAULT_REGISTRY: "docker.io" } });
  try {
    for (const p of ["/v2/", "/v2/x/manifests/y"]) {
      const r = await fetch(`${bad.url}${p}`);
      assert.equal(r.status, 500);
      const e = (await r.json()).errors[0];
      assert.equal(e.code, "UNKNOWN");
      assert.match(e.message, /UPSTREAMS/);
    }
  } finally {
    await bad.stop();
  }
});

test("no secret reaches the worker's log", () => {
  assert.ok(door.logs().length > 0);
  assert.ok(!door.logs().includes(SVC_PASSWORD));
});
