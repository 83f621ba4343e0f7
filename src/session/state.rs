//! Saved session states: a session's tokens, latent KV cache rows and last logits, written
//! to bytes or a file and loaded into another session of the same model, which then
//! continues exactly as the saved one would have (bit-identical logits).
//!
//! The format (docs/C_API.md "Saved sessions"), all integers little-endian:
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 8 | magic `MOELAKVS` |
//! | 8 | 4 | format version (1) |
//! | 12 | 4 | cache type: 0 f32, 1 f16 |
//! | 16 | 8 | model fingerprint ([`crate::Model::fingerprint`]) |
//! | 24 | 4 | n_tokens: positions saved |
//! | 28 | 4 | n_ctx needed to load it (≥ n_tokens) |
//! | 32 | 4 | values per cache row (kv_lora_rank + qk_rope_head_dim) |
//! | 36 | 4 | flags: bit 0 = the last logits follow; other bits 0 |
//! | 40 | 4 | n_layers |
//! | 44 | 4 | n_vocab |
//! | 48 | 8 | XXH64 of bytes 0..48 (the header's own checksum) |
//! | 56 | 4·n_tokens | token ids |
//! | … | 4·n_vocab | last logits (f32), when flag bit 0 |
//! | … | n_layers·n_tokens·row·(4 or 2) | cache rows, layer by layer, position by position |
//! | end−8 | 8 | XXH64 of every byte before it |
//!
//! Loading checks, in order: the length, the magic, the header checksum, the version, the
//! fields' ranges, then the fit with the session (model fingerprint and dimensions, cache type
//! → [`Error::StateMismatch`]; context → [`Error::ContextFull`]), then the whole-file
//! checksum and the token ids, and only then changes the session: a failed load leaves it as
//! it was.

use std::io::{Read, Write};
use std::path::Path;

use super::hash::xxh64;
use super::Session;
use crate::attention::kv_cache::KvType;
use crate::error::{Error, Result};

/// The first 8 bytes of a saved state.
const MAGIC: &[u8; 8] = b"MOELAKVS";
/// The format version this build writes and reads.
const VERSION: u32 = 1;
/// Bytes of the fixed header.
const HEADER_LEN: usize = 56;
/// Bytes of the trailing checksum.
const TRAILER_LEN: usize = 8;
const FLAG_LOGITS: u32 = 1;
/// The name failures use for a state that is not a file.
const BYTES_NAME: &str = "<session state>";

/// The fields of a state's header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateHeader {
    pub version: u32,
    pub kv_type: KvType,
    pub fingerprint: u64,
    pub n_tokens: usize,
    pub n_ctx_needed: usize,
    pub row: usize,
    pub has_logits: bool,
    pub n_layers: usize,
    pub n_vocab: usize,
}

fn rd_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn rd_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn kv_name(t: KvType) -> &'static str {
    match t {
        KvType::F32 => "f32",
        KvType::F16 => "f16",
    }
}

impl StateHeader {
    fn element_bytes(&self) -> usize {
        match self.kv_type {
            KvType::F32 => 4,
            KvType::F16 => 2,
        }
    }

    /// Bytes of the cache rows of one layer.
    fn layer_bytes(&self) -> usize {
        self.n_tokens * self.row * self.element_bytes()
    }

    /// The total length of the state this header describes, None when it overflows.
    pub fn total_len(&self) -> Option<u64> {
        let n = self.n_tokens as u64;
        let logits = if self.has_logits {
            4 * self.n_vocab as u64
        } else {
            0
        };
        let kv = (self.n_layers as u64)
            .checked_mul(n)?
            .checked_mul(self.row as u64)?
            .checked_mul(self.element_bytes() as u64)?;
        (HEADER_LEN as u64 + TRAILER_LEN as u64)
            .checked_add(4 * n)?
            .checked_add(logits)?
            .checked_add(kv)
    }

    /// Parses and checks the header at the start of `b` (at least 56 bytes).
    /// `src` names the state in messages.
    pub fn parse(b: &[u8], src: &Path) -> Result<StateHeader> {
        let bad = |msg: String| Error::format(src, msg);
        if b.len() < MAGIC.len() || &b[..MAGIC.len()] != MAGIC {
            return Err(bad(
                "not a moela session state (the magic MOELAKVS is missing)".into(),
            ));
        }
        if b.len() < HEADER_LEN {
            return Err(bad(format!(
                "truncated session state: {} bytes, the header alone has {HEADER_LEN}",
                b.len()
            )));
        }
        let sum = rd_u64(b, 48);
        if xxh64(&b[..48], 0) != sum {
            return Err(bad(
                "session state header checksum mismatch: the state is corrupt".into(),
            ));
        }
        let version = rd_u32(b, 8);
        if version != VERSION {
            return Err(Error::Unsupported {
                path: src.to_path_buf(),
                msg: format!(
                    "session state format version {version}; this build reads version {VERSION}"
                ),
            });
        }
        let kv_type = match rd_u32(b, 12) {
            0 => KvType::F32,
            1 => KvType::F16,
            t => {
                return Err(bad(format!(
                    "session state cache type {t} (0 = f32, 1 = f16)"
                )))
            }
        };
        let flags = rd_u32(b, 36);
        if flags & !FLAG_LOGITS != 0 {
            return Err(bad(format!("session state flags {flags:#x}: unknown bits")));
        }
        let h = StateHeader {
            version,
            kv_type,
            fingerprint: rd_u64(b, 16),
            n_tokens: rd_u32(b, 24) as usize,
            n_ctx_needed: rd_u32(b, 28) as usize,
            row: rd_u32(b, 32) as usize,
            has_logits: flags & FLAG_LOGITS != 0,
            n_layers: rd_u32(b, 40) as usize,
            n_vocab: rd_u32(b, 44) as usize,
        };
        if h.n_ctx_needed > (1 << 24) || h.n_tokens > h.n_ctx_needed {
            return Err(bad(format!(
                "session state with {} tokens needs a context of {}: out of range (at most 2^24, at least the tokens)",
                h.n_tokens, h.n_ctx_needed
            )));
        }
        if h.has_logits && h.n_tokens == 0 {
            return Err(bad("session state with logits but no tokens".into()));
        }
        Ok(h)
    }
}

/// Recomputes both checksums of a state in place (for tests and the fuzz target, which use
/// it to reach the checks after them). Does nothing to bytes shorter than a header plus a
/// trailer.
#[doc(hidden)]
pub fn fix_checksums(b: &mut [u8]) {
    if b.len() < HEADER_LEN + TRAILER_LEN {
        return;
    }
    let h = xxh64(&b[..48], 0);
    b[48..56].copy_from_slice(&h.to_le_bytes());
    let end = b.len() - TRAILER_LEN;
    let t = xxh64(&b[..end], 0);
    b[end..].copy_from_slice(&t.to_le_bytes());
}

impl Session {
    /// The header a state of this session has now.
    fn state_header(&self) -> StateHeader {
        let cfg = &self.model.config;
        StateHeader {
            version: VERSION,
            kv_type: self.kv.kind(),
            fingerprint: self.model.fingerprint(),
            n_tokens: self.pos,
            n_ctx_needed: self.pos,
            row: self.kv.row,
            has_logits: self.n_logit_rows > 0,
            n_layers: self.kv.n_layers,
            n_vocab: cfg.vocab_size,
        }
    }

    /// Bytes [`save_state`](Self::save_state) writes now: 56 + 8 + 4 per token, 4 per
    /// vocabulary entry for the last logits, and per token `n_layers × (kv_lora_rank +
    /// qk_rope_head_dim) × 4` (f32 cache) or `× 2` (f16).
    pub fn state_size(&self) -> usize {
        // Every part is at most the session's own allocations: no overflow.
        self.state_header().total_len().unwrap_or(u64::MAX) as usize
    }

    /// Writes the state into `out`, which must hold at least
    /// [`state_size`](Self::state_size) bytes; returns the bytes written.
    pub fn save_state_to_slice(&self, out: &mut [u8]) -> Result<usize> {
        let h = self.state_header();
        let size = self.state_size();
        if out.len() < size {
            return Err(Error::InvalidArg(format!(
                "save_state: the buffer holds {} bytes, the state has {size}",
                out.len()
            )));
        }
        let out = &mut out[..size];
        out[..8].copy_from_slice(MAGIC);
        let put =
            |out: &mut [u8], at: usize, v: u32| out[at..at + 4].copy_from_slice(&v.to_le_bytes());
        put(out, 8, h.version);
        put(out, 12, matches!(h.kv_type, KvType::F16) as u32);
        out[16..24].copy_from_slice(&h.fingerprint.to_le_bytes());
        put(out, 24, h.n_tokens as u32);
        put(out, 28, h.n_ctx_needed as u32);
        put(out, 32, h.row as u32);
        put(out, 36, if h.has_logits { FLAG_LOGITS } else { 0 });
        put(out, 40, h.n_layers as u32);
        put(out, 44, h.n_vocab as u32);
        let mut at = HEADER_LEN;
        debug_assert_eq!(self.tokens.len(), self.pos);
        for &t in &self.tokens[..self.pos] {
            put(out, at, t);
            at += 4;
        }
        if let Some(l) = self.logits() {
            for &x in l {
                out[at..at + 4].copy_from_slice(&x.to_le_bytes());
                at += 4;
            }
        }
        let lb = h.layer_bytes();
        for layer in 0..h.n_layers {
            self.kv.save_rows(layer, h.n_tokens, &mut out[at..at + lb]);
            at += lb;
        }
        debug_assert_eq!(at + TRAILER_LEN, size);
        fix_checksums(out);
        Ok(size)
    }

    /// The state as bytes (see [`save_state`](Self::save_state)).
    pub fn state_bytes(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.state_size()];
        // The buffer has exactly the size.
        let _ = self.save_state_to_slice(&mut v);
        v
    }

    /// Writes what another session of the same model and cache type needs to continue
    /// exactly where this one is: the tokens, the latent cache rows of every layer up to the
    /// position and the last logits (when the session has them), with checksums. The
    /// format is described in [`crate::session::state`].
    pub fn save_state(&self, mut w: impl Write) -> Result<()> {
        w.write_all(&self.state_bytes())
            .map_err(|e| Error::io(BYTES_NAME, e))
    }

    /// [`save_state`](Self::save_state) into the file `path`, replaced atomically (written
    /// beside it, then renamed over it).
    pub fn save_state_file(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".tmp-{}", std::process::id()));
        let tmp = std::path::PathBuf::from(tmp);
        let r = std::fs::write(&tmp, self.state_bytes()).and_then(|_| std::fs::rename(&tmp, path));
        if let Err(e) = r {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io(path, e));
        }
        Ok(())
    }

    /// Checks that a state with header `h` fits this session.
    fn check_state_fits(&self, h: &StateHeader) -> Result<()> {
        let cfg = &self.model.config;
        let fp = self.model.fingerprint();
        if h.fingerprint != fp {
            return Err(Error::StateMismatch(format!(
                "the state was saved from another model (model fingerprint {:016x}; this session's model, {}, has {fp:016x})",
                h.fingerprint,
                self.model.path.display()
            )));
        }
        if h.n_layers != self.kv.n_layers || h.row != self.kv.row || h.n_vocab != cfg.vocab_size {
            return Err(Error::StateMismatch(format!(
                "the state has {} layers of {} cache values and {} logits, this model {} layers of {} and {}",
                h.n_layers, h.row, h.n_vocab, self.kv.n_layers, self.kv.row, cfg.vocab_size
            )));
        }
        if h.kv_type != self.kv.kind() {
            return Err(Error::StateMismatch(format!(
                "the state was saved with an {} KV cache, this session has an {} one (create the session with kv_type {})",
                kv_name(h.kv_type),
                kv_name(self.kv.kind()),
                kv_name(h.kv_type)
            )));
        }
        if h.n_ctx_needed > self.kv.n_ctx {
            return Err(Error::ContextFull {
                needed: h.n_ctx_needed,
                n_ctx: self.kv.n_ctx,
                n_ctx_train: cfg.max_position_embeddings,
            });
        }
        Ok(())
    }

    /// Loads a state that [`save_state`](Self::save_state) wrote, replacing the session's
    /// sequence: afterwards the session continues exactly as the saved one would have.
    ///
    /// Fails with [`Error::StateMismatch`] for a state of another model (a fingerprint over
    /// the tensor layout, hyper-parameters and tokenizer) or another cache type,
    /// [`Error::ContextFull`] when the session's context is smaller than the state needs,
    /// [`Error::Format`] for a truncated or corrupt state (checksums),
    /// [`Error::Unsupported`] for another format version. On failure the session is
    /// unchanged.
    pub fn load_state_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.load_state_from(bytes, Path::new(BYTES_NAME))
    }

    fn load_state_from(&mut self, b: &[u8], src: &Path) -> Result<()> {
        let bad = |msg: String| Error::format(src, msg);
        let h = StateHeader::parse(b, src)?;
        self.check_state_fits(&h)?;
        // Bounded by the session's own cache (checked above), so no overflow.
        let total = h.total_len().unwrap_or(u64::MAX);
        if (b.len() as u64) < total {
            return Err(bad(format!(
                "truncated session state: {} bytes, its header describes {total}",
                b.len()
            )));
        }
        if b.len() as u64 > total {
            return Err(bad(format!(
                "session state with {} bytes after its end ({total} bytes)",
                b.len() as u64 - total
            )));
        }
        let end = b.len() - TRAILER_LEN;
        if xxh64(&b[..end], 0) != rd_u64(b, end) {
            return Err(bad(
                "session state checksum mismatch: the state is corrupt".into()
            ));
        }
        let mut at = HEADER_LEN;
        let tokens: Vec<u32> = (0..h.n_tokens).map(|i| rd_u32(b, at + 4 * i)).collect();
        at += 4 * h.n_tokens;
        if let Some((i, &t)) = tokens
            .iter()
            .enumerate()
            .find(|(_, &t)| t as usize >= h.n_vocab)
        {
            return Err(bad(format!(
                "session state token {i} is {t}, not below the vocabulary size {}",
                h.n_vocab
            )));
        }
        // Everything is checked: from here on the session changes.
        self.commit_profile();
        self.logits.clear();
        if h.has_logits {
            self.logits.extend(
                b[at..at + 4 * h.n_vocab]
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            );
            at += 4 * h.n_vocab;
        }
        let lb = h.layer_bytes();
        for layer in 0..h.n_layers {
            self.kv.load_rows(layer, h.n_tokens, &b[at..at + lb]);
            at += lb;
        }
        debug_assert_eq!(at, end);
        self.pos = h.n_tokens;
        self.tokens = tokens;
        self.n_logit_rows = h.has_logits as usize;
        self.logits_pos0 = h.n_tokens.saturating_sub(1);
        self.held_profile.clear();
        self.mtp_state_loaded();
        Ok(())
    }

    /// [`load_state_bytes`](Self::load_state_bytes) from a reader: reads the header, checks
    /// it against the session, then reads exactly the length it describes (so a hostile
    /// header cannot make it allocate more than the session's own cache) and refuses
    /// anything after it.
    pub fn load_state(&mut self, r: impl Read) -> Result<()> {
        self.load_state_reader(r, Path::new(BYTES_NAME))
    }

    /// [`load_state`](Self::load_state) from the file `path`.
    pub fn load_state_file(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        self.load_state_reader(std::io::BufReader::new(f), path)
    }

    fn load_state_reader(&mut self, mut r: impl Read, src: &Path) -> Result<()> {
        let io = |e: std::io::Error| Error::io(src, e);
        let mut head = [0u8; HEADER_LEN];
        let got = read_full(&mut r, &mut head).map_err(io)?;
        let h = StateHeader::parse(&head[..got], src)?;
        self.check_state_fits(&h)?;
        let total = h.total_len().unwrap_or(u64::MAX) as usize;
        let mut b = vec![0u8; total];
        b[..HEADER_LEN].copy_from_slice(&head);
        let got = HEADER_LEN + read_full(&mut r, &mut b[HEADER_LEN..]).map_err(io)?;
        if got < total {
            return Err(Error::format(
                src,
                format!("truncated session state: {got} bytes, its header describes {total}"),
            ));
        }
        let mut extra = [0u8; 1];
        if read_full(&mut r, &mut extra).map_err(io)? > 0 {
            return Err(Error::format(
                src,
                format!("session state with bytes after its end ({total} bytes)"),
            ));
        }
        self.load_state_from(&b, src)
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Whether the file at `path` starts with a session state's magic (an empty or shorter file
/// does not).
pub fn is_state_file(path: impl AsRef<Path>) -> Result<bool> {
    let path = path.as_ref();
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut m = [0u8; 8];
    let n = read_full(&mut f, &mut m).map_err(|e| Error::io(path, e))?;
    Ok(n == m.len() && &m == MAGIC)
}
