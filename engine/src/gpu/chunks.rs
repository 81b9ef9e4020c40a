//! The chunk loop: vectors go through the GPU chunk by chunk, two chunks in flight on two
//! buffer slots, each chunk's parameters, data and (for `add`) second operand uploaded, the
//! kernel dispatched, and the result copied back through a mapped readback buffer; and the
//! shared terms buffer the mask kernels read their keys from, scrubbed after each job.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, MutexGuard};

use zeroize::Zeroize;

use super::{GpuEngine, Kernel, lock};
use crate::{EngineError, Prg, Seed, Sign};

/// Words per mask term in the `terms` buffer (see `shaders/masks.wgsl`).
const TERM_WORDS: usize = 12;

/// The layout of `shaders/common.wgsl`'s `Params`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct Params {
    pub(super) base_lo: u32,
    pub(super) base_hi: u32,
    pub(super) skip: u32,
    pub(super) len: u32,
    pub(super) n_terms: u32,
    pub(super) mask: u32,
    pub(super) units: u32,
    pub(super) row_stride: u32,
    pub(super) dst0: u32,
    pub(super) mask_hi: u32,
    pub(super) pad: [u32; 2],
}

/// A buffer that is reallocated only when a larger one is needed.
pub(super) struct Grown {
    pub(super) buffer: wgpu::Buffer,
    pub(super) capacity: u64,
}

/// One of the two sets of buffers that chunks alternate between.
#[derive(Default)]
pub(super) struct Slot {
    pub(super) params: Option<Grown>,
    pub(super) data: Option<Grown>,
    pub(super) input: Option<Grown>,
    pub(super) readback: Option<Grown>,
}

#[derive(Default)]
pub(super) struct Buffers {
    pub(super) slots: [Slot; 2],
    pub(super) terms: Option<Grown>,
}

/// Where the keystream of a mask job starts.
#[derive(Clone, Copy)]
pub(super) enum Position {
    /// Element 0 is keystream word `offset` (stream 0; two-word elements reach 2^65).
    Words(u128),
    /// Element 0 is word 0 of block `pos.block` in stream `pos.stream`.
    Blocks(u64),
    /// No keystream (the add kernel).
    None,
}

/// One engine call, as the chunk loop sees it.
pub(super) struct Job<'a> {
    pub(super) kernel: Kernel,
    pub(super) prg: Prg,
    /// The low and high words' masks ([`word_masks`](super::word_masks)).
    pub(super) mask: (u32, u32),
    pub(super) n_terms: u32,
    pub(super) position: Position,
    /// Upload `data` before the kernel (false for `expand`, which only writes).
    pub(super) upload: bool,
    /// The second operand of `add`.
    pub(super) input: Option<&'a [u32]>,
}

impl GpuEngine {
    /// Returns `slot` holding a buffer of at least `bytes`, reallocating (doubling) if needed.
    pub(super) fn ensure<'b>(
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
    pub(super) fn upload_terms(
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
    pub(super) fn scrub_terms(&self, buffers: &mut Buffers, n_terms: usize) {
        if let Some(g) = &buffers.terms {
            let bytes = ((n_terms.max(1) * TERM_WORDS * 4) as u64).min(g.capacity);
            let zeros = vec![0u8; bytes as usize];
            self.queue.write_buffer(&g.buffer, 0, &zeros);
            self.queue.submit([]);
        }
    }

    /// Dispatch shape for `units` work items: (x, y) workgroups and the row stride.
    pub(super) fn grid(&self, units: u32, workgroup: u32) -> (u32, u32, u32) {
        let groups = units.div_ceil(workgroup);
        if groups <= self.max_dim {
            (groups, 1, groups * workgroup)
        } else {
            let x = self.max_dim;
            (x, groups.div_ceil(x), x * workgroup)
        }
    }

    /// Runs `job` over `data` chunk by chunk, two chunks in flight, results written back.
    pub(super) fn run(
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
    pub(super) fn finish(&self, f: InFlight, data: &mut [u32]) -> Result<(), EngineError> {
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

    pub(super) fn buffers(&self) -> MutexGuard<'_, Buffers> {
        lock(&self.buffers)
    }
}

/// Starts mapping the first `bytes` of `readback` for reading; the flag says how it went
/// (pending until a poll runs the callback).
pub(super) fn map_for_read(readback: &wgpu::Buffer, bytes: u64) -> Arc<AtomicU8> {
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

pub(super) const MAP_PENDING: u8 = 0;
pub(super) const MAP_OK: u8 = 1;
const MAP_FAILED: u8 = 2;

pub(super) struct InFlight {
    pub(super) readback: wgpu::Buffer,
    pub(super) bytes: u64,
    pub(super) c0: usize,
    pub(super) index: wgpu::SubmissionIndex,
    pub(super) state: Arc<AtomicU8>,
}
