// Signed blob redirects with real clients: the door in BLOB_REDIRECT=self mode answers blob reads
// that R2 holds with a 307 to its own signed /_blob/ URL; skopeo and containerd follow it and
// verify every digest. Tampered and expired URLs get 403 and no bytes. The largest layer is over
// the (lowered) multipart threshold, so it reaches R2 through the multipart fill.
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { buildImage } from "./lib/image.mjs";
import { ROOT, startDoor } from "./lib/door.mjs";
import { startUpstream } from "./lib/registry.mjs";
import { startContainerd, writeHostsToml } from "./lib/containerd.mjs";
import { execFileP, skopeo, tempDir } from "./lib/util.mjs";

const SVC = "svc";
const PW = crypto.randomBytes(12).toString("hex");
const KEY = crypto.randomBytes(32).toString("hex");
let tmp, upstream, door, image;

before(async () => {
  tmp = tempDir("redirect");
  upstream = await startUpstream({ dir: tmp.dir, users: { [SVC]: PW } });
  image = buildImage(path.join(tmp.dir, "img"), { layers: 3, bigLayerBytes: 11 << 20 });
  await upstream.push(path.join(tmp.dir, "img"), `private/app:v1`);
  door = await startDoor({
    bindings: {
      UPSTREAMS: JSON.stringify({ "registry.test": { url: upstream.url, username: SVC, password_secret: "PW" } }),
      DEFAULT_REGISTRY: "registry.test",
      PW,
      BLOB_REDIRECT: "self",
      URL_SIGNING_KEY: KEY,
      REDIRECT_TTL_SECONDS: "2",
      // The 11 MiB layer is filled as a multipart upload of 5 MiB parts (R2's smallest).
      MULTIPART_THRESHOLD_BYTES: String(6 << 20),
      MULTIPART_PART_BYTES: String(5 << 20),
    },
  });
});

after(async () => {
  await door?.stop();
  await upstream?.stop();
  tmp?.remove();
});

const blobs = () => [image.manifests[0].config, ...image.manifests[0].layers];

test("skopeo: a cold pull streams, a warm pull follows 307s to signed URLs, digests verified", async () => {
  await skopeo(["copy", "--src-tls-verify=false", `docker://${door.host}/private/app:v1`, `oci:${path.join(tmp.dir, "cold")}:x`]);
  const from = door.requests().length;
  const dir = path.join(tmp.dir, "warm");
  await skopeo(["copy", "--src-tls-verify=false", `docker://${door.host}/private/app:v1`, `oci:${dir}:x`]);
  for (const d of blobs()) {
    const bytes = readFileSync(path.join(dir, "blobs", "sha256", d.slice(7)));
    assert.equal(`sha256:${crypto.createHash("sha256").update(bytes).digest("hex")}`, d);
  }
  const lines = door.requests().slice(from);
  const redirected = lines.filter((l) => l.kind === "blob" && l.status === 307);
  const served = lines.filter((l) => l.kind === "signed-blob" && l.status === 200);
  assert.equal(redirected.length, blobs().length, JSON.stringify(lines));
  assert.equal(served.length, blobs().length);
  assert.ok(!door.logs().includes('"fill"'), `no fill failed: ${door.logs()}`);
});

test("containerd follows the redirects and unpacks", async () => {
  const { stdout } = await execFileP(path.join(ROOT, "scripts/containerd.sh"));
  const ctrd = await startContainerd({ dir: path.join(tmp.dir, "ctrd"), binDir: stdout.trim().split("\n").pop() });
  try {
    const hostsDir = path.join(tmp.dir, "certs.d");
    writeHostsToml(hostsDir, "registry.test", door.url);
    const from = door.requests().length;
    await ctrd.pull("registry.test/private/app:v1", { hostsDir });
    assert.equal(await ctrd.imageDigest("registry.test/private/app:v1"), image.top);
    assert.ok(await ctrd.unpacked(image.manifests[0].config));
    const signed = door.requests().slice(from).filter((l) => l.kind === "signed-blob" && l.status === 200);
    assert.equal(signed.length, blobs().length);
  } finally {
    await ctrd.stop();
  }
});

test("signed URLs: Range works; tampered, foreign and expired URLs get 403 and no bytes", async () => {
  const layer = image.manifests[0].layers[0];
  const r = await fetch(`${door.url}/v2/private/app/blobs/${layer}`, { redirect: "manual" });
  assert.equal(r.status, 307);
  const location = new URL(r.headers.get("location"), door.url);
  assert.equal(location.pathname, `/_blob/sha256/${layer.slice(7)}`);
  const bytes = readFileSync(path.join(tmp.dir, "img", "blobs", "sha256", layer.slice(7)));

  const part = await fetch(location, { headers: { range: "bytes=1000-1999" } });
  assert.equal(part.status, 206);
  assert.deepEqual(Buffer.from(await part.arrayBuffer()), bytes.subarray(1000, 2000));
  assert.match(part.headers.get("cache-control"), /immutable/);

  const other = image.manifests[0].layers[1];
  const bad = [
    location.href.replace(/sig=./, (m) => `sig=${m.endsWith("A") ? "B" : "A"}`),
    location.href.replace(layer.slice(7), other.slice(7)),
    `${door.url}/_blob/sha256/${layer.slice(7)}`,
  ];
  for (const url of bad) {
    const x = await fetch(url);
    assert.equal(x.status, 403, url);
    const body = await x.text();
    assert.equal(JSON.parse(body).errors[0].code, "DENIED");
    assert.ok(body.length < 300, "no blob bytes");
  }
  await new Promise((r) => setTimeout(r, 2100)); // REDIRECT_TTL_SECONDS=2
  const expired = await fetch(location);
  assert.equal(expired.status, 403);
  assert.ok(!door.logs().includes(KEY), "the signing key is never logged");
});
