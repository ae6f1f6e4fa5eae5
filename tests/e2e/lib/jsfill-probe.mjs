import { Miniflare } from "miniflare";
import { readFileSync, readdirSync, mkdtempSync } from "node:fs";
const MB = Number(process.env.MB ?? 256);
function workerdRss() { let t = 0; for (const p of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) { try { const st = readFileSync(`/proc/${p}/status`, "utf8"); if (/^Name:\s+workerd/m.test(st)) t += Number(st.match(/VmRSS:\s+(\d+)/)[1]); } catch {} } return t / 1024; }
const script = `export default { async fetch(req, env, ctx) {
  const mode = new URL(req.url).pathname.slice(1);
  const len = ${MB} * 1048576; const chunk = new Uint8Array(262144); crypto.getRandomValues(chunk.subarray(0, 65536));
  let sent = 0;
  const src = () => new ReadableStream({ pull(c) { if (sent >= len) return c.close(); c.enqueue(chunk.slice()); sent += chunk.length; } });
  const t0 = Date.now();
  if (mode === "put") { const f = new FixedLengthStream(len); const p = env.B.put("k", f.readable); await src().pipeTo(f.writable); await p; return new Response(String(Date.now() - t0)); }
  if (mode === "sha") { const f = new FixedLengthStream(len); const p = env.B.put("k", f.readable, { sha256: "00".repeat(32) }).catch(e => 0); await src().pipeTo(f.writable).catch(e=>0); await p; return new Response(String(Date.now() - t0)); }
  if (mode === "digest") { const d = new crypto.DigestStream("SHA-256"); await src().pipeTo(d); await d.digest; return new Response(String(Date.now() - t0)); }
  return new Response(src(), { headers: { "content-length": String(len) } });
} }`;
const mf = new Miniflare({ modules: true, script, r2Buckets: ["B"], r2Persist: mkdtempSync("/tmp/r2p"), compatibilityDate: "2026-08-01" });
await mf.ready;
for (const mode of ["digest", "pass", "put", "sha"]) {
  const r0 = workerdRss(); let peak = r0; const iv = setInterval(() => { peak = Math.max(peak, workerdRss()); }, 100);
  const t0 = performance.now();
  const r = await fetch(new URL(mode, (await mf.ready)).href);
  let n = 0; let text = ""; for await (const c of r.body) { n += c.length; if (n < 100) text += Buffer.from(c).toString(); }
  const s = (performance.now() - t0) / 1000;
  clearInterval(iv);
  console.log(mode, "MB/s", ((MB << 20) / s / 1e6).toFixed(0), "worker ms", text.slice(0, 10), "rss growth", (peak - r0).toFixed(0));
}
await mf.dispose();
