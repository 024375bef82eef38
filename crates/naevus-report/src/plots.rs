//! The report's charts, drawn with plotters into memory and encoded as PNG.
//!
//! Text uses DejaVu Sans, embedded in the binary (assets/DejaVuSans.ttf, licence beside
//! it), so drawing needs no system fonts.

use std::error::Error;
use std::sync::OnceLock;

use naevus_metrics::{Confusion, ReliabilityBin, RocPoint};
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::ReportError;
use crate::run_dir::FoldHistory;

const FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
pub(crate) const FONT: &str = "sans-serif";

/// Size of the single-panel charts.
pub const CHART_SIZE: (u32, u32) = (800, 600);
/// Size of the two-panel training chart.
pub const TRAINING_SIZE: (u32, u32) = (1200, 500);

/// Line colours, one per fold (matplotlib's "tab10").
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
const GREY: RGBColor = RGBColor(170, 170, 170);

type DrawResult = Result<(), Box<dyn Error>>;
type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

pub(crate) fn register_font() -> Result<(), ReportError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).is_ok());
    if ok { Ok(()) } else { Err(ReportError::Plot { chart: "any chart".into(), message: "the embedded DejaVu Sans font does not load".into() }) }
}

/// A chart over [0, 1] x [0, 1] with the report's caption, margins, grid and axis labels.
fn unit_square_chart<'a, 'b>(
    root: &'a Area<'b>,
    title: &str,
    x_desc: &str,
    y_desc: &str,
) -> Result<ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>, Box<dyn Error>> {
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 26))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..1f64, 0f64..1.001f64)?;
    chart.configure_mesh().x_desc(x_desc).y_desc(y_desc).label_style((FONT, 15)).axis_desc_style((FONT, 17)).draw()?;
    Ok(chart)
}

/// Draws with `draw` on a white `size` canvas and returns the PNG bytes.
fn render<F>(chart: &str, size: (u32, u32), draw: F) -> Result<Vec<u8>, ReportError>
where
    F: FnOnce(&Area) -> DrawResult,
{
    register_font()?;
    let fail = |message: String| ReportError::Plot { chart: chart.to_string(), message };
    let mut pixels = vec![255u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
        draw(&root).map_err(|e| fail(e.to_string()))?;
        root.present().map_err(|e| fail(e.to_string()))?;
    }
    let image = image::RgbImage::from_raw(size.0, size.1, pixels).ok_or_else(|| fail("pixel buffer of the wrong size".into()))?;
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| fail(format!("encoding PNG: {e}")))?;
    Ok(png)
}

fn centered(size: u32, color: &RGBColor) -> TextStyle<'_> {
    TextStyle::from((FONT, size).into_font()).color(color).pos(Pos::new(HPos::Center, VPos::Center))
}

/// A marked point on a curve, with its legend text.
pub struct Marker {
    pub label: String,
    pub x: f64,
    pub y: f64,
}

/// ROC curve with the chance diagonal and marked operating points; AUC in the title.
pub fn roc_chart(curve: &[RocPoint], auc: f64, markers: &[Marker]) -> Result<Vec<u8>, ReportError> {
    render("roc.png", CHART_SIZE, |root| {
        let mut chart = unit_square_chart(root, &format!("ROC curve (AUC {auc:.4})"), "false positive rate (1 - specificity)", "true positive rate (sensitivity)")?;
        chart.draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], GREY.stroke_width(1)))?;
        chart
            .draw_series(LineSeries::new(curve.iter().map(|p| (p.fpr, p.tpr)), COLORS[0].stroke_width(3)))?
            .label("ROC curve")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], COLORS[0].stroke_width(3)));
        for (i, m) in markers.iter().enumerate() {
            let color = COLORS[(i + 1) % COLORS.len()];
            chart
                .draw_series(std::iter::once(Circle::new((m.x, m.y), 7, color.filled())))?
                .label(m.label.clone())
                .legend(move |(x, y)| Circle::new((x + 10, y), 6, color.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .label_font((FONT, 15))
            .draw()?;
        Ok(())
    })
}

/// Precision-recall curve (one vertex per threshold) with the prevalence line; AP in the title.
pub fn pr_chart(curve: &[RocPoint], positives: usize, negatives: usize, ap: f64) -> Result<Vec<u8>, ReportError> {
    let (p, n) = (positives as f64, negatives as f64);
    // (recall, precision) at each threshold, in increasing recall.
    let mut vertices: Vec<(f64, f64)> = Vec::with_capacity(curve.len());
    for pt in curve.iter().skip(1) {
        let (tp, fp) = (pt.tpr * p, pt.fpr * n);
        if tp + fp > 0.0 {
            vertices.push((pt.tpr, tp / (tp + fp)));
        }
    }
    // Steps: precision P_k held over recall (R_{k-1}, R_k], so the area under the drawn
    // curve is the average precision.
    let mut points: Vec<(f64, f64)> = Vec::with_capacity(2 * vertices.len() + 1);
    let mut previous_recall = 0.0;
    for &(recall, precision) in &vertices {
        points.push((previous_recall, precision));
        points.push((recall, precision));
        previous_recall = recall;
    }
    let prevalence = p / (p + n);
    render("pr.png", CHART_SIZE, |root| {
        let mut chart = unit_square_chart(root, &format!("Precision-recall (AP {ap:.4})"), "recall (sensitivity)", "precision")?;
        chart
            .draw_series(LineSeries::new([(0.0, prevalence), (1.0, prevalence)], GREY.stroke_width(1)))?
            .label(format!("prevalence {prevalence:.3}"))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], GREY.stroke_width(1)));
        chart
            .draw_series(LineSeries::new(points, COLORS[0].stroke_width(3)))?
            .label("precision-recall (steps)")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], COLORS[0].stroke_width(3)));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .label_font((FONT, 15))
            .draw()?;
        Ok(())
    })
}

/// Reliability diagram: fraction of melanomas against mean predicted probability per bin,
/// with each bin's image count; ECE in the title. `bins` is `None` when the scores are not
/// probabilities.
pub fn reliability_chart(bins: Option<&[ReliabilityBin]>, ece: Option<f64>) -> Result<Vec<u8>, ReportError> {
    let title = match ece {
        Some(e) => format!("Reliability diagram (ECE {e:.4}, 10 bins)"),
        None => "Reliability diagram: scores are not probabilities".to_string(),
    };
    render("reliability.png", CHART_SIZE, |root| {
        let mut chart = unit_square_chart(root, &title, "mean predicted probability", "observed fraction of melanoma")?;
        chart
            .draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], GREY.stroke_width(1)))?
            .label("perfect calibration")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], GREY.stroke_width(1)));
        let Some(bins) = bins else {
            return Ok(());
        };
        let total: usize = bins.iter().map(|b| b.count).sum();
        // Share of images per bin as light bars (scaled to the full height).
        chart
            .draw_series(bins.iter().filter(|b| b.count > 0).map(|b| {
                let h = b.count as f64 / total.max(1) as f64;
                Rectangle::new([(b.lower + 0.01, 0.0), (b.upper - 0.01, h)], COLORS[1].mix(0.25).filled())
            }))?
            .label("share of images per bin")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], COLORS[1].mix(0.25).filled()));
        let points: Vec<(f64, f64)> = bins.iter().filter_map(|b| Some((b.mean_prob?, b.frac_pos?))).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), COLORS[0].stroke_width(3)))?
            .label("model")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], COLORS[0].stroke_width(3)));
        chart.draw_series(points.iter().map(|&(x, y)| Circle::new((x, y), 5, COLORS[0].filled())))?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .label_font((FONT, 15))
            .draw()?;
        Ok(())
    })
}

/// The 2x2 confusion matrix at `threshold`, counts in the cells.
pub fn confusion_chart(c: &Confusion, threshold: f64) -> Result<Vec<u8>, ReportError> {
    render("confusion.png", CHART_SIZE, |root| {
        let (w, h) = root.dim_in_pixel();
        let (w, h) = (w as i32, h as i32);
        root.draw(&Text::new(format!("Confusion matrix at threshold {threshold}"), (w / 2, 30), centered(26, &BLACK)))?;
        let (left, top) = (200, 130);
        let cell_w = (w - left - 40) / 2;
        let cell_h = (h - top - 40) / 2;
        root.draw(&Text::new("predicted", (left + cell_w, 70), centered(18, &BLACK)))?;
        for (col, name) in ["melanoma", "benign"].iter().enumerate() {
            root.draw(&Text::new(*name, (left + cell_w * col as i32 + cell_w / 2, 105), centered(18, &BLACK)))?;
        }
        for (row, name) in ["actual melanoma", "actual benign"].iter().enumerate() {
            root.draw(&Text::new(*name, (left / 2, top + cell_h * row as i32 + cell_h / 2), centered(18, &BLACK)))?;
        }
        let cells = [[(c.tp, "true positives"), (c.fn_, "false negatives")], [(c.fp, "false positives"), (c.tn, "true negatives")]];
        let largest = cells.iter().flatten().map(|(n, _)| *n).max().unwrap_or(0).max(1);
        for (row, line) in cells.iter().enumerate() {
            for (col, (count, name)) in line.iter().enumerate() {
                let x0 = left + cell_w * col as i32;
                let y0 = top + cell_h * row as i32;
                let shade = *count as f64 / largest as f64;
                let fill = RGBColor(
                    (255.0 - shade * (255.0 - 31.0)) as u8,
                    (255.0 - shade * (255.0 - 119.0)) as u8,
                    (255.0 - shade * (255.0 - 180.0)) as u8,
                );
                root.draw(&Rectangle::new([(x0, y0), (x0 + cell_w, y0 + cell_h)], fill.filled()))?;
                root.draw(&Rectangle::new([(x0, y0), (x0 + cell_w, y0 + cell_h)], BLACK.stroke_width(1)))?;
                let ink = if shade > 0.55 { WHITE } else { BLACK };
                root.draw(&Text::new(count.to_string(), (x0 + cell_w / 2, y0 + cell_h / 2 - 12), centered(40, &ink)))?;
                root.draw(&Text::new(*name, (x0 + cell_w / 2, y0 + cell_h / 2 + 28), centered(16, &ink)))?;
            }
        }
        Ok(())
    })
}

/// Range `(lo, hi)` padded a little, never empty.
fn padded(values: impl Iterator<Item = f64>, floor: Option<f64>, ceil: Option<f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.08).max(0.01);
    let (mut lo, mut hi) = (lo - pad, hi + pad);
    if let Some(f) = floor {
        lo = lo.max(f);
    }
    if let Some(c) = ceil {
        hi = hi.min(c);
    }
    if hi <= lo { (lo, lo + 1.0) } else { (lo, hi) }
}

/// Epoch tick labels: whole epochs only.
fn epoch_label(x: &f64) -> String {
    if (x - x.round()).abs() < 1e-6 { format!("{x:.0}") } else { String::new() }
}

/// Training (solid) and validation (dashed) loss, and validation AUC (dashed: of the weight
/// average, for runs with `ema_decay`), per epoch; one colour per fold.
pub fn training_chart(folds: &[FoldHistory]) -> Result<Vec<u8>, ReportError> {
    let max_epoch = folds.iter().flat_map(|f| f.epochs.iter().map(|e| e.epoch)).max().unwrap_or(1).max(1);
    let (x_lo, x_hi) = if max_epoch <= 1 { (0.5, 1.5) } else { (0.8, max_epoch as f64 + 0.2) };
    let losses = folds.iter().flat_map(|f| f.epochs.iter().flat_map(|e| [e.train_loss, e.val_loss])).flatten();
    let (loss_lo, loss_hi) = padded(losses, Some(0.0), None);
    let aucs = folds.iter().flat_map(|f| f.epochs.iter().flat_map(|e| [e.val_auc, e.ema_val_auc])).flatten();
    let with_average = folds.iter().any(|f| f.epochs.iter().any(|e| e.ema_val_auc.is_some()));
    let (auc_lo, auc_hi) = padded(aucs, Some(0.0), Some(1.0));
    render("training.png", TRAINING_SIZE, |root| {
        let (w, _) = root.dim_in_pixel();
        let (left, right) = root.split_horizontally(w / 2);
        let mut chart = ChartBuilder::on(&left)
            .caption("Loss per epoch (solid: train, dashed: validation)", (FONT, 20))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(x_lo..x_hi, loss_lo..loss_hi)?;
        chart.configure_mesh().x_label_formatter(&epoch_label).x_desc("epoch").y_desc("loss").label_style((FONT, 14)).axis_desc_style((FONT, 16)).draw()?;
        for (i, fold) in folds.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let train: Vec<(f64, f64)> = fold.epochs.iter().filter_map(|e| Some((e.epoch as f64, e.train_loss?))).collect();
            let val: Vec<(f64, f64)> = fold.epochs.iter().filter_map(|e| Some((e.epoch as f64, e.val_loss?))).collect();
            chart
                .draw_series(LineSeries::new(train.clone(), color.stroke_width(2)))?
                .label(format!("{} train", fold.name))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
            chart.draw_series(train.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
            chart
                .draw_series(DashedLineSeries::new(val.clone(), 6, 4, color.stroke_width(2)))?
                .label(format!("{} validation", fold.name))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 8, y)], color.stroke_width(2)));
            chart.draw_series(val.iter().map(|&p| TriangleMarker::new(p, 4, color.filled())))?;
        }
        chart.configure_series_labels().position(SeriesLabelPosition::UpperRight).background_style(WHITE.mix(0.9)).border_style(BLACK).label_font((FONT, 13)).draw()?;

        let mut chart = ChartBuilder::on(&right)
            .caption(if with_average { "Validation ROC AUC per epoch (dashed: weight average)" } else { "Validation ROC AUC per epoch" }, (FONT, 20))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(x_lo..x_hi, auc_lo..auc_hi)?;
        chart.configure_mesh().x_label_formatter(&epoch_label).x_desc("epoch").y_desc("ROC AUC").label_style((FONT, 14)).axis_desc_style((FONT, 16)).draw()?;
        for (i, fold) in folds.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let auc: Vec<(f64, f64)> = fold.epochs.iter().filter_map(|e| Some((e.epoch as f64, e.val_auc?))).collect();
            chart
                .draw_series(LineSeries::new(auc.clone(), color.stroke_width(2)))?
                .label(fold.name.clone())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
            chart.draw_series(auc.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
            let average: Vec<(f64, f64)> = fold.epochs.iter().filter_map(|e| Some((e.epoch as f64, e.ema_val_auc?))).collect();
            if !average.is_empty() {
                chart
                    .draw_series(DashedLineSeries::new(average.clone(), 6, 4, color.stroke_width(2)))?
                    .label(format!("{} average", fold.name))
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 8, y)], color.stroke_width(2)));
                chart.draw_series(average.iter().map(|&p| TriangleMarker::new(p, 4, color.filled())))?;
            }
        }
        chart.configure_series_labels().position(SeriesLabelPosition::LowerRight).background_style(WHITE.mix(0.9)).border_style(BLACK).label_font((FONT, 13)).draw()?;
        Ok(())
    })
}
