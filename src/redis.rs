//! The Redis transport: the connection that N replicas share state through (response cache,
//! spend, rate limits). It knows no domain types: the Redis halves of each concept live with
//! the concept (`limits::redis_budget`, `limits::redis_rate`, `cache::redis`) and call
//! `Shared::run` with their own scripts.
//!
//! Optional (`[redis]` in `deliberate.toml`); without it everything stays in the process.
//! One `ConnectionManager` (multiplexed, reconnects by itself) serves every request; each
//! operation is bounded by `[redis] timeout_ms`. Redis is never allowed to fail a request:
//! an operation that errors or times out returns `None`, the caller does the work locally
//! (cache miss, local budget ledger, local token buckets), `deliberate_redis_fallbacks_total`
//! counts it, and Redis is marked down for `RETRY_AFTER_DOWN`: in that window operations are
//! not even tried (no request waits for a dead server), then the next one probes it. The
//! first failure and the recovery are logged once each, with the error but never the URL.
//!
//! Work that follows a response (settling a reservation, storing a cache entry) runs as tasks
//! on this tier's `TaskTracker`, which shutdown waits for.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::RedisResult;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::config::RedisSettings;
use crate::metrics::Metrics;

/// How long a failed Redis is left alone before the next operation tries it again.
const RETRY_AFTER_DOWN: Duration = Duration::from_secs(1);

const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// What a fallback is counted as in `deliberate_redis_fallbacks_total{op}`.
#[derive(Debug, Clone, Copy)]
pub enum Op {
    Cache,
    Budget,
    RateLimit,
    /// The health probe: not a fallback of anything.
    Probe,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Cache => "cache",
            Op::Budget => "budget",
            Op::RateLimit => "rate_limit",
            Op::Probe => "probe",
        }
    }
}

pub struct Shared {
    connection: ConnectionManager,
    prefix: String,
    timeout: Duration,
    metrics: Arc<Metrics>,
    /// Milliseconds since `epoch` before which Redis is not tried; 0 = up.
    down_until_ms: AtomicU64,
    /// What the last operation found: `UNKNOWN` (none yet), `UP` or `DOWN`; transitions
    /// are logged and set `deliberate_redis_up`.
    health: AtomicU8,
    epoch: Instant,
    tasks: TaskTracker,
}

impl Shared {
    /// Sets up the connection without waiting for it: a gateway starts (and serves, locally)
    /// while Redis is unreachable. Must be called inside the Tokio runtime.
    pub fn new(settings: &RedisSettings, metrics: Arc<Metrics>) -> RedisResult<Arc<Shared>> {
        let client = match &settings.tls_root_pem {
            Some(pem) => redis::Client::build_with_tls(
                settings.url.as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            )?,
            None => redis::Client::open(settings.url.as_str())?,
        };
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout.max(Duration::from_millis(250))))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_lazy_with_config(client, config)?;
        metrics.register_redis();
        Ok(Arc::new(Shared {
            connection,
            prefix: settings.key_prefix.clone(),
            timeout: settings.timeout,
            metrics,
            down_until_ms: AtomicU64::new(0),
            health: AtomicU8::new(UNKNOWN),
            epoch: Instant::now(),
            tasks: TaskTracker::new(),
        }))
    }

    /// `prefix:rest`: every key the gateway writes starts with the configured prefix.
    pub fn key(&self, rest: std::fmt::Arguments<'_>) -> String {
        format!("{}:{rest}", self.prefix)
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Runs one Redis operation, or returns `None` (counted as a fallback of `op`) if Redis
    /// is down, errs or does not answer within the timeout.
    pub async fn run<T, F, Fut>(&self, op: Op, operation: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let down_until = self.down_until_ms.load(Ordering::Relaxed);
        if self.now_ms() < down_until {
            self.fallback(op);
            return None;
        }
        if down_until != 0 {
            // First try after a failure: the connection manager still holds the failed
            // connection and replaces it only when that is used. This PING does that, so
            // the operation below runs on a fresh connection if Redis is back.
            let mut c = self.connection.clone();
            let ping = redis::cmd("PING");
            let _ = tokio::time::timeout(self.timeout, ping.query_async::<()>(&mut c)).await;
        }
        let outcome = tokio::time::timeout(self.timeout, operation(self.connection.clone())).await;
        match outcome {
            Ok(Ok(value)) => {
                self.down_until_ms.store(0, Ordering::Relaxed);
                match self.health.swap(UP, Ordering::Relaxed) {
                    UP => {}
                    UNKNOWN => {
                        self.metrics.redis_up.set(1);
                        tracing::info!(
                            "redis connected: cache, budgets and rate limits are shared"
                        );
                    }
                    _ => {
                        self.metrics.redis_up.set(1);
                        tracing::info!(
                            "redis answers again: shared cache, budgets and rate limits resume"
                        );
                    }
                }
                Some(value)
            }
            Ok(Err(e)) => {
                self.mark_down(op, &e.to_string());
                None
            }
            Err(_) => {
                self.mark_down(op, "operation timed out");
                None
            }
        }
    }

    fn mark_down(&self, op: Op, error: &str) {
        let until = self.now_ms() + RETRY_AFTER_DOWN.as_millis() as u64;
        self.down_until_ms.store(until, Ordering::Relaxed);
        self.metrics.redis_up.set(0);
        self.fallback(op);
        if self.health.swap(DOWN, Ordering::Relaxed) != DOWN {
            tracing::warn!(
                op = op.as_str(),
                error,
                "redis unavailable: serving with the local cache, budgets and rate limits"
            );
        }
    }

    fn fallback(&self, op: Op) {
        if matches!(op, Op::Probe) {
            return;
        }
        self.metrics
            .redis_fallbacks
            .with_label_values(&[op.as_str()])
            .inc();
    }

    /// Runs `work` after the response (settlements, cache writes); shutdown waits for it.
    pub fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(work);
    }

    /// Waits (at most `limit`) for the work spawned so far; called once at shutdown.
    pub async fn drain(&self, limit: Duration) {
        self.tasks.close();
        if tokio::time::timeout(limit, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("shutdown: redis writes still pending after {limit:?}; dropped");
        }
    }

    /// A periodic `PING` keeps `deliberate_redis_up` true without traffic.
    pub async fn watch(
        self: Arc<Self>,
        every: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let _: Option<()> = self
                .run(Op::Probe, |mut c| async move {
                    redis::cmd("PING").query_async::<()>(&mut c).await
                })
                .await;
        }
    }
}
