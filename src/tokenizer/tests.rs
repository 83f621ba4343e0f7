//! Unit tests on a small synthetic tokenizer (the real DeepSeek files are exercised by
//! tests/tokenizer_parity.rs).

use std::path::PathBuf;

use serde_json::{json, Value};

use super::bpe::BYTE_TO_CHAR;
use super::pretok::{V3_CJK, V3_DIGITS, V3_MAIN};
use super::*;

const BOS: &str = "<｜begin▁of▁sentence｜>";

fn v3_pre() -> Value {
    json!({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": V3_DIGITS}, "behavior": "Isolated", "invert": false},
        {"type": "Split", "pattern": {"Regex": V3_CJK}, "behavior": "Isolated", "invert": false},
        {"type": "Split", "pattern": {"Regex": V3_MAIN}, "behavior": "Isolated", "invert": false},
        {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}
    ]})
}

/// 256 byte tokens (ids 0..255), five merges (ids 256..260), a hole (261..299), two added
/// tokens: 300 special BOS, 301 non-special `<think>`.
fn tokenizer_json(pair_merges: bool) -> Value {
    let mut vocab = serde_json::Map::new();
    for (b, c) in BYTE_TO_CHAR.iter().enumerate() {
        vocab.insert(c.to_string(), json!(b));
    }
    let merges = [
        ("Ġ", "t"),
        ("h", "e"),
        ("Ġt", "he"),
        ("i", "n"),
        ("in", "g"),
    ];
    for (i, (a, b)) in merges.iter().enumerate() {
        vocab.insert(format!("{a}{b}"), json!(256 + i));
    }
    let merges: Vec<Value> = merges
        .iter()
        .map(|(a, b)| {
            if pair_merges {
                json!([a, b])
            } else {
                json!(format!("{a} {b}"))
            }
        })
        .collect();
    json!({
        "version": "1.0",
        "added_tokens": [
            {"id": 300, "content": BOS, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": 301, "content": "<think>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": true, "special": false}
        ],
        "normalizer": {"type": "Sequence", "normalizers": []},
        "pre_tokenizer": v3_pre(),
        "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "fuse_unk": false, "byte_fallback": false,
                  "vocab": vocab, "merges": merges}
    })
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let d =
            std::env::temp_dir().join(format!("moela-tokenizer-test-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
    fn write(&self, name: &str, v: &Value) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, serde_json::to_vec(v).unwrap()).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config() -> Value {
    json!({
        "add_bos_token": true,
        "bos_token": {"__type": "AddedToken", "content": BOS, "lstrip": false},
        "eos_token": "<think>",
        "chat_template": "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}"
    })
}

fn load(tag: &str, tj: &Value, cfg: Option<&Value>) -> Result<Tokenizer> {
    let d = TempDir::new(tag);
    let t = d.write("tokenizer.json", tj);
    let c = cfg.map(|c| d.write("tokenizer_config.json", c));
    Tokenizer::from_hf_files(&t, c.as_deref())
}

#[test]
fn encode_decode_synthetic() {
    let t = load("basic", &tokenizer_json(false), Some(&config())).unwrap();
    assert_eq!(t.n_vocab(), 302);
    assert_eq!(
        (t.bos(), t.eos(), t.add_bos()),
        (Some(300), Some(301), true)
    );
    assert_eq!(t.encode(" the", false, true), [258]);
    assert_eq!(t.encode("sing the", false, true), [b's' as u32, 260, 258]);
    assert_eq!(t.encode("the", true, true), [300, b't' as u32, 257]);
    // added tokens only with parse_special
    assert_eq!(t.encode("<think>x", false, true), [301, b'x' as u32]);
    // as plain text: pieces "<think" and ">", bytes merged only by "i n"
    assert_eq!(t.encode("<think>", false, false).len(), 6);
    assert_eq!(
        t.decode(&t.encode("<think>", false, false)).unwrap(),
        "<think>"
    );
    assert_eq!(t.encode(&format!("{BOS}{BOS}"), false, true), [300, 300]);
    // round trip, lossy decoding, holes, range
    let s = "héllo 世界 🙂 the thing";
    assert_eq!(t.decode(&t.encode(s, false, true)).unwrap(), s);
    assert_eq!(t.decode(&[0xe4]).unwrap(), "\u{fffd}");
    assert_eq!(t.decode(&[0xe4, 0xb8, 0x96]).unwrap(), "世");
    assert_eq!(t.token_to_bytes(280), Some(&b""[..]));
    assert_eq!(t.token_to_bytes(302), None);
    assert!(matches!(
        t.decode(&[302]),
        Err(Error::TokenOutOfRange {
            token: 302,
            n_vocab: 302
        })
    ));
    assert_eq!(t.decode_opts(&[300, b'a' as u32], true).unwrap(), "a");
    assert_eq!(t.decode(&[300, b'a' as u32]).unwrap(), format!("{BOS}a"));
    assert!(t.is_special(300) && !t.is_special(301) && !t.is_special(258));
    assert_eq!(t.token_type(301), Some(TokenType::UserDefined));
    assert_eq!(t.token_type(280), Some(TokenType::Unused));
    assert_eq!(t.token_id("Ġthe"), Some(258));
    assert_eq!(t.token_id("<think>"), Some(301));
    assert_eq!(
        t.pre_tokenize("a  b 123456"),
        ["a", " ", " b", " ", "123", "456"]
    );
    assert_eq!(
        t.apply_chat_template(&[ChatMessage::user("hi")], false)
            .unwrap(),
        format!("{BOS}[user]hi")
    );
}

#[test]
fn unknown_chat_roles_are_refused_not_dropped() {
    let t = load("roles", &tokenizer_json(false), Some(&config())).unwrap();
    let msgs = |role: &str| {
        vec![
            ChatMessage::user("hi"),
            ChatMessage::new(role, "abracadabra"),
        ]
    };
    for role in ["wizard", "", "User", "function"] {
        let e = t
            .apply_chat_template(&msgs(role), true)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("chat message 1 has role {role:?}")) && e.contains("\"tool\""),
            "{e}"
        );
        assert!(t.encode_chat(&msgs(role), true).is_err());
    }
    for role in crate::tokenizer::CHAT_ROLES {
        let r = t.apply_chat_template(&msgs(role), false).unwrap();
        assert!(r.contains("abracadabra"), "{role}: {r}");
    }
    // The built-in DeepSeek-V2 format has no tool turns: "tool" would vanish, so it is refused.
    let mut no_template = config();
    no_template.as_object_mut().unwrap().remove("chat_template");
    let t = load("roles-builtin", &tokenizer_json(false), Some(&no_template)).unwrap();
    if t.default_chat_format() == crate::tokenizer::ChatFormat::DeepSeekV2 {
        let e = t
            .apply_chat_template(&msgs("tool"), true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("DeepSeek-V2 chat format"), "{e}");
    } else {
        assert!(t
            .apply_chat_template(&msgs("tool"), true)
            .unwrap()
            .contains("abracadabra"));
    }
}

#[test]
fn merges_pair_form_and_configs() {
    let a = load("pairs", &tokenizer_json(true), None).unwrap();
    assert_eq!(a.encode("sing the", false, true), [b's' as u32, 260, 258]);
    assert_eq!(
        (a.bos(), a.eos(), a.add_bos(), a.chat_template()),
        (None, None, false, None)
    );
    // a list of named templates: "default" is taken
    let mut c = config();
    c["chat_template"] =
        json!([{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]);
    let b = load("named", &tokenizer_json(true), Some(&c)).unwrap();
    assert_eq!(b.chat_template(), Some("D"));
    c["chat_template"] = json!([{"name": "tool_use", "template": "T"}]);
    assert!(matches!(
        load("named2", &tokenizer_json(true), Some(&c)),
        Err(Error::Config { .. })
    ));
    // chat_template.jinja beside the config
    let d = TempDir::new("jinja");
    let tj = d.write("tokenizer.json", &tokenizer_json(false));
    let mut c = config();
    c.as_object_mut().unwrap().remove("chat_template");
    let cj = d.write("tokenizer_config.json", &c);
    std::fs::write(d.0.join("chat_template.jinja"), "J{{ bos_token }}").unwrap();
    let t = Tokenizer::from_hf_files(&tj, Some(&cj)).unwrap();
    assert_eq!(t.chat_template(), Some("J{{ bos_token }}"));
    // directory / file convenience: the config beside it is found
    let t = Tokenizer::from_hf_path(&d.0).unwrap();
    assert_eq!(
        (t.bos(), t.chat_template()),
        (Some(300), Some("J{{ bos_token }}"))
    );
    let t = Tokenizer::from_hf_path(&tj).unwrap();
    assert_eq!(t.bos(), Some(300));
    assert!(matches!(
        Tokenizer::from_hf_path(&d.0.join("nope")),
        Err(Error::Io { .. })
    ));
    // unknown bos token
    let mut c = config();
    c["bos_token"] = json!("<nope>");
    let e = load("badbos", &tokenizer_json(false), Some(&c)).unwrap_err();
    assert!(
        matches!(e, Error::Config { ref key, .. } if key == "bos_token"),
        "{e}"
    );
}

#[test]
fn unsupported_files_are_errors() {
    let check = |tag: &str, f: &dyn Fn(&mut Value), needle: &str| {
        let mut j = tokenizer_json(false);
        f(&mut j);
        let e = load(tag, &j, None).unwrap_err();
        assert!(matches!(e, Error::Format { .. }), "{tag}: {e}");
        assert!(
            e.to_string().contains(needle),
            "{tag}: '{e}' lacks '{needle}'"
        );
    };
    check(
        "regex",
        &|j| j["pre_tokenizer"]["pretokenizers"][2]["pattern"]["Regex"] = json!("\\s+"),
        "unrecognised pre_tokenizer",
    );
    check(
        "behavior",
        &|j| j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = json!("Removed"),
        "unrecognised pre_tokenizer",
    );
    check(
        "prefix",
        &|j| j["pre_tokenizer"]["pretokenizers"][3]["add_prefix_space"] = json!(true),
        "unrecognised pre_tokenizer",
    );
    check(
        "bytelevel",
        &|j| j["pre_tokenizer"] = json!({"type": "ByteLevel", "add_prefix_space": false}),
        "unrecognised pre_tokenizer",
    );
    check(
        "nopre",
        &|j| j["pre_tokenizer"] = Value::Null,
        "pre_tokenizer",
    );
    check(
        "model",
        &|j| j["model"]["type"] = json!("Unigram"),
        "Unigram",
    );
    check(
        "normalizer",
        &|j| j["normalizer"] = json!({"type": "NFC"}),
        "normalizer",
    );
    check(
        "merge",
        &|j| j["model"]["merges"][0] = json!("Ġ q"),
        "merge 0",
    );
    check(
        "merge3",
        &|j| j["model"]["merges"][1] = json!("a b c"),
        "merge 1",
    );
    check(
        "json",
        &|j| *j = json!({"model": 3}),
        "not a tokenizer.json",
    );
    let e = Tokenizer::from_hf_files(std::path::Path::new("/nonexistent/tokenizer.json"), None)
        .unwrap_err();
    assert!(matches!(e, Error::Io { .. }));
}

#[test]
fn parts_round_trip_and_errors() {
    let t = load("parts", &tokenizer_json(false), Some(&config())).unwrap();
    let p = t.to_parts();
    assert_eq!(p.tokens.len(), 302);
    assert_eq!(p.tokens[280], "[PAD280]");
    let ty = p.token_types.clone().unwrap();
    assert_eq!((ty[0], ty[258], ty[280], ty[300], ty[301]), (1, 1, 5, 3, 4));
    assert_eq!(p.merges, ["Ġ t", "h e", "Ġt he", "i n", "in g"]);
    assert_eq!(p.pre, "deepseek-v3");
    assert_eq!((p.bos, p.eos, p.add_bos), (Some(300), Some(301), true));
    let back = Tokenizer::from_parts(p.clone()).unwrap();
    assert_eq!(back.to_parts(), p);
    for s in [
        "sing the <think> thing",
        "x<｜begin▁of▁sentence｜>y",
        "[PAD280]",
    ] {
        assert_eq!(back.encode(s, false, true), t.encode(s, false, true));
        assert_eq!(back.encode(s, false, false), t.encode(s, false, false));
    }
    assert_eq!(back.token_id("[PAD280]"), Some(280));
    assert_eq!(
        back.apply_chat_template(&[ChatMessage::user("q")], true)
            .unwrap(),
        t.apply_chat_template(&[ChatMessage::user("q")], true)
            .unwrap()
    );

    let bad = |f: &dyn Fn(&mut TokenizerParts), needle: &str| {
        let mut q = p.clone();
        f(&mut q);
        let e = Tokenizer::from_parts(q).unwrap_err();
        assert!(matches!(e, Error::InvalidArg(_)), "{e}");
        assert!(e.to_string().contains(needle), "'{e}' lacks '{needle}'");
    };
    bad(&|q| q.pre = "gpt2".into(), "gpt2");
    bad(
        &|q| q.token_types.as_mut().unwrap().pop().map(|_| ()).unwrap(),
        "token types",
    );
    bad(
        &|q| q.token_types.as_mut().unwrap()[5] = 9,
        "unknown type 9",
    );
    bad(&|q| q.bos = Some(5000), "out of range");
    bad(&|q| q.merges.push("Ġ zz".into()), "not in the vocabulary");
    bad(&|q| q.tokens.clear(), "");
    // no types: everything normal, nothing is an added token
    let mut q = p.clone();
    q.token_types = None;
    let plain = Tokenizer::from_parts(q).unwrap();
    assert_ne!(plain.encode("<think>", false, true), [301]);
    // pre names
    assert_eq!(
        PreTokenizerKind::from_gguf_name("deepseek-llm"),
        Some(PreTokenizerKind::DeepSeekLlm)
    );
    assert_eq!(
        PreTokenizerKind::from_gguf_name("deepseek-v3"),
        Some(PreTokenizerKind::DeepSeekV3)
    );
    assert_eq!(PreTokenizerKind::from_gguf_name("deepseek-coder"), None);
}

#[test]
fn tokenizer_is_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<Tokenizer>();
    check::<StreamDecoder>();
}
