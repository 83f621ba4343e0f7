"""The build step of the moela Python package: ``pip install ./python`` and
``pip wheel ./python`` compile libmoela with cargo (release profile, the crate's cdylib) and
put it inside the package, next to ``__init__.py``, where ``moela`` finds it when
``$MOELA_LIBRARY`` is not set. Everything else (metadata, package data) is in pyproject.toml.

Build environment:
  CARGO                   the cargo to run (default: ``cargo`` on PATH, then ~/.cargo/bin)
  CARGO_TARGET_DIR        cargo's output directory, as for any cargo build: point it at an
                          existing one and an up-to-date library is reused, not rebuilt
  MOELA_PREBUILT_LIBRARY  bundle this already built libmoela instead of running cargo
  STRIP                   the strip that drops the debug info from the bundled copy (Linux;
                          default: strip on PATH, skipped when there is none)

The crate is the checkout this directory sits in (``python/..``), so wheels are built from the
checkout; an sdist does not carry the Rust sources.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
CRATE = HERE.parent


def _library_name() -> str:
    if sys.platform == "darwin":
        return "libmoela.dylib"
    if sys.platform == "win32":
        return "moela.dll"
    return "libmoela.so"


def _find_cargo() -> str:
    cargo = os.environ.get("CARGO") or shutil.which("cargo")
    if not cargo:
        home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
        candidate = home / "bin" / ("cargo.exe" if sys.platform == "win32" else "cargo")
        if candidate.is_file():
            cargo = str(candidate)
    if not cargo:
        raise SystemExit(
            "error: building the moela Python package compiles the moela library with cargo, "
            "and cargo was not found (not on PATH, $CARGO unset, no ~/.cargo/bin/cargo).\n"
            "Install Rust (https://rustup.rs) and retry, or set MOELA_PREBUILT_LIBRARY to an "
            f"already built {_library_name()} (cargo build --release) to bundle that one."
        )
    return cargo


def _cargo_build() -> Path:
    """Runs ``cargo build --release --lib`` on the crate and returns the cdylib's path."""
    manifest = CRATE / "Cargo.toml"
    if not manifest.is_file() or not (CRATE / "src" / "capi").is_dir():
        raise SystemExit(
            f"error: the moela crate is not at {CRATE} (no Cargo.toml with src/capi/): build "
            "the Python package from a moela checkout (pip install ./python, pip wheel "
            "./python), not from an sdist or a copy of python/, or set "
            f"MOELA_PREBUILT_LIBRARY to an already built {_library_name()}."
        )
    cmd = [
        _find_cargo(),
        "build",
        "--release",
        "--lib",
        "--manifest-path",
        str(manifest),
        "--message-format=json-render-diagnostics",
    ]
    print("moela: " + " ".join(cmd), file=sys.stderr, flush=True)
    # Cargo's progress and diagnostics go to stderr (shown by pip -v or on failure); its
    # stdout is the JSON stream naming the artifacts, wherever the target dir is.
    try:
        proc = subprocess.run(cmd, cwd=CRATE, stdout=subprocess.PIPE, check=False)
    except OSError as e:
        raise SystemExit(f"error: cannot run cargo ({cmd[0]}): {e}") from None
    if proc.returncode != 0:
        raise SystemExit(
            f"error: cargo build of the moela library failed (exit status {proc.returncode}); "
            "its messages are above"
        )
    found = None
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("reason") != "compiler-artifact":
            continue
        if "cdylib" not in msg.get("target", {}).get("crate_types", []):
            continue
        for f in msg.get("filenames", []):
            if Path(f).name == _library_name():
                found = Path(f)
    if found is None or not found.is_file():
        raise SystemExit(f"error: cargo built no {_library_name()} (its output named none)")
    return found


def _library() -> Path:
    prebuilt = os.environ.get("MOELA_PREBUILT_LIBRARY")
    if prebuilt:
        path = Path(prebuilt)
        if not path.is_file():
            raise SystemExit(f"error: MOELA_PREBUILT_LIBRARY={prebuilt} is not a file")
        return path
    return _cargo_build()


def _strip_debug(path: Path) -> None:
    """Drops the debug info from the bundled copy (the release profile keeps line tables for
    profiling: ~30 MB of a ~35 MB library), keeping every symbol. Linux only, when binutils'
    strip is there; the library works the same either way."""
    strip = os.environ.get("STRIP") or shutil.which("strip")
    if not sys.platform.startswith("linux") or not strip:
        return
    if subprocess.run([strip, "--strip-debug", str(path)], check=False).returncode != 0:
        print(f"moela: {strip} --strip-debug failed; bundling the library as built", file=sys.stderr)


class BuildPyWithLibrary(build_py):
    """build_py, then the library into the built package (or, for an editable install,
    into the source package)."""

    def run(self) -> None:
        super().run()
        lib = _library()
        if getattr(self, "editable_mode", False):
            dest_dir = HERE / "moela"
        else:
            dest_dir = Path(self.build_lib) / "moela"
        dest_dir.mkdir(parents=True, exist_ok=True)
        self._moela_lib = dest_dir / _library_name()
        shutil.copyfile(lib, self._moela_lib)
        os.chmod(self._moela_lib, 0o755)
        _strip_debug(self._moela_lib)
        print(f"moela: bundled {lib} as {self._moela_lib}", file=sys.stderr, flush=True)

    def get_outputs(self, include_bytecode: bool = True) -> list:  # type: ignore[override]
        outputs = list(super().get_outputs(include_bytecode))
        if not getattr(self, "editable_mode", False):
            outputs.append(str(Path(self.build_lib) / "moela" / _library_name()))
        return outputs


class BinaryDistribution(Distribution):
    """The package carries a native library: wheels are platform-specific and install into
    platlib, though there is no Python extension module."""

    def has_ext_modules(self) -> bool:
        return True


cmdclass: dict = {"build_py": BuildPyWithLibrary}

# The wheel tag: py3-none-<platform>. The library is loaded with ctypes, so any Python 3 of the
# platform can use it (no CPython ABI), but only on that platform. setuptools >= 70.1 has
# bdist_wheel; before that it came from the wheel package.
try:
    from setuptools.command.bdist_wheel import bdist_wheel as _bdist_wheel
except ImportError:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from wheel.bdist_wheel import bdist_wheel as _bdist_wheel
    except ImportError:
        _bdist_wheel = None

if _bdist_wheel is not None:

    class BdistWheelPlatform(_bdist_wheel):  # type: ignore[misc,valid-type]
        def finalize_options(self) -> None:
            super().finalize_options()
            self.root_is_pure = False

        def get_tag(self) -> tuple:
            _, _, plat = super().get_tag()
            return "py3", "none", plat

    cmdclass["bdist_wheel"] = BdistWheelPlatform

setup(cmdclass=cmdclass, distclass=BinaryDistribution, license="MIT")
