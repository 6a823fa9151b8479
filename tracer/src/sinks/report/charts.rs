//! The HTML report's charts, drawn by plotters into SVG text embedded in the page (the report
//! stays one self-contained file): a latency histogram per figure, device and op, the age
//! distribution of outstanding pins, and outstanding pins over the run.

use plotters::prelude::*;

/// Chart size in pixels.
const SIZE: (u32, u32) = (640, 300);

/// Bars: one labelled count per class, in order.
pub fn bars(title: &str, x_desc: &str, classes: &[(String, u64)]) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        // Drawing into a String cannot fail on I/O; a layout error leaves the chart empty.
        let _ = draw_bars(&root, title, x_desc, classes);
        let _ = root.present();
    }
    svg
}

fn draw_bars(
    root: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    title: &str,
    x_desc: &str,
    classes: &[(String, u64)],
) -> Result<(), Box<dyn std::error::Error>> {
    root.fill(&WHITE)?;
    let top = classes.iter().map(|c| c.1).max().unwrap_or(0).max(1);
    let n = classes.len().max(1) as u32;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d((0u32..n).into_segmented(), 0u64..top + top / 10 + 1)?;
    let label = |v: &SegmentValue<u32>| match v {
        SegmentValue::Exact(i) | SegmentValue::CenterOf(i) => {
            classes.get(*i as usize).map_or(String::new(), |c| c.0.clone())
        }
        SegmentValue::Last => String::new(),
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc(x_desc)
        .y_desc("count")
        .x_labels(classes.len().max(1))
        .x_label_formatter(&label)
        .draw()?;
    chart.draw_series(
        Histogram::vertical(&chart)
            .style(BLUE.filled())
            .margin(3)
            .data(classes.iter().enumerate().map(|(i, c)| (i as u32, c.1))),
    )?;
    Ok(())
}

/// A line of (seconds, value) points.
pub fn line(title: &str, y_desc: &str, points: &[(f64, u64)]) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let _ = draw_line(&root, title, y_desc, points);
        let _ = root.present();
    }
    svg
}

fn draw_line(
    root: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    title: &str,
    y_desc: &str,
    points: &[(f64, u64)],
) -> Result<(), Box<dyn std::error::Error>> {
    root.fill(&WHITE)?;
    let x_end = points.iter().map(|p| p.0).fold(0.0f64, f64::max).max(1e-3);
    let top = points.iter().map(|p| p.1).max().unwrap_or(0).max(1);
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_end * 1.02, 0u64..top + top / 10 + 1)?;
    chart.configure_mesh().x_desc("seconds since the start").y_desc(y_desc).draw()?;
    chart.draw_series(LineSeries::new(points.iter().copied(), BLUE.stroke_width(2)))?;
    chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, BLUE.filled())))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_svg_with_their_labels() {
        let b = bars("latency", "µs", &[("≤ 10".into(), 3), ("≤ 25".into(), 7)]);
        assert!(b.starts_with("<svg"), "{}", &b[..b.len().min(80)]);
        assert!(b.contains("latency") && b.contains("≤ 25"));
        assert!(b.matches("<rect").count() >= 3, "background and two bars");
        let l = line("outstanding", "pages", &[(0.0, 0), (1.5, 40), (3.0, 10)]);
        assert!(l.starts_with("<svg") && l.contains("<polyline"), "{l}");
    }

    #[test]
    fn empty_charts_still_draw() {
        assert!(bars("none", "x", &[]).starts_with("<svg"));
        assert!(line("none", "y", &[]).starts_with("<svg"));
    }
}
