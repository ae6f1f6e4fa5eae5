// R2 fills that must not land (issue 13, item 8), against the real R2 binding (Miniflare's): an
// upstream that sends wrong bytes, or too few, under a correct Content-Length, for a blob stored
// with one put and for one above MULTIPART_THRESHOLD_BYTES (a multipart upload, which R2 checks no
// checksum of: the door must abort it). A real registry cannot lie like this, so the upstream is a
// scripted one (a node HTTP server, sharing no code with the door); the checks read R2 straight
// from the bucket, the door's log lines, and what the client got.
//
// Sizes are small: the multipart threshold is 1 MiB and parts are R2's smallest, 5 MiB, so the
// multipart blob (11 MiB) goes up in three parts and the single-put blob (256 KiB) in one put.
import assert from "node:assert/strict";
import crypto from "node:crypto";
import http from "node:http";
import { after, before, test } from "node:test";
import { startDoor } from "./lib/door.mjs";

const sha256 = (b) => `sha256:${crypto.createHash("sha256").update(b).digest("hex")}`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const MiB = 1 << 20;
const THRESHOLD = MiB;
const PART = 5 * MiB;

const blob = (size) => {
  const bytes = crypto.randomBytes(size);
  return { bytes, digest: sha256(bytes), key: `blobs/sha256/${sha256(bytes).slice(7)}` };
};
/** One blob per case, so each has its own digest, owner and R2 key. */
const BLOBS = {
  multipartGood: blob(11 * MiB),
  singleCorrupt: blob(256 << 10),
  singleShort: blob(256 << 10),
  multipartCorrupt: blob(11 * MiB),
  multipartShort: blob(11 * MiB),
};

/**
 * The scripted upstream: `/v2/app/blobs/<digest>` answers with the full Content-Length, and then,
 * by `mode[digest]`: `good` the bytes; `corrupt` the bytes with the last one flipped (only the end
 * can tell); `short` 60% of them, then the connection is dropped. Every request is logged.
 */
async function startLiar() {
  const mode = {};
  const log = [];
  const sockets = new Set();
  const byDigest = Object.fromEntries(Object.values(BLOBS).map((b) => [b.digest, b]));
  const server = http.createServer((req, res) => {
    log.push(`${req.method} ${req.url}`);
    const m = req.url.match(/^\/v2\/app\/blobs\/(sha256:[0-9a-f]{64})$/);
    const b = m && byDigest[m[1]];
    if (!b) {
      res.writeHead(req.url === "/v2/" ? 200 : 404, { "content-type": "application/json" });
      return res.end("{}");
    }
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": b.bytes.length });
    if (req.method === "HEAD") return res.end();
    switch (mode[b.digest] ?? "good") {
      case "good":
        return res.end(b.bytes);
      case "corrupt": {
        const wrong = Buffer.from(b.bytes);
        wrong[wrong.length - 1] ^= 0xff;
        return res.end(wrong);
      }
      case "short":
        res.write(b.bytes.subarray(0, Math.floor(b.bytes.length * 0.6)));
        return setTimeout(() => res.socket?.destroy(), 300);
    }
  });
  server.on("connection", (s) => { sockets.add(s); s.on("close", () => sockets.delete(s)); });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    mode,
    gets: (digest) => log.filter((l) => l === `GET /v2/app/blobs/${digest}`).length,
    stop: () => { for (const s of sockets) s.destroy(); server.close(); },
  };
}

let liar, door, bucket;

before(async () => {
  liar = await startLiar();
  door = await startDoor({
    bindings: {
      UPSTREAMS: JSON.stringify({ "liar.test": { url: liar.url } }),
      DEFAULT_REGISTRY: "liar.test",
      MULTIPART_THRESHOLD_BYTES: String(THRESHOLD),
      MULTIPART_PART_BYTES: String(PART),
    },
  });
  bucket = await door.mf.getR2Bucket("BLOBS");
});

after(async () => {
  await door?.stop();
  liar?.stop();
});

/** GETs a blob and reads it whole: its status, cache header, and bytes or the read's error. */
async function pull(digest) {
  const res = await fetch(`${door.url}/v2/app/blobs/${digest}`);
  const cache = res.headers.get("x-frontdoor-cache");
  try {
    return { status: res.status, cache, bytes: Buffer.from(await res.arrayBuffer()) };
  } catch (error) {
    return { status: res.status, cache, error };
  }
}

/** Waits (up to 10 s) for a log line `match` accepts. */
async function logged(match, what) {
  for (let i = 0; i < 100; i++) {
    const line = door.requests().find(match);
    if (line) return line;
    await sleep(100);
  }
  assert.fail(`no log line: ${what}\n${door.logs()}`);
}

/** R2's own view of `key`, read from the bucket: the object's size, or null; and the listing. */
async function inR2(key) {
  const head = await bucket.head(key);
  const listed = (await bucket.list({ prefix: key })).objects.map((o) => o.key);
  return { size: head?.size ?? null, listed };
}

/** Waits for the background fill of `b` to land and checks what R2 holds is `b`, byte for byte. */
async function landed(b) {
  for (let i = 0; i < 100 && (await bucket.head(b.key)) === null; i++) await sleep(100);
  const object = await bucket.get(b.key);
  assert.ok(object, `${b.key} stored`);
  const stored = Buffer.from(await object.arrayBuffer());
  assert.equal(stored.length, b.bytes.length);
  assert.equal(sha256(stored), b.digest, "R2 holds the right bytes");
}

test("a good blob above the multipart threshold is stored in parts and then served from R2", async () => {
  const b = BLOBS.multipartGood;
  const got = await pull(b.digest);
  assert.equal(got.error, undefined, String(got.error));
  assert.equal(got.cache, "miss");
  assert.equal(sha256(got.bytes), b.digest);
  await landed(b);
  // R2 writes a multipart object's etag as `<hash>-<parts>`: 11 MiB in 5 MiB parts is three.
  assert.match((await bucket.head(b.key)).etag, /-3$/, "a multipart object");
  const again = await pull(b.digest);
  assert.equal(again.cache, "hit");
  assert.equal(sha256(again.bytes), b.digest);
  assert.equal(liar.gets(b.digest), 1, "the second pull never went upstream");
});

for (const [name, mode, multipart, what] of [
  ["singleCorrupt", "corrupt", false, "one put, right length, wrong bytes"],
  ["singleShort", "short", false, "one put, Content-Length, too few bytes"],
  ["multipartCorrupt", "corrupt", true, "multipart, right length, wrong bytes"],
  ["multipartShort", "short", true, "multipart, Content-Length, too few bytes"],
]) {
  test(`a fill that must not land is refused by R2 or aborted: ${what}`, async (t) => {
    const b = BLOBS[name];
    liar.mode[b.digest] = mode;
    const got = await pull(b.digest);
    assert.equal(got.status, 200, "headers go before the bytes can be checked");
    assert.ok(got.error, `the client's transfer must fail: got ${got.bytes?.length} of ${b.bytes.length} bytes and a clean end`);

    // The pump refused the bytes, and storage's side ended without an object: the single put was
    // rejected by the R2 binding, the multipart upload aborted (its error says "refused" only
    // once `abort()` has succeeded).
    const refused = await logged((l) => l.blob === b.digest && l.refused, `the refusal of ${b.digest}`);
    assert.equal(refused.stored, false, JSON.stringify(refused));
    assert.match(refused.refused, mode === "corrupt" ? /bytes hash to sha256:/ : /broke off/);
    const fill = await logged((l) => l.fill === b.key && l.error, `the failed fill of ${b.key}`);
    t.diagnostic(`storage said: ${fill.error}`);
    assert.equal(fill.multipart === true, multipart, JSON.stringify(fill));
    if (multipart) assert.match(fill.error, /^refused: /, JSON.stringify(fill));
    assert.deepEqual(await inR2(b.key), { size: null, listed: [] }, "nothing in R2");

    // Nothing half-stored stands in the way: the next pull goes upstream again (which now sends
    // the right bytes), succeeds, and is what R2 then holds.
    liar.mode[b.digest] = "good";
    const again = await pull(b.digest);
    assert.equal(again.error, undefined, String(again.error));
    assert.equal(again.cache, "miss");
    assert.equal(sha256(again.bytes), b.digest);
    assert.equal(liar.gets(b.digest), 2, "the second pull went upstream");
    await landed(b);
    assert.equal((await pull(b.digest)).cache, "hit");
    assert.equal(liar.gets(b.digest), 2);
  });
}
