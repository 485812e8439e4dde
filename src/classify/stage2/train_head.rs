//! `deliberate classify train-head`: fits the second stage's logistic head (`head.rs`) on
//! the lines `deliberate classify embed` wrote, using only the examples whose first-stage
//! score falls in the band (the only ones the gateway will ever ask it about), and says
//! whether it pays: out-of-fold AUC of the head against the first stage's on that band.
//!
//! The fit is deterministic (full-batch Adam from zero, no sampling; folds from a fixed
//! seed) and unweighted, so the head's score stays a calibrated probability for the band's
//! traffic and the tenant's threshold applies to it as it does to the first stage's.

use std::io::BufRead;
use std::path::Path;

use serde::Deserialize;

use super::head::{valid_band, HeadFile, HEAD_VERSION};
use super::Band;
use crate::classify::eval::auc;
use crate::classify::learned::sigmoid;
use crate::classify::train::{folds, standardize, Standardized};

/// One line of `classify embed`'s output (other fields are ignored).
#[derive(Deserialize)]
struct EmbeddedLine {
    label: Option<bool>,
    first_stage: f32,
    embedding: Vec<f32>,
}

#[derive(Debug, Clone, Copy)]
pub struct HeadOptions {
    pub band: Band,
    pub l2: f32,
    pub epochs: usize,
    pub folds: usize,
    pub seed: u64,
}

impl Default for HeadOptions {
    fn default() -> HeadOptions {
        HeadOptions {
            band: Band {
                lower: 0.2,
                upper: 0.7,
            },
            l2: 1e-2,
            epochs: 300,
            folds: 5,
            seed: 42,
        }
    }
}

/// Fewer labelled examples than this in the band cannot make a head worth shipping.
const MIN_BAND_EXAMPLES: usize = 40;

/// A head's raw parameters: `weights` over the embedding, then the first stage's logit.
struct Fitted {
    weights: Vec<f32>,
    bias: f32,
}

impl Fitted {
    fn logit(&self, x: &[f32]) -> f32 {
        self.bias + x.iter().zip(&self.weights).map(|(x, w)| x * w).sum::<f32>()
    }
}

/// Logistic regression on standardised features (L2 on the standardised weights), folded
/// back into weights on the raw features, which is what the head file holds.
fn fit(xs: &[&[f32]], ys: &[bool], opts: &HeadOptions) -> Fitted {
    let n = xs.len().max(1) as f32;
    let d = xs.first().map_or(0, |x| x.len());
    let Standardized { mean, std, rows: z } = standardize(xs, 1e-4);
    let (mut w, mut b) = (vec![0f32; d], 0f32);
    let (mut mw, mut vw, mut mb, mut vb) = (vec![0f32; d], vec![0f32; d], 0f32, 0f32);
    let (beta1, beta2, eps, rate) = (0.9f32, 0.999f32, 1e-8f32, 0.05f32);
    let mut grad = vec![0f32; d];
    for epoch in 1..=opts.epochs {
        grad.iter_mut().for_each(|g| *g = 0.0);
        let mut grad_b = 0f32;
        for (x, &y) in z.iter().zip(ys) {
            let p = sigmoid(b + x.iter().zip(&w).map(|(x, w)| x * w).sum::<f32>());
            let err = (p - f32::from(u8::from(y))) / n;
            grad.iter_mut().zip(x).for_each(|(g, v)| *g += err * v);
            grad_b += err;
        }
        let (c1, c2) = (
            1.0 - beta1.powi(epoch as i32),
            1.0 - beta2.powi(epoch as i32),
        );
        for i in 0..d {
            let g = grad[i] + opts.l2 * w[i];
            mw[i] = beta1 * mw[i] + (1.0 - beta1) * g;
            vw[i] = beta2 * vw[i] + (1.0 - beta2) * g * g;
            w[i] -= rate * (mw[i] / c1) / ((vw[i] / c2).sqrt() + eps);
        }
        mb = beta1 * mb + (1.0 - beta1) * grad_b;
        vb = beta2 * vb + (1.0 - beta2) * grad_b * grad_b;
        b -= rate * (mb / c1) / ((vb / c2).sqrt() + eps);
    }
    let weights: Vec<f32> = w.iter().zip(&std).map(|(w, s)| w / s).collect();
    let bias = b - weights.iter().zip(&mean).map(|(w, m)| w * m).sum::<f32>();
    Fitted { weights, bias }
}

/// The labelled lines in the band, and how many lines the file had.
struct BandData {
    xs: Vec<Vec<f32>>,
    ys: Vec<bool>,
    total: usize,
}

/// Reads `classify embed` output: the labelled lines in the band as features (the embedding
/// and the first stage's logit) and labels.
fn read(path: &Path, band: &Band) -> Result<BandData, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (mut xs, mut ys, mut total) = (Vec::new(), Vec::new(), 0);
    let mut dims = None;
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let l: EmbeddedLine = serde_json::from_str(&line)
            .map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))?;
        if *dims.get_or_insert(l.embedding.len()) != l.embedding.len() {
            return Err(format!(
                "{}:{}: embedding length differs",
                path.display(),
                i + 1
            ));
        }
        total += 1;
        let Some(label) = l.label else { continue };
        if !band.contains(l.first_stage) {
            continue;
        }
        let mut x = l.embedding;
        x.push(super::head::first_stage_logit(l.first_stage));
        if x.iter().any(|v| !v.is_finite()) {
            return Err(format!("{}:{}: not a finite vector", path.display(), i + 1));
        }
        xs.push(x);
        ys.push(label);
    }
    Ok(BandData { xs, ys, total })
}

/// Trains the head on `embeddings`, writes it to `out`, and returns a report.
pub fn train_head_command(
    embeddings: &Path,
    out: &Path,
    opts: &HeadOptions,
) -> Result<String, String> {
    valid_band(&opts.band)?;
    let BandData { xs, ys, total } = read(embeddings, &opts.band)?;
    let positives = ys.iter().filter(|y| **y).count();
    if xs.len() < MIN_BAND_EXAMPLES || positives == 0 || positives == ys.len() {
        return Err(format!(
            "{} labelled examples in the band {}..{} ({positives} reasoning): too few to train a head",
            xs.len(),
            opts.band.lower,
            opts.band.upper
        ));
    }
    let fold = folds(xs.len(), opts.folds, opts.seed);
    let mut oof = vec![0f32; xs.len()];
    for k in 0..opts.folds {
        let train: Vec<usize> = (0..xs.len()).filter(|i| fold[*i] != k).collect();
        let x: Vec<&[f32]> = train.iter().map(|i| xs[*i].as_slice()).collect();
        let y: Vec<bool> = train.iter().map(|i| ys[*i]).collect();
        let fitted = fit(&x, &y, opts);
        for i in (0..xs.len()).filter(|i| fold[*i] == k) {
            oof[i] = fitted.logit(&xs[i]);
        }
    }
    let first: Vec<f32> = xs.iter().map(|x| x[x.len() - 1]).collect();
    let all: Vec<&[f32]> = xs.iter().map(Vec::as_slice).collect();
    let fitted = fit(&all, &ys, opts);
    let dims = fitted.weights.len() - 1;
    let head = HeadFile {
        version: HEAD_VERSION,
        provenance: format!(
            "deliberate classify train-head on {} ({} labelled examples in band {}..{}, {positives} reasoning; l2 {}, {} epochs)",
            embeddings.display(),
            xs.len(),
            opts.band.lower,
            opts.band.upper,
            opts.l2,
            opts.epochs
        ),
        weights: fitted.weights[..dims].to_vec(),
        bias: fitted.bias,
        first_stage_weight: fitted.weights[dims],
        band: opts.band,
    };
    let text = serde_json::to_string(&head).map_err(|e| e.to_string())?;
    std::fs::write(out, text + "\n").map_err(|e| format!("{}: {e}", out.display()))?;
    let fmt = |a: Option<f64>| a.map_or("n/a".to_string(), |a| format!("{a:.3}"));
    Ok(format!(
        "wrote {}: {} of {total} lines in the band ({:.1}%), {positives} reasoning; AUC in the band, out of fold: first stage {}, head {}",
        out.display(),
        xs.len(),
        xs.len() as f64 * 100.0 / total.max(1) as f64,
        fmt(auc(&first, &ys)),
        fmt(auc(&oof, &ys)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines where the label is carried by embedding component 0, not by the first stage.
    fn lines(n: usize) -> String {
        (0..n)
            .map(|i| {
                let label = i % 3 == 0;
                let mut e = vec![0.01f32; 8];
                e[0] = if label { 0.3 } else { -0.3 } + (i % 7) as f32 * 0.01;
                e[1] = (i % 5) as f32 * 0.1;
                let first = 0.3 + (i % 4) as f32 * 0.1;
                serde_json::json!({"id": i, "label": label, "first_stage": first, "embedding": e})
                    .to_string()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn a_head_learns_what_the_embedding_says_and_the_gateway_can_load_it() {
        let dir = tempfile::tempdir().unwrap();
        let (data, out) = (dir.path().join("e.jsonl"), dir.path().join("head.json"));
        std::fs::write(&data, lines(120)).unwrap();
        let report = train_head_command(&data, &out, &HeadOptions::default()).unwrap();
        assert!(report.contains("head 1.000"), "{report}");
        let head = HeadFile::load(&out, 8).unwrap();
        let mut reasoning = vec![0.01f32; 8];
        reasoning[0] = 0.3;
        let mut fast = reasoning.clone();
        fast[0] = -0.3;
        assert!(head.score(&reasoning, 0.4) > 0.8);
        assert!(head.score(&fast, 0.4) < 0.2);
        // Deterministic: the same data gives the same file.
        let again = dir.path().join("again.json");
        train_head_command(&data, &again, &HeadOptions::default()).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&again).unwrap());
    }

    #[test]
    fn too_few_examples_in_the_band_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("e.jsonl");
        std::fs::write(&data, lines(120)).unwrap();
        let opts = HeadOptions {
            band: Band {
                lower: 0.95,
                upper: 1.0,
            },
            ..HeadOptions::default()
        };
        let e = train_head_command(&data, &dir.path().join("h.json"), &opts).unwrap_err();
        assert!(e.contains("too few"), "{e}");
    }
}
