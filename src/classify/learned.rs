//! The learned classifier: a calibrated logistic model over `features::FeatureExtractor`.
//!
//! The model file (`models/router.json`, written by `deliberate classify train`) holds the
//! standardisation, the weights and a Platt calibration fitted on out-of-fold scores, so the
//! score is a probability. At load the standardisation is folded into the weights: scoring
//! is one feature extraction and one dot product. Reasons are the features (or embedding
//! blocks) that pushed the score most toward the verdict.

use serde::{Deserialize, Serialize};

use super::embed::StaticEmbedder;
use super::features::{parse_blocks, Block, FeatureExtractor};
use super::{Classifier, Conversation, Scored};

pub const MODEL_VERSION: u32 = 2;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    pub version: u32,
    /// How it was made (command, seed, data), for the record.
    pub provenance: String,
    /// The feature blocks, in order (`features::Block` names).
    pub features: Vec<String>,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub weights: Vec<f32>,
    pub bias: f32,
    /// p = sigmoid(platt_a * z + platt_b), z the raw logit.
    pub platt_a: f32,
    pub platt_b: f32,
    /// Threshold for the default operating point (see EVAL.md).
    pub default_threshold: f32,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model file is not valid JSON for this version: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("model file has version {0}, expected {MODEL_VERSION}")]
    Version(u32),
    #[error("model file has {0} features, its blocks have {1}")]
    Features(usize, usize),
    #[error("model file: {0}")]
    Blocks(String),
}

pub struct LearnedClassifier {
    extractor: FeatureExtractor,
    /// Weights divided by the feature's std; bias adjusted for the means.
    folded: Vec<f32>,
    folded_bias: f32,
    mean: Vec<f32>,
    /// Per block of the layout, in order: the sum of `folded[i] * mean[i]` over the block,
    /// so that an embedding block's push is its share of the dot product minus this.
    block_mean: Vec<f32>,
    platt_a: f32,
    platt_b: f32,
    default_threshold: f32,
}

/// Per block of a layout, in order: a layout lists each block at most once
/// (`parse_blocks`), so this fits any, on the stack (no allocation per request).
type PerBlock = [f32; Block::ALL.len()];

pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl LearnedClassifier {
    pub fn new(
        model: &ModelFile,
        embedder: StaticEmbedder,
    ) -> Result<LearnedClassifier, ModelError> {
        if model.version != MODEL_VERSION {
            return Err(ModelError::Version(model.version));
        }
        let blocks: Vec<Block> =
            parse_blocks(&model.features.join(",")).map_err(ModelError::Blocks)?;
        let extractor = FeatureExtractor::new(embedder, &blocks);
        let expected = extractor.layout().len;
        for len in [model.mean.len(), model.std.len(), model.weights.len()] {
            if len != expected {
                return Err(ModelError::Features(len, expected));
            }
        }
        let folded: Vec<f32> = model
            .weights
            .iter()
            .zip(&model.std)
            .map(|(w, s)| w / s.max(1e-6))
            .collect();
        let folded_bias = model.bias
            - folded
                .iter()
                .zip(&model.mean)
                .map(|(w, m)| w * m)
                .sum::<f32>();
        let block_mean = extractor
            .layout()
            .blocks
            .iter()
            .map(|(_, range)| range.clone().map(|i| folded[i] * model.mean[i]).sum())
            .collect();
        Ok(LearnedClassifier {
            extractor,
            folded,
            folded_bias,
            mean: model.mean.clone(),
            block_mean,
            platt_a: model.platt_a,
            platt_b: model.platt_b,
            default_threshold: model.default_threshold,
        })
    }

    pub fn from_json(
        json: &str,
        embedder: StaticEmbedder,
    ) -> Result<LearnedClassifier, ModelError> {
        let model: ModelFile = serde_json::from_str(json)?;
        LearnedClassifier::new(&model, embedder)
    }

    /// The model shipped in `models/`, compiled into the binary.
    pub fn builtin() -> LearnedClassifier {
        LearnedClassifier::from_json(
            include_str!("../../models/router.json"),
            StaticEmbedder::builtin(),
        )
        .expect("the shipped model matches this build")
    }

    pub fn extractor(&self) -> &FeatureExtractor {
        &self.extractor
    }

    /// The raw logit, and per block of the layout the block's share of the dot product.
    fn logit(&self, values: &[f32], per_block: &mut PerBlock) -> f32 {
        let mut z = 0f32;
        for (k, (_, range)) in self.extractor.layout().blocks.iter().enumerate() {
            let block = dot(&self.folded[range.clone()], &values[range.clone()]);
            z += block;
            per_block[k] = block;
        }
        self.folded_bias + z
    }

    /// The (at most three) present features that moved the score most, strongest first,
    /// signed: `+` pushed toward reasoning, `-` toward fast. Absent features (zero: no
    /// earlier turn, no numbers, ...) are not reasons. Independent of any threshold.
    ///
    /// An embedding block (prose, context, grams) is one reason: its push is its share of
    /// the dot product (`per_block`) minus its share at the mean, so only the named blocks
    /// are read feature by feature.
    fn reasons(&self, values: &[f32], per_block: &[f32]) -> Vec<&'static str> {
        let mut pushes: Vec<(f32, &'static str, &'static str)> = Vec::with_capacity(48);
        let layout = self.extractor.layout();
        for (k, (block, range)) in layout.blocks.iter().enumerate() {
            if let Some((up, down)) = block.block_reason() {
                if values[range.clone()].iter().any(|&x| x != 0.0) {
                    pushes.push((per_block[k] - self.block_mean[k], up, down));
                }
                continue;
            }
            for i in range.clone() {
                if values[i] == 0.0 {
                    continue;
                }
                if let Some((up, down)) = block.signed_name(i - range.start) {
                    pushes.push((self.folded[i] * (values[i] - self.mean[i]), up, down));
                }
            }
        }
        // Top three by strength: a partial selection, not a full sort.
        let mut reasons: Vec<&'static str> = Vec::with_capacity(3);
        for _ in 0..3 {
            let best = pushes
                .iter()
                .enumerate()
                .max_by(|a, b| a.1 .0.abs().total_cmp(&b.1 .0.abs()));
            match best {
                Some((i, &(c, up, down))) if c.abs() > 0.05 => {
                    reasons.push(if c > 0.0 { up } else { down });
                    pushes.swap_remove(i);
                }
                _ => break,
            }
        }
        if reasons.is_empty() {
            vec!["no strong signal"]
        } else {
            reasons
        }
    }

    fn probability(&self, z: f32) -> f32 {
        sigmoid(self.platt_a * z + self.platt_b).clamp(0.0, 1.0)
    }

    /// Score and the feature vector (for explanations and evaluation).
    pub fn score_with_features(&self, conversation: &Conversation<'_>) -> (f32, Vec<f32>, bool) {
        let extracted = self.extractor.extract(conversation);
        let z = self.logit(&extracted.values, &mut [0.0; Block::ALL.len()]);
        (
            self.probability(z),
            extracted.values,
            extracted.has_user_text,
        )
    }
}

/// Dot product in `LANES` independent partial sums, which the compiler keeps in SIMD
/// registers; a plain running sum is one chain of ~800 dependent additions (and a branch
/// per feature to skip the zeros of `grams` mispredicts). The order of additions differs
/// from a running sum, so the last bits may: scores stay within 1e-6 of the running
/// sum's (`score_fixture_tests`).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 8;
    let mut acc = [0f32; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let rest: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for k in 0..LANES {
            acc[k] += x[k] * y[k];
        }
    }
    (acc[0] + acc[4]) + (acc[1] + acc[5]) + (acc[2] + acc[6]) + (acc[3] + acc[7]) + rest
}

impl Classifier for LearnedClassifier {
    fn score(&self, conversation: &Conversation<'_>) -> Scored {
        let extracted = self.extractor.extract(conversation);
        let mut per_block = [0.0; Block::ALL.len()];
        let z = self.logit(&extracted.values, &mut per_block);
        let reasons = if extracted.has_user_text {
            self.reasons(&extracted.values, &per_block)
        } else {
            vec!["no user text"]
        };
        Scored {
            score: self.probability(z),
            reasons,
        }
    }

    fn default_threshold(&self) -> f32 {
        self.default_threshold
    }
}

#[cfg(test)]
#[path = "learned_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "shape_tests.rs"]
mod shape_tests;

#[cfg(test)]
#[path = "score_fixture_tests.rs"]
mod score_fixture_tests;
