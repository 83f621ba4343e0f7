#!/usr/bin/env bash
# Installs the C library the way cargo-c's `cargo cinstall` lays it out:
#   $includedir/moela/moela.h, moela.hpp
#   $libdir/libmoela.so.X.Y.Z, libmoela.so.SOVER -> it, libmoela.so -> it   (SOVER: major, or 0.minor)
#   $libdir/libmoela.a
#   $libdir/pkgconfig/moela.pc   (Cflags: -I$includedir/moela, so `#include <moela.h>`)
#
#   bash tools/install.sh [--prefix /usr/local] [--libdir DIR] [--includedir DIR]
#                         [--destdir DIR] [--no-build]
# --destdir stages the files under DIR (for packaging) while moela.pc names the final paths.
# Without --no-build it first runs `cargo build --release --lib`.
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=/usr/local
libdir=
includedir=
destdir=
build=1
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix=$2; shift 2 ;;
        --libdir) libdir=$2; shift 2 ;;
        --includedir) includedir=$2; shift 2 ;;
        --destdir) destdir=$2; shift 2 ;;
        --no-build) build=0; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
libdir=${libdir:-$prefix/lib}
includedir=${includedir:-$prefix/include}

if [ "$build" = 1 ]; then
    cargo build --release --lib
fi
target=${CARGO_TARGET_DIR:-target}/release
for f in "$target/libmoela.so" "$target/libmoela.a"; do
    [ -f "$f" ] || { echo "install.sh: $f is missing (build first)" >&2; exit 1; }
done

version=$(sed -n 's/^version = "\([^"]*\)"$/\1/p' Cargo.toml | head -n 1)
IFS=. read -r major minor _ <<<"${version%%[-+]*}"
if [ "$major" = 0 ]; then sover="0.$minor"; else sover=$major; fi
# What a program linking libmoela.a also needs (Rust's std on Linux).
libs_private="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"

inc=$destdir$includedir/moela
lib=$destdir$libdir
install -d "$inc" "$lib/pkgconfig"
install -m 644 include/moela.h include/moela.hpp "$inc/"
install -m 755 "$target/libmoela.so" "$lib/libmoela.so.$version"
ln -sf "libmoela.so.$version" "$lib/libmoela.so.$sover"
ln -sf "libmoela.so.$sover" "$lib/libmoela.so"
install -m 644 "$target/libmoela.a" "$lib/libmoela.a"
sed -e "s|@PREFIX@|$prefix|" -e "s|@LIBDIR@|$libdir|" -e "s|@INCLUDEDIR@|$includedir|" \
    -e "s|@VERSION@|$version|" -e "s|@LIBS_PRIVATE@|$libs_private|" \
    tools/moela.pc.in >"$lib/pkgconfig/moela.pc"
echo "installed moela $version into $destdir$prefix (pkg-config: $libdir/pkgconfig/moela.pc)"
