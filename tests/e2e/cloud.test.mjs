// Cloud registries as upstreams, against scripted stand-ins that check what the real services
// check (tests/e2e/lib/cloudsim.mjs): ECR's API recomputes every GetAuthorizationToken signature
// with the AWS SDK's own SigV4 signer, Google's token endpoint verifies the RS256 JWT with Node's
// crypto, and real docker-registries behind a Basic front (ECR) or token auth (GAR) take only
// current minted credentials. Credentials here live 8 s, so a pull every few seconds crosses
// several expiries: minting calls are counted (one per refresh window, however many requests),
// and the refresh-failure, revoked-token and revoked-key paths are exercised. ACR and GHCR use
// the standard token flow with a token server that requires their documented user name forms.
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { buildImage } from "./lib/image.mjs";
import { ROOT, startDoor } from "./lib/door.mjs";
import { startContainerd, writeHostsToml } from "./lib/containerd.mjs";
import { startRegistry } from "./lib/registry.mjs";
import { startTokenIssuer } from "./lib/tokenissuer.mjs";
import { startEcr, startGoogle } from "./lib/cloudsim.mjs";
import { execFileP, freePort, skopeo, tempDir } from "./lib/util.mjs";

const LIFETIME = 8;
const KEY_ID = "AKIAFRONTDOORTEST01";
const SECRET = crypto.randomBytes(30).toString("base64");
const REGION = "eu-west-1";
const EMAIL = "puller@frontdoor-test.iam.gserviceaccount.com";
const { privateKey, publicKey } = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
const PEM = privateKey.export({ type: "pkcs8", format: "pem" });
const ACR_APP_ID = crypto.randomUUID();
const ACR_SECRET = crypto.randomBytes(20).toString("base64url");
const GHCR_PAT = `ghp_${crypto.randomBytes(18).toString("hex")}`;
const PUSHER = ["pusher", crypto.randomBytes(12).toString("hex")];

let tmp, plain, ecr, google, garRegistry, garIssuer, std, stdIssuer, door, image, bindings;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

before(async () => {
  tmp = tempDir("cloud");
  image = buildImage(path.join(tmp.dir, "img"), { layers: 2, bigLayerBytes: 64 << 10 });
  const push = (host, ref, creds) => skopeo(["copy", "--dest-tls-verify=false", ...(creds ? ["--dest-creds", creds.join(":")] : []),
    `oci:${path.join(tmp.dir, "img")}:v1`, `docker://${host}/${ref}`]);

  // ECR: a plain docker-registry behind the scripted Basic front.
  plain = await startRegistry({ dir: path.join(tmp.dir, "ecr") });
  await push(plain.host, "team/app:v1");
  ecr = await startEcr({ keys: { [KEY_ID]: SECRET }, region: REGION, lifetime: LIFETIME, registry: plain.url });

  // GAR: docker-registry with token auth; its token server takes `oauth2accesstoken` and a
  // current access token from the Google stand-in (and a pusher, to set the test up).
  google = await startGoogle({ clientEmail: EMAIL, publicKey, lifetime: LIFETIME });
  const garDir = path.join(tmp.dir, "gar");
  const garPort = await freePort();
  garIssuer = await startTokenIssuer({
    dir: tmpdir(garDir), port: await freePort(), service: "gar.test", ttl: 3,
    authenticate: (user, password) => (user === "oauth2accesstoken" && google.isCurrent(password)) || (user === PUSHER[0] && password === PUSHER[1]),
  });
  garRegistry = await startRegistry({ dir: garDir, port: garPort, expect: 401, extra: tokenAuth(garIssuer) });
  await push(garRegistry.host, "proj/repo/app:v1", PUSHER);

  // ACR and GHCR: fixed credentials in the documented forms, through the standard token flow.
  const stdDir = path.join(tmp.dir, "std");
  const stdPort = await freePort();
  stdIssuer = await startTokenIssuer({
    dir: tmpdir(stdDir), port: await freePort(), service: "std.test",
    authenticate: (user, password) =>
      // ACR: a service principal's appId (a GUID) and its client secret (or a scoped token).
      (/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(user) && user === ACR_APP_ID && password === ACR_SECRET)
      // GHCR: any user name with a personal access token (classic `ghp_…`).
      || (user.length > 0 && /^ghp_[0-9a-f]{36}$/.test(password) && password === GHCR_PAT)
      || (user === PUSHER[0] && password === PUSHER[1]),
  });
  std = await startRegistry({ dir: stdDir, port: stdPort, expect: 401, extra: tokenAuth(stdIssuer) });
  await push(std.host, "acme/app:v1", PUSHER);

  bindings = {
    UPSTREAMS: JSON.stringify({
      "ecr.test": { url: ecr.url, aws: { access_key_id: KEY_ID, secret_access_key_secret: "AWS_SECRET", region: REGION, endpoint: ecr.api } },
      "gar.test": { url: garRegistry.url, google: { service_account_key_secret: "GAR_KEY" } },
      "acr.test": { url: std.url, username: ACR_APP_ID, password_secret: "ACR_SECRET" },
      "ghcr.test": { url: std.url, username: "octo-bot", password_secret: "GHCR_PAT" },
    }),
    DEFAULT_REGISTRY: "ecr.test",
    AWS_SECRET: SECRET,
    GAR_KEY: JSON.stringify({
      type: "service_account", project_id: "frontdoor-test", private_key_id: "k1", private_key: PEM,
      client_email: EMAIL, token_uri: google.tokenUrl,
    }),
    ACR_SECRET,
    GHCR_PAT,
    TAG_TTL_SECONDS: "1",
  };
  door = await startDoor({ bindings, persistDir: path.join(tmp.dir, "door-state"), analytics: true });
});

function tmpdir(d) {
  mkdirSync(d, { recursive: true });
  return d;
}

function tokenAuth(issuer) {
  return `auth:
  token:
    realm: ${issuer.realm}
    service: ${issuer.service}
    issuer: ${issuer.issuer}
    rootcertbundle: ${issuer.cert}
`;
}

after(async () => {
  await door?.stop();
  for (const s of [ecr, google, plain, garRegistry, garIssuer, std, stdIssuer]) await s?.stop();
  tmp?.remove();
});

let pulls = 0;
async function pull(ref, d = door) {
  const dir = path.join(tmp.dir, `pull-${pulls++}`);
  await skopeo(["copy", "--src-tls-verify=false", `docker://${d.host}/${ref}`, `oci:${dir}:x`]);
  for (const digest of [image.manifests[0].config, ...image.manifests[0].layers]) {
    const bytes = readFileSync(path.join(dir, "blobs", "sha256", digest.slice(7)));
    assert.equal(`sha256:${crypto.createHash("sha256").update(bytes).digest("hex")}`, digest);
  }
}

/** Pulls every `gap` ms for `ms` ms; returns how many pulls ran. */
async function pullFor(ref, ms, gap) {
  const end = Date.now() + ms;
  let n = 0;
  while (Date.now() < end) {
    await pull(ref);
    n++;
    await sleep(gap);
  }
  return n;
}

/** Mints never come early: each at least 3/4 of the lifetime (less a second of rounding) after the last. */
function assertWindows(mints) {
  for (let i = 1; i < mints.length; i++) {
    const gap = (mints[i].at - mints[i - 1].at) / 1000;
    assert.ok(gap >= LIFETIME * 0.75 - 1, `mint ${i} came ${gap} s after the one before`);
  }
}

test("the ECR stand-in really checks signatures (smithy's own calls: good, wrong secret, region, service, skew)", async () => {
  const before = ecr.stats.mints.length;
  assert.equal((await ecr.signedCall({ keyId: KEY_ID, secret: SECRET })).status, 200);
  assert.equal(ecr.stats.mints.length, before + 1);
  ecr.revokeTokens();
  const refused = [
    [{ keyId: KEY_ID, secret: "wrong" }, "SignatureDoesNotMatch"],
    [{ keyId: KEY_ID, secret: SECRET, signRegion: "us-east-1" }, "wrong"],
    [{ keyId: KEY_ID, secret: SECRET, service: "s3" }, "wrong"],
    [{ keyId: KEY_ID, secret: SECRET, date: new Date(Date.now() - 10 * 60 * 1000) }, "Signature"],
    [{ keyId: "AKIAUNKNOWN", secret: SECRET }, "UnrecognizedClientException"],
  ];
  for (const [call, kind] of refused) {
    const r = await ecr.signedCall(call);
    assert.notEqual(r.status, 200, JSON.stringify(call));
    assert.ok(r.body.__type.startsWith(kind), `${JSON.stringify(call)}: ${r.body.__type}`);
  }
  ecr.stats.mints.length = 0;
  ecr.stats.refused.length = 0;
});

test("ECR: pulls across several token expiries cost one GetAuthorizationToken per refresh window", async () => {
  const started = Date.now();
  const n = await pullFor("ecr.test/team/app:v1", 3 * LIFETIME * 1000, 1500);
  const elapsed = (Date.now() - started) / 1000;
  const mints = ecr.stats.mints;
  assert.deepEqual(ecr.stats.refused, [], "every call the door signed verified");
  assert.ok(mints.length >= 3, `${mints.length} mints in ${elapsed} s: at least two expiries crossed`);
  assert.ok(mints.length <= Math.ceil(elapsed / (LIFETIME * 0.75)) + 1, `${mints.length} mints in ${elapsed} s`);
  assertWindows(mints);
  assert.ok(ecr.stats.frontOk > mints.length * 3, `${ecr.stats.frontOk} registry requests on ${mints.length} tokens`);
  assert.ok(ecr.stats.s3 >= 2, "layers came from the S3 redirect");
  assert.equal(ecr.stats.s3RefusedAuthorization, 0, "the redirect was followed without Authorization");
  console.log(`ECR: ${n} pulls over ${elapsed.toFixed(1)} s (token lifetime ${LIFETIME} s): ${mints.length} GetAuthorizationToken calls, ${ecr.stats.frontOk} registry requests, ${ecr.stats.frontRefused} refused`);

  const status = await (await fetch(`${door.url}/_frontdoor/status`)).json();
  const c = status.credentials["ecr.test"];
  assert.equal(c.kind, "ecr");
  assert.equal(c.expires_at, mints.at(-1).expiresAt);
  assert.equal(c.failures, 0);
  const page = await (await fetch(`${door.url}/`)).text();
  assert.match(page, /<table id="credentials">.*ecr\.test<\/td><td>ecr<\/td><td>in \d+ s/s);
});

test("ECR: a restarted door finds the persisted credential and mints none", async () => {
  // Right after a mint, so the credential is well inside its window.
  ecr.revokeTokens();
  await pull("ecr.test/team/app:v1");
  const minted = ecr.stats.mints.length;
  await door.stop();
  door = await startDoor({ bindings, persistDir: path.join(tmp.dir, "door-state"), analytics: true });
  await pull("ecr.test/team/app:v1");
  assert.equal(ecr.stats.mints.length, minted, "no new mint after the restart");
});

test("ECR: a failed refresh keeps the valid token and retries with back-off; a revoked token is refreshed once", async () => {
  // Wait until a refresh is due (3/4 of the lifetime) but the token is still good.
  const last = ecr.stats.mints.at(-1);
  await sleep(Math.max(0, last.at + LIFETIME * 800 - Date.now()));
  ecr.state.mode = "fail";
  const calls = ecr.stats.calls;
  await pull("ecr.test/team/app:v1");
  await pull("ecr.test/team/app:v1");
  const tried = ecr.stats.calls - calls;
  assert.ok(tried >= 1 && tried <= 2, `${tried} refresh attempts for two pulls (back-off between them)`);
  assert.ok(door.logs().includes("refreshing ecr credentials for ecr.test failed"), "the log says the refresh failed");
  ecr.state.mode = "ok";
  await sleep(2500); // past the back-off
  const minted = ecr.stats.mints.length;
  await pull("ecr.test/team/app:v1");
  assert.equal(ecr.stats.mints.length, minted + 1, "minted again once the API answers");

  // The registry stops taking the current token: one refresh, one retry, the pull works.
  await sleep(1100); // past the tag's TTL, so the pull asks upstream
  ecr.revokeTokens();
  const refused = ecr.stats.frontRefused;
  await pull("ecr.test/team/app:v1");
  assert.equal(ecr.stats.mints.length, minted + 2, "one refresh for the refused token");
  assert.ok(ecr.stats.frontRefused - refused >= 1);

  // The IAM key is revoked too: the refusal is the answer (with why), and the door does not loop.
  await sleep(1100);
  ecr.revokeTokens();
  ecr.state.mode = "revoked";
  const apiCalls = ecr.stats.calls;
  const r = await fetch(`${door.url}/v2/ecr.test/team/app/manifests/v1`, { headers: { accept: "application/vnd.oci.image.manifest.v1+json" } });
  const body = await r.json();
  assert.equal(r.status, 403, JSON.stringify(body));
  assert.equal(body.errors[0].code, "DENIED");
  assert.match(body.errors[0].message, /UnrecognizedClientException/);
  assert.ok(ecr.stats.calls - apiCalls <= 1, `${ecr.stats.calls - apiCalls} API calls for one refused request`);
  ecr.state.mode = "ok";
});

test("GAR: an RS256 JWT exchanged for access tokens, one per refresh window, across several expiries", async () => {
  const started = Date.now();
  const n = await pullFor("gar.test/proj/repo/app:v1", 3 * LIFETIME * 1000, 1500);
  const elapsed = (Date.now() - started) / 1000;
  const mints = google.stats.mints;
  assert.deepEqual(google.stats.refused, [], "every JWT verified (signature, iss, aud, scope, iat, exp)");
  assert.ok(mints.length >= 3, `${mints.length} token exchanges in ${elapsed} s`);
  assert.ok(mints.length <= Math.ceil(elapsed / (LIFETIME * 0.75)) + 1, `${mints.length} in ${elapsed} s`);
  assertWindows(mints);
  assert.ok(garIssuer.stats.granted > mints.length, `${garIssuer.stats.granted} registry tokens on ${mints.length} access tokens`);
  console.log(`GAR: ${n} pulls over ${elapsed.toFixed(1)} s (access token lifetime ${LIFETIME} s): ${mints.length} token exchanges, ${garIssuer.stats.granted} registry tokens`);
  const status = await (await fetch(`${door.url}/_frontdoor/status`)).json();
  assert.equal(status.credentials["gar.test"].kind, "google");
  assert.equal(status.credentials["gar.test"].expires_at, mints.at(-1).expiresAt);

  // A revoked service account key: no access token, the pull fails, no loop.
  google.state.mode = "revoked";
  google.revokeTokens();
  await sleep(3500); // the registry's own tokens (3 s) expire too
  const calls = google.stats.calls;
  await assert.rejects(pull("gar.test/proj/repo/app:v1"), /denied|invalid_grant/i);
  assert.ok(google.stats.calls - calls <= 2, `${google.stats.calls - calls} token calls for one failed pull`);
  google.state.mode = "ok";
});

test("ACR and GHCR: fixed credentials in their documented forms through the standard token flow", async () => {
  await pull("acr.test/acme/app:v1");
  await pull("ghcr.test/acme/app:v1");
  // The token server refuses other forms: the same secret under another user name fails.
  const bad = await fetch(`${stdIssuer.realm}?service=std.test&scope=repository:acme/app:pull`, {
    headers: { authorization: `Basic ${Buffer.from(`admin:${ACR_SECRET}`).toString("base64")}` },
  });
  assert.equal(bad.status, 401);
});

test("containerd pulls the ECR and GAR images through the door (ns=), digests checked", async () => {
  const { stdout } = await execFileP(path.join(ROOT, "scripts/containerd.sh"));
  const ctrd = await startContainerd({ dir: path.join(tmp.dir, "ctrd"), binDir: stdout.trim().split("\n").pop() });
  try {
    const hostsDir = path.join(tmp.dir, "certs.d");
    for (const r of ["ecr.test", "gar.test"]) writeHostsToml(hostsDir, r, door.url);
    await sleep(1100); // past the tags' TTL: the door asks upstream with the minted credentials
    const [ecrOk, garTokens] = [ecr.stats.frontOk, garIssuer.stats.granted];
    for (const ref of ["ecr.test/team/app:v1", "gar.test/proj/repo/app:v1"]) {
      await ctrd.pull(ref, { hostsDir });
      assert.equal(await ctrd.imageDigest(ref), image.top);
    }
    assert.ok(await ctrd.unpacked(image.manifests[0].config));
    assert.ok(ecr.stats.frontOk > ecrOk, "ECR was asked with the minted token");
    assert.ok(garIssuer.stats.granted > garTokens, "GAR's token server was asked with a minted access token");
  } finally {
    await ctrd.stop();
  }
});

test("no minted token, IAM secret or key appears in the door's log or answers", async () => {
  const logs = door.logs();
  for (const s of [SECRET, PEM.split("\n")[1], ACR_SECRET, GHCR_PAT]) assert.ok(!logs.includes(s));
  const status = await (await fetch(`${door.url}/_frontdoor/status`)).text();
  assert.ok(!status.includes("AWS:") && !status.includes("ya29."), status);
  // Analytics Engine points are in the scanned log too (the recorder logs each one).
  const points = door.requests().filter((l) => l.analytics);
  assert.ok(points.length > 0, "analytics points were written");
  assert.ok(!JSON.stringify(points).includes("ya29.") && !JSON.stringify(points).includes(SECRET));
});
