//! A table of corrupt model files, generated here from a valid conversion of the `v2_lite`
//! fixture (GGUF) or from copies of the fixture directory (safetensors, config.json,
//! tokenizer.json), each mutated in one way. Every row states the error kind (the
//! `moela::Error` variant) and a fragment of the message; loading must give exactly that —
//! never a panic, a hang or an unbounded allocation.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use moela::format::gguf::{write_gguf_file, GgufFile, GgufTensorSpec, GgufValue};
use moela::{Error, Model};
use serde_json::{json, Value};

mod common;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Io,
    Format,
    Config,
    Shape,
    MissingTensor,
    Unsupported,
    UnsupportedType,
}

fn kind(e: &Error) -> Option<Kind> {
    Some(match e {
        Error::Io { .. } => Kind::Io,
        Error::Format { .. } => Kind::Format,
        Error::Config { .. } => Kind::Config,
        Error::Shape { .. } => Kind::Shape,
        Error::MissingTensor { .. } => Kind::MissingTensor,
        Error::Unsupported { .. } => Kind::Unsupported,
        Error::UnsupportedType { .. } => Kind::UnsupportedType,
        _ => return None,
    })
}

/// One row: a name, the file (GGUF bytes, or a directory to load), the expected kind and a
/// message fragment.
struct Case {
    name: String,
    kind: Kind,
    frag: String,
    input: Input,
}

enum Input {
    Gguf(Vec<u8>),
    Dir(PathBuf),
}

fn case(name: impl Into<String>, input: Input, kind: Kind, frag: impl Into<String>) -> Case {
    Case {
        name: name.into(),
        kind,
        frag: frag.into(),
        input,
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("moela-corrupt-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs every row; collects all failures before failing, so one run shows the whole table.
fn run(cases: Vec<Case>, tag: &str) {
    let dir = tmpdir(tag);
    let mut failures = Vec::new();
    let n = cases.len();
    for (i, c) in cases.into_iter().enumerate() {
        let path = match &c.input {
            Input::Gguf(bytes) => {
                let p = dir.join(format!("case{i}.gguf"));
                std::fs::write(&p, bytes).unwrap();
                p
            }
            Input::Dir(d) => d.clone(),
        };
        let got = std::panic::catch_unwind(|| Model::load(&path));
        match got {
            Err(_) => failures.push(format!("{}: PANIC", c.name)),
            Ok(Ok(_)) => failures.push(format!("{}: loaded without error", c.name)),
            Ok(Err(e)) => {
                let msg = e.to_string();
                if kind(&e) != Some(c.kind) {
                    failures.push(format!("{}: expected {:?}, got {e:?}", c.name, c.kind));
                } else if !msg.contains(&c.frag) {
                    failures.push(format!("{}: '{msg}' lacks '{}'", c.name, c.frag));
                } else if !msg.contains(&*path.file_name().unwrap().to_string_lossy()) {
                    failures.push(format!("{}: '{msg}' does not name the file", c.name));
                }
            }
        }
        if let Input::Dir(d) = &c.input {
            let _ = std::fs::remove_dir_all(d);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        failures.is_empty(),
        "{} of {n} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{n} corrupt {tag} cases give the expected errors");
}

// ---------------------------------------------------------------------------------------------
// GGUF
// ---------------------------------------------------------------------------------------------

/// A valid F32 GGUF of the v2_lite fixture, with an extra u32 array entry last (so array
/// corruption can be tested), converted once.
fn base_gguf() -> &'static [u8] {
    static B: OnceLock<Vec<u8>> = OnceLock::new();
    B.get_or_init(|| {
        let d = tmpdir("base");
        let p = d.join("base.gguf");
        moela::convert::convert_hf_to_gguf(
            &fixture("v2_lite"),
            &p,
            moela::tensor::DType::F32,
            &mut |_| {},
        )
        .unwrap();
        let out = rewrite(&p, |meta, _| {
            meta.push((
                "test.array".into(),
                GgufValue::Array(moela::format::gguf::GgufArray::U32(vec![1, 2, 3])),
            ))
        });
        let _ = std::fs::remove_dir_all(&d);
        out
    })
}

/// Re-writes the GGUF at `src` after `edit` changes its metadata and tensor specs (tensors
/// keep their bytes by name; a tensor added by `edit` gets zeros).
fn rewrite(
    src: &Path,
    edit: impl FnOnce(&mut Vec<(String, GgufValue)>, &mut Vec<GgufTensorSpec>),
) -> Vec<u8> {
    let f = GgufFile::open(src).unwrap();
    let mut meta = f.metadata.clone();
    meta.retain(|(k, _)| k != "general.alignment");
    let mut specs: Vec<GgufTensorSpec> = f
        .tensors
        .iter()
        .map(|t| GgufTensorSpec {
            name: t.name.clone(),
            dims: t.dims.clone(),
            ggml_type: t.ggml_type,
        })
        .collect();
    edit(&mut meta, &mut specs);
    let out = src.with_extension("rewritten.gguf");
    write_gguf_file(&out, &meta, &specs, 32, |i, w| {
        let s = &specs[i];
        match f.tensor(&s.name) {
            Some(t) if t.dims == s.dims && t.ggml_type == s.ggml_type => {
                w.write_all(f.tensor_data(t)).map_err(|e| Error::io("w", e))
            }
            _ => {
                let n: u64 = s.dims.iter().product();
                let (bs, bb) = moela::format::gguf::ggml_type_geometry(s.ggml_type).unwrap();
                w.write_all(&vec![0u8; (n / bs * bb) as usize])
                    .map_err(|e| Error::io("w", e))
            }
        }
    })
    .unwrap();
    let b = std::fs::read(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    b
}

/// Rewrites the base file (through a temporary copy).
fn rewrite_base(
    tag: &str,
    edit: impl FnOnce(&mut Vec<(String, GgufValue)>, &mut Vec<GgufTensorSpec>),
) -> Vec<u8> {
    let d = tmpdir(&format!("rw-{tag}"));
    let p = d.join("in.gguf");
    std::fs::write(&p, base_gguf()).unwrap();
    let b = rewrite(&p, edit);
    let _ = std::fs::remove_dir_all(&d);
    b
}

/// Where each item of a GGUF header starts: an independent walk of the layout.
#[derive(Debug)]
struct Layout {
    n_kv: u64,
    n_tensors: u64,
    /// (start of entry, key, start of value type field)
    kvs: Vec<(usize, String, usize)>,
    /// (start of info, name, start of n_dims field)
    infos: Vec<(usize, String, usize)>,
    header_end: usize,
    data_offset: usize,
    /// (absolute start, length) of each tensor's data, in info order.
    data: Vec<(usize, usize)>,
}

fn rd_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn rd_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn skip_value(b: &[u8], at: usize, ty: u32) -> usize {
    match ty {
        0 | 1 | 7 => at + 1,
        2 | 3 => at + 2,
        4..=6 => at + 4,
        10..=12 => at + 8,
        8 => at + 8 + rd_u64(b, at) as usize,
        9 => {
            let et = rd_u32(b, at);
            let n = rd_u64(b, at + 4);
            let mut p = at + 12;
            for _ in 0..n {
                p = skip_value(b, p, et);
            }
            p
        }
        t => panic!("value type {t}"),
    }
}

fn layout(b: &[u8]) -> Layout {
    let n_tensors = rd_u64(b, 8);
    let n_kv = rd_u64(b, 16);
    let mut p = 24;
    let mut kvs = Vec::new();
    for _ in 0..n_kv {
        let start = p;
        let klen = rd_u64(b, p) as usize;
        let key = String::from_utf8(b[p + 8..p + 8 + klen].to_vec()).unwrap();
        p += 8 + klen;
        let tpos = p;
        p = skip_value(b, p + 4, rd_u32(b, p));
        kvs.push((start, key, tpos));
    }
    let mut infos = Vec::new();
    let mut raw = Vec::new();
    for _ in 0..n_tensors {
        let start = p;
        let nlen = rd_u64(b, p) as usize;
        let name = String::from_utf8(b[p + 8..p + 8 + nlen].to_vec()).unwrap();
        p += 8 + nlen;
        let dpos = p;
        let nd = rd_u32(b, p) as usize;
        let dims: Vec<u64> = (0..nd).map(|i| rd_u64(b, p + 4 + 8 * i)).collect();
        p += 4 + 8 * nd;
        let ty = rd_u32(b, p);
        let off = rd_u64(b, p + 4);
        p += 12;
        infos.push((start, name, dpos));
        raw.push((dims, ty, off));
    }
    let header_end = p;
    let data_offset = header_end.div_ceil(32) * 32;
    let data = raw
        .iter()
        .map(|(dims, ty, off)| {
            let n: u64 = dims.iter().product();
            let (bs, bb) = moela::format::gguf::ggml_type_geometry(*ty).unwrap();
            (data_offset + *off as usize, (n / bs * bb) as usize)
        })
        .collect();
    Layout {
        n_kv,
        n_tensors,
        kvs,
        infos,
        header_end,
        data_offset,
        data,
    }
}

fn patch(b: &[u8], at: usize, bytes: &[u8]) -> Vec<u8> {
    let mut v = b.to_vec();
    v[at..at + bytes.len()].copy_from_slice(bytes);
    v
}

/// The message a file cut at `cut` gives: the count checks come first, then the item the cut
/// falls in.
fn truncation_frag(l: &Layout, cut: usize) -> String {
    if cut < 24 {
        return "too short for a GGUF header".into();
    }
    let rem = (cut - 24) as u64;
    if l.n_kv > rem / 13 {
        return format!("metadata entry count {} is impossible", l.n_kv);
    }
    if l.n_tensors > rem / 24 {
        return format!("tensor count {} is impossible", l.n_tensors);
    }
    for (i, (start, _, _)) in l.kvs.iter().enumerate().rev() {
        if cut >= *start && cut < l.infos.first().map_or(l.header_end, |x| x.0) {
            return format!("truncated while reading metadata entry {i} of {}", l.n_kv);
        }
    }
    for (i, (start, _, _)) in l.infos.iter().enumerate().rev() {
        if cut >= *start && cut < l.header_end {
            return format!("truncated while reading tensor info {i} of {}", l.n_tensors);
        }
    }
    // Header complete: the first tensor (in info order) whose data runs past the cut.
    for (i, (start, len)) in l.data.iter().enumerate() {
        if start + len > cut {
            return format!(
                "tensor {i} of {} ({:?}): data at offset",
                l.n_tensors, l.infos[i].1
            );
        }
    }
    unreachable!("cut {cut} keeps every tensor")
}

fn gguf_cases() -> Vec<Case> {
    let base = base_gguf();
    let l = layout(base);
    let g = Input::Gguf;
    let mut v = Vec::new();

    // Sanity: the base file loads, and the walk agrees with the reader.
    {
        let d = tmpdir("sanity");
        let p = d.join("ok.gguf");
        std::fs::write(&p, base).unwrap();
        Model::load(&p).unwrap();
        let f = GgufFile::open(&p).unwrap();
        assert_eq!(f.data_offset as usize, l.data_offset);
        for (t, (s, n)) in f.tensors.iter().zip(&l.data) {
            assert_eq!(t.data, *s..s + n, "{}", t.name);
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    // Magic and version.
    v.push(case(
        "bad magic",
        g(patch(base, 0, b"GGML")),
        Kind::Format,
        "bad magic",
    ));
    v.push(case(
        "zero magic",
        g(patch(base, 0, &[0; 4])),
        Kind::Format,
        "expected GGUF",
    ));
    for (ver, frag) in [
        (0u32, "unsupported GGUF version 0"),
        (1, "unsupported GGUF version 1"),
        (4, "unsupported GGUF version 4"),
        (u32::MAX, "unsupported GGUF version 4294967295"),
        (3u32.swap_bytes(), "big-endian"),
    ] {
        v.push(case(
            format!("version {ver}"),
            g(patch(base, 4, &ver.to_le_bytes())),
            Kind::Format,
            frag,
        ));
    }

    // Truncated at every section boundary: inside the fixed header, at and just after the
    // start of every metadata entry and tensor info, at the end of the header, in the
    // padding, and at and just after the start of every tensor's data.
    let mut cuts = vec![0, 3, 4, 8, 16, 23, 24];
    for (s, _, t) in &l.kvs {
        cuts.extend([*s, s + 7, s + 8, *t, t + 4]);
    }
    for (s, _, d) in &l.infos {
        cuts.extend([*s, s + 8, *d, d + 4]);
    }
    cuts.extend([l.header_end, l.header_end + 1, l.data_offset]);
    for (s, n) in &l.data {
        cuts.extend([*s, s + 1, s + n - 1]);
    }
    cuts.sort();
    cuts.dedup();
    for cut in cuts {
        v.push(case(
            format!("truncated at {cut}"),
            g(base[..cut].to_vec()),
            Kind::Format,
            truncation_frag(&l, cut),
        ));
    }

    // Absurd counts.
    for (at, what) in [(8, "tensor count"), (16, "metadata entry count")] {
        for n in [1u64 << 60, u64::MAX] {
            v.push(case(
                format!("{what} {n}"),
                g(patch(base, at, &n.to_le_bytes())),
                Kind::Format,
                format!("{what} {n} is impossible"),
            ));
        }
    }
    let (arr_kv, arr_key, arr_t) = l.kvs.iter().find(|k| k.1 == "test.array").unwrap();
    let _ = arr_kv;
    assert_eq!(arr_key, "test.array");
    v.push(case(
        "array length 2^60",
        g(patch(base, arr_t + 8, &(1u64 << 60).to_le_bytes())),
        Kind::Format,
        "claims 1152921504606846976 elements of type u32",
    ));
    v.push(case(
        "array element type 99",
        g(patch(base, arr_t + 4, &99u32.to_le_bytes())),
        Kind::Format,
        "unknown element type 99",
    ));
    v.push(case(
        "unknown value type",
        g(patch(base, *arr_t, &13u32.to_le_bytes())),
        Kind::Format,
        "(key \"test.array\"): unknown value type 13",
    ));
    let (name_kv, _, name_t) = l.kvs.iter().find(|k| k.1 == "general.name").unwrap();
    v.push(case(
        "string length 2^60",
        g(patch(base, name_t + 4, &(1u64 << 60).to_le_bytes())),
        Kind::Format,
        "more than the 67108864-byte limit",
    ));
    v.push(case(
        "string length past EOF",
        g(patch(base, name_t + 4, &(1u64 << 25).to_le_bytes())),
        Kind::Format,
        "string value needs 33554432 bytes",
    ));
    v.push(case(
        "key length 2^60",
        g(patch(base, *name_kv, &(1u64 << 60).to_le_bytes())),
        Kind::Format,
        "key at offset",
    ));

    // Strings that are not UTF-8: a key and a string value.
    v.push(case(
        "key not UTF-8",
        g(patch(base, name_kv + 8, &[0xff])),
        Kind::Format,
        "key at offset",
    ));
    v.push(case(
        "value not UTF-8",
        g(patch(base, name_t + 12, &[0xc3, 0x28])),
        Kind::Format,
        "not valid UTF-8",
    ));
    let (_, _, t0_nd) = &l.infos[0];
    v.push(case(
        "tensor name not UTF-8",
        g(patch(base, l.infos[0].0 + 8, &[0x80])),
        Kind::Format,
        "tensor info 0 of",
    ));

    // Tensor infos: n_dims, zero and overflowing dims, unknown types, offsets.
    let last = l.infos.len() - 1;
    let (_, last_name, last_nd) = &l.infos[last];
    let nd_last = rd_u32(base, *last_nd) as usize;
    let type_at = |i: usize| {
        let d = l.infos[i].2;
        d + 4 + 8 * rd_u32(base, d) as usize
    };
    v.push(case(
        "n_dims 5",
        g(patch(base, *t0_nd, &5u32.to_le_bytes())),
        Kind::Format,
        "n_dims 5 exceeds the maximum of 4",
    ));
    v.push(case(
        "n_dims u32::MAX",
        g(patch(base, *t0_nd, &u32::MAX.to_le_bytes())),
        Kind::Format,
        "n_dims 4294967295 exceeds",
    ));
    v.push(case(
        "zero dim",
        g(patch(base, last_nd + 4, &0u64.to_le_bytes())),
        Kind::Format,
        "dimension 0 is 0",
    ));
    // A 2-D tensor for the overflow rows.
    let two_d = (0..l.infos.len())
        .find(|&i| rd_u32(base, l.infos[i].2) == 2)
        .unwrap();
    let d2 = l.infos[two_d].2;
    let mut b = patch(base, d2 + 4, &(1u64 << 40).to_le_bytes());
    b = patch(&b, d2 + 12, &(1u64 << 40).to_le_bytes());
    v.push(case(
        "element count overflows",
        g(b),
        Kind::Format,
        "element count of dims [1099511627776, 1099511627776] overflows u64",
    ));
    let mut b = patch(base, d2 + 4, &(1u64 << 62).to_le_bytes());
    b = patch(&b, d2 + 12, &1u64.to_le_bytes());
    v.push(case(
        "byte size overflows",
        g(b),
        Kind::Format,
        "byte size of dims",
    ));
    v.push(case(
        "huge dim past EOF",
        g(patch(base, d2 + 4, &(1u64 << 50).to_le_bytes())),
        Kind::Format,
        "runs past the end of the file",
    ));
    let off_at = |i: usize| type_at(i) + 4;
    v.push(case(
        "offset past EOF",
        g(patch(base, off_at(last), &(1u64 << 40).to_le_bytes())),
        Kind::Format,
        format!("({last_name:?}): data at offset 1099511627776"),
    ));
    v.push(case(
        "offset wraps",
        g(patch(base, off_at(last), &(u64::MAX - 31).to_le_bytes())),
        Kind::Format,
        "runs past the end of the file",
    ));
    v.push(case(
        "offset unaligned",
        g(patch(
            base,
            off_at(last),
            &(rd_u64(base, off_at(last)) + 4).to_le_bytes(),
        )),
        Kind::Format,
        "is not a multiple of the alignment 32",
    ));
    // Overlapping data: the second tensor placed where the first is (both in bounds).
    v.push(case(
        "overlapping tensors",
        g(patch(
            base,
            off_at(1),
            &rd_u64(base, off_at(0)).to_le_bytes(),
        )),
        Kind::Format,
        "overlaps tensor",
    ));
    v.push(case(
        "overlap by one block",
        g(patch(
            base,
            off_at(last),
            &(rd_u64(base, off_at(last)) - 32).to_le_bytes(),
        )),
        Kind::Format,
        format!("tensor {last_name:?}"),
    ));
    // Unknown and retired ggml types: the file opens, the loader names tensor and type.
    for ty in [4u32, 43, 99, u32::MAX] {
        v.push(case(
            format!("tensor type {ty}"),
            g(patch(base, type_at(0), &ty.to_le_bytes())),
            Kind::UnsupportedType,
            l.infos[0].1.clone(),
        ));
    }
    // A known llama.cpp type whose block does not divide the rows (Q4_K: 256 elements).
    let odd = (0..l.infos.len())
        .find(|&i| rd_u64(base, l.infos[i].2 + 4) % 256 != 0)
        .unwrap();
    v.push(case(
        "block size mismatch",
        g(patch(base, type_at(odd), &12u32.to_le_bytes())),
        Kind::Format,
        "256-element block of type Q4_K",
    ));
    let _ = nd_last;

    // Duplicate names and keys (same-length renames).
    let (s0, n0, _) = &l.infos[0];
    let other = l.infos.iter().find(|x| x.1.len() == n0.len() && x.1 != *n0);
    if let Some((s1, _, _)) = other {
        v.push(case(
            "duplicate tensor name",
            g(patch(base, s1 + 8, n0.as_bytes())),
            Kind::Format,
            "duplicate tensor name",
        ));
    }
    let _ = s0;
    let (k0, key0, _) = &l.kvs[0];
    let dup_key = l
        .kvs
        .iter()
        .find(|x| x.1.len() == key0.len() && x.1 != *key0);
    if let Some((k1, _, _)) = dup_key {
        v.push(case(
            "duplicate key",
            g(patch(base, k1 + 8, key0.as_bytes())),
            Kind::Format,
            "duplicate key",
        ));
    }
    let _ = k0;

    // Metadata that parses but is wrong for the architecture.
    let set = |k: &'static str, val: GgufValue| {
        rewrite_base(k, move |m, _| {
            for e in m.iter_mut() {
                if e.0 == k {
                    e.1 = val.clone();
                }
            }
        })
    };
    let drop_key = |k: &'static str| rewrite_base(k, move |m, _| m.retain(|e| e.0 != k));
    v.push(case(
        "architecture llama",
        g(set(
            "general.architecture",
            GgufValue::String("llama".into()),
        )),
        Kind::Unsupported,
        "architecture \"llama\"",
    ));
    v.push(case(
        "architecture not a string",
        g(set("general.architecture", GgufValue::U32(7))),
        Kind::Config,
        "general.architecture",
    ));
    for k in [
        "general.architecture",
        "deepseek2.block_count",
        "deepseek2.embedding_length",
        "deepseek2.attention.head_count",
        "deepseek2.attention.kv_lora_rank",
        "deepseek2.rope.dimension_count",
    ] {
        v.push(case(
            format!("missing {k}"),
            g(drop_key(k)),
            Kind::Config,
            format!("'{k}'"),
        ));
    }
    v.push(case(
        "block_count a string",
        g(set("deepseek2.block_count", GgufValue::String("27".into()))),
        Kind::Config,
        "deepseek2.block_count",
    ));
    v.push(case(
        "block_count negative",
        g(set("deepseek2.block_count", GgufValue::I32(-1))),
        Kind::Config,
        "deepseek2.block_count",
    ));
    v.push(case(
        "block_count 2^40",
        g(set("deepseek2.block_count", GgufValue::U64(1 << 40))),
        Kind::Config,
        "deepseek2.block_count",
    ));
    v.push(case(
        "embedding_length 2^31",
        g(set("deepseek2.embedding_length", GgufValue::U32(1 << 31))),
        Kind::Config,
        "larger than",
    ));
    v.push(case(
        "expert_count 2^30",
        g(set("deepseek2.expert_count", GgufValue::U32(1 << 30))),
        Kind::Config,
        "larger than",
    ));
    {
        let b = rewrite_base("align", |m, _| {
            m.push(("general.alignment".into(), GgufValue::U32(32)))
        });
        let la = layout(&b);
        let (_, _, t) = la.kvs.iter().find(|k| k.1 == "general.alignment").unwrap();
        for (a, frag) in [(24u32, "U32(24), expected a power of two"), (0, "U32(0)")] {
            v.push(case(
                format!("alignment {a}"),
                g(patch(&b, t + 4, &a.to_le_bytes())),
                Kind::Format,
                frag,
            ));
        }
        // A larger alignment moves the data section: the old offsets are now misplaced.
        v.push(case(
            "alignment 4096",
            g(patch(&b, t + 4, &4096u32.to_le_bytes())),
            Kind::Format,
            "alignment 4096",
        ));
    }

    // Tensors that are wrong for the architecture.
    let first2d = rewrite_base("", |_, _| {});
    let f2d = layout(&first2d);
    let names: Vec<String> = f2d.infos.iter().map(|x| x.1.clone()).collect();
    let pick = |pat: &str| names.iter().find(|n| n.contains(pat)).unwrap().clone();
    let q = pick("attn_q.weight");
    {
        let q2 = q.clone();
        v.push(case(
            "transposed matrix",
            g(rewrite_base("transpose", move |_, s| {
                let t = s.iter_mut().find(|t| t.name == q2).unwrap();
                t.dims.reverse();
            })),
            Kind::Shape,
            format!("tensor '{q}' has shape"),
        ));
    }
    let emb = pick("token_embd");
    {
        let e2 = emb.clone();
        v.push(case(
            "embedding with extra row",
            g(rewrite_base("rows", move |_, s| {
                let t = s.iter_mut().find(|t| t.name == e2).unwrap();
                t.dims[1] += 1;
            })),
            Kind::Shape,
            format!("tensor '{emb}' has shape"),
        ));
    }
    let down = pick("ffn_down_exps");
    {
        let d2 = down.clone();
        v.push(case(
            "missing expert tensor",
            g(rewrite_base("missing", move |_, s| {
                s.retain(|t| t.name != d2)
            })),
            Kind::MissingTensor,
            format!("missing tensor '{down}'"),
        ));
    }
    v
}

#[test]
fn corrupt_gguf_files() {
    run(gguf_cases(), "gguf");
}

// ---------------------------------------------------------------------------------------------
// safetensors + config.json
// ---------------------------------------------------------------------------------------------

static DIR_SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A copy of the v2_lite directory (config.json + model.safetensors).
fn copy_dir() -> PathBuf {
    let n = DIR_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dst = tmpdir(&format!("dir{n}"));
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture("v2_lite").join(f), dst.join(f)).unwrap();
    }
    dst
}

/// A copy whose model.safetensors bytes are replaced by `f(original)`.
fn st_bytes(f: impl FnOnce(Vec<u8>) -> Vec<u8>) -> Input {
    let d = copy_dir();
    let p = d.join("model.safetensors");
    let b = std::fs::read(&p).unwrap();
    std::fs::write(&p, f(b)).unwrap();
    Input::Dir(d)
}

fn split_st(b: &[u8]) -> (serde_json::Map<String, Value>, Vec<u8>) {
    let n = rd_u64(b, 0) as usize;
    (
        serde_json::from_slice(&b[8..8 + n]).unwrap(),
        b[8 + n..].to_vec(),
    )
}

fn join_st(header: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header);
    out.extend_from_slice(data);
    out
}

/// A copy whose safetensors header (parsed JSON) is edited by `f`.
fn st_header(f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Input {
    st_bytes(|b| {
        let (mut h, data) = split_st(&b);
        f(&mut h);
        join_st(&serde_json::to_vec(&h).unwrap(), &data)
    })
}

/// A copy whose safetensors header text is replaced.
fn st_raw_header(text: &[u8]) -> Input {
    let text = text.to_vec();
    st_bytes(move |b| {
        let (_, data) = split_st(&b);
        join_st(&text, &data)
    })
}

/// A copy whose config.json is replaced by `text`.
fn config_text(text: impl AsRef<[u8]>) -> Input {
    let d = copy_dir();
    std::fs::write(d.join("config.json"), text).unwrap();
    Input::Dir(d)
}

/// A copy whose config.json is edited by `f`.
fn config_edit(f: impl FnOnce(&mut Value)) -> Input {
    let mut cfg: Value =
        serde_json::from_slice(&std::fs::read(fixture("v2_lite").join("config.json")).unwrap())
            .unwrap();
    f(&mut cfg);
    config_text(serde_json::to_vec(&cfg).unwrap())
}

fn nested(depth: usize) -> String {
    "[".repeat(depth) + &"]".repeat(depth)
}

/// Names of two tensors of the fixture: the first in data order and another.
fn st_names() -> (String, String) {
    let b = std::fs::read(fixture("v2_lite").join("model.safetensors")).unwrap();
    let (h, _) = split_st(&b);
    let mut v: Vec<(u64, String)> = h
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(k, t)| (t["data_offsets"][0].as_u64().unwrap(), k.clone()))
        .collect();
    v.sort();
    (v[0].1.clone(), v[1].1.clone())
}

fn safetensors_cases() -> Vec<Case> {
    let (first, second) = st_names();
    let matrix = "model.layers.0.self_attn.q_proj.weight".to_string();
    let mut v = Vec::new();
    let f = Kind::Format;

    v.push(case("empty file", st_bytes(|_| vec![]), f, "too short"));
    v.push(case(
        "7 bytes",
        st_bytes(|b| b[..7].to_vec()),
        f,
        "too short",
    ));
    v.push(case(
        "header length past EOF",
        st_bytes(|b| patch(&b, 0, &(b.len() as u64).to_le_bytes())),
        f,
        "runs past the end of the file",
    ));
    v.push(case(
        "header length u64::MAX",
        st_bytes(|b| patch(&b, 0, &u64::MAX.to_le_bytes())),
        f,
        "header length 18446744073709551615 runs past the end",
    ));
    v.push(case(
        "header length 200 MiB",
        st_bytes(|b| {
            let mut b = patch(&b, 0, &(200u64 << 20).to_le_bytes());
            b.resize((200 << 20) + 16, b' ');
            b
        }),
        f,
        "exceeds the 104857600-byte limit",
    ));
    v.push(case(
        "truncated in header",
        st_bytes(|b| b[..100].to_vec()),
        f,
        "runs past the end of the file",
    ));
    v.push(case(
        "truncated in data",
        st_bytes(|b| b[..b.len() - 1].to_vec()),
        f,
        "outside the data section",
    ));
    v.push(case(
        "header is an array",
        st_raw_header(b"[]"),
        f,
        "not a JSON object",
    ));
    v.push(case(
        "header is a number",
        st_raw_header(b"12"),
        f,
        "not a JSON object",
    ));
    v.push(case(
        "header not JSON",
        st_raw_header(b"{\"a\": "),
        f,
        "not valid JSON",
    ));
    v.push(case(
        "header not UTF-8",
        st_raw_header(b"{\"\xff\": 1}"),
        f,
        "not valid JSON",
    ));
    v.push(case(
        "header nested 10000 deep",
        st_raw_header(format!("{{\"a\": {}}}", nested(10_000)).as_bytes()),
        f,
        "recursion limit",
    ));
    let e = |n: &str, dtype: Value, shape: Value, offs: Value| {
        let n = n.to_string();
        st_header(move |h| {
            h.insert(
                n,
                json!({"dtype": dtype, "shape": shape, "data_offsets": offs}),
            );
        })
    };
    v.push(case(
        "offsets past EOF",
        e(&first, json!("F32"), json!([1]), json!([0, 1u64 << 40])),
        f,
        "are outside the data section",
    ));
    v.push(case(
        "offsets reversed",
        e(&first, json!("F32"), json!([1]), json!([8, 4])),
        f,
        "data_offsets [8, 4] are outside",
    ));
    v.push(case(
        "offsets u64::MAX",
        e(
            &first,
            json!("F32"),
            json!([1]),
            json!([u64::MAX, u64::MAX]),
        ),
        f,
        "outside the data section",
    ));
    v.push(case(
        "negative offset",
        e(&first, json!("F32"), json!([1]), json!([-4, 0])),
        f,
        "bad header entry",
    ));
    v.push(case(
        "three offsets",
        e(&first, json!("F32"), json!([1]), json!([0, 4, 8])),
        f,
        "bad header entry",
    ));
    v.push(case(
        "shape overflows",
        e(
            &first,
            json!("F32"),
            json!([1u64 << 40, 1u64 << 40]),
            json!([0, 4]),
        ),
        f,
        "overflows",
    ));
    v.push(case(
        "negative dim",
        e(&first, json!("F32"), json!([-1]), json!([0, 4])),
        f,
        "bad header entry",
    ));
    v.push(case(
        "shape disagrees with offsets",
        e(&first, json!("F32"), json!([3]), json!([0, 4])),
        f,
        "needs 12 bytes, data_offsets [0, 4] span 4",
    ));
    v.push(case(
        "dtype not a string",
        e(&first, json!(7), json!([1]), json!([0, 4])),
        f,
        "bad header entry",
    ));
    v.push(case(
        "entry not an object",
        st_header({
            let first = first.clone();
            move |h| {
                h.insert(first, json!("x"));
            }
        }),
        f,
        "bad header entry",
    ));
    v.push(case(
        "__metadata__ not an object",
        st_header(|h| {
            h.insert("__metadata__".into(), json!([1]));
        }),
        f,
        "__metadata__ is not an object",
    ));
    v.push(case(
        "__metadata__ value not a string",
        st_header(|h| {
            h.insert("__metadata__".into(), json!({"format": 1}));
        }),
        f,
        "expected a string",
    ));
    {
        let (a, b) = (first.clone(), second.clone());
        v.push(case(
            "overlapping tensors",
            st_header(move |h| {
                let offs = h[&a]["data_offsets"].clone();
                let len = offs[1].as_u64().unwrap() - offs[0].as_u64().unwrap();
                let b_offs = h[&b]["data_offsets"].clone();
                let b_len = b_offs[1].as_u64().unwrap() - b_offs[0].as_u64().unwrap();
                // b moved to start half-way into a, same length.
                let s = offs[0].as_u64().unwrap() + len / 2;
                h.get_mut(&b).unwrap()["data_offsets"] = json!([s, s + b_len]);
            }),
            f,
            "overlap tensor",
        ));
    }
    {
        let m = matrix.clone();
        v.push(case(
            "unknown dtype",
            st_header(move |h| {
                h.get_mut(&m).unwrap()["dtype"] = json!("Q9_9");
            }),
            Kind::UnsupportedType,
            format!("tensor '{matrix}' has type Q9_9"),
        ));
    }
    {
        let m = matrix.clone();
        v.push(case(
            "wrong shape",
            st_header(move |h| {
                let s = h[&m]["shape"].as_array().unwrap().clone();
                h.get_mut(&m).unwrap()["shape"] = json!([s[1], s[0]]);
            }),
            Kind::Shape,
            format!("tensor '{matrix}' has shape"),
        ));
    }
    {
        let m = matrix.clone();
        v.push(case(
            "missing tensor",
            st_header(move |h| {
                h.remove(&m);
            }),
            Kind::MissingTensor,
            format!("missing tensor '{matrix}'"),
        ));
    }
    v
}

#[test]
fn corrupt_safetensors_files() {
    run(safetensors_cases(), "safetensors");
}

fn config_cases() -> Vec<Case> {
    let mut v = Vec::new();
    let (f, c) = (Kind::Format, Kind::Config);
    v.push(case("empty", config_text(""), f, "invalid JSON"));
    v.push(case("array", config_text("[1, 2]"), f, "not a JSON object"));
    v.push(case("string", config_text("\"x\""), f, "not a JSON object"));
    v.push(case("null", config_text("null"), f, "not a JSON object"));
    v.push(case(
        "not UTF-8",
        config_text(b"{\"a\xff\": 1}"),
        Kind::Io,
        "UTF-8",
    ));
    v.push(case(
        "truncated",
        config_text("{\"hidden_size\": 1"),
        f,
        "invalid JSON",
    ));
    v.push(case(
        "nested 100000 deep",
        config_text(format!("{{\"x\": {}}}", nested(100_000))),
        f,
        "recursion limit",
    ));
    v.push(case(
        "nested value under a used key",
        config_edit(|c| c["rope_scaling"] = serde_json::from_str(&nested(100)).unwrap()),
        c,
        "rope_scaling",
    ));
    v.push(case(
        "model_type unknown",
        config_edit(|c| {
            c["model_type"] = json!("llama");
            c["architectures"] = json!(["LlamaForCausalLM"]);
        }),
        Kind::Unsupported,
        "not a DeepSeek-V2/V3 model",
    ));
    for (key, val, frag) in [
        (
            "hidden_size",
            json!(-1),
            "expected a non-negative integer, got -1",
        ),
        (
            "hidden_size",
            json!(1e300),
            "expected a non-negative integer",
        ),
        (
            "hidden_size",
            json!(1.5),
            "expected a non-negative integer, got 1.5",
        ),
        (
            "hidden_size",
            json!("2048"),
            "expected a non-negative integer",
        ),
        ("hidden_size", json!(u64::MAX), "larger than"),
        ("hidden_size", json!(0), "hidden_size must be > 0"),
        ("num_hidden_layers", json!(1u64 << 40), "larger than"),
        (
            "num_attention_heads",
            json!(-7),
            "expected a non-negative integer",
        ),
        ("vocab_size", json!(1u64 << 32), "larger than"),
        ("kv_lora_rank", json!(1u64 << 20), "larger than"),
        ("qk_rope_head_dim", json!(7), "must be even"),
        ("n_routed_experts", json!(1u64 << 60), "larger than"),
        ("num_experts_per_tok", json!(1000), "num_experts_per_tok"),
        ("moe_intermediate_size", json!(1u64 << 62), "larger than"),
        ("intermediate_size", json!(1u64 << 62), "larger than"),
        ("n_shared_experts", json!(1u64 << 62), "larger than"),
        ("rms_norm_eps", json!("tiny"), "expected a number"),
        ("norm_topk_prob", json!(1), "expected true or false"),
        ("scoring_func", json!("relu"), "unknown scoring function"),
        ("topk_method", json!(["greedy"]), "expected a string"),
        ("q_lora_rank", json!(1u64 << 40), "q_lora_rank"),
        ("rope_scaling", json!([1]), "expected an object"),
        (
            "rope_scaling",
            json!({"type": "yarn", "factor": -1.0}),
            "factor and original_max_position_embeddings must be > 0",
        ),
        ("rope_scaling", json!({"type": "ntk"}), "not supported"),
    ] {
        v.push(case(
            format!("{key} = {val}"),
            config_edit(|c| c[key] = val),
            c,
            frag,
        ));
    }
    for key in [
        "hidden_size",
        "num_hidden_layers",
        "vocab_size",
        "kv_lora_rank",
    ] {
        v.push(case(
            format!("missing {key}"),
            config_edit(|c| {
                c.as_object_mut().unwrap().remove(key);
            }),
            c,
            format!("config key '{key}': missing"),
        ));
    }
    v
}

#[test]
fn corrupt_config_files() {
    run(config_cases(), "config");
}

// ---------------------------------------------------------------------------------------------
// tokenizer.json
// ---------------------------------------------------------------------------------------------

/// GPT-2's byte → printable character map.
fn byte_chars() -> Vec<char> {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xa1..=0xac)
        .chain(0xae..=0xff)
        .collect();
    let mut chars: Vec<u32> = printable.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    let mut out = vec![' '; 256];
    for (b, c) in printable.iter().zip(chars) {
        out[*b as usize] = char::from_u32(c).unwrap();
    }
    out
}

/// A small valid byte-level BPE tokenizer.json with DeepSeek-V3's pre-tokenizer.
pub fn small_tokenizer_json() -> Value {
    let mut vocab = serde_json::Map::new();
    for (b, c) in byte_chars().iter().enumerate() {
        vocab.insert(c.to_string(), json!(b));
    }
    let merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he")];
    for (i, (a, b)) in merges.iter().enumerate() {
        vocab.insert(format!("{a}{b}"), json!(256 + i));
    }
    json!({
        "version": "1.0",
        "added_tokens": [
            {"id": 300, "content": "<｜begin▁of▁sentence｜>", "special": true, "normalized": false},
        ],
        "normalizer": null,
        "pre_tokenizer": common::v3_pre_tokenizer(),
        "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "vocab": vocab,
                  "merges": merges.iter().map(|(a, b)| format!("{a} {b}")).collect::<Vec<_>>()}
    })
}

fn tokenizer_case(f: impl FnOnce(&mut Value)) -> Input {
    let mut j = small_tokenizer_json();
    f(&mut j);
    tokenizer_text(serde_json::to_vec(&j).unwrap())
}

fn tokenizer_text(text: impl AsRef<[u8]>) -> Input {
    let d = copy_dir();
    std::fs::write(d.join("tokenizer.json"), text).unwrap();
    Input::Dir(d)
}

fn tokenizer_cases() -> Vec<Case> {
    let mut v = Vec::new();
    let f = Kind::Format;
    // Sanity: the base tokenizer loads with the model.
    if let Input::Dir(d) = tokenizer_case(|_| {}) {
        let m = Model::load(&d).unwrap();
        let t = m.tokenizer.as_ref().unwrap();
        assert_eq!(t.encode(" the", false, false), vec![258]);
        let _ = std::fs::remove_dir_all(&d);
    }
    v.push(case("empty", tokenizer_text(""), f, "not a tokenizer.json"));
    v.push(case(
        "array",
        tokenizer_text("[]"),
        f,
        "not a tokenizer.json",
    ));
    v.push(case(
        "nested 100000 deep",
        tokenizer_text(format!("{{\"pre_tokenizer\": {}}}", nested(100_000))),
        f,
        "recursion limit",
    ));
    v.push(case(
        "missing model",
        tokenizer_case(|j| {
            j.as_object_mut().unwrap().remove("model");
        }),
        f,
        "missing field `model`",
    ));
    v.push(case(
        "model not BPE",
        tokenizer_case(|j| j["model"]["type"] = json!("WordPiece")),
        f,
        "WordPiece",
    ));
    v.push(case(
        "vocab not an object",
        tokenizer_case(|j| j["model"]["vocab"] = json!([1, 2])),
        f,
        "not a tokenizer.json",
    ));
    v.push(case(
        "vocab id negative",
        tokenizer_case(|j| j["model"]["vocab"]["!"] = json!(-1)),
        f,
        "not a tokenizer.json",
    ));
    v.push(case(
        "vocab id u32::MAX",
        tokenizer_case(|j| j["model"]["vocab"]["!"] = json!(u32::MAX)),
        f,
        "is too large",
    ));
    // One huge id must not size the id tables (2^31 entries would be ~50 GB).
    for id in [100_000u64, 1 << 24, 1 << 31, u32::MAX as u64 - 2] {
        v.push(case(
            format!("vocab id {id}"),
            tokenizer_case(|j| j["model"]["vocab"]["!"] = json!(id)),
            f,
            format!("token id {id} is too large"),
        ));
        v.push(case(
            format!("added token id {id}"),
            tokenizer_case(|j| j["added_tokens"][0]["id"] = json!(id)),
            f,
            format!("token id {id} is too large"),
        ));
    }
    v.push(case(
        "empty vocab",
        tokenizer_case(|j| {
            j["model"]["vocab"] = json!({});
            j["model"]["merges"] = json!([]);
            j["added_tokens"] = json!([]);
        }),
        f,
        "empty vocabulary",
    ));
    v.push(case(
        "merge with three parts",
        tokenizer_case(|j| j["model"]["merges"][0] = json!("a b c")),
        f,
        "merge 0 'a b c' is not two tokens",
    ));
    v.push(case(
        "merge pair of one",
        tokenizer_case(|j| j["model"]["merges"][1] = json!(["a"])),
        f,
        "merge 1 has 1 parts",
    ));
    v.push(case(
        "merge of unknown tokens",
        tokenizer_case(|j| j["model"]["merges"][0] = json!("Ġ q")),
        f,
        "merge 0",
    ));
    v.push(case(
        "merge not a string",
        tokenizer_case(|j| j["model"]["merges"][0] = json!(5)),
        f,
        "not a tokenizer.json",
    ));
    v.push(case(
        "unknown pre-tokenizer",
        tokenizer_case(|j| j["pre_tokenizer"] = json!({"type": "Whitespace"})),
        f,
        "unrecognised pre_tokenizer",
    ));
    v.push(case(
        "pre-tokenizer regex changed",
        tokenizer_case(|j| {
            j["pre_tokenizer"]["pretokenizers"][2]["pattern"]["Regex"] = json!("(a+)+$")
        }),
        f,
        "unrecognised pre_tokenizer",
    ));
    v.push(case(
        "no pre-tokenizer",
        tokenizer_case(|j| j["pre_tokenizer"] = Value::Null),
        f,
        "no pre_tokenizer",
    ));
    v.push(case(
        "normalizer",
        tokenizer_case(|j| j["normalizer"] = json!({"type": "NFKC"})),
        f,
        "normalizer",
    ));
    v.push(case(
        "added token id u32::MAX",
        tokenizer_case(|j| {
            j["added_tokens"][0]["id"] = json!(u32::MAX);
        }),
        f,
        "is too large",
    ));
    v.push(case(
        "added token without content",
        tokenizer_case(|j| {
            j["added_tokens"][0]
                .as_object_mut()
                .unwrap()
                .remove("content");
        }),
        f,
        "missing field `content`",
    ));
    v
}

#[test]
fn corrupt_tokenizer_files() {
    run(tokenizer_cases(), "tokenizer");
}

// ---------------------------------------------------------------------------------------------
// Saved session states (Session::load_state_bytes / load_state_file)
// ---------------------------------------------------------------------------------------------

/// What a state row expects: the error, and a fragment of its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StateKind {
    Format,
    Unsupported,
    Mismatch,
    ContextFull,
}

fn state_kind(e: &Error) -> Option<StateKind> {
    Some(match e {
        Error::Format { .. } => StateKind::Format,
        Error::Unsupported { .. } => StateKind::Unsupported,
        Error::StateMismatch(_) => StateKind::Mismatch,
        Error::ContextFull { .. } => StateKind::ContextFull,
        _ => return None,
    })
}

/// A valid state of the v3 fixture: 5 tokens, f32 cache, with logits.
fn base_state(model: &std::sync::Arc<Model>) -> Vec<u8> {
    let mut s = moela::Session::new(
        model.clone(),
        &moela::SessionParams {
            n_ctx: 8,
            ..Default::default()
        },
    )
    .unwrap();
    s.eval(&[1, 2, 3, 4, 5], false).unwrap();
    s.state_bytes()
}

/// `b` with `bytes` at `at`, checksums recomputed (to reach the checks after them).
fn patched_state(b: &[u8], at: usize, bytes: &[u8]) -> Vec<u8> {
    let mut v = patch(b, at, bytes);
    moela::session::state::fix_checksums(&mut v);
    v
}

#[test]
fn corrupt_session_states() {
    let model = std::sync::Arc::new(Model::load(fixture("v3")).unwrap());
    let b = base_state(&model);
    let n = b.len();
    let u32b = |v: u32| v.to_le_bytes().to_vec();
    let flip = |at: usize| {
        let mut v = b.clone();
        v[at] ^= 0x01;
        v
    };
    let mut with_tail = b.clone();
    with_tail.extend_from_slice(&[0; 8]);
    let cases: Vec<(&str, Vec<u8>, StateKind, &str)> = vec![
        (
            "empty",
            vec![],
            StateKind::Format,
            "not a moela session state",
        ),
        (
            "a GGUF file",
            base_gguf()[..4096].to_vec(),
            StateKind::Format,
            "not a moela session state",
        ),
        (
            "bad magic",
            patch(&b, 0, b"MOELAKVX"),
            StateKind::Format,
            "not a moela session state",
        ),
        (
            "header cut",
            b[..40].to_vec(),
            StateKind::Format,
            "truncated session state: 40 bytes",
        ),
        (
            "body cut",
            b[..n - 9].to_vec(),
            StateKind::Format,
            "truncated session state",
        ),
        (
            "trailer cut",
            b[..n - 1].to_vec(),
            StateKind::Format,
            "truncated session state",
        ),
        (
            "trailing bytes",
            with_tail,
            StateKind::Format,
            "after its end",
        ),
        (
            "header bit flip (n_tokens)",
            flip(24),
            StateKind::Format,
            "header checksum mismatch",
        ),
        (
            "header checksum flip",
            flip(50),
            StateKind::Format,
            "header checksum mismatch",
        ),
        (
            "token bit flip",
            flip(56),
            StateKind::Format,
            "checksum mismatch: the state is corrupt",
        ),
        (
            "logits bit flip",
            flip(56 + 20 + 3),
            StateKind::Format,
            "checksum mismatch",
        ),
        (
            "cache bit flip",
            flip(n - 100),
            StateKind::Format,
            "checksum mismatch",
        ),
        (
            "trailer flip",
            flip(n - 2),
            StateKind::Format,
            "checksum mismatch",
        ),
        (
            "version 2",
            patched_state(&b, 8, &u32b(2)),
            StateKind::Unsupported,
            "format version 2",
        ),
        (
            "cache type 7",
            patched_state(&b, 12, &u32b(7)),
            StateKind::Format,
            "cache type 7",
        ),
        (
            "unknown flags",
            patched_state(&b, 36, &u32b(3)),
            StateKind::Format,
            "unknown bits",
        ),
        (
            "tokens > context needed",
            patched_state(&b, 28, &u32b(4)),
            StateKind::Format,
            "needs a context of 4",
        ),
        (
            "context needed 2^30",
            patched_state(&b, 28, &u32b(1 << 30)),
            StateKind::Format,
            "out of range",
        ),
        (
            "logits without tokens",
            patched_state(&patched_state(&b, 24, &u32b(0)), 28, &u32b(0)),
            StateKind::Format,
            "logits but no tokens",
        ),
        (
            "more tokens than the bytes hold",
            patched_state(&patched_state(&b, 24, &u32b(6)), 28, &u32b(6)),
            StateKind::Format,
            "truncated session state",
        ),
        (
            "token out of range",
            patched_state(&b, 56, &u32b(1 << 20)),
            StateKind::Format,
            "not below the vocabulary size",
        ),
        (
            "another fingerprint",
            patched_state(&b, 16, &[0xAA; 8]),
            StateKind::Mismatch,
            "another model",
        ),
        (
            "another row width",
            patched_state(&b, 32, &u32b(7)),
            StateKind::Mismatch,
            "cache values",
        ),
        (
            "another layer count",
            patched_state(&b, 40, &u32b(1000)),
            StateKind::Mismatch,
            "layers",
        ),
        (
            "f16 state into f32",
            patched_state(&b, 12, &u32b(1)),
            StateKind::Mismatch,
            "f16 KV cache",
        ),
        (
            "needs more context",
            patched_state(&b, 28, &u32b(9)),
            StateKind::ContextFull,
            "9 positions needed",
        ),
    ];
    let dir = tmpdir("state");
    let mut failures = Vec::new();
    let total = cases.len();
    for (i, (name, bytes, want, frag)) in cases.into_iter().enumerate() {
        let path = dir.join(format!("state{i}.bin"));
        std::fs::write(&path, &bytes).unwrap();
        let mut s = moela::Session::new(
            model.clone(),
            &moela::SessionParams {
                n_ctx: 8,
                ..Default::default()
            },
        )
        .unwrap();
        s.eval(&[7], false).unwrap();
        for (how, got) in [
            (
                "bytes",
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    s.load_state_bytes(&bytes)
                })),
            ),
            (
                "file",
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.load_state_file(&path))),
            ),
        ] {
            match got {
                Err(_) => failures.push(format!("{name} ({how}): PANIC")),
                Ok(Ok(())) => failures.push(format!("{name} ({how}): loaded without error")),
                Ok(Err(e)) => {
                    let msg = e.to_string();
                    if state_kind(&e) != Some(want) {
                        failures.push(format!("{name} ({how}): expected {want:?}, got {e:?}"));
                    } else if !msg.contains(frag) {
                        failures.push(format!("{name} ({how}): '{msg}' lacks '{frag}'"));
                    } else if how == "file"
                        && want == StateKind::Format
                        && !msg.contains(&format!("state{i}.bin"))
                    {
                        failures.push(format!("{name} ({how}): '{msg}' does not name the file"));
                    }
                }
            }
        }
        if s.position() != 1 || s.tokens() != [7] {
            failures.push(format!("{name}: a failed load changed the session"));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{total} corrupt session state cases give the expected errors");
}
