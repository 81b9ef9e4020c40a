//! The GPU engine: WGSL kernels through wgpu (Vulkan, Metal, DX12).
//!
//! Device, queue, shader modules and buffers are created once and reused; pipelines are
//! compiled on first use and cached per (kernel, PRG). Vectors longer than one chunk (at most
//! the adapter's storage-binding limit) are processed chunk by chunk through two buffer slots,
//! so that the host copies one chunk in or out while the GPU works on the other. Mask jobs
//! run in one pass, or in several where the driver ends shader loops after a fixed number of
//! iterations (llvmpipe: [`GpuEngine::loop_budget`]). Every wgpu failure (no adapter, device
//! lost, out of memory, mapping) comes back as an [`EngineError`].

//!
//! The engine opens in `open.rs`, and moves data through the GPU in `chunks.rs` (the chunk
//! loop, its buffers and the readback); this file holds the engine, its kernels and pipelines,
//! and the [`Backend`] operations.

mod accumulator;
mod chunks;
mod loop_budget;
mod open;
mod shaders;

pub use accumulator::GpuAccumulator;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chunks::{Buffers, Job, Position};
pub use shaders::{ShaderModule, modules};

use crate::{
    Backend, BackendKind, EngineError, Lane, LaneKind, MaskTerm, Modulus, Prg, Seed, Sign,
    StreamPos, check_add, check_range, words, words_mut,
};

/// Invocations per workgroup of the mask kernels (one ChaCha block each).
const MASK_WORKGROUP: u32 = 64;
/// Invocations per workgroup of the add kernel (one element each).
const ADD_WORKGROUP: u32 = 256;

/// Tuning knobs for [`GpuEngine`]; the defaults suit real use, the overrides exist so that
/// tests can force chunk boundaries and 2-D dispatches on small vectors.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Elements per chunk (rounded down to a multiple of 64, capped by the adapter limit).
    pub chunk_elems: Option<usize>,
    /// Largest workgroup count per dispatch dimension (capped by the adapter limit).
    pub max_workgroups_per_dim: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kernel {
    Apply,
    Expand,
    Add,
    AddPacked,
    /// The two-word (b > 32) forms of `Apply`, `Add` and `AddPacked`.
    ApplyWide,
    AddWide,
    AddPackedWide,
}

impl Kernel {
    fn entry_point(self) -> &'static str {
        match self {
            Kernel::Apply => "apply",
            Kernel::Expand => "expand",
            Kernel::Add => "add",
            Kernel::AddPacked => "add_packed",
            Kernel::ApplyWide => "apply_wide",
            Kernel::AddWide => "add_wide",
            Kernel::AddPackedWide => "add_packed_wide",
        }
    }

    fn workgroup(self) -> u32 {
        match self {
            Kernel::Apply | Kernel::Expand | Kernel::ApplyWide => MASK_WORKGROUP,
            Kernel::Add | Kernel::AddPacked | Kernel::AddWide | Kernel::AddPackedWide => {
                ADD_WORKGROUP
            }
        }
    }

    /// Whether the kernel expands keystreams (and so is compiled per PRG).
    fn masks(self) -> bool {
        matches!(self, Kernel::Apply | Kernel::Expand | Kernel::ApplyWide)
    }
}

/// The masks of a modulus's low and high words: (2^b − 1, 2^b − 1) for b ≤ 32, whose elements
/// are one word; (2^32 − 1, 2^(b−32) − 1) above, whose elements are two (low, high).
fn word_masks(modulus: Modulus) -> (u32, u32) {
    match modulus.lane_kind() {
        LaneKind::U32 => (modulus.mask_u32(), modulus.mask_u32()),
        _ => (u32::MAX, (modulus.mask_u64() >> 32) as u32),
    }
}

/// Errors wgpu reports through callbacks, kept until the engine call that caused them returns.
#[derive(Default)]
struct Health {
    lost: Mutex<Option<String>>,
    error: Mutex<Option<EngineError>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Health {
    fn record(&self, e: wgpu::Error) {
        let mut slot = lock(&self.error);
        if slot.is_none() {
            *slot = Some(match e {
                wgpu::Error::OutOfMemory { .. } => EngineError::OutOfMemory {
                    what: "a GPU resource",
                    bytes: 0,
                },
                other => EngineError::Validation(other.to_string()),
            });
        }
    }

    /// The first error since the last check, if any; a lost device wins.
    fn check(&self) -> Result<(), EngineError> {
        if let Some(reason) = lock(&self.lost).clone() {
            return Err(EngineError::DeviceLost(reason));
        }
        match lock(&self.error).take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Vector arithmetic mod 2^b and fused mask expansion on a GPU adapter.
///
/// Opening fails with [`EngineError::NoAdapter`] (or [`EngineError::RequestDevice`]) on a
/// machine without a usable adapter; [`Engine::choose`](crate::Engine::choose) with
/// [`BackendChoice::Auto`](crate::BackendChoice::Auto) falls back to the CPU instead. The
/// results are those of [`CpuEngine`](crate::CpuEngine), bit for bit:
///
/// ```
/// use secagg_engine::{Backend, CpuEngine, EngineError, GpuEngine, MaskTerm, Modulus, Prg, Seed};
/// # fn main() -> Result<(), EngineError> {
/// let gpu = match GpuEngine::new() {
///     Ok(gpu) => gpu,
///     Err(EngineError::NoAdapter(_) | EngineError::RequestDevice(_)) => return Ok(()),
///     Err(e) => return Err(e),
/// };
/// let (s, t, m) = ([6u8; 32], [8u8; 32], Modulus::new(24)?);
/// let terms = || [MaskTerm::plus(Seed::from_bytes(s)), MaskTerm::minus(Seed::from_bytes(t))];
/// let (mut a, mut b) = (vec![1u32; 5000], vec![1u32; 5000]);
/// gpu.apply_masks(&mut a, 3, &terms(), Prg::ChaCha20, m)?;
/// CpuEngine::new().apply_masks(&mut b, 3, &terms(), Prg::ChaCha20, m)?;
/// assert_eq!(a, b);
/// # Ok(())
/// # }
/// ```
pub struct GpuEngine {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    health: Arc<Health>,
    chunk_elems: usize,
    max_dim: u32,
    masks_module: wgpu::ShaderModule,
    sum_module: wgpu::ShaderModule,
    packed_module: wgpu::ShaderModule,
    loop_budget: Option<u32>,
    pipelines: Mutex<HashMap<(Kernel, Prg), Arc<wgpu::ComputePipeline>>>,
    buffers: Mutex<Buffers>,
}

impl std::fmt::Debug for GpuEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuEngine")
            .field("adapter", &self.info.name)
            .field("backend", &self.info.backend)
            .field("chunk_elems", &self.chunk_elems)
            .finish()
    }
}

impl GpuEngine {
    /// The adapter this engine runs on.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// Elements per chunk.
    pub fn chunk_elems(&self) -> usize {
        self.chunk_elems
    }

    /// How many loop iterations one shader invocation may run on this adapter, all its loops
    /// together, when the driver ends them there (llvmpipe, under lavapipe: 65,535); `None`
    /// when a loop of 2^20 iterations ran to the end. Measured once, when the engine opens;
    /// mask jobs with more terms than fit are split into passes.
    pub fn loop_budget(&self) -> Option<u32> {
        self.loop_budget
    }

    /// Most mask terms one dispatch of the mask kernel takes with `prg` on this adapter
    /// (`usize::MAX` when it has no loop budget).
    pub fn terms_per_pass(&self, prg: Prg) -> usize {
        loop_budget::terms_per_pass(self.loop_budget, prg)
    }

    fn pipeline(
        &self,
        kernel: Kernel,
        prg: Prg,
    ) -> Result<Arc<wgpu::ComputePipeline>, EngineError> {
        // The add kernel has no PRG; cache it once.
        let key = (kernel, if kernel.masks() { prg } else { Prg::ChaCha20 });
        if let Some(p) = lock(&self.pipelines).get(&key) {
            return Ok(Arc::clone(p));
        }
        let rounds = [("ROUNDS", f64::from(prg.rounds()))];
        let (module, constants): (_, &[(&str, f64)]) = match kernel {
            Kernel::Apply | Kernel::Expand | Kernel::ApplyWide => (&self.masks_module, &rounds),
            Kernel::Add | Kernel::AddWide => (&self.sum_module, &[]),
            Kernel::AddPacked | Kernel::AddPackedWide => (&self.packed_module, &[]),
        };
        let label = format!("secagg-{}-{}", kernel.entry_point(), prg);
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&label),
                layout: None,
                module,
                entry_point: Some(kernel.entry_point()),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants,
                    ..Default::default()
                },
                cache: None,
            });
        self.health.check()?;
        let pipeline = Arc::new(pipeline);
        lock(&self.pipelines).insert(key, Arc::clone(&pipeline));
        Ok(pipeline)
    }
}

impl Backend for GpuEngine {
    fn kind(&self) -> BackendKind {
        BackendKind::Gpu
    }

    fn describe(&self) -> String {
        let software = if self.info.device_type == wgpu::DeviceType::Cpu {
            ", software driver"
        } else {
            ""
        };
        format!(
            "gpu ({} via {:?}{}, driver {} {})",
            self.info.name, self.info.backend, software, self.info.driver, self.info.driver_info
        )
    }

    fn add<L: Lane>(
        &self,
        acc: &mut [L],
        input: &[L],
        modulus: Modulus,
    ) -> Result<(), EngineError> {
        check_add(acc, input, modulus)?;
        let (acc, input) = (words_mut(acc)?, words(input)?);
        let job = Job {
            kernel: if L::WORDS == 1 {
                Kernel::Add
            } else {
                Kernel::AddWide
            },
            prg: Prg::ChaCha20,
            mask: word_masks(modulus),
            n_terms: 0,
            position: Position::None,
            upload: true,
            input: Some(input),
        };
        let mut buffers = self.buffers();
        self.run(&mut buffers, acc, &job)
    }

    fn apply_masks<L: Lane>(
        &self,
        acc: &mut [L],
        offset: u64,
        terms: &[MaskTerm],
        prg: Prg,
        modulus: Modulus,
    ) -> Result<(), EngineError> {
        modulus.check_lane::<L>()?;
        check_range(offset, acc.len())?;
        let acc = words_mut(acc)?;
        let n_terms = u32::try_from(terms.len()).map_err(|_| {
            EngineError::Validation(format!("{} mask terms is too many", terms.len()))
        })?;
        let mut buffers = self.buffers();
        let list: Vec<(&Seed, Sign)> = terms.iter().map(|t| (&t.seed, t.sign)).collect();
        // One pass takes at most the terms whose loops fit the adapter's loop budget (all of
        // them on an adapter without one), each pass adding into the accumulator. With no
        // terms, one pass still reduces the accumulator mod 2^b.
        let mut result = Ok(());
        for batch in list
            .chunks(self.terms_per_pass(prg))
            .chain(std::iter::once(&list[..0]).filter(|_| n_terms == 0))
        {
            if let Err(e) = self.upload_terms(&mut buffers, batch, 0) {
                result = Err(e);
                break;
            }
            let job = Job {
                kernel: if L::WORDS == 1 {
                    Kernel::Apply
                } else {
                    Kernel::ApplyWide
                },
                prg,
                mask: word_masks(modulus),
                n_terms: batch.len() as u32,
                position: Position::Words(u128::from(offset) * L::WORDS as u128),
                upload: true,
                input: None,
            };
            result = self.run(&mut buffers, acc, &job);
            self.scrub_terms(&mut buffers, batch.len());
            if result.is_err() {
                break;
            }
        }
        result
    }

    fn expand<L: Lane>(
        &self,
        seed: &Seed,
        prg: Prg,
        offset: u64,
        out: &mut [L],
        modulus: Modulus,
    ) -> Result<(), EngineError> {
        modulus.check_lane::<L>()?;
        check_range(offset, out.len())?;
        let out = words_mut(out)?;
        self.keystream(
            seed,
            prg,
            0,
            Position::Words(u128::from(offset) * L::WORDS as u128),
            word_masks(modulus),
            out,
        )
    }

    fn keystream_blocks(
        &self,
        seed: &Seed,
        prg: Prg,
        pos: StreamPos,
        out: &mut [u32],
    ) -> Result<(), EngineError> {
        if out.len() % 16 != 0 {
            return Err(EngineError::PartialBlock { len: out.len() });
        }
        self.keystream(
            seed,
            prg,
            pos.stream,
            Position::Blocks(pos.block),
            (u32::MAX, u32::MAX),
            out,
        )
    }
}

impl GpuEngine {
    fn keystream(
        &self,
        seed: &Seed,
        prg: Prg,
        stream: u64,
        position: Position,
        mask: (u32, u32),
        out: &mut [u32],
    ) -> Result<(), EngineError> {
        let mut buffers = self.buffers();
        self.upload_terms(&mut buffers, &[(seed, Sign::Plus)], stream)?;
        let job = Job {
            kernel: Kernel::Expand,
            prg,
            mask,
            n_terms: 1,
            position,
            upload: false,
            input: None,
        };
        let result = self.run(&mut buffers, out, &job);
        self.scrub_terms(&mut buffers, 1);
        result
    }
}
