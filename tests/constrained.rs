//! Constrained decoding (src/constrain) on the default model (models/moela-tiny-v3.gguf, a toy
//! that writes nonsense English): a JSON Schema forces JSON that parses and validates, for
//! every seed; GBNF, Lark and regex grammars give only the strings they allow; bad schemas
//! and grammars are clear errors; and the same seeds without the constraint give something
//! else (so the mask really is what makes the output right).

/// Without the `constrain` feature the API is there and says it is unsupported.
#[cfg(not(feature = "constrain"))]
#[test]
fn without_the_feature_constraints_are_unsupported() {
    let p = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/moela-tiny-v3.gguf");
    let m = moela::Model::load(p).unwrap();
    let g = moela::constrain::Grammar::gbnf("root ::= \"a\"");
    let e = moela::constrain::Constraint::new(&m, &g).unwrap_err();
    assert!(matches!(e, moela::Error::Unsupported { .. }), "{e:?}");
    assert!(e.to_string().contains("'constrain' cargo feature"), "{e}");
    const { assert!(!moela::constrain::SUPPORTED) };
}

#[cfg(feature = "constrain")]
mod common;

#[cfg(feature = "constrain")]
mod with_the_feature {
    use super::common;

    use std::path::PathBuf;
    use std::sync::Arc;

    use moela::constrain::{Constraint, Grammar, Syntax};
    use moela::sampler::{Sampler, SamplerParams};
    use moela::speculative::{self, SpecMode, Speculator};
    use moela::{Model, Session, SessionParams};

    fn model() -> Arc<Model> {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/moela-tiny-v3.gguf");
        Arc::new(Model::load(p).unwrap())
    }

    fn sampler(seed: u64, temperature: f32) -> Sampler {
        Sampler::new(SamplerParams {
            seed,
            temperature,
            ..Default::default()
        })
        .unwrap()
    }

    /// Generates up to `n` tokens after `prompt`; returns the text and whether the sampler's
    /// constraint (if any) was complete at the end.
    fn generate(
        model: &Arc<Model>,
        sampler: &mut Sampler,
        prompt: &str,
        n: usize,
    ) -> (String, bool) {
        let tok = model.tokenizer.as_ref().unwrap();
        let ids = tok.encode(prompt, tok.add_bos(), false);
        let mut session = Session::new(model.clone(), &SessionParams::default()).unwrap();
        session.eval(&ids, false).unwrap();
        let mut history = ids.clone();
        let stop: Vec<u32> = tok.eos().into_iter().collect();
        speculative::generate(
            &mut session,
            sampler,
            None,
            &mut history,
            n,
            &stop,
            &mut |_| true,
        )
        .unwrap();
        let text = tok.decode_opts(&history[ids.len()..], true).unwrap();
        (text, sampler.is_finished())
    }

    const SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "age": {"type": "integer", "minimum": 0, "maximum": 150},
    "color": {"type": "string", "enum": ["red", "green", "blue"]},
    "name": {"type": "string", "maxLength": 12}
  },
  "required": ["age", "color", "name"],
  "additionalProperties": false
}"#;

    /// The checks the schema makes, written out by hand.
    fn validates(v: &serde_json::Value) -> Result<(), String> {
        let o = v.as_object().ok_or("not an object")?;
        let mut keys: Vec<&str> = o.keys().map(|k| k.as_str()).collect();
        keys.sort();
        if keys != ["age", "color", "name"] {
            return Err(format!("keys {keys:?}"));
        }
        let age = o["age"].as_i64().ok_or("age is not an integer")?;
        if !(0..=150).contains(&age) {
            return Err(format!("age {age} out of range"));
        }
        let color = o["color"].as_str().ok_or("color is not a string")?;
        if !["red", "green", "blue"].contains(&color) {
            return Err(format!("color {color:?} not in the enum"));
        }
        let name = o["name"].as_str().ok_or("name is not a string")?;
        if name.chars().count() > 12 {
            return Err(format!("name {name:?} longer than 12"));
        }
        Ok(())
    }

    #[test]
    fn json_schema_output_parses_and_validates_for_every_seed() {
        let m = model();
        let prompt = "Once upon a time";
        let mut unconstrained_json = 0;
        // 100 sampled generations at the default temperature, a few hotter ones, and greedy.
        let runs: Vec<(u64, f32)> = (0..100)
            .map(|s| (s, 0.8))
            .chain((0..10).map(|s| (1000 + s, 1.5)))
            .chain([(0, 0.0)])
            .collect();
        for (seed, temp) in runs {
            let mut s = sampler(seed, temp);
            s.set_constraint(Some(
                Constraint::new(&m, &Grammar::json_schema(SCHEMA)).unwrap(),
            ));
            let (text, finished) = generate(&m, &mut s, prompt, 200);
            assert!(
                finished,
                "seed {seed}: not complete after 200 tokens: {text:?}"
            );
            let v: serde_json::Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("seed {seed} temp {temp}: {text:?} is not JSON: {e}"));
            if let Err(e) = validates(&v) {
                panic!("seed {seed} temp {temp}: {text:?} does not validate: {e}");
            }
            // The same seed without the constraint.
            let (plain, _) = generate(&m, &mut sampler(seed, temp), prompt, 40);
            if serde_json::from_str::<serde_json::Value>(&plain).is_ok() {
                unconstrained_json += 1;
            }
            assert_ne!(plain, text, "seed {seed}: the constraint changed nothing");
        }
        assert_eq!(unconstrained_json, 0, "the toy model wrote JSON by itself");
    }

    #[test]
    fn gbnf_gives_only_the_allowed_strings() {
        let m = model();
        let yes_no = Grammar::gbnf("root ::= (\"yes\" | \"no\")\n");
        let mut seen = std::collections::HashSet::new();
        for seed in 0..20 {
            let mut s = sampler(seed, 1.5);
            s.set_constraint(Some(Constraint::new(&m, &yes_no).unwrap()));
            let (text, finished) = generate(&m, &mut s, "Is the sky blue?", 20);
            assert!(
                finished && (text == "yes" || text == "no"),
                "seed {seed}: {text:?}"
            );
            seen.insert(text);
        }
        assert!(!seen.is_empty());
        // Exactly one string allowed: it is the output, greedy or sampled.
        let one = Grammar::gbnf(
        "# one sentence\nroot ::= greeting \" \" name \".\"\ngreeting ::= \"Hello,\"\nname ::= [W] \"orld\"\n",
    );
        for (seed, temp) in [(0, 0.0), (1, 0.8), (2, 1.5)] {
            let mut s = sampler(seed, temp);
            s.set_constraint(Some(Constraint::new(&m, &one).unwrap()));
            let (text, finished) = generate(&m, &mut s, "Once upon a time", 30);
            assert_eq!(text, "Hello, World.");
            assert!(finished);
        }
        // Repetition and classes: a comma-separated list of 1-3 lowercase words.
        let list = Grammar::gbnf("root ::= word (\", \" word){0,2}\nword ::= [a-z]{1,8}\n");
        for seed in 0..10 {
            let mut s = sampler(seed, 1.0);
            s.set_constraint(Some(Constraint::new(&m, &list).unwrap()));
            let (text, _) = generate(&m, &mut s, "Once upon a time", 60);
            let words: Vec<&str> = text.split(", ").collect();
            assert!(
                (1..=3).contains(&words.len())
                    && words
                        .iter()
                        .all(|w| (1..=8).contains(&w.len())
                            && w.chars().all(|c| c.is_ascii_lowercase())),
                "seed {seed}: {text:?}"
            );
        }
    }

    /// A JSON grammar in GBNF as llama.cpp users write them: every output the grammar
    /// finishes parses as JSON.
    #[test]
    fn a_json_gbnf_grammar() {
        let m = model();
        let g = Grammar::gbnf(
            r#"# JSON
root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null") ws
object ::=
  "{" ws (
            string ":" ws value
    ("," ws string ":" ws value)*
  )? "}" ws
array  ::= "[" ws ( value ("," ws value)* )? "]" ws
string ::=
  "\"" (
    [^"\\\x7F\x00-\x1F] |
    "\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4})
  )* "\"" ws
number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws
ws ::= | " " | "\n" [ \t]{0,20}
"#,
        );
        let mut finished = 0;
        for seed in 0..12 {
            let mut s = sampler(seed, 0.8);
            s.set_constraint(Some(Constraint::new(&m, &g).unwrap()));
            let (text, done) = generate(&m, &mut s, "Data:", 120);
            assert!(text.starts_with('{'), "seed {seed}: {text:?}");
            if done {
                finished += 1;
                let v: serde_json::Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("seed {seed}: {text:?} is not JSON: {e}"));
                assert!(v.is_object());
            }
        }
        assert!(finished > 0);
    }

    #[test]
    fn lark_and_regex_grammars() {
        let m = model();
        let lark = Grammar::lark("start: \"A\" | \"B\" | \"C\"\n");
        let re = Grammar::new(Syntax::Regex, r"[0-9]{3}-[0-9]{4}");
        for seed in 0..10 {
            let mut s = sampler(seed, 1.0);
            s.set_constraint(Some(Constraint::new(&m, &lark).unwrap()));
            let (text, _) = generate(&m, &mut s, "Pick a letter:", 10);
            assert!(["A", "B", "C"].contains(&text.as_str()), "{text:?}");
            let mut s = sampler(seed, 1.0);
            s.set_constraint(Some(Constraint::new(&m, &re).unwrap()));
            let (text, finished) = generate(&m, &mut s, "Call", 20);
            let b = text.as_bytes();
            assert!(
                finished
                    && b.len() == 8
                    && b[3] == b'-'
                    && b.iter()
                        .enumerate()
                        .all(|(i, c)| i == 3 || c.is_ascii_digit()),
                "{text:?}"
            );
        }
    }

    #[test]
    fn reset_restarts_the_grammar_and_the_stream() {
        let m = model();
        let mut s = sampler(5, 1.0);
        s.set_constraint(Some(
            Constraint::new(&m, &Grammar::json_schema(SCHEMA)).unwrap(),
        ));
        let (a, _) = generate(&m, &mut s, "Once", 200);
        assert!(s.is_finished());
        // Sampling on after the end gives the end-of-sequence token, not an error.
        let eos = m.tokenizer.as_ref().unwrap().eos().unwrap();
        let logits = vec![0.0f32; m.config.vocab_size];
        assert_eq!(s.sample(&logits, &[]).unwrap(), eos);
        assert_eq!(s.sample(&logits, &[]).unwrap(), eos);
        assert!(s.is_finished());
        s.reset();
        assert!(!s.is_finished());
        let (b, _) = generate(&m, &mut s, "Once", 200);
        assert_eq!(a, b);
    }

    #[test]
    fn bad_schemas_and_grammars_are_clear_errors() {
        let m = model();
        let cases: Vec<(Grammar, &str)> = vec![
            (Grammar::json_schema("{\"type\": "), "json_schema: not JSON"),
            (Grammar::json_schema("[1, 2]"), "a JSON Schema is an object"),
            (
                Grammar::json_schema(r#"{"type": "integer", "minimum": 5, "maximum": 1}"#),
                "json_schema:",
            ),
            (Grammar::json_schema(r#"{"type": "strin"}"#), "json_schema:"),
            (
                Grammar::gbnf("root ::= item\n"),
                "rule 'item' is used but not defined",
            ),
            (
                Grammar::gbnf("root ::= \"a\n"),
                "unterminated string literal",
            ),
            (Grammar::lark("start: foo\n"), "lark:"),
            (Grammar::lark("start: (\"a\"\n"), "lark:"),
            (Grammar::new(Syntax::Regex, "a(b"), "regex:"),
        ];
        for (g, want) in cases {
            let e = Constraint::new(&m, &g).expect_err(want);
            assert!(
                matches!(e, moela::Error::InvalidArg(_)),
                "{g:?}: {e:?} is not InvalidArg"
            );
            let msg = e.to_string();
            assert!(msg.contains(want), "{g:?}: {msg:?} lacks {want:?}");
        }
        let e = Syntax::parse("ebnf").unwrap_err().to_string();
        assert!(e.contains("must be one of json_schema"), "{e}");
    }

    #[test]
    fn speculative_decoding_refuses_a_constraint() {
        let m = model();
        let mut s = sampler(0, 0.0);
        s.set_constraint(Some(
            Constraint::new(&m, &Grammar::gbnf("root ::= \"x\"")).unwrap(),
        ));
        let tok = m.tokenizer.as_ref().unwrap();
        let ids = tok.encode("Once", true, false);
        let mut session = Session::new(m.clone(), &SessionParams::default()).unwrap();
        session.eval(&ids, false).unwrap();
        let mut spec =
            Speculator::new(SpecMode::parse("lookup").unwrap().drafter().unwrap(), 4).unwrap();
        let mut history = ids.clone();
        let e = speculative::generate(
            &mut session,
            &mut s,
            Some(&mut spec),
            &mut history,
            10,
            &[],
            &mut |_| true,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("speculative decoding"), "{e}");
    }

    /// A grammar that needs text the vocabulary cannot spell: on a model whose tokenizer has
    /// only "a", "b" and "ab" (no byte tokens, unlike every real tokenizer), `root ::= "a" "x"`
    /// allows "a" first and then nothing. Sampling there is a clear error naming the cause,
    /// the generation loop ends with it (no hang, no token outside the grammar; through the C
    /// API it is `MOELA_STATUS_INVALID_ARG` with this message), and the constraint does not
    /// count as finished.
    #[test]
    fn a_grammar_with_no_valid_token_ends_with_a_clear_error() {
        let dir = std::env::temp_dir().join(format!("moela-novalid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fx = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v3");
        for f in ["config.json", "model.safetensors"] {
            std::fs::copy(fx.join(f), dir.join(f)).unwrap();
        }
        let tokenizer = serde_json::json!({
            "version": "1.0",
            "added_tokens": [
                {"id": 0, "content": "<s>", "special": true, "normalized": false},
                {"id": 1, "content": "</s>", "special": true, "normalized": false},
            ],
            "normalizer": null,
            "pre_tokenizer": common::v3_pre_tokenizer(),
            "decoder": {"type": "ByteLevel"},
            "model": {"type": "BPE", "vocab": {"a": 2, "b": 3, "ab": 4}, "merges": ["a b"]}
        });
        std::fs::write(
            dir.join("tokenizer.json"),
            serde_json::to_vec(&tokenizer).unwrap(),
        )
        .unwrap();
        std::fs::write(
            dir.join("tokenizer_config.json"),
            r#"{"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": true}"#,
        )
        .unwrap();
        let m = Arc::new(Model::load(&dir).unwrap());

        let g = Grammar::gbnf("root ::= \"a\" \"x\"\n");
        for temp in [0.0, 1.0] {
            let mut s = sampler(7, temp);
            s.set_constraint(Some(Constraint::new(&m, &g).unwrap()));
            let mut session = Session::new(m.clone(), &SessionParams::default()).unwrap();
            session.eval(&[0], false).unwrap();
            let mut history = vec![0u32];
            let e = speculative::generate(
                &mut session,
                &mut s,
                None,
                &mut history,
                50,
                &[1],
                &mut |_| true,
            )
            .unwrap_err();
            assert!(matches!(e, moela::Error::InvalidArg(_)), "{e:?}");
            assert!(
                e.to_string().contains("allows no token of the vocabulary"),
                "{e}"
            );
            // "a" came out (the only way into the grammar), then the loop stopped.
            assert_eq!(history, [0, 2], "temperature {temp}");
            assert!(!s.is_finished());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The CLI: --json-schema gives JSON on stdout; --grammar with --spec is refused; a bad
    /// grammar file names the option.
    #[test]
    fn cli_flags() {
        let dir = std::env::temp_dir().join(format!("moela-constrained-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let schema = dir.join("s.json");
        std::fs::write(&schema, SCHEMA).unwrap();
        let gbnf = dir.join("g.gbnf");
        std::fs::write(&gbnf, "root ::= (\"yes\" | \"no\")\n").unwrap();
        let bad = dir.join("bad.gbnf");
        std::fs::write(&bad, "root ::= undefined-rule\n").unwrap();
        let run = |args: &[&str]| {
            std::process::Command::new(env!("CARGO_BIN_EXE_moela"))
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .arg("run")
                .args(args)
                .output()
                .unwrap()
        };
        let s = schema.to_str().unwrap();
        let o = run(&[
            "-p",
            "Hello",
            "-n",
            "200",
            "--seed",
            "7",
            "--json-schema",
            s,
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let out = String::from_utf8(o.stdout).unwrap();
        let json = out.trim_end().strip_prefix("Hello").unwrap();
        validates(&serde_json::from_str(json).unwrap()).unwrap();
        let g = gbnf.to_str().unwrap();
        let o = run(&["-p", "Hello", "--grammar", g, "--spec", "lookup"]);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("--spec does not work with"), "{err}");
        let o = run(&["-p", "Hello", "--grammar", bad.to_str().unwrap()]);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("--grammar:") && err.contains("'undefined-rule' is used but not defined"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
