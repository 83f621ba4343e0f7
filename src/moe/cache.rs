//! The replacement policy of the routed-expert cache: which (layer, expert) occupies which
//! slot of the arena, and which slot to reuse next. Pure bookkeeping, no I/O (the store in
//! `experts.rs` does the reading), so the policy is tested on its own.
//!
//! Policy: LRU-2 (O'Neil et al., "The LRU-K page replacement algorithm", 1993). The victim is
//! the entry whose second-to-last use is oldest, so an expert used once (a one-off choice of
//! the router) goes before one used repeatedly, and among equals the least recently used goes
//! first: LRU with frequency, with no tuning constant. An entry read ahead and not used yet
//! ranks as if used twice when it was read: it outlives entries used once and entries whose
//! second-to-last use is older than its read (so a read-ahead is not the very next victim of
//! the read after it), and ages out like them when the prediction was wrong. Never evicted:
//! pinned entries (the hot set of a profile), entries a computation is using, and entries
//! still being read.

use std::collections::HashMap;

/// (layer, expert).
pub type Key = (u32, u32);

#[derive(Clone, Debug)]
pub struct Entry {
    pub key: Key,
    /// The bytes are in the slot (false while being read).
    pub ready: bool,
    pub pinned: bool,
    /// Computations holding the slot now.
    pub users: u32,
    /// Loaded by a prefetch and not used since.
    pub prefetched_unused: bool,
    /// Used at least once since it was read.
    used: bool,
    /// Clock of the last use (of the read while unused), and of the use before it (0 = none).
    last: u64,
    prev: u64,
}

impl Entry {
    fn evictable(&self) -> bool {
        self.ready && !self.pinned && self.users == 0
    }

    /// Victims are taken in increasing order of this key.
    fn rank(&self) -> (u64, u64) {
        if self.used {
            (self.prev, self.last)
        } else {
            (self.last, self.last)
        }
    }
}

/// Slot assignment for a fixed number of equal slots.
#[derive(Debug)]
pub struct Policy {
    slots: Vec<Option<Entry>>,
    index: HashMap<Key, usize>,
    clock: u64,
}

impl Policy {
    pub fn new(n_slots: usize) -> Policy {
        Policy {
            slots: vec![None; n_slots],
            index: HashMap::new(),
            clock: 0,
        }
    }

    pub fn n_slots(&self) -> usize {
        self.slots.len()
    }

    pub fn lookup(&self, key: Key) -> Option<usize> {
        self.index.get(&key).copied()
    }

    pub fn entry(&self, slot: usize) -> Option<&Entry> {
        self.slots[slot].as_ref()
    }

    pub fn entry_mut(&mut self, slot: usize) -> Option<&mut Entry> {
        self.slots[slot].as_mut()
    }

    /// Entries that hold their bytes now.
    pub fn ready_entries(&self) -> impl Iterator<Item = &Entry> {
        self.slots.iter().flatten().filter(|e| e.ready)
    }

    pub fn pinned_count(&self) -> usize {
        self.slots.iter().flatten().filter(|e| e.pinned).count()
    }

    /// Records a use of the entry in `slot`.
    pub fn touch(&mut self, slot: usize) {
        self.clock += 1;
        let clock = self.clock;
        if let Some(e) = self.slots[slot].as_mut() {
            if e.used {
                e.prev = e.last;
            }
            e.used = true;
            e.last = clock;
        }
    }

    /// The slot to fill next: an empty one, else the LRU-2 victim among the evictable
    /// entries; None when every slot is pinned, in use or being read.
    pub fn victim(&self) -> Option<usize> {
        self.victim_sparing(|_| false)
    }

    /// [`victim`](Self::victim), never taking an entry whose key `spare` holds.
    pub fn victim_sparing(&self, spare: impl Fn(Key) -> bool) -> Option<usize> {
        self.pick(|_, e| e.is_none_or(|e| !spare(e.key)))
    }

    /// The slot whose memory to give up next among those `allowed` (by index): an empty one,
    /// else the LRU-2 victim among the allowed evictable entries.
    pub fn victim_among(&self, allowed: impl Fn(usize) -> bool) -> Option<usize> {
        self.pick(|i, _| allowed(i))
    }

    /// The first empty slot that `ok` accepts, else the evictable entry it accepts with the
    /// lowest LRU-2 rank.
    fn pick(&self, ok: impl Fn(usize, Option<&Entry>) -> bool) -> Option<usize> {
        if let Some(free) = (0..self.slots.len()).find(|&i| self.slots[i].is_none() && ok(i, None))
        {
            return Some(free);
        }
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.as_ref()
                    .filter(|e| e.evictable() && ok(i, Some(e)))
                    .map(|e| (i, e))
            })
            .min_by_key(|(_, e)| e.rank())
            .map(|(i, _)| i)
    }

    /// Puts `key` into `slot` (from [`victim`](Self::victim)), evicting what was there, as an
    /// entry being read and not used yet. Returns the evicted entry.
    pub fn insert(
        &mut self,
        slot: usize,
        key: Key,
        pinned: bool,
        prefetched: bool,
    ) -> Option<Entry> {
        debug_assert!(!self.index.contains_key(&key));
        let old = self.slots[slot].take();
        if let Some(o) = &old {
            debug_assert!(o.evictable());
            self.index.remove(&o.key);
        }
        self.clock += 1;
        self.slots[slot] = Some(Entry {
            key,
            ready: false,
            pinned,
            users: 0,
            prefetched_unused: prefetched,
            used: false,
            last: self.clock,
            prev: 0,
        });
        self.index.insert(key, slot);
        old
    }

    /// Forgets the entry in `slot` (a read that failed).
    pub fn remove(&mut self, slot: usize) {
        if let Some(e) = self.slots[slot].take() {
            self.index.remove(&e.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A demand read: loaded, then used.
    fn load(p: &mut Policy, key: Key, pinned: bool) -> usize {
        let s = read_ahead(p, key, pinned);
        p.touch(s);
        s
    }

    /// A read ahead: loaded, not used yet.
    fn read_ahead(p: &mut Policy, key: Key, pinned: bool) -> usize {
        let s = p.victim().expect("a slot");
        p.insert(s, key, pinned, false);
        p.entry_mut(s).unwrap().ready = true;
        s
    }

    #[test]
    fn fills_empty_slots_first_then_evicts_lru_among_once_used() {
        let mut p = Policy::new(3);
        let a = load(&mut p, (0, 0), false);
        let b = load(&mut p, (0, 1), false);
        let c = load(&mut p, (0, 2), false);
        assert_eq!([a, b, c], [0, 1, 2]);
        // All used once: the least recently used goes first.
        assert_eq!(p.victim(), Some(a));
        p.touch(a); // a now used twice: b (once, oldest) is the victim.
        assert_eq!(p.victim(), Some(b));
        let d = load(&mut p, (0, 3), false);
        assert_eq!(d, b);
        assert_eq!(p.lookup((0, 1)), None);
        assert_eq!(p.lookup((0, 3)), Some(b));
        // c (once) goes before d (once, newer) and before a (twice).
        assert_eq!(p.victim(), Some(c));
    }

    #[test]
    fn frequency_beats_recency_of_single_use() {
        let mut p = Policy::new(2);
        let hot = load(&mut p, (1, 0), false);
        for _ in 0..5 {
            p.touch(hot);
        }
        let cold = load(&mut p, (1, 1), false);
        // The hot one was used longer ago than the cold one, but twice recently.
        assert_eq!(p.victim(), Some(cold));
    }

    #[test]
    fn read_ahead_outlives_single_uses_and_ages_out() {
        let mut p = Policy::new(3);
        let once = load(&mut p, (0, 0), false);
        let twice = load(&mut p, (0, 1), false);
        p.touch(twice);
        let ahead = read_ahead(&mut p, (1, 0), false);
        // Not the next victim of the read after it: the once-used entry goes first.
        assert_eq!(p.victim(), Some(once));
        let next = read_ahead(&mut p, (1, 1), false);
        assert_eq!(next, once);
        // Between two unused read-aheads the older goes first, and the twice-used entry,
        // whose second-to-last use predates both reads, goes before either.
        assert_eq!(p.victim(), Some(twice));
        // Once `twice` is used twice more after the reads, the unread prediction ages out.
        p.touch(twice);
        p.touch(twice);
        assert_eq!(p.victim(), Some(ahead));
        // Using a read-ahead makes it an entry used once.
        p.touch(ahead);
        assert_eq!(p.victim(), Some(ahead));
    }

    #[test]
    fn pinned_in_use_and_loading_entries_are_kept() {
        let mut p = Policy::new(3);
        let pinned = load(&mut p, (2, 0), true);
        let busy = load(&mut p, (2, 1), false);
        p.entry_mut(busy).unwrap().users = 1;
        let s = p.victim().unwrap();
        p.insert(s, (2, 2), false, true); // being read: not ready
        assert_eq!(p.victim(), None);
        p.entry_mut(s).unwrap().ready = true;
        assert_eq!(p.victim(), Some(s));
        p.entry_mut(busy).unwrap().users = 0;
        // busy was used once; the read-ahead ranks as used twice at its read.
        assert_eq!(p.victim(), Some(busy));
        assert_ne!(p.victim(), Some(pinned));
        assert_eq!(p.pinned_count(), 1);
    }

    #[test]
    fn never_more_entries_than_slots() {
        // A long random stream of uses through 4 slots: the index and the slots agree and
        // hold at most 4 keys, and the pinned key is never evicted.
        let mut p = Policy::new(4);
        let pin = load(&mut p, (9, 9), true);
        let mut s = 12345u64;
        for i in 0..2000 {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let key = (0, ((s >> 33) % 10) as u32);
            match p.lookup(key) {
                Some(slot) => p.touch(slot),
                None if i % 3 == 0 => {
                    read_ahead(&mut p, key, false);
                }
                None => {
                    load(&mut p, key, false);
                }
            }
            assert!(p.index.len() <= 4);
            assert_eq!(p.lookup((9, 9)), Some(pin));
            for (k, &slot) in &p.index {
                assert_eq!(p.entry(slot).unwrap().key, *k);
            }
        }
    }
}
