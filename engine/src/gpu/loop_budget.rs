//! The adapter's loop budget, and how many mask terms one pass of the mask kernel may take.
//!
//! llvmpipe — Mesa's software rasterizer, which lavapipe runs on — gives each shader
//! invocation 65,535 loop iterations, all its loops together: a counter set once per
//! invocation and decremented at the end of every pass of every loop, and every loop is left
//! once it reaches zero (`LP_MAX_TGSI_LOOP_ITERATIONS` in gallivm's `lp_bld_limits.h`, checked
//! by `lp_exec_endloop`; measured here on Mesa 22.3.6, and in the gallivm sources of several
//! releases). Nothing reports it: it is not a Vulkan or wgpu limit, no error is raised, and
//! the shader carries on with what it has.
//!
//! The mask kernel (`shaders/masks.wgsl`) loops over its terms and, for each, over ChaCha's
//! double rounds, which llvmpipe keeps as a loop for ChaCha20 and ChaCha12: 20/2 = 10 passes
//! and one more that ends the loop, plus one of the terms loop, so 12 per ChaCha20 term.
//! From 5,462 terms in one pass (12 · 5,461 = 65,532) the last term ran 3 of its 10 double
//! rounds and the sums were wrong (issue 17, item 7). The engine measures the budget once,
//! when it opens, with a probe of one invocation (`shaders/probe.wgsl`), and splits longer
//! mask jobs into passes that cannot run out of it. Adapters without a budget take any
//! number of terms in one pass.
//!
//! The 64-bit kernel (`apply_wide`, moduli above 2^32) runs the same terms loop (`term_sum`,
//! shared with `apply`) and stores with `put4_wide`, which has no loop, so a term costs it
//! the same passes and the split into passes is the same. Its element-wise kernels have no
//! loops; `add_packed_wide` covers at most 2^25 elements a dispatch (its bit index is a
//! `u32`: 2^25 · 64 + 31 < 2^32).

use std::sync::atomic::Ordering;

use super::Health;
use super::chunks::{MAP_OK, MAP_PENDING, Params, map_for_read};
use crate::{EngineError, Prg};

/// The probe's loop should go round this many times; a count below it is the budget. A
/// budget above it is not looked for (a million passes of one GPU thread should take in the
/// order of a millisecond: an estimate, not measured).
const PROBE_ITERATIONS: u32 = 1 << 20;

/// Loop passes one term can cost the mask kernel: one of the terms loop, ROUNDS/2 of the
/// rounds loop and the pass that ends it. A driver that unrolls the rounds loop (llvmpipe
/// does for ChaCha8) spends fewer.
fn passes_per_term(prg: Prg) -> u32 {
    prg.rounds() / 2 + 2
}

/// Loop passes the mask kernel can cost besides its terms: the one that ends the terms loop,
/// and the four four-iteration store loops of `put4` with their closing passes, should a
/// driver keep them as loops.
const KERNEL_PASSES: u32 = 1 + 4 * 5;

/// Most terms one dispatch of the mask kernel may take under `budget` loop iterations per
/// invocation (`None`: no budget, any number). The count stays at least one above zero after
/// every pass, so no loop of the kernel is ever ended early.
pub(super) fn terms_per_pass(budget: Option<u32>, prg: Prg) -> usize {
    match budget {
        None => usize::MAX,
        Some(b) => (b.saturating_sub(KERNEL_PASSES + 1) / passes_per_term(prg)) as usize,
    }
}

/// Runs the probe once and returns the budget it found (`None`: the loop went round
/// [`PROBE_ITERATIONS`] times). Fails when the budget leaves room for no ChaCha20 term.
pub(super) fn measure(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    module: &wgpu::ShaderModule,
    health: &Health,
) -> Result<Option<u32>, EngineError> {
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("secagg-loop-budget"),
        layout: None,
        module,
        entry_point: Some("loop_budget"),
        compilation_options: Default::default(),
        cache: None,
    });
    let params = Params {
        len: PROBE_ITERATIONS,
        ..Params::default()
    };
    let buffer = |label, size, usage| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage,
            mapped_at_creation: false,
        })
    };
    let params_buf = buffer(
        "probe params",
        std::mem::size_of::<Params>() as u64,
        wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
    );
    let out = buffer(
        "probe count",
        16,
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
    );
    let readback = buffer(
        "probe readback",
        16,
        wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
    );
    queue.write_buffer(&params_buf, 0, bytemuck::bytes_of(&params));
    let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("secagg-loop-budget"),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: params_buf.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: out.as_entire_binding(),
            },
        ],
    });
    let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
        label: Some("secagg-loop-budget"),
    });
    {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("loop_budget"),
            timestamp_writes: None,
        });
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(1, 1, 1);
    }
    encoder.copy_buffer_to_buffer(&out, 0, &readback, 0, 16);
    queue.submit([encoder.finish()]);
    let state = map_for_read(&readback, 16);
    let poll = device.poll(wgpu::PollType::wait_indefinitely());
    health.check()?;
    poll.map_err(|e| EngineError::DeviceLost(e.to_string()))?;
    let count = match state.load(Ordering::Acquire) {
        MAP_OK => {
            let count = match readback.slice(..16).get_mapped_range() {
                Ok(view) => bytemuck::cast_slice::<u8, u32>(&view)[0],
                Err(e) => return Err(EngineError::Mapping(e.to_string())),
            };
            readback.unmap();
            count
        }
        MAP_PENDING => {
            return Err(EngineError::Mapping(
                "loop budget probe never completed".into(),
            ));
        }
        _ => {
            return Err(EngineError::Mapping(
                "loop budget probe could not be mapped".into(),
            ));
        }
    };
    let budget = match count {
        PROBE_ITERATIONS => None,
        n if n < PROBE_ITERATIONS => Some(n),
        n => {
            return Err(EngineError::Validation(format!(
                "loop budget probe counted {n} passes of a {PROBE_ITERATIONS}-pass loop"
            )));
        }
    };
    if terms_per_pass(budget, Prg::ChaCha20) == 0 {
        return Err(EngineError::RequestDevice(format!(
            "the adapter ends shader loops after {count} iterations, too few for one mask term"
        )));
    }
    Ok(budget)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llvmpipe_passes_hold_what_fits_its_budget() {
        // 65,535 − 22 = 65,513 passes for terms.
        assert_eq!(terms_per_pass(Some(65_535), Prg::ChaCha20), 65_513 / 12);
        assert_eq!(terms_per_pass(Some(65_535), Prg::ChaCha12), 65_513 / 8);
        assert_eq!(terms_per_pass(Some(65_535), Prg::ChaCha8), 65_513 / 6);
        assert_eq!(terms_per_pass(None, Prg::ChaCha20), usize::MAX);
        assert_eq!(terms_per_pass(Some(30), Prg::ChaCha20), 0);
    }

    #[test]
    fn a_full_pass_leaves_the_budget_above_zero() {
        for prg in Prg::ALL {
            for b in [34, 100, 65_535, 1 << 19] {
                let n = terms_per_pass(Some(b), prg) as u32;
                assert!(
                    n * passes_per_term(prg) + KERNEL_PASSES < b,
                    "{prg} budget {b}"
                );
                assert!(
                    (n + 1) * passes_per_term(prg) + KERNEL_PASSES >= b,
                    "{prg} {b}"
                );
            }
        }
    }
}
