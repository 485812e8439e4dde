//! `deliberate classify ...`: score prompts, evaluate, train and calibrate from the command
//! line. The scoring output format is an interface other tools depend on:
//! one JSON line per input line, in order: `{"id", "score", "tier", "reasons"}`.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::embed::StaticEmbedder;
use super::eval::{self, at_threshold, auc, Group};
use super::features::{Block, FeatureExtractor};
use super::learned::{LearnedClassifier, ModelFile};
use super::rules::RulesClassifier;
use super::stage2::cli::Refiner;
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

/// Reads JSON lines from `input`, writes one verdict line per input line to `out` (with
/// `"stage": "second"` and the `first_stage` score where the second stage decided).
pub fn score_lines(
    classifier: &dyn Classifier,
    second: Option<&Refiner>,
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
                        let conversation = conversation_of(&messages);
                        let scored = classifier.score(&conversation);
                        let refined = second.and_then(|r| r.refine(&conversation, scored.score));
                        let score = refined.unwrap_or(scored.score);
                        let tier = if score >= threshold {
                            Tier::Reasoning
                        } else {
                            Tier::Fast
                        };
                        let mut verdict = json!({"id": v["id"], "score": score, "tier": tier.as_str(), "reasons": scored.reasons});
                        if refined.is_some() {
                            verdict["first_stage"] = json!(scored.score);
                            verdict["stage"] = json!("second");
                        }
                        verdict
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

fn labels_of(examples: &[Example]) -> Vec<bool> {
    examples.iter().map(|e| e.label == Some(true)).collect()
}

/// Trains a model on `examples` with `blocks`; the default threshold is the lowest that keeps
/// the out-of-fold false-positive rate at or under `max_fpr`. Returns the model and the
/// out-of-fold scores it was chosen on.
fn fit_model(
    examples: &[Example],
    blocks: &[Block],
    opts: &TrainOptions,
    max_fpr: f64,
    data: &[PathBuf],
) -> (ModelFile, Vec<f32>) {
    let extractor = FeatureExtractor::with_blocks(blocks);
    let features = train::featurize(&extractor, examples);
    let labels = labels_of(examples);
    let weights = train::example_weights(examples, opts);
    let oof = eval::cross_validated_scores(&features, &labels, &weights, opts);
    let threshold = threshold_for_fpr(&oof, &labels, max_fpr);
    let names = extractor.layout().names();
    let provenance = format!(
        "deliberate classify train --seed {} --max-fpr {max_fpr} --non-english-weight {} --features {} on {} examples ({} reasoning) from {}",
        opts.seed,
        opts.non_english_weight,
        names.join(","),
        examples.len(),
        labels.iter().filter(|l| **l).count(),
        data.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" ")
    );
    let names = names.into_iter().map(String::from).collect();
    let model = train::train(
        names, &features, &labels, &weights, opts, threshold, provenance,
    );
    (model, oof)
}

/// `classify train`: trains on `data`, writes the model to `out`. With `calibrate`
/// (a traffic sample and a share), the default threshold is the one that sends that share
/// of the sample to reasoning instead of the `max_fpr` one.
pub fn train_command(
    data: &[PathBuf],
    out: &Path,
    blocks: &[Block],
    opts: &TrainOptions,
    max_fpr: f64,
    calibrate: Option<(PathBuf, f64)>,
    oof_out: Option<&Path>,
) -> Result<String, String> {
    let examples = labelled(load_examples(data)?)?;
    let (mut model, oof) = fit_model(&examples, blocks, opts, max_fpr, data);
    if let Some(path) = oof_out {
        write_oof(path, &examples, &oof)?;
    }
    if let Some((sample, share)) = calibrate {
        let classifier =
            LearnedClassifier::new(&model, StaticEmbedder::builtin()).map_err(|e| e.to_string())?;
        let scores: Vec<f32> = load_examples(std::slice::from_ref(&sample))?
            .iter()
            .map(|e| classifier.score(&conversation_of(&e.messages)).score)
            .collect();
        model.default_threshold = eval::threshold_for_share(&scores, share);
        model.provenance += &format!(
            "; default threshold sends {share} of {} to reasoning",
            sample.display()
        );
    }
    train::write_model(&model, out).map_err(|e| format!("{}: {e}", out.display()))?;
    let labels = labels_of(&examples);
    let threshold = model.default_threshold;
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

/// One line per example, `{"id", "source", "score"}`: the score a model trained without the
/// example's fold gives it. What the second-stage head trains on (`second_stage.py`): the
/// shipped model's own scores on its training data are in-sample, more confident than the
/// scores it gives the traffic the head will see.
fn write_oof(path: &Path, examples: &[Example], oof: &[f32]) -> Result<(), String> {
    let mut text = String::new();
    for (e, score) in examples.iter().zip(oof) {
        let line = json!({"id": e.id, "source": e.source, "score": score});
        text.push_str(&line.to_string());
        text.push('\n');
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
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

/// What `classify eval` runs.
pub struct EvalOptions {
    pub data: Vec<PathBuf>,
    /// Threshold (default: the model's).
    pub threshold: Option<f32>,
    /// Or: the threshold that sends this share of this traffic sample to reasoning.
    pub calibrate: Option<(PathBuf, f64)>,
    pub loso: bool,
    pub lolo: bool,
    /// A directory of held-out JSONL files (`data/heldout`), never trained on.
    pub heldout: Option<PathBuf>,
    /// Train a model with these blocks on `data` and evaluate it instead of the shipped one.
    pub features: Option<Vec<Block>>,
    pub max_fpr: f64,
    /// Print only the one-line-per-figure summary.
    pub summary: bool,
    pub train: TrainOptions,
}

/// `classify eval`: the model under test (shipped, or trained here with `--features`), its
/// cross-validated, leave-one-source-out and leave-one-language-out scores, the held-out
/// files, and two baselines, as Markdown.
pub fn eval_command(o: &EvalOptions) -> Result<String, String> {
    let examples = labelled(load_examples(&o.data)?)?;
    let labels = labels_of(&examples);
    let model = match &o.features {
        Some(blocks) => {
            let (model, _) = fit_model(&examples, blocks, &o.train, o.max_fpr, &o.data);
            LearnedClassifier::new(&model, StaticEmbedder::builtin()).map_err(|e| e.to_string())?
        }
        None => LearnedClassifier::builtin(),
    };
    let score_all = |examples: &[Example]| -> Vec<f32> {
        examples
            .iter()
            .map(|e| model.score(&conversation_of(&e.messages)).score)
            .collect()
    };
    let threshold = match &o.calibrate {
        Some((sample, share)) => eval::threshold_for_share(
            &score_all(&load_examples(std::slice::from_ref(sample))?),
            *share,
        ),
        None => o.threshold.unwrap_or(model.default_threshold()),
    };
    let features = train::featurize(model.extractor(), &examples);
    let in_sample = score_all(&examples);
    let mut summary = format!(
        "features {}; threshold {threshold:.3}\n\n| figure | value |\n|---|---|\n",
        model.extractor().layout().names().join(",")
    );
    let mut out = String::new();
    let mut line = |name: &str, s: eval::Summary| {
        summary += &format!("| {name} | {} |\n", s.line());
    };
    out += &eval::report(
        "Model under test, in sample",
        &examples,
        &in_sample,
        threshold,
    );
    if o.loso || o.lolo {
        let weights = train::example_weights(&examples, &o.train);
        let cv = eval::cross_validated_scores(&features, &labels, &weights, &o.train);
        line("5-fold CV", eval::summarize(&labels, &cv, threshold));
        let (ls, ss): (Vec<bool>, Vec<f32>) = examples
            .iter()
            .zip(&cv)
            .filter(|(e, _)| e.lang != "en")
            .map(|(e, s)| (e.label == Some(true), *s))
            .unzip();
        if !ls.is_empty() {
            line(
                "5-fold CV, non-English rows",
                eval::summarize(&ls, &ss, threshold),
            );
        }
        out += "\n";
        out += &eval::report("5-fold cross-validation", &examples, &cv, threshold);
    }
    for (enabled, group) in [(o.loso, Group::Source), (o.lolo, Group::Lang)] {
        if !enabled {
            continue;
        }
        let held = eval::leave_one_group_out(group, &examples, &features, &o.train);
        line(
            &format!("leave-one-{}-out", group.name()),
            eval::summarize(&labels, &held, threshold),
        );
        if group == Group::Lang {
            let (idx, ls): (Vec<usize>, Vec<bool>) = examples
                .iter()
                .enumerate()
                .filter(|(_, e)| e.lang != "en")
                .map(|(i, e)| (i, e.label == Some(true)))
                .unzip();
            let s: Vec<f32> = idx.iter().map(|&i| held[i]).collect();
            line(
                "leave-one-language-out, non-English rows",
                eval::summarize(&ls, &s, threshold),
            );
        }
        out += "\n";
        out += &eval::report_by(
            &format!(
                "Leave-one-{}-out (each {} scored by a model trained without it)",
                group.name(),
                group.name()
            ),
            group,
            &examples,
            &held,
            threshold,
        );
    }
    if let Some(dir) = &o.heldout {
        out += "\n### Held-out files (never trained on)\n\n";
        for (name, held) in load_heldout(dir)? {
            let scores = score_all(&held);
            let labels = labels_of(&held);
            line(
                &format!("held-out {name}"),
                eval::summarize(&labels, &scores, threshold),
            );
            let non_english: Vec<usize> =
                (0..held.len()).filter(|&i| held[i].lang != "en").collect();
            if !non_english.is_empty() && non_english.len() < held.len() {
                let l: Vec<bool> = non_english.iter().map(|&i| labels[i]).collect();
                let s: Vec<f32> = non_english.iter().map(|&i| scores[i]).collect();
                line(
                    &format!("held-out {name}, non-English"),
                    eval::summarize(&l, &s, threshold),
                );
            }
            out += &eval::heldout_report(&name, &held, &scores, threshold);
        }
    }
    if o.summary {
        return Ok(summary);
    }
    let rules: Vec<f32> = examples
        .iter()
        .map(|e| RulesClassifier.score(&conversation_of(&e.messages)).score)
        .collect();
    out += "\n";
    out += &eval::report("Keyword baseline (the rules alone)", &examples, &rules, 0.5);
    let length = eval::length_scores(&examples);
    let length_threshold = eval::threshold_for_share(
        &length,
        at_threshold(&in_sample, &labels, threshold).reasoning_share,
    );
    out += "\n";
    out += &eval::report(
        "Length baseline (log length; threshold matches the model's reasoning share)",
        &examples,
        &length,
        length_threshold,
    );
    Ok(format!("{summary}\n{out}"))
}

/// Every `*.jsonl` of a held-out directory, by file stem.
fn load_heldout(dir: &Path) -> Result<Vec<(String, Vec<Example>)>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let name = f
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("heldout")
                .to_string();
            Ok((name, labelled(load_examples(&[f])?)?))
        })
        .collect()
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
        let Some(text) = conversation.last_user_text().map(super::stage2::bounded) else {
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
