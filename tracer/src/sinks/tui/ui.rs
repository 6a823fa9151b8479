//! The dashboard drawn from its state with ratatui. Formats only: every figure comes from the
//! snapshot.

use ratatui::{
    layout::{Constraint, Direction, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Cell, Paragraph, Row, Table},
    Frame,
};

use super::app::{App, Shown};
use crate::{
    engine::{detect::Verdict, latency::kind_name},
    probes::plan::role_name,
    snapshot::{BioLedger, PinAccounting},
};

pub fn render(app: &App, frame: &mut Frame) {
    let Some(shown) = &app.shown else {
        let area = frame.area();
        frame.render_widget(
            Paragraph::new(vec![
                title(app, 0.0),
                Line::from(""),
                Line::from("waiting for the first figures (one every interval)"),
                Line::from(""),
                footer(app),
            ]),
            area,
        );
        return;
    };
    let rows = Layout::default()
        .direction(Direction::Vertical)
        .constraints([
            Constraint::Length(1),
            Constraint::Length(8),
            Constraint::Min(6),
            Constraint::Length(7),
            Constraint::Length(1),
        ])
        .split(frame.area());
    frame.render_widget(Paragraph::new(title(app, shown.totals.figures.elapsed_s)), rows[0]);
    let top = halves(rows[1]);
    frame.render_widget(Paragraph::new(pins_lines(shown)).block(boxed("FOLL_PIN pages (kernel accounting)")), top[0]);
    frame.render_widget(Paragraph::new(ledger_lines(shown)).block(boxed("Ledgers")), top[1]);
    let middle = halves(rows[2]);
    frame.render_widget(procs_table(shown).block(boxed("Processes (pages since start)")), middle[0]);
    frame.render_widget(entry_table(shown).block(boxed("Entry points")), middle[1]);
    let bottom = halves(rows[3]);
    frame.render_widget(latency_table(shown).block(boxed("DIO latency, cumulative (us)")), bottom[0]);
    frame.render_widget(Paragraph::new(leak_lines(shown)).block(boxed("Leak suspects (bios)")), bottom[1]);
    frame.render_widget(Paragraph::new(footer(app)), rows[4]);
}

fn title(app: &App, elapsed_s: f64) -> Line<'static> {
    let mut spans = vec![
        Span::styled("tracer", Style::default().add_modifier(Modifier::BOLD)),
        Span::raw(format!("  kernel {}  {:.1} s", app.kernel, elapsed_s)),
    ];
    if let Some(c) = &app.command {
        spans.push(Span::raw(format!("  command: {c}")));
    }
    Line::from(spans)
}

fn footer(app: &App) -> Line<'static> {
    let mut s = format!("probes: {} attached", app.attached);
    if !app.missing.is_empty() {
        s.push_str(&format!(
            ", {} missing ({}): their figures are unverifiable",
            app.missing.len(),
            app.missing.join(", ")
        ));
    }
    s.push_str("   q: quit");
    Line::from(s)
}

fn halves(area: Rect) -> std::rc::Rc<[Rect]> {
    Layout::default()
        .direction(Direction::Horizontal)
        .constraints([Constraint::Percentage(50), Constraint::Percentage(50)])
        .split(area)
}

fn boxed(title: &str) -> Block<'_> {
    Block::default().borders(Borders::ALL).title(title)
}

fn us(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1e3)
}

fn pins_lines(shown: &Shown) -> Vec<Line<'static>> {
    let f = &shown.totals.figures;
    let mut out = Vec::new();
    match f.pin_accounting {
        PinAccounting::Measured => {
            let (p, u) = (f.pages_pinned, f.pages_unpinned);
            out.push(Line::from(format!("pinned {p}  unpinned {u}  net {:+}", f.net_pinned())));
            if let Some((rp, ru)) = shown.interval.rate() {
                out.push(Line::from(format!("last interval: {rp:.0}/s pinned, {ru:.0}/s unpinned")));
            }
        }
        PinAccounting::Unverifiable => out.push(Line::from("unverifiable (no nr_foll_pin_* in /proc/vmstat)")),
    }
    if let Some(v) = f.vmstat {
        out.push(Line::from(format!(
            "/proc/vmstat: acquired +{}  released +{}",
            v.nr_foll_pin_acquired, v.nr_foll_pin_released
        )));
    }
    let lost_style = if f.lost_events > 0 { Style::default().fg(Color::Red) } else { Style::default() };
    let mut lost = format!("lost events: {}", f.lost_events);
    if !f.lost_by_reason.is_empty() {
        let why: Vec<String> = f.lost_by_reason.iter().map(|(k, n)| format!("{k} {n}")).collect();
        lost.push_str(&format!(" ({})", why.join(", ")));
    }
    out.push(Line::styled(lost, lost_style));
    if !f.probes_skipped.is_empty() {
        let runs: Vec<String> = f.probes_skipped.iter().map(|s| format!("{} {}", s.target, s.runs)).collect();
        out.push(Line::styled(format!("  runs the kernel skipped: {}", runs.join(", ")), lost_style));
    }
    out
}

fn ledger_lines(shown: &Shown) -> Vec<Line<'static>> {
    let Some(BioLedger { ledger, judgement, .. }) = shown.totals.bios.as_deref() else { return Vec::new() };
    let (t, verdict) = (&ledger.totals, judgement.verdict);
    let verdict_style = match verdict {
        Verdict::Clean => Style::default().fg(Color::Green),
        Verdict::Unverifiable => Style::default().fg(Color::Yellow),
        Verdict::LeaksFound | Verdict::MismatchesFound => Style::default().fg(Color::Red),
    };
    let mean = |t: Option<u64>| t.map_or("-".to_string(), |ns| format!("{} us", us(ns)));
    let mut lines = vec![
        Line::from(vec![Span::raw("bio ledger: "), Span::styled(verdict.name(), verdict_style)]),
        Line::from(format!(
            "  in flight {} bios / {} pages, leaked {} pages",
            t.in_flight.bios, t.in_flight.pages, t.leaked.pages
        )),
        Line::from(format!(
            "  hold mean {}, completion->unpin mean {}",
            mean(t.hold.mean_ns()),
            mean(t.unpin_lag.mean_ns())
        )),
    ];
    if let Some(pages) = shown.totals.pages.as_deref() {
        let p = &pages.totals;
        lines.push(Line::from(format!(
            "pins: {} ({} long-term), referenced (FOLL_GET) {}",
            p.pinned, p.pinned_longterm, p.referenced
        )));
        lines.push(Line::from(format!(
            "  outstanding {}, owner exited {}, suspects {}",
            p.outstanding, p.outstanding_owner_exited, p.suspect
        )));
    }
    lines
}

fn header(cells: &[&'static str]) -> Row<'static> {
    Row::new(cells.iter().map(|c| Cell::from(*c))).style(Style::default().add_modifier(Modifier::BOLD))
}

fn procs_table(shown: &Shown) -> Table<'static> {
    let rows = shown.totals.procs_most_pinned_first().into_iter().map(|p| {
        Row::new([p.tgid.to_string(), p.comm.clone(), p.pages_pinned.to_string(), p.pages_unpinned.to_string()])
    });
    Table::new(rows, [Constraint::Length(8), Constraint::Length(16), Constraint::Length(10), Constraint::Length(10)])
        .header(header(&["TGID", "COMM", "PINNED", "UNPINNED"]))
}

fn entry_table(shown: &Shown) -> Table<'static> {
    let rows = shown.totals.figures.active_entry_points().map(|e| {
        Row::new([e.function.to_string(), role_name(e.role).to_string(), e.calls.to_string(), e.pages.to_string()])
    });
    Table::new(rows, [Constraint::Min(20), Constraint::Length(6), Constraint::Length(9), Constraint::Length(9)])
        .header(header(&["FUNCTION", "ROLE", "CALLS", "PAGES"]))
}

fn latency_table(shown: &Shown) -> Table<'static> {
    let names = &shown.totals.names;
    let rows = shown.totals.latency_all_sizes().map(|(k, st)| {
        Row::new([
            kind_name(k.kind).to_string(),
            names.device(k.dev).to_string(),
            names.op(k.op).to_string(),
            st.count.to_string(),
            us(st.at(50.0)),
            us(st.at(99.0)),
            us(st.max_ns),
        ])
    });
    Table::new(
        rows,
        [
            Constraint::Length(4),
            Constraint::Length(9),
            Constraint::Length(6),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(9),
        ],
    )
    .header(header(&["FIG", "DEVICE", "OP", "COUNT", "P50", "P99", "MAX"]))
}

fn leak_lines(shown: &Shown) -> Vec<Line<'static>> {
    let (names, leaks) = (&shown.totals.names, shown.totals.bios.as_deref().map_or(&[][..], |b| &b.ledger.leaks[..]));
    if leaks.is_empty() {
        return vec![Line::from("none")];
    }
    leaks
        .iter()
        .map(|l| {
            let (dev, op, age) = (names.device(l.dev), names.op(l.op), l.acquired_age_ns as f64 / 1e9);
            let text = format!("{} ({}) {dev} {op}: {} pages, acquired {age:.1} s ago", l.comm, l.tgid, l.pages);
            Line::styled(text, Style::default().fg(Color::Red))
        })
        .collect()
}
