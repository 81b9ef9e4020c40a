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
//! A [`ModelLayout`] records the names and shapes of the tensors (not their values). It
//! travels to the server in the client's hello frame using the encoding documented on
//! [`ModelLayout::to_bytes`], which [`ModelLayout::from_bytes`] decodes with strict bounds.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use npyz::{DType, Endianness, NpyHeader, Order, TypeChar, TypeStr, WriteOptions, WriterBuilder};
use safetensors::{Dtype, SafeTensorError, SafeTensors, View};

/// The most tensors a layout may hold.
pub const MAX_TENSORS: usize = 1 << 16;
/// The longest tensor name a layout may hold, in bytes of UTF-8.
pub const MAX_NAME: usize = 1024;
/// The most dimensions one tensor may have.
pub const MAX_DIMS: usize = 16;

/// Tag byte of [`ModelFormat::Npy`] in the wire encoding.
const TAG_NPY: u8 = 0;
/// Tag byte of [`ModelFormat::Safetensors`] in the wire encoding.
const TAG_SAFETENSORS: u8 = 1;
/// The fewest bytes one tensor can occupy on the wire: a `u16` name length and a `u8`
/// dimension count.
const MIN_TENSOR_WIRE_BYTES: usize = 3;
/// Name given to the single unnamed tensor of an `.npy` layout when it is written as
/// `.safetensors`.
const NPY_TENSOR_NAME_IN_SAFETENSORS: &str = "sum";
/// Size of the buffer used to stream `.npy` data (a multiple of every element size).
const READ_CHUNK: usize = 1 << 16;

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

/// The layout of a model update: its tensors in the order their values are flattened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelLayout {
    /// The format of the file the layout was read from.
    pub format: ModelFormat,
    /// The tensors, in the order their values appear in the flat vector.
    pub tensors: Vec<TensorSpec>,
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

impl ModelLayout {
    /// Total number of f32 values.
    ///
    /// Saturates at `usize::MAX` for a layout whose element count overflows (which no
    /// layout returned by [`read_model`] or [`ModelLayout::from_bytes`] does).
    pub fn params(&self) -> usize {
        self.checked_params().unwrap_or(usize::MAX)
    }

    /// Total number of values, or `None` when it overflows.
    fn checked_params(&self) -> Option<usize> {
        self.tensors.iter().try_fold(0usize, |total, tensor| {
            total.checked_add(element_count(&tensor.shape)?)
        })
    }

    /// Bounded binary encoding for the wire (little-endian; define and document the layout).
    ///
    /// The encoding is, with every integer little-endian:
    ///
    /// ```text
    /// u8        format tag: 0 = Npy, 1 = Safetensors
    /// u32       tensor count (at most MAX_TENSORS)
    /// then, for each tensor in order:
    ///   u16     name length in bytes (at most MAX_NAME)
    ///   [u8]    the name, UTF-8
    ///   u8      number of dimensions (at most MAX_DIMS; 0 for a scalar)
    ///   [u64]   the dimensions, outermost first
    /// ```
    ///
    /// Nothing follows the last tensor. A length too large for its field is written as the
    /// field's maximum, which [`ModelLayout::from_bytes`] then rejects; layouts within the
    /// limits always round-trip exactly.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            5 + self
                .tensors
                .iter()
                .map(|t| 3 + t.name.len() + 8 * t.shape.len())
                .sum::<usize>(),
        );
        out.push(match self.format {
            ModelFormat::Npy => TAG_NPY,
            ModelFormat::Safetensors => TAG_SAFETENSORS,
        });
        let count = u32::try_from(self.tensors.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&count.to_le_bytes());
        for tensor in &self.tensors {
            let name = tensor.name.as_bytes();
            let name_len = u16::try_from(name.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&name_len.to_le_bytes());
            out.extend_from_slice(name);
            out.push(u8::try_from(tensor.shape.len()).unwrap_or(u8::MAX));
            for &dim in &tensor.shape {
                out.extend_from_slice(&u64::try_from(dim).unwrap_or(u64::MAX).to_le_bytes());
            }
        }
        out
    }

    /// Decodes, rejecting trailing bytes, more than MAX_TENSORS tensors, names longer than MAX_NAME bytes or not UTF-8, more than MAX_DIMS dims, and any total element count that overflows or exceeds `max_params`; every length is checked against the bytes present before allocating. Never panics on any input.
    ///
    /// It also rejects an unknown format tag, a dimension that does not fit `usize`, a
    /// shape whose non-zero dimensions multiply past `usize::MAX` (even when another
    /// dimension is zero), an `Npy` layout that is not exactly one unnamed tensor, and a
    /// `Safetensors` layout with two tensors of the same name. Every error is
    /// [`ModelError::Layout`]. A successful decode re-encodes to exactly `bytes`.
    pub fn from_bytes(bytes: &[u8], max_params: usize) -> Result<Self, ModelError> {
        let mut wire = WireReader { rest: bytes };
        let format = match wire.u8("format tag")? {
            TAG_NPY => ModelFormat::Npy,
            TAG_SAFETENSORS => ModelFormat::Safetensors,
            other => {
                return Err(ModelError::Layout(format!(
                    "unknown format tag {other} (expected {TAG_NPY} for npy or \
                     {TAG_SAFETENSORS} for safetensors)"
                )));
            }
        };
        let count = usize::try_from(wire.u32("tensor count")?).unwrap_or(usize::MAX);
        if count > MAX_TENSORS {
            return Err(ModelError::Layout(format!(
                "{count} tensors exceeds the limit of {MAX_TENSORS}"
            )));
        }
        if count > wire.rest.len() / MIN_TENSOR_WIRE_BYTES {
            return Err(ModelError::Layout(format!(
                "claims {count} tensors but only {} bytes follow (each needs at least \
                 {MIN_TENSOR_WIRE_BYTES})",
                wire.rest.len()
            )));
        }
        let mut tensors = Vec::with_capacity(count);
        let mut total = 0usize;
        for index in 0..count {
            let name_len = usize::from(wire.u16("name length")?);
            if name_len > MAX_NAME {
                return Err(ModelError::Layout(format!(
                    "tensor {index}: name of {name_len} bytes exceeds the limit of {MAX_NAME}"
                )));
            }
            let name = std::str::from_utf8(wire.take(name_len, "tensor name")?)
                .map_err(|e| ModelError::Layout(format!("tensor {index}: name is not UTF-8: {e}")))?
                .to_owned();
            let ndims = usize::from(wire.u8("dimension count")?);
            if ndims > MAX_DIMS {
                return Err(ModelError::Layout(format!(
                    "tensor {index}: {ndims} dimensions exceeds the limit of {MAX_DIMS}"
                )));
            }
            // ndims <= MAX_DIMS, so this product cannot overflow.
            let raw = wire.take(ndims * 8, "dimensions")?;
            let mut shape = Vec::with_capacity(ndims);
            for chunk in raw.chunks_exact(8) {
                let mut word = [0u8; 8];
                word.copy_from_slice(chunk);
                let dim = u64::from_le_bytes(word);
                let dim = usize::try_from(dim).map_err(|_| {
                    ModelError::Layout(format!(
                        "tensor {index}: dimension {dim} does not fit this platform"
                    ))
                })?;
                shape.push(dim);
            }
            let elements = element_count(&shape).ok_or_else(|| {
                ModelError::Layout(format!(
                    "tensor {index}: element count of shape {shape:?} overflows"
                ))
            })?;
            total = total
                .checked_add(elements)
                .ok_or_else(|| ModelError::Layout("total element count overflows".to_owned()))?;
            if total > max_params {
                return Err(ModelError::Layout(format!(
                    "more than {max_params} values in total (the most this server accepts)"
                )));
            }
            tensors.push(TensorSpec { name, shape });
        }
        if !wire.rest.is_empty() {
            return Err(ModelError::Layout(format!(
                "{} unexpected bytes after the last tensor",
                wire.rest.len()
            )));
        }
        match format {
            ModelFormat::Npy => {
                if tensors.len() != 1 || tensors.iter().any(|t| !t.name.is_empty()) {
                    return Err(ModelError::Layout(
                        "an npy layout must hold exactly one unnamed tensor".to_owned(),
                    ));
                }
            }
            ModelFormat::Safetensors => {
                let mut seen = HashSet::with_capacity(tensors.len());
                if let Some(dup) = tensors.iter().find(|t| !seen.insert(t.name.as_str())) {
                    return Err(ModelError::Layout(format!(
                        "tensor name `{}` appears more than once",
                        dup.name
                    )));
                }
            }
        }
        Ok(ModelLayout { format, tensors })
    }

    /// Whether two layouts describe the same tensors (names and shapes; format may differ).
    pub fn same_tensors(&self, other: &ModelLayout) -> bool {
        self.tensors == other.tensors
    }
}

/// A cursor over wire bytes that refuses to read past the end.
struct WireReader<'a> {
    rest: &'a [u8],
}

impl<'a> WireReader<'a> {
    /// Takes the next `n` bytes, or fails naming `what` was cut short.
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ModelError> {
        if self.rest.len() < n {
            return Err(ModelError::Layout(format!(
                "truncated: {what} needs {n} bytes but only {} remain",
                self.rest.len()
            )));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    /// Takes the next `N` bytes as an array.
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], ModelError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u8(&mut self, what: &str) -> Result<u8, ModelError> {
        Ok(u8::from_le_bytes(self.array(what)?))
    }

    fn u16(&mut self, what: &str) -> Result<u16, ModelError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &str) -> Result<u32, ModelError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
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
pub fn read_model(path: &Path) -> Result<(ModelLayout, Vec<f32>), ModelError> {
    match format_of(path)? {
        ModelFormat::Npy => read_npy(path),
        ModelFormat::Safetensors => read_safetensors(path),
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

/// Decodes `bytes` (whole elements of `kind`) and appends them to `out` as `f32`.
fn decode_floats(bytes: &[u8], kind: FloatKind, big_endian: bool, out: &mut Vec<f32>) {
    match kind {
        FloatKind::F16 | FloatKind::Bf16 => {
            for chunk in bytes.chunks_exact(2) {
                let pair = [chunk[0], chunk[1]];
                let bits = if big_endian {
                    u16::from_be_bytes(pair)
                } else {
                    u16::from_le_bytes(pair)
                };
                out.push(match kind {
                    FloatKind::Bf16 => f32::from_bits(u32::from(bits) << 16),
                    _ => f16_to_f32(bits),
                });
            }
        }
        FloatKind::F32 => {
            for chunk in bytes.chunks_exact(4) {
                let word = [chunk[0], chunk[1], chunk[2], chunk[3]];
                out.push(f32::from_bits(if big_endian {
                    u32::from_be_bytes(word)
                } else {
                    u32::from_le_bytes(word)
                }));
            }
        }
        FloatKind::F64 => {
            for chunk in bytes.chunks_exact(8) {
                let mut word = [0u8; 8];
                word.copy_from_slice(chunk);
                let value = f64::from_bits(if big_endian {
                    u64::from_be_bytes(word)
                } else {
                    u64::from_le_bytes(word)
                });
                // Rounds to nearest; out-of-range magnitudes become infinities.
                out.push(value as f32);
            }
        }
    }
}

/// Whether an `.npy` header's `shape` entry has non-zero dimensions whose product
/// overflows `u64`.
///
/// npyz multiplies the dimensions without overflow checks (a panic in debug builds), so
/// such headers are turned away before npyz sees them. This is a conservative scan: when
/// the text does not look as expected it returns `false` and leaves the verdict to npyz.
fn npy_shape_overflows(header_text: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(header_text) else {
        return false;
    };
    let Some(at) = text.find("shape") else {
        return false;
    };
    let rest = text[at + "shape".len()..].trim_start_matches(['\'', '"']);
    let Some(rest) = rest.trim_start().strip_prefix(':') else {
        return false;
    };
    let Some(rest) = rest.trim_start().strip_prefix(['(', '[']) else {
        return false;
    };
    let Some(end) = rest.find([')', ']']) else {
        return false;
    };
    let mut product = 1u64;
    for token in rest[..end].split(',') {
        let token = token.trim();
        if token.is_empty() {
            continue;
        }
        let Ok(dim) = token.parse::<u64>() else {
            return false;
        };
        if dim != 0 {
            match product.checked_mul(dim) {
                Some(p) => product = p,
                None => return true,
            }
        }
    }
    false
}

/// Reads the magic string, version, header length and header text of an `.npy` file,
/// checking the header length against the file size before allocating for it. Returns
/// everything read, ready for npyz to parse.
fn read_npy_preamble(
    reader: &mut impl Read,
    file_len: u64,
    path: &Path,
) -> Result<Vec<u8>, ModelError> {
    let shown = path.display();
    let eof_as_malformed = |e: io::Error, what: &str| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            ModelError::Malformed(format!("{shown}: file ends inside the npy {what}"))
        } else {
            ModelError::Io {
                path: path.to_path_buf(),
                source: e,
            }
        }
    };
    let mut magic = [0u8; 8];
    reader
        .read_exact(&mut magic)
        .map_err(|e| eof_as_malformed(e, "magic string"))?;
    if &magic[..6] != b"\x93NUMPY" {
        return Err(ModelError::Malformed(format!(
            "{shown}: not an npy file (the \\x93NUMPY magic string is missing)"
        )));
    }
    let (major, minor) = (magic[6], magic[7]);
    let len_bytes = match major {
        1 => 2,
        2 | 3 => 4,
        _ => {
            return Err(ModelError::Malformed(format!(
                "{shown}: unsupported npy format version {major}.{minor} (1.0 to 3.0 are read)"
            )));
        }
    };
    let mut len_field = [0u8; 4];
    reader
        .read_exact(&mut len_field[..len_bytes])
        .map_err(|e| eof_as_malformed(e, "header length"))?;
    let header_len = u32::from_le_bytes(len_field);
    let preamble_len = 8 + len_bytes as u64;
    let available = file_len.saturating_sub(preamble_len);
    if u64::from(header_len) > available {
        return Err(ModelError::Malformed(format!(
            "{shown}: truncated npy header (it declares {header_len} bytes but only \
             {available} follow)"
        )));
    }
    let header_len = usize::try_from(header_len)
        .map_err(|_| ModelError::Malformed(format!("{shown}: npy header too large")))?;
    let mut preamble = Vec::with_capacity(8 + len_bytes + header_len);
    preamble.extend_from_slice(&magic);
    preamble.extend_from_slice(&len_field[..len_bytes]);
    let text_start = preamble.len();
    preamble.resize(text_start + header_len, 0);
    reader
        .read_exact(&mut preamble[text_start..])
        .map_err(|e| eof_as_malformed(e, "header"))?;
    if npy_shape_overflows(&preamble[text_start..]) {
        return Err(ModelError::Malformed(format!(
            "{shown}: the npy shape's element count overflows"
        )));
    }
    Ok(preamble)
}

fn read_npy(path: &Path) -> Result<(ModelLayout, Vec<f32>), ModelError> {
    let shown = path.display();
    let file = File::open(path).map_err(io_error(path))?;
    let file_len = file.metadata().map_err(io_error(path))?.len();
    let mut reader = BufReader::new(file);
    let preamble = read_npy_preamble(&mut reader, file_len, path)?;
    let header = NpyHeader::from_reader(preamble.as_slice())
        .map_err(|e| ModelError::Malformed(format!("{shown}: bad npy header: {e}")))?;

    let dtype = header.dtype();
    let unsupported = |dtype: &DType| ModelError::UnsupportedDtype {
        tensor: String::new(),
        dtype: npy_dtype_name(dtype),
    };
    let DType::Plain(type_str) = &dtype else {
        return Err(unsupported(&dtype));
    };
    let kind = match (type_str.type_char(), type_str.size_field()) {
        (TypeChar::Float, 2) => FloatKind::F16,
        (TypeChar::Float, 4) => FloatKind::F32,
        (TypeChar::Float, 8) => FloatKind::F64,
        _ => return Err(unsupported(&dtype)),
    };
    let big_endian = type_str.endianness() == Endianness::Big;

    let shape = header
        .shape()
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<usize>, _>>()
        .map_err(|_| {
            ModelError::Malformed(format!(
                "{shown}: an npy dimension does not fit this platform"
            ))
        })?;
    if shape.len() > MAX_DIMS {
        return Err(ModelError::TooLarge(format!(
            "{shown}: the array has {} dimensions; at most {MAX_DIMS} are supported",
            shape.len()
        )));
    }
    let count = element_count(&shape).ok_or_else(|| {
        ModelError::Malformed(format!("{shown}: the npy shape's element count overflows"))
    })?;
    let expected_bytes = count
        .checked_mul(kind.size())
        .ok_or_else(|| ModelError::Malformed(format!("{shown}: the npy data size overflows")))?;
    let data_len = file_len.saturating_sub(preamble.len() as u64);
    let expected_u64 = expected_bytes as u64;
    if data_len < expected_u64 {
        return Err(ModelError::Malformed(format!(
            "{shown}: truncated npy data (shape {shape:?} needs {expected_bytes} bytes but \
             only {data_len} follow the header)"
        )));
    }
    if data_len > expected_u64 {
        return Err(ModelError::Malformed(format!(
            "{shown}: {} unexpected bytes after the npy data (shape {shape:?})",
            data_len - expected_u64
        )));
    }

    // The file size was checked above, so this allocation is bounded by the file.
    let mut values = Vec::with_capacity(count);
    let mut buffer = vec![0u8; READ_CHUNK.min(expected_bytes)];
    let mut remaining = expected_bytes;
    while remaining > 0 {
        let take = remaining.min(buffer.len());
        let chunk = &mut buffer[..take];
        reader.read_exact(chunk).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                ModelError::Malformed(format!("{shown}: npy data ended early"))
            } else {
                ModelError::Io {
                    path: path.to_path_buf(),
                    source: e,
                }
            }
        })?;
        decode_floats(chunk, kind, big_endian, &mut values);
        remaining -= take;
    }

    if header.order() == Order::Fortran && shape.len() > 1 {
        values = fortran_to_c_order(&values, &shape);
    }
    let layout = ModelLayout {
        format: ModelFormat::Npy,
        tensors: vec![TensorSpec {
            name: String::new(),
            shape,
        }],
    };
    Ok((layout, values))
}

/// How an npy dtype is shown in error messages.
fn npy_dtype_name(dtype: &DType) -> String {
    match dtype {
        DType::Plain(type_str) => {
            let kind = match type_str.type_char() {
                TypeChar::Bool => "bool",
                TypeChar::Int => "signed integer",
                TypeChar::Uint => "unsigned integer",
                TypeChar::Float => "float",
                TypeChar::Complex => "complex",
                TypeChar::TimeDelta => "timedelta",
                TypeChar::DateTime => "datetime",
                TypeChar::ByteStr => "bytes",
                TypeChar::UnicodeStr => "unicode string",
                TypeChar::RawData => "raw data",
                _ => "other",
            };
            format!("'{type_str}' ({kind})")
        }
        DType::Record(_) => format!("{} (structured)", dtype.descr()),
        DType::Array(..) => "a sub-array dtype".to_owned(),
    }
}

/// Reorders values stored column-major (first index fastest) into row-major order.
fn fortran_to_c_order(values: &[f32], shape: &[usize]) -> Vec<f32> {
    let mut out = vec![0.0f32; values.len()];
    if values.is_empty() {
        return out;
    }
    // Row-major strides; every dimension is at least 1 here, so none overflows.
    let mut strides = vec![1usize; shape.len()];
    for axis in (0..shape.len().saturating_sub(1)).rev() {
        strides[axis] = strides[axis + 1] * shape[axis + 1];
    }
    let mut index = vec![0usize; shape.len()];
    let mut target = 0usize;
    for &value in values {
        out[target] = value;
        // Step the multi-index with the first axis fastest, carrying into later axes.
        for axis in 0..shape.len() {
            index[axis] += 1;
            target += strides[axis];
            if index[axis] < shape[axis] {
                break;
            }
            index[axis] = 0;
            target -= strides[axis] * shape[axis];
        }
    }
    out
}

fn read_safetensors(path: &Path) -> Result<(ModelLayout, Vec<f32>), ModelError> {
    let shown = path.display();
    let bytes = fs::read(path).map_err(io_error(path))?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| {
        ModelError::Malformed(format!("{shown}: not a valid safetensors file: {e}"))
    })?;
    let mut tensors = file.tensors();
    if tensors.len() > MAX_TENSORS {
        return Err(ModelError::TooLarge(format!(
            "{shown}: {} tensors; at most {MAX_TENSORS} are supported",
            tensors.len()
        )));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));

    // Check every tensor before converting any.
    let mut specs = Vec::with_capacity(tensors.len());
    let mut kinds = Vec::with_capacity(tensors.len());
    let mut total = 0usize;
    for (name, view) in &tensors {
        if name.len() > MAX_NAME {
            return Err(ModelError::TooLarge(format!(
                "{shown}: a tensor name is {} bytes long; at most {MAX_NAME} are supported",
                name.len()
            )));
        }
        let shape = view.shape().to_vec();
        if shape.len() > MAX_DIMS {
            return Err(ModelError::TooLarge(format!(
                "{shown}: tensor `{name}` has {} dimensions; at most {MAX_DIMS} are supported",
                shape.len()
            )));
        }
        let kind = match view.dtype() {
            Dtype::F32 => FloatKind::F32,
            Dtype::F64 => FloatKind::F64,
            Dtype::F16 => FloatKind::F16,
            Dtype::BF16 => FloatKind::Bf16,
            other => {
                return Err(ModelError::UnsupportedDtype {
                    tensor: name.clone(),
                    dtype: other.to_string(),
                });
            }
        };
        let count = element_count(&shape).ok_or_else(|| {
            ModelError::Malformed(format!(
                "{shown}: element count of tensor `{name}` overflows"
            ))
        })?;
        total = total.checked_add(count).ok_or_else(|| {
            ModelError::Malformed(format!("{shown}: total element count overflows"))
        })?;
        specs.push(TensorSpec {
            name: name.clone(),
            shape,
        });
        kinds.push(kind);
    }

    let mut values = Vec::with_capacity(total);
    for ((_, view), kind) in tensors.iter().zip(kinds) {
        // safetensors has checked that each tensor's data is exactly its shape's size.
        decode_floats(view.data(), kind, false, &mut values);
    }
    if values.len() != total {
        return Err(ModelError::Malformed(format!(
            "{shown}: tensor data does not match the declared shapes"
        )));
    }
    let layout = ModelLayout {
        format: ModelFormat::Safetensors,
        tensors: specs,
    };
    Ok((layout, values))
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
        ModelFormat::Npy => {
            let shape: Vec<u64> = match layout.tensors.as_slice() {
                [only] => only.shape.iter().map(|&d| d as u64).collect(),
                _ => vec![values.len() as u64],
            };
            write_atomically(path, |tmp| write_npy_file(tmp, path, &shape, values))
        }
        ModelFormat::Safetensors => {
            let mut names = HashSet::with_capacity(layout.tensors.len());
            let mut tensors = Vec::with_capacity(layout.tensors.len());
            let mut offset = 0usize;
            for tensor in &layout.tensors {
                let name = if layout.format == ModelFormat::Npy && tensor.name.is_empty() {
                    NPY_TENSOR_NAME_IN_SAFETENSORS.to_owned()
                } else {
                    tensor.name.clone()
                };
                if !names.insert(name.clone()) {
                    return Err(ModelError::Layout(format!(
                        "tensor name `{name}` appears more than once; safetensors names must \
                         be unique"
                    )));
                }
                // Counts were checked by checked_params above.
                let count = element_count(&tensor.shape).unwrap_or(0);
                let end = offset + count;
                tensors.push((
                    name,
                    F32Tensor {
                        shape: &tensor.shape,
                        values: &values[offset..end],
                    },
                ));
                offset = end;
            }
            write_atomically(path, |tmp| {
                safetensors::serialize_to_file(tensors, None, tmp).map_err(|e| match e {
                    SafeTensorError::IoError(source) => ModelError::Io {
                        path: path.to_path_buf(),
                        source,
                    },
                    other => ModelError::Layout(format!("safetensors refused the layout: {other}")),
                })
            })
        }
    }
}

/// Writes one `<f4` array to `tmp` (a fresh file); errors name `target`.
fn write_npy_file(
    tmp: &Path,
    target: &Path,
    shape: &[u64],
    values: &[f32],
) -> Result<(), ModelError> {
    let to_io = io_error(target);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)
        .map_err(io_error(target))?;
    let type_str: TypeStr = "<f4"
        .parse()
        .map_err(|e| ModelError::Malformed(format!("npy type string: {e}")))?;
    let mut buffered = BufWriter::new(file);
    let mut writer = WriteOptions::<f32>::new()
        .dtype(DType::Plain(type_str))
        .shape(shape)
        .writer(&mut buffered)
        .begin_nd()
        .map_err(io_error(target))?;
    for value in values {
        writer.push(value).map_err(io_error(target))?;
    }
    writer.finish().map_err(io_error(target))?;
    let file = buffered.into_inner().map_err(|e| to_io(e.into_error()))?;
    file.sync_all().map_err(io_error(target))
}

/// A borrowed run of `f32` values presented to safetensors as one little-endian F32 tensor.
struct F32Tensor<'a> {
    shape: &'a [usize],
    values: &'a [f32],
}

impl View for F32Tensor<'_> {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }

    fn shape(&self) -> &[usize] {
        self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        // Converted one tensor at a time, so only the largest tensor is ever duplicated.
        Cow::Owned(self.values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    fn data_len(&self) -> usize {
        self.values.len() * 4
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
    use super::*;

    /// A scratch directory removed when dropped.
    struct TempDir(PathBuf);

    static DIR_COUNTER: AtomicU64 = AtomicU64::new(0);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "secagg-model-{tag}-{}-{}",
                std::process::id(),
                DIR_COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn file(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }

        fn entries(&self) -> Vec<String> {
            let mut names: Vec<String> = fs::read_dir(&self.0)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn npy_layout(shape: &[usize]) -> ModelLayout {
        ModelLayout {
            format: ModelFormat::Npy,
            tensors: vec![TensorSpec {
                name: String::new(),
                shape: shape.to_vec(),
            }],
        }
    }

    fn spec(name: &str, shape: &[usize]) -> TensorSpec {
        TensorSpec {
            name: name.to_owned(),
            shape: shape.to_vec(),
        }
    }

    fn ramp(n: usize) -> Vec<f32> {
        (0..n).map(|i| i as f32 * 0.5 - 3.0).collect()
    }

    /// Builds a version 1.0 npy file by hand.
    fn raw_npy(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut text = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
            if fortran { "True" } else { "False" }
        );
        while (10 + text.len() + 1) % 64 != 0 {
            text.push(' ');
        }
        text.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(text.len() as u16).to_le_bytes());
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(data);
        out
    }

    /// Reads an npy file with npyz alone: (shape, order, f32 values in stored order).
    fn npyz_read_f32(path: &Path) -> (Vec<u64>, Order, Vec<f32>) {
        let bytes = fs::read(path).unwrap();
        let npy = npyz::NpyFile::new(bytes.as_slice()).unwrap();
        let shape = npy.shape().to_vec();
        let order = npy.order();
        (shape, order, npy.into_vec::<f32>().unwrap())
    }

    #[test]
    fn npy_round_trip_1d() {
        let dir = TempDir::new("npy1d");
        let path = dir.file("update.npy");
        let layout = npy_layout(&[7]);
        let values = vec![1.5, -2.0, 0.0, f32::NAN, f32::INFINITY, 1e-30, -0.0];
        write_model(&path, &layout, &values).unwrap();
        let (shape, order, stored) = npyz_read_f32(&path);
        assert_eq!(shape, vec![7]);
        assert_eq!(order, Order::C);
        let (read_layout, read_values) = read_model(&path).unwrap();
        assert_eq!(read_layout, layout);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&read_values), bits(&values));
        assert_eq!(bits(&stored), bits(&values));
        assert_eq!(dir.entries(), vec!["update.npy".to_owned()]);
    }

    #[test]
    fn npy_round_trip_3d() {
        let dir = TempDir::new("npy3d");
        let path = dir.file("update.NPY");
        let layout = npy_layout(&[2, 3, 4]);
        let values = ramp(24);
        write_model(&path, &layout, &values).unwrap();
        let (shape, order, stored) = npyz_read_f32(&path);
        assert_eq!(shape, vec![2, 3, 4]);
        assert_eq!(order, Order::C);
        assert_eq!(stored, values);
        assert_eq!(read_model(&path).unwrap(), (layout, values));
    }

    #[test]
    fn npy_round_trip_scalar() {
        let dir = TempDir::new("npyscalar");
        let path = dir.file("scalar.npy");
        let layout = npy_layout(&[]);
        assert_eq!(layout.params(), 1);
        write_model(&path, &layout, &[42.25]).unwrap();
        let (shape, _, stored) = npyz_read_f32(&path);
        assert!(shape.is_empty());
        assert_eq!(stored, vec![42.25]);
        assert_eq!(read_model(&path).unwrap(), (layout, vec![42.25]));
    }

    #[test]
    fn npy_overwrites_existing_file_without_leftovers() {
        let dir = TempDir::new("npyover");
        let path = dir.file("out.npy");
        fs::write(&path, b"old contents").unwrap();
        write_model(&path, &npy_layout(&[3]), &[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(read_model(&path).unwrap().1, vec![1.0, 2.0, 3.0]);
        assert_eq!(dir.entries(), vec!["out.npy".to_owned()]);
    }

    #[test]
    fn npy_float64_is_converted() {
        let dir = TempDir::new("npyf64");
        let path = dir.file("f64.npy");
        let input: Vec<f64> = vec![0.1, -2.5, 1e300, -1e-300, 3.0, 65504.0];
        let mut bytes = Vec::new();
        let mut writer = WriteOptions::<f64>::new()
            .default_dtype()
            .shape(&[2, 3])
            .writer(&mut bytes)
            .begin_nd()
            .unwrap();
        writer.extend(input.iter().copied()).unwrap();
        writer.finish().unwrap();
        fs::write(&path, &bytes).unwrap();
        let (layout, values) = read_model(&path).unwrap();
        assert_eq!(layout, npy_layout(&[2, 3]));
        let expected: Vec<f32> = input.iter().map(|&v| v as f32).collect();
        assert_eq!(values, expected);
        assert_eq!(values[0], 0.1f32);
        assert_eq!(values[2], f32::INFINITY);
    }

    #[test]
    fn npy_float16_and_big_endian_are_converted() {
        let dir = TempDir::new("npyf16");
        let path = dir.file("f16.npy");
        let halves: [u16; 4] = [0x3c00, 0xc000, 0x0001, 0x7bff];
        let data: Vec<u8> = halves.iter().flat_map(|h| h.to_le_bytes()).collect();
        fs::write(&path, raw_npy("<f2", false, "(2, 2)", &data)).unwrap();
        let (layout, values) = read_model(&path).unwrap();
        assert_eq!(layout, npy_layout(&[2, 2]));
        assert_eq!(values, vec![1.0, -2.0, 2f32.powi(-24), 65504.0]);

        let path = dir.file("be.npy");
        let data: Vec<u8> = [1.5f32, -7.25]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        fs::write(&path, raw_npy(">f4", false, "(2,)", &data)).unwrap();
        assert_eq!(read_model(&path).unwrap().1, vec![1.5, -7.25]);
    }

    #[test]
    fn npy_fortran_order_comes_out_row_major() {
        let dir = TempDir::new("npyfortran");
        // 2-D: a[i][j] = 10 i + j, stored column by column.
        let path = dir.file("f2.npy");
        let mut bytes = Vec::new();
        let mut writer = WriteOptions::<f32>::new()
            .default_dtype()
            .shape(&[2, 3])
            .order(Order::Fortran)
            .writer(&mut bytes)
            .begin_nd()
            .unwrap();
        for j in 0..3 {
            for i in 0..2 {
                writer.push(&((10 * i + j) as f32)).unwrap();
            }
        }
        writer.finish().unwrap();
        fs::write(&path, &bytes).unwrap();
        let (layout, values) = read_model(&path).unwrap();
        assert_eq!(layout, npy_layout(&[2, 3]));
        assert_eq!(values, vec![0.0, 1.0, 2.0, 10.0, 11.0, 12.0]);

        // 3-D: a[i][j][k] = 100 i + 10 j + k, first index fastest in the file.
        let path = dir.file("f3.npy");
        let mut data = Vec::new();
        for k in 0..4 {
            for j in 0..3 {
                for i in 0..2 {
                    data.extend_from_slice(&((100 * i + 10 * j + k) as f32).to_le_bytes());
                }
            }
        }
        fs::write(&path, raw_npy("<f4", true, "(2, 3, 4)", &data)).unwrap();
        let (layout, values) = read_model(&path).unwrap();
        assert_eq!(layout, npy_layout(&[2, 3, 4]));
        let mut expected = Vec::new();
        for i in 0..2 {
            for j in 0..3 {
                for k in 0..4 {
                    expected.push((100 * i + 10 * j + k) as f32);
                }
            }
        }
        assert_eq!(values, expected);
    }

    #[test]
    fn npy_from_npyz_writer_with_shape() {
        let dir = TempDir::new("npyz");
        let path = dir.file("written.npy");
        let values = ramp(12);
        let mut bytes = Vec::new();
        let mut writer = WriteOptions::<f32>::new()
            .default_dtype()
            .shape(&[3, 1, 4])
            .writer(&mut bytes)
            .begin_nd()
            .unwrap();
        writer.extend(values.iter().copied()).unwrap();
        writer.finish().unwrap();
        fs::write(&path, &bytes).unwrap();
        assert_eq!(read_model(&path).unwrap(), (npy_layout(&[3, 1, 4]), values));
    }

    fn is_malformed(result: Result<(ModelLayout, Vec<f32>), ModelError>) -> bool {
        matches!(result, Err(ModelError::Malformed(_)))
    }

    #[test]
    fn corrupted_npy_is_malformed() {
        let dir = TempDir::new("npybad");
        let path = dir.file("bad.npy");
        let data: Vec<u8> = ramp(6).iter().flat_map(|v| v.to_le_bytes()).collect();
        let good = raw_npy("<f4", false, "(2, 3)", &data);
        fs::write(&path, &good).unwrap();
        assert!(read_model(&path).is_ok());
        // Cut anywhere inside the header or the data.
        for cut in 0..good.len() {
            fs::write(&path, &good[..cut]).unwrap();
            let result = read_model(&path);
            assert!(is_malformed(result), "cut at {cut}");
        }
        // Extra bytes after the data.
        let mut long = good.clone();
        long.push(0);
        fs::write(&path, &long).unwrap();
        assert!(is_malformed(read_model(&path)));
        // Not an npy file at all.
        fs::write(&path, b"just some text, not numpy").unwrap();
        assert!(is_malformed(read_model(&path)));
        // A header that is not a Python dict.
        fs::write(&path, {
            let mut b = b"\x93NUMPY\x01\x00\x08\x00".to_vec();
            b.extend_from_slice(b"garbage\n");
            b
        })
        .unwrap();
        assert!(is_malformed(read_model(&path)));
        // A shape whose element count overflows.
        fs::write(
            &path,
            raw_npy("<f4", false, "(1099511627776, 1099511627776)", &[]),
        )
        .unwrap();
        assert!(is_malformed(read_model(&path)));
        fs::write(
            &path,
            raw_npy("<f4", false, "(0, 1099511627776, 1099511627776)", &[]),
        )
        .unwrap();
        assert!(is_malformed(read_model(&path)));
        // A header length pointing far past the end of the file.
        fs::write(&path, b"\x93NUMPY\x02\x00\xff\xff\xff\xff{").unwrap();
        assert!(is_malformed(read_model(&path)));
    }

    #[test]
    fn npy_too_many_dims_is_too_large() {
        let dir = TempDir::new("npydims");
        let path = dir.file("dims.npy");
        let shape = format!("({})", vec!["1"; MAX_DIMS + 1].join(", "));
        fs::write(&path, raw_npy("<f4", false, &shape, &1f32.to_le_bytes())).unwrap();
        assert!(matches!(read_model(&path), Err(ModelError::TooLarge(_))));
    }

    #[test]
    fn npy_wrong_dtypes_are_rejected() {
        let dir = TempDir::new("npydtype");
        let path = dir.file("ints.npy");
        let mut bytes = Vec::new();
        let mut writer = WriteOptions::<i32>::new()
            .default_dtype()
            .shape(&[3])
            .writer(&mut bytes)
            .begin_nd()
            .unwrap();
        writer.extend([1, 2, 3]).unwrap();
        writer.finish().unwrap();
        fs::write(&path, &bytes).unwrap();
        match read_model(&path) {
            Err(err @ ModelError::UnsupportedDtype { .. }) => {
                let ModelError::UnsupportedDtype { tensor, dtype } = &err else {
                    unreachable!()
                };
                assert!(tensor.is_empty());
                assert!(dtype.contains("i4"), "{dtype}");
                let message = err.to_string();
                assert!(message.contains("float32"), "{message}");
            }
            other => panic!("expected UnsupportedDtype, got {other:?}"),
        }
        for descr in ["|b1", "<c8", "<f16", "<u2"] {
            let size = match descr {
                "|b1" => 1,
                "<c8" => 8,
                "<f16" => 16,
                _ => 2,
            };
            fs::write(&path, raw_npy(descr, false, "(2,)", &vec![0u8; 2 * size])).unwrap();
            assert!(
                matches!(read_model(&path), Err(ModelError::UnsupportedDtype { .. })),
                "{descr}"
            );
        }
        fs::write(&path, {
            let mut text = String::from(
                "{'descr': [('a', '<f4'), ('b', '<f4')], 'fortran_order': False, 'shape': (1,), }",
            );
            while (10 + text.len() + 1) % 64 != 0 {
                text.push(' ');
            }
            text.push('\n');
            let mut b = b"\x93NUMPY\x01\x00".to_vec();
            b.extend_from_slice(&(text.len() as u16).to_le_bytes());
            b.extend_from_slice(text.as_bytes());
            b.extend_from_slice(&[0u8; 8]);
            b
        })
        .unwrap();
        assert!(matches!(
            read_model(&path),
            Err(ModelError::UnsupportedDtype { .. })
        ));
    }

    /// A safetensors tensor given as raw little-endian bytes, for building test files.
    struct RawTensor {
        dtype: Dtype,
        shape: Vec<usize>,
        data: Vec<u8>,
    }

    impl View for RawTensor {
        fn dtype(&self) -> Dtype {
            self.dtype
        }
        fn shape(&self) -> &[usize] {
            &self.shape
        }
        fn data(&self) -> Cow<'_, [u8]> {
            Cow::Borrowed(&self.data)
        }
        fn data_len(&self) -> usize {
            self.data.len()
        }
    }

    fn f32_tensor(shape: &[usize], values: &[f32]) -> RawTensor {
        RawTensor {
            dtype: Dtype::F32,
            shape: shape.to_vec(),
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    #[test]
    fn safetensors_three_tensors_in_name_order() {
        let dir = TempDir::new("st3");
        let input = dir.file("in.safetensors");
        let zeta = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let alpha = [-1.0, -2.0, -3.0, -4.0];
        let mid = [99.5];
        let bytes = safetensors::serialize(
            vec![
                ("zeta", f32_tensor(&[2, 3], &zeta)),
                ("alpha", f32_tensor(&[4, 1], &alpha)),
                ("mid", f32_tensor(&[], &mid)),
            ],
            None,
        )
        .unwrap();
        fs::write(&input, bytes).unwrap();
        let (layout, values) = read_model(&input).unwrap();
        let expected_layout = ModelLayout {
            format: ModelFormat::Safetensors,
            tensors: vec![
                spec("alpha", &[4, 1]),
                spec("mid", &[]),
                spec("zeta", &[2, 3]),
            ],
        };
        assert_eq!(layout, expected_layout);
        let expected_values: Vec<f32> = alpha.iter().chain(&mid).chain(&zeta).copied().collect();
        assert_eq!(values, expected_values);

        let output = dir.file("out.SafeTensors");
        write_model(&output, &layout, &values).unwrap();
        assert_eq!(read_model(&output).unwrap(), (layout, values));
        // Check the written file with the safetensors crate alone.
        let written = fs::read(&output).unwrap();
        let parsed = SafeTensors::deserialize(&written).unwrap();
        let zeta_view = parsed.tensor("zeta").unwrap();
        assert_eq!(zeta_view.dtype(), Dtype::F32);
        assert_eq!(zeta_view.shape(), &[2, 3]);
        assert_eq!(zeta_view.data(), f32_tensor(&[2, 3], &zeta).data.as_slice());
        assert_eq!(
            dir.entries(),
            vec!["in.safetensors".to_owned(), "out.SafeTensors".to_owned()]
        );
    }

    #[test]
    fn safetensors_other_float_dtypes_are_converted() {
        let dir = TempDir::new("stconv");
        let path = dir.file("mixed.safetensors");
        let bytes = safetensors::serialize(
            vec![
                (
                    "a64",
                    RawTensor {
                        dtype: Dtype::F64,
                        shape: vec![2],
                        data: [0.1f64, -1e300]
                            .iter()
                            .flat_map(|v| v.to_le_bytes())
                            .collect(),
                    },
                ),
                (
                    "b16",
                    RawTensor {
                        dtype: Dtype::F16,
                        shape: vec![2],
                        data: [0x3c00u16, 0x7e00]
                            .iter()
                            .flat_map(|v| v.to_le_bytes())
                            .collect(),
                    },
                ),
                (
                    "cbf",
                    RawTensor {
                        dtype: Dtype::BF16,
                        shape: vec![1],
                        data: 0xc040u16.to_le_bytes().to_vec(),
                    },
                ),
            ],
            None,
        )
        .unwrap();
        fs::write(&path, bytes).unwrap();
        let (layout, values) = read_model(&path).unwrap();
        assert_eq!(
            layout.tensors,
            vec![spec("a64", &[2]), spec("b16", &[2]), spec("cbf", &[1])]
        );
        assert_eq!(values.len(), 5);
        assert_eq!(values[0], 0.1f32);
        assert_eq!(values[1], f32::NEG_INFINITY);
        assert_eq!(values[2], 1.0);
        assert!(values[3].is_nan());
        assert_eq!(values[4], -3.0);
    }

    #[test]
    fn corrupted_safetensors_is_malformed() {
        let dir = TempDir::new("stbad");
        let path = dir.file("bad.safetensors");
        let mut garbage = 16u64.to_le_bytes().to_vec();
        garbage.extend_from_slice(b"this is no json!");
        fs::write(&path, &garbage).unwrap();
        assert!(is_malformed(read_model(&path)));
        fs::write(&path, b"abc").unwrap();
        assert!(is_malformed(read_model(&path)));
        fs::write(&path, u64::MAX.to_le_bytes()).unwrap();
        assert!(is_malformed(read_model(&path)));
        // A valid file with its data cut short.
        let good = safetensors::serialize(vec![("w", f32_tensor(&[4], &[1.0; 4]))], None).unwrap();
        fs::write(&path, &good[..good.len() - 1]).unwrap();
        assert!(is_malformed(read_model(&path)));
    }

    #[test]
    fn safetensors_wrong_dtype_names_the_tensor() {
        let dir = TempDir::new("stdtype");
        let path = dir.file("ints.safetensors");
        let bytes = safetensors::serialize(
            vec![
                ("fine", f32_tensor(&[1], &[1.0])),
                (
                    "steps",
                    RawTensor {
                        dtype: Dtype::I64,
                        shape: vec![2],
                        data: vec![0u8; 16],
                    },
                ),
            ],
            None,
        )
        .unwrap();
        fs::write(&path, bytes).unwrap();
        match read_model(&path) {
            Err(ModelError::UnsupportedDtype { tensor, dtype }) => {
                assert_eq!(tensor, "steps");
                assert_eq!(dtype, "I64");
            }
            other => panic!("expected UnsupportedDtype, got {other:?}"),
        }
    }

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

    fn sample_layouts() -> Vec<ModelLayout> {
        vec![
            npy_layout(&[10]),
            npy_layout(&[]),
            npy_layout(&[2, 0, 5]),
            ModelLayout {
                format: ModelFormat::Safetensors,
                tensors: vec![
                    spec("layer.0.weight", &[4, 3]),
                    spec("layer.0.bias", &[4]),
                    spec("scale", &[]),
                    spec("ünïcode", &[1, 1, 1]),
                ],
            },
            ModelLayout {
                format: ModelFormat::Safetensors,
                tensors: vec![],
            },
        ]
    }

    #[test]
    fn layout_wire_round_trip() {
        for layout in sample_layouts() {
            let bytes = layout.to_bytes();
            let decoded = ModelLayout::from_bytes(&bytes, layout.params()).unwrap();
            assert_eq!(decoded, layout);
            assert!(decoded.same_tensors(&layout));
        }
        // The documented encoding, byte for byte.
        let layout = ModelLayout {
            format: ModelFormat::Safetensors,
            tensors: vec![spec("ab", &[3, 1])],
        };
        let mut expected = vec![1u8, 1, 0, 0, 0, 2, 0, b'a', b'b', 2];
        expected.extend_from_slice(&3u64.to_le_bytes());
        expected.extend_from_slice(&1u64.to_le_bytes());
        assert_eq!(layout.to_bytes(), expected);
        assert_eq!(layout.params(), 3);
        // same_tensors ignores the format but not names or shapes.
        let as_npy = ModelLayout {
            format: ModelFormat::Npy,
            tensors: layout.tensors.clone(),
        };
        assert!(as_npy.same_tensors(&layout));
        assert!(!npy_layout(&[3, 1]).same_tensors(&layout));
        assert!(!npy_layout(&[3]).same_tensors(&npy_layout(&[3, 1])));
    }

    fn layout_error(bytes: &[u8], max_params: usize) -> String {
        match ModelLayout::from_bytes(bytes, max_params) {
            Err(ModelError::Layout(message)) => message,
            other => panic!("expected a Layout error, got {other:?}"),
        }
    }

    /// Encodes a header claiming `count` tensors in `format`.
    fn wire_header(tag: u8, count: u32) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend_from_slice(&count.to_le_bytes());
        out
    }

    /// Encodes one tensor entry.
    fn wire_tensor(name: &[u8], dims: &[u64]) -> Vec<u8> {
        let mut out = (name.len() as u16).to_le_bytes().to_vec();
        out.extend_from_slice(name);
        out.push(dims.len() as u8);
        for d in dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out
    }

    #[test]
    fn layout_wire_rejections() {
        let layout = &sample_layouts()[3];
        let bytes = layout.to_bytes();
        let max = layout.params();

        // Trailing bytes.
        let mut long = bytes.clone();
        long.push(0);
        assert!(layout_error(&long, max).contains("unexpected"));

        // Truncated at every cut point.
        for cut in 0..bytes.len() {
            layout_error(&bytes[..cut], max);
        }

        // More tensors than the limit, with enough bytes present to otherwise parse them.
        let mut many = wire_header(TAG_SAFETENSORS, (MAX_TENSORS + 1) as u32);
        for i in 0..=MAX_TENSORS {
            many.extend(wire_tensor(format!("t{i}").as_bytes(), &[]));
        }
        assert!(layout_error(&many, usize::MAX).contains("limit"));
        // A large count with few bytes behind it is refused before allocating.
        assert!(
            layout_error(&wire_header(TAG_SAFETENSORS, u32::MAX), usize::MAX).contains("limit")
        );
        let mut few = wire_header(TAG_SAFETENSORS, 1000);
        few.extend(wire_tensor(b"x", &[]));
        layout_error(&few, usize::MAX);

        // Exactly the tensor limit is fine.
        let mut limit = wire_header(TAG_SAFETENSORS, MAX_TENSORS as u32);
        for i in 0..MAX_TENSORS {
            limit.extend(wire_tensor(format!("t{i}").as_bytes(), &[]));
        }
        assert_eq!(
            ModelLayout::from_bytes(&limit, MAX_TENSORS)
                .unwrap()
                .params(),
            MAX_TENSORS
        );

        // Name too long, and a name at the limit.
        let mut long_name = wire_header(TAG_SAFETENSORS, 1);
        long_name.extend(wire_tensor(&vec![b'n'; MAX_NAME + 1], &[1]));
        assert!(layout_error(&long_name, 10).contains("name"));
        let mut max_name = wire_header(TAG_SAFETENSORS, 1);
        max_name.extend(wire_tensor(&vec![b'n'; MAX_NAME], &[1]));
        assert!(ModelLayout::from_bytes(&max_name, 10).is_ok());

        // Name not UTF-8.
        let mut bad_utf8 = wire_header(TAG_SAFETENSORS, 1);
        bad_utf8.extend(wire_tensor(&[0xff, 0xfe], &[1]));
        assert!(layout_error(&bad_utf8, 10).contains("UTF-8"));

        // Too many dimensions.
        let mut dims = wire_header(TAG_SAFETENSORS, 1);
        dims.extend(wire_tensor(b"d", &[1; MAX_DIMS + 1]));
        assert!(layout_error(&dims, 10).contains("dimensions"));

        // Overflowing shapes, including one hidden behind a zero dimension.
        for shape in [
            &[1u64 << 40, 1 << 40][..],
            &[0, 1 << 40, 1 << 40],
            &[u64::MAX, 2],
        ] {
            let mut overflow = wire_header(TAG_SAFETENSORS, 1);
            overflow.extend(wire_tensor(b"o", shape));
            assert!(
                layout_error(&overflow, usize::MAX).contains("overflow"),
                "{shape:?}"
            );
        }
        // Total overflowing across tensors.
        let mut sum_overflow = wire_header(TAG_SAFETENSORS, 2);
        sum_overflow.extend(wire_tensor(b"a", &[u64::MAX / 2 + 1]));
        sum_overflow.extend(wire_tensor(b"b", &[u64::MAX / 2 + 1]));
        assert!(layout_error(&sum_overflow, usize::MAX).contains("overflow"));

        // Params above max_params.
        let big = npy_layout(&[10, 10]).to_bytes();
        assert!(ModelLayout::from_bytes(&big, 100).is_ok());
        assert!(layout_error(&big, 99).contains("99"));
        assert!(layout_error(&bytes, max - 1).contains("more than"));

        // Unknown tag, malformed npy layouts, duplicate names.
        let mut bad_tag = bytes.clone();
        bad_tag[0] = 7;
        assert!(layout_error(&bad_tag, max).contains("tag"));
        let mut two_npy = wire_header(TAG_NPY, 2);
        two_npy.extend(wire_tensor(b"", &[1]));
        two_npy.extend(wire_tensor(b"", &[1]));
        layout_error(&two_npy, 10);
        let mut named_npy = wire_header(TAG_NPY, 1);
        named_npy.extend(wire_tensor(b"w", &[1]));
        layout_error(&named_npy, 10);
        let mut dup = wire_header(TAG_SAFETENSORS, 2);
        dup.extend(wire_tensor(b"w", &[1]));
        dup.extend(wire_tensor(b"w", &[2]));
        assert!(layout_error(&dup, 10).contains("more than once"));
    }

    /// A small deterministic xorshift64* generator.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn layout_from_random_bytes_never_panics() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let seeds: Vec<Vec<u8>> = sample_layouts().iter().map(ModelLayout::to_bytes).collect();
        let mut accepted = 0usize;
        for round in 0..50_000 {
            let bytes: Vec<u8> = if round % 2 == 0 {
                // Pure noise, biased towards small values so that lengths sometimes fit.
                let len = rng.below(48);
                (0..len)
                    .map(|_| {
                        let r = rng.next();
                        if r % 3 == 0 {
                            (r >> 8) as u8
                        } else {
                            (r >> 8) as u8 % 4
                        }
                    })
                    .collect()
            } else {
                // Mutations of valid encodings: flipped bytes, cuts and insertions.
                let mut b = seeds[rng.below(seeds.len())].clone();
                for _ in 0..=rng.below(3) {
                    match rng.below(3) {
                        0 if !b.is_empty() => {
                            let i = rng.below(b.len());
                            b[i] = rng.next() as u8;
                        }
                        1 if !b.is_empty() => {
                            let cut = rng.below(b.len());
                            b.truncate(cut);
                        }
                        _ => {
                            let i = rng.below(b.len() + 1);
                            b.insert(i, rng.next() as u8);
                        }
                    }
                }
                b
            };
            let max_params = [0, 1, 100, usize::MAX][rng.below(4)];
            if let Ok(layout) = ModelLayout::from_bytes(&bytes, max_params) {
                accepted += 1;
                // Anything accepted is canonical and within the bounds.
                assert_eq!(layout.to_bytes(), bytes);
                assert!(layout.params() <= max_params);
                assert!(layout.tensors.len() <= MAX_TENSORS);
            }
        }
        assert!(
            accepted > 0,
            "the generator never produced a valid encoding"
        );
    }
}
