// An S3 server for the end-to-end tests: s3s-fs (scripts/s3s-fs.sh installs it) over a folder. It
// really checks SigV4, presigned URLs included (tampered signature, wrong secret, expiry → 403), and
// answers Range with 206, which s3rver and moto do not. Each top-level folder of `dir` is a bucket;
// an object is the plain file `<dir>/<bucket>/<key>` (keys with `/` are subfolders), so a test can
// put objects by writing files. s3s-fs keeps its own metadata in hidden `.bucket-*.json` files at the
// top of `dir`; a file written directly has none and is served as is (ETag = md5 of the bytes).
import { execFileSync } from "node:child_process";
import { mkdirSync, existsSync } from "node:fs";
import { rename, writeFile, mkdir } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { freePort, startProcess, waitFor } from "./util.mjs";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");

let binPath;

/** The s3s-fs binary: $S3S_FS, else whatever scripts/s3s-fs.sh installs (and prints). */
export function s3sFsBin() {
  if (binPath) return binPath;
  if (process.env.S3S_FS && existsSync(process.env.S3S_FS)) return (binPath = process.env.S3S_FS);
  const out = execFileSync(path.join(ROOT, "scripts/s3s-fs.sh"), { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
  binPath = out.trim().split("\n").pop();
  return binPath;
}

let tmpCounter = 0;

/**
 * Starts s3s-fs on a free loopback port, serving `dir` with one bucket `bucket` (created). Requests
 * must be signed with `accessKey` / `secretKey` (any region; path-style `<endpoint>/<bucket>/<key>`).
 */
export async function startS3({ dir, accessKey, secretKey, bucket }) {
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) throw new Error(`bad bucket name ${bucket}`);
  const bucketDir = path.join(dir, bucket);
  mkdirSync(bucketDir, { recursive: true });
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  const proc = startProcess(s3sFsBin(), [
    "--host", "127.0.0.1", "--port", String(port),
    "--access-key", accessKey, "--secret-key", secretKey,
    dir,
  ]);
  try {
    // Any HTTP answer means it is listening (an unsigned request gets 403 AccessDenied).
    await waitFor(async () => {
      if (proc.child.exitCode !== null) throw new Error(`s3s-fs exited ${proc.child.exitCode}: ${proc.output()}`);
      const res = await fetch(`${endpoint}/`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      return true;
    }, 15000, `s3s-fs on ${endpoint}`);
  } catch (e) {
    await proc.stop();
    throw e;
  }
  return {
    endpoint,
    bucket,
    dir,
    output: proc.output,
    /** Writes `bytes` as object `key` (atomically: a temp file at the top of `dir`, then rename). */
    async putObject(key, bytes) {
      const parts = key.split("/");
      if (!key || key.startsWith("/") || parts.some((p) => p === "" || p === "." || p === ".."))
        throw new Error(`putObject: unsupported key ${JSON.stringify(key)}`);
      const file = path.join(bucketDir, ...parts);
      await mkdir(path.dirname(file), { recursive: true });
      const tmp = path.join(dir, `.frontdoor-put-${process.pid}-${tmpCounter++}`);
      await writeFile(tmp, bytes);
      await rename(tmp, file);
      return file;
    },
    stop: () => proc.stop(),
  };
}
