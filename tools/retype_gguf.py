#!/usr/bin/env python3
"""Rewrite every quantized matrix of a GGUF file as random blocks of another ggml type, for
decode-speed measurements of that type (docs/QUANTIZATION.md, "V2-Lite 4-layer decode").

    python3 tools/retype_gguf.py IN.gguf OUT.gguf --type iq2_xxs [--seed 1]

Speed depends on the type's layout, not on the values, so the blocks are random bytes (every
index, sign and grid pattern is a valid block) with their scale fields set so that a row's
weights have standard deviation 1/sqrt(row length) and mean ~0 (a random sign per block), as
../shared/tools/make_synth_gguf.py does: activations stay in range in both moela and
llama.cpp (no NaN, infinity or denormal in their float work, which would time something else).
The scale for a type comes from gguf-py's dequantizer on unit-scale random blocks. The
output is meaningless as a model. F32/F16/BF16 tensors (norms, router) are copied as they are.
A row whose length is not a multiple of the type's block gets llama.cpp's fallback type
(llama-quantize's `tensor_type_fallback`: IQ*/IQ4_XS -> IQ4_NL, Q2_K/Q3_K/TQ* -> Q4_0,
Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0), as in the files people download.
Metadata is copied byte for byte. Needs numpy and the `gguf` package (its dequantizers).
"""
import argparse
import struct
import sys

import numpy as np

# ggml id, elements per block, bytes per block, f16 scale byte offsets (or a special rule).
TYPES = {
    "f32": (0, 1, 4, None), "f16": (1, 1, 2, None), "bf16": (30, 1, 2, None),
    "q4_0": (2, 32, 18, [0]), "q4_1": (3, 32, 20, [0, 2]), "q5_0": (6, 32, 22, [0]),
    "q5_1": (7, 32, 24, [0, 2]), "q8_0": (8, 32, 34, [0]),
    "q2_k": (10, 256, 84, [80, 82]), "q3_k": (11, 256, 110, [108]),
    "q4_k": (12, 256, 144, [0, 2]), "q5_k": (13, 256, 176, [0, 2]), "q6_k": (14, 256, 210, [208]),
    "iq2_xxs": (16, 256, 66, [0]), "iq2_xs": (17, 256, 74, [0]), "iq3_xxs": (18, 256, 98, [0]),
    "iq1_s": (19, 256, 50, [0]), "iq4_nl": (20, 32, 18, [0]), "iq3_s": (21, 256, 110, [0]),
    "iq2_s": (22, 256, 82, [0]), "iq4_xs": (23, 256, 136, [0]), "iq1_m": (29, 256, 56, "iq1_m"),
    "tq1_0": (34, 256, 54, [52]), "tq2_0": (35, 256, 66, [64]), "mxfp4": (39, 32, 17, "e8m0"),
}
BY_ID = {v[0]: k for k, v in TYPES.items()}
FALLBACK = {
    **{t: "iq4_nl" for t in ["iq1_s", "iq1_m", "iq2_xxs", "iq2_xs", "iq2_s", "iq3_xxs", "iq3_s", "iq4_xs"]},
    **{t: "q4_0" for t in ["q2_k", "q3_k", "tq1_0", "tq2_0"]},
    "q4_k": "q5_0", "q5_k": "q5_1", "q6_k": "q8_0",
}
FLOATS = {"f32", "f16", "bf16"}


def set_scales(b, name, scale):
    """Sets every block's scale fields of `b` (blocks × bytes) to ±scale[i] (random signs)."""
    _, _, _, fields = TYPES[name]
    n = b.shape[0]
    rng = np.random.default_rng(n)
    if fields == "e8m0":
        # ggml: E8M0 e means 2^(e-127), the values doubled: 2^(e-128) per unit code.
        e = np.clip(np.round(np.log2(scale) + 128), 1, 254)
        b[:, 0] = e.astype(np.uint8)
        return
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    h = (sign * scale).astype(np.float16).view(np.uint16)
    if fields == "iq1_m":
        # The f16 scale is spread over the top nibbles of the four u16 scale words (49..55).
        for k in range(4):
            b[:, 49 + 2 * k] = (b[:, 49 + 2 * k] & 0x0F) | (((h >> (4 * k)) & 15) << 4).astype(np.uint8)
        return
    for off in fields:
        sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
        h = (sign * scale).astype(np.float16).view(np.uint16)
        b[:, off] = (h & 0xFF).astype(np.uint8)
        b[:, off + 1] = (h >> 8).astype(np.uint8)


UNIT_STD = {}


def unit_std(name):
    """The weights' standard deviation of random blocks of `name` with unit scales."""
    if name not in UNIT_STD:
        from gguf.constants import GGMLQuantizationType
        from gguf.quants import dequantize
        b = np.random.default_rng(7).integers(0, 256, size=(1024, TYPES[name][2]), dtype=np.uint8)
        set_scales(b, name, np.ones(1024))
        UNIT_STD[name] = float(dequantize(b.reshape(-1), GGMLQuantizationType[name.upper()]).std())
    return UNIT_STD[name]


def random_blocks(rng, name, n_blocks, row):
    b = rng.integers(0, 256, size=(n_blocks, TYPES[name][2]), dtype=np.uint8)
    set_scales(b, name, np.full(n_blocks, (1.0 / np.sqrt(row)) / unit_std(name)))
    return b


class Reader:
    def __init__(self, data):
        self.d, self.p = data, 0

    def take(self, fmt):
        v = struct.unpack_from("<" + fmt, self.d, self.p)
        self.p += struct.calcsize("<" + fmt)
        return v[0] if len(v) == 1 else v

    def string(self):
        n = self.take("Q")
        s = bytes(self.d[self.p:self.p + n])
        self.p += n
        return s

    def value(self, t):
        sizes = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
        if t in sizes:
            return self.take(sizes[t])
        if t == 8:
            return self.string()
        if t == 9:
            et, n = self.take("I"), self.take("Q")
            return [self.value(et) for _ in range(n)]
        raise ValueError(f"unknown GGUF value type {t}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("inp")
    ap.add_argument("out")
    ap.add_argument("--type", required=True, choices=sorted(set(TYPES) - FLOATS))
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    data = np.memmap(a.inp, dtype=np.uint8, mode="r")
    r = Reader(data)
    if bytes(data[:4]) != b"GGUF":
        sys.exit(f"{a.inp}: not a GGUF file")
    r.p = 4
    version, n_tensors, n_kv = r.take("I"), r.take("Q"), r.take("Q")
    kv_start = r.p
    align = 32
    for _ in range(n_kv):
        key = r.string()
        t = r.take("I")
        v = r.value(t)
        if key == b"general.alignment":
            align = v
    kv_bytes = bytes(data[kv_start:r.p])
    infos = []
    for _ in range(n_tensors):
        name = r.string()
        nd = r.take("I")
        dims = [r.take("Q") for _ in range(nd)]
        tid, off = r.take("I"), r.take("Q")
        infos.append((name, dims, tid, off))
    data_start = (r.p + align - 1) // align * align

    rng = np.random.default_rng(a.seed)
    out_infos, blobs, offset, changed = [], [], 0, {}
    for name, dims, tid, off in infos:
        src = BY_ID.get(tid)
        if src is None:
            sys.exit(f"{name.decode()}: ggml type {tid} is not handled by this script")
        n = int(np.prod(dims))
        _, bs, bb, _ = TYPES[src]
        nbytes = n // bs * bb
        if src in FLOATS:
            new, blob = src, bytes(data[data_start + off:data_start + off + nbytes])
        else:
            new = a.type
            while dims[0] % TYPES[new][1] != 0:
                new = FALLBACK[new]
            blob = random_blocks(rng, new, n // TYPES[new][1], dims[0]).tobytes()
            changed[new] = changed.get(new, 0) + 1
        pad = (-offset) % align
        blobs.append(b"\0" * pad + blob)
        offset += pad
        out_infos.append((name, dims, TYPES[new][0], offset))
        offset += len(blob)
    with open(a.out, "wb") as f:
        f.write(b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv) + kv_bytes)
        for name, dims, tid, off in out_infos:
            f.write(struct.pack("<Q", len(name)) + name + struct.pack("<I", len(dims)))
            f.write(struct.pack(f"<{len(dims)}Q", *dims) + struct.pack("<IQ", tid, off))
        f.write(b"\0" * ((-f.tell()) % align))
        for blob in blobs:
            f.write(blob)
    print(f"{a.out}: {', '.join(f'{k} x{v}' for k, v in sorted(changed.items()))}")


if __name__ == "__main__":
    main()
