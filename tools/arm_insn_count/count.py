#!/usr/bin/env python3
"""Instructions the AArch64 quantized kernels execute per weight block, under qemu-aarch64.

We cannot time ARM here, so this is the speed proxy of issue 16: qemu-aarch64 (user mode) with
-singlestep makes every translation block one instruction, `-d exec,nochain` logs each block it
executes, and `-dfilter` keeps only the addresses of the kernel object files' .text (from the
link map), so the log has one line per instruction the kernels execute. Debian's qemu-user 7.2
has no TCG plugins (no libinsn.so), hence this route. Each kernel runs on U and 2U blocks after
a size-independent setup; (count(2U) - count(U)) / U is the marginal cost of one 32-element
weight block (a K-quant super-block counts as 8 blocks): no call overhead, no setup, no tails.
GEMMs: per block and per (row, token) pair, for rows x tokens = 4x4, 4x16 and 8x64.

With --llama-cpp DIR, also ggml's kernels from that llama.cpp checkout
(ggml/src/ggml-cpu/arch/arm/quants.c, compiled here for armv8-a, +dotprod and +dotprod+i8mm
in a temporary directory; nothing of it is kept): vec_dot with nrc=1 (one row) and, for the
types that have one, its nrc=2 smmla path (2 rows x 2 tokens). ggml's K-quant kernels take
Q8_K activations (one scale per 256 values), moela's take q8a (one per 32).

Needs aarch64-linux-gnu-gcc and qemu-aarch64. Usage: tools/arm_insn_count/count.py
[--llama-cpp DIR]; prints a markdown table."""
import argparse, os, re, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CC = 'aarch64-linux-gnu-gcc'
TYPES = ['q8_0', 'q4_0', 'q4_k', 'q5_k', 'q6_k', 'q2_k', 'q3_k']
GEMM_TYPES = TYPES[:5]  # the i8mm set has no Q2_K/Q3_K GEMM


def sh(*cmd):
    subprocess.run(cmd, check=True)


def text_ranges(mapfile, objs):
    """qemu -dfilter ranges of the .text input sections of the named object files."""
    rng, lines = [], open(mapfile).read().splitlines()
    for i, l in enumerate(lines):
        m = re.match(r'\s*\.text\S*\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+(\S+)', l)
        if not m and re.match(r'\s*\.text\S*\s*$', l) and i + 1 < len(lines):
            m = re.match(r'\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+(\S+)', lines[i + 1])
        if m and os.path.basename(m.group(3)) in objs and int(m.group(2), 16) > 0:
            rng.append('%s+%s' % (m.group(1), m.group(2)))
    return ','.join(sorted(set(rng)))


def count(tmp, binary, dfilter, args):
    log = os.path.join(tmp, 'exec.log')
    sh('qemu-aarch64', '-cpu', 'max', '-singlestep', '-d', 'exec,nochain', '-dfilter', dfilter,
       '-D', log, binary, *[str(a) for a in args])
    with open(log) as f:
        return sum(1 for _ in f)


def per_block(tmp, binary, df, name, units, blocks_per_unit, extra=(), pairs=1):
    c1 = count(tmp, binary, df, [name, units, *extra])
    c2 = count(tmp, binary, df, [name, 2 * units, *extra])
    return (c2 - c1) / (units * blocks_per_unit * pairs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--llama-cpp', help='llama.cpp source checkout, for ggml\'s kernels')
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix='arm_insn_count.')
    here = os.path.dirname(os.path.abspath(__file__))
    inc = os.path.join(ROOT, 'csrc/include')
    # the flags of tools/test.sh / build.rs
    objs = {'generic.o': ('csrc/generic/generic.c', ['-O2']),
            'neon.o': ('csrc/arm/neon.c', ['-O3']),
            'dotprod.o': ('csrc/arm/dotprod.c', ['-O3', '-march=armv8.2-a+dotprod']),
            'i8mm.o': ('csrc/arm/i8mm.c', ['-O3', '-march=armv8.2-a+dotprod+i8mm'])}
    for o, (src, fl) in objs.items():
        sh(CC, '-std=c11', '-I' + inc, *fl, '-c', os.path.join(ROOT, src), '-o', os.path.join(tmp, o))
    sh(CC, '-O2', '-std=c11', '-I' + inc, '-c', os.path.join(here, 'driver.c'), '-o', os.path.join(tmp, 'driver.o'))
    mb = os.path.join(tmp, 'moela')
    sh(CC, '-static', os.path.join(tmp, 'driver.o'), *[os.path.join(tmp, o) for o in objs], '-lm',
       '-Wl,-Map,' + mb + '.map', '-o', mb)
    df = text_ranges(mb + '.map', set(objs))
    rows = {}
    for t in TYPES:
        k = t.endswith('_k')
        u, bpu = (4, 8) if k else (32, 1)
        r = rows.setdefault(t, {})
        for isa in ('generic', 'neon', 'dotprod'):
            r[isa] = per_block(tmp, mb, df, '%s_%s' % (t, isa), u, bpu)
        for nr, nt in ((4, 4), (4, 16), (8, 64)) if t in GEMM_TYPES else ():
            r['i8mm %dx%d' % (nr, nt)] = per_block(tmp, mb, df, t + '_i8mm', u, bpu, (nr, nt), nr * nt)
    cols = ['generic', 'neon', 'dotprod', 'i8mm 4x4', 'i8mm 4x16', 'i8mm 8x64']
    if args.llama_cpp:
        src = os.path.join(args.llama_cpp, 'ggml/src/ggml-cpu/arch/arm/quants.c')
        incs = ['-I' + os.path.join(args.llama_cpp, p) for p in ('ggml/include', 'ggml/src', 'ggml/src/ggml-cpu')]
        sh(CC, '-O2', '-std=c11', '-DGGML', '-c', os.path.join(here, 'driver.c'), '-o', os.path.join(tmp, 'gdriver.o'))
        for tag, march in (('neon', 'armv8-a'), ('dotprod', 'armv8.2-a+dotprod+fp16'),
                           ('i8mm', 'armv8.2-a+dotprod+i8mm+fp16')):
            o = 'ggml_%s.o' % tag
            sh(CC, '-O3', '-std=c11', '-march=' + march, '-D_GNU_SOURCE', '-DNDEBUG', *incs, '-c', src,
               '-o', os.path.join(tmp, o))
            gb = os.path.join(tmp, 'ggml_' + tag)
            sh(CC, '-static', os.path.join(tmp, 'gdriver.o'), os.path.join(tmp, o), '-lm', '-Wl,-Map,' + gb + '.map', '-o', gb)
            gdf = text_ranges(gb + '.map', {o})
            for t in TYPES:
                k = t.endswith('_k')
                u, bpu = (4, 8) if k else (32, 1)
                if tag != 'i8mm':
                    rows[t]['ggml ' + tag] = per_block(tmp, gb, gdf, t, u, bpu, (1,))
                elif t in ('q8_0', 'q4_0', 'q4_k', 'q6_k'):  # ggml's NEON i8mm (nrc=2) paths
                    rows[t]['ggml i8mm 2x2'] = per_block(tmp, gb, gdf, t, u, bpu, (2,), 4)
        cols += ['ggml neon', 'ggml dotprod', 'ggml i8mm 2x2']
    print('| type | ' + ' | '.join(cols) + ' |')
    print('|---' * (len(cols) + 1) + '|')
    for t in TYPES:
        print('| %s | ' % t.upper() + ' | '.join('%.1f' % rows[t][c] if c in rows[t] else '' for c in cols) + ' |')
    subprocess.run(['rm', '-rf', tmp])


if __name__ == '__main__':
    sys.exit(main())
