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

#[derive(Debug)]
enum Store {
    F32(Zeroed<f32>),
    F16(Zeroed<f16>),
}

#[derive(Debug)]
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
            KvType::F32 => Store::F32(Zeroed::new(n).ok_or_else(|| oom(n.saturating_mul(4)))?),
            KvType::F16 => Store::F16(Zeroed::new(n).ok_or_else(|| oom(n.saturating_mul(2)))?),
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

    /// The element type.
    pub fn kind(&self) -> KvType {
        match self.store {
            Store::F32(_) => KvType::F32,
            Store::F16(_) => KvType::F16,
        }
    }

    /// Bytes of one stored value.
    pub fn element_bytes(&self) -> usize {
        match self.kind() {
            KvType::F32 => 4,
            KvType::F16 => 2,
        }
    }

    /// Copies positions `0..n` of `layer`, as stored, into `out` (little-endian, exactly
    /// `n * row * element_bytes()` bytes): a saved session state.
    pub fn save_rows(&self, layer: usize, n: usize, out: &mut [u8]) {
        let o = self.offset(layer, 0);
        let len = n * self.row;
        match &self.store {
            Store::F32(v) => out
                .chunks_exact_mut(4)
                .zip(&v[o..o + len])
                .for_each(|(d, x)| d.copy_from_slice(&x.to_le_bytes())),
            Store::F16(v) => out
                .chunks_exact_mut(2)
                .zip(&v[o..o + len])
                .for_each(|(d, x)| d.copy_from_slice(&x.to_le_bytes())),
        }
    }

    /// Sets positions `0..n` of `layer` from bytes written by [`save_rows`](Self::save_rows).
    pub fn load_rows(&mut self, layer: usize, n: usize, src: &[u8]) {
        let o = self.offset(layer, 0);
        let len = n * self.row;
        match &mut self.store {
            Store::F32(v) => v[o..o + len]
                .iter_mut()
                .zip(src.chunks_exact(4))
                .for_each(|(d, s)| *d = f32::from_le_bytes([s[0], s[1], s[2], s[3]])),
            Store::F16(v) => v[o..o + len]
                .iter_mut()
                .zip(src.chunks_exact(2))
                .for_each(|(d, s)| *d = f16::from_le_bytes([s[0], s[1]])),
        }
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

/// Alignment of the cache: rows of 576 values start on cache lines (576·2 and 576·4 bytes are
/// multiples of 64), so the attention kernels' 64-byte loads never split a line.
const CACHE_ALIGN: usize = 64;

/// A zero-initialised, 64-byte aligned buffer of `T` (`Vec` cannot promise the alignment).
struct Zeroed<T: ZeroBits> {
    ptr: std::ptr::NonNull<T>,
    len: usize,
}

// SAFETY: Zeroed owns its allocation exclusively (like a Vec<T>), and T is f32 or f16.
unsafe impl<T: ZeroBits + Send> Send for Zeroed<T> {}
// SAFETY: shared access only reads through `&[T]`.
unsafe impl<T: ZeroBits + Sync> Sync for Zeroed<T> {}

impl<T: ZeroBits> Zeroed<T> {
    fn layout(n: usize) -> Option<std::alloc::Layout> {
        std::alloc::Layout::array::<T>(n)
            .ok()?
            .align_to(CACHE_ALIGN)
            .ok()
    }

    /// `n` zeros, or None when the allocation fails. Stays lazily zeroed (the OS hands out
    /// zero pages on first touch, so a long context costs nothing until used).
    fn new(n: usize) -> Option<Self> {
        if n == 0 {
            return Some(Zeroed {
                ptr: std::ptr::NonNull::dangling(),
                len: 0,
            });
        }
        let layout = Self::layout(n)?;
        // SAFETY: the layout has a non-zero size (n > 0 and T is f32 or f16).
        let p = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<T>();
        Some(Zeroed {
            ptr: std::ptr::NonNull::new(p)?,
            len: n,
        })
    }
}

impl<T: ZeroBits> std::ops::Deref for Zeroed<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: ptr is valid for len initialised elements (zero bits are a valid T) for as
        // long as self lives (dangling but aligned when len == 0).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: ZeroBits> std::ops::DerefMut for Zeroed<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in deref, and &mut self gives exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: ZeroBits> Drop for Zeroed<T> {
    fn drop(&mut self) {
        if self.len == 0 {
            return;
        }
        if let Some(layout) = Self::layout(self.len) {
            // SAFETY: ptr was allocated in `new` with exactly this layout.
            unsafe { std::alloc::dealloc(self.ptr.as_ptr().cast(), layout) }
        }
    }
}

impl<T: ZeroBits> std::fmt::Debug for Zeroed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Zeroed({} values)", self.len)
    }
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

    /// Every layer's rows start on a cache line (the kernels' loads then never split one).
    #[test]
    fn rows_are_line_aligned() {
        for kind in [KvType::F32, KvType::F16] {
            let mut c = KvCache::new(kind, 3, 10, 576).unwrap();
            c.write(2, 9, &[1.5; 576]);
            for layer in 0..3 {
                let p = match c.raw_rows(layer, 10) {
                    crate::kernels::CacheRows::F32(r) => r.as_ptr() as usize,
                    crate::kernels::CacheRows::F16(r) => r.as_ptr() as usize,
                };
                assert_eq!(p % CACHE_ALIGN, 0, "{kind:?} layer {layer}");
            }
            let mut scratch = Vec::new();
            assert_eq!(c.rows(2, 10, &mut scratch)[9 * 576], 1.5);
        }
    }
}
