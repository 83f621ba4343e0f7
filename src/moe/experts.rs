//! The `ExpertStore`: where routed-expert weights live when a model runs under an expert
//! budget (see docs/OFFLOADING.md).
//!
//! Without a budget (the default) there is no store: experts are read straight from the
//! file mapping like every other weight. With one, routed experts are never touched through
//! the mapping. They are `pread` into an arena of equal slots, each sized for one expert's
//! three matrices (gate, up, down); the number of slots is the budget divided by the slot size
//! (at least one, so a budget below one expert streams every expert through a single slot).
//! The slots are plain heap buffers allocated on first use and reused, so the resident set
//! of the experts never exceeds the slots, whatever the page cache holds.
//!
//! Reads happen in two places: I/O threads read ahead what was asked for (all of the current
//! layer's misses as soon as the router has chosen, then the next layers' predicted experts);
//! a computation with nothing resident to run reads an expert that is neither resident nor in
//! flight itself. A computation takes the experts of a layer in groups (`begin_layer`: the
//! resident ones; `acquire_ready`: the misses as they arrive) and runs each group as one
//! parallel pass. Replacement is LRU-2 with
//! a pinned hot set (`cache.rs`). A bytes-per-second throttle shared by both paths simulates
//! slower storage (`--io-limit`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::model::weights::{Ffn, Mlp, Weights};
use crate::moe::cache::{Key, Policy};
use crate::moe::profile::ExpertProfile;
use crate::tensor::view::Backing;
use crate::tensor::{DType, TensorView};

/// How much memory routed experts may occupy.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum ExpertBudget {
    /// Every expert stays in the file mapping (no store).
    #[default]
    Unlimited,
    /// At most this many bytes of expert slots.
    Bytes(u64),
    /// This fraction (0..=1) of the model's routed-expert bytes.
    Fraction(f64),
    /// Sized from the memory available at load ([`ExpertBudget::auto_bytes`]): no store when
    /// the whole model fits, else what is left beside the resident weights.
    Auto,
}

impl ExpertBudget {
    /// Parses `2GiB`, `500MB`, `123456` (bytes), `25%`, `auto` or `unlimited`.
    pub fn parse(s: &str) -> Result<ExpertBudget> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("unlimited") || t.eq_ignore_ascii_case("none") {
            return Ok(ExpertBudget::Unlimited);
        }
        if t.eq_ignore_ascii_case("auto") {
            return Ok(ExpertBudget::Auto);
        }
        if let Some(p) = t.strip_suffix('%') {
            let v: f64 = p.trim().parse().map_err(|_| bad_size(s))?;
            if !(0.0..=100.0).contains(&v) {
                return Err(Error::InvalidArg(format!(
                    "expert budget {s}: a percentage must be between 0 and 100"
                )));
            }
            return Ok(ExpertBudget::Fraction(v / 100.0));
        }
        Ok(ExpertBudget::Bytes(
            parse_bytes(t).ok_or_else(|| bad_size(s))?,
        ))
    }

    /// The budget in bytes for a model with `routed` bytes of routed experts and `resident`
    /// bytes of other weights (None: no store).
    pub fn bytes(&self, routed: u64, resident: u64) -> Option<u64> {
        match *self {
            ExpertBudget::Unlimited => None,
            ExpertBudget::Bytes(b) => Some(b),
            ExpertBudget::Fraction(f) => Some((routed as f64 * f).floor() as u64),
            ExpertBudget::Auto => {
                let avail = crate::model::mem_available()?;
                ExpertBudget::auto_bytes(routed, resident, avail as u64)
            }
        }
    }

    /// `auto` for a machine with `available` bytes of memory free for new allocations
    /// (MemAvailable, which counts the reclaimable page cache): a model whose weights fit in
    /// 3/4 of it runs from the mapping without a store (None; the page cache keeps it warm);
    /// otherwise the experts get what is left of those 3/4 beside the resident weights, less
    /// 512 MiB for the KV cache and scratch (at least one slot: the store never
    /// takes less). The other quarter stays for the rest of the system.
    pub fn auto_bytes(routed: u64, resident: u64, available: u64) -> Option<u64> {
        let usable = available / 4 * 3;
        if routed.saturating_add(resident) <= usable {
            return None;
        }
        Some(
            usable
                .saturating_sub(resident)
                .saturating_sub(AUTO_HEADROOM),
        )
    }
}

/// What `--expert-budget auto` leaves beside the weights for the KV cache, activations and
/// the I/O threads' buffers.
const AUTO_HEADROOM: u64 = 512 << 20;

fn bad_size(s: &str) -> Error {
    Error::InvalidArg(format!(
        "{s:?}: expected a size such as 2GiB, 500MB, 1048576, 25% or auto"
    ))
}

/// `123`, `1.5GB`, `2GiB`, `500MiB`, `64kB` (decimal units are powers of 1000, `i` units of
/// 1024) as bytes.
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 = num.parse().ok()?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let b = v * mult;
    (b.is_finite() && b >= 0.0 && b < u64::MAX as f64).then_some(b as u64)
}

/// `200MB/s` (or `200MB`) as bytes per second; must be positive.
pub fn parse_rate(s: &str) -> Result<f64> {
    let t = s.trim();
    let t = t.strip_suffix("/s").unwrap_or(t);
    match parse_bytes(t) {
        Some(b) if b > 0 => Ok(b as f64),
        _ => Err(Error::InvalidArg(format!(
            "{s:?}: expected a rate such as 200MB/s"
        ))),
    }
}

/// Options of the expert store (part of [`crate::model::ModelParams`]).
#[derive(Clone, Debug)]
pub struct ExpertParams {
    pub budget: ExpertBudget,
    /// Pins the hottest experts of this profile that fit in the budget.
    pub profile: Option<ExpertProfile>,
    /// Read the next layer's predicted experts ahead (default true).
    pub prefetch: bool,
    /// Simulated storage speed in bytes/s for expert reads (benchmarks); None = as fast as
    /// the file can be read.
    pub io_limit: Option<f64>,
    /// Run a chosen expert that is not in a slot straight from the file mapping when the page
    /// cache holds it (no copy). Its mapped pages then count against the budget like a slot
    /// and are released (dropped from the resident set, not from the page cache) when the
    /// budget needs the room. Default true; off, every miss is read into a slot. Never with
    /// `io_limit` (which simulates storage).
    pub page_cache: bool,
}

impl Default for ExpertParams {
    fn default() -> Self {
        ExpertParams {
            budget: ExpertBudget::Unlimited,
            profile: None,
            prefetch: true,
            io_limit: None,
            page_cache: true,
        }
    }
}

/// Counters of the store since load (or the last [`ExpertStore::reset_stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct ExpertStats {
    pub enabled: bool,
    /// Budget in bytes (0 when unlimited).
    pub budget_bytes: u64,
    pub routed_expert_bytes: u64,
    pub slot_bytes: u64,
    pub n_slots: u64,
    /// Expert bytes resident now, and at most so far.
    pub resident_bytes: u64,
    pub peak_resident_bytes: u64,
    pub pinned_experts: u64,
    /// Expert uses whose expert was resident when the router chose it; uses whose expert had
    /// to be read (by an I/O thread while other experts ran, or waited for). `acquire` (one
    /// expert, outside the MoE step) counts a hit when it does not wait.
    pub hits: u64,
    pub misses: u64,
    /// Experts read ahead of their use (the current layer's, or predicted for the next
    /// one), and how many of those were used before being evicted.
    pub prefetches: u64,
    pub prefetch_hits: u64,
    /// Next-layer prediction: experts predicted, experts used in the predicted layers, and
    /// the overlap (precision = overlap / predicted, recall = overlap / used).
    pub predicted: u64,
    pub predicted_layer_uses: u64,
    pub predicted_used: u64,
    pub bytes_read: u64,
    /// Time computations waited for expert reads.
    pub io_wait_ns: u64,
    /// Expert uses served from the page cache through the file mapping (neither a hit nor a
    /// miss: see [`ExpertParams::page_cache`]), and predicted experts not read ahead because
    /// the page cache held them.
    pub page_cache_uses: u64,
    pub page_cache_skipped_reads: u64,
}

impl ExpertStats {
    /// Adds the counters of `now` minus those of `before` (one phase of a run).
    pub fn add_since(&mut self, now: &ExpertStats, before: &ExpertStats) {
        let d = |a: u64, b: u64| a.saturating_sub(b);
        self.hits += d(now.hits, before.hits);
        self.misses += d(now.misses, before.misses);
        self.prefetches += d(now.prefetches, before.prefetches);
        self.prefetch_hits += d(now.prefetch_hits, before.prefetch_hits);
        self.predicted += d(now.predicted, before.predicted);
        self.predicted_layer_uses += d(now.predicted_layer_uses, before.predicted_layer_uses);
        self.predicted_used += d(now.predicted_used, before.predicted_used);
        self.bytes_read += d(now.bytes_read, before.bytes_read);
        self.io_wait_ns += d(now.io_wait_ns, before.io_wait_ns);
        self.page_cache_uses += d(now.page_cache_uses, before.page_cache_uses);
        self.page_cache_skipped_reads += d(
            now.page_cache_skipped_reads,
            before.page_cache_skipped_reads,
        );
    }

    pub fn hit_rate(&self) -> f64 {
        ratio(self.hits, self.hits + self.misses)
    }
    /// Share of expert uses served from the page cache through the mapping.
    pub fn page_cache_rate(&self) -> f64 {
        ratio(
            self.page_cache_uses,
            self.hits + self.misses + self.page_cache_uses,
        )
    }
    pub fn prediction_precision(&self) -> f64 {
        ratio(self.predicted_used, self.predicted)
    }
    pub fn prediction_recall(&self) -> f64 {
        ratio(self.predicted_used, self.predicted_layer_uses)
    }
    /// Share of read-ahead experts that were used.
    pub fn prefetch_precision(&self) -> f64 {
        ratio(self.prefetch_hits, self.prefetches)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// One matrix of an expert: where it is in the file and in the slot.
#[derive(Clone, Debug)]
struct Part {
    file: usize,
    file_offset: u64,
    len: usize,
    slot_offset: usize,
    dtype: DType,
    rows: usize,
    cols: usize,
}

/// A memory-mapped file the experts come from: its mapping's address range and an open
/// handle for `pread`.
pub struct SourceFile {
    pub path: PathBuf,
    pub file: File,
    pub map_base: usize,
    pub map_len: usize,
}

/// Serialises reads at a fixed bandwidth (a device that reads `rate` bytes/s).
struct Throttle {
    rate: f64,
    next_free: Mutex<Instant>,
}

impl Throttle {
    /// Reserves the device for `n` bytes; returns when the transfer would have ended.
    fn reserve(&self, n: usize) -> Instant {
        let mut next = self.next_free.lock().unwrap_or_else(|e| e.into_inner());
        let start = (*next).max(Instant::now());
        *next = start + Duration::from_secs_f64(n as f64 / self.rate);
        *next
    }
}

struct State {
    policy: Policy,
    /// Per slot: its buffer (None before first use, and while a read fills it).
    bufs: Vec<Option<Arc<Vec<u8>>>>,
    ahead: VecDeque<Key>,
    predicted: VecDeque<Key>,
    pinned: HashSet<Key>,
    stats: ExpertStats,
    shutdown: bool,
    /// Predicted experts being read now (at most one: see `io_thread`).
    speculating: usize,
    /// Experts a computation has chosen and not taken yet (its misses): reads ahead do not
    /// evict them once they are resident. A hint only (one entry per key, whatever the
    /// number of computations waiting for it).
    wanted: HashSet<Key>,
    /// Slot buffers allocated so far (each `slot_bytes`), and bytes of the experts resident
    /// through the mapping (`mapped`): together they stay within the budget.
    allocated_slots: usize,
    mapped_in_use: usize,
    /// Experts whose mapped pages are in the resident set: computations using each now, and
    /// when it was last taken. Released (their pages dropped) least recently used first when
    /// the budget needs the room; never while in use.
    mapped: HashMap<Key, MappedUse>,
    clock: u64,
}

/// One expert resident through the mapping (see `State::mapped`).
struct MappedUse {
    users: u32,
    last: u64,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when an entry becomes ready, a slot is released, or work is queued.
    changed: Condvar,
    files: Vec<SourceFile>,
    /// [layer][expert] → the three parts (gate, up, down); empty for dense layers.
    layout: Vec<Vec<[Part; 3]>>,
    /// [layer][expert] → its matrices in the file mapping, when misses may run from the page
    /// cache ([`ExpertParams::page_cache`]); empty otherwise.
    mapped: Vec<Vec<Mlp>>,
    slot_bytes: usize,
    /// The budget in bytes.
    budget: usize,
    throttle: Option<Throttle>,
}

/// Owns the residency of routed experts under a byte budget. Shared by every session of a
/// model (`Send + Sync`).
pub struct ExpertStore {
    shared: Arc<Shared>,
    /// The I/O threads (none when one layer's experts do not fit in the slots).
    io: Vec<JoinHandle<()>>,
    prefetch: bool,
    /// How many keys one read-ahead request may queue (leaves room for the working set).
    ahead_cap: usize,
    n_slots: usize,
    /// Slots one layer's experts need (`experts_per_tok`).
    room: usize,
}

impl std::fmt::Debug for ExpertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ExpertStore({:?})", self.stats())
    }
}

/// Bytes of all routed experts of `w`.
pub fn routed_expert_bytes(w: &Weights) -> u64 {
    w.layers
        .iter()
        .filter_map(|l| match &l.ffn {
            Ffn::Moe(m) => Some(m.experts.iter().map(mlp_bytes).sum::<usize>() as u64),
            Ffn::Dense(_) => None,
        })
        .sum()
}

fn mlp_bytes(m: &Mlp) -> usize {
    m.gate.n_bytes() + m.up.n_bytes() + m.down.n_bytes()
}

/// Threads reading experts ahead of use: a layer's misses are read in parallel (several
/// requests in flight for storage that serves them; from the page cache, copies on several
/// cores).
const IO_THREADS: usize = 3;

/// Offsets inside a slot are aligned to this (a cache line).
const SLOT_ALIGN: usize = 64;

impl ExpertStore {
    /// A store for the routed experts of `w`, whose views point into `files`' mappings.
    /// Returns None when the budget is unlimited.
    pub fn new(
        w: &Weights,
        files: Vec<SourceFile>,
        experts_per_tok: usize,
        p: &ExpertParams,
    ) -> Result<Option<ExpertStore>> {
        let routed = routed_expert_bytes(w);
        let mapped: u64 = files.iter().map(|f| f.map_len as u64).sum();
        let Some(budget) = p.budget.bytes(routed, mapped.saturating_sub(routed)) else {
            return Ok(None);
        };
        let mut layout = Vec::with_capacity(w.layers.len());
        let mut slot_bytes = 0usize;
        for layer in &w.layers {
            let Ffn::Moe(moe) = &layer.ffn else {
                layout.push(Vec::new());
                continue;
            };
            let mut experts = Vec::with_capacity(moe.experts.len());
            for m in &moe.experts {
                let mut off = 0usize;
                let mut part = |t: &TensorView| -> Result<Part> {
                    let (base, range) = t.map_location().ok_or_else(|| {
                        Error::InvalidArg("expert offloading needs memory-mapped weights".into())
                    })?;
                    let file = files
                        .iter()
                        .position(|f| base == f.map_base && range.end <= f.map_len)
                        .ok_or_else(|| {
                            Error::InvalidArg("an expert tensor lies in no mapped file".into())
                        })?;
                    let p = Part {
                        file,
                        file_offset: range.start as u64,
                        len: range.len(),
                        slot_offset: off,
                        dtype: t.dtype,
                        rows: t.rows,
                        cols: t.cols,
                    };
                    off += range.len().div_ceil(SLOT_ALIGN) * SLOT_ALIGN;
                    Ok(p)
                };
                let parts = [part(&m.gate)?, part(&m.up)?, part(&m.down)?];
                slot_bytes = slot_bytes.max(off);
                experts.push(parts);
            }
            layout.push(experts);
        }
        if slot_bytes == 0 {
            // No routed experts at all: nothing to manage.
            return Ok(None);
        }
        let mapped = if p.page_cache && p.io_limit.is_none() && cfg!(target_os = "linux") {
            w.layers
                .iter()
                .map(|layer| match &layer.ffn {
                    Ffn::Moe(moe) => moe.experts.clone(),
                    Ffn::Dense(_) => Vec::new(),
                })
                .collect()
        } else {
            Vec::new()
        };
        let n_slots = ((budget / slot_bytes as u64) as usize).max(1);
        let total_experts: usize = layout.iter().map(|l| l.len()).sum();
        let n_slots = n_slots.min(total_experts.max(1));
        // Pinned experts may fill the slots but for one layer's worth of working room.
        let room = experts_per_tok.max(1);
        let max_pinned = n_slots.saturating_sub(room);
        let mut pinned = HashSet::new();
        if let Some(prof) = &p.profile {
            prof.check_shape(
                w.layers.len(),
                layout.iter().map(|l| l.len()).max().unwrap_or(0),
            )?;
            for (l, e, c) in prof.ranked() {
                if pinned.len() >= max_pinned || c == 0 {
                    break;
                }
                if layout.get(l).is_some_and(|x| e < x.len()) {
                    pinned.insert((l as u32, e as u32));
                }
            }
        }
        let stats = ExpertStats {
            enabled: true,
            budget_bytes: budget,
            routed_expert_bytes: routed,
            slot_bytes: slot_bytes as u64,
            n_slots: n_slots as u64,
            pinned_experts: pinned.len() as u64,
            ..Default::default()
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                policy: Policy::new(n_slots),
                bufs: vec![None; n_slots],
                ahead: VecDeque::new(),
                predicted: VecDeque::new(),
                pinned,
                stats,
                shutdown: false,
                speculating: 0,
                wanted: HashSet::new(),
                allocated_slots: 0,
                mapped_in_use: 0,
                mapped: HashMap::new(),
                clock: 0,
            }),
            changed: Condvar::new(),
            files,
            layout,
            mapped,
            slot_bytes,
            budget: budget as usize,
            throttle: p.io_limit.map(|rate| Throttle {
                rate,
                next_free: Mutex::new(Instant::now()),
            }),
        });
        let mut io = Vec::new();
        if n_slots > room {
            for i in 0..IO_THREADS {
                let s = shared.clone();
                io.push(
                    std::thread::Builder::new()
                        .name(format!("moela-expert-io{i}"))
                        .spawn(move || io_thread(&s))
                        .map_err(|e| {
                            Error::InvalidArg(format!("cannot start an I/O thread: {e}"))
                        })?,
                );
            }
        }
        // Otherwise one layer's experts do not even fit: reading ahead would only evict what
        // is about to be used. Every read is on demand.
        Ok(Some(ExpertStore {
            shared,
            prefetch: p.prefetch && !io.is_empty(),
            io,
            ahead_cap: n_slots.saturating_sub(max_pinned.min(n_slots)).max(1),
            n_slots,
            room,
        }))
    }

    /// Whether the next layer's experts should be predicted and read ahead.
    pub fn prefetch_enabled(&self) -> bool {
        self.prefetch
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.shared)
    }

    pub fn stats(&self) -> ExpertStats {
        let st = self.lock();
        let mut s = st.stats;
        s.resident_bytes = resident(&self.shared, &st);
        s
    }

    /// Zeroes the counters (not the cache contents).
    pub fn reset_stats(&self) {
        let mut st = self.lock();
        let keep = st.stats;
        st.stats = ExpertStats {
            enabled: keep.enabled,
            budget_bytes: keep.budget_bytes,
            routed_expert_bytes: keep.routed_expert_bytes,
            slot_bytes: keep.slot_bytes,
            n_slots: keep.n_slots,
            pinned_experts: keep.pinned_experts,
            peak_resident_bytes: resident(&self.shared, &st),
            ..Default::default()
        };
    }

    /// Reads every pinned expert now (so that timing starts with the hot set in place).
    pub fn warm_pinned(&self) -> Result<()> {
        let mut keys: Vec<Key> = self.lock().pinned.iter().copied().collect();
        keys.sort_unstable();
        for (l, e) in keys {
            drop(self.acquire(l as usize, e as usize)?);
        }
        Ok(())
    }

    /// Queues the experts of `layer` that a computation is about to use, in use order, for
    /// the I/O threads to read (`begin_layer` does this itself).
    pub fn read_ahead(&self, layer: usize, experts: &[usize]) {
        if self.io.is_empty() {
            return;
        }
        let mut st = self.lock();
        self.queue_ahead(&mut st, layer, experts);
    }

    /// Queues for the I/O threads the experts of `layer` in `experts` that are neither
    /// resident, in flight nor queued (at most `ahead_cap` of them).
    fn queue_ahead(&self, st: &mut State, layer: usize, experts: &[usize]) {
        if self.io.is_empty() {
            return;
        }
        let mut queued = 0;
        for &e in experts {
            let key = (layer as u32, e as u32);
            if st.policy.lookup(key).is_none() && !st.ahead.contains(&key) {
                if queued >= self.ahead_cap {
                    break;
                }
                st.ahead.push_back(key);
                queued += 1;
            }
        }
        if queued > 0 {
            self.shared.changed.notify_all();
        }
    }

    /// Queues predicted experts of `layer` for reading ahead. `replace` drops what an earlier
    /// prediction queued and the I/O thread has not read yet (stale once the computation
    /// predicts again from a newer hidden state); otherwise the experts are added after it,
    /// if the cache has room for several layers.
    pub fn prefetch(&self, layer: usize, experts: &[usize], replace: bool) {
        if !self.prefetch || (!replace && self.n_slots < 4 * self.room) {
            return;
        }
        let mut st = self.lock();
        if replace {
            st.predicted.clear();
        }
        for &e in experts.iter().take(self.ahead_cap) {
            let key = (layer as u32, e as u32);
            if st.policy.lookup(key).is_none() {
                st.predicted.push_back(key);
            }
        }
        self.shared.changed.notify_all();
    }

    /// Adds one layer's prediction outcome to the counters.
    pub fn record_prediction(&self, predicted: usize, used: usize, overlap: usize) {
        let mut st = self.lock();
        st.stats.predicted += predicted as u64;
        st.stats.predicted_layer_uses += used as u64;
        st.stats.predicted_used += overlap as u64;
    }

    /// The expert's weights, resident for as long as the guard lives: from the cache, from a
    /// read in flight, or read now.
    pub fn acquire(&self, layer: usize, expert: usize) -> Result<ExpertGuard<'_>> {
        let parts = self.parts(layer, expert)?;
        let key = (layer as u32, expert as u32);
        let t0 = Instant::now();
        let mut st = self.lock();
        let mut waited = false;
        let slot = loop {
            if let Some(slot) = st.policy.lookup(key) {
                let e = st.policy.entry(slot).expect("indexed slot");
                if e.ready {
                    break slot;
                }
                // In flight on an I/O thread.
                waited = true;
                st = wait(&self.shared, st);
                continue;
            }
            waited = true;
            let (s2, got) = self.read_now(st, key, parts);
            st = s2;
            match got? {
                Some(slot) => break slot,
                // Every slot pinned, in use or being read: wait for one to be released.
                None => st = wait(&self.shared, st),
            }
        };
        if waited {
            st.stats.misses += 1;
            st.stats.io_wait_ns += t0.elapsed().as_nanos() as u64;
        } else {
            st.stats.hits += 1;
        }
        Ok(self.take(st, slot, parts).1)
    }

    /// Starts one MoE layer's use of `experts` (its chosen experts, in expert order): counts
    /// each as a hit (resident now) or a miss, takes a guard on every resident one into
    /// `ready` (so that no read evicts it before it runs), and queues the misses, all of
    /// them, for the I/O threads. Returns the misses, for [`acquire_ready`](Self::acquire_ready).
    pub fn begin_layer<'a>(
        &'a self,
        layer: usize,
        experts: &[usize],
        ready: &mut Vec<(usize, ExpertGuard<'a>)>,
    ) -> Result<Vec<usize>> {
        for &e in experts {
            self.parts(layer, e)?;
        }
        let mut st = self.lock();
        let mut missing = Vec::new();
        for &e in experts {
            let key = (layer as u32, e as u32);
            match st.policy.lookup(key) {
                Some(slot) if st.policy.entry(slot).is_some_and(|x| x.ready) => {
                    st.stats.hits += 1;
                    let parts = &self.shared.layout[layer][e];
                    let (s2, g) = self.take(st, slot, parts);
                    st = s2;
                    ready.push((e, g));
                }
                _ if st.mapped.contains_key(&key) => {
                    st.stats.page_cache_uses += 1;
                    ready.push((e, self.mapped_guard(&mut st, key)));
                }
                _ if in_page_cache(&self.shared, layer, e) && self.make_room(&mut st, layer, e) => {
                    st.stats.page_cache_uses += 1;
                    st.mapped_in_use += expert_len(&self.shared.layout[layer][e]);
                    st.mapped.insert(key, MappedUse { users: 0, last: 0 });
                    ready.push((e, self.mapped_guard(&mut st, key)));
                }
                _ => {
                    st.stats.misses += 1;
                    st.wanted.insert((layer as u32, e as u32));
                    missing.push(e);
                }
            }
        }
        self.queue_ahead(&mut st, layer, &missing);
        Ok(missing)
    }

    /// Moves into `out` a guard for every expert of `pending` (experts of `layer`) that is
    /// resident now, removing them from `pending`, and queues again for the I/O threads those
    /// that are not being read. When none is resident, gets at least one: reads one
    /// that no I/O thread has started (taking it off their queue), or else waits for a read
    /// in flight. Call with `out` empty: a computation never waits while it holds slots, so
    /// computations sharing the store cannot deadlock. The time spent here counts as I/O
    /// wait.
    pub fn acquire_ready<'a>(
        &'a self,
        layer: usize,
        pending: &mut Vec<usize>,
        out: &mut Vec<(usize, ExpertGuard<'a>)>,
    ) -> Result<()> {
        debug_assert!(out.is_empty());
        let t0 = Instant::now();
        let mut st = self.lock();
        // Reads an I/O thread had to drop (no evictable slot then) are queued again.
        self.queue_ahead(&mut st, layer, pending);
        let mut waited = false;
        while !pending.is_empty() {
            let mut i = 0;
            while i < pending.len() {
                let e = pending[i];
                let key = (layer as u32, e as u32);
                match st.policy.lookup(key) {
                    Some(slot) if st.policy.entry(slot).is_some_and(|x| x.ready) => {
                        let parts = self.parts(layer, e)?;
                        let (s2, g) = self.take(st, slot, parts);
                        st = s2;
                        out.push((e, g));
                        pending.remove(i);
                    }
                    _ => i += 1,
                }
            }
            if !out.is_empty() {
                break;
            }
            waited = true;
            // Nothing ready: read one that is not in flight ourselves, else wait.
            let idle = pending
                .iter()
                .position(|&e| st.policy.lookup((layer as u32, e as u32)).is_none());
            let Some(i) = idle else {
                st = wait(&self.shared, st);
                continue;
            };
            let e = pending[i];
            let key = (layer as u32, e as u32);
            st.ahead.retain(|&k| k != key);
            let parts = self.parts(layer, e)?;
            let (s2, got) = self.read_now(st, key, parts);
            st = s2;
            if got?.is_none() {
                st = wait(&self.shared, st);
            }
        }
        if waited {
            st.stats.io_wait_ns += t0.elapsed().as_nanos() as u64;
        }
        Ok(())
    }

    /// Whether `expert` of `layer` (which the page cache holds) may run from the mapping
    /// now: its pages must fit in the budget beside the slot buffers and the other experts
    /// resident through the mapping (so that a prefill choosing most of a layer's experts
    /// does not map them all at once). Gives up the buffers of idle slots, least valuable
    /// first (a slot's copy of an expert the page cache also holds saves little), then the
    /// pages of the least recently used idle mapped experts, to make that room.
    fn make_room(&self, st: &mut State, layer: usize, expert: usize) -> bool {
        let sh = &*self.shared;
        let need = expert_len(&sh.layout[layer][expert]);
        loop {
            if st.allocated_slots * sh.slot_bytes + st.mapped_in_use + need <= sh.budget {
                return true;
            }
            let State {
                policy,
                bufs,
                wanted,
                ..
            } = &*st;
            // A buffer no view holds (no guard, no read in flight: those have taken it out),
            // in a slot whose expert no computation waits for.
            let free = policy.victim_among(|i| {
                bufs[i].as_ref().is_some_and(|b| Arc::strong_count(b) == 1)
                    && policy.entry(i).is_none_or(|e| !wanted.contains(&e.key))
            });
            let Some(slot) = free else {
                if release_mapped_lru(sh, st) {
                    continue;
                }
                return false;
            };
            st.policy.remove(slot);
            st.bufs[slot] = None;
            st.allocated_slots -= 1;
        }
    }

    /// A guard on `key` in the file mapping (an entry of `st.mapped`; see
    /// [`ExpertParams::page_cache`]).
    fn mapped_guard(&self, st: &mut State, key: Key) -> ExpertGuard<'_> {
        st.clock += 1;
        let clock = st.clock;
        let m = st.mapped.get_mut(&key).expect("a mapped expert");
        m.users += 1;
        m.last = clock;
        ExpertGuard {
            store: self,
            slot: None,
            key,
            mlp: Some(self.shared.mapped[key.0 as usize][key.1 as usize].clone()),
        }
    }

    fn parts(&self, layer: usize, expert: usize) -> Result<&[Part; 3]> {
        self.shared
            .layout
            .get(layer)
            .and_then(|l| l.get(expert))
            .ok_or_else(|| Error::InvalidArg(format!("no routed expert {expert} in layer {layer}")))
    }

    /// Reads `key` into a victim slot on this thread. Ok(None): no slot is evictable.
    #[allow(clippy::type_complexity)]
    fn read_now<'s>(
        &'s self,
        mut st: MutexGuard<'s, State>,
        key: Key,
        parts: &[Part; 3],
    ) -> (MutexGuard<'s, State>, Result<Option<usize>>) {
        let sh = &*self.shared;
        let Some(slot) = st.policy.victim() else {
            return (st, Ok(None));
        };
        let pinned = st.pinned.contains(&key);
        st.policy.insert(slot, key, pinned, false);
        let buf = st.bufs[slot].take();
        if buf.is_none() {
            room_for_a_buffer(sh, &mut st);
            st.allocated_slots += 1;
        }
        drop(st);
        let (buf, res) = read_expert(sh, parts, buf);
        let mut st = self.lock();
        st.bufs[slot] = Some(buf);
        match res {
            Ok(()) => {
                st.stats.bytes_read += expert_len(parts) as u64;
                st.policy.entry_mut(slot).expect("inserted").ready = true;
                note_resident(sh, &mut st);
                sh.changed.notify_all();
                (st, Ok(Some(slot)))
            }
            Err(e) => {
                st.policy.remove(slot);
                sh.changed.notify_all();
                (st, Err(e))
            }
        }
    }

    /// A guard on the ready `slot` (holding `expert`, whose parts are `parts`).
    fn take<'s>(
        &'s self,
        mut st: MutexGuard<'s, State>,
        slot: usize,
        parts: &[Part; 3],
    ) -> (MutexGuard<'s, State>, ExpertGuard<'s>) {
        st.policy.touch(slot);
        let e = st.policy.entry_mut(slot).expect("ready slot");
        e.users += 1;
        let key = e.key;
        if e.prefetched_unused {
            e.prefetched_unused = false;
            st.stats.prefetch_hits += 1;
        }
        st.wanted.remove(&key);
        let buf = st.bufs[slot].clone().expect("a ready slot has its buffer");
        let view = |p: &Part| {
            TensorView::new(
                p.dtype,
                p.rows,
                p.cols,
                Backing::Owned(buf.clone()),
                p.slot_offset..p.slot_offset + p.len,
            )
            .expect("slot layout checked at construction")
        };
        let g = ExpertGuard {
            store: self,
            slot: Some(slot),
            key,
            mlp: Some(Mlp {
                gate: view(&parts[0]),
                up: view(&parts[1]),
                down: view(&parts[2]),
            }),
        };
        (st, g)
    }
}

impl Drop for ExpertStore {
    fn drop(&mut self) {
        self.lock().shutdown = true;
        self.shared.changed.notify_all();
        for h in self.io.drain(..) {
            let _ = h.join();
        }
    }
}

/// An expert's weights in a slot (the slot cannot be reused while the guard lives), or in
/// the file mapping (slot None: its mapped pages stay resident while the guard lives).
pub struct ExpertGuard<'a> {
    store: &'a ExpertStore,
    slot: Option<usize>,
    key: Key,
    mlp: Option<Mlp>,
}

impl std::ops::Deref for ExpertGuard<'_> {
    type Target = Mlp;
    fn deref(&self) -> &Mlp {
        self.mlp.as_ref().expect("live guard")
    }
}

impl Drop for ExpertGuard<'_> {
    fn drop(&mut self) {
        let Some(slot) = self.slot else {
            // From the mapping: its pages stay resident (and counted) until the budget needs
            // the room (`release_mapped_lru`).
            self.mlp = None;
            let mut st = self.store.lock();
            if let Some(m) = st.mapped.get_mut(&self.key) {
                m.users = m.users.saturating_sub(1);
            }
            return;
        };
        // The views go first, so the slot's buffer has a single owner again when released.
        self.mlp = None;
        let mut st = self.store.lock();
        if let Some(e) = st.policy.entry_mut(slot) {
            e.users = e.users.saturating_sub(1);
        }
        self.store.shared.changed.notify_all();
    }
}

fn lock(sh: &Shared) -> MutexGuard<'_, State> {
    // A panic elsewhere cannot leave the state inconsistent between statements that matter
    // (each critical section is a few field updates), so a poisoned lock is still usable.
    sh.state.lock().unwrap_or_else(|e| e.into_inner())
}

fn wait<'a>(sh: &Shared, st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
    sh.changed.wait(st).unwrap_or_else(|e| e.into_inner())
}

/// Whether the page cache holds `expert` of `layer` (when misses may run from the mapping):
/// a one-byte read that must not wait for the device (`RWF_NOWAIT`) from the middle of each
/// of its three matrices. A sample, not a proof: a page missing elsewhere is read by the
/// mapping's fault, which is slower but gives the same bytes.
fn in_page_cache(sh: &Shared, layer: usize, expert: usize) -> bool {
    if sh.mapped.get(layer).is_none_or(|l| l.len() <= expert) {
        return false;
    }
    sh.layout[layer][expert].iter().all(|p| {
        let f = &sh.files[p.file];
        cached_byte(&f.file, p.file_offset + p.len as u64 / 2)
    })
}

/// Whether the byte at `offset` of `file` is in the page cache (false where that cannot be
/// asked without reading the device).
#[cfg(target_os = "linux")]
fn cached_byte(file: &File, offset: u64) -> bool {
    use std::os::fd::AsRawFd;
    let mut b = 0u8;
    let iov = libc::iovec {
        iov_base: (&mut b as *mut u8).cast(),
        iov_len: 1,
    };
    let Ok(off) = libc::off_t::try_from(offset) else {
        return false;
    };
    // SAFETY: `iov` describes one writable byte that outlives the call; the descriptor is
    // open for the life of `file`. RWF_NOWAIT makes the read fail (EAGAIN) instead of
    // waiting for the device when the byte is not cached; older kernels refuse the flag
    // (EOPNOTSUPP/EINVAL), which reads as "not cached".
    let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, off, libc::RWF_NOWAIT) };
    n == 1
}

#[cfg(not(target_os = "linux"))]
fn cached_byte(_: &File, _: u64) -> bool {
    false
}

/// Drops the pages of the least recently used mapped expert that no computation uses from
/// the resident set (the page cache keeps them). False when there is none.
fn release_mapped_lru(sh: &Shared, st: &mut State) -> bool {
    let Some(key) = st
        .mapped
        .iter()
        .filter(|(_, m)| m.users == 0)
        .min_by_key(|(_, m)| m.last)
        .map(|(&k, _)| k)
    else {
        return false;
    };
    st.mapped.remove(&key);
    let (l, e) = (key.0 as usize, key.1 as usize);
    let m = &sh.mapped[l][e];
    for t in [&m.gate, &m.up, &m.down] {
        t.release_mapped_pages();
    }
    st.mapped_in_use = st
        .mapped_in_use
        .saturating_sub(expert_len(&sh.layout[l][e]));
    true
}

/// Before a new slot buffer is allocated: releases idle mapped experts until the buffers and
/// the mapped experts fit in the budget with one more buffer (as far as idle ones allow).
fn room_for_a_buffer(sh: &Shared, st: &mut State) {
    while (st.allocated_slots + 1) * sh.slot_bytes + st.mapped_in_use > sh.budget
        && release_mapped_lru(sh, st)
    {}
}

fn expert_len(parts: &[Part; 3]) -> usize {
    parts.iter().map(|p| p.len).sum()
}

fn resident(sh: &Shared, st: &State) -> u64 {
    st.policy
        .ready_entries()
        .map(|e| expert_len(&sh.layout[e.key.0 as usize][e.key.1 as usize]) as u64)
        .sum()
}

fn note_resident(sh: &Shared, st: &mut State) {
    let r = resident(sh, st);
    st.stats.peak_resident_bytes = st.stats.peak_resident_bytes.max(r);
}

/// Reads an expert's three matrices into `buf` (allocated on first use). Returns the buffer
/// in every case, so the slot keeps it.
fn read_expert(
    sh: &Shared,
    parts: &[Part; 3],
    buf: Option<Arc<Vec<u8>>>,
) -> (Arc<Vec<u8>>, Result<()>) {
    let mut buf = buf.unwrap_or_else(|| Arc::new(vec![0u8; sh.slot_bytes]));
    let done = sh.throttle.as_ref().map(|t| t.reserve(expert_len(parts)));
    let res = match Arc::get_mut(&mut buf) {
        Some(bytes) => parts.iter().try_for_each(|p| {
            let f = &sh.files[p.file];
            f.file
                .read_exact_at(
                    &mut bytes[p.slot_offset..p.slot_offset + p.len],
                    p.file_offset,
                )
                .map_err(|e| Error::io(&f.path, e))
        }),
        // Cannot happen: a slot is only refilled when no guard (hence no view) holds it.
        None => Err(Error::InvalidArg("expert slot still in use".into())),
    };
    if let Some(done) = done {
        let now = Instant::now();
        if done > now {
            std::thread::sleep(done - now);
        }
    }
    (buf, res)
}

/// Reads queued experts ahead of use: the current layer's first, then the predicted ones.
/// Never waits for a slot (a read ahead must not delay the computation's own reads): with
/// no evictable slot the key is dropped.
fn io_thread(sh: &Shared) {
    let mut st = lock(sh);
    loop {
        if st.shutdown {
            return;
        }
        // The current layer's misses (certain to be used) in parallel; predicted experts one
        // at a time, so that mispredictions do not take the storage from certain reads, and
        // most of a stale prediction is still queued (and dropped) when the next replaces it.
        let next = match st.ahead.pop_front() {
            Some(k) => Some((k, false)),
            None if st.speculating == 0 => st.predicted.pop_front().map(|k| (k, true)),
            None => None,
        };
        let Some((key, speculative)) = next else {
            st = wait(sh, st);
            continue;
        };
        if st.policy.lookup(key).is_some() {
            continue;
        }
        if speculative && in_page_cache(sh, key.0 as usize, key.1 as usize) {
            // It will run from the mapping: a copy would only take memory and time.
            st.stats.page_cache_skipped_reads += 1;
            continue;
        }
        // Never in place of a chosen expert that waits for its computation.
        let Some(slot) = st.policy.victim_sparing(|k| st.wanted.contains(&k)) else {
            continue;
        };
        let pinned = st.pinned.contains(&key);
        st.policy.insert(slot, key, pinned, true);
        let buf = st.bufs[slot].take();
        if buf.is_none() {
            room_for_a_buffer(sh, &mut st);
            st.allocated_slots += 1;
        }
        st.speculating += speculative as usize;
        drop(st);
        let parts = &sh.layout[key.0 as usize][key.1 as usize];
        let (buf, res) = read_expert(sh, parts, buf);
        st = lock(sh);
        st.speculating -= speculative as usize;
        st.bufs[slot] = Some(buf);
        if res.is_ok() {
            st.stats.bytes_read += expert_len(parts) as u64;
            st.stats.prefetches += 1;
            st.policy.entry_mut(slot).expect("inserted").ready = true;
            note_resident(sh, &mut st);
        } else {
            // The computation will read it itself and report the error.
            st.policy.remove(slot);
        }
        sh.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes_and_rates() {
        assert_eq!(
            ExpertBudget::parse("2GiB").unwrap(),
            ExpertBudget::Bytes(2 << 30)
        );
        assert_eq!(
            ExpertBudget::parse("500MB").unwrap(),
            ExpertBudget::Bytes(500_000_000)
        );
        assert_eq!(ExpertBudget::parse("0").unwrap(), ExpertBudget::Bytes(0));
        assert_eq!(
            ExpertBudget::parse("25%").unwrap(),
            ExpertBudget::Fraction(0.25)
        );
        assert_eq!(
            ExpertBudget::parse("unlimited").unwrap(),
            ExpertBudget::Unlimited
        );
        assert!(ExpertBudget::parse("150%").is_err());
        assert!(ExpertBudget::parse("2 parsecs").is_err());
        assert!(ExpertBudget::parse("-1").is_err());
        assert_eq!(ExpertBudget::Fraction(0.25).bytes(1000, 7), Some(250));
        assert_eq!(ExpertBudget::parse(" AUTO ").unwrap(), ExpertBudget::Auto);
        assert_eq!(parse_rate("200MB/s").unwrap(), 200e6);
        assert!(parse_rate("0MB/s").is_err());
    }

    #[test]
    fn auto_budget_follows_available_memory() {
        const G: u64 = 1 << 30;
        // 8 GiB of experts + 1 GiB resident in 16 GiB free (12 usable): no store.
        assert_eq!(ExpertBudget::auto_bytes(8 * G, G, 16 * G), None);
        // Exactly the usable share still fits.
        assert_eq!(ExpertBudget::auto_bytes(11 * G, G, 16 * G), None);
        // 30 GiB of experts: what is left of 12 GiB beside 2 GiB resident and the headroom.
        assert_eq!(
            ExpertBudget::auto_bytes(30 * G, 2 * G, 16 * G),
            Some(10 * G - AUTO_HEADROOM)
        );
        // Resident weights alone above the usable share: the smallest store (one slot).
        assert_eq!(ExpertBudget::auto_bytes(30 * G, 20 * G, 16 * G), Some(0));
    }
}
