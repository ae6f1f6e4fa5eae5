// The peer to measure the door against: distribution's `docker-registry` (Debian) in proxy mode
// (pull-through cache) with its own storage, reaching upstream with a service account.
import { startRegistry } from "./registry.mjs";

/** `remoteurl`: the upstream registry; `username`/`password`: its service account. */
export async function startProxyRegistry({ dir, remoteurl, username, password }) {
  const registry = await startRegistry({
    dir,
    logLevel: "error",
    extra: `proxy:
  remoteurl: ${remoteurl}
  username: ${username}
  password: ${JSON.stringify(password)}
`,
  });
  // Stopping must not hang when the process already died (the same Ctrl-C reaches it).
  const stop = () => new Promise((resolve) => {
    const { child } = registry;
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once("exit", resolve);
    child.kill("SIGTERM");
  });
  return { url: registry.url, host: registry.host, output: registry.output, stop };
}
