//! What constrained decoding costs per token: the time the sampler spends with a JSON Schema
//! or grammar (llguidance's mask, applying it, advancing the parser) next to the decode step's
//! time, on any model with a tokenizer (docs/CONSTRAINED.md has the numbers for a
//! V2-Lite-sized 102,400-token vocabulary).
//!
//!   cargo run --release --example constrain_cost -- MODEL [TOKENS]

use std::sync::Arc;
use std::time::Instant;

use moela::constrain::{Constraint, Grammar};
use moela::sampler::{Sampler, SamplerParams};
use moela::{Model, Session, SessionParams};

/// Generates up to `n` tokens (EOS ignored); returns (tokens, seconds in eval, seconds in the
/// sampler, the tokens).
fn run(
    model: &Arc<Model>,
    sampler: &mut Sampler,
    prompt: &[u32],
    n: usize,
) -> moela::Result<(usize, f64, f64, Vec<u32>)> {
    let mut s = Session::new(model.clone(), &SessionParams::default())?;
    let mut history = prompt.to_vec();
    s.eval(prompt, false)?;
    let (mut t_eval, mut t_sample, mut done) = (0.0, 0.0, 0);
    while done < n {
        let t = Instant::now();
        let tok = sampler.sample(s.logits().expect("logits"), &history)?;
        t_sample += t.elapsed().as_secs_f64();
        done += 1;
        history.push(tok);
        if sampler.is_finished() {
            break;
        }
        let t = Instant::now();
        s.eval(&[tok], false)?;
        t_eval += t.elapsed().as_secs_f64();
    }
    Ok((done, t_eval, t_sample, history[prompt.len()..].to_vec()))
}

fn main() -> moela::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).expect("usage: constrain_cost MODEL [TOKENS]");
    let n: usize = args.get(2).map_or(64, |s| s.parse().expect("TOKENS"));
    let model = Arc::new(Model::load(path)?);
    let tok = model.tokenizer.as_ref().expect("a model with a tokenizer");
    println!(
        "{path}: vocabulary {} (logits {})",
        tok.n_vocab(),
        model.config.vocab_size
    );
    let prompt = tok.encode("Write a JSON object about a cat:", tok.add_bos(), false);
    let grammars = [
        (
            "json: free-text string field",
            Grammar::json_schema(
                r#"{"type":"object","properties":{"story":{"type":"string"}},"required":["story"]}"#,
            ),
        ),
        (
            "json: integers, enums, array",
            Grammar::json_schema(
                r#"{"type":"object","properties":{"age":{"type":"integer"},"color":{"enum":["red","green","blue"]},"tags":{"type":"array","items":{"type":"string","maxLength":8}}},"required":["age","color","tags"]}"#,
            ),
        ),
        (
            "gbnf: lowercase words",
            Grammar::gbnf("root ::= word (\" \" word)*\nword ::= [a-z]+\n"),
        ),
    ];
    let t = Instant::now();
    Constraint::new(&model, &grammars[0].1)?;
    println!(
        "first constraint (token trie + llguidance factory, once per model): {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    // Warm up (pages in the weights).
    run(&model, &mut Sampler::greedy(), &prompt, 8)?;
    for (mode, temperature) in [("greedy", 0.0), ("sampled (defaults)", 0.8)] {
        let params = SamplerParams {
            seed: 1,
            temperature,
            ..Default::default()
        };
        println!("-- {mode}");
        let (k, e, s, _) = run(&model, &mut Sampler::new(params.clone())?, &prompt, n)?;
        println!(
            "unconstrained                   {k:4} tokens, decode step {:7.3} ms, sampler {:6.3} ms/token",
            e / k as f64 * 1e3,
            s / k as f64 * 1e3
        );
        for (name, g) in &grammars {
            let t = Instant::now();
            let c = Constraint::new(&model, g)?;
            let compile = t.elapsed().as_secs_f64();
            let mut smp = Sampler::new(params.clone())?;
            smp.set_constraint(Some(c));
            let (k, e, s, toks) = run(&model, &mut smp, &prompt, n)?;
            // The constraint alone on the same tokens: llguidance's mask as a bool per token,
            // then advancing the parser.
            let mut c = Constraint::new(&model, g)?;
            let mut allowed = Vec::new();
            let (mut t_mask, mut t_commit) = (0.0, 0.0);
            for &tok in &toks {
                let t = Instant::now();
                c.allowed(&mut allowed)?;
                t_mask += t.elapsed().as_secs_f64();
                let t = Instant::now();
                c.commit(tok)?;
                t_commit += t.elapsed().as_secs_f64();
            }
            let per = |x: f64| x / toks.len().max(1) as f64 * 1e3;
            println!(
                "{name:31} {k:4} tokens, decode step {:7.3} ms, sampler {:6.3} ms/token \
                 (mask {:.3} ms, commit {:.3} ms; compile {:.2} ms)",
                e / k as f64 * 1e3,
                s / k as f64 * 1e3,
                per(t_mask),
                per(t_commit),
                compile * 1e3
            );
        }
    }
    Ok(())
}
