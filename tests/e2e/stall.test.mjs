// Upstream bodies that stall, dribble, lie or break off (issue 11, items 4 and 7). A real registry
// cannot do any of this, so the upstream here is a scripted one: a small node HTTP server speaking
// just enough of /v2/ (anonymous, no token dance), each repository name a behaviour. It checks the
// door from outside — the bytes a client got, how long it waited, what R2 holds — and shares no
// code with the door.
//
// Settings are short so the file runs in well under a minute: UPSTREAM_TIMEOUT_SECONDS=3 (headers,
// and the whole of a manifest), UPSTREAM_IDLE_TIMEOUT_SECONDS=2, so an owner's turn lasts 3 + 2 s
// (plus 1 s per MiB, nothing for these small blobs).
import assert from "node:assert/strict";
import crypto from "node:crypto";
import http from "node:http";
import { after, before, test } from "node:test";
import { startDoor } from "./lib/door.mjs";
import { MANIFEST_ACCEPT } from "./lib/util.mjs";

const sha256 = (b) => `sha256:${crypto.createHash("sha256").update(b).digest("hex")}`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json";

/** A blob per behaviour: its own bytes, so each has its own digest (and its own owner). */
const blob = (name, size = 4096) => {
  const bytes = crypto.createHash("sha512").update(name).digest();
  const out = Buffer.alloc(size);
  for (let i = 0; i < size; i += bytes.length) bytes.copy(out, i);
  return { bytes: out, digest: sha256(out) };
};
const BLOBS = {
  good: blob("good", 1 << 20),
  stall: blob("stall"),
  dribble: blob("dribble", 24),
  corrupt: blob("corrupt"),
  chunkedCorrupt: blob("chunked-corrupt"),
  chunkedCut: blob("chunked-cut"),
  lengthCut: blob("length-cut"),
};

const manifest = (n) => Buffer.from(JSON.stringify({
  schemaVersion: 2, mediaType: MANIFEST_TYPE,
  config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: BLOBS.good.digest, size: 1 << 20 },
  layers: [], annotations: { n: String(n) },
}));

/**
 * The scripted upstream. `/v2/<behaviour>/…`: `good` answers properly; `stall` sends headers and
 * 10 bytes, then nothing; `dribble` sends one byte every 700 ms (under the idle timeout);
 * `corrupt` sends the right length of wrong bytes; `chunked-corrupt` wrong bytes with no
 * Content-Length; `chunked-cut` half the bytes, chunked, then drops the connection;
 * `length-cut` half of a Content-Length body, then drops it. Manifests: `moving` serves
 * `state.tag` (0 at first), its GET dribbling once `state.dribbleManifests` is set; `slow` always
 * dribbles. Each request is logged with whether the door hung up before the answer was complete.
 */
async function startHostile() {
  const state = { tag: 0, dribbleManifests: false, log: [] };
  const timers = new Set();
  const sockets = new Set();
  const every = (ms, fn) => { const t = setInterval(fn, ms); timers.add(t); return t; };
  const dribble = (res, bytes, ms, entry) => {
    let i = 0;
    const t = every(ms, () => {
      if (i >= bytes.length) { clearInterval(t); res.end(); entry.complete = true; return; }
      res.write(bytes.subarray(i, ++i));
    });
    res.on("close", () => clearInterval(t));
  };
  const server = http.createServer((req, res) => {
    const entry = { method: req.method, url: req.url, at: Date.now(), complete: false, hungUp: false };
    state.log.push(entry);
    res.on("close", () => { if (!res.writableFinished) entry.hungUp = true; });
    const m = req.url.match(/^\/v2\/([^/]+)\/(blobs|manifests)\/([^/?]+)$/);
    if (req.url === "/v2/" || !m) {
      res.writeHead(req.url === "/v2/" ? 200 : 404, { "content-type": "application/json" });
      return res.end("{}");
    }
    const [, behaviour, kind, ref] = m;
    if (kind === "manifests") {
      const bytes = manifest(behaviour === "moving" ? state.tag : 99);
      const headers = { "content-type": MANIFEST_TYPE, "content-length": bytes.length, "docker-content-digest": sha256(bytes) };
      res.writeHead(200, headers);
      if (req.method === "HEAD") return res.end();
      if (behaviour === "slow" || (behaviour === "moving" && state.dribbleManifests)) {
        return dribble(res, bytes, 1000, entry); // a byte a second: never idle, always late
      }
      entry.complete = true;
      return res.end(bytes);
    }
    const key = behaviour.replace(/-(\w)/g, (_, c) => c.toUpperCase());
    const b = BLOBS[key];
    if (!b || ref !== b.digest) { res.writeHead(404); return res.end(); }
    const half = b.bytes.subarray(0, b.bytes.length >> 1);
    const wrong = Buffer.from(b.bytes);
    wrong[wrong.length - 1] ^= 0xff; // the last byte: only the end can tell
    const length = { "content-type": "application/octet-stream", "content-length": b.bytes.length };
    const chunked = { "content-type": "application/octet-stream" };
    if (req.method === "HEAD") { res.writeHead(200, length); return res.end(); }
    switch (behaviour) {
      case "good": res.writeHead(200, length); entry.complete = true; return res.end(b.bytes);
      case "stall": res.writeHead(200, length); return res.write(b.bytes.subarray(0, 10));
      case "dribble": res.writeHead(200, length); return dribble(res, b.bytes, 700, entry);
      case "corrupt": res.writeHead(200, length); entry.complete = true; return res.end(wrong);
      case "chunked-corrupt": res.writeHead(200, chunked); entry.complete = true; return res.end(wrong);
      case "chunked-cut":
      case "length-cut":
        res.writeHead(200, behaviour === "length-cut" ? length : chunked);
        res.write(half);
        return setTimeout(() => res.socket?.destroy(), 200);
    }
  });
  server.on("connection", (s) => { sockets.add(s); s.on("close", () => sockets.delete(s)); });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    state,
    requests: (pattern) => state.log.filter((e) => pattern.test(`${e.method} ${e.url}`)),
    stop: () => {
      for (const t of timers) clearInterval(t);
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

let hostile, door;

before(async () => {
  hostile = await startHostile();
  door = await startDoor({
    bindings: {
      UPSTREAMS: JSON.stringify({ "hostile.test": { url: hostile.url } }),
      DEFAULT_REGISTRY: "hostile.test",
      UPSTREAM_TIMEOUT_SECONDS: "3",
      UPSTREAM_IDLE_TIMEOUT_SECONDS: "2",
      TAG_TTL_SECONDS: "1",
    },
  });
});

after(async () => {
  await door?.stop();
  hostile?.stop();
});

/** GETs a blob and reads it whole: how it ended, and when (ms from `t0`). */
async function getBlob(name, digest, t0 = Date.now(), signal) {
  const res = await fetch(`${door.url}/v2/${name}/blobs/${digest}`, { signal });
  const headersAt = Date.now() - t0;
  try {
    const bytes = Buffer.from(await res.arrayBuffer());
    return { status: res.status, headersAt, endedAt: Date.now() - t0, bytes, length: res.headers.get("content-length") };
  } catch (error) {
    return { status: res.status, headersAt, endedAt: Date.now() - t0, error };
  }
}

const refusals = (digest) => door.requests().filter((l) => l.blob === digest && l.refused);

test("a good blob streams whole with its length, and is stored", async () => {
  const { digest, bytes } = BLOBS.good;
  const got = await getBlob("good", digest);
  assert.equal(got.status, 200);
  assert.equal(got.error, undefined, String(got.error));
  assert.equal(got.length, String(bytes.length), "Content-Length passed on");
  assert.equal(sha256(got.bytes), digest);
  // The fill lands in the background, just after the client's last byte.
  for (let i = 0; i < 50 && !(await door.stored(digest)); i++) await sleep(100);
  assert.equal(await door.stored(digest), true);
  assert.deepEqual(refusals(digest), []);
});

test("a blob that stalls after its headers: both coalesced clients fail within the idle timeout, nothing stored", async () => {
  const { digest } = BLOBS.stall;
  const t0 = Date.now();
  const first = getBlob("stall", digest, t0);
  await sleep(300);
  const second = getBlob("stall", digest, t0);
  const [a, b] = await Promise.all([first, second]);
  assert.equal(a.status, 200);
  assert.ok(a.error, "the first client's read must fail, not end cleanly");
  assert.ok(a.endedAt >= 1500 && a.endedAt < 5000, `first failed at ${a.endedAt} ms (idle timeout 2 s)`);
  // The second waited in the owner's queue for the first fill to fail, then fetched for itself.
  assert.ok(b.error, "the second client's read must fail too");
  assert.ok(b.endedAt < 8000, `second failed at ${b.endedAt} ms`);
  assert.equal(await door.stored(digest), false, "nothing stored");
  const gets = hostile.requests(new RegExp(`^GET /v2/stall/blobs/${digest}$`));
  assert.equal(gets.length, 2, "one upstream GET per turn");
  assert.ok(gets.every((g) => g.hungUp), "the door hung up on the stalled upstream");
  assert.ok(refusals(digest).some((l) => /no byte for 2 s/.test(l.refused) && l.stored === false), door.logs());
});

test("a fill dribbling under the idle timeout holds the owner's turn only until its deadline", async () => {
  const { digest } = BLOBS.dribble; // 24 bytes at one per 700 ms: about 17 s
  const t0 = Date.now();
  const stop = new AbortController();
  const first = fetch(`${door.url}/v2/dribble/blobs/${digest}`, { signal: stop.signal });
  await sleep(300);
  const second = fetch(`${door.url}/v2/dribble/blobs/${digest}`, { signal: stop.signal });
  const [a, b] = await Promise.all([first, second]);
  const secondAt = Date.now() - t0;
  assert.equal(a.status, 200);
  assert.equal(b.status, 200);
  // The turn is 3 + 2 s from the first answer: the second was queued behind it, then let go.
  assert.ok(secondAt >= 4000 && secondAt < 9000, `second answered at ${secondAt} ms (turn 5 s; the fill takes ~17 s)`);
  assert.ok(door.requests().some((l) => l.turn === "released"), "the release is logged");
  stop.abort();
  await Promise.allSettled([a.body?.cancel(), b.body?.cancel()]);
});

test("a manifest dribbling past UPSTREAM_TIMEOUT_SECONDS answers 504", async () => {
  const t0 = Date.now();
  const res = await fetch(`${door.url}/v2/slow/manifests/v1`, { headers: { accept: MANIFEST_TYPE } });
  const took = Date.now() - t0;
  const body = await res.json();
  assert.equal(res.status, 504, JSON.stringify(body));
  assert.equal(body.errors[0].code, "UNAVAILABLE");
  assert.ok(took >= 2500 && took < 6500, `answered after ${took} ms (deadline 3 s from the request)`);
  assert.ok(hostile.requests(/^GET \/v2\/slow\/manifests\/v1$/).every((g) => g.hungUp && !g.complete));
});

test("a cached manifest is served stale when its upstream copy dribbles past the deadline", async () => {
  const url = `${door.url}/v2/moving/manifests/v1`;
  // A client that takes every manifest type (any client is served from the tag's canonical entry).
  const fresh = await fetch(url, { headers: { accept: MANIFEST_ACCEPT } });
  assert.equal(fresh.status, 200);
  const cached = Buffer.from(await fresh.arrayBuffer());
  assert.equal(sha256(cached), sha256(manifest(0)));
  // The tag moves upstream (its HEAD names a new digest), and the new manifest dribbles.
  hostile.state.tag = 1;
  hostile.state.dribbleManifests = true;
  await sleep(1200); // past TAG_TTL_SECONDS
  const t0 = Date.now();
  const res = await fetch(url, { headers: { accept: MANIFEST_ACCEPT } });
  const took = Date.now() - t0;
  const bytes = Buffer.from(await res.arrayBuffer());
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("x-frontdoor-cache"), "stale");
  assert.equal(sha256(bytes), sha256(cached), "the cached copy, byte for byte");
  assert.ok(took < 6500, `served stale after ${took} ms`);
  // One GET of the tag when it was first pulled, one HEAD once it was past its TTL (naming the new
  // digest), and one GET of that digest, which dribbled and was given up.
  const asked = (re) => hostile.requests(re).map((e) => `${e.method} ${e.url}`);
  assert.deepEqual(asked(/^(GET|HEAD) \/v2\/moving\/manifests\//), [
    "GET /v2/moving/manifests/v1",
    "HEAD /v2/moving/manifests/v1",
    `GET /v2/moving/manifests/${sha256(manifest(1))}`,
  ], "the door did GET the new one, once");
});

// With a Content-Length, a wrong or short blob fails the client's transfer: the door holds back
// the last chunk until the bytes proved right, and aborts the stream when they did not.
for (const [name, key, what] of [
  ["corrupt", "corrupt", "right length, wrong bytes"],
  ["length-cut", "lengthCut", "Content-Length, cut short"],
]) {
  test(`a wrong blob never ends cleanly: ${what}`, async () => {
    const { digest } = BLOBS[key];
    const got = await getBlob(name, digest);
    assert.equal(got.status, 200, "headers go before the bytes can be checked");
    assert.ok(got.error, `the client's read must fail: got ${got.bytes?.length} bytes and a clean end`);
    assert.equal(await door.stored(digest), false, "nothing stored");
    await assertRefused(digest, key === "corrupt" ? /bytes hash to sha256:/ : /broke off/);
  });
}

// Without a Content-Length the door errors the client's stream the same way, but this runtime
// (workerd under Miniflare) ends a chunked answer whose body stream errored with a clean
// terminating chunk — a direct pass-through of a cut-short upstream body does the same — so the
// transfer cannot look failed at the HTTP level here. What the door controls still holds: the
// held-back last chunk of a wrong blob never reaches the client (so it never holds every byte
// upstream sent), nothing is stored, and the refusal is logged. Clients check digests too.
for (const [name, key, what, sent] of [
  ["chunked-corrupt", "chunkedCorrupt", "no Content-Length, wrong bytes, a clean end", 4096],
  ["chunked-cut", "chunkedCut", "no Content-Length, cut short", 2048],
]) {
  test(`a wrong blob never ends cleanly: ${what}`, async () => {
    const { digest } = BLOBS[key];
    const got = await getBlob(name, digest);
    assert.equal(got.status, 200, "headers go before the bytes can be checked");
    if (!got.error) {
      assert.ok(got.bytes.length < sent, `the client got all ${sent} bytes upstream sent`);
      assert.notEqual(sha256(got.bytes), digest);
    }
    assert.equal(await door.stored(digest), false, "nothing stored");
    await assertRefused(digest, key === "chunkedCorrupt" ? /bytes hash to sha256:/ : /broke off/);
  });
}

/** The door logged one JSON line naming `digest` and why it was refused (and no header). */
async function assertRefused(digest, why) {
  for (let i = 0; i < 20 && refusals(digest).length === 0; i++) await sleep(100);
  const lines = refusals(digest);
  assert.ok(lines.length > 0, door.logs());
  assert.ok(lines.every((l) => l.stored === false && l.client === "stream errored"), JSON.stringify(lines));
  assert.match(lines[0].refused, why);
}
