#!/usr/bin/env python3
"""Generate with moela from Python.

    python3 examples/python/generate.py MODEL --tokens 1,2,3 [-n 32]     prints generated ids
    python3 examples/python/generate.py MODEL "Once upon a time" [-n 32]  streams text (needs a
                                                                         model with a tokenizer)

Uses the installed package (`pip install ./python`, which bundles the library) when there is
one; else the package in python/ of this checkout with the library through MOELA_LIBRARY
(default here: $CARGO_TARGET_DIR or target/, then release/libmoela.so).
Greedy unless --temp is given (the CLI samples with temperature 0.8 by default)."""

import argparse
import os
import sys
from pathlib import Path

root = Path(__file__).resolve().parents[2]
try:
    import moela
except ImportError:
    sys.path.insert(0, str(root / "python"))
    import moela

    built = Path(os.environ.get("CARGO_TARGET_DIR", root / "target"), "release", "libmoela.so")
    if "MOELA_LIBRARY" not in os.environ and built.exists():
        os.environ["MOELA_LIBRARY"] = str(built)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("prompt", nargs="?")
    ap.add_argument("--tokens", help="comma-separated token ids instead of a text prompt")
    ap.add_argument("-n", type=int, default=32, help="tokens to generate")
    ap.add_argument("--temp", type=float, default=0.0, help="0 = greedy")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    try:
        model = moela.Model(args.model)
        session = moela.Session(model)
        sampler = moela.Sampler(temperature=args.temp, seed=args.seed)
        if args.tokens:
            prompt = [int(t) for t in args.tokens.split(",")]
            ids = session.generate_tokens(prompt, max_tokens=args.n, sampler=sampler)
            print(" ".join(str(t) for t in ids))
        elif args.prompt is not None:
            for piece in moela.generate(session, args.prompt, max_tokens=args.n, sampler=sampler, add_bos=True):
                print(piece, end="", flush=True)
            print()
        else:
            ap.error("give a prompt or --tokens")
    except moela.MoelaError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
