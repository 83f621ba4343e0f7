#!/usr/bin/env python3
"""Reference K-quant blocks for moela's dequantization test (src/tensor/kquant.rs).

gguf-py (the `gguf` PyPI package) implements the K-quant dequantizers (gguf.quants.dequantize)
but not their quantizers (checked for Q2_K/Q3_K with gguf 0.19.0: NotImplementedError too), so this writes random super-blocks -- every scale, min and code bit
pattern, f16 super-scales of assorted magnitudes and signs including subnormals and zero -- and
gguf-py's dequantization of them. moela must decode them to exactly the same floats.

Usage:  python3 tools/gen_kquant_fixtures.py [--out tests/fixtures/kquant]
Needs:  numpy, gguf (written with gguf 0.19.0, numpy 2.4.6). Deterministic (seeded).
Writes: <type>.blocks (N super-blocks, raw GGUF bytes) and <type>.f32 (N*256 little-endian f32)
for q4_k, q5_k, q6_k, q2_k, q3_k.
"""
import argparse
import os

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

N_BLOCKS = 12
# (type, bytes per super-block, byte offsets of the f16 scales inside a block)
# Q2_K/Q3_K come last so the earlier types' random blocks (drawn first) stay the same.
TYPES = [("q4_k", T.Q4_K, 144, (0, 2)), ("q5_k", T.Q5_K, 176, (0, 2)), ("q6_k", T.Q6_K, 210, (208,)),
         ("q2_k", T.Q2_K, 84, (80, 82)), ("q3_k", T.Q3_K, 110, (108,))]
# f16 super-scales: ordinary, tiny, subnormal, zero, negative, large.
SCALES = [0.0123, 1.0, -0.5, 3.1e-5, 6e-8, 0.0, -7.25, 400.0, 1.5e-3, -2e-6, 0.25, 65504.0 / 127]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "kquant"))
    out = ap.parse_args().out
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(9009)
    for name, qtype, bb, scale_at in TYPES:
        blocks = rng.integers(0, 256, size=(N_BLOCKS, bb), dtype=np.uint8)
        for i in range(N_BLOCKS):
            for k, at in enumerate(scale_at):
                v = np.float16(SCALES[(i + 5 * k) % len(SCALES)])
                blocks[i, at : at + 2] = np.frombuffer(v.tobytes(), dtype=np.uint8)
        if name == "q6_k":
            blocks[0, 192] = 0x80  # scale -128
            blocks[1, 192:208] = 0x7F  # scale 127
        if name == "q3_k":
            blocks[0, 96:108] = 0x00  # every scale -32
            blocks[1, 96:108] = 0xFF  # every scale 31
            blocks[2, 0:32] = 0x00  # every third bit clear: codes -4..-1
        ref = quants.dequantize(blocks.reshape(-1), qtype).astype("<f4").reshape(-1)
        assert ref.shape == (N_BLOCKS * 256,) and np.all(np.isfinite(ref))
        with open(os.path.join(out, f"{name}.blocks"), "wb") as f:
            f.write(blocks.tobytes())
        with open(os.path.join(out, f"{name}.f32"), "wb") as f:
            f.write(ref.tobytes())
        print(f"{name}: {N_BLOCKS} super-blocks, |x| max {np.abs(ref).max():.3g}")


if __name__ == "__main__":
    main()
