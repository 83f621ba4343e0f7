#!/usr/bin/env python3
"""Train a multi-token-prediction (MTP) module for moela's default model on its FROZEN trunk.

  OMP_NUM_THREADS=1 python3 tools/train/train_mtp.py --build models/build --minutes 30
  python3 tools/train/train_mtp.py --build models/build --check-trunk [--moela target/release/moela]

The trunk is exactly the one moela runs: every tensor of models/moela-tiny-v3.gguf dequantized (Q8_0 -> f32
with the gguf package) into transformers' DeepseekV3ForCausalLM; --check-trunk compares its logits with the
Q8_0-weight reference of tests/fixtures/default_model and, given --moela, with `moela logits` on the same file.

The module follows DeepSeek-V3 (technical report §2.2) and tools/gen_mtp_fixtures.py:
    h_i      = the trunk's hidden state after its last layer, BEFORE model.norm
    x_i      = eh_proj(concat(enorm(embed(t_{i+1})), hnorm(h_i)))          (the trunk's embedding table)
    y        = one decoder layer (MLA + MoE, layer index 6), causal over the pairs, positions 0..
    logits_i = lm_head(shared_head.norm(y_i))                               (the trunk's lm_head) -> t_{i+2}
Loss: DeepSeek's MTP loss for depth 1, the mean cross-entropy of the module's prediction of t_{i+2}.
Only the module trains (embedding, lm_head and the trunk are frozen). Its decoder layer starts as a copy of
the trunk's last layer (a MoE layer already tuned to this residual stream and this lm_head); eh_proj starts as
[small random | identity], so at step 0 the module is that last layer applied once more to the normalised h_i.
The router bias e_score_correction_bias follows DeepSeek-V3's auxiliary-loss-free rule as in train.py.

Inputs: BUILD/corpus/docs.jsonl, BUILD/tokenizer/ (the trunk's tokenizer: get_corpus.sh, train_tokenizer.py;
checked against the GGUF's vocabulary). Training windows come from the training split only (the validation
documents of train.val_doc_ids are held out, as for the trunk).
Outputs: BUILD/mtp/mtp_block.safetensors (model.layers.6.* in DeepSeek's spelling, per-expert names, f32),
BUILD/mtp/log.jsonl, BUILD/mtp/summary.json.
"""
import argparse, json, math, os, subprocess, sys, tempfile, time

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np
import torch

torch.set_num_threads(1)
import transformers
from transformers import DeepseekV3ForCausalLM
from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3DecoderLayer, DeepseekV3RMSNorm

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, ".."))
import train as T  # noqa: E402  (the trunk's architecture, data pipeline and split)
from gen_fixtures import deepseek_state_dict  # noqa: E402

TRUNK_SEED = 20261130  # train.py's --seed default, which the committed trunk was trained with
DEFAULT_GGUF = os.path.join(ROOT, "models", "moela-tiny-v3.gguf")


# ---------------------------------------------------------------------------------------------------------
# The trunk from the GGUF
# ---------------------------------------------------------------------------------------------------------
def gguf_arrays(path, only_trunk=True):
    """name -> float32 numpy array (numpy axis order, i.e. GGUF dims reversed), dequantized."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    r = GGUFReader(path)
    n_layer = int(r.fields["deepseek2.block_count"].contents())
    nn = r.fields.get("deepseek2.nextn_predict_layers")
    n_trunk = n_layer - (int(nn.contents()) if nn is not None else 0)
    out = {}
    for t in r.tensors:
        if only_trunk and t.name.startswith("blk.") and int(t.name.split(".")[1]) >= n_trunk:
            continue
        shape = tuple(int(d) for d in reversed(t.shape))
        out[t.name] = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(shape)
    return out, n_trunk, r


def hf_state_from_gguf(a, n_layer, ds):
    """The inverse of moela convert's deepseek2 layout, into transformers' DeepseekV3 state_dict names."""
    nh, dn, dv = ds["num_attention_heads"], ds["qk_nope_head_dim"], ds["v_head_dim"]
    t = lambda x: torch.from_numpy(np.array(x, dtype=np.float32))  # noqa: E731
    sd = {"model.embed_tokens.weight": t(a["token_embd.weight"]), "model.norm.weight": t(a["output_norm.weight"]),
          "lm_head.weight": t(a["output.weight"])}
    for l in range(n_layer):
        g = lambda n: a[f"blk.{l}.{n}"]  # noqa: E731
        p = f"model.layers.{l}."
        sd[p + "input_layernorm.weight"] = t(g("attn_norm.weight"))
        sd[p + "post_attention_layernorm.weight"] = t(g("ffn_norm.weight"))
        sa = p + "self_attn."
        sd[sa + "q_a_proj.weight"] = t(g("attn_q_a.weight"))
        sd[sa + "q_a_layernorm.weight"] = t(g("attn_q_a_norm.weight"))
        sd[sa + "q_b_proj.weight"] = t(g("attn_q_b.weight"))
        sd[sa + "kv_a_proj_with_mqa.weight"] = t(g("attn_kv_a_mqa.weight"))
        sd[sa + "kv_a_layernorm.weight"] = t(g("attn_kv_a_norm.weight"))
        kb = g("attn_k_b.weight")  # [nh, kv_lora, dn]: per head, the K part of kv_b_proj transposed
        vb = g("attn_v_b.weight")  # [nh, dv, kv_lora]
        assert kb.shape[0] == nh and kb.shape[2] == dn and vb.shape[1] == dv
        kv_b = np.concatenate([kb.transpose(0, 2, 1), vb], axis=1)  # [nh, dn + dv, kv_lora]
        sd[sa + "kv_b_proj.weight"] = t(kv_b.reshape(nh * (dn + dv), -1))
        sd[sa + "o_proj.weight"] = t(g("attn_output.weight"))
        m = p + "mlp."
        if f"blk.{l}.ffn_gate_inp.weight" in a:
            sd[m + "gate.weight"] = t(g("ffn_gate_inp.weight"))
            sd[m + "gate.e_score_correction_bias"] = t(g("exp_probs_b.bias"))
            sd[m + "experts.gate_up_proj"] = t(np.concatenate([g("ffn_gate_exps.weight"), g("ffn_up_exps.weight")], 1))
            sd[m + "experts.down_proj"] = t(g("ffn_down_exps.weight"))
            for w in ("gate", "up", "down"):
                sd[m + f"shared_experts.{w}_proj.weight"] = t(g(f"ffn_{w}_shexp.weight"))
        else:
            for w in ("gate", "up", "down"):
                sd[m + f"{w}_proj.weight"] = t(g(f"ffn_{w}.weight"))
    return sd


def load_trunk(gguf_path):
    a, n_trunk, _ = gguf_arrays(gguf_path)
    ds = dict(T.DS)
    assert n_trunk == ds["num_hidden_layers"], n_trunk
    model = DeepseekV3ForCausalLM(T.make_config(ds)).float().eval()
    missing, unexpected = model.load_state_dict(hf_state_from_gguf(a, n_trunk, ds), strict=True)
    for p in model.parameters():
        p.requires_grad_(False)
    return model, ds


@torch.no_grad()
def check_trunk(model, moela=None, gguf_path=DEFAULT_GGUF):
    fx = os.path.join(ROOT, "tests", "fixtures", "default_model")
    tokens = json.load(open(os.path.join(fx, "tokens.json")))["tokens"]
    ours = model(input_ids=torch.tensor([tokens]), use_cache=False).logits[0].numpy()
    res = {}

    def cmp(name, ref):
        cos = (ours * ref).sum(-1) / (np.linalg.norm(ours, axis=-1) * np.linalg.norm(ref, axis=-1))
        d = dict(max_abs=float(np.abs(ours - ref).max()), cos_min=float(cos.min()), cos_median=float(np.median(cos)),
                 top1=int((ours.argmax(-1) == ref.argmax(-1)).sum()), rows=len(tokens))
        print(f"trunk vs {name}: {d}", flush=True)
        res[name] = d
        return d

    d = cmp("fixture logits_full_q8_0_weights.npy", np.load(os.path.join(fx, "logits_full_q8_0_weights.npy")))
    # fp32 compute in both; the fixture rounded the f32 checkpoint through Q8_0 itself (f16 scales), so a few
    # weights differ by one step: seen max 0.0041 on logits up to 11.7, row cosine >= 0.9999998.
    assert d["max_abs"] < 0.02 and d["cos_min"] > 0.99999 and d["top1"] == d["rows"], d
    if moela:
        with tempfile.TemporaryDirectory() as td:
            out = os.path.join(td, "l.npy")
            subprocess.run([moela, "logits", "-m", gguf_path, "--tokens", ",".join(map(str, tokens)), "--out", out],
                           check=True, stdout=subprocess.DEVNULL)
            d = cmp("moela logits (8-bit activations)", np.load(out))
        # moela quantizes activations to 8 bits for Q8_0 matmuls: the default_model test's tolerances.
        assert d["cos_min"] > 0.998 and d["top1"] >= d["rows"] - 1, d
    return res


# ---------------------------------------------------------------------------------------------------------
# The module
# ---------------------------------------------------------------------------------------------------------
class MTP(torch.nn.Module):
    def __init__(self, trunk, cfg, gen, init="copy"):
        super().__init__()
        h, n = cfg.hidden_size, cfg.num_hidden_layers
        self.block = DeepseekV3DecoderLayer(cfg, layer_idx=n).float()
        self.enorm = DeepseekV3RMSNorm(h, eps=cfg.rms_norm_eps)
        self.hnorm = DeepseekV3RMSNorm(h, eps=cfg.rms_norm_eps)
        self.eh_proj = torch.nn.Linear(2 * h, h, bias=False)
        self.head_norm = DeepseekV3RMSNorm(h, eps=cfg.rms_norm_eps)
        with torch.no_grad():
            if init == "copy":
                self.block.load_state_dict(trunk.model.layers[-1].state_dict())
            else:
                for name, p in self.block.named_parameters():
                    if p.dim() >= 2:
                        p.copy_(torch.randn(p.shape, generator=gen) * cfg.initializer_range)
            w = torch.randn((h, 2 * h), generator=gen) * cfg.initializer_range
            w[:, h:] = torch.eye(h)
            self.eh_proj.weight.copy_(w)
            self.head_norm.weight.copy_(trunk.model.norm.weight)
        self.trunk = [trunk]  # not a submodule: frozen, not saved with the module

    def forward(self, hidden, next_ids):
        trunk = self.trunk[0]
        b, s, _ = hidden.shape
        emb = trunk.model.embed_tokens(next_ids)
        x = self.eh_proj(torch.cat([self.enorm(emb), self.hnorm(hidden)], dim=-1))
        pos = torch.arange(s, dtype=torch.long)[None].expand(b, s)
        pe = trunk.model.rotary_emb(x, pos)
        mask = torch.full((s, s), float("-inf")).triu(1)[None, None]
        y = self.block(x, attention_mask=mask, position_ids=pos, position_embeddings=pe, use_cache=False)
        y = y[0] if isinstance(y, tuple) else y
        return trunk.lm_head(self.head_norm(y))

    def deepseek_tensors(self, n_layer):
        """model.layers.{N}.* in DeepSeek's spelling (per-expert names), as tools/gen_mtp_fixtures.py writes."""
        sd = dict(deepseek_state_dict(self.block))
        sd["enorm.weight"] = self.enorm.weight
        sd["hnorm.weight"] = self.hnorm.weight
        sd["eh_proj.weight"] = self.eh_proj.weight
        sd["shared_head.norm.weight"] = self.head_norm.weight
        return {f"model.layers.{n_layer}.{k}": v.detach().float().contiguous() for k, v in sd.items()}


def trunk_hidden(trunk, ids):
    """The last layer's output (before model.norm), [B, S, H], and the trunk's logits."""
    got = {}

    def hook(_m, _i, out):
        got["h"] = out[0] if isinstance(out, tuple) else out

    hd = trunk.model.layers[-1].register_forward_hook(hook)
    with torch.no_grad():
        normed = trunk.model(input_ids=ids, use_cache=False).last_hidden_state
    hd.remove()
    return got["h"], normed


@torch.no_grad()
def evaluate(trunk, mtp, valid, seq, bs=8, max_windows=None):
    """On the validation stream in windows of seq+2 tokens: the module's cross-entropy and top-1 accuracy for
    t_{i+2}, the trunk's for t_{i+1}, and how often the module's top-1 equals the trunk's own top-1 at the next
    position (the greedy acceptance of a 1-token draft, teacher-forced on held-out text)."""
    mtp.eval()
    n = (len(valid) - 2) // seq
    starts = [i * seq for i in range(n)][:max_windows]
    s = dict(mtp_loss=0.0, mtp_acc=0.0, agree=0.0, trunk_loss=0.0, trunk_acc=0.0, n=0)
    for b in range(0, len(starts), bs):
        xs = torch.from_numpy(np.stack([valid[p: p + seq + 2] for p in starts[b: b + bs]])).long()
        h, normed = trunk_hidden(trunk, xs[:, :seq + 1])
        tl = trunk.lm_head(normed)  # predicts t_{i+1}, i = 0..seq
        ml = mtp(h[:, :seq], xs[:, 1:seq + 1])  # predicts t_{i+2}, i = 0..seq-1
        y2 = xs[:, 2:seq + 2]
        s["mtp_loss"] += float(torch.nn.functional.cross_entropy(ml.reshape(-1, ml.shape[-1]), y2.reshape(-1),
                                                                 reduction="sum"))
        s["mtp_acc"] += float((ml.argmax(-1) == y2).sum())
        s["agree"] += float((ml.argmax(-1) == tl[:, 1:seq + 1].argmax(-1)).sum())
        s["trunk_loss"] += float(torch.nn.functional.cross_entropy(tl[:, :seq].reshape(-1, tl.shape[-1]),
                                                                   xs[:, 1:seq + 1].reshape(-1), reduction="sum"))
        s["trunk_acc"] += float((tl[:, :seq].argmax(-1) == xs[:, 1:seq + 1]).sum())
        s["n"] += y2.numel()
    mtp.train()
    return {k: (v / s["n"] if k != "n" else v) for k, v in s.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "models", "build"))
    ap.add_argument("--gguf", default=DEFAULT_GGUF)
    ap.add_argument("--minutes", type=float, default=30.0, help="wall-clock training budget")
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--bias-u", type=float, default=1e-3)
    ap.add_argument("--init", choices=["copy", "random"], default="copy")
    ap.add_argument("--seed", type=int, default=20261207)
    ap.add_argument("--eval-minutes", type=float, default=10.0)
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: only the time budget)")
    ap.add_argument("--eval-windows", type=int, default=None, help="validation windows (default: all)")
    ap.add_argument("--check-trunk", action="store_true", help="only compare the trunk's logits and exit")
    ap.add_argument("--moela", help="moela binary for --check-trunk (e.g. target/release/moela)")
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    gen = torch.Generator().manual_seed(a.seed)

    trunk, ds = load_trunk(a.gguf)
    chk = check_trunk(trunk, a.moela, a.gguf)
    if a.check_trunk:
        return

    from tokenizers import Tokenizer
    from gguf import GGUFReader

    tok = Tokenizer.from_file(os.path.join(build, "tokenizer", "tokenizer.json"))
    gv = GGUFReader(a.gguf).fields["tokenizer.ggml.tokens"].contents()
    vocab = tok.get_vocab()
    assert all(vocab.get(s) == i for i, s in enumerate(gv)), "BUILD/tokenizer is not the GGUF's tokenizer"
    t0 = time.time()
    # The trunk's seed: the same chat wrapping and the same train/validation split as the trunk saw.
    train, valid, vids = T.encode_docs(build, tok, TRUNK_SEED)
    print(f"tokens: train {len(train)}, valid {len(valid)} ({len(vids)} docs), encode {time.time() - t0:.1f}s",
          flush=True)

    mtp = MTP(trunk, trunk.config, gen, a.init)
    mtp.train()
    decay, no_decay, n_params = [], [], 0
    for n, p in mtp.named_parameters():
        if n.endswith("e_score_correction_bias"):
            p.requires_grad_(False)
            continue
        n_params += p.numel()
        (no_decay if (p.dim() < 2 or "norm" in n or n.endswith("gate.weight")) else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.wd}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    gate = mtp.block.mlp.gate
    load = {}
    gate.register_forward_hook(lambda m, i, o: load.__setitem__(
        "c", torch.bincount(o[2].detach().reshape(-1), minlength=ds["n_routed_experts"]).float()))

    outdir = os.path.join(build, "mtp")
    os.makedirs(outdir, exist_ok=True)
    log = open(os.path.join(outdir, "log.jsonl"), "w")
    print(f"trainable parameters: {n_params}", flush=True)
    ev = evaluate(trunk, mtp, valid, a.seq, max_windows=a.eval_windows)
    print(f"== step 0 val {ev}", flush=True)
    log.write(json.dumps(dict(step=0, t=0.0, **ev)) + "\n")
    log.flush()

    start = time.time()
    budget = a.minutes * 60
    step, seen, ema, last_ev = 0, 0, None, time.time()
    while True:
        lr = T.lr_at(step, (time.time() - start) / budget, a.lr, a.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        ss = rng.integers(0, len(train) - a.seq - 2, size=a.batch)
        xs = torch.from_numpy(np.stack([train[p: p + a.seq + 2] for p in ss])).long()
        h, _ = trunk_hidden(trunk, xs[:, :a.seq])
        logits = mtp(h, xs[:, 1:a.seq + 1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), xs[:, 2:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in mtp.parameters() if p.requires_grad], 1.0)
        opt.step()
        with torch.no_grad():
            c = load["c"]
            gate.e_score_correction_bias += a.bias_u * torch.sign(c.mean() - c)
        step += 1
        seen += a.batch * a.seq
        l = float(loss.detach())
        ema = l if ema is None else 0.98 * ema + 0.02 * l
        el = time.time() - start
        if step % 20 == 0:
            print(f"step {step} loss {l:.3f} ema {ema:.3f} lr {lr:.2e} {seen / el:.0f} tok/s {el / 60:.1f}m",
                  flush=True)
            log.write(json.dumps(dict(step=step, loss=l, ema=ema, lr=lr, tokens=seen, t=el)) + "\n")
            log.flush()
        done = (a.steps and step >= a.steps) or el >= budget
        if done or time.time() - last_ev > a.eval_minutes * 60:
            ev = evaluate(trunk, mtp, valid, a.seq, max_windows=a.eval_windows)
            print(f"== step {step} ({el / 60:.1f} min) val {ev}", flush=True)
            log.write(json.dumps(dict(step=step, tokens=seen, t=el, **ev)) + "\n")
            log.flush()
            from safetensors.torch import save_file
            save_file(mtp.deepseek_tensors(ds["num_hidden_layers"]), os.path.join(outdir, "mtp_block.safetensors"),
                      metadata={"format": "pt"})
            last_ev = time.time()
            if done:
                break
    json.dump(dict(steps=step, tokens_seen=seen, minutes=(time.time() - start) / 60, val=ev, args=vars(a),
                   trainable_params=n_params, trunk_check=chk, threads=torch.get_num_threads(),
                   torch=torch.__version__, transformers=transformers.__version__, train_tokens=int(len(train)),
                   valid_tokens=int(len(valid)), val_doc_ids=vids),
              open(os.path.join(outdir, "summary.json"), "w"), indent=1)
    print("done", flush=True)


if __name__ == "__main__":
    main()
