//! The seed's worked example on the page: the library's `worked_example` with the GPU's step read back
//! asynchronously, as the JSON `backprop worked-example --json` prints.

use std::sync::Arc;

use backprop::Result;
use backprop::gpu::{GpuContext, GpuMlp};
use backprop::worked_example::{self, LEARNING_RATE};
use serde_json::Value;

/// The step on the f64 reference and, with a GPU, in the WGSL kernels; without one the GPU fields are
/// null, as `--backend cpu` prints them.
pub async fn run(gpu: Option<&Arc<GpuContext>>) -> Result<Value> {
    let measured = match gpu {
        Some(ctx) => {
            let (spec, _) = worked_example::network()?;
            let (params, x, y) = worked_example::inputs_f32()?;
            let mut model = GpuMlp::new(ctx.clone(), spec, &params)?;
            let trace = model.traced_step_async(x.view(), y.view(), LEARNING_RATE as f32).await?;
            let after = model.params_async().await?;
            Some(worked_example::quantities(&trace, &after, trace.loss))
        }
        None => None,
    };
    let rows = worked_example::compare(measured)?;
    Ok(worked_example::report_json(gpu.map(|c| c.adapter()), &rows))
}
