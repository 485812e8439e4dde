//! The second stage: a slower, better model asked only about the requests whose first-stage
//! score falls in an uncertain band, off the async workers, under a time budget.
//!
//! Owns the request-path contract around any `SecondStageModel` (the encoder plus a
//! trained head, `head.rs`, is the one shipped):
//! - only scores inside the band `[lower, upper]` reach it;
//! - it runs on its own pool of `max_concurrent` threads (a rayon pool: candle's kernels
//!   parallelise inside it, so the second stage never uses more than `max_concurrent`
//!   cores, and never an async worker), with at most `max_queue` more calls waiting; a
//!   request that finds the queue full keeps its first-stage score at once (`busy`): the
//!   second stage never adds load it cannot carry;
//! - a request waits at most `budget` (queueing included); past it, it keeps its
//!   first-stage score (`timeout`), and the running call is told to stop between layers,
//!   so its thread and its slot come back within one layer;
//! - a model error or a panic keeps the first-stage score too (`error`); so does a gateway
//!   whose model files are missing (`unavailable`, said once in the log and in `/readyz`).
//!
//! Nothing here fails a request.
//!
//! Metrics: `deliberate_second_stage_requests_total{outcome}` and
//! `deliberate_second_stage_duration_seconds`.

pub mod cli;
pub mod head;
pub mod train_head;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::metrics::Metrics;

/// Longest prompt text handed to a model: the first and last half of this many bytes of a
/// longer one (the encoder's window reads at most 4 KiB from each end).
pub const MAX_TEXT_BYTES: usize = 16 * 1024;

pub type ModelError = Box<dyn std::error::Error + Send + Sync>;

/// A second-stage model: scores a prompt given the first stage's score. Runs on a blocking
/// thread and may take milliseconds; it should check `stop` between steps and return
/// `Ok(None)` once it is set (nobody is waiting for the answer any more).
pub trait SecondStageModel: Send + Sync + 'static {
    /// Probability that `text` (the last user turn, at most `MAX_TEXT_BYTES`) needs the
    /// reasoning tier, on the same scale as the first stage's score and threshold.
    fn score(
        &self,
        text: &str,
        first_stage: f32,
        stop: &AtomicBool,
    ) -> Result<Option<f32>, ModelError>;
}

/// The uncertain band of first-stage scores, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Band {
    pub lower: f32,
    pub upper: f32,
}

impl Band {
    pub fn contains(&self, score: f32) -> bool {
        (self.lower..=self.upper).contains(&score)
    }
}

/// `[second_stage]` in `deliberate.toml`, validated. Read at startup (a reload does not
/// reload the model).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub enabled: bool,
    /// What `scripts/fetch-encoder.sh` wrote.
    pub model_dir: PathBuf,
    /// The trained head (`head::HeadFile`); absent: the second stage is off.
    pub head_file: PathBuf,
    pub budget: Duration,
    pub max_concurrent: usize,
    pub max_queue: usize,
    pub window_tokens: usize,
    /// Overrides the head file's band.
    pub band: Option<Band>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            enabled: true,
            model_dir: PathBuf::from("models/encoder-e5"),
            head_file: PathBuf::from("models/stage2.json"),
            // One core embeds a typical prompt (~60 tokens) in ~60 ms and a full 128-token
            // window in ~210 ms with the 4-bit weights (~135 ms in f16; BENCHMARKS.md): a
            // budget that times out the long ones would lose the gain where it is largest.
            budget: Duration::from_millis(300),
            max_concurrent: 1,
            max_queue: 4,
            window_tokens: crate::classify::encoder::DEFAULT_WINDOW_TOKENS,
            band: None,
        }
    }
}

/// What became of a request in the band; a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Used,
    Timeout,
    Busy,
    Unavailable,
    Error,
    /// The same text with the same first-stage score was asked about within the hour.
    Cached,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Used,
        Outcome::Cached,
        Outcome::Timeout,
        Outcome::Busy,
        Outcome::Unavailable,
        Outcome::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Used => "used",
            Outcome::Timeout => "timeout",
            Outcome::Busy => "busy",
            Outcome::Unavailable => "unavailable",
            Outcome::Error => "error",
            Outcome::Cached => "cached",
        }
    }
}

pub struct SecondStage {
    state: State,
    metrics: Arc<Metrics>,
    /// A model error is logged the first time only (the metric counts them all).
    error_logged: AtomicBool,
}

enum State {
    /// Not asked for (disabled, or no head file): nothing reaches it, nothing is counted.
    Off(String),
    /// Asked for but not loadable: band requests are counted `unavailable`.
    Unavailable {
        band: Option<Band>,
        why: String,
    },
    Active(Active),
}

struct Active {
    model: Arc<dyn SecondStageModel>,
    band: Band,
    budget: Duration,
    /// Running plus waiting calls: `max_concurrent + max_queue` permits.
    admitted: Arc<Semaphore>,
    /// `max_concurrent` threads; candle's own parallel loops run on them too.
    pool: rayon::ThreadPool,
    /// `max_concurrent + max_queue`.
    #[cfg_attr(not(test), allow(dead_code))]
    capacity: usize,
    description: String,
    /// Answers by keyed hash of (text, first-stage score): a repeated prompt (retries,
    /// evaluation runs, agents re-asking) costs the encoder once.
    answers: moka::sync::Cache<u64, f32>,
    hasher: std::hash::RandomState,
}

impl Active {
    fn key(&self, text: &str, first_stage: f32) -> u64 {
        use std::hash::{BuildHasher, Hash, Hasher};
        let mut h = self.hasher.build_hasher();
        text.hash(&mut h);
        first_stage.to_bits().hash(&mut h);
        h.finish()
    }
}

/// Cached second-stage answers at most (8 bytes of key and 4 of score each, plus moka's
/// bookkeeping: a few MB when full).
const MAX_CACHED_ANSWERS: u64 = 50_000;
const ANSWER_TTL: Duration = Duration::from_secs(3600);

impl SecondStage {
    pub fn off(why: impl Into<String>, metrics: Arc<Metrics>) -> SecondStage {
        SecondStage::new(State::Off(why.into()), metrics)
    }

    pub fn unavailable(band: Option<Band>, why: String, metrics: Arc<Metrics>) -> SecondStage {
        SecondStage::new(State::Unavailable { band, why }, metrics)
    }

    /// A second stage around `model` (the shipped one is built by `head::start`).
    pub fn active(
        model: Arc<dyn SecondStageModel>,
        band: Band,
        settings: &Settings,
        description: String,
        metrics: Arc<Metrics>,
    ) -> SecondStage {
        let running = settings.max_concurrent.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(running)
            .thread_name(|i| format!("second-stage-{i}"))
            .build();
        let pool = match pool {
            Ok(p) => p,
            Err(e) => {
                return SecondStage::unavailable(Some(band), format!("no threads: {e}"), metrics)
            }
        };
        SecondStage::new(
            State::Active(Active {
                model,
                band,
                budget: settings.budget,
                admitted: Arc::new(Semaphore::new(running + settings.max_queue)),
                pool,
                capacity: running + settings.max_queue,
                description,
                answers: moka::sync::Cache::builder()
                    .max_capacity(MAX_CACHED_ANSWERS)
                    .time_to_live(ANSWER_TTL)
                    .build(),
                hasher: std::hash::RandomState::new(),
            }),
            metrics,
        )
    }

    fn new(state: State, metrics: Arc<Metrics>) -> SecondStage {
        if !matches!(state, State::Off(_)) {
            // Every outcome exists from the start at 0, so a first one is a visible rate.
            for o in Outcome::ALL {
                metrics.second_stage.with_label_values(&[o.as_str()]);
            }
        }
        SecondStage {
            state,
            metrics,
            error_logged: AtomicBool::new(false),
        }
    }

    /// One line for `/readyz` and the startup log.
    pub fn status(&self) -> String {
        match &self.state {
            State::Off(why) => format!("second stage: off ({why})"),
            State::Unavailable { why, .. } => {
                format!("second stage: unavailable, first stage only ({why})")
            }
            State::Active(a) => format!(
                "second stage: active ({}; band {}..{}, budget {} ms)",
                a.description,
                a.band.lower,
                a.band.upper,
                a.budget.as_millis()
            ),
        }
    }

    /// Whether a request with this first-stage score is one for the second stage.
    pub fn wants(&self, first_stage: f32) -> bool {
        match &self.state {
            State::Off(_) => false,
            State::Unavailable { band, .. } => band.is_some_and(|b| b.contains(first_stage)),
            State::Active(a) => a.band.contains(first_stage),
        }
    }

    /// The second-stage score of `text`, or `None`: keep the first stage's. Only for
    /// scores `wants` accepted; never fails, never waits longer than the budget.
    pub async fn refine(&self, text: &str, first_stage: f32) -> Option<f32> {
        let a = match &self.state {
            State::Off(_) => return None,
            State::Unavailable { .. } => {
                self.count(Outcome::Unavailable);
                return None;
            }
            State::Active(a) => a,
        };
        let text = bounded(text);
        let key = a.key(&text, first_stage);
        if let Some(p) = a.answers.get(&key) {
            self.count(Outcome::Cached);
            return Some(p);
        }
        let Ok(admitted) = a.admitted.clone().try_acquire_owned() else {
            self.count(Outcome::Busy);
            return None;
        };
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (model, flag) = (a.model.clone(), stop.clone());
        a.pool.spawn(move || {
            // The permit lives as long as the call, not as long as the wait for it, and is
            // back before the answer is: the next request must not find the slot taken. A
            // panic must not reach rayon (it would abort the process): it becomes an error.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                model.score(&text, first_stage, &flag)
            }));
            drop(admitted);
            let _ = tx.send(result);
        });
        let result = tokio::time::timeout(a.budget, rx).await;
        self.metrics
            .second_stage_duration
            .observe(started.elapsed().as_secs_f64());
        let outcome = match result {
            Ok(Ok(Ok(Ok(Some(p))))) if p.is_finite() => {
                self.count(Outcome::Used);
                let p = p.clamp(0.0, 1.0);
                a.answers.insert(key, p);
                return Some(p);
            }
            // Stopped although nobody asked: treat as out of time.
            Ok(Ok(Ok(Ok(None)))) => Outcome::Timeout,
            Ok(Ok(Ok(Ok(Some(_))))) => self.error("a non-finite score"),
            Ok(Ok(Ok(Err(e)))) => self.error(&e.to_string()),
            Ok(Ok(Err(_panic))) => self.error("the model panicked"),
            Ok(Err(_dropped)) => self.error("the call ended without an answer"),
            Err(_elapsed) => {
                stop.store(true, Ordering::Relaxed);
                Outcome::Timeout
            }
        };
        self.count(outcome);
        None
    }

    /// Calls running or waiting (tests).
    #[cfg(test)]
    fn active_admitted(&self) -> usize {
        match &self.state {
            State::Active(a) => a.capacity - a.admitted.available_permits(),
            _ => 0,
        }
    }

    fn count(&self, outcome: Outcome) {
        self.metrics
            .second_stage
            .with_label_values(&[outcome.as_str()])
            .inc();
    }

    fn error(&self, what: &str) -> Outcome {
        if !self.error_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = what, "second stage failed; first-stage score kept (logged once; see deliberate_second_stage_requests_total{{outcome=\"error\"}})");
        }
        Outcome::Error
    }
}

/// `text`, or its first and last `MAX_TEXT_BYTES / 2` bytes joined by a newline: what a
/// model is given (the encoder's window sees the same head and tail either way).
pub fn bounded(text: &str) -> String {
    if text.len() <= MAX_TEXT_BYTES {
        return text.to_string();
    }
    let (head, tail) = crate::classify::head_and_tail(text, MAX_TEXT_BYTES / 2);
    format!("{head}\n{tail}")
}

#[cfg(test)]
mod tests;
