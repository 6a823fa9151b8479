//! The dashboard drawn from its state with ratatui: layout and formatting only. Every figure
//! comes from the snapshot, every row from the app's tables.

mod latency;
mod overview;
mod table;

use ratatui::{
    layout::{Constraint, Flex, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Clear, Paragraph, Tabs},
    Frame,
};

use super::app::{table::Tone, App, Panel};

pub fn render(app: &App, frame: &mut Frame) {
    let [head, tabs, body, status] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(1), Constraint::Min(1), Constraint::Length(1)])
            .areas(frame.area());
    frame.render_widget(Paragraph::new(title(app)), head);
    frame.render_widget(tab_bar(app, tabs.width), tabs);
    match app.panel {
        Panel::Overview => overview::render(app, frame, body),
        Panel::Latency => latency::render(app, frame, body),
        _ => table::render(app, frame, body),
    }
    frame.render_widget(Paragraph::new(status_line(app, status.width)), status);
    if app.help {
        help(frame, body);
    }
}

fn title(app: &App) -> Line<'static> {
    let elapsed = app.shown.as_ref().map_or(0.0, |s| s.totals.figures.elapsed_s);
    let mut spans = vec![
        Span::styled("tracer", Style::default().add_modifier(Modifier::BOLD)),
        Span::raw(format!("  kernel {}  {elapsed:.1} s", app.kernel)),
    ];
    if app.frozen {
        let held = match app.held_ticks {
            0 => String::new(),
            n => format!(" ({n} new)"),
        };
        spans.push(Span::styled(format!("  FROZEN{held}"), Style::default().fg(Color::Black).bg(Color::Yellow)));
    }
    if let Some(c) = &app.command {
        spans.push(Span::raw(format!("  command: {c}")));
    }
    Line::from(spans)
}

fn tab_bar(app: &App, width: u16) -> Tabs<'static> {
    let short = width < 72;
    let titles = Panel::ALL.iter().enumerate().map(|(i, p)| {
        let name = if short { p.short() } else { p.title() };
        format!("{} {name}", i + 1)
    });
    Tabs::new(titles)
        .select(app.panel.index())
        .highlight_style(Style::default().add_modifier(Modifier::REVERSED | Modifier::BOLD))
        .padding("", "")
        .divider(" ")
}

fn status_line(app: &App, width: u16) -> Line<'static> {
    if app.filtering {
        let filter = &app.view().filter;
        return Line::from(vec![
            Span::styled(format!("/{filter}"), Style::default().add_modifier(Modifier::BOLD)),
            Span::raw("_  enter: keep  esc: clear"),
        ]);
    }
    if let Some(s) = &app.status {
        return Line::styled(s.clone(), Style::default().add_modifier(Modifier::BOLD));
    }
    let mut hints = String::from("q quit  tab/1-6 panels  ? help");
    if width < 100 {
        return Line::from(hints);
    }
    if app.panel.is_table() {
        hints.push_str("  j/k move  enter details  / filter  s sort");
    }
    hints.push_str("  space freeze  e export");
    Line::from(hints)
}

/// The keys, over the panel.
fn help(frame: &mut Frame, body: Rect) {
    const KEYS: [(&str, &str); 13] = [
        ("q, Ctrl-C", "quit (the run ends, the summary follows)"),
        ("tab, shift-tab", "next, previous panel"),
        ("1-6", "Overview, Processes, Call paths, Findings, Latency, Probes"),
        ("j/k, arrows", "move the selection (pgup/pgdn, g/G: by pages, ends)"),
        ("enter", "details of the selected row"),
        ("esc", "back from the details; clear the filter"),
        ("/", "filter the rows (type; enter keeps, esc clears)"),
        ("s", "sort by the next column"),
        ("space", "freeze the display (figures keep coming)"),
        ("e", "export the report (--report FILE)"),
        ("?", "this help"),
        ("", ""),
        ("", "figures: the run so far, per second: the last interval"),
    ];
    let lines: Vec<Line> = KEYS
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!("{k:>15}  "), Style::default().add_modifier(Modifier::BOLD)),
                Span::raw(*what),
            ])
        })
        .collect();
    let [area] = Layout::horizontal([Constraint::Max(80)]).flex(Flex::Center).areas(body);
    let [area] = Layout::vertical([Constraint::Max(lines.len() as u16 + 2)]).flex(Flex::Center).areas(area);
    frame.render_widget(Clear, area);
    frame.render_widget(Paragraph::new(lines).block(boxed("Keys (? or esc closes)")), area);
}

fn boxed<'a>(title: impl Into<Line<'a>>) -> Block<'a> {
    Block::default().borders(Borders::ALL).title(title)
}

fn tone_style(tone: Tone) -> Style {
    match tone {
        Tone::Normal => Style::default(),
        Tone::Bad => Style::default().fg(Color::Red),
        Tone::Doubtful => Style::default().fg(Color::Yellow),
    }
}

/// Said in a panel before the first figures.
const WAITING: &str = "waiting for the first figures (one every interval)";
