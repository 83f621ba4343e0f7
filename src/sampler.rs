//! Choosing the next token from logits: greedy, or temperature with top-k, top-p and min-p
//! filters, from a seeded ChaCha stream (the same seed gives the same tokens on every machine).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Clone, Debug)]
pub struct SamplerParams {
    /// 0 = greedy (argmax).
    pub temperature: f32,
    /// Keep the k most likely tokens; 0 = all.
    pub top_k: usize,
    /// Keep the smallest set whose probability reaches top_p; 1 = all.
    pub top_p: f32,
    /// Drop tokens less likely than min_p × the most likely one; 0 = off.
    pub min_p: f32,
    /// > 1 penalises tokens already in the history (CTRL-style); 1 = off.
    pub repeat_penalty: f32,
    pub seed: u64,
}

impl Default for SamplerParams {
    fn default() -> Self {
        SamplerParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            seed: 0,
        }
    }
}

impl SamplerParams {
    pub fn greedy() -> Self {
        SamplerParams {
            temperature: 0.0,
            ..Default::default()
        }
    }
}

pub struct Sampler {
    params: SamplerParams,
    rng: ChaCha8Rng,
    candidates: Vec<(u32, f32)>,
}

/// Index of the largest logit (the first one on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

impl Sampler {
    pub fn new(params: SamplerParams) -> Sampler {
        let rng = ChaCha8Rng::seed_from_u64(params.seed);
        Sampler {
            params,
            rng,
            candidates: Vec::new(),
        }
    }

    /// Picks a token. `history` feeds the repetition penalty.
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let p = &self.params;
        let c = &mut self.candidates;
        c.clear();
        c.extend(logits.iter().enumerate().map(|(i, &l)| (i as u32, l)));
        if p.repeat_penalty != 1.0 {
            for &t in history {
                if let Some(x) = c.get_mut(t as usize) {
                    x.1 = if x.1 > 0.0 {
                        x.1 / p.repeat_penalty
                    } else {
                        x.1 * p.repeat_penalty
                    };
                }
            }
        }
        if p.temperature <= 0.0 || c.len() == 1 {
            let l: Vec<f32> = c.iter().map(|x| x.1).collect();
            return argmax(&l);
        }
        // Descending by logit; NaNs sort last.
        c.sort_unstable_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Less));
        if p.top_k > 0 && p.top_k < c.len() {
            c.truncate(p.top_k);
        }
        // Softmax with temperature.
        let max = c[0].1;
        let mut sum = 0.0;
        for x in c.iter_mut() {
            x.1 = ((x.1 - max) / p.temperature).exp();
            sum += x.1;
        }
        for x in c.iter_mut() {
            x.1 /= sum;
        }
        if p.min_p > 0.0 {
            let floor = c[0].1 * p.min_p;
            let keep = c.iter().take_while(|x| x.1 >= floor).count().max(1);
            c.truncate(keep);
        }
        if p.top_p < 1.0 {
            let mut acc = 0.0;
            let mut keep = c.len();
            for (i, x) in c.iter().enumerate() {
                acc += x.1;
                if acc >= p.top_p {
                    keep = i + 1;
                    break;
                }
            }
            c.truncate(keep.max(1));
        }
        let total: f32 = c.iter().map(|x| x.1).sum();
        let mut r = self.rng.random::<f32>() * total;
        for x in c.iter() {
            r -= x.1;
            if r <= 0.0 {
                return x.0;
            }
        }
        c[c.len() - 1].0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_is_argmax() {
        let mut s = Sampler::new(SamplerParams::greedy());
        assert_eq!(s.sample(&[0.1, 3.0, -1.0, 2.9], &[]), 1);
    }

    #[test]
    fn top_k_one_is_greedy_and_seed_reproducible() {
        let logits: Vec<f32> = (0..100).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        let mut s = Sampler::new(SamplerParams {
            top_k: 1,
            temperature: 1.0,
            ..Default::default()
        });
        assert_eq!(s.sample(&logits, &[]), argmax(&logits));
        let draw = |seed| {
            let mut s = Sampler::new(SamplerParams {
                seed,
                temperature: 1.5,
                top_k: 0,
                top_p: 1.0,
                min_p: 0.0,
                ..Default::default()
            });
            (0..20).map(|_| s.sample(&logits, &[])).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn top_p_and_min_p_restrict_support() {
        // One dominant token: top_p 0.5 and min_p 0.5 both leave only it.
        let logits = [10.0, 0.0, 0.0, 0.0];
        for params in [
            SamplerParams {
                top_p: 0.5,
                top_k: 0,
                min_p: 0.0,
                temperature: 1.0,
                ..Default::default()
            },
            SamplerParams {
                top_p: 1.0,
                top_k: 0,
                min_p: 0.5,
                temperature: 1.0,
                ..Default::default()
            },
        ] {
            let mut s = Sampler::new(params);
            for _ in 0..50 {
                assert_eq!(s.sample(&logits, &[]), 0);
            }
        }
    }

    #[test]
    fn repeat_penalty_moves_choice() {
        let mut s = Sampler::new(SamplerParams {
            repeat_penalty: 2.0,
            ..SamplerParams::greedy()
        });
        assert_eq!(s.sample(&[2.0, 1.5], &[0]), 1);
    }
}
