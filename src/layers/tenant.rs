//! Tenant authentication: maps the caller's API key to its tenant and pins the config
//! snapshot for the rest of the request (loaded once, so a reload mid-request cannot mix
//! two configs). Keys are looked up by their SHA-256, never stored or logged in clear.
//!
//! Infallible: a caller without a valid key gets the 401 response here, and every response
//! of an authenticated request (errors from below included, which the error layer under this
//! one has turned into responses) carries the `TenantName` fact for the metrics above.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use http::{header, HeaderMap, Request, Response};
use tower::{Layer, Service};

use super::BoxFuture;
use crate::body::Body;
use crate::config::{Snapshot, Tenant};
use crate::error::GatewayError;
use crate::facts::{HeadWitness, TenantName};

/// The authenticated caller and the config it is served under.
#[derive(Clone)]
pub struct TenantCtx {
    pub snapshot: Arc<Snapshot>,
    pub tenant: Arc<Tenant>,
}

#[derive(Clone)]
pub struct TenantAuthLayer {
    live: Arc<ArcSwap<Snapshot>>,
}

impl TenantAuthLayer {
    pub fn new(live: Arc<ArcSwap<Snapshot>>) -> Self {
        TenantAuthLayer { live }
    }
}

impl<S> Layer<S> for TenantAuthLayer {
    type Service = TenantAuth<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TenantAuth {
            inner,
            live: self.live.clone(),
        }
    }
}

#[derive(Clone)]
pub struct TenantAuth<S> {
    inner: S,
    live: Arc<ArcSwap<Snapshot>>,
}

/// The key from `Authorization: Bearer`, or from `api-key` / `x-api-key` (Azure- and
/// Anthropic-style clients).
fn api_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v.to_str().ok()?;
        let (scheme, key) = v.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| key.trim());
    }
    headers
        .get("api-key")
        .or_else(|| headers.get("x-api-key"))
        .and_then(|v| v.to_str().ok())
}

impl<S, B> Service<Request<B>> for TenantAuth<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let snapshot = self.live.load_full();
        let tenant = api_key(request.headers())
            .filter(|k| !k.is_empty())
            .and_then(|key| snapshot.tenant_for_key(key))
            .cloned();
        let Some(tenant) = tenant else {
            return Box::pin(async { Ok(GatewayError::InvalidApiKey.respond()) });
        };
        HeadWitness::tenant(&request, &tenant.name);
        let name = TenantName(tenant.name.clone());
        request
            .extensions_mut()
            .insert(TenantCtx { snapshot, tenant });
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            response.extensions_mut().insert(name);
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::api_key;
    use http::HeaderMap;

    #[test]
    fn reads_bearer_and_alternatives() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer sk-abc".parse().unwrap());
        assert_eq!(api_key(&h), Some("sk-abc"));
        let mut h = HeaderMap::new();
        h.insert("authorization", "Basic xyz".parse().unwrap());
        assert_eq!(api_key(&h), None);
        let mut h = HeaderMap::new();
        h.insert("api-key", "k2".parse().unwrap());
        assert_eq!(api_key(&h), Some("k2"));
    }
}
