//! Exact-match response cache for tenants that turn it on (`[cache] enabled = true`).
//!
//! Sits below `decide` (the key needs the resolved model) and above the chat service:
//! - a hit is answered here with the stored bytes, `x-deliberate-cache: hit` and `age`,
//!   a `Served` fact naming the model that produced the stored answer, and a `CacheHit`
//!   response extension that tells `decide` to bill nothing;
//! - a miss goes on down; a 200 answer is relayed at full speed while the `ObservedBody`
//!   keeps a capped copy (`OnEnd::copy_up_to`), and stored once the client got all of it (a
//!   stream only if it ended with `[DONE]` and carries no error event; a broken or
//!   cancelled stream is never stored);
//! - identical concurrent non-streaming misses send one upstream call: the others wait for
//!   the first one's entry (or, if it stored none, go upstream themselves);
//! - `Cache-Control: no-cache` skips the lookup but stores the answer; `no-store` and
//!   sampled requests (no `temperature = 0`, no `seed`, unless the tenant allows them) are
//!   `bypass`: neither read nor stored.
//!
//! JSON answers and streams are stored under separate keys (the key includes the mode); a
//! chat request whose own mode is not stored is served the other mode's entry converted
//! (`cache::convert`: JSON -> `delta` chunks, SSE -> concatenated deltas) when the answer
//! is plain text; tool calls do not convert and are a miss.
//!
//! The key includes the request's `Endpoint`: an entry holds the bytes of that endpoint's
//! answer (the response adapter sits below), so a Responses hit replays Responses events.
//! Mode conversion and the stored stream's usage chunk are chat's only; other endpoints'
//! answers are stored as they were sent, when `endpoints::clean_answer` says they are a
//! clean success, and replayed through `endpoints::replay` (a Responses hit gets a fresh
//! response id).
//!
//! ```text
//! ServiceBuilder::new().layer(DecideLayer::new(..)).layer(CacheLayer::new(cache, metrics))
//! ```

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Request, Response, StatusCode};
use tokio::time::Instant;
use tower::{Layer, Service};

use super::rate_limit::TokenEstimate;
use super::tenant::TenantCtx;
use super::BoxFuture;
use crate::api::ChatRequest;
use crate::body::observed::OnEnd;
use crate::body::{full, Body};
use crate::cache::{self, Entry, Key, Leader, ResponseCache};
use crate::config::CachePolicy;
use crate::cost::Usage;
use crate::endpoints::{self, Endpoint};
use crate::error::GatewayError;
use crate::facts::{CacheResult, Served};
use crate::metrics::Metrics;
use crate::policy::Decision;
use crate::redis::Shared;

pub const CACHE_HEADER: &str = "x-deliberate-cache";

/// Response extension of an answer served from the cache: it costs nothing.
#[derive(Debug, Clone, Copy)]
pub struct CacheHit;

/// Response headers stored with an entry and replayed on its hits.
const REPLAYED: [&str; 3] = ["content-type", "x-deliberate-model", "x-deliberate-tier"];

/// Deployment named in the `Served` fact of an answer from the cache.
const FROM_CACHE: &str = "cache";

#[derive(Clone)]
pub struct CacheLayer {
    cache: Arc<ResponseCache>,
    shared: Option<Arc<Shared>>,
    metrics: Arc<Metrics>,
}

impl CacheLayer {
    /// `shared`: the Redis tier behind the in-process cache, if configured.
    pub fn new(
        cache: Arc<ResponseCache>,
        shared: Option<Arc<Shared>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        CacheLayer {
            cache,
            shared,
            metrics,
        }
    }
}

impl<S> Layer<S> for CacheLayer {
    type Service = CacheService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CacheService {
            inner,
            cache: self.cache.clone(),
            shared: self.shared.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct CacheService<S> {
    inner: S,
    cache: Arc<ResponseCache>,
    shared: Option<Arc<Shared>>,
    metrics: Arc<Metrics>,
}

/// Where a miss's answer goes once complete.
enum Store {
    /// The single-flight leader: stores and wakes the waiters.
    Leader(Leader),
    Direct(Arc<ResponseCache>, Key),
}

impl Store {
    /// Stores in this replica (and wakes the single-flight waiters) only.
    fn finish_local(self, entry: Option<Arc<Entry>>) {
        match self {
            Store::Leader(leader) => leader.finish(entry),
            Store::Direct(cache, key) => {
                if let Some(e) = entry {
                    cache.insert(key, e);
                }
            }
        }
    }
}

/// What a miss needs to build its entry when its body ends.
struct Pending {
    store: Store,
    key: Key,
    shared: Option<Arc<Shared>>,
    policy: CachePolicy,
    endpoint: Endpoint,
    stream: bool,
    /// Who produced the answer being stored.
    served: Served,
    estimate: Option<TokenEstimate>,
}

impl<S> Service<Request<ChatRequest>> for CacheService<S>
where
    S: Service<Request<ChatRequest>, Response = Response<Body>, Error = GatewayError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = GatewayError;
    type Future = BoxFuture<Result<Response<Body>, GatewayError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ChatRequest>) -> Self::Future {
        // The ready service handles this request; a fresh clone waits for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let Some(ctx) = request.extensions().get::<TenantCtx>().cloned() else {
            return Box::pin(async {
                Err(GatewayError::Internal("tenant context missing".into()))
            });
        };
        let Some(policy) = ctx.tenant.policy.cache else {
            return Box::pin(inner.call(request));
        };
        let Some(decision) = request.extensions().get::<Decision>().cloned() else {
            return Box::pin(async { Err(GatewayError::Internal("decision missing".into())) });
        };
        let Some(endpoint) = request.extensions().get::<Endpoint>().copied() else {
            return Box::pin(async { Err(GatewayError::Internal("endpoint missing".into())) });
        };
        // Open from the lookup to its result (a miss closes it before the upstream call).
        let span = tracing::debug_span!("cache", result = tracing::field::Empty);
        let metrics = self.metrics.clone();
        let tenant = ctx.tenant.name.clone();
        let count = move |result: &str| {
            metrics
                .cache_requests
                .with_label_values(&[&tenant, result])
                .inc();
        };
        let directives = cache::directives(request.headers());
        if directives.no_store
            || !(policy.nondeterministic || cache::deterministic(&request.body().body))
        {
            count("bypass");
            span.record("result", "bypass");
            let future = inner.call(request);
            return Box::pin(async move {
                let mut response = future.await?;
                mark(&mut response, "bypass");
                Ok(response)
            });
        }
        let stream = request.body().is_stream();
        let include_usage = request.body().include_usage();
        let key_of = |stream: bool| {
            cache::key(
                &ctx.tenant.name,
                &ctx.snapshot.fingerprint,
                endpoint,
                &decision.model.name,
                stream,
                &request.body().body,
            )
        };
        let key = key_of(stream);
        // A chat answer stored in the other mode serves too, converted.
        let other = (endpoint == Endpoint::Chat).then(|| key_of(!stream));
        if !directives.no_cache {
            let stored = self.cache.get(&key).or_else(|| {
                let entry = self.cache.get(other.as_ref()?)?;
                convert(&entry, include_usage).map(Arc::new)
            });
            if let Some(entry) = stored {
                record_hit(&self.metrics, &ctx.tenant.name, &entry);
                span.record("result", "hit");
                let response = hit_response(&entry, endpoint, include_usage, &ctx, &decision);
                return Box::pin(async move { Ok(response) });
            }
        }
        let cache = self.cache.clone();
        let shared = self.shared.clone();
        let hit_metrics = self.metrics.clone();
        let wait_limit = ctx.snapshot.timeouts(decision.tier).total;
        Box::pin(async move {
            // Only non-streaming misses are collapsed: a stream's waiters would get nothing
            // until its end, which defeats streaming.
            let store = if directives.no_cache || stream {
                Store::Direct(cache.clone(), key)
            } else {
                match cache.join(key) {
                    Ok(leader) => Store::Leader(leader),
                    Err(flight) => {
                        let got = tokio::time::timeout(wait_limit, cache::wait(flight)).await;
                        if let Ok(Some(entry)) = got {
                            record_hit(&hit_metrics, &ctx.tenant.name, &entry);
                            span.record("result", "hit");
                            return Ok(hit_response(
                                &entry,
                                endpoint,
                                include_usage,
                                &ctx,
                                &decision,
                            ));
                        }
                        Store::Direct(cache.clone(), key)
                    }
                }
            };
            if let (Some(shared), false) = (&shared, directives.no_cache) {
                // Without another mode to try, the key is asked twice: the second cannot hit.
                let second = other.as_ref().unwrap_or(&key);
                let found = crate::cache::redis::get(shared, [&key, second], policy.ttl).await;
                let found = found.and_then(|(i, entry)| {
                    // Kept here too: the next hits on this replica are local.
                    cache.insert(if i == 0 { key } else { *second }, entry.clone());
                    match i {
                        0 => Some(entry),
                        _ => convert(&entry, include_usage).map(Arc::new),
                    }
                });
                if let Some(entry) = found {
                    record_hit(&hit_metrics, &ctx.tenant.name, &entry);
                    hit_metrics
                        .cache_shared_hits
                        .with_label_values(&[&ctx.tenant.name])
                        .inc();
                    span.record("result", "hit");
                    let response = hit_response(&entry, endpoint, include_usage, &ctx, &decision);
                    store.finish_local(Some(entry));
                    return Ok(response);
                }
            }
            count("miss");
            span.record("result", "miss");
            drop(span);
            let estimate = request.extensions().get::<TokenEstimate>().copied();
            let mut response = inner.call(request).await?;
            mark(&mut response, "miss");
            let served = response.extensions().get::<Served>().cloned();
            let (true, Some(served)) = (response.status() == StatusCode::OK, served) else {
                // `store` drops here: waiters go upstream themselves.
                return Ok(response);
            };
            let headers: Vec<_> = REPLAYED
                .iter()
                .filter_map(|name| {
                    let v = response.headers().get(*name)?;
                    Some((HeaderName::from_static(name), v.clone()))
                })
                .collect();
            let pending = Pending {
                store,
                key,
                shared,
                policy,
                endpoint,
                stream,
                served,
                estimate,
            };
            let on_end = OnEnd::of(&mut response);
            on_end.copy_up_to(policy.max_entry_bytes);
            on_end.push(move |ended| {
                // Dropping `pending` without storing wakes the waiters empty-handed.
                if let Some(copy) = ended.copy.clone() {
                    pending.complete(copy, headers);
                }
            });
            Ok(response)
        })
    }
}

fn record_hit(metrics: &Metrics, tenant: &str, entry: &Entry) {
    metrics
        .cache_requests
        .with_label_values(&[tenant, "hit"])
        .inc();
    if entry.cost > 0 {
        metrics
            .cache_saved_usd
            .with_label_values(&[tenant])
            .inc_by(crate::cost::usd(entry.cost));
    }
}

impl Pending {
    fn complete(self, bytes: Bytes, headers: Vec<(HeaderName, HeaderValue)>) {
        let call = &self.served.call;
        let failed = call.failure().is_some();
        let valid = endpoints::clean_answer(self.endpoint, self.stream, &bytes);
        if failed || !valid {
            return self.store.finish_local(None);
        }
        let usage = call.usage();
        let bytes = if self.stream && self.endpoint == Endpoint::Chat {
            // Stored with its usage whether or not this client asked: a later hit may ask.
            // A server that reports none gets the gateway's estimate, marked as such.
            let usage = usage.map(|u| u.to_openai()).or_else(|| {
                let mut u = Usage {
                    prompt: self.estimate?.prompt,
                    completion: call.data_events(),
                    ..Usage::default()
                }
                .to_openai();
                u["estimated"] = true.into();
                Some(u)
            });
            cache::convert::stream_for_storage(bytes, usage)
        } else {
            bytes
        };
        let model = &self.served.model;
        let cost = usage.map_or(0, |u| crate::cost::cost(&model.price, &u));
        let entry = Entry {
            body: bytes,
            stream: self.stream,
            headers,
            model: model.name.clone(),
            stored_at: Instant::now(),
            cost,
            ttl: self.policy.ttl,
        };
        if let Some(shared) = &self.shared {
            crate::cache::redis::put(shared, &self.key, &entry);
        }
        self.store.finish_local(Some(Arc::new(entry)));
    }
}

/// `entry` in the other mode (JSON <-> SSE), if its answer converts.
fn convert(entry: &Entry, include_usage: bool) -> Option<Entry> {
    let (body, content_type) = if entry.stream {
        (
            cache::convert::sse_to_json(&entry.body)?,
            "application/json",
        )
    } else {
        (
            cache::convert::json_to_sse(&entry.body, include_usage)?,
            "text/event-stream",
        )
    };
    let mut headers: Vec<_> = entry
        .headers
        .iter()
        .filter(|(n, _)| n != header::CONTENT_TYPE)
        .cloned()
        .collect();
    headers.push((header::CONTENT_TYPE, HeaderValue::from_static(content_type)));
    Some(Entry {
        body,
        stream: !entry.stream,
        headers,
        model: entry.model.clone(),
        stored_at: entry.stored_at,
        cost: entry.cost,
        ttl: entry.ttl,
    })
}

fn mark(response: &mut Response<Body>, result: &'static str) {
    response.extensions_mut().insert(CacheResult(result));
    response.headers_mut().insert(
        HeaderName::from_static(CACHE_HEADER),
        HeaderValue::from_static(result),
    );
}

/// The stored answer; a stream's usage chunk only if this request asked for usage. Served
/// by the model that produced it (the decided one if a reload removed that model).
fn hit_response(
    entry: &Entry,
    endpoint: Endpoint,
    include_usage: bool,
    ctx: &TenantCtx,
    decision: &Decision,
) -> Response<Body> {
    let body = if entry.stream && endpoint == Endpoint::Chat {
        cache::convert::stream_for_client(&entry.body, include_usage)
    } else {
        endpoints::replay(endpoint, entry.stream, &entry.body)
    };
    let mut response = Response::new(full(body));
    let headers = response.headers_mut();
    for (name, value) in &entry.headers {
        headers.insert(name.clone(), value.clone());
    }
    if entry.stream {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    headers.insert(
        header::AGE,
        HeaderValue::from(entry.stored_at.elapsed().as_secs()),
    );
    mark(&mut response, "hit");
    let model = ctx.snapshot.models.get(&*entry.model);
    response.extensions_mut().insert(Served {
        model: model.unwrap_or(&decision.model).clone(),
        deployment: FROM_CACHE.into(),
        call: Arc::default(),
    });
    response.extensions_mut().insert(CacheHit);
    response
}
