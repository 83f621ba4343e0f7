#!/usr/bin/env python3
"""Train moela's default model: a small DeepSeek-V3-architecture MoE (transformers' DeepseekV3ForCausalLM),
fp32 on CPU, one thread, seeded. Exports an HF directory in DeepSeek's own spelling at every checkpoint.

  OMP_NUM_THREADS=1 python3 tools/train/train.py --build models/build --minutes 85
  python3 tools/train/train.py --build models/build --bench       # tokens/s of one training step

Inputs: BUILD/corpus/docs.jsonl (get_corpus.sh), BUILD/tokenizer/ (train_tokenizer.py).
Outputs: BUILD/hf/ (config.json, model.safetensors, tokenizer files), BUILD/ckpt.pt (resumable state),
BUILD/train_log.jsonl.
"""
import argparse, json, math, os, random, sys, time

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np
import torch

torch.set_num_threads(1)
import transformers
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
from gen_fixtures import deepseek_state_dict, write_safetensors  # noqa: E402  (our own fixture exporter)

# ---------------------------------------------------------------------------------------------------------
# Architecture. DeepSeek's config spelling; every dimension that moela quantizes is a multiple of 32.
# ---------------------------------------------------------------------------------------------------------
DS = dict(
    vocab_size=8192,
    hidden_size=256,
    intermediate_size=768,  # the dense first layer
    moe_intermediate_size=256,
    num_hidden_layers=6,
    first_k_dense_replace=1,
    moe_layer_freq=1,
    n_routed_experts=16,
    n_shared_experts=1,
    num_experts_per_tok=2,
    n_group=4,
    topk_group=2,
    topk_method="noaux_tc",
    scoring_func="sigmoid",
    norm_topk_prob=True,
    routed_scaling_factor=2.5,
    num_attention_heads=8,
    num_key_value_heads=8,
    q_lora_rank=64,
    kv_lora_rank=64,
    qk_nope_head_dim=32,
    qk_rope_head_dim=32,
    v_head_dim=32,
    max_position_embeddings=1024,
    rope_theta=10000.0,
    rope_scaling=dict(type="yarn", factor=4.0, original_max_position_embeddings=256, beta_fast=32, beta_slow=1,
                      mscale=1.0, mscale_all_dim=1.0),
    rms_norm_eps=1e-6,
    hidden_act="silu",
    bos_token_id=0,
    eos_token_id=1,
    tie_word_embeddings=False,
    attention_bias=False,
    attention_dropout=0.0,
    initializer_range=0.02,
    aux_loss_alpha=0.0,
    seq_aux=True,
    ep_size=1,
    num_nextn_predict_layers=0,
    pretraining_tp=1,
    use_cache=True,
)


def make_config(ds):
    ds = dict(ds)
    rs, theta = ds.pop("rope_scaling"), ds.pop("rope_theta")
    rp = dict(rs, rope_theta=theta) if rs else dict(rope_type="default", rope_theta=theta)
    cls = DeepseekV3Config
    known = {k: v for k, v in ds.items() if k in cls.__dataclass_fields__}
    cfg = cls(rope_parameters=rp, **known)
    for k, v in ds.items():
        if k not in cls.__dataclass_fields__:
            setattr(cfg, k, v)
    cfg._attn_implementation = "eager"
    cfg._experts_implementation = os.environ.get("MOELA_TRAIN_EXPERTS", "eager")
    return cfg


def deepseek_config_json(ds):
    out = {"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3"}
    for k in sorted(ds):
        out[k] = ds[k]
    out["torch_dtype"] = "float32"
    out["transformers_version"] = transformers.__version__
    return out


def count_params(model, ds):
    total = sum(p.numel() for p in model.parameters())
    emb = model.model.embed_tokens.weight.numel()
    per_expert = 3 * ds["hidden_size"] * ds["moe_intermediate_size"]
    n_moe = ds["num_hidden_layers"] - ds["first_k_dense_replace"]
    inactive = n_moe * (ds["n_routed_experts"] - ds["num_experts_per_tok"]) * per_expert
    return dict(total=total, active_per_token=total - inactive, active_excl_embedding=total - inactive - emb,
                embedding=emb, lm_head=model.lm_head.weight.numel(), per_expert=per_expert)


# ---------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------
CHAT_FORTUNE_PROMPTS = ["Tell me a fortune.", "Say something wise.", "Give me a quote.", "Tell me something funny."]


def val_doc_ids(n_docs, seed=1234, frac=0.01):
    r = random.Random(seed)
    return sorted(r.sample(range(n_docs), max(1, int(n_docs * frac))))


def encode_docs(build, tok, seed):
    """Token stream: per document <bos> text <eos>; some fortunes and Bible chapters are wrapped in the chat
    template (<bos><｜User｜>prompt<｜Assistant｜>text<eos>) so the model learns the chat format."""
    docs = [json.loads(l) for l in open(os.path.join(build, "corpus", "docs.jsonl"), encoding="utf-8")]
    val = set(val_doc_ids(len(docs)))
    r = random.Random(seed)
    U, A = tok.token_to_id("<｜User｜>"), tok.token_to_id("<｜Assistant｜>")
    train_docs, val_docs = [], []
    texts = [d["text"] for d in docs]
    encs = tok.encode_batch(texts, add_special_tokens=False)
    for i, (d, e) in enumerate(zip(docs, encs)):
        ids = e.ids
        chat = None
        if d["src"].startswith("fortunes") and r.random() < 0.15:
            chat = r.choice(CHAT_FORTUNE_PROMPTS)
        elif d["src"] == "kjv" and r.random() < 0.2:
            chat = "Read me " + d["text"].split("\n", 1)[0] + "."
        if chat is not None:
            ids = [U] + tok.encode(chat, add_special_tokens=False).ids + [A] + ids
        seq = [0] + ids + [1]
        (val_docs if i in val else train_docs).append(seq)
    r.shuffle(train_docs)
    train = np.array([t for s in train_docs for t in s], dtype=np.int32)
    valid = np.array([t for s in val_docs for t in s], dtype=np.int32)
    return train, valid, sorted(val)


# ---------------------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------------------
def export_hf(model, ds, tokdir, out):
    os.makedirs(out, exist_ok=True)
    tmp = out + ".tmp"
    os.makedirs(tmp, exist_ok=True)
    with open(os.path.join(tmp, "config.json"), "w") as fh:
        json.dump(deepseek_config_json(ds), fh, indent=2)
        fh.write("\n")
    write_safetensors(tmp, deepseek_state_dict(model), "float32", 1)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        with open(os.path.join(tokdir, f), "rb") as a, open(os.path.join(tmp, f), "wb") as b:
            b.write(a.read())
    for f in os.listdir(tmp):
        os.replace(os.path.join(tmp, f), os.path.join(out, f))
    os.rmdir(tmp)


# ---------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------
def moe_gates(model):
    return [(i, l.mlp.gate) for i, l in enumerate(model.model.layers) if hasattr(l.mlp, "experts")]


class LoadCounter:
    """Counts routed-expert selections per MoE layer (forward hooks on the routers)."""

    def __init__(self, model, n_exp):
        self.n = n_exp
        self.counts = {}
        self.hooks = [g.register_forward_hook(self._hook(i)) for i, g in moe_gates(model)]

    def _hook(self, i):
        def f(mod, inp, out):
            idx = out[2].detach().reshape(-1)
            c = torch.bincount(idx, minlength=self.n).to(torch.float64)
            self.counts[i] = self.counts.get(i, 0) + c
        return f

    def reset(self):
        self.counts = {}

    def remove(self):
        for h in self.hooks:
            h.remove()


@torch.no_grad()
def evaluate(model, valid, seq, max_batches=40, bs=8):
    model.eval()
    n = (len(valid) - 1) // seq
    starts = [i * seq for i in range(n)][: max_batches * bs]
    tot, cnt = 0.0, 0
    for b in range(0, len(starts), bs):
        xs = np.stack([valid[s: s + seq + 1] for s in starts[b: b + bs]])
        x = torch.from_numpy(xs[:, :-1]).long()
        y = torch.from_numpy(xs[:, 1:]).long()
        logits = model(input_ids=x, use_cache=False).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum")
        tot += float(loss)
        cnt += y.numel()
    model.train()
    return tot / max(cnt, 1)


def lr_at(step, progress, peak, warmup, floor=0.1):
    """Linear warmup over `warmup` steps, then cosine decay to floor*peak over the wall-clock budget
    (progress = elapsed / budget), so that the run ends on time whatever the machine's speed."""
    if step < warmup:
        return peak * (step + 1) / warmup
    p = min(1.0, max(0.0, progress))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(HERE, "..", "..", "models", "build"))
    ap.add_argument("--minutes", type=float, default=85.0, help="wall-clock training budget")
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--bias-u", type=float, default=1e-3, help="aux-loss-free bias update speed")
    ap.add_argument("--seed", type=int, default=20261130)
    ap.add_argument("--ckpt-minutes", type=float, default=10.0)
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: only the time budget)")
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--set", nargs="*", default=[], help="override DS keys: key=value (json)")
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    ds = dict(DS)
    for kv in a.set:
        k, v = kv.split("=", 1)
        ds[k] = json.loads(v)
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    rng = np.random.default_rng(a.seed)

    from tokenizers import Tokenizer
    tokdir = os.path.join(build, "tokenizer")
    tok = Tokenizer.from_file(os.path.join(tokdir, "tokenizer.json"))
    assert tok.get_vocab_size() == ds["vocab_size"], tok.get_vocab_size()
    t0 = time.time()
    train, valid, vids = encode_docs(build, tok, a.seed)
    print(f"tokens: train {len(train)}, valid {len(valid)} ({len(vids)} docs), encode {time.time() - t0:.1f}s",
          flush=True)

    cfg = make_config(ds)
    model = DeepseekV3ForCausalLM(cfg).float()
    model.train()
    pc = count_params(model, ds)
    print("params:", pc, flush=True)

    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (no_decay if (p.dim() < 2 or "norm" in n or n.endswith("gate.weight")) else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.wd}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    counter = LoadCounter(model, ds["n_routed_experts"])
    gates = dict(moe_gates(model))

    def batch():
        starts = rng.integers(0, len(train) - a.seq - 1, size=a.batch)
        xs = np.stack([train[s: s + a.seq + 1] for s in starts])
        return torch.from_numpy(xs[:, :-1]).long(), torch.from_numpy(xs[:, 1:]).long()

    def step_fn(step, progress):
        lr = lr_at(step, progress, a.lr, a.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = batch()
        counter.reset()
        logits = model(input_ids=x, use_cache=False).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        # DeepSeek-V3's auxiliary-loss-free balancing: b_e += u * sign(mean load - load_e)
        with torch.no_grad():
            for i, c in counter.counts.items():
                load = c.float()
                gates[i].e_score_correction_bias += a.bias_u * torch.sign(load.mean() - load)
        return float(loss.detach()), lr

    ckpt_path = os.path.join(build, "ckpt.pt")
    if a.bench:
        for i in range(6):
            t = time.time()
            l, _ = step_fn(i, 0.0)
            print(f"bench step {i}: {time.time() - t:.2f}s  {a.batch * a.seq / (time.time() - t):.0f} tok/s loss {l:.3f}",
                  flush=True)
        return

    # The schedule runs on wall-clock time: cosine over --minutes, then stop (checkpoint every --ckpt-minutes).
    start = time.time()
    budget = a.minutes * 60
    log = open(os.path.join(build, "train_log.jsonl"), "a")
    step, tokens_seen = 0, 0
    last_ckpt = time.time()
    ema = None
    while True:
        l, lr = step_fn(step, (time.time() - start) / budget)
        step += 1
        tokens_seen += a.batch * a.seq
        ema = l if ema is None else 0.98 * ema + 0.02 * l
        if step % 20 == 0:
            el = time.time() - start
            print(f"step {step} loss {l:.3f} ema {ema:.3f} lr {lr:.2e} {tokens_seen / el:.0f} tok/s "
                  f"elapsed {el / 60:.1f}m", flush=True)
            log.write(json.dumps(dict(step=step, loss=l, ema=ema, lr=lr, tokens=tokens_seen, t=el)) + "\n")
            log.flush()
        done = (a.steps and step >= a.steps) or time.time() - start >= budget
        if done or time.time() - last_ckpt > a.ckpt_minutes * 60:
            vl = evaluate(model, valid, a.seq)
            el = time.time() - start
            print(f"== step {step} val loss {vl:.4f} ppl {math.exp(vl):.2f} ({el / 60:.1f} min)", flush=True)
            log.write(json.dumps(dict(step=step, val_loss=vl, val_ppl=math.exp(vl), tokens=tokens_seen, t=el)) + "\n")
            log.flush()
            counter.remove()
            export_hf(model, ds, tokdir, os.path.join(build, "hf"))
            torch.save(dict(model=model.state_dict(), step=step, tokens=tokens_seen, val_loss=vl, args=vars(a),
                            ds=ds, params=pc, elapsed=el), ckpt_path)
            counter = LoadCounter(model, ds["n_routed_experts"])
            last_ckpt = time.time()
            if done:
                break
    json.dump(dict(steps=step, tokens_seen=tokens_seen, minutes=(time.time() - start) / 60, val_loss=vl,
                   val_ppl=math.exp(vl), params=pc, args=vars(a), threads=torch.get_num_threads(),
                   torch=torch.__version__, transformers=transformers.__version__,
                   train_tokens=int(len(train)), valid_tokens=int(len(valid)), val_doc_ids=vids),
              open(os.path.join(build, "train_summary.json"), "w"), indent=1)
    print("done", flush=True)


if __name__ == "__main__":
    main()
