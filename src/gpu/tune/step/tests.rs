//! The rule that chooses the step, the strategies and the cache, with timers that say which step is faster
//! (or fail where nothing may be timed).

use super::*;
use crate::gpu::tune::{Strategy, Tuner};
use crate::model::{Activation, Loss};

const VK: wgpu::Backend = wgpu::Backend::Vulkan;

fn net(sizes: &[usize]) -> MlpSpec {
    MlpSpec::uniform(sizes.to_vec(), Activation::Relu, Loss::Mse).unwrap()
}

/// lavapipe's limits that matter here: 32 KiB of workgroup memory, 128 MiB bindings.
fn lavapipe() -> wgpu::Limits {
    wgpu::Limits { max_compute_workgroup_storage_size: 32 << 10, ..wgpu::Limits::default() }
}

/// A timer that must not be called.
fn never(_: GpuPath, _: usize) -> Result<f64> {
    Err(Error::Gpu("timed".into()))
}

#[test]
fn the_bound_follows_the_workgroup_limits() {
    let bound = Bound::of(&wgpu::Limits::default());
    // WebGPU's 16 KiB less the kernel's other arrays: 3808 values, 952 a row in blocks of 4 rows.
    assert_eq!((bound.max_width, bound.act_capacity, bound.max_values_per_row()), (128, 3808, 952));
    assert_eq!(bound.block_rows(&net(&[3, 128, 128, 2])), Ok(14));
    assert!(bound.block_rows(&net(&[3, 129, 2])).unwrap_err().contains("129 wide"));
    assert_eq!(bound.block_rows(&net(&[888, 64])), Ok(4), "952 values a row: the edge");
    assert!(bound.block_rows(&net(&[889, 64])).unwrap_err().contains("953 values a row"));
    assert_eq!(bound.block_rows(&net(&[2; 65])), Ok(29), "64 layers");
    assert!(bound.block_rows(&net(&[2; 66])).unwrap_err().contains("65 layers"));
    assert_eq!(Bound::of(&lavapipe()).max_values_per_row(), 1976);
    let narrow = wgpu::Limits { max_compute_invocations_per_workgroup: 64, ..wgpu::Limits::default() };
    assert!(Bound::of(&narrow).block_rows(&net(&[2, 2, 1])).is_err(), "fewer invocations than a workgroup");
}

#[test]
fn blocks_take_at_most_32_rows_and_256_workgroups() {
    let b = Blocking::new(67, 32);
    assert_eq!((b.block_rows, b.blocks, b.blocks_per_group, b.groups), (32, 3, 1, 3));
    assert_eq!(b.group_rows(2), 64..67);
    let many = Blocking::new(10_000, 32);
    assert_eq!((many.blocks, many.blocks_per_group, many.groups), (313, 2, 157));
    assert_eq!(many.group_rows(156), 9984..10_000);
    assert_eq!(Blocking::new(1, 32).block_rows, 1);
}

/// The rule reads nothing but the key, which is made of the spec, the batch and the limits: the same
/// inputs give the same key and the same step, the threshold and the bound decide, and neither the rule
/// nor a fixed strategy ever times.
#[test]
fn the_default_choice_is_a_pure_function_of_spec_batch_and_limits() {
    let tuner = Tuner::new(Strategy::Heuristic, true);
    let small = net(&[64, 64, 64, 1]);
    let at_threshold = FUSED_MAX_MACS / 8256;
    for limits in [wgpu::Limits::default(), lavapipe()] {
        for (spec, batch) in [(&small, 1), (&small, at_threshold), (&small, at_threshold + 1), (&net(&[4, 129, 3]), 5)]
        {
            let key = PathKey::new(spec, batch, &limits, VK);
            assert_eq!(key, PathKey::new(spec, batch, &limits, VK));
            let want =
                if key.block_rows.is_ok() && key.macs() <= FUSED_MAX_MACS { GpuPath::Fused } else { GpuPath::Unfused };
            assert_eq!(key.rule(), want, "{:?} batch {batch}", spec.sizes());
            assert_eq!(tuner.gpu_path(&key, PathStrategy::Rule, never).unwrap(), want);
            assert_eq!(tuner.gpu_path(&key, PathStrategy::Fixed(GpuPath::Unfused), never).unwrap(), GpuPath::Unfused);
        }
        assert_eq!(PathKey::new(&small, at_threshold, &limits, VK).rule(), GpuPath::Fused);
        assert_eq!(PathKey::new(&small, at_threshold + 1, &limits, VK).rule(), GpuPath::Unfused);
    }
    // Bindings of 128 values: a batch whose X does not fit one takes the unfused step.
    let tiny = wgpu::Limits { max_storage_buffer_binding_size: 512, ..wgpu::Limits::default() };
    assert_eq!(PathKey::new(&net(&[2, 2, 1]), 64, &tiny, VK).rule(), GpuPath::Fused);
    let key = PathKey::new(&net(&[2, 2, 1]), 65, &tiny, VK);
    assert!(key.block_rows.clone().unwrap_err().contains("max_storage_buffer_binding_size"), "{key:?}");
    assert_eq!(tuner.path_timings(), 0);
}

/// On wgpu's GL backend the rule keeps the unfused step for networks and batches that take the fused
/// one through every other API; the bound is unchanged there, so forcing the fused step still works.
#[test]
fn the_rule_keeps_the_unfused_step_on_gl_and_forcing_still_works() {
    let tuner = Tuner::new(Strategy::Heuristic, true);
    for limits in [wgpu::Limits::default(), lavapipe()] {
        for (sizes, batch) in [(&[2, 2, 1][..], 1), (&[64, 17, 10], 13), (&[64, 64, 64, 1], 64)] {
            let (spec, at) = (net(sizes), format!("{sizes:?} batch {batch}"));
            let gl = PathKey::new(&spec, batch, &limits, wgpu::Backend::Gl);
            assert_eq!(gl, PathKey::new(&spec, batch, &limits, wgpu::Backend::Gl), "{at}");
            assert_eq!((gl.rule(), gl.block_rows.is_ok()), (GpuPath::Unfused, true), "{at}");
            assert_eq!(tuner.gpu_path(&gl, PathStrategy::Rule, never).unwrap(), GpuPath::Unfused, "{at}");
            let forced = tuner.gpu_path(&gl, PathStrategy::Fixed(GpuPath::Fused), never).unwrap();
            assert_eq!(forced, GpuPath::Fused, "{at}");
            for api in [VK, wgpu::Backend::Metal, wgpu::Backend::Dx12, wgpu::Backend::BrowserWebGpu] {
                assert_eq!(PathKey::new(&spec, batch, &limits, api).rule(), GpuPath::Fused, "{at} {api:?}");
            }
        }
    }
    assert_eq!(tuner.path_timings(), 0);
}

#[test]
fn forcing_the_fused_step_outside_its_bound_is_an_error_and_timing_is_cached() {
    let tuner = Tuner::new(Strategy::Heuristic, true);
    let wide = PathKey::new(&net(&[4, 129, 3]), 5, &wgpu::Limits::default(), VK);
    let e = tuner.gpu_path(&wide, PathStrategy::Fixed(GpuPath::Fused), never).unwrap_err().to_string();
    assert!(e.contains("4-129-3") && e.contains("129 wide"), "{e}");
    assert_eq!(tuner.gpu_path(&wide, PathStrategy::Timed, never).unwrap(), GpuPath::Unfused, "nothing to time");
    let key = PathKey::new(&net(&[64, 64, 64, 1]), 64, &wgpu::Limits::default(), VK);
    let mut calls = 0;
    let fused_faster = |path, runs: usize| {
        calls += 1;
        Ok(runs as f64 * if path == GpuPath::Fused { 1e-3 } else { 3e-3 })
    };
    assert_eq!(tuner.gpu_path(&key, PathStrategy::Timed, fused_faster).unwrap(), GpuPath::Fused);
    assert_eq!((calls, tuner.path_timings()), (10, 10), "two steps, five timings each");
    assert_eq!(tuner.gpu_path(&key, PathStrategy::Timed, never).unwrap(), GpuPath::Fused, "cached");
}

#[test]
fn the_environment_names_a_strategy_or_nothing() {
    assert_eq!(PathStrategy::from_env_value(None).unwrap(), PathStrategy::Rule);
    assert_eq!(PathStrategy::from_env_value(Some("rule")).unwrap(), PathStrategy::Rule);
    assert_eq!(PathStrategy::from_env_value(Some("Fused")).unwrap(), PathStrategy::Fixed(GpuPath::Fused));
    assert_eq!(PathStrategy::from_env_value(Some("unfused")).unwrap(), PathStrategy::Fixed(GpuPath::Unfused));
    assert_eq!(PathStrategy::from_env_value(Some("timed")).unwrap(), PathStrategy::Timed);
    assert_eq!(PathStrategy::from_env_value(Some("")).unwrap(), PathStrategy::Rule, "blank is unset");
    let e = PathStrategy::from_env_value(Some("auto")).unwrap_err().to_string();
    assert!(e.contains("BACKPROP_GPU_PATH") && e.contains("'auto'"), "{e}");
}
