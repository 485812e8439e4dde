//! Per-deployment state and the choice of deployment for each attempt.
//!
//! Owns, for every deployment (`model@provider`): its peak-EWMA latency, in-flight count,
//! circuit breaker and `Retry-After` hold, in a [`Registry`] keyed by deployment id. The
//! registry lives in `Upstream`, not in the config snapshot, so a reload keeps the latency
//! learned about each deployment (a deployment that stays in the config keeps its id); the
//! first request under a new config generation clears every breaker and `Retry-After` hold,
//! so an operator's reload (new key, new endpoint) is tried at once, not after a wait that
//! the old config earned.
//!
//! `Retry-After`: the provider's number is a hint, not an order. A hold lasts at most
//! `max_retry_after_ms` and never longer than an open breaker would (`breaker_open_ms`),
//! so one answer (`Retry-After: 1000000000`) cannot take a deployment out for good.
//!
//! Choice: weighted power of two choices over peak-EWMA load (as linkerd/Finagle do). Two
//! distinct candidates are drawn with probability proportional to `weight`; the one with the
//! lower `load / weight` wins. Load is the decayed peak latency times (in-flight + 1), so a
//! slow or busy deployment loses traffic quickly and regains it as its estimate decays.
//! With a single usable deployment no random numbers are drawn.
//!
//! Breaker: `breaker_failures` consecutive retryable failures open it; while open the
//! deployment is skipped; once `breaker_open` has passed, exactly one request is let through
//! as a half-open probe; its success closes the breaker, its failure re-opens it.
//!
//! Locks: one read-mostly `RwLock` for the map, one short `Mutex` per deployment; neither
//! is ever held across an `.await`.

// Numbers here come from providers and config: no unchecked arithmetic (issue 10).
#![deny(clippy::arithmetic_side_effects)]

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::time::Instant;
use tower::retry::budget::TpsBudget;

use crate::body::relay::deadline_after;
use crate::config::{Deployment, Resilience};

/// Time constant of the latency estimate's decay.
const DECAY: Duration = Duration::from_secs(10);
/// Latency charged for a retryable failure: a deployment answering 503 in 1 ms must not
/// look like the fastest one.
const FAILURE_PENALTY: Duration = Duration::from_secs(2);
/// Retries always allowed per second regardless of traffic, so a quiet gateway can still
/// retry (tower's `min_per_sec`).
const MIN_RETRIES_PER_SEC: u32 = 1;
/// The window over which the retry budget counts requests.
const BUDGET_WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breaker {
    Closed,
    Open {
        until: Instant,
    },
    /// `probing`: the one probe request is out; everything else still skips it.
    HalfOpen {
        probing: bool,
    },
}

impl Breaker {
    /// The value of `deliberate_deployment_breaker_state`.
    pub fn gauge(self) -> i64 {
        match self {
            Breaker::Closed => 0,
            Breaker::Open { .. } => 1,
            Breaker::HalfOpen { .. } => 2,
        }
    }
}

/// How an attempt ended, as far as the deployment's health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered (a response head, or a whole answer).
    Success,
    /// Answered with something that is not the deployment's fault (a 400, a 401): it is
    /// alive, so this resets the failure count but is not retried.
    Answered,
    /// A retryable failure (connection error, timeout before headers, 429/5xx).
    Failure { retry_after: Option<Duration> },
}

#[derive(Debug)]
struct Stats {
    /// Peak-EWMA latency estimate in seconds, as of `stamp`.
    cost: f64,
    stamp: Instant,
    pending: u32,
    failures: u32,
    breaker: Breaker,
    /// The provider asked us not to come back before this (`Retry-After`).
    not_before: Option<Instant>,
    /// Times the breaker opened (never reset: `deliberate_deployment_breaker_opened_total`).
    opened: u64,
}

/// Is a deployment usable now?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Usable {
    Yes,
    /// Only held back by `Retry-After` until then.
    Held(Instant),
    No,
}

impl Stats {
    fn new(now: Instant) -> Stats {
        Stats {
            cost: 0.0,
            stamp: now,
            pending: 0,
            failures: 0,
            breaker: Breaker::Closed,
            not_before: None,
            opened: 0,
        }
    }

    fn decay(&self, now: Instant) -> f64 {
        let dt = now.saturating_duration_since(self.stamp).as_secs_f64();
        (-dt / DECAY.as_secs_f64()).exp()
    }

    /// Peak EWMA: a slower observation replaces the estimate at once; faster ones pull it
    /// down gradually.
    fn observe(&mut self, rtt: Duration, now: Instant) {
        let rtt = rtt.as_secs_f64();
        let w = self.decay(now);
        self.cost = if rtt > self.cost {
            rtt
        } else {
            self.cost * w + rtt * (1.0 - w)
        };
        self.stamp = now;
    }

    fn load(&self, now: Instant) -> f64 {
        self.cost * self.decay(now) * f64::from(self.pending.saturating_add(1))
    }

    /// Forgets the breaker and any hold; keeps the latency estimate and in-flight count.
    fn reset_health(&mut self) {
        self.failures = 0;
        self.breaker = Breaker::Closed;
        self.not_before = None;
    }

    fn usable(&self, now: Instant) -> Usable {
        match self.breaker {
            Breaker::Open { until } if until > now => return Usable::No,
            Breaker::HalfOpen { probing: true } => return Usable::No,
            _ => {}
        }
        match self.not_before {
            Some(t) if t > now => Usable::Held(t),
            _ => Usable::Yes,
        }
    }
}

/// How long a provider's `Retry-After` keeps its deployment out: its own number, capped by
/// `max_retry_after` and by `breaker_open` (a hold is never stricter than an open breaker).
pub fn hold(retry_after: Duration, cfg: &Resilience) -> Duration {
    retry_after.min(cfg.max_retry_after).min(cfg.breaker_open)
}

/// One deployment's state; shared by the registry and the attempts in flight.
#[derive(Debug)]
pub struct DeploymentState {
    stats: Mutex<Stats>,
}

impl DeploymentState {
    fn new(now: Instant) -> DeploymentState {
        DeploymentState {
            stats: Mutex::new(Stats::new(now)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Stats> {
        // The critical sections cannot panic halfway; a poisoned lock holds valid data.
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn breaker(&self) -> Breaker {
        self.lock().breaker
    }

    /// What the breaker is at `now`, whether or not a request came to look: an open breaker
    /// whose period has passed is half-open (the next request is its probe). With the
    /// times it opened.
    pub fn health_at(&self, now: Instant) -> (Breaker, u64) {
        let s = self.lock();
        let breaker = match s.breaker {
            Breaker::Open { until } if until <= now => Breaker::HalfOpen { probing: false },
            other => other,
        };
        (breaker, s.opened)
    }

    /// Claims the deployment for one attempt; `None` if it stopped being usable (another
    /// request took the half-open probe first).
    fn acquire(&self, now: Instant) -> Option<Breaker> {
        let mut s = self.lock();
        if s.usable(now) != Usable::Yes {
            return None;
        }
        s.breaker = match s.breaker {
            Breaker::Closed => Breaker::Closed,
            // Open and expired, or half-open without a probe: this attempt is the probe.
            Breaker::Open { .. } | Breaker::HalfOpen { .. } => Breaker::HalfOpen { probing: true },
        };
        s.pending = s.pending.saturating_add(1);
        Some(s.breaker)
    }

    /// Records how an attempt ended; returns the breaker state after it.
    pub fn finish(
        &self,
        outcome: Outcome,
        rtt: Duration,
        now: Instant,
        cfg: &Resilience,
    ) -> Breaker {
        let mut s = self.lock();
        s.pending = s.pending.saturating_sub(1);
        match outcome {
            Outcome::Success | Outcome::Answered => {
                s.observe(rtt, now);
                s.failures = 0;
                s.breaker = Breaker::Closed;
            }
            Outcome::Failure { retry_after } => {
                s.observe(rtt.max(FAILURE_PENALTY), now);
                s.failures = s.failures.saturating_add(1);
                if let Some(wait) = retry_after {
                    s.not_before = Some(deadline_after(now, hold(wait, cfg)));
                }
                let reopen = Breaker::Open {
                    until: deadline_after(now, cfg.breaker_open),
                };
                let was_open = matches!(s.breaker, Breaker::Open { .. });
                s.breaker = match s.breaker {
                    Breaker::HalfOpen { .. } => reopen,
                    Breaker::Closed if s.failures >= cfg.breaker_failures => reopen,
                    other => other,
                };
                if !was_open && matches!(s.breaker, Breaker::Open { .. }) {
                    s.opened = s.opened.saturating_add(1);
                }
            }
        }
        s.breaker
    }

    /// The attempt was dropped without an outcome (the client went away): free the probe
    /// slot so the next request can probe instead of the breaker staying half-open forever.
    fn abandon(&self) {
        let mut s = self.lock();
        s.pending = s.pending.saturating_sub(1);
        if s.breaker == (Breaker::HalfOpen { probing: true }) {
            s.breaker = Breaker::HalfOpen { probing: false };
        }
    }
}

/// What `Registry::pick` found.
pub enum Pick {
    Ready(Attempt),
    /// Every usable deployment is held by `Retry-After` until this instant.
    Wait(Instant),
    /// Every deployment's breaker is open.
    Unavailable,
}

/// One claimed attempt on one deployment; dropping it unfinished releases the claim.
pub struct Attempt {
    pub deployment: Arc<Deployment>,
    pub state: Arc<DeploymentState>,
    /// The breaker state after claiming (half-open when this attempt is the probe).
    pub breaker: Breaker,
    pub started: Instant,
    finished: bool,
}

impl Attempt {
    pub fn finish(mut self, outcome: Outcome, cfg: &Resilience) -> Breaker {
        self.finished = true;
        let now = Instant::now();
        let rtt = now.saturating_duration_since(self.started);
        self.state.finish(outcome, rtt, now, cfg)
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.finished {
            self.state.abandon();
        }
    }
}

/// Every deployment's state, plus the retry budget shared by all requests.
pub struct Registry {
    states: RwLock<HashMap<Arc<str>, Arc<DeploymentState>>>,
    rng: AtomicU64,
    /// Rebuilt when a reload changes the ratio.
    budget: Mutex<Option<(f64, Arc<TpsBudget>)>>,
    /// The newest config generation a request has brought (see `observe_generation`).
    generation: AtomicU64,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            states: RwLock::default(),
            // A per-process random seed; quality needs are low (load spreading only).
            rng: AtomicU64::new(RandomState::new().hash_one(0x5eed_u64)),
            budget: Mutex::new(None),
            generation: AtomicU64::new(0),
        }
    }
}

impl Registry {
    pub fn state(&self, d: &Deployment) -> Arc<DeploymentState> {
        let read = self.states.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(state) = read.get(&d.id) {
            return state.clone();
        }
        drop(read);
        let mut write = self.states.write().unwrap_or_else(PoisonError::into_inner);
        write
            .entry(d.id.clone())
            .or_insert_with(|| Arc::new(DeploymentState::new(Instant::now())))
            .clone()
    }

    /// The breaker of deployment `id` as a request under config `generation` would find it
    /// now (a newer generation than any request brought clears it), and the times it
    /// opened; `None` for a deployment no request has used yet.
    pub fn health(&self, id: &str, generation: u64) -> Option<(Breaker, u64)> {
        let read = self.states.read().unwrap_or_else(PoisonError::into_inner);
        let (breaker, opened) = read.get(id)?.health_at(Instant::now());
        if generation > self.generation.load(Ordering::Acquire) {
            return Some((Breaker::Closed, opened));
        }
        Some((breaker, opened))
    }

    /// Called with the config generation of every routed request: the first request of a
    /// newer generation (a reload) clears every breaker and `Retry-After` hold. A request
    /// still running on an older snapshot changes nothing.
    pub fn observe_generation(&self, generation: u64) {
        let seen = self.generation.fetch_max(generation, Ordering::AcqRel);
        if generation <= seen {
            return;
        }
        let read = self.states.read().unwrap_or_else(PoisonError::into_inner);
        for state in read.values() {
            state.lock().reset_health();
        }
    }

    /// The retry budget for `ratio`: retries may add at most that fraction of requests.
    pub fn budget(&self, ratio: f64) -> Arc<TpsBudget> {
        let mut slot = self.budget.lock().unwrap_or_else(PoisonError::into_inner);
        match &*slot {
            Some((r, b)) if *r == ratio => b.clone(),
            _ => {
                let b = Arc::new(TpsBudget::new(
                    BUDGET_WINDOW,
                    MIN_RETRIES_PER_SEC,
                    ratio as f32,
                ));
                *slot = Some((ratio, b.clone()));
                b
            }
        }
    }

    /// splitmix64: cheap, lock-free, good enough to spread load.
    fn random(&self) -> u64 {
        let mut z = self
            .rng
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Picks a deployment for the next attempt, preferring ones not in `tried`.
    pub fn pick(&self, deployments: &[Arc<Deployment>], tried: &[Arc<str>]) -> Pick {
        // A lost race for a half-open probe just means trying again with fresh state.
        for _ in 0..3 {
            let now = Instant::now();
            let mut held: Option<Instant> = None;
            let mut usable = Vec::with_capacity(deployments.len());
            for d in deployments {
                let state = self.state(d);
                let (u, load) = {
                    let s = state.lock();
                    (s.usable(now), s.load(now))
                };
                match u {
                    Usable::Yes => usable.push((d, state, load)),
                    Usable::Held(t) => held = Some(held.map_or(t, |h| h.min(t))),
                    Usable::No => {}
                }
            }
            let fresh = usable.iter().any(|(d, ..)| !tried.contains(&d.id));
            if fresh {
                usable.retain(|(d, ..)| !tried.contains(&d.id));
            }
            let chosen = match usable.len() {
                0 => return held.map_or(Pick::Unavailable, Pick::Wait),
                1 => 0,
                _ => {
                    let pool: Vec<(u32, f64)> =
                        usable.iter().map(|(d, _, l)| (d.weight, *l)).collect();
                    choose(&pool, self.random(), self.random())
                }
            };
            let (d, state, _) = &usable[chosen];
            if let Some(breaker) = state.acquire(now) {
                return Pick::Ready(Attempt {
                    deployment: (*d).clone(),
                    state: state.clone(),
                    breaker,
                    started: now,
                    finished: false,
                });
            }
        }
        Pick::Unavailable
    }
}

/// Weighted power of two choices over `(weight, load)`; `r1`, `r2` are random numbers.
/// Needs at least two entries with positive weights.
fn choose(pool: &[(u32, f64)], r1: u64, r2: u64) -> usize {
    let total: u64 = pool.iter().map(|(w, _)| u64::from(*w)).sum();
    let nth = |mut r: u64, skip: Option<usize>| {
        for (i, (w, _)) in pool.iter().enumerate() {
            if Some(i) == skip {
                continue;
            }
            if r < u64::from(*w) {
                return i;
            }
            r = r.saturating_sub(u64::from(*w));
        }
        pool.len().saturating_sub(1)
    };
    let a = nth(r1.checked_rem(total).unwrap_or(0), None);
    let rest = total.saturating_sub(u64::from(pool[a].0));
    let b = nth(r2.checked_rem(rest).unwrap_or(0), Some(a));
    let score = |i: usize| pool[i].1 / f64::from(pool[i].0.max(1));
    if score(b) < score(a) {
        b
    } else {
        a
    }
}

#[cfg(test)]
#[path = "deployments_tests.rs"]
mod tests;
