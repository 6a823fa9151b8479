//! A table panel: its notes, its rows (the columns that fit), or the drill-down of the
//! selected row.

use ratatui::{
    layout::{Constraint, Layout, Rect},
    style::{Modifier, Style},
    text::Line,
    widgets::{Cell, Paragraph, Row, Table, TableState},
    Frame,
};

use super::{boxed, tone_style, WAITING};
use crate::sinks::tui::app::{
    table::{Column, SortBy, TableData, TableRow, TableView},
    App, Panel,
};

/// Before the selected row (also where colours do not show).
const SYMBOL: &str = "> ";

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    render_in(app, frame, area, app.table(), app.view());
}

/// The panel's table (or its drill-down) in `area`.
pub fn render_in(app: &App, frame: &mut Frame, area: Rect, data: &TableData, view: &TableView) {
    if let Some(scroll) = view.detail {
        return detail(frame, area, data, view, scroll);
    }
    let block = boxed(heading(app.panel, data, view));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let notes: Vec<Line> = data.notes.iter().map(|(n, tone)| Line::styled(n.clone(), tone_style(*tone))).collect();
    let [notes_area, rows_area] =
        Layout::vertical([Constraint::Length(notes.len() as u16), Constraint::Min(0)]).areas(inner);
    frame.render_widget(Paragraph::new(notes), notes_area);
    let rows = view.shown(data);
    if rows.is_empty() {
        let why = if app.shown.is_none() && app.panel != Panel::Probes {
            WAITING.to_string()
        } else if data.rows.is_empty() {
            data.empty.to_string()
        } else {
            format!("no row matches /{}", view.filter)
        };
        frame.render_widget(Paragraph::new(why), rows_area);
        return;
    }
    let kept = fitting(&data.columns, rows_area.width.saturating_sub(SYMBOL.len() as u16));
    let header = Row::new(kept.iter().map(|&c| Cell::from(data.columns[c].title.clone())))
        .style(Style::default().add_modifier(Modifier::BOLD));
    let body = rows.iter().map(|r| {
        Row::new(kept.iter().map(|&c| Cell::from(r.cells.get(c).map_or(String::new(), |v| v.text()))))
            .style(tone_style(r.tone))
    });
    let widths = kept.iter().map(|&c| {
        let col = &data.columns[c];
        if col.fill {
            Constraint::Min(col.width)
        } else {
            Constraint::Length(col.width)
        }
    });
    let table = Table::new(body, widths)
        .header(header)
        .column_spacing(1)
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
        .highlight_symbol(SYMBOL);
    let mut state = TableState::default().with_offset(view.offset).with_selected(Some(view.index));
    frame.render_stateful_widget(table, rows_area, &mut state);
}

/// The panel's title with the row count, sort column and filter.
fn heading(panel: Panel, data: &TableData, view: &TableView) -> String {
    let shown = view.shown(data).len();
    let mut t = format!("{} ", panel.title());
    t.push_str(&if shown == data.rows.len() {
        format!("({shown}) ")
    } else {
        format!("({shown}/{}) ", data.rows.len())
    });
    match view.sort_by(data) {
        SortBy::Given => t.push_str(&format!("sort: {}", data.given_order)),
        SortBy::Column(c) => t.push_str(&format!("sort: {}", data.columns.get(c).map_or("?", |c| c.title.as_str()))),
    }
    if !view.filter.is_empty() {
        t.push_str(&format!("  filter: /{}", view.filter));
    }
    t
}

/// The columns that fit in `width`, in their order: the ones to keep longest first.
fn fitting(columns: &[Column], width: u16) -> Vec<usize> {
    let mut by_keep: Vec<usize> = (0..columns.len()).collect();
    by_keep.sort_by_key(|&c| std::cmp::Reverse(columns[c].keep));
    let mut kept = Vec::new();
    let mut used = 0u16;
    for c in by_keep {
        let need = columns[c].width + u16::from(!kept.is_empty());
        if used + need <= width || kept.is_empty() {
            kept.push(c);
            used = used.saturating_add(need);
        }
    }
    kept.sort_unstable();
    kept
}

/// The selected row's drill-down.
fn detail(frame: &mut Frame, area: Rect, data: &TableData, view: &TableView, scroll: usize) {
    let row: Option<&TableRow> = view.selected.as_ref().and_then(|k| data.rows.iter().find(|r| &r.key == k));
    let lines: Vec<Line> = match row {
        Some(r) => r.detail.iter().skip(scroll).map(|l| Line::from(l.clone())).collect(),
        None => vec![Line::from("this row is gone from the figures")],
    };
    let title = "Details (esc: back, j/k: scroll)";
    frame.render_widget(Paragraph::new(lines).block(boxed(title)), area);
}
