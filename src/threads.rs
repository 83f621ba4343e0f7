//! The worker-thread count: one rule for the CLI (`-t`), the C API (`moela_set_n_threads`)
//! and the Python package (`moela.set_n_threads`): 1 ..= [`MAX_THREADS`], checked before any
//! thread is started.

use crate::error::{Error, Result};

/// The most worker threads moela starts (`MOELA_MAX_THREADS` in moela.h). A fixed cap well
/// above the core count of any machine moela targets: a count beyond it is a mistake (or a
/// hostile value), and starting that many threads would take the process down.
pub const MAX_THREADS: usize = crate::capi::runtime::MOELA_MAX_THREADS as usize;

/// `n` as a thread count, or why it is not one: "is N: must be 1 ..= 512".
pub fn check_threads(n: u64) -> std::result::Result<usize, String> {
    match usize::try_from(n) {
        Ok(n) if (1..=MAX_THREADS).contains(&n) => Ok(n),
        _ => Err(format!("is {n}: must be 1 ..= {MAX_THREADS}")),
    }
}

/// Sets the size of the process-wide worker pool (once, before the first parallel product),
/// after checking it with [`check_threads`]; nothing is started for a refused count.
pub fn set_threads(n: usize) -> Result<()> {
    let n = check_threads(n as u64)
        .map_err(|why| Error::InvalidArg(format!("the thread count {why}")))?;
    crate::kernels::set_threads(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_counts_are_bounded() {
        assert_eq!(check_threads(1), Ok(1));
        assert_eq!(check_threads(MAX_THREADS as u64), Ok(MAX_THREADS));
        for bad in [
            0,
            MAX_THREADS as u64 + 1,
            1_000_000,
            u32::MAX as u64,
            u64::MAX,
        ] {
            let e = check_threads(bad).unwrap_err();
            assert_eq!(e, format!("is {bad}: must be 1 ..= 512"));
        }
        // Refused before the pool is touched.
        let e = set_threads(100_000).unwrap_err().to_string();
        assert!(e.contains("must be 1 ..= 512"), "{e}");
    }
}
