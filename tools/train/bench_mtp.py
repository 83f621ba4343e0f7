#!/usr/bin/env python3
"""Acceptance and decode speed of speculative decoding on the default model, on held-out text.

  python3 tools/train/bench_mtp.py --build models/build [--moela target/release/moela] [-n 128] [-r 3]

Prompts: the first ~PROMPT_CHARS characters (cut at a word) of a few validation documents (train.val_doc_ids:
never trained on, by the trunk or the MTP module). For each prompt and each mode (--spec mtp with draft 1, 2, 3;
--spec lookup with draft 3), `moela -t THREADS bench --spec MODE --draft K --spec-prompt TEXT -n N -r R --json`:
greedy generation of N tokens after the prompt, plain and speculative alternating in each repetition (so a
busy machine slows both alike); its speculative figures are read from the JSON. Writes BUILD/mtp/bench.json and
prints a markdown table (per prompt and the mean).
"""
import argparse, json, os, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import train as T  # noqa: E402

# Validation documents (indices into docs.jsonl, all in val_doc_ids): two Bible chapters, a Jargon File
# entry, two fortune cookies.
DOCS = [94, 122, 15285, 2737, 13376]
PROMPT_CHARS = 160
MODES = [("mtp", 1), ("mtp", 2), ("mtp", 3), ("lookup", 3)]


def prompts(build):
    docs = [json.loads(l) for l in open(os.path.join(build, "corpus", "docs.jsonl"), encoding="utf-8")]
    val = set(T.val_doc_ids(len(docs)))
    out = []
    for i in DOCS:
        assert i in val, i
        t = docs[i]["text"]
        if len(t) > PROMPT_CHARS:
            t = t[:PROMPT_CHARS].rsplit(" ", 1)[0]
        out.append((i, docs[i]["src"], t))
    return out


def add_args(ap):
    """The options this script shares with bench_mtp_llamacpp.py."""
    ap.add_argument("--build", default=os.path.join(ROOT, "models", "build"))
    ap.add_argument("--moela", default=os.path.join(ROOT, "target", "release", "moela"))
    ap.add_argument("-m", "--model", default=os.path.join(ROOT, "models", "moela-tiny-v3.gguf"))
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("-r", type=int, default=3)
    ap.add_argument("-t", "--threads", type=int, default=1)


def spec_bench(a, text, mode, k, reps):
    """`moela bench --spec MODE --draft K` on one prompt: its JSON "spec" object."""
    cmd = [a.moela, "-t", str(a.threads), "bench", "-m", a.model, "-p", "16", "-n", str(a.n), "-r", str(reps),
           "--spec", mode, "--draft", str(k), "--spec-prompt", text, "--json"]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)["spec"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_args(ap)
    a = ap.parse_args()
    rows = []
    for i, src, text in prompts(a.build):
        for mode, k in MODES:
            sp = spec_bench(a, text, mode, k, a.r)
            row = dict(doc=i, src=src, mode=mode, draft=k, prompt_tokens=sp["prompt_tokens"],
                       acceptance=sp["acceptance_rate"], tokens_per_pass=sp["tokens_per_pass"], tok_s=sp["tok_s"],
                       plain_tok_s=sp["plain_tok_s"], ratio=sp["tok_s"] / sp["plain_tok_s"],
                       identical=sp["identical"], verify_cost=sp["verify_cost"], draft_cost=sp.get("draft_cost"))
            print(json.dumps(row), flush=True)
            rows.append(row)
    os.makedirs(os.path.join(a.build, "mtp"), exist_ok=True)
    json.dump(dict(rows=rows, n=a.n, r=a.r, threads=a.threads, prompts=prompts(a.build)),
              open(os.path.join(a.build, "mtp", "bench.json"), "w"), indent=1)
    print("\n| prompt (validation doc) | mode | draft | acceptance | tokens/pass | tok/s | plain tok/s | ratio | "
          "verify cost | draft cost | same tokens |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        dc = f"{r['draft_cost']:.2f}" if r["draft_cost"] is not None else ""
        print(f"| {r['doc']} {r['src']} ({r['prompt_tokens']} tok) | {r['mode']} | {r['draft']} | "
              f"{100 * r['acceptance']:.1f}% | {r['tokens_per_pass']:.2f} | {r['tok_s']:.0f} | {r['plain_tok_s']:.0f} | "
              f"{r['ratio']:.2f} | {r['verify_cost']:.2f} | {dc} | {r['identical']} |")
    for mode, k in MODES:
        sel = [r for r in rows if r["mode"] == mode and r["draft"] == k]
        m = lambda f: sum(r[f] for r in sel) / len(sel)  # noqa: E731
        print(f"| mean of {len(sel)} | {mode} | {k} | {100 * m('acceptance'):.1f}% | {m('tokens_per_pass'):.2f} | "
              f"{m('tok_s'):.0f} | {m('plain_tok_s'):.0f} | {m('ratio'):.2f} | {m('verify_cost'):.2f} | | "
              f"{all(r['identical'] for r in sel)} |")


if __name__ == "__main__":
    main()
