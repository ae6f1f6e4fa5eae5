// After the end-to-end suite: no secret any door was configured with (passwords, tokens, signing
// and storage keys) appears in any door's log, in any answer a test fetched from a door, or in what
// a scripted upstream's credential sink received where the service account's credentials must not
// go (sink-*.txt, written by tests/e2e/lib/realmsink.mjs, Basic credentials decoded).
// Usage: node tests/e2e/check-secrets.mjs $FRONTDOOR_LOG_DIR
import { closeSync, openSync, readdirSync, readFileSync, readSync } from "node:fs";
import path from "node:path";

const dir = process.argv[2];
const files = readdirSync(dir);
const secrets = new Set(files.filter((f) => f.startsWith("secrets-"))
  .flatMap((f) => JSON.parse(readFileSync(path.join(dir, f), "utf8")))
  .filter((s) => typeof s === "string" && s.length >= 6));
const scanned = files.filter((f) => ["log-", "answers-", "sink-"].some((p) => f.startsWith(p)));
const sinks = files.filter((f) => f.startsWith("sink-")).length;
let bytes = 0;
const leaks = [];
// Files are read in pieces that overlap by the longest secret, so a recording of any size (a
// herd's blob answers run to hundreds of MiB) is scanned whole.
const needles = [...secrets].map((s) => Buffer.from(s, "utf8"));
const overlap = Math.max(0, ...needles.map((n) => n.length)) - 1;
const PIECE = 64 << 20;
for (const f of scanned) {
  const fd = openSync(path.join(dir, f), "r");
  const found = new Set();
  let carry = Buffer.alloc(0);
  try {
    for (;;) {
      const piece = Buffer.alloc(PIECE);
      const n = readSync(fd, piece, 0, PIECE, null);
      if (n === 0) break;
      bytes += n;
      const window = Buffer.concat([carry, piece.subarray(0, n)]);
      for (const s of needles) if (window.includes(s)) found.add(s.length);
      carry = window.subarray(Math.max(0, window.length - overlap));
    }
  } finally {
    closeSync(fd);
  }
  for (const len of found) leaks.push(`${f}: a configured secret (${len} chars)`);
}
if (secrets.size === 0 || scanned.length === 0) {
  console.error("check-secrets: nothing recorded — was FRONTDOOR_LOG_DIR set for the suite?");
  process.exit(1);
}
console.log(`check-secrets: ${secrets.size} secrets, ${scanned.length} files (${sinks} credential sinks), ${bytes} bytes of logs, answers and sinks: ${leaks.length} leaks`);
for (const l of leaks) console.error(`LEAK ${l}`);
process.exit(leaks.length ? 1 : 0);
