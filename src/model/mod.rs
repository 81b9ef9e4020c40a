//! Model update files and their layout.
//!
//! A client hands `secagg` its model update as a file; the server writes the aggregate back
//! in the same layout. Two formats are understood, chosen by the file extension (compared
//! case-insensitively):
//!
//! * **`.npy`** — one NumPy array of any shape. `float32` is taken as is; `float64` and
//!   `float16` are converted to `f32` (float64 values are rounded to the nearest `f32`, and
//!   magnitudes beyond the `f32` range become infinities). Both byte orders are accepted.
//!   Integer, boolean, complex, string, `float128` and structured dtypes are rejected with
//!   [`ModelError::UnsupportedDtype`]. Arrays stored in Fortran (column-major) order are
//!   transposed while reading, so the values always come out flattened in C (row-major)
//!   order, matching the shape recorded in the layout.
//! * **`.safetensors`** — every tensor in the file. The tensors are ordered by name
//!   (byte-wise comparison of their UTF-8 names, i.e. Rust's `str` ordering), and the values
//!   are the concatenation of each tensor's row-major data in that order. `F32` is taken as
//!   is; `F64`, `F16` and `BF16` are converted to `f32`; any other dtype is rejected, naming
//!   the tensor. The optional `__metadata__` block is ignored.
//!
//! NaN and infinite values pass through reading unchanged; rejecting them is the protocol
//! layer's job.
//!
//! [`read_model`] returns every value at once; a [`ModelStream`] reads the same values a
//! chunk at a time, so that a client need not hold the whole model in memory.
//!
//! A [`ModelLayout`] records the names and shapes of the tensors (not their values). It
//! travels to the server in the client's hello frame using the encoding documented on
//! [`ModelLayout::to_bytes`], which [`ModelLayout::from_bytes`] decodes with strict bounds.
//!
//! The code is split by concern: [`ModelLayout`] and its wire encoding live in `layout`, the
//! `.npy` reader and writer in `npy`, the `.safetensors` reader and writer in `safetensors`,
//! and [`ModelStream`], which both readers open, in `stream`; this file holds the shared
//! types, the dispatch on the file extension and the float decoding both readers use.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

mod layout;
mod npy;
mod safetensors;
mod stream;
#[cfg(test)]
mod test_support;

pub use layout::ModelLayout;
pub use stream::ModelStream;

/// The most tensors a layout may hold.
pub const MAX_TENSORS: usize = 1 << 16;
/// The longest tensor name a layout may hold, in bytes of UTF-8.
pub const MAX_NAME: usize = 1024;
/// The most dimensions one tensor may have.
pub const MAX_DIMS: usize = 16;

/// One tensor: its name (empty for a bare .npy array) and shape (row-major; [] = scalar).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    /// The tensor's name; empty for the array of an `.npy` file.
    pub name: String,
    /// The tensor's dimensions, outermost first; empty for a scalar (one value).
    pub shape: Vec<usize>,
}

/// Which file format a layout came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelFormat {
    /// A NumPy `.npy` file holding a single array.
    Npy,
    /// A Hugging Face `.safetensors` file holding named tensors.
    Safetensors,
}

/// Everything that can go wrong reading, writing or decoding a model update.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The operating system refused to read or write a file.
    #[error("cannot access {}: {source}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// What the operating system reported.
        source: io::Error,
    },
    /// The file's extension names no supported format.
    #[error(
        "{}: unsupported model file type; use a .npy file (one float array) or a \
         .safetensors file (named float tensors)",
        path.display()
    )]
    UnsupportedFormat {
        /// The file whose extension was not recognised.
        path: PathBuf,
    },
    /// A tensor's element type cannot be turned into `f32`.
    #[error(
        "{} has dtype {dtype}, which cannot be aggregated; store it as float32 \
         (float64, float16 and bfloat16 are also accepted and converted)",
        describe_tensor(.tensor)
    )]
    UnsupportedDtype {
        /// The tensor's name (empty for the array of an `.npy` file).
        tensor: String,
        /// The dtype as the file spells it.
        dtype: String,
    },
    /// The file is not a well-formed `.npy` or `.safetensors` file.
    #[error("malformed model file: {0}")]
    Malformed(String),
    /// The number of values does not match the layout.
    #[error("the layout describes {expected} values but {got} were given")]
    LengthMismatch {
        /// How many values the layout holds.
        expected: usize,
        /// How many values were supplied.
        got: usize,
    },
    /// A layout is invalid: its wire encoding does not decode, or it cannot be written.
    #[error("invalid model layout: {0}")]
    Layout(String),
    /// A model file exceeds the limits a layout may carry (tensor count, name length or
    /// number of dimensions).
    #[error("model too large to describe: {0}")]
    TooLarge(String),
}

/// How a tensor is named in error messages.
fn describe_tensor(name: &str) -> String {
    if name.is_empty() {
        "the array".to_owned()
    } else {
        format!("tensor `{name}`")
    }
}

/// Number of elements of a tensor with `shape`, or `None` when the product of its non-zero
/// dimensions overflows `usize`.
///
/// Zero dimensions are skipped for the overflow test so that a shape such as
/// `[0, 2^40, 2^40]` is refused too: its element count is zero, but other code that takes
/// partial products of the shape (strides, for one) would still overflow.
fn element_count(shape: &[usize]) -> Option<usize> {
    let mut nonzero = 1usize;
    let mut has_zero = false;
    for &dim in shape {
        if dim == 0 {
            has_zero = true;
        } else {
            nonzero = nonzero.checked_mul(dim)?;
        }
    }
    Some(if has_zero { 0 } else { nonzero })
}

/// The format named by `path`'s extension.
fn format_of(path: &Path) -> Result<ModelFormat, ModelError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("npy") => Ok(ModelFormat::Npy),
        Some("safetensors") => Ok(ModelFormat::Safetensors),
        _ => Err(ModelError::UnsupportedFormat {
            path: path.to_path_buf(),
        }),
    }
}

/// Builds an [`ModelError::Io`] for `path`.
fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ModelError + '_ {
    move |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads a model update. Format from the extension (.npy / .safetensors, case-insensitive);
/// anything else is an error naming the supported formats.
///
/// * `.npy`: `float32` is read as is, `float64` and `float16` are converted to `f32`;
///   integer, boolean, complex, string, `float128` and structured dtypes are rejected with
///   [`ModelError::UnsupportedDtype`]. Fortran-order arrays are transposed so that the
///   values are always in C (row-major) order for the recorded shape. The layout holds one
///   tensor with an empty name.
/// * `.safetensors`: every tensor, ordered by name (byte-wise), values concatenated in
///   that order, each row-major. `F32` is read as is; `F64`, `F16` and `BF16` are
///   converted; other dtypes are rejected naming the tensor.
///
/// NaN and infinite values are returned unchanged. A file whose tensors exceed
/// [`MAX_TENSORS`], [`MAX_NAME`] or [`MAX_DIMS`] is rejected with [`ModelError::TooLarge`],
/// since its layout could not be sent.
///
/// This is [`ModelStream::open`] followed by reading every value; use the stream directly
/// to read a large model a chunk at a time.
pub fn read_model(path: &Path) -> Result<(ModelLayout, Vec<f32>), ModelError> {
    ModelStream::open(path)?.into_values()
}

/// Writes `values` (layout.params() of them) with `layout`, in the format of `path`'s
/// extension (`.npy` or `.safetensors`, case-insensitive).
///
/// * `.npy`: one little-endian `float32` array in C order. Its shape is the layout's
///   tensor shape when the layout has exactly one tensor, and a flat 1-D array of all the
///   values otherwise (the tensor names and shapes are then lost).
/// * `.safetensors`: one `F32` tensor per layout tensor, with its name and shape. An
///   `.npy` layout's unnamed tensor is given the name `"sum"`. Two tensors with the same
///   name are refused with [`ModelError::Layout`].
///
/// The file is written to a temporary file in the same directory, flushed to disk and then
/// renamed over `path`, so a crash never leaves a half-written output; on failure the
/// temporary file is removed.
pub fn write_model(path: &Path, layout: &ModelLayout, values: &[f32]) -> Result<(), ModelError> {
    let format = format_of(path)?;
    let expected = layout
        .checked_params()
        .ok_or_else(|| ModelError::Layout("the layout's element count overflows".to_owned()))?;
    if values.len() != expected {
        return Err(ModelError::LengthMismatch {
            expected,
            got: values.len(),
        });
    }
    match format {
        ModelFormat::Npy => npy::write_npy(path, layout, values),
        ModelFormat::Safetensors => safetensors::write_safetensors(path, layout, values),
    }
}

/// Floating-point element types that can be converted to `f32`.
#[derive(Clone, Copy, Debug)]
enum FloatKind {
    F16,
    Bf16,
    F32,
    F64,
}

impl FloatKind {
    fn size(self) -> usize {
        match self {
            FloatKind::F16 | FloatKind::Bf16 => 2,
            FloatKind::F32 => 4,
            FloatKind::F64 => 8,
        }
    }
}

/// Converts IEEE 754 half-precision bits to `f32` (exactly; every half value is an `f32`).
fn f16_to_f32(bits: u16) -> f32 {
    let negative = bits & 0x8000 != 0;
    let exponent = u32::from((bits >> 10) & 0x1f);
    let mantissa = u32::from(bits & 0x03ff);
    let sign = if negative { 1u32 << 31 } else { 0 };
    match exponent {
        0 => {
            // Zero or subnormal: mantissa * 2^-24, exact in f32.
            let magnitude = mantissa as f32 * (1.0 / 16_777_216.0);
            if negative { -magnitude } else { magnitude }
        }
        0x1f => f32::from_bits(sign | 0x7f80_0000 | (mantissa << 13)),
        _ => f32::from_bits(sign | ((exponent + 112) << 23) | (mantissa << 13)),
    }
}

/// Decodes `bytes` (exactly `out.len()` elements of `kind`) into `out` as `f32`.
fn decode_floats(bytes: &[u8], kind: FloatKind, big_endian: bool, out: &mut [f32]) {
    debug_assert_eq!(bytes.len(), out.len() * kind.size());
    match kind {
        FloatKind::F16 | FloatKind::Bf16 => {
            for (slot, chunk) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                let pair = [chunk[0], chunk[1]];
                let bits = if big_endian {
                    u16::from_be_bytes(pair)
                } else {
                    u16::from_le_bytes(pair)
                };
                *slot = match kind {
                    FloatKind::Bf16 => f32::from_bits(u32::from(bits) << 16),
                    _ => f16_to_f32(bits),
                };
            }
        }
        FloatKind::F32 => {
            for (slot, chunk) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                let word = [chunk[0], chunk[1], chunk[2], chunk[3]];
                *slot = f32::from_bits(if big_endian {
                    u32::from_be_bytes(word)
                } else {
                    u32::from_le_bytes(word)
                });
            }
        }
        FloatKind::F64 => {
            for (slot, chunk) in out.iter_mut().zip(bytes.chunks_exact(8)) {
                let mut word = [0u8; 8];
                word.copy_from_slice(chunk);
                let value = f64::from_bits(if big_endian {
                    u64::from_be_bytes(word)
                } else {
                    u64::from_le_bytes(word)
                });
                // Rounds to nearest; out-of-range magnitudes become infinities.
                *slot = value as f32;
            }
        }
    }
}

/// Distinguishes temporary files written by one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Runs `write` on a fresh temporary path next to `path`, makes the result durable and
/// renames it to `path`. The temporary file is removed if anything fails.
fn write_atomically(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), ModelError>,
) -> Result<(), ModelError> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(
        ".{file_name}.{}.{}.tmp",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = write(&tmp)
        .and_then(|()| {
            // Flush the data to disk before the rename makes it visible.
            OpenOptions::new()
                .write(true)
                .open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(io_error(path))
        })
        .and_then(|()| fs::rename(&tmp, path).map_err(io_error(path)));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::test_support::{TempDir, npy_layout, ramp, spec};
    use super::*;

    #[test]
    fn unknown_extension_is_unsupported_format() {
        let dir = TempDir::new("ext");
        for name in ["model.csv", "model", "model.npz", "model.pt"] {
            let path = dir.file(name);
            fs::write(&path, b"whatever").unwrap();
            let err = read_model(&path).unwrap_err();
            assert!(
                matches!(err, ModelError::UnsupportedFormat { .. }),
                "{name}"
            );
            assert!(err.to_string().contains(".safetensors"));
            assert!(matches!(
                write_model(&path, &npy_layout(&[1]), &[0.0]),
                Err(ModelError::UnsupportedFormat { .. })
            ));
        }
        assert!(matches!(
            read_model(&dir.file("missing.npy")),
            Err(ModelError::Io { .. })
        ));
    }

    #[test]
    fn write_with_wrong_length_is_rejected() {
        let dir = TempDir::new("len");
        for name in ["out.npy", "out.safetensors"] {
            let path = dir.file(name);
            match write_model(&path, &npy_layout(&[2, 3]), &[0.0; 5]) {
                Err(ModelError::LengthMismatch { expected, got }) => {
                    assert_eq!((expected, got), (6, 5));
                }
                other => panic!("expected LengthMismatch, got {other:?}"),
            }
            assert!(!path.exists());
        }
        assert!(dir.entries().is_empty());
    }

    #[test]
    fn write_cross_format_rules() {
        let dir = TempDir::new("cross");
        // Several tensors into .npy: one flat array.
        let layout = ModelLayout {
            format: ModelFormat::Safetensors,
            tensors: vec![spec("a", &[2, 2]), spec("b", &[3])],
        };
        let values = ramp(7);
        let path = dir.file("flat.npy");
        write_model(&path, &layout, &values).unwrap();
        assert_eq!(
            read_model(&path).unwrap(),
            (npy_layout(&[7]), values.clone())
        );

        // A bare npy layout into .safetensors: one tensor called "sum".
        let path = dir.file("sum.safetensors");
        write_model(&path, &npy_layout(&[2, 2]), &values[..4]).unwrap();
        let (read_layout, read_values) = read_model(&path).unwrap();
        assert_eq!(read_layout.tensors, vec![spec("sum", &[2, 2])]);
        assert_eq!(read_values, values[..4].to_vec());

        // Duplicate names cannot be written as safetensors.
        let dup = ModelLayout {
            format: ModelFormat::Safetensors,
            tensors: vec![spec("a", &[1]), spec("a", &[1])],
        };
        let path = dir.file("dup.safetensors");
        assert!(matches!(
            write_model(&path, &dup, &[1.0, 2.0]),
            Err(ModelError::Layout(_))
        ));
        assert!(!path.exists());
    }

    #[test]
    fn half_precision_conversion() {
        assert_eq!(f16_to_f32(0x0000), 0.0);
        assert!(f16_to_f32(0x8000).is_sign_negative());
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x0400), 2f32.powi(-14));
        assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x8001), -(2f32.powi(-24)));
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert_eq!(f16_to_f32(0xfc00), f32::NEG_INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
    }
}
