// Access control with real clients: the door's ACCESS lets anonymous clients pull public/* only,
// user a everything, user b public/* only. skopeo (Basic → the door's /token, GET) and containerd
// (OAuth2 password POST to /token) pull with and without credentials; a private layer is never
// served through a public repository's name; no secret shows up in any answer or log line.
import assert from "node:assert/strict";
import crypto from "node:crypto";
import http from "node:http";
import path from "node:path";
import { after, before, test } from "node:test";
import { buildImage } from "./lib/image.mjs";
import { ROOT, startDoor } from "./lib/door.mjs";
import { startUpstream } from "./lib/registry.mjs";
import { startContainerd, writeHostsToml } from "./lib/containerd.mjs";
import { execFileP, sha256, skopeo, tempDir } from "./lib/util.mjs";

const SVC = "svc";
const SECRETS = {
  SVC_PW: crypto.randomBytes(12).toString("hex"),
  A_PW: crypto.randomBytes(12).toString("hex"),
  B_PW: crypto.randomBytes(12).toString("hex"),
  ACCESS_TOKEN_KEY: crypto.randomBytes(32).toString("hex"),
  ADMIN_TOKEN: crypto.randomBytes(16).toString("hex"),
};
let tmp, upstream, door, priv, pub, ctrd, hostsDir, permissive;
const answers = [];

before(async () => {
  tmp = tempDir("access");
  upstream = await startUpstream({ dir: tmp.dir, users: { [SVC]: SECRETS.SVC_PW } });
  priv = buildImage(path.join(tmp.dir, "priv"), { layers: 2, bigLayerBytes: 64 << 10 });
  pub = buildImage(path.join(tmp.dir, "pub"), { layers: 2, bigLayerBytes: 64 << 10 });
  for (const [dir, ref] of [["priv", "private/app:v1"], ["pub", "public/app:v1"]]) {
    await upstream.push(path.join(tmp.dir, dir), ref);
  }
  permissive = await startPermissive();
  door = await startDoor({
    bindings: {
      UPSTREAMS: JSON.stringify({
        "registry.test": { url: upstream.url, username: SVC, password_secret: "SVC_PW" },
        "open.test": { url: permissive.url },
      }),
      DEFAULT_REGISTRY: "registry.test",
      ACCESS: JSON.stringify({
        anonymous: ["registry.test/public/*", "open.test/*"],
        users: {
          a: { password_secret: "A_PW", pull: ["registry.test/*"] },
          b: { password_secret: "B_PW", pull: ["registry.test/public/*"] },
        },
      }),
      ...SECRETS,
    },
  });
  const { stdout } = await execFileP(path.join(ROOT, "scripts/containerd.sh"));
  ctrd = await startContainerd({ dir: path.join(tmp.dir, "ctrd"), binDir: stdout.trim().split("\n").pop() });
  hostsDir = path.join(tmp.dir, "certs.d");
  writeHostsToml(hostsDir, "registry.test", door.url);
});

after(async () => {
  permissive?.close();
  await ctrd?.stop();
  await door?.stop();
  await upstream?.stop();
  tmp?.remove();
});

/**
 * A registry that says yes to every blob: HEAD 200 with the digest echoed back for any digest, and
 * GET 200 with bytes of its own (which hash to nothing anyone asked for). It records what it saw.
 */
async function startPermissive() {
  const seen = [];
  const junk = Buffer.from("a permissive registry's bytes\n");
  const server = http.createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    const m = req.url.match(/^\/v2\/.+\/blobs\/(sha256:[0-9a-f]{64})$/);
    if (!m) return res.writeHead(req.url === "/v2/" ? 200 : 404, { "content-type": "application/json" }).end("{}");
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": junk.length, "docker-content-digest": m[1] });
    res.end(req.method === "HEAD" ? undefined : junk);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${server.address().port}`, seen, close: () => server.close() };
}

async function skopeoPull(ref, creds) {
  const args = ["copy", "--src-tls-verify=false"];
  if (creds) args.push("--src-creds", creds);
  else args.push("--src-no-creds");
  const dir = path.join(tmp.dir, `out-${crypto.randomUUID()}`);
  await skopeo([...args, `docker://${door.host}/${ref}`, `oci:${dir}:x`]);
}

const cred = (user) => `${user}:${SECRETS[`${user.toUpperCase()}_PW`]}`;

test("skopeo: the access matrix", async () => {
  const cases = [
    [null, "public/app:v1", true],
    [null, "private/app:v1", false],
    ["a", "private/app:v1", true],
    ["a", "public/app:v1", true],
    ["b", "public/app:v1", true],
    ["b", "private/app:v1", false],
  ];
  for (const [user, ref, allowed] of cases) {
    const attempt = skopeoPull(ref, user && cred(user));
    if (allowed) await attempt;
    else await assert.rejects(attempt, /unauthorized|denied|authentication required|401|403/i, `${user} ${ref}`);
  }
  await assert.rejects(skopeoPull("public/app:v1", "a:wrong-password"), /unauthorized|401|invalid/i);
});

test("a user's token for a repository the user may never pull is 403 naming the user, not a login prompt", async (t) => {
  // Through the token flow every client uses: Basic at /token, then the bearer token.
  const tok = await fetch(`${door.url}/token?service=x&scope=repository:private/app:pull`, {
    headers: { authorization: `Basic ${Buffer.from(cred("b")).toString("base64")}` },
  });
  const { token } = await tok.json();
  for (const method of ["GET", "HEAD"]) {
    const r = await fetch(`${door.url}/v2/private/app/manifests/v1`, { method, headers: { authorization: `Bearer ${token}` } });
    const text = await r.text();
    answers.push(text);
    assert.equal(r.status, 403, `${method}: ${text}`);
    assert.equal(r.headers.get("www-authenticate"), null);
    if (method === "GET") {
      assert.deepEqual(JSON.parse(text).errors[0], { code: "DENIED", message: "b may not pull registry.test/private/app" });
    }
  }
  // skopeo follows the same flow and prints the door's reason.
  const err = await skopeoPull("private/app:v1", cred("b")).then(() => null, (e) => e.message);
  assert.match(err, /b may not pull registry\.test\/private\/app/);
  assert.match(err, /denied/i);
  // (Only skopeo's own message: the command line carries b's password.)
  const said = err.match(/msg="([^"]*)"/)?.[1] ?? "";
  assert.ok(!said.includes(SECRETS.B_PW));
  t.diagnostic(`skopeo says: ${said}`);
  // An anonymous token is still challenged (a client with credentials would log in).
  const anon = await (await fetch(`${door.url}/token?service=x&scope=repository:private/app:pull`)).json();
  const r = await fetch(`${door.url}/v2/private/app/manifests/v1`, { headers: { authorization: `Bearer ${anon.token}` } });
  assert.equal(r.status, 401);
  assert.match(r.headers.get("www-authenticate"), /^Bearer realm=/);
  await r.arrayBuffer();
});

test("containerd: --user a pulls private (OAuth2 POST to /token), b and anonymous cannot", async () => {
  await ctrd.pull("registry.test/private/app:v1", { hostsDir, user: cred("a") });
  assert.equal(await ctrd.imageDigest("registry.test/private/app:v1"), priv.top);
  assert.ok(await ctrd.unpacked(priv.manifests[0].config));
  await ctrd.ctr(["images", "rm", "registry.test/private/app:v1"]);
  await assert.rejects(ctrd.pull("registry.test/private/app:v1", { hostsDir, user: cred("b") }));
  await assert.rejects(ctrd.pull("registry.test/private/app:v1", { hostsDir }));
  await ctrd.pull("registry.test/public/app:v1", { hostsDir });
  assert.equal(await ctrd.imageDigest("registry.test/public/app:v1"), pub.top);
  const posts = door.requests().filter((l) => l.kind === "token" && l.method === "POST");
  assert.ok(posts.length > 0, "containerd used the OAuth2 POST");
});

test("a private layer is never served through a public repository's name", async () => {
  const layer = priv.manifests[0].layers[0];
  // Cached now (user a pulled it). Anonymous, through the public repository:
  const r = await fetch(`${door.url}/v2/public/app/blobs/${layer}`);
  const text = await r.text();
  answers.push(text);
  assert.equal(r.status, 404, text.slice(0, 200));
  assert.equal(JSON.parse(text).errors[0].code, "BLOB_UNKNOWN");
  // And straight through the private name, anonymous is challenged, not served.
  const p = await fetch(`${door.url}/v2/private/app/blobs/${layer}`);
  assert.equal(p.status, 401);
  assert.match(p.headers.get("www-authenticate"), /^Bearer realm="http:\/\/127\.0\.0\.1:\d+\/token",service="127\.0\.0\.1:\d+",scope="repository:registry\.test\/private\/app:pull"$/);
  answers.push(await p.text());
  // User a may, with Basic straight to /v2/.
  const a = await fetch(`${door.url}/v2/private/app/blobs/${layer}`, {
    headers: { authorization: `Basic ${Buffer.from(cred("a")).toString("base64")}` },
  });
  assert.equal(a.status, 200);
  await a.arrayBuffer();
});

test("a registry that says yes to every digest cannot unlock another registry's cached blobs", async () => {
  const layer = priv.manifests[0].layers[0];
  assert.ok(await door.stored(layer), "the private layer is cached (user a pulled it)");
  const privateBytes = await (await fetch(`${door.url}/v2/private/app/blobs/${layer}`, {
    headers: { authorization: `Basic ${Buffer.from(cred("a")).toString("base64")}` },
  })).arrayBuffer();
  for (const name of ["anything", "private/app"]) {
    const url = `${door.url}/v2/open.test/${name}/blobs/${layer}`;
    const head = await fetch(url, { method: "HEAD" });
    assert.notEqual(head.headers.get("x-frontdoor-cache"), "hit", `HEAD ${name}`);
    const r = await fetch(url);
    assert.notEqual(r.headers.get("x-frontdoor-cache"), "hit", `GET ${name}`);
    // The door streams what that registry sent; the bytes do not match the digest, so either the
    // transfer fails or they are that registry's own bytes — never the cached private layer.
    const got = await r.arrayBuffer().then((b) => Buffer.from(b), () => null);
    if (got) {
      assert.ok(!got.equals(Buffer.from(privateBytes)), `the private layer came out through open.test/${name}`);
      assert.notEqual(sha256(got), layer);
    }
  }
  assert.ok(permissive.seen.some((l) => l.startsWith("GET ") && l.includes(layer)), "the door asked that registry for the bytes");
  assert.ok(await door.stored(layer), "the cached copy is untouched");
  const again = await fetch(`${door.url}/v2/private/app/blobs/${layer}`, {
    headers: { authorization: `Basic ${Buffer.from(cred("a")).toString("base64")}` },
  });
  assert.equal(again.headers.get("x-frontdoor-cache"), "hit");
  assert.ok(Buffer.from(await again.arrayBuffer()).equals(Buffer.from(privateBytes)));
});

test("the status pages need a person: an anonymous token from /token gets 401, a user's token or the admin token 200", async () => {
  const token = async (headers = {}) => (await (await fetch(`${door.url}/token?service=x&scope=repository:public/app:pull`, { headers })).json()).token;
  const anonymous = await token();
  const userB = await token({ authorization: `Basic ${Buffer.from(cred("b")).toString("base64")}` });
  const cases = [
    ["no credentials", null, 401],
    ["anonymous token", `Bearer ${anonymous}`, 401],
    ["wrong password", `Basic ${Buffer.from("a:wrong").toString("base64")}`, 401],
    ["forged admin token", `Bearer ${SECRETS.ADMIN_TOKEN.slice(1)}x`, 401],
    ["user b's token", `Bearer ${userB}`, 200],
    ["user a, Basic", `Basic ${Buffer.from(cred("a")).toString("base64")}`, 200],
    ["admin token", `Bearer ${SECRETS.ADMIN_TOKEN}`, 200],
  ];
  for (const [what, authorization, want] of cases) {
    for (const page of ["/", "/_frontdoor/status"]) {
      const r = await fetch(`${door.url}${page}`, { headers: authorization ? { authorization } : {} });
      const text = await r.text();
      answers.push(text);
      assert.equal(r.status, want, `${what} ${page}: ${text.slice(0, 200)}`);
      assert.equal(r.headers.get("x-content-type-options"), "nosniff", `${what} ${page}`);
      if (want === 401) {
        assert.equal(JSON.parse(text).errors[0].code, "UNAUTHORIZED");
        assert.equal(r.headers.get("www-authenticate"), 'Basic realm="frontdoor status"');
        assert.ok(!text.includes("private"), "nothing about the repositories");
      } else if (page === "/") {
        assert.match(r.headers.get("content-type"), /^text\/html/);
        assert.match(r.headers.get("content-security-policy"), /^default-src 'none'; style-src 'sha256-[A-Za-z0-9+/]+=*'; /);
      } else {
        assert.ok(JSON.parse(text).registries);
      }
    }
  }
});

test("a restricted door shows its status only with credentials", async () => {
  const anon = await fetch(`${door.url}/_frontdoor/status`);
  assert.equal(anon.status, 401);
  assert.equal((await anon.json()).errors[0].code, "UNAUTHORIZED");
  const asB = { authorization: `Basic ${Buffer.from(cred("b")).toString("base64")}` };
  const read = async () => {
    const r = await fetch(`${door.url}/_frontdoor/status`, { headers: asB });
    assert.equal(r.status, 200);
    const status = await r.json();
    answers.push(JSON.stringify(status));
    return status.registries["registry.test"];
  };
  const before = await read();
  assert.ok(before.hits > 0, "the pulls above were counted");
  // Then exactly three cache hits (a manifest by digest is immutable: a hit, never a
  // revalidation), and nothing else: the counters move by exactly that much (a status read
  // merges the isolate's counts first).
  const tag = await fetch(`${door.url}/v2/public/app/manifests/v1`, { method: "HEAD", headers: asB });
  assert.equal(tag.status, 200);
  const digest = tag.headers.get("docker-content-digest");
  const mid = await read();
  for (let i = 0; i < 3; i++) {
    const r = await fetch(`${door.url}/v2/public/app/manifests/${digest}`, { headers: asB });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("x-frontdoor-cache"), "hit");
    await r.arrayBuffer();
  }
  const after = await read();
  assert.equal(after.hits, mid.hits + 3, "three hits counted");
  assert.equal(after.misses, mid.misses, "no miss counted");
  assert.equal(after.errors, mid.errors, "no error counted");
  assert.equal(after.images["public/app"], mid.images["public/app"] + 3, "three pulls of public/app");
});

test("no configured secret appears in any answer or log line", async () => {
  const tok = await fetch(`${door.url}/token?scope=repository:private/app:pull`, {
    headers: { authorization: `Basic ${Buffer.from(cred("a")).toString("base64")}` },
  });
  answers.push(await tok.text());
  const logs = door.logs();
  assert.ok(logs.length > 1000, "the suite produced logs");
  for (const [name, value] of Object.entries(SECRETS)) {
    assert.ok(!logs.includes(value), `${name} in the log`);
    for (const a of answers) assert.ok(!a.includes(value), `${name} in an answer`);
  }
});
