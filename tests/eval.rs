//! `moela ppl` / `moela kld` on the default model (models/moela-tiny-v3.gguf, vocab 8192), and
//! the library's perplexity checked against NLLs computed here from the session's logits.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use moela::eval::{perplexity_of, WindowSpec};
use moela::{Model, Session, SessionParams};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn default_model() -> PathBuf {
    root().join("models/moela-tiny-v3.gguf")
}

const TEXT: &str = "In the beginning God created the heaven and the earth. And the earth was \
without form, and void; and darkness was upon the face of the deep. And the Spirit of God moved \
upon the face of the waters. And God said, Let there be light: and there was light. And God saw \
the light, that it was good: and God divided the light from the darkness. And God called the \
light Day, and the darkness he called Night. And the evening and the morning were the first day.\n\
A fortune cookie says: the hacker ethic is the belief that information-sharing is a powerful \
positive good, and that it is an ethical duty of hackers to share their expertise.\n";

fn text_file(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("moela-eval-{tag}-{}.txt", std::process::id()));
    std::fs::write(&p, TEXT).unwrap();
    p
}

fn moela(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_moela"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The number after `key` in `text`.
fn number_after(text: &str, key: &str) -> f64 {
    let rest = &text[text
        .find(key)
        .unwrap_or_else(|| panic!("{key:?} in {text}"))
        + key.len()..];
    let num: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == '-' || *c == 'e')
        .collect();
    num.parse()
        .unwrap_or_else(|_| panic!("number after {key:?}: {rest}"))
}

/// NLL recomputed here, in f64 from the session's logits, with the window rule of
/// WindowSpec (ctx 32, non-overlapping, second half, BOS first): the library must agree.
#[test]
fn library_perplexity_matches_direct_computation() {
    let model = Arc::new(Model::load(default_model()).unwrap());
    let tok = model.tokenizer.as_ref().unwrap();
    let ids = tok.encode(TEXT, false, false);
    let bos = if tok.add_bos() { tok.bos() } else { None };
    let spec = WindowSpec::new(32, None, false).unwrap();
    assert!(ids.len() >= 64, "{} tokens", ids.len());
    let m = perplexity_of(&model, &ids, bos, &spec, &mut |_, _, _| {}).unwrap();
    let vocab = model.config.vocab_size;
    let (mut sum, mut n) = (0.0f64, 0usize);
    for w in 0..ids.len() / 32 {
        let mut win = ids[w * 32..(w + 1) * 32].to_vec();
        if let Some(b) = bos {
            win[0] = b;
        }
        let mut s = Session::new(model.clone(), &SessionParams::default()).unwrap();
        let logits = s.eval(&win, true).unwrap().to_vec();
        for j in 16..31 {
            let row = &logits[j * vocab..(j + 1) * vocab];
            let max = row.iter().cloned().fold(f32::MIN, f32::max) as f64;
            let z: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
            let target = ids[w * 32 + j + 1] as usize;
            sum += max + z.ln() - row[target] as f64;
            n += 1;
        }
    }
    assert_eq!(m.n, n);
    assert!(
        (m.mean() - sum / n as f64).abs() < 1e-9,
        "{} vs {}",
        m.mean(),
        sum / n as f64
    );
    // A trained model on English text: far better than uniform over 8192 tokens.
    let ppl = m.mean().exp();
    assert!(ppl > 1.0 && ppl < 2000.0, "ppl {ppl}");
}

#[test]
fn ppl_and_kld_command_lines() {
    let f = text_file("cli");
    let m = default_model();
    let (ok, out, err) = moela(&[
        "-t",
        "2",
        "ppl",
        "-m",
        m.to_str().unwrap(),
        "-f",
        f.to_str().unwrap(),
        "--ctx",
        "32",
    ]);
    assert!(ok, "{err}");
    assert!(err.contains("[1/"), "progress lines: {err}");
    let ppl = number_after(&out, "PPL =");
    let se = number_after(&out, "+/-");
    println!("{out}");
    assert!(ppl > 1.0 && ppl < 8192.0 && se > 0.0 && se < ppl, "{out}");

    // The model against itself: KLD 0, full top-1 agreement, the same ppl.
    let (ok, out, err) = moela(&[
        "-t",
        "2",
        "kld",
        "--base",
        m.to_str().unwrap(),
        "-m",
        m.to_str().unwrap(),
        "-f",
        f.to_str().unwrap(),
        "--ctx",
        "32",
    ]);
    assert!(ok, "{err}");
    println!("{out}");
    assert_eq!(number_after(&out, "mean KLD         :"), 0.0);
    assert_eq!(number_after(&out, "top-1 agreement  :"), 100.0);
    assert_eq!(number_after(&out, "PPL base         :"), ppl);
    assert_eq!(number_after(&out, "PPL model        :"), ppl);

    // A window longer than the text is a clear error.
    let (ok, _, err) = moela(&[
        "ppl",
        "-m",
        m.to_str().unwrap(),
        "-f",
        f.to_str().unwrap(),
        "--ctx",
        "4096",
    ]);
    assert!(!ok && err.contains("fewer than one window"), "{err}");
    std::fs::remove_file(&f).ok();
}
