//! Progress for `backprop train`: an indicatif bar when stderr is a terminal, one plain line per epoch
//! otherwise.

use std::io::IsTerminal;
use std::time::Instant;

use backprop::report::EpochMetrics;
use backprop::train::{Observer, VerifyReport};
use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
    epoch_start: Instant,
    last_loss: Option<f64>,
    quiet: bool,
    total: usize,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(0);
            let style =
                ProgressStyle::with_template("{prefix:>9} [{bar:30.cyan/blue}] {pos}/{len} samples  {msg}  ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> ");
            bar.set_style(style);
            bar
        });
        Self { bar, epoch_start: Instant::now(), last_loss: None, quiet, total: 0 }
    }

    fn line(&self, s: &str) {
        match &self.bar {
            Some(b) => b.println(s),
            None => eprintln!("{s}"),
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// One epoch as a line of text.
pub fn epoch_line(m: &EpochMetrics, epochs: usize, samples_per_s: f64) -> String {
    let mut s = format!("epoch {:>3}/{epochs}  train loss {:.5}", m.epoch, m.train_loss);
    if let Some(l) = m.test_loss {
        s += &format!("  test loss {l:.5}");
    }
    if let Some(a) = m.test_accuracy {
        s += &format!("  test acc {:.2}%", 100.0 * a);
    }
    s += &format!("  lr {:.3e}  {samples_per_s:.0} samples/s  {:.2}s", m.lr, m.seconds);
    s
}

impl Observer for Progress {
    fn batch(&mut self, epoch: usize, done: usize, total: usize) {
        self.total = total;
        if let Some(b) = &self.bar {
            if done <= total && b.length() != Some(total as u64) {
                b.set_length(total as u64);
            }
            if b.position() as usize > done {
                b.reset();
                self.epoch_start = Instant::now();
            }
            b.set_prefix(format!("epoch {}", epoch + 1));
            b.set_position(done as u64);
            let rate = done as f64 / self.epoch_start.elapsed().as_secs_f64().max(1e-6);
            let loss = self.last_loss.map(|l| format!("  loss {l:.5}")).unwrap_or_default();
            b.set_message(format!("{rate:.0} samples/s{loss}"));
        }
    }

    fn epoch(&mut self, m: &EpochMetrics, epochs: usize) {
        let elapsed = self.epoch_start.elapsed().as_secs_f64().max(1e-9);
        let samples = self.total as f64;
        let rate = if samples > 0.0 { samples / elapsed } else { f64::NAN };
        self.last_loss = Some(m.train_loss);
        if !self.quiet {
            self.line(&epoch_line(m, epochs, rate));
        }
        if let Some(b) = &self.bar {
            b.reset();
        }
        self.epoch_start = Instant::now();
    }

    fn verified(&mut self, r: &VerifyReport) {
        if self.quiet {
            return;
        }
        let worst = r.tensors.iter().fold(0.0f64, |a, t| a.max(t.worst_ratio));
        let mut s = format!(
            "verify step {}: {} (worst error / tolerance {:.3})",
            r.step,
            if r.passed() { "ok" } else { "FAILED" },
            worst
        );
        for t in &r.tensors {
            s += &format!("\n    {:<20} max abs {:.3e}  max rel {:.3e}", t.name, t.max_abs, t.max_rel);
        }
        self.line(&s);
    }
}
