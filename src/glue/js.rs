//! Direct bindings to the runtime's KV namespace and Analytics Engine dataset, for what the door
//! needs of them: plain JS objects in and out. `worker`'s wrappers convert options, metadata and
//! listings through serde-wasm-bindgen (and data points through builders), which cost more of the
//! gzipped upload than the calls themselves.

use js_sys::{Array, ArrayBuffer, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use worker::Env;

#[wasm_bindgen]
extern "C" {
    /// A `KVNamespace` binding.
    pub type KvNamespace;

    #[wasm_bindgen(method, catch, js_name = getWithMetadata)]
    fn get_with_metadata(this: &KvNamespace, key: &str, type_: &str) -> Result<Promise, JsValue>;

    #[wasm_bindgen(method, catch, js_name = put)]
    fn put_with_options(
        this: &KvNamespace,
        key: &str,
        value: &ArrayBuffer,
        options: &Object,
    ) -> Result<Promise, JsValue>;

    #[wasm_bindgen(method, catch, js_name = list)]
    fn list_with_options(this: &KvNamespace, options: &Object) -> Result<Promise, JsValue>;

    #[wasm_bindgen(method, catch, js_name = delete)]
    fn delete_key(this: &KvNamespace, key: &str) -> Result<Promise, JsValue>;

    /// An `AnalyticsEngineDataset` binding.
    pub type AnalyticsEngineDataset;

    #[wasm_bindgen(method, catch, js_name = writeDataPoint)]
    fn write_data_point_object(
        this: &AnalyticsEngineDataset,
        point: &Object,
    ) -> Result<(), JsValue>;
}

/// The core's header list as the runtime's `Headers`: every value appended, in order (the
/// runtime joins repeated names with `, ` when read).
pub fn to_js_headers(headers: &crate::ports::Headers) -> worker::Result<worker::Headers> {
    let js = worker::Headers::new();
    for (name, value) in headers.iter() {
        js.append(name, value)?;
    }
    Ok(js)
}

/// The runtime's `Headers` as the core's list: names lowercase (as the runtime gives them),
/// repeated values already joined with `, `.
pub fn from_js_headers(headers: &worker::Headers) -> crate::ports::Headers {
    let mut out = crate::ports::Headers::new();
    for (name, value) in headers.entries() {
        out.append(&name, value);
    }
    out
}

/// A binding by name, `None` when the environment has none (as `Env::kv` and friends decide).
pub fn binding<T: JsCast>(env: &Env, name: &str) -> Option<T> {
    let value = Reflect::get(env, &name.into()).ok()?;
    (!value.is_undefined()).then(|| value.unchecked_into())
}

/// The text of a JS failure, as `worker::kv::KvError` wrote it.
pub fn failure(e: JsValue) -> String {
    format!("js error: {e:?}")
}

/// A record's metadata: `{"read": <day>}`, the day it was last read (see `crate::retention`).
pub(super) fn metadata(read_day: u64) -> Object {
    let meta = Object::new();
    let _ = Reflect::set(&meta, &"read".into(), &(read_day as f64).into());
    meta
}

/// The day a record's metadata says it was read; `None` for no metadata, or metadata of another
/// shape (the record is then marked anew rather than trusted).
pub(super) fn read_day(meta: &JsValue) -> Option<u64> {
    if !meta.is_object() {
        return None;
    }
    let day = Reflect::get(meta, &"read".into()).ok()?.as_f64()?;
    (day >= 0.0 && day.fract() == 0.0 && day <= u64::MAX as f64).then_some(day as u64)
}

/// Sets `name` on an options object (the runtime ignores unknown names; `Reflect.set` on a fresh
/// plain object cannot fail).
fn set(object: &Object, name: &str, value: &JsValue) {
    let _ = Reflect::set(object, &name.into(), value);
}

impl KvNamespace {
    /// `getWithMetadata(key, "arrayBuffer")`: the value's bytes and its read day.
    pub async fn get_entry(&self, key: &str) -> Result<Option<(Vec<u8>, Option<u64>)>, String> {
        let promise = self
            .get_with_metadata(key, "arrayBuffer")
            .map_err(failure)?;
        let got = JsFuture::from(promise).await.map_err(failure)?;
        let value = Reflect::get(&got, &"value".into()).map_err(failure)?;
        let Some(buffer) = value.dyn_ref::<ArrayBuffer>() else {
            return Ok(None);
        };
        let meta = Reflect::get(&got, &"metadata".into()).map_err(failure)?;
        Ok(Some((Uint8Array::new(buffer).to_vec(), read_day(&meta))))
    }

    /// Starts `put(key, bytes, {metadata: {read: day}})`; the bytes are copied before it returns.
    pub fn put_entry(&self, key: &str, value: &[u8], read_day: u64) -> Result<JsFuture, String> {
        let bytes = Uint8Array::new_with_length(value.len() as u32);
        bytes.copy_from(value);
        let options = Object::new();
        set(&options, "metadata", &metadata(read_day));
        let promise = self
            .put_with_options(key, &bytes.buffer(), &options)
            .map_err(failure)?;
        Ok(JsFuture::from(promise))
    }

    pub async fn delete(&self, key: &str) -> Result<(), String> {
        let promise = self.delete_key(key).map_err(failure)?;
        JsFuture::from(promise).await.map(drop).map_err(failure)
    }

    /// `list({prefix, limit, cursor})`: each key with its read day, and the cursor of the next
    /// page (`None` once the listing is complete).
    pub async fn list_page(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<(String, Option<u64>)>, Option<String>), String> {
        let options = Object::new();
        set(&options, "prefix", &prefix.into());
        set(&options, "limit", &limit.into());
        if let Some(cursor) = cursor {
            set(&options, "cursor", &cursor.into());
        }
        let promise = self.list_with_options(&options).map_err(failure)?;
        let listed = JsFuture::from(promise).await.map_err(failure)?;
        let field = |object: &JsValue, name: &str| Reflect::get(object, &name.into());
        let keys: Array = field(&listed, "keys").map_err(failure)?.unchecked_into();
        let mut out = Vec::with_capacity(keys.length() as usize);
        for key in keys.iter() {
            let name = field(&key, "name").map_err(failure)?.as_string();
            let meta = field(&key, "metadata").map_err(failure)?;
            if let Some(name) = name {
                out.push((name, read_day(&meta)));
            }
        }
        let complete = field(&listed, "list_complete")
            .map_err(failure)?
            .is_truthy();
        let cursor = field(&listed, "cursor").map_err(failure)?.as_string();
        Ok((out, cursor.filter(|_| !complete)))
    }
}

impl AnalyticsEngineDataset {
    /// `writeDataPoint({indexes, blobs, doubles})`.
    pub fn write_data_point(
        &self,
        index: &str,
        blobs: &[String],
        doubles: &[f64],
    ) -> Result<(), String> {
        let point = Object::new();
        set(&point, "indexes", &Array::of1(&index.into()));
        let array = Array::new();
        for blob in blobs {
            array.push(&blob.into());
        }
        set(&point, "blobs", &array);
        let array = Array::new();
        for double in doubles {
            array.push(&(*double).into());
        }
        set(&point, "doubles", &array);
        self.write_data_point_object(&point).map_err(failure)
    }
}

/// RSASSA-PKCS1-v1_5 with SHA-256 by a PKCS#8 key, through the runtime's `crypto.subtle`
/// (called by name: no web-sys bindings, nothing in the upload but these calls).
pub async fn rs256(pkcs8_der: &[u8], message: &[u8]) -> Result<Vec<u8>, JsValue> {
    let crypto = Reflect::get(&js_sys::global(), &"crypto".into())?;
    let subtle = Reflect::get(&crypto, &"subtle".into())?;
    let call = |name: &str, args: &Array| -> Result<Promise, JsValue> {
        let f: js_sys::Function = Reflect::get(&subtle, &name.into())?.dyn_into()?;
        f.apply(&subtle, args)?.dyn_into()
    };
    let algorithm = Object::new();
    set(&algorithm, "name", &"RSASSA-PKCS1-v1_5".into());
    set(&algorithm, "hash", &"SHA-256".into());
    let usages = Array::of1(&"sign".into());
    let import = Array::of5(
        &"pkcs8".into(),
        &Uint8Array::from(pkcs8_der),
        &algorithm,
        &false.into(),
        &usages,
    );
    let key = JsFuture::from(call("importKey", &import)?).await?;
    let sign = Array::of3(
        &"RSASSA-PKCS1-v1_5".into(),
        &key,
        &Uint8Array::from(message),
    );
    let signature = JsFuture::from(call("sign", &sign)?).await?;
    Ok(Uint8Array::new(&signature).to_vec())
}
