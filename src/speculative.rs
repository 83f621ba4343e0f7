//! Speculative decoding: a drafter proposes the next few tokens, the session evaluates the
//! last sampled token and the drafts as one batch ([`Session::verify`], one pass over the
//! weights, every row computed with the decode step's arithmetic), the sampler keeps the
//! longest prefix it agrees with, and the latent cache is rolled back past it
//! ([`Session::truncate`]).
//!
//! The output is the output of plain decoding: greedy keeps a draft only when it is the
//! argmax, which (rows being bit-identical to one-token decoding) gives token-for-token the
//! same text; sampling keeps a draft `d` with probability p(d) and otherwise draws from p with
//! `d` removed ([`Sampler::accept_draft`]), which leaves every token's distribution unchanged.
//! A step samples its first token from the logits the previous step left (the "bonus" token of
//! the literature, drawn one step later), so every emitted token has been evaluated.
//!
//! Drafters implement [`Drafter`]; [`PromptLookup`] matches the last n-gram of the context
//! against earlier text; [`MtpDrafter`] runs the model's own multi-token-prediction module on
//! the session's hidden states ([`Session::mtp_draft`]).

use crate::error::{Error, Result};
use crate::model::Model;
use crate::sampler::Sampler;
use crate::session::Session;

/// Proposes tokens likely to follow a context.
pub trait Drafter: Send {
    /// Appends at most `max` proposed continuations of `context` to `out` (possibly none).
    fn draft(&mut self, context: &[u32], max: usize, out: &mut Vec<u32>);

    /// [`draft`](Self::draft) with the session at hand, which holds every token of `context`
    /// but the last (sampled, not evaluated yet). Drafters that read the model's state
    /// ([`MtpDrafter`]) override this; the default calls `draft`.
    fn draft_in(
        &mut self,
        session: &mut Session,
        context: &[u32],
        max: usize,
        out: &mut Vec<u32>,
    ) -> Result<()> {
        let _ = session;
        self.draft(context, max, out);
        Ok(())
    }

    /// Readies `session`, before its prompt is evaluated, for drafting (the MTP drafter starts
    /// keeping the trunk's hidden states); the default does nothing.
    fn prepare(&mut self, session: &mut Session) -> Result<()> {
        let _ = session;
        Ok(())
    }
}

/// Drafting with the model's multi-token-prediction module (DeepSeek-V3/R1's MTP layer): one
/// greedy draft per run of the module, chained for more (see [`Session::mtp_draft`]).
#[derive(Clone, Debug, Default)]
pub struct MtpDrafter;

impl Drafter for MtpDrafter {
    /// Without a session there is nothing to run the module on: no drafts.
    fn draft(&mut self, _context: &[u32], _max: usize, _out: &mut Vec<u32>) {}

    fn prepare(&mut self, session: &mut Session) -> Result<()> {
        session.enable_mtp()
    }

    fn draft_in(
        &mut self,
        session: &mut Session,
        context: &[u32],
        max: usize,
        out: &mut Vec<u32>,
    ) -> Result<()> {
        match context.last() {
            Some(&next) if context.len() == session.position() + 1 => {
                session.mtp_draft(next, max, out)
            }
            _ => Ok(()),
        }
    }
}

/// Which drafter speculative decoding uses (the CLI's `--spec`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpecMode {
    /// Plain decoding, one token per evaluation.
    #[default]
    Off,
    /// [`PromptLookup`].
    Lookup,
    /// [`MtpDrafter`]: the model's multi-token-prediction module.
    Mtp,
}

impl SpecMode {
    /// `off`, `lookup` or `mtp`.
    pub fn parse(s: &str) -> Result<SpecMode> {
        match s {
            "off" => Ok(SpecMode::Off),
            "lookup" => Ok(SpecMode::Lookup),
            "mtp" => Ok(SpecMode::Mtp),
            _ => Err(Error::InvalidArg(format!(
                "--spec {s}: must be off, lookup or mtp"
            ))),
        }
    }

    /// The drafter of this mode (None for `Off`). [`drafter_for`](Self::drafter_for) also
    /// checks that the model can run it.
    pub fn drafter(self) -> Option<Box<dyn Drafter>> {
        match self {
            SpecMode::Off => None,
            SpecMode::Lookup => Some(Box::new(PromptLookup::default())),
            SpecMode::Mtp => Some(Box::new(MtpDrafter)),
        }
    }

    /// [`drafter`](Self::drafter) for `model`: an error for `Mtp` on a model without a
    /// multi-token-prediction module.
    pub fn drafter_for(self, model: &Model) -> Result<Option<Box<dyn Drafter>>> {
        if self == SpecMode::Mtp && model.weights.mtp.is_none() {
            return Err(crate::session::no_mtp(model));
        }
        Ok(self.drafter())
    }
}

/// Prompt-lookup drafting (no draft model): find the most recent earlier occurrence of the
/// context's last `n` tokens, `n` from `max_ngram` down to `min_ngram`, and propose the tokens
/// that followed it. A match near the end continues into its own proposal, so a repeating
/// pattern yields full-length drafts.
#[derive(Clone, Debug)]
pub struct PromptLookup {
    pub max_ngram: usize,
    pub min_ngram: usize,
}

impl Default for PromptLookup {
    fn default() -> Self {
        PromptLookup {
            max_ngram: 3,
            min_ngram: 1,
        }
    }
}

impl Drafter for PromptLookup {
    fn draft(&mut self, context: &[u32], max: usize, out: &mut Vec<u32>) {
        let len = context.len();
        if max == 0 {
            return;
        }
        for n in (self.min_ngram.max(1)..=self.max_ngram).rev() {
            if len <= n {
                continue;
            }
            let tail = &context[len - n..];
            // The latest start j < len - n whose n tokens equal the tail.
            let Some(j) = (0..len - n).rev().find(|&j| &context[j..j + n] == tail) else {
                continue;
            };
            // Copy what followed, reading on into the proposal itself past the end.
            let base = out.len();
            for i in 0..max {
                let src = j + n + i;
                let tok = if src < len {
                    context[src]
                } else {
                    out[base + src - len]
                };
                out.push(tok);
            }
            return;
        }
    }
}

/// Counters of speculative decoding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SpecStats {
    /// Verification passes (batched evaluations).
    pub passes: u64,
    /// Draft tokens proposed.
    pub drafted: u64,
    /// Draft tokens accepted.
    pub accepted: u64,
    /// Tokens emitted (each pass's first token plus its accepted drafts).
    pub emitted: u64,
}

impl SpecStats {
    /// Accepted ÷ drafted (0 when nothing was drafted).
    pub fn acceptance_rate(&self) -> f64 {
        if self.drafted == 0 {
            0.0
        } else {
            self.accepted as f64 / self.drafted as f64
        }
    }

    /// Emitted tokens per verification pass (0 before the first pass).
    pub fn tokens_per_pass(&self) -> f64 {
        if self.passes == 0 {
            0.0
        } else {
            self.emitted as f64 / self.passes as f64
        }
    }
}

/// Speculative decoding state for one session: the drafter, the draft length, the counters,
/// and the draft rejected by the last step (the next token is drawn without it).
pub struct Speculator {
    drafter: Box<dyn Drafter>,
    max_draft: usize,
    stats: SpecStats,
    /// A rejected draft and the position it was proposed for.
    rejected: Option<(usize, u32)>,
    context: Vec<u32>,
    draft: Vec<u32>,
    batch: Vec<u32>,
}

impl Speculator {
    /// Up to `max_draft` (≥ 1) drafted tokens per verification pass.
    pub fn new(drafter: Box<dyn Drafter>, max_draft: usize) -> Result<Speculator> {
        if max_draft == 0 {
            return Err(Error::InvalidArg("--draft must be at least 1".into()));
        }
        Ok(Speculator {
            drafter,
            max_draft,
            stats: SpecStats::default(),
            rejected: None,
            context: Vec::new(),
            draft: Vec::new(),
            batch: Vec::new(),
        })
    }

    pub fn stats(&self) -> SpecStats {
        self.stats
    }

    /// Readies `session` for this speculator's drafter ([`Drafter::prepare`]): call it before
    /// evaluating the prompt (for MTP: the module then sees the whole context).
    pub fn prepare(&mut self, session: &mut Session) -> Result<()> {
        self.drafter.prepare(session)
    }

    pub fn max_draft(&self) -> usize {
        self.max_draft
    }

    /// One step. `history` is every token the session holds (`session.position() ==
    /// history.len()`) and the session's logits are those after it (after an `eval` of the
    /// prompt, or a previous step). Samples the next token, drafts after it, verifies both in
    /// one pass and appends to `out` the sampled token and the accepted drafts; the session
    /// then holds them all, with the logits after the last. When the context is full the
    /// sampled token is appended unevaluated (and the session stays where it was).
    pub fn step(
        &mut self,
        session: &mut Session,
        sampler: &mut Sampler,
        history: &[u32],
        out: &mut Vec<u32>,
    ) -> Result<()> {
        refuse_constrained(sampler)?;
        let pos = session.position();
        if pos != history.len() {
            return Err(Error::InvalidArg(format!(
                "speculative step: the session holds {pos} tokens, the history {}",
                history.len()
            )));
        }
        let logits = session
            .logits()
            .ok_or_else(|| Error::InvalidArg("speculative step: no logits".into()))?;
        let first = match self.rejected.take() {
            Some((p, d)) if p == pos => sampler.sample_excluding(logits, history, d),
            _ => sampler.sample(logits, history)?,
        };
        out.push(first);
        self.stats.emitted += 1;
        let room = session.n_ctx() - pos;
        if room == 0 {
            return Ok(());
        }
        self.context.clear();
        self.context.extend_from_slice(history);
        self.context.push(first);
        self.draft.clear();
        let max = self.max_draft.min(room - 1);
        self.drafter
            .draft_in(session, &self.context, max, &mut self.draft)?;
        self.draft.truncate(max);
        self.batch.clear();
        self.batch.push(first);
        self.batch.extend_from_slice(&self.draft);
        let v = session.model().config.vocab_size;
        let rows = session.verify(&self.batch)?;
        self.stats.passes += 1;
        self.stats.drafted += self.draft.len() as u64;
        let mut kept = 1;
        for (i, &d) in self.draft.iter().enumerate() {
            let row = &rows[i * v..(i + 1) * v];
            if sampler.accept_draft(row, &self.context, d) {
                self.context.push(d);
                out.push(d);
                kept += 1;
            } else {
                if !sampler.is_greedy() {
                    self.rejected = Some((pos + kept, d));
                }
                break;
            }
        }
        self.stats.accepted += (kept - 1) as u64;
        self.stats.emitted += (kept - 1) as u64;
        session.truncate(pos + kept);
        Ok(())
    }
}

/// Speculative decoding with a constrained sampler is refused: the grammar would have to
/// follow drafts that are then rolled back.
fn refuse_constrained(sampler: &Sampler) -> Result<()> {
    if sampler.is_constrained() {
        return Err(Error::InvalidArg(
            "speculative decoding (--spec) does not work with a JSON schema or grammar \
             constraint: use one or the other"
                .into(),
        ));
    }
    Ok(())
}

/// Samples up to `n` tokens after `history`, which the session holds with its logits (after
/// evaluating a prompt), calling `on_token` with each; stops at a `stop` token (not kept), a
/// full context, or when `on_token` returns false. Appends the kept tokens to `history` and
/// returns how many tokens were sampled (the stop token included). With `spec`, speculative
/// decoding; without, one evaluation per token. Either way the session ends holding
/// `history` (but for a last token sampled when the context was full).
pub fn generate(
    session: &mut Session,
    sampler: &mut Sampler,
    spec: Option<&mut Speculator>,
    history: &mut Vec<u32>,
    n: usize,
    stop: &[u32],
    on_token: &mut dyn FnMut(u32) -> bool,
) -> Result<usize> {
    let mut generated = 0;
    let Some(spec) = spec else {
        while generated < n {
            let logits = session
                .logits()
                .ok_or_else(|| Error::InvalidArg("no logits".into()))?;
            let tok = sampler.sample(logits, history)?;
            generated += 1;
            if stop.contains(&tok) {
                break;
            }
            history.push(tok);
            // A constraint that is complete ends the output (its grammar allows nothing more).
            if !on_token(tok) || sampler.is_finished() || session.position() >= session.n_ctx() {
                break;
            }
            session.eval(&[tok], false)?;
        }
        return Ok(generated);
    };
    refuse_constrained(sampler)?;
    spec.rejected = None;
    let mut buf = Vec::new();
    'outer: while generated < n && session.position() == history.len() {
        buf.clear();
        spec.step(session, sampler, history, &mut buf)?;
        for &tok in &buf {
            generated += 1;
            if stop.contains(&tok) {
                break 'outer;
            }
            history.push(tok);
            if !on_token(tok) || generated >= n {
                break 'outer;
            }
        }
    }
    session.truncate(history.len());
    Ok(generated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(ctx: &[u32], max: usize) -> Vec<u32> {
        let mut out = Vec::new();
        PromptLookup::default().draft(ctx, max, &mut out);
        out
    }

    #[test]
    fn prompt_lookup_drafts() {
        // The latest match of the longest n-gram wins.
        assert_eq!(lookup(&[1, 2, 3, 9, 1, 2, 3, 7, 5, 2, 3], 2), vec![7, 5]);
        // Shorter n-grams when the long ones do not occur.
        assert_eq!(lookup(&[4, 8, 6, 3, 4], 3), vec![8, 6, 3]);
        // A repeating pattern continues past the end of the context.
        assert_eq!(lookup(&[5, 6, 5, 6, 5], 5), vec![6, 5, 6, 5, 6]);
        assert_eq!(lookup(&[7, 7, 7], 4), vec![7, 7, 7, 7]);
        // Nothing to match.
        assert!(lookup(&[1, 2, 3], 4).is_empty());
        assert!(lookup(&[1], 4).is_empty());
        assert!(lookup(&[1, 1], 0).is_empty());
    }

    #[test]
    fn spec_mode_parses() {
        assert_eq!(SpecMode::parse("off").unwrap(), SpecMode::Off);
        assert_eq!(SpecMode::parse("lookup").unwrap(), SpecMode::Lookup);
        assert_eq!(SpecMode::parse("mtp").unwrap(), SpecMode::Mtp);
        assert!(SpecMode::parse("eagle").is_err());
        assert!(SpecMode::Off.drafter().is_none());
    }
}
