#!/usr/bin/env python3
"""Generate tiny random DeepSeek-V2/V3 fixtures + reference logits for moela's tests.

Usage:  python3 tools/gen_fixtures.py [--out tests/fixtures] [--only v2_lite v3 ...]
Needs:  pip install torch transformers safetensors numpy   (written with torch 2.15, transformers 5.24.0,
        safetensors 0.8.0, numpy 2.4.6). No network, no hub: all models are random and seeded.

Every fixture is built with transformers' own DeepseekV2ForCausalLM / DeepseekV3ForCausalLM (eager attention,
eager experts, float32, eval), re-initialised deterministically (torch.Generator), written with DeepSeek's
released config spelling and per-expert tensor names, and verified three ways:
  1. from_pretrained(<written dir>) reproduces logits_full.npy bit-exactly;
  2. our per-expert split of transformers' fused experts == transformers' own save_pretrained output;
  3. an independent float64 re-implementation of DeepSeek's ORIGINAL semantics (reference_forward below,
     reading only the written config.json + safetensors) matches the saved logits to < 1e-4 (seen: ~5e-6).
Seeds are rejected (deterministically, next seed) when a routing or argmax decision is a near-tie.
No monkeypatching was needed: for these four configs transformers 5.24 == DeepSeek's original code.

============================== SEMANTIC REPORT (transformers 5.24.0 source) ==============================
Notation: T tokens, H hidden, nh heads, dn=qk_nope_head_dim, dr=qk_rope_head_dim, dv=v_head_dim,
rms_w(x) = w * (x * rsqrt(mean(x^2, -1) + eps)).

Decoder layer (V2 and V3):  x += o_proj(MLA(rms_{input_layernorm}(x)));  x += FFN(rms_{post_attention_layernorm}(x));
  logits = lm_head(rms_{model.norm}(x)).  rms eps = rms_norm_eps, EXCEPT q_a_layernorm and kv_a_layernorm,
  which are built without eps and use 1e-6 (same in DeepSeek's original code).

MLA:  q = q_proj(h)  or  q_b_proj(rms_{q_a_layernorm}(q_a_proj(h)))          -> [T, nh, dn+dr]; q_nope=[:dn], q_pe=[dn:]
      ckv = kv_a_proj_with_mqa(h) [T, kv_lora_rank+dr];  c = ckv[:kv_lora_rank], k_pe = ckv[kv_lora_rank:]
            (k_pe is ONE rope head shared by all heads)
      kv = kv_b_proj(rms_{kv_a_layernorm}(c)) -> [T, nh, dn+dv];  k_nope=[:dn], v=[dn:]
      s = (q_nope.k_nope + rope(q_pe).rope(k_pe)) * softmax_scale, causal, softmax in f32; o = P.v -> [T, nh*dv]
      Positions are 0..T-1 (cache length offset when decoding). num_key_value_heads = nh.

RoPE layout: pairs (x[2i], x[2i+1]) are rotated by angle pos*inv_freq[i], i < dr/2 ("interleaved").
  V2: complex multiply on adjacent pairs (torch.polar), output stays interleaved.
  V3 (rope_interleave=True, the default; DeepSeek configs lack the key): rotates the even/odd slices and
  returns cat([even', odd']) (de-interleaved) -- the same permutation for q and k, so q.k is identical;
  DeepSeek's original code does exactly this (view(d/2,2).transpose + rotate_half). If a transformers config
  says rope_interleave=false (V3 only), it is plain rotate_half on halves (x[i], x[i+dr/2]).
  cos/sin are multiplied by attention_factor (below).
  default: inv_freq[i] = 1 / theta^(2i/dr)
  yarn (rope_scaling.type == "yarn"), identical to DeepSeek's DeepseekV2YarnRotaryEmbedding:
      extra = 1/theta^(2i/dr); inter = extra / factor
      corr(r) = dr * ln(orig_max_pos / (2*pi*r)) / (2 ln theta)
      low = max(floor(corr(beta_fast)), 0); high = min(ceil(corr(beta_slow)), dr-1); if low==high: high += 0.001
      ramp[i] = clamp((i - low) / (high - low), 0, 1), i = 0..dr/2-1
      inv_freq = inter * ramp + extra * (1 - ramp)
      get_mscale(s, m) = 1 if s <= 1 else 0.1*m*ln(s) + 1
      attention_factor (cos/sin multiplier) = get_mscale(factor, mscale) / get_mscale(factor, mscale_all_dim)
          (transformers uses that only when BOTH mscale and mscale_all_dim are truthy, otherwise
          get_mscale(factor, 1); DeepSeek's original defaults are mscale=1, mscale_all_dim=0, so the two differ
          only for configs with mscale_all_dim missing/0 and mscale != 1 -- never in released configs)
      softmax_scale = (dn+dr)^-0.5 * get_mscale(factor, mscale_all_dim)^2  if rope is not default and
          mscale_all_dim truthy, else (dn+dr)^-0.5.  (same as DeepSeek's original)
  Fixture values: v2_lite ramp=[0,1,1,1], attention_factor=1, softmax mult=(1+0.0707 ln4)^2=1.205628;
                  v3 (dr=16, theta=100) ramp=[0,.5,1,1,1,1,1,1], attention_factor=1, softmax mult=(1+0.1 ln40)^2=1.873854.
  (attention_factor != 1 is not exercised: released configs always have mscale == mscale_all_dim.)

Dense vs MoE: transformers: layer_idx >= first_k_dense_replace -> MoE, else dense MLP (moe_layer_freq and
  n_routed_experts=None are ignored). DeepSeek: n_routed_experts is not None and idx >= first_k_dense_replace
  and idx % moe_layer_freq == 0. Same for moe_layer_freq == 1 (all fixtures).
  MLP(h) = down(silu(gate(h)) * up(h)).  MoE(h) = sum_j w_j * expert_{idx_j}(h) + shared_experts(h), where
  shared_experts is one MLP of intermediate n_shared_experts*moe_intermediate_size. Router: logits = h_f32 . W_gate^T.

V2 routing (DeepseekV2TopkRouter):
  scores = softmax(logits) ALWAYS (scoring_func is ignored)
  greedy:                w, idx = topk(scores, k)
  group_limited_greedy:  g = max of scores within each of n_group contiguous groups; keep topk_group groups;
                         scores of other groups set to 0.0; w, idx = topk(masked, k)       (== DeepSeek-V2)
  w = w * routed_scaling_factor ALWAYS; norm_topk_prob is IGNORED.
  DeepSeek-V2 original: if k > 1 and norm_topk_prob: w /= sum(w) + 1e-20 (and NO scaling) else w *= rsf.
  => transformers honours topk_method and routed_scaling_factor, ignores scoring_func and norm_topk_prob.
     Both V2 fixtures use softmax + norm_topk_prob=false, where this is exactly DeepSeek's semantics, so no
     patch is needed (and the f64 DeepSeek re-implementation agrees). A V2 config with norm_topk_prob=true
     would NOT be reproduced correctly by transformers 5.24.
V3 routing (DeepseekV3TopkRouter), always "noaux_tc" + sigmoid (scoring_func/topk_method are ignored):
  s = sigmoid(logits); b = s + e_score_correction_bias            (bias only for CHOICE)
  g = sum of the top-2 values of b within each of n_group groups; keep topk_group groups;
  b of other groups -> -inf; idx = topk(b, k); w = s[idx]             (weights from UN-biased scores)
  if norm_topk_prob: w /= sum(w) + 1e-20;  w *= routed_scaling_factor
  DeepSeek-V3 hub modeling_deepseek.py: same, but fills masked groups with 0.0 (not -inf) and normalises only
  if k > 1; DeepSeek's inference/model.py uses -inf. The fixtures are checked to route identically with 0.0 or -inf.

Precision: a float32 model computes everything in float32 (RMSNorm, router and attention softmax are
  explicitly f32; V2 rope via complex64; no float64 anywhere). For bf16 activations transformers would upcast
  RMSNorm internals, the router, the attention softmax and V2's rope (V3 casts cos/sin to the activation
  dtype) -- not used here. The v3 fixture stores BF16 weights (F32
  e_score_correction_bias, as DeepSeek's checkpoints do); its reference is f32 compute over those exact values.

Weights: transformers 5 keeps routed experts fused: experts.gate_up_proj [E, 2I, H] with GATE rows first
  (forward: gate, up = linear(x, gate_up_proj[e]).chunk(2, -1); loader: Concatenate(dim=1)[gate_proj, up_proj])
  and experts.down_proj [E, H, I]. Files here use DeepSeek's per-expert names, [out, in].

transformers-5 config spelling (v3_dense2/config.json is save_pretrained's output verbatim): "rope_parameters":
  {"rope_theta", "rope_type", + yarn keys (+ legacy "type")}, no top-level rope_theta / rope_scaling;
  "head_dim" == qk_rope_head_dim (NOT the attention head size); "qk_head_dim" == dn+dr; "dtype" instead of
  "torch_dtype"; "rope_interleave": true (V3). DeepSeek-only keys given at construction (scoring_func,
  topk_method, moe_layer_freq, ep_size, ...) are kept as extra attributes; a config created from scratch by
  transformers would lack them (defaults: V2 softmax/greedy, V3 sigmoid/noaux_tc, moe_layer_freq 1).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F

import transformers
from transformers import (
    DeepseekV2Config,
    DeepseekV2ForCausalLM,
    DeepseekV3Config,
    DeepseekV3ForCausalLM,
)
import safetensors
from safetensors.torch import load_file, save_file

EXPECTED_TRANSFORMERS = "5.24.0"

T_TOKENS = 16
PREFILL = 5
# Routing / argmax decisions in the fixtures must not be near-ties, otherwise an implementation that
# differs from the reference only by f32 rounding could legitimately pick a different expert / token.
MIN_ROUTE_GAP = 2e-4  # gap between the k-th and (k+1)-th choice score, and between group scores
MIN_TOP1_GAP = 1e-3  # gap between the best and second-best logit at every position
MIN_DISTINCT_TOP1 = 8  # distinct argmax tokens over the 16 positions
MIN_EXPERTS_USED = 6  # of 8 routed experts, per MoE layer, over the 16 tokens
MAX_SEED_TRIES = 200

# --------------------------------------------------------------------------------------------
# Fixture specs. `ds` holds the hyper-parameters with DeepSeek's config spelling.
# --------------------------------------------------------------------------------------------

COMMON = dict(
    hidden_size=64,
    vocab_size=256,
    num_attention_heads=4,
    num_key_value_heads=4,
    rms_norm_eps=1e-6,
    hidden_act="silu",
    bos_token_id=0,
    eos_token_id=1,
    tie_word_embeddings=False,
    attention_bias=False,
    attention_dropout=0.0,
    moe_layer_freq=1,
    initializer_range=0.02,  # unused: all weights are re-initialised by this script (see init_weights)
    pretraining_tp=1,
    use_cache=True,
)

FIXTURES = [
    dict(
        name="v2_lite",
        arch="v2",
        seed=1001,
        dtype="float32",
        shards=1,
        config_style="deepseek",
        ds=dict(
            COMMON,
            intermediate_size=128,
            moe_intermediate_size=16,
            num_hidden_layers=3,
            q_lora_rank=None,
            kv_lora_rank=32,
            qk_nope_head_dim=16,
            qk_rope_head_dim=8,
            v_head_dim=16,
            max_position_embeddings=128,
            rope_theta=10000.0,
            rope_scaling=dict(
                type="yarn",
                factor=4.0,
                original_max_position_embeddings=32,
                beta_fast=32,
                beta_slow=1,
                mscale=0.707,
                mscale_all_dim=0.707,
            ),
            first_k_dense_replace=1,
            n_routed_experts=8,
            n_shared_experts=2,
            num_experts_per_tok=2,
            topk_method="greedy",
            n_group=1,
            topk_group=1,
            scoring_func="softmax",
            norm_topk_prob=False,
            routed_scaling_factor=1.0,
            aux_loss_alpha=0.001,
            seq_aux=True,
        ),
    ),
    dict(
        name="v2",
        arch="v2",
        seed=2002,
        dtype="float32",
        shards=2,
        config_style="deepseek",
        ds=dict(
            COMMON,
            intermediate_size=96,
            moe_intermediate_size=32,
            num_hidden_layers=2,
            q_lora_rank=24,
            kv_lora_rank=32,
            qk_nope_head_dim=16,
            qk_rope_head_dim=8,
            v_head_dim=16,
            max_position_embeddings=128,
            rope_theta=10000.0,
            rope_scaling=None,
            first_k_dense_replace=1,
            n_routed_experts=8,
            n_shared_experts=1,
            num_experts_per_tok=3,
            topk_method="group_limited_greedy",
            n_group=4,
            topk_group=2,
            scoring_func="softmax",
            norm_topk_prob=False,
            routed_scaling_factor=2.0,
            aux_loss_alpha=0.001,
            seq_aux=True,
        ),
    ),
    dict(
        name="v3",
        arch="v3",
        seed=3003,
        dtype="bfloat16",
        shards=1,
        config_style="deepseek",
        ds=dict(
            COMMON,
            intermediate_size=128,
            moe_intermediate_size=32,
            num_hidden_layers=4,
            q_lora_rank=24,
            kv_lora_rank=32,
            # qk_rope_head_dim 16 / rope_theta 100 make the YaRN ramp non-trivial (a fractional blend
            # of interpolated and extrapolated frequencies, and floor/ceil truncation matters);
            # v_head_dim != qk_nope_head_dim on purpose.
            qk_nope_head_dim=16,
            qk_rope_head_dim=16,
            v_head_dim=24,
            max_position_embeddings=640,
            rope_theta=100.0,
            rope_scaling=dict(
                type="yarn",
                factor=40.0,
                original_max_position_embeddings=16,
                beta_fast=32,
                beta_slow=1,
                mscale=1.0,
                mscale_all_dim=1.0,
            ),
            first_k_dense_replace=1,
            n_routed_experts=8,
            n_shared_experts=1,
            num_experts_per_tok=2,
            topk_method="noaux_tc",
            n_group=4,
            topk_group=2,
            scoring_func="sigmoid",
            norm_topk_prob=True,
            routed_scaling_factor=2.5,
            aux_loss_alpha=0.001,
            seq_aux=True,
            ep_size=1,
            num_nextn_predict_layers=0,
        ),
    ),
    dict(
        name="v3_dense2",
        arch="v3",
        seed=4004,
        dtype="float32",
        shards=1,
        # config.json is exactly what transformers 5.24 `save_pretrained` writes (rope_parameters spelling)
        config_style="transformers5",
        ds=dict(
            COMMON,
            intermediate_size=80,
            moe_intermediate_size=16,
            num_hidden_layers=5,
            q_lora_rank=None,
            kv_lora_rank=32,
            qk_nope_head_dim=16,
            qk_rope_head_dim=8,
            v_head_dim=16,
            max_position_embeddings=256,
            rope_theta=50000.0,  # non-default so a loader must really read rope_parameters.rope_theta
            rope_scaling=None,
            first_k_dense_replace=2,
            n_routed_experts=8,
            n_shared_experts=1,
            num_experts_per_tok=2,
            topk_method="noaux_tc",
            n_group=1,
            topk_group=1,
            scoring_func="sigmoid",
            norm_topk_prob=False,
            routed_scaling_factor=1.0,
            aux_loss_alpha=0.001,
            seq_aux=True,
            ep_size=1,
            num_nextn_predict_layers=0,
        ),
    ),
    # Wide enough for the K-quants (256-element super-blocks): hidden, kv_lora_rank, nh*dv and the dense
    # intermediate size are 256, so nearly every matrix can be Q4_K/Q5_K/Q6_K; expert down projections
    # (32 columns) and attn_k_b (dn columns) fall back to a 32-element type. BF16 to stay small.
    dict(
        name="kq",
        arch="v2",
        seed=5005,
        dtype="bfloat16",
        shards=1,
        config_style="deepseek",
        ds=dict(
            COMMON,
            hidden_size=256,
            intermediate_size=256,
            moe_intermediate_size=32,
            num_hidden_layers=2,
            q_lora_rank=None,
            kv_lora_rank=256,
            qk_nope_head_dim=32,
            qk_rope_head_dim=16,
            v_head_dim=64,
            max_position_embeddings=128,
            rope_theta=10000.0,
            rope_scaling=None,
            first_k_dense_replace=1,
            n_routed_experts=8,
            n_shared_experts=1,
            num_experts_per_tok=2,
            topk_method="greedy",
            n_group=1,
            topk_group=1,
            scoring_func="softmax",
            norm_topk_prob=False,
            routed_scaling_factor=1.0,
            aux_loss_alpha=0.001,
            seq_aux=True,
        ),
    ),
]

def hf_config(spec) -> transformers.PreTrainedConfig:
    ds = dict(spec["ds"])
    cls = DeepseekV2Config if spec["arch"] == "v2" else DeepseekV3Config
    rope_scaling = ds.pop("rope_scaling")
    rope_theta = ds.pop("rope_theta")
    if rope_scaling is not None:
        rope_parameters = dict(rope_scaling, rope_theta=rope_theta)
    else:
        rope_parameters = dict(rope_type="default", rope_theta=rope_theta)
    # DeepSeek-only keys that transformers ignores (scoring_func/topk_method for V3, moe_layer_freq...)
    extra = {k: v for k, v in ds.items() if k not in cls.__dataclass_fields__}
    known = {k: v for k, v in ds.items() if k in cls.__dataclass_fields__}
    cfg = cls(rope_parameters=rope_parameters, **known)
    for k, v in extra.items():
        setattr(cfg, k, v)
    cfg._attn_implementation = "eager"
    cfg._experts_implementation = "eager"
    return cfg


def deepseek_config_json(spec) -> dict:
    """config.json with DeepSeek's own spelling (as in the released checkpoints)."""
    ds = spec["ds"]
    arch = spec["arch"]
    out = OrderedDict()
    out["architectures"] = ["DeepseekV2ForCausalLM" if arch == "v2" else "DeepseekV3ForCausalLM"]
    out["model_type"] = "deepseek_v2" if arch == "v2" else "deepseek_v3"
    keys = [
        "attention_bias", "attention_dropout", "aux_loss_alpha", "bos_token_id", "eos_token_id",
        "ep_size", "first_k_dense_replace", "hidden_act", "hidden_size", "initializer_range",
        "intermediate_size", "kv_lora_rank", "max_position_embeddings", "moe_intermediate_size",
        "moe_layer_freq", "n_group", "n_routed_experts", "n_shared_experts", "norm_topk_prob",
        "num_attention_heads", "num_experts_per_tok", "num_hidden_layers", "num_key_value_heads",
        "num_nextn_predict_layers", "pretraining_tp", "q_lora_rank", "qk_nope_head_dim",
        "qk_rope_head_dim", "rms_norm_eps", "rope_scaling", "rope_theta", "routed_scaling_factor",
        "scoring_func", "seq_aux", "tie_word_embeddings", "topk_group", "topk_method",
    ]
    for k in keys:
        if k in ds:
            out[k] = ds[k]
    out["torch_dtype"] = spec["dtype"]
    out["transformers_version"] = transformers.__version__
    out["use_cache"] = ds["use_cache"]
    out["v_head_dim"] = ds["v_head_dim"]
    out["vocab_size"] = ds["vocab_size"]
    return out


# --------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------


def init_weights(model, spec, gen: torch.Generator):
    """Deterministic re-initialisation, scaled so that every block matters and routing is diverse."""
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
                # non-trivial norm weights so a loader that drops them is caught
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name == "model.embed_tokens.weight":
                p.copy_(torch.randn(p.shape, generator=gen))
            elif name.endswith("mlp.gate.weight"):  # router [E, H]
                p.copy_(torch.randn(p.shape, generator=gen) * (1.5 / math.sqrt(p.shape[1])))
            elif name.endswith("experts.gate_up_proj"):  # [E, 2I, H]
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[2]))
            elif name.endswith("experts.down_proj"):  # [E, H, I]
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[2]))
            elif name == "lm_head.weight":
                p.copy_(torch.randn(p.shape, generator=gen) * (2.0 / math.sqrt(p.shape[1])))
            elif p.dim() == 2:  # nn.Linear [out, in]
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]))
            else:
                raise RuntimeError(f"unhandled parameter {name} {tuple(p.shape)}")
        for name, b in sorted(model.named_buffers(), key=lambda kv: kv[0]):
            if name.endswith("e_score_correction_bias"):
                # zero-initialised in transformers; random here, large enough to change routing
                b.copy_((torch.rand(b.shape, generator=gen) - 0.5) * 0.5)


def round_to_bf16_(model):
    """Round every weight to bf16 (kept as f32 in the model). e_score_correction_bias stays f32, as in
    DeepSeek's released checkpoints where it is stored as F32."""
    with torch.no_grad():
        for _, p in model.named_parameters():
            p.copy_(p.to(torch.bfloat16).to(torch.float32))


def deepseek_state_dict(model) -> "OrderedDict[str, torch.Tensor]":
    """Model weights under DeepSeek's released per-expert tensor names, [out, in] layout.

    transformers 5 holds routed experts fused: experts.gate_up_proj [E, 2I, H] with gate rows FIRST
    (forward does `gate, up = linear(x, gate_up_proj[e]).chunk(2, dim=-1)`, and its checkpoint
    converter builds it as Concatenate(dim=1)([gate_proj, up_proj])); experts.down_proj [E, H, I].
    """
    sd = model.state_dict()
    out = OrderedDict()
    for name in sd:
        t = sd[name].detach().to(torch.float32).contiguous()
        if name.endswith("mlp.experts.gate_up_proj"):
            prefix = name[: -len("gate_up_proj")]
            n_exp, two_i, _ = t.shape
            inter = two_i // 2
            for e in range(n_exp):
                out[f"{prefix}{e}.gate_proj.weight"] = t[e, :inter, :].clone()
                out[f"{prefix}{e}.up_proj.weight"] = t[e, inter:, :].clone()
        elif name.endswith("mlp.experts.down_proj"):
            prefix = name[: -len("down_proj")]
            for e in range(t.shape[0]):
                out[f"{prefix}{e}.down_proj.weight"] = t[e].clone()
        else:
            out[name] = t.clone()
    # DeepSeek's naming order: sort by layer number then name (cosmetic only)
    def key(n):
        parts = n.split(".")
        if len(parts) > 2 and parts[1] == "layers":
            lay = int(parts[2])
            rest = parts[3:]
            if len(rest) > 2 and rest[1] == "experts":
                rest = rest[:2] + [f"{int(rest[2]):06d}"] + rest[3:]
            return (1, lay, ".".join(rest))
        return (0 if "embed" in n else 2, 0, n)

    return OrderedDict(sorted(out.items(), key=lambda kv: key(kv[0])))


def cast_for_file(name: str, t: torch.Tensor, dtype: str) -> torch.Tensor:
    if dtype == "bfloat16" and not name.endswith("e_score_correction_bias"):
        return t.to(torch.bfloat16).contiguous()
    return t.to(torch.float32).contiguous()


def write_safetensors(out_dir, sd, dtype, shards) -> list[str]:
    tensors = OrderedDict((n, cast_for_file(n, t, dtype)) for n, t in sd.items())
    meta = {"format": "pt"}
    if shards == 1:
        save_file(tensors, os.path.join(out_dir, "model.safetensors"), metadata=meta)
        return ["model.safetensors"]
    names = list(tensors)
    sizes = [tensors[n].numel() * tensors[n].element_size() for n in names]
    total = sum(sizes)
    files = [f"model-{i + 1:05d}-of-{shards:05d}.safetensors" for i in range(shards)]
    weight_map = OrderedDict()
    groups = [OrderedDict() for _ in range(shards)]
    acc = 0
    for n, s in zip(names, sizes):
        idx = min(shards - 1, int(acc * shards // total))
        groups[idx][n] = tensors[n]
        weight_map[n] = files[idx]
        acc += s
    for f, g in zip(files, groups):
        assert len(g) > 0
        save_file(g, os.path.join(out_dir, f), metadata=meta)
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as fh:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, fh, indent=2)
        fh.write("\n")
    return files + ["model.safetensors.index.json"]


def read_safetensors_dir(d) -> dict:
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as fh:
            wm = json.load(fh)["weight_map"]
        out = {}
        for f in sorted(set(wm.values())):
            out.update(load_file(os.path.join(d, f)))
        assert set(out) == set(wm)
        return out
    return load_file(os.path.join(d, "model.safetensors"))


# --------------------------------------------------------------------------------------------
# Forward passes with transformers
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def logits_full(model, tokens):
    ids = torch.tensor([tokens], dtype=torch.long)
    return model(input_ids=ids, use_cache=False).logits[0].float().numpy()


@torch.no_grad()
def logits_incremental(model, tokens, prefill):
    ids = torch.tensor([tokens], dtype=torch.long)
    out = model(input_ids=ids[:, :prefill], use_cache=True)
    rows = [out.logits[0].float()]
    cache = out.cache
    for i in range(prefill, len(tokens)):
        out = model(input_ids=ids[:, i : i + 1], cache=cache, use_cache=True)
        cache = out.cache
        rows.append(out.logits[0].float())
    return torch.cat(rows, 0).numpy()


def router_modules(model):
    return [
        (i, layer.mlp.gate)
        for i, layer in enumerate(model.model.layers)
        if hasattr(layer.mlp, "gate") and hasattr(layer.mlp, "experts")
    ]


@torch.no_grad()
def routing_report(model, spec, tokens):
    """Capture router inputs in a full forward and measure decision margins (original semantics)."""
    ds = spec["ds"]
    captured = {}
    hooks = []
    for li, gate in router_modules(model):
        hooks.append(
            gate.register_forward_pre_hook(lambda m, args, li=li: captured.__setitem__(li, args[0].detach().clone()))
        )
    model(input_ids=torch.tensor([tokens]), use_cache=False)
    for h in hooks:
        h.remove()
    rep = {"layers": {}}
    min_gap = float("inf")
    n_bias_changed = 0
    zero_fill_differs = 0
    for li, gate in router_modules(model):
        h = captured[li].reshape(-1, ds["hidden_size"]).float()
        logits = h @ gate.weight.float().t()
        E = ds["n_routed_experts"]
        k = ds["num_experts_per_tok"]
        G = ds["n_group"] or 1
        TG = ds["topk_group"] or 1
        if ds["scoring_func"] == "softmax":
            scores = logits.softmax(-1)
        else:
            scores = logits.sigmoid()
        bias = getattr(gate, "e_score_correction_bias", None)
        choice = scores + bias if ds["topk_method"] == "noaux_tc" else scores
        gaps = []
        sel = []
        for t in range(h.shape[0]):
            c = choice[t]
            if ds["topk_method"] == "greedy":
                masked = c
            else:
                grouped = c.view(G, E // G)
                if ds["topk_method"] == "group_limited_greedy":
                    gs = grouped.max(-1).values
                else:
                    gs = grouped.topk(2, -1).values.sum(-1)
                if TG < G:
                    sgs = gs.sort(descending=True).values
                    gaps.append(float(sgs[TG - 1] - sgs[TG]))
                keep = torch.zeros(G, dtype=torch.bool)
                keep[gs.topk(TG).indices] = True
                keep = keep.repeat_interleave(E // G)
                fill = 0.0 if ds["topk_method"] == "group_limited_greedy" else float("-inf")
                masked = c.masked_fill(~keep, fill)
                if ds["topk_method"] == "noaux_tc":
                    # DeepSeek-V3's HF-hub modeling_deepseek.py fills with 0.0 instead of -inf; make
                    # sure this fixture does not depend on that difference.
                    alt = set(c.masked_fill(~keep, 0.0).topk(k).indices.tolist())
                    if alt != set(masked.topk(k).indices.tolist()):
                        zero_fill_differs += 1
            s = masked.sort(descending=True).values
            gaps.append(float(s[k - 1] - s[k]))
            chosen = masked.topk(k).indices.tolist()
            sel.append(sorted(chosen))
            if ds["topk_method"] == "noaux_tc":
                unbiased = scores[t].view(G, E // G)
                gsu = unbiased.topk(2, -1).values.sum(-1)
                keep_u = torch.zeros(G, dtype=torch.bool)
                keep_u[gsu.topk(TG).indices] = True
                keep_u = keep_u.repeat_interleave(E // G)
                if set(scores[t].masked_fill(~keep_u, float("-inf")).topk(k).indices.tolist()) != set(chosen):
                    n_bias_changed += 1
        used = sorted({e for s_ in sel for e in s_})
        rep["layers"][li] = {"experts_used": used, "min_gap": min(gaps)}
        min_gap = min(min_gap, min(gaps))
    rep["min_route_gap"] = min_gap
    rep["tokens_routed_differently_because_of_bias"] = n_bias_changed
    rep["zero_vs_neginf_mask_differs"] = zero_fill_differs
    return rep


def check_fixture_quality(spec, logits, route):
    top = np.argsort(-logits, axis=-1)
    top1 = top[:, 0]
    gaps = logits[np.arange(len(top1)), top[:, 0]] - logits[np.arange(len(top1)), top[:, 1]]
    problems = []
    if len(set(top1.tolist())) < MIN_DISTINCT_TOP1:
        problems.append(f"only {len(set(top1.tolist()))} distinct top-1 tokens")
    if gaps.min() < MIN_TOP1_GAP:
        problems.append(f"top-1 logit gap {gaps.min():.2e}")
    if route["min_route_gap"] < MIN_ROUTE_GAP:
        problems.append(f"routing gap {route['min_route_gap']:.2e}")
    for li, r in route["layers"].items():
        if len(r["experts_used"]) < MIN_EXPERTS_USED:
            problems.append(f"layer {li} uses experts {r['experts_used']}")
    if spec["ds"]["topk_method"] == "noaux_tc":
        if route["zero_vs_neginf_mask_differs"]:
            problems.append("routing depends on 0.0 vs -inf group masking")
        if spec["name"] == "v3" and route["tokens_routed_differently_because_of_bias"] < 4:
            problems.append("e_score_correction_bias changes too few routing decisions")
    return problems, int(len(set(top1.tolist()))), float(gaps.min())


# --------------------------------------------------------------------------------------------
# Independent re-implementation of DeepSeek's ORIGINAL semantics (float64), used only to check
# that transformers' reference and the written files (DeepSeek names + config.json) agree with
# the formulas in the header. It reads config.json the way a loader must (both rope spellings,
# DeepSeek defaults for keys a transformers-5 config lacks).
# --------------------------------------------------------------------------------------------


def ds_yarn_get_mscale(scale=1.0, mscale=1.0):
    if scale <= 1:
        return 1.0
    return 0.1 * mscale * math.log(scale) + 1.0


def read_rope(cfg):
    theta = cfg.get("rope_theta")
    rs = cfg.get("rope_scaling")
    rp = cfg.get("rope_parameters")
    if rs is None and rp is not None:
        rs = rp
        theta = rp.get("rope_theta", theta)
    if theta is None:
        theta = 10000.0
    rtype = "default"
    if rs:
        rtype = rs.get("type", rs.get("rope_type", "default"))
    return float(theta), rtype, rs


def reference_forward(cfg: dict, W: dict, tokens):
    dt = torch.float64
    W = {k: v.to(dt) for k, v in W.items()}
    mt = cfg["model_type"]
    H = cfg["hidden_size"]
    nh = cfg["num_attention_heads"]
    dn, dr, dv = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"]
    eps = cfg["rms_norm_eps"]
    n_layers = cfg["num_hidden_layers"]
    E = cfg.get("n_routed_experts")
    k = cfg.get("num_experts_per_tok")
    fkdr = cfg.get("first_k_dense_replace", 0)
    freq = cfg.get("moe_layer_freq", 1)
    scoring = cfg.get("scoring_func", "softmax" if mt == "deepseek_v2" else "sigmoid")
    method = cfg.get("topk_method", "greedy" if mt == "deepseek_v2" else "noaux_tc")
    G = cfg.get("n_group") or 1
    TG = cfg.get("topk_group") or 1
    norm_topk = cfg.get("norm_topk_prob", False)
    rsf = cfg.get("routed_scaling_factor", 1.0)

    theta, rtype, rs = read_rope(cfg)
    idx = torch.arange(0, dr, 2, dtype=dt)
    freq_extra = 1.0 / (theta ** (idx / dr))
    softmax_scale = (dn + dr) ** -0.5
    cos_sin_mscale = 1.0
    if rtype == "yarn":
        factor = rs["factor"]
        orig = rs["original_max_position_embeddings"]
        beta_fast, beta_slow = rs.get("beta_fast", 32), rs.get("beta_slow", 1)
        mscale, mscale_all_dim = rs.get("mscale", 1), rs.get("mscale_all_dim", 0)
        freq_inter = 1.0 / (factor * theta ** (idx / dr))

        def corr_dim(nrot):
            return (dr * math.log(orig / (nrot * 2 * math.pi))) / (2 * math.log(theta))

        low = max(math.floor(corr_dim(beta_fast)), 0)
        high = min(math.ceil(corr_dim(beta_slow)), dr - 1)
        if low == high:
            high += 0.001
        ramp = ((torch.arange(dr // 2, dtype=dt) - low) / (high - low)).clamp(0, 1)
        inv_freq_mask = 1.0 - ramp
        inv_freq = freq_inter * (1 - inv_freq_mask) + freq_extra * inv_freq_mask
        cos_sin_mscale = ds_yarn_get_mscale(factor, mscale) / ds_yarn_get_mscale(factor, mscale_all_dim)
        if mscale_all_dim:
            m = ds_yarn_get_mscale(factor, mscale_all_dim)
            softmax_scale = softmax_scale * m * m
    else:
        inv_freq = freq_extra
    T = len(tokens)
    pos = torch.arange(T, dtype=dt)
    ang = torch.outer(pos, inv_freq)  # [T, dr/2]
    cos, sin = ang.cos() * cos_sin_mscale, ang.sin() * cos_sin_mscale

    def rope(x):  # x [..., T, dr], interleaved pairs (x[2i], x[2i+1]) rotated by ang[:, i]
        x0, x1 = x[..., 0::2], x[..., 1::2]
        return torch.stack([x0 * cos - x1 * sin, x1 * cos + x0 * sin], -1).flatten(-2)

    def rms(x, w):
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))

    def lin(x, name):
        return x @ W[name].t()

    def mlp(x, p):
        return lin(F.silu(lin(x, p + "gate_proj.weight")) * lin(x, p + "up_proj.weight"), p + "down_proj.weight")

    x = W["model.embed_tokens.weight"][torch.tensor(tokens)]
    causal = torch.full((T, T), float("-inf"), dtype=dt).triu(1)
    for L in range(n_layers):
        p = f"model.layers.{L}."
        h = rms(x, W[p + "input_layernorm.weight"])
        a = p + "self_attn."
        if cfg.get("q_lora_rank") is None:
            q = lin(h, a + "q_proj.weight")
        else:
            q = lin(rms(lin(h, a + "q_a_proj.weight"), W[a + "q_a_layernorm.weight"]), a + "q_b_proj.weight")
        q = q.view(T, nh, dn + dr).transpose(0, 1)  # [nh, T, dn+dr]
        q_nope, q_pe = q[..., :dn], rope(q[..., dn:])
        ckv = lin(h, a + "kv_a_proj_with_mqa.weight")
        c, k_pe = ckv[:, : cfg["kv_lora_rank"]], rope(ckv[:, cfg["kv_lora_rank"] :])
        kv = lin(rms(c, W[a + "kv_a_layernorm.weight"]), a + "kv_b_proj.weight").view(T, nh, dn + dv).transpose(0, 1)
        k_nope, v = kv[..., :dn], kv[..., dn:]
        s = (q_nope @ k_nope.transpose(-1, -2) + q_pe @ k_pe.t()) * softmax_scale + causal
        o = (s.softmax(-1) @ v).transpose(0, 1).reshape(T, nh * dv)
        x = x + lin(o, a + "o_proj.weight")
        h = rms(x, W[p + "post_attention_layernorm.weight"])
        m = p + "mlp."
        if E is not None and L >= fkdr and L % freq == 0:
            logits = lin(h, m + "gate.weight")
            scores = logits.softmax(-1) if scoring == "softmax" else logits.sigmoid()
            if method == "greedy":
                tw, ti = scores.topk(k, -1)
            elif method == "group_limited_greedy":
                gs = scores.view(T, G, -1).max(-1).values
                gi = gs.topk(TG, -1).indices
                gm = torch.zeros_like(gs).scatter_(1, gi, 1).bool()
                tmp = scores.masked_fill(~gm.repeat_interleave(E // G, 1), 0.0)
                tw, ti = tmp.topk(k, -1)
            elif method == "noaux_tc":
                sfc = scores + W[m + "gate.e_score_correction_bias"]
                gs = sfc.view(T, G, -1).topk(2, -1).values.sum(-1)
                gi = gs.topk(TG, -1).indices
                gm = torch.zeros_like(gs).scatter_(1, gi, 1).bool()
                tmp = sfc.masked_fill(~gm.repeat_interleave(E // G, 1), float("-inf"))
                ti = tmp.topk(k, -1).indices
                tw = scores.gather(1, ti)
            else:
                raise ValueError(method)
            if mt == "deepseek_v2":  # DeepSeek-V2 MoEGate: normalise OR scale
                if k > 1 and norm_topk:
                    tw = tw / (tw.sum(-1, keepdim=True) + 1e-20)
                else:
                    tw = tw * rsf
            else:  # DeepSeek-V3 MoEGate: normalise (optional) AND scale
                if k > 1 and norm_topk:
                    tw = tw / (tw.sum(-1, keepdim=True) + 1e-20)
                tw = tw * rsf
            y = torch.zeros_like(h)
            for t in range(T):
                for j in range(k):
                    y[t] += tw[t, j] * mlp(h[t : t + 1], f"{m}experts.{int(ti[t, j])}.")[0]
            y = y + mlp(h, m + "shared_experts.")
        else:
            y = mlp(h, m)
        x = x + y
    x = rms(x, W["model.norm.weight"])
    return lin(x, "lm_head.weight").float().numpy()


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


def build_model(spec, seed):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    cfg = hf_config(spec)
    cls = DeepseekV2ForCausalLM if spec["arch"] == "v2" else DeepseekV3ForCausalLM
    model = cls(cfg).to(torch.float32).eval()
    init_weights(model, spec, gen)
    if spec["dtype"] == "bfloat16":
        round_to_bf16_(model)
    tokens = torch.randint(2, spec["ds"]["vocab_size"], (T_TOKENS,), generator=gen).tolist()
    return model, tokens


def generate(spec, out_root):
    name = spec["name"]
    for attempt in range(MAX_SEED_TRIES):
        seed = spec["seed"] + 7919 * attempt
        model, tokens = build_model(spec, seed)
        full = logits_full(model, tokens)
        route = routing_report(model, spec, tokens)
        problems, n_top1, top1_gap = check_fixture_quality(spec, full, route)
        if not problems:
            break
        print(f"  [{name}] seed {seed} rejected: {'; '.join(problems)}")
    else:
        raise RuntimeError(f"{name}: no acceptable seed")
    incr = logits_incremental(model, tokens, PREFILL)
    diff = float(np.abs(full - incr).max())

    out_dir = os.path.join(out_root, name)
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    written = []

    # config.json
    if spec["config_style"] == "deepseek":
        cfg_json = deepseek_config_json(spec)
    else:
        # exactly what `model.save_pretrained` writes (the DeepSeek-only keys scoring_func, topk_method,
        # moe_layer_freq, ... survive as extra attributes, as when re-saving a hub DeepSeek checkpoint)
        with tempfile.TemporaryDirectory() as td:
            model.save_pretrained(td)
            with open(os.path.join(td, "config.json")) as fh:
                cfg_json = json.load(fh)
    with open(os.path.join(out_dir, "config.json"), "w") as fh:
        json.dump(cfg_json, fh, indent=2)
        fh.write("\n")
    written.append("config.json")

    sd = deepseek_state_dict(model)
    written += write_safetensors(out_dir, sd, spec["dtype"], spec["shards"])

    with open(os.path.join(out_dir, "tokens.json"), "w") as fh:
        json.dump({"tokens": tokens, "prefill": PREFILL}, fh)
        fh.write("\n")
    written.append("tokens.json")
    np.save(os.path.join(out_dir, "logits_full.npy"), full.astype(np.float32))
    np.save(os.path.join(out_dir, "logits_incr.npy"), incr.astype(np.float32))
    written += ["logits_full.npy", "logits_incr.npy"]

    meta = OrderedDict(
        name=name,
        seed=seed,
        weights_dtype=spec["dtype"],
        max_abs_full_minus_incr=diff,
        logits_abs_max=float(np.abs(full).max()),
        logits_std=float(full.std()),
        distinct_top1=n_top1,
        min_top1_logit_gap=top1_gap,
        min_routing_gap=route["min_route_gap"],
        experts_used_per_moe_layer={str(k): v["experts_used"] for k, v in route["layers"].items()},
        tokens_routed_differently_because_of_e_score_correction_bias=(
            route["tokens_routed_differently_because_of_bias"] if spec["arch"] == "v3" else None
        ),
        torch=torch.__version__,
        transformers=transformers.__version__,
        safetensors=safetensors.__version__,
        numpy=np.__version__,
    )
    with open(os.path.join(out_dir, "meta.json"), "w") as fh:
        json.dump(meta, fh, indent=2)
        fh.write("\n")
    written.append("meta.json")

    for f in written:
        print(f"  wrote {os.path.join(out_dir, f)} ({os.path.getsize(os.path.join(out_dir, f))} bytes)")
    print(
        f"  [{name}] seed={seed} max|full-incr|={diff:.3e} distinct_top1={n_top1} "
        f"min_top1_gap={top1_gap:.3e} min_route_gap={route['min_route_gap']:.3e} "
        f"experts_used={ {k: len(v['experts_used']) for k, v in route['layers'].items()} }"
        + (f" bias_changed={route['tokens_routed_differently_because_of_bias']}" if spec["arch"] == "v3" else "")
    )
    return model, full


@torch.no_grad()
def verify(spec, out_root, model, full):
    """Reload with from_pretrained and compare; cross-check file layout against save_pretrained;
    run the independent float64 DeepSeek reference on the written files."""
    name = spec["name"]
    d = os.path.join(out_root, name)
    cls = DeepseekV2ForCausalLM if spec["arch"] == "v2" else DeepseekV3ForCausalLM
    saved = np.load(os.path.join(d, "logits_full.npy"))
    tokens = json.load(open(os.path.join(d, "tokens.json")))["tokens"]

    # 1. from_pretrained of the written directory (DeepSeek names, our config.json) -> identical logits
    re = cls.from_pretrained(d, dtype=torch.float32, attn_implementation="eager", experts_implementation="eager")
    re.eval()
    rl = logits_full(re, tokens)
    d1 = float(np.abs(rl - saved).max())
    assert d1 == 0.0, f"{name}: reloaded logits differ by {d1}"
    assert dict(re.config.rope_parameters) == dict(model.config.rope_parameters), (
        re.config.rope_parameters,
        model.config.rope_parameters,
    )
    # 2. our per-expert split == transformers' own save_pretrained (reverse weight conversion)
    W = read_safetensors_dir(d)
    with tempfile.TemporaryDirectory() as td:
        model.save_pretrained(td)
        hf = read_safetensors_dir(td)
    assert set(hf) == set(W), (set(hf) ^ set(W))
    for n in W:
        assert W[n].dtype == (torch.float32 if spec["dtype"] == "float32" or n.endswith("bias") else torch.bfloat16)
        assert torch.equal(W[n].float(), hf[n].float()), n
    # 3. independent DeepSeek-semantics reference (float64) from the written files
    cfg = json.load(open(os.path.join(d, "config.json")))
    ref = reference_forward(cfg, {k: v.float() for k, v in W.items()}, tokens)
    d3 = float(np.abs(ref - saved).max())
    assert np.array_equal(ref.argmax(-1), saved.argmax(-1)), f"{name}: argmax differs from f64 reference"
    assert d3 < 1e-4, f"{name}: transformers vs f64 DeepSeek reference differ by {d3}"
    print(f"  [{name}] verify: from_pretrained max diff={d1:.1e}; names/values == save_pretrained; "
          f"f64 DeepSeek-reference max diff={d3:.2e}")
    return d3


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures"))
    ap.add_argument("--only", nargs="*", help="fixture names to generate")
    args = ap.parse_args()
    if transformers.__version__ != EXPECTED_TRANSFORMERS:
        print(f"warning: written with transformers {EXPECTED_TRANSFORMERS}, running {transformers.__version__}",
              file=sys.stderr)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    out_root = os.path.normpath(args.out)
    os.makedirs(out_root, exist_ok=True)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"safetensors {safetensors.__version__}, numpy {np.__version__}")
    for spec in FIXTURES:
        if args.only and spec["name"] not in args.only:
            continue
        print(f"fixture {spec['name']} -> {os.path.join(out_root, spec['name'])}")
        model, full = generate(spec, out_root)
        verify(spec, out_root, model, full)
    print("done")


if __name__ == "__main__":
    main()
