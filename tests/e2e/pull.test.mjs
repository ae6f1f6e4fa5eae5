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

/**
 * Reads a `multipart/byteranges` body (RFC 9110 §14.6) on its own terms: each part's bytes are
 * as many as its `Content-Range` says, and must be followed by the next delimiter.
 */
function parseByteranges(body, boundary) {
  const delimiter = Buffer.from(`--${boundary}`);
  const crlf = "\r\n";
  assert.equal(body.indexOf(delimiter), 0, "the body opens with the first delimiter");
  const parts = [];
  let at = delimiter.length;
  for (;;) {
    const after = body.subarray(at, at + 2).toString("latin1");
    if (after === "--") {
      assert.equal(body.subarray(at + 2).toString("latin1"), crlf, "the close delimiter ends the body");
      return parts;
    }
    assert.equal(after, crlf, "a delimiter line ends with CRLF");
    const headEnd = body.indexOf(`${crlf}${crlf}`, at);
    assert.ok(headEnd > at, "a part's headers end with an empty line");
    const headers = {};
    for (const line of body.subarray(at + 2, headEnd).toString("latin1").split(crlf)) {
      const colon = line.indexOf(":");
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(headers["content-range"] ?? "");
    assert.ok(m, `a part's Content-Range: ${JSON.stringify(headers)}`);
    const [first, last, size] = m.slice(1).map(Number);
    const start = headEnd + 4;
    const bytes = body.subarray(start, start + last - first + 1);
    parts.push({ headers, first, last, size, bytes });
    at = start + bytes.length;
    assert.equal(body.subarray(at, at + 2 + delimiter.length).toString("latin1"), `${crlf}--${boundary}`, "a delimiter follows each part");
    at += 2 + delimiter.length;
  }
}

test("several ranges of a cached blob are one 206 multipart/byteranges answer; one range a plain 206", async () => {
  const layer = upstreamManifest.json.layers[0];
  const url = `${door.url}/v2/${REPO}/blobs/${layer.digest}`;
  const whole = Buffer.from(await (await fetch(url)).arrayBuffer());
  assert.equal(whole.length, layer.size);
  assert.ok(layer.size > 1000, "a layer of several stream chunks");
  upstream.resetCounts();

  const cases = [
    ["bytes=0-9,100-199", [[0, 9], [100, 199]]],
    [`bytes=-10,0-0`, [[layer.size - 10, layer.size - 1], [0, 0]]],
    [`bytes=500-,0-9,${layer.size + 5}-`, [[500, layer.size - 1], [0, 9]]],
  ];
  for (const [range, want] of cases) {
    const r = await fetch(url, { headers: { range } });
    assert.equal(r.status, 206, range);
    const type = r.headers.get("content-type");
    const boundary = /^multipart\/byteranges; *boundary=("?)([^";]+)\1$/.exec(type)?.[2];
    assert.ok(boundary, `${range}: ${type}`);
    assert.equal(r.headers.get("content-range"), null, range);
    const body = Buffer.from(await r.arrayBuffer());
    assert.equal(Number(r.headers.get("content-length")), body.length, range);
    const parts = parseByteranges(body, boundary);
    assert.deepEqual(parts.map((p) => [p.first, p.last]), want, range);
    for (const p of parts) {
      assert.equal(p.size, layer.size, range);
      assert.equal(p.headers["content-type"], "application/octet-stream", range);
      assert.ok(p.bytes.equals(whole.subarray(p.first, p.last + 1)), `${range}: bytes ${p.first}-${p.last}`);
    }
  }

  // One range — or ranges that overlap into one — is a plain 206.
  for (const [range, first, last] of [["bytes=100-199", 100, 199], ["bytes=0-9,5-19", 0, 19]]) {
    const r = await fetch(url, { headers: { range } });
    assert.equal(r.status, 206, range);
    assert.equal(r.headers.get("content-type"), "application/octet-stream", range);
    assert.equal(r.headers.get("content-range"), `bytes ${first}-${last}/${layer.size}`, range);
    const body = Buffer.from(await r.arrayBuffer());
    assert.ok(body.equals(whole.subarray(first, last + 1)), range);
  }

  // No part inside the blob: 416 with its size.
  const none = await fetch(url, { headers: { range: `bytes=${layer.size}-,${layer.size + 10}-${layer.size + 20}` } });
  assert.equal(none.status, 416);
  assert.equal(none.headers.get("content-range"), `bytes */${layer.size}`);
  assert.equal((await none.json()).errors[0].code, "RANGE_INVALID");
  assert.equal(upstream.counts["GET blobs"] ?? 0, 0, "all from R2");
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
