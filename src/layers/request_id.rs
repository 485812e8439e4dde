//! Request ids: keep a sane incoming `x-request-id`, otherwise mint one; echo it on the
//! response. Owns the request's `RequestCtx` (its id and arrival time), inserted here for
//! every later layer and the upstream call.
//!
//! Minted ids are UUIDs because they also go upstream, and real OpenAI-compatible servers
//! (llama.cpp's among them) answer any other `x-request-id` with a 400. A caller's own id
//! that is not a UUID is echoed and logged but never forwarded (`RequestId::upstream`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response};
use tokio::time::Instant;
use tower::{Layer, Service};

use super::BoxFuture;
use crate::facts::RequestCtx;

pub const REQUEST_ID: &str = "x-request-id";

#[derive(Debug, Clone)]
pub struct RequestId(pub HeaderValue);

impl RequestId {
    /// The id as it may go to a provider: only a UUID (the form servers accept).
    pub fn upstream(&self) -> Option<&HeaderValue> {
        let text = self.0.to_str().ok()?;
        uuid::Uuid::try_parse(text).ok().map(|_| &self.0)
    }
}

#[derive(Debug, Clone, Default)]
pub struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = SetRequestId<S>;
    fn layer(&self, inner: S) -> Self::Service {
        SetRequestId { inner }
    }
}

#[derive(Debug, Clone)]
pub struct SetRequestId<S> {
    inner: S,
}

/// A version-4-shaped UUID of a random per-process prefix and a counter: unique across
/// replicas (60 random bits) without a random-number syscall per request.
fn mint() -> HeaderValue {
    static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&prefix.to_be_bytes());
    bytes[8..].copy_from_slice(&n.to_be_bytes());
    // Sets the version and variant bits (the top bits of the counter half are never used).
    let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    HeaderValue::from_str(id.hyphenated().encode_lower(&mut text))
        .expect("a UUID is a valid header")
}

/// A caller's id is kept only if it is short and plain, so it is safe in logs and headers.
fn acceptable(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(c))
}

impl<S, B, RB> Service<Request<B>> for SetRequestId<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<RB>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let id = match request.headers().get(REQUEST_ID).filter(|v| acceptable(v)) {
            Some(v) => v.clone(),
            None => mint(),
        };
        request.extensions_mut().insert(RequestCtx {
            id: RequestId(id.clone()),
            started: Instant::now(),
        });
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            response.headers_mut().insert(REQUEST_ID, id);
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_ids_are_distinct_uuids_that_may_go_upstream() {
        let (a, b) = (RequestId(mint()), RequestId(mint()));
        assert_ne!(a.0, b.0);
        for id in [&a, &b] {
            let text = id.0.to_str().unwrap();
            let parsed = uuid::Uuid::try_parse(text).expect("a UUID");
            assert_eq!(parsed.get_version_num(), 4, "{text}");
            assert_eq!(id.upstream(), Some(&id.0));
        }
    }

    #[test]
    fn a_callers_id_goes_upstream_only_if_it_is_a_uuid() {
        let plain = RequestId(HeaderValue::from_static("trace-42"));
        assert!(acceptable(&plain.0));
        assert_eq!(plain.upstream(), None);
        let uuid = RequestId(HeaderValue::from_static(
            "0b5bd2a9-4c3e-4c41-9a39-2d4f0a1e7c55",
        ));
        assert_eq!(uuid.upstream(), Some(&uuid.0));
    }
}
