//! Saved session states (`Session::save_state` / `load_state`): a session saved and loaded
//! into a new one continues with bit-identical logits and tokens to an uninterrupted one, on
//! the fixtures and the default model, f32 and f16 caches, lengths across the 256-position
//! attention chunks; states of another model, cache type or a too long sequence are refused
//! with their own errors; every truncation and bit flip of a state is an error.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use moela::attention::kv_cache::KvType;
use moela::{Error, Model, Session, SessionParams};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn default_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/moela-tiny-v3.gguf")
}

fn session(model: &Arc<Model>, kv_type: KvType, n_ctx: usize) -> Session {
    Session::new(
        model.clone(),
        &SessionParams {
            n_ctx,
            kv_type,
            ..Default::default()
        },
    )
    .unwrap()
}

fn argmax(l: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in l.iter().enumerate() {
        if x > l[best] {
            best = i;
        }
    }
    best as u32
}

fn bits(l: &[f32]) -> Vec<u32> {
    l.iter().map(|x| x.to_bits()).collect()
}

fn prompt(model: &Model, n: usize) -> Vec<u32> {
    let v = model.config.vocab_size as u32;
    (0..n as u32).map(|i| (i * 7919 + 3) % v).collect()
}

/// Greedy decoding of `n` tokens from the session's logits: (tokens, logits bits of each step).
fn decode(s: &mut Session, n: usize) -> (Vec<u32>, Vec<Vec<u32>>) {
    let mut toks = Vec::new();
    let mut rows = Vec::new();
    for _ in 0..n {
        let t = argmax(s.logits().unwrap());
        toks.push(t);
        rows.push(bits(s.eval(&[t], false).unwrap()));
    }
    (toks, rows)
}

/// Uninterrupted vs saved after the prompt (and again after two decode steps), loaded into
/// a fresh session (bytes, a file, a reader), continued.
fn round_trip(model: &Arc<Model>, kv_type: KvType, len: usize, tag: &str) {
    const N_CTX: usize = 320;
    const STEPS: usize = 6;
    let p = prompt(model, len);
    let mut a = session(model, kv_type, N_CTX);
    a.eval(&p, false).unwrap();
    let a_logits = bits(a.logits().unwrap());
    let (a_toks, a_rows) = decode(&mut a, STEPS);

    let mut b = session(model, kv_type, N_CTX);
    b.eval(&p, false).unwrap();
    let state = b.state_bytes();
    assert_eq!(state.len(), b.state_size());
    let per_token = model.config.n_layers
        * model.config.kv_cache_row()
        * if kv_type == KvType::F32 { 4 } else { 2 };
    assert_eq!(
        state.len(),
        64 + 4 * len + 4 * model.config.vocab_size + per_token * len,
        "{tag}"
    );
    drop(b);

    // From bytes, into a session that already holds another sequence.
    let mut c = session(model, kv_type, N_CTX);
    c.eval(&prompt(model, 5)[..3], false).unwrap();
    c.load_state_bytes(&state).unwrap();
    assert_eq!(c.position(), len, "{tag}");
    assert_eq!(c.tokens(), &p[..], "{tag}");
    assert_eq!(bits(c.logits().unwrap()), a_logits, "{tag}: loaded logits");
    let (c_toks, c_rows) = decode(&mut c, STEPS);
    assert_eq!(c_toks, a_toks, "{tag}: tokens after loading");
    assert!(c_rows == a_rows, "{tag}: logits after loading differ");

    // Saved after two decode steps, through a file; the loader's n_ctx only needs to fit.
    let mut d = session(model, kv_type, N_CTX);
    d.eval(&p, false).unwrap();
    decode(&mut d, 2);
    let file = std::env::temp_dir().join(format!("moela-state-{tag}-{}.bin", std::process::id()));
    d.save_state_file(&file).unwrap();
    let mut e = session(model, kv_type, len + STEPS);
    e.load_state_file(&file).unwrap();
    let (e_toks, e_rows) = decode(&mut e, STEPS - 2);
    assert_eq!(e_toks, a_toks[2..], "{tag}: tokens after a file");
    assert!(e_rows == a_rows[2..], "{tag}: logits after a file differ");

    // Through a reader; a state saved after truncating (no logits) continues by evaluating.
    let mut f = session(model, kv_type, N_CTX);
    let bytes = std::fs::read(&file).unwrap();
    f.load_state(&bytes[..]).unwrap();
    f.truncate(len);
    assert!(f.logits().is_none());
    let cut = f.state_bytes();
    let mut g = session(model, kv_type, N_CTX);
    g.load_state_bytes(&cut).unwrap();
    assert!(g.logits().is_none());
    assert_eq!(g.position(), len);
    g.eval(&[a_toks[0]], false).unwrap();
    let (g_toks, _) = decode(&mut g, STEPS - 1);
    assert_eq!(g_toks, a_toks[1..], "{tag}: after a state without logits");
    let _ = std::fs::remove_file(&file);
}

fn round_trips(path: &Path, tag: &str) {
    let model = Arc::new(Model::load(path).unwrap());
    for kv_type in [KvType::F32, KvType::F16] {
        for len in [1, 37, 300] {
            round_trip(&model, kv_type, len, &format!("{tag}-{kv_type:?}-{len}"));
        }
    }
}

#[test]
fn save_load_continue_is_bit_identical_on_fixtures() {
    for name in ["v2_lite", "v3"] {
        round_trips(&fixture(name), name);
    }
}

#[test]
fn save_load_continue_is_bit_identical_on_the_default_model() {
    round_trips(&default_model(), "default");
}

#[test]
fn wrong_model_cache_type_or_context_is_refused() {
    let v3 = Arc::new(Model::load(fixture("v3")).unwrap());
    let v3_again = Arc::new(Model::load(fixture("v3")).unwrap());
    let v2 = Arc::new(Model::load(fixture("v2_lite")).unwrap());
    assert_eq!(v3.fingerprint(), v3_again.fingerprint());
    assert_ne!(v3.fingerprint(), v2.fingerprint());
    let mut s = session(&v3, KvType::F32, 64);
    s.eval(&prompt(&v3, 20), false).unwrap();
    let state = s.state_bytes();

    // The same file loaded again: fine.
    session(&v3_again, KvType::F32, 20)
        .load_state_bytes(&state)
        .unwrap();

    let mut other = session(&v2, KvType::F32, 64);
    other.eval(&[1, 2], false).unwrap();
    let e = other.load_state_bytes(&state).unwrap_err();
    assert!(matches!(e, Error::StateMismatch(_)), "{e:?}");
    assert!(e.to_string().contains("another model"), "{e}");
    assert_eq!(other.position(), 2, "a failed load changes nothing");

    let e = session(&v3, KvType::F16, 64)
        .load_state_bytes(&state)
        .unwrap_err();
    assert!(matches!(e, Error::StateMismatch(_)), "{e:?}");
    assert!(e.to_string().contains("f32 KV cache"), "{e}");

    let e = session(&v3, KvType::F32, 19)
        .load_state_bytes(&state)
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::ContextFull {
                needed: 20,
                n_ctx: 19,
                ..
            }
        ),
        "{e:?}"
    );
    // The reader refuses before reading the body.
    let e = session(&v3, KvType::F32, 19)
        .load_state(&state[..64])
        .unwrap_err();
    assert!(matches!(e, Error::ContextFull { .. }), "{e:?}");
}

#[test]
fn every_truncation_and_bit_flip_is_an_error() {
    let model = Arc::new(Model::load(fixture("v3")).unwrap());
    let mut s = session(&model, KvType::F16, 16);
    s.eval(&prompt(&model, 3), false).unwrap();
    let state = s.state_bytes();
    let mut t = session(&model, KvType::F16, 16);
    t.eval(&[5], false).unwrap();
    let before = bits(t.logits().unwrap());
    for cut in 0..state.len() {
        for r in [
            t.load_state_bytes(&state[..cut]),
            t.load_state(&state[..cut]),
        ] {
            let e = r.expect_err("a truncated state loaded");
            assert!(matches!(e, Error::Format { .. }), "cut {cut}: {e:?}");
        }
    }
    let mut long = state.clone();
    long.push(0);
    assert!(matches!(
        t.load_state_bytes(&long),
        Err(Error::Format { .. })
    ));
    assert!(matches!(t.load_state(&long[..]), Err(Error::Format { .. })));
    for i in 0..state.len() {
        for bit in [0, 5] {
            let mut b = state.clone();
            b[i] ^= 1 << bit;
            let e = t.load_state_bytes(&b).expect_err("a bit flip loaded");
            assert!(matches!(e, Error::Format { .. }), "byte {i}: {e:?}");
        }
    }
    assert_eq!(t.position(), 1);
    assert_eq!(
        bits(t.logits().unwrap()),
        before,
        "failed loads changed nothing"
    );
    t.load_state_bytes(&state).unwrap();
    assert_eq!(t.position(), 3);
}

/// Sizes and save/load times of a 2,000-token state on the default model (docs/C_API.md
/// "Saved sessions"): `cargo test --release --test session_state -- --ignored --nocapture`.
#[test]
#[ignore]
fn state_size_and_time_on_the_default_model() {
    let model = Arc::new(Model::load(default_model()).unwrap());
    let cfg = &model.config;
    const N: usize = 2000;
    println!(
        "default model: {} layers x {} cache values, vocab {}, trained context {}",
        cfg.n_layers,
        cfg.kv_cache_row(),
        cfg.vocab_size,
        cfg.max_position_embeddings
    );
    println!(
        "V2-Lite: 27 layers x 576 values: {} bytes/token f32, {} f16",
        27 * 576 * 4,
        27 * 576 * 2
    );
    let dir = std::env::temp_dir();
    for kv_type in [KvType::F32, KvType::F16] {
        let mut s = session(&model, kv_type, N);
        for chunk in prompt(&model, N).chunks(500) {
            s.eval(chunk, false).unwrap();
        }
        let file = dir.join(format!("moela-state-timing-{}.bin", std::process::id()));
        let reps = 10;
        let t = std::time::Instant::now();
        for _ in 0..reps {
            s.save_state_file(&file).unwrap();
        }
        let save = t.elapsed().as_secs_f64() / reps as f64;
        let mut l = session(&model, kv_type, N);
        let t = std::time::Instant::now();
        for _ in 0..reps {
            l.load_state_file(&file).unwrap();
        }
        let load = t.elapsed().as_secs_f64() / reps as f64;
        let t = std::time::Instant::now();
        let bytes = s.state_bytes();
        let to_bytes = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        l.load_state_bytes(&bytes).unwrap();
        let from_bytes = t.elapsed().as_secs_f64();
        let len = bytes.len();
        println!(
            "{kv_type:?}: {N} tokens -> {len} bytes ({:.1} bytes/token, {} per token in the cache); file save {:.2} ms, load {:.2} ms; bytes save {:.2} ms, load {:.2} ms",
            len as f64 / N as f64,
            cfg.n_layers * cfg.kv_cache_row() * if kv_type == KvType::F32 { 4 } else { 2 },
            save * 1e3,
            load * 1e3,
            to_bytes * 1e3,
            from_bytes * 1e3
        );
        let _ = std::fs::remove_file(&file);
    }
}
