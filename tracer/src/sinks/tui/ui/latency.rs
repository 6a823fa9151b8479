//! The Latency panel: the table of figures, devices and operations, and under it the
//! histograms of the selected row (since the start and over the last interval).

use ratatui::{
    layout::{Constraint, Layout, Rect},
    style::{Color, Style},
    text::Line,
    widgets::{Bar, BarChart, BarGroup, Paragraph},
    Frame,
};

use super::{boxed, table};
use crate::{
    engine::latency::BUCKETS_NS,
    sinks::tui::app::{table::TableRow, App},
};

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let (data, view) = (app.table(), app.view());
    if view.detail.is_some() || area.height < 12 {
        return table::render_in(app, frame, area, data, view);
    }
    let [top, bottom] = Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    table::render_in(app, frame, top, data, view);
    let row = view.selected.as_ref().and_then(|k| data.rows.iter().find(|r| &r.key == k));
    histograms(frame, bottom, row);
}

/// A bucket's upper bound, short: 10u, 2.5m, 1s; `>10s` for the values above the last.
fn bound(i: usize) -> String {
    let Some(&ns) = BUCKETS_NS.get(i) else {
        return format!(">{}", bound(BUCKETS_NS.len() - 1));
    };
    let (v, unit) = if ns < 1_000_000 {
        (ns as f64 / 1e3, "u")
    } else if ns < 1_000_000_000 {
        (ns as f64 / 1e6, "m")
    } else {
        (ns as f64 / 1e9, "s")
    };
    format!("{v}{unit}")
}

fn histograms(frame: &mut Frame, area: Rect, row: Option<&TableRow>) {
    let series = row.map_or(&[][..], |r| &r.series[..]);
    if series.iter().all(|(_, b)| b.is_empty()) {
        let why = if row.is_some() { "no histogram for this row" } else { "no row selected" };
        return frame.render_widget(Paragraph::new(why).block(boxed("Histogram")), area);
    }
    let areas = Layout::vertical(vec![Constraint::Ratio(1, series.len() as u32); series.len()]).split(area);
    for ((name, buckets), &area) in series.iter().zip(areas.iter()) {
        let inner = area.width.saturating_sub(2) as usize;
        let n = buckets.len().max(1);
        // Bars and a gap of one.
        let bar = (inner / n).saturating_sub(1).max(1) as u16;
        // Labels need three columns: narrower bars go without, the title gives the range.
        let labelled = bar >= 3;
        let bars: Vec<Bar> = buckets
            .iter()
            .enumerate()
            .map(|(i, &count)| {
                let bar = Bar::default().value(count);
                if labelled {
                    bar.label(Line::from(bound(i)))
                } else {
                    bar
                }
            })
            .collect();
        let title = if labelled {
            format!("{name}: operations by latency (bucket upper bounds)")
        } else {
            format!("{name}: operations by latency, {} .. {}", bound(0), bound(buckets.len().saturating_sub(1)))
        };
        let chart = BarChart::default()
            .block(boxed(title))
            .data(BarGroup::default().bars(&bars))
            .bar_width(bar)
            .bar_gap(1)
            .bar_style(Style::default().fg(Color::Cyan));
        frame.render_widget(chart, area);
    }
}
