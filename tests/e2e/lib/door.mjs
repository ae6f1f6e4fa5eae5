// Runs the built worker (build/index.js + wasm) in Miniflare — workerd with real KV and R2
// bindings — listening on a loopback port so real clients can pull through it.
import { Miniflare } from "miniflare";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");

/** `bindings`: vars and secrets, as wrangler would pass them. Console output is collected. */
export async function startDoor({ bindings, persistDir, coalesce = true }) {
  const logs = [];
  const mf = new Miniflare({
    modules: true,
    modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"] }],
    scriptPath: path.join(ROOT, "build/index.js"),
    modulesRoot: path.join(ROOT, "build"),
    compatibilityDate: "2026-08-01",
    kvNamespaces: ["CACHE"],
    r2Buckets: ["BLOBS"],
    durableObjects: coalesce ? { COALESCER: "Coalescer", STATS: "StatsHub" } : { STATS: "StatsHub" },
    kvPersist: persistDir ? path.join(persistDir, "kv") : false,
    r2Persist: persistDir ? path.join(persistDir, "r2") : false,
    bindings,
    host: "127.0.0.1",
    port: 0,
    handleRuntimeStdio(stdout, stderr) {
      stdout.on("data", (d) => logs.push(d.toString()));
      stderr.on("data", (d) => logs.push(d.toString()));
    },
  });
  const inner = await mf.ready;
  const front = await plainHttpFront(Number(inner.port));
  return {
    mf,
    // HTTP clients (fetch, ctr with an http:// hosts.toml) talk to workerd directly; `host` is the
    // TLS-refusing front for clients that try HTTPS first (skopeo, podman).
    url: inner.origin,
    host: `127.0.0.1:${front.port}`,
    logs: () => logs.join(""),
    /** The request log lines the worker wrote (JSON). */
    requests: () => logs.join("").split("\n").filter((l) => l.startsWith("{")).map((l) => { try { return JSON.parse(l); } catch { return null; } }).filter(Boolean),
    stop: async () => {
      front.close();
      await mf.dispose();
    },
  };
}

/**
 * skopeo and containerd try HTTPS before plain HTTP on an insecure registry; workerd's HTTP socket
 * never answers a TLS ClientHello, so each try would hang ~10 s. This front closes TLS attempts at
 * once (as a plain HTTP server in production would, by sending no TLS reply) and pipes everything
 * else to workerd untouched.
 */
async function plainHttpFront(targetPort) {
  const sockets = new Set();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on("close", () => sockets.delete(client));
    client.once("data", (first) => {
      client.pause();
      if (first[0] === 0x16) return client.destroy(); // TLS handshake record
      const upstream = net.connect(targetPort, "127.0.0.1", () => {
        upstream.write(first);
        client.pipe(upstream).pipe(client);
      });
      sockets.add(upstream);
      upstream.on("close", () => { sockets.delete(upstream); client.destroy(); });
      upstream.on("error", () => client.destroy());
      client.on("error", () => upstream.destroy());
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: server.address().port,
    close: () => { for (const s of sockets) s.destroy(); server.close(); },
  };
}
