// Builds small, real OCI images on disk (an OCI layout skopeo can push): gzip'd tar layers with
// correct diff_ids (sha256 of the uncompressed tar, which containerd checks when it unpacks), a
// config, a manifest per platform, and an index when there is more than one platform.
import crypto from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import zlib from "node:zlib";

const sha256 = (buf) => crypto.createHash("sha256").update(buf).digest("hex");

/** A one-file ustar archive. */
export function tar(name, content) {
  const header = Buffer.alloc(512);
  const field = (off, len, value) => header.write(value, off, len, "ascii");
  const octal = (off, len, n) => field(off, len, n.toString(8).padStart(len - 1, "0") + "\0");
  field(0, 100, name);
  octal(100, 8, 0o644);
  octal(108, 8, 0);
  octal(116, 8, 0);
  octal(124, 12, content.length);
  octal(136, 12, 1700000000);
  header.fill(" ", 148, 156);
  field(156, 1, "0");
  field(257, 6, "ustar\0");
  field(263, 2, "00");
  let sum = 0;
  for (const b of header) sum += b;
  field(148, 8, sum.toString(8).padStart(6, "0") + "\0 ");
  const pad = Buffer.alloc((512 - (content.length % 512)) % 512);
  return Buffer.concat([header, content, pad, Buffer.alloc(1024)]);
}

/**
 * Writes an OCI layout at `dir` holding `tag`. `platforms`: [{os, architecture}]; each platform
 * gets `layers` layers, the first of `bigLayerBytes` random bytes (several stream chunks).
 * Returns { manifests: [{platform, digest, layers: [digest], config}], index?: digest, top: digest }.
 */
export function buildImage(dir, { tag = "v1", platforms = [{ os: "linux", architecture: "amd64" }], layers = 3, bigLayerBytes = 1 << 20, seed = crypto.randomUUID() } = {}) {
  const blobsDir = path.join(dir, "blobs", "sha256");
  mkdirSync(blobsDir, { recursive: true });
  const put = (buf) => {
    const hex = sha256(buf);
    writeFileSync(path.join(blobsDir, hex), buf);
    return { digest: `sha256:${hex}`, size: buf.length };
  };
  const out = { manifests: [] };
  const descriptors = [];
  for (const platform of platforms) {
    const layerDescs = [];
    const diffIds = [];
    for (let i = 0; i < layers; i++) {
      const content = i === 0
        ? crypto.randomBytes(bigLayerBytes)
        : Buffer.from(`${seed} ${platform.architecture} layer ${i}\n`);
      const t = tar(`layer-${i}.txt`, content);
      diffIds.push(`sha256:${sha256(t)}`);
      layerDescs.push({ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", ...put(zlib.gzipSync(t)) });
    }
    const config = put(Buffer.from(JSON.stringify({
      architecture: platform.architecture, os: platform.os, created: "2026-01-01T00:00:00Z",
      config: { Cmd: ["/bin/true"] }, rootfs: { type: "layers", diff_ids: diffIds },
      history: diffIds.map(() => ({ created_by: "frontdoor test" })),
    })));
    const manifest = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
      layers: layerDescs,
    }));
    const m = put(manifest);
    out.manifests.push({ platform, digest: m.digest, config: config.digest, layers: layerDescs.map((l) => l.digest) });
    descriptors.push({ mediaType: "application/vnd.oci.image.manifest.v1+json", ...m, platform });
  }
  let top;
  if (platforms.length > 1) {
    const index = put(Buffer.from(JSON.stringify({
      schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: descriptors,
    })));
    out.index = index.digest;
    top = { mediaType: "application/vnd.oci.image.index.v1+json", ...index };
  } else {
    const { platform: _, ...d } = descriptors[0];
    top = d;
  }
  out.top = top.digest;
  writeFileSync(path.join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  writeFileSync(path.join(dir, "index.json"), JSON.stringify({
    schemaVersion: 2,
    manifests: [{ ...top, annotations: { "org.opencontainers.image.ref.name": tag } }],
  }));
  return out;
}
