//! Tensor element types, quantized block formats and typed views over mapped bytes.
pub mod dtype;
pub mod fp8;
pub mod iquant;
#[rustfmt::skip]
mod iquant_grids;
pub mod interleave;
pub mod iq4;
pub mod kquant;
pub mod legacy;
pub mod quant;
pub mod view;

pub use dtype::DType;
pub use view::TensorView;
