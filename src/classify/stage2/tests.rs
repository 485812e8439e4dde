use std::sync::atomic::AtomicUsize;

use super::*;

/// Scores by text, or misbehaves as asked: `"slow"` runs until told to stop, `"fail"`
/// errs, `"panic"` panics, `"gate"` waits for the gate to open.
struct Fake {
    stopped: AtomicUsize,
    gate: AtomicBool,
}

impl Fake {
    fn new() -> Arc<Fake> {
        Arc::new(Fake {
            stopped: AtomicUsize::new(0),
            gate: AtomicBool::new(false),
        })
    }
}

impl SecondStageModel for Fake {
    fn score(&self, text: &str, first: f32, stop: &AtomicBool) -> Result<Option<f32>, ModelError> {
        match text {
            "slow" => loop {
                if stop.load(Ordering::Relaxed) {
                    self.stopped.fetch_add(1, Ordering::Relaxed);
                    return Ok(None);
                }
                std::thread::sleep(Duration::from_millis(1));
            },
            "gate" => {
                while !self.gate.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(Some(0.9))
            }
            "fail" => Err("broken".into()),
            "panic" => panic!("model bug"),
            _ => Ok(Some(1.0 - first)),
        }
    }
}

const BAND: Band = Band {
    lower: 0.3,
    upper: 0.6,
};

fn stage(
    model: Arc<Fake>,
    budget_ms: u64,
    running: usize,
    queue: usize,
) -> (SecondStage, Arc<Metrics>) {
    let metrics = Metrics::new();
    let settings = Settings {
        budget: Duration::from_millis(budget_ms),
        max_concurrent: running,
        max_queue: queue,
        ..Settings::default()
    };
    let s = SecondStage::active(model, BAND, &settings, "fake".into(), metrics.clone());
    (s, metrics)
}

fn count(m: &Metrics, o: Outcome) -> u64 {
    m.second_stage.with_label_values(&[o.as_str()]).get()
}

#[tokio::test]
async fn only_the_band_is_wanted_and_a_score_is_used() {
    let (s, m) = stage(Fake::new(), 5_000, 1, 0);
    assert!(!s.wants(0.29) && s.wants(0.3) && s.wants(0.6) && !s.wants(0.61));
    assert_eq!(s.refine("prove it", 0.4).await, Some(0.6));
    assert_eq!(count(&m, Outcome::Used), 1);
    assert_eq!(m.second_stage_duration.get_sample_count(), 1);
    assert!(s.status().starts_with("second stage: active (fake"));
}

#[tokio::test]
async fn a_repeated_prompt_is_answered_from_the_cache() {
    let (s, m) = stage(Fake::new(), 5_000, 1, 0);
    assert_eq!(s.refine("prove it", 0.4).await, Some(0.6));
    assert_eq!(s.refine("prove it", 0.4).await, Some(0.6));
    assert_eq!(count(&m, Outcome::Used), 1);
    assert_eq!(count(&m, Outcome::Cached), 1);
    // Only the model call waited.
    assert_eq!(m.second_stage_duration.get_sample_count(), 1);
    // Another first-stage score is another question.
    assert_eq!(s.refine("prove it", 0.5).await, Some(0.5));
    assert_eq!(count(&m, Outcome::Used), 2);
}

#[tokio::test]
async fn out_of_time_keeps_the_first_stage_and_stops_the_call() {
    let fake = Fake::new();
    let (s, m) = stage(fake.clone(), 20, 1, 0);
    assert_eq!(s.refine("slow", 0.4).await, None);
    assert_eq!(count(&m, Outcome::Timeout), 1);
    // The abandoned call notices within its next step and gives its slot back.
    for _ in 0..2000 {
        if fake.stopped.load(Ordering::Relaxed) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(fake.stopped.load(Ordering::Relaxed), 1);
    assert_eq!(s.refine("ok", 0.4).await, Some(0.6));
}

#[tokio::test]
async fn a_full_pool_answers_busy_at_once() {
    let fake = Fake::new();
    let (s, m) = stage(fake.clone(), 5_000, 1, 1);
    let s = Arc::new(s);
    let running = tokio::task::spawn_blocking({
        let s = s.clone();
        move || tokio::runtime::Handle::current().block_on(s.refine("gate", 0.4))
    });
    let queued = tokio::task::spawn_blocking({
        let s = s.clone();
        move || tokio::runtime::Handle::current().block_on(s.refine("gate", 0.4))
    });
    // Wait until both hold an admission permit (one running, one queued).
    while s.active_admitted() < 2 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let started = Instant::now();
    assert_eq!(s.refine("ok", 0.4).await, None);
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(count(&m, Outcome::Busy), 1);
    fake.gate.store(true, Ordering::Relaxed);
    assert_eq!(running.await.unwrap(), Some(0.9));
    assert_eq!(queued.await.unwrap(), Some(0.9));
    assert_eq!(count(&m, Outcome::Used), 2);
}

#[tokio::test]
async fn errors_and_panics_keep_the_first_stage() {
    let (s, m) = stage(Fake::new(), 5_000, 1, 0);
    assert_eq!(s.refine("fail", 0.4).await, None);
    assert_eq!(s.refine("panic", 0.4).await, None);
    assert_eq!(count(&m, Outcome::Error), 2);
    // The slot came back after the panic.
    assert_eq!(s.refine("ok", 0.5).await, Some(0.5));
}

#[tokio::test]
async fn unavailable_and_off_never_run_anything() {
    let m = Metrics::new();
    let s = SecondStage::unavailable(Some(BAND), "model files missing".into(), m.clone());
    assert!(s.wants(0.5) && !s.wants(0.9));
    assert_eq!(s.refine("ok", 0.5).await, None);
    assert_eq!(count(&m, Outcome::Unavailable), 1);
    assert!(s
        .status()
        .contains("unavailable, first stage only (model files missing)"));
    let off = SecondStage::off("no head file", m.clone());
    assert!(!off.wants(0.5));
    assert_eq!(off.refine("ok", 0.5).await, None);
    assert_eq!(count(&m, Outcome::Unavailable), 1);
}

#[test]
fn long_texts_are_cut_to_their_ends() {
    let text = format!("HEAD{}TAIL", "é".repeat(MAX_TEXT_BYTES));
    let cut = bounded(&text);
    assert!(cut.len() <= MAX_TEXT_BYTES + 1);
    assert!(cut.starts_with("HEAD") && cut.ends_with("TAIL"));
    assert_eq!(bounded("short"), "short");
}

#[test]
fn without_a_head_file_the_stage_is_off() {
    let settings = Settings {
        head_file: "/nonexistent/stage2.json".into(),
        ..Settings::default()
    };
    let s = head::start(&settings, Metrics::new());
    assert_eq!(
        s.status(),
        "second stage: off (no head file at /nonexistent/stage2.json)"
    );
}

#[test]
fn with_a_head_but_no_model_it_is_unavailable_and_knows_its_band() {
    let dir = tempfile::tempdir().unwrap();
    let head = dir.path().join("stage2.json");
    let file = head::HeadFile {
        version: head::HEAD_VERSION,
        provenance: "test".into(),
        weights: vec![0.0; crate::classify::encoder::HIDDEN_DIMS],
        bias: 0.0,
        first_stage_weight: 0.0,
        band: BAND,
    };
    std::fs::write(&head, serde_json::to_string(&file).unwrap()).unwrap();
    let settings = Settings {
        head_file: head,
        model_dir: dir.path().join("missing"),
        ..Settings::default()
    };
    let s = head::start(&settings, Metrics::new());
    assert!(s.status().contains("model files missing"), "{}", s.status());
    assert!(s.wants(0.5));
}

#[test]
fn the_head_scores_on_the_first_stage_scale() {
    let mut file = head::HeadFile {
        version: head::HEAD_VERSION,
        provenance: String::new(),
        weights: vec![1.0, -1.0],
        bias: 0.0,
        first_stage_weight: 0.0,
        band: BAND,
    };
    assert!((file.score(&[0.0, 0.0], 0.9) - 0.5).abs() < 1e-6);
    assert!(file.score(&[2.0, 0.0], 0.5) > 0.85);
    // A head that only passes the first stage through gives it back.
    file.weights = vec![0.0, 0.0];
    file.first_stage_weight = 1.0;
    assert!((file.score(&[1.0, 1.0], 0.42) - 0.42).abs() < 1e-4);
}
