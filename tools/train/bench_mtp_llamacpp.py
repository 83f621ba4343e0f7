#!/usr/bin/env python3
"""The default model's MTP speculation side by side with llama.cpp's (`llama-server --spec-type draft-mtp`).

  python3 tools/train/bench_mtp_llamacpp.py --build models/build --llama-bin LLAMA_CPP/build/bin \
      [--moela target/release/moela] [-n 128] [-r 3] [-t 1]

Same held-out prompts as tools/train/bench_mtp.py (validation documents, never trained on). For each
configuration (plain; MTP with 1, 2 and 3 draft tokens) one llama-server runs the same GGUF
(`--spec-draft-p-min 0`, so it drafts the full length every pass, as moela does); each prompt is sent R
times as a greedy /completion of N tokens, interleaved with `moela bench` of the same prompt and mode
(greedy, plain and speculative alternating inside the run). Reported per mode: acceptance rate (accepted /
drafted), decode tok/s with and without speculation and their ratio, for both engines, and whether both
engines produced the same greedy tokens (moela's `run --ids --temp 0`, llama.cpp's `return_tokens`).
Both engines use -t threads (default 1: at 7 MB of weights, more threads only add synchronisation).
"""
import argparse, json, os, signal, statistics, subprocess, sys, time, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
from bench_mtp import add_args, prompts, spec_bench  # noqa: E402

PORT = 8931


def post(path, body):
    req = urllib.request.Request(f"http://127.0.0.1:{PORT}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def start_server(bin_dir, model, threads, draft):
    cmd = [os.path.join(bin_dir, "llama-server"), "-m", model, "-t", str(threads), "-tb", str(threads), "-c", "1024",
           "-np", "1", "--port", str(PORT), "--no-webui"]
    if draft:
        cmd += ["--spec-type", "draft-mtp", "--spec-draft-n-max", str(draft), "--spec-draft-n-min", "0",
                "--spec-draft-p-min", "0"]
    log = open(f"/tmp/llama-server-mtp{draft}.log", "w")
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/health", timeout=2) as r:
                if r.status == 200:
                    return p
        except Exception:
            pass
        if p.poll() is not None:
            sys.exit(f"llama-server exited ({p.returncode}); see {log.name}")
        time.sleep(0.2)
    p.kill()
    sys.exit("llama-server did not start")


def llama_completion(text, n):
    r = post("/completion", {"prompt": text, "n_predict": n, "temperature": 0, "cache_prompt": False,
                             "return_tokens": True, "ignore_eos": True})
    t = r["timings"]
    return r["tokens"], t["predicted_per_second"], t.get("draft_n", 0), t.get("draft_n_accepted", 0)


def moela_tokens(moela, model, text, n, threads):
    out = subprocess.run([moela, "-t", str(threads), "run", "-m", model, "-p", text, "-n", str(n), "--temp", "0",
                          "--ids"], check=True, capture_output=True, text=True).stdout
    return [int(x) for x in out.replace(",", " ").split() if x.lstrip("-").isdigit()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_args(ap)
    ap.add_argument("--llama-bin", required=True, help="llama.cpp's build/bin (with llama-server)")
    a = ap.parse_args()
    ps = prompts(a.build)
    plain, same = {}, {}
    srv = start_server(a.llama_bin, a.model, a.threads, 0)
    try:
        for i, _, text in ps:
            plain[i] = []
            for _ in range(a.r):
                toks, tps, _, _ = llama_completion(text, a.n)
                plain[i].append(tps)
            mine = moela_tokens(a.moela, a.model, text, a.n, a.threads)
            k = min(len(mine), len(toks))
            same[i] = next((j for j in range(k) if mine[j] != toks[j]), k)
    finally:
        srv.send_signal(signal.SIGINT)
        srv.wait()
    rows = []
    for draft in (1, 2, 3):
        srv = start_server(a.llama_bin, a.model, a.threads, draft)
        try:
            for i, src, text in ps:
                l_tps, l_dn, l_da, m = [], 0, 0, []
                for _ in range(a.r):
                    _, tps, dn, da = llama_completion(text, a.n)
                    l_tps.append(tps)
                    l_dn += dn
                    l_da += da
                    m.append(spec_bench(a, text, "mtp", draft, 1))
                row = dict(doc=i, src=src, draft=draft, same_greedy_prefix=same[i],
                           llama_acceptance=l_da / max(l_dn, 1),
                           llama_ratio=statistics.median(l_tps) / statistics.median(plain[i]),
                           llama_tok_s=statistics.median(l_tps), llama_plain_tok_s=statistics.median(plain[i]),
                           moela_acceptance=statistics.mean(x["acceptance_rate"] for x in m),
                           moela_ratio=statistics.median(x["tok_s"] / x["plain_tok_s"] for x in m),
                           moela_tok_s=statistics.median(x["tok_s"] for x in m),
                           moela_plain_tok_s=statistics.median(x["plain_tok_s"] for x in m),
                           moela_identical=all(x["identical"] for x in m))
                print(json.dumps(row), flush=True)
                rows.append(row)
        finally:
            srv.send_signal(signal.SIGINT)
            srv.wait()
    print(f"\n{a.n} greedy tokens after each of {len(ps)} held-out prompts, -t {a.threads}, medians of {a.r}\n")
    print("| draft | moela acceptance | llama.cpp acceptance | moela tok/s spec / plain | ratio "
          "| llama.cpp tok/s spec / plain | ratio |")
    print("|---|---|---|---|---|---|---|")
    for draft in (1, 2, 3):
        rs = [r for r in rows if r["draft"] == draft]
        mean = lambda key: statistics.mean(r[key] for r in rs)  # noqa: E731
        print(f"| {draft} | {mean('moela_acceptance'):.1%} | {mean('llama_acceptance'):.1%} "
              f"| {mean('moela_tok_s'):.0f} / {mean('moela_plain_tok_s'):.0f} | {mean('moela_ratio'):.2f} "
              f"| {mean('llama_tok_s'):.0f} / {mean('llama_plain_tok_s'):.0f} | {mean('llama_ratio'):.2f} |")
    print("\ngreedy tokens equal between the engines (leading run, of %d): %s"
          % (a.n, ", ".join(f"doc {i}: {same[i]}" for i, _, _ in ps)))


if __name__ == "__main__":
    main()
