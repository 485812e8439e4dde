//! The access log: one line per request at info, target `deliberate::access`, written when
//! the response body ends (a stream at its last event, a cancelled request when its client
//! leaves), so it is the per-request record of spend that a stream's headers cannot carry.
//!
//! Fed by the same typed facts as the metrics (`TenantName`, `Routed`, `Served` and its
//! `CallRecord`, `ErrorKind`, `CacheResult`, `FellBack`, `Billed`); nothing is parsed back
//! from headers. It never holds a key, a prompt or a completion: only ids, names, numbers
//! and short fixed reasons.
//!
//! Sits right below the metrics layer, so it sees every response, errors included, and its
//! end-of-body hook runs after those of the layers below (the settlement has billed the
//! request by then). It also keeps the request span open until the body ends, so an exported
//! request span lasts as long as its stream.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tokio::time::Instant;
use tower::{Layer, Service};

use super::BoxFuture;
use crate::body::observed::{BodyEnd, Ended, OnEnd};
use crate::cost::usd;
use crate::error::ErrorKind;
use crate::facts::{
    Bill, Billed, CacheResult, FellBack, HeadWitness, RequestCtx, Routed, Served, TenantName,
};
use crate::telemetry::{self, ClientTrace};

pub const TARGET: &str = "deliberate::access";

#[derive(Debug, Clone, Default)]
pub struct AccessLogLayer;

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AccessLog { inner }
    }
}

#[derive(Debug, Clone)]
pub struct AccessLog<S> {
    inner: S,
}

/// What is known of a request before its response.
struct Start {
    id: Option<http::HeaderValue>,
    endpoint: Box<str>,
    started: Instant,
    /// The request span, held (never read) so that it lasts until the body ends.
    _span: tracing::Span,
    trace_id: Option<String>,
}

/// A request's facts at its end, as one log line.
#[derive(Default)]
struct Line<'a> {
    tenant: Option<&'a str>,
    routed: Option<&'a Routed>,
    served: Option<&'a Served>,
    status: Option<u16>,
    outcome: &'a str,
    cache: Option<&'static str>,
    fell_back: Option<&'a FellBack>,
    bill: Option<Bill>,
}

/// Longest endpoint path written (a client chooses it).
const MAX_PATH: usize = 128;

impl Start {
    fn of<B>(request: &Request<B>) -> Start {
        let ext = request.extensions();
        let ctx = ext.get::<RequestCtx>();
        let span = tracing::Span::current();
        let client = ext.get::<ClientTrace>();
        let trace_id = telemetry::trace_id(&span, client).map(|t| t.to_string());
        let path = request.uri().path();
        Start {
            id: ctx.map(|c| c.id.0.clone()),
            endpoint: path.get(..MAX_PATH).unwrap_or(path).into(),
            started: ctx.map_or_else(Instant::now, |c| c.started),
            _span: span,
            trace_id,
        }
    }

    fn write(&self, line: Line<'_>) {
        let elapsed_ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        let routed = line.routed;
        let served = line.served;
        let usage = line
            .bill
            .and_then(|b| b.usage)
            .or_else(|| served.and_then(|s| s.call.usage()));
        tracing::info!(
            target: TARGET,
            request_id = self.id.as_ref().and_then(|v| v.to_str().ok()),
            tenant = line.tenant,
            endpoint = &*self.endpoint,
            status = line.status,
            outcome = line.outcome,
            tier = served.map(|s| s.tier()).or(routed.map(|r| r.tier)).map(|t| t.as_str()),
            routed_model = routed.map(|r| &*r.model),
            model = served.map(|s| &*s.model.name),
            deployment = served.map(|s| &*s.deployment),
            reason = routed.map(|r| &*r.reason),
            score = routed.and_then(|r| r.score).map(f64::from),
            latency_ms = elapsed_ms(self.started.elapsed()),
            ttft_ms = served.and_then(|s| s.call.first_token_after()).map(elapsed_ms),
            prompt_tokens = usage.map(|u| u.prompt),
            cached_tokens = usage.map(|u| u.cached_prompt),
            completion_tokens = usage.map(|u| u.completion),
            reasoning_tokens = usage.map(|u| u.reasoning),
            tokens_estimated = line.bill.map(|b| b.estimated),
            cost_usd = line.bill.map(|b| usd(b.cost)),
            cache = line.cache,
            fallbacks = line.fell_back.map_or(0, |f| f.count),
            fallback_reason = line.fell_back.map(|f| &*f.reason),
            trace_id = self.trace_id.as_deref(),
            "request"
        );
    }
}

/// Logs a request whose future was dropped before it had a response head.
struct UntilHead {
    start: Option<Start>,
    witness: Option<Arc<HeadWitness>>,
}

impl Drop for UntilHead {
    fn drop(&mut self) {
        if let Some(start) = self.start.take() {
            let witness = self.witness.as_deref();
            start.write(Line {
                tenant: witness.and_then(|w| w.tenant.get()).map(|t| &**t),
                routed: witness.and_then(|w| w.routed.get()),
                outcome: if std::thread::panicking() {
                    "internal_error"
                } else {
                    "cancelled"
                },
                ..Line::default()
            });
        }
    }
}

impl<S, B, RB> Service<Request<B>> for AccessLog<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Send + 'static,
    S::Future: Send + 'static,
    RB: Send + 'static,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<RB>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
            return Box::pin(self.inner.call(request));
        }
        let mut until_head = UntilHead {
            start: Some(Start::of(&request)),
            witness: request.extensions().get::<Arc<HeadWitness>>().cloned(),
        };
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            let Some(start) = until_head.start.take() else {
                return Ok(response);
            };
            let ext = response.extensions();
            let tenant = ext.get::<TenantName>().cloned();
            let routed = ext.get::<Routed>().cloned();
            let served = ext.get::<Served>().cloned();
            let head_outcome = ext.get::<ErrorKind>().map_or("ok", |k| k.0);
            let cache = ext.get::<CacheResult>().map(|c| c.0);
            let fell_back = ext.get::<FellBack>().cloned();
            let billed = ext.get::<Billed>().cloned();
            let status = response.status().as_u16();
            OnEnd::of(&mut response).push(move |ended: &Ended| {
                let failed = served.as_ref().and_then(|s| s.call.failure()).map(|k| k.0);
                let outcome = failed.unwrap_or(match ended.end {
                    BodyEnd::Complete => head_outcome,
                    BodyEnd::Error => "body_error",
                    BodyEnd::Dropped => "client_disconnected",
                });
                start.write(Line {
                    tenant: tenant.as_ref().map(|t| &*t.0),
                    routed: routed.as_ref(),
                    served: served.as_ref(),
                    status: Some(status),
                    outcome,
                    cache,
                    fell_back: fell_back.as_ref(),
                    bill: billed.and_then(|b| b.0.get().copied()),
                });
                // The request span ends here, with its body.
                drop(start);
            });
            Ok(response)
        })
    }
}
