//! Tests of the rules classifier.

use super::keywords::MAX_KEYWORDS;
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
