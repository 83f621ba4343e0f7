#!/usr/bin/env python3
"""Checks, with the `gguf` PyPI package (llama.cpp's own gguf-py), that the GGUF files moela
writes have llama.cpp's `deepseek2` layout, and that files in that layout load in moela.

1. Each fixture in tests/fixtures (v3_mtp: with llama.cpp's nextn tensors and keys) is converted with `moela convert` (f32 and q8_0; the 256-wide
   `kq` fixture also q2_k, q3_k, q4_k, q5_k, q6_k) and read back with gguf.GGUFReader: metadata key types
   (u32/f32/bool/str), the exact set of tensor names llama.cpp creates for the config (it
   refuses files with missing or extra tensors), every tensor's ggml shape (ne[0] first) and
   type, and 32-byte aligned data. K-quant tensors (blocks from moela's own quantizer) are
   dequantized by gguf-py and compared with the f32 file: relative RMS error per tensor below
   0.08 (Q4_K), 0.04 (Q5_K), 0.021 (Q6_K) (measured 0.070-0.072, 0.035-0.036, 0.017-0.018; the
   unit tests' bounds on Gaussian data are 0.075/0.039/0.019), 0.28 (Q2_K), 0.16 (Q3_K) (unit
   test bounds 0.27/0.15; measured 0.256-0.263 and 0.143-0.146).
2. A file written by ../shared/tools/make_synth_gguf.py (a stand-in for llama.cpp's converter
   with DeepSeek-V2-Lite's exact shapes, 2 layers) loads in moela and generates tokens, and
   its logits are bit-identical on 1 and 2 threads; requantized to q4_k_m by `moela convert`
   it keeps its metadata, names, order and shapes, and gguf-py's dequantization of the new
   tensors is within the types' error of the input (see check_requantized).

3. With --pruned FILE --fixture NAME --experts N --used K (tests/prune.rs): a file that
   `moela prune` wrote from fixture NAME has llama.cpp's key types, expert_count N,
   expert_used_count K, and exactly llama.cpp's tensor set with the shapes of NAME's config with
   N routed experts, 32-byte aligned.

Prints 'N passed, M failed' and exits non-zero on any failure.
Usage: tools/check_gguf_layout.py --moela target/release/moela
       tools/check_gguf_layout.py --pruned FILE --fixture NAME --experts N --used K
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from gguf import GGUFReader, GGUFValueType
from gguf.constants import MODEL_ARCH, MODEL_TENSORS, TENSOR_NAMES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = ["v2_lite", "v2", "v3", "v3_dense2", "v3_fp8", "kq", "v3_mtp"]
F32, F16, Q8_0 = 0, 1, 8
# ggml id, RMS bound, and the type stored for rows that are not whole 256-element super-blocks
# (src/quant_policy.rs `fit`: llama.cpp's fallbacks, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0,
# Q2_K/Q3_K -> Q4_0).
K_TYPES = {"q4_k": (12, 0.08, 6), "q5_k": (13, 0.04, 7), "q6_k": (14, 0.021, Q8_0),
           "q2_k": (10, 0.28, 2), "q3_k": (11, 0.16, 2)}

results = {"passed": 0, "failed": 0}


def check(ok, what):
    if ok:
        results["passed"] += 1
    else:
        results["failed"] += 1
        print(f"FAIL: {what}")


def read_config(name):
    with open(os.path.join(ROOT, "tests/fixtures", name, "config.json")) as f:
        c = json.load(f)
    rope = c.get("rope_scaling") or c.get("rope_parameters") or {}
    c["_yarn"] = (rope.get("type") or rope.get("rope_type")) == "yarn"
    return c


def check_tensor_set(tag, r, want):
    """Checks that reader `r` holds exactly the tensors of `want` (name -> ne), each with a
    gguf-py deepseek2 name and its shape; returns them by name."""
    got = {t.name: t for t in r.tensors}
    check(set(got) == set(want), f"{tag}: tensor names differ: extra {sorted(set(got) - set(want))}, "
                                 f"missing {sorted(set(want) - set(got))}")
    for n, t in got.items():
        check(known_name(n), f"{tag}: {n} is not a deepseek2 tensor name in gguf-py")
        if n in want:
            check(list(map(int, t.shape)) == want[n], f"{tag}: {n} ne {list(t.shape)} != {want[n]}")
    return got


def expected_tensors(c):
    """name -> ne (ggml order) for the tensors llama.cpp creates for this config."""
    h, nh, V = c["hidden_size"], c["num_attention_heads"], c["vocab_size"]
    dn, r, vd, kvl = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"], c["kv_lora_rank"]
    qlr = c.get("q_lora_rank")
    ne, inter = c["n_routed_experts"], c["moe_intermediate_size"]
    sh = inter * (c.get("n_shared_experts") or 0)
    t = {"token_embd.weight": [h, V], "output_norm.weight": [h], "output.weight": [h, V]}
    n = c["num_hidden_layers"]
    # The MTP block (v3_mtp): block n, with llama.cpp's nextn tensors (docs/FORMAT.md §7a); the
    # fixture has its own shared head and no embed_tokens.
    for b in range(n + min(c.get("num_nextn_predict_layers") or 0, 1)):
        p = f"blk.{b}."
        if b == n:
            t[p + "nextn.eh_proj.weight"] = [2 * h, h]
            t[p + "nextn.enorm.weight"] = [h]
            t[p + "nextn.hnorm.weight"] = [h]
            t[p + "nextn.shared_head_norm.weight"] = [h]
            t[p + "nextn.shared_head_head.weight"] = [h, V]
        t[p + "attn_norm.weight"] = [h]
        if qlr:
            t[p + "attn_q_a.weight"] = [h, qlr]
            t[p + "attn_q_a_norm.weight"] = [qlr]
            t[p + "attn_q_b.weight"] = [qlr, nh * (dn + r)]
        else:
            t[p + "attn_q.weight"] = [h, nh * (dn + r)]
        t[p + "attn_kv_a_mqa.weight"] = [h, kvl + r]
        t[p + "attn_kv_a_norm.weight"] = [kvl]
        t[p + "attn_k_b.weight"] = [dn, kvl, nh]
        t[p + "attn_v_b.weight"] = [kvl, vd, nh]
        t[p + "attn_output.weight"] = [nh * vd, h]
        t[p + "ffn_norm.weight"] = [h]
        if b >= c.get("first_k_dense_replace", 0):
            t[p + "ffn_gate_inp.weight"] = [h, ne]
            if c["model_type"] == "deepseek_v3":
                t[p + "exp_probs_b.bias"] = [ne]
            t[p + "ffn_gate_exps.weight"] = [h, inter, ne]
            t[p + "ffn_up_exps.weight"] = [h, inter, ne]
            t[p + "ffn_down_exps.weight"] = [inter, h, ne]
            if sh:
                t[p + "ffn_gate_shexp.weight"] = [h, sh]
                t[p + "ffn_up_shexp.weight"] = [h, sh]
                t[p + "ffn_down_shexp.weight"] = [sh, h]
        else:
            i = c["intermediate_size"]
            t[p + "ffn_gate.weight"] = [h, i]
            t[p + "ffn_up.weight"] = [h, i]
            t[p + "ffn_down.weight"] = [i, h]
    return t


def llama_names():
    """All tensor names gguf-py knows for deepseek2 (with {bid} as a pattern)."""
    names = [TENSOR_NAMES[x] for x in MODEL_TENSORS[MODEL_ARCH.DEEPSEEK2]]
    # llama.cpp's deepseek2 has the nextn (MTP) tensors in its list since it runs MTP; the gguf
    # release on PyPI (0.19.0) names them (MODEL_TENSOR.NEXTN_*) but not yet for deepseek2.
    names += [v for k, v in TENSOR_NAMES.items() if k.name.startswith("NEXTN_") and "{bid}" in v]
    return names


def known_name(name):
    base = name.rsplit(".", 1)[0]
    for pat in llama_names():
        if "{bid}" in pat:
            pre, post = pat.split("{bid}")
            if base.startswith(pre) and base.endswith(post):
                mid = base[len(pre): len(base) - len(post)]
                if mid.isdigit():
                    return True
        elif base == pat:
            return True
    return False


# Keys llama.cpp reads for deepseek2 and the GGUF value type it expects.
KEY_TYPES = {
    "general.architecture": GGUFValueType.STRING,
    "deepseek2.context_length": GGUFValueType.UINT32,
    "deepseek2.embedding_length": GGUFValueType.UINT32,
    "deepseek2.block_count": GGUFValueType.UINT32,
    "deepseek2.feed_forward_length": GGUFValueType.UINT32,
    "deepseek2.attention.head_count": GGUFValueType.UINT32,
    "deepseek2.attention.head_count_kv": GGUFValueType.UINT32,
    "deepseek2.attention.key_length": GGUFValueType.UINT32,
    "deepseek2.attention.value_length": GGUFValueType.UINT32,
    "deepseek2.attention.key_length_mla": GGUFValueType.UINT32,
    "deepseek2.attention.value_length_mla": GGUFValueType.UINT32,
    "deepseek2.attention.layer_norm_rms_epsilon": GGUFValueType.FLOAT32,
    "deepseek2.attention.kv_lora_rank": GGUFValueType.UINT32,
    "deepseek2.rope.dimension_count": GGUFValueType.UINT32,
    "deepseek2.rope.freq_base": GGUFValueType.FLOAT32,
    "deepseek2.leading_dense_block_count": GGUFValueType.UINT32,
    "deepseek2.expert_feed_forward_length": GGUFValueType.UINT32,
    "deepseek2.expert_count": GGUFValueType.UINT32,
    "deepseek2.expert_shared_count": GGUFValueType.UINT32,
    "deepseek2.expert_used_count": GGUFValueType.UINT32,
    "deepseek2.expert_weights_scale": GGUFValueType.FLOAT32,
    "deepseek2.expert_weights_norm": GGUFValueType.BOOL,
    "deepseek2.expert_gating_func": GGUFValueType.UINT32,
    "deepseek2.vocab_size": GGUFValueType.UINT32,
}


def field_value(f):
    if f.types[0] == GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode()
    return f.parts[f.data[0]][0].item()


def check_converted(moela, name, qtype, tmp):
    c = read_config(name)
    out = os.path.join(tmp, f"{name}-{qtype}.gguf")
    subprocess.run([moela, "convert", os.path.join(ROOT, "tests/fixtures", name), out, "--type", qtype],
                   check=True, capture_output=True)
    r = GGUFReader(out)
    tag = f"{name} {qtype}"
    check(field_value(r.fields["general.architecture"]) == "deepseek2", f"{tag}: architecture")
    for k, ty in KEY_TYPES.items():
        f = r.fields.get(k)
        check(f is not None and f.types[0] == ty, f"{tag}: key {k} missing or of type {f and f.types}")
    # Values that llama.cpp's loader derives the graph from.
    v = lambda k: field_value(r.fields[k])
    check(v("deepseek2.attention.head_count_kv") == 1, f"{tag}: head_count_kv must be 1 (MLA)")
    nextn = min(c.get("num_nextn_predict_layers") or 0, 1)
    check(v("deepseek2.block_count") == c["num_hidden_layers"] + nextn, f"{tag}: block_count")
    if nextn:
        f = r.fields.get("deepseek2.nextn_predict_layers")
        check(f is not None and f.types[0] == GGUFValueType.UINT32 and field_value(f) == 1,
              f"{tag}: nextn_predict_layers must be u32 1")
    check(v("deepseek2.attention.key_length") == c["kv_lora_rank"] + c["qk_rope_head_dim"], f"{tag}: key_length")
    check(v("deepseek2.attention.value_length") == c["kv_lora_rank"], f"{tag}: value_length")
    check(v("deepseek2.attention.key_length_mla") == c["qk_nope_head_dim"] + c["qk_rope_head_dim"], f"{tag}: key_length_mla")
    check(v("deepseek2.attention.value_length_mla") == c["v_head_dim"], f"{tag}: value_length_mla")
    check(v("deepseek2.expert_gating_func") == (2 if c.get("scoring_func", "softmax") == "sigmoid" else 1), f"{tag}: gating")
    if c.get("q_lora_rank"):
        check(v("deepseek2.attention.q_lora_rank") == c["q_lora_rank"], f"{tag}: q_lora_rank")
    if c["_yarn"]:
        rope = c.get("rope_scaling") or c.get("rope_parameters")
        check(v("deepseek2.rope.scaling.type") == "yarn", f"{tag}: yarn type")
        check(abs(v("deepseek2.rope.scaling.yarn_log_multiplier") - 0.1 * rope["mscale_all_dim"]) < 1e-6,
              f"{tag}: yarn_log_multiplier = 0.1 * mscale_all_dim")
    # Tensors: exactly llama.cpp's set, shapes and types.
    want = expected_tensors(c)
    got = check_tensor_set(tag, r, want)
    for n, t in got.items():
        one_d = len(want.get(n, [])) == 1 or n.endswith("ffn_gate_inp.weight")
        if one_d:
            check(t.tensor_type == F32, f"{tag}: {n} must stay F32")
        elif qtype == "f32":
            check(t.tensor_type == F32, f"{tag}: {n} type {t.tensor_type}")
        else:
            ok_types = (Q8_0,) if int(t.shape[0]) % 32 == 0 else (F16,)
            if qtype in K_TYPES:
                ok_types = (K_TYPES[qtype][0],) if int(t.shape[0]) % 256 == 0 else (K_TYPES[qtype][2],)
            check(t.tensor_type in ok_types, f"{tag}: {n} type {t.tensor_type}, expected {ok_types}")
        check(t.data_offset % 32 == 0, f"{tag}: {n} data not 32-byte aligned")
    # K-quant blocks written by moela, decoded by gguf-py, against the f32 file.
    if qtype in K_TYPES:
        from gguf import quants
        ref = {t.name: t for t in GGUFReader(os.path.join(tmp, f"{name}-f32.gguf")).tensors}
        n_k, errs = 0, []
        for n, t in got.items():
            if t.tensor_type != K_TYPES[qtype][0]:
                continue
            n_k += 1
            deq = quants.dequantize(np.asarray(t.data), t.tensor_type).reshape(-1)
            x = np.asarray(ref[n].data, dtype=np.float64).reshape(-1)
            err = float(np.sqrt(np.sum((deq - x) ** 2) / np.sum(x ** 2)))
            errs.append(err)
            check(err <= K_TYPES[qtype][1], f"{tag}: {n} relative RMS error {err:.4f} (gguf-py dequantization)")
        check(n_k >= 8, f"{tag}: only {n_k} tensors are {qtype}")
        if errs:
            print(f"{tag}: {n_k} tensors, relative RMS error {min(errs):.4f}..{max(errs):.4f}")
    # The data gguf-py reads back is what the HF file holds (f32 conversion is exact).
    if qtype == "f32":
        emb = got["token_embd.weight"].data
        from safetensors.numpy import load_file
        d = os.path.join(ROOT, "tests/fixtures", name)
        files = [f for f in os.listdir(d) if f.endswith(".safetensors")]
        hf = {}
        for f in files:
            try:
                hf.update(load_file(os.path.join(d, f)))
            except TypeError:
                pass  # BF16 is not a numpy dtype; skip that fixture's value check
        if "model.embed_tokens.weight" in hf:
            check(np.array_equal(np.asarray(emb).reshape(hf["model.embed_tokens.weight"].shape),
                                 hf["model.embed_tokens.weight"]), f"{tag}: token_embd values")


def check_pruned(path, name, experts, used):
    c = read_config(name)
    c["n_routed_experts"] = experts
    r = GGUFReader(path)
    tag = f"pruned {name} ({path})"
    for k, ty in KEY_TYPES.items():
        f = r.fields.get(k)
        check(f is not None and f.types[0] == ty, f"{tag}: key {k} missing or of type {f and f.types}")
    v = lambda k: field_value(r.fields[k])
    check(v("deepseek2.expert_count") == experts, f"{tag}: expert_count {v('deepseek2.expert_count')} != {experts}")
    check(v("deepseek2.expert_used_count") == used, f"{tag}: expert_used_count {v('deepseek2.expert_used_count')} != {used}")
    want = expected_tensors(c)
    got = check_tensor_set(tag, r, want)
    for n, t in got.items():
        check(t.data_offset % 32 == 0, f"{tag}: {n} data not 32-byte aligned")


def check_synthetic_v2_lite(moela, tmp):
    tool = os.path.join(ROOT, "..", "shared", "tools", "make_synth_gguf.py")
    if not os.path.exists(tool):
        check(False, f"{tool} not found (../shared must sit beside the checkout)")
        return
    out = os.path.join(tmp, "synth-v2lite-2l.gguf")
    subprocess.run([sys.executable, tool, "--quant", "q8_0", "--layers", "2", "--out", out],
                   check=True, capture_output=True)
    info = subprocess.run([moela, "inspect", "-m", out, "--json"], capture_output=True, text=True)
    check(info.returncode == 0, f"synthetic V2-Lite: inspect failed: {info.stderr}")
    if info.returncode == 0:
        j = json.loads(info.stdout)
        check(j["q_proj"] == "direct", "synthetic V2-Lite: no q-LoRA tensors -> direct q projection")
        check(j["routing"] == "softmax/greedy", f"synthetic V2-Lite: routing {j['routing']}")
    run = subprocess.run([moela, "run", "-m", out, "--tokens", "100000,1000,2000", "-n", "2", "--temp", "0", "--ids"],
                         capture_output=True, text=True)
    toks = run.stdout.split()
    check(run.returncode == 0 and len(toks) == 2, f"synthetic V2-Lite: run failed: {run.stderr}")
    # Row-split products and head-parallel decode attention give the same bits on 1 and 2
    # threads (each output element is computed by one thread in a fixed order).
    ids = ",".join(str(1 + (i * 7919) % 100000) for i in range(24))
    outs = []
    for t in ("1", "2"):
        npy = os.path.join(tmp, f"synth-t{t}.npy")
        r = subprocess.run([moela, "-t", t, "logits", "-m", out, "--tokens", ids, "--prefill", "16", "--out", npy],
                           capture_output=True, text=True)
        check(r.returncode == 0, f"synthetic V2-Lite: logits -t {t} failed: {r.stderr}")
        outs.append(np.load(npy) if r.returncode == 0 else None)
    if outs[0] is not None and outs[1] is not None:
        check(np.array_equal(outs[0], outs[1]), "synthetic V2-Lite: -t 1 and -t 2 logits differ")
    check_requantized(moela, out, tmp)
    os.remove(out)


def check_requantized(moela, src, tmp):
    """`moela convert IN.gguf OUT.gguf --type q4_k_m --expert-quant q8_0` on the synthetic V2-Lite file (a stand-in for
    llama.cpp's converter output): gguf-py reads the result with the input's metadata (file type
    aside), tensor names, order and shapes, 32-byte aligned data; tensors whose type did not
    change hold the input's bytes; K-quant tensors dequantized by gguf-py are within the type's
    error of the input's values; moela runs it."""
    from gguf import quants
    out = os.path.join(tmp, "synth-v2lite-2l-q4_k_m.gguf")
    # Routed experts stay Q8_0 (copied): the K-quant quantizer is slow for a test (~0.2 µs per
    # weight per thread), and token_embd (Q4_K) and output (Q6_K) already have 210 M each.
    r = subprocess.run([moela, "convert", src, out, "--type", "q4_k_m", "--expert-quant", "q8_0"],
                       capture_output=True, text=True)
    check(r.returncode == 0, f"requantize synthetic V2-Lite: {r.stderr[-500:]}")
    if r.returncode != 0:
        return
    a, b = GGUFReader(src), GGUFReader(out)
    tag = "requantized synthetic V2-Lite"
    ka = [k for k in a.fields if not k.startswith("GGUF.")]
    kb = [k for k in b.fields if not k.startswith("GGUF.")]
    check(ka == kb, f"{tag}: metadata keys differ")
    for k in ka:
        if k in b.fields and k != "general.file_type" and a.fields[k].types[0] != GGUFValueType.ARRAY:
            check(field_value(a.fields[k]) == field_value(b.fields[k]), f"{tag}: {k} differs")
    check(field_value(b.fields["general.file_type"]) == 15, f"{tag}: file type is not MOSTLY_Q4_K_M")
    check([t.name for t in a.tensors] == [t.name for t in b.tensors], f"{tag}: tensor names/order differ")
    # Q4_K, Q6_K, and Q5_0 (llama.cpp's fallback for Q4_K rows of 1408, not whole super-blocks;
    # Gaussian rows measure 0.031, half Q4_0's step).
    bounds = {12: 0.08, 14: 0.021, 6: 0.045}
    seen = set()
    for ta, tb in zip(a.tensors, b.tensors):
        check(list(ta.shape) == list(tb.shape), f"{tag}: {ta.name} shape")
        check(tb.data_offset % 32 == 0, f"{tag}: {tb.name} data not 32-byte aligned")
        seen.add(int(tb.tensor_type))
        if tb.tensor_type == ta.tensor_type:
            check(np.array_equal(np.asarray(ta.data), np.asarray(tb.data)), f"{tag}: {ta.name} not copied")
            continue
        x = quants.dequantize(np.asarray(ta.data), ta.tensor_type).reshape(-1).astype(np.float64)
        y = quants.dequantize(np.asarray(tb.data), tb.tensor_type).reshape(-1)
        err = float(np.sqrt(np.sum((y - x) ** 2) / max(np.sum(x ** 2), 1e-30)))
        bound = bounds.get(int(tb.tensor_type), 0.0)
        check(err <= bound, f"{tag}: {tb.name} ({tb.tensor_type}) relative RMS error {err:.4f} > {bound}")
    check({12, 14} <= seen, f"{tag}: types {sorted(seen)} lack Q4_K/Q6_K")
    run = subprocess.run([moela, "run", "-m", out, "--tokens", "100000,1000,2000", "-n", "2", "--temp", "0", "--ids"],
                         capture_output=True, text=True)
    check(run.returncode == 0 and len(run.stdout.split()) == 2, f"{tag}: run failed: {run.stderr}")
    os.remove(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moela")
    ap.add_argument("--pruned")
    ap.add_argument("--fixture")
    ap.add_argument("--experts", type=int)
    ap.add_argument("--used", type=int)
    a = ap.parse_args()
    if a.pruned:
        check_pruned(a.pruned, a.fixture, a.experts, a.used)
        print(f"{results['passed']} passed, {results['failed']} failed")
        sys.exit(1 if results["failed"] else 0)
    if not a.moela:
        ap.error("--moela is required")
    with tempfile.TemporaryDirectory() as tmp:
        for name in FIXTURES:
            for q in ["f32", "q8_0"] + (list(K_TYPES) if name == "kq" else []):
                check_converted(a.moela, name, q, tmp)
        check_synthetic_v2_lite(a.moela, tmp)
    print(f"{results['passed']} passed, {results['failed']} failed")
    sys.exit(1 if results["failed"] else 0)


if __name__ == "__main__":
    main()
