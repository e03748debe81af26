//! Every WGSL file parses and validates with naga, without a GPU.

use std::collections::BTreeSet;

use backprop::gpu::shaders::{Kernel, ShaderFile};

#[test]
fn every_shader_validates_with_naga() {
    for file in ShaderFile::ALL {
        let src = file.source();
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{} does not parse:\n{}", file.file_name(), e.emit_to_string(&src)));
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::default())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{} does not validate: {e:?}", file.file_name()));
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
        let src = k.file().source();
        let module = naga::front::wgsl::parse_str(&src).expect("parses");
        let ep = module.entry_points.iter().find(|e| e.name == k.entry_point());
        let ep =
            ep.unwrap_or_else(|| panic!("{:?}: no entry point {} in {}", k, k.entry_point(), k.file().file_name()));
        assert_eq!(ep.stage, naga::ShaderStage::Compute, "{} is not a compute entry point", k.entry_point());
        let threads: u32 = ep.workgroup_size.iter().product();
        assert!(threads <= 256, "{}: {threads} threads per workgroup exceeds WebGPU's default limit", k.entry_point());
    }
}
