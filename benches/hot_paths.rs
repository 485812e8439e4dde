//! Hot-path benchmarks: the classifier runs on the async worker for every `model: "auto"`
//! request, so it must stay in microseconds even on huge prompts.

use std::borrow::Cow;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use deliberate::api::ChatRequest;
use deliberate::classify::embed::StaticEmbedder;
use deliberate::classify::learned::LearnedClassifier;
use deliberate::classify::rules::RulesClassifier;
use deliberate::classify::wordpiece::WordPiece;
use deliberate::classify::{courtesy, grams};
use deliberate::classify::{Classifier, Conversation, Role, Turn};

/// Mixed prose, numbers, code and a little non-ASCII, like real prompts.
const PARAGRAPH: &str = "Hi! I am planning the rollout of our new billing service next week. \
    We have 3 teams and 12 engineers; each team must be on call for at least 2 days. \
    Could you rewrite the following note so it sounds more friendly, and check whether \
    the numbers add up: 12 * 5 = 60 hours per week, 15% overhead. Café meeting at 10:30. \
    fn total(x: u32) -> u32 { x * 2 } ";

fn prompt(len: usize) -> String {
    let mut s = String::with_capacity(len + PARAGRAPH.len());
    while s.len() < len {
        s.push_str(PARAGRAPH);
    }
    let mut end = len;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s
}

fn conversation(user: String) -> Conversation<'static> {
    Conversation {
        turns: vec![
            Turn {
                role: Role::System,
                text: Cow::Borrowed("You are a helpful assistant. Answer in markdown."),
            },
            Turn {
                role: Role::User,
                text: Cow::Owned(user),
            },
        ],
    }
}

fn rules_classifier(c: &mut Criterion) {
    let classifier = RulesClassifier::new();
    let short = conversation(prompt(500));
    let long = conversation(prompt(100 * 1024));
    // Build the keyword table outside the measurement.
    black_box(classifier.score(&short));

    let mut group = c.benchmark_group("rules_classifier");
    group.bench_function("score_500_chars", |b| {
        b.iter(|| classifier.score(black_box(&short)))
    });
    group.bench_function("score_100_kb", |b| {
        b.iter(|| classifier.score(black_box(&long)))
    });
    group.finish();
}

fn learned_classifier(c: &mut Criterion) {
    let classifier = LearnedClassifier::builtin();
    let short = conversation(prompt(500));
    let long = conversation(prompt(100 * 1024));
    black_box(classifier.score(&short));

    let mut group = c.benchmark_group("learned_classifier");
    group.bench_function("score_500_chars", |b| {
        b.iter(|| classifier.score(black_box(&short)))
    });
    group.bench_function("score_100_kb", |b| {
        b.iter(|| classifier.score(black_box(&long)))
    });
    // Startup cost: vocabulary index, token weights, model file parse.
    group.sample_size(20);
    group.bench_function("model_load", |b| {
        b.iter(|| black_box(LearnedClassifier::builtin()))
    });
    group.finish();
}

/// The learned classifier's pieces on the 500-character prompt, to see where its time goes.
fn classifier_parts(c: &mut Criterion) {
    let text = prompt(500);
    let short = conversation(text.clone());
    let tokenizer = WordPiece::new(include_str!("../models/vocab.txt"));
    let embedder = StaticEmbedder::builtin();
    let rules = RulesClassifier::new();
    black_box(rules.signals(&short));

    let mut group = c.benchmark_group("classifier_parts");
    group.bench_function("tokenize_500_chars", |b| {
        b.iter(|| {
            let mut n = 0u32;
            tokenizer.tokenize(black_box(&text), |id| n = n.wrapping_add(id));
            n
        })
    });
    group.bench_function("embed_500_chars", |b| {
        b.iter(|| embedder.embed(black_box(&text)))
    });
    group.bench_function("rule_signals_500_chars", |b| {
        b.iter(|| rules.signals(black_box(&short)))
    });
    // The bench prompt opens with "Hi!": without it, a turn with no courtesy to cut.
    let plain = text.trim_start_matches("Hi! ");
    let polite = format!("Hello, please help me with this: {plain} Thanks in advance!");
    group.bench_function("courtesy_trim_plain_500_chars", |b| {
        b.iter(|| courtesy::trim(black_box(plain)).len())
    });
    group.bench_function("courtesy_trim_500_chars", |b| {
        b.iter(|| courtesy::trim(black_box(&text)).len())
    });
    group.bench_function("courtesy_trim_polite_500_chars", |b| {
        b.iter(|| courtesy::trim(black_box(&polite)).len())
    });
    let lines: Vec<&str> = text.lines().collect();
    let mut out = vec![0f32; grams::BUCKETS];
    group.bench_function("grams_500_chars", |b| {
        b.iter(|| grams::grams(black_box(&lines), &mut out))
    });
    group.finish();
}

fn request_parse(c: &mut Criterion) {
    let body = serde_json::json!({
        "model": "auto", "temperature": 0.2, "stream": true,
        "messages": [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": prompt(500)}],
    })
    .to_string();
    c.bench_function("chat_request_parse_500_chars", |b| {
        b.iter(|| ChatRequest::parse(black_box(body.as_bytes())).unwrap())
    });
}

criterion_group!(
    benches,
    rules_classifier,
    learned_classifier,
    classifier_parts,
    request_parse
);
criterion_main!(benches);
