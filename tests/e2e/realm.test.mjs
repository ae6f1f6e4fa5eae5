// Where the service account's credentials go, against a scripted hostile upstream that records
// every Authorization it receives (lib/realmsink.mjs): a token realm on another host gets an
// anonymous token request, a redirect target's challenge is not answered, and only a host listed in
// `auth_hosts` gets the credentials. Also: a configuration error repeats no password (item 8), and
// with PUBLIC_URL the door's challenges name it whatever Host a client sends (item 12).
import assert from "node:assert/strict";
import crypto from "node:crypto";
import http from "node:http";
import { after, before, test } from "node:test";
import { startDoor } from "./lib/door.mjs";
import { startRealmSink } from "./lib/realmsink.mjs";
import { MANIFEST_ACCEPT } from "./lib/util.mjs";

const SVC = "svc";
const PW = crypto.randomBytes(12).toString("hex");
const CREDS = `${SVC}:${PW}`;
const PUBLIC_URL = "https://door.example.com";
let sink, door;

before(async () => {
  sink = await startRealmSink({
    scenarios: {
      other: { realmHost: "localhost" }, // a realm on another host
      redirect: { realmHost: "127.0.0.1", redirect: true }, // the upstream's own host, but named by a redirect target
      listed: { realmHost: "localhost" }, // another host, listed in auth_hosts
      own: { realmHost: "127.0.0.1" }, // the upstream's own host (another port would do too)
    },
    mustNotReceive: ["other", "redirect"],
  });
  const upstream = (scenario, extra = {}) => ({ url: sink.url(scenario), username: SVC, password_secret: "PW", ...extra });
  door = await startDoor({
    bindings: {
      UPSTREAMS: JSON.stringify({
        "other.test": upstream("other"),
        "redirect.test": upstream("redirect"),
        "listed.test": upstream("listed", { auth_hosts: ["localhost"] }),
        "own.test": upstream("own"),
      }),
      DEFAULT_REGISTRY: "own.test",
      PW,
      // Anonymous clients may pull everything; `/v2/` still challenges them (where the realm shows).
      ACCESS: JSON.stringify({ anonymous: ["*"] }),
      ACCESS_TOKEN_KEY: crypto.randomBytes(32).toString("hex"),
      PUBLIC_URL,
    },
  });
});

after(async () => {
  await door?.stop();
  await sink?.stop();
});

const pull = (registry) =>
  fetch(`${door.url}/v2/${registry}/team/app/manifests/v1`, { headers: { accept: MANIFEST_ACCEPT } });
const withCreds = (entries) => entries.filter((e) => e.basic !== null);

test("a token realm on another host is asked anonymously, and the log says why", async () => {
  const r = await pull("other.test");
  assert.equal(r.status, 200, await r.text());
  const tokenRequests = sink.received("other").filter((e) => e.path.startsWith("/token/"));
  assert.equal(tokenRequests.length, 1, JSON.stringify(sink.received("other")));
  assert.equal(tokenRequests[0].host, `localhost:${sink.port}`);
  assert.equal(tokenRequests[0].authorization, null);
  assert.deepEqual(withCreds(sink.received("other")), [], "0 service-account credentials arrived");
  // The note is on the line of whoever fetched (the coalescing owner, or the worker).
  const notes = door.requests().filter((l) => l.registry === "other.test").flatMap((l) => l.notes ?? []);
  assert.ok(notes.some((n) => n.startsWith("token realm localhost asked anonymously")), door.logs());
  assert.ok(!door.logs().includes(PW));
});

test("a redirect target's challenge is never answered with credentials, nor remembered", async () => {
  for (let round = 0; round < 2; round++) {
    const r = await pull("redirect.test");
    const body = await r.text();
    assert.equal(r.status, 403, body);
    assert.match(body, /DENIED/);
    assert.ok(!body.includes(PW));
  }
  const got = sink.received("redirect");
  assert.equal(got.filter((e) => e.path.startsWith("/cdn/")).length, 2, JSON.stringify(got));
  assert.deepEqual(got.filter((e) => e.path.startsWith("/token/")), [], "the realm it named was never asked");
  assert.deepEqual(withCreds(got), [], "0 service-account credentials arrived");
  assert.ok(got.every((e) => e.authorization === null), JSON.stringify(got));
  const notes = door.requests().filter((l) => l.registry === "redirect.test").flatMap((l) => l.notes ?? []);
  assert.ok(notes.includes("a 401 from localhost, reached by a redirect, was not answered"), door.logs());
});

test("a host listed in auth_hosts gets the credentials; so does the upstream's own host", async () => {
  for (const scenario of ["listed", "own"]) {
    const r = await pull(`${scenario}.test`);
    assert.equal(r.status, 200, await r.text());
    const arrived = withCreds(sink.received(scenario));
    assert.equal(arrived.length, 1, JSON.stringify(sink.received(scenario)));
    assert.equal(arrived[0].basic, CREDS);
    assert.ok(arrived[0].path.startsWith(`/token/${scenario}?`), arrived[0].path);
  }
});

/** GET with a Host header of our choosing (fetch will not forge one). */
function getWithHost(url, host) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: { host } }, (res) => {
      res.resume();
      res.on("end", () => resolve(res));
    });
    req.on("error", reject);
  });
}

test("with PUBLIC_URL the challenge names the door, whatever Host the client sent", async () => {
  for (const host of ["evil.example", new URL(door.url).host]) {
    const res = await getWithHost(`${door.url}/v2/`, host);
    assert.equal(res.statusCode, 401);
    assert.equal(res.headers["www-authenticate"], `Bearer realm="${PUBLIC_URL}/token",service="door.example.com"`);
  }
});

test("a URL with a password in UPSTREAMS or R2_S3_ENDPOINT is refused without repeating it", async () => {
  const secret = crypto.randomBytes(12).toString("hex");
  const settings = [
    { UPSTREAMS: JSON.stringify({ "registry.test": { url: `http://svc:${secret}@127.0.0.1:9` } }), DEFAULT_REGISTRY: "registry.test" },
    { UPSTREAMS: JSON.stringify({ "registry.test": { url: "http://127.0.0.1:9", fallback: [{ url: `https://svc:${secret}@mirror.example` }] } }), DEFAULT_REGISTRY: "registry.test" },
    { BLOB_REDIRECT: "s3", R2_S3_ENDPOINT: `https://AK:${secret}@acct.r2.cloudflarestorage.com`, R2_BUCKET: "b", R2_ACCESS_KEY_ID: "AK", R2_SECRET_ACCESS_KEY: "SK-unused" },
  ];
  const named = ['UPSTREAMS["registry.test"].url', 'UPSTREAMS["registry.test"].fallback[0].url', "R2_S3_ENDPOINT"];
  for (const [i, bindings] of settings.entries()) {
    // CANARY is no setting: it only puts the password on the suite-wide secret scan's list.
    const bad = await startDoor({ bindings: { ...bindings, CANARY: secret } });
    try {
      const r = await fetch(`${bad.url}/v2/`);
      const body = await r.text();
      assert.equal(r.status, 500, body);
      assert.ok(body.includes(JSON.stringify(named[i]).slice(1, -1)), body);
      assert.match(body, /credentials/);
      assert.ok(!body.includes(secret), body);
      assert.ok(bad.logs().includes("credentials"), bad.logs());
      assert.ok(!bad.logs().includes(secret), bad.logs());
    } finally {
      await bad.stop();
    }
  }
});
