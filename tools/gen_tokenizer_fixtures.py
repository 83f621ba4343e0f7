#!/usr/bin/env python3
"""Writes the tokenizer parity fixtures in tests/fixtures/tokenizer/ from Hugging Face's own
implementation, for tests/tokenizer_parity.rs.

Needs the PyPI packages `tokenizers` (the oracle for ids and decoding) and `transformers` (the
oracle for chat templates), and DeepSeek's tokenizer files in ../shared/reference/tokenizers/
(see PROVENANCE.md there).

Outputs (all small; the corpus texts are committed so that the ids do not depend on the machine
that regenerates them):
  cases.json          hand-written and random texts, expected ids per tokenizer, with and
                      without special-token parsing; id sequences with HF's decode of them
  corpus_hashes.json  per tokenizer, per corpus text: number of ids and FNV-1a-64 of the ids
                      (little-endian u32s), with and without special-token parsing
  chat.json           conversations, transformers' apply_chat_template output and its ids
  corpus/*.txt        the corpus (multilingual.txt is hand-written; the others are gathered
                      from this machine with --rebuild-corpus: CPython's stdlib sources and CJK
                      test texts (PSF licence), /usr/share/common-licenses texts (verbatim
                      copying permitted))

"plain text" (parse_special = false) expectations: HF `tokenizers` always matches added
tokens (its `encode_special_tokens` switch only skips the `special: true` ones, so
`<｜User｜>`, `<think>`... would still be matched). moela's parse_special=false means *no*
added token is recognised, so the expected ids come from the same tokenizer.json with its
`added_tokens` list emptied: same normalizer, pre-tokenizer and BPE, no added-token split.

Usage: python3 tools/gen_tokenizer_fixtures.py [--rebuild-corpus]
"""

import argparse
import glob
import json
import os
import random
import sys
import sysconfig

from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REF = os.path.join(ROOT, "..", "shared", "reference", "tokenizers")
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer")
CORPUS = os.path.join(OUT, "corpus")
TOKENIZERS = ["deepseek-llm-v2", "deepseek-v3", "deepseek-v4"]
WITH_TEMPLATE = ["deepseek-llm-v2", "deepseek-v3"]

MASK64 = (1 << 64) - 1


def fnv1a_ids(ids):
    """FNV-1a 64 over the ids as little-endian u32 bytes."""
    h = 0xCBF29CE484222325
    p = 0x100000001B3
    for i in ids:
        for b in (i & 0xFF, (i >> 8) & 0xFF, (i >> 16) & 0xFF, i >> 24):
            h = ((h ^ b) * p) & MASK64
    return "%016x" % h


class SplitMix64:
    def __init__(self, seed):
        self.s = seed & MASK64

    def next(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & MASK64
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)


# The mixed corpus: lines of the committed corpus files (sorted by name, split on "\n"), drawn
# with SplitMix64 and joined by assorted separators, with an added-token string now and then.
# tests/tokenizer_parity.rs builds the same text; keep the two in step.
MIX_SEED = 0x6D6F656C61  # "moela"
MIX_TARGET_BYTES = 1_250_000
MIX_SEPS = ["\n", " ", "", "\r\n", "\t", "  ", "\n\n", "\u3000", "\u00a0", " \n"]
MIX_SPECIALS = [
    "<｜begin▁of▁sentence｜>",
    "<｜end▁of▁sentence｜>",
    "<｜User｜>",
    "<｜Assistant｜>",
    "<think>",
    "</think>",
    "<|EOT|>",
    "<｜tool▁calls▁begin｜>",
]


def corpus_files():
    return sorted(f for f in os.listdir(CORPUS) if f.endswith(".txt"))


def read_corpus(name):
    with open(os.path.join(CORPUS, name), encoding="utf-8", newline="") as f:
        return f.read()


def mixed_corpus():
    lines = []
    for name in corpus_files():
        lines.extend(read_corpus(name).split("\n"))
    rng = SplitMix64(MIX_SEED)
    parts = []
    n = 0
    while n < MIX_TARGET_BYTES:
        line = lines[rng.next() % len(lines)]
        r = rng.next()
        piece = line
        if r % 50 == 0:
            piece += MIX_SPECIALS[(r >> 8) % len(MIX_SPECIALS)]
        piece += MIX_SEPS[(r >> 16) % len(MIX_SEPS)]
        parts.append(piece)
        n += len(piece.encode("utf-8"))
    return "".join(parts)


def rebuild_corpus():
    os.makedirs(CORPUS, exist_ok=True)
    stdlib = sysconfig.get_paths()["stdlib"]
    ver = "%d.%d.%d" % sys.version_info[:3]
    mods = [
        "textwrap.py", "string.py", "heapq.py", "bisect.py", "fractions.py", "difflib.py",
        "calendar.py", "shlex.py", "csv.py", "base64.py", "json/decoder.py", "json/encoder.py",
        "functools.py", "statistics.py",
    ]
    parts = []
    for m in mods:
        with open(os.path.join(stdlib, m), encoding="utf-8") as f:
            parts.append("# ===== Lib/%s (CPython %s, PSF License) =====\n%s" % (m, ver, f.read()))
    write_text("python_stdlib.txt", "\n".join(parts))
    lic = []
    for name in ["Apache-2.0", "GPL-3", "MPL-2.0", "Artistic", "BSD"]:
        with open(os.path.join("/usr/share/common-licenses", name), encoding="utf-8") as f:
            lic.append("===== %s =====\n%s" % (name, f.read()))
    write_text("licenses.txt", "\n".join(lic))
    cjk = []
    seen = set()
    for p in sorted(glob.glob(os.path.join(stdlib, "test", "cjkencodings", "*-utf8.txt"))):
        with open(p, encoding="utf-8") as f:
            t = f.read()
        if t not in seen:
            seen.add(t)
            cjk.append("===== CPython Lib/test/cjkencodings/%s =====\n%s" % (os.path.basename(p), t))
    write_text("cjk.txt", "\n".join(cjk))


def write_text(name, text):
    with open(os.path.join(CORPUS, name), "w", encoding="utf-8", newline="") as f:
        f.write(text)


def write_json(name, obj):
    with open(os.path.join(OUT, name), "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


# ----------------------------------------------------------------------------------------------
# Test texts.

SPECIAL_STRINGS = [
    "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>", "<｜User｜>", "<｜Assistant｜>",
    "<think>", "</think>", "<|EOT|>", "<｜fim▁hole｜>", "<｜fim▁begin｜>", "<｜fim▁end｜>",
    "<｜tool▁calls▁begin｜>", "<｜tool▁call▁begin｜>", "<｜tool▁sep｜>", "<｜tool▁output▁end｜>",
    "<｜place▁holder▁no▁0｜>", "<｜place▁holder▁no▁799｜>", "｜DSML｜", "<dsml:", "</dsml:",
    "<｜/table>｜", "<｜image｜>", "<|place_holder_mm_span_0001|>", "<｜begin▁sys｜>",
]

HAND = [
    "", " ", "  ", "\n", "\r\n", "\t", "a", "A", "1", ".", "Hello", " Hello", "Hello world",
    "Hello, world!", "Hello  world", "Hello   world", "Hello\tworld", "Hello\nworld", "Hello\r\nworld",
    "Hello\n\nworld", "Hello \n world", "Hello  \n\n  world", "trailing space ", "trailing spaces   ",
    "trailing tab\t", "trailing newline\n", "  leading spaces", "\n\nleading newlines",
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure it's fine, isn't it? They'll see, we'd go, you're right, O'Neil's.",
    "'quoted' \"double\" `backtick` (paren) [bracket] {brace} <angle>",
    "e.g. i.e. etc. Mr. Dr. U.S.A. a.b.c",
    "snake_case camelCase PascalCase kebab-case SCREAMING_CASE __dunder__ _private",
    "https://www.example.com/path/file.html?x=1&y=two#anchor",
    "user@example.com, first.last+tag@sub.domain.org",
    # numbers
    "0", "7", "42", "365", "2024", "12345", "123456", "1234567", "12345678901234567890",
    "3.14159", "-0.5", "1e-10", "6.022e23", "1,000,000", "1 000 000", "$19.99", "€1.234,56",
    "0x1F 0b1010 0o777 0xDEADBEEF", "v1.2.3-rc.4+build.5", "2025-01-31T23:59:59Z",
    "a1b2c3", "abc123def456", "１２３４５", "٠١٢٣٤٥٦٧٨٩", "०१२३४५", "²³¹ ½ ¼ ¾ Ⅻ ⅻ ① ⑳", "𝟘𝟙𝟚",
    "room 101, floor 7, 2 people, 15% off, 3x faster, 24/7, 9-5, 1st 2nd 3rd 4th",
    # code
    "def f(x):\n    return x * 2\n",
    "def f(x):\n\treturn x * 2\n",
    "fn main() {\n    println!(\"{}\", 1 + 2);\n}\n",
    "#include <stdio.h>\nint main(void) { return 0; }\n",
    "for (let i = 0; i < n; i++) { arr[i] = i ** 2; }",
    "if a != b && c >= d || !e { x += 1; } // comment",
    "SELECT * FROM t WHERE a = 'x' AND b <> 3;",
    "<html><body><p class=\"x\">Hi &amp; bye</p></body></html>",
    "```python\nprint('hi')\n```",
    "    indented four\n        indented eight\n\tTab\n\t\tTwo tabs",
    "x = {'a': [1, 2, {'b': None}], \"c\": True}",
    "a->b, a=>b, a::b, a..b, a...b, a?.b, a??b, a|>b, a<=>b",
    "/* block */ /** doc */ -- sql comment # hash // slash",
    # CJK
    "你好", "你好，世界！", "中文分词测试。", "我爱北京天安门", "人工智能和机器学习",
    "這是繁體中文。", "日本語のテキストです。", "ひらがな", "カタカナ", "ｶﾀｶﾅ", "漢字とかなの混在",
    "東京・大阪", "ラーメン", "コンピューター", "ゝゞヽヾ々〆", "゛゜", "㐀㐁", "龥龦", "鿿",
    "안녕하세요", "한국어 문장입니다.", "ㄱㄴㄷ", "中文English混合text", "English中文mixed",
    "2025年1月31日", "第3章", "価格は1,280円です", "３月",
    "「かぎ括弧」『二重』【隅付き】（丸）", "。、，．！？；：", "——……", "中　文",
    # other scripts
    "Привет, мир!", "Съешь же ещё этих мягких французских булок", "Ёлка ёж",
    "Γειά σου Κόσμε", "Ωραία", "مرحبا بالعالم", "كِتَابٌ", "שלום עולם", "שָׁלוֹם",
    "नमस्ते दुनिया", "क्षत्रिय", "สวัสดีครับ", "Tiếng Việt", "İstanbul ığdır", "Zażółć gęślą jaźń",
    "Größe Straße", "naïve café résumé", "Ærøskøbing", "ǅemal ǈubljana", "ß ẞ ﬁ ﬂ ﬀ",
    "Ⲁⲃⲅ", "Ꭰꭰ", "ԱԲԳ աբգ", "ႠႡ", "𐐀𐐨", "K Ω Å ℃ ℉ №",
    # combining marks / emoji
    "e\u0301", "Cafe\u0301", "a\u0300\u0301\u0302", "\u0301", "\u0301a", " \u0301", "1\u0301",
    "Z̷̢͖a̵̛l̴g̶o̸", "ệộữ", "\u20dd", "a\u20dd",
    "😀", "👍", "👍🏽", "❤️", "❤", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷🇯🇵", "1️⃣", "#️⃣",
    "I ❤️ Rust 🦀!", "emoji😀inside", "😀😀😀", " 😀", "\u200d", "a\u200db", "a\u200cb",
    "\ufe0f", "a\ufe0fb", "🦀🦀 🦀", "→ ⇒ ∀ ∈ ℝ ≤ ≥ ≠ ∞ √ ∑", "┌─┐│└┘", "₿ ₹ ₩ ₽", "©®™",
    # whitespace zoo
    "a\u00a0b", "a\u00a0\u00a0b", "a\u2009b", "a\u3000b", "a\u3000\u3000b", "\u3000",
    "a\u2028b", "a\u2029b", "a\u0085b", "a\u1680b", "a\u202fb", "a\u205fb", "a\u200bb",
    "a\ufeffb", "\ufeffBOM at start", "a\u180eb", "a\x0bb", "a\x0cb", "a\x1cb", "a\x1fb",
    "\r", "\r\r\n\n", "\n\r", " \r\n \r\n ", "a \r\n\tb", "a\t\t\tb", "a \t b", "\t\n\t\n",
    "a   \n   b", "end   ", "   ", "\n\n\n", " \n", "\n ", "x\n \ny",
    # control characters
    "\x00", "a\x00b", "\x01\x02\x03", "\x1b[31mred\x1b[0m", "\x7f", "a\x7fb", "\x08\x07",
    "\ue000", "a\U000F0000b", "\ufffd", "\uffff", "\U0010FFFF", "\u0378", "a\u0378b",
    "\ud7ff", "\uac00\ud7a3",
    # invalid-looking sequences written as text
    "\\xff\\xfe", "\\u00e9", "Ã©", "â€™", "ï»¿", "Ġhello", "Ċ", "ĠĠ", "âĢĶ",
    # long words
    "Pneumonoultramicroscopicsilicovolcanoconiosis",
    "a" * 500, "ab" * 300, "=" * 257, "-" * 100 + "\n" + "=" * 100, "1" * 200, "9" * 301,
    "中" * 300, "あ" * 200, "한" * 150, "😀" * 100, " " * 300, "\n" * 100, "\t" * 64,
    "x" + " " * 50 + "y", "longword" * 60,
    "supercalifragilisticexpialidocious" * 8,
    # special token strings embedded in text
    "<｜begin▁of▁sentence｜>Hello", "Hello<｜end▁of▁sentence｜>",
    "<｜User｜>What is 2+2?<｜Assistant｜>4<｜end▁of▁sentence｜>",
    "<｜begin▁of▁sentence｜><｜begin▁of▁sentence｜>", "x<think>\nreasoning\n</think>\n\nanswer",
    "<｜User｜", "<｜User｜ >", "< ｜User｜>", "<<｜User｜>>", "<｜User｜><｜User｜>",
    "text <|EOT|> more", "<｜fim▁begin｜>def f():<｜fim▁hole｜>\n<｜fim▁end｜>",
    "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{}\n```",
    "｜DSML｜<dsml:x></dsml:x>", "<｜/table>｜<｜table｜><｜tr｜><｜td｜>1<｜/td｜>",
    "<|place_holder_mm_span_0001|><|place_holder_mm_span_0002|>",
    "<｜place▁holder▁no▁7｜>", "<｜▁pad▁｜>", "<｜image｜>", "\u2581", "▁▁",
]

RAND_POOL = (
    list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    + list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
    + [" ", " ", " ", "  ", "\t", "\n", "\r", "\r\n", "\x0b", "\x0c", "\x85", "\xa0", "\u1680",
       "\u2000", "\u2009", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\u180e", "\u200b",
       "\ufeff", "\x00", "\x01", "\x1b", "\x1c", "\x7f"]
    + list("中文日本語한국어漢字龥龦ひらがなカタカナ・ー゛゜ゝゞ゠ヿ㐀")
    + list("éèàçñüößÆØÅµÀÖ×÷øƺƻƼǄʓʔʕʯʰΑαΩωΆΐϵ϶ϷЖжЁёԯԱաՖֆ")
    + ["e\u0301", "\u0301", "\u0300\u0301", "\u20dd", "\u0903", "\u093f", "\u094d"]
    + list("अकखहि्ंःمرحباשלום²³¹½Ⅻⅻ①٠١२३০൧𝟘")
    + ["😀", "👍", "👍🏽", "❤️", "👨‍👩‍👧", "🏳️‍🌈", "🇫🇷", "\u200d", "\u200c", "\ufe0f"]
    + list("！＂＃％（）＊＋，－．／：；＜＝＞？［＼］＿｀｛｜｝～ＡＺａｚ０９‘’“”‛‟„…—–·€£¥©®™°")
    + list("。、「」『』【】《》〈〉〜")
    + ["\ue000", "\U000F0000", "\u1C89", "\uA7CB", "\U0001FAE9", "\u2FFC", "\u31EF", "\ufffd", "\u0378"]
    + SPECIAL_STRINGS
    + ["<｜", "｜>", "<｜User", "▁", "the", " the", "ing", " and", "def ", "    return ", "3.14159",
       "12345678901", "don't", "'s", "'LL", "\\n", "->", "::"]
)


def random_texts(n, seed):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.choice([1, 2, 3, 5, 8, 13, 21, 40])
        out.append("".join(rng.choice(RAND_POOL) for _ in range(k)))
    return out


def plain(tok_json_path):
    """The same tokenizer with no added tokens: HF's ids for moela's parse_special=false."""
    with open(tok_json_path, encoding="utf-8") as f:
        j = json.load(f)
    j["added_tokens"] = []
    return Tokenizer.from_str(json.dumps(j))


def decode_sequences(tok, n_vocab, seed):
    """Id sequences whose decoding exercises lossy UTF-8 handling and special tokens."""
    rng = random.Random(seed)
    seqs = []
    byte_ids = [tok.token_to_id(c) for c in ["ä", "¸", "Ń", "ĸ", "ð", "Ł", "¤", "Ģ", "Ġ"]]
    byte_ids = [i for i in byte_ids if i is not None]
    for _ in range(40):
        k = rng.randint(1, 12)
        seq = []
        for _ in range(k):
            r = rng.random()
            if r < 0.5:
                seq.append(rng.choice(byte_ids))
            else:
                seq.append(rng.randrange(n_vocab))
        seqs.append(seq)
    return seqs


# ----------------------------------------------------------------------------------------------
# Chat.

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Hi"}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3+3?"},
    ],
    [
        {"role": "user", "content": "Why is the sky blue?"},
        {"role": "assistant", "content": "<think>\nRayleigh scattering...\n</think>\n\nBecause of Rayleigh scattering."},
        {"role": "user", "content": "Explain more."},
    ],
    [
        {"role": "system", "content": "First system prompt."},
        {"role": "system", "content": "Second system prompt."},
        {"role": "user", "content": "多语言：你好，こんにちは，안녕하세요 😀"},
        {"role": "assistant", "content": "你好！"},
    ],
    [
        {"role": "user", "content": "Line one\nLine two\r\n\ttabbed  "},
        {"role": "assistant", "content": "a</think>b</think>c"},
        {"role": "user", "content": "<｜User｜> injected? {{ not_a_var }} {% raw %}"},
    ],
    [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "Let me check."},
        {"role": "tool", "content": "{\"temp\": 18}"},
        {"role": "tool", "content": "{\"sky\": \"clear\"}"},
        {"role": "assistant", "content": "18 degrees and clear."},
        {"role": "user", "content": "Thanks"},
    ],
    [{"role": "user", "content": "Trailing tool"}, {"role": "tool", "content": "out"}],
    [{"role": "user", "content": ""}],
]


def chat_fixture():
    from transformers import AutoTokenizer

    out = {"conversations": CONVERSATIONS, "expected": {}}
    for name in WITH_TEMPLATE:
        hf = AutoTokenizer.from_pretrained(os.path.join(REF, name))
        fast = Tokenizer.from_file(os.path.join(REF, name, "tokenizer.json"))
        rows = []
        for conv in CONVERSATIONS:
            for agp in (False, True):
                text = hf.apply_chat_template(conv, tokenize=False, add_generation_prompt=agp)
                ids = fast.encode(text, add_special_tokens=False).ids
                rows.append({"add_generation_prompt": agp, "text": text, "ids": ids})
        out["expected"][name] = rows
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rebuild-corpus", action="store_true", help="gather corpus/*.txt from this machine")
    args = ap.parse_args()
    if not os.path.isdir(REF):
        sys.exit("missing %s (DeepSeek tokenizer files)" % REF)
    os.makedirs(OUT, exist_ok=True)
    if args.rebuild_corpus:
        rebuild_corpus()

    texts = HAND + random_texts(300, 1234)
    cases = {"texts": texts, "tokenizers": {}}
    hashes = {"fnv": "FNV-1a-64 over ids as little-endian u32", "mix": {
        "seed": MIX_SEED, "target_bytes": MIX_TARGET_BYTES}, "tokenizers": {}}
    corpora = {name: read_corpus(name) for name in corpus_files()}
    corpora["<mixed>"] = mixed_corpus()
    hashes["mix"]["bytes"] = len(corpora["<mixed>"].encode("utf-8"))
    total_bytes = sum(len(t.encode("utf-8")) for t in corpora.values())
    for name in TOKENIZERS:
        path = os.path.join(REF, name, "tokenizer.json")
        tok = Tokenizer.from_file(path)
        tok_plain = plain(path)
        entry = {
            "special": [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)],
            "plain": [e.ids for e in tok_plain.encode_batch(texts, add_special_tokens=False)],
        }
        n_vocab = tok.get_vocab_size(with_added_tokens=True)
        seqs = decode_sequences(tok, n_vocab, 99)
        entry["decode"] = [{"ids": s, "text": tok.decode(s, skip_special_tokens=False)} for s in seqs]
        cases["tokenizers"][name] = entry
        h = {}
        for cname, text in corpora.items():
            s = tok.encode(text, add_special_tokens=False).ids
            p = tok_plain.encode(text, add_special_tokens=False).ids
            h[cname] = {
                "special": {"n": len(s), "fnv": fnv1a_ids(s)},
                "plain": {"n": len(p), "fnv": fnv1a_ids(p)},
            }
        hashes["tokenizers"][name] = h
        print("%s: %d texts, %d corpus bytes" % (name, len(texts), total_bytes), file=sys.stderr)
    write_json("cases.json", cases)
    write_json("corpus_hashes.json", hashes)
    write_json("chat.json", chat_fixture())


if __name__ == "__main__":
    main()
