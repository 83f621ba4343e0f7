#!/usr/bin/env python3
"""Train the default model's byte-level BPE tokenizer (HF `tokenizers`) on the corpus.

The pre-tokenizer, decoder, normalizer and post-processor are copied verbatim from DeepSeek-V3's
tokenizer.json, so the vocabulary differs from DeepSeek's but the text -> pieces rules are identical.
Special tokens follow DeepSeek-V3's spelling. Usage:
  python3 tools/train/train_tokenizer.py --corpus models/build/corpus/docs.jsonl --out DIR [--ref deepseek-v3/tokenizer.json]
"""
import argparse, json, os

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

# Copied verbatim from DeepSeek-V3's tokenizer.json (normalizer, pre_tokenizer, post_processor, decoder).
DEEPSEEK_V3_PIPELINE = json.loads(r'''
{
 "normalizer": {
  "type": "Sequence",
  "normalizers": []
 },
 "pre_tokenizer": {
  "type": "Sequence",
  "pretokenizers": [
   {
    "type": "Split",
    "pattern": {
     "Regex": "\\p{N}{1,3}"
    },
    "behavior": "Isolated",
    "invert": false
   },
   {
    "type": "Split",
    "pattern": {
     "Regex": "[一-龥぀-ゟ゠-ヿ]+"
    },
    "behavior": "Isolated",
    "invert": false
   },
   {
    "type": "Split",
    "pattern": {
     "Regex": "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"
    },
    "behavior": "Isolated",
    "invert": false
   },
   {
    "type": "ByteLevel",
    "add_prefix_space": false,
    "trim_offsets": true,
    "use_regex": false
   }
  ]
 },
 "post_processor": {
  "type": "ByteLevel",
  "add_prefix_space": true,
  "trim_offsets": false,
  "use_regex": true
 },
 "decoder": {
  "type": "ByteLevel",
  "add_prefix_space": true,
  "trim_offsets": true,
  "use_regex": true
 }
}
''')

SPECIAL = [
    "<｜begin▁of▁sentence｜>",  # 0 bos
    "<｜end▁of▁sentence｜>",  # 1 eos
    "<｜▁pad▁｜>",  # 2 pad
    "<｜User｜>",
    "<｜Assistant｜>",
    "<think>",
    "</think>",
]
BOS, EOS, PAD = SPECIAL[0], SPECIAL[1], SPECIAL[2]

# A simplified DeepSeek-V3 chat template: bos, the system prompt(s), then <｜User｜>content and
# <｜Assistant｜>content<｜end▁of▁sentence｜> turns (text before </think> in an assistant turn is dropped).
CHAT_TEMPLATE = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
    "{% set ns = namespace(system_prompt='', is_first_sp=true) %}"
    "{%- for message in messages %}{%- if message['role'] == 'system' %}"
    "{%- if ns.is_first_sp %}{% set ns.system_prompt = ns.system_prompt + message['content'] %}"
    "{% set ns.is_first_sp = false %}{%- else %}"
    "{% set ns.system_prompt = ns.system_prompt + '\\n\\n' + message['content'] %}{%- endif %}"
    "{%- endif %}{%- endfor %}"
    "{{ bos_token }}{{ ns.system_prompt }}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'user' %}{{ '<｜User｜>' + message['content'] }}{%- endif %}"
    "{%- if message['role'] == 'assistant' %}{% set content = message['content'] %}"
    "{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}"
    "{{ '<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>' }}{%- endif %}"
    "{%- endfor -%}"
    "{% if add_generation_prompt %}{{ '<｜Assistant｜>' }}{% endif %}"
)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--ref", default=None, help="DeepSeek-V3 tokenizer.json: if given, checked against the embedded copy")
    ap.add_argument("--out", required=True)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--exclude-docs", default=None, help="json list of doc indices to leave out (validation)")
    a = ap.parse_args()
    ref = DEEPSEEK_V3_PIPELINE
    if a.ref:
        full = json.load(open(a.ref, encoding="utf-8"))
        assert all(full[k] == ref[k] for k in ref), "embedded DeepSeek-V3 pipeline differs from --ref"
    excl = set(json.load(open(a.exclude_docs))) if a.exclude_docs else set()
    texts = [json.loads(l)["text"] for i, l in enumerate(open(a.corpus, encoding="utf-8")) if i not in excl]

    tok = Tokenizer(models.BPE())
    # Build the pre-tokenizer from DeepSeek's JSON object itself.
    tmp = json.loads(tok.to_str())
    tmp["pre_tokenizer"] = ref["pre_tokenizer"]
    tmp["decoder"] = ref["decoder"]
    tok = Tokenizer.from_str(json.dumps(tmp))
    trainer = trainers.BpeTrainer(
        vocab_size=a.vocab,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
        min_frequency=2,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))

    js = json.loads(tok.to_str())
    for k in ("pre_tokenizer", "decoder", "normalizer", "post_processor"):
        js[k] = ref[k]
    for t in js["added_tokens"]:
        t["normalized"] = False
        t["special"] = True
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "tokenizer.json"), "w", encoding="utf-8") as fh:
        json.dump(js, fh, ensure_ascii=False, indent=1)
    cfg = {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "unk_token": None,
        "clean_up_tokenization_spaces": False,
        "legacy": True,
        "model_max_length": 1024,
        "tokenizer_class": "LlamaTokenizerFast",
        "chat_template": CHAT_TEMPLATE,
        "added_tokens_decoder": {
            str(t["id"]): {k: t[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")}
            for t in js["added_tokens"]
        },
    }
    with open(os.path.join(a.out, "tokenizer_config.json"), "w", encoding="utf-8") as fh:
        json.dump(cfg, fh, ensure_ascii=False, indent=1)
    t2 = Tokenizer.from_file(os.path.join(a.out, "tokenizer.json"))
    s = "In the beginning God created the heaven and the earth. 床前明月光，疑是地上霜。 1234 <｜User｜>hi"
    enc = t2.encode(s)
    print("vocab", t2.get_vocab_size(), "example:", enc.tokens)
    assert t2.decode(enc.ids, skip_special_tokens=False) == s, t2.decode(enc.ids)


if __name__ == "__main__":
    main()
