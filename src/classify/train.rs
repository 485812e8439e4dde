//! Training data and training for the learned classifier (`deliberate classify train`).
//!
//! Data: JSON Lines, one example per line: `{"id", "prompt" | "messages", "label": 0|1,
//! "category", "source"?, "lang"?, "shape"?, "family"?}` (source defaults to the file name,
//! lang to "en"; shape and family are reporting groups of held-out files). Training: class-balanced,
//! L2-regularised logistic regression on standardised features, full-batch Adam for a fixed
//! number of epochs: deterministic, the only randomness is the seeded fold assignment used
//! to fit the Platt calibration on out-of-fold scores.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::features::FeatureExtractor;
use super::learned::{sigmoid, ModelFile, MODEL_VERSION};
use crate::api::conversation_of;

#[derive(Debug, Clone)]
pub struct Example {
    pub id: String,
    pub messages: Vec<Value>,
    pub label: Option<bool>,
    pub source: String,
    pub category: String,
    /// ISO 639-1 code of the prompt's language ("en" when the row says none).
    pub lang: String,
    /// The prompt's shape (held-out and new written files), empty if none.
    pub shape: String,
    /// Puzzle family (held-out puzzles), empty if none.
    pub family: String,
}

/// Reads one JSONL line into an example; `prompt` becomes a single user message.
pub fn parse_example(line: &str, default_source: &str) -> Result<Example, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let id = match &v["id"] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let messages = match (&v["messages"], &v["prompt"]) {
        (Value::Array(m), _) => m.clone(),
        (_, Value::String(p)) => vec![serde_json::json!({"role": "user", "content": p})],
        _ => return Err("needs `prompt` (string) or `messages` (array)".into()),
    };
    let label = match &v["label"] {
        Value::Null => None,
        Value::Bool(b) => Some(*b),
        Value::Number(n) => Some(n.as_f64() == Some(1.0)),
        Value::String(s) => Some(s == "reasoning" || s == "1"),
        _ => return Err("`label` must be 0/1, a bool or fast/reasoning".into()),
    };
    let text = |k: &str| v[k].as_str().map(str::to_string);
    Ok(Example {
        id,
        messages,
        label,
        source: text("source").unwrap_or_else(|| default_source.to_string()),
        category: text("category").unwrap_or_default(),
        lang: text("lang").unwrap_or_else(|| "en".to_string()),
        shape: text("shape").unwrap_or_default(),
        family: text("family").unwrap_or_default(),
    })
}

/// Loads every `*.jsonl` under the given files or directories, in sorted path order.
pub fn load_examples(paths: &[PathBuf]) -> Result<Vec<Example>, String> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    let mut examples = Vec::new();
    for file in files {
        let text =
            std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let stem = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("data")
            .to_string();
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let example = parse_example(line, &stem)
                .map_err(|e| format!("{}:{}: {e}", file.display(), n + 1))?;
            examples.push(example);
        }
    }
    Ok(examples)
}

pub fn featurize(extractor: &FeatureExtractor, examples: &[Example]) -> Vec<Vec<f32>> {
    examples
        .iter()
        .map(|e| extractor.extract(&conversation_of(&e.messages)).values)
        .collect()
}

#[derive(Debug, Clone, Copy)]
pub struct TrainOptions {
    pub seed: u64,
    pub epochs: usize,
    pub learning_rate: f32,
    pub l2: f32,
    pub folds: usize,
    /// Weight of a non-English example relative to an English one.
    pub non_english_weight: f32,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            seed: 42,
            epochs: 400,
            learning_rate: 0.05,
            l2: 3e-3,
            folds: 5,
            non_english_weight: 1.0,
        }
    }
}

/// A logistic model on standardised features.
#[derive(Debug, Clone)]
pub struct Linear {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub weights: Vec<f32>,
    pub bias: f32,
}

impl Linear {
    pub fn logit(&self, x: &[f32]) -> f32 {
        self.bias
            + x.iter()
                .zip(&self.mean)
                .zip(&self.std)
                .zip(&self.weights)
                .map(|(((x, m), s), w)| w * (x - m) / s)
                .sum::<f32>()
    }
}

/// Per-example weights: non-English rows count `opts.non_english_weight` times, so the
/// few hundred prompts of each language are not drowned by the English majority.
pub fn example_weights(examples: &[Example], opts: &TrainOptions) -> Vec<f32> {
    examples
        .iter()
        .map(|e| {
            if e.lang == "en" {
                1.0
            } else {
                opts.non_english_weight
            }
        })
        .collect()
}

/// Features shifted to mean 0 and scaled to standard deviation 1 per column (a column's
/// deviation is at least `floor`), with the mean and deviation to fold the fit back.
pub struct Standardized {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub rows: Vec<Vec<f32>>,
}

pub fn standardize(features: &[&[f32]], floor: f32) -> Standardized {
    let n = features.len().max(1);
    let d = features.first().map_or(0, |x| x.len());
    let mut mean = vec![0f32; d];
    for x in features {
        for (m, v) in mean.iter_mut().zip(x.iter()) {
            *m += v / n as f32;
        }
    }
    let mut std = vec![0f32; d];
    for x in features {
        for ((s, v), m) in std.iter_mut().zip(x.iter()).zip(&mean) {
            *s += (v - m) * (v - m) / n as f32;
        }
    }
    std.iter_mut().for_each(|s| *s = s.sqrt().max(floor));
    let rows = features
        .iter()
        .map(|x| {
            x.iter()
                .zip(&mean)
                .zip(&std)
                .map(|((v, m), s)| (v - m) / s)
                .collect()
        })
        .collect();
    Standardized { mean, std, rows }
}

pub fn fit_linear(
    features: &[&[f32]],
    labels: &[bool],
    weights: &[f32],
    opts: &TrainOptions,
) -> Linear {
    let d = features.first().map_or(0, |x| x.len());
    let Standardized {
        mean,
        std,
        rows: standardized,
    } = standardize(features, 1e-3);
    // Balance the classes: each class carries half of the loss.
    let positives: f32 = labels
        .iter()
        .zip(weights)
        .filter(|(l, _)| **l)
        .map(|(_, w)| w)
        .sum();
    let negatives: f32 = weights.iter().sum::<f32>() - positives;
    let (positives, negatives) = (positives.max(1.0), negatives.max(1.0));
    let sample_weight = |l: bool, w: f32| {
        if l {
            0.5 * w / positives
        } else {
            0.5 * w / negatives
        }
    };

    let mut w = vec![0f32; d];
    let mut b = 0f32;
    let (mut mw, mut vw) = (vec![0f32; d], vec![0f32; d]);
    let (mut mb, mut vb) = (0f32, 0f32);
    let (beta1, beta2, eps) = (0.9f32, 0.999f32, 1e-8f32);
    let mut grad = vec![0f32; d];
    for epoch in 1..=opts.epochs {
        grad.iter_mut().for_each(|g| *g = 0.0);
        let mut grad_b = 0f32;
        for ((x, &label), &weight) in standardized.iter().zip(labels).zip(weights) {
            let z = b + x.iter().zip(&w).map(|(x, w)| x * w).sum::<f32>();
            let err = (sigmoid(z) - label as u8 as f32) * sample_weight(label, weight);
            for (g, v) in grad.iter_mut().zip(x) {
                *g += err * v;
            }
            grad_b += err;
        }
        let t = epoch as i32;
        for i in 0..d {
            let g = grad[i] + opts.l2 * w[i];
            mw[i] = beta1 * mw[i] + (1.0 - beta1) * g;
            vw[i] = beta2 * vw[i] + (1.0 - beta2) * g * g;
            let m_hat = mw[i] / (1.0 - beta1.powi(t));
            let v_hat = vw[i] / (1.0 - beta2.powi(t));
            w[i] -= opts.learning_rate * m_hat / (v_hat.sqrt() + eps);
        }
        mb = beta1 * mb + (1.0 - beta1) * grad_b;
        vb = beta2 * vb + (1.0 - beta2) * grad_b * grad_b;
        b -= opts.learning_rate * (mb / (1.0 - beta1.powi(t)))
            / ((vb / (1.0 - beta2.powi(t))).sqrt() + eps);
    }
    Linear {
        mean,
        std,
        weights: w,
        bias: b,
    }
}

/// Platt scaling: fits p = sigmoid(a z + b) to labels by Newton's method (with the usual
/// target smoothing), on scores the model did not train on.
pub fn fit_platt(logits: &[f32], labels: &[bool]) -> (f32, f32) {
    let positives = labels.iter().filter(|l| **l).count() as f64;
    let negatives = labels.len() as f64 - positives;
    let hi = (positives + 1.0) / (positives + 2.0);
    let lo = 1.0 / (negatives + 2.0);
    let (mut a, mut b) = (1.0f64, 0.0f64);
    for _ in 0..100 {
        let (mut g_a, mut g_b, mut h_aa, mut h_ab, mut h_bb) = (0.0, 0.0, 1e-9, 0.0, 1e-9);
        for (&z, &l) in logits.iter().zip(labels) {
            let z = z as f64;
            let t = if l { hi } else { lo };
            let p = 1.0 / (1.0 + (-(a * z + b)).exp());
            let (d, s) = (p - t, p * (1.0 - p));
            g_a += d * z;
            g_b += d;
            h_aa += s * z * z;
            h_ab += s * z;
            h_bb += s;
        }
        let det = h_aa * h_bb - h_ab * h_ab;
        if det.abs() < 1e-12 {
            break;
        }
        let (da, db) = (
            (h_bb * g_a - h_ab * g_b) / det,
            (h_aa * g_b - h_ab * g_a) / det,
        );
        a -= da;
        b -= db;
        if da.abs() < 1e-7 && db.abs() < 1e-7 {
            break;
        }
    }
    (a as f32, b as f32)
}

/// Deterministic fold of each example (xorshift over the seed, by position).
pub fn folds(n: usize, k: usize, seed: u64) -> Vec<usize> {
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        order.swap(i, (state % (i as u64 + 1)) as usize);
    }
    let mut fold = vec![0; n];
    for (rank, &i) in order.iter().enumerate() {
        fold[i] = rank % k.max(1);
    }
    fold
}

/// Out-of-fold raw logits for every example.
pub fn out_of_fold_logits(
    features: &[Vec<f32>],
    labels: &[bool],
    weights: &[f32],
    opts: &TrainOptions,
) -> Vec<f32> {
    let fold = folds(features.len(), opts.folds, opts.seed);
    let mut logits = vec![0f32; features.len()];
    for f in 0..opts.folds {
        let train: Vec<usize> = (0..features.len()).filter(|&i| fold[i] != f).collect();
        let train_x: Vec<&[f32]> = train.iter().map(|&i| features[i].as_slice()).collect();
        let train_y: Vec<bool> = train.iter().map(|&i| labels[i]).collect();
        let train_w: Vec<f32> = train.iter().map(|&i| weights[i]).collect();
        let model = fit_linear(&train_x, &train_y, &train_w, opts);
        for i in (0..features.len()).filter(|i| fold[*i] == f) {
            logits[i] = model.logit(&features[i]);
        }
    }
    logits
}

/// Trains on everything, calibrates on out-of-fold scores.
pub fn train(
    blocks: Vec<String>,
    features: &[Vec<f32>],
    labels: &[bool],
    weights: &[f32],
    opts: &TrainOptions,
    default_threshold: f32,
    provenance: String,
) -> ModelFile {
    let oof = out_of_fold_logits(features, labels, weights, opts);
    let (platt_a, platt_b) = fit_platt(&oof, labels);
    let all: Vec<&[f32]> = features.iter().map(Vec::as_slice).collect();
    let model = fit_linear(&all, labels, weights, opts);
    ModelFile {
        version: MODEL_VERSION,
        provenance,
        features: blocks,
        mean: model.mean,
        std: model.std,
        weights: model.weights,
        bias: model.bias,
        platt_a,
        platt_b,
        default_threshold,
    }
}

pub fn write_model(model: &ModelFile, path: &Path) -> std::io::Result<()> {
    let json = serde_json::to_string(model).expect("a model serializes");
    std::fs::write(path, json + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platt_recovers_a_known_calibration() {
        // Labels drawn deterministically from p = sigmoid(2z - 1).
        let mut logits = Vec::new();
        let mut labels = Vec::new();
        for i in 0..4000 {
            let z = (i as f32 / 4000.0) * 6.0 - 3.0;
            let p = sigmoid(2.0 * z - 1.0);
            let u = ((i * 7919) % 4000) as f32 / 4000.0;
            logits.push(z);
            labels.push(u < p);
        }
        let (a, b) = fit_platt(&logits, &labels);
        assert!(
            (a - 2.0).abs() < 0.4 && (b + 1.0).abs() < 0.4,
            "a={a} b={b}"
        );
    }

    #[test]
    fn folds_are_deterministic_and_balanced() {
        let f = folds(103, 5, 7);
        assert_eq!(f, folds(103, 5, 7));
        assert_ne!(f, folds(103, 5, 8));
        for k in 0..5 {
            let n = f.iter().filter(|x| **x == k).count();
            assert!((20..=21).contains(&n));
        }
    }

    #[test]
    fn parses_prompt_and_messages_lines() {
        let e = parse_example(r#"{"id": 3, "prompt": "hi", "label": 0}"#, "f").unwrap();
        assert_eq!(
            (e.id.as_str(), e.label, e.source.as_str()),
            ("3", Some(false), "f")
        );
        let e = parse_example(
            r#"{"id": "a", "messages": [{"role": "user", "content": "x"}], "source": "s"}"#,
            "f",
        )
        .unwrap();
        assert_eq!(
            (e.label, e.source.as_str(), e.messages.len()),
            (None, "s", 1)
        );
        assert!(parse_example(r#"{"id": 1}"#, "f").is_err());
    }
}
