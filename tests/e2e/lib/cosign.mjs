// An independent cosign signer for tests: the keyed "simple signing" format of cosign's
// specs/SIGNATURE_SPEC.md (`cosign sign --key`), made with Node's crypto and pushed straight to a
// registry (tests/e2e/lib/registry.mjs) through its own API. Shares no code with the door.
import crypto from "node:crypto";
import { sha256 } from "./util.mjs";

const OCI = "application/vnd.oci.image.manifest.v1+json";
const SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json";

/**
 * An ECDSA P-256 key pair, as `cosign generate-key-pair` makes (or an Ed25519 one, `type:
 * "ed25519"`, as `cosign import-key-pair` takes); `pem` is `cosign.pub`.
 */
export function keyPair(type = "ec") {
  const pair = crypto.generateKeyPairSync(type, type === "ec" ? { namedCurve: "prime256v1" } : {});
  return { ...pair, pem: pair.publicKey.export({ type: "spki", format: "pem" }) };
}

/** ECDSA P-256 over SHA-256 (ASN.1 DER, as cosign writes it), or pure Ed25519. */
const signBytes = (bytes, key) =>
  crypto.sign(key.privateKey.asymmetricKeyType === "ed25519" ? null : "sha256", bytes, key.privateKey);

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
  const signature = signBytes(payload, key);
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

const BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json";
const IN_TOTO = "application/vnd.in-toto+json";

/**
 * Signs `digest` in `repo` as cosign 3's `cosign sign --key` does by default: an in-toto statement
 * (`predicateType`, default a signature) in a DSSE envelope (signed over DSSE's PAE) in a sigstore
 * bundle, the bundle in a referrer manifest whose `subject` is `digest`, listed under the
 * referrers tag schema (`sha256-<hex>`) for registries without the referrers API (docker-registry 2.8).
 */
export async function attachBundle(upstream, user, repo, digest, key, { predicateType = "https://sigstore.dev/cosign/sign/v1" } = {}) {
  const api = registryApi(upstream, user, repo);
  const statement = Buffer.from(JSON.stringify({
    _type: "https://in-toto.io/Statement/v1",
    subject: [{ name: repo, digest: { sha256: digest.slice(7) } }],
    predicateType,
    predicate: {},
  }));
  const pae = Buffer.concat([Buffer.from(`DSSEv1 ${IN_TOTO.length} ${IN_TOTO} ${statement.length} `), statement]);
  const sig = signBytes(pae, key);
  const bundle = Buffer.from(JSON.stringify({
    mediaType: BUNDLE,
    verificationMaterial: { publicKey: { hint: "cosign.pub" } },
    dsseEnvelope: { payload: statement.toString("base64"), payloadType: IN_TOTO, signatures: [{ sig: sig.toString("base64") }] },
  }));
  const layer = await pushBlob(api, upstream.registryUrl, bundle);
  const config = await pushBlob(api, upstream.registryUrl, Buffer.from("{}"));
  const referrer = JSON.stringify({
    schemaVersion: 2, mediaType: OCI, artifactType: BUNDLE,
    config: { mediaType: "application/vnd.oci.empty.v1+json", ...config },
    layers: [{ mediaType: BUNDLE, ...layer }],
    subject: { mediaType: OCI, digest, size: 1 },
  });
  const referrerDigest = sha256(referrer);
  await api("PUT", `manifests/${referrerDigest}`, referrer, { "content-type": OCI });
  const index = JSON.stringify({
    schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
    manifests: [{ mediaType: OCI, digest: referrerDigest, size: Buffer.byteLength(referrer), artifactType: BUNDLE }],
  });
  await api("PUT", `manifests/sha256-${digest.slice(7)}`, index, { "content-type": "application/vnd.oci.image.index.v1+json" });
}
