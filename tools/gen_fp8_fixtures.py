#!/usr/bin/env python3
"""Generate a tiny DeepSeek-V3 model in DeepSeek's official FP8 layout + reference logits.

Usage:  python3 tools/gen_fp8_fixtures.py [--out tests/fixtures]
Needs:  torch (with float8_e4m3fn), transformers, safetensors, numpy (as tools/gen_fixtures.py,
        whose model builder, routing checks and writers this script reuses).

Layout written (as DeepSeek-V3/R1 on the hub): every Linear weight of the decoder layers except the
router (`mlp.gate`) is F8_E4M3 with an F32 companion `<name>_scale_inv` of shape
[ceil(rows/128), ceil(cols/128)]; weight = fp8 * scale_inv of its 128x128 block. The quantizer is
DeepSeek's: per block scale = amax / 448, fp8 = round-to-nearest-even(w / scale) (torch's cast),
scale_inv = scale. Embedding, lm_head, norms and router stay BF16, e_score_correction_bias F32.
config.json carries quantization_config {quant_method fp8, fmt e4m3, activation_scheme dynamic,
weight_block_size [128, 128]}.

Reference logits: transformers' DeepseekV3ForCausalLM (float32, eager) loaded with the DEQUANTIZED
weights (fp8 * scale in float32, exact), so a reader that dequantizes correctly matches them to f32
rounding. Dimensions are chosen so that blocks are whole (q_b_proj: 128 rows), partial
(hidden 160 = 128 + 32, kv_b_proj 160 rows, dense intermediate 288 = 2*128 + 32) and smaller than
one block (experts' 48 columns, o_proj's 96).
"""

import argparse
import copy
import json
import os
import shutil
import sys
import tempfile
from collections import OrderedDict

import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_fixtures as gf  # noqa: E402

BLOCK = 128
FP8_MAX = 448.0


def spec_fp8():
    base = next(s for s in gf.FIXTURES if s["name"] == "v3")
    spec = copy.deepcopy(base)
    spec["name"] = "v3_fp8"
    spec["seed"] = 8008
    spec["ds"].update(
        hidden_size=160,
        intermediate_size=288,
        moe_intermediate_size=48,
        num_hidden_layers=2,
        q_lora_rank=136,
        first_k_dense_replace=1,
    )
    return spec


def is_fp8_weight(name: str, t: torch.Tensor) -> bool:
    """DeepSeek quantizes the decoder layers' Linear weights, not the router."""
    return (
        name.startswith("model.layers.")
        and name.endswith("_proj.weight")
        and t.dim() == 2
        and ".mlp.gate." not in name
    )


def quantize_block_fp8(w: torch.Tensor):
    """w [R, C] float32 -> (fp8 [R, C], scale_inv [ceil(R/128), ceil(C/128)] float32)."""
    rows, cols = w.shape
    gr, gc = -(-rows // BLOCK), -(-cols // BLOCK)
    q = torch.empty(rows, cols, dtype=torch.float8_e4m3fn)
    s = torch.empty(gr, gc, dtype=torch.float32)
    for i in range(gr):
        for j in range(gc):
            blk = w[i * BLOCK:(i + 1) * BLOCK, j * BLOCK:(j + 1) * BLOCK]
            amax = blk.abs().max().item()
            scale = torch.tensor(amax / FP8_MAX if amax > 0 else 1.0, dtype=torch.float32)
            s[i, j] = scale
            q[i * BLOCK:(i + 1) * BLOCK, j * BLOCK:(j + 1) * BLOCK] = (blk / scale).to(torch.float8_e4m3fn)
    return q, s


def dequantize_block_fp8(q: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    rows, cols = q.shape
    full = s.repeat_interleave(BLOCK, 0)[:rows].repeat_interleave(BLOCK, 1)[:, :cols]
    return q.to(torch.float32) * full


def fp8_checkpoint(model):
    """(file tensors in DeepSeek's FP8 layout, dequantized float32 state dict)."""
    sd = gf.deepseek_state_dict(model)
    file, deq = OrderedDict(), OrderedDict()
    for n, t in sd.items():
        if is_fp8_weight(n, t):
            q, s = quantize_block_fp8(t)
            assert not torch.isnan(q.to(torch.float32)).any()
            file[n] = q.contiguous()
            file[n + "_scale_inv"] = s.contiguous()
            deq[n] = dequantize_block_fp8(q, s)
        else:
            file[n] = gf.cast_for_file(n, t, "bfloat16")
            deq[n] = file[n].to(torch.float32)
    return file, deq


def load_dequantized(spec, cfg_json, deq):
    """transformers model from the dequantized weights (via a float32 directory)."""
    with tempfile.TemporaryDirectory() as td:
        with open(os.path.join(td, "config.json"), "w") as fh:
            plain = {k: v for k, v in cfg_json.items() if k != "quantization_config"}
            json.dump(dict(plain, torch_dtype="float32"), fh)
        gf.write_safetensors(td, deq, "float32", 1)
        m = gf.DeepseekV3ForCausalLM.from_pretrained(
            td, dtype=torch.float32, attn_implementation="eager", experts_implementation="eager"
        )
    return m.eval()


def generate(spec, out_root):
    name = spec["name"]
    cfg_json = gf.deepseek_config_json(spec)
    cfg_json["torch_dtype"] = "bfloat16"
    cfg_json["quantization_config"] = OrderedDict(
        activation_scheme="dynamic", fmt="e4m3", quant_method="fp8", weight_block_size=[BLOCK, BLOCK]
    )
    for attempt in range(gf.MAX_SEED_TRIES):
        seed = spec["seed"] + 7919 * attempt
        model, tokens = gf.build_model(spec, seed)
        file, deq = fp8_checkpoint(model)
        dq = load_dequantized(spec, cfg_json, deq)
        full = gf.logits_full(dq, tokens)
        route = gf.routing_report(dq, spec, tokens)
        problems, n_top1, top1_gap = gf.check_fixture_quality(spec, full, route)
        if not problems:
            break
        print(f"  [{name}] seed {seed} rejected: {'; '.join(problems)}")
    else:
        raise RuntimeError(f"{name}: no acceptable seed")
    incr = gf.logits_incremental(dq, tokens, gf.PREFILL)
    # How far FP8 moved the model: logits of the unquantized (bf16) model vs the dequantized one.
    orig = gf.logits_full(model, tokens)

    out_dir = os.path.join(out_root, name)
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    with open(os.path.join(out_dir, "config.json"), "w") as fh:
        json.dump(cfg_json, fh, indent=2)
        fh.write("\n")
    save_file(file, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(out_dir, "tokens.json"), "w") as fh:
        json.dump({"tokens": tokens, "prefill": gf.PREFILL}, fh)
        fh.write("\n")
    np.save(os.path.join(out_dir, "logits_full.npy"), full.astype(np.float32))
    np.save(os.path.join(out_dir, "logits_incr.npy"), incr.astype(np.float32))
    n_fp8 = sum(1 for n in file if n.endswith("_scale_inv"))
    meta = OrderedDict(
        name=name,
        seed=seed,
        weights_dtype="float8_e4m3fn (128x128 block scales) + bfloat16",
        fp8_tensors=n_fp8,
        reference="transformers DeepseekV3ForCausalLM, float32, on the dequantized weights",
        max_abs_full_minus_incr=float(np.abs(full - incr).max()),
        max_abs_bf16_model_minus_fp8_model=float(np.abs(full - orig).max()),
        logits_abs_max=float(np.abs(full).max()),
        distinct_top1=n_top1,
        min_top1_logit_gap=top1_gap,
        min_routing_gap=route["min_route_gap"],
        experts_used_per_moe_layer={str(k): v["experts_used"] for k, v in route["layers"].items()},
        torch=torch.__version__,
        transformers=gf.transformers.__version__,
    )
    with open(os.path.join(out_dir, "meta.json"), "w") as fh:
        json.dump(meta, fh, indent=2)
        fh.write("\n")
    for f in sorted(os.listdir(out_dir)):
        print(f"  wrote {os.path.join(out_dir, f)} ({os.path.getsize(os.path.join(out_dir, f))} bytes)")
    print(f"  [{name}] seed={seed} fp8 tensors={n_fp8} max|full-incr|={meta['max_abs_full_minus_incr']:.2e} "
          f"max|bf16-fp8|={meta['max_abs_bf16_model_minus_fp8_model']:.3f} top1 gap={top1_gap:.2e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures"))
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    generate(spec_fp8(), os.path.normpath(args.out))


if __name__ == "__main__":
    main()
