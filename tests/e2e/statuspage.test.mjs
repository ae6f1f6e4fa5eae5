// Observability. The status page at `/`, read by a real browser: after some pulls (hits and misses) and an error,
// headless Chromium (Debian's package) renders the page; its DOM shows the hit ratio, bytes from
// cache and upstream, the quota column, the most pulled image and the last error, and a screenshot
// is written to test-output/status-page.png.
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { mkdirSync, statSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { buildImage } from "./lib/image.mjs";
import { ROOT, startDoor } from "./lib/door.mjs";
import { startUpstream } from "./lib/registry.mjs";
import { execFileP, skopeo, tempDir } from "./lib/util.mjs";

const SVC = "svc";
const PW = crypto.randomBytes(12).toString("hex");
let tmp, upstream, door;

before(async () => {
  tmp = tempDir("statuspage");
  upstream = await startUpstream({ dir: tmp.dir, users: { [SVC]: PW } });
  buildImage(path.join(tmp.dir, "img"), { layers: 2, bigLayerBytes: 256 << 10 });
  await upstream.push(path.join(tmp.dir, "img"), `team/web:v1`);
  door = await startDoor({
    bindings: {
      UPSTREAMS: JSON.stringify({ "registry.test": { url: upstream.url, username: SVC, password_secret: "PW" } }),
      DEFAULT_REGISTRY: "registry.test",
      PW,
    },
    analytics: true,
  });
  for (const n of [1, 2]) {
    await skopeo(["copy", "--src-tls-verify=false", `docker://${door.host}/team/web:v1`, `oci:${path.join(tmp.dir, `out${n}`)}:x`]);
  }
  await fetch(`${door.url}/v2/team/web/manifests/no-such-tag`).then((r) => r.arrayBuffer());
});

after(async () => {
  await door?.stop();
  await upstream?.stop();
  tmp?.remove();
});

function chromium(args) {
  return execFileP("chromium", [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
    `--user-data-dir=${path.join(tmp.dir, "chromium")}`, "--window-size=1200,900", ...args,
  ], { maxBuffer: 16 << 20 });
}

test("headless Chromium renders the status page with the door's numbers", async (t) => {
  const { stdout: dom, stderr } = await chromium(["--enable-logging=stderr", "--v=0", "--dump-dom", `${door.url}/`]);
  // The page's policy lets its own stylesheet apply (by hash) and nothing else: Chromium logs every
  // blocked action to the console.
  const blocked = stderr.split("\n").filter((l) => /Content Security Policy/.test(l));
  assert.deepEqual(blocked, [], "nothing on the page is blocked by its own policy");
  assert.match(dom, /<div class="big" id="hit-ratio">\d+\.\d%<\/div>/);
  assert.match(dom, /from upstream/);
  assert.match(dom, /<td>registry\.test<\/td><td>not reported<\/td>/, "quota column");
  assert.match(dom, /registry\.test\/team\/web<\/td><td class="num">\d+/, "top image");
  const errors = [...dom.matchAll(/<td>404<\/td><td>manifest registry\.test\/team\/web/g)];
  assert.equal(errors.length, 1, "the one failed request, counted once");
  const out = path.join(ROOT, "test-output");
  mkdirSync(out, { recursive: true });
  const png = path.join(out, "status-page.png");
  await chromium([`--screenshot=${png}`, `${door.url}/`]);
  assert.ok(statSync(png).size > 10_000, "a real screenshot");
  t.diagnostic(`status page screenshot: ${png}`);
});

test("the status page and JSON say nosniff; the page sends a policy that runs nothing", async () => {
  const page = await fetch(`${door.url}/`);
  await page.text();
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-type"), /^text\/html/);
  assert.equal(page.headers.get("x-content-type-options"), "nosniff");
  const csp = page.headers.get("content-security-policy");
  assert.match(csp, /^default-src 'none'; style-src 'sha256-[A-Za-z0-9+/]+=*'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'$/);
  const json = await fetch(`${door.url}/_frontdoor/status`);
  assert.equal(json.headers.get("content-type"), "application/json");
  assert.equal(json.headers.get("x-content-type-options"), "nosniff");
  assert.equal(json.headers.get("cache-control"), "no-store");
  assert.ok((await json.json()).registries["registry.test"]);
});

test("every request writes one log line and, with an ANALYTICS binding, one Analytics Engine data point", async () => {
  const lines = door.requests();
  const requests = lines.filter((l) => l.role);
  const points = lines.filter((l) => l.analytics).map((l) => l.analytics);
  assert.ok(requests.length >= 6, `${requests.length} requests`);
  assert.equal(points.length, requests.length, "one point per request log line");
  for (const p of points) {
    assert.equal(p.indexes.length, 1);
    assert.equal(p.blobs.length, 11); // 7–11: the audit trail (user, client IP, reference, digest, decision)
    assert.equal(p.doubles.length, 5);
  }
  const hit = points.find((p) => p.blobs[2] === "blob" && p.blobs[3] === "hit");
  assert.ok(hit, "a blob hit");
  assert.deepEqual([hit.indexes[0], hit.blobs[0], hit.blobs[1]], ["registry.test", "registry.test", "team/web"]);
  assert.equal(hit.doubles[0], 200);
  // The audit trail: an anonymous pull of that blob, by digest, and the policy's word on it.
  assert.equal(hit.blobs[6], "anonymous");
  assert.match(hit.blobs[8], /^sha256:[0-9a-f]{64}$/);
  assert.equal(hit.blobs[9], hit.blobs[8]);
  assert.ok(hit.blobs[10].length > 0, "a decision");
  assert.ok(hit.doubles[1] > 0, "bytes");
  const miss = points.find((p) => p.blobs[2] === "manifest" && p.blobs[3] === "miss" && p.doubles[0] === 404);
  assert.ok(miss && miss.doubles[2] >= 1, "the 404 miss went upstream");
  assert.ok(!JSON.stringify(points).includes(PW), "no credential in a data point");
  // The log line says the same things.
  const line = requests.find((l) => l.kind === "blob" && l.cache === "hit");
  for (const field of ["registry", "repository", "kind", "cache", "status", "bytes", "upstream_calls", "ms"]) {
    assert.ok(field in line, `log line field ${field}: ${JSON.stringify(line)}`);
  }
  assert.equal(line.bytes, hit.doubles[1]);
});
