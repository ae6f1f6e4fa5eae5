// A corpus of malformed and hostile requests, sent byte for byte (a raw socket, so nothing is
// normalised or refused on the client side) to the built worker in Miniflare. Every answer the door
// gives must be a 4xx with the OCI error body `{"errors":[{"code","message"}]}` — never a 5xx — and
// must cost no upstream request: each request's log line must say `upstream_calls: 0` and the
// counting proxy in front of the registry must see nothing. A second door with a broken `UPSTREAMS`
// answers the documented `500 UNKNOWN` naming the setting. Afterwards `/v2/` still answers 200.
//
// The upstream is real (docker-registry behind token auth, one small image pushed) so the few
// requests that are hostile but legal, and do reach upstream, meet real answers; they are held
// to "no 5xx, OCI body when 4xx" only.
//
// Each test collects every offending request before asserting, so one failure lists them all.
import assert from "node:assert/strict";
import crypto from "node:crypto";
import net from "node:net";
import { after, before, test } from "node:test";
import { startDoor } from "./lib/door.mjs";
import { pushRaw, startUpstream } from "./lib/registry.mjs";
import { tempDir } from "./lib/util.mjs";

const SVC = "svc";
const SVC_PASSWORD = crypto.randomBytes(12).toString("hex");
const REPO = "private/app";
const sha256 = (b) => `sha256:${crypto.createHash("sha256").update(b).digest("hex")}`;
const HEX = crypto.createHash("sha256").update("anything").digest("hex");
const MISSING = `sha256:${crypto.createHash("sha256").update("not stored anywhere").digest("hex")}`;

let tmp, upstream, door, badDoor;
let LAYER, MANIFEST, COLD, WARM;

before(async () => {
  tmp = tempDir("malformed");
  upstream = await startUpstream({ dir: tmp.dir, users: { [SVC]: SVC_PASSWORD } });
  const layer = crypto.randomBytes(4096);
  // Blobs only the "hostile but legal" test reads: one never cached, one read whole first.
  const [cold, warm] = [crypto.randomBytes(4096), crypto.randomBytes(4096)];
  const config = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [] } }));
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: sha256(config), size: config.length },
    layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: sha256(layer), size: layer.length }],
  }));
  await pushRaw(upstream, SVC, REPO, {
    blobs: [layer, config, cold, warm],
    manifests: [{ reference: "v1", mediaType: "application/vnd.oci.image.manifest.v1+json", bytes: manifest }],
  });
  LAYER = sha256(layer);
  COLD = sha256(cold);
  WARM = sha256(warm);
  MANIFEST = sha256(manifest);
  door = await startDoor({
    bindings: {
      UPSTREAMS: JSON.stringify({
        "registry.test": { url: upstream.url, username: SVC, password_secret: "REGISTRY_TEST_PASSWORD" },
      }),
      DEFAULT_REGISTRY: "registry.test",
      REGISTRY_TEST_PASSWORD: SVC_PASSWORD,
    },
  });
  badDoor = await startDoor({ bindings: { UPSTREAMS: "{oops", DEFAULT_REGISTRY: "registry.test" } });
});

after(async () => {
  await door?.stop();
  await badDoor?.stop();
  await upstream?.stop();
  tmp?.remove();
});

// ------------------------------------------------------------------------------------------------
// Sending
// ------------------------------------------------------------------------------------------------

/**
 * One HTTP/1.1 request, exactly as given (`target` may be a Buffer for bytes that are not UTF-8).
 * Resolves `{status, headers, body}` as soon as the answer is complete, or `{error}` when the
 * server drops the connection without one.
 */
function raw(hostPort, { method = "GET", target, headers = {}, body = null, host = hostPort }) {
  const [h, port] = hostPort.split(":");
  const lines = [`Host: ${host}`, "Connection: close"];
  for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
  if (body !== null) lines.push(`Content-Length: ${Buffer.byteLength(body)}`);
  const bytes = Buffer.concat([
    Buffer.from(`${method} `),
    Buffer.isBuffer(target) ? target : Buffer.from(target),
    Buffer.from(` HTTP/1.1\r\n${lines.join("\r\n")}\r\n\r\n`),
    body === null ? Buffer.alloc(0) : Buffer.from(body),
  ]);
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    const sock = net.connect(Number(port), h, () => sock.write(bytes));
    const done = (result) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => done({ error: "timeout" }), 15000);
    sock.on("data", (d) => {
      buf = Buffer.concat([buf, d]);
      const res = parseResponse(buf, method === "HEAD");
      if (res) done(res);
    });
    sock.on("error", (e) => done({ error: e.code ?? e.message }));
    sock.on("close", () => done(parseResponse(buf, method === "HEAD", true) ?? { error: "connection closed without an answer" }));
  });
}

/** The response in `buf` if it is complete (or the connection has `ended`), else null. */
function parseResponse(buf, head, ended = false) {
  const end = buf.indexOf("\r\n\r\n");
  if (end < 0) return null;
  const [statusLine, ...headerLines] = buf.subarray(0, end).toString("latin1").split("\r\n");
  const headers = {};
  for (const l of headerLines) {
    const i = l.indexOf(":");
    headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  const status = Number(statusLine.split(" ")[1]);
  let body = buf.subarray(end + 4);
  if (head || status === 204 || status === 304) {
    body = Buffer.alloc(0);
  } else if (/chunked/i.test(headers["transfer-encoding"] ?? "")) {
    const out = [];
    for (let i = 0; ;) {
      const nl = body.indexOf("\r\n", i);
      if (nl < 0) return ended ? { status, headers, body: Buffer.concat(out).toString("utf8") } : null;
      const n = parseInt(body.subarray(i, nl).toString(), 16);
      if (n === 0) break;
      if (body.length < nl + 2 + n + 2) return ended ? { status, headers, body: Buffer.concat(out).toString("utf8") } : null;
      out.push(body.subarray(nl + 2, nl + 2 + n));
      i = nl + 2 + n + 2;
    }
    body = Buffer.concat(out);
  } else if (headers["content-length"] !== undefined) {
    const n = Number(headers["content-length"]);
    if (body.length < n && !ended) return null;
    body = body.subarray(0, n);
  } else if (!ended) {
    return null;
  }
  return { status, headers, body: body.toString("utf8") };
}

/** Fails listing every offending request, or passes when there are none. */
function noFailures(failures, total) {
  if (failures.length) assert.fail(`${failures.length} of ${total} requests misanswered:\n${failures.join("\n")}`);
}

/** The door's request log lines (not fill or stats notes). */
const requestLines = (d) => d.requests().filter((l) => "method" in l && "role" in l);
const upstreamTotal = () =>
  Object.entries(upstream.counts).filter(([k]) => k.split(" ").length === 2).reduce((n, [, v]) => n + v, 0) +
  upstream.issuer.stats.requests;

/**
 * Sends `req` to `d` and waits for its log lines: `{res, lines, upstreamSeen}`. The door logs each
 * request it answers (a coalesced miss twice: owner, then worker); an answer without the API version
 * header did not come from the door's request path, so no line is awaited for it.
 */
async function send(d, req) {
  const logged = requestLines(d).length;
  const before = upstreamTotal();
  const res = await raw(d.host, req);
  let lines = [];
  if (res.headers?.["docker-distribution-api-version"]) {
    const deadline = Date.now() + 3000;
    while (Date.now() < deadline) {
      lines = requestLines(d).slice(logged);
      if (lines.some((l) => l.role === "worker")) break;
      await new Promise((r) => setTimeout(r, 5));
    }
  } else {
    await new Promise((r) => setTimeout(r, 50));
    lines = requestLines(d).slice(logged);
  }
  return { res, lines, upstreamSeen: upstreamTotal() - before };
}

const show = (s, n = 140) => (s.length > n ? `${s.slice(0, n)}… (${s.length} chars)` : s);
function describe(req) {
  const target = Buffer.isBuffer(req.target) ? `<bytes ${req.target.toString("hex")}>` : req.target;
  const headers = Object.entries(req.headers ?? {}).map(([k, v]) => `${k}: ${show(String(v), 40)}`);
  return `${req.method ?? "GET"} ${show(target)}${headers.length ? ` [${show(headers.join("; "), 200)}]` : ""}`;
}
function answer({ res, lines }) {
  if (res.error) return `no answer (${res.error})`;
  const calls = lines.reduce((n, l) => n + (l.upstream_calls ?? 0), 0);
  const type = res.headers["content-type"] ?? "";
  const body = /json|text/.test(type) ? show(res.body, 160) : `<${res.body.length} chars of ${type || "no type"}>`;
  return `${res.status} ${body} (log: ${lines.length} lines, upstream_calls ${calls})`;
}

/** The problems with an answer that should be an OCI error from the door, or [] if none. */
function ociProblems(req, { res }, { status }) {
  const problems = [];
  if (res.error) return [`no answer: ${res.error}`];
  if (status ? res.status !== status : !(res.status >= 400 && res.status < 500)) {
    problems.push(`status ${res.status}, want ${status ?? "4xx"}`);
  }
  if (!res.headers["docker-distribution-api-version"]) problems.push("not answered by the door");
  if (req.method === "HEAD") return problems;
  if (!/^application\/json/.test(res.headers["content-type"] ?? "")) {
    problems.push(`content-type ${res.headers["content-type"]}`);
  }
  let body;
  try {
    body = JSON.parse(res.body);
  } catch {
    return [...problems, "body is not JSON"];
  }
  const errors = body?.errors;
  if (!Array.isArray(errors) || errors.length === 0 ||
      !errors.every((e) => typeof e.code === "string" && /^[A-Z_]+$/.test(e.code) && typeof e.message === "string")) {
    problems.push("body is not {errors:[{code,message}]}");
  }
  return problems;
}

/**
 * Sends each request to the door; each must be refused (4xx, or exactly `status`) with an OCI body,
 * logged, and cost nothing upstream. Asserts once, listing every offender.
 */
async function expectRefused(corpus, { status } = {}) {
  const failures = [];
  for (const req of corpus) {
    const sent = await send(door, req);
    const problems = ociProblems(req, sent, { status: req.status ?? status });
    if (req.code && !problems.length && req.method !== "HEAD") {
      const code = JSON.parse(sent.res.body).errors[0].code;
      if (code !== req.code) problems.push(`code ${code}, want ${req.code}`);
    }
    const calls = sent.lines.reduce((n, l) => n + (l.upstream_calls ?? 0), 0);
    if (sent.res.headers?.["docker-distribution-api-version"] && sent.lines.length === 0) {
      problems.push("no request log line");
    }
    if (calls !== 0) problems.push(`upstream_calls ${calls}`);
    if (sent.upstreamSeen !== 0) problems.push(`upstream saw ${sent.upstreamSeen} requests`);
    if (problems.length) failures.push(`${describe(req)} → ${answer(sent)}: ${problems.join(", ")}`);
  }
  noFailures(failures, corpus.length);
  await stillServing();
}

async function stillServing(d = door) {
  const { res } = await send(d, { target: "/v2/" });
  assert.equal(res.status, 200, `/v2/ after the corpus: ${answer({ res, lines: [] })}`);
  assert.equal(res.headers["docker-distribution-api-version"], "registry/2.0");
}

const get = (target, extra = {}) => ({ target, ...extra });
const manifests = (name, ref = "v1") => get(`/v2/${name}/manifests/${ref}`);

// ------------------------------------------------------------------------------------------------
// The corpus
// ------------------------------------------------------------------------------------------------

const BAD_NAMES = [
  "Private/App", "PRIVATE/app", "private/App", "privatE/app",
  "private%2Fapp", "private%2fapp", "private/%2e%2e%2fapp", "..%2fprivate/app", "private/app%2F",
  "private//app", "/private/app", "private/app/", "//", "private/%20/app",
  "a".repeat(300), "ab/".repeat(100) + "c", `private/${"a".repeat(250)}`, `${"a/".repeat(127)}ab`,
  "caf%C3%A9", "café", "%E2%80%AEppa/etavirp", "%EF%BD%90rivate/app", "%F0%9F%98%80", "%FF", "private/%C0%AE%C0%AE",
  "private/app%00", "%00", "private%00/app", "private/app%00.json",
  "private/app%20", "private%20app", "private/app%0d%0aX-Injected:%20yes", "private/app;x=1", "private/app@latest",
  "private/-app", "private/app-", "private/.app", "private/app.", "private/_app", "private/a..b", "private/a___b",
  "private/a._b", "private/a.-b", "private/a-_b", "private/a__-b",
  "ghcr.io/x", "quay.io/library/alpine", "localhost/x", "evil.example:443/x", "127.0.0.1:9/x", "[::1]/x",
  "../private/app", "%2e%2e/%2e%2e/etc/passwd", "..",
];

test("invalid repository names are refused with an OCI error and nothing upstream", async () => {
  const corpus = [
    ...BAD_NAMES.map((n) => manifests(n)),
    ...["Private/App", "private%2Fapp", "private//app", "a".repeat(300), "%00", "private/a._b"].flatMap((n) => [
      get(`/v2/${n}/blobs/${LAYER}`),
      get(`/v2/${n}/tags/list`),
      get(`/v2/${n}/referrers/${MANIFEST}`),
      { method: "HEAD", target: `/v2/${n}/manifests/v1` },
    ]),
    get(Buffer.from([...Buffer.from("/v2/private/"), 0xff, 0xfe, ...Buffer.from("/manifests/v1")])),
    get(Buffer.from([...Buffer.from("/v2/private/"), 0xc0, 0xae, ...Buffer.from("/manifests/v1")])),
  ];
  await expectRefused(corpus);
});

const BAD_DIGESTS = [
  `md5:${HEX.slice(0, 32)}`, `sha1:${HEX.slice(0, 40)}`, `sha384:${HEX}${HEX.slice(0, 32)}`, `SHA256:${HEX}`,
  `Sha256:${HEX}`, `sha256+b64u:${HEX}`, `sha256:${HEX.slice(1)}`, `sha256:${HEX}0`, `sha256:`, `sha512:${HEX}`,
  `sha256:${HEX.toUpperCase()}`, `sha256:${HEX.slice(0, 63)}A`, `sha256:${"g".repeat(64)}`, `sha256:${"z".repeat(64)}`,
  `:${HEX}`, `sha256::${HEX}`, `sha256:${HEX}:x`, `sha256:${HEX}%00`, `sha256:%20${HEX}`, `sha256:../../etc/passwd`,
  `sha256:${HEX.slice(0, 32)}%2F${HEX.slice(0, 29)}`, `sha256:${"0".repeat(10000)}`, `sha256:${HEX.slice(0, 62)}%C3%A9`,
];

test("bad digests are refused on blobs, manifests and referrers", async () => {
  const corpus = [
    ...BAD_DIGESTS.flatMap((d) => [
      get(`/v2/${REPO}/blobs/${d}`),
      get(`/v2/${REPO}/manifests/${d}`),
      get(`/v2/${REPO}/referrers/${d}`),
    ]),
    // Without a colon a manifest reference is a tag, so these are refused on blobs and referrers only.
    ...[`sha256${HEX}`, `sha256%3A${HEX}`, HEX, "latest", ""].flatMap((d) => [
      get(`/v2/${REPO}/blobs/${d}`),
      get(`/v2/${REPO}/referrers/${d}`),
    ]),
    { method: "HEAD", target: `/v2/${REPO}/blobs/md5:${HEX.slice(0, 32)}` },
    { method: "HEAD", target: `/v2/${REPO}/blobs/sha256:${HEX.toUpperCase()}` },
    get(`/_blob/md5/${HEX.slice(0, 32)}`),
    get(`/_blob/sha256/${HEX.toUpperCase()}`),
  ];
  await expectRefused(corpus);
});

test("references that are no tag name no manifest (404 MANIFEST_UNKNOWN); malformed digests are 400", async () => {
  // The OCI conformance suite asks for `.INVALID_MANIFEST_NAME` and expects 404; for a malformed
  // digest (`sha256:totallywrong`) it takes 400 or 404, and the door says DIGEST_INVALID.
  const tags = [
    "a".repeat(129), "v".repeat(5000), ".hidden", "-rc1", ".", "v1%00", "v1%20", "v%2F1", "v1;rm%20-rf",
    "%F0%9F%98%80", "v1~", "v1+build", "v1%22", "%3Cscript%3E", "v1,v2", "v1*", "", ".INVALID_MANIFEST_NAME",
  ];
  const digestShaped = ["v1%0d%0aX-Injected:%20yes", "sha256:totallywrong", "sha256:zzz"];
  const corpus = [
    ...tags.map((t) => ({ ...manifests(REPO, t), status: 404, code: "MANIFEST_UNKNOWN" })),
    ...digestShaped.map((t) => ({ ...manifests(REPO, t), status: 400, code: "DIGEST_INVALID" })),
    // A dot segment the URL parser resolves (`…/app/manifests/..` is `…/app/`): no endpoint there.
    { ...manifests(REPO, "%2E%2E"), status: 404 },
    { method: "HEAD", target: `/v2/${REPO}/manifests/.hidden`, status: 404 },
    { method: "HEAD", target: `/v2/${REPO}/manifests/.INVALID_MANIFEST_NAME`, status: 404 },
    { method: "HEAD", target: `/v2/${REPO}/manifests/${"a".repeat(129)}`, status: 404 },
  ];
  await expectRefused(corpus);
});

test("bad Range headers get 416 RANGE_INVALID before anything is fetched", async () => {
  const ranges = [
    "bytes=abc", "bytes=5-1", "items=0-1", "bytes=99999999999999999999999-", "bytes=0-99999999999999999999999",
    "bytes=-99999999999999999999999", "bytes=18446744073709551616-", "bytes=-0", "bytes=-", "bytes=", "bytes",
    // (`bytes=0-1,` is not here: RFC 9110 §5.6.1.2 has recipients ignore empty list items, so it
    // is the range 0-1.)
    "bytes=0-1,x", "bytes=--1", "bytes=1-2-3", "bytes=0x10-", "bytes=+1-2", "bytes=1 - 2",
    "bytes=\u00bd-", "bytes=0-1;q=1", "=0-1", "0-1", "bytes=0-1, 9-5", `bytes=${"0-1,".repeat(4000)}x`,
  ];
  const corpus = [
    ...ranges.map((r) => get(`/v2/${REPO}/blobs/${LAYER}`, { headers: { Range: r } })),
    ...ranges.slice(0, 4).map((r) => get(`/v2/${REPO}/blobs/${MISSING}`, { headers: { Range: r } })),
  ];
  await expectRefused(corpus, { status: 416 });
});

// Methods workerd hands to the worker (those it does not know it answers itself; see below).
const METHODS = [
  "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PURGE", "COPY", "MOVE", "LOCK", "UNLOCK", "MKCOL",
  "PROPFIND", "PROPPATCH", "SEARCH", "ACL", "REPORT", "MKACTIVITY", "CHECKOUT", "MERGE", "NOTIFY", "SUBSCRIBE",
  "UNSUBSCRIBE", "QUERY",
];

test("every unsupported method on every endpoint is 405 UNSUPPORTED", async () => {
  const endpoints = [
    "/", "/v2/", "/v2", "/v2/_catalog", `/v2/${REPO}/manifests/v1`, `/v2/${REPO}/manifests/${MANIFEST}`,
    `/v2/${REPO}/blobs/${LAYER}`, `/v2/${REPO}/blobs/uploads/`, `/v2/${REPO}/tags/list`,
    `/v2/${REPO}/referrers/${MANIFEST}`, "/token", `/_blob/sha256/${HEX}`, "/_frontdoor/status",
  ];
  const corpus = endpoints.flatMap((target) =>
    METHODS.map((method) => ({
      method,
      target,
      // POST is the token endpoint's OAuth2 grant: without a grant it is a 400, not a 405.
      status: method === "POST" && target === "/token" ? 400 : 405,
      ...(["POST", "PUT", "PATCH"].includes(method) ? { body: "{}" } : {}),
    })),
  );
  await expectRefused(corpus);
});

test("bad query strings are refused", async () => {
  const tags = `/v2/${REPO}/tags/list`;
  const corpus = [
    ...["n=-1", "n=abc", "n=", "n=1.5", "n=1e3", "n=0x10", "n=99999999999", "n=%2D1", "n=%ZZ", "n=%00", "n=1%00",
      "n=-1&last=%ZZ", `n=${"9".repeat(5000)}`].map((q) => get(`${tags}?${q}`)),
    ...["ns=quay.io", "ns=%ZZ", "ns=", "ns=localhost", "ns=registry.test%00", "ns=REGISTRY.TEST", "ns=registry.test.",
      "ns=%00"].flatMap((q) => [
      get(`${tags}?${q}`),
      get(`/v2/${REPO}/manifests/v1?${q}`),
      get(`/v2/${REPO}/blobs/${LAYER}?${q}`),
    ]),
    // More images than one resolve request may name: refused before any is resolved.
    ...[51, 300].map((n) => ({
      ...get(`/_frontdoor/resolve?${Array.from({ length: n }, (_, i) => `image=${REPO}:v${i}`).join("&")}`),
      status: 400,
      code: "UNSUPPORTED",
    })),
  ];
  await expectRefused(corpus);
});

test("paths outside the API are refused", async () => {
  const corpus = [
    // (`/` itself is the status page.)
    "/v1/", "/V2/", "/v2/_catalog", "/v2/_catalog?n=10", "/../etc/passwd", "/..%2f..%2fetc/passwd",
    "/%2e%2e/%2e%2e/etc/passwd", "//v2/x", `//v2/${REPO}/manifests/v1`, "///", "/v2/x", "/v2/x/tags",
    `/v2/${REPO}/blobs/uploads/`, `/v2/${REPO}/blobs/uploads/1234`, `/v2/${REPO}/manifests`, `/v2/${REPO}/manifests/v1/x`,
    `/v2/${REPO}/tags/list/x`, "/v2/%2F", "/%76%32/", "/v2%2F", "/favicon.ico", "/.env", "/.git/config",
    "/_blob/", "/_blob/sha256", `/_blob/sha256/${HEX}`, `/_blob/sha256/${HEX}/x`, "/_frontdoor", "/_frontdoor/status/x",
    "/token/x", "/v2/token", "/v3/", `/${"x".repeat(8000)}`, "/v2/%00", "/%00",
  ].map((t) => get(t));
  await expectRefused(corpus);
});

test("oversized headers: the door answers what it would answer anyway, workerd may refuse first", async () => {
  const bigAccept = "application/vnd.oci.image.manifest.v1+json, ".repeat(400); // ~17 KiB
  const cookie = `c=${"x".repeat(64 << 10)}`;
  const many = Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`X-Filler-${i}`, "v"]));
  // Refused routes stay refused whatever the headers.
  await expectRefused([
    manifests("Private/App", "v1"),
    manifests(REPO, ".bad"),
  ].flatMap((r) => [
    { ...r, headers: { Accept: bigAccept } },
    { ...r, headers: { Cookie: cookie } },
    { ...r, headers: many },
    { ...r, headers: { Authorization: `Bearer ${"x".repeat(32 << 10)}` } },
  ]).concat([
    get(`/v2/${REPO}/blobs/${LAYER}`, { headers: { Range: `bytes=${"1".repeat(32 << 10)}-` } }),
  ]));
  // Sizes workerd itself refuses never reach the door: 431, 400 or a dropped connection.
  const failures = [];
  for (const req of [
    get("/v2/", { headers: { Cookie: `c=${"x".repeat(1 << 20)}` } }),
    get("/v2/", { headers: { Accept: "a/b, ".repeat(200000) } }),
  ]) {
    const sent = await send(door, req);
    const refused = sent.res.error || [400, 431].includes(sent.res.status) || (sent.res.status === 200 && sent.lines.length);
    if (!refused || sent.res.status >= 500) failures.push(`${describe(req)} → ${answer(sent)}`);
  }
  noFailures(failures, 2);
  await stillServing();
});

test("hostile but legal requests that reach upstream get no 5xx, and an OCI body with any 4xx", async () => {
  const corpus = [
    get(`/v2/${REPO}/tags/list?last=%ZZ`),
    get(`/v2/${REPO}/tags/list?last=${"z".repeat(4000)}`),
    get(`/v2/${REPO}/tags/list?n=%2B5`),
    get(`/v2/${REPO}/tags/list?n=0`),
    get(`/v2/${REPO}/tags/list?n=4294967295`),
    get(`/v2/${REPO}/referrers/${MANIFEST}?artifactType=%ZZ`),
    get(`/v2/private/x/%2e%2e/app/manifests/v1`), // dot segments are resolved by the URL parser
    get(`/v2/${REPO}/manifests/v1`, { headers: { Accept: "application/vnd.oci.image.manifest.v1+json, ".repeat(400) } }),
    get(`/v2/${REPO}/manifests/v1`, { headers: { Accept: "*/*;q=abc, ,,;;, text/html;q=-1" } }),
    get(`/v2/${REPO}/manifests/${"a".repeat(128)}`),
    get(`/v2/${REPO}/manifests/sha256${HEX}`),
    // Ranges that parse but lie outside the blob (or overflow upstream's int64): 416 whether the
    // blob is already stored (the door resolves the range) or not (upstream is asked).
    ...[COLD, WARM].flatMap((blob) => [
      ...(blob === WARM ? [get(`/v2/${REPO}/blobs/${WARM}`)] : []),
      ...["bytes=18446744073709551615-", "bytes=4096-", "bytes=999999-1000000"].map(
        (r) => get(`/v2/${REPO}/blobs/${blob}`, { headers: { Range: r }, status: 416 }),
      ),
      // A suffix longer than the blob is the whole blob (RFC 9110 §14.1.2); upstream may refuse it.
      get(`/v2/${REPO}/blobs/${blob}`, { headers: { Range: "bytes=-18446744073709551615" } }),
    ]),
    get(`/v2/${REPO}/blobs/${LAYER}`, { headers: { Range: `bytes=${"0-1,".repeat(4000)}0-1` } }),
    { method: "HEAD", target: `/v2/${REPO}/blobs/${LAYER}`, headers: { Range: "bytes=abc" } },
    get(`/v2/${REPO}/blobs/${MISSING}`),
    get(`/v2/${"a".repeat(255)}/manifests/v1`),
    get("/v2/", { headers: { Authorization: "Basic !!!not-base64!!!" } }),
    get("/v2/", { headers: { Authorization: `Bearer ${"x".repeat(32 << 10)}` } }),
    get("/token?scope=repository:Private/App:pull&scope=%ZZ&service=%00"),
    { method: "POST", target: "/token", headers: { "Content-Type": "application/x-www-form-urlencoded" }, body: "grant_type=password&username=%ZZ&password=%00" },
    { method: "POST", target: "/token", body: "\u0000\u00ff".repeat(1000) },
  ];
  const failures = [];
  for (const req of corpus) {
    const sent = await send(door, req);
    const { res } = sent;
    let problems = [];
    if (res.error) problems = [`no answer: ${res.error}`];
    else if (res.status >= 500) problems = ["5xx"];
    else if (req.status) problems = ociProblems(req, sent, { status: req.status });
    else if (res.status >= 400) problems = ociProblems(req, sent, {});
    if (problems.length) failures.push(`${describe(req)} → ${answer(sent)}: ${problems.join(", ")}`);
  }
  noFailures(failures, corpus.length);
  await stillServing();
});

test("requests workerd refuses itself never reach the door", async () => {
  // workerd answers these before the worker runs (501 for a method it does not know, 500 for
  // CONNECT and for request targets it cannot turn into a URL, 400 for a header with a NUL); the
  // door cannot change that, but it must not see them, and it must keep serving.
  const corpus = [
    { method: "CONNECT", target: "/v2/" },
    { method: "CONNECT", target: "127.0.0.1:443" },
    { method: "M-SEARCH", target: "/v2/" },
    { method: "BIND", target: "/v2/" },
    { method: "LINK", target: "/v2/" },
    { method: "FOO", target: "/v2/" },
    { method: "get", target: "/v2/" },
    { method: "OPTIONS", target: "*" },
    get("http://evil.example/v2/"),
    get("v2/"),
    get(`/v2/${REPO}/manifests/v1`, { host: "" }),
    get(`/v2/${REPO}/manifests/v1`, { headers: { "X-Nul": "a\u0000b" } }),
  ];
  const seen = [];
  for (const req of corpus) {
    const sent = await send(door, req);
    if (sent.lines.length || sent.upstreamSeen || sent.res.status === 200) {
      seen.push(`${describe(req)} → ${answer(sent)}`);
    }
  }
  noFailures(seen, corpus.length);
  await stillServing();
});

test("a broken UPSTREAMS answers 500 UNKNOWN naming the setting, on every route", async () => {
  const corpus = [
    get("/v2/"), { method: "HEAD", target: "/v2/" }, manifests(REPO), get(`/v2/${REPO}/blobs/${LAYER}`),
    get(`/v2/${REPO}/tags/list`), manifests("Private/App"), get(`/v2/${REPO}/blobs/md5:00`), get("/"),
    get("/token"), { method: "PUT", target: `/v2/${REPO}/manifests/v1`, body: "{}" },
  ];
  const failures = [];
  for (const req of corpus) {
    const sent = await send(badDoor, req);
    const problems = ociProblems(req, sent, { status: 500 });
    if (!problems.length && req.method !== "HEAD") {
      const [e] = JSON.parse(sent.res.body).errors;
      if (e.code !== "UNKNOWN" || !e.message.includes("UPSTREAMS")) problems.push(`error ${JSON.stringify(e)}`);
    }
    if (problems.length) failures.push(`${describe(req)} → ${answer(sent)}: ${problems.join(", ")}`);
  }
  noFailures(failures, corpus.length);
});

test("after the whole corpus the door still answers /v2/ and pulls", async () => {
  await stillServing();
  const { res } = await send(door, manifests(REPO));
  assert.equal(res.status, 200, answer({ res, lines: [] }));
  assert.equal(res.headers["docker-content-digest"], MANIFEST);
});
