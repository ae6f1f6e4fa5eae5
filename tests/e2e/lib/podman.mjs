// A private podman store (Debian's podman 4.3, rootful) for the end-to-end tests: storage root, run
// root, temp dir, events log and every config file under the caller's `dir`, vfs storage and
// cgroupfs, so nothing in /var/lib/containers, /run/containers or /etc/containers is used and
// several stores can pull at once. podman has no daemon: each call is one process.
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { execFileP, unmountUnder } from "./util.mjs";

const PODMAN = "/usr/bin/podman";

/**
 * `registriesConf`: the registries.conf text (a plain-HTTP door needs `insecure = true` on its
 * mirror or registry entry). podman 4.3 refuses to start with a REGISTRY_AUTH_FILE that does not
 * exist, so an empty one (`auths`, if given) is written.
 * Returns { podman(args), pull(ref, { platform }), inspect(ref), remove }.
 */
export function podmanStore({ dir, registriesConf, auths = {} }) {
  // podman 4.3 refuses a run root longer than 50 characters.
  if (path.join(dir, "run").length > 50) throw new Error(`podman store dir too long for its run root: ${dir}`);
  for (const sub of ["root", "run", "tmp", "net"]) mkdirSync(path.join(dir, sub), { recursive: true });
  const file = (name, text) => {
    const p = path.join(dir, name);
    writeFileSync(p, text);
    return p;
  };
  const env = {
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(CONTAINERS_|REGISTRY_AUTH_FILE$|XDG_)/.test(k))),
    CONTAINERS_REGISTRIES_CONF: file("registries.conf", registriesConf),
    REGISTRY_AUTH_FILE: file("auth.json", JSON.stringify({ auths })),
    // Not the machine's storage.conf / containers.conf / policy.json.
    CONTAINERS_STORAGE_CONF: file("storage.conf", `[storage]\ndriver = "vfs"\nrunroot = ${JSON.stringify(path.join(dir, "run"))}\ngraphroot = ${JSON.stringify(path.join(dir, "root"))}\n`),
    CONTAINERS_CONF: file("containers.conf", `[engine]\nevents_logger = "file"\nevents_logfile_path = ${JSON.stringify(path.join(dir, "tmp", "events.log"))}\ncgroup_manager = "cgroupfs"\n`),
  };
  const policy = file("policy.json", JSON.stringify({ default: [{ type: "insecureAcceptAnything" }] }));
  const base = [
    "--root", path.join(dir, "root"),
    "--runroot", path.join(dir, "run"),
    "--tmpdir", path.join(dir, "tmp"),
    "--storage-driver", "vfs",
    "--events-backend", "file",
    "--cgroup-manager", "cgroupfs",
    "--network-config-dir", path.join(dir, "net"),
  ];

  async function podman(args, { timeout = 120000 } = {}) {
    try {
      const { stdout } = await execFileP(PODMAN, [...base, ...args], { env, timeout, maxBuffer: 16 << 20 });
      return stdout;
    } catch (e) {
      const why = e.killed ? `killed after ${timeout} ms` : (e.stderr || e.message).trim();
      throw new Error(`podman ${args.join(" ")} failed: ${why}`);
    }
  }

  return {
    podman,
    /** `podman pull --quiet [--platform P] REF`; returns the image ID it prints. */
    pull: async (ref, { platform, timeout } = {}) =>
      (await podman(["pull", "--quiet", "--signature-policy", policy, ...(platform ? ["--platform", platform] : []), ref], { timeout })).trim(),
    /** `podman image inspect REF`: { Id, Digest, RepoDigests, RepoTags, … }. */
    inspect: async (ref) => JSON.parse(await podman(["image", "inspect", ref]))[0],
    /** Nothing runs between calls; only a stray mount (none with vfs) could outlive them. */
    remove: () => unmountUnder(dir),
  };
}
