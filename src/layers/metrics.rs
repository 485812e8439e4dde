//! Request metrics: counts and duration by tenant, tier, model and outcome, and the
//! in-flight gauge. Sits above the error layer so synthesized errors (401, 413, ...) count
//! too, and records when the response *body* ends (end of stream, or the client leaving),
//! not when the headers go out. A request whose client leaves before the response head
//! (the request future is dropped) is recorded too, with the outcome `cancelled`.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tokio::time::Instant;
use tower::{Layer, Service};

use super::BoxFuture;
use crate::body::guard::{BodyEnd, GuardedBody};
use crate::body::Body;
use crate::error::ErrorKind;
use crate::metrics::{Metrics, RequestLabels};

#[derive(Clone)]
pub struct MetricsLayer {
    metrics: Arc<Metrics>,
}

impl MetricsLayer {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        MetricsLayer { metrics }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = RecordMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RecordMetrics {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RecordMetrics<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

/// Holds one unit of the in-flight gauge; released on drop, even if a layer panics.
struct InFlight(Arc<Metrics>);

impl InFlight {
    fn enter(metrics: &Arc<Metrics>) -> InFlight {
        metrics.in_flight.inc();
        InFlight(metrics.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

/// Records a request whose future was dropped before it had a response head.
struct UntilHead {
    armed: bool,
    metrics: Arc<Metrics>,
    labels: Arc<RequestLabels>,
    started: Instant,
}

impl Drop for UntilHead {
    fn drop(&mut self) {
        if self.armed {
            // Dropped while unwinding: a handler panicked (the panic layer answers 500).
            let outcome = if std::thread::panicking() {
                "internal_error"
            } else {
                "cancelled"
            };
            record(&self.metrics, &self.labels, outcome, self.started);
        }
    }
}

fn record(metrics: &Metrics, labels: &RequestLabels, outcome: &str, started: Instant) {
    let (tenant, tier, model) = (labels.tenant(), labels.tier(), labels.model());
    metrics
        .requests
        .with_label_values(&[tenant, tier, model, outcome])
        .inc();
    metrics
        .request_duration
        .with_label_values(&[tenant, tier, model])
        .observe(started.elapsed().as_secs_f64());
}

impl<S, B> Service<Request<B>> for RecordMetrics<S>
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
        let started = Instant::now();
        let in_flight = InFlight::enter(&self.metrics);
        let labels = Arc::new(RequestLabels::new());
        request.extensions_mut().insert(labels.clone());
        let metrics = self.metrics.clone();
        let future = self.inner.call(request);
        let until_head = UntilHead {
            armed: true,
            metrics: metrics.clone(),
            labels: labels.clone(),
            started,
        };
        Box::pin(async move {
            // Moved in whole, so dropping the future drops (and fires) it.
            let mut until_head = until_head;
            let response = future.await?;
            until_head.armed = false;
            let (parts, body) = response.into_parts();
            let head_outcome = parts.extensions.get::<ErrorKind>().map_or("ok", |k| k.0);
            let body = GuardedBody::new(body, move |end| {
                let outcome = labels.outcome.get().copied().unwrap_or(match end {
                    BodyEnd::Complete => head_outcome,
                    BodyEnd::Error => "body_error",
                    BodyEnd::Dropped => "client_disconnected",
                });
                record(&metrics, &labels, outcome, started);
                drop(in_flight);
            });
            Ok(Response::from_parts(parts, Body::new(body)))
        })
    }
}
