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
    /// A zeroed cache; an allocation failure is an error, not an abort.
    pub fn new(kind: KvType, n_layers: usize, n_ctx: usize, row: usize) -> crate::Result<KvCache> {
        let oom = |bytes| crate::Error::OutOfMemory {
            what: format!("the KV cache ({n_layers} layers x {n_ctx} positions x {row})"),
            bytes,
        };
        let n = n_layers
            .checked_mul(n_ctx)
            .and_then(|v| v.checked_mul(row))
            .ok_or_else(|| oom(usize::MAX))?;
        let store = match kind {
            KvType::F32 => Store::F32(try_zeroed(n).ok_or_else(|| oom(n.saturating_mul(4)))?),
            KvType::F16 => Store::F16(try_zeroed(n).ok_or_else(|| oom(n.saturating_mul(2)))?),
        };
        Ok(KvCache {
            store,
            row,
            n_ctx,
            n_layers,
        })
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

    /// Positions `0..n` of `layer` as stored (no widening), for the decode kernels.
    pub fn raw_rows(&self, layer: usize, n: usize) -> crate::kernels::CacheRows<'_> {
        use half::slice::HalfFloatSliceExt;
        let o = self.offset(layer, 0);
        let len = n * self.row;
        match &self.store {
            Store::F32(v) => crate::kernels::CacheRows::F32(&v[o..o + len]),
            Store::F16(v) => crate::kernels::CacheRows::F16(v[o..o + len].reinterpret_cast()),
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

/// Element types whose all-zero bit pattern is the value zero.
trait ZeroBits: Copy {}
impl ZeroBits for f32 {}
impl ZeroBits for f16 {}

/// `vec![0; n]` that reports allocation failure instead of aborting, and stays lazily zeroed
/// (the OS hands out zero pages on first touch, so a long context costs nothing until used).
fn try_zeroed<T: ZeroBits>(n: usize) -> Option<Vec<T>> {
    if n == 0 {
        return Some(Vec::new());
    }
    let layout = std::alloc::Layout::array::<T>(n).ok()?;
    // SAFETY: the layout has a non-zero size (n > 0 and T is f32 or f16).
    let p = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<T>();
    if p.is_null() {
        return None;
    }
    // SAFETY: p comes from the global allocator with Layout::array::<T>(n), so it is valid
    // for n elements with capacity n; all of them are zero bits, a valid T (ZeroBits).
    Some(unsafe { Vec::from_raw_parts(p, n, n) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impossible_cache_is_an_error_not_an_abort() {
        let e = KvCache::new(KvType::F32, 1 << 12, 1 << 24, 1 << 12).unwrap_err();
        assert!(matches!(e, crate::Error::OutOfMemory { .. }), "{e}");
        let ok = KvCache::new(KvType::F16, 2, 8, 4).unwrap();
        let mut scratch = Vec::new();
        assert!(ok.rows(1, 8, &mut scratch).iter().all(|&v| v == 0.0));
    }
}
