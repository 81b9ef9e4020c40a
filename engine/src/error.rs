//! The engine's error type: one variant per thing that can go wrong.

use crate::LaneKind;

/// Everything an engine call can fail with. API misuse (mismatched lengths, a modulus the lane
/// cannot carry) and device trouble (no adapter, device lost, out of memory) are both typed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The exponent of 2^b is outside 1..=64.
    #[error("modulus exponent b = {bits} is out of range: b must be in 1..=64")]
    InvalidModulus {
        /// The rejected exponent.
        bits: u32,
    },
    /// The lane type is too narrow for the modulus.
    #[error("modulus 2^{bits} does not fit in {lane_bits}-bit lanes")]
    ModulusTooWide {
        /// The modulus exponent.
        bits: u32,
        /// The lane width.
        lane_bits: u32,
    },
    /// A `u64` lane for a modulus of at most 32 bits (those take `u32` lanes).
    #[error("modulus 2^{bits} is carried by 32-bit lanes, not {lane_bits}-bit lanes")]
    LaneTooWide {
        /// The modulus exponent.
        bits: u32,
        /// The lane width.
        lane_bits: u32,
    },
    /// The two vectors of an element-wise operation differ in length.
    #[error("length mismatch: accumulator has {acc} elements, input has {input}")]
    LengthMismatch {
        /// Accumulator length.
        acc: usize,
        /// Input length.
        input: usize,
    },
    /// The keystream position would run past the 2^64-block counter space.
    #[error("offset {offset} + length {len} runs past the end of the keystream")]
    OffsetOverflow {
        /// Element offset asked for.
        offset: u64,
        /// Slice length.
        len: usize,
    },
    /// A raw keystream request was not a whole number of 16-word blocks.
    #[error("raw keystream output must be a multiple of 16 words, got {len}")]
    PartialBlock {
        /// The rejected length.
        len: usize,
    },
    /// An unknown PRG name was given.
    #[error("unknown PRG {0:?}: expected chacha20, chacha12 or chacha8")]
    UnknownPrg(String),
    /// An unknown backend name was given.
    #[error(
        "unknown backend {0:?}: expected auto, cpu, gpu, gpu:N (adapter N), or a comma-separated \
         list of cpu, gpu and gpu:N shards (e.g. cpu,cpu or gpu:0,gpu:1)"
    )]
    UnknownBackend(String),
    /// This engine has no kernels for the lane type.
    #[error("the {engine} engine does not support {lane:?} lanes")]
    UnsupportedLane {
        /// Engine name.
        engine: &'static str,
        /// The lane kind asked for.
        lane: LaneKind,
    },
    /// The GPU engine was asked for by name, in a build without it (the `gpu` feature).
    #[error("built without GPU support (the `gpu` feature of secagg-engine is off)")]
    GpuNotBuilt,
    /// No GPU adapter was found (or the one named could not be opened).
    #[error("no GPU adapter available: {0}")]
    NoAdapter(String),
    /// The adapter refused to create a device with the limits we need.
    #[error("could not open a GPU device: {0}")]
    RequestDevice(String),
    /// The GPU device was lost (driver reset, hang, removal).
    #[error("GPU device lost: {0}")]
    DeviceLost(String),
    /// GPU memory allocation failed.
    #[error("GPU out of memory allocating {bytes} bytes for {what}")]
    OutOfMemory {
        /// What was being allocated.
        what: &'static str,
        /// Requested size.
        bytes: u64,
    },
    /// Reading results back from the GPU failed.
    #[error("GPU buffer mapping failed: {0}")]
    Mapping(String),
    /// Any other validation error reported by wgpu (a bug in this crate if it ever shows).
    #[error("GPU validation error: {0}")]
    Validation(String),
    /// A range of an accumulator runs past its end.
    #[error("elements {start}..{start}+{len} run past the accumulator's {capacity} elements")]
    OutOfRange {
        /// First element asked for.
        start: usize,
        /// Elements asked for.
        len: usize,
        /// The accumulator's length.
        capacity: usize,
    },
    /// Packed input whose byte length is not that of `count` elements of `bits` bits.
    #[error("{bytes} packed bytes do not hold {count} elements of {bits} bits")]
    PackedLength {
        /// Bytes given.
        bytes: usize,
        /// Elements announced.
        count: usize,
        /// Bits per element.
        bits: u32,
    },
    /// An accumulator made by another engine was handed to this one.
    #[error("this accumulator belongs to the {owner} engine, not the {engine} engine")]
    ForeignAccumulator {
        /// The engine that made it.
        owner: &'static str,
        /// The engine it was given to.
        engine: &'static str,
    },
    /// A sharded engine was given no engines.
    #[error("a sharded engine needs at least one engine")]
    NoShards,
    /// A sharded engine's weights do not match its engines (one weight of at least 1 each).
    #[error(
        "{weights} shard weights for {shards} engines: give one weight of at least 1 per engine"
    )]
    ShardWeights {
        /// Engines given.
        shards: usize,
        /// Weights given.
        weights: usize,
    },
    /// A sharded accumulator was handed to a sharded engine with another number of shards.
    #[error("this accumulator has {parts} shards, the engine {shards}")]
    ShardMismatch {
        /// The accumulator's shards.
        parts: usize,
        /// The engine's shards.
        shards: usize,
    },
    /// A worker thread pool could not be built.
    #[error("could not build CPU thread pool: {0}")]
    ThreadPool(String),
}
