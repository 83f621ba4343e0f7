//! Streaming detokenization that never splits a UTF-8 character.

use super::Tokenizer;
use crate::error::{Error, Result};

/// Turns a stream of token ids into text pieces.
///
/// Bytes are held back while they could still be the start of a character; invalid byte
/// sequences become U+FFFD exactly where `String::from_utf8_lossy` (and HF's decoder) would put
/// them, so the concatenation of every piece plus [`StreamDecoder::flush`] equals
/// `tokenizer.decode(all_ids)`, however the ids are split into calls.
///
/// It holds no reference to the tokenizer, so it can live beside it in a session.
#[derive(Clone, Debug, Default)]
pub struct StreamDecoder {
    pending: Vec<u8>,
    skip_special: bool,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Leave special (control) tokens such as `<｜end▁of▁sentence｜>` out of the text.
    pub fn skip_special(mut self, skip: bool) -> Self {
        self.skip_special = skip;
        self
    }

    /// Feeds one id; returns the text that is complete so far (possibly empty).
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<String> {
        let bytes = tokenizer.token_to_bytes(id).ok_or(Error::TokenOutOfRange {
            token: id,
            n_vocab: tokenizer.n_vocab(),
        })?;
        if self.skip_special && tokenizer.is_special(id) {
            return Ok(String::new());
        }
        Ok(self.push_bytes(bytes))
    }

    /// Feeds raw bytes; returns the text that is complete so far (possibly empty).
    pub fn push_bytes(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut start = 0;
        while start < self.pending.len() {
            match std::str::from_utf8(&self.pending[start..]) {
                Ok(s) => {
                    out.push_str(s);
                    start = self.pending.len();
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // The prefix was just validated.
                    out.push_str(
                        std::str::from_utf8(&self.pending[start..start + valid])
                            .unwrap_or_default(),
                    );
                    start += valid;
                    match e.error_len() {
                        Some(n) => {
                            out.push('\u{FFFD}');
                            start += n;
                        }
                        None => break, // an incomplete character: wait for more bytes
                    }
                }
            }
        }
        self.pending.drain(..start);
        out
    }

    /// Ends the stream: an incomplete character left over becomes U+FFFD.
    pub fn flush(&mut self) -> String {
        if self.pending.is_empty() {
            return String::new();
        }
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }

    /// Number of bytes held back.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    pub fn reset(&mut self) {
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lossy_split(bytes: &[u8], cuts: &[usize]) -> String {
        let mut d = StreamDecoder::new();
        let mut out = String::new();
        let mut prev = 0;
        for &c in cuts.iter().chain([bytes.len()].iter()) {
            out += &d.push_bytes(&bytes[prev..c]);
            prev = c;
        }
        out + &d.flush()
    }

    #[test]
    fn equals_lossy_for_every_split() {
        let cases: Vec<Vec<u8>> = vec![
            "héllo 世界 🙂".as_bytes().to_vec(),
            vec![0xe4, 0xb8],                   // truncated
            vec![0xff, b'a', 0xe4, 0xb8, b'b'], // invalid + broken
            vec![0xf0, 0x9f, 0x99],             // truncated emoji
            vec![0xed, 0xa0, 0x80, b'x'],       // surrogate encoding
            vec![0xc0, 0xaf, 0xe0, 0x80, 0xaf],
            vec![0xf4, 0x90, 0x80, 0x80, 0xe2, 0x82],
        ];
        for b in &cases {
            let want = String::from_utf8_lossy(b).into_owned();
            for i in 0..=b.len() {
                for j in i..=b.len() {
                    assert_eq!(lossy_split(b, &[i, j]), want, "{b:?} cut at {i},{j}");
                }
            }
        }
    }

    #[test]
    fn holds_back_partial() {
        let mut d = StreamDecoder::new();
        assert_eq!(d.push_bytes(&[0xe4]), "");
        assert_eq!(d.pending(), 1);
        assert_eq!(d.push_bytes(&[0xb8, 0x96]), "世");
        assert_eq!(d.flush(), "");
    }
}
