//! Multi-head latent attention (DeepSeek-V2 §2.1) over the compressed cache.
//!
//! Shapes, for a batch of `n` tokens at positions `pos0..pos0+n`, `H` heads, latent rank `L`,
//! rope dim `R`, `D = qk_nope`, `V = v_head_dim`:
//! - `q [n, H, D+R]` from `q_proj` or q-LoRA; `kv [n, L+R] = kv_a · x`;
//! - `c_kv = RMSNorm(kv[.., :L])`, `k_pe = RoPE(kv[.., L:])` go to the cache;
//! - expanded path (prefill): `k_nope[j,h] = W_UK[h] c_j  [D]`, `v[j,h] = W_UV[h] c_j  [V]`,
//!   ordinary attention per head;
//! - absorbed path (decode): `q_lat[h] = W_UK[h]ᵀ q_nope[h]  [L]`, scores `q_lat·c_j + q_pe·k_pe_j`,
//!   `lat[h] = Σ p_j c_j  [L]`, `o[h] = W_UV[h] lat[h]  [V]`; no per-head K or V is formed.
//!
//! Both paths compute the same function; a test checks it.

use crate::attention::kv_cache::KvCache;
use crate::config::DeepSeekConfig;
use crate::model::weights::{Attention, QWeights};
use crate::ops::{self, rope::Rope};
use crate::tensor::view::{matmul_multi, MatJob};
use rayon::prelude::*;

/// Below this many multiply-adds, decode attention runs its heads on the calling thread.
const PARALLEL_MIN_WORK: usize = 1 << 16;

/// The eps of the q-LoRA and KV latent RMSNorms.
pub const LATENT_NORM_EPS: f32 = 1e-6;

/// Which way attention is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AttnPath {
    /// Absorbed for decode and for batches: with the SIMD kernels it measured as fast as the
    /// expanded path at 512 tokens and its cost grows more slowly with the context
    /// (`moela bench -p 512` on a 4-layer V2-Lite-shaped Q4_0 file: 97-101 vs 90-91 tok/s).
    /// The expanded path is what transformers computes; both agree within f32 rounding.
    #[default]
    Auto,
    Expanded,
    Absorbed,
}

/// Buffers reused across calls (grown, never shrunk).
#[derive(Default, Debug)]
pub struct MlaScratch {
    q: Vec<f32>,
    q_a: Vec<f32>,
    kv: Vec<f32>,
    norm_w: Vec<f32>,
    cache_f32: Vec<f32>,
    lats: Vec<f32>,
    heads: Vec<f32>,
    o: Vec<f32>,
    q_abs: Vec<f32>,
    tok: TokenBufs,
}

/// One token's buffers for the absorbed path.
#[derive(Default, Debug)]
struct TokenBufs {
    scores: Vec<f32>,
    parts: Vec<f32>,
}

thread_local! {
    /// Each worker's buffers for the tokens of a batch.
    static TOKEN_BUFS: std::cell::RefCell<TokenBufs> = std::cell::RefCell::new(TokenBufs::default());
    /// Each worker's scores of one position chunk (decode).
    static CHUNK_SCORES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Dimensions of the absorbed path (see the module doc).
struct AbsorbedShape {
    nh: usize,
    dn: usize,
    qk: usize,
    vd: usize,
    l: usize,
    row: usize,
    scale: f32,
}

/// Cached positions per chunk of the one-pass attention: 256 rows of 576 values are 576 KiB
/// in f32 (288 KiB in f16), so a chunk read for its scores is still in L2 for its sums.
const POS_CHUNK: usize = 256;

fn resize(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    v.resize(n, 0.0);
    &mut v[..n]
}

/// Runs attention of one layer for `n` tokens; writes `out [n, hidden]`.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    cfg: &DeepSeekConfig,
    w: &Attention,
    rope: &Rope,
    kv: &mut KvCache,
    layer: usize,
    pos0: usize,
    x: &[f32],
    n: usize,
    path: AttnPath,
    s: &mut MlaScratch,
    out: &mut [f32],
) {
    let (hd, nh) = (cfg.hidden_size, cfg.n_heads);
    let (dn, r, vd, l) = (
        cfg.qk_nope_head_dim,
        cfg.qk_rope_head_dim,
        cfg.v_head_dim,
        cfg.kv_lora_rank,
    );
    let qk = dn + r;
    // DeepSeek builds q_a_layernorm and kv_a_layernorm with the RMSNorm default eps (1e-6),
    // not config.rms_norm_eps (both its own code and transformers).
    let eps = LATENT_NORM_EPS;

    // Queries [n, H, D+R].
    let q = resize(&mut s.q, n * nh * qk);
    match &w.q {
        QWeights::Direct { q: wq } => wq.matmul(x, n, q),
        QWeights::LoRA { q_a, norm, q_b } => {
            let rank = q_a.rows;
            let qa = resize(&mut s.q_a, n * rank);
            q_a.matmul(x, n, qa);
            let nw = resize(&mut s.norm_w, rank);
            norm.row_f32(0, nw);
            for t in qa.chunks_exact_mut(rank) {
                ops::rms_norm_inplace(t, nw, eps);
            }
            q_b.matmul(qa, n, q);
        }
    }
    // Latent and rope key → cache.
    let kvb = resize(&mut s.kv, n * (l + r));
    w.kv_a.matmul(x, n, kvb);
    let nw = resize(&mut s.norm_w, l);
    w.kv_a_norm.row_f32(0, nw);
    for (t, row) in kvb.chunks_exact_mut(l + r).enumerate() {
        let (c, pe) = row.split_at_mut(l);
        ops::rms_norm_inplace(c, nw, eps);
        rope.apply(pe, pos0 + t);
        kv.write(layer, pos0 + t, row);
    }
    for (t, qt) in q.chunks_exact_mut(nh * qk).enumerate() {
        for qh in qt.chunks_exact_mut(qk) {
            rope.apply(&mut qh[dn..], pos0 + t);
        }
    }

    let n_kv = pos0 + n;
    let row = l + r;
    let scale = cfg.softmax_scale();
    let o = resize(&mut s.o, n * nh * vd);
    let expanded = match path {
        AttnPath::Auto => false,
        AttnPath::Expanded => true,
        AttnPath::Absorbed => false,
    };

    if expanded {
        let cache = kv.rows(layer, n_kv, &mut s.cache_f32);
        // The latents of every cached position, contiguous [n_kv, L], so each head's
        // up-projection is one matrix product that loads each weight row once.
        let lats = resize(&mut s.lats, n_kv * l);
        for (j, c) in lats.chunks_exact_mut(l).enumerate() {
            c.copy_from_slice(&cache[j * row..j * row + l]);
        }
        let lats = &*lats;
        // Per head: keys [n_kv, D], values [n_kv, V], scores [n_kv], outputs [n, V].
        let per_head = n_kv * (dn + vd + 1) + n * vd;
        let hs = resize(&mut s.heads, nh * per_head);
        let head = |(h, buf): (usize, &mut [f32])| {
            let (kn, rest) = buf.split_at_mut(n_kv * dn);
            let (vv, rest) = rest.split_at_mut(n_kv * vd);
            let (scores, ob) = rest.split_at_mut(n_kv);
            w.k_up[h].apply_batch(lats, n_kv, kn);
            w.v_up[h].apply_batch(lats, n_kv, vv);
            for t in 0..n {
                let seen = pos0 + t + 1;
                let qh = &q[(t * nh + h) * qk..(t * nh + h + 1) * qk];
                for (j, sc) in scores[..seen].iter_mut().enumerate() {
                    let k_pe = &cache[j * row + l..(j + 1) * row];
                    *sc = (ops::dot(&qh[..dn], &kn[j * dn..(j + 1) * dn])
                        + ops::dot(&qh[dn..], k_pe))
                        * scale;
                }
                ops::softmax(&mut scores[..seen]);
                let oh = &mut ob[t * vd..(t + 1) * vd];
                oh.fill(0.0);
                for (j, &p) in scores[..seen].iter().enumerate() {
                    ops::axpy(p, &vv[j * vd..(j + 1) * vd], oh);
                }
            }
        };
        if rayon::current_num_threads() > 1 && n_kv * l * (dn + vd) >= PARALLEL_MIN_WORK {
            hs.par_chunks_mut(per_head).enumerate().for_each(head);
        } else {
            hs.chunks_mut(per_head).enumerate().for_each(head);
        }
        for (h, buf) in hs.chunks(per_head).enumerate() {
            let ob = &buf[n_kv * (dn + vd + 1)..];
            for t in 0..n {
                o[(t * nh + h) * vd..(t * nh + h + 1) * vd]
                    .copy_from_slice(&ob[t * vd..(t + 1) * vd]);
            }
        }
    } else {
        // Absorbed (see `absorbed_token`). One token (decode) splits its own work across the
        // threads. A batch first absorbs every token's queries per head as one product, then
        // gives each thread whole tokens for the scores and sums (the cache rows of the batch
        // were all written above; each token reads only positions up to its own), then
        // up-projects every token's latents per head as one product.
        let shape = AbsorbedShape {
            nh,
            dn,
            qk,
            vd,
            l,
            row,
            scale,
        };
        let cache = kv.raw_rows(layer, n_kv);
        let parallel = rayon::current_num_threads() > 1;
        let qa = resize(&mut s.q_abs, n * nh * row);
        absorb_queries(&shape, w, q, n, qa, &mut s.heads, parallel);
        let qa = &*qa;
        let lats = resize(&mut s.lats, n * nh * l);
        if n == 1 {
            absorbed_token(&shape, cache, pos0 + 1, qa, lats, &mut s.tok, parallel);
        } else {
            let run = |b: &mut TokenBufs, (t, lt): (usize, &mut [f32])| {
                let qt = &qa[t * nh * row..(t + 1) * nh * row];
                absorbed_token(&shape, cache, pos0 + t + 1, qt, lt, b, false);
            };
            if parallel {
                // Each worker keeps its token buffers between calls (fresh ones cost page
                // faults on every batch).
                lats.par_chunks_mut(nh * l).enumerate().for_each(|a| {
                    TOKEN_BUFS.with(|cell| match cell.try_borrow_mut() {
                        Ok(mut b) => run(&mut b, a),
                        Err(_) => run(&mut TokenBufs::default(), a),
                    })
                });
            } else {
                let b = &mut s.tok;
                lats.chunks_mut(nh * l).enumerate().for_each(|a| run(b, a));
            }
        }
        up_project(
            &shape,
            w,
            &s.lats[..n * nh * l],
            n,
            o,
            &mut s.heads,
            parallel,
        );
    }
    debug_assert_eq!(out.len(), n * hd);
    w.o.matmul(o, n, out);
}

/// `qa[t, h] = W_UK[h]ᵀ q_nope[t, h] ‖ q_pe[t, h]` (the cache row's layout) for `n` tokens of
/// `q [n, H, D+R]`: per head one product over all the tokens. `buf` is scratch.
fn absorb_queries(
    sh: &AbsorbedShape,
    w: &Attention,
    q: &[f32],
    n: usize,
    qa: &mut [f32],
    buf: &mut Vec<f32>,
    parallel: bool,
) {
    let AbsorbedShape {
        nh, dn, qk, l, row, ..
    } = *sh;
    let per_head = n * (dn + l);
    let bufs = resize(buf, nh * per_head);
    if w.k_up.iter().all(|p| p.transposed) {
        // Stored as llama.cpp's `attn_k_b` (`W_UKᵀ`): every head is a plain product, and all
        // of them go to the threads as one pass (one hand-off per layer instead of a nested
        // parallel product per head).
        let mut jobs = Vec::with_capacity(nh);
        for (h, b) in bufs.chunks_mut(per_head).enumerate() {
            let (qn, ql) = b.split_at_mut(n * dn);
            for t in 0..n {
                qn[t * dn..(t + 1) * dn].copy_from_slice(&q[(t * nh + h) * qk..][..dn]);
            }
            jobs.push(MatJob {
                w: &w.k_up[h].stored,
                x: qn,
                n,
                out: ql,
            });
        }
        matmul_multi(&mut jobs);
    } else {
        absorb_per_head(sh, w, q, n, bufs, parallel);
    }
    for t in 0..n {
        for h in 0..nh {
            let dst = &mut qa[(t * nh + h) * row..(t * nh + h + 1) * row];
            let ql = &bufs[h * per_head + n * dn..];
            dst[..l].copy_from_slice(&ql[t * l..(t + 1) * l]);
            dst[l..].copy_from_slice(&q[(t * nh + h) * qk + dn..(t * nh + h + 1) * qk]);
        }
    }
}

/// [`absorb_queries`]' products one head at a time (heads split across the threads), for
/// `W_UK` stored untransposed (HF's `kv_b_proj`).
fn absorb_per_head(
    sh: &AbsorbedShape,
    w: &Attention,
    q: &[f32],
    n: usize,
    bufs: &mut [f32],
    parallel: bool,
) {
    let AbsorbedShape { nh, dn, qk, l, .. } = *sh;
    let per_head = n * (dn + l);
    let head = |(h, b): (usize, &mut [f32])| {
        let (qn, ql) = b.split_at_mut(n * dn);
        for t in 0..n {
            qn[t * dn..(t + 1) * dn].copy_from_slice(&q[(t * nh + h) * qk..][..dn]);
        }
        w.k_up[h].apply_t_batch(qn, n, ql);
    };
    if parallel && n * nh * l * dn >= PARALLEL_MIN_WORK {
        bufs.par_chunks_mut(per_head).enumerate().for_each(head);
    } else {
        bufs.chunks_mut(per_head).enumerate().for_each(head);
    }
}

/// `o[t, h] = W_UV[h] lat[t, h]` for `n` tokens: per head one product over all the tokens.
fn up_project(
    sh: &AbsorbedShape,
    w: &Attention,
    lat: &[f32],
    n: usize,
    o: &mut [f32],
    buf: &mut Vec<f32>,
    parallel: bool,
) {
    let AbsorbedShape { nh, vd, l, .. } = *sh;
    let per_head = n * (l + vd);
    let bufs = resize(buf, nh * per_head);
    let gather = |h: usize, li: &mut [f32]| {
        for t in 0..n {
            li[t * l..(t + 1) * l].copy_from_slice(&lat[(t * nh + h) * l..(t * nh + h + 1) * l]);
        }
    };
    if w.v_up.iter().all(|p| !p.transposed) {
        // Every head is a plain product: all of them in one parallel pass (see
        // `absorb_queries`).
        let mut jobs = Vec::with_capacity(nh);
        for (h, b) in bufs.chunks_mut(per_head).enumerate() {
            let (li, oh) = b.split_at_mut(n * l);
            gather(h, li);
            jobs.push(MatJob {
                w: &w.v_up[h].stored,
                x: li,
                n,
                out: oh,
            });
        }
        matmul_multi(&mut jobs);
    } else {
        let head = |(h, b): (usize, &mut [f32])| {
            let (li, oh) = b.split_at_mut(n * l);
            gather(h, li);
            w.v_up[h].apply_batch(li, n, oh);
        };
        if parallel && n * nh * l * vd >= PARALLEL_MIN_WORK {
            bufs.par_chunks_mut(per_head).enumerate().for_each(head);
        } else {
            bufs.chunks_mut(per_head).enumerate().for_each(head);
        }
    }
    for t in 0..n {
        for h in 0..nh {
            let src = &bufs[h * per_head + n * l + t * vd..][..vd];
            o[(t * nh + h) * vd..(t * nh + h + 1) * vd].copy_from_slice(src);
        }
    }
}

/// Scores, softmax and weighted latents of one token that sees cached positions `0..seen`:
/// `qa [H, L+R]` (absorbed queries) in, `lat [H, L]` out. One pass over the cache in fixed
/// chunks of positions (flash-decoding): a chunk's scores, their exponentials against the
/// chunk's own maximum and the weighted sum of its latents are all computed while its rows
/// are still in L2, and the chunks are combined with their maxima at the end. All heads meet
/// each cached row together (the kernels keep a tile of heads in registers). The chunking
/// does not depend on `parallel` or the thread count, nor does the result.
fn absorbed_token(
    sh: &AbsorbedShape,
    cache: crate::kernels::CacheRows,
    seen: usize,
    qa: &[f32],
    lat: &mut [f32],
    b: &mut TokenBufs,
    parallel: bool,
) {
    let AbsorbedShape {
        nh, l, row, scale, ..
    } = *sh;
    let k = crate::kernels::active();
    let chunks = seen.div_ceil(POS_CHUNK);
    // Chunk c's part: latent sums [nh, L], then each head's maximum and sum of exponentials.
    let per_chunk = nh * (l + 2);
    let parts = resize(&mut b.parts, chunks * per_chunk);
    let run = |scores: &mut Vec<f32>, (c, part): (usize, &mut [f32])| {
        let (j0, j1) = (c * POS_CHUNK, ((c + 1) * POS_CHUNK).min(seen));
        let cnt = j1 - j0;
        let rows = cache.rows(j0, j1, row);
        let sc = resize(scores, nh * POS_CHUNK);
        k.mla_scores(nh, row, qa, rows, cnt, scale, sc, POS_CHUNK);
        let (acc, stats) = part.split_at_mut(nh * l);
        for h in 0..nh {
            let s = &mut sc[h * POS_CHUNK..h * POS_CHUNK + cnt];
            let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0f32;
            for v in s.iter_mut() {
                *v = (*v - max).exp();
                sum += *v;
            }
            stats[2 * h] = max;
            stats[2 * h + 1] = sum;
        }
        acc.fill(0.0);
        k.mla_accum(nh, l, row, sc, POS_CHUNK, rows, cnt, acc);
    };
    if parallel && chunks > 1 {
        parts.par_chunks_mut(per_chunk).enumerate().for_each(|a| {
            CHUNK_SCORES.with(|cell| match cell.try_borrow_mut() {
                Ok(mut v) => run(&mut v, a),
                Err(_) => run(&mut Vec::new(), a),
            })
        });
    } else {
        let scores = &mut b.scores;
        parts
            .chunks_mut(per_chunk)
            .enumerate()
            .for_each(|a| run(scores, a));
    }
    // lat[h] = Σ_c e^(max_c - max) · acc_c[h] / Σ_c e^(max_c - max) · sum_c.
    let parts = &*parts;
    for h in 0..nh {
        let stat = |c: usize| {
            let st = &parts[c * per_chunk + nh * l + 2 * h..];
            (st[0], st[1])
        };
        let max = (0..chunks)
            .map(|c| stat(c).0)
            .fold(f32::NEG_INFINITY, f32::max);
        let out = &mut lat[h * l..(h + 1) * l];
        out.fill(0.0);
        let mut total = 0.0f32;
        for c in 0..chunks {
            let (m, sum) = stat(c);
            let wgt = (m - max).exp();
            total += wgt * sum;
            ops::axpy(wgt, &parts[c * per_chunk + h * l..][..l], out);
        }
        let inv = 1.0 / total;
        for v in out.iter_mut() {
            *v *= inv;
        }
    }
}
