//! The first stage's `shape` block: what the prose lines hold, as capped counts of
//! numbers, quantities with a unit, maths symbols (ASCII and Unicode) and questions
//! (ASCII and fullwidth), plus the rules' constraint count. One byte pass per line, no
//! decoding; it reads only the prose lines, so a pasted table or log does not move it.

use super::features::log;

/// Counts over the prose lines; each is capped, since a long list of figures is not a
/// harder question than a short one.
pub(super) fn shape(lines: &[&str], constraints: u16, out: &mut [f32]) {
    let (mut numbers, mut quantities, mut math, mut questions) = (0u32, 0u32, 0u32, 0u32);
    for line in lines {
        let c = count_line(line.as_bytes());
        numbers += c.numbers;
        quantities += c.quantities;
        math += c.math;
        questions += c.questions;
    }
    out[0] = log(numbers.min(12) as f32);
    out[1] = log(quantities.min(6) as f32);
    out[2] = log(math.min(12) as f32);
    out[3] = log(questions.min(4) as f32);
    out[4] = log(f32::from(constraints.min(6)));
}

#[derive(Default)]
struct LineCounts {
    numbers: u32,
    quantities: u32,
    math: u32,
    questions: u32,
}

/// Units written after a number, in any language: `5 km`, `3kg`, `12%`, `40 €`, `9 m/s`.
const UNITS: &[&str] = &[
    "%", "€", "$", "£", "¥", "°", "km", "m", "cm", "mm", "kg", "g", "mg", "t", "l", "ml", "s",
    "ms", "h", "min", "mph", "kmh", "mol", "j", "kj", "n", "w", "kw", "kwh", "v", "a", "hz", "pa",
    "bar", "gb", "mb", "kb", "years", "year", "days", "hours", "minutes", "seconds", "people",
    "dollars", "euros", "miles", "meters", "metres", "km/h", "m/s",
    // Engineering sheets: pressures, forces, flows, electrical units, areas and volumes.
    "kpa", "mpa", "gpa", "kn", "nm", "mw", "kva", "rpm", "ohm", "ohms", "khz", "mhz", "ghz", "m^2",
    "m^3", "m²", "m³", "cm^2", "cm^3", "cm²", "cm³", "m^3/s", "l/s", "m/s^2", "m/s²",
];

/// The bytes `count_line` acts on: digits, the ASCII maths operators, `?`, and the UTF-8
/// lead bytes of the non-ASCII symbols it counts.
const SHAPE_BYTES: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = matches!(
            b as u8,
            b'0'..=b'9'
                | b'='
                | b'^'
                | b'+'
                | b'*'
                | b'<'
                | b'>'
                | b'?'
                | 0xC2
                | 0xC3
                | 0xCF
                | 0xE2
                | 0xEF
        );
        b += 1;
    }
    t
};

/// One byte pass over a line: numbers, numbers with a unit, maths operators and symbols
/// (ASCII and Unicode), question marks (ASCII and fullwidth).
fn count_line(b: &[u8]) -> LineCounts {
    let mut c = LineCounts::default();
    let mut i = 0;
    while i < b.len() {
        let ch = b[i];
        // Most bytes (letters, spaces) count for nothing: one table load settles them.
        if !SHAPE_BYTES[usize::from(ch)] {
            i += 1;
            continue;
        }
        if ch.is_ascii_digit() {
            c.numbers += 1;
            while i < b.len() && (b[i].is_ascii_digit() || matches!(b[i], b'.' | b',')) {
                i += 1;
            }
            let mut j = i;
            while j < b.len() && b[j] == b' ' {
                j += 1;
            }
            let mut k = j;
            while k < b.len() && !b[k].is_ascii_whitespace() && !b",.;:)?!".contains(&b[k]) {
                k += 1;
            }
            let unit = &b[j..k];
            if !unit.is_empty()
                && UNITS
                    .iter()
                    .any(|u| unit.eq_ignore_ascii_case(u.as_bytes()))
            {
                c.quantities += 1;
            }
            continue;
        }
        match ch {
            b'=' | b'^' | b'+' | b'*' | b'<' | b'>' => c.math += 1,
            b'?' => c.questions += 1,
            // Non-ASCII, matched on UTF-8 bytes (a lead byte is never a continuation byte,
            // so no decoding is needed): the fullwidth question mark of CJK text (U+FF1F),
            // maths operators U+2200..U+22FF, superscripts ² ³, π, × and ÷.
            0xC2 | 0xC3 | 0xCF | 0xE2 | 0xEF => match (ch, b.get(i + 1).copied().unwrap_or(0)) {
                (0xEF, 0xBC) if b.get(i + 2) == Some(&0x9F) => c.questions += 1,
                (0xE2, 0x88..=0x8B) | (0xC2, 0xB2 | 0xB3) | (0xCF, 0x80) | (0xC3, 0x97 | 0xB7) => {
                    c.math += 1;
                }
                _ => {}
            },
            _ => {}
        }
        i += 1;
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_in_any_language_count() {
        let c = count_line("Un tren va a 80 km/h durante 2,5 h y gasta 12 €.".as_bytes());
        assert_eq!((c.numbers, c.quantities), (3, 3));
        let c = count_line(b"x = 3, y = 4");
        assert_eq!((c.numbers, c.quantities, c.math), (2, 0, 2));
    }

    #[test]
    fn unicode_maths_and_fullwidth_questions_count_and_other_symbols_do_not() {
        let c = count_line("x² ≤ π × 3 ÷ 2 ∑ — é 证明吗？".as_bytes());
        assert_eq!((c.numbers, c.math, c.questions), (2, 6, 1));
        let c = count_line("³√8 ∀x — Café, naïve?".as_bytes());
        assert_eq!((c.numbers, c.math, c.questions), (1, 3, 1));
    }
}
