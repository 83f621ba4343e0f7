#!/usr/bin/env python3
"""Verify the exported default model and produce its golden-test reference and report figures.

  python3 tools/train/finalize.py --build models/build --fixture tests/fixtures/default_model

1. Reload BUILD/hf with from_pretrained and check its logits equal those of the trained weights (BUILD/ckpt.pt)
   bit for bit; check our per-expert tensor split equals transformers' own save_pretrained; check an independent
   float64 DeepSeek re-implementation (tools/gen_fixtures.reference_forward) agrees.
2. Golden fixture: tokens.json ({"tokens", "prefill"}), logits_full.npy (one pass) and logits_incr.npy (prefill,
   then one token at a time through the KV cache), float32 [T, vocab], fp32 eager transformers; meta.json.
3. Report data (BUILD/report.json): validation loss/perplexity, per-layer expert usage on the validation
   documents (overall and per corpus source), and samples (greedy, temperature 0.8).
"""
import argparse, json, math, os, sys, tempfile

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np
import torch

torch.set_num_threads(1)
import transformers
from tokenizers import Tokenizer
from transformers import DeepseekV3ForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, ".."))
import gen_fixtures as gf  # noqa: E402
import train as tr  # noqa: E402

GOLDEN_PROMPTS = [
    "In the beginning God created the heaven and the earth. And the earth was without form, and void;",
    "The quick brown fox jumps over the lazy dog. A hacker is a person who enjoys exploring the details",
    "Love is patient, love is kind. The best way to predict the future is to invent it, said the",
]
PREFILL = 8
SAMPLE_PROMPTS = [
    "And God said,",
    "A hacker is",
    "The secret of happiness is",
    "When the king saw",
]
CHAT_PROMPTS = ["Tell me a fortune.", "Read me Psalms 23."]


def load_ckpt_model(build):
    ck = torch.load(os.path.join(build, "ckpt.pt"), map_location="cpu", weights_only=False)
    model = DeepseekV3ForCausalLM(tr.make_config(ck["ds"])).float().eval()
    model.load_state_dict(ck["model"])
    return model, ck


@torch.no_grad()
def verify(build, model, ds, tokens):
    hf = os.path.join(build, "hf")
    re = DeepseekV3ForCausalLM.from_pretrained(hf, dtype=torch.float32, attn_implementation="eager",
                                               experts_implementation="eager").eval()
    a = gf.logits_full(model, tokens)
    b = gf.logits_full(re, tokens)
    d1 = float(np.abs(a - b).max())
    assert d1 == 0.0, f"from_pretrained logits differ by {d1}"
    W = gf.read_safetensors_dir(hf)
    with tempfile.TemporaryDirectory() as td:
        model.save_pretrained(td)
        ref = gf.read_safetensors_dir(td)
    assert set(ref) == set(W), set(ref) ^ set(W)
    for n in W:
        assert torch.equal(W[n].float(), ref[n].float()), n
    cfg = json.load(open(os.path.join(hf, "config.json")))
    f64 = gf.reference_forward(cfg, {k: v.float() for k, v in W.items()}, tokens)
    d3 = float(np.abs(f64 - b).max())
    print(f"verify: from_pretrained max diff {d1}; tensors == save_pretrained ({len(W)} tensors); "
          f"f64 DeepSeek reference max diff {d3:.2e}", flush=True)
    assert d3 < 1e-3, d3
    return re, d1, d3, len(W)


def q8_0_roundtrip(w, axis=-1):
    """ggml Q8_0 quantize+dequantize along `axis` (blocks of 32: d = fp16(amax/127), q = round(x/d))."""
    x = w.movedim(axis, -1)
    shp = x.shape
    b = x.reshape(-1, 32).double()
    amax = b.abs().amax(-1, keepdim=True)
    d = amax / 127.0
    inv = torch.where(d > 0, 1.0 / d, torch.zeros_like(d))
    q = torch.clamp(torch.sign(b * inv) * torch.floor((b * inv).abs() + 0.5), -127, 127)  # roundf: half away
    dh = d.half().double()
    return (q * dh).float().reshape(shp).movedim(-1, axis).contiguous()


@torch.no_grad()
def q8_0_model(model, ds):
    """A copy of the model whose weights are what `moela convert` stores as Q8_0 (every matrix except the
    routers; kv_b_proj's K part is stored transposed per head (attn_k_b), so its blocks run along dn)."""
    import copy
    m = copy.deepcopy(model)
    nh, dn, dv, l = ds["num_attention_heads"], ds["qk_nope_head_dim"], ds["v_head_dim"], ds["kv_lora_rank"]
    for n, p in m.named_parameters():
        if p.dim() < 2 or n.endswith("mlp.gate.weight"):
            continue
        if n.endswith("kv_b_proj.weight"):
            w = p.view(nh, dn + dv, l)
            k = q8_0_roundtrip(w[:, :dn, :], axis=1)
            v = q8_0_roundtrip(w[:, dn:, :], axis=-1)
            p.copy_(torch.cat([k, v], 1).view_as(p))
        else:
            p.copy_(q8_0_roundtrip(p))
    return m


def golden(model, tok, ds, out_dir):
    spec = dict(name="default_model", arch="v3", ds=ds)
    chosen = None
    for p in GOLDEN_PROMPTS:
        ids = [0] + tok.encode(p, add_special_tokens=False).ids
        ids = ids[:24]
        full = gf.logits_full(model, ids)
        route = gf.routing_report(model, spec, ids)
        top = np.argsort(-full, -1)
        gap = float((full[np.arange(len(ids)), top[:, 0]] - full[np.arange(len(ids)), top[:, 1]]).min())
        ok = gap >= gf.MIN_TOP1_GAP and route["min_route_gap"] >= gf.MIN_ROUTE_GAP and not route[
            "zero_vs_neginf_mask_differs"]
        print(f"golden candidate {p[:40]!r}: top1 gap {gap:.2e}, route gap {route['min_route_gap']:.2e}, "
              f"zero-fill differs {route['zero_vs_neginf_mask_differs']} -> {'ok' if ok else 'rejected'}", flush=True)
        if chosen is None or ok:
            chosen = (p, ids, full, route, gap)
        if ok:
            break
    p, ids, full, route, gap = chosen
    incr = gf.logits_incremental(model, ids, PREFILL)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "tokens.json"), "w") as fh:
        json.dump({"tokens": ids, "prefill": PREFILL}, fh)
        fh.write("\n")
    np.save(os.path.join(out_dir, "logits_full.npy"), full.astype(np.float32))
    np.save(os.path.join(out_dir, "logits_incr.npy"), incr.astype(np.float32))
    q8 = gf.logits_full(q8_0_model(model, ds), ids)
    np.save(os.path.join(out_dir, "logits_full_q8_0_weights.npy"), q8.astype(np.float32))
    meta = dict(
        name="default_model", prompt=p, n_tokens=len(ids), prefill=PREFILL,
        max_abs_full_minus_incr=float(np.abs(full - incr).max()),
        logits_abs_max=float(np.abs(full).max()), logits_std=float(full.std()),
        distinct_top1=int(len(set(full.argmax(-1).tolist()))), min_top1_logit_gap=gap,
        min_routing_gap=route["min_route_gap"],
        routing_depends_on_zero_vs_neginf_mask=route["zero_vs_neginf_mask_differs"],
        tokens_routed_differently_because_of_e_score_correction_bias=route["tokens_routed_differently_because_of_bias"],
        experts_used_per_moe_layer={str(k): v["experts_used"] for k, v in route["layers"].items()},
        greedy_next_tokens=tok.decode(full.argmax(-1).tolist()),
        q8_0_weights_file="logits_full_q8_0_weights.npy: the same forward (fp32 compute) with every matrix "
                          "except the routers rounded through Q8_0 as moela convert stores it (kv_b_proj's K part "
                          "in blocks along qk_nope, as attn_k_b)",
        q8_0_weights_max_abs_diff_vs_fp32=float(np.abs(q8 - full).max()),
        q8_0_weights_argmax_agreement=float((q8.argmax(-1) == full.argmax(-1)).mean()),
        model="models/build/hf (the trained default model, float32 weights)",
        torch=torch.__version__, transformers=transformers.__version__, numpy=np.__version__,
    )
    with open(os.path.join(out_dir, "meta.json"), "w") as fh:
        json.dump(meta, fh, indent=2, ensure_ascii=False)
        fh.write("\n")
    print("golden:", json.dumps({k: meta[k] for k in ("prompt", "n_tokens", "max_abs_full_minus_incr",
                                                       "min_top1_logit_gap", "min_routing_gap", "q8_0_weights_max_abs_diff_vs_fp32",
                                                       "q8_0_weights_argmax_agreement")}), flush=True)
    return meta


@torch.no_grad()
def usage_and_val(model, tok, build, ds, seq):
    docs = [json.loads(l) for l in open(os.path.join(build, "corpus", "docs.jsonl"), encoding="utf-8")]
    vids = tr.val_doc_ids(len(docs))
    n_exp = ds["n_routed_experts"]
    by_src = {}
    for i in vids:
        by_src.setdefault(docs[i]["src"].split("/")[0], []).append(i)
    usage = {}
    tot_loss, tot_cnt = 0.0, 0
    for src, ids_ in sorted(by_src.items()):
        stream = []
        for i in ids_:
            stream += [0] + tok.encode(docs[i]["text"], add_special_tokens=False).ids + [1]
        counter = tr.LoadCounter(model, n_exp)
        for s in range(0, len(stream) - 1, seq):
            chunk = stream[s: s + seq + 1]
            if len(chunk) < 2:
                continue
            x = torch.tensor([chunk[:-1]])
            y = torch.tensor(chunk[1:])
            logits = model(input_ids=x, use_cache=False).logits[0]
            tot_loss += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
            tot_cnt += len(y)
        counter.remove()
        usage[src] = {str(k): v.long().tolist() for k, v in sorted(counter.counts.items())}
    overall = {}
    for src, d in usage.items():
        for li, c in d.items():
            overall[li] = [a + b for a, b in zip(overall.get(li, [0] * n_exp), c)]

    def skew(c):
        c = np.array(c, dtype=np.float64)
        p = c / c.sum()
        ent = float(-(p[p > 0] * np.log(p[p > 0])).sum() / math.log(len(c)))
        srt = np.sort(c)[::-1]
        return dict(max_over_min=float(srt[0] / max(srt[-1], 1)), max_over_mean=float(srt[0] / c.mean()),
                    norm_entropy=ent, top4_share=float(srt[:4].sum() / c.sum()), cv=float(c.std() / c.mean()))

    stats = {li: dict(counts=c, **skew(c)) for li, c in overall.items()}
    per_src = {src: {li: skew(c) for li, c in d.items()} for src, d in usage.items()}
    # how different the per-source distributions are: top-4 experts per source
    top4 = {src: {li: np.argsort(-np.array(c))[:4].tolist() for li, c in d.items()} for src, d in usage.items()}
    vl = tot_loss / tot_cnt
    return dict(val_loss_full=vl, val_ppl_full=math.exp(vl), val_tokens=tot_cnt, usage=stats,
                usage_by_source=usage, skew_by_source=per_src, top4_by_source=top4)


@torch.no_grad()
def samples(model, tok):
    out = []
    for p in SAMPLE_PROMPTS:
        ids = torch.tensor([[0] + tok.encode(p, add_special_tokens=False).ids])
        g = model.generate(ids, max_new_tokens=48, do_sample=False, eos_token_id=1, pad_token_id=1)
        torch.manual_seed(1234)
        t = model.generate(ids, max_new_tokens=48, do_sample=True, temperature=0.8, top_k=0, top_p=1.0,
                           eos_token_id=1, pad_token_id=1)
        torch.manual_seed(1234)
        rp = model.generate(ids, max_new_tokens=48, do_sample=True, temperature=0.8, top_k=0, top_p=0.95,
                            repetition_penalty=1.3, eos_token_id=1, pad_token_id=1)
        out.append(dict(prompt=p, greedy=tok.decode(g[0, ids.shape[1]:].tolist()),
                        temp0_8=tok.decode(t[0, ids.shape[1]:].tolist()),
                        temp0_8_top_p0_95_rep1_3=tok.decode(rp[0, ids.shape[1]:].tolist())))
    for p in CHAT_PROMPTS:
        text = [0, tok.token_to_id("<｜User｜>")] + tok.encode(p, add_special_tokens=False).ids + [
            tok.token_to_id("<｜Assistant｜>")]
        ids = torch.tensor([text])
        g = model.generate(ids, max_new_tokens=48, do_sample=False, eos_token_id=1, pad_token_id=1,
                           repetition_penalty=1.3)
        out.append(dict(prompt="chat: " + p, greedy_rep1_3=tok.decode(g[0, ids.shape[1]:].tolist(),
                                                                      skip_special_tokens=True)))
    for s in out:
        print(json.dumps(s, ensure_ascii=False), flush=True)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(HERE, "..", "..", "models", "build"))
    ap.add_argument("--fixture", default=os.path.join(HERE, "..", "..", "tests", "fixtures", "default_model"))
    ap.add_argument("--skip-usage", action="store_true")
    a = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    build = os.path.abspath(a.build)
    model, ck = load_ckpt_model(build)
    ds = ck["ds"]
    tok = Tokenizer.from_file(os.path.join(build, "hf", "tokenizer.json"))
    meta = golden(model, tok, ds, os.path.abspath(a.fixture))
    tokens = json.load(open(os.path.join(a.fixture, "tokens.json")))["tokens"]
    re, d1, d3, n_tensors = verify(build, model, ds, tokens)
    rep = dict(step=ck["step"], tokens_seen=ck["tokens"], val_loss_ckpt=ck["val_loss"],
               val_ppl_ckpt=math.exp(ck["val_loss"]), params=ck["params"], elapsed_min=ck["elapsed"] / 60,
               verify=dict(from_pretrained_max_diff=d1, f64_reference_max_diff=d3, n_tensors=n_tensors),
               golden=meta)
    if not a.skip_usage:
        rep.update(usage_and_val(re, tok, build, ds, ck["args"]["seq"]))
        print("val (all docs, by source):", rep["val_loss_full"], rep["val_ppl_full"], flush=True)
        for li, s in rep["usage"].items():
            print(f"layer {li}: {s['counts']} max/min {s['max_over_min']:.1f} H/Hmax {s['norm_entropy']:.3f} "
                  f"top4 {s['top4_share']:.2f}", flush=True)
    rep["samples"] = samples(re, tok)
    json.dump(rep, open(os.path.join(build, "report.json"), "w"), indent=1, ensure_ascii=False)
    print("wrote", os.path.join(build, "report.json"))


if __name__ == "__main__":
    main()
