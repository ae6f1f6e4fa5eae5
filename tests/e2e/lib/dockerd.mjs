// A private Docker Engine (Debian's `docker.io`: dockerd 20.10 and its CLI) for the end-to-end
// tests: root, exec root, pid file, socket and daemon.json all under the caller's `dir`, vfs storage
// (works on any backing filesystem), and no iptables, ip6tables or bridge, so it changes nothing on
// the machine and several can run at once. It is started only to pull: no container is run.
//
// Docker uses `registry-mirrors` for Docker Hub names only, and falls back to registry-1.docker.io
// when every mirror fails. The daemon's HTTP(S)_PROXY points at a loopback port nobody listens on,
// so that fallback fails at once instead of hanging; Go never proxies a loopback address, so the
// mirror on 127.0.0.1 is reached directly. A pull that succeeds has come through the mirror.
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { execFileP, freePort, startProcess, unmountUnder, waitFor } from "./util.mjs";

const DOCKERD = "/usr/sbin/dockerd";
/** The package's CLI (a different `docker` may sit earlier on PATH, e.g. /usr/local/bin). */
const DOCKER = "/usr/bin/docker";
const SETPRIV = "/usr/bin/setpriv";

/**
 * Starts dockerd and waits until `docker version` answers. `mirrors`: `registry-mirrors` (write
 * `http://` for a plain-HTTP mirror: Docker treats 127.0.0.0/8 as insecure, but it still needs the
 * scheme). `auths`: the CLI's config.json `auths` (registry → { auth: base64("user:pass") }), which
 * the CLI sends to the daemon with each pull.
 * Returns { docker(args), pull(ref, { platform }), inspect(ref), setAuths(auths), output, stop };
 * `setAuths` rewrites the CLI's config.json (read afresh by every CLI call, as `docker login` does).
 */
export async function startDockerd({ dir, mirrors, auths = {} }) {
  for (const sub of ["root", "exec", "cli"]) mkdirSync(path.join(dir, sub), { recursive: true });
  const sock = path.join(dir, "docker.sock");
  const configFile = path.join(dir, "daemon.json");
  writeFileSync(configFile, JSON.stringify({
    // Keeps the daemon's identity key out of /etc/docker.
    "deprecated-key-path": path.join(dir, "key.json"),
    "registry-mirrors": mirrors,
  }, null, 2));
  const setAuths = (a) => writeFileSync(path.join(dir, "cli", "config.json"), JSON.stringify({ auths: a }));
  setAuths(auths);

  const dead = `http://127.0.0.1:${await freePort()}`;
  const scrubbed = Object.fromEntries(Object.entries(process.env)
    .filter(([k]) => !/^(DOCKER_|HTTPS?_PROXY$|NO_PROXY$)/i.test(k)));
  const daemonEnv = {
    ...scrubbed,
    HTTP_PROXY: dead, HTTPS_PROXY: dead, http_proxy: dead, https_proxy: dead,
    NO_PROXY: "127.0.0.1,localhost", no_proxy: "127.0.0.1,localhost",
  };
  const cliEnv = { ...scrubbed, DOCKER_CONFIG: path.join(dir, "cli") };
  const args = [
    "--config-file", configFile,
    "--data-root", path.join(dir, "root"),
    "--exec-root", path.join(dir, "exec"),
    "--pidfile", path.join(dir, "docker.pid"),
    "-H", `unix://${sock}`,
    "--storage-driver", "vfs",
    "--iptables=false", "--ip6tables=false", "--bridge=none",
  ];
  // A parent-death signal, so a test process that dies does not leave a daemon behind (dockerd
  // takes its own containerd down with it).
  const [cmd, full] = existsSync(SETPRIV)
    ? [SETPRIV, ["--pdeathsig", "KILL", "--", DOCKERD, ...args]]
    : [DOCKERD, args];
  const daemon = startProcess(cmd, full, { env: daemonEnv });
  const killOnExit = () => daemon.child.kill("SIGKILL");
  process.once("exit", killOnExit);

  async function docker(cliArgs, { timeout = 120000 } = {}) {
    try {
      const { stdout } = await execFileP(DOCKER, ["-H", `unix://${sock}`, ...cliArgs], { env: cliEnv, timeout, maxBuffer: 16 << 20 });
      return stdout;
    } catch (e) {
      const why = e.killed ? `killed after ${timeout} ms` : (e.stderr || e.message).trim();
      throw new Error(`docker ${cliArgs.join(" ")} failed: ${why}`);
    }
  }

  const stop = async () => {
    process.removeListener("exit", killOnExit);
    const timer = setTimeout(() => daemon.child.kill("SIGKILL"), 15000);
    await daemon.stop();
    clearTimeout(timer);
    // dockerd bind-mounts its data root onto itself and unmounts it on a clean shutdown only.
    await unmountUnder(dir);
  };

  try {
    const ready = await waitFor(async () => {
      if (daemon.child.exitCode !== null) return "exited";
      await docker(["version", "--format", "{{.Server.Version}}"], { timeout: 5000 });
      return "up";
    }, 30000, "dockerd to answer on its socket");
    if (ready === "exited") throw new Error(`dockerd exited with ${daemon.child.exitCode}`);
  } catch (e) {
    await stop();
    throw new Error(`${e.message}\n${daemon.output()}`);
  }

  return {
    docker,
    setAuths,
    output: daemon.output,
    stop,
    /** `docker pull [--platform P] REF`; the CLI is killed after `timeout` ms. */
    pull: (ref, { platform, timeout } = {}) =>
      docker(["pull", "--quiet", ...(platform ? ["--platform", platform] : []), ref], { timeout }),
    /** `docker image inspect REF`: { Id, RepoTags, RepoDigests, Architecture, … }. */
    inspect: async (ref) => JSON.parse(await docker(["image", "inspect", ref]))[0],
  };
}
