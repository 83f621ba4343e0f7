//! Wall-clock time per stage of the forward pass, for profiling (`MOELA_STAGE_TIMES=1`):
//! accumulated in process-wide counters and printed by `moela bench`. Off by default, when
//! a stage costs one relaxed load.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// The stages timed.
#[derive(Clone, Copy, Debug)]
pub enum Stage {
    Embed,
    Norms,
    Attention,
    Router,
    ExpertsGateUp,
    ExpertsDown,
    ExpertsRest,
    LmHead,
    Quantize,
}

const NAMES: [&str; 9] = [
    "embed",
    "norms+residual",
    "attention (MLA)",
    "router+top-k",
    "experts gate/up",
    "experts down",
    "experts silu/sum",
    "lm_head",
    "q8a quantize (inside all the above)",
];

static NANOS: [AtomicU64; 9] = [const { AtomicU64::new(0) }; 9];
static CALLS: [AtomicU64; 9] = [const { AtomicU64::new(0) }; 9];

/// Whether `MOELA_STAGE_TIMES` is set (read once).
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("MOELA_STAGE_TIMES").is_some_and(|v| v != "0"))
}

/// A running timer for `stage` (None when timing is off).
#[inline]
pub fn start() -> Option<Instant> {
    enabled().then(Instant::now)
}

/// Adds the time since `t` (from [`start`]) to `stage`.
#[inline]
pub fn stop(stage: Stage, t: Option<Instant>) {
    if let Some(t) = t {
        let i = stage as usize;
        NANOS[i].fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        CALLS[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// Clears the counters.
pub fn reset() {
    for i in 0..NAMES.len() {
        NANOS[i].store(0, Ordering::Relaxed);
        CALLS[i].store(0, Ordering::Relaxed);
    }
}

/// The table of stages: per-token milliseconds over `tokens` tokens, and calls per token.
pub fn report(tokens: usize) -> String {
    let tokens = tokens.max(1) as f64;
    let mut s = String::from("stage                              ms/token  calls/token\n");
    for (i, name) in NAMES.iter().enumerate() {
        let ns = NANOS[i].load(Ordering::Relaxed) as f64;
        let calls = CALLS[i].load(Ordering::Relaxed) as f64;
        s += &format!(
            "{name:<34} {:>8.3}  {:>11.1}\n",
            ns / 1e6 / tokens,
            calls / tokens
        );
    }
    s
}
