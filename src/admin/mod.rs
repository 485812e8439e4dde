//! The admin listener: `/metrics` (Prometheus text format, the gateway's own registry, with
//! the gauges that change with time alone set at each scrape: `scrape.rs`),
//! `/healthz` (the process is up) and `/readyz` (it takes traffic: false once shutdown began;
//! its body also says whether the second-stage classifier runs, and why not),
//! all unauthenticated; and the token-protected admin API under `/admin/` (`api.rs`).

mod api;
mod scrape;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio_util::sync::CancellationToken;

use crate::body::{full, Body};
use crate::metrics::Metrics;
use crate::reload::Reloader;
use crate::state::AppState;

#[derive(Clone)]
pub struct AdminService {
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
    /// The gateway's shared state: the live config, and whatever live per-tenant state
    /// (spend, budgets, rate limits) the admin API reports (see `api::tenant`).
    pub state: AppState,
    /// `None` when the config does not come from files (the demo): nothing to reload.
    pub reloader: Option<Arc<Reloader>>,
    /// When the gateway started: `loaded_at` of a config that is never reloaded.
    pub started_at: SystemTime,
}

impl AdminService {
    pub fn new(
        state: AppState,
        reloader: Option<Arc<Reloader>>,
        shutdown: CancellationToken,
    ) -> AdminService {
        AdminService {
            metrics: state.metrics.clone(),
            shutdown,
            state,
            reloader,
            started_at: SystemTime::now(),
        }
    }

    pub fn handle(&self, request: &Request<Incoming>) -> Response<Body> {
        let path = request.uri().path();
        if path == "/admin" || path.starts_with("/admin/") {
            return api::handle(self, request.method(), path, request.headers());
        }
        let (status, content_type, body): (StatusCode, &'static str, Bytes) = match path {
            "/metrics" => (
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                Bytes::from(scrape::render(&self.state)),
            ),
            "/healthz" => (StatusCode::OK, "text/plain", Bytes::from_static(b"ok\n")),
            "/readyz" if self.shutdown.is_cancelled() => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                Bytes::from_static(b"shutting down\n"),
            ),
            // Ready with or without the second stage; the details say which.
            "/readyz" => (
                StatusCode::OK,
                "text/plain",
                Bytes::from(format!("ready\n{}\n", self.state.second_stage.status())),
            ),
            _ => (
                StatusCode::NOT_FOUND,
                "text/plain",
                Bytes::from_static(b"not found\n"),
            ),
        };
        let mut response = Response::new(full(body));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        response
    }
}

impl tower::Service<Request<Incoming>> for AdminService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        std::future::ready(Ok(self.handle(&request)))
    }
}
