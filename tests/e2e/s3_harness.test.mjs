// Proves the S3 harness (lib/s3.mjs): s3s-fs serves files written straight into the bucket folder,
// and really checks SigV4 presigned URLs (computed here by a small independent implementation:
// query-string presign, region "auto", service "s3", path-style, host as the only signed header,
// UNSIGNED-PAYLOAD), so a door that presigns wrongly cannot pass a test against it.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, createHmac, randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { startS3 } from "./lib/s3.mjs";
import { tempDir } from "./lib/util.mjs";

const AK = "FRONTDOORTESTKEY";
const SK = "frontdoor-test-secret-0123456789";
const BUCKET = "blobs-test";

// ---- a tiny SigV4 presigner (AWS "Authenticating Requests: Using Query Parameters") ----

/** RFC 3986 encoding as SigV4 wants it: everything but A-Z a-z 0-9 - _ . ~ is %XX. */
const uriEncode = (s) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
const hmac = (key, data) => createHmac("sha256", key).update(data).digest();
const sha256hex = (data) => createHash("sha256").update(data).digest("hex");
const amzDate = (d) => d.toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, ""); // 20260101T000000Z

/**
 * Presigned URL for `method` on `<endpoint>/<bucket>/<key>` (key segments encoded, `/` kept).
 * `extraQuery`: further query parameters (signed too), e.g. {"list-type": "2"}.
 */
function presign({ endpoint, bucket, key = "", method = "GET", accessKey, secretKey, region = "auto", date = new Date(), expires = 300, extraQuery = {} }) {
  const url = new URL(endpoint);
  const canonicalUri = "/" + [bucket, ...(key ? key.split("/") : [])].filter((p, i) => i === 0 ? p !== "" : true).map(uriEncode).join("/");
  const stamp = amzDate(date);
  const scope = `${stamp.slice(0, 8)}/${region}/s3/aws4_request`;
  const query = {
    ...extraQuery,
    "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
    "X-Amz-Credential": `${accessKey}/${scope}`,
    "X-Amz-Date": stamp,
    "X-Amz-Expires": String(expires),
    "X-Amz-SignedHeaders": "host",
  };
  const canonicalQuery = Object.keys(query).sort()
    .map((k) => `${uriEncode(k)}=${uriEncode(query[k])}`).join("&");
  const canonicalRequest = [method, canonicalUri, canonicalQuery, `host:${url.host}\n`, "host", "UNSIGNED-PAYLOAD"].join("\n");
  const stringToSign = ["AWS4-HMAC-SHA256", stamp, scope, sha256hex(canonicalRequest)].join("\n");
  let k = hmac(`AWS4${secretKey}`, stamp.slice(0, 8));
  for (const part of [region, "s3", "aws4_request"]) k = hmac(k, part);
  const signature = createHmac("sha256", k).update(stringToSign).digest("hex");
  return `${url.origin}${canonicalUri}?${canonicalQuery}&X-Amz-Signature=${signature}`;
}

describe("S3 harness (s3s-fs)", () => {
  let tmp, s3;
  const blob = randomBytes(64 * 1024);
  const key = `blobs/sha256/${sha256hex(blob)}`;
  const url = (opts = {}) => presign({ endpoint: s3.endpoint, bucket: BUCKET, key, accessKey: AK, secretKey: SK, ...opts });
  const status403 = async (u, what) => {
    const res = await fetch(u);
    const body = await res.text();
    assert.equal(res.status, 403, `${what}: ${res.status} ${body}`);
    return body;
  };

  before(async () => {
    tmp = tempDir("s3");
    s3 = await startS3({ dir: path.join(tmp.dir, "root"), accessKey: AK, secretKey: SK, bucket: BUCKET });
    await s3.putObject(key, blob);
  });
  after(async () => {
    await s3?.stop();
    tmp?.remove();
  });

  test("serves a file written under the bucket folder, key with slashes, exact bytes", async () => {
    const res = await fetch(url());
    const body = Buffer.from(await res.arrayBuffer());
    assert.equal(res.status, 200, body.toString());
    assert.equal(res.headers.get("content-length"), String(blob.length));
    assert.ok(body.equals(blob), "body differs from the file");
  });

  test("Range: bytes=10-19 → 206 with those 10 bytes", async () => {
    const res = await fetch(url(), { headers: { range: "bytes=10-19" } });
    const body = Buffer.from(await res.arrayBuffer());
    assert.equal(res.status, 206, body.toString());
    assert.equal(res.headers.get("content-range"), `bytes 10-19/${blob.length}`);
    assert.ok(body.equals(blob.subarray(10, 20)));
  });

  test("a signed request for a missing key → 404 NoSuchKey", async () => {
    const res = await fetch(url({ key: "blobs/sha256/" + "0".repeat(64) }));
    assert.equal(res.status, 404);
    assert.match(await res.text(), /NoSuchKey/);
  });

  test("tampered signature → 403", async () => {
    const good = new URL(url());
    const sig = good.searchParams.get("X-Amz-Signature");
    good.searchParams.set("X-Amz-Signature", (sig[0] === "0" ? "1" : "0") + sig.slice(1));
    assert.match(await status403(good, "tampered signature"), /SignatureDoesNotMatch/);
    // A signature for another key does not open this one either.
    const other = new URL(url({ key: "blobs/sha256/other" }));
    const moved = new URL(url());
    moved.searchParams.set("X-Amz-Signature", other.searchParams.get("X-Amz-Signature"));
    assert.match(await status403(moved, "signature of another key"), /SignatureDoesNotMatch/);
  });

  test("wrong secret → 403", async () => {
    assert.match(await status403(url({ secretKey: SK + "x" }), "wrong secret"), /SignatureDoesNotMatch/);
  });

  test("expired URL → 403; an older but unexpired one still works", async () => {
    const hourAgo = new Date(Date.now() - 3600_000);
    assert.match(await status403(url({ date: hourAgo, expires: 60 }), "expired"), /Request has expired/);
    const res = await fetch(url({ date: new Date(Date.now() - 60_000), expires: 600 }));
    await res.arrayBuffer();
    assert.equal(res.status, 200, "a 1-minute-old URL valid for 10 minutes");
  });

  test("each top-level folder is a bucket; ListObjectsV2 sees the written key", async () => {
    mkdirSync(path.join(s3.dir, "made-on-disk"));
    const buckets = await (await fetch(presign({ endpoint: s3.endpoint, bucket: "", accessKey: AK, secretKey: SK }))).text();
    assert.match(buckets, new RegExp(`<Name>${BUCKET}</Name>`), buckets);
    assert.match(buckets, /<Name>made-on-disk<\/Name>/, buckets);
    const list = await (await fetch(presign({ endpoint: s3.endpoint, bucket: BUCKET, accessKey: AK, secretKey: SK, extraQuery: { "list-type": "2", prefix: "blobs/" } }))).text();
    assert.match(list, new RegExp(`<Key>${key}</Key>`), list);
    assert.doesNotMatch(list, /frontdoor-put/, "putObject's temp file must not show up");
  });
});
