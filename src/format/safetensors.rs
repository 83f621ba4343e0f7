//! safetensors reader: single files and sharded Hugging Face checkpoints.
//!
//! File layout: a little-endian u64 `N`, then `N` bytes of UTF-8 JSON, then the data section:
//!
//! ```text
//! { "name": { "dtype": "BF16", "shape": [4096, 7168], "data_offsets": [begin, end] }, ...,
//!   "__metadata__": { "format": "pt" } }
//! ```
//!
//! `data_offsets` are relative to the start of the data section (`8 + N`). Tensor bytes are
//! little-endian and row-major, with no alignment guarantee (the header length is arbitrary),
//! so consumers must read scalars with `from_le_bytes`, never by casting pointers.
//!
//! [`SafetensorsFile::open`] maps the file and parses only the header; every tensor's range is
//! validated against the data section and, for the dtypes listed in [`dtype_size`], against
//! its shape. Unknown dtype strings are kept as stored (a loader reports them by tensor name
//! when it needs one).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::format::gguf::map_file;

/// Largest JSON header accepted.
pub const MAX_HEADER_LEN: u64 = 100 << 20;
/// Name of the shard index of a sharded checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// Name of an unsharded checkpoint.
pub const SINGLE_FILE: &str = "model.safetensors";
const METADATA_KEY: &str = "__metadata__";

/// Bytes per element of the dtype strings whose size is known.
pub fn dtype_size(dtype: &str) -> Option<usize> {
    Some(match dtype {
        "F64" | "I64" | "U64" => 8,
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        "I8" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2" => 1,
        _ => return None,
    })
}

/// One tensor of a safetensors file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StTensorInfo {
    pub name: String,
    /// The dtype string as stored ("F32", "BF16", "F8_E4M3", ...).
    pub dtype: String,
    /// Row-major shape (outermost first).
    pub shape: Vec<usize>,
    /// Absolute byte range in the file, validated to lie inside the data section.
    pub data: Range<usize>,
}

impl StTensorInfo {
    /// Number of elements (cannot overflow for a known dtype: checked at open).
    pub fn n_elements(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A memory-mapped safetensors file with its parsed header. `tensors` is in data order.
pub struct SafetensorsFile {
    pub path: PathBuf,
    pub map: Arc<Mmap>,
    pub tensors: Vec<StTensorInfo>,
    pub metadata: BTreeMap<String, String>,
    index: HashMap<String, usize>,
}

impl fmt::Debug for SafetensorsFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SafetensorsFile")
            .field("path", &self.path)
            .field("tensors", &self.tensors.len())
            .field("metadata", &self.metadata)
            .field("file_len", &self.map.len())
            .finish()
    }
}

#[derive(Deserialize)]
struct RawTensor {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: [u64; 2],
}

struct Parsed {
    tensors: Vec<StTensorInfo>,
    metadata: BTreeMap<String, String>,
}

/// Parses and validates the header of a safetensors file held in `buf` (messages without
/// the path).
fn parse(buf: &[u8]) -> std::result::Result<Parsed, String> {
    let file_len = buf.len() as u64;
    let Some(len_bytes) = buf.first_chunk::<8>() else {
        return Err(format!(
            "file is {file_len} bytes, too short for a safetensors header length (8 bytes)"
        ));
    };
    let n = u64::from_le_bytes(*len_bytes);
    if n > file_len - 8 {
        return Err(format!(
            "header length {n} runs past the end of the file ({file_len} bytes)"
        ));
    }
    if n > MAX_HEADER_LEN {
        return Err(format!(
            "header length {n} exceeds the {MAX_HEADER_LEN}-byte limit"
        ));
    }
    let data_start = 8 + n as usize; // n <= file_len - 8, so this fits
    let header = &buf[8..data_start];
    if header.first() != Some(&b'{') {
        return Err("header is not a JSON object (does not start with '{')".into());
    }
    let json: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(header).map_err(|e| format!("header is not valid JSON: {e}"))?;

    let data_len = file_len - data_start as u64;
    let mut metadata = BTreeMap::new();
    let mut tensors = Vec::with_capacity(json.len());
    for (name, value) in json {
        if name == METADATA_KEY {
            let serde_json::Value::Object(m) = value else {
                return Err(format!("{METADATA_KEY} is not an object"));
            };
            for (k, v) in m {
                match v {
                    serde_json::Value::String(s) => {
                        metadata.insert(k, s);
                    }
                    other => {
                        return Err(format!(
                            "{METADATA_KEY} entry {k:?} is {other}, expected a string"
                        ))
                    }
                }
            }
            continue;
        }
        let raw: RawTensor = serde_json::from_value(value)
            .map_err(|e| format!("tensor {name:?}: bad header entry: {e}"))?;
        let [begin, end] = raw.data_offsets;
        if begin > end || end > data_len {
            return Err(format!(
                "tensor {name:?}: data_offsets [{begin}, {end}] are outside the data section \
                 ({data_len} bytes)"
            ));
        }
        let shape = raw
            .shape
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<std::result::Result<Vec<usize>, _>>()
            .map_err(|_| format!("tensor {name:?}: shape {:?} does not fit usize", raw.shape))?;
        if let Some(size) = dtype_size(&raw.dtype) {
            let want = shape
                .iter()
                .try_fold(size, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| {
                    format!("tensor {name:?}: byte size of shape {shape:?} overflows")
                })?;
            if want as u64 != end - begin {
                return Err(format!(
                    "tensor {name:?}: dtype {} shape {shape:?} needs {want} bytes, \
                     data_offsets [{begin}, {end}] span {}",
                    raw.dtype,
                    end - begin
                ));
            }
        }
        // begin <= end <= data_len, and data_start + data_len == file_len fits usize.
        let data = data_start + begin as usize..data_start + end as usize;
        tensors.push(StTensorInfo {
            name,
            dtype: raw.dtype,
            shape,
            data,
        });
    }
    tensors.sort_by(|a, b| {
        (a.data.start, a.data.end, &a.name).cmp(&(b.data.start, b.data.end, &b.name))
    });
    // Tensor data must not overlap (empty tensors take no bytes and are skipped).
    let mut prev: Option<&StTensorInfo> = None;
    for t in tensors.iter().filter(|t| !t.data.is_empty()) {
        if let Some(p) = prev {
            if t.data.start < p.data.end {
                return Err(format!(
                    "tensor {:?}: data_offsets [{}, {}] overlap tensor {:?} ([{}, {}])",
                    t.name,
                    t.data.start - data_start,
                    t.data.end - data_start,
                    p.name,
                    p.data.start - data_start,
                    p.data.end - data_start
                ));
            }
        }
        prev = Some(t);
    }
    Ok(Parsed { tensors, metadata })
}

/// Parses and validates a safetensors header held in memory (for fuzzing): the tensor infos
/// in data order and the `__metadata__` entries. `name` is used as the path in errors.
pub fn parse_header_bytes(
    bytes: &[u8],
    name: &str,
) -> Result<(Vec<StTensorInfo>, BTreeMap<String, String>)> {
    let p = parse(bytes).map_err(|msg| Error::format(name, msg))?;
    Ok((p.tensors, p.metadata))
}

impl SafetensorsFile {
    /// Maps the file and parses and validates its header. Tensor data is not read.
    pub fn open(path: &Path) -> Result<SafetensorsFile> {
        let map = map_file(path)?;
        let p = parse(&map).map_err(|msg| Error::format(path, msg))?;
        let index = p
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(SafetensorsFile {
            path: path.to_path_buf(),
            map: Arc::new(map),
            tensors: p.tensors,
            metadata: p.metadata,
            index,
        })
    }

    pub fn tensor(&self, name: &str) -> Option<&StTensorInfo> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// The bytes of `t` (a tensor of this file; an info from elsewhere whose range is not
    /// inside this mapping gives an empty slice).
    pub fn tensor_data(&self, t: &StTensorInfo) -> &[u8] {
        self.map.get(t.data.clone()).unwrap_or(&[])
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }
}

/// A Hugging Face checkpoint directory: `model.safetensors`, or shards listed by
/// `model.safetensors.index.json`.
pub struct HfCheckpoint {
    pub dir: PathBuf,
    pub files: Vec<SafetensorsFile>,
    /// Tensor name -> (index in `files`, index in that file's `tensors`).
    index: HashMap<String, (usize, usize)>,
}

impl fmt::Debug for HfCheckpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HfCheckpoint")
            .field("dir", &self.dir)
            .field("files", &self.files)
            .field("tensors", &self.index.len())
            .finish()
    }
}

#[derive(Deserialize)]
struct RawIndex {
    weight_map: BTreeMap<String, String>,
}

/// A shard name must be a plain file name inside the checkpoint directory.
fn plain_file_name(name: &str) -> bool {
    let mut c = Path::new(name).components();
    matches!((c.next(), c.next()), (Some(Component::Normal(_)), None))
        && !name.contains(['/', '\\', '\0'])
}

impl HfCheckpoint {
    /// Opens the checkpoint in `dir`. With an index, each shard it names is opened once, and
    /// every tensor of the weight map must be in the shard it names; tensors a shard holds but
    /// the weight map does not list are reachable too (the first shard, in file-name order,
    /// holding a name wins). Without an index, `model.safetensors` is opened.
    pub fn open_dir(dir: &Path) -> Result<HfCheckpoint> {
        let index_path = dir.join(INDEX_FILE);
        let single_path = dir.join(SINGLE_FILE);
        if index_path.is_file() {
            Self::open_sharded(dir, &index_path)
        } else if single_path.is_file() {
            let f = SafetensorsFile::open(&single_path)?;
            let index = f
                .tensors
                .iter()
                .enumerate()
                .map(|(i, t)| (t.name.clone(), (0, i)))
                .collect();
            Ok(HfCheckpoint {
                dir: dir.to_path_buf(),
                files: vec![f],
                index,
            })
        } else {
            Err(Error::io(
                dir,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!(
                        "no safetensors checkpoint: neither {INDEX_FILE} nor {SINGLE_FILE} \
                         exists in this directory"
                    ),
                ),
            ))
        }
    }

    fn open_sharded(dir: &Path, index_path: &Path) -> Result<HfCheckpoint> {
        let text = std::fs::read(index_path).map_err(|e| Error::io(index_path, e))?;
        let raw: RawIndex = serde_json::from_slice(&text)
            .map_err(|e| Error::format(index_path, format!("bad shard index JSON: {e}")))?;

        // Open each shard once, in file-name order.
        let mut shard_ids: BTreeMap<&str, usize> = BTreeMap::new();
        for (tensor, shard) in &raw.weight_map {
            if !plain_file_name(shard) {
                return Err(Error::format(
                    index_path,
                    format!(
                        "weight_map entry {tensor:?} names shard {shard:?}, which is not a \
                         plain file name inside the checkpoint directory"
                    ),
                ));
            }
            shard_ids.insert(shard, 0);
        }
        let mut files = Vec::with_capacity(shard_ids.len());
        for (i, (shard, id)) in shard_ids.iter_mut().enumerate() {
            *id = i;
            files.push(SafetensorsFile::open(&dir.join(shard))?);
        }

        let mut index = HashMap::new();
        for (tensor, shard) in &raw.weight_map {
            let fi = shard_ids[shard.as_str()];
            let Some(ti) = files[fi].position(tensor) else {
                return Err(Error::format(
                    index_path,
                    format!(
                        "weight_map puts tensor {tensor:?} in {shard:?}, which does not contain it"
                    ),
                ));
            };
            index.insert(tensor.clone(), (fi, ti));
        }
        for (fi, f) in files.iter().enumerate() {
            for (ti, t) in f.tensors.iter().enumerate() {
                index.entry(t.name.clone()).or_insert((fi, ti));
            }
        }
        Ok(HfCheckpoint {
            dir: dir.to_path_buf(),
            files,
            index,
        })
    }

    /// The tensor named `name` and the file holding it.
    pub fn get(&self, name: &str) -> Option<(&SafetensorsFile, &StTensorInfo)> {
        let &(fi, ti) = self.index.get(name)?;
        let f = self.files.get(fi)?;
        Some((f, f.tensors.get(ti)?))
    }

    /// Every tensor name, file by file in data order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.files.iter().enumerate().flat_map(move |(fi, f)| {
            f.tensors
                .iter()
                .enumerate()
                .filter(move |(ti, t)| self.index.get(&t.name) == Some(&(fi, *ti)))
                .map(|(_, t)| t.name.as_str())
        })
    }

    /// Number of distinct tensor names.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh directory in the temp dir, removed on drop.
    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> TempDir {
            static N: AtomicUsize = AtomicUsize::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let p = std::env::temp_dir()
                .join(format!("moela-st-test-{}-{n}-{tag}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
        fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
            let p = self.0.join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A file from a raw header string and data section.
    fn raw_file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    /// Serialises tensors `(name, dtype, shape, bytes)` back to back, like the safetensors
    /// library does.
    fn st_file(tensors: &[(&str, &str, &[usize], &[u8])], meta: &[(&str, &str)]) -> Vec<u8> {
        let mut header = serde_json::Map::new();
        let mut data = Vec::new();
        for (name, dtype, shape, bytes) in tensors {
            let begin = data.len();
            data.extend_from_slice(bytes);
            header.insert(
                name.to_string(),
                json!({"dtype": dtype, "shape": shape, "data_offsets": [begin, data.len()]}),
            );
        }
        if !meta.is_empty() {
            let m: serde_json::Map<_, _> = meta
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            header.insert(METADATA_KEY.into(), serde_json::Value::Object(m));
        }
        raw_file(&serde_json::Value::Object(header).to_string(), &data)
    }

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn parse_err(bytes: &[u8]) -> String {
        match parse(bytes) {
            Ok(_) => panic!("parse unexpectedly succeeded"),
            Err(e) => e,
        }
    }

    #[test]
    fn overlapping_tensors_are_rejected() {
        let h = r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}"#;
        let e = parse_err(&raw_file(h, &[0; 8]));
        assert!(
            e.contains("tensor \"b\": data_offsets [2, 6] overlap tensor \"a\""),
            "{e}"
        );
        // Adjacent, and empty tensors anywhere, are fine.
        let h = r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[4,8]},"e":{"dtype":"U8","shape":[0],"data_offsets":[2,2]}}"#;
        assert_eq!(
            parse_header_bytes(&raw_file(h, &[0; 8]), "m")
                .unwrap()
                .0
                .len(),
            3
        );
    }

    fn assert_err(bytes: &[u8], want: &str) {
        let e = parse_err(bytes);
        assert!(e.contains(want), "error {e:?} does not contain {want:?}");
    }

    #[test]
    fn round_trip_single_file() {
        let dir = TempDir::new("single");
        let w = f32_bytes(&[1.0, -2.0, 3.5, 0.0, 1e-3, 7.0]);
        let b16 = [0x80u8, 0x3f, 0x00, 0xc0, 0, 0, 0x20, 0x40];
        let scalar = 42i64.to_le_bytes();
        let f8 = [1u8, 2, 3];
        let file = st_file(
            &[
                ("model.embed_tokens.weight", "F32", &[2, 3], &w),
                ("b", "BF16", &[4], &b16),
                ("step", "I64", &[], &scalar),
                ("scale", "F8_E4M3", &[3], &f8),
                ("packed", "F4", &[4], &[0xff, 0xee]),
            ],
            &[("format", "pt")],
        );
        let path = dir.write(SINGLE_FILE, &file);
        let f = SafetensorsFile::open(&path).unwrap();
        assert_eq!(f.metadata.get("format").map(String::as_str), Some("pt"));
        let names: Vec<_> = f.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            ["model.embed_tokens.weight", "b", "step", "scale", "packed"]
        );
        let t = f.tensor("model.embed_tokens.weight").unwrap();
        assert_eq!((t.dtype.as_str(), &t.shape[..]), ("F32", &[2, 3][..]));
        assert_eq!(t.n_elements(), 6);
        assert_eq!(f.tensor_data(t), &w[..]);
        assert_eq!(f.tensor_data(f.tensor("b").unwrap()), &b16);
        let s = f.tensor("step").unwrap();
        assert_eq!((s.shape.len(), s.n_elements()), (0, 1));
        assert_eq!(f.tensor_data(s), &scalar);
        assert_eq!(f.tensor_data(f.tensor("scale").unwrap()), &f8);
        // Unknown dtype: kept as stored, size not checked.
        let p = f.tensor("packed").unwrap();
        assert_eq!(p.dtype, "F4");
        assert_eq!(f.tensor_data(p), &[0xff, 0xee]);
        assert!(f.tensor("nope").is_none());

        let ck = HfCheckpoint::open_dir(&dir.0).unwrap();
        assert_eq!(ck.files.len(), 1);
        assert_eq!(ck.len(), 5);
        assert_eq!(ck.names().collect::<Vec<_>>(), names);
        let (file, info) = ck.get("b").unwrap();
        assert_eq!(file.tensor_data(info), &b16);
        assert!(ck.get("nope").is_none());
    }

    #[test]
    fn header_padding_and_empty_file() {
        // The format allows trailing spaces after the JSON.
        let h = r#"{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}    "#;
        let p = parse(&raw_file(h, &[5, 6])).unwrap();
        assert_eq!(p.tensors[0].data, h.len() + 8..h.len() + 10);
        // No tensors at all.
        assert!(parse(&raw_file("{}", &[])).unwrap().tensors.is_empty());
    }

    #[test]
    fn specific_errors() {
        assert_err(b"\x02\0\0", "too short for a safetensors header length");
        assert_err(
            &raw_file("{}", &[])[..9],
            "header length 2 runs past the end of the file (9 bytes)",
        );
        let mut b = raw_file("{}", &[]);
        b[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_err(&b, "header length 18446744073709551615 runs past the end");
        // Over the size cap (a zeroed buffer, so this allocates lazily).
        let mut big = vec![0u8; (MAX_HEADER_LEN + 16) as usize];
        big[..8].copy_from_slice(&(MAX_HEADER_LEN + 1).to_le_bytes());
        assert_err(&big, "exceeds the 104857600-byte limit");
        drop(big);
        assert_err(&raw_file("[1, 2]", &[]), "not a JSON object");
        assert_err(&raw_file("{\"a\": ", &[]), "header is not valid JSON");
        assert_err(
            &raw_file(r#"{"a":{"dtype":"F32","shape":[1]}}"#, &[0; 4]),
            "tensor \"a\": bad header entry: missing field `data_offsets`",
        );
        assert_err(
            &raw_file(
                r#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#,
                &[0; 4],
            ),
            "tensor \"a\": bad header entry",
        );
        // Offsets.
        let h = r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        assert_err(
            &raw_file(h, &[0; 7]),
            "tensor \"w\": data_offsets [0, 8] are outside the data section (7 bytes)",
        );
        let h = r#"{"w":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}"#;
        assert_err(&raw_file(h, &[0; 8]), "data_offsets [4, 0] are outside");
        // Size mismatch.
        let h = r#"{"w":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,10]}}"#;
        assert_err(
            &raw_file(h, &[0; 10]),
            "tensor \"w\": dtype BF16 shape [2, 3] needs 12 bytes, data_offsets [0, 10] span 10",
        );
        // Shape overflow.
        let h = r#"{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}"#;
        assert_err(&raw_file(h, &[0; 4]), "byte size of shape");
        // Metadata must map strings to strings.
        let h = r#"{"__metadata__":{"n":3}}"#;
        assert_err(
            &raw_file(h, &[]),
            "__metadata__ entry \"n\" is 3, expected a string",
        );
        assert_err(
            &raw_file(r#"{"__metadata__":[]}"#, &[]),
            "__metadata__ is not an object",
        );
    }

    #[test]
    fn every_truncation_is_an_error() {
        let w = f32_bytes(&[1.0, 2.0]);
        let file = st_file(
            &[("a", "F32", &[2], &w), ("b", "U8", &[3], &[1, 2, 3])],
            &[],
        );
        for len in 0..file.len() {
            assert!(parse(&file[..len]).is_err(), "prefix {len}");
        }
        assert!(parse(&file).is_ok());
    }

    fn sharded_dir(tag: &str, index: serde_json::Value) -> TempDir {
        let dir = TempDir::new(tag);
        let a = f32_bytes(&[1.0, 2.0]);
        let b = f32_bytes(&[3.0]);
        dir.write(
            "model-00001-of-00002.safetensors",
            &st_file(
                &[("x.weight", "F32", &[2], &a), ("extra", "U8", &[1], &[9])],
                &[],
            ),
        );
        dir.write(
            "model-00002-of-00002.safetensors",
            &st_file(&[("y.weight", "F32", &[1], &b)], &[("format", "pt")]),
        );
        dir.write(INDEX_FILE, index.to_string().as_bytes());
        dir
    }

    #[test]
    fn sharded_checkpoint() {
        let dir = sharded_dir(
            "sharded",
            json!({
                "metadata": {"total_size": 12},
                "weight_map": {
                    "x.weight": "model-00001-of-00002.safetensors",
                    "y.weight": "model-00002-of-00002.safetensors",
                }
            }),
        );
        // A stray model.safetensors is ignored when an index exists.
        dir.write(SINGLE_FILE, b"garbage");
        let ck = HfCheckpoint::open_dir(&dir.0).unwrap();
        assert_eq!(ck.files.len(), 2);
        let (f, t) = ck.get("y.weight").unwrap();
        assert!(f.path.ends_with("model-00002-of-00002.safetensors"));
        assert_eq!(f.tensor_data(t), &f32_bytes(&[3.0])[..]);
        let (f, t) = ck.get("x.weight").unwrap();
        assert_eq!(f.tensor_data(t), &f32_bytes(&[1.0, 2.0])[..]);
        // Present in a shard but not in the weight map: still reachable.
        assert!(ck.get("extra").is_some());
        let mut names: Vec<_> = ck.names().collect();
        names.sort();
        assert_eq!(names, ["extra", "x.weight", "y.weight"]);
        assert_eq!(ck.len(), 3);
    }

    #[test]
    fn sharded_errors() {
        let shard1 = "model-00001-of-00002.safetensors";
        // The weight map names a tensor its shard lacks.
        let dir = sharded_dir("missing", json!({"weight_map": {"y.weight": shard1}}));
        let e = HfCheckpoint::open_dir(&dir.0).unwrap_err().to_string();
        assert!(
            e.contains(&format!(
                "weight_map puts tensor \"y.weight\" in \"{shard1}\", which does not contain it"
            )),
            "{e}"
        );
        assert!(e.contains(INDEX_FILE), "{e}");
        // Path traversal and other non-plain names.
        for bad in [
            "../model.safetensors",
            "/etc/passwd",
            "sub/x.safetensors",
            "..",
            ".",
            "a\\b",
            "",
        ] {
            let dir = sharded_dir("traversal", json!({"weight_map": {"x.weight": bad}}));
            let e = HfCheckpoint::open_dir(&dir.0).unwrap_err().to_string();
            assert!(e.contains("not a plain file name"), "{bad:?}: {e}");
        }
        // Missing shard file.
        let dir = sharded_dir(
            "noshard",
            json!({"weight_map": {"x.weight": "gone.safetensors"}}),
        );
        let e = HfCheckpoint::open_dir(&dir.0).unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e}");
        assert!(e.to_string().contains("gone.safetensors"), "{e}");
        // Bad index JSON.
        let dir = sharded_dir("badjson", json!({"weight_map": ["x"]}));
        let e = HfCheckpoint::open_dir(&dir.0).unwrap_err().to_string();
        assert!(e.contains("bad shard index JSON"), "{e}");
        let dir = sharded_dir("nomap", json!({"metadata": {}}));
        let e = HfCheckpoint::open_dir(&dir.0).unwrap_err().to_string();
        assert!(e.contains("missing field `weight_map`"), "{e}");
        // A malformed shard names the shard.
        let dir = sharded_dir("badshard", json!({"weight_map": {"z": "bad.safetensors"}}));
        dir.write("bad.safetensors", &raw_file("{", &[]));
        let e = HfCheckpoint::open_dir(&dir.0).unwrap_err().to_string();
        assert!(
            e.contains("bad.safetensors: malformed file: header is not valid JSON"),
            "{e}"
        );
    }

    #[test]
    fn empty_dir_names_both_files() {
        let dir = TempDir::new("empty");
        let e = HfCheckpoint::open_dir(&dir.0).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::Io { .. }));
        assert!(msg.contains(&*dir.0.to_string_lossy()), "{msg}");
        assert!(
            msg.contains(INDEX_FILE) && msg.contains(SINGLE_FILE),
            "{msg}"
        );
    }
}
