//! Tricky cases for the shipped model, none of them in the training data. The bar is the
//! model's own operating point (`default_threshold`), which is what `auto` uses.

use std::borrow::Cow;
use std::sync::OnceLock;

use super::*;
use crate::classify::{Role, Turn};

fn model() -> &'static LearnedClassifier {
    static MODEL: OnceLock<LearnedClassifier> = OnceLock::new();
    MODEL.get_or_init(LearnedClassifier::builtin)
}

fn conv<'a>(turns: &[(Role, &'a str)]) -> Conversation<'a> {
    Conversation {
        turns: turns
            .iter()
            .map(|(role, text)| Turn {
                role: *role,
                text: Cow::Borrowed(*text),
            })
            .collect(),
    }
}

fn score(turns: &[(Role, &str)]) -> Scored {
    model().score(&conv(turns))
}

fn user(text: &str) -> Scored {
    score(&[(Role::User, text)])
}

const HARD_POSITIVES: &[&str] = &[
    "how many r's are in the word strawberry? count carefully",
    "A bat and a ball cost $1.10 in total. The bat costs $1.00 more than the ball. How much does the ball cost?",
    "I have 3 meetings that each need 2 of the 5 people, nobody can be in two meetings at the same time slot, Dana can't do mornings and Eli and Fay must never meet together. Find a schedule over 2 slots or prove it's impossible.",
    "Prove that the sum of the first n odd numbers is n^2.",
    "Give me five English words that contain the letter x three times.",
];

const HARD_NEGATIVES: &[&str] = &[
    "Can you rewrite this email to sound more professional? 'hi team, the Q3 numbers are in: revenue 4.2M (+12%), costs 3.1M, margin 26%. meeting moved to 3pm thursday 14th, room 204. bring the 2024 forecast v3 and the 17 open tickets list. thx'",
    "Explain the Monty Hall problem to me like I'm 12.",
    "Summarize this abstract in two sentences: We study the asymptotic behaviour of the spectral gap of random regular graphs and prove that, with high probability, the second eigenvalue of the adjacency matrix is at most 2*sqrt(d-1)+epsilon. Our proof combines the trace method with a novel tangle-free decomposition and improves earlier bounds by a logarithmic factor.",
    "Translate to French: The meeting is postponed until next Tuesday at 10am because the budget of $45,000 has not been approved yet.",
    "write a python function that reverses a string",
    "what's the capital of australia",
    "hey! how's it going?",
];

#[test]
fn hard_positives_go_to_reasoning() {
    let t = model().default_threshold();
    for prompt in HARD_POSITIVES {
        let s = user(prompt);
        assert!(
            s.score >= t,
            "{:.3} < {t:.3} for {prompt:?} ({:?})",
            s.score,
            s.reasons
        );
    }
}

#[test]
fn hard_negatives_stay_fast() {
    let t = model().default_threshold();
    for prompt in HARD_NEGATIVES {
        let s = user(prompt);
        assert!(
            s.score < t,
            "{:.3} >= {t:.3} for {prompt:?} ({:?})",
            s.score,
            s.reasons
        );
    }
}

#[test]
fn a_follow_up_after_a_math_problem_stays_reasoning() {
    let follow_up = "now what if the second one goes 75 mph?";
    let in_context = score(&[
        (Role::User, "A train leaves at 3pm going 60 mph, another leaves the same station at 4pm going 80 mph on the same track. When does the second catch the first?"),
        (Role::Assistant, "The second train catches up at 7pm, 240 miles from the station."),
        (Role::User, follow_up),
    ]);
    // At the shipped operating point (6% of held-out traffic) this one sits just under the
    // threshold (0.77 vs 0.80, a known miss in EVAL.md); the earlier turn must still make it
    // far more likely reasoning than chat.
    assert!(in_context.score > 0.5, "{in_context:?}");
    assert!(
        in_context
            .reasons
            .contains(&"+earlier turn needs reasoning"),
        "{in_context:?}"
    );
}

#[test]
fn a_friendly_rewrite_after_a_proof_is_fast() {
    let s = score(&[
        (Role::User, "Prove that sqrt(2) is irrational."),
        (Role::Assistant, "Suppose sqrt(2) = p/q in lowest terms; then p^2 = 2q^2, so p is even ... contradiction."),
        (Role::User, "thanks! can you make it shorter and friendlier for a blog post?"),
    ]);
    assert!(s.score < model().default_threshold(), "{s:?}");
}

#[test]
fn system_prompts_and_tool_results_are_not_the_question() {
    let t = model().default_threshold();
    let s = score(&[
        (Role::System, "Always answer in markdown with bullet points. Show your reasoning step by step. Keep answers under 100 words."),
        (Role::User, "hello there"),
    ]);
    assert!(s.score < t, "{s:?}");
    let s = score(&[
        (Role::User, "what's the weather in oslo"),
        (Role::Assistant, "Let me check."),
        (
            Role::Tool,
            "{\"temp_c\": 3, \"integral\": \"x^3/3\", \"proof\": \"n^2 + n is even for all n\"}",
        ),
        (Role::User, "thanks, that's all i needed"),
    ]);
    assert!(s.score < t, "{s:?}");
}

#[test]
fn non_english_small_talk_is_fast() {
    // Japanese and other CJK small talk is a known gap (EVAL.md): the embedding table comes
    // from an English-only model and most CJK characters are unknown to its vocabulary.
    for prompt in [
        "Hallo, wie geht es dir heute?",
        "¿Me recomiendas una película para esta noche?",
    ] {
        let s = user(prompt);
        assert!(s.score < model().default_threshold(), "{prompt}: {s:?}");
    }
}

#[test]
fn empty_and_huge_inputs() {
    let s = score(&[]);
    assert_eq!(s.reasons, vec!["no user text"]);
    assert!(s.score < model().default_threshold());
    let s = score(&[(Role::System, "be brief"), (Role::User, "   ")]);
    assert_eq!(s.reasons, vec!["no user text"]);
    let huge = "Please rewrite this paragraph more clearly. ".repeat(25_000);
    let s = user(&huge);
    assert!((0.0..=1.0).contains(&s.score));
    let noise: String = (0..300_000u32)
        .map(|i| char::from_u32(0x4E00 + i % 500).unwrap())
        .collect();
    assert!((0.0..=1.0).contains(&user(&noise).score));
}

#[test]
fn reasons_are_short_signed_and_header_safe() {
    for prompt in HARD_POSITIVES.iter().chain(HARD_NEGATIVES) {
        let s = user(prompt);
        assert!((1..=3).contains(&s.reasons.len()), "{s:?}");
        for r in &s.reasons {
            assert!(r.starts_with('+') || r.starts_with('-'), "{r}");
            assert!(r.is_ascii() && !r.contains(',') && r.len() < 40, "{r}");
        }
    }
    // A proof is explained by what it is about.
    let s = user("Prove that there are infinitely many primes.");
    assert!(
        s.reasons
            .iter()
            .any(|r| r.contains("proof") || r.contains("reasoning tasks")),
        "{s:?}"
    );
}

#[test]
fn the_shipped_model_loads_and_rejects_a_mismatched_file() {
    assert!((0.0..1.0).contains(&model().default_threshold()));
    let bad = r#"{"version":2,"provenance":"x","features":["shape"],"mean":[0.0],"std":[1.0],"weights":[0.0],"bias":0,"platt_a":1,"platt_b":0,"default_threshold":0.5}"#;
    assert!(matches!(
        LearnedClassifier::from_json(bad, StaticEmbedder::builtin()),
        Err(ModelError::Features(1, _))
    ));
    let bad = bad.replace("shape", "nope");
    assert!(matches!(
        LearnedClassifier::from_json(&bad, StaticEmbedder::builtin()),
        Err(ModelError::Blocks(_))
    ));
}

#[test]
fn dot_product_covers_every_length_and_the_remainder() {
    for n in 0..20usize {
        let a: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let b = vec![2.0f32; n];
        assert_eq!(dot(&a, &b), (n * n.saturating_sub(1)) as f32, "length {n}");
    }
}
