// Retention through the cron trigger (Miniflare's scheduled event, real KV and R2): what nobody
// has pulled for RETENTION_DAYS is deleted in bounded steps that resume, a pull marks what it
// reads, and a pinned image is never deleted.
import assert from "node:assert/strict";
import crypto from "node:crypto";
import path from "node:path";
import { after, before, test } from "node:test";
import { buildImage } from "./lib/image.mjs";
import { startDoor } from "./lib/door.mjs";
import { startUpstream } from "./lib/registry.mjs";
import { MANIFEST_ACCEPT, sha256, tempDir, waitFor } from "./lib/util.mjs";

const SVC = "svc";
const PW = crypto.randomBytes(12).toString("hex");
const BATCH = 5;
const DAY_MS = 86_400_000;
const REPOS = ["team/pinned", "team/old", "team/fresh"];
let tmp, upstream, door;
const images = {};

before(async () => {
  tmp = tempDir("retention");
  upstream = await startUpstream({ dir: tmp.dir, users: { [SVC]: PW } });
  for (const repo of REPOS) {
    const layout = path.join(tmp.dir, repo.replace("/", "-"));
    images[repo] = buildImage(layout, { layers: 2, bigLayerBytes: 64 << 10 });
    await upstream.push(layout, `${repo}:v1`);
  }
  door = await startDoor({
    bindings: {
      UPSTREAMS: JSON.stringify({ "registry.test": { url: upstream.url, username: SVC, password_secret: "PW" } }),
      DEFAULT_REGISTRY: "registry.test",
      PW,
      PINS: JSON.stringify({ "registry.test/team/pinned:v1": images["team/pinned"].top }),
      RETENTION_BATCH: String(BATCH),
    },
  });
});

after(async () => {
  await door?.stop();
  await upstream?.stop();
  tmp?.remove();
});

const blobsOf = (repo) => images[repo].manifests.flatMap((m) => [m.config, ...m.layers]);

/** A client pull through the door: the tag, then every blob, each checked. */
async function pull(repo) {
  const r = await fetch(`${door.url}/v2/${repo}/manifests/v1`, { headers: { accept: MANIFEST_ACCEPT } });
  assert.equal(r.status, 200, `${repo}: ${r.status}`);
  await r.arrayBuffer();
  for (const digest of blobsOf(repo)) {
    const b = await fetch(`${door.url}/v2/${repo}/blobs/${digest}`);
    assert.equal(b.status, 200);
    assert.equal(sha256(Buffer.from(await b.arrayBuffer())), digest);
  }
}

/** Every `v1/` key of the cache with its last-read day, read straight from KV. */
async function records() {
  const kv = await door.mf.getKVNamespace("CACHE");
  const out = new Map();
  let cursor;
  do {
    const page = await kv.list({ prefix: "v1/", cursor });
    for (const k of page.keys) out.set(k.name, k.metadata?.read);
    cursor = page.list_complete ? undefined : page.cursor;
  } while (cursor);
  return out;
}

/** The keys that belong to `repo`'s image: its tag, manifest and links, and its blobs' marks. */
function keysOf(repo, keys) {
  const marks = new Set(blobsOf(repo).map((d) => `v1/blobs/sha256/${d.slice(7)}`));
  return [...keys].filter((k) => k.includes(`/${repo}/`) || marks.has(k));
}

/** Sets the last-read day of `keys`, as if they had last been read on `day`. */
async function backdate(keys, day) {
  const kv = await door.mf.getKVNamespace("CACHE");
  for (const key of keys) {
    const value = await kv.get(key, "arrayBuffer");
    await kv.put(key, value, { metadata: { read: day } });
  }
}

/** Runs the cron trigger (at `time`, default now) until the sweep finishes a pass; returns each run's report. */
async function sweep(time) {
  const reports = () => door.requests().filter((l) => l.retention).map((l) => l.retention);
  const seen = reports().length;
  for (let run = 1; run <= 50; run++) {
    await door.scheduled(time);
    await waitFor(() => reports().length >= seen + run, 10000, "the retention log line");
    if (reports().at(-1).pass_complete) return reports().slice(seen);
  }
  throw new Error("the sweep never finished a pass");
}

test("a sweep deletes what was not read for RETENTION_DAYS, in bounded runs, and never a pin", async () => {
  for (const repo of REPOS) await pull(repo);
  const all = REPOS.flatMap(blobsOf);
  await waitFor(async () => (await Promise.all(all.map(door.stored))).every(Boolean), 15000, "the fills");
  const today = Math.floor(Date.now() / DAY_MS);
  let keys = await records();
  assert.ok([...keys.values()].every((day) => day === today), "everything written today is marked today");
  for (const repo of REPOS) assert.ok(keysOf(repo, keys.keys()).length >= 4, repo);

  // All three were last read 40 days ago; then a node pulls team/fresh, which marks it again.
  await backdate(REPOS.flatMap((repo) => keysOf(repo, keys.keys())), today - 40);
  await pull("team/fresh");
  keys = await records();
  assert.ok(keysOf("team/fresh", keys.keys()).every((k) => keys.get(k) === today), "a pull marks what it read");
  assert.ok(keysOf("team/old", keys.keys()).every((k) => keys.get(k) === today - 40));

  const reports = await sweep();
  assert.ok(reports.length > 1, "more keys than one run looks at");
  assert.ok(reports.every((r) => r.examined <= BATCH && r.errors.length === 0), JSON.stringify(reports));
  assert.equal(reports.reduce((n, r) => n + r.examined, 0), keys.size, "each run resumed where the last stopped");
  const sum = (f) => reports.reduce((n, r) => n + r[f], 0);
  assert.equal(sum("blobs_deleted"), blobsOf("team/old").length);
  assert.equal(sum("kept_pinned"), keysOf("team/pinned", keys.keys()).length);

  const left = await records();
  assert.equal(keysOf("team/old", left.keys()).length, 0, "old's records are gone");
  for (const d of blobsOf("team/old")) assert.equal(await door.stored(d), false, `${d} deleted from R2`);
  for (const repo of ["team/pinned", "team/fresh"]) {
    assert.deepEqual(keysOf(repo, left.keys()), keysOf(repo, keys.keys()), repo);
    for (const d of blobsOf(repo)) assert.ok(await door.stored(d), `${repo} ${d} kept`);
  }

  // The next pull of the deleted image fetches it again; the pinned one costs nothing upstream.
  upstream.resetCounts();
  await pull("team/pinned");
  assert.equal(upstream.counts["GET blobs"] ?? 0, 0, JSON.stringify(upstream.counts));
  await pull("team/old");
  assert.equal(upstream.counts["GET blobs"], blobsOf("team/old").length, JSON.stringify(upstream.counts));
});

test("a sweep soon after a pull deletes nothing", async () => {
  // A pass scheduled 30 days from now: nothing has gone unread for *more* than RETENTION_DAYS.
  const before = await records();
  const reports = await sweep(Date.now() + 30 * DAY_MS);
  assert.equal(reports.reduce((n, r) => n + r.examined, 0), before.size);
  assert.ok(reports.every((r) => r.deleted === 0), JSON.stringify(reports));
  assert.deepEqual([...(await records()).keys()], [...before.keys()]);
});
