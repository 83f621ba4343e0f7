//! Rotary position embedding with DeepSeek's YaRN, on interleaved pairs `(x[2i], x[2i+1])`.
//!
//! DeepSeek's reference code rotates adjacent pairs (V2 through complex multiplication, V3 by
//! de-interleaving, rotating halves and leaving the result de-interleaved). Both give the same
//! q·k for every pair of positions, so the layout of the rotated vector does not matter as
//! long as q and k use the same one.

use crate::config::{yarn_mscale, DeepSeekConfig};

#[derive(Clone, Debug)]
pub struct Rope {
    inv_freq: Vec<f32>,
    /// YaRN's cos/sin multiplier (1 without YaRN).
    mscale: f32,
}

impl Rope {
    pub fn new(cfg: &DeepSeekConfig) -> Rope {
        let dim = cfg.qk_rope_head_dim;
        let base = cfg.rope_theta;
        // As DeepSeek's code: base ** (arange(0, dim, 2) / dim), in f32.
        let freq_extra: Vec<f32> = (0..dim / 2)
            .map(|i| 1.0 / base.powf((2 * i) as f32 / dim as f32))
            .collect();
        let Some(y) = cfg.yarn else {
            return Rope {
                inv_freq: freq_extra,
                mscale: 1.0,
            };
        };
        // Computed in f64 as Python does, so floor/ceil land on the same integers.
        let correction_dim = |rot: f32| {
            (dim as f64
                * (y.original_max_position_embeddings as f64
                    / (rot as f64 * 2.0 * std::f64::consts::PI))
                    .ln())
                / (2.0 * (base as f64).ln())
        };
        let low = correction_dim(y.beta_fast).floor().max(0.0) as f32;
        let high = correction_dim(y.beta_slow).ceil().min(dim as f64 - 1.0) as f32;
        let high = if low == high { high + 0.001 } else { high };
        let inv_freq = freq_extra
            .iter()
            .enumerate()
            .map(|(i, &extra)| {
                let inter = extra / y.factor;
                let ramp = ((i as f32 - low) / (high - low)).clamp(0.0, 1.0);
                let extra_mask = 1.0 - ramp;
                inter * (1.0 - extra_mask) + extra * extra_mask
            })
            .collect();
        Rope {
            inv_freq,
            mscale: yarn_mscale(y.factor, y.mscale) / yarn_mscale(y.factor, y.mscale_all_dim),
        }
    }

    /// Rotates `x` (one head's rope part, even length) in place for position `pos`.
    pub fn apply(&self, x: &mut [f32], pos: usize) {
        let p = pos as f32;
        for (pair, &f) in x.chunks_exact_mut(2).zip(&self.inv_freq) {
            let angle = p * f;
            let (c, s) = (angle.cos() * self.mscale, angle.sin() * self.mscale);
            let (a, b) = (pair[0], pair[1]);
            pair[0] = a * c - b * s;
            pair[1] = b * c + a * s;
        }
    }
}
