//! What each command does, on top of the library.

use std::path::Path;
use std::sync::Arc;

use backprop::CpuBackend;
use backprop::checkpoint::{self, Checkpoint, Model, TrainingState};
use backprop::data::{self, Dataset, Normalization, Normalizer, TargetSpec, Task};
use backprop::device::BackendChoice;
use backprop::gpu::{self, GpuContext, GpuMlp};
use backprop::model::{Activation, Loss, MlpSpec, Output, Params};
use backprop::optim::{OptimConfig, OptimizerKind, Schedule};
use backprop::report;
use backprop::train::{self, TrainConfig, Verify};
use backprop::{Backend, Error, Result, worked_example};
use serde_json::json;

use crate::progress::Progress;

/// How the inputs are normalised: statistics from a checkpoint, or a kind to fit on the training rows.
enum NormChoice {
    Fitted(Normalizer),
    Fit(Normalization),
}

/// Progress, plus the files written after every epoch: checkpoint, metrics CSV, plot.
struct Saver<'a> {
    progress: Progress,
    args: &'a TrainArgs,
    title: String,
    model: Model,
    seed: u64,
    start_epoch: usize,
}

impl train::Observer for Saver<'_> {
    fn batch(&mut self, epoch: usize, done: usize, total: usize) {
        self.progress.batch(epoch, done, total)
    }
    fn epoch(&mut self, m: &report::EpochMetrics, epochs: usize) {
        self.progress.epoch(m, epochs)
    }
    fn verified(&mut self, r: &train::VerifyReport) {
        self.progress.verified(r)
    }
    fn epoch_end(&mut self, backend: &mut dyn Backend, history: &[report::EpochMetrics]) -> Result<()> {
        if let Some(path) = &self.args.out {
            self.model.params = backend.params()?;
            let training = TrainingState {
                optimizer: backend.optimizer(),
                state: backend.optimizer_state()?,
                epoch: self.start_epoch + history.len(),
                seed: self.seed,
            };
            checkpoint::save(path, &Checkpoint { model: self.model.clone(), training: Some(training) })?;
        }
        if let Some(path) = &self.args.metrics {
            report::write_metrics_csv(path, history)?;
        }
        if let Some(path) = &self.args.plot {
            report::plot_png(path, history, &self.title)?;
        }
        Ok(())
    }
}

fn short_name(data: &str) -> String {
    Path::new(data).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| data.to_string())
}

fn task_name(t: &Task) -> String {
    match t {
        Task::Classification { classes } => format!("{classes} classes"),
        Task::Regression { targets } => format!("{targets} regression target(s)"),
    }
}
use crate::{DataArgs, DeviceArgs, TrainArgs};

/// Opens the GPU the flags ask for. `Ok((None, why))` means the CPU: chosen, or `auto` found no hardware GPU
/// (software adapters are used only when asked for by name or `--backend gpu`, or when `software_ok`).
fn open_gpu(device: &DeviceArgs, software_ok: bool) -> Result<(Option<Arc<GpuContext>>, String)> {
    let Some(req) = device.backend.adapter_request(device.adapter.clone()) else {
        return Ok((None, "as asked by --backend cpu".into()));
    };
    let auto = device.backend == BackendChoice::Auto && device.adapter.is_none();
    match GpuContext::new(&req) {
        Ok(ctx) if auto && !software_ok && ctx.adapter().device_type == "cpu" => {
            let why = format!(
                "no hardware GPU found; {} is a software renderer, which --backend gpu uses anyway",
                ctx.adapter().name
            );
            Ok((None, why))
        }
        Ok(ctx) => Ok((Some(Arc::new(ctx)), String::new())),
        Err(Error::NoAdapter { .. }) if auto => Ok((None, "no GPU adapter found".into())),
        Err(e) => Err(e),
    }
}

/// A backend for `spec` starting from `params`, and a one-line description of it (with why, for the CPU).
fn open_backend(device: &DeviceArgs, spec: MlpSpec, params: &Params<f32>) -> Result<(Box<dyn Backend>, String)> {
    Ok(match open_gpu(device, false)? {
        (Some(ctx), _) => {
            let a = ctx.adapter();
            let line = format!("gpu, {} ({}, {})", a.name, a.backend, a.device_type);
            (Box::new(GpuMlp::new(ctx, spec, params)?), line)
        }
        (None, why) => (Box::new(CpuBackend::new(spec, params.clone())?), format!("cpu ({why})")),
    })
}

/// Loads the data set a command names. `classes` fixes the class count (evaluating a trained model).
fn load_data(args: &DataArgs, classes: Option<usize>, seed: u64) -> Result<Dataset> {
    if args.data.trim().is_empty() {
        return Err(Error::Invalid("--data is empty (give digits, xor, spirals, sine or a file)".into()));
    }
    let bundled = ["digits", "xor", "spirals", "sine"].contains(&args.data.as_str());
    if bundled && args.labels.is_some() {
        return Err(Error::Invalid(format!(
            "--labels goes with an IDX images file as --data, not with the bundled '{}'",
            args.data
        )));
    }
    let path = Path::new(&args.data);
    if let Some(labels) = &args.labels {
        if args.targets.is_some() {
            return Err(Error::Invalid("--targets applies to CSV files, not to IDX files with --labels".into()));
        }
        return data::load_idx(path, labels, classes);
    }
    let builtin = match args.data.as_str() {
        "digits" => Some(data::digits()?),
        "xor" => Some(data::xor()),
        "spirals" => Some(data::spirals(400, seed)?),
        "sine" => Some(data::sine(256, seed)?),
        _ => None,
    };
    if let Some(ds) = builtin {
        if args.targets.is_some() {
            return Err(Error::Invalid(format!("--targets applies to CSV files, not to the bundled '{}'", args.data)));
        }
        return Ok(ds);
    }
    if !path.exists() {
        return Err(Error::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such file (and not one of digits, xor, spirals, sine)",
            ),
        ));
    }
    match idx_kind(path) {
        Some("images") => {
            return Err(Error::Invalid(format!(
                "{} looks like an IDX images file: give its labels file with --labels",
                path.display()
            )));
        }
        Some(_) => {
            return Err(Error::Invalid(format!(
                "{} looks like an IDX labels file: pass it as --labels, with the matching images as --data",
                path.display()
            )));
        }
        None => {}
    }
    data::load_csv(path, TargetSpec { targets: args.targets, classes })
}

/// IDX files start with two zero bytes (or are gzip-compressed IDX, named *.gz without ".csv").
/// The kind of IDX file at `path` from its magic number (0x0000_08_03 images, 0x0000_08_01 labels), if it is one.
fn idx_kind(path: &Path) -> Option<&'static str> {
    let name = path.to_string_lossy().to_lowercase();
    if name.ends_with(".csv") || name.ends_with(".csv.gz") {
        return None;
    }
    let mut head = [0u8; 4];
    let mut f = std::fs::File::open(path).ok()?;
    std::io::Read::read_exact(&mut f, &mut head).ok()?;
    match head {
        [0, 0, 8, 3] => Some("images"),
        [0, 0, 8, 1] => Some("labels"),
        _ => None,
    }
}

fn is_idx(path: &Path) -> bool {
    idx_kind(path).is_some()
}

fn parse_widths(s: &str) -> Result<Vec<usize>> {
    s.split(',')
        .map(|w| {
            w.trim().parse::<usize>().map_err(|_| {
                Error::Invalid(format!("--layers: '{}' is not a width (expected e.g. 64,128,10)", w.trim()))
            })
        })
        .collect()
}

fn optimizer(args: &TrainArgs) -> Result<(OptimConfig, f64)> {
    let kind = match args.optimizer.to_ascii_lowercase().as_str() {
        "sgd" => OptimizerKind::Sgd,
        "momentum" => OptimizerKind::Momentum { momentum: args.momentum },
        "adam" => OptimizerKind::Adam { beta1: args.beta1, beta2: args.beta2, eps: args.eps },
        other => return Err(Error::Invalid(format!("unknown optimizer '{other}' (expected sgd, momentum or adam)"))),
    };
    let lr = args.lr.unwrap_or(match kind {
        OptimizerKind::Sgd => 0.1,
        OptimizerKind::Momentum { .. } => 0.01,
        OptimizerKind::Adam { .. } => 0.001,
    });
    let cfg = OptimConfig { kind, weight_decay: args.weight_decay };
    cfg.validate()?;
    Ok((cfg, lr))
}

fn schedule(args: &TrainArgs) -> Result<Schedule> {
    Ok(match args.schedule.parse::<Schedule>()? {
        Schedule::Step { .. } => Schedule::Step { step_size: args.lr_step, gamma: args.lr_gamma },
        Schedule::Cosine { .. } => Schedule::Cosine { min_lr: args.lr_min },
        s => s,
    })
}

/// Checks every output path before any work starts, so a bad path never costs a training run.
fn check_outputs(args: &TrainArgs) -> Result<()> {
    let outs = [args.out.as_deref(), args.metrics.as_deref(), args.plot.as_deref()];
    for p in outs.iter().flatten() {
        backprop::fsutil::check_output_path(p)?;
        for input in [
            args.init.as_deref(),
            args.resume.as_deref(),
            Some(Path::new(&args.data.data)),
            args.data.labels.as_deref(),
        ]
        .iter()
        .flatten()
        {
            if same_file(p, input) && Some(*input) != args.resume.as_deref().filter(|r| Some(*r) == args.out.as_deref())
            {
                return Err(Error::Invalid(format!("{} is both an input and an output", p.display())));
            }
        }
    }
    if let Some(p) = &args.plot {
        if p.extension().map(|e| e.to_ascii_lowercase()) != Some("png".into()) {
            return Err(Error::Invalid(format!("--plot {}: the file name must end in .png", p.display())));
        }
    }
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

pub fn train(args: &TrainArgs) -> Result<()> {
    // Every flag is checked before any file is read or any device is opened.
    check_outputs(args)?;
    let (optim_cfg, lr) = optimizer(args)?;
    let test_fraction = args.test_split.unwrap_or(if args.data.data == "xor" { 0.0 } else { 0.2 });
    if !(0.0..1.0).contains(&test_fraction) {
        return Err(Error::Invalid(format!("--test-split must be in [0, 1), got {test_fraction}")));
    }
    let mut cfg = TrainConfig {
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr,
        schedule: schedule(args)?,
        optimizer: optim_cfg,
        shuffle: !args.no_shuffle,
        seed: args.seed,
        verify: args.verify.map(|every| Verify { every, atol: args.verify_atol, rtol: args.verify_rtol }),
    };
    cfg.validate()?;
    backprop::backend::check_clip(args.max_grad_norm)?;
    if let Some(l) = &args.layers {
        parse_widths(l)?;
    }
    let _: Activation = args.activation.parse()?;
    let _: Normalization = args.normalize.parse()?;
    let resumed = match &args.resume {
        Some(p) => Some(checkpoint::load(p)?),
        None => None,
    };
    let classes = resumed.as_ref().and_then(|c| match c.model.task {
        Some(Task::Classification { classes }) => Some(classes),
        _ => None,
    });
    let mut ds = load_data(&args.data, classes, args.seed)?;

    // The network: from the checkpoint when resuming, else from the flags and the data.
    let (spec, params, normalizer, start_epoch, state) = match resumed {
        Some(ck) => {
            let t = ck.training.ok_or_else(|| {
                Error::Invalid(format!(
                    "{} holds no optimizer state to resume from",
                    args.resume.as_deref().unwrap_or(Path::new("")).display()
                ))
            })?;
            if t.optimizer != optim_cfg {
                eprintln!(
                    "note: resuming with the checkpoint's optimizer ({}), not the flags'",
                    t.optimizer.kind.name()
                );
            }
            if let Some(l) = &args.layers {
                if parse_widths(l)? != ck.model.spec.sizes() {
                    return Err(Error::Invalid(format!(
                        "--layers {l} does not match the checkpoint's {:?}",
                        ck.model.spec.sizes()
                    )));
                }
            }
            let norm = match ck.model.normalizer {
                Some(n) => NormChoice::Fitted(n),
                None => NormChoice::Fit(Normalization::None),
            };
            (ck.model.spec, ck.model.params, norm, t.epoch, Some((t.optimizer, t.state)))
        }
        None => {
            let task = ds.task;
            let sizes = match &args.layers {
                Some(l) => parse_widths(l)?,
                None => vec![ds.features(), 64, ds.target_width()],
            };
            let hidden: Activation = args.activation.parse()?;
            let classify = matches!(task, Task::Classification { .. });
            let output: Output = match &args.output {
                Some(o) => o.parse()?,
                None if classify => Output::Softmax,
                None => Output::Identity,
            };
            let loss: Loss = match &args.loss {
                Some(l) => l.parse()?,
                None if output == Output::Softmax => Loss::CrossEntropy,
                None => Loss::Mse,
            };
            let spec = MlpSpec::with_output(sizes, hidden, output, loss)?;
            let params = match &args.init {
                Some(p) => checkpoint::load_init(p, &spec)?,
                None => Params::init(&spec, args.seed),
            };
            let kind: Normalization = args.normalize.parse()?;
            (spec, params, NormChoice::Fit(kind), 0, None)
        }
    };
    // Every data set must fit the network before anything runs.
    train::check_data(&spec, &ds)?;
    if start_epoch >= args.epochs {
        return Err(Error::Invalid(format!(
            "the checkpoint has already trained {start_epoch} epochs; ask for more with --epochs"
        )));
    }

    let (mut train_set, mut test_set) = data::split(&ds, test_fraction, args.seed)?;
    let normalizer = match normalizer {
        NormChoice::Fitted(n) => n,
        NormChoice::Fit(kind) => Normalizer::fit(kind, &train_set.x),
    };
    normalizer.apply(&mut train_set.x)?;
    if let Some(t) = test_set.as_mut() {
        normalizer.apply(&mut t.x)?;
    }
    ds.x = ndarray::Array2::zeros((0, 0)); // the split holds the rows now

    let (mut backend, backend_line) = open_backend(&args.device, spec.clone(), &params)?;
    let (optim_cfg, restored) = match state {
        Some((cfg, s)) => (cfg, Some(s)),
        None => (optim_cfg, None),
    };
    backend.set_optimizer(optim_cfg)?;
    backend.set_grad_clip(args.max_grad_norm)?;
    if let Some(s) = &restored {
        backend.set_optimizer_state(s)?;
    }
    let sizes: Vec<String> = spec.sizes().iter().map(|s| s.to_string()).collect();
    let title = format!(
        "{}, {}, {} {}",
        short_name(&args.data.data),
        sizes.join("-"),
        optim_cfg.kind.name(),
        spec.loss().name()
    );
    if !args.quiet {
        eprintln!(
            "backend: {backend_line}\ndata: {} ({} train rows{}, {} features, {}), network {} {}/{} {}, {} lr {} batch {}",
            short_name(&args.data.data),
            train_set.len(),
            test_set.as_ref().map(|t| format!(", {} test rows", t.len())).unwrap_or_default(),
            train_set.features(),
            task_name(&train_set.task),
            sizes.join("-"),
            args.activation,
            spec.output().name(),
            spec.loss().name(),
            optim_cfg.kind.name(),
            lr,
            args.batch_size
        );
    }

    cfg.optimizer = optim_cfg;
    let mut observer = Saver {
        progress: Progress::new(args.quiet),
        args,
        title,
        model: Model {
            spec: spec.clone(),
            params: params.clone(),
            normalizer: Some(normalizer.clone()),
            task: Some(train_set.task),
        },
        seed: args.seed,
        start_epoch,
    };
    let result = train::train(backend.as_mut(), &train_set, test_set.as_ref(), &cfg, start_epoch, &mut observer);
    observer.progress.finish();
    let metrics = result?;

    let last = metrics.last();
    if args.json {
        let out = json!({
            "backend": backend.name(),
            "sizes": spec.sizes(),
            "epochs": metrics.len() + start_epoch,
            "train_loss": last.map(|m| m.train_loss),
            "test_loss": last.and_then(|m| m.test_loss),
            "test_accuracy": last.and_then(|m| m.test_accuracy),
            "seconds": last.map(|m| m.seconds),
            "out": args.out.as_ref().map(|p| p.display().to_string()),
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else if let Some(m) = last {
        let acc = m.test_accuracy.map(|a| format!(", held-out accuracy {:.2}%", 100.0 * a)).unwrap_or_default();
        let test = m.test_loss.map(|l| format!(", test loss {l:.5}")).unwrap_or_default();
        println!("trained {} epochs in {:.2}s: train loss {:.5}{test}{acc}", m.epoch, m.seconds, m.train_loss);
        if let Some(p) = &args.out {
            println!("model saved to {}", p.display());
        }
    }
    Ok(())
}

/// Loads a checkpoint and a data set for it, normalised as in training.
fn model_and_data(model: &Path, args: &DataArgs, predict_only: bool) -> Result<(Model, Dataset)> {
    let ck = checkpoint::load(model)?;
    let m = ck.model;
    let mut ds =
        if predict_only && args.labels.is_none() && Path::new(&args.data).is_file() && !is_idx(Path::new(&args.data)) {
            data::load_csv_features(Path::new(&args.data), m.spec.input_width())?
        } else {
            let classes = match m.task {
                Some(Task::Classification { classes }) => Some(classes),
                _ => None,
            };
            let ds = load_data(args, classes, 42)?;
            train::check_data(&m.spec, &ds)?;
            ds
        };
    if ds.features() != m.spec.input_width() {
        return Err(Error::Invalid(format!(
            "{} has {} feature columns; the model takes {}",
            ds.name,
            ds.features(),
            m.spec.input_width()
        )));
    }
    if let Some(n) = &m.normalizer {
        n.apply(&mut ds.x)?;
    }
    Ok((m, ds))
}

fn open_model(device: &DeviceArgs, m: &Model) -> Result<Box<dyn Backend>> {
    open_backend(device, m.spec.clone(), &m.params).map(|(b, _)| b)
}

pub fn eval(model: &Path, args: &DataArgs, batch: usize, as_json: bool, device: &DeviceArgs) -> Result<()> {
    if batch == 0 {
        return Err(Error::Invalid("--batch-size must be at least 1".into()));
    }
    let (m, ds) = model_and_data(model, args, false)?;
    let mut backend = open_model(device, &m)?;
    let e = train::evaluate(backend.as_mut(), &ds, batch)?;
    if as_json {
        let out = json!({
            "model": model.display().to_string(),
            "data": ds.name,
            "rows": ds.len(),
            "backend": backend.name(),
            "loss": e.loss,
            "accuracy": e.accuracy,
            "confusion": e.confusion,
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(());
    }
    println!(
        "{} on {} ({} rows, {}): {} loss {:.6}",
        model.display(),
        ds.name,
        ds.len(),
        backend.name(),
        m.spec.loss().name(),
        e.loss
    );
    if let Some(a) = e.accuracy {
        println!("accuracy {:.2}%", 100.0 * a);
    }
    if let Some(c) = &e.confusion {
        println!("confusion matrix (rows: true class, columns: predicted class):");
        let w = c.iter().flatten().map(|v| v.to_string().len()).max().unwrap_or(1).max(2);
        let header: Vec<String> = (0..c.len()).map(|j| format!("{j:>w$}")).collect();
        println!("{:>5} {}", "", header.join(" "));
        for (i, row) in c.iter().enumerate() {
            let cells: Vec<String> = row.iter().map(|v| format!("{v:>w$}")).collect();
            println!("{i:>5} {}", cells.join(" "));
        }
    }
    Ok(())
}

pub fn predict(model: &Path, args: &DataArgs, out: &Path, batch: usize, device: &DeviceArgs) -> Result<()> {
    if batch == 0 {
        return Err(Error::Invalid("--batch-size must be at least 1".into()));
    }
    backprop::fsutil::check_output_path(out)?;
    for input in [Some(Path::new(&args.data)), args.labels.as_deref(), Some(model)].into_iter().flatten() {
        if same_file(out, input) {
            return Err(Error::Invalid(format!("{} is both an input and the output", out.display())));
        }
    }
    let (m, ds) = model_and_data(model, args, true)?;
    let mut backend = open_model(device, &m)?;
    let outputs = train::predict(backend.as_mut(), ds.x.view(), batch)?;
    let classify = matches!(m.task, Some(Task::Classification { .. }));
    let mut csv = String::new();
    let cols: Vec<String> = (0..outputs.ncols()).map(|j| format!("output_{j}")).collect();
    if classify {
        csv += &format!("predicted,{}\n", cols.join(","));
    } else {
        csv += &format!("{}\n", cols.join(","));
    }
    let classes = train::argmax_rows(&outputs);
    for (row, class) in outputs.outer_iter().zip(classes) {
        let vals: Vec<String> = row.iter().map(|v| v.to_string()).collect();
        if classify {
            csv += &format!("{class},{}\n", vals.join(","));
        } else {
            csv += &format!("{}\n", vals.join(","));
        }
    }
    backprop::fsutil::write_atomic(out, csv.as_bytes())?;
    eprintln!("wrote {} predictions to {}", outputs.nrows(), out.display());
    Ok(())
}

pub fn worked(device: &DeviceArgs, as_json: bool) -> Result<()> {
    let (ctx, why) = open_gpu(device, true)?;
    if ctx.is_none() && device.backend == BackendChoice::Auto {
        eprintln!("note: {why}; running on the CPU only");
    }
    let rows = match &ctx {
        Some(ctx) => {
            let (spec, params) = worked_example::network()?;
            let mut gpu = GpuMlp::new(ctx.clone(), spec, &params.to_f32())?;
            worked_example::run(Some(&mut gpu as &mut dyn Backend))?
        }
        None => worked_example::run(None)?,
    };
    let adapter = ctx.as_ref().map(|c| c.adapter());
    if as_json {
        let out = json!({
            "adapter": adapter.map(|a| json!({"name": a.name, "backend": a.backend, "device_type": a.device_type})),
            "quantities": worked_example::rows_json(&rows),
        });
        println!("{}", serde_json::to_string_pretty(&out).map_err(|e| Error::Invalid(e.to_string()))?);
        return Ok(());
    }
    match adapter {
        Some(a) => println!("GPU: {} ({}, {})", a.name, a.backend, a.device_type),
        None => println!("GPU: none (CPU reference only)"),
    }
    println!(
        "seed network 2-2-1 sigmoid, x = [{}, {}], y = {}, lr = {}, MSE; one SGD step\n",
        worked_example::INPUT[0],
        worked_example::INPUT[1],
        worked_example::TARGET,
        worked_example::LEARNING_RATE
    );
    println!("{}", worked_example::rows_table(&rows));
    let printed = rows.iter().filter(|r| r.seed.is_some()).count();
    let wrong: Vec<&str> = rows.iter().filter(|r| r.seed_agrees() == Some(false)).map(|r| r.name).collect();
    println!(
        "\nThe seed prints {printed} of these; {} disagree with the exact values within its own rounding: {}.",
        wrong.len(),
        wrong.join(", ")
    );
    if let Some(max) = rows.iter().filter_map(|r| r.max_abs_diff()).reduce(f64::max) {
        println!("Largest |GPU f32 - CPU f64| over all quantities: {max:.2e}");
    }
    Ok(())
}

pub fn devices(as_json: bool) -> Result<()> {
    let all = gpu::list_adapters(&gpu::AdapterRequest::default())?;
    if as_json {
        let v: Vec<_> = all.iter().map(|a| a.to_json()).collect();
        println!("{}", serde_json::to_string_pretty(&v).map_err(|e| Error::Invalid(e.to_string()))?);
        return Ok(());
    }
    if all.is_empty() {
        println!("no adapters found: {}", gpu::adapter::NO_ADAPTER_HINT);
        return Ok(());
    }
    for (i, a) in all.iter().enumerate() {
        let l = &a.limits;
        println!("[{i}] {}", a.name);
        println!("    backend: {}   type: {}   driver: {} {}", a.backend, a.device_type, a.driver, a.driver_info);
        println!("    max_storage_buffer_binding_size:       {} bytes", l.max_storage_buffer_binding_size);
        println!("    max_buffer_size:                       {} bytes", l.max_buffer_size);
        println!("    min_storage_buffer_offset_alignment:   {} bytes", l.min_storage_buffer_offset_alignment);
        println!("    max_compute_workgroup_storage_size:    {} bytes", l.max_compute_workgroup_storage_size);
        println!("    max_compute_invocations_per_workgroup: {}", l.max_compute_invocations_per_workgroup);
        println!("    max_compute_workgroups_per_dimension:  {}", l.max_compute_workgroups_per_dimension);
        println!("    timestamp queries:                     {}", if a.timestamp_queries { "yes" } else { "no" });
    }
    Ok(())
}

pub fn bench(args: &crate::BenchArgs) -> Result<()> {
    use backprop::bench::{self, Budget};
    let named = args.configs.is_some();
    let configs = bench::configs(args.configs.as_deref().unwrap_or("seed,small,mnist,wide"))?;
    let (run_cpu, run_gpu) = match args.backend.as_str() {
        "cpu" => (true, false),
        "gpu" => (false, true),
        "both" => (true, true),
        other => return Err(Error::Invalid(format!("--backend for bench is cpu, gpu or both, not '{other}'"))),
    };
    if args.steps == 0 {
        return Err(Error::Invalid("--steps must be at least 1".into()));
    }
    for (flag, p) in [("--peak-gflops", args.peak_gflops), ("--cpu-peak-gflops", args.cpu_peak_gflops)] {
        if let Some(p) = p.filter(|p| !(*p > 0.0 && p.is_finite())) {
            return Err(Error::Invalid(format!("{flag} must be a positive number of GFLOP/s, got {p}")));
        }
    }
    let ctx = if run_gpu {
        let req = gpu::AdapterRequest { backends: None, name: args.adapter.clone(), max_storage_binding: None };
        Some(Arc::new(GpuContext::new(&req)?))
    } else {
        None
    };
    let software = ctx.as_ref().is_some_and(|c| c.adapter().device_type == "cpu");
    let budget = Budget { warmup: args.warmup, steps: args.steps, max_time: std::time::Duration::from_secs(3) };
    let mut results = Vec::new();
    let mut notes = Vec::new();
    for c in &configs {
        if run_cpu {
            results.push(bench::cpu(c, c.batch, &budget, args.cpu_peak_gflops)?);
        }
        if let Some(ctx) = &ctx {
            let spec = MlpSpec::uniform(c.sizes.to_vec(), Activation::Sigmoid, Loss::Mse)?;
            if software && !named && spec.step_flops(c.batch) > 5e9 {
                notes.push(format!(
                    "gpu skipped {}: {} is a software renderer ({:.0} GFLOP per step); name it in --configs to run it",
                    c.name,
                    ctx.adapter().name,
                    spec.step_flops(c.batch) / 1e9
                ));
                continue;
            }
            results.push(bench::gpu(ctx, c, c.batch, &budget, args.peak_gflops)?);
        }
    }
    let crossover = match (&ctx, run_cpu && !args.no_crossover) {
        (Some(ctx), true) => {
            let mnist = bench::STANDARD[2];
            let batches: Vec<usize> =
                (0..).map(|k| 1usize << k).take_while(|&b| b <= args.crossover_max.max(1)).collect();
            let quick = Budget { warmup: 2, steps: 10, max_time: std::time::Duration::from_secs(1) };
            Some(bench::crossover(ctx, &mnist, &batches, &quick)?)
        }
        _ => None,
    };

    if args.json {
        let out = json!({
            "results": results.iter().map(|r| r.to_json()).collect::<Vec<_>>(),
            "crossover": crossover.as_ref().map(|c| json!({
                "config": c.config,
                "first_gpu_win": c.first_gpu_win,
                "points": c.points.iter().map(|(b, cpu, gpu)| json!({"batch": b, "cpu_ms": cpu, "gpu_ms": gpu})).collect::<Vec<_>>(),
            })),
            "notes": notes,
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(());
    }
    println!(
        "{:<6} {:<4} {:>5} {:>6} {:>11} {:>9} {:>6}  {:<28} {:>14} {:>8}  device",
        "config",
        "back",
        "batch",
        "steps",
        "ms/step",
        "GFLOP/s",
        "%peak",
        "upload / kernels / readback ms",
        "train ms/step",
        "launches"
    );
    for r in &results {
        let peak = r.peak_fraction.map(|p| format!("{:.1}", 100.0 * p)).unwrap_or_else(|| "-".into());
        let split = r
            .split
            .map(|s| format!("{:.3} / {:.3} ({}) / {:.3}", s.upload_ms, s.kernel_ms, s.kernel_timer, s.readback_ms))
            .unwrap_or_else(|| "-".into());
        let train = match (r.train_ms_per_step, r.train_group) {
            (Some(t), Some(k)) => format!("{t:.4} ({k})"),
            _ => "-".into(),
        };
        let launches = r.dispatches_per_step.map_or_else(|| "-".into(), |n| n.to_string());
        println!(
            "{:<6} {:<4} {:>5} {:>6} {:>11.4} {:>9.2} {:>6}  {:<28} {:>14} {:>8}  {}",
            r.config, r.backend, r.batch, r.steps, r.ms_per_step, r.gflops, peak, split, train, launches, r.adapter
        );
    }
    println!(
        "ms/step: one step at a time, waiting for each; train ms/step: steps as `train` runs them (data resident, \
         (N) steps a group, one read-back per group); launches: GPU kernels per such step"
    );
    for n in &notes {
        println!("note: {n}");
    }
    if let Some(c) = crossover {
        let pts: Vec<String> = c.points.iter().map(|(b, cpu, gpu)| format!("{b}: {cpu:.3}/{gpu:.3}")).collect();
        println!("crossover ({} network, batch: cpu/gpu ms): {}", c.config, pts.join(", "));
        match c.first_gpu_win {
            Some(b) => println!("the GPU step beats the CPU step from batch {b}"),
            None => println!(
                "the GPU step did not beat the CPU step at any batch up to {}",
                c.points.last().map(|p| p.0).unwrap_or(0)
            ),
        }
    }
    Ok(())
}
