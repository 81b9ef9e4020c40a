//! Run-time choice between the CPU and GPU engines.

#[cfg(feature = "gpu")]
use crate::GpuEngine;
use crate::{
    Backend, BackendKind, CpuEngine, EngineError, Lane, MaskTerm, Modulus, Prg, Seed, StreamPos,
};

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
}

impl Engine {
    /// The engine `SECAGG_BACKEND` asks for (`auto` when unset): a GPU adapter when one
    /// exists, the CPU otherwise. Logs which one it took and why.
    ///
    /// Fails when `SECAGG_BACKEND` names no backend, or names `gpu` and no adapter opens.
    /// [`Engine::choose`] takes the choice from the caller instead.
    pub fn auto() -> Result<Self, EngineError> {
        Self::choose(BackendChoice::from_env()?)
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

macro_rules! delegate {
    ($self:ident, $e:ident => $call:expr) => {
        match $self {
            Engine::Cpu($e) => $call,
            #[cfg(feature = "gpu")]
            Engine::Gpu($e) => $call,
        }
    };
}

/// `$call` with the engine and an accumulator it made; an accumulator of the other kind is
/// refused with [`EngineError::ForeignAccumulator`].
macro_rules! with_own {
    ($self:ident, $acc:expr, ($e:ident, $a:ident) => $call:expr) => {
        match ($self, $acc) {
            (Engine::Cpu($e), EngineAccumulator::Cpu($a)) => $call,
            #[cfg(feature = "gpu")]
            (Engine::Gpu($e), EngineAccumulator::Gpu($a)) => $call,
            #[cfg(feature = "gpu")]
            (Engine::Cpu(_), _) => Err(foreign("gpu", "cpu")),
            #[cfg(feature = "gpu")]
            (Engine::Gpu(_), _) => Err(foreign("cpu", "gpu")),
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
}

#[cfg(feature = "gpu")]
fn foreign(owner: &'static str, engine: &'static str) -> EngineError {
    EngineError::ForeignAccumulator { owner, engine }
}

impl crate::Accumulate for Engine {
    type Accumulator = EngineAccumulator;

    fn accumulator(&self, len: usize, modulus: Modulus) -> Result<EngineAccumulator, EngineError> {
        Ok(match self {
            Engine::Cpu(e) => EngineAccumulator::Cpu(e.accumulator(len, modulus)?),
            #[cfg(feature = "gpu")]
            Engine::Gpu(e) => EngineAccumulator::Gpu(e.accumulator(len, modulus)?),
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

    fn add_words(
        &self,
        acc: &mut EngineAccumulator,
        offset: usize,
        words: &[u32],
    ) -> Result<(), EngineError> {
        with_own!(self, acc, (e, a) => e.add_words(a, offset, words))
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

    fn read_out_owned(&self, acc: EngineAccumulator) -> Result<Vec<u32>, EngineError> {
        with_own!(self, acc, (e, a) => e.read_out_owned(a))
    }

    fn read_out(&self, acc: &EngineAccumulator, out: &mut [u32]) -> Result<(), EngineError> {
        with_own!(self, acc, (e, a) => e.read_out(a, out))
    }

    fn settle(&self) -> Result<(), EngineError> {
        delegate!(self, e => e.settle())
    }

    fn accumulator_len(&self, acc: &EngineAccumulator) -> usize {
        match acc {
            EngineAccumulator::Cpu(a) => a.as_slice().len(),
            #[cfg(feature = "gpu")]
            EngineAccumulator::Gpu(a) => a.len(),
        }
    }
}
