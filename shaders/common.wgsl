// common.wgsl: shared by every shader file; the host prepends it to each one before compiling, followed by
// the device's sum across a workgroup (prelude/reduce_workgroup.wgsl or prelude/reduce_subgroup.wgsl).
// Shapes use the letters of DESIGN.md: B batch, I a layer's input width, O its output width.

// Activation ids: `Activation::shader_id` on the host (a test reads these constants from the module).
const ACT_IDENTITY: u32 = 0u;
const ACT_SIGMOID: u32 = 1u;
const ACT_RELU: u32 = 2u;
const ACT_TANH: u32 = 3u;

// Threads per workgroup of the elementwise and reduction kernels (`ops::WG` on the host); the host
// dispatches ceil(n / WG) of them, folded into (x, y) when x would pass the 65535 limit.
const WG: u32 = 256u;

fn sigmoid(z: f32) -> f32 {
    return 1.0 / (1.0 + exp(-z));
}

// tanh written through exp of a non-positive argument, so it never overflows to inf/inf.
fn tanh_stable(z: f32) -> f32 {
    let e = exp(-2.0 * abs(z));
    return sign(z) * (1.0 - e) / (1.0 + e);
}

// f(z)
fn activate(act: u32, z: f32) -> f32 {
    switch act {
        case ACT_SIGMOID: { return sigmoid(z); }
        case ACT_RELU: { return max(z, 0.0); }
        case ACT_TANH: { return tanh_stable(z); }
        default: { return z; } // ACT_IDENTITY
    }
}

// f'(z); relu'(0) = 0 as in PyTorch
fn activate_derivative(act: u32, z: f32) -> f32 {
    switch act {
        case ACT_SIGMOID: { let s = sigmoid(z); return s * (1.0 - s); }
        case ACT_RELU: { return select(0.0, 1.0, z > 0.0); }
        case ACT_TANH: { let t = tanh_stable(z); return 1.0 - t * t; }
        default: { return 1.0; } // ACT_IDENTITY
    }
}

// f'(z) from a = f(z), the same value as activate_derivative(act, z) where a was computed by activate:
// sigmoid a(1 − a), relu a > 0, tanh 1 − a², identity 1.
fn derivative_from_output(act: u32, a: f32) -> f32 {
    switch act {
        case ACT_SIGMOID: { return a * (1.0 - a); }
        case ACT_RELU: { return select(0.0, 1.0, a > 0.0); }
        case ACT_TANH: { return 1.0 - a * a; }
        default: { return 1.0; } // ACT_IDENTITY
    }
}

// The flat index of this invocation in a 1-D problem dispatched as (x, y) workgroups of WG threads.
fn flat_index(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.x + gid.y * groups.x * WG;
}
