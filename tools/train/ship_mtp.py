#!/usr/bin/env python3
"""Put the trained MTP module into moela's default model: models/moela-tiny-v3.gguf gains block 6 in llama.cpp's
`nextn` layout, its trunk tensors and metadata untouched byte for byte.

  python3 tools/train/ship_mtp.py --build models/build --moela target/release/moela [--gguf models/moela-tiny-v3.gguf]

The input may already carry a block (a rebuild): its trunk part is taken and the block replaced.

1. BUILD/mtp_hf/: an HF checkpoint in DeepSeek's spelling (num_nextn_predict_layers = 1): the GGUF's trunk
   dequantized + BUILD/mtp/mtp_block.safetensors (train_mtp.py) as model.layers.6.*.
2. `moela convert BUILD/mtp_hf BUILD/mtp_conv.gguf --type q8_0`: moela's own writer lays the block out
   (blk.6.nextn.{eh_proj,enorm,hnorm,shared_head_norm} + blk.6 as a normal layer; no embed_tokens or
   shared_head_head: the module shares the trunk's) with its quantization policy (Q8_0 matrices, F32 norms,
   router and bias).
3. The output: every metadata key of the input GGUF, in order, with block_count 6 -> 7 and
   deepseek2.nextn_predict_layers = 1 added; every tensor of the input GGUF copied raw in its order, then the
   blk.6.* tensors of step 2 copied raw.
4. Checks: the trunk part of the output equals the input (metadata values and every tensor's type, shape and
   bytes); the block's tensors equal step 2's; the block read back from the output (dequantized, through
   train_mtp.py's inverse layout) scores on the validation split like the trained f32 module (its figures are
   written to BUILD/mtp/shipped_eval.json).
"""
import argparse, json, os, shutil, subprocess, sys

import numpy as np
import torch

torch.set_num_threads(1)
from gguf import GGUFReader, GGUFValueType, GGUFWriter

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, ".."))
import train as T  # noqa: E402
import train_mtp as M  # noqa: E402
from gen_fixtures import deepseek_state_dict  # noqa: E402

ARCH = "deepseek2"


def write_hf(build, trunk, block_path, out):
    from safetensors.torch import load_file, save_file

    os.makedirs(out, exist_ok=True)
    ds = dict(T.DS, num_nextn_predict_layers=1)
    with open(os.path.join(out, "config.json"), "w") as fh:
        json.dump(T.deepseek_config_json(ds), fh, indent=2)
        fh.write("\n")
    sd = dict(deepseek_state_dict(trunk))
    sd.update(load_file(block_path))
    save_file({k: v.contiguous() for k, v in sd.items()}, os.path.join(out, "model.safetensors"),
              metadata={"format": "pt"})
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(build, "tokenizer", f), os.path.join(out, f))


def write_gguf(src, out_path, n_trunk, block):
    """src's metadata (block_count = n_trunk + 1 and nextn_predict_layers = 1 with a block, the trunk's
    without) and src's trunk tensors, copied raw, then the tensors of `block` (raw)."""
    w = GGUFWriter(out_path, ARCH)  # writes general.architecture itself
    for name, f in src.fields.items():
        if name.startswith("GGUF.") or name in ("general.architecture", f"{ARCH}.nextn_predict_layers"):
            continue
        vt = f.types[0]
        sub = f.types[-1] if vt == GGUFValueType.ARRAY else None
        val = f.contents()
        if name == f"{ARCH}.block_count":
            val = n_trunk + (1 if block else 0)
        w.add_key_value(name, val, vt, sub_type=sub)
        if name == f"{ARCH}.block_count" and block:
            w.add_key_value(f"{ARCH}.nextn_predict_layers", 1, GGUFValueType.UINT32)
    trunk = [t for t in src.tensors if not t.name.startswith(f"blk.{n_trunk}.")]
    for t in trunk + list(block):
        w.add_tensor(t.name, t.data, raw_shape=t.data.shape, raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def merge(src_path, conv_path, out_path, n_trunk):
    src, conv = GGUFReader(src_path), GGUFReader(conv_path)
    blk = [t for t in conv.tensors if t.name.startswith(f"blk.{n_trunk}.")]
    assert blk, "moela convert wrote no MTP block"
    write_gguf(src, out_path, n_trunk, blk)
    return [t.name for t in blk]


def verify(src_path, conv_path, out_path, n_trunk):
    src, conv, out = GGUFReader(src_path), GGUFReader(conv_path), GGUFReader(out_path)
    rep = {}
    sk = [k for k in src.fields if not k.startswith("GGUF.")]
    ok = [k for k in out.fields if not k.startswith("GGUF.")]
    extra = [k for k in ok if k not in sk]
    assert extra == [f"{ARCH}.nextn_predict_layers"], extra
    assert int(out.fields[extra[0]].contents()) == 1
    assert [k for k in ok if k in sk] == sk, "metadata keys reordered or missing"
    for k in sk:
        a, b = src.fields[k], out.fields[k]
        if k == f"{ARCH}.block_count":
            assert (int(a.contents()), int(b.contents())) == (n_trunk, n_trunk + 1)
            continue
        assert a.types == b.types, k
        assert a.contents() == b.contents(), k
    rep["metadata_keys_identical"] = len(sk) - 1
    ot = {t.name: t for t in out.tensors}
    for t in src.tensors:
        u = ot.pop(t.name)
        assert u.tensor_type == t.tensor_type and list(u.shape) == list(t.shape), t.name
        assert bytes(np.asarray(u.data).view(np.uint8)) == bytes(np.asarray(t.data).view(np.uint8)), t.name
    rep["trunk_tensors_identical"] = len(src.tensors)
    ct = {t.name: t for t in conv.tensors}
    for name, u in ot.items():
        c = ct[name]
        assert name.startswith(f"blk.{n_trunk}.") and u.tensor_type == c.tensor_type
        assert bytes(np.asarray(u.data).view(np.uint8)) == bytes(np.asarray(c.data).view(np.uint8)), name
    rep["mtp_tensors"] = {n: f"{u.tensor_type.name} {[int(d) for d in u.shape]}" for n, u in sorted(ot.items())}
    # For the record: does moela convert of the dequantized trunk reproduce the committed trunk's bytes?
    same = sum(1 for t in src.tensors if t.name in ct and bytes(np.asarray(ct[t.name].data).view(np.uint8))
               == bytes(np.asarray(t.data).view(np.uint8)))
    rep["reconverted_trunk_tensors_byte_equal"] = f"{same}/{len(src.tensors)}"
    return rep


def check_layout(out_path, hf_dir):
    """tools/check_gguf_layout.py's checks of llama.cpp's deepseek2 layout: key types, exactly the tensor set
    llama.cpp creates for this config (the nextn block without shared_head_head: the module shares the trunk's
    output head), every shape, 32-byte alignment."""
    import check_gguf_layout as L

    c = json.load(open(os.path.join(hf_dir, "config.json")))
    want = L.expected_tensors(c)
    del want[f"blk.{c['num_hidden_layers']}.nextn.shared_head_head.weight"]
    r = GGUFReader(out_path)
    for k, ty in L.KEY_TYPES.items():
        f = r.fields.get(k)
        L.check(f is not None and f.types[0] == ty, f"key {k} missing or of type {f and f.types}")
    got = L.check_tensor_set(out_path, r, want)
    for n, t in got.items():
        L.check(t.data_offset % 32 == 0, f"{n} data not 32-byte aligned")
    res = dict(L.results)
    assert res["failed"] == 0, res
    return f"{res['passed']} passed, {res['failed']} failed"


def shipped_module(out_path, trunk):
    """The MTP module as stored in the output (dequantized), through train_mtp.py's inverse layout."""
    a, _, _ = M.gguf_arrays(out_path, only_trunk=False)
    n = T.DS["num_hidden_layers"]
    ds = dict(T.DS, num_hidden_layers=n + 1)
    sd = M.hf_state_from_gguf(a, n + 1, ds)
    p = f"model.layers.{n}."
    mtp = M.MTP(trunk, trunk.config, torch.Generator().manual_seed(0))
    mtp.block.load_state_dict({k[len(p):]: v for k, v in sd.items() if k.startswith(p)}, strict=True)
    g = lambda k: torch.from_numpy(np.array(a[f"blk.{n}.nextn.{k}.weight"]))  # noqa: E731
    with torch.no_grad():
        mtp.enorm.weight.copy_(g("enorm"))
        mtp.hnorm.weight.copy_(g("hnorm"))
        mtp.eh_proj.weight.copy_(g("eh_proj"))
        mtp.head_norm.weight.copy_(g("shared_head_norm"))
    return mtp.eval()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "models", "build"))
    ap.add_argument("--gguf", default=M.DEFAULT_GGUF, help="the trunk-only GGUF (input)")
    ap.add_argument("--out", default=None, help="output GGUF (default: replace --gguf)")
    ap.add_argument("--moela", default=os.path.join(ROOT, "target", "release", "moela"))
    ap.add_argument("--eval-windows", type=int, default=None)
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    out = a.out or a.gguf
    src = os.path.join(build, "trunk_only.gguf")
    r = GGUFReader(a.gguf)
    if f"{ARCH}.nextn_predict_layers" in r.fields:
        # Rebuilding: the trunk part of the shipped file (its tensors raw, its metadata without the nextn key).
        n_trunk = int(r.fields[f"{ARCH}.block_count"].contents()) - 1
        write_gguf(r, src, n_trunk, [])
        print(f"{a.gguf} has an MTP block: its trunk ({n_trunk} blocks) is {src}")
    else:
        shutil.copy(a.gguf, src)
    del r
    trunk, ds = M.load_trunk(src)
    n = ds["num_hidden_layers"]
    hf = os.path.join(build, "mtp_hf")
    write_hf(build, trunk, os.path.join(build, "mtp", "mtp_block.safetensors"), hf)
    conv = os.path.join(build, "mtp_conv.gguf")
    subprocess.run([a.moela, "convert", hf, conv, "--type", "q8_0"], check=True)
    tmp = out + ".tmp"
    names = merge(src, conv, tmp, n)
    os.replace(tmp, out)
    rep = verify(src, conv, out, n)
    rep["check_gguf_layout"] = check_layout(out, hf)
    rep["sizes"] = dict(before=os.path.getsize(src), after=os.path.getsize(out))
    print(json.dumps(rep, indent=1))

    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(build, "tokenizer", "tokenizer.json"))
    _, valid, _ = T.encode_docs(build, tok, M.TRUNK_SEED)
    mtp = shipped_module(out, trunk)
    ev = M.evaluate(trunk, mtp, valid, 256, max_windows=a.eval_windows)
    print("shipped (Q8_0) module on validation:", ev)
    rep["shipped_val"] = ev
    json.dump(rep, open(os.path.join(build, "mtp", "shipped_eval.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
