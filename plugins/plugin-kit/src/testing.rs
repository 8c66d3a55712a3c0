//! Fixtures for the guests' unit tests: a call context and a request. (Unused functions of an
//! rlib are not linked into a component, so shipping them costs the plugins nothing.)

use crate::types::{Context, Request};

/// The context of a first attempt of event `evt` (type `test`) for endpoint `e` of tenant `t`.
pub fn context() -> Context {
    Context {
        tenant: "t".into(),
        endpoint: "e".into(),
        event_id: "evt".into(),
        event_type: "test".into(),
        attempt: 1,
        timestamp: 0,
    }
}

/// A POST to `https://example.com/hook` with `headers` and `body`.
pub fn request(headers: Vec<(String, String)>, body: &[u8]) -> Request {
    Request {
        method: "POST".into(),
        url: "https://example.com/hook".into(),
        headers,
        body: body.to_vec(),
    }
}
