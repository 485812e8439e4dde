//! Response body types of the gateway.
//!
//! Every response body is a `Body` (a boxed `http_body::Body` of `Bytes`). Bodies are wrapped,
//! never buffered: each wrapper passes frames straight through and observes them on the way.
//! - `relay::SseRelay` turns an upstream event stream into the client's SSE stream with
//!   first-token / idle / total deadlines, keep-alive comments and one final error event.
//! - `observed::ObservedBody` is the one wrapper around every response: it runs the
//!   end-of-body work the layers left in `OnEnd` exactly once (end of stream, error or drop)
//!   and keeps a capped copy when one was asked for (the response cache).

pub mod observed;
pub mod relay;

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The response body type used on every layer of the stack.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Bytes of one SSE `data:` event.
pub fn sse_data(json: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(json.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

pub const SSE_DONE: &[u8] = b"data: [DONE]\n\n";
pub const SSE_KEEPALIVE: &[u8] = b": keep-alive\n\n";
