#!/usr/bin/env python3
"""Reference Q4_1 / Q5_0 / Q5_1 / IQ4_NL / IQ4_XS blocks for moela's bit-exactness tests
(src/tensor/legacy.rs, src/tensor/iq4.rs).

Dequantization: random blocks -- every code, fifth-bit, IQ4_XS scale bit pattern, f16 scales and
mins of assorted magnitudes and signs including subnormals and zero -- and gguf-py's
dequantization of them (gguf.quants.dequantize). moela must decode them to the same floats.

Quantization: gguf-py implements the reference quantizers of Q4_1, Q5_0 and Q5_1 (not IQ4_NL /
IQ4_XS, which need llama.cpp's search); moela's must write the same bytes for the same input.

Usage:  python3 tools/gen_legacy_fixtures.py [--out tests/fixtures/legacy]
Needs:  numpy, gguf (written with gguf 0.19.0, numpy 2.4.6). Deterministic (seeded).
Writes: <type>.blocks (raw GGUF bytes) and <type>.f32 (their little-endian f32 values) for the
five types; quant_input.f32 (16 blocks of 32 floats) and quant_<type>.bin (gguf-py's
quantization of it) for q4_1, q5_0, q5_1.
"""
import argparse
import os

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

# (name, type, elements per block, bytes per block, number of blocks, f16 offsets: scale, min)
TYPES = [("q4_1", T.Q4_1, 32, 20, 16, (0, 2)), ("q5_0", T.Q5_0, 32, 22, 16, (0,)),
         ("q5_1", T.Q5_1, 32, 24, 16, (0, 2)), ("iq4_nl", T.IQ4_NL, 32, 18, 16, (0,)),
         ("iq4_xs", T.IQ4_XS, 256, 136, 6, (0,))]
# f16 scales: ordinary, tiny, subnormal, zero, negative, large.
SCALES = [0.0123, 1.0, -0.5, 3.1e-5, 6e-8, 0.0, -7.25, 400.0, 1.5e-3, -2e-6, 0.25, 65504.0 / 127]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "legacy"))
    out = ap.parse_args().out
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(1414)
    for name, qtype, be, bb, nb, scale_at in TYPES:
        blocks = rng.integers(0, 256, size=(nb, bb), dtype=np.uint8)
        for i in range(nb):
            for k, at in enumerate(scale_at):
                v = np.float16(SCALES[(i + 5 * k) % len(SCALES)])
                blocks[i, at : at + 2] = np.frombuffer(v.tobytes(), dtype=np.uint8)
        if name == "iq4_xs":
            blocks[0, 2:8] = 0x00  # every sub-block scale -32
            blocks[1, 2:8] = 0xFF  # every sub-block scale 31
        ref = quants.dequantize(blocks.reshape(-1), qtype).astype("<f4").reshape(-1)
        assert ref.shape == (nb * be,) and np.all(np.isfinite(ref))
        with open(os.path.join(out, f"{name}.blocks"), "wb") as f:
            f.write(blocks.tobytes())
        with open(os.path.join(out, f"{name}.f32"), "wb") as f:
            f.write(ref.tobytes())
        print(f"{name}: {nb} blocks, |x| max {np.abs(ref).max():.3g}")

    x = rng.standard_normal((16, 32)).astype(np.float32)
    x[0] *= 1e-3
    x[1] *= 300.0
    x[2] = 0.0  # all zero: d = 0
    x[3] = 1.25  # constant: max == min
    x[4, :] = np.arange(32, dtype=np.float32) - 15.5  # evenly spaced: rounding ties
    x[5, 7], x[5, 9] = 4.0, -4.0  # magnitude tie: the first one sets Q5_0's sign
    x[6] = np.abs(x[6])  # all positive
    x[7] = -np.abs(x[7])  # all negative
    x = x.reshape(-1)
    with open(os.path.join(out, "quant_input.f32"), "wb") as f:
        f.write(x.astype("<f4").tobytes())
    for name, qtype in (("q4_1", T.Q4_1), ("q5_0", T.Q5_0), ("q5_1", T.Q5_1)):
        q = quants.quantize(x, qtype)
        with open(os.path.join(out, f"quant_{name}.bin"), "wb") as f:
            f.write(q.tobytes())
        print(f"quant_{name}: {q.size} bytes")


if __name__ == "__main__":
    main()
