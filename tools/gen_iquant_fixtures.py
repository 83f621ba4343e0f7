#!/usr/bin/env python3
"""Reference blocks of the load-only low-bit types for moela's dequantization test
(src/tensor/iquant.rs): IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M, TQ1_0, TQ2_0,
MXFP4.

Random bytes are valid blocks of every one of these types (every index is inside its grid,
every TQ1_0 byte decodes to digits 0..2), so this writes random blocks with the scale fields
set to assorted f16 values (ordinary, tiny, subnormal, zero, negative, large) -- MXFP4's E8M0
exponent to every extreme -- and gguf-py's dequantization of them (gguf.quants.dequantize,
which gguf 0.19.0 implements for all ten types). moela must decode them to exactly the same
floats.

Usage:  python3 tools/gen_iquant_fixtures.py [--out tests/fixtures/iquants]
Needs:  numpy, gguf (written with gguf 0.19.0, numpy 2.4.6). Deterministic (seeded).
Writes: <type>.blocks (raw GGUF bytes) and <type>.f32 (little-endian f32) per type.
"""
import argparse
import os

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
]
SCALES = [0.0123, 1.0, -0.5, 3.1e-5, 6e-8, 0.0, -7.25, 400.0, 1.5e-3, -2e-6, 0.25, 65504.0 / 127]
# MXFP4 exponents: subnormal halves (0, 1), the smallest normal, 1.0, the largest finite
# products, 2^127 (x 12 overflows to inf, which both sides must give).
E8M0 = [0, 1, 2, 3, 100, 127, 128, 129, 140, 200, 253, 254, 255]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "iquants"))
    out = ap.parse_args().out
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(1414)
    for name, qtype, n_blocks, scale_at in TYPES:
        bsize, bb = quants.GGML_QUANT_SIZES[qtype]
        blocks = rng.integers(0, 256, size=(n_blocks, bb), dtype=np.uint8)
        for i in range(n_blocks):
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
        ref = quants.dequantize(blocks.reshape(-1), qtype).astype("<f4").reshape(-1)
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
