//! Request metrics, and the one `ObservedBody` every response passes through.
//!
//! Counts and duration by tenant, tier, model and outcome, and the in-flight gauge. Each
//! outcome has a class (`OutcomeClass`): `ok`, `client_error` (refused: 4xx), `server_error`
//! (the gateway's or a provider's failure: 5xx, a provider's 429, a stream broken after its
//! 200) or `client_gone` (the client left), so error ratios can count server failures only.
//! Sits above the error layer so synthesized errors (401, 413, ...) count too, and records
//! when the response *body* ends (end of stream, or the client leaving), not when the
//! headers go out: it wraps the body in the `ObservedBody` that also runs the end-of-body
//! hooks the layers below left in `OnEnd`. A request whose client leaves before the response head (the
//! request future is dropped) is recorded too, with the outcome `cancelled`, under the
//! tenant and route its `HeadWitness` noted on the way down.
//!
//! Labels come from typed facts on the response (`TenantName`, `Routed`, `Served`,
//! `ErrorKind`): a request served by a fallback is counted for the model that served it.
//! A request a provider answered also gets its overhead observed (`metrics::Overhead`).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tokio::time::Instant;
use tower::{Layer, Service};

use super::BoxFuture;
use crate::body::observed::{BodyEnd, ObservedBody, OnEnd};
use crate::body::Body;
use crate::error::ErrorKind;
use crate::facts::{HeadWitness, RequestCtx, Routed, Served, TenantName};
use crate::metrics::{Metrics, OutcomeClass, UNKNOWN};
use crate::record::CallRecord;

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

/// A request's metric labels, from the facts its response carries.
struct Labels {
    tenant: Option<Arc<str>>,
    tier: &'static str,
    model: Option<Arc<str>>,
}

impl Labels {
    const NONE: Labels = Labels {
        tenant: None,
        tier: UNKNOWN,
        model: None,
    };

    fn of<B>(response: &Response<B>) -> Labels {
        let ext = response.extensions();
        let tenant = ext.get::<TenantName>().map(|t| t.0.clone());
        match (ext.get::<Served>(), ext.get::<Routed>()) {
            (Some(s), _) => Labels {
                tenant,
                tier: s.tier().as_str(),
                model: Some(s.model.name.clone()),
            },
            (None, Some(r)) => Labels {
                tenant,
                tier: r.tier.as_str(),
                model: Some(r.model.clone()),
            },
            (None, None) => Labels {
                tenant,
                ..Labels::NONE
            },
        }
    }

    fn record(&self, metrics: &Metrics, outcome: Outcome, started: Instant) {
        let tenant = self.tenant.as_deref().unwrap_or(UNKNOWN);
        let model = self.model.as_deref().unwrap_or(UNKNOWN);
        let (outcome, class) = outcome;
        metrics
            .requests
            .with_label_values(&[tenant, self.tier, model, outcome, class.as_str()])
            .inc();
        metrics
            .request_duration
            .with_label_values(&[tenant, self.tier, model])
            .observe(started.elapsed().as_secs_f64());
    }
}

/// A request's `outcome` label and its class.
type Outcome = (&'static str, OutcomeClass);

const OK: Outcome = ("ok", OutcomeClass::Ok);

fn failed(kind: ErrorKind) -> Outcome {
    (kind.0, OutcomeClass::of_fault(kind.1))
}

/// Records a request whose future was dropped before it had a response head.
struct UntilHead {
    armed: bool,
    metrics: Arc<Metrics>,
    witness: Arc<HeadWitness>,
    started: Instant,
}

impl Drop for UntilHead {
    fn drop(&mut self) {
        if self.armed {
            // Dropped while unwinding: a handler panicked (the panic layer answers 500).
            let outcome = if std::thread::panicking() {
                ("internal_error", OutcomeClass::ServerError)
            } else {
                ("cancelled", OutcomeClass::ClientGone)
            };
            let routed = self.witness.routed.get();
            let labels = Labels {
                tenant: self.witness.tenant.get().cloned(),
                tier: routed.map_or(UNKNOWN, |r| r.tier.as_str()),
                model: routed.map(|r| r.model.clone()),
            };
            labels.record(&self.metrics, outcome, self.started);
        }
    }
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
        let witness = Arc::new(HeadWitness::default());
        request.extensions_mut().insert(witness.clone());
        let started = request
            .extensions()
            .get::<RequestCtx>()
            .map_or_else(Instant::now, |ctx| ctx.started);
        let in_flight = InFlight::enter(&self.metrics);
        let metrics = self.metrics.clone();
        let future = self.inner.call(request);
        let until_head = UntilHead {
            armed: true,
            metrics: metrics.clone(),
            witness,
            started,
        };
        Box::pin(async move {
            // Moved in whole, so dropping the future drops (and fires) it.
            let mut until_head = until_head;
            let mut response = future.await?;
            until_head.armed = false;
            let labels = Labels::of(&response);
            let head_outcome = response
                .extensions()
                .get::<ErrorKind>()
                .map_or(OK, |k| failed(*k));
            let call: Option<Arc<CallRecord>> = response
                .extensions()
                .get::<Served>()
                .map(|s| s.call.clone());
            let on_end = response.extensions_mut().remove::<OnEnd>();
            let (parts, body) = response.into_parts();
            let body = ObservedBody::new(body, on_end, move |ended| {
                let stream_failure = call.as_ref().and_then(|c| c.failure());
                let outcome = stream_failure.map_or(
                    match ended.end {
                        BodyEnd::Complete => head_outcome,
                        // The body broke on our side (hyper aborts the connection).
                        BodyEnd::Error => ("body_error", OutcomeClass::ServerError),
                        BodyEnd::Dropped => ("client_disconnected", OutcomeClass::ClientGone),
                    },
                    failed,
                );
                labels.record(&metrics, outcome, started);
                if let Some(upstream) = call.as_ref().and_then(|c| c.upstream_span()) {
                    metrics.overhead.observe(started, upstream, Instant::now());
                }
                drop(in_flight);
            });
            Ok(Response::from_parts(parts, Body::new(body)))
        })
    }
}
