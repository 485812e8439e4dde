//! Evaluation of classifiers (`deliberate classify eval`): AUC, accuracy, recall,
//! false-positive rate and reasoning share, overall and per group (source, language, shape,
//! puzzle family), for the learned model and two baselines (prompt length alone; the keyword
//! rules alone), plus leave-one-group-out runs that train without a source (or a language)
//! and test on it.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::learned::sigmoid;
use super::train::{fit_linear, fit_platt, out_of_fold_logits, Example, TrainOptions};

/// Area under the ROC curve (ties count half); `None` without both classes.
pub fn auc(scores: &[f32], labels: &[bool]) -> Option<f64> {
    let mut pairs: Vec<(f32, bool)> = scores.iter().copied().zip(labels.iter().copied()).collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let positives = labels.iter().filter(|l| **l).count() as f64;
    let negatives = labels.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return None;
    }
    // Rank-sum with average ranks for ties.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < pairs.len() {
        let mut j = i;
        while j < pairs.len() && pairs[j].0 == pairs[i].0 {
            j += 1;
        }
        let average_rank = (i + j + 1) as f64 / 2.0;
        rank_sum += pairs[i..j].iter().filter(|p| p.1).count() as f64 * average_rank;
        i = j;
    }
    Some((rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives))
}

#[derive(Debug, Clone, Copy, Default)]
pub struct AtThreshold {
    pub n: usize,
    pub accuracy: f64,
    /// Share of reasoning examples sent to reasoning (None without any).
    pub recall: Option<f64>,
    /// Share of fast examples sent to reasoning (None without any).
    pub false_positive_rate: Option<f64>,
    /// Share of all examples sent to reasoning.
    pub reasoning_share: f64,
}

pub fn at_threshold(scores: &[f32], labels: &[bool], threshold: f32) -> AtThreshold {
    let n = scores.len();
    let (mut tp, mut fp, mut tn, mut fn_) = (0usize, 0usize, 0usize, 0usize);
    for (&s, &l) in scores.iter().zip(labels) {
        match (s >= threshold, l) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, false) => tn += 1,
            (false, true) => fn_ += 1,
        }
    }
    let ratio = |a: usize, b: usize| (b > 0).then(|| a as f64 / b as f64);
    AtThreshold {
        n,
        accuracy: ratio(tp + tn, n).unwrap_or(0.0),
        recall: ratio(tp, tp + fn_),
        false_positive_rate: ratio(fp, fp + tn),
        reasoning_share: ratio(tp + fp, n).unwrap_or(0.0),
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{:.1}%", v * 100.0))
}

fn num(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.3}"))
}

/// A grouping of examples for reports and leave-one-group-out runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Source,
    Lang,
    Shape,
    Family,
}

impl Group {
    pub fn name(self) -> &'static str {
        match self {
            Group::Source => "source",
            Group::Lang => "language",
            Group::Shape => "shape",
            Group::Family => "family",
        }
    }

    pub fn of(self, e: &Example) -> &str {
        match self {
            Group::Source => &e.source,
            Group::Lang => &e.lang,
            Group::Shape => &e.shape,
            Group::Family => &e.family,
        }
    }
}

/// Markdown table of metrics per source and overall for one set of scores.
pub fn report(title: &str, examples: &[Example], scores: &[f32], threshold: f32) -> String {
    report_by(title, Group::Source, examples, scores, threshold)
}

/// Markdown table of metrics per group and overall for one set of scores. Examples without
/// a value for the group (no shape, no family) form no row of their own.
pub fn report_by(
    title: &str,
    group: Group,
    examples: &[Example],
    scores: &[f32],
    threshold: f32,
) -> String {
    let labels: Vec<bool> = examples.iter().map(|e| e.label.unwrap_or(false)).collect();
    let mut by_source: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, e) in examples.iter().enumerate() {
        let key = group.of(e);
        if !key.is_empty() {
            by_source.entry(key).or_default().push(i);
        }
    }
    let mut out = String::new();
    let _ = writeln!(out, "### {title} (threshold {threshold:.3})\n");
    let _ = writeln!(
        out,
        "| {} | n | reasoning | AUC | AUC vs other label | accuracy | recall | FPR | reasoning share |",
        group.name()
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    let mut row = |name: &str, idx: &[usize]| {
        let s: Vec<f32> = idx.iter().map(|&i| scores[i]).collect();
        let l: Vec<bool> = idx.iter().map(|&i| labels[i]).collect();
        let m = at_threshold(&s, &l, threshold);
        let positives = l.iter().filter(|x| **x).count();
        let _ = writeln!(
            out,
            "| {name} | {} | {positives} | {} | {} | {:.1}% | {} | {} | {:.1}% |",
            m.n,
            num(auc(&s, &l)),
            num(auc_against_other_label(idx, scores, &labels)),
            m.accuracy * 100.0,
            pct(m.recall),
            pct(m.false_positive_rate),
            m.reasoning_share * 100.0
        );
    };
    for (source, idx) in &by_source {
        row(source, idx);
    }
    let all: Vec<usize> = (0..examples.len()).collect();
    row("**all**", &all);
    out
}

/// A single-label source has no AUC of its own; this ranks its examples against every
/// example of the other label in the table (for leave-one-source-out: the held-out
/// source's scores against the rest's), which is what "does this source separate" means.
fn auc_against_other_label(idx: &[usize], scores: &[f32], labels: &[bool]) -> Option<f64> {
    let mine: std::collections::HashSet<usize> = idx.iter().copied().collect();
    let source_labels: std::collections::HashSet<bool> = idx.iter().map(|&i| labels[i]).collect();
    if source_labels.len() != 1 || idx.len() == labels.len() {
        return None;
    }
    let label = labels[idx[0]];
    let pool: Vec<usize> = (0..labels.len())
        .filter(|i| mine.contains(i) || labels[*i] != label)
        .collect();
    let s: Vec<f32> = pool.iter().map(|&i| scores[i]).collect();
    let l: Vec<bool> = pool.iter().map(|&i| labels[i]).collect();
    auc(&s, &l)
}

/// Length-only baseline: the log of the last user turn's length.
pub fn length_scores(examples: &[Example]) -> Vec<f32> {
    examples
        .iter()
        .map(|e| {
            let last = e
                .messages
                .iter()
                .rev()
                .find(|m| m["role"] == "user")
                .map_or(0, |m| m["content"].as_str().map_or(0, str::len));
            (1.0 + last as f32).ln()
        })
        .collect()
}

/// Calibrated out-of-fold scores of the learned model on its own data.
pub fn cross_validated_scores(
    features: &[Vec<f32>],
    labels: &[bool],
    weights: &[f32],
    opts: &TrainOptions,
) -> Vec<f32> {
    let oof = out_of_fold_logits(features, labels, weights, opts);
    let (a, b) = fit_platt(&oof, labels);
    oof.iter().map(|z| sigmoid(a * z + b)).collect()
}

/// For each group (source, language): train on all others (calibrated on their out-of-fold
/// scores), score it.
pub fn leave_one_group_out(
    group: Group,
    examples: &[Example],
    features: &[Vec<f32>],
    opts: &TrainOptions,
) -> Vec<f32> {
    let labels: Vec<bool> = examples.iter().map(|e| e.label.unwrap_or(false)).collect();
    let weights = super::train::example_weights(examples, opts);
    let mut scores = vec![0f32; examples.len()];
    let sources: std::collections::BTreeSet<&str> = examples.iter().map(|e| group.of(e)).collect();
    for source in sources {
        let (train, test): (Vec<usize>, Vec<usize>) =
            (0..examples.len()).partition(|&i| group.of(&examples[i]) != source);
        let tx: Vec<Vec<f32>> = train.iter().map(|&i| features[i].clone()).collect();
        let ty: Vec<bool> = train.iter().map(|&i| labels[i]).collect();
        let tw: Vec<f32> = train.iter().map(|&i| weights[i]).collect();
        let oof = out_of_fold_logits(&tx, &ty, &tw, opts);
        let (a, b) = fit_platt(&oof, &ty);
        let refs: Vec<&[f32]> = tx.iter().map(Vec::as_slice).collect();
        let model = fit_linear(&refs, &ty, &tw, opts);
        for &i in &test {
            scores[i] = sigmoid(a * model.logit(&features[i]) + b);
        }
    }
    scores
}

/// The threshold that sends `share` of `scores` to reasoning (RouteLLM-style calibration).
pub fn threshold_for_share(scores: &[f32], share: f64) -> f32 {
    if scores.is_empty() {
        return 0.5;
    }
    let mut sorted = scores.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let k = ((share.clamp(0.0, 1.0) * sorted.len() as f64).round() as usize).min(sorted.len());
    match k {
        0 => (sorted[0] + f32::EPSILON).min(1.0),
        k => sorted[k - 1],
    }
}

/// One line of figures for a set of scores.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub n: usize,
    pub positives: usize,
    pub auc: Option<f64>,
    pub at: AtThreshold,
}

pub fn summarize(labels: &[bool], scores: &[f32], threshold: f32) -> Summary {
    Summary {
        n: labels.len(),
        positives: labels.iter().filter(|l| **l).count(),
        auc: auc(scores, labels),
        at: at_threshold(scores, labels, threshold),
    }
}

impl Summary {
    /// `AUC 0.912, recall 81.0%, FPR 4.2%, share 6.1%`.
    pub fn line(&self) -> String {
        format!(
            "AUC {}, recall {}, FPR {}, share {:.1}%",
            num(self.auc),
            pct(self.at.recall),
            pct(self.at.false_positive_rate),
            self.at.reasoning_share * 100.0
        )
    }
}

/// The held-out report for one file: its figures, then per language, shape and family
/// where the file has more than one.
pub fn heldout_report(name: &str, examples: &[Example], scores: &[f32], threshold: f32) -> String {
    let labels: Vec<bool> = examples.iter().map(|e| e.label.unwrap_or(false)).collect();
    let s = summarize(&labels, scores, threshold);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "#### {name}: {} prompts, {} reasoning: {}\n",
        s.n,
        s.positives,
        s.line()
    );
    for group in [Group::Lang, Group::Shape, Group::Family] {
        let distinct: std::collections::BTreeSet<&str> = examples
            .iter()
            .map(|e| group.of(e))
            .filter(|g| !g.is_empty())
            .collect();
        if distinct.len() > 1 {
            out += &report_by(
                &format!("{name} by {}", group.name()),
                group,
                examples,
                scores,
                threshold,
            );
            out += "\n";
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_perfect_random_and_inverted_rankings() {
        let labels = [false, false, true, true];
        assert_eq!(auc(&[0.1, 0.2, 0.8, 0.9], &labels), Some(1.0));
        assert_eq!(auc(&[0.9, 0.8, 0.2, 0.1], &labels), Some(0.0));
        assert_eq!(auc(&[0.5, 0.5, 0.5, 0.5], &labels), Some(0.5));
        assert_eq!(auc(&[0.5], &[true]), None);
    }

    #[test]
    fn threshold_metrics() {
        let m = at_threshold(&[0.9, 0.6, 0.4, 0.1], &[true, false, true, false], 0.5);
        assert_eq!(m.recall, Some(0.5));
        assert_eq!(m.false_positive_rate, Some(0.5));
        assert_eq!(m.reasoning_share, 0.5);
    }

    #[test]
    fn share_threshold_sends_that_share() {
        let scores: Vec<f32> = (0..100).map(|i| i as f32 / 100.0).collect();
        let t = threshold_for_share(&scores, 0.1);
        assert_eq!(scores.iter().filter(|s| **s >= t).count(), 10);
        let t = threshold_for_share(&scores, 0.0);
        assert_eq!(scores.iter().filter(|s| **s >= t).count(), 0);
    }
}
