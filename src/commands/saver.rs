//! Progress, plus `train`'s files: the checkpoint, the metrics CSV and the plot, written as `--save-every`
//! says and always after the last epoch. The CSV is written whole once, then grows by appended rows; the
//! plot is redrawn whole. After a failure the CSV and the plot get the epochs that finished, never the
//! checkpoint (the parameters may be what failed). In a data-parallel job, rank 0 alone writes them.

use std::time::{Duration, Instant};

use backprop::distributed::job;
use backprop::report::{self, EpochMetrics};
use backprop::train::{Observer, Run, VerifyReport};
use backprop::{Backend, Result, checkpoint};

use super::outputs::Outputs;
use super::parse::SaveEvery;
use crate::progress::Progress;

/// With `--save-every auto`, the writing may take at most this fraction of the run (1/10).
const AUTO_SHARE: u32 = 10;

pub struct Saver<'a> {
    pub progress: Progress,
    run: &'a Run,
    outputs: Outputs,
    title: String,
    /// Every row: the earlier runs' (when resuming), then this run's.
    history: Vec<EpochMetrics>,
    /// How many rows of `history` come from earlier runs.
    earlier: usize,
    /// Rows of `history` in the metrics file and the plot; `None` until this run first writes them.
    logged: Option<usize>,
    /// The seconds column of the last earlier row, added to this run's.
    seconds_before: f64,
    /// When the run started, and how long its writes took so far.
    started: Instant,
    spent: Duration,
    /// The last epoch written, the rows it wrote and how long that took.
    last_write: Option<(usize, usize, Duration)>,
}

impl<'a> Saver<'a> {
    /// `earlier` are the rows of a resumed run's history, which the files continue.
    pub fn new(progress: Progress, run: &'a Run, outputs: Outputs, earlier: Vec<EpochMetrics>, title: String) -> Self {
        let seconds_before = earlier.last().map_or(0.0, |r| r.seconds);
        let n = earlier.len();
        Saver {
            progress,
            run,
            outputs,
            title,
            history: earlier,
            earlier: n,
            logged: None,
            seconds_before,
            started: Instant::now(),
            spent: Duration::ZERO,
            last_write: None,
        }
    }

    fn due(&self, epoch: usize) -> bool {
        match (self.outputs.every, self.last_write) {
            (SaveEvery::Epochs(n), _) => epoch % n == 0,
            (SaveEvery::Auto, None) => true,
            // The next write is estimated from the last one, in proportion to the rows (the plot and the CSV
            // grow with them); it is due when the writing so far and it stay within the share of the run.
            (SaveEvery::Auto, Some((_, rows, took))) => {
                let next = took.mul_f64(self.history.len() as f64 / rows.max(1) as f64);
                (self.spent + next) * AUTO_SHARE <= self.started.elapsed()
            }
        }
    }

    /// Writes every output for the state after `epoch`.
    fn write(&mut self, backend: &mut dyn Backend, epoch: usize) -> Result<()> {
        if !job::speaks() {
            return Ok(()); // rank 0 of a data-parallel job writes the files
        }
        let start = Instant::now();
        if let Some(path) = &self.outputs.out {
            checkpoint::save(path, &self.run.checkpoint(backend, epoch)?)?;
        }
        self.write_logs()?;
        let took = start.elapsed();
        self.spent += took;
        self.last_write = Some((epoch, self.history.len(), took));
        Ok(())
    }

    /// Brings the metrics CSV and the plot up to date with `history`.
    fn write_logs(&mut self) -> Result<()> {
        if self.history.is_empty() || !job::speaks() {
            return Ok(());
        }
        if let Some(path) = &self.outputs.metrics {
            match self.logged {
                None => report::write_metrics_csv(path, &self.history)?,
                Some(n) => report::append_metrics_csv(path, &self.history[n..])?,
            }
        }
        if let Some(path) = &self.outputs.plot {
            report::plot_png(path, &self.history, &self.title)?;
        }
        self.logged = Some(self.history.len());
        Ok(())
    }

    /// Ends the run: after success, writes whatever the last epoch left unwritten; after a failure, the
    /// logs of the epochs that finished (a failure to write them is noted; the run's error is returned).
    pub fn finish(
        &mut self,
        backend: &mut dyn Backend,
        result: Result<Vec<EpochMetrics>>,
    ) -> Result<Vec<EpochMetrics>> {
        self.progress.finish();
        match result {
            Ok(rows) => {
                let last = self.history.last().map(|r| r.epoch);
                if let Some(epoch) = last.filter(|&e| self.last_write.is_none_or(|(w, _, _)| w != e)) {
                    self.write(backend, epoch)?;
                }
                Ok(rows)
            }
            Err(e) => {
                if self.history.len() > self.earlier && self.logged != Some(self.history.len()) {
                    if let Err(w) = self.write_logs() {
                        eprintln!("note: the metrics of the finished epochs were not written: {w}");
                    }
                }
                Err(e)
            }
        }
    }
}

impl Observer for Saver<'_> {
    fn batch(&mut self, epoch: usize, done: usize, total: usize) {
        self.progress.batch(epoch, done, total)
    }
    fn epoch(&mut self, m: &EpochMetrics, epochs: usize) {
        self.progress.epoch(m, epochs)
    }
    fn verified(&mut self, r: &VerifyReport) {
        self.progress.verified(r)
    }
    fn epoch_end(&mut self, backend: &mut dyn Backend, history: &[EpochMetrics]) -> Result<()> {
        let Some(m) = history.last() else { return Ok(()) };
        self.history.push(EpochMetrics { seconds: self.seconds_before + m.seconds, ..m.clone() });
        if self.due(m.epoch) {
            self.write(backend, m.epoch)?;
        }
        Ok(())
    }
}
