//! The English keyword tables of the rules classifier and their index: which words and word
//! pairs signal which category, at which weight. Multilingual stems are in `lexicon`.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

/// Keyword tiers, in logit points. A strong keyword ("prove", "knapsack", "rewrite") is nearly
/// decisive on its own (-2.5 + 3.0 -> 0.62).
pub(super) const S: f32 = 3.0;
/// A medium keyword ("probability", "algorithm", "email") needs a second signal to flip the tier.
pub(super) const M: f32 = 1.5;
/// A weak keyword ("sum", "graph", "edit") only tips a balance that other signals started.
pub(super) const W: f32 = 0.6;
/// Upper bound on the keyword table, for the per-turn "seen" bitset.
pub(super) const MAX_KEYWORDS: usize = 1024;

/// Features a keyword can signal. The first `NCAT` are scored categories, the rest are cues
/// that only take part in combination rules.
#[rustfmt::skip]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Feat {
    // Reasoning side.
    Proof, Math, Algo, Debug, Puzzle, Plan, Quant, Letters, Step, FollowUp,
    // Fast side.
    Greet, Rewrite, Translate, Summarize, Creative, Lookup, Explain, Routine,
    // Cues: error output, "why", "calculate", something scheduled, a constraint, "write",
    // "function", "what if", "who".
    Trace, Why, Ask, Sched, Constraint, CodeVerb, CodeNoun, FollowCue, Who,
}
use Feat::*;

pub(super) const NCAT: usize = Trace as usize;
pub(super) const NFEAT: usize = Who as usize + 1;
/// Categories below this index push toward reasoning, the others toward fast.
pub(super) const FIRST_FAST: usize = Greet as usize;

/// Reason label and cap (largest |contribution|) of each category, in `Feat` order.
pub(super) const CATEGORIES: [(&str, f32); NCAT] = [
    ("math proof", 4.5),
    ("math", 4.0),
    ("algorithm design", 4.5),
    ("debugging", 4.0),
    ("logic puzzle", 4.5),
    ("multi-constraint planning", 4.0),
    ("quantitative problem", 4.0),
    ("letter-level constraints", 4.0),
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
pub(super) const WORD_GROUPS: &[(Feat, f32, &str)] = &[
    (Proof, S, "prove proof proofs proving theorem lemma bijection"),
    (Proof, M, "corollary induction contradiction qed axiom axioms rigorous rigorously irrational \
        infinitely iff conjecture undecidable injective surjective implies disprove \
        counterexample refute"),
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
    (Debug, S, "deadlock deadlocks deadlocked livelock linearizable linearizability"),
    (Debug, M, "segfault intermittent intermittently flaky nondeterministic concurrency mutex \
        mutexes hangs volatile lockfree reordering reordered atomics starvation"),
    (Debug, W, "concurrent threads thread goroutines corrupted corruption debug debugging bug \
        bugs atomic atomically fence barrier visibility"),
    (Letters, M, "letters anagram anagrams lipogram acrostic vowel vowels consonant \
        consonants syllable syllables alphabetical alphabetically"),
    (Letters, W, "spelled backwards rhyme rhymes"),
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
    // Layout work on a pasted exercise sheet is a transform, whatever the sheet asks.
    (Rewrite, S, "reformat reformatting typeset typesetting"),
    (Rewrite, W, "format formatting layout"),
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
        uppercase lowercase dockerfile matplotlib spreadsheet excel chart"),
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
pub(super) const PAIR_GROUPS: &[(Feat, f32, &str)] = &[
    (Proof, M, "show that, there exists, and only"),
    (Proof, W, "for all"),
    (Math, S, "many ways"),
    (Math, M, "real numbers, natural numbers, round table, expected value"),
    (Algo, S, "dynamic programming, shortest path, spanning tree, np hard, np complete, \
        time complexity, space complexity, max flow, traveling salesman, travelling salesman"),
    (Algo, M, "big o, linear time, log n, worst case, lowest common, minimum cut, an algorithm"),
    (Algo, W, "binary search, data structure, in place, all possible, without using"),
    (Algo, M, "minimum number, maximum number, fewest number, distinct ways"),
    (Letters, M, "the letter, each word, every word, starts with, ends with, begins with, \
        same letter, many letters, no letter"),
    (Debug, S, "race condition, data race"),
    (Debug, S, "lock free, happens before, memory ordering, memory model, double checked, \
        and swap, aba problem, priority inversion"),
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
    // "Tidy this problem sheet, don't solve it": the ask is the layout, not the problem.
    // Only the imperative: "I could not solve", "without solving the equation, show"
    // are reasoning requests.
    (Rewrite, S, "don't solve, dont solve"),
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
    (Routine, M, "hello world, rest api, landing page, contact form, unit test, unit tests, \
        business logic, bar graph, line graph, pie chart, bar chart"),
    (Routine, W, "reverse a, a file"),
    (FollowCue, W, "what if, what about, how about, and if"),
];

/// "into french", "to french", "in french", ...: a translation target (medium weight).
pub(super) const LANGUAGES: &str =
    "english french german spanish italian japanese chinese korean portuguese \
    russian dutch arabic hindi swedish turkish mandarin";
pub(super) const LANGUAGE_PREPOSITIONS: [&str; 3] = ["into", "to", "in"];

#[derive(Debug, Clone, Copy)]
pub(super) struct Keyword {
    pub(super) feat: Feat,
    pub(super) weight: f32,
    pub(super) id: u16,
}

/// An Fx-style hasher, 8 bytes per step: keys are short words, where SipHash costs more than
/// the lookup (HashDoS is moot: the table is fixed, input only probes it).
#[derive(Default)]
pub(super) struct WordHasher(u64);

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

pub(super) type Hasher8 = BuildHasherDefault<WordHasher>;

/// A word that occurs in the tables: its id (for pairs) and its own keyword, if any.
#[derive(Debug, Clone, Copy)]
pub(super) struct Word {
    pub(super) id: u16,
    pub(super) keyword: Option<Keyword>,
}

/// The keyword tables, indexed. A pair is looked up only when both of its words are known.
#[derive(Debug, Default)]
pub(super) struct Index {
    pub(super) words: HashMap<&'static [u8], Word, Hasher8>,
    pub(super) pairs: HashMap<(u16, u16), Keyword, Hasher8>,
    pub(super) keywords: usize,
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
pub(super) fn index() -> &'static Index {
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
