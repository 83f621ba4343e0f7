#!/usr/bin/env python3
"""Render models/README.md from the build's figures (train_summary.json, report.json, train_log.jsonl,
corpus/stats.json, corpus/debs.sha256).  python3 tools/train/write_report.py [--build models/build]"""
import argparse, json, math, os

HERE = os.path.dirname(os.path.abspath(__file__))

PKGS = [
    ("bible-kjv-text", "4.38", "`/usr/lib/bible.data` (read with `bible` from package `bible-kjv` 4.38)",
     "King James Version of the Bible (1611)", "public domain (KJV text; Debian copyright file: copyright expired)",
     "kjv"),
    ("fortunes", "1:1.99.1-7.3", "`/usr/share/games/fortunes/*` (all but ascii-art, zippy, translate-me, debian, "
     "perl, linuxcookie)", "fortune cookies: quotations, jokes, songs and poems",
     "BSD (fortune-mod collection, Debian copyright file)", "fortunes"),
    ("fortunes-min", "1:1.99.1-7.3", "`/usr/share/games/fortunes/literature`", "literary quotations",
     "BSD (as above)", "fortunes"),
    ("jargon-text", "4.4.7-4.1", "`/usr/share/doc/jargon-text/jargon.txt.gz`", "The Jargon File 4.4.7",
     "public domain (Debian copyright file)", "jargon"),
    ("dict-devil", "1.0-13.1", "`/usr/share/dictd/devil.dict.dz`", "Ambrose Bierce, The Devil's Dictionary (1911)",
     "public domain (Debian copyright file)", "devil"),
    ("fortunes-zh", "2.98", "`/usr/share/games/fortunes/{tang300,song100}`",
     "300 Tang poems and 100 Song ci (classical Chinese)",
     "the poems are public domain (8th-13th century); the Debian package as a whole is GPL-3.0+", "zh"),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(HERE, "..", "..", "models", "build"))
    ap.add_argument("--out", default=os.path.join(HERE, "..", "..", "models", "README.md"))
    a = ap.parse_args()
    b = os.path.abspath(a.build)
    S = json.load(open(os.path.join(b, "train_summary.json")))
    R = json.load(open(os.path.join(b, "report.json")))
    st = json.load(open(os.path.join(b, "corpus", "stats.json")))
    shas = dict(reversed(l.split()) for l in open(os.path.join(b, "corpus", "debs.sha256")))
    logs = [json.loads(l) for l in open(os.path.join(b, "train_log.jsonl"))]
    vals = [l for l in logs if "val_loss" in l]
    cfg = json.load(open(os.path.join(b, "hf", "config.json")))
    P = S["params"]
    L = []
    w = L.append
    w("# moela's default model\n")
    w("A small DeepSeek-V3-architecture mixture-of-experts model trained from scratch on this project's own machine "
      "(CPU, one thread), so that `moela run` and `moela chat` produce text on a fresh clone with no download. "
      "It exercises MLA with q-LoRA and YaRN, sigmoid `noaux_tc` routing with a non-zero "
      "`e_score_correction_bias`, group-limited top-k, a shared expert, a dense first layer, DeepSeek-V3's "
      "pre-tokenizer, special tokens and a chat template. It is a toy: it writes English-looking text in the "
      "styles of its corpus (King James Bible, fortune cookies, the Jargon File), not answers.\n")
    w("Everything below was produced by `tools/train/` (see *Reproduce*). The HF checkpoint "
      "(`models/build/hf/`, ignored by git) is converted with `moela convert` to the committed Q8_0 GGUF.\n")
    w("```sh\nmoela convert models/build/hf models/moela-tiny-v3.gguf --type q8_0\n```\n")
    w("<!-- LEAD: fill in the GGUF size and `moela bench` tokens/s here -->\n")

    w("## Corpus\n")
    w("All text comes from Debian 12 (bookworm) packages, fetched with `apt-get download` and unpacked with "
      "`dpkg-deb -x` by `tools/train/get_corpus.sh`; `tools/train/build_corpus.py` turns them into documents "
      "(ANSI colour codes stripped; one document per Bible chapter, fortune cookie or poem; the two dictionaries "
      "in ~3 kB chunks).\n")
    w("| Debian package | version | file(s) | content | licence | documents | UTF-8 MB |")
    w("|---|---|---|---|---|---|---|")
    for name, ver, files, what, lic, src in PKGS:
        n, c = st[src]
        cell = f"{n} | {c / 1e6:.2f}"
        if name == "fortunes":
            cell = f"{n} (with fortunes-min) | {c / 1e6:.2f} (with fortunes-min)"
        elif name == "fortunes-min":
            cell = "(counted with fortunes) | "
        w(f"| `{name}` | {ver} | {files} | {what} | {lic} | {cell} |")
    tot_docs = sum(v[0] for v in st.values())
    tot_mb = sum(v[1] for v in st.values()) / 1e6
    w(f"\nTotal: {tot_docs} documents, {tot_mb:.2f} MB of UTF-8 text ({S['train_tokens'] + S['valid_tokens']} "
      f"tokens with the trained tokenizer, document separators and chat wrapping included). "
      f"1% of the documents ({len(S['val_doc_ids'])}, {S['valid_tokens']} tokens, chosen by a seeded draw) are held "
      "out for validation and also left out of tokenizer training.\n")
    w("sha256 of the `.deb` files used:\n")
    w("```")
    for f, h in sorted(shas.items()):
        w(f"{h}  {f}")
    w("```\n")
    w("15% of the fortune cookies are wrapped in the chat template with a fixed prompt (\"Tell me a fortune.\", "
      "\"Say something wise.\", \"Give me a quote.\", \"Tell me something funny.\") and 20% of the Bible chapters as "
      "`<｜User｜>Read me <Book> <chapter>.<｜Assistant｜>…`, so the model has seen the chat format and ends "
      "assistant turns with `<｜end▁of▁sentence｜>`.\n")

    w("## Tokenizer\n")
    w(f"Byte-level BPE, {cfg['vocab_size']} entries (7 special + 256 byte symbols + merges), trained with Hugging "
      "Face `tokenizers` (`tools/train/train_tokenizer.py`, deterministic). The normalizer, pre-tokenizer "
      "(digits split in runs of 1-3, CJK runs isolated, DeepSeek's word/punctuation regex, ByteLevel without "
      "prefix space), post-processor and decoder are copied verbatim from DeepSeek-V3's `tokenizer.json`, so only "
      "the vocabulary differs from DeepSeek's. Special tokens (ids 0-6): `<｜begin▁of▁sentence｜>` (bos, 0), "
      "`<｜end▁of▁sentence｜>` (eos, 1), `<｜▁pad▁｜>` (pad, 2), `<｜User｜>` (3), `<｜Assistant｜>` (4), "
      "`<think>` (5), `</think>` (6). `tokenizer_config.json` sets bos/eos/pad, `add_bos_token: true` (every "
      "training document starts with bos) and a simplified DeepSeek-V3 chat template: bos, the system prompt(s), "
      "then `<｜User｜>`content and `<｜Assistant｜>`content`<｜end▁of▁sentence｜>` per turn (text up to `</think>` "
      "is dropped from assistant turns), and `<｜Assistant｜>` for a generation prompt. Note: transformers 5 "
      "loads it as `TokenizersBackend`, which does not add bos by itself (DeepSeek's own post-processor adds "
      "nothing); the scripts here add bos explicitly.\n")

    w("## Architecture\n")
    w("`DeepseekV3ForCausalLM` (transformers), config in DeepSeek's own spelling (`models/build/hf/config.json`):\n")
    w("| | |")
    w("|---|---|")
    rows = [
        ("layers", f"{cfg['num_hidden_layers']} (layer 0 dense, `first_k_dense_replace` {cfg['first_k_dense_replace']}, "
                   f"`moe_layer_freq` {cfg['moe_layer_freq']})"),
        ("hidden size", cfg["hidden_size"]),
        ("attention", f"MLA, {cfg['num_attention_heads']} heads, q_lora_rank {cfg['q_lora_rank']}, kv_lora_rank "
                      f"{cfg['kv_lora_rank']}, qk_nope {cfg['qk_nope_head_dim']}, qk_rope {cfg['qk_rope_head_dim']}, "
                      f"v_head {cfg['v_head_dim']}"),
        ("RoPE", f"YaRN factor {cfg['rope_scaling']['factor']}, original_max_position_embeddings "
                 f"{cfg['rope_scaling']['original_max_position_embeddings']}, beta_fast 32, beta_slow 1, mscale 1.0, "
                 f"mscale_all_dim 1.0, rope_theta {cfg['rope_theta']}, max_position_embeddings "
                 f"{cfg['max_position_embeddings']}"),
        ("dense FFN (layer 0)", f"SwiGLU, intermediate {cfg['intermediate_size']}"),
        ("MoE (layers 1-5)", f"{cfg['n_routed_experts']} routed experts (intermediate {cfg['moe_intermediate_size']}), "
                             f"top-{cfg['num_experts_per_tok']}, + {cfg['n_shared_experts']} shared expert"),
        ("router", f"sigmoid, `noaux_tc`, n_group {cfg['n_group']}, topk_group {cfg['topk_group']}, norm_topk_prob "
                   f"{str(cfg['norm_topk_prob']).lower()}, routed_scaling_factor {cfg['routed_scaling_factor']}, "
                   "`e_score_correction_bias` learned by DeepSeek's auxiliary-loss-free rule"),
        ("vocab", f"{cfg['vocab_size']}, untied embedding and lm_head"),
        ("norms", f"RMSNorm eps {cfg['rms_norm_eps']}"),
    ]
    for k, v in rows:
        w(f"| {k} | {v} |")
    w(f"\nParameters: **{P['total'] / 1e6:.2f} M total**, **{P['active_per_token'] / 1e6:.2f} M active per token** "
      f"({P['active_excl_embedding'] / 1e6:.2f} M without the embedding table). Embedding {P['embedding'] / 1e6:.2f} M, "
      f"lm_head {P['lm_head'] / 1e6:.2f} M, one routed expert {P['per_expert'] / 1e3:.0f} k. Every matrix dimension "
      "is a multiple of 32. At Q8_0 (34 bytes per 32 weights) the weights take about "
      f"{P['total'] * 34 / 32 / 1e6:.0f} MB.\n")

    w("## Training\n")
    A = S["args"]
    w(f"`tools/train/train.py`: fp32 on CPU, `torch.set_num_threads(1)` (OMP_NUM_THREADS=1), eager attention and "
      f"eager experts, seed {A['seed']}. AdamW (betas 0.9/0.95, weight decay {A['wd']} on matrices), peak LR "
      f"{A['lr']}, {A['warmup']} warm-up steps, then cosine decay to 10% over a wall-clock budget of "
      f"{A['minutes']:.0f} minutes (the schedule runs on elapsed time so that the run ends on time on a busy "
      f"machine), gradient clipping 1.0. Batches of {A['batch']} random windows of {A['seq']} tokens from the "
      "shuffled document stream (`<bos>` text `<eos>` per document). After each step the routers' "
      f"`e_score_correction_bias` moves by u = {A['bias_u']} towards balance, `b_e += u * sign(mean_load - load_e)` "
      "(DeepSeek-V3's auxiliary-loss-free balancing; no auxiliary loss). Checkpoint + export every 10 minutes.\n")
    w(f"Run: {S['steps']} steps, **{S['tokens_seen'] / 1e6:.2f} M tokens seen** "
      f"({S['tokens_seen'] / S['train_tokens']:.2f} epochs), **{S['minutes']:.1f} minutes** on one thread of a "
      f"2-core machine that was also building the Rust crate ({S['tokens_seen'] / S['minutes'] / 60:.0f} tokens/s "
      f"on average), torch {S['torch']}, transformers {S['transformers']}.\n")
    w("| step | tokens | minutes | val loss | val ppl |")
    w("|---|---|---|---|---|")
    for v in vals:
        w(f"| {v['step']} | {v['tokens'] / 1e6:.2f} M | {v['t'] / 60:.1f} | {v['val_loss']:.3f} | {v['val_ppl']:.1f} |")
    w(f"\n**Final validation loss {R['val_loss_full']:.3f} nats/token, perplexity {R['val_ppl_full']:.1f}** "
      f"(all {R['val_tokens']} held-out tokens, per-document streams; the table's figures use the same documents "
      "in 256-token windows).\n")

    w("## Expert usage (validation text)\n")
    w("Routed-expert selections per MoE layer over all held-out tokens (top-2, so each token counts twice). "
      "max/min: most over least used; H/Hmax: entropy of the usage distribution over log 16 (1 = uniform); "
      "top-4: share of the four most used experts.\n")
    w("| layer | counts per expert 0..15 | max/min | H/Hmax | top-4 share |")
    w("|---|---|---|---|---|")
    for li, s in sorted(R["usage"].items(), key=lambda kv: int(kv[0])):
        w(f"| {li} | {' '.join(str(c) for c in s['counts'])} | {s['max_over_min']:.1f} | {s['norm_entropy']:.3f} | "
          f"{s['top4_share']:.2f} |")
    w("\nOver the whole (mixed) validation set the load is nearly uniform: the auxiliary-loss-free bias did its job, "
      "as in DeepSeek-V3. Within one kind of text it is skewed, most in the deeper layers, which is what a "
      "single request sees (and what offloading and prefetch work with). max/min and H/Hmax per source:\n")
    srcs = sorted(R["skew_by_source"])
    w("| layer | " + " | ".join(f"{s_} max/min | {s_} H/Hmax" for s_ in srcs) + " |")
    w("|---|" + "---|---|" * len(srcs))
    for li in sorted(R["usage"], key=int):
        w(f"| {li} | " + " | ".join(f"{R['skew_by_source'][s_][li]['max_over_min']:.1f} | "
                                   f"{R['skew_by_source'][s_][li]['norm_entropy']:.3f}" for s_ in srcs) + " |")
    w("\n(`zh` is only 2 held-out poems, so its figures are noisy.)\n")
    w("\nThe four most used experts per layer depend on the kind of text (validation documents by source):\n")
    srcs = sorted(R["top4_by_source"])
    w("| layer | " + " | ".join(srcs) + " |")
    w("|---|" + "---|" * len(srcs))
    for li in sorted(R["usage"], key=int):
        w(f"| {li} | " + " | ".join(",".join(str(e) for e in R["top4_by_source"][s].get(li, [])) for s in srcs) + " |")
    w("")

    w("## Samples (transformers, fp32)\n")
    w("48 new tokens after `<bos>` + prompt. Greedy; temperature 0.8 (no top-k/top-p, seed 1234); and temperature "
      "0.8 with top-p 0.95 and repetition penalty 1.3 (seed 1234). Chat prompts use the chat template and greedy "
      "decoding with repetition penalty 1.3.\n")
    for s in R["samples"]:
        w(f"**{s['prompt']}**\n")
        for k in ("greedy", "temp0_8", "temp0_8_top_p0_95_rep1_3", "greedy_rep1_3"):
            if k in s:
                txt = s[k].replace("\n", "⏎").replace("\t", "⇥")
                w(f"- {k}: `{txt}`")
        w("")

    G = R["golden"]
    w("## Golden test reference\n")
    w(f"`tests/fixtures/default_model/` (from the final checkpoint, by `tools/train/finalize.py`): `tokens.json` "
      f"({G['n_tokens']} tokens: `<bos>` + \"{G['prompt']}\", prefill {G['prefill']}), `logits_full.npy` (one "
      "forward pass, float32 [T, vocab]), `logits_incr.npy` (prefill, then one token at a time through the KV "
      f"cache), `meta.json`. Reference: transformers {S['transformers']} `DeepseekV3ForCausalLM`, fp32, eager. "
      f"full vs incremental differ by {G['max_abs_full_minus_incr']:.1e} at most; smallest top-1 logit gap "
      f"{G['min_top1_logit_gap']:.1e}; smallest routing-decision gap {G['min_routing_gap']:.1e}; routing is the "
      "same with 0.0 or -inf group masking. The export was checked: `from_pretrained` of `models/build/hf` gives "
      "bit-identical logits, the per-expert tensors equal transformers' own `save_pretrained`, and the float64 "
      "DeepSeek re-implementation in `tools/gen_fixtures.py` agrees to "
      f"{R['verify']['f64_reference_max_diff']:.1e}.\n")
    w("`logits_full_q8_0_weights.npy` is the same single pass (fp32 compute) with every matrix except the "
      "routers rounded through Q8_0 the way `moela convert` stores it (blocks of 32 along each row; `kv_b_proj`'s "
      "K part along qk_nope, as `attn_k_b`), as a tighter target for the Q8_0 GGUF: it differs from the fp32 "
      f"logits by up to {G['q8_0_weights_max_abs_diff_vs_fp32']:.2f} (logits up to {G['logits_abs_max']:.1f} in "
      f"magnitude, std {G['logits_std']:.2f}), with the same argmax at "
      f"{100 * G['q8_0_weights_argmax_agreement']:.0f}% of positions.\n")

    w("## Reproduce\n")
    w("```sh\npip install torch transformers tokenizers safetensors numpy   # torch 2.15 (CPU), transformers 5.24\n"
      "bash tools/train/run_all.sh 92     # as root (apt-get): corpus, tokenizer, training (92 min), finalize\n"
      "python3 tools/train/write_report.py   # this file\n```\n")
    w("Steps: `get_corpus.sh` (+ `build_corpus.py`) → `train_tokenizer.py` → `train.py` → `finalize.py` → "
      "`write_report.py`. Corpus, tokenizer and initialisation are deterministic; because the learning-rate "
      "schedule follows wall-clock time, a rerun on a machine of other speed sees a different number of steps.\n")
    open(a.out, "w").write("\n".join(L) + "\n")
    print("wrote", a.out)


if __name__ == "__main__":
    main()
