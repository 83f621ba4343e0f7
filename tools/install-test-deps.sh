#!/usr/bin/env bash
# Installs what the tests need when it is missing (Debian/Ubuntu, as root or with sudo):
# libclang (bindgen freshness check), cbindgen 0.24.3 + g++ + pkg-config (C API checks),
# gcc-aarch64-linux-gnu + qemu-user (NEON kernel tests), the Python packages gguf, numpy
# and safetensors (GGUF layout checks), and pip, venv, setuptools and wheel
# (tools/test_python_install.sh builds the Python package with `pip install
# --no-build-isolation` in a venv, which needs wheel's bdist_wheel; Debian's setuptools 65
# does not bring it). Called by tools/test.sh; does nothing when all is there.
set -euo pipefail
SUDO=
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
apt_get() { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get "$@"; }

if ! command -v cargo >/dev/null; then
    echo "cargo is required" >&2
    exit 1
fi
# libclang for bindgen (the bindings freshness check).
if ! ls /usr/lib/*/libclang-[0-9]*.so* /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1; then
    apt_get update -qq && apt_get install -y -qq libclang-dev >/dev/null
fi
# The C API checks: cbindgen (Debian's 0.24.3, the version include/moela.h is generated
# with), a C/C++ compiler with the sanitizer runtimes, pkg-config.
missing=
command -v cbindgen >/dev/null || missing="$missing cbindgen"
command -v pkg-config >/dev/null || missing="$missing pkg-config"
command -v g++ >/dev/null || missing="$missing g++"
if [ -n "$missing" ]; then
    apt_get update -qq && apt_get install -y -qq $missing >/dev/null
fi
# The NEON kernel tests: cross-compiled, run under qemu.
if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
    apt_get update -qq && apt_get install -y -qq gcc-aarch64-linux-gnu qemu-user >/dev/null
fi
# pip itself (Debian's python3 comes without it).
if ! python3 -m pip --version >/dev/null 2>&1; then
    apt_get update -qq && apt_get install -y -qq python3-pip >/dev/null
fi
# Virtual environments with pip in them (tools/test_python_install.sh): Debian keeps ensurepip
# in python3-venv.
if ! python3 -c "import ensurepip, venv" >/dev/null 2>&1; then
    apt_get update -qq && apt_get install -y -qq python3-venv >/dev/null
fi
# Debian's python3 is "externally managed" (PEP 668): pip refuses to install into it unless
# told to. The packages below only add to the system Python; that is what this script is for.
pip_install() {
    python3 -m pip install -q --disable-pip-version-check "$@" ||
        python3 -m pip install -q --disable-pip-version-check --break-system-packages "$@"
}
# The GGUF layout checks read files with the gguf package (pure Python + numpy).
if ! python3 -c "import gguf, numpy, safetensors" 2>/dev/null; then
    pip_install gguf numpy safetensors
fi
# The Python package's build (tools/test_python_install.sh: pip install --no-build-isolation
# ./python) uses the installed setuptools (>= 61, python/pyproject.toml) and wheel.
if ! python3 -c "import setuptools, sys; sys.exit(int(setuptools.__version__.split('.')[0]) < 61)" 2>/dev/null; then
    pip_install "setuptools>=61"
fi
if ! python3 -c "import wheel" 2>/dev/null; then
    pip_install wheel
fi

# The fuzz step: the nightly toolchain and cargo-fuzz (tools/fuzz.sh skips the step with a
# message when they cannot be had).
if ! cargo +nightly --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal || true
fi
if ! command -v cargo-fuzz >/dev/null; then
    cargo install cargo-fuzz --locked || true
fi
