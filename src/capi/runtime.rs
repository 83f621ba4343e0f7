//! Process-wide settings: the worker-thread pool every session's computation shares.

use super::error::{guard, guard_value, Failure};
use super::moela_status;
use crate::kernels;

/// The most worker threads `moela_set_n_threads` accepts (the CLI's `-t` and Python's
/// `moela.set_n_threads` have the same limit).
pub const MOELA_MAX_THREADS: u32 = 512;

/// Sets the number of worker threads of the process-wide pool that every session's
/// computation shares. Call it once, before the first evaluation (or `moela_get_n_threads`),
/// which create the pool with one thread per available core; afterwards the size is fixed
/// and this returns `MOELA_STATUS_INVALID_ARG`.
///
/// `n_threads` must be 1 ..= `MOELA_MAX_THREADS` (512); any other value returns
/// `MOELA_STATUS_INVALID_ARG` ("moela_set_n_threads: n_threads is 0: must be 1 ..= 512")
/// before any thread is started.
///
/// Thread-safe.
#[no_mangle]
pub extern "C" fn moela_set_n_threads(n_threads: u32) -> moela_status {
    const F: &str = "moela_set_n_threads";
    guard(F, || {
        let n = crate::threads::check_threads(n_threads.into())
            .map_err(|why| Failure::invalid(format!("{F}: n_threads {why}")))?;
        kernels::set_threads(n).map_err(|e| {
            Failure::invalid(format!(
                "{F}: the thread pool already exists with {} threads ({e})",
                kernels::threads()
            ))
        })
    })
}

/// The number of worker threads of the process-wide pool (creating it with the default size
/// if it does not exist yet). Thread-safe.
#[no_mangle]
pub extern "C" fn moela_get_n_threads() -> u32 {
    guard_value("moela_get_n_threads", 0, || {
        u32::try_from(kernels::threads()).unwrap_or(u32::MAX)
    })
}
