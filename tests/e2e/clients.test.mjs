// The README's client configurations, used as written (only `door.example.com` → this test door's
// address, https → http): podman/skopeo's registries.conf and containerd's hosts.toml, against a
// door whose UPSTREAMS has docker.io and ghcr.io (both served here by a local docker-registry behind
// token auth).
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { buildImage } from "./lib/image.mjs";
import { ROOT, startDoor } from "./lib/door.mjs";
import { startUpstream } from "./lib/registry.mjs";
import { startContainerd } from "./lib/containerd.mjs";
import { execFileP, skopeo, tempDir } from "./lib/util.mjs";

const SVC = "svc";
const PW = crypto.randomBytes(12).toString("hex");
let tmp, upstream, door, single, multi, containerd, hostsDir;

/** An example file with the door's address put in. */
function example(rel, { http = false } = {}) {
  let text = readFileSync(path.join(ROOT, "examples", rel), "utf8");
  if (http) text = text.replaceAll("https://door.example.com", `http://${door.host}`);
  return text.replaceAll("door.example.com", door.host);
}

before(async () => {
  tmp = tempDir("clients");
  upstream = await startUpstream({ dir: tmp.dir, users: { [SVC]: PW } });
  single = buildImage(path.join(tmp.dir, "single"), { layers: 2, bigLayerBytes: 64 << 10 });
  multi = buildImage(path.join(tmp.dir, "multi"), {
    platforms: [{ os: "linux", architecture: "amd64" }, { os: "linux", architecture: "arm64" }],
    layers: 2, bigLayerBytes: 64 << 10,
  });
  for (const [dir, ref] of [["single", "private/app:v1"], ["multi", "private/multi:v1"]]) {
    await upstream.push(path.join(tmp.dir, dir), ref, { all: true });
  }
  const up = { url: upstream.url, username: SVC, password_secret: "PW" };
  door = await startDoor({
    bindings: { UPSTREAMS: JSON.stringify({ "docker.io": up, "ghcr.io": up }), DEFAULT_REGISTRY: "docker.io", PW },
  });

  const { stdout } = await execFileP(path.join(ROOT, "scripts/containerd.sh"));
  containerd = await startContainerd({ dir: path.join(tmp.dir, "ctrd"), binDir: stdout.trim().split("\n").pop() });
  // examples/containerd/certs.d, as a node would have it in /etc/containerd/certs.d.
  hostsDir = path.join(tmp.dir, "certs.d");
  for (const registry of readdirSync(path.join(ROOT, "examples/containerd/certs.d"))) {
    mkdirSync(path.join(hostsDir, registry), { recursive: true });
    writeFileSync(path.join(hostsDir, registry, "hosts.toml"),
      example(`containerd/certs.d/${registry}/hosts.toml`, { http: true }));
  }
});

after(async () => {
  await containerd?.stop();
  await door?.stop();
  await upstream?.stop();
  tmp?.remove();
});

test("podman/skopeo registries.conf from examples/: docker.io and ghcr.io images come through the door", async () => {
  // The door here is plain HTTP, so the mirror entries are marked insecure; nothing else changes.
  const conf = example("podman/registries.conf").replaceAll(
    /(\[\[registry\.mirror\]\]\nlocation = "[^"]+")/g, "$1\ninsecure = true");
  const confPath = path.join(tmp.dir, "registries.conf");
  writeFileSync(confPath, conf);
  for (const [name, registry] of [["docker.io/private/app:v1", "docker.io"], ["ghcr.io/private/app:v1", "ghcr.io"]]) {
    const dir = path.join(tmp.dir, `podman-${registry}`);
    const before = door.requests().length;
    await skopeo(["--registries-conf", confPath, "copy", `docker://${name}`, `oci:${dir}:x`]);
    const index = JSON.parse(readFileSync(path.join(dir, "index.json")));
    assert.equal(index.manifests[0].digest, single.top);
    const seen = door.requests().slice(before).filter((l) => l.kind === "manifest");
    assert.ok(seen.length > 0 && seen.every((l) => l.registry === registry), JSON.stringify(seen));
  }
});


/** Door log lines for manifest and blob requests since `from`. */
const served = (from) => door.requests().slice(from).filter((l) => l.kind === "manifest" || l.kind === "blob");

test("containerd with examples/containerd/certs.d pulls by tag through the door and unpacks", async () => {
  const from = door.requests().length;
  await containerd.pull("docker.io/private/app:v1", { hostsDir });
  assert.equal(await containerd.imageDigest("docker.io/private/app:v1"), single.top);
  assert.ok(await containerd.unpacked(single.manifests[0].config), "layers unpacked, diff_ids checked");
  const lines = served(from);
  assert.ok(lines.length >= 4 && lines.every((l) => l.registry === "docker.io"), JSON.stringify(lines));
});

test("containerd pulls by digest, and a second resolve of the tag is a cache hit", async () => {
  const ref = `docker.io/private/app@${single.top}`;
  await containerd.pull(ref, { hostsDir });
  assert.equal(await containerd.imageDigest(ref), single.top);
  const from = door.requests().length;
  await containerd.ctr(["images", "rm", "docker.io/private/app:v1"]);
  await containerd.pull("docker.io/private/app:v1", { hostsDir });
  const resolve = served(from).find((l) => l.kind === "manifest" && l.method === "HEAD");
  assert.equal(resolve?.cache, "hit", JSON.stringify(served(from)));
  assert.equal(resolve.upstream_calls, 0);
});

test("containerd pulls one platform of a multi-platform ghcr.io image", async () => {
  const arm = multi.manifests.find((m) => m.platform.architecture === "arm64");
  const from = door.requests().length;
  await containerd.pull("ghcr.io/private/multi:v1", { hostsDir, platform: "linux/arm64" });
  assert.equal(await containerd.imageDigest("ghcr.io/private/multi:v1"), multi.index);
  assert.ok(await containerd.unpacked(arm.config), "arm64 layers unpacked");
  const lines = served(from);
  assert.ok(lines.every((l) => l.registry === "ghcr.io"), JSON.stringify(lines));
  const amd = multi.manifests.find((m) => m.platform.architecture === "amd64");
  assert.ok(!lines.some((l) => l.path.includes(amd.layers[0].slice(7))), "amd64 layers not fetched");
});
