// The Docker Hub simulator itself, against a real docker-registry behind token auth: pull quota and
// its headers, the 429, the free requests, the fault modes, and the optional realm proxy.
import assert from "node:assert/strict";
import crypto from "node:crypto";
import http from "node:http";
import path from "node:path";
import { after, before, test } from "node:test";
import { buildImage } from "./lib/image.mjs";
import { startHubSim } from "./lib/hubsim.mjs";
import { startUpstream } from "./lib/registry.mjs";
import { MANIFEST_ACCEPT, sha256, skopeo, tempDir } from "./lib/util.mjs";

const SVC = "svc";
const PW = crypto.randomBytes(12).toString("hex");
const REPO = "private/hubsim";

let tmp, upstream, hub, image, token;

before(async () => {
  tmp = tempDir("hubsim");
  upstream = await startUpstream({ dir: tmp.dir, users: { [SVC]: PW } });
  image = buildImage(path.join(tmp.dir, "image"), { layers: 2, bigLayerBytes: 64 << 10 });
  await upstream.push(path.join(tmp.dir, "image"), `${REPO}:v1`);
  hub = await startHubSim({ targetUrl: upstream.url, limit: 3, window: 21600, realmUrl: upstream.issuer.realm });
  token = await upstream.issuer.token(SVC, `repository:${REPO}:pull`);
});

after(async () => {
  await hub?.stop();
  await upstream?.stop();
  tmp?.remove();
});

const auth = () => ({ authorization: `Bearer ${token}`, accept: MANIFEST_ACCEPT });
const manifest = (method = "GET", headers = auth(), signal) =>
  fetch(`${hub.url}/v2/${REPO}/manifests/v1`, { method, headers, signal });
const remaining = (r) => r.headers.get("ratelimit-remaining");

test("manifest GETs count against the quota; HEADs and blobs are free; 401 passes through", async () => {
  hub.state.reset();
  upstream.resetCounts();

  const challenge = await fetch(`${hub.url}/v2/${REPO}/manifests/v1`);
  assert.equal(challenge.status, 401);
  await challenge.arrayBuffer();
  const wwwAuth = challenge.headers.get("www-authenticate");
  assert.match(wwwAuth, /^Bearer /);
  assert.ok(wwwAuth.includes(`realm="${hub.authUrl}/token"`), `realm rewritten to the realm proxy: ${wwwAuth}`);
  assert.match(wwwAuth, /scope="repository:private\/hubsim:pull"/);

  const get = await manifest();
  assert.equal(get.status, 200);
  assert.equal(get.headers.get("docker-content-digest"), image.top);
  assert.equal(get.headers.get("ratelimit-limit"), "3;w=21600");
  assert.equal(remaining(get), "2;w=21600");
  assert.equal(get.headers.get("docker-ratelimit-source"), "127.0.0.1");
  assert.equal(JSON.parse(Buffer.from(await get.arrayBuffer())).layers.length, 2);

  for (let i = 0; i < 3; i++) {
    const head = await manifest("HEAD");
    assert.equal(head.status, 200);
    assert.equal(remaining(head), "2;w=21600", "HEAD is free");
  }
  for (const digest of [...image.manifests[0].layers, image.manifests[0].config]) {
    const blob = await fetch(`${hub.url}/v2/${REPO}/blobs/${digest}`, { headers: auth() });
    assert.equal(blob.status, 200);
    const bytes = Buffer.from(await blob.arrayBuffer());
    assert.equal(sha256(bytes), digest, "streamed unchanged");
    assert.equal(blob.headers.get("ratelimit-remaining"), null, "blob answers carry no quota headers");
  }
  const blobHead = await fetch(`${hub.url}/v2/${REPO}/blobs/${image.manifests[0].config}`, { method: "HEAD", headers: auth() });
  assert.equal(blobHead.status, 200);

  assert.equal(hub.state.remaining(), 2);
  assert.deepEqual(
    { ...hub.state.counts },
    { pulls: 1, manifestGets: 2, manifestHeads: 3, blobGets: 3, blobHeads: 1, pings: 0, other: 0, tooMany: 0, challenges: 1, faults: 0, tokenRequests: 0 },
  );
  assert.equal(upstream.counts["GET manifests"], 2, "both GETs reached the registry");
});

test("every Accept line reaches the registry unchanged", async () => {
  hub.state.reset();
  // Raw requests, so the two Accept values travel as two header lines (fetch would join them).
  const get = (accepts) => new Promise((resolve, reject) => {
    // (An array of headers gets no automatic Host.)
    const headers = [["host", new URL(hub.url).host], ["authorization", `Bearer ${token}`], ...accepts.map((a) => ["accept", a])].flat();
    const req = http.request(`${hub.url}/v2/${REPO}/manifests/v1`, { headers }, (res) => {
      res.resume();
      res.on("end", () => resolve({ status: res.statusCode, type: res.headers["content-type"] }));
    });
    req.on("error", reject);
    req.end();
  });
  const docker = "application/vnd.docker.distribution.manifest.v2+json";
  const oci = "application/vnd.oci.image.manifest.v1+json";
  const alone = await get([docker]);
  assert.notEqual(alone.status, 200, "the OCI manifest is refused to a client accepting only Docker's type");
  const both = await get([docker, oci]);
  assert.equal(both.status, 200, "so the second Accept line reached the registry");
  assert.equal(both.type, oci);
});

test("the quota-th+1 manifest GET is a 429 TOOMANYREQUESTS with retry-after, not forwarded", async () => {
  hub.state.reset();
  for (const left of ["2", "1", "0"]) {
    const r = await manifest();
    assert.equal(r.status, 200);
    assert.equal(remaining(r), `${left};w=21600`);
    await r.arrayBuffer();
  }
  upstream.resetCounts();
  const limited = await manifest();
  assert.equal(limited.status, 429);
  assert.equal(limited.headers.get("content-type"), "application/json");
  const retryAfter = Number(limited.headers.get("retry-after"));
  assert.ok(retryAfter > 21000 && retryAfter <= 21600, `retry-after ${retryAfter}`);
  assert.equal(remaining(limited), "0;w=21600");
  assert.equal(limited.headers.get("ratelimit-limit"), "3;w=21600");
  const body = await limited.json();
  assert.equal(body.errors[0].code, "TOOMANYREQUESTS");
  assert.match(body.errors[0].message, /pull rate limit/);
  assert.equal(upstream.counts["GET manifests"] ?? 0, 0, "the 429 was not forwarded");

  const head = await manifest("HEAD");
  assert.equal(head.status, 200, "HEAD still answers (free)");
  assert.equal(remaining(head), "0;w=21600");
  const blob = await fetch(`${hub.url}/v2/${REPO}/blobs/${image.manifests[0].config}`, { headers: auth() });
  assert.equal(blob.status, 200, "blobs still answer (free)");
  await blob.arrayBuffer();
  assert.equal(hub.state.counts.tooMany, 1);
  assert.equal(hub.state.counts.pulls, 3);

  hub.state.reset();
  const again = await manifest();
  assert.equal(again.status, 200, "reset restores the quota");
  assert.equal(remaining(again), "2;w=21600");
  await again.arrayBuffer();
});

test("a sliding window: pulls older than the window no longer count", async () => {
  hub.state.reset();
  hub.state.window = 1;
  try {
    for (let i = 0; i < 3; i++) await (await manifest()).arrayBuffer();
    const limited = await manifest();
    assert.equal(limited.status, 429);
    assert.equal(limited.headers.get("retry-after"), "1");
    await limited.arrayBuffer();
    await new Promise((r) => setTimeout(r, 1050));
    const later = await manifest();
    assert.equal(later.status, 200);
    assert.equal(remaining(later), "2;w=1");
    await later.arrayBuffer();
  } finally {
    hub.state.window = 21600;
  }
});

test("mode 5xx answers 503 with an HTML page, for every request", async () => {
  hub.state.reset();
  hub.state.mode = "5xx";
  try {
    for (const p of ["/v2/", `/v2/${REPO}/manifests/v1`, `/v2/${REPO}/blobs/${image.manifests[0].config}`]) {
      const r = await fetch(`${hub.url}${p}`, { headers: auth() });
      assert.equal(r.status, 503, p);
      assert.equal(r.headers.get("content-type"), "text/html");
      assert.match(await r.text(), /503 Service Temporarily Unavailable/);
    }
    const token = await fetch(`${hub.authUrl}/token?service=x&scope=repository:${REPO}:pull`);
    assert.equal(token.status, 503, "the proxied realm fails too");
    await token.arrayBuffer();
    assert.equal(hub.state.counts.faults, 4);
    assert.equal(hub.state.counts.pulls, 0);
  } finally {
    hub.state.mode = "ok";
  }
});

test("authMode fails only the realm; the realm proxy hands out working tokens otherwise", async () => {
  hub.state.reset();
  hub.state.authMode = "5xx";
  try {
    const bad = await fetch(`${hub.authUrl}/token?service=x&scope=repository:${REPO}:pull`);
    assert.equal(bad.status, 503);
    await bad.arrayBuffer();
    const r = await manifest();
    assert.equal(r.status, 200, "the registry itself still answers");
    await r.arrayBuffer();
  } finally {
    hub.state.authMode = null;
  }
  const challenge = (await fetch(`${hub.url}/v2/${REPO}/manifests/v1`)).headers.get("www-authenticate");
  const params = Object.fromEntries([...challenge.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
  const url = `${params.realm}?service=${encodeURIComponent(params.service)}&scope=${encodeURIComponent(params.scope)}`;
  const t = await (await fetch(url, { headers: { authorization: `Basic ${Buffer.from(`${SVC}:${PW}`).toString("base64")}` } })).json();
  const r = await manifest("GET", { authorization: `Bearer ${t.token}`, accept: MANIFEST_ACCEPT });
  assert.equal(r.status, 200);
  await r.arrayBuffer();
  assert.equal(hub.state.counts.tokenRequests, 1);
});

test("mode reset destroys the connection", async () => {
  hub.state.reset();
  hub.state.mode = "reset";
  try {
    await assert.rejects(manifest(), (e) => e instanceof TypeError && /fetch failed/.test(e.message));
    assert.equal(hub.state.counts.faults, 1);
  } finally {
    hub.state.mode = "ok";
  }
  const r = await manifest();
  assert.equal(r.status, 200, "back to normal");
  await r.arrayBuffer();
});

test("mode timeout accepts the request and never answers", async () => {
  hub.state.reset();
  hub.state.mode = "timeout";
  try {
    const started = Date.now();
    await assert.rejects(manifest("GET", auth(), AbortSignal.timeout(300)), (e) => e.name === "TimeoutError");
    assert.ok(Date.now() - started >= 290);
    assert.equal(hub.state.counts.faults, 1);
    assert.equal(hub.state.counts.pulls, 0);
  } finally {
    hub.state.mode = "ok";
  }
  const r = await manifest();
  assert.equal(r.status, 200);
  await r.arrayBuffer();
});
