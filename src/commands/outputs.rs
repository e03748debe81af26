//! The files `train` and `predict` write, checked before anything is read or computed: each one writable,
//! none of them an input, and no two of them the same file. And, when resuming, the history that the
//! metrics CSV or the plot already hold, so that it continues.

use std::path::{Path, PathBuf};

use backprop::fsutil::{check_output_path, is_null_device, is_standard_output, is_stream, same_file};
use backprop::report::{EpochMetrics, read_metrics_csv, read_plot_history};
use backprop::{Error, Result};

use super::args::{DataArgs, TrainArgs};
use super::parse::SaveEvery;

/// `train`'s outputs, checked.
pub struct Outputs {
    pub out: Option<PathBuf>,
    pub metrics: Option<PathBuf>,
    pub plot: Option<PathBuf>,
    pub every: SaveEvery,
}

/// The data files `--data` and `--labels` name (not the bundled sets).
fn data_inputs(data: &DataArgs) -> Vec<(&'static str, &Path)> {
    let mut inputs = vec![];
    if !["digits", "xor", "spirals", "sine"].contains(&data.data.as_str()) {
        inputs.push(("--data", Path::new(&data.data)));
    }
    if let Some(l) = &data.labels {
        inputs.push(("--labels", l.as_path()));
    }
    inputs
}

impl Outputs {
    /// Checks `train`'s output flags. `--out` may be the `--resume` file (a run continued in place).
    pub fn check(args: &TrainArgs) -> Result<Self> {
        let outputs: Vec<(&str, &Path)> = [("--out", &args.out), ("--metrics", &args.metrics), ("--plot", &args.plot)]
            .into_iter()
            .filter_map(|(flag, p)| Some((flag, p.as_deref()?)))
            .collect();
        let mut inputs = data_inputs(&args.data);
        inputs.extend(args.init.as_deref().map(|p| ("--init", p)));
        inputs.extend(args.resume.as_deref().map(|p| ("--resume", p)));
        for (i, &(flag, p)) in outputs.iter().enumerate() {
            check_output_path(p)?;
            if flag != "--metrics" && is_stream(p) && !is_null_device(p) {
                return Err(Error::Invalid(format!(
                    "{flag} {}: a stream, but the {} is written again as training goes, so it must go to a file \
                     (or /dev/null); --metrics and predict --out can go to a stream",
                    p.display(),
                    if flag == "--out" { "checkpoint" } else { "plot" }
                )));
            }
            if args.json && is_standard_output(p) {
                return Err(Error::Invalid(format!(
                    "{flag} {} and --json would both write to standard output",
                    p.display()
                )));
            }
            if is_stream(p) {
                // A pipe, /dev/null or a terminal: written to, never replaced, so it overwrites nothing.
                continue;
            }
            for &(other, q) in &outputs[..i] {
                if same_file(p, q) {
                    return Err(Error::Invalid(format!(
                        "{} is given as both {other} and {flag}: each output needs a file of its own",
                        p.display()
                    )));
                }
            }
            for &(input, q) in &inputs {
                if same_file(p, q) && !(flag == "--out" && input == "--resume") {
                    return Err(Error::Invalid(format!(
                        "{} is both an input and an output ({input} and {flag})",
                        p.display()
                    )));
                }
            }
        }
        if let Some(p) = &args.plot {
            if p.extension().map(|e| e.to_ascii_lowercase()) != Some("png".into()) {
                return Err(Error::Invalid(format!("--plot {}: the file name must end in .png", p.display())));
            }
        }
        Ok(Outputs {
            out: args.out.clone(),
            metrics: args.metrics.clone(),
            plot: args.plot.clone(),
            every: args.save_every,
        })
    }

    /// The rows of the epochs before `start_epoch` that a resumed run's --metrics file (else its --plot)
    /// holds; later rows (written after the checkpoint) are dropped. Empty when neither file exists yet.
    pub fn history(&self, start_epoch: usize) -> Result<Vec<EpochMetrics>> {
        let cannot = |p: &Path, e: Error| {
            Error::Invalid(format!(
                "{e} (resuming continues the history in {}; move it away to start anew)",
                p.display()
            ))
        };
        let rows = match (&self.metrics, &self.plot) {
            (Some(m), _) if m.exists() && !is_stream(m) => read_metrics_csv(m).map_err(|e| cannot(m, e))?,
            (_, Some(p)) if p.exists() && !is_stream(p) => match read_plot_history(p).map_err(|e| cannot(p, e))? {
                Some(rows) => rows,
                None => {
                    eprintln!(
                        "note: {} holds no rows to continue (not drawn by backprop); it will be redrawn",
                        p.display()
                    );
                    Vec::new()
                }
            },
            _ => Vec::new(),
        };
        Ok(rows.into_iter().filter(|r| r.epoch <= start_epoch).collect())
    }
}

/// Checks `predict --out`: writable, and not one of the inputs.
pub fn check_predict_output(out: &Path, model: &Path, data: &DataArgs) -> Result<()> {
    check_output_path(out)?;
    if is_stream(out) {
        return Ok(());
    }
    let mut inputs = data_inputs(data);
    inputs.push(("--model", model));
    match inputs.iter().find(|(_, q)| same_file(out, q)) {
        Some((flag, _)) => {
            Err(Error::Invalid(format!("{} is both an input and the output ({flag} and --out)", out.display())))
        }
        None => Ok(()),
    }
}
