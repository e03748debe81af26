//! The shaders checked with naga, without a GPU: every file parses and validates with either reduction
//! prelude, every kernel binds what the host binds, and the named constants hold the host's values.

use std::collections::BTreeSet;

use backprop::Activation;
use backprop::gpu::ops;
use backprop::gpu::shaders::{self, Elem, Kernel, Load, Reductions, RegShape, ShaderFile, Slot, Tile, Twin};
use naga::valid::{Capabilities, ValidationFlags, Validator};

/// What naga must allow for a module compiled with `reductions`: subgroup operations for the subgroup ones.
fn capabilities(reductions: Reductions) -> Capabilities {
    match reductions {
        Reductions::Workgroup => Capabilities::default(),
        Reductions::Subgroup => Capabilities::SUBGROUP,
    }
}

/// Every module the pipelines are compiled from (each file, `linear.wgsl` once per tiling), with each
/// reduction prelude; the subgroup one does not validate without the subgroup capability, so a device
/// without subgroup operations must be given the workgroup prelude.
#[test]
fn every_shader_validates_with_naga() {
    for (k, reductions) in Kernel::ALL.into_iter().flat_map(|k| Reductions::ALL.map(|r| (k, r))) {
        let src = k.source(reductions);
        let name = format!("{} ({reductions:?} reductions)", k.module_label());
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{name} does not parse:\n{}", e.emit_to_string(&src)));
        Validator::new(ValidationFlags::all(), capabilities(reductions))
            .validate(&module)
            .unwrap_or_else(|e| panic!("{name} does not validate: {e:?}"));
        if reductions == Reductions::Subgroup {
            let without = Validator::new(ValidationFlags::all(), Capabilities::default()).validate(&module);
            assert!(without.is_err(), "{name} validates without the subgroup capability");
        }
    }
}

/// `Kernel::index` is each kernel's position in `Kernel::ALL` (the pipelines are looked up by it), and no
/// kernel is listed twice.
#[test]
fn every_kernel_is_at_its_index() {
    for (i, k) in Kernel::ALL.into_iter().enumerate() {
        assert_eq!(k.index(), i, "{k:?}");
    }
}

#[test]
fn every_shader_file_on_disk_is_compiled_in() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders");
    let on_disk: BTreeSet<String> = std::fs::read_dir(dir)
        .expect("shaders/ exists")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".wgsl") && n != "common.wgsl")
        .collect();
    let compiled: BTreeSet<String> = ShaderFile::ALL.iter().map(|f| f.file_name().to_string()).collect();
    assert!(!on_disk.is_empty(), "found no shaders in {dir}");
    assert_eq!(on_disk, compiled, "shaders/ and ShaderFile::ALL differ");
}

#[test]
fn every_kernel_entry_point_exists_in_its_file() {
    for k in Kernel::ALL {
        let src = k.source(Reductions::Workgroup);
        let module = naga::front::wgsl::parse_str(&src).expect("parses");
        let ep = module.entry_points.iter().find(|e| e.name == k.entry_point());
        let ep =
            ep.unwrap_or_else(|| panic!("{:?}: no entry point {} in {}", k, k.entry_point(), k.file().file_name()));
        assert_eq!(ep.stage, naga::ShaderStage::Compute, "{} is not a compute entry point", k.entry_point());
        let threads: u32 = ep.workgroup_size.iter().product();
        assert!(threads <= 256, "{}: {threads} threads per workgroup exceeds WebGPU's default limit", k.entry_point());
    }
}

/// A module parsed and validated with naga, with the analysis that says which globals each entry point uses.
fn validated(src: &str, reductions: Reductions) -> (naga::Module, naga::valid::ModuleInfo) {
    let module = naga::front::wgsl::parse_str(src).expect("parses");
    let info = Validator::new(ValidationFlags::all(), capabilities(reductions)).validate(&module).expect("validates");
    (module, info)
}

/// What the shader declares at a binding, in the host's terms: a struct's WGSL name and size, an array's
/// element type, and whether the kernel may write it.
fn slot_of(module: &naga::Module, var: &naga::GlobalVariable) -> Slot {
    let ty = &module.types[var.ty];
    let twin = || Twin {
        name: ty.name.clone().map_or("(anonymous)", |n| n.leak()),
        size: ty.inner.size(module.to_ctx()) as usize,
    };
    let write = match var.space {
        naga::AddressSpace::Uniform => return Slot::Uniform(twin()),
        naga::AddressSpace::Storage { access } => access.contains(naga::StorageAccess::STORE),
        other => panic!("a binding in address space {other:?}"),
    };
    match &ty.inner {
        naga::TypeInner::Struct { .. } => Slot::Struct { twin: twin(), write },
        naga::TypeInner::Array { base, .. } => {
            let elem = match module.types[*base].inner {
                naga::TypeInner::Scalar(naga::Scalar::F32) => Elem::F32,
                naga::TypeInner::Scalar(naga::Scalar::U32) => Elem::U32,
                naga::TypeInner::Vector { size: naga::VectorSize::Quad, scalar: naga::Scalar::F32 } => Elem::Vec4F32,
                ref other => panic!("an array of {other:?}"),
            };
            Slot::Array { elem, write }
        }
        other => panic!("a binding of type {other:?}"),
    }
}

/// Every kernel's entry point uses exactly the bindings `Kernel::bindings` declares, each of the declared
/// kind (uniform, array of the element type, struct of the host twin's name and size, read or written):
/// what the host binds and what the shader reads can only drift apart by failing here. With either
/// reduction prelude.
#[test]
fn every_kernel_binds_what_the_host_binds() {
    for (k, reductions) in Kernel::ALL.into_iter().flat_map(|k| Reductions::ALL.map(|r| (k, r))) {
        let (module, info) = validated(&k.source(reductions), reductions);
        let index = module.entry_points.iter().position(|e| e.name == k.entry_point()).expect("the entry point");
        let uses = info.get_entry_point(index);
        let mut in_shader: Vec<(u32, Slot)> = module
            .global_variables
            .iter()
            .filter(|(h, _)| !uses[*h].is_empty())
            .filter_map(|(_, var)| var.binding.as_ref().map(|b| (b, var)))
            .map(|(b, var)| {
                assert_eq!(b.group, 0, "{k:?}: a binding in group {}", b.group);
                (b.binding, slot_of(&module, var))
            })
            .collect();
        in_shader.sort_by_key(|(b, _)| *b);
        assert_eq!(
            in_shader,
            k.bindings(),
            "{k:?} ({}, {reductions:?}): the shader's bindings, then the host's",
            k.file().file_name()
        );
        assert_eq!(k.uniform().size % 4, 0, "{k:?}: the uniform is whole 32-bit fields");
    }
}

/// The shaders' named constants hold the values the host computes with: the activation ids, the
/// workgroup size of the elementwise kernels, the columns one bias-gradient workgroup sums, each tiling's
/// constants, and the fused step's workgroup, block and layer table.
#[test]
fn the_shaders_constants_are_the_hosts() {
    let constant = |k: Kernel, name: &str| -> u32 {
        let module = naga::front::wgsl::parse_str(&k.source(Reductions::Workgroup)).expect("parses");
        let (_, c) = module
            .constants
            .iter()
            .find(|(_, c)| c.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("{} declares no constant {name}", k.module_label()));
        match module.global_expressions[c.init] {
            naga::Expression::Literal(naga::Literal::U32(v)) => v,
            ref other => panic!("{name} is {other:?}, not a u32 literal"),
        }
    };
    for act in Activation::ALL {
        let name = format!("ACT_{}", act.name().to_uppercase());
        assert_eq!(constant(Kernel::LossGrad, &name), act.shader_id(), "{name}");
    }
    for k in Kernel::ALL {
        assert_eq!(constant(k, "WG"), ops::WG, "WG in {}", k.module_label());
    }
    assert_eq!(constant(Kernel::BiasGrad, "COLS") as usize, ops::BIAS_COLUMNS, "COLS in grad.wgsl");
    for tile in Tile::ALL {
        let (size, k_step) = if tile == Tile::Small { ("SMALL_TILE", "SMALL_TK") } else { ("TILE", "TK") };
        let kernel = Kernel::matmul(tile, Load::Rows, Load::Rows);
        assert_eq!(constant(kernel, size) as usize, tile.size(), "{tile:?}: {size}");
        assert_eq!(constant(kernel, k_step) as usize, tile.k_step(), "{tile:?}: {k_step}");
    }
    let reg = Kernel::MatmulReg(RegShape::Wide, Load::Rows, Load::Rows);
    for (load, name) in Load::ALL.into_iter().zip(["LOAD_ROWS", "LOAD_COLUMNS", "LOAD_VALUES"]) {
        assert_eq!(constant(reg, name), load as u32, "{name}");
    }
    let fused = Kernel::FusedForwardBackward;
    assert_eq!(constant(fused, "FUSED_WG") as usize, shaders::FUSED_WORKGROUP, "FUSED_WG in fused.wgsl");
    assert_eq!(constant(fused, "MAX_BLOCK_ROWS") as usize, shaders::MAX_BLOCK_ROWS, "MAX_BLOCK_ROWS");
    assert_eq!(constant(fused, "MAX_LAYERS") as usize, shaders::MAX_FUSED_LAYERS, "MAX_LAYERS");
}

/// Every pipeline-overridable constant the host sets is declared by the kernel's module (a misspelt name
/// would fail only when the pipeline is made), and the shapes' threads are a workgroup of 64.
#[test]
fn the_host_sets_only_constants_the_shaders_declare() {
    for k in Kernel::ALL {
        let module = naga::front::wgsl::parse_str(&k.source(Reductions::Workgroup)).expect("parses");
        let declared: BTreeSet<&str> = module.overrides.iter().filter_map(|(_, o)| o.name.as_deref()).collect();
        for (name, _) in k.overrides(&wgpu::Limits::default()) {
            assert!(declared.contains(name), "{k:?}: {} declares no override {name}", k.module_label());
        }
    }
    for shape in RegShape::ALL {
        let (rows, cols) = shape.block();
        assert_eq!((rows / 16) * (cols / 4), 64, "{shape:?}: 16x4 a thread, 64 threads");
        assert_eq!(cols / 4, shape.width(), "{shape:?}: threads along N");
    }
}

/// `fused_forward_backward`'s workgroup memory is `act` (ACT_CAP values, whose default is what WebGPU's
/// default limit leaves) and arrays of the size the host subtracts for them, so the host's ACT_CAP fills
/// the device's limit exactly; and the pipeline sets ACT_CAP, the kernel's only overridable constant.
#[test]
fn the_fused_kernel_s_workgroup_memory_is_what_the_host_computes() {
    let k = Kernel::FusedForwardBackward;
    let (module, info) = validated(&k.source(Reductions::Workgroup), Reductions::Workgroup);
    let index = module.entry_points.iter().position(|e| e.name == k.entry_point()).expect("the entry point");
    let uses = info.get_entry_point(index);
    let other: u32 = module
        .global_variables
        .iter()
        .filter(|(h, v)| v.space == naga::AddressSpace::WorkGroup && !uses[*h].is_empty())
        .filter(|(_, v)| v.name.as_deref() != Some("act"))
        .map(|(_, v)| module.types[v.ty].inner.size(module.to_ctx()))
        .sum();
    assert_eq!(other, shaders::FUSED_OTHER_WORKGROUP_BYTES, "workgroup arrays besides act");
    let (_, cap) = module.overrides.iter().find(|(_, o)| o.name.as_deref() == Some("ACT_CAP")).expect("ACT_CAP");
    let default = match cap.init.map(|e| &module.global_expressions[e]) {
        Some(naga::Expression::Literal(naga::Literal::U32(v))) => *v,
        other => panic!("ACT_CAP's default is {other:?}"),
    };
    assert_eq!(default, shaders::fused_act_capacity(&wgpu::Limits::default()), "ACT_CAP's default");
    let overrides: Vec<&str> = k.overrides(&wgpu::Limits::default()).iter().map(|(name, _)| *name).collect();
    assert_eq!(overrides, ["ACT_CAP"]);
    assert_eq!(module.overrides.len(), 1, "fused.wgsl's overridable constants");
}
