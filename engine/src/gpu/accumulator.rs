//! The GPU engine's accumulator: device memory for the whole round.
//!
//! The accumulator is a list of device buffers of at most one chunk each (the adapter's
//! storage-binding limit). A packed input is written to a staging buffer (two, alternating,
//! so the host writes one while the device adds the other), unpacked and added by the
//! `add_packed` kernel into the chunk it lands in, and never read back; the mask pass binds
//! each chunk in place; the result crosses to the host once, in [`Accumulate::read_out`].

use super::chunks::{Buffers, InFlight, Params, map_for_read};
use super::{ADD_WORKGROUP, GpuEngine, Kernel, word_masks};
use crate::accumulator::{Accumulate, check_packed, check_span};
use crate::packed::{kernel_max_elems, kernel_words};
use crate::{EngineError, Lane, MaskTerm, Modulus, Prg, Seed, Sign, check_range};

/// Most bytes `add_packed_runs` gathers into one staging buffer (and one dispatch per
/// accumulator chunk it spans) before flushing.
const GROUP_BYTES: usize = 16 << 20;

/// An accumulator in GPU memory (see the module docs).
pub struct GpuAccumulator {
    chunks: Vec<wgpu::Buffer>,
    chunk_elems: usize,
    len: usize,
    /// Words per element: 1 for b ≤ 32, 2 (low, high) above.
    words: usize,
    modulus: Modulus,
    /// Which staging slot the next packed upload uses.
    next_slot: usize,
}

impl std::fmt::Debug for GpuAccumulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuAccumulator")
            .field("len", &self.len)
            .field("chunks", &self.chunks.len())
            .field("bits", &self.modulus.bits())
            .finish()
    }
}

impl Drop for GpuAccumulator {
    fn drop(&mut self) {
        for c in &self.chunks {
            c.destroy();
        }
    }
}

impl GpuAccumulator {
    /// Elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The pieces of `start..start + len` by chunk: (chunk, first element in it, elements,
    /// elements before this piece in the range).
    fn pieces(&self, start: usize, len: usize) -> Vec<(usize, usize, usize, usize)> {
        let mut out = Vec::new();
        let mut done = 0;
        while done < len {
            let at = start + done;
            let chunk = at / self.chunk_elems;
            let within = at % self.chunk_elems;
            let n = (self.chunk_elems - within).min(len - done);
            out.push((chunk, within, n, done));
            done += n;
        }
        out
    }
}

impl GpuEngine {
    fn params_buffer(
        &self,
        buffers: &mut Buffers,
        slot: usize,
        params: &Params,
    ) -> Result<wgpu::Buffer, EngineError> {
        let buf = self
            .ensure(
                &mut buffers.slots[slot].params,
                std::mem::size_of::<Params>() as u64,
                wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                "params",
            )?
            .clone();
        self.queue.write_buffer(&buf, 0, bytemuck::bytes_of(params));
        Ok(buf)
    }

    /// Adds the staged `input` (bound at 3) into `n` elements of chunk `chunk` from element
    /// `within`, with `kernel` (`add` or `add_wide`, or `add_packed` or `add_packed_wide`
    /// reading b = `bits` fields from bit `first_bit`).
    #[allow(clippy::too_many_arguments)]
    fn add_staged(
        &self,
        buffers: &mut Buffers,
        slot: usize,
        acc: &GpuAccumulator,
        (chunk, within, n): (usize, usize, usize),
        input: &wgpu::Buffer,
        kernel: Kernel,
        (first_bit, bits): (u32, u32),
    ) -> Result<(), EngineError> {
        let (gx, gy, row_stride) = self.grid(n as u32, ADD_WORKGROUP);
        // `add_wide` counts words; the other three count elements.
        let len = if kernel == Kernel::AddWide { 2 * n } else { n };
        let (mask, mask_hi) = word_masks(acc.modulus);
        let params = Params {
            base_lo: first_bit,
            base_hi: 0,
            skip: bits,
            len: len as u32,
            n_terms: 0,
            mask,
            units: n as u32,
            row_stride,
            dst0: (within * acc.words) as u32,
            mask_hi,
            pad: [0; 2],
        };
        let params_buf = self.params_buffer(buffers, slot, &params)?;
        let entries = [
            wgpu::BindGroupEntry {
                binding: 0,
                resource: params_buf.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: acc.chunks[chunk].as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 3,
                resource: input.as_entire_binding(),
            },
        ];
        self.dispatch(kernel, Prg::ChaCha20, &entries, (gx, gy))
    }

    fn dispatch(
        &self,
        kernel: Kernel,
        prg: Prg,
        entries: &[wgpu::BindGroupEntry<'_>],
        groups: (u32, u32),
    ) -> Result<(), EngineError> {
        let pipeline = self.pipeline(kernel, prg)?;
        let layout = pipeline.get_bind_group_layout(0);
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("secagg-accumulator"),
            layout: &layout,
            entries,
        });
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("secagg-accumulator"),
            });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(kernel.entry_point()),
                timestamp_writes: None,
            });
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(groups.0, groups.1, 1);
        }
        self.queue.submit([encoder.finish()]);
        // Let finished work free its staging memory; never block here.
        let _ = self.device.poll(wgpu::PollType::Poll);
        self.health.check()
    }
}

impl Accumulate for GpuEngine {
    type Accumulator = GpuAccumulator;

    fn accumulator(&self, len: usize, modulus: Modulus) -> Result<GpuAccumulator, EngineError> {
        let words = modulus.words_per_element();
        // A chunk is at most the engine's chunk of words (the adapter's binding limit).
        let chunk_elems = self.chunk_elems / words;
        let mut chunks = Vec::new();
        let mut left = len;
        while left > 0 || chunks.is_empty() {
            let n = left.min(chunk_elems);
            let bytes = ((n * words * 4) as u64).max(16);
            // wgpu zero-initialises new buffers.
            let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("accumulator"),
                size: bytes,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            if let Err(e) = self.health.check() {
                buffer.destroy();
                for c in &chunks {
                    wgpu::Buffer::destroy(c);
                }
                return Err(match e {
                    EngineError::OutOfMemory { .. } => EngineError::OutOfMemory {
                        what: "the accumulator",
                        bytes: (len * words * 4) as u64,
                    },
                    other => other,
                });
            }
            chunks.push(buffer);
            left -= n;
            if left == 0 {
                break;
            }
        }
        Ok(GpuAccumulator {
            chunks,
            chunk_elems,
            len,
            words,
            modulus,
            next_slot: 0,
        })
    }

    fn add_packed(
        &self,
        acc: &mut GpuAccumulator,
        offset: usize,
        packed: &[u8],
        count: usize,
    ) -> Result<(), EngineError> {
        check_packed(acc.len, offset, packed, count, acc.modulus)?;
        let bits = acc.modulus.bits();
        let max_elems = kernel_max_elems(bits);
        let mut buffers = self.buffers();
        let mut pieces = Vec::new();
        for (chunk, within, n, before) in acc.pieces(offset, count) {
            for sub in (0..n).step_by(max_elems) {
                let m = max_elems.min(n - sub);
                pieces.push((chunk, within + sub, m, before + sub));
            }
        }
        for (chunk, within, n, before) in pieces {
            // The piece's words, from the one holding its first bit, and a zero word.
            let words = kernel_words(packed, before, n, bits);
            let slot = acc.next_slot;
            acc.next_slot ^= 1;
            let input = self
                .ensure(
                    &mut buffers.slots[slot].input,
                    words.staged_len() as u64,
                    wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                    "packed input",
                )?
                .clone();
            if !words.body.is_empty() {
                self.queue.write_buffer(&input, 0, words.body);
            }
            self.queue
                .write_buffer(&input, words.body.len() as u64, &words.tail);
            // At b = 32 and b = 64 the packed bytes are the words themselves: the plain add
            // kernels read them with no bit shuffling (the run starts on a word).
            let kernel = match bits {
                32 => Kernel::Add,
                64 => Kernel::AddWide,
                33.. => Kernel::AddPackedWide,
                _ => Kernel::AddPacked,
            };
            self.add_staged(
                &mut buffers,
                slot,
                acc,
                (chunk, within, n),
                &input,
                kernel,
                (words.first_bit, bits),
            )?;
        }
        Ok(())
    }

    fn add_packed_runs(
        &self,
        acc: &mut GpuAccumulator,
        runs: &[(usize, &[u8], usize)],
    ) -> Result<(), EngineError> {
        // Every run is checked before any is added.
        for &(offset, packed, count) in runs {
            check_packed(acc.len, offset, packed, count, acc.modulus)?;
        }
        let bits = acc.modulus.bits() as usize;
        // Consecutive runs whose bits end on a word join one group: their bytes concatenate
        // into one packed stream, staged and added at once. A group of one is added from the
        // caller's bytes.
        let mut buffer: Vec<u8> = Vec::new();
        let mut flush = |acc: &mut GpuAccumulator, group: &[(usize, &[u8], usize)]| {
            let [first, ..] = group else {
                return Ok(());
            };
            if group.len() == 1 {
                return self.add_packed(acc, first.0, first.1, first.2);
            }
            buffer.clear();
            for run in group {
                buffer.extend_from_slice(run.1);
            }
            let count = group.iter().map(|r| r.2).sum();
            self.add_packed(acc, first.0, &buffer, count)
        };
        let mut from = 0;
        let (mut end, mut bytes) = (0usize, 0usize);
        for (i, &(offset, packed, n)) in runs.iter().enumerate() {
            let joins = i > from
                && offset == end
                && ((end - runs[from].0) * bits) % 32 == 0
                && bytes + packed.len() <= GROUP_BYTES;
            if !joins {
                flush(acc, &runs[from..i])?;
                from = i;
                bytes = 0;
            }
            end = offset + n;
            bytes += packed.len();
        }
        flush(acc, &runs[from..])
    }

    fn add_lanes<L: Lane>(
        &self,
        acc: &mut GpuAccumulator,
        offset: usize,
        lanes: &[L],
    ) -> Result<(), EngineError> {
        check_span(acc.len, offset, lanes.len())?;
        acc.modulus.check_lane::<L>()?;
        let (words, w) = (crate::words(lanes)?, acc.words);
        let kernel = if w == 1 { Kernel::Add } else { Kernel::AddWide };
        let mut buffers = self.buffers();
        for (chunk, within, n, before) in acc.pieces(offset, lanes.len()) {
            let slot = acc.next_slot;
            acc.next_slot ^= 1;
            let input = self
                .ensure(
                    &mut buffers.slots[slot].input,
                    (n * w * 4) as u64,
                    wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                    "input chunk",
                )?
                .clone();
            let piece = &words[before * w..(before + n) * w];
            self.queue
                .write_buffer(&input, 0, bytemuck::cast_slice(piece));
            self.add_staged(
                &mut buffers,
                slot,
                acc,
                (chunk, within, n),
                &input,
                kernel,
                (0, 0),
            )?;
        }
        Ok(())
    }

    fn mask_range(
        &self,
        acc: &mut GpuAccumulator,
        start: usize,
        len: usize,
        offset: u64,
        terms: &[MaskTerm],
        prg: Prg,
    ) -> Result<(), EngineError> {
        check_span(acc.len, start, len)?;
        check_range(offset, len)?;
        if len == 0 {
            return Ok(());
        }
        let mut buffers = self.buffers();
        let list: Vec<(&Seed, Sign)> = terms.iter().map(|t| (&t.seed, t.sign)).collect();
        let mut result = Ok(());
        // As in `apply_masks`: at most the terms that fit the adapter's loop budget per pass;
        // with no terms one pass still reduces the range mod 2^b.
        for batch in list
            .chunks(self.terms_per_pass(prg))
            .chain(std::iter::once(&list[..0]).filter(|_| terms.is_empty()))
        {
            if let Err(e) = self.upload_terms(&mut buffers, batch, 0) {
                result = Err(e);
                break;
            }
            let Some(terms_buf) = buffers.terms.as_ref().map(|g| g.buffer.clone()) else {
                result = Err(EngineError::Validation("mask terms not uploaded".into()));
                break;
            };
            let w = acc.words;
            let kernel = if w == 1 {
                Kernel::Apply
            } else {
                Kernel::ApplyWide
            };
            let (mask, mask_hi) = word_masks(acc.modulus);
            for (i, (chunk, within, n, before)) in acc.pieces(start, len).into_iter().enumerate() {
                // Keystream words, not elements: two per element above 2^32.
                let abs = (u128::from(offset) + before as u128) * w as u128;
                let skip = (abs % 16) as u32;
                let base = (abs / 16) as u64;
                let units = (skip + (n * w) as u32).div_ceil(16);
                let (gx, gy, row_stride) = self.grid(units, kernel.workgroup());
                let params = Params {
                    base_lo: base as u32,
                    base_hi: (base >> 32) as u32,
                    skip,
                    len: (n * w) as u32,
                    n_terms: batch.len() as u32,
                    mask,
                    units,
                    row_stride,
                    dst0: (within * w) as u32,
                    mask_hi,
                    pad: [0; 2],
                };
                let params_buf = match self.params_buffer(&mut buffers, i % 2, &params) {
                    Ok(b) => b,
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                };
                let entries = [
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: params_buf.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: acc.chunks[chunk].as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 2,
                        resource: terms_buf.as_entire_binding(),
                    },
                ];
                if let Err(e) = self.dispatch(kernel, prg, &entries, (gx, gy)) {
                    result = Err(e);
                    break;
                }
            }
            self.scrub_terms(&mut buffers, batch.len());
            if result.is_err() {
                break;
            }
        }
        result
    }

    fn read_out_lanes<L: Lane>(
        &self,
        acc: &GpuAccumulator,
        out: &mut [L],
    ) -> Result<(), EngineError> {
        acc.modulus.check_lane::<L>()?;
        if out.len() != acc.len {
            return Err(EngineError::LengthMismatch {
                acc: acc.len,
                input: out.len(),
            });
        }
        let out = crate::words_mut(out)?;
        let mut buffers = self.buffers();
        for (chunk, buffer) in acc.chunks.iter().enumerate() {
            let e0 = chunk * acc.chunk_elems;
            let n = acc.chunk_elems.min(acc.len - e0);
            if n == 0 {
                continue;
            }
            let c0 = e0 * acc.words;
            let bytes = (n * acc.words * 4) as u64;
            let readback = self
                .ensure(
                    &mut buffers.slots[0].readback,
                    bytes,
                    wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    "readback",
                )?
                .clone();
            let mut encoder = self
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("secagg-read-out"),
                });
            encoder.copy_buffer_to_buffer(buffer, 0, &readback, 0, bytes);
            let index = self.queue.submit([encoder.finish()]);
            let state = map_for_read(&readback, bytes);
            self.finish(
                InFlight {
                    readback,
                    bytes,
                    c0,
                    index,
                    state,
                },
                out,
            )?;
        }
        Ok(())
    }

    fn accumulator_len(&self, acc: &GpuAccumulator) -> usize {
        acc.len
    }

    fn settle(&self) -> Result<(), EngineError> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| EngineError::DeviceLost(e.to_string()))?;
        self.health.check()
    }
}
