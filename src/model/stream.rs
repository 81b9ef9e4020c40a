//! [`ModelStream`]: a model file's values, read a chunk at a time.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::{FloatKind, ModelError, ModelFormat, ModelLayout, decode_floats, format_of, npy};

/// The most bytes a stream reads from the file at once (a multiple of every element size).
/// The stream's buffer grows to the smallest of this and the largest chunk asked for.
const MAX_READ_BYTES: usize = 1 << 20;

/// Reads a model file's values in order, a chunk at a time, holding O(chunk) memory.
///
/// [`ModelStream::open`] reads and checks the file's header exactly as [`read_model`] does,
/// with the same errors, and [`ModelStream::read`] then hands out the same values
/// [`read_model`] returns, in the same order and converted to `f32` the same way. Values
/// are read from the file only when asked for, through one reusable byte buffer that grows
/// to the encoded size of the largest chunk asked for and never beyond 1 MiB; besides that
/// buffer the stream holds the layout and one entry per tensor. (`open` also reads a
/// `.safetensors` header, at most 100 MB, into memory while it parses it.)
///
/// * `.safetensors`: the tensors are walked in name order, each tensor's byte range in
///   turn; one chunk may span several tensors.
/// * `.npy` in C order: the data is read front to back.
/// * `.npy` in Fortran order: the values of a column-major array cannot come out row-major
///   without strided reads, so `open` reads and transposes the whole array once (as
///   [`read_model`] does) and the chunks are served from memory. Such a stream holds the
///   whole model. A Fortran-order array with at most one dimension above 1 is laid out as
///   in C order and is streamed from the file.
///
/// A file that is shorter than its header promises is refused by `open`; one that shrinks
/// while it is being read makes `read` return [`ModelError::Malformed`]. After `read` has
/// returned an error the stream is spent, and every later call returns an error too.
///
/// [`read_model`]: super::read_model
pub struct ModelStream {
    /// The file being read, for error messages.
    path: PathBuf,
    layout: ModelLayout,
    params: usize,
    /// How many values have been handed out.
    position: usize,
    source: Source,
    /// Set once `read` has failed.
    failed: bool,
}

/// Where a stream's values come from.
enum Source {
    /// Encoded values read from the file on demand.
    File(FileRuns),
    /// Values decoded at open (a transposed Fortran-order array).
    Memory(Vec<f32>),
}

/// A run of encoded values stored contiguously in the file.
#[derive(Clone, Copy, Debug)]
pub(super) struct Run {
    /// Where the run's first byte is in the file.
    pub(super) offset: u64,
    /// How many values the run holds (at least one).
    pub(super) count: usize,
    /// How each value is encoded.
    pub(super) kind: FloatKind,
    /// Whether the values are big-endian.
    pub(super) big_endian: bool,
}

/// The file-backed source: runs served in order through one reusable buffer.
struct FileRuns {
    file: File,
    runs: Vec<Run>,
    /// The run being read.
    run: usize,
    /// How many values of that run have been read.
    done: usize,
    /// Where the file's cursor is, when known, to skip needless seeks.
    cursor: Option<u64>,
    /// Encoded bytes, reused for every read.
    buffer: Vec<u8>,
}

impl ModelStream {
    /// Opens a model file and reads its header; the values are read by [`ModelStream::read`].
    ///
    /// The format comes from the extension and the header is checked exactly as
    /// [`read_model`](super::read_model) checks it, with the same errors.
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        match format_of(path)? {
            ModelFormat::Npy => npy::open_npy(path),
            ModelFormat::Safetensors => super::safetensors::open_safetensors(path),
        }
    }

    /// The layout read from the header.
    pub fn layout(&self) -> &ModelLayout {
        &self.layout
    }

    /// The number of values in the file (`self.layout().params()`).
    pub fn params(&self) -> usize {
        self.params
    }

    /// Fills `out` with the next values (converted to f32 exactly as read_model converts
    /// them); returns how many were written (< out.len() only at the end; 0 once done).
    ///
    /// An empty `out` reads nothing and returns 0. A read error leaves the values written
    /// into `out` unspecified and ends the stream: every later call fails too.
    pub fn read(&mut self, out: &mut [f32]) -> Result<usize, ModelError> {
        if self.failed {
            return Err(ModelError::Malformed(format!(
                "{}: an earlier read of this model file failed",
                self.path.display()
            )));
        }
        let want = out.len().min(self.params - self.position);
        let out = &mut out[..want];
        let result = match &mut self.source {
            Source::Memory(values) => {
                out.copy_from_slice(&values[self.position..self.position + want]);
                Ok(())
            }
            Source::File(runs) => runs.fill(out, &self.path),
        };
        match result {
            Ok(()) => {
                self.position += want;
                Ok(want)
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    /// A stream serving the values of `runs` from `file`, in order. Their counts must add
    /// up to `layout.params()`; the caller has checked the layout and the file's length.
    pub(super) fn from_runs(
        path: &Path,
        file: File,
        layout: ModelLayout,
        runs: Vec<Run>,
    ) -> Result<Self, ModelError> {
        let params = layout
            .checked_params()
            .ok_or_else(|| malformed_count(path))?;
        let runs: Vec<Run> = runs.into_iter().filter(|run| run.count > 0).collect();
        let total = runs
            .iter()
            .try_fold(0usize, |total, run| total.checked_add(run.count));
        if total != Some(params) {
            return Err(malformed_count(path));
        }
        Ok(ModelStream {
            path: path.to_path_buf(),
            layout,
            params,
            position: 0,
            source: Source::File(FileRuns {
                file,
                runs,
                run: 0,
                done: 0,
                cursor: None,
                buffer: Vec::new(),
            }),
            failed: false,
        })
    }

    /// Reads every value into memory now, replaces them by `arrange(values)` (which must
    /// keep their number) and serves the chunks from there.
    pub(super) fn into_memory(
        self,
        arrange: impl FnOnce(Vec<f32>) -> Vec<f32>,
    ) -> Result<Self, ModelError> {
        let path = self.path.clone();
        let (layout, values) = self.into_values()?;
        let values = arrange(values);
        if values.len() != layout.params() {
            return Err(malformed_count(&path));
        }
        Ok(ModelStream {
            path,
            params: values.len(),
            layout,
            position: 0,
            source: Source::Memory(values),
            failed: false,
        })
    }

    /// The layout and every value not yet read, for [`read_model`](super::read_model).
    pub(super) fn into_values(mut self) -> Result<(ModelLayout, Vec<f32>), ModelError> {
        if self.position == 0 && !self.failed {
            if let Source::Memory(values) = &mut self.source {
                return Ok((self.layout, std::mem::take(values)));
            }
        }
        // The header was checked against the file's length, so this allocation is bounded
        // by the size of the file.
        let mut values = vec![0.0f32; self.params - self.position];
        let got = self.read(&mut values)?;
        if got != values.len() {
            return Err(malformed_count(&self.path));
        }
        Ok((self.layout, values))
    }
}

/// The error for a header whose tensors and data disagree on the number of values.
fn malformed_count(path: &Path) -> ModelError {
    ModelError::Malformed(format!(
        "{}: tensor data does not match the declared shapes",
        path.display()
    ))
}

impl FileRuns {
    /// Fills all of `out` with the next values; the caller never asks for more than remain.
    fn fill(&mut self, out: &mut [f32], path: &Path) -> Result<(), ModelError> {
        let mut filled = 0;
        while filled < out.len() {
            let Some(&run) = self.runs.get(self.run) else {
                return Err(malformed_count(path));
            };
            let left = run.count - self.done;
            if left == 0 {
                self.run += 1;
                self.done = 0;
                continue;
            }
            let size = run.kind.size();
            let n = left.min(out.len() - filled).min(MAX_READ_BYTES / size);
            let bytes = n * size;
            // Within the file, whose length fits u64, so neither product overflows.
            let offset = run.offset + self.done as u64 * size as u64;
            if self.cursor != Some(offset) {
                self.cursor = None;
                self.file
                    .seek(SeekFrom::Start(offset))
                    .map_err(|source| io_failure(path, source))?;
            }
            if self.buffer.len() < bytes {
                self.buffer.resize(bytes, 0);
            }
            let buffer = &mut self.buffer[..bytes];
            self.file
                .read_exact(buffer)
                .map_err(|source| io_failure(path, source))?;
            self.cursor = Some(offset + bytes as u64);
            decode_floats(
                buffer,
                run.kind,
                run.big_endian,
                &mut out[filled..filled + n],
            );
            self.done += n;
            filled += n;
        }
        Ok(())
    }
}

/// The error for a failed read of the values: [`ModelError::Malformed`] when the file ended
/// early, [`ModelError::Io`] otherwise.
fn io_failure(path: &Path, source: io::Error) -> ModelError {
    if source.kind() == io::ErrorKind::UnexpectedEof {
        ModelError::Malformed(format!(
            "{}: the file ends before the values its header describes (was it changed \
             while being read?)",
            path.display()
        ))
    } else {
        ModelError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl fmt::Debug for ModelStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelStream")
            .field("path", &self.path)
            .field("layout", &self.layout)
            .field("params", &self.params)
            .field("position", &self.position)
            .field(
                "source",
                &match self.source {
                    Source::File(_) => "file",
                    Source::Memory(_) => "memory",
                },
            )
            .field("failed", &self.failed)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::fs::{self, OpenOptions};

    use rand_chacha::ChaCha8Rng;
    use rand_chacha::rand_core::{Rng, SeedableRng};
    use safetensors::{Dtype, SafeTensors};

    use super::super::test_support::{RawTensor, TempDir, npy_layout, raw_npy, spec};
    use super::super::{f16_to_f32, read_model};
    use super::*;

    /// The input generator of one test, seeded from a printed seed.
    struct Inputs(ChaCha8Rng);

    impl Inputs {
        fn new(test: &str) -> Self {
            Self(ChaCha8Rng::seed_from_u64(
                secagg_engine::testing::test_seed(test),
            ))
        }

        fn below(&mut self, n: usize) -> usize {
            (self.0.next_u64() % n as u64) as usize
        }

        fn bytes(&mut self, n: usize) -> Vec<u8> {
            let mut out = vec![0u8; n];
            self.0.fill_bytes(&mut out);
            out
        }

        /// A shape of up to `max_dims` dimensions, each at most 5 (often 1, sometimes 0).
        fn shape(&mut self, max_dims: usize) -> Vec<usize> {
            let dims = self.below(max_dims + 1);
            (0..dims)
                .map(|_| match self.below(8) {
                    0 => 0,
                    1 | 2 => 1,
                    _ => 2 + self.below(4),
                })
                .collect()
        }
    }

    /// How many values each `read` asks for.
    #[derive(Clone, Copy, Debug)]
    enum Chunks {
        /// Always this many.
        Fixed(usize),
        /// A fresh random number from 1 to this many on every call.
        Random(usize),
    }

    /// The chunkings every file is read with: 1, 7, 4096, more values than the file has
    /// bytes, and random sizes that change from call to call.
    fn chunkings(file_len: usize, params: usize) -> [Chunks; 6] {
        [
            Chunks::Fixed(1),
            Chunks::Fixed(7),
            Chunks::Fixed(4096),
            Chunks::Fixed(file_len + 1),
            Chunks::Random(9),
            Chunks::Random(2 * params + 2),
        ]
    }

    /// Reads all of `path` through a [`ModelStream`] with `chunks`, checking the contract of
    /// `read` on the way; returns the layout and the bits of the values.
    fn drain(
        path: &Path,
        chunks: Chunks,
        rng: &mut Inputs,
    ) -> Result<(ModelLayout, Vec<u32>), ModelError> {
        let mut stream = ModelStream::open(path)?;
        let params = stream.params();
        assert_eq!(params, stream.layout().params());
        assert_eq!(stream.read(&mut [])?, 0);
        let mut values = Vec::with_capacity(params);
        let mut out = Vec::new();
        let mut largest = 0;
        loop {
            let want = match chunks {
                Chunks::Fixed(n) => n,
                Chunks::Random(max) => 1 + rng.below(max),
            };
            largest = largest.max(want);
            // A sentinel that no read may leave behind in the part it reports as written.
            out.clear();
            out.resize(want, f32::from_bits(0x7fc0_dead));
            let got = stream.read(&mut out)?;
            assert!(got <= want);
            values.extend(out[..got].iter().map(|v| v.to_bits()));
            assert_eq!(stream.position, values.len());
            if got < want {
                // Short only at the end, and 0 from then on.
                assert_eq!(values.len(), params, "{chunks:?}");
                assert_eq!(stream.read(&mut out)?, 0);
                break;
            }
        }
        if let Source::File(runs) = &stream.source {
            // O(chunk): the buffer never outgrows the largest chunk asked for.
            assert!(runs.buffer.len() <= MAX_READ_BYTES.min(8 * largest));
        }
        Ok((stream.layout, values))
    }

    /// Checks that `read_model` gives `layout` and `expected` (bits), and that a stream
    /// gives exactly the same with every chunking.
    fn check_file(path: &Path, layout: &ModelLayout, expected: &[u32], rng: &mut Inputs) {
        let (read_layout, values) = read_model(path).unwrap();
        assert_eq!(&read_layout, layout);
        let bits: Vec<u32> = values.iter().map(|v| v.to_bits()).collect();
        assert_eq!(bits, expected);
        let file_len = fs::metadata(path).unwrap().len() as usize;
        for chunks in chunkings(file_len, expected.len()) {
            let (stream_layout, stream_bits) = drain(path, chunks, rng).unwrap();
            assert_eq!(&stream_layout, layout, "{chunks:?}");
            assert!(stream_bits == expected, "{chunks:?}: values differ");
        }
    }

    /// The f32 bits of one encoded element, decoded without `decode_floats`.
    fn reference_bits(bytes: &[u8], kind: FloatKind, big_endian: bool) -> u32 {
        let mut le = bytes.to_vec();
        if big_endian {
            le.reverse();
        }
        match kind {
            FloatKind::F16 => f16_to_f32(u16::from_le_bytes([le[0], le[1]])).to_bits(),
            FloatKind::Bf16 => u32::from(u16::from_le_bytes([le[0], le[1]])) << 16,
            FloatKind::F32 => u32::from_le_bytes([le[0], le[1], le[2], le[3]]),
            FloatKind::F64 => {
                let mut word = [0u8; 8];
                word.copy_from_slice(&le);
                (f64::from_bits(u64::from_le_bytes(word)) as f32).to_bits()
            }
        }
    }

    /// Decodes `data` element by element with [`reference_bits`].
    fn reference_values(data: &[u8], kind: FloatKind, big_endian: bool) -> Vec<u32> {
        data.chunks_exact(kind.size())
            .map(|element| reference_bits(element, kind, big_endian))
            .collect()
    }

    /// Reorders `stored` (column-major for `shape`) into row-major order, by computing each
    /// row-major index's column-major position.
    fn reference_c_order(stored: &[u32], shape: &[usize]) -> Vec<u32> {
        (0..stored.len())
            .map(|c_index| {
                let mut rest = c_index;
                let mut index = vec![0usize; shape.len()];
                for axis in (0..shape.len()).rev() {
                    index[axis] = rest % shape[axis];
                    rest /= shape[axis];
                }
                let mut f_index = 0;
                let mut stride = 1;
                for axis in 0..shape.len() {
                    f_index += index[axis] * stride;
                    stride *= shape[axis];
                }
                stored[f_index]
            })
            .collect()
    }

    /// A shape as a Python tuple, for an npy header.
    fn shape_text(shape: &[usize]) -> String {
        match shape {
            [] => "()".to_owned(),
            [only] => format!("({only},)"),
            _ => {
                let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
                format!("({})", dims.join(", "))
            }
        }
    }

    /// An npy file of `shape` with random data; returns its bytes and the values (bits) it
    /// holds in row-major order.
    fn random_npy(
        rng: &mut Inputs,
        kind: FloatKind,
        big_endian: bool,
        fortran: bool,
        shape: &[usize],
    ) -> (Vec<u8>, Vec<u32>) {
        let count: usize = shape.iter().product();
        let data = rng.bytes(count * kind.size());
        let descr = format!("{}f{}", if big_endian { '>' } else { '<' }, kind.size());
        let stored = reference_values(&data, kind, big_endian);
        let expected = if fortran {
            reference_c_order(&stored, shape)
        } else {
            stored
        };
        (
            raw_npy(&descr, fortran, &shape_text(shape), &data),
            expected,
        )
    }

    #[test]
    fn npy_streams_like_read_model() {
        let mut rng = Inputs::new("model::stream::npy_streams_like_read_model");
        let dir = TempDir::new("streamnpy");
        let path = dir.file("update.npy");
        for kind in [FloatKind::F16, FloatKind::F32, FloatKind::F64] {
            for big_endian in [false, true] {
                for fortran in [false, true] {
                    let mut shapes: Vec<Vec<usize>> = (0..4).map(|_| rng.shape(4)).collect();
                    shapes.extend([vec![], vec![1, 6], vec![6, 1], vec![2, 3, 4]]);
                    for shape in shapes {
                        let (bytes, expected) =
                            random_npy(&mut rng, kind, big_endian, fortran, &shape);
                        fs::write(&path, &bytes).unwrap();
                        check_file(&path, &npy_layout(&shape), &expected, &mut rng);
                        // Only a Fortran-order array that really needs transposing is
                        // held in memory.
                        let stream = ModelStream::open(&path).unwrap();
                        let transposed = fortran && shape.iter().filter(|&&d| d > 1).count() > 1;
                        assert_eq!(
                            matches!(stream.source, Source::Memory(_)),
                            transposed,
                            "{shape:?}"
                        );
                    }
                }
            }
            // More data than one read of the buffer takes, in each byte order and layout.
            let count = MAX_READ_BYTES / kind.size() + 1 + rng.below(5000);
            let big_endian = rng.below(2) == 1;
            let (bytes, expected) = random_npy(&mut rng, kind, big_endian, false, &[count]);
            fs::write(&path, &bytes).unwrap();
            check_file(&path, &npy_layout(&[count]), &expected, &mut rng);
            let shape = [3 + rng.below(100), 500];
            let (bytes, expected) = random_npy(&mut rng, kind, big_endian, true, &shape);
            fs::write(&path, &bytes).unwrap();
            check_file(&path, &npy_layout(&shape), &expected, &mut rng);
        }
    }

    /// A random safetensors dtype that converts to f32.
    fn float_dtype(rng: &mut Inputs) -> (Dtype, FloatKind) {
        [
            (Dtype::F32, FloatKind::F32),
            (Dtype::F64, FloatKind::F64),
            (Dtype::F16, FloatKind::F16),
            (Dtype::BF16, FloatKind::Bf16),
        ][rng.below(4)]
    }

    /// A safetensors file of `tensors` random tensors (one of them holding more than one
    /// read buffer when `large`); returns its bytes, layout and values (bits).
    fn random_safetensors(
        rng: &mut Inputs,
        tensors: usize,
        large: bool,
    ) -> (Vec<u8>, ModelLayout, Vec<u32>) {
        let mut names = HashSet::new();
        while names.len() < tensors {
            let len = 1 + rng.below(6);
            let name: String = (0..len)
                .map(|_| ['a', 'b', 'Z', '.', '_', '0', '9', 'ü'][rng.below(8)])
                .collect();
            names.insert(name);
        }
        let mut names: Vec<String> = names.into_iter().collect();
        names.sort();
        let mut specs = Vec::new();
        let mut expected = Vec::new();
        let mut raw = Vec::new();
        for (index, name) in names.iter().enumerate() {
            let (dtype, kind) = float_dtype(rng);
            let shape = if large && index == 0 {
                vec![2, MAX_READ_BYTES / kind.size() / 2 + 1 + rng.below(3000)]
            } else {
                rng.shape(3)
            };
            let count: usize = shape.iter().product();
            let data = rng.bytes(count * kind.size());
            expected.extend(reference_values(&data, kind, false));
            specs.push(spec(name, &shape));
            raw.push((name.clone(), RawTensor { dtype, shape, data }));
        }
        let metadata =
            (rng.below(2) == 0).then(|| HashMap::from([("format".to_owned(), "pt".to_owned())]));
        // The crate lays the data out by alignment, then name, not in name order.
        let bytes = safetensors::serialize(raw, metadata).unwrap();
        let layout = ModelLayout {
            format: ModelFormat::Safetensors,
            tensors: specs,
        };
        (bytes, layout, expected)
    }

    #[test]
    fn safetensors_streams_like_read_model() {
        let mut rng = Inputs::new("model::stream::safetensors_streams_like_read_model");
        let dir = TempDir::new("streamst");
        let path = dir.file("update.safetensors");
        for round in 0..24 {
            let (bytes, layout, expected) = random_safetensors(&mut rng, 1 + round % 6, round < 3);
            fs::write(&path, &bytes).unwrap();
            check_file(&path, &layout, &expected, &mut rng);
        }
        // No tensors at all.
        let bytes = safetensors::serialize(Vec::<(String, RawTensor)>::new(), None).unwrap();
        fs::write(&path, &bytes).unwrap();
        let empty = ModelLayout {
            format: ModelFormat::Safetensors,
            tensors: vec![],
        };
        check_file(&path, &empty, &[], &mut rng);
    }

    /// Whether opening `path` and reading it to the end fails with `Malformed`.
    fn stream_is_malformed(path: &Path, rng: &mut Inputs) -> bool {
        matches!(
            drain(path, Chunks::Random(64), rng),
            Err(ModelError::Malformed(_))
        )
    }

    #[test]
    fn truncated_files_are_refused() {
        let mut rng = Inputs::new("model::stream::truncated_files_are_refused");
        let dir = TempDir::new("streamcut");
        let npy = dir.file("cut.npy");
        for (kind, fortran) in [(FloatKind::F32, false), (FloatKind::F64, true)] {
            let big_endian = rng.below(2) == 1;
            let (good, _) = random_npy(&mut rng, kind, big_endian, fortran, &[3, 5]);
            for cut in 0..good.len() {
                fs::write(&npy, &good[..cut]).unwrap();
                assert!(stream_is_malformed(&npy, &mut rng), "cut at {cut}");
            }
        }
        let st = dir.file("cut.safetensors");
        let (good, _, _) = random_safetensors(&mut rng, 4, false);
        for cut in 0..good.len() {
            fs::write(&st, &good[..cut]).unwrap();
            assert!(stream_is_malformed(&st, &mut rng), "cut at {cut}");
        }
    }

    #[test]
    fn file_shrinking_while_read_is_an_error() {
        let mut rng = Inputs::new("model::stream::file_shrinking_while_read_is_an_error");
        let dir = TempDir::new("streamshrink");
        let npy = dir.file("shrink.npy");
        let (bytes, _) = random_npy(&mut rng, FloatKind::F32, false, false, &[10_000]);
        let st = dir.file("shrink.safetensors");
        let (st_bytes, _, _) = random_safetensors(&mut rng, 5, true);
        for (path, bytes) in [(&npy, &bytes), (&st, &st_bytes)] {
            fs::write(path, bytes).unwrap();
            let mut stream = ModelStream::open(path).unwrap();
            let params = stream.params();
            let mut out = vec![0.0f32; 100];
            assert_eq!(stream.read(&mut out).unwrap(), 100);
            let keep = bytes.len() - (bytes.len() - 100) / 2 - rng.below(50);
            OpenOptions::new()
                .write(true)
                .open(path)
                .unwrap()
                .set_len(keep as u64)
                .unwrap();
            let mut read = 100;
            let error = loop {
                match stream.read(&mut out) {
                    Ok(got) => {
                        assert!(got > 0, "the stream ended early without an error");
                        read += got;
                    }
                    Err(e) => break e,
                }
            };
            assert!(read < params);
            assert!(matches!(error, ModelError::Malformed(_)), "{error}");
            // The stream is spent.
            assert!(stream.read(&mut out).is_err());
        }
    }

    #[test]
    fn safetensors_header_errors_match_the_crate() {
        let mut rng = Inputs::new("model::stream::safetensors_header_errors_match_the_crate");
        let dir = TempDir::new("streamhdr");
        let path = dir.file("hdr.safetensors");
        let (good, _, _) = random_safetensors(&mut rng, 3, false);
        let header_end = 8 + u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
        let mut cases: Vec<Vec<u8>> = (0..good.len()).map(|cut| good[..cut].to_vec()).collect();
        for len in [0, 1, 2, header_end - 9, header_end - 7, good.len()]
            .into_iter()
            .map(|n| n as u64)
            .chain([100_000_000, 100_000_001, u64::MAX])
        {
            let mut bytes = good.clone();
            bytes[..8].copy_from_slice(&len.to_le_bytes());
            cases.push(bytes);
        }
        for _ in 0..2000 {
            // A byte of the header replaced, often by one that keeps the JSON readable.
            let mut bytes = good.clone();
            let at = rng.below(header_end);
            bytes[at] = if rng.below(2) == 0 {
                b"0123456789,:[]{}\"FBU"[rng.below(20)]
            } else {
                rng.bytes(1)[0]
            };
            cases.push(bytes);
        }
        let mut refused = 0;
        for bytes in cases {
            fs::write(&path, &bytes).unwrap();
            let ours = ModelStream::open(&path);
            match SafeTensors::deserialize(&bytes) {
                Err(e) => {
                    refused += 1;
                    let expected = format!(
                        "malformed model file: {}: not a valid safetensors file: {e}",
                        path.display()
                    );
                    let got = ours.map(|_| ()).unwrap_err().to_string();
                    // Which of two tensors with the same offsets is named depends on hash
                    // order, in the crate and here alike.
                    let same_offset_clash = |m: &str| m.contains("invalid offset for tensor");
                    if same_offset_clash(&expected) {
                        assert!(same_offset_clash(&got), "{got}");
                    } else {
                        assert_eq!(got, expected);
                    }
                }
                Ok(_) => {
                    if let Err(e) = ours {
                        assert!(!e.to_string().contains("not a valid safetensors"), "{e}");
                    }
                }
            }
        }
        assert!(refused > 0);
    }

    #[test]
    fn model_stream_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<ModelStream>();
    }
}
