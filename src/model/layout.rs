//! [`ModelLayout`]: the names and shapes of a model's tensors, and their wire encoding.

use std::collections::HashSet;

use super::{MAX_DIMS, MAX_NAME, MAX_TENSORS, ModelError, ModelFormat, TensorSpec, element_count};

/// Tag byte of [`ModelFormat::Npy`] in the wire encoding.
const TAG_NPY: u8 = 0;
/// Tag byte of [`ModelFormat::Safetensors`] in the wire encoding.
const TAG_SAFETENSORS: u8 = 1;
/// The fewest bytes one tensor can occupy on the wire: a `u16` name length and a `u8`
/// dimension count.
const MIN_TENSOR_WIRE_BYTES: usize = 3;

/// The layout of a model update: its tensors in the order their values are flattened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelLayout {
    /// The format of the file the layout was read from.
    pub format: ModelFormat,
    /// The tensors, in the order their values appear in the flat vector.
    pub tensors: Vec<TensorSpec>,
}

impl ModelLayout {
    /// Total number of f32 values.
    ///
    /// Saturates at `usize::MAX` for a layout whose element count overflows (which no
    /// layout returned by [`read_model`](super::read_model) or
    /// [`ModelLayout::from_bytes`] does).
    pub fn params(&self) -> usize {
        self.checked_params().unwrap_or(usize::MAX)
    }

    /// Total number of values, or `None` when it overflows.
    pub(super) fn checked_params(&self) -> Option<usize> {
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

#[cfg(test)]
mod tests {
    use super::super::test_support::{npy_layout, spec};
    use super::*;

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
