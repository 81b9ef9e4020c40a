//! The `.safetensors` reader and writer.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::{Dtype, SafeTensorError, View};
use serde::Deserialize;

use super::stream::Run;
use super::{
    FloatKind, MAX_DIMS, MAX_NAME, MAX_TENSORS, ModelError, ModelFormat, ModelLayout, ModelStream,
    TensorSpec, element_count, io_error, write_atomically,
};

/// Name given to the single unnamed tensor of an `.npy` layout when it is written as
/// `.safetensors`.
const NPY_TENSOR_NAME_IN_SAFETENSORS: &str = "sum";

/// The longest header the safetensors crate reads (its private `MAX_HEADER_SIZE`), repeated
/// here so that a longer one is refused with the crate's own error before it is read.
const MAX_HEADER_BYTES: u64 = 100_000_000;
/// Bytes of the little-endian `u64` header length that starts the file.
const LEN_BYTES: u64 = 8;

/// The JSON header as the safetensors crate reads it: a copy of the crate's private
/// `HashMetadata`, name included, so that serde words its errors the same way.
#[derive(Deserialize)]
struct HashMetadata {
    #[serde(rename = "__metadata__")]
    metadata: Option<HashMap<String, String>>,
    #[serde(flatten)]
    tensors: HashMap<String, TensorInfo>,
}

/// Why a safetensors header could not be read.
enum HeaderError {
    /// The header is invalid, in the safetensors crate's words.
    Invalid(SafeTensorError),
    /// Reading the file failed.
    Io(io::Error),
}

/// Reads and checks the header of a safetensors file `file_len` bytes long, returning where
/// its data starts and the parsed metadata.
///
/// This makes the checks of `SafeTensors::deserialize`, in the same order and with the
/// same errors, without reading the data: the crate only parses a header held in one
/// buffer with the whole file.
fn read_header(file: &mut File, file_len: u64) -> Result<(u64, Metadata), HeaderError> {
    if file_len < LEN_BYTES {
        return Err(HeaderError::Invalid(SafeTensorError::HeaderTooSmall));
    }
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(HeaderError::Io)?;
    let header_len = u64::from_le_bytes(len);
    if usize::try_from(header_len).is_err() || header_len > MAX_HEADER_BYTES {
        return Err(HeaderError::Invalid(SafeTensorError::HeaderTooLarge));
    }
    if header_len > file_len - LEN_BYTES {
        return Err(HeaderError::Invalid(SafeTensorError::InvalidHeaderLength));
    }
    // At most MAX_HEADER_BYTES, and no longer than the file.
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(HeaderError::Io)?;
    let text = std::str::from_utf8(&header)
        .map_err(|e| HeaderError::Invalid(SafeTensorError::InvalidHeader(e)))?;
    let parsed: HashMetadata = serde_json::from_str(text)
        .map_err(|e| HeaderError::Invalid(SafeTensorError::InvalidHeaderDeserialization(e)))?;
    // As the crate does: sort by offsets, then let Metadata::new check them.
    let mut tensors: Vec<(String, TensorInfo)> = parsed.tensors.into_iter().collect();
    tensors.sort_by_key(|(_, info)| info.data_offsets);
    let metadata = Metadata::new(parsed.metadata, tensors).map_err(HeaderError::Invalid)?;
    let data_start = LEN_BYTES + header_len;
    if (metadata.data_len() as u64).checked_add(data_start) != Some(file_len) {
        return Err(HeaderError::Invalid(
            SafeTensorError::MetadataIncompleteBuffer,
        ));
    }
    Ok((data_start, metadata))
}

/// Opens a `.safetensors` file: reads and checks its header and every tensor's name, shape
/// and dtype, and returns a stream over the tensors' data in name order.
pub(super) fn open_safetensors(path: &Path) -> Result<ModelStream, ModelError> {
    let shown = path.display();
    let mut file = File::open(path).map_err(io_error(path))?;
    let file_len = file.metadata().map_err(io_error(path))?.len();
    let (data_start, metadata) = read_header(&mut file, file_len).map_err(|e| match e {
        HeaderError::Invalid(e) => {
            ModelError::Malformed(format!("{shown}: not a valid safetensors file: {e}"))
        }
        HeaderError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            ModelError::Malformed(format!("{shown}: file ends inside the safetensors header"))
        }
        HeaderError::Io(source) => ModelError::Io {
            path: path.to_path_buf(),
            source,
        },
    })?;
    let mut tensors: Vec<(String, &TensorInfo)> = metadata.tensors().into_iter().collect();
    if tensors.len() > MAX_TENSORS {
        return Err(ModelError::TooLarge(format!(
            "{shown}: {} tensors; at most {MAX_TENSORS} are supported",
            tensors.len()
        )));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));

    let mut specs = Vec::with_capacity(tensors.len());
    let mut runs = Vec::with_capacity(tensors.len());
    let mut total = 0usize;
    for (name, info) in tensors {
        if name.len() > MAX_NAME {
            return Err(ModelError::TooLarge(format!(
                "{shown}: a tensor name is {} bytes long; at most {MAX_NAME} are supported",
                name.len()
            )));
        }
        let shape = info.shape.clone();
        if shape.len() > MAX_DIMS {
            return Err(ModelError::TooLarge(format!(
                "{shown}: tensor `{name}` has {} dimensions; at most {MAX_DIMS} are supported",
                shape.len()
            )));
        }
        let kind = match info.dtype {
            Dtype::F32 => FloatKind::F32,
            Dtype::F64 => FloatKind::F64,
            Dtype::F16 => FloatKind::F16,
            Dtype::BF16 => FloatKind::Bf16,
            other => {
                return Err(ModelError::UnsupportedDtype {
                    tensor: name,
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
        // The crate has checked that each tensor's data is exactly its shape's size; make
        // sure before trusting the offsets.
        let (start, end) = info.data_offsets;
        if count.checked_mul(kind.size()) != end.checked_sub(start) {
            return Err(ModelError::Malformed(format!(
                "{shown}: tensor data does not match the declared shapes"
            )));
        }
        runs.push(Run {
            offset: data_start + start as u64,
            count,
            kind,
            big_endian: false,
        });
        specs.push(TensorSpec { name, shape });
    }
    let layout = ModelLayout {
        format: ModelFormat::Safetensors,
        tensors: specs,
    };
    ModelStream::from_runs(path, file, layout, runs)
}

/// Writes one `F32` tensor per layout tensor, with its name and shape; an `.npy` layout's
/// unnamed tensor is named [`NPY_TENSOR_NAME_IN_SAFETENSORS`]. The caller has checked the
/// length.
pub(super) fn write_safetensors(
    path: &Path,
    layout: &ModelLayout,
    values: &[f32],
) -> Result<(), ModelError> {
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
        if cfg!(target_endian = "little") {
            // The values' own bytes are already little-endian: written without a copy (a
            // large model's sum would otherwise be duplicated while it is written).
            Cow::Borrowed(bytemuck::cast_slice(self.values))
        } else {
            Cow::Owned(self.values.iter().flat_map(|v| v.to_le_bytes()).collect())
        }
    }

    fn data_len(&self) -> usize {
        self.values.len() * 4
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use safetensors::SafeTensors;

    use super::super::test_support::{RawTensor, TempDir, f32_tensor, is_malformed, spec};
    use super::super::{read_model, write_model};
    use super::*;

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
}
