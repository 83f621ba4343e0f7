#!/usr/bin/env python3
"""Generate the MTP fixture: the tiny V3 fixture plus a random multi-token-prediction block, and the
MTP module's reference logits computed in torch.

Usage:  python3 tools/gen_mtp_fixtures.py [--out tests/fixtures]
Needs:  pip install torch transformers safetensors numpy   (the versions tools/gen_fixtures.py names)
        and tests/fixtures/v3 (written by tools/gen_fixtures.py; its trunk is reused unchanged).

transformers' DeepseekV3ForCausalLM ignores the MTP layer, so the module is assembled here from transformers'
own DeepseekV3DecoderLayer and DeepseekV3RMSNorm and DeepSeek-V3's formulas (technical report §2.2; the
inference form of vLLM's and SGLang's deepseek_mtp, and llama.cpp's deepseek2 MTP graph):

    h_i      = the trunk's last hidden state at position i (after the last layer, BEFORE model.norm)
    x_i      = eh_proj(concat(enorm(embed(t_{i+1})), hnorm(h_i)))      embedding half FIRST
    y        = DeepseekV3DecoderLayer(layer_idx = num_hidden_layers)(x), causal over the pairs, positions 0..
    logits_i = shared_head.head(shared_head.norm(y_i))                  predicts t_{i+2}

Positions: the pair (h_i, t_{i+1}) is at position i here (vLLM's choice; llama.cpp puts it at i + 1). RoPE only
sees differences of positions inside the MTP layer's own cache, so both give the same logits.

Written to <out>/v3_mtp/: config.json (v3's with num_nextn_predict_layers = 1), model.safetensors (v3's tensors
unchanged + model.layers.{N}.{enorm, hnorm, eh_proj, shared_head.norm, shared_head.head, the decoder layer's
tensors under DeepSeek's per-expert names}; no embed_tokens, so the module shares the trunk's, as llama.cpp
allows), tokens.json (v3's), mtp_logits.npy [T-1, vocab] (row i: the module's logits from h_i and t_{i+1}),
meta.json. The shared head is its own random matrix (not lm_head) so that a loader ignoring it is caught.
Checks: transformers' trunk reproduces v3's saved logits (< 1e-4; exact with the version that wrote them), and
the hooked hidden states give those logits through model.norm + lm_head.
"""

import argparse
import json
import math
import os
import shutil
import sys
from collections import OrderedDict

import numpy as np
import safetensors
import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers.models.deepseek_v3.modeling_deepseek_v3 import (
    DeepseekV3DecoderLayer,
    DeepseekV3ForCausalLM,
    DeepseekV3RMSNorm,
)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_fixtures as gf  # noqa: E402  (the trunk's config, init and naming helpers)

SEED = 1717
NAME = "v3_mtp"


def build_block(cfg, n_layer, gen):
    """The MTP block: a DeepseekV3DecoderLayer carrying the module's extra tensors as attributes, so that its
    state_dict has DeepSeek's names relative to model.layers.{N}."""
    h = cfg.hidden_size
    block = DeepseekV3DecoderLayer(cfg, layer_idx=n_layer).to(torch.float32).eval()
    block.enorm = DeepseekV3RMSNorm(h, eps=cfg.rms_norm_eps)
    block.hnorm = DeepseekV3RMSNorm(h, eps=cfg.rms_norm_eps)
    block.eh_proj = torch.nn.Linear(2 * h, h, bias=False)
    block.shared_head = torch.nn.Module()
    block.shared_head.norm = DeepseekV3RMSNorm(h, eps=cfg.rms_norm_eps)
    block.shared_head.head = torch.nn.Linear(h, cfg.vocab_size, bias=False)
    gf.init_weights(block, None, gen)
    with torch.no_grad():
        # The head like lm_head (gen_fixtures' scale), larger than a plain linear so logits spread.
        block.shared_head.head.weight.mul_(2.0)
    gf.round_to_bf16_(block)
    return block.eval()


@torch.no_grad()
def trunk_hidden(model, tokens):
    """The trunk's hidden states after its last layer, before model.norm ([T, H]), and its logits."""
    got = {}

    def hook(_mod, _inp, out):
        got["h"] = out[0] if isinstance(out, tuple) else out

    handle = model.model.layers[-1].register_forward_hook(hook)
    ids = torch.tensor([tokens], dtype=torch.long)
    logits = model(input_ids=ids, use_cache=False).logits[0].float()
    handle.remove()
    return got["h"][0].float(), logits


@torch.no_grad()
def mtp_logits(model, block, hidden, tokens):
    """The module's logits for the pairs (h_i, t_{i+1}), i = 0..T-2, as one causal batch at positions 0..T-2."""
    n = len(tokens) - 1
    ids = torch.tensor(tokens[1:], dtype=torch.long)
    emb = model.model.embed_tokens(ids)  # the trunk's table: the block has no embed_tokens of its own
    x = block.eh_proj(torch.cat([block.enorm(emb), block.hnorm(hidden[:n])], dim=-1))[None]
    pos = torch.arange(n, dtype=torch.long)[None]
    pe = model.model.rotary_emb(x, pos)
    mask = torch.full((n, n), float("-inf")).triu(1)[None, None]
    y = block(x, attention_mask=mask, position_ids=pos, position_embeddings=pe, use_cache=False)
    y = y[0] if isinstance(y, tuple) else y
    return block.shared_head.head(block.shared_head.norm(y[0])).float()


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures"))
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    root = os.path.normpath(args.out)
    src = os.path.join(root, "v3")
    model = DeepseekV3ForCausalLM.from_pretrained(
        src, dtype=torch.float32, attn_implementation="eager", experts_implementation="eager"
    ).eval()
    cfg = model.config
    n_layer = cfg.num_hidden_layers
    tokens = json.load(open(os.path.join(src, "tokens.json")))["tokens"]

    hidden, trunk_logits = trunk_hidden(model, tokens)
    saved = np.load(os.path.join(src, "logits_full.npy"))
    via_hook = model.lm_head(model.model.norm(hidden)).float().numpy()
    d_trunk = float(np.abs(trunk_logits.numpy() - saved).max())
    d_hook = float(np.abs(via_hook - saved).max())
    # Bit-exact with the transformers that wrote v3; a later release may move the last bits.
    assert d_trunk < 1e-4, f"v3 trunk logits moved by {d_trunk}"
    assert d_hook < 1e-5, f"hooked hidden states do not give the trunk logits ({d_hook})"

    gen = torch.Generator().manual_seed(SEED)
    block = build_block(cfg, n_layer, gen)
    logits = mtp_logits(model, block, hidden, tokens).numpy()
    srt = np.sort(logits, axis=-1)
    top1_gap = float((srt[:, -1] - srt[:, -2]).min())

    out = os.path.join(root, NAME)
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    cfg_json = json.load(open(os.path.join(src, "config.json")), object_pairs_hook=OrderedDict)
    cfg_json["num_nextn_predict_layers"] = 1
    with open(os.path.join(out, "config.json"), "w") as fh:
        json.dump(cfg_json, fh, indent=2)
        fh.write("\n")
    tensors = OrderedDict(load_file(os.path.join(src, "model.safetensors")))
    for name, t in gf.deepseek_state_dict(block).items():
        full = f"model.layers.{n_layer}.{name}"
        tensors[full] = gf.cast_for_file(full, t, "bfloat16")
    save_file(tensors, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    shutil.copy(os.path.join(src, "tokens.json"), os.path.join(out, "tokens.json"))
    np.save(os.path.join(out, "mtp_logits.npy"), logits.astype(np.float32))
    meta = OrderedDict(
        name=NAME,
        trunk="v3 (unchanged)",
        seed=SEED,
        mtp_rows=int(logits.shape[0]),
        trunk_vs_v3_saved_max_diff=d_trunk,
        trunk_hook_max_diff=d_hook,
        logits_abs_max=float(np.abs(logits).max()),
        logits_std=float(logits.std()),
        distinct_top1=int(len(set(logits.argmax(-1).tolist()))),
        min_top1_logit_gap=top1_gap,
        torch=torch.__version__,
        transformers=transformers.__version__,
        safetensors=safetensors.__version__,
        numpy=np.__version__,
    )
    with open(os.path.join(out, "meta.json"), "w") as fh:
        json.dump(meta, fh, indent=2)
        fh.write("\n")
    for f in sorted(os.listdir(out)):
        print(f"  wrote {os.path.join(out, f)} ({os.path.getsize(os.path.join(out, f))} bytes)")
    print(f"  [{NAME}] rows={logits.shape[0]} min_top1_gap={top1_gap:.3e} hook diff={d_hook:.1e}")
    assert math.isfinite(top1_gap)


if __name__ == "__main__":
    main()
