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

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

use super::{Classifier, Conversation, Role, Scored, MAX_SCAN_BYTES};

/// Logit with no evidence: logistic(-2.5) ~ 0.08. Most traffic is chat and writing, so the fast
/// tier is the default and only positive evidence moves a request to the reasoning tier.
const BIAS: f32 = -2.5;
/// Keyword tiers, in logit points. A strong keyword ("prove", "knapsack", "rewrite") is nearly
/// decisive on its own (-2.5 + 3.0 -> 0.62).
const S: f32 = 3.0;
/// A medium keyword ("probability", "algorithm", "email") needs a second signal to flip the tier.
const M: f32 = 1.5;
/// A weak keyword ("sum", "graph", "edit") only tips a balance that other signals started.
const W: f32 = 0.6;
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
/// Upper bound on the keyword table, for the per-turn "seen" bitset.
const MAX_KEYWORDS: usize = 1024;

/// Features a keyword can signal. The first `NCAT` are scored categories, the rest are cues
/// that only take part in combination rules.
#[rustfmt::skip]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feat {
    // Reasoning side.
    Proof, Math, Algo, Debug, Puzzle, Plan, Quant, Step, FollowUp,
    // Fast side.
    Greet, Rewrite, Translate, Summarize, Creative, Lookup, Explain, Routine,
    // Cues: error output, "why", "calculate", something scheduled, a constraint, "write",
    // "function", "what if", "who".
    Trace, Why, Ask, Sched, Constraint, CodeVerb, CodeNoun, FollowCue, Who,
}
use Feat::*;

const NCAT: usize = Trace as usize;
const NFEAT: usize = Who as usize + 1;
/// Categories below this index push toward reasoning, the others toward fast.
const FIRST_FAST: usize = Greet as usize;

/// Reason label and cap (largest |contribution|) of each category, in `Feat` order.
const CATEGORIES: [(&str, f32); NCAT] = [
    ("math proof", 4.5),
    ("math", 4.0),
    ("algorithm design", 4.5),
    ("debugging", 4.0),
    ("logic puzzle", 4.5),
    ("multi-constraint planning", 4.0),
    ("quantitative problem", 4.0),
    // Asking for steps only helps: "explain step by step how to bake bread" is still chat.
    ("step-by-step reasoning", 1.5),
    ("follow-up", 1.0),
    ("greeting", 3.0),
    ("rewriting", 4.0),
    ("translation", 4.0),
    ("summarization", 4.0),
    ("creative writing", 3.0),
    ("lookup", 3.0),
    ("explanation", 2.0),
    ("routine code", 3.0),
];

/// Single-word keywords: (feature, weight, space-separated words).
#[rustfmt::skip]
const WORD_GROUPS: &[(Feat, f32, &str)] = &[
    (Proof, S, "prove proof proofs proving theorem lemma bijection"),
    (Proof, M, "corollary induction contradiction qed axiom axioms rigorous rigorously irrational \
        infinitely iff conjecture undecidable injective surjective implies"),
    (Math, S, "combinatorics"),
    (Math, M, "integral integrate derivative derivatives differentiate equation equations solve \
        inequality polynomial polynomials eigenvalue eigenvalues determinant converge converges \
        convergence factorial permutation permutations combinatorial divisible divisor divisors \
        integer integers gcd lcm logarithm sqrt geometry triangle triangles radius hypotenuse \
        probability probabilities modulo primes parity algebra calculus equals squared cubed \
        exponent asymptote perpendicular dice flips urn marbles randomly bayes binomial lattice \
        subset subsets mathematically frac cdot leq geq infty mathbb"),
    (Math, W, "matrix matrices limit series combinations vector circle angle angles mod prime sum \
        digits fraction fractions roots exponential coin coins cards deck random odds conditional \
        distribution independent math maths mathematical arithmetic sequence geometric fibonacci \
        sin cos tan ln"),
    (Algo, S, "knapsack amortized"),
    (Algo, M, "algorithm algorithms algorithmic complexity asymptotic optimal optimally dijkstra \
        greedy backtracking memoization vertices subsequence subarray maximize minimize maximise \
        minimise topological bipartite invariant recurrence"),
    (Algo, W, "optimize optimise optimization optimisation heuristic recursion recursive graph \
        graphs vertex edges nodes maximum minimum efficient efficiently sorted smallest largest \
        longest"),
    (Debug, S, "deadlock deadlocks deadlocked livelock"),
    (Debug, M, "segfault intermittent intermittently flaky nondeterministic concurrency mutex \
        mutexes hangs"),
    (Debug, W, "concurrent threads thread goroutines corrupted corruption debug debugging bug \
        bugs"),
    (Trace, W, "traceback exception stacktrace panicked panic error errors typeerror valueerror \
        keyerror indexerror attributeerror nullpointerexception undefined crash crashes crashed"),
    (Why, W, "why"),
    (Puzzle, S, "knave knaves syllogism weighings"),
    (Puzzle, M, "knight knights riddle riddles puzzle puzzles liar liars hats deduce deduction \
        clue clues zebra premise premises necessarily logically paradox prisoners pirates \
        counterfeit truthteller truthtellers"),
    (Puzzle, W, "logic lying lies einstein teaser therefore conclude"),
    (Sched, W, "schedule scheduling schedules itinerary timetable roster rota seating arrange \
        arrangement arrangements assign allocate allocation plan planning shifts slots meetings"),
    (Constraint, W, "must cannot can't mustn't exactly unless neither nor adjacent consecutive"),
    (Quant, S, "compounded npv annuity"),
    (Quant, M, "irr amortization apr annually velocity acceleration mph kmh variance deviation \
        roi momentum joules newtons watts volts ohms density concentration molar moles molarity \
        trains"),
    (Quant, W, "interest mortgage loan principal annual speed distance kg meters metres seconds \
        minutes hours rate rates percent percentage ratio average mean profit margin investment \
        invest yield force mass energy pressure temperature volume tank workers liters litres \
        gallons train cost costs"),
    (Ask, W, "calculate compute determine estimate"),
    (Step, M, "derive derivation justify"),
    (Step, W, "reasoning carefully"),
    (Greet, M, "hi hello hey heya hiya howdy yo greetings sup thanks thank thx ty cheers bye \
        goodbye cya hallo servus moin danke bonjour salut merci hola gracias ciao grazie obrigado \
        obrigada konnichiwa gehts geht's"),
    (Greet, W, "lol haha ok okay cool nice awesome"),
    (Rewrite, S, "rewrite rephrase reword paraphrase proofread proofreading"),
    (Rewrite, M, "polish grammar grammatical spelling typos typo shorten wording"),
    (Rewrite, W, "edit tone formal concise improve sentence"),
    (Translate, S, "translate translation translating"),
    (Translate, M, "translated"),
    (Summarize, S, "summarize summarise summarization summarisation tldr"),
    (Summarize, M, "summary condense recap takeaways gist"),
    (Summarize, W, "outline"),
    (Creative, S, "poem poems haiku limerick sonnet lyrics slogan tagline screenplay"),
    (Creative, M, "email emails letter story stories song essay blog tweet caption marketing \
        advert advertisement speech bio linkedin newsletter announcement invitation joke jokes \
        fiction draft recipe"),
    (Creative, W, "ad toast character plot novel"),
    (Lookup, M, "define definition weather synonym synonyms antonym"),
    (Explain, M, "explain eli5 recommend recommendations tips advice"),
    (Explain, W, "describe overview suggest explanation"),
    (Routine, S, "crud"),
    (Routine, M, "regex regexp boilerplate todo fizzbuzz palindrome login signup button navbar \
        uppercase lowercase dockerfile"),
    (Routine, W, "validate form csv json rename convert"),
    (CodeVerb, W, "write create generate implement make build give code scaffold"),
    (CodeNoun, W, "function script class method program snippet query component endpoint api html \
        css sql yaml makefile bash python javascript js typescript java rust golang php ruby \
        react vue flask django express node shell powershell website webpage app cli"),
    (FollowCue, W, "now instead same again also then repeat generalize generalise case continue \
        next"),
    (Who, W, "who which whom"),
];

/// Two-word keywords: (feature, weight, comma-separated "first second" pairs).
#[rustfmt::skip]
const PAIR_GROUPS: &[(Feat, f32, &str)] = &[
    (Proof, M, "show that, there exists, and only"),
    (Proof, W, "for all"),
    (Math, S, "many ways"),
    (Math, M, "real numbers, natural numbers, round table, expected value"),
    (Algo, S, "dynamic programming, shortest path, spanning tree, np hard, np complete, \
        time complexity, space complexity, max flow, traveling salesman, travelling salesman"),
    (Algo, M, "big o, linear time, log n, worst case, lowest common, minimum cut, an algorithm"),
    (Algo, W, "binary search, data structure, in place"),
    (Debug, S, "race condition, data race"),
    (Debug, M, "memory leak, segmentation fault, after free, undefined behavior, \
        undefined behaviour, heap corruption, non deterministic, root cause, wrong output, \
        wrong result"),
    (Trace, W, "stack trace"),
    (Why, W, "how come, what causes, figure out"),
    (Puzzle, S, "always lies, truth teller, who owns, brain teaser"),
    (Puzzle, M, "is lying, exactly one, exactly two, the truth"),
    (Constraint, W, "at least, at most, no more, no fewer, only if, not both, next to, same day, \
        such that"),
    (Quant, S, "compound interest, present value, future value"),
    (Quant, M, "interest rate, per annum, km h, m s, standard deviation, half life"),
    (Quant, W, "per hour, per second"),
    (Ask, W, "how long, how far, how much, how many, how fast, how old"),
    (Step, M, "by step, think carefully, your work, your reasoning, reason through"),
    (Step, W, "walk me"),
    (Greet, M, "good morning, good afternoon, good evening, how are, what's up, guten tag, \
        guten morgen, buenos dias, ca va"),
    (Rewrite, M, "more formal, more concise, sound more, re write"),
    (Rewrite, W, "make it"),
    (Summarize, S, "tl dr"),
    (Summarize, M, "key points, main points, key takeaways, sum up"),
    (Creative, S, "cover letter, short story"),
    (Creative, M, "product description"),
    (Lookup, S, "capital of"),
    (Lookup, M, "who was, who wrote, who invented, when did, when was, what year, population of, \
        meaning of, stand for, how tall, where is, president of, ceo of"),
    (Lookup, W, "who is, what time"),
    (Explain, M, "me about, simple terms, and cons, ideas for"),
    (Explain, W, "how does, difference between, history of, introduction to"),
    (Routine, M, "hello world, rest api, landing page, contact form, unit test, unit tests"),
    (Routine, W, "reverse a, a file"),
    (FollowCue, W, "what if, what about, how about, and if"),
];

/// "into french", "to french", "in french", ...: a translation target (medium weight).
const LANGUAGES: &str = "english french german spanish italian japanese chinese korean portuguese \
    russian dutch arabic hindi swedish turkish mandarin";
const LANGUAGE_PREPOSITIONS: [&str; 3] = ["into", "to", "in"];

#[derive(Debug, Clone, Copy)]
struct Keyword {
    feat: Feat,
    weight: f32,
    id: u16,
}

/// An Fx-style hasher, 8 bytes per step: keys are short words, where SipHash costs more than
/// the lookup (HashDoS is moot: the table is fixed, input only probes it).
#[derive(Default)]
struct WordHasher(u64);

impl WordHasher {
    fn add(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for WordHasher {
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().unwrap_or_default()));
        }
        // The tail in at most two loads (no copy through the stack); the length is hashed too.
        let rest = chunks.remainder();
        let n = rest.len();
        let u32_at = |i: usize| {
            u64::from(u32::from_le_bytes(
                rest[i..i + 4].try_into().unwrap_or_default(),
            ))
        };
        let u8_at = |i: usize| u64::from(rest[i]);
        match n {
            0 => {}
            1..=3 => self.add(u8_at(0) | (u8_at(n / 2) << 8) | (u8_at(n - 1) << 16)),
            _ => self.add(u32_at(0) | (u32_at(n - 4) << 32)),
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
}

type Hasher8 = BuildHasherDefault<WordHasher>;

/// A word that occurs in the tables: its id (for pairs) and its own keyword, if any.
#[derive(Debug, Clone, Copy)]
struct Word {
    id: u16,
    keyword: Option<Keyword>,
}

/// The keyword tables, indexed. A pair is looked up only when both of its words are known.
#[derive(Debug, Default)]
struct Index {
    words: HashMap<&'static [u8], Word, Hasher8>,
    pairs: HashMap<(u16, u16), Keyword, Hasher8>,
    keywords: usize,
}

impl Index {
    fn word_id(&mut self, w: &'static str) -> u16 {
        let next = u16::try_from(self.words.len()).unwrap_or(u16::MAX);
        let word = Word {
            id: next,
            keyword: None,
        };
        self.words.entry(w.as_bytes()).or_insert(word).id
    }

    fn keyword(&mut self, feat: Feat, weight: f32) -> Keyword {
        let id = u16::try_from(self.keywords).unwrap_or(u16::MAX);
        self.keywords += 1;
        Keyword { feat, weight, id }
    }

    fn add_word(&mut self, w: &'static str, feat: Feat, weight: f32) {
        self.word_id(w);
        let k = self.keyword(feat, weight);
        let old = self
            .words
            .get_mut(w.as_bytes())
            .and_then(|e| e.keyword.replace(k));
        debug_assert!(old.is_none(), "duplicate keyword {w:?}");
    }

    fn add_pair(&mut self, a: &'static str, b: &'static str, feat: Feat, weight: f32) {
        let key = (self.word_id(a), self.word_id(b));
        let k = self.keyword(feat, weight);
        let old = self.pairs.insert(key, k);
        debug_assert!(old.is_none(), "duplicate keyword {a:?} {b:?}");
    }
}

/// The keyword index, built once per process.
fn index() -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut index = Index::default();
        for &(feat, weight, words) in WORD_GROUPS {
            for w in words.split_ascii_whitespace() {
                index.add_word(w, feat, weight);
            }
        }
        for &(feat, weight, pairs) in PAIR_GROUPS {
            for pair in pairs.split(',') {
                let mut it = pair.split_ascii_whitespace();
                if let (Some(a), Some(b), None) = (it.next(), it.next(), it.next()) {
                    index.add_pair(a, b, feat, weight);
                } else {
                    debug_assert!(false, "malformed pair {pair:?}");
                }
            }
        }
        for language in LANGUAGES.split_ascii_whitespace() {
            for preposition in LANGUAGE_PREPOSITIONS {
                index.add_pair(preposition, language, Translate, M);
            }
        }
        index
    })
}

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
}

/// One user turn's verdict before the bias: per-category logit contributions.
#[derive(Debug, Clone, Copy)]
struct TurnEval {
    contrib: [f32; NCAT],
    words: u32,
    follow_cue: bool,
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
    combine(&st)
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

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'\'' || b >= 0x80
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Turn;
    use std::borrow::Cow;

    fn conv<'a>(turns: &[(Role, &'a str)]) -> Conversation<'a> {
        Conversation {
            turns: turns
                .iter()
                .map(|&(role, t)| Turn {
                    role,
                    text: Cow::Borrowed(t),
                })
                .collect(),
        }
    }

    fn score_turns(turns: &[(Role, &str)]) -> Scored {
        let s = RulesClassifier::new().score(&conv(turns));
        check_shape(&s);
        s
    }

    fn score(text: &str) -> Scored {
        score_turns(&[(Role::User, text)])
    }

    fn check_shape(s: &Scored) {
        assert!((0.0..=1.0).contains(&s.score), "score out of range: {s:?}");
        assert!(
            !s.reasons.is_empty() && s.reasons.len() <= 3,
            "bad reasons: {s:?}"
        );
        for r in &s.reasons {
            assert!(
                r.is_ascii() && !r.contains(',') && !r.is_empty(),
                "bad reason {r:?}"
            );
        }
    }

    const REASONING: &[&str] = &[
        "Prove that there are infinitely many primes.",
        "How many ways can 5 people sit around a round table?",
        "On an island knights always tell the truth and knaves always lie. A says: 'B is a knave.' \
         B says: 'We are both knights.' Who is what?",
        "If all bloops are razzies and all razzies are lazzies, are all bloops necessarily \
         lazzies? Justify your answer.",
        "Alice, Bob and Carol each own exactly one pet: a cat, a dog or a fish. Alice cannot own \
         the cat and Bob must not have the dog. Who owns the fish?",
        "Design an algorithm to find the shortest path in a weighted graph with negative edges and \
         give its time complexity.",
        "Write a function that returns the k-th smallest element of two sorted arrays in \
         O(log(m+n)) time.",
        "My Go service deadlocks under load when two goroutines lock the mutexes in different \
         order. How do I find the root cause?",
        "Why does this crash?\nTraceback (most recent call last):\n  File \"app.py\", line 10, in \
         <module>\n    main()\nKeyError: 'user_id'",
        "There is a race condition in my Rust code: two threads update a counter and the final \
         count is sometimes wrong. Why?",
        "Schedule 6 exams over 3 days such that no student has two exams on the same day, Math \
         must come before Physics, at most 2 exams per day and Chemistry cannot be on day 1.",
        "If I invest $5,000 at 4% interest compounded monthly, how much will I have after \
         10 years?",
        "A car accelerates from 0 to 27 m/s in 9 seconds. What is its acceleration and how far \
         does it travel in that time?",
        "Two dice are rolled. What is the probability that the sum is a prime number? \
         Show your work.",
        "Solve for x: 3x^2 - 12x + 9 = 0",
        "What is the time complexity of this recursive function and can memoization improve it?",
        "Hi! Can you prove that √2 is irrational?",
    ];

    const FAST: &[&str] = &[
        "hi there! how are you?",
        "Hallo! Wie geht's dir heute?",
        "Can you rewrite this email to sound more professional? Hi team, our Q3 revenue was $2.3M, \
         up 15% from Q2 (1.9M). We need 3 more engineers by March 15 and the budget is 450k, so \
         please send me 2 candidates each by 03/01. Call 555-1234 if you have questions.",
        "explain what a hash map is",
        "Translate this paragraph to French: The meeting is moved to Thursday at 3pm. Please bring \
         your laptops and the quarterly report.",
        "Write a Python function to reverse a string.",
        "What is the capital of Australia?",
        "Summarize the following article in three bullet points: The city council met on Tuesday \
         to discuss the new budget, which grows 4% to $12 million.",
        "Write a short poem about autumn leaves.",
        "Write a regex to validate an email address.",
        "Give me a recipe for chocolate chip cookies.",
        "Create a REST API endpoint in Flask for CRUD on a users table.",
        "Proofread this: Their going to the park tomorow and there bringing sandwiches.",
        "Write a marketing tagline for our new running shoes.",
        "thanks, that was helpful!",
        "Who wrote Pride and Prejudice?",
        "Tell me a fun fact about octopuses.",
        "Write a story about a knight who befriends a dragon.",
        "Translate this proof into German: Assume sqrt(2) = p/q in lowest terms; then p^2 = 2q^2.",
        "Explain big O notation in simple terms.",
    ];

    #[test]
    fn reasoning_prompts_score_high() {
        for p in REASONING {
            let s = score(p);
            assert!(s.score > 0.5, "expected reasoning for {p:?}: {s:?}");
        }
    }

    #[test]
    fn fast_prompts_score_low() {
        for p in FAST {
            let s = score(p);
            assert!(s.score < 0.5, "expected fast for {p:?}: {s:?}");
        }
    }

    #[test]
    fn reasons_name_the_signal() {
        assert_eq!(
            score("Prove that there are infinitely many primes.").reasons[0],
            "math proof"
        );
        assert_eq!(score("hi there! how are you?").reasons[0], "greeting");
        assert_eq!(
            score("Translate this to French: good night").reasons[0],
            "translation"
        );
        assert_eq!(score("What is the capital of Peru?").reasons[0], "lookup");
        assert_eq!(
            score("Write a Python function to reverse a string.").reasons[0],
            "routine code"
        );
        assert_eq!(score("what should I cook tonight").reasons, vec!["chat"]);
        // A fast verdict with only reasoning-side signals names them (the threshold may be < 0.5).
        let s = score("What is 17 * 23?");
        assert!(s.score < 0.5 && s.reasons == vec!["math"], "{s:?}");
    }

    #[test]
    fn follow_up_keeps_reasoning() {
        let q = "How many ways can 5 people sit around a round table?";
        let s = score_turns(&[
            (Role::User, q),
            (Role::Assistant, "24"),
            (Role::User, "what if it were 7 people?"),
        ]);
        assert!(s.score > 0.5, "{s:?}");
        assert!(s.reasons.contains(&"follow-up"), "{s:?}");
        let p = "Prove by induction that 1 + 2 + ... + n = n(n+1)/2.";
        let s = score_turns(&[
            (Role::User, p),
            (Role::Assistant, "Base case n = 1 holds; assume it for n..."),
            (Role::User, "now for n = 10"),
            (Role::Assistant, "55"),
            (Role::User, "and for 20?"),
        ]);
        assert!(s.score > 0.5, "{s:?}");
        // Alone, the same follow-up is chat.
        assert!(score("what if it were 7 people?").score < 0.5);
    }

    #[test]
    fn follow_up_with_fast_signal_or_after_chat_is_fast() {
        let q = "Prove that there are infinitely many primes.";
        for last in [
            "thanks!",
            "Now translate it into Spanish.",
            "write it as a poem",
        ] {
            let s = score_turns(&[
                (Role::User, q),
                (Role::Assistant, "Suppose..."),
                (Role::User, last),
            ]);
            assert!(s.score < 0.5, "{last:?}: {s:?}");
        }
        let s = score_turns(&[
            (Role::User, "hello!"),
            (Role::Assistant, "Hi!"),
            (Role::User, "what if it rains?"),
        ]);
        assert!(s.score < 0.5, "{s:?}");
    }

    #[test]
    fn system_and_tool_turns_are_ignored() {
        let s = score_turns(&[
            (Role::System, "Answer in markdown with bullet points."),
            (Role::User, "hello"),
        ]);
        assert!(s.score < 0.5, "{s:?}");
        let s = score_turns(&[
            (
                Role::System,
                "You are a math tutor. Prove every theorem rigorously.",
            ),
            (
                Role::Tool,
                "integral of x^2 dx = x^3/3 + C; probability = 0.25; theorem proved",
            ),
            (Role::User, "hi there!"),
        ]);
        assert!(s.score < 0.5, "{s:?}");
    }

    #[test]
    fn no_user_text() {
        for c in [
            conv(&[]),
            conv(&[(Role::System, "be nice"), (Role::Assistant, "hi")]),
            conv(&[(Role::User, "  \n")]),
        ] {
            let s = RulesClassifier::new().score(&c);
            check_shape(&s);
            assert!(s.score < 0.5);
            assert_eq!(s.reasons, vec!["no user text"]);
        }
    }

    #[test]
    fn huge_and_multibyte_inputs_do_not_panic() {
        let mut big = String::from("Prove that the sum of the first n odd numbers is n^2. ");
        while big.len() < 1 << 20 {
            big.push_str("The quick brown fox jumps over the lazy dog 12 + 34 = 46. ");
        }
        assert!(score(&big).score > 0.5);
        // Long texts keep their tail: the instruction after a pasted document still counts.
        big.push_str("Now translate the text above to French.");
        assert_eq!(score(&big).reasons[0], "translation");
        for pad in 0..4 {
            let mut s = "a".repeat(pad);
            s.push_str(&"漢é😀".repeat(200_000));
            score(&s);
            score(&s[pad..]);
        }
        let f = score("こんにちは！😀 元気ですか？");
        assert!(f.score < 0.5, "{f:?}");
        for t in [
            "",
            "'",
            "''''",
            "?",
            "o(",
            "=",
            "5 +",
            "√",
            "\u{E2}",
            "x = ",
            "€€€",
            "🙂 = 🙃 ^ 2",
        ] {
            score(t);
        }
    }

    #[test]
    fn arbitrary_text_stays_in_range() {
        let alphabet: Vec<char> = "abcxyz019 =+-*/^()?.,;{}'\n漢é😀√≤π".chars().collect();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in 0..300 {
            let text: String = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    alphabet[(seed % alphabet.len() as u64) as usize]
                })
                .collect();
            score(&text);
        }
    }

    #[test]
    fn keyword_table_is_well_formed() {
        // Building the index debug-asserts that there are no duplicates and no malformed pairs.
        let idx = index();
        assert!(idx.keywords <= MAX_KEYWORDS && idx.words.len() < usize::from(u16::MAX));
        for key in idx.words.keys() {
            let k = std::str::from_utf8(key).unwrap();
            let lower = k
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b"'5".contains(&b));
            assert!(lower && !k.starts_with('\'') && !k.ends_with('\''), "{k:?}");
        }
    }
}
