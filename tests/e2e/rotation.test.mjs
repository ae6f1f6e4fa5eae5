// The moment the door exists for: a node pool rotates and fresh nodes with empty stores pull the
// same images at once. Here the nodes are the real clients — Docker Engine (dockerd 20.10), two
// podman 4.3 stores, containerd 1.6's CRI plugin driven over gRPC as the kubelet does, containerd's
// `ctr`, and skopeo — each configured from examples/ (only `door.example.com` → this door, https →
// http), pulling through the door from a scripted Docker Hub (tests/e2e/lib/hubsim.mjs: a pull quota
// counted per manifest GET, 429 when spent) in front of a real docker-registry behind token auth.
//
// The quota is one more than the number of distinct manifests, so a door that let even two clients'
// manifest GETs through for the same manifest would make someone meet a 429.
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { buildImage } from "./lib/image.mjs";
import { ROOT, startDoor } from "./lib/door.mjs";
import { startHubSim } from "./lib/hubsim.mjs";
import { startUpstream } from "./lib/registry.mjs";
import { startContainerd } from "./lib/containerd.mjs";
import { criClient } from "./lib/cri.mjs";
import { startDockerd } from "./lib/dockerd.mjs";
import { podmanStore } from "./lib/podman.mjs";
import { MANIFEST_ACCEPT, execFileP, skopeo, tempDir, unmountUnder } from "./lib/util.mjs";

const SVC = "svc";
const PW = crypto.randomBytes(12).toString("hex");
const AMD64 = { os: "linux", architecture: "amd64" };
const ARM64 = { os: "linux", architecture: "arm64" };

/** What the rotation pulls; `docker` is the name as written to Docker (bare, Docker Hub). */
const IMAGES = [
  { repo: "library/alpine", tag: "3.20", docker: "alpine", platforms: [AMD64, ARM64] },
  { repo: "acme/app", tag: "1", docker: "acme/app", platforms: [AMD64] },
  { repo: "acme/tool", tag: "2", docker: "acme/tool", platforms: [AMD64] },
];
for (const image of IMAGES) image.full = `docker.io/${image.repo}:${image.tag}`;

/**
 * Every manifest some client fetches: alpine's index, its amd64 manifest (every amd64 client), its
 * arm64 manifest (ctr pulls linux/arm64, skopeo copies --all), and the two single manifests.
 */
const DISTINCT = 5;

/**
 * Each pull gets this long (a healthy rotation takes a few seconds): a client that met a 429 or a
 * 503 retries with back-off for minutes, and the test should say so sooner.
 */
const PULL_TIMEOUT = 45000;

let tmp, upstream, hub, door, binDir;
let dockerd, criDaemon, cri, ctrd;
const cleanups = [];
const built = {};
/** Set when the rotation passed: the door-only test needs what it left in the door's cache. */
let rotated = false;

/** An example file with the door's address put in, as clients.test.mjs does. */
function example(rel, doorAddress) {
  return readFileSync(path.join(ROOT, "examples", rel), "utf8")
    .replaceAll("https://door.example.com", doorAddress)
    .replaceAll("door.example.com", doorAddress);
}

/** A registries.conf from examples/ for this plain-HTTP door: `insecure = true` under each door location. */
function registriesConf(rel) {
  return example(rel, door.host).replaceAll(
    new RegExp(`(location = "${door.host.replace(/\./g, "\\.")}[^"]*")`, "g"), "$1\ninsecure = true");
}

/** A certs.d folder from examples/containerd/<variant>, with http:// to this door. */
function certsDir(variant, dest) {
  for (const registry of readdirSync(path.join(ROOT, "examples/containerd", variant))) {
    mkdirSync(path.join(dest, registry), { recursive: true });
    writeFileSync(path.join(dest, registry, "hosts.toml"), example(`containerd/${variant}/${registry}/hosts.toml`, door.url));
  }
  return dest;
}

/** The digest upstream's registry itself answers for a tag (straight to it, with a token). */
async function upstreamDigest(repo, tag) {
  const token = await upstream.issuer.token(SVC, `repository:${repo}:pull`);
  const r = await fetch(`${upstream.registryUrl}/v2/${repo}/manifests/${tag}`, {
    method: "HEAD", headers: { authorization: `Bearer ${token}`, accept: MANIFEST_ACCEPT },
  });
  assert.equal(r.status, 200, `upstream HEAD ${repo}:${tag}`);
  return r.headers.get("docker-content-digest");
}

const platformOf = (image, arch) => built[image.repo].manifests.find((m) => m.platform.architecture === arch);

before(async () => {
  tmp = tempDir("rotation");
  mkdirSync(path.join(tmp.dir, "up"));
  upstream = await startUpstream({ dir: path.join(tmp.dir, "up"), users: { [SVC]: PW } });
  for (const image of IMAGES) {
    const dir = path.join(tmp.dir, "images", image.repo.replace("/", "_"));
    built[image.repo] = buildImage(dir, { platforms: image.platforms, layers: 2, bigLayerBytes: 64 << 10 });
    await upstream.push(dir, `${image.repo}:${image.tag}`, { all: true });
  }
  hub = await startHubSim({ targetUrl: upstream.url, limit: DISTINCT + 1 });
  door = await startDoor({
    bindings: {
      UPSTREAMS: JSON.stringify({ "docker.io": { url: hub.url, username: SVC, password_secret: "HUB_TOKEN" } }),
      DEFAULT_REGISTRY: "docker.io",
      HUB_TOKEN: PW,
    },
  });

  binDir = (await execFileP(path.join(ROOT, "scripts/containerd.sh"))).stdout.trim().split("\n").pop();
  const mirrors = JSON.parse(example("docker/daemon.json", door.url))["registry-mirrors"];
  assert.deepEqual(mirrors, [door.url], "examples/docker/daemon.json names the door");
  // The daemons start side by side; each is registered for clean-up as soon as it is up.
  await Promise.all([
    startDockerd({ dir: path.join(tmp.dir, "docker"), mirrors }).then((d) => { dockerd = d; }),
    startContainerd({
      dir: path.join(tmp.dir, "cri"), binDir, namespace: "k8s.io",
      // A node configured strictly: only the door may answer docker.io pulls.
      cri: { configPath: certsDir("strict", path.join(tmp.dir, "cri-certs.d")) },
    }).then((c) => { criDaemon = c; }),
    startContainerd({ dir: path.join(tmp.dir, "ctr"), binDir }).then((c) => { ctrd = c; }),
  ]);
  cri = criClient(criDaemon.address);
});

after(async () => {
  // Every step runs even when an earlier one fails; daemons first, then the door and upstream.
  const steps = [
    () => cri?.close(),
    () => dockerd?.stop(),
    () => criDaemon?.stop(),
    () => ctrd?.stop(),
    ...cleanups,
    () => door?.stop(),
    () => hub?.stop(),
    () => upstream?.stop(),
    () => tmp && unmountUnder(tmp.dir),
  ];
  const failed = [];
  for (const step of steps) {
    try {
      await step();
    } catch (e) {
      failed.push(e.message);
    }
  }
  tmp?.remove();
  if (failed.length) throw new Error(`clean-up: ${failed.join("; ")}`);
});

/** Runs `fn` and records how long it took under `times[name]`. */
async function timed(times, name, fn) {
  const started = Date.now();
  try {
    return await fn();
  } finally {
    times[name] = Date.now() - started;
  }
}

// Each client pulls every image (concurrently within the client) and reports the digests it holds.
const clients = {
  async docker() {
    return Promise.all(IMAGES.map(async (image) => {
      const ref = `${image.docker}:${image.tag}`;
      await dockerd.pull(ref, { timeout: PULL_TIMEOUT });
      const info = await dockerd.inspect(ref);
      return { image, repoDigests: info.RepoDigests, id: info.Id };
    }));
  },
  podman: (store) => () => Promise.all(IMAGES.map(async (image) => {
    await store.pull(image.full, { timeout: PULL_TIMEOUT });
    const info = await store.inspect(image.full);
    return { image, digest: info.Digest, repoDigests: info.RepoDigests, id: `sha256:${info.Id}` };
  })),
  async cri() {
    return Promise.all(IMAGES.map(async (image) => {
      const ref = await cri.pullImage(image.full, { timeout: PULL_TIMEOUT });
      const status = await cri.imageStatus(image.full);
      return { image, id: ref, repoDigests: status.repo_digests, statusId: status.id };
    }));
  },
  ctr: (hostsDir) => () => Promise.all(IMAGES.map(async (image) => {
    const platform = image.platforms.length > 1 ? "linux/arm64" : undefined;
    await ctrd.pull(image.full, { hostsDir, platform, timeout: PULL_TIMEOUT });
    const arch = platform ? "arm64" : "amd64";
    return { image, digest: await ctrd.imageDigest(image.full), unpacked: await ctrd.unpacked(platformOf(image, arch).config), arch };
  })),
  skopeo: (confPath, dir) => () => Promise.all(IMAGES.map(async (image) => {
    mkdirSync(dir, { recursive: true });
    const out = path.join(dir, image.repo.replace("/", "_"));
    const args = ["--registries-conf", confPath, "copy", "--all", `docker://${image.full}`, `oci:${out}:x`];
    await execFileP("skopeo", args, { timeout: PULL_TIMEOUT }).catch((e) => {
      throw new Error(`skopeo ${args.join(" ")} failed: ${e.killed ? `killed after ${PULL_TIMEOUT} ms` : e.stderr || e.message}`);
    });
    return { image, digest: JSON.parse(readFileSync(path.join(out, "index.json"))).manifests[0].digest };
  })),
};

/** Asserts each client's report against upstream's digests; returns a printable summary. */
async function check(name, results) {
  const lines = [];
  for (const r of results) {
    const { image } = r;
    const top = await upstreamDigest(image.repo, image.tag);
    assert.equal(top, built[image.repo].top, `${image.repo}: upstream holds what was pushed`);
    const amd64Config = platformOf(image, "amd64").config;
    const at = (n) => `${n}@${top}`;
    if (name.startsWith("docker")) {
      assert.deepEqual(r.repoDigests, [at(image.docker)], `${name} ${image.repo} RepoDigests`);
      assert.equal(r.id, amd64Config, `${name} ${image.repo} image ID is the amd64 config`);
    } else if (name.startsWith("podman")) {
      assert.equal(r.digest, top, `${name} ${image.repo} Digest`);
      assert.ok(r.repoDigests.includes(at(`docker.io/${image.repo}`)), `${name} ${image.repo} RepoDigests ${r.repoDigests}`);
      assert.equal(r.id, amd64Config, `${name} ${image.repo} image ID`);
    } else if (name.startsWith("cri")) {
      assert.equal(r.id, amd64Config, `${name} ${image.repo} PullImage image_ref`);
      assert.equal(r.statusId, amd64Config, `${name} ${image.repo} ImageStatus id`);
      assert.deepEqual(r.repoDigests, [at(`docker.io/${image.repo}`)], `${name} ${image.repo} ImageStatus repo_digests`);
    } else if (name.startsWith("ctr")) {
      assert.equal(r.digest, top, `${name} ${image.repo} image target`);
      assert.ok(r.unpacked, `${name} ${image.repo} ${r.arch} layers unpacked, diff_ids checked`);
    } else if (name.startsWith("skopeo")) {
      assert.equal(r.digest, top, `${name} ${image.repo} copied index/manifest`);
    } else {
      throw new Error(`no check for ${name}`);
    }
    lines.push(`${image.repo}:${image.tag} ${top.slice(0, 19)}…`);
  }
  return `${name}: ${lines.join(", ")}`;
}

test("a rotation: Docker Engine, 2 podman stores, containerd CRI, ctr and skopeo pull the same images at once; Docker Hub sees each manifest once", async (t) => {
  hub.state.reset();
  const podmanA = podmanStore({ dir: path.join(tmp.dir, "pa"), registriesConf: registriesConf("podman/registries.conf") });
  const podmanB = podmanStore({ dir: path.join(tmp.dir, "pb"), registriesConf: registriesConf("podman/registries.strict.conf") });
  cleanups.push(podmanA.remove, podmanB.remove);
  const skopeoConf = path.join(tmp.dir, "skopeo-registries.conf");
  writeFileSync(skopeoConf, registriesConf("podman/registries.conf"));
  const ctrHosts = certsDir("certs.d", path.join(tmp.dir, "ctr-certs.d"));

  const runs = {
    docker: clients.docker,
    "podman-a (mirror)": clients.podman(podmanA),
    "podman-b (strict)": clients.podman(podmanB),
    "cri (strict)": clients.cri,
    ctr: clients.ctr(ctrHosts),
    skopeo: clients.skopeo(skopeoConf, path.join(tmp.dir, "skopeo")),
  };
  const times = {};
  const started = Date.now();
  const settled = await Promise.allSettled(Object.entries(runs).map(([name, run]) => timed(times, name, run)));
  const wall = Date.now() - started;
  const counts = { ...hub.state.counts };
  t.diagnostic(`hubsim: ${JSON.stringify(counts)}`);
  t.diagnostic(`times (ms): ${JSON.stringify(times)}, all ${wall}`);
  t.diagnostic(`Docker Hub saw: ${hub.state.manifestLog.map((l) => l.replace(/sha256:([0-9a-f]{12})[0-9a-f]{52}/, "sha256:$1…")).join("; ")}`);
  const failures = settled.map((s, i) => s.status === "rejected" ? `${Object.keys(runs)[i]}: ${s.reason.message}` : null).filter(Boolean);
  assert.equal(counts.tooMany, 0, `no 429 reached the door (client failures: ${failures.join(" | ")})`);
  assert.equal(counts.pulls, DISTINCT, "counted pulls = distinct manifests (not per client)");
  assert.deepEqual(failures, [], "every client pulled every image");

  const names = Object.keys(runs);
  for (const [i, s] of settled.entries()) t.diagnostic(await check(names[i], s.value));
  rotated = true;
});

test("with Docker Hub down and no fallback reachable, fresh stores of every client still pull from the door", async (t) => {
  // Run after the rotation: the door holds everything; now every request to Docker Hub is reset.
  assert.ok(rotated, "needs the rotation before it to have passed (it fills the door's cache)");
  hub.state.mode = "reset";
  try {
    const before = { ...hub.state.counts };
    for (const image of IMAGES) {
      await dockerd.docker(["image", "rm", `${image.docker}:${image.tag}`]);
      await cri.removeImage(image.full);
      assert.equal(await cri.imageStatus(image.full), null, `CRI forgot ${image.repo}`);
    }
    const podmanC = podmanStore({ dir: path.join(tmp.dir, "pc"), registriesConf: registriesConf("podman/registries.strict.conf") });
    cleanups.push(podmanC.remove);
    const strictConf = path.join(tmp.dir, "strict-registries.conf");
    writeFileSync(strictConf, registriesConf("podman/registries.strict.conf"));
    const runs = {
      docker: clients.docker,
      "podman-c (strict)": clients.podman(podmanC),
      "cri (strict)": clients.cri,
      "skopeo (strict)": clients.skopeo(strictConf, path.join(tmp.dir, "skopeo-strict")),
    };
    const times = {};
    const settled = await Promise.allSettled(Object.entries(runs).map(([name, run]) => timed(times, name, run)));
    t.diagnostic(`times (ms): ${JSON.stringify(times)}; hubsim faults +${hub.state.counts.faults - before.faults}`);
    const failures = settled.map((s, i) => s.status === "rejected" ? `${Object.keys(runs)[i]}: ${s.reason.message}` : null).filter(Boolean);
    assert.deepEqual(failures, [], "every client pulled every image with only the door reachable");
    const names = Object.keys(runs);
    for (const [i, s] of settled.entries()) t.diagnostic(await check(names[i], s.value));
    assert.equal(hub.state.counts.pulls, before.pulls, "nothing more was pulled from Docker Hub");
    assert.equal(hub.state.counts.tooMany, 0);
  } finally {
    hub.state.mode = "ok";
  }
});

test("a door with ACCESS: Docker Engine sends the mirror the credentials stored for https://index.docker.io/v1/, podman those stored for the door", async (t) => {
  const CI_PW = crypto.randomBytes(12).toString("hex");
  const privateDoor = await startDoor({
    bindings: {
      UPSTREAMS: JSON.stringify({ "docker.io": { url: upstream.url, username: SVC, password_secret: "UP_PW" } }),
      DEFAULT_REGISTRY: "docker.io",
      UP_PW: PW,
      ACCESS: JSON.stringify({ anonymous: ["docker.io/library/*"], users: { ci: { password_secret: "CI_PASSWORD", pull: ["docker.io/*"] } } }),
      CI_PASSWORD: CI_PW,
      ACCESS_TOKEN_KEY: crypto.randomBytes(32).toString("hex"),
    },
  });
  cleanups.push(() => privateDoor.stop());
  const auth = { auth: Buffer.from(`ci:${CI_PW}`).toString("base64") };
  const d = await startDockerd({ dir: path.join(tmp.dir, "docker-private"), mirrors: [privateDoor.url] });
  cleanups.unshift(() => d.stop());
  const app = IMAGES[1];
  const ref = `${app.docker}:${app.tag}`;

  // What `docker login 127.0.0.1:PORT` stores: used for that host only, never for the mirror.
  d.setAuths({ [new URL(privateDoor.url).host]: auth, [privateDoor.url]: auth });
  const from = privateDoor.requests().length;
  await assert.rejects(d.pull(ref, { timeout: PULL_TIMEOUT }), /registry-1\.docker\.io|unauthorized|denied/i);
  const tried = privateDoor.requests().slice(from).filter((l) => l.path?.startsWith(`/v2/${app.repo}/manifests/`));
  assert.ok(tried.length > 0 && tried.every((l) => l.status === 401), `the door refused it: ${JSON.stringify(tried.map((l) => [l.method, l.status]))}`);
  await d.pull(`${IMAGES[0].docker}:${IMAGES[0].tag}`); // anonymous may pull library/*
  // What `docker login` (no server: Docker Hub) stores: sent to the mirror.
  d.setAuths({ "https://index.docker.io/v1/": auth });
  await d.pull(ref);
  assert.deepEqual((await d.inspect(ref)).RepoDigests, [`${app.docker}@${built[app.repo].top}`]);

  // podman is the other way round: the door's own entry in auth.json (`podman login <door>`),
  // for the mirror and for the strict variant alike; docker.io's entry is not sent to the door.
  const conf = (rel) => example(rel, privateDoor.host).replaceAll(
    new RegExp(`(location = "${privateDoor.host.replace(/\./g, "\\.")}[^"]*")`, "g"), "$1\ninsecure = true");
  const podmanWith = (name, rel, key) => {
    const store = podmanStore({ dir: path.join(tmp.dir, name), registriesConf: conf(rel), auths: { [key]: auth } });
    cleanups.push(store.remove);
    return store;
  };
  for (const [name, rel] of [["pm", "podman/registries.conf"], ["ps", "podman/registries.strict.conf"]]) {
    const store = podmanWith(name, rel, privateDoor.host);
    await store.pull(app.full, { timeout: PULL_TIMEOUT });
    assert.equal((await store.inspect(app.full)).Digest, built[app.repo].top, `podman (${rel}) with the door's credentials`);
  }
  const hubKey = podmanWith("ph", "podman/registries.strict.conf", "docker.io");
  await assert.rejects(hubKey.pull(app.full, { timeout: PULL_TIMEOUT }), /unauthorized/, "podman does not send docker.io's credentials to the door");
  t.diagnostic("Docker Engine: credentials of https://index.docker.io/v1/ reach the mirror; podman: those of the door's host");
});
