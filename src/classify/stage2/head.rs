//! The shipped second-stage model: the sentence encoder's vector of the prompt, scored by a
//! trained logistic head read from `models/stage2.json`, and `start`, which builds the
//! gateway's `SecondStage` from the settings (off without a head file, unavailable without
//! the model files).
//!
//! The head file (written by whoever trains the head, e.g. from `deliberate classify embed`):
//!
//! ```json
//! {"version": 1, "provenance": "how it was trained",
//!  "weights": [384 numbers], "bias": -1.2, "first_stage_weight": 0.8,
//!  "band": {"lower": 0.2, "upper": 0.7}}
//! ```
//!
//! The score is `sigmoid(weights · embedding + first_stage_weight * logit(first) + bias)`,
//! a probability on the first stage's scale: the tenant's threshold applies to it unchanged.
//! `first_stage_weight` (default 0) lets the head keep what the first stage knew.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Band, ModelError, SecondStage, SecondStageModel, Settings};
use crate::classify::encoder::Encoder;
use crate::classify::learned::sigmoid;
use crate::metrics::Metrics;

pub const HEAD_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadFile {
    pub version: u32,
    pub provenance: String,
    pub weights: Vec<f32>,
    pub bias: f32,
    #[serde(default)]
    pub first_stage_weight: f32,
    /// The first-stage scores the head was trained for (config may override it).
    pub band: Band,
}

#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("{0}: {1}")]
    Read(String, std::io::Error),
    #[error("{0}: not a head file: {1}")]
    Parse(String, serde_json::Error),
    #[error("{0}: {1}")]
    Invalid(String, String),
}

impl HeadFile {
    pub fn load(path: &Path, dims: usize) -> Result<HeadFile, HeadError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| HeadError::Read(name.clone(), e))?;
        let head: HeadFile =
            serde_json::from_str(&text).map_err(|e| HeadError::Parse(name.clone(), e))?;
        head.check(dims).map_err(|e| HeadError::Invalid(name, e))?;
        Ok(head)
    }

    fn check(&self, dims: usize) -> Result<(), String> {
        if self.version != HEAD_VERSION {
            return Err(format!("version {}, expected {HEAD_VERSION}", self.version));
        }
        if self.weights.len() != dims {
            return Err(format!(
                "{} weights, the encoder gives {dims}",
                self.weights.len()
            ));
        }
        let finite = self.weights.iter().all(|w| w.is_finite())
            && self.bias.is_finite()
            && self.first_stage_weight.is_finite();
        if !finite {
            return Err("weights must be finite".into());
        }
        valid_band(&self.band)
    }

    pub fn score(&self, embedding: &[f32], first_stage: f32) -> f32 {
        let z = self.bias
            + self.first_stage_weight * first_stage_logit(first_stage)
            + self
                .weights
                .iter()
                .zip(embedding)
                .map(|(w, x)| w * x)
                .sum::<f32>();
        sigmoid(z)
    }
}

/// The first stage's score as the head reads it (and was trained on): its logit, clamped so
/// that 0 and 1 stay finite.
pub fn first_stage_logit(p: f32) -> f32 {
    let p = p.clamp(1e-4, 1.0 - 1e-4);
    (p / (1.0 - p)).ln()
}

pub fn valid_band(band: &Band) -> Result<(), String> {
    if (0.0..=1.0).contains(&band.lower)
        && (0.0..=1.0).contains(&band.upper)
        && band.lower <= band.upper
    {
        Ok(())
    } else {
        Err("band must satisfy 0 <= lower <= upper <= 1".into())
    }
}

/// The encoder and the head over it.
pub struct EncoderHead {
    pub encoder: Encoder,
    pub head: HeadFile,
}

impl SecondStageModel for EncoderHead {
    fn score(
        &self,
        text: &str,
        first_stage: f32,
        stop: &AtomicBool,
    ) -> Result<Option<f32>, ModelError> {
        Ok(self
            .encoder
            .embed_unless_stopped(text, stop)?
            .ok()
            .map(|v| self.head.score(&v, first_stage)))
    }
}

/// Builds the gateway's second stage from `settings`, loading the model (blocking: call it
/// from a blocking thread). Says what it did once, in the log.
pub fn start(settings: &Settings, metrics: Arc<Metrics>) -> SecondStage {
    let stage = build(settings, metrics);
    let status = stage.status();
    match stage.state {
        super::State::Unavailable { .. } => tracing::warn!("{status}"),
        _ => tracing::info!("{status}"),
    }
    stage
}

/// What `load` found.
pub enum Loaded {
    /// Not asked for (disabled, or no head file).
    Off(String),
    /// Asked for but not loadable; the band, if the head file says it.
    Unavailable { band: Option<Band>, why: String },
    Ready {
        model: Box<EncoderHead>,
        band: Band,
        description: String,
    },
}

/// Loads the encoder and the head `settings` name (blocking: the encoder reads ~70 MB).
/// The gateway (`start`) and `deliberate classify` both go through here, so the command
/// line scores with exactly the model the gateway would use.
pub fn load(settings: &Settings) -> Loaded {
    if !settings.enabled {
        return Loaded::Off("second_stage.enabled = false".into());
    }
    let head_path = &settings.head_file;
    if !head_path.exists() {
        return Loaded::Off(format!("no head file at {}", head_path.display()));
    }
    let encoder = match Encoder::load_with_window(&settings.model_dir, settings.window_tokens) {
        Ok(e) => e,
        Err(e) => {
            let why = if e.is_missing() {
                format!(
                    "model files missing in {}: run scripts/fetch-encoder.sh",
                    settings.model_dir.display()
                )
            } else {
                e.to_string()
            };
            // The band is still worth knowing: those requests are counted `unavailable`.
            let band = settings.band.or_else(|| {
                HeadFile::load(head_path, crate::classify::encoder::HIDDEN_DIMS)
                    .ok()
                    .map(|h| h.band)
            });
            return Loaded::Unavailable { band, why };
        }
    };
    let head = match HeadFile::load(head_path, encoder.dims()) {
        Ok(h) => h,
        Err(e) => {
            return Loaded::Unavailable {
                band: settings.band,
                why: e.to_string(),
            }
        }
    };
    let band = settings.band.unwrap_or(head.band);
    let description = format!(
        "encoder {} from {}, window {} tokens, head {}",
        encoder.name(),
        settings.model_dir.display(),
        settings.window_tokens,
        head_path.display()
    );
    Loaded::Ready {
        model: Box::new(EncoderHead { encoder, head }),
        band,
        description,
    }
}

fn build(settings: &Settings, metrics: Arc<Metrics>) -> SecondStage {
    match load(settings) {
        Loaded::Off(why) => SecondStage::off(why, metrics),
        Loaded::Unavailable { band, why } => SecondStage::unavailable(band, why, metrics),
        Loaded::Ready {
            model,
            band,
            description,
        } => SecondStage::active(Arc::new(*model), band, settings, description, metrics),
    }
}
