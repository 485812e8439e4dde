//! A one-pass look at the shape of a JSON body before it is parsed into a tree.
//!
//! A parsed `serde_json::Value` costs 30-100 bytes per value whatever the text spent on it,
//! so `[1,1,1,...]` grows ~40x when parsed (issue 10: ten 3.9 MB bodies, 2.15 GB RSS).
//! Counting the values and the nesting first, with no allocation, lets the body layer refuse
//! such a body with 400 before it costs anything beyond its own bytes.

/// What the scan found: the deepest nesting and (about) how many values the tree would hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub depth: usize,
    /// Containers, object entries and array elements: an upper bound on the tree's values,
    /// within a factor of two (keys count with their entry).
    pub values: usize,
}

/// Scans `bytes` as JSON text. Not a validator: malformed JSON is left to the parser, which
/// reports it better; the counts only have to bound the parser's work.
pub fn scan(bytes: &[u8]) -> Shape {
    let (mut depth, mut deepest, mut values) = (0usize, 0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    let mut seen_any = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth = depth.saturating_add(1);
                deepest = deepest.max(depth);
                values = values.saturating_add(1);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            // Every element after a container's first has a comma, every entry a colon.
            b',' | b':' => values = values.saturating_add(1),
            b' ' | b'\n' | b'\r' | b'\t' => continue,
            _ => {}
        }
        seen_any = true;
    }
    // A lone scalar, or the first element of each container, is not counted above: one per
    // container at most, so the bound stays within a factor of two.
    if seen_any {
        values = values.saturating_add(1);
    }
    Shape {
        depth: deepest,
        values,
    }
}

/// How many values a body may make: one per 32 bytes of the body limit (a tree of about
/// 3x the limit at worst), and never fewer than 16,384 so small limits stay usable.
pub fn value_budget(max_body_bytes: usize) -> usize {
    (max_body_bytes / 32).max(16_384)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_nesting_outside_strings_only() {
        assert_eq!(scan(br#"{"a":[1,[2,{"b":3}]]}"#).depth, 4);
        assert_eq!(scan(br#"{"a":"[[[[{{{{\"]]]"}"#).depth, 1);
        assert_eq!(scan(br#"{"a":"\\","b":[[1]]}"#).depth, 3);
        assert_eq!(scan(b"").depth, 0);
    }

    #[test]
    fn counts_values_within_a_factor_of_two() {
        let shape = scan(br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#);
        // Real count: object, 2 keys+values, array, object, 2 keys+values = 9 trees nodes.
        assert!((5..=18).contains(&shape.values), "{shape:?}");
        let big = format!("[{}1]", "1,".repeat(100_000));
        let shape = scan(big.as_bytes());
        assert!((100_001..=200_002).contains(&shape.values), "{shape:?}");
        // Commas inside strings are text, not elements.
        assert!(scan(format!("[\"{}\"]", ",".repeat(1000)).as_bytes()).values < 5);
    }

    #[test]
    fn the_budget_is_proportional_to_the_limit_with_a_floor() {
        assert_eq!(value_budget(4 * 1024 * 1024), 131_072);
        assert_eq!(value_budget(1024), 16_384);
    }
}
