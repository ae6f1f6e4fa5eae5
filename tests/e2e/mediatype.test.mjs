// Nothing an upstream says becomes active content on the door's origin (issue 11, item 6). A
// scripted hostile upstream — a raw `net` server, because node's http module refuses to send the
// header bytes tested here — serves manifests whose `Content-Type` is `text/html`, or carries a bare
// CR, a NUL, an obs-fold continuation line or non-ASCII bytes, and manifests whose own `mediaType`
// is `text/html`. The door must serve a manifest only with a valid `application/…+json` manifest
// type (upstream's, else the manifest's own), otherwise answer `502 UNAVAILABLE` saying the media
// type is unusable, store nothing (the next request goes upstream again) and never answer 5xx
// other than that 502. Every answer carries `X-Content-Type-Options: nosniff`.
//
// What workerd's fetch passes through is recorded per variant in the test's diagnostics: a header
// the runtime refuses makes the fetch fail (a 502 "upstream … failed"), one it passes reaches the
// door's check (a 502 "unusable media type"); neither may ever be a 500 or be stored.
import assert from "node:assert/strict";
import crypto from "node:crypto";
import net from "node:net";
import { after, before, test } from "node:test";
import { startDoor } from "./lib/door.mjs";

const DOCKER = "application/vnd.docker.distribution.manifest.v2+json";
const OCI = "application/vnd.oci.image.manifest.v1+json";
const sha256 = (b) => `sha256:${crypto.createHash("sha256").update(b).digest("hex")}`;

const typed = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: DOCKER, config: {}, layers: [] }));
const bare = Buffer.from(JSON.stringify({ schemaVersion: 2, layers: [], annotations: { x: "<script>alert(document.domain)</script>" } }));
const htmlInside = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: "text/html", layers: [] }));

/**
 * Repository → [raw Content-Type header bytes (after "Content-Type: "), manifest body]. The header
 * bytes are written to the socket exactly.
 */
const SCENARIOS = {
  "html/app": [Buffer.from("text/html"), bare],
  "html-typed/app": [Buffer.from("text/html; charset=utf-8"), typed],
  "body-html/app": [null, htmlInside],
  "plain-body-html/app": [Buffer.from("text/plain"), htmlInside],
  "xhtml/app": [Buffer.from("application/xhtml+xml"), bare],
  "bare-cr/app": [Buffer.from(`${OCI}\rX-Evil: 1`), bare],
  "bare-cr-typed/app": [Buffer.from(`${OCI}\rX-Evil: 1`), typed],
  "nul/app": [Buffer.from(`${OCI}\0x`), bare],
  "fold/app": [Buffer.from(`${OCI}\r\n text/html`), bare],
  "latin1/app": [Buffer.concat([Buffer.from("application/vnd.oci.image.manifest.v1+json"), Buffer.from([0xff, 0xfe])]), bare],
  "good/app": [Buffer.from(OCI), bare],
};

let door, upstream;
const seen = []; // "METHOD /path" the upstream answered

function startHostileUpstream() {
  const server = net.createServer((socket) => {
    let buf = Buffer.alloc(0);
    socket.on("data", (d) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      const [method, target] = buf.subarray(0, end).toString("latin1").split("\r\n")[0].split(" ");
      seen.push(`${method} ${target}`);
      const m = target.match(/^\/v2\/(.+)\/manifests\/([^/?]+)$/);
      const scenario = m && SCENARIOS[m[1]];
      let head, body;
      if (!scenario) {
        body = Buffer.from('{"errors":[{"code":"NAME_UNKNOWN","message":"no"}]}');
        head = `HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n`;
      } else {
        const [type, manifest] = scenario;
        body = manifest;
        head = `HTTP/1.1 200 OK\r\nDocker-Content-Digest: ${sha256(manifest)}\r\nContent-Length: ${manifest.length}\r\n`;
        if (type) head = Buffer.concat([Buffer.from(`${head}Content-Type: `, "latin1"), type, Buffer.from("\r\n")]);
      }
      socket.end(Buffer.concat([
        Buffer.from(head, "latin1"),
        Buffer.from("Connection: close\r\n\r\n"),
        method === "HEAD" ? Buffer.alloc(0) : body,
      ]));
    });
    socket.on("error", () => {});
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

before(async () => {
  upstream = await startHostileUpstream();
  door = await startDoor({
    bindings: {
      UPSTREAMS: JSON.stringify({ "evil.test": { url: `http://127.0.0.1:${upstream.address().port}` } }),
      DEFAULT_REGISTRY: "evil.test",
      // A NUL in a header makes workerd's fetch fail, which the door counts as an outage; this
      // file is about media types, so every request goes upstream (no back-off).
      UPSTREAM_BACKOFF_SECONDS: "0",
    },
  });
});

after(async () => {
  await door?.stop();
  await new Promise((r) => upstream?.close(r));
});

const upstreamGets = (repo) => seen.filter((s) => s === `GET /v2/${repo}/manifests/v1`).length;

async function get(repo, method = "GET") {
  const r = await fetch(`${door.url}/v2/${repo}/manifests/v1`, { method });
  const body = Buffer.from(await r.arrayBuffer());
  return { status: r.status, headers: r.headers, body };
}

/** Variants whose raw header bytes the runtime may normalise, refuse or pass on: see the diagnostics. */
const RAW = new Set(["bare-cr/app", "bare-cr-typed/app", "nul/app", "fold/app", "latin1/app"]);

test("manifests are served only with a valid manifest media type, else 502 and nothing stored", async (t) => {
  const served = { "html-typed/app": DOCKER, "good/app": OCI };
  const found = [];
  for (const repo of Object.keys(SCENARIOS)) {
    const first = await get(repo);
    const again = await get(repo);
    const head = await get(repo, "HEAD");
    for (const [what, r] of [["GET", first], ["GET again", again], ["HEAD", head]]) {
      assert.equal(r.headers.get("x-content-type-options"), "nosniff", `${repo} ${what}`);
      assert.ok(r.status === 200 || r.status === 502, `${repo} ${what}: ${r.status} ${r.body}`);
      // (A HEAD whose upstream named no type passes none on.)
      if (r.status === 200 && !(what === "HEAD" && r.headers.get("content-type") === null)) {
        assert.match(r.headers.get("content-type") ?? "", /^application\/[a-z0-9.-]+\+json$/, `${repo} ${what}`);
      }
    }
    if (first.status === 200) {
      assert.ok(served[repo] || RAW.has(repo), `${repo}: served as ${first.headers.get("content-type")}`);
      if (served[repo]) assert.equal(first.headers.get("content-type"), served[repo], repo);
      assert.deepEqual(first.body, SCENARIOS[repo][1], "the bytes as received");
      assert.equal(again.status, 200);
      assert.equal(upstreamGets(repo), 1, `${repo}: stored, the second GET is a hit`);
      found.push(`${repo}: GET 200 as ${first.headers.get("content-type")}; HEAD ${head.status} ${head.headers.get("content-type")}`);
      continue;
    }
    assert.ok(!served[repo], `${repo}: ${first.body}`);
    const [e] = JSON.parse(first.body).errors;
    assert.equal(e.code, "UNAVAILABLE", repo);
    // (workerd's own errors name a fresh `reference = …` each time.)
    const same = (m) => m.replace(/reference = \w+/, "reference = …");
    const [e2] = JSON.parse(again.body).errors;
    assert.deepEqual([e2.code, same(e2.message)], [e.code, same(e.message)], `${repo}: the same answer again, not a 500`);
    assert.equal(upstreamGets(repo), 2, `${repo}: nothing stored, asked again`);
    found.push(`${repo}: GET ${first.status} ${e.message}; HEAD ${head.status}`);
  }
  for (const line of found) t.diagnostic(line);
  // The door's own refusals, whatever the runtime does with raw bytes.
  for (const repo of ["html/app", "body-html/app", "plain-body-html/app", "xhtml/app"]) {
    assert.match(found.find((l) => l.startsWith(`${repo}:`)), /GET 502 .*unusable media type/, repo);
  }
});

test("the door's answers all carry nosniff and a policy that runs nothing", async () => {
  for (const path of ["/v2/", "/v2/good/app/manifests/v1", "/v2/none/app/manifests/v1", "/v2/Bad/manifests/v1", "/token", "/nowhere"]) {
    const r = await fetch(`${door.url}${path}`);
    await r.arrayBuffer();
    assert.equal(r.headers.get("x-content-type-options"), "nosniff", path);
    assert.equal(r.headers.get("content-security-policy"), "default-src 'none'; frame-ancestors 'none'; sandbox", path);
  }
});
