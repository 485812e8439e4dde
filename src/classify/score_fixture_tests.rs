//! Scores pinned before the first stage's speed work (issue 11): a change that is meant
//! only to make scoring faster must not move any score or reason.
//!
//! Inputs: every held-out prompt (`data/heldout/*.jsonl`, 1,202) plus a few edge
//! conversations (`testdata/score_edge_cases.jsonl`: texts past the scan windows, a pasted
//! table, code and CJK, a follow-up chain, system and tool turns, content parts, mixed
//! scripts, no user text). Model: a copy of the model shipped at a0635a8
//! (`testdata/router_a0635a8.json`), so that retraining `models/router.json` does not
//! touch this test. Expected: `testdata/scores_a0635a8.jsonl`, written by the release
//! binary of 496484d (the code before the speed work) with that same model built in:
//! `deliberate classify --jsonl FILE` over the three held-out files and the edge cases.
//! Re-recorded once for a change of meaning, not of speed: the layout-request keywords
//! ("reformat", "don't solve", their stems in six languages) and the engineering units
//! (kPa, kN, m^3/s) moved 12 lines, each listed in that commit's message; and once for the
//! courtesy cut (`courtesy.rs`: greetings and thanks around a turn are not read), which
//! moved the 9 lines that carry courtesy, listed in that commit's message.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use super::*;
use crate::api::conversation_of;
use crate::classify::train::load_examples;
use crate::classify::Classifier;

fn pinned_model() -> LearnedClassifier {
    LearnedClassifier::from_json(
        include_str!("testdata/router_a0635a8.json"),
        StaticEmbedder::builtin(),
    )
    .expect("the pinned model matches this build")
}

/// id -> (score, reasons) as recorded.
fn expected() -> HashMap<String, (f64, Vec<String>)> {
    include_str!("testdata/scores_a0635a8.jsonl")
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("fixture line is JSON");
            let reasons = v["reasons"]
                .as_array()
                .expect("reasons")
                .iter()
                .map(|r| r.as_str().expect("reason").to_string())
                .collect();
            let id = v["id"].as_str().expect("id").to_string();
            (id, (v["score"].as_f64().expect("score"), reasons))
        })
        .collect()
}

#[test]
fn scores_and_reasons_match_the_recorded_ones() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let examples = load_examples(&[
        root.join("data/heldout"),
        root.join("src/classify/testdata/score_edge_cases.jsonl"),
    ])
    .expect("held-out files load");
    let expected = expected();
    assert_eq!(
        examples.len(),
        expected.len(),
        "one recorded score per input"
    );
    let model = pinned_model();
    let mut wrong = Vec::new();
    for e in &examples {
        let (score, reasons) = &expected[&e.id];
        let got = model.score(&conversation_of(&e.messages));
        if (f64::from(got.score) - score).abs() > 1e-6 || got.reasons != *reasons {
            wrong.push(format!(
                "{}: {} {:?}, recorded {score} {reasons:?}",
                e.id, got.score, got.reasons
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} changed:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
