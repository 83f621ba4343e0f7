// TEMPORARY stub (replaced by the real reader/writer)
use std::path::{Path, PathBuf};
use std::sync::Arc;
use crate::error::{Error, Result};
#[derive(Clone, Debug, PartialEq)]
pub enum GgufValue { U32(u32), F32(f32), Bool(bool), String(String) }
impl GgufValue {
    pub fn as_u32(&self) -> Option<u32> { None }
    pub fn as_f32(&self) -> Option<f32> { None }
    pub fn as_bool(&self) -> Option<bool> { None }
    pub fn as_str(&self) -> Option<&str> { None }
}
pub struct GgufTensorInfo { pub name: String, pub dims: Vec<u64>, pub ggml_type: u32, pub offset: u64, pub data: std::ops::Range<usize> }
pub struct GgufFile { pub path: PathBuf, pub version: u32, pub metadata: Vec<(String, GgufValue)>, pub tensors: Vec<GgufTensorInfo>, pub alignment: u64, pub data_offset: u64, pub map: Arc<memmap2::Mmap> }
impl GgufFile {
    pub fn open(_p: &Path) -> Result<GgufFile> { Err(Error::InvalidArg("stub".into())) }
    pub fn get(&self, _k: &str) -> Option<&GgufValue> { None }
}
pub struct GgufTensorSpec { pub name: String, pub dims: Vec<u64>, pub ggml_type: u32 }
pub fn write_gguf_file(_p: &Path, _m: &[(String, GgufValue)], _t: &[GgufTensorSpec], _a: u64, _d: impl FnMut(usize, &mut dyn std::io::Write) -> Result<()>) -> Result<()> { Err(Error::InvalidArg("stub".into())) }
