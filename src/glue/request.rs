//! Outbound `Request`s built with web-sys directly, not with `worker::Request::new_with_init`:
//! that converts a `worker::RequestInit` through code for its `cf` properties (serde-wasm-bindgen
//! and all), ~5 KiB of the gzipped upload, even though the door sets no `cf` property.

use wasm_bindgen::JsValue;
use worker::{Headers, Request};

/// What the door sets on a request: no `cf` properties, no cache mode.
pub struct Init<'a> {
    pub method: &'a str,
    pub headers: Option<&'a Headers>,
    pub body: Option<&'a JsValue>,
    /// `redirect: "manual"`: a 3xx comes back as it is, for the door to follow (or not) itself.
    pub manual_redirect: bool,
}

/// `new Request(url, init)`, with `worker::Request::new_with_init`'s error for a bad URL.
pub fn new(url: &str, init: Init<'_>) -> worker::Result<Request> {
    let js = web_sys::RequestInit::new();
    js.set_method(init.method);
    if let Some(headers) = init.headers {
        js.set_headers(headers.as_ref());
    }
    if let Some(body) = init.body {
        js.set_body(body);
    }
    if init.manual_redirect {
        js.set_redirect(web_sys::RequestRedirect::Manual);
    }
    web_sys::Request::new_with_str_and_init(url, &js)
        .map(Request::from)
        .map_err(|e| {
            worker::Error::JsError(
                e.as_string()
                    .unwrap_or_else(|| "invalid URL or options for Request".to_string()),
            )
        })
}
