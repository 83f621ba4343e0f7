//! Byte-level BPE: the GPT-2 byte <-> unicode mapping and the merge loop.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

/// The GPT-2 mapping from a byte to the character that stands for it in vocabularies:
/// printable Latin-1 characters stand for themselves, the other 68 bytes are shifted to
/// U+0100.. in byte order (space -> 'Ġ', newline -> 'Ċ').
pub(crate) const fn byte_to_char_table() -> [char; 256] {
    let mut t = ['\0'; 256];
    let mut n = 0u32;
    let mut b = 0usize;
    while b < 256 {
        let printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
        let u = if printable {
            b as u32
        } else {
            n += 1;
            255 + n
        };
        t[b] = match char::from_u32(u) {
            Some(c) => c,
            None => '\0',
        };
        b += 1;
    }
    t
}

pub(crate) static BYTE_TO_CHAR: [char; 256] = byte_to_char_table();

/// The inverse of [`BYTE_TO_CHAR`]: characters U+0000..U+0143 to bytes.
static CHAR_TO_BYTE: [i16; 324] = {
    let mut t = [-1i16; 324];
    let mut b = 0usize;
    while b < 256 {
        t[BYTE_TO_CHAR[b] as usize] = b as i16;
        b += 1;
    }
    t
};

#[inline]
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    let u = c as usize;
    if u < CHAR_TO_BYTE.len() && CHAR_TO_BYTE[u] >= 0 {
        Some(CHAR_TO_BYTE[u] as u8)
    } else {
        None
    }
}

/// The bytes a vocabulary string stands for, the way HF's ByteLevel decoder reads it: through
/// the byte mapping when every character is in it, otherwise the string's own UTF-8.
pub(crate) fn token_string_to_bytes(s: &str) -> Vec<u8> {
    let mapped: Option<Vec<u8>> = s.chars().map(char_to_byte).collect();
    mapped.unwrap_or_else(|| s.as_bytes().to_vec())
}

/// A small, fast hasher for the u64 pair keys (splitmix64 finaliser).
#[derive(Default, Clone, Copy)]
pub(crate) struct PairHasher(u64);

impl Hasher for PairHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0 ^ b as u64);
        }
    }
    #[inline]
    fn write_u64(&mut self, k: u64) {
        let mut z = k.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        self.0 = z ^ (z >> 31);
    }
}

/// A fast hasher for short byte strings (pre-token cache keys): FxHash-style word mixing with a
/// splitmix64 finish so that hashbrown's low and high bits are both good.
#[derive(Default, Clone, Copy)]
pub(crate) struct BytesHasher(u64);

impl Hasher for BytesHasher {
    #[inline]
    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut h = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            h = (h.rotate_left(5) ^ w).wrapping_mul(K);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            h = (h.rotate_left(5) ^ u64::from_le_bytes(buf)).wrapping_mul(K);
        }
        self.0 = (h.rotate_left(5) ^ bytes.len() as u64).wrapping_mul(K);
    }
}

pub(crate) type BytesMap<K, V> = HashMap<K, V, BuildHasherDefault<BytesHasher>>;

pub(crate) type PairMap<V> = HashMap<u64, V, BuildHasherDefault<PairHasher>>;

#[inline]
fn pair_key(a: u32, b: u32) -> u64 {
    (a as u64) << 32 | b as u64
}

const NONE: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Sym {
    id: u32, // NONE when merged into its left neighbour
    prev: u32,
    next: u32,
}

/// Reusable buffers for [`Bpe::encode_word`].
#[derive(Default)]
pub(crate) struct Scratch {
    syms: Vec<Sym>,
    // (rank, position, new id) in a min-heap: lowest rank first, then leftmost.
    heap: BinaryHeap<Reverse<(u32, u32, u32)>>,
}

pub(crate) struct Bpe {
    /// (left id, right id) -> (rank, merged id)
    merges: PairMap<(u32, u32)>,
    /// The id of each single byte (NONE when the vocabulary lacks it: the byte is dropped,
    /// as HF drops characters it has no id for when there is no unk token).
    byte_id: [u32; 256],
    /// `ignore_merges`: a word that is itself in the vocabulary is one token.
    whole_words: Option<HashMap<Vec<u8>, u32>>,
}

impl Bpe {
    pub(crate) fn new(
        merges: PairMap<(u32, u32)>,
        byte_id: [u32; 256],
        whole_words: Option<HashMap<Vec<u8>, u32>>,
    ) -> Self {
        Bpe {
            merges,
            byte_id,
            whole_words,
        }
    }

    /// (rank, left << 32 | right) of every merge, unordered.
    pub(crate) fn merge_pairs(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.merges.iter().map(|(&k, &(rank, _))| (rank, k))
    }

    pub(crate) fn n_merges(&self) -> usize {
        self.merges.len()
    }

    /// Appends the ids of one pre-token (raw bytes) to `out`.
    ///
    /// The merge order is Hugging Face's exactly: a min-heap of candidate merges ordered by
    /// (rank, position); a popped candidate is applied only if its left symbol is still alive,
    /// has a right neighbour, and that pair still merges into the same token.
    pub(crate) fn encode_word(&self, word: &[u8], out: &mut Vec<u32>, sc: &mut Scratch) {
        if word.len() == 1 {
            let id = self.byte_id[word[0] as usize];
            if id != NONE {
                out.push(id);
            }
            return;
        }
        if let Some(ww) = &self.whole_words {
            if let Some(&id) = ww.get(word) {
                out.push(id);
                return;
            }
        }
        let syms = &mut sc.syms;
        syms.clear();
        for &b in word {
            let id = self.byte_id[b as usize];
            if id == NONE {
                continue;
            }
            let n = syms.len() as u32;
            syms.push(Sym {
                id,
                prev: if n == 0 { NONE } else { n - 1 },
                next: n + 1,
            });
        }
        let n = syms.len();
        if n == 0 {
            return;
        }
        syms[n - 1].next = NONE;
        let heap = &mut sc.heap;
        heap.clear();
        for i in 0..n - 1 {
            if let Some(&(rank, new_id)) = self.merges.get(&pair_key(syms[i].id, syms[i + 1].id)) {
                heap.push(Reverse((rank, i as u32, new_id)));
            }
        }
        while let Some(Reverse((_, pos, new_id))) = heap.pop() {
            let pos = pos as usize;
            let left = syms[pos];
            if left.id == NONE || left.next == NONE {
                continue;
            }
            let rpos = left.next as usize;
            let right = syms[rpos];
            match self.merges.get(&pair_key(left.id, right.id)) {
                Some(&(_, id)) if id == new_id => {}
                _ => continue,
            }
            syms[pos].id = new_id;
            syms[pos].next = right.next;
            syms[rpos].id = NONE;
            if right.next != NONE {
                syms[right.next as usize].prev = pos as u32;
            }
            if left.prev != NONE {
                let p = left.prev as usize;
                if let Some(&(rank, nid)) = self.merges.get(&pair_key(syms[p].id, new_id)) {
                    heap.push(Reverse((rank, p as u32, nid)));
                }
            }
            if right.next != NONE {
                let nx = right.next as usize;
                if let Some(&(rank, nid)) = self.merges.get(&pair_key(new_id, syms[nx].id)) {
                    heap.push(Reverse((rank, pos as u32, nid)));
                }
            }
        }
        let mut i = 0u32;
        while i != NONE {
            let s = syms[i as usize];
            out.push(s.id);
            i = s.next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_map() {
        assert_eq!(BYTE_TO_CHAR[b' ' as usize], 'Ġ');
        assert_eq!(BYTE_TO_CHAR[b'\n' as usize], 'Ċ');
        assert_eq!(BYTE_TO_CHAR[b'a' as usize], 'a');
        assert_eq!(BYTE_TO_CHAR[0xa0], 'ł');
        assert_eq!(BYTE_TO_CHAR[0xad], 'Ń');
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(BYTE_TO_CHAR[b as usize]), Some(b));
        }
        assert_eq!(token_string_to_bytes("Ġhello"), b" hello");
        assert_eq!(token_string_to_bytes("<｜User｜>"), "<｜User｜>".as_bytes());
    }

    #[test]
    fn merge_order() {
        // bytes a=0 b=1 c=2; merges: "b c" rank 0 -> 3, "a b" rank 1 -> 4, "a bc" rank 2 -> 5
        let mut byte_id = [NONE; 256];
        byte_id[b'a' as usize] = 0;
        byte_id[b'b' as usize] = 1;
        byte_id[b'c' as usize] = 2;
        let mut m = PairMap::default();
        m.insert(pair_key(1, 2), (0, 3));
        m.insert(pair_key(0, 1), (1, 4));
        m.insert(pair_key(0, 3), (2, 5));
        let bpe = Bpe::new(m, byte_id, None);
        let mut out = Vec::new();
        let mut sc = Scratch::default();
        bpe.encode_word(b"abc", &mut out, &mut sc);
        assert_eq!(out, [5]);
        out.clear();
        bpe.encode_word(b"abab", &mut out, &mut sc);
        assert_eq!(out, [4, 4]);
        out.clear();
        bpe.encode_word(b"cab", &mut out, &mut sc);
        assert_eq!(out, [2, 4]);
    }
}
