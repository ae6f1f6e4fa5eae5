// Drop-in mirror behaviour with real parts: docker-registry behind token auth whose blob reads are
// redirected to a second host that refuses `Authorization` (as Docker Hub → CDN), multi-platform
// images pulled by platform and whole with skopeo, and the rest of the pull API (tags/list pages,
// referrers, Range, 405 on push) over HTTP.
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { buildImage } from "./lib/image.mjs";
import { startDoor } from "./lib/door.mjs";
import { pushRaw, startUpstream } from "./lib/registry.mjs";
import { sha256, skopeo, tempDir } from "./lib/util.mjs";

const SVC = "svc";
const PW = crypto.randomBytes(12).toString("hex");

let tmp, upstream, door, multi, single;

async function push(layout, ref) {
  await upstream.push(layout, ref, { all: true });
}

before(async () => {
  tmp = tempDir("mirror");
  upstream = await startUpstream({ dir: tmp.dir, users: { [SVC]: PW }, redirectBlobs: true });
  multi = buildImage(path.join(tmp.dir, "multi"), {
    platforms: [{ os: "linux", architecture: "amd64" }, { os: "linux", architecture: "arm64" }],
    layers: 2, bigLayerBytes: 256 << 10,
  });
  await push(path.join(tmp.dir, "multi"), "private/multi:v1");
  single = buildImage(path.join(tmp.dir, "single"), { layers: 2, bigLayerBytes: 300 << 10 });
  for (const tag of ["v1", "v2", "v3", "v4", "v5"]) await push(path.join(tmp.dir, "single"), `private/app:${tag}`);
  door = await startDoor({
    bindings: {
      UPSTREAMS: JSON.stringify({ "registry.test": { url: upstream.url, username: SVC, password_secret: "PW" } }),
      DEFAULT_REGISTRY: "registry.test",
      PW,
    },
  });
});

after(async () => {
  await door?.stop();
  await upstream?.stop();
  tmp?.remove();
});

function layout(dir) {
  const index = JSON.parse(readFileSync(path.join(dir, "index.json")));
  const blob = (d) => readFileSync(path.join(dir, "blobs", "sha256", d.slice(7)));
  return { index, blob, json: (d) => JSON.parse(blob(d)) };
}

test("blob reads redirected to a host that refuses Authorization still pull", async () => {
  const dir = path.join(tmp.dir, "out-single");
  await skopeo(["copy", "--src-tls-verify=false", `docker://${door.host}/private/app:v1`, `oci:${dir}:x`]);
  const out = layout(dir);
  assert.equal(out.index.manifests[0].digest, single.top);
  for (const l of single.manifests[0].layers) assert.equal(sha256(out.blob(l)), l);
  assert.ok(upstream.cdn.stats.served >= 3, JSON.stringify(upstream.cdn.stats));
  assert.equal(upstream.cdn.stats.refusedAuthorization, 0, "Authorization never sent to the CDN");
});

test("skopeo --override-arch arm64 gets the arm64 image of a multi-platform tag", async () => {
  const dir = path.join(tmp.dir, "out-arm64");
  await skopeo(["--override-arch", "arm64", "copy", "--src-tls-verify=false",
    `docker://${door.host}/private/multi:v1`, `oci:${dir}:x`]);
  const out = layout(dir);
  const arm = multi.manifests.find((m) => m.platform.architecture === "arm64");
  assert.equal(out.index.manifests[0].digest, arm.digest);
  assert.equal(out.json(out.json(arm.digest).config.digest).architecture, "arm64");
});

test("skopeo --all copies the index and every platform byte for byte", async () => {
  const dir = path.join(tmp.dir, "out-all");
  await skopeo(["copy", "--all", "--src-tls-verify=false", `docker://${door.host}/private/multi:v1`, `oci:${dir}:x`]);
  const out = layout(dir);
  assert.equal(out.index.manifests[0].digest, multi.index);
  for (const m of multi.manifests) {
    assert.equal(sha256(out.blob(m.digest)), m.digest);
    for (const l of m.layers) assert.equal(sha256(out.blob(l)), l);
  }
});

test("a client that cannot take an index never gets one, even once the index is cached", async () => {
  const r = await fetch(`${door.url}/v2/private/multi/manifests/v1`, {
    headers: { accept: "application/vnd.oci.image.manifest.v1+json" },
  });
  // distribution cannot convert an OCI index; what matters is the door never answers with the index.
  if (r.status === 200) assert.notEqual(r.headers.get("content-type"), "application/vnd.oci.image.index.v1+json");
  else assert.equal(r.status, 404);
  const all = await fetch(`${door.url}/v2/private/multi/manifests/v1`);
  assert.equal(all.headers.get("docker-content-digest"), multi.index);
});

test("tags/list pages follow the door's own Link", async () => {
  let url = `${door.url}/v2/registry.test/private/app/tags/list?n=2`;
  const seen = [];
  let pages = 0;
  while (url) {
    const r = await fetch(url);
    assert.equal(r.status, 200);
    seen.push(...(await r.json()).tags);
    pages++;
    const link = r.headers.get("link");
    if (!link) break;
    const target = link.match(/^<([^>]+)>; rel="next"$/)[1];
    assert.ok(target.startsWith("/v2/registry.test/private/app/tags/list?"), link);
    url = `${door.url}${target}`;
  }
  assert.deepEqual(seen, ["v1", "v2", "v3", "v4", "v5"]);
  assert.equal(pages, 3);
});

test("HEAD on tags/list answers as GET would, with or without a page (distribution has no HEAD there)", async () => {
  const base = `${door.url}/v2/registry.test/private/app/tags/list`;
  for (const q of ["", "?last=v2", "?n=2&last=v1", "?n=2"]) {
    const get = await fetch(`${base}${q}`);
    const body = Buffer.from(await get.arrayBuffer());
    const head = await fetch(`${base}${q}`, { method: "HEAD" });
    assert.equal(get.status, 200, `GET ${q}: ${body}`);
    assert.equal(head.status, 200, `HEAD ${q}`);
    assert.equal(head.headers.get("content-length"), String(body.length), `HEAD ${q}`);
    assert.equal(head.headers.get("link"), get.headers.get("link"), `HEAD ${q}`);
    assert.equal(head.headers.get("content-type"), "application/json");
  }
  const tags = (await (await fetch(base)).json()).tags;
  assert.deepEqual(tags, [...tags].sort(), "lexical order");
});

test("referrers fall back to the tag schema on a registry without the API, filtered by artifactType", async () => {
  const subject = single.top;
  const subjectSize = readFileSync(path.join(tmp.dir, "single", "blobs", "sha256", subject.slice(7))).length;
  const empty = Buffer.from("{}");
  const sbom = Buffer.from("an sbom");
  const artifact = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
    artifactType: "application/vnd.example.sbom",
    config: { mediaType: "application/vnd.oci.empty.v1+json", digest: sha256(empty), size: 2 },
    layers: [{ mediaType: "text/plain", digest: sha256(sbom), size: sbom.length }],
    subject: { mediaType: "application/vnd.oci.image.manifest.v1+json", digest: subject, size: subjectSize },
  }));
  const index = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
    manifests: [{ mediaType: "application/vnd.oci.image.manifest.v1+json", digest: sha256(artifact),
      size: artifact.length, artifactType: "application/vnd.example.sbom" }],
  }));
  await pushRaw(upstream, SVC, "private/app", {
    blobs: [empty, sbom],
    manifests: [
      { reference: sha256(artifact), mediaType: "application/vnd.oci.image.manifest.v1+json", bytes: artifact },
      { reference: `sha256-${subject.slice(7)}`, mediaType: "application/vnd.oci.image.index.v1+json", bytes: index },
    ],
  });
  const r = await fetch(`${door.url}/v2/private/app/referrers/${subject}`);
  assert.equal(r.status, 200);
  assert.equal(r.headers.get("content-type"), "application/vnd.oci.image.index.v1+json");
  const all = await r.json();
  assert.deepEqual(all.manifests.map((m) => m.digest), [sha256(artifact)]);
  const other = await fetch(`${door.url}/v2/private/app/referrers/${subject}?artifactType=application%2Fvnd.example.sig`);
  assert.equal((await other.json()).manifests.length, 0);
  assert.equal(other.headers.get("oci-filters-applied"), "artifactType");
  const none = await fetch(`${door.url}/v2/private/app/referrers/${sha256(Buffer.from("nothing"))}`);
  assert.equal(none.status, 200);
  assert.deepEqual((await none.json()).manifests, []);
});

test("Range: 206 from the cache and on a miss, 416 outside the blob", async () => {
  const [big] = single.manifests[0].layers; // cached by the first test
  const bytes = readFileSync(path.join(tmp.dir, "single", "blobs", "sha256", big.slice(7)));
  const url = `${door.url}/v2/private/app/blobs/${big}`;
  const r = await fetch(url, { headers: { range: "bytes=100-199" } });
  assert.equal(r.status, 206);
  assert.equal(r.headers.get("content-range"), `bytes 100-199/${bytes.length}`);
  assert.deepEqual(Buffer.from(await r.arrayBuffer()), bytes.subarray(100, 200));
  const resume = await fetch(url, { headers: { range: `bytes=${bytes.length - 10}-` } });
  assert.equal(resume.status, 206);
  assert.deepEqual(Buffer.from(await resume.arrayBuffer()), bytes.subarray(bytes.length - 10));
  const outside = await fetch(url, { headers: { range: `bytes=${bytes.length}-` } });
  assert.equal(outside.status, 416);
  assert.equal(outside.headers.get("content-range"), `bytes */${bytes.length}`);
  assert.equal((await outside.json()).errors[0].code, "RANGE_INVALID");

  // A miss: the amd64 layer of the multi image was never pulled by itself through this name.
  const arm = multi.manifests.find((m) => m.platform.architecture === "arm64");
  const layer = readFileSync(path.join(tmp.dir, "multi", "blobs", "sha256", arm.layers[1].slice(7)));
  const missUrl = `${door.url}/v2/private/app/blobs/${sha256(Buffer.from("not there"))}`;
  assert.equal((await fetch(missUrl, { headers: { range: "bytes=1-" } })).status, 404);
  const m = await fetch(`${door.url}/v2/private/multi/blobs/${arm.layers[1]}`, { headers: { range: "bytes=3-" } });
  assert.ok([200, 206].includes(m.status), `${m.status}`);
  const got = Buffer.from(await m.arrayBuffer());
  assert.deepEqual(got, m.status === 206 ? layer.subarray(3) : layer);
});

test("push and delete are refused with 405 UNSUPPORTED", async () => {
  for (const [method, p] of [
    ["POST", "/v2/private/app/blobs/uploads/"],
    ["PUT", "/v2/private/app/manifests/v9"],
    ["DELETE", `/v2/private/app/manifests/${single.top}`],
    ["PATCH", "/v2/private/app/blobs/uploads/x"],
  ]) {
    const r = await fetch(`${door.url}${p}`, { method });
    assert.equal(r.status, 405, `${method} ${p}`);
    assert.equal((await r.json()).errors[0].code, "UNSUPPORTED");
  }
  await assert.rejects(
    skopeo(["copy", "--dest-tls-verify=false", `oci:${path.join(tmp.dir, "single")}:v1`, `docker://${door.host}/private/app:pushed`]),
  );
  const catalog = await fetch(`${door.url}/v2/_catalog`);
  assert.equal((await catalog.json()).errors[0].code, "UNSUPPORTED");
});
