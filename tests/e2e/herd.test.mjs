// A cold herd on one big layer (issue 12 item 3): every concurrent client gets its headers within
// about a second of the first one's and bytes while the one upstream GET is still filling the
// cache; nothing partial is ever served as complete. The good herd pulls from a real
// docker-registry behind token auth (counted by hubsim); the corrupt one from a scripted registry
// that sends wrong bytes of the right length, slowly, which no real registry does.
import assert from "node:assert/strict";
import crypto from "node:crypto";
import http from "node:http";
import { statSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { buildImage } from "./lib/image.mjs";
import { startDoor } from "./lib/door.mjs";
import { startHubSim } from "./lib/hubsim.mjs";
import { startUpstream } from "./lib/registry.mjs";
import { MANIFEST_ACCEPT, tempDir, waitFor } from "./lib/util.mjs";

const SVC = "svc";
const PW = crypto.randomBytes(12).toString("hex");
const CLIENTS = 8;
const LAYER = 40 << 20; // five spool segments

let tmp, upstream, hub, door, layer, size;

before(async () => {
  tmp = tempDir("herd");
  upstream = await startUpstream({ dir: tmp.dir, users: { [SVC]: PW } });
  const dir = path.join(tmp.dir, "img");
  const image = buildImage(dir, { layers: 1, bigLayerBytes: LAYER });
  layer = image.manifests[0].layers[0];
  size = statSync(path.join(dir, "blobs", "sha256", layer.slice(7))).size;
  await upstream.push(dir, "team/big:v1");
  hub = await startHubSim({ targetUrl: upstream.url, limit: 100 });
  door = await startDoor({
    persistDir: path.join(tmp.dir, "door"),
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

/** GETs `url`, timing headers, first byte and last byte (ms from `t0`); hashes the body. */
async function timed(url, t0) {
  const r = await fetch(url);
  const out = { status: r.status, cache: r.headers.get("x-frontdoor-cache"), length: Number(r.headers.get("content-length")) };
  out.headers = performance.now() - t0;
  const hash = crypto.createHash("sha256");
  let bytes = 0;
  try {
    for await (const chunk of r.body) {
      if (bytes === 0) out.first = performance.now() - t0;
      hash.update(chunk);
      bytes += chunk.length;
    }
    out.complete = true;
  } catch (e) {
    out.complete = false;
    out.error = e.message;
  }
  out.done = performance.now() - t0;
  out.bytes = bytes;
  out.digest = `sha256:${hash.digest("hex")}`;
  return out;
}

async function spooled() {
  const bucket = await door.mf.getR2Bucket("BLOBS");
  return (await bucket.list({ prefix: "spool/" })).objects.map((o) => o.key);
}

test(`${CLIENTS} cold clients of one ${LAYER >> 20} MiB layer all stream at once from one upstream GET`, async () => {
  const m = await fetch(`${door.url}/v2/team/big/manifests/v1`, { headers: { accept: MANIFEST_ACCEPT } });
  assert.equal(m.status, 200);
  const before = hub.state.counts.blobGets;
  const t0 = performance.now();
  const url = `${door.url}/v2/team/big/blobs/${layer}`;
  const results = await Promise.all(Array.from({ length: CLIENTS }, () => timed(url, t0)));

  for (const r of results) {
    assert.deepEqual([r.status, r.complete, r.bytes, r.digest], [200, true, size, layer], JSON.stringify(r));
  }
  assert.equal(hub.state.counts.blobGets - before, 1, "one upstream GET filled the cache for everyone");
  const owners = results.filter((r) => r.cache === "miss");
  const joined = results.filter((r) => r.cache === "joined");
  assert.equal(owners.length, 1, JSON.stringify(results.map((r) => r.cache)));
  assert.equal(joined.length, CLIENTS - 1);
  const [owner] = owners;
  for (const r of joined) {
    assert.ok(r.headers <= owner.headers + 1000, `headers after ${r.headers.toFixed(0)} ms, the owner's after ${owner.headers.toFixed(0)} ms`);
    // Bytes while the fill runs: well before the owner's last byte, not after the fill landed.
    assert.ok(r.first < owner.done - 500, `first byte after ${r.first.toFixed(0)} ms, the owner's last after ${owner.done.toFixed(0)} ms`);
  }

  // The blob's own object lands, whole, and the segments go.
  await waitFor(() => door.stored(layer), 60000, "the blob in R2");
  const bucket = await door.mf.getR2Bucket("BLOBS");
  const object = await bucket.get(`blobs/sha256/${layer.slice(7)}`);
  const bytes = Buffer.from(await object.arrayBuffer());
  assert.equal(`sha256:${crypto.createHash("sha256").update(bytes).digest("hex")}`, layer);
  await waitFor(async () => (await spooled()).length === 0, 30000, "no spool segments left");
  const again = await timed(url, performance.now());
  assert.deepEqual([again.status, again.cache, again.digest], [200, "hit", layer]);
});

test("a herd on a corrupt layer: every client's transfer fails, nothing is stored, no segment is left", async () => {
  // A registry that sends a layer of the right length and the wrong bytes, slowly enough for the
  // herd to join while the fill runs.
  const size = 20 << 20;
  const wrong = crypto.randomBytes(size);
  const digest = `sha256:${crypto.createHash("sha256").update(Buffer.from("the real layer")).digest("hex")}`;
  let gets = 0;
  const server = http.createServer(async (req, res) => {
    if (req.url === "/v2/") return res.writeHead(200).end("{}");
    if (req.url === `/v2/bad/app/blobs/${digest}` && req.method === "GET") {
      gets++;
      res.writeHead(200, { "content-length": size, "docker-content-digest": digest, "content-type": "application/octet-stream" });
      for (let at = 0; at < size; at += 1 << 20) {
        if (!res.write(wrong.subarray(at, at + (1 << 20)))) await new Promise((r) => res.once("drain", r));
        await new Promise((r) => setTimeout(r, 100));
      }
      return res.end();
    }
    res.writeHead(404, { "content-type": "application/json" }).end('{"errors":[{"code":"BLOB_UNKNOWN"}]}');
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const bad = await startDoor({
    persistDir: path.join(tmp.dir, "bad"),
    bindings: {
      UPSTREAMS: JSON.stringify({ "bad.test": { url: `http://127.0.0.1:${server.address().port}` } }),
      DEFAULT_REGISTRY: "bad.test",
    },
  });
  try {
    const url = `${bad.url}/v2/bad/app/blobs/${digest}`;
    const t0 = performance.now();
    const results = await Promise.all(Array.from({ length: CLIENTS }, () => timed(url, t0)));
    assert.equal(gets, 1, "one upstream GET");
    assert.deepEqual(results.map((r) => r.cache).sort(), ["joined", ...Array(CLIENTS - 2).fill("joined"), "miss"].sort());
    for (const r of results) {
      assert.equal(r.status, 200);
      assert.equal(r.complete, false, `a client saw a clean end of wrong bytes: ${JSON.stringify(r)}`);
      assert.ok(r.bytes < size, `${r.bytes} of ${size} bytes: the last chunk is never sent`);
    }
    const bucket = await bad.mf.getR2Bucket("BLOBS");
    await waitFor(async () => (await bucket.list({ prefix: "spool/" })).objects.length === 0, 30000, "no spool segments left");
    assert.equal(await bad.stored(digest), false, "nothing stored");
  } finally {
    await bad.stop();
    server.close();
  }
});
