// Small shared helpers for the end-to-end tests: ports, temp dirs, processes, HTTP.
import { spawn, execFile } from "node:child_process";
import crypto from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";

export const execFileP = promisify(execFile);

export async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export function tempDir(prefix) {
  const dir = mkdtempSync(path.join(os.tmpdir(), `frontdoor-${prefix}-`));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Starts a long-running process; its output is kept for failure messages. */
export function startProcess(cmd, args, opts = {}) {
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], ...opts });
  const output = [];
  child.stdout.on("data", (d) => output.push(d.toString()));
  child.stderr.on("data", (d) => output.push(d.toString()));
  return {
    child,
    output: () => output.join(""),
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once("exit", resolve);
        child.kill("SIGTERM");
      }),
  };
}

/** Polls `fn` until it returns a truthy value or `ms` pass. */
export async function waitFor(fn, ms = 15000, what = "condition") {
  const deadline = Date.now() + ms;
  let lastErr;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      lastErr = e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}${lastErr ? `: ${lastErr.message}` : ""}`);
}

/** Runs skopeo, returning stdout; throws with stderr on failure. */
export async function skopeo(args) {
  try {
    const { stdout } = await execFileP("skopeo", args, { maxBuffer: 64 << 20 });
    return stdout;
  } catch (e) {
    throw new Error(`skopeo ${args.join(" ")} failed: ${e.stderr || e.message}`);
  }
}

/** Every manifest type a pull client accepts, as containerd and skopeo send them. */
export const MANIFEST_ACCEPT = [
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.docker.distribution.manifest.v2+json",
].join(", ");

/** `sha256:<hex>` of some bytes. */
export const sha256 = (bytes) => `sha256:${crypto.createHash("sha256").update(bytes).digest("hex")}`;

/**
 * Mount points at or under `dir`, deepest first (from /proc/self/mountinfo; its paths escape space,
 * tab, newline and backslash as octal).
 */
export function mountsUnder(dir) {
  let text;
  try {
    text = readFileSync("/proc/self/mountinfo", "utf8");
  } catch {
    return [];
  }
  const unescape = (s) => s.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
  return text.split("\n").filter(Boolean)
    .map((line) => unescape(line.split(" ")[4]))
    .filter((m) => m === dir || m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
}

/**
 * Lazily unmounts whatever is still mounted under `dir` (a daemon killed before its own clean-up
 * leaves dockerd's bind-mounted data root, for one), so the folder can be removed.
 */
export async function unmountUnder(dir) {
  for (const m of mountsUnder(dir)) {
    await execFileP("umount", ["-l", m]).catch(() => {});
  }
}
