// The floor for scripts/bench's warm tag pull rows: the least a Worker can do to answer a manifest
// from KV. One KV read of a fixed key (scripts/bench.mjs puts the bench image's manifest there),
// returned as is. It runs in the same workerd (one Miniflare instance) as the door, behind the same
// Miniflare entry router, so the difference between the two is the door's own work: routing,
// access, the tag → digest lookup, Accept checks, headers, and the Rust/wasm boundary.
export default {
  async fetch(request, env) {
    const manifest = await env.CACHE.get("floor/manifest", "arrayBuffer");
    if (manifest === null) return new Response("floor: nothing at floor/manifest\n", { status: 404 });
    return new Response(manifest, { headers: { "content-type": "application/vnd.oci.image.manifest.v1+json" } });
  },
};
