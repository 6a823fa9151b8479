//! The Overview panel: pin and unpin rates and totals, the /proc/vmstat cross-check, losses,
//! the ledgers' verdicts, and the log lines held back while the dashboard is open.

use ratatui::{
    layout::{Constraint, Layout, Rect},
    style::{Color, Style},
    text::{Line, Span},
    widgets::Paragraph,
    Frame,
};

use super::{boxed, WAITING};
use crate::{
    engine::detect::Verdict,
    probes::plan::role_name,
    sinks::tui::app::{App, Shown},
    snapshot::{BioLedger, Figures, PinAccounting},
};

/// Log lines shown at most.
const LOG_ROWS: usize = 4;

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let Some(shown) = &app.shown else {
        let mut lines = vec![Line::from(WAITING), Line::from("")];
        lines.extend(missing_line(app));
        frame.render_widget(Paragraph::new(lines).block(boxed("Overview")), area);
        return;
    };
    let log_rows = if app.logs.is_empty() { 0 } else { app.logs.len().min(LOG_ROWS) as u16 + 2 };
    let [top, log] = Layout::vertical([Constraint::Min(0), Constraint::Length(log_rows)]).areas(area);
    let mut pins = pin_lines(shown);
    pins.extend(loss_lines(&shown.totals.figures, &shown.interval.figures));
    let mut verdicts = verdict_lines(shown);
    verdicts.extend(missing_line(app));
    if top.width >= 90 {
        let [left, right] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(top);
        frame.render_widget(Paragraph::new(pins).block(boxed("FOLL_PIN pages")), left);
        frame.render_widget(Paragraph::new(verdicts).block(boxed("Verdicts")), right);
    } else {
        // Narrow: one box, the verdicts under the pins.
        pins.extend(verdicts);
        frame.render_widget(Paragraph::new(pins).block(boxed("FOLL_PIN pages, verdicts")), top);
    }
    if log_rows > 0 {
        let lines: Vec<Line> =
            app.logs.iter().skip(app.logs.len().saturating_sub(LOG_ROWS)).map(|l| Line::from(l.clone())).collect();
        frame.render_widget(Paragraph::new(lines).block(boxed("Log (printed again when the dashboard closes)")), log);
    }
}

fn pin_lines(shown: &Shown) -> Vec<Line<'static>> {
    let (f, now) = (&shown.totals.figures, &shown.interval.figures);
    let mut out = Vec::new();
    match f.pin_accounting {
        PinAccounting::Measured => {
            if let Some((rp, ru)) = now.rate() {
                let text = format!("per second (last {:.1} s): {rp:.0} pinned, {ru:.0} unpinned", now.span_s);
                out.push(Line::from(text));
            }
            let (p, u) = (f.pages_pinned, f.pages_unpinned);
            out.push(Line::from(format!("since the start: pinned {p}  unpinned {u}  net {:+}", f.net_pinned())));
        }
        PinAccounting::Unverifiable => out
            .push(Line::styled("unverifiable (no nr_foll_pin_* in /proc/vmstat)", Style::default().fg(Color::Yellow))),
    }
    if let Some(v) = f.vmstat {
        out.push(Line::from(format!(
            "/proc/vmstat: acquired +{}  released +{}",
            v.nr_foll_pin_acquired, v.nr_foll_pin_released
        )));
    }
    // The cross-check: what the probes saw, beside the kernel's own count.
    if let Some(p) = shown.totals.pages.as_deref() {
        let t = &p.totals;
        out.push(Line::from(format!("  the probes saw: pinned +{}  unpinned +{}", t.pinned, t.unpinned)));
    }
    for e in f.active_entry_points() {
        let text = format!("  {} ({}): {} calls, {} pages", e.function, role_name(e.role), e.calls, e.pages);
        out.push(Line::from(text));
    }
    if let (Some(i), Some(c)) = (f.block.requests_issued, f.block.requests_completed) {
        out.push(Line::from(format!("block requests: {i} issued, {c} completed")));
    }
    if let Some((untimed, dropped)) = f.block.untimed() {
        out.push(Line::from(format!("  untimed: {untimed} requests (no issue seen), {dropped} starts dropped")));
    }
    out
}

fn loss_lines(f: &Figures, now: &Figures) -> Vec<Line<'static>> {
    let bad = |n: u64| if n > 0 { Style::default().fg(Color::Red) } else { Style::default() };
    let mut lost = format!("lost records: {} (last interval {})", f.lost_events, now.lost_events);
    if !f.lost_by_reason.is_empty() {
        let why: Vec<String> = f.lost_by_reason.iter().map(|(k, n)| format!("{k} {n}")).collect();
        lost.push_str(&format!(": {}", why.join(", ")));
    }
    let mut out = vec![Line::styled(lost, bad(f.lost_events))];
    if f.stacks_unread > 0 {
        out.push(Line::styled(format!("stacks unread: {}", f.stacks_unread), bad(f.stacks_unread)));
    }
    let runs: Vec<String> = f.probes_skipped.iter().map(|s| format!("{} {}", s.target, s.runs)).collect();
    let skipped = if runs.is_empty() { "none".into() } else { runs.join(", ") };
    out.push(Line::styled(format!("runs the kernel skipped: {skipped}"), bad(runs.len() as u64)));
    out
}

fn verdict_style(v: Verdict) -> Style {
    match v {
        Verdict::Clean => Style::default().fg(Color::Green),
        Verdict::Unverifiable => Style::default().fg(Color::Yellow),
        Verdict::LeaksFound | Verdict::MismatchesFound => Style::default().fg(Color::Red),
    }
}

fn verdict_lines(shown: &Shown) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    if let Some(BioLedger { ledger, judgement, .. }) = shown.totals.bios.as_deref() {
        let (t, v) = (&ledger.totals, judgement.verdict);
        let mean = |t: Option<u64>| t.map_or("-".to_string(), |ns| format!("{:.1} us", ns as f64 / 1e3));
        lines.push(Line::from(vec![Span::raw("bio ledger: "), Span::styled(v.name(), verdict_style(v))]));
        lines.extend(judgement.reasons.iter().map(|r| Line::styled(format!("  {r}"), verdict_style(v))));
        lines.push(Line::from(format!(
            "  in flight {} bios / {} pages, leaked {} pages",
            t.in_flight.bios, t.in_flight.pages, t.leaked.pages
        )));
        lines.push(Line::from(format!(
            "  hold mean {}, completion->unpin mean {}",
            mean(t.hold.mean_ns()),
            mean(t.unpin_lag.mean_ns())
        )));
    }
    if let Some(pages) = shown.totals.pages.as_deref() {
        let p = &pages.totals;
        let suspects = if p.suspect > 0 { Style::default().fg(Color::Red) } else { Style::default() };
        lines.push(Line::from(format!("page ledger: {} pins ({} long-term)", p.pinned, p.pinned_longterm)));
        lines.push(Line::from(format!("  referenced (FOLL_GET) {}", p.referenced)));
        lines.push(Line::styled(
            format!(
                "  outstanding {}, owner exited {}, suspects {}",
                p.outstanding, p.outstanding_owner_exited, p.suspect
            ),
            suspects,
        ));
    }
    lines
}

/// The probes missing, whose figures are unverifiable.
fn missing_line(app: &App) -> Option<Line<'static>> {
    let missing: Vec<&str> = app.probes.iter().filter(|p| p.missing()).map(|p| p.def.target).collect();
    (!missing.is_empty()).then(|| {
        Line::styled(
            format!("probes missing ({}): {} (see 6 Probes)", missing.len(), missing.join(", ")),
            Style::default().fg(Color::Yellow),
        )
    })
}
