//! DeepSeek pre-tokenizers as hand-written scanners.
//!
//! Hugging Face `tokenizers` describes each pre-tokenizer as a `Sequence` of `Split` steps
//! (regexes run by Oniguruma, behaviour "Isolated": every match and every gap between matches
//! becomes its own piece; each step runs on every piece of the previous step), followed by
//! `ByteLevel` without its own regex. The scanners below reproduce those regexes exactly
//! (leftmost match, alternatives tried in order, Oniguruma's backtracking semantics) without a
//! regex engine; `\s+(?!\S)` included.
//!
//! The sequence is chosen from the tokenizer's own description: the exact regex strings of the
//! tokenizer.json `pre_tokenizer`, or the GGUF `tokenizer.ggml.pre` name. Anything else is an
//! error, never a guess.

use serde_json::Value;
use unicode_general_category::{get_general_category, GeneralCategory as G};

// ---------------------------------------------------------------------------------------------
// The recognised regex strings, exactly as they appear in DeepSeek's tokenizer.json files.
// Non-ASCII characters are written as escapes so that no editor can normalise them
// (U+212A KELVIN SIGN and U+2126 OHM SIGN would silently become K and Omega under NFC).

/// DeepSeek-LLM / V2 step 1.
pub(crate) const LLM_NEWLINE: &str = "[\r\n]";
/// DeepSeek-LLM / V2 step 2: Latin, Greek, Cyrillic, Armenian, Georgian... letter runs.
pub(crate) const LLM_LETTERS: &str = "\\s?[A-Za-z\u{b5}\u{c0}-\u{d6}\u{d8}-\u{f6}\u{f8}-\u{1ba}\u{1bc}-\u{1bf}\u{1c4}-\u{293}\u{295}-\u{2af}\u{370}-\u{373}\u{376}\u{377}\u{37b}-\u{37d}\u{37f}\u{386}\u{388}-\u{38a}\u{38c}\u{38e}-\u{3a1}\u{3a3}-\u{3f5}\u{3f7}-\u{481}\u{48a}-\u{52f}\u{531}-\u{556}\u{10a0}-\u{10c5}\u{13a0}-\u{13f5}\u{13f8}-\u{13fd}\u{1c90}-\u{1cba}\u{1cbd}-\u{1cbf}\u{1d00}-\u{1d2b}\u{1d6b}-\u{1d77}\u{1d79}-\u{1d9a}\u{1e00}-\u{1f15}\u{1f18}-\u{1f1d}\u{1f20}-\u{1f45}\u{1f48}-\u{1f4d}\u{1f50}-\u{1f57}\u{1f59}\u{1f5b}\u{1f5d}\u{1f5f}-\u{1f7d}\u{1f80}-\u{1fb4}\u{1fb6}-\u{1fbc}\u{1fbe}\u{1fc2}-\u{1fc4}\u{1fc6}-\u{1fcc}\u{1fd0}-\u{1fd3}\u{1fd6}-\u{1fdb}\u{1fe0}-\u{1fec}\u{1ff2}-\u{1ff4}\u{1ff6}-\u{1ffc}\u{2102}\u{2107}\u{210a}-\u{2113}\u{2115}\u{2119}-\u{211d}\u{2124}\u{2126}\u{2128}\u{212a}-\u{212d}\u{212f}-\u{2134}\u{2139}\u{213c}-\u{213f}\u{2145}-\u{2149}\u{214e}\u{2183}\u{2184}\u{2c00}-\u{2c7b}\u{2c7e}-\u{2ce4}\u{2ceb}-\u{2cee}\u{2cf2}\u{2cf3}\u{a640}-\u{a66d}\u{a680}-\u{a69b}\u{a722}-\u{a76f}\u{a771}-\u{a787}\u{a78b}-\u{a78e}\u{ab70}-\u{abbf}\u{fb00}-\u{fb06}\u{fb13}-\u{fb17}\u{ff21}-\u{ff3a}\u{ff41}-\u{ff5a}\u{10400}-\u{1044f}\u{104b0}-\u{104d3}\u{104d8}-\u{104fb}\u{10c80}-\u{10cb2}\u{10cc0}-\u{10cf2}\u{118a0}-\u{118df}\u{1e900}-\u{1e943}]+";
/// DeepSeek-LLM / V2 step 3: ASCII punctuation (the range `:-~` includes the ASCII letters),
/// full-width forms, curly quotes, ideographic space and full stop.
pub(crate) const LLM_PUNCT: &str =
    "\\s?[!-/:-~\u{ff01}-\u{ff0f}\u{ff1a}-\u{ff5e}\u{2018}-\u{201f}\u{3000}-\u{3002}]+";
/// DeepSeek-LLM / V2 step 4.
pub(crate) const LLM_TRAILING_SPACE: &str = "\\s+$";
/// DeepSeek-LLM / V2 step 5 (note: U+0800..U+4E00 is one range; it covers Indic scripts,
/// Thai, kana, the general punctuation block, U+3000...).
pub(crate) const LLM_CJK: &str = "[\u{4e00}-\u{9fa5}\u{800}-\u{4e00}\u{ac00}-\u{d7ff}]+";
// Step 6 is `Digits { individual_digits: true }`, step 7 ByteLevel.

/// DeepSeek-V3 / R1 / V4 step 1.
pub(crate) const V3_DIGITS: &str = "\\p{N}{1,3}";
/// DeepSeek-V3 step 2: CJK unified ideographs (to U+9FA5), hiragana, katakana.
pub(crate) const V3_CJK: &str = "[\u{4e00}-\u{9fa5}\u{3040}-\u{309f}\u{30a0}-\u{30ff}]+";
/// DeepSeek-V3 step 3, the main regex.
pub(crate) const V3_MAIN: &str = "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+";

// ---------------------------------------------------------------------------------------------
// Character classes.

const C_L: u8 = 1; // \p{L}
const C_M: u8 = 2; // \p{M}
const C_N: u8 = 4; // \p{N}
const C_PS: u8 = 8; // \p{P} or \p{S}
const C_WS: u8 = 16; // \s as Oniguruma defines it: U+0009..U+000D, U+0085, Zs, Zl, Zp
const C_NL: u8 = 32; // \r or \n

const fn ascii_class(b: u8) -> u8 {
    match b {
        b'\r' | b'\n' => C_WS | C_NL,
        b'\t' | 0x0b | 0x0c | b' ' => C_WS,
        b'A'..=b'Z' | b'a'..=b'z' => C_L,
        b'0'..=b'9' => C_N,
        // All of ASCII's printable non-alphanumerics are Unicode P* or S*.
        0x21..=0x2f | 0x3a..=0x40 | 0x5b..=0x60 | 0x7b..=0x7e => C_PS,
        _ => 0,
    }
}

static ASCII_CLASS: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut i = 0;
    while i < 128 {
        t[i] = ascii_class(i as u8);
        i += 1;
    }
    t
};

#[inline]
fn class(c: char) -> u8 {
    let u = c as u32;
    if u < 128 {
        return ASCII_CLASS[u as usize];
    }
    if u == 0x85 {
        return C_WS;
    }
    match get_general_category(c) {
        G::UppercaseLetter
        | G::LowercaseLetter
        | G::TitlecaseLetter
        | G::ModifierLetter
        | G::OtherLetter => C_L,
        G::NonspacingMark | G::SpacingMark | G::EnclosingMark => C_M,
        G::DecimalNumber | G::LetterNumber | G::OtherNumber => C_N,
        G::ConnectorPunctuation
        | G::DashPunctuation
        | G::OpenPunctuation
        | G::ClosePunctuation
        | G::InitialPunctuation
        | G::FinalPunctuation
        | G::OtherPunctuation
        | G::MathSymbol
        | G::CurrencySymbol
        | G::ModifierSymbol
        | G::OtherSymbol => C_PS,
        G::SpaceSeparator | G::LineSeparator | G::ParagraphSeparator => C_WS,
        _ => 0,
    }
}

#[inline]
fn is_ws(c: char) -> bool {
    class(c) & C_WS != 0
}

/// A bracketed character class (`[...]`) of literal characters and ranges, parsed from the
/// regex text itself so that the tables are exactly the tokenizer's.
#[derive(Clone, Debug)]
pub(crate) struct CharSet {
    ascii: u128,
    ranges: Vec<(u32, u32)>, // sorted, merged, all >= 128
}

impl CharSet {
    /// Parses `[...]`: literal characters, `a-b` ranges, `\x` escapes for a literal x
    /// (`\r`, `\n`, `\t` for control characters). No negation, no nested classes.
    fn parse(class: &str) -> Option<CharSet> {
        let inner = class.strip_prefix('[')?.strip_suffix(']')?;
        if inner.starts_with('^') {
            return None;
        }
        let mut ranges: Vec<(u32, u32)> = Vec::new();
        let raw: Vec<(char, bool)> = {
            // (char, was_escaped)
            let mut v = Vec::new();
            let mut it = inner.chars();
            while let Some(c) = it.next() {
                if c == '\\' {
                    let e = it.next()?;
                    let e = match e {
                        'r' => '\r',
                        'n' => '\n',
                        't' => '\t',
                        e => e,
                    };
                    v.push((e, true));
                } else {
                    v.push((c, false));
                }
            }
            v
        };
        let mut i = 0;
        while i < raw.len() {
            let (a, _) = raw[i];
            if i + 2 < raw.len() && raw[i + 1] == ('-', false) {
                let (b, _) = raw[i + 2];
                if (b as u32) < (a as u32) {
                    return None;
                }
                ranges.push((a as u32, b as u32));
                i += 3;
            } else {
                ranges.push((a as u32, a as u32));
                i += 1;
            }
        }
        let mut ascii = 0u128;
        let mut hi: Vec<(u32, u32)> = Vec::new();
        for (a, b) in ranges {
            for u in a..=b.min(127) {
                ascii |= 1u128 << u;
            }
            if b >= 128 {
                hi.push((a.max(128), b));
            }
        }
        hi.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::new();
        for (a, b) in hi {
            match merged.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        Some(CharSet {
            ascii,
            ranges: merged,
        })
    }

    #[inline]
    fn contains(&self, c: char) -> bool {
        let u = c as u32;
        if u < 128 {
            return self.ascii >> u & 1 != 0;
        }
        // Binary search for the last range starting at or before u.
        let idx = self.ranges.partition_point(|&(a, _)| a <= u);
        idx > 0 && u <= self.ranges[idx - 1].1
    }
}

/// Strips `\s?` and `+` around a bracketed class and parses it.
fn parse_class_run(re: &str, optional_space: bool) -> CharSet {
    let mut s = re;
    if optional_space {
        s = s.strip_prefix("\\s?").expect("built-in regex");
    }
    let s = s.strip_suffix('+').expect("built-in regex");
    CharSet::parse(s).expect("built-in regex")
}

// ---------------------------------------------------------------------------------------------
// Scanning helpers.

#[inline]
fn char_at(s: &str, i: usize) -> Option<char> {
    s[i..].chars().next()
}

#[inline]
fn utf8_len(b: u8) -> usize {
    match b {
        0..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// End of the run of characters satisfying `f`, starting at byte `i`.
#[inline]
fn run_end(s: &str, i: usize, f: impl Fn(char) -> bool) -> usize {
    match s[i..].char_indices().find(|&(_, c)| !f(c)) {
        Some((off, _)) => i + off,
        None => s.len(),
    }
}

/// `Split(behavior = Isolated, invert = false)`: every match of `at` (leftmost, non-empty) and
/// every non-empty gap between matches is emitted, in order.
#[inline]
fn split_isolated<'a>(
    s: &'a str,
    at: impl Fn(&str, usize) -> Option<usize>,
    mut emit: impl FnMut(&'a str),
) {
    let bytes = s.as_bytes();
    let mut gap = 0;
    let mut i = 0;
    while i < s.len() {
        if let Some(end) = at(s, i) {
            debug_assert!(end > i);
            if gap < i {
                emit(&s[gap..i]);
            }
            emit(&s[i..end]);
            i = end;
            gap = end;
        } else {
            i += utf8_len(bytes[i]);
        }
    }
    if gap < s.len() {
        emit(&s[gap..]);
    }
}

// ---------------------------------------------------------------------------------------------
// DeepSeek-V3 matchers.

/// `\p{N}{1,3}`
#[inline]
fn v3_digits_at(s: &str, i: usize) -> Option<usize> {
    let mut end = i;
    for c in s[i..].chars().take(3) {
        if class(c) & C_N == 0 {
            break;
        }
        end += c.len_utf8();
    }
    (end > i).then_some(end)
}

#[inline]
fn v3_cjk(c: char) -> bool {
    matches!(c as u32, 0x4e00..=0x9fa5 | 0x3040..=0x309f | 0x30a0..=0x30ff)
}

/// `[一-龥぀-ゟ゠-ヿ]+`
#[inline]
fn v3_cjk_at(s: &str, i: usize) -> Option<usize> {
    let b = s.as_bytes()[i];
    if !(0xe3..=0xe9).contains(&b) {
        return None; // all three ranges encode with lead byte E3..E9
    }
    let end = run_end(s, i, v3_cjk);
    (end > i).then_some(end)
}

/// The V3 main regex, alternatives in order:
/// 1. `[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+`
/// 2. `[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+`
/// 3. ` ?[\p{P}\p{S}]+[\r\n]*`
/// 4. `\s*[\r\n]+`
/// 5. `\s+(?!\S)`
/// 6. `\s+`
#[inline]
fn v3_main_at(s: &str, i: usize) -> Option<usize> {
    let c0 = char_at(s, i)?;
    let k0 = class(c0);
    let i1 = i + c0.len_utf8();
    let c1 = char_at(s, i1);
    let k1 = c1.map_or(0, class);
    // 1
    if c0.is_ascii_punctuation() && c1.is_some_and(|c| c.is_ascii_alphabetic()) {
        return Some(run_end(s, i1, |c| c.is_ascii_alphabetic()));
    }
    // 2: the optional prefix is tried first (greedy), then without it.
    if k0 & (C_L | C_PS | C_NL) == 0 && k1 & (C_L | C_M) != 0 {
        return Some(run_end(s, i1, |c| class(c) & (C_L | C_M) != 0));
    }
    if k0 & (C_L | C_M) != 0 {
        return Some(run_end(s, i1, |c| class(c) & (C_L | C_M) != 0));
    }
    // 3
    let ps_start = if c0 == ' ' && k1 & C_PS != 0 {
        Some(i1)
    } else if k0 & C_PS != 0 {
        Some(i)
    } else {
        None
    };
    if let Some(p) = ps_start {
        let e = run_end(s, p, |c| class(c) & C_PS != 0);
        return Some(run_end(s, e, |c| c == '\r' || c == '\n'));
    }
    // 4, 5, 6
    if k0 & C_WS != 0 {
        let mut end = i;
        let mut last_start = i;
        let mut n = 0usize;
        let mut nl_end = None;
        for (off, c) in s[i..].char_indices() {
            let k = class(c);
            if k & C_WS == 0 {
                break;
            }
            last_start = i + off;
            end = last_start + c.len_utf8();
            n += 1;
            if k & C_NL != 0 {
                nl_end = Some(end);
            }
        }
        // 4: `\s*` backtracks to the last \r or \n of the run, `[\r\n]+` takes it.
        if let Some(e) = nl_end {
            return Some(e);
        }
        // 5: the whole run if nothing follows it, else all but its last character;
        // 6: a single whitespace character before a non-space.
        if end == s.len() || n == 1 {
            return Some(end);
        }
        return Some(last_start);
    }
    None
}

// ---------------------------------------------------------------------------------------------
// The pre-tokenizers.

/// Which pre-tokenizer a tokenizer uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreTokenizerKind {
    /// DeepSeek-LLM, DeepSeek-V2 / V2-Lite, DeepSeek-Coder-V2 (GGUF pre "deepseek-llm").
    DeepSeekLlm,
    /// DeepSeek-V3, R1, V4 (GGUF pre "deepseek-v3").
    DeepSeekV3,
}

impl PreTokenizerKind {
    /// The llama.cpp `tokenizer.ggml.pre` name.
    pub fn gguf_name(self) -> &'static str {
        match self {
            PreTokenizerKind::DeepSeekLlm => "deepseek-llm",
            PreTokenizerKind::DeepSeekV3 => "deepseek-v3",
        }
    }

    /// From a GGUF `tokenizer.ggml.pre` value. "joyai-llm" is what llama.cpp's converter
    /// writes for the V3 tokenizer under transformers 5.x (same regex as deepseek-v3).
    pub fn from_gguf_name(name: &str) -> Option<Self> {
        match name {
            "deepseek-llm" => Some(PreTokenizerKind::DeepSeekLlm),
            "deepseek-v3" | "joyai-llm" => Some(PreTokenizerKind::DeepSeekV3),
            _ => None,
        }
    }

    /// Recognises the tokenizer.json `pre_tokenizer` value. The error names what differs.
    pub(crate) fn from_hf_json(v: &Value) -> std::result::Result<Self, String> {
        let steps = match (v.get("type").and_then(Value::as_str), v.get("pretokenizers")) {
            (Some("Sequence"), Some(Value::Array(a))) => a,
            _ => {
                return Err(format!(
                    "unrecognised pre_tokenizer {} (moela knows the DeepSeek-LLM/V2 and DeepSeek-V3 Split sequences)",
                    short_json(v)
                ))
            }
        };
        let llm = [
            Step::Split(LLM_NEWLINE),
            Step::Split(LLM_LETTERS),
            Step::Split(LLM_PUNCT),
            Step::Split(LLM_TRAILING_SPACE),
            Step::Split(LLM_CJK),
            Step::Digits,
            Step::ByteLevel,
        ];
        let v3 = [
            Step::Split(V3_DIGITS),
            Step::Split(V3_CJK),
            Step::Split(V3_MAIN),
            Step::ByteLevel,
        ];
        let mut why = Vec::new();
        for (kind, expected) in [
            (PreTokenizerKind::DeepSeekV3, &v3[..]),
            (PreTokenizerKind::DeepSeekLlm, &llm[..]),
        ] {
            match match_steps(steps, expected) {
                Ok(()) => return Ok(kind),
                Err(e) => why.push(format!("not {}: {e}", kind.gguf_name())),
            }
        }
        Err(format!("unrecognised pre_tokenizer ({})", why.join("; ")))
    }

    pub(crate) fn build(self) -> PreTokenizer {
        match self {
            PreTokenizerKind::DeepSeekLlm => PreTokenizer::Llm(Box::new(LlmSets {
                letters: parse_class_run(LLM_LETTERS, true),
                punct: parse_class_run(LLM_PUNCT, true),
                cjk: parse_class_run(LLM_CJK, false),
            })),
            PreTokenizerKind::DeepSeekV3 => PreTokenizer::V3,
        }
    }
}

enum Step {
    Split(&'static str),
    Digits,
    ByteLevel,
}

fn short_json(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 200 {
        format!("{}...", s.chars().take(200).collect::<String>())
    } else {
        s
    }
}

fn match_steps(steps: &[Value], expected: &[Step]) -> std::result::Result<(), String> {
    if steps.len() != expected.len() {
        return Err(format!(
            "{} steps, expected {}",
            steps.len(),
            expected.len()
        ));
    }
    for (n, (got, want)) in steps.iter().zip(expected).enumerate() {
        let ty = got.get("type").and_then(Value::as_str).unwrap_or("");
        let ok = match want {
            Step::Split(re) => {
                ty == "Split"
                    && got.pointer("/pattern/Regex").and_then(Value::as_str) == Some(*re)
                    && got.get("behavior").and_then(Value::as_str) == Some("Isolated")
                    && got.get("invert").and_then(Value::as_bool) == Some(false)
            }
            Step::Digits => {
                ty == "Digits"
                    && got.get("individual_digits").and_then(Value::as_bool) == Some(true)
            }
            Step::ByteLevel => {
                ty == "ByteLevel"
                    && got.get("add_prefix_space").and_then(Value::as_bool) == Some(false)
                    && got.get("use_regex").and_then(Value::as_bool) == Some(false)
            }
        };
        if !ok {
            return Err(format!("step {n} is {}", short_json(got)));
        }
    }
    Ok(())
}

pub(crate) struct LlmSets {
    letters: CharSet,
    punct: CharSet,
    cjk: CharSet,
}

pub(crate) enum PreTokenizer {
    Llm(Box<LlmSets>),
    V3,
}

impl PreTokenizer {
    /// Splits `text` into pre-tokens (before the byte-level mapping), in order.
    pub(crate) fn split<'a>(&self, text: &'a str, emit: &mut impl FnMut(&'a str)) {
        match self {
            PreTokenizer::V3 => split_isolated(text, v3_digits_at, |a| {
                split_isolated(a, v3_cjk_at, |b| split_isolated(b, v3_main_at, &mut *emit))
            }),
            PreTokenizer::Llm(sets) => llm_split(sets, text, emit),
        }
    }
}

fn llm_split<'a>(sets: &LlmSets, text: &'a str, emit: &mut impl FnMut(&'a str)) {
    // 1. [\r\n]
    let newline_at = |s: &str, i: usize| {
        let b = s.as_bytes()[i];
        (b == b'\r' || b == b'\n').then_some(i + 1)
    };
    // 2./3. \s?[class]+
    let class_at = |set: &CharSet, s: &str, i: usize| -> Option<usize> {
        let c0 = char_at(s, i)?;
        let i1 = i + c0.len_utf8();
        if is_ws(c0) && char_at(s, i1).is_some_and(|c| set.contains(c)) {
            return Some(run_end(s, i1, |c| set.contains(c)));
        }
        if set.contains(c0) {
            return Some(run_end(s, i1, |c| set.contains(c)));
        }
        None
    };
    let letters_at = |s: &str, i: usize| class_at(&sets.letters, s, i);
    let punct_at = |s: &str, i: usize| class_at(&sets.punct, s, i);
    let cjk_at = |s: &str, i: usize| {
        let end = run_end(s, i, |c| sets.cjk.contains(c));
        (end > i).then_some(end)
    };
    // 6. Digits(individual_digits): every numeric character alone.
    let digit_at = |s: &str, i: usize| {
        let c = char_at(s, i)?;
        (class(c) & C_N != 0).then_some(i + c.len_utf8())
    };
    split_isolated(text, newline_at, |a| {
        split_isolated(a, letters_at, |b| {
            split_isolated(b, punct_at, |c| {
                // 4. \s+$ : the trailing whitespace run of the piece (no piece holds a \n
                // here except the lone "\n" pieces, so `$` is the end of the piece).
                let t = trailing_ws_start(c);
                let mut rest = |d: &'a str| {
                    split_isolated(d, cjk_at, |e| split_isolated(e, digit_at, &mut *emit))
                };
                if t > 0 && t < c.len() {
                    rest(&c[..t]);
                    rest(&c[t..]);
                } else {
                    rest(c);
                }
            })
        })
    });
}

fn trailing_ws_start(s: &str) -> usize {
    let mut t = s.len();
    for (i, c) in s.char_indices().rev() {
        if !is_ws(c) {
            break;
        }
        t = i;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(p: &PreTokenizer, s: &str) -> Vec<String> {
        let mut v = Vec::new();
        p.split(s, &mut |x: &str| v.push(x.to_string()));
        v
    }

    #[test]
    fn v3_basic() {
        let p = PreTokenizerKind::DeepSeekV3.build();
        assert_eq!(pieces(&p, "Hello world"), ["Hello", " world"]);
        assert_eq!(pieces(&p, "12345"), ["123", "45"]);
        assert_eq!(pieces(&p, "a   b"), ["a", "  ", " b"]);
        assert_eq!(pieces(&p, "a  \n\n b"), ["a", "  \n\n", " b"]);
        assert_eq!(pieces(&p, "x  "), ["x", "  "]);
        assert_eq!(pieces(&p, "don't"), ["don", "'t"]);
        assert_eq!(pieces(&p, "日本語です"), ["日本語です"]);
        assert_eq!(pieces(&p, "a.\n\nb"), ["a", ".\n\n", "b"]);
        assert_eq!(pieces(&p, "\tfoo"), ["\tfoo"]);
    }

    #[test]
    fn llm_basic() {
        let p = PreTokenizerKind::DeepSeekLlm.build();
        assert_eq!(pieces(&p, "Hello world"), ["Hello", " world"]);
        assert_eq!(pieces(&p, "x12"), ["x", "1", "2"]);
        assert_eq!(pieces(&p, "a\r\nb  "), ["a", "\r", "\n", "b", "  "]);
    }

    #[test]
    fn charset_parse() {
        let s = CharSet::parse("[!-/:-~\u{ff01}-\u{ff0f}]").unwrap();
        assert!(s.contains('!') && s.contains('a') && s.contains('~') && !s.contains('0'));
        assert!(s.contains('\u{ff05}') && !s.contains('\u{ff10}'));
        let k = parse_class_run(LLM_LETTERS, true);
        assert!(k.contains('\u{212a}') && k.contains('\u{2126}') && !k.contains('\u{2125}'));
    }

    #[test]
    fn recognise_rejects_other() {
        let v: Value = serde_json::json!({"type": "ByteLevel", "add_prefix_space": false});
        let e = PreTokenizerKind::from_hf_json(&v).unwrap_err();
        assert!(e.contains("unrecognised"), "{e}");
    }
}
