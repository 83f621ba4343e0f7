#!/usr/bin/env python3
"""Fixtures made by llama.cpp's own `llama-quantize` (tests/fixtures/llamacpp_mixes, read by
tests/llamacpp_mixes.rs): the 256-wide `kq` fixture converted to F16 by moela, then quantized
by llama-quantize to the mixes people download.

llama.cpp (checked at commit d32676d7) reads `deepseek2.attention.q_lora_rank` unless the model
has 26/27 layers (its "lite" rule), and kq has no q-LoRA (2 layers), so the F16 file gets that
key as 0 (llama.cpp then uses attn_q directly, as for V2-Lite; moela ignores the key when there
is no attn_q_a tensor).

The low-bit mixes in IQ_MIXES (llama-quantize refuses most of them without an importance
matrix) get a uniform one (all ones, as tools/gen_iquant_llamacpp_fixtures.py makes); together
they hold every load-only type moela reads: IQ2_XXS, IQ2_XS (inside the IQ2_S mix), IQ2_S and
IQ3_S (inside IQ3_XXS), IQ3_XXS, IQ1_S, IQ1_M, TQ1_0, TQ2_0, MXFP4. Q1_0 and Q2_0 (ggml's
1- and 2-bit types, no importance matrix needed) are in MIXES; NVFP4, the one load-only type
llama-quantize (commit d32676d7) cannot write, has no file here.

With --dump-logits PROG, also writes llama.cpp's own logits of each file (and of the F16
source) over tests/fixtures/kq/tokens.json to logits/kq-<MIX>.npy: PROG is a small program
built against llama.h (not part of this repository, see the README) called as
`PROG model.gguf out.npy tok0 tok1 ...`, which evaluates the tokens as one batch and writes
every position's logits as an (n_tokens, n_vocab) float32 .npy.

Usage:  python3 tools/gen_llamacpp_mixes.py --moela target/debug/moela \
            --quantize /work/llama.cpp/build-native/bin/llama-quantize [--out DIR] \
            [--dump-logits /tmp/lcdump/dump_logits] [--only MIX ...]
Needs:  numpy, gguf. Writes kq-<MIX>.gguf for each mix in MIXES and IQ_MIXES (Q5_0, Q5_1 and
IQ4_NL come along inside Q4_K_M, Q5_K_M and IQ4_XS). The F16 source is not kept: moela
converts kq again in the test).
"""
import argparse
import os
import json
import subprocess
import sys
import tempfile

import numpy as np
from gguf import GGUFReader, GGUFWriter, GGUFValueType

MIXES = ["Q4_K_M", "Q5_K_M", "IQ4_XS", "Q4_1", "Q1_0", "Q2_0"]
# llama.cpp has no fallback type for Q1_0 (128-element blocks), so its rows of 32 (attn_k_b, the
# expert and shared-expert down projections) are named explicitly, as Q8_0.
EXTRA = {"Q1_0": ["--tensor-type", "attn_k_b=q8_0", "--tensor-type", "ffn_down_exps=q8_0",
                  "--tensor-type", "ffn_down_shexp=q8_0"]}
IQ_MIXES = ["IQ2_XXS", "IQ2_S", "IQ3_XXS", "IQ1_S", "IQ1_M", "TQ1_0", "TQ2_0", "MXFP4_MOE"]


def add_q_lora_rank(src, dst):
    r = GGUFReader(src)
    arch = r.fields["general.architecture"].contents()
    w = GGUFWriter(dst, arch)
    for name, f in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        vt = f.types[0]
        if vt == GGUFValueType.ARRAY:
            w.add_key_value(name, f.contents(), vt, sub_type=f.types[-1])
        else:
            w.add_key_value(name, f.contents(), vt)
    w.add_uint32(f"{arch}.attention.q_lora_rank", 0)
    for t in r.tensors:
        shape = tuple(int(v) for v in reversed(t.shape.tolist()))
        w.add_tensor(t.name, np.asarray(t.data), raw_shape=shape if t.data.dtype != np.uint8 else None,
                     raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--moela", required=True)
    ap.add_argument("--quantize", required=True)
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "llamacpp_mixes"))
    ap.add_argument("--dump-logits", help="program that writes llama.cpp's logits (see above)")
    ap.add_argument("--only", nargs="+", help="write only these mixes (and not the F16 logits)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    sys.path.insert(0, here)
    from gen_iquant_llamacpp_fixtures import uniform_imatrix
    with open(os.path.join(here, "..", "tests", "fixtures", "kq", "tokens.json")) as f:
        tokens = [str(t) for t in json.load(f)["tokens"]]
    with tempfile.TemporaryDirectory() as tmp:
        f16 = os.path.join(tmp, "kq-f16.gguf")
        src = os.path.join(tmp, "kq-f16-qlora0.gguf")
        subprocess.run([a.moela, "convert", os.path.join(here, "..", "tests", "fixtures", "kq"), f16,
                        "--type", "f16"], check=True)
        add_q_lora_rank(f16, src)
        imat = os.path.join(tmp, "uniform.dat")
        uniform_imatrix(src, imat)
        if a.dump_logits and not a.only:
            os.makedirs(os.path.join(a.out, "logits"), exist_ok=True)
            subprocess.run([a.dump_logits, src, os.path.join(a.out, "logits", "kq-F16.npy")] + tokens,
                           check=True, capture_output=True)
        for mix in MIXES + IQ_MIXES:
            if a.only and mix not in a.only:
                continue
            out = os.path.join(a.out, f"kq-{mix}.gguf")
            extra = (["--imatrix", imat] if mix in IQ_MIXES else []) + EXTRA.get(mix, [])
            p = subprocess.run([a.quantize] + extra + [src, out, mix], capture_output=True, text=True)
            if p.returncode != 0:
                raise SystemExit(f"llama-quantize {mix} failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
            types = {}
            for t in GGUFReader(out).tensors:
                types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
            print(f"{mix}: {os.path.getsize(out)} bytes, tensor types {types}")
            if a.dump_logits:
                subprocess.run([a.dump_logits, out, os.path.join(a.out, "logits", f"kq-{mix}.npy")] + tokens,
                               check=True, capture_output=True)


if __name__ == "__main__":
    main()
