//! Splits a user turn into the user's own words and pasted data.
//!
//! Real prompts often carry a question plus a pasted table, log, CSV or program. What the
//! user asks is in the prose; the pasted block mostly says how much was pasted. Features
//! computed over the whole text (a mean embedding, a word count) let the paste drown the
//! question: a homework problem followed by a 3 KB data table looks like "a table". So the
//! learned features read the prose lines, and the rules still see everything.
//!
//! A line is pasted data when it sits in a fenced block, looks like a table row (tabs or
//! pipes), looks like code (ends in `{`, `}` or `;`, or starts like a statement), looks like
//! a log or trace line, or is mostly digits and symbols rather than letters. Everything is
//! byte-driven and bounded: only the head and tail windows of a long text are read.

use super::MAX_SCAN_BYTES;

/// How a turn splits.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    pub prose_bytes: usize,
    pub data_bytes: usize,
}

/// Pushes the prose lines of `text` to `out` (in order) and says how the bytes split. When a
/// text has no prose line at all (a bare paste), its non-empty lines count as prose: then
/// the paste is all there is to judge.
pub fn prose<'a>(text: &'a str, out: &mut Vec<&'a str>) -> Split {
    let start = out.len();
    let mut split = Split::default();
    let (head, tail) = windows(text);
    let mut fenced = false;
    for part in [head, tail] {
        let mut previous_data = false;
        for line in part.lines() {
            let trimmed = line.trim();
            if trimmed.is_empty() {
                previous_data = false;
                continue;
            }
            if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
                fenced = !fenced;
                split.data_bytes += line.len();
                continue;
            }
            let indented = line.starts_with("    ") || line.starts_with('\t');
            let data = fenced || is_data(trimmed) || (previous_data && indented);
            previous_data = data;
            if data {
                split.data_bytes += line.len();
            } else {
                split.prose_bytes += line.len();
                out.push(trimmed);
            }
        }
    }
    if out.len() == start {
        for part in [head, tail] {
            out.extend(part.lines().map(str::trim).filter(|l| !l.is_empty()));
        }
        split.prose_bytes = split.data_bytes;
        split.data_bytes = 0;
    }
    split
}

/// The head and tail windows of a long text (the tail empty for a short one).
pub(super) fn windows(text: &str) -> (&str, &str) {
    if text.len() <= MAX_SCAN_BYTES {
        return (text, "");
    }
    let (head, tail) = super::head_and_tail(text, MAX_SCAN_BYTES / 2);
    // The tail window starts at a line boundary, so no half line is judged.
    let tail = tail.find('\n').map_or(tail, |i| &tail[i + 1..]);
    (head, tail)
}

const CODE_STARTS: &[&str] = &[
    "def ",
    "class ",
    "import ",
    "from ",
    "#include",
    "fn ",
    "pub ",
    "let ",
    "const ",
    "var ",
    "public ",
    "private ",
    "static ",
    "return ",
    "//",
    "/*",
    "#!",
    "func ",
    "package ",
    "using ",
    "SELECT ",
    "INSERT ",
    "CREATE ",
    "<",
    "$ ",
    ">>> ",
    "File \"",
    "Traceback",
    "if (",
    "for (",
    "while (",
    "} ",
];

/// Classes of ASCII bytes for `is_data`'s counts: letters (most bytes) are told apart with
/// one table load. A tab is also whitespace; a pipe or comma is also "other".
const OTHER: u8 = 0;
const LETTER: u8 = 1;
const SPACE: u8 = 2;
const TAB: u8 = 3;
const PIPE: u8 = 4;
const COMMA: u8 = 5;
const ASCII_CLASS: [u8; 128] = {
    let mut t = [OTHER; 128];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        t[b] = match c {
            b'\t' => TAB,
            b'|' => PIPE,
            b',' => COMMA,
            // `char::is_whitespace` on ASCII.
            b' ' | 9..=13 => SPACE,
            _ if c.is_ascii_alphabetic() => LETTER,
            _ => OTHER,
        };
        b += 1;
    }
    t
};

fn is_data(line: &str) -> bool {
    let b = line.as_bytes();
    // One pass for all the counts (the tests below are pure, so their order is free).
    let (mut tabs, mut pipes, mut commas) = (0usize, 0usize, 0usize);
    let (mut letters, mut other) = (0usize, 0usize);
    let mut i = 0;
    while i < b.len() {
        // ASCII without decoding (`char::is_whitespace` on ASCII is 9..=13 and space);
        // other characters decoded.
        let c = b[i];
        if c < 0x80 {
            match ASCII_CLASS[usize::from(c)] {
                LETTER => letters += 1,
                SPACE => {}
                TAB => tabs += 1,
                PIPE => {
                    pipes += 1;
                    other += 1;
                }
                COMMA => {
                    commas += 1;
                    other += 1;
                }
                _ => other += 1,
            }
            i += 1;
            continue;
        }
        let ch = line[i..].chars().next().expect("a char at a boundary");
        i += ch.len_utf8();
        if ch.is_alphabetic() {
            letters += 1;
        } else if !ch.is_whitespace() {
            other += 1;
        }
    }
    if tabs >= 2 || pipes >= 2 {
        return true;
    }
    if matches!(b.last(), Some(b'{' | b'}' | b';')) || line == "}" || line == ")" {
        return true;
    }
    if CODE_STARTS.iter().any(|s| line.starts_with(s)) && !looks_like_sentence(line) {
        return true;
    }
    if is_log(line) {
        return true;
    }
    // Mostly digits and symbols: table rows, CSV, log lines with timestamps, hex dumps.
    // The cheap test first: a sentence break rules CSV out before the words are counted.
    let csv = commas >= 3
        && !line.contains(". ")
        && commas * 6 >= line.split_whitespace().count().max(1) * 2;
    csv || letters < other
}

/// Log lines: a leading timestamp or date (`2025-03-01 12:00:01`, `[12:00:01]`),
/// or an upper-case level word (`INFO`, `WARN`, `ERROR`, ...).
fn is_log(line: &str) -> bool {
    // Two separators between digit runs: `2025-03-01`, `12:00:07` (not `3-4 people`).
    let head = line.trim_start_matches(['[', '(']).as_bytes();
    let mut at = 0;
    let mut stamp = true;
    for _ in 0..2 {
        let digits = head[at..].iter().take_while(|b| b.is_ascii_digit()).count();
        stamp &= (1..=4).contains(&digits) && matches!(head.get(at + digits), Some(b'-' | b':'));
        at = (at + digits + 1).min(head.len());
    }
    stamp &= head.get(at).is_some_and(u8::is_ascii_digit);
    stamp
        || line.split_whitespace().take(6).any(|w| {
            matches!(
                w.trim_matches(|c: char| !c.is_ascii_alphabetic()),
                "INFO" | "WARN" | "WARNING" | "ERROR" | "DEBUG" | "TRACE" | "FATAL" | "CRITICAL"
            ) && w.len() <= 10
        })
}

/// Several words of letters and no code punctuation: "Return the answer as a list" or
/// "let x be the number of apples" is prose even though it starts like a statement.
fn looks_like_sentence(line: &str) -> bool {
    let words = line
        .split_whitespace()
        .filter(|w| {
            w.chars()
                .all(|c| c.is_alphabetic() || ",.?!:'\"".contains(c))
        })
        .count();
    words >= 5 && !line.bytes().any(|c| b"(){}[];=".contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> (Vec<&str>, Split) {
        let mut out = Vec::new();
        let split = prose(text, &mut out);
        (out, split)
    }

    #[test]
    fn a_question_with_a_pasted_table_keeps_only_the_question() {
        let text = "Here are the measured currents for the circuit:\n\
            t (s)\tI1 (mA)\tI2 (mA)\n0.0\t12.1\t3.3\n0.5\t10.4\t4.9\n1.0\t8.8\t6.0\n\
            | node | voltage |\n|---|---|\n| a | 3.3 |\n\
            Using Kirchhoff's laws, find the resistance R2 that makes I1 = I2 at t = 2 s.";
        let (out, split) = lines(text);
        assert_eq!(
            out,
            vec![
                "Here are the measured currents for the circuit:",
                "Using Kirchhoff's laws, find the resistance R2 that makes I1 = I2 at t = 2 s."
            ]
        );
        assert!(split.data_bytes > 80 && split.prose_bytes > 100);
    }

    #[test]
    fn code_logs_and_csv_are_data() {
        let text =
            "Why does this print 3 instead of 4?\n```python\nx = [1, 2, 3]\nprint(len(x))\n```\n\
            def f(a):\n    return a + 1\n\
            2024-01-02 10:00:01,123 ERROR worker-3 timeout after 30000 ms\n\
            [12:00:07] worker 2 picked up the job from the queue\n\
            WARN disk usage above the configured limit on node seven\n\
            id,name,price,qty\n1,apple,0.5,10\n";
        let (out, _) = lines(text);
        assert_eq!(out, vec!["Why does this print 3 instead of 4?"]);
    }

    #[test]
    fn prose_and_maths_in_words_stay() {
        for text in [
            "Prove that for every integer n, n^3 - n is divisible by 6.",
            "Beweise, dass es unendlich viele Primzahlen gibt.",
            "证明：存在无穷多个素数。",
            "Return the number of ways to climb n stairs if you can take 1 or 2 steps.",
        ] {
            assert_eq!(lines(text).0, vec![text]);
        }
    }

    #[test]
    fn symbols_outweighing_letters_make_data_in_any_script() {
        assert!(is_data("€ ½ ¾ — 12 ± 3"));
        assert!(is_data("\u{b}\u{c} 1 2 3 ab"));
        assert!(!is_data("Größe\u{3000}über 3 €"));
        assert!(!is_data("証明せよ：素数は無限にある (1 + 1)"));
    }

    #[test]
    fn a_bare_paste_is_judged_as_it_is() {
        let (out, split) = lines("1,2,3,4\n5,6,7,8");
        assert_eq!(out, vec!["1,2,3,4", "5,6,7,8"]);
        assert_eq!(split.data_bytes, 0);
        assert_eq!(lines("").0, Vec::<&str>::new());
    }

    #[test]
    fn long_texts_read_only_their_windows() {
        let text =
            "Find the bug.\n".to_string() + &"0.1\t0.2\t0.3\n".repeat(100_000) + "Why is it slow?";
        let (out, split) = lines(&text);
        assert_eq!(out, vec!["Find the bug.", "Why is it slow?"]);
        assert!(split.data_bytes <= MAX_SCAN_BYTES);
    }
}
