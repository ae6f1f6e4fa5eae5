// Supply-chain policy at the door, against a real docker-registry and skopeo. Signatures are made
// by an independent signer (tests/e2e/lib/cosign.mjs, Node's crypto, ECDSA P-256) the way cosign
// does: the simple-signing `sha256-<hex>.sig` manifest of its specs/SIGNATURE_SPEC.md, and cosign
// 3's sigstore bundle as an OCI 1.1 referrer, pushed next to the image. VERIFY serves only what a
// trusted key signed; IMMUTABLE_TAGS keeps a tag's first digest; DENY refuses a known-bad digest
// with its reason; every log line and Analytics Engine point names who, what and the decision.
import assert from "node:assert/strict";
import crypto from "node:crypto";
import path from "node:path";
import { after, before, test } from "node:test";
import { attachBundle, keyPair, sign as signWith } from "./lib/cosign.mjs";
import { buildImage } from "./lib/image.mjs";
import { startDoor } from "./lib/door.mjs";
import { startUpstream } from "./lib/registry.mjs";
import { sha256, skopeo, tempDir, waitFor } from "./lib/util.mjs";

const SVC = "svc";
const PW = crypto.randomBytes(12).toString("hex");
const CI_PW = crypto.randomBytes(12).toString("hex");
const ADMIN = crypto.randomBytes(16).toString("hex");
const OCI = "application/vnd.oci.image.manifest.v1+json";
const trusted = keyPair();
const other = keyPair();
const ed = keyPair("ed25519");
// How each refused image's signature is made, and what the refusal must say.
const SPOILED = {
  unsigned: { why: /has no sha256-[0-9a-f]{64}\.sig/ },
  "other-key": { key: other, why: /not made by a trusted key/ },
  "other-digest": { over: sha256("another manifest"), why: /the signature is over sha256:[0-9a-f]{64}, not this manifest/ },
  altered: { alter: true, why: /not made by a trusted key/ },
  corrupted: { corrupt: true, why: /not made by a trusted key/ },
  "wrong-type": { type: "cosign attestation", why: /critical\.type is "cosign attestation"/ },
};
let tmp, upstream, door, images = {};

const sign = (repo, digest, how = {}) => signWith(upstream, SVC, repo, digest, how.key ?? trusted, how);

async function push(repo, opts = {}) {
  const dir = path.join(tmp.dir, repo.replaceAll("/", "-") + (opts.seed ?? ""));
  const image = buildImage(dir, { layers: 1, bigLayerBytes: 4096, ...opts });
  await upstream.push(dir, `${repo}:v1`, { all: !!opts.platforms });
  return image;
}

before(async () => {
  tmp = tempDir("policy");
  upstream = await startUpstream({ dir: tmp.dir, users: { [SVC]: PW } });
  images.signed = await push("team/app");
  await sign("team/app", images.signed.top);
  images.multi = await push("team/multi", {
    platforms: [{ os: "linux", architecture: "amd64" }, { os: "linux", architecture: "arm64" }],
  });
  await sign("team/multi", images.multi.top); // the index only
  for (const [name, how] of Object.entries(SPOILED)) {
    images[name] = await push(`team/${name}`);
    if (name !== "unsigned") await sign(`team/${name}`, images[name].top, how);
  }
  images.ed = await push("team/ed");
  await sign("team/ed", images.ed.top, { key: ed });
  images.bundled = await push("team/bundled");
  await attachBundle(upstream, SVC, "team/bundled", images.bundled.top, trusted);
  images.attested = await push("team/attested");
  await attachBundle(upstream, SVC, "team/attested", images.attested.top, trusted, { predicateType: "https://slsa.dev/provenance/v1" });
  images.frozen = await push("frozen/app");
  images.bad = await push("cve/app");
  door = await startDoor({
    analytics: true,
    bindings: {
      UPSTREAMS: JSON.stringify({ "registry.test": { url: upstream.url, username: SVC, password_secret: "PW" } }),
      DEFAULT_REGISTRY: "registry.test",
      PW,
      TAG_TTL_SECONDS: "1",
      ACCESS: JSON.stringify({ anonymous: ["*"], users: { ci: { password_secret: "CI_PW", pull: ["*"] } } }),
      ACCESS_TOKEN_KEY: crypto.randomBytes(32).toString("hex"),
      CI_PW,
      ADMIN_TOKEN: ADMIN,
      VERIFY: JSON.stringify({ "registry.test/team/*": [trusted.pem, ed.pem] }),
      IMMUTABLE_TAGS: JSON.stringify(["registry.test/frozen/*:v*"]),
      DENY: JSON.stringify({ [images.bad.top]: "CVE-2026-4242: see TICKET-9" }),
    },
  });
});

after(async () => {
  await door?.stop();
  await upstream?.stop();
  tmp?.remove();
});

const pull = (ref, extra = []) => skopeo(["copy", "--src-tls-verify=false", ...extra,
  `docker://${door.host}/${ref}`, `oci:${path.join(tmp.dir, `out-${crypto.randomUUID()}`)}:x`]);
const manifestLines = (digest) => door.requests().filter((l) => l.kind === "manifest" && l.role === "worker" && l.digest === digest);

test("signed by a trusted key: served, and the log line names user, digest and decision", async () => {
  await pull("team/app:v1", ["--src-creds", `ci:${CI_PW}`]);
  await waitFor(() => manifestLines(images.signed.top).some((l) => l.status === 200 && l.user === "ci" && l.decision === "verified by key 1"), 5000, "the log line");
  await waitFor(() => door.requests().some((l) => l.analytics?.blobs?.includes(images.signed.top)
    && l.analytics.blobs.includes("ci") && l.analytics.blobs.includes("verified by key 1")), 5000, "the data point");
});

test("an Ed25519 key (key 2) verifies too", async () => {
  await pull("team/ed:v1");
  await waitFor(() => manifestLines(images.ed.top).some((l) => l.status === 200 && l.decision === "verified by key 2"), 5000, "the log line");
});

test("a sigstore bundle referrer (cosign 3's default) by a trusted key: served; an attestation is no signature", async () => {
  await pull("team/bundled:v1");
  await waitFor(() => manifestLines(images.bundled.top).some((l) => l.status === 200 && l.decision === "verified by key 1"), 5000, "the log line");
  const r = await fetch(`${door.url}/v2/team/attested/manifests/v1`, { headers: { accept: OCI } });
  assert.equal(r.status, 403);
  assert.match((await r.json()).errors[0].message, /bundle 1: an attestation \(https:\/\/slsa\.dev\/provenance\/v1\), not a signature/);
});

test("a warm signed pull costs no upstream request, verification included", async () => {
  upstream.resetCounts();
  await pull(`team/app@${images.signed.top}`);
  assert.deepEqual(upstream.counts, {});
});

test("an index signed: every platform pulls, covered by the index's signature", async () => {
  await pull("team/multi:v1", ["--all"]);
  for (const m of images.multi.manifests) {
    await waitFor(() => manifestLines(m.digest).some((l) => l.status === 200 && l.decision === "verified by key 1 (via its index)"), 5000, m.digest);
  }
});

for (const [name, { why }] of Object.entries(SPOILED)) {
  test(`${name}: 403 DENIED saying what is missing`, async () => {
    await assert.rejects(pull(`team/${name}:v1`), /denied|403|no signature/i);
    const r = await fetch(`${door.url}/v2/team/${name}/manifests/v1`, { headers: { accept: OCI } });
    assert.equal(r.status, 403);
    const [e] = (await r.json()).errors;
    assert.equal(e.code, "DENIED");
    assert.ok(e.message.startsWith(`no signature by a trusted key for registry.test/team/${name}@${images[name].top}: `), e.message);
    assert.match(e.message, why);
    assert.match(e.message, /cosign sign --key cosign\.key/);
    await waitFor(() => manifestLines(images[name].top).some((l) => l.status === 403 && l.user === "anonymous" && l.decision.startsWith("denied: no signature")), 5000, "the log line");
  });
}

test("DENY: a known-bad digest is refused with its reason", async () => {
  await assert.rejects(pull("cve/app:v1"), /CVE-2026-4242/);
  const r = await fetch(`${door.url}/v2/cve/app/manifests/${images.bad.top}`, { headers: { "cf-connecting-ip": "203.0.113.9" } });
  assert.equal(r.status, 403);
  assert.equal((await r.json()).errors[0].message, `registry.test/cve/app@${images.bad.top} is refused by this mirror: CVE-2026-4242: see TICKET-9`);
  await waitFor(() => door.requests().some((l) => l.decision?.includes("CVE-2026-4242") && l.user === "anonymous"
    && l.client_ip === "203.0.113.9" && l.digest === images.bad.top && l.reference === images.bad.top), 5000, "the log line");
});

test("IMMUTABLE_TAGS: upstream moves the tag, the door keeps the first digest and shows the move", async () => {
  await pull("frozen/app:v1");
  const moved = await push("frozen/app", { seed: "moved" });
  assert.notEqual(moved.top, images.frozen.top);
  await new Promise((r) => setTimeout(r, 1500)); // past TAG_TTL_SECONDS
  const r = await fetch(`${door.url}/v2/frozen/app/manifests/v1`, { headers: { accept: OCI } });
  assert.equal(r.status, 200);
  assert.equal(r.headers.get("docker-content-digest"), images.frozen.top);
  assert.equal(r.headers.get("x-frontdoor-policy"), "immutable");
  await pull("frozen/app:v1");
  assert.match(door.logs(), new RegExp(`frozen/app:v1 moved upstream to ${moved.top}; the door keeps serving ${images.frozen.top}`));
  const ci = { authorization: `Basic ${Buffer.from(`ci:${CI_PW}`).toString("base64")}` };
  const resolved = await (await fetch(`${door.url}/_frontdoor/resolve?image=frozen/app:v1`, { headers: ci })).json();
  assert.deepEqual(resolved.images[0], { image: "frozen/app:v1", pinned: `registry.test/frozen/app:v1@${images.frozen.top}`, policy: "immutable" });
  // The counters reach the status hub with the first request after the flush interval (2 s).
  await new Promise((r) => setTimeout(r, 2100));
  await fetch(`${door.url}/v2/`);
  await new Promise((r) => setTimeout(r, 500));
  const status = await (await fetch(`${door.url}/_frontdoor/status`, { headers: { authorization: `Bearer ${ADMIN}` } })).json();
  assert.deepEqual(status.tag_moves.map((m) => [m.image, m.kept, m.upstream]),
    [["registry.test/frozen/app:v1", images.frozen.top, moved.top]]);
  assert.ok(status.registries["registry.test"].policy_refusals >= Object.keys(SPOILED).length);
});
