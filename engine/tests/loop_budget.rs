//! The cause of the wrong sums the GPU engine returned on lavapipe from 5,462 ChaCha20 mask
//! terms in one pass (issue 17, item 7): the driver's loop budget.
//!
//! llvmpipe, which lavapipe runs on, lets one shader invocation run 65,535 loop iterations,
//! all its loops together, and then leaves every loop without an error. The shader below
//! shows it with nothing of the engine: one invocation runs two loops one after the other
//! and counts their passes. On Mesa 22.3.6 (llvmpipe, LLVM 15) a loop asked for 2^20 passes
//! makes 65,535, and two loops of 32,767 and 65,535 make 32,767 and 32,767 (the pass that
//! ends the first loop is charged too). Any conformant Vulkan driver counts what was asked.
//!
//! The test checks that the engine found the same budget on the same device, so that its
//! mask passes (`GpuEngine::terms_per_pass`) are sized by it. With `SECAGG_REQUIRE_GPU=1` a
//! missing adapter fails it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use secagg_engine::{GpuEngine, GpuOptions, Prg};

const SHADER: &str = r#"
struct Counts { first: u32, second: u32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<uniform> asked: Counts;
@group(0) @binding(1) var<storage, read_write> done: array<u32>;

@compute @workgroup_size(1)
fn main() {
    var a = 0u;
    for (var i = 0u; i < asked.first; i++) {
        a += 1u;
    }
    var b = 0u;
    for (var i = 0u; i < asked.second; i++) {
        b += 1u;
    }
    done[0] = a;
    done[1] = b;
}
"#;

/// Two loops in one invocation, asked for `first` and `second` passes: the passes each made.
fn count_passes(device: &wgpu::Device, queue: &wgpu::Queue, first: u32, second: u32) -> [u32; 2] {
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("loop-count"),
        source: wgpu::ShaderSource::Wgsl(SHADER.into()),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("loop-count"),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let buffer = |size, usage| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size,
            usage,
            mapped_at_creation: false,
        })
    };
    let asked = buffer(
        16,
        wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
    );
    let done = buffer(
        16,
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
    );
    let readback = buffer(
        16,
        wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
    );
    queue.write_buffer(&asked, 0, bytemuck::cast_slice(&[first, second, 0, 0]));
    let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: asked.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: done.as_entire_binding(),
            },
        ],
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(1, 1, 1);
    }
    encoder.copy_buffer_to_buffer(&done, 0, &readback, 0, 16);
    queue.submit([encoder.finish()]);
    readback
        .slice(..)
        .map_async(wgpu::MapMode::Read, |r| r.expect("map the counts"));
    device
        .poll(wgpu::PollType::wait_indefinitely())
        .expect("wait for the counts");
    let view = readback
        .slice(..)
        .get_mapped_range()
        .expect("mapped counts");
    let words: &[u32] = bytemuck::cast_slice(&view);
    [words[0], words[1]]
}

/// The default adapter as the engine opens it, or `None` (skip) when there is none.
fn device(test: &str) -> Option<(wgpu::Device, wgpu::Queue, wgpu::AdapterInfo)> {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        ..Default::default()
    }));
    let adapter = match adapter {
        Ok(a) => a,
        Err(e) if secagg_engine::testing::gpu_required() => {
            panic!("[{test}] SECAGG_REQUIRE_GPU=1 but no adapter: {e}")
        }
        Err(e) => {
            eprintln!("[{test}] skipped: no GPU adapter ({e})");
            return None;
        }
    };
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_limits: adapter.limits(),
        ..Default::default()
    }))
    .expect("open the device");
    Some((device, queue, adapter.get_info()))
}

#[test]
fn the_engine_sizes_its_passes_by_the_drivers_loop_budget() {
    let test = "the_engine_sizes_its_passes_by_the_drivers_loop_budget";
    let Some((device, queue, info)) = device(test) else {
        return;
    };
    const ASKED: u32 = 1 << 20;
    let [made, _] = count_passes(&device, &queue, ASKED, 0);
    eprintln!(
        "[{test}] {}: a loop asked for {ASKED} passes made {made}",
        info.name
    );
    let budget = (made < ASKED).then_some(made);
    if let Some(b) = budget {
        // One budget for all the loops of an invocation: the second loop gets what the first
        // left, less the pass that ended the first.
        let [a, c] = count_passes(&device, &queue, b / 2, b);
        eprintln!(
            "[{test}] loops asked for {} and {b} passes made {a} and {c}",
            b / 2
        );
        assert_eq!(a, b / 2, "the first loop fits the budget");
        assert!(a + c < b, "the two loops share one budget of {b}");
    }
    let engine = GpuEngine::from_device(device, queue, info, GpuOptions::default()).unwrap();
    assert_eq!(
        engine.loop_budget(),
        budget,
        "the engine's measure of the budget"
    );
    for prg in Prg::ALL {
        let n = engine.terms_per_pass(prg);
        match budget {
            None => assert_eq!(n, usize::MAX),
            // A term costs at most ROUNDS/2 + 2 passes, and the pass must leave some budget.
            Some(b) => assert!(
                n >= 1 && n * (prg.rounds() as usize / 2 + 2) < b as usize,
                "{prg}: {n} terms per pass under a budget of {b}"
            ),
        }
    }
}
