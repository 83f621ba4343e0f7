#!/usr/bin/env python3
"""Rows quantized by llama.cpp's own `llama-quantize` to each load-only low-bit type, for
moela's test that it reads real llama.cpp output (src/tensor/iquant.rs,
`reads_llama_quantize_rows`).

Steps: the `kq` fixture (256-wide) is written as a llama.cpp-layout F32 GGUF
(tools/gen_llamacpp_gguf.py); llama-quantize makes one file per type (IQ2_XXS, IQ2_XS, IQ2_M,
IQ3_XXS, IQ3_S, IQ1_S, IQ1_M, TQ1_0, TQ2_0, MXFP4_MOE, Q1_0, Q2_0), with `--override-kv
deepseek2.attention.q_lora_rank=int:0` (the fixture has no q LoRA, which llama.cpp's hparams
loader insists on) and a uniform importance matrix (all ones, legacy .dat layout; the IQ1/IQ2
and IQ3_XXS types refuse to run without one). From each output this keeps the first 32 rows of
the first tensor stored in the type, next to the same rows of the F32 original:
tests/fixtures/iquants/llamacpp/<type>.blocks (raw GGUF bytes), <type>.f32 (the original,
little-endian f32) and <type>.txt (tensor name, row length, rows). The whole files are not
kept (their other tensors use fallback types).

Q1_0 and Q2_0 (ggml types 41, 42): the pip gguf 0.19.0 cannot read type 42 and no gguf-py
dequantizes either, so these were made with `PYTHONPATH=/path/to/llama.cpp/gguf-py` and
`--only Q1_0 Q2_0` (the others left as they are); the relative error is printed only where
gguf-py can dequantize. Q1_0 gets `--tensor-type` Q8_0 for the 32-wide tensors (llama.cpp has
no fallback type for it).

Usage:  python3 tools/gen_iquant_llamacpp_fixtures.py --llama-quantize PATH/llama-quantize
            [--only TYPE ...]
Made with llama.cpp built from source (build 0, GNU 12.2.0), gguf 0.19.0, numpy 2.4.6.
"""
import argparse
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader, quants

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
# (llama-quantize type, ggml type kept, fixture name)
TYPES = [
    ("IQ2_XXS", T.IQ2_XXS, "iq2_xxs"),
    ("IQ2_XS", T.IQ2_XS, "iq2_xs"),
    ("IQ2_M", T.IQ2_S, "iq2_s"),  # llama.cpp's IQ2_S mix is mostly IQ2_XS; IQ2_M is IQ2_S
    ("IQ3_XXS", T.IQ3_XXS, "iq3_xxs"),
    ("IQ3_S", T.IQ3_S, "iq3_s"),
    ("IQ1_S", T.IQ1_S, "iq1_s"),
    ("IQ1_M", T.IQ1_M, "iq1_m"),
    ("TQ1_0", T.TQ1_0, "tq1_0"),
    ("TQ2_0", T.TQ2_0, "tq2_0"),
    ("MXFP4_MOE", T.MXFP4, "mxfp4"),
    ("Q1_0", 41, "q1_0"),
    ("Q2_0", 42, "q2_0"),
]
# (block size, bytes) of the types gguf-py may not know (ggml-common.h).
SIZES = {41: (128, 18), 42: (64, 18)}
EXTRA = {"Q1_0": ["--tensor-type", "attn_k_b=q8_0", "--tensor-type", "ffn_down_exps=q8_0",
                  "--tensor-type", "ffn_down_shexp=q8_0"]}
ROWS = 32


def uniform_imatrix(src, path):
    r = GGUFReader(src)
    ents = []
    for t in r.tensors:
        sh = [int(x) for x in t.shape]
        if len(sh) < 2 or t.name.endswith("norm.weight") or "gate_inp" in t.name:
            continue
        ents.append((t.name, sh[0] * (sh[2] if len(sh) > 2 else 1)))
    with open(path, "wb") as f:
        f.write(struct.pack("<i", len(ents)))
        for name, n in ents:
            b = name.encode()
            f.write(struct.pack("<i", len(b)) + b + struct.pack("<ii", 1, n))
            f.write(np.ones(n, dtype="<f4").tobytes())
        f.write(struct.pack("<ii", 1, 7) + b"uniform")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama-quantize", required=True)
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "iquants", "llamacpp"))
    ap.add_argument("--only", nargs="+", help="write only these llama-quantize types")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        f32 = os.path.join(tmp, "kq-f32.gguf")
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "gen_llamacpp_gguf.py"),
                        os.path.join(ROOT, "tests", "fixtures", "kq"), f32, "--type", "f32",
                        "--vocab", "none"], check=True, capture_output=True)
        imat = os.path.join(tmp, "uniform.dat")
        uniform_imatrix(f32, imat)
        orig = {t.name: t for t in GGUFReader(f32).tensors}
        for qname, qtype, name in TYPES:
            if a.only and qname not in a.only:
                continue
            out = os.path.join(tmp, f"kq-{qname}.gguf")
            subprocess.run([a.llama_quantize, "--imatrix", imat, "--override-kv",
                            "deepseek2.attention.q_lora_rank=int:0"] + EXTRA.get(qname, [])
                           + [f32, out, qname], check=True, capture_output=True)
            t = next(t for t in GGUFReader(out).tensors if int(t.tensor_type) == int(qtype))
            cols = int(t.shape[0])
            bsize, bb = SIZES.get(int(qtype)) or quants.GGML_QUANT_SIZES[qtype]
            row_bytes = cols // bsize * bb
            raw = np.asarray(t.data).reshape(-1).view(np.uint8)[: ROWS * row_bytes]
            ref = np.asarray(orig[t.name].data, dtype="<f4").reshape(-1)[: ROWS * cols]
            try:
                deq = quants.dequantize(raw, qtype).reshape(-1)
                rel = f"{np.sqrt(np.mean((deq - ref) ** 2) / np.mean(ref ** 2)):.3f}"
            except (NotImplementedError, KeyError, ValueError, AttributeError):
                rel = "(no gguf-py dequantizer)"
            with open(os.path.join(a.out, f"{name}.blocks"), "wb") as f:
                f.write(raw.tobytes())
            with open(os.path.join(a.out, f"{name}.f32"), "wb") as f:
                f.write(ref.tobytes())
            with open(os.path.join(a.out, f"{name}.txt"), "w") as f:
                f.write(f"{t.name} {cols} {ROWS}\n")
            print(f"{name}: {t.name} {cols} x {ROWS}, gguf-py relative RMS error {rel}")


if __name__ == "__main__":
    main()
