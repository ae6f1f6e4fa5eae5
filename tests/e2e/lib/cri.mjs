// A tiny CRI client: what the kubelet asks containerd's CRI plugin when a pod needs an image
// (`runtime.v1.ImageService/PullImage`, then `ImageStatus`), over gRPC on containerd's socket.
// Debian has no crictl; this is the same call, from the trimmed proto next to this file.
import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";
import path from "node:path";
import { fileURLToPath } from "node:url";

const PROTO = path.join(path.dirname(fileURLToPath(import.meta.url)), "cri-image.proto");

let service;
function imageService() {
  if (!service) {
    const def = protoLoader.loadSync(PROTO, { keepCase: true, longs: String, defaults: true });
    service = grpc.loadPackageDefinition(def).runtime.v1.ImageService;
  }
  return service;
}

/**
 * Connects to CRI on containerd's gRPC socket `address` (a path). Returns
 * `{ pullImage(image, { auth, timeout }), imageStatus(image), removeImage(image), close }`;
 * `pullImage` resolves to PullImageResponse.image_ref (containerd answers the image ID: the
 * config digest), `imageStatus` to the Image message ({ id, repo_tags, repo_digests, size }) or null when CRI does not know it.
 */
export function criClient(address) {
  const Service = imageService();
  const client = new Service(`unix://${address}`, grpc.credentials.createInsecure());
  const call = (method, request, timeout) => new Promise((resolve, reject) => {
    client[method](request, { deadline: Date.now() + timeout }, (err, res) => {
      if (err) reject(new Error(`CRI ${method}(${JSON.stringify(request.image)}) failed: ${err.code} ${err.details}`));
      else resolve(res);
    });
  });
  return {
    async pullImage(image, { auth = null, timeout = 120000 } = {}) {
      const res = await call("PullImage", { image: { image }, ...(auth ? { auth } : {}) }, timeout);
      return res.image_ref;
    },
    async imageStatus(image, { timeout = 10000 } = {}) {
      const res = await call("ImageStatus", { image: { image } }, timeout);
      return res.image ?? null;
    },
    async removeImage(image, { timeout = 10000 } = {}) {
      await call("RemoveImage", { image: { image } }, timeout);
    },
    close: () => client.close(),
  };
}
