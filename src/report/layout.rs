//! What the plot shows where, apart from drawing it: the series and panels, each panel's y axis (linear
//! or log), the corner the legend goes in, and the tick labels.

use std::ops::Range;

use plotters::prelude::{RGBColor, SeriesLabelPosition};

/// Finite values beyond this are drawn at this value on a linear axis, so that the axis span stays finite.
pub(super) const LINEAR_LIMIT: f64 = 1e300;

/// One line: values per epoch, `None` (or non-finite) where there is none.
pub(super) struct Series {
    pub(super) label: &'static str,
    pub(super) color: RGBColor,
    pub(super) points: Vec<(i64, Option<f64>)>,
}

impl Series {
    pub(super) fn finite_values(&self) -> impl Iterator<Item = f64> + '_ {
        self.points.iter().filter_map(|&(_, v)| v.filter(|v| v.is_finite()))
    }

    /// The runs of consecutive finite points (in row order), each drawn as one unbroken line.
    pub(super) fn runs(&self, map: impl Fn(f64) -> f64) -> Vec<Vec<(i64, f64)>> {
        let mut runs = vec![];
        let mut run = vec![];
        for &(x, v) in &self.points {
            match v.filter(|v| v.is_finite()) {
                Some(v) => run.push((x, map(v))),
                None if !run.is_empty() => runs.push(std::mem::take(&mut run)),
                None => {}
            }
        }
        if !run.is_empty() {
            runs.push(run);
        }
        runs.into_iter().map(thin).collect()
    }
}

/// Runs longer than this many points are thinned to this many pieces.
const PIECES: usize = 1000;

/// A long run thinned for drawing: of each of [`PIECES`] consecutive pieces, its first, lowest, highest
/// and last point, in order, so the line keeps its envelope and its ends (a plot is about 900 pixels wide:
/// more points only cost time, a million of them seconds).
fn thin(run: Vec<(i64, f64)>) -> Vec<(i64, f64)> {
    if run.len() <= 4 * PIECES {
        return run;
    }
    let mut out = Vec::with_capacity(4 * PIECES);
    for piece in run.chunks(run.len().div_ceil(PIECES)) {
        let by_y = |a: &&(i64, f64), b: &&(i64, f64)| a.1.total_cmp(&b.1);
        let (lo, hi) = (piece.iter().min_by(by_y), piece.iter().max_by(by_y));
        let mut keep: Vec<(i64, f64)> = [piece.first(), lo, hi, piece.last()].into_iter().flatten().copied().collect();
        keep.sort_by_key(|p| p.0);
        keep.dedup_by_key(|p| p.0);
        out.extend(keep);
    }
    out
}

pub(super) struct Panel {
    pub(super) caption: &'static str,
    pub(super) y_desc: &'static str,
    pub(super) series: Vec<Series>,
    /// Whether to draw a legend (not for a single series named by the caption). It goes in the
    /// corner with the fewest points.
    pub(super) legend: bool,
    /// The values are fractions, shown in percent on an axis kept within 0..100 where the data allows.
    pub(super) percent: bool,
    /// Log scale allowed (positive values spanning more than two decades).
    pub(super) allow_log: bool,
}

/// The y axis a panel gets from its finite values.
pub(super) enum YAxis {
    Linear(Range<f64>),
    Log(Range<f64>),
}

pub(super) fn choose_y_axis(values: &[f64], panel: &Panel) -> YAxis {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if values.is_empty() {
        return YAxis::Linear(if panel.percent { 0.0..100.0 } else { 0.0..1.0 });
    }
    if panel.allow_log && lo > 0.0 && hi / lo > 100.0 {
        let (ln_lo, ln_hi) = (lo.ln(), hi.ln());
        let pad = 0.05 * (ln_hi - ln_lo);
        let end = (ln_hi + pad).exp().min(f64::MAX);
        // plotters' log axis loops (practically) forever when end / start overflows: keep 300 decades.
        let start = (ln_lo - pad).exp().max(f64::MIN_POSITIVE).max(end * 1e-300);
        return YAxis::Log(start..end);
    }
    let (lo, hi) = (lo.clamp(-LINEAR_LIMIT, LINEAR_LIMIT), hi.clamp(-LINEAR_LIMIT, LINEAR_LIMIT));
    let pad = if hi > lo {
        (hi - lo) * 0.06
    } else if lo != 0.0 {
        lo.abs() * 0.1
    } else {
        1.0
    };
    let (mut start, mut end) = (lo - pad, hi + pad);
    if panel.percent {
        // Keep a percentage axis within 0..100 when the data is.
        if lo >= 0.0 {
            start = start.max(0.0);
        }
        if hi <= 100.0 {
            end = end.min(100.0);
        }
    } else if lo >= 0.0 {
        // A loss is not negative: do not show negative values below it.
        start = start.max(0.0);
    }
    if end <= start {
        // A constant 0 or 100 percent, clipped to nothing above.
        (start, end) = (lo - pad, hi + pad);
    }
    YAxis::Linear(start..end)
}

/// The corner of the plot that the fewest points fall in (the right ones first).
pub(super) fn legend_position(
    panel: &Panel,
    x_range: &Range<i64>,
    axis_fraction: &dyn Fn(f64) -> f64,
    map: &dyn Fn(f64) -> f64,
) -> SeriesLabelPosition {
    let x_span = (x_range.end as f64 - x_range.start as f64).max(1.0);
    let points: Vec<(f64, f64)> = panel
        .series
        .iter()
        .flat_map(|s| s.runs(map).into_iter().flatten())
        .map(|(x, y)| ((x as f64 - x_range.start as f64) / x_span, axis_fraction(y)))
        .collect();
    // (position, x fraction test, y fraction test): a legend covers about 40% of the width, 25% of the height.
    type Corner = (SeriesLabelPosition, fn(f64) -> bool, fn(f64) -> bool);
    let corners: [Corner; 4] = [
        (SeriesLabelPosition::UpperRight, |x| x >= 0.55, |y| y >= 0.7),
        (SeriesLabelPosition::LowerRight, |x| x >= 0.55, |y| y <= 0.3),
        (SeriesLabelPosition::UpperLeft, |x| x <= 0.45, |y| y >= 0.7),
        (SeriesLabelPosition::LowerLeft, |x| x <= 0.45, |y| y <= 0.3),
    ];
    let covered = |(_, in_x, in_y): &Corner| points.iter().filter(|&&(x, y)| in_x(x) && in_y(y)).count();
    // min_by_key keeps the first of equal counts.
    corners.iter().min_by_key(|c| covered(c)).map_or(SeriesLabelPosition::UpperRight, |c| c.0.clone())
}

/// The fewest decimals (up to 8) that write every tick exactly, to a millionth of the axis `span`.
pub(super) fn tick_decimals(ticks: &[f64], span: f64) -> usize {
    let tolerance = (span.abs() * 1e-6).max(f64::MIN_POSITIVE);
    (0..=8)
        .find(|&d| {
            ticks.iter().all(|t| format!("{t:.d$}").parse::<f64>().is_ok_and(|back| (back - t).abs() <= tolerance))
        })
        .unwrap_or(8)
}

/// A linear-axis tick with `decimals` decimals; in exponent form when huge or tiny.
pub(super) fn format_linear_tick(v: f64, decimals: usize) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-4..1e6).contains(&a) {
        return trim_exp(format!("{v:.2e}"));
    }
    format!("{v:.decimals$}")
}

/// A log-axis tick at `d × 10^k`: label only the powers of ten (and 2 and 5 when few decades show).
pub(super) fn format_log_tick(v: f64, decades: f64) -> String {
    if !(v > 0.0 && v.is_finite()) {
        return String::new();
    }
    let exp = v.log10().floor();
    let mantissa = (v / 10f64.powf(exp)).round() as i64;
    let shown = mantissa == 1 || mantissa == 10 || (decades <= 3.5 && (mantissa == 2 || mantissa == 5));
    if !shown {
        return String::new();
    }
    let rounded = format!("{v:.0e}");
    let r: f64 = rounded.parse().unwrap_or(v);
    if (1e-3..1e4).contains(&r) { format!("{r}") } else { rounded }
}

/// `1.50e-7` → `1.5e-7`, `2.00e8` → `2e8`.
fn trim_exp(s: String) -> String {
    match s.split_once('e') {
        Some((m, x)) if m.contains('.') => {
            let m = m.trim_end_matches('0').trim_end_matches('.');
            format!("{m}e{x}")
        }
        _ => s,
    }
}
