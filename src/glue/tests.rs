//! The middle test tier: the glue's JS conversions, run in a JS engine (Node) by
//! `wasm-bindgen-test-runner` (`scripts/test`: `cargo test --target wasm32-unknown-unknown --lib`).
//! What a host test cannot reach and an end-to-end test reaches only through a whole pull: the
//! runtime's `Headers` both ways, KV entries with their read-day metadata (get, put, list pages),
//! `[vars]` tables as settings, Analytics Engine points, and the `Response` built from a reply.
//! The KV namespace and the dataset are small JS fakes with the runtime's shapes.

use super::js::{self, AnalyticsEngineDataset, KvNamespace};
use crate::error::{ErrorCode, RegistryError};
use crate::ports::{Body, Headers, Reply};
use js_sys::{Function, Reflect, JSON};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::wasm_bindgen_test;

/// A JS value from an expression (`new Function("return …")`).
fn js(expr: &str) -> JsValue {
    Function::new_no_args(&format!("return {expr}"))
        .call0(&JsValue::NULL)
        .expect("a JS expression")
}

fn json(value: &JsValue) -> String {
    JSON::stringify(value).unwrap().as_string().unwrap()
}

/// A `KVNamespace` with the runtime's shapes: `getWithMetadata` gives `{value, metadata}` (both
/// `null` for a missing key), `list` pages by `limit` with an opaque `cursor` and
/// `list_complete`, and every call is recorded in `calls`.
const FAKE_KV: &str = r#"(() => {
  const store = new Map();
  return {
    calls: [],
    store,
    async getWithMetadata(key, type) {
      this.calls.push(["get", key, type]);
      const e = store.get(key);
      return e ? { value: e.value, metadata: e.metadata ?? null } : { value: null, metadata: null };
    },
    async put(key, value, options) {
      if (!(value instanceof ArrayBuffer)) throw new TypeError("put wants an ArrayBuffer here");
      this.calls.push(["put", key, JSON.stringify(options)]);
      store.set(key, { value: value.slice(0), metadata: options?.metadata });
    },
    async list(options) {
      this.calls.push(["list", JSON.stringify(options)]);
      const names = [...store.keys()].filter((k) => k.startsWith(options.prefix ?? "")).sort();
      const start = options.cursor ? Number(options.cursor) : 0;
      const page = names.slice(start, start + options.limit);
      const end = start + page.length;
      const keys = page.map((name) => {
        const m = store.get(name).metadata;
        return m === undefined ? { name } : { name, metadata: m };
      });
      return end < names.length
        ? { keys, list_complete: false, cursor: String(end) }
        : { keys, list_complete: true, cacheStatus: null };
    },
    async delete(key) {
      this.calls.push(["delete", key]);
      store.delete(key);
    },
  };
})()"#;

#[wasm_bindgen_test]
fn headers_both_ways() {
    let mut core = Headers::new();
    core.set("Content-Type", crate::oci::OCI_INDEX);
    core.append("vary", "accept");
    core.append("Vary", "range");
    core.set("docker-content-digest", "sha256:00");
    let runtime = js::to_js_headers(&core).unwrap();
    assert_eq!(
        runtime.get("content-type").unwrap().as_deref(),
        Some(crate::oci::OCI_INDEX)
    );
    // Both values reach the runtime; it joins them when read.
    assert_eq!(
        runtime.get("vary").unwrap().as_deref(),
        Some("accept, range")
    );

    let from = worker::Headers(js(
        r#"new Headers([["Content-Type", "text/plain"], ["X-Several", "1"], ["x-several", "2"], ["WWW-Authenticate", "Bearer realm=\"https://a/t\",service=\"r\""]])"#,
    )
    .unchecked_into());
    let back = js::from_js_headers(&from);
    let mut got: Vec<(&str, &str)> = back.iter().collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("content-type", "text/plain"),
            (
                "www-authenticate",
                "Bearer realm=\"https://a/t\",service=\"r\""
            ),
            ("x-several", "1, 2"),
        ]
    );

    // A value the runtime refuses is an error, not a panic.
    let mut bad = Headers::new();
    bad.set("x-bad", "a\nb");
    assert!(js::to_js_headers(&bad).is_err());
}

#[wasm_bindgen_test]
fn read_day_metadata() {
    assert_eq!(json(&js::metadata(20_422)), r#"{"read":20422}"#);
    let cases: &[(&str, Option<u64>)] = &[
        ("({read: 20422})", Some(20_422)),
        ("({read: 0})", Some(0)),
        ("({read: -1})", None),
        ("({read: 1.5})", None),
        ("({read: '7'})", None),
        ("({day: 7})", None),
        ("null", None),
        ("undefined", None),
        ("7", None),
        ("'{\"read\":7}'", None),
    ];
    for (expr, want) in cases {
        assert_eq!(js::read_day(&js(expr)), *want, "{expr}");
    }
}

#[wasm_bindgen_test]
async fn kv_entries_with_metadata() {
    let fake = js(FAKE_KV);
    let kv: KvNamespace = fake.clone().unchecked_into();
    assert_eq!(kv.get_entry("manifests/absent").await, Ok(None));

    let bytes: Vec<u8> = (0..=255).collect();
    kv.put_entry("manifests/a", &bytes, 20_400)
        .unwrap()
        .await
        .unwrap();
    assert_eq!(
        kv.get_entry("manifests/a").await,
        Ok(Some((bytes.clone(), Some(20_400))))
    );
    // A value written by something else, without metadata: the bytes, no read day.
    js("(kv) => kv.store.set('manifests/b', { value: new Uint8Array([1, 2]).buffer })")
        .unchecked_into::<Function>()
        .call1(&JsValue::NULL, &fake)
        .unwrap();
    assert_eq!(
        kv.get_entry("manifests/b").await,
        Ok(Some((vec![1, 2], None)))
    );
    kv.put_entry("tags/x", b"t", 3).unwrap().await.unwrap();

    // Pages of one, under a prefix: the cursor is handed back until the listing is complete.
    let (page, cursor) = kv.list_page("manifests/", None, 1).await.unwrap();
    assert_eq!(page, [("manifests/a".to_owned(), Some(20_400))]);
    let cursor = cursor.expect("a second page");
    let (page, cursor) = kv.list_page("manifests/", Some(&cursor), 1).await.unwrap();
    assert_eq!(page, [("manifests/b".to_owned(), None)]);
    assert_eq!(cursor, None);

    kv.delete("manifests/a").await.unwrap();
    assert_eq!(kv.get_entry("manifests/a").await, Ok(None));

    let calls = json(&Reflect::get(&fake, &"calls".into()).unwrap());
    assert!(
        calls.contains(r#"["get","manifests/a","arrayBuffer"]"#),
        "{calls}"
    );
    assert!(
        calls.contains(r#"["put","manifests/a","{\"metadata\":{\"read\":20400}}"]"#),
        "{calls}"
    );
    assert!(
        calls.contains(r#"["list","{\"prefix\":\"manifests/\",\"limit\":1,\"cursor\":\"1\"}"]"#),
        "{calls}"
    );
}

#[wasm_bindgen_test]
fn vars_tables_are_settings() {
    let env: worker::Env = js(r#"({
        PLAIN: "https://registry-1.docker.io",
        JSON_TEXT: "{\"docker.io\": {\"url\": \"https://r.example\"}}",
        UPSTREAMS: { "docker.io": { url: "https://r.example", fallback: [{ url: "https://m.example" }] } },
        EMPTY_TABLE: {},
        LIST: ["a", "b"],
        NUMBER: 5,
        CACHE: new Map(),
    })"#)
    .unchecked_into();
    let lookup = |name: &str| super::lookup(&env, name);
    assert_eq!(
        lookup("PLAIN").as_deref(),
        Some("https://registry-1.docker.io")
    );
    assert_eq!(
        lookup("JSON_TEXT").as_deref(),
        Some(r#"{"docker.io": {"url": "https://r.example"}}"#)
    );
    assert_eq!(
        lookup("UPSTREAMS").as_deref(),
        Some(
            r#"{"docker.io":{"url":"https://r.example","fallback":[{"url":"https://m.example"}]}}"#
        )
    );
    assert_eq!(lookup("EMPTY_TABLE").as_deref(), Some("{}"));
    // Not a setting: absent, an array, a number, a binding.
    for name in ["ABSENT", "LIST", "NUMBER", "CACHE"] {
        assert_eq!(lookup(name), None, "{name}");
    }
    // The table is read as the core reads a setting.
    let config = crate::config::Config::load(lookup).unwrap();
    let upstream = &config.upstreams["docker.io"];
    assert_eq!(upstream.url.as_str(), "https://r.example/");
    assert_eq!(upstream.fallbacks.len(), 1);
}

#[wasm_bindgen_test]
fn analytics_engine_points() {
    let fake = js("({ points: [], writeDataPoint(p) { this.points.push(p); } })");
    let dataset: AnalyticsEngineDataset = fake.clone().unchecked_into();
    let outcome = crate::proxy::Outcome {
        registry: Some("docker.io".into()),
        repository: Some("library/alpine".into()),
        upstream_calls: 2,
        ..Default::default()
    };
    let req = crate::analytics::Request {
        role: "worker",
        method: "GET",
        status: 200,
        bytes: Some(1234),
        ms: 7,
    };
    let point = crate::analytics::data_point(&req, &outcome);
    dataset
        .write_data_point(&point.index, &point.blobs, &point.doubles)
        .unwrap();
    let points = Reflect::get(&fake, &"points".into()).unwrap();
    let written = js_sys::Array::from(&points);
    assert_eq!(written.length(), 1);
    let p = written.get(0);
    assert_eq!(
        json(&Reflect::get(&p, &"indexes".into()).unwrap()),
        r#"["docker.io"]"#
    );
    let blobs: Vec<String> = js_sys::Array::from(&Reflect::get(&p, &"blobs".into()).unwrap())
        .iter()
        .map(|b| b.as_string().unwrap())
        .collect();
    assert_eq!(blobs, point.blobs);
    assert_eq!(&blobs[..2], ["docker.io", "library/alpine"]);
    let doubles: Vec<f64> = js_sys::Array::from(&Reflect::get(&p, &"doubles".into()).unwrap())
        .iter()
        .map(|d| d.as_f64().unwrap())
        .collect();
    assert_eq!(doubles, point.doubles);
    assert_eq!(&doubles[..3], [200.0, 1234.0, 2.0]);

    // A dataset that throws is an error for the log, not a failed request.
    let throwing: AnalyticsEngineDataset =
        js("({ writeDataPoint() { throw new Error('quota'); } })").unchecked_into();
    let e = throwing.write_data_point("i", &[], &[]).unwrap_err();
    assert!(e.contains("quota"), "{e}");
}

/// The `Response` the runtime is handed for `reply`, its header `name`, and its body as text.
fn respond(reply: Reply<super::Stream>) -> web_sys::Response {
    super::into_response(reply).unwrap().into()
}

fn header(response: &web_sys::Response, name: &str) -> Option<String> {
    response.headers().get(name).unwrap()
}

async fn text(response: &web_sys::Response) -> String {
    JsFuture::from(response.text().unwrap())
        .await
        .unwrap()
        .as_string()
        .unwrap()
}

#[wasm_bindgen_test]
async fn responses_from_replies() {
    let mut headers = Headers::new();
    headers.set("content-type", "application/octet-stream");
    headers.set("content-range", "bytes 1-3/10");
    headers.append("vary", "accept");
    headers.append("vary", "range");
    let response = respond(Reply {
        status: 206,
        headers,
        body: Body::Bytes(b"abc".to_vec()),
    });
    assert_eq!(response.status(), 206);
    assert_eq!(
        header(&response, "content-range").as_deref(),
        Some("bytes 1-3/10")
    );
    assert_eq!(header(&response, "vary").as_deref(), Some("accept, range"));
    assert_eq!(text(&response).await, "abc");

    // A HEAD answer: no body, its Content-Length kept.
    let mut headers = Headers::new();
    headers.set("content-length", "1234");
    headers.set("docker-content-digest", "sha256:ab");
    let response = respond(Reply {
        status: 200,
        headers,
        body: Body::Empty,
    });
    assert!(response.body().is_none());
    assert_eq!(header(&response, "content-length").as_deref(), Some("1234"));
    assert_eq!(
        header(&response, "docker-content-digest").as_deref(),
        Some("sha256:ab")
    );

    // A 304 with no stream: no body (a Response refuses a body with a null-body status).
    let response = respond(Reply {
        status: 304,
        headers: Headers::new(),
        body: Body::Stream(None),
    });
    assert_eq!(response.status(), 304);
    assert!(response.body().is_none());

    // A stream is passed through as it is.
    let stream: web_sys::ReadableStream = js(
        "new ReadableStream({ start(c) { c.enqueue(new TextEncoder().encode('streamed')); c.close(); } })",
    )
    .unchecked_into();
    let response = respond(Reply {
        status: 200,
        headers: Headers::new(),
        body: Body::Stream(Some(stream)),
    });
    assert_eq!(text(&response).await, "streamed");

    // An OCI error body.
    let e = RegistryError::new(ErrorCode::ManifestUnknown, "no such tag");
    let response = respond(crate::proxy::error_reply(&e, false));
    assert_eq!(response.status(), 404);
    assert_eq!(
        header(&response, "content-type").as_deref(),
        Some("application/json")
    );
    let body: serde_json::Value = serde_json::from_str(&text(&response).await).unwrap();
    assert_eq!(body["errors"][0]["code"], "MANIFEST_UNKNOWN");
}

#[wasm_bindgen_test]
async fn a_read_buffer_goes_back_to_its_pool_only_once_every_write_of_it_is_done() {
    use super::pump::{Outlet, Pool, READ_BYTES};
    // A sink whose writes complete only when the test says so.
    let sink = js(
        "(() => { const s = { done: [] }; s.stream = new WritableStream({ \
         write() { return new Promise((r) => s.done.push(r)); } }); return s; })()",
    );
    let stream: web_sys::WritableStream = Reflect::get(&sink, &"stream".into()).unwrap().into();
    let pool = Pool::default();
    let buffer = js_sys::ArrayBuffer::new(READ_BYTES);
    let chunk = js_sys::Uint8Array::new(&buffer);
    let lease = pool.lease(buffer);
    let mut outlet = Outlet::with_window(Some(&stream), u64::MAX);
    outlet.write(&chunk, Some(lease.clone())).await.unwrap();
    drop(lease);
    assert!(
        pool.take().is_none(),
        "the write is not done: the buffer is still the chunk's"
    );
    // The sink takes the chunk (once the stream has started): once the outlet has seen its
    // write done, the buffer is free.
    let tick: js_sys::Promise = js("new Promise((r) => setTimeout(r, 0))").into();
    JsFuture::from(tick).await.unwrap();
    assert!(
        pool.take().is_none(),
        "the sink has the chunk and has not finished with it"
    );
    let done: Function = Reflect::get(&Reflect::get(&sink, &"done".into()).unwrap(), &0.into())
        .unwrap()
        .into();
    done.call0(&JsValue::NULL).unwrap();
    outlet.close().await;
    let back = pool.take().expect("the buffer is back");
    assert_eq!(back.byte_length(), READ_BYTES);
    assert!(pool.take().is_none(), "once");
    // Only whole read buffers are kept (a small read's copy is not one).
    pool.give(js_sys::ArrayBuffer::new(10));
    assert!(pool.take().is_none());
}
