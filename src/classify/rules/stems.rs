//! The matcher behind `lexicon`: a byte trie of the stems, walked only from the positions
//! where a stem may start.
//!
//! It reports what an unanchored Aho-Corasick overlapping scan reports (every occurrence of
//! every stem), in the same order, but costs far less on the common input, English prose:
//! an automaton steps through every byte of the text, while most bytes here are either not
//! the first byte of any stem or sit inside a word, where only CJK stems may start (an
//! alphabetic or Hangul stem must start a word). From a candidate position the walk
//! follows the text down the trie until no edge matches, usually after one or two bytes.
//!
//! Order: an overlapping scan reports matches by end position, and at one end longest
//! first (a state's own stems before those inherited through its failure link), ties by
//! pattern id. The walk instead finds them by start, so each match gets that order's key
//! `(end, start, pattern)` and the caller keeps, per group, the smallest key.

/// A trie node: its outgoing edges and the patterns that end here, as ranges of `Stems`'
/// flat arrays. Deep nodes have one or two edges, searched linearly; the others (near the
/// root, where every English word passes) also get a row of `dense`, well under 1 MB in all.
#[derive(Clone, Copy, Default)]
struct Node {
    edges: (u32, u32),
    ends: (u32, u32),
    /// 1 + the index of the node's row in `dense`, or 0 for none.
    dense: u32,
}

/// Nodes with more edges than this get a dense row (256 entries).
const DENSE_EDGES: usize = 2;

/// `Stems::entry` bits: the node reached from the root (0: no stem starts with the byte)...
const NODE: u32 = (1 << 30) - 1;
/// ...whether a stem that may start inside a word (a CJK one) starts with the byte...
const ANYWHERE: u32 = 1 << 30;
/// ...and whether the byte is an ASCII letter or digit.
const ALNUM: u32 = 1 << 31;

pub(super) struct Stems {
    /// Per byte: `NODE`, `ANYWHERE` and `ALNUM` bits.
    entry: [u32; 256],
    nodes: Vec<Node>,
    edges: Vec<(u8, u32)>,
    ends: Vec<u32>,
    /// Next node by byte (0: none) for nodes with many edges.
    dense: Vec<[u32; 256]>,
}

/// One occurrence of a stem.
pub(super) struct Found {
    pub(super) pattern: u32,
    pub(super) start: usize,
    pub(super) end: usize,
    /// Whether `start` starts a word (`starts_word`): a stem that must start one does not
    /// occur where this is false.
    pub(super) at_word: bool,
}

impl Stems {
    /// `patterns` in pattern-id order: the stem and whether it must start a word.
    pub(super) fn new<'p>(patterns: impl IntoIterator<Item = (&'p str, bool)>) -> Stems {
        // Built with a child list per node, then flattened.
        let mut children: Vec<Vec<(u8, u32)>> = vec![Vec::new()];
        let mut ends: Vec<Vec<u32>> = vec![Vec::new()];
        let mut anywhere = [false; 256];
        for (id, (stem, boundary)) in patterns.into_iter().enumerate() {
            let bytes = stem.as_bytes();
            let Some(&first) = bytes.first() else {
                continue;
            };
            anywhere[usize::from(first)] |= !boundary;
            let mut node = 0usize;
            for &b in bytes {
                node = match children[node].iter().find(|e| e.0 == b) {
                    Some(&(_, next)) => next as usize,
                    None => {
                        let next = children.len();
                        children.push(Vec::new());
                        ends.push(Vec::new());
                        children[node].push((b, next as u32));
                        next
                    }
                };
            }
            ends[node].push(id as u32);
        }
        let mut entry = [0u32; 256];
        for (b, e) in entry.iter_mut().enumerate() {
            if anywhere[b] {
                *e |= ANYWHERE;
            }
            if (b as u8).is_ascii_alphanumeric() {
                *e |= ALNUM;
            }
        }
        for &(b, next) in &children[0] {
            assert!(next <= NODE, "the trie fits the entry bits");
            entry[usize::from(b)] |= next;
        }
        let mut stems = Stems {
            entry,
            nodes: Vec::with_capacity(children.len()),
            edges: Vec::new(),
            ends: Vec::new(),
            dense: Vec::new(),
        };
        for (edges, matched) in children.iter().zip(&ends) {
            let (e, m) = (stems.edges.len() as u32, stems.ends.len() as u32);
            stems.edges.extend_from_slice(edges);
            stems.ends.extend_from_slice(matched);
            let mut dense = 0;
            if edges.len() > DENSE_EDGES {
                let mut row = [0u32; 256];
                for &(b, next) in edges {
                    row[usize::from(b)] = next;
                }
                stems.dense.push(row);
                dense = stems.dense.len() as u32;
            }
            stems.nodes.push(Node {
                edges: (e, stems.edges.len() as u32),
                ends: (m, stems.ends.len() as u32),
                dense,
            });
        }
        stems
    }

    /// Memory held, in bytes.
    #[cfg(test)]
    pub(super) fn memory_usage(&self) -> usize {
        std::mem::size_of::<Stems>()
            + self.nodes.len() * std::mem::size_of::<Node>()
            + self.edges.len() * std::mem::size_of::<(u8, u32)>()
            + self.ends.len() * 4
            + self.dense.len() * std::mem::size_of::<[u32; 256]>()
    }

    /// Calls `found` with every occurrence of every stem in `text`, by start then end,
    /// except at positions inside a word where no stem may start.
    pub(super) fn scan(&self, text: &[u8], mut found: impl FnMut(Found)) {
        let mut from = 0;
        let mut inside = false;
        while let Some((start, was_inside)) = candidate(&self.entry, text, from, inside) {
            from = start + 1;
            let entry = self.entry[usize::from(text[start])];
            inside = entry & ALNUM != 0;
            let at_word = !was_inside && starts_word(text, start);
            if !at_word && entry & ANYWHERE == 0 {
                continue;
            }
            let mut node = (entry & NODE) as usize;
            let mut end = start + 1;
            loop {
                let n = self.nodes[node];
                for &pattern in &self.ends[n.ends.0 as usize..n.ends.1 as usize] {
                    found(Found {
                        pattern,
                        start,
                        end,
                        at_word,
                    });
                }
                let Some(&b) = text.get(end) else { break };
                let next = if n.dense != 0 {
                    self.dense[n.dense as usize - 1][usize::from(b)]
                } else {
                    let edges = &self.edges[n.edges.0 as usize..n.edges.1 as usize];
                    edges.iter().find(|e| e.0 == b).map_or(0, |e| e.1)
                };
                if next == 0 {
                    break;
                }
                node = next as usize;
                end += 1;
            }
        }
    }
}

/// The first position from `from` where a stem may start, and whether the byte before it is
/// an ASCII letter or digit (`inside` says so for `from`). `inside` settles most positions,
/// with the root edge, from one table load per byte. A function of its own, so this loop
/// over every byte keeps its few values in registers.
#[inline(never)]
fn candidate(
    entry: &[u32; 256],
    text: &[u8],
    from: usize,
    mut inside: bool,
) -> Option<(usize, bool)> {
    for (at, &b) in text.iter().enumerate().skip(from) {
        let e = entry[usize::from(b)];
        if e & NODE != 0 && (!inside || e & ANYWHERE != 0) {
            return Some((at, inside));
        }
        inside = e & ALNUM != 0;
    }
    None
}

/// Whether the character before `at` is not a letter or digit.
#[inline(always)]
pub(super) fn starts_word(text: &[u8], at: usize) -> bool {
    if at == 0 {
        return true;
    }
    let before = text[at - 1];
    if before < 0x80 {
        return !before.is_ascii_alphanumeric();
    }
    after_non_ascii(text, at)
}

/// `starts_word` when the byte before `at` is not ASCII: decodes the character it ends.
fn after_non_ascii(text: &[u8], at: usize) -> bool {
    let mut start = at - 1;
    while start > 0 && text[start] & 0xC0 == 0x80 {
        start -= 1;
    }
    match std::str::from_utf8(&text[start..at]) {
        Ok(s) => !s.chars().any(char::is_alphanumeric),
        Err(_) => true,
    }
}
