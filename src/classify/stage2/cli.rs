//! The second stage on the command line: `deliberate classify` decides as the gateway
//! does, with the same model and band (`head::load`), asked in line.

use std::sync::atomic::AtomicBool;

use super::head::{load, Loaded};
use super::{bounded, Band, SecondStageModel, Settings};
use crate::classify::Conversation;

/// The second stage as `deliberate classify` runs it: the gateway's model and band, asked
/// in line (no time budget: the command line has no one waiting), about the same text (the
/// last user turn, bounded as in the gateway).
pub struct Refiner {
    pub model: Box<dyn SecondStageModel>,
    pub band: Band,
}

impl Refiner {
    /// The second stage's score, when `first` is in the band and the model answers.
    pub fn refine(&self, conversation: &Conversation<'_>, first: f32) -> Option<f32> {
        if !self.band.contains(first) {
            return None;
        }
        let text = bounded(conversation.last_user_text()?);
        let never = AtomicBool::new(false);
        // As in the gateway: a model that errs or panics leaves the first stage's score (a
        // panic must not end a run over a whole file).
        let scored = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.model.score(&text, first, &never)
        }));
        match scored {
            Ok(Ok(Some(p))) if p.is_finite() => Some(p.clamp(0.0, 1.0)),
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

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::classify::stage2::ModelError;
    use crate::classify::{Role, Turn};

    /// Scores by text: "panic" panics, "fail" errs, anything else scores 0.9.
    struct Fake;

    impl SecondStageModel for Fake {
        fn score(&self, text: &str, _: f32, _: &AtomicBool) -> Result<Option<f32>, ModelError> {
            match text {
                "panic" => panic!("model bug"),
                "fail" => Err("broken".into()),
                _ => Ok(Some(0.9)),
            }
        }
    }

    fn user(text: &'static str) -> Conversation<'static> {
        Conversation {
            turns: vec![Turn {
                role: Role::User,
                text: Cow::Borrowed(text),
            }],
        }
    }

    #[test]
    fn only_the_band_is_asked_and_a_failing_model_leaves_the_first_stage() {
        let r = Refiner {
            model: Box::new(Fake),
            band: Band {
                lower: 0.2,
                upper: 0.8,
            },
        };
        assert_eq!(r.refine(&user("prove it"), 0.5), Some(0.9));
        assert_eq!(r.refine(&user("prove it"), 0.9), None, "outside the band");
        assert_eq!(r.refine(&user("fail"), 0.5), None);
        assert_eq!(r.refine(&user("panic"), 0.5), None);
    }
}
