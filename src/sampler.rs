//! Choosing the next token from logits: greedy, or temperature with top-k, top-p and min-p
//! filters, from a seeded ChaCha stream (the same seed gives the same tokens on every machine).
//!
//! The accepted ranges are checked in one place, [`SamplerParams::check`], which
//! [`Sampler::new`] calls; the CLI, the C API (`moela_sampler_new`) and the
//! Python package all build their samplers through it, so they accept and refuse the same
//! values with the same words.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::constrain::Constraint;
use crate::error::{Error, Result};

/// The settings of a [`Sampler`]. The defaults are llama.cpp's (temperature 0.8, top-k 40,
/// top-p 0.95, min-p 0.05, no repetition penalty), for the CLI, the C API and Python alike.
#[derive(Clone, Debug)]
pub struct SamplerParams {
    /// Finite and >= 0; 0 = greedy (argmax). A negative temperature is an error (llama.cpp
    /// reads it as greedy; here it is refused so that a typo does not silently change mode).
    pub temperature: f32,
    /// Keep the k most likely tokens; 0 = all.
    pub top_k: usize,
    /// Keep the smallest set whose probability reaches top_p, in (0, 1]; 1 = all.
    pub top_p: f32,
    /// Drop tokens less likely than min_p × the most likely one, in [0, 1]; 0 = off.
    pub min_p: f32,
    /// Finite and > 0: above 1 penalises tokens already in the history (CTRL-style); 1 = off.
    pub repeat_penalty: f32,
    pub seed: u64,
}

/// A sampler setting outside its accepted range: which field, its value, and the range in
/// words. Displayed as "temperature is NaN: must be finite and >= 0 (0 = greedy)".
#[derive(Clone, Debug, PartialEq)]
pub struct BadSamplerParam {
    /// The field's name in [`SamplerParams`] (and in `moela_sampling_params`, and Python's
    /// `Sampler` arguments): "temperature", "top_k", "top_p", "min_p" or "repeat_penalty".
    pub field: &'static str,
    /// The value as given.
    pub value: String,
    /// What is accepted.
    pub range: &'static str,
}

impl std::fmt::Display for BadSamplerParam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is {}: {}", self.field, self.value, self.range)
    }
}

/// The accepted range of each setting, as the error messages state it (private: cbindgen
/// would otherwise put them in the C header).
const TEMPERATURE_RANGE: &str = "must be finite and >= 0 (0 = greedy)";
const TOP_K_RANGE: &str = "must be >= 0 (0 = all tokens)";
const TOP_P_RANGE: &str = "must be in (0, 1] (1 = off)";
const MIN_P_RANGE: &str = "must be in [0, 1] (0 = off)";
const REPEAT_PENALTY_RANGE: &str = "must be finite and > 0 (1 = off)";

impl SamplerParams {
    /// Checks every setting against its accepted range (the one place that does).
    pub fn check(&self) -> std::result::Result<(), BadSamplerParam> {
        let bad = |field, v: f32, range| BadSamplerParam {
            field,
            value: format!("{v}"),
            range,
        };
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(bad("temperature", self.temperature, TEMPERATURE_RANGE));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(bad("top_p", self.top_p, TOP_P_RANGE));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return Err(bad("min_p", self.min_p, MIN_P_RANGE));
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            return Err(bad(
                "repeat_penalty",
                self.repeat_penalty,
                REPEAT_PENALTY_RANGE,
            ));
        }
        Ok(())
    }

    /// A top-k given as a signed number (the CLI's `--top-k`): negative values are refused
    /// with the accepted range.
    pub fn top_k_from_signed(k: i64) -> std::result::Result<usize, BadSamplerParam> {
        usize::try_from(k).map_err(|_| BadSamplerParam {
            field: "top_k",
            value: k.to_string(),
            range: TOP_K_RANGE,
        })
    }
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
    /// Constrained decoding: the grammar's mask is applied before every choice, and the
    /// chosen token advances it.
    constraint: Option<Constraint>,
    /// The constraint's mask for the current step.
    allowed: Vec<bool>,
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
    /// A sampler with `params`, checked first ([`SamplerParams::check`]): a value outside its
    /// range is `Error::InvalidArg` naming the field, the value and the accepted range.
    pub fn new(params: SamplerParams) -> Result<Sampler> {
        params
            .check()
            .map_err(|e| Error::InvalidArg(format!("sampler: {e}")))?;
        let rng = ChaCha8Rng::seed_from_u64(params.seed);
        Ok(Sampler {
            params,
            rng,
            candidates: Vec::new(),
            constraint: None,
            allowed: Vec::new(),
        })
    }

    /// A greedy sampler (argmax; never fails).
    pub fn greedy() -> Sampler {
        let params = SamplerParams::greedy();
        Sampler {
            rng: ChaCha8Rng::seed_from_u64(params.seed),
            params,
            candidates: Vec::new(),
            constraint: None,
            allowed: Vec::new(),
        }
    }

    /// The settings this sampler was made with.
    pub fn params(&self) -> &SamplerParams {
        &self.params
    }

    /// Picks a token. `history` feeds the repetition penalty.
    ///
    /// With a [constraint](Self::set_constraint), only tokens the grammar allows are
    /// candidates (greedy: the most likely allowed token; sampled: the filters and the draw
    /// over the allowed tokens), and the chosen token advances the constraint. That can fail
    /// (`Error::InvalidArg`): when the grammar allows no token of the vocabulary, or the logits
    /// are not the model's. Without a constraint it never fails.
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> Result<u32> {
        let Some(c) = self.constraint.as_mut() else {
            return Ok(self.sample_unconstrained(logits, history));
        };
        if logits.len() != c.n_vocab() {
            return Err(Error::InvalidArg(format!(
                "sampler: {} logits, but the constraint was made for a vocabulary of {}",
                logits.len(),
                c.n_vocab()
            )));
        }
        c.allowed(&mut self.allowed)?;
        let tok = match self.greedy_choice(logits, history) {
            Some(t) => t,
            None => {
                let total = self.distribution();
                let r = self.rng.random::<f32>() * total;
                Self::pick(&self.candidates, r)
            }
        };
        if let Some(c) = self.constraint.as_mut() {
            c.commit(tok)?;
        }
        Ok(tok)
    }

    fn sample_unconstrained(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        if let Some(t) = self.greedy_choice(logits, history) {
            return t;
        }
        let total = self.distribution();
        let r = self.rng.random::<f32>() * total;
        Self::pick(&self.candidates, r)
    }

    /// Constrains every following choice to `constraint` (a JSON Schema or grammar compiled
    /// for the model: [`Constraint::new`]); `None` removes it. Speculative decoding does not
    /// take a constrained sampler.
    pub fn set_constraint(&mut self, constraint: Option<Constraint>) {
        self.constraint = constraint;
    }

    /// The constraint, when there is one.
    pub fn constraint(&self) -> Option<&Constraint> {
        self.constraint.as_ref()
    }

    /// The constraint, mutably (to [reset](Constraint::reset) it between answers).
    pub fn constraint_mut(&mut self) -> Option<&mut Constraint> {
        self.constraint.as_mut()
    }

    /// Whether a constraint is set.
    pub fn is_constrained(&self) -> bool {
        self.constraint.is_some()
    }

    /// Whether the constraint is complete (its grammar matched and allows nothing more than
    /// the end of the sequence): generation loops stop here. False without a constraint.
    pub fn is_finished(&self) -> bool {
        self.constraint.as_ref().is_some_and(|c| c.is_finished())
    }

    /// Restarts the random stream from the seed and the constraint from the start of its
    /// grammar.
    pub fn reset(&mut self) {
        self.rng = ChaCha8Rng::seed_from_u64(self.params.seed);
        if let Some(c) = self.constraint.as_mut() {
            c.reset();
        }
    }

    /// Whether this sampler picks the argmax (temperature 0).
    pub fn is_greedy(&self) -> bool {
        self.params.temperature <= 0.0
    }

    /// The speculative-sampling test of a draft token proposed by a deterministic drafter
    /// (its draft distribution a point mass on `draft`): accepts with probability
    /// p(`draft`) under the distribution [`sample`](Self::sample) draws from. On rejection the
    /// token must come from that distribution with `draft` removed and renormalised:
    /// [`sample_excluding`](Self::sample_excluding) with the same logits and history. Together
    /// they draw from exactly the distribution of `sample` (Leviathan et al. 2023, Chen et al.
    /// 2023). Greedy: accepts when `draft` is the argmax (no random number drawn).
    pub fn accept_draft(&mut self, logits: &[f32], history: &[u32], draft: u32) -> bool {
        debug_assert!(
            self.constraint.is_none(),
            "speculative decoding is unconstrained"
        );
        if let Some(t) = self.greedy_choice(logits, history) {
            return t == draft;
        }
        let total = self.distribution();
        let p = self
            .candidates
            .iter()
            .find(|x| x.0 == draft)
            .map_or(0.0, |x| x.1 / total);
        self.rng.random::<f32>() < p
    }

    /// [`sample`](Self::sample) from the distribution with `excluded` removed and
    /// renormalised (after [`accept_draft`](Self::accept_draft) rejected `excluded`). Greedy:
    /// the argmax, as `sample`. When nothing else is left, `sample`.
    pub fn sample_excluding(&mut self, logits: &[f32], history: &[u32], excluded: u32) -> u32 {
        if let Some(t) = self.greedy_choice(logits, history) {
            return t;
        }
        let mut total = self.distribution();
        if let Some(i) = self.candidates.iter().position(|x| x.0 == excluded) {
            if self.candidates.len() == 1 {
                return excluded;
            }
            total -= self.candidates[i].1;
            self.candidates.remove(i);
        }
        let r = self.rng.random::<f32>() * total;
        Self::pick(&self.candidates, r)
    }

    /// The candidate at which the running sum passes `r`.
    fn pick(c: &[(u32, f32)], mut r: f32) -> u32 {
        for x in c.iter() {
            r -= x.1;
            if r <= 0.0 {
                return x.0;
            }
        }
        c[c.len() - 1].0
    }

    /// Fills the candidates with the penalised logits; returns the argmax when greedy.
    fn greedy_choice(&mut self, logits: &[f32], history: &[u32]) -> Option<u32> {
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
        if self.constraint.is_some() {
            let allowed = &self.allowed;
            c.retain(|x| allowed.get(x.0 as usize).copied().unwrap_or(false));
            if p.temperature <= 0.0 || c.len() == 1 {
                // The first of the largest, as `argmax`.
                let mut best = 0;
                for (i, x) in c.iter().enumerate() {
                    if x.1 > c[best].1 {
                        best = i;
                    }
                }
                return Some(c[best].0);
            }
            return None;
        }
        if p.temperature <= 0.0 || c.len() == 1 {
            let l: Vec<f32> = c.iter().map(|x| x.1).collect();
            return Some(argmax(&l));
        }
        None
    }

    /// Turns the penalised logits in the candidates into the filtered distribution (most
    /// likely first, unnormalised after the filters); returns its total mass.
    fn distribution(&mut self) -> f32 {
        let p = &self.params;
        let c = &mut self.candidates;
        // Descending by logit, NaNs last, ties by token id: a total order, so choosing the top
        // k first (linear time) and sorting only those gives the order a full sort would,
        // without sorting the whole vocabulary (~3 ms of a 102,400-token one per token).
        let order = |a: &(u32, f32), b: &(u32, f32)| {
            b.1.partial_cmp(&a.1)
                .unwrap_or_else(|| a.1.is_nan().cmp(&b.1.is_nan()))
                .then(a.0.cmp(&b.0))
        };
        if p.top_k > 0 && p.top_k < c.len() {
            c.select_nth_unstable_by(p.top_k - 1, order);
            c.truncate(p.top_k);
        }
        c.sort_unstable_by(order);
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
        c.iter().map(|x| x.1).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_selection_keeps_the_full_sort_order() {
        // Few distinct values (many ties) and some NaNs: the candidates after selecting the
        // top k and sorting them are the first k of a stable full sort, in the same order.
        let mut x = 12345u64;
        for trial in 0..40 {
            let n = 500 + trial;
            let logits: Vec<f32> = (0..n)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    match x >> 58 {
                        0 => f32::NAN,
                        v => (v % 7) as f32 * 0.5 - 1.0,
                    }
                })
                .collect();
            let mut want: Vec<u32> = (0..n as u32).collect();
            want.sort_by(|&a, &b| {
                let (la, lb) = (logits[a as usize], logits[b as usize]);
                lb.partial_cmp(&la)
                    .unwrap_or_else(|| la.is_nan().cmp(&lb.is_nan()))
            });
            for k in [1, 3, 40, n - 1, n, 0] {
                let mut s = Sampler::new(SamplerParams {
                    top_k: k,
                    temperature: 1.0,
                    top_p: 1.0,
                    min_p: 0.0,
                    ..Default::default()
                })
                .unwrap();
                assert_eq!(s.greedy_choice(&logits, &[]), None);
                s.distribution();
                let got: Vec<u32> = s.candidates.iter().map(|c| c.0).collect();
                let keep = if k == 0 { n } else { k };
                assert_eq!(got, want[..keep], "trial {trial} top_k {k}");
            }
        }
    }

    #[test]
    fn greedy_is_argmax() {
        let mut s = Sampler::greedy();
        assert_eq!(s.sample(&[0.1, 3.0, -1.0, 2.9], &[]).unwrap(), 1);
    }

    #[test]
    fn top_k_one_is_greedy_and_seed_reproducible() {
        let logits: Vec<f32> = (0..100).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        let mut s = Sampler::new(SamplerParams {
            top_k: 1,
            temperature: 1.0,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.sample(&logits, &[]).unwrap(), argmax(&logits));
        let draw = |seed| {
            let mut s = Sampler::new(SamplerParams {
                seed,
                temperature: 1.5,
                top_k: 0,
                top_p: 1.0,
                min_p: 0.0,
                ..Default::default()
            })
            .unwrap();
            (0..20)
                .map(|_| s.sample(&logits, &[]).unwrap())
                .collect::<Vec<_>>()
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
            let mut s = Sampler::new(params).unwrap();
            for _ in 0..50 {
                assert_eq!(s.sample(&logits, &[]).unwrap(), 0);
            }
        }
    }

    #[test]
    fn out_of_range_settings_are_refused_with_the_range() {
        let d = SamplerParams::default;
        let cases: Vec<(SamplerParams, &str)> = vec![
            (
                SamplerParams {
                    temperature: f32::NAN,
                    ..d()
                },
                "temperature is NaN: must be finite and >= 0 (0 = greedy)",
            ),
            (
                SamplerParams {
                    temperature: f32::INFINITY,
                    ..d()
                },
                "temperature is inf: must be finite",
            ),
            (
                SamplerParams {
                    temperature: -1.0,
                    ..d()
                },
                "temperature is -1: must be finite and >= 0",
            ),
            (
                SamplerParams { top_p: 1.5, ..d() },
                "top_p is 1.5: must be in (0, 1]",
            ),
            (
                SamplerParams { top_p: 0.0, ..d() },
                "top_p is 0: must be in (0, 1]",
            ),
            (
                SamplerParams { top_p: -0.5, ..d() },
                "top_p is -0.5: must be in (0, 1]",
            ),
            (
                SamplerParams {
                    top_p: f32::NAN,
                    ..d()
                },
                "top_p is NaN",
            ),
            (
                SamplerParams { min_p: 1.5, ..d() },
                "min_p is 1.5: must be in [0, 1]",
            ),
            (
                SamplerParams { min_p: -0.1, ..d() },
                "min_p is -0.1: must be in [0, 1]",
            ),
            (
                SamplerParams {
                    min_p: f32::NAN,
                    ..d()
                },
                "min_p is NaN",
            ),
            (
                SamplerParams {
                    repeat_penalty: 0.0,
                    ..d()
                },
                "repeat_penalty is 0: must be finite and > 0",
            ),
            (
                SamplerParams {
                    repeat_penalty: -1.0,
                    ..d()
                },
                "repeat_penalty is -1: must be finite and > 0",
            ),
            (
                SamplerParams {
                    repeat_penalty: f32::INFINITY,
                    ..d()
                },
                "repeat_penalty is inf",
            ),
        ];
        for (p, want) in cases {
            let e = Sampler::new(p).err().expect(want).to_string();
            assert!(e.contains(want), "{e} lacks '{want}'");
        }
        assert_eq!(
            SamplerParams::top_k_from_signed(-1)
                .unwrap_err()
                .to_string(),
            "top_k is -1: must be >= 0 (0 = all tokens)"
        );
        assert_eq!(SamplerParams::top_k_from_signed(7), Ok(7));
        // The edges are accepted.
        for p in [
            SamplerParams {
                temperature: 0.0,
                top_p: 1.0,
                min_p: 0.0,
                ..d()
            },
            SamplerParams {
                top_p: 1e-6,
                min_p: 1.0,
                repeat_penalty: 1e-3,
                ..d()
            },
        ] {
            Sampler::new(p).unwrap();
        }
    }

    #[test]
    fn repeat_penalty_moves_choice() {
        let mut s = Sampler::new(SamplerParams {
            repeat_penalty: 2.0,
            ..SamplerParams::greedy()
        })
        .unwrap();
        assert_eq!(s.sample(&[2.0, 1.5], &[0]).unwrap(), 1);
    }

    /// The speculative rule (accept the draft with probability p(draft), else sample with the
    /// draft removed) draws from exactly `sample`'s distribution: 200k draws per case, every
    /// token's frequency within 5 standard errors (sqrt(p(1-p)/N)) of its probability, for a
    /// likely, an unlikely and a filtered-out (top-k) draft.
    #[test]
    fn speculative_rule_keeps_the_distribution() {
        let logits = [1.0f32, 2.5, 0.3, 2.0, -1.0, 1.7];
        for (top_k, draft) in [(0usize, 1u32), (0, 4), (3, 2)] {
            let params = SamplerParams {
                temperature: 1.0,
                top_k,
                top_p: 1.0,
                min_p: 0.0,
                repeat_penalty: 1.0,
                seed: 7,
            };
            // The target: softmax over the top-k logits.
            let mut order: Vec<usize> = (0..logits.len()).collect();
            order.sort_by(|&a, &b| logits[b].partial_cmp(&logits[a]).unwrap());
            let keep = if top_k == 0 { logits.len() } else { top_k };
            let z: f64 = order[..keep]
                .iter()
                .map(|&i| (logits[i] as f64).exp())
                .sum();
            let mut want = [0.0f64; 6];
            for &i in &order[..keep] {
                want[i] = (logits[i] as f64).exp() / z;
            }
            let mut s = Sampler::new(params).unwrap();
            let n = 200_000;
            let mut counts = [0usize; 6];
            for _ in 0..n {
                let t = if s.accept_draft(&logits, &[], draft) {
                    draft
                } else {
                    s.sample_excluding(&logits, &[], draft)
                };
                counts[t as usize] += 1;
            }
            for (i, &c) in counts.iter().enumerate() {
                let (f, p) = (c as f64 / n as f64, want[i]);
                let se = (p * (1.0 - p) / n as f64).sqrt();
                assert!(
                    (f - p).abs() <= 5.0 * se + 1e-9,
                    "top_k {top_k} draft {draft} token {i}: {f} vs {p}"
                );
            }
        }
    }
}
