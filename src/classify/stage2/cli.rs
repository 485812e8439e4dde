//! The second stage on the command line: `deliberate classify` decides as the gateway
//! does, with the same model and band (`head::load`), asked in line.

use std::sync::atomic::AtomicBool;

use super::head::{load, EncoderHead, Loaded};
use super::{bounded, Band, SecondStageModel, Settings};
use crate::classify::{Conversation, Role};

/// The second stage as `deliberate classify` runs it: the gateway's model and band, asked
/// in line (no time budget: the command line has no one waiting), about the same text (the
/// last user turn, bounded as in the gateway).
pub struct Refiner {
    pub model: Box<EncoderHead>,
    pub band: Band,
}

impl Refiner {
    /// The second stage's score, when `first` is in the band and the model answers.
    pub fn refine(&self, conversation: &Conversation<'_>, first: f32) -> Option<f32> {
        if !self.band.contains(first) {
            return None;
        }
        let last_user = conversation
            .turns
            .iter()
            .rev()
            .find(|t| t.role == Role::User)?;
        let text = bounded(&last_user.text);
        let never = AtomicBool::new(false);
        match self.model.score(&text, first, &never) {
            Ok(Some(p)) if p.is_finite() => Some(p.clamp(0.0, 1.0)),
            _ => None,
        }
    }
}

/// The gateway's second stage with `[second_stage]`'s defaults (`models/encoder-e5`,
/// `models/stage2.json`), or `None`; says which on stderr, once.
pub fn second_stage() -> Option<Refiner> {
    match load(&Settings::default()) {
        Loaded::Ready {
            model,
            band,
            description,
        } => {
            eprintln!(
                "deliberate: second stage active ({description}; band {}..{})",
                band.lower, band.upper
            );
            Some(Refiner { model, band })
        }
        Loaded::Off(why) => {
            eprintln!("deliberate: first stage only (second stage off: {why})");
            None
        }
        Loaded::Unavailable { why, .. } => {
            eprintln!("deliberate: first stage only (second stage unavailable: {why})");
            None
        }
    }
}
