// BLOB_REDIRECT=s3 against s3s-fs, a real S3 server that checks SigV4 presigned URLs: the door's
// 307 Location downloads the blob straight from the bucket, Range works, and tampered, expired and
// wrong-key URLs are refused by the server. (R2 in Miniflare and the S3 server are two stores here,
// so each blob the door fills is also put into the S3 bucket, as R2's S3 API would serve it.)
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { buildImage } from "./lib/image.mjs";
import { startDoor } from "./lib/door.mjs";
import { startUpstream } from "./lib/registry.mjs";
import { startS3 } from "./lib/s3.mjs";
import { tempDir, skopeo } from "./lib/util.mjs";

const SVC = "svc";
const PW = crypto.randomBytes(12).toString("hex");
const AK = "FRONTDOORTESTKEY";
const SK = crypto.randomBytes(20).toString("hex");
let tmp, upstream, s3, door, wrongKeyDoor, image;

const bindings = (secret, ttl) => ({
  UPSTREAMS: JSON.stringify({ "registry.test": { url: upstream.url, username: SVC, password_secret: "PW" } }),
  DEFAULT_REGISTRY: "registry.test",
  PW,
  BLOB_REDIRECT: "s3",
  R2_S3_ENDPOINT: s3.endpoint,
  R2_BUCKET: s3.bucket,
  R2_ACCESS_KEY_ID: AK,
  R2_SECRET_ACCESS_KEY: secret,
  REDIRECT_TTL_SECONDS: String(ttl),
});

before(async () => {
  tmp = tempDir("s3redirect");
  upstream = await startUpstream({ dir: tmp.dir, users: { [SVC]: PW } });
  image = buildImage(path.join(tmp.dir, "img"), { layers: 2, bigLayerBytes: 256 << 10 });
  await upstream.push(path.join(tmp.dir, "img"), `private/app:v1`);
  s3 = await startS3({ dir: path.join(tmp.dir, "s3"), accessKey: AK, secretKey: SK, bucket: "door-blobs" });
  door = await startDoor({ bindings: bindings(SK, 2) });
  wrongKeyDoor = await startDoor({ bindings: bindings("not-the-secret-key", 300) });
});

after(async () => {
  await wrongKeyDoor?.stop();
  await door?.stop();
  await s3?.stop();
  await upstream?.stop();
  tmp?.remove();
});

const layer = () => image.manifests[0].layers[0];
const bytesOf = (d) => readFileSync(path.join(tmp.dir, "img", "blobs", "sha256", d.slice(7)));

async function redirectFor(d, via = door) {
  const r = await fetch(`${via.url}/v2/private/app/blobs/${d}`, { redirect: "manual" });
  assert.equal(r.status, 307);
  await r.arrayBuffer();
  return r.headers.get("location");
}

test("a stored blob is answered with a presigned URL that the S3 server serves, Range too", async () => {
  const d = layer();
  const first = await fetch(`${door.url}/v2/private/app/blobs/${d}`, { redirect: "manual" });
  assert.equal(first.status, 200, "a miss streams through and fills");
  assert.deepEqual(Buffer.from(await first.arrayBuffer()), bytesOf(d));
  await s3.putObject(`blobs/sha256/${d.slice(7)}`, bytesOf(d));

  const location = await redirectFor(d);
  assert.ok(location.startsWith(`${s3.endpoint}/door-blobs/blobs/sha256/${d.slice(7)}?X-Amz-Algorithm=AWS4-HMAC-SHA256`), location);
  assert.ok(!location.includes(SK));
  const got = await fetch(location);
  assert.equal(got.status, 200);
  assert.deepEqual(Buffer.from(await got.arrayBuffer()), bytesOf(d));
  const part = await fetch(location, { headers: { range: "bytes=10-19" } });
  assert.equal(part.status, 206);
  assert.deepEqual(Buffer.from(await part.arrayBuffer()), bytesOf(d).subarray(10, 20));
});

test("tampered, wrong-key and expired URLs are refused by the S3 server", async () => {
  const d = layer();
  const location = await redirectFor(d);
  const sig = new URL(location).searchParams.get("X-Amz-Signature");
  const tampered = location.replace(sig, sig.replace(/^./, (c) => (c === "0" ? "1" : "0")));
  assert.equal((await fetch(tampered)).status, 403);
  const otherKey = location.replace(d.slice(7), image.manifests[0].layers[1].slice(7));
  assert.equal((await fetch(otherKey)).status, 403);
  await fetch(`${wrongKeyDoor.url}/v2/private/app/blobs/${d}`).then((r) => r.arrayBuffer());
  const wrong = await redirectFor(d, wrongKeyDoor);
  assert.equal((await fetch(wrong)).status, 403);
  await new Promise((r) => setTimeout(r, 2100)); // REDIRECT_TTL_SECONDS=2
  assert.equal((await fetch(location)).status, 403);
});
