//! Run-time choice between the CPU and GPU engines.

use crate::{
    Backend, BackendKind, CpuEngine, EngineError, Lane, MaskTerm, Modulus, Prg, Seed, Sharded,
    ShardedAccumulator, StreamPos,
};
#[cfg(feature = "gpu")]
use crate::{GpuEngine, GpuOptions};

/// Which backend to use: `auto` takes a hardware GPU adapter when one exists, the CPU
/// otherwise (a software Vulkan driver such as lavapipe only when `gpu` is asked for). In a
/// build without the `gpu` feature, `auto` is the CPU and `gpu` an error
/// ([`EngineError::GpuNotBuilt`]).
///
/// Parsed from the names a command line or `SECAGG_BACKEND` gives:
///
/// ```
/// use secagg_engine::{BackendChoice, EngineError};
/// # fn main() -> Result<(), EngineError> {
/// assert_eq!("GPU".parse::<BackendChoice>()?, BackendChoice::Gpu);
/// assert_eq!("".parse::<BackendChoice>()?, BackendChoice::Auto);
/// assert_eq!(BackendChoice::Cpu.to_string(), "cpu");
/// assert!(matches!("tpu".parse::<BackendChoice>(), Err(EngineError::UnknownBackend(_))));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BackendChoice {
    /// GPU if an adapter opens, else CPU (logged).
    #[default]
    Auto,
    /// The CPU engine.
    Cpu,
    /// The GPU engine; an error if no adapter opens.
    Gpu,
}

impl std::str::FromStr for BackendChoice {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "gpu" => Ok(Self::Gpu),
            _ => Err(EngineError::UnknownBackend(s.to_owned())),
        }
    }
}

impl std::fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Cpu => "cpu",
            Self::Gpu => "gpu",
        })
    }
}

impl BackendChoice {
    /// The choice named by `SECAGG_BACKEND` (`cpu`, `gpu` or `auto`), or `Auto` when unset.
    pub fn from_env() -> Result<Self, EngineError> {
        match std::env::var("SECAGG_BACKEND") {
            Ok(v) => v.parse(),
            Err(_) => Ok(Self::Auto),
        }
    }
}

/// One engine of a [`BackendSpec`]: `cpu`, `gpu` (the adapter [`GpuEngine::new`] picks) or
/// `gpu:N` (adapter N of [`GpuEngine::adapters`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    /// The CPU engine (on the global rayon pool).
    Cpu,
    /// The default GPU adapter.
    Gpu,
    /// GPU adapter N, by wgpu's list.
    GpuAdapter(usize),
}

impl Device {
    fn open(self) -> Result<Engine, EngineError> {
        Ok(match self {
            Device::Cpu => Engine::Cpu(CpuEngine::new()),
            #[cfg(feature = "gpu")]
            Device::Gpu => Engine::Gpu(Box::new(GpuEngine::new()?)),
            #[cfg(feature = "gpu")]
            Device::GpuAdapter(i) => {
                Engine::Gpu(Box::new(GpuEngine::on_adapter(i, GpuOptions::default())?))
            }
            #[cfg(not(feature = "gpu"))]
            Device::Gpu | Device::GpuAdapter(_) => return Err(EngineError::GpuNotBuilt),
        })
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Gpu => f.write_str("gpu"),
            Device::GpuAdapter(i) => write!(f, "gpu:{i}"),
        }
    }
}

/// What `--backend` names: `auto`, one engine (`cpu`, `gpu`, `gpu:N`), or several separated
/// by commas, which split every vector by coordinate range between them
/// ([`Sharded`], in the order given). Each `gpu` opens a device on the default adapter (so
/// `gpu,gpu` is two devices on one GPU); `gpu:0,gpu:1` names two adapters.
///
/// ```
/// use secagg_engine::{BackendChoice, BackendSpec, Device, EngineError};
/// # fn main() -> Result<(), EngineError> {
/// let spec: BackendSpec = "gpu:0, gpu:1".parse()?;
/// assert_eq!(spec, BackendSpec::Devices(vec![Device::GpuAdapter(0), Device::GpuAdapter(1)]));
/// assert_eq!(spec.to_string(), "gpu:0,gpu:1");
/// assert_eq!("cpu,cpu".parse::<BackendSpec>()?.shards(), 2);
/// assert_eq!("".parse::<BackendSpec>()?, BackendSpec::Auto);
/// assert_eq!(BackendSpec::from(BackendChoice::Cpu), "cpu".parse()?);
/// for bad in ["auto,cpu", "gpu:x", "cpu,", "tpu"] {
///     assert!(matches!(bad.parse::<BackendSpec>(), Err(EngineError::UnknownBackend(_))), "{bad}");
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum BackendSpec {
    /// [`BackendChoice::Auto`]: a hardware GPU if one opens, else the CPU.
    #[default]
    Auto,
    /// These engines: one is that engine alone, several are its shards in order.
    Devices(Vec<Device>),
}

impl BackendSpec {
    /// How many engines it opens (1 for `auto`).
    pub fn shards(&self) -> usize {
        match self {
            BackendSpec::Auto => 1,
            BackendSpec::Devices(d) => d.len(),
        }
    }

    /// The spec `SECAGG_BACKEND` names, or `Auto` when unset.
    pub fn from_env() -> Result<Self, EngineError> {
        match std::env::var("SECAGG_BACKEND") {
            Ok(v) => v.parse(),
            Err(_) => Ok(Self::Auto),
        }
    }
}

impl From<BackendChoice> for BackendSpec {
    fn from(choice: BackendChoice) -> Self {
        match choice {
            BackendChoice::Auto => BackendSpec::Auto,
            BackendChoice::Cpu => BackendSpec::Devices(vec![Device::Cpu]),
            BackendChoice::Gpu => BackendSpec::Devices(vec![Device::Gpu]),
        }
    }
}

impl std::str::FromStr for BackendSpec {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || EngineError::UnknownBackend(s.to_owned());
        let names: Vec<String> = s
            .split(',')
            .map(|n| n.trim().to_ascii_lowercase())
            .collect();
        if let [one] = names.as_slice()
            && (one.is_empty() || one == "auto")
        {
            return Ok(BackendSpec::Auto);
        }
        let device = |name: &str| match name {
            "cpu" => Some(Device::Cpu),
            "gpu" => Some(Device::Gpu),
            _ => name
                .strip_prefix("gpu:")
                .and_then(|i| i.parse().ok())
                .map(Device::GpuAdapter),
        };
        names
            .iter()
            .map(|n| device(n).ok_or_else(bad))
            .collect::<Result<_, _>>()
            .map(BackendSpec::Devices)
    }
}

impl std::fmt::Display for BackendSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackendSpec::Auto => f.write_str("auto"),
            BackendSpec::Devices(d) => {
                let names: Vec<String> = d.iter().map(Device::to_string).collect();
                f.write_str(&names.join(","))
            }
        }
    }
}

/// An engine picked at run time. Implements [`Backend`] and [`Accumulate`](crate::Accumulate)
/// by delegating.
///
/// Whatever was picked, the results are those of every other engine, bit for bit:
///
/// ```
/// use secagg_engine::{Backend, BackendChoice, BackendKind, Engine, Modulus, Prg, Seed};
/// # fn main() -> Result<(), secagg_engine::EngineError> {
/// let engine = Engine::choose(BackendChoice::Auto)?; // the GPU if there is one, else the CPU
/// let cpu = Engine::choose(BackendChoice::Cpu)?;
/// assert_eq!(cpu.kind(), BackendKind::Cpu);
///
/// let seed = Seed::from_bytes([9; 32]);
/// let (mut a, mut b) = (vec![0u32; 1000], vec![0u32; 1000]);
/// engine.expand(&seed, Prg::ChaCha8, 64, &mut a, Modulus::U32)?;
/// cpu.expand(&seed, Prg::ChaCha8, 64, &mut b, Modulus::U32)?;
/// assert_eq!(a, b);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub enum Engine {
    /// The CPU engine.
    Cpu(CpuEngine),
    /// The GPU engine.
    #[cfg(feature = "gpu")]
    Gpu(Box<GpuEngine>),
    /// Several engines, each owning a coordinate range of every vector.
    Sharded(Sharded<Engine>),
}

impl Engine {
    /// The engine `SECAGG_BACKEND` asks for (`auto` when unset): a GPU adapter when one
    /// exists, the CPU otherwise; or any [`BackendSpec`], such as `cpu,cpu`. Logs which one
    /// it took and why.
    ///
    /// Fails when `SECAGG_BACKEND` names no backend, or names a GPU that does not open.
    /// [`Engine::choose`] and [`Engine::open`] take the choice from the caller instead.
    pub fn auto() -> Result<Self, EngineError> {
        Self::open(&BackendSpec::from_env()?)
    }

    /// The engine for an explicit choice. `Gpu` fails when no adapter opens (or the crate was
    /// built without its `gpu` feature); `Auto` falls back to the CPU with a warning.
    ///
    /// ```
    /// use secagg_engine::{Backend, BackendChoice, BackendKind, Engine, EngineError};
    /// # fn main() -> Result<(), EngineError> {
    /// let engine = Engine::choose(BackendChoice::Auto)?; // never fails for want of a GPU
    /// println!("{}", engine.describe());
    ///
    /// match Engine::choose(BackendChoice::Gpu) {
    ///     Ok(gpu) => assert_eq!(gpu.kind(), BackendKind::Gpu),
    ///     Err(EngineError::NoAdapter(_) | EngineError::RequestDevice(_) | EngineError::GpuNotBuilt) => {
    ///         assert_eq!(engine.kind(), BackendKind::Cpu) // no GPU: `Auto` took the CPU
    ///     }
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn choose(choice: BackendChoice) -> Result<Self, EngineError> {
        let engine = match choice {
            BackendChoice::Cpu => Engine::Cpu(CpuEngine::new()),
            #[cfg(feature = "gpu")]
            BackendChoice::Gpu => Engine::Gpu(Box::new(GpuEngine::new()?)),
            #[cfg(not(feature = "gpu"))]
            BackendChoice::Gpu => return Err(EngineError::GpuNotBuilt),
            #[cfg(not(feature = "gpu"))]
            BackendChoice::Auto => {
                log::info!("built without the GPU engine (feature `gpu`); using the CPU engine");
                Engine::Cpu(CpuEngine::new())
            }
            #[cfg(feature = "gpu")]
            BackendChoice::Auto => match GpuEngine::new() {
                // A software Vulkan driver (lavapipe, SwiftShader) runs on the same cores as
                // the CPU engine, only slower: `auto` takes it only when asked for by name.
                Ok(g) if g.adapter_info().device_type == wgpu::DeviceType::Cpu => {
                    log::info!(
                        "the only GPU adapter is a software driver ({}); using the CPU engine (pass gpu to use it anyway)",
                        g.adapter_info().name
                    );
                    Engine::Cpu(CpuEngine::new())
                }
                Ok(g) => Engine::Gpu(Box::new(g)),
                Err(e) => {
                    log::warn!("no usable GPU ({e}); using the CPU engine");
                    Engine::Cpu(CpuEngine::new())
                }
            },
        };
        log::info!("engine: {}", engine.describe());
        Ok(engine)
    }
}

impl Engine {
    /// The engine (or engines, sharded) `spec` names; logs what it opened.
    ///
    /// ```
    /// use secagg_engine::{Backend, BackendKind, Engine};
    /// # fn main() -> Result<(), secagg_engine::EngineError> {
    /// let two = Engine::open(&"cpu,cpu".parse()?)?;
    /// assert!(matches!(&two, Engine::Sharded(s) if s.shards().len() == 2));
    /// assert_eq!(two.kind(), BackendKind::Cpu);
    /// # Ok(())
    /// # }
    /// ```
    pub fn open(spec: &BackendSpec) -> Result<Self, EngineError> {
        let devices = match spec {
            BackendSpec::Auto => return Self::choose(BackendChoice::Auto),
            BackendSpec::Devices(d) => d,
        };
        let engine = match devices.as_slice() {
            [one] => one.open()?,
            many => Engine::Sharded(Sharded::new(
                many.iter().map(|d| d.open()).collect::<Result<_, _>>()?,
            )?),
        };
        log::info!("engine: {}", engine.describe());
        Ok(engine)
    }

    fn name(&self) -> &'static str {
        match self {
            Engine::Cpu(_) => "cpu",
            #[cfg(feature = "gpu")]
            Engine::Gpu(_) => "gpu",
            Engine::Sharded(_) => "sharded",
        }
    }
}

macro_rules! delegate {
    ($self:ident, $e:ident => $call:expr) => {
        match $self {
            Engine::Cpu($e) => $call,
            #[cfg(feature = "gpu")]
            Engine::Gpu($e) => $call,
            Engine::Sharded($e) => $call,
        }
    };
}

/// Runs `$call` with the engine and its own accumulator, or fails with
/// [`EngineError::ForeignAccumulator`] when the accumulator is another engine's.
macro_rules! with_own {
    ($self:ident, $acc:expr, ($e:ident, $a:ident) => $call:expr) => {
        match ($self, $acc) {
            (Engine::Cpu($e), EngineAccumulator::Cpu($a)) => $call,
            #[cfg(feature = "gpu")]
            (Engine::Gpu($e), EngineAccumulator::Gpu($a)) => $call,
            (Engine::Sharded($e), EngineAccumulator::Sharded($a)) => $call,
            (engine, acc) => Err(EngineError::ForeignAccumulator {
                owner: acc.owner(),
                engine: engine.name(),
            }),
        }
    };
}

impl Backend for Engine {
    fn kind(&self) -> BackendKind {
        delegate!(self, e => e.kind())
    }

    fn describe(&self) -> String {
        delegate!(self, e => e.describe())
    }

    fn add<L: Lane>(
        &self,
        acc: &mut [L],
        input: &[L],
        modulus: Modulus,
    ) -> Result<(), EngineError> {
        delegate!(self, e => e.add(acc, input, modulus))
    }

    fn apply_masks<L: Lane>(
        &self,
        acc: &mut [L],
        offset: u64,
        terms: &[MaskTerm],
        prg: Prg,
        modulus: Modulus,
    ) -> Result<(), EngineError> {
        delegate!(self, e => e.apply_masks(acc, offset, terms, prg, modulus))
    }

    fn expand<L: Lane>(
        &self,
        seed: &Seed,
        prg: Prg,
        offset: u64,
        out: &mut [L],
        modulus: Modulus,
    ) -> Result<(), EngineError> {
        delegate!(self, e => e.expand(seed, prg, offset, out, modulus))
    }

    fn keystream_blocks(
        &self,
        seed: &Seed,
        prg: Prg,
        pos: StreamPos,
        out: &mut [u32],
    ) -> Result<(), EngineError> {
        delegate!(self, e => e.keystream_blocks(seed, prg, pos, out))
    }
}

/// The accumulator of an [`Engine`]: the CPU's or the GPU's, as the engine was chosen.
///
/// Made by [`Accumulate::accumulator`](crate::Accumulate::accumulator) on that engine; an
/// engine refuses an accumulator of the other kind with
/// [`EngineError::ForeignAccumulator`].
#[derive(Debug)]
pub enum EngineAccumulator {
    /// Made by the CPU engine.
    Cpu(crate::CpuAccumulator),
    /// Made by the GPU engine.
    #[cfg(feature = "gpu")]
    Gpu(crate::GpuAccumulator),
    /// Made by a sharded engine: its shards' accumulators.
    Sharded(ShardedAccumulator<EngineAccumulator>),
}

impl EngineAccumulator {
    fn owner(&self) -> &'static str {
        match self {
            EngineAccumulator::Cpu(_) => "cpu",
            #[cfg(feature = "gpu")]
            EngineAccumulator::Gpu(_) => "gpu",
            EngineAccumulator::Sharded(_) => "sharded",
        }
    }
}

impl crate::Accumulate for Engine {
    type Accumulator = EngineAccumulator;

    fn accumulator(&self, len: usize, modulus: Modulus) -> Result<EngineAccumulator, EngineError> {
        Ok(match self {
            Engine::Cpu(e) => EngineAccumulator::Cpu(e.accumulator(len, modulus)?),
            #[cfg(feature = "gpu")]
            Engine::Gpu(e) => EngineAccumulator::Gpu(e.accumulator(len, modulus)?),
            Engine::Sharded(e) => EngineAccumulator::Sharded(e.accumulator(len, modulus)?),
        })
    }

    fn add_packed(
        &self,
        acc: &mut EngineAccumulator,
        offset: usize,
        packed: &[u8],
        count: usize,
    ) -> Result<(), EngineError> {
        with_own!(self, acc, (e, a) => e.add_packed(a, offset, packed, count))
    }

    fn add_lanes<L: Lane>(
        &self,
        acc: &mut EngineAccumulator,
        offset: usize,
        lanes: &[L],
    ) -> Result<(), EngineError> {
        with_own!(self, acc, (e, a) => e.add_lanes(a, offset, lanes))
    }

    fn mask_range(
        &self,
        acc: &mut EngineAccumulator,
        start: usize,
        len: usize,
        offset: u64,
        terms: &[MaskTerm],
        prg: Prg,
    ) -> Result<(), EngineError> {
        with_own!(self, acc, (e, a) => e.mask_range(a, start, len, offset, terms, prg))
    }

    fn add_packed_runs(
        &self,
        acc: &mut EngineAccumulator,
        runs: &[(usize, &[u8], usize)],
    ) -> Result<(), EngineError> {
        with_own!(self, acc, (e, a) => e.add_packed_runs(a, runs))
    }

    fn read_out_owned_lanes<L: Lane>(&self, acc: EngineAccumulator) -> Result<Vec<L>, EngineError> {
        with_own!(self, acc, (e, a) => e.read_out_owned_lanes(a))
    }

    fn read_out_lanes<L: Lane>(
        &self,
        acc: &EngineAccumulator,
        out: &mut [L],
    ) -> Result<(), EngineError> {
        with_own!(self, acc, (e, a) => e.read_out_lanes(a, out))
    }

    fn settle(&self) -> Result<(), EngineError> {
        delegate!(self, e => e.settle())
    }

    fn accumulator_len(&self, acc: &EngineAccumulator) -> usize {
        match acc {
            EngineAccumulator::Cpu(a) => a.len(),
            #[cfg(feature = "gpu")]
            EngineAccumulator::Gpu(a) => a.len(),
            EngineAccumulator::Sharded(a) => a.len(),
        }
    }
}
