// An independent cosign signer for tests: the keyed "simple signing" format of cosign's
// specs/SIGNATURE_SPEC.md (`cosign sign --key`), made with Node's crypto and pushed straight to a
// registry (tests/e2e/lib/registry.mjs) through its own API. Shares no code with the door.
import crypto from "node:crypto";
import { sha256 } from "./util.mjs";

const OCI = "application/vnd.oci.image.manifest.v1+json";
const SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json";

/** An ECDSA P-256 key pair, as `cosign generate-key-pair` makes; `pem` is `cosign.pub`. */
export function keyPair() {
  const pair = crypto.generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  return { ...pair, pem: pair.publicKey.export({ type: "spki", format: "pem" }) };
}

/** `upstream`'s registry API for `repo`, with a push token from its issuer (as user `user`). */
function registryApi(upstream, user, repo) {
  return async (method, tail, body, headers = {}) => {
    const token = await upstream.issuer.token(user, `repository:${repo}:pull,push`);
    const url = tail.startsWith("http") ? tail : `${upstream.registryUrl}/v2/${repo}/${tail}`;
    const r = await fetch(url, { method, body, headers: { authorization: `Bearer ${token}`, ...headers } });
    if (r.status >= 300) throw new Error(`${method} ${url}: ${r.status} ${await r.text()}`);
    return r;
  };
}

async function pushBlob(api, base, bytes) {
  const { headers } = await api("POST", "blobs/uploads/");
  const location = new URL(headers.get("location"), base);
  const digest = sha256(bytes);
  location.searchParams.set("digest", digest);
  await api("PUT", location.href, bytes, { "content-type": "application/octet-stream" });
  return { digest, size: bytes.length };
}

/**
 * Signs `digest` in `repo` as `cosign sign --key` does: the payload blob, its base64 signature in
 * the layer's annotation, the `sha256-<hex>.sig` manifest. Spoiled on request: `over` another
 * digest, another critical `type`, the payload `alter`ed after signing, the signature `corrupt`.
 */
export async function sign(upstream, user, repo, digest, key, { over = digest, type = "cosign container image signature", alter, corrupt } = {}) {
  const api = registryApi(upstream, user, repo);
  const payload = Buffer.from(JSON.stringify({
    critical: { identity: { "docker-reference": repo }, image: { "docker-manifest-digest": over }, type },
    optional: null,
  }));
  const signature = crypto.sign("sha256", payload, key.privateKey); // ASN.1 DER, as cosign writes it
  if (corrupt) signature[signature.length - 3] ^= 0xff;
  const stored = alter ? Buffer.from(payload.toString().replace('"optional":null', '"optional":{"by":"mallory"}')) : payload;
  const layer = await pushBlob(api, upstream.registryUrl, stored);
  const config = await pushBlob(api, upstream.registryUrl, Buffer.from("{}"));
  const manifest = JSON.stringify({
    schemaVersion: 2, mediaType: OCI,
    config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
    layers: [{ mediaType: SIMPLE_SIGNING, ...layer, annotations: { "dev.cosignproject.cosign/signature": signature.toString("base64") } }],
  });
  await api("PUT", `manifests/sha256-${digest.slice(7)}.sig`, manifest, { "content-type": OCI });
}
