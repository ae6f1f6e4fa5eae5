// The peer to measure the door against: distribution's `docker-registry` (Debian) in proxy mode
// (pull-through cache) with its own storage, reaching upstream with a service account.
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { freePort, startProcess, waitFor } from "./util.mjs";

/** `remoteurl`: the upstream registry; `username`/`password`: its service account. */
export async function startProxyRegistry({ dir, remoteurl, username, password }) {
  const port = await freePort();
  const storage = path.join(dir, "storage");
  mkdirSync(storage, { recursive: true });
  const configPath = path.join(dir, "proxy.yml");
  writeFileSync(configPath, `version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: ${storage}
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:${port}
  secret: frontdoor-peer-secret
proxy:
  remoteurl: ${remoteurl}
  username: ${username}
  password: ${JSON.stringify(password)}
`);
  const proc = startProcess("docker-registry", ["serve", configPath]);
  const url = `http://127.0.0.1:${port}`;
  await waitFor(async () => (await fetch(`${url}/v2/`)).status === 200, 15000, "docker-registry (proxy)")
    .catch((e) => { throw new Error(`${e.message}\n${proc.output()}`); });
  const stop = () => new Promise((resolve) => {
    const { child } = proc;
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once("exit", resolve);
    child.kill("SIGTERM");
  });
  return { url, host: `127.0.0.1:${port}`, output: proc.output, stop };
}
