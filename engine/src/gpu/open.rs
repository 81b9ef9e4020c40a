//! Opening the engine: finding an adapter (the default one, or adapter N of those wgpu
//! lists), requesting its device, sizing chunks and dispatches from its limits, compiling the
//! shader modules and measuring the driver's loop budget.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::chunks::Buffers;
use super::{GpuEngine, GpuOptions, Health, lock, loop_budget, modules};
use crate::EngineError;

/// Default chunk: 16 Mi elements (64 MiB), capped by the adapter's storage-binding limit.
const DEFAULT_CHUNK_ELEMS: usize = 16 << 20;
/// Chunks are multiples of this many elements (four ChaCha blocks; 256 bytes).
const CHUNK_ALIGN: usize = 64;
/// The dispatch is split in as many chunks as needed to keep block indices within u32.
const MAX_CHUNK_ELEMS: usize = 1 << 30;

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
}

/// `N: name (backend, device type)`, as the missing-adapter error lists the adapters.
fn describe_adapter(index: usize, info: &wgpu::AdapterInfo) -> String {
    format!(
        "{index}: {} ({:?}, {:?})",
        info.name, info.backend, info.device_type
    )
}
