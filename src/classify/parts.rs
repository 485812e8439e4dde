//! The layout of a worked problem: sub-questions and given values, read over the whole turn.
//!
//! An exercise sheet splits its ask into lettered or numbered parts ("(a) Find ... (b) Show
//! ...") and lists its data as given values ("Q = 0.018 m^3/s", "p1 = 210 kPa"). The segmenter
//! rightly files such value lines as data, so the prose features never see them, and the
//! sheet's length no longer counts either: this block puts the layout back as two small,
//! capped counts. A table has no "(b)", so a pasted one adds nothing; `key=value` logs,
//! configs and code do add given values (up to the cap), which the training data's pasted
//! look-alikes carry too, so the model weighs that. Whether the ask is to solve the sheet
//! or only to translate or typeset it stays with the prose and the rules. Read over the
//! same head and tail windows as the segmenter and the rules (`segment::windows`), so the
//! parts at the end of a long sheet count.

use super::segment;

pub const NAMES: [(&str, &str); 2] = [
    ("+sub-questions", "-sub-questions"),
    ("+given values", "-given values"),
];

const MAX_PARTS: u32 = 6;
const MAX_GIVEN: u32 = 8;
/// Longest name on the left of a given value: `p1`, `rho`, `v_max`, `Kp`.
const MAX_NAME: usize = 8;

/// Writes `[log(1 + sub-questions), log(1 + given values)]`, each count capped.
pub fn parts(text: &str, out: &mut [f32]) {
    let (head, tail) = segment::windows(text);
    let (mut questions, mut given) = (0u32, 0u32);
    for window in [head, tail] {
        questions = questions.saturating_add(sub_questions(window.as_bytes()));
        given = given.saturating_add(given_values(window.as_bytes()));
    }
    out[0] = (1.0 + questions.min(MAX_PARTS) as f32).ln();
    out[1] = (1.0 + given.min(MAX_GIVEN) as f32).ln();
}

/// Markers of a part: `(a)`..`(h)`, `(i)`..`(vi)`, `(1)`..`(9)` after a space or a line
/// start (so `f(a)` is a call, not a part), the fullwidth `（1）` of Chinese and Japanese
/// sheets, and `a)` / `1)` opening a line. Only the bytes `memchr` finds are looked at.
fn sub_questions(b: &[u8]) -> u32 {
    let mut count = 0u32;
    for line in b.split(|&c| c == b'\n') {
        let body = line.trim_ascii_start();
        if marker_at(body, b')').is_some() {
            count += 1;
        }
        for i in memchr::memchr2_iter(b'(', 0xEF, line) {
            let marked = if line[i] == b'(' {
                (i == 0 || matches!(line[i - 1], b' ' | b'\t'))
                    && marker_at(&line[i + 1..], b')').is_some()
            } else {
                line[i..].starts_with("（".as_bytes())
                    && fullwidth_marker_at(&line[i + 3..]).is_some()
            };
            count += u32::from(marked);
        }
    }
    count
}

/// The length of a part label (`a`..`h`, `i`..`vi`, `1`..`9`) at the start of `b` when
/// `close` follows it.
fn marker_at(b: &[u8], close: u8) -> Option<usize> {
    const ROMAN: [&[u8]; 6] = [b"i", b"ii", b"iii", b"iv", b"v", b"vi"];
    let label_len = match b.first()? {
        b'a'..=b'h' | b'1'..=b'9' => 1,
        _ => ROMAN
            .iter()
            .rev()
            .find(|r| b.starts_with(r))
            .map(|r| r.len())?,
    };
    (b.get(label_len) == Some(&close)).then_some(label_len)
}

/// `1）` after a fullwidth `（`: an ASCII or fullwidth digit, then `）`. Returns the bytes
/// read, the closing bracket included.
fn fullwidth_marker_at(b: &[u8]) -> Option<usize> {
    let close = "）".as_bytes();
    let digit_len = match b.first()? {
        b'1'..=b'9' => 1,
        // Fullwidth digits U+FF11..U+FF19: EF BC 91..99.
        0xEF if b.get(1) == Some(&0xBC) && matches!(b.get(2), Some(0x91..=0x99)) => 3,
        _ => return None,
    };
    b[digit_len..]
        .starts_with(close)
        .then_some(digit_len + close.len())
}

/// `name = number` pairs: a short name (a letter first, then letters, digits or `_`) right
/// before an `=` that is not part of `==`, `<=`, `>=` or `!=`, and a number (maybe signed)
/// right after it.
fn given_values(b: &[u8]) -> u32 {
    let mut count = 0u32;
    for i in memchr::memchr_iter(b'=', b) {
        if b.get(i + 1) == Some(&b'=') {
            continue;
        }
        if i > 0 && matches!(b[i - 1], b'=' | b'<' | b'>' | b'!') {
            continue;
        }
        if number_follows(&b[i + 1..]) && name_precedes(&b[..i]) {
            count += 1;
        }
    }
    count
}

fn number_follows(b: &[u8]) -> bool {
    let rest = b.trim_ascii_start();
    let rest = rest.strip_prefix(b"-").unwrap_or(rest);
    rest.first().is_some_and(u8::is_ascii_digit)
}

fn name_precedes(b: &[u8]) -> bool {
    let b = b.trim_ascii_end();
    let start = b
        .iter()
        .rposition(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
        .map_or(0, |p| p + 1);
    let name = &b[start..];
    let before_ok = start == 0 || matches!(b[start - 1], b' ' | b'\t' | b'\n' | b',' | b';' | b'(');
    !name.is_empty() && name.len() <= MAX_NAME && name[0].is_ascii_alphabetic() && before_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(text: &str) -> (u32, u32) {
        (
            sub_questions(text.as_bytes()),
            given_values(text.as_bytes()),
        )
    }

    #[test]
    fn an_exercise_sheet_has_parts_and_given_values() {
        let sheet = "Exercise 4. Water flows through a pipe.\nMeasured values:\nQ = 0.018 m^3/s\n\
                     p1 = 210 kPa\nrho = 1000 kg/m^3\n(a) Find the velocities. (b) Find the \
                     pressure. (c) At what flow rate does it boil?";
        assert_eq!(counts(sheet), (3, 3));
    }

    #[test]
    fn line_start_and_fullwidth_markers_count() {
        assert_eq!(counts("a) Berechne x.\nb) Zeige, dass y > 0.\n").0, 2);
        assert_eq!(counts("（1）速度を求めよ。（２）圧力を求めよ。").0, 2);
        assert_eq!(counts("(i) show it is finite (ii) bound it (iv) done").0, 3);
    }

    #[test]
    fn calls_comparisons_and_prose_do_not_count() {
        // A call, a comparison, an assignment of text, a long name, a parenthesised word.
        let text = "let y = f(a) + g(1); if x == 3 or z <= 4: w = \"five\"\n\
                    a_very_long_name = 3 (see above)";
        assert_eq!(counts(text), (0, 0));
        assert_eq!(
            counts("I need a summary of this article (about 200 words)."),
            (0, 0)
        );
    }

    #[test]
    fn counts_are_capped_and_a_long_paste_is_bounded() {
        let mut out = [0.0; 2];
        let many = "(a) x = 1\n".repeat(100_000);
        parts(&many, &mut out);
        assert_eq!(out, [(1.0f32 + 6.0).ln(), (1.0f32 + 8.0).ln()]);
        // A window ending inside a multi-byte character is cut at a boundary, not a panic.
        let cjk = "（１）".repeat(crate::classify::MAX_SCAN_BYTES);
        parts(&cjk, &mut out);
        assert!(out[0] > 0.0);
    }

    #[test]
    fn the_parts_at_the_end_of_a_long_sheet_count() {
        let mut out = [0.0; 2];
        let sheet = format!(
            "Exercise 9. Measured data:\n{}(a) Fit the line. (b) Find the slope's error.",
            "0.10 0.52 0.98\n".repeat(2_000)
        );
        parts(&sheet, &mut out);
        assert_eq!(out[0], (1.0f32 + 2.0).ln());
    }
}
