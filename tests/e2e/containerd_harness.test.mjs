// Proves the containerd harness (lib/containerd.mjs) against a real registry: Debian's
// docker-registry without auth, behind a logging proxy that plays the mirror. containerd pulls
// `registry.example/...` and, through hosts.toml, only ever talks to the mirror.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { buildImage } from "./lib/image.mjs";
import { chainId, startContainerd, writeHostsToml } from "./lib/containerd.mjs";
import { startRegistry } from "./lib/registry.mjs";
import { execFileP, freePort, skopeo, tempDir } from "./lib/util.mjs";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const REGISTRY = "registry.example";

/**
 * A pass-through proxy that records each request's method, URL and Accept header. A leading
 * "/pfx" is stripped before forwarding, to try hosts.toml mirror URLs with a path.
 */
async function startLoggingProxy(targetPort) {
  const log = [];
  const server = http.createServer((req, res) => {
    log.push({ method: req.method, url: req.url, accept: req.headers.accept });
    const up = http.request(
      { host: "127.0.0.1", port: targetPort, method: req.method, path: req.url.replace(/^\/pfx(?=\/)/, ""), headers: req.headers },
      (r) => { res.writeHead(r.statusCode, r.rawHeaders); r.pipe(res); },
    );
    up.on("error", () => { res.writeHead(502); res.end(); });
    req.pipe(up);
  });
  const port = await freePort();
  await new Promise((r) => server.listen(port, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${port}`,
    log,
    stop: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }),
  };
}

/** The diff_ids of a config blob in an OCI layout written by buildImage. */
function diffIds(layoutDir, configDigest) {
  const blob = readFileSync(path.join(layoutDir, "blobs", "sha256", configDigest.slice("sha256:".length)));
  return JSON.parse(blob).rootfs.diff_ids;
}

describe("containerd harness: ctr pulls through a hosts.toml mirror", () => {
  let binDir, tmp, registry, mirror, cd, hostsDir;
  const single = {}; // { layout, image }
  const multi = {};

  before(async () => {
    const { stdout } = await execFileP(path.join(ROOT, "scripts/containerd.sh"), [], { maxBuffer: 1 << 20 });
    binDir = stdout.trim().split("\n").pop();
    tmp = tempDir("containerd");
    registry = await startRegistry({ dir: path.join(tmp.dir, "registry") });
    mirror = await startLoggingProxy(Number(registry.host.split(":")[1]));

    single.layout = path.join(tmp.dir, "single");
    single.image = buildImage(single.layout, { layers: 3, bigLayerBytes: 256 << 10 });
    for (const repo of ["test/app", "library/app"]) {
      await skopeo(["copy", "--quiet", "--dest-tls-verify=false", `oci:${single.layout}:v1`, `docker://${registry.host}/${repo}:v1`]);
    }

    multi.layout = path.join(tmp.dir, "multi");
    multi.image = buildImage(multi.layout, {
      platforms: [{ os: "linux", architecture: "amd64" }, { os: "linux", architecture: "arm64" }],
      layers: 2, bigLayerBytes: 128 << 10,
    });
    await skopeo(["copy", "--quiet", "--all", "--dest-tls-verify=false", `oci:${multi.layout}:v1`, `docker://${registry.host}/test/multi:v1`]);

    hostsDir = path.join(tmp.dir, "hosts.d");
    writeHostsToml(hostsDir, REGISTRY, mirror.url);
    cd = await startContainerd({ dir: path.join(tmp.dir, "containerd"), binDir });
  });

  after(async () => {
    await cd?.stop();
    await mirror?.stop();
    await registry?.stop();
    tmp?.remove();
  });

  test("the registry holds exactly the pushed bytes", async () => {
    for (const [repo, top] of [["test/app", single.image.top], ["test/multi", multi.image.top]]) {
      const res = await fetch(`${registry.url}/v2/${repo}/manifests/v1`, {
        method: "HEAD",
        headers: { accept: "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json" },
      });
      assert.equal(res.headers.get("docker-content-digest"), top, repo);
    }
  });

  test("pulls a single-platform image through the mirror and unpacks it", async (t) => {
    mirror.log.length = 0;
    const ref = `${REGISTRY}/test/app:v1`;
    await cd.pull(ref, { hostsDir });
    assert.equal(await cd.imageDigest(ref), single.image.top);

    const [m] = single.image.manifests;
    assert.equal(m.layers.length, 3);
    assert.ok(await cd.unpacked(m.config), `no snapshot for chain ${chainId(diffIds(single.layout, m.config))}\n${cd.output()}`);

    for (const r of mirror.log) t.diagnostic(`${r.method} ${r.url}  Accept: ${r.accept}`);
    assert.ok(mirror.log.length > 0, "containerd never reached the mirror");
    // The tag is resolved on the mirror, with the upstream's name in ?ns=.
    assert.ok(
      mirror.log.some((r) => r.url === `/v2/test/app/manifests/v1?ns=${REGISTRY}`),
      "no manifest-by-tag request with ?ns=",
    );
    for (const r of mirror.log) assert.match(r.url, /^\/v2\/test\/app\/(manifests|blobs)\/[^?]+\?ns=registry\.example$/);
    for (const d of m.layers) assert.ok(mirror.log.some((r) => r.method === "GET" && r.url.startsWith(`/v2/test/app/blobs/${d}?`)), d);
  });

  test("pulls one platform of a multi-platform image with --platform linux/arm64", async () => {
    const ref = `${REGISTRY}/test/multi:v1`;
    await cd.pull(ref, { hostsDir, platform: "linux/arm64" });
    assert.equal(await cd.imageDigest(ref), multi.image.index);

    const arm = multi.image.manifests.find((m) => m.platform.architecture === "arm64");
    const amd = multi.image.manifests.find((m) => m.platform.architecture === "amd64");
    const content = await cd.content();
    for (const d of [multi.image.index, arm.digest, arm.config, ...arm.layers]) assert.ok(content.has(d), `arm64 blob ${d} missing`);
    for (const d of [amd.config, ...amd.layers]) assert.ok(!content.has(d), `amd64 blob ${d} was fetched`);
    assert.equal(JSON.parse(await cd.contentGet(arm.config)).architecture, "arm64");

    assert.ok(await cd.unpacked(arm.config), "arm64 layers not unpacked");
    const snapshots = await cd.snapshots();
    assert.ok(!snapshots.includes(chainId(diffIds(multi.layout, amd.config))), "amd64 layers unpacked");
  });

  // Where the mirror URL's path puts the API root. The proxy strips "/pfx" before forwarding.
  for (const { name, url, overridePath, want } of [
    { name: "a path without /v2 gets /v2 appended", url: "/pfx", overridePath: false, want: "/pfx/v2/test/app/manifests/v1" },
    { name: "a path ending in /v2 is kept", url: "/pfx/v2", overridePath: false, want: "/pfx/v2/test/app/manifests/v1" },
    { name: "override_path uses the path as the API root", url: "/pfx/v2", overridePath: true, want: "/pfx/v2/test/app/manifests/v1" },
    { name: "override_path appends nothing", url: "/pfx", overridePath: true, want: "/pfx/test/app/manifests/v1" },
  ]) {
    test(`mirror URL with a path: ${name}`, async () => {
      const dir = path.join(tmp.dir, `hosts-${url.replaceAll("/", "_")}-${overridePath}`);
      writeHostsToml(dir, REGISTRY, `${mirror.url}${url}`, { overridePath });
      mirror.log.length = 0;
      // Only the first request matters; "/pfx/test/…" reaches the registry as "/test/…" (a 404).
      await cd.pull(`${REGISTRY}/test/app:v1`, { hostsDir: dir }).catch(() => {});
      assert.equal(mirror.log[0] && `${mirror.log[0].method} ${mirror.log[0].url}`, `HEAD ${want}?ns=${REGISTRY}`);
    });
  }

  test("docker.io images reach the mirror as /v2/library/NAME with ?ns=docker.io", async () => {
    const dir = path.join(tmp.dir, "hosts-dockerio");
    writeHostsToml(dir, "docker.io", mirror.url);
    mirror.log.length = 0;
    await cd.pull("docker.io/library/app:v1", { hostsDir: dir });
    assert.equal(await cd.imageDigest("docker.io/library/app:v1"), single.image.top);
    assert.equal(`${mirror.log[0].method} ${mirror.log[0].url}`, "HEAD /v2/library/app/manifests/v1?ns=docker.io");
  });

  test("a pull failure throws with ctr's stderr; without fallback the real registry is never tried", async () => {
    await assert.rejects(cd.pull(`${REGISTRY}/test/absent:v1`, { hostsDir }), (e) => {
      assert.match(e.message, /ctr .*images pull/);
      assert.match(e.message, /not found/);
      assert.doesNotMatch(e.message, /https:\/\/registry\.example/);
      return true;
    });
  });

  test("with fallback, containerd goes on to the server after the mirror's 404", async () => {
    const dir = path.join(tmp.dir, "hosts-fallback");
    writeHostsToml(dir, REGISTRY, mirror.url, { fallback: true });
    await assert.rejects(cd.pull(`${REGISTRY}/test/absent:v1`, { hostsDir: dir }), /https:\/\/registry\.example\/v2\/test\/absent\/manifests\/v1/);
  });
});
