//! The GPU engine: WGSL kernels through wgpu (Vulkan, Metal, DX12).
//!
//! Device, queue, shader modules and buffers are created once and reused; pipelines are
//! compiled on first use and cached per (kernel, PRG). Vectors longer than one chunk (at most
//! the adapter's storage-binding limit) are processed chunk by chunk through two buffer slots,
//! so that the host copies one chunk in or out while the GPU works on the other. Mask jobs
//! run in one pass, or in several where the driver ends shader loops after a fixed number of
//! iterations (llvmpipe: [`GpuEngine::loop_budget`]). Every wgpu failure (no adapter, device
//! lost, out of memory, mapping) comes back as an [`EngineError`].

mod accumulator;
mod loop_budget;
mod shaders;

pub use accumulator::GpuAccumulator;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use zeroize::Zeroize;

pub use shaders::{ShaderModule, modules};

use crate::{
    Backend, BackendKind, EngineError, Lane, LaneKind, MaskTerm, Modulus, Prg, Seed, Sign,
    StreamPos, check_add, check_range, words, words_mut,
};

/// Words per mask term in the `terms` buffer (see `shaders/masks.wgsl`).
const TERM_WORDS: usize = 12;
/// Invocations per workgroup of the mask kernels (one ChaCha block each).
const MASK_WORKGROUP: u32 = 64;
/// Invocations per workgroup of the add kernel (one element each).
const ADD_WORKGROUP: u32 = 256;
/// Default chunk: 16 Mi elements (64 MiB), capped by the adapter's storage-binding limit.
const DEFAULT_CHUNK_ELEMS: usize = 16 << 20;
/// Chunks are multiples of this many elements (four ChaCha blocks; 256 bytes).
const CHUNK_ALIGN: usize = 64;
/// The dispatch is split in as many chunks as needed to keep block indices within u32.
const MAX_CHUNK_ELEMS: usize = 1 << 30;

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

/// The layout of `shaders/common.wgsl`'s `Params`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    base_lo: u32,
    base_hi: u32,
    skip: u32,
    len: u32,
    n_terms: u32,
    mask: u32,
    units: u32,
    row_stride: u32,
    dst0: u32,
    mask_hi: u32,
    pad: [u32; 2],
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

/// A buffer that is reallocated only when a larger one is needed.
struct Grown {
    buffer: wgpu::Buffer,
    capacity: u64,
}

/// One of the two sets of buffers that chunks alternate between.
#[derive(Default)]
struct Slot {
    params: Option<Grown>,
    data: Option<Grown>,
    input: Option<Grown>,
    readback: Option<Grown>,
}

#[derive(Default)]
struct Buffers {
    slots: [Slot; 2],
    terms: Option<Grown>,
}

/// Where the keystream of a mask job starts.
#[derive(Clone, Copy)]
enum Position {
    /// Element 0 is keystream word `offset` (stream 0; two-word elements reach 2^65).
    Words(u128),
    /// Element 0 is word 0 of block `pos.block` in stream `pos.stream`.
    Blocks(u64),
    /// No keystream (the add kernel).
    None,
}

/// One engine call, as the chunk loop sees it.
struct Job<'a> {
    kernel: Kernel,
    prg: Prg,
    /// The low and high words' masks ([`word_masks`]).
    mask: (u32, u32),
    n_terms: u32,
    position: Position,
    /// Upload `data` before the kernel (false for `expand`, which only writes).
    upload: bool,
    /// The second operand of `add`.
    input: Option<&'a [u32]>,
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
    /// Opens the default GPU adapter (honouring `WGPU_BACKEND`, `WGPU_ADAPTER_NAME` and
    /// `WGPU_POWER_PREF`) with default options.
    pub fn new() -> Result<Self, EngineError> {
        Self::with_options(GpuOptions::default())
    }

    /// Opens the default GPU adapter with the given options.
    pub fn with_options(options: GpuOptions) -> Result<Self, EngineError> {
        pollster::block_on(Self::open(options))
    }

    /// Opens adapter `index` of the list [`GpuEngine::adapters`] gives (`gpu:N` on the
    /// command line), with `options`: one engine per GPU of a machine with several, for a
    /// [`Sharded`](crate::Sharded) engine. Fails with [`EngineError::NoAdapter`], naming the
    /// adapters there are, when the list is shorter.
    ///
    /// ```
    /// use secagg_engine::{EngineError, GpuEngine, GpuOptions};
    ///
    /// let many = GpuEngine::adapters().len();
    /// match GpuEngine::on_adapter(many, GpuOptions::default()) {
    ///     Err(EngineError::NoAdapter(why)) => assert!(why.contains(&format!("no adapter {many}"))),
    ///     other => panic!("adapter {many} of {many}: {other:?}"),
    /// }
    /// ```
    pub fn on_adapter(index: usize, options: GpuOptions) -> Result<Self, EngineError> {
        pollster::block_on(async {
            let instance = Self::instance();
            let mut adapters = instance.enumerate_adapters(wgpu::Backends::all()).await;
            if index >= adapters.len() {
                let there: Vec<String> = adapters
                    .iter()
                    .enumerate()
                    .map(|(i, a)| describe_adapter(i, &a.get_info()))
                    .collect();
                return Err(EngineError::NoAdapter(format!(
                    "no adapter {index}: this machine lists {}{}{}",
                    adapters.len(),
                    if there.is_empty() { "" } else { ": " },
                    there.join("; ")
                )));
            }
            Self::open_adapter(adapters.swap_remove(index), options).await
        })
    }

    /// The GPU adapters wgpu lists on this machine, in the order [`GpuEngine::on_adapter`]
    /// counts them (honouring `WGPU_BACKEND`).
    pub fn adapters() -> Vec<wgpu::AdapterInfo> {
        pollster::block_on(Self::instance().enumerate_adapters(wgpu::Backends::all()))
            .iter()
            .map(wgpu::Adapter::get_info)
            .collect()
    }

    fn instance() -> wgpu::Instance {
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
    }

    async fn open(options: GpuOptions) -> Result<Self, EngineError> {
        let instance = Self::instance();
        let adapter = match std::env::var("WGPU_ADAPTER_NAME") {
            Ok(_) => wgpu::util::initialize_adapter_from_env(&instance, None)
                .await
                .map_err(|e| EngineError::NoAdapter(e.to_string()))?,
            Err(_) => instance
                .request_adapter(&wgpu::RequestAdapterOptions {
                    power_preference: wgpu::PowerPreference::from_env()
                        .unwrap_or(wgpu::PowerPreference::HighPerformance),
                    ..Default::default()
                })
                .await
                .map_err(|e| EngineError::NoAdapter(e.to_string()))?,
        };
        Self::open_adapter(adapter, options).await
    }

    async fn open_adapter(
        adapter: wgpu::Adapter,
        options: GpuOptions,
    ) -> Result<Self, EngineError> {
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("secagg"),
                required_features: wgpu::Features::empty(),
                required_limits: limits,
                ..Default::default()
            })
            .await
            .map_err(|e| EngineError::RequestDevice(e.to_string()))?;
        Self::from_device(device, queue, adapter.get_info(), options)
    }

    /// Builds an engine on a device the caller already owns (embedders, tests).
    pub fn from_device(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
        options: GpuOptions,
    ) -> Result<Self, EngineError> {
        let health = Arc::new(Health::default());
        {
            let h = Arc::clone(&health);
            device.on_uncaptured_error(Arc::new(move |e| h.record(e)));
            let h = Arc::clone(&health);
            device.set_device_lost_callback(move |reason, msg| {
                *lock(&h.lost) = Some(format!("{reason:?}: {msg}"));
            });
        }
        let limits = device.limits();
        let binding_elems = (limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size)
            / 4)
        .min(MAX_CHUNK_ELEMS as u64) as usize;
        let chunk_elems = options
            .chunk_elems
            .unwrap_or(DEFAULT_CHUNK_ELEMS)
            .min(binding_elems);
        let chunk_elems = (chunk_elems / CHUNK_ALIGN * CHUNK_ALIGN).max(CHUNK_ALIGN);
        let max_dim = options
            .max_workgroups_per_dim
            .unwrap_or(u32::MAX)
            .min(limits.max_compute_workgroups_per_dimension)
            .max(1);
        let mut compiled = modules().into_iter().map(|m| {
            device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(m.name),
                source: wgpu::ShaderSource::Wgsl(m.source.into()),
            })
        });
        let (Some(masks_module), Some(sum_module), Some(packed_module), Some(probe_module)) = (
            compiled.next(),
            compiled.next(),
            compiled.next(),
            compiled.next(),
        ) else {
            return Err(EngineError::Validation(
                "shader module list is incomplete".into(),
            ));
        };
        health.check()?;
        let loop_budget = loop_budget::measure(&device, &queue, &probe_module, &health)?;
        log::debug!(
            "GPU engine on {} ({:?}), chunk {} elements, max {} workgroups per dimension, \
             loop budget {:?}",
            info.name,
            info.backend,
            chunk_elems,
            max_dim,
            loop_budget
        );
        Ok(Self {
            device,
            queue,
            info,
            health,
            chunk_elems,
            max_dim,
            masks_module,
            sum_module,
            packed_module,
            loop_budget,
            pipelines: Mutex::new(HashMap::new()),
            buffers: Mutex::new(Buffers::default()),
        })
    }

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

    /// Returns `slot` holding a buffer of at least `bytes`, reallocating (doubling) if needed.
    fn ensure<'b>(
        &self,
        slot: &'b mut Option<Grown>,
        bytes: u64,
        usage: wgpu::BufferUsages,
        what: &'static str,
    ) -> Result<&'b wgpu::Buffer, EngineError> {
        let bytes = bytes.max(16);
        if slot.as_ref().is_none_or(|g| g.capacity < bytes) {
            let capacity = bytes.next_power_of_two();
            if let Some(old) = slot.take() {
                old.buffer.destroy();
            }
            let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(what),
                size: capacity,
                usage,
                mapped_at_creation: false,
            });
            if let Err(e) = self.health.check() {
                buffer.destroy();
                return Err(match e {
                    EngineError::OutOfMemory { .. } => EngineError::OutOfMemory {
                        what,
                        bytes: capacity,
                    },
                    other => other,
                });
            }
            *slot = Some(Grown { buffer, capacity });
        }
        match slot {
            Some(g) => Ok(&g.buffer),
            None => Err(EngineError::Validation(format!("{what} buffer missing"))),
        }
    }

    /// Uploads the mask terms (key, sign, stream) into the shared terms buffer.
    fn upload_terms(
        &self,
        buffers: &mut Buffers,
        terms: &[(&Seed, Sign)],
        stream: u64,
    ) -> Result<(), EngineError> {
        let mut records = vec![0u32; terms.len().max(1) * TERM_WORDS];
        for ((seed, sign), rec) in terms.iter().zip(records.chunks_exact_mut(TERM_WORDS)) {
            rec[..8].copy_from_slice(&seed.key_words());
            rec[8] = match sign {
                Sign::Plus => 0,
                Sign::Minus => 1,
            };
            rec[9] = stream as u32;
            rec[10] = (stream >> 32) as u32;
        }
        let bytes = (records.len() * 4) as u64;
        let buf = self.ensure(
            &mut buffers.terms,
            bytes,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            "mask terms",
        )?;
        self.queue
            .write_buffer(buf, 0, bytemuck::cast_slice(&records));
        records.zeroize();
        Ok(())
    }

    /// Overwrites the seeds left in the terms buffer once the job that used them is done.
    fn scrub_terms(&self, buffers: &mut Buffers, n_terms: usize) {
        if let Some(g) = &buffers.terms {
            let bytes = ((n_terms.max(1) * TERM_WORDS * 4) as u64).min(g.capacity);
            let zeros = vec![0u8; bytes as usize];
            self.queue.write_buffer(&g.buffer, 0, &zeros);
            self.queue.submit([]);
        }
    }

    /// Dispatch shape for `units` work items: (x, y) workgroups and the row stride.
    fn grid(&self, units: u32, workgroup: u32) -> (u32, u32, u32) {
        let groups = units.div_ceil(workgroup);
        if groups <= self.max_dim {
            (groups, 1, groups * workgroup)
        } else {
            let x = self.max_dim;
            (x, groups.div_ceil(x), x * workgroup)
        }
    }

    /// Runs `job` over `data` chunk by chunk, two chunks in flight, results written back.
    fn run(
        &self,
        buffers: &mut Buffers,
        data: &mut [u32],
        job: &Job<'_>,
    ) -> Result<(), EngineError> {
        if data.is_empty() {
            return Ok(());
        }
        let pipeline = self.pipeline(job.kernel, job.prg)?;
        let layout = pipeline.get_bind_group_layout(0);
        let mut in_flight: VecDeque<InFlight> = VecDeque::with_capacity(2);
        let mut result = Ok(());
        for (i, c0) in (0..data.len()).step_by(self.chunk_elems).enumerate() {
            let len = self.chunk_elems.min(data.len() - c0);
            if in_flight.len() == 2 {
                if let Some(done) = in_flight.pop_front() {
                    result = self.finish(done, data);
                }
                if result.is_err() {
                    break;
                }
            }
            match self.submit_chunk(buffers, i % 2, c0, &data[c0..c0 + len], job, &layout) {
                Ok(f) => in_flight.push_back(f),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        // Drain what is still in flight, even after an error, so no buffer stays mapped.
        while let Some(done) = in_flight.pop_front() {
            let r = self.finish(done, data);
            if result.is_ok() {
                result = r;
            }
        }
        result
    }

    fn submit_chunk(
        &self,
        buffers: &mut Buffers,
        slot_index: usize,
        c0: usize,
        chunk: &[u32],
        job: &Job<'_>,
        layout: &wgpu::BindGroupLayout,
    ) -> Result<InFlight, EngineError> {
        let len = chunk.len();
        let bytes = (len * 4) as u64;
        let (base, skip, units) = match job.position {
            Position::Words(offset) => {
                let abs = offset + c0 as u128;
                let skip = (abs % 16) as u32;
                ((abs / 16) as u64, skip, (skip + len as u32).div_ceil(16))
            }
            Position::Blocks(block) => (block.wrapping_add(c0 as u64 / 16), 0, len as u32 / 16),
            // One invocation per element: two words each for `add_wide`.
            Position::None if job.kernel == Kernel::AddWide => (0, 0, len as u32 / 2),
            Position::None => (0, 0, len as u32),
        };
        let (gx, gy, row_stride) = self.grid(units, job.kernel.workgroup());
        let params = Params {
            base_lo: base as u32,
            base_hi: (base >> 32) as u32,
            skip,
            len: len as u32,
            n_terms: job.n_terms,
            mask: job.mask.0,
            units,
            row_stride,
            dst0: 0,
            mask_hi: job.mask.1,
            pad: [0; 2],
        };
        let terms = match job.kernel.masks() {
            true => match &buffers.terms {
                Some(g) => Some(g.buffer.clone()),
                None => return Err(EngineError::Validation("mask terms not uploaded".into())),
            },
            false => None,
        };
        let slot = &mut buffers.slots[slot_index];
        let params_buf = self
            .ensure(
                &mut slot.params,
                std::mem::size_of::<Params>() as u64,
                wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                "params",
            )?
            .clone();
        self.queue
            .write_buffer(&params_buf, 0, bytemuck::bytes_of(&params));
        let data_buf = self
            .ensure(
                &mut slot.data,
                bytes,
                wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_DST
                    | wgpu::BufferUsages::COPY_SRC,
                "accumulator chunk",
            )?
            .clone();
        if job.upload {
            self.queue
                .write_buffer(&data_buf, 0, bytemuck::cast_slice(chunk));
        }
        let mut entries = vec![
            wgpu::BindGroupEntry {
                binding: 0,
                resource: params_buf.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: data_buf.as_entire_binding(),
            },
        ];
        let input_buf;
        if let Some(input) = job.input {
            input_buf = self
                .ensure(
                    &mut slot.input,
                    bytes,
                    wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                    "input chunk",
                )?
                .clone();
            self.queue
                .write_buffer(&input_buf, 0, bytemuck::cast_slice(&input[c0..c0 + len]));
            entries.push(wgpu::BindGroupEntry {
                binding: 3,
                resource: input_buf.as_entire_binding(),
            });
        }
        if let Some(t) = &terms {
            entries.push(wgpu::BindGroupEntry {
                binding: 2,
                resource: t.as_entire_binding(),
            });
        }
        let readback = self
            .ensure(
                &mut slot.readback,
                bytes,
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                "readback",
            )?
            .clone();
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("secagg-chunk"),
            layout,
            entries: &entries,
        });
        let pipeline = self.pipeline(job.kernel, job.prg)?;
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("secagg-chunk"),
            });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(job.kernel.entry_point()),
                timestamp_writes: None,
            });
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(gx, gy, 1);
        }
        encoder.copy_buffer_to_buffer(&data_buf, 0, &readback, 0, bytes);
        let index = self.queue.submit([encoder.finish()]);
        let state = map_for_read(&readback, bytes);
        // Errors raised by this submission surface in `finish`, which also unmaps the buffer.
        Ok(InFlight {
            readback,
            bytes,
            c0,
            index,
            state,
        })
    }

    /// Waits for an in-flight chunk and copies its result into `data`.
    fn finish(&self, f: InFlight, data: &mut [u32]) -> Result<(), EngineError> {
        let poll = self.device.poll(wgpu::PollType::Wait {
            submission_index: Some(f.index),
            timeout: None,
        });
        // The map callback runs during a poll; one more pass catches a late one.
        if poll.is_ok() && f.state.load(Ordering::Acquire) == MAP_PENDING {
            let _ = self.device.poll(wgpu::PollType::wait_indefinitely());
        }
        let state = f.state.load(Ordering::Acquire);
        let copied = match state {
            MAP_OK => match f.readback.slice(..f.bytes).get_mapped_range() {
                Ok(view) => {
                    let mapped: &[u32] = bytemuck::cast_slice(&view);
                    data[f.c0..f.c0 + mapped.len()].copy_from_slice(mapped);
                    Ok(())
                }
                Err(e) => Err(EngineError::Mapping(e.to_string())),
            },
            MAP_FAILED => Err(EngineError::Mapping(
                "readback buffer could not be mapped".into(),
            )),
            _ => Err(EngineError::Mapping("readback never completed".into())),
        };
        // Leave the slot reusable whatever happened: unmap a mapped buffer, and cancel a
        // mapping still pending (a failed one is not mapped).
        if state != MAP_FAILED {
            f.readback.unmap();
        }
        if let Err(e) = poll {
            self.health.check()?;
            return Err(EngineError::DeviceLost(e.to_string()));
        }
        self.health.check()?;
        copied
    }

    fn buffers(&self) -> MutexGuard<'_, Buffers> {
        lock(&self.buffers)
    }
}

/// `N: name (backend, device type)`, as the missing-adapter error lists the adapters.
fn describe_adapter(index: usize, info: &wgpu::AdapterInfo) -> String {
    format!(
        "{index}: {} ({:?}, {:?})",
        info.name, info.backend, info.device_type
    )
}

/// Starts mapping the first `bytes` of `readback` for reading; the flag says how it went
/// (pending until a poll runs the callback).
fn map_for_read(readback: &wgpu::Buffer, bytes: u64) -> Arc<AtomicU8> {
    let state = Arc::new(AtomicU8::new(MAP_PENDING));
    let flag = Arc::clone(&state);
    readback
        .slice(..bytes)
        .map_async(wgpu::MapMode::Read, move |r| {
            flag.store(
                if r.is_ok() { MAP_OK } else { MAP_FAILED },
                Ordering::Release,
            );
        });
    state
}

const MAP_PENDING: u8 = 0;
const MAP_OK: u8 = 1;
const MAP_FAILED: u8 = 2;

struct InFlight {
    readback: wgpu::Buffer,
    bytes: u64,
    c0: usize,
    index: wgpu::SubmissionIndex,
    state: Arc<AtomicU8>,
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
