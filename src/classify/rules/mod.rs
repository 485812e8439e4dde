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
mod stems;

use super::{Classifier, Conversation, Role, Scored, MAX_SCAN_BYTES};
use keywords::Feat::*;
use keywords::{index, Feat, Index, Keyword, CATEGORIES, FIRST_FAST, MAX_KEYWORDS, NCAT, NFEAT, S};

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

/// What the scans count in one turn.
#[derive(Debug, Default)]
struct Stats {
    /// Sum of the weights of the distinct keywords seen, per feature.
    sum: [f32; NFEAT],
    /// Keyword occurrences, per feature.
    count: [u16; NFEAT],
    words: u32,
    numbers: u32,
    exprs: u32,
    math_symbols: u32,
    code_marks: u32,
    questions: u32,
    big_o: u32,
    /// Single letters with "'s" ("r's"): counting characters.
    letter_counts: u32,
}

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
        let mut eval = eval_turn(&newest.text, MAX_SCAN_BYTES, &mut buf);

        // Earlier user turns matter only through a chain of short follow-ups.
        let mut context: [Option<TurnEval>; CONTEXT_TURNS] = [None; CONTEXT_TURNS];
        let mut follows = eval.may_follow_up();
        for slot in context.iter_mut() {
            let Some(turn) = users.next().filter(|_| follows) else {
                break;
            };
            let e = eval_turn(&turn.text, CONTEXT_SCAN_BYTES, &mut buf);
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

/// Lowercase (ASCII) `text` into `buf`; texts over `budget` keep their head and tail.
fn fill_lowercase(text: &str, budget: usize, buf: &mut String) {
    buf.clear();
    if text.len() <= budget {
        buf.push_str(text);
    } else {
        let half = budget / 2;
        let mut head = half;
        while !text.is_char_boundary(head) {
            head -= 1;
        }
        let mut tail = text.len() - half;
        while !text.is_char_boundary(tail) {
            tail += 1;
        }
        buf.push_str(&text[..head]);
        buf.push('\n');
        buf.push_str(&text[tail..]);
    }
    buf.make_ascii_lowercase();
}

/// Byte pass: operator expressions, big-O, Unicode math symbols, code marks, question marks.
fn scan_symbols(b: &[u8], st: &mut Stats) {
    const NONE: u8 = 0;
    const VAR: u8 = 1;
    const NUMBER: u8 = 2;
    let mut tok_len = 0usize; // length of the current alphanumeric run
    let mut operand = NONE; // what the last significant thing was
    let mut pending = 0u8; // operator waiting for its right operand
    let mut prev = b' ';
    for (i, &c) in b.iter().enumerate() {
        let next = b.get(i + 1).copied().unwrap_or(b' ');
        if c.is_ascii_alphanumeric() {
            if tok_len == 0 {
                let digit = c.is_ascii_digit();
                if pending != 0 && (pending != b'/' || digit) {
                    st.exprs += 1;
                }
                pending = 0;
                if c == b'o'
                    && next == b'('
                    && b"nmkvel12".contains(&b.get(i + 2).copied().unwrap_or(b' '))
                {
                    st.big_o += 1;
                }
                operand = if digit { NUMBER } else { VAR };
            }
            tok_len += 1;
            if operand == VAR && tok_len > 2 {
                operand = NONE; // a word, not a variable
            }
            prev = c;
            continue;
        }
        let in_number = tok_len > 0 && operand == NUMBER && next.is_ascii_digit();
        if in_number && (c == b'.' || c == b',') {
            prev = c;
            continue; // "3.14", "5,000"
        }
        tok_len = 0;
        match c {
            b' ' | b'\t' | b'$' | b'%' => {}
            b'+' | b'*' | b'^' | b'=' | b'<' | b'>' | b'/' | b'-' => {
                const OPS: &[u8] = b"+*^=<>/-!|&:";
                let compound = OPS.contains(&prev) || (OPS.contains(&next) && next != b'-');
                let spaced = c != b'-' || prev == b' ';
                let numeric = c != b'/' || operand == NUMBER;
                pending = if operand != NONE && !compound && spaced && numeric {
                    c
                } else {
                    0
                };
                operand = NONE;
            }
            b'(' => {
                if pending != 0 {
                    st.exprs += 1;
                }
                pending = 0;
                operand = NONE;
            }
            b')' => {
                pending = 0;
                operand = VAR;
            }
            _ => {
                match (c, next) {
                    (b'{' | b'}' | b';', _) => st.code_marks += 1,
                    (b'?', _) => st.questions += 1,
                    // U+2200..U+22FF (∀ ∑ √ ∞ ∫ ≠ ≤ ≥ ...), superscripts ¹ ² ³, π.
                    (0xE2, 0x88..=0x8B) | (0xC2, 0xB2 | 0xB3 | 0xB9) | (0xCF, 0x80) => {
                        st.math_symbols += 1;
                    }
                    _ => {}
                }
                pending = 0;
                operand = NONE;
            }
        }
        prev = c;
    }
}

/// Bytes that make up a word: ASCII letters and digits, the apostrophe, and any byte of a
/// non-ASCII character. A table: this is asked once or twice for every byte of the turn.
const WORD_BYTES: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || c == b'\'' || c >= 0x80;
        b += 1;
    }
    t
};

fn is_word_byte(b: u8) -> bool {
    WORD_BYTES[usize::from(b)]
}

/// Word pass: every word, and every pair of adjacent words in a sentence, is looked up.
fn scan_words(b: &[u8], index: &Index, st: &mut Stats) {
    let mut seen = [0u64; MAX_KEYWORDS / 64];
    let mut hit = |k: &Keyword, st: &mut Stats| {
        let f = k.feat as usize;
        st.count[f] = st.count[f].saturating_add(1);
        let (word, bit) = (usize::from(k.id) / 64, 1u64 << (k.id % 64));
        if let Some(w) = seen.get_mut(word) {
            if *w & bit == 0 {
                *w |= bit;
                st.sum[f] += k.weight;
            }
        }
    };
    let mut prev: Option<u16> = None; // id of the previous word, if it is in the tables
    let mut i = 0;
    while i < b.len() {
        if !is_word_byte(b[i]) {
            if matches!(b[i], b'.' | b'!' | b'?' | b'\n') {
                prev = None; // pairs do not span sentences
            }
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && is_word_byte(b[i]) {
            i += 1;
        }
        let mut tok = &b[start..i];
        while let [b'\'', rest @ ..] = tok {
            tok = rest;
        }
        while let [rest @ .., b'\''] = tok {
            tok = rest;
        }
        let Some(&first) = tok.first() else { continue };
        st.words += 1;
        if first.is_ascii_digit() {
            st.numbers += 1;
            prev = None;
            continue;
        }
        // "how many r's", "count the e's": a question about single characters.
        if let [c, b'\'', b's'] = tok {
            if c.is_ascii_alphabetic() {
                st.letter_counts += 1;
            }
        }
        // "dijkstra's" is "dijkstra" unless the table has the whole word ("geht's").
        let bare = || tok.strip_suffix(b"'s").and_then(|t| index.words.get(t));
        let word = index.words.get(tok).or_else(bare);
        if let Some(k) = word.and_then(|w| w.keyword.as_ref()) {
            hit(k, st);
        }
        let id = word.map(|w| w.id);
        if let (Some(a), Some(b)) = (prev, id) {
            if let Some(k) = index.pairs.get(&(a, b)) {
                hit(k, st);
            }
        }
        prev = id;
    }
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
