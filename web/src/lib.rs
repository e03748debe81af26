//! The web page's WebAssembly glue: what `web/page/app.js` calls. Every number the page shows comes from
//! here, and everything here calls the `backprop` library (the WGSL kernels through WebGPU, the f64
//! reference, the optimizers, the data sets); this crate only awaits the GPU's read-backs and turns
//! results into JSON.
//!
//! A separate crate, so that wasm-bindgen and js-sys stay out of the library and its native build.

pub mod bench;
pub mod engine;
pub mod playground;
pub mod setup;
mod worked;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use backprop::gpu::{AdapterRequest, GpuContext};
use serde_json::{Value, json};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::playground::Playground;
use crate::setup::Setup;

fn js_err(e: impl std::fmt::Display) -> JsValue {
    JsValue::from_str(&e.to_string())
}

fn json_string(v: &Value) -> Result<JsValue, JsValue> {
    serde_json::to_string_pretty(v).map(|s| JsValue::from_str(&s)).map_err(js_err)
}

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// The settings that train `dataset` well, as the form shows them (JSON).
#[wasm_bindgen]
pub fn defaults_json(dataset: &str) -> Result<String, JsValue> {
    Setup::defaults(dataset).map(|s| s.to_json().to_string()).map_err(js_err)
}

/// Settings from the query string's `[name, value]` pairs (JSON), checked (JSON back, or the error).
#[wasm_bindgen]
pub fn setup_json(pairs_json: &str) -> Result<String, JsValue> {
    let pairs: Vec<(String, String)> = serde_json::from_str(pairs_json).map_err(js_err)?;
    Setup::from_pairs(&pairs).map(|s| s.to_json().to_string()).map_err(js_err)
}

/// The GPU (when the browser has WebGPU and an adapter) that the rest of the page runs on.
#[wasm_bindgen]
pub struct Lab {
    gpu: Option<Arc<GpuContext>>,
    gpu_error: Option<String>,
}

/// Opens the GPU through WebGPU; without it the lab runs the CPU reference and says why.
#[wasm_bindgen]
pub async fn open_lab() -> Lab {
    match GpuContext::new_async(&AdapterRequest::default()).await {
        // wgpu's web types are not Send; the Arc is only for the library's GpuMlp::new signature.
        #[allow(clippy::arc_with_non_send_sync)]
        Ok(ctx) => Lab { gpu: Some(Arc::new(ctx)), gpu_error: None },
        Err(e) => Lab { gpu: None, gpu_error: Some(e.to_string()) },
    }
}

#[wasm_bindgen]
impl Lab {
    /// `{"name", "backend", "device_type"}` of the adapter, or `null` without one.
    pub fn adapter_json(&self) -> String {
        self.adapter().to_string()
    }

    /// Why there is no GPU, if there is none.
    pub fn gpu_error(&self) -> Option<String> {
        self.gpu_error.clone()
    }

    fn adapter(&self) -> Value {
        match &self.gpu {
            Some(c) => {
                let a = c.adapter();
                json!({"name": a.name, "backend": a.backend, "device_type": a.device_type})
            }
            None => Value::Null,
        }
    }

    /// The seed's worked example: resolves to the JSON of `backprop worked-example --json`.
    pub fn worked_example(&self) -> js_sys::Promise {
        let gpu = self.gpu.clone();
        future_to_promise(async move { json_string(&worked::run(gpu.as_ref()).await.map_err(js_err)?) })
    }

    /// One benchmark configuration (`seed`, `small`, `mnist`) on the GPU or the CPU reference (JSON).
    pub fn bench(&self, config: String, on_gpu: bool) -> js_sys::Promise {
        let gpu = if on_gpu { self.gpu.clone() } else { None };
        future_to_promise(async move {
            if on_gpu && gpu.is_none() {
                return Err(js_err("no WebGPU adapter"));
            }
            json_string(&bench::run(gpu.as_ref(), &config).await.map_err(js_err)?)
        })
    }

    /// A training session with the settings of the JSON `settings` (the form's fields).
    pub fn playground(&self, settings: &str) -> Result<Session, JsValue> {
        let map: serde_json::Map<String, Value> = serde_json::from_str(settings).map_err(js_err)?;
        let pairs: Vec<(String, String)> =
            map.into_iter().map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_string))).collect();
        let setup = Setup::from_pairs(&pairs).map_err(js_err)?;
        let pg = Playground::new(setup, self.gpu.as_ref()).map_err(js_err)?;
        Ok(Session { inner: Rc::new(RefCell::new(Some(pg))), adapter: self.adapter(), last_eval: Rc::default() })
    }
}

/// A playground session. Each call returns a promise; one call at a time (another is refused as busy).
#[wasm_bindgen]
pub struct Session {
    /// Taken out while a call is in flight.
    inner: Rc<RefCell<Option<Playground>>>,
    adapter: Value,
    /// When `train` last evaluated.
    last_eval: Rc<std::cell::Cell<Option<web_time::Instant>>>,
}

/// Seconds between evaluations while training (every call evaluates at the end of the run).
const EVAL_EVERY_S: f64 = 0.5;

fn busy() -> JsValue {
    js_err("the playground is busy with another call")
}

impl Session {
    /// Runs `f` on the playground, taken out of the session for the call (so no borrow spans an await).
    fn call<F>(&self, f: F) -> js_sys::Promise
    where
        F: AsyncFnOnce(&mut Playground) -> backprop::Result<Value> + 'static,
    {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let mut pg = inner.borrow_mut().take().ok_or_else(busy)?;
            let result = f(&mut pg).await;
            *inner.borrow_mut() = Some(pg);
            json_string(&result.map_err(js_err)?)
        })
    }

    fn read<T>(&self, f: impl FnOnce(&Playground) -> T) -> Result<T, JsValue> {
        self.inner.borrow().as_ref().map(f).ok_or_else(busy)
    }
}

#[wasm_bindgen]
impl Session {
    /// Trains `epochs` epochs (fewer if the run's epoch count is reached first) and evaluates when the run
    /// is done, when `evaluate` asks, or when the last evaluation is `EVAL_EVERY_S` old (each costs a read-back, which a browser answers
    /// slowly): `{"epoch", "losses": [per epoch], "eval": {"loss", "accuracy", "held_out"} or null, "done"}`.
    pub fn train(&self, epochs: usize, evaluate: bool) -> js_sys::Promise {
        let last_eval = self.last_eval.clone();
        self.call(async move |pg: &mut Playground| {
            let mut losses = Vec::new();
            for _ in 0..epochs.max(1) {
                losses.push(pg.train_epoch().await?);
                if pg.done() {
                    break;
                }
            }
            let done = pg.done();
            let eval = match last_eval.get() {
                Some(t) if !done && !evaluate && t.elapsed().as_secs_f64() < EVAL_EVERY_S => Value::Null,
                _ => {
                    let e = pg.evaluate().await?;
                    last_eval.set(Some(web_time::Instant::now()));
                    json!({"loss": e.loss, "accuracy": e.accuracy, "held_out": e.held_out})
                }
            };
            Ok(json!({ "epoch": pg.epoch(), "losses": losses, "eval": eval, "done": done }))
        })
    }

    /// The network's output over the plot (see `Playground::field`).
    pub fn field(&self, n: usize) -> js_sys::Promise {
        self.call(async move |pg: &mut Playground| pg.field(n).await)
    }

    /// One step checked against the f64 reference (see `Playground::verify`).
    pub fn verify(&self) -> js_sys::Promise {
        self.call(async move |pg: &mut Playground| pg.verify().await.map(|r| playground::verify_json(&r)))
    }

    /// The data to draw (JSON).
    pub fn points_json(&self) -> Result<String, JsValue> {
        self.read(|pg| pg.points_json().to_string())
    }

    /// `#train-json`: `{"dataset", "epochs", "train_loss", "accuracy", "backend", "adapter"}` of the run.
    pub fn summary_json(&self, train_loss: f64, accuracy: Option<f64>) -> Result<String, JsValue> {
        let v = self.read(|pg| {
            json!({
                "dataset": pg.setup.dataset.name(),
                "epochs": pg.epoch(),
                "train_loss": train_loss,
                "accuracy": accuracy,
                "backend": pg.backend_label(),
                "adapter": self.adapter,
            })
        })?;
        serde_json::to_string_pretty(&v).map_err(js_err)
    }

    /// "webgpu" or "cpu reference (f64)".
    pub fn backend(&self) -> Result<String, JsValue> {
        self.read(|pg| pg.backend_label().to_string())
    }
}
