//! The `.npy` reader and writer.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read};
use std::path::Path;

use npyz::{DType, Endianness, NpyHeader, Order, TypeChar, TypeStr, WriteOptions, WriterBuilder};

use super::stream::Run;
use super::{
    FloatKind, MAX_DIMS, ModelError, ModelFormat, ModelLayout, ModelStream, TensorSpec,
    element_count, io_error, write_atomically,
};

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

/// Opens an `.npy` file: reads and checks its header and returns a stream over its values.
///
/// The data of a C-order array is streamed from the file. A Fortran-order array is read
/// whole and transposed here, unless at most one of its dimensions exceeds 1 (its data is
/// then already in C order).
pub(super) fn open_npy(path: &Path) -> Result<ModelStream, ModelError> {
    let shown = path.display();
    let file = File::open(path).map_err(io_error(path))?;
    let file_len = file.metadata().map_err(io_error(path))?.len();
    let preamble = read_npy_preamble(&mut &file, file_len, path)?;
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

    let fortran = header.order() == Order::Fortran && fortran_differs_from_c(&shape);
    let layout = ModelLayout {
        format: ModelFormat::Npy,
        tensors: vec![TensorSpec {
            name: String::new(),
            shape: shape.clone(),
        }],
    };
    let data = Run {
        offset: preamble.len() as u64,
        count,
        kind,
        big_endian,
    };
    let stream = ModelStream::from_runs(path, file, layout, vec![data])?;
    if fortran {
        stream.into_memory(|values| fortran_to_c_order(&values, &shape))
    } else {
        Ok(stream)
    }
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

/// Whether an array of `shape` is laid out differently in Fortran and in C order, which is
/// when more than one of its dimensions exceeds 1.
fn fortran_differs_from_c(shape: &[usize]) -> bool {
    shape.iter().filter(|&&dim| dim > 1).count() > 1
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

/// Writes `values` as one `<f4` array in C order: with the layout's shape when it holds
/// exactly one tensor, as a flat 1-D array otherwise. The caller has checked the length.
pub(super) fn write_npy(
    path: &Path,
    layout: &ModelLayout,
    values: &[f32],
) -> Result<(), ModelError> {
    let shape: Vec<u64> = match layout.tensors.as_slice() {
        [only] => only.shape.iter().map(|&d| d as u64).collect(),
        _ => vec![values.len() as u64],
    };
    write_atomically(path, |tmp| write_npy_file(tmp, path, &shape, values))
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

#[cfg(test)]
mod tests {
    use std::fs;

    use super::super::test_support::{TempDir, is_malformed, npy_layout, ramp, raw_npy};
    use super::super::{MAX_DIMS, read_model, write_model};
    use super::*;

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
}
