//! `cargo bench --bench kernels`: weight-streaming speed of the quantized dot-product kernels.
//!
//! For Q4_0, Q8_0, Q5_0, Q4_1, Q5_1, the K-quants (Q4_K, Q5_K, Q6_K, Q3_K, Q2_K), IQ4_NL, IQ4_XS and float weights (F32, F16, BF16) rows of 2048 columns (V2-Lite's hidden size) it reports, per kernel set
//! the CPU has, the GB/s of weights consumed by one thread on a matrix that fits in L2 (compute
//! bound) and on one far larger than the last-level cache (memory bound), each as a ratio to the
//! generic (scalar C) kernel; then the full matvec path (`TensorView::matvec`, all threads) on
//! the large matrix as a fraction of the read bandwidth `moela bench --mem-bw` measures. For the
//! types a set interleaves by eight rows (AVX2: Q4_0, Q5_0, Q4_K, Q5_K, Q6_K, Q4_1, Q5_1, Q2_K, Q3_K, IQ4_NL, IQ4_XS) the same
//! decode, GEMM and matvec figures are also given for that layout ("x8"), next to the file
//! layout's.
//! Environment: MOELA_BENCH_MB (size of the large matrix, default 512), MOELA_BENCH_TYPES
//! (comma-separated types, default all of the above).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use moela::kernels::{self, KernelSet, Q8Acts};
use moela::tensor::view::Backing;
use moela::tensor::{DType, TensorView};

const COLS: usize = 2048;

/// Random rows of `dtype` with small positive f16 scales (content does not matter for speed,
/// but the scales must be finite so the work is the real work).
fn random_matrix(dtype: DType, bytes: usize) -> TensorView {
    let rb = dtype.bytes_for(COLS).unwrap();
    // Whole groups of eight rows, so that the x8 layout exists for the types that have one.
    let rows = (bytes / rb / 8 * 8).max(8);
    let mut v = vec![0u8; rows * rb];
    let mut s = 0x9E3779B97F4A7C15u64;
    for b in v.iter_mut() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        *b = s as u8;
    }
    // Float weights: random signs and mantissas, exponents near 1 (no NaN, infinity or
    // subnormal, which some CPUs handle slowly).
    let float_bits: Option<(u32, u32, usize)> = match dtype {
        DType::F32 => Some((0x807f_ffff, 0x3f00_0000, 4)),
        DType::F16 => Some((0x83ff, 0x3800, 2)),
        DType::BF16 => Some((0x807f, 0x3f00, 2)),
        _ => None,
    };
    if let Some((keep, set, es)) = float_bits {
        for e in v.chunks_exact_mut(es) {
            let mut b = [0u8; 4];
            b[..es].copy_from_slice(e);
            let bits = (u32::from_le_bytes(b) & keep) | set;
            e.copy_from_slice(&bits.to_le_bytes()[..es]);
        }
        let len = v.len();
        return TensorView::new(dtype, rows, COLS, Backing::Owned(Arc::new(v)), 0..len).unwrap();
    }
    let bb = dtype.block_bytes();
    let scale = half::f16::from_f32(0.01).to_bits().to_le_bytes();
    // Where each type keeps its f16 scales: d first (d and dmin for Q4_K/Q5_K), Q6_K's d last.
    let at: &[usize] = match dtype {
        DType::Q4_K | DType::Q5_K => &[0, 2],
        DType::Q4_1 | DType::Q5_1 => &[0, 2],
        DType::Q6_K => &[208],
        DType::Q2_K => &[80, 82],
        DType::Q3_K => &[108],
        _ => &[0],
    };
    for blk in v.chunks_exact_mut(bb) {
        for &a in at {
            blk[a..a + 2].copy_from_slice(&scale);
        }
    }
    let len = v.len();
    TensorView::new(dtype, rows, COLS, Backing::Owned(Arc::new(v)), 0..len).unwrap()
}

fn activations() -> (Vec<f32>, Q8Acts) {
    let x: Vec<f32> = (0..COLS)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
        .collect();
    let mut q = Q8Acts::default();
    q.quantize(&x, COLS);
    (x, q)
}

/// GB/s of one thread running `k`'s decode kernels (`dot_rows`: the four-row kernel where the
/// set has one, else the one-row kernel) over every row in blocks of 64, best of `reps`.
fn one_thread(k: &KernelSet, w: &TensorView, x: &[f32], acts: &Q8Acts, reps: usize) -> f64 {
    let mut best = 0.0f64;
    let float = kernels::float_index(w.dtype).is_some();
    let mut vals = [0.0f32; 64];
    for _ in 0..reps {
        let t = Instant::now();
        let mut acc = 0.0f32;
        // Blocks of rows per call, as decode runs them.
        if float {
            let rb = w.row_bytes();
            for r in (0..w.rows).step_by(vals.len()) {
                let m = (w.rows - r).min(vals.len());
                k.dot_rows_f(w.dtype, &w.bytes()[r * rb..(r + m) * rb], x, &mut vals[..m]);
                acc += vals[0];
            }
        } else {
            let rb = w.row_bytes();
            for r in (0..w.rows).step_by(vals.len()) {
                let m = (w.rows - r).min(vals.len());
                acts.dot_rows(k, w.dtype, &w.bytes()[r * rb..(r + m) * rb], &mut vals[..m]);
                acc += vals[0];
            }
        }
        black_box(acc);
        best = best.max(w.n_bytes() as f64 / t.elapsed().as_secs_f64() / 1e9);
    }
    best
}

/// GB/s of one thread running `k`'s x8 decode kernel over the interleaved matrix `w` in blocks
/// of 64 rows (as decode runs it), best of `reps`.
fn one_thread_x8(k: &KernelSet, w: &TensorView, acts: &Q8Acts, reps: usize) -> f64 {
    let mut best = 0.0f64;
    let mut vals = [0.0f32; 64];
    let rb = w.row_bytes();
    for _ in 0..reps {
        let t = Instant::now();
        let mut acc = 0.0f32;
        for r in (0..w.rows).step_by(vals.len()) {
            let m = (w.rows - r).min(vals.len());
            acts.dot_x8(
                k,
                w.dtype,
                &w.bytes()[r * rb..(r + m) * rb],
                0,
                &mut vals[..m],
            );
            acc += vals[0];
        }
        black_box(acc);
        best = best.max(w.n_bytes() as f64 / t.elapsed().as_secs_f64() / 1e9);
    }
    best
}

/// Multiply-adds per second (×1e9) of one thread running `k`'s four-token kernel over every
/// row for `tokens` activation rows (prefill), best of `reps`.
fn one_thread_prefill(
    k: &KernelSet,
    w: &TensorView,
    xs: &[f32],
    acts: &Q8Acts,
    tokens: usize,
    reps: usize,
) -> f64 {
    let mut best = 0.0f64;
    let float = kernels::float_index(w.dtype).is_some();
    for _ in 0..reps {
        let t = Instant::now();
        let mut acc = 0.0f32;
        for r in 0..w.rows {
            for t0 in (0..tokens).step_by(4) {
                acc += if float {
                    k.dot_upto4_f(w.dtype, w.row(r), &xs[t0 * COLS..(t0 + 4) * COLS], 4)[0]
                } else {
                    acts.dot_upto4(k, w.dtype, w.row(r), t0, 4)[0]
                };
            }
        }
        black_box(acc);
        best = best.max((w.n_elements() * tokens) as f64 / t.elapsed().as_secs_f64() / 1e9);
    }
    best
}

/// Multiply-adds per second (×1e9) of one thread running `k`'s prefill GEMM (every row × all
/// `tokens` activation rows in one call), best of `reps`; None where `k` has no GEMM for the
/// type.
fn one_thread_gemm(
    k: &KernelSet,
    w: &TensorView,
    acts: &Q8Acts,
    tokens: usize,
    reps: usize,
) -> Option<f64> {
    let mut out = vec![0.0f32; w.rows * tokens];
    let mut best = 0.0f64;
    for _ in 0..reps {
        let t = Instant::now();
        // SAFETY: `out` holds tokens × rows values, the extent the GEMM writes with ldo = rows,
        // and nothing else uses it during the call.
        let ok = unsafe { acts.gemm(k, w.dtype, w.bytes(), w.rows, out.as_mut_ptr(), w.rows) };
        if !ok {
            return None;
        }
        black_box(&out);
        best = best.max((w.n_elements() * tokens) as f64 / t.elapsed().as_secs_f64() / 1e9);
    }
    Some(best)
}

/// MLA decode attention at a 4096-token context (16 heads, rows of 576: V2-Lite), one
/// thread: GFLOP/s of the scores and of the weighted sums per kernel set.
fn mla_attention(sets: &[KernelSet]) {
    use moela::kernels::CacheRows;
    let (nq, row, dim, nrows) = (16usize, 576usize, 512usize, 4096usize);
    let q: Vec<f32> = (0..nq * row)
        .map(|i| ((i * 7 % 13) as f32 - 6.0) / 6.0)
        .collect();
    let c: Vec<f32> = (0..nrows * row)
        .map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0)
        .collect();
    let p: Vec<f32> = (0..nq * nrows)
        .map(|i| (i % 17) as f32 / 17.0 / nrows as f32)
        .collect();
    let mut scores = vec![0.0f32; nq * nrows];
    let mut acc = vec![0.0f32; nq * dim];
    for k in sets {
        let (mut best_s, mut best_a) = (0.0f64, 0.0f64);
        for _ in 0..5 {
            let t = Instant::now();
            k.mla_scores(
                nq,
                row,
                &q,
                CacheRows::F32(&c),
                nrows,
                0.1,
                &mut scores,
                nrows,
            );
            best_s = best_s.max((2 * nq * row * nrows) as f64 / t.elapsed().as_secs_f64() / 1e9);
            let t = Instant::now();
            k.mla_accum(nq, dim, row, &p, nrows, CacheRows::F32(&c), nrows, &mut acc);
            best_a = best_a.max((2 * nq * dim * nrows) as f64 / t.elapsed().as_secs_f64() / 1e9);
        }
        black_box((&scores, &acc));
        println!(
            "mla   {:8} 1 thread, 16 heads x 4096 positions: scores {best_s:6.1} GFLOP/s, sums {best_a:6.1} GFLOP/s",
            k.name
        );
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it, and
    // then a small matrix only checks that the benchmark still runs.
    let benching = std::env::args().any(|a| a == "--bench");
    let big_mb: usize = std::env::var("MOELA_BENCH_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if benching { 512 } else { 2 });
    let sets = kernels::available();
    let (x, acts) = activations();
    let bw = moela::bench::measure_mem_bw() / 1e9;
    println!(
        "read bandwidth ({} threads): {bw:.2} GB/s; kernel sets: {:?}; active: {}",
        kernels::threads(),
        sets.iter().map(|s| s.name).collect::<Vec<_>>(),
        kernels::active().name
    );
    mla_attention(&sets);
    let types: Vec<DType> = match std::env::var("MOELA_BENCH_TYPES") {
        Ok(t) => t.split(',').filter_map(DType::from_name).collect(),
        Err(_) => vec![
            DType::Q4_0,
            DType::Q8_0,
            DType::Q5_0,
            DType::Q4_1,
            DType::Q5_1,
            DType::Q4_K,
            DType::Q5_K,
            DType::Q6_K,
            DType::Q3_K,
            DType::Q2_K,
            DType::IQ4_NL,
            DType::IQ4_XS,
            DType::F32,
            DType::F16,
            DType::BF16,
        ],
    };
    for dtype in types {
        let hot = random_matrix(dtype, 1 << 20);
        let cold = random_matrix(dtype, big_mb << 20);
        let (mut g_hot, mut g_cold) = (0.0, 0.0);
        for k in &sets {
            let h = one_thread(k, &hot, &x, &acts, 50);
            let c = one_thread(k, &cold, &x, &acts, 2);
            if k.name == "generic" {
                (g_hot, g_cold) = (h, c);
            }
            println!(
                "{:5} {:8} 1 thread: L2 {h:6.2} GB/s ({:5.2}x generic) | {big_mb} MB {c:6.2} GB/s ({:5.2}x generic)",
                dtype.name(),
                k.name,
                h / g_hot,
                c / g_cold
            );
            if k.wants_x8(dtype) {
                let (hot8, cold8) = (hot.interleaved().unwrap(), cold.interleaved().unwrap());
                let h8 = one_thread_x8(k, &hot8, &acts, 50);
                let c8 = one_thread_x8(k, &cold8, &acts, 2);
                println!(
                    "{:5} {:8} 1 thread, x8: L2 {h8:6.2} GB/s ({:5.2}x file layout) | {big_mb} MB {c8:6.2} GB/s ({:5.2}x file layout)",
                    dtype.name(),
                    k.name,
                    h8 / h,
                    c8 / c
                );
            }
        }
        let tokens = 64;
        let mut xs = Vec::new();
        for _ in 0..tokens {
            xs.extend_from_slice(&x);
        }
        let mut pacts = Q8Acts::default();
        pacts.quantize(&xs, COLS);
        pacts.group();
        for k in &sets {
            let g = one_thread_prefill(k, &hot, &xs, &pacts, tokens, 20);
            println!(
                "{:5} {:8} 1 thread, {tokens} tokens (prefill): {g:6.1} GMAC/s",
                dtype.name(),
                k.name
            );
            if let Some(g) = one_thread_gemm(k, &hot, &pacts, tokens, 20) {
                println!(
                    "{:5} {:8} 1 thread, {tokens} tokens (prefill GEMM): {g:6.1} GMAC/s",
                    dtype.name(),
                    k.name
                );
            }
            if k.wants_x8(dtype) {
                let hot8 = hot.interleaved().unwrap();
                let mut out = vec![0.0f32; hot8.rows * tokens];
                let mut best = 0.0f64;
                for _ in 0..20 {
                    let t = Instant::now();
                    // SAFETY: `out` holds tokens × rows values, the extent the GEMM writes
                    // with ldo = rows, and nothing else uses it during the call.
                    unsafe {
                        pacts.gemm_x8(
                            k,
                            dtype,
                            hot8.bytes(),
                            hot8.rows,
                            out.as_mut_ptr(),
                            hot8.rows,
                        )
                    };
                    black_box(&out);
                    best = best
                        .max((hot8.n_elements() * tokens) as f64 / t.elapsed().as_secs_f64() / 1e9);
                }
                println!(
                    "{:5} {:8} 1 thread, {tokens} tokens (prefill GEMM, x8): {best:6.1} GMAC/s",
                    dtype.name(),
                    k.name
                );
            }
        }
        let x8 = kernels::active()
            .wants_x8(dtype)
            .then(|| cold.interleaved())
            .flatten();
        for (what, m) in [("", Some(&cold)), (" (x8)", x8.as_ref())] {
            let Some(m) = m else { continue };
            let mut out = vec![0.0f32; m.rows];
            let mut best = 0.0f64;
            for _ in 0..3 {
                let t = Instant::now();
                m.matvec(&x, &mut out);
                best = best.max(m.n_bytes() as f64 / t.elapsed().as_secs_f64() / 1e9);
            }
            black_box(&out);
            println!(
                "{:5} matvec{what} {} threads, {big_mb} MB: {best:.2} GB/s = {:.0}% of read bandwidth",
                dtype.name(),
                kernels::threads(),
                100.0 * best / bw
            );
        }
    }
}
