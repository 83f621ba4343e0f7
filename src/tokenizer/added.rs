//! Added tokens (special and user-defined) found in the text, the way Hugging Face's
//! `AddedVocabulary` finds them: first the tokens with `normalized: false` are split out of
//! the raw text, then the tokens with `normalized: true` out of the remaining pieces (the
//! DeepSeek normalizers are empty, so "normalized" text is the text itself). In each pass the
//! leftmost occurrence wins, the longest one at that position (Aho-Corasick leftmost-longest),
//! and the search resumes after it.

/// One added token, with the flags of tokenizer.json's `added_tokens`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddedToken {
    pub id: u32,
    pub content: String,
    /// Control token (HF `special: true`).
    pub special: bool,
    pub single_word: bool,
    pub lstrip: bool,
    pub rstrip: bool,
    pub normalized: bool,
}

/// A byte trie over the contents of one pass's tokens.
#[derive(Default)]
struct Trie {
    /// Root children by first byte.
    root: Vec<u32>, // 256 entries, 0 = none (node 0 is the root itself)
    /// children of non-root nodes, sorted by byte
    children: Vec<Vec<(u8, u32)>>,
    /// token index terminating at each node
    term: Vec<Option<u32>>,
}

impl Trie {
    fn new() -> Self {
        Trie {
            root: vec![0; 256],
            children: vec![Vec::new()],
            term: vec![None],
        }
    }

    fn insert(&mut self, s: &[u8], tok: u32) {
        if s.is_empty() {
            return;
        }
        let mut node = {
            let b = s[0] as usize;
            if self.root[b] == 0 {
                self.root[b] = self.new_node();
            }
            self.root[b]
        };
        for &b in &s[1..] {
            let ch = &self.children[node as usize];
            node = match ch.binary_search_by_key(&b, |&(x, _)| x) {
                Ok(i) => ch[i].1,
                Err(i) => {
                    let n = self.new_node();
                    self.children[node as usize].insert(i, (b, n));
                    n
                }
            };
        }
        // First insertion wins on duplicate contents.
        if self.term[node as usize].is_none() {
            self.term[node as usize] = Some(tok);
        }
    }

    fn new_node(&mut self) -> u32 {
        self.children.push(Vec::new());
        self.term.push(None);
        (self.children.len() - 1) as u32
    }

    /// Longest token starting at `pos`: (end, token index).
    #[inline]
    fn longest_at(&self, text: &[u8], pos: usize) -> Option<(usize, u32)> {
        let mut node = self.root[text[pos] as usize];
        if node == 0 {
            return None;
        }
        let mut best = self.term[node as usize].map(|t| (pos + 1, t));
        for (i, &b) in text.iter().enumerate().skip(pos + 1) {
            let ch = &self.children[node as usize];
            match ch.binary_search_by_key(&b, |&(x, _)| x) {
                Ok(k) => node = ch[k].1,
                Err(_) => break,
            }
            if let Some(t) = self.term[node as usize] {
                best = Some((i + 1, t));
            }
        }
        best
    }
}

/// A piece of text after added-token splitting.
pub(crate) enum Piece<'a> {
    Token(u32),
    Text(&'a str),
}

pub(crate) struct AddedTokens {
    pub(crate) tokens: Vec<AddedToken>,
    raw: Trie,        // normalized == false
    normalized: Trie, // normalized == true
    any: bool,
}

/// `\w` of the `regex` crate (what HF uses for `single_word`): alphanumerics, marks,
/// connector punctuation, and the joiners.
fn is_word_char(c: char) -> bool {
    use unicode_general_category::{get_general_category, GeneralCategory as G};
    c.is_alphanumeric()
        || c == '\u{200c}'
        || c == '\u{200d}'
        || matches!(
            get_general_category(c),
            G::NonspacingMark | G::SpacingMark | G::EnclosingMark | G::ConnectorPunctuation
        )
}

impl AddedTokens {
    pub(crate) fn new(tokens: Vec<AddedToken>) -> Self {
        let mut raw = Trie::new();
        let mut normalized = Trie::new();
        for (i, t) in tokens.iter().enumerate() {
            if t.normalized {
                normalized.insert(t.content.as_bytes(), i as u32);
            } else {
                raw.insert(t.content.as_bytes(), i as u32);
            }
        }
        let any = tokens.iter().any(|t| !t.content.is_empty());
        AddedTokens {
            tokens,
            raw,
            normalized,
            any,
        }
    }

    /// Splits `text` into added tokens and plain text, in order.
    pub(crate) fn split<'a>(&self, text: &'a str, emit: &mut impl FnMut(Piece<'a>)) {
        if !self.any {
            if !text.is_empty() {
                emit(Piece::Text(text));
            }
            return;
        }
        self.split_pass(&self.raw, text, &mut |p| match p {
            Piece::Text(t) => self.split_pass(&self.normalized, t, emit),
            tok => emit(tok),
        });
    }

    fn split_pass<'a>(&self, trie: &Trie, text: &'a str, emit: &mut impl FnMut(Piece<'a>)) {
        let b = text.as_bytes();
        let mut start = 0; // start of pending plain text
        let mut pos = 0;
        while pos < b.len() {
            // skip to the next byte that can start a token
            match b[pos..].iter().position(|&x| trie.root[x as usize] != 0) {
                Some(k) => pos += k,
                None => break,
            }
            let Some((end, ti)) = trie.longest_at(b, pos) else {
                pos += 1;
                continue;
            };
            let tok = &self.tokens[ti as usize];
            let (mut s, mut e) = (pos, end);
            if tok.single_word {
                let before_ok =
                    !matches!(text[..s].chars().next_back(), Some(c) if is_word_char(c));
                let after_ok = !matches!(text[e..].chars().next(), Some(c) if is_word_char(c));
                if !(before_ok && after_ok) {
                    pos = end; // the occurrence is consumed but stays text, as in HF
                    continue;
                }
            }
            if tok.lstrip {
                let trimmed = text[..s].trim_end_matches(char::is_whitespace).len();
                s = trimmed.max(start);
            }
            if tok.rstrip {
                e = text.len() - text[e..].trim_start_matches(char::is_whitespace).len();
            }
            if start < s {
                emit(Piece::Text(&text[start..s]));
            }
            emit(Piece::Token(tok.id));
            start = e;
            pos = e;
        }
        if start < b.len() {
            emit(Piece::Text(&text[start..]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(id: u32, s: &str, normalized: bool) -> AddedToken {
        AddedToken {
            id,
            content: s.into(),
            special: true,
            single_word: false,
            lstrip: false,
            rstrip: false,
            normalized,
        }
    }

    fn run(a: &AddedTokens, s: &str) -> Vec<String> {
        let mut v = Vec::new();
        a.split(s, &mut |p| {
            v.push(match p {
                Piece::Token(id) => format!("#{id}"),
                Piece::Text(t) => t.to_string(),
            })
        });
        v
    }

    #[test]
    fn leftmost_longest_and_passes() {
        let a = AddedTokens::new(vec![
            tok(1, "<a>", false),
            tok(2, "<a><b>", false),
            tok(3, "b>", true),
        ]);
        assert_eq!(run(&a, "x<a><b>y"), ["x", "#2", "y"]);
        assert_eq!(run(&a, "x<a>b>y"), ["x", "#1", "#3", "y"]);
        assert_eq!(run(&a, "<a"), ["<a"]);
        // the raw pass runs first: "<a>" wins although "b>" ... no overlap here; check pass order
        let a = AddedTokens::new(vec![tok(1, "ab", true), tok(2, "bc", false)]);
        assert_eq!(run(&a, "abc"), ["a", "#2"]);
    }
}
