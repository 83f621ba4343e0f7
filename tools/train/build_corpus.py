#!/usr/bin/env python3
"""Turn the extracted Debian packages (see get_corpus.sh) into documents: OUT/docs.jsonl, one JSON object
{"src": ..., "text": ...} per line, in a fixed order. Deterministic."""
import gzip, json, os, re, sys

OUT = sys.argv[1]
X = os.path.join(OUT, "x")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
docs = []

def add(src, text):
    text = ANSI.sub("", text).replace("\r", "")
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    if len(text) >= 20:
        docs.append({"src": src, "text": text})

# 1. KJV Bible: one document per chapter, verse numbers dropped, one verse per line.
chap, lines = None, []
for line in open(os.path.join(OUT, "kjv.raw.txt"), encoding="utf-8", errors="replace"):
    line = line.rstrip("\n")
    m = re.match(r"^\s+(\d+) (.*)$", line)
    if m:
        lines.append(m.group(2).strip())
    elif line.strip():
        if chap and lines:
            add("kjv", chap + "\n\n" + "\n".join(lines))
        chap, lines = line.strip(), []
if chap and lines:
    add("kjv", chap + "\n\n" + "\n".join(lines))

# 2. Fortune cookies (English, BSD-licensed collection): one document per cookie.
FORT = os.path.join(X, "fortunes", "usr/share/games/fortunes")
SKIP = {"ascii-art", "zippy", "translate-me", "debian", "perl", "linuxcookie"}
for name in sorted(os.listdir(FORT)):
    p = os.path.join(FORT, name)
    if "." in name or name in SKIP or os.path.islink(p):
        continue
    for c in open(p, encoding="utf-8", errors="replace").read().split("\n%\n"):
        add("fortunes/" + name, c)
p = os.path.join(X, "fortunes-min", "usr/share/games/fortunes/literature")
for c in open(p, encoding="utf-8", errors="replace").read().split("\n%\n"):
    add("fortunes/literature", c)

# 3. Classical Chinese poems (Tang 300, Song 100; the poems are public domain): one per poem.
ZH = os.path.join(X, "fortunes-zh", "usr/share/games/fortunes")
for name in ("tang300", "song100"):
    for c in open(os.path.join(ZH, name), encoding="utf-8", errors="replace").read().split("\n%\n"):
        add("zh/" + name, c)

def paragraphs_to_chunks(src, text, target=3000):
    buf = ""
    for para in re.split(r"\n\s*\n", text):
        if buf and len(buf) + len(para) > target:
            add(src, buf)
            buf = ""
        buf += para + "\n\n"
    add(src, buf)

# 4. The Devil's Dictionary (public domain), chunks of ~3 kB at paragraph boundaries.
with gzip.open(os.path.join(X, "dict-devil", "usr/share/dictd/devil.dict.dz"), "rt", encoding="utf-8",
               errors="replace") as fh:
    t = fh.read()
i = t.find("THE DEVIL'S DICTIONARY")
paragraphs_to_chunks("devil", t[i:] if i >= 0 else t)

# 5. The Jargon File 4.4.7 (public domain), body only (the headword index at the top is dropped).
with gzip.open(os.path.join(X, "jargon-text", "usr/share/doc/jargon-text/jargon.txt.gz"), "rt",
               encoding="utf-8", errors="replace") as fh:
    t = fh.read()
i = t.find("Chapter 1. Introduction", t.find("Chapter 1. Introduction") + 1)
paragraphs_to_chunks("jargon", t[i:] if i > 0 else t)

with open(os.path.join(OUT, "docs.jsonl"), "w", encoding="utf-8") as fh:
    for d in docs:
        fh.write(json.dumps(d, ensure_ascii=False) + "\n")
stats = {}
for d in docs:
    s = d["src"].split("/")[0]
    n, c = stats.get(s, (0, 0))
    stats[s] = (n + 1, c + len(d["text"].encode("utf-8")))
json.dump(stats, open(os.path.join(OUT, "stats.json"), "w"), indent=1)
print("docs:", len(docs), {k: f"{n} docs, {c/1e6:.2f} MB" for k, (n, c) in stats.items()})
