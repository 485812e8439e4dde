//! The second stage's sentence encoder: all-MiniLM-L6-v2 run in-process on candle's CPU
//! backend, giving exactly the vector sentence-transformers gives (mean-pooled over the
//! tokens, L2-normalised; `tests/fixtures/encoder_reference.json` pins it to 1e-3).
//!
//! Owns: loading the model directory that `scripts/fetch-encoder.sh` writes
//! (`model.safetensors`, `config.json`, `vocab.txt`), choosing the bounded token window of
//! a prompt, and the forward pass (`bert.rs`, weights read by `weights.rs`).
//!
//! CPU-heavy (milliseconds to a hundred milliseconds per call): never call `embed` on an
//! async worker; the request path goes through `classify::stage2`, which runs it on a
//! bounded blocking pool under a time budget.
//!
//! The window: at most `window_tokens` tokens (default 256, the model's training length and
//! sentence-transformers' `max_seq_length` for it; at most 512, its position table). A
//! longer text keeps its first three quarters of the window from the head (where the task
//! is usually stated) and the last quarter from the tail (where the question often comes
//! after pasted data), so padding a problem with a table cannot push its question out.
//! Only the first and last `BYTES_PER_TOKEN * window` bytes are ever tokenised.

mod bert;
pub mod weights;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use serde::Deserialize;

pub use bert::Stopped;
use bert::{normalized, Bert};
use weights::{SafeTensors, WordRows};

use super::wordpiece::WordPiece;

/// Length of all-MiniLM-L6-v2's vectors (the model's `hidden_size`).
pub const HIDDEN_DIMS: usize = 384;
/// The model's default window, in tokens ([CLS] and [SEP] included).
pub const DEFAULT_WINDOW_TOKENS: usize = 256;
/// Bytes of text read per token of window, at each end: a token is rarely under 2 bytes of
/// text, so this always yields a full window when the text has one.
const BYTES_PER_TOKEN: usize = 8;
const CLS: &str = "[CLS]";
const SEP: &str = "[SEP]";
const UNK: &str = "[UNK]";

#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("encoder model: {0}")]
    Format(String),
    #[error("encoder: {0}")]
    Candle(#[from] candle_core::Error),
}

impl EncoderError {
    fn io(path: &Path, source: std::io::Error) -> EncoderError {
        EncoderError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// The files are not there at all (as opposed to there and wrong).
    pub fn is_missing(&self) -> bool {
        matches!(self, EncoderError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// The fields of the model's `config.json` that the forward pass depends on.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub vocab_size: usize,
    pub layer_norm_eps: f64,
    pub hidden_act: String,
}

pub struct Encoder {
    tokenizer: WordPiece,
    words: WordRows,
    bert: Bert,
    window: usize,
    cls: u32,
    sep: u32,
    unk: u32,
}

impl Encoder {
    /// Loads `dir` (as written by `scripts/fetch-encoder.sh`) with the default window.
    pub fn load(dir: &Path) -> Result<Encoder, EncoderError> {
        Encoder::load_with_window(dir, DEFAULT_WINDOW_TOKENS)
    }

    pub fn load_with_window(dir: &Path, window: usize) -> Result<Encoder, EncoderError> {
        let config_path = dir.join("config.json");
        let text =
            std::fs::read_to_string(&config_path).map_err(|e| EncoderError::io(&config_path, e))?;
        let config: Config = serde_json::from_str(&text)
            .map_err(|e| EncoderError::Format(format!("config.json: {e}")))?;
        let heads_fit =
            config.num_attention_heads > 0 && config.hidden_size % config.num_attention_heads == 0;
        if config.hidden_act != "gelu" || !heads_fit || config.hidden_size > 1024 {
            return Err(EncoderError::Format(
                "config.json: not a BERT encoder this build runs".into(),
            ));
        }
        if !(3..=config.max_position_embeddings).contains(&window) {
            return Err(EncoderError::Format(format!(
                "window of {window} tokens: must be 3..={}",
                config.max_position_embeddings
            )));
        }
        // The tokenizer is the first stage's (same vocabulary, compiled in): the model's
        // own vocab.txt must be that one, or ids would mean other tokens.
        let vocab_path = dir.join("vocab.txt");
        let vocab =
            std::fs::read_to_string(&vocab_path).map_err(|e| EncoderError::io(&vocab_path, e))?;
        let builtin = include_str!("../../../models/vocab.txt");
        if vocab != builtin {
            return Err(EncoderError::Format(
                "vocab.txt differs from the built-in models/vocab.txt".into(),
            ));
        }
        let tokenizer = WordPiece::new(builtin);
        let id = |t: &str| {
            tokenizer
                .id(t)
                .ok_or_else(|| EncoderError::Format(format!("vocabulary has no {t}")))
        };
        let (cls, sep, unk) = (id(CLS)?, id(SEP)?, id(UNK)?);
        let model_path = dir.join("model.safetensors");
        let st = SafeTensors::open(&model_path)?;
        let bert = Bert::load(&st, &config)?;
        let words = st.rows(
            "embeddings.word_embeddings.weight",
            config.vocab_size,
            config.hidden_size,
        )?;
        Ok(Encoder {
            tokenizer,
            words,
            bert,
            window,
            cls,
            sep,
            unk,
        })
    }

    /// The model input for `text`: `[CLS]`, the window's tokens, `[SEP]`.
    pub fn window_ids(&self, text: &str) -> Vec<u32> {
        let room = self.window - 2;
        let head_room = room - room / 4;
        let mut ids = Vec::with_capacity(self.window);
        ids.push(self.cls);
        let span = BYTES_PER_TOKEN * self.window;
        if text.len() <= 2 * span {
            let mut all = Vec::new();
            self.tokenizer
                .tokenize_for_model(text, self.unk, |id| all.push(id));
            if all.len() <= room {
                ids.extend(all);
            } else {
                ids.extend(&all[..head_room]);
                ids.extend(&all[all.len() - (room - head_room)..]);
            }
        } else {
            let mut head = Vec::with_capacity(head_room);
            self.tokenizer
                .tokenize_for_model(prefix(text, span), self.unk, |id| {
                    if head.len() < head_room {
                        head.push(id);
                    }
                });
            let mut tail = Vec::new();
            self.tokenizer
                .tokenize_for_model(suffix(text, span), self.unk, |id| tail.push(id));
            let tail_room = room - head.len();
            ids.extend(head);
            ids.extend(&tail[tail.len().saturating_sub(tail_room)..]);
        }
        ids.push(self.sep);
        ids
    }

    /// The unit-length sentence vector of `text` (its window).
    pub fn embed(&self, text: &str) -> Result<Vec<f32>, EncoderError> {
        match self.embed_unless_stopped(text, &AtomicBool::new(false))? {
            Ok(v) => Ok(v),
            Err(Stopped) => unreachable!("nobody sets the flag"),
        }
    }

    /// As `embed`, but gives up between layers once `stop` is set.
    pub fn embed_unless_stopped(
        &self,
        text: &str,
        stop: &AtomicBool,
    ) -> Result<Result<Vec<f32>, Stopped>, EncoderError> {
        let ids = self.window_ids(text);
        debug_assert!(ids.len() <= self.bert.max_positions());
        let mut words = Vec::with_capacity(ids.len() * self.dims());
        for &id in &ids {
            self.words.push_row(id, &mut words)?;
        }
        Ok(self.bert.mean_pooled(words, stop)?.map(normalized))
    }

    /// Length of the vectors `embed` returns.
    pub fn dims(&self) -> usize {
        self.bert.hidden_size()
    }
}

/// At most `max` bytes from the start of `text`, cut at a char boundary.
fn prefix(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// At most `max` bytes from the end of `text`, cut at a char boundary.
fn suffix(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
