//! GGUF v2/v3 reader and writer (little-endian files; the layout of ggml's `docs/gguf.md`).
//!
//! File layout:
//!
//! ```text
//! u32 magic "GGUF" | u32 version | u64 tensor_count | u64 metadata_kv_count
//! metadata_kv_count × { string key | u32 value_type | value }
//! tensor_count × { string name | u32 n_dims | n_dims × u64 ne | u32 ggml_type | u64 offset }
//! padding to `general.alignment` (default 32)
//! tensor data; each tensor at data_offset + offset, offset a multiple of the alignment
//! ```
//!
//! Strings are a u64 byte length followed by UTF-8 bytes (no terminator). Arrays are a u32
//! element type, a u64 count and the elements; an array of arrays holds, per element, its own
//! element type, count and elements.
//!
//! [`GgufFile::open`] maps the file and parses only the header: tensor bytes are never
//! touched at open (the mapping is lazy), but every tensor's byte range is validated against
//! the file. Every count, length and offset read from the file is bounds-checked with checked
//! arithmetic, so no file content can make the reader panic or allocate more than the file
//! could describe.
//!
//! Tensor types: besides moela's own [`DType`]s the reader knows the block geometry of the
//! other llama.cpp types (Q4_1, Q5_0, Q5_1, Q8_1, Q8_K, the IQ types, ...), so their
//! byte ranges are validated too; a model loader reports [`Error::UnsupportedType`] for them
//! when it needs one. A type id the reader does not know at all does not fail the open either:
//! its tensor gets an empty `data` range at its validated start offset (see
//! [`GgufTensorInfo::size_known`]).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use crate::error::{Error, Result};
use crate::tensor::dtype::{ggml_type_name, DType};

/// `"GGUF"` read as a little-endian u32.
pub const GGUF_MAGIC: u32 = u32::from_le_bytes(*b"GGUF");
/// The version [`write_gguf`] writes.
pub const GGUF_VERSION: u32 = 3;
/// Alignment used when the file has no `general.alignment`.
pub const GGUF_DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's `GGML_MAX_DIMS`.
pub const GGUF_MAX_DIMS: usize = 4;
/// Key of the alignment entry.
pub const KEY_ALIGNMENT: &str = "general.alignment";

/// Longest string value accepted (a chat template is a few KiB; a merges entry a few bytes).
const MAX_STRING_LEN: u64 = 64 << 20;
/// Longest key or tensor name accepted by the reader (the spec caps keys at 2^16 - 1).
const MAX_NAME_LEN: u64 = 65_535;
/// Longest tensor name llama.cpp accepts (`GGML_MAX_NAME` - 1); enforced by the writer.
const MAX_WRITE_TENSOR_NAME: usize = 63;
/// Deepest nesting of arrays inside arrays accepted.
const MAX_ARRAY_DEPTH: u32 = 4;
/// Smallest possible encodings, used to reject absurd counts before allocating.
const MIN_KV_BYTES: u64 = 8 + 4 + 1; // key length, value type, smallest value
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 4 + 8; // name length, n_dims, type, offset
const HEADER_BYTES: usize = 4 + 4 + 8 + 8;

// GGUF metadata value type ids.
const T_U8: u32 = 0;
const T_I8: u32 = 1;
const T_U16: u32 = 2;
const T_I16: u32 = 3;
const T_U32: u32 = 4;
const T_I32: u32 = 5;
const T_F32: u32 = 6;
const T_BOOL: u32 = 7;
const T_STRING: u32 = 8;
const T_ARRAY: u32 = 9;
const T_U64: u32 = 10;
const T_I64: u32 = 11;
const T_F64: u32 = 12;

fn value_type_name(t: u32) -> String {
    const NAMES: [&str; 13] = [
        "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64",
        "f64",
    ];
    match NAMES.get(t as usize) {
        Some(n) => (*n).to_string(),
        None => format!("unknown value type {t}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(GgufArray),
}

/// A typed metadata array. Arrays of numbers are stored as plain vectors, so a 128k-entry
/// token-score or token-type array costs one allocation. An array of arrays may mix element
/// types between its inner arrays, as the format allows.
#[derive(Clone, Debug, PartialEq)]
pub enum GgufArray {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bool(Vec<bool>),
    String(Vec<String>),
    Array(Vec<GgufArray>),
}

impl GgufValue {
    /// The GGUF value type id.
    pub fn type_id(&self) -> u32 {
        match self {
            GgufValue::U8(_) => T_U8,
            GgufValue::I8(_) => T_I8,
            GgufValue::U16(_) => T_U16,
            GgufValue::I16(_) => T_I16,
            GgufValue::U32(_) => T_U32,
            GgufValue::I32(_) => T_I32,
            GgufValue::U64(_) => T_U64,
            GgufValue::I64(_) => T_I64,
            GgufValue::F32(_) => T_F32,
            GgufValue::F64(_) => T_F64,
            GgufValue::Bool(_) => T_BOOL,
            GgufValue::String(_) => T_STRING,
            GgufValue::Array(_) => T_ARRAY,
        }
    }

    /// Short type description for error messages ("u32", "array of string").
    pub fn type_name(&self) -> String {
        match self {
            GgufValue::Array(a) => format!("array of {}", value_type_name(a.elem_type_id())),
            v => value_type_name(v.type_id()),
        }
    }

    /// Any integer value as i128 (lossless for every integer type).
    fn as_i128(&self) -> Option<i128> {
        Some(match *self {
            GgufValue::U8(v) => v.into(),
            GgufValue::I8(v) => v.into(),
            GgufValue::U16(v) => v.into(),
            GgufValue::I16(v) => v.into(),
            GgufValue::U32(v) => v.into(),
            GgufValue::I32(v) => v.into(),
            GgufValue::U64(v) => v.into(),
            GgufValue::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// An integer of any width or signedness whose value fits in u32 (writers differ in the
    /// integer types they use for hyper-parameters).
    pub fn as_u32(&self) -> Option<u32> {
        self.as_i128().and_then(|v| u32::try_from(v).ok())
    }

    /// An integer of any width or signedness whose value fits in u64.
    pub fn as_u64(&self) -> Option<u64> {
        self.as_i128().and_then(|v| u64::try_from(v).ok())
    }

    /// An integer of any width or signedness whose value fits in i64.
    pub fn as_i64(&self) -> Option<i64> {
        self.as_i128().and_then(|v| i64::try_from(v).ok())
    }

    /// An F32, or an F64 narrowed to f32.
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            GgufValue::F32(v) => Some(v),
            GgufValue::F64(v) => Some(v as f32),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            GgufValue::Bool(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&GgufArray> {
        match self {
            GgufValue::Array(a) => Some(a),
            _ => None,
        }
    }

    /// An array of integers that all fit in u32 (borrowed when stored as u32).
    pub fn as_u32_array(&self) -> Option<Cow<'_, [u32]>> {
        self.as_array()?.as_u32s()
    }

    /// An array of strings.
    pub fn as_str_array(&self) -> Option<&[String]> {
        match self.as_array()? {
            GgufArray::String(v) => Some(v),
            _ => None,
        }
    }

    /// An array of F32 (borrowed) or F64 (narrowed to f32).
    pub fn as_f32_array(&self) -> Option<Cow<'_, [f32]>> {
        match self.as_array()? {
            GgufArray::F32(v) => Some(Cow::Borrowed(v)),
            GgufArray::F64(v) => Some(Cow::Owned(v.iter().map(|x| *x as f32).collect())),
            _ => None,
        }
    }
}

impl GgufArray {
    /// The GGUF value type id of the elements.
    pub fn elem_type_id(&self) -> u32 {
        match self {
            GgufArray::U8(_) => T_U8,
            GgufArray::I8(_) => T_I8,
            GgufArray::U16(_) => T_U16,
            GgufArray::I16(_) => T_I16,
            GgufArray::U32(_) => T_U32,
            GgufArray::I32(_) => T_I32,
            GgufArray::U64(_) => T_U64,
            GgufArray::I64(_) => T_I64,
            GgufArray::F32(_) => T_F32,
            GgufArray::F64(_) => T_F64,
            GgufArray::Bool(_) => T_BOOL,
            GgufArray::String(_) => T_STRING,
            GgufArray::Array(_) => T_ARRAY,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            GgufArray::U8(v) => v.len(),
            GgufArray::I8(v) => v.len(),
            GgufArray::U16(v) => v.len(),
            GgufArray::I16(v) => v.len(),
            GgufArray::U32(v) => v.len(),
            GgufArray::I32(v) => v.len(),
            GgufArray::U64(v) => v.len(),
            GgufArray::I64(v) => v.len(),
            GgufArray::F32(v) => v.len(),
            GgufArray::F64(v) => v.len(),
            GgufArray::Bool(v) => v.len(),
            GgufArray::String(v) => v.len(),
            GgufArray::Array(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements as u32 when they are integers that all fit (borrowed when stored as u32).
    pub fn as_u32s(&self) -> Option<Cow<'_, [u32]>> {
        fn conv<T: Copy>(v: &[T]) -> Option<Cow<'static, [u32]>>
        where
            u32: TryFrom<T>,
        {
            v.iter()
                .map(|x| u32::try_from(*x).ok())
                .collect::<Option<Vec<u32>>>()
                .map(Cow::Owned)
        }
        match self {
            GgufArray::U32(v) => Some(Cow::Borrowed(v)),
            GgufArray::U8(v) => conv(v),
            GgufArray::I8(v) => conv(v),
            GgufArray::U16(v) => conv(v),
            GgufArray::I16(v) => conv(v),
            GgufArray::I32(v) => conv(v),
            GgufArray::U64(v) => conv(v),
            GgufArray::I64(v) => conv(v),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tensor geometry
// ---------------------------------------------------------------------------------------------

/// `(elements per block, bytes per block)` of the ggml types whose layout is known here:
/// moela's [`DType`]s and the other llama.cpp types (block sizes from ggml's type traits; ids
/// retired by ggml, such as 4, 5 and 31-33, are unknown).
pub fn ggml_type_geometry(t: u32) -> Option<(u64, u64)> {
    if let Some(d) = DType::from_ggml_type(t) {
        return Some((d.block_size() as u64, d.block_bytes() as u64));
    }
    Some(match t {
        3 => (32, 20),   // Q4_1
        6 => (32, 22),   // Q5_0
        7 => (32, 24),   // Q5_1
        9 => (32, 40),   // Q8_1
        10 => (256, 84), // Q2_K
        11 => (256, 110),
        12 => (256, 144),
        13 => (256, 176),
        14 => (256, 210),
        15 => (256, 292), // Q8_K
        16 => (256, 66),  // IQ2_XXS
        17 => (256, 74),
        18 => (256, 98),
        19 => (256, 50),
        20 => (32, 18), // IQ4_NL
        21 => (256, 110),
        22 => (256, 82),
        23 => (256, 136),
        24 => (1, 1), // I8
        25 => (1, 2),
        26 => (1, 4),
        27 => (1, 8),
        28 => (1, 8), // F64
        29 => (256, 56),
        34 => (256, 54), // TQ1_0
        35 => (256, 66),
        39 => (32, 17),  // MXFP4
        40 => (64, 36),  // NVFP4
        41 => (128, 18), // Q1_0
        42 => (64, 18),  // Q2_0
        _ => return None,
    })
}

/// Bytes of a tensor with dims `ne` (ggml order) of type `t`; `Ok(None)` for an unknown type.
fn tensor_nbytes(ne: &[u64], t: u32) -> std::result::Result<Option<u64>, String> {
    let n = ne
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("element count of dims {ne:?} overflows u64"))?;
    let Some((bs, bb)) = ggml_type_geometry(t) else {
        return Ok(None);
    };
    let ne0 = ne.first().copied().unwrap_or(1);
    if ne0 % bs != 0 {
        return Err(format!(
            "first dimension {ne0} is not a multiple of the {bs}-element block of type {}",
            ggml_type_name(t)
        ));
    }
    (n / bs)
        .checked_mul(bb)
        .map(Some)
        .ok_or_else(|| format!("byte size of dims {ne:?} overflows u64"))
}

fn align_up(x: u64, align: u64) -> Option<u64> {
    debug_assert!(align.is_power_of_two());
    x.checked_add(align - 1).map(|v| v & !(align - 1))
}

// ---------------------------------------------------------------------------------------------
// Reader
// ---------------------------------------------------------------------------------------------

/// One tensor info from the header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GgufTensorInfo {
    pub name: String,
    /// Dimensions in ggml order: `dims[0]` (ne0) is the innermost, contiguous one.
    pub dims: Vec<u64>,
    pub ggml_type: u32,
    /// Offset relative to the start of the data section, as stored.
    pub offset: u64,
    /// Absolute byte range in the file, validated to lie inside it. Empty for a type whose
    /// layout is unknown (`size_known() == false`): then only its start is meaningful.
    pub data: Range<usize>,
}

impl GgufTensorInfo {
    /// moela's type for this tensor, if it has one.
    pub fn dtype(&self) -> Option<DType> {
        DType::from_ggml_type(self.ggml_type)
    }

    /// Number of elements (cannot overflow: checked at open).
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Row-major shape (outermost first), the reverse of `dims`, as in numpy/safetensors.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    /// Whether the byte size of the type is known, so `data` covers the whole tensor.
    pub fn size_known(&self) -> bool {
        ggml_type_geometry(self.ggml_type).is_some()
    }
}

/// A memory-mapped GGUF file with its parsed header.
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: Vec<(String, GgufValue)>,
    pub tensors: Vec<GgufTensorInfo>,
    pub alignment: u64,
    /// Absolute offset of the data section (the aligned end of the header).
    pub data_offset: u64,
    pub map: Arc<Mmap>,
    meta_index: HashMap<String, usize>,
    tensor_index: HashMap<String, usize>,
}

impl fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata_entries", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_offset)
            .field("file_len", &self.map.len())
            .finish()
    }
}

/// Maps `path` read-only.
pub(crate) fn map_file(path: &Path) -> Result<Mmap> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the mapping is read-only and private to this process; moela never writes
    // through it. Like every mmap-based loader it relies on the file not being truncated or
    // modified by another process while mapped (that would make reads fault or change
    // underneath). All offsets into the mapping are bounds-checked against its length.
    unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))
}

impl GgufFile {
    /// Maps the file and parses and validates its header. Tensor data is not read.
    pub fn open(path: &Path) -> Result<GgufFile> {
        let map = map_file(path)?;
        let h = parse(&map).map_err(|msg| Error::format(path, msg))?;
        Ok(Self::from_header(path, h, map))
    }

    /// Parses and validates a GGUF header held in memory (for fuzzing and for callers that
    /// already hold the bytes). `name` is used as the path in error messages. The returned
    /// file owns an anonymous copy of `bytes`, so tensor data can be read through it as well.
    pub fn parse_bytes(bytes: &[u8], name: &str) -> Result<GgufFile> {
        let path = Path::new(name);
        let h = parse(bytes).map_err(|msg| Error::format(path, msg))?;
        let mut anon =
            memmap2::MmapMut::map_anon(bytes.len().max(1)).map_err(|e| Error::io(path, e))?;
        anon[..bytes.len()].copy_from_slice(bytes);
        let map = anon.make_read_only().map_err(|e| Error::io(path, e))?;
        Ok(Self::from_header(path, h, map))
    }

    fn from_header(path: &Path, h: Header, map: Mmap) -> GgufFile {
        let tensor_index = h
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        let meta_index = h
            .metadata
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (k.clone(), i))
            .collect();
        GgufFile {
            path: path.to_path_buf(),
            version: h.version,
            metadata: h.metadata,
            tensors: h.tensors,
            alignment: h.alignment,
            data_offset: h.data_offset,
            map: Arc::new(map),
            meta_index,
            tensor_index,
        }
    }

    /// The metadata value under `key`.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.meta_index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The bytes of `t` (a tensor of this file; an info from elsewhere whose range is not
    /// inside this mapping gives an empty slice).
    pub fn tensor_data(&self, t: &GgufTensorInfo) -> &[u8] {
        self.map.get(t.data.clone()).unwrap_or(&[])
    }

    /// A required metadata value, with an error naming the key when it is missing.
    pub fn require(&self, key: &str) -> Result<&GgufValue> {
        self.get(key)
            .ok_or_else(|| Error::config(&self.path, key, "missing from the GGUF metadata"))
    }
}

struct Header {
    version: u32,
    metadata: Vec<(String, GgufValue)>,
    tensors: Vec<GgufTensorInfo>,
    alignment: u64,
    data_offset: u64,
}

/// A parse failure below the item level; `truncated` selects the message form.
struct PErr {
    truncated: bool,
    msg: String,
}

type PResult<T> = std::result::Result<T, PErr>;

fn bad<T>(msg: impl Into<String>) -> PResult<T> {
    Err(PErr {
        truncated: false,
        msg: msg.into(),
    })
}

/// Adds the item being read to a low-level message.
fn in_item(e: PErr, item: impl FnOnce() -> String) -> String {
    if e.truncated {
        format!("truncated while reading {}: {}", item(), e.msg)
    } else {
        format!("{}: {}", item(), e.msg)
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: u64, what: &str) -> PResult<&'a [u8]> {
        let rem = self.remaining();
        match usize::try_from(n) {
            Ok(n) if n <= rem => {
                let s = &self.buf[self.pos..self.pos + n];
                self.pos += n;
                Ok(s)
            }
            _ => Err(PErr {
                truncated: true,
                msg: format!(
                    "{what} needs {n} bytes at offset {}, only {rem} left in the file",
                    self.pos
                ),
            }),
        }
    }

    fn array<const N: usize>(&mut self, what: &str) -> PResult<[u8; N]> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> PResult<u32> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> PResult<u64> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn string(&mut self, what: &str, max: u64) -> PResult<String> {
        let at = self.pos;
        let len = self.u64(&format!("{what} length"))?;
        if len > max {
            return bad(format!(
                "{what} at offset {at} claims {len} bytes, more than the {max}-byte limit"
            ));
        }
        let bytes = self.take(len, what)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_string()),
            Err(e) => bad(format!("{what} at offset {at} is not valid UTF-8 ({e})")),
        }
    }

    /// Reads `n` fixed-size elements after checking they fit in the file.
    fn fixed<const N: usize, T>(&mut self, n: u64, conv: impl Fn([u8; N]) -> T) -> PResult<Vec<T>> {
        let bytes = n
            .checked_mul(N as u64)
            .ok_or_else(|| PErr {
                truncated: true,
                msg: format!("array of {n} elements of {N} bytes overflows"),
            })
            .and_then(|b| self.take(b, &format!("array of {n} elements of {N} bytes")))?;
        Ok(bytes
            .chunks_exact(N)
            .map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                conv(a)
            })
            .collect())
    }
}

fn read_value(c: &mut Cursor<'_>, ty: u32) -> PResult<GgufValue> {
    Ok(match ty {
        T_U8 => GgufValue::U8(u8::from_le_bytes(c.array("u8 value")?)),
        T_I8 => GgufValue::I8(i8::from_le_bytes(c.array("i8 value")?)),
        T_U16 => GgufValue::U16(u16::from_le_bytes(c.array("u16 value")?)),
        T_I16 => GgufValue::I16(i16::from_le_bytes(c.array("i16 value")?)),
        T_U32 => GgufValue::U32(u32::from_le_bytes(c.array("u32 value")?)),
        T_I32 => GgufValue::I32(i32::from_le_bytes(c.array("i32 value")?)),
        T_U64 => GgufValue::U64(u64::from_le_bytes(c.array("u64 value")?)),
        T_I64 => GgufValue::I64(i64::from_le_bytes(c.array("i64 value")?)),
        T_F32 => GgufValue::F32(f32::from_le_bytes(c.array("f32 value")?)),
        T_F64 => GgufValue::F64(f64::from_le_bytes(c.array("f64 value")?)),
        T_BOOL => GgufValue::Bool(c.array::<1>("bool value")?[0] != 0),
        T_STRING => GgufValue::String(c.string("string value", MAX_STRING_LEN)?),
        T_ARRAY => GgufValue::Array(read_array(c, 1)?),
        t => return bad(format!("unknown value type {t}")),
    })
}

/// Smallest encoding of one element of type `t` (for rejecting absurd counts).
fn min_elem_bytes(t: u32) -> Option<u64> {
    Some(match t {
        T_U8 | T_I8 | T_BOOL => 1,
        T_U16 | T_I16 => 2,
        T_U32 | T_I32 | T_F32 => 4,
        T_U64 | T_I64 | T_F64 | T_STRING => 8,
        T_ARRAY => 12,
        _ => return None,
    })
}

fn read_array(c: &mut Cursor<'_>, depth: u32) -> PResult<GgufArray> {
    if depth > MAX_ARRAY_DEPTH {
        return bad(format!(
            "arrays nested more than {MAX_ARRAY_DEPTH} deep at offset {}",
            c.pos
        ));
    }
    let at = c.pos;
    let et = c.u32("array element type")?;
    let n = c.u64("array length")?;
    let Some(min) = min_elem_bytes(et) else {
        return bad(format!(
            "array at offset {at} has unknown element type {et}"
        ));
    };
    let rem = c.remaining() as u64;
    if n > rem / min {
        return Err(PErr {
            truncated: true,
            msg: format!(
                "array at offset {at} claims {n} elements of type {} (at least {min} bytes \
                 each), only {rem} bytes left in the file",
                value_type_name(et)
            ),
        });
    }
    Ok(match et {
        T_U8 => GgufArray::U8(c.fixed(n, u8::from_le_bytes)?),
        T_I8 => GgufArray::I8(c.fixed(n, i8::from_le_bytes)?),
        T_U16 => GgufArray::U16(c.fixed(n, u16::from_le_bytes)?),
        T_I16 => GgufArray::I16(c.fixed(n, i16::from_le_bytes)?),
        T_U32 => GgufArray::U32(c.fixed(n, u32::from_le_bytes)?),
        T_I32 => GgufArray::I32(c.fixed(n, i32::from_le_bytes)?),
        T_U64 => GgufArray::U64(c.fixed(n, u64::from_le_bytes)?),
        T_I64 => GgufArray::I64(c.fixed(n, i64::from_le_bytes)?),
        T_F32 => GgufArray::F32(c.fixed(n, f32::from_le_bytes)?),
        T_F64 => GgufArray::F64(c.fixed(n, f64::from_le_bytes)?),
        T_BOOL => GgufArray::Bool(c.fixed(n, |[b]: [u8; 1]| b != 0)?),
        T_STRING => {
            // n <= remaining / 8, so this allocation is bounded by the file size.
            let mut v = Vec::with_capacity(n as usize);
            for i in 0..n {
                v.push(c.string(&format!("string {i} of {n}"), MAX_STRING_LEN)?);
            }
            GgufArray::String(v)
        }
        _ => {
            let mut v = Vec::with_capacity(n as usize);
            for _ in 0..n {
                v.push(read_array(c, depth + 1)?);
            }
            GgufArray::Array(v)
        }
    })
}

/// Parses and validates the header of a GGUF file held in `buf`. Errors are messages
/// without the path.
fn parse(buf: &[u8]) -> std::result::Result<Header, String> {
    let file_len = buf.len();
    if file_len < HEADER_BYTES {
        return Err(format!(
            "file is {file_len} bytes, too short for a GGUF header ({HEADER_BYTES} bytes)"
        ));
    }
    let mut c = Cursor { buf, pos: 0 };
    let fixed = |e: PErr| e.msg; // cannot fail: length checked above
    let magic = c.u32("magic").map_err(fixed)?;
    if magic != GGUF_MAGIC {
        let b = magic.to_le_bytes();
        return Err(format!(
            "bad magic 0x{magic:08x} (bytes {:?}), expected GGUF",
            String::from_utf8_lossy(&b)
        ));
    }
    let version = c.u32("version").map_err(fixed)?;
    match version {
        2 | 3 => {}
        1 => {
            return Err(
                "unsupported GGUF version 1 (an early format with 32-bit counts; \
                 convert the model again)"
                    .into(),
            )
        }
        v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => {
            return Err(format!(
                "unsupported GGUF version {v}: this is a big-endian GGUF, moela reads \
                 little-endian files only"
            ))
        }
        v => return Err(format!("unsupported GGUF version {v} (supported: 2, 3)")),
    }
    let n_tensors = c.u64("tensor count").map_err(fixed)?;
    let n_kv = c.u64("metadata entry count").map_err(fixed)?;
    let rem = c.remaining() as u64;
    if n_kv > rem / MIN_KV_BYTES {
        return Err(format!(
            "metadata entry count {n_kv} is impossible: {rem} bytes follow the header, an \
             entry takes at least {MIN_KV_BYTES}"
        ));
    }
    if n_tensors > rem / MIN_TENSOR_INFO_BYTES {
        return Err(format!(
            "tensor count {n_tensors} is impossible: {rem} bytes follow the header, a tensor \
             info takes at least {MIN_TENSOR_INFO_BYTES}"
        ));
    }

    // Metadata. The counts are bounded by the file size, so reserving is safe.
    let mut metadata: Vec<(String, GgufValue)> = Vec::with_capacity(n_kv as usize);
    let mut seen_keys: HashMap<String, u64> = HashMap::with_capacity(n_kv as usize);
    for i in 0..n_kv {
        let item = |key: Option<&str>| match key {
            Some(k) => format!("metadata entry {i} of {n_kv} (key {k:?})"),
            None => format!("metadata entry {i} of {n_kv}"),
        };
        let key = c
            .string("key", MAX_NAME_LEN)
            .map_err(|e| in_item(e, || item(None)))?;
        let value = c
            .u32("value type")
            .and_then(|t| read_value(&mut c, t))
            .map_err(|e| in_item(e, || item(Some(&key))))?;
        if let Some(first) = seen_keys.insert(key.clone(), i) {
            return Err(format!(
                "{}: duplicate key (first at entry {first})",
                item(Some(&key))
            ));
        }
        metadata.push((key, value));
    }

    let alignment = match seen_keys.get(KEY_ALIGNMENT) {
        None => GGUF_DEFAULT_ALIGNMENT,
        Some(&i) => {
            let v = &metadata[i as usize].1;
            match v.as_u32() {
                Some(a) if a.is_power_of_two() => a as u64,
                _ => {
                    return Err(format!(
                        "{KEY_ALIGNMENT} is {v:?}, expected a power of two (u32)"
                    ))
                }
            }
        }
    };

    // Tensor infos.
    struct Raw {
        name: String,
        dims: Vec<u64>,
        ggml_type: u32,
        offset: u64,
    }
    let mut raws: Vec<Raw> = Vec::with_capacity(n_tensors as usize);
    let mut seen_names: HashMap<String, u64> = HashMap::with_capacity(n_tensors as usize);
    for i in 0..n_tensors {
        let item = |name: Option<&str>| match name {
            Some(n) => format!("tensor info {i} of {n_tensors} (name {n:?})"),
            None => format!("tensor info {i} of {n_tensors}"),
        };
        let name = c
            .string("name", MAX_NAME_LEN)
            .map_err(|e| in_item(e, || item(None)))?;
        let ctx = |e: PErr| in_item(e, || item(Some(&name)));
        let n_dims = c.u32("n_dims").map_err(ctx)?;
        if n_dims as usize > GGUF_MAX_DIMS {
            return Err(format!(
                "{}: n_dims {n_dims} exceeds the maximum of {GGUF_MAX_DIMS}",
                item(Some(&name))
            ));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for d in 0..n_dims {
            dims.push(c.u64(&format!("dimension {d}")).map_err(ctx)?);
        }
        let ggml_type = c.u32("type").map_err(ctx)?;
        let offset = c.u64("offset").map_err(ctx)?;
        if let Some(d) = dims.iter().position(|&d| d == 0) {
            return Err(format!(
                "{}: dimension {d} is 0 (dims {dims:?})",
                item(Some(&name))
            ));
        }
        if let Some(first) = seen_names.insert(name.clone(), i) {
            return Err(format!(
                "{}: duplicate tensor name (first at tensor info {first})",
                item(Some(&name))
            ));
        }
        raws.push(Raw {
            name,
            dims,
            ggml_type,
            offset,
        });
    }

    let header_end = c.pos as u64;
    let data_offset = align_up(header_end, alignment)
        .ok_or_else(|| "data section offset overflows".to_string())?;

    let mut tensors = Vec::with_capacity(raws.len());
    for (i, r) in raws.into_iter().enumerate() {
        let item = || format!("tensor {i} of {n_tensors} ({:?})", r.name);
        let nbytes = tensor_nbytes(&r.dims, r.ggml_type)
            .map_err(|m| format!("{}: {m} (dims {:?})", item(), r.dims))?;
        if r.offset % alignment != 0 {
            return Err(format!(
                "{}: offset {} is not a multiple of the alignment {alignment}",
                item(),
                r.offset
            ));
        }
        let len = nbytes.unwrap_or(0);
        let range = data_offset
            .checked_add(r.offset)
            .and_then(|s| s.checked_add(len).map(|e| (s, e)))
            .filter(|&(_, e)| e <= file_len as u64);
        let Some((start, end)) = range else {
            return Err(format!(
                "{}: data at offset {} + {len} bytes of type {} (dims {:?}) runs past the end \
                 of the file ({file_len} bytes, data section at {data_offset})",
                item(),
                r.offset,
                ggml_type_name(r.ggml_type),
                r.dims
            ));
        };
        // Both fit in usize: end <= file_len.
        tensors.push(GgufTensorInfo {
            name: r.name,
            dims: r.dims,
            ggml_type: r.ggml_type,
            offset: r.offset,
            data: start as usize..end as usize,
        });
    }

    // Tensor data must not overlap: a crafted file could otherwise alias one tensor's bytes
    // as another's. Empty ranges (unknown types) are skipped.
    let mut by_start: Vec<usize> = (0..tensors.len())
        .filter(|&i| !tensors[i].data.is_empty())
        .collect();
    by_start.sort_by_key(|&i| (tensors[i].data.start, tensors[i].data.end));
    for w in by_start.windows(2) {
        let (a, b) = (&tensors[w[0]], &tensors[w[1]]);
        if b.data.start < a.data.end {
            return Err(format!(
                "tensor {:?} (bytes {}..{}) overlaps tensor {:?} (bytes {}..{})",
                b.name, b.data.start, b.data.end, a.name, a.data.start, a.data.end
            ));
        }
    }

    Ok(Header {
        version,
        metadata,
        tensors,
        alignment,
        data_offset,
    })
}

// ---------------------------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------------------------

/// A tensor to write: its header entry. The bytes come from the `data` callback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GgufTensorSpec {
    pub name: String,
    /// Dimensions in ggml order (`dims[0]` innermost).
    pub dims: Vec<u64>,
    pub ggml_type: u32,
}

/// Counts the bytes written through it.
struct Counting<W> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let k = self.inner.write(buf)?;
        self.n += k as u64;
        Ok(k)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn put_u32(w: &mut impl Write, v: u32) -> std::io::Result<()> {
    w.write_all(&v.to_le_bytes())
}

fn put_u64(w: &mut impl Write, v: u64) -> std::io::Result<()> {
    w.write_all(&v.to_le_bytes())
}

fn put_str(w: &mut impl Write, s: &str) -> std::io::Result<()> {
    put_u64(w, s.len() as u64)?;
    w.write_all(s.as_bytes())
}

fn put_value(w: &mut impl Write, v: &GgufValue) -> std::io::Result<()> {
    match v {
        GgufValue::U8(x) => w.write_all(&x.to_le_bytes()),
        GgufValue::I8(x) => w.write_all(&x.to_le_bytes()),
        GgufValue::U16(x) => w.write_all(&x.to_le_bytes()),
        GgufValue::I16(x) => w.write_all(&x.to_le_bytes()),
        GgufValue::U32(x) => w.write_all(&x.to_le_bytes()),
        GgufValue::I32(x) => w.write_all(&x.to_le_bytes()),
        GgufValue::U64(x) => w.write_all(&x.to_le_bytes()),
        GgufValue::I64(x) => w.write_all(&x.to_le_bytes()),
        GgufValue::F32(x) => w.write_all(&x.to_le_bytes()),
        GgufValue::F64(x) => w.write_all(&x.to_le_bytes()),
        GgufValue::Bool(x) => w.write_all(&[*x as u8]),
        GgufValue::String(s) => put_str(w, s),
        GgufValue::Array(a) => put_array(w, a),
    }
}

/// Element type, count and elements.
fn put_array(w: &mut impl Write, a: &GgufArray) -> std::io::Result<()> {
    fn all<T: Copy, const N: usize>(
        w: &mut impl Write,
        v: &[T],
        f: impl Fn(T) -> [u8; N],
    ) -> std::io::Result<()> {
        for x in v {
            w.write_all(&f(*x))?;
        }
        Ok(())
    }
    put_u32(w, a.elem_type_id())?;
    put_u64(w, a.len() as u64)?;
    match a {
        GgufArray::U8(v) => w.write_all(v),
        GgufArray::I8(v) => all(w, v, i8::to_le_bytes),
        GgufArray::U16(v) => all(w, v, u16::to_le_bytes),
        GgufArray::I16(v) => all(w, v, i16::to_le_bytes),
        GgufArray::U32(v) => all(w, v, u32::to_le_bytes),
        GgufArray::I32(v) => all(w, v, i32::to_le_bytes),
        GgufArray::U64(v) => all(w, v, u64::to_le_bytes),
        GgufArray::I64(v) => all(w, v, i64::to_le_bytes),
        GgufArray::F32(v) => all(w, v, f32::to_le_bytes),
        GgufArray::F64(v) => all(w, v, f64::to_le_bytes),
        GgufArray::Bool(v) => all(w, v, |b| [b as u8]),
        GgufArray::String(v) => v.iter().try_for_each(|s| put_str(w, s)),
        GgufArray::Array(v) => v.iter().try_for_each(|x| put_array(w, x)),
    }
}

fn array_depth(a: &GgufArray) -> u32 {
    match a {
        GgufArray::Array(v) => 1 + v.iter().map(array_depth).max().unwrap_or(0),
        _ => 1,
    }
}

fn pad(w: &mut Counting<impl Write>, alignment: u64) -> std::io::Result<()> {
    const ZEROS: [u8; 256] = [0; 256];
    let mut n = (alignment - w.n % alignment) % alignment;
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        w.write_all(&ZEROS[..k])?;
        n -= k as u64;
    }
    Ok(())
}

/// Writes a GGUF v3 file to `w`, streaming (only a 1 MiB buffer is held).
///
/// `path` names the destination in error messages. `metadata` is written in order; when it
/// lacks `general.alignment` and `alignment != 32`, that entry is appended (when present it
/// must equal `alignment`). Tensor offsets are computed from the sizes of the types (any type
/// [`ggml_type_geometry`] knows; an unknown type is an error), each tensor padded to
/// `alignment`. After the header, `data(i, w)` is called for each tensor in order and must write
/// exactly that tensor's bytes; the count is checked.
///
/// Validation (errors are [`Error::InvalidArg`] naming `path`): alignment a power of two that
/// fits u32; unique keys (at most 65535 bytes) and tensor names (at most 63 bytes, llama.cpp's
/// limit); 1 to 4 dims, each ≥ 1; `dims[0]` a multiple of the type's block size; arrays nested
/// at most 4 deep.
pub fn write_gguf<W: Write>(
    w: W,
    path: &Path,
    metadata: &[(String, GgufValue)],
    tensors: &[GgufTensorSpec],
    alignment: u64,
    mut data: impl FnMut(usize, &mut dyn Write) -> Result<()>,
) -> Result<()> {
    let invalid = |msg: String| Error::InvalidArg(format!("writing {}: {msg}", path.display()));
    if !alignment.is_power_of_two() || alignment > u32::MAX as u64 {
        return Err(invalid(format!(
            "alignment {alignment} is not a power of two that fits u32"
        )));
    }

    let mut keys = std::collections::HashSet::new();
    for (k, v) in metadata {
        if k.len() as u64 > MAX_NAME_LEN {
            return Err(invalid(format!(
                "metadata key of {} bytes is too long",
                k.len()
            )));
        }
        if !keys.insert(k.as_str()) {
            return Err(invalid(format!("duplicate metadata key {k:?}")));
        }
        if let GgufValue::Array(a) = v {
            if array_depth(a) > MAX_ARRAY_DEPTH {
                return Err(invalid(format!(
                    "metadata {k:?}: arrays nested more than {MAX_ARRAY_DEPTH} deep"
                )));
            }
        }
        if k == KEY_ALIGNMENT && v.as_u32().map(u64::from) != Some(alignment) {
            return Err(invalid(format!(
                "metadata {KEY_ALIGNMENT} is {v:?} but the alignment argument is {alignment}"
            )));
        }
    }
    let extra_alignment = (!keys.contains(KEY_ALIGNMENT) && alignment != GGUF_DEFAULT_ALIGNMENT)
        .then(|| (KEY_ALIGNMENT.to_string(), GgufValue::U32(alignment as u32)));

    // Sizes and offsets.
    let mut names = std::collections::HashSet::new();
    let mut layout = Vec::with_capacity(tensors.len()); // (offset, size)
    let mut next = 0u64;
    for (i, t) in tensors.iter().enumerate() {
        let item = format!("tensor {i} ({:?})", t.name);
        if t.name.len() > MAX_WRITE_TENSOR_NAME {
            return Err(invalid(format!(
                "{item}: name is {} bytes, llama.cpp accepts at most {MAX_WRITE_TENSOR_NAME}",
                t.name.len()
            )));
        }
        if !names.insert(t.name.as_str()) {
            return Err(invalid(format!("{item}: duplicate tensor name")));
        }
        if t.dims.is_empty() || t.dims.len() > GGUF_MAX_DIMS || t.dims.contains(&0) {
            return Err(invalid(format!(
                "{item}: dims {:?} must be 1 to {GGUF_MAX_DIMS} values, each at least 1",
                t.dims
            )));
        }
        let size = match tensor_nbytes(&t.dims, t.ggml_type) {
            Ok(Some(s)) => s,
            Ok(None) => {
                return Err(invalid(format!(
                    "{item}: cannot size tensors of type {}",
                    ggml_type_name(t.ggml_type)
                )))
            }
            Err(m) => return Err(invalid(format!("{item}: {m}"))),
        };
        layout.push((next, size));
        next = next
            .checked_add(size)
            .and_then(|e| align_up(e, alignment))
            .ok_or_else(|| invalid(format!("{item}: total size overflows u64")))?;
    }

    let io = |e: std::io::Error| Error::io(path, e);
    let mut w = Counting {
        inner: BufWriter::with_capacity(1 << 20, w),
        n: 0,
    };
    let n_kv = metadata.len() as u64 + extra_alignment.is_some() as u64;
    put_u32(&mut w, GGUF_MAGIC).map_err(io)?;
    put_u32(&mut w, GGUF_VERSION).map_err(io)?;
    put_u64(&mut w, tensors.len() as u64).map_err(io)?;
    put_u64(&mut w, n_kv).map_err(io)?;
    for (k, v) in metadata.iter().chain(extra_alignment.iter()) {
        put_str(&mut w, k).map_err(io)?;
        put_u32(&mut w, v.type_id()).map_err(io)?;
        put_value(&mut w, v).map_err(io)?;
    }
    for (t, &(offset, _)) in tensors.iter().zip(&layout) {
        put_str(&mut w, &t.name).map_err(io)?;
        put_u32(&mut w, t.dims.len() as u32).map_err(io)?;
        for &d in &t.dims {
            put_u64(&mut w, d).map_err(io)?;
        }
        put_u32(&mut w, t.ggml_type).map_err(io)?;
        put_u64(&mut w, offset).map_err(io)?;
    }
    pad(&mut w, alignment).map_err(io)?;

    for (i, (t, &(_, size))) in tensors.iter().zip(&layout).enumerate() {
        let start = w.n;
        data(i, &mut w)?;
        let wrote = w.n - start;
        if wrote != size {
            return Err(invalid(format!(
                "tensor {i} ({:?}): the data callback wrote {wrote} bytes, expected {size} \
                 ({} {:?})",
                t.name,
                ggml_type_name(t.ggml_type),
                t.dims
            )));
        }
        pad(&mut w, alignment).map_err(io)?;
    }
    w.flush().map_err(io)
}

/// [`write_gguf`] to a new file at `path` (created or truncated). On error the partial file is
/// removed.
pub fn write_gguf_file(
    path: &Path,
    metadata: &[(String, GgufValue)],
    tensors: &[GgufTensorSpec],
    alignment: u64,
    data: impl FnMut(usize, &mut dyn Write) -> Result<()>,
) -> Result<()> {
    let file = File::create(path).map_err(|e| Error::io(path, e))?;
    let r = write_gguf(&file, path, metadata, tensors, alignment, data);
    if r.is_err() {
        drop(file);
        let _ = std::fs::remove_file(path);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::quant::quantize_row;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A unique path in the temp dir, removed on drop.
    struct TempPath(PathBuf);
    impl TempPath {
        fn new(tag: &str) -> TempPath {
            static N: AtomicUsize = AtomicUsize::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            TempPath(std::env::temp_dir().join(format!(
                "moela-gguf-test-{}-{n}-{tag}.gguf",
                std::process::id()
            )))
        }
    }
    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// Little-endian byte builder for hand-made headers.
    #[derive(Default)]
    struct B(Vec<u8>);
    impl B {
        fn u32(mut self, v: u32) -> B {
            self.0.extend_from_slice(&v.to_le_bytes());
            self
        }
        fn u64(mut self, v: u64) -> B {
            self.0.extend_from_slice(&v.to_le_bytes());
            self
        }
        fn bytes(mut self, b: &[u8]) -> B {
            self.0.extend_from_slice(b);
            self
        }
        fn str(self, s: &str) -> B {
            self.u64(s.len() as u64).bytes(s.as_bytes())
        }
        fn header(n_tensors: u64, n_kv: u64) -> B {
            B::default().bytes(b"GGUF").u32(3).u64(n_tensors).u64(n_kv)
        }
        /// A tensor info.
        fn tensor(self, name: &str, dims: &[u64], ty: u32, offset: u64) -> B {
            let mut b = self.str(name).u32(dims.len() as u32);
            for &d in dims {
                b = b.u64(d);
            }
            b.u32(ty).u64(offset)
        }
        fn pad_to(mut self, align: usize) -> B {
            while self.0.len() % align != 0 {
                self.0.push(0);
            }
            self
        }
    }

    fn parse_err(bytes: &[u8]) -> String {
        match parse(bytes) {
            Ok(_) => panic!("parse unexpectedly succeeded"),
            Err(e) => e,
        }
    }

    fn assert_err(bytes: &[u8], want: &str) {
        let e = parse_err(bytes);
        assert!(e.contains(want), "error {e:?} does not contain {want:?}");
    }

    fn all_value_types() -> Vec<(String, GgufValue)> {
        use GgufArray as A;
        use GgufValue as V;
        let kv = |k: &str, v: GgufValue| (k.to_string(), v);
        vec![
            kv("general.architecture", V::String("deepseek2".into())),
            kv("t.u8", V::U8(200)),
            kv("t.i8", V::I8(-100)),
            kv("t.u16", V::U16(60_000)),
            kv("t.i16", V::I16(-30_000)),
            kv("t.u32", V::U32(4_000_000_000)),
            kv("t.i32", V::I32(-2_000_000_000)),
            kv("t.u64", V::U64(u64::MAX)),
            kv("t.i64", V::I64(i64::MIN)),
            kv("t.f32", V::F32(-1.5e-7)),
            kv("t.f64", V::F64(std::f64::consts::PI)),
            kv("t.bool.true", V::Bool(true)),
            kv("t.bool.false", V::Bool(false)),
            kv("t.empty_string", V::String(String::new())),
            kv("t.unicode", V::String("héllo ▁world 🦀".into())),
            kv("t.arr.u8", V::Array(A::U8(vec![0, 1, 255]))),
            kv("t.arr.i8", V::Array(A::I8(vec![-128, 127]))),
            kv("t.arr.u16", V::Array(A::U16(vec![1, 65535]))),
            kv("t.arr.i16", V::Array(A::I16(vec![-1, 2]))),
            kv("t.arr.u32", V::Array(A::U32(vec![7, 8, 9]))),
            kv("t.arr.i32", V::Array(A::I32(vec![-7, 8, 9]))),
            kv("t.arr.u64", V::Array(A::U64(vec![1 << 40]))),
            kv("t.arr.i64", V::Array(A::I64(vec![-(1 << 40)]))),
            kv("t.arr.f32", V::Array(A::F32(vec![0.5, -0.25, 1e30]))),
            kv("t.arr.f64", V::Array(A::F64(vec![1e-300]))),
            kv("t.arr.bool", V::Array(A::Bool(vec![true, false, true]))),
            kv(
                "t.arr.str",
                V::Array(A::String(vec!["a".into(), String::new(), "Ġthe".into()])),
            ),
            kv("t.arr.empty", V::Array(A::F32(vec![]))),
            kv(
                "t.arr.nested",
                V::Array(A::Array(vec![
                    A::U32(vec![1, 2]),
                    A::String(vec!["x".into()]),
                    A::Array(vec![A::I8(vec![-1]), A::Bool(vec![])]),
                    A::Array(vec![]),
                ])),
            ),
        ]
    }

    /// Deterministic test data for tensor `i` with `n` elements.
    fn values(i: usize, n: usize) -> Vec<f32> {
        (0..n)
            .map(|j| (((i * 7919 + j * 104_729) % 2001) as f32 - 1000.0) / 250.0)
            .collect()
    }

    fn test_tensors() -> Vec<(GgufTensorSpec, Vec<u8>)> {
        let mut out = Vec::new();
        let shapes: [&[u64]; 4] = [&[64, 3], &[32], &[32, 2, 3], &[64, 1, 2, 2]];
        // K-quant (and IQ4_XS) rows are whole 256-element super-blocks.
        let k_shapes: [&[u64]; 4] = [&[256, 2], &[256], &[256, 1, 2], &[256, 1, 1, 2]];
        for (di, dtype) in DType::ALL.into_iter().enumerate() {
            let shapes = if dtype.block_size() == 256 {
                k_shapes
            } else {
                shapes
            };
            for (si, dims) in shapes.iter().enumerate() {
                let n: u64 = dims.iter().product();
                let x = values(di * 10 + si, n as usize);
                let mut bytes = vec![0u8; dtype.bytes_for(n as usize).unwrap()];
                quantize_row(dtype, &x, &mut bytes).unwrap();
                out.push((
                    GgufTensorSpec {
                        name: format!("blk.{si}.{}.weight", dtype.name()),
                        dims: dims.to_vec(),
                        ggml_type: dtype.ggml_type(),
                    },
                    bytes,
                ));
            }
        }
        out
    }

    fn write_test_file(path: &Path, meta: &[(String, GgufValue)], alignment: u64) {
        let tensors = test_tensors();
        let specs: Vec<_> = tensors.iter().map(|(s, _)| s.clone()).collect();
        write_gguf_file(path, meta, &specs, alignment, |i, w| {
            w.write_all(&tensors[i].1).map_err(|e| Error::io(path, e))
        })
        .unwrap();
    }

    #[test]
    fn round_trip_every_value_type_and_dtype() {
        for alignment in [32u64, 64, 1] {
            let tmp = TempPath::new("roundtrip");
            let meta = all_value_types();
            write_test_file(&tmp.0, &meta, alignment);
            let f = GgufFile::open(&tmp.0).unwrap();
            assert_eq!(f.version, 3);
            assert_eq!(f.alignment, alignment);
            if alignment == 32 {
                assert_eq!(f.metadata, meta);
            } else {
                // The writer appends general.alignment.
                assert_eq!(&f.metadata[..meta.len()], &meta[..]);
                assert_eq!(
                    f.get(KEY_ALIGNMENT),
                    Some(&GgufValue::U32(alignment as u32))
                );
            }
            for (k, v) in &meta {
                assert_eq!(f.get(k), Some(v), "{k}");
            }
            assert_eq!(f.get("no.such.key"), None);
            assert_eq!(f.data_offset % alignment, 0);
            let tensors = test_tensors();
            assert_eq!(f.tensors.len(), tensors.len());
            for (info, (spec, bytes)) in f.tensors.iter().zip(&tensors) {
                assert_eq!(info.name, spec.name);
                assert_eq!(info.dims, spec.dims);
                assert_eq!(info.ggml_type, spec.ggml_type);
                assert_eq!(info.offset % alignment, 0);
                assert_eq!(info.data.start as u64, f.data_offset + info.offset);
                assert!(info.size_known());
                assert_eq!(f.tensor_data(info), &bytes[..], "{}", info.name);
                assert_eq!(f.tensor(&spec.name), Some(info));
                assert_eq!(info.dtype().map(|d| d.ggml_type()), Some(spec.ggml_type));
                assert_eq!(
                    info.shape()
                        .iter()
                        .rev()
                        .map(|&d| d as u64)
                        .collect::<Vec<_>>(),
                    info.dims
                );
            }
            assert_eq!(f.tensor("missing"), None);
        }
    }

    #[test]
    fn value_helpers() {
        use GgufArray as A;
        use GgufValue as V;
        assert_eq!(V::U8(7).as_u32(), Some(7));
        assert_eq!(V::I64(7).as_u32(), Some(7));
        assert_eq!(V::U64(1 << 32).as_u32(), None);
        assert_eq!(V::I32(-1).as_u32(), None);
        assert_eq!(V::I32(-1).as_i64(), Some(-1));
        assert_eq!(V::F32(1.0).as_u32(), None);
        assert_eq!(V::F64(0.5).as_f32(), Some(0.5));
        assert_eq!(V::F32(0.5).as_f32(), Some(0.5));
        assert_eq!(V::U32(1).as_f32(), None);
        assert_eq!(V::Bool(true).as_bool(), Some(true));
        assert_eq!(V::String("x".into()).as_str(), Some("x"));
        assert_eq!(V::U8(1).as_str(), None);
        let a = V::Array(A::I32(vec![1, 2, 3]));
        assert_eq!(a.as_u32_array().as_deref(), Some(&[1u32, 2, 3][..]));
        assert_eq!(V::Array(A::I32(vec![1, -2])).as_u32_array(), None);
        let u = V::Array(A::U32(vec![4]));
        assert!(matches!(u.as_u32_array(), Some(Cow::Borrowed(_))));
        let s = V::Array(A::String(vec!["a".into()]));
        assert_eq!(s.as_str_array(), Some(&["a".to_string()][..]));
        assert_eq!(a.as_str_array(), None);
        let f = V::Array(A::F64(vec![0.25]));
        assert_eq!(f.as_f32_array().as_deref(), Some(&[0.25f32][..]));
        assert!(matches!(
            V::Array(A::F32(vec![1.0])).as_f32_array(),
            Some(Cow::Borrowed(_))
        ));
        assert_eq!(a.type_name(), "array of i32");
        assert_eq!(V::U16(1).type_name(), "u16");
    }

    /// A tiny header built byte by byte from the spec: the reader parses it, and the writer
    /// reproduces it exactly.
    #[test]
    fn hand_built_file_matches_reader_and_writer() {
        let data0: Vec<u8> = (0..16).collect(); // F32 [4]
        let data1 = vec![0xab_u8; 34]; // Q8_0 [32]
        let bytes = B::header(2, 2)
            .str("general.architecture")
            .u32(T_STRING)
            .str("deepseek2")
            .str("tok.list")
            .u32(T_ARRAY)
            .u32(T_STRING)
            .u64(2)
            .str("<s>")
            .str("")
            .tensor("a", &[4], 0, 0)
            .tensor("b", &[32], 8, 32)
            .pad_to(32)
            .bytes(&data0)
            .pad_to(32)
            .bytes(&data1)
            .pad_to(32)
            .0;
        let h = parse(&bytes).unwrap();
        assert_eq!(h.version, 3);
        assert_eq!(h.alignment, 32);
        assert_eq!(
            h.metadata[0],
            (
                "general.architecture".into(),
                GgufValue::String("deepseek2".into())
            )
        );
        assert_eq!(
            h.metadata[1].1.as_str_array(),
            Some(&["<s>".to_string(), String::new()][..])
        );
        let t0 = &h.tensors[0];
        assert_eq!(&bytes[t0.data.clone()], &data0[..]);
        let t1 = &h.tensors[1];
        assert_eq!((t1.offset, t1.data.len()), (32, 34));
        assert_eq!(&bytes[t1.data.clone()], &data1[..]);

        let mut out = Vec::new();
        let specs = [
            GgufTensorSpec {
                name: "a".into(),
                dims: vec![4],
                ggml_type: 0,
            },
            GgufTensorSpec {
                name: "b".into(),
                dims: vec![32],
                ggml_type: 8,
            },
        ];
        write_gguf(
            &mut out,
            Path::new("mem"),
            &h.metadata,
            &specs,
            32,
            |i, w| {
                w.write_all(if i == 0 { &data0 } else { &data1 }).unwrap();
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(out, bytes);
    }

    #[test]
    fn version_2_is_accepted() {
        let mut bytes = B::header(0, 0).0;
        bytes[4] = 2;
        assert_eq!(parse(&bytes).unwrap().version, 2);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let tmp = TempPath::new("trunc");
        let mut meta = all_value_types();
        meta.truncate(meta.len() - 1);
        meta.push(("t.arr.nested".into(), all_value_types().pop().unwrap().1));
        let tensors = test_tensors();
        let specs: Vec<_> = tensors.iter().take(6).map(|(s, _)| s.clone()).collect();
        write_gguf_file(&tmp.0, &meta, &specs, 32, |i, w| {
            w.write_all(&tensors[i].1).map_err(|e| Error::io("x", e))
        })
        .unwrap();
        let bytes = std::fs::read(&tmp.0).unwrap();
        let h = parse(&bytes).unwrap();
        let end = h.tensors.iter().map(|t| t.data.end).max().unwrap();
        // Prefixes that keep every tensor's bytes (only dropping the final padding) are valid.
        for len in 0..end {
            assert!(
                parse(&bytes[..len]).is_err(),
                "prefix of {len} bytes parsed"
            );
        }
        for len in end..=bytes.len() {
            assert!(parse(&bytes[..len]).is_ok());
        }
        // Through the file API as well, for a few lengths.
        for len in [0, 3, 23, 24, 100, end - 1] {
            std::fs::write(&tmp.0, &bytes[..len]).unwrap();
            let e = GgufFile::open(&tmp.0).unwrap_err();
            assert!(matches!(e, Error::Format { .. }), "{e}");
            assert!(e.to_string().contains(&*tmp.0.to_string_lossy()), "{e}");
        }
    }

    #[test]
    fn truncation_message_names_the_item() {
        let bytes = B::header(2, 0)
            .tensor("first", &[4], 0, 0)
            .str("blk.0.attn_q.weight")
            .u32(2)
            .u64(8)
            .0;
        assert_err(
            &bytes,
            "truncated while reading tensor info 1 of 2 (name \"blk.0.attn_q.weight\"): \
             dimension 1 needs 8 bytes",
        );
        let bytes = B::header(0, 1).str("general.name").u32(T_STRING).u64(10).0;
        assert_err(
            &bytes,
            "truncated while reading metadata entry 0 of 1 (key \"general.name\"): string \
             value needs 10 bytes",
        );
    }

    #[test]
    fn specific_errors() {
        // Bad magic.
        let mut b = B::header(0, 0).0;
        b[..4].copy_from_slice(b"GGML");
        assert_err(&b, "bad magic 0x4c4d4747");
        assert_err(&b, "expected GGUF");
        // Versions.
        let v = |ver: u32| B::default().bytes(b"GGUF").u32(ver).u64(0).u64(0).0;
        assert_err(&v(1), "unsupported GGUF version 1");
        assert_err(&v(4), "unsupported GGUF version 4");
        assert_err(&v(3u32.swap_bytes()), "big-endian");
        // Too short for a header.
        assert_err(b"GGUF", "too short for a GGUF header");
        // Absurd counts.
        assert_err(
            &B::header(1 << 60, 0).0,
            "tensor count 1152921504606846976 is impossible",
        );
        assert_err(&B::header(0, u64::MAX).0, "metadata entry count");
        // String length past EOF.
        let b = B::header(0, 1).str("k").u32(T_STRING).u64(1 << 40).0;
        assert_err(&b, "more than the 67108864-byte limit");
        let b = B::header(0, 1)
            .str("k")
            .u32(T_STRING)
            .u64(1000)
            .bytes(b"abc")
            .0;
        assert_err(
            &b,
            "string value needs 1000 bytes at offset 45, only 3 left",
        );
        let b = B::header(0, 1).u64(u64::MAX).bytes(&[0; 8]).0;
        assert_err(&b, "metadata entry 0 of 1: key at offset 24 claims");
        // Array count past EOF, before any allocation.
        let b = B::header(0, 1)
            .str("k")
            .u32(T_ARRAY)
            .u32(T_U64)
            .u64(1 << 61)
            .0;
        assert_err(&b, "claims 2305843009213693952 elements of type u64");
        // Unknown value types.
        let b = B::header(0, 1).str("k").u32(13).u32(0).0;
        assert_err(
            &b,
            "metadata entry 0 of 1 (key \"k\"): unknown value type 13",
        );
        let b = B::header(0, 1).str("k").u32(T_ARRAY).u32(99).u64(0).0;
        assert_err(&b, "unknown element type 99");
        // Nesting too deep.
        let mut b = B::header(0, 1).str("k").u32(T_ARRAY);
        for _ in 0..5 {
            b = b.u32(T_ARRAY).u64(1);
        }
        let b = b.u32(T_U8).u64(0).0;
        assert_err(&b, "nested more than 4 deep");
        // Invalid UTF-8.
        let b = B::header(0, 1)
            .str("k")
            .u32(T_STRING)
            .u64(2)
            .bytes(&[0xff, 0xfe])
            .0;
        assert_err(&b, "not valid UTF-8");
        // Duplicate keys and names.
        let b = B::header(0, 2)
            .str("k")
            .u32(T_U8)
            .bytes(&[1])
            .str("k")
            .u32(T_U8)
            .bytes(&[2])
            .0;
        assert_err(&b, "duplicate key");
        let b = B::header(2, 0)
            .tensor("t", &[1], 0, 0)
            .tensor("t", &[1], 0, 32)
            .pad_to(32);
        let b = b.bytes(&[0; 64]).0;
        assert_err(&b, "duplicate tensor name");
        // n_dims 5.
        let b = B::header(1, 0)
            .tensor("t", &[1, 1, 1, 1, 1], 0, 0)
            .pad_to(32)
            .bytes(&[0; 4])
            .0;
        assert_err(
            &b,
            "tensor info 0 of 1 (name \"t\"): n_dims 5 exceeds the maximum of 4",
        );
        // Zero dimension.
        let b = B::header(1, 0).tensor("t", &[4, 0], 0, 0).pad_to(32).0;
        assert_err(&b, "dimension 1 is 0");
        // Offset not aligned.
        let b = B::header(1, 0)
            .tensor("t", &[1], 0, 4)
            .pad_to(32)
            .bytes(&[0; 64])
            .0;
        assert_err(&b, "offset 4 is not a multiple of the alignment 32");
        // Data past EOF.
        let b = B::header(1, 0)
            .tensor("t", &[8], 0, 0)
            .pad_to(32)
            .bytes(&[0; 31])
            .0;
        assert_err(
            &b,
            "tensor 0 of 1 (\"t\"): data at offset 0 + 32 bytes of type F32",
        );
        assert_err(
            &b,
            "runs past the end of the file (95 bytes, data section at 64)",
        );
        let b = B::header(1, 0)
            .tensor("t", &[1], 0, u64::MAX - 31)
            .pad_to(32)
            .0;
        assert_err(&b, "runs past the end of the file");
        // Dims overflow.
        let b = B::header(1, 0)
            .tensor("t", &[1 << 40, 1 << 40], 0, 0)
            .pad_to(32)
            .0;
        assert_err(
            &b,
            "element count of dims [1099511627776, 1099511627776] overflows u64",
        );
        let b = B::header(1, 0)
            .tensor("t", &[1 << 62, 1], 0, 0)
            .pad_to(32)
            .0;
        assert_err(&b, "byte size of dims");
        // Block size.
        let b = B::header(1, 0)
            .tensor("t", &[48], 8, 0)
            .pad_to(32)
            .bytes(&[0; 64])
            .0;
        assert_err(
            &b,
            "first dimension 48 is not a multiple of the 32-element block of type Q8_0",
        );
        // Alignment entry.
        let b = B::header(0, 1).str(KEY_ALIGNMENT).u32(T_U32).u32(24).0;
        assert_err(&b, "general.alignment is U32(24), expected a power of two");
        let b = B::header(0, 1).str(KEY_ALIGNMENT).u32(T_STRING).str("64").0;
        assert_err(&b, "general.alignment is String(\"64\")");
    }

    #[test]
    fn overlapping_tensor_data_is_rejected() {
        // "b" starts inside "a" (both aligned, both inside the file).
        let b = B::header(2, 0)
            .tensor("a", &[16], 0, 0)
            .tensor("b", &[8], 0, 32)
            .pad_to(32)
            .bytes(&[0; 64])
            .0;
        assert_err(
            &b,
            "tensor \"b\" (bytes 128..160) overlaps tensor \"a\" (bytes 96..160)",
        );
        // The same start.
        let b = B::header(2, 0)
            .tensor("a", &[8], 0, 0)
            .tensor("b", &[8], 0, 0)
            .pad_to(32)
            .bytes(&[0; 32])
            .0;
        assert_err(&b, "overlaps tensor");
        // Listed out of order but disjoint is fine; an unknown type (empty range) is too.
        let b = B::header(3, 0)
            .tensor("a", &[8], 0, 32)
            .tensor("b", &[8], 0, 0)
            .tensor("u", &[8], 99, 0)
            .pad_to(32)
            .bytes(&[0; 64])
            .0;
        assert_eq!(parse(&b).unwrap().tensors.len(), 3);
    }

    #[test]
    fn parse_bytes_matches_open() {
        let tmp = TempPath::new("bytes");
        write_test_file(&tmp.0, &all_value_types(), 32);
        let bytes = std::fs::read(&tmp.0).unwrap();
        let a = GgufFile::open(&tmp.0).unwrap();
        let b = GgufFile::parse_bytes(&bytes, "mem.gguf").unwrap();
        assert_eq!(a.metadata, b.metadata);
        assert_eq!(a.tensors, b.tensors);
        for t in &a.tensors {
            assert_eq!(a.tensor_data(t), b.tensor_data(t));
        }
        let e = GgufFile::parse_bytes(&bytes[..10], "mem.gguf").unwrap_err();
        assert!(matches!(e, Error::Format { .. }) && e.to_string().contains("mem.gguf"));
    }

    #[test]
    fn alignment_from_metadata() {
        let b = B::header(1, 1)
            .str(KEY_ALIGNMENT)
            .u32(T_U32)
            .u32(64)
            .tensor("t", &[2], 0, 0)
            .pad_to(64)
            .bytes(&[1, 0, 0, 0, 2, 0, 0, 0])
            .0;
        let h = parse(&b).unwrap();
        assert_eq!((h.alignment, h.data_offset), (64, 128));
        assert_eq!(h.tensors[0].data, 128..136);
        // Offsets must be multiples of 64 now.
        let b = B::header(1, 1)
            .str(KEY_ALIGNMENT)
            .u32(T_U32)
            .u32(64)
            .tensor("t", &[2], 0, 32)
            .pad_to(64)
            .bytes(&[0; 64])
            .0;
        assert_err(&b, "offset 32 is not a multiple of the alignment 64");
    }

    #[test]
    fn other_ggml_types_open() {
        // Q8_K (15) has a known layout that moela does not compute with: 256 elements in 292
        // bytes; its range is validated. Type 99 is unknown: the file opens, the tensor has an
        // empty range at its start.
        let b = B::header(2, 0)
            .tensor("k", &[256, 2], 15, 0)
            .tensor("u", &[7], 99, 640)
            .pad_to(32)
            .bytes(&[0; 700])
            .0;
        let h = parse(&b).unwrap();
        assert_eq!(h.tensors[0].data.len(), 584);
        assert!(h.tensors[0].size_known());
        assert_eq!(h.tensors[0].dtype(), None);
        assert!(!h.tensors[1].size_known());
        assert_eq!(h.tensors[1].data, (128 + 640)..(128 + 640));
        let b = B::header(1, 0)
            .tensor("k", &[256, 2], 15, 0)
            .pad_to(32)
            .bytes(&[0; 583])
            .0;
        assert_err(&b, "of type Q8_K (ggml type 15)");
        // Unknown type whose start is past EOF is still an error.
        let b = B::header(1, 0).tensor("u", &[7], 99, 64).pad_to(32).0;
        assert_err(&b, "runs past the end");
        // Scalar (n_dims 0) is one element.
        let b = B::header(1, 0)
            .tensor("s", &[], 0, 0)
            .pad_to(32)
            .bytes(&[0; 4])
            .0;
        assert_eq!(parse(&b).unwrap().tensors[0].data.len(), 4);
    }

    #[test]
    fn open_errors() {
        let missing = std::env::temp_dir().join("moela-no-such-file.gguf");
        let e = GgufFile::open(&missing).unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e}");
        assert!(e.to_string().contains("moela-no-such-file.gguf"), "{e}");
    }

    #[test]
    fn writer_errors() {
        let p = Path::new("out.gguf");
        let spec = |name: &str, dims: &[u64], t: u32| GgufTensorSpec {
            name: name.into(),
            dims: dims.to_vec(),
            ggml_type: t,
        };
        let ok = |_: usize, _: &mut dyn Write| Ok(());
        let err = |meta: &[(String, GgufValue)], t: &[GgufTensorSpec], align: u64| {
            write_gguf(std::io::sink(), p, meta, t, align, ok)
                .unwrap_err()
                .to_string()
        };
        assert!(err(&[], &[], 24).contains("alignment 24 is not a power of two"));
        assert!(err(&[], &[spec("t", &[4], 77)], 32).contains("cannot size tensors of type"));
        assert!(err(&[], &[spec("t", &[48], 8)], 32).contains("not a multiple of the 32"));
        assert!(err(&[], &[spec("t", &[], 0)], 32).contains("must be 1 to 4 values"));
        assert!(err(&[], &[spec("t", &[1, 0], 0)], 32).contains("must be 1 to 4 values"));
        assert!(err(&[], &[spec("t", &[1; 5], 0)], 32).contains("must be 1 to 4 values"));
        let dup = [spec("t", &[1], 0), spec("t", &[1], 0)];
        assert!(err(&[], &dup, 32).contains("duplicate tensor name"));
        assert!(err(&[], &[spec(&"x".repeat(64), &[1], 0)], 32).contains("at most 63"));
        let a = vec![(KEY_ALIGNMENT.to_string(), GgufValue::U32(64))];
        assert!(err(&a, &[], 32).contains("but the alignment argument is 32"));
        let d = vec![
            ("k".to_string(), GgufValue::U8(1)),
            ("k".to_string(), GgufValue::U8(2)),
        ];
        assert!(err(&d, &[], 32).contains("duplicate metadata key \"k\""));
        let mut deep = GgufArray::U8(vec![]);
        for _ in 0..4 {
            deep = GgufArray::Array(vec![deep]);
        }
        let deep = vec![("k".to_string(), GgufValue::Array(deep))];
        assert!(err(&deep, &[], 32).contains("nested more than 4 deep"));

        // Wrong byte count from the callback.
        let e = write_gguf(
            std::io::sink(),
            p,
            &[],
            &[spec("w", &[8], 0)],
            32,
            |_, w| {
                w.write_all(&[0; 31]).unwrap();
                Ok(())
            },
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("tensor 0 (\"w\"): the data callback wrote 31 bytes, expected 32"),
            "{e}"
        );
        // Callback errors propagate; write_gguf_file removes the partial file.
        let tmp = TempPath::new("partial");
        let e = write_gguf_file(&tmp.0, &[], &[spec("w", &[8], 0)], 32, |_, _| {
            Err(Error::InvalidArg("boom".into()))
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "invalid argument: boom");
        assert!(!tmp.0.exists());
    }

    #[test]
    fn writer_appends_alignment_and_pads() {
        let mut out = Vec::new();
        let specs = [GgufTensorSpec {
            name: "t".into(),
            dims: vec![3],
            ggml_type: 0,
        }];
        write_gguf(&mut out, Path::new("m"), &[], &specs, 128, |_, w| {
            w.write_all(&[1; 12]).unwrap();
            Ok(())
        })
        .unwrap();
        assert_eq!(out.len() % 128, 0);
        let h = parse(&out).unwrap();
        assert_eq!(
            h.metadata,
            vec![(KEY_ALIGNMENT.to_string(), GgufValue::U32(128))]
        );
        assert_eq!(h.alignment, 128);
        assert_eq!(h.tensors[0].data, 128..140);
    }
}
