//! `backprop eval` and `backprop predict`: a saved model on a data set, normalised as in training.

use std::path::Path;

use backprop::checkpoint::{self, Model};
use backprop::data::{Dataset, Purpose, Task};
use backprop::train::{self, DEFAULT_SEED, Evaluation};
use backprop::{Error, Result};
use serde_json::json;

use super::args::{DataArgs, DeviceArgs, EvalArgs, PredictArgs};
use super::data::load_data;
use super::device::open_device;
use super::json;
use super::outputs::check_predict_output;

/// Loads a checkpoint and a data set for it, ready for the model: as many classes as it has outputs,
/// normalised as in training. A synthetic set is drawn with `seed`, else the seed the model was trained with.
fn model_and_data(model: &Path, args: &DataArgs, seed: Option<u64>, predict_only: bool) -> Result<(Model, Dataset)> {
    let ck = checkpoint::load(model)?;
    let seed = seed.or(ck.training.as_ref().map(|t| t.seed)).unwrap_or(DEFAULT_SEED);
    let m = ck.model;
    let input_width = m.spec.input_width();
    let purpose = if predict_only { Purpose::Predict { input_width } } else { Purpose::Eval { input_width } };
    let classes = match m.task {
        Some(Task::Classification { classes }) => Some(classes),
        _ => None,
    };
    let mut ds = load_data(args, classes, seed, purpose)?;
    if predict_only {
        // Predictions need only the features: a file's labels or targets, if any, are not checked.
        if ds.features() != input_width {
            return Err(Error::Invalid(format!(
                "{} has {} feature columns; the model takes {input_width}",
                ds.name,
                ds.features()
            )));
        }
        if let Some(n) = &m.normalizer {
            n.apply(&mut ds.x)?;
        }
    } else {
        train::prepare_inputs(&m, &mut ds)?;
    }
    Ok((m, ds))
}

/// A model's error (outputs that are not finite) as one about the file it came from.
fn name_model(path: &Path, e: Error) -> Error {
    match e {
        Error::Model(msg) => Error::data(path, msg),
        e => e,
    }
}

/// A backend on the device `device` asks for, holding `m`.
fn open_model(device: &DeviceArgs, m: &Model) -> Result<Box<dyn backprop::Backend>> {
    open_device(device)?.0.backend(m.spec.clone(), &m.params)
}

pub fn eval(args: &EvalArgs) -> Result<()> {
    let (m, ds) = model_and_data(&args.model, &args.data, args.seed, false)?;
    let mut backend = open_model(&args.device, &m)?;
    let e = train::evaluate(backend.as_mut(), &ds, args.batch_size).map_err(|e| name_model(&args.model, e))?;
    if args.json {
        let v = json!({
            "model": args.model.display().to_string(),
            "data": ds.name,
            "rows": ds.len(),
            "backend": backend.name(),
            "loss": e.loss,
            "accuracy": e.accuracy,
            "confusion": e.confusion,
        });
        println!("{}", json::pretty(&v));
        return Ok(());
    }
    println!(
        "{} on {} ({} rows, {}): {} loss {:.6}",
        args.model.display(),
        ds.name,
        ds.len(),
        backend.name(),
        m.spec.loss().name(),
        e.loss
    );
    print_classes(&e);
    Ok(())
}

/// The accuracy and the confusion matrix, for a classifier.
fn print_classes(e: &Evaluation) {
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
}

pub fn predict(args: &PredictArgs) -> Result<()> {
    check_predict_output(&args.out, &args.model, &args.data)?;
    let (m, ds) = model_and_data(&args.model, &args.data, args.seed, true)?;
    let mut backend = open_model(&args.device, &m)?;
    let outputs =
        train::predict(backend.as_mut(), ds.x.view(), args.batch_size).map_err(|e| name_model(&args.model, e))?;
    let classify = matches!(m.task, Some(Task::Classification { .. }));
    let cols: Vec<String> = (0..outputs.ncols()).map(|j| format!("output_{j}")).collect();
    let mut csv = if classify { format!("predicted,{}\n", cols.join(",")) } else { format!("{}\n", cols.join(",")) };
    let classes = train::argmax_rows(&outputs);
    for (row, class) in outputs.outer_iter().zip(classes) {
        let vals: Vec<String> = row.iter().map(|v| v.to_string()).collect();
        if classify {
            csv += &format!("{class},");
        }
        csv += &vals.join(",");
        csv.push('\n');
    }
    backprop::fsutil::write_atomic(&args.out, csv.as_bytes())?;
    eprintln!("wrote {} to {}", super::count(outputs.nrows(), "prediction"), args.out.display());
    Ok(())
}
