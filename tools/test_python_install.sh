#!/usr/bin/env bash
# The Python package installs like one (run by tools/test_capi.sh, after `cargo build
# --release`):
#   1. `pip wheel ./python` makes a platform wheel (py3-none-<platform>, not py3-none-any)
#      with libmoela and py.typed inside;
#   2. in a fresh virtual environment, `pip install ./python`; then, from a directory outside
#      the checkout and with no MOELA_* variable set, `import moela` finds the bundled
#      library, loads the default model and generates;
#   3. without cargo, the build stops with a message saying so.
# The build step runs `cargo build --release --lib` in the same target dir as the rest of the
# tests ($CARGO_TARGET_DIR or target/), so an up-to-date library is reused, not rebuilt.
# Offline: the venv sees the system's setuptools and wheel (--system-site-packages) and pip
# builds without isolation, so nothing is downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
start=$SECONDS
# No MOELA_* variable anywhere below: the package must find its library by itself.
for v in $(compgen -e | grep '^MOELA_' || true); do unset "$v"; done
# Cargo's output directory as an absolute path (pip runs the build in another directory).
target=${CARGO_TARGET_DIR:-target}
case $target in /*) ;; *) target=$root/$target ;; esac
export CARGO_TARGET_DIR=$target
tmp=$(mktemp -d)
# pip builds in the source tree: remove what the build leaves there unless it was there before.
leftovers=
for d in python/build python/moela.egg-info; do
    [ -e "$d" ] || leftovers="$leftovers $root/$d"
done
trap 'rm -rf "$tmp" $leftovers' EXIT

python3 -m venv --system-site-packages "$tmp/venv"
py=$tmp/venv/bin/python
pip_q() { "$py" -m pip -q --disable-pip-version-check "$@"; }

echo "== pip wheel ./python"
pip_q wheel --no-build-isolation --no-deps -w "$tmp/wheels" ./python
"$py" - "$tmp/wheels" <<'EOF'
import pathlib, sys, zipfile
wheels = list(pathlib.Path(sys.argv[1]).glob("moela-*.whl"))
assert len(wheels) == 1, wheels
w = wheels[0]
tag = w.name[: -len(".whl")].split("-")[-3:]
assert tag[:2] == ["py3", "none"] and tag[2] != "any", f"{w.name}: not a py3-none-<platform> wheel"
names = zipfile.ZipFile(w).namelist()
for need in ["moela/__init__.py", "moela/_ffi.py", "moela/py.typed", "moela/libmoela.so"]:
    assert need in names, f"{w.name} lacks {need}: {names}"
wheel_meta = zipfile.ZipFile(w).read(next(n for n in names if n.endswith(".dist-info/WHEEL")))
assert b"Root-Is-Purelib: false" in wheel_meta, wheel_meta
print(f"  {w.name}: {w.stat().st_size / 1e6:.1f} MB")
EOF

echo "== pip install ./python into a fresh venv; import and generate from outside the checkout"
pip_q install --no-build-isolation --no-deps ./python
mkdir "$tmp/elsewhere"
(cd "$tmp/elsewhere" && "$py" - "$root/models/moela-tiny-v3.gguf" <<'EOF'
import os, sys
import moela
from moela import _ffi
assert not [k for k in os.environ if k.startswith("MOELA_")]
pkg = os.path.dirname(os.path.abspath(moela.__file__))
assert pkg.startswith(sys.prefix + os.sep), f"moela imported from {pkg}, not the venv {sys.prefix}"
assert _ffi.find_library() == os.path.join(pkg, "libmoela.so"), _ffi.find_library()
with moela.Model(sys.argv[1]) as model, moela.Session(model, n_ctx=64) as session:
    text = "".join(session.generate("In the beginning", max_tokens=8))
    session.reset()
    ids = list(session.generate_tokens([1, 2, 3], max_tokens=8, ignore_eos=True))
    logits = session.logits()
assert text and len(ids) == 8, (text, ids)
# The package's version (python/pyproject.toml) is the library's (Cargo.toml): bump both.
from importlib.metadata import version
assert version("moela") == moela.version(), (version("moela"), moela.version())
print(f"  moela {moela.version()} from {pkg}: {text!r}, ids {ids}, logits {type(logits).__name__}")
EOF
)

echo "== without cargo, the build says so"
mkdir "$tmp/nobin"
if env PATH="$tmp/nobin" CARGO= CARGO_HOME="$tmp/nobin" "$py" -m pip -q --disable-pip-version-check \
    wheel --no-build-isolation --no-deps -w "$tmp/wheels2" ./python >"$tmp/nocargo.log" 2>&1; then
    echo "the build succeeded without cargo" >&2
    exit 1
fi
if ! grep -q "cargo was not found" "$tmp/nocargo.log"; then
    echo "the build without cargo failed without saying so:" >&2
    cat "$tmp/nocargo.log" >&2
    exit 1
fi
echo "  refused: $(grep -m1 'cargo was not found' "$tmp/nocargo.log" | sed 's/^ *//')"
echo "Python install: all checks passed ($((SECONDS - start)) s)"
