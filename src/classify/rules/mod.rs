//! A transparent rules classifier: keyword and symbol features, a weighted sum, a logistic.
//!
//! How a conversation is scored:
//! 1. Only user turns count: system prompts (formatting instructions), assistant answers and
//!    tool results are not the user's question. The newest user turn with text is scored.
//! 2. That turn is ASCII-lowercased into one reusable buffer, at most `MAX_SCAN_BYTES` (head and
//!    tail of long texts), then scanned twice: a byte pass for symbols (`3x + 5 = 20`, `O(n)`,
//!    `≤`, code braces, `?`) and a word pass that looks up each word, and each pair of adjacent
//!    words, in the keyword tables (`WORD_GROUPS`, `PAIR_GROUPS`). A keyword counts once per turn.
//! 3. Keyword weights add up per category (math proof, translation, ...), each category capped,
//!    plus a few combination rules (a stack trace counts when the user asks why; constraints count
//!    when something is being scheduled; quantities count when a number is asked for).
//! 4. A short follow-up ("what if it were 7 people?") with no fast-side signal inherits a decayed
//!    part of the previous user turn's reasoning-side categories (up to `CONTEXT_TURNS` back).
//! 5. score = logistic(`BIAS` + sum of categories). Reasons are the categories that pushed
//!    hardest toward the verdict, strongest first.

mod keywords;
mod lexicon;
mod scan;
mod stems;

use super::{courtesy, Classifier, Conversation, Role, Scored, MAX_SCAN_BYTES};
use keywords::Feat::*;
use keywords::{index, Feat, CATEGORIES, FIRST_FAST, NCAT, S};
use scan::{fill_lowercase, scan_symbols, scan_words, Stats};

/// Logit with no evidence: logistic(-2.5) ~ 0.08. Most traffic is chat and writing, so the fast
/// tier is the default and only positive evidence moves a request to the reasoning tier.
const BIAS: f32 = -2.5;
/// Each operator expression (`3x + 5`, `= 20`, `2^10`) is math evidence...
const EXPR_WEIGHT: f32 = 0.8;
/// ...counted at most this many times (a table of numbers is not a harder problem).
const EXPR_MAX: u32 = 4;
/// With this many `{`, `}` or `;` the text is code, where `=` is assignment, not an equation...
const CODE_MARKS_MIN: u32 = 6;
/// ...so expressions there count a quarter.
const CODE_EXPR_DISCOUNT: f32 = 0.25;
/// Each Unicode math symbol (∑ ∫ √ ≤ ≠ π ²) is math evidence, counted at most
/// `MATH_SYMBOL_MAX` times.
const MATH_SYMBOL_WEIGHT: f32 = 1.0;
const MATH_SYMBOL_MAX: u32 = 3;
/// Big-O notation (`O(n log n)`) means the user cares about complexity: algorithm design.
const BIG_O_WEIGHT: f32 = 3.0;
/// A single letter with "'s" ("how many r's") asks about characters: letter-level constraints.
const LETTER_COUNT_WEIGHT: f32 = 3.0;
/// Error output plus "why" asks for a diagnosis: this base plus the error markers' weights...
const TRACE_WHY_BASE: f32 = 1.5;
/// ...which are capped here (a long log is not a harder bug than a short one).
const TRACE_MAX: f32 = 1.8;
/// Error output without "why" is usually "fix this", often routine: a small push only.
const TRACE_ONLY_WEIGHT: f32 = 0.5;
/// Constraints ("must", "cannot", "at most", ...) beyond this count are not counted.
const CONSTRAINT_MAX: u16 = 6;
/// Each constraint on something being scheduled or assigned: multi-constraint planning.
const PLAN_PER_CONSTRAINT: f32 = 0.9;
/// Each constraint when there are at least 3 but nothing is scheduled (rules, specs): weaker.
const CONSTRAINT_ONLY_WEIGHT: f32 = 0.5;
/// Each constraint in a "who/which" question: the shape of a logic grid puzzle.
const PUZZLE_PER_CONSTRAINT: f32 = 0.6;
/// Quantities (rate, velocity, interest) with at least 2 numbers and a question are a word
/// problem: this bonus on top of the keywords...
const QUANT_BONUS: f32 = 1.0;
/// ...and without numbers or a question they are prose (a report, an email): scaled down.
const QUANT_UNASKED: f32 = 0.25;
/// A request to write code ("write" + "function", "create" + "endpoint") is routine...
const CODE_REQUEST_WEIGHT: f32 = 1.2;
/// ...unless reasoning-side categories already reach this (then it is an algorithm task).
const CODE_REQUEST_OVERRIDE: f32 = 1.5;
/// A strong transform intent (rewrite, translate, summarize) means the content's difficulty
/// hardly matters: reasoning-side categories are scaled by this.
const TRANSFORM_DAMPING: f32 = 0.4;
/// A user turn of at most this many words with no fast-side signal may be a follow-up...
const FOLLOWUP_MAX_WORDS: u32 = 25;
/// ...unless its fast-side signals outweigh this even with a follow-up cue ("ok, now n = 10").
const FOLLOWUP_NEG_TOLERANCE: f32 = 2.0;
/// A follow-up inherits this fraction of the previous user turn's reasoning-side categories...
const FOLLOWUP_DECAY: f32 = 0.75;
/// ...plus this for being a follow-up...
const FOLLOWUP_BASE: f32 = 0.3;
/// ...plus this when it says so ("what if", "now", "instead").
const FOLLOWUP_CUE: f32 = 0.5;
/// How many earlier user turns a chain of follow-ups can reach back.
const CONTEXT_TURNS: usize = 2;
/// Scan budget for an earlier turn (only read when the newest turn is a short follow-up).
const CONTEXT_SCAN_BYTES: usize = MAX_SCAN_BYTES / 4;
/// Contributions smaller than this are not worth naming as a reason.
const MIN_REASON: f32 = 0.05;

/// One user turn's verdict before the bias: per-category logit contributions.
#[derive(Debug, Clone, Copy)]
struct TurnEval {
    contrib: [f32; NCAT],
    words: u32,
    follow_cue: bool,
    constraints: u16,
    hits: lexicon::Hits,
}

impl TurnEval {
    fn total(&self) -> f32 {
        self.contrib.iter().sum()
    }
    fn fast_side(&self) -> f32 {
        self.contrib[FIRST_FAST..].iter().sum()
    }
    /// Short, and either no fast-side signal or an explicit follow-up cue.
    fn may_follow_up(&self) -> bool {
        let fast = self.fast_side();
        self.words <= FOLLOWUP_MAX_WORDS
            && (fast == 0.0 || (self.follow_cue && fast > -FOLLOWUP_NEG_TOLERANCE))
    }
    /// Inherit a decayed part of the previous user turn's reasoning-side categories.
    fn carry_from(&mut self, previous: &TurnEval) {
        if previous.total() <= 0.0 {
            return;
        }
        for (i, (mine, theirs)) in self.contrib.iter_mut().zip(&previous.contrib).enumerate() {
            if i < FIRST_FAST && *theirs > 0.0 {
                *mine = (*mine + FOLLOWUP_DECAY * theirs).min(CATEGORIES[i].1);
            }
        }
        let cue = if self.follow_cue { FOLLOWUP_CUE } else { 0.0 };
        self.contrib[FollowUp as usize] = FOLLOWUP_BASE + cue;
    }
}

/// The rules classifier. Stateless; the keyword table is shared by all instances.
#[derive(Debug, Clone, Copy, Default)]
pub struct RulesClassifier;

impl RulesClassifier {
    pub const fn new() -> Self {
        RulesClassifier
    }
}

/// Number of rule categories exposed as features to learned models.
pub const RULE_CATEGORIES: usize = NCAT;

/// Signed names (`+label`, `-label`) of rule category `i`, in `RuleSignals::contrib` order.
pub fn category_signed_name(i: usize) -> (&'static str, &'static str) {
    SIGNED_NAMES[i]
}

const SIGNED_NAMES: [(&str, &str); NCAT] = [
    ("+math proof", "-math proof"),
    ("+math", "-math"),
    ("+algorithm design", "-algorithm design"),
    ("+debugging", "-debugging"),
    ("+logic puzzle", "-logic puzzle"),
    ("+multi-constraint planning", "-multi-constraint planning"),
    ("+quantitative problem", "-quantitative problem"),
    ("+letter-level constraints", "-letter-level constraints"),
    ("+step-by-step reasoning", "-step-by-step reasoning"),
    ("+follow-up", "-follow-up"),
    ("+greeting", "-greeting"),
    ("+rewriting", "-rewriting"),
    ("+translation", "-translation"),
    ("+summarization", "-summarization"),
    ("+creative writing", "-creative writing"),
    ("+lookup", "-lookup"),
    ("+explanation", "-explanation"),
    ("+routine code", "-routine code"),
];

/// What the rules saw: per-category logit contributions (follow-up context included) and
/// the rules' own score. The learned model uses these as features, so the rules are one
/// input to one decision, not a second decision path.
#[derive(Debug, Clone, Copy)]
pub struct RuleSignals {
    pub contrib: [f32; NCAT],
    pub score: f32,
    /// Constraint words ("must", "at most", "höchstens", ...) in the newest turn.
    pub constraints: u16,
    hits: lexicon::Hits,
}

impl RuleSignals {
    /// English glosses of the multilingual keywords found in the newest turn (`lexicon`).
    pub fn glosses(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.hits
            .groups()
            .iter()
            .map(|&g| lexicon::GROUPS[usize::from(g)].2)
    }
}

impl Classifier for RulesClassifier {
    fn score(&self, conversation: &Conversation<'_>) -> Scored {
        let has_user_text = conversation
            .turns
            .iter()
            .any(|t| t.role == Role::User && !t.text.trim().is_empty());
        let signals = self.signals(conversation);
        let reasons = if has_user_text {
            reasons(&signals.contrib, signals.score >= 0.5)
        } else {
            vec!["no user text"]
        };
        Scored {
            score: signals.score,
            reasons,
        }
    }
}

impl RulesClassifier {
    pub fn signals(&self, conversation: &Conversation<'_>) -> RuleSignals {
        self.signals_with_newest(conversation, None)
    }

    /// `signals`, given the newest user turn already without its courtesy (`courtesy::trim`)
    /// when the caller has it: the learned classifier trims it once for all its blocks.
    pub fn signals_with_newest(
        &self,
        conversation: &Conversation<'_>,
        newest_trimmed: Option<&str>,
    ) -> RuleSignals {
        let mut users = conversation
            .turns
            .iter()
            .rev()
            .filter(|t| t.role == Role::User && !t.text.trim().is_empty());
        let Some(newest) = users.next() else {
            return RuleSignals {
                contrib: [0.0; NCAT],
                score: logistic(BIAS),
                constraints: 0,
                hits: lexicon::Hits::default(),
            };
        };
        let mut buf = String::with_capacity(newest.text.len().min(MAX_SCAN_BYTES) + 1);
        // Read without the greetings and thanks around the task (`courtesy`); a turn that
        // is only courtesy is read whole, so it still counts as a greeting.
        let newest_text = newest_trimmed.unwrap_or_else(|| courtesy::trim(&newest.text));
        let mut eval = eval_turn(newest_text, MAX_SCAN_BYTES, &mut buf);

        // Earlier user turns matter only through a chain of short follow-ups.
        let mut context: [Option<TurnEval>; CONTEXT_TURNS] = [None; CONTEXT_TURNS];
        let mut follows = eval.may_follow_up();
        for slot in context.iter_mut() {
            let Some(turn) = users.next().filter(|_| follows) else {
                break;
            };
            let e = eval_turn(courtesy::trim(&turn.text), CONTEXT_SCAN_BYTES, &mut buf);
            follows = e.may_follow_up();
            *slot = Some(e);
        }
        let mut older: Option<TurnEval> = None;
        for e in context.iter_mut().rev().flatten() {
            if let Some(prev) = &older {
                e.carry_from(prev);
            }
            older = Some(*e);
        }
        if let Some(prev) = &older {
            eval.carry_from(prev);
        }

        RuleSignals {
            contrib: eval.contrib,
            score: logistic(BIAS + eval.total()).clamp(0.0, 1.0),
            constraints: eval.constraints,
            hits: eval.hits,
        }
    }
}

fn logistic(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// The categories that pushed toward the verdict, strongest first, at most 3. When nothing
/// pushed that way (a weak "math" at 0.4), the ones that pushed the other way: the caller's
/// threshold need not be 0.5.
fn reasons(contrib: &[f32; NCAT], reasoning: bool) -> Vec<&'static str> {
    let strongest = |toward_reasoning: bool| {
        let strength = |i: usize| {
            if toward_reasoning {
                contrib[i]
            } else {
                -contrib[i]
            }
        };
        let mut out = Vec::with_capacity(3);
        let mut taken = [false; NCAT];
        while out.len() < 3 {
            let candidates = (0..NCAT).filter(|&i| !taken[i]);
            let Some(best) = candidates.max_by(|&a, &b| strength(a).total_cmp(&strength(b))) else {
                break;
            };
            if strength(best) < MIN_REASON {
                break;
            }
            taken[best] = true;
            out.push(CATEGORIES[best].0);
        }
        out
    };
    let mut out = strongest(reasoning);
    if out.is_empty() {
        out = strongest(!reasoning);
    }
    if out.is_empty() {
        out.push("chat");
    }
    out
}

fn eval_turn(text: &str, budget: usize, buf: &mut String) -> TurnEval {
    fill_lowercase(text, budget, buf);
    let bytes = buf.as_bytes();
    let mut st = Stats::default();
    scan_symbols(bytes, &mut st);
    scan_words(bytes, index(), &mut st);
    let hits = lexicon::lexicon().scan(bytes);
    for &g in hits.groups() {
        let (feat, weight, _, _) = lexicon::GROUPS[usize::from(g)];
        let f = feat as usize;
        st.count[f] = st.count[f].saturating_add(1);
        st.sum[f] += weight;
    }
    let mut eval = combine(&st);
    eval.hits = hits;
    eval
}

/// Keyword sums plus combination rules, capped per category, signed by side.
fn combine(st: &Stats) -> TurnEval {
    let mut c = [0.0f32; NCAT];
    c.copy_from_slice(&st.sum[..NCAT]);
    let count = |f: Feat| st.count[f as usize];

    let expr_weight = if st.code_marks >= CODE_MARKS_MIN {
        EXPR_WEIGHT * CODE_EXPR_DISCOUNT
    } else {
        EXPR_WEIGHT
    };
    c[Math as usize] += expr_weight * st.exprs.min(EXPR_MAX) as f32
        + MATH_SYMBOL_WEIGHT * st.math_symbols.min(MATH_SYMBOL_MAX) as f32;
    if st.big_o > 0 {
        c[Algo as usize] += BIG_O_WEIGHT;
    }
    if st.letter_counts > 0 {
        c[Letters as usize] += LETTER_COUNT_WEIGHT;
    }
    if count(Trace) > 0 {
        c[Debug as usize] += if count(Why) > 0 {
            TRACE_WHY_BASE + st.sum[Trace as usize].min(TRACE_MAX)
        } else {
            TRACE_ONLY_WEIGHT
        };
    }
    let constraints = f32::from(count(Constraint).min(CONSTRAINT_MAX));
    if count(Sched) > 0 && constraints >= 2.0 {
        c[Plan as usize] += PLAN_PER_CONSTRAINT * constraints;
    } else if constraints >= 3.0 {
        c[Plan as usize] += CONSTRAINT_ONLY_WEIGHT * constraints;
    }
    if count(Who) > 0 && constraints >= 2.0 {
        c[Puzzle as usize] += PUZZLE_PER_CONSTRAINT * constraints;
    }
    let asked = count(Ask) > 0 || st.questions > 0;
    if st.numbers >= 2 && asked && c[Quant as usize] > 0.0 {
        c[Quant as usize] += QUANT_BONUS;
    } else {
        c[Quant as usize] *= QUANT_UNASKED;
    }
    let reasoning_side =
        c[Proof as usize] + c[Math as usize] + c[Algo as usize] + c[Debug as usize];
    if count(CodeVerb) > 0 && count(CodeNoun) > 0 && reasoning_side < CODE_REQUEST_OVERRIDE {
        c[Routine as usize] += CODE_REQUEST_WEIGHT;
    }
    let transform = c[Rewrite as usize]
        .max(c[Translate as usize])
        .max(c[Summarize as usize]);
    let damping = if transform >= S {
        TRANSFORM_DAMPING
    } else {
        1.0
    };
    for (i, (v, &(_, cap))) in c.iter_mut().zip(&CATEGORIES).enumerate() {
        *v = if i < FIRST_FAST {
            v.min(cap) * damping
        } else {
            -v.min(cap)
        };
    }
    TurnEval {
        contrib: c,
        words: st.words,
        follow_cue: count(FollowCue) > 0,
        constraints: count(Constraint),
        hits: lexicon::Hits::default(),
    }
}

#[cfg(test)]
mod tests;
