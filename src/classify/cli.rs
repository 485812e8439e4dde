//! `deliberate classify ...`: score prompts, evaluate, train and calibrate from the command
//! line. The scoring output format is an interface other tools depend on:
//! one JSON line per input line, in order: `{"id", "score", "tier", "reasons"}`.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::embed::StaticEmbedder;
use super::eval::{self, at_threshold, auc};
use super::features::FeatureExtractor;
use super::learned::LearnedClassifier;
use super::rules::RulesClassifier;
use super::train::{self, load_examples, Example, TrainOptions};
use super::{Classifier, Tier};
use crate::api::conversation_of;
use crate::config::raw::RawTenant;

/// The tenant's `auto.reasoning_threshold` from its policy file (`name` or file stem), or
/// `None` if it sets none.
pub fn tenant_threshold(policies: &Path, tenant: &str) -> Result<Option<f32>, String> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(policies)
        .map_err(|e| format!("{}: {e}", policies.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    entries.sort();
    for path in entries {
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let raw: RawTenant =
            toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message()))?;
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let name = raw
            .name
            .as_ref()
            .map(|n| n.get_ref().as_str())
            .unwrap_or(stem);
        if name == tenant {
            return Ok(raw.auto.reasoning_threshold.map(|t| *t.get_ref() as f32));
        }
    }
    Err(format!("no tenant `{tenant}` in {}", policies.display()))
}

/// Reads JSON lines from `input`, writes one verdict line per input line to `out`.
pub fn score_lines(
    classifier: &dyn Classifier,
    threshold: f32,
    input: impl BufRead,
    mut out: impl Write,
) -> std::io::Result<usize> {
    let mut n = 0;
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        n += 1;
        let verdict = match serde_json::from_str::<Value>(&line) {
            Ok(v) => {
                let messages = match (&v["messages"], &v["prompt"]) {
                    (Value::Array(m), _) => Some(m.clone()),
                    (_, Value::String(p)) => Some(vec![json!({"role": "user", "content": p})]),
                    _ => None,
                };
                match messages {
                    Some(messages) => {
                        let scored = classifier.score(&conversation_of(&messages));
                        let tier = if scored.score >= threshold {
                            Tier::Reasoning
                        } else {
                            Tier::Fast
                        };
                        json!({"id": v["id"], "score": scored.score, "tier": tier.as_str(), "reasons": scored.reasons})
                    }
                    None => {
                        json!({"id": v["id"], "error": "needs `prompt` (string) or `messages` (array)"})
                    }
                }
            }
            Err(e) => json!({"id": null, "error": format!("line {n} is not JSON: {e}")}),
        };
        serde_json::to_writer(&mut out, &verdict)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(n)
}

fn labelled(examples: Vec<Example>) -> Result<Vec<Example>, String> {
    let missing = examples.iter().filter(|e| e.label.is_none()).count();
    if missing > 0 {
        return Err(format!("{missing} examples have no `label`"));
    }
    Ok(examples)
}

/// `classify train`: trains on `data`, writes the model to `out`; the default threshold is
/// the lowest that keeps the out-of-fold false-positive rate at or under `max_fpr`.
pub fn train_command(
    data: &[PathBuf],
    out: &Path,
    opts: &TrainOptions,
    max_fpr: f64,
) -> Result<String, String> {
    let examples = labelled(load_examples(data)?)?;
    let extractor = FeatureExtractor::new(StaticEmbedder::builtin());
    let features = train::featurize(&extractor, &examples);
    let labels: Vec<bool> = examples.iter().map(|e| e.label == Some(true)).collect();
    let oof = eval::cross_validated_scores(&features, &labels, opts);
    let threshold = threshold_for_fpr(&oof, &labels, max_fpr);
    let provenance = format!(
        "deliberate classify train --seed {} --max-fpr {max_fpr} on {} examples ({} reasoning) from {}",
        opts.seed,
        examples.len(),
        labels.iter().filter(|l| **l).count(),
        data.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" ")
    );
    let model = train::train(&features, &labels, opts, threshold, provenance);
    train::write_model(&model, out).map_err(|e| format!("{}: {e}", out.display()))?;
    let m = at_threshold(&oof, &labels, threshold);
    Ok(format!(
        "wrote {} ({} examples); out-of-fold AUC {:.3}; default threshold {threshold:.3}: recall {:.1}%, FPR {:.1}%",
        out.display(),
        examples.len(),
        auc(&oof, &labels).unwrap_or(0.0),
        m.recall.unwrap_or(0.0) * 100.0,
        m.false_positive_rate.unwrap_or(0.0) * 100.0
    ))
}

fn threshold_for_fpr(scores: &[f32], labels: &[bool], max_fpr: f64) -> f32 {
    let negatives: Vec<f32> = scores
        .iter()
        .zip(labels)
        .filter(|(_, l)| !**l)
        .map(|(s, _)| *s)
        .collect();
    eval::threshold_for_share(&negatives, max_fpr)
}

/// `classify eval`: the learned model (shipped, and cross-validated on `data`), the two
/// baselines, and optionally leave-one-source-out, as Markdown.
pub fn eval_command(
    data: &[PathBuf],
    threshold: Option<f32>,
    loso: bool,
    opts: &TrainOptions,
) -> Result<String, String> {
    let examples = labelled(load_examples(data)?)?;
    let shipped = LearnedClassifier::builtin();
    let threshold = threshold.unwrap_or(shipped.default_threshold());
    let features = train::featurize(shipped.extractor(), &examples);
    let labels: Vec<bool> = examples.iter().map(|e| e.label == Some(true)).collect();
    let mut out = String::new();
    let shipped_scores: Vec<f32> = examples
        .iter()
        .map(|e| shipped.score(&conversation_of(&e.messages)).score)
        .collect();
    out += &eval::report("Shipped model", &examples, &shipped_scores, threshold);
    if loso {
        let cv = eval::cross_validated_scores(&features, &labels, opts);
        out += "\n";
        out += &eval::report(
            "Learned model, 5-fold cross-validation",
            &examples,
            &cv,
            threshold,
        );
        let held_out = eval::leave_one_source_out(&examples, &features, opts);
        out += "\n";
        out += &eval::report("Learned model, leave-one-source-out (each source scored by a model trained without it)", &examples, &held_out, threshold);
    }
    let rules: Vec<f32> = examples
        .iter()
        .map(|e| RulesClassifier.score(&conversation_of(&e.messages)).score)
        .collect();
    out += "\n";
    out += &eval::report("Keyword baseline (the rules alone)", &examples, &rules, 0.5);
    let length = eval::length_scores(&features);
    let length_threshold = eval::threshold_for_share(
        &length,
        at_threshold(&shipped_scores, &labels, threshold).reasoning_share,
    );
    out += "\n";
    out += &eval::report(
        "Length baseline (log length; threshold matches the model's reasoning share)",
        &examples,
        &length,
        length_threshold,
    );
    Ok(out)
}

/// `classify calibrate`: the threshold that sends `share` of a traffic sample to reasoning.
pub fn calibrate_command(jsonl: &Path, share: f64) -> Result<String, String> {
    let examples = load_examples(&[jsonl.to_path_buf()])?;
    let classifier = LearnedClassifier::builtin();
    let scores: Vec<f32> = examples
        .iter()
        .map(|e| classifier.score(&conversation_of(&e.messages)).score)
        .collect();
    let threshold = eval::threshold_for_share(&scores, share);
    let sent = scores.iter().filter(|s| **s >= threshold).count();
    Ok(format!(
        "reasoning_threshold = {threshold:.4}   # sends {sent} of {} sample prompts ({:.1}%) to reasoning",
        scores.len(),
        sent as f64 * 100.0 / scores.len().max(1) as f64
    ))
}

/// `classify embed`: one JSON line per example with what training the second-stage head
/// needs: `{"id", "label", "source", "category", "first_stage", "embedding"}`, where
/// `embedding` is the encoder's vector of the last user turn (what the gateway embeds) and
/// `first_stage` the shipped first stage's score. Examples without user text are skipped.
pub fn embed_command(
    data: &[PathBuf],
    out: &Path,
    model_dir: &Path,
    window_tokens: usize,
) -> Result<String, String> {
    let examples = load_examples(data)?;
    let encoder = super::encoder::Encoder::load_with_window(model_dir, window_tokens)
        .map_err(|e| format!("{e} (scripts/fetch-encoder.sh fetches the model)"))?;
    let first = LearnedClassifier::builtin();
    let file = std::fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut w = std::io::BufWriter::new(file);
    let mut written = 0;
    for e in &examples {
        let conversation = conversation_of(&e.messages);
        let Some(text) = conversation
            .turns
            .iter()
            .rev()
            .find(|t| t.role == super::Role::User)
            .map(|t| super::stage2::bounded(&t.text))
        else {
            continue;
        };
        let embedding = encoder
            .embed(&text)
            .map_err(|err| format!("{}: {err}", e.id))?;
        let line = json!({
            "id": e.id,
            "label": e.label,
            "source": e.source,
            "category": e.category,
            "first_stage": first.score(&conversation).score,
            "embedding": embedding,
        });
        serde_json::to_writer(&mut w, &line).map_err(|err| err.to_string())?;
        w.write_all(b"\n").map_err(|err| err.to_string())?;
        written += 1;
    }
    w.flush().map_err(|err| err.to_string())?;
    Ok(format!(
        "wrote {} ({written} of {} examples embedded, {} dims, window {window_tokens} tokens)",
        out.display(),
        examples.len(),
        encoder.dims()
    ))
}
