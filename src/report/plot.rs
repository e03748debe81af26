//! The loss/accuracy plot, drawn with plotters into a PNG that also carries its rows as a text chunk, so
//! a resumed run can redraw the whole history. The font is compiled into the binary (DejaVu Sans Mono,
//! `assets/fonts/`), so it needs no system fonts.

use std::io::Read;
use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::layout::{
    LINEAR_LIMIT, Panel, Series, YAxis, choose_y_axis, format_linear_tick, format_log_tick, legend_position,
    tick_decimals,
};
use super::metrics::{metrics_csv, parse_metrics_csv};
use super::{EpochMetrics, png_text};
use crate::error::{Error, Result};
use crate::fsutil::write_atomic_with;

/// The size in pixels (width, height) that [`plot_png`] draws.
pub const DEFAULT_PLOT_SIZE: (u32, u32) = (900, 600);

/// The smallest and largest width or height [`plot_png_sized`] accepts.
pub const PLOT_SIZE_LIMITS: (u32, u32) = (200, 10_000);

/// Draws the loss (and, when logged, test accuracy) per epoch to a PNG of [`DEFAULT_PLOT_SIZE`].
///
/// See [`plot_png_sized`].
pub fn plot_png(path: &Path, rows: &[EpochMetrics], title: &str) -> Result<()> {
    plot_png_sized(path, rows, title, DEFAULT_PLOT_SIZE)
}

/// Draws a PNG of `size` (width, height) pixels, written atomically to `path`.
///
/// The left (or, in a portrait image, top) panel shows the train and, when logged, test loss per
/// epoch, on a log-scale axis when the losses are all positive and span more than two decades. The
/// other panel shows the test accuracy in percent; when no epoch has one, the loss panel takes the
/// whole image. `title` is drawn above both. Non-finite values are left out (the line breaks there);
/// a panel with no finite value at all says so instead of drawing a line.
///
/// Errors: [`Error::Invalid`] if `rows` is empty or `size` is outside [`PLOT_SIZE_LIMITS`]; an
/// [`Error::Io`] naming `path` if the file cannot be drawn or written.
pub fn plot_png_sized(path: &Path, rows: &[EpochMetrics], title: &str, size: (u32, u32)) -> Result<()> {
    if rows.is_empty() {
        return Err(Error::Invalid(format!("{}: no epochs to plot", path.display())));
    }
    let (lo, hi) = PLOT_SIZE_LIMITS;
    if !(lo..=hi).contains(&size.0) || !(lo..=hi).contains(&size.1) {
        return Err(Error::Invalid(format!(
            "{}: plot size {}x{} is outside {lo}..={hi} pixels per side",
            path.display(),
            size.0,
            size.1
        )));
    }
    let font_err = |msg: &str| Error::io(path, std::io::Error::other(msg.to_string()));
    ensure_font().map_err(font_err)?;

    write_atomic_with(path, |tmp| {
        // plotters is not ours: turn any panic inside it into an error rather than a crash.
        let drawn = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| draw_png(tmp, rows, title, size)));
        let cannot = |msg: &str| Error::io(path, std::io::Error::other(format!("cannot draw the plot: {msg}")));
        match drawn {
            Ok(Ok(())) => {}
            Ok(Err(msg)) => return Err(cannot(&msg)),
            Err(_) => return Err(cannot("the plotting library panicked")),
        }
        // The rows go into the PNG too, so that a resumed run can redraw the whole history.
        let png = std::fs::read(tmp).map_err(|e| Error::io(path, e))?;
        let with_rows = png_text::with_text(&png, HISTORY_KEY, &metrics_csv(rows))
            .ok_or_else(|| cannot("the encoder wrote no complete PNG"))?;
        std::fs::write(tmp, with_rows).map_err(|e| Error::io(path, e))
    })
}

/// The rows a plot written by [`plot_png`] was drawn from; `None` for a PNG that does not carry them.
///
/// Errors: [`Error::Io`] if the file cannot be read, [`Error::Data`] if it is not a PNG or its rows do
/// not parse.
pub fn read_plot_history(path: &Path) -> Result<Option<Vec<EpochMetrics>>> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut png = Vec::new();
    f.take(MAX_PLOT_BYTES).read_to_end(&mut png).map_err(|e| Error::io(path, e))?;
    if !png_text::is_png(&png) {
        return Err(Error::data(path, "is not a PNG file"));
    }
    match png_text::text(&png, HISTORY_KEY, MAX_PLOT_BYTES) {
        Some(csv) => parse_metrics_csv(&csv).map(Some).map_err(|m| Error::data(path, format!("its rows: {m}"))),
        None => Ok(None),
    }
}

/// The keyword of the PNG text chunk that holds the rows.
const HISTORY_KEY: &str = "backprop-metrics";
/// The largest plot read back, and the most text inflated from it.
const MAX_PLOT_BYTES: u64 = 256 << 20;

/// The family name the embedded font is registered under with plotters.
const FONT: &str = "backprop-dejavu-sans-mono";
static FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSansMono.ttf");

/// Registers the embedded font with plotters, once per process.
fn ensure_font() -> std::result::Result<(), &'static str> {
    static REGISTERED: OnceLock<std::result::Result<(), &'static str>> = OnceLock::new();
    *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES)
            .map_err(|_| "the embedded font (DejaVu Sans Mono) could not be loaded")
    })
}

const TRAIN_COLOR: RGBColor = RGBColor(31, 119, 180);
const TEST_COLOR: RGBColor = RGBColor(230, 110, 0);
const ACCURACY_COLOR: RGBColor = RGBColor(34, 150, 60);
const GRID_COLOR: RGBColor = RGBColor(225, 225, 225);
const TEXT_COLOR: RGBColor = RGBColor(40, 40, 40);

/// Draw a marker on every point when a series has at most this many (otherwise only on isolated points).
const MARKER_MAX_POINTS: usize = 40;

/// Font sizes, scaled with the image.
#[derive(Clone, Copy)]
struct Sizes {
    title: f64,
    caption: f64,
    desc: f64,
    label: f64,
    legend: f64,
    note: f64,
    line: u32,
    marker: i32,
}

impl Sizes {
    fn for_image((w, h): (u32, u32)) -> Self {
        let s = (f64::from(w) / 900.0).min(f64::from(h) / 600.0).clamp(0.4, 6.0);
        let px = |v: f64| (v * s).max(8.0);
        Sizes {
            title: px(24.0),
            caption: px(18.0),
            desc: px(15.0),
            label: px(13.0),
            legend: px(14.0),
            note: px(16.0),
            line: (2.0 * s).round().max(1.0) as u32,
            marker: (3.0 * s).round().max(2.0) as i32,
        }
    }
}

fn draw_png(tmp: &Path, rows: &[EpochMetrics], title: &str, size: (u32, u32)) -> std::result::Result<(), String> {
    let sizes = Sizes::for_image(size);
    let root = BitMapBackend::new(tmp, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let body = if title.trim().is_empty() {
        root.clone()
    } else {
        let style = TextStyle::from((FONT, sizes.title).into_font()).color(&TEXT_COLOR);
        root.titled(title.trim(), style).map_err(|e| e.to_string())?
    };

    // Epochs on the x axis; clamped so that the axis arithmetic cannot overflow.
    let xs: Vec<i64> = rows.iter().map(|r| r.epoch.min(1_000_000_000_000) as i64).collect();
    let x_lo = xs.iter().copied().min().unwrap_or(0);
    let x_hi = xs.iter().copied().max().unwrap_or(1);
    let x_range = if x_lo == x_hi { (x_lo - 1)..(x_hi + 1) } else { x_lo..x_hi };
    let column = |f: &dyn Fn(&EpochMetrics) -> Option<f64>| -> Vec<(i64, Option<f64>)> {
        xs.iter().zip(rows).map(|(&x, r)| (x, f(r))).collect()
    };

    let mut loss_series =
        vec![Series { label: "train loss", color: TRAIN_COLOR, points: column(&|r| Some(r.train_loss)) }];
    if rows.iter().any(|r| r.test_loss.is_some()) {
        loss_series.push(Series { label: "test loss", color: TEST_COLOR, points: column(&|r| r.test_loss) });
    }
    let loss =
        Panel { caption: "loss", y_desc: "loss", series: loss_series, legend: true, percent: false, allow_log: true };

    if rows.iter().any(|r| r.test_accuracy.is_some()) {
        let accuracy = Panel {
            caption: "test accuracy",
            y_desc: "accuracy (%)",
            series: vec![Series {
                label: "test accuracy",
                color: ACCURACY_COLOR,
                points: column(&|r| r.test_accuracy),
            }],
            legend: false,
            percent: true,
            allow_log: false,
        };
        let (w, h) = body.dim_in_pixel();
        let (a, b) = if w >= h { body.split_horizontally(w / 2) } else { body.split_vertically(h / 2) };
        draw_panel(&a, &loss, x_range.clone(), sizes)?;
        draw_panel(&b, &accuracy, x_range, sizes)?;
    } else {
        draw_panel(&body, &loss, x_range, sizes)?;
    }
    root.present().map_err(|e| e.to_string())
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    x_range: Range<i64>,
    sizes: Sizes,
) -> std::result::Result<(), String> {
    let scale = if panel.percent { 100.0 } else { 1.0 };
    let values: Vec<f64> = panel.series.iter().flat_map(|s| s.finite_values()).map(|v| v * scale).collect();
    let (_, h) = area.dim_in_pixel();
    let y_labels = ((h / 50) as usize).clamp(3, 10);
    match choose_y_axis(&values, panel) {
        YAxis::Linear(r) => {
            // The ticks plotters will draw, to give every label the same, sufficient, number of decimals.
            let ticks = RangedCoordf64::from(r.clone()).key_points(y_labels);
            let decimals = tick_decimals(&ticks, r.end - r.start);
            let fmt = move |v: &f64| format_linear_tick(*v, decimals);
            let clamp = move |v: f64| (v * scale).clamp(-LINEAR_LIMIT, LINEAR_LIMIT);
            let (lo, span) = (r.start, r.end - r.start);
            let fraction = move |v: f64| (v - lo) / span;
            draw_chart(area, panel, x_range, r, y_labels, &fmt, &clamp, &fraction, values.is_empty(), sizes)
        }
        YAxis::Log(r) => {
            let decades = (r.end / r.start).log10();
            let fmt = move |v: &f64| format_log_tick(*v, decades);
            let (lo, hi) = (r.start, r.end);
            let clamp = move |v: f64| (v * scale).clamp(lo, hi);
            let fraction = move |v: f64| (v / lo).ln() / (hi / lo).ln();
            draw_chart(area, panel, x_range, r.log_scale(), y_labels, &fmt, &clamp, &fraction, false, sizes)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn draw_chart<DB, Y>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    x_range: Range<i64>,
    y_spec: Y,
    y_labels: usize,
    y_fmt: &dyn Fn(&f64) -> String,
    map: &dyn Fn(f64) -> f64,
    axis_fraction: &dyn Fn(f64) -> f64,
    no_data: bool,
    sizes: Sizes,
) -> std::result::Result<(), String>
where
    DB: DrawingBackend,
    Y: AsRangedCoord<Value = f64> + Clone,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let font = |size: f64| TextStyle::from((FONT, size).into_font()).color(&TEXT_COLOR);
    let (w, _) = area.dim_in_pixel();
    let margin = (sizes.label * 0.8) as u32;
    // Room for the widest tick label (the font is monospaced: about 0.6 em a character) and the axis name.
    let y_coord: Y::CoordDescType = y_spec.clone().into();
    let widest = y_coord.key_points(y_labels).iter().map(|v| y_fmt(v).chars().count()).max().unwrap_or(1);
    let y_area = sizes.label * (0.62 * widest as f64 + 0.8) + sizes.desc * 1.4;
    let mut chart = ChartBuilder::on(area)
        .caption(panel.caption, font(sizes.caption))
        .margin(margin)
        .margin_right(margin * 2)
        .x_label_area_size((sizes.label * 2.2 + sizes.desc * 1.6) as u32)
        .y_label_area_size(y_area as u32)
        .build_cartesian_2d(x_range.clone(), y_spec)
        .map_err(e)?;
    let x_span = u64::try_from(x_range.end - x_range.start).unwrap_or(1);
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(panel.y_desc)
        .x_labels(((w / 90) as usize).clamp(3, 12).min(x_span as usize + 1))
        .y_labels(y_labels)
        .x_label_formatter(&|x| x.to_string())
        .y_label_formatter(y_fmt)
        .label_style(font(sizes.label))
        .axis_desc_style(font(sizes.desc))
        .bold_line_style(GRID_COLOR)
        .light_line_style(WHITE)
        .axis_style(TEXT_COLOR)
        .draw()
        .map_err(e)?;

    let mut labelled_any = false;
    for series in &panel.series {
        let style = ShapeStyle::from(&series.color).stroke_width(sizes.line);
        let runs = series.runs(map);
        let n_points: usize = runs.iter().map(Vec::len).sum();
        let mut labelled = false;
        for run in &runs {
            let drawn = chart.draw_series(LineSeries::new(run.iter().copied(), style)).map_err(e)?;
            if !labelled && panel.legend {
                labelled = true;
                let len = (sizes.legend * 1.6) as i32;
                drawn.label(series.label).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + len, y)], style));
            }
            if n_points <= MARKER_MAX_POINTS || run.len() == 1 {
                let marker = series.color.filled();
                chart.draw_series(run.iter().map(|&p| Circle::new(p, sizes.marker, marker))).map_err(e)?;
            }
        }
        labelled_any |= labelled;
    }

    if panel.legend && labelled_any {
        chart
            .configure_series_labels()
            .position(legend_position(panel, &x_range, &axis_fraction, map))
            .label_font(font(sizes.legend))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(160, 160, 160))
            .margin((sizes.legend * 0.6) as u32)
            .draw()
            .map_err(e)?;
    }

    if no_data {
        let plot = chart.plotting_area();
        let (px, py) = plot.dim_in_pixel();
        let style = font(sizes.note).pos(Pos::new(HPos::Center, VPos::Center));
        let msg = format!("no finite {} values", panel.y_desc.split(' ').next().unwrap_or("data"));
        plot.strip_coord_spec().draw(&Text::new(msg, ((px / 2) as i32, (py / 2) as i32), style)).map_err(e)?;
    }
    Ok(())
}
