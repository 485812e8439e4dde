//! `GET /health` on the API listener, for load balancers: answered before tenant auth (no
//! key), not counted as a request. 200 while the gateway takes traffic, 503 once shutdown
//! began (the same as the admin listener's `/readyz`), so a balancer stops sending here
//! while in-flight requests drain.

use std::convert::Infallible;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use tokio_util::sync::CancellationToken;
use tower::{Layer, Service};

use super::BoxFuture;
use crate::body::{full, Body};

pub const HEALTH_PATH: &str = "/health";

#[derive(Clone)]
pub struct HealthLayer {
    shutdown: CancellationToken,
}

impl HealthLayer {
    pub fn new(shutdown: CancellationToken) -> Self {
        HealthLayer { shutdown }
    }
}

impl<S> Layer<S> for HealthLayer {
    type Service = Health<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Health {
            inner,
            shutdown: self.shutdown.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Health<S> {
    inner: S,
    shutdown: CancellationToken,
}

fn health_response(draining: bool) -> Response<Body> {
    let (status, body) = if draining {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            &br#"{"status":"shutting_down"}"#[..],
        )
    } else {
        (StatusCode::OK, &br#"{"status":"ok"}"#[..])
    };
    let mut response = Response::new(full(Bytes::from_static(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

impl<S, B> Service<Request<B>> for Health<S>
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

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let method = request.method();
        let is_health = request.uri().path() == HEALTH_PATH
            && (method == Method::GET || method == Method::HEAD);
        if is_health {
            let response = health_response(self.shutdown.is_cancelled());
            return Box::pin(async move { Ok(response) });
        }
        Box::pin(self.inner.call(request))
    }
}
