//! Activations quantized for the integer kernels: the q8a layout (8-bit values per block of
//! 32 with the block's scale and sum) and the grouped/tiled q8g arrays the VBMI kernels read
//! (csrc/include/moela_kernels.h).

use super::aligned::AlignedVec;
use super::{active, bindings, QK};

/// A row (or rows) of activations quantized to 8 bits per block of 32 (64-byte aligned
/// arrays: the kernels read them with 64-byte loads).
#[derive(Default, Debug, Clone)]
pub struct Q8Acts {
    pub qs: AlignedVec<i8>,
    pub d: AlignedVec<f32>,
    pub s: AlignedVec<i32>,
    /// Elements per row.
    pub n: usize,
    /// The q8g arrays (see csrc/include/moela_kernels.h), filled by [`Q8Acts::group`]:
    /// `n` values and `n/8` scales and offsets per row.
    pub gqs: AlignedVec<i8>,
    pub gd: AlignedVec<f32>,
    pub gs: AlignedVec<i32>,
    /// The q8g tile arrays (16 blocks per tile): `n` values and `n/32` scales and offsets per
    /// row.
    pub tqs: AlignedVec<i8>,
    pub td: AlignedVec<f32>,
    pub ts: AlignedVec<i32>,
    /// Whether the q8g arrays match the current rows.
    pub grouped: bool,
}

impl Q8Acts {
    /// Quantizes `rows` rows of `n` values (`x.len() == rows * n`, `n` a multiple of 32).
    pub fn quantize(&mut self, x: &[f32], n: usize) {
        debug_assert!(n % QK == 0 && x.len() % n == 0);
        let nb = x.len() / QK;
        self.n = n;
        self.qs.resize(x.len(), 0);
        self.d.resize(nb, 0.0);
        self.s.resize(nb, 0);
        // SAFETY: the three buffers were just sized for x.len() values and x.len()/32 blocks,
        // which is exactly what the kernel writes; x holds x.len() floats.
        unsafe {
            (active().quantize)(
                x.len(),
                x.as_ptr(),
                self.qs.as_mut_ptr(),
                self.d.as_mut_ptr(),
                self.s.as_mut_ptr(),
            )
        }
        self.grouped = false;
        if active().wants_groups() {
            self.group();
        }
    }

    /// Fills the q8g arrays from the plain ones (done by `quantize` when the active kernel
    /// set reads them).
    pub fn group(&mut self) {
        let n = self.n;
        let rows = self.qs.len().checked_div(n).unwrap_or(0);
        self.gqs.resize(rows * n, 0);
        self.gd.resize(rows * n / 8, 0.0);
        self.gs.resize(rows * n / 8, 0);
        // Tiles feed only the four-row kernel: a single input (decode) skips them.
        let tiled = rows >= 4;
        let tile_rows = if tiled { rows } else { 0 };
        self.tqs.resize(tile_rows * n, 0);
        self.td.resize(tile_rows * n / QK, 0.0);
        self.ts.resize(tile_rows * n / QK, 0);
        for r in 0..rows {
            let (b0, b1) = (r * n / QK, (r + 1) * n / QK);
            let (g0, g1) = (r * n / 8, (r + 1) * n / 8);
            // SAFETY: row r's plain arrays hold n values and n/32 blocks and its grouped
            // arrays n values and n/8 lanes (sized just above), which is what it touches.
            unsafe {
                bindings::mk_group_q8a_generic(
                    n,
                    self.qs[r * n..(r + 1) * n].as_ptr(),
                    self.d[b0..b1].as_ptr(),
                    self.s[b0..b1].as_ptr(),
                    self.gqs[r * n..(r + 1) * n].as_mut_ptr(),
                    self.gd[g0..g1].as_mut_ptr(),
                    self.gs[g0..g1].as_mut_ptr(),
                )
            }
            if !tiled {
                continue;
            }
            // SAFETY: as above, for row r's tile arrays (n values, n/32 blocks).
            unsafe {
                bindings::mk_tile_q8a_generic(
                    n,
                    self.qs[r * n..(r + 1) * n].as_ptr(),
                    self.d[b0..b1].as_ptr(),
                    self.s[b0..b1].as_ptr(),
                    self.tqs[r * n..(r + 1) * n].as_mut_ptr(),
                    self.td[b0..b1].as_mut_ptr(),
                    self.ts[b0..b1].as_mut_ptr(),
                )
            }
        }
        self.grouped = true;
    }

    /// The q8g pointers of activation row `t` (only valid while `self` is borrowed).
    pub(super) fn q8g_row(&self, t: usize) -> bindings::mk_q8g {
        let (n, b0, g0) = (self.n, t * self.n / QK, t * self.n / 8);
        bindings::mk_q8g {
            qs: self.qs[t * n..].as_ptr(),
            d: self.d[b0..].as_ptr(),
            s: self.s[b0..].as_ptr(),
            gqs: self.gqs[t * n..].as_ptr(),
            gd: self.gd[g0..].as_ptr(),
            gs: self.gs[g0..].as_ptr(),
            // Empty (never read) when fewer than four rows were quantized: only the
            // four-row kernel reads tiles.
            tqs: self.tqs.as_ptr().wrapping_add(t * n),
            td: self.td.as_ptr().wrapping_add(b0),
            ts: self.ts.as_ptr().wrapping_add(b0),
        }
    }

    /// Activation rows held.
    pub fn rows(&self) -> usize {
        self.qs.len().checked_div(self.n).unwrap_or(0)
    }
}
