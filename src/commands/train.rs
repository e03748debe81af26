//! `backprop train`: outputs checked, data loaded, the flags given to the library's builder, then the run
//! on the device the flags ask for, its files written by the saver, and a summary.

use std::path::Path;

use backprop::checkpoint::{self, Checkpoint};
use backprop::data::Task;
use backprop::distributed::job;
use backprop::report::EpochMetrics;
use backprop::train::{DEFAULT_SEED, Run};
use backprop::{Backend, Result};
use serde_json::json;

use super::args::TrainArgs;
use super::data::load_data;
use super::device::open_device;
use super::outputs::Outputs;
use super::saver::Saver;
use super::{count, json, settings};
use crate::progress::Progress;

pub fn train(args: &TrainArgs) -> Result<()> {
    // Flags were checked by parsing; outputs are checked before any file is read or device opened.
    let outputs = Outputs::check(args)?;
    let resumed = args.resume.as_deref().map(checkpoint::load).transpose()?;
    let classes = resumed.as_ref().and_then(classes_of);
    let seed = args.seed.or(resumed.as_ref().and_then(|c| Some(c.training.as_ref()?.seed))).unwrap_or(DEFAULT_SEED);
    let data = load_data(&args.data, classes, seed, backprop::data::Purpose::Train)?;
    let run = settings::trainer(args, data, resumed)?.prepare()?;
    for note in &run.notes {
        eprintln!("warning: {note}");
    }
    let earlier = if args.resume.is_some() { outputs.history(run.start_epoch)? } else { Vec::new() };
    let (device, device_line) = open_device(&args.device)?;
    let mut backend = run.backend(&device)?;
    if !args.quiet {
        // Under mpirun/srun, with how many ranks and which MPI.
        eprintln!("backend: {device_line}{}\n{}", job::describe(), describe(&run, &args.data.data));
    }
    let out = outputs.out.clone();
    let mut saver = Saver::new(Progress::new(args.quiet), &run, outputs, earlier, title(&run, &args.data.data));
    let result = run.train(backend.as_mut(), &mut saver);
    let rows = saver.finish(backend.as_mut(), result)?;
    summary(args, &run, backend.as_ref(), &rows, out.as_deref())
}

/// The class count a checkpoint was trained for, which the data must keep.
fn classes_of(ck: &Checkpoint) -> Option<usize> {
    match ck.model.task {
        Some(Task::Classification { classes }) => Some(classes),
        _ => None,
    }
}

fn short_name(data: &str) -> String {
    Path::new(data).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| data.to_string())
}

fn sizes(run: &Run) -> String {
    run.model.spec.sizes().iter().map(|s| s.to_string()).collect::<Vec<_>>().join("-")
}

fn title(run: &Run, data: &str) -> String {
    let spec = &run.model.spec;
    format!("{}, {}, {} {}", short_name(data), sizes(run), run.optimizer.kind.name(), spec.loss().name())
}

/// The line that says what trains: the data, the network, the optimizer.
fn describe(run: &Run, data: &str) -> String {
    let (spec, train) = (&run.model.spec, &run.train_set);
    let task = match train.task {
        Task::Classification { classes } => count(classes, "class"),
        Task::Regression { targets } => count(targets, "regression target"),
    };
    let test = run.test_set.as_ref().map(|t| format!(", {} test rows", t.len())).unwrap_or_default();
    let hidden = spec.activations().first().filter(|_| spec.layers() > 1).map_or("-", |a| a.name());
    format!(
        "data: {} ({} train rows{test}, {}, {task}), network {} {hidden}/{} {}, {} lr {} batch {}",
        short_name(data),
        train.len(),
        count(train.features(), "feature"),
        sizes(run),
        spec.output().name(),
        spec.loss().name(),
        run.optimizer.kind.name(),
        run.config.lr,
        run.config.batch_size
    )
}

/// The last line (or JSON object) of a run: epochs trained (of the total, when resumed) and the losses.
fn summary(
    args: &TrainArgs,
    run: &Run,
    backend: &dyn Backend,
    rows: &[EpochMetrics],
    out: Option<&Path>,
) -> Result<()> {
    let Some(m) = rows.last() else { return Ok(()) };
    if args.json {
        let v = json!({
            "backend": backend.name(),
            // The GPU's training step, fused or unfused (as bench's `gpu_path`); null on the CPU.
            "gpu_path": backend.step_path(),
            "sizes": run.model.spec.sizes(),
            "epochs": m.epoch,
            "epochs_this_run": rows.len(),
            "train_loss": m.train_loss,
            "test_loss": m.test_loss,
            "test_accuracy": m.test_accuracy,
            "seconds": m.seconds,
            "out": out.map(|p| p.display().to_string()),
        });
        println!("{}", json::pretty(&v));
        return Ok(());
    }
    let acc = m.test_accuracy.map(|a| format!(", held-out accuracy {:.2}%", 100.0 * a)).unwrap_or_default();
    let test = m.test_loss.map(|l| format!(", test loss {l:.5}")).unwrap_or_default();
    let trained = match run.start_epoch {
        0 => count(m.epoch, "epoch"),
        _ => format!("{} ({} in this run)", count(m.epoch, "epoch"), rows.len()),
    };
    let mut summary = format!("trained {trained} in {:.2}s: train loss {:.5}{test}{acc}\n", m.seconds, m.train_loss);
    if let Some(p) = out {
        summary += &format!("model saved to {}\n", p.display());
    }
    // With the metrics CSV on standard output, the summary goes beside the progress lines instead.
    match args.metrics.as_deref().is_some_and(backprop::fsutil::is_standard_output) {
        true => eprint!("{summary}"),
        false => print!("{summary}"),
    }
    Ok(())
}
