//! `.npy` files of f32 matrices (what `moela logits` writes and the golden tests read), via
//! ndarray-npy.

use std::path::Path;

use ndarray::Array2;
use ndarray_npy::{read_npy, write_npy};

use crate::error::{Error, Result};

/// Writes `data` (`rows × cols`, row-major) as a float32 `.npy` file.
pub fn write_f32(path: &Path, data: &[f32], rows: usize, cols: usize) -> Result<()> {
    let arr = Array2::from_shape_vec((rows, cols), data.to_vec())
        .map_err(|e| Error::InvalidArg(format!("npy shape: {e}")))?;
    write_npy(path, &arr).map_err(|e| Error::io(path, std::io::Error::other(e.to_string())))
}

/// Reads a 2-D float32 `.npy` file as (data, rows, cols).
pub fn read_f32(path: &Path) -> Result<(Vec<f32>, usize, usize)> {
    let arr: Array2<f32> =
        read_npy(path).map_err(|e| Error::format(path, format!("not a 2-D float32 .npy: {e}")))?;
    let (r, c) = arr.dim();
    let data = arr.as_standard_layout().iter().copied().collect();
    Ok((data, r, c))
}
