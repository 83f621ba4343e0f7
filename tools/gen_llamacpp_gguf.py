#!/usr/bin/env python3
"""Convert a small Hugging Face DeepSeek-V2/V3 checkpoint into a GGUF file laid
out the way llama.cpp's converter lays out architecture ``deepseek2``.

    tools/gen_llamacpp_gguf.py INPUT_HF_DIR OUTPUT.gguf [--type f32|f16|bf16]
        [--vocab none|gpt2-dummy|omit] [--raw-config] [-v]

This is a stand-in for llama.cpp's ``convert_hf_to_gguf.py`` (class
``DeepseekV2Model``, now in ``conversion/deepseek.py``), which needs the whole
llama.cpp checkout. It is an independent implementation of the same contract
(see docs/FORMAT.md); it only relies on the ``gguf`` PyPI package (GGUFWriter,
tensor-name map, Metadata helpers) and numpy. ``transformers`` is used, when
importable, to load config.json the same way the converter does
(AutoConfig(...).to_dict(), falling back to the raw JSON); ``torch`` is only
needed for FP8 (``quant_method: fp8``) checkpoints.

What it reproduces:
  * tensor order: checkpoint parts in sorted file order, tensor names sorted
    inside each part, experts emitted (down, gate, up) when a layer's last
    expert tensor has been seen, kv_b_proj replaced in place by k_b then v_b;
  * names/shapes: HF -> GGUF names via gguf's TensorNameMap, experts stacked
    to [n_expert, rows, cols], kv_b_proj split into attn_k_b (transposed) and
    attn_v_b, ``e_score_correction_bias`` -> ``exp_probs_b.bias``, MTP layers
    (index >= num_hidden_layers) and tied lm_head dropped;
  * dtypes: 1-D tensors, ``*_norm.weight``, ``ffn_gate_inp.weight`` and any
    non-``.weight`` tensor forced to F32; everything else per --type;
  * metadata: the same keys, value types and insertion order
    (general.* -> base TextModel keys -> deepseek2 keys -> quantization version
    -> tokenizer).

Checked when written (scratch, not a test): for tiny V2/V3 checkpoints (bf16, sharded,
FP8 block-scaled, tied embeddings) the output was byte-identical to the
converter vendored in llama-cpp-python 0.3.36 (its set_vocab stubbed to
tokenizer "none"), and that llama.cpp build loaded the files and matched
transformers' DeepseekV2/V3ForCausalLM logits to ~1e-3.

Tokenizer: the real converter always writes a full gpt2 BPE vocabulary taken
from the checkpoint's tokenizer files. llama.cpp refuses to load a file without
``tokenizer.ggml.model`` but accepts the value "none" (vocab size then comes
from ``deepseek2.vocab_size``). ``--vocab`` selects:
  none        (default) only tokenizer.ggml.model = "none"
  gpt2-dummy  a minimal byte-level gpt2 vocabulary (256 byte tokens, one merge,
              BOS/EOS, padding up to vocab_size) that llama.cpp can tokenize with
  omit        no tokenizer keys at all (llama.cpp will not load such a file)
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

import gguf

log = logging.getLogger("gen_llamacpp_gguf")


class _ExpectedDuplicates(logging.Filter):
    """The converter sets key_length/value_length (from transformers' head_dim)
    and expert_count twice; GGUFWriter warns and overwrites in place, keeping the
    first position. That is expected here, so the warning is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not (msg.startswith("Duplicated key name") and any(
            k in msg for k in (".attention.key_length'", ".attention.value_length'", ".expert_count'")))


logging.getLogger("gguf.gguf_writer").addFilter(_ExpectedDuplicates())

ARCH = gguf.MODEL_ARCH.DEEPSEEK2

# ---------------------------------------------------------------------------
# hparams
# ---------------------------------------------------------------------------


def load_hparams(dir_model: Path, raw: bool) -> dict[str, Any]:
    """Same policy as the converter's ModelBase.load_hparams: AutoConfig without
    remote code, then to_dict(); fall back to the plain config.json."""
    config: dict[str, Any] | None = None
    if not raw:
        try:
            from transformers import AutoConfig  # type: ignore

            config = AutoConfig.from_pretrained(dir_model, trust_remote_code=False).to_dict()
        except Exception as e:  # noqa: BLE001 - mirror the converter's broad fallback
            log.warning("AutoConfig failed (%s); using config.json as is", e)
    if config is None:
        with open(dir_model / "config.json", "r", encoding="utf-8") as f:
            config = json.load(f)
    if "text_config" in config:
        config = {**config, **config["text_config"]}
    return config


class HParams:
    def __init__(self, hp: dict[str, Any]):
        self.hp = hp
        self.block_count: int = self.find(["n_layers", "num_hidden_layers", "n_layer", "num_layers"])
        rp = hp.get("rope_parameters", hp.get("rope_scaling")) or {}
        rp = dict(rp)
        theta = self.find(["global_rope_theta", "rope_global_theta", "rope_theta_global", "rope_theta", "rotary_emb_base"], optional=True)
        local_theta = self.find(["local_rope_theta", "rope_local_theta", "rope_theta_local", "swa_rope_theta", "rope_local_base_freq"], optional=True)
        prf = self.find(["partial_rotary_factor", "rope_pct", "rope_percent"], optional=True)
        omp = self.find(["original_max_position_embeddings"], optional=True)
        if "full_attention" not in rp and "sliding_attention" not in rp:
            if local_theta is not None:
                rp["sliding_attention"] = {"rope_theta": local_theta}
            if "rope_theta" not in rp and theta is not None:
                rp["rope_theta"] = theta
            if "rope_type" not in rp and rp.get("type") is not None:
                rp["rope_type"] = rp["type"]
            if "partial_rotary_factor" not in rp and prf is not None:
                rp["partial_rotary_factor"] = prf
            if "original_max_position_embeddings" not in rp and omp is not None:
                rp["original_max_position_embeddings"] = omp
        self.rope_parameters = rp

    def find(self, keys: Iterable[str], optional: bool = False) -> Any:
        for k in keys:
            if k in self.hp:
                return self.hp[k]
        if optional:
            return None
        raise KeyError(f"could not find any of: {list(keys)}")

    def __getitem__(self, k: str) -> Any:
        return self.hp[k]

    def get(self, k: str, default: Any = None) -> Any:
        return self.hp.get(k, default)


# ---------------------------------------------------------------------------
# safetensors reading (numpy only; order = sorted parts, sorted names)
# ---------------------------------------------------------------------------

_ST_NP = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32,
          "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


class STensor:
    def __init__(self, path: Path, dtype: str, shape: list[int], begin: int, end: int):
        self.path, self.dtype, self.shape, self.begin, self.end = path, dtype, tuple(shape), begin, end

    def raw(self) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(self.begin)
            return f.read(self.end - self.begin)

    def load(self) -> np.ndarray:
        """Returns float16/float32 (or the native numpy type for ints); BF16 and
        other float types are widened to float32 like the converter does."""
        b = self.raw()
        if self.dtype == "BF16":
            u = np.frombuffer(b, dtype=np.uint16).astype(np.uint32) << 16
            return u.view(np.float32).reshape(self.shape)
        if self.dtype in ("F8_E4M3", "F8_E5M2", "F8_E8M0"):
            import torch  # only needed for FP8 checkpoints

            tdt = {"F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
                   "F8_E8M0": getattr(torch, "float8_e8m0fnu", None)}[self.dtype]
            if tdt is None:
                raise ValueError(f"torch lacks {self.dtype}")
            t = torch.frombuffer(bytearray(b), dtype=torch.uint8).view(tdt).reshape(self.shape)
            return t.float().numpy()
        if self.dtype not in _ST_NP:
            raise ValueError(f"unsupported safetensors dtype {self.dtype}")
        a = np.frombuffer(b, dtype=_ST_NP[self.dtype]).reshape(self.shape)
        if a.dtype not in (np.float16, np.float32):
            a = a.astype(np.float32)
        return a


def read_safetensors_header(path: Path) -> dict[str, STensor]:
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        meta = json.loads(f.read(n).decode("utf-8"))
    base = 8 + n
    out = {}
    for name, m in meta.items():
        if name == "__metadata__":
            continue
        out[name] = STensor(path, m["dtype"], m["shape"], base + m["data_offsets"][0], base + m["data_offsets"][1])
    return dict(sorted(out.items(), key=lambda kv: kv[0]))


def index_tensors(dir_model: Path) -> dict[str, STensor]:
    parts = sorted(p.name for p in dir_model.iterdir() if p.name.startswith("model") and p.name.endswith(".safetensors"))
    if not parts:
        raise FileNotFoundError(f"no model*.safetensors in {dir_model}")
    from_index: set[str] = set()
    idx = dir_model / "model.safetensors.index.json"
    if idx.is_file():
        wm = json.loads(idx.read_text(encoding="utf-8")).get("weight_map")
        if not isinstance(wm, dict):
            raise ValueError("bad weight_map in model.safetensors.index.json")
        from_index = set(wm)
        parts = sorted(dict.fromkeys(wm.values()))
    tensors: dict[str, STensor] = {}
    seen: set[str] = set()
    for part in parts:
        for name, t in read_safetensors_header(dir_model / part).items():
            seen.add(name)
            item = filter_tensor(name)
            if item is not None:
                tensors[item] = t
    if from_index and seen != from_index:
        raise ValueError(f"index/parts mismatch: missing={sorted(from_index - seen)[:5]} extra={sorted(seen - from_index)[:5]}")
    return tensors


_MM_PREFIXES = ("mlp", "vit.", "vpm.", "siglip2.", "conformer.", "merger.", "resampler.", "sound_encoder.",
                "sound_projection.", "speech_embeddings.")
_MM_SUBSTR = ("visual.", "vision.", "audio.", "talker.", "vision_", "audio_", "sam_model", "token2wav.", "code2wav.",
              "projector.", "pre_mm_projector_norm", "image_newline", "view_seperator", "patch_embed",
              "patch_embedding", "patch_merger.", "patch_merge_mlp.", "model.connector.", "qwen2_model")


def filter_tensor(name: str) -> str | None:
    """TextModel/ModelBase.filter_tensors: drop multimodal tensors, rename the
    router bias to a '.bias' so it maps onto exp_probs_b.bias."""
    if name.startswith(_MM_PREFIXES) or any(s in name for s in _MM_SUBSTR):
        return None
    if name.endswith("e_score_correction_bias"):
        name = name.replace("e_score_correction_bias", "e_score_correction.bias")
    if "language_model." in name:
        name = name.replace("language_model.", "")
    return name


def dequant_fp8(hp: HParams, tensors: dict[str, STensor]) -> dict[str, Any]:
    """ModelBase.dequant_model for quant_method == 'fp8' (block scales in
    '*.weight_scale_inv'); returns name -> loader callable."""
    loaders: dict[str, Any] = {n: t.load for n, t in tensors.items()}
    qc = hp.get("quantization_config")
    if not (isinstance(qc, dict) and qc.get("quant_method")):
        return loaders
    if qc["quant_method"] != "fp8":
        raise NotImplementedError(f"quant_method {qc['quant_method']!r} not supported here")
    bs = qc.get("weight_block_size")
    remove = []
    for name in list(loaders):
        if name.endswith("_scale_inv"):
            wname = name.removesuffix("_scale_inv")
            w, s = loaders[wname], loaders[name]

            def deq(w=w, s=s, bs=bs):
                wt = w().astype(np.float32)
                sc = s().astype(np.float32)
                if bs is not None:
                    off = sc.ndim - len(bs)
                    for i, size in enumerate(bs):
                        sc = np.repeat(sc, size, axis=off + i)
                    sc = sc[tuple(slice(0, n) for n in wt.shape)]
                while sc.ndim < wt.ndim:
                    sc = sc[..., None]
                return wt * sc

            loaders[wname] = deq
            remove.append(name)
        if name.endswith((".activation_scale", "_activation_scale", ".qscale_act")):
            remove.append(name)
    for n in remove:
        loaders.pop(n, None)
    return loaders


# ---------------------------------------------------------------------------
# tensor transformation (DeepseekV2Model.modify_tensors)
# ---------------------------------------------------------------------------


class Converter:
    def __init__(self, dir_model: Path, hp: HParams, ftype: gguf.LlamaFileType):
        self.dir_model = dir_model
        self.hp = hp
        self.ftype = ftype
        self.tmap = gguf.get_tensor_name_map(ARCH, hp.block_count)
        self.experts: list[dict[str, np.ndarray]] | None = None
        self.writer = gguf.GGUFWriter(path=None, arch=gguf.MODEL_ARCH_NAMES[ARCH])

    # -- naming / dtype ------------------------------------------------------
    def map_name(self, name: str) -> str:
        new = self.tmap.get_name(key=name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise ValueError(f"Can not map tensor {name!r}")
        return new

    def is_tensor(self, new_name: str, key: gguf.MODEL_TENSOR, bid: int | None, suffix: str = ".weight") -> bool:
        if key not in gguf.MODEL_TENSORS[ARCH]:
            return False
        kn = gguf.TENSOR_NAMES[key]
        if "{bid}" in kn:
            if bid is None:
                return False
            kn = kn.format(bid=bid)
        elif bid is not None:
            return False
        return new_name == kn + suffix

    def qtype_for(self, new_name: str, bid: int | None, n_dims: int) -> gguf.GGMLQuantizationType:
        if n_dims <= 1 or new_name.endswith("_norm.weight"):
            return gguf.GGMLQuantizationType.F32
        if (self.is_tensor(new_name, gguf.MODEL_TENSOR.FFN_GATE_INP, bid)
                or self.is_tensor(new_name, gguf.MODEL_TENSOR.FFN_GATE_INP_SHEXP, bid)
                or new_name[-7:] not in (".weight", ".lora_a", ".lora_b")):
            return gguf.GGMLQuantizationType.F32
        if self.ftype == gguf.LlamaFileType.ALL_F32:
            return gguf.GGMLQuantizationType.F32
        if self.ftype == gguf.LlamaFileType.MOSTLY_BF16:
            return gguf.GGMLQuantizationType.BF16
        return gguf.GGMLQuantizationType.F16

    # -- modify_tensors --------------------------------------------------------
    def modify(self, data: np.ndarray, name: str, bid: int | None) -> Iterator[tuple[str, np.ndarray]]:
        hp = self.hp
        if hp.get("tie_word_embeddings", False) and name in ("lm_head.weight", "model.lm_head.weight"):
            return
        m = re.match(r"model.layers.(\d+)", name)
        if m and int(m.group(1)) >= hp["num_hidden_layers"]:
            return  # MTP / nextn layers are not converted
        if name.find("mlp.experts") != -1:
            n_experts = hp["n_routed_experts"]
            assert bid is not None
            if self.experts is None:
                self.experts = [{} for _ in range(hp.block_count)]
            self.experts[bid][name] = data
            if len(self.experts[bid]) >= n_experts * 3:
                for w_name in ("down_proj", "gate_proj", "up_proj"):
                    datas = []
                    for xid in range(n_experts):
                        en = f"model.layers.{bid}.mlp.experts.{xid}.{w_name}.weight"
                        datas.append(self.experts[bid].pop(en))
                    merged = f"model.layers.{bid}.mlp.experts.{w_name}.weight"
                    yield self.map_name(merged), np.stack(datas, axis=0)
            return
        if name.endswith("kv_b_proj.weight"):
            # prepare_tensors runs before set_gguf_parameters, so this is the HF
            # head count (== num_attention_heads in DeepSeek configs), not 1.
            n_head_kv = hp.get("num_key_value_heads") or hp["num_attention_heads"]
            v_dim = hp["v_head_dim"]
            nope = hp["qk_nope_head_dim"]
            assert data.shape[0] == n_head_kv * (v_dim + nope), (data.shape, n_head_kv, v_dim, nope)
            kv_b = data.reshape(n_head_kv, nope + v_dim, data.shape[-1])
            k_b = np.ascontiguousarray(kv_b[:, :nope, :].transpose(0, 2, 1))  # [H, kv_lora, nope]
            v_b = np.ascontiguousarray(kv_b[:, nope:, :])                      # [H, v, kv_lora]
            yield self.map_name(name.replace("kv_b_proj", "k_b_proj")), k_b
            yield self.map_name(name.replace("kv_b_proj", "v_b_proj")), v_b
            return
        yield self.map_name(name), data

    def prepare_tensors(self, loaders: dict[str, Any]) -> None:
        for name, load in loaders.items():
            if name.endswith((".attention.masked_bias", ".attention.bias", ".rotary_emb.inv_freq")):
                continue
            data = load()
            if data.dtype not in (np.float16, np.float32):
                data = data.astype(np.float32)
            bid = None
            for part in name.split("."):
                if part.isdecimal():
                    bid = int(part)
                    break
            for new_name, t in self.modify(data, name, bid):
                qt = self.qtype_for(new_name, bid, t.ndim)
                q = gguf.quants.quantize(t, qt)
                log.info("%-32s %-7s --> %s, shape = {%s}", new_name, str(data.dtype), qt.name,
                         ", ".join(str(n) for n in reversed(q.shape)))
                self.writer.add_tensor(new_name, q, raw_dtype=qt)
        if self.experts is not None:
            left = [k for d in self.experts for k in d]
            if left:
                raise ValueError(f"Unprocessed experts: {left}")

    # -- metadata ----------------------------------------------------------------
    def prepare_metadata(self, vocab: str) -> None:
        w = self.writer
        total, shared, expert, n_exp = w.get_total_parameter_count()
        md = gguf.Metadata.load(None, self.dir_model, None, total)
        if md.name is None:
            md.name = self.dir_model.name
        if md.size_label is None and total > 0:
            md.size_label = gguf.size_label(total, shared, expert, n_exp)
        w.add_type(gguf.GGUFType.MODEL)
        md.set_gguf_meta_model(w)
        self.set_gguf_parameters()
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
        self.set_vocab(vocab)

    def set_gguf_parameters(self) -> None:
        hp, w = self.hp, self.writer
        # DeepseekV2Model.set_gguf_parameters, part 1 (before super())
        hp.hp["num_key_value_heads"] = 1  # MLA is stored as MQA
        hp.hp["rms_norm_eps"] = hp.get("rms_norm_eps", 1e-6)

        # TextModel.set_gguf_parameters
        w.add_block_count(hp.block_count)
        if (v := hp.find(["max_position_embeddings", "n_ctx", "n_positions", "max_length", "max_sequence_length", "model_max_length"], True)) is not None:
            w.add_context_length(v)
        if (v := hp.find(["hidden_size", "n_embd", "dim"], True)) is not None:
            w.add_embedding_length(v)
        if (v := hp.find(["prefix_dense_intermediate_size", "dense_intermediate_size", "intermediate_size", "n_inner", "hidden_dim"], True)) is not None:
            w.add_feed_forward_length(v)
        if (v := hp.find(["num_attention_heads", "n_head", "n_heads"], True)) is not None:
            w.add_head_count(v)
        if (v := hp.find(["num_key_value_heads", "n_kv_heads"], True)) is not None:
            w.add_head_count_kv(v)
        if hp.get("is_causal") is False:
            w.add_causal_attention(False)
        rp = hp.rope_parameters.get("full_attention", hp.rope_parameters)
        if (rtype := rp.get("rope_type")) is not None:
            factor = rp.get("factor")
            if rtype == "linear" and factor is not None:
                w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
                w.add_rope_scaling_factor(factor)
            elif rtype == "yarn" and factor is not None:
                w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
                w.add_rope_scaling_factor(factor)
                w.add_rope_scaling_orig_ctx_len(rp["original_max_position_embeddings"])
                if (v := rp.get("extrapolation_factor")) is not None:
                    w.add_rope_scaling_yarn_ext_factor(v)
                if (v := rp.get("attention_factor", rp.get("attn_factor"))) is not None:
                    w.add_rope_scaling_yarn_attn_factor(v)
                if (v := rp.get("beta_fast")) is not None:
                    w.add_rope_scaling_yarn_beta_fast(v)
                if (v := rp.get("beta_slow")) is not None:
                    w.add_rope_scaling_yarn_beta_slow(v)
            elif rtype in ("su", "longrope"):
                w.add_rope_scaling_type(gguf.RopeScalingType.LONGROPE)
        if (v := rp.get("rope_theta")) is not None:
            w.add_rope_freq_base(v)
        if (v := hp.rope_parameters.get("sliding_attention", {}).get("rope_theta")) is not None:
            w.add_rope_freq_base_swa(v)
        if (v := hp.find(["rms_norm_eps", "norm_eps"], True)) is not None:
            w.add_layer_norm_rms_eps(v)
        if (v := hp.find(["layer_norm_eps", "layer_norm_epsilon", "norm_epsilon"], True)) is not None:
            w.add_layer_norm_eps(v)
        if (v := hp.find(["num_local_experts", "num_experts", "n_routed_experts"], True)) is not None:
            w.add_expert_count(v)  # written again (same value) by the deepseek2 part below
        if (v := hp.find(["num_experts_per_tok", "num_experts_per_token", "top_k_experts"], True)) is not None:
            w.add_expert_used_count(v)
        if (v := hp.get("n_group")) is not None:
            w.add_expert_group_count(v)
        if (v := hp.get("topk_group")) is not None:
            w.add_expert_group_used_count(v)
        if (sf := hp.find(["score_function", "scoring_func", "score_func", "moe_router_activation", "moe_router_activation_func", "expert_selection_fn"], True)) is not None:
            if sf == "sigmoid":
                w.add_expert_gating_func(gguf.ExpertGatingFuncType.SIGMOID)
            elif sf == "softmax":
                w.add_expert_gating_func(gguf.ExpertGatingFuncType.SOFTMAX)
            elif sf == "sqrtsoftplus":  # value 4 in newer gguf-py; not a DeepSeek-V2/V3 setting
                w.add_uint32(gguf.Keys.LLM.EXPERT_GATING_FUNC.format(arch=w.arch), 4)
            else:
                raise ValueError(f"Unsupported expert score gating function value: {sf}")
        if (v := hp.get("head_dim")) is not None:
            # transformers' DeepSeek configs expose head_dim (= qk_rope_head_dim);
            # these two are overwritten below but keep this position in the KV order
            w.add_key_length(v)
            w.add_value_length(v)
        w.add_file_type(self.ftype)

        # DeepseekV2Model.set_gguf_parameters, part 2
        has_moe = hp.get("n_routed_experts") is not None
        fkd = hp.get("first_k_dense_replace")
        if fkd is None:
            fkd = hp["num_hidden_layers"] if not has_moe else 0
        w.add_leading_dense_block_count(fkd)
        kv_lora = hp.get("kv_lora_rank", 512)
        w.add_vocab_size(hp["vocab_size"])
        if hp.get("q_lora_rank") is not None:
            w.add_q_lora_rank(hp["q_lora_rank"])
        w.add_kv_lora_rank(kv_lora)
        w.add_key_length(kv_lora + hp["qk_rope_head_dim"])
        w.add_value_length(kv_lora)
        w.add_key_length_mla(hp["qk_nope_head_dim"] + hp["qk_rope_head_dim"])
        w.add_value_length_mla(hp["v_head_dim"])
        w.add_expert_feed_forward_length(hp.find(["moe_intermediate_size", "intermediate_size"]))
        if (v := hp.get("n_routed_experts")) is not None:
            w.add_expert_count(v)
        w.add_expert_shared_count(hp.get("n_shared_experts", 0))
        if (v := hp.get("routed_scaling_factor")) is not None:
            w.add_expert_weights_scale(v)
        if (v := hp.get("norm_topk_prob")) is not None and v:
            w.add_expert_weights_norm(v)
        w.add_rope_dimension_count(hp["qk_rope_head_dim"])
        if (v := hp.rope_parameters.get("mscale_all_dim")) is not None:
            w.add_rope_scaling_yarn_log_mul(0.1 * v)

    def set_vocab(self, mode: str) -> None:
        w, hp = self.writer, self.hp
        if mode == "omit":
            return
        if mode == "none":
            w.add_tokenizer_model("none")
            return
        assert mode == "gpt2-dummy"
        n_vocab = hp["vocab_size"]
        if n_vocab < 259:
            raise ValueError("--vocab gpt2-dummy needs vocab_size >= 259")
        byte_chars = gpt2_bytes_to_unicode()
        tokens = [byte_chars[b] for b in range(256)]
        types = [gguf.TokenType.NORMAL] * 256
        tokens.append("\u0120\u0120")  # result of the single merge
        types.append(gguf.TokenType.NORMAL)
        bos, eos = len(tokens), len(tokens) + 1
        tokens += ["<\uff5cbegin\u2581of\u2581sentence\uff5c>", "<\uff5cend\u2581of\u2581sentence\uff5c>"]
        types += [gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
        for i in range(len(tokens), n_vocab):
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        is_v3 = "DeepseekV3ForCausalLM" in (hp.get("architectures") or [])
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("deepseek-v3" if is_v3 else "deepseek-llm")
        w.add_token_list(tokens)
        w.add_token_types(types)
        w.add_token_merges(["\u0120 \u0120"])
        w.add_bos_token_id(bos)
        w.add_eos_token_id(eos)
        w.add_add_bos_token(True)
        w.add_add_eos_token(False)

    def write(self, out: Path) -> None:
        self.writer.write_header_to_file(path=out)
        self.writer.write_kv_data_to_file()
        self.writer.write_tensors_to_file(progress=False)
        self.writer.close()


def gpt2_bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def llama_cpp_load_warnings(hp: HParams) -> list[str]:
    """Conditions under which current llama.cpp would refuse or misread the file."""
    out = []
    n_layer = hp.block_count
    n_vocab = hp.get("vocab_size")
    lite = n_layer in (26, 27) or (n_layer == 48 and n_vocab == 128256)
    has_q_lora = hp.get("q_lora_rank") is not None
    if has_q_lora and lite:
        out.append(f"n_layer={n_layer} makes llama.cpp treat the model as 'lite' (no q-LoRA): it will look for attn_q and fail")
    if not has_q_lora and not lite:
        out.append(f"no q_lora_rank but n_layer={n_layer}: llama.cpp requires deepseek2.attention.q_lora_rank unless n_layer is 26/27 (or 48 with vocab 128256)")
    ng, tg = hp.get("n_group"), hp.get("topk_group")
    ne = hp.get("n_routed_experts") or 0
    if ne and ng is not None and ng >= ne:
        out.append(f"expert_group_count={ng} must be < expert_count={ne}")
    if ng is not None and ng > 1 and (tg is None or not (0 < tg < ng) or ne % ng):
        out.append(f"grouped routing needs 0 < expert_group_used_count < expert_group_count and expert_count % groups == 0 (got {tg}/{ng}/{ne})")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("input", type=Path, help="HF model dir (config.json + model*.safetensors)")
    ap.add_argument("output", type=Path, help="output .gguf path")
    ap.add_argument("--type", choices=("f32", "f16", "bf16"), default="f16",
                    help="type of the non-forced weights (default f16; the converter's own default 'auto' picks bf16 for bf16 checkpoints)")
    ap.add_argument("--vocab", choices=("none", "gpt2-dummy", "omit"), default="none")
    ap.add_argument("--raw-config", action="store_true", help="read config.json verbatim instead of AutoConfig().to_dict()")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")

    hp = HParams(load_hparams(args.input, args.raw_config))
    archs = hp.get("architectures") or []
    if archs and not any(a in ("DeepseekV2ForCausalLM", "DeepseekV3ForCausalLM") for a in archs):
        log.warning("architectures=%s is not DeepseekV2/V3ForCausalLM; converting as deepseek2 anyway", archs)
    for msg in llama_cpp_load_warnings(hp):
        log.warning("llama.cpp compatibility: %s", msg)

    ftype = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
             "bf16": gguf.LlamaFileType.MOSTLY_BF16}[args.type]
    conv = Converter(args.input, hp, ftype)
    loaders = dequant_fp8(hp, index_tensors(args.input))
    conv.prepare_tensors(loaders)
    conv.prepare_metadata(args.vocab)
    conv.write(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
