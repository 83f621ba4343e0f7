//! Greedy generation with moela's Rust API.
//!
//!     cargo run --release --example generate -- MODEL --tokens 1,2,3 [-n 32]
//!
//! Prints the generated token ids; the C (`examples/c/generate.c`) and Python
//! (`examples/python/generate.py`) examples print the same ids for the same arguments.

use std::sync::Arc;

use moela::sampler::Sampler;
use moela::{Model, Session, SessionParams};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: generate MODEL --tokens 1,2,3 [-n N]";
    let model_path = args.get(1).ok_or(usage)?;
    let mut prompt: Vec<u32> = Vec::new();
    let mut n_predict = 32;
    let mut i = 2;
    while i < args.len() {
        match (args[i].as_str(), args.get(i + 1)) {
            ("--tokens", Some(v)) => {
                prompt = v.split(',').map(str::parse).collect::<Result<_, _>>()?;
            }
            ("-n", Some(v)) => n_predict = v.parse()?,
            _ => return Err(usage.into()),
        }
        i += 2;
    }
    if prompt.is_empty() {
        return Err(usage.into());
    }

    let model = Arc::new(Model::load(model_path)?);
    let eos = model.config.eos_token_id;
    let mut session = Session::new(model, &SessionParams::default())?;
    let mut sampler = Sampler::greedy();
    let mut history = prompt.clone();
    let mut logits = session.eval(&prompt, false)?.to_vec();
    let mut out = Vec::new();
    for _ in 0..n_predict {
        let token = sampler.sample(&logits, &history)?;
        out.push(token.to_string());
        history.push(token);
        if Some(token) == eos {
            break;
        }
        logits = session.eval(&[token], false)?.to_vec();
    }
    println!("{}", out.join(" "));
    Ok(())
}
