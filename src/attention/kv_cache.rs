//! The MLA cache: per layer and position, only the compressed latent `c_kv` (kv_lora_rank)
//! and the shared RoPE key `k_pe` (qk_rope_head_dim): 576 values a token for V2/V3, about a
//! tenth of what multi-head attention would store.

use half::f16;

/// Element type of the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KvType {
    #[default]
    F32,
    F16,
}

#[derive(Clone, Debug)]
enum Store {
    F32(Vec<f32>),
    F16(Vec<f16>),
}

#[derive(Clone, Debug)]
pub struct KvCache {
    store: Store,
    /// Values per position: kv_lora_rank + qk_rope_head_dim.
    pub row: usize,
    pub n_ctx: usize,
    pub n_layers: usize,
}

impl KvCache {
    pub fn new(kind: KvType, n_layers: usize, n_ctx: usize, row: usize) -> KvCache {
        let n = n_layers * n_ctx * row;
        let store = match kind {
            KvType::F32 => Store::F32(vec![0.0; n]),
            KvType::F16 => Store::F16(vec![f16::ZERO; n]),
        };
        KvCache {
            store,
            row,
            n_ctx,
            n_layers,
        }
    }

    pub fn bytes_per_token(kind: KvType, n_layers: usize, row: usize) -> usize {
        let el = match kind {
            KvType::F32 => 4,
            KvType::F16 => 2,
        };
        n_layers * row * el
    }

    fn offset(&self, layer: usize, pos: usize) -> usize {
        (layer * self.n_ctx + pos) * self.row
    }

    /// Stores one position's `c_kv ‖ k_pe`.
    pub fn write(&mut self, layer: usize, pos: usize, values: &[f32]) {
        let o = self.offset(layer, pos);
        match &mut self.store {
            Store::F32(v) => v[o..o + self.row].copy_from_slice(values),
            Store::F16(v) => v[o..o + self.row]
                .iter_mut()
                .zip(values)
                .for_each(|(d, &s)| *d = f16::from_f32(s)),
        }
    }

    /// Positions `0..n` of `layer` as f32 rows; an f16 cache is widened into `scratch`.
    pub fn rows<'a>(&'a self, layer: usize, n: usize, scratch: &'a mut Vec<f32>) -> &'a [f32] {
        let o = self.offset(layer, 0);
        let len = n * self.row;
        match &self.store {
            Store::F32(v) => &v[o..o + len],
            Store::F16(v) => {
                scratch.clear();
                scratch.extend(v[o..o + len].iter().map(|x| x.to_f32()));
                scratch
            }
        }
    }
}
