//! Choosing an adapter: what `--backend` and `WGPU_BACKEND` may name, and the errors that say what was
//! searched and what there is instead, from the library and from the binary.

use backprop::Error;
use backprop::gpu::adapter::{self, AdapterRequest};
use backprop::gpu::{GpuContext, list_adapters};

use crate::common::cli::{cmd, stderr};

#[test]
fn wgpu_backend_takes_a_list_of_apis_and_names_what_it_is_not() {
    let b = adapter::parse_api_list("Vulkan, gl").unwrap();
    assert_eq!(b, wgpu::Backends::VULKAN | wgpu::Backends::GL);
    assert_eq!(adapter::api_names(b), "vulkan, gl");
    assert_eq!(adapter::parse_api_list("dx12").unwrap(), wgpu::Backends::DX12);
    let e = adapter::parse_api_list("vulkan,bogus").unwrap_err().to_string();
    assert!(e.contains("WGPU_BACKEND") && e.contains("'bogus'") && e.contains("vulkan, metal, dx12, gl"), "{e}");
}

/// An API this build cannot reach here is refused with the ones it can (DX12 and Metal on Linux), and
/// a name filter that matches nothing lists the adapters there are.
#[cfg(target_os = "linux")]
#[test]
fn an_api_linux_lacks_and_a_name_nothing_has_are_errors_that_say_what_there_is() {
    for api in [wgpu::Backends::DX12, wgpu::Backends::METAL] {
        let req = AdapterRequest { backends: Some(api), ..Default::default() };
        let e = GpuContext::new(&req).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, Error::Invalid(_)), "{text}");
        assert!(text.contains(&adapter::api_names(api)) && text.contains("linux") && text.contains("vulkan"), "{text}");
        assert!(list_adapters(&req).is_err(), "{}: listed", adapter::api_names(api));
    }
    let req = AdapterRequest { name: Some("no such adapter".into()), ..Default::default() };
    let text = GpuContext::new(&req).unwrap_err().to_string();
    assert!(
        text.contains("whose name contains 'no such adapter'") && text.contains("the adapters found are:"),
        "{text}"
    );
}

/// From the binary: one `error:` line, and `--backend auto` does not fall back to the CPU over a
/// misspelt WGPU_BACKEND (it would hide the mistake).
#[test]
fn the_binary_names_a_bad_backend_and_does_not_fall_back_over_it() {
    let run = |env: Option<&str>, args: &[&str]| {
        let mut c = cmd();
        if let Some(v) = env {
            c.env("WGPU_BACKEND", v);
        }
        c.args(args).output().unwrap()
    };
    for args in
        [&["devices"][..], &["--backend", "auto", "--epochs", "1", "-q"], &["--backend", "gpu", "--epochs", "1", "-q"]]
    {
        let out = run(Some("vulkn"), args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?}: {err}");
        assert!(err.starts_with("error: WGPU_BACKEND names 'vulkn'") && err.lines().count() == 1, "{args:?}: {err}");
    }
    if cfg!(target_os = "linux") {
        let out = run(None, &["--backend", "dx12", "--epochs", "1", "-q"]);
        let err = stderr(&out);
        assert!(!out.status.success() && err.contains("--backend dx12 cannot be used on linux"), "{err}");
        assert!(!err.contains("install a Vulkan, Metal or DX12 driver"), "not a missing driver: {err}");
    }
}
