#!/usr/bin/env python3
"""Reference blocks of the load-only low-bit types for moela's dequantization test
(src/tensor/iquant.rs): IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M, TQ1_0, TQ2_0,
MXFP4, NVFP4, Q1_0, Q2_0.

Random bytes are valid blocks of every one of these types (every index is inside its grid,
every TQ1_0 byte decodes to digits 0..2), so this writes random blocks with the scale fields
set to assorted f16 values (ordinary, tiny, subnormal, zero, negative, large) -- MXFP4's E8M0
exponent to every extreme -- and gguf-py's dequantization of them (gguf.quants.dequantize,
which gguf 0.19.0 implements for all ten types and NVFP4). moela must decode them to exactly
the same floats.

Q1_0 and Q2_0 (ggml types 41, 42) have no dequantizer in gguf-py: neither gguf 0.19.0 nor the
gguf-py of the llama.cpp checkout used (commit d32676d77) has one (the latter names the types
only). Their reference is ggml's own C dequantizer instead: this script compiles a small driver
that calls `ggml_get_type_traits(type)->to_float` from a llama.cpp build's libggml-base.a
(--llama-cpp, the checkout with build-native/ built) and feeds it the blocks; NVFP4's random
blocks go through both it and gguf-py, which must agree. Without --llama-cpp the ggml-only
types are skipped (their fixtures are left as they are).

Usage:  python3 tools/gen_iquant_fixtures.py [--out tests/fixtures/iquants]
            [--llama-cpp /path/to/llama.cpp]
Needs:  numpy, gguf (written with gguf 0.19.0, numpy 2.4.6); with --llama-cpp a C++ compiler
        (g++ -fopenmp, as libggml-base.a needs). Deterministic (seeded).
Writes: <type>.blocks (raw GGUF bytes) and <type>.f32 (little-endian f32) per type.
"""
import argparse
import os
import subprocess
import tempfile

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

# (name, type, blocks, byte offset of the f16 scale or None for the special cases)
TYPES = [
    ("iq2_xxs", T.IQ2_XXS, 8, 0),
    ("iq2_xs", T.IQ2_XS, 8, 0),
    ("iq3_xxs", T.IQ3_XXS, 8, 0),
    ("iq1_s", T.IQ1_S, 8, 0),
    ("iq3_s", T.IQ3_S, 8, 0),
    ("iq2_s", T.IQ2_S, 8, 0),
    ("iq1_m", T.IQ1_M, 8, None),
    ("tq1_0", T.TQ1_0, 8, 52),
    ("tq2_0", T.TQ2_0, 8, 64),
    ("mxfp4", T.MXFP4, 64, None),
    ("nvfp4", 40, 48, None),
    ("q1_0", 41, 12, 0),
    ("q2_0", 42, 12, 0),
]
# gguf-py's GGML_QUANT_SIZES lacks these (block size, bytes): ggml-common.h's block_nvfp4,
# block_q1_0, block_q2_0.
GGML_ONLY_SIZES = {40: (64, 36), 41: (128, 18), 42: (64, 18)}
# NVFP4's UE4M3 scale bytes: zero, the NaN byte 0x7F (decoded as 0) and its twin 0xFF (decoded
# as 480, bit 7 being ignored), subnormals, 1.0 (0x38), the largest (0x7E), ordinary values.
UE4M3 = [0x00, 0x7F, 0xFF, 0x01, 0x07, 0x08, 0x38, 0x7E, 0x80, 0xB8, 0x30, 0x45]

DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include "ggml.h"
/* ref TYPE N < blocks > floats: ggml's to_float for N elements of TYPE. */
int main(int argc, char **argv) {
    if (argc != 3) return 2;
    enum ggml_type t = (enum ggml_type)atoi(argv[1]);
    long n = atol(argv[2]);
    size_t nb = ggml_row_size(t, n);
    void *in = malloc(nb);
    float *out = malloc(n * sizeof(float));
    if (!in || !out || fread(in, 1, nb, stdin) != nb) return 3;
    ggml_get_type_traits(t)->to_float(in, out, n);
    return fwrite(out, sizeof(float), n, stdout) == (size_t)n ? 0 : 4;
}
"""


def build_driver(llama_cpp, tmp):
    src = os.path.join(tmp, "ref.c")
    exe = os.path.join(tmp, "ref")
    with open(src, "w") as f:
        f.write(DRIVER)
    lib = os.path.join(llama_cpp, "build-native", "ggml", "src", "libggml-base.a")
    subprocess.run(["g++", "-O1", "-x", "c", src, "-x", "none",
                    "-I", os.path.join(llama_cpp, "ggml", "include"), lib,
                    "-lm", "-lpthread", "-fopenmp", "-o", exe], check=True)
    return exe


def ggml_dequantize(exe, qtype, blocks, n):
    r = subprocess.run([exe, str(int(qtype)), str(n)], input=blocks.tobytes(),
                       capture_output=True, check=True)
    return np.frombuffer(r.stdout, dtype="<f4").copy()
SCALES = [0.0123, 1.0, -0.5, 3.1e-5, 6e-8, 0.0, -7.25, 400.0, 1.5e-3, -2e-6, 0.25, 65504.0 / 127]
# MXFP4 exponents: subnormal halves (0, 1), the smallest normal, 1.0, the largest finite
# products, 2^127 (x 12 overflows to inf, which both sides must give).
E8M0 = [0, 1, 2, 3, 100, 127, 128, 129, 140, 200, 253, 254, 255]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "iquants"))
    ap.add_argument("--llama-cpp", help="llama.cpp checkout with build-native/ built")
    args = ap.parse_args()
    out = args.out
    os.makedirs(out, exist_ok=True)
    tmp = tempfile.TemporaryDirectory()
    exe = build_driver(args.llama_cpp, tmp.name) if args.llama_cpp else None
    rng = np.random.default_rng(1414)
    for name, qtype, n_blocks, scale_at in TYPES:
        if int(qtype) in GGML_ONLY_SIZES:
            # Seeded per type, so the earlier types' fixtures do not depend on these.
            rng = np.random.default_rng(1414 + int(qtype))
            bsize, bb = GGML_ONLY_SIZES[int(qtype)]
        else:
            bsize, bb = quants.GGML_QUANT_SIZES[qtype]
        blocks = rng.integers(0, 256, size=(n_blocks, bb), dtype=np.uint8)
        for i in range(n_blocks):
            if name == "nvfp4":
                for k in range(4):
                    j = 4 * i + k
                    blocks[i, k] = UE4M3[j] if j < len(UE4M3) else rng.integers(0, 256)
                continue
            if name == "mxfp4":
                blocks[i, 0] = E8M0[i % len(E8M0)] if i < 2 * len(E8M0) else rng.integers(100, 150)
                continue
            h = np.frombuffer(np.float16(SCALES[i % len(SCALES)]).tobytes(), dtype=np.uint16)[0]
            if name == "iq1_m":
                # The f16 scale lives in the top nibbles of the four u16 scale words.
                sc = blocks[i, 48:56].copy().view("<u2")
                for k in range(4):
                    sc[k] = (sc[k] & 0x0FFF) | (((int(h) >> (4 * k)) & 0xF) << 12)
                blocks[i, 48:56] = sc.view(np.uint8)
            else:
                blocks[i, scale_at : scale_at + 2] = np.frombuffer(np.uint16(h).tobytes(), dtype=np.uint8)
        if int(qtype) in (41, 42):
            if exe is None:
                print(f"{name}: skipped (needs --llama-cpp)")
                continue
            ref = ggml_dequantize(exe, qtype, blocks, n_blocks * bsize)
        else:
            ref = quants.dequantize(blocks.reshape(-1), qtype).astype("<f4").reshape(-1)
            if exe is not None and int(qtype) == 40:
                c = ggml_dequantize(exe, qtype, blocks, n_blocks * bsize)
                assert c.tobytes() == ref.tobytes(), "NVFP4: gguf-py and ggml's C disagree"
        assert ref.shape == (n_blocks * bsize,)
        assert name == "mxfp4" or np.all(np.isfinite(ref))
        with open(os.path.join(out, f"{name}.blocks"), "wb") as f:
            f.write(blocks.tobytes())
        with open(os.path.join(out, f"{name}.f32"), "wb") as f:
            f.write(ref.tobytes())
        fin = ref[np.isfinite(ref)]
        print(f"{name}: {n_blocks} blocks of {bsize}, |x| max {np.abs(fin).max():.3g}")


if __name__ == "__main__":
    main()
